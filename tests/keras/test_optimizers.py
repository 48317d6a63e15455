"""Each optimizer's graph updates against the update rule written out in numpy, and against the numbers in
Keras' own documentation."""
import numpy as np
import pytest

import graphc as gc
from graphc.keras import optimizers

C = np.array([[1.0, -2.0], [0.5, 3.0], [-1.5, 0.25]], dtype=np.float32)
W0 = np.array([[0.3, -0.1], [0.2, 0.4], [-0.5, 0.1]], dtype=np.float32)


def graph_steps(optimizer, steps):
    """Weights after each of ``steps`` steps on loss = sum(c * w) + sum(w^2) / 2, whose gradient is c + w."""
    w = gc.variable(W0.copy(), name="w")
    loss = gc.sum(C * w) + gc.sum(gc.square(w)) / 2
    step = gc.function([], [loss], updates=optimizer.updates([w], gc.grad(loss, [w])))
    trajectory = []
    for _ in range(steps):
        step()
        trajectory.append(w.value)
    return trajectory


def numpy_steps(update, steps):
    w, state, trajectory = W0.astype(np.float64), {}, []
    for t in range(1, steps + 1):
        w = update(w, C + w, state, t)
        trajectory.append(w)
    return trajectory


def sgd(lr, momentum=0.0, nesterov=False):
    def update(w, g, state, t):
        if not momentum:
            return w - lr * g
        m = state["m"] = momentum * state.get("m", 0) - lr * g
        return w + (momentum * m - lr * g if nesterov else m)
    return update


def rmsprop(lr=0.001, rho=0.9, momentum=0.0, eps=1e-7, centered=False):
    def update(w, g, state, t):
        v = state["v"] = rho * state.get("v", 0) + (1 - rho) * g * g
        denominator = v + eps
        if centered:
            a = state["a"] = rho * state.get("a", 0) + (1 - rho) * g
            denominator = v - a * a + eps
        increment = lr * g / np.sqrt(denominator)
        if momentum:
            increment = state["m"] = momentum * state.get("m", 0) + increment
        return w - increment
    return update


def adam(lr=0.001, b1=0.9, b2=0.999, eps=1e-7, amsgrad=False):
    def update(w, g, state, t):
        m = state["m"] = b1 * state.get("m", 0) + (1 - b1) * g
        v = state["v"] = b2 * state.get("v", 0) + (1 - b2) * g * g
        if amsgrad:
            v = state["v_hat"] = np.maximum(state.get("v_hat", 0), v)
        return w - lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (np.sqrt(v) + eps)
    return update


@pytest.mark.parametrize("optimizer, update", [
    (lambda: optimizers.SGD(0.1), sgd(0.1)),
    (lambda: optimizers.SGD(0.1, momentum=0.9), sgd(0.1, 0.9)),
    (lambda: optimizers.SGD(0.1, momentum=0.9, nesterov=True), sgd(0.1, 0.9, True)),
    (lambda: optimizers.RMSprop(), rmsprop()),
    (lambda: optimizers.RMSprop(0.01, rho=0.8, momentum=0.5), rmsprop(0.01, 0.8, 0.5)),
    (lambda: optimizers.RMSprop(0.01, centered=True), rmsprop(0.01, centered=True)),
    # A large epsilon tells sqrt(v + eps) (RMSprop) from sqrt(v) + eps (Adam) apart.
    (lambda: optimizers.RMSprop(0.01, epsilon=0.5), rmsprop(0.01, eps=0.5)),
    (lambda: optimizers.Adam(), adam()),
    (lambda: optimizers.Adam(0.01, epsilon=0.5), adam(0.01, eps=0.5)),
    (lambda: optimizers.Adam(0.05, beta_1=0.8, beta_2=0.99, amsgrad=True), adam(0.05, 0.8, 0.99, amsgrad=True)),
], ids=["sgd", "momentum", "nesterov", "rmsprop", "rmsprop-momentum", "rmsprop-centered", "rmsprop-eps",
        "adam", "adam-eps", "amsgrad"])
def test_updates_follow_the_keras_rule(optimizer, update):
    for got, expected in zip(graph_steps(optimizer(), 4), numpy_steps(update, 4)):
        np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-6)


def minimize_square_half(optimizer, start, steps):
    """The Keras docstring experiment: minimize var^2 / 2 from ``start``; the values after each step."""
    var = gc.variable(np.float32(start))
    loss = gc.square(var) / 2
    step = gc.function([], loss, updates=optimizer.updates([var], [gc.grad(loss, var)]))
    values = []
    for _ in range(steps):
        step()
        values.append(float(var.value))
    return values


def test_numbers_from_the_keras_documentation():
    assert minimize_square_half(optimizers.RMSprop(learning_rate=0.1), 10.0, 1) == pytest.approx([9.683772])
    assert minimize_square_half(optimizers.Adam(learning_rate=0.1), 10.0, 1) == pytest.approx([9.9], abs=1e-5)
    first, second = minimize_square_half(optimizers.SGD(learning_rate=0.1, momentum=0.9), 1.0, 2)
    assert (1.0 - first, first - second) == pytest.approx((0.1, 0.18))


def test_slots_and_iteration_counter_are_variables_updated_by_the_step():
    optimizer = optimizers.Adam()
    graph_steps(optimizer, 3)
    iterations, learning_rate, momentum, velocity = optimizer.variables
    assert iterations.value == 3 and learning_rate.value == np.float32(0.001)
    assert momentum.name == "w/momentum" and velocity.name == "w/velocity"
    assert np.all(velocity.value > 0)
    assert len(optimizers.SGD().variables) == 2  # plain SGD keeps no slots
    rms = optimizers.RMSprop(momentum=0.5, centered=True)
    graph_steps(rms, 1)
    assert [v.name for v in rms.variables[2:]] == ["w/velocity", "w/momentum", "w/average_gradient"]


def test_changing_the_learning_rate_needs_no_new_function():
    optimizer = optimizers.SGD(0.1)
    w = gc.variable(np.float32(1.0))
    step = gc.function([], w, updates=optimizer.updates([w], [gc.constant(np.float32(1.0))]))
    step()
    optimizer.learning_rate = 0.5
    step()
    assert float(w.value) == pytest.approx(1.0 - 0.1 - 0.5)
    assert optimizer.learning_rate == 0.5


def test_get_by_name_instance_or_config():
    assert type(optimizers.get("RMSprop")) is optimizers.RMSprop
    assert type(optimizers.get("adam")) is optimizers.Adam
    sgd_optimizer = optimizers.SGD(0.2, momentum=0.5, nesterov=True)
    assert optimizers.get(sgd_optimizer) is sgd_optimizer
    again = optimizers.get(optimizers.serialize(sgd_optimizer))
    assert type(again) is optimizers.SGD
    assert again.get_config() == {"learning_rate": pytest.approx(0.2), "momentum": 0.5, "nesterov": True}


def test_bad_names_and_settings():
    with pytest.raises(ValueError, match="unknown optimizer 'adagrad'; known optimizers: sgd, rmsprop, adam"):
        optimizers.get("adagrad")
    with pytest.raises(ValueError, match="momentum must be between 0 and 1"):
        optimizers.SGD(momentum=1.5)
    with pytest.raises(ValueError, match="unknown optimizer class 'Nadam'"):
        optimizers.deserialize({"class_name": "Nadam", "config": {}})
