"""Property-based tests over random broadcast-compatible shape pairs."""
import numpy as np
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import graphc as gc
from graphc.testing import assert_close, evaluate

BINARY = {"add": (gc.add, np.add), "subtract": (gc.subtract, np.subtract), "multiply": (gc.multiply, np.multiply),
          "divide": (gc.divide, np.divide), "maximum": (gc.maximum, np.maximum), "greater": (gc.greater, np.greater)}
SHAPE_PAIRS = mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=3)


def sum_to_shape(array, shape):
    """numpy: ``array`` summed over the axes along which ``shape`` was broadcast to ``array.shape``."""
    extra = array.ndim - len(shape)
    array = array.sum(axis=tuple(range(extra)))
    axes = tuple(a for a, d in enumerate(shape) if d == 1 and array.shape[a] != 1)
    return array.sum(axis=axes, keepdims=True).reshape(shape)


def operands(seed, shape_a, shape_b):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 2.0, shape_a), rng.uniform(-2.0, -0.5, shape_b)  # disjoint ranges: no ties


@settings(max_examples=40, deadline=None)
@given(shapes=SHAPE_PAIRS, name=st.sampled_from(sorted(BINARY)), seed=st.integers(0, 2**16))
def test_binary_op_result_equals_numpy(shapes, name, seed):
    (shape_a, shape_b), result_shape = shapes
    op, reference = BINARY[name]
    a, b = gc.placeholder(shape_a, "float64"), gc.placeholder(shape_b, "float64")
    result = op(a, b)
    assert result.shape == result_shape
    x, y = operands(seed, shape_a, shape_b)
    assert_close(evaluate(result, {a: x, b: y}), reference(x, y), rtol=1e-14)


@settings(max_examples=40, deadline=None)
@given(shapes=SHAPE_PAIRS, seed=st.integers(0, 2**16))
def test_gradient_of_sum_of_product_is_the_other_operand_summed_to_shape(shapes, seed):
    (shape_a, shape_b), _ = shapes
    a, b = gc.placeholder(shape_a, "float64"), gc.placeholder(shape_b, "float64")
    grad_a, grad_b = gc.grad(gc.sum(a * b), [a, b])
    assert (grad_a.shape, grad_b.shape) == (shape_a, shape_b)
    x, y = operands(seed, shape_a, shape_b)
    result_a, result_b = evaluate([grad_a, grad_b], {a: x, b: y})
    assert_close(result_a, sum_to_shape(np.broadcast_to(y, np.broadcast_shapes(shape_a, shape_b)), shape_a),
                 rtol=1e-13)
    assert_close(result_b, sum_to_shape(np.broadcast_to(x, np.broadcast_shapes(shape_a, shape_b)), shape_b),
                 rtol=1e-13)


@settings(max_examples=25, deadline=None)
@given(shapes=SHAPE_PAIRS, name=st.sampled_from(["add", "subtract", "multiply", "divide", "maximum"]))
def test_gradient_shapes_equal_operand_shapes(shapes, name):
    (shape_a, shape_b), _ = shapes
    a, b = gc.placeholder(shape_a, "float64"), gc.placeholder(shape_b, "float64")
    grads = gc.grad(gc.sum(BINARY[name][0](a, b)), [a, b])
    assert [g.shape for g in grads] == [shape_a, shape_b]
    x, y = operands(0, shape_a, shape_b)
    assert [r.shape for r in evaluate(grads, {a: x, b: y})] == [shape_a, shape_b]
