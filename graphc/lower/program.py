"""Lowering a whole graph to one native program: buffers, a kernel schedule, and the entry point.

    plan(graph)            -> Schedule: one kernel per computing node, a buffer per value
    emit_program(schedule) -> llvmlite module(s): the kernels + ``program(slots, dims, tid, nthreads, barrier)``

Buffers are numbered slots in a pointer table the runtime fills per call
(inputs, outputs, variables, constants, temporaries). ``reshape`` is free: its
node shares its input's buffer. Updates are written to temporaries and copied
onto the variables after every other kernel, so each new value is computed
from the old ones (Theano semantics); the schedule rewrites then write updates
into their variables directly where that keeps those semantics.
"""
from dataclasses import dataclass, field

import sympy
from llvmlite import ir

from ..graph import Graph
from ..graph.shapes import dims_equal, shapes_equal, size
from ..ops.elementwise import elementwise_op
from ..ops.expr import arg
from ..ops.registry import apply
from ..ops.shape import reshape_op
from runtime.native import BARRIER

from .irutil import I32, I64, ITEMSIZE, PTR
from .collective import overlap_collectives
from .gather import folded_take
from .kernels import EMITTERS, SCRATCH
from .rows import RowKernel, distinct_buffers, emit_row_kernel, fuse_row_wise

SPINS_BEFORE_SLEEP = 1 << 14  # an idle helper thread spins this long (~0.3 ms) before it sleeps
SYS_FUTEX, FUTEX_WAIT_PRIVATE, FUTEX_WAKE_PRIVATE = 202, 128, 129  # Linux x86-64


@dataclass(eq=False)
class Buffer:
    """Memory for one value. ``kind``: input, output, variable, constant, temp or scratch (GEMM packing)."""

    slot: int
    kind: str
    node: object  # the node whose shape and dtype the memory holds

    @property
    def nbytes(self):
        """An int, or a sympy expression of the dims. The shape's dims are canonical already, so their product
        needs no sympy.simplify (shapes.size's), whose first call in a process costs ~0.3 s of imports."""
        elements = sympy.Mul(*self.node.shape)
        return (int(elements) if elements.is_Integer else elements) * ITEMSIZE[self.node.dtype]


@dataclass(eq=False)
class EpilogueUpdate:
    """An elementwise update a producer applies to each output element it finishes (_fuse_updates_into_producers).
    ``sources`` says where each input of ``node`` comes from: "product", ("update", k) for the value an
    earlier update of the same GEMM computed, or a Buffer to load."""

    node: object
    out: Buffer
    inputs: list  # the buffers of node's inputs, as the unfused kernel read them
    sources: list

    @property
    def loads(self) -> list:
        return [source for source in self.sources if isinstance(source, Buffer)]


@dataclass(eq=False)
class Kernel:
    """One native function: computes ``node`` into ``out`` from ``inputs`` (plus ``scratch`` bytes per thread).
    A GEMM kernel may carry ``updates`` applied in its epilogue; ``out`` is then None if nothing else reads
    the product, which is never written to memory."""

    name: str
    node: object
    out: Buffer | None
    inputs: list
    scratch: Buffer | None = None
    updates: list = field(default_factory=list)

    @property
    def nodes(self) -> list:
        take = folded_take(self.node)  # a take a GEMM reads A through is part of its kernel
        return ([] if take is None else [take]) + [self.node] + [update.node for update in self.updates]

    def scratch_bytes(self, target, threads: int):
        """Bytes of ``scratch`` for ``threads`` threads (each its own GEMM packing space); a sympy expression
        where the packing depends on a runtime K."""
        return SCRATCH[self.node.op.name](self.node, target) * threads

    @property
    def label(self) -> str:
        """The op, and how many updates ride in its epilogue."""
        op = self.node.op.display_name(self.node)
        return f"{op}+{len(self.updates)} updates" if self.updates else op

    @property
    def outputs(self) -> list:
        return ([self.out] if self.out is not None else []) + [update.out for update in self.updates]

    @property
    def reads(self) -> list:
        """Every buffer the kernel reads: its inputs, then what its epilogue updates load."""
        return self.inputs + [b for update in self.updates for b in update.loads]

    @property
    def arguments(self) -> list:
        """The buffers passed to the native function, in order (None: a pointer nothing dereferences)."""
        extra = [b for update in self.updates for b in (update.out, *update.loads)]
        return [self.out, *self.inputs, *extra] + ([self.scratch] if self.scratch else [])


