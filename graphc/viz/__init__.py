"""Looking at graphs: networkx graphs, DOT text and pictures, text and machine-code dumps, per stage
(forward, autodiff, optimized, kernels), and a per-kernel profile. See docs/dumps.md."""
from .dot import render, to_dot
from .networkx_graph import ROLES, STAGES, DumpError, Kernel, to_networkx
from .profile import profile
from .text import dump_text, machine_code

__all__ = ["DumpError", "Kernel", "ROLES", "STAGES", "dump_text", "machine_code", "profile", "render", "to_dot",
           "to_networkx"]
