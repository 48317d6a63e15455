"""sin, cos, floor_divide (//), mod (%), stop_gradient and argmax(axis=None) (issue 10): shape rules, numpy
reference, gradients (finite differences in float64), native kernels against the reference on odd sizes on
both targets, and special points (0, +-inf, NaN, float32 extremes, INT_MIN // -1, division by zero)."""
import numpy as np
import pytest

import graphc as gc
from graphc.graph.node import GraphError
from graphc.lower.target import avx2_target, host_target
from graphc.testing import check_grad

TARGETS = {"host": host_target, "avx2": avx2_target}
BACKENDS = ["reference", "llvm"]
F32 = np.finfo(np.float32)
FLOAT_SPECIALS = [0.0, -0.0, 1.0, -1.0, 0.5, 2.5, -2.5, 3.0, 1e-45, -1e-45, F32.tiny, F32.max, -F32.max, 1e4, -1e4,
                  12867.0, 12868.0, 1e5, 1e30, np.pi, np.inf, -np.inf, np.nan]
INT_SPECIALS = {dtype: [0, 1, -1, 2, -2, 7, -7, np.iinfo(dtype).min, np.iinfo(dtype).max, np.iinfo(dtype).min + 1]
                for dtype in ("int32", "int64")}


def ulp_distance(a, b):
    """float32 distance in representable values; 0 where equal or both NaN."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)

    def ordered(x):
        bits = x.view(np.int32).astype(np.int64)
        return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    return np.where(same, 0, np.abs(ordered(a) - ordered(b)))


def run(build, arrays, backend="llvm", **options):
    """``build(*placeholders)`` on ``arrays`` (their shapes and dtypes) with ``backend``."""
    placeholders = [gc.placeholder(np.shape(a), np.asarray(a).dtype.name, name=f"x{i}") for i, a in enumerate(arrays)]
    return gc.function(placeholders, build(*placeholders), backend=backend, **options)(*arrays)


def assert_same(got, expected, name=""):
    """Bit-for-bit numpy's value: equal (NaN matching NaN) with the sign of zeros too."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.dtype == expected.dtype, name
    np.testing.assert_array_equal(got, expected, err_msg=name)
    if got.dtype.kind == "f":
        np.testing.assert_array_equal(np.signbit(got[got == 0]), np.signbit(expected[got == 0]), err_msg=name)


def pairs(values, dtype):
    """Every (a, b) of ``values``, as two flat arrays."""
    a, b = np.meshgrid(np.array(values, dtype), np.array(values, dtype))
    return a.ravel(), b.ravel()


