"""Text dumps: gc.dump's one-line-per-node listing with each node's role, per stage; and the
LLVM IR module / per-kernel assembly of a natively compiled function."""
import re

from ..graph.graph import describe
from .networkx_graph import DumpError, as_graph, buffer_name, node_keys, stage_view

MACHINE_CODE_FORMATS = {"llvm": "llvm_ir", "asm": "asm"}


def dump_text(obj, stage: str = "autodiff") -> str:
    """``obj`` at ``stage`` as text: ``name = op(inputs) {attrs} : dtype(shape)  [role]``, one node a line;
    in the kernels stage, nodes grouped under ``kernel NAME(inputs) -> outputs``."""
    view = stage_view(obj, stage)
    line = {n.id: f"{describe(n)}  [{view.roles[n.id]}]" for n in view.nodes}
    lines = [f"# stage {view.stage}" + (f": {view.note}" if view.note else "")]
    if view.stage == "kernels":
        keys = node_keys(view.nodes)
        in_kernel = view.kernel_names()
        lines += [line[n.id] for n in view.nodes if n.id not in in_kernel]
        for kernel in view.kernels:
            inputs = ", ".join(buffer_name(b, keys) for b in kernel.inputs)
            outputs = ", ".join(buffer_name(b, keys) for b in kernel.outputs)
            lines.append(f"kernel {kernel.name}({inputs}) -> {outputs}")
            # A backend's own nodes (the copies that assign updates) are not in the graph: describe them too.
            lines += [f"    {line.get(n.id) or describe(n) + '  [copy]'}" for n in kernel.nodes]
    else:
        lines += [line[n.id] for n in view.nodes]
    if view.outputs:
        lines.append("return " + ", ".join(n.name for n in view.outputs))
    lines += [f"update {var.name} <- {new.name}" for var, new in view.updates]
    return "\n".join(lines) + "\n"


def machine_code(obj, format: str = "llvm") -> str:
    """Every kernel's LLVM IR (``format='llvm'``) or assembly (``'asm'``) of a natively compiled function.

    The IR is the program's whole module (``ir_text``), each function headed by a ``; ==== kernel NAME``
    comment, so that a ``.ll`` file is one module LLVM parses; otherwise (and for assembly) the kernels of
    ``llvm_ir()`` / ``asm()`` (dicts kernel name -> text), each under a ``==== kernel NAME`` line."""
    if format not in MACHINE_CODE_FORMATS:
        raise DumpError(f"unknown machine-code format {format!r}; formats: {', '.join(MACHINE_CODE_FORMATS)}")
    _, function = as_graph(obj)
    backend_program = getattr(function, "program", function)  # the backend holds the machine code
    module = getattr(backend_program, "ir_text", None)
    if format == "llvm" and module is not None:
        return re.sub(r'^define [^@\n]*@"?([\w.]+)"?\(', r"; ==== kernel \1\n\g<0>", module, flags=re.M)
    method = getattr(backend_program, MACHINE_CODE_FORMATS[format], None)
    if method is None:
        raise DumpError(f"no {format} to show: only a function compiled by a native backend has machine code "
                        f"(the reference backend runs numpy, and a bare tensor or graph is not compiled)")
    return "".join(f"==== kernel {name}\n{text.rstrip()}\n" for name, text in method().items())
