"""The functional API: keras.Input, layers called on tensors, Model(inputs, outputs), several outputs, shared
layers, and graphc's own file format for such models; each result against numpy."""
import numpy as np
import pytest

from graphc import keras
from graphc.keras import layers, models
from graphc.keras.utils import clear_session, set_random_seed


@pytest.fixture(autouse=True)
def fresh_names():
    clear_session()
    set_random_seed(0)


def dense_numpy(layer, x, activation=lambda v: v):
    kernel, bias = layer.get_weights()
    return activation(x @ kernel + bias)


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def two_headed():
    """x -> shared hidden -> (class probabilities, one regression value)."""
    inputs = keras.Input((5,))
    hidden = layers.Dense(8, activation="relu", name="hidden")(inputs)
    classes = layers.Dense(3, activation="softmax", name="classes")(hidden)
    value = layers.Dense(1, name="value")(hidden)
    return keras.Model(inputs, [classes, value])


def test_model_structure_as_keras():
    model = two_headed()
    assert model.name == "functional"
    assert [layer.name for layer in model.layers] == ["input_layer", "hidden", "classes", "value"]
    assert model.get_layer("classes") is model.layers[2] and model.get_layer(index=-1).name == "value"
    assert model.input_shape == (None, 5) and model.output_shape == [(None, 3), (None, 1)]
    assert [w.name for w in model.weights] == ["hidden/kernel", "hidden/bias", "classes/kernel", "classes/bias",
                                               "value/kernel", "value/bias"]
    assert model.count_params() == 5 * 8 + 8 + 8 * 3 + 3 + 8 + 1
    with pytest.raises(ValueError, match="has no layer named 'nope'; its layers: input_layer, hidden"):
        model.get_layer("nope")


def test_predict_follows_the_recorded_calls():
    model = two_headed()
    x = np.random.default_rng(1).normal(size=(7, 5)).astype(np.float32)
    classes, value = model.predict(x, verbose=0)
    hidden = dense_numpy(model.get_layer("hidden"), x, lambda v: np.maximum(v, 0))
    np.testing.assert_allclose(classes, dense_numpy(model.get_layer("classes"), hidden, softmax), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(value, dense_numpy(model.get_layer("value"), hidden), rtol=1e-5, atol=1e-6)
    both = model(x)
    np.testing.assert_array_equal(both[1], value)
    np.testing.assert_array_equal(model.predict_on_batch(x)[0], classes)


def test_several_outputs_sum_their_weighted_losses():
    model = two_headed()
    model.compile("sgd", loss={"classes": "sparse_categorical_crossentropy", "value": "mse"},
                  loss_weights={"classes": 1.0, "value": 0.5}, metrics={"classes": ["accuracy"]}, backend="reference")
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 5)).astype(np.float32)
    labels, targets = rng.integers(0, 3, 6), rng.normal(size=(6, 1)).astype(np.float32)
    logs = model.test_on_batch(x, {"classes": labels, "value": targets}, return_dict=True)
    probabilities, value = model.predict(x, verbose=0)
    crossentropy = -np.log(probabilities[np.arange(6), labels]).mean()
    mse = ((value - targets) ** 2).mean()
    assert model.metrics_names == ["loss", "classes_loss", "value_loss", "classes_accuracy"]
    np.testing.assert_allclose(logs["classes_loss"], crossentropy, rtol=1e-5)
    np.testing.assert_allclose(logs["value_loss"], mse, rtol=1e-5)
    np.testing.assert_allclose(logs["loss"], crossentropy + 0.5 * mse, rtol=1e-5)
    np.testing.assert_allclose(logs["classes_accuracy"], (probabilities.argmax(1) == labels).mean())
    # a list in output order means the same
    model.compile("sgd", loss=["sparse_categorical_crossentropy", "mse"], loss_weights=[1.0, 0.5], backend="reference")
    np.testing.assert_allclose(model.test_on_batch(x, [labels, targets]), [logs["loss"], crossentropy, mse],
                               rtol=1e-5)


def test_shared_layer_has_its_weights_once_and_two_inputs_train():
    left, right = keras.Input((4,), name="left"), keras.Input((4,), name="right")
    shared = layers.Dense(3, name="shared")
    difference = layers.Dense(1, name="score")
    outputs = difference(layers.Activation("tanh")(shared(left)))
    model = keras.Model([left, right], [outputs, shared(right)])
    assert [w.name for w in model.weights] == ["shared/kernel", "shared/bias", "score/kernel", "score/bias"]
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(8, 4)).astype(np.float32), rng.normal(size=(8, 4)).astype(np.float32)
    score, projected = model.predict({"left": a, "right": b}, verbose=0)
    np.testing.assert_allclose(projected, dense_numpy(shared, b), rtol=1e-5, atol=1e-6)
    model.compile("sgd", loss=["mse", None], backend="reference")
    before = shared.get_weights()[0].copy()
    model.fit([a, b], score + 1, epochs=1, batch_size=4, verbose=0)
    assert not np.allclose(before, shared.get_weights()[0])


