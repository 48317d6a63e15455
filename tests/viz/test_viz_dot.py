"""DOT text and rendered pictures: every node and edge is there, parses back, and renders through Graphviz."""
import os
import re
import shutil
import struct
import xml.etree.ElementTree as ElementTree

import pytest

import graphc as gc
from graphc.viz import ROLES, DumpError, render, to_dot, to_networkx
from graphc.viz import dot as dot_module
from graphc.viz.examples import mnist_mlp

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed")


@pytest.fixture(scope="module")
def step():
    return mnist_mlp(hidden=16)


def declared_nodes(text):
    return set(re.findall(r'^\s*"([^"]+)" \[label=', text, re.MULTILINE))


def declared_edges(text):
    return re.findall(r'^\s*"([^"]+)" -> "([^"]+)" \[label="([^"]*)"\];', text, re.MULTILINE)


@pytest.mark.parametrize("stage", ["forward", "autodiff", "kernels"])
def test_dot_declares_every_node_and_edge_with_its_shape(step, stage):
    g, text = to_networkx(step, stage), to_dot(step, stage)
    assert declared_nodes(text) == set(g.nodes)
    assert sorted(declared_edges(text)) == sorted((a, b, d["shape"]) for a, b, d in g.edges(data=True))
    assert text.count("subgraph cluster_") == (len(g.graph["kernels"]) if stage == "kernels" else 0)


def test_the_optimized_stage_is_drawn_without_kernel_clusters(step):
    g, text = to_networkx(step, "optimized"), to_dot(step, "optimized")
    assert g.graph["kernels"] and "subgraph" not in text and declared_nodes(text) == set(g.nodes)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pydot's use of old pyparsing names
def test_dot_parses_back_with_pydot(step):
    pydot = pytest.importorskip("pydot")
    g = to_networkx(step, "kernels")
    (parsed,) = pydot.graph_from_dot_data(to_dot(step, "kernels"))

    def nodes(graph):
        found = {n.get_name().strip('"') for n in graph.get_nodes()} - {"node", "edge", "graph"}
        for sub in graph.get_subgraphs():
            found |= nodes(sub)
        return found

    assert nodes(parsed) == set(g.nodes)
    edges = [(e.get_source().strip('"'), e.get_destination().strip('"')) for e in parsed.get_edges()]
    updates = [(new, var) for var, new in g.graph["updates"]]
    assert sorted(edges) == sorted(list(g.edges()) + updates)


def test_nodes_are_coloured_by_role_and_outputs_and_updates_marked(step):
    text = to_dot(step, "autodiff")
    g = to_networkx(step, "autodiff")
    assert set(dot_module.ROLE_COLORS) == set(ROLES)
    for key, data in g.nodes(data=True):
        (line,) = [l for l in text.splitlines() if l.strip().startswith(f'"{key}" [')]
        assert f'fillcolor="{dot_module.ROLE_COLORS[data["role"]]}"' in line
        assert ("peripheries=2" in line) == (key in g.graph["outputs"])
    for variable, new_value in g.graph["updates"]:
        assert f'"{new_value}" -> "{variable}" [style=dashed' in text
    assert "(batch, 784)" in text and "transpose_a=True" in text and "transpose_a=False" not in text


def test_kernel_clusters_have_short_titles_and_the_fused_expression_as_tooltip(step):
    """Before: the title was the whole fused formula, and the kernels picture 7,437 px wide."""
    text = to_dot(step, "kernels")
    for kernel in to_networkx(step, "kernels").graph["kernels"]:
        assert f'tooltip={dot_module.quote(kernel["expression"])}' in text
        (title,) = re.findall(r'label="(' + re.escape(kernel["name"]) + r'[^"]*)"; tooltip', text)
        assert len(title) <= 80 and "Heaviside" not in title


@needs_dot
@pytest.mark.parametrize("stage", ["forward", "autodiff", "optimized", "kernels"])
def test_every_stage_of_the_seed_mlp_fits_about_2500_pixels(tmp_path, stage):
    path = tmp_path / f"{stage}.png"
    render(mnist_mlp(), str(path), stage=stage)
    width, height = struct.unpack(">II", path.read_bytes()[16:24])  # the PNG header's IHDR
    assert max(width, height) <= 2700, (width, height)


def test_quoting_survives_names_with_quotes_and_backslashes():
    x = gc.placeholder((2,), name='say "hi"\\')
    text = to_dot(gc.relu(x), "forward")
    assert r'"say \"hi\"\\" [label="say \"hi\"\\\nplaceholder' in text


def test_heat_fills_nodes_from_white_to_red(step):
    g = to_networkx(step, "forward")
    hot, cold = list(g.nodes)[:2]
    text = to_dot(step, "forward", heat={hot: 1.0, cold: 0.0})
    assert f'"{hot}" [label=' in text and 'fillcolor="#ff0000"' in text and 'fillcolor="#ffffff"' in text
    first_kernel = to_networkx(step, "kernels").graph["kernels"][0]["name"]
    clusters = to_dot(step, "kernels", heat={first_kernel: 0.5}).split("subgraph cluster_")
    assert 'fillcolor="#ff8080"' in clusters[1].splitlines()[1] and "#ff8080" not in "".join(clusters[2:])


@needs_dot
@pytest.mark.parametrize("stage", ["forward", "kernels"])
def test_render_svg_contains_the_node_names(step, stage, tmp_path):
    path = tmp_path / "step.svg"
    assert render(step, path, stage=stage) == path
    svg = path.read_text()
    ElementTree.fromstring(svg)  # well-formed XML
    for key in to_networkx(step, stage).nodes:
        assert f"<title>{key}</title>" in svg
    assert os.listdir(tmp_path) == ["step.svg"]  # the temporary file was renamed, not left behind


@needs_dot
def test_render_png_and_pdf_by_suffix_or_format(step, tmp_path):
    render(step, tmp_path / "a.png", stage="forward")
    render(step, tmp_path / "b.out", stage="forward", format="pdf")
    assert (tmp_path / "a.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "b.out").read_bytes().startswith(b"%PDF")


def test_render_rejects_an_unknown_format(step, tmp_path):
    with pytest.raises(DumpError, match="'jpeg': formats are svg, png, pdf"):
        render(step, tmp_path / "a.jpeg")
    assert not os.listdir(tmp_path)


def test_render_without_graphviz_says_how_to_install_it(step, tmp_path, monkeypatch):
    monkeypatch.setattr(dot_module.shutil, "which", lambda name: None)
    with pytest.raises(DumpError, match=r"apt-get install graphviz.*brew install graphviz"):
        render(step, tmp_path / "a.svg")
    assert not os.listdir(tmp_path)
