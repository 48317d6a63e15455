"""Random numbers: ``random_uniform``, ``random_normal``, ``dropout`` and ``set_random_seed``.

Counter-based (Salmon et al., "Parallel Random Numbers: As Easy as 1, 2, 3", SC 2011): every value is a
pure function of (seed, step, element index), so results do not depend on the thread count or on the
order kernels run in, and nothing is stored between the forward and the backward pass.

The generator is Philox4x64-10, the one behind numpy's ``np.random.Philox``: a 256-bit counter
(four 64-bit words) and a 128-bit key (two words) give one block of four 64-bit words. The mapping:

* key = (seed, 0); counter = (i // 4, step, 0, 0); element i (row-major) takes word i % 4 of that block.
  ``step`` (as a uint64) is an int64 scalar variable, an input of every random node; ``gc.function``
  adds ``step <- step + 1`` to its updates (unless the user's updates assign it), so each call draws
  fresh numbers. Unless an op is given ``step=``, it uses the module's step counter, one variable
  shared by the ops built since the last ``set_random_seed``.
* uniform: float32 u = (word >> 40) * 2**-24, float64 u = (word >> 11) * 2**-53: exact, in [0, 1).
  minval + (maxval - minval) * u, as an elementwise node on top, when the range is not [0, 1).
* normal: Box-Muller, in float64 whatever the dtype, on the pair of words (2k, 2k + 1) for elements 2k
  and 2k + 1 (an odd-sized tensor computes one more value and drops it): with the 53-bit uniforms
  u1 = 1 - u(word 2k) in (0, 1] and u2 = u(word 2k + 1), r = sqrt(-2 log u1) and t = 2 pi u2 (2 pi rounded
  to a double), element 2k is r cos t and element 2k + 1 is r sin t, rounded to the dtype.
  mean + stddev * z on top, as for uniform.
* dropout: element i is kept where (word >> 40) >= ceil(rate * 2**24), i.e. where its float32 uniform
  is >= rate (exactly), and then y = x * (1 / (1 - rate)) (the scale rounded to x's dtype), else 0.
  Its gradient is dropout of the incoming gradient with the same seed and step: the same mask,
  regenerated, never stored.

The reference backend draws the words through numpy's own generator (``np.random.Philox(counter=...,
key=...).random_raw``; numpy increments its counter before each block, so it is started one below),
and the native kernels (graphc/lower/random.py) are tested bit for bit against it: raw words, uniforms
and dropout exactly; normals to a few float64 ulp, since log, cos and sin come from different libms.

Seeds: an op given ``seed`` uses it (two ops with the same seed draw the same numbers, as jax.random
with the same key); with ``seed=None`` it draws one from a module-level numpy generator, which
``set_random_seed`` reseeds, so a program that calls it first builds the same graph every time.
"""
import math

import numpy as np
import sympy

from ..graph import dtypes
from ..graph.node import Node, user_location
from ..graph.shapes import canonical_dim, dim_symbol, dims_equal, evaluate_shape, shapes_equal
from .expr import arg, evaluate
from .registry import Op, apply
from .source import constant, variable

WORDS_PER_BLOCK = 4
UNIFORM_BITS = {"float32": 24, "float64": 53}
TWO_PI = 2 * math.pi
_state = {"generator": np.random.default_rng(), "step": None}


# ---- the generator -------------------------------------------------------------------------
def philox_words(seed: int, step: int, count: int) -> np.ndarray:
    """The first ``count`` words (uint64) of the stream for (seed, step), through numpy's Philox."""
    blocks = -(-count // WORDS_PER_BLOCK)
    first = ((step % 2**64) << 64) % 2**256  # the counter (0, step, 0, 0) as numpy's 256-bit integer
    generator = np.random.Philox(counter=(first - 1) % 2**256, key=seed)
    return generator.random_raw(blocks * WORDS_PER_BLOCK)[:count]


def uniform_from_words(words: np.ndarray, dtype: str) -> np.ndarray:
    """Words as uniforms in [0, 1) of ``dtype``: the top 24 (float32) or 53 (float64) bits, exactly."""
    bits = UNIFORM_BITS[dtype]
    return ((words >> np.uint64(64 - bits)).astype(dtype) * np.asarray(2.0**-bits, dtype)).astype(dtype)


def normal_from_words(words: np.ndarray, count: int, dtype: str) -> np.ndarray:
    """Box-Muller on the word pairs (see the module docstring), ``count`` values of ``dtype``."""
    u1 = 1.0 - uniform_from_words(words[0::2], "float64")
    u2 = uniform_from_words(words[1::2], "float64")
    radius, angle = np.sqrt(-2.0 * np.log(u1)), TWO_PI * u2
    pairs = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=-1)
    return pairs.reshape(-1)[:count].astype(dtype)


def keep_threshold(rate: float) -> int:
    """The smallest 24-bit uniform numerator kept by dropout at ``rate``: keep where (word >> 40) >= it."""
    return math.ceil(rate * 2**24)


