"""Each optimizer pass run alone on a tiny graph: which nodes remain (ops, counts, attrs, bodies), and
that the rewritten graph computes the same float64 numbers as the original on the reference executor."""
import numpy as np
import pytest
import sympy

import graphc as gc
from graphc import reference
from graphc.graph import Graph
from graphc.graph.shapes import dim_symbol
from graphc.ops.elementwise import make
from graphc.ops.expr import arg
from graphc.ops.linalg import matmul_t
from graphc.passes import (eliminate_common_subexpressions, fold_constants, fold_transposes_into_matmul,
                           fuse_elementwise, fuse_matmul_epilogue, relu_mask_from_output, simplify,
                           softmax_from_log_softmax, stable_log_softmax)
from graphc.passes.cleanup import MAX_FOLDED_ELEMENTS
from graphc.passes.rewrite import consumer_counts
from graphc.testing import assert_close

RNG = np.random.default_rng(3)
BATCH = dim_symbol("batch")


def computed(graph):
    """The nodes that compute something (not placeholders, variables or constants), inputs first."""
    return [n for n in graph.nodes if n.op.kind != "source"]


def labels(graph):
    """Each computing node's op, or for elementwise nodes their label (exp, add, ...)."""
    return [n.attrs["label"] if n.op.name == "elementwise" else n.op.name for n in computed(graph)]


def rewrite(graph_pass, inputs, outputs, feeds, dims=None):
    """``graph_pass`` applied to the graph (inputs -> outputs), after checking that the graph it
    returns computes the same values on ``feeds``."""
    before = Graph(list(inputs), list(outputs))
    after = graph_pass(before)
    expected, _ = reference.run(before, feeds, dims or {})
    actual, _ = reference.run(after, feeds, dims or {})
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert_close(a, e, rtol=1e-13, atol=1e-14, name=f"output {i} after {graph_pass.__name__}")
    return after


def normal(*shape):
    return RNG.standard_normal(shape)


# ---- common subexpressions --------------------------------------------------------------------
def test_cse_keeps_one_of_two_identical_subexpressions():
    x, w = gc.placeholder((3, 4), "float64"), gc.placeholder((4, 2), "float64")
    first, second = gc.tanh(x @ w), gc.tanh(x @ w)
    before = Graph([x, w], [first * second])
    assert labels(before).count("tanh") == 2 and labels(before).count("matmul") == 2
    after = rewrite(eliminate_common_subexpressions, [x, w], [first * second], [normal(3, 4), normal(4, 2)])
    assert sorted(labels(after)) == ["matmul", "multiply", "tanh"]
    (product,) = [n for n in computed(after) if n.attrs.get("label") == "multiply"]
    assert product.inputs[0] is product.inputs[1]


def test_cse_keeps_nodes_that_differ_only_in_attrs():
    a, b = gc.placeholder((3, 3), "float64"), gc.placeholder((3, 3), "float64")
    outputs = [matmul_t(a, b, transpose_a=True), matmul_t(a, b, transpose_b=True),
               gc.softmax(a, 0), gc.softmax(a, 1), gc.sum(a, 0, keepdims=True), gc.sum(a, (0,))]
    after = rewrite(eliminate_common_subexpressions, [a, b], outputs, [normal(3, 3), normal(3, 3)])
    assert sorted(labels(after)) == ["matmul", "matmul", "reduce_sum", "reduce_sum", "softmax", "softmax"]
    assert {(n.attrs["transpose_a"], n.attrs["transpose_b"]) for n in computed(after) if n.op.name == "matmul"} \
        == {(True, False), (False, True)}


def test_cse_never_merges_variables_or_placeholders_with_equal_values():
    value = normal(2, 3)
    v1, v2 = gc.variable(value), gc.variable(value.copy())
    p1, p2 = gc.placeholder((2, 3), "float64"), gc.placeholder((2, 3), "float64")
    outputs = [gc.exp(v1), gc.exp(v2), gc.exp(p1), gc.exp(p2)]
    after = rewrite(eliminate_common_subexpressions, [p1, p2], outputs, [value, value.copy()])
    assert labels(after) == ["exp"] * 4
    assert {n.id for n in after.nodes if n.op.kind == "source"} == {v1.id, v2.id, p1.id, p2.id}
    v2.value = value + 1  # the two variables are distinct state: changing one leaves the other's exp alone
    outputs_now, _ = reference.run(after, [value, value], {})
    assert_close(outputs_now[0], np.exp(value))
    assert_close(outputs_now[1], np.exp(value + 1))


