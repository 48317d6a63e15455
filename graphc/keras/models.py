"""``Sequential``: a stack of layers compiled into three graphc functions.

Once the input shape is known the layers are applied to a placeholder of shape ("batch", features...),
giving the forward graph. ``compile`` then builds, with the public graphc API only:

    train:    (x, y_true) -> [loss, *metrics], updates = the optimizer's step on gc.grad(loss, weights)
    evaluate: (x, y_true) -> [loss, *metrics]
    predict:  x -> y_pred

and ``fit`` / ``evaluate`` / ``predict`` drive them with the loops of ``runtime.loop``. The weights are the
``gc.variable``'s of the layers; the functions read and update them in place.
"""
import contextlib
import math
import os
import textwrap

import numpy as np

import graphc as gc
from runtime.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from runtime.loop import (Callback, NonFiniteLossError, NonFiniteWeightsError, evaluate_loop, fit_loop, predict_loop,
                          split_validation)

from . import _state, layers as layers_module, losses, metrics as metrics_module, optimizers
from ._registry import name_of

MODEL_FORMAT = "graphc.keras.model"
WEIGHTS_FORMAT = "graphc.keras.weights"
DEFAULT_BATCH_SIZE = 32


class Sequential:
    """A linear stack of layers, as ``keras.models.Sequential``."""

    def __init__(self, layers=None, name=None):
        self.name = name or _state.unique_name("Sequential")
        self._layers = []
        self._input_shape = None  # without the batch axis
        self._input = self._output = None  # the forward graph's placeholder and result
        self.optimizer = self.loss = None
        self.compiled = False
        self._metric_identifiers, self._backend = [], None
        self._functions = self._predict = None
        self.stop_training = False
        self.history = None
        for layer in layers or []:
            self.add(layer)

    # ---- building ----------------------------------------------------------------------------
    def add(self, layer):
        """Append ``layer``; an ``Input`` may only come first and fixes the input shape."""
        if isinstance(layer, (layers_module.InputLayer, layers_module.KerasTensor)):
            if self._layers or self._input_shape is not None:
                raise ValueError(f"{self.name}: an Input must be the first entry of a Sequential model")
            self._set_input_shape(layer.shape[1:] if isinstance(layer, layers_module.KerasTensor)
                                  else layer.input_shape[1:])
            return
        if not isinstance(layer, layers_module.Layer):
            raise TypeError(f"{self.name}.add expects a layer, got {type(layer).__name__}")
        if self._input_shape is None and not self._layers and layer.input_shape is not None:
            self._set_input_shape(layer.input_shape[1:])
        self._layers.append(layer)
        self._functions = self._predict = None  # the graphs no longer end at the model's output
        if self._input is not None:
            self._output = layer(self._output)

    def _set_input_shape(self, shape):
        self._input_shape = tuple(int(d) for d in shape)
        self._input = self._output = gc.placeholder(("batch", *self._input_shape), name="x")
        for layer in self._layers:
            self._output = layer(self._output)

    @property
    def built(self) -> bool:
        return self._input is not None

    @property
    def layers(self) -> list:
        return list(self._layers)

    @property
    def weights(self) -> list:
        return [w for layer in self._layers for w in layer.weights]

    @property
    def trainable_weights(self) -> list:
        return self.weights

    @property
    def non_trainable_weights(self) -> list:
        return []

    @property
    def input_shape(self):
        return None if self._input_shape is None else (None, *self._input_shape)

    @property
    def output_shape(self):
        return None if not self.built else (None, *self._output.shape[1:])

    def count_params(self) -> int:
        return sum(layer.count_params() for layer in self._layers)

    # ---- compiling ---------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, backend=None):
        """Choose optimizer, loss and metrics; builds the train and evaluate functions once the model is
        built. ``backend`` is passed to ``gc.function`` (None: graphc's default backend)."""
        self.optimizer = optimizers.get(optimizer)
        self.loss = None if loss is None else losses.get(loss)
        self._metric_identifiers = list(metrics or [])
        self._backend = backend
        self.compiled = True
        self._functions = self._predict = None
        if self.built and self.loss is not None:
            self._training_functions()

    def _function(self, inputs, outputs, updates=None):
        options = {} if self._backend is None else {"backend": self._backend}
        return gc.function(inputs, outputs, updates=updates, **options)

    def _training_functions(self):
        """The compiled train and evaluate functions, built on first use: one graph computes the batch-mean
        loss and metrics, and (for training) the optimizer's updates from their gradients."""
        if self._functions is None:
            if self.loss is None:
                raise ValueError(f"{self.name}: compile the model with a loss before training or evaluating it, "
                                 f"e.g. compile(optimizer='rmsprop', loss='categorical_crossentropy')")
            y_true = gc.placeholder(*self._target_spec(), name="y_true")
            y_pred = self._output
            loss = gc.mean(self.loss(y_true, y_pred))
            metrics = [metrics_module.get(identifier, self.loss, y_pred.shape[-1])
                       for identifier in self._metric_identifiers]
            names = ["loss"] + [name for name, _ in metrics]
            values = [loss] + [gc.mean(metric(y_true, y_pred)) for _, metric in metrics]
            params = self.trainable_weights
            updates = self.optimizer.updates(params, gc.grad(loss, params))
            train = self._function([self._input, y_true], values, updates)
            evaluate = self._function([self._input, y_true], values)
            self._functions = (_named_step(train, names), _named_step(evaluate, names), names, train)
        return self._functions

    def graphc_function(self):
        """The compiled training step (a gc.Function): what ``graphc dump`` and ``gc.render`` draw for a model."""
        return self._training_functions()[3]

    def _predict_function(self):
        if self._predict is None:
            self._predict = self._function([self._input], self._output)
        return self._predict

    def _target_spec(self):
        """Shape and dtype of the targets the loss expects: integer labels for the sparse loss, else the
        output's shape."""
        shape = ("batch", *self._output.shape[1:])
        if self.loss is losses.sparse_categorical_crossentropy:
            return shape[:-1], "int64"
        return shape, "float32"

    @property
    def metrics_names(self) -> list:
        return self._training_functions()[2]

    # ---- training, evaluation, prediction ----------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, initial_epoch=0):
        """Train for ``epochs`` epochs; returns the History (``history.history['loss']`` etc.).

        On a NaN or infinite loss training stops with runtime's NonFiniteLossError, and on weights or optimizer
        variables that an epoch left NaN or infinite (checked at every epoch's end, so also after the last
        batch) with NonFiniteWeightsError naming the variable; either way the weights and optimizer variables
        are put back to what they were at the start of the failing epoch, the last state whose epoch ended
        finite (unless EarlyStopping(restore_best_weights=True) then restores its best epoch's weights). So
        they are finite when fit returns or raises (unless a callback itself makes them non-finite after the
        end-of-epoch check), and ModelCheckpoint never saves non-finite ones.
        """
        self._require_compiled("fit")
        x, y = self._checked_data(x, y)
        validation = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (x_val, y_val)")
            validation = self._checked_data(*validation_data)
        elif validation_split:
            (x, y), validation = split_validation(x, y, validation_split)
        train_step, eval_step, _, _ = self._training_functions()
        callbacks = [_KeepLastGoodState(), *(callbacks or [])]
        # Shuffling draws its seed from graphc.keras's generator, so set_random_seed makes fit reproducible.
        seed = int(_state.generator().integers(2**63))
        try:
            self.history = fit_loop(train_step, x, y, epochs=epochs, batch_size=_batch_size(batch_size),
                                    shuffle=shuffle, seed=seed, validation=validation, eval_step=eval_step,
                                    callbacks=callbacks, verbose=_verbosity(verbose),
                                    initial_epoch=initial_epoch, owner=self)
        except (NonFiniteLossError, NonFiniteWeightsError) as error:
            error.add_note(f"{self.name}: the weights and optimizer state were restored to those at the "
                           f"start of epoch {error.epoch + 1}")
            raise
        return self.history

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", return_dict=False):
        """``[loss, *metrics]`` over the data (just the loss when there are no metrics), or a dict."""
        self._require_compiled("evaluate")
        x, y = self._checked_data(x, y)
        _, eval_step, names, _ = self._training_functions()
        logs = evaluate_loop(eval_step, x, y, _batch_size(batch_size), verbose=_verbosity(verbose))
        if return_dict:
            return logs
        values = [logs[name] for name in names]
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size=None, verbose="auto"):
        """The model's outputs for ``x``, as one numpy array."""
        x = self._checked_inputs(x)
        predict = self._predict_function()
        return predict_loop(predict, x, _batch_size(batch_size), verbose=_verbosity(verbose))

    def _require_compiled(self, what):
        if not self.compiled:
            raise RuntimeError(f"{self.name}: you must call compile() before {what}()")

    def _checked_inputs(self, x):
        if x is None:
            raise ValueError(f"{self.name}: no input data (x is None)")
        x = np.asarray(x)
        if x.ndim < 2:
            raise ValueError(f"{self.name}: x must have a sample axis and feature axes, got shape {x.shape}")
        if not self.built:
            self._set_input_shape(x.shape[1:])
        if x.shape[1:] != self._input_shape:
            hint = ""
            if len(self._input_shape) == 3 and x.shape[1:] == (self._input_shape[2], *self._input_shape[:2]):
                hint = ("; it looks channels-first (NCHW), and graphc's layers take channels-last images: "
                        "x.transpose(0, 2, 3, 1)")
            elif math.prod(x.shape[1:]) == math.prod(self._input_shape):
                hint = f"; reshape it, e.g. x.reshape(({len(x)}, {', '.join(map(str, self._input_shape))}))"
            raise ValueError(f"{self.name} expects inputs of shape {self.input_shape}, got x of shape "
                             f"{x.shape}{hint}")
        return x

    def _checked_data(self, x, y):
        """``x`` and ``y`` as arrays the functions accept; ValueError naming the shape that does not fit."""
        x = self._checked_inputs(x)
        if y is None:
            raise ValueError(f"{self.name}: no targets (y is None)")
        y = np.asarray(y)
        if y.dtype.kind not in "biuf":
            raise ValueError(f"{self.name}: targets must be numbers, got dtype {y.dtype}")
        expected = tuple(self._target_spec()[0][1:])
        if self.loss is losses.sparse_categorical_crossentropy:
            return x, self._checked_labels(y, expected)
        if y.shape[1:] != expected and expected[-1:] == (1,) and y.shape[1:] == expected[:-1]:
            y = y[..., None]  # (n,) targets for a one-unit output, as Keras accepts them
        if self.loss is losses.categorical_crossentropy and y.shape[1:] != expected and y.shape[1:] in ((), (1,)):
            raise ValueError(f"categorical_crossentropy expects one-hot targets of shape {(None, *expected)}, "
                             f"got y of shape {y.shape} (class labels?): encode them with "
                             f"graphc.keras.utils.to_categorical(y, {expected[-1]}) or use "
                             f"loss='sparse_categorical_crossentropy'")
        if y.shape[1:] != expected:
            raise ValueError(f"{getattr(self.loss, '__name__', 'the loss')} expects targets of shape "
                             f"{(None, *expected)} for a model with output shape {self.output_shape}, "
                             f"got y of shape {y.shape}")
        return x, y

    def _checked_labels(self, y, expected):
        """Integer class labels for sparse_categorical_crossentropy: (n,) or (n, 1), in range."""
        if y.shape[1:] == (*expected, 1):
            y = y[..., 0]
        classes = self._output.shape[-1]
        if y.shape[1:] != expected:
            raise ValueError(f"sparse_categorical_crossentropy expects integer class labels of shape "
                             f"{(None, *expected)}, got y of shape {y.shape}"
                             + (" (one-hot rows? use loss='categorical_crossentropy')"
                                if y.shape[1:] == (*expected, classes) else ""))
        if y.dtype.kind == "f" and not np.array_equal(y, np.round(y)):
            raise ValueError("sparse_categorical_crossentropy expects integer class labels, got non-integral "
                             "values")
        if y.size and (y.min() < 0 or y.max() >= classes):
            raise ValueError(f"class labels must be in 0..{classes - 1} for an output of {classes} units, got "
                             f"values from {y.min()} to {y.max()}")
        return y.astype(np.int64)

    # ---- weights -----------------------------------------------------------------------------
    def get_weights(self) -> list:
        return [w.value for w in self.weights]

    def set_weights(self, weights):
        _assign(self.weights, weights, f"{self.name}.set_weights")

    def _state(self) -> list:
        """Every variable training changes: the weights, then the optimizer's variables."""
        return self.weights + (self.optimizer.variables if self.optimizer is not None else [])

    def state_arrays(self) -> list:
        """(name, value) of every variable in ``_state()``, for fit_loop's end-of-epoch NaN/inf check: read-only
        views, so the check reads each array once and copies nothing."""
        return [(variable.name, _read_only(variable.storage)) for variable in self._state()]

    # ---- saving ------------------------------------------------------------------------------
    def get_config(self) -> dict:
        return {"name": self.name, "input_shape": None if self._input_shape is None else list(self._input_shape),
                "layers": [layers_module.serialize(layer) for layer in self._layers]}

    @classmethod
    def from_config(cls, config):
        return cls._from_layers(config, [layers_module.deserialize(layer) for layer in config["layers"]])

    @classmethod
    def _from_layers(cls, config, layers):
        """The model of ``config`` made of ``layers``, its deserialized (unbuilt) layers."""
        model = cls(name=config["name"])
        if config["input_shape"] is not None:
            model._set_input_shape(config["input_shape"])
        for layer in layers:
            model.add(layer)
        return model

    def save(self, path):
        """Write architecture (JSON), weights, compile settings and optimizer state to ``path``, atomically
        (graphc's own ``.npz``-based format; read it back with ``load_model``)."""
        arrays = {f"weight_{i}": w.value for i, w in enumerate(self.weights)}
        meta = {"format": MODEL_FORMAT, "version": 1, "model": self.get_config(), "compile": None}
        if self.compiled:
            meta["compile"] = {
                "optimizer": optimizers.serialize(self.optimizer),
                "loss": None if self.loss is None else losses.serialize(self.loss),
                "metrics": [m if isinstance(m, str) else name_of(metrics_module.METRICS, m, "metric")
                            for m in self._metric_identifiers]}
            for param in self.trainable_weights:  # slots not created yet (never trained) are saved as zeros
                self.optimizer._slots_for(param)
            arrays.update({f"optimizer_{i}": v.value for i, v in enumerate(self.optimizer.variables)})
        save_checkpoint(path, arrays, meta)

    def save_weights(self, path):
        """Write just the weights to ``path`` (atomically); read them back with ``load_weights``."""
        save_checkpoint(path, {f"weight_{i}": w.value for i, w in enumerate(self.weights)},
                        {"format": WEIGHTS_FORMAT, "version": 1, "model": self.name})

    def load_weights(self, path):
        """Set the weights from a file of ``save_weights`` or ``save``; CheckpointError if it does not fit."""
        arrays, _ = _read(path, (WEIGHTS_FORMAT, MODEL_FORMAT))
        with _reading(path, "weights"):
            _assign(self.weights, _numbered(arrays, "weight"))

    # ---- summary -----------------------------------------------------------------------------
    def summary(self, print_fn=None):
        """Print the layer table and parameter counts exactly as Keras 3 does (on an 80-column console)."""
        (print_fn or print)(_summary_text(self))


