"""Lowering ``matmul`` and ``fused_matmul`` onto the GEMM generator.

A fused_matmul's epilogue (an elementwise body over %0 = the product and %1.. = extra
operands such as a bias row or an activation mask) is lowered by the elementwise
expression lowering, inside the GEMM, on each output vector while it is still in registers.

A product whose A operand is a folded take (``folded_take``: take(x, indices, axis=0), never computed) reads
A's rows from x through the indices (trans_a: A's k's); its kernel takes the indices' buffer after the
epilogue's operands, checks them all first, and computes nothing when one is out of range (graphc/lower/gather.py).
"""
from contextlib import contextmanager
from dataclasses import dataclass

from llvmlite import ir

from .epilogue import apply_updates, epilogue_value, update_arguments
from .gather import emit_index_check, folded_take, status_word
from .gemm import GemmSpec, emit_gemm, gemm_workspace_elems, store_to_c
from .irutil import (I64, IR_TYPES, ITEMSIZE, PTR, KernelBuilder, const, dim_value, dot_offset, loop, size_of, splat,
                     unravel, vector_type)
from .strided import broadcast_strides


def gemm_spec(node) -> GemmSpec:
    """The GEMM of one matrix of the (possibly batched) product. A symbolic N or K, and a static 0 (an
    empty product: nothing to write, or C = epilogue(0)), are read at run time. A product the autocast pass
    marked ``precision=bfloat16`` rounds its operands to bfloat16 as it packs them. A folded take's indices
    pick A's rows."""
    m, n = node.shape[-2:]
    take = folded_take(node)
    return GemmSpec(node.dtype, m if isinstance(m, int) else None,
                    *(d if isinstance(d, int) and d > 0 else None for d in (n, _depth(node))),
                    node.attrs["transpose_a"], node.attrs["transpose_b"],
                    precision=node.attrs.get("precision", "float32"),
                    gather_a=None if take is None else take.inputs[1].dtype)


def _depth(node):
    """K, the contracted dimension (an int or a sympy expression)."""
    return node.inputs[0].shape[-2 if node.attrs["transpose_a"] else -1]


def scratch_bytes_per_thread(node, target):
    """An int, or a sympy expression of K when K is symbolic and B is packed (transpose_b): the runtime
    evaluates it at each call."""
    return gemm_workspace_elems(gemm_spec(node), target, k=_depth(node)) * ITEMSIZE[node.dtype]


def emit_matmul(module, name, node, target, dim_index, updates=(), store_product=True) -> ir.Function:
    """``void name(C, A, B, extras..., [update pointers...], scratch, i64 *dims, i32 tid, i32 nthreads)``:
    a GEMM specialised for the node's shapes and transposes (M, N and K may be symbolic: read from dims),
    with the node's epilogue (if fused) applied per output vector, then ``updates`` (see
    program._fuse_updates_into_producers): (update node, sources) pairs whose pointers are the update's output
    then one per "load" source. ``store_product=False``: the product is never written (C may be null)."""
    return emit_gemm_kernel(module, name, node, gemm_spec(node), node.shape[-2], _depth(node), target, dim_index,
                            updates, store_product)


def emit_gemm_kernel(module, name, node, spec, rows, depth, target, dim_index, updates=(), store_product=True,
                     pack_a=None) -> ir.Function:
    """The kernel function around one GEMM of ``spec`` per matrix of ``node`` (``rows``: M, ``depth``: K, as
    dims), the node's inputs after its first two being its epilogue's operands. ``pack_a``: see gemm.py (its
    ``args`` hold ``dims``, the run-time dims pointer). A folded take's indices come after the extras."""
    extras, take = node.inputs[2:], folded_take(node)
    gather = [] if take is None else [("A.indices", PTR), ("A.rows", I64)]
    update_args = update_arguments(updates)
    extra_args = [(f"extra{i}", PTR) for i in range(len(extras))] + gather + [(n, PTR) for n in update_args]
    extra_args.append(("dims", PTR))
    epilogue = None
    if "epilogue" in node.attrs or updates or not store_product:
        epilogue = GemmEpilogue(node, dim_index, list(updates), store_product)
    gemm = emit_gemm(module, f"{name}_gemm", spec, target, epilogue, extra_args, pack_a)
    gemm.linkage = "internal"
    kb = KernelBuilder.create(module, name, 2 + len(extras) + (take is not None) + len(update_args) + 1, dim_index)
    a, b, *epilogue_pointers, scratch = kb.inputs
    rows = const(spec.M) if spec.M is not None else kb.dim(rows)
    depth = [] if spec.K is not None else [kb.dim(depth)]
    columns = [] if spec.N is not None else [kb.dim(node.shape[-1])]
    thread_args = kb.function.args[-2:]
    with _indices_checked(kb, take, epilogue_pointers, len(extras)), \
            _for_each_matrix(kb, node, [a, b, kb.out]) as (a, b, c):
        kb.builder.call(gemm, [a, b, c, rows, scratch, *thread_args, *depth, *columns, *epilogue_pointers,
                               kb.dims])
    return kb.finish()


