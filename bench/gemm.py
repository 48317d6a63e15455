"""GEMM throughput: graphc's generated kernel vs numpy.matmul (OpenBLAS), and vs the machine's peaks.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/gemm.py

The "bf16" cases are the training step's GEMMs under precision="mixed_bfloat16" (operands rounded to
bfloat16 as they are packed, vdpbf16ps where the CPU has AVX512-BF16), against numpy's float32 product and
against the vdpbf16ps peak (bench/peak.py); the float32 cases' peak is the FMA loop's.

(OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, if set, slow OpenBLAS down; unset them
for a fair baseline.)  Prints GFLOP/s, median of repeats, at 1 and 2 threads.

graphc: every thread runs a tiny generated loop that calls the GEMM `reps`
times with its own tid, so Python and the GIL are out of the timed region
(threads are started together and joined, but not synchronised between
repetitions).  numpy: timed in a subprocess per thread count with
OPENBLAS_NUM_THREADS set (always, even if threadpoolctl is installed), while
this process keeps OpenBLAS at one thread: idle OpenBLAS worker threads
spin-wait after each call and would steal the second core from graphc.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

if "--numpy-worker" not in sys.argv:
    os.environ["OPENBLAS_NUM_THREADS"] = "1"  # must precede the numpy import

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from llvmlite import ir  # noqa: E402

from graphc.graph.dtypes import round_to_bfloat16  # noqa: E402
from graphc.lower.gemm import (GemmSpec, choose_micro_tile, emit_gemm,  # noqa: E402
                               gemm_workspace_elems, uses_bf16_dot)
from graphc.lower.jit import compile_module  # noqa: E402
from graphc.lower.target import host_target  # noqa: E402
from peak import peak_gflops  # noqa: E402

REPEATS = 7
SECONDS_PER_REPEAT = 0.03


@dataclass(frozen=True)
class Case:
    label: str
    spec: GemmSpec
    M: int
    runtime_k: int | None = None  # the K passed at run time when spec.K is None

    @property
    def K(self) -> int:
        return self.spec.K if self.spec.K is not None else self.runtime_k


CASES = [
    Case("x@W1        128x784 @ 784x512", GemmSpec("float32", None, 512, 784), 128),
    Case("h@W2        128x512 @ 512x10", GemmSpec("float32", None, 10, 512), 128),
    Case("x^T@dh      (128x784)^T @ 128x512", GemmSpec("float32", 784, 512, 128, trans_a=True), 784),
    Case("dy@W2^T     128x10 @ (512x10)^T", GemmSpec("float32", None, 512, 10, trans_b=True), 128),
    Case("h^T@dy      (128x512)^T @ 128x10", GemmSpec("float32", 512, 10, 128, trans_a=True), 512),
    Case("1024^3", GemmSpec("float32", 1024, 1024, 1024), 1024),
    # The weight gradients as a training step with a symbolic batch sees them.
    Case("x^T@dh      K=batch at run time", GemmSpec("float32", 784, 512, None, trans_a=True),
         784, runtime_k=128),
    Case("h^T@dy      K=batch at run time", GemmSpec("float32", 512, 10, None, trans_a=True),
         512, runtime_k=128),
]
BF16 = {"precision": "bfloat16"}
CASES += [
    Case("bf16 x@W1   128x784 @ 784x512", GemmSpec("float32", None, 512, 784, **BF16), 128),
    Case("bf16 h@W2   128x512 @ 512x10", GemmSpec("float32", None, 10, 512, **BF16), 128),
    Case("bf16 dy@W2^T 128x10 @ (512x10)^T", GemmSpec("float32", None, 512, 10, trans_b=True, **BF16), 128),
    Case("bf16 x^T@dh K=batch at run time", GemmSpec("float32", 784, 512, None, trans_a=True, **BF16),
         784, runtime_k=128),
    Case("bf16 h^T@dy K=batch at run time", GemmSpec("float32", 512, 10, None, trans_a=True, **BF16),
         512, runtime_k=128),
]


def operands(case: Case, seed: int = 0):
    """(A, B, C) as stored, plus op(A), op(B) views for numpy."""
    spec, k, rng = case.spec, case.K, np.random.default_rng(seed)
    a = rng.standard_normal((k, case.M) if spec.trans_a else (case.M, k)).astype(spec.dtype)
    b = rng.standard_normal((spec.N, k) if spec.trans_b else (k, spec.N)).astype(spec.dtype)
    c = np.zeros((case.M, spec.N), spec.dtype)
    return a, b, c, (a.T if spec.trans_a else a), (b.T if spec.trans_b else b)


def flops(case: Case) -> int:
    return 2 * case.M * case.spec.N * case.K


def median_seconds(run_reps, reps: int) -> float:
    return statistics.median(run_reps(reps) / reps for _ in range(REPEATS))


def calibrated_reps(run_reps) -> int:
    once = max(run_reps(1), 1e-7)
    return max(1, int(SECONDS_PER_REPEAT / once))


# -- numpy -------------------------------------------------------------------

def numpy_seconds(case: Case) -> float:
    _, _, c, op_a, op_b = operands(case)

    def run_reps(reps: int) -> float:
        start = time.perf_counter()
        for _ in range(reps):
            np.matmul(op_a, op_b, out=c)
        return time.perf_counter() - start

    run_reps(1)
    return median_seconds(run_reps, calibrated_reps(run_reps))


def numpy_gflops(threads: int) -> list[float]:
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, __file__, "--numpy-worker"], env=env,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


# -- graphc ------------------------------------------------------------------

GEMM_ARGS = [ctypes.c_void_p] * 3 + [ctypes.c_int64, ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32]


def repeat_function(compiled, name: str, case: Case):
    """ctypes wrapper of `<name>_repeat(gemm args..., [K,] reps)`."""
    runtime_k = [ctypes.c_int64] if case.spec.K is None else []
    prototype = ctypes.CFUNCTYPE(None, *GEMM_ARGS, *runtime_k, ctypes.c_int64)
    return prototype(compiled.address(name + "_repeat"))


def emit_repeat_loop(module: ir.Module, gemm: ir.Function) -> None:
    """`<gemm>_repeat(args..., i64 reps)`: call the gemm `reps` times natively."""
    args = list(gemm.function_type.args)
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), args + [ir.IntType(64)]),
                     name=gemm.name + "_repeat")
    entry, loop, done = (fn.append_basic_block(n) for n in ("entry", "loop", "done"))
    builder = ir.IRBuilder(entry)
    builder.branch(loop)
    builder.position_at_end(loop)
    i = builder.phi(ir.IntType(64))
    i.add_incoming(ir.Constant(ir.IntType(64), 0), entry)
    builder.call(gemm, fn.args[:-1])
    nxt = builder.add(i, ir.Constant(ir.IntType(64), 1))
    i.add_incoming(nxt, loop)
    builder.cbranch(builder.icmp_signed("<", nxt, fn.args[-1]), loop, done)
    builder.position_at_end(done)
    builder.ret_void()


def graphc_seconds(repeat_fn, case: Case, threads: int, target) -> float:
    a, b, c, op_a, op_b = operands(case)
    per_thread = gemm_workspace_elems(case.spec, target, k=case.K)
    workspace = np.zeros(per_thread * threads + 16, case.spec.dtype)
    # 64-byte align the workspace so packed panels start on cache lines.
    offset = (-workspace.ctypes.data % 64) // workspace.itemsize
    ws_ptr = workspace[offset:].ctypes.data

    runtime_k = [case.K] if case.spec.K is None else []

    def run_reps(reps: int) -> float:
        workers = [threading.Thread(target=repeat_fn, args=(
            a.ctypes.data, b.ctypes.data, c.ctypes.data, case.M, ws_ptr, tid, threads,
            *runtime_k, reps))
            for tid in range(threads)]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return time.perf_counter() - start

    run_reps(1)
    if case.spec.rounds:  # the product of the rounded operands
        op_a, op_b = round_to_bfloat16(op_a), round_to_bfloat16(op_b)
    if not np.allclose(c, op_a.astype(np.float64) @ op_b, rtol=1e-3, atol=1e-3 * case.K):
        raise AssertionError(f"wrong result for {case.label}")
    return median_seconds(run_reps, calibrated_reps(run_reps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numpy-worker", action="store_true", help=argparse.SUPPRESS)
    if parser.parse_args().numpy_worker:
        print(json.dumps([flops(case) / numpy_seconds(case) / 1e9 for case in CASES]))
        return

    slow_env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}
    if slow_env:
        print(f"note: {slow_env} is set; OpenBLAS may be slower than usual. For a fair "
              "baseline: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/gemm.py")
    target = host_target()
    module = ir.Module()
    for index, case in enumerate(CASES):
        emit_repeat_loop(module, emit_gemm(module, f"gemm{index}", case.spec, target))
    compiled = compile_module(module, target)
    repeat_fns = [repeat_function(compiled, f"gemm{index}", case)
                  for index, case in enumerate(CASES)]

    numpy_results = {threads: numpy_gflops(threads) for threads in (1, 2)}
    kinds = {"fma"} | {"bf16" for case in CASES if uses_bf16_dot(case.spec, target)}
    peaks = {(kind, threads): peak_gflops(kind, threads) for kind in sorted(kinds) for threads in (1, 2)}
    print(f"target {target.cpu}, vector {target.vector_bytes} B; GFLOP/s, median of {REPEATS}; peaks: "
          + ", ".join(f"{kind} {threads}T {gflops:.1f}" for (kind, threads), gflops in peaks.items()))
    print(f"{'shape':36} {'tile':>6} | {'graphc 1T':>9} {'peak':>5} {'BLAS 1T':>8} {'ratio':>6} | "
          f"{'graphc 2T':>9} {'peak':>5} {'BLAS 2T':>8} {'ratio':>6}")
    for index, case in enumerate(CASES):
        tile = choose_micro_tile(case.spec, target)
        cells = []
        for threads in (1, 2):
            ours = flops(case) / graphc_seconds(repeat_fns[index], case, threads, target) / 1e9
            blas = numpy_results[threads][index]
            peak = peaks["bf16" if uses_bf16_dot(case.spec, target) else "fma", threads]
            cells.append(f"{ours:9.1f} {ours / peak:5.0%} {blas:8.1f} {ours / blas:6.2f}")
        print(f"{case.label:36} {tile.rows:>2}x{tile.cols:<3} | {cells[0]} | {cells[1]}")


if __name__ == "__main__":
    main()
