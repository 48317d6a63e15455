import numpy as np
import pytest

import graphc as gc
from graphc.keras import Input, activations, layers
from graphc.keras.utils import clear_session


def run(layer, x):
    """The layer applied to numpy ``x`` through a compiled graph."""
    placeholder = gc.placeholder(("batch", *x.shape[1:]))
    return gc.function([placeholder], layer(placeholder))(x)


def test_dense_computes_activation_of_x_kernel_plus_bias():
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    dense = layers.Dense(4, activation="relu")
    run(dense, x)  # builds the kernel and the (zero) bias
    kernel, bias = dense.kernel.value, np.array([0.5, -0.5, 1.0, 0.0], np.float32)
    dense.bias.value = bias
    out = run(dense, x)
    np.testing.assert_allclose(out, np.maximum(x @ kernel + bias, 0), rtol=1e-6)
    assert dense.output_shape == (None, 4) and dense.count_params() == 3 * 4 + 4


def test_dense_without_bias_and_on_three_dimensional_inputs():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 10
    dense = layers.Dense(5, use_bias=False)
    out = run(dense, x)
    assert out.shape == (2, 3, 5) and dense.output_shape == (None, 3, 5)
    assert [w.name for w in dense.weights] == [f"{dense.name}/kernel"]
    np.testing.assert_allclose(out, x @ dense.kernel.value, rtol=1e-6)


@pytest.mark.parametrize("name, reference", [
    ("relu", lambda x: np.maximum(x, 0)),
    ("sigmoid", lambda x: 1 / (1 + np.exp(-x))),
    ("tanh", np.tanh),
    ("softmax", lambda x: np.exp(x) / np.exp(x).sum(-1, keepdims=True)),
    ("linear", lambda x: x),
])
def test_activation_layer_matches_numpy(name, reference):
    x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_allclose(run(layers.Activation(name), x), reference(x), rtol=1e-5, atol=1e-7)


def test_flatten_keeps_the_batch_and_row_major_order():
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    flatten = layers.Flatten()
    np.testing.assert_array_equal(run(flatten, x), x.reshape(2, 12))
    assert flatten.output_shape == (None, 12) and flatten.count_params() == 0


def test_auto_names_count_per_class_across_the_session():
    clear_session()
    names = [layers.Dense(1).name, layers.Dense(1).name, layers.Flatten().name, layers.Dense(1, name="out").name]
    assert names == ["dense", "dense_1", "flatten", "out"]
    clear_session()
    assert layers.Dense(1).name == "dense"


def test_a_layer_rejects_inputs_of_another_shape_than_it_was_built_for():
    dense = layers.Dense(2)
    run(dense, np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match=r"built for inputs of shape \(None, 3\), got \(None, 4\)"):
        dense(gc.placeholder(("batch", 4)))


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ValueError, match="unknown activation 'gelu'.*relu, sigmoid, tanh, softmax, linear"):
        layers.Dense(3, activation="gelu")
    with pytest.raises(ValueError, match="Dense: kernel_initializer: unknown initializer 'kaiming_normal'.*he_normal"):
        layers.Dense(3, kernel_initializer="kaiming_normal")
    with pytest.raises(ValueError, match="units must be a positive integer"):
        layers.Dense(0)
    with pytest.raises(ValueError, match="positive integers"):
        Input((28, -1))


def test_activations_get_accepts_none_and_functions():
    assert activations.get(None) is activations.linear
    assert activations.get(activations.tanh) is activations.tanh
    assert activations.serialize(activations.get("softmax")) == "softmax"
    with pytest.raises(ValueError, match="cannot save the custom activation"):
        activations.serialize(lambda x: x)


def test_layer_configs_round_trip():
    dense = layers.Dense(7, activation="tanh", use_bias=False, input_shape=(3,), bias_initializer="ones",
                         name="d")
    again = layers.deserialize(layers.serialize(dense))
    assert type(again) is layers.Dense and again.get_config() == dense.get_config()
    assert again.get_config() == {"name": "d", "input_shape": [3], "units": 7, "activation": "tanh",
                                  "use_bias": False, "kernel_initializer": "glorot_uniform",
                                  "bias_initializer": "ones", "kernel_regularizer": None, "bias_regularizer": None}
