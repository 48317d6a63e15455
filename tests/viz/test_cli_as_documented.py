"""The ``graphc`` command as docs/dumps.md and the README describe it, tried on what users have at hand."""
import re
import textwrap

import llvmlite.binding as llvm
import pytest

from graphc.cli import main
from graphc.viz.profile import Profile, ProfileRow

MODELS = '''
import numpy as np
import graphc as gc
from graphc.keras import Input, layers, models

x = gc.placeholder(("batch", 3), name="features")
w = gc.variable(np.ones((3, 2), np.float32), name="weights")
step = gc.function([x], gc.softmax(x @ w), updates=[(w, w * 0.5)])

unbuilt = models.Sequential([layers.Dense(2)])
unbuilt.compile(optimizer="sgd", loss="mse")
uncompiled = models.Sequential([Input((3,)), layers.Dense(2)])
unready = models.Sequential([layers.Dense(2)])
lossless = models.Sequential([Input((3,)), layers.Dense(2)])
lossless.compile(optimizer="sgd")
'''


@pytest.fixture
def models_file(tmp_path):
    path = tmp_path / "models_for_cli.py"
    path.write_text(textwrap.dedent(MODELS))
    return path


@pytest.mark.parametrize("attribute, message", [
    ("unbuilt", "is a model that is not built, so it has no training step yet: give it an input shape"),
    ("uncompiled", "is a model that is not compiled, so it has no training step yet: compile it"),
    ("unready", "not built and not compiled"),
    ("lossless", r"lossless.graphc_function\(\): .*compile the model with a loss"),
])
def test_a_keras_model_without_a_training_step_is_one_line_and_exit_status_2(models_file, capsys, attribute, message):
    assert main(["dump", f"{models_file}:{attribute}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("graphc: error: ") and err.count("\n") == 1 and re.search(message, err)


def test_an_unknown_dim_name_is_an_error_naming_the_known_ones(models_file, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["profile", f"{models_file}:step", "--dim", "batch=2", "--dim", "batchsize=3", "--repeats", "1"])
    assert exit_info.value.code == 2
    assert "--dim batchsize: no such symbolic dimension in the inputs of " in capsys.readouterr().err


def test_a_dot_ll_file_is_one_module_llvm_parses(models_file, tmp_path):
    path = tmp_path / "kernels.ll"
    assert main(["dump", f"{models_file}:step", "-o", str(path)]) == 0
    text = path.read_text()
    llvm.parse_assembly(text).verify()
    assert "; ==== kernel program\n" in text and re.search(r"; ==== kernel k0_\w+\ndefine ", text)


def test_the_profile_table_columns_fit_the_longest_name_and_op():
    rows = [ProfileRow("k3_dense_1_kernel_update_with_a_long_name", "matmul+dsigmoid/d0+3 updates", 0.00125, 0.5, 1.5),
            ProfileRow("k4_add", "add", 0.00125, 0.5, None)]
    lines = Profile(None, rows, 0.0025, "how", program_seconds=0.002, threads=2).table().splitlines()[1:]
    time_column_end = lines[0].index("time (ms)") + len("time (ms)")
    for line, seconds in zip(lines[1:], ["1.2500", "1.2500", "2.5000", "2.0000"]):
        assert line.index(seconds) + len(seconds) == time_column_end, line
