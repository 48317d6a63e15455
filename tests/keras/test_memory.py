"""Memory (docs/performance.md, "Memory"): a program that loads and prepares its data before building a model
holds none of the compiler's modules at that point, and training reads the caller's arrays without copying them."""
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from graphc.keras import layers, models

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# What building and compiling a model needs (about 100 MiB resident together), and what it never does.
COMPILER = {"sympy", "llvmlite", "graphc.graph", "graphc.passes", "runtime.native", "numpy.random", "_hashlib"}


def modules_after(code: str) -> set:
    """The modules a fresh interpreter (importing graphc from this repository) holds after running ``code``."""
    result = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sys.modules))"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_the_keras_programs_imports_load_no_compiler():
    """The imports of examples/mnist_mlp.py and of a Keras program's usual modules: the data preparation after
    them peaks with only these in memory (the compiler loads when the model is built)."""
    loaded = modules_after("import graphc\n"
                           "from graphc.keras.datasets import mnist\n"
                           "from graphc.keras.utils import to_categorical\n"
                           "from graphc.keras import callbacks, distribution, layers, mixed_precision, models\n"
                           "from graphc import distributed\n"
                           "import runtime")
    assert not loaded & COMPILER, sorted(loaded & COMPILER)


def test_training_loads_no_networkx():
    loaded = modules_after("import numpy as np\n"
                           "from graphc.keras import layers, models\n"
                           "model = models.Sequential([layers.Dense(3, input_shape=(4,))])\n"
                           "model.compile(optimizer='sgd', loss='mse')\n"
                           "model.fit(np.ones((8, 4), np.float32), np.ones((8, 3), np.float32), verbose=0)")
    assert {"sympy", "llvmlite"} <= loaded  # it did compile and train
    assert "networkx" not in loaded


def test_the_public_api_is_what_it_was():
    """The first use of a public name loads them all; a submodule imported first does not hide the name it shares
    (graphc.function); star imports and dir() list the API; runtime's ProgramError is there when asked for."""
    loaded = modules_after("import graphc.function\n"
                           "import graphc as gc\n"
                           "assert callable(gc.function) and gc.function.__module__ == 'graphc.function'\n"
                           "assert gc.Tensor is gc.Node and gc.relu.__module__ == 'graphc.ops.elementwise'\n"
                           "assert {'placeholder', 'grad', 'explain', 'to_networkx'} <= set(dir(gc))\n"
                           "assert not hasattr(gc, 'no_such_name')\n"
                           "from graphc import *\n"
                           "assert callable(function) and callable(placeholder)\n"
                           "from graphc.keras import Sequential, Input\n"
                           "import graphc.keras as keras\n"
                           "assert keras.Model.__module__ == 'graphc.keras.models' and 'layers' in dir(keras)\n"
                           "from runtime import ProgramError\n"
                           "import runtime.native\n"
                           "assert ProgramError is runtime.native.ProgramError")
    assert "graphc.ops" in loaded


def test_an_unknown_name_raises_attribute_error():
    import graphc
    import graphc.keras
    import runtime
    for module in (graphc, graphc.keras, runtime):
        with pytest.raises(AttributeError, match="no_such_name"):
            module.no_such_name


@pytest.mark.parametrize("steps_per_execution", [None, 1])
def test_fit_does_not_copy_the_training_arrays(steps_per_execution):
    """Python's allocations during an epoch (numpy's included) stay far below the training array's size: neither
    the chunked epoch nor the call per batch nor the validation split copies x (or one-hot y)."""
    rng = np.random.default_rng(0)
    x = rng.random((8192, 784), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, len(x))]
    model = models.Sequential([layers.Dense(16, activation="relu", input_shape=(784,)),
                               layers.Dense(10, activation="softmax")])
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"],
                  steps_per_execution=steps_per_execution)
    model.fit(x[:256], y[:256], batch_size=128, validation_split=0.5, verbose=0)  # compiles, sizes the buffers
    tracemalloc.start()
    try:
        model.fit(x, y, batch_size=128, validation_split=0.25, verbose=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < x.nbytes / 8, f"fit allocated {peak} bytes at its peak for a training array of {x.nbytes}"


def test_fit_converts_float64_inputs_to_float32_once_not_at_every_epoch(monkeypatch):
    from graphc.function import Function
    rng = np.random.default_rng(1)
    x = rng.random((300, 20))  # float64, as x / 255.0 makes it
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, len(x))]
    fed, run_steps = [], Function.run_steps
    monkeypatch.setattr(Function, "run_steps", lambda self, batches, *arrays, **options: (
        fed.extend(a.dtype for a in arrays), run_steps(self, batches, *arrays, **options))[1])
    fitted = []
    for data in (x, x.astype(np.float32)):
        model = models.Sequential([layers.Dense(4, activation="relu", input_shape=(20,)), layers.Dense(3)])
        model.set_weights([np.full(w.shape, 0.1, np.float32) for w in model.get_weights()])
        model.compile(optimizer="sgd", loss="categorical_crossentropy")
        model.fit(data, y, batch_size=64, epochs=2, shuffle=False, verbose=0)
        fitted.append(model.get_weights())
    assert fed and set(fed) == {np.dtype(np.float32)}
    for converted, given in zip(*fitted):
        np.testing.assert_array_equal(converted, given)
    with pytest.raises(ValueError, match=r"sequential.*x.*1e\+300 at index \[0, 0\] is outside float32's range"):
        model.fit(np.full((4, 20), 1e300), y[:4], verbose=0)
