"""The networkx graph of each stage: roles, node sets and edges of the seed MLP training step and small graphs."""
from types import SimpleNamespace

import networkx as nx
import numpy as np
import pytest
import sympy

import graphc as gc
from graphc.viz import DumpError, to_networkx
from graphc.viz.examples import mnist_mlp

WEIGHTS = {"W1", "b1", "W2", "b2"}


@pytest.fixture(scope="module")
def step():
    return mnist_mlp(hidden=16)


def nodes_with(g, **wanted):
    return [key for key, data in g.nodes(data=True) if all(data.get(k) == v for k, v in wanted.items())]


def the_matmul_reading(g, *operands):
    (found,) = [m for m in nodes_with(g, op="matmul") if set(g.predecessors(m)) == set(operands)]
    return found


def test_forward_stage_is_the_model_and_the_loss(step):
    g = to_networkx(step, "forward")
    assert len(nodes_with(g, op="matmul")) == 2 and len(nodes_with(g, op="softmax")) == 1
    assert len(nodes_with(g, op="relu")) == 1
    assert set(nodes_with(g, role="input")) == {"x", "y"}
    assert set(nodes_with(g, role="parameter")) == WEIGHTS  # the RMSprop accumulators serve only the updates
    assert {d["role"] for _, d in g.nodes(data=True)} == {"input", "parameter", "forward"}
    first = the_matmul_reading(g, "x", "W1")
    (relu,) = nodes_with(g, op="relu")
    assert nx.has_path(g, first, relu) and the_matmul_reading(g, relu, "W2")
    assert g.edges["x", first]["shape"] == "(batch, 784)" and g.edges["W1", first]["shape"] == "(784, 16)"
    assert g.nodes[relu]["shape"] == "(batch, 16)" and g.nodes[relu]["dtype"] == "float32"
    (softmax,) = nodes_with(g, op="softmax")
    assert [g.nodes[s]["op"] for s in g.successors(softmax)] == ["argmax"]  # the accuracy metric reads it
    loss, accuracy = g.graph["outputs"]
    assert nx.has_path(g, "y", loss) and nx.has_path(g, softmax, accuracy) and not nx.has_path(g, softmax, loss)
    assert g.nodes[loss]["shape"] == g.nodes[accuracy]["shape"] == "()" and g.out_degree(loss) == 0
    assert nx.is_directed_acyclic_graph(g) and g.graph["updates"] == []


def test_autodiff_stage_has_gradient_matmuls_with_transpose_flags(step):
    g = to_networkx(step, "autodiff")
    (relu,) = nodes_with(g, op="relu")
    backward = set(nodes_with(g, op="matmul", role="backward"))
    assert len(backward) == 3 and len(nodes_with(g, op="matmul", role="forward")) == 2
    d_w1 = [m for m in backward if "x" in g.predecessors(m)]
    d_w2 = [m for m in backward if relu in g.predecessors(m)]
    d_hidden = [m for m in backward if "W2" in g.predecessors(m)]
    assert len(d_w1) == len(d_w2) == len(d_hidden) == 1  # x^T g, h^T g and g W2^T
    assert "transpose_a=True" in g.nodes[d_w1[0]]["attrs"] and "transpose_a=True" in g.nodes[d_w2[0]]["attrs"]
    assert "transpose_b=True" in g.nodes[d_hidden[0]]["attrs"]
    assert g.nodes[d_w1[0]]["shape"] == "(784, 16)"


def test_roles_follow_origin_and_use(step):
    g = to_networkx(step, "autodiff")
    by_key = {n.name: n for n in step.graph.nodes}
    assert set(nodes_with(g, role="input")) == {"x", "y"}
    assert set(nodes_with(g, role="parameter")) == WEIGHTS | {w + "_rms" for w in WEIGHTS}
    for key, data in g.nodes(data=True):
        assert (data["role"] == "backward") == (by_key[key].origin == "backward"), key
    assert nodes_with(g, role="backward") and nodes_with(g, role="update")
    loss, accuracy = g.graph["outputs"]
    for key in nodes_with(g, role="update"):
        assert not nx.has_path(g, key, loss) and not nx.has_path(g, key, accuracy)
        assert not any(nx.has_path(g, key, b) for b in nodes_with(g, role="backward"))
    for variable, new_value in g.graph["updates"]:
        assert g.nodes[new_value]["role"] == "update"
        assert any(nx.has_path(g, b, new_value) for b in nodes_with(g, role="backward"))
    forward = to_networkx(step, "forward")
    assert set(nodes_with(g, role="forward")) == set(nodes_with(forward, role="forward"))
    assert set(g.nodes) == {n.name for n in step.graph.nodes}


def test_a_constant_has_its_own_role_and_an_update_only_node_is_update():
    x = gc.placeholder((None, 3), name="x")
    v = gc.variable(np.zeros(3, np.float32), name="v")
    scale = gc.constant(np.full(3, 2.0, np.float32), name="scale")
    out = gc.sum(x * scale)
    new_v = gc.exp(v)
    g = to_networkx(gc.function([x], out, updates=[(v, new_v)]), "autodiff")
    assert g.nodes["scale"]["role"] == "constant" and g.nodes["v"]["role"] == "parameter"
    assert g.nodes[new_v.name]["role"] == "update" and g.nodes[out.name]["role"] == "forward"
    assert g.nodes["x"]["shape"].startswith("(?")  # an anonymous dim keeps its ?N name


