"""Random ops on the reference backend: the documented Philox4x64-10 mapping, the distributions' formulas and
statistics, dropout and its gradient, per-call steps, seeds, and bad input."""
import math

import numpy as np
import pytest

import graphc as gc
from graphc.ops.random import philox_words
from graphc.testing import assert_close, numeric_grad

M64 = 2**64 - 1
# Random123's known answers for Philox4x64-10 (kat_vectors): (counter, key) -> the block's four words.
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x16554d9eca36314c, 0xdb20fe9d672d0fdc, 0xd7e772cee186176b, 0x7e68b68aec7ba23b)),
    ((M64,) * 4, (M64, M64), (0x87b092c3013fe90b, 0x438c3c67be8d0224, 0x9cc7d7c69cd777b6, 0xa09caebf594f0ba0)),
    ((0x243f6a8885a308d3, 0x13198a2e03707344, 0xa4093822299f31d0, 0x082efa98ec4e6c89),
     (0x452821e638d01377, 0xbe5466cf34e90c6c),
     (0xa528f45403e61d95, 0x38c72dbd566e9788, 0xa5a1610e72fd18b5, 0x57bd43b5e52b7fe6)),
]


@pytest.fixture(autouse=True)
def fresh_step():
    """A fresh default step counter (at 0) for each test: set_random_seed starts one."""
    gc.set_random_seed(0)


def philox_block(counter, key):
    """Philox4x64-10 in plain Python integers, as Salmon et al. define it: the tests' second implementation."""
    c, k = list(counter), list(key)
    for _ in range(10):
        p0, p1 = 0xD2E7470EE14C6C93 * c[0], 0xCA5A826395121157 * c[2]
        c = [(p1 >> 64) ^ c[1] ^ k[0], p1 & M64, (p0 >> 64) ^ c[3] ^ k[1], p0 & M64]
        k = [(k[0] + 0x9E3779B97F4A7C15) & M64, (k[1] + 0xBB67AE8584CAA73B) & M64]
    return c


def run(outputs, feeds=None, backend="reference", **options):
    feeds = feeds or {}
    return gc.function(list(feeds), outputs, backend=backend, **options)(*feeds.values())


def step_of(node):
    return node.inputs[-1]


@pytest.mark.parametrize("counter, key, words", KNOWN_ANSWERS)
def test_the_python_philox_gives_random123s_known_answers(counter, key, words):
    assert philox_block(counter, key) == list(words)


