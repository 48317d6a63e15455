"""Matrix products. ``matmul`` is the primitive (batched, with operand-transpose flags that the
GEMM kernel reads directly); ``dot`` is numpy's dot expressed through it."""
import numpy as np

from ..graph.node import GraphError, Node, user_location
from ..graph.shapes import broadcast_shapes, describe_dim, format_shape, resolve_dim, unify_dims, unifying
from .registry import Op, apply
from .shape import reshape, transpose, unbroadcast


def _matrix_dims(x, transposed):
    rows, cols = x.shape[-2:]
    return (cols, rows) if transposed else (rows, cols)


def _matmul_infer(inputs, attrs):
    a, b = inputs
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError("matmul operands must have at least 2 dimensions")
    if a.dtype != b.dtype:
        raise ValueError(f"operand dtypes differ ({a.dtype} and {b.dtype}); cast one of them")
    if a.dtype not in ("float32", "float64"):
        raise ValueError(f"matmul needs float operands, got {a.dtype}")
    m, k = _matrix_dims(a, attrs["transpose_a"])
    k2, n = _matrix_dims(b, attrs["transpose_b"])
    with unifying():  # an anonymous contracted or batch dim is unified with the other operand's
        if unify_dims(k, k2) is None:
            raise ValueError(f"contracted dimensions differ: {describe_dim(k)} and {describe_dim(k2)}")
        try:
            batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError as error:
            raise ValueError(f"batch dimensions do not broadcast: {error}") from None
    return batch + (resolve_dim(m), resolve_dim(n)), a.dtype


def _matmul_reference(node, arrays, dims):
    a, b = arrays
    if node.attrs["transpose_a"]:
        a = np.swapaxes(a, -1, -2)
    if node.attrs["transpose_b"]:
        b = np.swapaxes(b, -1, -2)
    return np.matmul(a, b)


def _matmul_vjp(node, g):
    """With C = op(A) op(B): d op(A) = g op(B)^T and d op(B) = op(A)^T g; a transposed operand
    takes the transpose of that, which is again one matmul with other flags."""
    a, b = node.inputs
    ta, tb = node.attrs["transpose_a"], node.attrs["transpose_b"]
    grad_a = matmul_t(b, g, tb, True) if ta else matmul_t(g, b, False, not tb)
    grad_b = matmul_t(g, a, True, ta) if tb else matmul_t(a, g, not ta, False)
    return [unbroadcast(grad_a, a.shape), unbroadcast(grad_b, b.shape)]


matmul_op = Op("matmul", _matmul_infer, _matmul_reference, _matmul_vjp, kind="matmul")


def matmul_t(a, b, transpose_a=False, transpose_b=False):
    """op(a) @ op(b) where op transposes the last two axes when its flag is set."""
    return apply(matmul_op, [a, b], {"transpose_a": bool(transpose_a), "transpose_b": bool(transpose_b)})


def _as_tensors(a, b):
    """A numpy operand (``array @ x``) becomes a constant of the tensor operand's dtype."""
    from .source import constant
    dtype = (a if isinstance(a, Node) else b).dtype
    return [t if isinstance(t, Node) else constant(np.asarray(t, dtype=dtype)) for t in (a, b)]


def matmul(a, b):
    """numpy.matmul: batched matrix product, broadcasting the batch axes; 1-D operands as vectors."""
    with unifying():  # a refused product unifies no dims
        return _matmul(a, b)


def _matmul(a, b):
    a, b = _as_tensors(a, b)
    _check_operands("matmul", a, b)
    if a.ndim == 1 and b.ndim == 1:
        return reshape(matmul_t(reshape(a, (1, a.shape[0])), reshape(b, (b.shape[0], 1))), ())
    if a.ndim == 1:
        product = matmul_t(reshape(a, (1, a.shape[0])), b)
        return reshape(product, product.shape[:-2] + product.shape[-1:])
    if b.ndim == 1:
        product = matmul_t(a, reshape(b, (b.shape[0], 1)))
        return reshape(product, product.shape[:-1])
    return matmul_t(a, b)


def dot(a, b):
    """numpy.dot: for N-D ``a`` and M-D ``b`` (M >= 2), a sum over a's last axis and b's second-to-last."""
    with unifying():
        return _dot(a, b)


def _dot(a, b):
    a, b = _as_tensors(a, b)
    _check_operands("dot", a, b)
    if b.ndim <= 2 and a.ndim <= 2:
        return matmul(a, b)
    if b.ndim == 1:
        return reshape(matmul(reshape(a, (-1, a.shape[-1])), b), a.shape[:-1])
    # Move b's contracted axis first and flatten the rest: one 2-D product, then restore the axes.
    axes = (b.ndim - 2,) + tuple(i for i in range(b.ndim) if i != b.ndim - 2)
    b_matrix = reshape(transpose(b, axes), (b.shape[-2], -1))
    a_matrix = reshape(a, (-1, a.shape[-1])) if a.ndim > 1 else reshape(a, (1, a.shape[0]))
    return reshape(matmul_t(a_matrix, b_matrix), a.shape[:-1] + b.shape[:-2] + b.shape[-1:])


def _check_operands(label, a, b):
    if a.ndim == 0 or b.ndim == 0:
        raise GraphError(f"{label}: operands must have at least one dimension, got shapes "
                         f"{format_shape(a.shape)} and {format_shape(b.shape)} (at {user_location()})")
    contracted_a = a.shape[-1]
    contracted_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if unify_dims(contracted_a, contracted_b) is None:  # an anonymous one is unified with the other
        raise GraphError(f"{label}: shapes {format_shape(a.shape)} and {format_shape(b.shape)} are not aligned: "
                         f"{describe_dim(contracted_a)} (last axis of the first) != {describe_dim(contracted_b)} (axis "
                         f"{0 if b.ndim == 1 else b.ndim - 2} of the second) (at {user_location()})")


# ---- matmul with a fused epilogue (built by the optimizer, never by users) -----------------
def _fused_infer(inputs, attrs):
    shape, dtype = _matmul_infer(inputs[:2], attrs)
    try:
        broadcast_shapes(shape, *[i.shape for i in inputs[2:]])
    except ValueError as error:
        raise ValueError(f"epilogue operands do not broadcast onto the product: {error}") from None
    return shape, dtype


def _fused_reference(node, arrays, dims):
    from .expr import evaluate
    product = _matmul_reference(node, arrays[:2], dims)
    return evaluate(node.attrs["epilogue"], [product, *arrays[2:]], dims, node.dtype)


# The epilogue is an elementwise body over %0 = the product tile and %1.. = the extra operands
# (bias row, activation mask): the GEMM applies it while the tile is still in registers.
fused_matmul_op = Op("fused_matmul", _fused_infer, _fused_reference, None, kind="matmul")
