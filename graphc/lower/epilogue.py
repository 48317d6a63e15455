"""Epilogues and updates applied where a value is produced.

A fused node (fused_matmul, fused_max_pool2d_grad) hands each value it produces to ``epilogue_value``, which
computes the node's epilogue body from it and its extra operands at the same position.

A producer (a GEMM's output vector, a sum's finished element) hands its value to ``apply_updates``
(see program._fuse_updates_into_producers),
which computes each update's elementwise body from it, from values earlier updates computed, and from
loads of other buffers at the same position, and stores each result into its variable.
"""
from .elementwise import ExprLowering, compute_dtype, convert
from ..ops.expr import arg


def epilogue_value(scope, node, value, lanes, load):
    """``node``'s epilogue body on ``value`` (%0, ``lanes`` wide, in node.dtype) and its extra operands (%1..:
    ``load(k, operand)`` reads node.inputs[2 + k] where ``value`` lies), in node.dtype."""
    builder, dtype = scope.builder, compute_dtype(node)
    values = {arg(0): convert(builder, value, node.dtype, dtype)}
    for k, operand in enumerate(node.inputs[2:]):
        values[arg(k + 1)] = convert(builder, load(k, operand), operand.dtype, dtype)
    return convert(builder, ExprLowering(scope, node, lanes, values).number(node.attrs["epilogue"]), dtype, node.dtype)


def update_arguments(updates) -> list:
    """Names of the pointer arguments the updates need, in order: each update's output, then its loads."""
    names = []
    for k, (_, sources) in enumerate(updates):
        names += [f"update{k}_out"] + [f"update{k}_load{j}" for j in range(sources.count("load"))]
    return names


def apply_updates(scope, updates, product, product_dtype, lanes, load, store):
    """Run ``updates`` ((update node, sources) pairs) on ``product`` (``lanes`` wide): ``load(name, operand)``
    reads an operand through the pointer argument ``name``, ``store(name, value, dtype)`` writes a result."""
    builder, computed = scope.builder, []
    for k, (update, sources) in enumerate(updates):
        dtype, values, loads = compute_dtype(update), {}, 0
        for i, (source, operand) in enumerate(zip(sources, update.inputs)):
            if source == "product":
                value = convert(builder, product, product_dtype, dtype)
            elif source == "load":
                value = convert(builder, load(f"update{k}_load{loads}", operand), operand.dtype, dtype)
                loads += 1
            else:
                earlier = source[1]
                value = convert(builder, computed[earlier], updates[earlier][0].dtype, dtype)
            values[arg(i)] = value
        result = ExprLowering(scope, update, lanes, values).number(update.attrs["expr"])
        computed.append(convert(builder, result, dtype, update.dtype))
        store(f"update{k}_out", computed[-1], update.dtype)
