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
        """Checks the input shape and creates each weight of ``weight_shapes`` as attribute ``<name>``, drawn from
        the layer's ``<name>_initializer``."""
        self.input_shape = tuple(input_shape)
        self.output_shape = self.compute_output_shape(self.input_shape)
        for name, shape in self.weight_shapes(self.input_shape).items():
            setattr(self, name, self.add_weight(name, getattr(self, f"{name}_initializer")(shape)))
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


# ---- images: (batch, height, width, channels), as Keras' default data_format="channels_last" -------------
def _positive_pair(value, argument, label):
    """Keras' int-or-pair arguments (kernel_size, strides, pool_size, dilation_rate) as a pair of positive ints."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else value
    if (not isinstance(pair, (tuple, list)) or len(pair) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in pair)):
        raise ValueError(f"{label}: {argument} must be a positive integer or a pair of them, got {value!r}")
    return tuple(int(v) for v in pair)


def _padding(padding, label):
    name = padding.lower() if isinstance(padding, str) else padding
    if name not in ("valid", "same"):
        raise ValueError(f"{label}: padding must be 'valid' or 'same', got {padding!r}")
    return name


def _channels_last(data_format, label):
    if data_format not in (None, "channels_last"):
        raise ValueError(f"{label}: graphc's layers take channels-last images (batch, height, width, channels), "
                         f"got data_format={data_format!r}; transpose channels-first data with "
                         f"x.transpose(0, 2, 3, 1)")


def _image_shape(layer, input_shape):
    """(height, width, channels) of ``layer``'s input; ValueError unless it is a batch of images."""
    if len(input_shape) != 4:
        hint = (f": add a channels axis, e.g. input_shape={(*input_shape[1:], 1)} and "
                f"x.reshape((-1, {', '.join(map(str, (*input_shape[1:], 1)))}))" if len(input_shape) == 3 else "")
        raise ValueError(f"{type(layer).__name__} layer {layer.name} needs images of shape (batch, height, width, "
                         f"channels), got inputs of shape {input_shape}{hint}")
    return input_shape[1:]