def load_model(path, compile=True):
    """The model saved at ``path`` by ``Model.save``: architecture, weights, and (with ``compile``) its
    compile settings and optimizer state, so that training resumes where it stopped. Any malformed file
    gives CheckpointError naming ``path`` and the part that is wrong."""
    arrays, meta = _read(path, (MODEL_FORMAT,))
    with _reading(path, "architecture"):
        config = meta["model"]
        layers = [layers_module.deserialize(layer) for layer in config["layers"]]
        declared = _weight_shapes(config["input_shape"], layers)
    with _reading(path, "weights"):
        weights = _numbered(arrays, "weight")
        _check_shapes(declared, weights)  # before building: a crafted config may declare far larger weights
    with _reading(path, "architecture"):
        model = Sequential._from_layers(config, layers)
    with _reading(path, "weights"):
        _assign(model.weights, weights)
    with _reading(path, "compile settings"):
        settings = meta["compile"] if compile else None
        if settings is not None:
            model.compile(optimizers.deserialize(settings["optimizer"]), settings["loss"], settings["metrics"])
            if model.built and model.loss is not None:
                model._training_functions()  # creates the optimizer's slots, to be filled below
    if settings is not None:
        with _reading(path, "optimizer state"):
            _assign(model.optimizer.variables, _numbered(arrays, "optimizer"))
    return model


