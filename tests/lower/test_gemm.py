"""Tests for the target description, the JIT and the generated GEMM kernels.

Compilation dominates the run time, so all GEMMs for one target are emitted
into a single module and compiled once (module-scoped fixture).
"""
import ctypes
import mmap
import threading

import numpy as np
import pytest
from llvmlite import ir

from graphc.lower.gemm import GemmSpec, emit_gemm, gemm_workspace_elems, store_to_c
from graphc.lower.jit import compile_module, emit_objects, load_objects
from graphc.lower.target import Target, avx2_target, host_target

ODD_MS = (1, 7, 129)
ODD_NK = ((1, 1), (10, 3), (17, 129), (513, 7))
TRANSPOSES = ((False, False), (True, False), (False, True), (True, True))

# Runtime-M GEMMs: every dtype, odd (N, K) and transpose combination.
RUNTIME_M_SPECS = [GemmSpec(dtype, None, n, k, ta, tb)
                   for dtype in ("float32", "float64")
                   for n, k in ODD_NK
                   for ta, tb in TRANSPOSES]
# Static-M GEMMs: fewer combinations, the code paths are shared.
STATIC_M_SPECS = (
    [GemmSpec("float32", m, 17, 129, ta, tb) for m in ODD_MS for ta, tb in ((False, False), (True, True))]
    + [GemmSpec("float64", m, 10, 3, ta, tb) for m in ODD_MS for ta, tb in ((True, False), (False, True))]
)
# The MNIST training step (M is the batch, symbolic, unless it is a weight dim).
MNIST_SPECS = [
    (GemmSpec("float32", None, 512, 784), 128),                # x @ W1
    (GemmSpec("float32", None, 10, 512), 128),                 # h @ W2
    (GemmSpec("float32", 784, 512, 128, trans_a=True), 784),   # x^T @ dh
    (GemmSpec("float32", None, 512, 10, trans_b=True), 128),   # dy @ W2^T
    (GemmSpec("float32", 512, 10, 128, trans_a=True), 512),    # h^T @ dy
]
# Runtime K (the batch of a weight gradient), B stored K x N.
RUNTIME_K_SPECS = ([GemmSpec("float32", m, n, None, ta) for m in (None, 7) for n in (10, 33)
                    for ta in (False, True)]
                   + [GemmSpec("float64", None, 17, None, ta) for ta in (False, True)])
RUNTIME_KS = (0, 1, 5, 128)
BIAS_RELU_SPECS = [GemmSpec("float32", None, 10, 33), GemmSpec("float64", None, 40, 5, trans_b=True)]
ACCUMULATE_SPEC = GemmSpec("float32", None, 37, 300, trans_a=True)

# The weight gradients as the training step sees them: K is the batch.
MNIST_RUNTIME_K_SPECS = [
    (GemmSpec("float32", 784, 512, None, trans_a=True), 784, 128),   # x^T @ dh
    (GemmSpec("float32", 512, 10, None, trans_a=True), 512, 128),    # h^T @ dy
]

# Runtime N (Gram matrices X @ X^T, where N is the batch), as (dtype, M, K, trans_a, trans_b).
RUNTIME_N_CASES = (
    [("float32", None, k, ta, tb) for k in (1, 17) for ta, tb in TRANSPOSES]
    + [("float64", None, 8, ta, tb) for ta, tb in TRANSPOSES]
    + [("float32", 7, 129, ta, tb) for ta, tb in ((False, False), (True, True))]      # static M
    + [(dtype, None, None, ta, False) for dtype in ("float32", "float64") for ta in (False, True)]  # runtime K
)
# Empty, one column, non-multiples of every vector width, whole vectors but not whole panels,
# several panels with a partial one.
RUNTIME_NS = (0, 1, 7, 16, 24, 37, 129)
RUNTIME_N_MS = (0, 1, 7, 129)
# Wider than one packed B block (_RUNTIME_N_BLOCK_COLS columns): several B blocks per thread.
WIDE_N = 2100
# Runtime K with B stored N x K (the gradient g @ B^T of a product with symbolic columns): B is
# packed K deep, the workspace grows with K.  (dtype, M, N, trans_a), N None: runtime N too.
RUNTIME_K_TRANS_B_CASES = ([("float32", m, n, ta) for m in (None, 7) for n in (17, None) for ta in (False, True)]
                           + [("float64", None, n, True) for n in (10, None)])
