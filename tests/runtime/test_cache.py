"""The object cache holds code the process runs: only this user's private, signed entries are ever loaded."""
import errno
import hashlib
import os
import re
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest

import graphc as gc
from graphc.cli import main
from runtime import cache

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another uid needs root")
OTHER_UID = 12345
PAYLOAD = b"\x7fELF object code\n\n with newlines"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """A fresh cache and key under tmp_path, and a process that has not warned yet."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "objects"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("GRAPHC_CACHE_MAX_BYTES", raising=False)
    monkeypatch.setattr(cache, "_warned", set(), raising=False)


def entry(key):
    return cache.cache_dir() / f"{key}.o"


def cache_warnings(call, times=1):
    """The CacheWarnings raised while calling ``call`` ``times`` times."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(times):
            call()
    return [str(w.message) for w in caught if w.category.__name__ == "CacheWarning"]


def test_directories_key_and_entries_are_private_whatever_the_umask(tmp_path, monkeypatch, umask_000):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "home" / "cache" / "objects"))
    key = cache.cache_key("program")
    cache.store(key, PAYLOAD)
    for directory in ("home", "home/cache", "home/cache/objects", "config", "config/graphc"):
        assert (tmp_path / directory).stat().st_mode & 0o777 == 0o700, directory
    assert entry(key).stat().st_mode & 0o777 == 0o600
    secret = tmp_path / "config" / "graphc" / "cache-key"
    assert secret.stat().st_mode & 0o777 == 0o600 and len(secret.read_bytes()) == 32
    assert cache.load(key) == PAYLOAD


def test_a_world_writable_entry_is_not_loaded():
    key = cache.cache_key("program")
    cache.store(key, PAYLOAD)
    entry(key).chmod(0o666)
    with pytest.warns(RuntimeWarning, match="mode 0666: group or others can write it"):
        assert cache.load(key) is None
    cache.store(key, PAYLOAD)  # rewritten private
    assert entry(key).stat().st_mode & 0o777 == 0o600 and cache.load(key) == PAYLOAD


@needs_root
def test_an_entry_owned_by_another_user_is_not_loaded():
    key = cache.cache_key("program")
    cache.store(key, PAYLOAD)
    os.chown(entry(key), OTHER_UID, OTHER_UID)
    with pytest.warns(RuntimeWarning, match=f"owned by uid {OTHER_UID}"):
        assert cache.load(key) is None


@pytest.mark.parametrize("unsafe", ["world-writable", pytest.param("foreign", marks=needs_root)])
def test_an_unsafe_directory_is_neither_read_nor_written(unsafe):
    old, new = cache.cache_key("old"), cache.cache_key("new")
    cache.store(old, PAYLOAD)
    if unsafe == "foreign":
        os.chown(cache.cache_dir(), OTHER_UID, OTHER_UID)
    else:
        cache.cache_dir().chmod(0o777)
    with pytest.warns(RuntimeWarning, match=re.escape(str(cache.cache_dir()))):
        assert cache.load(old) is None
        cache.store(new, PAYLOAD)
    assert not entry(new).exists()


def test_a_planted_entry_with_a_valid_old_style_checksum_is_never_executed():
    def compile_scaled(scale):
        x = gc.placeholder((None, 5), name="x")
        return gc.function([x], gc.tanh(x) * scale, backend="llvm")
    compile_scaled(3.0)
    honest = set(cache.cache_dir().glob("*.o"))  # the program's entry and its modules' (kernel, entry point)
    compile_scaled(5.0)
    other = sorted(set(cache.cache_dir().glob("*.o")) - honest)[0]
    payload = other.read_bytes().split(b"\n", 3)[3]  # real code computing something else
    checksum = hashlib.sha256(payload).hexdigest().encode()
    for entry_path in honest:
        entry_path.write_bytes(b"%s\n%s\n%s\n" % (cache.FORMAT, entry_path.stem.encode(), checksum) + payload)
    f = compile_scaled(3.0)
    data = np.linspace(-2, 2, 10, dtype=np.float32).reshape(2, 5)
    assert not f.program.from_cache
    np.testing.assert_allclose(f(data), np.tanh(data) * 3, rtol=1e-6)


def test_an_entry_signed_with_another_users_key_is_not_loaded(tmp_path, monkeypatch):
    key = cache.cache_key("program")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "someone-else"))
    cache.store(key, PAYLOAD)  # a shared GRAPHC_CACHE_DIR: another user wrote this
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert cache.load(key) is None


