"""Numerics at special points: derivatives at kinks by a documented convention (TensorFlow's), smooth
ops with smooth derivatives, sigmoid/softplus/log1p/expm1 accurate over the whole float range, and the
stability rewrites of what users spell by hand. Both backends; docs/optimizer.md lists the conventions."""
import numpy as np
import pytest

import graphc as gc

BACKENDS = ["reference", "llvm"]
SPECIAL = [0.0, -0.0, 1.0, -1.0, 20.0, -20.0, 88.0, -88.0, 100.0, -100.0, 700.0, -700.0, 800.0, -800.0,
           np.inf, -np.inf, np.nan]


def _run(build, arrays, backend, dtype="float32"):
    placeholders = [gc.placeholder(np.shape(a), dtype, name=f"x{i}") for i, a in enumerate(arrays)]
    return gc.function(placeholders, build(*placeholders), backend=backend)(
        *[np.asarray(a, dtype) for a in arrays])


def _grad(op, arrays, backend, dtype="float32"):
    return _run(lambda *xs: gc.grad(gc.sum(op(*xs)), list(xs)), arrays, backend, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
def test_softplus_and_logistic_loss_have_their_true_gradient_at_zero(backend):
    """Before: 0 and -t (the stable forms' Heaviside(0) = sign(0) = 0)."""
    (softplus_grad,) = _grad(gc.softplus, [np.zeros(3)], backend)
    np.testing.assert_array_equal(softplus_grad, 0.5)
    t = np.array([1.0, 0.0, 1.0])
    (_, logits_grad) = _grad(lambda t, z: gc.binary_crossentropy(t, z, from_logits=True),
                             [t, np.zeros(3)], backend)
    np.testing.assert_allclose(logits_grad, (0.5 - t) / 3, rtol=1e-6)  # mean over the last axis


@pytest.mark.parametrize("backend", BACKENDS)
def test_derivatives_at_kinks_follow_tensorflow(backend):
    points = [-1.0, 0.0, 0.5, 1.0, 2.0]
    assert list(_grad(gc.relu, [points], backend)[0]) == [0, 0, 1, 1, 1]   # relu'(0) = 0
    assert list(_grad(gc.abs, [points], backend)[0]) == [-1, 0, 1, 1, 1]   # abs'(0) = 0
    # clip passes the gradient at its bounds (inclusive); the bounds get it beyond them.
    x_grad, low_grad, high_grad = _grad(gc.clip, [points, np.zeros(5), np.ones(5)], backend)
    assert list(x_grad) == [0, 1, 1, 1, 0]
    assert list(low_grad) == [1, 0, 0, 0, 0]
    assert list(high_grad) == [0, 0, 0, 0, 1]
    # Ties in maximum and minimum send the whole gradient to x (before: to nobody).
    x, y = np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0])
    assert [list(g) for g in _grad(gc.maximum, [x, y], backend)] == [[1, 0, 1], [0, 1, 0]]
    assert [list(g) for g in _grad(gc.minimum, [x, y], backend)] == [[1, 1, 0], [0, 0, 1]]


