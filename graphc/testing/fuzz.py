"""Differential fuzzing: random programs must give the same results on both backends and both pipelines,
up to each op's rounding, and their gradients must match finite differences.

    python -m graphc.testing.fuzz --minutes 5 [--seed S] [--programs N]

A **program** is a few placeholders (static, ``None`` and named dims; float32, float64, int32, int64) and a
few steps, each one line of the public API reading earlier values (``v2 = gc.take(v1, x1, axis=1)``); its
outputs are the values no step reads. ``generate(seed)`` draws elementwise ops (unary; binary with
broadcasting or a Python scalar; comparisons, where, clip, cast), reductions (sum, mean, max, min over
axes, with keepdims; argmax), layout ops (reshape, transpose, concatenate, stack, slicing, broadcast_to,
expand_dims, squeeze), matmul and gathers (``gc.take``, ``x[idx]``). A step graphc refuses to build is
drawn again.

``check(program)`` runs it on the reference and llvm backends with optimize=0 and optimize=2 and compares
each run with the truth, the reference with optimize=0, elementwise: NaN matches NaN, integers and booleans
must be equal, and floats may differ by what rounding explains. To find how much that is, the reference
runs NUDGES more times with every op's float result moved by its error bound (a random sign per element):
ULPS ulps per library call in an elementwise body (exp, log, tanh, sin, cos, sigmoid, softplus, log1p,
expm1, powers other than x**2, 1/x and square roots), ``K eps sum|x|`` for a sum of K terms and for a
matmul contracting K, nothing for ops whose results IEEE arithmetic fixes (+ - * /, sqrt, comparisons,
layout, gathers) unless their operands may differ already: then an ulp per operand of each operation.
A run may differ from the truth by twice the largest deviation of the nudged runs. So bounds carry through
later ops, cancellations and discontinuities included: a comparison of two values that rounding could
swap, for one, is left unchecked.

A share of the programs are **gradient programs**: float64, without ops that have no gradient, outputs
followed by ``cost`` (the sum of every output) and ``gc.grad(cost, inputs)``. Besides the comparison, the
llvm gradients must match central differences of the cost (``graphc.testing.numeric_grad``, which
check_grad uses). Their steps keep every value finite and within MAX_GRADIENT_VALUE, so that the
differences' rounding stays small. Differences with steps 1e-6 and 1e-5 that disagree mean a kink or
the edge of an op's domain is within their reach: that check is skipped, and counted.

``shrink(program, failure)`` makes a failing program smaller while it fails the same way (the same run,
the same kind of failure): it drops steps (a step that others read becomes an input holding its value),
shortens axes and makes symbolic dims static. ``reproducer`` writes it as a runnable script.
"""
import argparse
import contextlib
import dataclasses
import itertools
import os
import sys
import tempfile
import time
from collections import Counter

import numpy as np
import sympy

import graphc as gc
from graphc.ops.expr import Expm1, Log1p, Sigmoid, Softplus
from graphc.testing import assert_close, evaluate, numeric_grad

TRUTH = ("reference", 0)
RUNS = [("reference", 2), ("llvm", 0), ("llvm", 2)]  # (backend, optimize), each compared with the truth
NUDGES = 8
ULPS = 4
LIBRARY_CALLS = (sympy.exp, sympy.log, sympy.tanh, sympy.sin, sympy.cos, Sigmoid, Softplus, Log1p, Expm1)
EXACT_POWERS = (2, -1, sympy.Rational(1, 2), sympy.Rational(-1, 2))
ARITHMETIC = (sympy.Add, sympy.Mul, sympy.Pow, sympy.Function)
SIZES = (1, 2, 2, 3, 3, 4, 5)
LONG_SIZES = (16, 33)  # now and then one long axis: sums and matmuls of more terms
DIM_NAMES = ("batch", "n", "m")
GRADIENT_SHARE = 0.3
MAX_GRADIENT_VALUE = 1e3


# ---- programs ------------------------------------------------------------------------------------
@dataclasses.dataclass
class Input:
    name: str
    dims: tuple  # as declared: an int, None or a dim name per axis
    value: np.ndarray  # what is fed


@dataclasses.dataclass
class Step:
    name: str
    op: str  # what it exercises, for the counts: "exp", "take", "slice", ...
    source: str  # a Python expression over gc and earlier names
    reads: tuple  # the earlier names it reads


