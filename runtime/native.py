"""Calls a compiled graphc program: binds buffers into a slot table and runs the native entry point.

The entry point is ``void program(void **slots, int64 *dims, int32 tid, int32 nthreads,
int64 *barrier)``. Every thread calls it once per step with its own ``tid``; the
program runs all its kernels in order and synchronises between them with a
spin barrier on ``barrier``, so no Python runs between kernels. ctypes releases
the GIL during the call, which is what lets plain Python threads run it in parallel.
"""
import ctypes
import threading
from dataclasses import dataclass
from typing import Callable

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

    def __init__(self, entry_address: int, layout: SlotLayout, threads: int, keepalive=None):
        self._entry = _ENTRY(entry_address)
        self._keepalive = keepalive  # the engine owning the machine code
        self.layout = layout
        self.threads = max(1, int(threads))
        self._slots = np.zeros(layout.count, dtype=np.uintp)
        for slot, array in layout.fixed.items():
            self._slots[slot] = array.ctypes.data
        self._arenas: dict[tuple, tuple] = {}  # dims -> (arena array, temp offsets)
        self._barrier = np.zeros(8, dtype=np.int64)  # [arrived, generation] + padding to a cache line
        self._pool = _ThreadPool(self.threads - 1) if self.threads > 1 else None

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
        barrier = self._barrier.ctypes.data
        if self._pool is None:
            self._entry(slots_address, dims_address, 0, 1, barrier)
            return
        threads = self.threads
        self._pool.run(lambda tid: self._entry(slots_address, dims_address, tid, threads, barrier))
        self._entry(slots_address, dims_address, 0, threads, barrier)
        self._pool.wait()

    def close(self):
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __del__(self):
        self.close()


class _ThreadPool:
    """``size`` persistent workers; ``run(job)`` starts job(1..size) on them, ``wait()`` joins the step."""

    def __init__(self, size: int):
        self._size = size
        self._job: Callable | None = None
        self._start = threading.Barrier(size + 1)
        self._done = threading.Barrier(size + 1)
        self._closing = False
        self._workers = [threading.Thread(target=self._work, args=(tid,), daemon=True, name=f"graphc-{tid}")
                         for tid in range(1, size + 1)]
        for worker in self._workers:
            worker.start()

    def _work(self, tid: int):
        while True:
            self._start.wait()
            if self._closing:
                return
            self._job(tid)
            self._done.wait()

    def run(self, job: Callable):
        self._job = job
        self._start.wait()

    def wait(self):
        self._done.wait()

    def close(self):
        self._closing = True
        try:
            self._start.wait(timeout=1)
        except threading.BrokenBarrierError:
            pass
