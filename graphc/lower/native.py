"""The ``llvm`` backend: plan the graph, emit one LLVM module, reuse cached object code, run it natively."""
import functools
import hashlib
import os
import re
from pathlib import Path

import sympy

from runtime import cache
from runtime.native import Executable, SlotLayout, available_cores

from .gather import IndexStatus
from .jit import bundle, compile_module, emit_objects, load_objects, unbundle
from .program import SCHEDULE_REWRITES, emit_program, plan
from .target import host_target


# A module this long (a GEMM, a row kernel) takes LLVM longer than a cache entry's write and fsyncs: it gets an
# entry of its own, which other programs load. A shorter one (an elementwise kernel, a copy) is only in its
# program's entry: the 76 kernels of the seed step at optimize=0 would otherwise cost 77 writes.
SHARED_MODULE_CHARS = 16384


class NativeProgram:
    """A graph compiled to native code; ``run(feeds, dims)`` follows the backend contract of gc.function."""

    def __init__(self, graph, target=None, threads=None, schedule_passes=SCHEDULE_REWRITES):
        self.target = target or host_target()
        self.threads = int(threads or available_cores())
        self.schedule = plan(graph, schedule_passes)
        self._ir_text = None
        # Keyed on the schedule and the code generator's source, so a cached program skips emitting IR too.
        key = self._cache_key(self.schedule.fingerprint())
        objects = unbundle(cache.load(key))
        self.from_cache = objects is not None
        if objects is None:
            objects = self._compile_kernels()
            cache.store(key, bundle(objects))
        self._compiled = load_objects(objects, self.target)
        addresses = {name: self._compiled.address(name) for name in ("program", "worker", "start_step", "run_step")}
        self.executable = Executable(addresses, self._layout(), self.threads, keepalive=self._compiled)
        self.index_status = IndexStatus(self.schedule, self._compiled)  # bad indices met by a call or a run_steps

    def _cache_key(self, text: str) -> str:
        """The cache key of what ``text`` (a schedule's fingerprint or a module's IR) compiles to on this target
        with this code generator and pass pipeline (lower/*.py)."""
        return cache.cache_key(text, _generator_version(), self.target.triple, self.target.cpu, self.target.features)

    def _compile_kernels(self) -> list:
        """The object code of each kernel's module and of the entry's: from the cache where a program compiled
        the same module before, else compiled now (in parallel on the idle cores the program may use). Modules
        of at least SHARED_MODULE_CHARS are cached on their own."""
        texts = [str(module) for module in emit_program(self.schedule, self.target, separate=True)]
        keys = [self._cache_key(text) if len(text) >= SHARED_MODULE_CHARS else None for text in texts]
        objects = [None if key is None else cache.load(key) for key in keys]
        missing = [i for i, found in enumerate(objects) if found is None]
        processes = min(self.threads, _idle_cores())
        for i, object_code in zip(missing, emit_objects([texts[i] for i in missing], self.target, processes)):
            objects[i] = object_code
            if keys[i] is not None:
                cache.store(keys[i], object_code)
        return objects

    @property
    def ir_text(self) -> str:
        """The LLVM IR of the whole program, as graphc generated it (built on demand after a cache hit)."""
        if self._ir_text is None:
            (module,) = emit_program(self.schedule, self.target)
            self._ir_text = str(module)
        return self._ir_text

    def run(self, feeds, dims):
        outputs = self.executable.run(feeds, self._ordered(dims))
        self.index_status.check(dims)  # a take or scatter_add met an index out of range: IndexError
        return outputs, None  # updates were applied in place

    def bind(self, feeds, dims):
        """The slot table, dims array and outputs of a call on ``feeds`` at ``dims`` (symbol -> int), without
        running it: see Executable.bind."""
        return self.executable.bind(feeds, self._ordered(dims))

    def kernel_address(self, name: str) -> int:
        """Address of kernel ``name``'s native function ``void name(buffer pointers..., i64 *dims, i32 tid,
        i32 nthreads)``, the buffers being its Kernel's ``arguments``; valid while this program lives."""
        return self._compiled.address(name)

    def _ordered(self, dims) -> tuple:
        return tuple(dims[symbol] for symbol in self.schedule.dims)

    def _layout(self) -> SlotLayout:
        schedule, symbols = self.schedule, self.schedule.dims
        by_kind = {}
        for buffer in schedule.used_buffers() + [b for b in schedule.buffers if b.kind == "input"]:
            by_kind.setdefault(buffer.kind, []).append(buffer)
        fixed = {b.slot: b.node.storage for b in by_kind.get("variable", [])}
        fixed.update({b.slot: b.node.attrs["value"] for b in by_kind.get("constant", [])})
        sizes = {}  # slot -> byte-size expressions of the buffers sharing it
        for buffer in by_kind.get("temp", []):
            sizes.setdefault(buffer.slot, []).append(buffer.nbytes)
        for kernel in schedule.kernels:
            if kernel.scratch is not None:
                sizes.setdefault(kernel.scratch.slot, []).append(kernel.scratch_bytes(self.target, self.threads))
        temps = [(slot, _largest(symbols, exprs)) for slot, exprs in sizes.items()]
        outputs = [(b.slot, _as_function(symbols, sympy.Tuple(*b.node.shape)), b.node.dtype)
                   for b in schedule.outputs]
        inputs = {b.node.id: b.slot for b in by_kind.get("input", [])}
        return SlotLayout(count=len(schedule.buffers), inputs=tuple(inputs[p.id] for p in schedule.graph.inputs),
                          outputs=tuple(outputs), fixed=fixed, temps=tuple(temps))

    # ---- introspection -----------------------------------------------------------------------
    def llvm_ir(self) -> dict:
        """Kernel name -> the LLVM IR graphc generated for it (before LLVM's optimizer)."""
        return _split_functions(self.ir_text, r"^define .*@\"?(?P<name>[\w.]+)\"?\(", r"^}")

    def asm(self) -> dict:
        """Kernel name -> its assembly for the target (compiles the module again, without the cache)."""
        assembly = compile_module(self.ir_text, self.target).asm
        return _split_functions(assembly, r"^(?P<name>[A-Za-z_][\w.]*):\s*(#.*)?$", r"^\s*\.size\s")


