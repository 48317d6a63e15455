"""keras.mixed_precision: the global policy, and a model trained under mixed_bfloat16 on both backends."""
import numpy as np
import pytest

from graphc.keras import layers, mixed_precision, models, optimizers
from graphc.keras.utils import set_random_seed


@pytest.fixture(autouse=True)
def float32_afterwards():
    yield
    mixed_precision.set_global_policy("float32")


def test_the_global_policy():
    assert mixed_precision.global_policy().name == "float32"
    mixed_precision.set_global_policy("mixed_bfloat16")
    policy = mixed_precision.global_policy()
    assert (policy.name, policy.compute_dtype, policy.variable_dtype) == ("mixed_bfloat16", "bfloat16", "float32")
    mixed_precision.set_global_policy(mixed_precision.DTypePolicy("float32"))
    assert mixed_precision.global_policy().compute_dtype == "float32"


@pytest.mark.parametrize("name", ["mixed_float16", "bfloat16", None])
def test_unknown_policies_list_the_known_ones(name):
    with pytest.raises(ValueError, match=r"unknown dtype policy .*; graphc knows 'float32', 'mixed_bfloat16'"):
        mixed_precision.set_global_policy(name)
    assert mixed_precision.global_policy().name == "float32"


def _trained(policy, backend):
    """Weights and loss history of a small MLP after two epochs of SGD under ``policy``."""
    mixed_precision.set_global_policy(policy)
    set_random_seed(5)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((70, 13)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 70)]
    model = models.Sequential([layers.Input((13,)), layers.Dense(33, activation="relu"),
                               layers.Dense(3, activation="softmax")])
    model.compile(optimizers.SGD(0.1), "categorical_crossentropy", backend=backend)
    history = model.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    return [np.array(history.history["loss"])] + [w.value.copy() for w in model.weights]


def test_mixed_bfloat16_training_agrees_between_backends_and_differs_from_float32():
    native = _trained("mixed_bfloat16", None)
    reference = _trained("mixed_bfloat16", "reference")
    full = _trained("float32", "reference")
    assert all(w.dtype == np.float32 for w in native[1:])  # the weights stay float32
    for got, want, fp32 in zip(native, reference, full):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
        assert np.abs(fp32 - want).max() > 10 * np.abs(got - want).max()
