"""Every elementwise op graphc exports, at the special points of float32: 0, -0, +-1, +-inf, NaN, the largest,
the smallest normal and the smallest subnormal float and their negatives, clip's bounds and the ties of
maximum and minimum. Values against numpy; gradients against the derivative, evaluated in float64 and
rounded, with the conventions of docs/optimizer.md ("Numerics") at the kinks. Both backends, NaN-aware,
within a few ulp for the transcendental functions and exact for the rest.

The ops come from graphc's own list (every gc function defined in graphc/ops/elementwise.py), so an op added
there without an entry here fails ``test_every_exported_elementwise_op_has_an_entry``."""
import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

import graphc as gc
import graphc.ops.elementwise

F32 = np.finfo(np.float32)
POINTS = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, F32.max, -F32.max, F32.tiny, -F32.tiny,
                   F32.smallest_subnormal, -F32.smallest_subnormal], np.float32)
CLIP_BOUNDS = [(-1.0, 1.0), (0.0, 0.0), (-np.inf, np.inf), (F32.tiny, F32.max)]
BACKENDS = ["reference", "llvm"]
GRADIENT_ULPS = 2  # more than the value's: a gradient is a product of rounded values (sqrt' = 1 / (2 sqrt(x)))


def unary_points():
    return [POINTS]


def in_range_points():
    """The finite points that truncate to an int32, and values next to their truncation."""
    return [np.concatenate([POINTS[np.abs(POINTS) < 2**31], np.array([1.5, -1.5, 2**31 - 128, -2**31], np.float32)])]


def pairs():
    """Every (x, y) of POINTS: ties (x == y, and 0 with -0) included."""
    x, y = np.meshgrid(POINTS, POINTS)
    return [x.ravel(), y.ravel()]


def clip_points():
    """Every point, and each bound and its neighbours, against each (low, high) of CLIP_BOUNDS."""
    columns = []
    for low, high in CLIP_BOUNDS:
        bounds = np.array([low, high], np.float32)
        with np.errstate(over="ignore"):  # next to +-inf is +-inf
            near = np.concatenate([bounds, np.nextafter(bounds, np.float32(-np.inf)),
                                   np.nextafter(bounds, np.float32(np.inf))])
        x = np.concatenate([POINTS, near])
        columns.append(np.stack([x, np.full_like(x, low), np.full_like(x, high)]))
    return list(np.concatenate(columns, axis=1))


def where_points():
    """Every point as the condition, against every point in the other two operands."""
    condition, x = pairs()
    return [condition, x, x[::-1].copy()]


def in_float32(x):
    return x.astype(np.float32).astype(np.float64)


def step(condition):
    return np.where(condition, 1.0, 0.0)


def sigmoid(x):
    small = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + small), small / (1 + small))


@dataclass
class Case:
    """One op at its special points: ``value`` is numpy's, ``gradients`` the derivative by each operand
    (float64 arrays in, None for an operand no gradient flows to), ``ulps`` how far the value may be.
    ``signed_zeros``: whether a zero value has numpy's sign; numpy's maximum and minimum give either zero on
    a tie of 0 and -0 (the second operand: np.maximum(0., -0.) is -0.), graphc the IEEE one (0 for maximum).
    ``build`` makes the op from placeholders; by default it is the gc function the case is named after."""

    points: Callable
    value: Callable
    gradients: Callable | None
    ulps: int = 0
    signed_zeros: bool = True
    build: Callable | None = None


def unary(value, derivative, ulps=0, signed_zeros=True):
    return Case(unary_points, value, lambda x: [derivative(x)], ulps, signed_zeros)


def binary(value, derivatives, ulps=0, signed_zeros=True):
    return Case(pairs, value, derivatives, ulps, signed_zeros)


def cast(dtype, points, gradients=None):
    return Case(points, lambda x: x.astype(dtype), gradients, build=lambda x: gc.cast(x, dtype))


