"""The seed tutorial's tensor examples (chapter 2: ranks, slicing, batches, element-wise ops, broadcasting,
dot, reshape vs transpose), written as graphs: each gives numpy's answer."""
import numpy as np
import pytest

import graphc as gc
from graphc.graph.shapes import dim_symbol
from graphc.testing import assert_close, evaluate

RNG = np.random.default_rng(2)
# Stand-in for MNIST's train_images (60000, 28, 28): a few hundred random 8-bit images, as int32.
TRAIN_IMAGES = RNG.integers(0, 256, size=(300, 28, 28)).astype(np.int32)

TENSORS = [
    np.array(12),
    np.array([12, 3, 6, 14]),
    np.array([[5, 78, 2, 34, 0], [6, 79, 3, 35, 1], [7, 80, 4, 36, 2]]),
    np.array([[[5, 78, 2, 34, 0], [6, 79, 3, 35, 1], [7, 80, 4, 36, 2]]] * 3),
]


@pytest.mark.parametrize("array", TENSORS, ids=["scalar", "vector", "matrix", "3D"])
def test_rank_shape_and_dtype(array):
    x = gc.constant(array)
    assert (x.ndim, x.shape, x.dtype) == (array.ndim, array.shape, array.dtype.name)
    result = evaluate(x * 1)
    np.testing.assert_array_equal(result, array)
    assert result.dtype == array.dtype


@pytest.fixture
def train_images():
    return gc.placeholder(("samples", 28, 28), "int32", name="train_images")


SLICES = [
    ("digit = train_images[4]", lambda t: t[4], (28, 28)),
    ("train_images[10:100]", lambda t: t[10:100], (90, 28, 28)),
    ("train_images[10:100, :, :]", lambda t: t[10:100, :, :], (90, 28, 28)),
    ("bottom-right 14x14: [:, 14:, 14:]", lambda t: t[:, 14:, 14:], (300, 14, 14)),
    ("centred 14x14: [:, 7:-7, 7:-7]", lambda t: t[:, 7:-7, 7:-7], (300, 14, 14)),
    ("first batch [:128]", lambda t: t[:128], (128, 28, 28)),
    ("second batch [128:256]", lambda t: t[128:256], (128, 28, 28)),
    ("nth batch, n = 1", lambda t: t[128 * 1:128 * (1 + 1)], (128, 28, 28)),
]


@pytest.mark.parametrize("text, build, shape", SLICES, ids=[s[0] for s in SLICES])
def test_slicing_examples(train_images, text, build, shape):
    result = evaluate(build(train_images), {train_images: TRAIN_IMAGES})
    expected = build(TRAIN_IMAGES)  # the same expression on the numpy array
    assert expected.shape == shape
    np.testing.assert_array_equal(result, expected)


def test_centred_crop_keeps_a_symbolic_sample_axis(train_images):
    assert train_images[:, 7:-7, 7:-7].shape == (dim_symbol("samples"), 14, 14)


def test_flattening_the_images(train_images):
    flat = gc.reshape(train_images, (dim_symbol("samples"), 28 * 28))
    assert flat.shape == (dim_symbol("samples"), 784)
    np.testing.assert_array_equal(evaluate(flat, {train_images: TRAIN_IMAGES}),
                                  TRAIN_IMAGES.reshape((300, 28 * 28)))


def naive_relu(x):
    assert len(x.shape) == 2
    x = x.copy()
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            x[i, j] = max(x[i, j], 0)
    return x


def naive_add(x, y):
    assert len(x.shape) == 2
    assert x.shape == y.shape
    x = x.copy()
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            x[i, j] += y[i, j]
    return x


def naive_vector_dot(x, y):
    assert len(x.shape) == 1
    assert len(y.shape) == 1
    assert x.shape[0] == y.shape[0]
    z = 0.
    for i in range(x.shape[0]):
        z += x[i] * y[i]
    return z


def test_element_wise_relu_and_add_equal_the_naive_loops():
    x, y = gc.placeholder((4, 5), "float64"), gc.placeholder((4, 5), "float64")
    a, b = RNG.standard_normal((4, 5)), RNG.standard_normal((4, 5))
    relu, total = evaluate([gc.relu(x), x + y], {x: a, y: b})
    assert_close(relu, naive_relu(a))
    assert_close(total, naive_add(a, b), rtol=1e-15)


