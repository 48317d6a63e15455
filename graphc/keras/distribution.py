"""Keras 3's ``keras.distribution`` on graphc.distributed: data parallelism over MPI processes.

    from graphc.keras import distribution
    distribution.set_distribution(distribution.DataParallel())   # before compile
    model.compile(...); model.fit(x, y, batch_size=128)          # mpiexec -n 4 python train.py

Every process holds the whole model. ``fit`` splits every global batch of ``batch_size`` samples (the order
shuffled from one seed, rank 0's) into near-equal contiguous shares, one per process; the compiled training
step sums each gradient times its share's weight (its samples / the global batch's) over the processes with
``gc.allreduce``, so every process applies the gradient of the global batch's mean loss and the weights stay
the same, bit for bit, on every process (rank 0's at the start: they are broadcast). A last partial batch is
weighted the same way (``train_on_batch`` weighs every process's batch alike). The epoch's logs and
``evaluate``'s results are sample-weighted means over all processes; only rank 0 prints progress and writes
checkpoints. A process that fails (a NaN loss raises in the process that sees it) aborts the whole job
(graphc.distributed). With one process nothing changes.
"""
import numpy as np

import graphc as gc
from graphc import distributed
from runtime.loop import Batches, Callback, ModelCheckpoint, _ArrayBatches, _take, evaluate_loop, fit_loop

_CURRENT = [None]


class DataParallel:
    """Replicate the model on every MPI process and split every batch between them (Keras 3's
    ``DataParallel``, whose devices are here the processes mpiexec started)."""

    def __init__(self):
        # This process's share of the current global batch: what its gradients weigh in the sum (fit sets it
        # for every batch; train_on_batch's batches, one per process, weigh alike).
        self.share = gc.variable(np.float32(1 / distributed.size()), name="data_parallel_share", trainable=False)

    def gradients(self, gradients) -> list:
        """The gradients of the global batch's mean loss, from this process's gradients of its share's mean."""
        return [gc.allreduce(g * self.share, "sum") for g in gradients]

    def fit_loop(self, train_step, x, y, *, batch_size, shuffle, seed, validation, callbacks, verbose, owner,
                 **options):
        """runtime.loop.fit_loop on this process's shares, from rank 0's weights, seed and order."""
        distributed.broadcast_variables(owner._state())
        seed = distributed.broadcast(seed)
        batches = _Shares(self, "x", x, y, batch_size, shuffle, seed)
        if validation is not None:
            validation = _Shares(self, "validation_data", *_pair(validation), batch_size)
        leader = distributed.rank() == 0
        callbacks = [_MeanOverProcesses(batches, validation)] + [
            c for c in callbacks if leader or not isinstance(c, ModelCheckpoint)]
        return fit_loop(train_step, batches, None, batch_size=batch_size, shuffle=shuffle, seed=seed,
                        validation=validation, callbacks=callbacks, verbose=verbose if leader else 0, owner=owner,
                        **options)

    def evaluate_loop(self, eval_step, x, y, batch_size, verbose=1):
        """runtime.loop.evaluate_loop on this process's shares; the results are means over all processes."""
        shares = _Shares(self, "x", x, y, batch_size)
        logs = evaluate_loop(eval_step, shares, None, verbose=verbose if distributed.rank() == 0 else 0)
        return _mean_over_processes(logs, shares.samples)


def set_distribution(value):
    """Make ``value`` (a DataParallel, or None for none) the distribution of the models compiled from now on."""
    if value is not None and not isinstance(value, DataParallel):
        raise TypeError(f"set_distribution expects a DataParallel or None, got {type(value).__name__}")
    _CURRENT[0] = value


def distribution():
    """The distribution set_distribution set (None: none)."""
    return _CURRENT[0]


def active():
    """The distribution in effect: the one set, when more than one process trains; else None."""
    return _CURRENT[0] if _CURRENT[0] is not None and distributed.size() > 1 else None


class _Shares(Batches):
    """This process's share of every batch of ``batch_size`` samples of ``x``, ``y`` (runtime.loop's order: in
    order, or shuffled from (seed, epoch)); sets the distribution's share weight before yielding each. (Not an
    _ArrayBatches, whose batches fit_loop may run many to a native call: each needs its weight set.)"""

    def __init__(self, distribution, where, x, y, batch_size, shuffle=False, seed=None):
        if isinstance(x, Batches):
            raise ValueError(f"data-parallel training splits arrays between the processes; {where} is a generator "
                             f"of batches: give each process its own data and train without a distribution")
        self.distribution, self.whole = distribution, _ArrayBatches(x, y, batch_size, shuffle, seed)
        self.steps, self.samples = self.whole.steps, 0  # samples: this process's in the last epoch

    def epoch(self, epoch):
        processes, rank = distributed.size(), distributed.rank()
        x, y = self.whole.x, self.whole.y
        self.samples = 0
        for index in self.whole.index_batches(epoch):
            if len(index) < processes:
                raise ValueError(f"a batch of {len(index)} samples cannot be split between {processes} processes: "
                                 f"choose a batch_size and a number of samples that leave at least {processes}")
            mine = np.array_split(index, processes)[rank]
            self.distribution.share.value = np.float32(len(mine) / len(index))
            self.samples += len(mine)
            yield _take(x, mine), None if y is None else _take(y, mine), len(mine)


def _pair(validation):
    """validation_data as fit_loop takes it: an (x, y) pair of arrays (a Batches is refused by _Shares)."""
    return (validation, None) if isinstance(validation, Batches) else validation


class _MeanOverProcesses(Callback):
    """Turns each epoch's logs, this process's means, into the means over every process's samples (first among
    the callbacks, so EarlyStopping, checkpoints, History and the progress line see them)."""

    def __init__(self, batches, validation):
        super().__init__()
        self.batches, self.validation = batches, validation

    def on_epoch_end(self, epoch, logs=None):
        validation = self.validation.samples if self.validation is not None else 0
        counts = {name: validation if name.startswith("val_") else self.batches.samples for name in logs}
        logs.update(_mean_over_processes(logs, counts))


def _mean_over_processes(logs, samples) -> dict:
    """Sample-weighted means over the processes of ``logs`` ({name: this process's mean}); ``samples`` is this
    process's sample count, or a count per name."""
    names = sorted(logs)
    counts = np.array([samples[n] if isinstance(samples, dict) else samples for n in names], dtype=np.float64)
    totals = np.array([logs[n] for n in names], dtype=np.float64) * counts
    both = np.concatenate([totals, counts])
    summed = np.empty_like(both)
    distributed.communicator().Allreduce(both, summed)
    return {name: float(total / count) for name, total, count in zip(names, summed[:len(names)], summed[len(names):])}