CASES = {
    "negative": unary(np.negative, lambda x: -np.ones_like(x)),
    "exp": unary(np.exp, np.exp, ulps=2),
    "log": unary(np.log, lambda x: 1 / x, ulps=2),
    "sqrt": unary(np.sqrt, lambda x: 0.5 / np.sqrt(x)),
    "square": unary(np.square, lambda x: 2 * x),
    "abs": unary(np.abs, np.sign),                                    # abs'(0) = sign(0) = 0
    "relu": unary(lambda x: np.maximum(x, 0), lambda x: step(x > 0), signed_zeros=False),  # relu'(0) = 0
    "sigmoid": unary(lambda x: sigmoid(x.astype(np.float64)), lambda x: sigmoid(x) * (1 - sigmoid(x)), ulps=4),
    "tanh": unary(np.tanh, lambda x: 1 - np.tanh(x) ** 2, ulps=4),
    "softplus": unary(lambda x: np.logaddexp(0, x.astype(np.float64)), sigmoid, ulps=4),
    "log1p": unary(np.log1p, lambda x: 1 / (1 + x), ulps=2),
    "expm1": unary(np.expm1, np.exp, ulps=2),
    "sin": unary(np.sin, np.cos, ulps=2),
    "cos": unary(np.cos, lambda x: -np.sin(x), ulps=2),
    "stop_gradient": unary(lambda x: x, np.zeros_like),
    "cast": cast("float64", unary_points, lambda x: [np.ones_like(x)]),
    "cast to bool": cast("bool", unary_points),
    # Toward 0, as numpy's astype; only where the result fits (beyond it numpy's result is the machine's: x86
    # gives the most negative integer, ARM saturates).
    "cast to int32": cast("int32", in_range_points),
    "cast to int64": cast("int64", in_range_points),
    "add": binary(np.add, lambda x, y: [np.ones_like(x), np.ones_like(y)]),
    "subtract": binary(np.subtract, lambda x, y: [np.ones_like(x), -np.ones_like(y)]),
    "multiply": binary(np.multiply, lambda x, y: [y, x]),
    "divide": binary(np.divide, lambda x, y: [1 / y, -x / y**2]),  # y**2 neither over- nor underflows in float64
    # y x**(y - 1) (1 at x = 0, y = 1), 0 where y = 0 (x**0 is 1 everywhere, 0**0 too), and x**y log(x) taken
    # as 0 where x <= 0, as TensorFlow. x**(y - 1) is rounded to float32 first: at the smallest subnormal x,
    # 1 / x overflows, and y x**(y - 1) is inf where the exact value is 8.4e6 (y = 1.2e-38).
    "power": binary(np.power, lambda x, y: [np.where(y == 0, 0, y * in_float32(x ** (y - 1))),
                                            np.where(x <= 0, 0, x**y * np.log(x))], ulps=2),
    # Ties send the whole gradient to x, as TensorFlow does.
    "maximum": binary(np.maximum, lambda x, y: [step(x >= y), step(x < y)], signed_zeros=False),
    "minimum": binary(np.minimum, lambda x, y: [step(x <= y), step(x > y)], signed_zeros=False),
    "floor_divide": binary(np.floor_divide, lambda x, y: [np.zeros_like(x), np.zeros_like(y)]),
    "mod": binary(np.mod, lambda x, y: [np.ones_like(x), -np.floor_divide(x, y)]),
    "equal": Case(pairs, np.equal, None),
    "not_equal": Case(pairs, np.not_equal, None),
    "greater": Case(pairs, np.greater, None),
    "greater_equal": Case(pairs, np.greater_equal, None),
    "less": Case(pairs, np.less, None),
    "less_equal": Case(pairs, np.less_equal, None),
    # clip passes the gradient at its bounds, inclusive; each bound gets it beyond itself.
    "clip": Case(clip_points, np.clip,
                 lambda x, low, high: [step((low <= x) & (x <= high)), step(x < low), step(x > high)]),
    # NaN is true, as in numpy: a condition is true where it is not 0. No gradient flows to it.
    "where": Case(where_points, lambda c, x, y: np.where(c != 0, x, y),
                  lambda c, x, y: [None, step(c != 0), step(c == 0)]),
}