def _read(path, formats):
    arrays, meta = load_checkpoint(path)
    kind = meta.get("format") if isinstance(meta, dict) else None
    if kind not in formats:
        raise CheckpointError(f"{os.fspath(path)} is not a graphc.keras file of kind {' or '.join(formats)} "
                              f"(it says format {kind!r})")
    if meta.get("version") != 1:
        raise CheckpointError(f"{os.fspath(path)} has version {meta.get('version')!r}; this graphc reads version 1")
    return arrays, meta


@contextlib.contextmanager
def _reading(path, part):
    """Turns what rebuilding ``part`` of a model from a crafted or damaged file raises into CheckpointError."""
    try:
        yield
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, OverflowError, MemoryError) as e:
        detail = f"missing {e}" if isinstance(e, KeyError) else f"{e}" or type(e).__name__
        raise CheckpointError(f"{os.fspath(path)}: invalid {part}: {detail}") from e


def _numbered(arrays, prefix) -> list:
    """``arrays[prefix_0]``, ``arrays[prefix_1]``, ...: all the arrays named ``prefix_<n>``, without gaps."""
    names = {name for name in arrays if name.startswith(prefix + "_")}
    expected = [f"{prefix}_{i}" for i in range(len(names))]
    if names != set(expected):
        raise ValueError(f"the {prefix} arrays are not numbered {prefix}_0 to {prefix}_{len(names) - 1}: found "
                         f"{', '.join(sorted(names - set(expected)))}")
    return [arrays[name] for name in expected]


