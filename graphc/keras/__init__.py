"""A Keras-style front end built on graphc's define-then-run API and the training runtime.

The classic Keras MNIST program runs unchanged apart from its imports::

    from graphc.keras.datasets import mnist
    from graphc.keras.utils import to_categorical
    from graphc.keras import models, layers

and the spellings of "Deep Learning with Python" (2nd ed.) work too: ``graphc.keras.Sequential``,
``graphc.keras.Model``, ``graphc.keras.Input``, ``graphc.keras.layers``.

Submodules load on first use (PEP 562), as graphc's API does: loading and preparing data with
``graphc.keras.datasets`` and ``graphc.keras.utils`` does not import the compiler.
"""
import importlib

__all__ = ["Input", "Model", "Sequential", "activations", "callbacks", "datasets", "distribution", "initializers",
           "layers", "losses", "metrics", "mixed_precision", "models", "optimizers", "regularizers", "saving", "utils"]
_DEFINED_IN = {"Input": "layers", "Model": "models", "Sequential": "models"}


def __getattr__(name):
    """Import the submodule ``name``, or the one that defines the class ``name``, on first use."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f".{_DEFINED_IN.get(name, name)}", __name__)
    value = getattr(module, name) if name in _DEFINED_IN else module
    globals()[name] = value
    return value


def __dir__():
    """The public names, loaded or not."""
    return sorted(set(globals()) | set(__all__))
