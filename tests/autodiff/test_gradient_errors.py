"""gc.grad refuses gradients that do not exist, with a GradientError saying why and where."""
import inspect
import os

import numpy as np
import pytest

import graphc as gc
from graphc.testing import evaluate

HERE = os.path.basename(__file__)


def test_non_scalar_cost():
    x = gc.placeholder((2, 3), "float64")
    with pytest.raises(gc.GradientError, match=r"cost must be a scalar, got shape \(2, 3\).*gc.mean\(loss\)"):
        gc.grad(gc.tanh(x), x)


def test_integer_cost():
    x = gc.placeholder((3,), "int32")
    with pytest.raises(gc.GradientError, match="cost must be a float, got int32"):
        gc.grad(gc.sum(x), x)


@pytest.mark.parametrize("use", [
    lambda picked: gc.cast(picked, "float64"),
    lambda picked: gc.one_hot(picked, 3, "float64"),
], ids=["cast", "one_hot"])
def test_through_argmax(use):
    x = gc.placeholder((2, 3), "float64", name="logits")
    line = inspect.currentframe().f_lineno + 1
    picked = gc.argmax(x, axis=1)
    cost = gc.sum(use(picked))
    with pytest.raises(gc.GradientError) as info:
        gc.grad(cost, x)
    message = str(info.value)
    assert "depends only through integer or boolean values (argmax" in message
    assert f"{HERE}:{line}" in message
    assert "on logits" in message


def test_argmax_beside_a_differentiable_path_contributes_nothing():
    x = gc.placeholder((2, 3), "float64")
    cost = gc.sum(gc.one_hot(gc.argmax(x, axis=1), 3, "float64") * x)
    data = np.array([[0.1, 0.7, 0.2], [0.9, -1.0, 0.3]])
    np.testing.assert_array_equal(evaluate(gc.grad(cost, x), {x: data}), np.eye(3)[data.argmax(1)])


def test_unconnected_variable_raises_by_default_and_is_zero_on_request():
    x = gc.placeholder((3,), "float64")
    unused = gc.variable(np.ones((2, 2)), name="unused_weights")
    cost = gc.sum(x * x)
    with pytest.raises(gc.GradientError, match="does not depend on unused_weights.*unconnected='zero'"):
        gc.grad(cost, [x, unused])
    grad_x, grad_unused = gc.grad(cost, [x, unused], unconnected="zero")
    assert (grad_unused.shape, grad_unused.dtype) == ((2, 2), unused.dtype)
    data = np.array([1.0, -2.0, 3.0])
    result_x, result_unused = evaluate([grad_x, grad_unused], {x: data})
    np.testing.assert_array_equal(result_unused, np.zeros((2, 2)))
    np.testing.assert_array_equal(result_x, 2 * data)


def test_dependence_only_through_integers_is_named():
    x = gc.placeholder((3,), "float64", name="x")
    cost = gc.sum(gc.cast(gc.cast(x, "int32"), "float64"))
    with pytest.raises(gc.GradientError, match="depends only through integer or boolean values .* on x"):
        gc.grad(cost, x)


def test_bad_unconnected_mode():
    x = gc.placeholder((), "float64")
    with pytest.raises(ValueError, match="unconnected must be 'raise' or 'zero'"):
        gc.grad(x * x, x, unconnected="ignore")


def test_cost_must_be_a_tensor():
    x = gc.placeholder((), "float64")
    with pytest.raises(gc.GradientError, match="cost must be a graph tensor, got float"):
        gc.grad(1.0, x)
