"""Gathering by integer indices: ``take`` (numpy.take, alias ``gather``) and its adjoint ``scatter_add``.

``take(x, indices, axis)`` is the one gather op that integer-array indexing (``x[idx]``), an
embedding lookup and a shuffled-batch gather are all built on; ``scatter_add`` is its gradient (and
``take`` is ``scatter_add``'s), so higher derivatives through a gather need nothing more.

Both ops see their operands as (outer, n, inner) around ``axis``: ``take`` copies the
``inner``-element row ``x[o, indices[j], :]`` to ``out[o, j, :]``, which for a row gather along axis
0 of a 2-D array is one contiguous copy per index (graphc/lower/gather.py). An index outside
[-n, n) is an IndexError in the reference, as in numpy; the native kernels never read or write
through one (see graphc/lower/gather.py for how they report it).
"""
import numpy as np

from ..graph import dtypes
from ..graph.node import GraphError, Node, user_location
from ..graph.shapes import canonical_dim, evaluate_dim, format_shape, is_static, unify_dims, unifying
from .registry import Op, apply


def _first_bad(indices, n):
    """(position, value) of the first index outside [-n, n), or None when all are in range."""
    bad = (indices < -n) | (indices >= n)
    if not bad.any():
        return None
    position = tuple(int(i) for i in np.argwhere(bad)[0])
    return position, int(indices[position])


def _index_error(node, indices, n, label):
    """IndexError naming the node, the user's line and the first bad index, or None when all are in range."""
    bad = _first_bad(indices, n)
    if bad is None:
        return None
    position, value = bad
    where = f" at position {position} of the indices" if position else ""
    return IndexError(f"{label} {node.name} (at {node.location}): index {value}{where} is out of bounds for "
                      f"axis {node.attrs['axis']} with size {n}")


# ---- take --------------------------------------------------------------------------------------
def _take_infer(inputs, attrs):
    x, indices = inputs
    axis = attrs["axis"]
    if indices.dtype not in dtypes.INTS:
        raise ValueError(f"indices must be int32 or int64, got {indices.dtype}")
    return x.shape[:axis] + indices.shape + x.shape[axis + 1:], x.dtype


def _take_reference(node, arrays, dims):
    x, indices = arrays
    error = _index_error(node, indices, x.shape[node.attrs["axis"]], "take")
    if error:
        raise error
    return np.take(x, indices, axis=node.attrs["axis"])


take_op = Op(
    "take", _take_infer, _take_reference,
    lambda node, g: [scatter_add(g, node.inputs[1], node.inputs[0].shape, node.attrs["axis"]), None],
    kind="layout")


def take(x, indices, axis=0) -> Node:
    """numpy.take: ``x``'s entries at ``indices`` (an integer tensor, array or list of any shape) along
    ``axis``; the result's shape is ``x.shape[:axis] + indices.shape + x.shape[axis + 1:]``.

    Negative indices count from the end, as in numpy. Indices given as numbers are checked now
    against a static axis; other indices when the function runs: one outside [-n, n) is an IndexError
    (the native kernels never read through it and record it: graphc/lower/gather.py). The gradient
    adds ``g`` into zeros of ``x``'s shape at the indices (``scatter_add``): a repeated index accumulates."""
    axis = _axis(x, axis, "take")
    indices = _as_indices(indices, "take")
    if indices.op.name == "constant" and is_static(x.shape[axis:axis + 1]):
        _check_constant(indices.attrs["value"], x.shape[axis], axis, "take")
    return apply(take_op, [x, indices], {"axis": axis})


gather = take


# ---- scatter_add -------------------------------------------------------------------------------
def _scatter_add_infer(inputs, attrs):
    updates, indices = inputs
    shape, axis = attrs["shape"], attrs["axis"]
    if indices.dtype not in dtypes.INTS:
        raise ValueError(f"indices must be int32 or int64, got {indices.dtype}")
    if updates.dtype == "bool":
        raise ValueError("updates must be numbers, not bool")
    expected = shape[:axis] + indices.shape + shape[axis + 1:]
    with unifying():  # the updates' dims meet the result's and the indices': an anonymous one is unified
        if len(expected) != updates.ndim or any(unify_dims(p, q) is None for p, q in zip(expected, updates.shape)):
            raise ValueError(f"updates of shape {format_shape(updates.shape)} do not fit indices of shape "
                             f"{format_shape(indices.shape)} into {format_shape(shape)} along axis {axis} "
                             f"(expected {format_shape(expected)})")
    return shape, updates.dtype