@dataclass
class Schedule:
    graph: Graph
    dims: list  # the symbolic dimensions, in the order of the runtime's dims array
    buffers: list = field(default_factory=list)
    kernels: list = field(default_factory=list)
    outputs: list = field(default_factory=list)  # one output Buffer per graph output

    def new_buffer(self, kind, node) -> Buffer:
        buffer = Buffer(len(self.buffers), kind, node)
        self.buffers.append(buffer)
        return buffer

    def used_buffers(self) -> list:
        """The buffers some kernel reads or writes (rewrites such as in-place updates orphan others)."""
        used = {}
        for kernel in self.kernels:
            for buffer in kernel.arguments:
                if buffer is not None:
                    used[id(buffer)] = buffer
        return list(used.values())

    def fingerprint(self) -> str:
        """Everything the generated code depends on, as text: kernels, their argument slots and each node's
        op, attributes, shapes and dtypes (symbolic dims by position, not by name). Numbers are written
        exactly (srepr, repr): constants that differ in their last bit are different programs."""
        positional = {symbol: sympy.Symbol(f"dim{i}") for i, symbol in enumerate(self.dims)}

        def canonical(value):
            if isinstance(value, sympy.Basic):
                return sympy.srepr(value.xreplace(positional))
            if isinstance(value, (tuple, list)):
                return "(" + ", ".join(canonical(v) for v in value) + ")"
            return repr(value)

        def signature(node):
            attrs = {k: v for k, v in node.attrs.items() if k not in ("label", "value")}
            operands = [(canonical(i.shape), i.dtype) for i in node.inputs]
            return f"{node.op.name} {canonical(sorted(attrs.items()))} {canonical(node.shape)} {node.dtype} {operands}"
        def describe(kernel):
            lines = [kernel.name + " " + " ".join("-" if b is None else str(b.slot) for b in kernel.arguments)]
            if isinstance(kernel, RowKernel):
                return lines + [f"{role} {line}" for role, member in kernel.members for line in describe(member)]
            lines += [signature(node) for node in kernel.nodes]
            return lines + [repr(["load" if isinstance(s, Buffer) else s for s in u.sources]) for u in kernel.updates]
        return "\n".join([f"dims {len(self.dims)}"] + [line for k in self.kernels for line in describe(k)])

    @property
    def dim_index(self) -> dict:
        return {symbol: i for i, symbol in enumerate(self.dims)}


def graph_dims(graph: Graph) -> list:
    """Symbolic dims in order of first appearance in the inputs' shapes: the layout of the dims array."""
    dims = []
    for placeholder in graph.inputs:
        for dim in placeholder.shape:
            if isinstance(dim, sympy.Symbol) and dim not in dims:
                dims.append(dim)
    return dims


def plan(graph: Graph, rewrites=None) -> Schedule:
    """One kernel per computing node, the copies that assign updates, then the schedule ``rewrites``
    (names from SCHEDULE_REWRITES; all by default) and memory sharing."""
    rewrites = SCHEDULE_REWRITES if rewrites is None else rewrites
    unknown = set(rewrites) - set(SCHEDULE_REWRITES)
    if unknown:
        raise ValueError(f"unknown schedule rewrite(s) {sorted(unknown)}; known: {', '.join(SCHEDULE_REWRITES)}")
    schedule = Schedule(graph, graph_dims(graph))
    buffer_of = {}
    sources = {"placeholder": "input", "variable": "variable", "constant": "constant"}
    for node in graph.nodes:
        if node.op.name in sources:
            buffer_of[node.id] = schedule.new_buffer(sources[node.op.name], node)
        elif node.op.name == "reshape":
            buffer_of[node.id] = buffer_of[node.inputs[0].id]  # same bytes, another shape
        elif node.op.name == "take" and node.attrs.get("into_matmul"):
            buffer_of[node.id] = buffer_of[node.inputs[0].id]  # its GEMMs read rows of x through the indices
        else:
            _add_kernel(schedule, node, schedule.new_buffer("temp", node), buffer_of)
    for node in graph.outputs:
        buffer = buffer_of[node.id]
        if buffer.kind != "temp":
            # Inputs, variables, constants and already-claimed buffers are copied into an output of their own,
            # before the updates run (outputs see the old values of variables).
            buffer = _add_copy(schedule, node, schedule.new_buffer("temp", node), buffer_of)
        buffer.kind, buffer.node = "output", node
        schedule.outputs.append(buffer)
    values = []
    for variable, new in graph.updates:
        buffer = buffer_of[new.id]
        if buffer.kind not in ("temp", "output"):
            buffer = _add_copy(schedule, new, schedule.new_buffer("temp", new), buffer_of)
        values.append(buffer)
    for (variable, new), buffer in zip(graph.updates, values):
        _add_copy(schedule, variable, buffer_of[variable.id], {new.id: buffer}, source=new)
    for name in SCHEDULE_REWRITES:
        if name in rewrites:
            SCHEDULE_REWRITES[name](schedule)
    _share_memory(schedule)
    return schedule


