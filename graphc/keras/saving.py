"""Keras 3's ``.keras`` model files, written and read by graphc: ``model.save("m.keras")`` gives a file that Keras 3
loads with ``keras.models.load_model``, and ``models.load_model("m.keras")`` reads files Keras 3 wrote, for the
layers graphc has.

The format (Keras' ``saving_lib``) is a zip of three entries:

* ``config.json``: the model as nested ``{"module", "class_name", "config", "registered_name"}`` objects -- a
  Sequential's list of layer configs, or a functional model's layers with their ``inbound_nodes`` (each call's
  input tensors as ``keras_history`` triples [layer name, node index, tensor index]) -- plus ``build_config``
  (input shapes) and ``compile_config`` (optimizer, loss, metrics);
* ``metadata.json``: the Keras version and the date;
* ``model.weights.h5``: ``layers/<key>/vars/0, 1, ...`` per layer, in ``layer.weights`` order, and
  ``optimizer/vars/0, 1, ...``. A layer's ``<key>`` is not its name but its class in snake case, numbered by
  class in the order of ``model.layers`` (dense, dense_1, ...), which for a functional model is Keras' own
  order (by depth from the outputs), computed here as Keras computes it.

The optimizer's variables are Keras': the iteration counter, the learning rate (when it is a number), then the
slots, each group of slots that Keras creates together interleaved parameter by parameter (Adam: momentum and
velocity of the first weight, of the second, ...; then amsgrad's velocity_hat). graphc writes its own optimizer
state in that order when it knows the optimizer's groups (``SLOT_GROUPS``); otherwise it writes weights and compile
settings only, and the optimizer restarts from zero slots (Keras warns that it skipped them).

Keras' objects inside configs (initializers, regularizers, learning-rate schedules, loss objects) map to graphc's
classes of the same names and arguments. Settings that only restate graphc's behaviour (``NEUTRAL``: a float32
dtype policy, channels-last data, no constraints, ...) are dropped when read and not written.

Reading trusts nothing in the file: a damaged or crafted archive gives CheckpointError, every array is checked
against the shape the model declares before any weight is allocated, and a Keras setting graphc cannot honour gives
a ValueError naming the layer, the setting and its value.
"""
import datetime
import inspect
import io
import json
import os
import re
import warnings
import zipfile

from runtime.atomic import atomic_path
from runtime.checkpoint import MAX_DEFLATE_RATIO, MAX_INFLATED_BYTES, CheckpointError

from . import layers as layers_module, losses, metrics as metrics_module, optimizers

CONFIG, METADATA, WEIGHTS = "config.json", "metadata.json", "model.weights.h5"
KERAS_VERSION = "3.15.1"  # the Keras release whose files bench/keras_interop.py checks this module against

# Keras settings that only restate what graphc does: dropped when they hold these values.
NEUTRAL = {"trainable": True, "dtype": "float32", "data_format": "channels_last", "groups": 1, "sparse": False,
           "ragged": False, "optional": False, "kernel_regularizer": None, "bias_regularizer": None,
           "activity_regularizer": None, "kernel_constraint": None, "bias_constraint": None,
           "quantization_config": None, "lora_rank": None, "lora_alpha": None, "seed": None,
           "embeddings_constraint": None, "mask_zero": False, "beta_constraint": None, "gamma_constraint": None,
           "synchronized": False, "renorm": False, "renorm_clipping": None, "renorm_momentum": 0.99,
           # optimizers
           "weight_decay": None, "clipnorm": None, "global_clipnorm": None, "clipvalue": None, "use_ema": False,
           "ema_momentum": 0.99, "ema_overwrite_frequency": None, "loss_scale_factor": None,
           "gradient_accumulation_steps": None,
           # losses and metrics
           "reduction": "sum_over_batch_size", "ignore_class": None, "threshold": 0.5,
           # compile settings (run_eagerly, steps_per_execution and jit_compile change nothing computed)
           "weighted_metrics": None}
