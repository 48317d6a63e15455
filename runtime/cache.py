"""On-disk cache of compiled object code, so a program seen before skips LLVM entirely.

The entries are machine code that the process runs, so the cache is trusted only the way git trusts
a repository and OpenSSH a key file: the directory and every entry must belong to the current user
and be writable by no one else (they are created 0700 and 0600 whatever the umask), and every entry
carries an HMAC-SHA256 under a per-user secret kept outside the cache, in
``$XDG_CONFIG_HOME/graphc/cache-key``. An entry that fails a check is never loaded; a cache that is
unsafe or unusable is bypassed (programs are compiled in memory) with one CacheWarning per reason
and process. No directory or key is created in a directory another user owns (root under ``sudo -E``
would lock the user out of their own cache). Past ``GRAPHC_CACHE_MAX_BYTES`` the least recently
used entries (oldest mtime: a load refreshes it) are evicted.

An entry is ``<key>.o``: a header naming the format, the key and the HMAC of key and payload, then
the object code.
"""
import contextlib
import errno
import hashlib
import hmac
import os
import re
import secrets
import stat
import time
import warnings
from pathlib import Path

import llvmlite

from .atomic import atomic_write_bytes, remove_stale_temporaries

FORMAT = b"graphc-object-v2"
NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP}  # what link() raises on vfat, some FUSE and SMB
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
ENTRY = re.compile(r"[0-9a-f]{64}\.o")  # the only files graphc counts, evicts and clears
_warned = set()  # the reasons already reported by this process


class CacheWarning(RuntimeWarning):
    """The object cache was bypassed (unsafe or unusable): programs are compiled in memory instead."""


class _Bypass(Exception):
    """Why the cache is not used now; ``reason`` keys the once-per-process warning."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason

    def warn(self) -> None:
        _warn_once(self.reason, f"not using the object cache: {self}; compiling in memory")


def _warn_once(reason: str, message: str) -> None:
    """A bypassed cache costs compile time on every call, not correctness: saying so once is enough."""
    if reason not in _warned:
        _warned.add(reason)
        warnings.warn(f"graphc: {message}", CacheWarning, stacklevel=4)


def cache_dir() -> Path:
    """``$GRAPHC_CACHE_DIR``, else ``$XDG_CACHE_HOME/graphc/objects`` (default ``~/.cache/graphc/objects``)."""
    explicit = os.environ.get("GRAPHC_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "graphc" / "objects"


def key_path() -> Path:
    """``$XDG_CONFIG_HOME/graphc/cache-key`` (default ``~/.config``): outside the cache, so whoever can write
    entries there still cannot sign them."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "graphc" / "cache-key"


def max_bytes() -> int:
    """``$GRAPHC_CACHE_MAX_BYTES``, else 512 MiB: the most the entries may total after a store."""
    text = os.environ.get("GRAPHC_CACHE_MAX_BYTES", "")
    if text.strip().isdigit():
        return int(text)
    if text:
        _warn_once("bound", f"GRAPHC_CACHE_MAX_BYTES={text!r} is not a byte count: "
                            f"the bound stays {DEFAULT_MAX_BYTES >> 20} MiB")
    return DEFAULT_MAX_BYTES


def cache_key(ir_text: str, *target_facts: str) -> str:
    """Hex key from the IR text, the target (triple, CPU, features) and the llvmlite (so LLVM) version."""
    digest = hashlib.sha256()
    for part in (FORMAT.decode(), llvmlite.__version__, *target_facts, ir_text):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def load(key: str) -> bytes | None:
    """The cached object code for ``key``, or None if absent, unsafe or not signed with this user's key."""
    try:
        path = _directory(create=False) / f"{key}.o"
        with open(path, "rb", opener=_nofollow) as f:
            _trust(os.fstat(f.fileno()), path, "entry")
            data = f.read()
        secret = _secret()
    except FileNotFoundError:
        return None
    except _Bypass as bypass:
        bypass.warn()
        return None
    except OSError as error:
        _Bypass("entry", f"{path} cannot be read ({error.strerror})").warn()
        return None
    parts = data.split(b"\n", 3)
    if len(parts) != 4 or parts[:2] != [FORMAT, key.encode()] or \
            not hmac.compare_digest(parts[2], _mac(secret, key, parts[3])):
        return None  # torn, from another version, or not written by this user: rebuilt
    with contextlib.suppress(OSError):
        os.utime(path)  # mtime is the LRU clock
    return parts[3]


def store(key: str, payload: bytes) -> None:
    """Write the entry (0600, atomically) and evict the least recently used past the bound; never raises."""
    try:
        directory = _directory(create=True)
        secret = _secret()
        header = b"%s\n%s\n%s\n" % (FORMAT, key.encode(), _mac(secret, key, payload))
        atomic_write_bytes(directory / f"{key}.o", header + payload, mode=0o600)
        evict(directory, max_bytes())
    except _Bypass as bypass:
        bypass.warn()
    except OSError as error:
        _Bypass("unusable", f"{cache_dir()} cannot be written ({error.strerror})").warn()


def evict(directory: Path, bound: int) -> None:
    """Remove entries, least recently used (oldest mtime) first, until they total at most ``bound`` bytes."""
    entries = sorted(_entries(directory), key=lambda entry: (entry[1].st_mtime_ns, entry[0].name))
    total = sum(status.st_size for _, status in entries)
    for path, status in entries:
        if total <= bound:
            break
        with contextlib.suppress(FileNotFoundError):  # another process evicted it first
            os.remove(path)
        total -= status.st_size


