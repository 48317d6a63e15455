"""Layout kernels: transpose, broadcast_to, reshape, slice, unslice, concatenate.

Each is a strided map (see strided.py) that copies: only the strides differ.
A transpose that swaps the outermost and innermost axes (a plain 2-D transpose, or
one with axes kept between them: (n, h, w, c) -> (c, h, w, n), the input a filter
gradient reads) is instead copied in square tiles, so that both the rows read and
the rows written stay in cache.
"""
from __future__ import annotations

import sympy
from llvmlite import ir

from ..graph.shapes import dims_equal
from .irutil import (KernelBuilder, const, constant_like, contiguous_strides, imin, lanes_for, loop, size_of,
                     vector_type)
from .strided import Operand, broadcast_strides, coalesce, emit_map

# Tile edge (elements) of the 2-D transpose: 32 x 32 float32 is 4 KiB in and out.
_TILE = 32


def _copy(builder, values, width):
    return values[0]


def _emit_copy(module, name, node, target, dim_index, input_strides, input_offset=0) -> ir.Function:
    kb = KernelBuilder.create(module, name, 1, dim_index)
    output = Operand(kb.out, node.dtype, contiguous_strides(node.shape))
    source = Operand(kb.inputs[0], node.inputs[0].dtype, tuple(input_strides), input_offset)
    emit_map(kb, node.shape, output, [source], _copy, lanes_for(target, node.dtype))
    return kb.finish()


def emit_transpose(module: ir.Module, name: str, node, target, dim_index: dict) -> ir.Function:
    """out = in.transpose(attrs['axes'])."""
    strides = contiguous_strides(node.inputs[0].shape)
    permuted = tuple(strides[a] for a in node.attrs["axes"])
    dims, (out_strides, in_strides) = coalesce(node.shape, [contiguous_strides(node.shape), permuted])
    if len(dims) >= 2 and in_strides[0] == 1 and _kept_between(dims, in_strides):
        return _emit_tiled_transpose(module, name, node, dim_index, dims)
    return _emit_copy(module, name, node, target, dim_index, permuted)


def _kept_between(dims, in_strides) -> bool:
    """Whether the input is (last axis, the axes between, first axis) in row-major order: only the first and
    last axes of the output trade places."""
    expected = contiguous_strides((dims[-1], *dims[1:-1], dims[0]))
    return all(dims_equal(a, b) for a, b in zip(in_strides[1:], expected[1:-1] + expected[:1]))


def _emit_tiled_transpose(module, name, node, dim_index, dims) -> ir.Function:
    """out (rows x kept... x cols) = in (cols x kept... x rows) with the first and last axes swapped, tile by tile
    for each index of the kept axes between them; threads split the (kept index, tile row) pairs."""
    kb = KernelBuilder.create(module, name, 1, dim_index)
    b = kb.builder
    rows, cols, kept = kb.dim(dims[0]), kb.dim(dims[-1]), kb.dim(size_of(dims[1:-1]))
    tile_rows = b.udiv(b.add(rows, const(_TILE - 1)), const(_TILE))
    begin, end = kb.thread_share(b.mul(kept, tile_rows), kb.dim(size_of(dims)))
    with loop(b, begin, end, name="tile") as tile:
        middle, ti = b.udiv(tile.index, tile_rows), b.urem(tile.index, tile_rows)
        source, destination = b.mul(middle, rows), b.mul(middle, cols)  # the kept index's offsets, in and out
        row0 = b.mul(ti, const(_TILE))
        row_end = imin(b, b.add(row0, const(_TILE)), rows)
        with loop(b, const(0), cols, _TILE, name="tj") as tj:
            col_end = imin(b, b.add(tj.index, const(_TILE)), cols)
            with loop(b, row0, row_end, name="i") as i:
                with loop(b, tj.index, col_end, name="j") as j:
                    at = b.add(b.mul(j.index, b.mul(kept, rows)), b.add(source, i.index))
                    value = kb.load(kb.inputs[0], node.dtype, at)
                    kb.store(value, kb.out, node.dtype,
                             b.add(b.mul(i.index, b.mul(kept, cols)), b.add(destination, j.index)))
    return kb.finish()


def emit_broadcast_to(module: ir.Module, name: str, node, target, dim_index: dict) -> ir.Function:
    """out = np.broadcast_to(in, shape), materialized."""
    return _emit_copy(module, name, node, target, dim_index, broadcast_strides(node.inputs[0].shape, node.shape))


def emit_reshape(module: ir.Module, name: str, node, target, dim_index: dict) -> ir.Function:
    """out = in with a new shape: a flat copy (a program builder normally aliases instead)."""
    return _emit_copy(module, name, node, target, dim_index, contiguous_strides(node.shape))


def _sliced(strides, bounds):
    """Strides and start offset of the slice `bounds` ((start, stop, step) per axis) of a buffer with `strides`."""
    offset = sum((sympy.sympify(start) * stride for (start, _, _), stride in zip(bounds, strides)), sympy.Integer(0))
    return tuple(stride * step for (_, _, step), stride in zip(bounds, strides)), offset


def emit_slice(module: ir.Module, name: str, node, target, dim_index: dict) -> ir.Function:
    """out = in[start:stop:step, ...] per attrs['bounds']."""
    strides, offset = _sliced(contiguous_strides(node.inputs[0].shape), node.attrs["bounds"])
    return _emit_copy(module, name, node, target, dim_index, strides, offset)


def emit_unslice(module: ir.Module, name: str, node, target, dim_index: dict) -> ir.Function:
    """out = zeros(shape); out[bounds] = in. Thread 0 does both phases: split, they would race."""
    kb = KernelBuilder.create(module, name, 1, dim_index)
    lanes = lanes_for(target, node.dtype)
    out_strides = contiguous_strides(node.shape)
    strides, offset = _sliced(out_strides, node.attrs["bounds"])
    g = node.inputs[0]
    zero = _zero(node.dtype)
    with kb.only_thread_zero():
        emit_map(kb, node.shape, Operand(kb.out, node.dtype, out_strides), [],
                 lambda builder, values, width: zero(width), lanes, parallel=False)
        emit_map(kb, g.shape, Operand(kb.out, node.dtype, strides, offset),
                 [Operand(kb.inputs[0], g.dtype, contiguous_strides(g.shape))], _copy, lanes, parallel=False)
    return kb.finish()


def _zero(dtype):
    return lambda width: constant_like(vector_type(dtype, width), 0)


def emit_concatenate(module: ir.Module, name: str, node, target, dim_index: dict) -> ir.Function:
    """out = np.concatenate(inputs, attrs['axis']): one strided copy per input into its part of out."""
    axis = node.attrs["axis"]
    kb = KernelBuilder.create(module, name, len(node.inputs), dim_index)
    out_strides = contiguous_strides(node.shape)
    start = sympy.Integer(0)
    for pointer, part in zip(kb.inputs, node.inputs):
        destination = Operand(kb.out, node.dtype, out_strides, start * out_strides[axis])
        source = Operand(pointer, part.dtype, contiguous_strides(part.shape))
        emit_map(kb, part.shape, destination, [source], _copy, lanes_for(target, node.dtype))
        start = start + sympy.sympify(part.shape[axis])
    return kb.finish()

