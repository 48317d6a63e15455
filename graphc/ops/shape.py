"""Layout ops: reshape, transpose, broadcast_to, concatenate and stack, slicing. They move elements, never compute.

Indexing with an integer array is a gather: ``getitem`` hands it to ``take`` (indexing.py)."""
import numpy as np
import sympy

from ..graph.node import GraphError, Node, user_location
from ..graph.shapes import (broadcast_shapes, canonical_dim, dims_equal, evaluate_shape, format_shape,
                            resolve_shape, shapes_equal, size, unify_dims, unifying)
from .registry import Op, apply


# ---- reshape -------------------------------------------------------------------------------
def _reshape_infer(inputs, attrs):
    (x,) = inputs
    if not dims_equal(size(x.shape), size(attrs["shape"])):
        raise ValueError(f"cannot reshape {size(x.shape)} elements into {format_shape(attrs['shape'])}")
    return attrs["shape"], x.dtype


reshape_op = Op(
    "reshape", _reshape_infer,
    lambda node, arrays, dims: arrays[0].reshape(evaluate_shape(node.shape, dims)),
    lambda node, g: [reshape(g, node.inputs[0].shape)],
    kind="layout")


def _resolve_minus_one(x, shape):
    shape = [canonical_dim(d) for d in shape]
    unknown = [i for i, d in enumerate(shape) if isinstance(d, int) and d == -1]
    if len(unknown) > 1:
        raise GraphError(f"reshape: only one dimension may be -1, got {shape} (at {user_location()})")
    if unknown:
        known = size([d for d in shape if not (isinstance(d, int) and d == -1)])
        total = size(x.shape)
        inferred = sympy.simplify(sympy.sympify(total) / sympy.sympify(known))
        if not inferred.is_integer:
            raise GraphError(f"reshape: cannot reshape {format_shape(x.shape)} into {tuple(shape)} "
                             f"(at {user_location()})")
        shape[unknown[0]] = canonical_dim(inferred)
    return tuple(shape)


def reshape(x, shape) -> Node:
    """``x`` with a new shape of the same size, elements in row-major order; one entry may be -1."""
    shape = _resolve_minus_one(x, tuple(shape))
    if tuple(shape) == tuple(x.shape):
        return x
    return apply(reshape_op, [x], {"shape": shape})


def expand_dims(x, axis) -> Node:
    """``x`` with a new axis of length 1 at ``axis``."""
    axis = axis + x.ndim + 1 if axis < 0 else axis
    return reshape(x, x.shape[:axis] + (1,) + x.shape[axis:])


def squeeze(x, axis=None) -> Node:
    """``x`` without its length-1 axes (or just ``axis``, which must have length 1)."""
    axes = [a for a, d in enumerate(x.shape) if d == 1] if axis is None else _normalize_axes(x, axis, "squeeze")
    for a in axes:
        if x.shape[a] != 1:
            raise GraphError(f"squeeze: axis {a} of {format_shape(x.shape)} has length {x.shape[a]}, not 1 "
                             f"(at {user_location()})")
    return reshape(x, tuple(d for a, d in enumerate(x.shape) if a not in axes))


# ---- transpose -----------------------------------------------------------------------------
def _transpose_infer(inputs, attrs):
    (x,) = inputs
    axes = attrs["axes"]
    if sorted(axes) != list(range(x.ndim)):
        raise ValueError(f"axes {axes} are not a permutation of {x.ndim} axes")
    return tuple(x.shape[a] for a in axes), x.dtype


transpose_op = Op(
    "transpose", _transpose_infer,
    lambda node, arrays, dims: np.transpose(arrays[0], node.attrs["axes"]),
    lambda node, g: [transpose(g, tuple(int(i) for i in np.argsort(node.attrs["axes"])))],
    kind="layout")


def transpose(x, axes=None) -> Node:
    """``x`` with its axes permuted (reversed by default), as numpy.transpose."""
    axes = tuple(reversed(range(x.ndim))) if axes is None else tuple(a % x.ndim if x.ndim else a for a in axes)
    if axes == tuple(range(x.ndim)):
        return x
    return apply(transpose_op, [x], {"axes": axes})


