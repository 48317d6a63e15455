"""Code-generation targets: which CPU we compile for and how wide its vectors are.

A `Target` is plain data (hashable, usable as a cache key).  The GEMM generator
reads `lanes()` and `vector_registers` from it to size its micro-kernel, so the
same generator produces AVX-512 code for the host and AVX2 code for
`avx2_target()`.
"""
from __future__ import annotations

from dataclasses import dataclass

import llvmlite.binding as llvm

from graphc.lower.irutil import lanes_for

# Features of a Haswell-class CPU (the AVX2 + FMA baseline).  LLVM compiles for
# a narrower CPU than the host and the resulting code runs on the host.
_AVX2_FEATURES = "+avx,+avx2,+fma,+f16c,+bmi,+bmi2,+lzcnt,+movbe,+popcnt,+sse4.2"


def _initialize_llvm() -> None:
    # Idempotent; `llvm.initialize()` is gone in llvmlite 0.50 (LLVM 20).
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()


@dataclass(frozen=True)
class Target:
    triple: str
    cpu: str
    features: str
    vector_bytes: int
    vector_registers: int

    def lanes(self, dtype: str) -> int:
        """Elements of `dtype` ('float32' or 'float64') per vector register."""
        if dtype not in ("float32", "float64"):
            raise ValueError(f"unsupported dtype {dtype!r}")
        return lanes_for(self, dtype)

    def has_feature(self, name: str) -> bool:
        """Whether the target's CPU has feature ``name`` (LLVM's spelling: 'avx512bf16', 'fma')."""
        return f"+{name}" in self.features.split(",")

    def create_target_machine(self) -> llvm.TargetMachine:
        """An O3 target machine whose code can be loaded by MCJIT."""
        _initialize_llvm()
        return llvm.Target.from_triple(self.triple).create_target_machine(
            cpu=self.cpu,
            features=self.features,
            opt=3,
            reloc="default",
            codemodel="jitdefault",
        )


def host_target() -> Target:
    """The CPU we are running on, with all of its features."""
    _initialize_llvm()
    features = llvm.get_host_cpu_features()
    has_avx512 = features.get("avx512f", False)
    if has_avx512:
        vector_bytes = 64
    elif features.get("avx2", False):
        vector_bytes = 32
    else:
        vector_bytes = 16
    return Target(
        triple=llvm.get_process_triple(),
        cpu=llvm.get_host_cpu_name(),
        features=features.flatten(),
        vector_bytes=vector_bytes,
        vector_registers=32 if has_avx512 else 16,
    )


def avx2_target() -> Target:
    """A Haswell (AVX2 + FMA, 16 ymm registers) target for the host's OS."""
    _initialize_llvm()
    return Target(
        triple=llvm.get_process_triple(),
        cpu="haswell",
        features=_AVX2_FEATURES,
        vector_bytes=32,
        vector_registers=16,
    )
