"""The callback the examples add to the Keras programs: it prints how long each epoch took."""
import time

from graphc.keras.callbacks import Callback


class EpochTimer(Callback):
    """Prints how long each epoch took."""

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        print(f"epoch {epoch + 1}: {time.perf_counter() - self.start:.2f} s")
