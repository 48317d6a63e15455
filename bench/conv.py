"""Each convolution of the MNIST convnet (examples/mnist_convnet.py) at batch 64, forward, data gradient and
filter gradient, in GFLOP/s: graphc against PyTorch's CPU conv2d (oneDNN) and XLA through JAX, measured side
by side in one process, and against the machine's FP32 FMA peak, measured here with a loop of independent
FMAs in the widest vectors the CPU has.

    python bench/conv.py [--threads 2] [--quick]

It runs itself in the peers' venv (bench/peers.py, created on first use), on ``--threads`` cores.

* graphc: a compiled gc.Function per pass, called from Python (about 15 us a call besides the kernels), each
  pass as the training step builds it with gc.grad, so the filter flip and the transposes around the
  gradient convolutions are included.
* torch: NCHW tensors in PyTorch's default layout; "torch NHWC": the same stored channels_last, which oneDNN
  runs faster.
* jax: NHWC, jitted, the gradients through jax.vjp.

Contenders take turns in every round; a round's sample is the mean time of enough calls to fill
``--sample-seconds``, and the table gives the median over rounds. conv1's data gradient is there for the
table's sake: the training step needs none. ``--quick`` is a smoke test (20-30 s once the venv exists),
not a measurement.
"""
import argparse
import statistics
import time

import numpy as np

import peers
from peak import peak_gflops

BATCH = 64
# (name, input (height, width, channels), filters) of the example's three 3x3 "valid" convolutions.
LAYERS = [("conv1 28x28x1->32", (28, 28, 1), 32), ("conv2 13x13x32->64", (13, 13, 32), 64),
          ("conv3 5x5x64->64", (5, 5, 64), 64)]
PASSES = ("forward", "data grad", "filter grad")
CONTENDERS = ("graphc", "torch", "torch NHWC", "jax")
PEERS = CONTENDERS[1:]
SETTLE_SECONDS = 0.05  # between contenders: the previous one's idle threads stop spinning


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    peers.add_arguments(parser)
    parser.add_argument("--rounds", type=int, default=15, help="rounds of turns (default: 15)")
    parser.add_argument("--sample-seconds", type=float, default=0.1, help="length of one sample (default: 0.1)")
    parser.add_argument("--quick", action="store_true", help="3 rounds of 0.01 s samples: a smoke test")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.sample_seconds = 3, 0.01
    return args


# ---- the contenders: one callable per pass, and its result as NHWC/HWIO numpy -----------------------------
def graphc_passes(x, w, g, threads):
    import graphc as gc

    images = gc.placeholder(("batch", *x.shape[1:]), name="x")
    gradient = gc.placeholder(("batch", *g.shape[1:]), name="g")
    kernel = gc.variable(w, name="K")
    out = gc.conv2d(images, kernel)
    cost = gc.sum(out * gradient)  # d cost / d out = g: the gradients the training step computes from g
    forward = gc.function([images], out, threads=threads)
    data = gc.function([images, gradient], gc.grad(cost, images), threads=threads)
    filters = gc.function([images, gradient], gc.grad(cost, kernel), threads=threads)
    return [(lambda: forward(x), lambda r: r), (lambda: data(x, g), lambda r: r), (lambda: filters(x, g), lambda r: r)]


def torch_passes(x, w, g, channels_last=False):
    """PyTorch's conv2d and its two gradients on NCHW tensors, stored as such or (``channels_last``) as NHWC
    underneath, which oneDNN runs faster."""
    import torch
    import torch.nn.functional as F

    layout = torch.channels_last if channels_last else torch.contiguous_format
    xt, gt = (torch.from_numpy(a.transpose(0, 3, 1, 2).copy()).contiguous(memory_format=layout) for a in (x, g))
    wt = torch.from_numpy(w.transpose(3, 2, 0, 1).copy()).contiguous(memory_format=layout)  # (out, in, h, w)

    def no_grad(call):
        def run():
            with torch.no_grad():
                return call()
        return run

    def nhwc(result):
        return result.numpy().transpose(0, 2, 3, 1)
    return [(no_grad(lambda: F.conv2d(xt, wt)), nhwc),
            (no_grad(lambda: torch.nn.grad.conv2d_input(xt.shape, wt, gt)), nhwc),
            (no_grad(lambda: torch.nn.grad.conv2d_weight(xt, wt.shape, gt)), lambda r: r.numpy().transpose(2, 3, 1, 0))]


