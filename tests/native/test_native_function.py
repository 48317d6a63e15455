"""The llvm backend end to end: whole functions compiled natively agree with the reference executor."""
import numpy as np
import pytest

import graphc as gc
from graphc.lower.target import avx2_target, host_target
from runtime import cache

TARGETS = [pytest.param(None, id="host"), pytest.param("avx2", id="avx2")]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "objects"))


def _target(name):
    return avx2_target() if name == "avx2" else host_target()


def _mlp(dtype, hidden=33, seed=0, optimizer="rmsprop"):
    """The seed MLP shrunk: dense relu, dense softmax, categorical cross-entropy, an optimizer's updates."""
    rng = np.random.default_rng(seed)
    x = gc.placeholder(("batch", 20), dtype, name="x")
    y = gc.placeholder(("batch", 10), dtype, name="y")
    w1 = gc.variable((rng.normal(size=(20, hidden)) * 0.3).astype(dtype), name="w1")
    b1 = gc.variable(np.zeros(hidden, dtype), name="b1")
    w2 = gc.variable((rng.normal(size=(hidden, 10)) * 0.3).astype(dtype), name="w2")
    b2 = gc.variable(np.zeros(10, dtype), name="b2")
    probabilities = gc.softmax(gc.dot(gc.relu(gc.dot(x, w1) + b1), w2) + b2)
    loss = gc.mean(gc.categorical_crossentropy(y, probabilities))
    accuracy = gc.mean(gc.cast(gc.equal(gc.argmax(probabilities), gc.argmax(y)), dtype))
    params = [w1, b1, w2, b2]
    updates = []
    for param, grad in zip(params, gc.grad(loss, params)):
        if optimizer == "sgd":
            updates.append((param, param - 0.1 * grad))
            continue
        velocity = gc.variable(np.zeros(param.shape, dtype))
        new_velocity = 0.9 * velocity + 0.1 * gc.square(grad)
        updates += [(velocity, new_velocity), (param, param - 0.01 * grad / gc.sqrt(new_velocity + 1e-7))]
    return [x, y], [loss, accuracy], updates


def _batch(rng, n, dtype):
    return rng.random((n, 20)).astype(dtype), np.eye(10, dtype=dtype)[rng.integers(0, 10, n)]


def _variables(updates):
    return [var for var, _ in updates]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("target", TARGETS)
def test_training_steps_match_the_reference(dtype, threads, target):
    inputs, outputs, updates = _mlp(dtype)
    variables = _variables(updates)
    start = [v.value for v in variables]
    reference = gc.function(inputs, outputs, updates, backend="reference")
    rng = np.random.default_rng(1)
    batches = [_batch(rng, n, dtype) for n in (7, 129, 1, 64)]
    expected_outputs, expected_values = [], []
    for batch in batches:
        expected_outputs.append(reference(*batch))
    expected_values = [v.value for v in variables]
    for v, value in zip(variables, start):
        v.value = value
    native = gc.function(inputs, outputs, updates, backend="llvm", threads=threads, target=_target(target))
    tolerance = 2e-4 if dtype == "float32" else 1e-10
    for batch, expected in zip(batches, expected_outputs):
        np.testing.assert_allclose(native(*batch), expected, rtol=tolerance, atol=tolerance)
    for variable, expected in zip(variables, expected_values):
        np.testing.assert_allclose(variable.value, expected, rtol=tolerance * 10, atol=tolerance)


def test_unoptimized_and_optimized_programs_agree():
    inputs, outputs, updates = _mlp("float64", optimizer="sgd")
    variables = _variables(updates)
    start = [v.value for v in variables]
    batch = _batch(np.random.default_rng(2), 33, "float64")
    results = []
    for level in (0, 2):
        for v, value in zip(variables, start):
            v.value = value
        function = gc.function(inputs, outputs, updates, backend="llvm", optimize=level)
        results.append((function(*batch), [v.value for v in variables]))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-10)
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_updates_are_simultaneous_and_outputs_see_old_values():
    a = gc.variable(np.array([1.0, 2.0]), name="a")
    b = gc.variable(np.array([3.0, 4.0]), name="b")
    swap = gc.function([], [a, b], updates=[(a, b), (b, a)], backend="llvm")
    old_a, old_b = swap()
    np.testing.assert_array_equal(old_a, [1.0, 2.0])
    np.testing.assert_array_equal(old_b, [3.0, 4.0])
    np.testing.assert_array_equal(a.value, [3.0, 4.0])
    np.testing.assert_array_equal(b.value, [1.0, 2.0])


def test_bad_inputs_raise_before_native_code_runs():
    x = gc.placeholder(("batch", 3), "float32", name="x")
    y = gc.placeholder(("batch", 3), "int32", name="labels")
    f = gc.function([x, y], gc.sum(x * gc.cast(y, "float32")), backend="llvm")
    good = np.ones((4, 3), np.float32), np.ones((4, 3), np.int32)
    assert f(*good) == pytest.approx(12.0)
    with pytest.raises(ValueError, match="x"):
        f(np.ones((4, 2), np.float32), good[1])
    with pytest.raises(ValueError, match="batch"):
        f(np.ones((4, 3), np.float32), np.ones((5, 3), np.int32))
    with pytest.raises(ValueError, match="labels"):
        f(good[0], np.ones((4, 3), np.float32))  # float data into an int placeholder
    with pytest.raises(ValueError, match="expected 2 input"):
        f(good[0])
    strided = np.ones((4, 6), np.float32)[:, ::2]  # not contiguous: copied, same answer
    assert f(strided, good[1]) == pytest.approx(12.0)


