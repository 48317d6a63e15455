"""`emit_random`: a random node (graphc.ops.random) as one kernel that generates its values in place.

Philox4x64-10 in IR: the 64 x 64 -> 128-bit products are `zext` to i128, `mul`, `lshr 64`, `trunc`
(one `mul`/`mulx` on x86-64, so AVX2-only machines run it too). The seed and the step are read from the
node's key and step inputs once per call: the code does not depend on the seed, so programs that differ
only in their seeds share their compiled (and cached) object code.

Threads share the blocks of four words (element i is word i % 4 of block i // 4), so any thread count
computes the same bits. Each element's random value (a uniform, a normal, or dropout's keep bit) goes
into the node's body, lowered by the elementwise lowering at that one element: operands of the node's
shape are read at the element's index, single elements at 0 (fusion builds nothing else). A dropout
kernel reads x[i] and writes y[i] in the same iteration: no mask is stored, and the backward pass
(another dropout node with the same seed and step, fused into its consumer) regenerates it.
"""
from __future__ import annotations

from llvmlite import ir

from ..ops.expr import arg
from ..ops.random import (SOURCES, TWO_PI, UNIFORM_BITS, WORDS_PER_BLOCK, is_single_element, keep_threshold,
                          random_symbol)
from . import vecmath
from .elementwise import ExprLowering, compute_dtype, convert
from .irutil import I64, IR_TYPES, KernelBuilder, call_intrinsic, const, loop, size_of

I128 = ir.IntType(128)
MULTIPLIERS = (0xD2E7470EE14C6C93, 0xCA5A826395121157)
WEYL = (0x9E3779B97F4A7C15, 0xBB67AE8584CAA73B)
ROUNDS = 10
MASK64 = 2**64 - 1


def _mulhilo(b: ir.IRBuilder, multiplier: int, value: ir.Value) -> tuple:
    """(high, low) 64-bit halves of the 128-bit product ``multiplier * value``."""
    product = b.mul(ir.Constant(I128, multiplier), b.zext(value, I128))
    return b.trunc(b.lshr(product, ir.Constant(I128, 64)), I64), b.trunc(product, I64)


def philox4x64(b: ir.IRBuilder, counter: list, key: list) -> list:
    """The four words of Philox4x64-10 for four i64 ``counter`` words and two i64 ``key`` words."""
    c = list(counter)
    for r in range(ROUNDS):
        round_key = [b.add(k, ir.Constant(I64, r * w & MASK64)) for k, w in zip(key, WEYL)]
        high0, low0 = _mulhilo(b, MULTIPLIERS[0], c[0])
        high1, low1 = _mulhilo(b, MULTIPLIERS[1], c[2])
        c = [b.xor(b.xor(high1, c[1]), round_key[0]), low1, b.xor(b.xor(high0, c[3]), round_key[1]), low0]
    return c


def _uniform(b: ir.IRBuilder, word: ir.Value, dtype: str) -> ir.Value:
    """The top 24 (float32) or 53 (float64) bits of ``word`` as a uniform in [0, 1): exact."""
    bits = UNIFORM_BITS[dtype]
    scaled = b.uitofp(b.lshr(word, const(64 - bits)), IR_TYPES[dtype])
    return b.fmul(scaled, ir.Constant(IR_TYPES[dtype], 2.0**-bits))


def _normal_pair(b: ir.IRBuilder, first: ir.Value, second: ir.Value) -> tuple:
    """Box-Muller in float64: (r cos t, r sin t) with r = sqrt(-2 log(1 - u1)), t = 2 pi u2."""
    f64 = IR_TYPES["float64"]
    u1 = b.fsub(ir.Constant(f64, 1.0), _uniform(b, first, "float64"))
    radius = call_intrinsic(b, "llvm.sqrt", b.fmul(ir.Constant(f64, -2.0), vecmath.log(b, u1)))
    angle = b.fmul(ir.Constant(f64, TWO_PI), _uniform(b, second, "float64"))
    return b.fmul(radius, vecmath.call(b, "cos", angle)), b.fmul(radius, vecmath.call(b, "sin", angle))


def _random_values(b: ir.IRBuilder, node, words: list) -> list:
    """The four elements' random values from their ``words``: uniforms or normals of the node's dtype, or
    dropout's keep bits (i1)."""
    dtype, distribution = node.dtype, node.attrs["distribution"]
    if distribution == "uniform":
        return [_uniform(b, w, dtype) for w in words]
    if distribution == "normal":
        normals = [z for pair in (words[0:2], words[2:4]) for z in _normal_pair(b, *pair)]
        return [z if dtype == "float64" else b.fptrunc(z, IR_TYPES[dtype]) for z in normals]
    threshold = const(keep_threshold(node.attrs["rate"]))
    return [b.icmp_unsigned(">=", b.lshr(w, const(40)), threshold) for w in words]


def _element(kb: KernelBuilder, node, random_value: ir.Value, index: ir.Value) -> ir.Value:
    """The body at element ``index``: each data input is read there (or at 0, a single element)."""
    b, compute = kb.builder, compute_dtype(node)
    values = {random_symbol(node): random_value}
    for position, data in enumerate(node.inputs[:-SOURCES]):
        offset = const(0) if is_single_element(data.shape) else index
        loaded = kb.load(kb.inputs[position], data.dtype, offset)
        values[arg(position)] = convert(b, loaded, data.dtype, compute)
    return convert(b, ExprLowering(kb, node, 1, values).number(node.attrs["expr"]), compute, node.dtype)


def emit_random(module: ir.Module, name: str, node, target, dim_index: dict) -> ir.Function:
    """``out[i]`` for every element i of the random node; see the module docstring."""
    kb = KernelBuilder.create(module, name, len(node.inputs), dim_index)
    b = kb.builder
    count = kb.dim(size_of(node.shape))
    blocks = b.udiv(b.add(count, const(WORDS_PER_BLOCK - 1)), const(WORDS_PER_BLOCK))
    begin, end = kb.thread_share(blocks, count)
    seed, step = [kb.load(pointer, "int64", const(0)) for pointer in kb.inputs[-SOURCES:]]
    zero = const(0)
    with loop(b, begin, end, name="block") as block:
        words = philox4x64(b, [block.index, step, zero, zero], [seed, zero])
        first = b.mul(block.index, const(WORDS_PER_BLOCK))
        for j, value in enumerate(_random_values(b, node, words)):
            index = b.add(first, const(j))
            with b.if_then(b.icmp_signed("<", index, count), likely=True):  # the last block may be partial
                kb.store(_element(kb, node, value, index), kb.out, node.dtype, index)
    return kb.finish()
