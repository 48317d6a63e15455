"""gc.moments and gc.batch_normalization (TF's signatures): values against numpy, gradients against finite
differences through the batch statistics, odd shapes, broadcasting errors, and the native backend."""
import numpy as np
import pytest

import graphc as gc
from graphc.testing import assert_close, check_grad, evaluate

RNG = np.random.default_rng(13)


def np_batch_norm(x, mean, variance, offset, scale, eps):
    """TF's documented formula: (x - mean) / sqrt(variance + eps) * scale + offset."""
    return (x - mean) / np.sqrt(variance + eps) * scale + offset


@pytest.mark.parametrize("shape, axes", [((7, 3), 0), ((1, 129), (0,)), ((4, 5, 3), (0, 1)), ((2, 3, 5), (1, -1))])
@pytest.mark.parametrize("keepdims", [False, True])
def test_moments_are_numpys_mean_and_biased_variance(shape, axes, keepdims):
    data = RNG.standard_normal(shape) * 3 + 10
    x = gc.placeholder(shape, "float64")
    mean, variance = gc.moments(x, axes, keepdims=keepdims)
    expected_mean, expected_variance = data.mean(axes, keepdims=keepdims), data.var(axes, keepdims=keepdims)
    assert mean.shape == expected_mean.shape and variance.shape == expected_variance.shape
    got_mean, got_variance = evaluate([mean, variance], {x: data})
    assert_close(got_mean, expected_mean, rtol=1e-12)
    assert_close(got_variance, expected_variance, rtol=1e-12)


def test_moments_variance_has_no_cancellation_for_a_large_mean():
    data = (1e4 + RNG.standard_normal((129,))).astype(np.float32)
    x = gc.placeholder((129,))
    _, variance = evaluate(list(gc.moments(x, 0)), {x: data}, backend="llvm")
    assert_close(variance, data.astype(np.float64).var(), rtol=1e-4)


@pytest.mark.parametrize("keepdims", [False, True])
def test_moments_gradients(keepdims):
    check_grad(lambda x: gc.moments(x, (0, 1), keepdims)[1], [(3, 5, 2)])
    check_grad(lambda x: gc.moments(x, 0, keepdims)[0] * gc.moments(x, 0, keepdims)[1], [(7, 3)])


@pytest.mark.parametrize("with_offset, with_scale", [(True, True), (False, True), (True, False), (False, False)])
def test_batch_normalization_matches_tfs_formula(with_offset, with_scale):
    x_data = RNG.standard_normal((7, 5)) * 2 + 1
    mean_data, variance_data = RNG.standard_normal(5), RNG.uniform(0.1, 2, 5)
    offset_data, scale_data = RNG.standard_normal(5), RNG.standard_normal(5)
    x, mean, variance, offset, scale = (gc.placeholder(a.shape, "float64")
                                        for a in (x_data, mean_data, variance_data, offset_data, scale_data))
    out = gc.batch_normalization(x, mean, variance, offset if with_offset else None, scale if with_scale else None,
                                 1e-3)
    got = evaluate(out, {x: x_data, mean: mean_data, variance: variance_data, offset: offset_data,
                         scale: scale_data})
    expected = np_batch_norm(x_data, mean_data, variance_data, offset_data if with_offset else 0,
                             scale_data if with_scale else 1, 1e-3)
    assert_close(got, expected, rtol=1e-12, atol=1e-14)


def test_batch_normalization_takes_arrays_and_per_channel_parameters_of_any_broadcastable_shape():
    x_data = RNG.standard_normal((2, 3, 4))
    mean_data, variance_data = RNG.standard_normal((3, 1)), RNG.uniform(0.5, 1, (1, 3, 1))
    x = gc.placeholder((2, 3, 4), "float64")
    out = gc.batch_normalization(x, mean_data, variance_data, 0.5, np.float64(2.0), 0)
    assert_close(evaluate(out, {x: x_data}), np_batch_norm(x_data, mean_data, variance_data, 0.5, 2.0, 0),
                 rtol=1e-12)


def test_batch_normalization_with_batch_statistics_normalizes_each_channel():
    data = RNG.standard_normal((129, 3)) * [1, 10, 0.1] + [5, -5, 0]
    x = gc.placeholder(("batch", 3), "float64")
    out = evaluate(gc.batch_normalization(x, *gc.moments(x, 0), None, None, 0), {x: data})
    assert_close(out.mean(0), np.zeros(3), atol=1e-12)
    assert_close(out.std(0), np.ones(3), rtol=1e-12)


def test_batch_normalization_gradients_flow_through_the_batch_statistics():
    def training_form(x, offset, scale):
        mean, variance = gc.moments(x, (0, 1, 2))
        return gc.batch_normalization(x, mean, variance, offset, scale, 1e-3)

    # An odd batch of images (1 x 7 x 3 pixels, 2 channels), as BatchNormalization's training mode sees it.
    check_grad(training_form, [(1, 7, 3, 2), (2,), (2,)], rtol=1e-6)
    check_grad(lambda x, m, v, o, s: gc.batch_normalization(x, m, v * v + 0.5, o, s, 1e-3),
               [(5, 3), (3,), (3,), (3,), (3,)], rtol=1e-6)


def test_native_matches_reference_in_training_form():
    data = RNG.standard_normal((129, 7)).astype(np.float32) * 3 + 1
    offset, scale = RNG.standard_normal(7).astype(np.float32), RNG.standard_normal(7).astype(np.float32)
    x = gc.placeholder(("batch", 7))
    mean, variance = gc.moments(x, 0)
    out = gc.batch_normalization(x, mean, variance, offset, scale, 1e-3)
    loss = gc.sum(gc.square(out) * np.arange(7, dtype=np.float32))
    outputs = [out, mean, variance, gc.grad(loss, x)]
    native = evaluate(outputs, {x: data}, backend="llvm")
    reference = evaluate(outputs, {x: data})
    for got, expected in zip(native, reference):
        assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert_close(native[0], np_batch_norm(data, data.mean(0), data.var(0), offset, scale, 1e-3), rtol=1e-4,
                 atol=1e-4)


def test_bad_arguments_name_the_argument_and_shapes():
    x = gc.placeholder((4, 3))
    vector = gc.placeholder((3,))
    with pytest.raises(gc.GraphError, match=r"scale of shape \(4,\) does not broadcast onto x of shape \(4, 3\)"):
        gc.batch_normalization(x, vector, vector, None, gc.placeholder((4,)), 1e-3)
    with pytest.raises(gc.GraphError, match=r"mean of shape \(2, 4, 3\) does not broadcast onto x of shape"):
        gc.batch_normalization(x, gc.placeholder((2, 4, 3)), vector, None, None, 1e-3)
    with pytest.raises(gc.GraphError, match="offset is float64 but x is float32"):
        gc.batch_normalization(x, vector, vector, gc.placeholder((3,), "float64"), None, 1e-3)
    with pytest.raises(gc.GraphError, match="variance_epsilon must be a number >= 0, got -1"):
        gc.batch_normalization(x, vector, vector, None, None, -1)
    with pytest.raises(gc.GraphError, match="mean and variance are required"):
        gc.batch_normalization(x, None, vector, None, None, 1e-3)
    with pytest.raises(gc.GraphError, match="moments: x must be a float tensor, got int32"):
        gc.moments(gc.placeholder((3,), "int32"), 0)
    with pytest.raises(gc.GraphError, match=r"moments: axis 2 is out of range for shape \(4, 3\)"):
        gc.moments(x, 2)
