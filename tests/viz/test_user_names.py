"""The user's names, carried through autodiff (dW1 for W1) and the passes into every stage's picture,
as Keras's plot_model shows layer names; they change nothing that is computed or compiled."""
import re

import numpy as np
import pytest

import graphc as gc
from graphc.passes import optimize_graph
from graphc.viz import to_dot, to_networkx
from graphc.viz.examples import mnist_mlp

WEIGHTS = ["W1", "b1", "W2", "b2"]
FORWARD = {"x", "y", *WEIGHTS, "h", "logits", "loss", "accuracy"}
GRADIENTS = {"dW1", "db1", "dW2", "db2"}


def layer(named=True):
    x = gc.placeholder((None, 3), name="x" if named else None)
    w = gc.variable(np.arange(6, dtype=np.float32).reshape(3, 2) / 10, name="W" if named else None)
    b = gc.variable(np.ones(2, np.float32), name="b" if named else None)
    product = x @ w
    h = gc.relu(product + b)
    if named:
        product.name, h.name = "m", "h"
    return x, w, b, product, h


def test_grad_names_the_gradient_of_a_named_tensor_d_and_its_name():
    x, w, b, m, h = layer()
    cost = gc.sum(gc.tanh(h))
    gradients = gc.grad(cost, [w, b, m, h, x])
    assert [g.name for g in gradients] == ["dW", "db", "dm", "dh", "dx"] and all(g.named for g in gradients)
    assert gc.grad(cost, w).name == "dW"
    assert not gc.grad(cost, h.inputs[0]).named  # the bias add has no name, nor has its gradient
    assert gc.grad(cost, gc.variable(1.0, name="v"), unconnected="zero").name == "dv"


def test_a_gradient_shared_by_two_tensors_keeps_the_first_ones_name():
    x, w, b, m, h = layer()
    logits = m + b  # d logits / d m is the identity: both get one gradient node
    logits.name = "logits"
    d_logits, d_m = gc.grad(gc.sum(logits * logits), [logits, m])
    assert d_logits is d_m and d_logits.name == "dlogits"


def test_jacobian_and_hessian_rows_stay_unnamed():
    """A row of a jacobian is the gradient of one element, not dv: only v has a name in their graphs."""
    v = gc.variable(np.ones(3, np.float32), name="v")
    for matrix in (gc.jacobian(gc.tanh(v), v), gc.hessian(gc.sum(v * v * v), v)):
        assert [key for key, data in to_networkx(matrix).nodes(data=True) if data["named"]] == ["v"]


@pytest.fixture(scope="module")
def step():
    return mnist_mlp(hidden=16)


@pytest.mark.parametrize("stage", ["forward", "autodiff", "optimized", "kernels"])
def test_every_stage_of_the_seed_step_shows_the_users_names(step, stage):
    """Before: the gradients were matmul_44, reshape_42, ... and the passes renamed h to elementwise_280."""
    g = to_networkx(step, stage)
    expected = FORWARD | (set() if stage == "forward" else GRADIENTS | {w + "_rms" for w in WEIGHTS})
    assert {key for key, data in g.nodes(data=True) if data["named"]} == expected
    text = to_dot(step, stage)
    for name in expected:
        assert re.search(rf'^\s*"{name}" \[label="{name}\\n', text, re.MULTILINE), name


def test_kernel_clusters_are_titled_with_the_names_they_compute(step):
    titles = re.findall(r'label="(k\d+_[^"]*)"; tooltip', to_dot(step, "kernels"))
    assert "k21_matmul: 3 ops → dW1" in titles and "k27_matmul: 3 ops → dW2" in titles
    assert [t for t in titles if t.startswith("k0_rows")] == ["k0_rows: 27 ops → h, logits, loss, ..."]
    reference = mnist_mlp(hidden=16, backend="reference")  # one kernel per node: unnamed ones list their op
    titles = re.findall(r'label="(k\d+_[^"]*)"; tooltip', to_dot(reference, "kernels"))
    assert "k0_matmul+relu: 1 op → h" in titles and "k2_log_softmax: 1 op: log_softmax" in titles


def test_the_passes_name_what_replaces_a_named_node_and_leave_the_users_graph_alone():
    x, w, b, m, h = layer()
    graph = gc.Graph([x], [h])
    before = {n.id: n.name for n in graph.nodes}
    (fused,) = [n for n in optimize_graph(graph).nodes if n.op.kind == "matmul"]
    assert fused.name == "h" and fused.op.name == "fused_matmul"  # m was fused into it: its value is gone
    assert {n.id: n.name for n in graph.nodes} == before


@pytest.mark.parametrize("backend", ["reference", "llvm"])
def test_names_change_nothing_computed_or_compiled(backend):
    results, programs = [], []
    for named in (True, False):
        x, w, b, m, h = layer(named)
        cost = gc.sum(gc.tanh(h))
        function = gc.function([x], [cost, *gc.grad(cost, [w, b, h])], backend=backend)
        results.append(function(np.array([[1, -2, 3], [0, 0.5, -1]], np.float32)))
        programs.append(function.program)
    for named, unnamed in zip(*results):
        np.testing.assert_array_equal(named, unnamed)
    if backend == "llvm":
        assert programs[0].schedule.fingerprint() == programs[1].schedule.fingerprint()  # one cache entry
