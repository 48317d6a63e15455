"""Activation functions, by name as Keras spells them: each maps a graph tensor to a graph tensor."""
import graphc as gc

from ._registry import lookup, name_of


def relu(x):
    return gc.relu(x)


def sigmoid(x):
    return gc.sigmoid(x)


def tanh(x):
    return gc.tanh(x)


def softmax(x):
    return gc.softmax(x, -1)


def linear(x):
    return x


ACTIVATIONS = {f.__name__: f for f in (relu, sigmoid, tanh, softmax, linear)}


def get(identifier):
    """The activation function for a name, a callable, or None (linear)."""
    return linear if identifier is None else lookup(ACTIVATIONS, identifier, "activation")


def serialize(activation) -> str:
    return name_of(ACTIVATIONS, activation, "activation")
