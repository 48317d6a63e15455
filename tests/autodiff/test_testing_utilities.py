"""graphc.testing: assert_close explains failures, numeric_grad is right, check_grad catches a wrong vjp."""
import numpy as np
import pytest

import graphc as gc
from graphc.ops.registry import Op, apply
from graphc.testing import assert_close, check_grad, numeric_grad


def test_assert_close_accepts_within_tolerance_and_matching_nans():
    assert_close(np.array([1.0, np.nan, np.inf]), np.array([1.0 + 1e-9, np.nan, np.inf]), rtol=1e-8)
    assert_close(np.float32(2.0), 2.0 + 1e-7, rtol=1e-6)


def test_assert_close_failure_reports_shapes_dtypes_and_the_worst_index():
    expected = np.zeros((2, 3))
    actual = expected.astype(np.float32)
    actual[1, 2] = 0.5
    with pytest.raises(AssertionError) as info:
        assert_close(actual, expected, atol=1e-3, name="grad")
    message = str(info.value)
    assert message.startswith("grad: actual float32(2, 3), expected float64(2, 3): 1 of 6 elements differ")
    assert "max abs difference 0.5 at index (1, 2): actual 0.5, expected 0.0" in message


def test_assert_close_rejects_shape_mismatch_and_nan_against_a_number():
    with pytest.raises(AssertionError, match=r"actual float64\(3,\), expected float64\(1, 3\): shapes differ"):
        assert_close(np.zeros(3), np.zeros((1, 3)))
    with pytest.raises(AssertionError, match="1 of 2 elements differ"):
        assert_close(np.array([np.nan, 1.0]), np.array([0.0, 1.0]), atol=1.0)


def test_numeric_grad_of_known_functions():
    x, y = np.array([[0.5, -1.0], [2.0, 3.0]]), np.array([1.5, -0.5])
    grad_x, grad_y = numeric_grad(lambda a, b: np.sum(a ** 3 * b), [x, y])
    assert_close(grad_x, 3 * x ** 2 * y, rtol=1e-8)
    assert_close(grad_y, np.sum(x ** 3, axis=0), rtol=1e-8)


def test_check_grad_catches_a_wrong_gradient_rule():
    cube_with_wrong_vjp = Op(
        "wrong_cube", lambda inputs, attrs: (inputs[0].shape, inputs[0].dtype),
        lambda node, arrays, dims: arrays[0] ** 3,
        lambda node, g: [g * node.inputs[0] * node.inputs[0] * 2.9],  # should be 3 x^2
        kind="elementwise")
    with pytest.raises(AssertionError, match="d cost / d input0"):
        check_grad(lambda x: apply(cube_with_wrong_vjp, [x]), [(2, 3)])


def test_check_grad_returns_both_gradients_for_variables_too():
    analytic, numeric = check_grad(lambda w: gc.sum(w ** 2), [(3,)], sources="variable")
    assert len(analytic) == len(numeric) == 1
    assert_close(analytic[0], numeric[0], rtol=1e-6)
