"""Calls a compiled graphc program: binds buffers into a slot table and runs the native entry point.

The entry point is ``void program(void **slots, int64 *dims, int32 tid, int32 nthreads,
int64 *barrier)``. Every thread runs it once per step with its own ``tid``; the
program runs all its kernels in order and synchronises between them with a
spin barrier on ``barrier``, so no Python runs between kernels. The caller's thread
is thread 0; threads 1..n-1 spend their life in the program's native ``worker``
loop (entered through ctypes, which releases the GIL), so starting a step costs
three memory writes, not a wake-up through Python.

Reliability (docs/reliability.md): calls from several Python threads take turns on a lock (the
program has one slot table and one barrier); announcing a step and running thread 0's part are one
native call (``run_step``), so an exception such as KeyboardInterrupt can land before or after a
call, never inside it; a forked child starts its own helper threads on its first call; and a barrier
wait that cannot complete (its threads live in another process) ends the call with ``ProgramError``
instead of spinning for ever.
"""
import atexit
import ctypes
import os
import threading
import weakref
from dataclasses import dataclass

import numpy as np

_ENTRY = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32, ctypes.c_void_p)
_RUN_STEP = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                             ctypes.c_int32, ctypes.c_void_p)
ALIGNMENT = 64  # bytes: every temporary starts on a cache line (and a full AVX-512 vector)

# The barrier record the generated code reads and writes: int64 fields, padded to a cache line.
BARRIER = {"arrived": 0, "generation": 1, "failed": 2, "pid": 3, "spins_before_yield": 4}
SPINS_BEFORE_YIELD = 1 << 12  # a waiting thread spins this long before it gives the core away...
SPINS_BEFORE_YIELD_OVERSUBSCRIBED = 1  # ...or at once when there are more threads than cores to run them


