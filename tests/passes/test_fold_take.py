"""fold_take_into_matmul: a take along axis 0 read only as products' A operand is marked for the GEMMs to read
through its indices; any other take is left alone. The numbers stay the reference's."""
import numpy as np
import pytest

import graphc as gc
from graphc import reference
from graphc.graph import Graph
from graphc.passes import fold_take_into_matmul, fold_transposes_into_matmul

ROWS = 6


def folded_takes(graph) -> list:
    """The takes of ``graph`` after the pass, as (folded?) flags in graph order."""
    after = fold_take_into_matmul(graph)
    return [bool(n.attrs.get("into_matmul")) for n in after.nodes if n.op.name == "take"], after


def operands():
    x = gc.placeholder((None, 4), name="x")
    idx = gc.placeholder((3,), "int64", name="idx")
    w, g = gc.placeholder((4, 5), name="w"), gc.placeholder((3, 2), name="g")
    return x, idx, w, g


def feeds():
    rng = np.random.default_rng(0)
    return [rng.standard_normal((ROWS, 4)).astype(np.float32), np.array([5, -1, 5]),
            rng.standard_normal((4, 5)).astype(np.float32), rng.standard_normal((3, 2)).astype(np.float32)]


def test_a_take_read_as_a_by_a_product_and_as_transposed_a_by_another_is_folded():
    x, idx, w, g = operands()
    rows = gc.take(x, idx)
    graph = fold_transposes_into_matmul(Graph([x, idx, w, g], [rows @ w, gc.transpose(rows) @ g]))
    flags, after = folded_takes(graph)
    assert flags == [True]
    assert {n.op.name for n in after.nodes} == {"placeholder", "take", "matmul"}
    arrays = feeds()
    for actual, expected in zip(reference.run(after, arrays, {})[0], reference.run(graph, arrays, {})[0]):
        np.testing.assert_array_equal(actual, expected)


def also_summed(x, idx, w, g):
    rows = gc.take(x, idx)
    return [rows @ w, gc.sum(rows)]


def along_axis_1(x, idx, w, g):
    columns = gc.take(w, idx[:2], axis=1)  # (4, 2), read only as A
    return [columns @ gc.transpose(w[:, :2])]


@pytest.mark.parametrize("build", [
    also_summed,
    lambda x, idx, w, g: [gc.take(x, idx)],  # an output
    lambda x, idx, w, g: [gc.transpose(gc.take(x, idx)) @ g],  # through a transpose node, not a flag
    along_axis_1,
    lambda x, idx, w, g: [gc.transpose(g) @ gc.take(x, idx)],  # the B operand
], ids=["also-summed", "output", "transpose-node", "axis-1", "operand-b"])
def test_a_take_with_another_reader_or_not_a_row_gather_is_left_alone(build):
    x, idx, w, g = operands()
    graph = Graph([x, idx, w, g], build(x, idx, w, g))
    flags, _ = folded_takes(graph)
    assert flags and not any(flags)
