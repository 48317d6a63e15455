"""The layers with a training mode, Dropout and BatchNormalization, against numpy forms of Keras 3's rules:
dropout's rate, scaling and seeds; batch norm's outputs in both modes, its weights, and its moving statistics
after several update steps; arguments refused with the layer and argument named; config round trips."""
import numpy as np
import pytest

import graphc as gc
from graphc.keras import Input, initializers, layers
from graphc.keras.utils import set_random_seed
from graphc.testing import assert_close

RNG = np.random.default_rng(21)


def compile_layer(layer, shape, training, backend="reference", **options):
    """The layer on a placeholder (batch, *shape[1:]) as a function of numpy arrays, with the updates this call
    asked for (``layer._updates`` keeps those of earlier calls too)."""
    x = gc.placeholder(("batch", *shape[1:]))
    earlier = len(layer._updates)
    y = layer(x, training=training)
    return gc.function([x], y, updates=layer._updates[earlier:], backend=backend, **options)


# ---- Dropout -----------------------------------------------------------------------------------
def test_dropout_in_inference_mode_is_the_identity():
    x = gc.placeholder(("batch", 3))
    dropout = layers.Dropout(0.5)
    assert dropout(x) is x and dropout(x, training=False) is x
    assert layers.Dropout(0.0)(x, training=True) is x


@pytest.mark.parametrize("rate", [0.2, 0.5])
def test_dropout_zeroes_rate_of_the_inputs_and_scales_the_others(rate):
    data = RNG.uniform(1, 2, (1000, 129)).astype(np.float32)
    out = compile_layer(layers.Dropout(rate, seed=3), data.shape, training=True)(data)
    kept = out != 0
    assert abs(1 - kept.mean() - rate) < 0.01  # 129,000 draws: the standard error is 0.0014
    # Keras: x / (1 - rate); gc.dropout multiplies by 1 / (1 - rate) rounded to float32, an ulp away at most.
    np.testing.assert_allclose(out[kept], data[kept] / np.float32(1 - rate), rtol=1.2e-7)
    assert abs(out.mean() - data.mean()) < 0.01 * data.mean()  # inverted dropout keeps the expectation


def test_dropout_masks_follow_the_seed_and_change_every_step():
    data = np.ones((4, 64), np.float32)
    def reseed():
        set_random_seed(11)  # the layer's seed, drawn when it is made
        gc.set_random_seed(11)  # the step counter, from 0  (TODO: utils.set_random_seed should do it too)

    reseed()
    first = compile_layer(layers.Dropout(0.5), data.shape, training=True)
    a, b = first(data), first(data)
    assert not np.array_equal(a, b)  # a fresh mask each call
    reseed()
    again = compile_layer(layers.Dropout(0.5), data.shape, training=True, backend="llvm")
    np.testing.assert_array_equal(again(data), a)  # the seed drawn when the layer was made; native = reference
    x = gc.placeholder(("batch", 64))  # two layers of one seed draw the same masks at each step
    seeded = gc.function([x], [layers.Dropout(0.5, seed=7)(x, training=True),
                               layers.Dropout(0.5, seed=7)(x, training=True)], backend="reference")(data)
    np.testing.assert_array_equal(*seeded)
    assert layers.Dropout(0.5).get_config()["seed"] is None


def test_dropout_noise_shape_shares_one_draw_along_its_axes_of_length_one():
    data = RNG.uniform(1, 2, (64, 5, 3)).astype(np.float32)
    out = compile_layer(layers.Dropout(0.5, noise_shape=(None, 1, 3), seed=2), data.shape, training=True)(data)
    kept = out != 0
    assert (kept == kept[:, :1, :]).all() and 0.3 < kept.mean() < 0.7
    np.testing.assert_allclose(out[kept], data[kept] * 2, rtol=1e-7)


@pytest.mark.parametrize("kwargs, message", [
    ({"rate": 1}, "Dropout: rate must be a finite number >= 0 and < 1, got 1"),
    ({"rate": -0.1}, "Dropout: rate must be a finite number >= 0 and < 1, got -0.1"),
    ({"rate": "0.5"}, "Dropout: rate must be a finite number"),
    ({"rate": 0.5, "seed": -1}, r"Dropout: seed must be an integer in \[0, 2\*\*64\) or None, got -1"),
    ({"rate": 0.5, "noise_shape": "batch"}, "Dropout: noise_shape must be a tuple of positive integers or None"),
    ({"rate": 0.5, "noise_shape": (None, 0)}, "Dropout: noise_shape must be a tuple of positive integers or None"),
])
def test_dropout_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        layers.Dropout(**kwargs)


