"""What a dump shows: one *stage* of a graph (its nodes, their roles and kernels) and its networkx form.

Every dump format (networkx, DOT, text) is built from one ``StageView`` so they
always agree. Stages, from the user's graph down to the machine:

    forward    the nodes the outputs need, without gradient or update nodes
    autodiff   everything the function computes: forward + backward + updates
    optimized  the function's ``optimized_graph`` (the graph after the passes)
    kernels    the optimized graph split into the function's ``kernels``

Hooks for the optimizer and the native backend (see ``backend_hook``): a
Function, or its backend ``program``, may carry ``optimized_graph`` (a
``gc.Graph``) and ``kernels`` (objects with ``.name``, ``.nodes``, ``.inputs``,
``.outputs``); the native program's ``schedule`` serves as both. Without them,
"optimized" is the autodiff graph (the view's ``note`` says so) and "kernels"
has one kernel per computed node.
"""
from dataclasses import dataclass, field

import sympy

from ..graph import Graph, Node, topo_order
from ..graph.shapes import format_shape
from ..ops.expr import arg

STAGES = ("forward", "autodiff", "optimized", "kernels")
ROLES = ("input", "parameter", "constant", "forward", "backward", "update")
SOURCE_ROLES = {"placeholder": "input", "variable": "parameter"}


class DumpError(ValueError):
    """A dump that cannot be made: an object graphc cannot draw, an unknown stage or format, no machine code."""


@dataclass
class Kernel:
    """One compiled kernel: the graph ``nodes`` fused into it, read from ``inputs`` and written to ``outputs``."""

    name: str
    nodes: list
    inputs: list
    outputs: list


@dataclass
class StageView:
    """The nodes one stage shows (in topological order), with each node's role and kernel, keyed by node id."""

    stage: str
    nodes: list
    roles: dict
    outputs: list
    updates: list
    kernels: list = field(default_factory=list)
    note: str = ""

    def kernel_names(self) -> dict:
        """Node id -> the name of the kernel computing it (sources are in none)."""
        return {n.id: k.name for k in self.kernels for n in k.nodes}


def as_graph(obj) -> tuple[Graph, object]:
    """The ``Graph`` ``obj`` stands for and the compiled function carrying stage hooks (or None).

    ``obj``: a Graph, a tensor, a list of tensors, or anything with a ``.graph`` Graph (a gc.Function).
    """
    if isinstance(obj, Graph):
        return obj, None
    if isinstance(getattr(obj, "graph", None), Graph):
        return obj.graph, obj
    outputs = [obj] if isinstance(obj, Node) else list(obj) if isinstance(obj, (list, tuple)) else None
    if not outputs or not all(isinstance(o, Node) for o in outputs):
        raise DumpError(f"cannot dump a {type(obj).__name__}: expected a tensor, a list of tensors, "
                        f"a gc.Graph or a compiled gc.Function")
    placeholders = [n for n in topo_order(outputs) if n.op.name == "placeholder"]
    return Graph(placeholders, outputs), None


def node_roles(graph: Graph) -> dict:
    """Node id -> role (see ROLES) for every node of ``graph``.

    Sources take their kind's role; nodes built by ``gc.grad`` (origin 'backward',
    constants included) are backward; a node that neither the outputs nor the
    backward pass reads is needed only for the updates: update; the rest forward.
    """
    nodes = graph.nodes
    read_by_backward = [inp for n in nodes if n.origin == "backward" for inp in n.inputs]
    needed = {n.id for n in topo_order(list(graph.outputs) + read_by_backward)}
    roles = {}
    for node in nodes:
        if node.op.name in SOURCE_ROLES:
            roles[node.id] = SOURCE_ROLES[node.op.name]
        elif node.origin == "backward":
            roles[node.id] = "backward"
        elif node.op.name == "constant":
            roles[node.id] = "constant"
        else:
            roles[node.id] = "forward" if node.id in needed else "update"
    return roles


def default_kernels(nodes) -> list:
    """One kernel per computed (non-source) node: what the kernels stage shows until the backend fuses."""
    computed = [n for n in nodes if n.op.kind != "source"]
    return [Kernel(f"k{i}_{n.op.display_name(n)}", [n], list(n.inputs), [n]) for i, n in enumerate(computed)]


def backend_hook(function, name):
    """What the optimizer or a backend left for dumps: ``name`` ('optimized_graph' or 'kernels') set on the
    Function or on its backend program, or else taken from the program's ``schedule`` (the native backend's
    plan: its ``graph`` and ``kernels``). None when nothing provides it."""
    program = getattr(function, "program", None)
    schedule = getattr(program, "schedule", None)
    from_schedule = getattr(schedule, "graph" if name == "optimized_graph" else name, None)
    for value in (getattr(function, name, None), getattr(program, name, None), from_schedule):
        if value is not None:
            return value
    return None


def as_kernel(kernel) -> Kernel:
    """A backend's kernel in dump terms: objects with ``.nodes``/``.outputs``, or like the native schedule's
    kernels, one ``.node`` computed into one ``.out`` buffer."""
    nodes = getattr(kernel, "nodes", None)
    outputs = getattr(kernel, "outputs", None)
    return Kernel(kernel.name, list(nodes if nodes is not None else [kernel.node]), list(kernel.inputs),
                  list(outputs if outputs is not None else [kernel.out]))


