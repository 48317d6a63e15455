"""conv2d and the conv primitive: the reference against a brute-force loop, gradients (first and second)
against finite differences, native implicit-GEMM kernels against the reference (odd sizes, 1-3 threads, the
AVX2 target, fused epilogues), and the errors."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import graphc as gc
from graphc.lower.target import avx2_target, host_target
from graphc.ops.conv import conv_reference
from graphc.testing import assert_close, check_grad, evaluate

RNG = np.random.default_rng(12)


def brute_force(x, w, strides, padding, lhs_dilation, rhs_dilation, out_hw):
    """The definition, one output element at a time."""
    batch, height, width, _ = x.shape
    taps_h, taps_w, _, filters = w.shape
    out = np.zeros((batch, *out_hw, filters))
    for oh, ow, kh, kw in np.ndindex(*out_hw, taps_h, taps_w):
        ih = oh * strides[0] + kh * rhs_dilation[0] - padding[0][0]
        iw = ow * strides[1] + kw * rhs_dilation[1] - padding[1][0]
        if ih < 0 or iw < 0 or ih % lhs_dilation[0] or iw % lhs_dilation[1]:
            continue
        ih, iw = ih // lhs_dilation[0], iw // lhs_dilation[1]
        if ih < height and iw < width:
            out[:, oh, ow] += x[:, ih, iw] @ w[kh, kw]
    return out


pairs = st.tuples(st.integers(1, 3), st.integers(1, 3))
convolutions = st.fixed_dictionaries({
    "batch": st.integers(1, 3), "hw": st.tuples(st.integers(1, 9), st.integers(1, 9)),
    "taps": st.tuples(st.integers(1, 4), st.integers(1, 4)), "channels": st.integers(1, 4),
    "filters": st.integers(1, 4), "strides": pairs, "lhs_dilation": pairs, "rhs_dilation": pairs,
    "padding": st.tuples(st.tuples(st.integers(-1, 3), st.integers(-1, 3)),
                         st.tuples(st.integers(-1, 3), st.integers(-1, 3)))})


def _conv_or_none(spec, x, w):
    """The general convolution of ``spec``, or None where its window does not fit (a build error)."""
    try:
        return gc.conv_general(x, w, spec["strides"], spec["padding"], spec["lhs_dilation"], spec["rhs_dilation"])
    except gc.GraphError as error:
        assert "larger than" in str(error)
        return None


@settings(max_examples=60, deadline=None)
@given(convolutions)
def test_reference_is_the_definition(spec):
    x = RNG.standard_normal((spec["batch"], *spec["hw"], spec["channels"]))
    w = RNG.standard_normal((*spec["taps"], spec["channels"], spec["filters"]))
    y = _conv_or_none(spec, gc.placeholder(x.shape, "float64"), gc.placeholder(w.shape, "float64"))
    if y is None:
        return
    args = (spec["strides"], spec["padding"], spec["lhs_dilation"], spec["rhs_dilation"], y.shape[1:3])
    assert_close(conv_reference(x, w, *args), brute_force(x, w, *args), rtol=1e-12, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(convolutions)
def test_gradients_match_finite_differences(spec):
    x_shape = (spec["batch"], *spec["hw"], spec["channels"])
    w_shape = (*spec["taps"], spec["channels"], spec["filters"])
    if _conv_or_none(spec, gc.placeholder(x_shape, "float64"), gc.placeholder(w_shape, "float64")) is None:
        return
    check_grad(lambda x, w: _conv_or_none(spec, x, w), [x_shape, w_shape], seed=int(RNG.integers(1000)))


def test_second_derivatives_are_convolutions():
    """d/dw of (dcost/dx . v): the data gradient's own gradient, through the conv vjp applied twice."""
    def cost(x, w):
        y = gc.conv2d(x, w, strides=2, padding="same")
        (dx,) = [gc.grad(gc.sum(y * y), x)]
        return gc.sum(dx * gc.sin(x))
    check_grad(cost, [(2, 5, 6, 3), (3, 2, 3, 2)])