@dataclasses.dataclass
class Program:
    seed: int
    inputs: list
    steps: list
    grad: bool = False  # float64 only; cost and gc.grad(cost, inputs) follow the outputs

    def leaves(self) -> list:
        """The steps no other step reads: the outputs."""
        read = {name for step in self.steps for name in step.reads}
        return [step.name for step in self.steps if step.name not in read]

    def graph_source(self) -> str:
        """Python building the program's ``inputs`` and ``outputs`` with the public API."""
        lines = [f"{i.name} = gc.placeholder({i.dims!r}, {i.value.dtype.name!r}, name={i.name!r})"
                 for i in self.inputs]
        lines += [f"{step.name} = {step.source}" for step in self.steps]
        lines.append(f"inputs = [{', '.join(i.name for i in self.inputs)}]")
        leaves = ", ".join(self.leaves())
        if self.grad:
            lines.append("cost = " + " + ".join(f"gc.sum({name})" for name in self.leaves()))
            lines.append(f"outputs = [{leaves}, cost] + gc.grad(cost, inputs)")
        else:
            lines.append(f"outputs = [{leaves}]")
        return "\n".join(lines) + "\n"

    def build(self) -> dict:
        """The names ``graph_source`` defines (``inputs``, ``outputs`` and every input and step)."""
        scope = {"gc": gc}
        exec(compile(self.graph_source(), f"<fuzzed program {self.seed}>", "exec"), scope)
        return scope


@dataclasses.dataclass
class Failure:
    run: str  # "build", "reference optimize=2", "llvm optimize=0", ..., or "gradient"
    kind: str  # "mismatch", the exception the run raised where the truth did not, or "no X" the other way
    message: str

    def __str__(self):
        return f"{self.run}: {self.kind}: {self.message}"


def reproducer(program: Program, failure: Failure) -> str:
    """``program`` as a script that builds it with the public API and prints the outputs of every run."""
    feeds = ",\n         ".join(_array_source(i.value) for i in program.inputs)
    note = "\n".join("# " + line for line in str(failure).splitlines())
    return (f"{note}\n# Shrunk from the program of seed {program.seed} "
            f"(python -m graphc.testing.fuzz --seed {program.seed} --programs 1).\n"
            "import numpy as np\nfrom numpy import inf, nan\n\nimport graphc as gc\n\n"
            + program.graph_source()
            + f"feeds = [{feeds}]\n"
            + f"for backend, optimize in {[TRUTH] + RUNS!r}:\n"
            + "    function = gc.function(inputs, outputs, backend=backend, optimize=optimize)\n"
            + "    print(backend, optimize, function(*feeds))\n")


def _array_source(value) -> str:
    if value.size == 0:
        return f"np.zeros({value.shape}, {value.dtype.name!r})"
    text = np.array2string(value, separator=", ", threshold=sys.maxsize, floatmode="unique", max_line_width=100)
    return f"np.array({text}, {value.dtype.name!r})"


# ---- generating ----------------------------------------------------------------------------------
class _Skip(Exception):
    """The op drawn has no operands that suit it in this program: draw another."""


