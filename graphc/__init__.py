"""graphc: a symbolic computation-graph compiler for deep learning.

Define a graph with placeholders, variables and ops; differentiate it with
``grad``; compile it with ``function``.
"""
from .autodiff import GradientError, grad, hessian, jacobian
from .function import BACKENDS, Function, function
from .graph import Graph, GraphError, Node, dump
from .ops import *  # noqa: F401,F403  (the op functions are the public API)
from .viz import render, to_dot, to_networkx
from .viz.explain import explain

Tensor = Node
