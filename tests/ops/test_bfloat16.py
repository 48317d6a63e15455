"""bfloat16 in the IR: casts (ml_dtypes' rounding), dtype promotion, feeding, and the autocast pass that marks
the products of precision="mixed_bfloat16" (checked on the reference backend; the GEMMs in tests/native)."""
import ml_dtypes
import numpy as np
import pytest

import graphc as gc
from graphc.graph import GraphError, dtypes
from graphc.passes.autocast import autocast

F32 = np.finfo(np.float32)
# Zeros, infinities, NaNs (a payload only in the bits bfloat16 drops too), float32's extremes (they round up
# to infinity), ties to even both ways (1 + 2^-8 down to 1, 1 + 3 * 2^-8 up), the smallest normal, subnormals.
SPECIAL = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, F32.max, -F32.max, 3.3895314e38,
                    1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), F32.tiny, 1e-40, -1e-40, 1e-45, 2.0**-133], np.float32)
SPECIAL = np.concatenate([SPECIAL, np.array([0x7F800001, 0xFF800001, 0x7FBFFFFF], np.uint32).view(np.float32)])


def bits(array) -> np.ndarray:
    return np.asarray(array, np.float32).view(np.uint32)


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")  # numpy's note on casting NaNs
def test_cast_to_bfloat16_rounds_as_ml_dtypes_at_special_points():
    x = gc.placeholder((None,), name="x")
    narrow = gc.cast(x, "bfloat16")
    f = gc.function([x], [narrow, gc.cast(narrow, "float32")], backend="reference")
    as_bf16, back = f(SPECIAL)
    assert narrow.dtype == "bfloat16" and as_bf16.dtype == ml_dtypes.bfloat16
    want = SPECIAL.astype(ml_dtypes.bfloat16)
    assert np.array_equal(as_bf16.view(np.uint16), want.view(np.uint16))
    assert np.array_equal(bits(back), bits(want.astype(np.float32)))
    assert np.isnan(back[np.isnan(SPECIAL)]).all()  # signalling payloads too: a NaN never becomes an infinity
    assert np.isposinf(back[6]) and np.isneginf(back[7])  # float32's largest values overflow as float32 would
    assert back[9] == 1.0 and back[10] == 1 + 2**-6  # ties to even
    assert bits(back)[13] == 0x00010000  # a subnormal keeps its upper bits (no flush to zero)


def test_round_to_bfloat16_is_the_pair_of_casts():
    values = np.random.default_rng(0).standard_normal(129).astype(np.float32) * 1e3
    rounded = dtypes.round_to_bfloat16(values)
    assert rounded.dtype == np.float32 and np.all(bits(rounded) & 0xFFFF == 0)
    assert np.array_equal(rounded, values.astype(ml_dtypes.bfloat16).astype(np.float32))
    assert np.all(np.abs(rounded - values) <= np.abs(values) * 2.0**-8)  # half a unit in the last of 8 bits


def test_bfloat16_promotion_and_arithmetic():
    x = gc.placeholder((7,), "bfloat16", name="x")
    y = gc.placeholder((7,), name="y")
    assert (x * 0.5).dtype == "bfloat16" and (x + y).dtype == "float32"
    assert (x + gc.cast(y, "int32")).dtype == "bfloat16" and (x + gc.cast(y, "float64")).dtype == "float64"
    a = np.linspace(-3, 3, 7).astype(ml_dtypes.bfloat16)
    b = np.linspace(0.1, 2, 7).astype(np.float32)
    half, total = gc.function([x, y], [x * 0.5, x + y], backend="reference")(a, b)
    assert half.dtype == ml_dtypes.bfloat16 and np.array_equal(half.astype(np.float32), a.astype(np.float32) * 0.5)
    assert np.array_equal(total, a.astype(np.float32) + b)


def test_gradient_flows_through_bfloat16_casts():
    """d/dx sum(w * f32(bf16(x))) = w: a cast passes the gradient on, converted to the operand's dtype."""
    x = gc.placeholder((129,), name="x")
    w = gc.variable(np.linspace(-1, 1, 129).astype(np.float32), name="w")
    grad = gc.grad(gc.sum(w * gc.cast(gc.cast(x, "bfloat16"), "float32")), x)
    assert grad.dtype == "float32"
    got = gc.function([x], grad, backend="reference")(np.ones(129, np.float32))
    assert np.array_equal(got, w.value)


