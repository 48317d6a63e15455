"""Without an MPI launcher graphc.distributed is rank 0 of 1 process and changes nothing."""
import numpy as np
import pytest

import graphc as gc
from graphc import distributed


def test_rank_size_and_identity():
    assert (distributed.rank(), distributed.size(), distributed.init()) == (0, 1, 1)
    assert distributed.communicator() is None
    x = gc.placeholder((None, 7))
    assert gc.allreduce(x) is x and gc.allreduce(x, "mean") is x
    variable = gc.variable(np.arange(3, dtype="float32"))
    distributed.broadcast_variables([variable])
    np.testing.assert_array_equal(variable.value, np.arange(3, dtype="float32"))
    assert distributed.broadcast({"seed": 5}) == {"seed": 5}


def test_shard_is_everything_in_the_global_order():
    data = np.arange(10) * 2
    np.testing.assert_array_equal(distributed.shard(data), data)
    np.testing.assert_array_equal(distributed.shard(7), np.arange(7))
    order = np.random.default_rng([3, 1]).permutation(10)  # fit's epoch order for seed 3, epoch 1
    np.testing.assert_array_equal(distributed.shard(10, seed=3, epoch=1), order)
    np.testing.assert_array_equal(distributed.shard(data, seed=3, epoch=1), data[order])


def test_bad_arguments():
    x = gc.placeholder((3,))
    with pytest.raises(ValueError, match="op must be 'sum' or 'mean', got 'max'"):
        gc.allreduce(x, "max")
    with pytest.raises(ValueError, match=r"mean is taken of float32 or float64 tensors, got int32 n \(at .*test_one"):
        gc.allreduce(gc.placeholder((3,), "int32", name="n"), "mean")
    with pytest.raises(ValueError, match="the sum is taken of float32, float64, int32, int64 tensors, got bool"):
        gc.allreduce(gc.placeholder((3,), "bool"))
    with pytest.raises(ValueError, match="root must be a rank in 0..0, got 1"):
        distributed.broadcast_variables([], root=1)