RUNTIME_N_BIAS_RELU = [("float32", None, 33, False, False), ("float64", None, 5, False, True),
                       ("float32", None, None, True, False)]
RUNTIME_N_ACCUMULATE = ("float32", None, 300, True, False)

GEMM_ARGTYPES = [ctypes.c_void_p] * 3 + [ctypes.c_int64, ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32]

TARGETS = {"host": host_target, "avx2": avx2_target}


def bias_relu_epilogue(builder, row, col, acc, lanes, args):
    """C[row, col:col+lanes] = max(acc + bias[col:col+lanes], 0)."""
    element = acc.type if lanes == 1 else acc.type.element
    bias_type = element if lanes == 1 else ir.VectorType(element, lanes)
    bias_ptr = builder.gep(args["bias"], [col], source_etype=element)
    biased = builder.fadd(acc, builder.load(bias_ptr, typ=bias_type, align=4))
    zero = ir.Constant(bias_type, 0.0 if lanes == 1 else [0.0] * lanes)
    relu = builder.select(builder.fcmp_ordered(">", biased, zero), biased, zero)
    store_to_c(builder, row, col, relu, lanes, args)


def accumulate_epilogue(builder, row, col, acc, lanes, args):
    """C += acc: would double-count if the hook ran twice for an element."""
    element = acc.type if lanes == 1 else acc.type.element
    pointer = builder.gep(args["C"], [builder.add(builder.mul(row, args["N"]), col)],
                          source_etype=element)
    builder.store(builder.fadd(builder.load(pointer, typ=acc.type, align=4), acc), pointer, align=4)


def default_gemms(add):
    for spec in (RUNTIME_M_SPECS + STATIC_M_SPECS + RUNTIME_K_SPECS
                 + [s for s, _ in MNIST_SPECS] + [s for s, _, _ in MNIST_RUNTIME_K_SPECS]):
        add(spec)
    for spec in BIAS_RELU_SPECS:
        add(spec, "bias_relu", epilogue=bias_relu_epilogue, extra_args=[("bias", ir.PointerType())])
    add(ACCUMULATE_SPEC, "accumulate", epilogue=accumulate_epilogue)


def runtime_n_spec(case):
    dtype, m, k, ta, tb = case
    return GemmSpec(dtype, m, None, k, ta, tb)


def runtime_k_trans_b_spec(case):
    dtype, m, n, ta = case
    return GemmSpec(dtype, m, n, None, ta, True)


def runtime_n_gemms(add):
    for case in RUNTIME_N_CASES:
        add(runtime_n_spec(case))
    for case in RUNTIME_K_TRANS_B_CASES:
        add(runtime_k_trans_b_spec(case))
    for case in RUNTIME_N_BIAS_RELU:
        add(runtime_n_spec(case), "bias_relu", epilogue=bias_relu_epilogue,
            extra_args=[("bias", ir.PointerType())])
    add(runtime_n_spec(RUNTIME_N_ACCUMULATE), "accumulate", epilogue=accumulate_epilogue)


class CompiledGemms:
    """The test GEMMs `populate(add)` lists, for one target, compiled into one module."""

    def __init__(self, target: Target, populate=default_gemms):
        self.target = target
        self.names = {}
        module = ir.Module()
        populate(lambda spec, flavour="plain", **kwargs: self._add(module, spec, flavour, **kwargs))
        self.compiled = compile_module(module, target)

    def _add(self, module, spec, flavour="plain", **kwargs):
        name = f"gemm{len(self.names)}"
        emit_gemm(module, name, spec, self.target, **kwargs)
        self.names[(spec, flavour)] = name

    def function(self, spec, flavour="plain", extra_args=0):
        address = self.compiled.address(self.names[(spec, flavour)])
        runtime_k = [ctypes.c_int64] if spec.K is None else []
        runtime_n = [ctypes.c_int64] if spec.N is None else []
        return ctypes.CFUNCTYPE(None, *GEMM_ARGTYPES, *runtime_k, *runtime_n,
                                *[ctypes.c_void_p] * extra_args)(address)


