"""Function.run_steps: a compiled step over many batches in one native call, the same bits as a call per batch."""
import os
import signal
import threading

import numpy as np
import pytest

import graphc as gc
from graphc.lower.target import avx2_target
from graphc.viz.examples import glorot_uniform, rmsprop_updates

ROWS, FEATURES, HIDDEN, CLASSES = 300, 7, 33, 5


def mlp_step(threads=1, backend="llvm", **options):
    """The seed model's kind of step, small: Dense(relu) -> Dense(softmax), cross-entropy, RMSprop, accuracy."""
    rng = np.random.default_rng(0)
    x = gc.placeholder(("batch", FEATURES), name="x")
    y = gc.placeholder(("batch", CLASSES), name="y")
    params = [gc.variable(glorot_uniform(rng, FEATURES, HIDDEN), name="W1"), gc.variable(np.zeros(HIDDEN, "float32")),
              gc.variable(glorot_uniform(rng, HIDDEN, CLASSES), name="W2"), gc.variable(np.zeros(CLASSES, "float32"))]
    w1, b1, w2, b2 = params
    probabilities = gc.softmax(gc.relu(x @ w1 + b1) @ w2 + b2)
    loss = gc.mean(gc.categorical_crossentropy(y, probabilities))
    accuracy = gc.mean(gc.cast(gc.equal(gc.argmax(probabilities, -1), gc.argmax(y, -1)), "float32"))
    options = {"threads": threads, **options} if backend == "llvm" else {}
    return gc.function([x, y], [loss, accuracy], updates=rmsprop_updates(params, gc.grad(loss, params)),
                       backend=backend, **options)


def data(rows=ROWS, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, FEATURES)).astype(np.float32)
    return x, np.eye(CLASSES, dtype=np.float32)[rng.integers(0, CLASSES, rows)]


def variables(function) -> list:
    return [variable.storage.copy() for variable, _ in function.optimized_graph.updates]


def assert_same_state(one, other):
    for a, b in zip(variables(one), variables(other)):
        np.testing.assert_array_equal(a, b)


def batches_of(order, size) -> list:
    return [order[start:start + size] for start in range(0, len(order), size)]


@pytest.mark.parametrize("threads", [1, 2])
def test_run_steps_gives_the_bits_of_a_call_per_batch_shuffled_with_a_partial_last_batch(threads):
    x, y = data()
    batches = batches_of(np.random.default_rng(2).permutation(ROWS), 64)  # 4 of 64 rows, then 44
    called, stepped = mlp_step(threads), mlp_step(threads)
    expected = np.array([called(x[rows], y[rows]) for rows in batches])
    loss, accuracy = stepped.run_steps(batches, x, y)
    np.testing.assert_array_equal(loss, expected[:, 0])
    np.testing.assert_array_equal(accuracy, expected[:, 1])
    assert loss.shape == (5,) and loss.dtype == np.float32
    assert_same_state(called, stepped)
    # The updates went on from where they were: a second run continues the same as more calls.
    again = batches_of(np.random.default_rng(3).permutation(ROWS), 128)
    expected = np.array([called(x[rows], y[rows]) for rows in again])
    np.testing.assert_array_equal(stepped.run_steps(again, x, y)[0], expected[:, 0])
    assert_same_state(called, stepped)


def test_progress_sizes_each_native_call_and_can_end_the_run_early():
    x, y = data()
    batches = batches_of(np.random.default_rng(6).permutation(ROWS), 64)  # 64, 64, 64, 64, 44 rows
    called, stepped = mlp_step(), mlp_step()
    expected = [called(x[rows], y[rows])[0] for rows in batches[:4]]
    seen = []

    def progress(done, outputs):
        seen.append((done, outputs[0].copy()))
        return {0: 3, 3: 2}.get(done, 0)  # 3 steps, then 2 (1: the batches change size after it), then stop
    loss, _ = stepped.run_steps(batches, x, y, progress=progress)
    np.testing.assert_array_equal(loss, expected)
    assert [done for done, _ in seen] == [0, 3, 4]
    for done, so_far in seen:
        np.testing.assert_array_equal(so_far, expected[:done])
    assert_same_state(called, stepped)  # step 4 never ran


def test_a_program_for_an_avx2_only_cpu_runs_its_steps_the_same():
    x, y = data()
    batches = batches_of(np.random.default_rng(7).permutation(ROWS), 100)
    called, stepped = (mlp_step(2, target=avx2_target()) for _ in range(2))
    expected = [called(x[rows], y[rows])[0] for rows in batches]
    np.testing.assert_array_equal(stepped.run_steps(batches, x, y)[0], expected)
    assert_same_state(called, stepped)


def test_a_2d_index_array_repeated_and_negative_indices_as_numpy_reads_them():
    x, y = data()
    indices = np.array([[0, -1, 5, 5], [299, -300, 7, 0], [3, 3, 3, 3]])
    called, stepped = mlp_step(), mlp_step()
    expected = [called(x[rows], y[rows])[0] for rows in indices]
    np.testing.assert_array_equal(stepped.run_steps(indices, x, y)[0], expected)
    assert_same_state(called, stepped)


