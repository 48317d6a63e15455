"""Reductions over axes: sum, max, min (primitives), mean (a sum times 1/count), argmax."""
import numpy as np
import sympy

from ..graph import dtypes
from ..graph.shapes import size
from .elementwise import apply_named, cast, equal, make
from .expr import arg
from .registry import Op, apply
from .shape import _normalize_axes, broadcast_to, reshape


def _reduce_infer(inputs, attrs):
    (x,) = inputs
    axes, keepdims = attrs["axes"], attrs["keepdims"]
    shape = tuple(1 if a in axes else d for a, d in enumerate(x.shape) if keepdims or a not in axes)
    return shape, x.dtype


def _kept_shape(node):
    """The reduced shape with the reduced axes kept as length 1: what broadcasts back onto the input."""
    x = node.inputs[0]
    return tuple(1 if a in node.attrs["axes"] else d for a, d in enumerate(x.shape))


def _sum_vjp(node, g):
    x = node.inputs[0]
    return [broadcast_to(reshape(g, _kept_shape(node)), x.shape)]


def _extremum_vjp(node, g):
    """The gradient goes to the elements equal to the extremum, shared equally between ties."""
    x = node.inputs[0]
    kept = reshape(node, _kept_shape(node))
    hit = cast(equal(x, kept), x.dtype)
    ties = sum(hit, node.attrs["axes"], keepdims=True)
    share = make("share", arg(0) * arg(1) / arg(2), [reshape(g, _kept_shape(node)), hit, ties], x.dtype)
    return [share]


def _reduction(name, numpy_function, vjp):
    def reference(node, arrays, dims):
        result = numpy_function(arrays[0], axis=node.attrs["axes"], keepdims=node.attrs["keepdims"])
        return result.astype(node.dtype, copy=False)  # numpy sums int32 into int64
    return Op(name, _reduce_infer, reference, vjp, kind="reduce")


sum_op = _reduction("reduce_sum", np.sum, _sum_vjp)
max_op = _reduction("reduce_max", np.max, _extremum_vjp)
min_op = _reduction("reduce_min", np.min, _extremum_vjp)


def _reduce(op, x, axis, keepdims):
    axes = tuple(range(x.ndim)) if axis is None else _normalize_axes(x, axis, op.name)
    if not axes:
        return x
    return apply(op, [x], {"axes": tuple(sorted(axes)), "keepdims": bool(keepdims)})


def sum(x, axis=None, keepdims=False):
    """Sum over ``axis`` (an int, a tuple, or None for all axes)."""
    if x.dtype == "bool":
        x = cast(x, "int64")
    return _reduce(sum_op, x, axis, keepdims)


def max(x, axis=None, keepdims=False):
    """Maximum over ``axis``; its gradient is shared between tied maxima."""
    return _reduce(max_op, x, axis, keepdims)


def min(x, axis=None, keepdims=False):
    """Minimum over ``axis``; its gradient is shared between tied minima."""
    return _reduce(min_op, x, axis, keepdims)


def mean(x, axis=None, keepdims=False):
    """Mean over ``axis``. The count may be symbolic (``batch``): it is part of the elementwise body."""
    axes = tuple(range(x.ndim)) if axis is None else _normalize_axes(x, axis, "mean")
    count = size([x.shape[a] for a in axes])
    total = sum(x, axes, keepdims)
    dtype = total.dtype if dtypes.is_float(total.dtype) else dtypes.DEFAULT_FLOAT
    return apply_named("mean", arg(0) / sympy.sympify(count), [total], dtype=dtype)


def _argmax_infer(inputs, attrs):
    (x,) = inputs
    return tuple(d for a, d in enumerate(x.shape) if a != attrs["axis"]), "int64"


argmax_op = Op("argmax", _argmax_infer,
               lambda node, arrays, dims: np.argmax(arrays[0], axis=node.attrs["axis"]),
               None, kind="reduce")


def argmax(x, axis=-1):
    """Index of the largest element along ``axis`` (the first one on ties, the first NaN if any), as int64.
    Not differentiable.

    ``axis=None`` is numpy's and Theano's: the index into the flattened array (a reshape to one axis, free).
    The default stays -1, Keras's K.argmax, what classifiers' accuracy reads. (TF's tf.argmax(x, axis=None)
    means axis 0, not flattened: write the axis explicitly when porting TF code.)"""
    if axis is None:
        return apply(argmax_op, [reshape(x, (-1,))], {"axis": 0})
    (axis,) = _normalize_axes(x, axis, "argmax")
    return apply(argmax_op, [x], {"axis": axis})
