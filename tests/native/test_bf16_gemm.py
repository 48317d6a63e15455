"""The native GEMMs of precision="mixed_bfloat16": vdpbf16ps on k-pairs where the host has AVX512-BF16, the
float32 kernel on rounded operands on the AVX2 target; both against numpy on operands rounded by ml_dtypes
with float32 sums, and a training step with fused epilogues and updates against the reference backend."""
import numpy as np
import pytest

import graphc as gc
from graphc.graph.dtypes import round_to_bfloat16
from graphc.lower.gemm import GemmSpec, uses_bf16_dot
from graphc.lower.target import avx2_target, host_target
from graphc.ops.linalg import matmul_t
from tests.ops.test_bfloat16 import SPECIAL

TARGETS = {"host": host_target, "avx2": avx2_target}
# (M, K, N, transpose_a, transpose_b, K known when compiling): odd sizes, odd K (the last k-pair is half zeros).
CASES = [(1, 1, 1, False, False, True), (7, 5, 9, False, False, True), (129, 33, 17, True, False, True),
         (7, 129, 40, False, True, True), (20, 7, 129, True, True, True), (9, 16, 33, False, False, True),
         (7, 5, 33, False, False, False), (129, 7, 10, True, False, False), (17, 1, 3, False, True, False),
         (31, 128, 20, True, False, False), (100, 784, 20, False, False, True), (100, 784, 20, True, False, True)]


def _operands(case, rng):
    m, k, n, ta, tb, _ = case
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    return a, b


def _emulated(a, b, ta, tb):
    """numpy's product of the operands rounded by ml_dtypes, in float64, and a bound for float32 sums of it."""
    a = round_to_bfloat16(a.T if ta else a).astype(np.float64)
    b = round_to_bfloat16(b.T if tb else b).astype(np.float64)
    return a @ b, (np.abs(a) @ np.abs(b)) * a.shape[1] * 2.0**-23 + 1e-30


@pytest.fixture(scope="module", params=sorted(TARGETS))
def products(request):
    """One function per target computing every case's product (one compile)."""
    placeholders, outputs = [], []
    for m, k, n, ta, tb, static_k in CASES:
        depth = k if static_k else None
        a = gc.placeholder((depth, None) if ta else (None, depth))
        b = gc.placeholder((n, depth) if tb else (depth, n))
        placeholders += [a, b]
        outputs.append(matmul_t(a, b, ta, tb))
    target = TARGETS[request.param]()
    return target, gc.function(placeholders, outputs, precision="mixed_bfloat16", target=target)


def test_bf16_gemms_match_numpy_on_rounded_operands(products):
    target, f = products
    rng = np.random.default_rng(0)
    operands = [_operands(case, rng) for case in CASES]
    results = f(*[x for pair in operands for x in pair])
    for case, (a, b), got in zip(CASES, operands, results):
        want, bound = _emulated(a, b, *case[3:5])
        assert got.shape == want.shape and got.dtype == np.float32
        error = np.abs(got - want)
        assert np.all(error <= bound), (target.cpu, case, error.max(), bound.min())
        if case[1] >= 5:  # the rounding happened: the float32 product differs by far more
            exact = (a.T if case[3] else a) @ (b.T if case[4] else b)
            assert np.abs(got - exact).max() > max(10 * error.max(), 1e-4), case
    ir_text = "".join(f.llvm_ir().values())
    dot = uses_bf16_dot(GemmSpec("float32", None, 9, 5, precision="bfloat16"), target)
    assert dot == (target.has_feature("avx512bf16") and target.vector_bytes == 64)
    assert ("llvm.x86.avx512bf16.dpbf16ps.512" in ir_text) == dot


@pytest.mark.parametrize("target_name", sorted(TARGETS))
@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")
def test_packing_rounds_special_values_as_ml_dtypes(target_name):
    """op(A) with K = 1 times ones: each result is the packing's rounding of one value of A."""
    target = TARGETS[target_name]()
    a, b = gc.placeholder((None, 1)), gc.placeholder((1, 3))
    f = gc.function([a, b], a @ b, precision="mixed_bfloat16", target=target)
    got = f(SPECIAL[:, None], np.ones((1, 3), np.float32))
    want = np.repeat(round_to_bfloat16(SPECIAL)[:, None], 3, axis=1)
    if uses_bf16_dot(GemmSpec("float32", None, 3, 1, precision="bfloat16"), target):
        want[np.abs(want) < np.finfo(np.float32).tiny] = 0  # vdpbf16ps reads and writes subnormals as zeros
    np.testing.assert_array_equal(got, want)  # NaN where NaN, bits elsewhere (-0 == 0)