def scaled_regression():
    """(x, scale, target) -> {loss, w before the step}, a gradient step on w: ``scale`` is one number for every step."""
    x = gc.placeholder(("batch", 3), name="x")
    target = gc.placeholder(("batch",), name="target")
    scale = gc.placeholder((), name="scale")
    w = gc.variable(np.array([0.5, -1.0, 2.0], np.float32), name="w")
    loss = gc.mean(gc.square(gc.sum(x * w, axis=1) * scale - target))
    return gc.function([x, scale, target], {"loss": loss, "w": w}, updates=[(w, w - 0.1 * gc.grad(loss, [w])[0])])


def test_an_input_passed_whole_to_every_step_and_dict_outputs():
    rng = np.random.default_rng(4)
    called, stepped = scaled_regression(), scaled_regression()
    xs, targets = rng.standard_normal((50, 3)).astype(np.float32), rng.standard_normal(50).astype(np.float32)
    batches = batches_of(rng.permutation(50), 7)
    expected = [called(xs[rows], 0.5, targets[rows]) for rows in batches]
    result = stepped.run_steps(batches, xs, np.float32(0.5), targets, batched=["x", 2])
    np.testing.assert_array_equal(result["loss"], [e["loss"] for e in expected])
    np.testing.assert_array_equal(result["w"], np.stack([e["w"] for e in expected]))  # w before each step
    assert_same_state(called, stepped)


def test_the_reference_backend_runs_the_steps_as_calls():
    x, y = data(40)
    batches = batches_of(np.random.default_rng(5).permutation(40), 16)
    called, stepped = mlp_step(backend="reference"), mlp_step(backend="reference")
    expected = [called(x[rows], y[rows])[0] for rows in batches]
    np.testing.assert_array_equal(stepped.run_steps(batches, x, y)[0], expected)
    assert_same_state(called, stepped)


# ---- bad input: refused before any step runs -----------------------------------------------------
@pytest.fixture(scope="module")
def step():
    return mlp_step()


@pytest.mark.parametrize("indices, error, message", [
    ([[0, 1], [2, 300]], IndexError, r"index batch 1 holds 300, out of range for the 300 rows of x, y "
                                     r"\(valid: -300 to 299\); no step ran"),
    ([[0, 1], [-301, 2]], IndexError, "index batch 1 holds -301"),
    ([[0.0, 1.0]], ValueError, "row indices must be integers, got dtype float64"),
    ([np.zeros((2, 2), int)], ValueError, r"index batch 0 has shape \(2, 2\); each batch must be a 1-D array"),
    ([], ValueError, "index_batches is empty"),
    ([[0, 1], []], ValueError, r"has an empty batch \(1\)"),
])
def test_bad_indices_are_refused_before_any_step_runs(step, indices, error, message):
    x, y = data()
    before = variables(step)
    with pytest.raises(error, match=message):
        step.run_steps(indices, x, y)
    assert_same_state_as(step, before)


def assert_same_state_as(function, arrays):
    for a, b in zip(variables(function), arrays):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("arrays, options, message", [
    (lambda x, y: (x, y[:-1]), {}, "the batched inputs must have the same number of rows: x has 300, y has 299"),
    (lambda x, y: (x[:, :6], y), {}, r"input x \(batch, 7\): expected shape \(batch, 7\), got \(3, 6\)"),
    (lambda x, y: (x, y), {"batched": ["x", "labels"]}, r"batched names 'labels', which is not an input; the "
                                                        r"inputs are 0: x, 1: y"),
    (lambda x, y: (x, y), {"batched": [2]}, "batched names 2, which is not an input"),
    (lambda x, y: (x, y), {"batched": []}, "no input is batched"),
    (lambda x, y: (x, y[0]), {"batched": ["x"]}, r"input y \(batch, 5\)"),
    (lambda x, y: (x, np.float32(1)), {}, "input y is batched, so it needs a sample axis"),
    (lambda x, y: (x,), {}, r"expected 2 input\(s\) \(x, y\), got 1"),
    (lambda x, y: (x, y), {"stop_on_non_finite": 2}, r"stop_on_non_finite=2 names no output \(the outputs: 2\)"),
])
def test_bad_arrays_and_options_name_the_input_and_shapes(step, arrays, options, message):
    x, y = data()
    before = variables(step)
    with pytest.raises(ValueError, match=message) as caught:
        step.run_steps([[0, 1, 2]], *arrays(x, y), **options)
    assert_same_state_as(step, before)
    if "got \\(3, 6\\)" in message:  # the note says the shape checked is a batch of the whole array
        assert "each step reads 3 of the rows of its array of shape (300, 6)" in "\n".join(caught.value.__notes__)


