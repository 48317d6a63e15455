"""take / gather, scatter_add, integer-array indexing and stack: shapes (symbolic too), values against numpy,
gradients against finite differences, native kernels against the reference, and the errors."""
import numpy as np
import pytest

import graphc as gc
from graphc.graph.shapes import dim_symbol
from graphc.lower.gather import IndexStatus
from graphc.lower.target import avx2_target, host_target
from graphc.testing import assert_close, check_grad, evaluate

RNG = np.random.default_rng(10)


def _target(name):
    return avx2_target() if name == "avx2" else host_target()


# ---- take: shapes and values against numpy.take -------------------------------------------------
TAKES = [  # x shape, indices, axis
    ((7, 5), [0, 6, -1, 3, 3], 0),
    ((7, 5), [[1, -7], [6, 0]], 0),
    ((7, 5), 4, 0),
    ((7, 5), -2, 1),
    ((2, 3, 4), [3, 0, 0, -4], 2),
    ((2, 3, 4), [[2], [1]], 1),
    ((2, 3, 4), [[2], [1]], -2),
    ((5,), [], 0),
]


@pytest.mark.parametrize("shape, indices, axis", TAKES)
def test_take_matches_numpy_take(shape, indices, axis):
    x = gc.placeholder(shape, "float64")
    data = RNG.standard_normal(shape)
    expected = np.take(data, np.asarray(indices, dtype=np.int64), axis=axis)
    y = gc.take(x, indices, axis=axis)
    assert y.shape == expected.shape and y.dtype == "float64"
    assert_close(evaluate(y, {x: data}), expected)
    assert_close(evaluate(y, {x: data}, backend="llvm"), expected)
    if expected.size:
        check_grad(lambda t: gc.take(t, indices, axis=axis), [shape])


def test_gather_is_take_and_fed_int32_indices_work():
    assert gc.gather is gc.take
    x, i = gc.placeholder((6, 3), "float32"), gc.placeholder((None,), "int32")
    data, idx = RNG.standard_normal((6, 3)).astype(np.float32), np.array([5, -6, 2, 2], dtype=np.int32)
    for backend in ("reference", "llvm"):
        assert np.array_equal(evaluate(gc.gather(x, i), {x: data, i: idx}, backend=backend), data[idx])


def test_take_shape_rule_keeps_symbolic_dims():
    x = gc.placeholder(("rows", 4, "cols"), "float32")
    i = gc.placeholder(("batch", 2), "int64")
    rows, cols, batch = dim_symbol("rows"), dim_symbol("cols"), dim_symbol("batch")
    assert gc.take(x, i).shape == (batch, 2, 4, cols)
    assert gc.take(x, i, axis=1).shape == (rows, batch, 2, cols)
    assert gc.take(x, i, axis=-1).shape == (rows, 4, batch, 2)
    assert x[i].shape == (batch, 2, 4, cols)


def test_take_of_integers_and_its_gradient_is_a_scatter_add():
    table = gc.placeholder((5, 2), "int32")
    data = np.arange(10, dtype=np.int32).reshape(5, 2)
    for backend in ("reference", "llvm"):
        assert np.array_equal(evaluate(gc.take(table, [4, 0, 4]), {table: data}, backend=backend), data[[4, 0, 4]])
    x = gc.placeholder((5, 2), "float64")
    g = gc.grad(gc.sum(gc.take(x, [4, 0, 4, -1]) * 2.0), x)
    assert g.op.name == "scatter_add"
    expected = np.zeros((5, 2))
    expected[0], expected[4] = 2.0, 6.0  # index 4 three times (one as -1): the gradients add up
    assert_close(evaluate(g, {x: np.ones((5, 2))}), expected)


