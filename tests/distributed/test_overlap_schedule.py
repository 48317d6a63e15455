"""The overlap_collectives schedule rewrite on a two-layer step with its weight gradients reduced, planned (not
compiled: no MPI needed) in one process: starts right after their gradients, waits after the remaining
products, the last reduction blocking, and every reader of a reduced gradient after its wait."""
import numpy as np

import graphc as gc
from graphc.graph import Graph
from graphc.lower.program import plan
from graphc.ops.collective import allreduce_op
from graphc.ops.registry import apply
from graphc.passes import optimize_graph, selected_schedule_passes


def _schedule(optimize):
    rng = np.random.default_rng(0)
    x, y = gc.placeholder(("batch", 20)), gc.placeholder(("batch", 3))
    w1 = gc.variable(rng.standard_normal((20, 16)).astype("float32"))
    w2 = gc.variable(rng.standard_normal((16, 3)).astype("float32"))
    loss = gc.mean(gc.categorical_crossentropy(y, gc.softmax(gc.relu(x @ w1) @ w2)))
    reduced = [apply(allreduce_op, [g]) for g in gc.grad(loss, [w1, w2])]  # what gc.allreduce builds for 2+
    graph = Graph([x, y], [loss], [(w, w - 0.1 * r) for w, r in zip([w1, w2], reduced)])
    return plan(optimize_graph(graph, optimize), selected_schedule_passes(optimize))


def test_reductions_overlap_the_remaining_products():
    kernels = _schedule(2).kernels
    names = [k.name for k in kernels]
    starts, waits, blocking = ([i for i, k in enumerate(names) if k.endswith(end)]
                               for end in ("_start", "_wait", "_allreduce"))
    products = [i for i, k in enumerate(kernels) if k.node is not None and k.node.op.kind == "matmul"]
    # W2's gradient (the first computed) is reduced during W1's gradient product; W1's, computed last, blocks.
    assert len(starts) == len(waits) == len(blocking) == 1, names
    assert kernels[starts[0] - 1].node.op.kind == "matmul"  # right after its gradient's product
    assert starts[0] < products[-1] < waits[0] < blocking[0], names
    for index, kernel in enumerate(kernels):  # readers of a reduced gradient come after its completion
        for done in waits + blocking:
            result = kernels[done].inputs[1] if done in waits else kernels[done].out
            if any(b is result for b in kernel.reads) and index != done:
                assert index > done, (names[index], names[done])
    assert not any(k.updates for k in kernels if k.node is not None)  # no update in a GEMM epilogue


def test_without_the_rewrite_every_reduction_blocks():
    names = [k.name for k in _schedule(["overlap_collectives"]).kernels]
    assert sum(k.endswith("_allreduce") for k in names) == 2 and not any(k.endswith("_start") for k in names)
