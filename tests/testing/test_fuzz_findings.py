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
