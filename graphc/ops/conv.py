"""Convolution: one primitive, ``conv``, in XLA's general form, and ``conv2d`` (TF's NHWC/HWIO API) on it.

    out[n, o, f] = sum over taps k and channels c of  xd[n, o*stride + k*rhs_dilation - pad, c] * w[k, c, f]

per spatial axis (o = output row or column, k = filter tap), where ``xd`` is x with ``lhs_dilation - 1``
zeros between its elements and zero outside it. ``padding`` gives (before, after) per axis; a negative
one crops. Its gradients are graph nodes too (JAX's conv_general_dilated rules), so second derivatives work:

* the data gradient is ``conv_transpose(g, w)``, the adjoint of ``conv(., w)``: each output pixel's
  ``g @ w^T`` added back onto the input pixels its taps read (its own gradients: a ``conv`` and a filter
  gradient). A convolution of a dilated input takes it as the convolution of g, dilated by the stride,
  with the flipped filters, channels swapped, at a stride of ``lhs_dilation``;
* the filter gradient is the convolution of x with g as the filter, batch and channels swapped
  (x as (C, H, W, batch), g as (OH, OW, batch, F)): its output is the filter's (KH, KW) window.

The native backend lowers ``conv`` as an implicit GEMM (graphc/lower/conv.py): rows are output pixels,
the contraction runs over (tap, channel) and the columns are the filters; ``conv_transpose`` as g @ w^T with
a scattering epilogue. ``fused_conv`` carries an
elementwise epilogue (bias, activation, a relu mask) that the optimizer moves into the GEMM.
"""
import numpy as np

from ..graph.node import GraphError, Node, user_location
from ..graph.shapes import canonical_dim, describe_dim, evaluate_shape, format_shape, resolve_dim, unify_dims, unifying
from .registry import Op, apply
from .shape import getitem, transpose

_SPATIAL = 2


def _pair(value, label):
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != _SPATIAL or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in pair):
        raise ValueError(f"{label} must be an int or a pair of ints, got {value!r}")
    if any(v < 1 for v in pair):
        raise ValueError(f"{label} must be positive, got {value!r}")
    return tuple(int(v) for v in pair)


def _dilated(dim, dilation):
    """Length of an axis of ``dim`` elements with ``dilation - 1`` zeros between them."""
    return canonical_dim((dim - 1) * dilation + 1)


