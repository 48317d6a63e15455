"""The numpy reference executor: runs any graph, node by node, with each op's numpy reference.

It is the ground truth that every backend and pass is tested against, so it
also checks that every op produced exactly the shape its shape rule promised.
"""
import numpy as np

from .graph import Graph, dtypes
from .graph.shapes import evaluate_shape


def run(graph: Graph, feeds: list, dims: dict) -> tuple[list, list]:
    """Evaluate ``graph`` on ``feeds`` (one array per input) with symbolic dims bound by ``dims``.

    Returns (outputs, new values of the updated variables), without assigning the updates.
    """
    values = {inp.id: array for inp, array in zip(graph.inputs, feeds)}
    for node in graph.nodes:
        if node.id in values:
            continue
        if node.op.name == "variable":
            values[node.id] = node.storage
            continue
        if node.op.name == "placeholder":
            raise ValueError(f"placeholder {node.name} was not fed")
        result = np.asarray(node.op.reference(node, _operands(node, values), dims))
        _check(node, result, dims)
        values[node.id] = result
    outputs = [np.array(values[n.id], dtype=n.dtype, order="C") for n in graph.outputs]
    updates = [np.array(values[new.id], dtype=var.dtype, order="C") for var, new in graph.updates]
    return outputs, updates


def _operands(node, values) -> list:
    """The input arrays of ``node``: a product marked ``precision=bfloat16`` (graphc.passes.autocast) reads
    its two operands rounded to bfloat16, by ml_dtypes, and multiplies them in float32."""
    arrays = [values[i.id] for i in node.inputs]
    if node.attrs.get("precision") == "bfloat16":
        arrays[:2] = [dtypes.round_to_bfloat16(a) for a in arrays[:2]]
    return arrays


def _check(node, result, dims):
    expected = evaluate_shape(node.shape, dims)
    if result.shape != expected or result.dtype != np.dtype(node.dtype):
        raise AssertionError(f"graphc bug: {node.op.name} {node.name} produced {result.dtype}{result.shape}, "
                             f"its shape rule says {node.dtype}{expected}")
