"""The seed MLP's full training step (784 -> 512 relu -> 10 softmax, cross-entropy, RMSprop) at batch 128:
graphc's native program against a hand-written numpy step, in the same run; medians and ratios.

    python bench/step.py [--steps 200] [--threads 2]

Also reports the step with the optimizer off (optimize=0), the step under precision="mixed_bfloat16"
(bfloat16 GEMM operands, float32 sums), and the compile time cold and from the object cache. For a fair numpy baseline run it as
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/step.py``.
"""
import argparse
import os
import statistics
import tempfile
import time

import numpy as np

from graphc.graph.shapes import dim_symbol
from graphc.lower.program import workspace_bytes
from graphc.viz.examples import glorot_uniform, mnist_mlp
from runtime.native import available_cores

BATCH, FEATURES, HIDDEN, CLASSES = 128, 784, 512, 10
LEARNING_RATE, RHO, EPSILON = 0.001, 0.9, 1e-7


class NumpyStep:
    """The same step written by hand with numpy, as a user without a compiler would."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.params = [glorot_uniform(rng, FEATURES, HIDDEN), np.zeros(HIDDEN, np.float32),
                       glorot_uniform(rng, HIDDEN, CLASSES), np.zeros(CLASSES, np.float32)]
        self.mean_squares = [np.zeros_like(p) for p in self.params]

    def __call__(self, x, y):
        w1, b1, w2, b2 = self.params
        z1 = x @ w1 + b1
        h = np.maximum(z1, 0)
        logits = h @ w2 + b2
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss = -(y * log_p).sum(axis=1).mean()
        accuracy = (log_p.argmax(axis=1) == y.argmax(axis=1)).mean()
        d_logits = (np.exp(log_p) - y) / len(x)
        d_h = (d_logits @ w2.T) * (z1 > 0)
        grads = [x.T @ d_h, d_h.sum(axis=0), h.T @ d_logits, d_logits.sum(axis=0)]
        for param, mean_square, grad in zip(self.params, self.mean_squares, grads):
            mean_square *= RHO
            mean_square += (1 - RHO) * grad * grad
            param -= LEARNING_RATE * grad / np.sqrt(mean_square + EPSILON)
        return loss, accuracy


def measure(steps_by_name, x, y, steps, rounds=25):
    """Milliseconds per step of each function: the median over all steps, and the median of each round.
    The contenders take turns in short rounds, so the machine's slow phases (it is shared and noisy) hit
    them alike and a ratio of two contenders' medians in the same round is a paired comparison. Rounds of
    several steps, not single steps: a program's helper thread keeps spinning a little after each step and
    would slow the next contender."""
    samples = {name: [] for name in steps_by_name}
    by_round = {name: [] for name in steps_by_name}
    for _ in range(rounds):
        for name, step in steps_by_name.items():
            for _ in range(10):  # warm up, and let the previous contender's helper thread go to sleep
                step(x, y)
            times = []
            for _ in range(max(1, steps // rounds)):
                start = time.perf_counter()
                step(x, y)
                times.append(time.perf_counter() - start)
            samples[name] += times
            by_round[name].append(statistics.median(times) * 1e3)
    medians = {name: statistics.median(times) * 1e3 for name, times in samples.items()}
    return medians, by_round


def paired_ratio(slower, faster) -> str:
    """The median over rounds of slower/faster, with the middle half of the rounds' ratios."""
    ratios = sorted(s / f for s, f in zip(slower, faster))
    quarter = len(ratios) // 4
    return f"{statistics.median(ratios):.2f}x (middle half of rounds {ratios[quarter]:.2f}-{ratios[-1 - quarter]:.2f})"


def compile_seconds(**options):
    start = time.perf_counter()
    function = mnist_mlp(backend="llvm", **options)
    return time.perf_counter() - start, function


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=available_cores())
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, FEATURES), dtype=np.float32)
    y = np.eye(CLASSES, dtype=np.float32)[rng.integers(0, CLASSES, BATCH)]

    # numpy alone, before any graphc thread exists: OpenBLAS's threads and graphc's spin between calls,
    # and interleaved they would slow each other down.
    results, _ = measure({"numpy (hand-written)": NumpyStep()}, x, y, args.steps)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["GRAPHC_CACHE_DIR"] = cache
        cold, optimized = compile_seconds(threads=args.threads)
        cached, _ = compile_seconds(threads=args.threads)
        _, unoptimized = compile_seconds(threads=args.threads, optimize=0)
        _, mixed = compile_seconds(threads=args.threads, precision="mixed_bfloat16")
    graphc_name = f"graphc ({args.threads} threads)"
    medians, by_round = measure({"graphc, optimize=0": unoptimized, graphc_name: optimized,
                                 "graphc, mixed_bfloat16": mixed}, x, y, args.steps)
    results.update(medians)
    baseline = results["numpy (hand-written)"]
    print(f"seed MLP training step, batch {BATCH}, median of {args.steps} steps each "
          f"(the three graphc programs taking turns in 25 rounds)")
    for name, ms in results.items():
        print(f"  {name:28s} {ms:7.3f} ms   numpy/this = {baseline / ms:5.2f}x")
    graphc_ms = results[graphc_name]
    print(f"  optimized vs optimize=0: {paired_ratio(by_round['graphc, optimize=0'], by_round[graphc_name])} faster")
    print(f"  mixed_bfloat16 vs float32: {paired_ratio(by_round[graphc_name], by_round['graphc, mixed_bfloat16'])} "
          f"faster")
    print(f"  kernels: {len(optimized.program.schedule.kernels)} optimized, "
          f"{len(unoptimized.program.schedule.kernels)} unoptimized")
    batch = {dim_symbol("batch"): BATCH}
    print(f"  workspace (temporaries at batch {BATCH}): "
          f"{workspace_bytes(optimized.program.schedule, batch):,} bytes optimized, "
          f"{workspace_bytes(unoptimized.program.schedule, batch):,} unoptimized")
    print(f"  compile: {cold:.2f} s cold, {cached:.2f} s from the object cache")
    print(f"  epoch estimate (469 steps): {graphc_ms * 469 / 1e3:.2f} s graphc, {baseline * 469 / 1e3:.2f} s numpy")


if __name__ == "__main__":
    main()