def _scatter_add_reference(node, arrays, dims):
    updates, indices = arrays
    axis = node.attrs["axis"]
    out = np.zeros(tuple(evaluate_dim(d, dims) for d in node.shape), dtype=node.dtype)
    error = _index_error(node, indices, out.shape[axis], "scatter_add")
    if error:
        raise error
    # np.add.at adds unbuffered, in index order: the order the native kernel adds in, so the bits agree.
    np.add.at(out, (slice(None),) * axis + (indices,), updates)
    return out


scatter_add_op = Op(
    "scatter_add", _scatter_add_infer, _scatter_add_reference,
    lambda node, g: [take(g, node.inputs[1], node.attrs["axis"]), None],
    kind="layout")


def scatter_add(updates, indices, shape, axis=0) -> Node:
    """Zeros of ``shape`` with ``updates`` added at ``indices`` along ``axis``: ``np.add.at(out, idx,
    updates)``, the adjoint of ``take``. A repeated index accumulates, always in index order, so the
    sums do not depend on the number of threads."""
    shape = tuple(canonical_dim(d) for d in shape)
    if not -len(shape) <= axis < len(shape):
        raise GraphError(f"scatter_add: axis {axis} is out of range for shape {format_shape(shape)} "
                         f"(at {user_location()})")
    indices = _as_indices(indices, "scatter_add")
    return apply(scatter_add_op, [updates, indices], {"shape": shape, "axis": axis % len(shape)})


# ---- helpers -----------------------------------------------------------------------------------
def _axis(x, axis, label) -> int:
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise GraphError(f"{label}: axis must be an int, got {axis!r} (at {user_location()})")
    if x.ndim == 0 or not -x.ndim <= axis < x.ndim:
        raise GraphError(f"{label}: axis {axis} is out of range for shape {format_shape(x.shape)} "
                         f"(at {user_location()})")
    return int(axis) % x.ndim


def _as_indices(indices, label) -> Node:
    """An integer tensor from a tensor, numpy array, list or int; a clear error for anything else."""
    if isinstance(indices, Node):
        if indices.dtype == "bool":
            raise GraphError(f"{label}: boolean indices (a mask) are not supported: the result's shape would "
                             f"depend on the values; got {indices!r} (at {user_location()})")
        if indices.dtype not in dtypes.INTS:
            raise GraphError(f"{label}: indices must be an int32 or int64 tensor, got {indices.dtype} "
                             f"(at {user_location()})")
        return indices
    from .source import constant
    try:
        array = np.asarray(indices)
    except ValueError:
        array = np.empty(0, dtype=object)
    if array.size == 0 and array.dtype == np.float64:
        array = array.astype(np.int64)  # [] is float to numpy; as an index it is an empty integer list
    if array.dtype == np.bool_:
        raise GraphError(f"{label}: boolean indices (a mask) are not supported: the result's shape would "
                         f"depend on the values (at {user_location()})")
    if not np.issubdtype(array.dtype, np.integer):
        raise GraphError(f"{label}: indices must be integers (a tensor, array or list), got {indices!r} "
                         f"(at {user_location()})")
    if array.size and (array.min() < np.iinfo(np.int64).min or array.max() > np.iinfo(np.int64).max):
        raise GraphError(f"{label}: indices do not fit in int64 (at {user_location()})")
    return constant(array.astype(np.int64))


def _check_constant(indices, n, axis, label):
    bad = _first_bad(indices, n)
    if bad is not None:
        raise GraphError(f"{label}: index {bad[1]} is out of bounds for axis {axis} with size {n} "
                         f"(at {user_location()})")