def test_outputs_that_need_an_input_the_model_lacks_and_repeated_names():
    first, second = keras.Input((2,)), keras.Input((2,))
    total = layers.Dense(1)(second)
    with pytest.raises(ValueError, match=r"depend on the Input input_layer_1 of shape \(None, 2\)"):
        keras.Model(first, total)
    with pytest.raises(ValueError, match="inputs must be keras.Input tensors"):
        keras.Model(total, total)
    with pytest.raises(ValueError, match="two different layers are named same"):
        keras.Model(first, layers.Dense(1, name="same")(layers.Dense(2, name="same")(first)))
    with pytest.raises(TypeError, match="subclassing Model with a call"):
        keras.Model()


def test_layer_built_for_one_shape_refuses_another():
    dense = layers.Dense(2)
    dense(keras.Input((3,)))
    with pytest.raises(ValueError, match=r"built for inputs of shape \(None, 3\), got \(None, 4\)"):
        dense(keras.Input((4,)))


def test_functional_model_saves_and_loads_in_graphcs_format(tmp_path):
    model = two_headed()
    model.compile("adam", loss=["sparse_categorical_crossentropy", "mse"], loss_weights=[1.0, 0.25])
    rng = np.random.default_rng(4)
    x, labels, targets = rng.normal(size=(16, 5)).astype(np.float32), rng.integers(0, 3, 16), rng.normal(size=(16, 1))
    model.fit(x, [labels, targets], epochs=1, batch_size=8, verbose=0)
    model.save(tmp_path / "model.npz")
    loaded = models.load_model(tmp_path / "model.npz")
    assert isinstance(loaded, keras.Model) and not isinstance(loaded, keras.Sequential)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    for mine, theirs in zip(loaded.predict(x, verbose=0), model.predict(x, verbose=0)):
        np.testing.assert_array_equal(mine, theirs)
    model.fit(x, [labels, targets], epochs=1, batch_size=8, shuffle=False, verbose=0)
    loaded.fit(x, [labels, targets], epochs=1, batch_size=8, shuffle=False, verbose=0)
    for resumed, original in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_allclose(resumed, original, rtol=1e-6)
    with pytest.raises(ValueError, match=r"unsupported model file suffix '.h5'; graphc saves .keras and .npz"):
        model.save(tmp_path / "model.h5")


# Printed by Keras 3.15 (JAX backend) for the same model, 80-column console.
KERAS_GRAPH_SUMMARY = """\
Model: "functional"
┏━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━┓
┃ Layer (type)        ┃ Output Shape      ┃    Param # ┃ Connected to      ┃
┡━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━┩
│ input_layer         │ (None, 5)         │          0 │ -                 │
│ (InputLayer)        │                   │            │                   │
├─────────────────────┼───────────────────┼────────────┼───────────────────┤
│ hidden (Dense)      │ (None, 8)         │         48 │ input_layer[0][0] │
├─────────────────────┼───────────────────┼────────────┼───────────────────┤
│ input_layer_1       │ (None, 3)         │          0 │ -                 │
│ (InputLayer)        │                   │            │                   │
├─────────────────────┼───────────────────┼────────────┼───────────────────┤
│ cat (Concatenate)   │ (None, 11)        │          0 │ hidden[0][0],     │
│                     │                   │            │ input_layer_1[0]… │
├─────────────────────┼───────────────────┼────────────┼───────────────────┤
│ classes (Dense)     │ (None, 3)         │         36 │ cat[0][0]         │
├─────────────────────┼───────────────────┼────────────┼───────────────────┤
│ value (Dense)       │ (None, 1)         │          9 │ hidden[0][0]      │
└─────────────────────┴───────────────────┴────────────┴───────────────────┘
 Total params: 93 (372.00 B)
 Trainable params: 93 (372.00 B)
 Non-trainable params: 0 (0.00 B)
"""


def test_summary_of_a_graph_has_keras_connected_to_column():
    a, b = keras.Input((5,)), keras.Input((3,))
    hidden = layers.Dense(8, activation="relu", name="hidden")(a)
    classes = layers.Dense(3, name="classes")(layers.Concatenate(name="cat")([hidden, b]))
    model = keras.Model([a, b], [classes, layers.Dense(1, name="value")(hidden)])
    printed = []
    model.summary(print_fn=printed.append)
    assert printed[0] == KERAS_GRAPH_SUMMARY.rstrip("\n")


@pytest.mark.parametrize("suffix", [".npz", ".keras"])
def test_a_two_input_model_trains_saves_and_loads(tmp_path, suffix):
    image, extra = keras.Input((6,), name="image"), keras.Input((2,), name="extra")
    merged = layers.Concatenate()([layers.Dense(4, activation="relu")(image), extra])
    model = keras.Model([image, extra], layers.Dense(3, activation="softmax")(merged))
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    rng = np.random.default_rng(6)
    x = {"image": rng.normal(size=(24, 6)).astype(np.float32), "extra": rng.normal(size=(24, 2)).astype(np.float32)}
    labels = rng.integers(0, 3, 24)
    history = model.fit(x, labels, epochs=3, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    model.save(tmp_path / f"two_inputs{suffix}")
    loaded = models.load_model(tmp_path / f"two_inputs{suffix}")
    np.testing.assert_array_equal(loaded.predict([x["image"], x["extra"]], verbose=0), model.predict(x, verbose=0))
    assert loaded.evaluate(x, labels, verbose=0) == pytest.approx(model.evaluate(x, labels, verbose=0))
