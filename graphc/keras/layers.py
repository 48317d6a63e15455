"""Layers: each turns a graph tensor into a graph tensor, creating its weights (``gc.variable``'s) when it
first sees its input's shape.

Shapes here are Keras shapes: tuples whose first entry, the batch, is None.
"""
import math

import numpy as np

import graphc as gc

from . import _state, activations
from ._registry import lookup, name_of


def glorot_uniform(shape):
    """Uniform in [-limit, limit] with limit = sqrt(6 / (fan_in + fan_out)), from graphc.keras's generator.

    For a kernel (fan_in, fan_out); a vector counts its length as both fans, as in Keras.
    """
    limit = math.sqrt(6 / (shape[0] + shape[-1]))
    return _state.generator().uniform(-limit, limit, size=shape).astype(np.float32)


def zeros(shape):
    return np.zeros(shape, dtype=np.float32)


def ones(shape):
    return np.ones(shape, dtype=np.float32)


INITIALIZERS = {f.__name__: f for f in (glorot_uniform, zeros, ones)}


class Layer:
    """Base class. ``build(input_shape)`` creates the weights; ``call(x)`` builds the layer's graph."""

    def __init__(self, name=None, input_shape=None):
        self.name = name or _state.unique_name(type(self).__name__)
        self.input_shape = None if input_shape is None else (None, *input_shape)
        self.output_shape = None
        self.weights = []
        self.built = False

    def __call__(self, x):
        """The layer applied to graph tensor ``x`` (of shape (batch, ...)), building it on first use."""
        shape = (None, *x.shape[1:])
        if not self.built:
            self.build(shape)
        elif shape != self.input_shape:
            raise ValueError(f"layer {self.name} was built for inputs of shape {self.input_shape}, "
                             f"got {shape}")
        return self.call(x)

    def build(self, input_shape):
        self.input_shape = tuple(input_shape)
        self.output_shape = self.compute_output_shape(self.input_shape)
        self.built = True

    def call(self, x):
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        return input_shape

    def weight_shapes(self, input_shape) -> dict:
        """Name -> shape of each weight ``build(input_shape)`` creates, without creating any: what a loader checks
        a file's arrays against before it lets a crafted config allocate."""
        return {}

    def count_params(self) -> int:
        return sum(math.prod(w.shape) for w in self.weights)

    def add_weight(self, name, value):
        variable = gc.variable(value, name=f"{self.name}/{name}")
        self.weights.append(variable)
        return variable

    def get_config(self) -> dict:
        config = {"name": self.name}
        if self.input_shape is not None:
            config["input_shape"] = list(self.input_shape[1:])
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


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
        self.kernel_initializer = lookup(INITIALIZERS, kernel_initializer, "initializer")
        self.bias_initializer = lookup(INITIALIZERS, bias_initializer, "initializer")

    def weight_shapes(self, input_shape):
        return {"kernel": (input_shape[-1], self.units), **({"bias": (self.units,)} if self.use_bias else {})}

    def build(self, input_shape):
        super().build(input_shape)
        shapes = self.weight_shapes(input_shape)
        self.kernel = self.add_weight("kernel", self.kernel_initializer(shapes["kernel"]))
        if self.use_bias:
            self.bias = self.add_weight("bias", self.bias_initializer(shapes["bias"]))

    def call(self, x):
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
                "kernel_initializer": name_of(INITIALIZERS, self.kernel_initializer, "initializer"),
                "bias_initializer": name_of(INITIALIZERS, self.bias_initializer, "initializer")}


class Activation(Layer):
    """Applies an activation function."""

    def __init__(self, activation, name=None, input_shape=None):
        super().__init__(name, input_shape)
        self.activation = activations.get(activation)

    def call(self, x):
        return self.activation(x)

    def get_config(self):
        return {**super().get_config(), "activation": activations.serialize(self.activation)}


class Flatten(Layer):
    """(batch, d1, d2, ...) -> (batch, d1 * d2 * ...)."""

    def call(self, x):
        return gc.reshape(x, (x.shape[0], math.prod(x.shape[1:])))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], math.prod(input_shape[1:]))


class InputLayer(Layer):
    """Declares the shape of a model's inputs (without the batch axis); passes tensors through."""

    def __init__(self, shape, name=None):
        shape = tuple(shape)
        if not all(isinstance(d, (int, np.integer)) and d > 0 for d in shape):
            raise ValueError(f"Input: shape must be a tuple of positive integers (without the batch axis), "
                             f"got {shape!r}")
        super().__init__(name, input_shape=shape)

    def call(self, x):
        return x

    def get_config(self):
        return {"name": self.name, "shape": list(self.input_shape[1:])}


def Input(shape, name=None):
    """The input of a Sequential model, as in ``Sequential([Input((784,)), Dense(10)])``."""
    return InputLayer(shape, name=name)


LAYERS = {cls.__name__: cls for cls in (Dense, Activation, Flatten, InputLayer)}


def serialize(layer: Layer) -> dict:
    if type(layer).__name__ not in LAYERS:
        raise ValueError(f"cannot save the custom layer {layer.name} ({type(layer).__name__}); "
                         f"known layers: {', '.join(LAYERS)}")
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def deserialize(config: dict) -> Layer:
    if config.get("class_name") not in LAYERS:
        raise ValueError(f"unknown layer class {config.get('class_name')!r}; known: {', '.join(LAYERS)}")
    return LAYERS[config["class_name"]].from_config(config["config"])
