"""The Keras 3 callbacks of graphc.keras.callbacks, against Keras 3's documented behaviour.

Where only the callback's rule matters, the loop is runtime.loop.fit_loop with a scripted step and an owner holding
a real graphc optimizer; where the model matters (a changed learning rate must change the next update), a
one-Dense-layer Sequential on the reference backend is checked against SGD written in numpy.
"""
import csv
import io
import math
import re
import types

import numpy as np
import pytest

from graphc.keras import callbacks, layers, models, optimizers
from runtime import loop
from runtime.loop import NonFiniteLossError


def scripted_fit(callback_list, epochs=3, batches=2, values=None, owner=None, validation=False, verbose=0, **kwargs):
    """fit_loop over ``batches`` batches of 2 samples whose step returns the next of ``values`` as the loss (by
    default 1, 2, 3, ...) and 0.5 as the accuracy; returns (history, owner)."""
    values = iter(values if values is not None else range(1, 1000))
    owner = owner if owner is not None else types.SimpleNamespace(optimizer=optimizers.SGD(0.1))

    def step(xb, yb):
        return {"loss": float(next(values)), "accuracy": 0.5}

    x = np.zeros((2 * batches, 1), np.float32)
    history = loop.fit_loop(step, x, x, epochs=epochs, batch_size=2, shuffle=False, callbacks=callback_list,
                            verbose=verbose, owner=owner, validation=(x, x) if validation else None,
                            eval_step=lambda xb, yb: {"loss": 7.0, "accuracy": 0.25}, **kwargs)
    return history, owner