@pytest.mark.parametrize("unsafe", ["group-readable", pytest.param("foreign", marks=needs_root)])
def test_an_unsafe_key_file_turns_the_cache_off(tmp_path, unsafe):
    key = cache.cache_key("program")
    cache.store(key, PAYLOAD)
    secret = tmp_path / "config" / "graphc" / "cache-key"
    if unsafe == "foreign":
        os.chown(secret, OTHER_UID, OTHER_UID)
    else:
        secret.chmod(0o640)
    with pytest.warns(RuntimeWarning, match="cache-key"):
        assert cache.load(key) is None
        cache.store(cache.cache_key("new"), PAYLOAD)
    assert [path.name for path in cache.cache_dir().iterdir()] == [f"{key}.o"]


def test_a_process_that_loses_the_race_to_create_the_key_uses_the_winners(tmp_path, monkeypatch):
    first = cache._secret()
    monkeypatch.setattr(os.path, "lexists", lambda path: False)  # as if it looked before the winner published
    assert cache._secret() == first
    assert os.listdir(tmp_path / "config" / "graphc") == ["cache-key"]


@pytest.mark.parametrize("code", [errno.EPERM, errno.EOPNOTSUPP], ids=["EPERM", "EOPNOTSUPP"])
def test_without_hard_links_the_key_is_created_exclusively_in_one_write(tmp_path, monkeypatch, code):
    def no_hard_links(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(os, "link", no_hard_links)  # vfat, some FUSE and SMB mounts
    key = cache.cache_key("program")
    assert cache_warnings(lambda: cache.store(key, PAYLOAD)) == [] and cache.load(key) == PAYLOAD
    secret = tmp_path / "config" / "graphc" / "cache-key"
    assert secret.stat().st_mode & 0o777 == 0o600 and len(secret.read_bytes()) == 32
    monkeypatch.setattr(os.path, "lexists", lambda path: False)  # a process that loses the race to create it
    assert cache._secret() == secret.read_bytes() and os.listdir(secret.parent) == ["cache-key"]


def test_a_key_shorter_than_32_bytes_is_being_created_and_is_waited_for_a_few_ms(tmp_path, monkeypatch):
    secret = tmp_path / "config" / "graphc" / "cache-key"
    secret.parent.mkdir(parents=True, mode=0o700)
    secret.write_bytes(b"")  # created (O_EXCL) by a process without hard links, not yet written
    secret.chmod(0o600)
    waits = []

    def the_creator_writes_during_the_second_wait(seconds):
        waits.append(seconds)
        if len(waits) == 2:
            secret.write_bytes(b"k" * 32)
    monkeypatch.setattr(time, "sleep", the_creator_writes_during_the_second_wait)
    assert cache._secret() == b"k" * 32 and len(waits) == 2
    secret.write_bytes(b"short")  # a creator that died before its write: given up on, with the warning
    waits.clear()
    monkeypatch.setattr(time, "sleep", waits.append)
    assert cache_warnings(lambda: cache.store(cache.cache_key("program"), PAYLOAD)) == [
        f"graphc: not using the object cache: {secret} is not a 32-byte key; compiling in memory"]
    assert 0 < sum(waits) < 0.05


@needs_root
def test_root_under_sudo_E_creates_no_directory_or_key_in_the_users_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".config" / "graphc").mkdir(parents=True)
    for directory in (home, home / ".config", home / ".config" / "graphc"):
        os.chown(directory, OTHER_UID, OTHER_UID)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(home / ".cache" / "graphc" / "objects"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    key = cache.cache_key("program")
    assert cache_warnings(lambda: (cache.store(key, PAYLOAD), cache.load(key)), times=2) == [
        f"graphc: not using the object cache: {home} is owned by uid {OTHER_UID}, not by this user (uid 0): "
        f"creating nothing in it; compiling in memory"]
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "objects"))  # a cache of root's own: the key still isn't
    monkeypatch.setattr(cache, "_warned", set())
    assert cache_warnings(lambda: cache.store(key, PAYLOAD)) == [
        f"graphc: not using the object cache: {home / '.config' / 'graphc'} is owned by uid {OTHER_UID}, "
        f"not by this user (uid 0): creating nothing in it; compiling in memory"]
    assert sorted(os.listdir(home)) == [".config"] and os.listdir(home / ".config" / "graphc") == []


