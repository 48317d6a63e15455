"""`emit_elementwise`: an elementwise node's sympy body lowered to LLVM IR over a strided map.

Types: every input is loaded in its own dtype and converted to the compute
dtype: the node's dtype, or for a boolean result (comparisons, where's
condition) the promotion of the operand dtypes, as numpy compares them.
Sub-expressions are either numbers (of the compute type) or truth values
(i1); each is converted to the other where the body mixes them (bool * x,
Ne(x, 0)). Float arithmetic carries no fast-math flags, so NaN and Inf flow as
in numpy; Add and Mul fold left in sympy's argument order as the reference does.

out may be the same buffer as an input of the node's shape and dtype: each
output element is stored after reading only the inputs at the same position.
"""
from __future__ import annotations

import functools

import sympy
from llvmlite import ir

from ..graph import dtypes
from ..ops.expr import (Expm1, FloorDiv, FloorMod, Log1p, Sigmoid, Softplus, StopGradient, arg_index, input_symbols,
                        numerator_and_denominator)
from . import vecmath
from .irutil import I1, ITEMSIZE, KernelBuilder, call_intrinsic, constant_like, contiguous_strides, lanes_for, splat, vector_type
from .strided import Operand, broadcast_strides, emit_map

_FLOAT_COMPARE = {sympy.Eq: "==", sympy.Ne: "!=", sympy.StrictGreaterThan: ">", sympy.StrictLessThan: "<",
                  sympy.GreaterThan: ">=", sympy.LessThan: "<="}


def compute_dtype(node) -> str:
    """The dtype arithmetic is done in: the result's, or the operands' promotion for a boolean result."""
    if node.dtype != "bool":
        return node.dtype
    promoted = dtypes.promote(*[i.dtype for i in node.inputs])
    return "int32" if promoted == "bool" else promoted


def convert(builder: ir.IRBuilder, value: ir.Value, source: str, target: str) -> ir.Value:
    """`value` (of dtype `source`, scalar or vector) as dtype `target`, with numpy's astype meaning."""
    if source == target:
        return value
    width = value.type.count if isinstance(value.type, ir.VectorType) else 1
    typ = vector_type(target, width)
    if target == "bool":
        zero = constant_like(value.type, 0)
        truth = (builder.fcmp_unordered("!=", value, zero) if dtypes.is_float(source)
                 else builder.icmp_unsigned("!=", value, zero))
        return builder.zext(truth, typ)
    if dtypes.is_float(target):
        if dtypes.is_float(source):
            return builder.fpext(value, typ) if source == "float32" else builder.fptrunc(value, typ)
        return builder.uitofp(value, typ) if source == "bool" else builder.sitofp(value, typ)
    if dtypes.is_float(source):
        return builder.fptosi(value, typ)
    if source == "bool":
        return builder.zext(value, typ)
    return builder.sext(value, typ) if ITEMSIZE[source] < ITEMSIZE[target] else builder.trunc(value, typ)


