"""Graphviz pictures: DOT text written by graphc itself, and ``render`` through the ``dot`` program.

Nodes are coloured by role, edges labelled with the shape flowing along them,
updates drawn as dashed edges back to their variable, and in the kernels stage
each kernel is a cluster titled with its name and ops, its fused expression in the tooltip.
"""
import os
import re
import shutil
import subprocess

from runtime.atomic import atomic_write_bytes

from .networkx_graph import DumpError, to_networkx

ROLE_COLORS = {
    "input": "#fdd49e",
    "parameter": "#c7e9c0",
    "constant": "#eeeeee",
    "forward": "#c6dbef",
    "backward": "#fcbba1",
    "update": "#dadaeb",
}
PICTURE_FORMATS = ("svg", "png", "pdf")
INSTALL_HINT = ("the Graphviz 'dot' program is needed to render pictures: install it with "
                "`apt-get install graphviz` (Debian/Ubuntu) or `brew install graphviz` (macOS), "
                "or write DOT text with gc.to_dot / `graphc dump --format dot`")


def quote(text) -> str:
    """``text`` as a DOT double-quoted string (newlines become DOT's centred line breaks)."""
    escaped = str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def heat_color(share: float) -> str:
    """White for 0, full red for 1: how much of the run time a node or kernel takes."""
    fade = round(255 * (1 - min(max(share, 0.0), 1.0)))
    return f"#ff{fade:02x}{fade:02x}"


def to_dot(obj, stage: str = "autodiff", heat=None) -> str:
    """DOT text of ``obj`` at ``stage`` (see to_networkx). ``heat`` maps node or kernel names to a time
    share in [0, 1] and fills them from white to red instead of by role (see graphc.viz.profile)."""
    return graph_to_dot(to_networkx(obj, stage), heat or {})


def graph_to_dot(g, heat: dict) -> str:
    lines = [f"digraph {quote('graphc ' + g.graph['stage'])} {{",
             '  rankdir=TB; fontname="Helvetica";',
             '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=8];']
    if g.graph["note"]:
        lines.append(f"  label={quote(g.graph['stage'] + ' stage: ' + g.graph['note'])}; labelloc=t;")
    outputs = set(g.graph["outputs"])
    clustered = set()
    kernels = g.graph["kernels"] if g.graph["stage"] == "kernels" else []  # the optimized stage has no clusters
    for index, kernel in enumerate(kernels):
        members = [n for n in kernel["nodes"] if n in g]
        clustered.update(members)
        fill = heat_color(heat[kernel["name"]]) if kernel["name"] in heat else "white"
        lines.append(f"  subgraph cluster_{index} {{")
        lines.append(f"    label={quote(_kernel_title(g, kernel['name'], members))}; "
                     f"tooltip={quote(kernel['expression'])}; "
                     f'style="dashed,filled"; fillcolor={quote(fill)}; fontsize=9;')
        lines.extend(f"    {_node_line(g, n, outputs, heat)}" for n in members)
        lines.append("  }")
    lines.extend(f"  {_node_line(g, n, outputs, heat)}" for n in g.nodes if n not in clustered)
    for source, target, data in g.edges(data=True):
        lines.append(f"  {quote(source)} -> {quote(target)} [label={quote(data['shape'])}];")
    for variable, new_value in g.graph["updates"]:
        lines.append(f"  {quote(new_value)} -> {quote(variable)} "
                     f'[style=dashed, color="#756bb1", constraint=false, label="update"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _kernel_title(g, name, members, words=3) -> str:
    """A short cluster title: the kernel's name, its op count, and the values it computes that the user named
    (``k0_matmul_relu: 1 op → h``), else its first few ops (``k5_add: 2 ops: add, sqrt``). The fused formula
    would make the picture thousands of pixels wide, so it is the tooltip (SVG) and ``gc.explain``'s job."""
    if not members:
        return name
    named = [n for n in members if g.nodes[n]["named"]]
    shown = named or list(dict.fromkeys(g.nodes[n]["op"] for n in members))
    listed = ", ".join(shown[:words]) + (", ..." if len(shown) > words else "")
    return f"{name}: {len(members)} op{'s' if len(members) != 1 else ''}{' →' if named else ':'} {listed}"


def _node_line(g, key, outputs, heat) -> str:
    data = g.nodes[key]
    label = f"{key}\n{data['op']}"
    attrs = _without_false_flags(data["attrs"])
    if data["kind"] not in ("source", "elementwise") and attrs:
        label += f" {{{attrs}}}"
    label += f"\n{data['dtype']}{data['shape']}"
    fill = heat_color(heat[key]) if key in heat else ROLE_COLORS[data["role"]]
    extra = ", peripheries=2" if key in outputs else ""
    tooltip = short_location(data["location"])
    return f"{quote(key)} [label={quote(label)}, fillcolor={quote(fill)}, tooltip={quote(tooltip)}{extra}];"


def short_location(location: str) -> str:
    """``file:line`` relative to the current directory when the file is under it: pictures stay portable."""
    path, _, line = location.rpartition(":")
    if os.path.isabs(path) and path.startswith(os.getcwd() + os.sep):
        return f"{os.path.relpath(path)}:{line}"
    return location


def _without_false_flags(attrs: str) -> str:
    """``transpose_a=False, transpose_b=True`` -> ``transpose_b=True``: pictures show only the flags that are set."""
    return re.sub(r"(, )?\b\w+=False\b", "", attrs).strip(", ")


def run_dot(dot_text: str, format: str) -> bytes:
    """The picture ``dot -T<format>`` draws from ``dot_text``; DumpError saying how to install Graphviz if absent."""
    program = shutil.which("dot")
    if program is None:
        raise DumpError(INSTALL_HINT)
    result = subprocess.run([program, f"-T{format}"], input=dot_text.encode(), capture_output=True)
    if result.returncode != 0:
        raise DumpError(f"dot -T{format} failed: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout


def picture_format(path, format=None) -> str:
    format = format or os.path.splitext(str(path))[1].lstrip(".").lower()
    if format not in PICTURE_FORMATS:
        raise DumpError(f"cannot render {str(path)!r} as {format or 'a file without a suffix'!r}: "
                        f"formats are {', '.join(PICTURE_FORMATS)}")
    return format


def svg(obj, stage: str = "autodiff"):
    """The SVG picture of ``obj`` at ``stage`` as text, or None without Graphviz's ``dot``: what Jupyter shows
    for a tensor or a compiled function (``_repr_svg_``; None lets it fall back to the text repr)."""
    try:
        return run_dot(to_dot(obj, stage), "svg").decode()
    except (DumpError, OSError):
        return None


def render(obj, path, stage: str = "autodiff", format=None, heat=None):
    """Draw ``obj`` at ``stage`` into ``path`` as svg, png or pdf (``format``, else ``path``'s suffix)
    with Graphviz's ``dot`` program. Returns ``path``."""
    format = picture_format(path, format)
    atomic_write_bytes(path, run_dot(to_dot(obj, stage, heat), format))
    return path
