"""The frameworks the convnet benches compare graphc with (PyTorch, JAX, Keras 3), kept out of graphc's own
environment: they live in a venv of their own, ``bench/.venv`` by default, which ``use_peer_venv`` creates on
first use (pip, from the package index) and then re-runs the calling script in. graphc never depends on them.

PyPI's Linux ``torch`` is the CUDA build (a few GB with its nvidia wheels; it runs on the CPU all the same);
``--torch`` names another requirement, e.g. a CPU-only wheel that pip can find.
"""
import os
import subprocess
import sys
import venv

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
DEFAULT_VENV = os.path.join(BENCH, ".venv")
REQUIREMENTS = ("jax", "keras>=3")


def add_arguments(parser):
    parser.add_argument("--peer-venv", default=DEFAULT_VENV, help="the peers' venv (default: bench/.venv)")
    parser.add_argument("--torch", default="torch", help="the torch requirement to install (default: torch)")
    parser.add_argument("--threads", type=int, default=2, help="cores every contender may use (default: 2)")


def use_peer_venv(args):
    """Re-run this script in the peers' venv (creating it first), limited to ``args.threads`` cores; returns only
    when already running there. graphc itself is imported from this repository."""
    python = os.path.join(args.peer_venv, "bin", "python")
    if os.path.realpath(sys.prefix) != os.path.realpath(args.peer_venv):
        if not os.path.exists(os.path.join(args.peer_venv, "installed")):
            print(f"installing the peers into {args.peer_venv} (once)", flush=True)
            venv.create(args.peer_venv, with_pip=True)
            subprocess.run([python, "-m", "pip", "install", "-q", "-e", REPO, args.torch, *REQUIREMENTS], check=True)
            open(os.path.join(args.peer_venv, "installed"), "w").close()
        os.execv(python, [python, *sys.argv])
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < args.threads:
        sys.exit(f"--threads {args.threads}: this process may run on only {len(cores)} cores")
    os.sched_setaffinity(0, cores[:args.threads])  # before any framework starts its thread pool
    os.environ["KERAS_BACKEND"] = "jax"


def versions() -> str:
    import jax
    import keras
    import torch
    return f"torch {torch.__version__}, jax {jax.__version__}, keras {keras.__version__}"