def _idle_cores() -> int:
    """How many processes may compile at once: the cores this process may run on, less the load of others
    (the 1-minute load average, this process counted as one): on a busy machine forked compilers would only
    take turns with each other and the machine's other work, and finish later than one."""
    return max(1, min(available_cores(), int(available_cores() + 1 - os.getloadavg()[0])))


@functools.cache
def _generator_version() -> str:
    """A digest of the code that turns a schedule into IR: a changed emitter never loads stale objects."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent.parent
    for path in sorted([*package.joinpath("lower").glob("*.py"), package / "ops" / "expr.py"]):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _as_function(symbols, expr):
    """A fast Python function of the dims tuple (sympy.lambdify over plain ints; a constant needs no lambdify)."""
    return _lambdified(tuple(symbols), sympy.sympify(expr))


@functools.lru_cache(maxsize=1024)
def _lambdified(symbols, expr):
    """_as_function's work, once per expression: the buffers of a program (and of a model's train and evaluate
    programs) share a few sizes, and each lambdify compiles Python source."""
    if not expr.free_symbols:
        value = tuple(int(v) for v in expr) if isinstance(expr, sympy.Tuple) else int(expr)
        return lambda dims: value
    function = sympy.lambdify(symbols, expr, modules="math")
    if isinstance(expr, sympy.Tuple):
        return lambda dims: tuple(int(v) for v in function(*dims))
    return lambda dims: int(function(*dims))


def _largest(symbols, exprs):
    """The largest of ``exprs`` at the dims tuple, each evaluated apart: cheaper to build than sympy.Max, which
    compares symbolic sizes pairwise (milliseconds per slot), and the same number."""
    functions = [_as_function(symbols, expr) for expr in exprs]
    if len(functions) == 1:
        return functions[0]
    return lambda dims: max(function(dims) for function in functions)


def _split_functions(text, start_pattern, end_pattern) -> dict:
    start, end = re.compile(start_pattern), re.compile(end_pattern)
    functions, name, lines = {}, None, []
    for line in text.splitlines():
        match = start.match(line)
        if name is None and match:
            name, lines = match.group("name"), []
        if name is not None:
            lines.append(line)
            if end.match(line):
                functions[name] = "\n".join(lines)
                name = None
    return functions




