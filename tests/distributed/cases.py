"""What each MPI process runs for tests/distributed: ``python cases.py <case> <directory>`` under mpiexec. A case
saves its results as <directory>/rank_<r>.npz; the tests compare the ranks with each other and with numpy."""
import contextlib
import io
import os
import sys

import numpy as np

import graphc as gc
from graphc import distributed
from graphc.lower.target import avx2_target

# (dtype, shape, ops): odd shapes, every reducible dtype; the mean only where it is a float.
ALLREDUCE_CASES = [("float32", (1,), ("sum", "mean")), ("float32", (7,), ("sum", "mean")),
                   ("float32", (129, 3), ("sum", "mean")), ("float64", (7,), ("sum", "mean")),
                   ("int32", (129,), ("sum",)), ("int64", (1,), ("sum",))]
BACKENDS = {"reference": {"backend": "reference"}, "llvm": {}, "avx2": {"target": avx2_target()},
            "threads2": {"threads": 2}}


def allreduce(rank):
    """Values on every backend, and gradients of F = sum over ranks of sum(c_r * allreduce(x_r)**2) with the
    reduction overlapped (start/wait kernels) or blocking, on the reference and the native backend."""
    rng = np.random.default_rng(rank + 10)
    saved, placeholders, arrays, outputs = {}, [], [], {}
    for dtype, shape, ops in ALLREDUCE_CASES:  # one function of every case per backend: few compilations
        arrays.append((rng.standard_normal(shape) * 100).astype(dtype))
        saved[f"x_{dtype}_{shape}"] = arrays[-1]
        placeholders.append(gc.placeholder(shape, dtype))
        outputs.update({f"{op}_{dtype}_{shape}": gc.allreduce(placeholders[-1], op) for op in ops})
    for backend, options in BACKENDS.items():
        values = gc.function(placeholders, outputs, **options)(*arrays)
        saved.update({f"{key}_{backend}": value for key, value in values.items()})
    x = rng.standard_normal(7).astype("float32")
    c = np.float32(rank + 1)
    saved.update(x_grad=x, c_grad=c)
    placeholder = gc.placeholder((7,), "float32")
    for op in ("sum", "mean"):
        (g,) = gc.grad(gc.sum(c * gc.square(gc.allreduce(placeholder, op))), [placeholder])
        for name, options in [("reference", {"backend": "reference"}), ("overlapped", {}),
                              ("blocking", {"optimize": ["overlap_collectives"]})]:
            function = gc.function([placeholder], g, **options)
            saved[f"grad_{op}_{name}"] = function(x)
            if name != "reference":
                saved[f"kernels_{op}_{name}"] = np.array([k.name for k in function.program.schedule.kernels])
    return saved


def keras_fit(rank, data_parallel=True):
    """fit with DataParallel, global batch 128 over 301 samples (the last batch 45: shares of 23 and 22),
    validation data, a checkpoint per rank, progress captured; every rank starts from other weights and another
    seed than rank 0's. Then evaluate on 76 samples."""
    from graphc.keras import callbacks, distribution, layers, models, optimizers
    from graphc.keras.utils import set_random_seed, to_categorical
    rng = np.random.default_rng(123)
    x = rng.standard_normal((377, 10)).astype("float32")
    y = to_categorical(np.argmax(x @ rng.standard_normal((10, 3)), axis=1), 3)
    set_random_seed(rank)
    if data_parallel:
        distribution.set_distribution(distribution.DataParallel())
    model = models.Sequential([layers.Dense(16, activation="relu", input_shape=(10,)),
                               layers.Dense(3, activation="softmax")])
    model.compile(optimizer=optimizers.SGD(learning_rate=0.1), loss="categorical_crossentropy", metrics=["accuracy"])
    checkpoint = callbacks.ModelCheckpoint(os.path.join(sys.argv[2], f"checkpoint_{rank}.npz"), monitor="loss",
                                           save_weights_only=True)
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        history = model.fit(x[:301], y[:301], batch_size=128, epochs=2, validation_data=(x[301:351], y[301:351]),
                            callbacks=[checkpoint], verbose=2)
        evaluation = model.evaluate(x[301:], y[301:], batch_size=32, verbose=0)
    saved = {f"weight_{i}": w for i, w in enumerate(model.get_weights())}
    saved.update({f"history_{name}": np.array(values) for name, values in history.history.items()})
    kernels = model.graphc_function().program.schedule.kernels
    saved.update(evaluation=np.array(evaluation), printed=np.array(output.getvalue()),
                 kernels=np.array([k.name for k in kernels]), labels=np.array([k.label for k in kernels]))
    return saved


def keras_single(rank):
    """The same training in one process, without a distribution: what keras_fit must match."""
    return keras_fit(rank, data_parallel=False)


def failing(rank):
    """Rank 1 fails (an exception or, with FAIL=kill, SIGKILL) while rank 0 waits in a compiled allreduce."""
    x = gc.placeholder((3,), "float32")
    step = gc.function([x], gc.allreduce(x))
    if rank == 1:
        if os.environ.get("FAIL") == "kill":
            os.kill(os.getpid(), 9)
        raise RuntimeError("rank 1 fails on purpose")
    step(np.ones(3, "float32"))
    return {}


def funneled(rank):
    """MPI initialized for calls from the main thread only: graphc refuses it with a clear error."""
    try:
        distributed.init()
    except RuntimeError as error:
        return {"error": np.array(str(error)), "size": 0}  # no size: every call of graphc.distributed refuses
    return {}


if __name__ == "__main__":
    case, directory = sys.argv[1:3]
    if case == "funneled":
        import mpi4py
        mpi4py.rc.thread_level = "funneled"
    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", 0))  # Open MPI's mpiexec (the tests') sets it
    saved = globals()[case](rank)
    if "size" not in saved:
        saved["size"] = distributed.size()
    np.savez(os.path.join(directory, f"rank_{rank}.npz"), **saved)
