"""Keras models: ``Model(inputs, outputs)`` (the functional API) and ``Sequential``, compiled into graphc functions.

A model is a graph of layer calls recorded on ``KerasTensor``'s (``keras.Input`` and the layers called on them;
a Sequential model records its stack the same way). Compiling replays those calls on graphc placeholders twice --
in training mode (dropout on, batch norm on batch statistics) and in inference mode -- and builds, with the
public graphc API only:

    train:    (inputs, targets[, sample weights]) -> [loss, *metrics], updates = the optimizer's step on
              gc.grad(loss, trainable weights) and the layers' own updates (batch norm's moving statistics)
    evaluate: (inputs, targets[, sample weights]) -> [loss, *metrics]    (inference graph)
    predict:  inputs -> outputs                                         (inference graph)

each compiled once, on first use; ``fit`` / ``evaluate`` / ``predict`` drive them with the loops of
``runtime.loop``. The weights are the ``gc.variable``'s of the layers; the functions read and update them in
place. The loss is the mean over the batch of the per-sample losses (times the sample weights, if any), summed
over the outputs with their ``loss_weights``, plus the layers' regularization penalties -- Keras 3's rule.
"""
import collections.abc
import contextlib
import math
import os

import numpy as np

import graphc as gc
from runtime.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from runtime.loop import (Batches, Callback, NonFiniteLossError, NonFiniteWeightsError, check_steps_per_execution,
                          evaluate_loop, fit_loop, predict_loop, split_validation)

from . import _state, layers as layers_module, losses, metrics as metrics_module, optimizers, summary
from .distribution import active as active_distribution
from ._registry import name_of
from .layers import InputLayer, KerasTensor
from .layers.base import as_list, call_keys

MODEL_FORMAT = "graphc.keras.model"
WEIGHTS_FORMAT = "graphc.keras.weights"
DEFAULT_BATCH_SIZE = 32


