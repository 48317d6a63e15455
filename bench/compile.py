"""Compile time, stage by stage, cold and from the object cache, and peak memory against a numpy peer, in one run.

    python bench/compile.py [--repeats 3] [--compile-only]

Every measurement runs in a fresh interpreter (a subprocess per configuration), so imports and first-call
costs count as a user meets them: "cold" with an empty GRAPHC_CACHE_DIR, "cached" with the directory the cold
run filled. Configurations:

* seed step: the seed MLP's training step through ``gc.function`` (graphc.viz.examples.mnist_mlp);
* Keras compile: the same model in ``graphc.keras``, the programs ``fit`` and ``evaluate`` compile on first use
  (the train step that reads its batches in place, the evaluate program), fitting and evaluating one batch;
* peak RSS: the Keras MNIST example (examples/mnist_mlp.py: data preparation, one epoch, evaluation) against
  the same program written with numpy alone, each in its own process.

Stages (seconds, medians over ``--repeats`` processes): the graph passes, one by one; planning (the kernel
schedule); IR emission (llvmlite modules and their text); LLVM (parsing and optimizing each module; then code
generation); loading the objects; the runtime layout; cache reads and writes; the rest (building the graph,
autodiff, input checks, the Keras model). Imports, graphc's native backend and Keras front end included, are
measured apart: where Python writes no bytecode caches (PYTHONDONTWRITEBYTECODE, as on the project's machine)
they compile graphc's sources in every process, about 0.3 s that a user's installation pays once.
"""
import argparse
import collections
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

STAGES = ["passes", "plan", "emit IR", "LLVM optimize", "LLVM codegen", "load objects", "layout", "cache I/O",
          "rest"]


# ---- in the child ------------------------------------------------------------------------------------------
def _instrument() -> dict:
    """Wrap graphc's stage functions with timers; returns {stage: seconds}, filled in as they run."""
    import graphc.lower.jit as jit
    import graphc.lower.native as native
    import graphc.passes as passes
    from runtime import cache

    seconds = collections.defaultdict(float)

    def timed(owner, name, stage):
        function = getattr(owner, name)

        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                seconds[stage] += time.perf_counter() - start
        setattr(owner, name, wrapper)

    passes.PIPELINE[:] = [(name, level, _timed_pass(run, name, seconds)) for name, level, run in passes.PIPELINE]
    timed(native, "plan", "plan")
    timed(native.NativeProgram, "_compile_kernels", "compile kernels")
    timed(native, "emit_objects", "LLVM")
    timed(jit, "_optimized_module", "LLVM optimize")
    timed(native, "load_objects", "load objects")
    timed(native.NativeProgram, "_layout", "layout")
    timed(cache, "load", "cache I/O")
    timed(cache, "store", "cache I/O")
    return seconds


def _timed_pass(run, name, seconds):
    def timed_pass(graph):
        start = time.perf_counter()
        result = run(graph)
        seconds[f"pass {name}"] += time.perf_counter() - start
        return result
    return timed_pass


def _stages(seconds: dict, total: float) -> dict:
    """The measured wrappers as disjoint stages (cache reads inside the kernels' compilation counted once)."""
    stages = {"passes": sum(v for k, v in seconds.items() if k.startswith("pass "))}
    stages.update({k: v for k, v in seconds.items() if k.startswith("pass ")})
    stages["plan"] = seconds["plan"]
    stages["LLVM optimize"] = seconds["LLVM optimize"]
    stages["LLVM codegen"] = seconds["LLVM"] - seconds["LLVM optimize"]
    stages["emit IR"] = seconds["compile kernels"] - seconds["LLVM"] - seconds["kernel cache I/O"]
    for stage in ("load objects", "layout", "cache I/O"):
        stages[stage] = seconds[stage]
    stages["rest"] = total - sum(stages[s] for s in STAGES if s != "rest")
    return stages


def _child_compile(config: str) -> dict:
    start = time.perf_counter()
    for module in ("graphc.keras", "graphc.lower.native"):  # imports are measured apart (see the docstring)
        importlib.import_module(module)
    imports = time.perf_counter() - start
    seconds = _instrument()
    _count_kernel_cache_reads(seconds)
    start = time.perf_counter()
    if config == "seed":
        from graphc.viz.examples import mnist_mlp
        mnist_mlp()
    else:  # what fit and evaluate compile on first use: fit's step (reading the batches in place) and evaluate's
        import numpy as np
        model = _keras_mlp()
        x, y = np.zeros((128, 784), np.float32), np.eye(10, dtype=np.float32)[np.zeros(128, int)]
        model.fit(x, y, batch_size=128, verbose=0)
        model.evaluate(x, y, batch_size=128, verbose=0)
    total = time.perf_counter() - start
    return {"imports": imports, "total": total, **_stages(seconds, total)}


def _count_kernel_cache_reads(seconds):
    """Cache reads made while compiling kernels, so that 'emit IR' excludes them."""
    import graphc.lower.native as native
    compile_kernels = native.NativeProgram._compile_kernels

    def wrapper(self):
        before = seconds["cache I/O"]
        try:
            return compile_kernels(self)
        finally:
            seconds["kernel cache I/O"] += seconds["cache I/O"] - before
    native.NativeProgram._compile_kernels = wrapper


