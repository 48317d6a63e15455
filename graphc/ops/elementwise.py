"""Elementwise ops. Each is a sympy expression; its derivatives come from ``sympy.diff``.

All of them are nodes of one op, ``elementwise``, whose attributes hold the
body (``expr``, over input symbols %0, %1, ...), a ``label`` for dumps and
the result ``dtype``. A gradient is again an elementwise node (``g * d body /
d %i``), so second derivatives and fusion by substitution come for free.
"""
import numbers

import numpy as np
import sympy

from ..graph import dtypes
from ..graph.node import GraphError, Node, user_location
from ..graph.shapes import broadcast_shapes, format_shape
from .expr import arg, arg_index, evaluate, input_symbols
from .registry import Op, apply

X, Y, Z = arg(0), arg(1), arg(2)

# name -> body. Bodies are chosen to be numerically stable under sympy.diff too:
# sigmoid through tanh has derivative (1 - tanh^2)/4, finite everywhere, where
# 1/(1+exp(-x)) differentiates to exp(-x)/(1+exp(-x))^2 = inf/inf for x << 0.
UNARY = {
    "negative": -X,
    "exp": sympy.exp(X),
    "log": sympy.log(X),
    "sqrt": sympy.sqrt(X),
    "square": X**2,
    "abs": sympy.Abs(X),
    "relu": sympy.Max(X, 0),
    "sigmoid": sympy.tanh(X / 2) / 2 + sympy.Rational(1, 2),
    "tanh": sympy.tanh(X),
    "softplus": sympy.Max(X, 0) + sympy.log(1 + sympy.exp(-sympy.Abs(X))),
}
BINARY = {
    "add": X + Y,
    "subtract": X - Y,
    "multiply": X * Y,
    "divide": X / Y,
    "power": X**Y,
    "maximum": sympy.Max(X, Y),
    "minimum": sympy.Min(X, Y),
}
COMPARISONS = {
    "equal": sympy.Eq(X, Y, evaluate=False),
    "not_equal": sympy.Ne(X, Y, evaluate=False),
    "greater": sympy.StrictGreaterThan(X, Y, evaluate=False),
    "greater_equal": sympy.GreaterThan(X, Y, evaluate=False),
    "less": sympy.StrictLessThan(X, Y, evaluate=False),
    "less_equal": sympy.LessThan(X, Y, evaluate=False),
}
WHERE = sympy.Piecewise((Y, sympy.Ne(X, 0)), (Z, True))
# Results that are floats even for integer operands (as in JAX: log(int) is float32).
FLOAT_RESULT = {"exp", "log", "sqrt", "sigmoid", "tanh", "softplus", "divide"}


def _infer(inputs, attrs):
    try:
        shape = broadcast_shapes(*[i.shape for i in inputs])
    except ValueError as error:
        raise ValueError(f"shapes do not broadcast: {error}") from None
    return shape, attrs["dtype"]


def _reference(node, arrays, dims):
    return evaluate(node.attrs["expr"], arrays, dims, node.dtype)


def _vjp(node, g):
    expr = node.attrs["expr"]
    grads = []
    for index, inp in enumerate(node.inputs):
        if not dtypes.is_float(inp.dtype):
            grads.append(None)  # no gradient flows into integer or boolean operands
            continue
        # Steps (relu', sign) differentiate to DiracDelta: zero almost everywhere, as in TF and PyTorch.
        derivative = sympy.diff(expr, arg(index)).replace(sympy.DiracDelta, lambda *_: sympy.Integer(0))
        # Operand %i of the derivative becomes operand %(i+1) of the gradient node; %0 is g.
        shifted = derivative.xreplace({arg(i): arg(i + 1) for i in range(len(node.inputs))})
        local = make(f"d{node.attrs['label']}/d{index}", arg(0) * shifted, [g, *node.inputs], inp.dtype)
        grads.append(_unbroadcast(local, inp.shape))
    return grads


def _unbroadcast(grad, shape):
    from .shape import unbroadcast
    return unbroadcast(grad, shape)


elementwise_op = Op("elementwise", _infer, _reference, _vjp, kind="elementwise")