def _weight_shapes(input_shape, layers) -> list:
    """(name, shape) of every weight that unbuilt ``layers`` create in a Sequential model whose inputs have
    ``input_shape`` (None: the first layer's), in ``model.weights`` order, without creating any."""
    if input_shape is None and layers and layers[0].input_shape is not None:
        input_shape = layers[0].input_shape[1:]
    if input_shape is None:
        return []
    shape, declared = (None, *(int(d) for d in input_shape)), []
    for layer in layers:
        output_shape = layer.compute_output_shape(shape)  # first: it rejects inputs the layer cannot take
        declared += [(f"{layer.name}/{name}", weight_shape)
                     for name, weight_shape in layer.weight_shapes(shape).items()]
        shape = output_shape
    return declared


def _check_shapes(expected, values, prefix=""):
    """ValueError (starting with ``prefix``) unless ``values`` holds one array per (name, shape) of ``expected``,
    of that shape."""
    if len(values) != len(expected):
        raise ValueError(f"{prefix}expected {len(expected)} arrays ({', '.join(name for name, _ in expected)}), "
                         f"got {len(values)}")
    for (name, shape), value in zip(expected, values):
        if value.shape != shape:
            raise ValueError(f"{prefix}{name} has shape {shape}, got an array of shape {value.shape}")


