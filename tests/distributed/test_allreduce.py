"""gc.allreduce in two MPI processes: values against numpy on every backend, gradients against finite
differences of the objective summed over the processes, with and without the overlap_collectives rewrite."""
import numpy as np

from tests.distributed.cases import ALLREDUCE_CASES, BACKENDS


def test_values_and_gradients(mpirun):
    result = mpirun("allreduce")
    assert result.returncode == 0, result.stderr
    ranks = result.ranks
    assert [int(r["size"]) for r in ranks] == [2, 2]
    for dtype, shape, ops in ALLREDUCE_CASES:
        xs = [r[f"x_{dtype}_{shape}"] for r in ranks]
        for op in ops:
            expected = xs[0] + xs[1] if op == "sum" else (xs[0] + xs[1]) * np.asarray(0.5, dtype)
            for backend in BACKENDS:
                for rank in ranks:
                    got = rank[f"{op}_{dtype}_{shape}_{backend}"]
                    assert got.dtype == dtype and got.shape == shape
                    np.testing.assert_array_equal(got, expected, err_msg=f"{op} {dtype} {shape} on {backend}")
    for op, scale in (("sum", 1.0), ("mean", 0.5)):
        numeric = _finite_differences([r["x_grad"] for r in ranks], [r["c_grad"] for r in ranks], scale)
        for rank, expected in zip(ranks, numeric):
            for name in ("reference", "overlapped", "blocking"):
                np.testing.assert_allclose(rank[f"grad_{op}_{name}"], expected, rtol=1e-4, atol=1e-4,
                                           err_msg=f"{op} gradient, {name}")
        # Each reduction's result is needed by the very next kernel: nothing to overlap, both stay blocking.
        overlapped, blocking = (list(ranks[0][f"kernels_{op}_{name}"]) for name in ("overlapped", "blocking"))
        assert overlapped == blocking and sum(k.endswith("_allreduce") for k in blocking) == 2, overlapped


def _finite_differences(xs, cs, scale, step=1e-3):
    """d/dx_r of F(x_0, x_1) = sum_k sum(c_k * (scale * (x_0 + x_1))**2), by central differences in float64."""
    xs = [x.astype(np.float64) for x in xs]

    def objective(values):
        y = scale * (values[0] + values[1])
        return sum(float(c) * np.sum(y ** 2) for c in cs)
    gradients = []
    for r in range(2):
        gradient = np.zeros_like(xs[r])
        for i in range(xs[r].size):
            plus, minus = [x.copy() for x in xs], [x.copy() for x in xs]
            plus[r][i] += step
            minus[r][i] -= step
            gradient[i] = (objective(plus) - objective(minus)) / (2 * step)
        gradients.append(gradient)
    return gradients
