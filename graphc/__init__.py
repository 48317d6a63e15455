"""graphc: a symbolic computation-graph compiler for deep learning.

Define a graph with placeholders, variables and ops; differentiate it with
``grad``; compile it with ``function``.

The public API loads on first use (PEP 562): ``import graphc.keras.datasets``
and the data preparation a program does before it builds a model then hold no
memory for sympy, llvmlite and the compiler (about 100 MiB), which would
otherwise add to the program's peak (see docs/performance.md, "Memory").
"""
import importlib
import importlib.util
import sys
import types

# name -> the submodule that defines it; the op functions (graphc.ops.__all__) are added on loading.
_API = {
    **dict.fromkeys(["GradientError", "grad", "hessian", "jacobian"], "autodiff"),
    **dict.fromkeys(["BACKENDS", "Function", "function"], "function"),
    **dict.fromkeys(["Graph", "GraphError", "Node", "dump"], "graph"),
    **dict.fromkeys(["render", "to_dot", "to_networkx"], "viz"),
    "explain": "viz.explain",
}


def _load_api() -> None:
    """Bind every public name in this module: the first use of one imports the whole API, as ``import graphc``
    did before it was lazy, so ``graphc.function`` is the function (not its submodule) from then on."""
    api = {name: getattr(importlib.import_module(f".{module}", __name__), name) for name, module in _API.items()}
    ops = importlib.import_module(".ops", __name__)
    api.update({name: getattr(ops, name) for name in ops.__all__})
    api["Tensor"] = api["Node"]
    globals().update(api)
    globals()["__all__"] = sorted(api)


def __getattr__(name):
    """A public name not bound yet (or ``__all__``, for ``from graphc import *``): load the API. Submodules
    (``from graphc import keras``) and private names are left to the import system: AttributeError."""
    private = name.startswith("_") and name != "__all__"
    if not private and (name in _API or importlib.util.find_spec(f".{name}", __name__) is None):
        _load_api()
        if name in globals():
            return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    """The public API too, as ``dir(graphc)`` listed it when imports were eager."""
    _load_api()
    return sorted(globals())


class _Package(types.ModuleType):
    """graphc's module type: the import system binds a loaded submodule to its name in the package, and
    ``import graphc.function`` would then hide the function ``graphc.function`` behind its module."""

    def __setattr__(self, name, value):
        if not (name in _API and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
