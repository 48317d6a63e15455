"""The strided map: out[i] = body(in0[i], in1[i], ...) over an iteration shape, every operand with its own strides.

Elementwise ops (broadcast inputs have stride 0), transpose, broadcast_to,
reshape, slice and concatenate are all this one loop nest with different
strides. Axes are first coalesced (two neighbours merge when every operand
walks them as one axis), so a same-shape elementwise op is one flat loop.

Threads share the flat iteration space [0, size). Each thread walks its range
in row segments: a segment is a run along the innermost axis, vectorized when
every operand's inner stride is 0 (splat) or 1 (vector load/store), with a
scalar remainder.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import sympy
from llvmlite import ir

from .irutil import (KernelBuilder, const, contiguous_strides, dot_offset, imin, loop, size_of, splat, unravel,
                     vectors_then_tail)


@dataclass(frozen=True)
class Operand:
    """A buffer seen through the iteration shape: element i is at offset + sum(i[d] * strides[d])."""

    pointer: ir.Value
    dtype: str
    strides: tuple  # one sympy expression per iteration axis, in elements
    offset: object = 0


def broadcast_strides(shape, out_shape) -> tuple:
    """Strides of a C-contiguous `shape` broadcast (numpy rules) to `out_shape`: 0 on broadcast axes."""
    own = contiguous_strides(shape)
    padded = (None,) * (len(out_shape) - len(shape)) + tuple(zip(shape, own))
    return tuple(sympy.Integer(0) if entry is None or (entry[0] == 1 and out_dim != 1) else entry[1]
                 for entry, out_dim in zip(padded, out_shape))


def coalesce(shape, stride_lists):
    """Drop length-1 axes and merge neighbours that every operand walks contiguously; returns (shape, strides)."""
    axes = [d for d in range(len(shape)) if sympy.sympify(shape[d]) != 1]
    dims = [sympy.sympify(shape[d]) for d in axes]
    strides = [[sympy.sympify(s[d]) for d in axes] for s in stride_lists]
    merged_dims, merged = [], [[] for _ in strides]
    for axis, dim in enumerate(dims):
        if merged_dims and all(sympy.simplify(m[-1] - s[axis] * dim) == 0 for m, s in zip(merged, strides)):
            merged_dims[-1] = merged_dims[-1] * dim
            for m, s in zip(merged, strides):
                m[-1] = s[axis]
            continue
        merged_dims.append(dim)
        for m, s in zip(merged, strides):
            m.append(s[axis])
    if not merged_dims:  # a scalar: one element
        return [sympy.Integer(1)], [[sympy.Integer(0)] for _ in strides]
    return merged_dims, merged


Body = Callable[[ir.IRBuilder, list, int], ir.Value]


def emit_map(kb: KernelBuilder, shape, output: Operand, inputs: list, body: Body, lanes: int,
             parallel: bool = True) -> None:
    """Emit the loop nest storing `body(builder, input values, width)` into `output` over `shape`.

    `body` gets the inputs as loaded (their own IR types), as `<width x T>` vectors or scalars
    (width 1), and returns a value of the output's IR type and the same width.
    """
    operands = [output, *inputs]
    dims, strides = coalesce(shape, [o.strides for o in operands])
    b = kb.builder
    sizes = [kb.dim(d) for d in dims]
    total = kb.dim(size_of(dims))
    inner = sizes[-1]
    if parallel:
        begin, end = kb.thread_share(total, total, lanes)
    else:
        begin, end = const(0), total
    inner_static = [s[-1] for s in strides]
    vectorizable = lanes > 1 and inner_static[0] == 1 and all(s in (0, 1) for s in inner_static)
    with loop(b, begin, end, name="segment") as segment:
        position = segment.index
        row, column = (b.udiv(position, inner), b.urem(position, inner)) if len(dims) > 1 else (const(0), position)
        count = imin(b, b.sub(inner, column), b.sub(end, position))
        outer = unravel(b, row, sizes[:-1])
        bases = []
        for operand, operand_strides in zip(operands, strides):
            start = dot_offset(b, outer, [kb.dim(s) for s in operand_strides[:-1]], kb.dim(operand.offset))
            bases.append(b.add(start, b.mul(column, kb.dim(operand_strides[-1]))))
        _emit_segment(kb, operands, strides, bases, count, body, lanes if vectorizable else 1)
        segment.step = count


def _emit_segment(kb, operands, strides, bases, count, body, lanes) -> None:
    """count elements from `bases`: vectors of `lanes` first, then one at a time."""
    b = kb.builder
    inner_strides = [kb.dim(s[-1]) for s in strides]
    output, inputs = operands[0], operands[1:]
    # Broadcast inner operands (stride 0) are the same value along the whole segment.
    invariant = {i: kb.load(op.pointer, op.dtype, bases[i + 1])
                 for i, op in enumerate(inputs) if strides[i + 1][-1] == 0}

    def step(j, width):
        values = []
        for i, op in enumerate(inputs):
            if i in invariant:
                values.append(splat(b, invariant[i], width))
            else:
                offset = b.add(bases[i + 1], b.mul(j, inner_strides[i + 1]))
                values.append(kb.load(op.pointer, op.dtype, offset, width))
        result = body(b, values, width)
        kb.store(result, output.pointer, output.dtype, b.add(bases[0], b.mul(j, inner_strides[0])))

    vectors_then_tail(b, count, lanes, step)
