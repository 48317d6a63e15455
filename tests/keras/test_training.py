"""fit: convergence on small problems, History, validation, reproducibility, callbacks and bad input."""
import numpy as np
import pytest

from graphc.keras import callbacks, layers, models, optimizers
from graphc.keras.utils import set_random_seed, to_categorical
from runtime.loop import NonFiniteLossError, NonFiniteWeightsError


def separable_data(n=200, seed=0):
    """Two classes on either side of the line x0 + 2 x1 = 0.5, with a margin."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, 2)).astype(np.float32)
    score = x[:, 0] + 2 * x[:, 1] - 0.5
    x, score = x[np.abs(score) > 0.1], score[np.abs(score) > 0.1]
    return x, (score > 0).astype(np.int64)


def classifier(units, activation, loss, optimizer=None, metrics=("accuracy",)):
    model = models.Sequential([layers.Dense(units, activation=activation, input_shape=(2,))])
    model.compile(optimizer=optimizer or optimizers.Adam(0.1), loss=loss, metrics=list(metrics))
    return model


@pytest.mark.parametrize("units, activation, loss, encode", [
    (2, "softmax", "categorical_crossentropy", lambda labels: to_categorical(labels, 2)),
    (2, "softmax", "sparse_categorical_crossentropy", lambda labels: labels),
    (1, "sigmoid", "binary_crossentropy", lambda labels: labels.astype(np.float32)),
])
def test_a_linearly_separable_problem_is_learned(units, activation, loss, encode):
    set_random_seed(0)
    x, labels = separable_data()
    model = classifier(units, activation, loss)
    history = model.fit(x, encode(labels), epochs=15, batch_size=16, verbose=0)
    assert history.history["accuracy"][-1] > 0.95
    assert history.history["loss"][-1] < history.history["loss"][0] / 2
    _, accuracy = model.evaluate(x, encode(labels), verbose=0)
    predicted = model.predict(x, verbose=0)
    predicted = predicted.argmax(-1) if units == 2 else (predicted[:, 0] > 0.5)
    assert accuracy > 0.95 and accuracy == pytest.approx(np.mean(predicted == labels))


def test_regression_with_mse_and_sgd_finds_the_linear_map():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(256, 3)).astype(np.float32)
    true_kernel = np.array([[1.0, -1.0], [2.0, 0.5], [-0.5, 3.0]], np.float32)
    y = x @ true_kernel + np.array([0.3, -0.2], np.float32)
    model = models.Sequential([layers.Dense(2, input_shape=(3,))])
    model.compile(optimizers.SGD(0.1, momentum=0.5), "mse")
    model.fit(x, y, epochs=20, batch_size=32, verbose=0)
    kernel, bias = model.get_weights()
    np.testing.assert_allclose(kernel, true_kernel, atol=1e-2)
    np.testing.assert_allclose(bias, [0.3, -0.2], atol=1e-2)
    assert model.evaluate(x, y, verbose=0) < 1e-4


def test_history_has_keras_keys_one_value_per_epoch():
    x, labels = separable_data()
    model = classifier(2, "softmax", "sparse_categorical_crossentropy")
    history = model.fit(x, labels, epochs=3, batch_size=32, validation_split=0.25, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(values) == 3 for values in history.history.values())
    assert history.epoch == [0, 1, 2] and model.history is history
    x_val, y_val = x[-len(x) // 4:], labels[-len(x) // 4:]
    val_loss, val_accuracy = model.evaluate(x_val, y_val, verbose=0)
    assert history.history["val_loss"][-1] == pytest.approx(val_loss, rel=1e-5)
    assert history.history["val_accuracy"][-1] == pytest.approx(val_accuracy)

    resumed = model.fit(x, labels, epochs=5, initial_epoch=3, validation_data=(x[:10], labels[:10]), verbose=0)
    assert resumed.epoch == [3, 4] and len(resumed.history["val_loss"]) == 2


def test_the_same_seed_trains_to_the_same_weights():
    x, labels = separable_data()

    def train(seed):
        set_random_seed(seed)
        model = models.Sequential([layers.Dense(4, activation="relu", input_shape=(2,)),
                                   layers.Dense(2, activation="softmax")])
        model.compile("rmsprop", "sparse_categorical_crossentropy", ["accuracy"])
        model.fit(x, labels, epochs=2, batch_size=16, verbose=0)
        return model.get_weights()

    first, second, other = train(7), train(7), train(8)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


def test_a_callback_can_stop_training():
    class StopAfterFirstEpoch(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    x, labels = separable_data()
    model = classifier(2, "softmax", "sparse_categorical_crossentropy")
    history = model.fit(x, labels, epochs=5, verbose=0, callbacks=[StopAfterFirstEpoch()])
    assert len(history.history["loss"]) == 1 and model.stop_training


def test_a_nan_loss_stops_training_and_keeps_the_last_good_weights():
    x, labels = separable_data()
    model = classifier(2, "softmax", "sparse_categorical_crossentropy", optimizer=optimizers.SGD(0.1))
    model.fit(x, labels, epochs=1, verbose=0)
    good, iterations = model.get_weights(), model.optimizer.iterations.value
    poisoned = x.copy()
    poisoned[40] = np.nan  # in the third batch of 16
    with pytest.raises(NonFiniteLossError, match="loss became nan at epoch 1/1, batch 3") as error:
        model.fit(poisoned, labels, epochs=1, batch_size=16, shuffle=False, verbose=0)
    assert "restored to those at the start of epoch 1" in error.value.__notes__[0]
    for restored, before in zip(model.get_weights(), good):
        np.testing.assert_array_equal(restored, before)
    assert model.optimizer.iterations.value == iterations


class LearningRateJump(callbacks.Callback):
    """Sets SGD's learning rate to 1e38 before the given epoch and batch: that step's loss is still finite (it is
    computed before the update), but the update overflows the weights to inf."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at = (epoch, batch)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            self.model.optimizer.learning_rate = 1e38