# ---- constant folding -------------------------------------------------------------------------
def test_an_all_constant_subgraph_becomes_one_constant():
    x = gc.placeholder((4,), "float64")
    c1, c2 = gc.constant(np.arange(4.0)), gc.constant(np.full((2, 2), 3.0))
    offset = gc.exp(c1) * gc.reshape(c2, (4,)) - gc.constant(1.0, dtype="float64")
    before = Graph([x], [x + offset])
    assert labels(before) == ["exp", "reshape", "multiply", "subtract", "add"]
    after = rewrite(fold_constants, [x], [x + offset], [normal(4)])
    (add,) = computed(after)
    assert add.attrs["label"] == "add" and add.inputs[0] is x
    folded = add.inputs[1]
    assert folded.op.name == "constant"
    assert_close(folded.attrs["value"], np.exp(np.arange(4.0)) * 3.0 - 1.0)


def test_a_body_with_a_symbolic_dim_is_not_folded():
    """d mean / d x is constant(1) / batch: its value is only known when the function is called."""
    x = gc.placeholder(("batch", 3), "float64")
    (gradient,) = gc.grad(gc.mean(x), [x])
    after = rewrite(fold_constants, [x], [gradient], [normal(4, 3)], {BATCH: 4})
    (divide,) = [n for n in computed(after) if n.op.name == "elementwise"]
    assert BATCH in divide.attrs["expr"].free_symbols
    assert [i.op.name for i in divide.inputs] == ["constant"]
    outputs, _ = reference.run(after, [np.zeros((4, 3))], {BATCH: 4})
    assert_close(outputs[0], np.full((4, 3), 1 / 12))


def test_a_broadcast_to_more_than_the_folding_limit_stays_a_broadcast():
    x = gc.placeholder((3, 2), "float32")
    small = gc.broadcast_to(gc.constant(np.float32(2.0)), (3, 2))
    rows = 2 * MAX_FOLDED_ELEMENTS // 1024
    huge = gc.broadcast_to(gc.constant(np.float32(2.0)), (rows, 1024))
    after = fold_constants(Graph([x], [x * small, huge]))
    assert labels(after) == ["multiply", "broadcast_to"]
    (multiply,) = [n for n in computed(after) if n.op.name == "elementwise"]
    assert multiply.inputs[1].op.name == "constant" and multiply.inputs[1].shape == (3, 2)
    assert after.outputs[1].shape == (rows, 1024) and after.outputs[1].inputs[0].op.name == "constant"


# ---- simplify ---------------------------------------------------------------------------------
def test_transpose_of_transpose_becomes_one_transpose_with_composed_axes():
    w = gc.placeholder((2, 3, 4), "float64")
    twice = gc.transpose(gc.transpose(w, (1, 0, 2)), (0, 2, 1))
    after = rewrite(simplify, [w], [twice], [normal(2, 3, 4)])
    (transpose,) = computed(after)
    assert transpose.op.name == "transpose" and transpose.attrs["axes"] == (1, 2, 0)
    assert transpose.inputs[0] is w


def test_transpose_of_its_inverse_disappears():
    w = gc.placeholder((3, 4), "float64")
    after = rewrite(simplify, [w], [gc.transpose(gc.transpose(w)) + 1.0], [normal(3, 4)])
    assert labels(after) == ["add"] and computed(after)[0].inputs[0] is w


def test_reshape_of_reshape_becomes_one_reshape_or_none():
    w = gc.placeholder((3, 4), "float64")
    outputs = [gc.reshape(gc.reshape(w, (12,)), (2, 6)), gc.exp(gc.reshape(gc.reshape(w, (12,)), (3, 4)))]
    after = rewrite(simplify, [w], outputs, [normal(3, 4)])
    assert labels(after) == ["reshape", "exp"]
    reshaped, exp = computed(after)
    assert reshaped.inputs[0] is w and reshaped.shape == (2, 6)
    assert exp.inputs[0] is w


def test_sum_of_a_broadcast_becomes_a_multiply_by_the_number_of_copies():
    x = gc.placeholder((3,), "float64")
    after = rewrite(simplify, [x], [gc.sum(gc.broadcast_to(x, (5, 3)), 0)], [normal(3)])
    assert "reduce_sum" not in labels(after) and "broadcast_to" not in labels(after)
    (multiply,) = [n for n in computed(after) if n.op.name == "elementwise"]
    assert multiply.attrs["expr"] == 5 * arg(0)