def linear_regression(rate, samples, features, seed):
    """A Dense(1) model with mse and SGD(rate) on the reference backend, and random (x, y)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, features)).astype(np.float32)
    y = rng.normal(size=(samples, 1)).astype(np.float32)
    model = models.Sequential([layers.Dense(1, input_shape=(features,))])
    model.compile(optimizers.SGD(rate), "mse", backend="reference")
    return model, x, y


def assert_trained_as_numpy_sgd(model, initial_weights, x, y, rates):
    """The model's weights are what full-batch SGD at each epoch's rate gives from initial_weights, in numpy:
    w -= lr * d mean((x w + b - y)^2) / dw."""
    kernel, bias = (w.astype(np.float64) for w in initial_weights)
    for rate in rates:
        error = x @ kernel + bias - y
        kernel, bias = kernel - rate * 2 * x.T @ error / len(x), bias - rate * 2 * error.mean(axis=0)
    np.testing.assert_allclose(model.get_weights()[0], kernel, rtol=1e-5)
    np.testing.assert_allclose(model.get_weights()[1], bias, rtol=1e-5)


def float32s(values):
    """The values as a float32 variable holds them, read back as Python floats (what learning_rate returns)."""
    return [float(np.float32(v)) for v in values]


# ---- ReduceLROnPlateau ---------------------------------------------------------------------------
# Each case: monitored values (one per epoch), keyword arguments, and the learning rate after every epoch, starting
# from 1.0, as keras.callbacks.ReduceLROnPlateau of Keras 3.15.1 gives on the same sequence (worked by hand in the
# comments: "w" is the wait counter, "c" the cooldown counter).
SEQUENCE = [1.0, 0.9, 0.95, 0.92, 0.91, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1]
PLATEAU_CASES = {
    # best 1.0, 0.9; w1, w2 -> 0.5; w1; best 0.5; w1, w2 -> 0.25; w1, w2 -> 0.125; w1, w2 -> 0.0625
    "patience": (SEQUENCE, dict(factor=0.5, patience=2),
                 [1, 1, 1, .5, .5, .5, .5, .25, .25, .125, .125, .0625]),
    # as above, but after each reduction two epochs of cooldown (w stays 0) before waiting again
    "cooldown": (SEQUENCE, dict(factor=0.5, patience=2, cooldown=2),
                 [1, 1, 1, .5, .5, .5, .5, .25, .25, .25, .125, .125]),
    # patience 1, cooldown 2: the epoch right after a reduction never waits, the next one does (its cooldown ends)
    "short cooldown": ([1.0] * 6, dict(factor=0.5, patience=1, cooldown=2), [1, .5, .5, .25, .25, .125]),
    # never below min_lr, and nothing more once there
    "min_lr": ([1.0] * 6, dict(factor=0.5, patience=1, min_lr=0.2), [1, .5, .25, .2, .2, .2]),
    # a gain of min_delta or less is no improvement: 0.95, 0.91 and 0.84, 0.83 are not better than 1.0 and 0.85
    "min_delta": ([1.0, 0.95, 0.91, 0.85, 0.84, 0.83], dict(factor=0.5, patience=1, min_delta=0.1),
                  [1, .5, .25, .25, .125, .0625]),
    # mode='max': a rise is an improvement
    "max": ([0.5, 0.6, 0.6, 0.55, 0.7, 0.7, 0.7], dict(monitor="val_accuracy", mode="max", factor=0.1, patience=2),
            [1, 1, 1, .1, .1, .1, .01]),
    # NaN is never an improvement: it counts as a waiting epoch
    "nan": ([1.0, math.nan, 0.5, math.nan, math.nan], dict(factor=0.5, patience=2), [1, 1, 1, 1, .5]),
    # patience 0 and factor 0: the first epoch without improvement drops the rate to 0
    "factor 0": ([1.0] * 5, dict(factor=0.0, patience=0), [1, 0, 0, 0, 0]),
    # cooldown 1 with min_lr: reduce, cool down one epoch, reduce to min_lr, then stay
    "cooldown and min_lr": ([1.0] * 5, dict(factor=0.5, patience=1, cooldown=1, min_lr=0.3), [1, .5, .3, .3, .3]),
}


@pytest.mark.parametrize("values, kwargs, expected", PLATEAU_CASES.values(), ids=PLATEAU_CASES.keys())
def test_reduce_lr_on_plateau_reduces_when_keras_does(values, kwargs, expected):
    monitor = kwargs.pop("monitor", "val_loss")
    callback = callbacks.ReduceLROnPlateau(monitor=monitor, **kwargs)
    owner = types.SimpleNamespace(optimizer=optimizers.SGD(1.0))
    callback.set_model(owner)
    callback.on_train_begin({})
    rates, logged = [], []
    for epoch, value in enumerate(values):
        logs = {monitor: value}
        callback.on_epoch_end(epoch, logs)
        rates.append(owner.optimizer.learning_rate)
        logged.append(logs["learning_rate"])
    assert rates == float32s(expected)
    assert logged == float32s([1.0] + expected[:-1])  # the rate each epoch trained with, read before reducing


def test_reduce_lr_on_plateau_in_fit_matches_sgd_in_numpy():
    """min_delta=10 makes every epoch after the first a plateau: with patience 1 the rate halves each epoch, and
    the weights must follow numpy's SGD at those rates (the rate is a variable: no recompilation needed)."""
    model, x, y = linear_regression(0.1, samples=7, features=3, seed=0)
    initial_weights = model.get_weights()
    reduce = callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=10)
    history = model.fit(x, y, epochs=4, batch_size=7, shuffle=False, verbose=0, callbacks=[reduce])

    rates = float32s([0.1, 0.1, 0.05, 0.025])
    assert history.history["learning_rate"] == rates
    assert model.optimizer.learning_rate == float32s([0.0125])[0]
    assert_trained_as_numpy_sgd(model, initial_weights, x, y, rates)


def test_reduce_lr_on_plateau_verbose_prints_each_reduction(capsys):
    scripted_fit([callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, verbose=1)], epochs=3)
    # losses 1.5, 3.5, 5.5 (2 batches per epoch): epochs 2 and 3 bring no improvement
    assert capsys.readouterr().out == ("\nEpoch 2: ReduceLROnPlateau reducing learning rate to 0.05000000074505806.\n"
                                       "\nEpoch 3: ReduceLROnPlateau reducing learning rate to 0.02500000037252903.\n")


