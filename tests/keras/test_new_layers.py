"""Embedding, Concatenate, Add, Rescaling and the kernel/bias regularizer options of Dense and Conv2D, against
numpy forms of Keras 3's rules: values, gradients, output shapes and dtypes on Keras tensors, weights, errors
naming the layer and argument, and config round trips."""
import numpy as np
import pytest

import graphc as gc
from graphc.keras import Input, initializers, layers, regularizers
from graphc.testing import assert_close

RNG = np.random.default_rng(8)


def evaluate(outputs, feeds, backend="reference"):
    return gc.function(list(feeds), outputs, backend=backend)(*feeds.values())


# ---- Embedding ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["int32", "int64", "float32"])
def test_embedding_looks_up_rows_of_its_table(dtype):
    embedding = layers.Embedding(7, 3)
    indices = gc.placeholder(("batch", 4), dtype)
    out = embedding(indices)
    data = RNG.integers(0, 7, (5, 4)).astype(dtype)
    table = embedding.embeddings.value
    assert out.shape[1:] == (4, 3) and out.dtype == "float32" and embedding.output_shape == (None, 4, 3)
    np.testing.assert_array_equal(evaluate(out, {indices: data}, backend="llvm"), table[data.astype(int)])


def test_embedding_gradient_adds_the_incoming_rows_into_the_rows_used():
    embedding = layers.Embedding(5, 2)
    indices = gc.placeholder(("batch", 3), "int32")
    weights = gc.placeholder(("batch", 3, 2))
    data = np.array([[0, 4, 0], [2, 0, 4]], np.int32)  # repeated indices accumulate
    w = RNG.normal(size=(2, 3, 2)).astype(np.float32)
    (grad,) = evaluate(gc.grad(gc.sum(embedding(indices) * weights), [embedding.embeddings]), {indices: data, weights: w})
    expected = np.zeros((5, 2), np.float32)
    np.add.at(expected, data, w)
    assert_close(grad, expected, rtol=1e-6)


@pytest.mark.parametrize("backend", ["reference", "llvm"])
def test_embedding_indices_out_of_range_raise_index_error(backend):
    embedding = layers.Embedding(5, 2)
    indices = gc.placeholder(("batch", 2), "int32")
    with pytest.raises(IndexError, match=r"position \(0, 1\) of the indices is out of bounds for axis 0 with size 5"):
        evaluate(embedding(indices), {indices: np.array([[1, 5]], np.int32)}, backend=backend)


def test_embedding_default_table_is_kerass_uniform_and_keras_tensors_keep_float32():
    embedding = layers.Embedding(1000, 64, name="emb")
    out = embedding(Input((10,), dtype="int32"))
    assert out.shape == (None, 10, 64) and out.dtype == "float32"
    table = embedding.embeddings.value
    assert [w.name for w in embedding.weights] == ["emb/embeddings"] and table.shape == (1000, 64)
    assert -0.05 <= table.min() < -0.049 and 0.049 < table.max() <= 0.05  # RandomUniform(-0.05, 0.05)
    assert embedding.count_params() == 64000


@pytest.mark.parametrize("kwargs, message", [
    ({"input_dim": 0, "output_dim": 3}, "Embedding: input_dim must be a positive integer, got 0"),
    ({"input_dim": 4, "output_dim": 2.5}, "Embedding: output_dim must be a positive integer, got 2.5"),
    ({"input_dim": 4, "output_dim": 2, "mask_zero": True}, "Embedding: mask_zero=True is not supported"),
    ({"input_dim": 4, "output_dim": 2, "embeddings_initializer": "glorot"},
     "Embedding: embeddings_initializer: unknown initializer 'glorot'; known: glorot_uniform"),
])
def test_embedding_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        layers.Embedding(**kwargs)