@pytest.fixture(scope="module", params=sorted(TARGETS))
def gemms(request):
    return CompiledGemms(TARGETS[request.param]())


@pytest.fixture(scope="module", params=sorted(TARGETS))
def runtime_n_gemms_compiled(request):
    return CompiledGemms(TARGETS[request.param](), runtime_n_gemms)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def at_page_end(array):
    """A copy of `array` whose last byte is followed by an inaccessible page:
    a kernel reading or writing past its end crashes instead of passing."""
    page = mmap.PAGESIZE
    pages = -(-array.nbytes // page) + 1
    buffer = mmap.mmap(-1, pages * page)
    address = ctypes.addressof(ctypes.c_char.from_buffer(buffer))
    assert _libc.mprotect(address + (pages - 1) * page, page, 0) == 0
    copy = np.frombuffer(buffer, array.dtype, count=array.size,
                         offset=(pages - 1) * page - array.nbytes).reshape(array.shape)
    copy[...] = array
    return copy


def make_operands(spec, m, seed=0, k=None, n=None):
    rng = np.random.default_rng(seed)
    k = spec.K if k is None else k
    n = spec.N if n is None else n
    a = rng.standard_normal((k, m) if spec.trans_a else (m, k)).astype(spec.dtype)
    b = rng.standard_normal((n, k) if spec.trans_b else (k, n)).astype(spec.dtype)
    reference = ((a.T if spec.trans_a else a).astype(np.float64)
                 @ (b.T if spec.trans_b else b).astype(np.float64))
    return a, b, reference


def workspace_elems(spec, target, k):
    """Per-thread workspace; it depends on the run-time K when B is stored N x K."""
    if spec.K is None and spec.trans_b:
        return gemm_workspace_elems(spec, target, k)
    return gemm_workspace_elems(spec, target)


def run_gemm(gemms, spec, a, b, m, nthreads=1, concurrent=False, c=None, flavour="plain",
             extra=(), k=None, n=None):
    """Call the kernel once per tid (sequentially or from Python threads) and
    return C, which starts as NaN so unwritten elements show up."""
    n = spec.N if n is None else n
    if c is None:
        c = np.full((m, n), np.nan, spec.dtype)
    workspace = np.full(workspace_elems(spec, gemms.target, k) * nthreads, np.nan, spec.dtype)
    function = gemms.function(spec, flavour, len(extra))
    args = [a.ctypes.data, b.ctypes.data, c.ctypes.data, m, workspace.ctypes.data]
    runtime_k = [k] if spec.K is None else []
    runtime_n = [n] if spec.N is None else []
    calls = [lambda tid=tid: function(*args, tid, nthreads, *runtime_k, *runtime_n,
                                      *(x.ctypes.data for x in extra))
             for tid in range(nthreads)]
    if concurrent:
        workers = [threading.Thread(target=call) for call in calls]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    else:
        for call in calls:
            call()
    return c


def assert_close(c, reference, spec, k=None):
    k = spec.K if k is None else k
    tolerance = 10 * np.finfo(spec.dtype).eps * max(k, 1) * max(1.0, np.abs(reference).max(initial=0))
    np.testing.assert_allclose(c, reference, rtol=0, atol=tolerance)


# -- target and JIT ------------------------------------------------------------

def test_targets_describe_vectors():
    avx2 = avx2_target()
    assert (avx2.lanes("float32"), avx2.lanes("float64"), avx2.vector_registers) == (8, 4, 16)
    host = host_target()
    assert host.lanes("float32") * 4 == host.vector_bytes
    assert host.vector_registers == (32 if "+avx512f" in host.features.split(",") else 16)
    with pytest.raises(ValueError):
        host.lanes("int8")


ADD_ONE_IR = """
define double @add_one(double %x) {
  %y = fadd double %x, 1.0
  ret double %y
}
"""


def test_compile_module_from_text_and_introspection():
    compiled = compile_module(ADD_ONE_IR, host_target())
    add_one = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double)(compiled.address("add_one"))
    assert add_one(2.5) == 3.5
    assert "define double @add_one" in compiled.llvm_ir
    assert "add_one:" in compiled.asm
    with pytest.raises(KeyError):
        compiled.address("missing")


