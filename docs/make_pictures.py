"""Draw the pictures of docs/tutorial_stages.md into docs/img/ (needs Graphviz's ``dot``).

    python docs/make_pictures.py

Run it from anywhere; node names and file locations come out the same on every machine.
"""
import os
import sys

import numpy as np

DOCS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(DOCS))  # the graphc next to these docs, installed or not

import graphc as gc  # noqa: E402
from graphc.viz.examples import mnist_convnet, mnist_mlp  # noqa: E402


def dense_relu():
    """One Dense(512, relu) layer: small enough to see the optimizer fuse the bias and relu into the matmul."""
    x = gc.placeholder(("batch", 784), name="x")
    w = gc.variable(np.zeros((784, 512), np.float32), name="W")
    b = gc.variable(np.zeros(512, np.float32), name="b")
    return gc.function([x], gc.relu(x @ w + b))


def main():
    os.chdir(os.path.dirname(DOCS))  # tooltips show file:line relative to the repository
    step, layer = mnist_mlp(), dense_relu()
    pictures = [("dense_autodiff.svg", layer, "autodiff"), ("dense_kernels.svg", layer, "kernels"),
                ("mlp_forward.svg", step, "forward"), ("mlp_autodiff.svg", step, "autodiff"),
                ("mlp_optimized.svg", step, "optimized"), ("mlp_kernels.svg", step, "kernels"),
                ("convnet_kernels.svg", mnist_convnet(), "kernels")]
    for filename, function, stage in pictures:
        path = os.path.join(DOCS, "img", filename)
        gc.render(function, path, stage=stage)
        print(f"wrote {os.path.relpath(path)} ({stage} stage, {os.path.getsize(path) // 1024} KiB)")


if __name__ == "__main__":
    main()