def _readers(schedule) -> dict:
    """Buffer -> indexes of the kernels reading it."""
    readers = {}
    for index, kernel in enumerate(schedule.kernels):
        for buffer in kernel.reads:
            readers.setdefault(id(buffer), []).append(index)
    return readers


def _in_place_safe(kernel, buffer) -> bool:
    """An elementwise kernel may write over its input 0 when it has the output's shape and dtype."""
    node = kernel.node
    return (node.op.name == "elementwise" and kernel.inputs and kernel.inputs[0] is buffer
            and shapes_equal(node.inputs[0].shape, node.shape)
            and node.inputs[0].dtype == node.dtype)


def _update_in_place(schedule):
    """An update computed by an elementwise kernel from its variable (W - lr * g, v * rho + ...) writes
    the variable directly, and its copy disappears, when nothing reads the old value afterwards; later
    readers of the new value read the variable."""
    readers = _readers(schedule)
    producer = {id(k.out): i for i, k in enumerate(schedule.kernels)}
    dropped = set()
    for index, assign in enumerate(schedule.kernels):
        variable = assign.out
        if variable.kind != "variable" or not assign.node.op.name == "reshape":
            continue
        (value,) = assign.inputs
        source = producer.get(id(value))
        if source is None or value.kind != "temp":
            continue
        kernel = schedule.kernels[source]
        if not _in_place_safe(kernel, variable) or any(r > source for r in readers.get(id(variable), [])):
            continue
        kernel.out = variable
        for reader in schedule.kernels[source + 1:]:
            reader.inputs = [variable if b is value else b for b in reader.inputs]
        dropped.add(index)
    schedule.kernels = [k for i, k in enumerate(schedule.kernels) if i not in dropped]


def _same_shape(a, b) -> bool:
    return shapes_equal(a.shape, b.shape)


def _fuse_updates_into_producers(schedule):
    """The in-place updates that read a gradient run where the gradient is produced, so the gradient is
    never read back (nor, from a GEMM, even written when nothing else reads it):

    * in a GEMM's epilogue, tile by tile (v = rho*v + (1-rho)*dW^2, then W -= lr*dW/sqrt(v + eps); or the
      assignment of W - lr*dW computed in the GEMM's own epilogue);
    * after a column sum's last row, element by element (the bias gradient and the bias's updates).

    An update moves up to its producer only if no kernel in between reads or writes what it writes, or
    writes what it reads. Per output element the updates run in schedule order, so every buffer an update
    writes must be read by the others at the same element only (full shape, no broadcast)."""
    readers = _readers(schedule)
    kernels, fused_away = schedule.kernels, set()
    for index, producer in enumerate(kernels):
        if _epilogue_kind(producer) is None:
            continue
        updates, skipped = [], []
        for position in range(index + 1, len(kernels)):
            candidate = kernels[position]
            movable = position not in fused_away and isinstance(candidate, Kernel)
            update = _as_epilogue_update(candidate, producer, updates) if movable else None
            if update is not None and not _crosses(update, skipped):
                updates.append(update)
                fused_away.add(position)
            else:
                skipped.append(candidate)
        if not updates:
            continue
        moved = {id(u.out) for u in updates}
        product_readers = [r for r in readers.get(id(producer.out), [])
                           if not (r in fused_away and id(kernels[r].out) in moved)]
        producer.updates = updates
        if not product_readers and _epilogue_kind(producer) == "gemm" and producer.out.kind == "temp":
            producer.out = None  # a column sum accumulates in its output, so it keeps it
    schedule.kernels = [k for i, k in enumerate(kernels) if i not in fused_away]


