"""The optimizer as a whole: every pass keeps a training step's numbers (outputs, gradients, updates),
``optimize=`` selects passes, disabling any one pass bisects without changing the numbers, and what
the pipeline makes of the seed model's training step (784 -> 512 relu -> 10 softmax, RMSprop)."""
import numpy as np
import pytest
import sympy

import graphc as gc
from graphc import reference
from graphc.graph import Graph
from graphc.graph.shapes import dim_symbol
from graphc.ops.expr import arg
from graphc.passes import PASS_NAMES, PIPELINE, optimize_graph, selected_passes
from graphc.testing import assert_close
from graphc.viz.examples import mnist_mlp, rmsprop_updates

BATCH = dim_symbol("batch")
PASSES = {name: graph_pass for name, _, graph_pass in PIPELINE}


def training_step():
    """A float64 MLP training step written so that every pass has something to rewrite.
    Returns (graph, feeds, dims); the graph's outputs are the loss and the four gradients."""
    rng = np.random.default_rng(5)
    x, y = gc.placeholder(("batch", 6), "float64", name="x"), gc.placeholder(("batch", 3), "float64", name="y")
    w1 = gc.variable(rng.standard_normal((6, 8)) * 0.5, name="w1")
    b1 = gc.variable(rng.uniform(-0.2, 0.2, 8), name="b1")
    w2_stored_transposed = gc.variable(rng.standard_normal((3, 8)) * 0.5, name="w2t")
    b2 = gc.variable(rng.uniform(-0.2, 0.2, 3), name="b2")
    hidden = gc.relu(x @ w1 + b1)  # relu mask, elementwise fusion, matmul epilogue
    logits = hidden @ gc.transpose(w2_stored_transposed) + b2  # transpose folded into a flag
    data_loss = gc.mean(-gc.sum(y * gc.log(gc.softmax(logits)), -1))  # the log-softmax written naively
    penalty = (gc.sum(gc.square(w1)) + gc.sum(gc.square(w1))  # the same subexpression twice
               + gc.sum(gc.square(gc.transpose(gc.transpose(w2_stored_transposed))))  # transpose of transpose
               + gc.sum(gc.broadcast_to(b2, (4, 3))))  # a sum of copies
    decay = gc.exp(gc.constant(np.log(1e-3)))  # an all-constant factor
    loss = data_loss + decay * penalty
    hits = gc.equal(gc.argmax(gc.softmax(logits), -1), gc.argmax(y, -1))  # argmax of a softmax
    accuracy = gc.mean(gc.cast(hits, "float64"))
    params = [w1, b1, w2_stored_transposed, b2]
    grads = gc.grad(loss, params)
    graph = Graph([x, y], [loss, accuracy, *grads], rmsprop_updates(params, grads, learning_rate=0.01))
    feeds = [rng.uniform(-1, 1, (5, 6)), np.eye(3)[rng.integers(0, 3, 5)]]
    return graph, feeds, {BATCH: 5}


def assert_same_numbers(graph, expected_graph, feeds, dims, rtol, atol, what):
    """Outputs and update values of ``graph`` agree with ``expected_graph``'s on ``feeds``."""
    outputs, updates = reference.run(graph, feeds, dims)
    expected_outputs, expected_updates = reference.run(expected_graph, feeds, dims)
    for i, (actual, expected) in enumerate(zip(outputs + updates, expected_outputs + expected_updates)):
        assert_close(actual, expected, rtol=rtol, atol=atol, name=f"{what}: value {i}")


# bucket_allreduces has nothing to do in one process (tests/passes/test_bucket_allreduces.py), nor
# fold_take_into_matmul without a take (tests/passes/test_fold_take.py).
@pytest.mark.parametrize("name", [n for n in PASS_NAMES if n not in ("bucket_allreduces", "fold_take_into_matmul")])
def test_each_pass_alone_rewrites_the_training_step_and_keeps_its_numbers(name):
    graph, feeds, dims = training_step()
    after = PASSES[name](graph)
    assert gc.dump(after.outputs, after.updates) != gc.dump(graph.outputs, graph.updates), f"{name} changed nothing"
    assert_same_numbers(after, graph, feeds, dims, rtol=1e-12, atol=1e-15, what=f"after {name}")


def test_every_prefix_of_the_pipeline_keeps_the_training_steps_numbers():
    graph, feeds, dims = training_step()
    optimized = graph
    for name, _, graph_pass in PIPELINE:
        optimized = graph_pass(optimized)
        assert_same_numbers(optimized, graph, feeds, dims, rtol=1e-12, atol=1e-15, what=f"up to {name}")


# ---- selecting passes -------------------------------------------------------------------------
LEVEL_1 = ["cse", "fold_constants", "simplify", "fold_transposes", "stable_log_softmax", "softmax_from_log_softmax",
           "cse_again", "bucket_allreduces"]


