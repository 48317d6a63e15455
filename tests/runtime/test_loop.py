import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import runtime.loop as loop
from runtime.loop import (
    Callback,
    EarlyStopping,
    History,
    ModelCheckpoint,
    NonFiniteLossError,
    evaluate_loop,
    fit_loop,
    predict_loop,
    split_validation,
)


def recording_step(seen, metrics=None):
    """A train/eval step that records the batches it receives."""
    def step(xb, yb):
        seen.append((np.array(xb, copy=True), np.array(yb, copy=True)))
        return metrics(xb, yb) if metrics else {"loss": 0.0}
    return step


def mean_of_x(xb, yb):
    return {"loss": float(np.mean(xb)), "count": float(len(xb))}


def epochs_of(seen, batches_per_epoch):
    flat = [xb for xb, _ in seen]
    return [np.concatenate(flat[i:i + batches_per_epoch]) for i in range(0, len(flat), batches_per_epoch)]


def test_batches_keep_order_and_last_batch_is_partial():
    x, y = np.arange(10), np.arange(10) * 10
    seen = []
    fit_loop(recording_step(seen), x, y, epochs=1, batch_size=4, shuffle=False, verbose=0)
    assert [len(xb) for xb, _ in seen] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([xb for xb, _ in seen]), x)
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in seen]), y)


def test_epoch_metrics_are_weighted_by_batch_size():
    x = np.arange(10, dtype=np.float64)
    history = fit_loop(recording_step([], mean_of_x), x, x, epochs=1, batch_size=4, shuffle=False, verbose=0)
    # Batch means 1.5, 5.5, 8.5 over 4, 4, 2 samples: the weighted mean is the
    # plain mean of x (4.5); an unweighted mean of batches would give 5.1667.
    assert history.history["loss"] == [pytest.approx(4.5, abs=1e-12)]
    assert history.history["count"] == [pytest.approx((4 * 4 + 4 * 4 + 2 * 2) / 10, abs=1e-12)]


def test_shuffled_epoch_sees_every_sample_once_with_labels_aligned():
    x = np.arange(23)
    seen = []
    fit_loop(recording_step(seen), x, x * 10, epochs=3, batch_size=5, seed=0, verbose=0)
    for xb, yb in seen:
        np.testing.assert_array_equal(yb, xb * 10)
    epochs = epochs_of(seen, batches_per_epoch=5)
    for order in epochs:
        np.testing.assert_array_equal(np.sort(order), x)
    assert not np.array_equal(epochs[0], x), "the first epoch was not shuffled"
    assert not np.array_equal(epochs[0], epochs[1]), "two epochs had the same order"


def run_orders(seed, epochs=2, initial_epoch=0):
    seen = []
    x = np.arange(50)
    fit_loop(recording_step(seen), x, x, epochs=epochs, batch_size=8, seed=seed,
             initial_epoch=initial_epoch, verbose=0)
    return epochs_of(seen, batches_per_epoch=7)


def test_shuffle_is_reproducible_with_a_seed_and_differs_with_another():
    first, again, other = run_orders(1), run_orders(1), run_orders(2)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


def test_resumed_run_sees_the_same_order_as_an_uninterrupted_one():
    full = run_orders(seed=3, epochs=3)
    resumed = run_orders(seed=3, epochs=3, initial_epoch=2)
    assert len(resumed) == 1
    np.testing.assert_array_equal(resumed[0], full[2])


def test_multiple_inputs_are_batched_together():
    x = [np.arange(7), np.arange(7) * 2]
    seen = []

    def step(xb, yb):
        assert isinstance(xb, list) and len(xb) == 2
        np.testing.assert_array_equal(xb[1], xb[0] * 2)
        np.testing.assert_array_equal(yb, xb[0] + 1)
        seen.append(len(yb))
        return {"loss": 0.0}

    fit_loop(step, x, np.arange(7) + 1, epochs=1, batch_size=3, seed=0, verbose=0)
    assert seen == [3, 3, 1]


@pytest.mark.parametrize("x, y, names", [
    (np.zeros(10), np.zeros(9), ("x has 10", "y has 9")),
    ([np.zeros(10), np.zeros(8)], np.zeros(10), ("x[0] has 10", "x[1] has 8")),
])
def test_mismatched_sample_counts_raise_naming_both(x, y, names):
    with pytest.raises(ValueError) as info:
        fit_loop(recording_step([]), x, y, verbose=0)
    for name in names:
        assert name in str(info.value)


