"""Collective kernels: the compiled program calls MPI itself (no Python between kernels).

    allreduce          MPI_Allreduce(in, out, count, datatype, MPI_SUM, MPI_COMM_WORLD): blocking
    allreduce_start    MPI_Iallreduce(in, out, ..., &request): the reduction starts ...
    allreduce_wait     MPI_Wait(&request): ... and is complete

Only thread 0 calls MPI; the barrier after every kernel holds the other threads until the call returns, so
MPI sees one caller at a time (it was initialized by mpi4py with that thread). The functions come from the
MPI library mpi4py loaded and the handles (communicator, op, datatypes) from mpi4py too, because they are
pointers in Open MPI and integers in MPICH: ``bind_mpi`` registers the functions under their names for the
JIT linker and the handles as the external table ``graphc_mpi_handles``, so the object code stays the same
in every process and cacheable. Both ABIs pass a handle in one 64-bit register. MPI's default error handler
aborts the job when a call fails.

``overlap_collectives`` (a schedule rewrite) splits each allreduce into a start, moved up to right after the
kernel completing its operand, and a wait, moved down past every kernel that does not need its result, so
the reduction of one gradient proceeds while the backward pass computes the next (PyTorch DDP's overlap). The
optimizer update of a reduced gradient then reads the reduced buffer after the wait: it does not ride in
the GEMM epilogue that produced the raw gradient.
"""
import ctypes

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir

from ..graph.shapes import size
from ..ops.registry import Op, apply
from .irutil import I32, I64, PTR, KernelBuilder
from .rows import _dependencies

# The handles graphc_mpi_handles holds, in order: the communicator, the reduction, a datatype per dtype.
HANDLES = ("comm", "sum", "float32", "float64", "int32", "int64")
FUNCTIONS = ("MPI_Allreduce", "MPI_Iallreduce", "MPI_Wait")
_TABLE = np.zeros(len(HANDLES), dtype=np.uint64)  # lives as long as the process: programs read it
_BOUND = []


def bind_mpi(MPI):
    """Make MPI's functions and handles linkable into compiled programs (graphc.distributed.init calls it)."""
    if MPI.Query_thread() < MPI.THREAD_SERIALIZED:  # a row kernel's last phase runs on whichever thread ends it
        raise RuntimeError("graphc calls MPI from its program's threads, one at a time: MPI must be initialized "
                           "with at least MPI_THREAD_SERIALIZED (mpi4py's default is MPI_THREAD_MULTIPLE; "
                           "mpi4py.rc.thread_level was lowered)")
    handles = [MPI.COMM_WORLD, MPI.SUM, MPI.FLOAT, MPI.DOUBLE, MPI.INT32_T, MPI.INT64_T]
    _TABLE[:] = [MPI._handleof(handle) for handle in handles]
    library = ctypes.CDLL(MPI.__file__)  # dlsym through mpi4py's module finds its MPI library's symbols
    for name in FUNCTIONS:
        llvm.add_symbol(name, ctypes.cast(getattr(library, name), ctypes.c_void_p).value)
    llvm.add_symbol("graphc_mpi_handles", _TABLE.ctypes.data)
    _BOUND.append(True)


def _operand_infer(inputs, attrs):
    return inputs[0].shape, inputs[0].dtype


# The halves of a split allreduce and the MPI_Request they share (a temporary of its own, 8 bytes: a pointer
# in Open MPI, an int in MPICH): scheduling records, never in a user's graph (so no reference, no vjp).
start_op = Op("allreduce_start", _operand_infer, None, None, kind="collective")
wait_op = Op("allreduce_wait", _operand_infer, None, None, kind="collective")
request_op = Op("mpi_request", lambda inputs, attrs: ((1,), "int64"), None, None, kind="collective")


def emit_allreduce(module, name, node, target, dim_index) -> ir.Function:
    """out = the sum over the processes of in (MPI_Allreduce, called by thread 0)."""
    kb = KernelBuilder.create(module, name, 1, dim_index)
    with kb.only_thread_zero():
        _call(kb, "MPI_Allreduce", node)
    return kb.finish()


def emit_allreduce_start(module, name, node, target, dim_index) -> ir.Function:
    """Start out = the sum over the processes of in (MPI_Iallreduce; arguments: out, in, the request); in and
    out stay untouched until the wait."""
    kb = KernelBuilder.create(module, name, 2, dim_index)
    with kb.only_thread_zero():
        _call(kb, "MPI_Iallreduce", node, kb.inputs[1])
    return kb.finish()


def emit_allreduce_wait(module, name, node, target, dim_index) -> ir.Function:
    """Wait for the reduction its start began (arguments: no output, the operand and the result, kept alive
    until here, and the request)."""
    kb = KernelBuilder.create(module, name, 3, dim_index)
    wait = _declare(module, "MPI_Wait", [PTR, PTR])
    status = kb.variable(ir.ArrayType(I64, 8))  # MPI_Status: 24 bytes in Open MPI, 20 in MPICH
    with kb.only_thread_zero():
        kb.builder.call(wait, [kb.inputs[2], status])
    return kb.finish()


