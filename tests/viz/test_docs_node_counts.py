"""The docs' figures for the seed step are the code's: the optimizer's node counts."""
import os
import re

import graphc
from graphc.passes import optimize_graph
from graphc.viz.examples import mnist_mlp

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(graphc.__file__)))


def test_the_docs_give_the_seed_steps_true_node_counts():
    """docs/tutorial_stages.md and docs/optimizer.md tell the same counts, and the code agrees."""
    graph = mnist_mlp(optimize=0).graph
    counts = tuple(len([n for n in g.nodes if n.op.kind != "source" and n.op.name != "reshape"])
                   for g in (graph, optimize_graph(graph)))
    for name, pattern in [("tutorial_stages.md", r"(\d+) computing nodes became (\d+)"),
                          ("optimizer.md", r"(\d+) computing nodes before the graph passes, (\d+)\s+after")]:
        with open(os.path.join(REPO_ROOT, "docs", name)) as doc:
            text = " ".join(doc.read().split())
        assert tuple(int(n) for n in re.search(pattern, text).groups()) == counts, name
