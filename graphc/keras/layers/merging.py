"""Layers of several inputs, called on a list of tensors: Concatenate and Add, as Keras' merging layers."""
import functools
import graphc as gc

from .base import Layer
from .core import check_int, feature_axis


class _Merge(Layer):
    """A layer called on a list of tensors (batch, ...) of the same rank; subclasses check how their shapes
    meet in ``merged_shape`` and combine the tensors in ``call``."""

    def compute_output_shape(self, input_shape):
        label = f"{type(self).__name__} layer {self.name}"
        if not isinstance(input_shape, list):
            raise ValueError(f"{label} must be called on a list of tensors, got one of shape {input_shape}")
        if len({len(shape) for shape in input_shape}) != 1:
            raise ValueError(f"{label} needs inputs of the same rank, got shapes {input_shape}")
        return self.merged_shape(input_shape, label)


class Concatenate(_Merge):
    """The inputs joined along ``axis`` (not the batch axis); their other axes must match."""

    def __init__(self, axis=-1, **kwargs):
        self.axis = check_int(axis, "Concatenate", "axis")
        super().__init__(**kwargs)

    def merged_shape(self, shapes, label):
        axis = feature_axis(self, self.axis, shapes[0], shapes)
        others = {shape[:axis] + shape[axis + 1:] for shape in shapes}
        if len(others) != 1:
            raise ValueError(f"{label}: inputs must match on every axis but the concatenation axis {self.axis}, "
                             f"got shapes {shapes}")
        return (*shapes[0][:axis], sum(shape[axis] for shape in shapes), *shapes[0][axis + 1:])

    def call(self, inputs, training=False):
        return gc.concatenate(list(inputs), axis=self.axis % inputs[0].ndim)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class Add(_Merge):
    """The sum of the inputs; an axis of length 1 broadcasts against the others' (as numpy, at equal ranks)."""

    def merged_shape(self, shapes, label):
        merged = []
        for dims in zip(*shapes):
            sizes = {d for d in dims if d != 1}
            if len(sizes) > 1:
                raise ValueError(f"{label}: inputs of shapes {shapes} do not broadcast against each other")
            merged.append(sizes.pop() if sizes else 1)
        return tuple(merged)

    def call(self, inputs, training=False):
        return functools.reduce(gc.add, inputs)
