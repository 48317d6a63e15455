"""Transposes that swap the outermost and innermost axes, with axes kept between them ((n, h, w, c) -> (c, h, w, n):
the operand a filter gradient reads), are copied tile by tile (graphc/lower/layout.py): the same values as numpy
for odd sizes, a symbolic batch, 1-3 threads and the AVX2 target."""
import numpy as np
import pytest

import graphc as gc
from graphc.lower.target import avx2_target, host_target

CASES = [((None, 13, 13, 32), (3, 1, 2, 0)), ((None, 1, 7, 3), (3, 1, 2, 0)), ((None, 33, 129), (2, 1, 0)),
         ((None, 5), (1, 0)), ((None, 2, 3, 40), (3, 2, 1, 0))]


@pytest.mark.parametrize("shape, axes", CASES)
def test_tiled_transposes_copy_every_element(shape, axes):
    x = gc.placeholder(shape, "float32")
    y = gc.transpose(x, axes)
    for batch in (1, 7, 64):
        data = np.random.default_rng(batch).standard_normal((batch, *shape[1:])).astype(np.float32)
        for threads, target in [(1, host_target()), (2, host_target()), (3, host_target()), (2, avx2_target())]:
            f = gc.function([x], y, threads=threads, target=target)
            np.testing.assert_array_equal(f(data), data.transpose(axes))


@pytest.mark.parametrize("axes, tiled", [((3, 1, 2, 0), True), ((3, 2, 1, 0), False), ((1, 2, 0, 3), False)])
def test_only_a_swap_of_the_outer_and_inner_axes_is_tiled(axes, tiled):
    """(3, 2, 1, 0) also reverses the kept axes, (1, 2, 0, 3) keeps the channels last: both stay strided maps."""
    x = gc.placeholder((None, 4, 5, 6), "float32")
    f = gc.function([x], gc.transpose(x, axes))
    assert ("tile" in f.program.ir_text) == tiled
