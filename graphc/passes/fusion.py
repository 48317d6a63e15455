"""Fusion passes: fewer, fatter kernels.

fuse_elementwise:        e2(e1(x), y) => e(x, y) with e = e2's body with e1's body substituted; the same into
                         and out of random nodes (their values are then made in the kernel that uses them):
                         random(e(x), ...) => random'(x, ...), e(random(x, ...), y) => random'(x, y, ...)
fuse_matmul_epilogue:    e(matmul(a, b), bias, ...) => fused_matmul(a, b, bias, ...) with e as the epilogue
                         (and e(conv(x, w), bias, ...) => fused_conv(x, w, bias, ...);
                         e(max_pool2d_grad(x, g), mask) => fused_max_pool2d_grad(x, g, mask)), then
                         transpose(d, p), sum(d, axes p keeps to themselves) of such a d =>
                         d' = fused_max_pool2d_grad(..., axes=p), sum(d'): the gradient stored transposed
fold_take_into_matmul:   matmul(take(x, idx, axis=0), b) => matmul(take'(x, idx), b), take' never computed: when
                         every use of the take is as a 2-D product's A operand, the GEMMs read A's rows (or, with
                         transpose_a, its k's) from x through idx (graphc/lower/gather.py)
"""
from collections import Counter

import numpy as np

from ..graph import Graph, dtypes
from ..graph.shapes import broadcast_shapes, dims_equal, shapes_equal
from ..ops.elementwise import indicator, make
from ..ops.expr import arg, unevaluated_xreplace
from ..ops.conv import fused_conv_op
from ..ops.linalg import fused_matmul_op
from ..ops.pool import fused_max_pool2d_grad_op, windows_tile
from ..ops.random import SOURCES, fits, random_op
from ..ops.registry import apply
from .rewrite import consumer_counts, rebuild


def _body_as_operand(producer, consumer_dtype):
    """The producer's body as a value inside a consumer: a boolean body becomes 1/0 in arithmetic."""
    body = producer.attrs["expr"]
    if producer.dtype == "bool" and consumer_dtype != "bool":
        return indicator(body)
    return body


def _fusable_producer(producer, consumer, uses: int) -> bool:
    """Fuse only single-use producers whose value the consumer reads at the producer's own precision."""
    if producer.op.name != "elementwise" or uses != 1:
        return False
    if producer.dtype == "bool":
        # Inside the consumer a comparison's operands are converted to the consumer's dtype first:
        # int64 operands compared in float32 could tie where they differ.
        return consumer.dtype == "bool" or all(np.can_cast(i.dtype, consumer.dtype, "safe")
                                                for i in producer.inputs)
    # A rounding cast (float64 -> float32) stays a node: inside the consumer's body its operand would be
    # read unrounded (the reference evaluates a body at numpy's promotion of its operands).
    exact = all(np.can_cast(i.dtype, producer.dtype, "safe") for i in producer.inputs)
    return dtypes.is_float(producer.dtype) and producer.dtype == consumer.dtype and exact


def _substituted(node, inputs, uses, take) -> tuple:
    """(body, operands, whether any input was taken): ``node``'s body with each input that ``take(input,
    its use count)`` accepts replaced by the input's body over the input's own operands."""
    operands, substitutions, fused_any = [], {}, False
    for index, (producer, count) in enumerate(zip(inputs, uses)):
        if take(producer, count):
            shift = {arg(i): arg(len(operands) + i) for i in range(len(producer.inputs))}
            substitutions[arg(index)] = unevaluated_xreplace(_body_as_operand(producer, node.dtype), shift)
            operands.extend(producer.inputs)
            fused_any = True
        else:
            substitutions[arg(index)] = arg(len(operands))
            operands.append(producer)
    return unevaluated_xreplace(node.attrs["expr"], substitutions), operands, fused_any


