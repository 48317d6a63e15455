"""The native runtime under what real programs do to it: several Python threads, fork, signals, a helper
thread that never comes, any core count, constants that differ in their last bit (docs/reliability.md)."""
import ctypes
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.viz.examples import mnist_mlp
from runtime.native import ProgramError


def _layer(threads=2, width=64):
    """A small function with a GEMM, an elementwise epilogue and a row-wise reduction."""
    x = gc.placeholder(("batch", width), name="x")
    w = gc.variable(np.random.default_rng(0).normal(size=(width, 32)).astype(np.float32), name="w")
    return gc.function([x], gc.sum(gc.relu(gc.dot(x, w)) * 2.0, axis=1), threads=threads)


def _batches(width=64):
    rng = np.random.default_rng(1)
    return [rng.normal(size=(rows, width)).astype(np.float32) for rows in (1, 7, 129, 200, 64)]


def test_concurrent_calls_from_python_threads_are_exact():
    """4 threads x 500 calls of one function at different batch sizes (before: malloc corruption, segfault
    or wrong rows: one slot table, barrier and arena shared without a lock)."""
    f, batches = _layer(), _batches()
    expected = [f(batch) for batch in batches]
    wrong, errors = [], []

    def work(first):
        try:
            for i in range(500):
                k = (first + i) % len(batches)
                if not np.array_equal(f(batches[k]), expected[k]):
                    wrong.append((first, i))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)
    threads = [threading.Thread(target=work, args=(first,)) for first in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and not wrong


def test_keras_predict_from_several_threads():
    from graphc.keras import layers, models
    model = models.Sequential([layers.Dense(16, activation="relu", input_shape=(12,)), layers.Dense(3)])
    model.compile(loss="mse")
    data = np.random.default_rng(2).normal(size=(300, 12)).astype(np.float32)
    expected = model.predict(data, verbose=0)
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        [model.predict(data, batch_size=37, verbose=0) for _ in range(20)])) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    assert all(np.array_equal(prediction, expected) for run in results for prediction in run)


def _call_in_child(batch):
    return _CHILD_FUNCTION(batch)


def test_a_forked_child_runs_the_parents_function():
    """Before: the child's call spun for ever at the barrier (the helper threads are not forked)."""
    global _CHILD_FUNCTION
    _CHILD_FUNCTION = f = _layer()
    batch = _batches()[3]
    expected = f(batch)  # the parent's helper threads are running now
    with multiprocessing.get_context("fork").Pool(1) as pool:
        in_child = pool.apply_async(_call_in_child, (batch,)).get(timeout=60)
    np.testing.assert_array_equal(in_child, expected)
    np.testing.assert_array_equal(f(batch), expected)  # and the parent still works


def _exit_with_refusal(f, batch, words):
    """In a forked child: exit 0 if calling ``f`` raises ProgramError saying ``words``, else non-zero."""
    try:
        f(batch)
        code = 1
    except ProgramError as error:
        code = 0 if words in str(error) else 2
    os._exit(code)


def test_a_fork_during_a_call_leaves_the_child_a_clear_error():
    """A call in flight in another thread at the fork left half-written memory: the child refuses it."""
    f = _layer()
    batch = _batches()[0]
    f(batch)
    with f.program.executable._lock:  # as if another thread were inside a call
        pid = os.fork()
        if pid == 0:
            _exit_with_refusal(f, batch, "forked")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    f(batch)


def test_a_wait_that_cannot_complete_fails_instead_of_hanging():
    """A child forked behind Python's back (libc's fork: no at-fork hook runs) has none of the parent's
    helper threads: its call must raise, not spin at the barrier for ever (before: a hang)."""
    f, batch = _layer(), _batches()[3]
    f(batch)
    libc = ctypes.CDLL(None, use_errno=True)
    pid = libc.fork()
    if pid == 0:
        _exit_with_refusal(f, batch, "not in this process")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the child's call hung")
    assert os.waitstatus_to_exitcode(status) == 0
    np.testing.assert_array_equal(f(batch), _layer(threads=1)(batch))  # the parent is unaffected


def test_a_call_from_inside_a_call_on_the_same_thread_raises_instead_of_deadlocking():
    """A signal handler that calls the function it interrupted would wait for itself on the call lock."""
    f, batch = _layer(), _batches()[3]
    executable = f.program.executable
    bind, inner = executable.bind, []

    def bind_then_call_again(*arguments):
        try:
            f(batch)
        except ProgramError as error:
            inner.append(str(error))
        return bind(*arguments)
    executable.bind = bind_then_call_again
    outer = threading.Thread(target=f, args=(batch,), daemon=True)
    outer.start()
    outer.join(timeout=30)
    assert not outer.is_alive(), "deadlock"
    assert inner and "called again" in inner[0]


