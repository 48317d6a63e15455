"""Keras-compatible utilities."""

import numpy as np


def to_categorical(y, num_classes=None, dtype="float32"):
    """One-hot encode integer class labels, as ``keras.utils.to_categorical``.

    The result has shape ``y.shape + (num_classes,)``, except that a trailing
    axis of size 1 is dropped first (labels shaped (N, 1) give (N, C)).
    ``num_classes`` defaults to ``max(y) + 1``. Unlike Keras, labels outside
    ``0 .. num_classes-1`` and non-integral values raise ValueError instead of
    wrapping around (negative) or being truncated (floats).
    """
    labels = np.asarray(y)
    if labels.dtype.kind == "f":
        if not np.array_equal(labels, np.round(labels)):
            raise ValueError("to_categorical needs integer class labels; got non-integral floats")
    elif labels.dtype.kind not in "iub":
        raise ValueError(f"to_categorical needs integer class labels; got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    shape = labels.shape
    if len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    labels = labels.reshape(-1)
    if not num_classes:
        if labels.size == 0:
            raise ValueError("cannot infer num_classes from empty labels; pass num_classes")
        num_classes = int(labels.max()) + 1
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be in 0..{num_classes - 1}, got values from {labels.min()} to {labels.max()}")
    categorical = np.zeros((labels.size, num_classes), dtype=dtype)
    categorical[np.arange(labels.size), labels] = 1
    return categorical.reshape(shape + (num_classes,))


def set_random_seed(seed):
    """Seed graphc.keras's generator (weight initialisation, dropout seeds, fit's shuffling), graphc's random
    ops (``gc.set_random_seed``: their default seeds and step counter) and, as Keras does, numpy's global
    generator and Python's ``random``, so that a training run is reproducible."""
    import random

    import graphc as gc

    from . import _state
    _state.seed_generator(seed)
    gc.set_random_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def clear_session():
    """Restart layer and model auto-naming, as ``keras.utils.clear_session``: the next Dense is 'dense'."""
    from . import _state
    _state.reset_names()