def test_validation_metrics_get_val_prefix_and_are_weighted():
    x = np.arange(6, dtype=np.float64)
    x_val = np.array([0.0, 0.0, 0.0, 9.0])
    history = fit_loop(lambda xb, yb: {"loss": 1.0}, x, x, epochs=2, batch_size=3,
                       validation=(x_val, x_val), eval_step=mean_of_x, verbose=0)
    assert set(history.history) == {"loss", "val_loss", "val_count"}
    assert history.history["val_loss"] == [pytest.approx(2.25)] * 2  # batches [0,0,0] and [9]
    assert history.epoch == [0, 1]


def test_validation_without_eval_step_is_an_error():
    with pytest.raises(ValueError, match="eval_step"):
        fit_loop(recording_step([]), np.zeros(4), np.zeros(4), validation=(np.zeros(2), np.zeros(2)), verbose=0)


class WeightsOwner:
    """An owner whose one weight is the number of epochs trained."""

    def __init__(self):
        self.trained = 0
        self.restored = []
        self.saved = []

    def get_weights(self):
        return [np.array(float(self.trained))]

    def set_weights(self, weights):
        self.restored.append(int(weights[0]))

    def save(self, path):
        self.saved.append(path)


def scripted_validation(values, owner=None, metric="loss"):
    """Return (callback, eval_step): the step reports ``values[epoch]`` as ``metric``.

    The callback also sets ``owner.trained`` to the epoch being trained.
    """
    class Script(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if owner is not None:
                owner.trained = epoch
            self.value = values[epoch]

    script = Script()
    return script, (lambda xb, yb: {metric: script.value})


def test_early_stopping_stops_after_patience_and_restores_best_weights():
    owner = WeightsOwner()
    tracker, eval_step = scripted_validation([5.0, 4.0, 4.5, 4.2, 4.1, 1.0, 1.0], owner)
    stopper = EarlyStopping(patience=2, restore_best_weights=True)
    history = fit_loop(recording_step([]), np.zeros(4), np.zeros(4), epochs=7, validation=(np.zeros(2), np.zeros(2)),
                       eval_step=eval_step, callbacks=[tracker, stopper], owner=owner, verbose=0)
    assert history.epoch == [0, 1, 2, 3]
    assert stopper.stopped_epoch == 3 and stopper.best_epoch == 1
    assert owner.restored == [1]


def test_early_stopping_min_delta_and_max_mode_for_accuracy():
    script, eval_step = scripted_validation([0.5, 0.6, 0.61, 0.62, 0.9], metric="accuracy")
    stopper = EarlyStopping(monitor="val_accuracy", patience=2, min_delta=0.05)
    history = fit_loop(recording_step([]), np.zeros(4), np.zeros(4), epochs=5, validation=(np.zeros(2), np.zeros(2)),
                       eval_step=eval_step, callbacks=[script, stopper], verbose=0)
    # 0.6 improves on 0.5 by more than min_delta; 0.61 and 0.62 do not.
    assert history.epoch == [0, 1, 2, 3]


def test_early_stopping_restore_needs_owner_weights():
    with pytest.raises(ValueError, match="get_weights"):
        fit_loop(recording_step([]), np.zeros(4), np.zeros(4),
                 callbacks=[EarlyStopping(restore_best_weights=True)], verbose=0)


def test_nan_loss_raises_with_epoch_and_batch_and_tells_callbacks():
    calls = []

    def step(xb, yb):
        calls.append(len(calls))
        return {"loss": math.nan if len(calls) == 5 else 1.0}

    class EndLogs(Callback):
        def on_train_end(self, logs=None):
            self.logs = logs

    end = EndLogs()
    with pytest.raises(FloatingPointError) as info:
        fit_loop(step, np.zeros(12), np.zeros(12), epochs=3, batch_size=4, callbacks=[end], verbose=0)
    assert isinstance(info.value, NonFiniteLossError)
    assert "epoch 2/3, batch 2/3" in str(info.value)
    assert (info.value.epoch, info.value.batch) == (1, 1)
    assert info.value.history.epoch == [0]
    assert len(calls) == 5, "training went on after the NaN"
    assert end.logs["stopped_on_nan"] is True and (end.logs["epoch"], end.logs["batch"]) == (1, 1)


def test_inf_loss_also_stops():
    with pytest.raises(NonFiniteLossError, match="inf"):
        fit_loop(lambda xb, yb: {"loss": np.float32("inf")}, np.zeros(4), np.zeros(4), verbose=0)


def test_normal_end_reports_stopped_on_nan_false():
    class EndLogs(Callback):
        def on_train_end(self, logs=None):
            self.logs = logs

    end = EndLogs()
    fit_loop(lambda xb, yb: {"loss": 2.0}, np.zeros(4), np.zeros(4), callbacks=[end], verbose=0)
    assert end.logs == {"loss": 2.0, "stopped_on_nan": False}


class Recorder(Callback):
    def __init__(self, events):
        super().__init__()
        self.events = events

    def on_train_begin(self, logs=None):
        self.events.append("train_begin")

    def on_train_end(self, logs=None):
        self.events.append("train_end")

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(f"epoch_begin {epoch}")

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(f"epoch_end {epoch}")

    def on_batch_begin(self, batch, logs=None):
        self.events.append(f"batch_begin {batch}")

    def on_batch_end(self, batch, logs=None):
        self.events.append(f"batch_end {batch}")


def test_callbacks_are_called_in_order_and_see_the_owner():
    events = []
    owner = WeightsOwner()
    recorder = Recorder(events)

    def step(xb, yb):
        events.append("step")
        return {"loss": 0.0}

    fit_loop(step, np.zeros(3), np.zeros(3), epochs=2, batch_size=2, callbacks=[recorder], owner=owner, verbose=0)
    batch = ["batch_begin 0", "step", "batch_end 0", "batch_begin 1", "step", "batch_end 1"]
    assert events == (["train_begin", "epoch_begin 0", *batch, "epoch_end 0",
                       "epoch_begin 1", *batch, "epoch_end 1", "train_end"])
    assert recorder.model is owner
    assert recorder.params == {"epochs": 2, "steps": 2, "verbose": 0}


def test_stop_training_set_by_a_callback_ends_the_epoch_after_that_batch():
    events = []

    class StopAtSecondBatch(Callback):
        def on_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.stop_training = True

    history = fit_loop(recording_step(events), np.zeros(10), np.zeros(10), epochs=3, batch_size=2,
                       callbacks=[StopAtSecondBatch()], verbose=0)
    assert len(events) == 2
    assert history.epoch == [0]


def test_a_history_passed_in_is_the_one_filled_and_returned():
    mine = History()
    returned = fit_loop(lambda xb, yb: {"loss": 1.0}, np.zeros(2), np.zeros(2), epochs=2,
                        callbacks=[mine], verbose=0)
    assert returned is mine and mine.history == {"loss": [1.0, 1.0]}


def test_model_checkpoint_saves_every_epoch_or_only_improvements():
    owner = WeightsOwner()
    tracker, eval_step = scripted_validation([3.0, 2.0, 2.5, 1.0], owner)
    every = ModelCheckpoint("ckpt-{epoch:02d}-{val_loss:.1f}.npz")
    best = ModelCheckpoint("best-{epoch}.npz", save_best_only=True)
    fit_loop(recording_step([]), np.zeros(2), np.zeros(2), epochs=4, validation=(np.zeros(1), np.zeros(1)),
             eval_step=eval_step, callbacks=[tracker, every, best], owner=owner, verbose=0)
    assert owner.saved == ["ckpt-01-3.0.npz", "best-1.npz", "ckpt-02-2.0.npz", "best-2.npz",
                           "ckpt-03-2.5.npz", "ckpt-04-1.0.npz", "best-4.npz"]


def test_evaluate_loop_weights_by_batch_size_in_order():
    seen = []
    x = np.arange(5, dtype=np.float64)
    result = evaluate_loop(recording_step(seen, mean_of_x), x, x, batch_size=2, verbose=0)
    assert result["loss"] == pytest.approx(2.0, abs=1e-12)
    assert [xb.tolist() for xb, _ in seen] == [[0, 1], [2, 3], [4]]


def test_predict_loop_concatenates_in_order():
    x = np.arange(7).reshape(7, 1)
    out = predict_loop(lambda xb: xb * 2, x, batch_size=3)
    np.testing.assert_array_equal(out, x * 2)
    first, second = predict_loop(lambda xb: (xb, -xb), x, batch_size=4)
    np.testing.assert_array_equal(first, x)
    np.testing.assert_array_equal(second, -x)


@pytest.mark.parametrize("fraction, n_train", [(0.2, 8), (0.25, 7), (0.5, 5)])
def test_split_validation_takes_the_last_fraction(fraction, n_train):
    x, y = np.arange(10), np.arange(10) + 100
    (x_train, y_train), (x_val, y_val) = split_validation(x, y, fraction)
    np.testing.assert_array_equal(x_train, x[:n_train])
    np.testing.assert_array_equal(y_train, y[:n_train])
    np.testing.assert_array_equal(x_val, x[n_train:])
    np.testing.assert_array_equal(y_val, y[n_train:])


def test_split_validation_rejects_bad_fractions():
    with pytest.raises(ValueError):
        split_validation(np.zeros(10), np.zeros(10), 1.0)
    with pytest.raises(ValueError, match="too few"):
        split_validation(np.zeros(2), np.zeros(2), 0.9)


def test_runtime_does_not_import_graphc():
    code = "import sys, runtime; sys.exit(any(m == 'graphc' or m.startswith('graphc.') for m in sys.modules))"
    repo_root = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=repo_root).returncode == 0


