"""``gc.function``: the pipeline in one place — check the graph, pick a backend, check every call's inputs.

    graph (inputs, outputs, updates) -> backend.compile -> Function(*arrays) -> arrays

Backends register themselves by name in ``BACKENDS``; a backend's ``compile(graph,
schedule_passes, **options)`` returns a program whose ``run(feeds, dims)`` gives ``(outputs,
new_variable_values)``, ``new_variable_values`` being None when the program
assigned the updates itself.
"""
import numbers
import reprlib
from dataclasses import dataclass

import numpy as np
import sympy

from runtime.native import ProgramError

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


def function(inputs, outputs, updates=None, backend="llvm", optimize=2, precision="float32", lazy=False,
             **options):
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
    ``lazy``: False compiles the machine code now; True on first use (a call, ``run_steps`` or ``.program``),
    so that a function only ever run through ``run_steps`` compiles just the variant that reads its batches in
    place (see ``run_steps``). The graph is checked and optimized now either way.
    """
    check_precision(precision)
    output_nodes, pack = _outputs(outputs)
    graph = _with_random_steps(Graph(_inputs(inputs), output_nodes, _updates(updates)))
    function = _compiled(graph, pack, dict(backend=backend, optimize=optimize, precision=precision, **options))
    if not lazy:
        function.program  # compiles it
    return function


def _compiled(graph: Graph, pack, settings: dict) -> "Function":
    """``graph`` optimized as ``settings`` (gc.function's backend, optimize, precision and options) say, its
    program compiled by the backend on first use of ``Function.program``."""
    options = dict(settings)
    backend, optimize, precision = (options.pop(key) for key in ("backend", "optimize", "precision"))
    try:
        compile_backend = BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown backend {backend!r}; available: {', '.join(sorted(BACKENDS))}") from None
    unified = unified_dims(graph)
    with frozen_dims():  # the dims are settled: passes and backends unify nothing new
        settled = substitute_dims(graph, unified)  # one symbol (or size) per class of unified dims
        optimized = autocast(optimize_graph(settled, optimize), precision)

    def compile_program():
        with frozen_dims():
            return compile_backend(optimized, schedule_passes=selected_schedule_passes(optimize), **options)
    return Function(graph, optimized, compile_program, pack, unified, settings)


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

    def __init__(self, graph: Graph, optimized_graph: Graph, compile_program, pack, unified, settings: dict):
        self.graph = graph  # as the user built it (forward, gc.grad's backward, updates)
        self._settings = settings  # how it was compiled (see _compiled): run_steps compiles variants alike
        self._gathering = {}  # run_steps' variants of the step that read rows through indices, by inputs
        self.optimized_graph = optimized_graph  # unified dims settled, after the passes: what the backend compiled
        # Anonymous dims of the inputs unified with another dim: {symbol: (representative, where they met)}.
        self._unified = {s: (rep, unification_sites(s)) for s, rep in (unified or {}).items()}
        self._compile_program, self._program = compile_program, None
        self._pack = pack  # the output arrays as the caller gave the outputs: one, a list or a dict
        self._slice_checks = _slice_checks(optimized_graph)
        self._checked_dims = set()

    @property
    def program(self):
        """The backend's program (compiled on first use when ``gc.function(..., lazy=True)``)."""
        if self._program is None:
            self._program = self._compile_program()
        return self._program

    def __call__(self, *arrays):
        return self._pack(self._run(arrays))

    def _run(self, arrays) -> list:
        """One call: the output arrays in the graph's order, the updates applied."""
        feeds, dims = self.check_inputs(arrays)
        outputs, new_values = self.program.run(feeds, dims)
        if new_values is not None:
            for (variable, _), value in zip(self.optimized_graph.updates, new_values):
                variable.storage[...] = value
        return outputs

    def check_inputs(self, arrays):
        """Arrays converted to the placeholders' dtypes, and the symbolic dims their shapes bind.

        Raises ValueError naming the input for a wrong count, shape or dtype, or a value its dtype cannot hold.
        """
        self._check_count(arrays)
        feeds, dims, classes = [], {}, {}
        for placeholder, array in zip(self.graph.inputs, arrays):
            feed = self._converted(placeholder, array)
            self._bind(placeholder, feed.shape, dims, classes)
            feeds.append(feed)
        return feeds, self._settled(dims, classes)

    def _check_count(self, arrays):
        inputs = self.graph.inputs
        if len(arrays) != len(inputs):
            names = ", ".join(i.name for i in inputs)
            raise ValueError(f"expected {len(inputs)} input(s) ({names}), got {len(arrays)}")

    @staticmethod
    def _converted(placeholder, array) -> np.ndarray:
        """``array`` in the placeholder's dtype, C-contiguous and aligned; ValueError if a value would change."""
        array = np.asarray(array)
        problem = dtypes.feed_problem(array, placeholder.dtype)
        if problem:
            raise ValueError(f"input {placeholder.name}: {problem}")
        feed = np.asarray(array, dtype=placeholder.dtype, order="C")  # ascontiguousarray turns 0-d into 1-d
        return feed if feed.flags.aligned else feed.copy()

    def _bind(self, placeholder, shape, dims, classes):
        """Bind the symbolic dims of ``placeholder``'s shape to ``shape`` in ``dims``; ValueError if it does not fit."""
        if self._unified and len(shape) == len(placeholder.shape):
            self._check_unified(placeholder, shape, classes)
        problem = bind_shape(placeholder.shape, shape, dims)
        if problem:
            raise ValueError(f"input {placeholder.name} {format_shape(placeholder.shape)}: {problem}")

    def _settled(self, dims, classes) -> dict:
        """``dims`` with the symbol the compiled graph uses for each class of unified dims, slices checked."""
        for representative, (value, *_) in classes.items():
            dims.setdefault(representative, value)
        if self._slice_checks:
            self._check_slices(dims)
        return dims

    def run_steps(self, index_batches, *arrays, batched=None, stop_on_non_finite=None, progress=None):
        """Call the function once per batch of row indices, in one native call: the same numbers, bit for bit,
        as ``[self(*[a[idx] for a in arrays]) for idx in index_batches]`` with the batched inputs.

        ``index_batches``: a 2-D integer array (steps, rows), or a sequence of 1-D integer arrays (of any
        lengths: a shorter last batch; any order, repeats allowed; negative indices count from the end, as
        numpy's). ``arrays``: one per input, in order. A batched input is given whole (every sample along
        axis 0) and each step reads the rows its batch names, ``array[idx]``; the other inputs are passed
        whole to every step. ``batched``: the batched inputs, by placeholder name or position (default:
        every input). ``stop_on_non_finite``: an output (its position, or its key for dict outputs), a
        float32 scalar such as a loss; the run ends after the first step where it is NaN or infinite.
        ``progress(steps_done, outputs_so_far)``, if given, is called before the first native call and after
        each, and returns how many steps the next native call runs (0 ends the run there): a training loop
        shows progress and stops between them. Batches of another size (a shorter last one) always start a
        new native call.

        Returns the outputs as a call does (one array, a list or a dict), each of the steps run stacked:
        (steps, *shape). An output whose shape depends on the batch size needs batches of one size.
        The updates apply after each step, as separate calls would. Everything is checked before any step
        runs (ValueError naming the input and shapes; IndexError for an index out of range). A step that
        fails (a bad index inside the graph: IndexError; ProgramError) ends the run: steps after it never
        run, and the variables hold the updates of every step up to and including the failing one, which is
        what calling the steps one by one leaves when that call raises; the error's ``step`` attribute (and
        a note) says which step (0-based). The native backend runs the steps natively: a batched input that
        only products read as their left operand (x in x @ W, and x^T @ g in its gradient) is read in place,
        each step's GEMMs reading the rows of the whole array through the step's indices (a variant of the step
        compiled on first use, where the input is ``gc.take(x, indices)``: graphc/passes/fusion.py's
        fold_take_into_matmul); the rows of other batched inputs are gathered into the step's input buffers.
        Another backend calls the step once per batch.
        """
        self._check_count(arrays)
        inputs = self.graph.inputs
        batched = self._batched_positions(batched)
        feeds = [self._converted(placeholder, array) for placeholder, array in zip(inputs, arrays)]
        rows = _sample_count(inputs, feeds, batched)
        indices, sizes = _flat_indices(index_batches, rows, [inputs[i].name for i in batched])
        dims = {size: self._batch_dims(feeds, batched, size) for size in dict.fromkeys(sizes)}
        stacks = self._stacked_outputs(dims, len(sizes))
        stop = self._stop_output(stop_on_non_finite, stacks)
        steps = self._steps(feeds, batched, indices, dims)
        done = self._run_chunks(steps, indices, sizes, stacks, stop, progress or (lambda done, outputs: len(sizes)))
        return self._pack([stack[:done] for stack in stacks])

    def _steps(self, feeds, batched, indices, dims) -> "_Steps":
        """How the steps run: this function's program, or the variant that reads in place the batched inputs
        only products read as their left operand (``_gathering_variant``)."""
        variant, read_in_place = self._gathering_variant(batched)
        if variant is None:
            return _Steps(self, feeds, batched, None, dims)
        pointed = read_in_place[0]  # the steps' indices: the input before the first one read in place
        copied = [k + (k >= pointed) for k in batched if k not in read_in_place]
        variant_feeds = feeds[:pointed] + [indices] + feeds[pointed:]
        return _Steps(variant, variant_feeds, copied, pointed,
                      {size: variant._batch_dims(variant_feeds, copied + [pointed], size) for size in dims})

    def _gathering_variant(self, batched) -> tuple:
        """(the step compiled with each batched input x that only 2-D products read as their A operand replaced
        by ``take(x_whole, indices)``, ``indices`` a new input before the first of them, and the positions of
        those inputs), or (None, []) where there are none or the fold is off; compiled once per set of inputs."""
        from .passes import selected_passes
        from .passes.fusion import read_only_as_gemm_a
        folds = "fold_take_into_matmul" in dict(selected_passes(self._settings["optimize"]))
        if BACKENDS[self._settings["backend"]] is not _compile_native or not folds:  # no native steps to run
            return None, []
        as_a = read_only_as_gemm_a(self.optimized_graph)
        positions = [k for k in batched if self.optimized_graph.inputs[k].id in as_a]
        batch = [self.graph.inputs[k].shape[0] for k in positions[:1]]  # one indices input: of one batch dim
        positions = tuple(k for k in positions if [self.graph.inputs[k].shape[0]] == batch)
        if positions and positions not in self._gathering:
            self._gathering[positions] = _compiled(_gathering_graph(self.graph, positions), self._pack, self._settings)
        return self._gathering.get(positions), positions

    def _run_chunks(self, steps, indices, sizes, stacks, stop, progress) -> int:
        """run_steps' native calls, as many steps each as ``progress`` asks; returns how many steps ran."""
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        run_end = [end for start, end, _ in _equal_size_runs(sizes) for _ in range(start, end)]  # per step
        done = 0
        try:
            count = progress(0, self._pack([stack[:0] for stack in stacks]))
            while done < len(sizes) and count > 0:
                end = min(done + count, run_end[done])
                rows = sizes[done]
                run = indices[offsets[done]:offsets[end]].reshape(end - done, rows)
                ran = self._run_equal(steps, run, [s[done:end] for s in stacks], stop, done)
                done += ran
                count = progress(done, self._pack([stack[:done] for stack in stacks]))
                if done < end:  # the watched output was not finite
                    break
        except BaseException as error:
            step = getattr(error, "step", None)
            error.add_note(f"run_steps: step {step} (0-based) failed after steps 0 to {step - 1} had completed; no "
                           f"later step ran: the variables are as a call per batch leaves them when step {step}'s "
                           f"call raises" if step is not None else
                           f"run_steps: stopped after steps 0 to {done - 1} had completed")
            raise
        return done

    def _batched_positions(self, batched) -> list:
        """The positions of the inputs named in ``batched`` (names or positions; None: all), in order."""
        inputs = self.graph.inputs
        if batched is None:
            return list(range(len(inputs)))
        names = [i.name for i in inputs]
        positions = set()
        for entry in ([batched] if isinstance(batched, (str, int)) else batched):
            if isinstance(entry, str) and entry in names:
                positions.add(names.index(entry))
            elif isinstance(entry, (int, np.integer)) and not isinstance(entry, bool) and 0 <= entry < len(inputs):
                positions.add(int(entry))
            else:
                raise ValueError(f"run_steps: batched names {entry!r}, which is not an input; the inputs are "
                                 f"{', '.join(f'{k}: {n}' for k, n in enumerate(names))}")
        return sorted(positions)

    def _batch_dims(self, feeds, batched, size) -> dict:
        """The dims a call binds when the batched inputs hold ``size`` rows (ValueError as a call's)."""
        dims, classes = {}, {}
        for k, (placeholder, feed) in enumerate(zip(self.graph.inputs, feeds)):
            shape = (size, *feed.shape[1:]) if k in batched else feed.shape
            try:
                self._bind(placeholder, shape, dims, classes)
            except ValueError as error:
                if k in batched:
                    error.add_note(f"run_steps: input {placeholder.name} is batched: each step reads {size} of "
                                   f"the rows of its array of shape {feed.shape}")
                raise
        return self._settled(dims, classes)

    def _stacked_outputs(self, dims: dict, steps: int) -> list:
        """One array (steps, *shape) per output; ValueError if an output's shape differs between batch sizes."""
        stacks = []
        for k, node in enumerate(self.optimized_graph.outputs):
            by_size = {size: shapes.evaluate_shape(node.shape, bound) for size, bound in dims.items()}
            if len(set(by_size.values())) > 1:
                raise ValueError(f"run_steps: output {k} ({node.name}) has shape {format_shape(node.shape)}, which "
                                 f"differs between batches of different sizes ({', '.join(map(str, by_size))} rows); "
                                 f"stack such outputs by running each size of batch on its own")
            stacks.append(np.empty((steps, *next(iter(by_size.values()))), dtype=node.dtype))
        return stacks

    def _stop_output(self, which, stacks) -> int:
        """The position of the output ``stop_on_non_finite`` names (-1 for None); it must be a float32 scalar."""
        if which is None:
            return -1
        packed = self._pack(list(range(len(stacks))))  # the outputs' positions, as a call returns the outputs
        position = packed.get(which) if isinstance(packed, dict) else which
        if not isinstance(position, int) or isinstance(position, bool) or not 0 <= position < len(stacks):
            raise ValueError(f"run_steps: stop_on_non_finite={which!r} names no output (the outputs: "
                             f"{', '.join(map(repr, packed)) if isinstance(packed, dict) else len(stacks)})")
        if stacks[position].shape[1:] != () or stacks[position].dtype != np.float32:
            raise ValueError(f"run_steps: stop_on_non_finite names output {which!r} of shape "
                             f"{stacks[position].shape[1:]} and dtype {stacks[position].dtype}; it must be a "
                             f"float32 scalar (a loss)")
        return position

    def _run_equal(self, steps, indices, stacks, stop, first) -> int:
        """Steps ``first``, ... on batches of one size (``indices``: (steps, rows)), their outputs into
        ``stacks``; returns how many ran. A failing step raises with its number in ``error.step``."""
        program, feeds, dims = steps.function.program, steps.feeds, steps.dims[indices.shape[1]]
        executable = getattr(program, "executable", None)
        if executable is None:
            return self._run_one_by_one(feeds, steps.copied, indices, stacks, stop, first)
        buffers = {k: np.empty((indices.shape[1], *feeds[k].shape[1:]), feeds[k].dtype) for k in steps.copied}
        step_feeds = [indices[0] if k == steps.pointed else buffers.get(k, feed) for k, feed in enumerate(feeds)]
        ordered = tuple(dims[symbol] for symbol in program.schedule.dims)
        words = program.index_status.addresses()
        try:
            ran = executable.run_steps(step_feeds, ordered, [(buffers[k], feeds[k]) for k in steps.copied], indices,
                                       stacks, stop, words, steps.pointed)
        except ProgramError as error:
            error.step += first
            raise
        try:
            program.index_status.check(dims)  # a take or scatter_add met a bad index: IndexError
        except IndexError as error:
            error.step = first + ran - 1
            raise
        return ran

    def _run_one_by_one(self, feeds, batched, indices, stacks, stop, first) -> int:
        """What ``_run_equal`` does, for a backend without native steps: a call per batch."""
        for step, rows in enumerate(indices):
            try:
                outputs = self._run([feed[rows] if k in batched else feed for k, feed in enumerate(feeds)])
            except BaseException as error:
                error.step = first + step
                raise
            for stack, output in zip(stacks, outputs):
                stack[step] = output
            if stop >= 0 and not np.isfinite(stacks[stop][step]):
                return step + 1
        return len(indices)

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


def _sample_count(inputs, feeds, batched) -> int:
    """The number of samples (rows along axis 0) the batched inputs share; ValueError naming them otherwise."""
    rows = {}
    for k in batched:
        if feeds[k].ndim == 0:
            raise ValueError(f"run_steps: input {inputs[k].name} is batched, so it needs a sample axis (axis 0), "
                             f"but it is a scalar; leave it out of batched to pass it whole to every step")
        rows[inputs[k].name] = feeds[k].shape[0]
    if len(set(rows.values())) > 1:
        raise ValueError(f"run_steps: the batched inputs must have the same number of rows: "
                         f"{', '.join(f'{name} has {n}' for name, n in rows.items())}")
    return next(iter(rows.values()), 0)


def _flat_indices(index_batches, rows: int, names: list) -> tuple:
    """(every batch's indices in one int64 array, negative ones wrapped as numpy does; the batch sizes), checked:
    a batch of indices out of range for ``rows`` rows is an IndexError before anything runs."""
    if not names:
        raise ValueError("run_steps: no input is batched, so the index batches would select nothing")
    if isinstance(index_batches, np.ndarray) and index_batches.ndim == 2:
        batches = [index_batches.reshape(-1)]
        sizes = [index_batches.shape[1]] * index_batches.shape[0]
    else:
        batches = [np.asarray(batch) for batch in index_batches]
        sizes = [batch.size for batch in batches]
        for k, batch in enumerate(batches):
            if batch.ndim != 1:
                raise ValueError(f"run_steps: index batch {k} has shape {batch.shape}; each batch must be a 1-D "
                                 f"array of row indices")
    if not sizes or 0 in sizes:
        problem = "is empty" if not sizes else f"has an empty batch ({sizes.index(0)})"
        raise ValueError(f"run_steps: index_batches {problem}; each step needs at least one row")
    flat = np.concatenate(batches) if len(batches) > 1 else batches[0]
    if flat.dtype.kind not in "iu":
        raise ValueError(f"run_steps: row indices must be integers, got dtype {flat.dtype}")
    outside = (flat < -rows) | (flat >= rows)
    if outside.any():
        position = int(np.argmax(outside))
        batch = int(np.searchsorted(np.cumsum(sizes), position, side="right"))
        raise IndexError(f"run_steps: index batch {batch} holds {flat[position]}, out of range for the {rows} rows "
                         f"of {', '.join(names)} (valid: {-rows} to {rows - 1}); no step ran")
    flat = flat.astype(np.int64)
    return np.where(flat < 0, flat + rows, flat), sizes


@dataclass
class _Steps:
    """How run_steps runs its steps: ``function``'s program on ``feeds`` (one per input of it), each step first
    gathering its rows of the inputs at positions ``copied`` into their buffers, and pointing the input at
    position ``pointed`` (None: none) at its row of the (steps, rows) index array; ``dims``: by batch size."""

    function: Function
    feeds: list
    copied: list
    pointed: int | None
    dims: dict


def _gathering_graph(graph: Graph, positions) -> Graph:
    """``graph`` with each input at ``positions`` (x, whose axis 0 is the batch) replaced by ``take(x_whole,
    indices)``: x_whole an input of the same name with any number of rows, ``indices`` an int64 input
    (batch,) inserted before the first of them, so that the symbolic dims come in the same order as in
    ``graph`` (graph_dims) and the kernels that do not read x have the same code (the object cache shares them)."""
    from .graph.shapes import fresh_dim
    from .ops.indexing import take
    from .ops.registry import apply
    from .ops.source import placeholder_op
    from .passes.rewrite import rebuild
    inputs = list(graph.inputs)

    def placeholder(shape, dtype, name):  # gc.placeholder, with dims given as the graph's symbols
        return apply(placeholder_op, [], {"shape": shape, "dtype": dtype}, name=name)
    indices = placeholder((inputs[positions[0]].shape[0],), "int64", "run_steps_indices")
    taken = {}
    for k in positions:
        whole = placeholder((fresh_dim(), *inputs[k].shape[1:]), inputs[k].dtype, inputs[k].name)
        taken[inputs[k].id], inputs[k] = take(whole, indices), whole

    def read_taken(node, _original):
        if not any(i.id in taken for i in node.inputs):
            return None
        return node.rebuilt([taken.get(i.id, i) for i in node.inputs])
    every_input = graph.inputs + [indices] + [inputs[k] for k in positions]  # what the old and new graph read
    rebuilt = rebuild(Graph(every_input, graph.outputs, graph.updates), read_taken)
    first = positions[0]
    return Graph(inputs[:first] + [indices] + inputs[first:], rebuilt.outputs, rebuilt.updates)


def _equal_size_runs(sizes: list) -> list:
    """(first step, end step, batch size) of each run of consecutive batches of one size."""
    runs = []
    for step, size in enumerate(sizes):
        if runs and runs[-1][2] == size:
            runs[-1][1] = step + 1
        else:
            runs.append([step, step + 1, size])
    return [tuple(run) for run in runs]
