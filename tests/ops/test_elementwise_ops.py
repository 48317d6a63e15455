"""Elementwise ops and the tensor operators: shapes (static and symbolic), dtypes, values against
numpy, gradients against finite differences."""
import numpy as np
import pytest

import graphc as gc
from graphc.testing import assert_close, check_grad, evaluate

RNG = np.random.default_rng(1234)


def away_from_zero(shape, low=0.2, high=2.0):
    """Samples with |x| in [low, high]: no kink of relu/abs/max sits within finite-difference reach."""
    return RNG.choice([-1.0, 1.0], size=shape) * RNG.uniform(low, high, size=shape)


def positive(shape):
    return RNG.uniform(0.5, 2.0, size=shape)


# name, graphc op, independent numpy expression, sampler
UNARY = [
    ("negative", gc.negative, lambda x: -x, away_from_zero),
    ("exp", gc.exp, np.exp, away_from_zero),
    ("log", gc.log, np.log, positive),
    ("sqrt", gc.sqrt, np.sqrt, positive),
    ("square", gc.square, np.square, away_from_zero),
    ("abs", gc.abs, np.abs, away_from_zero),
    ("relu", gc.relu, lambda x: np.maximum(x, 0), away_from_zero),
    ("sigmoid", gc.sigmoid, lambda x: 1 / (1 + np.exp(-x)), away_from_zero),
    ("tanh", gc.tanh, np.tanh, away_from_zero),
    ("softplus", gc.softplus, lambda x: np.log1p(np.exp(x)), away_from_zero),
    ("log1p", gc.log1p, np.log1p, positive),
    ("expm1", gc.expm1, np.expm1, away_from_zero),
    ("operator -x", lambda x: -x, lambda x: -x, away_from_zero),
    ("operator abs(x)", abs, np.abs, away_from_zero),
    ("clip", lambda x: gc.clip(x, -0.5, 1.0), lambda x: np.clip(x, -0.5, 1.0), away_from_zero),
    ("x ** 3", lambda x: x ** 3, lambda x: x ** 3, away_from_zero),
    ("2 ** x", lambda x: 2.0 ** x, lambda x: 2.0 ** x, away_from_zero),
    ("3 - x", lambda x: 3.0 - x, lambda x: 3.0 - x, away_from_zero),
    ("2 / x", lambda x: 2.0 / x, lambda x: 2.0 / x, away_from_zero),
    ("x * 0.5 + 1", lambda x: x * 0.5 + 1, lambda x: x * 0.5 + 1, away_from_zero),
]

BINARY = [
    ("add", gc.add, np.add, away_from_zero),
    ("subtract", gc.subtract, np.subtract, away_from_zero),
    ("multiply", gc.multiply, np.multiply, away_from_zero),
    ("divide", gc.divide, np.divide, away_from_zero),
    ("power", gc.power, np.power, positive),
    ("maximum", gc.maximum, np.maximum, away_from_zero),
    ("minimum", gc.minimum, np.minimum, away_from_zero),
    ("operator +", lambda x, y: x + y, np.add, away_from_zero),
    ("operator -", lambda x, y: x - y, np.subtract, away_from_zero),
    ("operator *", lambda x, y: x * y, np.multiply, away_from_zero),
    ("operator /", lambda x, y: x / y, np.divide, away_from_zero),
    ("operator **", lambda x, y: x ** y, np.power, positive),
]

COMPARISONS = [
    ("equal", gc.equal, np.equal),
    ("not_equal", gc.not_equal, np.not_equal),
    ("greater", gc.greater, np.greater),
    ("less", gc.less, np.less),
    ("greater_equal", gc.greater_equal, np.greater_equal),
    ("less_equal", gc.less_equal, np.less_equal),
    ("operator >", lambda x, y: x > y, np.greater),
    ("operator <", lambda x, y: x < y, np.less),
    ("operator >=", lambda x, y: x >= y, np.greater_equal),
    ("operator <=", lambda x, y: x <= y, np.less_equal),
]

# Operand shapes for binary ops: same shape, both sides broadcast, a symbolic batch against a row.
BROADCASTS = [((2, 3), (2, 3)), ((3, 1), (1, 4)), ((4, 5), (5,)), ((5,), (2, 1, 5))]


@pytest.mark.parametrize("name, op, reference, sample", UNARY, ids=[u[0] for u in UNARY])
def test_unary_shape_value_and_gradient(name, op, reference, sample):
    x = gc.placeholder(("batch", 3), "float64")
    y = op(x)
    assert y.shape == (gc.graph.shapes.dim_symbol("batch"), 3)
    assert y.dtype == "float64"
    data = sample((4, 3))
    assert_close(evaluate(y, {x: data}), reference(data), rtol=1e-12, atol=1e-15)
    check_grad(op, None, arrays=[sample((4, 3))])


@pytest.mark.parametrize("name, op, reference, sample", BINARY, ids=[b[0] for b in BINARY])
@pytest.mark.parametrize("shape_x, shape_y", BROADCASTS)
def test_binary_broadcast_value_and_gradient(name, op, reference, sample, shape_x, shape_y):
    x, y = gc.placeholder(shape_x, "float64"), gc.placeholder(shape_y, "float64")
    z = op(x, y)
    assert z.shape == np.broadcast_shapes(shape_x, shape_y)
    a, b = sample(shape_x), sample(shape_y)
    assert_close(evaluate(z, {x: a, y: b}), reference(a, b), rtol=1e-12)
    check_grad(op, None, arrays=[sample(shape_x), sample(shape_y)])


