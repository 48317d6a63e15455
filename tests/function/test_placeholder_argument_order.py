"""TensorFlow's placeholder takes (dtype, shape); graphc's takes (shape, dtype): the error shows the call meant."""
import pytest

import graphc as gc


def test_a_placeholder_in_tensorflows_argument_order_shows_the_right_call():
    with pytest.raises(gc.GraphError, match=r'the shape comes first.*write gc.placeholder\(\(None, 784\), "float32"\)'):
        gc.placeholder("float32", [None, 784])
    with pytest.raises(gc.GraphError, match=r'write gc.placeholder\(\(5,\), "int32", name=\'labels\'\)'):
        gc.placeholder("int32", (5,), name="labels")
    with pytest.raises(gc.GraphError, match=r"the shape must be a tuple of dims .*got None"):
        gc.placeholder(None)
