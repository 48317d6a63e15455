"""Graph sources: placeholders (fed at call time), variables (state that persists), constants."""
import numpy as np

from ..graph import dtypes
from ..graph.node import GraphError, Node, user_location
from ..graph.shapes import dim_symbol, fresh_dim
from .registry import Op, apply


def _no_reference(node, arrays, dims):
    raise RuntimeError(f"{node.op.name} {node.name} has no value of its own: the executor supplies it")


def _constant_reference(node, arrays, dims):
    return node.attrs["value"]


def _fixed(inputs, attrs):
    return attrs["shape"], attrs["dtype"]


# Sources are leaves: the chain rule stops at them, so their vjp has no inputs to return.
placeholder_op = Op("placeholder", _fixed, _no_reference, lambda node, g: [], kind="source")
variable_op = Op("variable", _fixed, _no_reference, lambda node, g: [], kind="source")
constant_op = Op("constant", _fixed, _constant_reference, lambda node, g: [], kind="source")


def _declared_dim(dim):
    if dim is None:
        return fresh_dim()
    if isinstance(dim, str):
        return dim_symbol(dim)
    if isinstance(dim, (int, np.integer)) and not isinstance(dim, bool) and dim >= 0:
        return int(dim)
    raise GraphError(f"placeholder: a dimension must be an int >= 0, None or a name, got {dim!r} "
                     f"(at {user_location()})")


def _shape_error(shape, dtype, name) -> GraphError:
    """A shape that is not a tuple; most often TF's argument order, dtype first: show the call meant."""
    if isinstance(dtype, (tuple, list)):
        written = f'"{shape}"' if isinstance(shape, str) else repr(shape)
        named = f", name={name!r}" if name else ""
        return GraphError(f"placeholder: the shape comes first, then the dtype (TensorFlow's order is the other "
                          f"way round): write gc.placeholder({tuple(dtype)!r}, {written}{named}) "
                          f"(at {user_location()})")
    return GraphError(f'placeholder: the shape must be a tuple of dims (ints, None or names), got {shape!r}, as in '
                      f'gc.placeholder((None, 784), "float32") (at {user_location()})')


def placeholder(shape, dtype="float32", name=None) -> Node:
    """An input fed when the function runs. ``None`` in ``shape`` is a fresh symbolic dimension;
    a string names one shared by every placeholder using that name (``"batch"``)."""
    if not isinstance(shape, (tuple, list)):
        raise _shape_error(shape, dtype, name)
    shape = tuple(_declared_dim(d) for d in shape)
    dtype = dtypes.as_dtype(dtype)
    return apply(placeholder_op, [], {"shape": shape, "dtype": dtype}, name=name)


def variable(initial_value, name=None, trainable=True, dtype=None) -> Node:
    """State that persists across calls: read by the graph, assigned by a function's ``updates``.
    ``.value`` reads or sets the current value. Python floats become float32."""
    value = np.asarray(initial_value)
    if dtype is None and value.dtype == np.float64 and not isinstance(initial_value, np.ndarray):
        dtype = dtypes.DEFAULT_FLOAT
    dtype = dtypes.as_dtype(dtype or value.dtype)
    node = apply(variable_op, [], {"shape": value.shape, "dtype": dtype, "trainable": bool(trainable)}, name=name)
    node.storage = np.array(value, dtype=dtype, order="C")
    return node


def constant(value, dtype=None, name=None) -> Node:
    """A fixed tensor. Python floats become float32 unless ``dtype`` says otherwise."""
    array = np.asarray(value)
    if dtype is None and array.dtype == np.float64 and not isinstance(value, np.ndarray):
        dtype = dtypes.DEFAULT_FLOAT
    array = np.array(array, dtype=dtypes.as_dtype(dtype or array.dtype), order="C")
    array.setflags(write=False)
    return apply(constant_op, [], {"shape": array.shape, "dtype": array.dtype.name, "value": array}, name=name)