def test_reduce_lr_on_plateau_warns_when_the_monitored_value_is_missing():
    with pytest.warns(UserWarning, match=r"ReduceLROnPlateau monitors 'val_loss', which is not in the epoch logs"):
        history, owner = scripted_fit([callbacks.ReduceLROnPlateau(patience=0)], epochs=2)
    assert owner.optimizer.learning_rate == float32s([0.1])[0]
    assert history.history["learning_rate"] == float32s([0.1, 0.1])


@pytest.mark.parametrize("kwargs, argument", [
    (dict(factor=1.0), "factor=1.0"), (dict(factor=1.5), "factor=1.5"), (dict(factor=-0.1), "factor=-0.1"),
    (dict(patience=-1), "patience=-1"), (dict(cooldown=-2), "cooldown=-2"), (dict(min_lr=-1e-3), "min_lr=-0.001"),
    (dict(mode="smallest"), "mode must be 'auto', 'min' or 'max', got 'smallest'"),
])
def test_reduce_lr_on_plateau_rejects_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=re.escape(argument)):
        callbacks.ReduceLROnPlateau(**kwargs)


@pytest.mark.parametrize("make", [lambda: callbacks.ReduceLROnPlateau(),
                                  lambda: callbacks.LearningRateScheduler(lambda epoch, lr: lr)])
def test_learning_rate_callbacks_need_an_optimizer(make):
    with pytest.raises(ValueError, match="needs a model compiled with an optimizer that has a learning_rate"):
        scripted_fit([make()], owner=types.SimpleNamespace(optimizer=None))


# ---- LearningRateScheduler -----------------------------------------------------------------------
def test_learning_rate_scheduler_keras_docstring_example():
    """Keras' example: SGD() (0.01), the rate kept for 10 epochs, then times exp(-0.1): 0.00607 after 15."""
    def scheduler(epoch, lr):
        return lr if epoch < 10 else lr * math.exp(-0.1)

    history, owner = scripted_fit([callbacks.LearningRateScheduler(scheduler)], epochs=15,
                                  owner=types.SimpleNamespace(optimizer=optimizers.SGD()))
    assert round(owner.optimizer.learning_rate, 5) == 0.00607
    expected, rate = [], np.float32(0.01)
    for epoch in range(15):
        rate = np.float32(scheduler(epoch, float(rate)))
        expected.append(float(rate))
    assert history.history["learning_rate"] == expected


def test_learning_rate_scheduler_sets_the_rate_before_each_epoch_in_fit():
    model, x, y = linear_regression(1.0, samples=5, features=2, seed=1)
    initial_weights = model.get_weights()
    seen = []

    def schedule(epoch, lr):
        seen.append((epoch, lr))
        return 0.2 / (epoch + 1)

    model.fit(x, y, epochs=4, initial_epoch=1, batch_size=5, verbose=0,
              callbacks=[callbacks.LearningRateScheduler(schedule)])
    assert seen == [(1, 1.0), (2, float32s([0.1])[0]), (3, float32s([0.2 / 3])[0])]
    assert_trained_as_numpy_sgd(model, initial_weights, x, y, float32s([0.1, 0.2 / 3, 0.05]))


def test_learning_rate_scheduler_takes_a_one_argument_schedule_and_prints_when_verbose(capsys):
    history, owner = scripted_fit([callbacks.LearningRateScheduler(lambda epoch: 0.5 ** epoch, verbose=1)], epochs=2)
    assert history.history["learning_rate"] == [1.0, 0.5]
    assert capsys.readouterr().out == ("\nEpoch 1: LearningRateScheduler setting learning rate to 1.0.\n"
                                       "\nEpoch 2: LearningRateScheduler setting learning rate to 0.5.\n")


