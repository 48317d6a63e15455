"""Image layers, (batch, height, width, channels) as Keras' default data_format="channels_last": Conv2D and
the poolings."""
import numpy as np

import graphc as gc

from .. import activations
from .base import Layer
from .core import WeightOptions, check_int, option


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


class Conv2D(WeightOptions, Layer):
    """``activation(conv2d(x, kernel) + bias)`` over images (batch, height, width, channels), as
    ``keras.layers.Conv2D``: a kernel (height, width, in channels, filters), "valid" or "same" padding.

    Written as the convolution, then the bias add, then the activation: the pattern the optimizer fuses into
    the convolution's GEMM epilogue, as Dense's matmul, bias and activation.
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1,
                 activation=None, use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, **kwargs):
        self.filters = check_int(filters, "Conv2D", "filters", positive=True)
        _channels_last(data_format, "Conv2D")
        self.kernel_size = _positive_pair(kernel_size, "kernel_size", "Conv2D")
        self.strides = _positive_pair(strides, "strides", "Conv2D")
        self.padding = _padding(padding, "Conv2D")
        self.dilation_rate = _positive_pair(dilation_rate, "dilation_rate", "Conv2D")
        self.activation = option(activations.get, activation, "Conv2D", "activation")
        self.use_bias = bool(use_bias)
        self.set_weight_options("Conv2D", kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
                                kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer)
        super().__init__(**kwargs)

    def weight_shapes(self, input_shape):
        return {"kernel": (*self.kernel_size, input_shape[-1], self.filters),
                **({"bias": (self.filters,)} if self.use_bias else {})}

    def call(self, x, training=False):
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
                **self.weight_options_config()}


class _Pooling2D(Layer):
    """A ``pool_size`` window moved by ``strides`` (default: the pool size) over each channel of images
    (batch, height, width, channels); subclasses say what it computes in ``call``."""

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        label = type(self).__name__
        _channels_last(data_format, label)
        self.pool_size = _positive_pair(pool_size, "pool_size", label)
        self.strides = self.pool_size if strides is None else _positive_pair(strides, "strides", label)
        self.padding = _padding(padding, label)
        super().__init__(**kwargs)

    def compute_output_shape(self, input_shape):
        height, width = _window_output(self, input_shape, self.pool_size, self.strides, self.padding, what="pool")
        return (input_shape[0], height, width, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding}


class MaxPooling2D(_Pooling2D):
    """The largest value of each window, as ``keras.layers.MaxPooling2D``."""

    def call(self, x, training=False):
        return gc.max_pool2d(x, self.pool_size, strides=self.strides, padding=self.padding)


class AveragePooling2D(_Pooling2D):
    """The mean of each window (with "same" padding, of its values inside the image), as
    ``keras.layers.AveragePooling2D``."""

    def call(self, x, training=False):
        return gc.avg_pool2d(x, self.pool_size, strides=self.strides, padding=self.padding)


class GlobalAveragePooling2D(Layer):
    """(batch, height, width, channels) -> (batch, channels), the mean of each channel; with ``keepdims``
    (batch, 1, 1, channels)."""

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        _channels_last(data_format, "GlobalAveragePooling2D")
        self.keepdims = bool(keepdims)
        super().__init__(**kwargs)

    def call(self, x, training=False):
        y = gc.global_avg_pool2d(x)
        return gc.reshape(y, (x.shape[0], *self.output_shape[1:])) if self.keepdims else y

    def compute_output_shape(self, input_shape):
        channels = _image_shape(self, input_shape)[2]
        return (input_shape[0], 1, 1, channels) if self.keepdims else (input_shape[0], channels)

    def get_config(self):
        return {**super().get_config(), "keepdims": self.keepdims}