# ---- the op --------------------------------------------------------------------------------
# A random node is an elementwise body with one more operand. Its inputs are (data..., key, step): the key
# an int64 constant holding the seed (a value the kernel loads, so programs that differ only in their seeds
# share their compiled code), the step the int64 step variable. In its body ``expr``, %0 .. %(n-1) are the
# data inputs and %n (the key's position) is the element's random value: its uniform, its normal, or for
# "keep" (dropout) 1 where the element is kept, else 0. Fusion (graphc/passes/fusion.py) composes
# neighbouring elementwise bodies into it, so the values are made in the kernel that uses them; the body
# is evaluated as an elementwise one (graphc.ops.expr.evaluate).
SOURCES = 2  # the key and the step: the last inputs of every random node


def random_symbol(node):
    """The symbol standing for the element's random value in ``node``'s body."""
    return arg(len(node.inputs) - SOURCES)


def draw(distribution: str, seed: int, step: int, shape: tuple, dtype: str, rate: float = 0.0) -> np.ndarray:
    """The random values of a node: uniform or normal values of ``dtype``, or dropout's keep mask."""
    count = math.prod(shape)
    if distribution == "normal":
        return normal_from_words(philox_words(seed, step, count + count % 2), count, dtype).reshape(shape)
    words = philox_words(seed, step, count).reshape(shape)
    if distribution == "uniform":
        return uniform_from_words(words, dtype)
    return (words >> np.uint64(40)) >= keep_threshold(rate)


def is_single_element(shape) -> bool:
    """Whether every dim of ``shape`` is 1 (a scalar too)."""
    return all(dims_equal(d, 1) for d in shape)


def fits(data_shape, shape) -> bool:
    """Whether a data input of ``data_shape`` can be read at a random node's element index: it has the
    node's ``shape`` (read at the index) or is a single element of no more axes (read at 0)."""
    return shapes_equal(data_shape, shape) or (is_single_element(data_shape) and len(data_shape) <= len(shape))


def _infer(inputs, attrs):
    *data, key, step = inputs
    if any(source.dtype != "int64" or source.shape != () for source in (key, step)):
        raise ValueError(f"the key and the step must be int64 scalars, got {key.dtype}{key.shape} and "
                         f"{step.dtype}{step.shape}")
    if not all(fits(i.shape, attrs["shape"]) for i in data):
        raise ValueError(f"every operand must have the shape {attrs['shape']} or be a single element")
    return attrs["shape"], attrs["dtype"]


def _reference(node, arrays, dims):
    *data, key, step = arrays
    shape = evaluate_shape(node.shape, dims)
    values = draw(node.attrs["distribution"], int(key) % 2**64, int(step), shape, node.dtype,
                  node.attrs.get("rate", 0.0))
    return np.broadcast_to(evaluate(node.attrs["expr"], [*data, values], dims, node.dtype), shape)


def _vjp(node, g):
    """Dropout's gradient is dropout of ``g`` with the same seed and step: the same mask, regenerated (the
    body is linear in x). Fused nodes (made by the optimizer, after gc.grad) are never differentiated."""
    if node.attrs["label"] != "dropout":
        return [None] * len(node.inputs)  # uniform and normal values have no inputs but the integer sources
    return [apply(random_op, [g, *node.inputs[-SOURCES:]], node.attrs), None, None]


random_op = Op("random", _infer, _reference, _vjp, kind="random")


def _dropout_body(rate: float, dtype: str):
    """x * (1 / (1 - rate)) where kept, else 0; the scale rounded to x's dtype."""
    scale = sympy.Float(float(np.asarray(1 / (1 - rate), dtype)))
    return sympy.Piecewise((arg(0) * scale, sympy.Ne(arg(1), 0)), (0, True))


# ---- seeds and steps -----------------------------------------------------------------------
def set_random_seed(seed) -> None:
    """Reseed the generator that random ops built with ``seed=None`` draw their seeds from, and start a new
    step counter at 0: the graph built after this call, and what its functions draw, are reproducible."""
    _state["generator"] = np.random.default_rng(_checked_seed(seed, "set_random_seed"))
    _state["step"] = None


def default_step() -> Node:
    """The int64 step counter that random ops use unless given one (``gc.function`` advances it per call)."""
    if _state["step"] is None:
        _state["step"] = variable(np.int64(0), name="random_step", trainable=False)
    return _state["step"]


def step_updates(nodes, updates) -> list:
    """(step, step + 1) for each step variable the random ones among ``nodes`` read, unless ``updates``
    already assign it: what ``gc.function`` adds so that every call draws fresh numbers."""
    assigned = {variable.id for variable, _ in updates}
    steps = {}
    for node in nodes:
        if node.op is random_op:
            step = node.inputs[-1]
            if step.id not in assigned:
                steps.setdefault(step.id, step)
    return [(step, step + 1) for step in steps.values()]