COMPILE_IGNORED = ("run_eagerly", "steps_per_execution", "jit_compile")
# Optimizer slots in Keras' order: each tuple is one add_optimizer_variables call (interleaved per parameter).
SLOT_GROUPS = {"SGD": [("momentum",)], "RMSprop": [("velocity",), ("momentum",), ("average_gradient",)],
               "Adam": [("momentum", "velocity"), ("velocity_hat",)], "AdamW": [("momentum", "velocity"),
                                                                                 ("velocity_hat",)],
               "Adagrad": [("accumulator",)], "Adamax": [("momentum", "norm")], "Nadam": [("momentum", "velocity")]}


def _h5py():
    try:
        import h5py
    except ImportError as e:
        raise ImportError("reading and writing Keras .keras files needs h5py: pip install 'graphc[keras]'") from e
    return h5py


def register_keras_serializable(package="Custom", name=None):
    """Decorator registering a custom loss -- a function ``f(y_true, y_pred)`` or a ``losses.Loss`` subclass --
    under Keras' name ``package>name`` (``name``: its ``__name__``), as ``keras.saving.register_keras_serializable``:
    a model compiled with it saves the loss by that name, and ``load_model`` finds it again (in Keras, register
    the same loss under the same name)."""
    if not all(isinstance(part, str) and ">" not in part for part in [package, *([] if name is None else [name])]):
        raise ValueError(f"register_keras_serializable: package and name must be strings without '>', "
                         f"got package={package!r}, name={name!r}")

    def register(function):
        losses.register(function, f"{package}>{name or function.__name__}")
        return function
    return register


# ---- writing ----------------------------------------------------------------------------------------
def save_keras(model, path):
    """Write ``model`` to ``path`` in Keras 3's ``.keras`` format, atomically (see the module docstring for
    what is kept of the optimizer)."""
    h5py = _h5py()
    from .models import Sequential
    sequential = isinstance(model, Sequential)
    if sequential and model.input_shape is None:
        raise ValueError(f"{model.name}: only a built model can be saved as .keras; give it an Input or call it "
                         f"on data first")
    layers = model.layers if sequential else _keras_order(model.inputs, model.outputs)
    config = _sequential_config(model) if sequential else _functional_config(model, layers)
    if model.compiled:
        config["compile_config"] = _compile_config(model)
    weights = io.BytesIO()
    with h5py.File(weights, "w") as store:
        _write_vars(store, layers)
        if model.compiled:
            state = _optimizer_state(model.optimizer, layers)
            if state is not None:
                store.create_group("optimizer")
                _write_group(store["optimizer"], "vars", "optimizer", state)
        _write_group(store, "vars", model.name, [])
    metadata = {"keras_version": KERAS_VERSION, "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
                "saved_by": "graphc"}
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w") as archive:
        archive.writestr(METADATA, json.dumps(metadata))
        archive.writestr(CONFIG, json.dumps(config))
        archive.writestr(WEIGHTS, weights.getvalue())


def _write_vars(store, layers):
    """``layers/<key>/vars/0, 1, ...``: each layer's weights under its Keras key."""
    parent = store.create_group("layers")
    for layer, key in zip(layers, _keys([type(layer).__name__ for layer in layers])):
        _write_group(parent.create_group(key), "vars", layer.name, layer.weights)


def _write_group(parent, group, name, variables):
    vars_group = parent.create_group(group)
    vars_group.attrs["name"] = name
    for i, variable in enumerate(variables):
        vars_group.create_dataset(str(i), data=variable.value)


def _entry(module, serialized, **extra):
    """A Keras object entry for graphc's ``{"class_name", "config"}``."""
    return {"module": module, "class_name": serialized["class_name"], "config": serialized["config"],
            "registered_name": None, **extra}


def _layer_entry(layer, input_shape, **extra):
    serialized = layers_module.serialize(layer)  # ValueError for a layer Keras does not have
    serialized["config"].pop("input_shape", None)  # build_config and the InputLayer say it
    return _entry("keras.layers", serialized, build_config={"input_shape": _json_shape(input_shape)}, **extra)


def _input_entry(layer_name, shape, dtype, **extra):
    return {"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
            "config": {"batch_shape": _json_shape(shape), "dtype": dtype, "name": layer_name}, **extra}


