"""Shared pieces of the kernel emitters: IR types, loops, run-time dims, thread shares, intrinsics.

Every non-matmul kernel has the signature

    void name(T_out* out, T_in0* in0, ..., i64* dims, i32 tid, i32 nthreads)

and is built through `KernelBuilder`, which creates that function, evaluates
sympy dimension expressions from `dims` (once, in the entry block) and splits
work between the `nthreads` concurrent callers: each call with tid in
[0, nthreads) does a disjoint share and never waits for the others; below
PARALLEL_THRESHOLD elements thread 0 does everything. Buffers are C-contiguous
with the node's and inputs' shapes. Loads and stores assume element alignment
only. `out` must not overlap an input, except that elementwise kernels (and
reshape) stay correct when `out` is input 0 and has its shape and dtype.
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import sympy
from llvmlite import ir

I1 = ir.IntType(1)
I8 = ir.IntType(8)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
PTR = ir.PointerType()

IR_TYPES = {"bool": I8, "int32": I32, "int64": I64, "float32": ir.FloatType(), "float64": ir.DoubleType()}
ITEMSIZE = {"bool": 1, "int32": 4, "int64": 8, "float32": 4, "float64": 8}
# Below this many elements one thread does all the work: splitting costs more than it saves.
PARALLEL_THRESHOLD = 32 * 1024


def const(value: int) -> ir.Constant:
    return ir.Constant(I64, value)


def is_float_type(typ: ir.Type) -> bool:
    element = typ.element if isinstance(typ, ir.VectorType) else typ
    return isinstance(element, (ir.FloatType, ir.DoubleType))


def itemsize_of(typ: ir.Type) -> int:
    """Bytes (and natural alignment) of one element of the scalar or vector type `typ`."""
    element = typ.element if isinstance(typ, ir.VectorType) else typ
    return next(ITEMSIZE[dtype] for dtype, ir_type in IR_TYPES.items() if ir_type == element)


def vector_type(dtype: str, width: int) -> ir.Type:
    """`<width x T>`, or the scalar type itself for width 1."""
    return IR_TYPES[dtype] if width == 1 else ir.VectorType(IR_TYPES[dtype], width)


def lanes_for(target, dtype: str) -> int:
    """Elements of `dtype` that fill one vector register of `target`."""
    return max(1, target.vector_bytes // ITEMSIZE[dtype])


def constant_like(typ: ir.Type, value) -> ir.Constant:
    """`value` as a constant of `typ`, splatted when `typ` is a vector."""
    if isinstance(typ, ir.VectorType):
        return ir.Constant(typ, [constant_like(typ.element, value)] * typ.count)
    if is_float_type(typ):
        return ir.Constant(typ, float(value))
    return ir.Constant(typ, int(value))


def splat(builder: ir.IRBuilder, scalar: ir.Value, width: int) -> ir.Value:
    if width == 1:
        return scalar
    vector = ir.VectorType(scalar.type, width)
    undef = ir.Constant(vector, ir.Undefined)
    lane0 = builder.insert_element(undef, scalar, ir.Constant(I32, 0))
    return builder.shuffle_vector(lane0, undef, ir.Constant(ir.VectorType(I32, width), [0] * width))


def type_suffix(typ: ir.Type) -> str:
    """LLVM's overload suffix: f32, v16f32, i64, v8i8, p0 ..."""
    if isinstance(typ, ir.PointerType):
        return f"p{typ.addrspace}"
    if isinstance(typ, ir.VectorType):
        return f"v{typ.count}{type_suffix(typ.element)}"
    if isinstance(typ, ir.FloatType):
        return "f32"
    if isinstance(typ, ir.DoubleType):
        return "f64"
    return f"i{typ.width}"


def intrinsic(module: ir.Module, name: str, ret: ir.Type, args: list, suffix_types=None) -> ir.Function:
    """Declare (once) the overloaded intrinsic `name` for `ret`/`args`, e.g. llvm.maximum.v16f32."""
    suffix = ".".join(type_suffix(t) for t in (suffix_types or [ret]))
    full = f"{name}.{suffix}"
    if full in module.globals:
        return module.globals[full]
    return ir.Function(module, ir.FunctionType(ret, args), name=full)


def call_intrinsic(builder: ir.IRBuilder, name: str, *values: ir.Value) -> ir.Value:
    """`name(values...)` for intrinsics whose result has the type of their first operand."""
    function = intrinsic(builder.module, name, values[0].type, [v.type for v in values])
    return builder.call(function, list(values))


def imin(builder: ir.IRBuilder, a: ir.Value, b: ir.Value) -> ir.Value:
    return builder.select(builder.icmp_signed("<", a, b), a, b)


class Loop:
    """The state of a `loop`: `index` is the loop variable; set `step` in the body for a variable step."""

    def __init__(self, index: ir.Value, step):
        self.index = index
        self.step = step


