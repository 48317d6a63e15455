"""Kernels of ``take`` and ``scatter_add`` (graphc/ops/indexing.py), and how they report bad indices.

Both see their operands as (outer, n, inner) around the axis, ``count`` indices:

* take:        out[o, j, :] = x[o, idx[j], :]. Threads split the outer * count rows; a row is one
               copy of ``inner`` elements (llvm.memcpy: inlined for a small static row, libc's memcpy
               otherwise), so a row gather along axis 0 of a 2-D array is a memcpy per index.
* scatter_add: out = 0; out[o, idx[j], :] += g[o, j, :] for j = 0, 1, ... in order. Threads split the
               outer * inner columns, and each walks every index for its columns: no two threads
               touch the same element, and each element adds its updates in index order, so repeated
               indices give the same bits on any number of threads (and as the reference's np.add.at).

A take along axis 0 that only GEMMs read as their A operand is never computed: the fusion pass marks it
(``folded_take``) and each GEMM reads A's rows through its indices (graphc/lower/gemm.py), after checking
them all (``emit_index_check``).

Bad indices. An index is wrapped once as numpy does (i < 0: i + n) and must then lie in [0, n).
No kernel reads or writes through an index outside: take fills that row with NaN (0 for integers),
scatter_add skips it, a GEMM reading A through the indices of a folded take computes nothing, and all
record the smallest such flat position in the kernel's status word
(a global ``<kernel>.bad_index`` in the program's object code, all ones while every index was good).
``IndexStatus.check`` reads (and clears) the status words after a call and raises IndexError naming
the op, the user's line and the position: the runtime calls it after every native call, so a bad
index is an error, never a silently wrong value. The value itself is not reported: with several bad
indices on several threads no single store could say which value belongs to the smallest position.
"""
from __future__ import annotations

import ctypes

import numpy as np
from llvmlite import ir

from ..graph.shapes import evaluate_dim, evaluate_shape
from .irutil import (I1, I64, I8, ITEMSIZE, PTR, KernelBuilder, const, constant_like, imin, intrinsic, lanes_for,
                     loop, size_of, vector_type, vectors_then_tail)

NO_BAD_INDEX = 2 ** 64 - 1  # a status word's value while every index was in range (umin keeps the smallest)


def emit_take(module: ir.Module, name: str, node, target, dim_index: dict) -> ir.Function:
    """out[o, j, :] = x[o, indices[j], :] (numpy.take along attrs['axis'])."""
    x, indices = node.inputs
    axis = node.attrs["axis"]
    kb = KernelBuilder.create(module, name, 2, dim_index)
    b = kb.builder
    n, count = kb.dim(x.shape[axis]), kb.dim(size_of(indices.shape))
    inner_size = size_of(x.shape[axis + 1:])
    inner = kb.dim(inner_size)
    status = status_word(module, name)
    rows = b.mul(kb.dim(size_of(x.shape[:axis])), count)
    begin, end = kb.thread_share(rows, kb.dim(size_of(node.shape)))
    with loop(b, begin, end, name="row") as row:
        outer, j = (const(0), row.index) if axis == 0 else (b.udiv(row.index, count), b.urem(row.index, count))
        index, valid = _wrapped_index(kb, indices.dtype, j, n)
        destination = b.mul(row.index, inner)
        with b.if_else(valid) as (good, bad):
            with good:
                source = b.mul(b.add(b.mul(outer, n), index), inner)
                if inner_size == 1:
                    kb.store(kb.load(kb.inputs[0], x.dtype, source), kb.out, x.dtype, destination)
                else:
                    _copy(kb, x.dtype, destination, source, inner)
            with bad:
                b.atomic_rmw("umin", status, j, "monotonic")
                poison = constant_like(vector_type(x.dtype, 1), "nan" if x.dtype.startswith("float") else 0)
                with loop(b, const(0), inner, name="fill") as k:
                    kb.store(poison, kb.out, x.dtype, b.add(destination, k.index))
    return kb.finish()


def emit_scatter_add(module: ir.Module, name: str, node, target, dim_index: dict) -> ir.Function:
    """out = zeros(shape); out[o, indices[j], :] += updates[o, j, :] for each j in order."""
    updates, indices = node.inputs
    axis, dtype = node.attrs["axis"], node.dtype
    kb = KernelBuilder.create(module, name, 2, dim_index)
    b = kb.builder
    lanes = lanes_for(target, dtype)
    n, count = kb.dim(node.shape[axis]), kb.dim(size_of(indices.shape))
    inner = kb.dim(size_of(node.shape[axis + 1:]))
    status = status_word(module, name)
    columns = b.mul(kb.dim(size_of(node.shape[:axis])), inner)  # (o, c) pairs: each thread owns some
    begin, end = kb.thread_share(columns, kb.dim(size_of(node.shape) + size_of(updates.shape)), lanes)
    with loop(b, begin, end, name="segment") as segment:
        outer, column = b.udiv(segment.index, inner), b.urem(segment.index, inner)
        width = imin(b, b.sub(inner, column), b.sub(end, segment.index))  # columns [column, column + width)
        first = b.add(b.mul(b.mul(outer, n), inner), column)
        with b.if_else(b.icmp_signed("==", width, inner)) as (whole, part):
            with whole:  # all n rows of this outer index are ours: one contiguous block
                _zero(kb, dtype, first, b.mul(n, inner))
            with part:
                with loop(b, const(0), n, name="zero") as r:
                    _zero(kb, dtype, b.add(first, b.mul(r.index, inner)), width)
        with loop(b, const(0), count, name="j") as j:
            index, valid = _wrapped_index(kb, indices.dtype, j.index, n)
            with b.if_else(valid) as (good, bad):
                with good:
                    destination = b.add(first, b.mul(index, inner))
                    source = b.add(b.mul(b.add(b.mul(outer, count), j.index), inner), column)
                    _accumulate(kb, dtype, destination, source, width, lanes)
                with bad:
                    b.atomic_rmw("umin", status, j.index, "monotonic")
        segment.step = width
    return kb.finish()


