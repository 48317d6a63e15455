"""Mixed precision: which products read bfloat16 operands (Keras 3's ``mixed_bfloat16`` policy, PyTorch autocast).

    matmul(a, b) => matmul(a, b, precision=bfloat16)   for float32 products, forward and backward
    conv(x, w)   => conv(x, w, precision=bfloat16)     (fused_conv, conv_transpose alike)

A product marked ``precision=bfloat16`` rounds its two operands to bfloat16 (round to nearest even, as
``ml_dtypes``) and sums their products in float32: its result stays float32. Everything else stays float32:
the variables (master weights), the optimizer's state, softmax, losses and reductions. The mark is an
attribute of the product, not a cast node, so the operands are rounded where the GEMM packs them (never
stored twice) and the reference backend rounds them with ml_dtypes before its float32 numpy product.
"""
from ..graph import Graph
from .rewrite import rebuild

PRECISIONS = ("float32", "mixed_bfloat16")
ROUNDED_OPS = ("matmul", "fused_matmul", "conv", "fused_conv", "conv_transpose")  # operands: inputs 0 and 1


def check_precision(precision) -> str:
    """``precision`` if graphc knows it, else ValueError listing the known ones."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; known: {', '.join(repr(p) for p in PRECISIONS)}")
    return precision


def autocast(graph: Graph, precision: str = "float32") -> Graph:
    """``graph`` with its float32 products marked ``precision=bfloat16`` under ``mixed_bfloat16``; ``float32``
    returns it unchanged. Runs after the optimizer, so the products it marks are the ones the backend lowers
    (fused epilogues included), and at every optimize level: precision is a choice of numbers, not a pass."""
    if check_precision(precision) == "float32":
        return graph

    def rule(node, original):
        if node.op.name in ROUNDED_OPS and node.dtype == "float32" and "precision" not in node.attrs:
            return node.rebuilt(node.inputs, {**node.attrs, "precision": "bfloat16"})
        return None
    return rebuild(graph, rule)