# ---- broadcast_to and its adjoint ----------------------------------------------------------
def _broadcast_infer(inputs, attrs):
    (x,) = inputs
    target = attrs["shape"]
    try:
        compatible = len(target) >= x.ndim and shapes_equal(broadcast_shapes(x.shape, target), target)
    except ValueError:
        compatible = False
    if not compatible:
        raise ValueError(f"cannot broadcast to {format_shape(target)}")
    return target, x.dtype


broadcast_op = Op(
    "broadcast_to", _broadcast_infer,
    lambda node, arrays, dims: np.broadcast_to(arrays[0], evaluate_shape(node.shape, dims)),
    lambda node, g: [unbroadcast(g, node.inputs[0].shape)],
    kind="layout")


def broadcast_to(x, shape) -> Node:
    """``x`` repeated along new leading axes and its length-1 axes to ``shape`` (numpy broadcasting)."""
    shape = tuple(canonical_dim(d) for d in shape)
    if shapes_equal(x.shape, shape):
        return x
    return apply(broadcast_op, [x], {"shape": shape})


def unbroadcast(g, shape) -> Node:
    """The gradient for an operand of ``shape`` from ``g`` of the broadcast shape: sum over the broadcast axes."""
    from .reduce import sum as reduce_sum
    extra = g.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        extra + a for a, d in enumerate(shape) if dims_equal(d, 1) and not dims_equal(g.shape[extra + a], 1))
    if axes:
        g = reduce_sum(g, axes, keepdims=True)
    return reshape(g, shape)


# ---- concatenate ---------------------------------------------------------------------------
def _concatenate_infer(inputs, attrs):
    axis = attrs["axis"]
    first = inputs[0]
    with unifying():  # the other axes meet: an anonymous dim is unified with the operands' dims there
        for other in inputs[1:]:
            if other.ndim != first.ndim or other.dtype != first.dtype or any(
                    unify_dims(p, q) is None for a, (p, q) in enumerate(zip(first.shape, other.shape)) if a != axis):
                raise ValueError(f"operands must agree in dtype and in every axis but {axis}")
    total = canonical_dim(sympy.Add(*[sympy.sympify(i.shape[axis]) for i in inputs]))
    return resolve_shape(first.shape[:axis]) + (total,) + resolve_shape(first.shape[axis + 1:]), first.dtype


def _concatenate_vjp(node, g):
    axis, start, grads = node.attrs["axis"], 0, []
    for inp in node.inputs:
        stop = canonical_dim(sympy.sympify(start) + sympy.sympify(inp.shape[axis]))
        grads.append(_slice_axis(g, axis, start, stop))
        start = stop
    return grads


concatenate_op = Op(
    "concatenate", _concatenate_infer,
    lambda node, arrays, dims: np.concatenate(arrays, axis=node.attrs["axis"]),
    _concatenate_vjp, kind="layout")


def concatenate(tensors, axis=0) -> Node:
    """The tensors joined along ``axis``."""
    tensors = list(tensors)
    if not tensors:
        raise GraphError(f"concatenate: needs at least one tensor (at {user_location()})")
    axis = _normalize_axes(tensors[0], axis, "concatenate")[0]
    if len(tensors) == 1:
        return tensors[0]
    return apply(concatenate_op, tensors, {"axis": axis})


def stack(tensors, axis=0) -> Node:
    """numpy.stack: tensors of one shape joined along a new axis ``axis``. It is the concatenation of
    each tensor with a length-1 axis inserted, so its gradient is concatenate's: ``g`` sliced apart
    again (an unstack), each slice reshaped to its tensor's shape."""
    tensors = list(tensors)
    if not tensors:
        raise GraphError(f"stack: needs at least one tensor (at {user_location()})")
    with unifying():  # the tensors' dims meet: an anonymous one is unified with the others'
        for k, tensor in enumerate(tensors):
            if not isinstance(tensor, Node):
                raise GraphError(f"stack: tensors[{k}] is a {type(tensor).__name__}, not a tensor; wrap numbers "
                                 f"and arrays in gc.constant (at {user_location()})")
            first = tensors[0].shape
            if len(tensor.shape) != len(first) or any(unify_dims(p, q) is None for p, q in zip(first, tensor.shape)):
                raise GraphError(f"stack: every tensor must have the first one's shape {format_shape(first)}, "
                                 f"tensors[{k}] has {format_shape(tensor.shape)} (at {user_location()})")
    ndim = tensors[0].ndim + 1
    if not isinstance(axis, (int, np.integer)) or not -ndim <= axis < ndim:
        raise GraphError(f"stack: axis {axis!r} is out of range for stacking tensors of shape "
                         f"{format_shape(tensors[0].shape)} (valid: {-ndim} to {ndim - 1}) (at {user_location()})")
    axis = int(axis) % ndim
    return concatenate([expand_dims(t, axis) for t in tensors], axis)


