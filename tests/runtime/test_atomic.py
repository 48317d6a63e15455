"""Atomic writes: temporaries that killed writers left are cleaned up, and private files get an exact mode."""
import os
import subprocess
import sys
import textwrap

import pytest

from runtime.atomic import atomic_path, atomic_write_bytes

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def umask_000():
    previous = os.umask(0)
    yield
    os.umask(previous)


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


def test_temporaries_of_live_writers_and_foreign_files_are_kept(tmp_path):
    keep = [".weights.npz.tmp", ".x.0123abcd-1-deadbeef.tmp", "notes.txt"]  # no pid; another host; not a temporary
    for name in keep:
        (tmp_path / name).write_bytes(b"")
    with atomic_path(tmp_path / "a.bin") as live:
        open(live, "wb").close()
        atomic_write_bytes(tmp_path / "b.bin", b"y")  # this process's own unfinished temporary survives
        assert os.path.exists(live)
    assert sorted(os.listdir(tmp_path)) == sorted(keep + ["a.bin", "b.bin"])


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
    assert path.read_bytes() == b"first" and os.listdir(tmp_path) == ["key"]