def test_object_code_round_trip_links_objects():
    """Objects compiled apart are linked on loading: add_two calls the add_one another object defines."""
    target = host_target()
    add_two_ir = ('declare double @add_one(double)\n'
                  'define double @add_two(double %x) {\n  %y = call double @add_one(double %x)\n'
                  '  %z = call double @add_one(double %y)\n  ret double %z\n}\n')
    loaded = load_objects(emit_objects([ADD_ONE_IR, add_two_ir], target), target)
    signature = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double)
    assert signature(loaded.address("add_one"))(-1.0) == 0.0
    assert signature(loaded.address("add_two"))(-1.0) == 1.0


@pytest.mark.parametrize("target_name", sorted(TARGETS))
def test_kernel_uses_the_targets_vector_width(target_name):
    target = TARGETS[target_name]()
    module = ir.Module()
    emit_gemm(module, "g", GemmSpec("float32", None, 64, 16), target)
    asm = compile_module(module, target).asm
    register = {16: "xmm", 32: "ymm", 64: "zmm"}[target.vector_bytes]
    assert "vfmadd" in asm and register in asm
    if target.vector_bytes < 64:
        assert "zmm" not in asm


# -- GEMM correctness ------------------------------------------------------------

@pytest.mark.parametrize("spec", RUNTIME_M_SPECS, ids=str)
def test_runtime_m(gemms, spec):
    for m in ODD_MS:
        a, b, reference = make_operands(spec, m)
        for nthreads in (1, 2):
            assert_close(run_gemm(gemms, spec, a, b, m, nthreads), reference, spec)


@pytest.mark.parametrize("spec", STATIC_M_SPECS, ids=str)
def test_static_m(gemms, spec):
    a, b, reference = make_operands(spec, spec.M)
    for nthreads in (1, 2, 3):
        assert_close(run_gemm(gemms, spec, a, b, spec.M, nthreads), reference, spec)


@pytest.mark.parametrize("spec,m", MNIST_SPECS, ids=str)
def test_mnist_shapes_concurrent_threads(gemms, spec, m):
    a, b, reference = make_operands(spec, m)
    assert_close(run_gemm(gemms, spec, a, b, m), reference, spec)
    assert_close(run_gemm(gemms, spec, a, b, m, nthreads=2, concurrent=True), reference, spec)


@pytest.mark.parametrize("spec,m", MNIST_SPECS + [(RUNTIME_M_SPECS[-1], 129)], ids=str)
def test_threads_write_disjoint_parts(gemms, spec, m):
    """Run tid 0 and tid 1 of 2 separately: every element is written by exactly one."""
    a, b, _ = make_operands(spec, m)
    workspace = np.zeros(2 * gemm_workspace_elems(spec, gemms.target), spec.dtype)
    function = gemms.function(spec)
    written = []
    for tid in range(2):
        c = np.full((m, spec.N), np.nan, spec.dtype)
        function(a.ctypes.data, b.ctypes.data, c.ctypes.data, m, workspace.ctypes.data, tid, 2)
        written.append(~np.isnan(c))
    assert np.array_equal(written[0], ~written[1])


@pytest.mark.parametrize("spec", RUNTIME_K_SPECS, ids=str)
def test_runtime_k(gemms, spec):
    assert gemm_workspace_elems(spec, gemms.target) == 0
    for m in ODD_MS if spec.M is None else (spec.M,):
        for k in RUNTIME_KS:
            a, b, reference = make_operands(spec, m, k=k)
            for nthreads in (1, 2):
                c = run_gemm(gemms, spec, a, b, m, nthreads, k=k)
                assert_close(c, reference, spec, k)


