"""A take folded into the GEMMs that read it as A (graphc/passes/fusion.py fold_take_into_matmul): the GEMM reads
A's rows (transpose_a: its k's) through the indices, never copying them, with the unfused program's bits; and
Function.run_steps, whose steps read a batched input that only products read as A in place the same way."""
import numpy as np
import pytest

import graphc as gc
from graphc.lower.target import avx2_target, host_target
from graphc.viz.examples import glorot_uniform, rmsprop_updates

ROWS, FEATURES, HIDDEN, CLASSES = 90, 7, 33, 5
UNFOLDED = ["fold_take_into_matmul"]


def row_product(idx_dtype, k=FEATURES):
    """relu(take(x, idx) @ w + 1): A row-major; ``k`` None: K known at run time only."""
    x, idx = gc.placeholder((None, k), name="x"), gc.placeholder((None,), idx_dtype, name="idx")
    w = gc.placeholder((k, 5), name="w")
    return [x, idx, w], gc.relu(gc.take(x, idx) @ w + 1.0)


def transposed_product(idx_dtype, count=None):
    """take(x, idx)^T @ g, the weight gradient's shape: A is K x M, K = len(idx) (static ``count`` or a dim)."""
    x, idx = gc.placeholder((None, FEATURES), name="x"), gc.placeholder((count,), idx_dtype, name="idx")
    g = gc.placeholder((count, 5), name="g")
    return [x, idx, g], gc.transpose(gc.take(x, idx)) @ g


def arrays(inputs, indices):
    rng = np.random.default_rng(1)
    fed = [rng.standard_normal((ROWS, FEATURES)).astype(np.float32), indices]
    rows = len(indices) if inputs[2].name == "g" else FEATURES
    return fed + [rng.standard_normal((rows, 5)).astype(np.float32)]


def compiled_twice(build, **options):
    """(the function with the take folded, the same without the fold)."""
    inputs, output = build
    return (gc.function(inputs, output, **options), gc.function(inputs, output, optimize=UNFOLDED, **options))


def kernel_ops(function) -> list:
    """The op of each kernel's node (a row kernel has none)."""
    return [k.node.op.name for k in function.program.schedule.kernels if k.node is not None]


def folded_into(function) -> list:
    """The ops of the kernels that read A through a folded take."""
    return [k.node.op.name for k in function.program.schedule.kernels for n in k.nodes if n.op.name == "take"]


CASES = {
    "rows, static K": lambda dtype: row_product(dtype),
    "rows, run-time K": lambda dtype: row_product(dtype, None),
    "transposed, run-time K": lambda dtype: transposed_product(dtype),
    "transposed, static K": lambda dtype: transposed_product(dtype, 37),
}


@pytest.mark.parametrize("case, precision, threads, target", [
    ("rows, static K", "float32", 1, host_target()),
    ("rows, static K", "mixed_bfloat16", 3, host_target()),
    ("rows, run-time K", "float32", 2, host_target()),
    ("rows, run-time K", "mixed_bfloat16", 1, avx2_target()),
    ("transposed, run-time K", "float32", 3, host_target()),
    ("transposed, run-time K", "mixed_bfloat16", 2, host_target()),
    ("transposed, static K", "float32", 2, avx2_target()),
    ("transposed, static K", "mixed_bfloat16", 1, host_target()),
])
def test_a_folded_take_gives_the_unfolded_programs_bits(case, precision, threads, target):
    folded, unfolded = compiled_twice(CASES[case]("int64" if threads != 2 else "int32"), precision=precision,
                                      threads=threads, target=target)
    assert "take" not in kernel_ops(folded) and "take" in kernel_ops(unfolded) and len(folded_into(folded)) == 1
    rng = np.random.default_rng(2)
    dtype = "int32" if threads == 2 else "int64"
    for indices in (rng.permutation(ROWS)[:37], rng.integers(-ROWS, ROWS, 37), np.full(37, ROWS - 1)):
        fed = arrays(folded.graph.inputs, indices.astype(dtype))
        expected = unfolded(*fed)
        np.testing.assert_array_equal(folded(*fed), expected)
        taken = fed[0][indices]
        reference = taken @ fed[2] if case.startswith("rows") else taken.T @ fed[2]
        np.testing.assert_allclose(expected, np.maximum(reference + 1, 0) if case.startswith("rows") else reference,
                                   rtol=2e-2 if precision != "float32" else 1e-5, atol=2e-2)


@pytest.mark.parametrize("case", ["rows, static K", "transposed, run-time K"])
def test_a_bad_index_is_never_read_and_raises_the_unfolded_takes_error(case):
    folded, unfolded = compiled_twice(CASES[case]("int64"), threads=2)
    good = np.arange(37) - 20
    for bad in (2 ** 40, -ROWS - 1, ROWS):  # 2**40 rows past x would fault if it were dereferenced
        indices = good.copy()
        indices[[30, 11]] = bad  # the smallest position is reported
        fed = arrays(folded.graph.inputs, indices)
        with pytest.raises(IndexError) as folded_error:
            folded(*fed)
        with pytest.raises(IndexError) as unfolded_error:
            unfolded(*fed)
        assert str(folded_error.value) == str(unfolded_error.value)
        assert "the index at position (11,) of the indices is out of bounds for axis 0 with size 90" \
            in str(folded_error.value)
    fed = arrays(folded.graph.inputs, good)
    np.testing.assert_array_equal(folded(*fed), unfolded(*fed))  # the status word was cleared


