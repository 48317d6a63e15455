"""Keras 3 ``.keras`` files: graphc -> .keras -> graphc round trips, files written by Keras 3 itself
(tests/keras/data/, made by make_keras_files.py, with Keras' predictions), and damaged or unsupported files.
bench/keras_interop.py checks the other direction, graphc's files loaded by Keras 3."""
import io
import json
import os
import sys
import warnings
import zipfile

import numpy as np
import pytest

import graphc as gc
from graphc.keras import Input, layers, losses, models, optimizers, saving
from runtime.checkpoint import CheckpointError

h5py = pytest.importorskip("h5py")

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def keras_file(name):
    """(path of tests/keras/data/<name>.keras, its .npz: the inputs, Keras' predictions, the step count)."""
    with np.load(os.path.join(DATA, f"{name}.npz")) as arrays:
        return os.path.join(DATA, f"{name}.keras"), dict(arrays)


def rewrite(source, target, config=None, weights=None):
    """A copy of the .keras file ``source`` at ``target`` with ``config(dict)`` applied to its config and
    ``weights(h5 file)`` to its weights."""
    with zipfile.ZipFile(source) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    if config is not None:
        parsed = json.loads(entries["config.json"])
        config(parsed)
        entries["config.json"] = json.dumps(parsed).encode()
    if weights is not None:
        buffer = io.BytesIO(entries["model.weights.h5"])
        with h5py.File(buffer, "a") as store:
            weights(store)
        entries["model.weights.h5"] = buffer.getvalue()
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return target


