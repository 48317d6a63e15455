"""The IR: nodes, symbolic dims, topological order, Graph checks and the text dump."""
import numpy as np
import pytest
import sympy

import graphc as gc
from graphc.graph import topo_order
from graphc.graph.shapes import dim_symbol


def test_placeholder_dims_none_is_fresh_and_a_name_is_shared():
    a = gc.placeholder((None, 3))
    b = gc.placeholder((None, 3))
    c = gc.placeholder(("batch", 3))
    d = gc.placeholder(("batch", 5))
    assert isinstance(a.shape[0], sympy.Symbol) and a.shape[0] != b.shape[0]
    assert c.shape[0] is d.shape[0] is dim_symbol("batch")
    assert (c.shape[1], c.ndim, c.dtype) == (3, 2, "float32")


def test_shared_batch_dims_broadcast_but_two_named_dims_do_not():
    assert (gc.placeholder(("batch", 3)) + gc.placeholder(("batch", 1))).shape == (dim_symbol("batch"), 3)
    with pytest.raises(gc.GraphError, match="two different symbolic dims: name them alike"):
        gc.placeholder(("batch", 3)) + gc.placeholder(("n", 3))


def test_symbolic_dims_flow_through_shape_arithmetic():
    x = gc.placeholder(("batch", 6), "float64")
    batch = dim_symbol("batch")
    assert gc.reshape(x, (-1, 2)).shape == (3 * batch, 2)
    assert gc.concatenate([x, x], axis=0).shape == (2 * batch, 6)
    assert x[2:].shape == (batch - 2, 6)
    assert gc.transpose(x).shape == (6, batch)
    assert (x @ gc.placeholder((6, 4), "float64")).shape == (batch, 4)
    assert gc.sum(x, 1, keepdims=True).shape == (batch, 1)


B = dim_symbol("batch")
# Shape rules over a (batch, 4, 6) placeholder X: op, expected symbolic shape.
SYMBOLIC_SHAPES = [
    (lambda x: gc.softmax(x, 0), (B, 4, 6)),
    (lambda x: gc.log_softmax(x), (B, 4, 6)),
    (lambda x: gc.where(x > 0, x, 0.0), (B, 4, 6)),
    (lambda x: gc.not_equal(x, x[:, :1]), (B, 4, 6)),
    (lambda x: gc.clip(gc.cast(x, "float64"), 0, 1), (B, 4, 6)),
    (lambda x: gc.max(x, 0), (4, 6)),
    (lambda x: gc.min(x, (0, 2), keepdims=True), (1, 4, 1)),
    (lambda x: gc.sum(x, -1), (B, 4)),
    (lambda x: gc.transpose(x, (2, 0, 1)), (6, B, 4)),
    (lambda x: gc.expand_dims(x, 1), (B, 1, 4, 6)),
    (lambda x: gc.squeeze(x[:, :1]), (B, 6)),
    (lambda x: gc.broadcast_to(x[:, :1], (B, 4, 6)), (B, 4, 6)),
    (lambda x: x[..., None, -2], (B, 4, 1)),
    (lambda x: gc.dot(x, gc.placeholder((6, 2))), (B, 4, 2)),
    (lambda x: gc.dot(gc.placeholder((3, 4)), x), (3, B, 6)),
    (lambda x: gc.matmul(x, gc.placeholder((6,))), (B, 4)),
    (lambda x: gc.categorical_crossentropy(x, x, from_logits=True), (B, 4)),
    (lambda x: gc.argmax(x, 1), (B, 6)),
]


@pytest.mark.parametrize("build, shape", SYMBOLIC_SHAPES)
def test_shape_rules_with_a_symbolic_batch(build, shape):
    assert build(gc.placeholder(("batch", 4, 6))).shape == shape


@pytest.mark.parametrize("dim", [-1, 2.5, True])
def test_placeholder_rejects_bad_dims(dim):
    with pytest.raises(gc.GraphError, match="a dimension must be an int >= 0, None or a name"):
        gc.placeholder((dim, 3))


def test_reserved_dim_names():
    with pytest.raises(ValueError, match="may not start with '\\?'"):
        dim_symbol("?7")


@pytest.mark.parametrize("dtype", ["float16", "complex64", "uint8"])
def test_unsupported_dtypes(dtype):
    with pytest.raises(TypeError, match="not supported"):
        gc.placeholder((2,), dtype)


