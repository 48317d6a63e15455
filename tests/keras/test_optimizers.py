"""Each optimizer's graph updates against Keras 3's update rule written out in numpy (with clipping, weight decay
and schedules), the schedules in the graph against their formulas, and the numbers in Keras' documentation."""
import math

import numpy as np
import pytest

import graphc as gc
from graphc.keras import optimizers
from graphc.keras.optimizers import schedules
from graphc.testing import assert_close

C = np.array([[1.0, -2.0], [0.5, 3.0], [-1.5, 0.25]], dtype=np.float32)
W0 = np.array([[0.3, -0.1], [0.2, 0.4], [-0.5, 0.1]], dtype=np.float32)
D = np.array([0.7, -0.4], dtype=np.float32)
B0 = np.array([0.05, -0.2], dtype=np.float32)


def graph_steps(optimizer, steps, backend="reference"):
    """(w, b) after each of ``steps`` steps on loss = sum(C w) + sum(w^2) / 2 + sum(D b) + sum(b^2) / 2, whose
    gradients are C + w and D + b."""
    w, b = gc.variable(W0.copy(), name="w"), gc.variable(B0.copy(), name="b")
    loss = gc.sum(C * w) + gc.sum(gc.square(w)) / 2 + gc.sum(D * b) + gc.sum(gc.square(b)) / 2
    step = gc.function([], [loss], updates=optimizer.updates([w, b], gc.grad(loss, [w, b])), backend=backend)
    trajectory = []
    for _ in range(steps):
        step()
        trajectory.append((w.value, b.value))
    return trajectory


def numpy_steps(update, steps, lr, clip=lambda grads: grads, weight_decay=None):
    """The same steps in float64 as Keras 3 takes them: clip the gradients, decay the weights (w -= w wd lr),
    then ``update(w, g, state, t, lr)``; ``lr`` is a number or a function of the step index 0, 1, ..."""
    params, states, trajectory = [W0.astype(np.float64), B0.astype(np.float64)], [{}, {}], []
    for t in range(1, steps + 1):
        rate = lr(t - 1) if callable(lr) else lr
        grads = clip([C + params[0], D + params[1]])
        if weight_decay is not None:
            params = [p - p * weight_decay * rate for p in params]
        params = [update(p, g, state, t, rate) for p, g, state in zip(params, grads, states)]
        trajectory.append(tuple(params))
    return trajectory


def assert_same_trajectory(got, expected, rtol=2e-5, atol=1e-6):
    for (w, b), (w_expected, b_expected) in zip(got, expected, strict=True):
        assert_close(w, w_expected, rtol=rtol, atol=atol, name="w")
        assert_close(b, b_expected, rtol=rtol, atol=atol, name="b")


# ---- Keras 3's rules in numpy (keras/src/optimizers/*.py) -------------------------------------------------
def sgd(momentum=0.0, nesterov=False):
    def update(w, g, state, t, lr):
        if not momentum:
            return w - lr * g
        m = state["m"] = momentum * state.get("m", 0) - lr * g
        return w + (momentum * m - lr * g if nesterov else m)
    return update


def rmsprop(rho=0.9, momentum=0.0, eps=1e-7, centered=False):
    def update(w, g, state, t, lr):
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


def adam(b1=0.9, b2=0.999, eps=1e-7, amsgrad=False):
    def update(w, g, state, t, lr):
        m = state["m"] = b1 * state.get("m", 0) + (1 - b1) * g
        v = state["v"] = b2 * state.get("v", 0) + (1 - b2) * g * g
        if amsgrad:
            v = state["v_hat"] = np.maximum(state.get("v_hat", 0), v)
        return w - lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (np.sqrt(v) + eps)
    return update


def adagrad(initial=0.1, eps=1e-7):
    def update(w, g, state, t, lr):
        a = state["a"] = state.get("a", initial) + g * g
        return w - lr * g / np.sqrt(a + eps)
    return update


def adamax(b1=0.9, b2=0.999, eps=1e-7):
    def update(w, g, state, t, lr):
        m = state["m"] = b1 * state.get("m", 0) + (1 - b1) * g
        u = state["u"] = np.maximum(b2 * state.get("u", 0), np.abs(g))
        return w - lr * m / ((1 - b1 ** t) * (u + eps))
    return update


