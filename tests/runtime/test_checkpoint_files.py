"""load_checkpoint on damaged and crafted files: always CheckpointError naming the file, never a pickle, and
never an allocation larger than the file can back (zip-directory lies, npy-header lies, overlapping entries)."""
import io
import struct
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest

from runtime import checkpoint
from runtime.checkpoint import META_KEY, CheckpointError, load_checkpoint, save_checkpoint


def npy(array, header=None):
    """The .npy bytes of ``array``; ``header`` replaces the shape it declares."""
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=True)
    data = buffer.getvalue()
    if header is None:
        return data
    fake = io.BytesIO()
    np.lib.format.write_array_header_1_0(fake, {"descr": np.lib.format.dtype_to_descr(array.dtype),
                                                "fortran_order": False, "shape": header})
    return fake.getvalue() + data[len(data) - array.nbytes:]


META = npy(np.frombuffer(b"{}", np.uint8))


def entry(name, payload, method=zipfile.ZIP_STORED, size=None):
    """A zip entry; ``size`` is the uncompressed size its headers declare (the true one by default)."""
    data = payload if method == zipfile.ZIP_STORED else zlib.compress(payload)[2:-4]  # raw deflate
    return {"name": name.encode(), "data": data, "method": method, "crc": zlib.crc32(payload),
            "size": len(payload) if size is None else size}


def local_header(e):
    return struct.pack("<I5H3I2H", 0x04034B50, 20, 0, e["method"], 0, 0x21, e["crc"], len(e["data"]), e["size"],
                       len(e["name"]), 0) + e["name"]


def zip_bytes(entries, body=None, offsets=None):
    """A zip archive written by hand, so that its headers can lie; ``body``/``offsets`` lay entries out freely."""
    if body is None:
        body, offsets = b"", []
        for e in entries:
            offsets.append(len(body))
            body += local_header(e) + e["data"]
    central = b"".join(
        struct.pack("<I6H3I5H2I", 0x02014B50, 20, 20, 0, e["method"], 0, 0x21, e["crc"], len(e["data"]), e["size"],
                    len(e["name"]), 0, 0, 0, 0, 0, offset) + e["name"]
        for e, offset in zip(entries, offsets))
    return body + central + struct.pack("<I4H2IH", 0x06054B50, 0, 0, len(entries), len(entries), len(central),
                                        len(body), 0)


def overlapping_entries(count):
    """Entry k's npy data is entry k+1's whole record (header and data), down to the metadata: ~count² bytes."""
    entries = [entry(META_KEY + ".npy", META)]
    for k in range(count):
        inner = local_header(entries[0]) + entries[0]["data"]
        entries.insert(0, entry(f"a{k}.npy", npy(np.frombuffer(inner, np.uint8))))
    offsets = [0]
    for outer, inner in zip(entries, entries[1:]):
        offsets.append(offsets[-1] + len(local_header(outer)) + len(outer["data"]) - len(local_header(inner))
                       - len(inner["data"]))
    return zip_bytes(entries, local_header(entries[0]) + entries[0]["data"], offsets)


class Evil:
    def __reduce__(self):
        return open, (self.marker, "w")


def pickled_object_array(marker):
    evil = Evil()
    evil.marker = str(marker)
    return npy(np.array([evil], dtype=object))


