"""Op name -> kernel emitter.

Every emitter is `emit(module, name, node, target, dim_index) -> ir.Function`
adding `void name(T_out* out, T_in0* in0, ..., i64* dims, i32 tid, i32 nthreads)`
to `module` (GEMM kernels, those in SCRATCH, take one more pointer before `dims`: their packing scratch);
see irutil.py for the calling convention.
"""
from .collective import emit_allreduce, emit_allreduce_start, emit_allreduce_wait
from .conv import conv_scratch_bytes_per_thread, conv_transpose_scratch_bytes_per_thread, emit_conv, emit_conv_transpose
from .elementwise import emit_elementwise
from .gather import emit_scatter_add, emit_take
from .matmul import emit_matmul, scratch_bytes_per_thread
from .layout import emit_broadcast_to, emit_concatenate, emit_reshape, emit_slice, emit_transpose, emit_unslice
from .nn import emit_log_softmax, emit_one_hot, emit_softmax
from .random import emit_random
from .pool import emit_avg_pool2d, emit_avg_pool2d_grad, emit_max_pool2d, emit_max_pool2d_grad
from .reduce import emit_argmax, emit_reduce

EMITTERS = {
    "elementwise": emit_elementwise,
    "matmul": emit_matmul,
    "fused_matmul": emit_matmul,
    "conv": emit_conv,
    "fused_conv": emit_conv,
    "conv_transpose": emit_conv_transpose,
    "reduce_sum": emit_reduce,
    "reduce_max": emit_reduce,
    "reduce_min": emit_reduce,
    "argmax": emit_argmax,
    "softmax": emit_softmax,
    "log_softmax": emit_log_softmax,
    "one_hot": emit_one_hot,
    "transpose": emit_transpose,
    "broadcast_to": emit_broadcast_to,
    "reshape": emit_reshape,
    "slice": emit_slice,
    "unslice": emit_unslice,
    "concatenate": emit_concatenate,
    "take": emit_take,
    "scatter_add": emit_scatter_add,
    "max_pool2d": emit_max_pool2d,
    "max_pool2d_grad": emit_max_pool2d_grad,
    "fused_max_pool2d_grad": emit_max_pool2d_grad,
    "avg_pool2d": emit_avg_pool2d,
    "avg_pool2d_grad": emit_avg_pool2d_grad,
    "random": emit_random,
    "allreduce": emit_allreduce,
    "allreduce_start": emit_allreduce_start,
    "allreduce_wait": emit_allreduce_wait,
}

# The GEMM-based emitters take a packing scratch: op name -> its bytes per thread (an int, or a sympy
# expression of the run-time dims).
SCRATCH = {
    "matmul": scratch_bytes_per_thread,
    "fused_matmul": scratch_bytes_per_thread,
    "conv": conv_scratch_bytes_per_thread,
    "fused_conv": conv_scratch_bytes_per_thread,
    "conv_transpose": conv_transpose_scratch_bytes_per_thread,
}