def _call(kb, function, node, *extra):
    """``function(in, out, count, datatype, MPI_SUM, MPI_COMM_WORLD, *extra)``, handles read from the table."""
    if not _BOUND:
        raise RuntimeError("an allreduce is compiled in a process where MPI was not started (graphc.distributed.init)")
    elements = size(node.shape)
    if isinstance(elements, int) and elements >= 2 ** 31:
        raise ValueError(f"allreduce {node.name}: {elements} elements, more than MPI's int count can say")
    module, builder = kb.builder.module, kb.builder
    table = module.globals.get("graphc_mpi_handles") or ir.GlobalVariable(
        module, ir.ArrayType(I64, len(HANDLES)), "graphc_mpi_handles")

    def handle(key):
        pointer = builder.gep(table, [ir.Constant(I64, 0), ir.Constant(I64, HANDLES.index(key))],
                              source_etype=table.value_type)
        return builder.load(pointer, typ=I64)
    count = builder.trunc(kb.dim(elements), I32)
    arguments = [kb.inputs[0], kb.out, count, handle(node.dtype), handle("sum"), handle("comm"), *extra]
    callee = _declare(module, function, [PTR, PTR, I32, I64, I64, I64] + [PTR] * len(extra))
    builder.call(callee, arguments)


def _declare(module, name, arguments) -> ir.Function:
    return module.globals.get(name) or ir.Function(module, ir.FunctionType(I32, arguments), name=name)


def overlap_collectives(schedule):
    """Each allreduce kernel becomes a start and a wait; then the kernels are reordered, dependencies kept, so
    that every start runs as soon as its operand is complete and every wait as late as possible: after all the
    work that does not need its result (the rest of the backward pass), before the work that does (the update).
    A reduction with no GEMM (no product, convolution or row kernel) left between its start and its wait has
    nothing to hide behind and becomes one blocking kernel again, at its wait: MPI_Allreduce is faster than
    MPI_Iallreduce + MPI_Wait (Open MPI's nonblocking algorithms, docs/distributed.md). Allreduces fused into
    a row kernel (bias gradients, in its last phase) stay blocking."""
    priority, pairs = {}, []
    for kernel in [k for k in schedule.kernels if k.node is not None and k.node.op.name == "allreduce"]:
        index, Kernel = schedule.kernels.index(kernel), type(kernel)  # program.Kernel (program imports this module)
        node, (operand,) = kernel.node, kernel.inputs
        request = schedule.new_buffer("temp", apply(request_op, []))
        start = Kernel(f"{kernel.name}_start", apply(start_op, node.inputs), kernel.out, [operand, request])
        wait = Kernel(f"{kernel.name}_wait", apply(wait_op, [*node.inputs, node]), None,
                      [operand, kernel.out, request])
        schedule.kernels[index:index + 1] = [start, wait]
        priority[id(start)], priority[id(wait)] = 0, 2
        pairs.append((start, wait, kernel))
    if priority:
        schedule.kernels = _list_schedule(schedule.kernels, lambda k: priority.get(id(k), 1))
    for start, wait, blocking in pairs:
        first, last = schedule.kernels.index(start), schedule.kernels.index(wait)
        if not any(_computes(k) for k in schedule.kernels[first + 1:last]):
            schedule.kernels[last] = blocking
            del schedule.kernels[first]


def _computes(kernel) -> bool:
    """Whether ``kernel`` is work a reduction can proceed behind: a product, a convolution, a row kernel."""
    return kernel.node is None or kernel.node.op.kind in ("matmul", "conv", "conv_transpose")


def _list_schedule(kernels, priority) -> list:
    """``kernels`` in a dependency-respecting order that runs, among the kernels whose dependencies have run,
    the one of lowest (priority, original position) first. Besides what they read and write, a later kernel
    that touches a reduction's result or overwrites its operand depends on the reduction's wait (the start
    comes right before it): MPI writes the one and reads the other until then."""
    needs = [set(d) for d in _dependencies(kernels)]
    for w, wait in enumerate(kernels):
        if wait.node is None or wait.node.op is not wait_op:
            continue
        operand, result, _ = wait.inputs
        for i in range(w + 1, len(kernels)):
            written = {id(b) for b in kernels[i].outputs}
            if id(operand) in written or id(result) in written | {id(b) for b in kernels[i].reads}:
                needs[i].add(w)
    done, order = set(), []
    while len(order) < len(kernels):
        ready = [i for i in range(len(kernels)) if i not in done and needs[i] <= done]
        chosen = min(ready, key=lambda i: (priority(kernels[i]), i))
        done.add(chosen)
        order.append(kernels[chosen])
    return order

