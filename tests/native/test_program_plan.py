"""What the native planner makes of a graph: kernels, in-place updates, shared memory."""
import numpy as np
import pytest

import graphc as gc
from graphc.graph.shapes import dim_symbol
from graphc.lower.program import SCHEDULE_REWRITES, RowKernel, plan, workspace_bytes
from graphc.viz.examples import mnist_mlp

BATCH_128 = {dim_symbol("batch"): 128}


def test_the_seed_step_is_4_kernels_with_every_update_written_in_place():
    optimized = plan(mnist_mlp(backend="reference").optimized_graph)
    unoptimized = plan(mnist_mlp(backend="reference", optimize=0).optimized_graph, rewrites=())
    assert len(optimized.kernels) == 4 and len(unoptimized.kernels) == 76
    assert not [k.name for k in optimized.kernels if k.name.endswith("_copy")]
    written = {b.node.name for k in optimized.kernels for b in k.outputs if b.kind == "variable"}
    assert written == {"W1", "b1", "W2", "b2", "W1_rms", "b1_rms", "W2_rms", "b2_rms"}
    first = optimized.kernels[0]
    assert first.node.op.name == "fused_matmul" and str(first.node.attrs["epilogue"]) == "Max(0, %0 + %1)"
    assert workspace_bytes(optimized, BATCH_128) < workspace_bytes(unoptimized, BATCH_128) / 2


def test_gradients_are_consumed_by_the_rmsprop_updates_where_they_are_produced():
    """dW = x^T dZ is never written: each output tile updates the RMSprop slot, then the weight. Everything
    row-wise after the first layer is one row kernel: the second layer, the loss, the logits' gradient,
    dZ = (dlogits W2^T) * relu', the bias gradients as partial column sums of each chunk, and at its end
    the bias updates."""
    schedule = plan(mnist_mlp(backend="reference").optimized_graph)
    forward, rows, first_weights, second_weights = schedule.kernels
    assert forward.node.op.name == "fused_matmul" and isinstance(rows, RowKernel)
    assert [[u.out.node.name for u in k.updates] for k in (first_weights, second_weights)] == [
        ["W1_rms", "W1"], ["W2_rms", "W2"]]
    assert all(k.out is None and k.node.attrs["transpose_a"] for k in (first_weights, second_weights))
    roles = [(role, m.node.op.name) for role, m in rows.members]
    assert roles.count(("row", "fused_matmul")) == 2 and roles.count(("sink", "reduce_sum")) == 4
    assert [(role, m.out.node.name) for role, m in rows.members if m.out.kind == "variable"] == [
        ("post", "b1_rms"), ("post", "b1"), ("post", "b2_rms"), ("post", "b2")]
    slot_update, weight_update = first_weights.updates
    assert "product" in slot_update.sources and ("update", 0) in weight_update.sources


def test_an_update_whose_old_value_is_still_read_keeps_its_copy():
    w = gc.variable(np.array([1.0, 2.0]), name="w")
    x = gc.placeholder((2,), "float64", name="x")
    new_w = w + x
    f = gc.function([x], [new_w * w], updates=[(w, new_w)], backend="llvm")
    assert any(k.name.endswith("_copy") for k in f.program.schedule.kernels)
    (product,) = f(np.array([10.0, 20.0]))
    np.testing.assert_array_equal(product, [11.0, 44.0])  # (w + x) * old w
    np.testing.assert_array_equal(w.value, [11.0, 22.0])


def test_temporaries_with_disjoint_lifetimes_share_a_slot():
    x = gc.placeholder(("batch", 64), name="x")
    chain = x
    for _ in range(6):
        chain = gc.softmax(chain)  # softmax does not fuse: six kernels, six (batch, 64) values
    without_row_fusion = [name for name in SCHEDULE_REWRITES if name != "fuse_row_wise"]
    schedule = plan(gc.Graph([x], [gc.sum(chain)]), rewrites=without_row_fusion)
    slots = {k.out.slot for k in schedule.kernels if k.out.kind == "temp"}
    assert len(slots) < 6
    f = gc.function([x], gc.sum(chain), backend="llvm", optimize=["fuse_row_wise"])
    data = np.random.default_rng(0).random((5, 64), dtype=np.float32)
    np.testing.assert_allclose(f(data), gc.function([x], gc.sum(chain), backend="reference")(data), rtol=1e-5)


def test_the_fingerprint_ignores_names_but_not_what_the_code_depends_on():
    def schedule(features, scale, dim=None):
        x = gc.placeholder((dim, features), name="x")
        return plan(gc.Graph([x], [gc.tanh(x) * scale]))
    same = schedule(5, 3.0).fingerprint()
    assert schedule(5, 3.0).fingerprint() == same  # fresh symbolic dim ?n, fresh node names
    assert schedule(5, 3.0, dim="batch").fingerprint() == same  # dims count by position
    assert schedule(6, 3.0).fingerprint() != same
    assert schedule(5, 2.0).fingerprint() != same