class _Generator:
    """Draws a program one step at a time. A step is kept with the inputs it made if graphc builds it (a
    ValueError is a refusal), the reference runs it and, in gradient programs, its values are moderate."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.program = Program(seed, [], [], grad=bool(self.rng.random() < GRADIENT_SHARE))
        self.nodes, self.values = {}, {}  # name -> graph tensor, and its reference value
        self.pending = []  # inputs made for the step being drawn
        self.dim_names = {}  # size -> the dim name axes of that size may be declared with
        self.broken = False  # the reference raised on a step graphc built: check() reports it

    def choice(self, options):
        return options[self.rng.integers(len(options))]

    def pick(self, kinds, ndim=0) -> str:
        """A value whose dtype kind is in ``kinds`` ('f', 'i', 'b') with at least ``ndim`` axes."""
        names = [n for n, v in self.values.items() if v.dtype.kind in kinds and v.ndim >= ndim]
        if not names:
            raise _Skip
        return self.choice(names)

    def operand(self, fits, shape, dtype) -> str:
        """Mostly a value for which ``fits(value)`` holds, else a new input of ``shape`` and ``dtype``."""
        names = [n for n, v in self.values.items() if fits(v)]
        return self.choice(names) if names and self.rng.random() < 0.6 else self.fresh(shape, dtype)

    def partner(self, names, kinds) -> str:
        """An operand of a kind in ``kinds`` that broadcasts with the values of ``names``."""
        shapes = [self.values[n].shape for n in names]
        shape = np.broadcast_shapes(*shapes)
        shape = tuple(1 if self.rng.random() < 0.25 else d for d in shape)[self.rng.integers(len(shape) + 1):]
        return self.operand(lambda v: v.dtype.kind in kinds and _broadcasts(v.shape, *shapes), shape, self.dtype(kinds))

    def dtype(self, kinds="fi") -> str:
        if self.program.grad:
            return "float64"
        dtypes = ("float32", "float32", "float64", "int32", "int64")
        return self.choice([d for d in dtypes if np.dtype(d).kind in kinds])

    def shape(self) -> tuple:
        shape = [self.choice(SIZES) for _ in range(self.choice([0, 1, 1, 2, 2, 2, 3]))]
        if shape and not self.program.grad and self.rng.random() < 0.15:
            shape[self.rng.integers(len(shape))] = self.choice(LONG_SIZES)
        return tuple(shape)

    def fresh(self, shape, dtype, value=None) -> str:
        """A new input of concrete ``shape``, each axis declared static, None or named at random. A symbolic dim
        is at least 2: graphc unifies a symbolic dim with what it meets rather than broadcasting it."""
        name = f"x{len(self.program.inputs) + len(self.pending)}"
        dims = tuple(self.declare(int(size)) for size in shape)
        self.pending.append(Input(name, dims, self.draw(shape, dtype) if value is None else value))
        self.nodes[name] = gc.placeholder(dims, dtype, name=name)
        self.values[name] = self.pending[-1].value
        return name

    def declare(self, size):
        r = self.rng.random()
        if size < 2 or r < 0.5:
            return size
        if r < 0.75 or (size not in self.dim_names and len(self.dim_names) == len(DIM_NAMES)):
            return None
        if size not in self.dim_names:
            self.dim_names[size] = DIM_NAMES[len(self.dim_names)]
        return self.dim_names[size]

    def draw(self, shape, dtype) -> np.ndarray:
        """Small integers; floats in [-3, 3] with 2 decimals (short reproducers), now and then with special values
        (0, -0, 1, -1, inf, -inf, nan); in gradient programs floats in [-2, 2] unrounded, so that no two are
        equal: at a tie in maximum, say, finite differences and graphc's convention part."""
        if dtype == "bool":
            return np.asarray(self.rng.random(shape) < 0.5)
        if np.dtype(dtype).kind == "i":
            return np.asarray(self.rng.integers(-4, 5, shape), dtype)
        if self.program.grad:
            return np.asarray(self.rng.uniform(-2, 2, shape))
        value = np.round(self.rng.uniform(-3, 3, shape), 2)
        if self.rng.random() < 0.3:
            specials = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan])
            value = np.where(self.rng.random(shape) < 0.2, self.rng.choice(specials, shape), value)
        return np.asarray(value, dtype)

    def commit(self):
        self.program.inputs += self.pending
        self.pending = []

    def add_step(self, op):
        drawn = self._draw_step(op)
        if drawn is None:
            for i in self.pending:
                del self.values[i.name]
            self.pending = []
            return
        source, reads, node, value = drawn
        name = f"v{len(self.program.steps)}"
        self.commit()
        self.program.steps.append(Step(name, op, source, tuple(reads)))
        self.nodes[name] = node
        if value is not None:
            self.values[name] = value

    def _draw_step(self, op):
        """(source, names read, graph tensor, reference value) of a step of ``op``, or None."""
        try:
            source, reads = MAKERS[op](self, op)
        except _Skip:
            return None
        try:
            node = eval(source, {"gc": gc, **self.nodes})
        except ValueError:  # graphc refused it (GraphError is a ValueError)
            return None
        except Exception as error:
            error.add_note(f"building the fuzzed step {source} (seed {self.program.seed})")
            raise
        try:
            value = evaluate(node, {self.nodes[i.name]: i.value for i in self.program.inputs + self.pending},
                             optimize=0)
        except (ValueError, IndexError):  # what numpy or a call's checks refuse (max of nothing)
            return None
        except Exception:  # anything else is a bug: keep the step, end the program, let check() report it
            value, self.broken = None, True
        if value is not None and self.program.grad and not (
                np.isfinite(value).all() and np.abs(value).max(initial=0) <= MAX_GRADIENT_VALUE):
            return None
        return source, reads, node, value


def _broadcasts(*shapes) -> bool:
    try:
        np.broadcast_shapes(*shapes)
        return True
    except ValueError:
        return False


def _matmul_fits(a, b) -> bool:
    try:
        np.matmul(np.empty(a, np.int8), np.empty(b, np.int8))
        return True
    except ValueError:
        return False


# Each maker returns (source, names read) for a step of ``op``, or raises _Skip.
OPERATORS = {"add": "+", "subtract": "-", "multiply": "*", "divide": "/", "power": "**", "floor_divide": "//",
             "mod": "%", "greater": ">", "greater_equal": ">=", "less": "<", "less_equal": "<="}


