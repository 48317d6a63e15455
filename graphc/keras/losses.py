"""Losses as Keras 3 defines them, as functions (``categorical_crossentropy``) and as objects
(``SparseCategoricalCrossentropy(from_logits=True)``).

Either is called ``loss(y_true, y_pred)`` on graph tensors and gives one value per sample; the model weights
and averages them. (Keras' loss objects reduce to one number when called; graphc's leave that to the model, as
Keras' loss functions do, but give Keras' number when called on arrays.) Cross-entropies from logits use the
stable forms of graphc's ops (log_softmax, softplus), so logits of +-100 give finite losses and gradients.
"""
import inspect

import numpy as np

import graphc as gc

from ._registry import from_config, lookup


def _same_rank(name, y_true, y_pred):
    """``y_true`` as ``y_pred``'s dtype, with ranks made equal as Keras does when they differ by one and the
    longer ends in an axis of length 1; ValueError for other ranks."""
    y_true = gc.cast(y_true, y_pred.dtype)
    if y_true.ndim == y_pred.ndim + 1 and y_true.shape[-1] == 1:
        y_true, y_pred = _drop_or_add_unit_axis(y_true, y_pred)
    elif y_pred.ndim == y_true.ndim + 1 and y_pred.shape[-1] == 1:
        y_pred, y_true = _drop_or_add_unit_axis(y_pred, y_true)
    if y_true.ndim != y_pred.ndim:
        raise ValueError(f"{name}: y_true of shape {tuple(y_true.shape)} does not fit y_pred of shape "
                         f"{tuple(y_pred.shape)}")
    return y_true, y_pred


def _drop_or_add_unit_axis(longer, shorter):
    """A vector gains the trailing axis of length 1; otherwise the longer tensor loses it."""
    return (longer, gc.expand_dims(shorter, -1)) if shorter.ndim == 1 else (gc.squeeze(longer, -1), shorter)


def _check_label_smoothing(label_smoothing):
    if not 0 <= label_smoothing <= 1:
        raise ValueError(f"label_smoothing must be between 0 and 1, got {label_smoothing}")
    return float(label_smoothing)