def _json_shape(shape):
    return [_json_shape(s) for s in shape] if isinstance(shape, list) else list(shape)


def _sequential_config(model):
    shape, entries = model.input_shape, []
    for layer in model.layers:
        entries.append(_layer_entry(layer, shape))
        shape = layer.output_shape
    first = model.inputs[0]
    config = {"name": model.name, "trainable": True, "build_input_shape": list(model.input_shape),
              "layers": [_input_entry(first.layer.name, first.shape, first.dtype), *entries]}
    return {"module": "keras", "class_name": "Sequential", "config": config, "registered_name": None,
            "build_config": {"input_shape": list(model.input_shape)}}


def _functional_config(model, layers):
    """Keras' functional config: each layer (in Keras' order) with the calls made of it."""
    calls, counts, history = _walk(model.outputs)[0], {}, {}
    for tensor in calls:  # node index: the call's rank among the calls of its layer
        counts[tensor.layer] = counts.get(tensor.layer, -1) + 1
        history[id(tensor)] = [tensor.layer.name, counts[tensor.layer], 0]

    def reference(tensor):
        return {"class_name": "__keras_tensor__", "config": {"shape": list(tensor.shape), "dtype": tensor.dtype,
                                                             "keras_history": history[id(tensor)]}}

    entries = []
    for layer in layers:
        nodes = [t for t in calls if t.layer is layer]
        if isinstance(layer, layers_module.InputLayer):
            entries.append(_input_entry(layer.name, layer.input_shape, layer.dtype, name=layer.name,
                                        inbound_nodes=[]))
            continue
        inbound = [{"args": [[reference(t) for t in node.inputs] if isinstance(node.inputs, list)
                             else reference(node.inputs)], "kwargs": {}} for node in nodes]
        entries.append(_layer_entry(layer, layer.input_shape, name=layer.name, inbound_nodes=inbound))
    inputs, outputs = ([history[id(t)] for t in tensors] for tensors in (model.inputs, model.outputs))
    config = {"name": model.name, "trainable": True, "layers": entries,  # one tensor: its reference alone
              "input_layers": inputs if isinstance(model.input_shape, list) else inputs[0],
              "output_layers": outputs if isinstance(model.output_shape, list) else outputs[0]}
    return {"module": "keras.src.models.functional", "class_name": "Functional", "config": config,
            "registered_name": "Functional", "build_config": {"input_shape": None}}


def _inputs_of(tensor) -> list:
    return tensor.inputs if isinstance(tensor.inputs, list) else [tensor.inputs]


def _walk(outputs):
    """Keras' ``_build_map``: every KerasTensor (one per layer call) that ``outputs`` depend on, inputs first
    (depth-first post-order from each output in turn), and each layer's rank in the order of first visit."""
    order, seen, first_visit = [], set(), {}

    def visit(tensor):
        first_visit.setdefault(tensor.layer, len(first_visit))
        if id(tensor) not in seen:
            seen.add(id(tensor))
            for parent in _inputs_of(tensor):
                visit(parent)
            order.append(tensor)
    for output in outputs:
        visit(output)
    return order, first_visit


def _keras_order(inputs, outputs) -> list:
    """The layers of a functional model in Keras' ``model.layers`` order (``ops.function.map_graph``): by depth
    (distance from the outputs, the largest over a layer's calls) decreasing, ties in order of first visit of the
    depth-first walk from the outputs; inputs no output uses at depth 0, ahead of the outputs' layers."""
    order, first_visit = _walk(outputs)
    node_depth, layer_depth = {}, {}
    for tensor in reversed(order):
        depth = max(node_depth.setdefault(id(tensor), 0), layer_depth.get(tensor.layer, 0))
        layer_depth[tensor.layer] = node_depth[id(tensor)] = depth
        for parent in _inputs_of(tensor):
            node_depth[id(parent)] = max(depth + 1, node_depth.get(id(parent), 0))
    for tensor in inputs:
        if tensor.layer not in layer_depth:
            layer_depth[tensor.layer], first_visit[tensor.layer] = 0, -1
    return sorted(layer_depth, key=lambda layer: (-layer_depth[layer], first_visit[layer]))


