"""Reverse-mode differentiation: gradients built as new graph nodes by the chain rule.

One reversed sweep over the topological order of the cost's graph: each
node's gradient is the sum of what its consumers sent it (the chain rule),
and it sends each input ``vjp(node, g)``.
"""
import numpy as np

from .graph import dtypes, topo_order
from .graph.node import Node, origin, user_location
from .graph.shapes import format_shape
from .ops.elementwise import add
from .ops.shape import broadcast_to
from .ops.source import constant


class GradientError(ValueError):
    """The requested gradient does not exist: non-scalar cost, non-differentiable op, unconnected input."""


def grad(cost: Node, wrt, unconnected: str = "raise"):
    """d cost / d w for each ``w`` in ``wrt`` (a node or a list of nodes), as graph nodes.

    ``unconnected='zero'`` returns zeros for a ``w`` the cost does not depend on
    instead of raising.
    """
    if unconnected not in ("raise", "zero"):
        raise ValueError(f"unconnected must be 'raise' or 'zero', got {unconnected!r}")
    single = isinstance(wrt, Node)
    targets = [wrt] if single else list(wrt)
    _check_cost(cost)
    order = topo_order([cost])
    depends = _depending_on(order, targets)
    with origin("backward"):
        return _backward(cost, targets, order, depends, single, unconnected)


def _backward(cost, targets, order, depends, single, unconnected):
    grads: dict[int, Node] = {cost.id: constant(np.ones((), dtype=cost.dtype))}
    blocked = []  # integer-valued nodes that stop the gradient on its way to a target
    for node in reversed(order):
        g = grads.get(node.id)
        if g is None or node.id not in depends or not node.inputs:
            continue
        if node.op.vjp is None:
            raise GradientError(f"{node.op.name} is not differentiable, and the cost depends on "
                                f"{_names(targets)} through it ({node.name}, at {node.location})")
        for inp, contribution in zip(node.inputs, node.op.vjp(node, g)):
            if inp.id not in depends:
                continue
            if contribution is None:
                blocked.append(inp)
                continue
            previous = grads.get(inp.id)
            grads[inp.id] = contribution if previous is None else add(previous, contribution)

    results = [_result(t, grads, blocked, unconnected) for t in targets]
    return results[0] if single else results


def _check_cost(cost):
    if not isinstance(cost, Node):
        raise GradientError(f"grad: the cost must be a graph tensor, got {type(cost).__name__}")
    if cost.shape != ():
        raise GradientError(f"grad: the cost must be a scalar, got shape {format_shape(cost.shape)} "
                            f"({cost.name}, at {cost.location}); reduce it first, e.g. gc.mean(loss)")
    if not dtypes.is_float(cost.dtype):
        raise GradientError(f"grad: the cost must be a float, got {cost.dtype} ({cost.name}, at {cost.location})")


def _depending_on(order, targets) -> set:
    """Ids of the nodes whose value depends on a target: only they need a gradient."""
    depends = {t.id for t in targets}
    for node in order:
        if any(inp.id in depends for inp in node.inputs):
            depends.add(node.id)
    return depends


def _result(target, grads, blocked, unconnected):
    g = grads.get(target.id)
    if g is not None:
        return g
    if unconnected == "zero":
        return broadcast_to(constant(np.zeros((), dtype=target.dtype)), target.shape)
    if not dtypes.is_float(target.dtype):
        raise GradientError(f"grad: cannot differentiate with respect to {target.name}, a {target.dtype} tensor")
    reason = "does not depend on"
    if blocked:
        via = ", ".join(f"{n.op.display_name(n)} {n.name} at {n.location}" for n in blocked[:3])
        reason = f"depends only through integer or boolean values ({via}) on"
    raise GradientError(f"grad: the cost {reason} {target.name} (created at {target.location}); "
                        f"pass unconnected='zero' for a zero gradient (grad called at {user_location()})")


def _names(nodes):
    return ", ".join(n.name for n in nodes)