def test_sum_of_a_broadcast_over_a_symbolic_dim_multiplies_by_that_dim():
    x, rows = gc.placeholder((1, 3), "float64"), gc.placeholder(("batch", 3), "float64")
    summed = gc.sum(gc.broadcast_to(x, rows.shape), 0, keepdims=True)
    after = rewrite(simplify, [x, rows], [summed], [normal(1, 3), normal(7, 3)], {BATCH: 7})
    (multiply,) = [n for n in computed(after) if n.op.name == "elementwise"]
    assert multiply.attrs["expr"] == BATCH * arg(0)
    assert "reduce_sum" not in labels(after)


def test_an_elementwise_reader_of_a_broadcast_broadcasts_by_itself():
    x, y = gc.placeholder(("batch", 1), "float64"), gc.placeholder(("batch", 3), "float64")
    product = gc.broadcast_to(x, (BATCH, 3)) * y
    after = rewrite(simplify, [x, y], [product], [normal(4, 1), normal(4, 3)], {BATCH: 4})
    assert labels(after) == ["multiply"] and after.outputs[0].inputs[0] is x


def test_a_broadcast_that_makes_the_result_shape_stays():
    c = gc.placeholder((1,), "float64")
    negated = -gc.broadcast_to(c, ("batch",))  # without the broadcast the body would be (1,)
    after = rewrite(simplify, [c], [negated], [normal(1)], {BATCH: 3})
    assert labels(after) == ["broadcast_to", "negative"]


def test_sum_over_an_axis_the_broadcast_did_not_copy_is_kept():
    x = gc.placeholder((1, 3), "float64")
    after = rewrite(simplify, [x], [gc.sum(gc.broadcast_to(x, (5, 3)))], [normal(1, 3)])
    assert labels(after) == ["broadcast_to", "reduce_sum"]


# ---- transposes folded into matmul flags ------------------------------------------------------
def test_matmul_of_explicit_transposes_becomes_flags():
    a, b = gc.placeholder((4, 3), "float64"), gc.placeholder((5, 4), "float64")
    after = rewrite(fold_transposes_into_matmul, [a, b], [gc.matmul(gc.transpose(a), gc.transpose(b))],
                    [normal(4, 3), normal(5, 4)])
    (matmul,) = computed(after)
    assert matmul.op.name == "matmul" and matmul.inputs == (a, b)
    assert matmul.attrs == {"transpose_a": True, "transpose_b": True}


def test_a_transpose_under_a_set_flag_clears_it():
    a, b = gc.placeholder((4, 3), "float64"), gc.placeholder((3, 5), "float64")
    after = rewrite(fold_transposes_into_matmul, [a, b], [matmul_t(gc.transpose(a), b, transpose_a=True)],
                    [normal(4, 3), normal(3, 5)])
    (matmul,) = computed(after)
    assert matmul.inputs == (a, b) and matmul.attrs == {"transpose_a": False, "transpose_b": False}


def test_only_a_swap_of_the_last_two_axes_becomes_a_flag():
    x, b = gc.placeholder((2, 4, 3), "float64"), gc.placeholder((4, 5), "float64")
    swapped = gc.matmul(gc.transpose(x, (0, 2, 1)), b)   # (2, 3, 4) @ (4, 5)
    reversed_axes = gc.matmul(gc.transpose(x), gc.placeholder((2, 5), "float64"))  # (3, 4, 2) @ (2, 5)
    c = reversed_axes.inputs[1]
    after = rewrite(fold_transposes_into_matmul, [x, b, c], [swapped, reversed_axes],
                    [normal(2, 4, 3), normal(4, 5), normal(2, 5)])
    assert sorted(labels(after)) == ["matmul", "matmul", "transpose"]
    folded, kept = after.outputs
    assert folded.inputs[0] is x and folded.attrs["transpose_a"]
    assert kept.inputs[0].op.name == "transpose" and not kept.attrs["transpose_a"]


