"""The core layers: Dense, Activation, Flatten, Reshape."""
import math

import numpy as np

import graphc as gc

from .. import activations, initializers
from .base import Layer


class Dense(Layer):
    """``activation(x @ kernel + bias)`` over the last axis of ``x``."""

    def __init__(self, units, activation=None, use_bias=True, input_shape=None,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", name=None):
        if not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"Dense: units must be a positive integer, got {units!r}")
        super().__init__(name, input_shape)
        self.units = int(units)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)

    def weight_shapes(self, input_shape):
        return {"kernel": (input_shape[-1], self.units), **({"bias": (self.units,)} if self.use_bias else {})}

    def call(self, x, training=False):
        y = gc.matmul(x, self.kernel)
        if self.use_bias:
            y = y + self.bias
        return self.activation(y)

    def compute_output_shape(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(f"Dense layer {self.name} needs inputs with at least one feature axis, "
                             f"got shape {input_shape}")
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "activation": activations.serialize(self.activation), "use_bias": self.use_bias,
                "kernel_initializer": initializers.serialize(self.kernel_initializer),
                "bias_initializer": initializers.serialize(self.bias_initializer)}


class Activation(Layer):
    """Applies an activation function."""

    def __init__(self, activation, name=None, input_shape=None):
        super().__init__(name, input_shape)
        self.activation = activations.get(activation)

    def call(self, x, training=False):
        return self.activation(x)

    def get_config(self):
        return {**super().get_config(), "activation": activations.serialize(self.activation)}


class Flatten(Layer):
    """(batch, d1, d2, ...) -> (batch, d1 * d2 * ...)."""

    def call(self, x, training=False):
        return gc.reshape(x, (x.shape[0], math.prod(x.shape[1:])))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], math.prod(input_shape[1:]))


class Reshape(Layer):
    """(batch, ...) -> (batch, *target_shape), row-major order kept; one entry of ``target_shape`` may be -1."""

    def __init__(self, target_shape, name=None, input_shape=None):
        if (not isinstance(target_shape, (tuple, list)) or list(target_shape).count(-1) > 1
                or not all(isinstance(d, (int, np.integer)) and (d > 0 or d == -1) for d in target_shape)):
            raise ValueError(f"Reshape: target_shape must be a tuple of positive integers (one may be -1), without "
                             f"the batch axis, got {target_shape!r}")
        super().__init__(name, input_shape)
        self.target_shape = tuple(int(d) for d in target_shape)

    def call(self, x, training=False):
        return gc.reshape(x, (x.shape[0], *self.output_shape[1:]))

    def compute_output_shape(self, input_shape):
        size = math.prod(input_shape[1:])
        known = math.prod(d for d in self.target_shape if d != -1)
        shape = tuple(size // known if d == -1 else d for d in self.target_shape)
        if math.prod(shape) != size:
            raise ValueError(f"Reshape layer {self.name} cannot reshape inputs of shape {input_shape} ({size:,} values "
                             f"a sample) to {(None, *self.target_shape)}")
        return (input_shape[0], *shape)

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}


