"""The seed program (Keras' MNIST example) on graphc: one epoch on the real data reaches Keras' accuracy.

Slow-ish (a few seconds, most of it compiling); skipped when MNIST cannot be loaded.
"""
import numpy as np
import pytest

from graphc.keras import layers, models
from graphc.keras.datasets import mnist
from graphc.keras.utils import set_random_seed, to_categorical


@pytest.fixture(scope="module")
def mnist_data():
    try:
        (train_images, train_labels), (test_images, test_labels) = mnist.load_data()
    except RuntimeError as error:
        pytest.skip(f"MNIST is not available here: {error}")
    train_images = train_images.reshape((60000, 28 * 28)).astype("float32") / 255
    test_images = test_images.reshape((10000, 28 * 28)).astype("float32") / 255
    return (train_images, to_categorical(train_labels)), (test_images, to_categorical(test_labels))


def test_one_epoch_of_the_seed_model_reaches_95_percent(mnist_data):
    (train_images, train_labels), (test_images, test_labels) = mnist_data
    set_random_seed(0)
    network = models.Sequential()
    network.add(layers.Dense(512, activation="relu", input_shape=(28 * 28,)))
    network.add(layers.Dense(10, activation="softmax"))
    network.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])

    history = network.fit(train_images, train_labels, epochs=1, batch_size=128, verbose=0)
    test_loss, test_acc = network.evaluate(test_images, test_labels, verbose=0)

    assert history.history["accuracy"][0] > 0.88
    assert test_acc >= 0.95
    assert test_loss < 0.2
    predicted = network.predict(test_images[:1000], verbose=0).argmax(-1)
    assert np.mean(predicted == test_labels[:1000].argmax(-1)) >= 0.93
