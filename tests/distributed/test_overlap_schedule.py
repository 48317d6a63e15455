"""The overlap_collectives schedule rewrite on a two-layer step with its weight gradients reduced, planned (not
compiled: no MPI needed) in one process: starts right after their gradients, waits after the remaining
products, the last reduction blocking, and every reader of a reduced gradient after its wait."""
import numpy as np

import graphc as gc
from graphc.graph import Graph
from graphc.lower.program import plan
from graphc.ops.collective import allreduce_op
from graphc.ops.registry import apply
from graphc.passes import collectives, optimize_graph, selected_schedule_passes


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
    kernels = _schedule(["bucket_allreduces"]).kernels  # each gradient its own message
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
    names = [k.name for k in _schedule(["overlap_collectives", "bucket_allreduces"]).kernels]
    assert sum(k.endswith("_allreduce") for k in names) == 2 and not any(k.endswith("_start") for k in names)


def test_small_gradients_travel_as_one_message_that_overlaps_the_last_product(monkeypatch):
    """The seed MLP's shape in small: W1's gradient (1280 bytes) over a 1 KiB bucket keeps its own message; b1,
    W2 and b2's share one; the message of the gradient computed first overlaps the other's product."""
    monkeypatch.setattr(collectives, "BUCKET_BYTES", 1024)
    rng = np.random.default_rng(1)
    x, y = gc.placeholder(("batch", 20)), gc.placeholder(("batch", 3))
    params = [gc.variable(rng.standard_normal(shape).astype("float32")) for shape in ((20, 16), (16,), (16, 3), (3,))]
    w1, b1, w2, b2 = params
    loss = gc.mean(gc.categorical_crossentropy(y, gc.softmax(gc.relu(x @ w1 + b1) @ w2 + b2)))
    reduced = [apply(allreduce_op, [g]) for g in gc.grad(loss, params)]
    graph = Graph([x, y], [loss], [(p, p - 0.1 * r) for p, r in zip(params, reduced)])
    kernels = plan(optimize_graph(graph, 2), selected_schedule_passes(2)).kernels
    names = [k.name for k in kernels]
    starts, waits, blocking = ([i for i, k in enumerate(names) if k.endswith(end)]
                               for end in ("_start", "_wait", "_allreduce"))
    products = [i for i, k in enumerate(kernels) if k.node is not None and k.node.op.kind == "matmul"]
    assert len(starts) == len(waits) == len(blocking) == 1, names
    sources = sorted(kernels[i].node.inputs[0].op.name for i in starts + blocking)
    assert "concatenate" in sources and len(set(sources)) == 2, sources  # the bucket, and W1's own message
    assert starts[0] < products[-1] < waits[0] and products[-1] < blocking[0], names
