"""Compile LLVM IR to native code in-process (MCJIT) or to relocatable objects.

`compile_module` compiles one module in memory (tests, assembly listings).
`emit_objects` + `load_objects` split it in two so that an on-disk cache can
store the object bytes and skip LLVM's optimizer and code generator on the
next run; a program is several objects (one per kernel) linked on loading.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import warnings
from typing import Union

import llvmlite.binding as llvm
from llvmlite import ir

from graphc.lower.target import Target

IRInput = Union[ir.Module, str]


class CompiledModule:
    """Native code loaded into an ExecutionEngine.

    The engine (and with it the machine code) lives as long as this object:
    keep a reference while any function address obtained from it is in use.
    """

    def __init__(self, engine: llvm.ExecutionEngine, target: Target,
                 optimized_ir: str | None):
        self._engine = engine
        self._target = target
        self._optimized_ir = optimized_ir
        self._asm: str | None = None

    def address(self, name: str) -> int:
        """Address of the function `name`; raises KeyError if it is not defined."""
        addr = self._engine.get_function_address(name)
        if not addr:
            raise KeyError(f"no function named {name!r} in compiled module")
        return addr

    @property
    def llvm_ir(self) -> str | None:
        """Optimized IR text (None for a module loaded from object code)."""
        return self._optimized_ir

    @property
    def asm(self) -> str | None:
        """Assembly text (None for a module loaded from object code).

        Generated on first access from a fresh parse of the optimized IR, so
        the module owned by the engine is never touched again.
        """
        if self._asm is None and self._optimized_ir is not None:
            module = llvm.parse_assembly(self._optimized_ir)
            self._asm = self._target.create_target_machine().emit_assembly(module)
        return self._asm


def _optimized_module(source: IRInput, tm: llvm.TargetMachine) -> llvm.ModuleRef:
    """Parse, verify and run LLVM's O1 pipeline, without its vectorizers and loop unroller.

    The emitters already write what O3 would work hard to find: vector code, unrolled GEMM tiles, loop
    bounds and dims computed once in each kernel's entry block. What is left is O1's cleaning up:
    inlining the always-inline helpers (vecmath, row-kernel members), promoting stack slots to
    registers, folding, common subexpressions, loop-invariant code motion, strength reduction. The seed
    step compiles in about half of O3's time with the same kernel speeds (docs/performance.md). A
    shorter hand-picked list of passes was faster still, but NewGVN, the only GVN llvmlite exposes on
    its own, aborted on some row kernels.
    """
    module = llvm.parse_assembly(str(source))
    module.triple = tm.triple
    module.data_layout = str(tm.target_data)
    module.verify()
    tuning = llvm.create_pipeline_tuning_options(speed_level=1)
    tuning.loop_vectorization = False
    tuning.slp_vectorization = False
    tuning.loop_unrolling = False
    pass_builder = llvm.create_pass_builder(tm, tuning)
    pass_builder.getModulePassManager().run(module, pass_builder)
    return module


def compile_module(source: IRInput, target: Target) -> CompiledModule:
    """Optimize `source` (an llvmlite ir.Module or IR text) and JIT it for `target`."""
    tm = target.create_target_machine()
    module = _optimized_module(source, tm)
    optimized_ir = str(module)
    engine = llvm.create_mcjit_compiler(module, tm)
    engine.finalize_object()
    return CompiledModule(engine, target, optimized_ir)


def emit_objects(sources: list, target: Target, processes: int = 1) -> list:
    """Optimize each of `sources` (modules or IR texts, compiled apart) into relocatable object code for `target`.

    With `processes` > 1 the modules are shared out, largest first, between this process and forked children
    (llvmlite runs one LLVM call at a time per process), each child sending its objects back through a pipe.
    Only a process whose one Python thread is this one forks (no other thread can be inside LLVM or hold a
    lock the child would need); a child that fails leaves its share to this process, which then raises what
    LLVM raises. The objects are the same bytes either way."""
    texts = [str(source) for source in sources]
    shares = _shares(texts, processes if _may_fork() else 1)
    children = [_compile_in_child([texts[i] for i in share], target) for share in shares[1:]]
    try:
        objects = dict(zip(shares[0], _emit([texts[i] for i in shares[0]], target)))
    except BaseException:  # LLVM's error or an interrupt: no child outlives the call
        for child in children:
            _collect(*child)
        raise
    for share, child in zip(shares[1:], children):
        made = _collect(*child)
        objects.update(zip(share, made if len(made) == len(share) else _emit([texts[i] for i in share], target)))
    return [objects[i] for i in range(len(texts))]


def _emit(texts: list, target: Target) -> list:
    tm = target.create_target_machine()
    return [tm.emit_object(_optimized_module(text, tm)) for text in texts]


def _shares(texts: list, processes: int) -> list:
    """Indexes of ``texts`` in at most ``processes`` non-empty groups of similar total length (LLVM's time
    grows with it): each text, longest first, joins the shortest group so far."""
    groups = [[] for _ in range(max(1, min(processes, len(texts))))]
    lengths = [0] * len(groups)
    for index in sorted(range(len(texts)), key=lambda i: -len(texts[i])):
        smallest = lengths.index(min(lengths))
        groups[smallest].append(index)
        lengths[smallest] += len(texts[index])
    return [group for group in groups if group] or [[]]


def _may_fork() -> bool:
    """Forking is safe here: Linux, this the only Python thread (so no thread is inside llvmlite), and no MPI
    library loaded (some MPI transports break in a forked child)."""
    return hasattr(os, "fork") and threading.active_count() == 1 and "mpi4py" not in sys.modules


def _compile_in_child(texts: list, target: Target) -> tuple:
    """Fork a child that compiles ``texts`` and writes their objects (bundled) to a pipe; (pid, read end)."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12 warns of other (native) threads
        pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_end)
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(bundle(_emit(texts, target)))
            status = 0
        finally:
            os._exit(status)  # never back into the parent's Python: no atexit, no buffered output twice
    os.close(write_end)
    return pid, read_end


def _collect(pid: int, read_end: int) -> list:
    """The objects the child ``pid`` wrote whole (its last act), none if it failed before; the child is reaped
    (unless the caller's own SIGCHLD handling did)."""
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    return unbundle(data) or []


def bundle(objects: list) -> bytes:
    """Several object files as one byte string: each one's length (8 bytes, little-endian), then its bytes."""
    return b"".join(len(o).to_bytes(8, "little") + o for o in objects)


def unbundle(data: bytes | None) -> list | None:
    """The object files of a bundle, or None for no data (or data that does not split exactly)."""
    if data is None:
        return None
    objects, at = [], 0
    while at + 8 <= len(data):
        length = int.from_bytes(data[at:at + 8], "little")
        objects.append(data[at + 8:at + 8 + length])
        at += 8 + length
    return objects if objects and at == len(data) else None


def load_objects(object_codes: list, target: Target) -> CompiledModule:
    """Load object code produced by `emit_objects` into one fresh engine, which links their symbols: a function
    one object declares is the one another defines."""
    tm = target.create_target_machine()
    empty = llvm.parse_assembly("")
    empty.triple = tm.triple
    empty.data_layout = str(tm.target_data)
    engine = llvm.create_mcjit_compiler(empty, tm)
    for object_code in object_codes:
        engine.add_object_file(llvm.ObjectFileRef.from_data(object_code))
    engine.finalize_object()
    return CompiledModule(engine, target, optimized_ir=None)