def _keys(class_names) -> list:
    """Keras' weight-file keys of a list of layers: the class in snake case, numbered per class (dense, dense_1)."""
    counts, keys = {}, []
    for class_name in class_names:
        base = _snake_case(class_name)
        counts[base] = counts.get(base, -1) + 1
        keys.append(f"{base}_{counts[base]}" if counts[base] else base)
    return keys


def _snake_case(class_name):
    """Keras' ``naming.to_snake_case``: MaxPooling2D -> max_pooling2d, InputLayer -> input_layer."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", re.sub(r"\W+", "", class_name))
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _compile_config(model):
    """Keras' compile_config of a compiled model: optimizer, loss(es), metrics and loss weights."""
    config = model.get_compile_config()
    optimizer = config["optimizer"]
    rate = optimizer["config"].get("learning_rate")
    if isinstance(rate, dict):
        optimizer["config"]["learning_rate"] = _entry("keras.optimizers.schedules", rate)
    return {"optimizer": _entry("keras.optimizers", optimizer), "loss": _per_output(_keras_loss, config["loss"]),
            "metrics": config["metrics"] or None, "loss_weights": config["loss_weights"]}


def _per_output(convert, value):
    """``convert`` applied to a loss entry, or to each of a list of them or a dict of them by output name."""
    if isinstance(value, list):
        return [None if entry is None else convert(entry) for entry in value]
    if isinstance(value, dict) and "class_name" not in value:
        return {name: convert(entry) for name, entry in value.items()}
    return None if value is None else convert(value)


def _keras_loss(serialized):
    """graphc's serialized loss as Keras writes it: a name, a registered function, a loss object entry (of a
    registered class: its registered name apart)."""
    if isinstance(serialized, dict) and ">" in serialized["class_name"]:
        return {"module": None, "class_name": serialized["class_name"].split(">", 1)[1],
                "config": serialized["config"], "registered_name": serialized["class_name"]}
    if isinstance(serialized, dict):
        return _entry("keras.losses", serialized)
    if ">" in serialized:
        return {"module": "builtins", "class_name": "function", "config": serialized, "registered_name": "function"}
    return serialized


def _built_before_slots(optimizer, variable) -> bool:
    """Whether Keras makes ``variable`` with the optimizer, before its slots: the iteration count and the
    learning rate (unless it is a schedule). Keras writes just these for an optimizer that never ran."""
    return variable is optimizer.iterations or variable.name == "learning_rate"


def _optimizer_state(optimizer, layers):
    """The optimizer's variables in Keras' order, or None (with a warning) when graphc cannot order them as
    Keras does."""
    groups = SLOT_GROUPS.get(type(optimizer).__name__, [])
    params = list({id(w): w for layer in layers for w in layer.trainable_weights}.values())
    slots = [optimizer._slots_for(param) for param in params]  # created as zeros if never trained
    known = {name for group in groups for name in group}
    if not set(optimizer.slot_names()) <= known:
        warnings.warn(f"{type(optimizer).__name__}'s slots cannot be written in Keras' order: the .keras file "
                      f"keeps its compile settings but not its state")
        return None
    slot_ids = {id(v) for per_param in slots for v in per_param.values()}
    state = [v for v in optimizer.variables if id(v) not in slot_ids]
    head = [v for v in state if _built_before_slots(optimizer, v)]
    ordered = [per_param[name] for group in groups for per_param in slots for name in group if name in per_param]
    return head + ordered + [v for v in state if v not in head]  # then Nadam's u_product, made after the slots


# ---- reading ----------------------------------------------------------------------------------------
class _Plan:
    """What a Keras config describes, before anything is built: the model's kind and name, its (unbuilt) graphc
    layers by name in the config's order, the calls of the layers in an order that can run them -- (layer, node
    index, input reference or list of them), a reference being Keras' (layer name, node index, tensor index) --
    the references of the model's inputs and outputs, and whether each of these is a single tensor (unwrapped)."""

    def __init__(self, kind, name, layers, calls, inputs, outputs, single=(True, True)):
        self.kind, self.name, self.layers, self.calls = kind, name, layers, calls
        self.inputs, self.outputs, self.single = inputs, outputs, single

    def saved_layers(self) -> list:
        """The layers the weight file lists, in its order (a Sequential's leave out the InputLayer)."""
        return [layer for layer in self.layers.values()
                if not (self.kind == "Sequential" and isinstance(layer, layers_module.InputLayer))]


