"""Row fusion: the row-wise part of a batch-major step as one kernel that walks the batch in chunks of rows.

A classifier's step ends in many small kernels over (batch, classes) values: the last layer's product,
softmax, the loss and its mean, the accuracy, the logits' gradient, its product with the last weights
(masked by relu'), the bias gradients and their updates. Each alone costs little, but each is a kernel:
a call, a barrier, a trip through memory. ``fuse_row_wise`` (a schedule rewrite) groups such kernels
into one RowKernel; ``emit_row_kernel`` lowers it. A group shares one symbolic dim R (the batch), and
each member has a role:

* row:  its output is (R, ...) and row r depends only on row r of its (R, ...) inputs (elementwise,
        broadcast_to, a reduction, argmax, softmax or log_softmax along another axis, a product
        (R, K) @ B with a small B and maybe a fused epilogue); its other inputs have no R;
* sink: a reduction over axis 0 (and maybe others) of a row value: a sum for the mean loss, a bias
        gradient's column sum;
* pre:  a small R-free value from R-free inputs (1/batch), computed before the rows;
* post: a small R-free value computed from a sink (the mean, a bias's optimizer updates), after them.

Each member keeps its own emitter. The rows are cut into chunks of CHUNK_ROWS rows, counted from row 0;
every thread takes a contiguous share of whole chunks and calls the members (LLVM inlines them) on one
chunk at a time, with R in the dims array set to the chunk's length and the row buffers' pointers moved
to the chunk, so a chunk's values are still in L1/L2 when the next member reads them. Each thread
computes the pre values itself (thread 0 into their buffers, the others into stack copies); each chunk
reduces its rows into partial sinks of its own, in the kernel's scratch; the last thread to finish
combines the chunks' partials in chunk order and runs the post members. No thread waits for another
inside the kernel, and the sums do not depend on the number of threads: neither where a chunk starts
nor the order partials are added in does (docs/reliability.md: the same bits on any core count).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy
from llvmlite import ir

from ..graph.shapes import is_static, size
from ..ops.expr import dim_symbols
from .irutil import I32, I64, I8, IR_TYPES, ITEMSIZE, PTR, const, dim_value, imin, loop
from .gather import folded_take
from .matmul import scratch_bytes_per_thread
from .reduce import Combiner

CHUNK_ROWS = 64  # a chunk of a (R, 512) float32 value is 128 KiB: it stays in L2 for the next member
MAX_ROW_ELEMENTS = 1024  # a row value's width; wider is left to kernels of its own
MAX_FREE_ELEMENTS = 4096  # the largest R-free value a pre, post or sink member may compute
MAX_PRODUCT_OPERAND = 32 * 1024  # elements of B in a row member (R, K) @ B: it is packed again per chunk
SINKS = ("reduce_sum", "reduce_max", "reduce_min")
PHASE = {"pre": 0, "row": 1, "sink": 1, "post": 2}
_ALIGN = 64


@dataclass(eq=False)
class RowKernel:
    """Kernels fused to run row chunk by row chunk: ``members`` are (role, Kernel) pairs in run order
    (pre members, then row and sink members per chunk, then post members). ``scratch``: per thread, the
    packing space of the products among the members; after the threads', per chunk, the partial sinks."""

    name: str
    rows: sympy.Symbol
    members: list = field(default_factory=list)
    scratch: object = None  # a Buffer of kind "scratch"
    node = None  # no single node: see members
    out = None
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
    def reads(self) -> list:
        return self.inputs

    @property
    def arguments(self) -> list:
        return distinct_buffers(self.outputs + self.inputs) + [self.scratch]

    def sinks(self) -> list:
        return [member for role, member in self.members if role == "sink"]

    def scratch_layout(self, target):
        """({sink member id: byte offset of its partial in a chunk's}, bytes of a chunk's partials, bytes of
        a thread's packing space)."""
        offsets, end = {}, 0
        for sink in self.sinks():
            offsets[id(sink)] = end
            end += _aligned(size(sink.node.shape) * ITEMSIZE[sink.node.dtype])
        packing = max([scratch_bytes_per_thread(m.node, target) for _, m in self.members if m.scratch is not None],
                      default=0)
        return offsets, end, _aligned(packing)

    def scratch_bytes(self, target, threads: int):
        """Bytes of scratch for ``threads`` threads: their packing spaces, then every chunk's partials."""
        _, partials, packing = self.scratch_layout(target)
        return threads * packing + sympy.ceiling(self.rows / CHUNK_ROWS) * partials


