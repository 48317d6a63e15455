"""The one traversal every pass uses: rebuild a graph bottom-up, letting a rule replace nodes.

Passes are functions ``Graph -> Graph``. Most are a ``rule(node, original) -> Node | None``
handed to ``rebuild``: the rule sees each node with its inputs already rewritten
(``original`` is the node of the input graph it stands for, to look up facts
such as consumer counts) and returns a replacement (or None to keep it). Nodes a rule no longer
references simply fall out of the graph: that is dead-code elimination.
"""
from collections import Counter

from ..graph import Graph
from ..graph.node import origin


def rebuild(graph: Graph, rule, replaced=None) -> Graph:
    """``replaced`` (optional, filled in as the rebuild goes) maps input-graph node ids to their rewrites."""
    replaced = {} if replaced is None else replaced
    known = {n.id for n in graph.nodes}  # and the nodes built so far: a rule's new nodes are the others
    for node in graph.nodes:
        inputs = [replaced[i.id] for i in node.inputs]
        if any(new is not old for new, old in zip(inputs, node.inputs)):
            node_now = node.rebuilt(inputs)
        else:
            node_now = node
        with origin(node.origin):  # what replaces a backward node is backward too
            replacement = rule(node_now, node) if node.inputs else None
        if replacement is not None and node.named and not replacement.named and replacement.id not in known:
            replacement.name = node.name  # the user's name (h, dW1) stays on the value it names
        replaced[node.id] = node_now if replacement is None else replacement
        known.add(replaced[node.id].id)
    return Graph(list(graph.inputs), [replaced[o.id] for o in graph.outputs],
                 [(var, replaced[new.id]) for var, new in graph.updates])


def consumer_counts(graph: Graph) -> Counter:
    """How many times each node's value is read: by other nodes, as an output, or as an update value."""
    counts = Counter()
    for node in graph.nodes:
        for inp in node.inputs:
            counts[inp.id] += 1
    for root in graph.roots:
        counts[root.id] += 1
    return counts