def test_dropout_noise_shape_must_fit_the_inputs():
    with pytest.raises(ValueError, match=r"noise_shape \(None, 2\) does not broadcast onto its inputs of shape "
                                         r"\(None, 3\)"):
        layers.Dropout(0.5, noise_shape=(None, 2))(Input((3,)))
    with pytest.raises(ValueError, match=r"noise_shape \(None, 1\) does not broadcast"):
        layers.Dropout(0.5, noise_shape=(None, 1))(Input((3, 4)))


def test_dropout_config_round_trips():
    dropout = layers.Dropout(0.25, noise_shape=(None, 1), seed=5, name="drop")
    again = layers.deserialize(layers.serialize(dropout))
    assert again.get_config() == dropout.get_config() == {"name": "drop", "rate": 0.25, "seed": 5,
                                                          "noise_shape": [None, 1]}


# ---- BatchNormalization ------------------------------------------------------------------------
def np_batch_norm(x, mean, variance, beta, gamma, axis, epsilon):
    """Keras 3's formula (keras.ops.batch_normalization) with the vectors along ``axis``."""
    shape = [1] * x.ndim
    shape[axis] = -1
    mean, variance, beta, gamma = (np.reshape(v, shape) for v in (mean, variance, beta, gamma))
    return (x - mean) / np.sqrt(variance + epsilon) * gamma + beta


def with_random_weights(layer, channels):
    """``layer``'s gamma, beta and moving statistics set to random values (numpy copies returned)."""
    values = [RNG.uniform(0.5, 2, channels), RNG.normal(size=channels), RNG.normal(size=channels),
              RNG.uniform(0.5, 2, channels)]
    layer.set_weights([v.astype(np.float32) for v in values])
    return [v.astype(np.float32) for v in values]


@pytest.mark.parametrize("shape, axis", [((7, 5), -1), ((4, 3, 5, 2), -1), ((3, 6, 2, 5), 1), ((1, 7, 129), 2)])
def test_batch_norm_normalizes_with_batch_statistics_in_training_and_moving_ones_in_inference(shape, axis):
    data = (RNG.normal(size=shape) * 3 + 2).astype(np.float32)
    bn = layers.BatchNormalization(axis=axis, epsilon=0.01)
    bn.build((None, *shape[1:]))
    gamma, beta, moving_mean, moving_variance = with_random_weights(bn, shape[axis])
    others = tuple(a for a in range(len(shape)) if a != axis % len(shape))
    training = compile_layer(bn, shape, training=True, backend="llvm")(data)
    expected = np_batch_norm(data, data.mean(others), data.var(others), beta, gamma, axis, 0.01)
    assert_close(training, expected, rtol=1e-4, atol=1e-4)
    assert_close(bn.moving_mean.value, moving_mean * 0.99 + data.mean(others) * 0.01, rtol=1e-5, atol=1e-6)
    moving_mean, moving_variance = bn.moving_mean.value, bn.moving_variance.value  # after the training step
    inference = compile_layer(bn, shape, training=False)(data)
    assert_close(inference, np_batch_norm(data, moving_mean, moving_variance, beta, gamma, axis, 0.01), rtol=1e-5,
                 atol=1e-5)


def test_batch_norm_moving_statistics_after_several_steps_are_kerass_recurrence():
    bn = layers.BatchNormalization(momentum=0.9)
    step = compile_layer(bn, (None, 3, 4), training=True)
    mean, variance = np.zeros(4), np.ones(4)
    for _ in range(5):
        batch = (RNG.normal(size=(6, 3, 4)) * [1, 2, 3, 4] + [0, 1, -1, 5]).astype(np.float32)
        step(batch)
        mean = mean * 0.9 + batch.mean((0, 1)) * 0.1
        variance = variance * 0.9 + batch.var((0, 1)) * 0.1  # the biased variance, as Keras 3
    assert_close(bn.moving_mean.value, mean, rtol=1e-5, atol=1e-6)
    assert_close(bn.moving_variance.value, variance, rtol=1e-5)
    assert [v is w for (v, _), w in zip(bn._updates, [bn.moving_mean, bn.moving_variance])] == [True, True]


def test_batch_norm_weights_are_kerass_in_order_and_trainability():
    bn = layers.BatchNormalization(name="bn")
    bn.build((None, 8, 8, 3))
    assert [w.name for w in bn.weights] == ["bn/gamma", "bn/beta", "bn/moving_mean", "bn/moving_variance"]
    assert [w.name for w in bn.trainable_weights] == ["bn/gamma", "bn/beta"]
    assert [w.name for w in bn.non_trainable_weights] == ["bn/moving_mean", "bn/moving_variance"]
    assert all(w.shape == (3,) for w in bn.weights) and bn.count_params() == 12
    np.testing.assert_array_equal(bn.get_weights()[0], np.ones(3, np.float32))
    np.testing.assert_array_equal(bn.get_weights()[3], np.ones(3, np.float32))
    plain = layers.BatchNormalization(center=False, scale=False, name="plain")
    plain.build((None, 2))
    assert [w.name for w in plain.weights] == ["plain/moving_mean", "plain/moving_variance"]
    only_gamma = layers.BatchNormalization(center=False, gamma_initializer=initializers.Constant(2.0))
    data = RNG.normal(size=(5, 2)).astype(np.float32)
    out = compile_layer(only_gamma, data.shape, training=True)(data)
    assert_close(out, 2 * (data - data.mean(0)) / np.sqrt(data.var(0) + 1e-3), rtol=1e-5, atol=1e-6)


