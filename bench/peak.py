"""The machine's arithmetic peaks, measured: loops of independent register-resident vector FMAs (float32) and
``vdpbf16ps`` (bfloat16 pairs summed into float32, AVX512-BF16), on 1 and 2 threads.

    python bench/peak.py

A GEMM's share of these peaks is what bench/gemm.py prints; the loops have no loads, so nothing but the
arithmetic pipes limits them.
"""
import ctypes
import os
import sys
import threading
import time

from llvmlite import ir

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from graphc.lower.gemm import BF16_PAIRS, bf16_dot_intrinsic  # noqa: E402
from graphc.lower.jit import compile_module  # noqa: E402
from graphc.lower.target import host_target  # noqa: E402

ACCUMULATORS = 12  # independent chains: enough to cover the latency on two pipes, few enough for 16 registers
I32, I64, F32 = ir.IntType(32), ir.IntType(64), ir.FloatType()


def _instruction(module, kind, lanes):
    """(the intrinsic, its two multiplicand types, flops per call) of ``kind`` 'fma' or 'bf16' on ``lanes``
    float32 lanes."""
    vector = ir.VectorType(F32, lanes)
    if kind == "fma":
        fma = ir.Function(module, ir.FunctionType(vector, [vector] * 3), name=f"llvm.fma.v{lanes}f32")
        return fma, vector, 2 * lanes
    if lanes != 16:
        raise ValueError("vdpbf16ps needs 512-bit vectors")
    return bf16_dot_intrinsic(module), BF16_PAIRS, 4 * lanes


def peak_loop(target, kind):
    """A compiled module with ``float peak_loop(i64 n)``: n iterations of ACCUMULATORS independent ``kind``
    instructions; and the flops of one iteration."""
    lanes = target.vector_bytes // 4
    vector = ir.VectorType(F32, lanes)
    module = ir.Module()
    multiply_add, operand, flops = _instruction(module, kind, lanes)
    function = ir.Function(module, ir.FunctionType(F32, [I64]), name="peak_loop")
    entry, loop, done = (function.append_basic_block(name) for name in ("entry", "loop", "done"))
    builder = ir.IRBuilder(entry)
    scale = builder.sitofp(function.args[0], F32)  # not a constant: nothing folds
    splat = builder.insert_element(ir.Constant(vector, ir.Undefined), scale, ir.Constant(I32, 0))
    a = builder.fmul(builder.shuffle_vector(splat, splat, ir.Constant(ir.VectorType(I32, lanes), [0] * lanes)),
                     ir.Constant(vector, [1e-12] * lanes))
    a, b = builder.bitcast(a, operand), builder.bitcast(ir.Constant(vector, [0.5] * lanes), operand)
    builder.branch(loop)
    builder.position_at_end(loop)
    i = builder.phi(I64)
    accs = [builder.phi(vector) for _ in range(ACCUMULATORS)]
    nexts = [builder.call(multiply_add, [acc, a, b] if kind == "bf16" else [a, b, acc]) for acc in accs]
    for acc, new in zip(accs, nexts):
        acc.add_incoming(ir.Constant(vector, [float(k) for k in range(lanes)]), entry)
        acc.add_incoming(new, loop)
    i.add_incoming(ir.Constant(I64, 0), entry)
    step = builder.add(i, ir.Constant(I64, 1))
    i.add_incoming(step, loop)
    builder.cbranch(builder.icmp_signed("<", step, function.args[0]), loop, done)
    builder.position_at_end(done)
    total = nexts[0]
    for new in nexts[1:]:
        total = builder.fadd(total, new)
    builder.ret(builder.extract_element(total, ir.Constant(I32, 0)))
    return compile_module(module, target), ACCUMULATORS * flops


def peak_gflops(kind, threads, seconds=0.2, target=None):
    """GFLOP/s of ``threads`` threads each running the ``kind`` loop at once (ctypes releases the GIL): the best
    of 5 runs of about ``seconds`` each."""
    compiled, flops_per_iteration = peak_loop(target or host_target(), kind)  # keep compiled alive meanwhile
    loop = ctypes.CFUNCTYPE(ctypes.c_float, ctypes.c_int64)(compiled.address("peak_loop"))
    iterations = 1 << 16
    while True:
        start = time.perf_counter()
        loop(iterations)
        if time.perf_counter() - start > seconds / 4:
            break
        iterations *= 2
    best = 0.0
    for _ in range(5):
        workers = [threading.Thread(target=loop, args=(iterations,)) for _ in range(threads)]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        best = max(best, threads * iterations * flops_per_iteration / (time.perf_counter() - start) / 1e9)
    return best


def main():
    target = host_target()
    kinds = ["fma"] + (["bf16"] if target.has_feature("avx512bf16") and target.vector_bytes == 64 else [])
    print(f"target {target.cpu}, vector {target.vector_bytes} B; GFLOP/s, best of 5")
    for kind in kinds:
        print(f"  {'vfmadd (float32)' if kind == 'fma' else 'vdpbf16ps (bf16 pairs)':24s} "
              + "  ".join(f"{threads}T {peak_gflops(kind, threads):7.1f}" for threads in (1, 2)))


if __name__ == "__main__":
    main()
