"""Atomic file writes: readers see either the old file or the complete new one.

Every file the project writes (checkpoints, dataset caches, compiled objects) goes through
here, so a crash or an exception half way through a write never leaves a truncated file where
a good one used to be. A temporary is named after its writer (host and pid), so one that a
killed process left behind is removed by the next write in the same directory.
"""

import contextlib
import functools
import hashlib
import os
import re
import secrets
import socket

# ".{name}.{host}-{pid}-{random}.tmp{ext}": what _create_temp_file names a temporary.
TEMPORARY = re.compile(r"\..+\.([0-9a-f]{8})-([1-9][0-9]{0,8})-[0-9a-f]{8}\.tmp.*", re.DOTALL)


@contextlib.contextmanager
def atomic_path(path, mode=None, replace=True):
    """Yield a temporary path next to ``path``; publish it only on success.

    The caller writes the complete file to the yielded path (and closes it).
    When the ``with`` block exits normally the temporary file is fsync'd and
    renamed onto ``path`` with ``os.replace`` (atomic on POSIX and Windows
    when both names are on the same filesystem, hence the same directory).
    When the block raises, the temporary file is removed, ``path`` is left
    untouched and the exception propagates.

    The temporary name keeps ``path``'s extension so writers that append one
    when it is missing (``numpy.save``, ``numpy.savez``) do not rename it.

    ``mode`` gives the file exactly these permissions (0o600 for a private
    file) whatever the umask; by default a new file's (0o666 less the umask).
    With ``replace=False`` the file is published with ``os.link``, so an
    existing ``path`` (another process's, written first) is kept and
    FileExistsError raised.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = _create_temp_file(path, directory, mode)
    try:
        yield tmp
        _fsync_file(tmp)
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
            os.remove(tmp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    _fsync_directory(directory)


def atomic_write_bytes(path, data, mode=None, replace=True):
    """Write ``data`` (bytes) to ``path`` atomically (``mode`` and ``replace`` as in atomic_path)."""
    with atomic_path(path, mode, replace) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def remove_stale_temporaries(directory):
    """Remove the temporaries that dead processes of this host left in ``directory`` (killed mid-write)."""
    if os.name != "posix":
        return  # os.kill(pid, 0) would terminate the process on Windows
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            match = TEMPORARY.fullmatch(entry.name)
            if match and match[1] == _host() and not _alive(int(match[2])):
                with contextlib.suppress(OSError):
                    os.remove(entry.path)


def _create_temp_file(path, directory, mode):
    # Created here with O_EXCL (rather than by tempfile.mkstemp) so that the
    # final file gets the usual umask-derived permissions, not mkstemp's 0600,
    # unless the caller asks for a mode.
    remove_stale_temporaries(directory)
    name, ext = os.path.splitext(os.path.basename(path))
    while True:
        tmp = os.path.join(directory, f".{name}.{_host()}-{os.getpid()}-{secrets.token_hex(4)}.tmp{ext}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
        except FileExistsError:
            continue
        try:
            if mode is not None:
                os.fchmod(fd, mode)  # the umask only takes bits away: give back the ones it took
        finally:
            os.close(fd)
        return tmp


@functools.cache
def _host():
    # A pid names a process only on the host that issued it; hashed to a name-safe, fixed-width tag.
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process
    return True


def _fsync_file(path):
    # The data must be on disk before the rename makes it visible; otherwise
    # a power loss can leave the new name pointing at an empty file.
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _fsync_directory(directory):
    # Makes the rename itself durable. Directories cannot be opened on
    # Windows, where the rename is durable enough for our purposes.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