class ExprLowering:
    """Lower one sympy body at one vector width; `values` maps input symbols to converted IR values."""

    def __init__(self, kb: KernelBuilder, node, width: int, values: dict):
        self.kb = kb
        self.b = kb.builder
        self.node = node
        self.dtype = compute_dtype(node)
        self.width = width
        self.type = vector_type(self.dtype, width)
        self.values = values
        self.is_float = dtypes.is_float(self.dtype)

    # -- number <-> truth -----------------------------------------------------------------------
    def number(self, expr) -> ir.Value:
        value = self.lower(expr)
        if value.type == self.type:
            return value
        return self.b.uitofp(value, self.type) if self.is_float else self.b.zext(value, self.type)

    def truth(self, expr) -> ir.Value:
        value = self.lower(expr)
        if value.type != self.type:
            return value
        zero = constant_like(self.type, 0)
        return self.b.fcmp_unordered("!=", value, zero) if self.is_float else self.b.icmp_signed("!=", value, zero)

    def constant(self, value) -> ir.Value:
        return constant_like(self.type, value)

    # -- the lowering -------------------------------------------------------------------------
    def lower(self, expr) -> ir.Value:
        b = self.b
        if expr.is_Symbol:
            if arg_index(expr) is not None:
                return self.values[expr]
            # A symbolic dimension (mean divides by batch), as a number of the compute type.
            return splat(b, convert(b, self.kb.dim(expr), "int64", self.dtype), self.width)
        if expr is sympy.true or expr is sympy.false:
            return constant_like(I1 if self.width == 1 else ir.VectorType(I1, self.width), int(bool(expr)))
        if expr.is_Number or expr.is_NumberSymbol:
            if not self.is_float and not expr.is_Integer:
                raise NotImplementedError(f"{self._where()}: non-integer constant {expr} in {self.dtype} arithmetic")
            return self.constant(int(expr) if expr.is_Integer else float(expr))
        if isinstance(expr, sympy.Piecewise):
            return self._piecewise(expr)
        handler = _HANDLERS.get(type(expr))
        if handler is None:
            raise NotImplementedError(f"{self._where()}: no lowering for sympy {type(expr).__name__} in {expr}")
        return handler(self, expr)

    def _where(self):
        return f"elementwise {self.node.attrs.get('label', '')} ({self.node.name}, at {self.node.location})"

    def _fold(self, expr, float_op, int_op):
        values = [self.number(a) for a in expr.args]
        result = values[0]
        for value in values[1:]:
            result = (float_op if self.is_float else int_op)(result, value)
        return result

    def _add(self, expr):
        return self._fold(expr, self.b.fadd, self.b.add)

    def _mul(self, expr):
        numerator, denominator = numerator_and_denominator(expr)
        if not denominator or not self.is_float:
            return self._fold(expr, self.b.fmul, self.b.mul)
        def product(factors):
            return functools.reduce(self.b.fmul, [self.number(f) for f in factors] or [self.constant(1.0)])
        return self.b.fdiv(product(numerator), product(denominator))  # x / y as numpy does it, not x * (1 / y)

    def _pow(self, expr):
        base, exponent = expr.args
        if exponent.is_Integer:
            return self._integer_power(self.number(base), int(exponent))
        if exponent in (sympy.Rational(1, 2), sympy.Rational(-1, 2)) and self.is_float:
            root = call_intrinsic(self.b, "llvm.sqrt", self.number(base))
            return root if exponent > 0 else self.b.fdiv(self.constant(1.0), root)
        if not self.is_float:
            raise NotImplementedError(f"{self._where()}: {expr} needs a float result")
        return call_intrinsic(self.b, "llvm.pow", self.number(base), self.number(exponent))

    def _integer_power(self, base, n: int):
        """base**n by squaring; negative n as 1 / base**-n (as numpy's reciprocal then power)."""
        if n < 0:
            if not self.is_float:
                raise NotImplementedError(f"{self._where()}: negative power of an integer")
            return self.b.fdiv(self.constant(1.0), self._integer_power(base, -n))
        multiply = self.b.fmul if self.is_float else self.b.mul
        result, square = None, base
        while n:
            if n & 1:
                result = square if result is None else multiply(result, square)
            n >>= 1
            if n:
                square = multiply(square, square)
        return result if result is not None else self.constant(1)

    def _abs(self, expr):
        x = self.number(expr.args[0])
        if self.is_float:
            return call_intrinsic(self.b, "llvm.fabs", x)
        return self.b.select(self.b.icmp_signed("<", x, self.constant(0)), self.b.neg(x), x)

    def _sign(self, expr):
        x = self.number(expr.args[0])
        gt = self.b.fcmp_ordered(">", x, self.constant(0)) if self.is_float else \
            self.b.icmp_signed(">", x, self.constant(0))
        lt = self.b.fcmp_ordered("<", x, self.constant(0)) if self.is_float else \
            self.b.icmp_signed("<", x, self.constant(0))
        # 0 and NaN map to themselves, as in numpy.
        return self.b.select(gt, self.constant(1), self.b.select(lt, self.constant(-1), x))

    def _heaviside(self, expr):
        x = self.number(expr.args[0])
        zero = self.constant(0)
        return self.b.fcmp_ordered(">", x, zero) if self.is_float else self.b.icmp_signed(">", x, zero)

    def _compare(self, expr):
        left, right = self.number(expr.args[0]), self.number(expr.args[1])
        op = _FLOAT_COMPARE[type(expr)]
        if self.is_float:
            # numpy: every comparison with NaN is false, except != which is true.
            return (self.b.fcmp_unordered if op == "!=" else self.b.fcmp_ordered)(op, left, right)
        return self.b.icmp_signed(op, left, right)

    def _logic(self, expr):
        values = [self.truth(a) for a in expr.args]
        op = self.b.and_ if isinstance(expr, sympy.And) else self.b.or_
        result = values[0]
        for value in values[1:]:
            result = op(result, value)
        return result

    def _not(self, expr):
        return self.b.not_(self.truth(expr.args[0]))

    def _floor_divmod(self, expr):
        """numpy's floor_divide (FloorDiv) or remainder (FloorMod); LLVM folds the one not used away."""
        x, y = self.number(expr.args[0]), self.number(expr.args[1])
        quotient, remainder = (self._float_divmod if self.is_float else self._int_divmod)(x, y)
        return quotient if isinstance(expr, FloorDiv) else remainder

    def _float_divmod(self, a, b):
        """numpy's npy_divmod, step by step (floor(a / b) differs: 1 // 0.1 is 9, as fmod(1, 0.1) shows)."""
        bld, zero, one = self.b, self.constant(0.0), self.constant(1.0)
        fmod = bld.frem(a, b)  # C's fmod: exact
        # The remainder takes the divisor's sign; a NaN remainder counts as non-zero, as C's `if (mod)`.
        adjust = bld.and_(bld.fcmp_unordered("!=", fmod, zero),
                          bld.xor(bld.fcmp_ordered("<", b, zero), bld.fcmp_ordered("<", fmod, zero)))
        remainder = bld.select(adjust, bld.fadd(fmod, b), fmod)
        remainder = bld.select(bld.fcmp_ordered("==", fmod, zero), call_intrinsic(bld, "llvm.copysign", zero, b),
                               remainder)
        div = bld.fdiv(bld.fsub(a, fmod), b)  # very nearly an integer
        div = bld.select(adjust, bld.fsub(div, one), div)
        floor = call_intrinsic(bld, "llvm.floor", div)
        floor = bld.select(bld.fcmp_ordered(">", bld.fsub(div, floor), self.constant(0.5)), bld.fadd(floor, one), floor)
        quotient = bld.fdiv(a, b)
        floor = bld.select(bld.fcmp_ordered("==", div, zero), call_intrinsic(bld, "llvm.copysign", zero, quotient),
                           floor)
        by_zero = bld.fcmp_ordered("==", b, zero)  # a / 0 (+-inf or NaN) and fmod(a, 0) = NaN
        return bld.select(by_zero, quotient, floor), bld.select(by_zero, fmod, remainder)

    def _int_divmod(self, a, b):
        """Rounding toward -inf; a // 0 = a % 0 = 0 and INT_MIN // -1 = INT_MIN, as numpy gives them (with a
        warning): x86's idiv would raise SIGFPE on both, so they never reach it."""
        bld, zero, one = self.b, self.constant(0), self.constant(1)
        minimum = self.constant(-(1 << (ITEMSIZE[self.dtype] * 8 - 1)))
        by_zero = bld.icmp_signed("==", b, zero)
        overflow = bld.and_(bld.icmp_signed("==", a, minimum), bld.icmp_signed("==", b, self.constant(-1)))
        divisor = bld.select(bld.or_(by_zero, overflow), one, b)  # INT_MIN // 1 is the INT_MIN numpy gives
        quotient, remainder = bld.sdiv(a, divisor), bld.srem(a, divisor)  # rounded toward 0
        adjust = bld.and_(bld.icmp_signed("!=", remainder, zero),
                          bld.xor(bld.icmp_signed("<", remainder, zero), bld.icmp_signed("<", divisor, zero)))
        quotient = bld.select(adjust, bld.sub(quotient, one), quotient)
        remainder = bld.select(adjust, bld.add(remainder, divisor), remainder)
        return bld.select(by_zero, zero, quotient), bld.select(by_zero, zero, remainder)

    def _identity(self, expr):
        return self.number(expr.args[0])

    def _piecewise(self, expr):
        pairs = expr.args
        if pairs[-1][1] is not sympy.true:
            raise NotImplementedError(f"{self._where()}: Piecewise without a final True branch: {expr}")
        result = self.number(pairs[-1][0])
        for value, condition in reversed(pairs[:-1]):
            result = self.b.select(self.truth(condition), self.number(value), result)
        return result


