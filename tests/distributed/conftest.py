"""Running a case of cases.py in several MPI processes (mpiexec from the mpi extra), with a timeout so that a
hang fails the test instead of blocking the suite. Those tests skip where mpi4py or mpiexec is missing."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")


@pytest.fixture
def mpiexec():
    """``mpiexec(arguments, processes, timeout)``: ``python arguments...`` in ``processes`` MPI processes."""
    pytest.importorskip("mpi4py")
    if MPIEXEC is None:
        pytest.skip("mpiexec is not installed (pip install -e '.[mpi]')")
    return _mpiexec


@pytest.fixture
def mpirun(tmp_path, mpiexec):
    """``mpirun(case, processes=2, timeout=120)`` runs ``cases.py case <dir>`` in ``processes`` processes and returns
    the CompletedProcess, with ``result.ranks``: what each rank saved (rank_<r>.npz), and ``result.directory``."""
    def run(case, processes=2, timeout=120):
        result = mpiexec([os.path.join(HERE, "cases.py"), case, str(tmp_path)], processes, timeout)
        result.directory = tmp_path
        result.ranks = [dict(np.load(path)) for path in sorted(tmp_path.glob("rank_*.npz"))]
        return result
    return run


def _mpiexec(arguments, processes, timeout):
    """``python arguments...`` in ``processes`` MPI processes: the CompletedProcess (text output)."""
    # Open MPI refuses to start as root without these: set here, for the tests only.
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OPENBLAS_NUM_THREADS="1", PYTHONPATH=REPO)
    # A core each (so graphc runs one thread per process), or all on the cores there are.
    placement = ["--bind-to", "core"] if len(os.sched_getaffinity(0)) >= processes else ["--oversubscribe"]
    command = [MPIEXEC, "-n", str(processes), *placement, sys.executable, *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
