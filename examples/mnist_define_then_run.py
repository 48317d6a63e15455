"""The Keras MNIST model written with graphc's low-level API: placeholders, variables, gc.grad, and one
gc.function whose updates are RMSprop as graph nodes (Keras 3's rule, ``rmsprop_updates`` in
graphc/viz/examples.py), driven by runtime.loop.fit_loop.

    python examples/mnist_define_then_run.py [--epochs 5] [--seed 0]
"""
import argparse

import numpy as np

import graphc as gc
from graphc.keras.datasets import mnist
from graphc.viz.examples import glorot_uniform, rmsprop_updates
from runtime.loop import evaluate_loop, fit_loop


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    (train_images, train_labels), (test_images, test_labels) = mnist.load_data()
    train_images = train_images.reshape((60000, 28 * 28)).astype("float32") / 255
    test_images = test_images.reshape((10000, 28 * 28)).astype("float32") / 255

    # The model: Dense(512, relu) then Dense(10, softmax), on a batch of any size.
    x = gc.placeholder(("batch", 784), name="images")
    labels = gc.placeholder(("batch",), dtype="int64", name="labels")
    w1 = gc.variable(glorot_uniform(rng, 784, 512), name="w1")
    b1 = gc.variable(np.zeros(512, dtype=np.float32), name="b1")
    w2 = gc.variable(glorot_uniform(rng, 512, 10), name="w2")
    b2 = gc.variable(np.zeros(10, dtype=np.float32), name="b2")
    hidden = gc.relu(x @ w1 + b1)
    probabilities = gc.softmax(hidden @ w2 + b2)

    loss = gc.mean(gc.sparse_categorical_crossentropy(labels, probabilities))
    accuracy = gc.mean(gc.cast(gc.equal(gc.argmax(probabilities), labels), "float32"))
    params = [w1, b1, w2, b2]
    train = gc.function([x, labels], [loss, accuracy], updates=rmsprop_updates(params, gc.grad(loss, params)))
    evaluate = gc.function([x, labels], [loss, accuracy])

    def as_step(function):
        def step(xb, yb):
            batch_loss, batch_accuracy = function(xb, yb)
            return {"loss": float(batch_loss), "accuracy": float(batch_accuracy)}
        return step

    fit_loop(as_step(train), train_images, train_labels, epochs=args.epochs, batch_size=128, seed=args.seed)
    results = evaluate_loop(as_step(evaluate), test_images, test_labels, batch_size=128, verbose=0)
    print("test_acc:", results["accuracy"])


if __name__ == "__main__":
    main()
