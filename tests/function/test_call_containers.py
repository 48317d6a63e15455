"""gc.function takes its arguments as TF and Theano users write them, and says what it expected otherwise."""
import signal

import numpy as np
import pytest

import graphc as gc


@pytest.fixture
def x():
    return gc.placeholder((2,), name="x")


@pytest.fixture
def w():
    return gc.variable(np.array([1.0, 2.0], np.float32), name="w")


@pytest.mark.parametrize("backend", ["llvm", "reference"])
def test_one_placeholder_dict_outputs_and_dict_updates(x, w, backend):
    f = gc.function(x, {"scaled": x * w, "total": gc.sum(x), "zero": 0.0}, updates={w: w + x}, backend=backend)
    result = f(np.array([3.0, 4.0], np.float32))
    assert list(result) == ["scaled", "total", "zero"]
    np.testing.assert_array_equal(result["scaled"], [3.0, 8.0])
    assert result["total"] == 7.0 and result["zero"] == 0.0 and isinstance(result["zero"], np.ndarray)
    np.testing.assert_array_equal(w.value, [4.0, 6.0])


def test_a_number_as_the_only_output_comes_back_as_an_array(x):
    f = gc.function([x], 2.5, backend="reference")
    assert f(np.zeros(2, np.float32)) == 2.5


def test_updates_as_a_list_of_pairs_and_outputs_as_a_tuple(x, w):
    f = gc.function([x], (x, x + 1.0), updates=[[w, w * 2.0]], backend="reference")
    assert isinstance(f(np.zeros(2, np.float32)), list)
    np.testing.assert_array_equal(w.value, [2.0, 4.0])


def test_iterating_a_tensor_is_a_type_error_that_says_why(x):
    batch = gc.placeholder(("batch", 3), name="images")
    previous = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("iterating a symbolic axis never ends"))
    signal.alarm(10)
    try:
        for tensor in (x, batch):
            with pytest.raises(TypeError, match=r"symbolic tensor cannot be iterated \((x|images), shape .*index it"):
                list(tensor)
            with pytest.raises(TypeError, match="cannot be iterated"):
                first, second = tensor
            with pytest.raises(TypeError, match=r"a symbolic tensor has no len\(\) .*use .shape\[0\]"):
                len(tensor)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


PLACEHOLDER_EXPECTED = r"must be a placeholder \(gc.placeholder\)"
PAIR_EXPECTED = r"updates\[0\] must be a \(variable, new_value\) pair \(for one update write updates=\[\(variable, "


@pytest.mark.parametrize("arguments, error, message", [
    (lambda x, w: ([x, np.zeros(2)], x), TypeError, r"inputs\[1\] " + PLACEHOLDER_EXPECTED + ", got ndarray"),
    (lambda x, w: ([w], w * 2.0), gc.GraphError, r"inputs\[0\] " + PLACEHOLDER_EXPECTED + ", got <variable w"),
    (lambda x, w: ("x", x), TypeError, r"inputs must be a placeholder or a list of placeholders, got str 'x'"),
    (lambda x, w: ([x, x], x), gc.GraphError, r"inputs\[1\] repeats an input: list each placeholder once, got <placeh"),
    (lambda x, w: ([x], [x, "loss"]), TypeError, r"outputs\[1\] must be a tensor or a number, got str 'loss'"),
    (lambda x, w: ([x], {"y": None}), TypeError, r"outputs\['y'\] must be a tensor or a number, got NoneType"),
    (lambda x, w: ([x], x, (w, w + x)), TypeError, PAIR_EXPECTED),
    (lambda x, w: ([x], x, [(x, 1 + x)]), gc.GraphError, r"updates\[0\] must assign a variable .*got <placeholder x"),
    (lambda x, w: ([x], x, {"w": w + x}), TypeError, r"updates\[0\] must assign a variable .*got str 'w'"),
    (lambda x, w: ([x], x, [(w, 0.0)]), TypeError, r"new value of variable w must be a tensor \(float32\(2,\)\)"),
    (lambda x, w: ([x], x, w + x), TypeError, r"updates must be a dict \{variable: new_value\} or a list"),
    (lambda x, w: ([x], x, [(w, gc.sum(x))]), gc.GraphError, r"update of w: variable shape \(2,\) but new value shape"),
    (lambda x, w: ([x], x, [(w, x.astype("float64"))]), gc.GraphError, "update of w: variable is float32 but new"),
])
def test_every_misuse_says_what_was_expected_and_where(x, w, arguments, error, message):
    with pytest.raises(error, match=message) as info:
        gc.function(*arguments(x, w), backend="reference")
    assert __file__ in str(info.value)  # the user's line
