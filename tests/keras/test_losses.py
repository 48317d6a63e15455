"""Each loss, as function and as object, against Keras 3's formula written out in numpy; stability at extreme
logits; names, objects and saved forms."""
import numpy as np
import pytest

import graphc as gc
from graphc.keras import losses
from graphc.testing import assert_close, check_grad

EPS = 1e-7


def clipped(p):
    """Probabilities clipped to [eps, 1 - eps] in float32, as Keras computes them."""
    return np.clip(p.astype(np.float32), np.float32(EPS), np.float32(1 - EPS)).astype(np.float64)
rng = np.random.default_rng(7)


def run(loss, y_true, y_pred, backend="reference"):
    """``loss`` on placeholders fed ``y_true`` and ``y_pred``: the per-sample values and d(sum)/d(y_pred)."""
    t = gc.placeholder((None, *y_true.shape[1:]), dtype=str(y_true.dtype))
    p = gc.placeholder((None, *y_pred.shape[1:]))
    values = loss(t, p)
    step = gc.function([t, p], [values, gc.grad(gc.sum(values), p)], backend=backend)
    return step(y_true, y_pred)


def probabilities(shape):
    e = np.exp(rng.standard_normal(shape))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def one_hot(labels, classes):
    return np.eye(classes, dtype=np.float32)[labels]


def np_log_softmax(x):
    x = x.astype(np.float64)
    shifted = x - x.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def np_categorical(y, p, from_logits=False, label_smoothing=0.0):
    if label_smoothing:
        y = y * (1 - label_smoothing) + label_smoothing / y.shape[-1]
    log_p = np_log_softmax(p) if from_logits else np.log(clipped(p / p.sum(-1, keepdims=True)))
    return -(y * log_p).sum(-1)


def np_binary(y, p, from_logits=False, label_smoothing=0.0):
    y, p = y.astype(np.float64), p.astype(np.float64)
    if label_smoothing:
        y = y * (1 - label_smoothing) + 0.5 * label_smoothing
    if from_logits:
        return (np.logaddexp(0, p) - p * y).mean(-1)
    p = clipped(p)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(-1)


def np_hinge(y, p):
    if np.all((y == 0) | (y == 1)):
        y = 2 * y - 1
    return np.maximum(1 - y * p, 0).mean(-1)


def np_huber(y, p, delta=1.0):
    e = p - y
    return np.where(np.abs(e) <= delta, 0.5 * e**2, delta * np.abs(e) - 0.5 * delta**2).mean(-1)


@pytest.mark.parametrize("shape", [(1, 2), (7, 129), (3, 5, 7)])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_categorical_crossentropy_from_probabilities_and_logits(shape, label_smoothing):
    y = one_hot(rng.integers(0, shape[-1], shape[:-1]), shape[-1])
    logits = (rng.standard_normal(shape) * 3).astype(np.float32)
    p = probabilities(shape)
    assert_close(run(losses.CategoricalCrossentropy(label_smoothing=label_smoothing), y, p)[0],
                 np_categorical(y, p, label_smoothing=label_smoothing), rtol=1e-5, atol=1e-6)
    assert_close(run(losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing), y,
                     logits)[0], np_categorical(y, logits, True, label_smoothing), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 2), (7, 129)])
