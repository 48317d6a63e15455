"""vecmath's exp/log/tanh against numpy: float32 within 3 ulp, special values exactly, on both targets."""
import ctypes
import functools

import numpy as np
import pytest
from llvmlite import ir

from graphc.lower import vecmath
from graphc.lower.irutil import I64, ITEMSIZE, PTR, const, loop, vector_type
from graphc.lower.jit import compile_module
from graphc.lower.target import avx2_target, host_target

FUNCTIONS = ("exp", "log", "tanh")
SPECIALS = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 1e-30, -1e-30, 1e-45, 1e-40, 88.72, 88.73, -103.9,
            -104.0, -110.0, 100.0, 0.625, -0.625, 50.0, -50.0, 3.4e38]


@functools.lru_cache(maxsize=None)
def compiled(target_name, dtype):
    """f_<name>(out, in, n): n a multiple of the vector width, each vector through vecmath.<name>."""
    target = {"host": host_target, "avx2": avx2_target}[target_name]()
    lanes = target.lanes(dtype)
    module = ir.Module()
    for name in FUNCTIONS:
        function = ir.Function(module, ir.FunctionType(ir.VoidType(), [PTR, PTR, I64]), name=f"f_{name}")
        builder = ir.IRBuilder(function.append_basic_block())
        out, source, count = function.args
        element = vector_type(dtype, 1)
        with loop(builder, const(0), count, lanes) as i:
            # Element alignment only: numpy buffers need not be vector-aligned.
            x = builder.load(builder.gep(source, [i.index], source_etype=element), typ=vector_type(dtype, lanes),
                             align=ITEMSIZE[dtype])
            y = vecmath.call(builder, name, x)
            builder.store(y, builder.gep(out, [i.index], source_etype=element), align=ITEMSIZE[dtype])
        builder.ret_void()
    return compile_module(module, target), lanes


def apply(target_name, dtype, name, values):
    module, lanes = compiled(target_name, dtype)
    padded = np.ones(-(-len(values) // lanes) * lanes, dtype)
    padded[:len(values)] = values
    out = np.empty_like(padded)
    function = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)(module.address(f"f_{name}"))
    function(out.ctypes.data, padded.ctypes.data, len(padded))
    return out[:len(values)]


def ulp_distance(a, b):
    """Distance in representable float32 values; 0 where both are equal or both NaN."""
    def ordered(x):
        bits = x.view(np.int32).astype(np.int64)
        return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    return np.where(same, 0, np.abs(ordered(a) - ordered(b)))


def inputs(name, rng):
    if name == "exp":
        values = rng.uniform(-110, 90, 1 << 16)
    elif name == "log":
        values = np.concatenate([np.exp(rng.uniform(-100, 88, 1 << 15)), rng.uniform(0.5, 2, 1 << 15)])
    else:
        values = np.concatenate([rng.uniform(-12, 12, 1 << 15), rng.uniform(-1, 1, 1 << 15)])
    return np.concatenate([values, SPECIALS, -np.asarray(SPECIALS)])


@pytest.mark.parametrize("target_name", ["host", "avx2"])
@pytest.mark.parametrize("name", FUNCTIONS)
def test_float32_within_3_ulp_and_specials_exact(name, target_name):
    x = inputs(name, np.random.default_rng(0)).astype(np.float32)
    with np.errstate(all="ignore"):
        expected = getattr(np, name)(x)
    got = apply(target_name, "float32", name, x)
    distance = ulp_distance(got, expected)
    assert distance.max() <= 3, (x[distance.argmax()], got[distance.argmax()], expected[distance.argmax()])
    special = ~np.isfinite(expected) | (expected == 0) | np.isin(np.abs(expected), [1.0])
    np.testing.assert_array_equal(got[special], expected[special])


@pytest.mark.parametrize("name", FUNCTIONS)
def test_float64_matches_numpy(name):
    x = inputs(name, np.random.default_rng(1))
    with np.errstate(all="ignore"):
        expected = getattr(np, name)(x)
    np.testing.assert_allclose(apply("host", "float64", name, x), expected, rtol=1e-15, atol=0)
