"""Lowering ``conv`` and ``fused_conv`` (graphc/ops/conv.py) as implicit GEMMs on the GEMM generator.

    out (batch*OH*OW, F) = im2col(x) (batch*OH*OW, KH*KW*C) @ filters (KH*KW*C, F)

The filters are B as they lie in memory (HWIO is row-major K x N). The im2col matrix A is never stored:
the GEMM calls ``pack_a`` for each row tile it is about to run, and the packer writes those rows (output
pixels) into the thread's tile: for each tap, the C channels of the input pixel the tap reads (one
contiguous copy, NHWC) or zeros where the tap falls into the padding or between the elements of a dilated
input. So the forward convolution and its filter gradient (itself a convolution) share the GEMM's register
tiles, threading and epilogue: a bias and an activation run on each output vector while it is in registers.
Under mixed precision (a node marked ``precision=bfloat16``) the GEMM rounds each packed tile where it lies.

``conv_transpose`` (a convolution's data gradient) is the GEMM the other way round, g (batch*OH*OW, F) @
filters^T (F, KH*KW*C), whose epilogue adds each output vector (one tap's channels for one pixel of g) onto
the input pixel that tap read: no zeros of padded borders are multiplied. Threads take whole images
(GemmSpec.row_group), each clears its images' part of dx first, so no two threads add into one pixel and
each pixel's sum runs in the same order for any thread count.

The spatial sizes must be static (the batch, and the channel count that the filter gradient's batch
becomes, may be symbolic).
"""
from llvmlite import ir

from ..graph.shapes import size
from .gemm import GemmSpec, emit_gemm, gemm_workspace_elems
from .irutil import I1, I8, I32, I64, ITEMSIZE, PTR, IR_TYPES, KernelBuilder, const, dim_value, intrinsic, loop
from .matmul import emit_gemm_kernel


def _static(dim):
    return dim if isinstance(dim, int) else None


def conv_spec(node) -> GemmSpec:
    _check_static(node)
    depth = size(node.inputs[1].shape[:3])
    return GemmSpec(node.dtype, _static(size(node.shape[:3])), _static(node.shape[3]), _static(depth), packs_a=True,
                    precision=node.attrs.get("precision", "float32"))


def _check_static(node):
    x, w = node.inputs[:2]
    for label, dims in (("input", x.shape[1:3]), ("filter", w.shape[:2]), ("output", node.shape[1:3]),
                        ("output channels", w.shape[2:3] if node.op.name == "conv_transpose" else ())):
        if not all(isinstance(d, int) for d in dims):
            raise NotImplementedError(f"the native backend needs static spatial sizes for {node.op.name}, got "
                                      f"{label} height and width {dims} ({node.name}, at {node.location}); "
                                      f"use the reference backend")


def conv_scratch_bytes_per_thread(node, target):
    return gemm_workspace_elems(conv_spec(node), target, k=size(node.inputs[1].shape[:3])) * ITEMSIZE[node.dtype]


def emit_conv(module, name, node, target, dim_index, updates=(), store_product=True) -> ir.Function:
    """``void name(out, x, filters, extras..., [update pointers...], scratch, i64 *dims, i32 tid, i32 nthreads)``
    (see matmul.emit_gemm_kernel)."""
    w = node.inputs[1]
    return emit_gemm_kernel(module, name, node, conv_spec(node), size(node.shape[:3]), size(w.shape[:3]), target,
                            dim_index, updates, store_product, pack_a=_Im2col(node, dim_index))