def stage_view(obj, stage: str = "autodiff") -> StageView:
    """The nodes, roles and kernels that ``stage`` of ``obj`` shows."""
    if stage not in STAGES:
        raise DumpError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    graph, function = as_graph(obj)
    if stage == "forward":
        return forward_view(graph)
    notes = []
    if stage in ("optimized", "kernels"):
        optimized = backend_hook(function, "optimized_graph")
        if optimized is None:
            notes.append("no optimizer has run: the optimized graph is the autodiff graph")
        else:
            graph = optimized
    view = StageView(stage, graph.nodes, node_roles(graph), list(graph.outputs), list(graph.updates))
    if stage in ("optimized", "kernels"):
        kernels = backend_hook(function, "kernels")
        if kernels is None:
            notes.append("no native backend: one kernel per node")
            kernels = default_kernels(view.nodes)
        view.kernels = [as_kernel(k) for k in kernels]
    view.note = "; ".join(notes)
    return view


def forward_view(graph) -> StageView:
    """The forward pass: what the outputs and the backward pass read, without backward or update nodes."""
    roles = node_roles(graph)
    read_by_backward = [inp for n in graph.nodes if roles[n.id] == "backward" for inp in n.inputs]
    nodes = [n for n in topo_order(list(graph.outputs) + read_by_backward) if roles[n.id] not in ("backward", "update")]
    shown = {n.id for n in nodes}
    return StageView("forward", nodes, roles, [o for o in graph.outputs if o.id in shown], [])


def node_keys(nodes) -> dict:
    """Node id -> the key naming it in dumps: its name, made unique with its id when two nodes share a name."""
    counts = {}
    for node in nodes:
        counts[node.name] = counts.get(node.name, 0) + 1
    return {n.id: n.name if counts[n.name] == 1 else f"{n.name}#{n.id}" for n in nodes}


def buffer_name(buffer, keys) -> str:
    """A kernel buffer's name: a graph node's dump key, a buffer's ``.name``, or the key of the node it holds."""
    if isinstance(buffer, Node):
        return keys.get(buffer.id, buffer.name)
    if getattr(buffer, "name", None):
        return buffer.name
    node = getattr(buffer, "node", None)
    return keys.get(node.id, node.name) if isinstance(node, Node) else str(buffer)


def fused_expression(kernel, keys) -> str:
    """What ``kernel`` computes, its nodes' bodies substituted into each other: ``relu_7 = Max(b1 + matmul_5, 0)``.

    Inputs from outside the kernel appear by name; another node appears as ``op(args)``, and a matmul with
    a fused epilogue as its epilogue applied to ``matmul(a, b)``.
    """
    inside = {n.id for n in kernel.nodes}
    exprs = {}
    for node in kernel.nodes:
        args = [exprs[i.id] if i.id in exprs else sympy.Symbol(keys.get(i.id, i.name)) for i in node.inputs]
        exprs[node.id] = _body(node, args)
    consumed = {i.id for n in kernel.nodes for i in n.inputs if i.id in inside}
    results = [n for n in kernel.nodes if n.id not in consumed]
    return "; ".join(f"{keys.get(n.id, n.name)} = {exprs[n.id]}" for n in results)


def _body(node, args):
    if node.op.kind == "elementwise":
        return node.attrs["expr"].xreplace({arg(i): a for i, a in enumerate(args)})
    if "epilogue" in node.attrs:
        product = sympy.Function("matmul")(*args[:2])
        return node.attrs["epilogue"].xreplace({arg(i): a for i, a in enumerate([product, *args[2:]])})
    return sympy.Function(node.op.display_name(node))(*args)


def to_networkx(obj, stage: str = "autodiff"):
    """``obj`` (tensor(s), Graph or Function) at ``stage`` as a networkx DiGraph (MultiDiGraph if an op reads
    one input twice). Nodes are keyed by name; see docs/dumps.md for the node, edge and graph attributes."""
    import networkx as nx  # about 19 MiB: loaded by the dumps that use it, not by every program importing graphc
    view = stage_view(obj, stage)
    keys = node_keys(view.nodes)
    shown = {n.id for n in view.nodes}  # the forward stage leaves out the backward values a node may read
    reads_twice = any(len(n.inputs) != len({i.id for i in n.inputs}) for n in view.nodes)
    g = nx.MultiDiGraph() if reads_twice else nx.DiGraph()
    g.graph.update(stage=view.stage, note=view.note,
                   outputs=[keys[o.id] for o in view.outputs],
                   updates=[(keys[var.id], keys[new.id]) for var, new in view.updates])
    kernel_names = view.kernel_names()
    for node in view.nodes:
        g.add_node(keys[node.id], **_node_attributes(node, view, kernel_names))
    for node in view.nodes:
        for index, inp in enumerate(node.inputs):
            if inp.id in shown:
                g.add_edge(keys[inp.id], keys[node.id], index=index, shape=format_shape(inp.shape), dtype=inp.dtype)
    if view.kernels:
        g.graph["kernels"] = [_kernel_attributes(k, keys) for k in view.kernels]
    return g


def _node_attributes(node, view, kernel_names) -> dict:
    attributes = dict(op=node.op.display_name(node), name=node.name, named=node.named, shape=format_shape(node.shape),
                      dtype=node.dtype, role=view.roles[node.id], kind=node.op.kind,
                      attrs=node.op.describe_attrs(node), location=node.location)
    if view.stage in ("optimized", "kernels"):
        attributes["kernel"] = kernel_names.get(node.id)
    return attributes


def _kernel_attributes(kernel, keys) -> dict:
    return dict(name=kernel.name, nodes=[keys.get(n.id, n.name) for n in kernel.nodes],
                inputs=[buffer_name(b, keys) for b in kernel.inputs],
                outputs=[buffer_name(b, keys) for b in kernel.outputs],
                expression=fused_expression(kernel, keys))
