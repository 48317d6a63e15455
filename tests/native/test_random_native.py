"""Random kernels on the llvm backend: the IR Philox against Random123's known answers, every distribution
bit for bit against the reference backend (which draws through numpy's Philox), on any thread count, at any
optimization level, for the host and an AVX2-only target."""
import ctypes

import numpy as np
import pytest
from llvmlite import ir

import graphc as gc
from graphc.lower.irutil import I64, PTR
from graphc.lower.jit import compile_module
from graphc.lower.random import philox4x64
from graphc.lower.target import avx2_target, host_target
from graphc.ops.random import philox_words

from tests.ops.test_random_ops import KNOWN_ANSWERS

TARGETS = [pytest.param(None, id="host"), pytest.param("avx2", id="avx2")]


@pytest.fixture(autouse=True)
def fresh_step():
    gc.set_random_seed(0)


def _target(name):
    return avx2_target() if name == "avx2" else host_target()


@pytest.mark.parametrize("counter, key, words", KNOWN_ANSWERS)
def test_ir_philox_gives_random123s_known_answers(counter, key, words):
    """``void philox(i64* counter_and_result)``: the four words replace the counter."""
    module = ir.Module(name="philox_test")
    function = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR]), name="philox")
    b = ir.IRBuilder(function.append_basic_block("entry"))
    pointers = [b.gep(function.args[0], [ir.Constant(I64, i)], source_etype=I64) for i in range(4)]
    result = philox4x64(b, [b.load(p, typ=I64) for p in pointers], [ir.Constant(I64, k) for k in key])
    for value, pointer in zip(result, pointers):
        b.store(value, pointer)
    b.ret_void()
    compiled = compile_module(module, avx2_target())
    buffer = np.array(counter, dtype=np.uint64)
    ctypes.CFUNCTYPE(None, ctypes.c_void_p)(compiled.address("philox"))(buffer.ctypes.data)
    assert buffer.tolist() == list(words)


def _program(dtype):
    """Every distribution over a symbolic batch, and dropout's gradient."""
    x = gc.placeholder(("batch", 33), dtype, name="x")
    dropped = gc.dropout(x, 0.25, seed=7)
    (gradient,) = gc.grad(gc.sum(dropped * x), [x])
    return x, [gc.random_uniform(x.shape, dtype=dtype, seed=5), gc.random_normal(("batch", 33), dtype=dtype, seed=6),
               gc.random_uniform((7,), minval=-1.0, maxval=2.0, dtype=dtype, seed=8), dropped, gradient]


def _runs(backend, dtype, batches, **options):
    gc.set_random_seed(0)  # each program its own step counter, at 0
    x, outputs = _program(dtype)
    f = gc.function([x], outputs, backend=backend, **options)
    rng = np.random.default_rng(0)
    return [f(rng.normal(size=(n, 33)).astype(dtype)) for n in batches]


def _assert_same(actual_runs, expected_runs, dtype):
    for actual, expected in zip(actual_runs, expected_runs):
        for index, (a, e) in enumerate(zip(actual, expected)):
            if index == 1 and dtype == "float64":
                # The normals' log, cos and sin come from different libms (numpy's and the C library's).
                np.testing.assert_allclose(a, e, rtol=4 * np.finfo(dtype).eps, atol=4 * np.finfo(dtype).eps)
            else:
                np.testing.assert_array_equal(a, e, err_msg=f"output {index}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("target", TARGETS)
def test_native_values_equal_the_reference_bit_for_bit(dtype, target):
    batches = (1, 7, 129)  # a fresh step per call: the three calls draw different numbers
    expected = _runs("reference", dtype, batches)
    _assert_same(_runs("llvm", dtype, batches, target=_target(target), threads=2), expected, dtype)
    words = philox_words(5, 0, 33)  # the first call's uniforms are the documented words' top bits
    bits = 24 if dtype == "float32" else 53
    np.testing.assert_array_equal(expected[0][0][0], (words >> np.uint64(64 - bits)) * 2.0**-bits)


def test_each_call_draws_fresh_numbers_and_a_reset_step_repeats_them():
    x = gc.placeholder((None, 9), name="x")
    y = gc.dropout(x, 0.5, seed=3)
    f = gc.function([x], [y, gc.random_normal(x.shape, seed=4)])
    ones = np.ones((5, 9), "float32")
    first, second = f(ones), f(ones)
    assert not np.array_equal(first[0], second[0]) and not np.array_equal(first[1], second[1])
    y.inputs[-1].value = np.int64(0)
    for again, before in zip(f(ones), first):
        np.testing.assert_array_equal(again, before)


@pytest.mark.parametrize("threads", [1, 3, 4])
def test_same_bits_on_any_thread_count_and_optimization_level(threads):
    """Large enough (2000 x 33 > the parallel threshold) that the threads split the blocks."""
    batches = (2000, 5)
    expected = _runs("llvm", "float32", batches, threads=2, optimize=2)
    _assert_same(_runs("llvm", "float32", batches, threads=threads, optimize=0 if threads == 3 else 2),
                 expected, "float32")


def test_dropout_after_relu_trains_like_the_reference():
    """A dense layer with dropout between relu and the next product, one SGD step per call: the weights after
    three calls (three masks) agree with the reference backend's."""
    def train(backend):
        gc.set_random_seed(1)
        rng = np.random.default_rng(2)
        x = gc.placeholder((None, 6), "float64", name="x")
        w1, w2 = gc.variable(rng.normal(size=(6, 16))), gc.variable(rng.normal(size=(16, 1)))
        hidden = gc.dropout(gc.relu(gc.dot(x, w1)), 0.5)
        loss = gc.mean(gc.square(gc.dot(hidden, w2)))
        grads = gc.grad(loss, [w1, w2])
        f = gc.function([x], loss, [(w, w - 0.01 * g) for w, g in zip((w1, w2), grads)], backend=backend)
        losses = [f(rng.normal(size=(9, 6))) for _ in range(3)]
        return losses, w1.value, w2.value
    reference, native = train("reference"), train("llvm")
    np.testing.assert_allclose(native[0], reference[0], rtol=1e-12)
    for a, e in zip(native[1:], reference[1:]):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-14)


