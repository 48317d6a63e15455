"""Clean-up passes: common subexpressions, constant folding, algebraic simplification."""
import numpy as np
import sympy

from ..graph import Graph
from ..graph.shapes import broadcast_shapes, is_static, shapes_equal
from ..ops.elementwise import make
from ..ops.nn import log_softmax
from ..ops.reduce import argmax, sum as reduce_sum
from ..ops.expr import arg, dim_symbols
from ..ops.registry import apply
from ..ops.shape import broadcast_to, reshape, transpose
from ..ops.source import constant
from .rewrite import rebuild

MAX_FOLDED_ELEMENTS = 1 << 20  # folding must not turn a cheap broadcast into megabytes of constant
RELU = sympy.Max(arg(0), 0)  # built once: sympy.Max compares its arguments whenever one is made (~1 ms)


def _frozen(value):
    if isinstance(value, np.ndarray):
        return (value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def eliminate_common_subexpressions(graph: Graph) -> Graph:
    """Two nodes with the same op, attributes and inputs compute the same value: keep the first."""
    seen = {}

    def rule(node, _original):
        key = (node.op.name, tuple(i.id for i in node.inputs),
               tuple(sorted((k, _frozen(v)) for k, v in node.attrs.items())))
        return seen.setdefault(key, node)  # sources never get here: rebuild only offers nodes with inputs
    return rebuild(graph, rule)


def fold_constants(graph: Graph) -> Graph:
    """An op whose inputs are all constants is evaluated now (numpy reference) and becomes a constant."""
    def rule(node, _original):
        if not all(i.op.name == "constant" for i in node.inputs) or not is_static(node.shape):
            return None
        if node.op.name == "elementwise" and dim_symbols(node.attrs["expr"]):
            return None
        if int(np.prod(node.shape)) > MAX_FOLDED_ELEMENTS:
            return None
        value = node.op.reference(node, [i.attrs["value"] for i in node.inputs], {})
        return constant(np.asarray(value, dtype=node.dtype), name=node.name)
    return rebuild(graph, rule)


def simplify(graph: Graph) -> Graph:
    """Algebra across nodes (within an elementwise body, only what sympy does as gradients are built).

    transpose(transpose(x)) => transpose(x) with composed axes (or x)
    reshape(reshape(x)) => reshape(x)
    reduce_sum(broadcast_to(x)) over broadcast axes only => x * (number of copies)
    e(broadcast_to(x), y) => e(x, y) when x broadcasts against y to the same shape (e broadcasts itself)
    """
    def rule(node, _original):
        name, first = node.op.name, node.inputs[0] if node.inputs else None
        if name == "elementwise" and any(i.op.name == "broadcast_to" for i in node.inputs):
            return _broadcast_in_body(node)
        if name == "transpose" and first.op.name == "transpose":
            inner, outer = first.attrs["axes"], node.attrs["axes"]
            return transpose(first.inputs[0], tuple(inner[a] for a in outer))
        if name == "reshape" and first.op.name == "reshape":
            return reshape(first.inputs[0], node.shape)
        if name == "reduce_sum" and first.op.name == "broadcast_to":
            return _sum_of_broadcast(node, first)
        return None
    return rebuild(graph, rule)


def _broadcast_in_body(node):
    unbroadcast = [i.inputs[0] if i.op.name == "broadcast_to" else i for i in node.inputs]
    try:
        if shapes_equal(broadcast_shapes(*[i.shape for i in unbroadcast]), node.shape):
            return make(node.attrs["label"], node.attrs["expr"], unbroadcast, node.dtype)
    except ValueError:
        pass
    return None


def _sum_of_broadcast(node, broadcast):
    """Summing copies of x over the axes broadcast_to made is multiplying x by the number of copies."""
    source = broadcast.inputs[0]
    extra = broadcast.ndim - source.ndim
    copied = [a for a in range(broadcast.ndim)
              if a < extra or (source.shape[a - extra] == 1 and broadcast.shape[a] != 1)]
    axes = node.attrs["axes"]
    if not set(axes) <= set(copied):
        return None
    copies = sympy.Mul(*[sympy.sympify(broadcast.shape[a]) for a in axes])
    kept = tuple(1 if a in axes else d for a, d in enumerate(broadcast.shape))
    kept_shape = kept if node.attrs["keepdims"] else tuple(d for a, d in enumerate(kept) if a not in axes)
    aligned = reshape(source, (1,) * extra + source.shape)
    summed = make("sum_of_copies", arg(0) * copies, [aligned], node.dtype)
    return reshape(broadcast_to(summed, kept), kept_shape)


def fold_transposes_into_matmul(graph: Graph) -> Graph:
    """matmul(transpose(a), b) => matmul(a, b, transpose_a=not ta) when the transpose swaps the last two axes."""
    def rule(node, _original):
        if node.op.name != "matmul":
            return None
        attrs, inputs, changed = dict(node.attrs), list(node.inputs), False
        for index, flag in ((0, "transpose_a"), (1, "transpose_b")):
            operand = inputs[index]
            swap = tuple(range(operand.ndim - 2)) + (operand.ndim - 1, operand.ndim - 2)
            if operand.op.name == "transpose" and operand.attrs["axes"] == swap:
                inputs[index], attrs[flag], changed = operand.inputs[0], not attrs[flag], True
        return apply(node.op, inputs, attrs, name=node.name, location=node.location) if changed else None
    return rebuild(graph, rule)




def stable_log_softmax(graph: Graph) -> Graph:
    """log(softmax(z)) => log_softmax(z): no log of an underflowed 0 however the user wrote the loss;
    and its gradient, which gc.grad built before this pass as the softmax backward of g / s:
    s * (g/s - sum(g/s * s)) => g - s * sum(g), with no division by an underflowed s."""
    def rule(node, _original):
        if node.op.name != "elementwise":
            return None
        if node.attrs["expr"] == sympy.log(arg(0)):
            source = node.inputs[0]
            if source.op.name == "softmax" and source.dtype == node.dtype:
                return log_softmax(source.inputs[0], source.attrs["axis"])
        return _log_softmax_gradient(node)
    return rebuild(graph, rule)


def _log_softmax_gradient(node):
    """The rewrite of dsoftmax(s, g/s, sum(g/s * s)), or None if ``node`` is not that."""
    if node.attrs["expr"] != arg(0) * (arg(1) - arg(2)) or len(node.inputs) != 3:
        return None
    softmax, quotient, total = node.inputs
    if softmax.op.name != "softmax" or quotient.op.name != "elementwise" or total.op.name != "reduce_sum":
        return None
    axis = softmax.attrs["axis"]
    if (quotient.attrs["expr"] != arg(0) / arg(1) or quotient.inputs[1] is not softmax
            or total.attrs != {"axes": (axis,), "keepdims": True}):
        return None
    product = total.inputs[0]
    if (product.op.name != "elementwise" or product.attrs["expr"] != arg(0) * arg(1)
            or {i.id for i in product.inputs} != {quotient.id, softmax.id}):
        return None
    g = quotient.inputs[0]
    summed = reduce_sum(g, axis, keepdims=True)
    return make("dlog_softmax", arg(0) - arg(1) * arg(2), [g, softmax, summed], node.dtype)


def softmax_from_log_softmax(graph: Graph) -> Graph:
    """A classifier computes both softmax and log_softmax of its logits (the loss one, the accuracy and the
    gradient the other): keep one row-wise pass.

    argmax(softmax(z)) => argmax(z): softmax is increasing. (Rounding could make two nearly equal logits
        equal probabilities; the logits' argmax is then the more exact answer.)
    softmax(z) => exp(log_softmax(z)) when log_softmax(z) is computed anyway: the exp is elementwise and
        fuses into the softmax's readers (within 2 ulp of softmax).
    """
    computed = {(n.inputs[0].id, n.attrs["axis"]) for n in graph.nodes if n.op.name == "log_softmax"}
    replaced = {}

    def rule(node, original):
        source = original.inputs[0]
        if node.op.name == "argmax" and source.op.name == "softmax" and source.attrs["axis"] == node.attrs["axis"]:
            return argmax(replaced[source.inputs[0].id], node.attrs["axis"])
        if node.op.name == "softmax" and (source.id, node.attrs["axis"]) in computed:
            return make("exp", sympy.exp(arg(0)), [log_softmax(node.inputs[0], node.attrs["axis"])], node.dtype)
        return None
    return rebuild(graph, rule, replaced)


def relu_mask_from_output(graph: Graph) -> Graph:
    """g * Heaviside(z) => g * Heaviside(relu(z)) when relu(z) exists: the backward pass then reads the
    activation instead of the pre-activation, so z has one reader and dot+bias+relu fuse into one kernel."""
    relu_of = {}
    for node in graph.nodes:
        if node.op.name == "elementwise" and node.attrs["expr"] == RELU:
            relu_of.setdefault(node.inputs[0].id, node)

    replaced = {}

    def rule(node, original):
        if node.op.name != "elementwise":
            return None
        body, inputs, changed = node.attrs["expr"], list(node.inputs), False
        for index, source in enumerate(original.inputs):
            relu = relu_of.get(source.id)
            if relu is None or relu is original or relu.id not in replaced:
                continue
            activation, symbol = replaced[relu.id], arg(index)
            masked = body.xreplace({sympy.Heaviside(symbol): sympy.Dummy("mask")})
            if symbol in masked.free_symbols:
                continue  # z is used for more than its sign
            inputs[index], changed = activation, True
        return make(node.attrs["label"], body, inputs, node.dtype) if changed else None
    return rebuild(graph, rule, replaced)