def test_python_floats_default_to_float32_but_numpy_arrays_keep_their_dtype():
    assert gc.constant(1.5).dtype == "float32"
    assert gc.variable([1.0, 2.0]).dtype == "float32"
    assert gc.constant(np.ones(2)).dtype == "float64"
    assert gc.variable(np.ones(2, np.int32)).dtype == "int32"
    assert gc.constant(1.5, dtype="float64").dtype == "float64"


def test_nodes_hash_by_identity_and_record_where_they_were_built():
    x = gc.placeholder((2,))
    y = x + 1.0
    assert y == y and y != x + 1.0
    assert {y: "value"}[y] == "value"
    assert y.location.startswith(__file__ + ":")


def test_topo_order_puts_inputs_first_and_visits_shared_nodes_once():
    x = gc.placeholder((3,), name="x")
    shared = gc.exp(x)
    out = shared * shared + gc.tanh(shared)
    order = topo_order([out])
    position = {node.id: i for i, node in enumerate(order)}
    assert len(order) == len({n.id for n in order})
    for node in order:
        assert all(position[i.id] < position[node.id] for i in node.inputs)
    assert order[0] is x and order[-1] is out


def test_topo_order_handles_deep_graphs():
    x = gc.placeholder((), "float64")
    y = x
    for _ in range(3000):  # deeper than Python's recursion limit
        y = y + 1.0
    assert len(topo_order([y])) == 3001


def test_graph_checks_inputs_and_updates():
    x = gc.placeholder((2,), name="x")
    w = gc.variable(np.zeros(2, np.float32), name="w")
    with pytest.raises(gc.GraphError, match="function inputs must be placeholders"):
        gc.Graph([w], [x])
    with pytest.raises(gc.GraphError, match="listed twice"):
        gc.Graph([x, x], [x])
    with pytest.raises(gc.GraphError, match="updates must assign variables"):
        gc.Graph([x], [], [(x, x + 1.0)])
    with pytest.raises(gc.GraphError, match=r"update of w: variable shape \(2,\) but new value shape \(3,\)"):
        gc.Graph([], [], [(w, gc.constant(np.zeros(3, np.float32)))])
    with pytest.raises(gc.GraphError, match="update of w: variable is float32 but new value is float64"):
        gc.Graph([], [], [(w, gc.constant(np.zeros(2)))])
    with pytest.raises(gc.GraphError, match="a variable is updated twice"):
        gc.Graph([], [], [(w, w * 2.0), (w, w + 1.0)])
    with pytest.raises(gc.GraphError, match="depend on placeholders that are not inputs of the function: x"):
        gc.Graph([], [w + x])


def test_dump_lists_one_line_per_node_with_name_op_inputs_dtype_and_shape():
    x = gc.placeholder(("batch", 4), name="x")
    w = gc.variable(np.zeros((4, 3), np.float32), name="w")
    hidden = x @ w
    activation = gc.relu(hidden)
    loss = gc.mean(activation)
    step = w - 0.1 * gc.grad(loss, w)
    lines = gc.dump(loss, updates=[(w, step)]).splitlines()
    assert lines[0] == "x = placeholder() : float32(batch, 4)"
    assert lines[1] == "w = variable() {trainable=True} : float32(4, 3)"
    assert f"{hidden.name} = matmul(x, w) {{transpose_a=False, transpose_b=False}} : float32(batch, 3)" in lines
    assert f"{activation.name} = relu({hidden.name}) {{expr=Max(0, %0)}} : float32(batch, 3)" in lines
    total = loss.inputs[0]
    assert f"{total.name} = reduce_sum({activation.name}) {{axes=(0, 1), keepdims=False}} : float32()" in lines
    assert f"{loss.name} = mean({total.name}) {{expr=%0/(3*batch)}} : float32()" in lines
    assert lines[-2:] == [f"return {loss.name}", f"update w <- {step.name}"]
    # Only the loss and the update are roots: every other line is a node they need, listed once.
    assert len(lines) - 2 == len(topo_order([loss, step]))


def test_function_dump_shows_its_graph():
    x = gc.placeholder((3,), "float64", name="x")
    y = gc.exp(x)
    text = gc.function([x], y).dump()
    assert text.splitlines() == ["x = placeholder() : float64(3,)",
                                 f"{y.name} = exp(x) {{expr=exp(%0)}} : float64(3,)",
                                 f"return {y.name}"]