def test_dropout_is_fused_with_its_neighbours_and_the_gradient_regenerates_the_mask():
    """dropout(x * 2) + 1 and its gradient against constant weights: each direction is one random kernel."""
    x = gc.placeholder((3, 40), name="x")
    weights = np.random.default_rng(5).normal(size=(3, 40)).astype("float32")
    y = gc.dropout(x * 2.0, 0.3, seed=1) + 1.0
    (gx,) = gc.grad(gc.sum(y * gc.constant(weights)), [x])
    f = gc.function([x], [y, gx], threads=2)
    nodes = f.optimized_graph.nodes
    randoms = [n for n in nodes if n.op.name == "random"]
    assert sorted(n.attrs["label"] for n in randoms) == ["dropout+add", "dropout+dmultiply/d0"]
    assert not [n for n in nodes if n.op.name == "elementwise" and n.shape == x.shape]  # nothing left unfused
    assert sorted(k.label for k in f.program.schedule.kernels) == ["add", "dropout+add", "dropout+dmultiply/d0"]
    values = np.random.default_rng(6).normal(size=(3, 40)).astype("float32")
    functions = [gc.function([x], [y, gx], backend="reference", optimize=0),
                 gc.function([x], [y, gx], backend="reference"), f]
    for step in (0, 7):  # the functions share the step: set it before each call
        results = []
        for function in functions:
            randoms[0].inputs[-1].value = np.int64(step)
            results.append(function(values))
        for result in results[1:]:
            for actual, expected in zip(result, results[0]):
                np.testing.assert_array_equal(actual, expected)


def _read_twice(y):
    return (y * 2.0) * (y + 1.0)


@pytest.mark.parametrize("build", [
    lambda x, b: gc.dropout(x, 0.5, seed=2) + b,  # b broadcasts along the rows: the random kernel can't read it
    lambda x, b: gc.random_uniform((1, 40), seed=3) + x,  # the random values broadcast into a larger result
    lambda x, b: _read_twice(gc.dropout(x, 0.5, seed=4)),  # one value, two consumers
    lambda x, b: gc.dropout(x * 3.0 + b, 0.5, seed=5),  # a producer reading b
], ids=["broadcast operand", "broadcast random", "two uses", "broadcast producer"])
def test_what_cannot_be_fused_stays_apart_and_right(build):
    """Each stays a plain random kernel, and computes what the unoptimized reference does."""
    x = gc.placeholder(("batch", 40), name="x")
    b = gc.placeholder((40,), name="b")
    y = build(x, b)
    arrays = [np.random.default_rng(7).normal(size=s).astype("float32") for s in ((5, 40), (40,))]
    expected = gc.function([x, b], y, backend="reference", optimize=0)(*arrays)
    gc.set_random_seed(0)
    f = gc.function([x, b], y)
    step = [n for n in f.optimized_graph.nodes if n.op.name == "random"][0].inputs[-1]
    step.value = np.int64(0)
    np.testing.assert_array_equal(f(*arrays), expected)
    labels = {n.attrs["label"] for n in f.optimized_graph.nodes if n.op.name == "random"}
    assert labels <= {"dropout", "random_uniform"}  # nothing fused into them


def test_programs_that_differ_only_in_their_seeds_share_their_code():
    """The seed is a constant the kernel loads, not part of the code: the object cache serves both."""
    def program(seed):
        x = gc.placeholder((None, 8), name="x")
        return gc.function([x], gc.dropout(gc.relu(x), 0.5, seed=seed))
    first, second = program(1), program(2)
    assert first.program.schedule.fingerprint() == second.program.schedule.fingerprint()
    assert first.llvm_ir() == second.llvm_ir()
    ones = np.ones((4, 8), "float32")
    assert not np.array_equal(first(ones), second(ones))
