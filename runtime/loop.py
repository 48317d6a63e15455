"""The training loop, independent of how a step is computed.

A step is any callable ``step(xb, yb) -> dict[str, float]`` returning metrics
averaged over the batch (e.g. ``{"loss": 0.31, "accuracy": 0.9}``). The loop
batches and shuffles the data, averages step metrics over each epoch weighted
by batch size (so a short last batch counts for what it holds), runs
validation, drives callbacks and prints progress.

``x`` and ``y`` are numpy arrays, or lists/tuples of arrays for models with
several inputs/outputs; all arrays share their first (sample) dimension.

The *owner* is the object callbacks see as ``self.model`` (normally the Keras
model). The loop sets ``owner.stop_training = False`` before training and
stops after the current batch once a callback sets it to True. Callbacks may
need more from it: ``EarlyStopping(restore_best_weights=True)`` calls
``owner.get_weights()`` (a list of arrays) / ``owner.set_weights(w)`` and
``ModelCheckpoint`` calls ``owner.save(path)`` or ``owner.save_weights(path)``.

A NaN or infinite ``loss`` ends training: callbacks get ``on_train_end`` with
``logs["stopped_on_nan"] = True`` (plus ``epoch``, ``batch`` and ``loss``) --
the place for an owner to restore its last good weights -- and then
``fit_loop`` raises NonFiniteLossError. ``EarlyStopping`` with
``restore_best_weights=True`` restores the best weights at that point too.

Many batches can also run in one call: with ``fit_loop``'s ``train_steps`` hook (see there) an epoch's
batches of arrays run natively in chunks, with the same numbers and the same NaN rule.

A step can also write NaN/inf weights while its loss stays finite (the loss
is computed before the update, e.g. with a huge learning rate), or overflow an
optimizer's state while the weights stay finite (Adam's velocity at inf makes
every update 0: training silently freezes). So the loop checks the owner's
training state at the end of every epoch, before any callback sees that epoch
(so before ModelCheckpoint saves and before fit_loop returns): the
``(name, array)`` pairs of ``owner.state_arrays()`` (weights and optimizer
variables), or else ``owner.get_weights()`` (named "weight 0", "weight 1",
...). A non-finite array ends training the same way, with ``logs["variable"]``
(its name) instead of ``batch``/``loss``, and then NonFiniteWeightsError.
"""

import itertools
import math
import os
import time
import types
import warnings

import numpy as np

from .progress import ProgressBar, write_epoch_header


class NonFiniteLossError(FloatingPointError):
    """Training stopped because the loss became NaN or infinite.

    ``epoch`` and ``batch`` are 0-based; the message uses 1-based numbers as
    the progress output does. ``history`` holds the completed epochs.
    """

    def __init__(self, loss, epoch, epochs, batch, steps, history):
        super().__init__(
            f"loss became {loss} at epoch {epoch + 1}/{epochs}, batch {batch + 1}/{steps or '?'}; "
            "training stopped (the weights were updated by this batch)")
        self.loss = loss
        self.epoch = epoch
        self.batch = batch
        self.history = history


class NonFiniteWeightsError(FloatingPointError):
    """Training stopped because a weight or optimizer variable became NaN or infinite while every loss was finite.

    ``epoch`` is 0-based, ``variable`` the array's name (see the module
    docstring); ``history`` holds the completed epochs.
    """

    def __init__(self, variable, epoch, epochs, history):
        super().__init__(
            f"{variable} became NaN or infinite in epoch {epoch + 1}/{epochs} although every batch's loss was "
            "finite (an update overflowed: are the learning rate or the gradients too large?); training stopped")
        self.variable = variable
        self.epoch = epoch
        self.history = history


class _NonFiniteLoss(Exception):
    """Raised inside an epoch; fit_loop turns it into NonFiniteLossError."""

    def __init__(self, loss, batch):
        super().__init__(loss, batch)
        self.loss = loss
        self.batch = batch


# --------------------------------------------------------------------------
# Callbacks