def fuse_elementwise(graph: Graph) -> Graph:
    counts = consumer_counts(graph)

    def rule(node, original):
        uses = [counts[i.id] for i in original.inputs]
        if node.op is random_op:
            return _fuse_into_random(node, uses)
        if node.op.name != "elementwise":
            return None
        body, operands, fused_any = _substituted(
            node, node.inputs, uses, lambda producer, count: _fusable_producer(producer, node, count))
        fused = make(node.attrs["label"], body, operands, node.dtype) if fused_any else node
        random_uses = {id(i): count for i, count in zip(node.inputs, uses) if i.op is random_op}
        with_random = _fuse_random_producer(fused, random_uses)
        if with_random is not None:
            return with_random
        return fused if fused_any else None
    return rebuild(graph, rule)


# ---- random nodes (graphc.ops.random): a body with the element's random value as one more operand -----
def _fuse_into_random(node, uses):
    """random(e(x), key, step) => random'(x, key, step): single-use elementwise producers whose operands the
    random kernel can read at its element index."""
    def take(producer, count):
        return _fusable_producer(producer, node, count) and all(fits(i.shape, node.shape) for i in producer.inputs)
    body, operands, fused_any = _substituted(node, node.inputs, uses, take)
    if not fused_any:
        return None
    return apply(random_op, operands, dict(node.attrs, expr=body), name=node.name, location=node.location)


def _fuse_random_producer(node, random_uses):
    """e(random(x, key, step), y) => random'(x, y, key, step): an elementwise node of the random producer's
    shape and dtype, whose other operands the random kernel can read at its element index, absorbs the
    producer (the first, if several); the producer's key and step move to the end."""
    if node.op.name != "elementwise":
        return None
    for index, producer in enumerate(node.inputs):
        others = [i for i in node.inputs if i is not producer]
        if (random_uses.get(id(producer)) == 1 and node.dtype == producer.dtype
                and shapes_equal(node.shape, producer.shape) and all(fits(i.shape, node.shape) for i in others)):
            break
    else:
        return None
    body, operands, _ = _substituted(node, node.inputs, [1] * len(node.inputs), lambda p, _: p is producer)
    sources_at = index + len(producer.inputs) - SOURCES  # the producer's inputs replace it, in order
    moved = list(range(sources_at, sources_at + SOURCES))
    order = [k for k in range(len(operands)) if k not in moved] + moved
    body = unevaluated_xreplace(body, {arg(k): arg(position) for position, k in enumerate(order)})
    attrs = dict(producer.attrs, expr=body, label=f"{producer.attrs['label']}+{node.attrs['label']}")
    return apply(random_op, [operands[k] for k in order], attrs, name=node.name, location=node.location)


def _epilogue_operands_fit(product, extras) -> bool:
    """Whether the GEMM's epilogue can read each extra operand at an output element: numpy broadcasting
    onto a matmul's (M, N) product; for a convolution, read as (pixels, F), the output's shape or a row
    broadcast along the channels (a bias); for a pooling gradient, the output's shape."""
    try:
        broadcast_shapes(product.shape, *[e.shape for e in extras])
    except ValueError:
        return False
    if product.op.name == "max_pool2d_grad":
        return all(shapes_equal(e.shape, product.shape) for e in extras)
    if product.op.name == "conv":
        return all(shapes_equal(e.shape, product.shape) or all(dims_equal(d, 1) for d in e.shape[:-1])
                   for e in extras)
    return True


_FUSED = {"matmul": fused_matmul_op, "conv": fused_conv_op, "max_pool2d_grad": fused_max_pool2d_grad_op}