def _unary(g, op):
    x = g.pick("fi")
    return f"gc.{op}({x})", [x]


def _binary(g, op):
    x = g.pick("fi")
    integer = g.values[x].dtype.kind == "i"
    if op == "power" and integer:  # a scalar exponent: numpy raises on negative integer exponents when it runs
        return f"gc.power({x}, {g.choice(['2', '3'])})", [x]
    if g.rng.random() < 0.3:
        y = g.choice(["2", "3", "0.5", "-1", "-0.5", "1.5"] if op == "power" else
                     ["2", "-1", "0"] if integer else ["0.5", "2.0", "-1.5", "0.0"])
    else:
        y = g.partner([x], "fi")
    a, b = (x, y) if g.rng.random() < 0.7 else (y, x)
    source = f"({a} {OPERATORS[op]} {b})" if op in OPERATORS and g.rng.random() < 0.5 else f"gc.{op}({a}, {b})"
    return source, [n for n in (a, b) if n in g.values]


def _where(g, op):
    condition = g.pick("bfi")
    x = g.partner([condition], "fi")
    y = g.partner([condition, x], "fi") if g.rng.random() < 0.7 else "0.0"
    return f"gc.where({condition}, {x}, {y})", [n for n in (condition, x, y) if n in g.values]


def _clip(g, op):
    x = g.pick("fi")
    low, high = sorted(g.rng.choice([-2, -1, 0, 1, 2], 2, replace=False))
    if g.values[x].dtype.kind == "f":
        return f"gc.clip({x}, {float(low)}, {float(high)})", [x]
    return f"gc.clip({x}, {low}, {high})", [x]


def _cast(g, op):
    x = g.pick("fib")
    value = g.values[x]
    dtype = g.choice([d for d in ("bool", "int32", "int64", "float32", "float64") if d != value.dtype.name])
    if value.dtype.kind == "f" and dtype in ("int32", "int64") and not (
            np.isfinite(value).all() and np.abs(value).max(initial=0) < 2**31):
        raise _Skip  # numpy leaves NaN, inf and out-of-range floats to integers undefined (and warns)
    return f"gc.cast({x}, {dtype!r})", [x]


def _reduction(g, op):
    x = g.pick("fib" if op in ("sum", "mean") else "fi")
    value = g.values[x]
    if op not in ("sum", "mean") and value.size == 0:
        raise _Skip  # numpy's max of nothing is an error
    if op == "argmax":
        return f"gc.argmax({x}, axis={g.choice([None] + list(range(-value.ndim, value.ndim)))})", [x]
    r = g.rng.random()
    if value.ndim == 0 or r < 0.25:
        axis = None
    elif r < 0.7:
        axis = int(g.rng.integers(-value.ndim, value.ndim))
    else:
        axis = tuple(sorted(int(a) for a in g.rng.choice(value.ndim, g.rng.integers(1, value.ndim + 1), replace=False)))
    return f"gc.{op}({x}, axis={axis}, keepdims={bool(g.rng.random() < 0.4)})", [x]


def _reshape(g, op):
    x = g.pick("fib", ndim=1)
    shapes = ["(-1,)"]
    if g.values[x].ndim >= 2:
        shapes.append(f"{x}.shape[:-2] + (-1,)")
    if all(isinstance(d, int) for d in g.nodes[x].shape) and g.values[x].size:
        size, factors = g.values[x].size, []
        for _ in range(g.rng.integers(1, 3)):
            factors.append(g.choice([d for d in range(1, size + 1) if size % d == 0]))
            size //= factors[-1]
        shapes.append(repr(tuple(factors + [size])))
    return f"gc.reshape({x}, {g.choice(shapes)})", [x]


def _transpose(g, op):
    x = g.pick("fib", ndim=2)
    if g.values[x].ndim == 2 and g.rng.random() < 0.5:
        return f"{x}.T", [x]
    return f"gc.transpose({x}, {tuple(int(a) for a in g.rng.permutation(g.values[x].ndim))})", [x]


def _concatenate(g, op):
    x = g.pick("fib", ndim=1)
    value = g.values[x]
    axis = int(g.rng.integers(value.ndim))
    shape = value.shape[:axis] + (g.choice(SIZES),) + value.shape[axis + 1:]
    y = g.operand(lambda v: v.dtype == value.dtype and v.ndim == value.ndim and all(
        p == q for a, (p, q) in enumerate(zip(v.shape, value.shape)) if a != axis), shape, value.dtype.name)
    tensors = [x, y, x] if g.rng.random() < 0.3 else [x, y]
    return f"gc.concatenate([{', '.join(tensors)}], axis={axis - value.ndim * int(g.rng.random() < 0.3)})", [x, y]


