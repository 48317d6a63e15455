"""Weight regularizers as Keras 3 defines them: ``regularizer(weight)`` is a scalar graph tensor that the model
adds to its loss -- L1: l1 * sum(|w|), L2: l2 * sum(w^2), L1L2: the sum of both."""
import functools
import inspect
import math

import numpy as np

import graphc as gc

from ._registry import from_config


def _factor(value, name) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"regularizer: {name} must be a non-negative float, got {name}={value!r}")
    return float(value)


class Regularizer:
    """Base class: a subclass writes ``__call__(weight)`` (a scalar graph tensor) and ``get_config``."""

    def __call__(self, weight):
        raise NotImplementedError(f"{type(self).__name__} must define __call__(weight)")

    def get_config(self) -> dict:
        raise NotImplementedError(f"{type(self).__name__} must define get_config() to be saved")

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


class L1L2(Regularizer):
    """l1 * sum(|w|) + l2 * sum(w^2); a zero factor leaves its term out (both zero: the constant 0)."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _factor(0.0 if l1 is None else l1, "l1")
        self.l2 = _factor(0.0 if l2 is None else l2, "l2")

    def __call__(self, weight):
        terms = [factor * gc.sum(penalty(weight)) for factor, penalty in ((self.l1, gc.abs), (self.l2, gc.square))
                 if factor]
        return sum(terms[1:], terms[0]) if terms else gc.constant(np.zeros((), weight.dtype))

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    """l1 * sum(|w|)."""

    def __init__(self, l1=0.01):
        super().__init__(l1=0.01 if l1 is None else l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    """l2 * sum(w^2)."""

    def __init__(self, l2=0.01):
        super().__init__(l2=0.01 if l2 is None else l2)

    def get_config(self):
        return {"l2": self.l2}


CLASSES = {cls.__name__: cls for cls in (L1, L2, L1L2)}
# Keras 3's snake-case names, and tf.keras' 'l1_l2' (whose factors default to 0.01 where L1L2's are 0).
NAMES = {"l1": L1, "l2": L2, "l1l2": L1L2, "l1_l2": functools.partial(L1L2, l1=0.01, l2=0.01), **CLASSES}


def get(identifier):
    """A regularizer from a name ('l1', 'l2', 'l1_l2', a class name: default factors), a ``serialize`` dict, a
    Regularizer (class or instance) or a function ``f(weight)``; None for None."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str) and identifier in NAMES:
        return NAMES[identifier]()
    if inspect.isclass(identifier) and issubclass(identifier, Regularizer):
        return identifier()
    if callable(identifier) and not inspect.isclass(identifier):
        return identifier
    raise ValueError(f"unknown regularizer {identifier!r}; known: {', '.join(NAMES)} "
                     f"(or a Regularizer, or a function f(weight))")


def serialize(regularizer):
    """``{'class_name': ..., 'config': {...}}`` (Keras' class names), None for None; ValueError for a custom one."""
    if regularizer is None:
        return None
    name = type(regularizer).__name__
    if CLASSES.get(name) is not type(regularizer):
        raise ValueError(f"cannot save the custom regularizer {regularizer!r}: only {', '.join(CLASSES)} "
                         f"can be written to a model file")
    return {"class_name": name, "config": regularizer.get_config()}


def deserialize(config):
    """The regularizer a ``serialize`` result (or a name) stands for."""
    if config is None or isinstance(config, str):
        return get(config)
    return from_config(CLASSES, config, "regularizer")