def test_broadcasting_a_vector_over_a_matrix_and_a_4d_maximum():
    x, y = gc.placeholder((32, 10), "float64"), gc.placeholder((10,), "float64")
    a, b = RNG.standard_normal((32, 10)), RNG.standard_normal(10)
    assert_close(evaluate(x + y, {x: a, y: b}), a + b)
    big, small = gc.placeholder((4, 3, 32, 10), "float64"), gc.placeholder((32, 10), "float64")
    p, q = RNG.standard_normal((4, 3, 32, 10)), RNG.standard_normal((32, 10))
    z = gc.maximum(big, small)
    assert z.shape == (4, 3, 32, 10)
    assert_close(evaluate(z, {big: p, small: q}), np.maximum(p, q))


def test_dot_of_vectors_matrices_and_a_dense_layer():
    v, w = RNG.standard_normal(6), RNG.standard_normal(6)
    m, n = RNG.standard_normal((3, 6)), RNG.standard_normal((6, 2))
    x, y = gc.placeholder((6,), "float64"), gc.placeholder((6,), "float64")
    assert_close(evaluate(gc.dot(x, y), {x: v, y: w}), np.float64(naive_vector_dot(v, w)), rtol=1e-13)
    matrix, other = gc.placeholder((3, 6), "float64"), gc.placeholder((6, 2), "float64")
    matrix_vector = gc.dot(matrix, x)
    assert matrix_vector.shape == (3,)  # one entry per row of the matrix
    matrix_matrix = gc.dot(matrix, other)
    assert matrix_matrix.shape == (3, 2)  # rows of the first, columns of the second
    results = evaluate([matrix_vector, matrix_matrix], {matrix: m, x: v, other: n})
    assert_close(results[0], np.dot(m, v), rtol=1e-13)
    assert_close(results[1], np.dot(m, n), rtol=1e-13)
    # output = relu(dot(W, input) + b)
    W, b = gc.variable(RNG.standard_normal((3, 6))), gc.variable(RNG.standard_normal(3))
    output = gc.relu(gc.dot(W, x) + b)
    assert_close(evaluate(output, {x: v}), np.maximum(np.dot(W.value, v) + b.value, 0), rtol=1e-13)


def test_reshape_is_not_transpose():
    # Samples stored column-wise: (features, samples) = (2, 3); we want (samples, features).
    data = np.array([[0., 2., 4.], [1., 3., 5.]])
    x = gc.placeholder((2, 3), "float64")
    reshaped, transposed, flipped = evaluate([gc.reshape(x, (3, 2)), gc.transpose(x, [1, 0]), x.T], {x: data})
    np.testing.assert_array_equal(reshaped, data.reshape(3, 2))
    np.testing.assert_array_equal(transposed, np.transpose(data, [1, 0]))
    np.testing.assert_array_equal(flipped, np.transpose(data))
    samples = [[0., 1.], [2., 3.], [4., 5.]]
    assert transposed.tolist() == samples  # transpose restores the samples...
    assert reshaped.tolist() != samples  # ...reshape silently scrambles them


def test_time_series_axes_reordering():
    n_samples, n_timesteps, n_features = 10, 5, 3
    data = np.arange(n_samples * n_features * n_timesteps, dtype=np.float64).reshape(n_samples, n_features, n_timesteps)
    x = gc.placeholder((n_samples, n_features, n_timesteps), "float64")
    transposed, reshaped = gc.transpose(x, [0, 2, 1]), gc.reshape(x, [n_samples, n_timesteps, n_features])
    assert transposed.shape == reshaped.shape == (10, 5, 3)  # same shape, different contents
    t, r = evaluate([transposed, reshaped], {x: data})
    np.testing.assert_array_equal(t, np.transpose(data, [0, 2, 1]))
    np.testing.assert_array_equal(r, data.reshape([n_samples, n_timesteps, n_features]))
    assert not np.array_equal(t, r)