class _Im2col:
    """pack_a for a convolution: tile[r, (kh*KW + kw)*C + c] = xd[n, oh*s + kh*d - pad, ow*s + kw*d - pad, c]
    for the output pixel (n, oh, ow) of row ``row + r`` (xd: x with lhs_dilation - 1 zeros between elements)."""

    def __init__(self, node, dim_index):
        self.node, self.dim_index = node, dim_index
        x, w = node.inputs[:2]
        self.height, self.width = x.shape[1:3]
        self.taps = w.shape[:2]
        self.out_height, self.out_width = node.shape[1:3]
        self.element = IR_TYPES[node.dtype]
        self.itemsize = ITEMSIZE[node.dtype]

    def __call__(self, b, row, rows, tile, stride, args):
        node = self.node
        channels = dim_value(b, node.inputs[0].shape[3], args["dims"], self.dim_index)
        channel_bytes = b.mul(channels, const(self.itemsize))
        pixels = self.out_height * self.out_width
        with loop(b, const(0), const(rows), name="im2col.r") as r:
            m = b.add(row, r.index)
            with b.if_then(b.icmp_signed("<", m, args["M"])):
                image, pixel = b.udiv(m, const(pixels)), b.urem(m, const(pixels))
                out_row, out_col = b.udiv(pixel, const(self.out_width)), b.urem(pixel, const(self.out_width))
                source_image = b.mul(image, b.mul(const(self.height * self.width), channels))
                destination_row = b.mul(r.index, stride if isinstance(stride, ir.Value) else const(stride))
                with loop(b, const(0), const(self.taps[0]), name="im2col.kh") as kh:
                    in_row, row_ok = _input_index(b, self.node.attrs, out_row, kh.index, 0, self.height)
                    with loop(b, const(0), const(self.taps[1]), name="im2col.kw") as kw:
                        in_col, col_ok = _input_index(b, self.node.attrs, out_col, kw.index, 1, self.width)
                        tap = b.add(b.mul(kh.index, const(self.taps[1])), kw.index)
                        destination = self._pointer(b, tile, b.add(destination_row, b.mul(tap, channels)))
                        with b.if_else(b.and_(row_ok, col_ok)) as (inside, outside):
                            with inside:
                                pixel_offset = b.mul(b.add(b.mul(in_row, const(self.width)), in_col), channels)
                                source = self._pointer(b, args["A"], b.add(source_image, pixel_offset))
                                _memcpy(b, destination, source, channel_bytes)
                            with outside:
                                _memset_zero(b, destination, channel_bytes)

    def _pointer(self, b, base, offset):
        return b.gep(base, [offset], source_etype=self.element)


def _input_index(b, attrs, out_index, tap, axis, size):
    """The input element that output position ``out_index`` reads through ``tap`` on ``axis``, and
    whether there is one (not in the padding, not between the elements of a dilated input)."""
    stride, dilation = attrs["strides"][axis], attrs["rhs_dilation"][axis]
    lhs = attrs.get("lhs_dilation", (1, 1))[axis]
    position = b.sub(b.add(b.mul(out_index, const(stride)), b.mul(tap, const(dilation))),
                     const(attrs["padding"][axis][0]))
    valid = b.and_(b.icmp_signed(">=", position, const(0)), b.icmp_signed("<", position, const((size - 1) * lhs + 1)))
    if lhs == 1:
        return position, valid
    valid = b.and_(valid, b.icmp_signed("==", b.srem(position, const(lhs)), const(0)))
    return b.sdiv(position, const(lhs)), valid


def _memcpy(b, destination, source, nbytes):
    memcpy = intrinsic(b.module, "llvm.memcpy", ir.VoidType(), [PTR, PTR, I64, I1], [PTR, PTR, I64])
    b.call(memcpy, [destination, source, nbytes, ir.Constant(I1, 0)])


def _memset_zero(b, destination, nbytes):
    memset = intrinsic(b.module, "llvm.memset", ir.VoidType(), [PTR, I8, I64, I1], [PTR, I64])
    b.call(memset, [destination, ir.Constant(I8, 0), nbytes, ir.Constant(I1, 0)])


# ---- conv_transpose: g @ w^T, scattered back onto the input pixels -------------------------------
def conv_transpose_spec(node) -> GemmSpec:
    _check_static(node)
    g, w = node.inputs
    pixels = g.shape[1] * g.shape[2]
    return GemmSpec(node.dtype, _static(size(g.shape[:3])), size(w.shape[:3]), _static(w.shape[3]),
                    trans_b=True, row_group=pixels, precision=node.attrs.get("precision", "float32"))


def conv_transpose_scratch_bytes_per_thread(node, target):
    return gemm_workspace_elems(conv_transpose_spec(node), target, k=node.inputs[1].shape[3]) * ITEMSIZE[node.dtype]