def output_size(size, taps, stride, dilation, padding, lhs_dilation=1):
    """Output length of one spatial axis: floor((dilated input + pads - dilated filter) / stride) + 1."""
    span = _dilated(size, lhs_dilation) + padding[0] + padding[1] - _dilated(taps, dilation)
    if isinstance(span, int):
        return span // stride + 1
    return canonical_dim(span // stride + 1) if stride > 1 else canonical_dim(span + 1)


def _conv_infer(inputs, attrs):
    x, w = inputs[:2]
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError("needs 4-D input (batch, height, width, channels) and 4-D filters "
                         "(height, width, in_channels, out_channels)")
    if x.dtype != w.dtype or x.dtype not in ("float32", "float64"):
        raise ValueError(f"needs float operands of one dtype, got {x.dtype} and {w.dtype}")
    with unifying():
        if unify_dims(x.shape[3], w.shape[2]) is None:
            hint = ""
            if unify_dims(x.shape[1], w.shape[2]) is not None:
                hint = " (the input looks NCHW: graphc's convolutions take NHWC data, as TF's default)"
            raise ValueError(f"the input has {describe_dim(x.shape[3])} channels (its last axis) but the filters "
                             f"expect {describe_dim(w.shape[2])} (their third axis){hint}")
    spatial = []
    for axis in range(_SPATIAL):
        size = output_size(x.shape[1 + axis], w.shape[axis], attrs["strides"][axis], attrs["rhs_dilation"][axis],
                           attrs["padding"][axis], attrs["lhs_dilation"][axis])
        if isinstance(size, int) and size < 1:
            raise ValueError(f"the filter window ({w.shape[axis]} taps, dilation {attrs['rhs_dilation'][axis]}) is "
                             f"larger than the {'height' if axis == 0 else 'width'} {x.shape[1 + axis]} of the "
                             f"input with padding {attrs['padding'][axis]}")
        spatial.append(size)
    return (resolve_dim(x.shape[0]), *spatial, resolve_dim(w.shape[3])), x.dtype


def _tap_positions(out_size, size, stride, dilation, pad, lhs_dilation, tap):
    """For filter tap ``tap``: the output positions that read a real input element, and which element."""
    position = np.arange(out_size) * stride + tap * dilation - pad  # in the dilated input
    valid = (position >= 0) & (position % lhs_dilation == 0) & (position // lhs_dilation < size)
    return np.nonzero(valid)[0], position[valid] // lhs_dilation


def conv_reference(x, w, strides, padding, lhs_dilation, rhs_dilation, out_hw):
    """The definition, one filter tap at a time: out += (the input rows and columns the tap reads) @ w[tap]."""
    batch, height, width, _ = x.shape
    taps_h, taps_w, _, filters = w.shape
    out = np.zeros((batch, *out_hw, filters), dtype=np.result_type(x, w))
    for kh in range(taps_h):
        rows, source_rows = _tap_positions(out_hw[0], height, strides[0], rhs_dilation[0], padding[0][0],
                                           lhs_dilation[0], kh)
        for kw in range(taps_w):
            cols, source_cols = _tap_positions(out_hw[1], width, strides[1], rhs_dilation[1], padding[1][0],
                                               lhs_dilation[1], kw)
            patch = x[:, source_rows][:, :, source_cols]
            out[np.ix_(np.arange(batch), rows, cols)] += patch @ w[kh, kw]
    return out


def _conv_reference(node, arrays, dims):
    a = node.attrs
    return conv_reference(arrays[0], arrays[1], a["strides"], a["padding"], a["lhs_dilation"], a["rhs_dilation"],
                          evaluate_shape(node.shape[1:3], dims))


def _conv_vjp(node, g):
    x, w = node.inputs
    a = node.attrs
    if a["lhs_dilation"] == (1, 1):
        dx = apply(conv_transpose_op, [g, w], {**_forward_attrs(a), "input_size": tuple(x.shape[1:3])})
    else:
        dx = _data_gradient_as_conv(node, g)
    return [dx, _filter_gradient(x, g, a, w.shape[:2])]


def _data_gradient_as_conv(node, g):
    """g dilated by the stride, convolved with the flipped filters (in and out channels swapped) at a
    stride of the forward's lhs_dilation."""
    x, w = node.inputs
    a, taps = node.attrs, w.shape[:2]
    flipped = transpose(getitem(w, (slice(None, None, -1), slice(None, None, -1))), (0, 1, 3, 2))
    padding = []
    for axis in range(_SPATIAL):
        before = (taps[axis] - 1) * a["rhs_dilation"][axis] - a["padding"][axis][0]
        reach = (x.shape[1 + axis] - 1) * a["lhs_dilation"][axis] + (taps[axis] - 1) * a["rhs_dilation"][axis] + 1
        after = canonical_dim(reach - _dilated(node.shape[1 + axis], a["strides"][axis]) - before)
        padding.append((before, after))
    return conv_general(g, flipped, strides=a["lhs_dilation"], padding=padding, lhs_dilation=a["strides"],
                        rhs_dilation=a["rhs_dilation"])


def _filter_gradient(x, g, a, taps):
    """dw of conv(x, w) with attrs ``a`` for the output gradient g: batch and channels swapped, g is the
    filter and the forward's stride its dilation; the (KH, KW) window comes out, then HWIO."""
    padding = []
    for axis in range(_SPATIAL):
        before = a["padding"][axis][0]
        reach = (taps[axis] - 1) * a["rhs_dilation"][axis] + _dilated(g.shape[1 + axis], a["strides"][axis])
        after = canonical_dim(reach - _dilated(x.shape[1 + axis], a["lhs_dilation"][axis]) - before)
        padding.append((before, after))
    dw = conv_general(transpose(x, (3, 1, 2, 0)), transpose(g, (1, 2, 0, 3)), strides=a["rhs_dilation"],
                      padding=padding, lhs_dilation=a["lhs_dilation"], rhs_dilation=a["strides"])
    return transpose(dw, (1, 2, 0, 3))


def _forward_attrs(a):
    return {"strides": a["strides"], "padding": a["padding"], "rhs_dilation": a["rhs_dilation"]}


conv_op = Op("conv", _conv_infer, _conv_reference, _conv_vjp, kind="conv")


def conv_general(x, w, strides=(1, 1), padding=((0, 0), (0, 0)), lhs_dilation=(1, 1), rhs_dilation=(1, 1)):
    """The primitive: a convolution with explicit (before, after) padding per axis (negative crops) and
    input (lhs) and filter (rhs) dilations, as XLA's ConvGeneralDilated with NHWC/HWIO layouts."""
    attrs = {"strides": tuple(strides), "padding": tuple(tuple(p) for p in padding),
             "lhs_dilation": tuple(lhs_dilation), "rhs_dilation": tuple(rhs_dilation)}
    return apply(conv_op, [x, w], attrs)


# ---- the data gradient of a convolution: its transpose --------------------------------------------
def _transpose_infer(inputs, attrs):
    g, w = inputs
    if g.ndim != 4 or w.ndim != 4 or g.dtype != w.dtype:
        raise ValueError("needs a 4-D output gradient and 4-D filters of one dtype")
    with unifying():
        if unify_dims(g.shape[3], w.shape[3]) is None:
            raise ValueError(f"the gradient has {describe_dim(g.shape[3])} channels, the filters "
                             f"{describe_dim(w.shape[3])} outputs")
    return (resolve_dim(g.shape[0]), *attrs["input_size"], resolve_dim(w.shape[2])), g.dtype


def conv_transpose_reference(g, w, strides, padding, rhs_dilation, input_size):
    """dx of a convolution with lhs_dilation 1: each tap adds g @ w[tap]^T back onto the input pixels it read."""
    batch, out_h, out_w, _ = g.shape
    taps_h, taps_w, channels, _ = w.shape
    dx = np.zeros((batch, *input_size, channels), dtype=np.result_type(g, w))
    for kh in range(taps_h):
        rows, source_rows = _tap_positions(out_h, input_size[0], strides[0], rhs_dilation[0], padding[0][0], 1, kh)
        for kw in range(taps_w):
            cols, source_cols = _tap_positions(out_w, input_size[1], strides[1], rhs_dilation[1], padding[1][0], 1,
                                               kw)
            dx[np.ix_(np.arange(batch), source_rows, source_cols)] += g[:, rows][:, :, cols] @ w[kh, kw].T
    return dx


def _transpose_reference(node, arrays, dims):
    a = node.attrs
    return conv_transpose_reference(arrays[0], arrays[1], a["strides"], a["padding"], a["rhs_dilation"],
                                    evaluate_shape(a["input_size"], dims))


def _transpose_vjp(node, u):
    """conv_transpose is linear in g (the adjoint of conv(., w)) and in w (a filter gradient with u as the
    input)."""
    g, w = node.inputs
    a = node.attrs
    dg = conv_general(u, w, a["strides"], a["padding"], (1, 1), a["rhs_dilation"])
    return [dg, _filter_gradient(u, g, {**a, "lhs_dilation": (1, 1)}, w.shape[:2])]


# The native backend scatters each row of g @ w^T onto the input pixels it came from (graphc/lower/conv.py):
# no padded borders are multiplied, as the convolution with flipped filters would.
conv_transpose_op = Op("conv_transpose", _transpose_infer, _transpose_reference, _transpose_vjp,
                       kind="conv_transpose")


# ---- conv with a fused epilogue (built by the optimizer, never by users) --------------------
def _fused_infer(inputs, attrs):
    shape, dtype = _conv_infer(inputs[:2], attrs)
    for extra in inputs[2:]:
        if extra.shape != shape and any(d != 1 for d in extra.shape[:-1]):
            raise ValueError(f"an epilogue operand {format_shape(extra.shape)} must have the output's shape or "
                             f"broadcast along its last axis only")
    return shape, dtype


def _fused_reference(node, arrays, dims):
    from .expr import evaluate
    return evaluate(node.attrs["epilogue"], [_conv_reference(node, arrays[:2], dims), *arrays[2:]], dims, node.dtype)


# The epilogue is an elementwise body over %0 = the convolution and %1.. = the extra operands (a bias row,
# a relu mask of the output's shape): the GEMM applies it while the tile is in registers.
fused_conv_op = Op("fused_conv", _fused_infer, _fused_reference, None, kind="conv")


# ---- the user's API: TF's conv2d -------------------------------------------------------------
def same_padding(size, taps, stride, dilation):
    """TF's "same": out = ceil(size / stride), padded evenly, the odd element after."""
    if not isinstance(size, int):
        raise GraphError(f"padding='same' needs a static spatial size, got {size} (at {user_location()})")
    out = -(-size // stride)
    total = max((out - 1) * stride + _dilated(taps, dilation) - size, 0)
    return total // 2, total - total // 2


def window_padding(padding, x_shape, window, strides, dilation, label):
    """(before, after) per spatial axis for TF's "valid" or "same"."""
    if padding not in ("valid", "same"):
        raise GraphError(f"{label}: padding must be 'valid' or 'same', got {padding!r} (at {user_location()})")
    if padding == "valid":
        return ((0, 0), (0, 0))
    return tuple(same_padding(x_shape[1 + axis], window[axis], strides[axis], dilation[axis])
                 for axis in range(_SPATIAL))


def conv2d(x, filters, strides=(1, 1), padding="valid", dilation=(1, 1)) -> Node:
    """TF's ``tf.nn.conv2d``: x (batch, height, width, channels), filters (height, width, in, out), "valid"
    (no padding) or "same" (output size ceil(input / stride)); ``dilation`` spaces the filter taps."""
    label = "conv2d"
    try:
        strides, dilation = _pair(strides, "strides"), _pair(dilation, "dilation")
    except ValueError as error:
        raise GraphError(f"{label}: {error} (at {user_location()})") from None
    for name, value in (("x", x), ("filters", filters)):
        if not isinstance(value, Node):
            raise GraphError(f"{label}: {name} must be a graph tensor, got {type(value).__name__} "
                             f"(at {user_location()})")
        if value.ndim != 4:
            raise GraphError(f"{label}: {name} must be 4-D ({'batch, height, width, channels' if name == 'x' else 'height, width, in_channels, out_channels'}), "
                             f"got shape {format_shape(value.shape)} (at {user_location()})")
    pads = window_padding(padding, x.shape, filters.shape[:2], strides, dilation, label)
    return conv_general(x, filters, strides, pads, (1, 1), dilation)