@needs_root
def test_any_user_may_create_the_cache_in_a_directory_root_owns_like_tmp(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: OTHER_UID)  # tmp_path is root's
    cache._makedirs(tmp_path / "graphc" / "objects")
    assert (tmp_path / "graphc" / "objects").is_dir()


def test_one_warning_per_process_and_reason(tmp_path, monkeypatch):
    key = cache.cache_key("program")
    cache.store(key, PAYLOAD)
    cache.cache_dir().chmod(0o777)
    unsafe = cache_warnings(lambda: (cache.load(key), cache.store(key, PAYLOAD)), times=3)
    (tmp_path / "a-file").write_bytes(b"")
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "a-file" / "objects"))
    unusable = cache_warnings(lambda: (cache.load(key), cache.store(key, PAYLOAD)), times=3)
    assert len(unsafe) == 1 and "group or others can write it; compiling in memory" in unsafe[0]
    assert len(unusable) == 1 and "a-file/objects cannot be created or read (Not a directory)" in unusable[0]


def test_least_recently_used_entries_go_first_and_the_total_stays_within_the_bound(monkeypatch):
    keys = [cache.cache_key(str(i)) for i in range(3)]
    cache.store(keys[0], PAYLOAD)
    size = entry(keys[0]).stat().st_size
    monkeypatch.setenv("GRAPHC_CACHE_MAX_BYTES", str(2 * size + size // 2))  # room for two entries
    cache.store(keys[1], PAYLOAD)
    for age, key in enumerate(keys[:2]):
        os.utime(entry(key), (1000 + age, 1000 + age))  # keys[0] is the oldest...
    assert cache.load(keys[0]) == PAYLOAD  # ...until this load makes it the most recently used
    cache.store(keys[2], PAYLOAD)
    assert sorted(path.stem for path in cache.cache_dir().glob("*.o")) == sorted([keys[0], keys[2]])


def test_a_bound_that_is_not_a_byte_count_warns_and_keeps_the_default(monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_MAX_BYTES", "1G")
    assert cache_warnings(cache.max_bytes, times=2) == [
        "graphc: GRAPHC_CACHE_MAX_BYTES='1G' is not a byte count: the bound stays 512 MiB"]
    assert cache.max_bytes() == 512 * 2**20


def test_cache_info_and_clear_through_the_command(capsys, monkeypatch):
    keys = [cache.cache_key(str(i)) for i in range(2)]
    for key in keys:
        cache.store(key, PAYLOAD)
    size = sum(entry(key).stat().st_size for key in keys)
    monkeypatch.setenv("GRAPHC_CACHE_MAX_BYTES", "1048576")
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert f"directory  {cache.cache_dir()}\n" in out and f"entries    2 (0.0 MiB, {size} bytes)\n" in out
    assert "bound      1.0 MiB (1048576 bytes, GRAPHC_CACHE_MAX_BYTES)\n" in out and "usable     yes\n" in out
    (cache.cache_dir() / "user.o").write_bytes(b"not graphc's")
    (cache.cache_dir() / "notes.txt").write_bytes(b"")
    killed_cache_writer(keys[0])
    assert main(["cache", "clear"]) == 0
    assert capsys.readouterr().out == f"removed 2 entries (0.0 MiB) from {cache.cache_dir()}\n"
    assert sorted(os.listdir(cache.cache_dir())) == ["notes.txt", "user.o"]
    cache.cache_dir().chmod(0o777)
    assert main(["cache", "info"]) == 0
    assert "usable     no: " in capsys.readouterr().out


def test_cache_command_errors_are_one_line_with_status_2(capsys, monkeypatch):
    cache.store(cache.cache_key("program"), PAYLOAD)

    def denied(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr(os, "remove", denied)
    assert main(["cache", "clear"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("graphc: error: cache clear: ") and "Permission denied" in err and err.count("\n") == 1


def killed_cache_writer(key):
    """A process killed while storing ``key``: it leaves a temporary in the cache directory."""
    script = textwrap.dedent(f"""
        import os
        from runtime.atomic import atomic_path
        with atomic_path({str(entry(key))!r}) as tmp:
            open(tmp, "wb").close()
            os._exit(9)
    """)
    assert subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT).returncode == 9
    assert any(name.endswith(".tmp.o") for name in os.listdir(cache.cache_dir()))