@pytest.mark.parametrize("name, op, reference, sample", BINARY, ids=[b[0] for b in BINARY])
def test_binary_with_symbolic_batch_against_a_row(name, op, reference, sample):
    x, y = gc.placeholder(("n", 5), "float64"), gc.placeholder((5,), "float64")
    assert op(x, y).shape == (gc.graph.shapes.dim_symbol("n"), 5)
    a, b = sample((3, 5)), sample((5,))
    assert_close(evaluate(op(x, y), {x: a, y: b}), reference(a, b), rtol=1e-12)
    check_grad(lambda p, q: gc.sum(gc.tanh(op(p, q))), [("n", 5), (5,)], arrays=[a, b])


@pytest.mark.parametrize("name, op, reference", COMPARISONS, ids=[c[0] for c in COMPARISONS])
def test_comparisons_give_bool_numpy_results(name, op, reference):
    x, y = gc.placeholder((3, 1), "float32"), gc.placeholder((4,), "float32")
    z = op(x, y)
    assert (z.shape, z.dtype) == ((3, 4), "bool")
    a = np.array([[1.0], [2.0], [3.0]], np.float32)
    b = np.array([0.0, 2.0, 3.0, 5.0], np.float32)  # ties included: equality cases matter here
    result = evaluate(z, {x: a, y: b})
    assert result.dtype == np.bool_
    np.testing.assert_array_equal(result, reference(a, b))


def test_where_selects_and_routes_gradients_to_the_chosen_operand():
    condition = np.array([[True, False, True], [False, False, True]])
    c = gc.placeholder((2, 3), "bool")
    x, y = gc.placeholder((2, 3), "float64"), gc.placeholder((3,), "float64")
    a, b = RNG.standard_normal((2, 3)), RNG.standard_normal(3)
    z = gc.where(c, x, y)
    assert (z.shape, z.dtype) == ((2, 3), "float64")
    assert_close(evaluate(z, {c: condition, x: a, y: b}), np.where(condition, a, b))
    check_grad(lambda p, q: gc.where(gc.constant(condition), p, q), None, arrays=[a, b])


def test_where_with_a_computed_condition_is_relu():
    x = gc.placeholder((6,), "float64")
    data = away_from_zero((6,))
    assert_close(evaluate(gc.where(x > 0, x, 0.0), {x: data}), np.maximum(data, 0))


@pytest.mark.parametrize("source, target, data", [
    ("float64", "int32", np.array([-2.7, -0.5, 0.5, 2.7])),
    ("float32", "float64", np.array([1.5, -2.25], np.float32)),
    ("int32", "float32", np.array([1, -7], np.int32)),
    ("bool", "float32", np.array([True, False])),
    ("float32", "bool", np.array([0.0, 2.0], np.float32)),
])
def test_cast_matches_numpy_astype(source, target, data):
    x = gc.placeholder(data.shape, source)
    y = gc.cast(x, target)
    assert y.dtype == target
    result = evaluate(y, {x: data})
    assert result.dtype == np.dtype(target)
    np.testing.assert_array_equal(result, data.astype(target))


def test_cast_passes_the_gradient_through_float32():
    # float32 rounds x; a wide step keeps the rounding error (1e-7) far below the tolerance.
    check_grad(lambda x: gc.cast(gc.cast(x, "float32") * 3.0, "float64"), [(2, 3)], eps=1e-2, rtol=1e-4)


@pytest.mark.parametrize("dtype_x, dtype_y, expected", [
    ("float32", "float64", "float64"),
    ("int32", "float32", "float32"),
    ("int32", "int64", "int64"),
    ("int32", "int32", "int32"),
])
def test_binary_dtype_promotion(dtype_x, dtype_y, expected):
    assert gc.add(gc.placeholder((2,), dtype_x), gc.placeholder((2,), dtype_y)).dtype == expected


def test_python_scalars_are_weakly_typed_and_int_ops_stay_int():
    x = gc.placeholder((2,), "float32")
    i = gc.placeholder((2,), "int32")
    assert (x * 0.5).dtype == "float32"
    assert (i * 2).dtype == "int32"
    assert gc.exp(i).dtype == "float32"
    assert (i / 2).dtype == "float32"
    result = evaluate([i * 2, i / 2], {i: np.array([3, 5], np.int32)})
    np.testing.assert_array_equal(result[0], np.array([6, 10], np.int32))
    assert result[0].dtype == np.int32
    assert_close(result[1], np.array([1.5, 2.5], np.float32))


def test_numpy_array_on_the_left_builds_a_graph():
    x = gc.placeholder((3,), "float64")
    constant = np.array([1.0, 2.0, 3.0])
    y = constant - x
    assert isinstance(y, gc.Tensor)
    data = RNG.standard_normal(3)
    assert_close(evaluate(y, {x: data}), constant - data)


def test_boolean_arithmetic_needs_a_cast():
    flags = gc.placeholder((3,), "bool")
    with pytest.raises(gc.GraphError, match="add: boolean operands need an explicit cast"):
        flags + flags


def test_tensor_truth_value_is_an_error():
    x = gc.placeholder((3,))
    with pytest.raises(TypeError, match="truth value"):
        bool(x > 0)
