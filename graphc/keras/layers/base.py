"""What every layer shares: building weights from the input shape, being called on graph tensors (building
graph nodes) or on ``KerasTensor``'s (recording the call, for the functional API), training mode, updates
of non-trainable state, regularization terms and ``get_weights``/``set_weights``.

Shapes here are Keras shapes: tuples whose first entry, the batch, is None. A layer of several inputs
(``Concatenate``, ``Add``) takes a list of tensors and sees a list of shapes.
"""
import math

import numpy as np

import graphc as gc

from .. import _state


class KerasTensor:
    """A symbolic tensor of the functional API: its Keras shape and dtype, and the layer call that made it
    (an ``InputLayer`` with no inputs for a model input). ``Model(inputs, outputs)`` replays these calls on graph
    tensors."""

    def __init__(self, shape, dtype="float32", layer=None, inputs=(), name=None):
        self.shape = tuple(shape)
        self.dtype = dtype
        self.layer = layer
        self.inputs = inputs  # a KerasTensor, or a list of them: what ``layer`` was called on
        self.name = name or (layer.name if layer is not None else None)

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"


def as_list(value) -> list:
    """A KerasTensor's ``inputs`` (or any value) as a list."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


def call_keys(tensors) -> dict:
    """id -> [layer name, call number] of each of ``tensors``, numbering the calls of every layer in order: how
    saved models and summaries name the tensors of a functional model."""
    counts, keys = {}, {}
    for t in tensors:
        number = counts.get(t.layer.name, 0)
        keys[id(t)] = [t.layer.name, number]
        counts[t.layer.name] = number + 1
    return keys


class Layer:
    """Base class. ``build(input_shape)`` creates the weights; ``call(inputs, training)`` builds the layer's
    graph on graph tensors, in training mode (dropout on, batch statistics) or inference mode."""

    def __init__(self, name=None, input_shape=None, trainable=True):
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise ValueError(f"{type(self).__name__}: name must be a non-empty string without '/', got {name!r}")
        self.name = name or _state.unique_name(type(self).__name__)
        self.input_shape = None if input_shape is None else (None, *input_shape)
        self.output_shape = None
        self.weights = []
        self.trainable = bool(trainable)
        self.built = False
        self._non_trainable = set()  # ids of weights training does not differentiate
        self._regularizers = []  # (weight, regularizer) pairs
        self._updates = []  # (variable, new value) pairs the last training-mode calls asked for

    def __call__(self, inputs, training=None):
        """The layer applied to ``inputs`` -- a graph tensor (batch, ...), a KerasTensor, or a list of either for
        a layer of several inputs -- building it on first use. On KerasTensors the call is recorded and a
        KerasTensor returned; on graph tensors the layer's graph is built (``training`` False unless given)."""
        many = isinstance(inputs, (list, tuple))
        tensors = list(inputs) if many else [inputs]
        symbolic = [isinstance(t, KerasTensor) for t in tensors]
        if any(symbolic) and not all(symbolic):
            raise TypeError(f"layer {self.name}: cannot mix Keras tensors (from keras.Input) and graph tensors "
                            f"in one call")
        if not tensors:
            raise ValueError(f"layer {self.name} was called on an empty list")
        shapes = [(None, *t.shape[1:]) for t in tensors]
        shape = shapes if many else shapes[0]
        if not self.built:
            self.build(shape)
        elif shape != self.input_shape:
            raise ValueError(f"layer {self.name} was built for inputs of shape {self.input_shape}, got {shape}")
        if all(symbolic):
            return KerasTensor(self.output_shape, self.compute_output_dtype([t.dtype for t in tensors]),
                               layer=self, inputs=tensors if many else tensors[0])
        return self.call(inputs, training=bool(training))

    def build(self, input_shape):
        """Checks the input shape and creates each weight of ``weight_shapes`` as attribute ``<name>``, drawn from
        the layer's ``<name>_initializer`` (with its ``<name>_regularizer``, if the layer has one)."""
        self.input_shape = [tuple(s) for s in input_shape] if isinstance(input_shape, list) else tuple(input_shape)
        self.output_shape = self.compute_output_shape(self.input_shape)
        for name, shape in self.weight_shapes(self.input_shape).items():
            value = getattr(self, f"{name}_initializer")(shape)
            setattr(self, name, self.add_weight(name, value, regularizer=getattr(self, f"{name}_regularizer", None),
                                                trainable=name not in self.non_trainable_names()))
        self.built = True

    def call(self, inputs, training=False):
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_output_dtype(self, input_dtypes):
        """The dtype of the output for inputs of ``input_dtypes`` (a list): float32 unless a layer says otherwise."""
        return "float32"

    def weight_shapes(self, input_shape) -> dict:
        """Name -> shape of each weight ``build(input_shape)`` creates, without creating any: what a loader checks
        a file's arrays against before it lets a crafted config allocate."""
        return {}

    def non_trainable_names(self) -> tuple:
        """Names (in ``weight_shapes``) of the weights that training updates without gradients (moving statistics)."""
        return ()

    # ---- weights ------------------------------------------------------------------------------
    def add_weight(self, name, value, regularizer=None, trainable=True):
        variable = gc.variable(value, name=f"{self.name}/{name}", trainable=trainable)
        self.weights.append(variable)
        if not trainable:
            self._non_trainable.add(variable.id)
        if regularizer is not None:
            self._regularizers.append((variable, regularizer))
        return variable

    @property
    def trainable_weights(self) -> list:
        return [w for w in self.weights if self.trainable and w.id not in self._non_trainable]

    @property
    def non_trainable_weights(self) -> list:
        trainable = {w.id for w in self.trainable_weights}
        return [w for w in self.weights if w.id not in trainable]

    def count_params(self) -> int:
        return sum(math.prod(w.shape) for w in self.weights)

    def get_weights(self) -> list:
        """Copies of the weights' values, in ``weights`` order."""
        return [w.value for w in self.weights]

    def set_weights(self, weights):
        """Set every weight from the array in the same position; ValueError naming the one that does not fit."""
        values = [np.asarray(w) for w in weights]
        if len(values) != len(self.weights):
            raise ValueError(f"layer {self.name}.set_weights: expected {len(self.weights)} arrays "
                             f"({', '.join(w.name for w in self.weights)}), got {len(values)}")
        for variable, value in zip(self.weights, values):
            if value.shape != variable.shape:
                raise ValueError(f"layer {self.name}.set_weights: {variable.name} has shape {variable.shape}, "
                                 f"got an array of shape {value.shape}")
        for variable, value in zip(self.weights, values):
            variable.value = value

    # ---- what training adds to the step ---------------------------------------------------------
    def add_update(self, variable, value):
        """Ask the training step to set ``variable`` to ``value`` (a graph tensor), as batch norm's moving averages."""
        self._updates.append((variable, value))

    def regularization_losses(self) -> list:
        """The scalar penalties of the layer's regularized weights, which the model adds to its loss."""
        return [regularizer(weight) for weight, regularizer in self._regularizers]

    # ---- saving -------------------------------------------------------------------------------
    def get_config(self) -> dict:
        config = {"name": self.name}
        if self.input_shape is not None and not isinstance(self.input_shape, list):
            config["input_shape"] = list(self.input_shape[1:])
        if not self.trainable:
            config["trainable"] = False
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class InputLayer(Layer):
    """Declares the shape (without the batch axis) and dtype of a model's inputs; passes tensors through."""

    def __init__(self, shape, dtype="float32", name=None):
        shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
        if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in shape):
            raise ValueError(f"Input: shape must be a tuple of positive integers (without the batch axis), "
                             f"got {shape!r}")
        if str(dtype) not in ("float32", "float64", "int32", "int64"):
            raise ValueError(f"Input: dtype must be float32, float64, int32 or int64, got {dtype!r}")
        super().__init__(name, input_shape=shape)
        self.dtype = str(dtype)
        self.output_shape = self.input_shape
        self.built = True
        self.output = KerasTensor(self.input_shape, self.dtype, layer=self, inputs=[])

    def call(self, inputs, training=False):
        return inputs

    def get_config(self):
        return {"name": self.name, "shape": list(self.input_shape[1:]),
                **({"dtype": self.dtype} if self.dtype != "float32" else {})}


def Input(shape, dtype="float32", name=None):
    """A model input: a KerasTensor (batch, *shape) to call layers on, as ``keras.Input``. As the first entry
    of ``Sequential([Input((784,)), Dense(10)])`` it fixes the model's input shape."""
    return InputLayer(shape, dtype=dtype, name=name).output