@pytest.mark.parametrize("optimize, expected", [
    (0, []), (False, []), (None, []), (1, LEVEL_1), (2, PASS_NAMES), (True, PASS_NAMES),
    (["fuse_elementwise", "cse"], [n for n in PASS_NAMES if n not in ("fuse_elementwise", "cse")]),
    ((), PASS_NAMES),
])
def test_optimize_selects_a_level_or_leaves_out_the_named_passes(optimize, expected):
    assert [name for name, _ in selected_passes(optimize)] == expected


@pytest.mark.parametrize("optimize", [["fuse_everything"], ["cse", "no_such_pass"], 3, -1])
def test_unknown_pass_names_and_levels_are_rejected(optimize):
    with pytest.raises(ValueError) as error:
        selected_passes(optimize)
    message = str(error.value)
    if isinstance(optimize, list):
        assert repr(optimize[-1]) in message and all(name in message for name in PASS_NAMES)
        assert "cse'" not in message.split(";")[0]  # only the unknown names are called unknown
    else:
        assert str(optimize) in message and "0, 1 or 2" in message


def _dense_relu_function(optimize):
    x, w, b = gc.placeholder((3, 4), "float64"), gc.placeholder((4, 5), "float64"), gc.placeholder((5,), "float64")
    return gc.function([x, w, b], gc.relu(x @ w + b), optimize=optimize)


@pytest.mark.parametrize("optimize, expected_ops", [
    (0, ["matmul", "elementwise", "elementwise"]),
    (1, ["matmul", "elementwise", "elementwise"]),
    (["fuse_matmul_epilogue"], ["matmul", "elementwise"]),
    (2, ["fused_matmul"]),
])
def test_gc_function_runs_the_selected_passes(optimize, expected_ops):
    function = _dense_relu_function(optimize)
    computed = [n.op.name for n in function.optimized_graph.nodes if n.op.kind != "source"]
    assert computed == expected_ops
    if optimize == 0:
        assert [n.id for n in function.optimized_graph.nodes] == [n.id for n in function.graph.nodes]
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 5)), rng.standard_normal(5)
    assert_close(function(x, w, b), np.maximum(x @ w + b, 0), rtol=1e-14)


# ---- the seed model's training step -----------------------------------------------------------
@pytest.fixture(scope="module")
def seed_step():
    """The seed training step (float32) compiled without passes, and one batch of 8 images for it."""
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (8, 784)).astype(np.float32)
    labels = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 8)]
    return mnist_mlp(optimize=0), [images, labels], {BATCH: 8}


def computing_nodes(graph):
    """Nodes that compute: not sources, and not reshapes (which only relabel a buffer's shape)."""
    return [n for n in graph.nodes if n.op.kind != "source" and n.op.name != "reshape"]


@pytest.mark.parametrize("disabled", [[name] for name in PASS_NAMES] + [[]], ids=lambda d: d[0] if d else "none")
def test_disabling_any_one_pass_leaves_the_seed_steps_numbers_unchanged(seed_step, disabled):
    """A wrong answer is bisected by turning passes off one at a time: each such run must agree."""
    step, feeds, dims = seed_step
    graph = step.graph
    bisected = gc.function(graph.inputs, graph.outputs, graph.updates, optimize=disabled)
    # float32: fused bodies round differently from node-by-node evaluation, by a few ulps
    assert_same_numbers(bisected.optimized_graph, graph, feeds, dims, rtol=1e-5, atol=1e-7,
                        what=f"seed step without {disabled}")


def test_the_optimizer_halves_the_seed_steps_computing_nodes(seed_step):
    step, _, _ = seed_step
    before, after = computing_nodes(step.graph), computing_nodes(optimize_graph(step.graph))
    assert (len(before), len(after)) == (68, 33)
    assert len(after) < len(before)


def test_the_seed_steps_dense_layers_become_fused_matmuls(seed_step):
    step, _, _ = seed_step
    x, _ = step.graph.inputs
    optimized = optimize_graph(step.graph)
    fused = [n for n in optimized.nodes if n.op.name == "fused_matmul"]
    (dense,) = [n for n in fused if n.inputs[0] is x]
    assert [i.name for i in dense.inputs] == ["x", "W1", "b1"]
    assert dense.attrs["epilogue"] == sympy.Max(0, arg(0) + arg(1))  # relu(product + bias)
    epilogues = sorted(str(n.attrs["epilogue"]) for n in fused)
    assert epilogues == sorted(["Max(0, %0 + %1)", "%0 + %1", "%0*Heaviside(%1)"])
    (backward,) = [n for n in fused if n.attrs["epilogue"].has(sympy.Heaviside)]
    assert backward.inputs[1].name == "W2" and backward.attrs["transpose_b"]
    assert backward.inputs[2] is dense  # relu' reads the activation, so the forward layer fuses whole
    assert not any(n.op.name == "elementwise" and n.attrs["expr"].has(sympy.Max) for n in optimized.nodes)
