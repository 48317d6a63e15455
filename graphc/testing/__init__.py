"""Test utilities, like ``numpy.testing``: close-enough comparison that explains itself, finite
differences, and a gradient checker that any backend can reuse (``check_grad(..., backend='llvm')``).
``graphc.testing.fuzz`` is the differential fuzzer (``python -m graphc.testing.fuzz --minutes N``)."""
import numpy as np

from .. import function, grad, placeholder, variable
from ..graph.shapes import is_static
from ..ops import constant, multiply, sum as reduce_sum


def assert_close(actual, expected, rtol=1e-7, atol=0.0, name="value"):
    """Raise AssertionError unless ``actual`` has ``expected``'s shape and |actual - expected| <= atol +
    rtol * |expected| everywhere (NaN matches NaN). The message gives both shapes and dtypes and the
    largest absolute and relative differences with their indexes."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    header = f"{name}: actual {actual.dtype}{actual.shape}, expected {expected.dtype}{expected.shape}"
    if actual.shape != expected.shape:
        raise AssertionError(f"{header}: shapes differ")
    if actual.size == 0:
        return
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    both_nan = np.isnan(a) & np.isnan(e)
    with np.errstate(invalid="ignore", divide="ignore"):
        abs_diff = np.where(both_nan, 0.0, np.abs(a - e))
        abs_diff = np.where(np.isnan(abs_diff), np.inf, abs_diff)  # NaN against a number, or inf - inf
        abs_diff = np.where(a == e, 0.0, abs_diff)  # equal infinities
        rel_diff = abs_diff / np.abs(e)
        rel_diff = np.where(abs_diff == 0, 0.0, rel_diff)
    bad = abs_diff > atol + rtol * np.abs(e)
    if not bad.any():
        return
    worst_abs = np.unravel_index(np.argmax(abs_diff), abs_diff.shape)
    worst_rel = np.unravel_index(np.argmax(rel_diff), rel_diff.shape)
    raise AssertionError(
        f"{header}: {int(bad.sum())} of {bad.size} elements differ beyond rtol={rtol}, atol={atol}\n"
        f"  max abs difference {abs_diff[worst_abs]:.3g} at index {tuple(map(int, worst_abs))}: "
        f"actual {a[worst_abs].item()!r}, expected {e[worst_abs].item()!r}\n"
        f"  max rel difference {rel_diff[worst_rel]:.3g} at index {tuple(map(int, worst_rel))}: "
        f"actual {a[worst_rel].item()!r}, expected {e[worst_rel].item()!r}")


def numeric_grad(f, arrays, eps=1e-6):
    """Central finite differences in float64: d f(*arrays) / d arrays[i], one array per argument.
    ``f`` returns a scalar; it is called twice per element of every array."""
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    grads = []
    for array in arrays:
        g = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            original = array[index]
            array[index] = original + eps
            above = float(f(*arrays))
            array[index] = original - eps
            below = float(f(*arrays))
            array[index] = original
            g[index] = (above - below) / (2 * eps)
        grads.append(g)
    return grads


def check_grad(cost_builder, shapes, arrays=None, sources="placeholder", backend="reference",
               rtol=1e-5, atol=1e-7, eps=1e-6, seed=0, **options):
    """Compare ``gc.grad`` with finite differences for ``cost_builder(*tensors)`` on float64 inputs.

    The tensors are placeholders (``sources='placeholder'``) or variables (``'variable'``) of
    ``shapes`` (default: the arrays' shapes), valued ``arrays`` or standard-normal samples.
    Placeholder shapes may be symbolic (``("batch", 5)``) when ``arrays`` are given and the result
    is a scalar. A non-scalar result is reduced to ``sum(result * r)`` with a fixed random ``r``,
    so every entry of the Jacobian counts.
    Both graphs are compiled with ``gc.function(..., backend=backend, **options)``.
    Returns (analytic gradients, numeric gradients).
    """
    rng = np.random.default_rng(seed)
    if arrays is None:
        arrays = [rng.standard_normal(shape) for shape in shapes]
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    if sources == "placeholder":
        declared = shapes if shapes is not None else [a.shape for a in arrays]
        tensors = [placeholder(shape, "float64", name=f"input{i}") for i, shape in enumerate(declared)]
    elif sources == "variable":
        tensors = [variable(a, name=f"input{i}") for i, a in enumerate(arrays)]
    else:
        raise ValueError(f"sources must be 'placeholder' or 'variable', got {sources!r}")
    inputs = tensors if sources == "placeholder" else []
    result = cost_builder(*tensors)
    cost = result
    if result.shape != ():
        if not is_static(result.shape):
            raise ValueError(f"check_grad: reduce a result of symbolic shape {result.shape} to a scalar")
        cost = reduce_sum(multiply(result, constant(rng.standard_normal(result.shape), dtype=result.dtype)))
    cost_function = function(inputs, cost, backend=backend, **options)
    grad_function = function(inputs, grad(cost, tensors), backend=backend, **options)

    def call(compiled, values):
        if sources == "placeholder":
            return compiled(*values)
        for tensor, value in zip(tensors, values):
            tensor.value = value
        return compiled()

    analytic = call(grad_function, arrays)
    numeric = numeric_grad(lambda *values: call(cost_function, values), arrays, eps)
    for i, (a, n) in enumerate(zip(analytic, numeric)):
        assert_close(a, n, rtol, atol, name=f"d cost / d input{i} {arrays[i].shape}")
    return analytic, numeric


def evaluate(outputs, feeds=None, backend="reference", **options):
    """Run ``outputs`` (a tensor or a list) once: ``feeds`` maps each placeholder to its array."""
    feeds = feeds or {}
    return function(list(feeds), outputs, backend=backend, **options)(*feeds.values())