TIB = 1 << 40
BOMBS = {
    # Stored entry whose npy header declares 1 TiB of float32 followed by 16 bytes.
    "npy header claims a terabyte": lambda: zip_bytes(
        [entry(META_KEY + ".npy", META), entry("w.npy", npy(np.zeros(4, np.float32), header=(TIB // 4,)))]),
    # The same lie for 1 GiB, which numpy could allocate: it must not.
    "npy header claims a gigabyte": lambda: zip_bytes(
        [entry(META_KEY + ".npy", META), entry("w.npy", npy(np.zeros(4, np.float32), header=(1 << 28,)))]),
    # Deflated entry whose zip headers and npy header both declare 4 TiB.
    "deflated entry claims 4 GiB": lambda: zip_bytes(
        [entry(META_KEY + ".npy", META),
         entry("w.npy", npy(np.zeros(4, np.float32), header=(TIB,)), zipfile.ZIP_DEFLATED, size=0xFFFFFFF0)]),
    # Stored entry declaring more bytes than the whole file has.
    "stored entry larger than the file": lambda: zip_bytes(
        [entry(META_KEY + ".npy", META), entry("w.npy", npy(np.zeros(4, np.float32)), size=1 << 31)]),
    "overlapping entries": lambda: overlapping_entries(30),
}


@pytest.mark.parametrize("name, message", [
    ("npy header claims a terabyte", r"declares a float32 array of shape \(274877906944,\)"),
    ("npy header claims a gigabyte", r"\(1073741824 bytes\) but holds 16 bytes"),
    ("deflated entry claims 4 GiB", "would expand to 4294967280 bytes"),
    ("stored entry larger than the file", "declares 2147483648 bytes but holds"),
    ("overlapping entries", "entries claim .* bytes but the file has"),
])
def test_a_bomb_is_refused_before_anything_is_allocated(tmp_path, name, message):
    path = tmp_path / "bomb.npz"
    path.write_bytes(BOMBS[name]())
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=message) as info:
            load_checkpoint(path)
        assert str(path) in str(info.value)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"loading allocated {peak} bytes"


def test_compressed_entries_load_up_to_the_documented_cap(tmp_path, monkeypatch):
    path = tmp_path / "compressed.npz"
    np.savez_compressed(path, **{META_KEY: np.frombuffer(b'{"epoch": 1}', np.uint8), "w": np.zeros(5000)})
    arrays, meta = load_checkpoint(path)
    assert meta == {"epoch": 1} and np.array_equal(arrays["w"], np.zeros(5000))
    monkeypatch.setattr(checkpoint, "MAX_INFLATED_BYTES", 10_000)
    with pytest.raises(CheckpointError, match="would expand to 40128 bytes"):
        load_checkpoint(path)


def test_a_pickled_object_array_is_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npz"
    path.write_bytes(zip_bytes([entry(META_KEY + ".npy", META), entry("w.npy", pickled_object_array(marker))]))
    with pytest.raises(CheckpointError, match="evil.npz.*holds Python objects"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("entries, message", [
    ([entry(META_KEY + ".npy", META), entry("w.txt", b"hello")], "not a .npy array"),
    ([entry(META_KEY + ".npy", META), entry("w.npy", b"\x93NUMPY\x09\x00junk")], r"npy format version \(9, 0\)"),
    ([entry(META_KEY + ".npy", META), entry("w.npy", npy(np.zeros(4)), method=12)], "compression method 12"),
    ([entry(META_KEY + ".npy", META), entry(META_KEY + ".npy", META)], "appears twice"),
    ([entry(META_KEY + ".npy", npy(np.frombuffer(b"\xff\xfe", np.uint8)))], "corrupt metadata"),
    ([entry(META_KEY + ".npy", npy(np.frombuffer(b"[" * 100_000, np.uint8)))], "corrupt metadata.*recursion"),
])
def test_crafted_entries_give_checkpoint_errors_that_say_what_is_wrong(tmp_path, entries, message):
    path = tmp_path / "crafted.npz"
    path.write_bytes(zip_bytes(entries))
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


@pytest.fixture(params=["stored", "deflated"])
def good_file(tmp_path, request):
    path = tmp_path / "good.npz"
    arrays = {"w": np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32), "b": np.arange(3)}
    if request.param == "stored":
        save_checkpoint(path, arrays, {"epoch": 2})
    else:
        np.savez_compressed(path, **arrays, **{META_KEY: np.frombuffer(b'{"epoch": 2}', np.uint8)})
    return path


def test_every_truncation_gives_a_checkpoint_error(tmp_path, good_file):
    data = good_file.read_bytes()
    path = tmp_path / "cut.npz"
    for length in range(len(data)):
        path.write_bytes(data[:length])
        with pytest.raises(CheckpointError, match="cut.npz"):
            load_checkpoint(path)


def test_every_flipped_byte_gives_a_checkpoint_error_or_the_original_arrays(tmp_path, good_file):
    data = good_file.read_bytes()
    original, _ = load_checkpoint(good_file)
    path = tmp_path / "flipped.npz"
    for position in range(len(data)):
        path.write_bytes(data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1:])
        try:
            arrays, _ = load_checkpoint(path)
        except CheckpointError as e:
            assert "flipped.npz" in str(e)
        else:  # a byte the reader ignores (a timestamp, an attribute)
            assert arrays.keys() == original.keys()
            assert all(np.array_equal(arrays[name], original[name]) for name in original)