# ---- stable log-softmax -----------------------------------------------------------------------
def test_log_of_softmax_becomes_log_softmax_and_stays_finite_across_a_wide_gap():
    z = gc.placeholder((2, 3), "float64")
    graph = Graph([z], [gc.log(gc.softmax(z, 0))])
    after = stable_log_softmax(graph)
    (log_softmax,) = computed(after)
    assert log_softmax.op.name == "log_softmax" and log_softmax.attrs["axis"] == 0
    logits = np.array([[0.0, 1.0, -3.0], [1000.0, 2.0, 0.5]])  # column 0: exp(-1000) underflows to 0
    (naive,), _ = reference.run(graph, [logits], {})
    (stable,), _ = reference.run(after, [logits], {})
    assert naive[0, 0] == -np.inf
    shifted = logits - logits.max(0)
    assert_close(stable, shifted - np.log(np.exp(shifted).sum(0)), rtol=1e-15)
    assert stable[0, 0] == -1000.0
    assert_close(stable[:, 1:], naive[:, 1:], rtol=1e-14)


def test_the_gradient_of_log_of_softmax_is_finite_across_a_wide_gap():
    """gc.grad built the backward of log(softmax(z)) before the pass, as g / softmax(z) (0 / 0 where the
    softmax underflowed); the pass rewrites it to g - softmax(z) * sum(g)."""
    z = gc.placeholder((1, 3), "float64")
    loss = gc.sum(gc.log(gc.softmax(z)) * gc.constant(np.array([[1.0, 0.0, 0.0]])))
    after = stable_log_softmax(Graph([z], gc.grad(loss, [z])))
    (gradient,), _ = reference.run(after, [np.array([[0.0, 1000.0, 1.0]])], {})
    assert_close(gradient, [[1.0, -1.0, 0.0]], atol=1e-12)  # d/dz of log_softmax(z)[0] = onehot(0) - softmax(z)


def test_other_logs_are_left_alone():
    z = gc.placeholder((2, 3), "float64")
    after = rewrite(stable_log_softmax, [z], [gc.log(gc.sigmoid(z)), gc.log(gc.softmax(z) + 1.0)],
                    [normal(2, 3)])
    assert "log_softmax" not in labels(after) and labels(after).count("log") == 2


# ---- softmax from log-softmax -----------------------------------------------------------------
def test_a_softmax_beside_its_log_softmax_becomes_its_exp_and_argmax_reads_the_logits():
    z = gc.placeholder((4, 5), "float64")
    outputs = [gc.log_softmax(z), gc.softmax(z) * 2.0, gc.argmax(gc.softmax(z), -1)]
    after = rewrite(softmax_from_log_softmax, [z], outputs, [normal(4, 5)])
    after = eliminate_common_subexpressions(after)
    assert sorted(labels(after)) == ["argmax", "exp", "log_softmax", "multiply"]
    log_softmax, scaled, argmax = after.outputs
    assert scaled.inputs[0].attrs["label"] == "exp" and scaled.inputs[0].inputs[0] is log_softmax
    assert argmax.inputs[0] is z


def test_a_softmax_over_another_axis_than_the_log_softmax_is_left_alone():
    z = gc.placeholder((4, 5), "float64")
    outputs = [gc.softmax(z, 0), gc.log_softmax(z, 1), gc.argmax(gc.softmax(z, 0), 1)]
    after = rewrite(softmax_from_log_softmax, [z], outputs, [normal(4, 5)])
    assert labels(after).count("softmax") == 2 and after.outputs[2].inputs[0].op.name == "softmax"


# ---- relu mask from the activation ------------------------------------------------------------
def _dense_relu_gradient():
    """x @ w + b -> relu -> weighted sum, and its gradient for w; x's first row is 0 and b[0] = 0, so a
    pre-activation is exactly 0 there (relu'(0) = 0 either way)."""
    x, w, b = gc.placeholder((3, 4), "float64"), gc.placeholder((4, 5), "float64"), gc.placeholder((5,), "float64")
    pre_activation = x @ w + b
    loss = gc.sum(gc.relu(pre_activation) * gc.constant(normal(3, 5)))
    x_value, b_value = normal(3, 4), normal(5)
    x_value[0], b_value[0] = 0.0, 0.0
    return [x, w, b], [loss, *gc.grad(loss, [w])], [x_value, normal(4, 5), b_value], pre_activation


def _masks(graph):
    return [n for n in computed(graph) if n.op.name == "elementwise" and n.attrs["expr"].has(sympy.Heaviside)]