# ---- shapes: TF's rules ------------------------------------------------------------------------
@pytest.mark.parametrize("size, taps, stride, dilation, padding, expected", [
    (28, 3, 1, 1, "valid", 26), (28, 3, 1, 1, "same", 28), (28, 3, 2, 1, "same", 14), (7, 3, 2, 1, "valid", 3),
    (7, 2, 2, 1, "same", 4), (9, 3, 1, 2, "valid", 5), (9, 3, 1, 2, "same", 9), (1, 1, 1, 1, "valid", 1),
    (5, 7, 1, 1, "same", 5), (6, 4, 3, 1, "same", 2),
])
def test_output_sizes_follow_tensorflow(size, taps, stride, dilation, padding, expected):
    x = gc.placeholder((None, size, size, 2), "float32")
    w = gc.placeholder((taps, taps, 2, 3), "float32")
    y = gc.conv2d(x, w, strides=stride, padding=padding, dilation=dilation)
    assert y.shape[1:] == (expected, expected, 3)


def test_same_padding_puts_the_odd_element_after():
    """TF pads (total // 2) before: a 2-tap filter over 4 pixels with stride 1 reads pixels i, i + 1."""
    x = np.arange(4.0).reshape(1, 1, 4, 1)
    w = np.ones((1, 2, 1, 1))
    y = evaluate(gc.conv2d(gc.constant(x), gc.constant(w), padding="same"))
    assert_close(y.ravel(), np.array([1.0, 3.0, 5.0, 3.0]))


def test_symbolic_spatial_sizes_in_the_shape_rule():
    x = gc.placeholder(("batch", "height", "width", 3), "float64")
    y = gc.conv2d(x, gc.placeholder((3, 3, 3, 4), "float64"), strides=2)
    data = RNG.standard_normal((2, 9, 8, 3))
    weights = RNG.standard_normal((3, 3, 3, 4))
    out = gc.function([x, y.inputs[1]], y, backend="reference")(data, weights)
    assert out.shape == (2, 4, 3, 4)
    assert_close(out, brute_force(data, weights, (2, 2), ((0, 0), (0, 0)), (1, 1), (1, 1), (4, 3)), rtol=1e-12)
    with pytest.raises(NotImplementedError, match="static spatial sizes"):
        gc.function([x, y.inputs[1]], y)


# ---- native implicit GEMM against the reference ------------------------------------------------
NATIVE = [  # batch, (H, W), (KH, KW), C, F, strides, padding, dilation
    (1, (1, 1), (1, 1), 1, 1, 1, "valid", 1),
    (2, (28, 28), (3, 3), 1, 32, 1, "valid", 1),
    (3, (13, 13), (3, 3), 32, 64, 1, "valid", 1),
    (2, (5, 5), (3, 3), 64, 64, 1, "valid", 1),
    (1, (7, 9), (7, 7), 3, 17, 2, "same", 1),
    (4, (9, 8), (3, 2), 3, 7, (2, 1), "same", 1),
    (2, (11, 11), (3, 3), 17, 129, 1, "same", 2),
    (2, (6, 6), (1, 1), 16, 16, 2, "valid", 1),
]


def _target(name):
    return avx2_target() if name == "avx2" else host_target()


@pytest.mark.parametrize("case", NATIVE)
@pytest.mark.parametrize("threads, target", [(1, "host"), (2, "host"), (3, "host"), (2, "avx2")])
def test_native_matches_reference(case, threads, target):
    """Forward (with a fused bias + relu), the data gradient and the filter gradient, in float32."""
    batch, hw, taps, channels, filters, strides, padding, dilation = case
    x = gc.placeholder((None, *hw, channels), "float32")
    w = gc.variable((RNG.standard_normal((*taps, channels, filters)) / np.sqrt(channels)).astype(np.float32))
    b = gc.variable(RNG.standard_normal(filters).astype(np.float32))
    y = gc.relu(gc.conv2d(x, w, strides, padding, dilation) + b)
    cost = gc.sum(y * y)
    outputs = [y, *gc.grad(cost, [x, w, b])]
    data = RNG.standard_normal((batch, *hw, channels)).astype(np.float32)
    expected = gc.function([x], outputs, backend="reference")(data)
    native = gc.function([x], outputs, threads=threads, target=_target(target))
    for name, got, want in zip(["y", "dx", "dw", "db"], native(data), expected):
        assert_close(got, want, rtol=2e-5, atol=2e-5 * float(np.abs(want).max()), name=name)


