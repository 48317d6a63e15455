"""bucket_allreduces: small reductions share one message (their operands flattened and concatenated, each
result its slice of the reduced buffer); a large one, or one whose operand reads a reduction, keeps its own."""
import math

import numpy as np

import graphc as gc
from graphc.graph import Graph
from graphc.ops.collective import allreduce_op
from graphc.ops.registry import apply
from graphc.passes import collectives
from graphc.passes.collectives import bucket_allreduces


def reductions(graph):
    return [n for n in graph.nodes if n.op.name == "allreduce"]


def test_small_reductions_share_one_message_and_keep_their_values_and_shapes(monkeypatch):
    monkeypatch.setattr(collectives, "BUCKET_BYTES", 4 * 100)  # 100 float32 values a bucket
    x = gc.placeholder((4, 6), name="x")
    bias, last, big = gc.sum(x, 0), x[:3, :5] * 2.0, gc.concatenate([x] * 5, axis=1)  # 6, 15 and 120 values
    sums = [apply(allreduce_op, [v]) for v in (bias, last, big)]
    graph = Graph([x], [s + 1.0 for s in sums])
    bucketed = bucket_allreduces(graph)
    assert sorted(n.shape for n in reductions(bucketed)) == [(4, 30), (21,)]
    assert [o.shape for o in bucketed.outputs] == [(6,), (3, 5), (4, 30)]
    # With every allreduce the identity (as with one process) the bucketed graph computes the same values.
    value = np.arange(24, dtype=np.float32).reshape(4, 6)
    expected = [value.sum(0) + 1, value[:3, :5] * 2 + 1, np.concatenate([value] * 5, axis=1) + 1]
    got = _evaluate_with_identity_reductions(bucketed, value)
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)


def _evaluate_with_identity_reductions(graph, value):
    """The graph's outputs with every allreduce the identity, computed node by node with the ops' references."""
    values, dims = {}, {}
    for node in graph.nodes:
        if node.op.name == "placeholder":
            values[node.id] = value
        elif node.op.name == "allreduce":
            values[node.id] = values[node.inputs[0].id]
        else:
            values[node.id] = node.op.reference(node, [values[i.id] for i in node.inputs], dims)
    return [values[o.id] for o in graph.outputs]


def test_a_reduction_reading_another_keeps_its_own_message():
    x = gc.placeholder((3,), name="x")
    first = apply(allreduce_op, [x * 2.0])
    second = apply(allreduce_op, [first * 3.0])
    graph = Graph([x], [first, second])
    assert len(reductions(bucket_allreduces(graph))) == 2
    assert bucket_allreduces(graph) is graph


def test_a_large_reduction_ends_a_bucket_so_earlier_gradients_are_sent_early(monkeypatch):
    monkeypatch.setattr(collectives, "BUCKET_BYTES", 4 * 100)
    x = gc.placeholder((4, 6), name="x")
    values = [gc.sum(x, 0), x * 2.0, gc.concatenate([x] * 5, axis=1), x * 3.0, gc.sum(x, 1)]  # 6, 24, 120, 24, 4
    sums = [apply(allreduce_op, [v]) for v in values]
    graph = Graph([x], sums)
    assert [n.id for n in reductions(graph)] == [n.id for n in sums]  # graph order is the order built here
    bucketed = bucket_allreduces(graph)
    assert sorted(math.prod(n.shape) for n in reductions(bucketed)) == [28, 30, 120]
