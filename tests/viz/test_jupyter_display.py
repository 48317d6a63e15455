"""Jupyter display: tensors and compiled functions as SVG graphs (when Graphviz is installed), tensors as formulas."""
import shutil
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest

import graphc as gc
from graphc.viz import dot as dot_module

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' is not installed")
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def layer():
    x = gc.placeholder(("batch", 3), name="x")
    w = gc.variable(np.ones((3, 2), np.float32), name="W1")
    b = gc.variable(np.zeros(2, np.float32), name="b1")
    h = gc.relu(x @ w + b)
    h.name = "h"
    return x, w, h


def titles(svg_text):
    """The names of the nodes an SVG picture draws (Graphviz titles each node's group with its key)."""
    root = ElementTree.fromstring(svg_text)  # well-formed XML, or this raises
    return {g.find(SVG + "title").text for g in root.iter(SVG + "g") if g.get("class") == "node"}


@needs_dot
def test_a_tensor_and_a_function_display_as_svg_graphs_naming_the_users_tensors(layer):
    x, w, h = layer
    assert titles(h._repr_svg_()) == {"x", "W1", "b1", h.inputs[0].inputs[0].name, h.inputs[0].name, "h"}
    step = gc.function([x], gc.sum(h), updates=[(w, w - 0.1)])
    assert titles(step._repr_svg_()) >= {"x", "W1", "b1", "h"}


def test_without_graphviz_the_svg_is_none_and_jupyter_shows_the_text_repr(layer, monkeypatch):
    monkeypatch.setattr(dot_module.shutil, "which", lambda name: None)
    x, _, h = layer
    assert h._repr_svg_() is None and gc.function([x], h)._repr_svg_() is None
    assert repr(h) == "<elementwise h: float32(batch, 2)>"


def test_a_failing_dot_program_gives_no_svg_either(layer, monkeypatch):
    monkeypatch.setattr(dot_module.shutil, "which", lambda name: "/nonexistent/dot")
    assert layer[2]._repr_svg_() is None


def test_a_tensor_displays_as_its_formula_in_latex(layer):
    h = layer[2]
    latex = h._repr_latex_()
    assert latex.startswith("$\\displaystyle ") and latex.endswith("$")
    assert "\\max" in latex and "x \\, W_{1}" in latex and "b_{1}" in latex
    assert (2 * h)._repr_latex_() == "$\\displaystyle 2 h$"  # a named intermediate is a symbol