def test_second_derivative_through_take():
    # take's vjp is scatter_add and scatter_add's is take: the Hessian of sum(take(x, i)^3) is diagonal.
    x = gc.placeholder((4,), "float64")
    cost = gc.sum(gc.take(x, [1, 1, 3]) ** 3)
    hess = gc.autodiff.hessian(cost, x)
    data = np.array([0.5, -1.0, 2.0, 1.5])
    expected = np.diag([0.0, 2 * 6 * data[1], 0.0, 6 * data[3]])
    for backend in ("reference", "llvm"):
        assert_close(evaluate(hess, {x: data}, backend=backend), expected, rtol=1e-12)


# ---- scatter_add -------------------------------------------------------------------------------
def test_scatter_add_matches_np_add_at_with_duplicates_and_gradient():
    updates = gc.placeholder((2, 5, 3), "float64")
    indices = [[0, 3, 3, -1, 0]]
    out = gc.scatter_add(updates, np.array(indices).reshape(5), (2, 4, 3), axis=1)
    data = RNG.standard_normal((2, 5, 3))
    expected = np.zeros((2, 4, 3))
    np.add.at(expected, (slice(None), np.array(indices).reshape(5)), data)
    for backend in ("reference", "llvm"):
        assert_close(evaluate(out, {updates: data}, backend=backend), expected, rtol=1e-15)
    check_grad(lambda u: gc.scatter_add(u, [0, 3, 3, -1, 0], (2, 4, 3), axis=1), [(2, 5, 3)])
    check_grad(lambda u: gc.take(gc.scatter_add(u, [0, 3, 3, -1, 0], (2, 4, 3), axis=1) ** 2, [3, 1], axis=1),
               [(2, 5, 3)], backend="llvm")


def test_anonymous_dims_that_meet_in_stack_or_scatter_add_are_unified():
    a, b = gc.placeholder((None, 3), "float32"), gc.placeholder((None, 3), "float32")
    assert gc.stack([a, b]).shape == (2, a.shape[0], 3)
    f = gc.function([a, b], gc.stack([a, b]), backend="reference")
    with pytest.raises(ValueError, match="they must agree"):
        f(np.zeros((2, 3)), np.zeros((4, 3)))
    u, i = gc.placeholder((None, 3), "float32"), gc.placeholder((None,), "int64")
    out = gc.scatter_add(u, i, (4, 3))
    data = np.ones((5, 3), dtype=np.float32)
    expected = np.zeros((4, 3), dtype=np.float32)
    np.add.at(expected, [0, 0, 3, -1, 2], data)
    assert np.array_equal(evaluate(out, {u: data, i: np.array([0, 0, 3, -1, 2])}, backend="llvm"), expected)


def test_scatter_add_rejects_updates_that_do_not_fit():
    with pytest.raises(gc.GraphError, match=r"do not fit indices of shape \(2,\) into \(4, 3\).*expected \(2, 3\)"):
        gc.scatter_add(gc.placeholder((3, 3), "float32"), [0, 1], (4, 3))


# ---- native kernels against the reference: odd sizes, both targets, 1-3 threads ------------------
@pytest.mark.parametrize("target", ["host", "avx2"])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_native_take_and_scatter_add_match_the_reference(target, threads):
    """One program per target and thread count (symbolic dims), run on sizes 1, 7 and 129 and on one large
    enough for the threads to split the work; float32 sums of repeated indices must be bit-identical."""
    x = gc.placeholder(("rows", "cols"), "float32")
    t = gc.placeholder(("outer", "rows", 3), "float64")
    i = gc.placeholder(("m",), "int64")
    j = gc.placeholder(("m",), "int32")
    w = gc.placeholder(("m", "cols"), "float32")
    outputs = [x[i], gc.take(x, j, axis=1), gc.take(t, i, axis=1), gc.take(t, j, axis=2),
               gc.scatter_add(w, i, (dim_symbol("rows"), dim_symbol("cols"))),
               gc.grad(gc.sum(gc.take(t, i, axis=1) ** 2), t)]
    inputs = [x, t, i, j, w]
    native = gc.function(inputs, outputs, backend="llvm", threads=threads, target=_target(target))
    reference = gc.function(inputs, outputs, backend="reference")
    for rows, cols, m in [(1, 1, 1), (7, 7, 7), (129, 129, 129), (7, 1, 129), (129, 300, 1000), (3, 129, 40000)]:
        i_data = RNG.integers(-rows, rows, size=m)
        j_data = RNG.integers(-min(cols, 3), min(cols, 3), size=m).astype(np.int32)  # axes of cols and of 3
        feeds = [RNG.standard_normal((rows, cols)).astype(np.float32), RNG.standard_normal((2, rows, 3)),
                 i_data, j_data, RNG.standard_normal((m, cols)).astype(np.float32)]
        for k, (actual, expected) in enumerate(zip(native(*feeds), reference(*feeds))):
            assert np.array_equal(actual, expected), f"output {k} at rows={rows}, cols={cols}, m={m}"


