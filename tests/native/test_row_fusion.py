"""Row fusion (graphc/lower/rows.py): a classifier's narrow tail runs as one kernel, chunk of rows by chunk
of rows, and computes what the reference executor does at every batch size, chunk edges included."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import graphc as gc
from graphc.lower.program import RowKernel
from graphc.lower.rows import CHUNK_ROWS
from graphc.lower.target import avx2_target, host_target
from graphc.viz.examples import mnist_mlp

CLASSES = 10
BATCHES = [1, 7, CHUNK_ROWS - 1, CHUNK_ROWS, CHUNK_ROWS + 1, 129]


def row_kernels(function):
    return [k for k in function.program.schedule.kernels if isinstance(k, RowKernel)]


def classifier_tail(**options):
    """Logits in, every role out: the loss and accuracy (row members, sums, means after them), max and
    min over the batch, a sum over everything, the softmax as an output, and the bias's RMSprop update
    from its gradient (a sink, then updates writing variables)."""
    logits = gc.placeholder(("batch", CLASSES), name="logits")
    y = gc.placeholder(("batch", CLASSES), name="y")
    b = gc.variable(np.linspace(-0.5, 0.5, CLASSES, dtype=np.float32), name="b")
    mean_square = gc.variable(np.full(CLASSES, 0.1, np.float32), name="b_rms")
    z = logits + b
    probabilities = gc.softmax(z)
    loss = gc.mean(gc.categorical_crossentropy(y, probabilities))
    accuracy = gc.mean(gc.cast(gc.equal(gc.argmax(probabilities, -1), gc.argmax(y, -1)), "float32"))
    (gradient,) = gc.grad(loss, [b])
    new_mean_square = 0.9 * mean_square + 0.1 * gc.square(gradient)
    updates = [(mean_square, new_mean_square), (b, b - 0.01 * gradient / gc.sqrt(new_mean_square + 1e-7))]
    outputs = [loss, accuracy, gc.max(z, axis=0), gc.min(probabilities, axis=0), gc.sum(z), probabilities]
    return gc.function([logits, y], outputs, updates, **options), [b, mean_square]


def feeds(batch, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((batch, CLASSES)).astype(np.float32) * 3
    return [logits, np.eye(CLASSES, dtype=np.float32)[rng.integers(0, CLASSES, batch)]]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch", BATCHES)
def test_the_tail_is_one_row_kernel_computing_what_the_reference_does(batch, threads):
    native, native_variables = classifier_tail(threads=threads)
    reference, reference_variables = classifier_tail(backend="reference")
    (group,) = row_kernels(native)
    assert len(native.program.schedule.kernels) == 1
    assert {role for role, _ in group.members} == {"pre", "row", "sink", "post"}
    for step in range(2):  # the second step starts from the updated bias
        got, want = native(*feeds(batch, step)), reference(*feeds(batch, step))
        for index, (g, w) in enumerate(zip(got, want)):
            np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-6, err_msg=f"output {index}")
        for g, w in zip(native_variables, reference_variables):
            np.testing.assert_allclose(g.value, w.value, rtol=2e-5, atol=1e-7, err_msg=g.name)


def test_without_the_rewrite_the_same_tail_is_many_kernels_with_the_same_numbers():
    fused, fused_variables = classifier_tail()
    unfused, unfused_variables = classifier_tail(optimize=["fuse_row_wise"])
    assert not row_kernels(unfused) and len(unfused.program.schedule.kernels) > 10
    for g, w in zip(fused(*feeds(45)), unfused(*feeds(45))):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-6)
    for g, w in zip(fused_variables, unfused_variables):
        np.testing.assert_allclose(g.value, w.value, rtol=2e-5, atol=1e-7)


def assert_matches_reference(outputs, data, inputs):
    native = gc.function(inputs, outputs)
    expected = gc.function(inputs, outputs, backend="reference")(*data)
    for g, w in zip(native(*data), expected):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-6)
    return native.program.schedule.kernels


def test_a_kernel_that_needs_the_group_and_feeds_a_later_row_op_ends_the_group():
    """tanh(x) -> softmax over the batch (not a row op) -> exp and a row sum: these cannot join tanh's
    group, which would then have to run both before and after the softmax."""
    x = gc.placeholder(("batch", 6), name="x")
    activation = gc.tanh(x)
    across_rows = gc.softmax(activation, axis=0)
    outputs = [gc.sum(activation * 2.0, axis=1), gc.sum(gc.exp(across_rows), axis=1)]
    data = [np.random.default_rng(1).standard_normal((37, 6)).astype(np.float32)]
    kernels = assert_matches_reference(outputs, data, [x])
    kinds = ["rows" if isinstance(k, RowKernel) else k.node.op.name for k in kernels]
    assert kinds == ["rows", "softmax", "rows"]


def test_a_kernel_the_group_needs_runs_before_it_even_if_scheduled_after_its_first_member():
    """q = c @ d (no batch dim, not a row op) is independent of softmax(x) but a later row op reads it:
    the group runs after q."""
    x = gc.placeholder(("batch", 4), name="x")
    c = gc.placeholder((1, 4), name="c")
    d = gc.variable(np.eye(4, dtype=np.float32)[::-1], name="d")
    probabilities = gc.softmax(x)
    q = c @ d
    outputs = [probabilities * q]
    data = [np.random.default_rng(2).standard_normal((9, 4)).astype(np.float32), np.arange(4, dtype=np.float32)[None]]
    kernels = assert_matches_reference(outputs, data, [x, c])
    kinds = ["rows" if isinstance(k, RowKernel) else k.node.op.name for k in kernels]
    assert kinds == ["matmul", "rows"]


def test_an_update_of_a_variable_a_later_kernel_reads_stays_out_of_the_group():
    """b's update follows its gradient's sum in the group unless a kernel outside the group, which must
    run after the group, still reads the old b: then the update stays a kernel of its own, after it."""
    x = gc.placeholder(("batch", 3), name="x")
    b = gc.variable(np.array([0.5, -1.0, 2.0], np.float32), name="b")
    z = gc.tanh(x + b)
    late_reader = gc.transpose(z) @ z + b  # a sum over the rows, not a row op, and it reads b
    gradient = gc.sum(z, axis=0)
    results = {}
    for backend in ("reference", "llvm"):
        b.value = np.array([0.5, -1.0, 2.0], np.float32)
        f = gc.function([x], [late_reader], [(b, b - 0.1 * gradient)], backend=backend)
        (results[backend],) = f(np.arange(12, dtype=np.float32).reshape(4, 3) / 10)
        results[backend + " b"] = b.value.copy()
    np.testing.assert_allclose(results["llvm"], results["reference"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(results["llvm b"], results["reference b"], rtol=1e-6)
    (group,) = row_kernels(f)
    assert all(m.out.kind != "variable" for _, m in group.members)
    assert f.program.schedule.kernels[-1].outputs[0].node is b


@pytest.mark.parametrize("target", [host_target, avx2_target])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("batch", [1, 7, CHUNK_ROWS, CHUNK_ROWS + 1, 2 * CHUNK_ROWS + 3])
def test_the_seed_steps_row_kernel_with_its_two_products_matches_the_reference(batch, threads, target):
    """With 24 hidden units W1 is small enough to pack per chunk too: the row kernel holds both layers'
    products, dZ = (dlogits W2^T) * relu' and the bias gradients; every thread packs the weights into its
    own scratch, and each chunk of rows is summed into partials of its own. The weight gradients are the other two kernels."""
    native = mnist_mlp(hidden=24, threads=threads, target=target())
    reference = mnist_mlp(hidden=24, backend="reference")
    (rows,) = row_kernels(native)
    assert len(native.program.schedule.kernels) == 3
    assert [m.node.op.name for role, m in rows.members if role == "row"].count("fused_matmul") == 3
    rng = np.random.default_rng(batch)
    for _ in range(2):
        images = rng.random((batch, 784), dtype=np.float32)
        labels = np.eye(CLASSES, dtype=np.float32)[rng.integers(0, CLASSES, batch)]
        for got, want in zip(native(images, labels), reference(images, labels)):
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
    for (variable, _), (twin, _) in zip(native.graph.updates, reference.graph.updates):
        np.testing.assert_allclose(variable.value, twin.value, rtol=2e-4, atol=1e-6, err_msg=variable.name)


@pytest.mark.parametrize("threads", [1, 2])
def test_an_output_reshaped_across_the_batch_is_written_chunk_by_chunk(threads):
    """The output buffer has the reshape's shape (10 * batch,); the member writing it sees (batch, 10) rows,
    and each chunk goes to its own rows."""
    x = gc.placeholder(("batch", CLASSES), name="x")
    outputs = [gc.reshape(gc.softmax(gc.tanh(x)), (-1,))]
    native = gc.function([x], outputs, threads=threads)
    assert len(row_kernels(native)) == 1
    data = np.random.default_rng(5).standard_normal((3 * CHUNK_ROWS + 5, CLASSES)).astype(np.float32)
    np.testing.assert_allclose(native(data)[0], gc.function([x], outputs, backend="reference")(data)[0],
                               rtol=1e-5, atol=1e-7)


ROW_OPS = [
    lambda v, w: gc.tanh(v) * 2.0 + w,
    lambda v, w: gc.softmax(v),
    lambda v, w: gc.log_softmax(v) - w,
    lambda v, w: v - gc.sum(v, axis=1, keepdims=True),
    lambda v, w: gc.maximum(v, w) @ gc.constant(np.linspace(-1, 1, 16).reshape(4, 4)),
    lambda v, w: gc.softmax(v, axis=0),  # not a row op: splits groups
    lambda v, w: v * gc.mean(w),  # a sum over the batch read back by rows: splits groups
]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(choices=st.lists(st.integers(0, len(ROW_OPS) - 1), min_size=2, max_size=6),
       batch=st.integers(1, 2 * CHUNK_ROWS + 3), threads=st.integers(1, 3))
def test_random_chains_of_row_ops_match_the_reference(choices, batch, threads):
    """Chains mixing row ops with ops that are not (over the batch), each value also summed over the
    batch and the last one an output: whatever groups form, the numbers are the reference's. In float64,
    so that the chains' cancellations stay far below the tolerance and a misplaced row does not."""
    x = gc.placeholder(("batch", 4), "float64", name="x")
    values, outputs = [x, gc.exp(-x)], []
    for choice in choices:
        values.append(ROW_OPS[choice](values[-1], values[-2]))
        outputs.append(gc.sum(values[-1], axis=0))
    outputs.append(values[-1])
    data = np.random.default_rng(batch).standard_normal((batch, 4))
    native = gc.function([x], outputs, threads=threads)
    expected = gc.function([x], outputs, backend="reference")(data)
    for got, want in zip(native(data), expected):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
