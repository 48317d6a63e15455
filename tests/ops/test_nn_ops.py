"""softmax, log_softmax, one_hot and the Keras losses: values against numpy written out here, gradients
against finite differences."""
import numpy as np
import pytest

import graphc as gc
from graphc.graph.shapes import dim_symbol
from graphc.testing import assert_close, check_grad, evaluate

RNG = np.random.default_rng(5)
EPSILON = 1e-7  # Keras' clipping bound for probabilities


def np_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def probabilities(shape):
    return np_softmax(RNG.standard_normal(shape), -1)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_and_log_softmax(axis):
    x = gc.placeholder((3, 4), "float64")
    data = RNG.standard_normal((3, 4)) * 3
    soft, log_soft = gc.softmax(x, axis), gc.log_softmax(x, axis)
    assert soft.shape == log_soft.shape == (3, 4)
    result, log_result = evaluate([soft, log_soft], {x: data})
    assert_close(result, np_softmax(data, axis), rtol=1e-12)
    assert_close(log_result, np.log(np_softmax(data, axis)), rtol=1e-12, atol=1e-15)
    check_grad(lambda t: gc.softmax(t, axis), [(3, 4)])
    check_grad(lambda t: gc.log_softmax(t, axis), [(3, 4)])


def test_softmax_is_stable_for_large_logits():
    x = gc.placeholder((2,), "float64")
    result, log_result = evaluate([gc.softmax(x), gc.log_softmax(x)], {x: np.array([1000.0, 0.0])})
    assert_close(result, np.array([1.0, 0.0]))
    assert_close(log_result, np.array([0.0, -1000.0]))


def test_softmax_needs_floats():
    with pytest.raises(gc.GraphError, match="softmax: needs a float operand, got int32"):
        gc.softmax(gc.placeholder((3,), "int32"))


def test_one_hot():
    labels = gc.placeholder(("batch",), "int32")
    encoded = gc.one_hot(labels, 4)
    assert (encoded.shape, encoded.dtype) == ((dim_symbol("batch"), 4), "float32")
    data = np.array([0, 3, 1, 7], np.int32)  # 7 is out of range: an all-zero row
    expected = np.zeros((4, 4), np.float32)
    expected[[0, 1, 2], [0, 3, 1]] = 1
    np.testing.assert_array_equal(evaluate(encoded, {labels: data}), expected)
    assert gc.one_hot(labels, 3, "float64").dtype == "float64"


def test_one_hot_needs_integer_indices():
    with pytest.raises(gc.GraphError, match="one_hot: indices must be integers, got float32"):
        gc.one_hot(gc.placeholder((3,), "float32"), 4)


def np_categorical_crossentropy(y_true, p):
    p = np.clip(p / p.sum(-1, keepdims=True), EPSILON, 1 - EPSILON)
    return -(y_true * np.log(p)).sum(-1)


def test_categorical_crossentropy_on_probabilities():
    y_true, y_pred = gc.placeholder(("batch", 5), "float64"), gc.placeholder(("batch", 5), "float64")
    loss = gc.categorical_crossentropy(y_true, y_pred)
    assert loss.shape == (dim_symbol("batch"),)
    targets, predicted = probabilities((3, 5)), probabilities((3, 5))
    assert_close(evaluate(loss, {y_true: targets, y_pred: predicted}),
                 np_categorical_crossentropy(targets, predicted), rtol=1e-12)
    check_grad(lambda p: gc.categorical_crossentropy(gc.constant(targets), p), None, arrays=[predicted])


def test_categorical_crossentropy_clips_like_keras():
    y_true, y_pred = gc.placeholder((2, 3), "float64"), gc.placeholder((2, 3), "float64")
    loss = gc.categorical_crossentropy(y_true, y_pred)
    targets = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    # A zero probability on the true class costs -log(1e-7), not inf; rows are rescaled to sum to 1.
    predicted = np.array([[1.0, 0.0, 0.0], [2.0, 1.0, 1.0]])
    result = evaluate(loss, {y_true: targets, y_pred: predicted})
    assert_close(result, np.array([-np.log(EPSILON), -np.log(0.5)]), rtol=1e-12)


