"""The seed model's training epoch through the Keras front end (examples/mnist_mlp.py: 784 -> 512 relu -> 10
softmax, RMSprop, batch 128, 469 steps), one configuration per fresh process, in one run:

    python bench/epoch.py [--epochs 5] [--precision float32 mixed_bfloat16] [--steps-per-execution None 1]

For each configuration: the steady epoch (the median of epochs 2..N), the Python in it (the epoch's time minus
the time spent inside the native calls; median seconds and median share of the epoch), the compile of the train and evaluate
programs cold (an empty GRAPHC_CACHE_DIR) and from the object cache, and the process's peak RSS
(``resource.getrusage``). ``--steps-per-execution 1`` is the call-per-batch path (Python gathers each batch and
calls the step); None runs the epoch in native chunks (``compile(steps_per_execution=None)``).
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


BATCH = 128


def worker(precision: str, steps_per_execution, epochs: int) -> dict:
    """Compile and train ``epochs`` epochs (0: compile only) in this process (its cache dir set by the parent); the
    measurements as a dict."""
    from graphc.keras import callbacks, layers, mixed_precision, models
    from graphc.keras.datasets import mnist
    from graphc.keras.utils import set_random_seed, to_categorical
    from runtime import native

    native_seconds = _time_native_calls(native)
    mixed_precision.set_global_policy(precision)
    set_random_seed(0)
    with contextlib.redirect_stderr(io.StringIO()):
        (x, y), _ = mnist.load_data()
    x, y = x.reshape(60000, 784).astype("float32") / 255, to_categorical(y)
    model = models.Sequential([layers.Input((784,)), layers.Dense(512, activation="relu"),
                               layers.Dense(10, activation="softmax")])
    model.compile("rmsprop", "categorical_crossentropy", ["accuracy"], steps_per_execution=steps_per_execution)
    start = time.perf_counter()
    model.graphc_function(), model.metrics_names  # the train and evaluate programs, compiled on first use
    compile_seconds = time.perf_counter() - start
    if not epochs:
        return {"compile_s": compile_seconds}
    epoch_times, python_seconds = [], []

    def epoch_begin(epoch, logs):
        native_seconds[0] = 0.0
        epoch_times.append(time.perf_counter())

    def epoch_end(epoch, logs):
        seconds = time.perf_counter() - epoch_times[-1]
        epoch_times[-1] = seconds
        python_seconds.append(seconds - native_seconds[0])
    timer = callbacks.LambdaCallback(on_epoch_begin=epoch_begin, on_epoch_end=epoch_end)
    with contextlib.redirect_stdout(io.StringIO()):
        history = model.fit(x, y, batch_size=BATCH, epochs=epochs, callbacks=[timer], verbose=1)
    steady = slice(1, None) if epochs > 1 else slice(None)
    return {"precision": precision, "steps_per_execution": steps_per_execution, "compile_s": compile_seconds,
            "epoch_s": statistics.median(epoch_times[steady]), "python_s": statistics.median(python_seconds[steady]),
            "python_share": statistics.median(p / e for p, e in zip(python_seconds[steady], epoch_times[steady])),
            "epochs_s": epoch_times, "final_loss": history.history["loss"][-1],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


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


def run_worker(cache: str, precision: str, steps_per_execution, epochs: int) -> dict:
    command = [sys.executable, __file__, "--worker", "--epochs", str(epochs), "--precision", precision,
               "--steps-per-execution", str(steps_per_execution)]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "GRAPHC_CACHE_DIR": cache})
    if result.returncode:
        return {"precision": precision, "steps_per_execution": steps_per_execution,
                "error": result.stderr.strip().splitlines()[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--precision", nargs="+", default=["float32"])
    parser.add_argument("--steps-per-execution", nargs="+", default=["None", "1"])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    chunks = [None if value == "None" else int(value) for value in args.steps_per_execution]
    if args.worker:
        print(json.dumps(worker(args.precision[0], chunks[0], args.epochs)))
        return
    print(f"seed MLP epoch through graphc.keras (batch {BATCH}, 469 steps), {args.epochs} epochs per configuration, "
          f"each in a fresh process")
    print(f"{'precision':15s} {'steps/exec':>10s} {'epoch s':>8s} {'python (share)':>16s} {'compile cold':>12s} "
          f"{'cached':>7s} {'peak RSS':>9s}")
    for precision in args.precision:
        for chunk in chunks:
            with tempfile.TemporaryDirectory() as cache:
                cold = run_worker(cache, precision, chunk, 0)  # compiles into the empty cache
                result = run_worker(cache, precision, chunk, args.epochs)  # loads from it
            if "error" in result or "error" in cold:
                print(f"{precision:15s} {str(chunk):>10s}  failed: {result.get('error') or cold.get('error')}")
                continue
            print(f"{precision:15s} {str(chunk):>10s} {result['epoch_s']:8.3f} {result['python_s'] * 1e3:6.1f} ms "
                  f"({result['python_share']:5.1%}) "
                  f"{cold['compile_s']:10.2f} s {result['compile_s']:5.2f} s {result['peak_rss_mb']:6.0f} MB")
            print(f"{'':27s}epochs: {' '.join(f'{s:.3f}' for s in result['epochs_s'])}; "
                  f"final loss {result['final_loss']:.4f}")


if __name__ == "__main__":
    main()