def test_the_backward_mask_reads_relus_output_so_the_pre_activation_has_one_reader():
    inputs, outputs, feeds, pre_activation = _dense_relu_gradient()
    before = Graph(inputs, outputs)
    (mask,) = _masks(before)
    assert pre_activation in mask.inputs and consumer_counts(before)[pre_activation.id] == 2
    after = rewrite(relu_mask_from_output, inputs, outputs, feeds)
    (mask,) = _masks(after)
    (relu,) = [n for n in computed(after) if n.attrs.get("label") == "relu"]
    assert relu in mask.inputs and pre_activation not in mask.inputs
    assert mask.attrs["expr"] == arg(0) * sympy.Heaviside(arg(1))
    assert consumer_counts(after)[pre_activation.id] == 1


def test_with_the_mask_rewritten_dense_bias_relu_fuses_into_one_matmul():
    inputs, outputs, _, _ = _dense_relu_gradient()
    x = inputs[0]

    def forward_epilogue(graph):
        (dense,) = [n for n in computed(fuse_matmul_epilogue(fuse_elementwise(graph)))
                    if n.op.name == "fused_matmul" and n.inputs[0] is x]
        return dense.attrs["epilogue"]
    graph = Graph(inputs, outputs)
    assert forward_epilogue(graph) == arg(0) + arg(1)  # z is read by relu and by the mask: relu stays apart
    assert forward_epilogue(relu_mask_from_output(graph)) == sympy.Max(0, arg(0) + arg(1))


def test_a_body_that_uses_the_pre_activation_beyond_its_sign_keeps_it():
    z, g = gc.placeholder((2, 3), "float64"), gc.placeholder((2, 3), "float64")
    activation = gc.relu(z)
    slope = make("custom", arg(0) * arg(1) * sympy.Heaviside(arg(1)), [g, z], "float64")
    after = rewrite(relu_mask_from_output, [z, g], [activation, slope], [normal(2, 3), normal(2, 3)])
    assert after.outputs[1] is slope


# ---- elementwise fusion -----------------------------------------------------------------------
def test_an_elementwise_chain_becomes_one_node_with_the_substituted_body():
    x, y = gc.placeholder((3, 4), "float64"), gc.placeholder((4,), "float64")
    after = rewrite(fuse_elementwise, [x, y], [gc.tanh(gc.exp(x) * 2.0 + y)], [normal(3, 4), normal(4)])
    (fused,) = computed(after)
    assert fused.inputs == (x, y) and fused.attrs["label"] == "tanh" and fused.dtype == "float64"
    assert fused.attrs["expr"].doit() == sympy.tanh(2.0 * sympy.exp(arg(0)) + arg(1))  # substituted unevaluated


def test_a_producer_with_several_readers_is_not_fused():
    x, y = gc.placeholder((3,), "float64"), gc.placeholder((3,), "float64")
    shared, magnitude = gc.exp(x), gc.abs(x)
    after = rewrite(fuse_elementwise, [x, y], [shared * y + shared, gc.sqrt(magnitude), magnitude],
                    [normal(3), normal(3)])
    assert sorted(labels(after)) == ["abs", "add", "exp", "sqrt"]
    add = after.outputs[0]
    assert add.inputs == (shared, y) and add.attrs["expr"].doit() == arg(0) * arg(1) + arg(0)  # unevaluated: as numpy computes it
    assert after.outputs[1].inputs == (after.outputs[2],)  # abs is an output too: computed once


def test_a_boolean_producer_becomes_a_piecewise_in_arithmetic():
    x, y = gc.placeholder((5,), "float64"), gc.placeholder((5,), "float64")
    after = rewrite(fuse_elementwise, [x, y], [gc.cast(x > y, "float64") * y],
                    [np.array([1.0, -1.0, 2.0, 0.0, 3.0]), np.array([0.0, 2.0, 1.0, 0.0, -4.0])])
    (fused,) = computed(after)
    assert fused.inputs == (x, y)
    assert fused.attrs["expr"].doit() == sympy.Piecewise((1, arg(0) > arg(1)), (0, True)) * arg(1)


