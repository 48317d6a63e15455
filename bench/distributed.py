"""Data parallelism on this machine: the seed MLP trained by 1 process x 2 threads against 2 processes x 1 thread
(MPI, global batch 128 = 2 x 64), in the same run; medians.

    flock /tmp/bench.lock python bench/distributed.py [--rounds 15] [--steps 40] [--epochs 2]

Per training step (the hand-written seed step, RMSprop; the processes start every round together):
  one process     the whole batch of 128 on 2 threads, no collective
  compute only    each process its 64 samples on 1 thread, gradients not reduced: the step without MPI
  + barrier       and an MPI_Barrier after each step: what waiting for the slower process costs
  updates unfused compute only, the optimizer updates as kernels of their own (not in the GEMM epilogues),
                  as they must be after a reduction
  blocking        + one MPI_Allreduce kernel per gradient, where the gradient is complete
  overlapped      + the reductions started as each gradient is complete and waited for before the updates
                  (the overlap_collectives schedule rewrite): what the overlap saves
and, per epoch, Keras' fit on MNIST (60,000 images, batch 128) with and without DataParallel: the median of the
epochs after the first. The reductions' time is blocking - updates unfused; the overlap hides (blocking -
overlapped) / (blocking - updates unfused) of it. Needs the mpi extra (pip install -e '.[mpi]').
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

import graphc as gc
from graphc import distributed
from graphc.viz.examples import glorot_uniform, rmsprop_updates

GRADIENTS = [784 * 512, 512, 512 * 10, 10]  # the seed MLP's gradients, in elements
PARAMETERS = sum(GRADIENTS)


def seed_step(reduce, optimize=2, threads=None):
    """The seed model's training step (784 -> 512 relu -> 10 softmax, cross-entropy, RMSprop), its gradients
    averaged over the processes when ``reduce``."""
    rng = np.random.default_rng(0)
    x, y = gc.placeholder(("batch", 784)), gc.placeholder(("batch", 10))
    params = [gc.variable(glorot_uniform(rng, 784, 512)), gc.variable(np.zeros(512, np.float32)),
              gc.variable(glorot_uniform(rng, 512, 10)), gc.variable(np.zeros(10, np.float32))]
    w1, b1, w2, b2 = params
    loss = gc.mean(gc.categorical_crossentropy(y, gc.softmax(gc.relu(x @ w1 + b1) @ w2 + b2)))
    grads = gc.grad(loss, params)
    if reduce:
        grads = [gc.allreduce(g, "mean") for g in grads]
    return gc.function([x, y], loss, updates=rmsprop_updates(params, grads), optimize=optimize, threads=threads)


def ring_seconds(processes, nbytes, bandwidth, latency, messages=1) -> float:
    """The ring allreduce's time: each process sends and receives 2(N-1)/N of the buffer, in 2(N-1) steps per
    message (the cost model of docs/distributed.md)."""
    return 2 * (processes - 1) / processes * nbytes / bandwidth + 2 * (processes - 1) * latency * messages


def link(rounds=15) -> tuple:
    """(bandwidth in bytes/s, latency in s) of mpi4py's Allreduce between the processes, fitted to the ring model
    from a small and a large buffer (medians)."""
    comm, processes = distributed.communicator(), distributed.size()
    seconds = []
    for elements in (4, PARAMETERS):
        buffer, total, times = np.ones(elements, np.float32), np.empty(elements, np.float32), []
        for _ in range(rounds):
            comm.Barrier()
            start = time.perf_counter()
            comm.Allreduce(buffer, total)
            times.append(max(comm.allgather(time.perf_counter() - start)))
        seconds.append(statistics.median(times))
    latency = seconds[0] / (2 * (processes - 1))
    bandwidth = 2 * (processes - 1) / processes * 4 * PARAMETERS / (seconds[1] - seconds[0])
    return bandwidth, latency


def step_times(variants, batch, rounds, steps) -> dict:
    """Median milliseconds per step of each variant, taking turns round by round; every process starts each
    round together (a barrier), and a round's time is the slowest process's."""
    rng = np.random.default_rng(distributed.rank())
    x = rng.random((batch, 784), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch)]
    comm = distributed.communicator()
    times = {name: [] for name in variants}
    for _ in range(rounds):
        for name, step in variants.items():
            step(x, y)  # its helper threads awake, its arena allocated
            if comm is not None:
                comm.Barrier()
            start = time.perf_counter()
            for _ in range(steps):
                step(x, y)
            elapsed = time.perf_counter() - start
            times[name].append(elapsed if comm is None else max(comm.allgather(elapsed)))
    return {name: 1000 * statistics.median(values) / steps for name, values in times.items()}


def epoch_times(epochs, data_parallel) -> list:
    """Seconds of each epoch of Keras' fit on MNIST (the seed program, batch 128), on every process."""
    from graphc.keras import callbacks, distribution, layers, models
    from graphc.keras.datasets import mnist
    from graphc.keras.utils import set_random_seed, to_categorical
    (x, y), _ = mnist.load_data()
    x, y = x.reshape(60000, 784).astype("float32") / 255, to_categorical(y)
    set_random_seed(0)
    distribution.set_distribution(distribution.DataParallel() if data_parallel else None)
    model = models.Sequential([layers.Dense(512, activation="relu", input_shape=(784,)),
                               layers.Dense(10, activation="softmax")])
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    seconds = []
    timer = callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: seconds.append(time.perf_counter()),
                                     on_epoch_end=lambda epoch, logs: seconds.append(time.perf_counter()))
    model.fit(x, y, batch_size=128, epochs=epochs, verbose=0, callbacks=[timer])
    return [end - begin for begin, end in zip(seconds[::2], seconds[1::2])]


