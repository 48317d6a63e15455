"""Sequential's Keras semantics: building, summary(), evaluate/predict return values, weights, save/load."""
import numpy as np
import pytest

import graphc as gc

from graphc.keras import Input, callbacks, layers, models, optimizers
from graphc.keras.utils import clear_session, set_random_seed

# Printed by Keras 3 for the MNIST model of "Deep Learning with Python", chapter 2.
SEED_MODEL_SUMMARY = """\
Model: "sequential"
┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓
┃ Layer (type)                    ┃ Output Shape           ┃       Param # ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩
│ dense (Dense)                   │ (None, 512)            │       401,920 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ dense_1 (Dense)                 │ (None, 10)             │         5,130 │
└─────────────────────────────────┴────────────────────────┴───────────────┘
 Total params: 407,050 (1.55 MB)
 Trainable params: 407,050 (1.55 MB)
 Non-trainable params: 0 (0.00 B)"""

# Printed by Keras 3 for Sequential([Input((28, 28)), Flatten(), Dense(16, relu), Dense(10, softmax)]).
FLATTEN_MODEL_SUMMARY = """\
Model: "sequential"
┏━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┓
┃ Layer (type)                    ┃ Output Shape           ┃       Param # ┃
┡━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━┩
│ flatten (Flatten)               │ (None, 784)            │             0 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ dense (Dense)                   │ (None, 16)             │        12,560 │
├─────────────────────────────────┼────────────────────────┼───────────────┤
│ dense_1 (Dense)                 │ (None, 10)             │           170 │
└─────────────────────────────────┴────────────────────────┴───────────────┘
 Total params: 12,730 (49.73 KB)
 Trainable params: 12,730 (49.73 KB)
 Non-trainable params: 0 (0.00 B)"""

# Printed by Keras 3 after training Dense(64, relu, input 784) + Dense(10) with Adam: the optimizer's
# variables (two slots per weight, the iteration counter and the learning rate) are counted too.
TRAINED_ADAM_MODEL_SUMMARY_TAIL = """\
 Total params: 152,672 (596.38 KB)
 Trainable params: 50,890 (198.79 KB)
 Non-trainable params: 0 (0.00 B)
 Optimizer params: 101,782 (397.59 KB)"""


def seed_model():
    network = models.Sequential()
    network.add(layers.Dense(512, activation="relu", input_shape=(28 * 28,)))
    network.add(layers.Dense(10, activation="softmax"))
    return network


def summary_of(model):
    printed = []
    model.summary(print_fn=printed.append)
    return "\n".join(printed)


def small_classifier(optimizer="rmsprop", loss="categorical_crossentropy", metrics=("accuracy",)):
    model = models.Sequential([layers.Dense(8, activation="tanh", input_shape=(4,)),
                               layers.Dense(3, activation="softmax")])
    model.compile(optimizer=optimizer, loss=loss, metrics=list(metrics))
    return model


def small_data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    labels = rng.integers(0, 3, size=n)
    return x, np.eye(3, dtype=np.float32)[labels]


def test_summary_of_the_seed_model_is_exactly_keras():
    clear_session()
    assert summary_of(seed_model()) == SEED_MODEL_SUMMARY


def test_summary_with_input_and_flatten_is_exactly_keras():
    clear_session()
    model = models.Sequential([Input((28, 28)), layers.Flatten(), layers.Dense(16, activation="relu"),
                               layers.Dense(10, activation="softmax")])
    assert summary_of(model) == FLATTEN_MODEL_SUMMARY


def test_summary_after_training_counts_the_optimizer_like_keras():
    model = models.Sequential([layers.Dense(64, activation="relu", input_shape=(784,)), layers.Dense(10)])
    model.compile("adam", "mse")
    assert "Optimizer params" not in summary_of(model)
    model.fit(np.zeros((2, 784), np.float32), np.zeros((2, 10), np.float32), verbose=0)
    assert summary_of(model).endswith(TRAINED_ADAM_MODEL_SUMMARY_TAIL)


def test_summary_of_an_unbuilt_model_and_a_wrapped_long_name():
    model = models.Sequential([layers.Dense(3, name="a_very_long_layer_name_that_needs_wrapping")], name="m")
    lines = summary_of(model).splitlines()
    assert lines[0] == 'Model: "m"'
    # A word longer than its column ends in an ellipsis, as Keras 3.15 prints it (checked in the bench venv).
    assert lines[4] == "│ a_very_long_layer_name_that_ne… │ ?                      │   0 (unbuilt) │"
    assert lines[5] == "│ (Dense)                         │                        │               │"


def test_model_names_count_like_keras():
    clear_session()
    assert [models.Sequential().name, models.Sequential().name] == ["sequential", "sequential_1"]


def test_shapes_and_lazy_building_from_the_first_data():
    model = models.Sequential([layers.Dense(5), layers.Dense(2)])
    assert not model.built and model.output_shape is None
    prediction = model.predict(np.ones((7, 3), np.float32), verbose=0)
    assert prediction.shape == (7, 2) and model.built
    assert model.input_shape == (None, 3) and model.output_shape == (None, 2)
    assert [layer.output_shape for layer in model.layers] == [(None, 5), (None, 2)]
    assert model.count_params() == 3 * 5 + 5 + 5 * 2 + 2


def test_input_must_come_first():
    model = models.Sequential([layers.Dense(2, input_shape=(3,))])
    with pytest.raises(ValueError, match="Input must be the first"):
        model.add(Input((3,)))
    with pytest.raises(TypeError, match="expects a layer"):
        model.add("dense")


