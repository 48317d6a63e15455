"""What an op is: one record holding its shape/dtype rule, numpy reference, gradient rule and lowering hint.

Every op module defines its ops with ``Op(...)`` next to the user-facing
function that builds them, so an op is read in one screen (as in JAX's lax.py).
"""
from dataclasses import dataclass
from typing import Callable

from ..graph.node import GraphError, Node
from ..graph.shapes import format_shape


@dataclass(frozen=True, eq=False)
class Op:
    """An operation kind.

    infer(inputs, attrs) -> (shape, dtype); raises ValueError with a sentence on bad operands.
    reference(node, arrays, dims) -> np.ndarray; ``dims`` binds symbolic dimensions to ints.
    vjp(node, g) -> one gradient node (or None: no gradient flows) per input; ``vjp=None``
        marks an op that is not differentiable at all.
    kind: lowering hint for backends and passes ('source', 'elementwise', 'matmul',
        'layout', 'reduce', 'nn').
    """

    name: str
    infer: Callable
    reference: Callable
    vjp: Callable | None
    kind: str

    def display_name(self, node) -> str:
        return node.attrs.get("label", self.name)

    def describe_attrs(self, node) -> str:
        # dtype and shape are printed after the colon; a constant's value would swamp the line.
        shown = {k: v for k, v in node.attrs.items() if k not in ("label", "value", "dtype", "shape")}
        return ", ".join(f"{k}={v}" for k, v in shown.items())


def apply(op: Op, inputs, attrs=None, name=None, location=None) -> Node:
    """Build a node of ``op``, checking operands now so errors point at the user's line."""
    attrs = attrs or {}
    node_location = location
    try:
        shape, dtype = op.infer(list(inputs), attrs)
    except ValueError as error:
        from ..graph.node import user_location
        shapes = ", ".join(f"{format_shape(i.shape)} {i.dtype}" for i in inputs)
        raise GraphError(f"{attrs.get('label', op.name)}: {error}; operands: {shapes} "
                         f"(at {node_location or user_location()})") from None
    return Node(op, inputs, attrs, shape, dtype, name=name, location=node_location)