def test_optimize_switches_the_schedule_rewrites_too():
    x = gc.placeholder(("batch", 7), "float64", name="x")
    w = gc.variable(np.ones((7, 3)), name="w")
    loss = gc.sum(gc.square(x @ w))
    velocity = gc.variable(np.zeros((7, 3)), name="velocity")
    new_velocity = 0.9 * velocity + gc.grad(loss, w)
    updates = [(velocity, new_velocity), (w, w - 0.1 * new_velocity)]
    data = np.random.default_rng(0).random((5, 7))
    results = []
    # (optimize, copy kernels assigning updates, GEMMs applying updates in their epilogue); at level 1 the
    # velocity's update (0.9 * v computed first) is not written in place, at level 2 the GEMM's epilogue
    # computes it (a graph fusion) and then assigns it and updates w.
    for optimize, copies, fused in [(0, 2, 0), (1, 1, 0), (["fuse_updates_into_producers"], 1, 0), (2, 0, 1)]:
        w.value, velocity.value = np.ones((7, 3)), np.zeros((7, 3))
        f = gc.function([x], loss, updates, optimize=optimize)
        kernels = f.program.schedule.kernels
        assert sum(k.name.endswith("_copy") for k in kernels) == copies
        assert sum(bool(k.updates) for k in kernels) == fused
        results.append((f(data), w.value, velocity.value))
    for result in results[1:]:
        for got, want in zip(result, results[0]):
            np.testing.assert_allclose(got, want, rtol=1e-12)
    with pytest.raises(ValueError, match="schedule passes update_in_place"):
        gc.function([x], loss, updates, optimize=["no_such_pass"])


@pytest.mark.parametrize("axis, shape", [(0, (300, 129)), (1, (129, 300)), (0, (3, 17))])
@pytest.mark.parametrize("threads", [1, 2])
def test_updates_run_as_a_sum_finishes_its_elements(axis, shape, threads):
    """v -= 0.1 * sum(x, axis) with the velocity-style slot update before it: both run in the sum's kernel,
    over a kept inner axis (column sums, the bias gradient) and a reduced one (row sums)."""
    length = shape[1 - axis]
    x = gc.placeholder(("n", shape[1]) if axis == 0 else (shape[0], "n"), "float32", name="x")
    v = gc.variable(np.linspace(-1, 1, length, dtype=np.float32), name="v")
    slot = gc.variable(np.full(length, 0.5, np.float32), name="slot")
    total = gc.sum(x, axis=axis)
    new_slot = 0.9 * slot + 0.1 * gc.square(total)
    updates = [(slot, new_slot), (v, v - 0.1 * total / gc.sqrt(new_slot + 1e-7))]
    data = np.random.default_rng(4).random(shape, dtype=np.float32)
    results = []
    for backend in ("reference", "llvm"):
        v.value, slot.value = np.linspace(-1, 1, length, dtype=np.float32), np.full(length, 0.5, np.float32)
        options = {"threads": threads} if backend == "llvm" else {}
        f = gc.function([x], total, updates, backend=backend, **options)
        if backend == "llvm":
            assert [[u.out.node.name for u in k.updates] for k in f.program.schedule.kernels if k.updates] == [
                ["slot", "v"]]
        results.append((f(data), v.value, slot.value))
    for got, want in zip(results[1], results[0]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_a_temporary_read_only_by_a_gemms_epilogue_update_lives_until_that_gemm():
    """s and t are column sums that only the weight update in dW's epilogue reads: t must not take s's
    slot before the GEMM has read both."""
    x, g = gc.placeholder(("batch", 4), name="x"), gc.placeholder(("batch", 3), name="g")
    p, q = gc.placeholder((2, 3), name="p"), gc.placeholder((2, 3), name="q")
    w = gc.variable(np.ones((4, 3), np.float32), name="w")
    v = gc.variable(np.ones((4, 3), np.float32), name="v")
    gradient = gc.transpose(x) @ g
    new_v = 0.9 * v + gc.sum(p, axis=0) * gc.sum(q, axis=0) * gradient * gradient
    updates = [(v, new_v), (w, w - 0.1 * gradient / gc.sqrt(new_v + 1e-7))]
    rng = np.random.default_rng(0)
    data = [rng.standard_normal((5, 4)).astype(np.float32), rng.standard_normal((5, 3)).astype(np.float32),
            np.ones((2, 3), np.float32), np.full((2, 3), 100.0, np.float32)]
    results = {}
    for backend in ("reference", "llvm"):
        w.value, v.value = np.ones((4, 3), np.float32), np.ones((4, 3), np.float32)
        f = gc.function([x, g, p, q], [], updates, backend=backend)
        f(*data)
        results[backend] = (w.value.copy(), v.value.copy())
    (gemm,) = [k for k in f.program.schedule.kernels if k.updates]
    loaded = [b for u in gemm.updates for b in u.loads if b.kind == "temp"]
    assert len({b.slot for b in loaded}) == 2
    for got, want in zip(results["llvm"], results["reference"]):
        np.testing.assert_allclose(got, want, rtol=1e-5)
