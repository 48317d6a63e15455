"""The core layers: Dense, Activation, Flatten, Reshape, Embedding, Rescaling."""
import math
import numbers

import numpy as np

import graphc as gc

from .. import activations, initializers, regularizers
from .base import Layer


def option(get, value, label, argument):
    """``get(value)`` (activations.get, initializers.get, regularizers.get) for ``label``'s ``argument``; its
    ValueError (an unknown name, listing the known ones) names the layer and the argument."""
    try:
        return get(value)
    except ValueError as error:
        raise ValueError(f"{label}: {argument}: {error}") from None


def check_int(value, label, argument, positive=False) -> int:
    """``value`` as an int; ValueError naming ``label``'s ``argument`` unless it is an integer (> 0 if ``positive``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or (positive and value < 1):
        raise ValueError(f"{label}: {argument} must be {'a positive integer' if positive else 'an integer'}, "
                         f"got {value!r}")
    return int(value)


def feature_axis(layer, axis, input_shape, shapes=None) -> int:
    """``axis`` of inputs of ``input_shape`` counted from 0; ValueError naming ``layer`` and the inputs' shapes
    (``shapes``, for a layer of several inputs) when it is out of range or the batch axis."""
    rank, shapes = len(input_shape), shapes or input_shape
    if not -rank <= axis < rank:
        raise ValueError(f"{type(layer).__name__} layer {layer.name}: axis {axis} is out of range for inputs of "
                         f"shape {shapes}")
    if axis % rank == 0:
        raise ValueError(f"{type(layer).__name__} layer {layer.name}: axis {axis} is the batch axis (inputs of "
                         f"shape {shapes})")
    return axis % rank


class WeightOptions:
    """The ``<weight>_initializer`` and ``<weight>_regularizer`` options of a layer (the base class's ``build`` reads
    them), checked when the layer is made and written back by ``get_config``."""

    def set_weight_options(self, label, **options):
        for argument, value in options.items():
            setattr(self, argument, option(_option_module(argument).get, value, label, argument))
        self._weight_options = tuple(options)

    def weight_options_config(self) -> dict:
        return {argument: _option_module(argument).serialize(getattr(self, argument))
                for argument in self._weight_options}


def _option_module(argument):
    return initializers if argument.endswith("_initializer") else regularizers


class Dense(WeightOptions, Layer):
    """``activation(x @ kernel + bias)`` over the last axis of ``x``."""

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, **kwargs):
        self.units = check_int(units, "Dense", "units", positive=True)
        self.activation = option(activations.get, activation, "Dense", "activation")
        self.use_bias = bool(use_bias)
        self.set_weight_options("Dense", kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
                                kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer)
        super().__init__(**kwargs)

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
                **self.weight_options_config()}


class Activation(Layer):
    """Applies an activation function."""

    def __init__(self, activation, **kwargs):
        self.activation = option(activations.get, activation, "Activation", "activation")
        super().__init__(**kwargs)

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

    def __init__(self, target_shape, **kwargs):
        if (not isinstance(target_shape, (tuple, list)) or list(target_shape).count(-1) > 1
                or not all(isinstance(d, (int, np.integer)) and (d > 0 or d == -1) for d in target_shape)):
            raise ValueError(f"Reshape: target_shape must be a tuple of positive integers (one may be -1), without "
                             f"the batch axis, got {target_shape!r}")
        self.target_shape = tuple(int(d) for d in target_shape)
        super().__init__(**kwargs)

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


class Embedding(WeightOptions, Layer):
    """Row ``i`` of ``embeddings`` (input_dim, output_dim) for each index ``i`` of the integer inputs, as
    ``keras.layers.Embedding``: ``gc.take(embeddings, x)``, whose gradient adds the incoming rows into the rows
    used (a scatter-add). Float inputs are cast to int32 (truncated), as Keras does; an index outside
    [-input_dim, input_dim) is an IndexError when the function runs."""

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform", embeddings_regularizer=None,
                 mask_zero=False, **kwargs):
        self.input_dim = check_int(input_dim, "Embedding", "input_dim", positive=True)
        self.output_dim = check_int(output_dim, "Embedding", "output_dim", positive=True)
        self.set_weight_options("Embedding", embeddings_initializer=embeddings_initializer,
                                embeddings_regularizer=embeddings_regularizer)
        if mask_zero:
            raise ValueError("Embedding: mask_zero=True is not supported (graphc.keras has no masking)")
        super().__init__(**kwargs)

    def weight_shapes(self, input_shape):
        return {"embeddings": (self.input_dim, self.output_dim)}

    def call(self, x, training=False):
        return gc.take(self.embeddings, x if x.dtype in ("int32", "int64") else gc.cast(x, "int32"), axis=0)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.output_dim)

    def compute_output_dtype(self, input_dtypes):
        return "float32"  # integer indices in, rows of the float32 table out

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim, "output_dim": self.output_dim,
                **self.weight_options_config(), "mask_zero": False}


class Rescaling(Layer):
    """``x * scale + offset`` in float32 (integer inputs, such as pixel values, are cast first), as
    ``keras.layers.Rescaling``: ``Rescaling(1 / 255)`` maps [0, 255] to [0, 1]."""

    def __init__(self, scale, offset=0.0, **kwargs):
        self.scale = initializers.check_number(scale, "Rescaling", "scale")
        self.offset = initializers.check_number(offset, "Rescaling", "offset")
        super().__init__(**kwargs)

    def call(self, x, training=False):
        return (x if x.dtype == "float32" else gc.cast(x, "float32")) * self.scale + self.offset

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}