def nadam(b1=0.9, b2=0.999, eps=1e-7):
    def update(w, g, state, t, lr):
        u_t, u_next = b1 * (1 - 0.5 * 0.96 ** t), b1 * (1 - 0.5 * 0.96 ** (t + 1))
        product = state["P"] = state.get("P", 1.0) * u_t
        m = state["m"] = b1 * state.get("m", 0) + (1 - b1) * g
        v = state["v"] = b2 * state.get("v", 0) + (1 - b2) * g * g
        m_hat = u_next * m / (1 - product * u_next) + (1 - u_t) * g / (1 - product)
        return w - lr * m_hat / (np.sqrt(v / (1 - b2 ** t)) + eps)
    return update


CASES = {
    "sgd": (lambda: optimizers.SGD(0.1), sgd(), 0.1),
    "momentum": (lambda: optimizers.SGD(0.1, momentum=0.9), sgd(0.9), 0.1),
    "nesterov": (lambda: optimizers.SGD(0.1, momentum=0.9, nesterov=True), sgd(0.9, True), 0.1),
    "rmsprop": (lambda: optimizers.RMSprop(), rmsprop(), 0.001),
    "rmsprop-momentum": (lambda: optimizers.RMSprop(0.01, rho=0.8, momentum=0.5), rmsprop(0.8, 0.5), 0.01),
    "rmsprop-centered": (lambda: optimizers.RMSprop(0.01, centered=True), rmsprop(centered=True), 0.01),
    # A large epsilon tells sqrt(v + eps) (RMSprop) from sqrt(v) + eps (Adam) apart.
    "rmsprop-eps": (lambda: optimizers.RMSprop(0.01, epsilon=0.5), rmsprop(eps=0.5), 0.01),
    "adam": (lambda: optimizers.Adam(), adam(), 0.001),
    "adam-eps": (lambda: optimizers.Adam(0.01, epsilon=0.5), adam(eps=0.5), 0.01),
    "amsgrad": (lambda: optimizers.Adam(0.05, beta_1=0.8, beta_2=0.99, amsgrad=True), adam(0.8, 0.99, amsgrad=True),
                0.05),
    "adagrad": (lambda: optimizers.Adagrad(0.1), adagrad(), 0.1),
    "adagrad-settings": (lambda: optimizers.Adagrad(0.2, initial_accumulator_value=0.5, epsilon=0.1),
                         adagrad(0.5, 0.1), 0.2),
    "adamax": (lambda: optimizers.Adamax(0.05), adamax(), 0.05),
    "adamax-settings": (lambda: optimizers.Adamax(0.02, beta_1=0.7, beta_2=0.9, epsilon=0.3), adamax(0.7, 0.9, 0.3),
                        0.02),
    "nadam": (lambda: optimizers.Nadam(0.05), nadam(), 0.05),
    "nadam-settings": (lambda: optimizers.Nadam(0.02, beta_1=0.8, beta_2=0.95, epsilon=0.2), nadam(0.8, 0.95, 0.2),
                       0.02),
}


@pytest.mark.parametrize("name", CASES)
def test_updates_follow_the_keras_rule(name):
    optimizer, update, lr = CASES[name]
    assert_same_trajectory(graph_steps(optimizer(), 5), numpy_steps(update, 5, lr))


@pytest.mark.parametrize("optimizer, update, lr, weight_decay", [
    (lambda: optimizers.AdamW(0.05), adam(), 0.05, 0.004),
    (lambda: optimizers.AdamW(0.05, weight_decay=0.3, amsgrad=True), adam(amsgrad=True), 0.05, 0.3),
    (lambda: optimizers.SGD(0.1, momentum=0.5, weight_decay=0.2), sgd(0.5), 0.1, 0.2),
    (lambda: optimizers.Nadam(0.05, weight_decay=0.1), nadam(), 0.05, 0.1),
], ids=["adamw", "adamw-amsgrad", "sgd", "nadam"])
def test_weight_decay_shrinks_the_weights_before_the_step(optimizer, update, lr, weight_decay):
    assert_same_trajectory(graph_steps(optimizer(), 4), numpy_steps(update, 4, lr, weight_decay=weight_decay))


def test_variables_excluded_from_weight_decay_are_not_decayed():
    optimizer = optimizers.AdamW(0.05, weight_decay=0.3)
    optimizer.exclude_from_weight_decay(var_names=["^b$"])
    decayed, plain = numpy_steps(adam(), 3, 0.05, weight_decay=0.3), numpy_steps(adam(), 3, 0.05)
    assert_same_trajectory(graph_steps(optimizer, 3), [(d[0], p[1]) for d, p in zip(decayed, plain)])
    with pytest.raises(ValueError, match="call it before the optimizer builds its first training step"):
        optimizer.exclude_from_weight_decay(var_names=["w"])


