"""The IR: nodes with dtypes and symbolic shapes, whole graphs, and their text dump."""
from .graph import Graph, dump, topo_order
from .node import GraphError, Node
