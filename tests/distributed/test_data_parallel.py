"""Keras fit with DataParallel in two MPI processes against one process: global batch 128 over 301 samples (a last
batch of 45, shared 23 + 22), rank 1 starting from other weights and another shuffling seed than rank 0's (both
broadcast)."""
import subprocess
import sys

import numpy as np

from tests.distributed.conftest import HERE


def _single_process(tmp_path, case):
    """What ``case`` saves when run by a plain python (no MPI launcher: one process)."""
    subprocess.run([sys.executable, f"{HERE}/cases.py", case, str(tmp_path)], check=True, timeout=120,
                   capture_output=True)
    return dict(np.load(tmp_path / "rank_0.npz"))


def test_two_processes_train_as_one(mpirun, tmp_path_factory):
    result = mpirun("keras_fit")
    assert result.returncode == 0, result.stderr
    first, second = result.ranks
    single = _single_process(tmp_path_factory.mktemp("single"), "keras_single")
    weights = sorted(k for k in single if k.startswith("weight_"))
    assert len(weights) == 4
    for key in weights + ["history_loss", "history_accuracy", "history_val_loss", "history_val_accuracy",
                          "evaluation"]:
        np.testing.assert_array_equal(first[key], second[key], err_msg=f"{key} differs between the ranks")
        np.testing.assert_allclose(first[key], single[key], rtol=1e-5, atol=1e-6, err_msg=key)
    # The model's four gradients are small (under bucket_allreduces' 1 MiB), so they travel as one message: one
    # reduction of their concatenation, blocking, after the products (tests/distributed/test_overlap_schedule.py
    # plans the overlapping case).
    kernels = list(first["kernels"])
    starts, blocking = ([i for i, k in enumerate(kernels) if k.endswith(end)] for end in ("_start", "_allreduce"))
    products = [i for i, k in enumerate(kernels) if "matmul" in k]
    assert not starts and len(blocking) == 1 and products[-1] < blocking[0], " ".join(map(str, kernels))
    # One process updates the weights in the epilogues of the GEMMs producing their gradients; two processes
    # update them after the reduced gradients' waits.
    assert any(label.startswith("matmul") and "updates" in label for label in single["labels"])
    assert not any("updates" in label for label in first["labels"]), list(first["labels"])
    printed = str(first["printed"])  # only rank 0 prints, the logs over both processes
    assert printed.count("Epoch") == 2 and "val_loss" in printed and str(second["printed"]) == ""
    checkpoints = sorted(p.name for p in result.directory.glob("checkpoint_*"))
    assert checkpoints == ["checkpoint_0.npz"]


def test_one_process_is_unchanged(tmp_path_factory):
    """A DataParallel distribution in one process trains bit for bit as without it."""
    with_distribution = _single_process(tmp_path_factory.mktemp("with"), "keras_fit")
    without = _single_process(tmp_path_factory.mktemp("without"), "keras_single")
    assert int(with_distribution["size"]) == 1
    np.testing.assert_array_equal(with_distribution["kernels"], without["kernels"])
    for key in without:
        if key not in ("printed", "kernels", "labels"):
            np.testing.assert_array_equal(with_distribution[key], without[key], err_msg=key)
