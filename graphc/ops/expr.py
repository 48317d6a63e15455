"""Elementwise bodies as sympy expressions: input symbols, and their numpy evaluation.

An elementwise node's body is a sympy expression in the input symbols ``%0,
%1, ...`` and possibly symbolic dimensions (``mean`` divides by ``batch``).
The evaluator here is the reference semantics; ``graphc.lower`` maps the same
sympy node types to LLVM IR.
"""
import functools

import numpy as np
import sympy
from sympy.codegen.cfunctions import expm1 as Expm1, log1p as Log1p


@functools.lru_cache(maxsize=None)
def arg(index: int) -> sympy.Symbol:
    """The symbol standing for an elementwise node's input number ``index``."""
    return sympy.Symbol(f"%{index}", real=True)


def arg_index(symbol) -> int | None:
    name = symbol.name
    return int(name[1:]) if name.startswith("%") else None


def input_symbols(expr) -> list:
    return sorted((s for s in expr.free_symbols if arg_index(s) is not None), key=arg_index)


def dim_symbols(expr) -> list:
    return sorted((s for s in expr.free_symbols if arg_index(s) is None), key=lambda s: s.name)


class Sigmoid(sympy.Function):
    """1 / (1 + exp(-x)) as a function of its own: its derivative s (1 - s) is finite everywhere (the
    explicit form's is inf/inf for x << 0), and it is computed accurately in relative terms over the
    whole float range (sigmoid(-20) = 2.06e-9 in float32, not 0)."""

    def fdiff(self, argindex=1):
        return self * (1 - self)

    def _eval_is_real(self):
        return self.args[0].is_real


class Softplus(sympy.Function):
    """log(1 + exp(x)) as a function of its own: its derivative is sigmoid(x), also at 0, where the
    stable form max(x, 0) + log1p(exp(-|x|)) that computes it has kinks (Heaviside(0), sign(0))."""

    def fdiff(self, argindex=1):
        return Sigmoid(self.args[0])

    def _eval_is_real(self):
        return self.args[0].is_real


class FloorDiv(sympy.Function):
    """x // y with numpy's meaning: the quotient rounded toward -inf (for floats numpy's divmod, which is not
    floor(x / y): 1 // 0.1 is 9); integer division by zero gives 0, INT_MIN // -1 gives INT_MIN. A step
    function: its derivative is 0 (TF's FloorDiv has none, JAX's floor_divide a zero one)."""

    def fdiff(self, argindex=1):
        return sympy.Integer(0)

    def _eval_is_real(self):
        return True


class FloorMod(sympy.Function):
    """x % y with numpy's meaning: the remainder has the divisor's sign, x % 0 is 0 for integers and NaN
    for floats. x - floor(x / y) y as far as derivatives go: 1 for x and -(x // y) for y, as TF and JAX.
    (Not sympy.Mod, which simplifies itself and has no numpy meaning at 0.)"""

    def fdiff(self, argindex=1):
        return sympy.Integer(1) if argindex == 1 else -FloorDiv(*self.args)

    def _eval_is_real(self):
        return True


class StopGradient(sympy.Function):
    """The value of x, with derivative 0: gradients do not flow through it. A function of its own rather than
    the body x itself, so that it survives being composed into other bodies (fusion, stability rewrites)."""

    def fdiff(self, argindex=1):
        return sympy.Integer(0)

    def _eval_is_real(self):
        return self.args[0].is_real


def unevaluated_xreplace(expr, substitutions):
    """``expr.xreplace(substitutions)`` without sympy's automatic simplification of the result:
    substituting must not change what numpy computes (2 * (x + 1) distributed to 2x + 2 rounds
    differently, x / x would become 1, x * 0 would become 0, x == x would become True, which is False at
    NaN, exp(log(x)) would become x, which is not NaN for x < 0). Sums, products, powers, comparisons and
    function applications are rebuilt unevaluated: they are what simplifies itself."""
    if expr in substitutions:
        return substitutions[expr]
    if not expr.args:
        return expr
    args = tuple(unevaluated_xreplace(a, substitutions) for a in expr.args)
    if args == expr.args:
        return expr
    if isinstance(expr, (sympy.Add, sympy.Mul, sympy.Pow, sympy.core.relational.Relational, sympy.Function,
                         sympy.Max, sympy.Min)):
        return expr.func(*args, evaluate=False)
    return expr.func(*args)


def _sigmoid(x):
    small = np.exp(-np.abs(x))  # never overflows; 1 / (1 + small) is the result for x >= 0
    return np.where(x >= 0, 1 / (1 + small), small / (1 + small))


