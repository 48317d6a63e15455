"""gc.explain: the seed MLP's backward pass as formulas, the chain rule written out by the compiler."""
from pathlib import Path

import numpy as np
import pytest

import graphc as gc

DOC = Path(__file__).resolve().parents[2] / "docs" / "chain_rule.md"


@pytest.fixture(scope="module")
def seed():
    """The seed MLP with its intermediates named as a tutorial names them, and their gradients."""
    x = gc.placeholder(("batch", 784), name="x")
    y = gc.placeholder(("batch", 10), name="y")
    w1 = gc.variable(np.zeros((784, 512), np.float32), name="W1")
    b1 = gc.variable(np.zeros(512, np.float32), name="b1")
    w2 = gc.variable(np.zeros((512, 10), np.float32), name="W2")
    b2 = gc.variable(np.zeros(10, np.float32), name="b2")
    z = x @ w1 + b1
    z.name = "z"
    h = gc.relu(z)
    h.name = "h"
    logits = h @ w2 + b2
    logits.name = "logits"
    loss = gc.mean(gc.categorical_crossentropy(y, gc.softmax(logits)))
    names = ["logits", "h", "z", "W1", "b1", "W2", "b2"]
    grads = dict(zip(names, gc.grad(loss, [logits, h, z, w1, b1, w2, b2])))
    return loss, grads


def formulas(seed):
    loss, g = seed
    d = {g["logits"]: "dlogits", g["z"]: "dz"}
    return {
        "loss": gc.explain(loss),
        "dlogits": gc.explain(g["logits"]),
        "dh": gc.explain(g["h"], names=d),
        "dz": gc.explain(g["z"], names=d),
        "dW1": gc.explain(g["W1"], names=d),
        "db1": gc.explain(g["b1"], names=d),
        "dW2": gc.explain(g["W2"], names=d),
        "db2": gc.explain(g["b2"], names=d),
    }


def test_the_seed_models_backward_pass_reads_as_the_chain_rule(seed):
    f = formulas(seed)
    assert str(f["loss"]) == "-sum[0](sum[1](y*log_softmax[1](logits)))/batch"
    # softmax(logits) * sum(y) - y: with one-hot y, sum(y) = 1 and this is (softmax(logits) - y) / batch.
    assert str(f["dlogits"]) == "(-y + softmax[1](logits)*sum[1](y))/batch"
    assert str(f["dh"]) == "(dlogits @ W2ᵀ)"
    assert str(f["dz"]) == "[z > 0] ⊙ (dlogits @ W2ᵀ)"
    assert str(f["dW1"]) == "(xᵀ @ dz)"
    assert str(f["db1"]) == "sum[0](dz)"
    assert str(f["dW2"]) == "(hᵀ @ dlogits)"
    assert str(f["db2"]) == "sum[0](dlogits)"


def test_formulas_print_as_latex_and_render_in_jupyter(seed):
    f = formulas(seed)
    assert f["dz"].latex() == r"\left[z > 0\right] \odot \left(dlogits \, W_{2}^{T}\right)"
    assert f["dlogits"]._repr_latex_().startswith("$\\displaystyle \\frac{")
    assert r"\sum_{1}" in f["dlogits"].latex()


def test_docs_chain_rule_shows_what_explain_prints(seed):
    text = DOC.read_text()
    for name, formula in formulas(seed).items():
        assert f"{name} = {formula}" in text, name