def clip_each_norm(c):
    return lambda grads: [g * c / max(np.sqrt(np.sum(g * g)), c) for g in grads]


def clip_global_norm(c):
    def clip(grads):
        norm = np.sqrt(sum(np.sum(g * g) for g in grads))
        return [g * c / max(norm, c) for g in grads]
    return clip


@pytest.mark.parametrize("settings, clip", [
    ({"clipnorm": 1.0}, clip_each_norm(1.0)),
    ({"clipnorm": 100.0}, clip_each_norm(100.0)),  # too large to change anything
    ({"global_clipnorm": 1.5}, clip_global_norm(1.5)),
    ({"clipvalue": 0.5}, lambda grads: [np.clip(g, -0.5, 0.5) for g in grads]),
], ids=["clipnorm", "clipnorm-inactive", "global_clipnorm", "clipvalue"])
def test_gradient_clipping(settings, clip):
    assert_same_trajectory(graph_steps(optimizers.SGD(0.1, momentum=0.5, **settings), 4),
                           numpy_steps(sgd(0.5), 4, 0.1, clip=clip))
    assert_same_trajectory(graph_steps(optimizers.Adam(0.05, **settings), 3), numpy_steps(adam(), 3, 0.05, clip=clip))


@pytest.mark.parametrize("name", ["sgd", "momentum", "rmsprop-centered", "amsgrad", "adagrad", "adamax", "nadam"])
def test_native_code_takes_the_same_steps(name):
    optimizer, update, lr = CASES[name]
    assert_same_trajectory(graph_steps(optimizer(), 3, backend="llvm"), numpy_steps(update, 3, lr))


def test_adamw_and_clipping_in_native_code():
    assert_same_trajectory(graph_steps(optimizers.AdamW(0.05, weight_decay=0.1, global_clipnorm=1.5), 3,
                                       backend="llvm"),
                           numpy_steps(adam(), 3, 0.05, clip=clip_global_norm(1.5), weight_decay=0.1))


# ---- schedules ---------------------------------------------------------------------------------------------
def keras_exponential(initial, decay_steps, rate, staircase=False):
    return lambda step: initial * rate ** (math.floor(step / decay_steps) if staircase else step / decay_steps)


def keras_piecewise(boundaries, values):
    def rate(step):
        if step <= boundaries[0]:
            return values[0]
        if step > boundaries[-1]:
            return values[-1]
        return next(v for low, high, v in zip(boundaries, boundaries[1:], values[1:]) if low < step <= high)
    return rate


def keras_cosine(initial, decay_steps, alpha=0.0, warmup_target=None, warmup_steps=0):
    def decayed(step, rate):
        return rate * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * step / decay_steps)) + alpha)

    def rate(step):
        if warmup_target is None:
            return decayed(min(step, decay_steps), initial)
        step = min(step, decay_steps + warmup_steps)
        if step < warmup_steps:
            return (warmup_target - initial) * step / warmup_steps + initial
        return decayed(step - warmup_steps, warmup_target)
    return rate


SCHEDULES = {
    "exponential": (schedules.ExponentialDecay(0.1, 7, 0.5), keras_exponential(0.1, 7, 0.5)),
    "staircase": (schedules.ExponentialDecay(0.1, 7, 0.5, staircase=True), keras_exponential(0.1, 7, 0.5, True)),
    "piecewise": (schedules.PiecewiseConstantDecay([3, 10, 11], [1.0, 0.5, 0.25, 0.125]),
                  keras_piecewise([3, 10, 11], [1.0, 0.5, 0.25, 0.125])),
    "piecewise-one": (schedules.PiecewiseConstantDecay([0], [0.3, 0.2]), keras_piecewise([0], [0.3, 0.2])),
    "cosine": (schedules.CosineDecay(0.2, 13), keras_cosine(0.2, 13)),
    "cosine-alpha": (schedules.CosineDecay(0.2, 13, alpha=0.1), keras_cosine(0.2, 13, 0.1)),
    "cosine-warmup": (schedules.CosineDecay(0.0, 10, alpha=0.2, warmup_target=0.5, warmup_steps=5),
                      keras_cosine(0.0, 10, 0.2, 0.5, 5)),
}


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedules_in_the_graph_and_in_numpy_follow_keras(name):
    schedule, reference = SCHEDULES[name]
    steps = np.arange(30)
    step = gc.placeholder((None,), dtype="int64")
    expected = np.array([reference(int(s)) for s in steps])
    for backend in ("reference", "llvm"):
        in_graph = gc.function([step], schedule(step), backend=backend)(steps)
        assert in_graph.dtype == np.float32
        assert_close(in_graph, expected, rtol=1e-6, atol=1e-9, name=backend)
    assert_close(np.array([schedule(int(s)) for s in steps]), expected, rtol=1e-12, atol=1e-15)


