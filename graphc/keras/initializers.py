"""Weight initializers as Keras 3 has them: classes (``GlorotUniform(seed=None)``, ``HeNormal``,
``Constant(value)``, ``RandomNormal(mean, stddev)``, ...) with ``get_config``, and the names layers take
(``Dense(kernel_initializer="he_normal")``). Each maps a shape to a float32 array. Without a seed they draw
from graphc.keras's generator (``utils.set_random_seed`` makes them reproducible); with an integer seed every
call gives the same array, as Keras'.

``get`` turns a name, a class, a ``{"class_name", "config"}`` dict, an initializer or a function
``f(shape)`` into an initializer; ``serialize`` turns it back: a name stays the name it was given as, an
object becomes its class name and config.
"""
import math
import numbers
import operator

import numpy as np

from . import _state
from ._registry import from_config, lookup, to_config


class Initializer:
    """``initializer(shape) -> array``; subclasses define ``draw(shape)`` and their ``get_config``."""

    def __call__(self, shape, dtype="float32"):
        return np.asarray(self.draw(tuple(shape)), dtype=dtype)

    def draw(self, shape):
        raise NotImplementedError

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class Zeros(Initializer):
    def draw(self, shape):
        return np.zeros(shape)


class Ones(Initializer):
    def draw(self, shape):
        return np.ones(shape)


class Constant(Initializer):
    """Every entry ``value`` (a number)."""

    def __init__(self, value=0.0):
        self.value = check_number(value, "Constant", "value")

    def draw(self, shape):
        return np.full(shape, self.value)

    def get_config(self):
        return {"value": self.value}


class RandomInitializer(Initializer):
    """Draws from graphc.keras's generator, or from a generator of its own ``seed`` made anew at each call."""

    def __init__(self, seed=None):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise ValueError(f"{type(self).__name__}: seed must be an integer or None, got {seed!r}")
        self.seed = None if seed is None else int(seed)

    def generator(self) -> "np.random.Generator":
        return _state.generator() if self.seed is None else np.random.default_rng(self.seed)

    def get_config(self):
        return {"seed": self.seed}


class RandomNormal(RandomInitializer):
    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean = check_number(mean, type(self).__name__, "mean")
        self.stddev = check_number(stddev, type(self).__name__, "stddev", at_least=0)

    def draw(self, shape):
        return self.generator().normal(self.mean, self.stddev, size=shape)

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "stddev": self.stddev}


class TruncatedNormal(RandomNormal):
    """A normal distribution with the draws more than two standard deviations from the mean drawn again."""

    def draw(self, shape):
        return self.mean + self.stddev * _truncated_normal(self.generator(), shape)


class RandomUniform(RandomInitializer):
    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        super().__init__(seed)
        self.minval = check_number(minval, "RandomUniform", "minval")
        self.maxval = check_number(maxval, "RandomUniform", "maxval", at_least=self.minval)

    def draw(self, shape):
        return self.generator().uniform(self.minval, self.maxval, size=shape)

    def get_config(self):
        return {**super().get_config(), "minval": self.minval, "maxval": self.maxval}


class VarianceScaling(RandomInitializer):
    """Keras 3's rule: variance ``scale / n`` with n the fan in, the fan out or their mean (``mode``), from a
    uniform distribution (limit sqrt(3 scale / n)), a normal one truncated at two standard deviations (stddev
    sqrt(scale / n) / 0.8796..., the stddev of the standard normal so truncated) or an untruncated normal."""

    MODES = ("fan_in", "fan_out", "fan_avg")
    DISTRIBUTIONS = ("uniform", "truncated_normal", "untruncated_normal")

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None, input_axes=None,
                 output_axes=None):
        super().__init__(seed)
        label = type(self).__name__
        self.scale = check_number(scale, label, "scale", above=0)
        if mode not in self.MODES:
            raise ValueError(f"{label}: mode must be one of {', '.join(self.MODES)}, got {mode!r}")
        distribution = "truncated_normal" if distribution == "normal" else distribution
        if distribution not in self.DISTRIBUTIONS:
            raise ValueError(f"{label}: distribution must be one of {', '.join(self.DISTRIBUTIONS)} (or normal), "
                             f"got {distribution!r}")
        self.mode, self.distribution = mode, distribution
        self.input_axes, self.output_axes = input_axes, output_axes

    def draw(self, shape):
        fan_in, fan_out = compute_fans(shape, self.input_axes, self.output_axes)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        variance = self.scale / max(1.0, fan)
        if self.distribution == "uniform":
            limit = math.sqrt(3 * variance)
            return self.generator().uniform(-limit, limit, size=shape)
        if self.distribution == "untruncated_normal":
            return math.sqrt(variance) * self.generator().standard_normal(shape)
        return math.sqrt(variance) / 0.87962566103423978 * _truncated_normal(self.generator(), shape)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                "input_axes": self.input_axes, "output_axes": self.output_axes}


class _Preset(VarianceScaling):
    """A VarianceScaling whose ``SETTINGS`` (scale, mode, distribution) are fixed: configured by its seed (and axes)."""

    SETTINGS = ()

    def __init__(self, seed=None, input_axes=None, output_axes=None):
        super().__init__(*self.SETTINGS, seed, input_axes, output_axes)

    def get_config(self):
        return {"seed": self.seed, "input_axes": self.input_axes, "output_axes": self.output_axes}


