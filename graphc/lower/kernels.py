"""Op name -> kernel emitter, for every op except matmul (the program builder adds that).

Every emitter is `emit(module, name, node, target, dim_index) -> ir.Function`
adding `void name(T_out* out, T_in0* in0, ..., i64* dims, i32 tid, i32 nthreads)`
to `module`; see irutil.py for the calling convention.
"""
from .elementwise import emit_elementwise
from .layout import emit_broadcast_to, emit_concatenate, emit_reshape, emit_slice, emit_transpose, emit_unslice
from .nn import emit_log_softmax, emit_one_hot, emit_softmax
from .reduce import emit_argmax, emit_reduce

EMITTERS = {
    "elementwise": emit_elementwise,
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
}
