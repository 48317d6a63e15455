"""compile(steps_per_execution=...): many training batches per native call, the same weights and history bit for bit
as a call per batch, callbacks that see every batch, and the NaN rule."""
import io
import time

import numpy as np
import pytest

from graphc.keras import callbacks, layers, models
from graphc.keras.utils import set_random_seed
from runtime.loop import Callback, NonFiniteLossError, fit_loop

SAMPLES, FEATURES, CLASSES = 203, 6, 3


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((SAMPLES, FEATURES)).astype(np.float32)
    return x, np.eye(CLASSES, dtype=np.float32)[rng.integers(0, CLASSES, SAMPLES)]


def trained(steps_per_execution, x, y, epochs=3, **fit_options):
    """A small MLP (dropout: the random step counter advances every step) after fit; its history and weights."""
    set_random_seed(7)
    model = models.Sequential([layers.Input((FEATURES,)), layers.Dense(9, activation="relu"), layers.Dropout(0.3),
                               layers.Dense(CLASSES, activation="softmax")])
    model.compile("rmsprop", "categorical_crossentropy", ["accuracy"], steps_per_execution=steps_per_execution)
    history = model.fit(x, y, batch_size=16, epochs=epochs, **{"verbose": 0, **fit_options})
    return model, history.history


def assert_same_weights(one, other):
    for a, b in zip(one._state(), other._state()):
        np.testing.assert_array_equal(a.value, b.value, err_msg=a.name)


@pytest.mark.parametrize("steps_per_execution", [None, 7])
def test_fit_gives_the_weights_and_history_of_a_call_per_batch(steps_per_execution):
    x, y = data()
    weights = np.random.default_rng(1).uniform(0.5, 2, SAMPLES).astype(np.float32)
    options = {"validation_split": 0.2, "sample_weight": weights}  # 162 training samples: a last batch of 2
    per_batch, expected = trained(1, x, y, **options)
    chunked, history = trained(steps_per_execution, x, y, **options)
    assert history == expected
    assert_same_weights(chunked, per_batch)
    np.testing.assert_array_equal(chunked.predict(x, verbose=0), per_batch.predict(x, verbose=0))


def test_with_a_progress_line_the_epoch_runs_in_chunks_and_the_numbers_stay_the_same(capsys):
    x, y = data()
    per_batch, expected = trained(1, x, y, epochs=2, verbose=1)
    chunked, history = trained(None, x, y, epochs=2, verbose=1)
    assert history == expected
    assert_same_weights(chunked, per_batch)
    assert capsys.readouterr().out.count("13/13") == 4


class BatchRecorder(Callback):
    def __init__(self):
        super().__init__()
        self.batches = []

    def on_batch_end(self, batch, logs=None):
        self.batches.append((batch, dict(logs)))


class KerasBatchRecorder(BatchRecorder):
    """Overrides Keras 3's name of the hook only."""

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append((batch, dict(logs)))


@pytest.mark.parametrize("steps_per_execution, recorder", [(None, BatchRecorder), (5, KerasBatchRecorder)])
def test_callbacks_with_batch_hooks_see_every_batch(steps_per_execution, recorder):
    x, y = data()
    recorders = {}
    for spe in (1, steps_per_execution):
        lambda_batches = []
        recorders[spe] = (recorder(), lambda_batches)
        lambda_callback = callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: lambda_batches.append(batch))
        set_random_seed(3)
        model = models.Sequential([layers.Input((FEATURES,)), layers.Dense(CLASSES, activation="softmax")])
        model.compile("adam", "categorical_crossentropy", steps_per_execution=spe)
        model.fit(x, y, batch_size=50, epochs=2, verbose=0, callbacks=[recorders[spe][0], lambda_callback])
    recorder, lambda_batches = recorders[steps_per_execution]
    assert [batch for batch, _ in recorder.batches] == [0, 1, 2, 3, 4] * 2 == lambda_batches
    assert recorder.batches == recorders[1][0].batches  # the same running means after every batch