def test_an_op_reading_one_input_twice_gives_a_multigraph():
    a = gc.placeholder((3, 3), name="a")
    square = a @ a
    g = to_networkx(square, "forward")
    assert isinstance(g, nx.MultiDiGraph)
    assert sorted(d["index"] for _, _, d in g.edges("a", data=True)) == [0, 1]
    assert isinstance(to_networkx(a + 1.0), nx.DiGraph) and not isinstance(to_networkx(a + 1.0), nx.MultiDiGraph)


def test_tensors_lists_and_graphs_are_accepted_and_other_objects_rejected():
    x = gc.placeholder(("batch", 2), name="x")
    h, k = gc.relu(x), gc.tanh(x)
    assert set(to_networkx(h)) == {"x", h.name}
    assert set(to_networkx([h, k])) == {"x", h.name, k.name}
    assert set(to_networkx(gc.Graph([x], [k]))) == {"x", k.name}
    with pytest.raises(DumpError, match="cannot dump a str"):
        to_networkx("model")
    with pytest.raises(DumpError, match="unknown stage 'backward'.*forward, autodiff"):
        to_networkx(h, "backward")


def test_without_optimizer_and_backend_the_late_stages_say_so_and_give_one_kernel_per_node(step):
    unoptimized = SimpleNamespace(graph=step.graph)  # a compiled function as it was before the passes existed
    autodiff = to_networkx(unoptimized, "autodiff")
    for stage in ("optimized", "kernels"):
        g = to_networkx(unoptimized, stage)
        assert "no optimizer has run" in g.graph["note"] and "one kernel per node" in g.graph["note"]
        assert set(g.nodes) == set(autodiff.nodes) and set(g.edges) == set(autodiff.edges)
        computed = [k for k, d in g.nodes(data=True) if d["kind"] != "source"]
        assert sorted(g.nodes[k]["kernel"] for k in computed) == sorted(k["name"] for k in g.graph["kernels"])
        assert all(g.nodes[k]["kernel"] is None for k, d in g.nodes(data=True) if d["kind"] == "source")
    kernels = to_networkx(unoptimized, "kernels").graph["kernels"]
    assert len(kernels) == len([n for n in step.graph.nodes if n.op.kind != "source"])
    (relu_kernel,) = [k for k in kernels if k["nodes"] == nodes_with(autodiff, op="relu")]
    assert relu_kernel["expression"].endswith(f"Max(0, {relu_kernel['inputs'][0]})")


def test_the_optimized_stage_shows_the_functions_optimized_graph(step):
    g = to_networkx(step, "optimized")
    assert "no optimizer" not in g.graph["note"]
    assert len(g) == len(step.optimized_graph.nodes)
    assert len(g.graph["outputs"]) == len(step.optimized_graph.outputs) == 2


def fused_program():
    """A Function-like object whose optimizer fused add + relu into one kernel (what the backend will set)."""
    x = gc.placeholder(("batch", 4), name="x")
    w = gc.variable(np.ones((4, 2), np.float32), name="w")
    b = gc.variable(np.ones(2, np.float32), name="b")
    product = gc.matmul(x, w)
    out = gc.relu(product + b)
    graph = gc.Graph([x], [out])
    added = out.inputs[0]
    kernels = [SimpleNamespace(name="gemm", nodes=[product], inputs=[x, w], outputs=[product]),
               SimpleNamespace(name="fused_add_relu", nodes=[added, out], inputs=[product, b], outputs=[out])]
    return SimpleNamespace(graph=gc.Graph([x], [gc.tanh(x)]), optimized_graph=graph, kernels=kernels), out


def test_real_optimized_graph_and_kernels_plug_in():
    function, out = fused_program()
    g = to_networkx(function, "kernels")
    assert g.graph["note"] == "" and out.name in g and "tanh" not in {d["op"] for _, d in g.nodes(data=True)}
    fused = g.graph["kernels"][1]
    assert fused["nodes"] == [out.inputs[0].name, out.name] and fused["inputs"] == [out.inputs[0].inputs[0].name, "b"]
    name, expression = fused["expression"].split(" = ")
    product = sympy.Symbol(out.inputs[0].inputs[0].name)
    assert name == out.name and sympy.sympify(expression, locals={product.name: product, "b": sympy.Symbol("b")}) \
        == sympy.Max(0, product + sympy.Symbol("b"))
    assert g.nodes[out.name]["kernel"] == "fused_add_relu" and g.nodes["x"]["kernel"] is None


def test_native_schedule_kernels_with_one_node_and_buffers_plug_in():
    function, out = fused_program()
    buffers = {n.id: SimpleNamespace(slot=i, kind="temp", node=n) for i, n in enumerate(function.optimized_graph.nodes)}
    scheduled = [SimpleNamespace(name=f"k{i}", node=n, out=buffers[n.id], inputs=[buffers[p.id] for p in n.inputs])
                 for i, n in enumerate(n for n in function.optimized_graph.nodes if n.op.kind != "source")]
    native = SimpleNamespace(graph=function.graph, program=SimpleNamespace(
        schedule=SimpleNamespace(graph=function.optimized_graph, kernels=scheduled)))
    g = to_networkx(native, "kernels")
    assert g.graph["note"] == "" and [k["name"] for k in g.graph["kernels"]] == ["k0", "k1", "k2"]
    assert g.graph["kernels"][2]["outputs"] == [out.name] and g.nodes[out.name]["kernel"] == "k2"