class Model:
    """A model of the functional API, as ``keras.Model(inputs, outputs)``: ``inputs`` are ``keras.Input`` tensors,
    ``outputs`` the tensors that layers called on them made (one each, or lists)."""

    def __init__(self, inputs=None, outputs=None, name=None):
        if inputs is None or outputs is None:
            raise TypeError("Model(inputs, outputs): graphc builds models with the functional API (keras.Input and "
                            "layers called on it) or Sequential; subclassing Model with a call() method is not "
                            "supported")
        self._init(name or _state.unique_name("Functional"))
        self._connect(inputs, outputs)

    def _init(self, name):
        self.name = name
        self._inputs, self._outputs, self._calls, self._tensors = [], [], [], []
        self._nested = (False, False)  # whether inputs, outputs were given as lists
        self.optimizer = self.loss = None
        self.compiled = False
        self._losses, self._metrics, self._loss_weights, self._metric_identifiers = [], [], [], []
        self._backend, self._custom_specs, self._pending = None, None, None
        self._functions = {}
        self.stop_training = False
        self.history = None

    def _connect(self, inputs, outputs):
        """Record the layer calls between ``inputs`` and ``outputs``."""
        self._nested = (isinstance(inputs, (list, tuple)), isinstance(outputs, (list, tuple)))
        self._inputs = _tensor_list(inputs, "inputs", self.name)
        self._outputs = _tensor_list(outputs, "outputs", self.name)
        for tensor in self._inputs:
            if not isinstance(tensor.layer, InputLayer):
                raise ValueError(f"{self.name}: inputs must be keras.Input tensors, got {tensor} (made by layer "
                                 f"{tensor.layer.name})")
        self._tensors = _tensors_between(self._inputs, self._outputs, self.name)
        self._calls = [t for t in self._tensors if not isinstance(t.layer, InputLayer)]
        names = collections.Counter(layer.name for layer in self.layers)
        if any(count > 1 for count in names.values()):
            raise ValueError(f"{self.name}: two different layers are named "
                             f"{', '.join(n for n, c in names.items() if c > 1)}; layer names must be unique")
        self._functions, self._custom_specs = {}, None

    # ---- structure -----------------------------------------------------------------------------
    @property
    def built(self) -> bool:
        return bool(self._inputs)

    @property
    def layers(self) -> list:
        """Every layer once, in the order of a depth-first walk from the outputs (as Keras), each InputLayer where
        it is first needed."""
        return list({id(t.layer): t.layer for t in self._tensors}.values())

    def get_layer(self, name=None, index=None):
        """The layer called ``name``, or at position ``index`` of ``layers``; ValueError naming the known ones."""
        if (name is None) == (index is None):
            raise ValueError(f"{self.name}.get_layer: give exactly one of name and index")
        if index is not None:
            if not -len(self.layers) <= index < len(self.layers):
                raise ValueError(f"{self.name}.get_layer: index {index} is out of range for {len(self.layers)} layers")
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"{self.name} has no layer named {name!r}; its layers: "
                         f"{', '.join(layer.name for layer in self.layers)}")

    @property
    def inputs(self) -> list:
        return list(self._inputs)

    @property
    def outputs(self) -> list:
        return list(self._outputs)

    @property
    def weights(self) -> list:
        return _unique([w for layer in self.layers for w in layer.weights])

    @property
    def trainable_weights(self) -> list:
        return _unique([w for layer in self.layers for w in layer.trainable_weights])

    @property
    def non_trainable_weights(self) -> list:
        trainable = {w.id for w in self.trainable_weights}
        return [w for w in self.weights if w.id not in trainable]

    @property
    def input_shape(self):
        shapes = [t.shape for t in self._inputs]
        return shapes if self._nested[0] else (shapes[0] if shapes else None)

    @property
    def output_shape(self):
        shapes = [t.shape for t in self._outputs]
        return shapes if self._nested[1] else (shapes[0] if shapes else None)

    def count_params(self) -> int:
        return sum(math.prod(w.shape) for w in self.weights)

    def _output_names(self) -> list:
        return [t.layer.name for t in self._outputs]

    def _input_names(self) -> list:
        return [t.name for t in self._inputs]

    def _graph(self, training):
        """Placeholders for the inputs, the outputs' graph tensors (every layer call replayed on them in
        ``training`` mode) and the updates those calls asked for."""
        values = {id(t): gc.placeholder(("batch", *t.shape[1:]), t.dtype, name=name)
                  for t, name in zip(self._inputs, self._input_names())}
        for layer in self.layers:
            layer._updates = []
        for tensor in self._calls:
            args = tensor.inputs
            args = [values[id(t)] for t in args] if isinstance(args, list) else values[id(args)]
            values[id(tensor)] = tensor.layer(args, training=training)
        updates = [pair for layer in self.layers for pair in layer._updates]
        return [values[id(t)] for t in self._inputs], [values[id(t)] for t in self._outputs], updates

    # ---- compiling ---------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None, backend=None,
                steps_per_execution=None):
        """Choose optimizer, loss(es), metrics and loss weights; the functions are compiled on first use.
        With several outputs ``loss`` and ``metrics`` may be lists (one entry per output) or dicts by output
        name; one loss (or a flat list of metrics) applies to every output. ``backend`` is passed to
        ``gc.function`` (None: graphc's default backend).

        ``steps_per_execution``: how many of fit's training batches (of array data) run in one native call,
        their rows gathered natively from the arrays (``gc.Function.run_steps``). None (graphc's default;
        Keras' is 1): a whole epoch, or with verbose=1 chunks of about 0.05 s so that the progress line keeps
        moving. Every choice gives the same weights and history, bit for bit. Data of another dtype than the
        model's (float64 arrays for float32 inputs) is converted once an epoch, whole. A callback with
        batch-level hooks (``on_batch_begin/end``, Keras' ``on_train_batch_begin/end``) still sees every batch:
        fit then calls the step once per batch (runtime.loop.fit_loop). evaluate and predict make a call per
        batch."""
        check_steps_per_execution(steps_per_execution)
        self._steps_per_execution = steps_per_execution
        self.optimizer = optimizers.get(optimizer)
        self.loss = loss if loss is None or isinstance(loss, (list, dict)) else losses.get(loss)
        self._metric_identifiers = metrics
        self._backend = backend
        if self.built:
            self._resolve_compile_settings(loss, metrics, loss_weights)
        else:
            self._pending = (loss, metrics, loss_weights)
        self.compiled = True
        self._functions, self._custom_specs = {}, None
        if backend is not None and backend not in gc.BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; available: {', '.join(sorted(gc.BACKENDS))}")

    def _resolve_compile_settings(self, loss, metrics, loss_weights):
        names = self._output_names()
        self._losses = [None if entry is None else losses.get(entry)
                        for entry in _per_output(loss, names, "loss", self.name)]
        if isinstance(metrics, (list, tuple)) and not (metrics and all(isinstance(m, (list, tuple)) for m in metrics)):
            metrics = [metrics] * len(names)  # one flat list: the same metrics for every output
        self._metrics = [as_list(entry or []) for entry in _per_output(metrics, names, "metrics", self.name)]
        for entry, loss, t in zip(self._metrics, self._losses, self._outputs):
            for m in entry:
                metrics_module.get(m, loss, t.shape[-1])  # unknown names fail now; 'accuracy' resolves in _step
        self._loss_weights = [1.0 if w is None else float(w)
                              for w in _per_output(loss_weights, names, "loss_weights", self.name)]

    def _settings(self):
        if self._pending is not None and self.built:
            pending, self._pending = self._pending, None
            self._resolve_compile_settings(*pending)

    def _function(self, inputs, outputs, updates=None):
        from .mixed_precision import global_policy  # the policy in force when the function is built
        options = {} if self._backend is None else {"backend": self._backend}
        # lazy: fit, evaluate and predict run their batches through run_steps, which compiles only the variant
        # that reads the images in place; a call (train_on_batch, a batch callback) compiles the plain program
        return gc.function(inputs, outputs, updates=updates, precision=global_policy().name, lazy=True, **options)

    def _step(self, kind, weighted=False):
        """The compiled function of ``kind`` ('train', 'evaluate'; 'predict', 'forward' = predict in training
        mode), built once: loss and metrics from the targets (and per-sample weights when ``weighted``)."""
        key = (kind, weighted)
        if key not in self._functions:
            training = kind in ("train", "forward")
            inputs, outputs, updates = self._graph(training)
            if kind in ("predict", "forward"):
                self._functions[key] = self._function(inputs, outputs)
                return self._functions[key]
            targets, weights, names, values = self._loss_and_metrics(outputs, weighted)
            step_updates = None
            if kind == "train":
                params = self.trainable_weights
                gradients = gc.grad(values[0], params)
                if active_distribution() is not None:  # hook: graphc.keras.distribution sums them over processes
                    gradients = active_distribution().gradients(gradients)
                step_updates = self.optimizer.updates(params, gradients) + updates
            function = self._function(inputs + targets + weights, values, step_updates)
            self._functions[key] = _NamedStep(function, names)
        return self._functions[key]

    def _loss_and_metrics(self, outputs, weighted):
        """Target placeholders, per-sample weight placeholders, and the names and graph values of the loss (first)
        and metrics."""
        self._require_loss()
        targets, weights, total = [], [], []
        loss_names, loss_values, names, values = [], [], [], []  # each output's loss, then the metrics (as Keras)
        several = len(outputs) > 1
        for k, (output, output_name) in enumerate(zip(outputs, self._output_names())):
            loss = self._losses[k]
            if loss is None:
                continue
            shape, dtype = self._target_spec(k)
            y_true = gc.placeholder(shape, dtype, name="y_true" if not several else f"y_true_{output_name}")
            targets.append(y_true)
            per_sample = loss(y_true, output)
            if weighted:
                weight = gc.placeholder(("batch",), "float32",
                                        name="sample_weight" if not several else f"sample_weight_{output_name}")
                weights.append(weight)
                per_sample = per_sample * gc.reshape(weight, (weight.shape[0],) + (1,) * (len(per_sample.shape) - 1))
            value = gc.mean(per_sample)
            total.append(value * self._loss_weights[k] if self._loss_weights[k] != 1 else value)
            prefix = f"{output_name}_" if several else ""
            if several:
                loss_names.append(f"{output_name}_loss")
                loss_values.append(value)
            sparse = dtype.startswith("int") and len(shape) == len(output.shape) - 1  # integer labels
            for identifier in self._metrics[k]:
                metric_name, metric = metrics_module.get(identifier, loss, output.shape[-1], sparse)
                names.append(prefix + metric_name)
                values.append(gc.mean(metric(y_true, output)))
        total += [penalty for layer in self.layers for penalty in layer.regularization_losses()]
        return targets, weights, ["loss", *loss_names, *names], [sum(total[1:], total[0]), *loss_values, *values]

    def _require_loss(self):
        self._settings()
        if not any(loss is not None for loss in self._losses):
            raise ValueError(f"{self.name}: compile the model with a loss before training or evaluating it, "
                             f"e.g. compile(optimizer='rmsprop', loss='categorical_crossentropy')")

    def _target_spec(self, k):
        """Shape and dtype of output ``k``'s targets: integer labels for a sparse loss; for a custom loss
        function what the data gave (integer labels pass through unchanged); else the output's shape."""
        output = self._outputs[k]
        shape = ("batch", *output.shape[1:])
        if losses.target_kind(self._losses[k]) == "sparse":
            return shape[:-1], "int64"
        if self._custom_specs is not None and self._custom_specs[k] is not None:
            return ("batch", *self._custom_specs[k][0]), self._custom_specs[k][1]
        return shape, "float32"

    def graphc_function(self):
        """The compiled training step (a gc.Function): what ``graphc dump`` and ``gc.render`` draw for a model."""
        return self._step("train").function

    @property
    def metrics_names(self) -> list:
        return self._step("evaluate").names

    # ---- training, evaluation, prediction ----------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0,
            steps_per_epoch=None, validation_freq=1):
        """Train for ``epochs`` epochs; returns the History (``history.history['loss']`` etc.).

        ``x``/``y`` are arrays (lists or dicts by name for several inputs/outputs), or ``x`` is a Python generator
        or iterable of ``(x, y)`` or ``(x, y, sample_weight)`` batches (``steps_per_epoch`` of them an epoch,
        else one pass). ``sample_weight`` (one per sample) and ``class_weight`` ({class: weight}) scale each
        sample's loss, as Keras.

        On a NaN or infinite loss training stops with runtime's NonFiniteLossError, and on weights or optimizer
        variables that an epoch left NaN or infinite (checked at every epoch's end, so also after the last
        batch) with NonFiniteWeightsError naming the variable; either way the weights and optimizer variables
        are put back to what they were at the start of the failing epoch, the last state whose epoch ended
        finite (unless EarlyStopping(restore_best_weights=True) then restores its best epoch's weights). So
        they are finite when fit returns or raises (unless a callback itself makes them non-finite after the
        end-of-epoch check), and ModelCheckpoint never saves non-finite ones. This differs from Keras on
        purpose (Keras keeps the NaN weights, or stops only with TerminateOnNaN).
        """
        self._require_compiled("fit")
        if _is_batch_source(x, y):
            if sample_weight is not None:
                raise ValueError(f"{self.name}.fit: sample_weight cannot be used with a generator of batches; "
                                 f"yield (x, y, sample_weight) batches instead")
            data = Batches(x, steps_per_epoch, self._batch_check(class_weight, "the generator"))
        else:
            data, ys = self._data(x, y, sample_weight)
        validation = None
        if validation_data is not None:
            validation = self._validation(validation_data)
        elif validation_split:
            if isinstance(data, Batches):
                raise ValueError(f"{self.name}.fit: validation_split cannot be used with a generator of batches")
            (data, ys), validation = split_validation(data, ys, validation_split)
        if not isinstance(data, Batches):
            ys = self._class_weighted(ys, class_weight)  # the training part only, as Keras
        train_step, eval_step = self._dispatching("train"), self._dispatching("evaluate")
        train_steps = None if isinstance(data, Batches) else self._dispatching_steps()
        callbacks = [_KeepLastGoodState(), *(callbacks or [])]
        # Shuffling draws its seed from graphc.keras's generator, so set_random_seed makes fit reproducible.
        seed = int(_state.generator().integers(2**63))
        try:
            run = fit_loop if active_distribution() is None else active_distribution().fit_loop  # hook: shares
            self.history = run(train_step, data, None if isinstance(data, Batches) else ys, epochs=epochs,
                               batch_size=_batch_size(batch_size), shuffle=shuffle, seed=seed,
                               validation=validation, eval_step=eval_step, callbacks=callbacks,
                               verbose=_verbosity(verbose), initial_epoch=initial_epoch, owner=self,
                               validation_freq=validation_freq, train_steps=train_steps,
                               steps_per_execution=self._steps_per_execution)
        except (NonFiniteLossError, NonFiniteWeightsError) as error:
            error.add_note(f"{self.name}: the weights and optimizer state were restored to those at the "
                           f"start of epoch {error.epoch + 1}")
            raise
        return self.history

    def _validation(self, validation_data):
        if _is_batch_source(validation_data, None) and not isinstance(validation_data, tuple):
            return Batches(validation_data, None, self._batch_check(None, "the validation_data generator"))
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError("validation_data must be a pair (x_val, y_val) or a triple (x_val, y_val, "
                             "sample_weight_val)")
        return self._data(*validation_data, where="validation_data")

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 return_dict=False):
        """``[loss, *metrics]`` over the data in the inference graph (just the loss when there are no metrics),
        or a dict; ``x`` may be a generator of batches as in ``fit``."""
        self._require_compiled("evaluate")
        if _is_batch_source(x, y):
            data, targets = Batches(x, steps, self._batch_check(None, "the generator")), None
        else:
            data, targets = self._data(x, y, sample_weight)
        run = evaluate_loop if active_distribution() is None else active_distribution().evaluate_loop  # hook
        logs = run(self._dispatching("evaluate"), data, targets, _batch_size(batch_size),
                   verbose=_verbosity(verbose))
        if return_dict:
            return logs
        values = [logs[name] for name in self.metrics_names]
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size=None, verbose="auto", steps=None):
        """The model's outputs for ``x`` (inference mode), as one array (a list for several outputs); ``x`` may be a
        generator yielding input batches."""
        if isinstance(x, collections.abc.Iterator):
            data = Batches(x, steps, lambda batch, number: (self._checked_inputs(
                batch[0] if isinstance(batch, tuple) else batch, f"batch {number} of x"), None))
        else:
            data = self._checked_inputs(x)
        predict = self._step("predict")
        return predict_loop(lambda xb: _outputs(predict(*xb), self._nested[1]), data, _batch_size(batch_size),
                            verbose=_verbosity(verbose))

    # ---- one batch ---------------------------------------------------------------------------
    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        """One training step on one batch; returns the loss (and metrics), as Keras. A NaN or infinite loss or
        state puts the weights and optimizer state back to what they were and raises FloatingPointError."""
        self._require_compiled("train_on_batch")
        xs, ys = self._data(x, y, sample_weight, class_weight)
        before = [v.value for v in self._state()]
        logs = self._dispatching("train")(xs, ys)
        bad = "the loss" if not math.isfinite(logs["loss"]) else next(
            (name for name, value in self.state_arrays() if not np.isfinite(value).all()), None)
        if bad is not None:
            for variable, value in zip(self._state(), before):
                variable.value = value
            raise FloatingPointError(f"{self.name}.train_on_batch: {bad} became NaN or infinite (loss {logs['loss']}); "
                                     f"the weights and optimizer state were put back")
        return _batch_result(logs, return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        """Loss (and metrics) of one batch in inference mode."""
        self._require_compiled("test_on_batch")
        xs, ys = self._data(x, y, sample_weight)
        return _batch_result(self._dispatching("evaluate")(xs, ys), return_dict)

    def predict_on_batch(self, x):
        return _outputs(self._step("predict")(*self._checked_inputs(x)), self._nested[1])

    def __call__(self, x, training=False):
        """The outputs for one batch of arrays (``training=True``: dropout on, batch statistics; no updates)."""
        if any(isinstance(t, KerasTensor) for t in (x if isinstance(x, (list, tuple)) else [x])):
            raise TypeError(f"{self.name}: calling a model on Keras tensors (nesting models) is not supported; "
                            f"call its layers on them instead")
        return _outputs(self._step("forward" if training else "predict")(*self._checked_inputs(x)), self._nested[1])

    def _dispatching(self, kind):
        """A step ``(xs, ys) -> logs`` for the loops: the weighted function when ``ys`` carries sample weights."""
        def step(xs, ys):
            return self._step(kind, weighted=len(ys) > len(self._loss_outputs()))(*xs, *ys)
        return step

    def _dispatching_steps(self):
        """``(xs, ys, index_batches, progress)`` for fit_loop's multi-step hook: the train step run natively over the
        batches of the whole arrays, ending after a non-finite loss."""
        def steps(xs, ys, index_batches, progress):
            step = self._step("train", weighted=len(ys) > len(self._loss_outputs()))
            step.run_steps(index_batches, *xs, *ys, progress=progress)
        return steps

    def _require_compiled(self, what):
        if not self.compiled:
            raise RuntimeError(f"{self.name}: you must call compile() before {what}()")

    # ---- data checking -------------------------------------------------------------------------
    def _by_name(self, data, names, label, where):
        """``data`` as one array per name: an array (one name), a list/tuple in order, or a dict by name."""
        if isinstance(data, dict):
            unknown = set(data) - set(names)
            missing = [n for n in names if n not in data]
            if unknown or missing:
                raise ValueError(f"{self.name}: {where} is a dict with keys {sorted(data)}; expected the names "
                                 f"{names}")
            data = [data[n] for n in names]
        elif not isinstance(data, (list, tuple)):
            data = [data]
        if len(data) != len(names):
            raise ValueError(f"{self.name} has {len(names)} {label} ({', '.join(names)}), got {len(data)} arrays "
                             f"in {where}")
        return [np.asarray(part) for part in data]

    def _checked_inputs(self, x, where="x"):
        """One array per input, each of the input's shape and a numeric dtype."""
        if x is None:
            raise ValueError(f"{self.name}: no input data ({where} is None)")
        self._build_from(x)
        arrays = self._by_name(x, self._input_names(), "inputs", where)
        for k, (array, tensor, name) in enumerate(zip(arrays, self._inputs, self._input_names())):
            label = where if len(arrays) == 1 else f"{where}[{name!r}]"
            if array.dtype.kind not in "biuf":
                raise ValueError(f"{self.name}: {label} must hold numbers, got dtype {array.dtype}")
            if tensor.dtype.startswith("int") and array.dtype.kind == "f":
                if not np.array_equal(array, np.round(array)):
                    raise ValueError(f"{self.name}: input {name!r} takes {tensor.dtype} values (indices), got "
                                     f"{label} with non-integral values")
                arrays[k] = array = array.astype(tensor.dtype)  # as Keras casts
            elif array.dtype.kind == "f" and array.dtype != tensor.dtype:  # once, not at each of fit's epochs
                from graphc.graph.dtypes import feed_problem
                problem = feed_problem(array, tensor.dtype, "input")
                if problem:
                    raise ValueError(f"{self.name}: {label}: {problem}")
                arrays[k] = array = array.astype(tensor.dtype)
            if array.ndim < 1 or array.shape[1:] != tensor.shape[1:]:
                what = "inputs" if len(arrays) == 1 else f"input {name!r}"
                raise ValueError(f"{self.name} expects {what} of shape {tensor.shape}, got {label} of shape "
                                 f"{array.shape}{_shape_hint(array.shape, tensor.shape[1:])}")
        return arrays

    def _build_from(self, x):
        """Hook for Sequential models without an input shape: build from the first data seen."""

    def _data(self, x, y, sample_weight=None, class_weight=None, where=None):
        """(inputs, targets [+ per-sample weights]) as the lists of arrays the functions take, checked."""
        xs = self._checked_inputs(x, "x" if where is None else f"x of {where}")
        self._settings()
        self._require_loss()
        names = [n for n, loss in zip(self._output_names(), self._losses) if loss is not None]
        if y is None:
            raise ValueError(f"{self.name}: no targets ({'y' if where is None else 'y of ' + where} is None)")
        ys = self._by_name(y, names, "outputs with a loss", "y" if where is None else f"y of {where}")
        ys = [self._checked_targets(array, k) for k, array in zip(self._loss_outputs(), ys)]
        for label, array in [("x", xs[0]), *(("y", a) for a in ys)]:
            if len(array) != len(xs[0]):
                raise ValueError(f"{self.name}: x has {len(xs[0])} samples but {label} has {len(array)}; they must "
                                 f"have the same first dimension")
        return xs, self._class_weighted(ys + self._sample_weights(ys, sample_weight, len(xs[0])), class_weight)

    def _loss_outputs(self) -> list:
        return [k for k, loss in enumerate(self._losses) if loss is not None]

    def _checked_targets(self, y, k):
        """Targets for output ``k`` as its loss needs them; ValueError naming the shape that does not fit."""
        loss, output = self._losses[k], self._outputs[k]
        if y.dtype.kind not in "biuf":
            raise ValueError(f"{self.name}: targets must be numbers, got dtype {y.dtype}")
        expected = tuple(output.shape[1:])
        if losses.target_kind(loss) == "sparse":
            return _checked_labels(y, expected[:-1], expected[-1])
        if not _builtin(loss):
            return self._custom_targets(y, k)
        if y.shape[1:] != expected and expected[-1:] == (1,) and y.shape[1:] == expected[:-1]:
            y = y[..., None]  # (n,) targets for a one-unit output, as Keras accepts them
        categorical = _loss_name(loss) in ("categorical_crossentropy", "CategoricalCrossentropy")
        if categorical and y.shape[1:] != expected and y.shape[1:] in ((), (1,)):
            raise ValueError(f"{_loss_name(loss)} expects one-hot targets of shape {(None, *expected)}, got y of "
                             f"shape {y.shape} (class labels?): encode them with "
                             f"graphc.keras.utils.to_categorical(y, {expected[-1]}) or use "
                             f"loss='sparse_categorical_crossentropy'")
        if y.shape[1:] != expected:
            raise ValueError(f"{_loss_name(loss)} expects targets of shape {(None, *expected)} for an output of "
                             f"shape {output.shape}, got y of shape {y.shape}")
        return y.astype(np.float32, copy=False)

    def _custom_targets(self, y, k):
        """A custom loss gets the targets as given: integer labels stay integers (int64), floats float32; the
        first data seen fixes their shape and dtype."""
        spec = (tuple(y.shape[1:]), "int64" if y.dtype.kind in "biu" else "float32")
        self._custom_specs = self._custom_specs or [None] * len(self._outputs)
        if self._custom_specs[k] is None:
            self._custom_specs[k] = spec
        elif self._custom_specs[k] != spec:
            known = self._custom_specs[k]
            raise ValueError(f"{self.name}: the custom loss of output {self._output_names()[k]} was compiled for "
                             f"targets of shape {(None, *known[0])} and dtype {known[1]}, got y of shape {y.shape} "
                             f"and dtype {y.dtype}")
        return y.astype(spec[1], copy=False)

    def _sample_weights(self, ys, sample_weight, samples) -> list:
        """One float32 weight per sample and output with a loss ([] without ``sample_weight``)."""
        if sample_weight is None:
            return []
        sample_weight = np.asarray(sample_weight, dtype=np.float32)
        if sample_weight.shape != (samples,):
            raise ValueError(f"{self.name}: sample_weight must have one weight per sample, shape ({samples},), "
                             f"got {sample_weight.shape}")
        return [sample_weight] * len(ys)

    def _class_weighted(self, ys, class_weight) -> list:
        """The targets ``ys`` followed by each sample's weight from ``class_weight`` ({class: weight}), its class
        being its label; Keras' errors for several outputs and for sample weights given as well."""
        if class_weight is None:
            return ys
        if len(self._loss_outputs()) != 1:
            raise ValueError(f"{self.name}: class_weight is only supported for models with one output")
        if len(ys) > 1:
            raise ValueError(f"{self.name}: class_weight and sample_weight cannot be used at the same time (as in "
                             f"Keras): fold the class weights into sample_weight")
        return [ys[0], _class_weights(class_weight, ys[0])]

    def _batch_check(self, class_weight, label):
        """How fit and evaluate check each batch a generator yields, before its step runs."""
        def check(batch, number):
            where = f"batch {number} of {label}"  # e.g. "x of batch 3 of the generator"
            if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
                raise ValueError(f"{self.name}: {where} must be a tuple (x, y) or (x, y, sample_weight), got "
                                 f"{type(batch).__name__}")
            return self._data(*batch[:2], batch[2] if len(batch) == 3 else None, class_weight, where)
        return check

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
        """The layers and the calls between them (each named by layer and call number), as graphc saves them."""
        tensor_keys = call_keys(self._tensors)
        return {"class_name": "Functional", "name": self.name,
                "layers": [layers_module.serialize(layer) for layer in self.layers],
                "calls": [{"layer": t.layer.name, "inputs": _keyed(t.inputs, tensor_keys)} for t in self._calls],
                "inputs": [tensor_keys[id(t)] for t in self._inputs],
                "outputs": [tensor_keys[id(t)] for t in self._outputs], "nested": list(self._nested)}

    def get_compile_config(self) -> dict:
        """What ``compile`` was given, serialized (as Keras 3's ``get_compile_config``): optimizer, loss(es),
        metrics and loss weights (None when all are 1)."""
        self._settings()  # compile settings given before the model was built are resolved now
        return {"optimizer": optimizers.serialize(self.optimizer), "loss": _serialized_losses(self.loss),
                "metrics": _serialized_metrics(self._metric_identifiers),
                "loss_weights": self._loss_weights if any(w != 1 for w in self._loss_weights) else None,
                "steps_per_execution": self._steps_per_execution}

    def save(self, path):
        """Write the model to ``path``, atomically: ``.keras`` in Keras 3's format (Keras loads it), ``.npz`` in
        graphc's own format (architecture, weights, compile settings and optimizer state; for checkpoints)."""
        suffix = _suffix(path, (".keras", ".npz"))
        if suffix == ".keras":
            from . import saving
            return saving.save_keras(self, path)
        arrays = {f"weight_{i}": w.value for i, w in enumerate(self.weights)}
        meta = {"format": MODEL_FORMAT, "version": 1, "model": self.get_config(), "compile": None}
        if self.compiled:
            meta["compile"] = self.get_compile_config()
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
        """Print the layer table and parameter counts as Keras 3 does (on an 80-column console)."""
        (print_fn or print)(summary.text(self, stack=isinstance(self, Sequential)))


class Sequential(Model):
    """A linear stack of layers, as ``keras.models.Sequential``; the input shape comes from an ``Input`` first
    entry, the first layer's ``input_shape``, or the first data seen."""

    def __init__(self, layers=None, name=None):
        self._init(name or _state.unique_name("Sequential"))
        self._stack, self._input_layer = [], None
        for layer in layers or []:
            self.add(layer)

    def add(self, layer):
        """Append ``layer``; an ``Input`` may only come first and fixes the input shape."""
        if isinstance(layer, (InputLayer, KerasTensor)) and isinstance(getattr(layer, "layer", layer), InputLayer):
            if self._stack or self._input_layer is not None:
                raise ValueError(f"{self.name}: an Input must be the first entry of a Sequential model")
            self._input_layer = getattr(layer, "layer", layer)
        elif not isinstance(layer, layers_module.Layer):
            raise TypeError(f"{self.name}.add expects a layer, got {type(layer).__name__}")
        else:
            if self._input_layer is None and not self._stack and layer.input_shape is not None:
                if isinstance(layer.input_shape, list):
                    raise ValueError(f"{self.name}: layer {layer.name} takes several inputs; use the functional API")
                self._input_layer = InputLayer(layer.input_shape[1:])
            self._stack.append(layer)
        if self._input_layer is not None:
            self._chain()

    def _chain(self):
        tensor = self._input_layer.output
        for layer in self._stack:
            tensor = layer(tensor)
        self._connect(self._input_layer.output, tensor)

    def _build_from(self, x):
        if self._input_layer is None:
            shape = np.shape(x)
            if len(shape) < 2:
                raise ValueError(f"{self.name}: x must have a sample axis and feature axes, got shape {shape}")
            self._input_layer = InputLayer(shape[1:])
            self._chain()

    @property
    def layers(self) -> list:
        return list(self._stack)

    def _input_names(self):
        return ["x"]

    def get_config(self) -> dict:
        return {"name": self.name,
                "input_shape": None if self._input_layer is None else list(self._input_layer.input_shape[1:]),
                "layers": [layers_module.serialize(layer) for layer in self._stack]}

    @classmethod
    def _from_layers(cls, config, layers):
        """The model of ``config`` made of ``layers``, its deserialized (unbuilt) layers."""
        model = cls(name=config["name"])
        if config["input_shape"] is not None:
            model.add(InputLayer(config["input_shape"]))
        for layer in layers:
            model.add(layer)
        return model


def _rebuild_functional(config, layers):
    """The functional model of ``config``, replaying its recorded calls on ``layers`` (deserialized, unbuilt)."""
    by_name = {layer.name: layer for layer in layers}
    tensors, counts = {}, collections.Counter()
    for layer in layers:
        if isinstance(layer, InputLayer):
            tensors[(layer.name, 0)] = layer.output
    for call in config["calls"]:
        layer = by_name[call["layer"]]
        args = call["inputs"]
        tensors[(layer.name, counts[layer.name])] = layer(
            [tensors[tuple(a)] for a in args] if isinstance(args[0], list) else tensors[tuple(args)])
        counts[layer.name] += 1
    nested_inputs, nested_outputs = config["nested"]
    inputs = [tensors[tuple(key)] for key in config["inputs"]]
    outputs = [tensors[tuple(key)] for key in config["outputs"]]
    return Model(inputs if nested_inputs else inputs[0], outputs if nested_outputs else outputs[0],
                 name=config["name"])


def load_model(path, compile=True):
    """The model saved at ``path`` by ``Model.save``: a ``.keras`` file (Keras 3's format, written by graphc or
    Keras) or graphc's own ``.npz``: architecture, weights, and (with ``compile``) its compile settings and
    optimizer state, so that training resumes where it stopped. Any malformed file gives CheckpointError naming
    ``path`` and the part that is wrong."""
    if _suffix(path, (".keras", ".npz")) == ".keras":
        from . import saving
        return saving.load_keras(path, compile=compile)
    arrays, meta = _read(path, (MODEL_FORMAT,))
    with _reading(path, "architecture"):
        config = meta["model"]
        functional = config.get("class_name") == "Functional"
        layers = [layers_module.deserialize(layer) for layer in config["layers"]]
        declared = _weight_shapes(config, layers)
    with _reading(path, "weights"):
        weights = _numbered(arrays, "weight")
        _check_shapes(declared, weights)  # before building: a crafted config may declare far larger weights
    with _reading(path, "architecture"):
        model = _rebuild_functional(config, layers) if functional else Sequential._from_layers(config, layers)
    with _reading(path, "weights"):
        _assign(model.weights, weights)
    with _reading(path, "compile settings"):
        settings = meta["compile"] if compile else None
        if settings is not None:
            model.compile(optimizers.deserialize(settings["optimizer"]), _deserialized_losses(settings["loss"]),
                          settings["metrics"], settings.get("loss_weights"),
                          steps_per_execution=settings.get("steps_per_execution"))
            if model.built:
                for param in model.trainable_weights:  # the optimizer's slots, to be filled below
                    model.optimizer._slots_for(param)
    if settings is not None:
        with _reading(path, "optimizer state"):
            _assign(model.optimizer.variables, _numbered(arrays, "optimizer"))
    return model


# ---- helpers ---------------------------------------------------------------------------------------
def _tensor_list(tensors, label, model_name) -> list:
    tensors = list(tensors) if isinstance(tensors, (list, tuple)) else [tensors]
    if not tensors:
        raise ValueError(f"{model_name}: {label} is empty")
    for t in tensors:
        if not isinstance(t, KerasTensor):
            raise TypeError(f"{model_name}: {label} must be Keras tensors (from keras.Input and layers called on it), "
                            f"got {type(t).__name__}")
    return tensors


def _tensors_between(inputs, outputs, model_name) -> list:
    """The inputs and the layer calls that make ``outputs`` from them, each after the tensors it reads (a
    depth-first walk from the outputs, so the order Keras lists layers in; unused inputs last); ValueError if an
    output needs an Input that is not among ``inputs``."""
    known = {id(t) for t in inputs}
    order, seen = [], set()

    def visit(tensor):
        if id(tensor) in seen:
            return
        if isinstance(tensor.layer, InputLayer) and id(tensor) not in known:
            raise ValueError(f"{model_name}: the outputs depend on the Input {tensor.name} of shape {tensor.shape}, "
                             f"which is not among the model's inputs")
        seen.add(id(tensor))
        for t in as_list(tensor.inputs):
            visit(t)
        order.append(tensor)

    for tensor in outputs + inputs:
        visit(tensor)
    return order


def _keyed(inputs, keys):
    return [keys[id(t)] for t in inputs] if isinstance(inputs, list) else keys[id(inputs)]


def _unique(variables) -> list:
    return list({w.id: w for w in variables}.values())


def _per_output(value, names, label, model_name) -> list:
    """``value`` spread over the outputs ``names``: a dict by name, a list with one entry per output, or one value
    for every output."""
    if isinstance(value, dict):
        unknown = set(value) - set(names)
        if unknown:
            raise ValueError(f"{model_name}: {label} names unknown outputs {sorted(unknown)}; the outputs are {names}")
        return [value.get(name) for name in names]
    if isinstance(value, (list, tuple)):
        if len(value) != len(names):
            raise ValueError(f"{model_name}: {label} has {len(value)} entries for {len(names)} outputs ({names})")
        return list(value)
    return [value] * len(names)


def _is_batch_source(x, y) -> bool:
    """Whether ``x`` is a generator or iterable of batches (rather than arrays): no ``y``, and not an array."""
    arrays = isinstance(x, (list, tuple)) and all(isinstance(part, np.ndarray) for part in x)
    return (y is None and not arrays and not isinstance(x, (np.ndarray, dict, str))
            and isinstance(x, collections.abc.Iterable))


def _checked_labels(y, expected, classes):
    """Integer class labels for a sparse loss: (n, *expected) or (n, *expected, 1), in range."""
    if y.shape[1:] == (*expected, 1):
        y = y[..., 0]
    if y.shape[1:] != expected:
        raise ValueError(f"sparse_categorical_crossentropy expects integer class labels of shape "
                         f"{(None, *expected)}, got y of shape {y.shape}"
                         + (" (one-hot rows? use loss='categorical_crossentropy')"
                            if y.shape[1:] == (*expected, classes) else ""))
    if y.dtype.kind == "f" and not np.array_equal(y, np.round(y)):
        raise ValueError("sparse_categorical_crossentropy expects integer class labels, got non-integral values")
    if y.size and (y.min() < 0 or y.max() >= classes):
        raise ValueError(f"class labels must be in 0..{classes - 1} for an output of {classes} units, got "
                         f"values from {y.min()} to {y.max()}")
    return y.astype(np.int64)


def _class_weights(class_weight, y):
    """Each sample's weight from ``class_weight`` ({class: weight}), its class being its label (integer labels), the
    argmax of a one-hot row, or 0/1 for one binary unit."""
    if not isinstance(class_weight, dict):
        raise ValueError(f"class_weight must be a dict {{class index: weight}}, got {type(class_weight).__name__}")
    for cls in class_weight:
        if not isinstance(cls, (int, np.integer)) or isinstance(cls, bool):
            raise ValueError(f"class_weight keys must be integer class labels, got {cls!r}")
    if y.ndim == 2 and y.shape[1] > 1:
        labels = y.argmax(axis=1)
    else:
        labels = np.rint(y.reshape(len(y), -1)[:, 0] if y.ndim > 1 else y).astype(np.int64)
    classes, where = np.unique(labels, return_inverse=True)  # a class class_weight leaves out weighs 1, as Keras
    return np.array([class_weight.get(int(c), 1.0) for c in classes], np.float32)[where.reshape(-1)]


def _outputs(values, nested):
    return values if nested or not isinstance(values, list) else values[0]


def _batch_result(logs, return_dict):
    """A one-batch method's result as Keras: the logs, or their values (loss first) -- a number if just the loss."""
    if return_dict:
        return logs
    values = list(logs.values())
    return values[0] if len(values) == 1 else values


def _builtin(loss) -> bool:
    """Whether ``loss`` is one of graphc.keras.losses' functions or classes (not the user's own function)."""
    return (getattr(loss, "__module__", None) or type(loss).__module__) == losses.__name__


def _loss_name(loss) -> str:
    return getattr(loss, "__name__", None) or getattr(loss, "name", None) or type(loss).__name__


def _shape_hint(shape, expected) -> str:
    if len(expected) == 3 and shape[1:] == (expected[2], *expected[:2]):
        return ("; it looks channels-first (NCHW), and graphc's layers take channels-last images: "
                "x.transpose(0, 2, 3, 1)")
    if len(shape) >= 1 and math.prod(shape[1:]) == math.prod(expected):
        return f"; reshape it, e.g. x.reshape(({shape[0]}, {', '.join(map(str, expected))}))"
    return ""


def _suffix(path, supported) -> str:
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in supported:
        raise ValueError(f"{os.fspath(path)}: unsupported model file suffix {suffix!r}; graphc saves "
                         f"{' and '.join(supported)} files ('.keras': Keras 3's format; '.npz': graphc's own)")
    return suffix


def _serialized_losses(loss):
    if isinstance(loss, dict):
        return {name: losses.serialize(losses.get(entry)) for name, entry in loss.items()}
    if isinstance(loss, list):
        return [None if entry is None else losses.serialize(losses.get(entry)) for entry in loss]
    return None if loss is None else losses.serialize(loss)


def _deserialized_losses(config):
    if isinstance(config, dict) and "class_name" not in config:
        return {name: losses.get(entry) for name, entry in config.items()}
    if isinstance(config, list):
        return [None if entry is None else losses.get(entry) for entry in config]
    return None if config is None else losses.get(config)


def _serialized_metrics(metrics):
    def one(metric):
        return metric if isinstance(metric, str) else name_of(metrics_module.METRICS, metric, "metric")
    if isinstance(metrics, dict):
        return {name: [one(m) for m in as_list(entry)] for name, entry in metrics.items()}
    return [[one(m) for m in entry] if isinstance(entry, (list, tuple)) else one(entry) for entry in metrics or []]


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


def _weight_shapes(config, layers) -> list:
    """(name, shape) of every weight that the unbuilt ``layers`` of a saved model's ``config`` create, in
    ``model.weights`` order, without creating any: the recorded calls replayed on shapes."""
    declared, seen = [], set()

    def call(layer, shape):
        output_shape = layer.compute_output_shape(shape)  # first: it rejects inputs the layer cannot take
        if layer.name not in seen:
            seen.add(layer.name)
            declared.extend((f"{layer.name}/{name}", s) for name, s in layer.weight_shapes(shape).items())
        return output_shape

    if config.get("class_name") != "Functional":
        input_shape = config["input_shape"]
        if input_shape is None and layers and isinstance(layers[0].input_shape, tuple):
            input_shape = layers[0].input_shape[1:]
        shape = None if input_shape is None else (None, *(int(d) for d in input_shape))
        for layer in layers if shape is not None else []:
            shape = call(layer, shape)
        return declared
    by_name = {layer.name: layer for layer in layers}
    shapes = {(layer.name, 0): layer.input_shape for layer in layers if isinstance(layer, InputLayer)}
    counts = collections.Counter()
    for entry in config["calls"]:
        layer, args = by_name[entry["layer"]], entry["inputs"]
        shape = [shapes[tuple(a)] for a in args] if isinstance(args[0], list) else shapes[tuple(args)]
        shapes[(layer.name, counts[layer.name])] = call(layer, shape)
        counts[layer.name] += 1
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


class _NamedStep:
    """A compiled loss-and-metrics function whose call gives ``{name: batch-mean value}``."""

    def __init__(self, function, names):
        self.function, self.names = function, names

    def __call__(self, *arrays):
        return {name: float(value) for name, value in zip(self.names, self.function(*arrays))}

    def run_steps(self, index_batches, *arrays, progress):
        """Function.run_steps over the batches, ending after a non-finite loss; ``progress`` sees ``{name: one value
        per step done}``."""
        self.function.run_steps(index_batches, *arrays, stop_on_non_finite=0,
                                progress=lambda done, values: progress(done, dict(zip(self.names, values))))


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