def _assign(variables, values, who=None):
    """Set each variable from the array in the same position; ValueError (prefixed ``who: ``) if one does not fit."""
    values = [np.asarray(value) for value in values]
    _check_shapes([(variable.name, variable.shape) for variable in variables], values, f"{who}: " if who else "")
    for variable, value in zip(variables, values):
        variable.value = value


def _read_only(array):
    """A view that cannot write to ``array``: state_arrays hands out the variables' own storage, uncopied."""
    view = array.view()
    view.flags.writeable = False
    return view


def _named_step(function, names):
    """A step for the runtime loops: ``step(xb, yb) -> {name: batch-mean value}``."""
    def step(xb, yb):
        return {name: float(value) for name, value in zip(names, function(xb, yb))}
    return step


class _KeepLastGoodState(Callback):
    """Snapshots the model's variables at the start of every epoch and puts them back when the loop stops on
    a NaN or infinite loss or variable (the weights it reached then are already poisoned or about to be)."""

    def on_epoch_begin(self, epoch, logs=None):
        self.snapshot = [v.value for v in self.model._state()]

    def on_train_end(self, logs=None):
        if logs.get("stopped_on_nan"):
            for variable, value in zip(self.model._state(), self.snapshot):
                variable.value = value


def _batch_size(batch_size):
    return DEFAULT_BATCH_SIZE if batch_size is None else batch_size


