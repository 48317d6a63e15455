"""Weight initializers, by name as Keras spells them: each maps a shape to a float32 array drawn from
graphc.keras's generator (``utils.set_random_seed`` makes them reproducible)."""
import math

import numpy as np

from . import _state
from ._registry import lookup, name_of


def glorot_uniform(shape):
    """Uniform in [-limit, limit] with limit = sqrt(6 / (fan_in + fan_out)), from graphc.keras's generator.

    The fans are Keras': a kernel (fan_in, fan_out) gives its two axes; a convolution kernel (height, width,
    in, out) gives height * width * in and height * width * out; a vector counts its length as both.
    """
    receptive_field = math.prod(shape[:-2])
    fan_in, fan_out = (shape[0], shape[0]) if len(shape) == 1 else (shape[-2] * receptive_field,
                                                                     shape[-1] * receptive_field)
    limit = math.sqrt(6 / (fan_in + fan_out))
    return _state.generator().uniform(-limit, limit, size=shape).astype(np.float32)


def zeros(shape):
    return np.zeros(shape, dtype=np.float32)


def ones(shape):
    return np.ones(shape, dtype=np.float32)


INITIALIZERS = {f.__name__: f for f in (glorot_uniform, zeros, ones)}




def get(identifier):
    """The initializer for a name or a callable ``initializer(shape) -> array``."""
    return lookup(INITIALIZERS, identifier, "initializer")


def serialize(initializer) -> str:
    return name_of(INITIALIZERS, initializer, "initializer")