def _checked_seed(seed, where: str) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{where}: seed must be an int in [0, 2**64), got {type(seed).__name__} {seed!r} "
                        f"(at {user_location()})")
    if not 0 <= int(seed) < 2**64:
        raise ValueError(f"{where}: seed must be in [0, 2**64), got {seed} (at {user_location()})")
    return int(seed)


def _seed(seed, where: str) -> int:
    if seed is None:
        return int(_state["generator"].integers(2**64, dtype=np.uint64))
    return _checked_seed(seed, where)


def _step(step, where: str) -> Node:
    if step is None:
        return default_step()
    if not isinstance(step, Node) or step.op.name != "variable" or step.dtype != "int64" or step.shape != ():
        raise TypeError(f"{where}: step must be an int64 scalar variable (gc.variable(np.int64(0))), "
                        f"got {step!r} (at {user_location()})")
    return step


def _shape(shape, where: str) -> tuple:
    """A tuple of dims: ints >= 0, dimension names, or expressions of them (``x.shape``)."""
    if not isinstance(shape, (tuple, list)):
        raise TypeError(f"{where}: shape must be a tuple of dims (ints, names or x.shape's entries), got "
                        f"{type(shape).__name__} {shape!r} (at {user_location()})")
    dims = []
    for dim in shape:
        valid = not isinstance(dim, bool) and (isinstance(dim, (int, np.integer, str))
                                              or (isinstance(dim, sympy.Basic) and dim.is_integer))
        if not valid or (isinstance(dim, (int, np.integer)) and dim < 0):
            raise ValueError(f"{where}: shape {tuple(shape)!r} has a bad dim {dim!r}: dims are ints >= 0, "
                             f"names or x.shape's entries (at {user_location()})")
        dims.append(dim_symbol(dim) if isinstance(dim, str) else canonical_dim(dim))
    return tuple(dims)


def _float_dtype(dtype, where: str) -> str:
    dtype = dtypes.as_dtype(dtype)
    if not dtypes.is_float(dtype):
        raise TypeError(f"{where}: dtype must be float32 or float64, got {dtype} (at {user_location()})")
    return dtype


def _sources(seed, step, where) -> list:
    """The key (a constant holding the seed, as an int64) and the step of a new random node."""
    key = constant(np.array(_seed(seed, where), np.uint64).astype(np.int64))
    return [key, _step(step, where)]


def _draw(distribution, shape, dtype, seed, step, where):
    attrs = {"distribution": distribution, "shape": _shape(shape, where), "dtype": _float_dtype(dtype, where),
             "expr": arg(0), "label": where}
    return apply(random_op, _sources(seed, step, where), attrs)


# ---- the user's functions ------------------------------------------------------------------
def random_uniform(shape, minval=0.0, maxval=1.0, dtype="float32", seed=None, step=None) -> Node:
    """Uniform values in [minval, maxval) (minval + (maxval - minval) * u, u in [0, 1) exactly as the module
    docstring says). ``shape`` may hold dimension names and ``x.shape``'s entries."""
    u = _draw("uniform", shape, dtype, seed, step, "random_uniform")
    return u if (minval, maxval) == (0.0, 1.0) else minval + (maxval - minval) * u


def random_normal(shape, mean=0.0, stddev=1.0, dtype="float32", seed=None, step=None) -> Node:
    """Normal values with ``mean`` and ``stddev`` (mean + stddev * z, z from Box-Muller as the module
    docstring says). ``shape`` may hold dimension names and ``x.shape``'s entries."""
    z = _draw("normal", shape, dtype, seed, step, "random_normal")
    return z if (mean, stddev) == (0.0, 1.0) else mean + stddev * z


def dropout(x, rate, seed=None, step=None) -> Node:
    """Inverted dropout: each element of ``x`` is zeroed with probability ``rate`` and the others are scaled
    by 1 / (1 - rate), so the expectation is ``x``. ``rate`` 0 returns ``x``. The gradient regenerates the mask."""
    if not isinstance(x, Node) or not dtypes.is_float(x.dtype):
        raise TypeError(f"dropout: x must be a float tensor, got {x!r} (at {user_location()})")
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)):
        raise TypeError(f"dropout: rate must be a number in [0, 1), got {type(rate).__name__} {rate!r} "
                        f"(at {user_location()})")
    if not 0 <= rate < 1:
        raise ValueError(f"dropout: rate must be in [0, 1), got {rate} (x: {x.dtype}{tuple(x.shape)}, "
                         f"at {user_location()})")
    if rate == 0:
        return x
    attrs = {"distribution": "keep", "rate": float(rate), "shape": x.shape, "dtype": x.dtype,
             "expr": _dropout_body(rate, x.dtype), "label": "dropout"}
    return apply(random_op, [x, *_sources(seed, step, "dropout")], attrs)