# ---- shape and dtype rules, and errors that name the user's input -------------------------------
def test_shapes_and_dtypes_follow_numpy_broadcasting_and_graphc_typing():
    x, row = gc.placeholder(("n", 1), name="x"), gc.placeholder((3,), name="row")
    i = gc.placeholder(("n", 3), "int32", name="i")
    assert (x // row).shape == (x.shape[0], 3) and (x % row).dtype == "float32"
    assert (i // 2).dtype == "int32" and (i % i).dtype == "int32"       # integers stay integers
    assert (i // 2.5).dtype == "float32" and (7 % i).dtype == "int32"   # a float scalar makes a float, weakly typed
    assert gc.sin(i).dtype == "float32" and gc.cos(x).shape == x.shape  # as exp: float results for integers
    assert gc.stop_gradient(i).dtype == "int32" and gc.stop_gradient(x).shape == x.shape
    assert gc.floor_divide(x, row).attrs["label"] == "floor_divide" and gc.mod(7.0, x).attrs["label"] == "mod"
    assert gc.argmax(gc.placeholder(("n", 3, 4)), None).shape == ()
    assert gc.argmax(gc.placeholder(("n", 3, 4))).shape == (gc.placeholder(("n",)).shape[0], 3)  # default: -1


def test_errors_name_the_op_and_the_users_operands():
    x, y = gc.placeholder((2, 3), name="x"), gc.placeholder((4,), name="y")
    with pytest.raises(GraphError, match=r"floor_divide: shapes do not broadcast.*\(2, 3\).*\(4,\).*test_more_ops"):
        x // y
    with pytest.raises(GraphError, match=r"mod: shapes do not broadcast"):
        gc.mod(y, x)
    with pytest.raises(GraphError, match=r"sin: boolean operands need an explicit cast"):
        gc.sin(x > 0)
    with pytest.raises(GraphError, match=r"stop_gradient: expected a graph tensor, got list \[1, 2\]"):
        gc.stop_gradient([1, 2])
    with pytest.raises(GraphError, match="argmax"):
        gc.argmax(x, 2)


# ---- the reference is numpy ---------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_floor_divide_and_mod_of_floats_are_numpys_at_every_pair_of_special_points(backend, dtype):
    """numpy's divmod, not floor(x / y): 1 // 0.1 = 9; x // 0 = +-inf or NaN; the remainder has the
    divisor's sign (+0 for 0 % 3, -0 for 0 % -3); inf // y and x % 0 are NaN; -1 % inf = inf."""
    a, b = pairs(FLOAT_SPECIALS + [0.1, -0.1, 5.5, -3.0], dtype)
    quotient, remainder = run(lambda x, y: [x // y, x % y], [a, b], backend)
    with np.errstate(all="ignore"):
        assert_same(quotient, np.floor_divide(a, b), "floor_divide")
        assert_same(remainder, np.remainder(a, b), "mod")
        assert np.floor_divide(np.array(1.0, dtype), np.array(0.1, dtype)) == 9


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_integer_division_by_zero_and_int_min_by_minus_one_do_not_trap(backend, dtype):
    """numpy: x // 0 = x % 0 = 0, INT_MIN // -1 = INT_MIN, INT_MIN % -1 = 0 (with warnings). x86's idiv raises
    SIGFPE on both, which would kill the process: the native kernel never divides by them."""
    a, b = pairs(INT_SPECIALS[dtype], dtype)
    quotient, remainder = run(lambda x, y: [x // y, x % y], [a, b], backend)
    with np.errstate(all="ignore"):
        assert_same(quotient, np.floor_divide(a, b), "floor_divide")
        assert_same(remainder, np.remainder(a, b), "mod")
    minimum = np.iinfo(dtype).min
    assert list(run(lambda x: [x // 0, x % 0, x // -1], [np.array([minimum, 5], dtype)], backend)[2]) == [minimum, -5]


@pytest.mark.parametrize("backend", BACKENDS)
def test_python_operators_and_their_reflections(backend):
    x = np.array([-7.5, -1.0, 0.0, 2.0, 7.25], np.float32)
    i = np.array([-7, -1, 1, 2, 7], np.int32)
    results = run(lambda t, j: [t // 2, 7 // t, t % 2, 7 % t, t % -2.5, j // 2, -7 // j, j % 3, 5 % j,
                                np.float32(3) % t], [x, i], backend)
    with np.errstate(all="ignore"):
        expected = [x // 2, 7 // x, x % 2, 7 % x, x % np.float32(-2.5), i // 2, -7 // i, i % 3, 5 % i, 3 % x]
    for got, want in zip(results, expected):
        assert_same(got, want)


# ---- gradients ----------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_sin_and_cos_gradients_match_finite_differences(backend):
    x = np.array([-3.0, -1.2, 0.0, 0.4, 2.0, 7.5])
    check_grad(gc.sin, None, arrays=[x], backend=backend, rtol=1e-6)
    check_grad(gc.cos, None, arrays=[x], backend=backend, rtol=1e-6)
    check_grad(lambda v: gc.sin(gc.cos(v) * v), None, arrays=[x], backend=backend, rtol=1e-6)
    # Second derivatives: sin'' = -sin, through the gradient graph.
    v = gc.placeholder((6,), "float64", name="v")
    (first,) = [gc.grad(gc.sum(gc.sin(v)), v)]
    second = gc.grad(gc.sum(first), v)
    np.testing.assert_allclose(gc.function([v], second, backend=backend)(x), -np.sin(x), rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_mod_gradient_is_one_and_minus_the_floor_quotient_and_floor_divide_has_none(backend):
    """TF's and JAX's conventions: d(x % y) = dx - (x // y) dy; x // y is a step: zero gradient."""
    x = np.array([-7.3, -2.2, 0.7, 3.1, 9.9])
    y = np.array([2.0, -1.5, 0.3, -4.0, 2.5])  # no x / y within eps of an integer: no jump inside the difference
    check_grad(gc.mod, None, arrays=[x, y], backend=backend, rtol=1e-6)
    check_grad(lambda a, b: gc.sin(a % b) * b, None, arrays=[x, y], backend=backend, rtol=1e-6)
    gx, gy = check_grad(gc.floor_divide, None, arrays=[x, y], backend=backend)[0]
    assert not gx.any() and not gy.any()
    a, b = gc.placeholder((5,), "float64"), gc.placeholder((5,), "float64")
    dx, dy = gc.function([a, b], gc.grad(gc.sum(a % b), [a, b]), backend=backend)(x, y)
    np.testing.assert_array_equal(dx, 1.0)
    np.testing.assert_array_equal(dy, -np.floor_divide(x, y))


@pytest.mark.parametrize("backend", BACKENDS)
def test_stop_gradient_passes_the_value_and_no_gradient(backend):
    """Its derivative is 0, so a cost that reaches x only through it has a zero gradient (JAX's convention;
    the value does depend on x, so it is not 'unconnected'); it survives the stability rewrites that compose
    bodies (log(1 + stop_gradient(x)) becomes log1p of it, still stopped) and fusion."""
    values = np.array([0.5, -0.25, 2.0])
    x = gc.placeholder((3,), "float64", name="x")
    outputs = [gc.stop_gradient(x) * x,
               gc.grad(gc.sum(gc.stop_gradient(x) * x), x),                 # d(c x) = c
               gc.grad(gc.sum(gc.stop_gradient(x)), x),                     # zeros
               gc.grad(gc.sum(gc.log(1 + gc.stop_gradient(x)) + x), x),     # 1
               gc.grad(gc.sum(gc.stop_gradient(gc.exp(x)) * gc.exp(x)), x)]  # exp(x)^2
    for optimize in (0, 2):
        value, scaled, nothing, through_rewrite, fused = gc.function([x], outputs, backend=backend,
                                                                     optimize=optimize)(values)
        assert_same(value, values * values)
        assert_same(scaled, values)
        assert_same(nothing, np.zeros(3))
        assert_same(through_rewrite, np.ones(3))
        np.testing.assert_allclose(fused, np.exp(values) ** 2, rtol=1e-15)
    i = gc.placeholder((2,), "int32", name="i")
    assert list(gc.function([i], gc.stop_gradient(i) * 2, backend=backend)(np.array([3, -4], np.int32))) == [6, -8]


# ---- native kernels against the reference, on odd sizes and both targets ------------------------
def elementwise_graph(dtype):
    x, y = gc.placeholder(("n",), dtype, name="x"), gc.placeholder(("n",), dtype, name="y")
    return [x, y], [gc.sin(x), gc.cos(x), gc.sin(x * 100.0), x // y, x % y, y // 0.75, 2.5 % y, gc.stop_gradient(x) * y,
                    gc.cos(x % y) + gc.sin(y // x), gc.argmax(gc.reshape(x, (1, -1)), None)]


def odd_inputs(size, dtype, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(scale=10, size=(2, size))
    if size >= 7:  # special points in both operands
        x[:7] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 3e38 if dtype == "float32" else 1e300, 1e4]
        y[:7] = [1.0, 2.0, -3.0, 0.0, -2.0, 0.0, np.inf]
    return x.astype(dtype), y.astype(dtype)


@pytest.mark.parametrize("target_name", list(TARGETS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_native_matches_the_reference_on_odd_sizes(target_name, dtype):
    placeholders, outputs = elementwise_graph(dtype)
    native = gc.function(placeholders, outputs, target=TARGETS[target_name]())
    reference = gc.function(placeholders, outputs, backend="reference")
    for size in (1, 7, 129):
        arrays = odd_inputs(size, dtype, size)
        for index, (got, want) in enumerate(zip(native(*arrays), reference(*arrays))):
            if index == 8:  # a sum of a sine and a cosine: a few ulp of each
                np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 if dtype == "float32" else 1e-15)
            elif index in (0, 1, 2):  # sin, cos: a few ulp of numpy's
                np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
                if dtype == "float32":
                    assert ulp_distance(got, want).max() <= 3, (index, size)
                else:
                    np.testing.assert_allclose(got, want, rtol=1e-15, atol=1e-300)
            else:
                assert_same(got, want, f"output {index}, n={size}")


@pytest.mark.parametrize("target_name", list(TARGETS))
@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_native_integer_floor_divide_and_mod_match_numpy_on_odd_sizes(target_name, dtype):
    i, j = gc.placeholder(("n",), dtype, name="i"), gc.placeholder(("n",), dtype, name="j")
    native = gc.function([i, j], [i // j, i % j, -9 // j, i % 4], target=TARGETS[target_name]())
    rng = np.random.default_rng(3)
    for size in (1, 7, 129):
        a, b = rng.integers(-20, 21, (2, size)).astype(dtype)
        b[::3] = 0  # division by zero in every vector
        a[:2], b[:2] = np.iinfo(dtype).min, -1
        with np.errstate(all="ignore"):
            expected = [np.floor_divide(a, b), np.remainder(a, b), np.floor_divide(np.array(-9, dtype), b), a % 4]
        for got, want in zip(native(a, b), expected):
            assert_same(got, want, f"n={size}")


# ---- sin and cos: special points and accuracy -------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sin_and_cos_at_special_points(backend, dtype):
    """NaN and +-inf give NaN, sin(+-0) = +-0, cos(0) = 1; float32's extremes (the largest, the smallest normal
    and subnormal) within 1 ulp of the exact value; past the polynomial's range (12867) libm's sinf/cosf."""
    x = np.array(FLOAT_SPECIALS + [-v for v in FLOAT_SPECIALS], dtype)
    sine, cosine = run(lambda v: [gc.sin(v), gc.cos(v)], [x], backend)
    with np.errstate(all="ignore"):
        for got, name in ((sine, "sin"), (cosine, "cos")):
            want = getattr(np, name)(x)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(x) | np.isinf(x), err_msg=name)
            exact = getattr(np, name)(x.astype(np.float64)).astype(dtype)
            if dtype == "float32":
                assert ulp_distance(got, exact).max() <= 1, (name, x, got, exact)
                assert ulp_distance(got, want).max() <= 2, (name, x, got, want)
            else:
                np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)
    assert_same(sine[x == 0], x[x == 0])  # the sign of zero kept
    assert (cosine[x == 0] == 1).all()


def near_multiples_of_half_pi():
    """The float32s nearest k pi/2 for every k up to 8192, and their neighbours: |r| as small as 4.2e-9."""
    centres = (np.arange(8192) * (np.pi / 2)).astype(np.float32)
    points = np.concatenate([centres, np.nextafter(centres, np.float32(0)), np.nextafter(centres, np.float32(1e9))])
    return np.concatenate([points, -points])


@pytest.mark.parametrize("target_name", list(TARGETS))
def test_float32_sin_and_cos_are_within_2_ulp_up_to_the_polynomial_limit(target_name):
    """Measured against float64 rounded to float32: exhaustively over [0, 12867] the worst is 2 ulp (8765 of
    1.18e9 floats; 98% exact); here on random inputs and next to every multiple of pi/2 there."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-12867, 12867, 1 << 16), rng.uniform(-4, 4, 1 << 14),
                        np.exp(rng.uniform(-100, 9.4, 1 << 14)) * rng.choice([-1, 1], 1 << 14),
                        near_multiples_of_half_pi()]).astype(np.float32)
    x = x[np.abs(x) <= 12867]
    sine, cosine = run(lambda v: [gc.sin(v), gc.cos(v)], [x], target=TARGETS[target_name]())
    for got, name in ((sine, "sin"), (cosine, "cos")):
        distance = ulp_distance(got, getattr(np, name)(x.astype(np.float64)))
        worst = distance.argmax()
        assert distance.max() <= 2, (name, x[worst], got[worst])
        assert distance.mean() < 0.25


@pytest.mark.parametrize("target_name", list(TARGETS))
def test_a_vector_with_one_large_lane_is_exact_in_every_lane(target_name):
    """One |x| beyond 12867 sends its whole vector through libm: the small lanes next to it must not change."""
    x = np.linspace(-4, 4, 67).astype(np.float32)
    x[[5, 40]] = [1e6, -3.1e38]
    sine, cosine = run(lambda v: [gc.sin(v), gc.cos(v)], [x], target=TARGETS[target_name]())
    assert ulp_distance(sine, np.sin(x.astype(np.float64))).max() <= 1
    assert ulp_distance(cosine, np.cos(x.astype(np.float64))).max() <= 1


# ---- argmax over the flattened array --------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_argmax_axis_none_indexes_the_flattened_array_as_numpy(backend):
    """numpy's and Theano's meaning of axis=None (TF's tf.argmax(x, None) means axis 0); ties give the first,
    a NaN wins; a scalar's index is 0. The default axis stays -1."""
    rng = np.random.default_rng(5)
    cube = rng.normal(size=(3, 7, 5)).astype(np.float32)
    tied = np.array([[1, 4, 4], [4, 0, 4]], np.int32)
    with_nan = np.array([[1.0, np.nan, 9.0], [np.nan, 2.0, 3.0]])
    results = run(lambda c, t, n, s: [gc.argmax(c, None), gc.argmax(t, None), gc.argmax(n, None), gc.argmax(s, None),
                                      gc.argmax(c)],
                  [cube, tied, with_nan, np.array(2.5)], backend)
    assert [int(r) for r in results[:4]] == [np.argmax(cube), 1, 1, 0]
    assert all(np.asarray(r).dtype == np.int64 and np.shape(r) == () for r in results[:4])
    np.testing.assert_array_equal(results[4], np.argmax(cube, axis=-1))
    batch = gc.placeholder(("n", 129), name="batch")
    flat = gc.function([batch], gc.argmax(batch, None), backend=backend)
    for size in (1, 7, 129):
        values = rng.normal(size=(size, 129)).astype(np.float32)
        assert flat(values) == np.argmax(values)
