"""Bugs the differential fuzzer (graphc.testing.fuzz) found, each on the program it shrank them to: both
backends agreed, so only a crash in a pass or in gc.grad showed them."""
import numpy as np
import pytest

import graphc as gc

RUNS = [("reference", 0), ("reference", 2), ("llvm", 0), ("llvm", 2)]


@pytest.mark.parametrize("backend, optimize", RUNS)
def test_a_tensor_compared_with_itself_gives_what_numpy_gives_at_nan(backend, optimize):
    """Were True, False, True and True at NaN: sympy evaluated Eq(x, x) and the others when the operands were
    deduplicated; and with optimize=2 next to a relu the pass relu_mask_from_output raised TypeError."""
    x = gc.placeholder((4,), "float32")
    values = np.array([1.0, np.nan, -np.inf, 0.0], np.float32)
    outputs = [gc.equal(x, x), gc.not_equal(x, x), x <= x, x >= x, x < x, x > x, gc.relu(x)]
    results = gc.function([x], outputs, backend=backend, optimize=optimize)(values)
    expected = [values == values, values != values, values <= values, values >= values, values < values,
                values > values]
    for result, want in zip(results, expected):
        np.testing.assert_array_equal(result, want)


@pytest.mark.parametrize("backend, optimize", RUNS)
def test_where_of_one_tensor_twice_is_that_tensor_and_has_its_gradient(backend, optimize):
    """gc.where(c, x, x) was c itself when c had the result's shape and dtype, so gc.grad found no path to x."""
    c, x = gc.placeholder((2, 3), "float64"), gc.placeholder((3,), "float64")
    chosen = gc.where(c, x, x)
    c_value, x_value = np.array([[0.0, 1.0, -2.0], [3.0, 0.0, 0.5]]), np.array([4.0, -5.0, 6.0])
    result, x_grad = gc.function([c, x], [chosen, gc.grad(gc.sum(chosen), x)], backend=backend,
                                 optimize=optimize)(c_value, x_value)
    np.testing.assert_array_equal(result, np.where(c_value, x_value, x_value))
    np.testing.assert_array_equal(x_grad, [2.0, 2.0, 2.0])


@pytest.mark.parametrize("backend", ["reference", "llvm"])
def test_fusion_substitutes_a_producer_without_simplifying_the_composition(backend):
    """Fusion let sympy simplify what it put together: exp(log(x)) and expm1(log(x)) became x and x - 1 (not NaN
    for x < 0), (x / x) * 2 became 2 (not NaN at 0), and clip(x / 0, 1, 2) and (x / x) % 2 did not compile."""
    x = gc.placeholder((3,), "float32")
    outputs = [gc.exp(gc.log(x)), gc.expm1(gc.log(x)), (x / x) * 2.0, gc.clip(x / 0.0, 1.0, 2.0), (x / x) % 2.0]
    values = np.array([-1.0, 0.0, 2.0], np.float32)
    unoptimized = gc.function([x], outputs, backend=backend, optimize=0)(values)
    for result, expected in zip(gc.function([x], outputs, backend=backend, optimize=2)(values), unoptimized):
        np.testing.assert_array_equal(result, expected)
    assert np.isnan(unoptimized[0][0]) and np.isnan(unoptimized[1][0]) and np.isnan(unoptimized[2][1])


def test_fusion_keeps_the_order_of_a_sum_of_gradient_contributions():
    """The contributions gc.grad adds up were reassociated when fused, one ulp away from the unfused sum."""
    x = gc.placeholder((2, 2, 3), "float64")
    cost = gc.sum(gc.concatenate([x, x], axis=2)) + gc.sum(x[[-1, 0, -1, 1, -2]]) + gc.mean(gc.maximum(x, 0.0))
    value = np.random.default_rng(0).uniform(-2, 2, (2, 2, 3))
    grads = [gc.function([x], gc.grad(cost, x), backend="reference", optimize=optimize)(value) for optimize in (0, 2)]
    np.testing.assert_array_equal(grads[1], grads[0])