class ProgramError(RuntimeError):
    """The native program could not complete a call; the message says why and what to do."""


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), not every core of the machine."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


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
    """A loaded native program and the memory it runs on; ``run(feeds, dims)`` returns the outputs.

    ``addresses``: the program's native functions ``program``, ``worker``, ``start_step`` and
    ``run_step`` by name (the last three are needed only with more than one thread).
    """

    live = weakref.WeakSet()  # reset in a forked child (os.register_at_fork below)

    def __init__(self, addresses: dict, layout: SlotLayout, threads: int, keepalive=None):
        self._entry = _ENTRY(addresses["program"])
        self._addresses = addresses
        self._keepalive = keepalive  # the engine owning the machine code
        self.layout = layout
        self.threads = max(1, int(threads))
        self._slots = np.zeros(layout.count, dtype=np.uintp)
        for slot, array in layout.fixed.items():
            self._slots[slot] = array.ctypes.data
        self._arenas: dict[tuple, tuple] = {}  # dims -> (arena array, temp offsets)
        self._lock = threading.Lock()  # one call at a time: one slot table, one barrier
        self._caller = None  # the thread inside a call: a signal handler calling again would deadlock
        self._broken = None  # why calls are refused, once the program's state cannot be trusted
        self._workers = None  # helper threads, started by the first call that needs them
        self._new_barrier()
        Executable.live.add(self)

    def _new_barrier(self):
        self._barrier = np.zeros(8, dtype=np.int64)
        self._barrier[BARRIER["pid"]] = os.getpid()  # the process whose threads run the program
        self._barrier[BARRIER["spins_before_yield"]] = (
            SPINS_BEFORE_YIELD if self.threads <= available_cores() else SPINS_BEFORE_YIELD_OVERSUBSCRIBED)
        self._barrier_address = self._barrier.ctypes.data

    def run(self, feeds: list, dims: tuple) -> list:
        caller = threading.get_ident()
        if self._caller == caller:
            raise ProgramError("a graphc function was called again while this thread was inside a call to it "
                               "(from a signal handler?); the call would wait for itself")
        with self._lock:
            self._caller = caller
            try:
                slots, dims_array, outputs = self.bind(feeds, dims)
                self._call_all(slots.ctypes.data, dims_array.ctypes.data)
            finally:
                self._caller = None
        return outputs

    def bind(self, feeds: list, dims: tuple) -> tuple:
        """Fill the slot table for a call on ``feeds`` at ``dims`` without running the program.

        Returns (slot table: a uintp array of buffer addresses, dims as an int64 array, the new output
        arrays). The caller keeps ``feeds`` alive while it uses the table; the next ``run`` or ``bind``
        overwrites the table. A profiler calls the kernels one by one on it (from one thread).
        """
        if self._broken:
            raise ProgramError(self._broken)
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
        if self.threads == 1:  # no barrier wait: nothing can fail
            self._entry(slots_address, dims_address, 0, 1, self._barrier_address)
            return
        if self._workers is None:
            self._workers = _Workers(self._addresses, self.threads, self._barrier, self._keepalive)
        # One native call: the helpers start and thread 0 runs; it returns when every thread is done.
        self._workers.run_step(slots_address, dims_address)
        if self._barrier[BARRIER["failed"]]:
            self._workers = None  # they are not in this process: nothing to stop
            self._broken = ("a graphc program's helper threads are not in this process (it was forked in a way "
                            "the runtime did not see); the call was abandoned and the variables may hold a "
                            "partial update: compile the function again")
            raise ProgramError(self._broken)

    def _after_fork_in_child(self):
        """The helper threads did not survive the fork: the child's first call starts its own. A call
        that another thread was running at the fork left memory half written: the program is refused."""
        if self._lock.locked():
            self._broken = ("this graphc function was running in another thread when the process forked; "
                            "its state in the child is undefined: compile the function again in the child")
        self._lock = threading.Lock()
        self._workers = None
        self._new_barrier()

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

    A step is announced by the program's native ``run_step``: it writes the call's slot table and dims
    into ``call``, bumps ``control[0]`` atomically and wakes helpers that went to sleep (``control[2]``
    counts them), then runs thread 0's part; the worker reads ``control`` with acquire.
    Each thread holds the machine code and the memory it uses until it has returned, so nothing it
    touches can be freed under it, whatever order the garbage collector finalizes things in.
    """

    live = weakref.WeakSet()  # stopped at exit, before the interpreter frees what the threads read

    def __init__(self, addresses: dict, threads: int, barrier: np.ndarray, keepalive):
        _Workers.live.add(self)
        self.threads = threads
        self._control = np.zeros(8, dtype=np.int64)  # [step count, stop, sleeping] + padding to a cache line
        self._start = _START(addresses["start_step"])
        self._run_step = _RUN_STEP(addresses["run_step"])
        self._control_address = self._control.ctypes.data
        self._call = np.zeros(2, dtype=np.uintp)  # [slot table, dims]
        self._call_address, self._barrier_address = self._call.ctypes.data, barrier.ctypes.data
        memory = (_WORKER(addresses["worker"]), self._control, self._call, barrier, keepalive)
        self._threads = [threading.Thread(target=_work, args=(tid, threads, memory), daemon=True,
                                          name=f"graphc-{tid}") for tid in range(1, threads)]
        try:
            for thread in self._threads:
                thread.start()
        except BaseException:  # e.g. KeyboardInterrupt: no helper may be left waiting for steps for ever
            self.stop()
            raise

    def run_step(self, slots_address: int, dims_address: int):
        self._run_step(self._control_address, self._call_address, slots_address, dims_address, self.threads,
                       self._barrier_address)

    def stop(self):
        self._control[1] = 1
        self._start(self._control_address)
        for thread in self._threads:
            if thread.ident is not None:  # started
                thread.join(timeout=5)


@atexit.register
def _stop_all_workers():
    for workers in list(_Workers.live):
        workers.stop()


def _after_fork_in_child():
    _Workers.live = weakref.WeakSet()  # the parent's helper threads do not exist here
    for executable in list(Executable.live):
        executable._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _work(tid: int, threads: int, memory: tuple):
    worker, control, call, barrier, _machine_code = memory
    worker(control.ctypes.data, call.ctypes.data, tid, threads, barrier.ctypes.data)
