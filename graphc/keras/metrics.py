"""Metrics: ``metric(y_true, y_pred)`` gives one value per sample (a graph tensor); the model reports their
mean over the batch, computed inside the training graph."""
import graphc as gc

from . import losses


def categorical_accuracy(y_true, y_pred):
    return gc.cast(gc.equal(gc.argmax(y_true, -1), gc.argmax(y_pred, -1)), "float32")


def sparse_categorical_accuracy(y_true, y_pred):
    return gc.cast(gc.equal(gc.cast(y_true, "int64"), gc.argmax(y_pred, -1)), "float32")


def binary_accuracy(y_true, y_pred, threshold=0.5):
    predicted = gc.cast(gc.greater(y_pred, threshold), y_pred.dtype)
    return gc.mean(gc.cast(gc.equal(gc.cast(y_true, y_pred.dtype), predicted), "float32"), -1)


METRICS = {f.__name__: f for f in (categorical_accuracy, sparse_categorical_accuracy, binary_accuracy)}
# 'accuracy' means the variant that fits the loss, as in Keras.
ACCURACY_FOR_LOSS = {
    losses.categorical_crossentropy: categorical_accuracy,
    losses.sparse_categorical_crossentropy: sparse_categorical_accuracy,
    losses.binary_crossentropy: binary_accuracy,
}


def get(identifier, loss, output_units):
    """``(name, metric)`` for a metric name or function; 'accuracy' / 'acc' pick the variant that fits
    ``loss`` (for other losses: binary for one output unit, categorical otherwise)."""
    if identifier in ("accuracy", "acc"):
        fallback = binary_accuracy if output_units == 1 else categorical_accuracy
        return identifier, ACCURACY_FOR_LOSS.get(loss, fallback)
    if callable(identifier):
        return getattr(identifier, "__name__", "metric"), identifier
    if identifier in METRICS:
        return identifier, METRICS[identifier]
    raise ValueError(f"unknown metric {identifier!r}; known metrics: accuracy, acc, {', '.join(METRICS)} "
                     f"(or a function)")