def test_row_gather_of_a_constant_table_uses_no_copy_of_the_table():
    # The shuffled-batch gather of issue 14: rows of a big fixed array, indices fed per step.
    table = RNG.standard_normal((1000, 784)).astype(np.float32)
    i = gc.placeholder(("batch",), "int64")
    f = gc.function([i], gc.constant(table)[i], threads=2)
    order = RNG.permutation(1000)[:128]
    assert np.array_equal(f(order), table[order])
    assert [k.node.op.name for k in f.program.schedule.kernels] == ["take"]


# ---- out-of-range indices ----------------------------------------------------------------------
def test_constant_indices_are_checked_when_the_graph_is_built():
    x = gc.placeholder((3, 4), "float32")
    with pytest.raises(gc.GraphError, match="index 3 is out of bounds for axis 0 with size 3"):
        x[[0, 3]]
    with pytest.raises(gc.GraphError, match="index -5 is out of bounds for axis 1 with size 4"):
        gc.take(x, np.array([[-5]]), axis=1)


def test_reference_raises_index_error_naming_the_op_and_position():
    x, i = gc.placeholder((None, 2), "float64"), gc.placeholder((2, 2), "int64")
    f = gc.function([x, i], x[i], backend="reference")
    with pytest.raises(IndexError, match=r"take .*test_indexing_ops.py:\d+\): index -4 at position \(1, 0\) .* "
                                         r"out of bounds for axis 0 with size 3"):
        f(np.zeros((3, 2)), [[0, 1], [-4, 2]])


@pytest.mark.parametrize("threads", [1, 3])
def test_native_kernels_never_use_a_bad_index_and_record_it(threads):
    """A bad index is never dereferenced (2**40 would fault), its row is NaN, and the status words say where.
    The program runs through its executable, so the outputs can be looked at before the status is read."""
    x, i = gc.placeholder((None, 4), "float32"), gc.placeholder((None,), "int64")
    g = gc.grad(gc.sum(x[i]), x)
    f = gc.function([x, i], [x[i], g], threads=threads)
    status = IndexStatus(f.program.schedule, f.program._compiled)
    data = np.ones((5, 4), dtype=np.float32)

    def run(indices):
        feeds, dims = f.check_inputs((data, indices))
        return f.program.executable.run(feeds, tuple(dims[s] for s in f.program.schedule.dims)), dims
    (values, grads), dims = run(np.array([1, 2 ** 40, -6]))
    assert np.isnan(values[1:]).all() and np.array_equal(values[0], data[1])
    assert np.array_equal(grads, np.where(np.arange(5)[:, None] == 1, 1.0, 0.0) * np.ones((1, 4)))
    with pytest.raises(IndexError, match=r"take .*: the index at position \(1,\) of the indices is out of bounds "
                                         r"for axis 0 with size 5 \(valid: -5 to 4\)"):
        status.check(dims)
    status.check(dims)  # the words were cleared
    run(np.array([1, 2, -5]))
    status.check(dims)


