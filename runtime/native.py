"""Calls a compiled graphc program: binds buffers into a slot table and runs the native entry point.

The entry point is ``void program(void **slots, int64 *dims, int32 tid, int32 nthreads,
int64 *barrier)``. Every thread runs it once per step with its own ``tid``; the
program runs all its kernels in order and synchronises between them with a
spin barrier on ``barrier``, so no Python runs between kernels. The caller's thread
is thread 0; threads 1..n-1 spend their life in the program's native ``worker``
loop (entered through ctypes, which releases the GIL), so starting a step costs
three memory writes, not a wake-up through Python.
"""
import atexit
import ctypes
import threading
import weakref
from dataclasses import dataclass

import numpy as np

_ENTRY = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32, ctypes.c_void_p)
ALIGNMENT = 64  # bytes: every temporary starts on a cache line (and a full AVX-512 vector)


@dataclass(frozen=True)
class SlotLayout:
    """Where each slot's pointer comes from.

    inputs: slot of each fed array, in order.
    outputs: (slot, shape(dims) -> tuple, dtype) of each output the program writes.
    fixed: slot -> array whose address never changes (variables, constants); kept alive here.
    temps: (slot, nbytes(dims) -> int) of each temporary, carved out of one arena per call.
    """

    count: int
    inputs: tuple
    outputs: tuple
    fixed: dict
    temps: tuple


class Executable:
    """A loaded native program and the memory it runs on; ``run(feeds, dims)`` returns the outputs."""

    def __init__(self, entry_address: int, layout: SlotLayout, threads: int, keepalive=None, worker_address=None,
                 start_address=None):
        self._entry = _ENTRY(entry_address)
        self._keepalive = keepalive  # the engine owning the machine code
        self.layout = layout
        self.threads = max(1, int(threads))
        self._slots = np.zeros(layout.count, dtype=np.uintp)
        for slot, array in layout.fixed.items():
            self._slots[slot] = array.ctypes.data
        self._arenas: dict[tuple, tuple] = {}  # dims -> (arena array, temp offsets)
        self._barrier = np.zeros(8, dtype=np.int64)  # [arrived, generation] + padding to a cache line
        self._workers = None
        if self.threads > 1:
            self._workers = _Workers(worker_address, start_address, self.threads, self._barrier, keepalive)

    def run(self, feeds: list, dims: tuple) -> list:
        slots, dims_array, outputs = self.bind(feeds, dims)
        self._call_all(slots.ctypes.data, dims_array.ctypes.data)
        return outputs

    def bind(self, feeds: list, dims: tuple) -> tuple:
        """Fill the slot table for a call on ``feeds`` at ``dims`` without running the program.

        Returns (slot table: a uintp array of buffer addresses, dims as an int64 array, the new output
        arrays). The caller keeps ``feeds`` alive while it uses the table; the next ``run`` or ``bind``
        overwrites the table. A profiler calls the kernels one by one on it.
        """
        layout = self.layout
        for slot, array in zip(layout.inputs, feeds):
            self._slots[slot] = array.ctypes.data
        outputs = []
        for slot, shape_of, dtype in layout.outputs:
            array = np.empty(shape_of(dims), dtype=dtype)
            self._slots[slot] = array.ctypes.data if array.size else 0
            outputs.append(array)
        arena, offsets = self._arena(dims)
        base = arena.ctypes.data
        for (slot, _), offset in zip(layout.temps, offsets):
            self._slots[slot] = base + offset
        dims_array = np.array(dims, dtype=np.int64) if dims else np.zeros(1, dtype=np.int64)
        return self._slots, dims_array, outputs

    def _arena(self, dims: tuple):
        """One allocation holding every temporary for these dims; reused while the dims repeat."""
        cached = self._arenas.get(dims)
        if cached is None:
            offsets, total = [], 0
            for _, nbytes_of in self.layout.temps:
                offsets.append(total)
                total += -(-nbytes_of(dims) // ALIGNMENT) * ALIGNMENT
            raw = np.zeros(total + ALIGNMENT, dtype=np.uint8)
            start = (-raw.ctypes.data) % ALIGNMENT
            cached = (raw[start:start + total], offsets)
            if len(self._arenas) > 8:  # a few batch sizes recur (train, last batch, eval): keep those
                self._arenas.clear()
            self._arenas[dims] = cached
        return cached

    def _call_all(self, slots_address: int, dims_address: int):
        if self._workers is not None:
            self._workers.start_step(slots_address, dims_address)
        # Thread 0 runs here; the program ends with a barrier, so when it returns every thread is done.
        self._entry(slots_address, dims_address, 0, self.threads, self._barrier.ctypes.data)

    def close(self):
        if self._workers is not None:
            self._workers.stop()
            self._workers = None

    def __del__(self):
        self.close()


_WORKER = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32, ctypes.c_void_p)
_START = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class _Workers:
    """Threads 1..n-1, each living inside the program's native ``worker`` loop (ctypes released the GIL).

    A step is announced by writing the call's slot table and dims into ``call``, then running the
    program's native ``start_step``, which bumps ``control[0]`` atomically and wakes helpers that went to
    sleep (``control[2]`` counts them); the worker reads ``control`` with acquire.
    Each thread holds the machine code and the memory it uses until it has returned, so nothing it
    touches can be freed under it, whatever order the garbage collector finalizes things in.
    """

    live = weakref.WeakSet()  # stopped at exit, before the interpreter frees what the threads read

    def __init__(self, worker_address: int, start_address: int, threads: int, barrier: np.ndarray, keepalive):
        _Workers.live.add(self)
        self._control = np.zeros(8, dtype=np.int64)  # [step count, stop, sleeping] + padding to a cache line
        self._start = _START(start_address)
        self._control_address = self._control.ctypes.data
        self._call = np.zeros(2, dtype=np.uintp)  # [slot table, dims]
        memory = (_WORKER(worker_address), self._control, self._call, barrier, keepalive)
        self._threads = [threading.Thread(target=_work, args=(tid, threads, memory), daemon=True,
                                          name=f"graphc-{tid}") for tid in range(1, threads)]
        for thread in self._threads:
            thread.start()

    def start_step(self, slots_address: int, dims_address: int):
        self._call[0], self._call[1] = slots_address, dims_address
        self._start(self._control_address)

    def stop(self):
        self._control[1] = 1
        self._start(self._control_address)
        for thread in self._threads:
            thread.join(timeout=5)


@atexit.register
def _stop_all_workers():
    for workers in list(_Workers.live):
        workers.stop()


def _work(tid: int, threads: int, memory: tuple):
    worker, control, call, barrier, _machine_code = memory
    worker(control.ctypes.data, call.ctypes.data, tid, threads, barrier.ctypes.data)
