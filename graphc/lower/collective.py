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

``overlap_collectives`` (a schedule rewrite) splits each allreduce into a start placed right after the
kernel completing its operand and a wait placed right before the first kernel reading its result, so the
reduction of one gradient proceeds while the backward pass computes the next (PyTorch DDP's overlap). The
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

# The handles graphc_mpi_handles holds, in order: the communicator, the reduction, a datatype per dtype.
HANDLES = ("comm", "sum", "float32", "float64", "int32", "int64")
FUNCTIONS = ("MPI_Allreduce", "MPI_Iallreduce", "MPI_Wait")
_TABLE = np.zeros(len(HANDLES), dtype=np.uint64)  # lives as long as the process: programs read it
_BOUND = []


def bind_mpi(MPI):
    """Make MPI's functions and handles linkable into compiled programs (graphc.distributed.init calls it)."""
    handles = [MPI.COMM_WORLD, MPI.SUM, MPI.FLOAT, MPI.DOUBLE, MPI.INT32_T, MPI.INT64_T]
    _TABLE[:] = [MPI._handleof(handle) for handle in handles]
    library = ctypes.CDLL(MPI.__file__)  # dlsym through mpi4py's module finds its MPI library's symbols
    for name in FUNCTIONS:
        llvm.add_symbol(name, ctypes.cast(getattr(library, name), ctypes.c_void_p).value)
    llvm.add_symbol("graphc_mpi_handles", _TABLE.ctypes.data)
    _BOUND.append(True)


def _operand_infer(inputs, attrs):
    return inputs[0].shape, inputs[0].dtype


# The halves of a split allreduce: scheduling records, never in a user's graph (so no reference, no vjp).
# attrs["request"] names the MPI_Request the pair shares.
start_op = Op("allreduce_start", _operand_infer, None, None, kind="collective")
wait_op = Op("allreduce_wait", _operand_infer, None, None, kind="collective")


def emit_allreduce(module, name, node, target, dim_index) -> ir.Function:
    """out = the sum over the processes of in (MPI_Allreduce, called by thread 0)."""
    kb = KernelBuilder.create(module, name, 1, dim_index)
    with kb.only_thread_zero():
        _call(kb, "MPI_Allreduce", node)
    return kb.finish()


def emit_allreduce_start(module, name, node, target, dim_index) -> ir.Function:
    """Start out = the sum over the processes of in (MPI_Iallreduce); in and out stay untouched until the wait."""
    kb = KernelBuilder.create(module, name, 1, dim_index)
    with kb.only_thread_zero():
        _call(kb, "MPI_Iallreduce", node, _global(module, node.attrs["request"], 1))
    return kb.finish()


def emit_allreduce_wait(module, name, node, target, dim_index) -> ir.Function:
    """Wait for the reduction its start began (arguments: no output, the operand, the result: kept alive)."""
    kb = KernelBuilder.create(module, name, 2, dim_index)
    wait = _declare(module, "MPI_Wait", [PTR, PTR])
    with kb.only_thread_zero():
        kb.builder.call(wait, [_global(module, node.attrs["request"], 1), _global(module, "graphc_mpi_status", 8)])
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


def _global(module, name, words) -> ir.GlobalVariable:
    """A zeroed module-internal array of ``words`` i64 (an MPI_Request, an MPI_Status), created once."""
    if name not in module.globals:
        variable = ir.GlobalVariable(module, ir.ArrayType(I64, words), name)
        variable.linkage = "internal"
        variable.initializer = ir.Constant(variable.value_type, None)
    return module.globals[name]


def overlap_collectives(schedule):
    """Each allreduce kernel becomes a start right after the last kernel writing its operand and a wait right
    before the first later kernel that touches its result or overwrites its operand."""
    from .program import Kernel
    for kernel in [k for k in schedule.kernels if isinstance(k, Kernel) and k.node.op.name == "allreduce"]:
        kernels = schedule.kernels
        index = kernels.index(kernel)
        operand, result = kernel.inputs[0], kernel.out
        ready = max((i for i in range(index) if _touches(kernels[i], [result], [operand])), default=-1) + 1
        needed = next((i for i in range(index + 1, len(kernels)) if _touches(kernels[i], [result], [operand])),
                      len(kernels))
        node, attrs = kernel.node, {"request": f"{kernel.name}_request"}
        start = Kernel(f"{kernel.name}_start", apply(start_op, node.inputs, attrs), result, [operand])
        wait = Kernel(f"{kernel.name}_wait", apply(wait_op, [*node.inputs, node], attrs), None, [operand, result])
        schedule.kernels = (kernels[:ready] + [start] + kernels[ready:index] + kernels[index + 1:needed] + [wait]
                            + kernels[needed:])


def _touches(kernel, used, written) -> bool:
    """Whether ``kernel`` reads or writes a buffer of ``used``, or writes one of ``written``."""
    outputs = {id(b) for b in kernel.outputs}
    return any(id(b) in outputs | {id(r) for r in kernel.reads} for b in used) or any(id(b) in outputs
                                                                                       for b in written)
