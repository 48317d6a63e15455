"""The optimizer: a list of small graph -> graph passes, run in order, each switchable by name.

``gc.function(..., optimize=...)`` takes a level (0: none, 1: clean-up only, 2: everything, the
default) or a list of pass names to disable, so a wrong answer can be bisected to one pass. The
same levels and names switch the native planner's schedule rewrites (SCHEDULE_PASSES).
After the pipeline, at every level, ``autocast`` marks the products that ``gc.function(..., precision=)``
computes from bfloat16 operands (graphc/passes/autocast.py).
"""
from .collectives import bucket_allreduces
from .cleanup import (eliminate_common_subexpressions, fold_constants, fold_transposes_into_matmul,
                      relu_mask_from_output, simplify, softmax_from_log_softmax, stable_log_softmax)
from .fusion import fold_take_into_matmul, fuse_elementwise, fuse_matmul_epilogue

# (name, level that enables it, pass). Clean-up first, so fusion sees the simplest graph.
PIPELINE = [
    ("cse", 1, eliminate_common_subexpressions),
    ("fold_constants", 1, fold_constants),
    ("simplify", 1, simplify),
    ("fold_transposes", 1, fold_transposes_into_matmul),
    ("stable_log_softmax", 1, stable_log_softmax),
    ("softmax_from_log_softmax", 1, softmax_from_log_softmax),
    ("relu_mask_from_output", 2, relu_mask_from_output),
    ("cse_again", 1, eliminate_common_subexpressions),
    ("bucket_allreduces", 1, bucket_allreduces),
    ("fuse_elementwise", 2, fuse_elementwise),
    ("fuse_matmul_epilogue", 2, fuse_matmul_epilogue),
    ("fold_take_into_matmul", 2, fold_take_into_matmul),
]
# Rewrites of the native backend's kernel schedule rather than of the graph (graphc/lower/program.py),
# switched by the same levels and names.
SCHEDULE_PASSES = [
    ("update_in_place", 1),
    ("fuse_row_wise", 2),
    ("fuse_updates_into_producers", 2),
    ("overlap_collectives", 1),  # MPI reductions proceed during the backward pass (graphc/lower/collective.py)
]
PASS_NAMES = [name for name, _, _ in PIPELINE]
SCHEDULE_PASS_NAMES = [name for name, _ in SCHEDULE_PASSES]


def _enabled(optimize) -> set:
    """The names of the passes ``optimize`` asks for: a level 0-2, True/False, or a list of names to disable."""
    if optimize is True:
        optimize = 2
    if optimize is False or optimize is None:
        optimize = 0
    levels = {name: level for name, level, _ in PIPELINE} | dict(SCHEDULE_PASSES)
    if isinstance(optimize, int):
        if not 0 <= optimize <= 2:
            raise ValueError(f"optimize level must be 0, 1 or 2, got {optimize}")
        return {name for name, level in levels.items() if level <= optimize}
    disabled = set(optimize)
    unknown = disabled - set(PASS_NAMES) - set(SCHEDULE_PASS_NAMES)
    if unknown:
        raise ValueError(f"unknown pass(es) {sorted(unknown)}; graph passes are {', '.join(PASS_NAMES)}, "
                         f"schedule passes {', '.join(SCHEDULE_PASS_NAMES)}")
    return set(levels) - disabled


def selected_passes(optimize) -> list:
    """The graph passes ``optimize`` asks for, in pipeline order, as (name, pass) pairs."""
    enabled = _enabled(optimize)
    return [(name, run) for name, _, run in PIPELINE if name in enabled]


def selected_schedule_passes(optimize) -> tuple:
    """The names of the schedule rewrites ``optimize`` asks for (the native planner applies them)."""
    enabled = _enabled(optimize)
    return tuple(name for name, _ in SCHEDULE_PASSES if name in enabled)


def optimize_graph(graph, optimize=2):
    for _, run in selected_passes(optimize):
        graph = run(graph)
    return graph