@contextmanager
def _indices_checked(kb, take, pointers, at):
    """For a folded ``take`` (else nothing): the GEMM's body runs only when all the take's indices (the
    kernel's pointer ``pointers[at]``) are in range, and the stored rows of A join the GEMM's arguments after
    them ("A.indices", "A.rows"); a bad one is recorded in the kernel's status word."""
    if take is None:
        yield
        return
    x, indices = take.inputs
    stored_rows = kb.dim(x.shape[0])
    pointers.insert(at + 1, stored_rows)
    status = status_word(kb.function.module, kb.function.name)
    good = emit_index_check(kb, pointers[at], indices.dtype, kb.dim(size_of(indices.shape)), stored_rows, status)
    with kb.builder.if_then(good):
        yield


@contextmanager
def _for_each_matrix(kb, node, pointers):
    """Yield the operands' and the result's matrix pointers for each matrix of a batched product
    (once, unchanged, for a 2-D one); a broadcast batch axis has stride 0 in its operand."""
    batch_shape = node.shape[:-2] if node.op.kind == "matmul" else ()
    if not batch_shape:
        yield pointers
        return
    b = kb.builder
    operands = [*node.inputs[:2], node]
    strides = [[kb.dim(s) for s in broadcast_strides(o.shape[:-2], batch_shape)] for o in operands]
    matrix_sizes = [kb.dim(size_of(o.shape[-2:])) for o in operands]
    sizes = [kb.dim(d) for d in batch_shape]
    with loop(b, const(0), kb.dim(size_of(batch_shape)), name="matrix") as matrix:
        index = unravel(b, matrix.index, sizes)
        yield [b.gep(pointer, [b.mul(dot_offset(b, index, stride, const(0)), matrix_size)],
                     source_etype=IR_TYPES[node.dtype])
               for pointer, stride, matrix_size in zip(pointers, strides, matrix_sizes)]


@dataclass
class GemmEpilogue:
    """Called by the GEMM once per output vector C[row, col:col+lanes] after the K sum: the node's own
    epilogue body (fused_matmul), the store of the product (unless nobody reads it), then the updates."""

    node: object
    dim_index: dict
    updates: list
    store_product: bool

    def __call__(self, builder, row, col, acc, lanes, args):
        node, scope = self.node, _Scope(builder, args["dims"], self.dim_index)
        product = acc
        if "epilogue" in node.attrs:
            product = epilogue_value(scope, node, acc, lanes, lambda k, extra: self._load(
                builder, args[f"extra{k}"], extra, row, col, lanes, args["N"]))
        if self.store_product:
            store_to_c(builder, row, col, product, lanes, args)
        apply_updates(scope, self.updates, product, node.dtype, lanes,
                      load=lambda name, operand: self._load(builder, args[name], operand, row, col, lanes, args["N"]),
                      store=lambda name, value, _: store_to_c(builder, row, col, value, lanes, {**args, "C": args[name]}))

    @staticmethod
    def _load(builder, pointer, operand, row, col, lanes, n):
        """operand[row, col:col+lanes] with numpy broadcasting onto the (M, N) product."""
        rows, cols = ((1,) * (2 - operand.ndim) + tuple(operand.shape))[-2:]
        offset = const(0)
        if rows != 1:
            offset = builder.mul(row, const(cols) if isinstance(cols, int) else n)
        element = IR_TYPES[operand.dtype]
        if cols == 1:
            value = builder.load(builder.gep(pointer, [offset], source_etype=element), typ=element,
                                 align=ITEMSIZE[operand.dtype])
            return value if lanes == 1 else splat(builder, value, lanes)
        address = builder.gep(pointer, [builder.add(offset, col)], source_etype=element)
        return builder.load(address, typ=vector_type(operand.dtype, lanes), align=ITEMSIZE[operand.dtype])


@dataclass
class _Scope:
    """What the expression lowering needs from a kernel: a builder and the run-time dims."""

    builder: ir.IRBuilder
    dims: ir.Value
    dim_index: dict

    def dim(self, expr):
        return dim_value(self.builder, expr, self.dims, self.dim_index)