def test_native_call_with_a_bad_index_raises_index_error():
    x, i = gc.placeholder((None, 4), "float32"), gc.placeholder((None,), "int64")
    f = gc.function([x, i], x[i])
    with pytest.raises(IndexError, match="out of bounds for axis 0 with size 5"):
        f(np.ones((5, 4), dtype=np.float32), np.array([7]))


# ---- integer-array indexing --------------------------------------------------------------------
FANCY = [  # index, as written in both numpy and graphc
    [0, 2, -1],
    [[1, 1], [0, 3]],
    np.array([3, 0], dtype=np.int32),
    ([2, 0], slice(1, None)),
    ([2, 0], 1),
    ([2, 0], Ellipsis, None),
    ([2, 0], None, slice(None, None, -1), -1),
    ((0, 1), slice(0, 2)),
]


@pytest.mark.parametrize("index", FANCY, ids=repr)
def test_integer_array_as_first_index_matches_numpy(index):
    x = gc.placeholder((4, 3, 2), "float64")
    data = RNG.standard_normal((4, 3, 2))
    expected = data[index]
    y = x[index]
    assert y.shape == expected.shape
    assert_close(evaluate(y, {x: data}), expected)
    check_grad(lambda t: t[index], [(4, 3, 2)])


def test_a_tensor_index_gathers_rows_natively():
    x, i = gc.placeholder(("batch", 3), "float64"), gc.placeholder((), "int64")
    rows = gc.placeholder((2,), "int64")
    data = RNG.standard_normal((5, 3))
    got = evaluate([x[i], x[rows, 1:]], {x: data, i: np.array(-2), rows: np.array([4, 0])}, backend="llvm")
    assert_close(got[0], data[-2])
    assert_close(got[1], data[[4, 0], 1:])


@pytest.mark.parametrize("index, message", [
    ((slice(None), [0, 1]), "an integer array is supported as the first index only"),
    (([0], [1]), "an integer array is supported as the first index only"),
    (([0], 1, 1, 1), "4 indexes for a tensor of shape"),
    ([True, False, True], "boolean indices"),
    (True, "a boolean index"),
    ([0.5], "indices must be integers"),
])
def test_unsupported_indexing_says_what_is_supported(index, message):
    x = gc.placeholder((3, 4, 2), "float32")
    with pytest.raises(gc.GraphError, match=message):
        x[index]
    with pytest.raises(gc.GraphError, match="indices must be an int32 or int64 tensor, got float32"):
        x[gc.placeholder((2,), "float32")]


# ---- stack -------------------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
def test_stack_matches_numpy_and_its_gradient_unstacks(axis):
    shapes = [(3, 2)] * 3
    arrays = [RNG.standard_normal(s) for s in shapes]
    tensors = [gc.placeholder(s, "float64") for s in shapes]
    expected = np.stack(arrays, axis=axis)
    y = gc.stack(tensors, axis=axis)
    assert y.shape == expected.shape
    feeds = dict(zip(tensors, arrays))
    assert_close(evaluate(y, feeds), expected)
    assert_close(evaluate(y, feeds, backend="llvm"), expected)
    check_grad(lambda a, b, c: gc.stack([a, b * 2.0, c], axis=axis), shapes)


def test_stack_of_symbolic_shapes_and_errors():
    a, b = gc.placeholder(("batch", 3), "float32"), gc.placeholder(("batch", 3), "float32")
    assert gc.stack([a, b], axis=1).shape == (dim_symbol("batch"), 2, 3)
    with pytest.raises(gc.GraphError, match=r"tensors\[1\] has \(3, 4\)"):
        gc.stack([gc.placeholder((3,)), gc.placeholder((3, 4))])
    with pytest.raises(gc.GraphError, match="valid: -3 to 2"):
        gc.stack([a, b], axis=3)
    with pytest.raises(gc.GraphError, match="at least one tensor"):
        gc.stack([])
    with pytest.raises(gc.GraphError, match="wrap numbers and arrays in gc.constant"):
        gc.stack([a, np.zeros((2, 3))])