def test_sparse_categorical_crossentropy_equals_the_one_hot_form(shape):
    labels = rng.integers(0, shape[-1], shape[:-1])
    logits = (rng.standard_normal(shape) * 3).astype(np.float32)
    expected = np_categorical(one_hot(labels, shape[-1]), logits, from_logits=True)
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    assert_close(run(loss, labels, logits)[0], expected, rtol=1e-5, atol=1e-6)
    assert_close(run(loss, labels[:, None], logits)[0], expected, rtol=1e-5, atol=1e-6)  # (n, 1) labels
    p = probabilities(shape)
    assert_close(run(losses.sparse_categorical_crossentropy, labels, p)[0],
                 np_categorical(one_hot(labels, shape[-1]), p), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (5, 129)])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_binary_crossentropy(shape, label_smoothing):
    y = rng.integers(0, 2, shape).astype(np.float32)
    logits = (rng.standard_normal(shape) * 3).astype(np.float32)
    p = 1 / (1 + np.exp(-logits))
    p.flat[0], p.flat[-1] = 0.0, 1.0  # clipped to [eps, 1 - eps]
    assert_close(run(losses.BinaryCrossentropy(label_smoothing=label_smoothing), y, p)[0],
                 np_binary(y, p, label_smoothing=label_smoothing), rtol=1e-5, atol=1e-6)
    assert_close(run(losses.BinaryCrossentropy(from_logits=True, label_smoothing=label_smoothing), y, logits)[0],
                 np_binary(y, logits, True, label_smoothing), rtol=1e-5, atol=1e-6)


def test_binary_crossentropy_takes_vector_targets_for_one_output():
    y = np.array([0.0, 1.0, 1.0], np.float32)
    logits = np.array([[0.5], [-2.0], [3.0]], np.float32)
    assert_close(run(losses.binary_crossentropy, y, logits)[0], np_binary(y[:, None], logits, False), rtol=1e-6)


@pytest.mark.parametrize("loss, reference", [
    (losses.MeanSquaredError(), lambda y, p: ((y - p) ** 2).mean(-1)),
    (losses.MeanAbsoluteError(), lambda y, p: np.abs(y - p).mean(-1)),
    (losses.Huber(), np_huber),
    (losses.Huber(delta=0.3), lambda y, p: np_huber(y, p, 0.3)),
], ids=["mse", "mae", "huber", "huber-0.3"])
@pytest.mark.parametrize("shape", [(1, 1), (7, 129), (2, 3, 5)])
def test_regression_losses(loss, reference, shape):
    y = rng.standard_normal(shape).astype(np.float32)
    p = (y + rng.standard_normal(shape) * 2).astype(np.float32)
    assert_close(run(loss, y, p)[0], reference(y.astype(np.float64), p.astype(np.float64)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("labels", [[[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]], [[-1.0, 1.0, 1.0], [1.0, -1.0, -1.0]],
                                    [[0.0, 1.0, 1.0], [1.0, -1.0, 0.0]]], ids=["binary", "signs", "mixed"])
def test_hinge_maps_binary_labels_to_signs_only_when_all_are_binary(labels):
    y = np.array(labels, np.float32)
    p = np.array([[0.3, -0.2, 2.0], [0.9, 0.1, -1.5]], np.float32)
    assert_close(run(losses.Hinge(), y, p)[0], np_hinge(y, p), rtol=1e-6)


@pytest.mark.parametrize("loss", [losses.CategoricalCrossentropy(from_logits=True),
                                  losses.BinaryCrossentropy(from_logits=True)], ids=["categorical", "binary"])
def test_extreme_logits_stay_finite_with_exact_losses(loss):
    logits = np.array([[100.0, -100.0, 0.0], [-100.0, 100.0, 100.0]], np.float32)
    y = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]], np.float32)
    values, gradient = run(loss, y, logits, backend="llvm")
    assert np.all(np.isfinite(values)) and np.all(np.isfinite(gradient))
    expected = np_categorical(y, logits, True) if isinstance(loss, losses.CategoricalCrossentropy) \
        else np_binary(y, logits, True)
    assert_close(values, expected, rtol=1e-6)


def test_probabilities_of_exactly_0_and_1_are_clipped():
    y = np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0]], np.float32)
    p = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 1.0]], np.float32)
    for loss, reference in [(losses.categorical_crossentropy, np_categorical), (losses.binary_crossentropy, np_binary)]:
        values, gradient = run(loss, y, p)
        assert np.all(np.isfinite(values)) and np.all(np.isfinite(gradient))
        assert_close(values, reference(y, p), rtol=1e-6)


