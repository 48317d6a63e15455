"""jacobian and hessian as graphs: shapes, analytic forms, finite differences, both backends, errors."""
import numpy as np
import pytest

import graphc as gc
from graphc.autodiff import GradientError, hessian, jacobian
from graphc.testing import assert_close, evaluate, numeric_grad

RNG = np.random.default_rng(4)
BACKENDS = ["reference", "llvm"]


def _numeric_jacobian(f, x):
    """d f(x)[i] / d x by central differences, shape f(x).shape + x.shape."""
    y = np.asarray(f(x))
    rows = [numeric_grad(lambda v, i=i: np.asarray(f(v)).reshape(-1)[i], [x])[0] for i in range(y.size)]
    return np.stack(rows).reshape(y.shape + x.shape)


@pytest.mark.parametrize("backend", BACKENDS)
def test_hessian_of_a_quadratic_form_is_a_plus_a_transpose(backend):
    a = RNG.standard_normal((5, 5))
    x = gc.placeholder((5,), "float64")
    cost = gc.sum(x * gc.matmul(gc.constant(a), x))
    h = hessian(cost, x)
    assert h.shape == (5, 5)
    assert_close(evaluate(h, {x: RNG.standard_normal(5)}, backend=backend), a + a.T, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_jacobian_of_a_layer_matches_the_analytic_form_and_finite_differences(backend):
    w = RNG.standard_normal((3, 4))
    x = gc.placeholder((4,), "float64")
    y = gc.tanh(gc.matmul(gc.constant(w), x))
    j = jacobian(y, x)
    assert j.shape == (3, 4)
    data = RNG.standard_normal(4)
    got = evaluate(j, {x: data}, backend=backend)
    assert_close(got, (1 - np.tanh(w @ data) ** 2)[:, None] * w, rtol=1e-13)
    assert_close(got, _numeric_jacobian(lambda v: np.tanh(w @ v), data), rtol=1e-6, atol=1e-9)


def test_jacobian_shape_is_y_shape_plus_x_shape_for_matrices_and_lists():
    x, b = gc.placeholder((2, 3), "float64"), gc.placeholder((3,), "float64")
    y = gc.exp(x) * b  # (2, 3)
    jx, jb = jacobian(y, [x, b])
    assert jx.shape == (2, 3, 2, 3) and jb.shape == (2, 3, 3)
    xd, bd = RNG.standard_normal((2, 3)), RNG.standard_normal(3)
    got_x, got_b = evaluate([jx, jb], {x: xd, b: bd})
    assert_close(got_x, _numeric_jacobian(lambda v: np.exp(v) * bd, xd), rtol=1e-6, atol=1e-9)
    assert_close(got_b, _numeric_jacobian(lambda v: np.exp(xd) * v, bd), rtol=1e-6, atol=1e-9)


def test_hessian_matches_finite_differences_of_the_gradient_and_is_symmetric():
    x = gc.placeholder((2, 2), "float64")
    cost = gc.sum(gc.log(1.0 + gc.exp(gc.matmul(x, x)))) + gc.sum(gc.tanh(x) * x[0])
    h = hessian(cost, x)
    assert h.shape == (2, 2, 2, 2)
    data = RNG.standard_normal((2, 2))
    grad_f = gc.function([x], gc.grad(cost, x), backend="reference")
    expected = _numeric_jacobian(lambda v: grad_f(v), data)
    for backend in BACKENDS:
        got = evaluate(h, {x: data}, backend=backend)
        assert_close(got, expected, rtol=1e-6, atol=1e-8)
        assert_close(got.reshape(4, 4), got.reshape(4, 4).T, rtol=1e-12, atol=1e-14)


def test_elements_that_do_not_depend_on_x_give_zero_rows_and_linear_costs_a_zero_hessian():
    x = gc.placeholder((3,), "float64")
    y = gc.concatenate([x[:2] * 2.0, gc.constant(np.ones(1))])
    assert_close(evaluate(jacobian(y, x), {x: np.ones(3)}), np.array([[2.0, 0, 0], [0, 2.0, 0], [0, 0, 0]]))
    assert_close(evaluate(hessian(gc.sum(x * 3.0), x), {x: np.ones(3)}), np.zeros((3, 3)))


def test_a_scalar_y_is_the_gradient():
    x = gc.placeholder((3,), "float64")
    j = jacobian(gc.sum(x ** 2), x)
    assert j.shape == (3,)
    assert_close(evaluate(j, {x: np.arange(3.0)}), 2 * np.arange(3.0))


def test_errors_name_the_problem():
    x = gc.placeholder((None, 3), "float64")
    with pytest.raises(GradientError, match=r"symbolic shape \(\?\d+, 3\).*needs a static size"):
        jacobian(x * 2.0, x)
    with pytest.raises(GradientError, match="hessian: .* symbolic shape .* needs a static size"):
        hessian(gc.sum(x), x)
    v, other = gc.placeholder((3,), "float64"), gc.placeholder((3,), "float64")
    with pytest.raises(GradientError, match="does not depend on"):
        jacobian(v * 2.0, other)
    assert_close(evaluate(jacobian(v * 2.0, other, unconnected="zero"), {v: np.ones(3), other: np.ones(3)}),
                 np.zeros((3, 3)))
    with pytest.raises(GradientError, match="y must be a float, got int64"):
        jacobian(gc.argmax(gc.reshape(v, (1, 3)), axis=1), v)