def _math_handler(name):
    def lower(self, expr):
        if not self.is_float:
            raise NotImplementedError(f"{self._where()}: {name} of {self.dtype}")
        return vecmath.call(self.b, name, self.number(expr.args[0]))
    return lower


def _extremum_handler(float_name, int_name):
    """Max/Min: llvm.maximum/minimum propagate NaN like np.maximum/np.minimum."""
    def lower(self, expr):
        values = [self.number(a) for a in expr.args]
        result = values[0]
        for value in values[1:]:
            result = call_intrinsic(self.b, float_name if self.is_float else int_name, result, value)
        return result
    return lower


_HANDLERS = {
    sympy.Add: ExprLowering._add,
    sympy.Mul: ExprLowering._mul,
    sympy.Pow: ExprLowering._pow,
    sympy.exp: _math_handler("exp"),
    sympy.log: _math_handler("log"),
    sympy.tanh: _math_handler("tanh"),
    Sigmoid: _math_handler("sigmoid"),
    Softplus: _math_handler("softplus"),
    Log1p: _math_handler("log1p"),
    Expm1: _math_handler("expm1"),
    sympy.sin: _math_handler("sin"),
    sympy.cos: _math_handler("cos"),
    FloorDiv: ExprLowering._floor_divmod,
    FloorMod: ExprLowering._floor_divmod,
    StopGradient: ExprLowering._identity,
    sympy.Abs: ExprLowering._abs,
    sympy.sign: ExprLowering._sign,
    sympy.Max: _extremum_handler("llvm.maximum", "llvm.smax"),
    sympy.Min: _extremum_handler("llvm.minimum", "llvm.smin"),
    sympy.Heaviside: ExprLowering._heaviside,
    sympy.And: ExprLowering._logic,
    sympy.Or: ExprLowering._logic,
    sympy.Not: ExprLowering._not,
    **{relation: ExprLowering._compare for relation in _FLOAT_COMPARE},
}


def emit_elementwise(module: ir.Module, name: str, node, target, dim_index: dict) -> ir.Function:
    """`out = body(in0, in1, ...)` with numpy broadcasting; see the module docstring for types."""
    expr = node.attrs["expr"]
    kb = KernelBuilder.create(module, name, len(node.inputs), dim_index)
    compute = compute_dtype(node)
    symbols = input_symbols(expr)
    lanes = lanes_for(target, compute)
    output = Operand(kb.out, node.dtype, contiguous_strides(node.shape))
    inputs = [Operand(pointer, i.dtype, broadcast_strides(i.shape, node.shape))
              for pointer, i in zip(kb.inputs, node.inputs)]

    def body(builder, loaded, width):
        values = {s: convert(builder, loaded[arg_index(s)], node.inputs[arg_index(s)].dtype, compute)
                  for s in symbols}
        lowering = ExprLowering(kb, node, width, values)
        if node.dtype == "bool":
            return builder.zext(lowering.truth(expr), vector_type("bool", width))
        return convert(builder, lowering.number(expr), compute, node.dtype)

    emit_map(kb, node.shape, output, inputs, body, lanes)
    return kb.finish()

