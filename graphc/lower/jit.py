"""Compile LLVM IR to native code in-process (MCJIT) or to relocatable objects.

`compile_module` compiles one module in memory (tests, assembly listings).
`emit_objects` + `load_objects` split it in two so that an on-disk cache can
store the object bytes and skip LLVM's optimizer and code generator on the
next run; a program is several objects (one per kernel) linked on loading.
"""
from __future__ import annotations

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


def emit_objects(sources: list, target: Target) -> list:
    """Optimize each of `sources` (modules or IR texts, compiled apart) into relocatable object code for `target`."""
    tm = target.create_target_machine()
    return [tm.emit_object(_optimized_module(source, tm)) for source in sources]


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
