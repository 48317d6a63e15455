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

``Executable.run_steps`` runs one step after another in a single native call (``run_steps`` below, a small
program of its own): before each step it copies the step's rows of the batched inputs into their buffers
(a row gather), points an input that reads the step's indices itself (a program whose GEMMs read rows
through them) at the step's row of the index array, and points the output slots at that step's row of the
stacked outputs; after it, it stops early when the step met a bad index, its threads failed, or a watched
output is not finite.
"""
import atexit
import contextlib
import ctypes
import functools
import os
import string
import threading
import weakref
from dataclasses import dataclass

import llvmlite.binding as llvm
import numpy as np

_ENTRY = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32, ctypes.c_void_p)
_RUN_STEP = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                             ctypes.c_int32, ctypes.c_void_p)
ALIGNMENT = 64  # bytes: every temporary starts on a cache line (and a full AVX-512 vector)

# The barrier record the generated code reads and writes: int64 fields, padded to a cache line.
BARRIER = {"arrived": 0, "generation": 1, "failed": 2, "pid": 3, "spins_before_yield": 4}
SPINS_BEFORE_YIELD = 1 << 12  # a waiting thread spins this long before it gives the core away...
SPINS_BEFORE_YIELD_OVERSUBSCRIBED = 1  # ...or at once when there are more threads than cores to run them


# A run of steps is described to the native ``run_steps`` by one int64 array: these fields, then from field
# RECORDS on a record per batched input [gather buffer, full array, bytes per row], then (from field
# "output_records") per output [slot, base of the stacked outputs, bytes per step], then (from field
# "watch_records") per watched status word [address] (what a bad index sets). "index_slot": the slot pointed at
# each step's row of the indices (-1: none).
PLAN = {"steps": 0, "rows": 1, "indices": 2, "slots": 3, "dims": 4, "barrier": 5, "nthreads": 6, "program": 7,
        "run_step": 8, "control": 9, "call": 10, "gathers": 11, "outputs": 12, "watches": 13, "stop": 14,
        "output_records": 15, "watch_records": 16, "index_slot": 17}
RECORDS = 18
GATHER, OUTPUT = 3, 3  # fields per record
NO_BAD_INDEX = -1  # a status word while its kernel met no bad index (all ones, graphc/lower/gather.py)


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
        with self._turn():
            slots, dims_array, outputs = self.bind(feeds, dims)
            self._call_all(slots.ctypes.data, dims_array.ctypes.data)
        return outputs

    def run_steps(self, feeds: list, dims: tuple, gathers: list, indices: np.ndarray, outputs: list, stop: int = -1,
                  watches: tuple = (), pointed: int | None = None) -> int:
        """Run ``len(indices)`` steps at ``dims`` in one native call, as many ``run`` calls would; return how many
        steps ran (fewer when the run stopped early).

        feeds: one array per input, as for ``run``. A batched input's array is the buffer that each step s
        first fills with the rows ``indices[s]`` (an int64 (steps, rows) array, every index in range) of a
        source array: ``gathers`` lists these (buffer, source) pairs, C-contiguous, of one dtype and row shape.
        ``pointed``: the position of an input that each step s reads as ``indices[s]`` itself (None: none).
        outputs: one array per output of shape (steps, *shape): step s writes row s.
        The run stops after the first step that met a bad index (a status word in ``watches``, addresses of
        int64 words, is not all ones: the caller reports it), or whose output number ``stop`` (a float32
        scalar; -1: none) is NaN or infinite. A barrier that failed raises ProgramError, its ``step`` the
        failing step.
        """
        indices = np.ascontiguousarray(indices, dtype=np.int64)
        with self._turn():
            slots, dims_array = self._point(feeds, [stack[:1] for stack in outputs], dims)
            index_slot = -1 if pointed is None else self.layout.inputs[pointed]
            plan = self._plan(slots, dims_array, gathers, indices, outputs, stop, watches, index_slot)
            ran = _run_steps()[0](plan.ctypes.data)
            try:
                self._check_barrier()
            except ProgramError as error:
                error.step = ran - 1  # the step whose barrier failed
                raise
        return ran

    def _plan(self, slots, dims_array, gathers, indices, outputs, stop, watches, index_slot) -> np.ndarray:
        """The int64 array that tells the native ``run_steps`` what to run (PLAN, then the records)."""
        workers = self._helpers()
        header = {"steps": len(indices), "rows": indices.shape[1], "indices": indices.ctypes.data,
                  "slots": slots.ctypes.data, "dims": dims_array.ctypes.data, "barrier": self._barrier_address,
                  "nthreads": self.threads, "program": self._addresses["program"],
                  "run_step": 0 if workers is None else self._addresses["run_step"],
                  "control": 0 if workers is None else workers.control_address,
                  "call": 0 if workers is None else workers.call_address,
                  "gathers": len(gathers), "outputs": len(outputs), "watches": len(watches), "stop": stop,
                  "output_records": RECORDS + GATHER * len(gathers),
                  "watch_records": RECORDS + GATHER * len(gathers) + OUTPUT * len(outputs), "index_slot": index_slot}
        fields = [0] * RECORDS
        for name, value in header.items():
            fields[PLAN[name]] = int(value)
        records = [[buffer.ctypes.data, source.ctypes.data, buffer[0].nbytes] for buffer, source in gathers]
        records += [[slot, stack.ctypes.data if stack.size else 0, stack[0].nbytes]
                    for (slot, _, _), stack in zip(self.layout.outputs, outputs)]
        return np.array(fields + [int(v) for record in records for v in record] + list(watches), dtype=np.int64)

    @contextlib.contextmanager
    def _turn(self):
        """Hold the program for one call: calls from other threads wait; a call from inside a call raises."""
        caller = threading.get_ident()
        if self._caller == caller:
            raise ProgramError("a graphc function was called again while this thread was inside a call to it "
                               "(from a signal handler?); the call would wait for itself")
        with self._lock:
            self._caller = caller
            try:
                yield
            finally:
                self._caller = None

    def bind(self, feeds: list, dims: tuple) -> tuple:
        """Fill the slot table for a call on ``feeds`` at ``dims`` without running the program.

        Returns (slot table: a uintp array of buffer addresses, dims as an int64 array, the new output
        arrays). The caller keeps ``feeds`` alive while it uses the table; the next ``run`` or ``bind``
        overwrites the table. A profiler calls the kernels one by one on it (from one thread).
        """
        outputs = [np.empty(shape_of(dims), dtype=dtype) for _, shape_of, dtype in self.layout.outputs]
        return (*self._point(feeds, outputs, dims), outputs)

    def _point(self, feeds: list, outputs: list, dims: tuple) -> tuple:
        """Point the slot table at ``feeds``, ``outputs`` and the temporaries for ``dims``; return the table and
        dims as an int64 array."""
        if self._broken:
            raise ProgramError(self._broken)
        layout = self.layout
        for slot, array in zip(layout.inputs, feeds):
            self._slots[slot] = array.ctypes.data
        for (slot, _, _), array in zip(layout.outputs, outputs):
            self._slots[slot] = array.ctypes.data if array.size else 0
        arena, offsets = self._arena(dims)
        base = arena.ctypes.data
        for (slot, _), offset in zip(layout.temps, offsets):
            self._slots[slot] = base + offset
        dims_array = np.array(dims, dtype=np.int64) if dims else np.zeros(1, dtype=np.int64)
        return self._slots, dims_array

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
        workers = self._helpers()
        if workers is None:  # one thread: no barrier wait, nothing can fail
            self._entry(slots_address, dims_address, 0, 1, self._barrier_address)
            return
        # One native call: the helpers start and thread 0 runs; it returns when every thread is done.
        workers.run_step(slots_address, dims_address)
        self._check_barrier()

    def _helpers(self):
        """The helper threads (started on first use), or None for a program on one thread."""
        if self.threads > 1 and self._workers is None:
            self._workers = _Workers(self._addresses, self.threads, self._barrier, self._keepalive)
        return self._workers

    def _check_barrier(self):
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
        self.control_address = self._control.ctypes.data
        self._call = np.zeros(2, dtype=np.uintp)  # [slot table, dims]
        self.call_address, self._barrier_address = self._call.ctypes.data, barrier.ctypes.data
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
        self._run_step(self.control_address, self.call_address, slots_address, dims_address, self.threads,
                       self._barrier_address)

    def stop(self):
        self._control[1] = 1
        self._start(self.control_address)
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


# ---- many steps in one native call -----------------------------------------------------------------
# run_steps(plan) -> the number of steps run: for each step s, gather its rows into the batched inputs'
# buffers, point the indices' input (if any) at row s of the indices and the output slots at row s of the
# stacked outputs, run the step (on one thread, or
# announcing it to the helpers), then stop early, after step s, if a barrier wait failed, a status word
# says a kernel met a bad index, or the watched output (plan "stop" >= 0: a float32 scalar) is NaN or inf.
_RUN_STEPS_IR = string.Template("""
declare void @llvm.memcpy.p0.p0.i64(ptr, ptr, i64, i1)
declare float @llvm.fabs.f32(float)

