import os
import zipfile

import numpy as np
import pytest

from runtime.atomic import atomic_path, atomic_write_bytes
from runtime.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def test_round_trip_keeps_arrays_dtypes_and_meta(tmp_path):
    arrays = {
        "dense/kernel": np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32),
        "dense/bias": np.arange(4, dtype=np.float64),
        "step": np.array(7, dtype=np.int64),
        "mask": np.array([True, False]),
        "file": np.zeros(2),  # names numpy.savez's keyword interface cannot take
        "allow_pickle": np.ones(1),
    }
    meta = {"epoch": 3, "optimizer": "adam", "lr": 1e-3, "history": {"loss": [0.5, 0.25]}}
    path = tmp_path / "model.ckpt.npz"
    save_checkpoint(path, arrays, meta)
    loaded, loaded_meta = load_checkpoint(path)
    assert loaded_meta == meta
    assert loaded.keys() == arrays.keys()
    for name, array in arrays.items():
        assert loaded[name].dtype == array.dtype
        np.testing.assert_array_equal(loaded[name], array)


def test_checkpoint_is_a_plain_npz_without_pickles(tmp_path):
    path = tmp_path / "c.npz"
    save_checkpoint(path, {"w": np.ones(3)}, {"epoch": 1})
    with np.load(path, allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["w"], np.ones(3))


def test_object_arrays_and_bad_meta_are_rejected_without_touching_the_file(tmp_path):
    path = tmp_path / "c.npz"
    save_checkpoint(path, {"w": np.ones(3)}, {"epoch": 1})
    before = path.read_bytes()
    with pytest.raises(ValueError, match="object dtype"):
        save_checkpoint(path, {"w": np.array([{}, None], dtype=object)}, {})
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(path, {"w": np.zeros(3)}, {"when": object()})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["c.npz"]


def test_missing_checkpoint_is_a_file_not_found_error_naming_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_checkpoint(tmp_path / "nope.npz")


def test_corrupt_file_raises_checkpoint_error(tmp_path):
    path = tmp_path / "c.npz"
    save_checkpoint(path, {"w": np.ones(1000)}, {"epoch": 1})
    path.write_bytes(path.read_bytes()[:500])  # truncated
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)
    path.write_bytes(b"not a zip at all")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)


def test_npz_without_meta_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, w=np.ones(2))
    with pytest.raises(CheckpointError, match="not a graphc checkpoint"):
        load_checkpoint(path)


def test_failure_inside_atomic_path_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half of the new con")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["data.bin"]


def test_atomic_path_replaces_on_success_in_the_same_directory(tmp_path):
    path = tmp_path / "data.npy"
    path.write_bytes(b"old")
    with atomic_path(path) as tmp:
        assert os.path.dirname(tmp) == str(tmp_path)
        assert path.read_bytes() == b"old"  # published only when the block ends
        np.save(tmp, np.arange(3))  # must not append a second ".npy" to the temp name
    np.testing.assert_array_equal(np.load(path), np.arange(3))
    assert os.listdir(tmp_path) == ["data.npy"]


def test_atomic_write_bytes_creates_and_overwrites(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_bytes(path, b"one")
    atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_save_failure_midway_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    save_checkpoint(path, {"w": np.ones(3)}, {"epoch": 1})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np.lib.format, "write_array", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"w": np.zeros(3)}, {"epoch": 2})
    monkeypatch.undo()
    arrays, meta = load_checkpoint(path)
    assert meta == {"epoch": 1}
    np.testing.assert_array_equal(arrays["w"], np.ones(3))
    assert zipfile.is_zipfile(path) and os.listdir(tmp_path) == ["c.npz"]


def test_a_npy_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "array.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
