"""The pooling kernels (graphc/lower/pool.py) against the numpy reference: the same bits, on the host target
and AVX2, with 1, 2 or 3 threads, for channel counts that fill no vector (1, 3), one (16) or one and a bit
(17); ties, infinities and NaN; and the static sizes the native backend needs."""
import numpy as np
import pytest

import graphc as gc
from graphc.lower.target import avx2_target, host_target

TARGETS = [pytest.param(None, id="host"), pytest.param("avx2", id="avx2")]
GEOMETRIES = [  # pool, strides, padding
    ((2, 2), (2, 2), "valid"),
    ((3, 3), (2, 2), "same"),
    ((3, 2), (1, 1), "same"),  # overlapping windows
    ((1, 1), (1, 1), "valid"),
    ((2, 2), (3, 3), "same"),  # gaps between windows
]


def _target(name):
    return avx2_target() if name == "avx2" else host_target()


def _pool_and_gradient(kind, dtype, channels, pool, strides, padding, height=9, width=7):
    """([x, g], [pool(x), d sum(pool(x) * g) / dx]) with a symbolic batch."""
    x = gc.placeholder(("batch", height, width, channels), dtype)
    y = (gc.max_pool2d if kind == "max" else gc.avg_pool2d)(x, pool, strides, padding)
    g = gc.placeholder(("batch",) + y.shape[1:], dtype)
    return [x, g], [y, gc.grad(gc.sum(y * g), x)]


def _same_bits(actual, expected):
    assert actual.dtype == expected.dtype and np.array_equal(actual, expected, equal_nan=True)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("channels", [1, 3, 16, 17])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_native_pooling_has_the_reference_bits_on_any_thread_count(target, dtype, channels, kind):
    rng = np.random.default_rng(channels)
    for pool, strides, padding in GEOMETRIES:
        inputs, outputs = _pool_and_gradient(kind, dtype, channels, pool, strides, padding)
        # enough images for the threads to split them (PARALLEL_THRESHOLD elements), then a single one
        for batch in (-(-40000 // (9 * 7 * channels)), 1):
            x = rng.standard_normal((batch, 9, 7, channels)).astype(dtype)
            g = rng.standard_normal((batch,) + outputs[0].shape[1:]).astype(dtype)
            expected = gc.function(inputs, outputs, backend="reference")(x, g)
            for threads in (1, 2, 3):
                f = gc.function(inputs, outputs, backend="llvm", threads=threads, target=_target(target))
                for actual, wanted in zip(f(x, g), expected):
                    _same_bits(actual, wanted)


@pytest.mark.parametrize("target", TARGETS)
def test_ties_and_special_values_route_as_the_reference(target):
    inf, nan = np.inf, np.nan
    row = [-inf, -inf, 1.0, nan, 7.0, 7.0, 2.0, 2.0]
    x = np.array([row, row[::-1], [5.0] * 8, [nan] * 8]).reshape(1, 4, 8, 1)
    x = np.repeat(x, 17, axis=3) * np.where(np.arange(17) % 2, 1.0, -1.0)  # channels of both signs
    for pool, strides, padding in [((2, 2), (2, 2), "valid"), ((2, 3), (1, 1), "same"), ((3, 3), (2, 2), "same")]:
        inputs, outputs = _pool_and_gradient("max", "float32", 17, pool, strides, padding, 4, 8)
        data = x.astype(np.float32)
        g = np.arange(np.prod((1,) + outputs[0].shape[1:]), dtype=np.float32).reshape((1,) + outputs[0].shape[1:])
        expected = gc.function(inputs, outputs, backend="reference")(data, g)
        for actual, wanted in zip(gc.function(inputs, outputs, target=_target(target))(data, g), expected):
            _same_bits(actual, wanted)


def test_global_average_pooling_runs_natively():
    x = gc.placeholder((None, 5, 6, 3), "float64")
    data = np.random.default_rng(1).standard_normal((4, 5, 6, 3))
    y, dx = gc.global_avg_pool2d(x), gc.grad(gc.sum(gc.global_avg_pool2d(x)), x)
    got = gc.function([x], [y, dx])(data)
    np.testing.assert_allclose(got[0], data.mean(axis=(1, 2)), rtol=1e-12)
    np.testing.assert_allclose(got[1], np.full(data.shape, 1 / 30), rtol=1e-12)


def test_symbolic_height_is_not_lowered():
    x = gc.placeholder(("batch", "height", 8, 3), "float32")
    y = gc.max_pool2d(x, 2)
    assert gc.function([x], y, backend="reference")(np.zeros((1, 4, 8, 3), np.float32)).shape == (1, 2, 4, 3)
    with pytest.raises(NotImplementedError, match=r"static height, width and channels; max_pool2d max_pool2d_\d+ "
                                                  r"\(at .*test_pool_native.py:\d+\) has an input of shape"):
        gc.function([x], y, backend="llvm")