_STORM = """
import signal, sys, time
import numpy as np
from tests.native.test_reliability import _batches, _layer

class Interrupt(Exception):
    pass

f, batches = _layer(), _batches()
single = _layer(threads=1)  # the same function without helper threads: the expected results
for batch in batches:
    f(batch)  # the helper threads start (Python's own thread start is not safe from such exceptions)
storm, interrupted = [True], 0

def interrupt(signum, frame):
    if storm[0] and frame.f_code.co_filename != "<string>":  # inside the call, not in this loop
        raise Interrupt
signal.signal(signal.SIGALRM, interrupt)
signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)
deadline = time.monotonic() + 3
while time.monotonic() < deadline:
    try:
        for batch in batches:
            f(batch)
    except Interrupt:
        interrupted += 1
storm[0] = False
signal.setitimer(signal.ITIMER_REAL, 0, 0)
rng = np.random.default_rng(3)
fresh = [rng.normal(size=batch.shape).astype(np.float32) for _ in range(20) for batch in batches]
wrong = sum(not np.array_equal(f(batch), single(batch)) for batch in fresh)
print(interrupted, wrong)
"""


def test_a_signal_storm_never_desynchronises_the_threads():
    """An exception raised by a signal handler every 0.2 ms lands anywhere in a call; afterwards every call
    on new data is exact and the process exits cleanly (before: wrong rows, once one landed between
    announcing a step to the helper threads and running thread 0's part: the helpers ran a step ahead).
    In a child process, which may crash."""
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root))
    result = subprocess.run([sys.executable, "-c", _STORM], cwd=root, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    interrupted, wrong = map(int, result.stdout.split())
    assert interrupted > 100 and wrong == 0


def test_the_default_thread_count_follows_the_cpu_affinity(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert _layer(threads=None).program.threads == 1


def test_more_threads_than_cores_still_compute_exactly():
    oversubscribed, batches = _layer(threads=3 * os.cpu_count()), _batches()
    single = _layer(threads=1)
    for batch in batches:
        np.testing.assert_array_equal(oversubscribed(batch), single(batch))


def test_training_is_bit_identical_for_any_thread_count():
    """20 steps of the seed model at batch sizes that do and do not fill the threads' shares evenly: the
    same weights, bit for bit, on 1, 2 and 3 threads (before: the row kernel's batch sums added per-thread
    partials, so their grouping depended on the thread count)."""
    weights = {}
    for threads in (1, 2, 3):
        step = mnist_mlp(hidden=96, threads=threads)
        rng = np.random.default_rng(0)
        for i in range(20):
            rows = (128, 100, 37, 200)[i % 4]
            x = rng.random((rows, 784), dtype=np.float32)
            y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, rows)]
            step(x, y)
        weights[threads] = [variable.storage.copy() for variable, _ in step.graph.updates]
    for threads in (2, 3):
        for one, other in zip(weights[1], weights[threads]):
            assert one.tobytes() == other.tobytes()


@pytest.mark.parametrize("first, second", [(1.0000000000000002, 1.0000000000000004), (0.1, 0.10000000000000002)])
def test_constants_that_differ_in_the_last_bit_are_different_programs(tmp_path, monkeypatch, first, second):
    """Before: the cache key printed float64 constants with 15 digits, so the second program loaded the
    first one's object code and computed with its constant."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "objects"))
    x = gc.placeholder((3,), "float64", name="x")
    value = np.full(3, 0.09999999999999998)
    scaled = []
    for constant in (first, second):
        f = gc.function([x], [x * constant, (x - constant) * 1e17])
        assert not f.program.from_cache
        product, difference = f(value)
        np.testing.assert_array_equal(product, value * constant)
        scaled.append(difference[0])
    assert scaled[0] != scaled[1]


def test_keras_fit_is_bit_identical_for_any_core_count(monkeypatch):
    """The seed program's shape (Dense relu, Dense softmax, rmsprop, categorical cross-entropy) under fit,
    with set_random_seed, on 1, 2 and 3 cores (the default thread count follows the CPU affinity)."""
    from graphc.keras import layers, models, utils
    rng = np.random.default_rng(5)
    x = rng.random((300, 40), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 300)]
    weights = []
    for cores in (1, 2, 3):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, cores=cores: set(range(cores)))
        utils.set_random_seed(7)
        model = models.Sequential([layers.Dense(48, activation="relu", input_shape=(40,)),
                                   layers.Dense(10, activation="softmax")])
        model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
        model.fit(x, y, epochs=2, batch_size=128, verbose=0)
        assert model.graphc_function().program.threads == cores
        weights.append([w.tobytes() for w in model.get_weights()])
    assert weights[0] == weights[1] == weights[2]
