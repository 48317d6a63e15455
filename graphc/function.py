"""``gc.function``: the pipeline in one place — check the graph, pick a backend, check every call's inputs.

    graph (inputs, outputs, updates) -> backend.compile -> Function(*arrays) -> arrays

Backends register themselves by name in ``BACKENDS``; a backend's ``compile(graph,
schedule_passes, **options)`` returns a program whose ``run(feeds, dims)`` gives ``(outputs,
new_variable_values)``, ``new_variable_values`` being None when the program
assigned the updates itself.
"""
import numpy as np

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


class Function:
    """A compiled graph: call it with one numpy array (or array-like) per input."""

    def __init__(self, graph: Graph, optimized_graph: Graph, program, single: bool):
        self.graph = graph  # as the user built it (forward, gc.grad's backward, updates)
        self.optimized_graph = optimized_graph  # after the passes: what the backend compiled
        self.program = program
        self._single = single

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
            if not dtypes.can_feed(array.dtype, placeholder.dtype):
                raise ValueError(f"input {placeholder.name}: cannot safely feed {array.dtype} data to a "
                                 f"{placeholder.dtype} placeholder")
            problem = bind_shape(placeholder.shape, array.shape, dims)
            if problem:
                raise ValueError(f"input {placeholder.name} {format_shape(placeholder.shape)}: {problem}")
            feed = np.asarray(array, dtype=placeholder.dtype, order="C")  # ascontiguousarray turns 0-d into 1-d
            feeds.append(feed if feed.flags.aligned else feed.copy())
        return feeds, dims

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