def trained_mlp():
    model = models.Sequential([layers.Input((5,)), layers.Dense(7, activation="relu"),
                               layers.Dense(3, activation="softmax")])
    model.compile(optimizer=optimizers.Adam(0.01), loss="categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(13, 5)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 13)]
    model.fit(x, y, epochs=2, batch_size=4, verbose=0, shuffle=False)
    return model, x, y


def test_round_trip_keeps_predictions_compile_settings_and_optimizer_state(tmp_path):
    model, x, y = trained_mlp()
    path = tmp_path / "m.keras"
    model.save(path)  # the suffix picks Keras' format
    assert sorted(zipfile.ZipFile(path).namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
    loaded = models.load_model(path)
    assert [type(layer).__name__ for layer in loaded.layers] == ["Dense", "Dense"]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert type(loaded.optimizer) is optimizers.Adam and loaded.optimizer.learning_rate == np.float32(0.01)
    assert loaded.metrics_names == ["loss", "accuracy"]
    for mine, theirs in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(mine.value, theirs.value)
    assert int(loaded.optimizer.iterations.value) == 8  # 2 epochs of 4 batches
    # Training goes on from the same state: one more epoch gives the same weights.
    for m in (model, loaded):
        m.fit(x, y, epochs=1, batch_size=4, verbose=0, shuffle=False)
    for mine, theirs in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(mine, theirs)


def test_round_trip_of_image_layers_and_uncompiled_model(tmp_path):
    model = models.Sequential([
        layers.Input((9, 7, 2)), layers.Conv2D(3, (3, 2), strides=(2, 1), padding="same", activation="tanh"),
        layers.MaxPooling2D(2, strides=1), layers.AveragePooling2D((1, 2), padding="same"),
        layers.Reshape((-1, 3)), layers.Activation("sigmoid"), layers.Reshape((4, 3, 3)),
        layers.GlobalAveragePooling2D(keepdims=True), layers.Flatten(), layers.Dense(1, use_bias=False)])
    x = np.random.default_rng(1).normal(size=(3, 9, 7, 2)).astype(np.float32)
    saving.save_keras(model, tmp_path / "c.keras")
    loaded = saving.load_keras(tmp_path / "c.keras")
    assert not loaded.compiled
    assert [layer.get_config() for layer in loaded.layers] == [layer.get_config() for layer in model.layers]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_weight_file_keys_are_keras_class_names_numbered_per_class(tmp_path):
    model = models.Sequential([layers.Input((4, 4, 1)), layers.Conv2D(2, 2, name="a"), layers.Flatten(),
                               layers.Dense(3, name="b"), layers.Dense(2, name="c")])
    saving.save_keras(model, tmp_path / "k.keras")
    with zipfile.ZipFile(tmp_path / "k.keras") as archive, \
            h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as store:
        assert list(store["layers"]) == ["conv2d", "dense", "dense_1", "flatten"]
        assert store["layers/dense_1/vars"].attrs["name"] == "c"
        np.testing.assert_array_equal(store["layers/dense_1/vars/0"][()], model.layers[3].weights[0].value)
    assert saving._snake_case("GlobalAveragePooling2D") == "global_average_pooling2d"
    assert saving._snake_case("InputLayer") == "input_layer"


@pytest.mark.parametrize("name", ["mlp", "convnet"])
def test_files_written_by_keras_give_keras_predictions(name):
    path, data = keras_file(name)
    model = saving.load_keras(path)
    np.testing.assert_allclose(model.predict(data["x"], verbose=0), data["y"], rtol=1e-5, atol=1e-6)
    assert int(model.optimizer.iterations.value) == data["iterations"]


def test_sequential_without_input_layer_takes_its_build_input_shape(tmp_path):
    source, data = keras_file("mlp")
    path = rewrite(source, tmp_path / "no_input.keras", config=lambda c: c["config"]["layers"].pop(0))
    np.testing.assert_allclose(saving.load_keras(path).predict(data["x"], verbose=0), data["y"], rtol=1e-5,
                               atol=1e-6)

    def unbuilt(config):
        config["config"]["layers"].pop(0)
        config["config"].pop("build_input_shape")
    with pytest.raises(CheckpointError, match=r"dense has weights \[\] but the file holds \['0', '1'\]"):
        saving.load_keras(rewrite(source, tmp_path / "unbuilt.keras", config=unbuilt))


def test_keras_optimizer_state_and_loss_object_are_read():
    path, _ = keras_file("convnet")
    model = saving.load_keras(path)
    assert type(model.optimizer) is optimizers.SGD and model.optimizer.momentum == pytest.approx(0.9)
    momentums = model.optimizer.variables[2:]
    assert len(momentums) == len(model.trainable_weights) and any(np.abs(m.value).max() > 0 for m in momentums)
    with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as store:
        for i, variable in enumerate(model.optimizer.variables):
            np.testing.assert_array_equal(variable.value, store[f"optimizer/vars/{i}"][()])
    uncompiled = saving.load_keras(path, compile=False)
    assert not uncompiled.compiled


def test_keras_metric_objects_are_read_as_graphc_metrics(tmp_path):
    def objects(config):
        config["compile_config"]["metrics"] = [
            {"module": "keras.metrics", "class_name": "CategoricalAccuracy",
             "config": {"name": "acc", "dtype": "float32"}, "registered_name": None},
            {"module": "keras.metrics", "class_name": "MeanSquaredError",
             "config": {"name": "mean_squared_error", "dtype": "float32"}, "registered_name": None}, "mae"]
    model = saving.load_keras(rewrite(keras_file("mlp")[0], tmp_path / "metrics.keras", config=objects))
    assert model.metrics_names == ["loss", "categorical_accuracy", "mean_squared_error", "mae"]

    def auc(config):
        config["compile_config"]["metrics"] = [{"module": "keras.metrics", "class_name": "AUC", "config": {}}]
    with pytest.raises(ValueError, match="metric AUC is not one graphc has; graphc's metrics: accuracy, "):
        saving.load_keras(rewrite(keras_file("mlp")[0], tmp_path / "auc.keras", config=auc))


def test_unknown_layer_is_named_with_the_supported_ones(tmp_path):
    def lstm(config):
        config["config"]["layers"][1]["class_name"] = "LSTM"
    path = rewrite(keras_file("mlp")[0], tmp_path / "lstm.keras", config=lstm)
    with pytest.raises(ValueError, match=r"Keras LSTM, which graphc does not have; graphc reads .*Conv2D.*Dense"):
        saving.load_keras(path)


@pytest.mark.parametrize("key, value", [("kernel_constraint", {"class_name": "NonNeg", "config": {}}),
                                        ("dtype", "mixed_float16"), ("units_typo", 3)])
def test_a_setting_graphc_cannot_honour_names_layer_key_and_value(tmp_path, key, value):
    def change(config):
        config["config"]["layers"][1]["config"][key] = value
    path = rewrite(keras_file("mlp")[0], tmp_path / "bad.keras", config=change)
    with pytest.raises(ValueError, match=rf"layer 'dense\w*' \(Dense\) sets {key}="):
        saving.load_keras(path)


def test_arrays_are_checked_against_the_config_before_building(tmp_path):
    def huge(config):  # a crafted config asking for a 10**9-unit layer: refused before any weight is made
        config["config"]["layers"][1]["config"]["units"] = 10**9
    path = rewrite(keras_file("mlp")[0], tmp_path / "huge.keras", config=huge)
    with pytest.raises(CheckpointError, match=r"dense\w*/kernel has shape \(5, 1000000000\)"):
        saving.load_keras(path)

    def wrong_shape(store):
        del store["layers/dense_1/vars/1"]
        store["layers/dense_1/vars/1"] = np.zeros(4, np.float32)
    path = rewrite(keras_file("mlp")[0], tmp_path / "shape.keras", weights=wrong_shape)
    with pytest.raises(CheckpointError, match=r"bias has shape \(3,\)"):
        saving.load_keras(path)


def test_crafted_weight_files_are_refused_before_reading(tmp_path):
    def sparse(store):  # declares 400 MB that the file does not hold (HDF5 would make them up from a fill value)
        store.create_dataset("layers/dense/extra", shape=(10**8,), dtype="f4", chunks=True)
    with pytest.raises(CheckpointError, match="arrays declare 40000.* bytes, more than"):
        saving.load_keras(rewrite(keras_file("mlp")[0], tmp_path / "sparse.keras", weights=sparse))

    def text(store):
        del store["optimizer/vars/3"]
        store["optimizer/vars/3"] = np.array([b"abc"])
    with pytest.raises(CheckpointError, match="the optimizer has numbers"):
        saving.load_keras(rewrite(keras_file("mlp")[0], tmp_path / "text.keras", weights=text))

    def gap(store):
        del store["optimizer/vars/2"]
    with pytest.raises(CheckpointError, match="the optimizer has variables 0, 1, ..."):
        saving.load_keras(rewrite(keras_file("mlp")[0], tmp_path / "gap.keras", weights=gap))
    assert not saving.load_keras(tmp_path / "gap.keras", compile=False).compiled  # the weights alone are fine

    def wrong_slot(store):
        del store["optimizer/vars/2"]
        store["optimizer/vars/2"] = np.zeros((7, 5), np.float32)
    with pytest.raises(CheckpointError, match=r"dense/kernel/momentum has shape \(5, 7\), the file holds"):
        saving.load_keras(rewrite(keras_file("mlp")[0], tmp_path / "slot.keras", weights=wrong_slot))


def test_optimizer_state_of_another_length_starts_afresh_with_a_warning(tmp_path):
    def unbuilt(store):  # as Keras writes an optimizer that never ran: just the iterations and the learning rate
        for i in range(2, len(store["optimizer/vars"])):
            del store[f"optimizer/vars/{i}"]
        store["optimizer/vars/1"][()] = 0.25
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = saving.load_keras(rewrite(keras_file("mlp")[0], tmp_path / "unbuilt.keras", weights=unbuilt))
    assert model.optimizer.learning_rate == 0.25 and all(not np.any(v.value) for v in model.optimizer.variables[2:])

    def drop(store):
        del store["optimizer/vars/9"]
    path = rewrite(keras_file("mlp")[0], tmp_path / "fresh.keras", weights=drop)
    with pytest.warns(UserWarning, match="holds 9 optimizer variables where graphc's Adam has 10"):
        model = saving.load_keras(path)
    assert int(model.optimizer.iterations.value) == 0
    assert all(not np.any(v.value) for v in model.optimizer.variables[2:])


def test_damaged_files_give_checkpoint_errors(tmp_path):
    source = keras_file("mlp")[0]
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(open(source, "rb").read()[:500])
    with pytest.raises(CheckpointError, match="not a readable .keras file"):
        saving.load_keras(truncated)
    no_weights = tmp_path / "no_weights.keras"
    with zipfile.ZipFile(no_weights, "w") as archive:
        archive.writestr("config.json", zipfile.ZipFile(source).read("config.json"))
    with pytest.raises(CheckpointError, match="it has no model.weights.h5"):
        saving.load_keras(no_weights)
    bad_h5 = rewrite(source, tmp_path / "bad_h5.keras")
    with zipfile.ZipFile(bad_h5, "w") as archive:
        archive.writestr("config.json", zipfile.ZipFile(source).read("config.json"))
        archive.writestr("model.weights.h5", b"not hdf5")
    with pytest.raises(CheckpointError, match="unreadable model.weights.h5"):
        saving.load_keras(bad_h5)
    with pytest.raises(CheckpointError, match="invalid config.json"):
        saving.load_keras(rewrite(source, tmp_path / "cfg.keras", config=lambda c: c["config"].pop("layers")))
    with pytest.raises(FileNotFoundError):
        saving.load_keras(tmp_path / "missing.keras")


def test_failed_save_leaves_the_old_file(tmp_path):
    model, _, _ = trained_mlp()
    path = tmp_path / "m.keras"
    saving.save_keras(model, path)
    before = path.read_bytes()

    class Custom(layers.Dense):
        pass
    model.layers[1].__class__ = Custom
    with pytest.raises(ValueError, match="custom layer"):
        saving.save_keras(model, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.keras"]


def test_without_h5py_the_error_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)
    model, _, _ = trained_mlp()
    with pytest.raises(ImportError, match=r"pip install 'graphc\[keras\]'"):
        saving.save_keras(model, tmp_path / "m.keras")
    with pytest.raises(ImportError, match=r"pip install 'graphc\[keras\]'"):
        saving.load_keras(keras_file("mlp")[0])


def scaled_mse(y_true, y_pred):
    """The graphc twin of make_keras_files.py's custom loss, registered under the same Keras name."""
    return 2.0 * gc.mean(gc.square(y_true - y_pred), -1)


def test_keras_functional_file_with_shared_layer_and_custom_loss():
    saving.register_keras_serializable(package="Custom", name="scaled_mse")(scaled_mse)
    path, data = keras_file("functional")
    model = models.load_model(path)
    assert [t.name for t in model.inputs] == ["features", "tokens"] and model.inputs[1].dtype == "int32"
    np.testing.assert_allclose(model.predict([data["x0"], data["x1"]], verbose=0), data["y"], rtol=1e-5, atol=1e-6)
    assert model.loss is scaled_mse and int(model.optimizer.iterations.value) == data["iterations"]


def test_functional_layers_are_written_in_keras_order(tmp_path):
    """Written again by graphc, Keras' functional file lists its layers and weight keys as Keras did: Keras'
    depth order, not graphc's order of first call."""
    saving.register_keras_serializable(package="Custom", name="scaled_mse")(scaled_mse)
    path = keras_file("functional")[0]
    saving.save_keras(models.load_model(path), tmp_path / "again.keras")
    (theirs, their_keys), (mine, my_keys) = [
        (json.loads(zipfile.ZipFile(p).read("config.json")), weight_keys(p)) for p in (path, tmp_path / "again.keras")]
    assert [entry["name"] for entry in mine["config"]["layers"]] == [
        entry["name"] for entry in theirs["config"]["layers"]]
    assert [entry["inbound_nodes"] for entry in mine["config"]["layers"]][-1] == \
        theirs["config"]["layers"][-1]["inbound_nodes"]
    assert my_keys == their_keys
    assert mine["compile_config"]["loss"] == theirs["compile_config"]["loss"]


def weight_keys(path):
    with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as store:
        return {key: store[f"layers/{key}/vars"].attrs["name"] for key in store["layers"]}


def test_functional_round_trip_with_two_outputs_and_custom_loss(tmp_path):
    @saving.register_keras_serializable(package="Tests")
    def halved_mae(y_true, y_pred):
        return 0.5 * gc.mean(gc.abs(y_true - y_pred), -1)
    a, b = Input((3,), name="a"), Input((3,), name="b")
    shared = layers.Dense(3, activation="tanh", name="shared")
    h = layers.Concatenate()([shared(a), layers.Dense(2)(b)])
    out1 = layers.Dense(1, name="out1")(h)
    out2 = layers.Dense(2, activation="softmax", name="out2")(shared(layers.Add()([a, b])))
    model = models.Model([a, b], [out1, out2])
    model.compile(optimizer="rmsprop", loss=[halved_mae, "categorical_crossentropy"], loss_weights=[0.5, 2.0],
                  metrics=[[], ["accuracy"]], backend="reference")  # the numpy interpreter: no compile time
    rng = np.random.default_rng(3)
    xs = [rng.normal(size=(6, 3)).astype(np.float32), rng.normal(size=(6, 3)).astype(np.float32)]
    model.fit(xs, [rng.normal(size=(6, 1)).astype(np.float32), np.eye(2, dtype=np.float32)[rng.integers(0, 2, 6)]],
              epochs=1, batch_size=3, verbose=0)
    model.save(tmp_path / "f.keras")
    config = json.loads(zipfile.ZipFile(tmp_path / "f.keras").read("config.json"))
    assert config["compile_config"]["loss"][0] == {"module": "builtins", "class_name": "function",
                                                   "config": "Tests>halved_mae", "registered_name": "function"}
    loaded = models.load_model(tmp_path / "f.keras")
    for mine, theirs in zip(model.predict(xs, verbose=0), loaded.predict(xs, verbose=0)):
        np.testing.assert_allclose(mine, theirs, rtol=1e-6, atol=1e-7)
    assert loaded._losses[0] is halved_mae and loaded._loss_weights == [0.5, 2.0]
    assert loaded.metrics_names == model.metrics_names
    for mine, theirs in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(mine.value, theirs.value)


def test_registered_loss_class_round_trips_with_its_config(tmp_path):
    @saving.register_keras_serializable(package="Tests")
    class ScaledAbsolute(losses.Loss):
        def __init__(self, factor=1.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, y_true, y_pred):
            return self.factor * gc.mean(gc.abs(y_true - y_pred), -1)

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}

    model = models.Sequential([Input((3,)), layers.Dense(2)])
    model.compile(optimizer="sgd", loss=ScaledAbsolute(3.0))
    model.save(tmp_path / "c.keras")
    entry = json.loads(zipfile.ZipFile(tmp_path / "c.keras").read("config.json"))["compile_config"]["loss"]
    assert (entry["class_name"], entry["registered_name"]) == ("ScaledAbsolute", "Tests>ScaledAbsolute")
    loaded = models.load_model(tmp_path / "c.keras")
    assert type(loaded.loss) is ScaledAbsolute and loaded.loss.factor == 3.0


def test_other_suffixes_are_refused(tmp_path):
    model, _, _ = trained_mlp()
    with pytest.raises(ValueError, match=r"unsupported model file suffix '.h5'.*\.keras"):
        model.save(tmp_path / "m.h5")
    with pytest.raises(ValueError, match=r"unsupported model file suffix '.h5'"):
        models.load_model(tmp_path / "m.h5")


def test_register_keras_serializable_checks_its_names():
    with pytest.raises(ValueError, match="package and name must be strings without '>'"):
        saving.register_keras_serializable(package="a>b")
    with pytest.raises(ValueError, match="package and name must be strings without '>'"):
        saving.register_keras_serializable(name="x>y")



def test_optimizer_variables_are_written_in_keras_order(tmp_path):
    """Keras' order: the iteration count, the learning rate unless it is a schedule, each group of slots
    interleaved parameter by parameter, then Nadam's u_product (bench/keras_interop.py checks it in Keras)."""
    model, x, y = trained_mlp()
    schedule = optimizers.schedules.ExponentialDecay(0.01, decay_steps=2, decay_rate=0.5)
    model.compile(optimizer=optimizers.Nadam(schedule), loss="categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    saving.save_keras(model, tmp_path / "n.keras")
    with zipfile.ZipFile(tmp_path / "n.keras") as archive, \
            h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as store:
        written = [store[f"optimizer/vars/{i}"][()] for i in range(len(store["optimizer/vars"]))]
        config = json.loads(archive.read("config.json"))["compile_config"]["optimizer"]
    slots = [model.optimizer._slots_for(w) for w in model.trainable_weights]
    expected = [model.optimizer.iterations] + [s[name] for s in slots for name in ("momentum", "velocity")] + \
        [v for v in model.optimizer.variables if v.name == "u_product"]
    assert len(written) == len(expected) == 2 + 2 * len(model.trainable_weights)
    for value, variable in zip(written, expected):
        np.testing.assert_array_equal(value, variable.value)
    assert config["config"]["learning_rate"]["module"] == "keras.optimizers.schedules"
    loaded = saving.load_keras(tmp_path / "n.keras")
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