def make(label, expr, inputs, dtype):
    """An elementwise node computing ``expr`` over ``inputs``, simplified to the inputs it really uses.

    A body that is just one input (``g * 1``) returns that input (cast if needed)
    instead of a node: gradients of additions cost nothing.
    """
    used = input_symbols(expr)
    if not used and not expr.free_symbols and not inputs:
        raise GraphError(f"{label}: an elementwise op needs at least one tensor operand")
    kept = [inputs[arg_index(s)] for s in used]
    # Operands used twice (x * x) become one operand; broadcasting needs them all in the shape,
    # so inputs that disappeared from the body still count for the result's shape (see below).
    unique, renumber = [], {}
    for symbol, node in zip(used, kept):
        position = next((i for i, n in enumerate(unique) if n is node), None)
        if position is None:
            position = len(unique)
            unique.append(node)
        renumber[symbol] = arg(position)
    body = expr.xreplace(renumber)
    try:
        shape = broadcast_shapes(*[i.shape for i in inputs]) if inputs else ()
    except ValueError as error:
        operands = ", ".join(f"{format_shape(i.shape)} {i.dtype}" for i in inputs)
        raise GraphError(f"{label}: shapes do not broadcast: {error}; operands: {operands} "
                         f"(at {user_location()})") from None
    if unique and body.is_Symbol and unique[0].dtype == dtype and tuple(unique[0].shape) == tuple(shape):
        return unique[0]
    if not unique:
        # A constant body (d(x+y)/dx = 1 times nothing): broadcast a constant to the operands' shape.
        from .shape import broadcast_to
        from .source import constant
        return broadcast_to(constant(np.array(float(body), dtype=dtype)), shape)
    node = apply(elementwise_op, unique, {"expr": body, "label": label, "dtype": dtype})
    if tuple(node.shape) != tuple(shape):
        from .shape import broadcast_to
        return broadcast_to(node, shape)
    return node


def _operand_dtypes(operands):
    return [o.dtype for o in operands if isinstance(o, Node)]


def apply_named(label, body, operands, dtype=None):
    """Build op ``label`` with ``body`` over ``operands``: nodes, numpy arrays or Python scalars.

    Python scalars become numbers inside the body (weakly typed: ``x * 0.5``
    stays float32); numpy arrays become constant nodes.
    """
    from .source import constant
    nodes, substitutions = [], {}
    tensor_dtypes = _operand_dtypes(operands)
    for index, operand in enumerate(operands):
        if isinstance(operand, Node):
            substitutions[arg(index)] = arg(len(nodes))
            nodes.append(operand)
        elif isinstance(operand, (numbers.Number, np.generic)) and np.ndim(operand) == 0:
            substitutions[arg(index)] = sympy.sympify(operand.item() if isinstance(operand, np.generic) else operand)
            if isinstance(operand, bool):
                substitutions[arg(index)] = sympy.Integer(int(operand))
        else:
            array = np.asarray(operand)
            if array.dtype.kind == "f" and tensor_dtypes:
                array = array.astype(dtypes.promote(*tensor_dtypes, "float32"))
            substitutions[arg(index)] = arg(len(nodes))
            nodes.append(constant(array))
    if not nodes:
        raise GraphError(f"{label}: needs at least one tensor operand, got {operands!r}")
    if dtype is None:
        dtype = _result_dtype(label, operands, [n.dtype for n in nodes])
    return make(label, body.xreplace(substitutions), nodes, dtype)


def _result_dtype(label, operands, node_dtypes):
    if "bool" in node_dtypes and label not in COMPARISONS and label != "where":
        raise GraphError(f"{label}: boolean operands need an explicit cast (gc.cast(x, 'float32')) "
                         f"(at {user_location()})")
    dtype = dtypes.promote(*node_dtypes)
    has_float_scalar = any(isinstance(o, (float, np.floating)) for o in operands)
    if dtypes.is_float(dtype):
        return dtype
    if label in FLOAT_RESULT or has_float_scalar:
        return dtypes.DEFAULT_FLOAT
    return dtype


def _named_unary(label):
    def build(x):
        return apply_named(label, UNARY[label], [x])
    build.__name__ = label
    build.__doc__ = f"Elementwise {label}: {UNARY[label]} (with x = %0)."
    return build


def _named_binary(label, table):
    def build(x, y):
        return apply_named(label, table[label], [x, y], dtype="bool" if table is COMPARISONS else None)
    build.__name__ = label
    build.__doc__ = f"Elementwise {label}: {table[label]} (with x = %0, y = %1), numpy broadcasting."
    return build


negative, exp, log, sqrt, square, abs, relu, sigmoid, tanh, softplus = (_named_unary(n) for n in UNARY)
add, subtract, multiply, divide, power, maximum, minimum = (_named_binary(n, BINARY) for n in BINARY)
equal, not_equal, greater, greater_equal, less, less_equal = (_named_binary(n, COMPARISONS) for n in COMPARISONS)


def where(condition, x, y):
    """Elementwise ``x`` where ``condition`` is true (non-zero), else ``y``."""
    dtype = dtypes.promote(*[o.dtype for o in (x, y) if isinstance(o, Node)] or [dtypes.DEFAULT_FLOAT])
    if not dtypes.is_float(dtype) and any(isinstance(o, (float, np.floating)) for o in (x, y)):
        dtype = dtypes.DEFAULT_FLOAT  # an integer meeting a float becomes a float
    return apply_named("where", WHERE, [condition, x, y], dtype=dtype)


def cast(x, dtype):
    """``x`` converted to ``dtype`` (float to int truncates toward zero, as numpy's astype)."""
    dtype = dtypes.as_dtype(dtype)
    if x.dtype == dtype:
        return x
    return apply(elementwise_op, [x], {"expr": X, "label": "cast", "dtype": dtype})


def clip(x, low, high):
    """``x`` limited to [low, high] elementwise."""
    return apply_named("clip", sympy.Min(sympy.Max(X, Y), Z), [x, low, high])
