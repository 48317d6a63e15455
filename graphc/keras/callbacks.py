"""Keras callbacks: the training runtime's own (``runtime.loop``) under their Keras names, and the Keras 3 callbacks
that need a model with an optimizer (``ReduceLROnPlateau``, ``LearningRateScheduler``) or are front-end conveniences.

``fit`` calls the hooks of ``runtime.loop.Callback``: ``on_train_begin/end``, ``on_epoch_begin/end`` and Keras 3's
``on_train_batch_begin/end``, which call ``on_batch_begin/end`` unless overridden (a callback with either makes fit
run one step a native call, so it sees every batch); the logs of ``on_epoch_end`` are one dict that every
callback sees in turn, so a key a callback adds (``learning_rate``) reaches the ``History`` that fit appends last.
"""
import csv
import inspect
import io
import os
from collections.abc import Iterable

import numpy as np

from runtime.loop import Callback, EarlyStopping, History, ModelCheckpoint, _improvement_test, _monitored_value

__all__ = ["CSVLogger", "Callback", "EarlyStopping", "History", "LambdaCallback", "LearningRateScheduler",
           "ModelCheckpoint", "ProgbarLogger", "ReduceLROnPlateau", "TerminateOnNaN"]


class ReduceLROnPlateau(Callback):
    """Multiply the optimizer's learning rate by ``factor`` once ``monitor`` has not improved for ``patience`` epochs.

    Keras 3's rule, epoch by epoch: during ``cooldown`` epochs after a reduction the wait counter stays 0; a value
    better than the best so far by more than ``min_delta`` resets it; any other epoch (outside cooldown) adds one,
    and when it reaches ``patience`` the rate becomes ``max(lr * factor, min_lr)`` unless it is already at
    ``min_lr``. A NaN or infinite value never counts as an improvement, and ``mode="auto"`` picks the direction from
    the name as EarlyStopping does. Every epoch's logs get ``learning_rate`` (the rate that epoch trained with).
    ``verbose=1`` prints a line for each reduction. Setting the rate writes the optimizer's learning-rate variable: nothing is recompiled.
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0):
        super().__init__()
        if not 0 <= factor < 1:
            raise ValueError(f"ReduceLROnPlateau: factor must be in [0, 1) (the new rate is lr * factor), "
                             f"got factor={factor!r}")
        _check_non_negative("ReduceLROnPlateau", patience=patience, cooldown=cooldown, min_lr=min_lr)
        self.monitor, self.factor, self.patience, self.verbose = monitor, factor, patience, verbose
        self.cooldown, self.min_lr = cooldown, min_lr
        self._improved, self._worst = _improvement_test(monitor, mode, min_delta)

    def on_train_begin(self, logs=None):
        _optimizer_of(self.model, "ReduceLROnPlateau")
        self.best, self.wait, self.cooldown_counter = self._worst, 0, 0

    def on_epoch_end(self, epoch, logs=None):
        optimizer = self.model.optimizer
        logs["learning_rate"] = optimizer.learning_rate
        current = _monitored_value(logs, self.monitor, "ReduceLROnPlateau")
        if current is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improved(current, self.best):
            self.best, self.wait = current, 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience and self._reduce(optimizer, epoch):
                self.cooldown_counter, self.wait = self.cooldown, 0

    def _reduce(self, optimizer, epoch):
        """Lower the rate unless it is at min_lr already (compared in float32, the variable's type, as Keras)."""
        old = optimizer.learning_rate
        if not old > np.float32(self.min_lr):
            return False
        new = max(old * self.factor, self.min_lr)
        optimizer.learning_rate = new
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}.")
        return True


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate at the start of every epoch to ``schedule(epoch, lr)`` (``epoch`` counts from
    0, ``lr`` is the current rate); a ``schedule(epoch)`` of one argument works too, as in Keras. The schedule must
    return a float (ValueError otherwise, as Keras). Every epoch's logs get ``learning_rate``; ``verbose=1`` prints
    the rate set at each epoch."""

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler: schedule must be a function (epoch, lr) -> lr, "
                            f"got {type(schedule).__name__}")
        self.schedule, self.verbose = schedule, verbose
        self._passes_rate = _accepts_two_arguments(schedule)

    def on_train_begin(self, logs=None):
        _optimizer_of(self.model, "LearningRateScheduler")

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        rate = self.schedule(epoch, optimizer.learning_rate) if self._passes_rate else self.schedule(epoch)
        if not isinstance(rate, (float, np.floating)):
            raise ValueError(f"LearningRateScheduler: schedule must return a float learning rate, got {rate!r} "
                             f"({type(rate).__name__}) for epoch {epoch}")
        optimizer.learning_rate = rate
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {rate}.")

    def on_epoch_end(self, epoch, logs=None):
        logs["learning_rate"] = self.model.optimizer.learning_rate


class CSVLogger(Callback):
    """Append one row per epoch to the CSV file ``filename``, as Keras 3 writes it.

    The columns are ``epoch`` (counting from 0) and the first epoch's log names sorted; when those include no
    ``val_`` name, a ``val_`` column per name follows (filled with ``NA``), as Keras does. ``append=False`` empties
    the file when training begins; ``append=True`` keeps it and writes the header only into an empty or new file.
    Each row (the first one with the header) goes to the file in one write, flushed and fsync'd at once, so a
    crash never leaves half a row and every finished epoch is on disk. A bad path fails when training begins.
    """

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        if not (isinstance(separator, str) and len(separator) == 1):
            raise ValueError(f"CSVLogger: separator must be a single character, got separator={separator!r}")
        self.filename, self.separator, self.append = os.fspath(filename), separator, append

    def on_train_begin(self, logs=None):
        self._header_due = not (self.append and os.path.isfile(self.filename) and os.path.getsize(self.filename))
        open(self.filename, "ab" if self.append else "wb").close()  # a bad path fails now, not after an epoch
        self._keys = None

    def on_epoch_end(self, epoch, logs=None):
        rows = []
        if self._keys is None:
            self._keys = sorted(logs)
            if self._keys and not any(key.startswith("val_") for key in self._keys):
                self._keys += [f"val_{key}" for key in self._keys]
            if self._header_due:
                rows.append(["epoch", *self._keys])
        rows.append([epoch, *(_csv_cell(logs.get(key, "NA")) for key in self._keys)])
        text = io.StringIO()
        csv.writer(text, delimiter=self.separator).writerows(rows)
        # Opened per row, so no file stays open when training ends by an exception.
        with open(self.filename, "ab") as f:
            f.write(text.getvalue().encode())
            f.flush()
            os.fsync(f.fileno())


class TerminateOnNaN(Callback):
    """Accepted so that Keras programs run unchanged; it adds nothing to graphc's own rule, which always applies.

    Keras' TerminateOnNaN stops training quietly after a batch whose loss is NaN or infinite (``fit`` returns
    normally, keeping the NaN weights), or raises RuntimeError with ``raise_error=True``. graphc's ``fit`` never
    continues or returns after a non-finite loss, with or without this callback: it stops at that batch, puts back
    the weights and optimizer state from the start of the epoch (the last ones whose epoch ended finite), calls
    ``on_train_end`` with ``logs["stopped_on_nan"] = True`` and raises ``runtime.loop.NonFiniteLossError`` (a
    FloatingPointError); weights or optimizer variables that an epoch leaves NaN or infinite while the loss stayed
    finite raise NonFiniteWeightsError the same way. ``raise_error`` is accepted for Keras' signature only.
    """

    def __init__(self, raise_error=False):
        super().__init__()
        self.raise_error = raise_error


class LambdaCallback(Callback):
    """A callback made of the given functions, as Keras' LambdaCallback: ``on_epoch_begin(epoch, logs)``,
    ``on_epoch_end(epoch, logs)``, ``on_batch_begin(batch, logs)``, ``on_batch_end(batch, logs)`` (Keras 3 also
    spells these two ``on_train_batch_begin/end``), ``on_train_begin(logs)``, ``on_train_end(logs)``; the hooks
    not given do nothing."""

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_batch_begin=None, on_batch_end=None,
                 on_train_begin=None, on_train_end=None, on_train_batch_begin=None, on_train_batch_end=None):
        super().__init__()
        hooks = {"on_epoch_begin": on_epoch_begin, "on_epoch_end": on_epoch_end, "on_batch_begin": on_batch_begin,
                 "on_batch_end": on_batch_end, "on_train_begin": on_train_begin, "on_train_end": on_train_end}
        for name, keras_name, function in (("on_batch_begin", "on_train_batch_begin", on_train_batch_begin),
                                           ("on_batch_end", "on_train_batch_end", on_train_batch_end)):
            if function is not None:
                if hooks[name] is not None:
                    raise ValueError(f"LambdaCallback: give {name} or {keras_name}, not both (they are the same hook)")
                hooks[name] = function
        for name, function in hooks.items():
            if function is not None:
                if not callable(function):
                    raise TypeError(f"LambdaCallback: {name} must be a function, got {type(function).__name__}")
                setattr(self, name, function)


class ProgbarLogger(Callback):
    """Keras' progress-bar callback, accepted so that Keras programs run unchanged; it prints nothing itself.

    graphc's ``fit`` prints the progress bar (``runtime.progress``) as its ``verbose`` says: 1 a bar per epoch, 2 one
    line per epoch, 0 nothing. That is what a ProgbarLogger in Keras 3's ``callbacks=`` does too: it takes the place
    of the one ``fit`` adds and prints as ``fit``'s ``verbose`` says (nothing with ``verbose=0``), so with or without
    it the output is the same. Unlike Keras, an epoch's final progress line is written before the callbacks'
    ``on_epoch_end`` (so what they print starts on its own line), so keys they add there (``learning_rate``) are in
    the History but not on that line.
    """


def _optimizer_of(owner, who):
    """The owner's optimizer; ValueError unless it has a ``learning_rate`` to read and set."""
    optimizer = getattr(owner, "optimizer", None)
    if not hasattr(optimizer, "learning_rate"):
        raise ValueError(f"{who} needs a model compiled with an optimizer that has a learning_rate; "
                         f"{type(owner).__name__}.optimizer is {type(optimizer).__name__}")
    return optimizer


def _check_non_negative(who, **values):
    for name, value in values.items():
        if value < 0:
            raise ValueError(f"{who}: {name} must be >= 0, got {name}={value!r}")


def _accepts_two_arguments(function):
    """Whether ``function(epoch, lr)`` binds (Keras' current schedule API) rather than only ``function(epoch)``."""
    try:
        inspect.signature(function).bind(0, 0.0)
    except TypeError:
        return False
    except ValueError:  # no signature to inspect (some builtins): assume the current API
        return True
    return True


def _csv_cell(value):
    """A log value as Keras' CSVLogger writes it: strings and numbers as they are, other iterables as "[a, b]"."""
    if isinstance(value, str) or not isinstance(value, Iterable) or (
            isinstance(value, np.ndarray) and value.ndim == 0):
        return value
    return f'"[{", ".join(map(str, value))}]"'
