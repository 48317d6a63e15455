"""Metrics: ``metric(y_true, y_pred)`` gives one value per sample (a graph tensor); the model reports their
mean over the batch, computed inside the training graph. Keras' loss functions are metrics too."""
import graphc as gc

from . import losses
from ._registry import lookup


def categorical_accuracy(y_true, y_pred):
    """1 where the largest entry of y_pred is where y_true (one-hot) has its largest, else 0."""
    return gc.cast(gc.equal(gc.argmax(y_true, -1), gc.argmax(y_pred, -1)), "float32")


def sparse_categorical_accuracy(y_true, y_pred):
    """1 where the integer label y_true (shape y_pred.shape[:-1], or with a trailing 1) is y_pred's argmax."""
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = gc.squeeze(y_true, -1)
    return gc.cast(gc.equal(gc.cast(y_true, "int64"), gc.argmax(y_pred, -1)), "float32")


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """Mean over the last axis of 1 where (y_pred > threshold) equals y_true, else 0."""
    y_true, y_pred = losses._same_rank("binary_accuracy", y_true, y_pred)
    predicted = gc.cast(gc.greater(y_pred, threshold), y_pred.dtype)
    return gc.mean(gc.cast(gc.equal(y_true, predicted), "float32"), -1)


METRICS = {**{f.__name__: f for f in (categorical_accuracy, sparse_categorical_accuracy, binary_accuracy)},
           **losses.LOSSES}


def accuracy_for(sparse, output_units):
    """The accuracy that 'accuracy' means, chosen as Keras 3 does from the shapes of targets and outputs:
    binary for one output unit (threshold 0.5, also for logits, as Keras), sparse categorical for integer
    labels (``sparse``: targets of one axis less than the outputs), else categorical."""
    if output_units == 1:
        return binary_accuracy
    return sparse_categorical_accuracy if sparse else categorical_accuracy


def get(identifier, loss, output_units, sparse=None):
    """``(name, metric)`` for a metric name (or alias 'mse', 'mae') or function; 'accuracy' / 'acc' (any case)
    pick the variant that fits the targets -- integer labels when ``sparse``, by default when ``loss`` takes
    them -- and the number of output units."""
    if isinstance(identifier, str) and identifier.lower() in ("accuracy", "acc"):
        sparse = losses.target_kind(loss) == "sparse" if sparse is None else sparse
        return identifier, accuracy_for(sparse, output_units)
    try:
        metric = lookup(METRICS, identifier, "metric", losses.ALIASES)
    except ValueError:
        raise ValueError(f"unknown metric {identifier!r}; known metrics: accuracy, acc, {', '.join(METRICS)}, "
                         f"{', '.join(losses.ALIASES)} (or a function)") from None
    return identifier if isinstance(identifier, str) else getattr(metric, "__name__", "metric"), metric