@pytest.mark.parametrize("spec,m,k", MNIST_RUNTIME_K_SPECS, ids=str)
def test_mnist_weight_gradients_with_runtime_batch(gemms, spec, m, k):
    a, b, reference = make_operands(spec, m, k=k)
    c = run_gemm(gemms, spec, a, b, m, nthreads=2, concurrent=True, k=k)
    assert_close(c, reference, spec, k)


def test_runtime_k_with_transposed_b_needs_k_for_its_workspace():
    spec = GemmSpec("float32", None, 8, None, trans_b=True)
    with pytest.raises(ValueError, match="pass the run-time K"):
        gemm_workspace_elems(spec, host_target())
    per_k = gemm_workspace_elems(spec, host_target(), 1)
    assert per_k > 0 and gemm_workspace_elems(spec, host_target(), 100) == 100 * per_k


@pytest.mark.parametrize("spec", BIAS_RELU_SPECS, ids=str)
def test_bias_relu_epilogue(gemms, spec):
    m = 9
    a, b, reference = make_operands(spec, m)
    bias = np.random.default_rng(1).standard_normal(spec.N).astype(spec.dtype)
    for nthreads in (1, 2):
        c = run_gemm(gemms, spec, a, b, m, nthreads, flavour="bias_relu", extra=(bias,))
        assert_close(c, np.maximum(reference + bias, 0.0), spec)


def test_epilogue_runs_once_per_element_after_full_k(gemms):
    spec, m = ACCUMULATE_SPEC, 23
    a, b, reference = make_operands(spec, m)
    c = np.zeros((m, spec.N), spec.dtype)
    run_gemm(gemms, spec, a, b, m, nthreads=2, concurrent=True, c=c, flavour="accumulate")
    assert_close(c, reference, spec)


def test_zero_rows_is_a_no_op(gemms):
    spec = RUNTIME_M_SPECS[0]
    a, b, _ = make_operands(spec, 1)
    c = run_gemm(gemms, spec, a, b, 0, nthreads=2)
    assert c.shape == (0, spec.N)


# -- runtime N (the batch as the columns of C: Gram matrices X @ X^T) ----------------

def runtime_n_operands(spec, m, n, k, seed=0):
    """Operands ending at an inaccessible page, C full of NaN likewise: a read
    past B's right edge or a write past C's crashes."""
    a, b, reference = make_operands(spec, m, seed=seed, k=k, n=n)
    return at_page_end(a), at_page_end(b), at_page_end(np.full((m, n), np.nan, spec.dtype)), reference


def test_runtime_n_workspace_does_not_depend_on_n(runtime_n_gemms_compiled):
    target = runtime_n_gemms_compiled.target
    for case in RUNTIME_N_CASES:
        spec = runtime_n_spec(case)
        elems = gemm_workspace_elems(spec, target)
        assert isinstance(elems, int)
        if spec.K is None:
            assert elems == 0
        else:  # one packed B block of a bounded width, plus a partial row tile of A
            assert 0 < elems * np.dtype(spec.dtype).itemsize <= 2 * 1024 * 1024 + spec.K * 16 * 8


@pytest.mark.parametrize("case", RUNTIME_N_CASES, ids=str)
def test_runtime_n(runtime_n_gemms_compiled, case):
    gemms, spec = runtime_n_gemms_compiled, runtime_n_spec(case)
    for k in (spec.K,) if spec.K is not None else (0, 1, 5):
        for m in RUNTIME_N_MS if spec.M is None else (spec.M,):
            for n in RUNTIME_NS:
                a, b, c, reference = runtime_n_operands(spec, m, n, k)
                for nthreads in (1, 2, 3):
                    c[...] = np.nan
                    run_gemm(gemms, spec, a, b, m, nthreads, c=c, k=k, n=n)
                    assert_close(c, reference, spec, k)


