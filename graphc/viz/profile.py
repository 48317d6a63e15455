"""Where the time goes: per-kernel timings of a compiled function, as a table or a heat map.

A function compiled natively (``backend='llvm'``) is timed kernel by kernel: its
program runs once to bind the buffers for the feeds' dims, then every kernel's
exported function is called alone through ctypes, in schedule order, on one
thread (tid 0 of 1), so each kernel reads what the kernels before it wrote. The
whole program is also timed per call as the function runs it, on its threads.
A function on the reference backend has no kernels: its graph runs op by op,
each node's numpy reference timed. Either way variables end as they started.
"""
import ctypes
import time
from dataclasses import dataclass

import numpy as np

from ..graph.shapes import evaluate_dim, evaluate_shape
from .dot import to_dot
from .networkx_graph import backend_hook, node_keys


@dataclass
class ProfileRow:
    name: str  # the kernel's name (native) or the node's dump key (reference)
    op: str
    seconds: float  # mean per call
    share: float  # of the total time of one call
    gflops: float | None  # GFLOP/s achieved, for matmul kernels and nodes


@dataclass
class Profile:
    function: object
    rows: list  # in the order they run
    total_seconds: float  # the rows' sum
    how: str  # what was timed and how: the table's first line
    program_seconds: float | None = None  # native: one whole call on the program's threads
    threads: int | None = None

    def heat(self) -> dict:
        """Kernel or node name -> time share, for ``to_dot(..., heat=...)``."""
        return {row.name: row.share for row in self.rows}

    def to_dot(self, stage: str = "kernels") -> str:
        """The function's graph at ``stage`` with every kernel (or node) filled from white to red by its time share."""
        return to_dot(self.function, stage, heat=self.heat())

    def table(self) -> str:
        """The rows, one a line, in columns as wide as their longest entry (a Keras layer's kernel name is long)."""
        width = max([24] + [len(row.name) for row in self.rows])
        threads = f"{self.threads} threads"
        op_width = max([16, len(threads)] + [len(row.op) for row in self.rows])
        lines = [f"# {self.how}", f"{'name':<{width}} {'op':<{op_width}} {'time (ms)':>10} {'share':>7} {'GFLOP/s':>8}"]
        for row in self.rows:
            gflops = f"{row.gflops:8.2f}" if row.gflops is not None else ""
            line = f"{row.name:<{width}} {row.op:<{op_width}} {row.seconds * 1e3:10.4f} {row.share:7.1%} {gflops:>8}"
            lines.append(line.rstrip())
        lines.append(f"{'total':<{width}} {'':<{op_width}} {self.total_seconds * 1e3:10.4f}")
        if self.program_seconds is not None:
            lines.append(f"{'program':<{width}} {threads:<{op_width}} {self.program_seconds * 1e3:10.4f}"
                         f"   one whole call, as the function runs")
        return "\n".join(lines) + "\n"


def profile(function, feeds, repeats: int = 20) -> Profile:
    """Time ``function`` (a gc.Function) over ``repeats`` calls on ``feeds`` (one array per input): per kernel
    for a native function, per node on the reference backend. The variables are left as they were."""
    if repeats < 1:
        raise ValueError(f"profile: repeats must be at least 1, got {repeats}")
    arrays, dims = function.check_inputs(feeds)
    program = getattr(function, "program", None)
    if hasattr(program, "kernel_address"):
        return _profile_native(function, program, arrays, dims, repeats)
    return _profile_reference(function, arrays, dims, repeats)


