"""Kernels of max_pool2d, avg_pool2d and their gradients (graphc/ops/pool.py) over NHWC data.

Height, width and channels must be static; the batch may be symbolic. Each kernel walks the output
positions (i, j) of an image and, for each, the window of input positions clipped to the input
(padding never takes part), vectorized over the channels: full vectors of the target's width in a
loop, then the channels left over in halving widths (8, 4, 2, 1: all static), so C = 1, 3 or 17
need no masks. A window is always read in row-major order, the order of the numpy reference, so the
results have the reference's bits.

* forward: out[n, i, j, :] is the window's maximum (llvm.maximum: NaN propagates, as numpy's max)
  or its sum from +0 divided by its element count. Threads split the batch * out_height output rows.
* gradients: an image's dx is zeroed, then each window adds its share, output by output: avg_pool2d's
  g / count to every element; max_pool2d's g to the window's first maximum, or its first NaN (the
  maximum is recomputed in a first pass over the window, then a second pass adds g where a lane
  first meets it). Threads take whole images, so overlapping windows never race and every element
  adds its shares in the same order on any number of threads. fused_max_pool2d_grad then applies its
  epilogue (the relu mask of the layer below) to each image it finished, while the image is in cache.
  Where the windows tile the input (strides = pool size, "valid": the convnet's 2x2 pools) each element
  gets one share or none, so it is written once, 0 + share through the epilogue, and the elements no
  window reaches get 0 through the epilogue: no zeroing pass, no reading back. Only then may
  fused_max_pool2d_grad store dx transposed (its ``axes``), as the filter gradient below reads it.
"""
from __future__ import annotations

from llvmlite import ir

from ..ops.pool import output_size, pad_before, windows_tile
from .epilogue import epilogue_value
from .irutil import (I1, IR_TYPES, KernelBuilder, const, constant_like, contiguous_strides, imin, lanes_for, loop,
                     size_of, splat, vector_type, vectors_then_tail)
from .reduce import Combiner


def emit_max_pool2d(module: ir.Module, name: str, node, target, dim_index: dict) -> ir.Function:
    """out[n, i, j, c] = the maximum of x[n, window(i, j), c]."""
    return _emit_pool(module, name, node, target, dim_index, "reduce_max")


def emit_avg_pool2d(module: ir.Module, name: str, node, target, dim_index: dict) -> ir.Function:
    """out[n, i, j, c] = the sum of x[n, window(i, j), c] over the window's element count."""
    return _emit_pool(module, name, node, target, dim_index, "reduce_sum")


def emit_max_pool2d_grad(module: ir.Module, name: str, node, target, dim_index: dict) -> ir.Function:
    """dx = 0; dx[n, first argmax of window(i, j), c] += g[n, i, j, c], output by output; then, for
    fused_max_pool2d_grad, dx = epilogue(dx, extras...) over the image."""
    return _emit_gradient(module, name, node, target, dim_index, is_max=True)


def emit_avg_pool2d_grad(module: ir.Module, name: str, node, target, dim_index: dict) -> ir.Function:
    """dx = 0; dx[n, window(i, j), c] += g[n, i, j, c] / count(i, j), output by output."""
    return _emit_gradient(module, name, node, target, dim_index, is_max=False)


class _Geometry:
    """The static sizes of one pooling: input (H, W, C), output (OH, OW), window, strides and padding."""

    def __init__(self, node, input_shape):
        if not all(isinstance(d, int) for d in input_shape[1:]):
            raise NotImplementedError(f"the native backend pools only inputs of static height, width and channels; "
                                      f"{node.op.name} {node.name} (at {node.location}) has an input of shape "
                                      f"{input_shape}")
        _, self.height, self.width, self.channels = input_shape
        (self.kh, self.kw), (self.sh, self.sw) = node.attrs["pool_size"], node.attrs["strides"]
        padding = node.attrs["padding"]
        self.out_height = output_size(self.height, self.kh, self.sh, padding)
        self.out_width = output_size(self.width, self.kw, self.sw, padding)
        self.top = pad_before(self.height, self.kh, self.sh, padding)
        self.left = pad_before(self.width, self.kw, self.sw, padding)

    def window(self, b, i, j):
        """((row start, row stop), (column start, column stop)) of output (i, j)'s window, clipped."""
        return (_clipped(b, i, self.sh, self.top, self.kh, self.height),
                _clipped(b, j, self.sw, self.left, self.kw, self.width))

    def offset(self, b, n, r, q):
        """Flat offset of element [n, r, q, 0] of an (N, H, W, C) buffer."""
        return b.mul(b.add(b.mul(b.add(b.mul(n, const(self.height)), r), const(self.width)), q),
                     const(self.channels))

    def output_offset(self, b, n, i, j):
        """Flat offset of element [n, i, j, 0] of an (N, OH, OW, C) buffer."""
        return b.mul(b.add(b.mul(b.add(b.mul(n, const(self.out_height)), i), const(self.out_width)), j),
                     const(self.channels))


