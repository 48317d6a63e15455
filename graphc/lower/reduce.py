"""`emit_reduce` (reduce_sum / reduce_max / reduce_min over any axes) and `emit_argmax`.

The input's axes are coalesced into alternating kept / reduced groups (length-1
axes dropped, neighbours with the same role merged), then one of two loop nests:

* innermost group reduced (sum of each row, mean over everything): each output
  element accumulates its contiguous run in a vector register, folded
  horizontally at the end. Threads split the output elements.
* innermost group kept (the bias gradient: axis 0 of (batch, n)): the output
  itself is the accumulator. Threads split the output into blocks; for each
  block every reduced index adds one contiguous input vector per output
  vector, so input rows are read in order and the block stays in L1.

max/min propagate NaN (llvm.maximum/minimum), as numpy's max/min. Sums are
accumulated in the input dtype (numpy's pairwise float sum rounds differently
in the last bits).
"""
from __future__ import annotations

import math

import sympy
from llvmlite import ir

from .epilogue import apply_updates, update_arguments
from .irutil import (I32, KernelBuilder, call_intrinsic, const, constant_like, contiguous_strides, dot_offset, imin,
                     lanes_for, loop, size_of, unravel, vector_type, vectors_then_tail)

# Output elements per block in the kept-inner loop nest: the block is the accumulator and stays in L1.
_BLOCK = 1024
_INT_LIMITS = {"int32": (-2 ** 31, 2 ** 31 - 1), "int64": (-2 ** 63, 2 ** 63 - 1), "bool": (0, 1)}


class Combiner:
    """The binary operation of one reduction for one dtype, its identity, and the horizontal fold."""

    def __init__(self, kind: str, dtype: str):
        self.kind, self.dtype = kind, dtype
        self.is_float = dtype.startswith("float")

    def identity(self, typ: ir.Type) -> ir.Constant:
        if self.kind == "reduce_sum":
            return constant_like(typ, 0)
        if self.is_float:
            return constant_like(typ, -math.inf if self.kind == "reduce_max" else math.inf)
        low, high = _INT_LIMITS[self.dtype]
        return constant_like(typ, low if self.kind == "reduce_max" else high)

    def combine(self, builder: ir.IRBuilder, a: ir.Value, b: ir.Value) -> ir.Value:
        if self.kind == "reduce_sum":
            return builder.fadd(a, b) if self.is_float else builder.add(a, b)
        if self.is_float:
            name = "llvm.maximum" if self.kind == "reduce_max" else "llvm.minimum"
        else:
            sign = "u" if self.dtype == "bool" else "s"
            name = f"llvm.{sign}max" if self.kind == "reduce_max" else f"llvm.{sign}min"
        return call_intrinsic(builder, name, a, b)

    def fold(self, builder: ir.IRBuilder, vector: ir.Value) -> ir.Value:
        """The combination of all lanes of `vector`, by halving."""
        width = vector.type.count
        while width > 2:
            width //= 2
            halves = [builder.shuffle_vector(vector, vector, ir.Constant(ir.VectorType(I32, width),
                                                                          list(range(start, start + width))))
                      for start in (0, width)]
            vector = self.combine(builder, *halves)
        lanes = [builder.extract_element(vector, ir.Constant(I32, lane)) for lane in range(width)]
        return lanes[0] if width == 1 else self.combine(builder, *lanes)


def _groups(shape, axes):
    """[(size, reduced)] over the input's non-unit axes, neighbours with the same role merged."""
    groups = []
    for axis, dim in enumerate(shape):
        if sympy.sympify(dim) == 1:
            continue
        reduced = axis in axes
        if groups and groups[-1][1] == reduced:
            groups[-1] = (groups[-1][0] * sympy.sympify(dim), reduced)
        else:
            groups.append((sympy.sympify(dim), reduced))
    return groups