def fuse_matmul_epilogue(graph: Graph) -> Graph:
    """An elementwise consumer covering a single-use matmul's (or convolution's) whole output becomes the
    GEMM's epilogue; one covering a max-pooling gradient (the relu mask of the layer below) becomes the
    epilogue of the pooling gradient's kernel, so the gradient is written once, masked, and then (see
    _store_pool_gradients_transposed) written in the layout its filter gradient reads."""
    counts = consumer_counts(graph)

    def rule(node, original):
        if node.op.name != "elementwise":
            return None
        for index, (product, product_original) in enumerate(zip(node.inputs, original.inputs)):
            if product.op.name not in _FUSED or counts[product_original.id] != 1:
                continue
            if product.op.name == "matmul" and product.ndim != 2:
                continue
            if not shapes_equal(node.shape, product.shape) or node.dtype != product.dtype:
                continue
            extras = [i for j, i in enumerate(node.inputs) if j != index]
            if product in extras or not _epilogue_operands_fit(product, extras):
                continue
            order = [index] + [j for j in range(len(node.inputs)) if j != index]
            epilogue = node.attrs["expr"].xreplace({arg(j): arg(k) for k, j in enumerate(order)})
            attrs = dict(product.attrs, epilogue=epilogue, label=f"{product.op.name}+{node.attrs['label']}")
            return apply(_FUSED[product.op.name], [*product.inputs, *extras], attrs, name=node.name,
                         location=node.location)
        return None
    return _store_pool_gradients_transposed(rebuild(graph, rule))


def _store_pool_gradients_transposed(graph: Graph) -> Graph:
    """transpose(d, p) and sum(d, over axes that p permutes among themselves) of a fused max-pooling gradient d
    whose windows tile the input => d' = d stored transposed (fused_max_pool2d_grad(..., axes=p)) and sum(d'):
    the filter gradient of the layer below reads d' (its batch as channels), and the transpose kernel, which
    moved all of d again, is gone. The sum adds the same elements in d''s order."""
    readers = {}
    for node in graph.nodes:
        for operand in node.inputs:
            readers.setdefault(operand.id, []).append(node)
    counts = consumer_counts(graph)
    layouts = {node.id: axes for node in graph.nodes if node.op is fused_max_pool2d_grad_op
               and windows_tile(node.attrs)  # the kernel writes each element once, so any layout costs the same
               and (axes := _transposed_layout(readers.get(node.id, []), counts[node.id])) is not None}
    stored = {}

    def rule(node, original):
        source = original.inputs[0]
        if source.id not in layouts:
            return None
        if source.id not in stored:
            gradient = node.inputs[0]
            stored[source.id] = apply(gradient.op, gradient.inputs, dict(gradient.attrs, axes=layouts[source.id]),
                                      location=gradient.location)
        if node.op.name == "transpose":
            return stored[source.id]
        return apply(node.op, [stored[source.id]], node.attrs, name=node.name, location=node.location)
    return rebuild(graph, rule)


def _transposed_layout(readers, uses):
    """The axes of the transposes among ``readers`` if every reader is such a transpose, keeping the channels
    last, or a sum over axes those axes permute among themselves, and nothing else reads the value; else None."""
    transposes = {r.attrs["axes"] for r in readers if r.op.name == "transpose"}
    if len(transposes) != 1 or len(readers) != uses:
        return None
    (axes,) = transposes
    for reader in readers:
        if reader.op.name == "transpose":
            continue
        if reader.op.name != "reduce_sum" or any(axes[k] != k for k in range(4) if k not in reader.attrs["axes"]):
            return None
    return axes if axes[3] == 3 else None


def read_only_as_gemm_a(graph: Graph) -> set:
    """The ids of the nodes whose every use is as the A operand of a 2-D product (its input 0, and no other
    input; not an output or an update): a GEMM can read such a value's rows through indices instead."""
    uses = consumer_counts(graph)
    as_a = Counter(node.inputs[0].id for node in graph.nodes if node.op.kind == "matmul" and node.ndim == 2
                   and all(i is not node.inputs[0] for i in node.inputs[1:]))
    return {node_id for node_id, count in as_a.items() if uses[node_id] == count}


def fold_take_into_matmul(graph: Graph) -> Graph:
    """A take along axis 0 read only as the A operand of 2-D products is marked ``into_matmul``: the products'
    GEMMs read its rows from x through its indices, and nothing computes it (graphc/lower/gather.py)."""
    folded = read_only_as_gemm_a(graph)

    def rule(node, original):
        if node.op.name != "take" or node.attrs["axis"] != 0 or original.id not in folded:
            return None
        return node.rebuilt(node.inputs, dict(node.attrs, into_matmul=True))
    return rebuild(graph, rule)