def emit_conv_transpose(module, name, node, target, dim_index) -> ir.Function:
    """``void name(dx, g, filters, scratch, i64 *dims, i32 tid, i32 nthreads)``."""
    spec = conv_transpose_spec(node)
    col2im = _Col2im(node, dim_index)
    gemm = emit_gemm(module, f"{name}_gemm", spec, target, col2im, [("dx", PTR), ("dims", PTR)],
                     prologue=col2im.clear)
    gemm.linkage = "internal"
    kb = KernelBuilder.create(module, name, 3, dim_index)
    g, w, scratch = kb.inputs
    g_shape = node.inputs[0].shape
    rows = const(spec.M) if spec.M is not None else kb.dim(size(g_shape[:3]))
    depth = [] if spec.K is not None else [kb.dim(g_shape[3])]
    kb.builder.call(gemm, [g, w, ir.Constant(PTR, None), rows, scratch, *kb.function.args[-2:], *depth, kb.out,
                           kb.dims])
    return kb.finish()


class _Col2im:
    """The epilogue of conv_transpose: dx[n, oh*s + kh*d - pad, ow*s + kw*d - pad, c] += acc for the pixel
    (n, oh, ow) of row ``row`` and the tap and channels (kh, kw, c..) of column ``col``."""

    def __init__(self, node, dim_index):
        self.node, self.dim_index = node, dim_index
        g, w = node.inputs
        self.out_height, self.out_width = g.shape[1:3]
        self.height, self.width = node.shape[1:3]
        self.taps = w.shape[:2]
        self.channels = w.shape[2]
        self.element = IR_TYPES[node.dtype]

    def clear(self, b, row_begin, row_end, args):
        """dx = 0 on the images of rows row_begin..row_end-1 (whole images: GemmSpec.row_group)."""
        pixels = const(self.out_height * self.out_width)
        image_size = b.mul(const(self.height * self.width * ITEMSIZE[self.node.dtype]), self._channels(b, args))
        first, end = b.udiv(row_begin, pixels), b.udiv(row_end, pixels)
        start = b.gep(args["dx"], [b.mul(first, image_size)], source_etype=ir.IntType(8))
        _memset_zero(b, start, b.mul(b.sub(end, first), image_size))

    def __call__(self, b, row, col, acc, lanes, args):
        channels = self._channels(b, args)
        image, pixel = b.udiv(row, const(self.out_height * self.out_width)), \
            b.urem(row, const(self.out_height * self.out_width))
        out_row, out_col = b.udiv(pixel, const(self.out_width)), b.urem(pixel, const(self.out_width))
        if isinstance(self.channels, int) and self.channels % lanes == 0:  # the lanes are one tap's channels
            self._add(b, args, image, out_row, out_col, col, channels, acc)
            return
        for lane in range(lanes):  # lanes of several taps
            value = acc if lanes == 1 else b.extract_element(acc, ir.Constant(I32, lane))
            self._add(b, args, image, out_row, out_col, b.add(col, const(lane)), channels, value)

    def _add(self, b, args, image, out_row, out_col, col, channels, value):
        """dx[image, the pixel tap col // C read, col % C...] += value, if the tap read a pixel."""
        tap, channel = b.udiv(col, channels), b.urem(col, channels)
        in_row, row_ok = _input_index(b, self.node.attrs, out_row, b.udiv(tap, const(self.taps[1])), 0, self.height)
        in_col, col_ok = _input_index(b, self.node.attrs, out_col, b.urem(tap, const(self.taps[1])), 1, self.width)
        with b.if_then(b.and_(row_ok, col_ok)):
            pixel = b.add(b.mul(b.add(b.mul(image, const(self.height)), in_row), const(self.width)), in_col)
            pointer = b.gep(args["dx"], [b.add(b.mul(pixel, channels), channel)], source_etype=self.element)
            align = ITEMSIZE[self.node.dtype]
            b.store(b.fadd(b.load(pointer, typ=value.type, align=align), value), pointer, align=align)

    def _channels(self, b, args):
        return dim_value(b, self.channels, args["dims"], self.dim_index)
