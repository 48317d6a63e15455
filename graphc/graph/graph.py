"""Whole graphs: traversal, the (inputs, outputs, updates) bundle a function compiles, and the text dump."""
from dataclasses import dataclass, field

from .node import GraphError, Node
import sympy

from .shapes import canonical_dim, format_shape, shapes_equal


def topo_order(outputs) -> list[Node]:
    """Every node reachable from ``outputs``, each after its inputs (iterative DFS: graphs can be deep)."""
    order, done, stack = [], set(), [(node, False) for node in reversed(list(outputs))]
    while stack:
        node, inputs_done = stack.pop()
        if node.id in done:
            continue
        if inputs_done:
            done.add(node.id)
            order.append(node)
            continue
        stack.append((node, True))
        stack.extend((inp, False) for inp in reversed(node.inputs) if inp.id not in done)
    return order


@dataclass
class Graph:
    """What one compiled function computes: ``outputs`` from ``inputs`` (placeholders), and variable ``updates``.

    ``updates`` is a list of (variable, new value) pairs, all computed from the
    old values and then assigned together.
    """

    inputs: list
    outputs: list
    updates: list = field(default_factory=list)

    def __post_init__(self):
        for inp in self.inputs:
            if not isinstance(inp, Node) or inp.op.name != "placeholder":
                raise GraphError(f"function inputs must be placeholders, got {inp!r}")
        if len({inp.id for inp in self.inputs}) != len(self.inputs):
            raise GraphError("the same placeholder is listed twice among the inputs")
        for var, new in self.updates:
            if not isinstance(var, Node) or var.op.name != "variable":
                raise GraphError(f"updates must assign variables, got {var!r}")
            if not isinstance(new, Node):
                raise GraphError(f"the update of {var.name} must be a graph node, got {type(new).__name__}")
            if not shapes_equal(var.shape, new.shape):
                raise GraphError(f"update of {var.name}: variable shape {format_shape(var.shape)} "
                                 f"but new value shape {format_shape(new.shape)} ({new.location})")
            if var.dtype != new.dtype:
                raise GraphError(f"update of {var.name}: variable is {var.dtype} but new value is {new.dtype} "
                                 f"({new.location})")
        if len({var.id for var, _ in self.updates}) != len(self.updates):
            raise GraphError("a variable is updated twice in one function")
        missing = [n for n in self.nodes if n.op.name == "placeholder" and n.id not in {i.id for i in self.inputs}]
        if missing:
            names = ", ".join(f"{n.name} ({n.location})" for n in missing)
            raise GraphError(f"the outputs depend on placeholders that are not inputs of the function: {names}")

    @property
    def roots(self) -> list:
        """Every node whose value the function must produce: outputs, then update values."""
        return list(self.outputs) + [new for _, new in self.updates]

    @property
    def nodes(self) -> list:
        return topo_order(self.inputs + self.roots)


def substitute_dims(graph: Graph, substitution: dict) -> Graph:
    """``graph`` with the symbolic dims in ``substitution`` (symbol -> dim) replaced everywhere: in the
    placeholders' shapes, and so in every shape computed from them, and in attributes (reshape and
    broadcast targets, slice bounds, elementwise bodies such as mean's division by the batch size).
    ``gc.function`` uses it to give the backend one symbol per class of unified dims."""
    if not substitution:
        return graph
    from ..ops.expr import unevaluated_xreplace

    def dim(value):
        if isinstance(value, sympy.Basic) and value.free_symbols & substitution.keys():
            return canonical_dim(value.xreplace(substitution))
        if isinstance(value, (tuple, list)):
            items = [dim(v) for v in value]
            return value if all(new is old for new, old in zip(items, value)) else type(value)(items)
        return value

    def attr(value):
        if isinstance(value, sympy.Basic):  # a body: substituted without re-simplifying what numpy computes
            if value.free_symbols & substitution.keys():
                return unevaluated_xreplace(value, {k: sympy.sympify(v) for k, v in substitution.items()})
            return value
        return dim(value)

    replaced = {}
    for node in graph.nodes:
        inputs = [replaced[i.id] for i in node.inputs]
        attrs = {key: attr(value) for key, value in node.attrs.items()}
        changed = any(new is not old for new, old in zip(inputs, node.inputs)) or any(
            attrs[key] is not value for key, value in node.attrs.items())
        replaced[node.id] = node.rebuilt(inputs, attrs) if changed else node
    return Graph([replaced[i.id] for i in graph.inputs], [replaced[o.id] for o in graph.outputs],
                 [(var, replaced[new.id]) for var, new in graph.updates])


def describe(node: Node) -> str:
    """One line: ``name = op(inputs) attrs : dtype(shape)``."""
    args = ", ".join(inp.name for inp in node.inputs)
    attrs = node.op.describe_attrs(node)
    attr_text = f" {{{attrs}}}" if attrs else ""
    return f"{node.name} = {node.op.display_name(node)}({args}){attr_text} : {node.dtype}{format_shape(node.shape)}"


def dump(outputs, updates=()) -> str:
    """A readable listing of the graph computing ``outputs`` (and ``updates``), one node per line, inputs first."""
    if isinstance(outputs, Node):
        outputs = [outputs]
    updates = list(updates)
    nodes = topo_order(list(outputs) + [new for _, new in updates])
    lines = [describe(n) for n in nodes]
    if outputs:
        lines.append("return " + ", ".join(n.name for n in outputs))
    lines.extend(f"update {var.name} <- {new.name}" for var, new in updates)
    return "\n".join(lines)