def _epilogue_kind(kernel) -> str | None:
    """"gemm" or "sum" for a kernel whose epilogue can apply updates (element positions are the output's
    row-major positions), else None."""
    if kernel.out is None or kernel.out.kind not in ("temp", "output"):
        return None
    if kernel.node.op.kind == "matmul" and kernel.node.ndim == 2:
        return "gemm"
    return "sum" if kernel.node.op.name == "reduce_sum" else None


def _same_elements(node, producer) -> bool:
    """Whether ``node`` covers the ``producer`` kernel's output element for element: the same shape for a
    GEMM (its epilogue knows rows and columns), the same size for a sum (it knows flat positions)."""
    if _epilogue_kind(producer) == "gemm":
        return _same_shape(node, producer.node)
    return dims_equal(size(node.shape), size(producer.node.shape))


def _crosses(update, kernels) -> bool:
    """Whether moving ``update`` before ``kernels`` would change what they, or it, read."""
    loads = {id(b) for b in update.loads}
    for kernel in kernels:
        written = {id(b) for b in kernel.outputs}
        read = {id(b) for b in kernel.reads}
        if id(update.out) in written | read or loads & written:
            return True
    return False


def _as_epilogue_update(kernel, producer, earlier):
    """``kernel`` as an update in ``producer``'s epilogue after the ``earlier`` ones, or None if it can't be."""
    node, gemm = kernel.node, _epilogue_kind(producer) == "gemm"
    if node.op.name == "reshape":  # the copy assigning an update computed elsewhere: an identity body
        node = apply(elementwise_op, node.inputs, {"expr": arg(0), "label": "assign", "dtype": node.dtype})
    if node.op.name != "elementwise" or kernel.out.kind != "variable" or not _same_elements(node, producer):
        return None
    written = {id(u.out): k for k, u in enumerate(earlier)}
    read_by_producer = list(zip(producer.inputs, producer.node.inputs))
    if any(b is kernel.out and not (gemm and i >= 2 and _same_shape(operand, producer.node))
           for i, (b, operand) in enumerate(read_by_producer)):
        return None  # the producer reads what this update overwrites somewhere else than at the same element
    sources = []
    for buffer, operand in zip(kernel.inputs, node.inputs):
        if buffer is producer.out:
            sources.append("product")
        elif id(buffer) in written:
            if not _same_shape(operand, node):
                return None
            sources.append(("update", written[id(buffer)]))
        elif buffer is kernel.out and _same_shape(operand, node):
            sources.append(buffer)  # the variable's old value, read at the element it overwrites
        else:
            # A GEMM's epilogue reads other operands by row and column (broadcasting like the bias row);
            # a sum's reads them by flat position, so only whole same-shape operands.
            if buffer is kernel.out or operand.ndim > 2 or (not gemm and not _same_shape(operand, node)):
                return None
            sources.append(buffer)
    if "product" not in sources and not any(isinstance(s, tuple) for s in sources):
        return None
    # What this update overwrites must not be read elsewhere by an earlier update (broadcast reads).
    for update in earlier:
        for buffer, operand in zip(update.inputs, update.node.inputs):
            if buffer is kernel.out and not _same_shape(operand, update.node):
                return None
    return EpilogueUpdate(node, kernel.out, kernel.inputs, sources)


# name -> rewrite, in the order they run; gc.function's ``optimize`` picks them (graphc.passes.SCHEDULE_PASSES).
SCHEDULE_REWRITES = {
    "update_in_place": _update_in_place,
    "fuse_row_wise": fuse_row_wise,
    "fuse_updates_into_producers": _fuse_updates_into_producers,
    "overlap_collectives": overlap_collectives,  # after the fusions: it places starts and waits among their kernels
}


