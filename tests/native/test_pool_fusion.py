"""The relu mask of a convnet's backward pass fused into the max-pooling gradient (fuse_matmul_epilogue ->
fused_max_pool2d_grad): one kernel instead of two, with the bits of the two it replaces and of the reference,
for overlapping windows, gaps between windows and odd channel counts, on 1-3 threads and the AVX2 target."""
import numpy as np
import pytest
import sympy

import graphc as gc
from graphc.lower.target import avx2_target, host_target
from graphc.ops.expr import arg

GEOMETRIES = [((2, 2), (2, 2), "valid"), ((3, 2), (1, 1), "same"), ((2, 2), (3, 3), "same")]


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
