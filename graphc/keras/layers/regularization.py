"""Dropout, as ``keras.layers.Dropout``: inverted dropout in training mode, the identity in inference mode."""
import numbers

import graphc as gc

from .. import _state, initializers
from .base import Layer


class Dropout(Layer):
    """In training mode each element is zeroed with probability ``rate`` and the others are multiplied by
    1 / (1 - rate), rounded to the input's dtype (Keras divides: at most 1 ulp apart); ``gc.dropout``,
    counter-based: every step draws a fresh mask, reproducible from the seed. In inference mode the inputs pass
    unchanged.

    ``seed`` None draws the layer's seed from graphc.keras's generator when the layer is made, so
    ``utils.set_random_seed`` makes a model's masks reproducible. ``noise_shape`` (batch, ...) with None for
    the input's own dims and 1 for the axes that share one draw (``(None, 1, 1, channels)`` drops whole
    channels of images)."""

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
                                 or not 0 <= seed < 2**64):
            raise ValueError(f"Dropout: seed must be an integer in [0, 2**64) or None, got {seed!r}")
        if noise_shape is not None and (not isinstance(noise_shape, (tuple, list)) or not all(
                d is None or (isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0)
                for d in noise_shape)):
            raise ValueError(f"Dropout: noise_shape must be a tuple of positive integers or None, got {noise_shape!r}")
        self.rate = initializers.check_number(rate, "Dropout", "rate", at_least=0, below=1)
        self.seed = seed
        self.noise_shape = None if noise_shape is None else tuple(noise_shape)
        self._seed = int(_state.generator().integers(2**31)) if seed is None else int(seed)
        super().__init__(**kwargs)

    def compute_output_shape(self, input_shape):
        if self.noise_shape is not None and (len(self.noise_shape) != len(input_shape) or any(
                d not in (None, 1, size) for d, size in zip(self.noise_shape, input_shape))):
            raise ValueError(f"Dropout layer {self.name}: noise_shape {self.noise_shape} does not broadcast onto "
                             f"its inputs of shape {input_shape} (each entry None, 1 or the input's size)")
        return input_shape

    def call(self, x, training=False):
        if not training or self.rate == 0:
            return x
        if self.noise_shape is None:
            return gc.dropout(x, self.rate, seed=self._seed)
        shape = tuple(size if d is None else d for d, size in zip(self.noise_shape, x.shape))
        return x * gc.dropout(gc.broadcast_to(gc.constant(1.0, dtype=x.dtype), shape), self.rate, seed=self._seed)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed,
                "noise_shape": None if self.noise_shape is None else list(self.noise_shape)}
