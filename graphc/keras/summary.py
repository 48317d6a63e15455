"""``model.summary()``: the layer table and parameter counts exactly as Keras 3 prints them."""
import collections
import math
import textwrap

import numpy as np

from .layers.base import as_list, call_keys

# Keras 3 renders the table with rich at its default line length for an 80-column console, which gives
# these cell widths (text only, without the one-space padding on each side): three columns for a stack of
# layers, four (with "Connected to") for other functional models.
COLUMN_WIDTHS = (31, 22, 13)
GRAPH_COLUMN_WIDTHS = (19, 17, 10, 17)


def text(model, stack=False) -> str:
    """The summary of ``model``; ``stack``: it is a Sequential model (always drawn with three columns)."""
    graph = not (stack or _sequential_like(model))
    widths = GRAPH_COLUMN_WIDTHS if graph else COLUMN_WIDTHS
    headers = ("Layer (type)", "Output Shape", "Param #") + (("Connected to",) if graph else ())
    connections = _connections(model) if graph else {}
    rows = [(f"{layer.name} ({type(layer).__name__})", _format_shape(layer.output_shape),
             f"{layer.count_params():,}" if layer.built else "0 (unbuilt)")
            + ((connections[id(layer)],) if graph else ()) for layer in model.layers]
    lines = [f'Model: "{model.name}"', _rule("┏", "━", "┳", "┓", widths), _row(headers, "┃", widths),
             _rule("┡", "━", "╇", "┩", widths)]
    for i, row in enumerate(rows):
        if i:
            lines.append(_rule("├", "─", "┼", "┤", widths))
        lines.append(_row(row, "│", widths))
    lines.append(_rule("└", "─", "┴", "┘", widths))
    trainable = _count_and_size(model.trainable_weights)
    frozen = _count_and_size(model.non_trainable_weights)
    total = (trainable[0] + frozen[0], trainable[1] + frozen[1])
    counts = [("Total", total), ("Trainable", trainable), ("Non-trainable", frozen)]
    if model.optimizer is not None and model.optimizer.iterations.value > 0:
        optimizer = _count_and_size(model.optimizer.variables)
        counts[0] = ("Total", (total[0] + optimizer[0], total[1] + optimizer[1]))
        counts.append(("Optimizer", optimizer))
    lines += [f" {label} params: {count:,} ({_readable_size(size)})" for label, (count, size) in counts]
    return "\n".join(lines)


def _sequential_like(model) -> bool:
    """Whether Keras would draw the model as a stack (three columns): every call reads the one before it."""
    if not model.built:
        return True
    previous = model._inputs[0] if len(model._inputs) == 1 else None
    for tensor in model._calls:
        if tensor.inputs is not previous:
            return False
        previous = tensor
    return len(model._outputs) == 1 and model._outputs[0] is previous


def _connections(model) -> dict:
    """layer id -> its "Connected to" cell: ``name[call][0]`` of every tensor its calls read, "-" for an input."""
    keys = call_keys(model._tensors)
    cells = collections.defaultdict(list)
    for tensor in model._calls:
        cells[id(tensor.layer)] += [f"{keys[id(t)][0]}[{keys[id(t)][1]}][0]" for t in as_list(tensor.inputs)]
    return {id(layer): ", ".join(cells[id(layer)]) or "-" for layer in model.layers}


def _format_shape(shape):
    return "?" if shape is None else "(" + ", ".join(str(d) for d in shape) + ")"


def _rule(left, fill, join, right, widths):
    return left + join.join(fill * (width + 2) for width in widths) + right


def _row(cells, bar, widths):
    """One table row; a cell too long for its column wraps onto more lines at spaces, and a word longer than
    the column ends in an ellipsis, as rich does. The parameter count (third column) is right-aligned."""
    wrapped = [[line if len(line) <= width else line[:width - 1] + "…"
                for line in textwrap.wrap(cell, width, break_long_words=False)] or [""]
               for cell, width in zip(cells, widths)]
    lines = []
    for k in range(max(len(w) for w in wrapped)):
        parts = [w[k] if k < len(w) else "" for w in wrapped]
        aligned = [part.rjust(width) if column == 2 else part.ljust(width)
                   for column, (part, width) in enumerate(zip(parts, widths))]
        lines.append(bar + bar.join(f" {part} " for part in aligned) + bar)
    return "\n".join(lines)


def _count_and_size(variables):
    """(number of values, bytes) of ``variables``."""
    return (sum(math.prod(v.shape) for v in variables),
            sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in variables))


def _readable_size(size):
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} PB"
