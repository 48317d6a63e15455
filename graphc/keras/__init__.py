"""A Keras-style front end built on graphc's define-then-run API and the training runtime.

The classic Keras MNIST program runs unchanged apart from its imports::

    from graphc.keras.datasets import mnist
    from graphc.keras.utils import to_categorical
    from graphc.keras import models, layers

and the spellings of "Deep Learning with Python" (2nd ed.) work too: ``graphc.keras.Sequential``,
``graphc.keras.Model``, ``graphc.keras.Input``, ``graphc.keras.layers``.
"""
from . import (activations, callbacks, datasets, distribution, initializers, layers, losses, metrics,
               mixed_precision, models, optimizers, regularizers, saving, utils)
from .layers import Input
from .models import Model, Sequential

__all__ = ["Input", "Model", "Sequential", "activations", "callbacks", "datasets", "distribution", "initializers",
           "layers", "losses", "metrics", "mixed_precision", "models", "optimizers", "regularizers", "saving", "utils"]