def _softplus(x):
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _power(base, exponent):
    # Small integer and half exponents are the common cases; np.power is slow and less exact for them.
    if np.ndim(exponent) != 0:  # a tensor exponent (x ** y, 2 ** x)
        return np.power(base, exponent)
    if exponent == 2:
        return base * base
    if exponent == -1:
        return 1 / base
    if exponent == 0.5:
        return np.sqrt(base)
    if exponent == -0.5:
        return 1 / np.sqrt(base)
    return np.power(base, exponent)


def _heaviside(x, *_):
    # The step at 0 is 0, so relu'(0) = 0 as in TensorFlow and PyTorch.
    return x > 0


def _piecewise(*pairs):
    result = pairs[-1][0]
    for value, condition in reversed(pairs[:-1]):
        result = np.where(condition, value, result)
    return result


def numerator_and_denominator(mul) -> tuple:
    """A product's factors as (numerator factors, denominator factors): x / y is a division, computed
    as numpy does, not x * (1 / y), which rounds twice."""
    numerator, denominator = [], []
    for factor in mul.args:
        if isinstance(factor, sympy.Pow) and factor.exp.is_Integer and factor.exp < 0:
            denominator.append(factor.base if factor.exp == -1 else sympy.Pow(factor.base, -factor.exp))
        else:
            numerator.append(factor)
    return numerator, denominator


def _numpy_mul(expr):
    numerator, denominator = [[numpy_function(f) for f in part] for part in numerator_and_denominator(expr)]

    def product(factors, values):
        return functools.reduce(np.multiply, [f(values) for f in factors]) if factors else 1
    if not denominator:
        return lambda values: product(numerator, values)
    return lambda values: np.divide(product(numerator, values), product(denominator, values))


_NUMPY = {
    sympy.Add: lambda *a: functools.reduce(np.add, a),
    sympy.Pow: _power,
    sympy.exp: np.exp,
    sympy.log: np.log,
    sympy.tanh: np.tanh,
    sympy.sin: np.sin,
    sympy.cos: np.cos,
    FloorDiv: np.floor_divide,
    FloorMod: np.remainder,
    StopGradient: lambda x: x,
    Sigmoid: _sigmoid,
    Softplus: _softplus,
    Log1p: np.log1p,
    Expm1: np.expm1,
    sympy.Abs: np.abs,
    sympy.sign: np.sign,
    sympy.Max: lambda *a: functools.reduce(np.maximum, a),
    sympy.Min: lambda *a: functools.reduce(np.minimum, a),
    sympy.Heaviside: _heaviside,
    sympy.Eq: np.equal,
    sympy.Ne: np.not_equal,
    sympy.StrictGreaterThan: np.greater,
    sympy.StrictLessThan: np.less,
    sympy.GreaterThan: np.greater_equal,
    sympy.LessThan: np.less_equal,
    sympy.And: np.logical_and,
    sympy.Or: np.logical_or,
    sympy.Not: np.logical_not,
}


@functools.lru_cache(maxsize=4096)
def numpy_function(expr):
    """A Python callable ``f(values)`` evaluating ``expr`` with numpy; ``values`` maps symbols to arrays or ints."""
    if expr.is_Symbol:
        return lambda values: values[expr]
    if expr.is_Integer:
        number = int(expr)
        return lambda values: number
    if expr.is_Number or expr.is_NumberSymbol:
        number = float(expr)
        return lambda values: number
    if expr is sympy.true or expr is sympy.false:
        truth = bool(expr)
        return lambda values: truth
    if isinstance(expr, sympy.Piecewise):
        parts = [(numpy_function(v), numpy_function(c)) for v, c in expr.args]
        return lambda values: _piecewise(*[(v(values), c(values)) for v, c in parts])
    if isinstance(expr, sympy.Mul):
        return _numpy_mul(expr)
    try:
        function = _NUMPY[type(expr)]
    except KeyError:
        raise NotImplementedError(f"no numpy meaning for sympy {type(expr).__name__} in {expr}") from None
    children = [numpy_function(a) for a in expr.args]
    return lambda values: function(*[child(values) for child in children])


def evaluate(expr, arrays, dims, dtype):
    """``expr`` over input ``arrays`` (``%i`` = arrays[i]) and dimension bindings ``dims``, as ``dtype``."""
    if dtype != "bool":
        # Every operand is converted to the result's dtype first, as the native kernels do.
        arrays = [np.asarray(a).astype(dtype, copy=False) for a in arrays]
    values = {arg(i): a for i, a in enumerate(arrays)}
    values.update({s: dims[s] for s in dim_symbols(expr)})
    with np.errstate(all="ignore"):  # NaN and Inf propagate as in numpy, silently
        result = numpy_function(expr)(values)
    shape = np.broadcast_shapes(*[np.shape(a) for a in arrays]) if arrays else ()
    return np.broadcast_to(np.asarray(result).astype(dtype, copy=False), shape)