@pytest.mark.parametrize("seed, step", [(0, 0), (12345, 1), (M64, 2**63 - 1), (7, -1)])
def test_words_follow_the_documented_counter_and_key(seed, step):
    """Element i is word i % 4 of the block for counter (i // 4, step, 0, 0) and key (seed, 0)."""
    words = philox_words(seed, step, 11)
    expected = [philox_block((i // 4, step % 2**64, 0, 0), (seed, 0))[i % 4] for i in range(11)]
    assert words.dtype == np.uint64 and words.tolist() == expected


@pytest.mark.parametrize("dtype, bits", [("float32", 24), ("float64", 53)])
@pytest.mark.parametrize("shape", [(1,), (7,), (129,), (3, 43)])
def test_uniform_values_are_the_top_bits_of_the_words(dtype, bits, shape):
    u = gc.random_uniform(shape, dtype=dtype, seed=42)
    actual = run(u)
    expected = (philox_words(42, 0, math.prod(shape)) >> np.uint64(64 - bits)).astype(np.float64) * 2.0**-bits
    assert actual.dtype == dtype and actual.shape == shape
    np.testing.assert_array_equal(actual, expected.reshape(shape).astype(dtype))


def test_symbolic_shapes_from_names_and_from_a_placeholder():
    x = gc.placeholder(("batch", 5), name="x")
    by_name = gc.random_uniform(("batch", 5), seed=3)
    by_shape = gc.random_uniform(x.shape, seed=3)
    assert by_name.shape == x.shape
    a, b = run([by_name, by_shape], {x: np.zeros((7, 5), "float32")})
    expected = (philox_words(3, 0, 35) >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)
    np.testing.assert_array_equal(a, expected.reshape(7, 5))
    np.testing.assert_array_equal(b, a)


def test_uniform_range_is_an_affine_map_of_the_unit_values():
    u, scaled = run([gc.random_uniform((129,), seed=1), gc.random_uniform((129,), minval=-2.0, maxval=3.0, seed=1)])
    np.testing.assert_array_equal(scaled, np.float32(-2.0) + np.float32(5.0) * u)
    assert scaled.min() >= -2.0 and scaled.max() < 3.0


def normal_formula(words, count):
    """Box-Muller on word pairs in float64, as the module docstring writes it."""
    unit = (words >> np.uint64(11)).astype(np.float64) * 2.0**-53
    radius = np.sqrt(-2.0 * np.log(1.0 - unit[0::2]))
    angle = (2 * math.pi) * unit[1::2]
    return np.column_stack([radius * np.cos(angle), radius * np.sin(angle)]).reshape(-1)[:count]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("count", [1, 7, 129])
def test_normal_values_follow_box_muller(dtype, count):
    z, shifted = run([gc.random_normal((count,), dtype=dtype, seed=9),
                      gc.random_normal((count,), mean=1.5, stddev=0.5, dtype=dtype, seed=9)])
    expected = normal_formula(philox_words(9, 0, count + count % 2), count).astype(dtype)
    assert z.dtype == dtype
    np.testing.assert_array_equal(z, expected)
    np.testing.assert_array_equal(shifted, np.asarray(1.5, dtype) + np.asarray(0.5, dtype) * z)


def ks_distance(samples, cdf):
    """The Kolmogorov-Smirnov statistic of ``samples`` against ``cdf``."""
    ordered = np.sort(samples)
    expected = cdf(ordered)
    n = len(ordered)
    return max(np.max(np.arange(1, n + 1) / n - expected), np.max(expected - np.arange(n) / n))


def test_uniform_and_normal_statistics():
    """100k draws: moments and the KS distance within bounds ~5x the sampling error (fixed seeds: no flakes)."""
    n = 100_000
    u = run(gc.random_uniform((n,), dtype="float64", seed=11))
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    assert ks_distance(u, lambda v: v) < 0.01
    z = run(gc.random_normal((n,), dtype="float64", seed=12))
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
    assert ks_distance(z, np.vectorize(lambda v: 0.5 * (1 + math.erf(v / math.sqrt(2))))) < 0.01
    assert abs(np.corrcoef(z[0::2], z[1::2])[0, 1]) < 0.02  # the two values of a Box-Muller pair


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_dropout_keeps_one_minus_rate_and_scales_by_its_inverse(rate):
    x = gc.placeholder((None, 1000), name="x")
    values = np.random.default_rng(0).uniform(1, 2, (50, 1000)).astype("float32")
    y = run(gc.dropout(x, rate, seed=4), {x: values})
    kept = y != 0
    assert abs(kept.mean() - (1 - rate)) < 0.01
    np.testing.assert_array_equal(y[kept], values[kept] * np.float32(1 / (1 - rate)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(1,), (7,), (129,)])
def test_dropout_mask_is_the_uniform_compared_with_the_rate(dtype, shape):
    x = gc.placeholder(shape, dtype, name="x")
    values = np.random.default_rng(1).normal(size=shape).astype(dtype)
    y = run(gc.dropout(x, 0.3, seed=8), {x: values})
    u = (philox_words(8, 0, math.prod(shape)) >> np.uint64(40)).astype(np.float64) * 2.0**-24
    expected = np.where(u.reshape(shape) >= 0.3, values * np.asarray(1 / 0.7, dtype), 0)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, expected.astype(dtype))


def test_dropout_with_rate_zero_is_the_input():
    x = gc.placeholder((3,), name="x")
    assert gc.dropout(x, 0.0) is x


def test_dropout_gradient_is_the_same_mask():
    x = gc.placeholder((7, 9), "float64", name="x")
    y = gc.dropout(x, 0.4, seed=5)
    (gx,) = gc.grad(gc.sum(y), [x])
    values = np.random.default_rng(2).normal(size=(7, 9))
    out, grad = run([y, gx], {x: values})
    np.testing.assert_array_equal(grad, np.where(out != 0, 1 / 0.6, 0.0))


def test_dropout_gradients_against_finite_differences():
    """First and second derivatives: the step is reset before each call, so every call sees one mask."""
    x = gc.placeholder((4, 7), "float64", name="x")
    weights = np.random.default_rng(3).normal(size=(4, 7))
    y = gc.dropout(x, 0.5, seed=6)
    cost = gc.sum(gc.square(y) * weights)
    (gx,) = gc.grad(cost, [x])
    (ggx,) = gc.grad(gc.sum(gx * weights), [x])
    step = step_of(y)
    functions = [gc.function([x], f, backend="reference") for f in (cost, gx, gc.sum(gx * weights), ggx)]

    def at_step_zero(function):
        def call(value):
            step.value = np.int64(0)
            return function(value)
        return call
    cost_f, grad_f, grad_cost_f, hessian_f = [at_step_zero(f) for f in functions]
    values = np.random.default_rng(4).normal(size=(4, 7))
    (numeric,) = numeric_grad(cost_f, [values])
    assert_close(grad_f(values), numeric, rtol=1e-6, atol=1e-8, name="d cost / dx")
    (numeric,) = numeric_grad(grad_cost_f, [values])
    assert_close(hessian_f(values), numeric, rtol=1e-6, atol=1e-8, name="d (dcost/dx . w) / dx")
    assert (grad_f(values) == 0).any() and (grad_f(values) != 0).any()


def test_every_call_draws_fresh_numbers_and_a_reset_step_repeats_them():
    u = gc.random_uniform((6,), seed=10)
    f = gc.function([], u, backend="reference")
    first, second = f(), f()
    assert not np.array_equal(first, second)
    assert step_of(u).value == 2
    np.testing.assert_array_equal(second, (philox_words(10, 1, 6) >> np.uint64(40)) * np.float32(2.0**-24))
    step_of(u).value = np.int64(0)
    np.testing.assert_array_equal(f(), first)


def test_one_step_update_for_all_the_random_ops_of_a_function():
    a, b = gc.random_uniform((3,), seed=1), gc.random_normal((3,), seed=2)
    f = gc.function([], [a, b], backend="reference")
    assert step_of(a) is step_of(b)
    assert [variable for variable, _ in f.graph.updates] == [step_of(a)]


def test_a_step_the_user_updates_is_left_to_the_user():
    step = gc.variable(np.int64(5), name="my_step")
    u = gc.random_uniform((4,), seed=1, step=step)
    f = gc.function([], u, updates=[(step, step * 2)], backend="reference")
    f()
    assert step.value == 10
    np.testing.assert_array_equal(f(), (philox_words(1, 10, 4) >> np.uint64(40)) * np.float32(2.0**-24))


def test_set_random_seed_makes_unseeded_programs_reproducible():
    def program():
        gc.set_random_seed(123)
        x = gc.placeholder((2, 8), name="x")
        outputs = [gc.random_uniform((5,)), gc.random_normal((5,)), gc.dropout(x, 0.5)]
        f = gc.function([x], outputs, backend="reference")
        return [f(np.ones((2, 8), "float32")) for _ in range(2)]
    first, again = program(), program()
    for a, b in zip(first, again):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
    assert not np.array_equal(first[0][0], first[1][0])  # two calls differ
    seeds = {int(gc.random_uniform((1,)).inputs[0].attrs["value"]) for _ in range(3)}
    assert len(seeds) == 3  # each unseeded op draws a seed of its own


@pytest.mark.parametrize("build, error, words", [
    (lambda x: gc.dropout(x, -0.1), ValueError, "rate must be in [0, 1), got -0.1"),
    (lambda x: gc.dropout(x, 1.0), ValueError, "rate must be in [0, 1), got 1.0"),
    (lambda x: gc.dropout(x, "0.5"), TypeError, "rate must be a number"),
    (lambda x: gc.dropout(gc.cast(x, "int32"), 0.5), TypeError, "x must be a float tensor"),
    (lambda x: gc.random_uniform((2, -1)), ValueError, "shape (2, -1) has a bad dim -1"),
    (lambda x: gc.random_uniform((2, None)), ValueError, "has a bad dim None"),
    (lambda x: gc.random_uniform((2.5,)), ValueError, "has a bad dim 2.5"),
    (lambda x: gc.random_normal(3), TypeError, "shape must be a tuple of dims"),
    (lambda x: gc.random_uniform((3,), dtype="int32"), TypeError, "dtype must be float32 or float64, got int32"),
    (lambda x: gc.random_normal((3,), dtype="complex64"), TypeError, "complex64"),
    (lambda x: gc.random_uniform((3,), seed=-1), ValueError, "seed must be in [0, 2**64), got -1"),
    (lambda x: gc.random_uniform((3,), seed=1.5), TypeError, "seed must be an int"),
    (lambda x: gc.random_uniform((3,), step=x), TypeError, "step must be an int64 scalar variable"),
    (lambda x: gc.set_random_seed("a"), TypeError, "set_random_seed: seed must be an int"),
])
def test_bad_input_is_named(build, error, words):
    x = gc.placeholder((3,), name="x")
    with pytest.raises(error) as raised:
        build(x)
    assert words in str(raised.value)
    if "rate" in words or "shape" in words or "bad dim" in words:
        assert "test_random_ops.py" in str(raised.value)  # the user's line
