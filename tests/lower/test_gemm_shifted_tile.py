"""A GEMM's partial last row tile runs the full tiles' K loop on the last tile.rows rows of A, shifted up to end at
row M, its epilogue skipping the rows another tile stored (`lower/gemm.py` `_shifts_last_tile`): one K loop
instead of two (docs/performance.md, "Compile time").  The epilogue still runs once per element (an accumulating
epilogue would count a shifted row twice), the sums are those of whole tiles bit for bit, and a run-time M below
one tile reads A's rows packed into the same layout."""
import dataclasses
import math
import re

import numpy as np
import pytest
from llvmlite import ir

from graphc.lower.gemm import GemmSpec, choose_micro_tile, emit_gemm
from graphc.lower.irutil import I64, PTR
from tests.lower.test_gemm import (TARGETS, CompiledGemms, accumulate_epilogue, make_operands, run_gemm)
from tests.lower.test_gemm_code_size import seed_step_modules, defined

# (spec, the Ms it runs with): static Ms of a tile or more, not whole tiles; run-time Ms, below one tile too;
# a short K (the epilogue unrolled over the rows) and a long one (a loop over them).
CASES = [
    (GemmSpec("float32", 23, 37, 300), (23,)),
    (GemmSpec("float32", 23, 37, 10), (23,)),
    (GemmSpec("float32", 131, 37, 300, trans_a=True), (131,)),
    (GemmSpec("float32", 23, 37, None, trans_a=True), (23,)),
    (GemmSpec("float32", None, 37, 300), (1, 5, 23, 129)),
    (GemmSpec("float32", None, 37, 10, trans_b=True), (1, 5, 23, 129)),
]


def whole_tiles(spec: GemmSpec, m: int, target) -> GemmSpec:
    """`spec` for m rounded up to whole row tiles (no partial tile: every tile read in place, unshifted)."""
    rows = choose_micro_tile(spec, target).rows
    return dataclasses.replace(spec, M=rows * math.ceil(m / rows))


def populate(target):
    def add_all(add):
        for spec, _ in CASES:
            add(spec)
            add(spec, "accumulate", epilogue=accumulate_epilogue)
        for padded in {whole_tiles(spec, m, target) for spec, ms in CASES for m in ms}:
            add(padded)
    return add_all


@pytest.fixture(scope="module", params=sorted(TARGETS))
def gemms(request):
    target = TARGETS[request.param]()
    return CompiledGemms(target, populate(target))


def padded_operands(spec, m, padded_m, k):
    """Operands for m rows, and the same with zero rows appended up to padded_m."""
    a, b, reference = make_operands(spec, m, k=k)
    a_padded = np.zeros((k, padded_m) if spec.trans_a else (padded_m, k), spec.dtype)
    a_padded[(slice(None), slice(0, m)) if spec.trans_a else slice(0, m)] = a
    return a, a_padded, b, reference


@pytest.mark.parametrize("spec,ms", CASES, ids=str)
def test_shifted_tile_equals_whole_tiles_and_runs_the_epilogue_once(gemms, spec, ms):
    """The rows of a partial last tile are the bits a GEMM of whole tiles computes, and an accumulating
    epilogue adds each element once, with 1 to 3 threads (a shifted tile reaches into another thread's rows)."""
    k = spec.K or 129
    for m in ms:
        padded = whole_tiles(spec, m, gemms.target)
        assert padded.M != m, "the case has a partial tile"
        a, a_padded, b, reference = padded_operands(spec, m, padded.M, k)
        expected = run_gemm(gemms, padded, a_padded, b, padded.M, k=k)[:m]
        start = np.random.default_rng(m).standard_normal((m, spec.N)).astype(spec.dtype)
        for nthreads in (1, 2, 3):
            c = run_gemm(gemms, spec, a, b, m, nthreads, concurrent=nthreads == 2, k=k)
            np.testing.assert_array_equal(c, expected)
            accumulated = run_gemm(gemms, spec, a, b, m, nthreads, c=start.copy(), flavour="accumulate", k=k)
            np.testing.assert_array_equal(accumulated, start + expected)


def kernel_loops(spec, target) -> int:
    """How many K loops (micro-kernel copies) emitting `spec` makes."""
    module = ir.Module()
    gather = [("A.indices", PTR), ("A.rows", I64)] if spec.gather_a else []
    emit_gemm(module, "gemm", spec, target, extra_args=gather)
    return len(re.findall(r"^kernel\.k(\.\d+)?:", str(module), re.M))


GATHERED = [GemmSpec("float32", None, 37, 300, gather_a="int32"), GemmSpec("float32", None, 37, None, gather_a="int64")]


@pytest.mark.parametrize("target_name", sorted(TARGETS))
@pytest.mark.parametrize("spec", [spec for spec, _ in CASES] + GATHERED, ids=str)
def test_a_partial_tile_adds_no_k_loop(target_name, spec):
    """A GEMM with a partial last row tile has as many K loops as one of whole tiles (one per panel width),
    not two per panel width (the partial tile packed or read with clamped rows); A gathered through indices
    (the rows of a shuffled batch) too."""
    target = TARGETS[target_name]()
    assert kernel_loops(spec, target) == kernel_loops(whole_tiles(spec, 129, target), target)


def test_seed_step_gemms_total():
    """The seed step's five GEMMs, which read a batch of rows (M the batch, run-time), total under 230 thousand
    characters of IR (286 thousand with a K loop for their partial tile)."""
    gemms = [len(text) for text in seed_step_modules() if any(name.endswith("_gemm") for name in defined(text))]
    assert len(gemms) == 5
    assert sum(gemms) < 230_000, gemms
