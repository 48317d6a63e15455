"""The seed model's training epoch through the Keras front end (examples/mnist_mlp.py: 784 -> 512 relu -> 10
softmax, RMSprop, batch 128, 469 steps), one configuration per fresh process, in one run, against Keras 3 on JAX:

    python bench/epoch.py [--epochs 5] [--precision float32 mixed_bfloat16] [--steps-per-execution None 1]
                          [--no-keras] [--threads 2] [--peer-venv bench/.venv]

For each configuration: the steady epoch (the median of epochs 2..N), the Python in it (the epoch's time minus
the time spent inside the native calls; median seconds and median share of the epoch), the compile of the train
and evaluate programs cold (an empty GRAPHC_CACHE_DIR) and from the object cache, the process's peak RSS
(``resource.getrusage``) and the test accuracy after the N epochs. ``--steps-per-execution 1`` is the
call-per-batch path (Python gathers each batch and calls the step); None runs the epoch in native chunks
(``compile(steps_per_execution=None)``).

Keras 3 (JAX backend) trains the same model, written the same way, on the same data, under each ``--precision``
as its global policy (``keras.mixed_precision.set_global_policy``), in a process of the peers' venv
(bench/peers.py); its first epoch includes JAX's compile, which is not reported apart. Every process runs on
``--threads`` cores.
"""
import argparse
import contextlib
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import peers

BATCH = 128


def mnist_data():
    """The example's arrays: train and test images as float32 in [0, 1], their labels one-hot."""
    from graphc.keras.datasets import mnist
    from graphc.keras.utils import to_categorical

    with contextlib.redirect_stderr(io.StringIO()):
        (x, y), (test_x, test_y) = mnist.load_data()
    return (x.reshape(60000, 784).astype("float32") / 255, to_categorical(y),
            test_x.reshape(10000, 784).astype("float32") / 255, to_categorical(test_y))


