"""Where the time goes: per-node timings of a function on the reference backend, as a table or a heat map.

The reference backend has no kernels, so this runs the graph op by op (each
op's numpy reference, timed with ``time.perf_counter``). The native backend
will time its own kernels; its ``Profile`` rows will then name kernels
instead of nodes, and the same table and DOT heat map will show them.
"""
import time
from dataclasses import dataclass

import numpy as np

from ..graph.shapes import evaluate_shape
from .dot import to_dot
from .networkx_graph import backend_hook, node_keys


@dataclass
class ProfileRow:
    name: str
    op: str
    seconds: float  # mean per call
    share: float  # of the total time of one call
    gflops: float | None  # GFLOP/s achieved, for matmul nodes


@dataclass
class Profile:
    function: object
    rows: list  # slowest first
    total_seconds: float

    def heat(self) -> dict:
        """Node name -> time share, for ``to_dot(..., heat=...)``."""
        return {row.name: row.share for row in self.rows}

    def to_dot(self, stage: str = "kernels") -> str:
        """The function's graph at ``stage`` with every node filled from white to red by its time share."""
        return to_dot(self.function, stage, heat=self.heat())

    def table(self) -> str:
        lines = [f"{'name':<24} {'op':<16} {'time (ms)':>10} {'share':>7} {'GFLOP/s':>8}"]
        for row in self.rows:
            gflops = f"{row.gflops:8.2f}" if row.gflops is not None else ""
            lines.append(f"{row.name:<24} {row.op:<16} {row.seconds * 1e3:10.3f} {row.share:7.1%} {gflops:>8}")
        lines.append(f"{'total':<24} {'':<16} {self.total_seconds * 1e3:10.3f}")
        return "\n".join(lines) + "\n"


def profile(function, feeds, repeats: int = 20) -> Profile:
    """Run ``function`` (a gc.Function) ``repeats`` times on ``feeds`` (one array per input), timing every
    computed node of the graph it runs (its optimized graph); variables are read, never updated."""
    if repeats < 1:
        raise ValueError(f"profile: repeats must be at least 1, got {repeats}")
    arrays, dims = function.check_inputs(feeds)
    graph = backend_hook(function, "optimized_graph") or function.graph
    seconds = {}
    for _ in range(repeats):
        for node_id, elapsed in _timed_run(graph, arrays, dims).items():
            seconds[node_id] = seconds.get(node_id, 0.0) + elapsed / repeats
    total = sum(seconds.values())
    keys = node_keys(graph.nodes)
    rows = [ProfileRow(keys[n.id], n.op.display_name(n), seconds[n.id], seconds[n.id] / total if total else 0.0,
                       _gflops(n, dims, seconds[n.id]))
            for n in graph.nodes if n.id in seconds]
    return Profile(function, sorted(rows, key=lambda row: -row.seconds), total)


def _timed_run(graph, arrays, dims) -> dict:
    """Node id -> seconds its numpy reference took, for one evaluation of ``graph`` (as reference.run does it)."""
    values = {inp.id: array for inp, array in zip(graph.inputs, arrays)}
    values.update({n.id: n.storage for n in graph.nodes if n.op.name == "variable"})
    values.update({n.id: n.attrs["value"] for n in graph.nodes if n.op.name == "constant"})
    elapsed = {}
    for node in graph.nodes:
        if node.id in values:
            continue
        start = time.perf_counter()
        values[node.id] = np.asarray(node.op.reference(node, [values[i.id] for i in node.inputs], dims))
        elapsed[node.id] = time.perf_counter() - start
    return elapsed


def _gflops(node, dims, seconds) -> float | None:
    """2*M*N*K floating-point operations (times the batch) per second, in billions, for a matmul node (fused or not)."""
    if node.op.kind != "matmul" or seconds <= 0:
        return None
    a = node.inputs[0]
    contracted = a.shape[-2] if node.attrs["transpose_a"] else a.shape[-1]
    (k,) = evaluate_shape((contracted,), dims)
    return 2 * int(np.prod(evaluate_shape(node.shape, dims))) * k / seconds / 1e9
