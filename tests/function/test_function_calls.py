"""gc.function: outputs, symbolic dims bound per call, simultaneous updates, and input validation."""
import numpy as np
import pytest

import graphc as gc
from graphc.testing import assert_close

RNG = np.random.default_rng(3)


def test_single_output_gives_an_array_and_a_list_gives_a_list():
    x = gc.placeholder((2,), "float64")
    single = gc.function([x], x * 2.0)
    several = gc.function([x], [x * 2.0, x + 1.0])
    data = np.array([1.0, -3.0])
    assert isinstance(single(data), np.ndarray)
    assert_close(single(data), data * 2.0)
    doubled, shifted = several(data)
    assert_close(doubled, data * 2.0)
    assert_close(shifted, data + 1.0)


def test_outputs_have_the_declared_dtype_and_accept_lists_and_safe_casts():
    x = gc.placeholder((3,), "float32")
    i = gc.placeholder((3,), "int64")
    f = gc.function([x, i], [x * 2.0, i + 1])
    doubled, incremented = f([1, 2, 3], np.array([1, 2, 3], np.int32))  # int -> float32 and int32 -> int64 are safe
    assert doubled.dtype == np.float32 and incremented.dtype == np.int64
    np.testing.assert_array_equal(doubled, np.array([2, 4, 6], np.float32))
    np.testing.assert_array_equal(incremented, np.array([2, 3, 4]))


def test_one_graph_serves_every_batch_size():
    x = gc.placeholder(("batch", 3), "float64")
    y = gc.placeholder(("batch",), "float64")
    f = gc.function([x, y], gc.sum(x, axis=1) * y)
    for batch in (1, 4, 9):
        a, b = RNG.standard_normal((batch, 3)), RNG.standard_normal(batch)
        assert_close(f(a, b), a.sum(1) * b, rtol=1e-14)


def test_scalar_inputs_and_outputs():
    x = gc.placeholder((), "float64")
    f = gc.function([x], x * x)
    result = f(3.0)
    assert result.shape == () and result == 9.0


def test_constant_function_without_inputs():
    f = gc.function([], gc.constant(np.arange(3.0)) * 2.0)
    assert_close(f(), np.arange(3.0) * 2.0)


def test_updates_are_applied_after_the_outputs_are_computed():
    counter = gc.variable(np.array(0.0), name="counter")
    f = gc.function([], counter * 10.0, updates=[(counter, counter + 1.0)])
    assert [float(f()) for _ in range(3)] == [0.0, 10.0, 20.0]
    assert counter.value == 3.0


def test_updates_are_simultaneous_so_a_pair_of_updates_swaps():
    a = gc.variable(np.array([1.0, 2.0]), name="a")
    b = gc.variable(np.array([3.0, 4.0]), name="b")
    swap = gc.function([], [], updates=[(a, b), (b, a)])
    swap()
    assert_close(a.value, np.array([3.0, 4.0]))
    assert_close(b.value, np.array([1.0, 2.0]))
    swap()
    assert_close(a.value, np.array([1.0, 2.0]))
    assert_close(b.value, np.array([3.0, 4.0]))


def test_updates_read_old_values_even_when_chained():
    # Fibonacci step: (a, b) <- (b, a + b), both from the old pair.
    a, b = gc.variable(np.array(0.0)), gc.variable(np.array(1.0))
    step = gc.function([], [], updates=[(a, b), (b, a + b)])
    for _ in range(6):
        step()
    assert (float(a.value), float(b.value)) == (8.0, 13.0)


def test_variable_value_is_a_copy_and_the_setter_checks_shape_and_dtype():
    w = gc.variable(np.zeros((2, 3)), name="weights")
    snapshot = w.value
    snapshot[0, 0] = 5.0
    assert w.value[0, 0] == 0.0
    w.value = np.ones((2, 3))
    f = gc.function([], gc.sum(w))
    assert float(f()) == 6.0
    with pytest.raises(ValueError, match=r"variable weights has shape \(2, 3\), cannot assign shape \(3, 2\)"):
        w.value = np.ones((3, 2))
    counts = gc.variable(np.zeros(2, np.int32), name="counts")
    with pytest.raises(ValueError, match="variable counts is int32, cannot assign float64 values"):
        counts.value = np.array([0.5, 1.5])


def test_only_variables_have_values():
    with pytest.raises(AttributeError, match="not a variable"):
        gc.placeholder((2,)).value


def test_wrong_number_of_inputs_names_the_inputs():
    x, y = gc.placeholder((2,), name="x"), gc.placeholder((2,), name="y")
    f = gc.function([x, y], x + y)
    with pytest.raises(ValueError, match=r"expected 2 input\(s\) \(x, y\), got 1"):
        f(np.zeros(2))


def test_wrong_shape_names_the_input():
    x = gc.placeholder((None, 3), name="images")
    f = gc.function([x], x * 2.0)
    with pytest.raises(ValueError, match=r"input images .*expected shape .*, got \(4, 2\) \(axis 1\)"):
        f(np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match=r"input images .*expected rank 2"):
        f(np.zeros(3, np.float32))


def test_inconsistent_shared_batch_dims_name_the_input_and_the_dim():
    x = gc.placeholder(("batch", 3), name="features")
    y = gc.placeholder(("batch",), name="labels")
    f = gc.function([x, y], gc.sum(x, axis=1) + y)
    with pytest.raises(ValueError, match=r"input labels \(batch,\): dimension batch is 4 from an earlier input but 5"):
        f(np.zeros((4, 3), np.float32), np.zeros(5, np.float32))


def test_unsafe_dtype_names_the_input():
    labels = gc.placeholder((3,), "int32", name="labels")
    f = gc.function([labels], labels + 1)
    with pytest.raises(ValueError, match="input labels: cannot safely feed float64 data to a int32 placeholder"):
        f(np.array([0.0, 1.0, 2.0]))


def test_unknown_backend():
    x = gc.placeholder((2,))
    with pytest.raises(ValueError, match="unknown backend 'tpu'; available: .*reference"):
        gc.function([x], x, backend="tpu")


def test_reference_backend_takes_no_options():
    x = gc.placeholder((2,))
    with pytest.raises(TypeError, match="reference backend takes no options"):
        gc.function([x], x, backend="reference", threads=4)