def folded_take(node):
    """The take whose result a GEMM ``node`` reads as its A operand through the take's indices, the take
    itself never computed (marked by graphc/passes/fusion.py's fold_take_into_matmul), or None."""
    a = node.inputs[0] if node.op.kind == "matmul" else None
    return a if a is not None and a.op.name == "take" and a.attrs.get("into_matmul") else None


def emit_index_check(kb, indices, dtype, count, n, status) -> ir.Value:
    """Whether indices[0:count] (of ``dtype``) all lie in [-n, n), an i1; an index that does not has its
    position recorded in the status word ``status`` as take's kernel records it (the smallest wins).
    Every thread checks every index, so all threads agree."""
    b = kb.builder
    good = kb.variable(I1)
    b.store(ir.Constant(I1, 1), good)
    with loop(b, const(0), count, name="check") as j:
        _, valid = _wrapped_index(kb, dtype, j.index, n, indices)
        with b.if_then(b.not_(valid)):
            b.atomic_rmw("umin", status, j.index, "monotonic")
            b.store(ir.Constant(I1, 0), good)
    return b.load(good)


def status_word(module, name) -> ir.GlobalVariable:
    """The bad-index record of kernel ``name``: an exported i64, read by IndexStatus through the object's symbols."""
    word = ir.GlobalVariable(module, I64, name=f"{name}.bad_index")
    word.initializer = ir.Constant(I64, -1)  # NO_BAD_INDEX
    return word


def _wrapped_index(kb, dtype, j, n, indices=None):
    """(indices[j] wrapped once into [0, n) as numpy wraps a negative index, whether it landed there);
    ``indices``: the kernel's input 1 unless given."""
    b = kb.builder
    value = kb.load(kb.inputs[1] if indices is None else indices, dtype, j)
    value = b.sext(value, I64) if dtype == "int32" else value
    index = b.select(b.icmp_signed("<", value, const(0)), b.add(value, n), value)
    return index, b.icmp_unsigned("<", index, n)  # a still-negative index is a huge unsigned one


def _copy(kb, dtype, destination, source, count):
    """out[destination : destination + count] = in0[source : ...], by llvm.memcpy."""
    b = kb.builder
    memcpy = intrinsic(kb.function.module, "llvm.memcpy", ir.VoidType(), [PTR, PTR, I64, I1], [PTR, PTR, I64])
    b.call(memcpy, [kb.element_pointer(kb.out, dtype, destination), kb.element_pointer(kb.inputs[0], dtype, source),
                    b.mul(count, const(ITEMSIZE[dtype])), ir.Constant(I1, 0)])


def _zero(kb, dtype, start, count):
    """out[start : start + count] = 0, by llvm.memset (all-zero bytes are 0 and +0.0 in every dtype)."""
    b = kb.builder
    memset = intrinsic(kb.function.module, "llvm.memset", ir.VoidType(), [PTR, I8, I64, I1], [PTR, I64])
    b.call(memset, [kb.element_pointer(kb.out, dtype, start), ir.Constant(I8, 0),
                    b.mul(count, const(ITEMSIZE[dtype])), ir.Constant(I1, 0)])


def _accumulate(kb, dtype, destination, source, count, lanes):
    """out[destination + k] += in0[source + k] for k < count: vectors of ``lanes``, then one at a time."""
    b = kb.builder
    add = b.fadd if dtype.startswith("float") else b.add

    def step(k, width):
        at = b.add(destination, k)
        total = add(kb.load(kb.out, dtype, at, width), kb.load(kb.inputs[0], dtype, b.add(source, k), width))
        kb.store(total, kb.out, dtype, at)
    vectors_then_tail(b, count, lanes, step)


class IndexStatus:
    """The status words of a compiled program's take and scatter_add kernels (row-kernel members too) and
    of its GEMMs that read A through a folded take (reported as that take).

    ``check(dims)`` after a call raises IndexError for the first kernel that met an index out of
    range, after clearing every word for the next call. A program without such kernels checks nothing.
    """

    def __init__(self, schedule, compiled):
        self._words = []  # (ctypes word, node)
        for kernel in schedule.kernels:
            members = [m for _, m in kernel.members] if hasattr(kernel, "members") else [kernel]
            for member in members:
                node = member.node if member.node.op.name in ("take", "scatter_add") else folded_take(member.node)
                if node is not None:
                    address = compiled.address(f"{member.name}.bad_index")
                    self._words.append((ctypes.c_uint64.from_address(address), node))

    def addresses(self) -> list:
        """The status words' addresses: what a native loop of steps watches (runtime/native.py run_steps)."""
        return [ctypes.addressof(word) for word, _ in self._words]

    def check(self, dims: dict) -> None:
        first = None
        for word, node in self._words:
            if word.value != NO_BAD_INDEX:
                first = first or _message(node, word.value, dims)
                word.value = NO_BAD_INDEX
        if first:
            raise IndexError(first)


def _message(node, position, dims) -> str:
    indices = node.inputs[1]
    axis = node.attrs["axis"]
    n = evaluate_dim((node.inputs[0] if node.op.name == "take" else node).shape[axis], dims)
    where = tuple(int(i) for i in np.unravel_index(position, evaluate_shape(indices.shape, dims)))
    return (f"{node.op.name} {node.name} (at {node.location}): the index at position {where} of the indices is "
            f"out of bounds for axis {axis} with size {n} (valid: {-n} to {n - 1}); the call's outputs and "
            f"updates are not valid")
