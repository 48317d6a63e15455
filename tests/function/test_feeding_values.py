"""Feeding never changes a value: a narrowing cast is checked on the data, a safe cast is not looked at."""
import numpy as np
import pytest

import graphc as gc
from graphc.graph import dtypes


def identity(shape, dtype, name):
    x = gc.placeholder(shape, dtype, name=name)
    return gc.function([x], x * 1, backend="reference")


@pytest.mark.parametrize("data, dtype, message", [
    (np.array([7, 2**40]), "int32",
     r"input ids: cannot safely feed int64 data to a int32 placeholder: the value 1099511627776 at index \[1\] "
     r"is outside int32's range"),
    (np.array([[0, 1], [-2**31 - 1, 5]]), "int32", r"the value -2147483649 at index \[1, 0\]"),
    (np.array([3, 2**63], np.uint64), "int64", r"uint64 data to a int64 placeholder: the value 9223372036854775808"),
    (np.array([1.0, np.inf, 1e300]), "float32", r"float64 data to a float32 placeholder: the value 1e\+300 at index"),
    (np.array([1.5, 2.0]), "int32", r"cannot safely feed float64 data to a int32 placeholder"),
])
def test_a_cast_that_would_change_a_value_names_the_input_the_dtypes_and_the_first_value(data, dtype, message):
    f = identity((None,) * data.ndim, dtype, "ids")
    with pytest.raises(ValueError, match=message):
        f(data)


@pytest.mark.parametrize("data, dtype", [
    (np.array([7, -2**31, 2**31 - 1]), "int32"),  # narrowing, every value fits
    (np.array([0.1, np.inf, -np.inf, np.nan, -3e38]), "float32"),  # rounds, never overflows
    (np.arange(4, dtype=np.uint8), "float32"),  # MNIST pixels
    (np.array([True, False]), "int32"),
    (np.array([2**40]), "float32"),
    (np.zeros(0, np.int64), "int32"),
])
def test_casts_that_keep_every_value_still_feed(data, dtype):
    f = identity((None,), dtype, "x")
    np.testing.assert_array_equal(f(data), data.astype(dtype))


class Unscanned(np.ndarray):
    """An array that counts the passes over its data that a check makes."""
    scans = 0

    def min(self, *args, **kwargs):
        Unscanned.scans += 1
        return super().min(*args, **kwargs)

    max = min


def test_the_check_reads_the_data_only_when_narrowing():
    Unscanned.scans = 0
    for dtype in ("float32", "uint8", "int64"):
        assert dtypes.feed_problem(np.zeros(8, dtype).view(Unscanned), "float32") is None
    assert Unscanned.scans == 0  # same dtype, a cast numpy calls safe, an integer to a float
    assert dtypes.feed_problem(np.zeros(8, np.int64).view(Unscanned), "int32") is None
    assert Unscanned.scans == 2  # one min, one max


def test_assigning_a_variable_never_changes_a_value():
    """Before: an int32 variable set to int64 2**40 stored 0, silently."""
    counts = gc.variable(np.zeros(2, np.int32), name="counts")
    with pytest.raises(ValueError, match=r"variable counts: .* the value 1099511627776 at index \[1\]"):
        counts.value = np.array([1, 2**40], np.int64)
    counts.value = np.array([1, 2**30], np.int64)  # narrowing that keeps every value is fine
    assert list(counts.value) == [1, 2**30]
