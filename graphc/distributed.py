"""Data parallelism over MPI: which process this is, starting every process from the same state, and each
process's share of the data.

    python -m pip install -e '.[mpi]'      # mpi4py and Open MPI's wheel
    mpiexec -n 4 python train.py           # rank() 0..3, size() 4

MPI is started only in a process an MPI launcher started (mpiexec/mpirun, Slurm's srun, MPICH's hydra: they
set one of LAUNCHER_VARIABLES) and only when mpi4py is installed. Anywhere else this is rank 0 of 1 process,
``broadcast_variables`` changes nothing and ``shard`` gives everything: programs behave exactly as without
this module. When a process dies of an uncaught exception, init's exception hook aborts the whole job
(MPI_Abort), and mpiexec ends the job when a process is killed, so the others never wait in a collective
for ever.
"""
import os
import sys

import numpy as np

# Set in the processes an MPI launcher starts: Open MPI's mpirun, PMI (MPICH's hydra, Intel MPI, srun
# --mpi=pmi2), PMIx (Open MPI 5, srun --mpi=pmix).
LAUNCHER_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK")

_COMM = []  # [the world communicator, or None without MPI], once init() has run


def init():
    """Start MPI if this process was started by an MPI launcher and mpi4py is installed (once; later calls
    do nothing) and make its functions callable from compiled programs. Returns the number of processes."""
    if not _COMM:
        _COMM.append(_world())
    return 1 if _COMM[0] is None else _COMM[0].Get_size()


def _world():
    if not any(name in os.environ for name in LAUNCHER_VARIABLES):
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    from .lower.collective import bind_mpi
    bind_mpi(MPI)
    _abort_on_uncaught_exception(MPI.COMM_WORLD)
    return MPI.COMM_WORLD


def _abort_on_uncaught_exception(comm):
    """An uncaught exception in one process aborts the job (MPI_Abort): the others would otherwise wait in
    their next collective for ever."""
    report = sys.excepthook

    def abort(kind, value, traceback):
        report(kind, value, traceback)
        print(f"graphc.distributed: process {comm.Get_rank()} of {comm.Get_size()} failed ({kind.__name__}); "
              f"aborting every process", file=sys.stderr, flush=True)
        comm.Abort(1)
    sys.excepthook = abort


def communicator():
    """mpi4py's world communicator, or None in a process without MPI."""
    init()
    return _COMM[0]


def rank() -> int:
    """This process's number, 0 .. size() - 1 (0 without MPI)."""
    comm = communicator()
    return 0 if comm is None else comm.Get_rank()


def size() -> int:
    """The number of processes training together (1 without MPI)."""
    return init()


def broadcast_variables(variables, root=0):
    """Give every process ``root``'s values of ``variables`` (gc.variable nodes, in the same order on every
    process), so that data-parallel training starts from one state."""
    comm = communicator()
    if not 0 <= root < size():
        raise ValueError(f"broadcast_variables: root must be a rank in 0..{size() - 1}, got {root}")
    if comm is None:
        return
    for variable in variables:
        comm.Bcast(variable.storage, root=root)


def broadcast(value, root=0):
    """``root``'s value of a picklable Python object, on every process (e.g. a seed drawn on rank 0)."""
    comm = communicator()
    return value if comm is None else comm.bcast(value, root=root)


def shard(array_or_count, seed=None, epoch=0):
    """This process's share of a data set: the rank-th of size() near-equal, contiguous parts of one global
    order, the same on every process. The order is 0..n-1, or, with a ``seed``, a permutation drawn from
    (seed, epoch), as fit shuffles epochs (runtime/loop.py). ``array_or_count``: an array (its samples along
    axis 0 are returned) or the number of samples n (the indices are returned)."""
    count = array_or_count if isinstance(array_or_count, (int, np.integer)) else len(array_or_count)
    if count < size():
        raise ValueError(f"shard: {count} samples cannot be shared between {size()} processes")
    order = np.arange(count) if seed is None else np.random.default_rng([seed, epoch]).permutation(count)
    mine = np.array_split(order, size())[rank()]
    return mine if isinstance(array_or_count, (int, np.integer)) else np.asarray(array_or_count)[mine]