def _nested(kb: KernelBuilder, groups, strides, body, name="r"):
    """Loops over every group in `groups`; body(offset) gets sum(index * stride) as i64."""
    def level(depth, offset):
        if depth == len(groups):
            body(offset)
            return
        with loop(kb.builder, const(0), kb.dim(groups[depth]), name=f"{name}{depth}") as index:
            level(depth + 1, kb.builder.add(offset, kb.builder.mul(index.index, kb.dim(strides[depth]))))
    level(0, const(0))


def emit_reduce(module: ir.Module, name: str, node, target, dim_index: dict, updates=(),
                store_product=True) -> ir.Function:
    """out = reduce(in0) over node.attrs['axes'] (keepdims only changes the output shape, not its layout).

    ``updates`` (see epilogue.py) run on each finished output element, in place at its flat position;
    their pointers follow in0 (``update_arguments``). The output is always written: it is the accumulator.
    """
    x = node.inputs[0]
    update_names = update_arguments(updates)
    kb = KernelBuilder.create(module, name, 1 + len(update_names), dim_index)
    pointers = dict(zip(update_names, kb.inputs[1:]))

    def finish(offset, value, width):
        """The updates for the finished output element(s) at ``offset``."""
        def load(pointer_name, operand):
            return kb.load(pointers[pointer_name], operand.dtype, offset, width)

        def store(pointer_name, result, dtype):
            kb.store(result, pointers[pointer_name], dtype, offset)
        apply_updates(kb, updates, value, node.dtype, width, load, store)
    groups = _groups(x.shape, node.attrs["axes"]) or [(sympy.Integer(1), False)]  # all axes of length 1
    strides = contiguous_strides([size for size, _ in groups])
    kept = [(size, stride) for (size, reduced), stride in zip(groups, strides) if not reduced]
    reduced = [(size, stride) for (size, is_reduced), stride in zip(groups, strides) if is_reduced]
    combiner = Combiner(node.op.name, x.dtype)
    lanes = lanes_for(target, x.dtype)
    finish_elements = finish if updates else None
    if groups and groups[-1][1]:
        _emit_reduce_inner(kb, x.dtype, kept, reduced, combiner, lanes, size_of(x.shape), finish_elements)
    else:
        _emit_reduce_outer(kb, x.dtype, kept, reduced, combiner, lanes, size_of(x.shape), finish_elements)
    return kb.finish()


def _emit_reduce_inner(kb, dtype, kept, reduced, combiner, lanes, work, finish=None):
    """Each output element: a vector accumulator over its contiguous innermost run (+ outer reduced groups)."""
    b = kb.builder
    scalar_type, vector = vector_type(dtype, 1), vector_type(dtype, lanes)
    outputs = kb.dim(size_of([size for size, _ in kept]))
    begin, end = kb.thread_share(outputs, kb.dim(work))
    (run, _), outer_reduced = reduced[-1], reduced[:-1]
    run = kb.dim(run)
    with loop(b, begin, end, name="o") as o:
        index = unravel(b, o.index, [kb.dim(size) for size, _ in kept]) if kept else []
        base = dot_offset(b, index, [kb.dim(stride) for _, stride in kept], const(0))
        accumulators = [kb.variable(vector), kb.variable(scalar_type)]
        b.store(combiner.identity(vector), accumulators[0])
        b.store(combiner.identity(scalar_type), accumulators[1])

        def accumulate_run(offset):
            start = b.add(base, offset)
            vector_end = b.sub(run, b.urem(run, const(lanes)))
            with loop(b, const(0), vector_end, lanes, name="vec") as j:
                value = kb.load(kb.inputs[0], dtype, b.add(start, j.index), lanes)
                b.store(combiner.combine(b, b.load(accumulators[0]), value), accumulators[0])
            with loop(b, vector_end, run, name="tail") as j:
                value = kb.load(kb.inputs[0], dtype, b.add(start, j.index))
                b.store(combiner.combine(b, b.load(accumulators[1]), value), accumulators[1])

        _nested(kb, [size for size, _ in outer_reduced], [stride for _, stride in outer_reduced], accumulate_run)
        total = combiner.combine(b, combiner.fold(b, b.load(accumulators[0])), b.load(accumulators[1]))
        kb.store(total, kb.out, dtype, o.index)
        if finish is not None:
            finish(o.index, total, 1)