def overflowing_regression():
    model = models.Sequential([layers.Dense(1, input_shape=(2,))])
    model.compile(optimizers.SGD(1e-3), "mse")
    return model, np.full((24, 2), 10, np.float32), np.zeros((24, 1), np.float32)


def test_weights_that_overflow_on_the_last_batch_are_restored_and_reported():
    model, x, y = overflowing_regression()
    before = model.get_weights()
    with pytest.raises(FloatingPointError, match=f"{model.weights[0].name} became NaN or infinite in epoch 1/1"):
        model.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0, callbacks=[LearningRateJump(0, 2)])
    for restored, original in zip(model.get_weights(), before):
        np.testing.assert_array_equal(restored, original)


def test_the_best_checkpoint_never_holds_overflowed_weights(tmp_path):
    model, x, y = overflowing_regression()
    best = callbacks.ModelCheckpoint(tmp_path / "best.npz", monitor="loss", save_best_only=True)
    with pytest.raises(FloatingPointError, match="in epoch 2/2"):
        model.fit(x, y, epochs=2, batch_size=24, verbose=0, callbacks=[LearningRateJump(1, 0), best])
    saved = models.load_model(tmp_path / "best.npz").get_weights()
    assert all(np.isfinite(w).all() for w in saved)
    for restored, kept in zip(model.get_weights(), saved):  # the epoch-1 weights: both the file's and the model's
        np.testing.assert_array_equal(restored, kept)


def test_an_optimizer_slot_that_overflows_while_the_weights_stay_finite_is_restored_and_named(tmp_path):
    """Gradients of 1e25 square to inf in Adam's velocity: the kernel's updates become 0, so its weights and the
    loss stay finite while training silently freezes, and a checkpoint would hold the inf slot."""
    model = models.Sequential([layers.Dense(1, kernel_initializer="zeros", input_shape=(2,))])
    model.compile(optimizers.Adam(), "mse")
    before = [v.value for v in model._state()]
    x, y = np.full((8, 2), 1e25, np.float32), np.ones((8, 1), np.float32)
    every_epoch = callbacks.ModelCheckpoint(tmp_path / "ckpt.npz")
    with pytest.raises(NonFiniteWeightsError, match=f"^{model.weights[0].name}/velocity became NaN or infinite"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[every_epoch])
    for restored, original in zip(model._state(), before):
        np.testing.assert_array_equal(restored.value, original)
    assert not (tmp_path / "ckpt.npz").exists()


