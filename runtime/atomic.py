"""Atomic file writes: readers see either the old file or the complete new one.

Every file the project writes (checkpoints, dataset caches) goes through
here, so a crash or an exception half way through a write never leaves a
truncated file where a good one used to be.
"""

import contextlib
import os
import secrets


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; publish it only on success.

    The caller writes the complete file to the yielded path (and closes it).
    When the ``with`` block exits normally the temporary file is fsync'd and
    renamed onto ``path`` with ``os.replace`` (atomic on POSIX and Windows
    when both names are on the same filesystem, hence the same directory).
    When the block raises, the temporary file is removed, ``path`` is left
    untouched and the exception propagates.

    The temporary name keeps ``path``'s extension so writers that append one
    when it is missing (``numpy.save``, ``numpy.savez``) do not rename it.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = _create_temp_file(path, directory)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    _fsync_directory(directory)


def atomic_write_bytes(path, data):
    """Write ``data`` (bytes) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def _create_temp_file(path, directory):
    # Created here with O_EXCL (rather than by tempfile.mkstemp) so that the
    # final file gets the usual umask-derived permissions, not mkstemp's 0600.
    name, ext = os.path.splitext(os.path.basename(path))
    while True:
        tmp = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp{ext}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp


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