class Callback:
    """Base class: override the hooks you need. ``logs`` is always a dict."""

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_batch_begin(self, batch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass

    def on_train_batch_begin(self, batch, logs=None):
        """Keras 3's name for the hook before a training batch: ``on_batch_begin`` unless overridden, as in Keras."""
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        """Keras 3's name for the hook after a training batch: ``on_batch_end`` unless overridden, as in Keras."""
        self.on_batch_end(batch, logs)


class History(Callback):
    """Records the logs of every epoch: ``history[name]`` lists one value per epoch."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for name, value in logs.items():
            self.history.setdefault(name, []).append(value)


class EarlyStopping(Callback):
    """Stop training when ``monitor`` has stopped improving.

    As in Keras, training stops once ``patience`` consecutive epochs (at
    least one) brought no improvement larger than ``min_delta``. With
    ``restore_best_weights=True`` the owner's weights from the best epoch are
    put back when training ends, however it ends.
    """

    def __init__(self, monitor="val_loss", patience=0, min_delta=0, mode="auto",
                 restore_best_weights=False):
        super().__init__()
        self.monitor = monitor
        self.patience = patience
        self.restore_best_weights = restore_best_weights
        self._improved, self._worst = _improvement_test(monitor, mode, min_delta)

    def on_train_begin(self, logs=None):
        if self.restore_best_weights:
            _require_owner_methods(self.model, "EarlyStopping(restore_best_weights=True)",
                                   "get_weights", "set_weights")
        self.wait = 0
        self.best = self._worst
        self.best_epoch = None
        self.best_weights = None
        self.stopped_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored_value(logs, self.monitor, "EarlyStopping")
        if current is None:
            return
        if self._improved(current, self.best):
            self.best = current
            self.best_epoch = epoch
            self.wait = 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the owner after every epoch, or only when ``monitor`` improved.

    ``filepath`` may contain ``str.format`` fields: ``{epoch}`` (1-based) and
    any log name, e.g. ``"ckpt-{epoch:02d}-{val_loss:.3f}.npz"``. Saving calls
    ``owner.save(path)``, or ``owner.save_weights(path)`` when
    ``save_weights_only=True``. A missing directory is an error when training
    begins, not after the first epoch.

    A checkpoint never holds NaN or infinite weights or optimizer state: a
    NaN/inf monitored value never counts as an improvement, and when the
    owner's state (as fit_loop checks it) holds a non-finite value the save is
    skipped with a RuntimeWarning (a good earlier file is kept). fit_loop checks
    before the callbacks run, so this happens only when an earlier callback
    changed the state after that check.
    """

    def __init__(self, filepath, monitor="val_loss", save_best_only=False,
                 save_weights_only=False, mode="auto"):
        super().__init__()
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.save_best_only = save_best_only
        self.save_method = "save_weights" if save_weights_only else "save"
        self._improved, self._worst = _improvement_test(monitor, mode, 0)

    def on_train_begin(self, logs=None):
        _require_owner_methods(self.model, "ModelCheckpoint", self.save_method)
        directory = os.path.dirname(self.filepath)
        if directory and "{" not in directory and not os.path.isdir(directory):
            raise FileNotFoundError(f"ModelCheckpoint: there is no directory {directory} to save "
                                    f"{self.filepath} in; create it first")
        self.best = self._worst

    def on_epoch_end(self, epoch, logs=None):
        current = None
        if self.save_best_only:
            current = _monitored_value(logs, self.monitor, "ModelCheckpoint")
            if current is None or not self._improved(current, self.best):
                return
        path = self.filepath.format(epoch=epoch + 1, **logs)
        bad = _non_finite_variable(self.model)
        if bad is not None:
            warnings.warn(f"ModelCheckpoint: not saving {path}: {bad} is NaN or infinite",
                          RuntimeWarning, stacklevel=2)
            return
        if self.save_best_only:
            self.best = current
        getattr(self.model, self.save_method)(path)


def _improvement_test(monitor, mode, min_delta):
    """Return ``(improved(current, best) -> bool, initial_best)`` for a mode."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        mode = "max" if _higher_is_better(monitor) else "min"
    min_delta = abs(min_delta)
    # A NaN or infinite value is never an improvement: it must not become the "best" epoch.
    if mode == "min":
        return (lambda current, best: math.isfinite(current) and current < best - min_delta), math.inf
    return (lambda current, best: math.isfinite(current) and current > best + min_delta), -math.inf


def _higher_is_better(monitor):
    name = monitor.removeprefix("val_")
    return "acc" in name or name in ("auc", "precision", "recall", "f1_score")


def _monitored_value(logs, monitor, who):
    value = logs.get(monitor)
    if value is None:
        warnings.warn(f"{who} monitors {monitor!r}, which is not in the epoch logs "
                      f"(available: {sorted(logs)}); skipping this epoch", stacklevel=3)
    return value


def _non_finite_variable(owner):
    """Name of the first of the owner's state arrays holding NaN or inf (``state_arrays()``, else ``get_weights()``);
    None if all are finite or it has none."""
    if callable(getattr(owner, "state_arrays", None)):
        arrays = owner.state_arrays()
    elif callable(getattr(owner, "get_weights", None)):
        arrays = ((f"weight {i}", weight) for i, weight in enumerate(owner.get_weights()))
    else:
        return None
    return next((name for name, array in arrays if not np.isfinite(array).all()), None)


def _require_owner_methods(owner, who, *names):
    missing = [name for name in names if not callable(getattr(owner, name, None))]
    if missing:
        raise ValueError(f"{who} needs the loop owner to provide {', '.join(missing)}(); "
                         f"{type(owner).__name__} does not")


class _CallbackList:
    """Calls the same hook on every callback, in order."""

    def __init__(self, callbacks, owner, params):
        self.callbacks = callbacks
        for callback in callbacks:
            callback.set_model(owner)
            callback.set_params(params)

    def call(self, hook, *args):
        for callback in self.callbacks:
            getattr(callback, hook)(*args)


# --------------------------------------------------------------------------
# Loops


def fit_loop(train_step, x, y, *, epochs=1, batch_size=32, shuffle=True, seed=None,
             validation=None, eval_step=None, callbacks=None, verbose=1,
             initial_epoch=0, owner=None, stream=None, validation_freq=1,
             train_steps=None, steps_per_execution=1):
    """Train for epochs ``initial_epoch .. epochs-1``; return the History.

    ``x`` and ``y`` are arrays (see the module docstring), or ``x`` is a
    ``Batches`` stream and ``y`` None. ``validation`` is an ``(x_val, y_val)``
    pair (or a ``Batches``) evaluated with ``eval_step`` after every
    ``validation_freq``-th epoch (an int), or after the epochs (1-based) in
    ``validation_freq`` (a list), as Keras; its metrics appear in the logs with
    a ``val_`` prefix.
    With ``shuffle=True`` each epoch visits the samples in an order drawn
    from a numpy Generator seeded by ``(seed, epoch)``: the same seed gives
    the same batches, also when resuming at ``initial_epoch``. ``seed=None``
    draws a fresh seed. Raises NonFiniteLossError on a NaN/Inf loss and
    NonFiniteWeightsError when an epoch ends with NaN/Inf in the owner's state.

    ``train_steps(x, y, index_batches, progress)`` runs ``train_step`` on the batches ``x[idx]``, ``y[idx]`` of
    every index array of ``index_batches`` (an epoch) in native chunks (gc.Function.run_steps), stopping after
    the first step whose loss is NaN or infinite. Before its first chunk and after each it calls
    ``progress(steps_done, {name: one value per step done})``, which returns the size of the next
    chunk (0: stop). With it and array data, an epoch's batches go through it ``steps_per_execution`` at a
    time; None: the whole epoch in one chunk, or with verbose=1 chunks that take about half the progress
    bar's interval (0.1 s), so that the line keeps moving. The numbers, the history and the NaN rule are those
    of a call per batch. A callback with batch-level hooks (``on_batch_begin/end``, or Keras 3's
    ``on_train_batch_begin/end``, which call them unless overridden) sees every batch as it runs, so then every
    batch is a call of ``train_step``, as with ``steps_per_execution=1``.
    """
    check_steps_per_execution(steps_per_execution)
    batches = x if isinstance(x, Batches) else _ArrayBatches(x, y, batch_size, shuffle, seed)
    validate = _validation_epochs(validation_freq)
    if validation is not None:
        if eval_step is None:
            raise ValueError("validation data was given but no eval_step to evaluate it")
        if not isinstance(validation, Batches):
            validation = _ArrayBatches(*validation, batch_size)
    owner = owner if owner is not None else types.SimpleNamespace()
    owner.stop_training = False

    steps = batches.steps
    callbacks, history = _with_history(callbacks)
    callbacks = _CallbackList(callbacks, owner, {"epochs": epochs, "steps": steps, "verbose": verbose})

    chunked = (train_steps is not None and isinstance(batches, _ArrayBatches) and steps_per_execution != 1
               and not _has_batch_hooks(callbacks.callbacks))
    callbacks.call("on_train_begin", {})
    logs = {}
    for epoch in range(initial_epoch, epochs):
        callbacks.call("on_epoch_begin", epoch, {})
        write_epoch_header(epoch, epochs, verbose, stream)
        bar = ProgressBar(steps, verbose=verbose, stream=stream)
        try:
            if chunked:
                chunk = steps_per_execution or (None if verbose == 1 else steps)
                logs, batches_done = _train_epoch_in_chunks(train_steps, batches, epoch, chunk, owner, bar)
            else:
                logs, batches_done = _train_epoch(train_step, batches.epoch(epoch), callbacks, owner, bar)
        except _NonFiniteLoss as stop:
            _stop_on_nan(callbacks, bar, {"epoch": epoch, "batch": stop.batch, "loss": stop.loss})
            raise NonFiniteLossError(stop.loss, epoch, epochs, stop.batch, steps, history) from None
        if not batches_done:
            bar.end_line()
            warnings.warn(f"the training data ran out at epoch {epoch + 1}/{epochs} (a generator is used up by "
                          f"one pass: give steps_per_epoch, or pass a re-iterable such as a list); training "
                          f"stops", RuntimeWarning, stacklevel=3)
            break
        bad = _non_finite_variable(owner)
        if bad is not None:
            _stop_on_nan(callbacks, bar, {"epoch": epoch, "variable": bad})
            raise NonFiniteWeightsError(bad, epoch, epochs, history)
        if validation is not None and validate(epoch + 1):
            val_logs = evaluate_loop(eval_step, validation, None, verbose=0)
            logs.update({f"val_{name}": value for name, value in val_logs.items()})
        # The epoch's line is finished before the callbacks run, so what they print starts on a line of its own
        # (Keras finishes it after them: a callback's print lands mid-line on a terminal, and what they add to the
        # logs, such as learning_rate, is on it).
        bar.update(batches_done, logs, finalize=True)
        callbacks.call("on_epoch_end", epoch, logs)
        if owner.stop_training:
            break
    callbacks.call("on_train_end", {**logs, "stopped_on_nan": False})
    return history


def _validation_epochs(validation_freq):
    """``validation_freq`` as a test of an epoch number (1-based): every n-th epoch, or those listed."""
    if isinstance(validation_freq, (int, np.integer)) and not isinstance(validation_freq, bool):
        if validation_freq < 1:
            raise ValueError(f"validation_freq must be a positive integer or a list of epochs, got {validation_freq}")
        return lambda epoch: epoch % validation_freq == 0
    if isinstance(validation_freq, (list, tuple, set, range)):
        epochs = set(validation_freq)
        return lambda epoch: epoch in epochs
    raise ValueError(f"validation_freq must be a positive integer or a list of epochs, got {validation_freq!r}")


def _stop_on_nan(callbacks, bar, logs):
    """End training on a non-finite loss or state: callbacks restore the last good state in on_train_end."""
    bar.end_line()
    callbacks.call("on_train_end", {"stopped_on_nan": True, **logs})


def evaluate_loop(eval_step, x, y, batch_size=32, verbose=1, *, stream=None):
    """Run ``eval_step`` over all batches (in order) of arrays or a ``Batches`` stream (``y`` None); return the
    metrics weighted by batch size."""
    batches = x if isinstance(x, Batches) else _ArrayBatches(x, y, batch_size)
    bar = ProgressBar(batches.steps, verbose=verbose, stream=stream)
    totals = _WeightedMeans()
    batch = 0
    for batch, (xb, yb, size) in enumerate(batches.epoch(0), 1):
        totals.add(eval_step(xb, yb), size)
        bar.update(batch, totals.result())
    if not batch:
        raise ValueError("no data to evaluate: the batches ran out before the first one")
    bar.update(batch, totals.result(), finalize=True)
    return totals.result()


def predict_loop(predict_step, x, batch_size=32, verbose=0, *, stream=None):
    """Run ``predict_step(xb)`` over all batches of an array (or list of arrays) or a ``Batches`` stream; return
    the outputs concatenated.

    A step returning a list/tuple of arrays (several outputs) gives a list of
    concatenated arrays.
    """
    batches = x if isinstance(x, Batches) else _ArrayBatches(x, None, batch_size)
    bar = ProgressBar(batches.steps, verbose=verbose, stream=stream)
    outputs = []
    for batch, (xb, _, _) in enumerate(batches.epoch(0), 1):
        outputs.append(predict_step(xb))
        bar.update(batch)
    if not outputs:
        raise ValueError("no data to predict: the batches ran out before the first one")
    bar.update(len(outputs), finalize=True)
    if isinstance(outputs[0], (list, tuple)):
        return [np.concatenate(parts) for parts in zip(*outputs)]
    return np.concatenate(outputs)


def split_validation(x, y, fraction):
    """Split off the LAST ``fraction`` of the samples, as Keras' validation_split does.

    Returns ``((x_train, y_train), (x_val, y_val))``; no shuffling happens,
    so shuffle beforehand if the data is ordered (e.g. sorted by class).
    """
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be between 0 and 1 (exclusive), got {fraction}")
    x, y = _as_data(x), _as_data(y)
    num_samples = _num_samples(x, y)
    split_at = math.floor(num_samples * (1 - fraction))
    if split_at in (0, num_samples):
        raise ValueError(f"{num_samples} samples are too few to split off a validation fraction of {fraction}")
    train, val = slice(0, split_at), slice(split_at, num_samples)
    return (_take(x, train), _take(y, train)), (_take(x, val), _take(y, val))


def _with_history(callbacks):
    """Return ``(callbacks, history)``, appending a History unless one was given."""
    callbacks = list(callbacks or [])
    history = next((c for c in callbacks if isinstance(c, History)), None)
    if history is None:
        history = History()
        callbacks.append(history)
    return callbacks, history


def _train_epoch(train_step, batches, callbacks, owner, bar):
    """Run one epoch over ``batches`` (``(xb, yb, size)`` triples); return ``(epoch_logs, batches_run)``."""
    totals = _WeightedMeans()
    batch = -1
    for batch, (xb, yb, size) in enumerate(batches):
        callbacks.call("on_train_batch_begin", batch, {"batch": batch, "size": size})
        metrics = train_step(xb, yb)
        loss = metrics.get("loss")
        if loss is not None and not math.isfinite(loss):
            raise _NonFiniteLoss(float(loss), batch)
        totals.add(metrics, size)
        logs = totals.result()
        callbacks.call("on_train_batch_end", batch, logs)
        bar.update(batch + 1, logs)
        if owner.stop_training:
            break
    return totals.result(), batch + 1


def _train_epoch_in_chunks(train_steps, batches, epoch, chunk, owner, bar):
    """Run one epoch of array batches through ``train_steps``; return ``(epoch_logs, batches_run)``."""
    index_batches = batches.index_batches(epoch)
    chunks = _Chunks(chunk, owner, bar, [len(rows) for rows in index_batches])
    train_steps(batches.x, batches.y, index_batches, chunks)
    return chunks.totals.result(), chunks.done


class _Chunks:
    """train_steps' ``progress``: after each native call it takes in the new steps' metrics as ``_train_epoch``
    does (raising _NonFiniteLoss at a non-finite loss) and updates the bar; it asks for ``chunk`` steps a call
    (None: one, then as many as take half the bar's interval at the previous call's pace), none once the owner
    stops training (after one batch, as _train_epoch, if it was told to stop before the epoch's first)."""

    def __init__(self, chunk, owner, bar, sizes):
        self.chunk, self.owner, self.bar, self.sizes = chunk, owner, bar, sizes
        self.totals, self.done, self.started = _WeightedMeans(), 0, time.perf_counter()

    def __call__(self, done, values) -> int:
        for step in range(self.done, done):
            metrics = {name: steps[step] for name, steps in values.items()}
            loss = metrics.get("loss")
            if loss is not None and not math.isfinite(loss):
                raise _NonFiniteLoss(float(loss), step)
            self.totals.add(metrics, self.sizes[step])
        now, ran, self.done = time.perf_counter(), done - self.done, done
        if ran:
            self.bar.update(done, self.totals.result())
        if self.owner.stop_training:  # _train_epoch looks after each batch: one batch runs if it was set before
            return 0 if done else 1
        seconds_per_step = (now - self.started) / max(ran, 1)
        self.started = now
        if self.chunk is not None:
            return self.chunk
        return 1 if not ran else max(1, int(self.bar.interval / 2 / max(seconds_per_step, 1e-9)))


def _has_batch_hooks(callbacks):
    """Whether a callback has batch-level hooks: its class overrides them, or it was given them (LambdaCallback)."""
    hooks = ("on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end")
    return any(name in vars(callback) or getattr(type(callback), name, None) is not getattr(Callback, name)
               for callback in callbacks for name in hooks)


def check_steps_per_execution(steps_per_execution):
    """ValueError unless ``steps_per_execution`` is a positive integer or None (fit_loop's, and Keras' compile's)."""
    if steps_per_execution is not None and (not isinstance(steps_per_execution, (int, np.integer))
                                            or isinstance(steps_per_execution, bool) or steps_per_execution < 1):
        raise ValueError(f"steps_per_execution must be a positive integer or None (a whole epoch per call), "
                         f"got {steps_per_execution!r}")


class Batches:
    """Batches ``(xb, yb)`` from a Python iterable or generator, as Keras' ``fit(generator)``.

    With ``steps`` every epoch takes the next ``steps`` batches from one continuing iterator (Keras'
    ``steps_per_epoch``); without, every epoch is a fresh pass over ``source`` (so a generator is used up by
    the first). ``check(batch, number)`` turns what the source yields into ``(xb, yb)`` arrays (or raises
    ValueError naming what is wrong) before the step sees it.
    """

    def __init__(self, source, steps=None, check=None):
        if steps is not None and (not isinstance(steps, (int, np.integer)) or steps < 1):
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        self.source, self.steps, self.check = source, steps, check or (lambda batch, number: batch)
        self._iterator = None

    def epoch(self, epoch):
        if self.steps is None:
            batches = iter(self.source)
        else:
            self._iterator = self._iterator or iter(self.source)
            batches = itertools.islice(self._iterator, self.steps)
        for number, batch in enumerate(batches):
            xb, yb = self.check(batch, number)
            yield xb, yb, _num_samples(_as_data(xb))


class _ArrayBatches(Batches):
    """The batches of arrays ``x`` and ``y`` (lists of arrays for several inputs/outputs): every epoch in an
    order drawn from ``(seed, epoch)`` when shuffled, else in order."""

    def __init__(self, x, y, batch_size, shuffle=False, seed=None):
        self.x, self.y = _as_data(x), None if y is None else _as_data(y)
        self.num_samples = _num_samples(self.x, self.y)
        _check_batch_size(batch_size)
        self.batch_size, self.shuffle = batch_size, shuffle
        self.seed = np.random.SeedSequence().entropy if seed is None else seed
        self.steps = math.ceil(self.num_samples / batch_size)

    def epoch(self, epoch):
        order = _epoch_order(self.num_samples, self.shuffle, self.seed, epoch)
        for index, size in _batch_indices(order, self.num_samples, self.batch_size):
            yield _take(self.x, index), None if self.y is None else _take(self.y, index), size

    def index_batches(self, epoch):
        """The sample indices of every batch of ``epoch``, in the order ``epoch`` visits them: a (steps,
        batch_size) array, or a list of arrays ending in a shorter last batch."""
        order = _epoch_order(self.num_samples, self.shuffle, self.seed, epoch)
        order = np.arange(self.num_samples) if order is None else order
        full = self.num_samples // self.batch_size
        batches = order[:full * self.batch_size].reshape(full, self.batch_size)
        return batches if full == self.steps else [*batches, order[full * self.batch_size:]]


class _WeightedMeans:
    """Running per-metric means where each batch counts by its number of samples."""

    def __init__(self):
        self.sums = {}
        self.counts = {}

    def add(self, metrics, size):
        for name, value in metrics.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(value) * size
            self.counts[name] = self.counts.get(name, 0) + size

    def result(self):
        return {name: total / self.counts[name] for name, total in self.sums.items()}


def _epoch_order(num_samples, shuffle, seed, epoch):
    # Seeding from (seed, epoch) instead of one generator for the whole run
    # makes an epoch's order independent of the epochs before it, so a run
    # resumed at initial_epoch sees the same batches as an uninterrupted one.
    if not shuffle:
        return None
    return np.random.default_rng([seed, epoch]).permutation(num_samples)


def _batch_indices(order, num_samples, batch_size):
    """Yield ``(index, size)`` per batch; index is a slice (no copy) or, when shuffled, an index array."""
    for start in range(0, num_samples, batch_size):
        stop = min(start + batch_size, num_samples)
        yield (slice(start, stop) if order is None else order[start:stop]), stop - start


def _as_data(data):
    """Arrays stay arrays; a list/tuple means several arrays (inputs or outputs)."""
    if isinstance(data, (list, tuple)):
        return type(data)(np.asarray(part) for part in data)
    return np.asarray(data)


def _take(data, index):
    if isinstance(data, (list, tuple)):
        return type(data)(part[index] for part in data)
    return data[index]


def _num_samples(x, y=None):
    """Return the shared sample count, or raise ValueError naming the lengths that differ."""
    lengths = {}
    for label, data in (("x", x), ("y", y)):
        if data is None:
            continue
        parts = data if isinstance(data, (list, tuple)) else [data]
        if not parts:
            raise ValueError(f"{label} is an empty list of arrays")
        for i, part in enumerate(parts):
            name = f"{label}[{i}]" if isinstance(data, (list, tuple)) else label
            if part.ndim == 0:
                raise ValueError(f"{name} is a scalar; expected an array with a sample dimension")
            lengths[name] = part.shape[0]
    names = list(lengths)
    for name in names[1:]:
        if lengths[name] != lengths[names[0]]:
            raise ValueError(f"{names[0]} has {lengths[names[0]]} samples but {name} has {lengths[name]}; "
                             "they must have the same first dimension")
    num_samples = lengths[names[0]]
    if num_samples == 0:
        raise ValueError("no samples: the data has a first dimension of 0")
    return num_samples


def _check_batch_size(batch_size):
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