def _stack(g, op):
    x = g.pick("fib")
    value = g.values[x]
    y = g.operand(lambda v: v.dtype == value.dtype and v.shape == value.shape, value.shape, value.dtype.name)
    return f"gc.stack([{x}, {y}], axis={int(g.rng.integers(-value.ndim - 1, value.ndim + 1))})", [x, y]


def _slice(g, op):
    x = g.pick("fib", ndim=1)
    parts = []
    for size in g.values[x].shape:
        r = g.rng.random()
        if r < 0.3:
            parts.append(":")
        elif r < 0.55:
            start = int(g.rng.integers(size + 1))
            parts.append(f"{start}:{int(g.rng.integers(start, size + 1))}")
        elif r < 0.7:
            parts.append(g.choice(["::2", "::-1", "1::2"]))
        elif r < 0.9 and size:
            parts.append(str(int(g.rng.integers(-size, size))))
        else:
            parts.append("None, :")
    return f"{x}[{', '.join(parts)}]", [x]


def _broadcast_to(g, op):
    x = g.pick("fib")
    dims = [str(g.choice([1, 3])) if d == 1 else f"{x}.shape[{a}]" for a, d in enumerate(g.nodes[x].shape)]
    if not dims or g.rng.random() < 0.5:
        dims.insert(0, str(g.choice(SIZES)))
    return f"gc.broadcast_to({x}, ({', '.join(dims)},))", [x]


def _expand_dims(g, op):
    x = g.pick("fib")
    return f"gc.expand_dims({x}, {int(g.rng.integers(-g.values[x].ndim - 1, g.values[x].ndim + 1))})", [x]


def _squeeze(g, op):
    x = g.pick("fib", ndim=1)
    ones = [a for a, d in enumerate(g.nodes[x].shape) if d == 1]
    if not ones:
        raise _Skip
    return (f"gc.squeeze({x}, axis={g.choice(ones)})" if g.rng.random() < 0.5 else f"gc.squeeze({x})"), [x]


def _matmul(g, op):
    a = g.pick("f", ndim=1)
    value = g.values[a]
    k = value.shape[-1]
    shape = (k,) if g.rng.random() < 0.2 else value.shape[:-2][g.rng.integers(value.ndim):] + (k, g.choice(SIZES))
    b = g.operand(lambda v: v.dtype == value.dtype and _matmul_fits(value.shape, v.shape),
                  shape, value.dtype.name)
    return (f"({a} @ {b})" if g.rng.random() < 0.5 else f"gc.matmul({a}, {b})"), [a, b]


def _gather(g, op):
    """``gc.take`` along any axis, or ``x[idx]`` (axis 0), with indices written out or fed as an input."""
    x = g.pick("fib", ndim=1)
    axis = 0 if op == "fancy_index" else int(g.rng.integers(g.values[x].ndim))
    n = g.values[x].shape[axis]
    if n == 0:
        raise _Skip
    indices = g.rng.integers(-n, n, g.choice([(3,), (2, 2), (5,)] if op == "fancy_index" else [(), (3,), (2, 2)]))
    if g.program.grad or g.rng.random() < 0.5:
        idx, reads = repr(indices.tolist()), [x]
    else:
        dtype = g.choice(["int32", "int64"])
        idx = g.fresh(indices.shape, dtype, indices.astype(dtype))
        reads = [x, idx]
    return (f"{x}[{idx}]" if op == "fancy_index" else f"gc.take({x}, {idx}, axis={axis})"), reads


FAMILIES = {
    "unary": ["negative", "square", "abs", "relu", "sqrt", "exp", "log"],
    "smooth": ["sigmoid", "tanh", "softplus", "log1p", "expm1", "sin", "cos"],
    "binary": ["add", "subtract", "multiply", "divide", "power", "maximum", "minimum", "floor_divide", "mod"],
    "select": ["equal", "not_equal", "greater", "greater_equal", "less", "less_equal", "where", "clip", "cast"],
    "reduce": ["sum", "mean", "max", "min", "argmax"],
    "layout": ["reshape", "transpose", "concatenate", "stack", "slice", "broadcast_to", "expand_dims", "squeeze"],
    "matmul": ["matmul"],
    "gather": ["take", "fancy_index"],
}
MAKERS = {
    **{op: _unary for op in FAMILIES["unary"] + FAMILIES["smooth"]},
    **{op: _binary for op in FAMILIES["binary"] + FAMILIES["select"][:6]},
    "where": _where, "clip": _clip, "cast": _cast,
    **{op: _reduction for op in FAMILIES["reduce"]},
    "reshape": _reshape, "transpose": _transpose, "concatenate": _concatenate, "stack": _stack, "slice": _slice,
    "broadcast_to": _broadcast_to, "expand_dims": _expand_dims, "squeeze": _squeeze,
    "matmul": _matmul, "take": _gather, "fancy_index": _gather,
}
# Ops whose results are not float64 have no place in a gradient program.
NO_GRADIENT = {"equal", "not_equal", "greater", "greater_equal", "less", "less_equal", "cast", "argmax"}


