"""Matmuls whose product has symbolic columns (N known only at run time) on the llvm backend: Gram matrices
X @ X^T, similarities X @ Y^T, symbolic K with symbolic N (B transposed too), batched products, transpose
flags, fused epilogues and gradients, against numpy on the host target and AVX2 with 1, 2 or 3 threads."""
import numpy as np
import pytest

import graphc as gc
from graphc.lower.target import avx2_target, host_target
from graphc.ops.linalg import matmul_t

TARGETS = [pytest.param(None, id="host"), pytest.param("avx2", id="avx2")]
DTYPES = ["float32", "float64"]
# Empty, one, non-multiples of every vector width, more than one panel of every tile.
SIZES = (0, 1, 7, 129)


def _target(name):
    return avx2_target() if name == "avx2" else host_target()


def _compile(inputs, output, target, threads):
    return gc.function(inputs, output, backend="llvm", threads=threads, target=_target(target))


def _random(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def _check(f, arrays, expected, dtype):
    got = f(*arrays)
    assert got.shape == expected.shape
    if dtype == "float32":
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def _f64(*arrays):
    return [a.astype(np.float64) for a in arrays]


def _gemm_kernels(f):
    return [k for k in f.program.schedule.kernels if k.node.op.kind == "matmul"]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target", TARGETS)
def test_gram_matrix(target, dtype, threads):
    """X @ X^T with X (batch, 8): M = N = batch; the issue's failing example."""
    x = gc.placeholder(("batch", 8), dtype)
    f = _compile([x], x @ gc.transpose(x), target, threads)
    assert [k.node.attrs["transpose_b"] for k in _gemm_kernels(f)] == [True]
    rng = np.random.default_rng(0)
    for batch in SIZES:
        data = _random(rng, (batch, 8), dtype)
        (x64,) = _f64(data)
        _check(f, [data], x64 @ x64.T, dtype)


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target", TARGETS)
def test_symbolic_rows_columns_and_depth(target, dtype, threads):
    """N symbolic with K static and M static; M and N different symbols; K symbolic with N symbolic."""
    rng = np.random.default_rng(1)
    cases = []  # (inputs, output, the input shapes for given n, m, k, the numpy product)
    product = np.matmul
    a, b = gc.placeholder((5, 8), dtype), gc.placeholder((8, "m"), dtype)  # only N symbolic
    cases.append(([a, b], a @ b, lambda n, m, k: [(5, 8), (8, m)], product))
    a, b = gc.placeholder(("n", 8), dtype), gc.placeholder((8, "m"), dtype)  # M and N, different symbols
    cases.append(([a, b], a @ b, lambda n, m, k: [(n, 8), (8, m)], product))
    a, b = gc.placeholder(("n", 3), dtype), gc.placeholder((3, "n"), dtype)  # M and N, the same symbol
    cases.append(([a, b], a @ b, lambda n, m, k: [(n, 3), (3, n)], product))
    a, b = gc.placeholder(("n", "k"), dtype), gc.placeholder(("k", "m"), dtype)  # M, N and K
    cases.append(([a, b], a @ b, lambda n, m, k: [(n, k), (k, m)], product))
    a, b = gc.placeholder(("n", "k"), dtype), gc.placeholder(("m", "k"), dtype)  # the same, B transposed
    cases.append(([a, b], a @ gc.transpose(b), lambda n, m, k: [(n, k), (m, k)], lambda p, q: p @ q.T))
    x = gc.placeholder(("batch", 8), dtype)  # X^T @ X: K = batch, N static
    cases.append(([x], gc.transpose(x) @ x, lambda n, m, k: [(k, 8)], lambda p: p.T @ p))
    for inputs, output, shapes, reference in cases:
        f = _compile(inputs, output, target, threads)
        for n, m, k in [(0, 3, 2), (3, 0, 2), (7, 129, 5), (129, 7, 0), (1, 1, 1), (33, 24, 17)]:
            arrays = [_random(rng, shape, dtype) for shape in shapes(n, m, k)]
            _check(f, arrays, reference(*_f64(*arrays)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("transpose_a,transpose_b", [(False, False), (True, False), (False, True), (True, True)])
def test_transpose_flags(target, dtype, transpose_a, transpose_b):
    """op(A) @ op(B) with M = n and N = m symbolic, K static, for every pair of flags (read by the GEMM)."""
    a = gc.placeholder((6, "n") if transpose_a else ("n", 6), dtype)
    b = gc.placeholder(("m", 6) if transpose_b else (6, "m"), dtype)
    rng = np.random.default_rng(2)
    for threads in (1, 2, 3):
        f = _compile([a, b], matmul_t(a, b, transpose_a, transpose_b), target, threads)
        for n, m in [(0, 5), (5, 0), (1, 1), (7, 129), (129, 37)]:
            arrays = [_random(rng, (6, n) if transpose_a else (n, 6), dtype),
                      _random(rng, (m, 6) if transpose_b else (6, m), dtype)]
            wa, wb = _f64(*arrays)
            _check(f, arrays, (wa.T if transpose_a else wa) @ (wb.T if transpose_b else wb), dtype)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target", TARGETS)
def test_batched(target, dtype, threads):
    """Batched products with symbolic columns: (b, n, 4) @ its transpose, and a batch broadcast against a
    matrix with symbolic columns."""
    x = gc.placeholder(("b", "n", 4), dtype)
    gram = _compile([x], gc.matmul(x, gc.transpose(x, (0, 2, 1))), target, threads)
    y, w = gc.placeholder((3, "n", 4), dtype), gc.placeholder((4, "m"), dtype)
    broadcast = _compile([y, w], gc.matmul(y, w), target, threads)
    rng = np.random.default_rng(3)
    for b, n, m in [(0, 3, 2), (2, 0, 3), (1, 1, 1), (3, 7, 129), (2, 37, 0)]:
        data = _random(rng, (b, n, 4), dtype)
        (wide,) = _f64(data)
        _check(gram, [data], wide @ np.swapaxes(wide, 1, 2), dtype)
        arrays = [_random(rng, (3, n, 4), dtype), _random(rng, (4, m), dtype)]
        wy, ww = _f64(*arrays)
        _check(broadcast, arrays, wy @ ww, dtype)


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("target", TARGETS)
def test_fused_epilogues(target, dtype, threads):
    """relu(X @ Y^T + c) with a bias row c of symbolic length, plus a full (n, m) operand (rows N apart)
    and a column: all fused into the GEMM and applied per output vector, the right edge in pieces."""
    x, y = gc.placeholder(("n", 8), dtype), gc.placeholder(("m", 8), dtype)
    c, z, col = gc.placeholder(("m",), dtype), gc.placeholder(("n", "m"), dtype), gc.placeholder(("n", 1), dtype)
    output = gc.relu(x @ gc.transpose(y) + c) * z - col
    f = _compile([x, y, c, z, col], output, target, threads)
    assert [k.node.op.name for k in _gemm_kernels(f)] == ["fused_matmul"]
    rng = np.random.default_rng(4)
    for n, m in [(0, 4), (4, 0), (1, 1), (7, 129), (129, 7), (33, 37)]:
        arrays = [_random(rng, shape, dtype) for shape in [(n, 8), (m, 8), (m,), (n, m), (n, 1)]]
        wx, wy, wc, wz, wcol = _f64(*arrays)
        _check(f, arrays, np.maximum(wx @ wy.T + wc, 0) * wz - wcol, dtype)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("target", TARGETS)
def test_gradient_of_a_gram_loss(target, threads):
    """d/dX sum((X X^T)^2) = 4 X X^T X: the backward products have symbolic K and N too."""
    x = gc.placeholder(("batch", 8), "float64")
    loss = gc.sum(gc.square(x @ gc.transpose(x)))
    f = _compile([x], gc.grad(loss, [x])[0], target, threads)
    rng = np.random.default_rng(5)
    for batch in SIZES:
        data = rng.standard_normal((batch, 8))
        _check(f, [data], 4 * data @ data.T @ data, "float64")


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("target", TARGETS)
def test_gradients_of_products_with_symbolic_columns(target, threads):
    """loss = sum((A @ B)^2) + sum(relu(X @ Y^T)): dA = 2 C B^T is a product with a symbolic K and B
    transposed, the others have a symbolic N or K."""
    a, b = gc.placeholder(("n", 8), "float64"), gc.placeholder((8, "m"), "float64")
    x, y = gc.placeholder(("n", 5), "float64"), gc.placeholder(("m", 5), "float64")
    loss = gc.sum(gc.square(a @ b)) + gc.sum(gc.relu(x @ gc.transpose(y)))
    f = _compile([a, b, x, y], gc.grad(loss, [a, b, x, y]), target, threads)
    assert any(k.node.attrs["transpose_b"] and not isinstance(k.node.inputs[1].shape[-1], int)
               for k in _gemm_kernels(f))  # dA: K = m
    rng = np.random.default_rng(6)
    for n, m in [(0, 3), (3, 0), (1, 1), (7, 129), (129, 37)]:
        arrays = [rng.standard_normal(shape) for shape in [(n, 8), (8, m), (n, 5), (m, 5)]]
        wa, wb, wx, wy = arrays
        product, mask = wa @ wb, (wx @ wy.T > 0).astype(float)
        expected = [2 * product @ wb.T, 2 * wa.T @ product, mask @ wy, mask.T @ wx]
        for got, want in zip(f(*arrays), expected):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("a_shape, b_shape", [((0, 3), (3, 2)), ((2, 0), (0, 2)), ((2, 3), (3, 0))])
def test_empty_products_and_their_gradients(a_shape, b_shape):
    """A static 0 as M, K or N (found by the fuzzer: K = 0 or N = 0 was refused as an invalid GEMM shape):
    the product is empty or epilogue(0), as numpy's."""
    a, b = gc.placeholder(a_shape, "float32"), gc.placeholder(b_shape, "float32")
    outputs = [a @ b, gc.relu(a @ b + 1.0), *gc.grad(gc.sum(a @ b), [a, b])]
    values = [np.ones(a_shape, np.float32), np.ones(b_shape, np.float32)]
    expected = gc.function([a, b], outputs, backend="reference")(*values)
    for got, want in zip(gc.function([a, b], outputs)(*values), expected):
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)
