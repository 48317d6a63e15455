"""`emit_softmax`, `emit_log_softmax` (max subtracted first, as the reference) and `emit_one_hot`.

The input is viewed as (outer, length, inner) around the softmax axis. Last
axis (inner == 1): each row is vectorized along itself, with horizontal max
and sum. Other axes: `inner` independent columns, vectorized across columns.
Threads split the outer rows.
"""
from __future__ import annotations

from llvmlite import ir

from . import vecmath
from .irutil import (I64, KernelBuilder, const, constant_like, lanes_for, loop, size_of, splat, vector_type)
from .reduce import Combiner


def emit_softmax(module: ir.Module, name: str, node, target, dim_index: dict) -> ir.Function:
    """exp(x - max) / sum(exp(x - max)) along attrs['axis']."""
    return _emit(module, name, node, target, dim_index, log=False)


def emit_log_softmax(module: ir.Module, name: str, node, target, dim_index: dict) -> ir.Function:
    """(x - max) - log(sum(exp(x - max))) along attrs['axis']."""
    return _emit(module, name, node, target, dim_index, log=True)


class _Softmax:
    """The three passes over one row (or one group of columns) of `length` elements `stride` apart."""

    def __init__(self, kb: KernelBuilder, dtype: str, log: bool):
        self.kb, self.b, self.dtype, self.log = kb, kb.builder, dtype, log
        self.maximum = Combiner("reduce_max", dtype)
        self.sum = Combiner("reduce_sum", dtype)

    def columns(self, base, length, stride, width):
        """`width` adjacent columns at `base`, each reduced on its own (no horizontal folds)."""
        kb, b = self.kb, self.b
        typ = vector_type(self.dtype, width)
        peak, total = kb.variable(typ), kb.variable(typ)
        b.store(self.maximum.identity(typ), peak)
        b.store(self.sum.identity(typ), total)
        with loop(b, const(0), length, name="max") as i:
            value = kb.load(kb.inputs[0], self.dtype, b.add(base, b.mul(i.index, stride)), width)
            b.store(self.maximum.combine(b, b.load(peak), value), peak)
        top = b.load(peak)
        with loop(b, const(0), length, name="sum") as i:
            offset = b.add(base, b.mul(i.index, stride))
            self._exponentiate(offset, top, total, width)
        scale = self._scale(b.load(total))
        with loop(b, const(0), length, name="write") as i:
            self._write(b.add(base, b.mul(i.index, stride)), top, scale, width)

    def row(self, base, length, lanes):
        """One contiguous row: vector passes with a scalar remainder, horizontal max and sum."""
        kb, b = self.kb, self.b
        vector_end = b.sub(length, b.urem(length, const(lanes)))
        peaks = [kb.variable(vector_type(self.dtype, w)) for w in (lanes, 1)]
        totals = [kb.variable(vector_type(self.dtype, w)) for w in (lanes, 1)]
        for slot, w in zip(peaks, (lanes, 1)):
            b.store(self.maximum.identity(vector_type(self.dtype, w)), slot)
        for slot, w in zip(totals, (lanes, 1)):
            b.store(self.sum.identity(vector_type(self.dtype, w)), slot)

        def passes(body):
            with loop(b, const(0), vector_end, lanes, name="vec") as i:
                body(b.add(base, i.index), lanes, 0)
            with loop(b, vector_end, length, name="tail") as i:
                body(b.add(base, i.index), 1, 1)

        def find_max(offset, width, slot):
            value = kb.load(kb.inputs[0], self.dtype, offset, width)
            b.store(self.maximum.combine(b, b.load(peaks[slot]), value), peaks[slot])
        passes(find_max)
        top = self.maximum.combine(b, self.maximum.fold(b, b.load(peaks[0])), b.load(peaks[1]))
        passes(lambda offset, width, slot: self._exponentiate(offset, splat(b, top, width), totals[slot], width))
        total = self.sum.combine(b, self.sum.fold(b, b.load(totals[0])), b.load(totals[1]))
        scale = self._scale(total)
        passes(lambda offset, width, slot: self._write(offset, splat(b, top, width), splat(b, scale, width), width))

    def _exponentiate(self, offset, top, total, width):
        """total += exp(x - max); softmax also stores the exponential for the last pass."""
        kb, b = self.kb, self.b
        e = vecmath.exp(b, b.fsub(kb.load(kb.inputs[0], self.dtype, offset, width), top))
        if not self.log:
            kb.store(e, kb.out, self.dtype, offset)
        b.store(b.fadd(b.load(total), e), total)

    def _scale(self, total):
        return vecmath.log(self.b, total) if self.log else total

    def _write(self, offset, top, scale, width):
        kb, b = self.kb, self.b
        if self.log:
            shifted = b.fsub(kb.load(kb.inputs[0], self.dtype, offset, width), top)
            kb.store(b.fsub(shifted, scale), kb.out, self.dtype, offset)
        else:
            kb.store(b.fdiv(kb.load(kb.out, self.dtype, offset, width), scale), kb.out, self.dtype, offset)


def _emit(module, name, node, target, dim_index, log: bool) -> ir.Function:
    x = node.inputs[0]
    axis = node.attrs["axis"]
    kb = KernelBuilder.create(module, name, 1, dim_index)
    b = kb.builder
    lanes = lanes_for(target, x.dtype)
    outer, length = kb.dim(size_of(x.shape[:axis])), kb.dim(x.shape[axis])
    inner_size = size_of(x.shape[axis + 1:])
    inner = kb.dim(inner_size)
    softmax = _Softmax(kb, x.dtype, log)
    begin, end = kb.thread_share(outer, kb.dim(size_of(x.shape)))
    with loop(b, begin, end, name="row") as row:
        base = b.mul(b.mul(row.index, length), inner)
        if inner_size == 1:
            softmax.row(base, length, lanes)
        else:
            vector_end = b.sub(inner, b.urem(inner, const(lanes)))
            with loop(b, const(0), vector_end, lanes, name="cols") as j:
                softmax.columns(b.add(base, j.index), length, inner, lanes)
            with loop(b, vector_end, inner, name="col") as j:
                softmax.columns(b.add(base, j.index), length, inner, 1)
    return kb.finish()


def emit_one_hot(module: ir.Module, name: str, node, target, dim_index: dict) -> ir.Function:
    """out[..., k] = (indices[...] == k): a row of zeros with one 1 (none for an index outside [0, depth))."""
    indices = node.inputs[0]
    depth = node.attrs["depth"]
    kb = KernelBuilder.create(module, name, 1, dim_index)
    b = kb.builder
    count = kb.dim(size_of(indices.shape))
    begin, end = kb.thread_share(count, kb.dim(size_of(node.shape)))
    zero, one = (constant_like(vector_type(node.dtype, 1), v) for v in (0, 1))
    with loop(b, begin, end, name="k") as k:
        row = b.mul(k.index, const(depth))
        with loop(b, const(0), const(depth), name="zero") as j:
            kb.store(zero, kb.out, node.dtype, b.add(row, j.index))
        index = kb.load(kb.inputs[0], indices.dtype, k.index)
        index = b.sext(index, I64) if indices.dtype == "int32" else index
        in_range = b.and_(b.icmp_signed(">=", index, const(0)), b.icmp_signed("<", index, const(depth)))
        with b.if_then(in_range):
            kb.store(one, kb.out, node.dtype, b.add(row, index))
    return kb.finish()
