"""Checkpoints: named numpy arrays plus JSON metadata in one ``.npz`` file.

Format: a zip archive readable by ``numpy.load(path, allow_pickle=False)``
with one ``<name>.npy`` entry per array and one extra entry, ``META_KEY``,
holding the UTF-8 JSON metadata as a uint8 array. Nothing is pickled, so
loading a checkpoint never executes code from the file.

Loading trusts nothing in the file: every malformed file gives CheckpointError,
and no array is allocated before the zip directory and the array's npy header
have shown that it fits in what the file holds (for stored entries, the
file's size; for compressed ones, deflate's largest ratio and
MAX_INFLATED_BYTES), so a crafted file cannot make the reader allocate more.
"""

import json
import math
import os
import struct
import zipfile
import zlib

import numpy as np

from .atomic import atomic_path

META_KEY = "__graphc_meta__"
MAX_INFLATED_BYTES = 4 << 30  # what all compressed entries of one file may expand to, together
MAX_DEFLATE_RATIO = 1032  # deflate cannot expand data more; an entry claiming more is crafted or corrupt

# What reading a damaged or crafted zip/npy can raise, besides the checks of _read_arrays.
_READ_ERRORS = (OSError, ValueError, TypeError, EOFError, KeyError, OverflowError, NotImplementedError,
                RuntimeError, struct.error, zlib.error, zipfile.BadZipFile)


class CheckpointError(ValueError):
    """A checkpoint file exists but cannot be read as a checkpoint."""


def save_checkpoint(path, arrays, meta):
    """Atomically write ``arrays`` (dict name -> array) and ``meta`` to ``path``.

    ``meta`` must be JSON-serializable (epoch, optimizer name, ...).
    Raises ValueError for a bad array name or an object-dtype array and
    TypeError for metadata JSON cannot encode; the file is not touched then.
    """
    arrays = {name: _checked_array(name, value) for name, value in arrays.items()}
    try:
        meta_json = json.dumps(meta, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise TypeError(f"checkpoint meta is not JSON-serializable: {e}") from e
    arrays[META_KEY] = np.frombuffer(meta_json.encode("utf-8"), dtype=np.uint8)
    with atomic_path(path) as tmp:
        _write_npz(tmp, arrays)


def load_checkpoint(path):
    """Return ``(arrays, meta)`` read from a file written by save_checkpoint.

    Raises FileNotFoundError when ``path`` does not exist and CheckpointError
    (a ValueError) naming ``path`` when it is not a readable checkpoint.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {os.fspath(path)}")
    try:
        with zipfile.ZipFile(path) as archive:
            arrays = _read_arrays(archive, os.path.getsize(path))
    except _READ_ERRORS as e:
        raise CheckpointError(f"corrupt or unreadable checkpoint {os.fspath(path)}: {e}") from e
    if META_KEY not in arrays:
        raise CheckpointError(f"{os.fspath(path)} is not a graphc checkpoint (no {META_KEY} entry)")
    meta_bytes = arrays.pop(META_KEY).tobytes()
    try:
        meta = json.loads(meta_bytes.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # RecursionError: JSON nested too deeply
        raise CheckpointError(f"corrupt metadata in checkpoint {os.fspath(path)}: {e}") from e
    return arrays, meta


def _read_arrays(archive, file_size):
    """Every entry's array; ValueError before allocating any that the file cannot really hold."""
    members = archive.infolist()
    names = [member.filename for member in members]
    if len(set(names)) != len(names):
        raise ValueError("an entry name appears twice")
    stored = sum(member.compress_size for member in members)
    if stored > file_size:  # entries overlap: the same bytes counted many times
        raise ValueError(f"its entries claim {stored} bytes but the file has {file_size}")
    inflated = 0
    for member in members:
        if member.compress_type == zipfile.ZIP_DEFLATED:
            inflated += member.file_size
            if member.file_size > MAX_DEFLATE_RATIO * member.compress_size or inflated > MAX_INFLATED_BYTES:
                raise ValueError(f"entry {member.filename} would expand to {member.file_size} bytes from "
                                 f"{member.compress_size} (limits: ratio {MAX_DEFLATE_RATIO}, "
                                 f"{MAX_INFLATED_BYTES} bytes in all)")
        elif member.compress_type != zipfile.ZIP_STORED:
            raise ValueError(f"entry {member.filename} uses zip compression method {member.compress_type}; "
                             "only stored and deflated entries are read")
        elif member.file_size != member.compress_size:
            raise ValueError(f"stored entry {member.filename} declares {member.file_size} bytes but holds "
                             f"{member.compress_size}")
    arrays = {}
    for member in members:
        if not member.filename.endswith(".npy"):
            raise ValueError(f"entry {member.filename} is not a .npy array")
        with archive.open(member) as entry:
            _check_npy_header(entry, member)
        with archive.open(member) as entry:
            arrays[member.filename[:-len(".npy")]] = np.lib.format.read_array(entry, allow_pickle=False)
    return arrays


def _check_npy_header(entry, member):
    """ValueError unless the npy header of ``entry`` declares a plain array of exactly the bytes that follow it."""
    version = np.lib.format.read_magic(entry)
    if version not in ((1, 0), (2, 0)):
        raise ValueError(f"entry {member.filename} has npy format version {version}, not 1.0 or 2.0")
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read_header(entry)
    if dtype.hasobject:
        raise ValueError(f"entry {member.filename} holds Python objects (a pickle); they are never loaded")
    declared, held = math.prod(shape) * dtype.itemsize, member.file_size - entry.tell()
    if declared != held:
        raise ValueError(f"entry {member.filename} declares a {dtype} array of shape {shape} ({declared} bytes) "
                         f"but holds {held} bytes")


def _checked_array(name, value):
    if not isinstance(name, str) or not name or name == META_KEY:
        raise ValueError(f"invalid checkpoint array name: {name!r}")
    array = np.asarray(value)
    if array.dtype.hasobject:
        raise ValueError(f"checkpoint array {name!r} has object dtype; only plain numeric arrays can be saved")
    return array


def _write_npz(path, arrays):
    # Written entry by entry instead of with numpy.savez(**arrays) because
    # savez's keyword interface breaks on names like "file" or "allow_pickle".
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in arrays.items():
            with archive.open(name + ".npy", "w", force_zip64=True) as entry:
                np.lib.format.write_array(entry, array, allow_pickle=False)
