"""fit's Keras options -- sample_weight, class_weight, generators and iterables of batches, steps_per_epoch,
validation_freq -- and the one-batch methods, each checked against plain training or numpy."""
import numpy as np
import pytest

from graphc import keras
from graphc.keras import layers
from graphc.keras.utils import clear_session, set_random_seed


def regression(seed=0, backend="reference"):
    clear_session()
    set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), layers.Dense(2)])
    model.compile("sgd", "mse", backend=backend)
    return model


def data(samples=8):
    rng = np.random.default_rng(5)
    return rng.normal(size=(samples, 3)).astype(np.float32), rng.normal(size=(samples, 2)).astype(np.float32)


def test_sample_weights_scale_each_samples_loss_as_keras():
    model = regression()
    x, y = data(4)
    weights = np.array([1.0, 0.0, 2.0, 0.5], np.float32)
    per_sample = ((model.predict(x, verbose=0) - y) ** 2).mean(axis=1)
    np.testing.assert_allclose(model.test_on_batch(x, y, sample_weight=weights), (per_sample * weights).mean(),
                               rtol=1e-6)
    # A weight of 2 on one sample of two (and 0 on the other) is the same step as that sample alone.
    alone, pair = regression(), regression()
    alone.train_on_batch(x[:1], y[:1])
    pair.train_on_batch(x[:2], y[:2], sample_weight=np.array([2.0, 0.0]))
    for a, b in zip(alone.get_weights(), pair.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    with pytest.raises(ValueError, match=r"sample_weight must have one weight per sample, shape \(4,\), got \(3,\)"):
        model.fit(x, y, sample_weight=weights[:3], verbose=0)


def classifier():
    clear_session()
    set_random_seed(1)
    model = keras.Sequential([keras.Input((3,)), layers.Dense(3, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy", backend="reference")
    return model


def test_class_weight_is_the_sample_weight_of_each_label():
    x, _ = data(6)
    labels = np.array([0, 1, 2, 2, 1, 0])
    by_class, by_sample = classifier(), classifier()
    by_class.train_on_batch(x, labels, class_weight={0: 3.0, 2: 0.5})
    by_sample.train_on_batch(x, labels, sample_weight=np.array([3.0, 1, 0.5, 0.5, 1, 3.0]))
    for a, b in zip(by_class.get_weights(), by_sample.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    one_hot = np.eye(3, dtype=np.float32)[labels]
    onehot_model = keras.Sequential([keras.Input((3,)), layers.Dense(3, activation="softmax")])
    onehot_model.compile("sgd", "categorical_crossentropy", backend="reference")
    onehot_model.set_weights(by_class.get_weights())
    assert onehot_model.test_on_batch(x, one_hot, sample_weight=np.array([3.0, 1, 0.5, 0.5, 1, 3.0])) == \
        pytest.approx(by_class.test_on_batch(x, labels, sample_weight=np.array([3.0, 1, 0.5, 0.5, 1, 3.0])))
    with pytest.raises(ValueError, match="class_weight must be a dict"):
        by_class.fit(x, labels, class_weight=[1, 2, 3], verbose=0)


def test_a_generator_trains_as_the_same_batches_of_arrays():
    x, y = data(8)
    arrays, streamed = regression(), regression()
    arrays.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)

    def batches():
        while True:
            for start in (0, 4):
                yield x[start:start + 4], y[start:start + 4]

    history = streamed.fit(batches(), steps_per_epoch=2, epochs=2, verbose=0)
    for a, b in zip(arrays.get_weights(), streamed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert len(history.history["loss"]) == 2
    # an iterable (re-iterated every epoch) and evaluate on one
    listed = regression()
    listed.fit([(x[:4], y[:4]), (x[4:], y[4:])], epochs=2, verbose=0)
    for a, b in zip(arrays.get_weights(), listed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert listed.evaluate([(x, y)], verbose=0) == pytest.approx(listed.evaluate(x, y, verbose=0))
    np.testing.assert_allclose(listed.predict(iter([x[:3], x[3:]]), verbose=0), listed.predict(x, verbose=0))


def test_a_used_up_generator_ends_training_with_a_warning():
    x, y = data(8)
    model = regression()
    with pytest.warns(RuntimeWarning, match="ran out at epoch 2/3"):
        history = model.fit(((x[i:i + 4], y[i:i + 4]) for i in (0, 4)), epochs=3, verbose=0)
    assert len(history.history["loss"]) == 1


def test_generator_batches_are_checked_before_their_step():
    x, y = data(8)
    model = regression()
    before = model.get_weights()

    def bad():
        yield x[:4], y[:4]
        yield x[4:, :2], y[4:]

    with pytest.raises(ValueError, match=r"expects inputs of shape \(None, 3\), got x of batch 1 of the generator "
                                         r"of shape \(4, 2\)"):
        model.fit(bad(), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="batch 0 of the generator must be a tuple"):
        model.fit(iter([x]), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="x has 4 samples but y has 3"):
        model.fit(iter([(x[:4], y[:3])]), epochs=1, verbose=0)
    assert not np.array_equal(before[0], model.get_weights()[0])  # the good first batch did train


def test_validation_freq_picks_the_epochs_validated():
    x, y = data(8)
    model = regression()
    history = model.fit(x, y, epochs=4, validation_data=(x, y), validation_freq=2, verbose=0)
    assert len(history.history["loss"]) == 4 and len(history.history["val_loss"]) == 2
    history = model.fit(x, y, epochs=3, validation_split=0.25, validation_freq=[1, 3], verbose=0)
    assert len(history.history["val_loss"]) == 2
    with pytest.raises(ValueError, match="validation_freq must be a positive integer or a list"):
        model.fit(x, y, validation_data=(x, y), validation_freq=0, verbose=0)


def test_one_batch_methods_and_calling_the_model():
    model = regression()
    x, y = data(4)
    loss = model.test_on_batch(x, y)
    np.testing.assert_allclose(loss, ((model(x) - y) ** 2).mean(), rtol=1e-6)
    assert model.train_on_batch(x, y) == pytest.approx(loss)
    assert model.test_on_batch(x, y) < loss
    assert model.optimizer.iterations.value == 1
    np.testing.assert_array_equal(model.predict_on_batch(x), model.predict(x, verbose=0))


def test_train_on_batch_refuses_a_non_finite_step_and_puts_the_state_back():
    model = regression()
    model.optimizer.learning_rate = 1e30
    x, y = data(4)
    before = model.get_weights()
    with pytest.raises(FloatingPointError, match="train_on_batch: .* became NaN or infinite"):
        for _ in range(3):
            model.train_on_batch(x * 1e10, y)
            before = model.get_weights()
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_custom_loss_gets_integer_labels_unchanged():
    seen = {}

    def pick_loss(y_true, y_pred):
        import graphc as gc
        seen["dtype"] = y_true.dtype
        return -gc.log(gc.sum(gc.one_hot(y_true, 3) * y_pred, -1))

    clear_session()
    model = keras.Sequential([keras.Input((3,)), layers.Dense(3, activation="softmax")])
    model.compile("sgd", pick_loss, backend="reference")
    x, _ = data(4)
    labels = np.array([0, 2, 1, 2])
    loss = model.evaluate(x, labels, verbose=0)
    probabilities = model.predict(x, verbose=0)
    assert seen["dtype"] == "int64"
    np.testing.assert_allclose(loss, -np.log(probabilities[np.arange(4), labels]).mean(), rtol=1e-5)
    with pytest.raises(ValueError, match="compiled for targets of shape \\(None,\\) and dtype int64"):
        model.evaluate(x, labels.astype(np.float32), verbose=0)


def test_llvm_backend_runs_the_weighted_step():
    model = regression(backend=None)
    x, y = data(8)
    reference = regression()
    weights = np.linspace(0, 2, 8).astype(np.float32)
    model.fit(x, y, sample_weight=weights, batch_size=4, shuffle=False, epochs=2, verbose=0)
    reference.fit(x, y, sample_weight=weights, batch_size=4, shuffle=False, epochs=2, verbose=0)
    for a, b in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_class_weight_weighs_the_training_part_only_and_unlisted_classes_weigh_one():
    """Review findings: class_weight leaked into val_loss under validation_split, a -1 label took the weight of the
    highest class, and Keras refuses class_weight with sample_weight."""
    clear_session()
    set_random_seed(3)
    model = keras.Sequential([keras.Input((3,)), layers.Dense(1, activation="sigmoid")])
    model.compile(keras.optimizers.SGD(0.0), "binary_crossentropy", backend="reference")
    x, _ = data(8)
    labels = np.array([0, 1, 1, 0, 1, 0, 1, 1], np.float32)
    history = model.fit(x, labels, epochs=1, batch_size=8, validation_split=0.25, class_weight={0: 1.0, 1: 10.0},
                        shuffle=False, verbose=0)
    assert history.history["val_loss"][0] == pytest.approx(model.evaluate(x[6:], labels[6:], verbose=0), rel=1e-6)

    hinge = keras.Sequential([keras.Input((3,)), layers.Dense(1)])
    hinge.compile("sgd", "hinge", backend="reference")
    signs = np.array([-1, 1, -1, 1], np.float32)
    per_sample = np.maximum(1 - signs[:, None] * hinge.predict(x[:4], verbose=0), 0)[:, 0]
    weights = np.where(signs == 1, 5.0, 1.0)
    assert hinge.test_on_batch(x[:4], signs, sample_weight=weights) == pytest.approx((per_sample * weights).mean())
    before = hinge.get_weights()
    weighted = keras.Sequential([keras.Input((3,)), layers.Dense(1)])
    weighted.compile("sgd", "hinge", backend="reference")
    weighted.set_weights(before)
    hinge.train_on_batch(x[:4], signs, class_weight={1: 5.0})
    weighted.train_on_batch(x[:4], signs, sample_weight=weights)
    for a, b in zip(hinge.get_weights(), weighted.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    with pytest.raises(ValueError, match="class_weight and sample_weight cannot be used at the same time"):
        hinge.train_on_batch(x[:4], signs, sample_weight=weights, class_weight={1: 5.0})
    with pytest.raises(ValueError, match="class_weight keys must be integer class labels, got 'a'"):
        hinge.train_on_batch(x[:4], signs, class_weight={"a": 1.0})


def test_accuracy_with_a_custom_loss_and_integer_labels_is_sparse_as_keras():
    import graphc as gc

    def pick_loss(y_true, y_pred):
        return -gc.log(gc.sum(gc.one_hot(y_true, 3) * y_pred, -1))

    clear_session()
    set_random_seed(4)
    model = keras.Sequential([keras.Input((3,)), layers.Dense(3, activation="softmax")])
    model.compile("sgd", pick_loss, metrics=["accuracy"], backend="reference")
    x, _ = data(8)
    labels = np.array([0, 2, 1, 2, 0, 1, 1, 2])
    _, accuracy = model.evaluate(x, labels, verbose=0)
    assert accuracy == pytest.approx((model.predict(x, verbose=0).argmax(1) == labels).mean())


def test_integer_inputs_take_integral_floats_as_keras_casts():
    clear_session()
    tokens = keras.Input((2,), dtype="int32")
    model = keras.Model(tokens, layers.Flatten()(layers.Embedding(5, 3)(tokens)))
    ids = np.array([[1.0, 4.0], [0.0, 2.0]])
    np.testing.assert_array_equal(model.predict(ids, verbose=0), model.predict(ids.astype(np.int32), verbose=0))
    with pytest.raises(ValueError, match="takes int32 values \\(indices\\), got x with non-integral values"):
        model.predict(ids + 0.5, verbose=0)


def test_one_batch_methods_compile_only_the_step_they_run(monkeypatch):
    compiled = []
    model = regression()
    original = model._function
    monkeypatch.setattr(model, "_function", lambda *a, **k: compiled.append(1) or original(*a, **k))
    x, y = data(4)
    model.train_on_batch(x, y)
    assert len(compiled) == 1