def test_embedding_regularizer_and_config_round_trip():
    embedding = layers.Embedding(6, 2, embeddings_initializer=initializers.RandomNormal(seed=1),
                                 embeddings_regularizer="l2", name="emb")
    embedding.build((None, 3))
    (penalty,) = embedding.regularization_losses()
    assert_close(evaluate(penalty, {}), 0.01 * np.sum(embedding.embeddings.value.astype(np.float64) ** 2),
                 rtol=1e-6)
    config = embedding.get_config()
    assert config == {"name": "emb", "input_shape": [3], "input_dim": 6, "output_dim": 2,
                      "embeddings_initializer": {"class_name": "RandomNormal",
                                                 "config": {"seed": 1, "mean": 0.0, "stddev": 0.05}},
                      "embeddings_regularizer": {"class_name": "L2", "config": {"l2": 0.01}}, "mask_zero": False}
    assert layers.deserialize(layers.serialize(embedding)).get_config() == config


# ---- Concatenate and Add -----------------------------------------------------------------------
@pytest.mark.parametrize("axis", [-1, 1, 2])
def test_concatenate_joins_along_its_axis(axis):
    shapes = [(2, 3, 4), (2, 3, 4)]
    shapes[1] = tuple(5 if a == axis % 3 else d for a, d in enumerate(shapes[1]))
    arrays = [RNG.normal(size=shape).astype(np.float32) for shape in shapes]
    tensors = [gc.placeholder(("batch", *shape[1:])) for shape in shapes]
    concatenate = layers.Concatenate(axis=axis)
    out = evaluate(concatenate(tensors), dict(zip(tensors, arrays)))
    np.testing.assert_array_equal(out, np.concatenate(arrays, axis=axis))
    assert concatenate.output_shape == (None, *out.shape[1:])


def test_concatenate_and_add_on_keras_tensors_give_kerass_output_shapes():
    a, b, c = Input((3, 4)), Input((3, 2)), Input((1, 4))
    assert layers.Concatenate()([a, b]).shape == (None, 3, 6)
    assert layers.Concatenate(axis=1)([a, c, a]).shape == (None, 7, 4)
    assert layers.Add()([a, c, a]).shape == (None, 3, 4)


def test_add_sums_its_inputs_with_length_one_axes_broadcast():
    arrays = [RNG.normal(size=shape).astype(np.float32) for shape in [(2, 3, 4), (2, 1, 4), (2, 3, 4)]]
    tensors = [gc.placeholder(("batch", *a.shape[1:])) for a in arrays]
    out = evaluate(layers.Add()(tensors), dict(zip(tensors, arrays)), backend="llvm")
    assert_close(out, arrays[0] + arrays[1] + arrays[2], rtol=1e-6)


@pytest.mark.parametrize("layer, inputs, message", [
    (layers.Concatenate(name="cat"), [(3, 4), (2, 4)],
     r"Concatenate layer cat: inputs must match on every axis but the concatenation axis -1, got shapes "
     r"\[\(None, 3, 4\), \(None, 2, 4\)\]"),
    (layers.Concatenate(axis=0), [(3,), (3,)], "axis 0 is the batch axis"),
    (layers.Concatenate(axis=3), [(3, 4), (3, 4)], r"axis 3 is out of range for inputs of shape \[\(None, 3, 4\)"),
    (layers.Concatenate(), [(3, 4), (3,)], r"needs inputs of the same rank, got shapes \[\(None, 3, 4\), \(None, 3\)\]"),
    (layers.Add(name="add"), [(3,), (4,)],
     r"Add layer add: inputs of shapes \[\(None, 3\), \(None, 4\)\] do not broadcast against each other"),
    (layers.Add(), (3,), r"must be called on a list of tensors, got one of shape \(None, 3\)"),
])
def test_merging_layers_check_their_inputs_shapes(layer, inputs, message):
    tensors = [Input(shape) for shape in inputs] if isinstance(inputs, list) else Input(inputs)
    with pytest.raises(ValueError, match=message):
        layer(tensors)