def _share_memory(schedule):
    """Temporaries whose lifetimes do not overlap share a slot (same size only: sizes are symbolic);
    an elementwise kernel writes over an input that dies with it; all GEMMs share one packing scratch."""
    readers = _readers(schedule)
    last_read = {key: max(indexes) for key, indexes in readers.items()}
    free = []
    scratch_slot = None
    sizes = {}  # (shape, dtype) -> bytes: a symbolic size is built once per shape, not per test

    def nbytes(buffer):
        key = (tuple(buffer.node.shape), buffer.node.dtype)
        if key not in sizes:
            sizes[key] = buffer.nbytes
        return sizes[key]
    for index, kernel in enumerate(schedule.kernels):
        if kernel.scratch is not None:
            scratch_slot = kernel.scratch.slot if scratch_slot is None else scratch_slot
            kernel.scratch.slot = scratch_slot
        dying = [b for b in distinct_buffers(kernel.reads) if b.kind == "temp" and last_read[id(b)] == index]
        for out in kernel.outputs:
            if out.kind != "temp":
                continue
            first = kernel.inputs[0] if kernel.inputs else None
            if out is kernel.out and first in dying and _in_place_safe(kernel, first):
                out.slot = first.slot
                dying.remove(first)
            else:
                reusable = next((b for b in free if nbytes(b) == nbytes(out)), None)
                if reusable is not None:
                    free.remove(reusable)
                    out.slot = reusable.slot
        # A temporary nothing reads later (a row group's inner values) is free after this kernel too.
        free += dying + [b for b in kernel.outputs if b.kind == "temp" and id(b) not in last_read]


def workspace_bytes(schedule, dims: dict) -> int:
    """Bytes of temporaries (not inputs, outputs or variables) the program needs at these dims."""
    from ..graph.shapes import evaluate_dim
    sizes = {}
    for buffer in schedule.used_buffers():
        if buffer.kind == "temp":
            sizes[buffer.slot] = max(sizes.get(buffer.slot, 0), evaluate_dim(buffer.nbytes, dims))
    return sum(sizes.values())


def _add_kernel(schedule, node, out, buffer_of):
    if node.op.name not in EMITTERS:
        raise NotImplementedError(f"the native backend cannot lower {node.op.name} yet ({node.name})")
    take = folded_take(node)  # a GEMM reading A through a take's indices takes them after its inputs
    indices = [] if take is None else [buffer_of[take.inputs[1].id]]
    kernel = Kernel(f"k{len(schedule.kernels)}_{_label(node)}", node, out,
                    [buffer_of[i.id] for i in node.inputs] + indices)
    if node.op.name in SCRATCH:
        kernel.scratch = schedule.new_buffer("scratch", node)
    schedule.kernels.append(kernel)
    buffer_of[node.id] = out
    return out


def _add_copy(schedule, node, out, buffer_of, source=None):
    """A kernel copying ``source`` (default ``node``) into ``out``: a same-shape reshape, lowered as a copy."""
    source = source if source is not None else node
    copy = apply(reshape_op, [source], {"shape": node.shape})
    kernel = Kernel(f"k{len(schedule.kernels)}_copy", copy, out, [buffer_of[source.id]])
    schedule.kernels.append(kernel)
    return out


def _label(node) -> str:
    label = node.op.display_name(node)
    return "".join(c if c.isalnum() else "_" for c in label)[:24]


# ---- emission ------------------------------------------------------------------------------
def emit_program(schedule: Schedule, target, separate=False) -> list:
    """The kernels and the entry point ``program``, with the helper threads' loop: one module (what a reader
    sees and LLVM parses as the program) or, ``separate``, one module per kernel and then the entry's, which
    declares them. native.py compiles the separate modules, each on its own, and caches each kernel's object
    code: a kernel that another program compiled before (a model's evaluate program shares its forward GEMM
    with the train program) is loaded instead of compiled."""
    module = ir.Module(name="graphc_program")
    dim_index = schedule.dim_index
    kernel_modules = [ir.Module(name=k.name) if separate else module for k in schedule.kernels]
    member_modules = []  # with separate modules, a row kernel's GEMMs get modules of their own
    emit_member = _member_in_own_module(member_modules) if separate else _emit_kernel
    functions = [_emit_kernel(m, k, target, dim_index, emit_member)
                 for m, k in zip(kernel_modules, schedule.kernels)]
    if separate:
        functions = [ir.Function(module, f.function_type, name=f.name) for f in functions]  # declarations
    barrier = _emit_barrier(module)
    entry = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR, PTR, I32, I32, PTR]), name="program")
    slots, dims, tid, nthreads, state = entry.args
    builder = ir.IRBuilder(entry.append_basic_block("entry"))
    failed_flag = _field(builder, state, "failed")
    abandon = entry.append_basic_block("abandon")
    for kernel, function in zip(schedule.kernels, functions):
        pointers = [ir.Constant(PTR, None) if b is None else
                    builder.load(builder.gep(slots, [ir.Constant(I64, b.slot)], source_etype=PTR), typ=PTR)
                    for b in kernel.arguments]
        builder.call(function, pointers + [dims, tid, nthreads])
        builder.call(barrier, [state, nthreads])  # the last one: when thread 0 returns, the step is done
        # A barrier that failed (its helpers are in another process) abandons the step in every thread.
        following = entry.append_basic_block("next")
        failed = builder.load_atomic(failed_flag, "acquire", 8, typ=I64)
        builder.cbranch(builder.icmp_signed("!=", failed, ir.Constant(I64, 0)), abandon, following)
        builder.position_at_end(following)
    builder.ret_void()
    builder.position_at_end(abandon)
    builder.ret_void()
    _emit_worker(module, entry, barrier)
    return kernel_modules + member_modules + [module] if separate else [module]


