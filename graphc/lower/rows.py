"""Row fusion: the narrow tail of a batch-major step as one kernel that walks the batch in chunks of rows.

A classifier's step ends in many small kernels over (batch, classes) values: softmax, the loss and its
mean, the accuracy, the logits' gradient, the last bias's gradient and update. Each alone costs little,
but each is a kernel: a call and a barrier. ``fuse_row_wise`` (a schedule rewrite) groups such kernels
into one RowKernel; ``emit_row_kernel`` lowers it. A group shares one symbolic dim R (the batch), and
each member has a role:

* row:  its output is (R, ...) and row r depends only on row r of its (R, ...) inputs (elementwise,
        broadcast_to, a reduction, argmax, softmax or log_softmax along another axis); its other
        inputs have no R;
* sink: a reduction over axis 0 (and maybe others) of a row value: a sum for the mean loss, the bias
        gradient's column sum;
* pre:  a small R-free value from R-free inputs (1/batch), computed before the rows;
* post: a small R-free value computed from a sink (the mean, the bias's optimizer updates), after them.

Each member keeps its own emitter. The group's function calls the members (LLVM inlines them) on one
chunk of CHUNK_ROWS rows at a time, with R in the dims array set to the chunk's length and the row
buffers' pointers moved to the chunk, so a chunk's values are still in L1 when the next member reads
them. A sink reduces its chunk into a stack buffer and combines that into its output. Rows are narrow
(MAX_ROW_ELEMENTS), so thread 0 runs the whole group: splitting it would cost more than it saves.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy
from llvmlite import ir

from ..graph.shapes import is_static, size
from ..ops.expr import dim_symbols
from .irutil import I32, I64, I8, IR_TYPES, ITEMSIZE, PTR, const, dim_value, imin, loop
from .reduce import Combiner

CHUNK_ROWS = 32  # a chunk of a (R, 256) float32 value is 32 KiB: an L1's worth
MAX_ROW_ELEMENTS = 256  # wider rows are real work, better split between threads by their own kernels
MAX_FREE_ELEMENTS = 4096  # the largest R-free value a pre, post or sink member may compute
SINKS = ("reduce_sum", "reduce_max", "reduce_min")
PHASE = {"pre": 0, "row": 1, "sink": 1, "post": 2}


@dataclass(eq=False)
class RowKernel:
    """Kernels fused to run row chunk by row chunk: ``members`` are (role, Kernel) pairs in run order
    (pre members, then row and sink members per chunk, then post members)."""

    name: str
    rows: sympy.Symbol
    members: list = field(default_factory=list)
    node = None  # no single node: see members
    out = None
    scratch = None
    updates = ()

    @property
    def nodes(self) -> list:
        return [member.node for _, member in self.members]

    @property
    def label(self) -> str:
        return f"rows of {len(self.members)} ops"

    @property
    def outputs(self) -> list:
        return distinct_buffers(member.out for _, member in self.members)

    @property
    def inputs(self) -> list:
        """The buffers the group reads from outside: read by a member before any member wrote them."""
        written, read = set(), []
        for _, member in self.members:
            read += [b for b in member.inputs if id(b) not in written]
            written.add(id(member.out))
        return distinct_buffers(read)

    @property
    def arguments(self) -> list:
        return distinct_buffers(self.outputs + self.inputs)


def distinct_buffers(buffers) -> list:
    return list({id(b): b for b in buffers}.values())


# ---- the rewrite ---------------------------------------------------------------------------
def fuse_row_wise(schedule):
    """Group kernels into RowKernels, each started by a row kernel and grown over the later kernels that
    can join it: the group then runs where its first member ran, after the kernels it needs and before
    those that need it."""
    index = 0
    while index < len(schedule.kernels):
        kernels = schedule.kernels
        rows = _row_dim(kernels[index])
        roles, blocked = _grow(kernels, index, rows) if rows is not None else ({}, set())
        if len(roles) < 2:
            index += 1
            continue
        order = sorted(roles, key=lambda i: (PHASE[roles[i]], i))
        group = RowKernel(kernels[index].name.split("_")[0] + "_rows", rows,
                          [(roles[i], kernels[i]) for i in order])
        last = max(roles)
        before = [k for i, k in enumerate(kernels) if i not in roles and i not in blocked and i < last]
        after = [k for i, k in enumerate(kernels) if i not in roles and (i in blocked or i > last)]
        schedule.kernels = before + [group] + after
        index = len(before) + 1


def _dependencies(kernels) -> list:
    """For each kernel, the earlier ones it must follow: it reads or writes what they write, or writes
    what they read."""
    touched = [({id(b) for b in k.arguments if b is not None}, {id(b) for b in k.outputs}) for k in kernels]
    return [{i for i, (used_i, written_i) in enumerate(touched[:j]) if written_i & used_j or used_i & written_j}
            for j, (used_j, written_j) in enumerate(touched)]


def _grow(kernels, first, rows):
    """{index: role} of the kernels joining kernels[first] (a row kernel) in a group, and the set of later
    kernels outside it that depend on it (no member may depend on those: the group runs before them)."""
    dependencies = _dependencies(kernels)
    roles, blocked = {first: "row"}, set()
    for j in range(first + 1, len(kernels)):
        needs = dependencies[j]
        role = None
        if not needs & blocked:
            made = {id(kernels[i].out): role for i, role in roles.items()}
            role = _role(kernels[j], rows, [made.get(id(b)) for b in kernels[j].inputs])
        # Inside the group a member runs in its role's phase: it may need only members of earlier or
        # the same phase (a row member never needs a sink: _role checks what it reads).
        if role is not None and all(PHASE[roles[i]] <= PHASE[role] for i in needs & roles.keys()):
            roles[j] = role
        elif needs & (roles.keys() | blocked):
            blocked.add(j)
    return roles, blocked


def _row_dim(kernel):
    """R if ``kernel`` can start a group as a row member over R, else None."""
    if hasattr(kernel, "members") or kernel.node is None or not kernel.node.shape:
        return None
    rows = kernel.node.shape[0]
    return rows if isinstance(rows, sympy.Symbol) and _role(kernel, rows, []) == "row" else None


def _row_shaped(shape, rows) -> bool:
    """(R, static...) with narrow rows."""
    rest = shape[1:]
    return bool(shape) and shape[0] == rows and is_static(rest) and size(rest) <= MAX_ROW_ELEMENTS


def _free(shape) -> bool:
    """A small value with no symbolic dim."""
    return is_static(shape) and size(shape) <= MAX_FREE_ELEMENTS


def _role(kernel, rows, sources) -> str | None:
    """``kernel``'s role in a group over ``rows`` whose members made its inputs with roles ``sources``
    (None: made outside), or None if it cannot join."""
    if hasattr(kernel, "members") or kernel.updates or kernel.scratch is not None or kernel.out is None:
        return None
    node, fresh = kernel.node, kernel.out.kind in ("temp", "output")
    row_inputs = [i for i in node.inputs if not _free(i.shape)]
    if not all(_row_shaped(i.shape, rows) for i in row_inputs):
        return None
    from_sinks = any(s in ("sink", "post") for s in sources)
    if _row_shaped(node.shape, rows):
        return "row" if fresh and not from_sinks and _row_local(node, rows, row_inputs) else None
    if not _free(node.shape):
        return None
    if node.op.name in SINKS and 0 in node.attrs["axes"] and row_inputs:
        return "sink" if fresh else None
    if row_inputs:
        return None
    if from_sinks:
        return "post"  # may write a variable in place (an update): it runs after everything else in the group
    return "pre" if fresh else None


def _row_local(node, rows, row_inputs) -> bool:
    """Whether row r of ``node`` needs row r of its R-shaped inputs only (and R itself nowhere)."""
    name = node.op.name
    if name in ("elementwise", "broadcast_to"):
        expr = node.attrs.get("expr")
        uses_rows = expr is not None and rows in dim_symbols(expr)  # R means the chunk's length inside
        return not uses_rows and all(i.ndim == node.ndim for i in row_inputs)
    if name in SINKS:
        return 0 not in node.attrs["axes"]
    if name in ("argmax", "softmax", "log_softmax"):
        return node.attrs["axis"] != 0
    return False


# ---- emission ------------------------------------------------------------------------------
def emit_row_kernel(module: ir.Module, kernel: RowKernel, target, dim_index: dict, emit_member) -> ir.Function:
    """``void name(buffer pointers (kernel.arguments)..., i64* dims, i32 tid, i32 nthreads)``; thread 0
    does all the work. ``emit_member(module, member, target, dim_index)`` emits one member's function."""
    arguments = kernel.arguments
    function = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR] * (len(arguments) + 1) + [I32, I32]),
                           name=kernel.name)
    function.attributes.add("nounwind")
    *pointers, dims, tid, _ = function.args
    pointer_of = {id(b): p for b, p in zip(arguments, pointers)}
    builder = ir.IRBuilder(function.append_basic_block("entry"))
    members = []
    for role, member in kernel.members:
        member_function = emit_member(module, member, target, dim_index)
        member_function.linkage = "internal"
        member_function.attributes.add("alwaysinline")
        members.append((role, member, member_function))
    chunk_dims = builder.alloca(I64, size=const(len(dim_index)))
    partials = {id(m): builder.alloca(IR_TYPES[m.node.dtype], size=const(size(m.node.shape)))
                for role, m, _ in members if role == "sink"}

    def call(member, member_function, dims_pointer, first_row=None):
        """The member on all rows, or (``first_row`` given) on the chunk starting there."""
        pointers = []
        for buffer in member.arguments:
            pointer = pointer_of[id(buffer)]
            if first_row is not None and buffer is member.out and id(member) in partials:
                pointer = partials[id(member)]
            elif first_row is not None and _row_shaped(buffer.node.shape, kernel.rows):
                row_bytes = size(buffer.node.shape[1:]) * ITEMSIZE[buffer.node.dtype]
                pointer = builder.gep(pointer, [builder.mul(first_row, const(row_bytes))], source_etype=I8)
            pointers.append(pointer)
        builder.call(member_function, pointers + [dims_pointer, ir.Constant(I32, 0), ir.Constant(I32, 1)])

    with builder.if_then(builder.icmp_signed("==", tid, ir.Constant(I32, 0))):
        for role, member, member_function in members:
            if role == "pre":
                call(member, member_function, dims)
            if role == "sink":
                _over_elements(builder, member, pointer_of[id(member.out)], lambda element, out, combiner, typ:
                               builder.store(combiner.identity(typ), out))
        for index in range(len(dim_index)):
            value = builder.load(builder.gep(dims, [const(index)], source_etype=I64), typ=I64)
            builder.store(value, builder.gep(chunk_dims, [const(index)], source_etype=I64))
        total = dim_value(builder, kernel.rows, dims, dim_index)
        with loop(builder, const(0), total, CHUNK_ROWS, name="chunk") as chunk:
            length = imin(builder, const(CHUNK_ROWS), builder.sub(total, chunk.index))
            builder.store(length, builder.gep(chunk_dims, [const(dim_index[kernel.rows])], source_etype=I64))
            for role, member, member_function in members:
                if role not in ("row", "sink"):
                    continue
                call(member, member_function, chunk_dims, chunk.index)
                if role == "sink":
                    partial = partials[id(member)]
                    _over_elements(builder, member, pointer_of[id(member.out)], lambda element, out, combiner, typ: builder.store(
                        combiner.combine(builder, builder.load(out, typ=typ), builder.load(
                            builder.gep(partial, [element], source_etype=typ), typ=typ)), out))
        for role, member, member_function in members:
            if role == "post":
                call(member, member_function, dims)
    builder.ret_void()
    return function


def _over_elements(builder, sink, base, body):
    """``body(element, pointer, combiner, type)`` for each element of a sink's output ``base`` (its accumulator)."""
    dtype = sink.node.dtype
    combiner, typ = Combiner(sink.node.op.name, dtype), IR_TYPES[dtype]
    with loop(builder, const(0), const(size(sink.node.shape)), name="element") as element:
        body(element.index, builder.gep(base, [element.index], source_etype=typ), combiner, typ)