def test_merging_configs_round_trip_and_bad_axis_is_refused_when_made():
    for layer in (layers.Concatenate(axis=1, name="c"), layers.Add(name="a")):
        again = layers.deserialize(layers.serialize(layer))
        assert type(again) is type(layer) and again.get_config() == layer.get_config()
    assert layers.Concatenate(axis=1, name="c").get_config() == {"name": "c", "axis": 1}
    with pytest.raises(ValueError, match="Concatenate: axis must be an integer, got 'last'"):
        layers.Concatenate(axis="last")


# ---- Rescaling ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["int32", "float32", "float64"])
def test_rescaling_is_x_times_scale_plus_offset_in_float32(dtype):
    data = RNG.integers(0, 256, (3, 5)).astype(dtype)
    x = gc.placeholder(("batch", 5), dtype)
    rescaling = layers.Rescaling(1 / 127.5, offset=-1)
    out = evaluate(rescaling(x), {x: data})
    assert out.dtype == np.float32
    assert_close(out, data.astype(np.float32) * np.float32(1 / 127.5) - 1, rtol=1e-6, atol=1e-7)
    assert layers.deserialize(layers.serialize(rescaling)).get_config() == rescaling.get_config()
    with pytest.raises(ValueError, match="Rescaling: scale must be a finite number, got '1/255'"):
        layers.Rescaling("1/255")
    with pytest.raises(ValueError, match="Rescaling: offset must be a finite number, got nan"):
        layers.Rescaling(1.0, offset=float("nan"))


# ---- regularizer options -----------------------------------------------------------------------
def test_dense_and_conv2d_regularizers_add_kerass_penalties():
    dense = layers.Dense(3, kernel_regularizer="l2", bias_regularizer=regularizers.L1(0.1),
                         bias_initializer=initializers.Constant(-2.0))
    dense.build((None, 4))
    conv = layers.Conv2D(2, 3, kernel_regularizer=regularizers.L1L2(l1=0.01, l2=0.02))
    conv.build((None, 5, 5, 1))
    penalties = evaluate(dense.regularization_losses() + conv.regularization_losses(), {})
    kernel, kernel2 = dense.kernel.value.astype(np.float64), conv.kernel.value.astype(np.float64)
    expected = [0.01 * np.sum(kernel ** 2), 0.1 * 3 * 2.0, 0.01 * np.abs(kernel2).sum() + 0.02 * np.sum(kernel2 ** 2)]
    for got, want in zip(penalties, expected):
        assert_close(got, want, rtol=1e-6)
    assert len(penalties) == 3 and conv.regularization_losses()[0] is not None


def test_regularizer_options_are_checked_and_saved():
    with pytest.raises(ValueError, match="Dense: kernel_regularizer: unknown regularizer 'l3'; known: l1, l2"):
        layers.Dense(2, kernel_regularizer="l3")
    with pytest.raises(ValueError, match="Conv2D: bias_initializer: unknown initializer 'zeroes'"):
        layers.Conv2D(2, 3, bias_initializer="zeroes")
    with pytest.raises(ValueError, match="Conv2D: activation: unknown activation 'swish'"):
        layers.Conv2D(2, 3, activation="swish")
    conv = layers.Conv2D(2, 3, kernel_regularizer="l1", name="c")
    config = conv.get_config()
    assert config["kernel_regularizer"] == {"class_name": "L1", "config": {"l1": 0.01}}
    assert config["bias_regularizer"] is None and config["kernel_initializer"] == "glorot_uniform"
    assert layers.deserialize(layers.serialize(conv)).get_config() == config


def test_layers_take_trainable_and_refuse_unknown_keywords():
    dense = layers.Dense(2, trainable=False, name="frozen")
    dense.build((None, 3))
    assert dense.trainable_weights == [] and len(dense.non_trainable_weights) == 2
    assert layers.deserialize(layers.serialize(dense)).trainable is False
    with pytest.raises(TypeError, match="kernel_constraint"):
        layers.Dense(2, kernel_constraint="max_norm")
