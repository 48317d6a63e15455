"""The profile of a natively compiled function: every kernel timed alone, in schedule order, the model untouched."""
import re
import sys

import numpy as np
import pytest

import graphc as gc
from graphc.cli import main
from graphc.viz import profile
from graphc.viz.dot import heat_color
from graphc.viz.examples import mnist_mlp

profile_module = sys.modules["graphc.viz.profile"]  # graphc.viz.profile is the function


@pytest.fixture(scope="module")
def step():
    return mnist_mlp(hidden=16)


def feeds(batch=8):
    rng = np.random.default_rng(1)
    return [rng.standard_normal((batch, 784)).astype(np.float32), np.eye(10, dtype=np.float32)[np.arange(batch) % 10]]


def variable_values(function):
    return {b.node.name: b.node.storage.copy() for b in function.program.schedule.buffers if b.kind == "variable"}


def test_native_profile_lists_every_kernel_in_schedule_order(step):
    result = profile(step, feeds(), repeats=2)
    kernels = step.program.schedule.kernels
    assert [r.name for r in result.rows] == [k.name for k in kernels]
    assert all(r.seconds > 0 for r in result.rows)
    assert sum(r.share for r in result.rows) == pytest.approx(1.0)
    assert result.total_seconds == pytest.approx(sum(r.seconds for r in result.rows))
    assert result.program_seconds > 0 and result.threads == step.program.threads


def test_native_profile_gives_gflops_for_matmul_kernels_only(step):
    result = profile(step, feeds(), repeats=1)
    kinds = {k.name: k.node.op.kind if k.node is not None else "rows" for k in step.program.schedule.kernels}
    assert any(kind == "matmul" for kind in kinds.values())
    for row in result.rows:
        assert (row.gflops is not None and row.gflops > 0) == (kinds[row.name] == "matmul"), row


def test_native_gflops_counts_two_flops_per_multiply_add():
    a = gc.placeholder(("m", 3), name="a")
    b = gc.variable(np.ones((3, 5), np.float32), name="b")
    result = profile(gc.function([a], a @ b, optimize=0), [np.ones((4, 3), np.float32)], repeats=1)
    (row,) = result.rows
    assert row.name == "k0_matmul" and row.gflops == pytest.approx(2 * 4 * 5 * 3 / row.seconds / 1e9)


def test_profiling_leaves_the_variables_and_the_next_step_unchanged():
    function, twin = mnist_mlp(hidden=16), mnist_mlp(hidden=16)  # same seed: the same weights
    before = variable_values(function)
    assert len(before) == 8 and any(v.any() for v in before.values())
    profile(function, feeds(), repeats=3)
    after = variable_values(function)
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value, err_msg=name)
    for got, expected in zip(function(*feeds()), twin(*feeds())):  # twin: never profiled
        np.testing.assert_array_equal(got, expected)


def test_kernels_called_one_by_one_compute_what_the_program_does():
    """What the profile times is the program's work: replaying every kernel (each `repeats` times, in-place
    ones given back what they overwrite) yields the outputs and the updated variables of one call."""
    function, twin = mnist_mlp(hidden=16), mnist_mlp(hidden=16)
    program = function.program
    arrays, dims = function.check_inputs(feeds())
    slots, dims_array, outputs = program.bind(arrays, dims)
    for kernel in program.schedule.kernels:
        profile_module._time_kernel(program, kernel, slots, dims_array, dims, repeats=3)
    expected_outputs = twin(*feeds())
    # The twin's row kernel sums each thread's rows apart, then adds the partials: other roundings than
    # one thread adding all rows.
    for got, expected in zip(outputs, expected_outputs):
        np.testing.assert_allclose(got, expected, rtol=1e-5)
    expected_variables = variable_values(twin)
    for name, value in variable_values(function).items():
        np.testing.assert_allclose(value, expected_variables[name], rtol=1e-5, err_msg=name)


def test_native_table_says_one_thread_and_ends_with_total_and_program(step):
    result = profile(step, feeds(), repeats=1)
    lines = result.table().splitlines()
    assert lines[0].startswith("# llvm backend, batch=8: ") and "1 thread" in lines[0]
    assert lines[1].split() == ["name", "op", "time", "(ms)", "share", "GFLOP/s"]
    assert [l.split()[0] for l in lines[2:-2]] == [r.name for r in result.rows]
    assert lines[-2].startswith("total") and lines[-1].startswith("program")
    assert f"{result.threads} threads" in lines[-1]


def test_heat_map_fills_each_kernel_cluster_by_its_share(step):
    result = profile(step, feeds(), repeats=1)
    text = result.to_dot()
    for row in result.rows:
        assert re.search(rf'label="{row.name}: [^\n]*fillcolor="{heat_color(row.share)}"', text), row.name


def test_reference_functions_are_still_profiled_node_by_node():
    function = mnist_mlp(hidden=4, backend="reference")
    result = profile(function, feeds(), repeats=1)
    computed = [n.name for n in function.optimized_graph.nodes if n.op.kind != "source"]
    assert [r.name for r in result.rows] == computed and result.program_seconds is None
    assert result.table().startswith("# reference backend")


def test_cli_profile_prints_the_schedule_kernels(capsys):
    assert main(["profile", "--example", "mnist-mlp", "--dim", "batch=8", "--repeats", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    schedule = mnist_mlp().program.schedule  # the same graph again: the same kernel names
    assert "1 thread" in lines[0] and lines[-2].startswith("total") and lines[-1].startswith("program")
    assert [line.split()[0] for line in lines[2:-2]] == [k.name for k in schedule.kernels]