def info() -> dict:
    """What ``graphc cache info`` prints: where the cache is, what it holds, its bound and why it is unusable."""
    directory = cache_dir()
    entries = _entries(directory) if directory.is_dir() else []
    return {"directory": directory, "entries": len(entries), "bytes": sum(s.st_size for _, s in entries),
            "max_bytes": max_bytes(), "key": key_path(), "problem": problem()}


def problem() -> str | None:
    """Why load and store would bypass the cache now, or None; creates and warns nothing."""
    try:
        if os.path.lexists(cache_dir()):
            directory = _directory(create=False)
            if not os.access(directory, os.W_OK | os.X_OK):
                return f"{directory} is not writable"
        if os.path.lexists(key_path()):
            _secret()
    except _Bypass as bypass:
        return str(bypass)
    return None


def clear() -> tuple[int, int]:
    """Remove every entry and the temporaries of dead writers; returns how many entries and bytes went."""
    directory = cache_dir()
    if not directory.is_dir():
        return 0, 0
    entries = _entries(directory)
    for path, _ in entries:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
    remove_stale_temporaries(directory)
    return len(entries), sum(status.st_size for _, status in entries)


def _directory(create: bool) -> Path:
    """The cache directory, created 0700 if asked; FileNotFoundError if absent, _Bypass if unusable or unsafe."""
    directory = cache_dir()
    try:
        if create:
            _makedirs(directory)
        status = os.stat(directory)
    except OSError as error:
        if isinstance(error, FileNotFoundError) and not create:
            raise
        raise _Bypass("unusable", f"{directory} cannot be created or read ({error.strerror})") from None
    if not stat.S_ISDIR(status.st_mode):
        raise _Bypass("unusable", f"{directory} is not a directory")
    _trust(status, directory, "directory")
    return directory


def _secret() -> bytes:
    """This user's HMAC key: 32 random bytes, 0600, created on first use; _Bypass if unsafe or unreadable."""
    path = key_path()
    try:
        if not os.path.lexists(path):
            _makedirs(path.parent)
            _check_owner(path.parent)
            with contextlib.suppress(FileExistsError):  # another process created it first: use theirs
                _create_key(path)
        for delay in (0.001, 0.002, 0.004, 0.008, None):  # a short key is being created (_create_key's fallback)
            with open(path, "rb", opener=_nofollow) as f:
                _trust(os.fstat(f.fileno()), path, "key", forbidden=0o077)
                secret = f.read(33)
            if len(secret) >= 32 or delay is None:
                break
            time.sleep(delay)
    except OSError as error:
        raise _Bypass("key", f"{path} cannot be created or read ({error.strerror})") from None
    if len(secret) != 32:
        raise _Bypass("key", f"{path} is not a 32-byte key")
    return secret


def _create_key(path: Path) -> None:
    """Publish a new key whole (hard link); without hard links, create it exclusively and fill it in one write."""
    secret = secrets.token_bytes(32)
    try:
        atomic_write_bytes(path, secret, mode=0o600, replace=False)
    except OSError as error:
        if error.errno not in NO_HARD_LINKS:
            raise
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, secret)
        finally:
            os.close(fd)


def _mac(secret: bytes, key: str, payload: bytes) -> bytes:
    return hmac.new(secret, key.encode() + b"\n" + payload, hashlib.sha256).hexdigest().encode()


def _trust(status, path, reason: str, forbidden: int = 0o022) -> None:
    """_Bypass unless ``path`` is the current user's and grants group and others none of ``forbidden``."""
    if status.st_uid != os.geteuid():
        raise _Bypass(reason, f"{path} is owned by uid {status.st_uid}, not by this user (uid {os.geteuid()})")
    if status.st_mode & forbidden:
        access = "read or write" if forbidden & 0o044 else "write"
        raise _Bypass(reason, f"{path} has mode {stat.S_IMODE(status.st_mode):04o}: group or others can {access} it")


def _entries(directory: Path) -> list:
    """(path, stat) of graphc's entries in ``directory``; other files there are not ours to count or remove."""
    found = []
    with os.scandir(directory) as scan:
        for entry in scan:
            if ENTRY.fullmatch(entry.name):
                with contextlib.suppress(FileNotFoundError):
                    found.append((Path(entry.path), entry.stat(follow_symlinks=False)))
    return found


def _makedirs(directory: Path) -> None:
    """Create ``directory`` and its missing parents 0700 (pathlib would make the parents 0777 under umask 000)."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        _check_owner(path.parent)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)


def _check_owner(parent: Path) -> None:
    """_Bypass unless this user or root (/tmp) owns ``parent``: root under ``sudo -E`` must not fill a user's home."""
    owner = os.stat(parent).st_uid
    if owner not in (os.geteuid(), 0):
        raise _Bypass("owner", f"{parent} is owned by uid {owner}, not by this user (uid {os.geteuid()}): "
                               f"creating nothing in it")


def _nofollow(path, flags):
    # The file checked (fstat) is the file read: never one a symlink swapped in.
    return os.open(path, flags | os.O_NOFOLLOW)
