"""``gc.function``: the pipeline in one place — check the graph, pick a backend, check every call's inputs.

    graph (inputs, outputs, updates) -> backend.compile -> Function(*arrays) -> arrays

Backends register themselves by name in ``BACKENDS``; a backend's ``compile(graph,
schedule_passes, **options)`` returns a program whose ``run(feeds, dims)`` gives ``(outputs,
new_variable_values)``, ``new_variable_values`` being None when the program
assigned the updates itself.
"""
import numbers
import reprlib

import numpy as np
import sympy

from . import reference
from .graph import Graph, GraphError, Node, dtypes
from .graph.node import user_location
from .graph import shapes
from .graph.graph import substitute_dims
from .graph.shapes import bind_shape, find_dim, format_shape, frozen_dims, is_anonymous, unification_sites
from .passes import optimize_graph, selected_schedule_passes
from .passes.autocast import autocast, check_precision


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
    stored = next((node for node in graph.nodes if node.dtype == "bfloat16"), None)
    if stored is not None:  # the products of precision="mixed_bfloat16" read float32 and round as they pack
        raise TypeError(f"the llvm backend has no bfloat16 tensors yet: {stored.op.display_name(stored)} "
                        f"{stored.name} (at {stored.location}); use backend='reference', or "
                        f"precision='mixed_bfloat16' for bfloat16 products")
    return NativeProgram(graph, target=target, threads=threads, schedule_passes=schedule_passes)


BACKENDS = {"reference": ReferenceProgram, "llvm": _compile_native}


def function(inputs, outputs, updates=None, backend="llvm", optimize=2, precision="float32", **options):
    """A callable computing ``outputs`` from arrays fed for ``inputs`` and then applying ``updates``.

    ``inputs`` is one placeholder or a list of them. ``outputs`` may be one tensor (the call returns
    one array), a list (a list) or a dict (a dict with the same keys, like TF's ``sess.run``); a
    Python number among them is returned as an array. ``updates`` is a dict ``{variable: new_value}``
    or a list of ``(variable, new_value)`` pairs: every new value is computed from the old variables,
    then all are assigned together.
    ``optimize``: 0 (no passes), 1 (clean-up), 2 (clean-up and fusion), or a list
    of pass names to leave out (see ``graphc.passes.PIPELINE``).
    ``precision``: "float32" (the default), or "mixed_bfloat16": products read their operands rounded to
    bfloat16 and sum in float32; variables, softmax, losses and reductions stay float32 (graphc.passes.autocast).
    ``options`` go to the backend (``llvm``: ``threads``, ``target``).
    """
    check_precision(precision)
    output_nodes, pack = _outputs(outputs)
    graph = _with_random_steps(Graph(_inputs(inputs), output_nodes, _updates(updates)))
    try:
        compile_backend = BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown backend {backend!r}; available: {', '.join(sorted(BACKENDS))}") from None
    unified = unified_dims(graph)
    with frozen_dims():  # the dims are settled: passes and backends unify nothing new
        settled = substitute_dims(graph, unified)  # one symbol (or size) per class of unified dims
        optimized = autocast(optimize_graph(settled, optimize), precision)
        program = compile_backend(optimized, schedule_passes=selected_schedule_passes(optimize), **options)
    return Function(graph, optimized, program, pack, unified)


def _with_random_steps(graph: Graph) -> Graph:
    """``graph`` with ``step <- step + 1`` among its updates for each random op's step counter that the user's
    updates leave alone: every call draws fresh numbers (graphc.ops.random)."""
    from .ops.random import step_updates
    steps = step_updates(graph.nodes, graph.updates)
    return Graph(graph.inputs, graph.outputs, graph.updates + steps) if steps else graph


