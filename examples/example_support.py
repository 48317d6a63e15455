"""What the examples add to the Keras programs: their optional command-line arguments and a callback printing
how long each epoch took."""
import argparse
import os
import sys
import time

from graphc import distributed
from graphc.keras import distribution, mixed_precision
from graphc.keras.callbacks import Callback
from graphc.keras.utils import set_random_seed


def example_arguments(doc, samples=False):
    """--epochs (default 5), --seed (then set_random_seed), --distributed (data-parallel training over the processes
    mpiexec started), --mixed-bfloat16 (Keras' mixed_bfloat16 policy) and, with ``samples``, --samples N (train on
    the first N training images for a quick run); ``doc`` is the example's docstring, whose first line describes it."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible training")
    if samples:
        parser.add_argument("--samples", type=int, default=60000, help="train on the first N training images")
    parser.add_argument("--distributed", action="store_true",
                        help="train on every process of `mpiexec -n N` (graphc.keras.distribution.DataParallel); "
                             "only rank 0 prints")
    parser.add_argument("--mixed-bfloat16", action="store_true",
                        help="keras.mixed_precision.set_global_policy('mixed_bfloat16'): bfloat16 products, float32 "
                             "weights")
    args = parser.parse_args()
    if args.mixed_bfloat16:
        mixed_precision.set_global_policy("mixed_bfloat16")
    if args.distributed:
        distribution.set_distribution(distribution.DataParallel())
        if distributed.rank() != 0:
            sys.stdout = open(os.devnull, "w")  # the other processes' lines would repeat rank 0's
    if args.seed is not None:
        set_random_seed(args.seed)
    return args


class EpochTimer(Callback):
    """Prints how long each epoch took."""

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        print(f"epoch {epoch + 1}: {time.perf_counter() - self.start:.2f} s")
