"""Training runtime: loops, callbacks, progress output, checkpoints, atomic writes.

Depends only on numpy, llvmlite (for the object cache) and the standard
library, never on graphc, so the loop can drive any step function.
"""

from .atomic import atomic_path, atomic_write_bytes
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .loop import (
    Callback,
    EarlyStopping,
    History,
    ModelCheckpoint,
    NonFiniteLossError,
    NonFiniteWeightsError,
    evaluate_loop,
    fit_loop,
    predict_loop,
    split_validation,
)
from .progress import ProgressBar, write_epoch_header

__all__ = [
    "Callback", "CheckpointError", "EarlyStopping", "History", "ModelCheckpoint",
    "NonFiniteLossError", "NonFiniteWeightsError", "ProgramError", "ProgressBar", "atomic_path", "atomic_write_bytes",
    "evaluate_loop", "fit_loop", "load_checkpoint", "predict_loop", "save_checkpoint",
    "split_validation", "write_epoch_header",
]


def __getattr__(name):
    """``ProgramError`` imports runtime.native, and with it llvmlite (about 40 MiB), on first use only: the loop,
    checkpoints and atomic writes need neither (PEP 562)."""
    if name == "ProgramError":
        from .native import ProgramError
        return ProgramError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
