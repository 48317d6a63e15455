"""Keras 3 file interop, checked against Keras 3 itself: models trained with graphc.keras and saved as
``.keras`` are loaded by ``keras.models.load_model`` and must predict what graphc predicts (and, where both can
train on, take the same next training step from the saved optimizer state); models trained and saved by Keras 3
are loaded by graphc and must predict what Keras predicts. One PASS/FAIL line per case; the exit status is the
number of failures.

    python bench/keras_interop.py

It runs itself in the peers' venv (bench/peers.py, created on first use), where Keras 3 runs on JAX; graphc is
imported from this repository and installs nothing.
"""
import argparse
import os
import sys
import tempfile
import traceback

import numpy as np

import peers

RTOL, ATOL = 2e-5, 1e-6  # float32 results of the same weights in two frameworks


def graphc_mlp(gk):
    """Dense relu (an He-normal kernel of its own seed and an L2 penalty), Dense softmax; Adam; categorical
    crossentropy and accuracy."""
    model = gk.models.Sequential([
        gk.layers.Input((6,)), gk.layers.Dense(9, activation="relu", kernel_regularizer=gk.regularizers.L2(0.01),
                                               kernel_initializer=gk.initializers.HeNormal(seed=3)),
        gk.layers.Dense(3, activation="softmax", bias_initializer="ones")])
    model.compile(optimizer=gk.optimizers.Adam(0.01), loss="categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    return model, rng.normal(size=(32, 6)).astype("float32"), np.eye(3, dtype="float32")[rng.integers(0, 3, 32)]


def graphc_convnet(gk):
    """Rescaling, Conv2D, BatchNormalization, the poolings, Dense logits, a frozen Conv2D; centered RMSprop with
    momentum (three groups of slots) and a SparseCategoricalCrossentropy(from_logits=True) loss object."""
    layers = gk.layers
    model = gk.models.Sequential([
        layers.Input((8, 8, 1)), layers.Rescaling(1 / 255), layers.Conv2D(4, 3, activation="relu"),
        layers.BatchNormalization(), layers.MaxPooling2D(), layers.Conv2D(3, 2, padding="same", trainable=False),
        layers.AveragePooling2D(padding="same"), layers.Flatten(), layers.Dense(5)])
    model.compile(optimizer=gk.optimizers.RMSprop(0.01, momentum=0.5, centered=True),
                  loss=gk.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(1)
    return model, rng.uniform(0, 255, (16, 8, 8, 1)).astype("float32"), rng.integers(0, 5, 16)


def graphc_custom_loss(gk):
    """A Dense regression with a custom loss registered as keras.saving.register_keras_serializable does;
    Adagrad (slots that start at 0.1)."""
    import graphc as gc
    from graphc.keras.saving import register_keras_serializable

    @register_keras_serializable(package="Interop", name="scaled_mse")
    def scaled_mse(y_true, y_pred):
        return 2.0 * gc.mean(gc.square(y_true - y_pred), -1)
    model = gk.models.Sequential([gk.layers.Input((4,)), gk.layers.Dense(6, activation="relu"), gk.layers.Dense(2)])
    model.compile(optimizer=gk.optimizers.Adagrad(0.05), loss=scaled_mse)
    rng = np.random.default_rng(2)
    return model, rng.normal(size=(8, 4)).astype("float32"), rng.normal(size=(8, 2)).astype("float32")


def graphc_loss_class(gk):
    """A Dense regression with a registered Loss subclass of its own setting; plain SGD."""
    import graphc as gc
    from graphc.keras.saving import register_keras_serializable

    @register_keras_serializable(package="Interop")
    class ScaledAbsolute(gk.losses.Loss):
        def __init__(self, factor=1.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, y_true, y_pred):
            return self.factor * gc.mean(gc.abs(y_true - y_pred), -1)

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}
    model = gk.models.Sequential([gk.layers.Input((3,)), gk.layers.Dense(2)])
    model.compile(optimizer="sgd", loss=ScaledAbsolute(3.0))
    rng = np.random.default_rng(6)
    return model, rng.normal(size=(8, 3)).astype("float32"), rng.normal(size=(8, 2)).astype("float32")


def graphc_dropout_schedule(gk):
    """Dense, Dropout, Dense; SGD with Nesterov momentum on an ExponentialDecay schedule (no learning-rate
    variable). Dropout draws differ between the frameworks: predictions only."""
    model = gk.models.Sequential([gk.layers.Input((5,)), gk.layers.Dense(6, activation="relu"),
                                  gk.layers.Dropout(0.3), gk.layers.Dense(2, activation="sigmoid")])
    schedule = gk.optimizers.schedules.ExponentialDecay(0.1, decay_steps=3, decay_rate=0.5)
    model.compile(optimizer=gk.optimizers.SGD(schedule, momentum=0.8, nesterov=True), loss="binary_crossentropy")
    rng = np.random.default_rng(5)
    return model, rng.normal(size=(8, 5)).astype("float32"), rng.integers(0, 2, (8, 2)).astype("float32")


def graphc_functional(gk):
    """Two inputs (floats, integer tokens through an Embedding), Add, Concatenate, a layer used twice; Nadam (a
variable of its own after the slots)."""
    layers = gk.layers
    a, b = gk.Input((4,), name="features"), gk.Input((3,), dtype="int32", name="tokens")
    shared = layers.Dense(4, activation="tanh", name="shared")
    x = shared(a)
    e = layers.Dense(4, name="project")(layers.Flatten()(layers.Embedding(10, 2)(b)))
    y = layers.Dense(2, name="head")(layers.Concatenate()([shared(layers.Add()([x, e])), x]))
    model = gk.models.Model([a, b], y, name="two_inputs")
    model.compile(optimizer=gk.optimizers.Nadam(0.01), loss="mse")
    rng = np.random.default_rng(3)
    xs = [rng.normal(size=(8, 4)).astype("float32"), rng.integers(0, 10, (8, 3)).astype("int32")]
    return model, xs, rng.normal(size=(8, 2)).astype("float32")


def graphc_to_keras(make, keras, gk, directory, train_on):
    """Train with graphc, save, load in Keras: same predictions and step count; with ``train_on``, one more
    epoch in each from the saved optimizer state gives the same weights."""
    model, x, y = make(gk)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False)
    path = os.path.join(directory, f"{make.__name__}.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    same_predictions(loaded, model, x)
    assert int(loaded.optimizer.iterations.numpy()) == int(model.optimizer.iterations.value)
    if train_on:
        train_on_alike(loaded, model, x, y)


def same_predictions(keras_model, graphc_model, x):
    np.testing.assert_allclose(np.asarray(keras_model.predict(x, verbose=0)), graphc_model.predict(x, verbose=0),
                               rtol=RTOL, atol=ATOL)


def train_on_alike(keras_model, graphc_model, x, y):
    """One more epoch (same batches) in each framework gives the same weights: the optimizer state was kept."""
    for model in (keras_model, graphc_model):
        model.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    assert len(keras_model.weights) == len(graphc_model.weights)
    for layer in graphc_model.layers:
        theirs = keras_model.get_layer(layer.name).get_weights()
        for mine, value in zip(layer.get_weights(), theirs):
            np.testing.assert_allclose(value, mine, rtol=1e-4, atol=1e-5, err_msg=layer.name)


def keras_models(keras):
    """(name, model, inputs, targets) of Keras 3 models like graphc's."""
    L = keras.layers
    rng = np.random.default_rng(4)
    mlp = keras.Sequential([keras.Input((6,)), L.Dense(9, activation="relu"), L.Dense(3, activation="softmax")],
                           name="keras_mlp")
    mlp.compile(optimizer=keras.optimizers.Adam(0.01), loss="categorical_crossentropy", metrics=["accuracy"])
    convnet = keras.Sequential([
        keras.Input((8, 8, 2)), L.Rescaling(1 / 255), L.Conv2D(4, 3, activation="relu"), L.BatchNormalization(),
        L.MaxPooling2D(), L.Conv2D(3, 2, padding="same"), L.GlobalAveragePooling2D(), L.Dense(5)], name="keras_cnn")
    convnet.compile(optimizer=keras.optimizers.AdamW(0.01, weight_decay=0.01, amsgrad=True),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    a, b = keras.Input((4,), name="features"), keras.Input((3,), dtype="int32", name="tokens")
    shared = L.Dense(4, activation="tanh")
    x = shared(a)
    e = L.Dense(4)(L.Flatten()(L.Embedding(10, 2)(b)))
    functional = keras.Model([a, b], L.Dense(2)(L.Concatenate()([shared(L.Add()([x, e])), x])), name="keras_fn")
    schedule = keras.optimizers.schedules.CosineDecay(0.01, decay_steps=10, alpha=0.1)
    functional.compile(optimizer=keras.optimizers.RMSprop(schedule, momentum=0.3), loss="mse")
    return [("mlp", mlp, rng.normal(size=(32, 6)).astype("float32"),
             np.eye(3, dtype="float32")[rng.integers(0, 3, 32)]),
            ("convnet", convnet, rng.uniform(0, 255, (16, 8, 8, 2)).astype("float32"), rng.integers(0, 5, 16)),
            ("functional", functional, [rng.normal(size=(8, 4)).astype("float32"),
                                        rng.integers(0, 10, (8, 3)).astype("int32")],
             rng.normal(size=(8, 2)).astype("float32"))]


def keras_to_graphc(model, x, y, gk, directory):
    """Train with Keras, save, load in graphc: same predictions, step count and next training epoch."""
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    path = os.path.join(directory, f"{model.name}.keras")
    model.save(path)
    loaded = gk.models.load_model(path)
    same_predictions(model, loaded, x)
    assert int(loaded.optimizer.iterations.value) == int(model.optimizer.iterations.numpy())
    train_on_alike(model, loaded, x, y)


def run(name, check) -> bool:
    try:
        check()
    except Exception:  # noqa: BLE001 -- every failure is reported, then the next case runs
        print(f"FAIL  {name}\n{traceback.format_exc()}", flush=True)
        return False
    print(f"PASS  {name}", flush=True)
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    peers.add_arguments(parser)
    args = parser.parse_args()
    peers.use_peer_venv(args)
    import keras

    import graphc.keras as gk
    print(f"keras {keras.__version__} on {keras.backend.backend()}; graphc from {os.path.dirname(gk.__file__)}")
    keras.utils.set_random_seed(0)
    gk.utils.set_random_seed(0)

    @keras.saving.register_keras_serializable(package="Interop", name="scaled_mse")
    def scaled_mse(y_true, y_pred):  # the Keras twin of graphc_custom_loss's function
        return 2.0 * keras.ops.mean(keras.ops.square(y_true - y_pred), axis=-1)

    @keras.saving.register_keras_serializable(package="Interop")
    class ScaledAbsolute(keras.losses.Loss):  # and of graphc_loss_class's class
        def __init__(self, factor=1.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, y_true, y_pred):
            return self.factor * keras.ops.mean(keras.ops.abs(y_true - y_pred), axis=-1)

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}

    results = []
    with tempfile.TemporaryDirectory() as directory:
        for make, train_on in ((graphc_mlp, True), (graphc_convnet, True), (graphc_custom_loss, True),
                               (graphc_loss_class, True), (graphc_functional, True),
                               (graphc_dropout_schedule, False)):
            results.append(run(f"graphc -> Keras: {make.__name__}",
                               lambda: graphc_to_keras(make, keras, gk, directory, train_on)))
        for name, model, x, y in keras_models(keras):
            results.append(run(f"Keras -> graphc: {name}", lambda: keras_to_graphc(model, x, y, gk, directory)))
    print(f"{sum(results)} of {len(results)} cases passed")
    sys.exit(len(results) - sum(results))


if __name__ == "__main__":
    main()