define internal i64 @field(ptr %plan, i64 %i) alwaysinline {
  %at = getelementptr i64, ptr %plan, i64 %i
  %value = load i64, ptr %at
  ret i64 %value
}

define internal ptr @pointer(ptr %plan, i64 %i) alwaysinline {
  %at = getelementptr i64, ptr %plan, i64 %i
  %value = load ptr, ptr %at
  ret ptr %value
}

; step s's rows of every batched input: buffer[j] = source[indices[s * rows + j]], row by row
define internal void @gather(ptr %plan, i64 %s) {
entry:
  %count = call i64 @field(ptr %plan, i64 ${gathers})
  %rows = call i64 @field(ptr %plan, i64 ${rows})
  %indices = call ptr @pointer(ptr %plan, i64 ${indices})
  %first = mul i64 %s, %rows
  %step_indices = getelementptr i64, ptr %indices, i64 %first
  br label %input
input:
  %g = phi i64 [0, %entry], [%g.next, %input.done]
  %inputs.left = icmp slt i64 %g, %count
  br i1 %inputs.left, label %input.body, label %exit
input.body:
  %record.g = mul i64 %g, ${gather_fields}
  %record = add i64 %record.g, ${records}
  %buffer = call ptr @pointer(ptr %plan, i64 %record)
  %record.1 = add i64 %record, 1
  %source = call ptr @pointer(ptr %plan, i64 %record.1)
  %record.2 = add i64 %record, 2
  %row_bytes = call i64 @field(ptr %plan, i64 %record.2)
  br label %row
row:
  %j = phi i64 [0, %input.body], [%j.next, %row.body]
  %rows.left = icmp slt i64 %j, %rows
  br i1 %rows.left, label %row.body, label %input.done
row.body:
  %index.at = getelementptr i64, ptr %step_indices, i64 %j
  %index = load i64, ptr %index.at
  %from.offset = mul i64 %index, %row_bytes
  %from = getelementptr i8, ptr %source, i64 %from.offset
  %to.offset = mul i64 %j, %row_bytes
  %to = getelementptr i8, ptr %buffer, i64 %to.offset
  call void @llvm.memcpy.p0.p0.i64(ptr %to, ptr %from, i64 %row_bytes, i1 false)
  %j.next = add i64 %j, 1
  br label %row
input.done:
  %g.next = add i64 %g, 1
  br label %input
exit:
  ret void
}

