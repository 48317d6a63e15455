"""Writes the Keras-3-made .keras files that tests/keras/test_keras_format.py loads with graphc, and next to
each a .npz of a fixed input ("x", or "x0", "x1", ... for several inputs), Keras' predictions for it ("y") and the
optimizer's step count ("iterations"). Run it in the benchmarks' venv, which has Keras 3 (bench/peers.py makes it):

    KERAS_BACKEND=jax bench/.venv/bin/python tests/keras/data/make_keras_files.py
"""
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


@keras.saving.register_keras_serializable(package="Custom", name="scaled_mse")
def scaled_mse(y_true, y_pred):
    return 2.0 * keras.ops.mean(keras.ops.square(y_true - y_pred), axis=-1)


def mlp():
    """Dense, Dropout, Dense softmax; Adam, categorical crossentropy, accuracy."""
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(7, activation="relu"),
                              keras.layers.Dropout(0.25), keras.layers.Dense(3, activation="softmax")], name="mlp")
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(1)
    x = rng.normal(size=(13, 5)).astype("float32")
    return model, [x], np.eye(3, dtype="float32")[rng.integers(0, 3, 13)]


def convnet():
    """Rescaling, Conv2D, BatchNormalization, the poolings, Flatten, Dense logits; SGD with momentum and a
    SparseCategoricalCrossentropy(from_logits=True) loss object."""
    model = keras.Sequential([
        keras.Input((7, 7, 2)), keras.layers.Rescaling(1 / 255), keras.layers.Conv2D(3, 3, activation="relu"),
        keras.layers.BatchNormalization(), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(2, 2, padding="same", strides=1), keras.layers.AveragePooling2D(2, padding="same"),
        keras.layers.Flatten(), keras.layers.Dense(4)], name="convnet")
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(2)
    return model, [rng.uniform(0, 255, (9, 7, 7, 2)).astype("float32")], rng.integers(0, 4, 9)


def functional():
    """Two inputs (floats, and integer tokens through an Embedding), Add, Concatenate, a layer used twice;
    RMSprop and a registered custom loss."""
    a = keras.Input((4,), name="features")
    b = keras.Input((3,), dtype="int32", name="tokens")
    shared = keras.layers.Dense(4, activation="tanh", name="shared")
    x = shared(a)
    e = keras.layers.Dense(4, name="project")(keras.layers.Flatten()(keras.layers.Embedding(10, 2)(b)))
    s = shared(keras.layers.Add()([x, e]))
    y = keras.layers.Dense(2, name="head")(keras.layers.Concatenate()([s, x]))
    model = keras.Model([a, b], y, name="two_inputs")
    model.compile(optimizer=keras.optimizers.RMSprop(0.01), loss=scaled_mse)
    rng = np.random.default_rng(3)
    xs = [rng.normal(size=(6, 4)).astype("float32"), rng.integers(0, 10, (6, 3)).astype("int32")]
    return model, xs, rng.normal(size=(6, 2)).astype("float32")


def main():
    keras.utils.set_random_seed(0)
    for make in (mlp, convnet, functional):
        model, xs, y = make()
        model.fit(xs if len(xs) > 1 else xs[0], y, epochs=2, batch_size=4, verbose=0)
        model.save(os.path.join(HERE, f"{make.__name__}.keras"))
        inputs = {"x": xs[0]} if len(xs) == 1 else {f"x{i}": x for i, x in enumerate(xs)}
        prediction = model.predict(xs if len(xs) > 1 else xs[0], verbose=0)
        np.savez(os.path.join(HERE, f"{make.__name__}.npz"), y=prediction,
                 iterations=int(model.optimizer.iterations.numpy()), **inputs)
        print(f"{make.__name__}.keras ({os.path.getsize(os.path.join(HERE, make.__name__ + '.keras'))} bytes)")


if __name__ == "__main__":
    main()