def exported_elementwise_ops() -> set:
    return {name for name, value in vars(gc).items()
            if callable(value) and getattr(value, "__module__", None) == graphc.ops.elementwise.__name__}


def test_every_exported_elementwise_op_has_an_entry():
    tables, ops = graphc.ops.elementwise, {name.split()[0] for name in CASES}  # "cast to int32" is cast's
    assert exported_elementwise_ops() == ops
    assert set(tables.UNARY) | set(tables.BINARY) | set(tables.COMPARISONS) <= ops


@functools.cache
def computed(name, backend):
    """(operands, value, gradients) of op ``name`` at its points, compiled once per backend."""
    case = CASES[name]
    operands = case.points()
    placeholders = [gc.placeholder(a.shape, "float32", name=f"x{i}") for i, a in enumerate(operands)]
    value = (case.build or getattr(gc, name))(*placeholders)
    outputs = [value]
    if case.gradients is not None:
        with np.errstate(all="ignore"):
            wrt = [p for p, g in zip(placeholders, case.gradients(*operands)) if g is not None]
        outputs += gc.grad(gc.sum(value), wrt)
    results = gc.function(placeholders, outputs, backend=backend)(*operands)
    return operands, results[0], results[1:]


def ordered(x):
    """float32s as integers in the order of the reals: consecutive floats differ by 1 (and -0 is 0)."""
    bits = np.asarray(x, np.float32).view(np.int32).astype(np.int64)
    return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


def assert_agree(operands, got, want, ulps, what, signed_zeros=False):
    """``got`` is ``want``: NaN where it is NaN, within ``ulps`` where it is finite (0 and -0 are 0 ulp apart,
    unless ``signed_zeros``), exactly elsewhere."""
    got, want = np.asarray(got), np.asarray(want)
    if got.dtype.kind != "f":
        bad = got != want
    else:
        with np.errstate(over="ignore"):
            want = want.astype(got.dtype)
        both_nan = np.isnan(got) & np.isnan(want)
        distance = np.abs(ordered(got.astype(np.float32)) - ordered(want.astype(np.float32)))
        close = (got == want) | (np.isfinite(got) & np.isfinite(want) & (distance <= ulps))
        if signed_zeros:
            close &= (got != 0) | (np.signbit(got) == np.signbit(want))
        bad = ~(both_nan | close)
    rows = [f"  at {tuple(float(a[i]) for a in operands)}: got {got[i]!r}, want {want[i]!r}"
            for i in np.flatnonzero(bad)[:12]]
    assert not rows, f"{what}: {np.count_nonzero(bad)} of {bad.size} differ\n" + "\n".join(rows)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_values_are_numpys_at_special_points(name, backend):
    operands, value, _ = computed(name, backend)
    with np.errstate(all="ignore"):
        want = CASES[name].value(*operands)
    assert_agree(operands, value, want, CASES[name].ulps, f"{name} on {backend}", CASES[name].signed_zeros)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(n for n, case in CASES.items() if case.gradients is not None))
def test_gradients_follow_the_derivative_and_the_conventions_at_special_points(name, backend):
    operands, _, gradients = computed(name, backend)
    with np.errstate(all="ignore"):
        wants = [w for w in CASES[name].gradients(*[a.astype(np.float64) for a in operands]) if w is not None]
    for index, (got, want) in enumerate(zip(gradients, wants)):
        assert_agree(operands, got, np.broadcast_to(want, got.shape), CASES[name].ulps + GRADIENT_ULPS,
                     f"d {name} / d operand {index} on {backend}")
