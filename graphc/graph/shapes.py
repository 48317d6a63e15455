"""Shapes whose entries are ints or sympy expressions over symbolic dimensions.

A dimension is a Python int or a sympy expression in positive-integer symbols
(``batch``, or ``?0`` for an anonymous one). One graph then serves every batch
size: shapes are bound to numbers only when a function is called.
"""
import itertools

import sympy

_named_symbols: dict[str, sympy.Symbol] = {}
_anonymous = itertools.count()


def dim_symbol(name: str) -> sympy.Symbol:
    """The symbolic dimension called ``name``; every use of the same name is the same dimension."""
    if name.startswith("?"):
        raise ValueError(f"dimension names may not start with '?' (reserved for anonymous dims): {name!r}")
    if name not in _named_symbols:
        _named_symbols[name] = sympy.Symbol(name, integer=True, positive=True)
    return _named_symbols[name]


def fresh_dim() -> sympy.Symbol:
    """A new anonymous symbolic dimension (what ``None`` in a placeholder shape means)."""
    return sympy.Symbol(f"?{next(_anonymous)}", integer=True, positive=True)


def canonical_dim(dim):
    """An int for a known size, else a simplified sympy expression."""
    if isinstance(dim, (int,)) and not isinstance(dim, bool):
        return dim
    if isinstance(dim, str):
        return dim_symbol(dim)  # the same symbol placeholders use, not a plain sympy one
    if hasattr(dim, "__index__") and not isinstance(dim, sympy.Basic):
        return int(dim)
    expr = sympy.sympify(dim)
    if not expr.is_Symbol:
        expr = sympy.simplify(expr)
    if expr.is_Integer:
        return int(expr)
    if not expr.free_symbols:
        raise ValueError(f"dimension {dim!r} is not an integer")
    return expr


def dims_equal(a, b) -> bool:
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    if isinstance(a, int) != isinstance(b, int) and (a == 1 or b == 1):
        return False  # a symbolic dim is positive but never known to be 1
    if a == b:
        return True  # the same expression: the common case, and no algebra needed
    return sympy.expand(sympy.sympify(a) - sympy.sympify(b)) == 0


def shapes_equal(a, b) -> bool:
    """Same rank and every dimension equal (symbolic ones as expressions)."""
    return len(a) == len(b) and all(dims_equal(p, q) for p, q in zip(a, b))


def is_static(shape) -> bool:
    return all(isinstance(d, int) for d in shape)


def size(shape):
    """Number of elements: an int, or a sympy expression when a dimension is symbolic."""
    return canonical_dim(sympy.Mul(*[sympy.Integer(d) if isinstance(d, int) else d for d in shape]))


def format_dim(dim) -> str:
    return str(dim)


def format_shape(shape) -> str:
    return "(" + ", ".join(format_dim(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def broadcast_shapes(*shapes):
    """numpy broadcasting over symbolic shapes; ValueError if two dimensions can't be shown compatible.

    A symbolic dimension only broadcasts against 1 or itself: ``(?0,) + (5,)``
    is rejected at build time rather than failing for most batch sizes later.
    """
    rank = max(len(s) for s in shapes)
    result = []
    for axis in range(rank):
        dim = 1
        for shape in shapes:
            offset = axis - (rank - len(shape))
            if offset < 0:
                continue
            other = shape[offset]
            if dims_equal(other, 1):
                continue
            if dims_equal(dim, 1):
                dim = other
            elif not dims_equal(dim, other):
                hint = ""
                if not isinstance(dim, int) and not isinstance(other, int):
                    hint = " (two different symbolic dims: name them alike, e.g. placeholder((\"batch\", 10)))"
                raise ValueError(f"dimension {format_dim(dim)} does not broadcast with {format_dim(other)}{hint}")
        result.append(dim)
    return tuple(result)


def evaluate_dim(dim, bindings: dict) -> int:
    """The integer value of ``dim`` once its symbols are bound (``bindings``: symbol -> int)."""
    if isinstance(dim, int):
        return dim
    value = dim.xreplace({s: sympy.Integer(bindings[s]) for s in dim.free_symbols})
    if not value.is_Integer:
        raise ValueError(f"dimension {dim} evaluates to {value}, not an integer")
    return int(value)


def evaluate_shape(shape, bindings: dict) -> tuple:
    return tuple(evaluate_dim(d, bindings) for d in shape)


def bind_shape(declared, actual, bindings: dict) -> str | None:
    """Match a concrete ``actual`` shape against a ``declared`` one, recording symbol values in ``bindings``.

    Returns None on success, else a sentence saying what disagrees.
    """
    if len(declared) != len(actual):
        return f"expected rank {len(declared)} {format_shape(declared)}, got rank {len(actual)} {tuple(actual)}"
    for axis, (want, got) in enumerate(zip(declared, actual)):
        if isinstance(want, int):
            if want != got:
                return f"expected shape {format_shape(declared)}, got {tuple(actual)} (axis {axis})"
        elif want in bindings and bindings[want] != got:
            return (f"dimension {want} is {bindings[want]} from an earlier input but {got} here "
                    f"(shape {tuple(actual)}, axis {axis})")
        else:
            bindings[want] = got
    return None
