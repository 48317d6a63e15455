"""2-D pooling over NHWC data, as TF's tf.nn.max_pool2d / avg_pool2d: max_pool2d, avg_pool2d, their gradients
(max_pool2d_grad, avg_pool2d_grad) and global_avg_pool2d.

A window of ``pool_size`` (kh, kw) moves by ``strides`` (sh, sw) over the height and width of
x (batch, H, W, C); every channel is pooled on its own. Output sizes follow TF:

* "valid": out = floor((in - k) / s) + 1, no padding (a pool larger than the input is an error);
* "same":  out = ceil(in / s), padded by max((out - 1) * s + k - in, 0) in all, the smaller half before.

Padding never takes part: a window is clipped to the input, so max pooling never picks padding (as
if it were -inf) and average pooling divides by the number of input elements in the window (TF's
rule). The gradient of max pooling goes to the FIRST maximum of each window in row-major window
order (TF's rule for ties), or to the first NaN when the window holds one (where numpy's argmax of
the window points; the forward value is then NaN too); it is recomputed from x, no mask is stored.
Where windows overlap the gradients add up, in row-major order of the outputs.
"""
import numpy as np
import sympy

from ..graph import dtypes
from ..graph.node import GraphError, Node, user_location
from ..graph.shapes import (canonical_dim, evaluate_dim, evaluate_shape, format_shape, shapes_equal, unify_dims,
                            unifying)
from .conv import same_padding
from .reduce import mean
from .registry import Op, apply

PADDINGS = ("valid", "same")


# ---- geometry ------------------------------------------------------------------------------------
def output_size(size, k: int, s: int, padding: str):
    """Windows along one axis of ``size`` (an int or a symbolic dim) under TF's rule for ``padding``."""
    if padding == "valid":
        return canonical_dim(sympy.floor(sympy.Rational(1, s) * (sympy.sympify(size) - k)) + 1)
    return canonical_dim(sympy.ceiling(sympy.Rational(1, s) * sympy.sympify(size)))


def pad_before(size: int, k: int, s: int, padding: str) -> int:
    """Padding before the first element along one axis of ``size`` elements: half the total, rounded down."""
    return same_padding(size, k, s, 1)[0] if padding == "same" else 0


def _windows(size: int, k: int, s: int, padding: str) -> list:
    """[(start, stop)] of every window along one axis, clipped to [0, size): the input elements each pools."""
    before = pad_before(size, k, s, padding)
    starts = [o * s - before for o in range(output_size(size, k, s, padding))]
    return [(max(start, 0), min(start + k, size)) for start in starts]


def _windows_2d(node, dims, height, width):
    """[(i, j, rows, cols)] of the output positions in row-major order with their clipped windows."""
    (kh, kw), (sh, sw), padding = node.attrs["pool_size"], node.attrs["strides"], node.attrs["padding"]
    h, w = evaluate_dim(height, dims), evaluate_dim(width, dims)
    if output_size(h, kh, sh, padding) < 1 or output_size(w, kw, sw, padding) < 1:
        raise ValueError(f"{node.op.name} {node.name} (at {node.location}): the pool {kh}x{kw} is larger than the "
                         f"input's {h}x{w} (padding 'valid')")
    return [(i, j, slice(*rows), slice(*cols)) for i, rows in enumerate(_windows(h, kh, sh, padding))
            for j, cols in enumerate(_windows(w, kw, sw, padding))]


def windows_tile(attrs) -> bool:
    """Whether a pooling's windows (its attrs) never overlap nor reach past the input: strides equal to the
    pool size, padding "valid". Its gradient then sends each element one share or none."""
    return attrs["padding"] == "valid" and tuple(attrs["strides"]) == tuple(attrs["pool_size"])


def _pooled_shape(shape, attrs):
    (kh, kw), (sh, sw), padding = attrs["pool_size"], attrs["strides"], attrs["padding"]
    batch, height, width, channels = shape
    return batch, output_size(height, kh, sh, padding), output_size(width, kw, sw, padding), channels


def _check_input(shape, dtype, attrs):
    """ValueError unless ``shape`` is 4-D, ``dtype`` a float and every window fits (where sizes are known)."""
    if len(shape) != 4:
        raise ValueError(f"needs a 4-D (batch, height, width, channels) input, got rank {len(shape)}")
    if not dtypes.is_float(dtype):
        raise ValueError(f"needs a float input, got {dtype}")
    for size, k in zip(shape[1:3], attrs["pool_size"]):
        if attrs["padding"] == "valid" and isinstance(size, int) and size < k:
            raise ValueError(f"the pool {'x'.join(map(str, attrs['pool_size']))} is larger than the input's "
                             f"{shape[1]}x{shape[2]} with padding 'valid' (use padding='same' or a smaller pool)")


