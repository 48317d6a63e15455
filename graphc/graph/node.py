"""The graph IR: a Node is one operation's result, and also the Tensor users hold.

A graph is implicit: every node points at its inputs, so the graph of a set of
outputs is everything reachable from them (see ``graph.py``). Nodes are
immutable once built; passes build new nodes instead of editing old ones.
"""
import contextlib
import itertools
import os
import sys

import numpy as np

from . import dtypes
from .shapes import format_shape

_ids = itertools.count()
_op_names = set()  # of every node built so far: Node's own names are "<one of them>_<id>"
_GRAPHC_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_current_origin = ["forward"]


@contextlib.contextmanager
def origin(name: str):
    """Tag every node built inside the block with ``origin=name`` (autodiff marks its nodes 'backward')."""
    _current_origin.append(name)
    try:
        yield
    finally:
        _current_origin.pop()


class GraphError(ValueError):
    """A graph that cannot be built: shape or dtype mismatch, bad argument. Names the op and the user's line."""


def user_location() -> str:
    """``file:line`` of the innermost caller outside the graphc package: where the user wrote this op."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not os.path.abspath(filename).startswith(_GRAPHC_DIR + os.sep):
            return f"{filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "<graphc>"


class Node:
    """One operation in the graph; also the tensor handle of the define-then-run API.

    ``op`` is an ``Op`` (see ``graphc.ops.registry``), ``attrs`` a dict of
    hashable attributes, ``shape`` a tuple of ints / sympy expressions.
    """

    __array_priority__ = 100  # so numpy_array + node calls Node.__radd__

    def __init__(self, op, inputs, attrs, shape, dtype, name=None, location=None):
        self.id = next(_ids)
        self.op = op
        self.inputs = tuple(inputs)
        self.attrs = dict(attrs)
        self.shape = tuple(shape)
        self.dtype = dtypes.as_dtype(dtype)
        self.name = name or f"{op.name}_{self.id}"
        _op_names.add(op.name)
        self.location = location or user_location()
        self.origin = _current_origin[-1]

    def rebuilt(self, inputs, attrs=None) -> "Node":
        """A copy with other inputs (and attrs), keeping the name, the user's location and the origin."""
        from ..ops.registry import apply
        node = apply(self.op, inputs, self.attrs if attrs is None else attrs, name=self.name, location=self.location)
        node.origin = self.origin
        return node

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def named(self) -> bool:
        """Whether the node has a name of the user's (``name=``, ``h.name = "h"``, gc.grad's ``dW1`` for the
        gradient of a named ``W1``) rather than the ``op_id`` Node gives, which the passes' copies keep."""
        prefix, _, number = self.name.rpartition("_")
        return not (number.isdigit() and prefix in _op_names)

    def __repr__(self):
        return f"<{self.op.name} {self.name}: {self.dtype}{format_shape(self.shape)}>"

    # Jupyter shows a tensor as the graph computing it (when Graphviz is installed) or as its formula.
    def _repr_svg_(self):
        from ..viz.dot import svg
        return svg(self)

    def _repr_latex_(self):
        from ..viz.explain import explain
        return explain(self)._repr_latex_()

    def __hash__(self):
        return self.id

    def __eq__(self, other):
        # Identity, so nodes can key dicts; use gc.equal for the elementwise comparison.
        return self is other

    def __bool__(self):
        raise TypeError(f"the truth value of a symbolic tensor is unknown until it is run ({self.name})")

    def __iter__(self):
        # Without this, Python iterates through __getitem__: x[0], x[1], ... without end on a symbolic axis.
        raise TypeError(f"a symbolic tensor cannot be iterated ({self.name}, shape {format_shape(self.shape)}): "
                        f"its values exist only when a function runs; index it (x[0]) or pass a list of tensors")

    def __len__(self):
        raise TypeError(f"a symbolic tensor has no len() ({self.name}): use .shape[0], which may be a "
                        f"symbolic dimension")

    # Operators build graph nodes; the ops package is imported lazily because it imports this module.
    def __add__(self, other): return _ops().add(self, other)
    def __radd__(self, other): return _ops().add(other, self)
    def __sub__(self, other): return _ops().subtract(self, other)
    def __rsub__(self, other): return _ops().subtract(other, self)
    def __mul__(self, other): return _ops().multiply(self, other)
    def __rmul__(self, other): return _ops().multiply(other, self)
    def __truediv__(self, other): return _ops().divide(self, other)
    def __rtruediv__(self, other): return _ops().divide(other, self)
    def __floordiv__(self, other): return _ops().floor_divide(self, other)
    def __rfloordiv__(self, other): return _ops().floor_divide(other, self)
    def __mod__(self, other): return _ops().mod(self, other)
    def __rmod__(self, other): return _ops().mod(other, self)
    def __pow__(self, other): return _ops().power(self, other)
    def __rpow__(self, other): return _ops().power(other, self)
    def __matmul__(self, other): return _ops().matmul(self, other)
    def __rmatmul__(self, other): return _ops().matmul(other, self)
    def __neg__(self): return _ops().negative(self)
    def __abs__(self): return _ops().abs(self)
    def __gt__(self, other): return _ops().greater(self, other)
    def __lt__(self, other): return _ops().less(self, other)
    def __ge__(self, other): return _ops().greater_equal(self, other)
    def __le__(self, other): return _ops().less_equal(self, other)
    def __getitem__(self, index): return _ops().getitem(self, index)

    @property
    def T(self):
        return _ops().transpose(self)

    def reshape(self, *shape):
        return _ops().reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)

    def sum(self, axis=None, keepdims=False): return _ops().sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return _ops().mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return _ops().max(self, axis, keepdims)
    def astype(self, dtype): return _ops().cast(self, dtype)

    # Variables: the current value lives beside the node; functions read and update it.
    @property
    def value(self) -> np.ndarray:
        self._require_variable()
        return self.storage.copy()

    @value.setter
    def value(self, new_value):
        self._require_variable()
        array = np.asarray(new_value)
        if array.shape != self.shape:
            raise ValueError(f"variable {self.name} has shape {self.shape}, cannot assign shape {array.shape}")
        if not dtypes.can_feed(array.dtype, self.dtype):
            raise ValueError(f"variable {self.name} is {self.dtype}, cannot assign {array.dtype} values")
        problem = dtypes.feed_problem(array, self.dtype, "variable")  # as for inputs: no value may change
        if problem:
            raise ValueError(f"variable {self.name}: {problem}")
        self.storage[...] = array

    def _require_variable(self):
        if self.op.name != "variable":
            raise AttributeError(f"{self.name} is a {self.op.name}, not a variable: it has no value")


def _ops():
    import graphc.ops
    return graphc.ops
