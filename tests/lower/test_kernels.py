"""Native kernels (every op but matmul) against each op's numpy reference, through ctypes.

Each family is compiled once per target (several kernels per module), then run
with symbolic dims bound to several sizes, with 1 and 2 threads (tid 0 then
tid 1, sequentially: the union must be the whole result).
"""
import ctypes
import functools

import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llvmlite import ir

import graphc as gc
from graphc.graph.shapes import dim_symbol, evaluate_shape
from graphc.lower.jit import compile_module
from graphc.lower.kernels import EMITTERS
from graphc.lower.target import avx2_target, host_target
from graphc.ops.shape import unslice

TARGETS = {"host": host_target, "avx2": avx2_target}
N = dim_symbol("n")
BIG = 300  # n = 300 makes the (n, 129) cases larger than the single-thread threshold: 2 threads split them
SIZES = (1, 7, BIG)
TOLERANCE = {"float32": dict(rtol=2e-5, atol=1e-6), "float64": dict(rtol=1e-12, atol=1e-13)}
# Sums of thousands of values of size ~3 differ from numpy's pairwise order in the last bits of the total.
SUM_TOLERANCE = {"float32": dict(rtol=1e-5, atol=2e-4), "float64": dict(rtol=1e-12, atol=1e-11)}


# ---- harness -------------------------------------------------------------------------------
def dim_index_for(nodes):
    symbols = set()
    for node in nodes:
        for shaped in (node, *node.inputs):
            symbols |= {s for d in shaped.shape if isinstance(d, sympy.Basic) for s in d.free_symbols}
        if "expr" in node.attrs:
            symbols |= {s for s in node.attrs["expr"].free_symbols if not s.name.startswith("%")}
    return {s: i for i, s in enumerate(sorted(symbols, key=lambda s: s.name))}


class Compiled:
    def __init__(self, nodes, target):
        self.nodes = nodes
        self.index = dim_index_for(nodes)
        module = ir.Module()
        for i, node in enumerate(nodes):
            EMITTERS[node.op.name](module, f"k{i}", node, target, self.index)
        self.module = compile_module(module, target)

    def run(self, i, arrays, binding, nthreads=1, out=None):
        node = self.nodes[i]
        if out is None:
            out = np.empty(evaluate_shape(node.shape, binding), node.dtype)
            out.reshape(-1).view(np.uint8)[...] = 0xFF  # NaN / -1 / True: unwritten elements show up
        dims = np.array([binding[s] for s in sorted(self.index, key=self.index.get)] or [0], np.int64)
        arrays = [np.ascontiguousarray(a) for a in arrays]
        signature = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * (len(arrays) + 2), ctypes.c_int32, ctypes.c_int32)
        function = signature(self.module.address(f"k{i}"))
        for tid in range(nthreads):
            function(out.ctypes.data, *[a.ctypes.data for a in arrays], dims.ctypes.data, tid, nthreads)
        return out


def random_input(rng, node, binding, special=True):
    shape = evaluate_shape(node.shape, binding)
    if node.dtype == "bool":
        return rng.random(shape) < 0.5
    if node.dtype.startswith("int"):
        return rng.integers(-5, 6, shape).astype(node.dtype)
    values = rng.standard_normal(shape) * 3
    if special and values.size >= 8:
        flat = values.reshape(-1)
        picks = rng.choice(flat.size, 6, replace=False)
        flat[picks] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 100.0]
    return values.astype(node.dtype)


def check_all(compiled, rng, sizes=SIZES, special=True, tolerance=None):
    """Every kernel of `compiled` equals its reference for each n, with 1 and 2 threads."""
    for i, node in enumerate(compiled.nodes):
        for n in sizes:
            binding = {N: n}
            arrays = [random_input(rng, inp, binding, special) for inp in node.inputs]
            expected = node.op.reference(node, arrays, binding)
            for nthreads in (1, 2):
                got = compiled.run(i, arrays, binding, nthreads)
                assert got.shape == expected.shape
                if node.dtype.startswith("float"):
                    np.testing.assert_allclose(got, expected, **(tolerance or TOLERANCE)[node.dtype],
                                               err_msg=f"{node} n={n} threads={nthreads}")
                else:
                    np.testing.assert_array_equal(got, expected, err_msg=f"{node} n={n} threads={nthreads}")


@functools.lru_cache(maxsize=None)
def compiled_family(family, target_name):
    return Compiled(FAMILIES[family](), TARGETS[target_name]())