def load_keras(path, compile=True):
    """The model in the ``.keras`` file at ``path`` (Keras 3's format: a Sequential or functional model of the
    layers graphc has), with its weights and, with ``compile``, its compile settings and optimizer state.

    Built through the public API only: ``Sequential([Input(shape), layer, ...])``, or the functional calls replayed
    on ``Input``'s and ``Model(inputs, outputs)``. ValueError naming any layer or setting graphc does not have;
    CheckpointError for a damaged or crafted file.
    """
    h5py = _h5py()
    from .models import _reading
    config, weights = _read_archive(path)
    with _reading(path, CONFIG):
        plan = _plan(config)
        declared = _declared_weights(plan)
        settings = config.get("compile_config") if compile else None
    layers = plan.saved_layers()
    try:
        with h5py.File(io.BytesIO(weights), "r") as store:
            _check_sizes(store, len(weights))
            arrays = [_read_vars(store, f"layers/{key}/vars", layer.name, declared.get(layer.name, []))
                      for layer, key in zip(layers, _keys([type(layer).__name__ for layer in layers]))]
            state = _read_vars(store, "optimizer/vars", "the optimizer") if settings else []
    except (OSError, KeyError, RuntimeError) as e:  # what h5py raises on a damaged file
        raise CheckpointError(f"{os.fspath(path)}: unreadable {WEIGHTS}: {e}") from e
    model = _build(plan)
    for layer, values in zip(layers, arrays):
        layer.set_weights(values)
    if settings:
        with _reading(path, "compile_config"):
            _compile(model, settings, layers)
        _restore(model.optimizer, layers, state)
    return model


