"""graphc.keras.initializers against Keras 3's rules: the fans, the limits and standard deviations of each
variance-scaling initializer (statistics of large draws, fixed seeds), the seeds, and get/serialize round trips
(configs as Keras 3.15 writes them)."""
import math

import numpy as np
import pytest

from graphc.keras import initializers, layers
from graphc.keras.utils import set_random_seed

DENSE, CONV = (400, 300), (3, 3, 64, 32)  # fans (400, 300) and (576, 288)


@pytest.mark.parametrize("shape, fans", [((), (1, 1)), ((7,), (7, 7)), ((4, 6), (4, 6)), ((3, 3, 2, 8), (18, 72)),
                                         ((5, 2, 3), (10, 15))])
def test_fans_are_keras(shape, fans):
    assert initializers.compute_fans(shape) == fans
    assert initializers.compute_fans((2, 3, 4), input_axes=(0, 1), output_axes=(2,)) == (6, 4)


@pytest.mark.parametrize("cls, scale, mode, uniform", [
    (initializers.GlorotUniform, 1, "fan_avg", True), (initializers.GlorotNormal, 1, "fan_avg", False),
    (initializers.HeUniform, 2, "fan_in", True), (initializers.HeNormal, 2, "fan_in", False),
    (initializers.LecunUniform, 1, "fan_in", True), (initializers.LecunNormal, 1, "fan_in", False)])
@pytest.mark.parametrize("shape", [DENSE, CONV])
def test_variance_scaling_draws_have_keras_limits_and_variance(cls, scale, mode, uniform, shape):
    fan_in, fan_out = initializers.compute_fans(shape)
    std = math.sqrt(scale / (fan_in if mode == "fan_in" else (fan_in + fan_out) / 2))
    values = cls(seed=7)(shape)
    assert values.shape == shape and values.dtype == np.float32
    # Uniform in +-sqrt(3) std; normal truncated at two of its (pre-truncation) standard deviations, std/0.8796.
    bound = math.sqrt(3) * std if uniform else 2 * std / 0.87962566103423978
    assert np.abs(values).max() <= bound * (1 + 1e-6) and np.abs(values).max() > 0.99 * bound
    assert abs(values.std() - std) < 0.02 * std and abs(values.mean()) < 0.02 * std


def test_untruncated_normal_and_the_random_initializers_keras_defaults():
    values = initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal", seed=1)(DENSE)
    assert abs(values.std() - math.sqrt(2 / 300)) < 0.02 * math.sqrt(2 / 300)
    assert np.abs(values).max() > 3.5 * math.sqrt(2 / 300)  # not truncated
    normal = initializers.get("random_normal")(DENSE)
    assert abs(normal.std() - 0.05) < 0.001 and abs(normal.mean()) < 0.001
    uniform = initializers.get("random_uniform")(DENSE)
    assert -0.05 <= uniform.min() < -0.0499 and 0.0499 < uniform.max() <= 0.05
    shifted = initializers.RandomNormal(mean=3.0, stddev=0.5, seed=2)(DENSE)
    assert abs(shifted.mean() - 3) < 0.01 and abs(shifted.std() - 0.5) < 0.01
    truncated = initializers.TruncatedNormal(mean=1.0, stddev=0.1, seed=3)(DENSE)
    assert np.abs(truncated - 1).max() <= 0.2 and abs(truncated.mean() - 1) < 0.001
    np.testing.assert_array_equal(initializers.Constant(2.5)((2, 3)), np.full((2, 3), 2.5, np.float32))
    np.testing.assert_array_equal(initializers.get("zeros")((3,)), np.zeros(3, np.float32))
    np.testing.assert_array_equal(initializers.get("ones")((3,)), np.ones(3, np.float32))


def test_a_seed_fixes_the_draw_and_no_seed_follows_set_random_seed():
    seeded = initializers.HeNormal(seed=5)
    np.testing.assert_array_equal(seeded((30, 20)), seeded((30, 20)))
    assert not np.array_equal(seeded((30, 20)), initializers.HeNormal(seed=6)((30, 20)))
    unseeded = initializers.get("glorot_uniform")
    set_random_seed(3)
    first, second = unseeded((30, 20)), unseeded((30, 20))
    set_random_seed(3)
    np.testing.assert_array_equal(unseeded((30, 20)), first)
    assert not np.array_equal(first, second)


