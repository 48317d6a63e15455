"""Atomic writes: temporaries that killed writers left are cleaned up, live writers' never, and modes are exact."""
import fcntl
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from runtime import atomic
from runtime.atomic import atomic_path, atomic_write_bytes

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def dead_pid():
    """The pid of a child that has exited and been reaped: no process has it (until pids wrap around)."""
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


def locked(path):
    """Whether someone holds an exclusive lock on ``path`` (a fresh open of it cannot take one)."""
    with open(path, "rb") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False


def killed_writer(path):
    """Run a process that starts writing ``path`` through atomic_path and dies mid-write; its temporary's name."""
    script = textwrap.dedent(f"""
        import os, sys
        from runtime.atomic import atomic_path
        with atomic_path({str(path)!r}) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half of the")
            print(os.path.basename(tmp))
            sys.stdout.flush()
            os._exit(9)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 9, done.stderr
    return done.stdout.strip()


def test_a_killed_writers_temporary_is_removed_by_the_next_write_in_that_directory(tmp_path):
    left = killed_writer(tmp_path / "weights.npz")
    assert sorted(os.listdir(tmp_path)) == [left]
    assert str(os.getpid()) not in left and ".tmp" in left and left.endswith(".npz")
    atomic_write_bytes(tmp_path / "other.txt", b"x")
    assert sorted(os.listdir(tmp_path)) == ["other.txt"]


def test_temporaries_of_live_writers_other_hosts_and_foreign_files_are_kept(tmp_path):
    pid, other_host = dead_pid(), f"{int(atomic._host(), 16) ^ 1:08x}"
    keep = [".weights.npz.tmp", f".x.{other_host}-{pid}-deadbeef.tmp", "notes.txt"]  # no pid; another host; not ours
    for name in keep + [f".x.{atomic._host()}-{pid}-deadbeef.tmp"]:  # the same dead pid on this host: removed
        (tmp_path / name).write_bytes(b"")
    with atomic_path(tmp_path / "a.bin") as live:
        open(live, "wb").close()
        atomic_write_bytes(tmp_path / "b.bin", b"y")  # this process's own unfinished temporary survives
        assert os.path.exists(live)
    assert sorted(os.listdir(tmp_path)) == sorted(keep + ["a.bin", "b.bin"])


def test_a_temporary_whose_writer_holds_the_lock_is_kept_even_if_its_pid_looks_dead(tmp_path, monkeypatch):
    """A writer in another PID namespace under the same hostname (docker --network host, hostNetwork pods)."""
    monkeypatch.setattr(atomic, "_alive", lambda pid: False)
    with atomic_path(tmp_path / "weights.npz") as live:
        np.savez(live, w=np.arange(3))  # reopens the path: the same, still locked, inode
        atomic_write_bytes(tmp_path / "other.bin", b"y")
        assert os.path.exists(live) and locked(live)
    assert np.load(tmp_path / "weights.npz")["w"].tolist() == [0, 1, 2]
    assert not locked(tmp_path / "weights.npz")  # published, and the lock released
    assert sorted(os.listdir(tmp_path)) == ["other.bin", "weights.npz"]


def test_a_temporary_removed_before_its_writer_locked_it_gives_way_to_a_locked_one(tmp_path, monkeypatch):
    real_flock = fcntl.flock

    def cleaner_first(fd, operation):
        if operation == fcntl.LOCK_EX:  # the writer's (a cleaner's is non-blocking): a cleaner got there first
            monkeypatch.setattr(fcntl, "flock", real_flock)
            [name] = os.listdir(tmp_path)
            os.remove(tmp_path / name)
        real_flock(fd, operation)
    monkeypatch.setattr(fcntl, "flock", cleaner_first)
    with atomic_path(tmp_path / "a.bin") as tmp:
        assert os.path.exists(tmp) and locked(tmp)
        with open(tmp, "wb") as f:
            f.write(b"x")
    assert os.listdir(tmp_path) == ["a.bin"] and (tmp_path / "a.bin").read_bytes() == b"x"


def test_mode_is_exact_whatever_the_umask_and_the_default_follows_it(tmp_path, umask_000):
    atomic_write_bytes(tmp_path / "private", b"k", mode=0o600)
    atomic_write_bytes(tmp_path / "shared", b"s")
    assert (tmp_path / "private").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "shared").stat().st_mode & 0o777 == 0o666  # checkpoints keep the umask's say
    os.umask(0o277)
    atomic_write_bytes(tmp_path / "private", b"k", mode=0o600)
    assert (tmp_path / "private").stat().st_mode & 0o777 == 0o600


def test_replace_false_keeps_the_first_writers_file(tmp_path):
    path = tmp_path / "key"
    atomic_write_bytes(path, b"first", replace=False)
    with pytest.raises(FileExistsError):
        atomic_write_bytes(path, b"second", replace=False)
    assert path.read_bytes() == b"first" and os.listdir(tmp_path) == ["key"] and not locked(path)