def test_a_frozen_batch_norm_uses_its_moving_statistics_even_in_training_mode():
    bn = layers.BatchNormalization(trainable=False)
    bn.build((None, 4))
    gamma, beta, moving_mean, moving_variance = with_random_weights(bn, 4)
    data = RNG.normal(size=(3, 4)).astype(np.float32)
    out = compile_layer(bn, data.shape, training=True)(data)
    assert_close(out, np_batch_norm(data, moving_mean, moving_variance, beta, gamma, -1, 1e-3), rtol=1e-5, atol=1e-6)
    assert bn._updates == [] and bn.trainable_weights == []


def test_batch_norm_gradients_reach_gamma_beta_and_the_inputs_through_the_batch_statistics():
    bn = layers.BatchNormalization()
    x = gc.placeholder((6, 3), "float32")
    y = bn(x, training=True)
    weights = gc.placeholder((6, 3))
    loss = gc.sum(y * weights)
    data, w = RNG.normal(size=(6, 3)).astype(np.float32), RNG.normal(size=(6, 3)).astype(np.float32)
    dx, dgamma, dbeta = gc.function([x, weights], gc.grad(loss, [x, bn.gamma, bn.beta]), backend="reference")(data, w)
    normalized = (data - data.mean(0)) / np.sqrt(data.var(0) + 1e-3)
    assert_close(dgamma, (w * normalized).sum(0), rtol=1e-5, atol=1e-6)
    assert_close(dbeta, w.sum(0), rtol=1e-6)
    # d/dx of sum(w * xhat): (w - mean(w) - xhat * mean(w * xhat)) / sqrt(var + eps), per channel.
    expected = (w - w.mean(0) - normalized * (w * normalized).mean(0)) / np.sqrt(data.var(0) + 1e-3)
    assert_close(dx, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    ({"axis": "channels"}, "BatchNormalization: axis must be an integer, got 'channels'"),
    ({"momentum": 1.5}, "BatchNormalization: momentum must be a finite number >= 0 and <= 1, got 1.5"),
    ({"epsilon": 0}, "BatchNormalization: epsilon must be a finite number > 0, got 0"),
    ({"gamma_initializer": "twos"}, "BatchNormalization: gamma_initializer: unknown initializer 'twos'; known: "),
    ({"beta_regularizer": "l3"}, "BatchNormalization: beta_regularizer: unknown regularizer 'l3'; known: l1"),
])
def test_batch_norm_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        layers.BatchNormalization(**kwargs)


def test_batch_norm_refuses_the_batch_axis_and_axes_out_of_range():
    with pytest.raises(ValueError, match=r"BatchNormalization layer bn: axis 0 is the batch axis \(inputs of shape "
                                         r"\(None, 4\)\)"):
        layers.BatchNormalization(axis=0, name="bn")(Input((4,)))
    with pytest.raises(ValueError, match=r"axis 3 is out of range for inputs of shape \(None, 4, 2\)"):
        layers.BatchNormalization(axis=3)(Input((4, 2)))


def test_batch_norm_config_round_trips():
    bn = layers.BatchNormalization(axis=1, momentum=0.9, epsilon=1e-5, center=False, trainable=False, name="bn",
                                   gamma_initializer=initializers.RandomNormal(1.0, 0.02, seed=1),
                                   gamma_regularizer="l2")
    config = bn.get_config()
    assert config == {"name": "bn", "trainable": False, "axis": 1, "momentum": 0.9, "epsilon": 1e-5,
                      "center": False, "scale": True,
                      "beta_initializer": "zeros",
                      "gamma_initializer": {"class_name": "RandomNormal",
                                            "config": {"seed": 1, "mean": 1.0, "stddev": 0.02}},
                      "moving_mean_initializer": "zeros", "moving_variance_initializer": "ones",
                      "beta_regularizer": None, "gamma_regularizer": {"class_name": "L2", "config": {"l2": 0.01}}}
    again = layers.deserialize(layers.serialize(bn))
    assert type(again) is layers.BatchNormalization and again.get_config() == config and not again.trainable