def jax_passes(x, w, g):
    import jax
    from jax import lax

    def conv(x, w):
        return lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    forward = jax.jit(conv)
    data = jax.jit(lambda x, w, g: jax.vjp(lambda x: conv(x, w), x)[1](g)[0])
    filters = jax.jit(lambda x, w, g: jax.vjp(lambda w: conv(x, w), w)[1](g)[0])
    xj, wj, gj = (jax.device_put(a) for a in (x, w, g))
    return [(lambda: forward(xj, wj).block_until_ready(), np.asarray),
            (lambda: data(xj, wj, gj).block_until_ready(), np.asarray),
            (lambda: filters(xj, wj, gj).block_until_ready(), np.asarray)]


def calls_per_sample(call, seconds):
    """How many calls fill ``seconds``, judged from calls filling about a quarter of it."""
    start, count = time.perf_counter(), 0
    while count < 2 or time.perf_counter() - start < seconds / 4:
        call()
        count += 1
    return max(1, round(seconds * count / (time.perf_counter() - start)))


def seconds_per_call(call, count):
    start = time.perf_counter()
    for _ in range(count):
        call()
    return (time.perf_counter() - start) / count


def main():
    args = parse_arguments()
    peers.use_peer_venv(args)
    import torch
    torch.set_num_threads(args.threads)

    peak = peak_gflops("fma", args.threads, args.sample_seconds * 10)
    print(f"{peers.versions()}; {args.threads} threads; FP32 FMA peak measured here: {peak:.1f} GFLOP/s "
          f"({peak / args.threads:.1f} per thread)")
    print(f"GFLOP/s, median of {args.rounds} rounds, batch {BATCH}, and % of the FMA peak; ratio = graphc's speed / "
          f"the fastest peer's")
    print(f"{'convolution':19} {'pass':11} {'MFLOP':>6} | " + " ".join(f"{who:>14}" for who in CONTENDERS) + " | ratio")
    rng = np.random.default_rng(0)
    for name, (height, width, channels), filters in LAYERS:
        x = rng.normal(size=(BATCH, height, width, channels)).astype(np.float32)
        w = (rng.normal(size=(3, 3, channels, filters)) / np.sqrt(9 * channels)).astype(np.float32)
        g = rng.normal(size=(BATCH, height - 2, width - 2, filters)).astype(np.float32)
        mflop = 2 * BATCH * (height - 2) * (width - 2) * 9 * channels * filters / 1e6
        passes = {"graphc": graphc_passes(x, w, g, args.threads), "torch": torch_passes(x, w, g),
                  "torch NHWC": torch_passes(x, w, g, channels_last=True), "jax": jax_passes(x, w, g)}
        for index, pass_name in enumerate(PASSES):
            calls = {who: passes[who][index][0] for who in CONTENDERS}
            results = {who: passes[who][index][1](calls[who]()) for who in CONTENDERS}
            for who in PEERS:
                if not np.allclose(results[who], results["graphc"], rtol=1e-3, atol=1e-3 * np.abs(results[who]).max()):
                    raise AssertionError(f"{name} {pass_name}: {who} and graphc disagree")
            counts = {who: calls_per_sample(call, args.sample_seconds) for who, call in calls.items()}
            samples = {who: [] for who in CONTENDERS}
            for _ in range(args.rounds):
                for who in CONTENDERS:
                    time.sleep(SETTLE_SECONDS)
                    samples[who].append(seconds_per_call(calls[who], counts[who]))
            gflops = {who: mflop / 1e3 / statistics.median(times) for who, times in samples.items()}
            cells = " ".join(f"{gflops[who]:7.1f} ({100 * gflops[who] / peak:3.0f}%)" for who in CONTENDERS)
            ratio = gflops["graphc"] / max(gflops[who] for who in PEERS)
            print(f"{name:19} {pass_name:11} {mflop:6.1f} | {cells} | {ratio:5.2f}", flush=True)


if __name__ == "__main__":
    main()
