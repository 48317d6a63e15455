"""On-disk cache of compiled object code, so a program seen before skips LLVM entirely.

An entry is ``<key>.o`` under the cache directory: a header naming the format,
the key and the SHA-256 of the payload, then the object code. An entry whose
header or checksum does not match (a torn write, another version's file, a
foreign file) is ignored and rebuilt, never loaded blindly.
"""
import hashlib
import os
from pathlib import Path

import llvmlite

from .atomic import atomic_write_bytes

FORMAT = b"graphc-object-v1"


def cache_dir() -> Path:
    """``$GRAPHC_CACHE_DIR``, else ``$XDG_CACHE_HOME/graphc/objects`` (default ``~/.cache/graphc/objects``)."""
    explicit = os.environ.get("GRAPHC_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "graphc" / "objects"


def cache_key(ir_text: str, *target_facts: str) -> str:
    """Hex key from the IR text, the target (triple, CPU, features) and the llvmlite (so LLVM) version."""
    digest = hashlib.sha256()
    for part in (FORMAT.decode(), llvmlite.__version__, *target_facts, ir_text):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _header(key: str, payload: bytes) -> bytes:
    return b"%s\n%s\n%s\n" % (FORMAT, key.encode(), hashlib.sha256(payload).hexdigest().encode())


def load(key: str) -> bytes | None:
    """The cached object code for ``key``, or None if absent or not trustworthy."""
    path = cache_dir() / f"{key}.o"
    try:
        data = path.read_bytes()
    except OSError:
        return None
    parts = data.split(b"\n", 3)
    if len(parts) != 4:
        return None
    payload = parts[3]
    if _header(key, payload) != data[: len(data) - len(payload)]:
        return None
    return payload


def store(key: str, payload: bytes) -> None:
    """Write the entry atomically; a cache that cannot be written only costs a recompilation."""
    directory = cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(directory / f"{key}.o", _header(key, payload) + payload)
    except OSError:
        pass