def _clipped(b, index, stride, before, k, size):
    start = b.sub(b.mul(index, const(stride)), const(before))
    return b.select(b.icmp_signed(">", start, const(0)), start, const(0)), imin(b, b.add(start, const(k)), const(size))


def _each_in_window(b, window, body):
    """body(r, q) over the window's positions in row-major order."""
    (row_start, row_stop), (column_start, column_stop) = window
    with loop(b, row_start, row_stop, name="r") as r:
        with loop(b, column_start, column_stop, name="q") as q:
            body(r.index, q.index)


def _count(b, window, dtype, width):
    """The window's element count as a float of ``dtype``, splatted to ``width`` lanes."""
    (row_start, row_stop), (column_start, column_stop) = window
    count = b.mul(b.sub(row_stop, row_start), b.sub(column_stop, column_start))
    return splat(b, b.sitofp(count, IR_TYPES[dtype]), width)


def _each_channel_chunk(b, channels: int, lanes: int, body):
    """body(c, width) over [0, channels): full vectors of ``lanes`` in a loop, then the rest in halving widths."""
    full = channels - channels % lanes
    if full:
        with loop(b, const(0), const(full), lanes, name="c") as c:
            body(c.index, lanes)
    width = lanes // 2
    while full < channels:
        if channels - full >= width:
            body(const(full), width)
            full += width
        width //= 2


def _emit_pool(module, name, node, target, dim_index, reduction) -> ir.Function:
    x = node.inputs[0]
    geometry, dtype = _Geometry(node, x.shape), x.dtype
    kb = KernelBuilder.create(module, name, 1, dim_index)
    b = kb.builder
    combiner = Combiner(reduction, dtype)
    rows = b.mul(kb.dim(x.shape[0]), const(geometry.out_height))
    begin, end = kb.thread_share(rows, kb.dim(size_of(x.shape)))
    with loop(b, begin, end, name="row") as row:
        n, i = b.udiv(row.index, const(geometry.out_height)), b.urem(row.index, const(geometry.out_height))
        with loop(b, const(0), const(geometry.out_width), name="j") as j:
            window = geometry.window(b, i, j.index)
            out_offset = geometry.output_offset(b, n, i, j.index)

            def pool(c, width):
                typ = vector_type(dtype, width)
                total = kb.variable(typ)
                b.store(combiner.identity(typ), total)

                def add(r, q):
                    value = kb.load(kb.inputs[0], dtype, b.add(geometry.offset(b, n, r, q), c), width)
                    b.store(combiner.combine(b, b.load(total), value), total)
                _each_in_window(b, window, add)
                result = b.load(total)
                if reduction == "reduce_sum":
                    result = b.fdiv(result, _count(b, window, dtype, width))
                kb.store(result, kb.out, dtype, b.add(out_offset, c))
            _each_channel_chunk(b, geometry.channels, lanes_for(target, dtype), pool)
    return kb.finish()


def _emit_gradient(module, name, node, target, dim_index, is_max: bool) -> ir.Function:
    shape = node.inputs[0].shape if is_max else node.shape  # dx's, in NHWC order (node.shape may be transposed)
    geometry, dtype = _Geometry(node, shape), node.dtype
    kb = KernelBuilder.create(module, name, len(node.inputs), dim_index)
    b = kb.builder
    x, g = kb.inputs[:2] if is_max else (None, kb.inputs[0])
    lanes = lanes_for(target, dtype)
    stored = _StoredLayout(kb, node, geometry)
    once = windows_tile(node.attrs)  # each element gets at most one share: written once, never read back
    image = geometry.height * geometry.width * geometry.channels
    images = kb.dim(shape[0])
    begin, end = kb.thread_share(images, b.mul(images, const(image)))
    with loop(b, begin, end, name="n") as n:
        start = geometry.offset(b, n.index, const(0), const(0))
        if not once:
            vectors_then_tail(b, const(image), lanes, lambda k, width: kb.store(
                constant_like(vector_type(dtype, width), 0), kb.out, dtype, b.add(start, k)), name="zero")
        with loop(b, const(0), const(geometry.out_height), name="i") as i:
            with loop(b, const(0), const(geometry.out_width), name="j") as j:
                window = geometry.window(b, i.index, j.index)
                g_offset = geometry.output_offset(b, n.index, i.index, j.index)

                def route(c, width):
                    share = kb.load(g, dtype, b.add(g_offset, c), width)

                    def add(r, q, value):
                        if once:
                            _put(kb, node, stored, n.index, r, q, c, b.fadd(constant_like(value.type, 0), value))
                            return
                        at = b.add(geometry.offset(b, n.index, r, q), c)
                        kb.store(b.fadd(kb.load(kb.out, dtype, at, width), value), kb.out, dtype, at)
                    if is_max:
                        _route_to_first_max(kb, geometry, window, n.index, c, width, dtype, x, share, add)
                    else:
                        share = b.fdiv(share, _count(b, window, dtype, width))
                        _each_in_window(b, window, lambda r, q: add(r, q, share))
                _each_channel_chunk(b, geometry.channels, lanes, route)
        if once:
            _fill_uncovered(kb, node, stored, n.index, lanes)
        elif "epilogue" in node.attrs:
            _apply_epilogue(kb, node, start, image, lanes)
    return kb.finish()