def generate(seed: int) -> Program:
    """The program of ``seed``: 1 or 2 inputs (steps may add more), then 1 to 8 steps; it ends early after a
    step graphc built and the reference failed on."""
    g = _Generator(seed)
    for _ in range(g.rng.integers(1, 3)):
        g.fresh(g.shape(), g.dtype())
        g.commit()
    length = g.rng.integers(1, 9)
    for _ in range(200):
        if len(g.program.steps) >= length or g.broken:
            break
        ops = [op for op in g.choice(list(FAMILIES.values())) if not (g.program.grad and op in NO_GRADIENT)]
        if ops:
            with np.errstate(all="ignore"):
                g.add_step(g.choice(ops))
    read = {name for step in g.program.steps for name in step.reads}
    g.program.inputs = [i for i in g.program.inputs if i.name in read]
    return g.program


# ---- checking ------------------------------------------------------------------------------------
def check(program: Program, runs=RUNS, counts=None) -> Failure | None:
    """None when every run in ``runs`` agrees with the truth (and, for a gradient program, the last run's
    gradients with finite differences), else the first disagreement. ``counts`` (a Counter) counts the
    gradient checks done and skipped."""
    counts = Counter() if counts is None else counts
    with np.errstate(all="ignore"):
        feeds = [i.value for i in program.inputs]
        try:
            scope = program.build()
            inputs, outputs = scope["inputs"], scope["outputs"]
            truth_function = gc.function(inputs, outputs, backend=TRUTH[0], optimize=TRUTH[1])
        except Exception as error:
            return Failure("build", type(error).__name__, _first_line(error))
        truth = _outcome(truth_function, feeds)
        tolerances = None if isinstance(truth, Exception) else _tolerances(truth_function, feeds, truth, program.seed)
        for backend, optimize in runs:
            run = f"{backend} optimize={optimize}"
            try:
                function = gc.function(inputs, outputs, backend=backend, optimize=optimize)
            except Exception as error:
                return Failure(run, type(error).__name__, _first_line(error))
            problem = _disagreement(_outcome(function, feeds), truth, tolerances)
            if problem:
                return Failure(run, *problem)
        if program.grad and tolerances is not None:
            return _check_gradient(function, feeds, program, counts)
        return None


def _outcome(function, feeds):
    try:
        return function(*feeds)
    except Exception as error:
        return error


def _first_line(error) -> str:
    return (str(error).splitlines() or [""])[0]


def _disagreement(result, truth, tolerances):
    """(kind, message) saying how ``result`` differs from ``truth`` beyond ``tolerances``, or None."""
    if isinstance(result, Exception) or isinstance(truth, Exception):
        if type(result) is type(truth):
            return None
        kind = type(result).__name__ if isinstance(result, Exception) else f"no {type(truth).__name__}"
        said = [f"raised {type(o).__name__}: {_first_line(o)}" if isinstance(o, Exception) else "returned"
                for o in (result, truth)]
        return kind, f"it {said[0]}; the truth {said[1]}"
    for k, (r, t, tolerance) in enumerate(zip(result, truth, tolerances)):
        if r.shape != t.shape or r.dtype != t.dtype:
            return "mismatch", f"output {k} is {r.dtype}{r.shape}, the truth {t.dtype}{t.shape}"
        bad = _distance(r, t) > tolerance
        if bad.any():
            i = tuple(int(j) for j in np.argwhere(bad)[0])
            return "mismatch", (f"output {k}: {int(bad.sum())} of {bad.size} elements differ; at {i} it is "
                                f"{r[i]!r}, the truth {t[i]!r}, tolerance {tolerance[i]:.3g}")
    return None


def _distance(actual, expected) -> np.ndarray:
    """|actual - expected| in float64: 0 where equal (infinities too) or both NaN, inf where one is NaN;
    integers and booleans are equal or infinitely apart."""
    a, e = np.asarray(actual), np.asarray(expected)
    if a.dtype.kind != "f":
        return np.where(a == e, 0.0, np.inf)
    a, e = a.astype(np.float64), e.astype(np.float64)
    distance = np.where((a == e) | (np.isnan(a) & np.isnan(e)), 0.0, np.abs(a - e))
    return np.where(np.isnan(distance), np.inf, distance)


