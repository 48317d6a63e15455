"""Bucketing of small reductions, as PyTorch DDP does: one MPI message for many small gradients.

Each MPI reduction costs a latency whatever its size, so the small ones (a network's biases, its last layer)
are sent together: their operands are flattened into one buffer, reduced once, and each result is its slice of
the reduced buffer, reshaped back. A large one keeps its own message, which the schedule can overlap with the
backward pass (``overlap_collectives``).
"""
import math

import numpy as np

from ..graph import Graph
from ..graph.shapes import is_static
from ..ops.registry import apply
from ..ops.shape import concatenate, reshape
from .rewrite import rebuild

# Below about 64 KiB a message costs mostly latency (10-100 Gbit/s networks: 3-25 us a step against 5-50 us of
# transfer), so smaller reductions share messages of up to this size; larger ones keep their own, which the
# backward pass can hide. (PyTorch DDP's buckets are 1-25 MB: sized for GPUs and NCCL.)
BUCKET_BYTES = 64 << 10


def bucket_allreduces(graph: Graph) -> Graph:
    """allreduce(a), allreduce(b), ... (each small) => slices of allreduce(concatenate(flat a, flat b, ...)):
    buckets of at most BUCKET_BYTES of one dtype, of reductions next to each other in the order the gradients
    are computed, so a bucket is sent as soon as its last gradient is ready."""
    buckets = _buckets(graph, [n for n in graph.nodes if n.op.name == "allreduce"])
    replacements = {}
    for bucket in (b for b in buckets if len(b) > 1):
        reduced = apply(bucket[0].op, [concatenate([reshape(n.inputs[0], (-1,)) for n in bucket])])
        start = 0
        for node in bucket:
            size = math.prod(node.shape)
            replacements[node.id] = reshape(reduced[start:start + size], node.shape)
            start += size
    return rebuild(graph, lambda node, original: replacements.get(original.id)) if replacements else graph


def _buckets(graph, reductions) -> list:
    """Runs of small reductions (static shapes, one dtype, at most BUCKET_BYTES together) in graph order, whose
    operands read no reduction's result; a reduction left out (large, or another dtype) ends the run."""
    downstream = set()  # the reductions and every node reading one, in one sweep of the sorted graph
    for node in graph.nodes:
        if node.op.name == "allreduce" or any(i.id in downstream for i in node.inputs):
            downstream.add(node.id)
    bucket = []
    buckets = [bucket]
    for node in reductions:
        small = (is_static(node.shape) and _bytes([node]) <= BUCKET_BYTES
                 and node.inputs[0].id not in downstream)
        if not small or (bucket and (node.dtype != bucket[0].dtype or _bytes(bucket + [node]) > BUCKET_BYTES)):
            bucket = []
            buckets.append(bucket)
        if small:
            bucket.append(node)
    return buckets


def _bytes(nodes) -> int:
    return sum(math.prod(n.shape) * np.dtype(n.dtype).itemsize for n in nodes)
