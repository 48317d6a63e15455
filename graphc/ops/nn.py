"""Neural-network ops: softmax and log-softmax (primitives, computed stably), one_hot, the losses
(compositions of primitives, written as Keras defines them, returning one value per sample), and moments and
batch_normalization (compositions, as TF's)."""
import contextlib

import numpy as np
import sympy

from ..graph import dtypes
from ..graph.node import GraphError, Node, user_location
from ..graph.shapes import broadcast_shapes, format_shape, frozen_dims, shapes_equal, unifying
from .elementwise import cast, clip, log, make, multiply, negative, apply_named
from .expr import Softplus, arg
from .reduce import mean, sum
from .registry import Op, apply
from .shape import _normalize_axes, squeeze

EPSILON = 1e-7  # Keras' backend epsilon: probabilities are clipped to [eps, 1 - eps] before log


def _same_shape(inputs, attrs):
    (x,) = inputs
    if not dtypes.is_float(x.dtype):
        raise ValueError(f"needs a float operand, got {x.dtype}")
    return x.shape, x.dtype


def _softmax_reference(node, arrays, dims):
    x = arrays[0]
    shifted = x - np.max(x, axis=node.attrs["axis"], keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=node.attrs["axis"], keepdims=True)


def _log_softmax_reference(node, arrays, dims):
    x = arrays[0]
    shifted = x - np.max(x, axis=node.attrs["axis"], keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=node.attrs["axis"], keepdims=True))


def _softmax_vjp(node, g):
    """dx = y * (g - sum(g * y)) along the axis, with y = softmax(x)."""
    axis = node.attrs["axis"]
    weighted = sum(multiply(g, node), axis, keepdims=True)
    return [make("dsoftmax", arg(0) * (arg(1) - arg(2)), [node, g, weighted], node.dtype)]


def _log_softmax_vjp(node, g):
    """dx = g - softmax(x) * sum(g) along the axis."""
    axis = node.attrs["axis"]
    total = sum(g, axis, keepdims=True)
    probabilities = softmax(node.inputs[0], axis)
    return [make("dlog_softmax", arg(0) - arg(1) * arg(2), [g, probabilities, total], node.dtype)]


softmax_op = Op("softmax", _same_shape, _softmax_reference, _softmax_vjp, kind="nn")
log_softmax_op = Op("log_softmax", _same_shape, _log_softmax_reference, _log_softmax_vjp, kind="nn")


def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) along ``axis``, computed with the maximum subtracted first."""
    (axis,) = _normalize_axes(x, axis, "softmax")
    return apply(softmax_op, [x], {"axis": axis})


def log_softmax(x, axis=-1):
    """log(softmax(x)) along ``axis``, computed as x - max - log(sum(exp(x - max)))."""
    (axis,) = _normalize_axes(x, axis, "log_softmax")
    return apply(log_softmax_op, [x], {"axis": axis})


def _one_hot_infer(inputs, attrs):
    (indices,) = inputs
    if indices.dtype not in dtypes.INTS:
        raise ValueError(f"indices must be integers, got {indices.dtype}")
    return indices.shape + (attrs["depth"],), attrs["dtype"]


def _one_hot_reference(node, arrays, dims):
    indices = arrays[0]
    return (indices[..., None] == np.arange(node.attrs["depth"])).astype(node.dtype)


# The indices are integers: like a cast from int, no gradient flows back (rather than "not differentiable").
one_hot_op = Op("one_hot", _one_hot_infer, _one_hot_reference, lambda node, g: [None], kind="nn")


def one_hot(indices, depth, dtype="float32"):
    """A new last axis of length ``depth``: 1 at each index, 0 elsewhere (all 0 for an out-of-range index)."""
    return apply(one_hot_op, [indices], {"depth": int(depth), "dtype": dtypes.as_dtype(dtype)})


def _check_pair(label, y_true, y_pred):
    """y_true must broadcast to y_pred's shape. Anonymous dims of the two meet axis by axis only when
    the ranks agree (y_true (None, 10) against y_pred (?0, 10) unifies the batch dims); a y_true of
    another rank must broadcast as it is, so (None,) labels never silently bind to y_pred's 10 classes."""
    try:
        with unifying(), (frozen_dims() if y_true.ndim != y_pred.ndim else contextlib.nullcontext()):
            shape = broadcast_shapes(y_true.shape, y_pred.shape)
            if not shapes_equal(shape, y_pred.shape):
                raise ValueError("")  # y_pred would be broadcast: undo what the broadcast unified
    except ValueError as error:
        shape, reason = None, f": {error}" if str(error) else ""
    else:
        reason = ""
    if shape is None:
        raise GraphError(f"{label}: y_true shape {format_shape(y_true.shape)} does not match y_pred shape "
                         f"{format_shape(y_pred.shape)}{reason} (at {user_location()})")