def _tolerances(function, feeds, truth, seed) -> list:
    """Per output, twice the largest distance from the truth over NUDGES nudged runs of the truth's graph."""
    rng = np.random.default_rng(seed)
    arrays, dims = function.check_inputs(feeds)
    widest = [np.zeros(t.shape) for t in truth]
    for _ in range(NUDGES):
        for k, nudged in enumerate(_nudged_run(function.optimized_graph, arrays, dims, rng)):
            widest[k] = np.maximum(widest[k], _distance(nudged, truth[k]))
    return [2 * w for w in widest]


def _nudged_run(graph, feeds, dims, rng) -> list:
    """The reference interpreter (graphc.reference.run), each finite float result moved by its error bound."""
    values = {i.id: array for i, array in zip(graph.inputs, feeds)}
    inexact = set()  # the nodes whose values may carry rounding differences
    for node in graph.nodes:
        if node.id in values:
            continue
        arrays = [values[i.id] for i in node.inputs]
        result = np.asarray(node.op.reference(node, arrays, dims))
        carried = any(i.id in inexact for i in node.inputs)
        bound = _error_bound(node, arrays, result, dims, carried)
        if bound is not None:
            nudged = result + rng.choice([-1.0, 1.0], result.shape) * bound
            result = np.where(np.isfinite(result), nudged, result).astype(node.dtype)
        if carried or bound is not None:
            inexact.add(node.id)
        values[node.id] = result
    return [values[o.id] for o in graph.outputs]


def _error_bound(node, arrays, result, dims, carried):
    """How far numpy's float result of ``node`` and native code's may lie apart, or None where they agree.
    ``carried``: the operands may differ already, and then each operation of an elementwise body may round
    one ulp the other way per operand (a nudge that small can vanish in the reference's own rounding)."""
    if node.dtype not in ("float32", "float64"):
        return None
    if node.op.name == "elementwise":
        body = list(sympy.preorder_traversal(node.attrs["expr"]))
        ulps = ULPS * sum(isinstance(e, LIBRARY_CALLS) or (isinstance(e, sympy.Pow) and e.exp not in EXACT_POWERS)
                          for e in body)
        ulps += sum(len(e.args) for e in body if isinstance(e, ARITHMETIC)) if carried else 0
        tiny = np.finfo(node.dtype).tiny
        return ulps * np.spacing(np.maximum(np.abs(result), tiny)) if ulps else None
    if node.op.name == "reduce_sum":
        terms = arrays[0].size // max(result.size, 1)
    elif node.op.name == "matmul":
        terms = arrays[0].shape[-2 if node.attrs["transpose_a"] else -1]
    else:
        return None
    magnitude = node.op.reference(node, [np.abs(a) for a in arrays], dims)  # sum |x| (|A| @ |B|)
    return terms * np.finfo(node.dtype).eps * magnitude


def _check_gradient(function, feeds, program, counts) -> Failure | None:
    """``function``'s gradients (the outputs after the cost) against central differences of its cost."""
    at = len(program.leaves())
    outputs = function(*feeds)
    scale = max(1.0, abs(float(outputs[at])))  # the differences' rounding error grows with the cost

    def cost(*arrays):
        return function(*arrays)[at]
    fine, coarse = numeric_grad(cost, feeds, 1e-6), numeric_grad(cost, feeds, 1e-5)
    try:
        for f, c in zip(fine, coarse):
            assert np.isfinite(f).all()
            assert_close(f, c, rtol=1e-4, atol=1e-6 * scale)
    except AssertionError:
        counts["gradient checks skipped"] += 1
        return None
    counts["gradient checks"] += 1
    try:
        for i, analytic, numeric in zip(program.inputs, outputs[at + 1:], fine):
            assert_close(analytic, numeric, rtol=1e-5, atol=1e-7 * scale, name=f"d cost / d {i.name}")
    except AssertionError as error:
        return Failure("gradient", "mismatch", str(error))
    return None


# ---- shrinking -----------------------------------------------------------------------------------
def shrink(program: Program, failure: Failure) -> tuple:
    """The smallest program found, one change at a time, that fails as ``failure`` did (in the same run, the
    same kind of failure), and how it fails."""
    runs = [r for r in RUNS if f"{r[0]} optimize={r[1]}" == failure.run] or RUNS[-1:]
    while True:
        for candidate in _smaller(program):
            found = check(candidate, runs)
            if found is not None and (found.run, found.kind) == (failure.run, failure.kind):
                program, failure = candidate, found
                break
        else:
            return program, failure


