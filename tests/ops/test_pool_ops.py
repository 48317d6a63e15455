"""max_pool2d, avg_pool2d, their gradients and global_avg_pool2d on the reference backend: shapes (symbolic
too), values against a brute-force loop written from TF's rules, gradients against finite differences,
TF's first-maximum rule for ties, special values, second derivatives, and the errors."""
import os

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import graphc as gc
from graphc.graph.shapes import dim_symbol, evaluate_shape, format_shape
from graphc.testing import assert_close, check_grad, evaluate

RNG = np.random.default_rng(12)
HERE = os.path.basename(__file__)


# ---- the brute-force ground truth: every output element by itself, from TF's size rules --------
def _layout(size, k, s, padding):
    """(outputs, padding before) along one axis, as TF's docs state them."""
    if padding == "valid":
        return (size - k) // s + 1, 0
    out = -(-size // s)
    return out, max((out - 1) * s + k - size, 0) // 2


def brute_force(x, pool, strides, padding, kind, g=None):
    """The pooled x (kind 'max' or 'avg'), or with ``g`` the gradient for the output's gradient g."""
    (kh, kw), (sh, sw) = pool, strides
    batch, height, width, channels = x.shape
    (oh, top), (ow, left) = _layout(height, kh, sh, padding), _layout(width, kw, sw, padding)
    out, dx = np.zeros((batch, oh, ow, channels), x.dtype), np.zeros_like(x)
    for n, i, j, c in np.ndindex(batch, oh, ow, channels):
        cells = [(r, q) for r in range(i * sh - top, i * sh - top + kh) for q in range(j * sw - left, j * sw - left + kw)
                 if 0 <= r < height and 0 <= q < width]
        values = [x[n, r, q, c] for r, q in cells]
        if kind == "avg":
            total = x.dtype.type(0)
            for v in values:
                total = total + v
            out[n, i, j, c] = total / len(cells)
            for r, q in cells:
                dx[n, r, q, c] += g[n, i, j, c] / len(cells) if g is not None else 0
            continue
        nans = [k for k, v in enumerate(values) if np.isnan(v)]
        first = nans[0] if nans else values.index(max(values))  # list.index: the first maximum
        out[n, i, j, c] = values[first]
        if g is not None:
            dx[n, cells[first][0], cells[first][1], c] += g[n, i, j, c]
    return out if g is None else dx


POOL = {"max": gc.max_pool2d, "avg": gc.avg_pool2d}
GEOMETRIES = [  # x shape, pool, strides, padding
    ((2, 6, 6, 3), (2, 2), (2, 2), "valid"),
    ((1, 7, 5, 1), (3, 3), (2, 2), "same"),
    ((2, 5, 7, 16), (3, 3), (1, 1), "same"),      # overlapping windows
    ((1, 5, 4, 17), (3, 2), (1, 2), "valid"),     # overlapping rows
    ((3, 1, 1, 3), (1, 1), (1, 1), "valid"),
    ((2, 1, 4, 2), (3, 3), (2, 1), "same"),       # a pool taller than the input
    ((1, 4, 9, 3), (2, 2), (3, 3), "same"),       # strides larger than the pool: gaps
    ((2, 3, 3, 1), (3, 3), (3, 3), "valid"),
]


def _distinct(shape, dtype="float64"):
    """Values at least 0.1 apart in random order: no ties, so finite differences see no kinks."""
    return (RNG.permutation(int(np.prod(shape))).reshape(shape) * 0.1 - 3.0).astype(dtype)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("shape, pool, strides, padding", GEOMETRIES)
def test_values_and_gradients_match_the_brute_force_loop(kind, shape, pool, strides, padding):
    x = gc.placeholder((None,) + shape[1:], "float64")
    y = POOL[kind](x, pool, strides, padding)
    data = _distinct(shape)
    expected = brute_force(data, pool, strides, padding, kind)
    assert evaluate(y, {x: data}).shape == expected.shape
    assert_close(evaluate(y, {x: data}), expected)
    g = gc.placeholder((None,) + expected.shape[1:], "float64")
    dx = gc.grad(gc.sum(y * g), x)
    assert dx.op.name == f"{kind}_pool2d_grad"
    g_data = RNG.standard_normal(expected.shape)
    assert_close(evaluate(dx, {x: data, g: g_data}), brute_force(data, pool, strides, padding, kind, g_data))


def test_float32_average_is_summed_in_window_order_like_the_loop():
    data = RNG.standard_normal((2, 7, 7, 3)).astype(np.float32)
    x = gc.placeholder((2, 7, 7, 3), "float32")
    got = evaluate(gc.avg_pool2d(x, 3, 2, "same"), {x: data})
    assert got.dtype == np.float32
    assert np.array_equal(got, brute_force(data, (3, 3), (2, 2), "same", "avg"))


@st.composite
def _geometries(draw):
    padding = draw(st.sampled_from(["valid", "same"]))
    pool = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    low = pool if padding == "valid" else (1, 1)
    shape = (draw(st.integers(1, 2)), draw(st.integers(low[0], 6)), draw(st.integers(low[1], 6)),
             draw(st.sampled_from([1, 3])))
    return shape, pool, strides, padding


@settings(max_examples=40, deadline=None)
@given(_geometries(), st.sampled_from(["max", "avg"]))
def test_random_geometries_against_the_loop_and_finite_differences(geometry, kind):
    shape, pool, strides, padding = geometry
    data = _distinct(shape)
    x = gc.placeholder(shape, "float64")
    assert_close(evaluate(POOL[kind](x, pool, strides, padding), {x: data}),
                 brute_force(data, pool, strides, padding, kind))
    check_grad(lambda t: POOL[kind](t, pool, strides, padding), [shape], arrays=[data])


def test_shape_rules_keep_symbolic_dims():
    b, h, w = dim_symbol("b"), dim_symbol("h"), dim_symbol("w")
    x = gc.placeholder(("b", "h", "w", 3), "float32")
    assert gc.max_pool2d(x, 2).shape[0] == b and gc.max_pool2d(x, 2).shape[3] == 3
    same = gc.avg_pool2d(x, 3, 2, "same")
    valid = gc.max_pool2d(x, (3, 2), (2, 1))
    bindings = {b: 2, h: 9, w: 4}
    assert evaluate_shape(same.shape, bindings) == (2, 5, 2, 3)
    assert evaluate_shape(valid.shape, bindings) == (2, 4, 3, 3)
    assert gc.global_avg_pool2d(x).shape == (b, 3)
    # the reference runs any size: one graph, two heights
    f = gc.function([x], [same, valid], backend="reference")
    for height in (9, 4):
        data = RNG.standard_normal((2, height, 4, 3)).astype(np.float32)
        got = f(data)
        assert_close(got[0], brute_force(data, (3, 3), (2, 2), "same", "avg"), rtol=1e-6)
        assert_close(got[1], brute_force(data, (3, 2), (2, 1), "valid", "max"))


def test_symbolic_height_smaller_than_a_valid_pool_is_an_error_when_called():
    x = gc.placeholder((1, "h", 4, 1), "float32")
    f = gc.function([x], gc.max_pool2d(x, 3), backend="reference")
    with pytest.raises(ValueError, match=r"the pool 3x3 is larger than the input's 2x4"):
        f(np.zeros((1, 2, 4, 1), np.float32))


def test_strides_default_to_the_pool_and_ints_mean_squares():
    x = gc.placeholder((1, 6, 6, 1), "float32")
    assert gc.max_pool2d(x, 3).attrs == {"pool_size": (3, 3), "strides": (3, 3), "padding": "valid"}
    assert gc.avg_pool2d(x, (2, 3), 1, "same").attrs == {"pool_size": (2, 3), "strides": (1, 1), "padding": "same"}


# ---- ties, special values, padding -------------------------------------------------------------
def _grad_of_max_pool(data, pool, strides, padding="valid", g=None):
    x = gc.placeholder(data.shape, data.dtype)
    y = gc.max_pool2d(x, pool, strides, padding)
    g = np.ones(y.shape, data.dtype) if g is None else g
    return evaluate([y, gc.grad(gc.sum(y * g), x)], {x: data})


def test_ties_send_the_gradient_to_the_first_maximum_in_row_major_order():
    window = np.array([[1.0, 5.0], [5.0, 2.0]]).reshape(1, 2, 2, 1)
    _, dx = _grad_of_max_pool(window, 2, 2)
    assert dx[0, :, :, 0].tolist() == [[0.0, 1.0], [0.0, 0.0]]
    _, dx = _grad_of_max_pool(np.full((1, 2, 2, 1), 3.0), 2, 2)
    assert dx[0, :, :, 0].tolist() == [[1.0, 0.0], [0.0, 0.0]]


def test_overlapping_windows_add_their_gradients():
    # 1x3 windows with stride 1 over [4, 4, 1, 4]: windows [4 4 1] and [4 1 4] both pick their first 4
    data = np.array([4.0, 4.0, 1.0, 4.0]).reshape(1, 1, 4, 1)
    g = np.array([10.0, 20.0]).reshape(1, 1, 2, 1)
    y, dx = _grad_of_max_pool(data, (1, 3), 1, g=g)
    assert y.ravel().tolist() == [4.0, 4.0]
    assert dx.ravel().tolist() == [10.0, 20.0, 0.0, 0.0]


def test_special_values_in_max_pool():
    inf, nan = np.inf, np.nan
    data = np.array([[[-inf, -inf, 1.0, nan, 7.0, 7.0],
                      [-inf, -inf, nan, 2.0, inf, 7.0]]]).reshape(1, 2, 6, 1)
    y, dx = _grad_of_max_pool(data, 2, 2)
    # all -inf: -inf, gradient to the first; NaN: NaN, gradient to the first NaN (np.argmax's choice); inf wins
    assert y.ravel().tolist()[0] == -inf and np.isnan(y.ravel()[1]) and y.ravel()[2] == inf
    assert dx[0, :, :, 0].tolist() == [[1.0, 0.0, 0.0, 1.0, 0.0, 0.0],
                                       [0.0, 0.0, 0.0, 0.0, 1.0, 0.0]]


def test_same_padding_is_never_the_maximum_and_never_counted_in_the_average():
    data = np.full((1, 3, 3, 1), -np.inf)
    y, dx = _grad_of_max_pool(data, 2, 2, "same")  # pads after: windows [0:2], [2:3]
    assert (y == -np.inf).all()
    assert dx[0, :, :, 0].tolist() == [[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 1.0]]
    x = gc.placeholder((1, 3, 3, 1), "float64")
    data = np.arange(9.0).reshape(1, 3, 3, 1)
    # 3x3 windows, stride 1, pad 1 each side: the corner window holds 4 elements, the centre 9
    avg = evaluate(gc.avg_pool2d(x, 3, 1, "same"), {x: data})[0, :, :, 0]
    assert avg[0, 0] == (0 + 1 + 3 + 4) / 4 and avg[1, 1] == 4.0 and avg[2, 1] == (3 + 4 + 5 + 6 + 7 + 8) / 6


# ---- global_avg_pool2d, second derivatives -----------------------------------------------------
def test_global_avg_pool2d_is_the_spatial_mean():
    x = gc.placeholder((None, 4, 5, 3), "float64")
    data = RNG.standard_normal((2, 4, 5, 3))
    assert_close(evaluate(gc.global_avg_pool2d(x), {x: data}), data.mean(axis=(1, 2)), rtol=1e-12)
    check_grad(gc.global_avg_pool2d, [(2, 4, 5, 3)])


def test_second_derivatives_through_average_pooling():
    # avg_pool2d_grad's own gradient is avg_pool2d: the Hessian-vector product checks out numerically
    shape = (1, 5, 4, 2)
    check_grad(lambda t: gc.grad(gc.sum(gc.avg_pool2d(t, 3, 2, "same") ** 3), t), [shape])


def test_second_derivative_of_max_pooling_is_a_clear_error():
    x = gc.placeholder((1, 4, 4, 1), "float64")
    first = gc.grad(gc.sum(gc.max_pool2d(x, 2) ** 2), x)
    with pytest.raises(gc.GradientError, match=r"second derivative of max pooling is not supported.*"
                                                r"max_pool2d_grad_\d+, at .*test_pool_ops.py"):
        gc.grad(gc.sum(first ** 2), x)


# ---- errors at graph construction ----------------------------------------------------------------
IMAGES = ((None, 4, 6, 3), "float32")


@pytest.mark.parametrize("x, build, message", [
    (IMAGES, lambda x: gc.max_pool2d(x, 5), r"max_pool2d: the pool 5x5 is larger than the input's 4x6 with padding "
                                            r"'valid'"),
    (IMAGES, lambda x: gc.avg_pool2d(x, (1, 7)), r"avg_pool2d: the pool 1x7 is larger than the input's 4x6"),
    (IMAGES, lambda x: gc.max_pool2d(x, 0), r"max_pool2d: pool_size must be positive, got 0"),
    (IMAGES, lambda x: gc.max_pool2d(x, (2, -1)), r"pool_size must be positive, got \(2, -1\)"),
    (IMAGES, lambda x: gc.avg_pool2d(x, 2, 0), r"avg_pool2d: strides must be positive, got 0"),
    (IMAGES, lambda x: gc.max_pool2d(x, (2, 2, 2)), r"pool_size must be an int or a pair of ints, got \(2, 2, 2\)"),
    (IMAGES, lambda x: gc.max_pool2d(x, 2.0), r"pool_size must be an int or a pair of ints, got 2.0"),
    (IMAGES, lambda x: gc.max_pool2d(x, 2, padding="SAME"), r"padding must be 'valid' or 'same', got 'SAME'"),
    (((None, 6, 3), "float32"), lambda x: gc.max_pool2d(x, 2), r"needs a 4-D \(batch, height, width, channels\) "
                                                               r"input, got rank 3"),
    (((None, 6, 3), "float32"), gc.global_avg_pool2d, r"global_avg_pool2d: needs a 4-D"),
    (((None, 4, 6, 3), "int32"), lambda x: gc.max_pool2d(x, 2), r"needs a float input, got int32"),
])
def test_bad_pools_are_build_errors_naming_the_shape_and_the_line(x, build, message):
    x = gc.placeholder(*x)
    with pytest.raises(gc.GraphError, match=message) as error:
        build(x)
    assert format_shape(x.shape) in str(error.value) and f"{HERE}:" in str(error.value)
