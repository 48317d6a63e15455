"""Layers: each turns graph tensors into graph tensors, creating its weights (``gc.variable``'s) when it first
sees its input's shape; called on ``Input`` tensors it records the call for the functional API.

One module per family, as Keras: ``base`` (Layer, Input), ``core`` (with Embedding and Rescaling),
``convolutional``, ``merging``, ``normalization``, ``regularization``.
"""
from .base import Input, InputLayer, KerasTensor, Layer
from .convolutional import AveragePooling2D, Conv2D, GlobalAveragePooling2D, MaxPooling2D
from .core import Activation, Dense, Embedding, Flatten, Rescaling, Reshape
from .merging import Add, Concatenate
from .normalization import BatchNormalization
from .regularization import Dropout
from .._registry import from_config, to_config

LAYERS = {cls.__name__: cls for cls in (Dense, Activation, Flatten, Conv2D, MaxPooling2D, AveragePooling2D,
                                          GlobalAveragePooling2D, Reshape, InputLayer, Dropout, BatchNormalization,
                                          Embedding, Concatenate, Add, Rescaling)}

__all__ = ["Input", "KerasTensor", "Layer", "serialize", "deserialize", *LAYERS]


def serialize(layer: Layer) -> dict:
    if type(layer).__name__ not in LAYERS:
        raise ValueError(f"cannot save the custom layer {layer.name} ({type(layer).__name__}); "
                         f"known layers: {', '.join(LAYERS)}")
    return to_config(layer)


def deserialize(config: dict) -> Layer:
    return from_config(LAYERS, config, "layer")