def _read_archive(path):
    """(config dict, weight file bytes) of the .keras zip at ``path``; CheckpointError unless it is one, before
    reading an entry larger than the zip can hold."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such .keras file: {os.fspath(path)}")
    try:
        with zipfile.ZipFile(path) as archive:
            members = {member.filename: member for member in archive.infolist()}
            missing = [name for name in (CONFIG, WEIGHTS) if name not in members]
            if missing:
                raise CheckpointError(f"{os.fspath(path)} is not a Keras .keras file: it has no {' or '.join(missing)}"
                                      f" (entries: {', '.join(members) or 'none'})")
            for name in (CONFIG, WEIGHTS):
                _check_member(members[name], os.path.getsize(path))
            return json.loads(archive.read(CONFIG)), archive.read(WEIGHTS)
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RecursionError, NotImplementedError) as e:
        raise CheckpointError(f"{os.fspath(path)} is not a readable .keras file: {e}") from e


def _check_member(member, file_size):
    """CheckpointError unless the zip entry is stored or deflated and expands to what such an entry can."""
    limit = {zipfile.ZIP_STORED: file_size, zipfile.ZIP_DEFLATED: MAX_DEFLATE_RATIO * member.compress_size}
    if member.compress_type not in limit or member.file_size > min(limit[member.compress_type], MAX_INFLATED_BYTES):
        raise CheckpointError(f"zip entry {member.filename} declares {member.file_size} bytes from "
                              f"{member.compress_size} stored (compression {member.compress_type}): damaged or crafted")


def _plan(config) -> _Plan:
    kind, body = config["class_name"], config["config"]
    if kind not in ("Sequential", "Functional"):
        raise ValueError(f"the .keras file holds a {kind} model; graphc reads Sequential and functional models")
    layers = {}
    for entry in body["layers"]:
        layer = _layer(entry)
        if layer.name in layers:
            raise ValueError(f"the .keras file names two layers {layer.name!r}")
        layers[layer.name] = layer
    if kind == "Sequential":
        return _sequential_plan(body, layers)
    calls = []
    for entry in body["layers"]:
        for node, call in enumerate(entry["inbound_nodes"]):
            if call.get("kwargs") or len(call["args"]) != 1:
                raise ValueError(f"layer {entry['name']!r} is called with arguments graphc's layers do not take: "
                                 f"{call}")
            argument = call["args"][0]
            source = ([_reference(a) for a in argument] if isinstance(argument, list) else _reference(argument))
            calls.append((layers[entry["name"]], node, source))
    (inputs, one_input), (outputs, one_output) = (_references(body[key]) for key in ("input_layers", "output_layers"))
    return _Plan(kind, body["name"], layers, _runnable(calls, inputs), inputs, outputs, (one_input, one_output))


def _references(value):
    """(list of reference tuples, whether the file gave a single reference): a model's inputs or outputs, which
    for a single one it takes or gives unwrapped."""
    single = bool(value) and isinstance(value[0], str)
    return [tuple(ref) for ref in ([value] if single else value)], single


def _sequential_plan(body, layers) -> _Plan:
    """A Sequential as a chain of calls from its InputLayer (or its ``build_input_shape``; with neither it is an
    unbuilt model, without weights)."""
    ordered = list(layers.values())
    first = ordered[0] if ordered and isinstance(ordered[0], layers_module.InputLayer) else None
    rest = ordered[1:] if first else ordered
    if first is None and body.get("build_input_shape"):
        first = layers_module.InputLayer(body["build_input_shape"][1:])
        layers = {first.name: first, **layers}
    source, calls = ((first.name, 0, 0) if first else None), []
    for layer in rest:
        if isinstance(layer, layers_module.InputLayer):
            raise ValueError(f"the Sequential model's InputLayer {layer.name!r} is not its first layer")
        calls.append((layer, 0, source))
        source = (layer.name, 0, 0)
    return _Plan("Sequential", body["name"], layers, calls, [(first.name, 0, 0)] if first else [],
                 [source] if source else [])


def _reference(argument) -> tuple:
    """The (layer name, node index, tensor index) of a ``__keras_tensor__`` argument of a call."""
    if not isinstance(argument, dict) or argument.get("class_name") != "__keras_tensor__":
        raise ValueError(f"a layer call's argument is not a Keras tensor (graphc's layers take tensors only): "
                         f"{argument!r}")
    layer, node, index = argument["config"]["keras_history"]
    if index != 0:
        raise ValueError(f"a call takes output {index} of layer {layer!r}; graphc's layers have one output")
    return str(layer), int(node), 0


def _runnable(calls, inputs) -> list:
    """``calls`` reordered so that each comes after the calls that make its inputs (a shared layer is listed once
    with all its calls, which may need tensors of later layers); ValueError for a call whose inputs nothing makes."""
    made, ordered, pending = set(inputs), [], list(calls)
    while pending:
        ready = [call for call in pending
                 if all(ref in made for ref in (call[2] if isinstance(call[2], list) else [call[2]]))]
        if not ready:
            layer, node, source = pending[0]
            raise ValueError(f"call {node} of layer {layer.name!r} takes {source}, which no layer of the file makes")
        for call in ready:
            made.add((call[0].name, call[1], 0))
        ordered += ready
        pending = [call for call in pending if call not in ready]
    return ordered


def _layer(entry):
    """The unbuilt graphc layer of a Keras layer entry; ValueError for a class or setting graphc does not have."""
    class_name, config = entry["class_name"], dict(entry["config"])
    name = config.get("name")
    if class_name not in layers_module.LAYERS:
        raise ValueError(f"layer {name!r} of the .keras file is a Keras {class_name}, which graphc does not have; "
                         f"graphc reads {', '.join(sorted(layers_module.LAYERS))}")
    cls = layers_module.LAYERS[class_name]
    if class_name == "InputLayer" and "batch_shape" in config:
        config["shape"] = config.pop("batch_shape")[1:]  # graphc's models take any batch size
    kwargs = _arguments(config, cls, f"layer {name!r} ({class_name})")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise ValueError(f"layer {name!r} ({class_name}) of the .keras file: {e}") from e


def _plain(value):
    """A Keras config value as graphc's arguments take it: a dtype policy as its name, any other object
    (initializer, regularizer) as graphc's {class_name, config}."""
    if not isinstance(value, dict) or "class_name" not in value:
        return value
    if value["class_name"] == "DTypePolicy":
        return value["config"]["name"]
    return {"class_name": value["class_name"], "config": value.get("config", {})}