def test_producers_of_another_float_dtype_are_not_fused():
    x32, y64 = gc.placeholder((3,), "float32"), gc.placeholder((3,), "float64")
    exp32, tanh64 = gc.exp(x32), gc.tanh(y64)
    widened = gc.cast(exp32, "float64") + y64  # the exact float32 -> float64 cast fuses into the add
    narrowed = gc.cast(tanh64, "float32") * x32  # the rounding float64 -> float32 cast stays a node
    after = rewrite(fuse_elementwise, [x32, y64], [widened, narrowed], [normal(3).astype(np.float32), normal(3)])
    assert sorted(labels(after)) == ["add", "cast", "exp", "multiply", "tanh"]
    assert after.outputs[0].inputs == (exp32, y64) and after.outputs[0].dtype == "float64"
    cast = after.outputs[1].inputs[0]
    assert cast.attrs["label"] == "cast" and cast.dtype == "float32" and cast.inputs == (tanh64,)


# ---- matmul epilogue --------------------------------------------------------------------------
def test_dense_bias_relu_becomes_one_fused_matmul_with_a_relu_epilogue():
    x, w = gc.placeholder(("batch", 4), "float64"), gc.placeholder((4, 5), "float64")
    b = gc.placeholder((5,), "float64")
    dense = gc.relu(x @ w + b)
    after = rewrite(lambda graph: fuse_matmul_epilogue(fuse_elementwise(graph)), [x, w, b], [dense],
                    [normal(6, 4), normal(4, 5), normal(5)], {BATCH: 6})
    (fused,) = computed(after)
    assert fused.op.name == "fused_matmul" and fused.inputs == (x, w, b)
    assert fused.attrs["epilogue"] == sympy.Max(0, arg(0) + arg(1)) and fused.attrs["label"] == "matmul+relu"
    assert not fused.attrs["transpose_a"] and not fused.attrs["transpose_b"]


def test_the_epilogue_pass_alone_fuses_the_single_elementwise_reader():
    x, w, b = gc.placeholder((3, 4), "float64"), gc.placeholder((4, 5), "float64"), gc.placeholder((5,), "float64")
    after = rewrite(fuse_matmul_epilogue, [x, w, b], [gc.relu(x @ w + b)], [normal(3, 4), normal(4, 5), normal(5)])
    assert labels(after) == ["fused_matmul", "relu"]
    assert computed(after)[0].attrs["epilogue"] == arg(0) + arg(1)


def test_the_relu_backward_becomes_a_fused_matmul_with_a_heaviside_epilogue():
    inputs, outputs, feeds, pre_activation = _dense_relu_gradient()
    x, w, b = inputs
    hidden = gc.relu(pre_activation)
    w2 = gc.placeholder((5, 2), "float64")
    loss = gc.sum(hidden @ w2 * gc.constant(normal(3, 2)))
    (d_w,) = gc.grad(loss, [w])
    after = rewrite(fuse_matmul_epilogue, [x, w, b, w2], [d_w], feeds + [normal(5, 2)])
    (backward,) = [n for n in computed(after) if n.op.name == "fused_matmul" and n.inputs[0] is not x]
    assert backward.attrs["epilogue"] == arg(0) * sympy.Heaviside(arg(1))
    assert backward.inputs[1] is w2 and backward.attrs["transpose_b"] and not backward.attrs["transpose_a"]
    assert backward.inputs[2].name == pre_activation.name  # relu' reads the (rewritten) pre-activation


def _unfusable(case):
    """(inputs, outputs, feeds) of a matmul whose elementwise reader must stay a separate node."""
    a, b = gc.placeholder((3, 4), "float64"), gc.placeholder((4, 5), "float64")
    if case == "two readers":
        product = a @ b
        return [a, b], [gc.exp(product), product], [normal(3, 4), normal(4, 5)]
    if case == "broadcast beyond the product":
        column, wide = gc.placeholder((4, 1), "float64"), gc.placeholder((3, 7), "float64")
        return [a, column, wide], [a @ column + wide], [normal(3, 4), normal(4, 1), normal(3, 7)]
    if case == "batched":
        stacked = gc.placeholder((2, 3, 4), "float64")
        return [stacked, b], [gc.exp(stacked @ b)], [normal(2, 3, 4), normal(4, 5)]
    return [a, b], [gc.cast(a @ b, "float32") + 1.0], [normal(3, 4), normal(4, 5)]


@pytest.mark.parametrize("case", ["two readers", "broadcast beyond the product", "batched", "other dtype"])
def test_matmuls_that_cannot_take_an_epilogue_are_left_alone(case):
    inputs, outputs, feeds = _unfusable(case)
    after = rewrite(fuse_matmul_epilogue, inputs, outputs, feeds)
    assert "fused_matmul" not in labels(after) and "matmul" in labels(after)