def test_sparse_loss_of_extreme_logits_and_its_gradient():
    labels = np.array([1, 0])
    logits = np.array([[100.0, -100.0, 0.0], [-100.0, 100.0, 100.0]], np.float32)
    values, gradient = run(losses.SparseCategoricalCrossentropy(from_logits=True), labels, logits)
    assert_close(values, np_categorical(one_hot(labels, 3), logits, True), rtol=1e-6)
    softmax = np.exp(np_log_softmax(logits))
    assert_close(gradient, softmax - one_hot(labels, 3), atol=1e-6)


@pytest.mark.parametrize("loss", [losses.huber, losses.hinge, losses.mean_absolute_error])
def test_gradients_of_the_composed_losses_match_finite_differences(loss):
    y = np.array([[0.5, -1.0, 2.0, 0.0, 1.0, -1.0, 1.0]] * 2)
    p = np.array([[0.1, 0.7, -1.2, 2.5, 0.3, -0.6, 1.8], [1.4, -0.2, 0.9, -2.1, 0.05, 0.45, 0.8]])
    analytic, numeric = check_grad(lambda p_: gc.sum(loss(gc.constant(y), p_)), [p.shape], [p])
    assert_close(analytic[0], numeric[0], rtol=1e-5, atol=1e-7)


def test_objects_equal_their_functions_and_keep_keras_names():
    y = rng.integers(0, 2, (4, 3)).astype(np.float32)
    p = rng.uniform(0.05, 0.95, (4, 3)).astype(np.float32)
    for cls, function, name in [(losses.BinaryCrossentropy, losses.binary_crossentropy, "binary_crossentropy"),
                                (losses.CategoricalCrossentropy, losses.categorical_crossentropy,
                                 "categorical_crossentropy"),
                                (losses.MeanSquaredError, losses.mean_squared_error, "mean_squared_error"),
                                (losses.Hinge, losses.hinge, "hinge"), (losses.Huber, losses.huber, "huber_loss")]:
        assert cls().name == name
        np.testing.assert_array_equal(run(cls(), y, p)[0], run(function, y, p)[0])


def test_a_loss_object_called_on_arrays_gives_keras_batch_mean():
    """The quickstart's ``loss_fn(y_train[:1], predictions)``: one number, as Keras' loss objects give."""
    logits = (rng.standard_normal((5, 10)) * 3).astype(np.float32)
    labels = np.array([3, 0, 9, 9, 1], np.uint8)
    value = losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    assert value.shape == () and value.dtype == np.float32
    assert_close(value, np_categorical(one_hot(labels, 10), logits, True).mean(), rtol=1e-6)
    y = rng.standard_normal((5, 2))
    assert_close(losses.Huber(delta=0.5)(y, logits[:, :2]), np_huber(y, logits[:, :2].astype(np.float64), 0.5).mean(),
                 rtol=1e-5)


def test_get_names_aliases_classes_objects_and_functions():
    assert losses.get("mse") is losses.mean_squared_error is losses.get("MSE")
    assert losses.get("mae") is losses.mean_absolute_error
    assert losses.get("bce") is losses.binary_crossentropy
    assert isinstance(losses.get("Huber"), losses.Huber) and losses.get("Huber").delta == 1.0
    assert isinstance(losses.get(losses.Hinge), losses.Hinge)
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    assert losses.get(loss) is loss and losses.get(None) is None

    def custom(y_true, y_pred):
        return gc.sum(y_pred - y_true, -1)
    assert losses.get(custom) is custom


def test_target_kind():
    for sparse in ["sparse_categorical_crossentropy", losses.sparse_categorical_crossentropy,
                   losses.SparseCategoricalCrossentropy(from_logits=True)]:
        assert losses.target_kind(sparse) == "sparse"
    for dense in ["categorical_crossentropy", "mse", losses.BinaryCrossentropy(), lambda t, p: t - p]:
        assert losses.target_kind(dense) == "dense"