def test_names_stay_names_and_objects_become_keras_configs():
    for name in initializers.INITIALIZERS:
        assert initializers.serialize(initializers.get(name)) == name
    he = initializers.HeNormal(seed=3)
    assert initializers.serialize(he) == {"class_name": "HeNormal",
                                          "config": {"seed": 3, "input_axes": None, "output_axes": None}}
    uniform = initializers.RandomUniform(-1, 2, seed=4)
    assert initializers.serialize(uniform) == {"class_name": "RandomUniform",
                                               "config": {"seed": 4, "minval": -1.0, "maxval": 2.0}}
    for initializer in (he, uniform, initializers.Constant(0.5), initializers.VarianceScaling(3, "fan_avg", "uniform"),
                        initializers.Zeros(), initializers.TruncatedNormal(stddev=2)):
        again = initializers.get(initializers.serialize(initializer))
        assert type(again) is type(initializer) and again.get_config() == initializer.get_config()
    np.testing.assert_array_equal(initializers.get(initializers.serialize(he))((5, 4)), he((5, 4)))


def test_get_takes_classes_class_names_keras_dicts_and_functions():
    assert type(initializers.get(initializers.HeUniform)) is initializers.HeUniform
    assert type(initializers.get("GlorotNormal")) is initializers.GlorotNormal
    assert initializers.he_normal is initializers.HeNormal  # Keras' snake-case spelling of the class
    keras_config = {"module": "keras.initializers", "class_name": "RandomNormal",
                    "config": {"seed": None, "mean": 0.0, "stddev": 0.05}, "registered_name": None}
    assert initializers.get(keras_config).get_config() == keras_config["config"]
    assert type(initializers.get("uniform")) is initializers.RandomUniform

    def custom(shape):
        return np.full(shape, 7.0, np.float32)
    assert initializers.get(custom) is custom
    with pytest.raises(ValueError, match="cannot save the custom initializer"):
        initializers.serialize(custom)
    with pytest.raises(ValueError, match="unknown initializer 'xavier'; known: glorot_uniform, glorot_normal, he_"):
        initializers.get("xavier")
    with pytest.raises(ValueError, match="unknown initializer class 'Xavier'; known: Zeros, Ones"):
        initializers.get({"class_name": "Xavier", "config": {}})


@pytest.mark.parametrize("make, message", [
    (lambda: initializers.HeNormal(seed="a"), "HeNormal: seed must be an integer or None, got 'a'"),
    (lambda: initializers.RandomNormal(stddev=-1), "RandomNormal: stddev must be a finite number >= 0, got -1"),
    (lambda: initializers.RandomUniform(1, 0), "RandomUniform: maxval must be a finite number >= 1.0, got 0"),
    (lambda: initializers.Constant("x"), "Constant: value must be a finite number, got 'x'"),
    (lambda: initializers.VarianceScaling(0), "VarianceScaling: scale must be a finite number > 0, got 0"),
    (lambda: initializers.VarianceScaling(mode="fan"), "mode must be one of fan_in, fan_out, fan_avg, got 'fan'"),
    (lambda: initializers.VarianceScaling(distribution="cauchy"), "distribution must be one of uniform, truncated_"),
])
def test_bad_arguments_name_the_class_and_argument(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_layers_take_initializer_objects_and_save_them_as_configs():
    dense = layers.Dense(3, kernel_initializer=initializers.Constant(0.5), bias_initializer="ones",
                         input_shape=(2,))
    dense.build((None, 2))
    np.testing.assert_array_equal(dense.kernel.value, np.full((2, 3), 0.5, np.float32))
    np.testing.assert_array_equal(dense.bias.value, np.ones(3, np.float32))
    config = dense.get_config()
    assert config["kernel_initializer"] == {"class_name": "Constant", "config": {"value": 0.5}}
    again = layers.deserialize(layers.serialize(dense))
    assert again.get_config() == config
    conv = layers.Conv2D(4, 3, kernel_initializer=initializers.HeUniform(seed=1))
    conv.build((None, 8, 8, 2))
    limit = math.sqrt(6 / (3 * 3 * 2))
    assert np.abs(conv.kernel.value).max() <= limit and conv.kernel.value.std() > 0.4 * limit