def _declared_weights(plan) -> dict:
    """Layer name -> [(weight name, shape)] that building the plan's layers would create, without creating any:
    what the file's arrays are checked against before a crafted config can make the loader allocate."""
    shapes = {ref: plan.layers[ref[0]].input_shape for ref in plan.inputs}
    declared = {}
    for layer, node, source in plan.calls if plan.inputs else []:  # without inputs: unbuilt, no weights
        shape = [shapes[ref] for ref in source] if isinstance(source, list) else shapes[source]
        if layer.name not in declared:  # a shared layer's weights come from its first call
            declared[layer.name] = [(f"{layer.name}/{weight}", tuple(weight_shape))
                                    for weight, weight_shape in layer.weight_shapes(shape).items()]
        shapes[(layer.name, node, 0)] = layer.compute_output_shape(shape)
    return declared


def _check_sizes(store, limit):
    """CheckpointError if the weight file's datasets declare more bytes than its ``limit`` bytes hold (Keras
    stores them uncompressed): a crafted file, whose reading would allocate them."""
    sizes = []
    store.visititems(lambda name, item: sizes.append(getattr(item, "nbytes", 0)))
    if sum(sizes) > limit:
        raise CheckpointError(f"{WEIGHTS}: its arrays declare {sum(sizes)} bytes, more than its {limit}")


def _read_vars(store, path, owner, expected=None) -> list:
    """The arrays ``path/0, 1, ...`` of the weight file; with ``expected`` [(name, shape)], checked against it
    before any is read."""
    group = store.get(path)
    names = sorted(group.keys(), key=lambda n: (len(n), n)) if group is not None else []
    count = len(names) if expected is None else len(expected)
    if names != [str(i) for i in range(count)]:
        wanted = "variables 0, 1, ..." if expected is None else f"weights {[n for n, _ in expected]}"
        raise CheckpointError(f"{WEIGHTS}: {owner} has {wanted} but the file holds {names or 'none'} at {path}")
    datasets = [group[name] for name in names]
    for i, dataset in enumerate(datasets):
        if not hasattr(dataset, "dtype") or dataset.dtype.kind not in "biuf" or (
                expected is not None and dataset.shape != expected[i][1]):
            wanted = f"{owner} has numbers" if expected is None else f"{expected[i][0]} has shape {expected[i][1]}"
            raise CheckpointError(f"{WEIGHTS}: {wanted}, the file holds {dataset} at {path}/{i}")
    return [dataset[()] for dataset in datasets]


def _build(plan):
    """The graphc model of ``plan``, made with the public API; its layers are the plan's."""
    from .models import Sequential
    if plan.kind == "Sequential":
        first = [plan.layers[plan.inputs[0][0]]] if plan.inputs else []
        return Sequential([*first, *(layer for layer, _, _ in plan.calls)], name=plan.name)
    from .models import Model
    tensors = {ref: plan.layers[ref[0]].output for ref in plan.inputs}
    for layer, node, source in plan.calls:
        inputs = [tensors[ref] for ref in source] if isinstance(source, list) else tensors[source]
        tensors[(layer.name, node, 0)] = layer(inputs)
    inputs, outputs = ([tensors[ref] for ref in refs] for refs in (plan.inputs, plan.outputs))
    return Model(inputs[0] if plan.single[0] else inputs, outputs[0] if plan.single[1] else outputs, name=plan.name)


def _compile(model, settings, layers):
    """Compile ``model`` as ``settings`` (Keras' compile_config) say."""
    for key, value in settings.items():
        if key not in ("optimizer", "loss", "metrics", "loss_weights", *COMPILE_IGNORED) and \
                NEUTRAL.get(key, ...) != value:
            raise ValueError(f"the .keras file's compile settings set {key}={value!r}, which graphc cannot do")
    optimizer = settings["optimizer"]
    if isinstance(optimizer, dict):
        optimizer = {"class_name": optimizer["class_name"],
                     "config": _arguments(optimizer["config"], _graphc_class(optimizers, optimizer["class_name"],
                                                                             "optimizer"), "optimizer")}
    model.compile(optimizer=optimizer, loss=_per_output(_graphc_loss, settings.get("loss")),
                  metrics=_graphc_metrics(settings.get("metrics")), loss_weights=settings.get("loss_weights"))


