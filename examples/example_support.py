"""What the examples add to the Keras programs: their optional command-line arguments and a callback printing
how long each epoch took."""
import argparse
import time

from graphc.keras.callbacks import Callback
from graphc.keras.utils import set_random_seed


def example_arguments(doc, samples=False):
    """--epochs (default 5), --seed (then set_random_seed) and, with ``samples``, --samples N (train on the first N
    training images for a quick run); ``doc`` is the example's docstring, whose first line describes it."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible training")
    if samples:
        parser.add_argument("--samples", type=int, default=60000, help="train on the first N training images")
    args = parser.parse_args()
    if args.seed is not None:
        set_random_seed(args.seed)
    return args


class EpochTimer(Callback):
    """Prints how long each epoch took."""

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        print(f"epoch {epoch + 1}: {time.perf_counter() - self.start:.2f} s")