@pytest.mark.parametrize("case", [RUNTIME_N_CASES[i] for i in (1, 3, 10, -4, -1)], ids=str)
def test_runtime_n_wider_than_a_packed_block(runtime_n_gemms_compiled, case):
    gemms, spec = runtime_n_gemms_compiled, runtime_n_spec(case)
    k = spec.K if spec.K is not None else 3
    m = spec.M if spec.M is not None else 9
    a, b, c, reference = runtime_n_operands(spec, m, WIDE_N, k)
    for nthreads in (1, 2, 3):
        c[...] = np.nan
        run_gemm(gemms, spec, a, b, m, nthreads, concurrent=nthreads == 2, c=c, k=k, n=WIDE_N)
        assert_close(c, reference, spec, k)


@pytest.mark.parametrize("nthreads", (2, 3))
@pytest.mark.parametrize("m,n", [(129, 37), (7, 129), (1, WIDE_N)])
def test_runtime_n_threads_write_disjoint_parts(runtime_n_gemms_compiled, m, n, nthreads):
    gemms = runtime_n_gemms_compiled
    spec = runtime_n_spec(RUNTIME_N_CASES[2])
    a, b, _ = make_operands(spec, m, n=n)
    workspace = np.zeros(nthreads * gemm_workspace_elems(spec, gemms.target), spec.dtype)
    function = gemms.function(spec)
    writes = np.zeros((m, n), int)
    for tid in range(nthreads):
        c = np.full((m, n), np.nan, spec.dtype)
        function(a.ctypes.data, b.ctypes.data, c.ctypes.data, m, workspace.ctypes.data, tid, nthreads, n)
        writes += ~np.isnan(c)
    assert (writes == 1).all()


@pytest.mark.parametrize("case", RUNTIME_N_BIAS_RELU, ids=str)
def test_runtime_n_bias_relu_epilogue(runtime_n_gemms_compiled, case):
    """The epilogue sees the right edge in pieces that stay inside the bias row."""
    gemms, spec = runtime_n_gemms_compiled, runtime_n_spec(case)
    k = spec.K if spec.K is not None else 4
    for m in (1, 9):
        for n in RUNTIME_NS + (WIDE_N,):
            a, b, c, reference = runtime_n_operands(spec, m, n, k)
            bias = at_page_end(np.random.default_rng(n).standard_normal(n).astype(spec.dtype))
            for nthreads in (1, 2, 3):
                c[...] = np.nan
                run_gemm(gemms, spec, a, b, m, nthreads, c=c, flavour="bias_relu", extra=(bias,), k=k, n=n)
                assert_close(c, np.maximum(reference + bias, 0.0), spec, k)


def test_runtime_n_epilogue_runs_once_per_element(runtime_n_gemms_compiled):
    gemms, spec = runtime_n_gemms_compiled, runtime_n_spec(RUNTIME_N_ACCUMULATE)
    for n in RUNTIME_NS:
        a, b, reference = make_operands(spec, 23, n=n)
        c = np.zeros((23, n), spec.dtype)
        run_gemm(gemms, spec, a, b, 23, nthreads=3, concurrent=True, c=c, flavour="accumulate", n=n)
        assert_close(c, reference, spec)


@pytest.mark.parametrize("case", RUNTIME_K_TRANS_B_CASES, ids=str)
def test_runtime_k_with_transposed_b(runtime_n_gemms_compiled, case):
    """B stored N x K with K known at run time: packed per call into a workspace K deep."""
    gemms, spec = runtime_n_gemms_compiled, runtime_k_trans_b_spec(case)
    for k in RUNTIME_KS:
        assert gemm_workspace_elems(spec, gemms.target, k) == k * gemm_workspace_elems(spec, gemms.target, 1)
        for m in ODD_MS if spec.M is None else (spec.M,):
            for n in (spec.N,) if spec.N is not None else RUNTIME_NS + (WIDE_N,) * (m == 1):
                a, b, c, reference = runtime_n_operands(spec, m, n, k)
                for nthreads in (1, 2, 3):
                    c[...] = np.nan
                    run_gemm(gemms, spec, a, b, m, nthreads, c=c, k=k, n=n)
                    assert_close(c, reference, spec, k)
