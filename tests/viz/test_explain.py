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
    tensors = {"logits": logits, "h": h, "z": z, "W1": w1, "b1": b1, "W2": w2, "b2": b2}
    grads = dict(zip(tensors, gc.grad(loss, list(tensors.values()))))
    return loss, grads, tensors


def formulas(seed):
    """gc.grad named each gradient after its tensor (dlogits, dh, ...): a formula stops at those names."""
    loss, g, _ = seed
    return {"loss": gc.explain(loss), **{f"d{name}": gc.explain(grad) for name, grad in g.items()}}


def test_the_seed_models_backward_pass_reads_as_the_chain_rule(seed):
    f = formulas(seed)
    assert str(f["loss"]) == "-sum[0](sum[1](y*log_softmax[1](logits)))/batch"
    # softmax(logits) * sum(y) - y: with one-hot y, sum(y) = 1 and this is (softmax(logits) - y) / batch.
    assert str(f["dlogits"]) == "(-y + softmax[1](logits)*sum[1](y))/batch"
    assert str(f["dh"]) == "(dlogits @ W2ᵀ)"
    assert str(f["dz"]) == "[z > 0] ⊙ dh"
    assert str(f["dW1"]) == "(xᵀ @ dz)"
    assert str(f["db1"]) == "sum[0](dz)"
    assert str(f["dW2"]) == "(hᵀ @ dlogits)"
    assert str(f["db2"]) == "sum[0](dlogits)"


def test_without_dh_to_stop_at_dz_shows_it_written_out(seed):
    loss, _, t = seed
    assert str(gc.explain(gc.grad(loss, [t["logits"], t["z"]])[1])) == "[z > 0] ⊙ (dlogits @ W2ᵀ)"


def test_names_given_to_explain_stand_for_more_nodes_or_rename_them(seed):
    _, g, _ = seed
    assert str(gc.explain(g["z"], names={g["h"]: "delta"})) == "[z > 0] ⊙ delta"
    doubled = 2 * g["h"]  # unnamed, and so is its gradient
    unnamed = gc.grad(gc.sum(gc.exp(doubled)), doubled)
    assert not unnamed.named and str(gc.explain(3 * unnamed, names={unnamed: "g"})) == "3*g"


def test_formulas_print_as_latex_and_render_in_jupyter(seed):
    f = formulas(seed)
    assert f["dz"].latex() == r"\left[z > 0\right] \odot dh"
    assert f["dh"].latex() == r"\left(dlogits \, W_{2}^{T}\right)"
    assert f["dlogits"]._repr_latex_().startswith("$\\displaystyle \\frac{")
    assert r"\sum_{1}" in f["dlogits"].latex()


def test_docs_chain_rule_shows_what_explain_prints(seed):
    text = DOC.read_text()
    for name, formula in formulas(seed).items():
        assert f"{name} = {formula}" in text, name
