"""Reverse-mode differentiation: gradients built as new graph nodes by the chain rule.

One reversed sweep over the topological order of the cost's graph: each
node's gradient is the sum of what its consumers sent it (the chain rule),
and it sends each input ``vjp(node, g)``. ``jacobian`` and ``hessian`` are
graphs too: one sweep per output element, the rows stacked.
"""
import numpy as np

from .graph import dtypes, topo_order
from .graph.node import Node, origin, user_location
from .graph.shapes import format_shape, is_static, size
from .ops.elementwise import add
from .ops.reduce import sum as reduce_sum
from .ops.shape import broadcast_to, reshape, stack
from .ops.source import constant


class GradientError(ValueError):
    """The requested gradient does not exist: non-scalar cost, non-differentiable op, unconnected input."""


def grad(cost: Node, wrt, unconnected: str = "raise"):
    """d cost / d w for each ``w`` in ``wrt`` (a node or a list of nodes), as graph nodes.

    ``unconnected='zero'`` returns zeros for a ``w`` the cost does not depend on
    instead of raising. The gradient of a tensor the user named is named after it, ``dW1`` for
    ``W1``, as pictures and ``gc.explain`` show it (a gradient shared by two tensors, as ``logits``
    and ``h @ W2`` of ``logits = h @ W2 + b2`` share it, keeps the first one's name).
    """
    single = isinstance(wrt, Node)
    targets = [wrt] if single else list(wrt)
    gradients = _gradients(cost, targets, unconnected)
    for target, gradient in zip(targets, gradients):
        if target.named and not gradient.named:  # every gradient is a node this call built
            gradient.name = f"d{target.name}"
    return gradients[0] if single else gradients


def _gradients(cost, targets, unconnected):
    """grad's gradients, as a list."""
    if unconnected not in ("raise", "zero"):
        raise ValueError(f"unconnected must be 'raise' or 'zero', got {unconnected!r}")
    _check_cost(cost)
    order = topo_order([cost])
    depends = _depending_on(order, targets)
    with origin("backward"):
        return _backward(cost, targets, order, depends, unconnected)


def jacobian(y: Node, wrt, unconnected: str = "raise"):
    """d y / d w as a graph of shape ``y.shape + w.shape``, for each ``w`` in ``wrt`` (a node or a list).

    One reverse sweep per element of ``y`` (``grad(y[i], w)``), the rows stacked: fine for the small
    ``y`` a Jacobian is read for, and it needs nothing vectorized, so every op with a vjp works. ``y``
    needs a static size; an element of ``y`` that does not depend on ``w`` gives a zero row, and
    ``unconnected`` says what happens when none does (as in ``grad``).
    """
    single = isinstance(wrt, Node)
    targets = [wrt] if single else list(wrt)
    if not isinstance(y, Node):
        raise GradientError(f"jacobian: y must be a graph tensor, got {type(y).__name__}")
    if not is_static(y.shape):
        raise GradientError(f"jacobian: y has the symbolic shape {format_shape(y.shape)} ({y.name}, at {y.location}); "
                            f"the Jacobian takes one gradient per element of y, so y needs a static size: "
                            f"slice it (y[:4]) or reshape it to static dims first")
    if y.shape == ():
        return grad(y, wrt, unconnected)
    if not dtypes.is_float(y.dtype):
        raise GradientError(f"jacobian: y must be a float, got {y.dtype} ({y.name}, at {y.location})")
    if unconnected == "raise":
        _gradients(reduce_sum(y), targets, unconnected)  # raises, saying why, when y does not depend on a target
    flat = reshape(y, (size(y.shape),))
    rows = [_gradients(flat[i], targets, unconnected="zero") for i in range(size(y.shape))]
    results = []
    for k, target in enumerate(targets):
        if not rows:
            results.append(broadcast_to(constant(np.zeros((), dtype=y.dtype)), y.shape + target.shape))
            continue
        with origin("backward"):
            results.append(reshape(stack([row[k] for row in rows]), y.shape + target.shape))
    return results[0] if single else results


def hessian(cost: Node, wrt, unconnected: str = "raise"):
    """d^2 cost / d w^2 as a graph of shape ``w.shape + w.shape`` (for a vector w, the (n, n) matrix
    Theano's hessian gives), for each ``w`` in ``wrt``: the Jacobian of ``grad(cost, w)``, which
    needs ``w`` to have a static size."""
    single = isinstance(wrt, Node)
    targets = [wrt] if single else list(wrt)
    for target in targets:
        if isinstance(target, Node) and not is_static(target.shape):
            raise GradientError(f"hessian: {target.name} has the symbolic shape {format_shape(target.shape)}; the "
                                f"Hessian takes one gradient per element of it, so it needs a static size")
    gradients = grad(cost, targets, unconnected)
    results = [jacobian(g, t, unconnected="zero") for g, t in zip(gradients, targets)]
    return results[0] if single else results


def _backward(cost, targets, order, depends, unconnected):
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

    return [_result(t, grads, blocked, unconnected) for t in targets]


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
