"""How the convolution kernels of a training step share their work between threads: a filter gradient with
fewer row tiles than threads (conv1's, 9 rows) splits its columns, so no thread sits idle."""
import ctypes

import numpy as np

import graphc as gc


def _call(program, kernel, slots, dims_array, tid, nthreads):
    """Run ``kernel``'s native function as thread ``tid`` of ``nthreads`` on the bound buffers."""
    pointers = [0 if b is None else int(slots[b.slot]) for b in kernel.arguments]
    native = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * (len(pointers) + 1), ctypes.c_int32, ctypes.c_int32)(
        program.kernel_address(kernel.name))
    native(*pointers, dims_array.ctypes.data, tid, nthreads)


def test_a_filter_gradient_with_one_row_tile_splits_its_columns():
    x = gc.placeholder((None, 12, 12, 1), "float32")
    w = gc.variable(np.random.default_rng(0).standard_normal((3, 3, 1, 32)).astype(np.float32))
    y = gc.conv2d(x, w)
    f = gc.function([x], gc.grad(gc.sum(y * y), [w]), threads=2)
    program, data = f.program, np.random.default_rng(1).standard_normal((3, 12, 12, 1)).astype(np.float32)
    arrays, dims = f.check_inputs([data])
    slots, dims_array, _outputs = program.bind(arrays, dims)
    kernels = program.schedule.kernels
    index = next(i for i, k in enumerate(kernels) if k.node.op.name == "conv" and k.node.shape == (1, 3, 3, 32))
    for kernel in kernels[:index]:  # what the filter gradient reads
        _call(program, kernel, slots, dims_array, 0, 1)
    gradient = kernels[index]
    product = np.ctypeslib.as_array((ctypes.c_float * 9 * 32).from_address(int(slots[gradient.out.slot])))
    product = product.reshape(9, 32)
    product[...] = np.nan
    _call(program, gradient, slots, dims_array, 1, 2)  # the second thread alone
    written = ~np.isnan(product)
    assert written.any(axis=0).sum() == 16 and written[:, 16:].all() and not written[:, :16].any()
    _call(program, gradient, slots, dims_array, 0, 2)
    expected = gc.function([x], gc.grad(gc.sum(y * y), [w]), backend="reference")(data.astype(np.float64))
    np.testing.assert_allclose(product.reshape(3, 3, 1, 32), expected[0], rtol=1e-4, atol=1e-4)