def _smaller(program):
    """Programs one change smaller: without a step, with shorter axes, with a symbolic dim made static."""
    values = _step_values(program) if len(program.steps) > 1 else {}
    for k in reversed(range(len(program.steps))):
        step, steps = program.steps[k], program.steps[:k] + program.steps[k + 1:]
        inputs = list(program.inputs)
        if any(step.name in s.reads for s in steps):
            if step.name not in values:
                continue
            inputs.append(Input(step.name, tuple(int(d) for d in values[step.name].shape), values[step.name]))
        if steps:
            inputs = [i for i in inputs if any(i.name in s.reads for s in steps)]
            yield dataclasses.replace(program, inputs=inputs, steps=steps)
    for size in sorted({d for i in program.inputs for d in i.value.shape if d > 1}, reverse=True):
        for new in sorted({size // 2, size - 1}):
            yield dataclasses.replace(program, inputs=[_cut_axes(i, size, new) for i in program.inputs])
    for k, i in enumerate(program.inputs):
        for axis, dim in enumerate(i.dims):
            if not isinstance(dim, int):
                static = dataclasses.replace(i, dims=i.dims[:axis] + (i.value.shape[axis],) + i.dims[axis + 1:])
                yield dataclasses.replace(program, inputs=program.inputs[:k] + [static] + program.inputs[k + 1:])
    if program.grad:
        yield dataclasses.replace(program, grad=False)


def _step_values(program) -> dict:
    """The truth's value of every step, or nothing when the program does not build or run."""
    try:
        scope = program.build()
        arrays = evaluate([scope[s.name] for s in program.steps],
                          {scope[i.name]: i.value for i in program.inputs}, optimize=0)
    except Exception:
        return {}
    return {s.name: np.asarray(a) for s, a in zip(program.steps, arrays)}


def _cut_axes(i: Input, size: int, new: int) -> Input:
    """``i`` with every axis of length ``size`` cut to its first ``new`` entries."""
    index = tuple(slice(0, new) if d == size else slice(None) for d in i.value.shape)
    dims = tuple(new if d == size and isinstance(declared, int) else declared
                 for d, declared in zip(i.value.shape, i.dims))
    return dataclasses.replace(i, dims=dims, value=i.value[index].copy())


# ---- the command ---------------------------------------------------------------------------------
@contextlib.contextmanager
def _temporary_object_cache():
    """Fuzzed programs never come back: their object code goes to a temporary cache, not the user's."""
    if "GRAPHC_CACHE_DIR" in os.environ:
        yield
        return
    with tempfile.TemporaryDirectory() as directory:
        os.environ["GRAPHC_CACHE_DIR"] = directory
        try:
            yield
        finally:
            del os.environ["GRAPHC_CACHE_DIR"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m graphc.testing.fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0, help="how long to run (default: 1)")
    parser.add_argument("--seed", type=int, help="the first program's seed (default: random); program k has seed + k")
    parser.add_argument("--programs", type=int, help="stop after this many programs")
    args = parser.parse_args(argv)
    first = args.seed if args.seed is not None else int(np.random.default_rng().integers(2**31))
    limit = f"{args.minutes:g} minutes" + (f" or {args.programs} programs" if args.programs else "")
    print(f"fuzzing graphc for {limit} from seed {first}", flush=True)
    ops, counts, programs, failures = Counter(), Counter(), 0, 0
    deadline = time.monotonic() + 60 * args.minutes
    with _temporary_object_cache():
        for seed in itertools.count(first):
            if time.monotonic() > deadline or programs == args.programs:
                break
            program = generate(seed)
            programs += 1
            ops.update(step.op for step in program.steps)
            failure = check(program, counts=counts)
            if failure is not None:
                failures += 1
                print(f"\nprogram {seed} fails ({failure.run}: {failure.kind}); shrinking its {len(program.steps)} "
                      f"steps", flush=True)
                print(reproducer(*shrink(program, failure)), flush=True)
    never = [op for op in MAKERS if op not in ops]
    print(f"\nprograms {programs}, gradient checks {counts['gradient checks']} "
          f"({counts['gradient checks skipped']} skipped: a kink within the differences' reach), mismatches {failures}")
    print(f"ops covered {len(MAKERS) - len(never)} of {len(MAKERS)}: "
          + ", ".join(f"{op} {n}" for op, n in sorted(ops.items()))
          + (f"; never drawn: {', '.join(never)}" if never else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
