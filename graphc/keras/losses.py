"""Loss functions as Keras defines them: ``loss(y_true, y_pred)`` gives one value per sample (a graph tensor);
the model takes their mean over the batch."""
import graphc as gc

from ._registry import lookup, name_of


def categorical_crossentropy(y_true, y_pred):
    return gc.categorical_crossentropy(y_true, y_pred)


def sparse_categorical_crossentropy(y_true, y_pred):
    return gc.sparse_categorical_crossentropy(y_true, y_pred)


def binary_crossentropy(y_true, y_pred):
    return gc.binary_crossentropy(y_true, y_pred)


def mean_squared_error(y_true, y_pred):
    return gc.mean_squared_error(y_true, y_pred)


LOSSES = {f.__name__: f for f in (categorical_crossentropy, sparse_categorical_crossentropy,
                                  binary_crossentropy, mean_squared_error)}
ALIASES = {"mse": "mean_squared_error"}


def get(identifier):
    """The loss function for a name (or alias such as 'mse') or a callable ``loss(y_true, y_pred)``."""
    return lookup(LOSSES, identifier, "loss", ALIASES)


def serialize(loss) -> str:
    return name_of(LOSSES, loss, "loss")
