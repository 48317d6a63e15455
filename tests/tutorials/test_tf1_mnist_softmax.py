"""TensorFlow 1's "MNIST For ML Beginners" (softmax regression), ported by replacing names only:
tf.placeholder(tf.float32, [None, 784]) -> gc.placeholder((None, 784), "float32") (graphc's argument order),
tf.Variable(tf.zeros(...)) -> gc.variable(numpy.zeros(...)), tf.nn.softmax -> gc.softmax, tf.reduce_sum(...,
reduction_indices=[1]) -> gc.sum(..., axis=1), tf.reduce_mean -> gc.mean, GradientDescentOptimizer(0.5) ->
updates W - 0.5 * dW, sess.run -> gc.function. Until None dims unified (issue 10), ``y_ * tf.log(y)`` was
refused: y's batch dim comes from x's None and y_'s from its own. The tutorial reaches about 92%.

Skipped when MNIST cannot be loaded (as tests/keras/test_mnist_end_to_end.py)."""
import numpy
import pytest

import graphc as gc
from graphc.keras.datasets import mnist as mnist_dataset


class _DataSet:
    """mnist.train / mnist.test of TF's input_data (one_hot=True): float images in [0, 1], next_batch
    shuffling once per epoch."""

    def __init__(self, images, labels, seed=0):
        self.images = images.reshape(len(images), 784).astype(numpy.float32) / 255
        self.labels = numpy.eye(10, dtype=numpy.float32)[labels]
        self._rng = numpy.random.RandomState(seed)
        self._order, self._position = self._rng.permutation(len(self.images)), 0

    def next_batch(self, batch_size):
        if self._position + batch_size > len(self._order):
            self._order, self._position = self._rng.permutation(len(self.images)), 0
        chosen = self._order[self._position:self._position + batch_size]
        self._position += batch_size
        return self.images[chosen], self.labels[chosen]


@pytest.fixture(scope="module")
def mnist():
    try:
        (train_images, train_labels), (test_images, test_labels) = mnist_dataset.load_data()
    except RuntimeError as error:
        pytest.skip(f"MNIST is not available here: {error}")

    class Datasets:
        train = _DataSet(train_images, train_labels)
        test = _DataSet(test_images, test_labels)
    return Datasets


def test_the_tf1_mnist_softmax_tutorial_reaches_its_accuracy(mnist):
    x = gc.placeholder((None, 784), "float32")
    W = gc.variable(numpy.zeros((784, 10), numpy.float32))
    b = gc.variable(numpy.zeros((10,), numpy.float32))
    y = gc.softmax(gc.matmul(x, W) + b)
    y_ = gc.placeholder((None, 10), "float32")
    cross_entropy = gc.mean(-gc.sum(y_ * gc.log(y), axis=1))
    dW, db = gc.grad(cross_entropy, [W, b])
    train_step = gc.function([x, y_], cross_entropy, updates={W: W - 0.5 * dW, b: b - 0.5 * db})

    for _ in range(1000):
        batch_xs, batch_ys = mnist.train.next_batch(100)
        train_step(batch_xs, batch_ys)

    correct_prediction = gc.equal(gc.argmax(y, 1), gc.argmax(y_, 1))
    accuracy = gc.mean(gc.cast(correct_prediction, "float32"))
    test_accuracy = gc.function([x, y_], accuracy)(mnist.test.images, mnist.test.labels)
    assert test_accuracy >= 0.90, test_accuracy  # the tutorial: "about 92%" (0.9186 here)
    # One program serves every batch size, and the two None batches must agree when fed.
    batch_xs, _ = mnist.train.next_batch(100)
    _, fewer_ys = mnist.train.next_batch(99)
    with pytest.raises(ValueError, match=r"input placeholder_\d+ \(\?\d+, 10\): axis 0 has size 99, but input "
                                         r"placeholder_\d+ has size 100 on axis 0"):
        train_step(batch_xs, fewer_ys)
