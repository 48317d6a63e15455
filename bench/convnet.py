"""Steady epoch time of the MNIST convnet (examples/mnist_convnet.py: the book's model, RMSprop, categorical
cross-entropy, accuracy, batch 64, shuffled) on the 60,000 MNIST training images: graphc.keras against Keras 3
on JAX and PyTorch (eager, eager on channels_last tensors, and torch.compile), on 2 threads, the contenders'
epochs alternating in one process.

    python bench/convnet.py [--epochs 3] [--threads 2] [--quick]

It runs itself in the peers' venv (bench/peers.py, created on first use), on ``--threads`` cores. Every
contender trains its own freshly initialised model. Epoch 1 includes building and compiling it (graphc's
object cache and Inductor's start empty, JAX keeps none on disk): its "overhead" is epoch 1 minus the steady
epoch, the median of the ``--epochs`` epochs after it. Between two contenders the process sleeps a moment,
so the previous one's idle threads stop spinning. PyTorch's model ends in logits and takes CrossEntropyLoss
(the softmax inside the loss, as PyTorch programs write it); its RMSprop has Keras' defaults (rho 0.9,
epsilon 1e-7).
``--quick`` trains on 2,048 images for 1 + 1 epochs: a smoke test (about 2 minutes, most of it
torch.compile compiling), not a measurement.
"""
import argparse
import os
import statistics
import tempfile
import time

import numpy as np

import peers

BATCH = 64
SETTLE_SECONDS = 0.5
# Multiply-adds of one image's forward pass, times 2: three 3x3 convolutions and two dense layers.
FORWARD_FLOPS = 2 * (26 * 26 * 32 * 9 * 1 + 11 * 11 * 64 * 9 * 32 + 3 * 3 * 64 * 9 * 64 + 576 * 64 + 64 * 10)


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    peers.add_arguments(parser)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per contender after the first (default 3)")
    parser.add_argument("--quick", action="store_true", help="2,048 images, 1 steady epoch: a smoke test")
    return parser.parse_args()


def mnist_data(samples):
    from graphc.keras.datasets import mnist
    from graphc.keras.utils import to_categorical

    (images, labels), _ = mnist.load_data()
    images = images[:samples].reshape((-1, 28, 28, 1)).astype("float32") / 255
    return images, to_categorical(labels[:samples]), labels[:samples].astype(np.int64)


# ---- contenders: each trains one epoch per call and returns that epoch's mean loss and accuracy ------------
def keras_layers(layers):
    """The book's convnet, from graphc.keras's or Keras' layers module."""
    return [layers.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)), layers.MaxPooling2D((2, 2)),
            layers.Conv2D(64, (3, 3), activation="relu"), layers.MaxPooling2D((2, 2)),
            layers.Conv2D(64, (3, 3), activation="relu"), layers.Flatten(), layers.Dense(64, activation="relu"),
            layers.Dense(10, activation="softmax")]


def keras_epochs(keras_module, x, y):
    """One epoch per call of ``fit`` on a Keras-style Sequential model: graphc.keras or Keras 3."""
    model = keras_module.models.Sequential(keras_layers(keras_module.layers))
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])

    def epoch():
        history = model.fit(x, y, epochs=1, batch_size=BATCH, verbose=0).history
        return history["loss"][-1], history["accuracy"][-1]
    return epoch


def torch_epochs(x, labels, channels_last=False, compiled=False):
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Conv2d(64, 64, 3), nn.ReLU(), nn.Flatten(), nn.Linear(576, 64),
                          nn.ReLU(), nn.Linear(64, 10))
    images = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=0.001, alpha=0.9, eps=1e-7)
    forward = torch.compile(model) if compiled else model
    loss_function, targets = nn.CrossEntropyLoss(), torch.from_numpy(labels)

    def epoch():
        order, losses, correct = torch.randperm(len(images)), [], 0
        for start in range(0, len(images), BATCH):
            batch = order[start:start + BATCH]
            logits = forward(images[batch])
            loss = loss_function(logits, targets[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            correct += int((logits.argmax(1) == targets[batch]).sum())  # the accuracy Keras reports as it trains
        return statistics.fmean(losses), correct / len(images)
    return epoch


def main():
    args = parse_arguments()
    peers.use_peer_venv(args)
    caches = tempfile.TemporaryDirectory()
    os.environ.update(GRAPHC_CACHE_DIR=os.path.join(caches.name, "graphc"),
                      TORCHINDUCTOR_CACHE_DIR=os.path.join(caches.name, "inductor"))
    import keras
    import torch

    import graphc.keras
    torch.set_num_threads(args.threads)

    samples, steady_epochs = (2048, 1) if args.quick else (60000, args.epochs)
    x, y, labels = mnist_data(samples)
    contenders = {"graphc": lambda: keras_epochs(graphc.keras, x, y),
                  "Keras 3 / JAX": lambda: keras_epochs(keras, x, y),
                  "torch eager": lambda: torch_epochs(x, labels),
                  "torch eager NHWC": lambda: torch_epochs(x, labels, channels_last=True),
                  "torch.compile": lambda: torch_epochs(x, labels, compiled=True)}
    epochs, seconds, last = {}, {name: [] for name in contenders}, {}
    for _ in range(1 + steady_epochs):  # the contenders take turns, one epoch each
        for name, make in contenders.items():
            time.sleep(SETTLE_SECONDS)
            start = time.perf_counter()
            if name not in epochs:  # epoch 1 includes building and compiling the model
                epochs[name] = make()
            last[name] = epochs[name]()
            seconds[name].append(time.perf_counter() - start)

    print(f"{peers.versions()}; {args.threads} threads; {samples:,} images, batch {BATCH}; "
          f"about {3 * FORWARD_FLOPS * samples / 1e12:.2f} TFLOP an epoch")
    steady = {name: statistics.median(times[1:]) for name, times in seconds.items()}
    fastest_peer = min(time for name, time in steady.items() if name != "graphc")
    print(f"{'':18} {'steady epoch':>12} {'GFLOP/s':>8} {'peer/graphc':>11} {'epoch 1':>8} {'overhead':>8} "
          f"{'last loss, accuracy':>19}   epochs (s)")
    for name, times in seconds.items():
        print(f"{name:18} {steady[name]:10.2f} s {3 * FORWARD_FLOPS * samples / steady[name] / 1e9:8.1f} "
              f"{steady[name] / steady['graphc']:10.2f}x {times[0]:6.2f} s {times[0] - steady[name]:6.2f} s "
              f"{last[name][0]:10.4f}, {last[name][1]:.4f}   {', '.join(f'{t:.2f}' for t in times)}")
    print(f"graphc is {fastest_peer / steady['graphc']:.2f}x as fast as the fastest peer")


if __name__ == "__main__":
    main()