class _StoredLayout:
    """Where dx[n, r, q, c] lies in the kernel's output: NHWC, or transposed by the node's ``axes`` (which keep
    the channels last: the layout the filter gradient below reads, passes/fusion.py; windows_tile only)."""

    def __init__(self, kb, node, geometry):
        self.geometry, self.axes = geometry, node.attrs.get("axes")
        if self.axes is not None and not windows_tile(node.attrs):
            raise ValueError(f"graphc bug: {node.name} stores a pooling gradient transposed, but its windows "
                             f"overlap or are clipped, so it would be read back there")
        if self.axes is not None:  # the strides of n, r and q in the stored shape (n's is symbolic)
            strides = contiguous_strides(node.shape)
            self.strides = [kb.dim(strides[self.axes.index(axis)]) for axis in range(3)]

    def offset(self, b, n, r, q):
        """Flat offset of dx[n, r, q, 0] in the output."""
        if self.axes is None:
            return self.geometry.offset(b, n, r, q)
        (n_stride, r_stride, q_stride) = self.strides
        return b.add(b.add(b.mul(n, n_stride), b.mul(r, r_stride)), b.mul(q, q_stride))


def _put(kb, node, stored, n, r, q, c, value):
    """Store dx[n, r, q, c:c + width] = value, through the node's epilogue if it has one."""
    b = kb.builder
    nhwc = b.add(stored.geometry.offset(b, n, r, q), c)
    if "epilogue" in node.attrs:
        value = _epilogue(kb, node, value, nhwc)
    kb.store(value, kb.out, node.dtype, b.add(stored.offset(b, n, r, q), c))


def _fill_uncovered(kb, node, stored, n, lanes):
    """dx = 0 (through the epilogue) on image n's pixels that no window reaches: the bottom rows and the right
    columns that the last whole window leaves over."""
    b, geometry = kb.builder, stored.geometry
    covered_rows, covered_cols = geometry.out_height * geometry.kh, geometry.out_width * geometry.kw

    def zero(r, q, c, width):
        _put(kb, node, stored, n, r, q, c, constant_like(vector_type(node.dtype, width), 0))
    for rows, cols in (((covered_rows, geometry.height), (0, geometry.width)),
                       ((0, covered_rows), (covered_cols, geometry.width))):
        if rows[0] < rows[1] and cols[0] < cols[1]:
            pixels = ((const(rows[0]), const(rows[1])), (const(cols[0]), const(cols[1])))
            _each_in_window(b, pixels, lambda r, q: _each_channel_chunk(
                b, geometry.channels, lanes, lambda c, width: zero(r, q, c, width)))


def _epilogue(kb, node, value, nhwc_at):
    """The node's epilogue on ``value`` (dx at NHWC offset ``nhwc_at``, a vector or a scalar), reading its extra
    operands there, as the elementwise kernel it replaces computes it."""
    width = value.type.count if isinstance(value.type, ir.VectorType) else 1
    return epilogue_value(kb, node, value, width, lambda k, extra: kb.load(kb.inputs[2 + k], extra.dtype, nhwc_at,
                                                                            width))


def _apply_epilogue(kb, node, start, count, lanes):
    """dx[start:start + count] = epilogue(dx, extras...) elementwise, on an image just finished (NHWC, still in
    cache)."""
    b = kb.builder

    def step(k, width):
        at = b.add(start, k)
        kb.store(_epilogue(kb, node, kb.load(kb.out, node.dtype, at, width), at), kb.out, node.dtype, at)
    vectors_then_tail(b, const(count), lanes, step, name="epilogue")


def _route_to_first_max(kb, geometry, window, n, c, width, dtype, x, share, add):
    """add(r, q, share) in the lanes where x[n, r, q, c:c + width] is the window's first maximum (or first
    NaN), add(r, q, 0) in the others: one pass finds the maximum, a second adds where a lane first meets it."""
    b = kb.builder
    typ = vector_type(dtype, width)
    combiner = Combiner("reduce_max", dtype)
    mask = I1 if width == 1 else ir.VectorType(I1, width)
    peak, pending = kb.variable(typ), kb.variable(mask)
    b.store(combiner.identity(typ), peak)

    def load(r, q):
        return kb.load(x, dtype, b.add(geometry.offset(b, n, r, q), c), width)
    _each_in_window(b, window, lambda r, q: b.store(combiner.combine(b, b.load(peak), load(r, q)), peak))
    maximum = b.load(peak)
    b.store(constant_like(mask, 1), pending)  # the lanes that have not met their maximum yet

    def visit(r, q):
        value = load(r, q)
        # the maximum is NaN exactly when the window holds a NaN: then the first NaN is the argmax
        first = b.and_(b.or_(b.fcmp_ordered("==", value, maximum), b.fcmp_unordered("uno", value, value)),
                       b.load(pending))
        b.store(b.xor(b.load(pending), first), pending)
        add(r, q, b.select(first, share, constant_like(typ, 0)))
    _each_in_window(b, window, visit)
