"""Shapes whose entries are ints or sympy expressions over symbolic dimensions.

A dimension is a Python int or a sympy expression in positive-integer symbols
(``batch``, or ``?0`` for an anonymous one). One graph then serves every batch
size: shapes are bound to numbers only when a function is called.

Anonymous dims unify (as in TensorFlow's static shapes): when a shape rule meets an anonymous dim
and a different dim (another anonymous one, a named one or a size), ``unify_dims`` records that
they are one dimension, and from then on ``dims_equal`` treats them as equal. The record is a
union-find: each unified anonymous symbol points at what it met, and the end of that chain (its
representative) is a size, else a named dim, else the oldest anonymous dim of the class. Nothing
checks the equality until a function is called: ``gc.function`` gives the backend a graph that
uses only representatives, and checks every call's inputs against them. Named dims never unify
with anything but anonymous ones: ``batch`` meeting ``n`` or 10 stays a build-time error.
"""
import contextlib
import itertools
import threading

import sympy

_named_symbols: dict[str, sympy.Symbol] = {}
_anonymous = itertools.count()

# The union-find of anonymous dims: symbol -> the dim it was unified with, and where (the user's line).
_unified: dict = {}
_unified_at: dict = {}
_lock = threading.RLock()
_local = threading.local()  # .frozen: depth of frozen_dims(); .journals: open unifying() transactions


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


def is_anonymous(dim) -> bool:
    """Whether ``dim`` is an anonymous symbolic dimension (``None`` in a placeholder's shape)."""
    return isinstance(dim, sympy.Symbol) and dim.name.startswith("?")


def any_unified() -> bool:
    """Whether any anonymous dim has been unified with another (until then nothing needs resolving)."""
    return bool(_unified)


def find_dim(dim):
    """The representative of ``dim``'s class: itself unless it is an anonymous dim unified with another."""
    while isinstance(dim, sympy.Symbol) and dim in _unified:
        dim = _unified[dim]
    return dim


def resolve_dim(dim):
    """``dim`` with every unified anonymous symbol in it replaced by its representative."""
    if not _unified or isinstance(dim, int):
        return dim
    if isinstance(dim, sympy.Symbol):
        return find_dim(dim)
    replaced = {s: find_dim(s) for s in dim.free_symbols if s in _unified}
    return canonical_dim(dim.xreplace(replaced)) if replaced else dim


def resolve_shape(shape) -> tuple:
    return tuple(resolve_dim(d) for d in shape)


def unification_sites(dim) -> list:
    """Where (the user's lines) the unifications that lead from anonymous ``dim`` to its representative happened."""
    sites = []
    while isinstance(dim, sympy.Symbol) and dim in _unified:
        if _unified_at[dim] not in sites:
            sites.append(_unified_at[dim])
        dim = _unified[dim]
    return sites


def _order(dim):
    """Which dim of a class represents it: a size first, then a named dim, then the oldest anonymous one."""
    if isinstance(dim, int):
        return (0, dim, "")
    if is_anonymous(dim):
        return (2, int(dim.name[1:]), "")
    return (1, 0, dim.name)


def unify_dims(a, b):
    """The dim ``a`` and ``b`` are when they meet (broadcasting, a matmul's contracted axes, a loss's
    operands), or None when they cannot be the same. Equal dims are the same; an anonymous dim meeting
    any other dim (anonymous, named or a size, not a compound expression) is unified with it, recorded
    with the user's line. Inside ``frozen_dims()`` nothing new is unified."""
    a, b = resolve_dim(a), resolve_dim(b)
    if dims_equal(a, b):
        return b if isinstance(b, int) and not isinstance(a, int) else a
    if getattr(_local, "frozen", 0):
        return None
    anonymous = [d for d in (a, b) if is_anonymous(d)]
    if not anonymous:
        return None  # two sizes, two named dims, a named dim and a size: they never unify
    other = b if anonymous[0] is a else a
    if not (isinstance(other, int) or isinstance(other, sympy.Symbol)):
        return None  # an expression such as 2*batch: the anonymous dim is not simply another name for it
    child, parent = (a, b) if _order(a) > _order(b) else (b, a)
    from .node import user_location
    location = user_location()
    with _lock:
        _unified[child] = parent
        _unified_at[child] = location
        for journal in getattr(_local, "journals", ()):
            journal.append(child)
    return parent


@contextlib.contextmanager
def unifying():
    """A shape rule's unifications take effect only if the rule succeeds: a refused op unifies nothing."""
    journals = _local.__dict__.setdefault("journals", [])
    journal = []
    journals.append(journal)
    try:
        yield
    except BaseException:
        with _lock:
            for symbol in reversed(journal):
                _unified.pop(symbol, None)
                _unified_at.pop(symbol, None)
        raise
    finally:
        journals.pop()


@contextlib.contextmanager
def frozen_dims():
    """No new unification inside (the optimizer and backends work on a graph whose dims are settled):
    ``unify_dims`` only accepts dims that are already equal."""
    _local.frozen = getattr(_local, "frozen", 0) + 1
    try:
        yield
    finally:
        _local.frozen -= 1


def describe_dim(dim) -> str:
    """``dim``, and for a unified anonymous dim what it was unified with and where."""
    if not is_anonymous(dim) or dim not in _unified:
        return format_dim(dim)
    return f"{dim} (unified with {find_dim(dim)} at {', '.join(unification_sites(dim))})"


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
    """Whether ``a`` and ``b`` are known to be the same size (unified anonymous dims count as one).
    A predicate: it never unifies anything (``unify_dims`` does)."""
    if _unified and a is not b:
        a, b = resolve_dim(a), resolve_dim(b)
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

    A named dimension only broadcasts against 1 or itself: ``("batch",) + (5,)`` is rejected at build
    time rather than failing for most batch sizes later. An anonymous one (``None``) meeting another
    dim is unified with it (``unify_dims``): ``(?0,) + (?1,)`` is ``(?0,)``, and ``(?0,) + (5,)`` is
    ``(5,)``; the function checks the inputs' sizes when it is called.
    """
    rank = max(len(s) for s in shapes)
    result = []
    with unifying():
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
                    continue
                unified = unify_dims(dim, other)
                if unified is None:
                    hint = ""
                    if not isinstance(resolve_dim(dim), int) and not isinstance(resolve_dim(other), int):
                        hint = " (two different symbolic dims: name them alike, e.g. placeholder((\"batch\", 10)))"
                    raise ValueError(f"dimension {describe_dim(dim)} does not broadcast with "
                                     f"{describe_dim(other)}{hint}")
                dim = unified
            result.append(resolve_dim(dim))
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