def _check_gradient(g, expected):
    """ValueError unless ``g`` has the pooled shape ``expected`` (anonymous dims are unified with it)."""
    with unifying():
        if g.ndim != 4 or any(unify_dims(p, q) is None for p, q in zip(expected, g.shape)):
            raise ValueError(f"the gradient's shape {format_shape(g.shape)} is not the pooled shape "
                             f"{format_shape(expected)}")


# ---- max_pool2d --------------------------------------------------------------------------------
def _pool_infer(inputs, attrs):
    (x,) = inputs
    _check_input(x.shape, x.dtype, attrs)
    return _pooled_shape(x.shape, attrs), x.dtype


def _max_pool_reference(node, arrays, dims):
    (x,) = arrays
    out = np.empty(evaluate_shape(node.shape, dims), dtype=x.dtype)
    for i, j, rows, cols in _windows_2d(node, dims, *x.shape[1:3]):
        out[:, i, j, :] = x[:, rows, cols, :].max(axis=(1, 2))
    return out


def _max_pool_vjp(node, g):
    return [max_pool2d_grad(node.inputs[0], g, node.attrs)]


max_pool2d_op = Op("max_pool2d", _pool_infer, _max_pool_reference, _max_pool_vjp, kind="nn")


def max_pool2d(x, pool_size, strides=None, padding="valid") -> Node:
    """The maximum of each ``pool_size`` window of x (batch, H, W, C), moved by ``strides`` (default:
    ``pool_size``); ``pool_size`` and ``strides`` are ints or (height, width) pairs. "same" padding
    never wins the maximum. The gradient goes to the first maximum of each window (module docstring)."""
    return apply(max_pool2d_op, [x], _attrs(x, pool_size, strides, padding, "max_pool2d"))


# ---- max_pool2d_grad ---------------------------------------------------------------------------
def _max_pool_grad_infer(inputs, attrs):
    x, g = inputs
    _check_input(x.shape, x.dtype, attrs)
    _check_gradient(g, _pooled_shape(x.shape, attrs))
    return x.shape, x.dtype


def _max_pool_grad_reference(node, arrays, dims):
    """dx[window's first argmax] += g, window by window in row-major order (np.argmax: first max or NaN)."""
    x, g = arrays
    dx = np.zeros_like(x)
    n, c = np.arange(x.shape[0])[:, None], np.arange(x.shape[3])[None, :]
    for i, j, rows, cols in _windows_2d(node, dims, *x.shape[1:3]):
        window = x[:, rows, cols, :]
        flat = np.argmax(window.reshape(x.shape[0], -1, x.shape[3]), axis=1)
        r, q = np.unravel_index(flat, window.shape[1:3])
        dx[n, rows.start + r, cols.start + q, c] += g[:, i, j, :]
    return dx


def _max_pool_grad_vjp(node, g):
    from ..autodiff import GradientError
    raise GradientError(f"second derivative of max pooling is not supported: the cost depends on the gradient of "
                        f"max_pool2d ({node.name}, at {node.location})")


max_pool2d_grad_op = Op("max_pool2d_grad", _max_pool_grad_infer, _max_pool_grad_reference, _max_pool_grad_vjp,
                        kind="nn")


def max_pool2d_grad(x, g, attrs) -> Node:
    """The gradient of ``max_pool2d(x, **attrs)`` for its output's gradient ``g``: g routed to each
    window's first maximum, summed where windows overlap. It has no gradient of its own."""
    return apply(max_pool2d_grad_op, [x, g], dict(attrs))


# The optimizer's fusions (graphc/passes/fusion.py): an elementwise consumer of the gradient, such as the relu
# mask of the layer below, as an epilogue over %0 = the gradient and %1.. = operands of the gradient's shape,
# applied by the kernel to each image it finishes; and, with ``axes``, the transpose that its readers wanted,
# done as the kernel stores. Built by the optimizer, never by users.
def _fused_grad_infer(inputs, attrs):
    shape, dtype = _max_pool_grad_infer(inputs[:2], attrs)
    if not all(shapes_equal(extra.shape, shape) for extra in inputs[2:]):
        raise ValueError(f"an epilogue operand must have the gradient's shape {format_shape(shape)}")
    return tuple(shape[a] for a in attrs.get("axes", range(4))), dtype


def _fused_grad_reference(node, arrays, dims):
    from .expr import evaluate
    masked = evaluate(node.attrs["epilogue"], [_max_pool_grad_reference(node, arrays[:2], dims), *arrays[2:]], dims,
                      node.dtype)
    return np.transpose(masked, node.attrs.get("axes", (0, 1, 2, 3)))


fused_max_pool2d_grad_op = Op("fused_max_pool2d_grad", _fused_grad_infer, _fused_grad_reference, None, kind="nn")