def unified_dims(graph: Graph) -> dict:
    """{anonymous dim: its representative} for the graph's anonymous dims that met another dim (and so
    were unified with it): the backend sees only representatives, and every call checks that inputs
    bound to one class agree."""
    if not shapes.any_unified():
        return {}
    symbols = {s for node in graph.nodes for d in node.shape if not isinstance(d, int)
               for s in d.free_symbols if is_anonymous(s)}
    return {s: find_dim(s) for s in sorted(symbols, key=lambda s: s.name) if find_dim(s) is not s}


def _inputs(inputs) -> list:
    """The placeholders to feed, in order: one placeholder or a list (TF and Theano users write both)."""
    if isinstance(inputs, Node):
        inputs = [inputs]
    if not isinstance(inputs, (list, tuple)):
        raise _misuse(inputs, "inputs must be a placeholder or a list of placeholders")
    for i, node in enumerate(inputs):
        if not isinstance(node, Node) or node.op.name != "placeholder":
            raise _misuse(node, f"inputs[{i}] must be a placeholder (gc.placeholder)", GraphError)
        if any(node is earlier for earlier in inputs[:i]):
            raise _misuse(node, f"inputs[{i}] repeats an input: list each placeholder once", GraphError)
    return list(inputs)


def _outputs(outputs) -> tuple:
    """The output tensors, and how a call returns their arrays: alone, as a list, or as a dict with the
    caller's keys (like ``sess.run``)."""
    if outputs is None:
        return [], list
    if isinstance(outputs, dict):
        keys = list(outputs)
        return [_output(value, f"outputs[{key!r}]") for key, value in outputs.items()], \
            lambda arrays: dict(zip(keys, arrays))
    if isinstance(outputs, (list, tuple)):
        return [_output(value, f"outputs[{i}]") for i, value in enumerate(outputs)], list
    return [_output(outputs, "outputs")], lambda arrays: arrays[0]


def _output(value, where: str) -> Node:
    """A tensor, or a number (or array) as a constant: ``gc.function([x], [loss, 0.0])`` returns 0.0 too."""
    if isinstance(value, Node):
        return value
    if isinstance(value, (numbers.Number, np.ndarray)):
        from .ops.source import constant
        return constant(value)
    raise _misuse(value, f"{where} must be a tensor or a number")


def _updates(updates) -> list:
    """``updates`` as (variable, new value) pairs, from a dict {variable: new_value} or a list of pairs."""
    if updates is None:
        return []
    pairs = list(updates.items()) if isinstance(updates, dict) else updates
    if not isinstance(pairs, (list, tuple)):
        raise _misuse(updates, "updates must be a dict {variable: new_value} or a list of (variable, new_value) pairs")
    for i, pair in enumerate(pairs):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            hint = " (for one update write updates=[(variable, new_value)])" if isinstance(pair, Node) else ""
            raise _misuse(pair, f"updates[{i}] must be a (variable, new_value) pair{hint}")
        variable, new_value = pair
        if not isinstance(variable, Node) or variable.op.name != "variable":
            raise _misuse(variable, f"updates[{i}] must assign a variable (gc.variable)", GraphError)
        if not isinstance(new_value, Node):
            raise _misuse(new_value, f"the new value of variable {variable.name} must be a tensor "
                                     f"({variable.dtype}{format_shape(variable.shape)})")
    return [tuple(pair) for pair in pairs]