def _emit_worker(module, entry, barrier):
    """``worker(control, call, tid, nthreads, barrier)``: a helper thread's whole life in native code;
    ``start_step(control)``, which wakes the helpers (to stop them too); and ``run_step``, with which the
    caller announces a step and runs thread 0's part in one native call.

    ``control`` is [step count, stop flag, sleeping helpers]. A helper waits for the step count to change,
    runs ``program`` with the slot table and dims found in ``call[0]``, ``call[1]``, and waits again, until
    the stop flag is set. Waiting spins through the gap between training steps (~0.3 ms), then sleeps in
    the kernel (a futex on the step count) until ``start_step`` wakes it: an idle program costs no CPU and
    wakes nobody. Linux x86-64: the futex system call and the pause instruction.
    """
    function = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR, PTR, I32, I32, PTR]), name="worker")
    control, call, tid, nthreads, state = function.args
    entry_block, wait, backoff, sleep, run, step, done = (
        function.append_basic_block(n) for n in ("entry", "wait", "backoff", "sleep", "run", "step", "done"))
    builder = ir.IRBuilder(entry_block)
    stop_flag = builder.gep(control, [ir.Constant(I64, 1)], source_etype=I64)
    sleepers = builder.gep(control, [ir.Constant(I64, 2)], source_etype=I64)
    builder.branch(wait)

    builder.position_at_end(wait)
    seen = builder.phi(I64, name="seen")
    spins = builder.phi(I64, name="spins")
    seen.add_incoming(ir.Constant(I64, 0), entry_block)
    spins.add_incoming(ir.Constant(I64, 0), entry_block)
    now = builder.load_atomic(control, "acquire", 8, typ=I64)
    builder.cbranch(builder.icmp_signed("!=", now, seen), run, backoff)

    builder.position_at_end(backoff)
    more, _ = _back_off(module, builder, spins, state)
    seen.add_incoming(seen, builder.block)
    spins.add_incoming(more, builder.block)
    builder.cbranch(builder.icmp_signed(">", more, ir.Constant(I64, SPINS_BEFORE_SLEEP)), sleep, wait)

    builder.position_at_end(sleep)
    # Counted as asleep before the last look at the step count (both sequentially consistent), so a
    # start_step either sees the count or bumped the step before that look: no wake-up is lost. The
    # kernel sleeps only while the count's low word still equals what this thread saw.
    builder.atomic_rmw("add", sleepers, ir.Constant(I64, 1), "seq_cst")
    latest = builder.load_atomic(control, "seq_cst", 8, typ=I64)
    with builder.if_then(builder.icmp_signed("==", latest, seen)):
        _futex(module, builder, control, FUTEX_WAIT_PRIVATE, builder.and_(seen, ir.Constant(I64, 2 ** 32 - 1)))
    builder.atomic_rmw("sub", sleepers, ir.Constant(I64, 1), "seq_cst")
    seen.add_incoming(seen, builder.block)
    spins.add_incoming(ir.Constant(I64, 0), builder.block)
    builder.branch(wait)

    builder.position_at_end(run)
    stop = builder.load_atomic(stop_flag, "acquire", 8, typ=I64)
    builder.cbranch(builder.icmp_signed("!=", stop, ir.Constant(I64, 0)), done, step)

    builder.position_at_end(step)
    slots = builder.load(call, typ=PTR)
    dims = builder.load(builder.gep(call, [ir.Constant(I64, 1)], source_etype=PTR), typ=PTR)
    builder.call(entry, [slots, dims, tid, nthreads, state])
    seen.add_incoming(now, builder.block)
    spins.add_incoming(ir.Constant(I64, 0), builder.block)
    builder.branch(wait)

    builder.position_at_end(done)
    builder.ret_void()

    start = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR]), name="start_step")
    (control,) = start.args
    builder = ir.IRBuilder(start.append_basic_block("entry"))
    builder.atomic_rmw("add", control, ir.Constant(I64, 1), "seq_cst")
    asleep = builder.load_atomic(builder.gep(control, [ir.Constant(I64, 2)], source_etype=I64), "seq_cst", 8, typ=I64)
    with builder.if_then(builder.icmp_signed("!=", asleep, ir.Constant(I64, 0))):
        _futex(module, builder, control, FUTEX_WAKE_PRIVATE, ir.Constant(I64, 2 ** 31 - 1))
    builder.ret_void()

    # run_step(control, call, slots, dims, nthreads, barrier): announce a step and run thread 0's part, in
    # one native call, so no Python (no KeyboardInterrupt) can come between the helpers starting and
    # thread 0 joining them.
    run = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR, PTR, PTR, PTR, I32, PTR]), name="run_step")
    control, call, slots, dims, nthreads, state = run.args
    builder = ir.IRBuilder(run.append_basic_block("entry"))
    builder.store(slots, call)
    builder.store(dims, builder.gep(call, [ir.Constant(I64, 1)], source_etype=PTR))
    builder.call(start, [control])
    builder.call(entry, [slots, dims, ir.Constant(I32, 0), nthreads, state])
    builder.ret_void()