def test_learning_rate_scheduler_rejects_what_is_not_a_schedule():
    with pytest.raises(ValueError, match=r"schedule must return a float learning rate, got 1 \(int\) for epoch 0"):
        scripted_fit([callbacks.LearningRateScheduler(lambda epoch, lr: 1)])
    with pytest.raises(TypeError, match="schedule must be a function"):
        callbacks.LearningRateScheduler(0.1)


# ---- CSVLogger -----------------------------------------------------------------------------------
def read_csv(path, separator=","):
    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter=separator))


def test_csv_logger_writes_keras_columns_and_values(tmp_path):
    path = tmp_path / "log.csv"
    history, _ = scripted_fit([callbacks.CSVLogger(path)], epochs=2)
    rows = read_csv(path)
    # no validation: Keras adds a val_ column per name, filled with NA
    assert rows[0] == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert [row[0] for row in rows[1:]] == ["0", "1"]
    assert [float(row[2]) for row in rows[1:]] == history.history["loss"] == [1.5, 3.5]
    assert all(row[1] == "0.5" and row[3:] == ["NA", "NA"] for row in rows[1:])
    assert path.read_bytes().count(b"\r\n") == 3  # the csv module's (and so Keras') line ends


def test_csv_logger_with_validation_and_a_separator(tmp_path):
    path = tmp_path / "log.tsv"
    scripted_fit([callbacks.CSVLogger(path, separator="\t")], epochs=1, validation=True)
    assert read_csv(path, "\t") == [["epoch", "accuracy", "loss", "val_accuracy", "val_loss"],
                                    ["0", "0.5", "1.5", "0.25", "7.0"]]


def test_csv_logger_appends_without_a_second_header_or_overwrites(tmp_path):
    path = tmp_path / "log.csv"
    scripted_fit([callbacks.CSVLogger(path)], epochs=2)
    scripted_fit([callbacks.CSVLogger(path, append=True)], epochs=3, initial_epoch=2)
    rows = read_csv(path)
    assert [row[0] for row in rows] == ["epoch", "0", "1", "2"]
    scripted_fit([callbacks.CSVLogger(path)], epochs=1)
    assert [row[0] for row in read_csv(path)] == ["epoch", "0"]
    empty = tmp_path / "empty.csv"
    empty.touch()
    scripted_fit([callbacks.CSVLogger(empty, append=True)], epochs=1)
    assert [row[0] for row in read_csv(empty)] == ["epoch", "0"]


def test_csv_logger_rows_are_complete_on_disk_after_each_epoch_and_after_a_crash(tmp_path):
    path = tmp_path / "log.csv"
    on_disk = []

    def crash_in_second_epoch(epoch, logs):
        on_disk.append(path.read_bytes())
        if epoch == 1:
            raise KeyboardInterrupt

    logger = callbacks.CSVLogger(path)
    with pytest.raises(KeyboardInterrupt):
        scripted_fit([logger, callbacks.LambdaCallback(on_epoch_end=crash_in_second_epoch)], epochs=3)
    assert [len(list(csv.reader(data.decode().splitlines()))) for data in on_disk] == [2, 3]
    assert path.read_bytes() == on_disk[-1] and on_disk[-1].endswith(b"\r\n")


def test_csv_logger_writes_arrays_as_keras_does(tmp_path):
    path = tmp_path / "log.csv"
    add_array = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: logs.update(norms=np.array([1, 2])))
    scripted_fit([add_array, callbacks.CSVLogger(path)], epochs=1, validation=True)
    assert read_csv(path)[1][3] == '"[1, 2]"'


@pytest.mark.parametrize("separator", ["", ";;", 1])
def test_csv_logger_rejects_a_bad_separator(tmp_path, separator):
    with pytest.raises(ValueError, match="separator must be a single character"):
        callbacks.CSVLogger(tmp_path / "log.csv", separator=separator)