; the input that reads the indices itself (plan "index_slot", if not -1) points at step s's row of them
define internal void @point_indices(ptr %plan, ptr %slots, i64 %s) {
entry:
  %slot = call i64 @field(ptr %plan, i64 ${index_slot})
  %none = icmp slt i64 %slot, 0
  br i1 %none, label %exit, label %point
point:
  %rows = call i64 @field(ptr %plan, i64 ${rows})
  %indices = call ptr @pointer(ptr %plan, i64 ${indices})
  %first = mul i64 %s, %rows
  %row = getelementptr i64, ptr %indices, i64 %first
  %slot.at = getelementptr ptr, ptr %slots, i64 %slot
  store ptr %row, ptr %slot.at
  br label %exit
exit:
  ret void
}

; the address of step s's row of output o's stacked array
define internal ptr @output_row(ptr %plan, i64 %o, i64 %s) alwaysinline {
  %outputs = call i64 @field(ptr %plan, i64 ${output_records})
  %record.o = mul i64 %o, ${output_fields}
  %record = add i64 %outputs, %record.o
  %record.1 = add i64 %record, 1
  %base = call ptr @pointer(ptr %plan, i64 %record.1)
  %record.2 = add i64 %record, 2
  %stride = call i64 @field(ptr %plan, i64 %record.2)
  %offset = mul i64 %s, %stride
  %row = getelementptr i8, ptr %base, i64 %offset
  ret ptr %row
}

define internal void @point_outputs(ptr %plan, ptr %slots, i64 %s) {
entry:
  %count = call i64 @field(ptr %plan, i64 ${outputs})
  %records = call i64 @field(ptr %plan, i64 ${output_records})
  br label %output
output:
  %o = phi i64 [0, %entry], [%o.next, %output.body]
  %left = icmp slt i64 %o, %count
  br i1 %left, label %output.body, label %exit
output.body:
  %record.o = mul i64 %o, ${output_fields}
  %record = add i64 %records, %record.o
  %slot = call i64 @field(ptr %plan, i64 %record)
  %row = call ptr @output_row(ptr %plan, i64 %o, i64 %s)
  %slot.at = getelementptr ptr, ptr %slots, i64 %slot
  store ptr %row, ptr %slot.at
  %o.next = add i64 %o, 1
  br label %output
exit:
  ret void
}

