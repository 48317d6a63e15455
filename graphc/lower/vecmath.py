"""Vectorized exp, log and tanh for float32 (Cephes polynomials), libm intrinsics for float64; and,
built on them for both, sigmoid, softplus, log1p and expm1, accurate in relative terms.

`llvm.exp.v16f32` is scalarized into 16 calls of expf, so float32 gets inline
range reduction + polynomial code that stays in vector registers. Special
values behave as numpy's: exp(-inf) = 0, exp(+inf) = exp(large) = inf,
log(0) = -inf, log(negative) = nan, log(inf) = inf, tanh(+-large) = +-1, NaN in
gives NaN out. float64 uses `llvm.exp/log/tanh.f64` (libm per element).

Each function is emitted once per module and vector type as a private
always-inline function `graphc.<name>.<type>`; callers just `call` it.
"""
from __future__ import annotations

import math

from llvmlite import ir

from .irutil import I32, call_intrinsic, constant_like, type_suffix

LOG2E = 1.44269504088896341
# ln 2 split so that n * LN2_HI is exact for |n| < 2^9 (Cody-Waite range reduction).
LN2_HI = 0.693359375
LN2_LO = -2.12194440e-4
EXP_POLY = [1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1,
            5.0000001201e-1]
LOG_POLY = [7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1,
            -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1]
TANH_POLY = [-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1, -3.33332819422e-1]
# exp input limits: beyond them the result is inf (over 88.72) or rounds to 0 (under -103.97).
EXP_HIGH = 88.8
EXP_LOW = -105.0
FLT_MIN = 1.17549435e-38


