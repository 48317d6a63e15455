"""``gc.explain``: a tensor as one formula of the inputs, the variables and the named intermediates.

Elementwise bodies are substituted into each other, so a fused group reads as one expression;
matmuls, transposes, reductions and the nn ops stay named operators. Layout ops that only relabel
memory (reshape, broadcast_to, squeeze, expand_dims) are transparent. A node the user named (``W1``,
``h``, ``logits``) is a symbol, not expanded, unless it is the tensor being explained: the formula
stops where the user's own vocabulary starts. Works on gradients too (the chain rule, written out)::

    >>> print(gc.explain(gc.grad(loss, logits)))
    (softmax(logits) - y)/batch
"""
import re

import sympy
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

from ..ops.expr import arg

_TRANSPARENT = {"reshape", "broadcast_to", "squeeze", "expand_dims"}


class TensorName(sympy.Symbol):
    """A tensor's name in a formula (an input, a variable, a named intermediate); dims stay Symbols."""


class MatMul(sympy.Function):
    """a @ b, an opaque operator: its operands are matrices, not numbers sympy may reorder."""


class Transpose(sympy.Function):
    """aᵀ"""


class Operator(sympy.Function):
    """A named operator (sum over axes, softmax, argmax...): subclasses carry ``label`` and ``axes``."""

    label, axes = "", None

    def _sympystr(self, printer):
        axes = "" if self.axes is None else f"[{_axes_text(self.axes)}]"
        return f"{self.label}{axes}({', '.join(printer._print(a) for a in self.args)})"

    def _latex(self, printer, exp=None):
        axes = "" if self.axes is None else f"_{{{_axes_text(self.axes)}}}"
        name = "\\sum" if self.label == "sum" else f"\\operatorname{{{self.label}}}"
        return f"{name}{axes}\\left({', '.join(printer._print(a) for a in self.args)}\\right)"


_OPERATORS = {}


def _operator(label, axes):
    key = (label, axes)
    if key not in _OPERATORS:
        name = re.sub(r"\W", "_", f"{label}_{axes}")
        _OPERATORS[key] = type(name, (Operator,), {"label": label, "axes": axes})
    return _OPERATORS[key]


class Formula:
    """A tensor's formula: ``str()`` for text, ``.latex()`` for LaTeX, rendered by Jupyter."""

    def __init__(self, expr, name):
        self.expr = expr
        self.name = name

    def __str__(self):
        return _TextPrinter().doprint(self.expr)

    def __repr__(self):
        return f"<formula of {self.name}: {self}>"

    def latex(self) -> str:
        return _LatexPrinter().doprint(self.expr)

    def _repr_latex_(self):
        return f"$\\displaystyle {self.latex()}$"


def explain(tensor, names=None) -> Formula:
    """The formula of ``tensor`` (a graph node, e.g. one of gc.grad's results). ``names`` maps more
    nodes to the names they stand under (``{dlogits: "dZ"}``): gradients have no names of their own."""
    memo, names = {}, {node.id: name for node, name in (names or {}).items()}

    def formula(node, root=False):
        key = (node.id, root)
        if key not in memo:
            if not root and node.id in names:
                memo[key] = TensorName(names[node.id], real=True)
            else:
                memo[key] = _formula(node, root, formula)
        return memo[key]
    return Formula(sympy.together(_tidy(formula(tensor, root=True))), tensor.name)


def _tidy(expr):
    """Whole floats as integers (1.0*y is y), and sympy's simplification of what is left."""
    if expr.is_Float and float(expr).is_integer():
        return sympy.Integer(int(expr))
    if not expr.args or isinstance(expr, TensorName):
        return expr
    return expr.func(*[_tidy(a) for a in expr.args])


def _symbol(node):
    return TensorName(node.name.replace("?", ""), real=True)


def _sum(value, axes):
    """A sum over ``axes``, with the factors that do not depend on any tensor (1/batch, -1) outside."""
    constant, rest = value.as_independent(*value.atoms(TensorName), as_Add=False) if value.is_Mul else (1, value)
    return constant * _operator("sum", axes)(rest)


