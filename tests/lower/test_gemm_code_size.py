"""How much code a GEMM and a program emit: what LLVM's time grows with (docs/performance.md, "Compile time").

A GEMM's epilogue runs once per tile, as a loop over the tile's rows, whichever K-loop variant (A read in place,
its partial last tile shifted or packed) made the sums; and a row kernel's GEMMs get modules of their own."""
import re

import pytest
from llvmlite import ir

from graphc.lower.gemm import GemmSpec, choose_micro_tile, emit_gemm, store_to_c
from graphc.lower.native import SCHEDULE_REWRITES
from graphc.lower.program import emit_program, plan
from graphc.lower.target import avx2_target, host_target
from graphc.viz.examples import mnist_mlp

TARGETS = {"host": host_target, "avx2": avx2_target}


def epilogue_calls(spec, target) -> list:
    """The lane counts of the epilogue calls made while emitting ``spec`` (the epilogue's code copies)."""
    calls = []

    def counting(builder, row, col, acc, lanes, args):
        calls.append(lanes)
        store_to_c(builder, row, col, acc, lanes, args)
    emit_gemm(ir.Module(), "gemm", spec, target, counting)
    return calls


@pytest.mark.parametrize("target_name", sorted(TARGETS))
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
@pytest.mark.parametrize("k", [300, 10])
def test_runtime_m_emits_each_epilogue_once_per_panel_width(target_name, precision, k):
    """A runtime M (full tiles read in place, the partial one shifted or packed) and an N of full panels and an edge:
    the epilogue is emitted once per full panel vector, and once per full vector and power-of-two piece of
    the edge (10 columns: 8 + 2), not once per K-loop variant; and not once per row of the tile either, but
    for a short K, where a loop over the rows would cost a share of the time that the K loop does not hide."""
    target = TARGETS[target_name]()
    spec = GemmSpec("float32", None, 202, k, precision=precision)
    tile = choose_micro_tile(spec, target)
    edge = spec.N % tile.cols
    assert edge % tile.lanes
    pieces = [1 << bit for bit in reversed(range(tile.lanes.bit_length())) if edge % tile.lanes & 1 << bit]
    copies = tile.rows if k < 256 else 1
    full_panel, edge_panel = [tile.lanes] * tile.vectors, [tile.lanes] * (edge // tile.lanes) + pieces
    assert epilogue_calls(spec, target) == full_panel * copies + edge_panel * copies


def test_narrow_n_emits_only_the_edge_panel():
    """N narrower than a tile (h @ W2: 10 columns): no code for a full panel, which no column could use."""
    target = host_target()
    spec = GemmSpec("float32", None, 10, 512)
    assert choose_micro_tile(spec, target).cols > 10
    assert epilogue_calls(spec, target) == [8, 2]


def seed_step_modules() -> list:
    """The seed step's kernel modules as native.py compiles them (planned from the reference backend's graph:
    nothing is compiled)."""
    schedule = plan(mnist_mlp(backend="reference").optimized_graph, SCHEDULE_REWRITES)
    return [str(module) for module in emit_program(schedule, host_target(), separate=True)]


def defined(text: str) -> list:
    return re.findall(r'^define [^@]*@"?([\w.]+)"?\(', text, re.M)


def test_seed_step_gemms_have_modules_of_their_own_and_stay_small():
    """Each of the seed step's 5 GEMMs is in a module with only its kernel's function (a row kernel calls
    the two it holds), and under 100 thousand characters of IR (h^T @ dy's was 180 thousand when its
    epilogue was emitted per row and variant)."""
    modules = seed_step_modules()
    gemms = {name: text for text in modules for name in defined(text) if name.endswith("_gemm")}
    assert len(gemms) == 5
    for name, text in gemms.items():
        assert defined(text) == [name, name[:-len("_gemm")]]
        assert len(text) < 100_000, (name, len(text))
