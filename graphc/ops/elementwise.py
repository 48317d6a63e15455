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
from .expr import (Expm1, FloorDiv, FloorMod, Log1p, Sigmoid, Softplus, StopGradient, arg, arg_index, evaluate,
                   input_symbols, unevaluated_xreplace)
from .registry import Op, apply

X, Y, Z = arg(0), arg(1), arg(2)

# name -> body. Bodies are chosen to be numerically stable under sympy.diff too: sigmoid and softplus
# are functions of their own (graphc.ops.expr), whose derivatives are smooth and finite everywhere.
UNARY = {
    "negative": -X,
    "exp": sympy.exp(X),
    "log": sympy.log(X),
    "sqrt": sympy.sqrt(X),
    "square": X**2,
    "abs": sympy.Abs(X),
    "relu": sympy.Max(X, 0),
    "sigmoid": Sigmoid(X),
    "tanh": sympy.tanh(X),
    "softplus": Softplus(X),
    "log1p": Log1p(X),
    "expm1": Expm1(X),
    "sin": sympy.sin(X),
    "cos": sympy.cos(X),
}
BINARY = {
    "add": X + Y,
    "subtract": X - Y,
    "multiply": X * Y,
    "divide": X / Y,
    "power": X**Y,
    "maximum": sympy.Max(X, Y),
    "minimum": sympy.Min(X, Y),
    "floor_divide": FloorDiv(X, Y),  # numpy's // and %, for integers and floats (graphc.ops.expr)
    "mod": FloorMod(X, Y),
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
FLOAT_RESULT = {"exp", "log", "sqrt", "sigmoid", "tanh", "softplus", "log1p", "expm1", "sin", "cos", "divide"}


def indicator(condition):
    """1 where ``condition`` holds, else 0: a comparison as a number in arithmetic."""
    return sympy.Piecewise((1, condition), (0, True))


# Derivatives at kinks, by convention (TensorFlow's), where sympy.diff's Heaviside(0) = 0 would differ:
# ties in maximum/minimum send the whole gradient to x; clip passes the gradient at its bounds
# (inclusive) and its bounds get it beyond them. relu'(0) = 0 and abs'(0) = sign(0) = 0 need no entry.
# docs/optimizer.md lists the conventions.
DERIVATIVES = {
    "maximum": [indicator(sympy.GreaterThan(X, Y)), indicator(sympy.StrictLessThan(X, Y))],
    "minimum": [indicator(sympy.LessThan(X, Y)), indicator(sympy.StrictGreaterThan(X, Y))],
    "clip": [indicator(sympy.And(sympy.GreaterThan(X, Y), sympy.LessThan(X, Z))),
             indicator(sympy.StrictLessThan(X, Y)), indicator(sympy.StrictGreaterThan(X, Z))],
}
# Derivatives of two tensors where sympy.diff's form loses the value at special points (OWN is the op's own
# value, read from its node). docs/optimizer.md lists them.
#   x / y by y:  -(x / y) / y, as TF and PyTorch; -x / y**2 is NaN at x = 0, y = 1e-20, where y**2 underflows
#   x ** y by x: y x**(y - 1), and 0 where y = 0 (x**0 is 1 everywhere); y x**y / x is NaN at x = 0
#   x ** y by y: x**y log(x), and 0 where x <= 0, as TF (0**y is flat in y); NaN at x = NaN
OWN = sympy.Symbol("own", real=True)
STABLE_DERIVATIVES = {
    "divide": [1 / Y, -OWN / Y],
    "power": [sympy.Piecewise((0, sympy.Eq(Y, 0)), (Y * X**(Y - 1), True)),
              sympy.Piecewise((0, X <= 0), (OWN * sympy.log(X), True))],
}


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
        conventional = DERIVATIVES.get(node.attrs["label"]) or STABLE_DERIVATIVES.get(node.attrs["label"])
        if conventional is not None and len(conventional) == len(node.inputs):
            derivative = conventional[index]
        else:
            # Steps (relu', sign) differentiate to DiracDelta: zero almost everywhere, as in TF and PyTorch.
            derivative = sympy.diff(expr, arg(index)).replace(sympy.DiracDelta, lambda *_: sympy.Integer(0))
        # Operand %i of the derivative becomes operand %(i+1) of the gradient node; %0 is g.
        shift = {arg(i): arg(i + 1) for i in range(len(node.inputs))}
        shifted = derivative.xreplace({**shift, OWN: arg(len(node.inputs) + 1)})
        if not expr.is_Symbol and node.dtype == inp.dtype:
            # The node's own value where the derivative holds its body (exp' = exp, sigmoid' = s (1 - s)):
            # read, not recomputed, and fusion can then cancel it against a 1/s from log's derivative.
            shifted = shifted.xreplace({expr.xreplace(shift): arg(len(node.inputs) + 1)})
        local = make(f"d{node.attrs['label']}/d{index}", arg(0) * shifted, [g, *node.inputs, node], inp.dtype)
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
    body = unevaluated_xreplace(expr, renumber)  # z / z stays z / z (NaN at 0), not 1
    try:
        shape = broadcast_shapes(*[i.shape for i in inputs]) if inputs else ()
    except ValueError as error:
        operands = ", ".join(f"{format_shape(i.shape)} {i.dtype}" for i in inputs)
        raise GraphError(f"{label}: shapes do not broadcast: {error}; operands: {operands} "
                         f"(at {user_location()})") from None
    if unique and body.is_Symbol and arg_index(body) is not None:  # where(c, x, x) is x, not c
        operand = unique[arg_index(body)]
        if operand.dtype == dtype and tuple(operand.shape) == tuple(shape):
            return operand
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
    if label in DERIVATIVES and tensor_dtypes:
        # The conventions at kinks are per operand (clip(x, 0., 1.) passes the gradient at 0 and 1): a scalar
        # stays an operand, a 0-d constant of the result's dtype.
        dtype = dtype or _result_dtype(label, operands, tensor_dtypes)
        operands = [constant(np.asarray(o, dtype)) if _is_scalar(o) else o for o in operands]
    for index, operand in enumerate(operands):
        if isinstance(operand, Node):
            substitutions[arg(index)] = arg(len(nodes))
            nodes.append(operand)
        elif _is_scalar(operand):
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
    _check_integer_power(label, substitutions, dtype)
    # Unevaluated, so that no scalar is simplified away: x * 0 is NaN at inf, x / 0 is inf, as in numpy.
    body, nodes = _stabilized(unevaluated_xreplace(body, substitutions), nodes, dtype)
    return make(label, body, nodes, dtype)


def _check_integer_power(label, substitutions, dtype):
    """numpy refuses integers to negative integer powers; so does graphc, when the graph is built."""
    if label == "power" and not dtypes.is_float(dtype):
        exponent = substitutions.get(arg(1))
        if exponent is not None and exponent.is_Number and exponent < 0:
            raise GraphError(f"power: integers to negative integer powers are not allowed (as in numpy); cast "
                             f"the base to a float dtype first (at {user_location()})")


# ---- stability rewrites, applied as the user builds the graph -------------------------------
# What the user spelled across several ops is rewritten into one stable body before anything is
# differentiated, so gradients are stable too (PyTensor applies the same rewrites to whole graphs):
#   1 / (1 + exp(a))     => sigmoid(-a)       (any 1/(1+exp(-x)) spelling)
#   log(sigmoid(u))      => -softplus(-u)     (-20 in float32, where sigmoid(u) underflows)
#   log(1 - sigmoid(u))  => -softplus(u)      (where sigmoid(u) rounds to 1)
#   log(1 + x)           => log1p(x)
#   exp(x) - 1           => expm1(x)
# These change results (they make them accurate): docs/optimizer.md lists them.
STABILIZE_DEPTH = 3  # producers looked through: log(1 - p) with p = 1/(1 + exp(-z)) needs 3


def _stabilized(body, nodes, dtype):
    """``body`` over ``nodes``, with the elementwise producers of ``nodes`` (up to STABILIZE_DEPTH deep)
    composed into it as far as that lets stability rewrites apply; else unchanged."""
    if not dtypes.is_float(dtype):
        return body, nodes
    composed = _evaluated(body)  # the rules read sympy's canonical forms (1 + exp(a), x - 1)
    if not _may_stabilize(composed):
        return body, nodes
    best, leaves = (body, nodes), list(nodes)
    for _ in range(STABILIZE_DEPTH):
        composed, leaves, grew = _compose_producers(composed, leaves, dtype)
        composed = _evaluated(composed)
        stable = _stable(composed)
        if stable != composed:  # a rewrite applied; looking deeper may let another one apply on top
            best, composed = (stable, leaves), stable
        if not grew:
            break
    return best


def _may_stabilize(body) -> bool:
    """Whether a rewrite could apply anywhere in this body: a log, a reciprocal, or a sum with a constant."""
    return any(isinstance(e, sympy.log) or (isinstance(e, sympy.Pow) and e.exp == -1)
               or (isinstance(e, sympy.Add) and any(t.is_Number for t in e.args))
               for e in sympy.preorder_traversal(body))


def _evaluated(expr):
    """``expr`` with every unevaluated sum, product and power evaluated."""
    if not expr.args:
        return expr
    return expr.func(*[_evaluated(a) for a in expr.args])


def _compose_producers(body, nodes, dtype):
    """Substitute each elementwise producer of ``dtype`` among ``nodes`` by its body over its inputs."""
    leaves, substitutions, grew = [], {}, False

    def operand(node):
        for position, leaf in enumerate(leaves):
            if leaf is node:
                return arg(position)
        leaves.append(node)
        return arg(len(leaves) - 1)
    for index, node in enumerate(nodes):
        if node.op.name == "elementwise" and node.dtype == dtype and node.attrs["label"] != "cast":
            inner = node.attrs["expr"]
            substitutions[arg(index)] = inner.xreplace({arg(i): operand(n) for i, n in enumerate(node.inputs)})
            grew = True
        else:
            substitutions[arg(index)] = operand(node)
    return body.xreplace(substitutions), leaves, grew


def _stable(expr):
    """The stability rewrites above, bottom up."""
    if not expr.args:
        return expr
    args = tuple(_stable(a) for a in expr.args)
    if args != expr.args:
        expr = expr.func(*args)
    if isinstance(expr, sympy.Pow) and expr.exp == -1 and isinstance(expr.base, sympy.Add):
        rest = expr.base - 1
        if isinstance(rest, sympy.exp):
            return Sigmoid(-rest.args[0])
    if isinstance(expr, sympy.log):
        inner = expr.args[0]
        if isinstance(inner, Sigmoid):
            return -Softplus(-inner.args[0])
        rest = inner - 1
        if isinstance(-rest, Sigmoid):
            return -Softplus((-rest).args[0])
        if isinstance(inner, sympy.Add) and any(t == 1 for t in inner.args):
            return _stable(Log1p(rest))
    if isinstance(expr, Log1p) and isinstance(-expr.args[0], Sigmoid):  # log1p(-sigmoid(u)) = log(1 - sigmoid(u))
        return -Softplus((-expr.args[0]).args[0])
    if isinstance(expr, sympy.Add) and any(t == -1 for t in expr.args):
        exponentials = [t for t in expr.args if isinstance(t, sympy.exp)]
        if exponentials:
            return Expm1(exponentials[0].args[0]) + (expr - exponentials[0] + 1)
    return expr


def _is_scalar(operand) -> bool:
    return isinstance(operand, (numbers.Number, np.generic)) and np.ndim(operand) == 0


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


negative, exp, log, sqrt, square, abs, relu, sigmoid, tanh, softplus, log1p, expm1, sin, cos = (
    _named_unary(n) for n in UNARY)
add, subtract, multiply, divide, power, maximum, minimum, floor_divide, mod = (
    _named_binary(n, BINARY) for n in BINARY)
equal, not_equal, greater, greater_equal, less, less_equal = (_named_binary(n, COMPARISONS) for n in COMPARISONS)


def where(condition, x, y):
    """Elementwise ``x`` where ``condition`` is true (non-zero), else ``y``."""
    dtype = dtypes.promote(*[o.dtype for o in (x, y) if isinstance(o, Node)] or [dtypes.DEFAULT_FLOAT])
    if not dtypes.is_float(dtype) and any(isinstance(o, (float, np.floating)) for o in (x, y)):
        dtype = dtypes.DEFAULT_FLOAT  # an integer meeting a float becomes a float
    return apply_named("where", WHERE, [condition, x, y], dtype=dtype)


def stop_gradient(x):
    """The value of ``x``; no gradient flows back through it (gc.grad sees a zero derivative, as JAX's
    stop_gradient: a cost that reaches ``x`` only through it gets a zero gradient, not an 'unconnected' error)."""
    if not isinstance(x, Node):
        raise GraphError(f"stop_gradient: expected a graph tensor, got {type(x).__name__} {x!r} "
                         f"(at {user_location()})")
    return apply(elementwise_op, [x], {"expr": StopGradient(X), "label": "stop_gradient", "dtype": x.dtype})


def cast(x, dtype):
    """``x`` converted to ``dtype`` (float to int truncates toward zero, as numpy's astype)."""
    dtype = dtypes.as_dtype(dtype)
    if x.dtype == dtype:
        return x
    return apply(elementwise_op, [x], {"expr": X, "label": "cast", "dtype": dtype})


def clip(x, low, high):
    """``x`` limited to [low, high] elementwise."""
    return apply_named("clip", sympy.Min(sympy.Max(X, Y), Z), [x, low, high])
