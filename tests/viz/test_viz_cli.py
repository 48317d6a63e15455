"""The ``graphc`` command: dump the built-in example and a user's module, and fail clearly on a bad TARGET."""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

import graphc
from graphc import cli
from graphc.cli import main

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(graphc.__file__)))

USER_MODEL = '''
import numpy as np
import graphc as gc

x = gc.placeholder(("batch", 3), name="features")
w = gc.variable(np.ones((3, 2), np.float32), name="weights")
scores = gc.softmax(x @ w)
step = gc.function([x], scores)
not_a_graph = 42


def build():
    return [scores, gc.relu(x)]


def needs_arguments(size):
    return scores


class KerasLikeModel:
    def graphc_function(self):
        return step


class CompiledModel:
    train_function = step


class UncompiledModel:
    train_function = None


keras_like = KerasLikeModel()
compiled = CompiledModel()
uncompiled = UncompiledModel()
'''


@pytest.fixture
def user_model(tmp_path):
    path = tmp_path / "user_model_for_cli.py"
    path.write_text(textwrap.dedent(USER_MODEL))
    return path


def test_example_text_dump_goes_to_stdout(capsys):
    assert main(["dump", "--example", "mnist-mlp", "--stage", "forward"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# stage forward") and out.count("= matmul(") == 2 and "[backward]" not in out
    assert "x = placeholder() : float32(batch, 784)  [input]" in out


def test_example_dot_and_text_files_take_their_format_from_the_suffix(tmp_path, capsys):
    assert main(["dump", "--example", "mnist-mlp", "--stage", "kernels", "-o", str(tmp_path / "step.dot")]) == 0
    assert main(["dump", "--example", "mnist-mlp", "-o", str(tmp_path / "step.txt")]) == 0
    assert (tmp_path / "step.dot").read_text().startswith('digraph "graphc kernels"')
    assert (tmp_path / "step.txt").read_text().startswith("# stage autodiff")
    assert capsys.readouterr().out == ""


@needs_dot
def test_example_svg(tmp_path):
    path = tmp_path / "step.svg"
    assert main(["dump", "--example", "mnist-mlp", "--stage", "forward", "-o", str(path)]) == 0
    svg = path.read_text()
    assert svg.lstrip().startswith("<?xml") and "<title>W1</title>" in svg and "(batch, 784)" in svg


@needs_dot
def test_user_script_to_svg_and_text(user_model, tmp_path, capsys):
    path = tmp_path / "model.svg"
    assert main(["dump", f"{user_model}:step", "-o", str(path)]) == 0
    assert "<title>features</title>" in path.read_text() and "<title>weights</title>" in path.read_text()
    assert main(["dump", f"{user_model}:step", "--format", "txt"]) == 0
    assert "features = placeholder() : float32(batch, 3)  [input]" in capsys.readouterr().out


def test_user_module_by_name_and_every_kind_of_target(user_model, monkeypatch, capsys):
    monkeypatch.chdir(user_model.parent)
    # A class is a zero-argument callable too: calling it gives the model, whose hook gives the function.
    for attribute in ["step", "scores", "build", "keras_like", "compiled", "KerasLikeModel"]:
        assert main(["dump", f"user_model_for_cli:{attribute}", "--stage", "forward"]) == 0, attribute
        assert "weights = variable()" in capsys.readouterr().out


@pytest.mark.parametrize("target, message", [
    ("no_such_module_graphc:step", "no module named 'no_such_module_graphc'"),
    ("{dir}/missing.py:step", "no such file: "),
    ("{model}:missing", "has no attribute 'missing'"),
    ("{model}:not_a_graph", ":not_a_graph is a int: expected a tensor"),
    ("{model}:needs_arguments", "is a callable that needs arguments"),
    ("{model}:uncompiled", "train_function is None: compile the model"),
    ("model_without_attribute", "TARGET must be MODULE:ATTRIBUTE"),
])
def test_bad_target_is_one_line_and_exit_status_2(user_model, capsys, target, message):
    target = target.format(dir=user_model.parent, model=user_model)
    assert main(["dump", target]) == 2
    err = capsys.readouterr().err
    assert err.startswith("graphc: error: ") and message in err and err.count("\n") == 1


def test_top_level_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "dump" in out and "profile" in out


def test_usage_errors_exit_2(capsys):
    for argv in (["dump"], ["dump", "--example", "mnist-mlp", "--format", "svg"],
                 ["dump", "x:y", "--example", "mnist-mlp"], ["dump", "--example", "mnist-mlp", "-o", "step.jpeg"],
                 ["profile", "--example", "mnist-mlp", "--repeats", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "give -o FILE" in err and "cannot tell the format from 'step.jpeg'" in err and "positive integer" in err


def test_machine_code_of_the_native_example_lists_every_kernel(tmp_path):
    path = tmp_path / "mlp.ll"
    assert main(["dump", "--example", "mnist-mlp", "--format", "llvm", "-o", str(path)]) == 0
    text = path.read_text()
    assert "==== kernel k0_matmul_relu" in text and "==== kernel program" in text and "define void" in text


def test_profile_prints_a_table_and_writes_the_heat_map(tmp_path, capsys):
    path = tmp_path / "heat.dot"
    assert main(["profile", "--example", "mnist-mlp", "--dim", "batch=4", "--repeats", "1", "-o", str(path)]) == 0
    table = capsys.readouterr().out
    assert table.startswith("# llvm backend") and "matmul" in table and table.splitlines()[-2].startswith("total")
    assert path.read_text().startswith('digraph "graphc kernels"') and 'fillcolor="#ff' in path.read_text()


def run_graphc(*args):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "graphc.cli", *args], capture_output=True, text=True, env=env)


def test_the_command_documents_itself_and_fails_without_a_traceback():
    help_text = run_graphc("dump", "--help")
    assert help_text.returncode == 0
    for word in ("--stage", "--format", "--example", "MODULE:ATTRIBUTE", "graphc_function()", "train_function"):
        assert word in help_text.stdout
    bad = run_graphc("dump", "no_such_module_graphc:x")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and bad.stderr.count("\n") == 1


@pytest.mark.parametrize("usage", [["--dim", "batch"], ["-o", "heat.weird"]])
def test_profile_usage_errors_come_before_any_compiling(usage, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the example was built before the usage was checked")
    monkeypatch.setitem(cli.EXAMPLES, "mnist-mlp", never)
    with pytest.raises(SystemExit) as exit_info:
        main(["profile", "--example", "mnist-mlp", *usage])
    assert exit_info.value.code == 2