def test_an_output_whose_shape_follows_the_batch_needs_batches_of_one_size():
    x = gc.placeholder(("batch", 2), name="x")
    double = gc.function([x], x * 2.0)
    xs = np.arange(10, dtype=np.float32).reshape(5, 2)
    np.testing.assert_array_equal(double.run_steps([[4, 0], [1, 2]], xs), [xs[[4, 0]] * 2, xs[[1, 2]] * 2])
    with pytest.raises(ValueError, match=r"output 0 \(.*\) has shape \(batch, 2\), which differs between batches "
                                         r"of different sizes \(2, 1 rows\)"):
        double.run_steps([[4, 0], [1]], xs)
    with pytest.raises(ValueError, match=r"stop_on_non_finite names output 0 of shape \(2, 2\) and dtype float32; "
                                         r"it must be a float32 scalar"):
        double.run_steps([[4, 0]], xs, stop_on_non_finite=0)


# ---- a step that fails or ends the run ------------------------------------------------------------
def embedding_step(backend):
    """A step whose graph gathers: a bad id inside the graph is found only when its step runs."""
    ids = gc.placeholder(("batch",), "int64", name="ids")
    table = gc.variable(np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3), name="table")
    loss = gc.mean(gc.square(gc.take(table, ids, axis=0)))
    return gc.function([ids], loss, updates=[(table, table - 0.5 * gc.grad(loss, [table])[0])], backend=backend)


@pytest.mark.parametrize("backend", ["llvm", "reference"])
def test_a_bad_index_inside_the_graph_stops_the_run_after_that_step_and_names_it(backend):
    ids = np.array([0, 1, 2, 3, 9, 1], dtype=np.int64)  # id 9 is outside the table of 4 rows
    batches = [[0, 1], [2, 3], [4, 5], [0, 3]]
    called, stepped = embedding_step(backend), embedding_step(backend)
    for rows in batches[:2]:
        called(ids[rows])
    with pytest.raises(IndexError):
        called(ids[batches[2]])  # a call per batch: the failing call raises (native: its updates applied)
    with pytest.raises(IndexError, match="out of bounds for axis 0 with size 4|index 9 is out of bounds") as caught:
        stepped.run_steps(batches, ids)
    assert caught.value.step == 2
    assert ("run_steps: step 2 (0-based) failed after steps 0 to 1 had completed; no later step ran: the variables "
            "are as a call per batch leaves them when step 2's call raises") in caught.value.__notes__
    assert_same_state(called, stepped)  # step 3 never ran
    # The program is fine afterwards, and the status words were cleared.
    np.testing.assert_array_equal(stepped.run_steps([[0, 1]], ids), [called(ids[[0, 1]])])


def test_the_run_ends_after_the_first_step_whose_watched_loss_is_not_finite():
    x, y = data(64)
    x[20] = np.inf  # in the second batch of 16
    batches = batches_of(np.arange(64), 16)
    called, stepped = mlp_step(), mlp_step()
    expected = [called(x[rows], y[rows])[0] for rows in batches[:2]]
    assert np.isfinite(expected[0]) and not np.isfinite(expected[1])
    loss, accuracy = stepped.run_steps(batches, x, y, stop_on_non_finite=0)
    np.testing.assert_array_equal(loss, expected)
    assert accuracy.shape == (2,)
    assert_same_state(called, stepped)  # steps 2 and 3 never ran


def test_calls_from_another_thread_wait_for_a_run_of_steps_and_both_are_exact():
    """run_steps holds the program (one slot table, one barrier) for its whole native call, as a call does."""
    x = gc.placeholder(("batch", FEATURES), name="x")
    w = gc.variable(np.random.default_rng(8).standard_normal((FEATURES, HIDDEN)).astype(np.float32), name="w")
    shared, alone = (gc.function([x], gc.sum(gc.relu(x @ w), axis=1), threads=2) for _ in range(2))
    xs, _ = data()
    batches = batches_of(np.random.default_rng(9).permutation(ROWS), 10)
    expected = np.stack([alone(xs[rows]) for rows in batches])
    wrong = []

    def calls():
        for k in range(200):
            rows = batches[k % len(batches)]
            wrong.append(not np.array_equal(shared(xs[rows]), expected[k % len(batches)]))
    caller = threading.Thread(target=calls)
    caller.start()
    runs = [shared.run_steps(batches, xs) for _ in range(20)]
    caller.join(timeout=60)
    assert not caller.is_alive() and len(wrong) == 200 and not any(wrong)
    for run in runs:
        np.testing.assert_array_equal(run, expected)


def test_a_forked_child_runs_the_parents_steps():
    """The child starts its own helper threads (the parent's were not forked) and the loop's code is there."""
    x, y = data()
    batches = batches_of(np.arange(ROWS), 64)
    parent, twin = mlp_step(2), mlp_step(2)
    parent.run_steps(batches, x, y), twin.run_steps(batches, x, y)  # the helper threads run in the parent
    pid = os.fork()
    if pid == 0:  # the child: exit 0 if its run gives the bits of a call per batch (killed if it hangs)
        signal.alarm(60)
        exact = np.array_equal(parent.run_steps(batches, x, y)[0], [twin(x[rows], y[rows])[0] for rows in batches])
        os._exit(0 if exact else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
