"""A process that fails makes the whole job end with a clear error instead of leaving the others waiting in a
collective (rank 0 waits in a compiled MPI_Allreduce when rank 1 fails); the harness's timeout turns a hang
into a failure."""
import pytest


@pytest.mark.parametrize("how", ["exception", "kill"])
def test_a_failing_process_ends_the_job(mpirun, monkeypatch, how):
    monkeypatch.setenv("FAIL", how)
    result = mpirun("failing", timeout=60)
    assert result.returncode != 0
    if how == "exception":
        assert "RuntimeError: rank 1 fails on purpose" in result.stderr
        assert "graphc.distributed: process 1 of 2 failed (RuntimeError); aborting every process" in result.stderr
    else:
        assert "signal 9 (Killed)" in result.stderr
    assert not result.ranks  # rank 0 never returned from its allreduce


def test_mpi_without_serialized_threads_is_refused(mpirun):
    result = mpirun("funneled", timeout=60)
    assert result.returncode == 0, result.stderr
    for rank in result.ranks:
        assert "must be initialized with at least MPI_THREAD_SERIALIZED" in str(rank["error"])