def exp(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return _call(builder, "exp", x)


def log(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return _call(builder, "log", x)


def tanh(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return _call(builder, "tanh", x)


def sigmoid(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return _call(builder, "sigmoid", x)


def softplus(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return _call(builder, "softplus", x)


def log1p(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return _call(builder, "log1p", x)


def expm1(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return _call(builder, "expm1", x)


def _call(builder: ir.IRBuilder, name: str, x: ir.Value) -> ir.Value:
    element = x.type.element if isinstance(x.type, ir.VectorType) else x.type
    if isinstance(element, ir.DoubleType) and name in ("exp", "log", "tanh"):
        return call_intrinsic(builder, f"llvm.{name}", x)
    module = builder.module
    full = f"graphc.{name}.{type_suffix(x.type)}"
    if full not in module.globals:
        function = ir.Function(module, ir.FunctionType(x.type, [x.type]), name=full)
        function.linkage = "private"
        function.attributes.add("alwaysinline")
        function.attributes.add("nounwind")
        body = ir.IRBuilder(function.append_basic_block("entry"))
        body.ret(_BODIES[name](_Math(body, x.type), function.args[0]))
    return builder.call(module.globals[full], [x])


class _Math:
    """Arithmetic on values of one float (vector) type, with constants splatted automatically."""

    def __init__(self, builder: ir.IRBuilder, typ: ir.Type):
        self.b = builder
        self.type = typ
        count = typ.count if isinstance(typ, ir.VectorType) else 1
        self.int_type = I32 if count == 1 else ir.VectorType(I32, count)

    def c(self, value):
        return constant_like(self.type, value)

    def ci(self, value):
        return constant_like(self.int_type, value)

    def add(self, a, b): return self.b.fadd(a, b)
    def sub(self, a, b): return self.b.fsub(a, b)
    def mul(self, a, b): return self.b.fmul(a, b)
    def div(self, a, b): return self.b.fdiv(a, b)
    def fma(self, a, b, c): return call_intrinsic(self.b, "llvm.fmuladd", a, b, c)
    def cmp(self, op, a, b): return self.b.fcmp_ordered(op, a, b)
    def select(self, cond, a, b): return self.b.select(cond, a, b)
    def is_nan(self, a): return self.b.fcmp_unordered("uno", a, a)

    def polynomial(self, coefficients, x):
        """Horner: ((c0 x + c1) x + c2) ... + cn."""
        result = self.c(coefficients[0])
        for coefficient in coefficients[1:]:
            result = self.fma(result, x, self.c(coefficient))
        return result

    def scale_by_power_of_two(self, y, n):
        """y * 2^n for integer n in [-151, 128], in two steps so each factor is a normal float."""
        half = self.b.ashr(n, self.ci(1))
        for part in (half, self.b.sub(n, half)):
            bits = self.b.shl(self.b.add(part, self.ci(127)), self.ci(23))
            y = self.mul(y, self.b.bitcast(bits, self.type))
        return y


def _exp_body(m: _Math, x):
    clamped = call_intrinsic(m.b, "llvm.minnum", call_intrinsic(m.b, "llvm.maxnum", x, m.c(EXP_LOW)),
                             m.c(EXP_HIGH))  # maxnum maps NaN to EXP_LOW; NaN is restored below
    n = call_intrinsic(m.b, "llvm.rint", m.mul(clamped, m.c(LOG2E)))
    r = m.fma(n, m.c(-LN2_HI), clamped)
    r = m.fma(n, m.c(-LN2_LO), r)
    y = m.add(m.fma(m.polynomial(EXP_POLY, r), m.mul(r, r), r), m.c(1.0))
    result = m.scale_by_power_of_two(y, m.b.fptosi(n, m.int_type))
    return m.select(m.is_nan(x), x, result)


def _log_body(m: _Math, x):
    # Subnormal inputs are scaled into the normal range first (exponent bits would be 0).
    subnormal = m.cmp("<", x, m.c(FLT_MIN))
    scaled = m.select(subnormal, m.mul(x, m.c(2.0 ** 23)), x)
    bits = m.b.bitcast(scaled, m.int_type)
    exponent = m.b.sub(m.b.lshr(bits, m.ci(23)), m.ci(126))
    exponent = m.b.sub(exponent, m.b.select(subnormal, m.ci(23), m.ci(0)))
    mantissa = m.b.bitcast(m.b.or_(m.b.and_(bits, m.ci(0x807FFFFF)), m.ci(0x3F000000)), m.type)  # in [0.5, 1)
    # Fold mantissas below sqrt(1/2) up by one octave so the polynomial argument is in [-0.29, 0.41].
    low = m.cmp("<", mantissa, m.c(math.sqrt(0.5)))
    e = m.b.sitofp(m.b.sub(exponent, m.b.zext(low, m.int_type)), m.type)
    t = m.sub(m.select(low, m.add(mantissa, mantissa), mantissa), m.c(1.0))
    z = m.mul(t, t)
    y = m.mul(m.mul(m.polynomial(LOG_POLY, t), t), z)
    y = m.fma(e, m.c(LN2_LO), y)
    y = m.fma(z, m.c(-0.5), y)
    result = m.fma(e, m.c(LN2_HI), m.add(t, y))
    result = m.select(m.cmp("==", x, m.c(math.inf)), x, result)
    result = m.select(m.cmp("==", x, m.c(0.0)), m.c(-math.inf), result)
    result = m.select(m.cmp("<", x, m.c(0.0)), m.c(math.nan), result)
    return m.select(m.is_nan(x), x, result)


def _tanh_body(m: _Math, x):
    z = call_intrinsic(m.b, "llvm.fabs", x)
    # |x| >= 0.625: 1 - 2/(exp(2|x|) + 1), which saturates to 1 as exp overflows to inf.
    large = m.sub(m.c(1.0), m.div(m.c(2.0), m.add(exp(m.b, m.add(z, z)), m.c(1.0))))
    large = call_intrinsic(m.b, "llvm.copysign", large, x)
    square = m.mul(x, x)
    small = m.fma(m.mul(m.polynomial(TANH_POLY, square), square), x, x)
    return m.select(m.cmp(">=", z, m.c(0.625)), large, small)


def _sigmoid_body(m: _Math, x):
    small = exp(m.b, m.b.fneg(call_intrinsic(m.b, "llvm.fabs", x)))  # exp(-|x|) never overflows
    positive = m.div(m.c(1.0), m.add(m.c(1.0), small))
    return m.select(m.cmp(">=", x, m.c(0.0)), positive, m.mul(small, positive))  # NaN: small * ... = NaN


def _softplus_body(m: _Math, x):
    tail = log1p(m.b, exp(m.b, m.b.fneg(call_intrinsic(m.b, "llvm.fabs", x))))
    return m.add(call_intrinsic(m.b, "llvm.maximum", x, m.c(0.0)), tail)


def _log1p_body(m: _Math, x):
    # Kahan: u = 1 + x rounds; log(u) * x / (u - 1) corrects for the rounding (exact when u - 1 == x).
    u = m.add(m.c(1.0), x)
    rounded = m.sub(u, m.c(1.0))
    corrected = m.mul(log(m.b, u), m.div(x, rounded))
    result = m.select(m.cmp("==", rounded, m.c(0.0)), x, corrected)
    return m.select(m.cmp("==", u, m.c(math.inf)), u, result)


def _expm1_body(m: _Math, x):
    # Kahan: for small |x|, (u - 1) * x / log(u) with u = exp(x) cancels the rounding of u; elsewhere u - 1.
    u = exp(m.b, x)
    rounded = m.sub(u, m.c(1.0))
    corrected = m.select(m.cmp("==", u, m.c(1.0)), x, m.div(m.mul(rounded, x), log(m.b, u)))
    small = m.cmp("<", call_intrinsic(m.b, "llvm.fabs", x), m.c(0.5))
    return m.select(small, corrected, rounded)


_BODIES = {"exp": _exp_body, "log": _log_body, "tanh": _tanh_body, "sigmoid": _sigmoid_body,
           "softplus": _softplus_body, "log1p": _log1p_body, "expm1": _expm1_body}