# ---- the graphs under test -----------------------------------------------------------------
def elementwise_nodes():
    nodes = []
    for dtype in ("float32", "float64"):
        x = gc.placeholder(("n", 129), dtype)
        row = gc.placeholder((129,), dtype)
        column = gc.placeholder(("n", 1), dtype)
        nodes += [gc.exp(x) + 1, gc.log(x), gc.tanh(x), gc.sigmoid(x), gc.softplus(x), gc.relu(x), gc.sqrt(x),
                  x * row - gc.tanh(row), x / column, x ** 3, x ** -2, gc.power(x, row), gc.abs(x) - x,
                  gc.maximum(x, row), gc.minimum(column, x), gc.clip(x, -1.0, 2.0), x.mean(0, keepdims=True) * x]
        nodes += [gc.where(x > row, x, column), gc.cast(x > 0, dtype) * x]
    nodes = [n for n in nodes if n.op.name == "elementwise"]
    assert len(nodes) >= 30
    return nodes


def mixed_dtype_nodes():
    x = gc.placeholder(("n", 17))
    i = gc.placeholder(("n", 17), "int32")
    j = gc.placeholder((17,), "int64")
    b = gc.placeholder(("n", 17), "bool")
    d = gc.placeholder((17,), "float64")
    return [i + j, i * 3 - j, gc.maximum(i, j), gc.abs(i), gc.cast(i, "float32") * x, x + d, i > x, gc.equal(i, j),
            gc.not_equal(x, x), x <= d, gc.where(b, x, i), gc.where(b, i, j), gc.cast(x, "int32"), gc.cast(i, "bool"),
            gc.cast(b, "float64") + d, gc.log(i)]


def broadcast_nodes():
    a, b = gc.placeholder((3, 1)), gc.placeholder((1, 4))
    scalar, x = gc.placeholder(()), gc.placeholder(("n", 5))
    v = gc.placeholder((5,))
    t3 = gc.placeholder((2, "n", 3), "float64")
    return [a + b, a * b - a, scalar + x, x * v, scalar * v, gc.exp(scalar), t3 * gc.placeholder((2, 1, 3), "float64"),
            t3 + gc.placeholder(("n", 1), "float64"), x / gc.placeholder((1,)), x + x * v]


def reduce_nodes():
    nodes = []
    operations = [gc.sum, gc.max, gc.min]
    for dtype in ("float32", "float64", "int32"):
        x = gc.placeholder((3, "n", 7), dtype)
        for number, axes in enumerate([(0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]):
            if dtype == "float32":  # every operation, with and without keepdims
                nodes += [op(x, axes, keepdims) for op in operations for keepdims in (False, True)]
            else:
                nodes.append(operations[number % 3](x, axes, number % 2 == 0))
    for dtype in ("float32", "float64"):
        bias = gc.placeholder(("n", 129), dtype)
        nodes += [gc.sum(bias, 0), gc.sum(bias, 1), gc.max(bias, 1), gc.min(bias, 0), gc.sum(bias)]
    nodes += [gc.max(gc.placeholder(("n", 1, 5)), 1), gc.sum(gc.placeholder((1, 1)), None),
              gc.max(gc.placeholder(("n", 6), "bool"), 1)]
    return nodes


def argmax_nodes():
    return [gc.argmax(gc.placeholder(("n", 129)), 1), gc.argmax(gc.placeholder(("n", 129), "float64"), 0),
            gc.argmax(gc.placeholder((3, "n", 5), "int32"), 1), gc.argmax(gc.placeholder((3, "n", 5)), 2),
            gc.argmax(gc.placeholder((3, "n", 5)), 0)]


def nn_nodes():
    nodes = []
    for dtype in ("float32", "float64"):
        x = gc.placeholder(("n", 129), dtype)
        t = gc.placeholder((3, "n", 17), dtype)
        nodes += [gc.softmax(x), gc.log_softmax(x), gc.softmax(x, 0), gc.log_softmax(x, 0)]
        nodes += [gc.softmax(t, a) for a in range(3)] + [gc.log_softmax(t, a) for a in range(3)]
    nodes += [gc.one_hot(gc.placeholder(("n", 3), "int32"), 7), gc.one_hot(gc.placeholder(("n",), "int64"), 129,
                                                                           "float64"),
              gc.one_hot(gc.placeholder(("n",), "int32"), 5, "bool")]
    return nodes


def layout_nodes():
    nodes = []
    for dtype in ("float32", "float64", "bool"):
        x = gc.placeholder(("n", 129), dtype)
        t = gc.placeholder((2, "n", 17), dtype)
        nodes += [gc.transpose(x), gc.transpose(t, (1, 0, 2)), gc.transpose(t, (2, 1, 0)), gc.transpose(t, (0, 2, 1)),
                  gc.broadcast_to(gc.placeholder((1, 129), dtype), (N, 129)),
                  gc.broadcast_to(gc.placeholder(("n", 1), dtype), (3, N, 5)),
                  gc.reshape(x, (129, N)), x[1:-1, ::3], x[:, 5], t[::-1, 1:], t[..., 2:17:4],
                  gc.concatenate([x, x[:, :4], gc.placeholder(("n", 2), dtype)], axis=1),
                  gc.concatenate([t, t], axis=0), gc.concatenate([x, x[1:]], axis=0)]
        nodes += [unslice(x[1:-1, ::3], (N, 129), ((1, N - 1, 1), (0, 129, 3)))]
    return [n for n in nodes if n.op.name != "placeholder"]


FAMILIES = {"elementwise": elementwise_nodes, "mixed": mixed_dtype_nodes, "broadcast": broadcast_nodes,
            "reduce": reduce_nodes, "argmax": argmax_nodes, "nn": nn_nodes, "layout": layout_nodes}


# ---- tests ---------------------------------------------------------------------------------
@pytest.mark.parametrize("target_name", list(TARGETS))
@pytest.mark.parametrize("family", ["elementwise", "mixed", "broadcast", "reduce", "argmax", "nn", "layout"])
def test_kernels_match_reference(family, target_name):
    check_all(compiled_family(family, target_name), np.random.default_rng(0),
              sizes=(3, 17) if family == "layout" else SIZES, tolerance=SUM_TOLERANCE if family == "reduce" else None)


def test_two_threads_split_large_work():
    """Above the threshold tid 1 writes part of the result on its own (tid 0 alone leaves it unwritten)."""
    x = gc.placeholder(("n", 129))
    compiled = Compiled([gc.tanh(x)], host_target())
    values = np.linspace(-3, 3, BIG * 129, dtype=np.float32).reshape(BIG, 129)
    only_tid0 = np.full_like(values, np.nan)
    signature = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32,
                                 ctypes.c_int32)
    dims = np.array([BIG], np.int64)
    signature(compiled.module.address("k0"))(only_tid0.ctypes.data, values.ctypes.data, dims.ctypes.data, 0, 2)
    written = ~np.isnan(only_tid0)
    assert 0 < written.sum() < values.size
    np.testing.assert_allclose(compiled.run(0, [values], {N: BIG}, nthreads=2), np.tanh(values), rtol=1e-6)


