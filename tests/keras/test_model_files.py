"""load_model / load_weights on damaged and crafted files: always CheckpointError naming the file and what is
wrong, never a KeyError, AttributeError or MemoryError from deep inside."""
import copy
import re
import tracemalloc

import numpy as np
import pytest

from graphc.keras import layers, models, optimizers
from runtime.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The arrays and metadata of a small compiled model, as ``Model.save`` writes them."""
    model = models.Sequential([layers.Dense(3, activation="relu", input_shape=(4,)),
                               layers.Dense(2, activation="softmax")])
    model.compile(optimizers.Adam(0.01), "categorical_crossentropy", ["accuracy"])
    path = tmp_path_factory.mktemp("saved") / "model.npz"
    model.save(path)
    return (*load_checkpoint(path), path.read_bytes())


def set_in(meta, keys, value):
    for key in keys[:-1]:
        meta = meta[key]
    meta[keys[-1]] = value


def delete_in(meta, keys):
    for key in keys[:-1]:
        meta = meta[key]
    del meta[keys[-1]]


DENSE = ["model", "layers", 0, "config"]
META_CHANGES = {  # name: (change to the metadata, what the error must say)
    "meta is a list": (lambda meta: [meta], "not a graphc.keras file"),
    "meta is a string": (lambda meta: "model", "not a graphc.keras file"),
    "version 2": (lambda meta: {**meta, "version": 2}, "version 2"),
    "no model key": (lambda meta: delete_in(meta, ["model"]), "invalid architecture: missing 'model'"),
    "model is a list": (lambda meta: set_in(meta, ["model"], []), "invalid architecture"),
    "layers is a string": (lambda meta: set_in(meta, ["model", "layers"], "dense"), "invalid architecture"),
    "layer is a number": (lambda meta: set_in(meta, ["model", "layers", 0], 7), "invalid architecture"),
    "unknown layer class": (lambda meta: set_in(meta, ["model", "layers", 0, "class_name"], "Conv9D"),
                            "unknown layer class 'Conv9D'"),
    "layer without config": (lambda meta: delete_in(meta, DENSE), "invalid architecture: .*missing 1 required positional argument: 'units'"),
    "units is a string": (lambda meta: set_in(meta, DENSE + ["units"], "three"), "units must be a positive"),
    "unknown layer argument": (lambda meta: set_in(meta, DENSE + ["bogus"], 1), "bogus"),
    "unknown activation": (lambda meta: set_in(meta, DENSE + ["activation"], "sparkle"), "sparkle"),
    "input shape of strings": (lambda meta: set_in(meta, ["model", "input_shape"], ["x"]), "invalid architecture"),
    "architecture too large to allocate": (lambda meta: set_in(meta, DENSE + ["units"], 2**50),
                                           r"invalid weights: dense\w*/kernel has shape \(4, 1125899906842624\)"),
    "more units than the weights": (lambda meta: set_in(meta, DENSE + ["units"], 5),
                                    r"invalid weights: dense\w*/kernel has shape"),
    "no compile key": (lambda meta: delete_in(meta, ["compile"]), "missing 'compile'"),
    "compile is a list": (lambda meta: set_in(meta, ["compile"], []), "invalid compile settings"),
    "optimizer is a string": (lambda meta: set_in(meta, ["compile", "optimizer"], "adam"), "invalid compile settings"),
    "unknown optimizer": (lambda meta: set_in(meta, ["compile", "optimizer", "class_name"], "Lion"), "Lion"),
    "learning rate is a string": (lambda meta: set_in(meta, ["compile", "optimizer", "config", "learning_rate"],
                                                      "fast"), "invalid compile settings"),
    "unknown loss": (lambda meta: set_in(meta, ["compile", "loss"], "hinge2"), "unknown loss 'hinge2'"),
    "metrics is a number": (lambda meta: set_in(meta, ["compile", "metrics"], 5), "invalid compile settings"),
}


@pytest.mark.parametrize("change", META_CHANGES)
def test_crafted_metadata_gives_a_checkpoint_error(tmp_path, saved, change):
    arrays, meta, _ = saved
    edit, message = META_CHANGES[change]
    meta = copy.deepcopy(meta)
    meta = edit(meta) or meta
    path = tmp_path / "crafted.npz"
    save_checkpoint(path, arrays, meta)
    with pytest.raises(CheckpointError, match=message) as error:
        models.load_model(path)
    assert str(path) in str(error.value)


HUGE_ARCHITECTURES = {  # name: (change to the metadata, the weight it declares)
    "a Dense layer of 2**26 units": (lambda meta: set_in(meta, DENSE + ["units"], 2**26),
                                     r"kernel has shape \(4, 67108864\)"),
    "a Flatten of a 2**13 x 2**13 input": (
        lambda meta: set_in(meta, ["model"], {**meta["model"], "input_shape": [2**13, 2**13], "layers": [
            {"class_name": "Flatten", "config": {"name": "flatten"}}, *meta["model"]["layers"]]}),
        r"kernel has shape \(67108864, 3\)"),
}


@pytest.mark.parametrize("change", HUGE_ARCHITECTURES)
def test_an_architecture_larger_than_the_files_arrays_is_refused_before_allocating(tmp_path, saved, change):
    """The layers' weights would take GiBs: the shapes the config declares are compared with the file's arrays
    before any layer is built, so loading allocates about what the file holds."""
    arrays, meta, _ = saved
    edit, message = HUGE_ARCHITECTURES[change]
    meta = copy.deepcopy(meta)
    edit(meta)
    path = tmp_path / "crafted.npz"
    save_checkpoint(path, arrays, meta)
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=f"{re.escape(str(path))}: invalid weights: .*{message}, got an"):
            models.load_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"loading allocated {peak} bytes"


ARRAY_CHANGES = {
    "kernel of the wrong shape": (lambda arrays: {**arrays, "weight_0": np.zeros((4, 4), np.float32)},
                                  r"dense\w*/kernel has shape \(4, 3\), got an array of shape \(4, 4\)"),
    "complex kernel": (lambda arrays: {**arrays, "weight_0": np.zeros((4, 3), np.complex64)}, "complex64"),
    "kernel of strings": (lambda arrays: {**arrays, "weight_0": np.full((4, 3), "w")}, "<U1"),
    "a weight missing": (lambda arrays: {k: v for k, v in arrays.items() if k != "weight_1"},
                         "not numbered weight_0 to weight_2: found weight_3"),
    "an extra weight": (lambda arrays: {**arrays, "weight_4": np.zeros(1, np.float32)}, "expected 4 arrays"),
    "optimizer state missing": (lambda arrays: {k: v for k, v in arrays.items() if not k.startswith("optimizer")},
                                "invalid optimizer state: expected 10 arrays"),
    "float iteration counter": (lambda arrays: {**arrays, "optimizer_0": np.array(1.5)}, "iterations"),
}


@pytest.mark.parametrize("change", ARRAY_CHANGES)
def test_weights_that_do_not_fit_the_architecture_give_a_checkpoint_error(tmp_path, saved, change):
    arrays, meta, _ = saved
    edit, message = ARRAY_CHANGES[change]
    path = tmp_path / "crafted.npz"
    save_checkpoint(path, edit(arrays), meta)
    with pytest.raises(CheckpointError, match=message) as error:
        models.load_model(path)
    assert str(path) in str(error.value)


def test_load_weights_from_a_crafted_file_gives_a_checkpoint_error(tmp_path, saved):
    arrays, meta, _ = saved
    model = models.Sequential([layers.Dense(3, activation="relu", input_shape=(4,)), layers.Dense(2)])
    path = tmp_path / "crafted.npz"
    save_checkpoint(path, arrays, [meta])
    with pytest.raises(CheckpointError, match="not a graphc.keras file"):
        model.load_weights(path)
    save_checkpoint(path, {**arrays, "weight_2": np.zeros((3, 3), np.float32)}, meta)
    with pytest.raises(CheckpointError, match="invalid weights: dense_.*/kernel has shape"):
        model.load_weights(path)


def test_truncated_or_flipped_model_files_give_a_checkpoint_error_or_the_same_model(tmp_path, saved):
    arrays, _, data = saved
    path = tmp_path / "damaged.npz"
    damaged = [data[:length] for length in range(0, len(data), 13)]
    damaged += [data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:] for i in range(0, len(data), 11)]
    for contents in damaged:
        path.write_bytes(contents)
        try:
            model = models.load_model(path, compile=False)
        except CheckpointError as e:
            assert str(path) in str(e)
        else:  # a byte the reader ignores (a timestamp, an attribute)
            for weight, original in zip(model.get_weights(), [arrays[f"weight_{i}"] for i in range(4)]):
                np.testing.assert_array_equal(weight, original)
