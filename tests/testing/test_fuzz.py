"""The differential fuzzer (graphc.testing.fuzz): a fixed set of seeds agrees on every backend and pipeline,
a planted wrong reference is caught and shrunk to a one-step runnable reproducer, and the command runs,
counts and exits 1 on a mismatch."""
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import sympy

from graphc.ops import expr
from graphc.testing import fuzz

SEEDS = range(56)


@pytest.mark.parametrize("seed", SEEDS)
def test_fixed_seed_program_agrees_everywhere(seed):
    program = fuzz.generate(seed)
    failure = fuzz.check(program)
    assert failure is None, fuzz.reproducer(*fuzz.shrink(program, failure))


def test_fixed_seeds_cover_every_op_and_gradient_programs():
    programs = [fuzz.generate(seed) for seed in SEEDS]
    drawn = Counter(step.op for program in programs for step in program.steps)
    assert set(fuzz.MAKERS) - set(drawn) == set()
    assert sum(program.grad for program in programs) >= 8
    dims = [d for program in programs for i in program.inputs for d in i.dims]
    assert None in dims and set(fuzz.DIM_NAMES) & set(dims)
    assert {i.value.dtype.name for program in programs for i in program.inputs} >= {"float32", "float64", "int32",
                                                                                     "int64"}


@pytest.fixture
def wrong_tanh(monkeypatch):
    """The reference's tanh 0.1% too large; native code keeps the right one."""
    monkeypatch.setitem(expr._NUMPY, sympy.tanh, lambda x: np.tanh(x) * (1 + 1e-3))
    expr.numpy_function.cache_clear()  # bodies evaluated before hold the right tanh
    yield
    expr.numpy_function.cache_clear()


def _program_with_tanh_output():
    """The first fixed-seed program of 3 steps or more with a tanh among its outputs (nothing can mask it)."""
    return next(p for p in map(fuzz.generate, range(1000))
                if len(p.steps) >= 3 and any(s.op == "tanh" and s.name in p.leaves() for s in p.steps))


def test_a_planted_wrong_reference_is_caught_and_shrunk_to_a_runnable_reproducer(wrong_tanh, capsys):
    program = _program_with_tanh_output()
    failure = fuzz.check(program)
    assert failure is not None and failure.kind == "mismatch" and failure.run.startswith("llvm"), failure
    small, small_failure = fuzz.shrink(program, failure)
    assert (small_failure.run, small_failure.kind) == (failure.run, failure.kind)
    assert [s.op for s in small.steps] == ["tanh"]
    assert sum(i.value.size for i in small.inputs) < sum(i.value.size for i in program.inputs)
    assert all(d == 1 for i in small.inputs for d in i.value.shape)
    source = fuzz.reproducer(small, small_failure)
    assert source.startswith("# llvm optimize=")
    exec(compile(source, "<reproducer>", "exec"), {})  # runs as printed: builds, feeds, prints every run
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1 + len(fuzz.RUNS) and printed.startswith("reference 0 ")


def test_command_line_exits_1_and_prints_the_reproducer_on_a_mismatch(wrong_tanh, capsys):
    program = _program_with_tanh_output()
    assert fuzz.main(["--seed", str(program.seed), "--programs", "1"]) == 1
    printed = capsys.readouterr().out
    assert f"program {program.seed} fails (llvm optimize=" in printed
    assert "v0 = gc.tanh(" in printed or "= gc.tanh(" in printed
    assert "programs 1, gradient checks" in printed and "mismatches 1" in printed


def test_command_line_runs_programs_and_prints_counts():
    done = subprocess.run([sys.executable, "-m", "graphc.testing.fuzz", "--minutes", "5", "--seed", "7",
                           "--programs", "3"], capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("fuzzing graphc for 5 minutes or 3 programs from seed 7")
    assert "programs 3, gradient checks " in done.stdout and "mismatches 0" in done.stdout
    assert "ops covered " in done.stdout
