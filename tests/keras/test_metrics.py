"""Metrics against numpy forms of Keras 3's formulas, and which accuracy 'accuracy' means for each loss."""
import numpy as np
import pytest

import graphc as gc
from graphc.keras import losses, metrics
from graphc.testing import assert_close

rng = np.random.default_rng(3)


def run(metric, y_true, y_pred, backend="reference"):
    t = gc.placeholder((None, *y_true.shape[1:]), dtype=str(y_true.dtype))
    p = gc.placeholder((None, *y_pred.shape[1:]))
    return gc.function([t, p], metric(t, p), backend=backend)(y_true, y_pred)


@pytest.mark.parametrize("shape", [(1, 3), (7, 129), (4, 5, 7)])
def test_categorical_and_sparse_accuracy(shape):
    labels = rng.integers(0, shape[-1], shape[:-1])
    scores = rng.standard_normal(shape).astype(np.float32)
    expected = (scores.argmax(-1) == labels).astype(np.float32)
    assert_close(run(metrics.categorical_accuracy, np.eye(shape[-1], dtype=np.float32)[labels], scores), expected)
    assert_close(run(metrics.sparse_categorical_accuracy, labels, scores), expected)
    assert_close(run(metrics.sparse_categorical_accuracy, labels[..., None], scores), expected)  # trailing 1


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (5, 129)])
def test_binary_accuracy_at_its_threshold(shape):
    y = rng.integers(0, 2, shape).astype(np.float32)
    p = rng.uniform(0, 1, shape).astype(np.float32)
    p.flat[0] = 0.5  # not above the threshold: predicts 0
    assert_close(run(metrics.binary_accuracy, y, p), (y == (p > 0.5)).mean(-1), rtol=1e-6)
    assert_close(run(lambda t, q: metrics.binary_accuracy(t, q, threshold=0.8), y, p), (y == (p > 0.8)).mean(-1),
                 rtol=1e-6)
    if shape[-1] == 1:  # (n,) targets for one output unit
        assert_close(run(metrics.binary_accuracy, y[:, 0], p, backend="llvm"), (y == (p > 0.5)).mean(-1))


@pytest.mark.parametrize("name, reference", [
    ("mae", lambda y, p: np.abs(y - p).mean(-1)), ("mean_absolute_error", lambda y, p: np.abs(y - p).mean(-1)),
    ("mse", lambda y, p: ((y - p) ** 2).mean(-1)), ("mean_squared_error", lambda y, p: ((y - p) ** 2).mean(-1)),
])
def test_regression_metrics(name, reference):
    y = rng.standard_normal((7, 3)).astype(np.float32)
    p = rng.standard_normal((7, 3)).astype(np.float32)
    got_name, metric = metrics.get(name, "mse", 3)
    assert got_name == name
    assert_close(run(metric, y, p), reference(y.astype(np.float64), p.astype(np.float64)), rtol=1e-5)


@pytest.mark.parametrize("loss, units, expected", [
    ("categorical_crossentropy", 10, "categorical_accuracy"),
    (losses.CategoricalCrossentropy(from_logits=True), 10, "categorical_accuracy"),
    ("sparse_categorical_crossentropy", 10, "sparse_categorical_accuracy"),
    (losses.sparse_categorical_crossentropy, 10, "sparse_categorical_accuracy"),
    (losses.SparseCategoricalCrossentropy(from_logits=True), 10, "sparse_categorical_accuracy"),
    ("binary_crossentropy", 1, "binary_accuracy"),
    # Keras 3 chooses from shapes alone: 0.5 is the threshold for logits too, and several sigmoid outputs
    # trained with binary crossentropy get categorical accuracy.
    (losses.BinaryCrossentropy(from_logits=True), 1, "binary_accuracy"),
    ("binary_crossentropy", 3, "categorical_accuracy"),
    ("mse", 1, "binary_accuracy"),
    ("mse", 4, "categorical_accuracy"),
    (None, 4, "categorical_accuracy"),
])
def test_accuracy_follows_keras_3(loss, units, expected):
    for identifier in ("accuracy", "acc", "Accuracy"):
        name, metric = metrics.get(identifier, loss, units)
        assert (name, metric) == (identifier, getattr(metrics, expected))


def test_functions_and_loss_names_as_metrics():
    def custom(y_true, y_pred):
        return gc.sum(y_pred, -1)
    assert metrics.get(custom, "mse", 2) == ("custom", custom)
    assert metrics.get("binary_crossentropy", "mse", 2) == ("binary_crossentropy", losses.binary_crossentropy)
    assert metrics.get("sparse_categorical_accuracy", "mse", 2)[1] is metrics.sparse_categorical_accuracy


def test_unknown_metric_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown metric 'auc'; known metrics: accuracy, acc, categorical_accuracy, "
                                         "sparse_categorical_accuracy, binary_accuracy, .*mean_absolute_error.*mae"):
        metrics.get("auc", "mse", 1)