; whether the run must end after step s
define internal i1 @stopped(ptr %plan, i64 %s) {
entry:
  %barrier = call ptr @pointer(ptr %plan, i64 ${barrier})
  %failed.at = getelementptr i64, ptr %barrier, i64 ${failed}
  %failed = load atomic i64, ptr %failed.at acquire, align 8
  %broken = icmp ne i64 %failed, 0
  br i1 %broken, label %yes, label %words
words:
  %count = call i64 @field(ptr %plan, i64 ${watches})
  %first = call i64 @field(ptr %plan, i64 ${watch_records})
  br label %word
word:
  %w = phi i64 [0, %words], [%w.next, %word.good]
  %left = icmp slt i64 %w, %count
  br i1 %left, label %word.body, label %watched
word.body:
  %record = add i64 %first, %w
  %status.at = call ptr @pointer(ptr %plan, i64 %record)
  %status = load i64, ptr %status.at
  %bad = icmp ne i64 %status, ${no_bad_index}
  br i1 %bad, label %yes, label %word.good
word.good:
  %w.next = add i64 %w, 1
  br label %word
watched:
  %stop = call i64 @field(ptr %plan, i64 ${stop})
  %none = icmp slt i64 %stop, 0
  br i1 %none, label %no, label %loss
loss:
  %value.at = call ptr @output_row(ptr %plan, i64 %stop, i64 %s)
  %value = load float, ptr %value.at
  %magnitude = call float @llvm.fabs.f32(float %value)
  %finite = fcmp olt float %magnitude, 0x7FF0000000000000
  br i1 %finite, label %no, label %yes
yes:
  ret i1 1
no:
  ret i1 0
}

define i64 @run_steps(ptr %plan) {
entry:
  %steps = call i64 @field(ptr %plan, i64 ${steps})
  %slots = call ptr @pointer(ptr %plan, i64 ${slots})
  %dims = call ptr @pointer(ptr %plan, i64 ${dims})
  %barrier = call ptr @pointer(ptr %plan, i64 ${barrier})
  %nthreads.64 = call i64 @field(ptr %plan, i64 ${nthreads})
  %nthreads = trunc i64 %nthreads.64 to i32
  %program = call ptr @pointer(ptr %plan, i64 ${program})
  %run_step = call ptr @pointer(ptr %plan, i64 ${run_step})
  %control = call ptr @pointer(ptr %plan, i64 ${control})
  %call = call ptr @pointer(ptr %plan, i64 ${call})
  %alone = icmp eq ptr %run_step, null
  br label %step
step:
  %s = phi i64 [0, %entry], [%s.next, %next]
  %left = icmp slt i64 %s, %steps
  br i1 %left, label %prepare, label %done
prepare:
  call void @gather(ptr %plan, i64 %s)
  call void @point_indices(ptr %plan, ptr %slots, i64 %s)
  call void @point_outputs(ptr %plan, ptr %slots, i64 %s)
  br i1 %alone, label %one, label %many
one:
  call void %program(ptr %slots, ptr %dims, i32 0, i32 1, ptr %barrier)
  br label %check
many:
  call void %run_step(ptr %control, ptr %call, ptr %slots, ptr %dims, i32 %nthreads, ptr %barrier)
  br label %check
check:
  %s.next = add i64 %s, 1
  %stop = call i1 @stopped(ptr %plan, i64 %s)
  br i1 %stop, label %early, label %next
next:
  br label %step
early:
  ret i64 %s.next
done:
  ret i64 %steps
}
""").substitute(**PLAN, records=RECORDS, gather_fields=GATHER, output_fields=OUTPUT, failed=BARRIER["failed"],
                no_bad_index=NO_BAD_INDEX)
_RUN_STEPS = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p)


@functools.cache
def _run_steps():
    """The native ``run_steps``, compiled once per process for the host (it only moves memory and calls)."""
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    module = llvm.parse_assembly(_RUN_STEPS_IR)
    module.verify()
    machine = llvm.Target.from_default_triple().create_target_machine()
    engine = llvm.create_mcjit_compiler(module, machine)
    engine.finalize_object()
    return _RUN_STEPS(engine.get_function_address("run_steps")), engine