def test_bits_do_not_depend_on_the_thread_count():
    x = gc.placeholder((None, 13, 13, 32), "float32")
    w = gc.variable(RNG.standard_normal((3, 3, 32, 64)).astype(np.float32))
    y = gc.conv2d(x, w)
    outputs = [y, *gc.grad(gc.sum(y * y), [x, w])]
    data = RNG.standard_normal((5, 13, 13, 32)).astype(np.float32)
    results = [gc.function([x], outputs, threads=t)(data) for t in (1, 2, 3)]
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_forward_bias_and_relu_are_one_kernel():
    x = gc.placeholder((None, 8, 8, 3), "float32")
    w = gc.variable(np.ones((3, 3, 3, 16), np.float32))
    b = gc.variable(np.zeros(16, np.float32))
    f = gc.function([x], gc.relu(gc.conv2d(x, w) + b))
    assert [k.node.op.name for k in f.program.schedule.kernels] == ["fused_conv"]


def test_special_values_propagate():
    """inf and NaN in the input reach exactly the outputs whose windows read them; padding adds none."""
    data = np.zeros((1, 4, 4, 1), np.float32)
    data[0, 0, 0, 0] = np.inf
    data[0, 3, 3, 0] = np.nan
    w = np.ones((3, 3, 1, 1), np.float32)
    x = gc.placeholder((1, 4, 4, 1), "float32")
    y = gc.conv2d(x, gc.constant(w), padding="same")
    expected = gc.function([x], y, backend="reference")(data)
    assert_close(gc.function([x], y)(data), expected)
    assert np.isinf(expected[0, 1, 1, 0]) and np.isnan(expected[0, 2, 2, 0]) and expected[0, 0, 3, 0] == 0


def test_float_extremes_do_not_overflow_early():
    big = np.float32(np.finfo(np.float32).max / 16)
    data = np.full((1, 3, 3, 2), big, np.float32)
    w = np.full((3, 3, 2, 1), 0.5, np.float32)
    y = gc.conv2d(gc.placeholder((1, 3, 3, 2), "float32"), gc.constant(w))
    assert_close(gc.function([y.inputs[0]], y)(data), np.full((1, 1, 1, 1), big * 9, np.float32), rtol=1e-6)


# ---- errors ------------------------------------------------------------------------------------
def test_errors_name_shapes_and_the_line():
    x = gc.placeholder((None, 5, 5, 3), "float32")
    with pytest.raises(gc.GraphError, match=r"larger than the height 5.*\(at .*test_conv_ops.py:\d+\)"):
        gc.conv2d(x, gc.placeholder((7, 3, 3, 4), "float32"))
    with pytest.raises(gc.GraphError, match="strides must be positive"):
        gc.conv2d(x, gc.placeholder((3, 3, 3, 4), "float32"), strides=0)
    with pytest.raises(gc.GraphError, match="strides must be positive"):
        gc.conv2d(x, gc.placeholder((3, 3, 3, 4), "float32"), strides=(1, -2))
    with pytest.raises(gc.GraphError, match="padding must be 'valid' or 'same', got 'full'"):
        gc.conv2d(x, gc.placeholder((3, 3, 3, 4), "float32"), padding="full")
    with pytest.raises(gc.GraphError, match=r"3 channels .* expect 4"):
        gc.conv2d(x, gc.placeholder((3, 3, 4, 4), "float32"))
    with pytest.raises(gc.GraphError, match="must be 4-D"):
        gc.conv2d(gc.placeholder((5, 5, 3), "float32"), gc.placeholder((3, 3, 3, 4), "float32"))


