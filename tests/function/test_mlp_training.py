"""A small MLP (784 -> 32 relu -> 10 softmax, categorical crossentropy) in float64: its gradients match
finite differences, and SGD through gc.function updates lowers its loss."""
import numpy as np
import graphc as gc
from graphc.testing import assert_close, check_grad, numeric_grad

RNG = np.random.default_rng(21)


def mlp_loss(images, labels, w1, b1, w2, b2):
    """Mean categorical crossentropy of softmax(relu(images @ w1 + b1) @ w2 + b2) against one-hot labels."""
    hidden = gc.relu(images @ w1 + b1)
    probabilities = gc.softmax(hidden @ w2 + b2)
    return gc.mean(gc.categorical_crossentropy(labels, probabilities))


def parameters(n_in, n_hidden, n_out):
    return [RNG.standard_normal((n_in, n_hidden)) / np.sqrt(n_in), RNG.uniform(0.1, 0.3, n_hidden),
            RNG.standard_normal((n_hidden, n_out)) / np.sqrt(n_hidden), RNG.standard_normal(n_out) * 0.1]


def data(batch, n_in, n_out):
    images = RNG.uniform(0, 1, (batch, n_in))
    labels = np.eye(n_out)[RNG.integers(0, n_out, batch)]
    return images, labels


def test_small_mlp_gradients_match_finite_differences_everywhere():
    images, labels = data(4, 12, 5)
    check_grad(lambda *weights: mlp_loss(gc.constant(images), gc.constant(labels), *weights), None,
               arrays=parameters(12, 6, 5), sources="variable")


def test_mnist_sized_mlp_gradients_match_directional_finite_differences():
    """For 784 x 32 weights, compare <grad, v> with (f(w + eps v) - f(w - eps v)) / 2 eps along random v."""
    images, labels = data(3, 784, 10)
    x, y = gc.placeholder(("batch", 784), "float64"), gc.placeholder(("batch", 10), "float64")
    weights = [gc.placeholder(p.shape, "float64") for p in parameters(784, 32, 10)]
    values = parameters(784, 32, 10)
    loss = mlp_loss(x, y, *weights)
    compiled_loss = gc.function([x, y, *weights], loss)
    gradients = gc.function([x, y, *weights], gc.grad(loss, weights))(images, labels, *values)
    for _ in range(3):
        directions = [RNG.standard_normal(v.shape) for v in values]
        along = numeric_grad(lambda t: compiled_loss(images, labels, *[v + t * d for v, d in zip(values, directions)]),
                             [0.0])[0]
        assert_close(sum(np.sum(g * d) for g, d in zip(gradients, directions)), along, rtol=1e-6)


def test_sgd_training_loop_decreases_the_loss():
    images, labels = data(32, 784, 10)
    x, y = gc.placeholder(("batch", 784), "float64"), gc.placeholder(("batch", 10), "float64")
    weights = [gc.variable(p, name=name) for p, name in zip(parameters(784, 32, 10), ["w1", "b1", "w2", "b2"])]
    loss = mlp_loss(x, y, *weights)
    learning_rate = 0.02  # inputs in [0, 1]^784 have |x|^2 ~ 260: larger steps overshoot
    step = gc.function([x, y], loss,
                       updates=[(w, w - learning_rate * g) for w, g in zip(weights, gc.grad(loss, weights))])
    evaluate_loss = gc.function([x, y], loss)
    before = float(evaluate_loss(images, labels))
    losses = [float(step(images[i:i + 8], labels[i:i + 8])) for _ in range(20) for i in range(0, 32, 8)]
    after = float(evaluate_loss(images, labels))
    assert after < 0.5 * before, (before, after, losses)
    assert np.mean(losses[-4:]) < np.mean(losses[:4])


def test_one_sgd_step_moves_each_weight_by_minus_learning_rate_times_its_gradient():
    learning_rate = 0.1
    images, labels = data(4, 20, 3)
    x, y = gc.placeholder(("batch", 20), "float64"), gc.placeholder(("batch", 3), "float64")
    weights = [gc.variable(p) for p in parameters(20, 8, 3)]
    loss = mlp_loss(x, y, *weights)
    grads = gc.grad(loss, weights)
    expected_gradients = gc.function([x, y], grads)(images, labels)
    old_values = [w.value for w in weights]
    gc.function([x, y], [], updates=[(w, w - learning_rate * g) for w, g in zip(weights, grads)])(images, labels)
    for w, old, g in zip(weights, old_values, expected_gradients):
        assert_close(w.value, old - learning_rate * g, rtol=1e-13, atol=1e-15)