def test_compile_passes_the_backend_to_gc_function():
    model = models.Sequential([layers.Dense(2, input_shape=(2,))])
    model.compile("sgd", "mse", backend="reference")
    model.fit(np.ones((4, 2), np.float32), np.ones((4, 2), np.float32), verbose=0)
    with pytest.raises(ValueError, match="unknown backend 'nonexistent'"):
        model.compile("sgd", "mse", backend="nonexistent")


# ---- bad input -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mnist_like():
    model = models.Sequential([layers.Dense(10, activation="softmax", input_shape=(784,))])
    model.compile("rmsprop", "categorical_crossentropy", ["accuracy"])
    return model


def test_integer_labels_with_categorical_crossentropy_suggest_the_fixes(mnist_like):
    with pytest.raises(ValueError, match=r"categorical_crossentropy expects one-hot targets of shape "
                                         r"\(None, 10\), got y of shape \(5,\).*to_categorical\(y, 10\).*"
                                         r"sparse_categorical_crossentropy"):
        mnist_like.fit(np.zeros((5, 784)), np.arange(5), verbose=0)


def test_wrong_feature_count_suggests_a_reshape(mnist_like):
    with pytest.raises(ValueError, match=r"expects inputs of shape \(None, 784\), got x of shape \(5, 28, 28\); "
                                         r"reshape it, e.g. x.reshape\(\(5, 784\)\)"):
        mnist_like.fit(np.zeros((5, 28, 28)), np.eye(10)[:5], verbose=0)
    with pytest.raises(ValueError, match=r"got x of shape \(5, 100\)$"):
        mnist_like.predict(np.zeros((5, 100)))


def test_mismatched_sample_counts(mnist_like):
    with pytest.raises(ValueError, match="x has 6 samples but y has 5"):
        mnist_like.fit(np.zeros((6, 784)), np.eye(10)[:5], verbose=0)


def test_targets_of_the_wrong_shape_or_range():
    model = classifier(2, "softmax", "categorical_crossentropy")
    with pytest.raises(ValueError, match=r"expects targets of shape \(None, 2\).*got y of shape \(4, 3\)"):
        model.fit(np.zeros((4, 2)), np.zeros((4, 3)), verbose=0)
    sparse = classifier(2, "softmax", "sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"class labels must be in 0..1 .*got values from 0 to 2"):
        sparse.fit(np.zeros((3, 2)), np.array([0, 1, 2]), verbose=0)
    with pytest.raises(ValueError, match="one-hot rows\\? use loss='categorical_crossentropy'"):
        sparse.fit(np.zeros((3, 2)), np.eye(2)[[0, 1, 1]], verbose=0)
    with pytest.raises(ValueError, match="non-integral"):
        sparse.fit(np.zeros((3, 2)), np.array([0.5, 1, 0]), verbose=0)
    with pytest.raises(ValueError, match="targets must be numbers, got dtype <U3"):
        sparse.fit(np.zeros((3, 2)), np.array(["cat", "dog", "cat"]), verbose=0)


def test_unknown_names_and_missing_compile():
    model = models.Sequential([layers.Dense(2, input_shape=(2,))])
    with pytest.raises(ValueError, match="unknown loss 'squared_hinge'; known: .*categorical_crossentropy, "
                                         "sparse_categorical_crossentropy, .*mean_squared_error"):
        model.compile("sgd", "squared_hinge")
    with pytest.raises(ValueError, match="unknown optimizer 'nag'"):
        model.compile("nag", "mse")
    with pytest.raises(ValueError, match="unknown metric 'auc'; known metrics: accuracy, acc, "
                                         "categorical_accuracy"):
        model.compile("sgd", "mse", metrics=["auc"])
    with pytest.raises(RuntimeError, match="you must call compile\\(\\) before fit\\(\\)"):
        models.Sequential([layers.Dense(2, input_shape=(2,))]).fit(np.zeros((2, 2)), np.zeros((2, 2)))
    model.compile("sgd")
    with pytest.raises(ValueError, match="compile the model with a loss"):
        model.fit(np.zeros((2, 2)), np.zeros((2, 2)), verbose=0)