def _verbosity(verbose):
    return 1 if verbose == "auto" else verbose


# ---- summary table -----------------------------------------------------------------------------
# Keras 3 renders the table with rich at its default line length for an 80-column console, which gives
# these cell widths (text only, without the one-space padding on each side).
COLUMN_WIDTHS = (31, 22, 13)


def _summary_text(model) -> str:
    rows = [(f"{layer.name} ({type(layer).__name__})", _format_shape(layer.output_shape),
             f"{layer.count_params():,}" if layer.built else "0 (unbuilt)") for layer in model.layers]
    lines = [f'Model: "{model.name}"', _rule("┏", "━", "┳", "┓"),
             _row(("Layer (type)", "Output Shape", "Param #"), "┃"), _rule("┡", "━", "╇", "┩")]
    for i, row in enumerate(rows):
        if i:
            lines.append(_rule("├", "─", "┼", "┤"))
        lines.append(_row(row, "│"))
    lines.append(_rule("└", "─", "┴", "┘"))
    trainable = _count_and_size(model.trainable_weights)
    counts = [("Total", trainable), ("Trainable", trainable), ("Non-trainable", _count_and_size([]))]
    if model.optimizer is not None and model.optimizer.iterations.value > 0:
        optimizer = _count_and_size(model.optimizer.variables)
        counts[0] = ("Total", (trainable[0] + optimizer[0], trainable[1] + optimizer[1]))
        counts.append(("Optimizer", optimizer))
    lines += [f" {label} params: {count:,} ({_readable_size(size)})" for label, (count, size) in counts]
    return "\n".join(lines)


def _format_shape(shape):
    return "?" if shape is None else "(" + ", ".join(str(d) for d in shape) + ")"


def _rule(left, fill, join, right):
    return left + join.join(fill * (width + 2) for width in COLUMN_WIDTHS) + right


def _row(cells, bar):
    """One table row; a cell too long for its column wraps onto more lines, as rich does."""
    wrapped = [textwrap.wrap(cell, width) or [""] for cell, width in zip(cells, COLUMN_WIDTHS)]
    lines = []
    for k in range(max(len(w) for w in wrapped)):
        parts = [w[k] if k < len(w) else "" for w in wrapped]
        aligned = [parts[0].ljust(COLUMN_WIDTHS[0]), parts[1].ljust(COLUMN_WIDTHS[1]),
                   parts[2].rjust(COLUMN_WIDTHS[2])]
        lines.append(bar + bar.join(f" {part} " for part in aligned) + bar)
    return "\n".join(lines)


def _count_and_size(variables):
    """(number of values, bytes) of ``variables``."""
    return (sum(math.prod(v.shape) for v in variables),
            sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in variables))


def _readable_size(size):
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} PB"