# ---- avg_pool2d --------------------------------------------------------------------------------
def _avg_pool_reference(node, arrays, dims):
    """Each window's sum, accumulated in row-major window order, over its number of input elements."""
    (x,) = arrays
    out = np.empty(evaluate_shape(node.shape, dims), dtype=x.dtype)
    for i, j, rows, cols in _windows_2d(node, dims, *x.shape[1:3]):
        total = np.zeros_like(x[:, 0, 0, :])
        for r in range(rows.start, rows.stop):
            for q in range(cols.start, cols.stop):
                total = total + x[:, r, q, :]
        out[:, i, j, :] = total / ((rows.stop - rows.start) * (cols.stop - cols.start))
    return out


def _avg_pool_vjp(node, g):
    return [avg_pool2d_grad(g, node.inputs[0].shape[1:3], node.attrs)]


avg_pool2d_op = Op("avg_pool2d", _pool_infer, _avg_pool_reference, _avg_pool_vjp, kind="nn")


def avg_pool2d(x, pool_size, strides=None, padding="valid") -> Node:
    """The mean of each ``pool_size`` window of x (batch, H, W, C), moved by ``strides`` (default:
    ``pool_size``); with "same" padding a window's mean is over its input elements only, as in TF."""
    return apply(avg_pool2d_op, [x], _attrs(x, pool_size, strides, padding, "avg_pool2d"))


# ---- avg_pool2d_grad ---------------------------------------------------------------------------
def _avg_pool_grad_infer(inputs, attrs):
    (g,) = inputs
    if g.ndim != 4:
        raise ValueError(f"needs a 4-D gradient, got rank {g.ndim}")
    shape = (g.shape[0], *attrs["input_size"], g.shape[3])
    _check_input(shape, g.dtype, attrs)
    _check_gradient(g, _pooled_shape(shape, attrs))
    return shape, g.dtype


def _avg_pool_grad_reference(node, arrays, dims):
    """dx[window] += g / (the window's element count), window by window in row-major order."""
    (g,) = arrays
    dx = np.zeros(evaluate_shape(node.shape, dims), dtype=g.dtype)
    for i, j, rows, cols in _windows_2d(node, dims, *node.attrs["input_size"]):
        share = g[:, i, j, :] / ((rows.stop - rows.start) * (cols.stop - cols.start))
        dx[:, rows, cols, :] += share[:, None, None, :]
    return dx


def _avg_pool_grad_vjp(node, g):
    """The adjoint of the adjoint: average pooling with the same windows."""
    return [apply(avg_pool2d_op, [g], {k: v for k, v in node.attrs.items() if k != "input_size"})]


avg_pool2d_grad_op = Op("avg_pool2d_grad", _avg_pool_grad_infer, _avg_pool_grad_reference, _avg_pool_grad_vjp,
                        kind="nn")


def avg_pool2d_grad(g, input_size, attrs) -> Node:
    """The gradient of ``avg_pool2d(x, **attrs)`` for an x of spatial size ``input_size`` (H, W): each
    window's g shared equally by its input elements, summed where windows overlap. Linear: its own
    gradient is avg_pool2d again, so second derivatives through average pooling work."""
    return apply(avg_pool2d_grad_op, [g], {**attrs, "input_size": tuple(input_size)})


# ---- global_avg_pool2d -------------------------------------------------------------------------
def global_avg_pool2d(x) -> Node:
    """The mean over height and width of x (batch, H, W, C): shape (batch, C)."""
    if x.ndim != 4:
        raise GraphError(f"global_avg_pool2d: needs a 4-D (batch, height, width, channels) input, got shape "
                         f"{format_shape(x.shape)} (at {user_location()})")
    return mean(x, axis=(1, 2))


# ---- helpers -----------------------------------------------------------------------------------
def _attrs(x, pool_size, strides, padding, label) -> dict:
    """pool_size, strides (pairs of positive ints) and padding, checked: a GraphError names x and the user's line."""
    def fail(reason):
        shape = format_shape(x.shape) if isinstance(x, Node) else repr(x)
        raise GraphError(f"{label}: {reason}; input {shape} (at {user_location()})")

    def pair(value, what):
        values = (value, value) if isinstance(value, (int, np.integer)) else value
        try:
            values = tuple(values)
        except TypeError:
            fail(f"{what} must be an int or a pair of ints, got {value!r}")
        if len(values) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
            fail(f"{what} must be an int or a pair of ints, got {value!r}")
        if min(values) < 1:
            fail(f"{what} must be positive, got {value!r}")
        return tuple(int(v) for v in values)
    if not isinstance(x, Node):
        fail(f"x must be a graph tensor, got {type(x).__name__}")
    if padding not in PADDINGS:
        fail(f"padding must be 'valid' or 'same', got {padding!r}")
    pool = pair(pool_size, "pool_size")
    return {"pool_size": pool, "strides": pool if strides is None else pair(strides, "strides"), "padding": padding}
