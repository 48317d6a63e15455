"""The seed program (examples/mnist_mlp.py) trained data-parallel by two MPI processes for 5 epochs reaches the
accuracy one process does (issue 15 asks >= 0.978; 0.9801 and 0.9783 measured for seeds 0 and 1). About 15 s."""
import re

import pytest

from graphc.keras.datasets import mnist


def test_the_seed_program_under_two_processes_reaches_its_accuracy(mpiexec):
    try:
        mnist.load_data()
    except RuntimeError as error:
        pytest.skip(f"MNIST is not available here: {error}")
    result = mpiexec(["examples/mnist_mlp.py", "--distributed", "--seed", "0"], 2, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Epoch ") == 5  # rank 0 alone prints
    test_acc = float(re.search(r"^test_acc: (\S+)$", result.stdout, re.MULTILINE).group(1))
    assert test_acc >= 0.978