# ---- run_steps ------------------------------------------------------------------------------------------------
def mlp_step(threads=1, precision="float32", target=None, summed_x=False, lazy=False):
    """Dense(relu) -> Dense(softmax), cross-entropy, RMSprop: x is read by x @ W1 and by W1's gradient x^T @ g
    only, unless ``summed_x`` adds a term that reads x itself."""
    rng = np.random.default_rng(0)
    x, y = gc.placeholder(("batch", FEATURES), name="x"), gc.placeholder(("batch", CLASSES), name="y")
    params = [gc.variable(glorot_uniform(rng, FEATURES, HIDDEN)), gc.variable(np.zeros(HIDDEN, "float32")),
              gc.variable(glorot_uniform(rng, HIDDEN, CLASSES)), gc.variable(np.zeros(CLASSES, "float32"))]
    w1, b1, w2, b2 = params
    probabilities = gc.softmax(gc.relu(x @ w1 + b1) @ w2 + b2)
    loss = gc.mean(gc.categorical_crossentropy(y, probabilities))
    if summed_x:
        loss = loss + 1e-3 * gc.mean(x)
    return gc.function([x, y], loss, updates=rmsprop_updates(params, gc.grad(loss, params)), threads=threads,
                       precision=precision, target=target or host_target(), lazy=lazy)


def data():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((ROWS, FEATURES)).astype(np.float32)
    return x, np.eye(CLASSES, dtype=np.float32)[rng.integers(0, CLASSES, ROWS)]


def assert_runs_as_calls(called, stepped, batches, x, y):
    expected = [called(x[rows], y[rows]) for rows in batches]
    np.testing.assert_array_equal(stepped.run_steps(batches, x, y), expected)
    for (variable, _), (same, _) in zip(called.optimized_graph.updates, stepped.optimized_graph.updates):
        np.testing.assert_array_equal(variable.storage, same.storage)


@pytest.mark.parametrize("precision, threads, target", [
    ("float32", 1, None), ("float32", 3, None), ("mixed_bfloat16", 2, None), ("float32", 2, avx2_target()),
    ("mixed_bfloat16", 1, avx2_target()),
])
def test_run_steps_reads_x_in_place_with_a_call_per_batchs_bits(precision, threads, target):
    x, y = data()
    called, stepped = (mlp_step(threads, precision, target) for _ in range(2))
    order = np.random.default_rng(4).permutation(ROWS)
    batches = [order[:32], order[32:64], order[64:]]  # a shorter last batch
    assert_runs_as_calls(called, stepped, batches, x, y)
    assert_runs_as_calls(called, stepped, [[0, -1, 5, 5], [89, -90, 7, 0], [3, 3, 3, 3]], x, y)  # repeats, negatives
    (variant,) = stepped._gathering.values()  # compiled once, for both runs
    assert "take" not in kernel_ops(variant) and sorted(folded_into(variant)) == ["fused_matmul", "matmul"]


def test_a_lazy_function_run_through_run_steps_compiles_only_the_variant():
    x, y = data()
    called, stepped = mlp_step(), mlp_step(lazy=True)
    assert stepped._program is None
    assert_runs_as_calls(called, stepped, np.random.default_rng(7).permutation(ROWS).reshape(3, 30), x, y)
    assert stepped._program is None and len(stepped._gathering) == 1
    np.testing.assert_array_equal(stepped(x[:5], y[:5]), called(x[:5], y[:5]))  # a call compiles its program
    assert stepped._program is not None


def test_run_steps_copies_the_rows_of_an_input_that_something_else_reads():
    x, y = data()
    called, stepped = mlp_step(summed_x=True), mlp_step(summed_x=True)
    batches = np.random.default_rng(5).permutation(ROWS).reshape(3, 30)
    assert_runs_as_calls(called, stepped, batches, x, y)
    assert not stepped._gathering


def two_batch_dims_step():
    """x1 and x2 read only by products, as A, but batched along two dims: "a" and "b"."""
    rng = np.random.default_rng(6)
    x1, x2 = gc.placeholder(("a", FEATURES), name="x1"), gc.placeholder(("b", FEATURES), name="x2")
    w = gc.variable(glorot_uniform(rng, FEATURES, CLASSES))
    loss = gc.mean(gc.square(x1 @ w)) + gc.mean(x2 @ w)
    return gc.function([x1, x2], loss, updates=[(w, w - 0.1 * gc.grad(loss, [w])[0])], threads=2)


def test_run_steps_reads_in_place_the_inputs_of_the_first_ones_batch_dim_and_copies_the_others():
    """One indices input per step: x2, batched along another dim than x1's, is copied as before."""
    called, stepped = two_batch_dims_step(), two_batch_dims_step()
    x, _ = data()
    batches = np.random.default_rng(7).permutation(ROWS).reshape(6, 15)
    np.testing.assert_array_equal(stepped.run_steps(batches, x, x[::-1].copy()),
                                  [called(x[rows], x[::-1][rows]) for rows in batches])
    np.testing.assert_array_equal(called.graph.updates[0][0].storage, stepped.graph.updates[0][0].storage)
    assert list(stepped._gathering) == [(0,)]
