"""None dimensions unify (issue 10): two anonymous dims that meet (broadcasting, matmul, losses) are one
dimension from then on; the function checks the inputs' sizes when it is called, with an error naming both
inputs and their sizes, and one compiled program still serves every batch size. Named dims ("batch" vs
"n") stay a build-time error; None meeting a size binds it to that size."""
import numpy as np
import pytest

import graphc as gc
from graphc.graph.shapes import dim_symbol

BACKENDS = ["reference", "llvm"]


def _rows(n, width, seed=0):
    return np.random.default_rng(seed).standard_normal((n, width)).astype(np.float32)


def test_the_tf1_softmax_cross_entropy_builds_with_two_none_batches():
    x = gc.placeholder((None, 784), name="x")
    y_ = gc.placeholder((None, 10), name="y_")
    w = gc.variable(np.zeros((784, 10), np.float32))
    b = gc.variable(np.zeros(10, np.float32))
    y = gc.softmax(gc.matmul(x, w) + b)
    product = y_ * gc.log(y)  # refused before: "dimension ?0 does not broadcast with ?1"
    assert product.shape == (x.shape[0], 10)
    cross_entropy = gc.mean(-gc.sum(product, axis=1))
    assert cross_entropy.shape == ()
    dw, db = gc.grad(cross_entropy, [w, b])
    assert dw.shape == (784, 10) and db.shape == (10,)


