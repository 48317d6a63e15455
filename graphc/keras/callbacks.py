"""Keras callbacks: the training runtime's own (``runtime.loop``), under their Keras names."""
from runtime.loop import Callback, EarlyStopping, History, ModelCheckpoint

__all__ = ["Callback", "EarlyStopping", "History", "ModelCheckpoint"]
