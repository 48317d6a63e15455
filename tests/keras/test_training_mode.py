"""Training and inference graphs of a model: fit runs dropout and batch statistics (and batch norm's moving
averages as updates of its step), evaluate and predict run the inference graph; checked against numpy."""
import numpy as np
import pytest

from graphc import keras
from graphc.keras import layers
from graphc.keras.utils import clear_session, set_random_seed


def batch_norm_model(backend="reference"):
    clear_session()
    set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), layers.Dense(3, name="dense"),
                              layers.BatchNormalization(momentum=0.9, name="norm")])
    model.compile("sgd", "mse", backend=backend)
    return model


@pytest.mark.parametrize("backend", ["reference", None])
def test_fit_updates_batch_norms_moving_statistics_and_predict_uses_them(backend):
    model = batch_norm_model(backend)
    rng = np.random.default_rng(1)
    x, y = rng.normal(2, 3, size=(8, 4)).astype(np.float32), rng.normal(size=(8, 3)).astype(np.float32)
    norm = model.get_layer("norm")
    assert [w.name for w in norm.weights] == ["norm/gamma", "norm/beta", "norm/moving_mean", "norm/moving_variance"]
    assert [w.name for w in model.non_trainable_weights] == ["norm/moving_mean", "norm/moving_variance"]
    kernel, bias = model.get_layer("dense").get_weights()
    hidden = x @ kernel + bias  # the batch statistics of the first (and only) step are those of these
    model.train_on_batch(x, y)
    gamma, beta, moving_mean, moving_variance = norm.get_weights()
    np.testing.assert_allclose(moving_mean, 0.1 * hidden.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(moving_variance, 0.9 + 0.1 * hidden.var(0), rtol=1e-5)
    kernel, bias = model.get_layer("dense").get_weights()
    expected = (x @ kernel + bias - moving_mean) / np.sqrt(moving_variance + 1e-3) * gamma + beta
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-5)
    # evaluate is the inference graph: it changes nothing
    model.evaluate(x, y, verbose=0)
    np.testing.assert_array_equal(norm.get_weights()[2], moving_mean)


def test_dropout_is_on_in_fit_and_off_in_evaluate_and_predict():
    clear_session()
    set_random_seed(2)
    model = keras.Sequential([keras.Input((50,)), layers.Dropout(0.5, seed=3), layers.Dense(1, use_bias=False)])
    model.compile("sgd", "mse", backend="reference")
    model.set_weights([np.ones((50, 1), np.float32)])
    x, y = np.ones((4, 50), np.float32), np.zeros((4, 1), np.float32)
    np.testing.assert_array_equal(model.predict(x, verbose=0), 50)
    assert model.evaluate(x, y, verbose=0) == pytest.approx(2500)
    model.optimizer.learning_rate = 0.0
    training = [model.train_on_batch(x, y) for _ in range(2)]
    assert training[0] != pytest.approx(2500) and training[0] != training[1]  # fresh masks every step
    kept = model(x, training=True)[:, 0] / 2  # each kept input counts 1 / (1 - 0.5) = 2
    assert np.all(kept == np.round(kept)) and 10 < kept.mean() < 40


def test_a_model_with_dropout_is_reproducible_from_the_seed():
    def run():
        clear_session()
        set_random_seed(7)
        model = keras.Sequential([keras.Input((6,)), layers.Dense(8, activation="relu"), layers.Dropout(0.3),
                                  layers.Dense(2)])
        model.compile("adam", "mse")
        rng = np.random.default_rng(0)
        model.fit(rng.normal(size=(32, 6)), rng.normal(size=(32, 2)), epochs=2, batch_size=8, verbose=0)
        return model.get_weights()

    for a, b in zip(run(), run()):
        np.testing.assert_array_equal(a, b)


def test_inference_batch_norm_folds_into_the_dense_layers_gemm_epilogue():
    """Dense -> BatchNormalization -> relu predicts with one GEMM whose epilogue applies bias, the moving
    statistics' affine map and the relu (the per-channel scale is a vector kernel of its own)."""
    clear_session()
    model = keras.Sequential([keras.Input((6,)), layers.Dense(5), layers.BatchNormalization(),
                              layers.Activation("relu")])
    model.compile("sgd", "mse")
    predict = model._step("predict")
    computed = [n for n in predict.optimized_graph.nodes if n.op.name not in ("placeholder", "variable")]
    assert [(n.op.name, len(n.shape)) for n in computed] == [("elementwise", 1), ("fused_matmul", 2)]
    assert "Max(0" in str(computed[1].attrs["epilogue"])
    x = np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32)
    gamma, beta, mean, variance = model.layers[1].get_weights()
    kernel, bias = model.layers[0].get_weights()
    expected = np.maximum((x @ kernel + bias - mean) / np.sqrt(variance + 1e-3) * gamma + beta, 0)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
