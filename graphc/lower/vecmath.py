"""Vectorized exp, log, tanh, sin and cos for float32 (Cephes polynomials), libm intrinsics for float64;
and, built on them for both, sigmoid, softplus, log1p and expm1, accurate in relative terms.

`llvm.exp.v16f32` is scalarized into 16 calls of expf, so float32 gets inline
range reduction + polynomial code that stays in vector registers. Special
values behave as numpy's: exp(-inf) = 0, exp(+inf) = exp(large) = inf,
log(0) = -inf, log(negative) = nan, log(inf) = inf, tanh(+-large) = +-1, NaN in
gives NaN out. float64 uses `llvm.exp/log/tanh/sin/cos.f64` (libm per element).

float32 sin and cos: Cody-Waite reduction by pi/2 with a five-part pi/2, then Cephes' sinf/cosf
polynomials on [-pi/4, pi/4]. For |x| <= TRIG_LIMIT (12867: the quadrant q has at most 13 bits)
they are within 2 ulp of the float64 result rounded to float32, next to multiples of pi/2 too:
measured over every float32 in [0, 12867] (sin and cos are odd/even by construction), 98.2% are
exact, 1.8% 1 ulp off, 8765 of 1.18e9 2 ulp off; numpy's own float32 sin/cos are within 1 ulp.
tests/ops/test_more_ops.py keeps the bound on random inputs and the floats nearest every k pi/2.
A vector with a finite lane beyond TRIG_LIMIT takes the slower exact path for all its lanes:
`llvm.sin/cos.f32`, libm's sinf/cosf per element. sin/cos of +-inf and NaN are NaN; sin(-0) = -0.

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
TWO_OVER_PI = 0.636619772367581343
# pi/2 = sum of PIO2: the first four have 11 significant bits, so q * part is exact for |q| < 2^13 (|x| up to
# TRIG_LIMIT), and each subtraction x - q * part is exact while the remainder is small against it (Sterbenz):
# r keeps its relative accuracy even at x = 252.898, where |r| = 4.2e-9, the closest a float32 below
# TRIG_LIMIT comes to a multiple of pi/2. The parts cover pi/2 to 2^-77.
PIO2 = [1.5703125, 4.837512969970703e-4, 7.549533620476723e-08, 2.5632829192545614e-12, 6.123234262925839e-17]
TRIG_LIMIT = 12867.0
SIN_POLY = [-1.9515295891e-4, 8.3321608736e-3, -1.6666654611e-1]  # sin r = r + r^3 P(r^2) on [-pi/4, pi/4]
COS_POLY = [2.443315711809948e-5, -1.388731625493765e-3, 4.166664568298827e-2]  # cos r = 1 - r^2/2 + r^4 Q(r^2)


def exp(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return call(builder, "exp", x)


def log(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    return call(builder, "log", x)


def call(builder: ir.IRBuilder, name: str, x: ir.Value) -> ir.Value:
    """``name`` (a key of _BODIES: exp, log, tanh, sigmoid, softplus, log1p, expm1, sin, cos) of ``x``."""
    element = x.type.element if isinstance(x.type, ir.VectorType) else x.type
    if isinstance(element, ir.DoubleType) and name in ("exp", "log", "tanh", "sin", "cos"):
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
    small = call_intrinsic(m.b, "llvm.copysign", small, x)  # tanh(-0) = -0, where the fma gives -0 + 0 = +0
    return m.select(m.cmp(">=", z, m.c(0.625)), large, small)


def _sigmoid_body(m: _Math, x):
    small = exp(m.b, m.b.fneg(call_intrinsic(m.b, "llvm.fabs", x)))  # exp(-|x|) never overflows
    positive = m.div(m.c(1.0), m.add(m.c(1.0), small))
    return m.select(m.cmp(">=", x, m.c(0.0)), positive, m.mul(small, positive))  # NaN: small * ... = NaN


def _softplus_body(m: _Math, x):
    tail = call(m.b, "log1p", exp(m.b, m.b.fneg(call_intrinsic(m.b, "llvm.fabs", x))))
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


def _sin_or_cos(m: _Math, x, cosine: bool):
    """See the module docstring: x = q pi/2 + r, then +-sin r or +-cos r by the quadrant q mod 4."""
    reduced = m.cmp("<=", call_intrinsic(m.b, "llvm.fabs", x), m.c(TRIG_LIMIT))  # false for inf and NaN
    xs = m.select(reduced, x, m.c(0.0))  # every lane's q fits an i32
    q = call_intrinsic(m.b, "llvm.rint", m.mul(xs, m.c(TWO_OVER_PI)))
    r = xs
    for part in PIO2:
        r = m.fma(q, m.c(-part), r)
    z = m.mul(r, r)
    sine = m.fma(m.mul(m.polynomial(SIN_POLY, z), z), r, r)
    cosine_r = m.add(m.fma(m.mul(m.polynomial(COS_POLY, z), z), z, m.mul(z, m.c(-0.5))), m.c(1.0))
    quadrant = m.b.fptosi(q, m.int_type)
    if cosine:  # cos x = sin(x + pi/2): one quadrant on
        quadrant = m.b.add(quadrant, m.ci(1))
    odd = m.b.icmp_signed("!=", m.b.and_(quadrant, m.ci(1)), m.ci(0))
    negative = m.b.icmp_signed("!=", m.b.and_(quadrant, m.ci(2)), m.ci(0))
    value = m.select(odd, cosine_r, sine)
    value = m.select(negative, m.b.fneg(value), value)
    if not cosine:
        value = m.select(m.cmp("==", x, m.c(0.0)), x, value)  # sin(-0) = -0 (r came out +0)
    value = m.select(reduced, value, m.c(math.nan))
    # A finite lane beyond TRIG_LIMIT: the whole vector through libm instead (rare, slow, exact).
    large = m.b.and_(m.b.fcmp_ordered(">", call_intrinsic(m.b, "llvm.fabs", x), m.c(TRIG_LIMIT)),
                     m.b.fcmp_ordered("!=", call_intrinsic(m.b, "llvm.fabs", x), m.c(math.inf)))
    if isinstance(m.type, ir.VectorType):  # any lane: the i1 lanes as the bits of one integer
        mask = ir.IntType(m.type.count)
        large = m.b.icmp_unsigned("!=", m.b.bitcast(large, mask), ir.Constant(mask, 0))
    fast_block = m.b.block
    with m.b.if_then(large, likely=False):
        exact = call_intrinsic(m.b, "llvm.cos" if cosine else "llvm.sin", x)
        exact_block = m.b.block
    result = m.b.phi(m.type)
    result.add_incoming(value, fast_block)
    result.add_incoming(exact, exact_block)
    return result


_BODIES = {"sin": lambda m, x: _sin_or_cos(m, x, False), "cos": lambda m, x: _sin_or_cos(m, x, True),
           "exp": _exp_body, "log": _log_body, "tanh": _tanh_body, "sigmoid": _sigmoid_body,
           "softplus": _softplus_body, "log1p": _log1p_body, "expm1": _expm1_body}