def _emit_reduce_outer(kb, dtype, kept, reduced, combiner, lanes, work, finish=None):
    """The innermost group is kept: accumulate whole input rows into a block of the output."""
    b = kb.builder
    sizes = [kb.dim(size) for size, _ in kept]
    outputs = kb.dim(size_of([size for size, _ in kept]))
    inner = sizes[-1]
    begin, end = kb.thread_share(outputs, kb.dim(work), lanes)
    with loop(b, begin, end, name="block") as block:
        position = block.index
        row, column = b.udiv(position, inner), b.urem(position, inner)
        count = imin(b, imin(b, b.sub(inner, column), b.sub(end, position)), const(_BLOCK))
        index = unravel(b, row, sizes[:-1]) + [column]
        base = dot_offset(b, index, [kb.dim(stride) for _, stride in kept], const(0))

        def update(width, source_offset):
            """out[position + j] = combine(out[position + j], in[source + j]) over the block."""
            def step(j, w):
                out_offset = b.add(position, j)
                current = kb.load(kb.out, dtype, out_offset, w) if source_offset is not None else \
                    combiner.identity(vector_type(dtype, w))
                if source_offset is not None:
                    current = combiner.combine(b, current, kb.load(kb.inputs[0], dtype, b.add(source_offset, j), w))
                kb.store(current, kb.out, dtype, out_offset)
            vectors_then_tail(b, count, width, step)

        update(lanes, None)  # the block starts as the identity
        _nested(kb, [size for size, _ in reduced], [stride for _, stride in reduced],
                lambda offset: update(lanes, b.add(base, offset)))
        if finish is not None:  # the block is complete: its elements are final
            def finish_elements(j, width):
                offset = b.add(position, j)
                finish(offset, kb.load(kb.out, dtype, offset, width), width)
            vectors_then_tail(b, count, lanes, finish_elements, name="finish")
        block.step = count


def emit_argmax(module: ir.Module, name: str, node, target, dim_index: dict) -> ir.Function:
    """int64 index of the largest element along attrs['axis']: the first on ties, the first NaN if any."""
    x = node.inputs[0]
    axis = node.attrs["axis"]
    kb = KernelBuilder.create(module, name, 1, dim_index)
    b = kb.builder
    length, inner = kb.dim(x.shape[axis]), kb.dim(size_of(x.shape[axis + 1:]))
    outputs = kb.dim(size_of(node.shape))
    begin, end = kb.thread_share(outputs, kb.dim(size_of(x.shape)))
    is_float = x.dtype.startswith("float")
    with loop(b, begin, end, name="o") as o:
        outer, j = b.udiv(o.index, inner), b.urem(o.index, inner)
        base = b.add(b.mul(b.mul(outer, length), inner), j)
        best_value, best_index = kb.variable(vector_type(x.dtype, 1)), kb.variable(vector_type("int64", 1))
        b.store(kb.load(kb.inputs[0], x.dtype, base), best_value)
        b.store(const(0), best_index)
        with loop(b, const(1), length, name="i") as i:
            value = kb.load(kb.inputs[0], x.dtype, b.add(base, b.mul(i.index, inner)))
            best = b.load(best_value)
            if is_float:
                # Once the best is NaN it stays; a NaN beats any number.
                better = b.or_(b.fcmp_ordered(">", value, best), b.fcmp_unordered("uno", value, value))
                take = b.and_(better, b.fcmp_ordered("ord", best, best))
            else:
                take = (b.icmp_unsigned if x.dtype == "bool" else b.icmp_signed)(">", value, best)
            b.store(b.select(take, value, best), best_value)
            b.store(b.select(take, i.index, b.load(best_index)), best_index)
        kb.store(b.load(best_index), kb.out, "int64", o.index)
    return kb.finish()