class GlorotUniform(_Preset):
    """Uniform in [-limit, limit], limit = sqrt(6 / (fan_in + fan_out))."""
    SETTINGS = (1.0, "fan_avg", "uniform")


class GlorotNormal(_Preset):
    """Truncated normal of variance 2 / (fan_in + fan_out)."""
    SETTINGS = (1.0, "fan_avg", "truncated_normal")


class HeUniform(_Preset):
    """Uniform in [-limit, limit], limit = sqrt(6 / fan_in)."""
    SETTINGS = (2.0, "fan_in", "uniform")


class HeNormal(_Preset):
    """Truncated normal of variance 2 / fan_in."""
    SETTINGS = (2.0, "fan_in", "truncated_normal")


class LecunUniform(_Preset):
    """Uniform in [-limit, limit], limit = sqrt(3 / fan_in)."""
    SETTINGS = (1.0, "fan_in", "uniform")


class LecunNormal(_Preset):
    """Truncated normal of variance 1 / fan_in."""
    SETTINGS = (1.0, "fan_in", "truncated_normal")


def compute_fans(shape, input_axes=None, output_axes=None):
    """Keras' (fan_in, fan_out): a kernel (in, out) gives its two axes; a convolution kernel (height, width, in,
    out) gives height * width * in and height * width * out; a vector counts its length as both, a scalar 1.
    ``input_axes`` and ``output_axes`` (both given) name the axes to multiply instead."""
    if input_axes is not None and output_axes is not None:
        return math.prod(shape[a] for a in input_axes), math.prod(shape[a] for a in output_axes)
    if len(shape) < 2:
        return (shape[0], shape[0]) if shape else (1, 1)
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


def _truncated_normal(generator, shape):
    """Standard normal draws, each outside [-2, 2] drawn again until it falls inside."""
    values = generator.standard_normal(shape)
    while (outside := np.abs(values) > 2).any():
        values[outside] = generator.standard_normal(int(outside.sum()))
    return values


def check_number(value, label, argument, at_least=None, above=None, below=None, at_most=None) -> float:
    """``value`` as a float; ValueError naming ``label``'s ``argument`` unless it is a finite real number within
    the bounds given. The layers check their numeric arguments with it too."""
    bounds = [(sign, bound, holds) for sign, bound, holds in (
        (">=", at_least, operator.ge), (">", above, operator.gt), ("<", below, operator.lt), ("<=", at_most, operator.le))
        if bound is not None]
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
            or not all(holds(value, bound) for _, bound, holds in bounds)):
        within = " and ".join(f"{sign} {bound}" for sign, bound, _ in bounds)
        raise ValueError(f"{label}: {argument} must be a finite number{' ' + within if within else ''}, "
                         f"got {value!r}")
    return float(value)


# Keras' snake-case spellings of the classes (keras.initializers.he_normal(seed=1)).
(constant, glorot_normal, glorot_uniform, he_normal, he_uniform, lecun_normal, lecun_uniform, ones, random_normal,
 random_uniform, truncated_normal, variance_scaling, zeros) = (
    Constant, GlorotNormal, GlorotUniform, HeNormal, HeUniform, LecunNormal, LecunUniform, Ones, RandomNormal,
    RandomUniform, TruncatedNormal, VarianceScaling, Zeros)

CLASSES = {cls.__name__: cls for cls in (Zeros, Ones, Constant, RandomNormal, TruncatedNormal, RandomUniform,
                                         VarianceScaling, GlorotUniform, GlorotNormal, HeUniform, HeNormal,
                                         LecunUniform, LecunNormal)}
# One object per name a layer may be given, so that each is saved as the name it was given as.
INITIALIZERS = {name: cls() for name, cls in (
    ("glorot_uniform", GlorotUniform), ("glorot_normal", GlorotNormal), ("he_uniform", HeUniform),
    ("he_normal", HeNormal), ("lecun_uniform", LecunUniform), ("lecun_normal", LecunNormal), ("zeros", Zeros),
    ("ones", Ones), ("constant", Constant), ("random_normal", RandomNormal), ("random_uniform", RandomUniform),
    ("truncated_normal", TruncatedNormal), ("variance_scaling", VarianceScaling), ("uniform", RandomUniform),
    ("normal", RandomNormal), ("zero", Zeros), ("one", Ones))}


def get(identifier):
    """The initializer for a name (snake-case or a class name), an Initializer class (instantiated), a
    ``{"class_name", "config"}`` dict, an initializer, or a function ``f(shape) -> array``."""
    if isinstance(identifier, type) and issubclass(identifier, Initializer):
        return identifier()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str) and identifier in CLASSES:
        return CLASSES[identifier]()
    return lookup(INITIALIZERS, identifier, "initializer")


def deserialize(config: dict) -> Initializer:
    """The initializer of a ``{"class_name", "config"}`` dict (Keras' "module" and "registered_name" ignored)."""
    return from_config(CLASSES, config, "initializer")


def serialize(initializer):
    """The name an initializer was given as, or ``{"class_name", "config"}`` for an object of a known class;
    ValueError for a custom one."""
    for name, named in INITIALIZERS.items():
        if named is initializer:
            return name
    if type(initializer).__name__ in CLASSES and type(initializer) is CLASSES[type(initializer).__name__]:
        return to_config(initializer)
    raise ValueError(f"cannot save the custom initializer {initializer!r}: only the initializers of "
                     f"graphc.keras.initializers ({', '.join(CLASSES)}) can be written to a model file")
