"""Layout ops (transpose, reshape, expand_dims, squeeze, broadcast_to, concatenate, indexing):
shapes, values against numpy, gradients against finite differences."""
import numpy as np
import pytest

import graphc as gc
from graphc.graph.shapes import dim_symbol
from graphc.testing import assert_close, check_grad, evaluate

RNG = np.random.default_rng(99)

# shape, graphc builder, numpy expression
LAYOUT = [
    ((2, 3, 4), lambda x: gc.transpose(x), lambda a: np.transpose(a)),
    ((2, 3, 4), lambda x: gc.transpose(x, (1, 2, 0)), lambda a: np.transpose(a, (1, 2, 0))),
    ((2, 3, 4), lambda x: gc.transpose(x, (0, -1, 1)), lambda a: np.transpose(a, (0, 2, 1))),
    ((3, 4), lambda x: x.T, lambda a: a.T),
    ((2, 3, 4), lambda x: gc.reshape(x, (4, 6)), lambda a: a.reshape(4, 6)),
    ((2, 3, 4), lambda x: gc.reshape(x, (-1, 4)), lambda a: a.reshape(-1, 4)),
    ((2, 3, 4), lambda x: x.reshape(2, -1), lambda a: a.reshape(2, -1)),
    ((2, 3, 4), lambda x: gc.reshape(x, (24,)), lambda a: a.reshape(24)),
    ((2, 3), lambda x: gc.expand_dims(x, 0), lambda a: np.expand_dims(a, 0)),
    ((2, 3), lambda x: gc.expand_dims(x, -1), lambda a: np.expand_dims(a, -1)),
    ((2, 3), lambda x: gc.expand_dims(x, 1), lambda a: np.expand_dims(a, 1)),
    ((1, 3, 1), lambda x: gc.squeeze(x), lambda a: np.squeeze(a)),
    ((1, 3, 1), lambda x: gc.squeeze(x, 2), lambda a: np.squeeze(a, 2)),
    ((3, 1), lambda x: gc.broadcast_to(x, (2, 3, 4)), lambda a: np.broadcast_to(a, (2, 3, 4))),
    ((4,), lambda x: gc.broadcast_to(x, (3, 4)), lambda a: np.broadcast_to(a, (3, 4))),
    ((3, 4), lambda x: gc.concatenate([x, x * 2.0, x[:1]], axis=0),
     lambda a: np.concatenate([a, a * 2.0, a[:1]], axis=0)),
    ((3, 4), lambda x: gc.concatenate([x, x[:, :2]], axis=-1), lambda a: np.concatenate([a, a[:, :2]], axis=-1)),
    ((20, 16), lambda x: x[:, 7:-7], lambda a: a[:, 7:-7]),
    ((120, 3), lambda x: x[10:100], lambda a: a[10:100]),
    ((5, 6), lambda x: x[-1], lambda a: a[-1]),
    ((5, 6), lambda x: x[2, -3], lambda a: a[2, -3]),
    ((5, 6), lambda x: x[-4:-1, ::2], lambda a: a[-4:-1, ::2]),
    ((5, 6), lambda x: x[::-1, 1], lambda a: a[::-1, 1]),
    ((2, 3, 4), lambda x: x[..., 1], lambda a: a[..., 1]),
    ((2, 3, 4), lambda x: x[1, ...], lambda a: a[1, ...]),
    ((2, 3, 4), lambda x: x[:, None, 1:, None], lambda a: a[:, None, 1:, None]),
    ((2, 3), lambda x: x[None], lambda a: a[None]),
    ((5,), lambda x: x[1:100], lambda a: a[1:100]),
    ((5,), lambda x: x[3:1], lambda a: a[3:1]),
]


@pytest.mark.parametrize("shape, build, reference", LAYOUT)
def test_layout_op_shape_value_and_gradient(shape, build, reference):
    x = gc.placeholder(shape, "float64")
    y = build(x)
    data = RNG.standard_normal(shape)
    expected = reference(data)
    assert y.shape == expected.shape
    assert y.dtype == "float64"
    assert_close(evaluate(y, {x: data}), expected)
    if expected.size:
        check_grad(build, [shape])


def test_getitem_gradient_scatters_into_zeros():
    x = gc.placeholder((4, 5), "float64")
    g = evaluate(gc.grad(gc.sum(x[1:3, -2:] * 3.0), x), {x: np.ones((4, 5))})
    expected = np.zeros((4, 5))
    expected[1:3, -2:] = 3.0
    assert_close(g, expected)


def test_slicing_a_symbolic_axis():
    x = gc.placeholder(("batch", 28, 28), "float64")
    batch = dim_symbol("batch")
    tail = x[1:, 7:-7]
    assert tail.shape == (batch - 1, 14, 28)
    assert x[-1].shape == (28, 28)
    assert x[:, 14:, 14:].shape == (batch, 14, 14)
    data = RNG.standard_normal((5, 28, 28))
    outputs = evaluate([tail, x[-1], x[:-2]], {x: data})
    for result, expected in zip(outputs, [data[1:, 7:-7], data[-1], data[:-2]]):
        assert_close(result, expected)
    check_grad(lambda t: gc.sum(gc.tanh(t[1:, 7:-7])), [("batch", 16, 3)], arrays=[RNG.standard_normal((3, 16, 3))])


def test_reshape_with_symbolic_dims():
    x = gc.placeholder(("batch", 4, 7), "float64")
    batch = dim_symbol("batch")
    flat = gc.reshape(x, (batch, -1))
    assert flat.shape == (batch, 28)
    merged = gc.reshape(x, (-1, 7))
    assert merged.shape == (4 * batch, 7)
    back = gc.reshape(merged, (batch, 4, 7))
    assert back.shape == x.shape
    data = RNG.standard_normal((3, 4, 7))
    outputs = evaluate([flat, merged, back], {x: data})
    for result, expected in zip(outputs, [data.reshape(3, -1), data.reshape(-1, 7), data]):
        assert_close(result, expected)
    check_grad(lambda t: gc.sum(gc.reshape(t, (-1, 7))[:, :3] ** 2), [("batch", 4, 7)], arrays=[data])


def test_concatenate_along_a_symbolic_axis_adds_the_lengths():
    a, b = gc.placeholder(("n", 3), "float64"), gc.placeholder(("m", 3), "float64")
    joined = gc.concatenate([a, b])
    assert joined.shape == (dim_symbol("n") + dim_symbol("m"), 3)
    x, y = RNG.standard_normal((2, 3)), RNG.standard_normal((4, 3))
    assert_close(evaluate(joined, {a: x, b: y}), np.concatenate([x, y]))
    check_grad(lambda p, q: gc.sum(gc.concatenate([p, q]) ** 3), [("n", 3), ("m", 3)], arrays=[x, y])


def test_broadcast_to_a_symbolic_batch():
    row = gc.placeholder((1, 3), "float64")
    tiled = gc.broadcast_to(row, (dim_symbol("batch"), 3))
    x = gc.placeholder(("batch", 3), "float64")
    data, batch_data = RNG.standard_normal((1, 3)), RNG.standard_normal((4, 3))
    result = evaluate(tiled * x, {row: data, x: batch_data})
    assert_close(result, data * batch_data)