def test_elementwise_output_may_alias_input0():
    x, row = gc.placeholder(("n", 129)), gc.placeholder((129,))
    node = gc.exp(x * row) - gc.tanh(row)
    compiled = Compiled([node], host_target())
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal(evaluate_shape(i.shape, {N: BIG})).astype(np.float32) for i in node.inputs]
    assert node.inputs[0].shape == node.shape and inputs[0].shape == (BIG, 129)
    expected = node.op.reference(node, inputs, {N: BIG})
    compiled.run(0, inputs, {N: BIG}, nthreads=2, out=inputs[0])
    np.testing.assert_allclose(inputs[0], expected, rtol=2e-6)


def test_argmax_ties_and_nan_like_numpy():
    compiled = compiled_family("argmax", "host")
    x = np.array([[1, 3, 3, 0], [np.nan, 5, np.nan, 1], [2, 2, 2, 2], [-np.inf, -np.inf, np.nan, 9]] * 50,
                 np.float32)
    x = np.pad(x, ((0, 0), (0, 125)), constant_values=-1)
    np.testing.assert_array_equal(compiled.run(0, [x], {N: 200}), np.argmax(x, axis=1))


# ---- random elementwise graphs -------------------------------------------------------------
UNARY = [gc.exp, gc.tanh, gc.sigmoid, gc.relu, gc.abs, gc.negative, gc.square, gc.softplus,
         lambda t: gc.log(gc.abs(t) + 1.0), lambda t: gc.sqrt(gc.abs(t))]
BINARY = [gc.add, gc.subtract, gc.multiply, gc.maximum, gc.minimum,
          lambda a, b: gc.where(a > b, a, b * 0.5), lambda a, b: a / (gc.abs(b) + 1.0)]
SHAPES = [("n", 5), (5,), (1, 5), ("n", 1), ()]


@st.composite
def elementwise_graphs(draw):
    leaves = [gc.placeholder(shape) for shape in draw(st.lists(st.sampled_from(SHAPES), min_size=1, max_size=3))]
    value = leaves[0]
    for _ in range(draw(st.integers(1, 5))):
        if draw(st.booleans()):
            value = draw(st.sampled_from(UNARY))(value)
        else:
            value = draw(st.sampled_from(BINARY))(value, draw(st.sampled_from(leaves)))
    return value


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(elementwise_graphs(), st.integers(0, 2 ** 32 - 1))
def test_random_elementwise_graphs(node, seed):
    if node.op.name != "elementwise":  # e.g. negative(negative(x)) simplified away
        return
    rng = np.random.default_rng(seed)
    compiled = Compiled([node], host_target())
    check_all(compiled, rng, sizes=(1, 9), special=False, tolerance={"float32": dict(rtol=1e-4, atol=1e-5)})
