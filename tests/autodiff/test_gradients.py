"""gc.grad on composite graphs: shared subexpressions, variables, intermediate targets, second
derivatives and Hessian-vector products, all against finite differences or closed forms."""
import numpy as np
import pytest

import graphc as gc
from graphc.testing import assert_close, check_grad, evaluate

RNG = np.random.default_rng(11)


def test_a_node_used_twice_gets_both_contributions():
    # d/dx sum(x * x + x) = 2x + 1
    x = gc.placeholder((2, 3), "float64")
    data = RNG.standard_normal((2, 3))
    assert_close(evaluate(gc.grad(gc.sum(x * x + x), x), {x: data}), 2 * data + 1, rtol=1e-14)


def test_composite_expression_with_broadcasting_and_reductions():
    def cost(x, w, b):
        hidden = gc.tanh(x @ w + b)  # (4, 3) @ (3, 5) + (5,)
        centred = hidden - gc.mean(hidden, axis=0, keepdims=True)
        return gc.sum(gc.max(centred, axis=1) * gc.log(gc.exp(hidden[:, 1]) + 1.0))
    check_grad(cost, [(4, 3), (3, 5), (5,)])


def test_gradient_with_respect_to_variables():
    check_grad(lambda w, b: gc.sum(gc.sigmoid(w * b - 1.0) ** 2), [(3, 1), (1, 4)], sources="variable")


def test_gradient_with_respect_to_an_intermediate_node():
    x = gc.placeholder((3,), "float64")
    hidden = gc.exp(x)
    cost = gc.sum(hidden * hidden)
    data = RNG.standard_normal(3)
    assert_close(evaluate(gc.grad(cost, hidden), {x: data}), 2 * np.exp(data), rtol=1e-14)


def test_single_target_gives_a_node_and_a_list_gives_a_list():
    x, y = gc.placeholder((2,), "float64"), gc.placeholder((2,), "float64")
    cost = gc.sum(x * y)
    assert isinstance(gc.grad(cost, x), gc.Tensor)
    grads = gc.grad(cost, [x, y])
    assert isinstance(grads, list) and len(grads) == 2
    a, b = RNG.standard_normal(2), RNG.standard_normal(2)
    grad_x, grad_y = evaluate(grads, {x: a, y: b})
    assert_close(grad_x, b)
    assert_close(grad_y, a)


def test_gradient_nodes_are_tagged_backward():
    x = gc.placeholder((3,), "float64")
    forward = gc.sum(gc.tanh(x))
    backward = gc.grad(forward, x)
    assert forward.origin == "forward"
    assert backward.origin == "backward"


def test_gradient_does_not_flow_through_an_integer_cast_into_other_inputs():
    x, y = gc.placeholder((3,), "float64"), gc.placeholder((3,), "float64")
    cost = gc.sum(gc.cast(gc.cast(x, "int32"), "float64") * y)
    grad_y, grad_x = gc.grad(cost, [y, x], unconnected="zero")
    a, b = np.array([1.7, -2.2, 0.4]), RNG.standard_normal(3)
    result_y, result_x = evaluate([grad_y, grad_x], {x: a, y: b})
    assert_close(result_y, a.astype(np.int32).astype(np.float64))
    assert_close(result_x, np.zeros(3))


SMOOTH_UNARY = [gc.exp, gc.tanh, gc.sigmoid, gc.softplus, gc.square, gc.sqrt, gc.log,
                lambda x: gc.tanh(x) * x, lambda x: 1.0 / (x + 3.0), lambda x: x ** 3,
                gc.relu, gc.abs]  # relu'' and abs'' are 0 away from the kink


@pytest.mark.parametrize("op", SMOOTH_UNARY)
def test_second_derivative_of_elementwise_ops(op):
    """d/dx of the first gradient, against finite differences of the (compiled) first gradient."""
    data = RNG.uniform(0.3, 2.0, (3, 4)) * RNG.choice([-1, 1], (3, 4))
    if op in (gc.sqrt, gc.log):
        data = np.abs(data)
    check_grad(lambda x: gc.grad(gc.sum(op(x)), x), None, arrays=[data])


def test_second_derivative_of_sum_tanh_x_times_x_in_closed_form():
    # f = sum(tanh(x) x); f'' = 2 sech^2(x) - 2 x tanh(x) sech^2(x), elementwise
    x = gc.placeholder((5,), "float64")
    first = gc.grad(gc.sum(gc.tanh(x) * x), x)
    second = gc.grad(gc.sum(first), x)
    data = RNG.standard_normal(5)
    sech2 = 1 - np.tanh(data) ** 2
    assert_close(evaluate(second, {x: data}), 2 * sech2 - 2 * data * np.tanh(data) * sech2, rtol=1e-12)


@pytest.mark.parametrize("op", [gc.multiply, gc.divide, gc.power, gc.maximum, gc.subtract])
def test_second_derivatives_of_broadcasting_binary_ops(op):
    def first_gradients_mixed(a, b):
        grad_a, grad_b = gc.grad(gc.sum(gc.tanh(op(a, b))), [a, b])
        return gc.sum(grad_a * gc.constant(np.arange(3.0).reshape(3, 1))) + gc.sum(grad_b ** 2)
    arrays = [RNG.uniform(0.5, 1.5, (3, 1)), RNG.uniform(1.6, 2.5, (1, 4))]  # b > a: no ties in maximum
    check_grad(first_gradients_mixed, None, arrays=arrays)


def test_hessian_vector_product_of_squared_matmul():
    # f(W) = sum((x W)^2): grad = 2 x^T x W, Hessian-vector product with v is 2 x^T x v.
    x = gc.placeholder((5, 3), "float64")
    w = gc.placeholder((3, 2), "float64")
    v = gc.placeholder((3, 2), "float64")
    grad_w = gc.grad(gc.sum((x @ w) ** 2), w)
    hessian_v = gc.grad(gc.sum(grad_w * v), w)
    a, b, c = RNG.standard_normal((5, 3)), RNG.standard_normal((3, 2)), RNG.standard_normal((3, 2))
    first, second = evaluate([grad_w, hessian_v], {x: a, w: b, v: c})
    assert_close(first, 2 * a.T @ a @ b, rtol=1e-12)
    assert_close(second, 2 * a.T @ a @ c, rtol=1e-12)
    check_grad(lambda data, weights: gc.grad(gc.sum((data @ weights) ** 2), weights), [(5, 3), (3, 2)])


@pytest.mark.parametrize("shapes", [[(4, 3), (3, 2)], [(3,), (3, 2)], [(2, 4, 3), (3, 2)]], ids=str)
def test_second_derivatives_through_dot(shapes):
    check_grad(lambda a, b: gc.grad(gc.sum(gc.tanh(gc.dot(a, b))), a), shapes)
    check_grad(lambda a, b: gc.grad(gc.sum(gc.tanh(gc.dot(a, b))), b), shapes)


def test_second_derivative_through_softmax_and_log_softmax():
    check_grad(lambda z: gc.grad(gc.sum(gc.softmax(z) * gc.constant(np.arange(4.0))), z), [(2, 4)])
    check_grad(lambda z: gc.grad(gc.sum(gc.log_softmax(z, axis=0) ** 2), z), [(2, 4)])
