"""Atomic file writes: readers see either the old file or the complete new one.

Every file the project writes (checkpoints, dataset caches, compiled objects) goes through
here, so a crash or an exception half way through a write never leaves a truncated file where
a good one used to be. A writer holds an exclusive flock on its temporary (named after its host
and pid) until it is published or removed, so one that a killed process left behind is removed by
the next write in the same directory, and a live writer's never is.
"""

import contextlib
import errno
import functools
import os
import re

try:
    import fcntl
except ImportError:  # Windows: no flock, and no cleanup (see remove_stale_temporaries)
    fcntl = None

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

    The temporary stays flock'd (an fd held open) until it is published or
    removed; writers that reopen the yielded path write the same inode.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):  # else the error would name the hidden temporary file, not the user's path
        raise FileNotFoundError(errno.ENOENT, f"cannot write {path}: there is no directory {directory}", path)
    tmp, fd = _create_temp_file(path, directory, mode)
    try:
        yield tmp
        os.fsync(fd)  # data on disk before the rename makes it visible, or a power loss can publish an empty file
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
            os.remove(tmp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    finally:
        os.close(fd)  # releases the lock
    _fsync_directory(directory)


def atomic_write_bytes(path, data, mode=None, replace=True):
    """Write ``data`` (bytes) to ``path`` atomically (``mode`` and ``replace`` as in atomic_path)."""
    with atomic_path(path, mode, replace) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def remove_stale_temporaries(directory):
    """Remove the temporaries that killed writers left in ``directory``: those no live writer holds locked."""
    if fcntl is None:
        return  # and os.kill(pid, 0) would terminate the process on Windows
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            match = TEMPORARY.fullmatch(entry.name)
            # Host and pid too: where locks stay local to each node (NFS mounted nolock), another host's lock is unseen.
            if match and match[1] == _host() and not _alive(int(match[2])):
                _remove_unless_locked(entry.path)


def _remove_unless_locked(path):
    """Remove ``path`` if this process can lock it: its writer is dead (a live one holds the lock until it is done)."""
    try:  # opened for writing: NFS grants an exclusive flock only then; O_NONBLOCK: a FIFO must not hang the scan
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.remove(path)
    except OSError:
        pass  # locked (BlockingIOError), or a filesystem without locks: kept
    finally:
        os.close(fd)


def _create_temp_file(path, directory, mode):
    """The temporary's path and an fd holding its lock."""
    # Created here with O_EXCL (rather than by tempfile.mkstemp) so that the
    # final file gets the usual umask-derived permissions, not mkstemp's 0600,
    # unless the caller asks for a mode.
    remove_stale_temporaries(directory)
    name, ext = os.path.splitext(os.path.basename(path))
    while True:
        tmp = os.path.join(directory, f".{name}.{_host()}-{os.getpid()}-{os.urandom(4).hex()}.tmp{ext}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
        except FileExistsError:
            continue
        try:
            if mode is not None:
                os.fchmod(fd, mode)  # the umask only takes bits away: give back the ones it took
            _lock(fd)
            if os.path.samestat(os.fstat(fd), os.stat(tmp)):
                return tmp, fd
        except FileNotFoundError:
            pass  # a cleaner locked and removed it before this writer locked it: take another name
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _lock(fd):
    """Hold an exclusive lock on the temporary while it is written, so cleanup knows its writer is alive."""
    if fcntl is not None:
        with contextlib.suppress(OSError):  # no locks on this filesystem: the write goes on, cleanup keeps it
            fcntl.flock(fd, fcntl.LOCK_EX)


@functools.cache
def _host():
    # A pid names a process only on the host that issued it; hashed to a name-safe, fixed-width tag. hashlib
    # loads OpenSSL (about 4 MiB), imported at the first write rather than by every program importing runtime.
    import hashlib
    import socket
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process
    return True


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
