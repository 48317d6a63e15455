"""Each kernel's object code is cached on its own: a program whose kernel another program compiled loads it."""
import numpy as np
import pytest

import graphc as gc
from graphc.lower import jit, native
from runtime import cache


@pytest.fixture
def compiled_modules(tmp_path, monkeypatch):
    """A fresh cache; returns the list of how many modules each compilation handed to LLVM."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "objects"))
    counts, emit = [], native.emit_objects

    def counting(texts, target, processes=1):
        counts.append(len(texts))
        return emit(texts, target, processes)
    monkeypatch.setattr(native, "emit_objects", counting)
    return counts


def scaled_tanh(extra_output: bool):
    x = gc.placeholder((None, 7), name="x")
    y = gc.tanh(x) * 3.0
    return gc.function([x], [y, gc.transpose(x)] if extra_output else [y], backend="llvm")


def test_a_kernel_another_program_compiled_is_loaded_from_the_cache(compiled_modules, monkeypatch):
    monkeypatch.setattr(native, "SHARED_MODULE_CHARS", 0)  # these kernels are short: share them all the same
    data = np.linspace(-2, 2, 21, dtype=np.float32).reshape(3, 7)
    alone = scaled_tanh(extra_output=False)
    assert compiled_modules == [2]  # the tanh kernel and the entry point
    with_transpose = scaled_tanh(extra_output=True)
    assert [k.label for k in with_transpose.program.schedule.kernels] == ["multiply", "transpose"]
    assert not with_transpose.program.from_cache
    assert compiled_modules[1] == 2  # the transpose kernel and the entry point: the tanh kernel was loaded
    (y,) = alone(data)
    y_again, transposed = with_transpose(data)
    assert np.array_equal(y, y_again) and np.array_equal(transposed, data.T)
    np.testing.assert_allclose(y, np.tanh(data) * 3, rtol=1e-6)
    again = scaled_tanh(extra_output=True)
    assert again.program.from_cache and len(compiled_modules) == 2  # the whole program: nothing compiled


def test_short_modules_are_cached_only_in_their_programs_entry(compiled_modules):
    scaled_tanh(extra_output=True)
    # Entries: the program's, and the tanh kernel's (its vector tanh is long); the transpose and entry point are short.
    assert compiled_modules == [3] and len(list(cache.cache_dir().glob("*.o"))) == 2
    scaled_tanh(extra_output=False)
    assert compiled_modules == [3, 1]  # the tanh kernel is loaded, the short entry point compiled


@pytest.mark.parametrize("cut", [1, 7, 9, -1])
def test_a_bundle_that_does_not_split_exactly_is_no_entry(cut):
    objects = [b"\x7fELF first", b"", b"\x7fELF third object"]
    bundle = jit.bundle(objects)
    assert jit.unbundle(bundle) == objects
    assert jit.unbundle(bundle[:cut]) is None and jit.unbundle(None) is None


@pytest.mark.parametrize("cores, load, processes", [(2, 0.4, 2), (2, 1.0, 2), (2, 1.7, 1), (2, 5.0, 1), (8, 3.2, 5),
                                                     (8, 0.0, 8)])
def test_kernels_compile_in_as_many_processes_as_cores_are_idle(monkeypatch, cores, load, processes):
    monkeypatch.setattr(native, "available_cores", lambda: cores)
    monkeypatch.setattr(native.os, "getloadavg", lambda: (load, load, load))
    assert native._idle_cores() == processes