def test_nan_and_inf_propagate_like_numpy():
    x = gc.placeholder((None,), "float32", name="x")
    f = gc.function([x], [gc.relu(x), gc.exp(x), gc.sum(x)], backend="llvm")
    data = np.array([np.nan, np.inf, -np.inf, 1.0], np.float32)
    relu, exp, total = f(data)
    assert np.isnan(relu[0]) and relu[1] == np.inf and relu[2] == 0 and relu[3] == 1
    assert np.isnan(exp[0]) and exp[1] == np.inf and exp[2] == 0
    assert np.isnan(total)


def test_second_compilation_comes_from_the_cache_and_corrupt_entries_are_rebuilt(tmp_path):
    def compile_once():
        x = gc.placeholder((None, 5), name="x")
        return gc.function([x], gc.tanh(x) * 3.0, backend="llvm")
    first = compile_once()
    second = compile_once()
    assert not first.program.from_cache and second.program.from_cache
    for entry in cache.cache_dir().glob("*.o"):
        entry.write_bytes(entry.read_bytes()[:-7] + b"garbage")
    third = compile_once()
    assert not third.program.from_cache
    data = np.linspace(-2, 2, 15, dtype=np.float32).reshape(3, 5)
    np.testing.assert_allclose(third(data), np.tanh(data) * 3, rtol=1e-6)


def test_llvm_ir_and_assembly_per_kernel():
    x = gc.placeholder((None, 8), name="x")
    f = gc.function([x], gc.exp(x) + 1.0, backend="llvm")
    ir_text, assembly = f.llvm_ir(), f.asm()
    kernel = next(name for name in ir_text if name.startswith("k0_"))
    assert "define" in ir_text[kernel] and kernel in assembly
    assert "program" in ir_text


@pytest.mark.parametrize("shapes", [((3, 7, 5), (5, 4)), ((2, 1, 7, 5), (3, 5, 9)), (("n", 4, 3), (3, 2)),
                                    ((1, 129), (129, 17))])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batched_matmul_and_its_gradient(shapes, dtype):
    """Batched products loop over the batch in native code; broadcast batch axes read one matrix again."""
    rng = np.random.default_rng(3)
    a, b = (gc.placeholder(shape, dtype) for shape in shapes)
    product = gc.matmul(a, b)
    outputs = [product, *gc.grad(gc.sum(product * product), [a, b])]
    arrays = [rng.random(tuple(6 if d == "n" else d for d in shape)).astype(dtype) for shape in shapes]
    expected = gc.function([a, b], outputs, backend="reference")(*arrays)
    tolerance = 1e-4 if dtype == "float32" else 1e-11
    for threads in (1, 2):
        actual = gc.function([a, b], outputs, backend="llvm", threads=threads)(*arrays)
        for got, want in zip(actual, expected):
            np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance)


def test_helper_threads_stop_when_the_function_is_dropped():
    """Threads 1..n-1 live in native code; dropping the function must end them (and free nothing under them)."""
    import gc as garbage_collector
    import threading

    def helpers():
        return [t for t in threading.enumerate() if t.name.startswith("graphc-")]
    before = len(helpers())
    x = gc.placeholder((None, 300), name="x")
    for _ in range(3):
        f = gc.function([x], gc.exp(x) * 2.0, threads=2)
        data = np.ones((200, 300), np.float32)
        np.testing.assert_allclose(f(data), np.exp(data) * 2, rtol=1e-6)
        assert len(helpers()) == before + 1
        del f
        garbage_collector.collect()
        assert len(helpers()) == before


def test_idle_helper_threads_sleep_and_wake_for_the_next_step():
    """Between calls a helper spins ~0.3 ms, then sleeps in the kernel until the next step wakes it: an
    idle program burns no CPU, and the step after a sleep computes the right thing on every thread."""
    import time

    x = gc.placeholder((None, 300), name="x")
    f = gc.function([x], gc.exp(x) * 2.0, threads=2)
    data = np.ones((400, 300), np.float32)  # enough elements that both threads take a share
    for pause in (0.0, 0.05, 0.3):
        np.testing.assert_allclose(f(data * pause), np.exp(data * pause) * 2, rtol=1e-6)
        cpu, wall = time.process_time(), time.perf_counter()
        time.sleep(pause)
        idle_cpu, idle_wall = time.process_time() - cpu, time.perf_counter() - wall
        assert idle_cpu < 0.1 * idle_wall + 0.005, f"{idle_cpu:.3f} s of CPU in {idle_wall:.3f} s idle"
    np.testing.assert_allclose(f(data), np.exp(data) * 2, rtol=1e-6)