@contextlib.contextmanager
def loop(builder: ir.IRBuilder, start: ir.Value, stop: ir.Value, step=1, name="i"):
    """`for index in range(start, stop, step)` over i64 (step > 0); the body goes in the `with` block."""
    preheader = builder.block
    header = builder.append_basic_block(f"{name}.head")
    body = builder.append_basic_block(f"{name}.body")
    exit_block = builder.append_basic_block(f"{name}.exit")
    builder.branch(header)
    builder.position_at_end(header)
    index = builder.phi(I64, name=name)
    index.add_incoming(start, preheader)
    builder.cbranch(builder.icmp_signed("<", index, stop), body, exit_block)
    builder.position_at_end(body)
    state = Loop(index, step)
    yield state
    step_value = const(state.step) if isinstance(state.step, int) else state.step
    index.add_incoming(builder.add(index, step_value), builder.block)
    builder.branch(header)
    builder.position_at_end(exit_block)


def vectors_then_tail(builder: ir.IRBuilder, count: ir.Value, lanes: int, step, name="vec"):
    """``step(index, width)`` over [0, count): ``lanes`` elements at a time, then the rest one by one."""
    vector_end = const(0)
    if lanes > 1:
        vector_end = builder.sub(count, builder.urem(count, const(lanes)))
        with loop(builder, const(0), vector_end, lanes, name=name) as i:
            step(i.index, lanes)
    with loop(builder, vector_end, count, name=f"{name}.tail") as i:
        step(i.index, 1)


def unravel(builder: ir.IRBuilder, flat: ir.Value, sizes: list) -> list:
    """The multi-index (last axis fastest) of `flat` over i64 `sizes`."""
    if not sizes:
        return []
    indexes = []
    for size in reversed(sizes[1:]):
        indexes.append(builder.urem(flat, size))
        flat = builder.udiv(flat, size)
    indexes.append(flat)
    return indexes[::-1]


def dot_offset(builder: ir.IRBuilder, indexes: list, strides: list, start: ir.Value) -> ir.Value:
    for index, stride in zip(indexes, strides):
        start = builder.add(start, builder.mul(index, stride))
    return start


@dataclass
class KernelBuilder:
    """One kernel function being emitted, with its arguments and helpers bound to it."""

    function: ir.Function
    builder: ir.IRBuilder
    out: ir.Value
    inputs: list
    dims: ir.Value
    tid: ir.Value
    nthreads: ir.Value
    dim_index: dict
    _entry: ir.IRBuilder
    _body_start: ir.Block
    _cache: dict

    @classmethod
    def create(cls, module: ir.Module, name: str, n_inputs: int, dim_index: dict) -> "KernelBuilder":
        params = [PTR] * (n_inputs + 2) + [I32, I32]
        function = ir.Function(module, ir.FunctionType(ir.VoidType(), params), name=name)
        function.attributes.add("nounwind")
        entry = function.append_basic_block("entry")
        start = function.append_basic_block("start")
        args = list(function.args)
        self = cls(function, ir.IRBuilder(start), args[0], args[1:n_inputs + 1], args[n_inputs + 1],
                   args[n_inputs + 2], args[n_inputs + 3], dim_index, ir.IRBuilder(entry), start, {})
        self.tid = self._entry.sext(self.tid, I64, name="tid")
        self.nthreads = self._entry.sext(self.nthreads, I64, name="nthreads")
        return self

    def finish(self) -> ir.Function:
        self.builder.ret_void()
        self._entry.branch(self._body_start)
        return self.function

    # -- run-time sizes ------------------------------------------------------------------------
    def dim(self, expr) -> ir.Value:
        """The i64 value of a sympy integer expression (or int) over symbolic dims, computed in the entry block."""
        return dim_value(self._entry, expr, self.dims, self.dim_index, self._cache)

    def variable(self, typ: ir.Type) -> ir.Value:
        """A stack slot allocated once in the entry block (promoted to a register by LLVM)."""
        return self._entry.alloca(typ)

    # -- threads -----------------------------------------------------------------------------
    def thread_share(self, count: ir.Value, work: ir.Value, align: int = 1):
        """This thread's half-open range [begin, end) of `count` items; `work` (elements) decides if
        splitting pays. Chunks are multiples of `align` so vector loops stay aligned to each other."""
        b = self.builder
        parallel = b.icmp_signed(">=", work, const(PARALLEL_THRESHOLD))
        threads = b.select(parallel, self.nthreads, const(1))
        chunk = b.sdiv(b.add(count, b.sub(threads, const(1))), threads)
        chunk = b.mul(b.sdiv(b.add(chunk, const(align - 1)), const(align)), const(align))
        begin = imin(b, b.mul(self.tid, chunk), count)
        end = imin(b, b.add(begin, chunk), count)
        # Without splitting, threads other than 0 get the empty range [count, count).
        idle = b.and_(b.not_(parallel), b.icmp_signed("!=", self.tid, const(0)))
        return b.select(idle, count, begin), b.select(idle, count, end)

    def only_thread_zero(self):
        """Context: the body runs in thread 0 only (for kernels whose phases would race if split)."""
        return self.builder.if_then(self.builder.icmp_signed("==", self.tid, const(0)))

    # -- memory ------------------------------------------------------------------------------
    def element_pointer(self, base: ir.Value, dtype: str, offset: ir.Value) -> ir.Value:
        return self.builder.gep(base, [offset], source_etype=IR_TYPES[dtype])

    def load(self, base: ir.Value, dtype: str, offset: ir.Value, width: int = 1) -> ir.Value:
        return self.builder.load(self.element_pointer(base, dtype, offset), typ=vector_type(dtype, width),
                                 align=ITEMSIZE[dtype])

    def store(self, value: ir.Value, base: ir.Value, dtype: str, offset: ir.Value) -> None:
        self.builder.store(value, self.element_pointer(base, dtype, offset), align=ITEMSIZE[dtype])


