"""emit_objects compiles modules apart, in forked processes when asked: the same object bytes either way."""
import ctypes
import os
import threading

import pytest

from graphc.lower import jit
from graphc.lower.target import host_target


def add_constant_ir(name: str, constant: float, repeats: int = 1) -> str:
    """``double name(double x)``: x + constant, added ``repeats`` times (a longer module for a larger one)."""
    lines = [f"define double @{name}(double %x0) {{"]
    lines += [f"  %x{i + 1} = fadd double %x{i}, {constant}" for i in range(repeats)]
    return "\n".join(lines + [f"  ret double %x{repeats}", "}", ""])


MODULES = [add_constant_ir(f"add_{i}", float(i), repeats=i + 1) for i in range(5)]


def test_forked_processes_make_the_same_objects_and_they_link():
    target = host_target()
    serial = jit.emit_objects(MODULES, target)
    assert jit.emit_objects(MODULES, target, processes=3) == serial
    loaded = jit.load_objects(serial, target)
    for i in range(5):
        add = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double)(loaded.address(f"add_{i}"))
        assert add(0.5) == 0.5 + i * (i + 1)


def test_a_module_that_fails_in_a_child_raises_in_the_caller():
    broken = "define double @broken(double %x) { ret double %y }"  # shorter than the valid one: the child's share
    assert jit._shares([MODULES[4], broken], 2) == [[0], [1]]
    with pytest.raises(RuntimeError, match="use of undefined value"):
        jit.emit_objects([MODULES[4], broken], host_target(), processes=2)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # the child was reaped


def test_no_fork_while_another_python_thread_runs(monkeypatch):
    def no_fork():
        raise AssertionError("forked while another thread ran")
    monkeypatch.setattr(os, "fork", no_fork)
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        assert jit.emit_objects(MODULES, host_target(), processes=2) == jit.emit_objects(MODULES, host_target())
    finally:
        release.set()
        other.join()


@pytest.mark.parametrize("lengths, processes, groups", [
    ([5, 1, 4, 2], 2, [[0, 1], [2, 3]]),  # longest first, each into the shortest group so far: 6 and 6
    ([3, 3], 4, [[0], [1]]),  # no empty group
    ([7], 1, [[0]]),
    ([], 2, [[]]),
])
def test_shares_balance_the_text_length(lengths, processes, groups):
    assert jit._shares(["x" * n for n in lengths], processes) == groups


def test_a_module_that_fails_in_the_caller_leaves_no_child():
    broken = "define double @broken(double %x) { ret double %y }" + " " * 1000  # the longest: the caller's share
    with pytest.raises(RuntimeError, match="use of undefined value"):
        jit.emit_objects([broken, MODULES[0]], host_target(), processes=2)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)