class ArrayOwner:
    """An owner with real weight arrays that a step can poison, and a record of the paths it saved."""

    def __init__(self):
        self.weights = [np.zeros(3), np.ones(2)]
        self.saved = []

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [w.copy() for w in weights]

    def save(self, path):
        self.saved.append(path)


def test_weights_that_overflow_on_the_last_batch_with_a_finite_loss_stop_training():
    owner = ArrayOwner()
    calls = []

    def step(xb, yb):  # the loss is computed before the update, so it stays finite
        calls.append(len(calls))
        if len(calls) == 6:  # the last batch of epoch 2
            owner.weights[1][0] = np.inf
        return {"loss": 1.0}

    class EndLogs(Callback):
        def on_train_end(self, logs=None):
            self.logs = logs

    end, checkpoint = EndLogs(), ModelCheckpoint("ckpt-{epoch}.npz")
    with pytest.raises(FloatingPointError, match="weight 1 became NaN or infinite in epoch 2/3") as info:
        fit_loop(step, np.zeros(12), np.zeros(12), epochs=3, batch_size=4, callbacks=[end, checkpoint],
                 owner=owner, verbose=0)
    assert isinstance(info.value, loop.NonFiniteWeightsError)
    assert (info.value.epoch, info.value.variable, info.value.history.epoch) == (1, "weight 1", [0])
    assert end.logs == {"stopped_on_nan": True, "epoch": 1, "variable": "weight 1"}
    assert owner.saved == ["ckpt-1.npz"], "the poisoned epoch was saved"