def _futex(module, builder, word, operation, value):
    """futex(word, operation, value, no timeout) through libc's syscall(), every argument a full register
    (a variadic call leaves the upper half of a 32-bit argument undefined)."""
    syscall = module.globals.get("syscall") or ir.Function(
        module, ir.FunctionType(I64, [I64], var_arg=True), name="syscall")
    builder.call(syscall, [ir.Constant(I64, SYS_FUTEX), word, ir.Constant(I64, operation), value,
                           ir.Constant(PTR, None)])


def _emit_kernel(module, kernel, target, dim_index, emit_member=None) -> ir.Function:
    """Kernel ``kernel``'s function in ``module``; a row kernel's members through ``emit_member`` (by default
    this function, into the same module)."""
    if isinstance(kernel, RowKernel):
        return emit_row_kernel(module, kernel, target, dim_index, emit_member or _emit_kernel)
    emit = EMITTERS[kernel.node.op.name]
    if not kernel.updates:
        return emit(module, kernel.name, kernel.node, target, dim_index)
    updates = [(u.node, ["load" if isinstance(s, Buffer) else s for s in u.sources]) for u in kernel.updates]
    return emit(module, kernel.name, kernel.node, target, dim_index,
                updates=updates, store_product=kernel.out is not None)


def _member_in_own_module(modules: list):
    """A row kernel's ``emit_member`` that emits a GEMM member into a module of its own (appended to
    ``modules``) and, in the row kernel's module, a function that calls it: LLVM then compiles the GEMM apart
    from the row kernel's other members (in parallel with them where cores are idle; the row module was a
    third of the seed step's LLVM time), and the GEMM's object is cached on its own, so that a program
    whose row kernel holds the same GEMM (a model's evaluate program) loads it."""
    def emit_member(module, member, target, dim_index):
        if member.node.op.name not in ("matmul", "fused_matmul"):
            return _emit_kernel(module, member, target, dim_index)
        own = ir.Module(name=member.name)
        modules.append(own)
        function = _emit_kernel(own, member, target, dim_index)
        caller = ir.Function(module, function.function_type, name=f"{function.name}.call")
        builder = ir.IRBuilder(caller.append_basic_block("entry"))
        builder.call(ir.Function(module, function.function_type, name=function.name), caller.args)
        builder.ret_void()
        return caller
    return emit_member


