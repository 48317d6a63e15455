"""Checkpoints: named numpy arrays plus JSON metadata in one ``.npz`` file.

Format: a zip archive readable by ``numpy.load(path, allow_pickle=False)``
with one ``<name>.npy`` entry per array and one extra entry, ``META_KEY``,
holding the UTF-8 JSON metadata as a uint8 array. Nothing is pickled, so
loading a checkpoint never executes code from the file.
"""

import json
import os
import zipfile

import numpy as np

from .atomic import atomic_path

META_KEY = "__graphc_meta__"


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
    (a ValueError) when it is not a readable checkpoint.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {os.fspath(path)}")
    try:
        with zipfile.ZipFile(path):  # np.load would hand back a bare array for a .npy file
            pass
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"corrupt or unreadable checkpoint {os.fspath(path)}: {e}") from e
    if META_KEY not in arrays:
        raise CheckpointError(f"{os.fspath(path)} is not a graphc checkpoint (no {META_KEY} entry)")
    meta_bytes = arrays.pop(META_KEY).tobytes()
    try:
        meta = json.loads(meta_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"corrupt metadata in checkpoint {os.fspath(path)}: {e}") from e
    return arrays, meta


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