class StopAtEpochBegin(Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.model.stop_training = True


def test_a_callback_stopping_training_before_the_first_batch_stops_after_it_as_a_call_per_batch_does():
    x, y = data()
    per_batch, expected = trained(1, x, y, callbacks=[StopAtEpochBegin()])
    chunked, history = trained(None, x, y, callbacks=[StopAtEpochBegin()])
    assert history == expected and len(history["loss"]) == 1
    assert_same_weights(chunked, per_batch)
    assert chunked.optimizer.iterations.value == 1


def test_a_non_finite_loss_stops_at_that_batch_and_restores_the_epochs_start_as_a_call_per_batch_does():
    x, y = data()
    x[5 * 16 + 3] = np.inf  # a sample of batch 5 (0-based), epoch 2 (1-based), visited in order
    outcomes = []
    for spe in (1, None, 4):
        set_random_seed(7)
        model = models.Sequential([layers.Input((FEATURES,)), layers.Dropout(0.2),
                                   layers.Dense(CLASSES, activation="softmax")])
        model.compile("rmsprop", "categorical_crossentropy", steps_per_execution=spe)
        model.fit(x[:80], y[:80], batch_size=16, epochs=1, verbose=0)  # every batch before the bad one
        start = [v.value for v in model._state()]
        with pytest.raises(NonFiniteLossError) as caught:
            model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, initial_epoch=1)
        assert (caught.value.epoch, caught.value.batch) == (1, 5)
        assert "loss became nan at epoch 2/2, batch 6/13" in str(caught.value)
        for variable, value in zip(model._state(), start):
            np.testing.assert_array_equal(variable.value, value, err_msg=variable.name)
        # Every variable the step updates, dropout's step counter too (the restore leaves it): no step ran after
        # the bad batch.
        outcomes.append([v.storage.copy() for v, _ in model.graphc_function().optimized_graph.updates])
    for outcome in outcomes[1:]:
        for a, b in zip(outcome, outcomes[0]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("value", [0, -3, 1.5, True, "epoch"])
def test_steps_per_execution_must_be_a_positive_integer_or_none(value):
    model = models.Sequential([layers.Input((FEATURES,)), layers.Dense(CLASSES)])
    with pytest.raises(ValueError, match=f"steps_per_execution must be a positive integer or None .*got {value!r}"):
        model.compile("sgd", "mse", steps_per_execution=value)


# ---- fit_loop's chunks -----------------------------------------------------------------------------
def recorded_fit(verbose, steps_per_execution, seconds_per_step=0.0, steps=40):
    """fit_loop over ``steps`` batches with a train_steps that takes ``seconds_per_step`` a step and runs the chunks
    its ``progress`` asks for, as gc.Function.run_steps does; the size of every chunk."""
    calls = []

    def train_steps(x, y, index_batches, progress):
        done, count = 0, progress(0, {"loss": np.zeros(0, np.float32)})
        while done < len(index_batches) and count > 0:
            count = min(count, len(index_batches) - done)
            calls.append(count)
            time.sleep(seconds_per_step * count)
            done += count
            count = progress(done, {"loss": np.full(done, 0.5, np.float32)})

    def train_step(xb, yb):
        raise AssertionError("every batch should go through train_steps")
    x = np.zeros((steps * 4, 2), np.float32)
    fit_loop(train_step, x, x, batch_size=4, verbose=verbose, stream=io.StringIO(), train_steps=train_steps,
             steps_per_execution=steps_per_execution)
    return calls


def test_a_whole_epoch_per_call_unless_a_progress_line_needs_updates_every_tenth_of_a_second():
    assert recorded_fit(0, None) == [40]
    assert recorded_fit(2, None) == [40]
    assert recorded_fit(1, 6) == [6] * 6 + [4]
    calls = recorded_fit(1, None, seconds_per_step=0.004, steps=60)
    # One step first, then what took about 0.05 s: at most 12 steps of 4 ms (the sleep never ends early).
    assert calls[0] == 1 and sum(calls) == 60 and max(calls) <= 12 and len(calls) < 40


def test_steps_per_execution_is_a_compile_setting_that_saving_keeps(tmp_path):
    model = models.Sequential([layers.Dense(2, input_shape=(3,))])
    model.compile("sgd", "mse", steps_per_execution=7)
    assert model.get_compile_config()["steps_per_execution"] == 7
    model.save(tmp_path / "m.npz")
    assert models.load_model(tmp_path / "m.npz").get_compile_config()["steps_per_execution"] == 7


def test_fit_compiles_only_the_train_program_that_reads_the_batches_in_place():
    x, y = data()
    model, _ = trained(None, x, y, epochs=1)
    train = model._functions["train", False].function
    assert train._program is None and len(train._gathering) == 1
    model.train_on_batch(x[:16], y[:16])  # a call compiles the train program itself
    assert train._program is not None