# ---- TerminateOnNaN ------------------------------------------------------------------------------
def test_terminate_on_nan_keeps_graphc_rule_error_and_last_good_weights():
    x = np.ones((4, 2), np.float32)
    model = models.Sequential([layers.Dense(1, input_shape=(2,))])
    model.compile(optimizers.SGD(0.1), "mse", backend="reference")
    model.fit(x, np.ones((4, 1), np.float32), epochs=1, verbose=0)
    good = model.get_weights()
    x[3] = np.nan
    with pytest.raises(NonFiniteLossError, match="loss became nan at epoch 1/2, batch 2/2"):
        model.fit(x, np.ones((4, 1), np.float32), epochs=2, batch_size=2, shuffle=False, verbose=0,
                  callbacks=[callbacks.TerminateOnNaN(raise_error=True)])
    for restored, before in zip(model.get_weights(), good):
        np.testing.assert_array_equal(restored, before)


# ---- LambdaCallback ------------------------------------------------------------------------------
def test_lambda_callback_calls_its_hooks_in_keras_order():
    calls = []

    def record(name):
        return lambda *args: calls.append((name, *args[:-1]))

    hooks = callbacks.LambdaCallback(**{name: record(name) for name in (
        "on_train_begin", "on_epoch_begin", "on_train_batch_begin", "on_batch_end", "on_epoch_end", "on_train_end")})
    scripted_fit([hooks], epochs=2, batches=2)
    epoch = [("on_train_batch_begin", 0), ("on_batch_end", 0), ("on_train_batch_begin", 1), ("on_batch_end", 1)]
    assert calls == [("on_train_begin",),
                     ("on_epoch_begin", 0), *epoch, ("on_epoch_end", 0),
                     ("on_epoch_begin", 1), *epoch, ("on_epoch_end", 1),
                     ("on_train_end",)]


def test_lambda_callback_leaves_other_hooks_empty_and_passes_logs():
    ends = []
    scripted_fit([callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: ends.append(dict(logs)))], epochs=1)
    assert ends == [{"loss": 1.5, "accuracy": 0.5}]


def test_lambda_callback_rejects_bad_hooks():
    with pytest.raises(ValueError, match="give on_batch_begin or on_train_batch_begin, not both"):
        callbacks.LambdaCallback(on_batch_begin=print, on_train_batch_begin=print)
    with pytest.raises(TypeError, match="on_epoch_end must be a function, got str"):
        callbacks.LambdaCallback(on_epoch_end="print")
    with pytest.raises(TypeError, match="on_test_begin"):
        callbacks.LambdaCallback(on_test_begin=print)


# ---- ProgbarLogger -------------------------------------------------------------------------------
def without_times(text):
    return re.sub(r"\d+(us|ms|s)\b", "T", text)


@pytest.mark.parametrize("verbose", [0, 1, 2])
def test_progbar_logger_prints_as_fit_verbose_says_as_in_keras(verbose):
    outputs = []
    for extra in ([], [callbacks.ProgbarLogger()]):
        stream = io.StringIO()
        scripted_fit(extra, epochs=2, verbose=verbose, stream=stream)
        outputs.append(without_times(stream.getvalue()))
    assert outputs[0] == outputs[1]
    assert (outputs[0] == "") == (verbose == 0)


def test_the_module_exports_keras_callback_names():
    assert set(callbacks.__all__) == {"Callback", "History", "EarlyStopping", "ModelCheckpoint", "ReduceLROnPlateau",
                                      "LearningRateScheduler", "CSVLogger", "TerminateOnNaN", "LambdaCallback",
                                      "ProgbarLogger"}
    assert callbacks.Callback is loop.Callback and issubclass(callbacks.CSVLogger, loop.Callback)


def test_the_epochs_progress_line_is_finished_before_the_callbacks_print():
    stream = io.StringIO()

    class Prints(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            stream.write(f"epoch {epoch + 1} done\n")
            logs["learning_rate"] = 0.25

    loop.fit_loop(lambda xb, yb: {"loss": 1.0}, np.zeros(4), np.zeros(4), batch_size=2, epochs=2, verbose=2,
                  callbacks=[Prints()], stream=stream)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "Epoch 1/2" and lines[1].endswith(" - loss: 1.0000") and lines[2] == "epoch 1 done"