def test_a_schedule_drives_the_steps_from_the_iteration_counter():
    schedule = schedules.ExponentialDecay(0.2, 2, 0.5, staircase=True)
    optimizer = optimizers.SGD(schedule, momentum=0.5)
    assert optimizer.learning_rate == pytest.approx(0.2)
    assert_same_trajectory(graph_steps(optimizer, 5, backend="llvm"), numpy_steps(sgd(0.5), 5, schedule))
    assert optimizer.learning_rate == pytest.approx(0.2 * 0.5 ** 2)  # at iteration 5
    assert optimizer.variables[0] is optimizer.iterations and len(optimizer.variables) == 3  # no rate variable
    warm = schedules.CosineDecay(0.01, 6, warmup_target=0.1, warmup_steps=3)
    # 1 - 0.999^t is 1.3e-5 off in float32 (as in Keras) at t = 1, and the steps of 0.01 to 0.1 add up.
    assert_same_trajectory(graph_steps(optimizers.AdamW(warm, weight_decay=0.1), 6),
                           numpy_steps(adam(), 6, warm, weight_decay=0.1), atol=5e-6)


def test_a_scheduled_learning_rate_cannot_be_set():
    optimizer = optimizers.Adam(schedules.CosineDecay(0.1, 100))
    with pytest.raises(TypeError, match="created with the schedule CosineDecay as its learning_rate"):
        optimizer.learning_rate = 0.5


# ---- state, names, saved forms -----------------------------------------------------------------------------
def minimize_square_half(optimizer, start, steps):
    """The Keras docstring experiment: minimize var^2 / 2 from ``start``; the values after each step."""
    var = gc.variable(np.float32(start))
    loss = gc.square(var) / 2
    step = gc.function([], loss, updates=optimizer.updates([var], [gc.grad(loss, var)]), backend="reference")
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
    iterations, learning_rate, momentum, velocity, *b_slots = optimizer.variables
    assert iterations.value == 3 and learning_rate.value == np.float32(0.001)
    assert momentum.name == "w/momentum" and velocity.name == "w/velocity"
    assert [v.name for v in b_slots] == ["b/momentum", "b/velocity"]
    assert np.all(velocity.value > 0)
    assert len(optimizers.SGD().variables) == 2  # plain SGD keeps no slots
    rms = optimizers.RMSprop(momentum=0.5, centered=True)
    graph_steps(rms, 1)
    assert [v.name for v in rms.variables[2:5]] == ["w/velocity", "w/momentum", "w/average_gradient"]
    adagrad_optimizer = optimizers.Adagrad(initial_accumulator_value=0.25)
    w = gc.variable(W0)
    assert np.all(adagrad_optimizer._slots_for(w)["accumulator"].value == np.float32(0.25))
    nadam_optimizer = optimizers.Nadam()
    graph_steps(nadam_optimizer, 2)
    u_product = nadam_optimizer.variables[2]
    assert u_product.name == "u_product"
    assert u_product.value == pytest.approx(0.9 * (1 - 0.5 * 0.96) * 0.9 * (1 - 0.5 * 0.96 ** 2))


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
    for name, cls in [("RMSprop", optimizers.RMSprop), ("adam", optimizers.Adam), ("adagrad", optimizers.Adagrad),
                      ("Adamax", optimizers.Adamax), ("nadam", optimizers.Nadam), ("AdamW", optimizers.AdamW)]:
        assert type(optimizers.get(name)) is cls
    assert optimizers.get("adamw").weight_decay == 0.004 and optimizers.get("adam").weight_decay is None
    sgd_optimizer = optimizers.SGD(0.2, momentum=0.5, nesterov=True, clipnorm=2.0)
    assert optimizers.get(sgd_optimizer) is sgd_optimizer
    again = optimizers.get(optimizers.serialize(sgd_optimizer))
    assert type(again) is optimizers.SGD
    assert again.get_config() == {"name": "sgd", "learning_rate": pytest.approx(0.2), "weight_decay": None,
                                  "clipnorm": 2.0, "global_clipnorm": None, "clipvalue": None, "momentum": 0.5,
                                  "nesterov": True}