def test_categorical_crossentropy_from_logits():
    y_true, logits = gc.placeholder((3, 5), "float64"), gc.placeholder((3, 5), "float64")
    targets, data = probabilities((3, 5)), RNG.standard_normal((3, 5)) * 4
    expected = -(targets * np.log(np_softmax(data, -1))).sum(-1)
    result = evaluate(gc.categorical_crossentropy(y_true, logits, from_logits=True), {y_true: targets, logits: data})
    assert_close(result, expected, rtol=1e-12)
    check_grad(lambda t, z: gc.categorical_crossentropy(t, z, from_logits=True), None, arrays=[targets, data])


@pytest.mark.parametrize("from_logits", [False, True])
def test_sparse_categorical_crossentropy_equals_the_one_hot_loss(from_logits):
    labels, y_pred = gc.placeholder(("batch",), "int32"), gc.placeholder(("batch", 4), "float64")
    sparse = gc.sparse_categorical_crossentropy(labels, y_pred, from_logits=from_logits)
    assert sparse.shape == (dim_symbol("batch"),)
    classes = np.array([2, 0, 3], np.int32)
    predicted = RNG.standard_normal((3, 4)) if from_logits else probabilities((3, 4))
    scores = np.log(np_softmax(predicted, -1)) if from_logits else np.log(np.clip(predicted, EPSILON, 1 - EPSILON))
    expected = -scores[np.arange(3), classes]
    assert_close(evaluate(sparse, {labels: classes, y_pred: predicted}), expected, rtol=1e-12)
    check_grad(lambda p: gc.sparse_categorical_crossentropy(gc.constant(classes), p, from_logits=from_logits),
               None, arrays=[predicted])


def test_binary_crossentropy_on_probabilities_with_keras_clipping():
    y_true, y_pred = gc.placeholder((2, 3), "float64"), gc.placeholder((2, 3), "float64")
    targets = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.5]])
    predicted = np.array([[0.9, 0.2, 0.0], [1.0, 0.6, 0.5]])  # 0 and 1 are clipped to [1e-7, 1 - 1e-7]
    p = np.clip(predicted, EPSILON, 1 - EPSILON)
    expected = -(targets * np.log(p) + (1 - targets) * np.log(1 - p)).mean(-1)
    loss = gc.binary_crossentropy(y_true, y_pred)
    assert loss.shape == (2,)
    assert_close(evaluate(loss, {y_true: targets, y_pred: predicted}), expected, rtol=1e-9)
    interior = RNG.uniform(0.1, 0.9, (2, 3))
    check_grad(lambda q: gc.binary_crossentropy(gc.constant(targets), q), None, arrays=[interior])


def test_binary_crossentropy_from_logits():
    y_true, logits = gc.placeholder((2, 3), "float64"), gc.placeholder((2, 3), "float64")
    targets = RNG.uniform(0, 1, (2, 3))
    data = np.array([[-30.0, 0.5, 2.0], [40.0, -1.5, 0.3]])  # large logits: the stable form stays finite
    log_sigmoid = -np.logaddexp(0, -data)  # log(1 / (1 + exp(-x))), and log(1 - sigmoid(x)) = log_sigmoid(-x)
    log_one_minus = -np.logaddexp(0, data)
    expected = -(targets * log_sigmoid + (1 - targets) * log_one_minus).mean(-1)
    result = evaluate(gc.binary_crossentropy(y_true, logits, from_logits=True), {y_true: targets, logits: data})
    assert_close(result, expected, rtol=1e-9)
    check_grad(lambda t, z: gc.binary_crossentropy(t, z, from_logits=True), [(2, 3), (2, 3)])


def test_mean_squared_error():
    y_true, y_pred = gc.placeholder(("batch", 3), "float64"), gc.placeholder(("batch", 3), "float64")
    loss = gc.mean_squared_error(y_true, y_pred)
    assert loss.shape == (dim_symbol("batch"),)
    a, b = RNG.standard_normal((4, 3)), RNG.standard_normal((4, 3))
    assert_close(evaluate(loss, {y_true: a, y_pred: b}), ((a - b) ** 2).mean(-1), rtol=1e-12)
    check_grad(gc.mean_squared_error, [(4, 3), (4, 3)])


@pytest.mark.parametrize("loss", [gc.categorical_crossentropy, gc.binary_crossentropy, gc.mean_squared_error])
def test_losses_reject_mismatched_shapes(loss):
    with pytest.raises(gc.GraphError, match=r"y_true shape \(3, 4\) does not match y_pred shape \(3, 5\)"):
        loss(gc.placeholder((3, 4)), gc.placeholder((3, 5)))
