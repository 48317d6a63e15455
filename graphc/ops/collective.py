"""Collectives: ops whose value is combined from the same tensor on every process (graphc.distributed).

``allreduce`` is the primitive (an element-wise sum over the processes, MPI_Allreduce); the mean is that sum
divided by the number of processes, an elementwise node that fuses with its consumers. With one process
there is nothing to combine and ``allreduce(x)`` is ``x`` itself, so a graph built for one process is the
graph built without this module.
"""
import numpy as np

from .. import distributed
from ..graph import dtypes
from ..graph.node import user_location
from .elementwise import multiply
from .registry import Op, apply

# The dtypes MPI reduces here (graphc.lower.collective has an MPI datatype for each).
REDUCIBLE = ("float32", "float64", "int32", "int64")


def _allreduce_infer(inputs, attrs):
    (x,) = inputs
    return x.shape, x.dtype  # allreduce checked the dtype


def _allreduce_reference(node, arrays, dims):
    """The sum of every process's array, through mpi4py (the same result, bit for bit, on every process)."""
    (x,) = arrays
    total = np.empty_like(x)
    distributed.communicator().Allreduce(np.ascontiguousarray(x), total)
    return total


def _allreduce_vjp(node, g):
    """Every process's x contributes to every process's sum, so x's gradient is the sum of every process's
    gradient of the sum: an allreduce too (sum -> sum, and so mean -> mean)."""
    return [allreduce(g)]


allreduce_op = Op("allreduce", _allreduce_infer, _allreduce_reference, _allreduce_vjp, kind="collective")


def allreduce(x, op="sum"):
    """``x`` combined over all processes, element by element: their ``"sum"`` or their ``"mean"``; the same
    value on every process. Its gradient is the allreduce (same ``op``) of the gradient. With one process
    (or without MPI) it is ``x``; its arguments are checked all the same."""
    if op not in ("sum", "mean"):
        raise ValueError(f"allreduce: op must be 'sum' or 'mean', got {op!r} (at {user_location()})")
    if x.dtype not in REDUCIBLE or (op == "mean" and not dtypes.is_float(x.dtype)):
        kinds = "float32 or float64" if op == "mean" else ", ".join(REDUCIBLE)
        raise ValueError(f"allreduce: the {op} is taken of {kinds} tensors, got {x.dtype} {x.name} "
                         f"(at {user_location()})")
    processes = distributed.init()
    if processes == 1:
        return x
    total = apply(allreduce_op, [x])
    return total if op == "sum" else multiply(total, 1.0 / processes)
