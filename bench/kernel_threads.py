"""Per-kernel time of a built-in example's training step on 1 thread and on n threads: which kernels scale.

    python bench/kernel_threads.py [--example mnist-convnet] [--batch 64] [--threads 2] [--repeats 200]
                                   [--rounds 5]

``graphc profile`` times every kernel alone on one thread; this runs every kernel of the compiled step (in
schedule order, on the buffers of one bound call, as the profiler does) on 1 thread, then on ``--threads``
Python threads at once, each calling the kernel's native function with its own tid ``--repeats`` times in a
row (ctypes releases the GIL for the call). A kernel's n-thread time is its slowest thread's mean per call:
what the program waits for at the barrier after it. Times are CPU times of the threads (time.thread_time),
so other processes sharing the cores inflate them less than wall times. No barrier runs between the calls, so
the table leaves the barriers' own cost out; the "program" line, one whole step on its threads (the process's
CPU time per step over the thread count, spinning waits included), shows what they add.
Each of ``--rounds`` rounds times every kernel in both modes; the table gives the medians.
"""
import argparse
import ctypes
import statistics
import threading
import time

from graphc.cli import random_feeds
from graphc.viz.examples import EXAMPLES


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--example", choices=sorted(EXAMPLES), default="mnist-convnet")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=200, help="calls per kernel and round (default 200)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds to take the median of (default 5)")
    return parser.parse_args()


def kernel_call(program, kernel, slots):
    """A function (tid, nthreads) -> None calling ``kernel``'s native function on the bound ``slots``."""
    arguments = kernel.arguments
    signature = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * (len(arguments) + 1), ctypes.c_int32, ctypes.c_int32)
    native = signature(program.kernel_address(kernel.name))
    addresses = [0 if b is None else int(slots[b.slot]) for b in arguments]
    return lambda dims_address, tid, nthreads: native(*addresses, dims_address, tid, nthreads)


def thread_seconds(call, dims_address, threads, repeats) -> list:
    """Mean CPU seconds per call of each of ``threads`` threads, all calling ``call`` ``repeats`` times at once
    (CPU time, not wall time: other processes taking a core for a while do not count)."""
    start, seconds = threading.Barrier(threads), [0.0] * threads

    def work(tid):
        start.wait()
        begin = time.thread_time()
        for _ in range(repeats):
            call(dims_address, tid, threads)
        seconds[tid] = (time.thread_time() - begin) / repeats

    workers = [threading.Thread(target=work, args=(tid,)) for tid in range(1, threads)]
    for worker in workers:
        worker.start()
    work(0)
    for worker in workers:
        worker.join()
    return seconds


def main():
    args = parse_arguments()
    function = EXAMPLES[args.example](threads=args.threads)
    program = function.program
    arrays, dims = function.check_inputs(random_feeds(function, {"batch": args.batch}))
    saved = [b.node.storage.copy() for b in program.schedule.buffers if b.kind == "variable"]
    program.run(arrays, dims)
    step_seconds = []
    for _ in range(args.rounds):
        begin = time.process_time()
        for _ in range(args.repeats // 10):
            program.run(arrays, dims)
        step_seconds.append((time.process_time() - begin) / (args.repeats // 10) / args.threads)
    slots, dims_array, _outputs = program.bind(arrays, dims)  # _outputs kept alive: the kernels write there
    kernels = program.schedule.kernels
    calls = [kernel_call(program, kernel, slots) for kernel in kernels]
    one, many = [[] for _ in kernels], [[] for _ in kernels]
    for _ in range(args.rounds):
        for i, call in enumerate(calls):
            one[i].append(thread_seconds(call, dims_array.ctypes.data, 1, args.repeats)[0])
            many[i].append(thread_seconds(call, dims_array.ctypes.data, args.threads, args.repeats))
    for buffer, value in zip([b for b in program.schedule.buffers if b.kind == "variable"], saved):
        buffer.node.storage[...] = value
    report(args, kernels, one, many, statistics.median(step_seconds))


def report(args, kernels, one, many, step_seconds):
    n = args.threads
    print(f"# {args.example}, batch {args.batch}: median of {args.rounds} rounds of {args.repeats} calls; "
          f"ms per call; {n}-thread time = the slowest thread's; ratio = {n}-thread time / 1-thread time")
    print(f"{'kernel':<24} {'op':<24} {'1 thread':>9} {f'{n} threads':>10} {'ratio':>6}  per thread")
    totals = [0.0, 0.0]
    for kernel, single, runs in zip(kernels, one, many):
        t1 = statistics.median(single)
        per_thread = [statistics.median(run[tid] for run in runs) for tid in range(n)]
        tn = max(per_thread)
        totals[0] += t1
        totals[1] += tn
        threads = " ".join(f"{t * 1e3:.4f}" for t in per_thread)
        print(f"{kernel.name:<24} {kernel.label:<24} {t1 * 1e3:9.4f} {tn * 1e3:10.4f} {tn / t1:6.2f}  {threads}")
    print(f"{'sum':<49} {totals[0] * 1e3:9.4f} {totals[1] * 1e3:10.4f} {totals[1] / totals[0]:6.2f}")
    print(f"{'program':<24} {f'{n} threads, {len(kernels)} kernels':<24} {'':>9} {step_seconds * 1e3:10.4f}")


if __name__ == "__main__":
    main()