# ---- slicing and its adjoint ---------------------------------------------------------------
# A slice is stored per axis as (start, stop) with step 1, or (start, stop, step) on static axes;
# ``start``/``stop`` may be symbolic (``batch - 1``). Integer indexes are a slice of length 1 then a reshape.
def _slice_infer(inputs, attrs):
    (x,) = inputs
    shape = []
    for (start, stop, step) in attrs["bounds"]:
        length = canonical_dim(sympy.ceiling((sympy.sympify(stop) - sympy.sympify(start)) / step)) \
            if step != 1 else canonical_dim(sympy.sympify(stop) - sympy.sympify(start))
        if isinstance(length, int) and length < 0:
            length = 0
        shape.append(length)
    return tuple(shape), x.dtype


def _evaluated_slices(bounds, dims):
    from ..graph.shapes import evaluate_dim
    slices = []
    for start, stop, step in bounds:
        stop = evaluate_dim(stop, dims)
        # slice.indices' stop of -1 for a negative step means "before index 0": None to numpy, not "the last".
        slices.append(slice(evaluate_dim(start, dims), None if stop < 0 else stop, step))
    return tuple(slices)


def _slice_reference(node, arrays, dims):
    return arrays[0][_evaluated_slices(node.attrs["bounds"], dims)]


slice_op = Op("slice", _slice_infer, _slice_reference,
              lambda node, g: [unslice(g, node.inputs[0].shape, node.attrs["bounds"])], kind="layout")


def _unslice_reference(node, arrays, dims):
    result = np.zeros(evaluate_shape(node.shape, dims), dtype=node.dtype)
    result[_evaluated_slices(node.attrs["bounds"], dims)] = arrays[0]
    return result


unslice_op = Op("unslice", lambda inputs, attrs: (attrs["shape"], inputs[0].dtype), _unslice_reference,
                lambda node, g: [apply(slice_op, [g], {"bounds": node.attrs["bounds"]})], kind="layout")


def unslice(g, shape, bounds) -> Node:
    """Zeros of ``shape`` with ``g`` written at the slice ``bounds``: the adjoint of slicing."""
    return apply(unslice_op, [g], {"shape": tuple(shape), "bounds": bounds})


def _slice_axis(x, axis, start, stop) -> Node:
    bounds = tuple((0, d, 1) for d in x.shape)
    bounds = bounds[:axis] + ((start, stop, 1),) + bounds[axis + 1:]
    return apply(slice_op, [x], {"bounds": bounds})


def _axis_bounds(dim, index, axis):
    """(start, stop, step) for ``index`` (a slice) on an axis of length ``dim``, as numpy reads it."""
    if isinstance(dim, int):
        return index.indices(dim)
    if index.step not in (None, 1):
        raise GraphError(f"slicing: a step on the symbolic axis {axis} (length {dim}) is not supported "
                         f"(at {user_location()})")

    def bound(value, default):
        if value is None:
            return default
        return canonical_dim(dim + value) if value < 0 else value
    return bound(index.start, 0), bound(index.stop, dim), 1