def _keras_mlp():
    from graphc.keras import layers, models
    model = models.Sequential([layers.Dense(512, activation="relu", input_shape=(784,)),
                               layers.Dense(10, activation="softmax")])
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def _child_memory(config: str, data: str) -> dict:
    """Peak RSS (ru_maxrss) of the Keras MNIST example, or of the numpy peer, on the arrays in ``data``."""
    import numpy as np
    if config == "graphc":
        from graphc.keras.datasets import mnist
        (train_x, train_y), (test_x, test_y) = mnist.load_data(path=data)
    else:
        with np.load(data) as arrays:
            train_x, train_y, test_x, test_y = (arrays[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    train_x = train_x.reshape((60000, 28 * 28)).astype("float32") / 255
    test_x = test_x.reshape((10000, 28 * 28)).astype("float32") / 255
    train_y, test_y = np.eye(10, dtype=np.float32)[train_y], np.eye(10, dtype=np.float32)[test_y]
    if config == "graphc":
        model = _keras_mlp()
        model.fit(train_x, train_y, epochs=1, batch_size=128, verbose=0)
        model.evaluate(test_x, test_y, verbose=0)
    else:
        _numpy_epoch(train_x, train_y, test_x, test_y)
    return {"peak MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _numpy_epoch(x, y, test_x, test_y, learning_rate=0.001, rho=0.9, epsilon=1e-7, batch=128):
    """One shuffled epoch and an evaluation of the seed MLP in numpy alone (bench/step.py's NumpyStep imports
    graphc, whose modules would count in this process's memory)."""
    import numpy as np
    rng = np.random.default_rng(0)
    params = [rng.uniform(-limit, limit, shape).astype(np.float32) if len(shape) == 2 else np.zeros(shape, np.float32)
              for shape, limit in [((784, 512), (6 / 1296) ** 0.5), ((512,), 0), ((512, 10), (6 / 522) ** 0.5),
                                   ((10,), 0)]]
    squares = [np.zeros_like(p) for p in params]

    def forward(inputs):
        hidden = np.maximum(inputs @ params[0] + params[1], 0)
        logits = hidden @ params[2] + params[3]
        shifted = logits - logits.max(axis=1, keepdims=True)
        return hidden, shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

    for rows in np.array_split(rng.permutation(len(x)), -(-len(x) // batch)):
        inputs, targets = x[rows], y[rows]
        hidden, log_p = forward(inputs)
        d_logits = (np.exp(log_p) - targets) / len(rows)
        d_hidden = (d_logits @ params[2].T) * (hidden > 0)
        grads = [inputs.T @ d_hidden, d_hidden.sum(axis=0), hidden.T @ d_logits, d_logits.sum(axis=0)]
        for param, square, grad in zip(params, squares, grads):
            square *= rho
            square += (1 - rho) * grad * grad
            param -= learning_rate * grad / np.sqrt(square + epsilon)
    return (forward(test_x)[1].argmax(axis=1) == test_y.argmax(axis=1)).mean()


# ---- in the parent -----------------------------------------------------------------------------------------
def _run_child(*arguments, cache_dir=None) -> dict:
    env = dict(os.environ)
    if cache_dir is not None:
        env["GRAPHC_CACHE_DIR"] = cache_dir
    done = subprocess.run([sys.executable, __file__, "--child", *arguments], env=env, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.splitlines()[-1])


def _compile_table(repeats: int) -> None:
    results = {}
    for config in ("seed", "keras"):
        cold, cached = [], []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as cache_dir:
                cold.append(_run_child("compile", config, cache_dir=cache_dir))
                cached.append(_run_child("compile", config, cache_dir=cache_dir))
        results[f"{config} cold"], results[f"{config} cached"] = cold, cached
    names = list(results)
    print(f"compile seconds, median of {repeats} processes each (imports not included)")
    print(f"  {'stage':34s}" + "".join(f"{n:>14s}" for n in names))
    rows = ["total"] + STAGES + sorted({k for runs in results.values() for k in runs[0] if k.startswith("pass ")})
    for row in rows + ["imports"]:
        cells = [statistics.median(run.get(row, 0.0) for run in runs) for runs in results.values()]
        print(f"  {row:34s}" + "".join(f"{c:14.3f}" for c in cells))


def _memory_table() -> None:
    import numpy as np
    from graphc.keras.datasets import mnist
    (x_train, y_train), (x_test, y_test) = mnist.load_data()
    with tempfile.TemporaryDirectory() as directory:
        data = os.path.join(directory, "mnist.npz")
        np.savez(data, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
        graphc_peak = _run_child("memory", "graphc", data, cache_dir=os.path.join(directory, "objects"))["peak MiB"]
        numpy_peak = _run_child("memory", "numpy", data)["peak MiB"]
    print("peak RSS of the Keras MNIST example (one epoch, evaluation), cold cache: "
          f"graphc {graphc_peak:.0f} MiB, numpy peer {numpy_peak:.0f} MiB, ratio {graphc_peak / numpy_peak:.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile-only", action="store_true", help="skip the peak RSS comparison (an epoch)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, config, *rest = args.child
        result = _child_compile(config) if kind == "compile" else _child_memory(config, *rest)
        print(json.dumps(result))
        return
    _compile_table(args.repeats)
    if not args.compile_only:
        _memory_table()


if __name__ == "__main__":
    main()