def categorical_crossentropy(y_true, y_pred, from_logits=False, axis=-1):
    """-sum(y_true * log(p)) along ``axis``, per sample. ``y_pred`` is probabilities (rescaled to sum to 1
    and clipped to [1e-7, 1 - 1e-7], as Keras does) or, with ``from_logits``, logits."""
    _check_pair("categorical_crossentropy", y_true, y_pred)
    y_true = cast(y_true, y_pred.dtype)
    if not from_logits and y_pred.op is softmax_op and y_pred.attrs["axis"] == _normalize_axes(y_pred, axis, "")[0]:
        # Probabilities straight out of a softmax: use its logits, stable and exact (Keras does the same).
        from_logits, y_pred = True, y_pred.inputs[0]
    if from_logits:
        log_p = log_softmax(y_pred, axis)
    else:
        p = apply_named("normalize", arg(0) / arg(1), [y_pred, sum(y_pred, axis, keepdims=True)])
        log_p = log(clip(p, EPSILON, 1 - EPSILON))
    return negative(sum(multiply(y_true, log_p), axis))


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, axis=-1):
    """categorical_crossentropy with integer class labels ``y_true`` instead of one-hot rows."""
    if y_true.dtype not in dtypes.INTS:
        y_true = cast(y_true, "int64")
    if _normalize_axes(y_pred, axis, "sparse_categorical_crossentropy")[0] != y_pred.ndim - 1:
        raise GraphError(f"sparse_categorical_crossentropy: the class axis must be the last one, got axis={axis} "
                         f"for shape {format_shape(y_pred.shape)} (at {user_location()})")
    depth = y_pred.shape[axis]
    if not isinstance(depth, int):
        raise GraphError(f"sparse_categorical_crossentropy: the class axis must have a static size, got {depth} "
                         f"(at {user_location()})")
    return categorical_crossentropy(one_hot(y_true, depth, y_pred.dtype), y_pred, from_logits, axis)


def binary_crossentropy(y_true, y_pred, from_logits=False):
    """Mean over the last axis of -(y log p + (1 - y) log(1 - p)); with ``from_logits`` the stable
    form softplus(x) - x y, whose gradient is sigmoid(x) - y everywhere (also at x = 0)."""
    import sympy
    _check_pair("binary_crossentropy", y_true, y_pred)
    y_true = cast(y_true, y_pred.dtype)
    x, y = arg(0), arg(1)
    if from_logits:
        body = Softplus(x) - x * y
    else:
        p = sympy.Min(sympy.Max(x, EPSILON), 1 - EPSILON)
        body = -(y * sympy.log(p) + (1 - y) * sympy.log(1 - p))
    return mean(apply_named("binary_crossentropy", body, [y_pred, y_true]), -1)


def mean_squared_error(y_true, y_pred):
    """Mean over the last axis of (y_true - y_pred)^2."""
    _check_pair("mean_squared_error", y_true, y_pred)
    return mean(apply_named("squared_error", (arg(0) - arg(1)) ** 2, [y_true, y_pred]), -1)


# ---- batch normalization -----------------------------------------------------------------------
def moments(x, axes, keepdims=False):
    """(mean, variance) of ``x`` over ``axes``, as ``tf.nn.moments``: the biased variance mean((x - mean)^2),
    computed from the centred values (no cancellation, unlike E[x^2] - E[x]^2). Both are differentiable, so
    a batch normalization's gradient flows through its batch statistics."""
    if not dtypes.is_float(x.dtype):
        raise GraphError(f"moments: x must be a float tensor, got {x.dtype} (at {user_location()})")
    axes = _normalize_axes(x, axes, "moments")
    centre = mean(x, axes, keepdims=True)
    variance = mean(apply_named("squared_deviation", (arg(0) - arg(1)) ** 2, [x, centre]), axes, keepdims)
    return (centre if keepdims else squeeze(centre, axes)), variance


def batch_normalization(x, mean, variance, offset, scale, variance_epsilon):
    """(x - mean) / sqrt(variance + variance_epsilon) * scale + offset, as ``tf.nn.batch_normalization``:
    ``mean``, ``variance`` and ``offset``, ``scale`` (each may be None) broadcast onto ``x``'s shape.

    Computed as TF and Keras do, inv = scale / sqrt(variance + eps) and x * inv + (offset - mean * inv): the
    per-channel vectors once, then a multiply-add per element. Training mode passes the batch's ``moments``
    (the gradient flows through them), inference mode the moving averages."""
    if not dtypes.is_float(x.dtype):
        raise GraphError(f"batch_normalization: x must be a float tensor, got {x.dtype} (at {user_location()})")
    if isinstance(variance_epsilon, bool) or not isinstance(variance_epsilon, (int, float)) or variance_epsilon < 0:
        raise GraphError(f"batch_normalization: variance_epsilon must be a number >= 0, got {variance_epsilon!r} "
                         f"(at {user_location()})")
    params = {name: _normalization_parameter(name, value, x)
              for name, value in (("mean", mean), ("variance", variance), ("offset", offset), ("scale", scale))}
    if params["mean"] is None or params["variance"] is None:
        raise GraphError(f"batch_normalization: mean and variance are required, only offset and scale may be None "
                         f"(at {user_location()})")
    one, zero = np.ones((), x.dtype), np.zeros((), x.dtype)
    inv = apply_named("batch_norm_scale", arg(0) / sympy.sqrt(arg(1) + arg(2)),
                      [one if scale is None else params["scale"], params["variance"], float(variance_epsilon)])
    shift = apply_named("batch_norm_shift", arg(0) - arg(1) * arg(2),
                        [zero if offset is None else params["offset"], params["mean"], inv])
    return apply_named("batch_normalization", arg(0) * arg(1) + arg(2), [x, inv, shift])


def _normalization_parameter(name, value, x):
    """``value`` (a tensor, an array or None) as a tensor of ``x``'s dtype that broadcasts onto ``x``'s shape
    without changing it; GraphError naming the argument otherwise."""
    if value is None:
        return None
    from .source import constant
    tensor = value if isinstance(value, Node) else constant(np.asarray(value, x.dtype))
    if tensor.dtype != x.dtype:
        raise GraphError(f"batch_normalization: {name} is {tensor.dtype} but x is {x.dtype} (at {user_location()})")
    try:
        fits = shapes_equal(broadcast_shapes(x.shape, tensor.shape), x.shape)
    except ValueError:
        fits = False
    if not fits:
        raise GraphError(f"batch_normalization: {name} of shape {format_shape(tensor.shape)} does not broadcast onto "
                         f"x of shape {format_shape(x.shape)} (at {user_location()})")
    return tensor