def _misuse(value, expected: str, tensor_error=TypeError) -> Exception:
    """An argument of gc.function that is not what ``expected`` says, named with the user's line: a TypeError,
    or ``tensor_error`` for a tensor of the wrong kind (a GraphError, as Graph raises for those)."""
    if isinstance(value, Node):
        return tensor_error(f"gc.function at {user_location()}: {expected}, got {value!r}")
    return TypeError(f"gc.function at {user_location()}: {expected}, got {type(value).__name__} {reprlib.repr(value)}")


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

    def __init__(self, graph: Graph, optimized_graph: Graph, program, pack, unified=None):
        self.graph = graph  # as the user built it (forward, gc.grad's backward, updates)
        self.optimized_graph = optimized_graph  # unified dims settled, after the passes: what the backend compiled
        # Anonymous dims of the inputs unified with another dim: {symbol: (representative, where they met)}.
        self._unified = {s: (rep, unification_sites(s)) for s, rep in (unified or {}).items()}
        self.program = program
        self._pack = pack  # the output arrays as the caller gave the outputs: one, a list or a dict
        self._slice_checks = _slice_checks(optimized_graph)
        self._checked_dims = set()

    def __call__(self, *arrays):
        feeds, dims = self.check_inputs(arrays)
        outputs, new_values = self.program.run(feeds, dims)
        if new_values is not None:
            for (variable, _), value in zip(self.optimized_graph.updates, new_values):
                variable.storage[...] = value
        return self._pack(outputs)

    def check_inputs(self, arrays):
        """Arrays converted to the placeholders' dtypes, and the symbolic dims their shapes bind.

        Raises ValueError naming the input for a wrong count, shape or dtype, or a value its dtype cannot hold.
        """
        inputs = self.graph.inputs
        if len(arrays) != len(inputs):
            names = ", ".join(i.name for i in inputs)
            raise ValueError(f"expected {len(inputs)} input(s) ({names}), got {len(arrays)}")
        feeds, dims, classes = [], {}, {}
        for placeholder, array in zip(inputs, arrays):
            array = np.asarray(array)
            problem = dtypes.feed_problem(array, placeholder.dtype)
            if problem:
                raise ValueError(f"input {placeholder.name}: {problem}")
            if self._unified and len(array.shape) == len(placeholder.shape):
                self._check_unified(placeholder, array.shape, classes)
            problem = bind_shape(placeholder.shape, array.shape, dims)
            if problem:
                raise ValueError(f"input {placeholder.name} {format_shape(placeholder.shape)}: {problem}")
            feed = np.asarray(array, dtype=placeholder.dtype, order="C")  # ascontiguousarray turns 0-d into 1-d
            feeds.append(feed if feed.flags.aligned else feed.copy())
        for representative, (value, *_) in classes.items():
            dims.setdefault(representative, value)  # the symbol the compiled graph uses for the class
        if self._slice_checks:
            self._check_slices(dims)
        return feeds, dims

    def _check_unified(self, placeholder, shape, classes):
        """Unified dims must agree: each axis of ``placeholder`` declared with an anonymous dim that met
        another dim has the size of that dim's first axis among the inputs (``classes``: representative ->
        (size, input, axis, declared dim), filled in as inputs are checked), or the size it met."""
        for axis, (declared, size) in enumerate(zip(placeholder.shape, shape)):
            if not isinstance(declared, sympy.Symbol):
                continue
            representative, sites = self._unified.get(declared, (declared, []))

            def where():  # the error's start: built only when there is an error (this runs every call)
                return f"input {placeholder.name} {format_shape(placeholder.shape)}: axis {axis} has size {size}"
            if isinstance(representative, int):
                if size != representative:
                    raise ValueError(f"{where()}, but it must be {representative}: its dim {declared} (None) met "
                                     f"{representative} at {', '.join(sites)}")
                continue
            first = classes.setdefault(representative, (size, placeholder.name, axis, declared))
            first_size, first_input, first_axis, first_declared = first
            if size != first_size and (declared in self._unified or first_declared in self._unified):
                sites = sites + [s for s in self._unified.get(first_declared, (None, []))[1] if s not in sites]
                raise ValueError(f"{where()}, but input {first_input} has size {first_size} on axis {first_axis}; "
                                 f"they must agree: dims {first_declared} and {declared} met at {', '.join(sites)}")

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

    def _repr_svg_(self):
        """Jupyter shows a compiled function as its graph (the autodiff stage), when Graphviz is installed."""
        from .viz.dot import svg
        return svg(self)
