"""Bugs found in review, each pinned by a test that failed before its fix."""
import numpy as np
import pytest

import graphc as gc


@pytest.mark.parametrize("backend", ["llvm", "reference"])
def test_a_fixed_slice_of_a_symbolic_axis_checks_the_bound_dims_at_call_time(backend):
    rows = gc.placeholder(("batch", 2), name="rows")
    head, tail = gc.function([rows], [rows[:5] * 2.0, rows[-3:]], backend=backend)(np.ones((7, 2), np.float32))
    assert head.shape == (5, 2) and tail.shape == (3, 2)
    f = gc.function([rows], rows[:5] * 2.0, backend=backend)
    with pytest.raises(ValueError, match=r"\[0:5\] on axis 0 of length batch .* out of range with batch=3"):
        f(np.ones((3, 2), np.float32))  # would read two rows past the input


def test_numpy_float_scalars_make_integer_tensors_float():
    x = gc.placeholder((3,), "int32", name="x")
    np.testing.assert_allclose(gc.function([x], x * np.float32(0.5))(np.array([1, 2, 3], np.int32)), [0.5, 1, 1.5])
    condition = gc.placeholder((3,), "bool", name="condition")
    chosen = gc.function([condition, x], gc.where(condition, x, 0.5))
    np.testing.assert_allclose(chosen(np.array([True, False, False]), np.array([1, 2, 3], np.int32)), [1, 0.5, 0.5])


def test_a_fused_comparison_keeps_its_operands_precision():
    i = gc.placeholder(("n",), "int64", name="i")
    j = gc.placeholder(("n",), "int64", name="j")
    f = gc.function([i, j], gc.cast(gc.equal(i, j), "float32") * 2.0)
    assert f(np.array([16777217]), np.array([16777216]))[0] == 0.0  # equal as float32, not as int64


def test_sparse_crossentropy_needs_the_class_axis_last():
    logits = gc.placeholder((3, 4), name="logits")
    labels = gc.placeholder((4,), "int64", name="labels")
    with pytest.raises(gc.GraphError, match="class axis must be the last one"):
        gc.sparse_categorical_crossentropy(labels, logits, from_logits=True, axis=0)
