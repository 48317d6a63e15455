"""The relu mask of a convnet's backward pass fused into the max-pooling gradient (fuse_matmul_epilogue ->
fused_max_pool2d_grad): one kernel instead of two, with the bits of the two it replaces and of the reference,
for overlapping windows, gaps between windows and odd channel counts, on 1-3 threads and the AVX2 target; and
that gradient stored in the transposed layout the filter gradient below reads, when nothing needs it in NHWC."""
import numpy as np
import pytest
import sympy

import graphc as gc
from graphc.lower.target import avx2_target, host_target
from graphc.ops.expr import arg

GEOMETRIES = [((2, 2), (2, 2), "valid"), ((3, 2), (1, 1), "same"), ((2, 2), (3, 3), "same"), ((2, 3), (2, 3), "valid")]


def _relu_pool_step(channels, pool, strides, padding, dtype="float32"):
    """([x, g], dx) for dx = d sum(max_pool2d(relu(x)) * g) / dx: a max-pooling gradient, then relu's mask."""
    x = gc.placeholder(("batch", 9, 7, channels), dtype)
    y = gc.max_pool2d(gc.relu(x), pool, strides, padding)
    g = gc.placeholder(("batch",) + y.shape[1:], dtype)
    return [x, g], gc.grad(gc.sum(y * g), x)


def _feeds(inputs, batch, seed):
    rng = np.random.default_rng(seed)
    x, g = inputs
    shapes = [(batch,) + tuple(p.shape[1:]) for p in inputs]
    return [rng.standard_normal(shape).astype(p.dtype) for shape, p in zip(shapes, [x, g])]


def test_the_relu_mask_becomes_the_pooling_gradients_epilogue():
    inputs, dx = _relu_pool_step(3, (2, 2), (2, 2), "valid", "float64")
    f = gc.function(inputs, dx, backend="reference")
    fused = [n for n in f.optimized_graph.nodes if n.op.name == "fused_max_pool2d_grad"]
    assert len(fused) == 1 and not [n for n in f.optimized_graph.nodes if n.op.name == "max_pool2d_grad"]
    assert fused[0].attrs["epilogue"] == arg(0) * sympy.Heaviside(arg(1))
    feeds = _feeds(inputs, 2, 0)
    unfused = gc.function(inputs, dx, backend="reference", optimize=["fuse_matmul_epilogue"])
    np.testing.assert_array_equal(f(*feeds), unfused(*feeds))


def test_an_epilogue_operand_broadcast_along_the_channels_is_not_fused():
    x = gc.placeholder((2, 4, 4, 3), "float32")
    scale = gc.placeholder((3,), "float32")
    dx = gc.grad(gc.sum(gc.max_pool2d(x, 2)), x) * scale
    f = gc.function([x, scale], dx)
    assert {n.op.name for n in f.optimized_graph.nodes} >= {"max_pool2d_grad", "elementwise"}


@pytest.mark.parametrize("target", [None, "avx2"])
@pytest.mark.parametrize("channels", [1, 3, 17])
def test_the_fused_kernel_has_the_bits_of_the_two_it_replaces(target, channels):
    target = avx2_target() if target else host_target()
    for pool, strides, padding in GEOMETRIES:
        inputs, dx = _relu_pool_step(channels, pool, strides, padding)
        feeds = _feeds(inputs, -(-40000 // (9 * 7 * channels)), channels)  # enough images to split them
        expected = gc.function(inputs, dx, backend="reference")(*feeds)
        unfused = gc.function(inputs, dx, optimize=["fuse_matmul_epilogue"], target=target)(*feeds)
        np.testing.assert_array_equal(unfused, expected)
        for threads in (1, 2, 3):
            f = gc.function(inputs, dx, threads=threads, target=target)
            kernels = [k.node.op.name for k in f.program.schedule.kernels if k.node is not None]
            assert kernels.count("fused_max_pool2d_grad") == 1 and "max_pool2d_grad" not in kernels
            np.testing.assert_array_equal(f(*feeds), expected)


def _conv_relu_pool(channels, pool, strides, padding):
    """([x, g], [w, b], cost) for cost = sum(max_pool2d(relu(conv2d(x, w) + b)) * g)."""
    rng = np.random.default_rng(channels)
    x = gc.placeholder(("batch", 10, 9, channels), "float32")
    w = gc.variable(rng.standard_normal((3, 3, channels, 8)).astype(np.float32))
    b = gc.variable(rng.standard_normal(8).astype(np.float32))
    h = gc.max_pool2d(gc.relu(gc.conv2d(x, w) + b), pool, strides, padding)
    g = gc.placeholder(("batch",) + h.shape[1:], "float32")
    return [x, g], [w, b], gc.sum(h * g)


def _stored_transposed(function) -> list:
    return [n for n in function.optimized_graph.nodes if n.op.name == "fused_max_pool2d_grad" and "axes" in n.attrs]


@pytest.mark.parametrize("channels", [1, 3])
def test_the_filter_gradients_transpose_is_stored_by_the_pooling_gradient(channels):
    for pool, strides, padding in GEOMETRIES:
        inputs, params, cost = _conv_relu_pool(channels, pool, strides, padding)
        feeds = _feeds(inputs, 5, channels)
        gradients = gc.grad(cost, params)
        reference = gc.function(inputs, gradients, backend="reference")
        tiled = strides == pool and padding == "valid"  # else the kernel adds into d: it stays NHWC
        assert len(_stored_transposed(reference)) == tiled
        for stored in _stored_transposed(reference):
            assert stored.attrs["axes"] == (1, 2, 0, 3)
            readers = [n.op.name for n in reference.optimized_graph.nodes if stored in n.inputs]
            assert sorted(readers) == ["conv", "reduce_sum"]  # the filter and bias gradients, no transpose
        unfused = gc.function(inputs, gradients, backend="reference", optimize=["fuse_matmul_epilogue"])
        expected = unfused(*[f.astype(np.float64) for f in feeds])
        for got, want in zip(reference(*feeds), expected):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        results = []
        for threads, target in [(1, host_target()), (2, host_target()), (3, host_target()), (2, avx2_target())]:
            native = gc.function(inputs, gradients, threads=threads, target=target)
            # the filter gradient's transposed input and its own transpose; and d's, unless d is stored transposed
            assert [k.node.op.name for k in native.program.schedule.kernels if k.node is not None].count(
                "transpose") == 3 - tiled
            results.append(native(*feeds))
            for got, want in zip(results[-1], expected):
                np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * float(np.abs(want).max()))
        for other in results[1:]:
            for a, b in zip(results[0], other):
                np.testing.assert_array_equal(a, b)


def test_a_gradient_the_data_gradient_also_reads_stays_in_its_layout():
    inputs, (w, b), cost = _conv_relu_pool(3, (2, 2), (2, 2), "valid")
    gradients = gc.grad(cost, [inputs[0], w, b])
    assert not _stored_transposed(gc.function(inputs, gradients, backend="reference"))