def _aligned(nbytes: int) -> int:
    return -(-nbytes // _ALIGN) * _ALIGN


def distinct_buffers(buffers) -> list:
    return list({id(b): b for b in buffers}.values())


# ---- the rewrite ---------------------------------------------------------------------------
def fuse_row_wise(schedule):
    """Group kernels into RowKernels, each started by a row kernel and grown over the later kernels that
    can join it. The group takes the place of its first member; the kernels between its members that it
    does not feed move before it, those that need it stay after it."""
    index, dependencies = 0, None  # dependencies: of the current kernel list, computed once per list
    while index < len(schedule.kernels):
        kernels = schedule.kernels
        rows = _row_dim(kernels[index])
        if rows is None:
            index += 1
            continue
        dependencies = dependencies or _dependencies(kernels)
        roles, blocked = _grow(kernels, dependencies, index, rows)
        if len(roles) < 2:
            index += 1
            continue
        order = sorted(roles, key=lambda i: (PHASE[roles[i]], i))
        group = RowKernel(kernels[index].name.split("_")[0] + "_rows", rows,
                          [(roles[i], kernels[i]) for i in order], schedule.new_buffer("scratch", None))
        last = max(roles)
        before = [k for i, k in enumerate(kernels) if i not in roles and i not in blocked and i < last]
        after = [k for i, k in enumerate(kernels) if i not in roles and (i in blocked or i > last)]
        schedule.kernels = before + [group] + after
        index, dependencies = len(before) + 1, None


def _dependencies(kernels) -> list:
    """For each kernel, the earlier ones it must follow: it reads or writes what they write, or writes
    what they read."""
    writers, users = {}, {}  # buffer id -> the kernels so far that wrote it / read or wrote it
    dependencies = []
    for index, kernel in enumerate(kernels):
        used = {id(b) for b in kernel.arguments if b is not None}
        written = {id(b) for b in kernel.outputs}
        needs = {i for b in used for i in writers.get(b, ())} | {i for b in written for i in users.get(b, ())}
        dependencies.append(needs)
        for b in used:
            users.setdefault(b, []).append(index)
        for b in written:
            writers.setdefault(b, []).append(index)
    return dependencies


def _grow(kernels, dependencies, first, rows):
    """{index: role} of the kernels joining kernels[first] (a row kernel) in a group, and the set of later
    kernels outside it that depend on it (no member may depend on those: the group runs before them)."""
    roles, blocked = {first: "row"}, set()
    for j in range(first + 1, len(kernels)):
        needs = dependencies[j]
        role = None
        if not needs & blocked:
            made = {id(kernels[i].out): member_role for i, member_role in roles.items()}
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
    """(R, static...) with rows no wider than MAX_ROW_ELEMENTS."""
    rest = shape[1:]
    return bool(shape) and shape[0] == rows and is_static(rest) and size(rest) <= MAX_ROW_ELEMENTS


def _free(shape) -> bool:
    """A small value with no symbolic dim."""
    return is_static(shape) and size(shape) <= MAX_FREE_ELEMENTS


def _role(kernel, rows, sources) -> str | None:
    """``kernel``'s role in a group over ``rows`` whose members made its inputs with roles ``sources``
    (None: made outside), or None if it cannot join."""
    if hasattr(kernel, "members") or kernel.updates or kernel.out is None or kernel.node.op.kind == "collective":
        return None  # a collective stays a kernel of its own: thread 0 calls MPI, and it can overlap
    node, fresh = kernel.node, kernel.out.kind in ("temp", "output")
    row_inputs = [i for i in node.inputs if not is_static(i.shape)]
    if not all(_row_shaped(i.shape, rows) for i in row_inputs):
        return None
    from_sinks = any(s in ("sink", "post") for s in sources)
    if _row_shaped(node.shape, rows):
        return "row" if fresh and not from_sinks and _row_local(node, rows, row_inputs) else None
    if kernel.scratch is not None or not _free(node.shape):
        return None
    if node.op.name in SINKS and 0 in node.attrs["axes"] and row_inputs:
        return "sink" if fresh else None
    if not all(_free(i.shape) for i in node.inputs):
        return None  # pre and post members run on one thread: small inputs only
    if from_sinks:
        return "post"  # may write a variable in place (an update): it runs after everything else in the group
    return "pre" if fresh else None


def _row_local(node, rows, row_inputs) -> bool:
    """Whether row r of ``node`` needs row r of its R-shaped inputs only (and R itself nowhere)."""
    name = node.op.name
    if any(rows in dim_symbols(node.attrs[body]) for body in ("expr", "epilogue") if body in node.attrs):
        return False  # inside the kernel R is the chunk's length
    if name in ("elementwise", "broadcast_to"):
        return all(i.ndim == node.ndim for i in row_inputs)
    if name in SINKS:
        return 0 not in node.attrs["axes"]
    if name in ("argmax", "softmax", "log_softmax"):
        return node.attrs["axis"] != 0
    if node.op.kind == "matmul":  # (R, K) @ B, then an epilogue reading rows of (R, N) operands
        a, b, *extras = node.inputs
        row_extras = [e for e in extras if any(e is i for i in row_inputs)]
        return (node.ndim == 2 and not node.attrs["transpose_a"] and row_inputs[:1] == [a] and a is not b
                and folded_take(node) is None  # A's rows are read through indices, not by row
                and is_static(b.shape) and size(b.shape) <= MAX_PRODUCT_OPERAND
                and all(e.ndim == 2 for e in row_extras) and len(row_extras) + 1 == len(row_inputs))
    return False


# ---- emission ------------------------------------------------------------------------------
def emit_row_kernel(module: ir.Module, kernel: RowKernel, target, dim_index: dict, emit_member) -> ir.Function:
    """``void name(buffer pointers (kernel.arguments)..., i64* dims, i32 tid, i32 nthreads)``.
    ``emit_member(module, member, target, dim_index)`` emits one member's function."""
    arguments = kernel.arguments
    function = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR] * (len(arguments) + 1) + [I32, I32]),
                           name=kernel.name)
    function.attributes.add("nounwind")
    *pointers, dims, tid, nthreads = function.args
    builder = ir.IRBuilder(function.append_basic_block("entry"))
    tid, nthreads = builder.sext(tid, I64), builder.sext(nthreads, I64)
    pointer_of = {id(b): p for b, p in zip(arguments, pointers)}
    members = []
    for role, member in kernel.members:
        member_function = emit_member(module, member, target, dim_index)
        member_function.linkage = "internal"
        member_function.attributes.add("alwaysinline")
        members.append((role, member, member_function))
    partial_offsets, chunk_stride, stride = kernel.scratch_layout(target)
    scratch = pointer_of[id(kernel.scratch)]
    packing = builder.gep(scratch, [builder.mul(tid, const(stride))], source_etype=I8)
    partials = builder.gep(scratch, [builder.mul(nthreads, const(stride))], source_etype=I8)

    def chunk_partial(sink, chunk_number):
        """Where chunk ``chunk_number`` keeps its partial of ``sink``."""
        offset = builder.add(builder.mul(chunk_number, const(chunk_stride)), const(partial_offsets[id(sink)]))
        return builder.gep(partials, [offset], source_etype=I8)

    # Pre values: thread 0 writes their buffers (read after the kernel too), the others a stack copy.
    thread_zero = builder.icmp_signed("==", tid, const(0))
    for role, member, _ in members:
        if role == "pre":
            copy = builder.alloca(IR_TYPES[member.node.dtype], size=const(size(member.node.shape)))
            pointer_of[id(member.out)] = builder.select(thread_zero, pointer_of[id(member.out)], copy)
    sink_ids = {id(m) for m in kernel.sinks()}
    chunk_dims = builder.alloca(I64, size=const(len(dim_index)))

    def call(member, member_function, dims_pointer, first_row=None):
        """The member on its whole shapes, or (``first_row`` given) on the chunk of rows starting there.
        Rows are found through the member's own view of each buffer (the buffer may be an output
        reshaped across the batch)."""
        arguments = []
        for buffer, view in zip([member.out, *member.inputs], [member.node, *member.node.inputs]):
            if first_row is not None and id(member) in sink_ids and buffer is member.out:
                pointer = chunk_partial(member, builder.sdiv(first_row, const(CHUNK_ROWS)))
            elif first_row is not None and _row_shaped(view.shape, kernel.rows):
                row_bytes = size(view.shape[1:]) * ITEMSIZE[view.dtype]
                pointer = builder.gep(pointer_of[id(buffer)], [builder.mul(first_row, const(row_bytes))],
                                      source_etype=I8)
            else:
                pointer = pointer_of[id(buffer)]
            arguments.append(pointer)
        if member.scratch is not None:
            arguments.append(packing)
        builder.call(member_function, arguments + [dims_pointer, ir.Constant(I32, 0), ir.Constant(I32, 1)])

    for role, member, member_function in members:
        if role == "pre":
            call(member, member_function, dims)
    for index in range(len(dim_index)):
        value = builder.load(builder.gep(dims, [const(index)], source_etype=I64), typ=I64)
        builder.store(value, builder.gep(chunk_dims, [const(index)], source_etype=I64))
    total = dim_value(builder, kernel.rows, dims, dim_index)
    chunks = builder.sdiv(builder.add(total, const(CHUNK_ROWS - 1)), const(CHUNK_ROWS))
    share = builder.mul(builder.sdiv(builder.add(chunks, builder.sub(nthreads, const(1))), nthreads),
                        const(CHUNK_ROWS))  # rows: whole chunks
    begin = imin(builder, builder.mul(tid, share), total)
    end = imin(builder, builder.add(begin, share), total)
    with loop(builder, begin, end, CHUNK_ROWS, name="chunk") as chunk:
        length = imin(builder, const(CHUNK_ROWS), builder.sub(end, chunk.index))
        builder.store(length, builder.gep(chunk_dims, [const(dim_index[kernel.rows])], source_etype=I64))
        for role, member, member_function in members:
            if role not in ("row", "sink"):
                continue
            call(member, member_function, chunk_dims, chunk.index)

    # The last thread to get here sees every partial (acquire/release on the count) and finishes the sinks.
    arrivals = ir.GlobalVariable(module, I64, name=f"{kernel.name}.arrivals")
    arrivals.linkage, arrivals.initializer = "internal", ir.Constant(I64, 0)
    before = builder.atomic_rmw("add", arrivals, const(1), "acq_rel")
    with builder.if_then(builder.icmp_signed("==", before, builder.sub(nthreads, const(1)))):
        builder.atomic_rmw("xchg", arrivals, const(0), "monotonic")  # ready for the next call
        for sink in kernel.sinks():
            out = pointer_of[id(sink.out)]
            _each_element(builder, sink, lambda element, combiner, typ: builder.store(
                combiner.identity(typ), builder.gep(out, [element], source_etype=typ)))
            with loop(builder, const(0), chunks, name="chunk_partial") as chunk:
                _combine_into(builder, sink, out, chunk_partial(sink, chunk.index))
        for role, member, member_function in members:
            if role == "post":
                call(member, member_function, dims)
    builder.ret_void()
    return function


def _each_element(builder, sink, body):
    """``body(element index, combiner, element type)`` for each element of a sink's output."""
    dtype = sink.node.dtype
    with loop(builder, const(0), const(size(sink.node.shape)), name="element") as element:
        body(element.index, Combiner(sink.node.op.name, dtype), IR_TYPES[dtype])


def _combine_into(builder, sink, accumulator, partial):
    """accumulator[i] = combine(accumulator[i], partial[i]) over a sink's elements."""
    def body(element, combiner, typ):
        target = builder.gep(accumulator, [element], source_etype=typ)
        value = builder.load(builder.gep(partial, [element], source_etype=typ), typ=typ)
        builder.store(combiner.combine(builder, builder.load(target, typ=typ), value), target)
    _each_element(builder, sink, body)
