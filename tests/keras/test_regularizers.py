"""Regularizers against Keras 3's formulas in numpy, their gradients, names and saved forms."""
import numpy as np
import pytest

import graphc as gc
from graphc.keras import regularizers
from graphc.testing import assert_close, check_grad

W = np.random.default_rng(5).standard_normal((7, 129)).astype(np.float32)


def penalty(regularizer, value=W, backend="reference"):
    w = gc.variable(value)
    return gc.function([], regularizer(w), backend=backend)()


@pytest.mark.parametrize("regularizer, l1, l2", [
    (regularizers.L1(), 0.01, 0.0), (regularizers.L1(0.3), 0.3, 0.0), (regularizers.L2(), 0.0, 0.01),
    (regularizers.L2(l2=0.05), 0.0, 0.05), (regularizers.L1L2(l1=0.02, l2=0.1), 0.02, 0.1),
    (regularizers.L1L2(), 0.0, 0.0), (regularizers.get("l1_l2"), 0.01, 0.01), (regularizers.get("l1l2"), 0.0, 0.0),
])
def test_penalties_follow_keras(regularizer, l1, l2):
    w = W.astype(np.float64)
    got = penalty(regularizer)
    assert got.shape == () and got.dtype == np.float32
    assert_close(got, l1 * np.abs(w).sum() + l2 * np.square(w).sum(), rtol=1e-5)


def test_llvm_agrees_and_a_single_weight_works():
    assert_close(penalty(regularizers.L1L2(0.02, 0.1), backend="llvm"), penalty(regularizers.L1L2(0.02, 0.1)),
                 rtol=1e-6)
    assert_close(penalty(regularizers.L2(0.5), np.float32(3.0)), 4.5)


def test_gradient_is_l1_sign_plus_2_l2_w():
    w = np.array([[0.5, -1.5, 2.0], [-0.25, 0.75, -3.0]])
    analytic, numeric = check_grad(regularizers.L1L2(0.3, 0.2), [w.shape], [w])
    assert_close(analytic[0], numeric[0], rtol=1e-6)
    assert_close(analytic[0], 0.3 * np.sign(w) + 0.4 * w, rtol=1e-12)


def test_get_names_classes_instances_and_functions():
    assert type(regularizers.get("l1")) is regularizers.L1 and regularizers.get("l1").l1 == 0.01
    assert type(regularizers.get("l2")) is regularizers.L2
    assert type(regularizers.get("L1L2")) is regularizers.L1L2
    assert type(regularizers.get(regularizers.L2)) is regularizers.L2
    instance = regularizers.L1(0.2)
    assert regularizers.get(instance) is instance and regularizers.get(None) is None

    def custom(weight):
        return gc.sum(weight)
    assert regularizers.get(custom) is custom


def test_serialize_round_trips_with_keras_configs():
    assert regularizers.serialize(regularizers.L2(0.1)) == {"class_name": "L2", "config": {"l2": 0.1}}
    assert regularizers.serialize(regularizers.L1()) == {"class_name": "L1", "config": {"l1": 0.01}}
    assert regularizers.serialize(None) is None and regularizers.deserialize(None) is None
    for regularizer in [regularizers.L1(0.5), regularizers.L2(0.25), regularizers.L1L2(0.1, 0.2)]:
        again = regularizers.get(regularizers.serialize(regularizer))
        assert type(again) is type(regularizer) and again.get_config() == regularizer.get_config()


def test_bad_input():
    with pytest.raises(ValueError, match="unknown regularizer 'l3'; known: l1, l2, l1l2, l1_l2, L1, L2, L1L2"):
        regularizers.get("l3")
    with pytest.raises(ValueError, match="unknown regularizer 0.1"):
        regularizers.get(0.1)
    with pytest.raises(ValueError, match="l2 must be a non-negative float, got l2=-0.1"):
        regularizers.L2(-0.1)
    with pytest.raises(ValueError, match="l1 must be a non-negative float, got l1=nan"):
        regularizers.L1L2(l1=float("nan"))
    with pytest.raises(ValueError, match="l1 must be a non-negative float, got l1='0.1'"):
        regularizers.L1("0.1")
    with pytest.raises(ValueError, match="unknown regularizer class 'OrthogonalRegularizer'"):
        regularizers.deserialize({"class_name": "OrthogonalRegularizer", "config": {}})
    with pytest.raises(ValueError, match="cannot save the custom regularizer"):
        regularizers.serialize(lambda w: gc.sum(w))