def _profile_native(function, program, arrays, dims, repeats) -> Profile:
    variables = [b.node for b in program.schedule.buffers if b.kind == "variable"]
    saved = [v.storage.copy() for v in variables]
    try:
        program.run(arrays, dims)  # warm-up: allocates the arena for these dims, fills the caches
        _restore(variables, saved)
        start = time.perf_counter()
        for _ in range(repeats):
            program.run(arrays, dims)
        program_seconds = (time.perf_counter() - start) / repeats
        _restore(variables, saved)
        slots, dims_array, _outputs = program.bind(arrays, dims)  # _outputs kept alive: the kernels write there
        seconds = [_time_kernel(program, kernel, slots, dims_array, dims, repeats)
                   for kernel in program.schedule.kernels]
    finally:
        _restore(variables, saved)
    total = sum(seconds)
    rows = [ProfileRow(kernel.name, kernel.label, elapsed,
                       elapsed / total if total else 0.0, _gflops(kernel.node, dims, elapsed))
            for kernel, elapsed in zip(program.schedule.kernels, seconds)]
    how = (f"llvm backend, {_format_dims(dims)}: each kernel called alone on 1 thread (tid 0 of 1), "
           f"in schedule order, mean of {repeats} calls")
    return Profile(function, rows, total, how, program_seconds, program.threads)


def _restore(variables, saved):
    for variable, value in zip(variables, saved):
        variable.storage[...] = value  # in place: the program holds the storage's address


def _time_kernel(program, kernel, slots, dims_array, dims, repeats) -> float:
    """Mean seconds of one single-threaded call of ``kernel``'s native function on the bound buffers.

    A kernel writing over a buffer it also reads (an in-place update, a reused temporary) gets that buffer
    back before every call, so each call computes what the program's would and later kernels read the same
    values.
    """
    arguments = kernel.arguments  # None: a pointer the kernel never dereferences
    signature = ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * (len(arguments) + 1), ctypes.c_int32, ctypes.c_int32)
    call = signature(program.kernel_address(kernel.name))
    addresses = [0 if b is None else int(slots[b.slot]) for b in arguments]
    # Overwritten: an output that is also read (an in-place update; a row group's updated variable).
    slot_uses = [b.slot for b in arguments if b is not None] + [b.slot for b in kernel.inputs]
    overwritten = [_Snapshot(int(slots[b.slot]), evaluate_dim(b.nbytes, dims))
                   for b in kernel.outputs if slot_uses.count(b.slot) > 1 and slots[b.slot]]
    elapsed = 0.0
    for _ in range(repeats):
        for snapshot in overwritten:
            snapshot.restore()
        start = time.perf_counter()
        call(*addresses, dims_array.ctypes.data, 0, 1)
        elapsed += time.perf_counter() - start
    return elapsed / repeats


class _Snapshot:
    """A copy of ``nbytes`` at ``address``, to put back with ``restore()``."""

    def __init__(self, address: int, nbytes: int):
        self.address, self.saved = address, np.empty(nbytes, dtype=np.uint8)
        ctypes.memmove(self.saved.ctypes.data, address, nbytes)

    def restore(self):
        ctypes.memmove(self.address, self.saved.ctypes.data, self.saved.nbytes)


def _profile_reference(function, arrays, dims, repeats) -> Profile:
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
    how = f"reference backend, {_format_dims(dims)}: each node's numpy reference, mean of {repeats} calls"
    return Profile(function, rows, total, how)


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


def _format_dims(dims) -> str:
    return ", ".join(f"{symbol}={value}" for symbol, value in dims.items()) or "no symbolic dims"


def _gflops(node, dims, seconds) -> float | None:
    """2*M*N*K floating-point operations (times the batch) per second, in billions, for a matmul, a
    convolution (K: taps times channels) or a conv_transpose node, fused or not; None for anything else."""
    if node is None or node.op.kind not in ("matmul", "conv", "conv_transpose") or seconds <= 0:
        return None
    a, w = node.inputs[:2]
    products = node.shape  # the GEMM's output: M x N
    if node.op.kind == "conv":
        contracted = w.shape[0] * w.shape[1] * w.shape[2]
    elif node.op.kind == "conv_transpose":  # g @ w^T: (pixels of g) x (taps x channels), contracted over F
        products, contracted = (*a.shape[:3], w.shape[0] * w.shape[1] * w.shape[2]), a.shape[3]
    else:
        contracted = a.shape[-2] if node.attrs["transpose_a"] else a.shape[-1]
    (k,) = evaluate_shape((contracted,), dims)
    return 2 * int(np.prod(evaluate_shape(products, dims))) * k / seconds / 1e9