class StateOwner(ArrayOwner):
    """An owner that also exposes an optimizer slot, through state_arrays()."""

    def __init__(self):
        super().__init__()
        self.velocity = np.zeros(3)

    def state_arrays(self):
        return [("kernel", self.weights[0]), ("bias", self.weights[1]), ("kernel/velocity", self.velocity)]


def test_an_optimizer_slot_that_overflows_while_the_weights_stay_finite_stops_training():
    owner = StateOwner()

    def step(xb, yb):  # an inf velocity makes the updates 0: the weights and the loss stay finite
        owner.velocity[1] = np.inf
        return {"loss": 1.0}

    checkpoint = ModelCheckpoint("ckpt-{epoch}.npz")
    with pytest.raises(loop.NonFiniteWeightsError, match="kernel/velocity became NaN or infinite in epoch 1/2"):
        fit_loop(step, np.zeros(4), np.zeros(4), epochs=2, callbacks=[checkpoint], owner=owner, verbose=0)
    assert owner.saved == []


@pytest.mark.parametrize("mode, values", [("min", [3.0, -math.inf, 2.0]), ("max", [1.0, math.inf, 2.0]),
                                          ("min", [3.0, math.nan, 2.0])])
def test_a_non_finite_monitored_value_is_never_the_best(mode, values):
    owner = WeightsOwner()
    tracker, eval_step = scripted_validation(values, owner)
    best = ModelCheckpoint("best-{epoch}.npz", save_best_only=True, mode=mode)
    stopper = EarlyStopping(patience=2, mode=mode, restore_best_weights=True)
    fit_loop(recording_step([]), np.zeros(2), np.zeros(2), epochs=3, validation=(np.zeros(1), np.zeros(1)),
             eval_step=eval_step, callbacks=[tracker, best, stopper], owner=owner, verbose=0)
    assert owner.saved == ["best-1.npz", "best-3.npz"]
    assert stopper.best_epoch == 2 and owner.restored == [2]


def test_model_checkpoint_skips_non_finite_weights_with_a_warning():
    owner = ArrayOwner()

    class PoisonAfterCheck(Callback):  # runs after the loop's own end-of-epoch check
        def on_epoch_end(self, epoch, logs=None):
            owner.weights[0][2] = np.nan

    with pytest.warns(RuntimeWarning, match=r"not saving ckpt\.npz: weight 0 is NaN or infinite"):
        fit_loop(recording_step([]), np.zeros(2), np.zeros(2), callbacks=[PoisonAfterCheck(), ModelCheckpoint("ckpt.npz")],
                 owner=owner, verbose=0)
    assert owner.saved == []


def test_model_checkpoint_into_a_missing_directory_fails_before_training(tmp_path):
    steps = []
    missing = tmp_path / "no-such-dir"
    with pytest.raises(FileNotFoundError, match=re.escape(f"no directory {missing}")):
        fit_loop(recording_step(steps), np.zeros(2), np.zeros(2),
                 callbacks=[ModelCheckpoint(missing / "ckpt-{epoch}.npz")], owner=WeightsOwner(), verbose=0)
    assert steps == []