def test_serialize_round_trips():
    assert losses.serialize(losses.mean_squared_error) == "mean_squared_error"
    assert losses.deserialize("mse") is losses.mean_squared_error
    for loss in [losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
                 losses.SparseCategoricalCrossentropy(from_logits=True), losses.Huber(delta=2.5),
                 losses.BinaryCrossentropy(name="bce"), losses.MeanAbsoluteError()]:
        config = losses.serialize(loss)
        again = losses.get(config)
        assert type(again) is type(loss) and again.get_config() == loss.get_config()
    assert losses.serialize(losses.SparseCategoricalCrossentropy(from_logits=True)) == {
        "class_name": "SparseCategoricalCrossentropy",
        "config": {"name": "sparse_categorical_crossentropy", "reduction": "sum_over_batch_size",
                   "from_logits": True, "ignore_class": None}}


def test_custom_losses_are_saved_by_registered_name():
    def scaled_error(y_true, y_pred):
        return gc.mean(gc.square(y_true - y_pred), -1) * 2.0

    class Doubled(losses.Loss):
        def call(self, y_true, y_pred):
            return 2.0 * losses.mean_absolute_error(y_true, y_pred)

    with pytest.raises(ValueError, match="cannot save the custom loss .*register_keras_serializable"):
        losses.serialize(scaled_error)
    with pytest.raises(ValueError, match="cannot save the custom loss"):
        losses.serialize(Doubled())
    try:
        assert losses.register(scaled_error, name="Custom>scaled_error") is scaled_error
        losses.register(Doubled)
        assert losses.serialize(scaled_error) == "Custom>scaled_error"
        assert losses.get("Custom>scaled_error") is scaled_error
        again = losses.deserialize(losses.serialize(Doubled(name="twice")))
        assert type(again) is Doubled and again.name == "twice"
    finally:
        losses.LOSSES.pop("Custom>scaled_error", None)
        losses.CLASSES.pop("Doubled", None)


def test_bad_input():
    with pytest.raises(ValueError, match="unknown loss 'crossentropy'; known: categorical_crossentropy, .*Huber"):
        losses.get("crossentropy")
    with pytest.raises(ValueError, match="unknown loss class 'Dice'; known: CategoricalCrossentropy"):
        losses.deserialize({"class_name": "Dice", "config": {}})
    with pytest.raises(ValueError, match="label_smoothing must be between 0 and 1, got 1.5"):
        losses.CategoricalCrossentropy(label_smoothing=1.5)
    with pytest.raises(ValueError, match="delta must be positive"):
        losses.Huber(delta=0)
    with pytest.raises(ValueError, match="reduction='sum' is not supported"):
        losses.MeanSquaredError(reduction="sum")
    with pytest.raises(ValueError, match="ignore_class=0 is not supported"):
        losses.SparseCategoricalCrossentropy(ignore_class=0)
    with pytest.raises(ValueError, match="'hinge' is the name of a built-in loss"):
        losses.register(lambda t, p: t, name="hinge")
    with pytest.raises(TypeError, match="expected a function"):
        losses.register(int)
    with pytest.raises(ValueError, match=r"mean_absolute_error: y_true of shape \(batch,\) does not fit y_pred "
                                         r"of shape \(batch, 4, 3\)"):
        losses.mean_absolute_error(gc.placeholder(("batch",)), gc.placeholder(("batch", 4, 3)))
    with pytest.raises(ValueError, match="does not match y_pred shape"):
        losses.categorical_crossentropy(gc.placeholder(("batch", 3)), gc.placeholder(("batch", 4)))


def test_a_loss_object_on_arrays_takes_keras_sample_weight():
    y_true = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 0.0]], np.float32)
    y_pred = np.array([[0.5, 1.0], [1.0, 0.0], [0.0, 0.0]], np.float32)
    per_sample = ((y_true - y_pred) ** 2).mean(axis=1)
    weights = np.array([1.0, 0.0, 2.0], np.float32)
    assert losses.MeanSquaredError()(y_true, y_pred, sample_weight=weights) == pytest.approx((per_sample * weights).mean())
    assert losses.MeanSquaredError()(y_true, y_pred) == pytest.approx(per_sample.mean())