def _sigmoid_exact(x):
    """float64 sigmoid from the stable formula, the ground truth for float32 results."""
    x = np.asarray(x, np.float64)
    small = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + small), small / (1 + small))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_softplus_log1p_expm1_are_accurate_at_special_points(backend, dtype):
    """Relative accuracy over the whole range (before: float32 sigmoid(-20) = 0, through tanh)."""
    x = np.array(SPECIAL, dtype)
    with np.errstate(all="ignore"):
        expected = {
            "sigmoid": _sigmoid_exact(x),
            "softplus": np.maximum(x.astype(np.float64), 0) + np.log1p(np.exp(-np.abs(x.astype(np.float64)))),
            "log1p": np.log1p(x.astype(np.float64)),
            "expm1": np.expm1(x.astype(np.float64)),
        }
    ops = {"sigmoid": gc.sigmoid, "softplus": gc.softplus, "log1p": gc.log1p, "expm1": gc.expm1}
    results = _run(lambda v: [op(v) for op in ops.values()], [x], backend, dtype)
    tiny = np.finfo(dtype).tiny
    for (name, want), got in zip(expected.items(), results):
        want = want.astype(dtype)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=name)
        finite = np.isfinite(want) & ~np.isnan(want)
        np.testing.assert_array_equal(got[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)], name)
        scale = np.maximum(np.abs(want[finite]), tiny)
        assert np.max(np.abs(got[finite] - want[finite]) / scale) < 8 * np.finfo(dtype).eps, (name, got, want)
    assert results[0][SPECIAL.index(-20.0)] == pytest.approx(2.0611536e-9, rel=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size", [1, 7, 129])
def test_the_new_smooth_ops_match_numpy_on_odd_sizes(backend, size):
    x = np.random.default_rng(size).normal(scale=30, size=size).astype(np.float32)
    got = _run(lambda v: [gc.sigmoid(v), gc.softplus(v), gc.log1p(gc.abs(v)), gc.expm1(v / 10)], [x], backend)
    np.testing.assert_allclose(got[0], _sigmoid_exact(x), rtol=1e-6)
    np.testing.assert_allclose(got[1], np.logaddexp(0, x.astype(np.float64)), rtol=1e-6)
    np.testing.assert_allclose(got[2], np.log1p(np.abs(x).astype(np.float64)), rtol=1e-6)
    np.testing.assert_allclose(got[3], np.expm1(x.astype(np.float64) / 10), rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_log_of_sigmoid_is_exact_where_sigmoid_underflows(backend):
    """TF gives -20 and 1 at -20 (before: -inf and NaN); at 20 the gradient is sigmoid(-20), not 1 - 1."""
    z = np.array([-20.0, -90.0, 20.0])
    value, grad = _run(lambda v: [gc.log(gc.sigmoid(v)), gc.grad(gc.sum(gc.log(gc.sigmoid(v))), v)], [z], backend)
    np.testing.assert_allclose(value, [-20.0, -90.0, -2.0611537e-9], rtol=1e-6)
    np.testing.assert_allclose(grad, [1.0, 1.0, 2.0611537e-9], rtol=1e-6)


def test_hand_spelled_forms_become_the_stable_functions():
    from graphc.ops.expr import Log1p, Sigmoid, Softplus, arg
    x = gc.placeholder((3,), "float64", name="x")
    explicit = 1 / (1 + gc.exp(-x))  # 1 / (1 + exp(a)) => sigmoid(-a)
    assert isinstance(explicit.attrs["expr"], Sigmoid)
    assert gc.log(gc.sigmoid(x)).attrs["expr"] == -Softplus(-arg(0))
    assert gc.log(1 - gc.sigmoid(x)).attrs["expr"] == -Softplus(arg(0))
    assert gc.log(1 - explicit).attrs["expr"].has(Softplus)
    assert gc.log(1 + x).attrs["expr"] == Log1p(arg(0))
    tiny = np.array([1e-10, -1e-12, 3.0])
    log_one_plus, exp_minus_one = gc.function([x], [gc.log(1 + x), gc.exp(x) - 1], backend="reference")(tiny)
    np.testing.assert_allclose(log_one_plus, np.log1p(tiny), rtol=1e-15)  # naive: 8e-9 relative error
    np.testing.assert_allclose(exp_minus_one, np.expm1(tiny), rtol=1e-15)


@pytest.mark.parametrize("op", [gc.sigmoid, gc.softplus, gc.log1p, gc.expm1])
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_smooth_ops_gradients_match_finite_differences(op, backend):
    from graphc.testing import check_grad
    x = np.array([-0.9, -0.3, 0.0, 0.4, 0.8])
    inner = (lambda v: gc.abs(v)) if op is gc.log1p else (lambda v: v)
    check_grad(lambda v: op(inner(v)), None, arrays=[x + 0.05], backend=backend, rtol=1e-6)
    check_grad(lambda v: op(op(inner(v))), None, arrays=[x + 0.05], backend=backend, rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("optimize", [0, 2])
def test_no_rewrite_changes_what_numpy_computes(backend, optimize):
    """Before: x / x was 1 at 0 and inf, x - x and x * 0 were 0 at inf, x / 0 raised NotImplementedError
    (sympy's zoo), and fusion distributed (x - 0.1) * 1e17 into 1e17 x - 1e16 (-2 instead of -2.78)."""
    x = gc.placeholder((4,), "float64", name="x")
    v = np.array([0.09999999999999998, 0.0, np.inf, -3.0])
    spelled = [lambda x: (x - 0.1) * 1e17, lambda x: x / x, lambda x: x - x, lambda x: x * 0.0,
               lambda x: x / 0, lambda x: 0 / x, lambda x: (x * 3.0) / 7.0, lambda x: 2 * (x + 1)]
    results = gc.function([x], [f(x) for f in spelled], backend=backend, optimize=optimize)(v)
    with np.errstate(all="ignore"):
        for f, got in zip(spelled, results):
            np.testing.assert_array_equal(got, f(v))


def test_integers_to_negative_integer_powers_are_refused_as_numpy_refuses_them():
    i = gc.placeholder((3,), "int32", name="i")
    with pytest.raises(ValueError, match="negative integer powers"):
        i ** -1
    np.testing.assert_array_equal(gc.function([i], i ** 2)(np.array([1, 2, -3], np.int32)), [1, 4, 9])
    np.testing.assert_allclose(gc.function([i], gc.cast(i, "float64") ** -1)(np.array([1, 2, 4], np.int32)),
                               [1, 0.5, 0.25])


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_conventions_at_kinks_hold_for_scalar_operands_too(backend):
    """gc.clip(x, 0., 1.) and gc.maximum(x, 0.) as users write them (before: the scalar went into the body,
    the node had fewer operands than the rule, and sympy's Heaviside(0) = 0 gave 0 at the bounds and ties)."""
    points = [-1.0, 0.0, 0.5, 1.0, 2.0]
    assert list(_grad(lambda v: gc.clip(v, 0.0, 1.0), [points], backend)[0]) == [0, 1, 1, 1, 0]
    assert list(_grad(lambda v: gc.maximum(v, 0.0), [points], backend)[0]) == [0, 1, 1, 1, 1]
    assert list(_grad(lambda v: gc.minimum(1.0, v), [points], backend)[0]) == [1, 1, 1, 0, 0]
    x = gc.placeholder((3,), "int32")
    assert gc.maximum(x, 0).dtype == "int32" and gc.clip(gc.placeholder((3,), "float32"), 0, 1.5).dtype == "float32"
