"""Reductions (sum, mean, max, min, argmax) and matrix products (dot, matmul): shapes, values against
numpy, gradients against finite differences."""
import numpy as np
import pytest

import graphc as gc
from graphc.graph.shapes import dim_symbol
from graphc.testing import assert_close, check_grad, evaluate

RNG = np.random.default_rng(7)

REDUCTIONS = [("sum", gc.sum, np.sum), ("mean", gc.mean, np.mean), ("max", gc.max, np.max), ("min", gc.min, np.min)]
AXES = [None, 0, 1, 2, -1, (0, 2), (1, 2), (0, 1, 2), (-3, -1)]


@pytest.mark.parametrize("name, reduce, reference", REDUCTIONS, ids=[r[0] for r in REDUCTIONS])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("keepdims", [False, True])
def test_reduction_shape_value_and_gradient(name, reduce, reference, axis, keepdims):
    x = gc.placeholder((2, 3, 4), "float64")
    y = reduce(x, axis, keepdims)
    # A random permutation of distinct values: max/min have no ties, so their gradient is defined.
    data = RNG.permutation(24).reshape(2, 3, 4) / 7.0
    expected = reference(data, axis=axis, keepdims=keepdims)
    assert y.shape == expected.shape
    assert_close(evaluate(y, {x: data}), expected)
    check_grad(lambda t: reduce(t, axis, keepdims), None, arrays=[data])


def test_reduction_methods_on_tensors():
    x = gc.placeholder((3, 4), "float64")
    data = RNG.standard_normal((3, 4))
    outputs = evaluate([x.sum(0), x.mean(1, keepdims=True), x.max()], {x: data})
    for result, expected in zip(outputs, [data.sum(0), data.mean(1, keepdims=True), data.max()]):
        assert_close(result, expected)


def test_max_shares_the_gradient_between_ties():
    x = gc.placeholder((2, 3), "float64")
    data = np.array([[1.0, 3.0, 3.0], [2.0, 0.0, -1.0]])
    g = evaluate(gc.grad(gc.sum(gc.max(x, 1)), x), {x: data})
    assert_close(g, np.array([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]]))


def test_integer_and_bool_sums_keep_integer_dtypes():
    i = gc.placeholder((3,), "int32")
    flags = gc.placeholder((3,), "bool")
    assert gc.sum(i).dtype == "int32"
    assert gc.sum(flags).dtype == "int64"
    assert gc.mean(i).dtype == "float32"
    data = np.array([1, 2, 4], np.int32)
    total, count, average = evaluate([gc.sum(i), gc.sum(flags), gc.mean(i)],
                                     {i: data, flags: np.array([True, False, True])})
    assert (total, total.dtype, count) == (7, np.int32, 2)
    assert_close(average, np.float32(7 / 3), rtol=1e-6)


def test_mean_over_a_symbolic_axis_divides_by_the_bound_size():
    x = gc.placeholder(("batch", 3), "float64")
    m = gc.mean(x, 0)
    assert m.shape == (3,)
    total = gc.mean(x)
    assert total.shape == ()
    compiled = gc.function([x], [m, total])
    for batch in (2, 5):  # the same graph serves both sizes
        data = RNG.standard_normal((batch, 3))
        column_means, overall = compiled(data)
        assert_close(column_means, data.mean(0))
        assert_close(overall, data.mean())
    check_grad(gc.mean, [("batch", 3)], arrays=[RNG.standard_normal((4, 3))])


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_argmax_matches_numpy(axis):
    x = gc.placeholder(("batch", 5), "float32")
    index = gc.argmax(x, axis)
    assert index.dtype == "int64"
    data = RNG.standard_normal((4, 5)).astype(np.float32)
    expected = np.argmax(data, axis)
    assert index.shape == ((5,) if axis == 0 else (dim_symbol("batch"),))
    result = evaluate(index, {x: data})
    np.testing.assert_array_equal(result, expected)
    assert result.dtype == np.int64


DOT_SHAPES = [((4,), (4,)), ((3, 4), (4,)), ((4,), (4, 2)), ((3, 4), (4, 2)), ((2, 3, 4), (4,)),
              ((2, 3, 4), (4, 5)), ((4,), (2, 4, 5)), ((3, 4), (2, 4, 5)), ((2, 3, 4), (6, 4, 5))]
MATMUL_SHAPES = [((4,), (4,)), ((3, 4), (4,)), ((4,), (4, 2)), ((3, 4), (4, 2)), ((2, 3, 4), (2, 4, 5)),
                 ((2, 3, 4), (4, 5)), ((4,), (2, 4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((1, 3, 4), (6, 4, 2))]


@pytest.mark.parametrize("shape_a, shape_b", DOT_SHAPES, ids=str)
def test_dot_follows_numpy(shape_a, shape_b):
    a, b = gc.placeholder(shape_a, "float64"), gc.placeholder(shape_b, "float64")
    x, y = RNG.standard_normal(shape_a), RNG.standard_normal(shape_b)
    expected = np.dot(x, y)
    product = gc.dot(a, b)
    assert product.shape == expected.shape
    assert_close(evaluate(product, {a: x, b: y}), expected, rtol=1e-12)
    check_grad(gc.dot, [shape_a, shape_b])


@pytest.mark.parametrize("shape_a, shape_b", MATMUL_SHAPES, ids=str)
def test_matmul_follows_numpy(shape_a, shape_b):
    a, b = gc.placeholder(shape_a, "float64"), gc.placeholder(shape_b, "float64")
    x, y = RNG.standard_normal(shape_a), RNG.standard_normal(shape_b)
    expected = np.matmul(x, y)
    product = a @ b
    assert product.shape == expected.shape
    assert_close(evaluate(product, {a: x, b: y}), expected, rtol=1e-12)
    check_grad(gc.matmul, [shape_a, shape_b])


def test_matmul_with_a_symbolic_batch_and_a_numpy_operand():
    x = gc.placeholder(("batch", 4), "float64")
    weights = RNG.standard_normal((4, 3))
    y = x @ gc.constant(weights)
    assert y.shape == (dim_symbol("batch"), 3)
    data = RNG.standard_normal((5, 4))
    assert_close(evaluate(y, {x: data}), data @ weights, rtol=1e-12)
    assert_close(evaluate(x @ weights, {x: data}), data @ weights, rtol=1e-12)


def test_numpy_array_on_the_left_of_at_builds_a_graph():
    x = gc.placeholder((5, 4), "float32")
    left = RNG.standard_normal((2, 5))
    y = left @ x
    assert (y.shape, y.dtype) == ((2, 4), "float32")
    data = RNG.standard_normal((5, 4)).astype(np.float32)
    assert_close(evaluate(y, {x: data}), left @ data, rtol=1e-5)
