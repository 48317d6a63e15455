"""Running the examples on a subset of MNIST, for the tests that check they learn."""
import os
import re
import subprocess
import sys
import types

import pytest

from graphc.keras.datasets import mnist

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def run_example():
    """``run_example(name, *arguments)`` runs examples/<name>.py (skipping the test when MNIST cannot be loaded)
    and returns its stdout and the test accuracy it printed."""
    def run(name, *arguments):
        try:
            mnist.load_data()
        except RuntimeError as error:
            pytest.skip(f"MNIST is not available here: {error}")
        result = subprocess.run([sys.executable, os.path.join(REPO, "examples", f"{name}.py"), *arguments],
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        test_acc = float(re.search(r"^test_acc: (\S+)$", result.stdout, re.MULTILINE).group(1))
        return types.SimpleNamespace(stdout=result.stdout, test_acc=test_acc)
    return run
