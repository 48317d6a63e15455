"""``gc.function``: the pipeline in one place — check the graph, pick a backend, check every call's inputs.

    graph (inputs, outputs, updates) -> backend.compile -> Function(*arrays) -> arrays

Backends register themselves by name in ``BACKENDS``; a backend's ``compile(graph,
**options)`` returns a callable ``run(feeds, dims) -> (outputs, new_variable_values)``.
"""
import numpy as np

from . import reference
from .graph import Graph, Node, dtypes
from .graph.shapes import bind_shape, format_shape


def _compile_reference(graph: Graph, **options):
    if options:
        raise TypeError(f"the reference backend takes no options, got {sorted(options)}")
    return lambda feeds, dims: reference.run(graph, feeds, dims)


BACKENDS = {"reference": _compile_reference}


def function(inputs, outputs, updates=None, backend="reference", **options):
    """A callable computing ``outputs`` from arrays fed for ``inputs`` and then applying ``updates``.

    ``outputs`` may be one tensor (the call returns one array) or a list (a list).
    ``updates`` is a list of ``(variable, new_value)`` pairs: every new value is
    computed from the old variables, then all are assigned together.
    """
    single = isinstance(outputs, Node)
    graph = Graph(list(inputs), [outputs] if single else list(outputs or []), list(updates or []))
    try:
        compile_backend = BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown backend {backend!r}; available: {', '.join(sorted(BACKENDS))}") from None
    return Function(graph, compile_backend(graph, **options), single)


class Function:
    """A compiled graph: call it with one numpy array (or array-like) per input."""

    def __init__(self, graph: Graph, run, single: bool):
        self.graph = graph
        self._run = run
        self._single = single

    def __call__(self, *arrays):
        feeds, dims = self.check_inputs(arrays)
        outputs, new_values = self._run(feeds, dims)
        for (variable, _), value in zip(self.graph.updates, new_values):
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
            feeds.append(np.ascontiguousarray(array, dtype=placeholder.dtype))
        return feeds, dims

    def dump(self) -> str:
        from .graph import dump
        return dump(self.graph.outputs, self.graph.updates)
