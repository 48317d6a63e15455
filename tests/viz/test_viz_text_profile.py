"""Text dumps per stage, machine-code dumps, and the per-node profile of the reference backend
(the native per-kernel profile: test_viz_profile_native.py)."""
import re
from types import SimpleNamespace

import numpy as np
import pytest

import graphc as gc
from graphc.viz import DumpError, dump_text, machine_code, profile, to_networkx
from graphc.viz.examples import mnist_mlp


@pytest.fixture(scope="module")
def step():
    return mnist_mlp(hidden=16)


@pytest.fixture(scope="module")
def reference_step():
    return mnist_mlp(hidden=16, backend="reference")


def feeds(batch=8):
    rng = np.random.default_rng(1)
    return [rng.standard_normal((batch, 784)).astype(np.float32), np.eye(10, dtype=np.float32)[np.arange(batch) % 10]]


@pytest.mark.parametrize("stage", ["forward", "autodiff", "optimized"])
def test_text_dump_lists_every_node_once_with_its_role(step, stage):
    g = to_networkx(step, stage)
    lines = dump_text(step, stage).splitlines()
    assert lines[0].startswith(f"# stage {stage}")
    node_lines = [l for l in lines if " = " in l]
    assert [l.split(" = ")[0] for l in node_lines] == list(g.nodes)
    for line in node_lines:
        key = line.split(" = ")[0]
        assert line.endswith(f"  [{g.nodes[key]['role']}]") and g.nodes[key]["shape"] in line


def test_text_dump_returns_outputs_and_updates_where_the_stage_has_them(step):
    forward, autodiff = dump_text(step, "forward"), dump_text(step, "autodiff")
    loss, accuracy = step.graph.outputs
    assert f"return {loss.name}, {accuracy.name}" in forward and "update " not in forward
    assert autodiff.count("\nupdate ") == len(step.graph.updates) == 8
    assert "update W1 <- " in autodiff


def test_kernels_text_groups_nodes_under_their_kernel_with_its_buffers(step):
    text = dump_text(step, "kernels")
    kernels = to_networkx(step, "kernels").graph["kernels"]
    headers = re.findall(r"^kernel (\S+)\((.*)\) -> (.*)$", text, re.MULTILINE)
    assert headers == [(k["name"], ", ".join(k["inputs"]), ", ".join(k["outputs"])) for k in kernels]
    for kernel in kernels:
        block = text.split(f"kernel {kernel['name']}(")[1].splitlines()[1:1 + len(kernel["nodes"])]
        assert [l.strip().split(" = ")[0] for l in block] == kernel["nodes"]


def test_machine_code_needs_a_native_function(step):
    with pytest.raises(DumpError, match="no llvm to show: .*reference backend"):
        machine_code(mnist_mlp(hidden=4, backend="reference"), "llvm")
    with pytest.raises(DumpError, match="no asm to show"):
        machine_code(step.graph.outputs[0], "asm")
    with pytest.raises(DumpError, match="unknown machine-code format 'ptx'"):
        machine_code(step, "ptx")


def test_machine_code_prints_every_kernel_of_a_native_program(step):
    program = SimpleNamespace(llvm_ir=lambda: {"k0_matmul": "define void @k0_matmul() {\n}\n", "k1_add": "..."},
                              asm=lambda: {"k0_matmul": "k0_matmul:\n  ret"})
    native = SimpleNamespace(graph=step.graph, program=program)
    assert machine_code(native, "llvm") == ("==== kernel k0_matmul\ndefine void @k0_matmul() {\n}\n"
                                            "==== kernel k1_add\n...\n")
    assert machine_code(native, "asm") == "==== kernel k0_matmul\nk0_matmul:\n  ret\n"


def test_profile_times_every_computed_node_without_updating_variables(reference_step):
    (w1,) = [n for n in reference_step.graph.nodes if n.name == "W1"]
    before = w1.value
    result = profile(reference_step, feeds(), repeats=2)
    computed = [n for n in reference_step.optimized_graph.nodes if n.op.kind != "source"]  # what the function runs
    assert [r.name for r in result.rows] == [n.name for n in computed]  # in the order they run
    assert sum(r.share for r in result.rows) == pytest.approx(1.0)
    assert result.total_seconds == pytest.approx(sum(r.seconds for r in result.rows))
    assert all((r.gflops is not None and r.gflops > 0) == r.op.startswith("matmul") for r in result.rows)
    np.testing.assert_array_equal(w1.value, before)
    table = result.table()
    assert table.count("\n") == len(result.rows) + 3 and "GFLOP/s" in table


def test_profile_gflops_counts_two_flops_per_multiply_add():
    a = gc.placeholder(("m", 3), name="a")
    b = gc.variable(np.ones((3, 5), np.float32), name="b")
    product = a @ b
    function = gc.function([a], product, backend="reference", optimize=0)
    result = profile(function, [np.ones((4, 3), np.float32)], repeats=1)
    (row,) = result.rows
    assert row.gflops == pytest.approx(2 * 4 * 5 * 3 / row.seconds / 1e9)


def test_profile_heat_map_colours_the_slowest_node_reddest(reference_step):
    result = profile(reference_step, feeds(), repeats=1)
    text = result.to_dot()  # the kernels stage of the graph the function runs
    slowest, fastest = max(result.rows, key=lambda r: r.seconds), min(result.rows, key=lambda r: r.seconds)
    assert re.search(rf'"{slowest.name}" \[label=.*fillcolor="#ff', text)
    assert result.heat()[slowest.name] == slowest.share > result.heat()[fastest.name]


def test_profile_rejects_bad_feeds_and_repeats(step):
    with pytest.raises(ValueError, match="expected 2 input"):
        profile(step, feeds()[:1])
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        profile(step, feeds(), repeats=0)