def test_feeding_bfloat16_placeholders_checks_their_range():
    x = gc.placeholder((2,), "bfloat16", name="x")
    f = gc.function([x], x * 2.0, backend="reference")
    assert np.array_equal(f(np.float32([1.5, -2])).astype(np.float32), [3, -4])
    with pytest.raises(ValueError, match=r"input x: .*the value 1e\+39 at index \[1\] is outside bfloat16's range"):
        f(np.float64([1.0, 1e39]))


def test_the_native_backend_names_a_bfloat16_tensor_it_cannot_store():
    x = gc.placeholder((3,), name="x")
    with pytest.raises(TypeError, match=r"no bfloat16 tensors yet: cast .*test_bfloat16.py:\d+.*backend='reference'"):
        gc.function([x], gc.cast(gc.cast(x, "bfloat16"), "float32") * 2)


def test_unknown_precision_lists_the_known_ones():
    x = gc.placeholder((3,), name="x")
    with pytest.raises(ValueError, match=r"unknown precision 'bfloat16'; known: 'float32', 'mixed_bfloat16'"):
        gc.function([x], x, backend="reference", precision="bfloat16")


def _mlp():
    x = gc.placeholder(("batch", 9), name="x")
    y = gc.placeholder(("batch", 3), name="y")
    rng = np.random.default_rng(1)
    w1 = gc.variable(rng.standard_normal((9, 7)).astype(np.float32), name="w1")
    w2 = gc.variable(rng.standard_normal((7, 3)).astype(np.float32), name="w2")
    loss = gc.mean(gc.categorical_crossentropy(y, gc.softmax(gc.relu(x @ w1) @ w2)))
    grads = gc.grad(loss, [w1, w2])
    return [x, y], loss, [(w, w - 0.1 * g) for w, g in zip((w1, w2), grads)]


def test_autocast_marks_every_float32_product_and_nothing_else():
    inputs, loss, updates = _mlp()
    f = gc.function(inputs, loss, updates, backend="reference", optimize=0)
    graph = f.optimized_graph
    marked = autocast(graph, "mixed_bfloat16")
    assert autocast(graph, "float32") is graph
    products = [n for n in marked.nodes if n.op.name in ("matmul", "fused_matmul")]
    assert len(products) == 5  # forward 2, backward 3 (no gradient for x)
    assert all(n.attrs["precision"] == "bfloat16" and n.dtype == "float32" for n in products)
    assert not [n for n in marked.nodes if "precision" in n.attrs and n not in products]
    assert [n.op.name for n in marked.nodes] == [n.op.name for n in graph.nodes]


def test_mixed_precision_rounds_the_operands_and_keeps_float32_elsewhere():
    """One reference training step under mixed_bfloat16 is the numpy step with each product's operands
    rounded by ml_dtypes (forward and backward) and everything else in float32."""
    inputs, loss, updates = _mlp()
    (w1, _), (w2, _) = updates
    rng = np.random.default_rng(2)
    x = rng.standard_normal((7, 9)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 7)]
    r = dtypes.round_to_bfloat16

    def mm(a, b):
        return r(a) @ r(b)
    h = np.maximum(mm(x, w1.value), 0)
    logits = mm(h, w2.value)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    want_loss = np.mean(-np.sum(y * np.log(p), 1))
    d_logits = (p - y) / 7
    want_w2 = w2.value - 0.1 * mm(h.T, d_logits)
    want_w1 = w1.value - 0.1 * mm(x.T, mm(d_logits, w2.value.T) * (h > 0))
    step = gc.function(inputs, loss, updates, backend="reference", precision="mixed_bfloat16")
    got_loss = step(x, y)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5)
    np.testing.assert_allclose(w1.value, want_w1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w2.value, want_w2, rtol=1e-5, atol=1e-6)
    assert w1.value.dtype == np.float32  # master weights stay float32, with more than bfloat16's bits
    assert np.any(bits(w1.value) & 0xFFFF)


def test_cast_to_an_unknown_dtype_is_a_type_error():
    x = gc.placeholder((3,), name="x")
    with pytest.raises(TypeError, match="bfloat8"):
        gc.cast(x, "bfloat8")
    with pytest.raises(GraphError, match="operand dtypes differ"):
        gc.placeholder((3, 3), "bfloat16") @ gc.placeholder((3, 3))
