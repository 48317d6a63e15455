import numpy as np
import pytest

from graphc.keras.utils import to_categorical


def test_one_hot_rows_with_inferred_num_classes_and_float32_default():
    result = to_categorical([0, 2, 1, 2])
    assert result.dtype == np.float32
    np.testing.assert_array_equal(result, np.eye(3, dtype=np.float32)[[0, 2, 1, 2]])


def test_explicit_num_classes_and_dtype():
    result = to_categorical(np.array([1, 0]), num_classes=4, dtype="int32")
    assert result.dtype == np.int32
    np.testing.assert_array_equal(result, [[0, 1, 0, 0], [1, 0, 0, 0]])


@pytest.mark.parametrize("labels, expected_shape", [
    (np.array([4, 0, 1, 2, 3, 4]), (6, 5)),
    (np.array([[4], [0], [2]]), (3, 5)),         # trailing axis of size 1 is dropped, as in Keras
    (np.array([[4, 0], [1, 2], [3, 4]]), (3, 2, 5)),
    (np.array([[[4], [0]], [[1], [2]]]), (2, 2, 5)),
    (np.array(4), (5,)),
])
def test_output_shape_follows_keras(labels, expected_shape):
    result = to_categorical(labels)
    assert result.shape == expected_shape
    np.testing.assert_array_equal(result.argmax(-1), labels.reshape(expected_shape[:-1]))
    np.testing.assert_array_equal(result.sum(-1), 1)


def test_integral_float_labels_are_accepted():
    np.testing.assert_array_equal(to_categorical(np.array([1.0, 0.0])), [[0, 1], [1, 0]])


def test_empty_labels_need_num_classes():
    assert to_categorical(np.array([], dtype=np.int64), num_classes=3).shape == (0, 3)
    with pytest.raises(ValueError, match="num_classes"):
        to_categorical(np.array([], dtype=np.int64))


@pytest.mark.parametrize("labels, num_classes, message", [
    ([0, 3], 3, "0..2"),
    ([-1, 1], 3, "0..2"),
    ([0.5, 1.0], None, "non-integral"),
    (["a"], None, "dtype"),
])
def test_invalid_labels_raise(labels, num_classes, message):
    with pytest.raises(ValueError, match=message):
        to_categorical(np.array(labels), num_classes=num_classes)