def _check_ignore_class(ignore_class):
    if ignore_class is not None:
        raise ValueError(f"ignore_class={ignore_class!r} is not supported by graphc (only None)")


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """-sum(y_true * log(p)) along ``axis``: ``y_pred`` is probabilities (rescaled to sum 1, clipped to
    [1e-7, 1 - 1e-7]) or logits. ``label_smoothing`` s uses y_true * (1 - s) + s / classes instead of y_true."""
    if _check_label_smoothing(label_smoothing):
        classes = y_pred.shape[axis]
        y_true = gc.cast(y_true, y_pred.dtype) * (1.0 - label_smoothing) + label_smoothing / classes
    return gc.categorical_crossentropy(y_true, y_pred, from_logits=from_logits, axis=axis)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None, axis=-1):
    """categorical_crossentropy with integer class labels (shape y_pred.shape[:-1], or with a trailing 1)."""
    _check_ignore_class(ignore_class)
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = gc.squeeze(y_true, -1)
    return gc.sparse_categorical_crossentropy(y_true, y_pred, from_logits=from_logits, axis=axis)


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Mean over the last axis of -(y log p + (1 - y) log(1 - p)), p clipped to [1e-7, 1 - 1e-7]; from logits
    x: softplus(x) - x y. ``label_smoothing`` s uses y (1 - s) + s / 2 instead of y."""
    y_true, y_pred = _same_rank("binary_crossentropy", y_true, y_pred)
    if axis not in (-1, y_pred.ndim - 1):
        raise ValueError(f"binary_crossentropy: only the last axis is supported, got axis={axis}")
    if _check_label_smoothing(label_smoothing):
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    return gc.binary_crossentropy(y_true, y_pred, from_logits=from_logits)


def mean_squared_error(y_true, y_pred):
    """Mean over the last axis of (y_true - y_pred)^2."""
    return gc.mean_squared_error(*_same_rank("mean_squared_error", y_true, y_pred))


def mean_absolute_error(y_true, y_pred):
    """Mean over the last axis of |y_true - y_pred|."""
    y_true, y_pred = _same_rank("mean_absolute_error", y_true, y_pred)
    return gc.mean(gc.abs(y_true - y_pred), -1)


def hinge(y_true, y_pred):
    """Mean over the last axis of max(1 - y_true * y_pred, 0). Labels are -1 or 1; when every label in the
    batch is 0 or 1 they are mapped to -1 and 1 first (Keras' rule)."""
    y_true, y_pred = _same_rank("hinge", y_true, y_pred)
    binary = gc.min(gc.maximum(gc.cast(gc.equal(y_true, 0.0), y_pred.dtype),
                               gc.cast(gc.equal(y_true, 1.0), y_pred.dtype)))
    y_true = gc.where(binary, 2.0 * y_true - 1.0, y_true)
    return gc.mean(gc.maximum(1.0 - y_true * y_pred, 0.0), -1)


def huber(y_true, y_pred, delta=1.0):
    """Mean over the last axis of e^2 / 2 where |e| <= delta, else delta |e| - delta^2 / 2 (e = y_pred - y_true)."""
    y_true, y_pred = _same_rank("huber", y_true, y_pred)
    error = y_pred - y_true
    size = gc.abs(error)
    return gc.mean(gc.where(gc.less_equal(size, delta), 0.5 * gc.square(error), delta * size - 0.5 * delta**2), -1)


class Loss:
    """Keras' loss base class: a subclass writes ``call(y_true, y_pred)`` (one value per sample) and, for
    saving, ``get_config``. The model averages over the batch, which is Keras' default reduction
    'sum_over_batch_size', the only one graphc has."""

    def __init__(self, name=None, reduction="sum_over_batch_size"):
        if reduction != "sum_over_batch_size":
            raise ValueError(f"{type(self).__name__}: reduction={reduction!r} is not supported; graphc's models "
                             f"average the per-sample losses over the batch ('sum_over_batch_size')")
        self.name = name or type(self).__name__
        self.reduction = reduction

    def __call__(self, y_true, y_pred, sample_weight=None):
        """Per-sample values (times ``sample_weight``) for graph tensors (what the model uses); for arrays, Keras'
        eager result: the sum of the (weighted) per-sample values over the batch size, computed at once by the
        reference backend."""
        if any(isinstance(v, gc.Node) for v in (y_true, y_pred, sample_weight)):
            values = self.call(y_true, y_pred)
            return values if sample_weight is None else values * sample_weight
        y_true, y_pred = np.asarray(y_true), np.asarray(y_pred, dtype=np.float32)
        y_true = y_true.astype(np.int64 if y_true.dtype.kind in "biu" else np.float32)
        t, p = gc.placeholder(y_true.shape, str(y_true.dtype)), gc.placeholder(y_pred.shape)
        values = self.call(t, p)
        weights = np.ones(values.shape, np.float32) if sample_weight is None else np.broadcast_to(
            np.asarray(sample_weight, np.float32), values.shape)
        w = gc.placeholder(weights.shape)
        return gc.function([t, p, w], gc.mean(values * w), backend="reference")(y_true, y_pred, weights)

    def call(self, y_true, y_pred):
        raise NotImplementedError(f"{type(self).__name__} must define call(y_true, y_pred)")

    def get_config(self) -> dict:
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


class _FunctionLoss(Loss):
    """A loss object calling one of the loss functions above with its settings (Keras' LossFunctionWrapper)."""

    def __init__(self, function, name, reduction, **settings):
        super().__init__(name, reduction)
        self._function, self._settings = function, settings
        for key, value in settings.items():
            setattr(self, key, value)

    def call(self, y_true, y_pred):
        return self._function(y_true, y_pred, **self._settings)

    def get_config(self):
        return {**super().get_config(), **self._settings}


class CategoricalCrossentropy(_FunctionLoss):
    """categorical_crossentropy with its settings."""

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                 name="categorical_crossentropy"):
        super().__init__(categorical_crossentropy, name, reduction, from_logits=bool(from_logits),
                         label_smoothing=_check_label_smoothing(label_smoothing), axis=axis)


class SparseCategoricalCrossentropy(_FunctionLoss):
    """sparse_categorical_crossentropy with its settings (integer labels)."""

    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size",
                 name="sparse_categorical_crossentropy"):
        _check_ignore_class(ignore_class)
        super().__init__(sparse_categorical_crossentropy, name, reduction, from_logits=bool(from_logits),
                         ignore_class=None)