def dim_value(builder: ir.IRBuilder, expr, dims: ir.Value, dim_index: dict, cache: dict | None = None) -> ir.Value:
    """The i64 value of the sympy integer expression `expr` (or an int), reading symbols from `dims`.

    Handles Integer, Symbol, Add, Mul (with rational coefficients that make an integer), positive
    integer Pow, floor/ceiling of a rational expression, Max, Min and Mod. `cache` (expr -> value)
    shares values between calls emitted at the same point.
    """
    return _DimEvaluator(builder, dims, dim_index, {} if cache is None else cache).value(expr)


@dataclass
class _DimEvaluator:
    builder: ir.IRBuilder
    dims: ir.Value
    dim_index: dict
    cache: dict

    def value(self, expr) -> ir.Value:
        expr = sympy.sympify(expr)
        if expr not in self.cache:
            self.cache[expr] = self._evaluate(expr)
        return self.cache[expr]

    def _evaluate(self, expr) -> ir.Value:
        b = self.builder
        if expr.is_Integer:
            return const(int(expr))
        if expr.is_Symbol:
            if expr not in self.dim_index:
                raise KeyError(f"dimension {expr} has no entry in dim_index {self.dim_index}")
            pointer = b.gep(self.dims, [const(self.dim_index[expr])], source_etype=I64)
            # Named by position, not by symbol: fresh dims (?7) must not change the IR text the cache keys on.
            return b.load(pointer, typ=I64, name=f"dim{self.dim_index[expr]}")
        if isinstance(expr, (sympy.floor, sympy.ceiling)):
            numerator, denominator = sympy.fraction(sympy.together(expr.args[0]))
            if not denominator.is_Integer:
                raise NotImplementedError(f"cannot evaluate dimension {expr}")
            if isinstance(expr, sympy.floor):
                return self._floor_div(self.value(numerator), int(denominator))
            return b.neg(self._floor_div(b.neg(self.value(numerator)), int(denominator)))
        if expr.is_Add:
            numerator, denominator = sympy.fraction(sympy.together(expr))
            if denominator != 1:  # (n + 1)/2 written as n/2 + 1/2: exact once put over one denominator
                return b.sdiv(self.value(numerator), self.value(denominator))
            return self._fold(b.add, expr.args)
        if expr.is_Mul:
            coefficient, rest = expr.as_coeff_Mul()
            if coefficient.is_Rational and coefficient.q != 1:
                return b.sdiv(self.value(coefficient.p * rest), const(coefficient.q))
            return self._fold(b.mul, expr.args)
        if expr.is_Pow and expr.exp.is_Integer and expr.exp > 0:
            return self._fold(b.mul, [expr.base] * int(expr.exp))
        if isinstance(expr, (sympy.Max, sympy.Min)):
            op = ">" if isinstance(expr, sympy.Max) else "<"
            return self._fold(lambda x, y: b.select(b.icmp_signed(op, x, y), x, y), expr.args)
        if isinstance(expr, sympy.Mod):
            return b.srem(self.value(expr.args[0]), self.value(expr.args[1]))
        raise NotImplementedError(f"cannot evaluate dimension expression {expr} ({type(expr).__name__})")

    def _fold(self, op, args) -> ir.Value:
        """op(op(v0, v1), v2)... over the values of `args` (all evaluated first, in order)."""
        return functools.reduce(op, [self.value(a) for a in args])

    def _floor_div(self, value: ir.Value, divisor: int) -> ir.Value:
        b = self.builder
        quotient = b.sdiv(value, const(divisor))
        inexact_negative = b.and_(b.icmp_signed("<", value, const(0)),
                                  b.icmp_signed("!=", b.mul(quotient, const(divisor)), value))
        return b.sub(quotient, b.zext(inexact_negative, I64))


def contiguous_strides(shape) -> tuple:
    """Row-major strides (in elements) of `shape`, as sympy expressions."""
    strides, stride = [], sympy.Integer(1)
    for dim in reversed(shape):
        strides.append(stride)
        stride = stride * sympy.sympify(dim)
    return tuple(reversed(strides))


def size_of(shape):
    return sympy.Mul(*[sympy.sympify(d) for d in shape])