def _formula(node, root, formula):
    name = node.op.name
    if name in ("placeholder", "variable"):
        return _symbol(node)
    if name == "constant":
        value = node.attrs["value"]
        return sympy.sympify(value.item()) if value.size == 1 else _symbol(node)
    if not root and node.named:
        return _symbol(node)  # the user's name for an intermediate
    inputs = [formula(i) for i in node.inputs]
    if name == "elementwise":
        if node.attrs.get("label") == "cast":
            return inputs[0]
        return node.attrs["expr"].xreplace({arg(i): value for i, value in enumerate(inputs)})
    if name in _TRANSPARENT:
        return inputs[0]
    if name == "transpose" and node.ndim == 2:
        return Transpose(inputs[0])
    if node.op.kind in ("matmul", "conv"):
        a, b = inputs[:2]
        if node.op.kind == "conv":
            product = _operator("conv", None)(a, b)
        else:
            a = Transpose(a) if node.attrs.get("transpose_a") else a
            b = Transpose(b) if node.attrs.get("transpose_b") else b
            product = MatMul(a, b)
        epilogue = node.attrs.get("epilogue")
        return epilogue.xreplace({arg(0): product, **{arg(i): v for i, v in enumerate(inputs[2:], 1)}}) \
            if epilogue is not None else product
    axes = node.attrs.get("axes", node.attrs.get("axis"))
    axes = tuple(axes) if isinstance(axes, list) else axes
    if name == "reduce_sum":
        return _sum(inputs[0], axes)
    return _operator(node.op.display_name(node), axes)(*inputs)


def _axes_text(axes) -> str:
    return ",".join(str(a) for a in axes) if isinstance(axes, tuple) else str(axes)


def _matrix_operand(printer, expr):
    text = printer._print(expr)
    if not isinstance(expr, (sympy.Add, sympy.Mul)):
        return text
    return f"\\left({text}\\right)" if isinstance(printer, LatexPrinter) else f"({text})"


def _iverson(printer, expr):
    """A 0/1 step or indicator written as an Iverson bracket, [h > 0]; None for another Piecewise."""
    if isinstance(expr, sympy.Heaviside):
        inside = f"{printer._print(expr.args[0])} > 0"
    elif len(expr.args) == 2 and expr.args[0].expr == 1 and expr.args[1].expr == 0:
        inside = printer._print(expr.args[0].cond)
    else:
        return None
    return f"\\left[{inside}\\right]" if isinstance(printer, LatexPrinter) else f"[{inside}]"


def _is_elementwise_product(expr) -> bool:
    """A product with a matmul, a transpose or a mask ([z > 0]) among its factors, written with ⊙."""
    return any(isinstance(factor, (MatMul, Transpose, sympy.Heaviside, sympy.Piecewise)) for factor in expr.args)


class _TextPrinter(StrPrinter):
    def _print_MatMul(self, expr):
        return f"({_matrix_operand(self, expr.args[0])} @ {_matrix_operand(self, expr.args[1])})"

    def _print_Mul(self, expr):
        if _is_elementwise_product(expr):
            return " ⊙ ".join(self.parenthesize(f, 40) for f in expr.args)
        return super()._print_Mul(expr)

    def _print_Transpose(self, expr):
        inner = self._print(expr.args[0])
        return f"{inner}ᵀ" if expr.args[0].is_Symbol else f"({inner})ᵀ"

    def _print_Heaviside(self, expr):
        return _iverson(self, expr)

    def _print_Piecewise(self, expr):
        return _iverson(self, expr) or super()._print_Piecewise(expr)


class _LatexPrinter(LatexPrinter):
    def _print_MatMul(self, expr):
        a, b = (_matrix_operand(self, operand) for operand in expr.args)
        return f"\\left({a} \\, {b}\\right)"

    def _print_Mul(self, expr):
        if _is_elementwise_product(expr):
            return " \\odot ".join(self.parenthesize(f, 40) for f in expr.args)
        return super()._print_Mul(expr)

    def _print_Transpose(self, expr):
        inner = self._print(expr.args[0])
        return f"{inner}^{{T}}" if expr.args[0].is_Symbol else f"\\left({inner}\\right)^{{T}}"

    def _print_Heaviside(self, expr, exp=None):
        return _iverson(self, expr)

    def _print_Piecewise(self, expr):
        return _iverson(self, expr) or super()._print_Piecewise(expr)