def seed_model(keras, **compile_options):
    """The seed MLP in ``keras`` (graphc.keras or Keras 3), compiled as the example compiles it."""
    model = keras.models.Sequential([keras.layers.Input((784,)), keras.layers.Dense(512, activation="relu"),
                                     keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"], **compile_options)
    return model


def worker(precision: str, steps_per_execution, epochs: int) -> dict:
    """Compile and train ``epochs`` epochs (0: compile only) in this process (its cache dir set by the parent); the
    measurements as a dict."""
    import graphc.keras
    from runtime import native

    native_seconds = _time_native_calls(native)
    graphc.keras.mixed_precision.set_global_policy(precision)
    x, y, test_x, test_y = mnist_data()
    compile_seconds = _compile_seconds(graphc.keras, x, y, steps_per_execution=steps_per_execution)
    graphc.keras.utils.set_random_seed(0)
    model = seed_model(graphc.keras, steps_per_execution=steps_per_execution)
    if not epochs:
        return {"compile_s": compile_seconds}
    native_per_epoch = []
    native_timer = graphc.keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: native_seconds.__setitem__(0, 0.0),
        on_epoch_end=lambda epoch, logs: native_per_epoch.append(native_seconds[0]))
    result = train(graphc.keras, model, (x, y, test_x, test_y), epochs, [native_timer])
    python_seconds = [e - n for e, n in zip(result["epochs_s"], native_per_epoch)][_steady(epochs)]
    return {**result, "precision": precision, "steps_per_execution": steps_per_execution,
            "compile_s": compile_seconds, "python_s": statistics.median(python_seconds),
            "python_share": statistics.median(p / e for p, e in zip(python_seconds,
                                                                    result["epochs_s"][_steady(epochs)]))}


def _compile_seconds(keras, x, y, **compile_options) -> float:
    """What fit and evaluate spend compiling their programs (compiled on first use: fit's train step, under
    steps_per_execution=None the variant that reads the batches in place, and the evaluate program): a probe
    model of the same layers fits one batch and evaluates one."""
    probe = seed_model(keras, **compile_options)
    start = time.perf_counter()
    probe.fit(x[:BATCH], y[:BATCH], batch_size=BATCH, epochs=1, verbose=0)
    probe.evaluate(x[:BATCH], y[:BATCH], batch_size=BATCH, verbose=0)
    return time.perf_counter() - start


def keras_worker(precision: str, epochs: int) -> dict:
    """Keras 3 on JAX (this process runs in the peers' venv): ``epochs`` epochs under the global ``precision``
    policy, measured as ``worker`` measures graphc's."""
    import keras

    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(0)
    data = mnist_data()
    return {**train(keras, seed_model(keras), data, epochs), "precision": precision, "steps_per_execution": 1}


def train(keras, model, data, epochs: int, callbacks=()) -> dict:
    """Fit ``model`` (of ``keras``: graphc.keras or Keras 3) for ``epochs`` epochs with the progress bar a user
    sees (its output discarded), then evaluate it on the test set; every epoch's seconds, the steady epoch (the
    median of epochs 2..N), the final loss, the test accuracy and the process's peak RSS."""
    x, y, test_x, test_y = data
    epoch_times, starts = [], []
    timer = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: starts.append(time.perf_counter()),
        on_epoch_end=lambda epoch, logs: epoch_times.append(time.perf_counter() - starts[-1]))
    with contextlib.redirect_stdout(io.StringIO()):
        history = model.fit(x, y, batch_size=BATCH, epochs=epochs, callbacks=[timer, *callbacks], verbose=1)
    test_accuracy = model.evaluate(test_x, test_y, batch_size=BATCH, verbose=0)[1]
    return {"epoch_s": statistics.median(epoch_times[_steady(epochs)]), "epochs_s": epoch_times,
            "final_loss": history.history["loss"][-1], "test_accuracy": float(test_accuracy),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _steady(epochs: int) -> slice:
    """Epochs 2..N, or the one epoch there is."""
    return slice(1, None) if epochs > 1 else slice(None)


def _time_native_calls(native) -> list:
    """Count the seconds spent inside the programs' native calls (one step, or a run of steps) in a one-item list."""
    seconds = [0.0]

    def timed(function):
        def call(*args):
            start = time.perf_counter()
            try:
                return function(*args)
            finally:
                seconds[0] += time.perf_counter() - start
        return call
    native.Executable._call_all = timed(native.Executable._call_all)
    run_steps, engine = native._run_steps()
    native._run_steps = lambda: (timed(run_steps), engine)
    return seconds


def run_worker(python: str, cache: str, framework: str, precision: str, steps_per_execution, epochs: int,
               threads: int) -> dict:
    """One worker process of ``python`` (graphc's or the peers' venv); its measurements, or the error it ended on."""
    if not os.path.exists(python):
        return {"error": f"no {python} (bench/convnet.py creates the peers' venv; or name one with --peer-venv)"}
    command = [python, __file__, "--worker", framework, "--epochs", str(epochs), "--precision", precision,
               "--steps-per-execution", str(steps_per_execution), "--threads", str(threads)]
    env = {**os.environ, "GRAPHC_CACHE_DIR": cache, "KERAS_BACKEND": "jax"}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode:
        return {"error": result.stderr.strip().splitlines()[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def configurations(args, chunks):
    """(row label, framework, precision, steps per execution, python) of every process to run, in order."""
    peer_python = os.path.join(args.peer_venv, "bin", "python")
    for precision in args.precision:
        for chunk in chunks:
            yield "graphc", "graphc", precision, chunk, sys.executable
        if not args.no_keras:
            yield "Keras 3 / JAX", "keras", precision, 1, peer_python


def print_row(label, precision, chunk, result, cold):
    """One configuration's line and, under it, its epochs; what a framework does not measure shows as '-'."""
    if "error" in result or "error" in cold:
        print(f"{label:14s} {precision:15s} {str(chunk):>10s}  failed: {result.get('error') or cold.get('error')}")
        return
    python = f"{result['python_s'] * 1e3:6.1f} ms ({result['python_share']:5.1%})" if "python_s" in result else "-"
    compiles = f"{cold['compile_s']:10.2f} s {result['compile_s']:5.2f} s" if cold else f"{'-':>12s} {'-':>7s}"
    print(f"{label:14s} {precision:15s} {str(chunk):>10s} {result['epoch_s']:8.3f} {python:>16s} {compiles} "
          f"{result['peak_rss_mb']:6.0f} MB {result['test_accuracy']:9.4f}")
    print(f"{'':42s}epochs: {' '.join(f'{s:.3f}' for s in result['epochs_s'])}; "
          f"final loss {result['final_loss']:.4f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--precision", nargs="+", default=["float32"])
    parser.add_argument("--steps-per-execution", nargs="+", default=["None", "1"])
    parser.add_argument("--no-keras", action="store_true", help="leave out Keras 3 (JAX)")
    parser.add_argument("--threads", type=int, default=2, help="cores every process may use (default: 2)")
    parser.add_argument("--peer-venv", default=peers.DEFAULT_VENV,
                        help="the venv with Keras 3 and JAX (default: bench/.venv, which bench/convnet.py creates)")
    parser.add_argument("--worker", choices=["graphc", "keras"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    chunks = [None if value == "None" else int(value) for value in args.steps_per_execution]
    if args.worker:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.threads])  # before any thread pool starts
        measure = worker if args.worker == "graphc" else lambda p, chunk, epochs: keras_worker(p, epochs)
        print(json.dumps(measure(args.precision[0], chunks[0], args.epochs)))
        return
    print(f"seed MLP epoch (batch {BATCH}, 469 steps), {args.epochs} epochs per configuration, each in a fresh "
          f"process on {args.threads} cores")
    print(f"{'':14s} {'precision':15s} {'steps/exec':>10s} {'epoch s':>8s} {'python (share)':>16s} "
          f"{'compile cold':>12s} {'cached':>7s} {'peak RSS':>9s} {'test acc':>9s}")
    for label, framework, precision, chunk, python in configurations(args, chunks):
        with tempfile.TemporaryDirectory() as cache:
            # graphc compiles into the empty cache, then loads from it; JAX keeps no cache on disk.
            cold = {} if framework == "keras" else run_worker(python, cache, framework, precision, chunk, 0,
                                                              args.threads)
            result = run_worker(python, cache, framework, precision, chunk, args.epochs, args.threads)
        print_row(label, precision, chunk, result, cold)


if __name__ == "__main__":
    main()