def _restore(optimizer, layers, values):
    """Give ``optimizer`` the file's variables ``values`` (Keras' order): all of them, or those of an optimizer that
    never ran; for any other number it starts afresh with a warning, as Keras does."""
    expected = _optimizer_state(optimizer, layers)
    if expected is not None and len(values) == sum(_built_before_slots(optimizer, v) for v in expected):
        expected = expected[:len(values)]
    if expected is None or len(values) != len(expected):
        if values and expected is not None:
            warnings.warn(f"the .keras file holds {len(values)} optimizer variables where graphc's "
                          f"{type(optimizer).__name__} has {len(expected)}: the optimizer starts afresh")
        return
    for variable, value in zip(expected, values):
        if value.shape != variable.shape:
            raise CheckpointError(f"{WEIGHTS}: optimizer variable {variable.name} has shape {variable.shape}, the "
                                  f"file holds shape {value.shape}")
    for variable, value in zip(expected, values):
        variable.value = value.astype(variable.dtype)


def _arguments(config, cls, what) -> dict:
    """The entries of the Keras config of ``what`` that the constructor of ``cls`` (its graphc class) takes, as it
    takes them; ValueError for any other entry that is not ``NEUTRAL``."""
    params, kept = _parameters(cls), {}
    for key, value in config.items():
        value = _plain(value)
        if key in params and key != "input_shape":
            kept[key] = value
        elif key != "name" and (key not in NEUTRAL or NEUTRAL[key] != value):
            raise ValueError(f"the .keras file's {what} sets {key}={value!r}, which graphc cannot do")
    return kept


def _parameters(cls) -> set:
    """The keyword arguments ``cls(...)`` takes, following ``**kwargs`` up to the base classes' constructors."""
    names = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            params = inspect.signature(klass.__init__).parameters.values()
            names |= {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)} - {"self"}
            if not any(p.kind == p.VAR_KEYWORD for p in params):
                break
    return names


def _graphc_class(module, class_name, what):
    cls = getattr(module, class_name, None)
    if not inspect.isclass(cls):
        raise ValueError(f"the .keras file's {what} is a Keras {class_name}, which graphc does not have")
    return cls


def _graphc_loss(loss):
    """graphc's loss for Keras' compile_config entry: a name, a registered function or class, or a loss object."""
    if isinstance(loss, str):
        return losses.get(loss)
    if loss.get("class_name") == "function":
        return losses.get(loss["config"])
    if ">" in str(loss.get("registered_name")):  # a registered class takes its own config
        return losses.get({"class_name": loss["registered_name"], "config": loss["config"]})
    return losses.get({"class_name": loss["class_name"],
                       "config": _arguments(loss["config"], _graphc_class(losses, loss["class_name"], "loss"),
                                            "loss")})


def _graphc_metrics(metrics):
    """Keras' metrics entry with each metric as graphc names it: a name as is, a Keras metric object of graphc's
    settings as its class in snake case (BinaryAccuracy -> binary_accuracy); lists and dicts by output kept."""
    if isinstance(metrics, list):
        return [_graphc_metrics(entry) for entry in metrics]
    if not isinstance(metrics, dict):
        return metrics
    if "class_name" not in metrics:
        return {name: _graphc_metrics(entry) for name, entry in metrics.items()}
    name = _snake_case(metrics["class_name"])
    settings = {key: value for key, value in metrics.get("config", {}).items()
                if key != "name" and NEUTRAL.get(key, ...) != value}
    if name not in metrics_module.METRICS or settings:
        raise ValueError(f"the .keras file's metric {metrics['class_name']}{f' {settings}' if settings else ''} is "
                         f"not one graphc has; graphc's metrics: accuracy, {', '.join(metrics_module.METRICS)}")
    return name