class BinaryCrossentropy(_FunctionLoss):
    """binary_crossentropy with its settings."""

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                 name="binary_crossentropy"):
        super().__init__(binary_crossentropy, name, reduction, from_logits=bool(from_logits),
                         label_smoothing=_check_label_smoothing(label_smoothing), axis=axis)


class MeanSquaredError(_FunctionLoss):
    """mean_squared_error."""

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error"):
        super().__init__(mean_squared_error, name, reduction)


class MeanAbsoluteError(_FunctionLoss):
    """mean_absolute_error."""

    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_error"):
        super().__init__(mean_absolute_error, name, reduction)


class Hinge(_FunctionLoss):
    """hinge."""

    def __init__(self, reduction="sum_over_batch_size", name="hinge"):
        super().__init__(hinge, name, reduction)


class Huber(_FunctionLoss):
    """huber with its ``delta`` (Keras names it 'huber_loss')."""

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name="huber_loss"):
        if not delta > 0:
            raise ValueError(f"Huber: delta must be positive, got {delta}")
        super().__init__(huber, name, reduction, delta=float(delta))


LOSSES = {f.__name__: f for f in (categorical_crossentropy, sparse_categorical_crossentropy, binary_crossentropy,
                                  mean_squared_error, mean_absolute_error, hinge, huber)}
CLASSES = {cls.__name__: cls for cls in (CategoricalCrossentropy, SparseCategoricalCrossentropy, BinaryCrossentropy,
                                         MeanSquaredError, MeanAbsoluteError, Hinge, Huber)}
ALIASES = {"mse": "mean_squared_error", "MSE": "mean_squared_error", "mae": "mean_absolute_error",
           "MAE": "mean_absolute_error", "bce": "binary_crossentropy", "BCE": "binary_crossentropy"}
_BUILT_IN = frozenset([*LOSSES, *CLASSES, *ALIASES])


def get(identifier):
    """The loss for a function or class name (or an alias such as 'mse'; a class gets its default settings),
    a loss object or function (returned as is), or a ``serialize`` dict; None for None."""
    if identifier is None:
        return None
    if isinstance(identifier, dict):
        return deserialize(identifier)
    loss = lookup({**LOSSES, **CLASSES}, identifier, "loss", ALIASES)
    return loss() if inspect.isclass(loss) and issubclass(loss, Loss) else loss


def target_kind(loss) -> str:
    """'sparse' when ``loss`` takes integer class labels of shape output_shape[:-1] (sparse categorical
    crossentropy as function, name or object), else 'dense' (targets shaped like the output)."""
    loss = get(loss)
    sparse = loss is sparse_categorical_crossentropy or isinstance(loss, SparseCategoricalCrossentropy)
    return "sparse" if sparse else "dense"


def register(loss, name=None):
    """Add a custom loss -- a function ``f(y_true, y_pred)`` or a ``Loss`` subclass -- under ``name`` (default
    its ``__name__``), so that a model compiled with it can be saved and loaded. Returns ``loss``."""
    name = name or getattr(loss, "__name__", None)
    is_class = inspect.isclass(loss)
    if is_class and not issubclass(loss, Loss) or not callable(loss):
        raise TypeError(f"register: expected a function f(y_true, y_pred) or a Loss subclass, got {loss!r}")
    if not isinstance(name, str) or not name:
        raise ValueError(f"register: {loss!r} has no name; pass name=...")
    if name in _BUILT_IN:
        raise ValueError(f"register: {name!r} is the name of a built-in loss; choose another name")
    (CLASSES if is_class else LOSSES)[name] = loss
    return loss


def serialize(loss):
    """A loss function's name, or ``{'class_name': ..., 'config': {...}}`` for a loss object; ValueError for a
    custom loss that was not registered."""
    if isinstance(loss, Loss):
        name = next((n for n, cls in CLASSES.items() if cls is type(loss)), None)
        if name is not None:
            return {"class_name": name, "config": loss.get_config()}
    else:
        name = next((n for n, function in LOSSES.items() if function is loss), None)
        if name is not None:
            return name
    raise ValueError(f"cannot save the custom loss {loss!r}: register it first with "
                     f"@graphc.keras.saving.register_keras_serializable() or graphc.keras.losses.register(...)")


def deserialize(config):
    """The loss a ``serialize`` result (a name or a class_name/config dict) stands for."""
    if isinstance(config, str):
        return get(config)
    return from_config(CLASSES, config, "loss")