def worker(args):
    """One configuration, printed as JSON by rank 0: 1 process x 2 threads, or (under mpiexec) 2 x 1."""
    if distributed.size() == 1:
        result = step_times({"one process": seed_step(False, threads=2)}, 128, args.rounds, args.steps)
        result["epoch"] = statistics.median(epoch_times(args.epochs, False)[1:])
    else:
        compute = seed_step(False, threads=1)
        barrier = distributed.communicator().Barrier
        variants = {"compute only": compute, "compute + barrier": lambda x, y: (compute(x, y), barrier()),
                    "updates unfused": seed_step(False, optimize=["fuse_updates_into_producers"], threads=1),
                    "blocking": seed_step(True, optimize=["overlap_collectives"], threads=1),
                    "overlapped": seed_step(True, threads=1)}
        result = step_times(variants, 128 // distributed.size(), args.rounds, args.steps)
        result["bandwidth"], result["latency"] = link()
        result["epoch"] = statistics.median(epoch_times(args.epochs, True)[1:])
    if distributed.rank() == 0:
        print(json.dumps(result))


def run(command) -> dict:
    # Open MPI refuses to start as root without these two: set for this benchmark's launch only.
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OPENBLAS_NUM_THREADS="1")
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(output.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=2, help="epochs of fit (the first is left out)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
    own = [sys.executable, os.path.abspath(__file__), "--worker", "--rounds", str(args.rounds), "--steps",
           str(args.steps), "--epochs", str(args.epochs)]
    one = run(own)
    two = run([mpiexec, "-n", "2", "--bind-to", "core", *own])
    reductions = two["blocking"] - two["updates unfused"]
    print(f"seed MLP, global batch 128, ms per step (medians of {args.rounds} rounds of {args.steps} steps)")
    print(f"  1 process x 2 threads                   {one['one process']:7.3f}")
    for name in ("compute only", "compute + barrier", "updates unfused", "blocking", "overlapped"):
        print(f"  2 processes x 1 thread, {name:17s} {two[name]:7.3f}")
    print(f"  time in the reductions (blocking - updates unfused): {reductions:.3f} ms per step, of which waiting for "
          f"the other process {two['compute + barrier'] - two['compute only']:.3f}; the overlap hides "
          f"{(two['blocking'] - two['overlapped']) / reductions:.0%} of it")
    model = 1000 * ring_seconds(2, 4 * PARAMETERS, two["bandwidth"], two["latency"], len(GRADIENTS))
    print(f"  the ring model with this link ({two['bandwidth'] / 1e9:.2f} GB/s, {1e6 * two['latency']:.1f} us per "
          f"step, fitted to mpi4py's Allreduce): {model:.3f} ms per step of reductions")
    print(f"Keras fit, seconds per epoch (median of epochs 2..{args.epochs}): 1 x 2 threads {one['epoch']:.2f}, "
          f"2 x 1 thread {two['epoch']:.2f} ({one['epoch'] / two['epoch']:.2f}x)")


if __name__ == "__main__":
    main()
