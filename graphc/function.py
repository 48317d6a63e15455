"""``gc.function``: the pipeline in one place — check the graph, pick a backend, check every call's inputs.

    graph (inputs, outputs, updates) -> backend.compile -> Function(*arrays) -> arrays

Backends register themselves by name in ``BACKENDS``; a backend's ``compile(graph,
schedule_passes, **options)`` returns a program whose ``run(feeds, dims)`` gives ``(outputs,
new_variable_values)``, ``new_variable_values`` being None when the program
assigned the updates itself.
"""
import numpy as np
import sympy

from . import reference
from .graph import Graph, Node, dtypes
from .graph.shapes import bind_shape, format_shape
from .passes import optimize_graph, selected_schedule_passes


class ReferenceProgram:
    """The numpy interpreter as a backend (it has no kernel schedule to rewrite)."""

    def __init__(self, graph: Graph, schedule_passes=(), **options):
        if options:
            raise TypeError(f"the reference backend takes no options, got {sorted(options)}")
        self.graph = graph

    def run(self, feeds, dims):
        return reference.run(self.graph, feeds, dims)


def _compile_native(graph: Graph, schedule_passes=(), target=None, threads=None):
    from .lower.native import NativeProgram
    return NativeProgram(graph, target=target, threads=threads, schedule_passes=schedule_passes)


BACKENDS = {"reference": ReferenceProgram, "llvm": _compile_native}


def function(inputs, outputs, updates=None, backend="llvm", optimize=2, **options):
    """A callable computing ``outputs`` from arrays fed for ``inputs`` and then applying ``updates``.

    ``outputs`` may be one tensor (the call returns one array) or a list (a list).
    ``updates`` is a list of ``(variable, new_value)`` pairs: every new value is
    computed from the old variables, then all are assigned together.
    ``optimize``: 0 (no passes), 1 (clean-up), 2 (clean-up and fusion), or a list
    of pass names to leave out (see ``graphc.passes.PIPELINE``).
    ``options`` go to the backend (``llvm``: ``threads``, ``target``).
    """
    single = isinstance(outputs, Node)
    graph = Graph(list(inputs), [outputs] if single else list(outputs or []), list(updates or []))
    try:
        compile_backend = BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown backend {backend!r}; available: {', '.join(sorted(BACKENDS))}") from None
    optimized = optimize_graph(graph, optimize)
    program = compile_backend(optimized, schedule_passes=selected_schedule_passes(optimize), **options)
    return Function(graph, optimized, program, single)


def _slice_checks(graph: Graph) -> list:
    """(symbols, margin(*values) that must be >= 0, description) for every slice bound that depends on
    a symbolic dimension: start >= 0, stop >= start, stop <= the axis length."""
    checks = []
    for node in graph.nodes:
        if node.op.name not in ("slice", "unslice"):
            continue
        full_shape = node.inputs[0].shape if node.op.name == "slice" else node.shape
        for axis, ((start, stop, _), length) in enumerate(zip(node.attrs["bounds"], full_shape)):
            if all(isinstance(v, int) for v in (start, stop, length)):
                continue  # checked when the graph was built
            describe = (f"{node.op.name} {node.name} [{start}:{stop}] on axis {axis} of length {length} "
                        f"(at {node.location})")
            for margin in (sympy.sympify(start), sympy.sympify(stop) - start, sympy.sympify(length) - stop):
                symbols = sorted(margin.free_symbols, key=lambda s: s.name)
                if symbols:
                    checks.append((symbols, sympy.lambdify(symbols, margin, "math"), describe))
    return checks


class Function:
    """A compiled graph: call it with one numpy array (or array-like) per input."""

    def __init__(self, graph: Graph, optimized_graph: Graph, program, single: bool):
        self.graph = graph  # as the user built it (forward, gc.grad's backward, updates)
        self.optimized_graph = optimized_graph  # after the passes: what the backend compiled
        self.program = program
        self._single = single
        self._slice_checks = _slice_checks(optimized_graph)
        self._checked_dims = set()

    def __call__(self, *arrays):
        feeds, dims = self.check_inputs(arrays)
        outputs, new_values = self.program.run(feeds, dims)
        if new_values is not None:
            for (variable, _), value in zip(self.optimized_graph.updates, new_values):
                variable.storage[...] = value
        return outputs[0] if self._single else outputs

    def check_inputs(self, arrays):
        """Arrays converted to the placeholders' dtypes, and the symbolic dims their shapes bind.

        Raises ValueError naming the input for a wrong count, shape or dtype.
        """
        inputs = self.graph.inputs
        if len(arrays) != len(inputs):
            names = ", ".join(i.name for i in inputs)
            raise ValueError(f"expected {len(inputs)} input(s) ({names}), got {len(arrays)}")
        feeds, dims = [], {}
        for placeholder, array in zip(inputs, arrays):
            array = np.asarray(array)
            problem = dtypes.feed_problem(array, placeholder.dtype)
            if problem:
                raise ValueError(f"input {placeholder.name}: {problem}")
            problem = bind_shape(placeholder.shape, array.shape, dims)
            if problem:
                raise ValueError(f"input {placeholder.name} {format_shape(placeholder.shape)}: {problem}")
            feed = np.asarray(array, dtype=placeholder.dtype, order="C")  # ascontiguousarray turns 0-d into 1-d
            feeds.append(feed if feed.flags.aligned else feed.copy())
        if self._slice_checks:
            self._check_slices(dims)
        return feeds, dims

    def _check_slices(self, dims):
        """Slices with fixed bounds on a symbolic axis (``x[:5]`` with a batch axis) need the bound dims
        to be long enough; no kernel may read past an input."""
        key = tuple(sorted((s.name, v) for s, v in dims.items()))
        if key in self._checked_dims:
            return
        for symbols, margin, describe in self._slice_checks:
            if margin(*[dims[s] for s in symbols]) < 0:
                bound = ", ".join(f"{s}={dims[s]}" for s in symbols)
                raise ValueError(f"{describe} is out of range with {bound}")
        self._checked_dims.add(key)

    def llvm_ir(self) -> dict:
        """Kernel name -> LLVM IR text (native backends only)."""
        return self._native("llvm_ir")()

    def asm(self) -> dict:
        """Kernel name -> assembly text (native backends only)."""
        return self._native("asm")()

    def _native(self, method):
        if not hasattr(self.program, method):
            raise TypeError(f"the {type(self.program).__name__} has no machine code; compile with backend='llvm'")
        return getattr(self.program, method)

    def dump(self) -> str:
        from .graph import dump
        return dump(self.graph.outputs, self.graph.updates)