def _training_step(backend, precision, **options):
    """An MLP step whose GEMMs carry epilogues (bias + relu; the softmax rows) and SGD updates of their
    weight gradients: (the step function, its variables)."""
    rng = np.random.default_rng(3)
    x = gc.placeholder(("batch", 33), name="x")
    y = gc.placeholder(("batch", 10), name="y")
    w1 = gc.variable(rng.standard_normal((33, 129)).astype(np.float32) * 0.2, name="w1")
    b1 = gc.variable(np.zeros(129, np.float32), name="b1")
    w2 = gc.variable(rng.standard_normal((129, 10)).astype(np.float32) * 0.1, name="w2")
    loss = gc.mean(gc.categorical_crossentropy(y, gc.softmax(gc.relu(x @ w1 + b1) @ w2)))
    params = [w1, b1, w2]
    updates = [(p, p - 0.5 * g) for p, g in zip(params, gc.grad(loss, params))]
    return gc.function([x, y], loss, updates, backend=backend, precision=precision, **options), params


def _train(step, params, steps=3):
    rng = np.random.default_rng(4)
    losses = []
    for _ in range(steps):
        x = rng.standard_normal((7, 33)).astype(np.float32)
        y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 7)]
        losses.append(float(step(x, y)))
    return np.array(losses), [p.value.copy() for p in params]


@pytest.mark.parametrize("target_name, threads", [("host", 1), ("host", 2), ("avx2", 2)])
def test_mixed_precision_training_matches_the_reference_backend(target_name, threads):
    step, params = _training_step("llvm", "mixed_bfloat16", target=TARGETS[target_name](), threads=threads)
    kernels = step.program.schedule.kernels
    assert sum(bool(k.updates) for k in kernels) >= 1  # updates still ride in a GEMM's epilogue
    products = [n for k in kernels for n in k.nodes if n.op.kind == "matmul"]
    assert len(products) == 5 and any(n.op.name == "fused_matmul" for n in products)  # bias + relu fused too
    assert all(n.attrs["precision"] == "bfloat16" for n in products)
    native = _train(step, params)
    reference = _train(*_training_step("reference", "mixed_bfloat16"))
    full = _train(*_training_step("reference", "float32"))
    for got, want, fp32 in zip([native[0], *native[1]], [reference[0], *reference[1]], [full[0], *full[1]]):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
        assert np.abs(fp32 - want).max() > 10 * np.abs(got - want).max()  # the precision is bfloat16's


def test_mixed_precision_is_bit_identical_for_any_thread_count():
    one = _train(*_training_step("llvm", "mixed_bfloat16", threads=1))
    three = _train(*_training_step("llvm", "mixed_bfloat16", threads=3))
    for a, b in zip([one[0], *one[1]], [three[0], *three[1]]):
        assert np.array_equal(a, b)


CONVOLUTIONS = [  # batch, (H, W), (KH, KW), C, F, strides, padding: odd sizes, an odd K (3x3x1, 1x1x3)
    (2, (7, 9), (3, 3), 1, 17, 1, "valid"),
    (3, (9, 8), (3, 2), 5, 33, (2, 1), "same"),
    (1, (6, 6), (1, 1), 3, 7, 2, "valid"),
]


@pytest.mark.parametrize("case", CONVOLUTIONS)
@pytest.mark.parametrize("target_name", sorted(TARGETS))
def test_mixed_precision_convolutions_match_the_reference_backend(case, target_name):
    """Forward (bias + relu fused), data gradient (conv_transpose) and filter gradient (a convolution), all
    reading bfloat16 operands: native against the reference backend's ml_dtypes rounding."""
    batch, hw, taps, channels, filters, strides, padding = case
    rng = np.random.default_rng(7)
    x = gc.placeholder((None, *hw, channels))
    w = gc.variable((rng.standard_normal((*taps, channels, filters)) / np.sqrt(channels)).astype(np.float32))
    b = gc.variable(rng.standard_normal(filters).astype(np.float32))
    y = gc.relu(gc.conv2d(x, w, strides, padding) + b)
    outputs = [y, *gc.grad(gc.sum(y * y), [x, w])]
    data = rng.standard_normal((batch, *hw, channels)).astype(np.float32)
    native = gc.function([x], outputs, precision="mixed_bfloat16", target=TARGETS[target_name]())
    assert {n.op.name for n in native.optimized_graph.nodes if n.attrs.get("precision")} == {
        "fused_conv", "conv", "conv_transpose"}
    want = gc.function([x], outputs, backend="reference", precision="mixed_bfloat16")(data)
    full = gc.function([x], outputs, backend="reference")(data)
    for got, expected, fp32 in zip(native(data), want, full):
        scale = float(np.abs(expected).max())
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * scale)
        assert np.abs(fp32 - expected).max() > 10 * np.abs(got - expected).max()


def test_the_default_precision_rounds_nothing():
    """precision="float32" (the default) marks no product and emits no rounding (0x7FFF = 32767 is the
    rounding's increment); "mixed_bfloat16" rounds in every GEMM."""
    default, _ = _training_step("llvm", "float32")
    mixed, _ = _training_step("llvm", "mixed_bfloat16")
    assert not [n for n in default.optimized_graph.nodes if "precision" in n.attrs]
    default_ir, mixed_ir = ("".join(f.llvm_ir().values()) for f in (default, mixed))
    assert "32767" not in default_ir and "dpbf16ps" not in default_ir
    assert "32767" in mixed_ir