def _back_off(module, builder, spins, state) -> tuple:
    """One turn of a spin wait: a pause, and every ``spins_before_yield`` turns (from the barrier record
    ``state``) the core given away: a machine with more threads than cores must let the thread we wait
    for run. Returns the new turn count and whether this turn yielded."""
    mask = builder.sub(builder.load(_field(builder, state, "spins_before_yield"), typ=I64), ir.Constant(I64, 1))
    builder.call(_declared(module, "llvm.x86.sse2.pause", ir.FunctionType(ir.VoidType(), [])), [])
    turns = builder.add(spins, ir.Constant(I64, 1))
    yielded = builder.icmp_signed("==", builder.and_(turns, mask), ir.Constant(I64, 0))
    with builder.if_then(yielded):
        builder.call(_declared(module, "sched_yield", ir.FunctionType(I32, [])), [])
    return turns, yielded


def _field(builder, state, name) -> ir.Value:
    """Pointer to a field of the runtime's barrier record (runtime.native.BARRIER)."""
    return builder.gep(state, [ir.Constant(I64, BARRIER[name])], source_etype=I64)


def _emit_barrier(module) -> ir.Function:
    """``barrier(state, nthreads)``: wait until every thread has arrived. ``state`` is the runtime's
    barrier record (runtime.native.BARRIER): the arrivals, the generation the last arrival opens, a
    failed flag, the pid of the process whose threads run the program, how long to spin before giving
    the core away. A wait that cannot complete (this process is not the one the helper threads live in:
    a fork the runtime did not see) sets the failed flag and returns, as does every wait once the flag
    is set: the step is abandoned and the caller raises, instead of spinning for ever. A thread that is
    merely slow is waited for: abandoning it would free memory it still writes."""
    function = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR, I32]), name="graphc_barrier")
    function.linkage = "internal"
    state, nthreads = function.args
    entry, arrive, last, wait, spin, check, fail, done = (function.append_basic_block(n) for n in (
        "entry", "arrive", "last", "wait", "spin", "check", "fail", "done"))
    builder = ir.IRBuilder(entry)
    arrived_ptr, generation_ptr = _field(builder, state, "arrived"), _field(builder, state, "generation")
    failed_ptr = _field(builder, state, "failed")
    failed = builder.load_atomic(failed_ptr, "acquire", 8, typ=I64)
    builder.cbranch(builder.icmp_signed("!=", failed, ir.Constant(I64, 0)), done, arrive)

    builder.position_at_end(arrive)
    generation = builder.load_atomic(generation_ptr, "acquire", 8, typ=I64)
    before = builder.atomic_rmw("add", arrived_ptr, ir.Constant(I64, 1), "acq_rel")
    expected = builder.sub(builder.zext(nthreads, I64), ir.Constant(I64, 1))
    builder.cbranch(builder.icmp_signed("==", before, expected), last, wait)

    builder.position_at_end(last)
    # An atomic exchange, because llvmlite's store_atomic still expects typed pointers.
    builder.atomic_rmw("xchg", arrived_ptr, ir.Constant(I64, 0), "monotonic")
    builder.atomic_rmw("add", generation_ptr, ir.Constant(I64, 1), "release")
    builder.branch(done)

    builder.position_at_end(wait)
    spins = builder.phi(I64, name="spins")
    spins.add_incoming(ir.Constant(I64, 0), arrive)
    now = builder.load_atomic(generation_ptr, "acquire", 8, typ=I64)
    builder.cbranch(builder.icmp_signed("!=", now, generation), done, spin)

    builder.position_at_end(spin)
    turns, yielded = _back_off(module, builder, spins, state)
    spins.add_incoming(turns, builder.block)
    spins.add_incoming(turns, check)
    builder.cbranch(yielded, check, wait)

    builder.position_at_end(check)  # whenever it yields: can the wait still complete?
    pid = builder.sext(builder.call(_declared(module, "getpid", ir.FunctionType(I32, [])), []), I64)
    elsewhere = builder.icmp_signed("!=", pid, builder.load(_field(builder, state, "pid"), typ=I64))
    other_failed = builder.icmp_signed("!=", builder.load_atomic(failed_ptr, "acquire", 8, typ=I64),
                                       ir.Constant(I64, 0))
    builder.cbranch(builder.or_(elsewhere, other_failed), fail, wait)

    builder.position_at_end(fail)
    builder.atomic_rmw("xchg", failed_ptr, ir.Constant(I64, 1), "release")
    builder.branch(done)

    builder.position_at_end(done)
    builder.ret_void()
    return function


def _declared(module, name, function_type) -> ir.Function:
    """The function ``name`` of the module, declared on first use (libc and LLVM intrinsics)."""
    return module.globals.get(name) or ir.Function(module, function_type, name=name)