def getitem(x, index) -> Node:
    """numpy basic indexing: ints, slices (negative bounds too), ``...`` and ``None``; and an integer array
    (a tensor, numpy array or list) as the first index, which gathers along axis 0: ``x[idx]`` is
    ``take(x, idx)``, and ``x[idx, rest]`` is that gather indexed by ``rest`` on the axes after idx's,
    which is what numpy computes. An integer array elsewhere, or two of them, is a GraphError pointing
    at ``gc.take``: numpy's rules for those move axes around, and nothing here needs them yet."""
    index = index if isinstance(index, tuple) else (index,)
    arrays = [k for k, item in enumerate(index) if isinstance(item, (Node, np.ndarray, list, tuple))]
    if arrays:
        return _gather_then_index(x, index, arrays)
    if sum(i is Ellipsis for i in index) > 1:
        raise GraphError(f"indexing: only one '...' allowed (at {user_location()})")
    consumed = sum(1 for i in index if i is not None and i is not Ellipsis)
    if consumed > x.ndim:
        raise GraphError(f"indexing: {consumed} indexes for a tensor of shape {format_shape(x.shape)} "
                         f"(at {user_location()})")
    if Ellipsis in index:
        at = index.index(Ellipsis)
        index = index[:at] + (slice(None),) * (x.ndim - consumed) + index[at + 1:]
    else:
        index = index + (slice(None),) * (x.ndim - consumed)
    bounds, out_shape, axis = [], [], 0
    for item in index:
        if item is None:
            out_shape.append(1)
            continue
        dim = x.shape[axis]
        if isinstance(item, slice):
            bounds.append(_axis_bounds(dim, item, axis))
        elif isinstance(item, (bool, np.bool_)):
            raise GraphError(f"indexing: a boolean index ({item!r}) is a mask to numpy, and masks are not supported "
                             f"(at {user_location()})")
        elif isinstance(item, (int, np.integer)):
            position = int(item)
            if isinstance(dim, int) and not -dim <= position < dim:
                raise GraphError(f"indexing: index {position} is out of bounds for axis {axis} with size {dim} "
                                 f"(at {user_location()})")
            start = position if position >= 0 else canonical_dim(dim + position)
            bounds.append((start, canonical_dim(sympy.sympify(start) + 1), 1))
        else:
            raise GraphError(f"indexing: only ints, slices, ... and None are supported, got {item!r} "
                             f"(at {user_location()})")
        axis += 1
    sliced = x
    if any(b != (0, d, 1) for b, d in zip(bounds, x.shape)):
        sliced = apply(slice_op, [x], {"bounds": tuple(bounds)})
    # Rebuild the final shape: int indexes drop their axis, None adds one.
    shape, axis = [], 0
    for item in index:
        if item is None:
            shape.append(1)
            continue
        if isinstance(item, slice):
            shape.append(sliced.shape[axis])
        axis += 1
    return reshape(sliced, tuple(shape))


def _gather_then_index(x, index, arrays) -> Node:
    """``x[idx, rest...]`` with ``idx`` an integer array: take(x, idx, 0), then ``rest`` on the axes after idx's."""
    from .indexing import take
    if arrays != [0]:
        raise GraphError(f"indexing: an integer array is supported as the first index only (x[idx], x[idx, 1:3]); "
                         f"index {arrays[-1]} of {len(index)} is one: use gc.take(x, idx, axis=...) for another "
                         f"axis (at {user_location()})")
    rest = index[1:]
    consumed = 1 + sum(1 for i in rest if i is not None and i is not Ellipsis)
    if consumed > x.ndim:
        raise GraphError(f"indexing: {consumed} indexes for a tensor of shape {format_shape(x.shape)} "
                         f"(at {user_location()})")
    gathered = take(x, index[0], axis=0)
    if not rest:
        return gathered
    return getitem(gathered, (slice(None),) * (gathered.ndim - x.ndim + 1) + rest)


def _normalize_axes(x, axis, label):
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    normalized = []
    for a in axes:
        if not -max(x.ndim, 1) <= a < max(x.ndim, 1):
            raise GraphError(f"{label}: axis {a} is out of range for shape {format_shape(x.shape)} "
                             f"(at {user_location()})")
        normalized.append(int(a) % max(x.ndim, 1))
    if len(set(normalized)) != len(normalized):
        raise GraphError(f"{label}: repeated axis in {axis} (at {user_location()})")
    return tuple(normalized)