@pytest.mark.parametrize("backend", BACKENDS)
def test_unified_batches_work_for_any_batch_size(backend):
    x = gc.placeholder((None, 3), name="x")
    y = gc.placeholder((None, 3), name="y")
    total = x * y
    f = gc.function([x, y], [total, gc.mean(total), (x[1:] - y[1:]).sum(axis=1)], backend=backend)
    for n in (1, 4, 33, 7):
        a, c = _rows(n, 3, n), _rows(n, 3, n + 1)
        out, mean, diff = f(a, c)
        np.testing.assert_allclose(out, a * c, rtol=1e-6)
        np.testing.assert_allclose(mean, np.mean(a * c), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(diff, (a[1:] - c[1:]).sum(axis=1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_unified_inputs_that_disagree_are_refused_naming_both_inputs_and_sizes(backend):
    x = gc.placeholder((None, 3), name="images")
    y = gc.placeholder((None, 3), name="targets")
    f = gc.function([x, y], x - y, backend=backend)
    with pytest.raises(ValueError, match=r"input targets \(\?\d+, 3\): axis 0 has size 5, but input images has "
                                         r"size 4 on axis 0; they must agree: .* met at .*test_none_dims.py:\d+"):
        f(_rows(4, 3), _rows(5, 3))
    np.testing.assert_allclose(f(_rows(2, 3), _rows(2, 3, 1)), _rows(2, 3) - _rows(2, 3, 1))


def test_the_backend_sees_one_symbol_per_class_of_unified_dims():
    x = gc.placeholder((None, 4), name="x")
    y = gc.placeholder((None, 4), name="y")
    z = gc.placeholder((None,), name="z")
    f = gc.function([x, y, z], [gc.sum(x + y, axis=1) * z])
    symbols = {d for p in f.optimized_graph.inputs for d in p.shape if not isinstance(d, int)}
    assert symbols == {x.shape[0]}
    assert list(f.program.schedule.dims) == [x.shape[0]]
    a, c, e = _rows(6, 4), _rows(6, 4, 1), _rows(1, 6, 2)[0]
    np.testing.assert_allclose(f(a, c, e)[0], (a + c).sum(axis=1) * e, rtol=1e-5)
    assert f.graph.inputs[1] is y  # the user's graph keeps the user's placeholders


@pytest.mark.parametrize("backend", BACKENDS)
def test_none_meeting_a_size_is_bound_to_it_and_checked_when_called(backend):
    x = gc.placeholder((None,), name="x")
    bias = gc.constant(np.arange(10, dtype=np.float32))
    out = x + bias
    assert out.shape == (10,)
    f = gc.function([x], out, backend=backend)
    assert f.optimized_graph.inputs[0].shape == (10,)
    np.testing.assert_allclose(f(np.ones(10, np.float32)), 1 + np.arange(10))
    with pytest.raises(ValueError, match=r"input x \(\?\d+,\): axis 0 has size 7, but it must be 10: its dim \?\d+ "
                                         r"\(None\) met 10 at .*test_none_dims.py:\d+"):
        f(np.ones(7, np.float32))


@pytest.mark.parametrize("backend", BACKENDS)
def test_matmul_unifies_contracted_and_batch_dims(backend):
    a = gc.placeholder((None, 2, None), name="a")
    b = gc.placeholder((None, None, 4), name="b")
    c = a @ b
    assert c.shape == (a.shape[0], 2, 4)
    f = gc.function([a, b], c, backend=backend)
    p, q = np.ones((3, 2, 5), np.float32), np.ones((3, 5, 4), np.float32)
    np.testing.assert_allclose(f(p, q), p @ q)
    with pytest.raises(ValueError, match=r"input b .*: axis 1 has size 6, but input a has size 5 on axis 2"):
        f(p, np.ones((3, 6, 4), np.float32))
    with pytest.raises(ValueError, match=r"input b .*: axis 0 has size 2, but input a has size 3 on axis 0"):
        f(p, np.ones((2, 5, 4), np.float32))


def test_a_none_contracted_dim_is_bound_to_the_weights_size():
    x = gc.placeholder((None, None), name="x")
    w = gc.variable(np.ones((784, 10), np.float32))
    f = gc.function([x], gc.matmul(x, w))
    assert f.optimized_graph.inputs[0].shape[1] == 784
    assert f(np.ones((2, 784), np.float32)).shape == (2, 10)
    with pytest.raises(ValueError, match=r"input x .*: axis 1 has size 700, but it must be 784"):
        f(np.ones((2, 700), np.float32))


@pytest.mark.parametrize("loss", [gc.categorical_crossentropy, gc.mean_squared_error, gc.binary_crossentropy])
def test_losses_unify_the_batch_of_targets_and_predictions(loss):
    x = gc.placeholder((None, 5), name="x")
    y_true = gc.placeholder((None, 5), name="y_true")
    value = loss(y_true, gc.softmax(x))
    assert value.shape == (x.shape[0],)
    f = gc.function([x, y_true], gc.mean(value))
    assert np.isfinite(f(_rows(8, 5), np.full((8, 5), 0.2, np.float32)))
    with pytest.raises(ValueError, match=r"input y_true .* axis 0 has size 9, but input x has size 8 on axis 0"):
        f(_rows(8, 5), np.full((9, 5), 0.2, np.float32))


def test_sparse_labels_unify_with_the_batch_of_the_predictions():
    logits = gc.placeholder((None, 10), name="logits")
    labels = gc.placeholder((None,), "int64", name="labels")
    f = gc.function([logits, labels], gc.sparse_categorical_crossentropy(labels, logits, from_logits=True))
    assert f(_rows(4, 10), np.array([0, 3, 9, 1])).shape == (4,)


def test_labels_of_another_rank_do_not_bind_to_the_classes_axis():
    predictions = gc.softmax(gc.placeholder((None, 10)))
    labels = gc.placeholder((None,))
    with pytest.raises(gc.GraphError, match=r"categorical_crossentropy: y_true shape \(\?\d+,\) does not match"):
        gc.categorical_crossentropy(labels, predictions)
    assert labels.shape[0] != 10 and gc.function([labels], labels * 2.0)(np.ones(3, np.float32)).shape == (3,)


def test_differently_named_dims_stay_a_build_time_error():
    with pytest.raises(gc.GraphError, match="two different symbolic dims: name them alike"):
        gc.placeholder(("batch", 3)) + gc.placeholder(("n", 3))
    with pytest.raises(gc.GraphError, match="does not broadcast"):
        gc.placeholder(("batch", 3)) + gc.placeholder((4, 3))


def test_none_takes_the_name_of_a_named_dim_it_meets_and_keeps_it():
    anonymous = gc.placeholder((None, 3), name="a")
    named = gc.placeholder(("batch", 3), name="b")
    assert (anonymous + named).shape == (dim_symbol("batch"), 3)
    with pytest.raises(gc.GraphError, match=r"dimension \?\d+ \(unified with batch at .*test_none_dims.py:\d+\) "
                                            r"does not broadcast with n"):
        anonymous + gc.placeholder(("n", 3))
    f = gc.function([anonymous, named], anonymous - named)
    assert f.optimized_graph.inputs[0].shape == (dim_symbol("batch"), 3)
    with pytest.raises(ValueError, match=r"input b \(batch, 3\): axis 0 has size 2, but input a has size 1"):
        f(np.ones((1, 3), np.float32), np.ones((2, 3), np.float32))


def test_a_refused_op_unifies_nothing():
    x = gc.placeholder((None, 3), name="x")
    y = gc.placeholder((None, 4), name="y")
    with pytest.raises(gc.GraphError, match="does not broadcast"):
        x + y  # axis 0 would unify, axis 1 refuses the op
    with pytest.raises(gc.GraphError, match="not aligned"):
        gc.matmul(gc.placeholder((None, 3)), gc.placeholder((4, None)))
    f = gc.function([x, y], [x * 2.0, y * 2.0])
    assert [a.shape for a in f(np.ones((2, 3), np.float32), np.ones((5, 4), np.float32))] == [(2, 3), (5, 4)]


def test_a_function_compiled_before_the_dims_met_keeps_them_apart():
    x = gc.placeholder((None,), name="x")
    y = gc.placeholder((None,), name="y")
    before = gc.function([x, y], [x * 2.0, y * 2.0])
    after_meeting = x + y
    assert after_meeting.shape == (x.shape[0],)
    assert [a.shape for a in before(np.ones(2, np.float32), np.ones(3, np.float32))] == [(2,), (3,)]


def test_concatenate_unifies_the_other_axes():
    x = gc.placeholder((None, 3), name="x")
    y = gc.placeholder((None, 2), name="y")
    joined = gc.concatenate([x, y], axis=1)
    assert joined.shape == (x.shape[0], 5)