def test_nchw_input_gets_a_hint():
    nchw = gc.placeholder((None, 3, 28, 28), "float32")
    with pytest.raises(gc.GraphError, match="looks NCHW: graphc's convolutions take NHWC"):
        gc.conv2d(nchw, gc.placeholder((3, 3, 3, 8), "float32"))


def test_wrong_spatial_size_at_call_names_the_input():
    x = gc.placeholder((None, 28, 28, 1), "float32", name="images")
    f = gc.function([x], gc.conv2d(x, gc.constant(np.ones((3, 3, 1, 2), np.float32))))
    with pytest.raises(ValueError, match="images"):
        f(np.zeros((2, 27, 28, 1), np.float32))


# ---- explain and profile -----------------------------------------------------------------------
def test_explain_shows_the_convolution_and_its_fused_epilogue():
    x = gc.placeholder((None, 8, 8, 3), "float32", name="x")
    w = gc.variable(np.ones((3, 3, 3, 4), np.float32), name="w")
    b = gc.variable(np.zeros(4, np.float32), name="b")
    h = gc.relu(gc.conv2d(x, w) + b)
    assert str(gc.explain(h)) == "Max(0, b + conv(x, w))"
    fused = gc.function([x], h).optimized_graph.outputs[0]
    assert fused.op.name == "fused_conv" and str(gc.explain(fused)) == "Max(0, b + conv(x, w))"


def test_profile_counts_a_convolutions_flops():
    from graphc.viz.profile import profile
    x = gc.placeholder((None, 8, 8, 3), "float32")
    f = gc.function([x], gc.conv2d(x, gc.constant(np.ones((3, 3, 3, 4), np.float32))))
    (row,) = profile(f, [np.ones((2, 8, 8, 3), np.float32)], repeats=2).rows
    assert row.gflops == pytest.approx(2 * 2 * 6 * 6 * 4 * 27 / row.seconds / 1e9)


@pytest.mark.parametrize("lhs_dilation, strides", [((2, 2), (1, 1)), ((2, 1), (2, 1))])
def test_native_gradients_of_a_dilated_input(lhs_dilation, strides):
    """A convolution of a dilated input (as in a data gradient's own gradient) differentiates through the
    flipped-filter convolution, not conv_transpose: native against the reference."""
    x = gc.placeholder((None, 5, 6, 3), "float64")
    w = gc.variable(RNG.standard_normal((3, 2, 3, 4)))
    y = gc.conv_general(x, w, strides, ((1, 0), (0, 2)), lhs_dilation, (1, 1))
    outputs = [y, *gc.grad(gc.sum(y * y), [x, w])]
    data = RNG.standard_normal((2, 5, 6, 3))
    expected = gc.function([x], outputs, backend="reference")(data)
    for got, want in zip(gc.function([x], outputs, threads=2)(data), expected):
        assert_close(got, want, rtol=1e-12, atol=1e-12 * float(np.abs(want).max()))


def test_data_gradient_is_a_scattered_gemm():
    """lhs_dilation 1: the data gradient is conv_transpose (g @ w^T scattered back), not a padded convolution."""
    x = gc.placeholder((None, 13, 13, 32), "float32")
    y = gc.conv2d(x, gc.variable(np.ones((3, 3, 32, 64), np.float32)))
    f = gc.function([x], gc.grad(gc.sum(y * y), x))
    assert "conv_transpose" in [k.node.op.name for k in f.program.schedule.kernels]


def test_profile_counts_a_data_gradients_flops():
    """conv_transpose is g @ w^T: 2 x (pixels of g) x F x (taps x channels), as the forward convolution."""
    from graphc.viz.profile import profile
    x = gc.placeholder((2, 8, 8, 3), "float32")
    y = gc.conv2d(x, gc.constant(np.ones((3, 3, 3, 4), np.float32)))
    f = gc.function([x], gc.grad(gc.sum(y * y), x), optimize=["fuse_elementwise"])
    rows = [r for r in profile(f, [np.ones((2, 8, 8, 3), np.float32)], repeats=2).rows if r.op == "conv_transpose"]
    assert rows and rows[0].gflops == pytest.approx(2 * 2 * 6 * 6 * 4 * 27 / rows[0].seconds / 1e9)