def test_predict_matches_the_forward_pass_in_numpy():
    model = small_classifier()
    x, _ = small_data()
    w1, b1, w2, b2 = model.get_weights()
    logits = np.tanh(x @ w1 + b1) @ w2 + b2
    expected = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(model.predict(x, batch_size=16, verbose=0), expected, rtol=1e-5)


def test_evaluate_returns_loss_and_metrics_as_keras():
    model = small_classifier()
    x, y = small_data()
    loss, accuracy = model.evaluate(x, y, batch_size=16, verbose=0)
    p = model.predict(x, verbose=0)
    assert isinstance(loss, float) and isinstance(accuracy, float)
    assert loss == pytest.approx(np.mean(-np.sum(y * np.log(p), -1)), rel=1e-5)
    assert accuracy == pytest.approx(np.mean(p.argmax(-1) == y.argmax(-1)))
    assert model.evaluate(x, y, verbose=0, return_dict=True) == {"loss": pytest.approx(loss),
                                                                 "accuracy": pytest.approx(accuracy)}
    assert model.metrics_names == ["loss", "accuracy"]
    no_metrics = small_classifier(metrics=())
    assert isinstance(no_metrics.evaluate(x, y, verbose=0), float)


def test_get_and_set_weights():
    model = small_classifier()
    weights = [np.full(w.shape, i, np.float32) for i, w in enumerate(model.get_weights())]
    model.set_weights(weights)
    for got, expected in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="expected 4 arrays"):
        model.set_weights(weights[:3])
    with pytest.raises(ValueError, match=r"kernel has shape \(4, 8\), got an array of shape \(8, 4\)"):
        model.set_weights([weights[0].T] + weights[1:])


def test_save_and_load_restore_predictions_compile_settings_and_optimizer_slots(tmp_path):
    set_random_seed(1)
    model = small_classifier(optimizer=optimizers.Adam(0.01))
    x, y = small_data()
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = models.load_model(path)

    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert type(loaded.optimizer) is optimizers.Adam and loaded.optimizer.get_config() == model.optimizer.get_config()
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    for restored, original in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(restored.value, original.value)
    assert loaded.optimizer.iterations.value == 10

    # Training resumes exactly where it stopped.
    model.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    loaded.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    for resumed, original in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_allclose(resumed, original, rtol=1e-6)


def test_uncompiled_save_and_weights_only_files(tmp_path):
    model = models.Sequential([layers.Dense(2, input_shape=(3,))])
    model.save(tmp_path / "plain.npz")
    loaded = models.load_model(tmp_path / "plain.npz")
    assert not loaded.compiled
    np.testing.assert_array_equal(loaded.get_weights()[0], model.get_weights()[0])

    model.save_weights(tmp_path / "w.npz")
    other = models.Sequential([layers.Dense(2, input_shape=(3,))])
    other.load_weights(tmp_path / "w.npz")
    np.testing.assert_array_equal(other.get_weights()[0], model.get_weights()[0])
    with pytest.raises(ValueError, match="is not a graphc.keras file of kind graphc.keras.model"):
        models.load_model(tmp_path / "w.npz")


def test_model_checkpoint_saves_loadable_models(tmp_path):
    model = small_classifier()
    x, y = small_data()
    pattern = str(tmp_path / "ckpt-{epoch}.npz")
    model.fit(x, y, epochs=2, verbose=0, callbacks=[callbacks.ModelCheckpoint(pattern, monitor="loss")])
    last = models.load_model(tmp_path / "ckpt-2.npz")
    np.testing.assert_array_equal(last.predict(x, verbose=0), model.predict(x, verbose=0))
    assert (tmp_path / "ckpt-1.npz").exists()


def test_saving_into_a_missing_directory_names_the_users_path(tmp_path):
    model = small_classifier()
    x, y = small_data()
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError) as error:
        model.fit(x, y, verbose=0, callbacks=[callbacks.ModelCheckpoint(missing / "ckpt-{epoch}.npz")])
    assert str(missing) in str(error.value) and ".tmp" not in str(error.value)
    with pytest.raises(FileNotFoundError) as error:
        model.save(missing / "model.npz")
    assert str(missing / "model.npz") in str(error.value) and ".tmp" not in str(error.value)


def test_custom_functions_cannot_be_saved(tmp_path):
    model = models.Sequential([layers.Dense(2, activation=lambda t: t * 2, input_shape=(3,))])
    with pytest.raises(ValueError, match="cannot save the custom activation"):
        model.save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


def test_a_model_saved_before_training_loads_with_its_optimizer_slots(tmp_path):
    model = models.Sequential([layers.Dense(3, activation="softmax")])
    model.compile("rmsprop", "categorical_crossentropy", ["accuracy"])
    model.predict(np.ones((2, 4), np.float32), verbose=0)  # built, never trained: no slots yet
    model.save(tmp_path / "model.npz")
    loaded = models.load_model(tmp_path / "model.npz")
    np.testing.assert_allclose(loaded.predict(np.ones((2, 4), np.float32), verbose=0),
                               model.predict(np.ones((2, 4), np.float32), verbose=0))


def test_a_model_hands_its_training_step_to_the_dumps():
    model = models.Sequential([layers.Dense(3, activation="relu", input_shape=(4,)), layers.Dense(2)])
    model.compile("sgd", "mse")
    step = model.graphc_function()
    assert isinstance(step, gc.Function) and len(step.optimized_graph.updates) == 5  # 4 weights + iterations
    assert "matmul+relu" in gc.to_dot(model.graphc_function(), stage="optimized")