@pytest.mark.parametrize("optimizer", [
    optimizers.Adagrad(0.3, initial_accumulator_value=0.2, clipvalue=1.0),
    optimizers.Adamax(beta_2=0.9, global_clipnorm=3.0), optimizers.Nadam(epsilon=1e-3, weight_decay=0.01),
    optimizers.AdamW(0.002, weight_decay=0.1, amsgrad=True), optimizers.RMSprop(centered=True, name="mine"),
    optimizers.Adam(schedules.ExponentialDecay(0.1, 10, 0.9, staircase=True)),
    optimizers.SGD(schedules.PiecewiseConstantDecay([5, 9], [0.1, 0.01, 0.001])),
    optimizers.Nadam(schedules.CosineDecay(0.1, 50, alpha=0.1, warmup_target=0.3, warmup_steps=4)),
], ids=lambda optimizer: type(optimizer).__name__)
def test_serialize_round_trips(optimizer):
    config = optimizers.serialize(optimizer)
    again = optimizers.deserialize(config)
    assert type(again) is type(optimizer) and optimizers.serialize(again) == config
    assert again.learning_rate == pytest.approx(optimizer.learning_rate)
    rate = optimizer.get_config()["learning_rate"]
    if isinstance(rate, dict):
        assert type(again._learning_rate) is type(optimizer._learning_rate)
        assert again._learning_rate.get_config() == optimizer._learning_rate.get_config() == rate["config"]


def test_bad_names_and_settings():
    with pytest.raises(ValueError, match="unknown optimizer 'lion'; known optimizers: sgd, rmsprop, adam, adagrad, "
                                         "adamax, nadam, adamw"):
        optimizers.get("lion")
    with pytest.raises(ValueError, match="momentum must be between 0 and 1"):
        optimizers.SGD(momentum=1.5)
    with pytest.raises(ValueError, match="unknown optimizer class 'Lion'"):
        optimizers.deserialize({"class_name": "Lion", "config": {}})
    with pytest.raises(ValueError, match="Adam: learning_rate must be a finite number >= 0.0, got learning_rate=-0.1"):
        optimizers.Adam(-0.1)
    with pytest.raises(ValueError, match="learning_rate must be a finite number"):
        optimizers.SGD("fast")
    with pytest.raises(ValueError, match="learning_rate=nan"):
        optimizers.SGD().learning_rate = float("nan")
    with pytest.raises(ValueError, match="only one of clipnorm, clipvalue and global_clipnorm can be set"):
        optimizers.SGD(clipnorm=1.0, clipvalue=0.5)
    with pytest.raises(ValueError, match="clipnorm must be a finite number > 0.0, got clipnorm=0"):
        optimizers.Adam(clipnorm=0)
    with pytest.raises(ValueError, match="weight_decay must be a finite number >= 0.0"):
        optimizers.SGD(weight_decay=-1.0)
    with pytest.raises(ValueError, match="AdamW: weight_decay must be a float, got None"):
        optimizers.AdamW(weight_decay=None)
    with pytest.raises(ValueError, match="initial_accumulator_value must be a finite number >= 0.0"):
        optimizers.Adagrad(initial_accumulator_value=-0.1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'decay'"):
        optimizers.Adam(decay=0.1)


def test_bad_schedules():
    with pytest.raises(ValueError, match="ExponentialDecay: decay_steps must be a finite number > 0.0, got "
                                         "decay_steps=0"):
        schedules.ExponentialDecay(0.1, 0, 0.5)
    with pytest.raises(ValueError, match="CosineDecay: decay_steps must be a finite number > 0.0"):
        schedules.CosineDecay(0.1, -5)
    with pytest.raises(ValueError, match="initial_learning_rate must be a finite number >= 0.0"):
        schedules.CosineDecay(-0.1, 5)
    with pytest.raises(ValueError, match="warmup_steps must be a finite number >= 0.0"):
        schedules.CosineDecay(0.1, 5, warmup_target=0.2, warmup_steps=-1)
    with pytest.raises(ValueError, match="boundaries must be one shorter than values, got 2 boundaries and 2 values"):
        schedules.PiecewiseConstantDecay([1, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"boundaries must be increasing, got \[5, 2\]"):
        schedules.PiecewiseConstantDecay([5, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="unknown learning rate schedule class 'PolynomialDecay'; known: ExponentialDecay"):
        schedules.deserialize({"class_name": "PolynomialDecay", "config": {}})