def _window_output(layer, input_shape, window, strides, padding, dilation=(1, 1), what="window"):
    """(height, width) of the output of ``layer``'s sliding ``window`` over its input images, as TF's rule:
    "valid" keeps the window positions that fit, "same" pads to ceil(size / stride); ValueError if none fits."""
    height, width, _ = _image_shape(layer, input_shape)
    spans = [(taps - 1) * spacing + 1 for taps, spacing in zip(window, dilation)]
    sizes = [-(-size // stride) if padding == "same" else (size - span) // stride + 1
             for size, span, stride in zip((height, width), spans, strides)]
    if min(sizes) < 1:
        dilated = f" (spanning {spans[0]}x{spans[1]} with dilation {dilation})" if dilation != (1, 1) else ""
        channels_first = (" (they look channels-first: graphc's layers take (batch, height, width, channels))"
                          if height <= 4 < width == input_shape[3] else "")
        raise ValueError(f"{type(layer).__name__} layer {layer.name}: its {window[0]}x{window[1]} {what}{dilated} is "
                         f"larger than the {height}x{width} images of its inputs of shape {input_shape}"
                         f"{channels_first}; use padding='same' or a smaller {what}")
    return tuple(sizes)


class Conv2D(Layer):
    """``activation(conv2d(x, kernel) + bias)`` over images (batch, height, width, channels), as
    ``keras.layers.Conv2D``: a kernel (height, width, in channels, filters), "valid" or "same" padding.

    Written as the convolution, then the bias add, then the activation: the pattern the optimizer fuses into
    the convolution's GEMM epilogue, as Dense's matmul, bias and activation.
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 activation=None, use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 input_shape=None, name=None):
        if not isinstance(filters, (int, np.integer)) or filters < 1:
            raise ValueError(f"Conv2D: filters must be a positive integer, got {filters!r}")
        _channels_last(data_format, "Conv2D")
        super().__init__(name, input_shape)
        self.filters = int(filters)
        self.kernel_size = _positive_pair(kernel_size, "kernel_size", "Conv2D")
        self.strides = _positive_pair(strides, "strides", "Conv2D")
        self.padding = _padding(padding, "Conv2D")
        self.dilation_rate = _positive_pair(dilation_rate, "dilation_rate", "Conv2D")
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = lookup(INITIALIZERS, kernel_initializer, "initializer")
        self.bias_initializer = lookup(INITIALIZERS, bias_initializer, "initializer")

    def weight_shapes(self, input_shape):
        return {"kernel": (*self.kernel_size, input_shape[-1], self.filters),
                **({"bias": (self.filters,)} if self.use_bias else {})}

    def call(self, x):
        y = gc.conv2d(x, self.kernel, strides=self.strides, padding=self.padding, dilation=self.dilation_rate)
        if self.use_bias:
            y = y + self.bias
        return self.activation(y)

    def compute_output_shape(self, input_shape):
        height, width = _window_output(self, input_shape, self.kernel_size, self.strides, self.padding,
                                       self.dilation_rate, "kernel")
        return (input_shape[0], height, width, self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": self.padding, "dilation_rate": list(self.dilation_rate),
                "activation": activations.serialize(self.activation), "use_bias": self.use_bias,
                "kernel_initializer": name_of(INITIALIZERS, self.kernel_initializer, "initializer"),
                "bias_initializer": name_of(INITIALIZERS, self.bias_initializer, "initializer")}


class _Pooling2D(Layer):
    """A ``pool_size`` window moved by ``strides`` (default: the pool size) over each channel of images
    (batch, height, width, channels); subclasses say what it computes in ``call``."""

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, name=None, input_shape=None):
        label = type(self).__name__
        _channels_last(data_format, label)
        super().__init__(name, input_shape)
        self.pool_size = _positive_pair(pool_size, "pool_size", label)
        self.strides = self.pool_size if strides is None else _positive_pair(strides, "strides", label)
        self.padding = _padding(padding, label)

    def compute_output_shape(self, input_shape):
        height, width = _window_output(self, input_shape, self.pool_size, self.strides, self.padding, what="pool")
        return (input_shape[0], height, width, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding}


class MaxPooling2D(_Pooling2D):
    """The largest value of each window, as ``keras.layers.MaxPooling2D``."""

    def call(self, x):
        return gc.max_pool2d(x, self.pool_size, strides=self.strides, padding=self.padding)


class AveragePooling2D(_Pooling2D):
    """The mean of each window (with "same" padding, of its values inside the image), as
    ``keras.layers.AveragePooling2D``."""

    def call(self, x):
        return gc.avg_pool2d(x, self.pool_size, strides=self.strides, padding=self.padding)


class GlobalAveragePooling2D(Layer):
    """(batch, height, width, channels) -> (batch, channels), the mean of each channel; with ``keepdims``
    (batch, 1, 1, channels)."""

    def __init__(self, data_format=None, keepdims=False, name=None, input_shape=None):
        _channels_last(data_format, "GlobalAveragePooling2D")
        super().__init__(name, input_shape)
        self.keepdims = bool(keepdims)

    def call(self, x):
        y = gc.global_avg_pool2d(x)
        return gc.reshape(y, (x.shape[0], *self.output_shape[1:])) if self.keepdims else y

    def compute_output_shape(self, input_shape):
        channels = _image_shape(self, input_shape)[2]
        return (input_shape[0], 1, 1, channels) if self.keepdims else (input_shape[0], channels)

    def get_config(self):
        return {**super().get_config(), "keepdims": self.keepdims}


class Reshape(Layer):
    """(batch, ...) -> (batch, *target_shape), row-major order kept; one entry of ``target_shape`` may be -1."""

    def __init__(self, target_shape, name=None, input_shape=None):
        if (not isinstance(target_shape, (tuple, list)) or list(target_shape).count(-1) > 1
                or not all(isinstance(d, (int, np.integer)) and (d > 0 or d == -1) for d in target_shape)):
            raise ValueError(f"Reshape: target_shape must be a tuple of positive integers (one may be -1), without "
                             f"the batch axis, got {target_shape!r}")
        super().__init__(name, input_shape)
        self.target_shape = tuple(int(d) for d in target_shape)

    def call(self, x):
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


LAYERS = {cls.__name__: cls for cls in (Dense, Activation, Flatten, Conv2D, MaxPooling2D, AveragePooling2D,
                                          GlobalAveragePooling2D, Reshape, InputLayer)}


def serialize(layer: Layer) -> dict:
    if type(layer).__name__ not in LAYERS:
        raise ValueError(f"cannot save the custom layer {layer.name} ({type(layer).__name__}); "
                         f"known layers: {', '.join(LAYERS)}")
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def deserialize(config: dict) -> Layer:
    if config.get("class_name") not in LAYERS:
        raise ValueError(f"unknown layer class {config.get('class_name')!r}; known: {', '.join(LAYERS)}")
    return LAYERS[config["class_name"]].from_config(config["config"])
