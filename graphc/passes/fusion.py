"""Fusion passes: fewer, fatter kernels.

fuse_elementwise:        e2(e1(x), y) => e(x, y) with e = e2's body with e1's body substituted
fuse_matmul_epilogue:    e(matmul(a, b), bias, ...) => fused_matmul(a, b, bias, ...) with e as the epilogue
                         (and e(conv(x, w), bias, ...) => fused_conv(x, w, bias, ...))
"""
import numpy as np

from ..graph import Graph, dtypes
from ..graph.shapes import broadcast_shapes, dims_equal, shapes_equal
from ..ops.elementwise import indicator, make
from ..ops.expr import arg, unevaluated_xreplace
from ..ops.conv import fused_conv_op
from ..ops.linalg import fused_matmul_op
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


def fuse_elementwise(graph: Graph) -> Graph:
    counts = consumer_counts(graph)

    def rule(node, original):
        if node.op.name != "elementwise":
            return None
        operands, substitutions, fused_any = [], {}, False
        for index, (producer, producer_original) in enumerate(zip(node.inputs, original.inputs)):
            if _fusable_producer(producer, node, counts[producer_original.id]):
                shift = {arg(i): arg(len(operands) + i) for i in range(len(producer.inputs))}
                substitutions[arg(index)] = unevaluated_xreplace(_body_as_operand(producer, node.dtype), shift)
                operands.extend(producer.inputs)
                fused_any = True
            else:
                substitutions[arg(index)] = arg(len(operands))
                operands.append(producer)
        if not fused_any:
            return None
        return make(node.attrs["label"], unevaluated_xreplace(node.attrs["expr"], substitutions), operands, node.dtype)
    return rebuild(graph, rule)


def _epilogue_operands_fit(product, extras) -> bool:
    """Whether the GEMM's epilogue can read each extra operand at an output element: numpy broadcasting
    onto a matmul's (M, N) product; for a convolution, read as (pixels, F), the output's shape or a row
    broadcast along the channels (a bias)."""
    try:
        broadcast_shapes(product.shape, *[e.shape for e in extras])
    except ValueError:
        return False
    if product.op.name == "conv":
        return all(shapes_equal(e.shape, product.shape) or all(dims_equal(d, 1) for d in e.shape[:-1])
                   for e in extras)
    return True


_FUSED = {"matmul": fused_matmul_op, "conv": fused_conv_op}


def fuse_matmul_epilogue(graph: Graph) -> Graph:
    """An elementwise consumer covering a single-use matmul's (or convolution's) whole output becomes the
    GEMM's epilogue."""
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
    return rebuild(graph, rule)
