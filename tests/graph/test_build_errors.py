"""Bad graphs fail when built, with a GraphError naming the op, the operand shapes and the user's line."""
import os

import pytest

import graphc as gc

HERE = os.path.basename(__file__)
M34 = gc.placeholder((3, 4), "float32")
M54 = gc.placeholder((5, 4), "float32")
M56 = gc.placeholder((5, 6), "float32")
M34_64 = gc.placeholder((3, 4), "float64")
V4_INT = gc.placeholder((4,), "int32")
FLAGS = gc.placeholder((4,), "bool")
BATCH = gc.placeholder(("batch", 4), "float32")

# Each builder is one line: its first line number is where the error must point.
# builder, op named in the message, fragments the message must contain (shapes, reason)
BAD_BUILDS = [
    (lambda: M34 + M54, "add", ["(3, 4) float32", "(5, 4) float32", "does not broadcast"]),
    (lambda: gc.maximum(M34, M56), "maximum", ["(3, 4)", "(5, 6)"]),
    (lambda: M34 * gc.placeholder(("n", 4)), "multiply", ["(3, 4)", "does not broadcast"]),
    (lambda: M34 @ M54, "matmul", ["(3, 4)", "(5, 4)", "not aligned"]),
    (lambda: gc.dot(M34, M56), "dot", ["(3, 4)", "(5, 6)", "not aligned"]),
    (lambda: M34 @ M34_64.T, "matmul", ["(3, 4) float32", "(4, 3) float64", "dtypes differ"]),
    (lambda: gc.matmul(V4_INT, V4_INT), "matmul", ["(1, 4) int32", "needs float operands"]),
    (lambda: gc.reshape(M34, (5, 2)), "reshape", ["(3, 4)", "(5, 2)"]),
    (lambda: gc.reshape(M34, (5, -1)), "reshape", ["(3, 4)", "(5, -1)"]),
    (lambda: gc.reshape(M34, (-1, -1)), "reshape", ["only one dimension may be -1"]),
    (lambda: gc.transpose(M34, (0, 0)), "transpose", ["(3, 4)", "not a permutation"]),
    (lambda: gc.broadcast_to(M34, (4, 4)), "broadcast_to", ["(3, 4)", "cannot broadcast to (4, 4)"]),
    (lambda: gc.concatenate([M34, M56], axis=0), "concatenate", ["(3, 4)", "(5, 6)", "every axis but 0"]),
    (lambda: gc.concatenate([M34, M34_64]), "concatenate", ["float32", "float64", "agree in dtype"]),
    (lambda: gc.squeeze(M34, 0), "squeeze", ["(3, 4)", "length 3, not 1"]),
    (lambda: gc.sum(M34, axis=2), "reduce_sum", ["axis 2 is out of range for shape (3, 4)"]),
    (lambda: gc.mean(M34, axis=(1, 1)), "mean", ["repeated axis"]),
    (lambda: M34[3], "indexing", ["index 3 is out of bounds for axis 0 with size 3"]),
    (lambda: M34[1, 2, 3], "indexing", ["3 indexes for a tensor of shape (3, 4)"]),
    (lambda: M34[..., ...], "indexing", ["only one '...'"]),
    (lambda: M34[:, [0, 1]], "indexing", ["an integer array is supported as the first index only"]),
    (lambda: BATCH[::2], "slicing", ["step on the symbolic axis 0"]),
    (lambda: FLAGS + FLAGS, "add", ["boolean operands need an explicit cast"]),
    (lambda: gc.one_hot(M34, 3), "one_hot", ["(3, 4) float32", "indices must be integers"]),
    (lambda: gc.log_softmax(V4_INT), "log_softmax", ["(4,) int32", "needs a float operand"]),
    (lambda: gc.mean_squared_error(M34, M54), "mean_squared_error", ["(3, 4)", "(5, 4)", "does not match"]),
    (lambda: gc.sparse_categorical_crossentropy(V4_INT, gc.placeholder((4, None))), "sparse_categorical_crossentropy",
     ["static size"]),
]


@pytest.mark.parametrize("build, op, fragments", BAD_BUILDS, ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD_BUILDS)])
def test_bad_build_names_op_shapes_and_line(build, op, fragments):
    with pytest.raises(gc.GraphError) as info:
        build()
    message = str(info.value)
    assert message.startswith(f"{op}:"), message
    for fragment in fragments:
        assert fragment in message, message
    assert f"{HERE}:{build.__code__.co_firstlineno})" in message, message


def test_graph_errors_are_value_errors():
    assert issubclass(gc.GraphError, ValueError)
