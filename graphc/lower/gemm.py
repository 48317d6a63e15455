"""Native GEMM generator: C = op(A) @ op(B), emitted as LLVM IR.

Design (BLIS-style, specialised for static N and K where they are known):

* A register-blocked micro-kernel computes a `rows x (vectors*lanes)` tile of
  C.  The whole tile stays in vector registers for the *entire* K reduction
  (one FMA per accumulator per k, A broadcast, B loaded as vectors), so the
  epilogue runs exactly once per output element.  The tile shape is picked per
  GEMM from the target's register count by a small cost model
  (`choose_micro_tile`), e.g. 6x64 / 14x32 / 16x16 on AVX-512 fp32, 6x16 on AVX2.
* B is packed, per thread, into K x cols panels (contiguous vectors per k,
  zero padded at the right edge).  Packing also performs the transposition when
  `trans_b`, so no transposed copy is ever made outside the kernel.
* A is read in place for full row tiles: a(r, k) sits at one pointer plus a
  static offset r*K (row-major) or r (trans_a, where the pointer steps by M per
  k), so the kernel needs a single address register for all of its rows.  The
  last, partial row tile runs the same kernel on the last tile.rows rows of A,
  its epilogue skipping the rows above it (`_shifts_last_tile`): one K loop per
  panel width.  Only where M may be below one tile it is packed (a static M:
  k-major, zero padded rows; a run-time M: A's rows, row-major; a gathered A
  reads its rows past M as row M-1) or, for a run-time M with trans_a or a
  run-time K (A not gathered), packed or read with clamped rows by a second
  kernel (`_a_partial`).
* A runtime K (spec.K None: K is the batch in weight-gradient GEMMs such as
  x^T @ dh) reads A in place: the partial row tile too, with its excess rows
  redirected to row M-1.  B stored K x N is read in place as well, with masked
  loads at the right edge (the workspace size is 0).  B stored N x K (trans_b:
  the gradient g @ B^T of a product with symbolic columns) is packed, in
  blocks of at most _RUNTIME_K_BLOCK_COLS columns, so the workspace is K times
  that: `gemm_workspace_elems(spec, target, k)` takes the run-time K (an int,
  or the sympy expression a program sizes its scratch with at each call).
  K may be 0 (C = epilogue(0)).
* An implicit GEMM (spec.packs_a: a convolution, whose op(A) is the im2col
  matrix) has no A in memory: a `pack_a(builder, row, rows, tile, stride,
  args)` callable writes rows row..row+rows-1 of op(A) (rows past M may hold
  anything) into a per-thread tile, row-major with a padded `stride`, right
  before the micro-kernel runs that tile against every panel of the B block.
  Threads then always split M, so no row tile is packed twice.
* Row groups (spec.row_group, for an epilogue that scatters each row's
  result into a region of its group, as a convolution's data gradient does
  into its image): threads and row blocks take whole groups, tiles may run
  past a block's end (those rows are left to the next block), and a
  `prologue(builder, row_begin, row_end, args)` runs once per thread before
  its rows (to clear what the epilogue accumulates into).  Each group's rows
  are then visited in the same order for any thread count.
* Column edges: the last, partial column panel gets its own narrower kernel
  (fewer vectors); its last partial vector reaches the epilogue in
  power-of-two pieces (10 columns of 16 lanes: 8 lanes, then 2).  With a
  static N that kernel's width is static.  A runtime N (spec.N None: the
  batch in Gram matrices such as X @ X^T) keeps the same loops with run-time
  bounds: the edge panel dispatches on its number of vectors (one kernel per
  count, 1..tile.vectors), whose last vector holds a run-time 1..lanes columns:
  packed zero padded through a masked load (or a clamped, selected scalar load
  when trans_b), and handed to the epilogue in the pieces its bits select.  B
  blocks are then packed at most _RUNTIME_N_BLOCK_COLS columns wide, so the
  workspace does not depend on N.
* bfloat16 operands (spec.precision "bfloat16", a product the autocast pass
  marked: graphc/passes/autocast.py): A and B are both packed, and the
  packing rounds every float32 operand to bfloat16 (nearest even, NaN kept).
  Where the target has AVX512-BF16 the packing also pairs k and k+1 of each
  row of op(B) (and of op(A)) into one 32-bit lane, zero padding an odd K, and
  the micro-kernel runs `vdpbf16ps` (two products per lane per instruction,
  summed in float32); elsewhere it stores the rounded values as float32 and
  the float32 micro-kernel runs: the same products, summed in another order.
  A is packed a block of rows at a time, once per B block, tile by tile:
  a row-major A tile by tile row (k or k-pairs side by side, a vector at a
  time, rows a cache-line-padded stride apart), a K x M one (trans_a) k-major
  (masked vectors of the tile's rows); an implicit GEMM's packed tile is
  rounded row by row in place.  The rounding is integer arithmetic on the
  float32 bits, tested against ml_dtypes (graphc.graph.dtypes.round_to_bfloat16).
  The accumulators, the epilogue and its fusions are the float32 ones.
* A gathered A (spec.gather_a: a product of take(x, indices, axis=0), the
  take folded into the GEMM by graphc/passes/fusion.py): op(A)'s row i is
  the stored row indices[i] of A (trans_a: op(A)'s column k is A's row
  indices[k]), read in place or packed through the indices, never copied
  whole.  A row-major tile loads its rows' offsets before the K loop; a
  trans_a tile looks up indices[k] in the K loop (`_ATile.k_gathered`).
  The indices come in the extra arguments "A.indices" and "A.rows" (A's
  stored rows, to wrap a negative index as numpy does); the caller checked
  that each lies in range before calling (graphc/lower/matmul.py).
* Threading: each of `nthreads` callers computes a disjoint block of C.  The
  N dimension is split in whole panels when there are at least `nthreads`
  panels (counted at run time when N is), otherwise the M dimension in whole
  row tiles; an implicit GEMM splits M unless it has fewer row tiles than
  threads.  No synchronisation.

Generated signature:

    void name(T* A, T* B, T* C, i64 M, T* workspace, i32 tid, i32 nthreads,
              [i64 K, only when spec.K is None,] [i64 N, only when spec.N is None,]
              <extra args>...)

A is M x K (or K x M if trans_a), B is K x N (or N x K if trans_b), C is M x N,
all row-major and contiguous; A, B, C and workspace must not overlap.  When
`spec.M` is an int the M argument is ignored and the static value used.  A
runtime N may be 0 (nothing is written), as may M.
Thread `tid` (0 <= tid < nthreads) uses
`workspace + tid * gemm_workspace_elems(spec, target, K)`; any alignment works,
64 bytes is fastest.

Epilogue hook: `epilogue(builder, row, col, acc, lanes, args)` is called once
per output vector after the full K sum, only for in-bounds elements:
`row`, `col` are i64 values (C[row, col:col+lanes]), `acc` is a
<lanes x T> vector (fewer lanes than the tile's at the right edge), or a scalar
T when lanes == 1.
`args` maps 'A', 'B', 'C', 'workspace', 'tid', 'nthreads' and every extra
argument name to its ir.Value, 'M' and 'K' to i64 values (constants when
static) and 'N' to an i64 value (the row stride of C; a constant when static).  The
callable must store the result itself; `store_to_c` is the default and can be
reused by fused epilogues after transforming `acc`.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace
from typing import Callable, Sequence

from llvmlite import ir
from llvmlite.ir import types as ir_types

from graphc.lower.irutil import (I1, I32, I64, IR_TYPES, ITEMSIZE, PTR, call_intrinsic, const, constant_like, imin,
                                 intrinsic, itemsize_of, loop, splat)
from graphc.lower.target import Target

# Cache budgets (bytes): the rows of A that stream past one packed B panel,
# plus that panel, should stay in L2; the packed B block (the per-thread
# workspace) only has to fit comfortably in L3.
_A_BLOCK_BYTES = 256 * 1024
_B_BLOCK_BYTES = 2 * 1024 * 1024
# Beyond this many rows a taller tile gains nothing but code size.
_MAX_TILE_ROWS = 16
# L1d geometry (32 KiB, 8 ways) for the in-place A conflict check: at most 4
# of the 8 ways may hold A rows, the rest is left for the B panel and C.
_L1_WAY_BYTES = 4096
_CACHE_LINE = 64
_A_ROWS_PER_L1_SET = 4
# Sizes assumed by the tile cost model when M or K is only known at run time.
_TYPICAL_M = 128
_TYPICAL_K = 128
_TYPICAL_N = 128
# A runtime N is packed in B blocks of at most this many columns (rounded up
# to whole panels): re-reading A once per block costs ~1/this of the FMAs,
# and the workspace stays a static size.
_RUNTIME_N_BLOCK_COLS = 1024
# A runtime K with B stored N x K packs B blocks K deep, so the workspace grows
# with K: keep them this many columns wide at most (rounded up to whole panels).
_RUNTIME_K_BLOCK_COLS = 128
# Below this static K a tile's epilogue is unrolled over its rows (its sums stay in registers) rather than a
# loop: storing the sums and reloading them row by row costs about 1/K of the K loop (dy @ W2^T, K = 10: 10%).
_UNROLLED_EPILOGUE_K = 256
# A packed A tile's row stride is K rounded up to a cache line, plus a line
# when that is a multiple of 1 KiB (rows would share L1 sets): at most this
# many elements more than K.
_PACKED_A_PAD = 2 * _CACHE_LINE // 4

Epilogue = Callable[[ir.IRBuilder, ir.Value, ir.Value, ir.Value, int, dict], None]
PackA = Callable[[ir.IRBuilder, ir.Value, int, ir.Value, "int | ir.Value", dict], None]
Prologue = Callable[[ir.IRBuilder, ir.Value, ir.Value, dict], None]


class _BFloatType(ir_types._BaseFloatType):
    """LLVM's ``bfloat``, which llvmlite's IR builder has no class for: the operand type of ``vdpbf16ps``."""
    null = "0.0"
    intrinsic_name = "bf16"

    def __str__(self):
        return "bfloat"


_BFloatType._create_instance()
# acc + a[2i] b[2i] + a[2i+1] b[2i+1] per float32 lane i: <16 x float> (<16 x float>, <32 x bfloat>, <32 x bfloat>)
_BF16_DOT = "llvm.x86.avx512bf16.dpbf16ps.512"
BF16_PAIRS = ir.VectorType(_BFloatType(), 32)
PRECISIONS = ("float32", "bfloat16")  # what the operands are rounded to before their float32 products


@dataclass(frozen=True)
class GemmSpec:
    dtype: str
    M: int | None
    N: int | None
    K: int | None
    trans_a: bool = False
    trans_b: bool = False
    packs_a: bool = False  # op(A) exists only through a packer (an implicit GEMM such as a convolution)
    row_group: int = 0  # threads and row blocks take whole groups of this many rows (M is a multiple of it)
    precision: str = "float32"  # "bfloat16": float32 operands rounded to bfloat16 as they are packed
    gather_a: str | None = None  # the dtype of the indices that pick A's stored rows (see the module docstring)

    def __post_init__(self):
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"unsupported dtype {self.dtype!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown GEMM precision {self.precision!r}; known: {', '.join(PRECISIONS)}")
        if self.rounds and self.dtype != "float32":
            raise ValueError("bfloat16 operands need a float32 GEMM")
        if ((self.N is not None and self.N < 1) or (self.K is not None and self.K < 1)
                or (self.M is not None and self.M < 0)):
            raise ValueError(f"invalid GEMM shape M={self.M} N={self.N} K={self.K}")

    @property
    def packs_b(self) -> bool:
        """Whether B is packed into the workspace (else read in place: a runtime K, B stored K x N)."""
        return self.K is not None or self.trans_b or self.rounds

    @property
    def rounds(self) -> bool:
        """Whether the operands are rounded to bfloat16 (A and B are then both packed)."""
        return self.precision == "bfloat16"


def uses_bf16_dot(spec: GemmSpec, target: Target) -> bool:
    """Whether the GEMM runs `vdpbf16ps` on k-pairs (bfloat16 operands on a target with AVX512-BF16)."""
    return spec.rounds and target.has_feature("avx512bf16") and target.lanes("float32") == 16


@dataclass(frozen=True)
class MicroTile:
    """Register block of C: `rows` x `vectors` vectors of `lanes` elements."""
    rows: int
    vectors: int
    lanes: int

    @property
    def cols(self) -> int:
        return self.vectors * self.lanes


@dataclass(frozen=True)
class _Blocking:
    tile: MicroTile
    block_rows: int  # rows of A streamed past each B panel (multiple of tile.rows)
    block_cols: int  # columns of B per packed B block (multiple of tile.cols)


# ---------------------------------------------------------------------------
# Tile selection and blocking (pure Python, no IR)
# ---------------------------------------------------------------------------

def _max_rows_in_place(spec: GemmSpec) -> int:
    """Most tile rows a row-major A can be read in place with.

    Those rows are K elements apart; when that stride is a multiple of a large
    power of two (K = 512, 1024 in fp32) many rows fall into the same L1 set
    and evict each other every k.  Allow at most _A_ROWS_PER_L1_SET distinct
    lines of those rows per set.
    trans_a tiles read consecutive elements, and packed A tiles have a padded
    row stride (`_packed_a_stride`), so neither is limited.
    """
    if spec.trans_a or spec.packs_a or spec.rounds:
        return _MAX_TILE_ROWS
    if spec.K is None:
        return _A_ROWS_PER_L1_SET  # unknown stride: one address register per row
    stride = spec.K * ITEMSIZE[spec.dtype]
    rows = 1
    while rows < _MAX_TILE_ROWS:
        lines = {r * stride // _CACHE_LINE for r in range(rows + 1)}
        lines_per_set = Counter(line % (_L1_WAY_BYTES // _CACHE_LINE) for line in lines)
        if max(lines_per_set.values()) > _A_ROWS_PER_L1_SET:
            break
        rows += 1
    return rows


def _candidate_tiles(spec: GemmSpec, target: Target) -> list[MicroTile]:
    # Accumulators + one register per B vector + one for the A broadcast + one
    # spare must fit in the register file, or LLVM spills in the inner loop.
    lanes = target.lanes(spec.dtype)
    max_rows = _max_rows_in_place(spec)
    if spec.M is not None and spec.M > 0:  # a tile taller than M would multiply rows that are not there
        max_rows = min(max_rows, spec.M)
    tiles = []
    for vectors in range(1, 5):
        rows = min(max_rows, (target.vector_registers - vectors - 2) // vectors)
        if rows >= 1:
            tiles.append(MicroTile(rows, vectors, lanes))
    return tiles


def _tile_cycles(tile: MicroTile, vectors: int, K: int, target: Target, pairs: bool = False) -> float:
    """Rough cycles for one tile: FMA-bound or load-bound (2 loads/cycle; every
    A broadcast and B vector is a load), plus loop and epilogue overhead.
    Two FMA pipes of 256 bits: one 512-bit FMA or two narrower ones per cycle.
    `pairs` (vdpbf16ps): K/2 steps, in which each row's broadcast k-pair also
    takes a vector pipe slot (measured on Zen 4: a 16x16 tile reaches 56% of
    the vdpbf16ps peak on 128x784 @ 784x512, 9x48 and 6x64 tiles 82%)."""
    fmas_per_cycle = 1 if target.vector_bytes > 32 else 2
    steps, vector_ops = (math.ceil(K / 2), tile.rows * (vectors + 1)) if pairs else (K, tile.rows * vectors)
    per_k = max(vector_ops / fmas_per_cycle, (tile.rows + vectors) / 2) + 1
    return steps * per_k + tile.rows * vectors + 10


def _busiest_thread_cycles(spec: GemmSpec, target: Target, tile: MicroTile,
                           nthreads: int) -> float:
    """Mirror of the run-time work split, returning the slowest thread's cycles."""
    m = spec.M if spec.M is not None else _TYPICAL_M
    k = spec.K if spec.K is not None else _TYPICAL_K
    n = spec.N if spec.N is not None else _TYPICAL_N
    row_tiles = math.ceil(m / tile.rows)
    full_panels, edge = divmod(n, tile.cols)
    pairs = uses_bf16_dot(spec, target)
    panel_costs = [_tile_cycles(tile, tile.vectors, k, target, pairs)] * full_panels
    if edge:
        panel_costs.append(_tile_cycles(tile, math.ceil(edge / tile.lanes), k, target, pairs))
    if len(panel_costs) >= nthreads:
        shares = [panel_costs[t * len(panel_costs) // nthreads:
                              (t + 1) * len(panel_costs) // nthreads]
                  for t in range(nthreads)]
        return row_tiles * max(sum(share) for share in shares)
    return math.ceil(row_tiles / nthreads) * sum(panel_costs)


def choose_micro_tile(spec: GemmSpec, target: Target) -> MicroTile:
    """The register tile with the lowest estimated time at 1 and 2 threads."""
    return min(_candidate_tiles(spec, target),
               key=lambda tile: sum(_busiest_thread_cycles(spec, target, tile, threads)
                                    for threads in (1, 2)))


def _round_down(value: int, multiple: int) -> int:
    return max(multiple, value // multiple * multiple)


def _blocking(spec: GemmSpec, target: Target) -> _Blocking:
    tile = choose_micro_tile(spec, target)
    k_bytes = (spec.K if spec.K is not None else _TYPICAL_K) * ITEMSIZE[spec.dtype]
    block_rows = _round_down(_A_BLOCK_BYTES // k_bytes, spec.row_group or tile.rows)
    n = spec.N if spec.N is not None else _RUNTIME_N_BLOCK_COLS
    padded_n = math.ceil(n / tile.cols) * tile.cols
    if not spec.packs_b:  # B is read in place: no packed block to size
        return _Blocking(tile, block_rows, padded_n)
    if spec.K is None:  # packed K deep, K unknown: narrow blocks bound the workspace per unit of K
        return _Blocking(tile, block_rows, min(padded_n, math.ceil(_RUNTIME_K_BLOCK_COLS / tile.cols) * tile.cols))
    block_cols = min(padded_n, _round_down(_B_BLOCK_BYTES // k_bytes, tile.cols))
    return _Blocking(tile, block_rows, block_cols)


def gemm_workspace_elems(spec: GemmSpec, target: Target, k=None):
    """Scratch elements (of spec.dtype) needed by EACH thread: an int that
    does not depend on N.  With a runtime K: 0 when B is read in place, else
    `k` (the run-time K: an int, or a sympy expression) times the packed
    block's columns; plus, when A is packed, one row tile of A."""
    blocking = _blocking(spec, target)
    if spec.K is None and k is None and (spec.packs_b or spec.packs_a):
        raise ValueError("a runtime K with packed panels sizes them by K: pass the run-time K as k")
    depth = spec.K if spec.K is not None else k
    packed_b = depth * blocking.block_cols if spec.packs_b else 0
    if spec.rounds:  # the packed B block, then a packed block of rows of A (k-pairs take half as many elements;
        # with row groups the last tile may run a tile past the block)
        return packed_b + (blocking.block_rows + blocking.tile.rows) * (depth + _PACKED_A_PAD)
    if spec.packs_a:
        return packed_b + blocking.tile.rows * (depth + _PACKED_A_PAD)
    if spec.K is None:
        return packed_b
    # The packed B block, then room for the one packed partial row tile of A.
    return packed_b + spec.K * blocking.tile.rows


# ---------------------------------------------------------------------------
# The default epilogue and the emitter's operand descriptions
# ---------------------------------------------------------------------------

def store_to_c(builder: ir.IRBuilder, row: ir.Value, col: ir.Value, acc: ir.Value,
               lanes: int, args: dict) -> None:
    """Default epilogue: C[row, col:col+lanes] = acc."""
    element = acc.type if lanes == 1 else acc.type.element
    offset = builder.add(builder.mul(row, args["N"]), col)
    pointer = builder.gep(args["C"], [offset], source_etype=element)
    builder.store(acc, pointer, align=itemsize_of(element))


@dataclass(frozen=True)
class _ATile:
    """Where the kernel finds a(r, k): base + row_offsets[r] + k*k_stride, or with `k_gathered` (a trans_a A
    whose k's pick its stored rows) base + row_offsets[r] + indices[k]*k_stride."""
    base: ir.Value
    row_offsets: list  # int (a static displacement) or i64 value, per row
    k_stride: int | ir.Value
    rows_may_exceed_m: bool  # partial tile: the epilogue must guard rows
    k_gathered: bool = False


@dataclass(frozen=True)
class _BPanel:
    """Where the kernel finds op(B)[k, col:col+width]: base + k*k_stride.

    A packed panel is zero padded to whole vectors; a panel read in place (B
    row-major, runtime K) loads its last partial vector with a mask."""
    base: ir.Value
    k_stride: int | ir.Value
    in_place: bool


@dataclass(frozen=True)
class _PanelWidth:
    """The columns of one B panel: `vectors` vectors, all full but the last,
    which holds `last` (1..lanes) columns: an int when N is static, an i64
    value for the edge panel of a runtime N."""
    vectors: int
    last: int | ir.Value
    lanes: int

    @staticmethod
    def of(width: int, lanes: int) -> "_PanelWidth":
        vectors = math.ceil(width / lanes)
        return _PanelWidth(vectors, width - (vectors - 1) * lanes, lanes)

    @property
    def padded(self) -> int:
        return self.vectors * self.lanes

    def is_full(self, v: int) -> bool:
        """Whether vector v is known to hold `lanes` columns."""
        return v < self.vectors - 1 or (isinstance(self.last, int) and self.last == self.lanes)


@dataclass(frozen=True)
class _ThreadRange:
    row_begin: ir.Value
    row_end: ir.Value
    col_begin: ir.Value
    col_end: ir.Value


# ---------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------

class _GemmEmitter:
    def __init__(self, function: ir.Function, spec: GemmSpec, target: Target,
                 epilogue: Epilogue, extra_names: Sequence[str], pack_a: PackA | None = None,
                 prologue: Prologue | None = None):
        if spec.packs_a != (pack_a is not None):
            raise ValueError("a GEMM that packs A needs a pack_a callable, and only it")
        self.pack_a = pack_a
        self.prologue = prologue
        self.spec = spec
        self.target = target
        self.blocking = _blocking(spec, target)
        self.tile = self.blocking.tile
        self.element = IR_TYPES[spec.dtype]
        self.align = ITEMSIZE[spec.dtype]
        self.vector = ir.VectorType(self.element, self.tile.lanes)
        self.pairs = uses_bf16_dot(spec, target)  # packed rows hold k-pairs of bfloat16, summed by vdpbf16ps
        self.epilogue = epilogue
        self.builder = ir.IRBuilder(function.append_basic_block("entry"))

        runtime_k = ["K"] if spec.K is None else []
        runtime_n = ["N"] if spec.N is None else []
        names = ["A", "B", "C", "M", "workspace", "tid", "nthreads", *runtime_k, *runtime_n, *extra_names]
        self.args = dict(zip(names, function.args))
        self.M = self.args["M"] if spec.M is None else const(spec.M)
        self.K = self.args["K"] if spec.K is None else const(spec.K)
        self.N = self.args["N"] if spec.N is None else const(spec.N)
        self.args["M"], self.args["K"], self.args["N"] = self.M, self.K, self.N
        self.row_limit = self.M  # rows at or past it are not stored (with row groups: the row block's end)

    # -- small IR utilities -------------------------------------------------

    def _gep(self, base: ir.Value, offset: ir.Value) -> ir.Value:
        return self.builder.gep(base, [offset], source_etype=self.element)

    def _load_vector(self, pointer: ir.Value) -> ir.Value:
        return self.builder.load(pointer, typ=self.vector, align=self.align)

    def _lane_mask(self, count: int | ir.Value, lanes: int | None = None) -> ir.Value:
        """<lanes x i1>: lane < count (count static, or an i64 value); lanes: the tile's unless given."""
        lanes = lanes or self.tile.lanes
        if isinstance(count, int):
            return ir.Constant(ir.VectorType(I1, lanes), [int(lane < count) for lane in range(lanes)])
        indexes = ir.Constant(ir.VectorType(I64, lanes), list(range(lanes)))
        return self.builder.icmp_signed("<", indexes, splat(self.builder, count, lanes))

    def _masked_load_vector(self, pointer: ir.Value, count: int | ir.Value,
                            mask: ir.Value | None = None, lanes: int | None = None) -> ir.Value:
        """Load the first `count` lanes from `pointer` (`mask`, if given, is
        their _lane_mask), the rest are 0.0; a vector of the tile's lanes unless `lanes` says."""
        lanes = lanes or self.tile.lanes
        vector = ir.VectorType(self.element, lanes)
        mask = self._lane_mask(count, lanes) if mask is None else mask
        zeros = ir.Constant(vector, [0.0] * lanes)
        masked_load = intrinsic(self.builder.module, "llvm.masked.load", vector,
                                [PTR, I32, mask.type, vector], suffix_types=[vector, PTR])
        return self.builder.call(masked_load, [pointer, ir.Constant(I32, self.align), mask, zeros])

    def _load_scalar(self, pointer: ir.Value) -> ir.Value:
        return self.builder.load(pointer, typ=self.element, align=self.align)

    def _scaled(self, count: int, stride: int | ir.Value) -> int | ir.Value:
        """count * stride, folded to an int when the stride is static."""
        if isinstance(stride, int):
            return count * stride
        return self._mul(const(count), stride)

    def _offset(self, base: ir.Value, offset: int | ir.Value) -> ir.Value:
        return self._gep(base, const(offset) if isinstance(offset, int) else offset)

    def _mul(self, a: ir.Value, b: int | ir.Value) -> ir.Value:
        return self.builder.mul(a, const(b) if isinstance(b, int) else b)

    def _add(self, a: ir.Value, b: int | ir.Value) -> ir.Value:
        return self.builder.add(a, const(b) if isinstance(b, int) else b)

    def _no_unroll_loop_id(self) -> ir.MDValue:
        """A fresh `llvm.loop` ID asking LLVM not to unroll the loop.

        The kernel body is already `rows x vectors` FMAs wide; unrolling it
        fully for a small static K only makes LLVM's loop analyses (quadratic
        in memory operations) slow down compilation of the enclosing loop."""
        module = self.builder.module
        disable = module.add_metadata([ir.MetaDataString(module, "llvm.loop.unroll.disable")])
        # Loop IDs must refer to themselves, which add_metadata cannot express:
        # create a node with a unique placeholder, then point it at itself.
        placeholder = ir.MetaDataString(module, f"graphc.loop.{len(module.metadata)}")
        loop_id = module.add_metadata([placeholder, disable])
        loop_id.operands = (loop_id, disable)
        return loop_id

    # -- top level ----------------------------------------------------------

    def emit(self) -> None:
        # The sums of a tile, from its K loop (whichever variant ran) to its one epilogue.
        self.sums = self.builder.alloca(self.vector, size=self.tile.rows * self.tile.vectors, name="sums")
        self.k_steps = self._packed_rows()
        if self.spec.rounds:  # elements per packed A tile row (row-major A), or per packed tile (trans_a)
            self.a_tile_stride = self.k_steps if self.spec.trans_a else self._packed_a_stride(self.k_steps)
        thread = self._thread_range()
        if self.prologue is not None:
            self.prologue(self.builder, thread.row_begin, thread.row_end, self.args)
        tid = self.builder.sext(self.args["tid"], I64)
        workspace_elems = 0  # B read in place: nothing packed
        if self.spec.K is not None:
            workspace_elems = gemm_workspace_elems(self.spec, self.target)
        elif self.spec.rounds:  # K deep panels of B and K deep tiles of a block of rows of A
            a_rows = self.blocking.block_rows + self.tile.rows
            workspace_elems = self._add(self._mul(self.K, self.blocking.block_cols + a_rows), a_rows * _PACKED_A_PAD)
        elif self.spec.packs_b and not self.spec.packs_a:  # K deep panels, K known at run time
            workspace_elems = self._mul(self.K, self.blocking.block_cols)
        elif self.spec.packs_a:  # a packed A tile only: the K deep panels of B are read in place
            workspace_elems = self._mul(self._add(self.K, _PACKED_A_PAD), self.tile.rows)
        workspace = self._gep(self.args["workspace"], self._mul(tid, workspace_elems))
        packed_b = workspace
        packed_a = self._gep(workspace, self._scaled(self.blocking.block_cols, self.K)) if self.spec.packs_b \
            else workspace
        if self.spec.packs_a:
            self._emit_packed_a_blocks(thread, packed_a, packed_b)
        else:
            self._emit_blocks(thread, packed_a, packed_b)
        self.builder.ret_void()

    def _packed_rows(self) -> ir.Value:
        """Rows of a packed panel or A tile: K, or ceil(K/2) k-pairs for vdpbf16ps."""
        if not self.pairs:
            return self.K
        if self.spec.K is not None:
            return const((self.spec.K + 1) // 2)
        return self.builder.lshr(self._add(self.K, 1), const(1))

    def _thread_range(self) -> _ThreadRange:
        """Split N in whole panels if there are >= nthreads panels (an implicit GEMM: and fewer row tiles
        than threads), else M in whole row tiles.  Ranges are half-open; an empty range means no work."""
        b = self.builder
        tile = self.tile
        tid = b.sext(self.args["tid"], I64)
        nthreads = b.sext(self.args["nthreads"], I64)
        if self.spec.N is not None:
            panels = const(math.ceil(self.spec.N / tile.cols))
        else:
            panels = b.udiv(self._add(self.N, tile.cols - 1), const(tile.cols))
        row_unit = self.spec.row_group or tile.rows
        row_tiles = b.udiv(self._add(self.M, row_unit - 1), const(row_unit))

        def share(count: ir.Value, which: ir.Value) -> ir.Value:
            return b.sdiv(self._mul(which, count), nthreads)

        first, last = tid, self._add(tid, 1)
        # A packed A tile is packed once per block of columns: threads take rows, so none packs another's,
        # unless there are fewer row tiles than threads (a filter gradient's 9 rows): then each thread packs
        # the tile for its own columns. Row groups (a scatter epilogue's images) are never split.
        by_columns = b.icmp_signed(">=", panels, nthreads)
        if self.spec.row_group:
            by_columns = ir.Constant(I1, 0)
        elif self.spec.packs_a:
            by_columns = b.and_(by_columns, b.icmp_signed("<", row_tiles, nthreads))
        col_begin = self._mul(share(panels, first), tile.cols)
        col_end = imin(b, self._mul(share(panels, last), tile.cols), self.N)
        row_begin = self._mul(share(row_tiles, first), row_unit)
        row_end = imin(b, self._mul(share(row_tiles, last), row_unit), self.M)
        zero = const(0)
        return _ThreadRange(
            row_begin=b.select(by_columns, zero, row_begin),
            row_end=b.select(by_columns, self.M, row_end),
            col_begin=b.select(by_columns, col_begin, zero),
            col_end=b.select(by_columns, col_end, self.N),
        )

    def _emit_blocks(self, thread: _ThreadRange, packed_a: ir.Value,
                     packed_b: ir.Value) -> None:
        """For each B block: pack it; for each block of rows: pack the partial
        row tile if it is there, then run the micro-kernel over all
        (panel, row tile) pairs."""
        b = self.builder
        blocking = self.blocking
        with loop(b, thread.col_begin, thread.col_end, blocking.block_cols, "jc") as column_blocks:
            jc = column_blocks.index
            block_cols = imin(b, const(blocking.block_cols), b.sub(thread.col_end, jc))
            if self.spec.packs_b:
                self._emit_pack_b_block(jc, block_cols, packed_b)
            with loop(b, thread.row_begin, thread.row_end, blocking.block_rows, "ic") as row_blocks:
                ic = row_blocks.index
                block_rows = imin(b, const(blocking.block_rows), b.sub(thread.row_end, ic))
                if self.spec.row_group:  # tiles run past the block's end: only its own rows are finished
                    self.row_limit = b.add(ic, block_rows)
                if self.spec.rounds:
                    self._emit_pack_a_block(ic, block_rows, packed_a)
                else:
                    self._emit_pack_partial_a_tile(ic, block_rows, packed_a)
                self._emit_block_product(jc, block_cols, ic, block_rows, packed_a, packed_b)

    def _emit_packed_a_blocks(self, thread: _ThreadRange, packed_a: ir.Value, packed_b: ir.Value) -> None:
        """The implicit GEMM: for each B block (packed), for each row tile of the thread's rows: the packer
        writes op(A)'s rows row..row+tile.rows-1 into `packed_a` (row-major, a padded row stride), then the
        micro-kernel runs it against every panel of the block."""
        b = self.builder
        rows = self.tile.rows
        stride = self._packed_a_stride()
        offsets = [self._scaled(r, stride) for r in range(rows)]
        guard_rows = self.spec.M is None or self.spec.M % rows != 0
        with loop(b, thread.col_begin, thread.col_end, self.blocking.block_cols, "jc") as column_blocks:
            jc = column_blocks.index
            block_cols = imin(b, const(self.blocking.block_cols), b.sub(thread.col_end, jc))
            if self.spec.packs_b:
                self._emit_pack_b_block(jc, block_cols, packed_b)
            with loop(b, thread.row_begin, thread.row_end, rows, "ir") as tiles:
                row = tiles.index
                self.pack_a(b, row, rows, packed_a, stride, self.args)
                if self.spec.rounds:  # each packed row rounded (and paired) where it lies
                    with loop(b, const(0), const(rows), 1, "round_a.r") as tile_rows:
                        packed_row = self._gep(packed_a, self._mul(tile_rows.index, stride))
                        self._emit_round_row(packed_row, packed_row)
                a_tile = _ATile(packed_a, offsets, 1, rows_may_exceed_m=guard_rows)

                def tile(jr, col, width):
                    self._emit_micro_kernel(a_tile, self._b_panel(jr, col, width, packed_b), width)
                    self._emit_tile_epilogue(row, col, width, guard_rows)
                self._emit_for_each_panel(block_cols, jc, "jr", tile)

    def _packed_a_stride(self, elements: ir.Value | None = None) -> int | ir.Value:
        """`elements` (K unless given) rounded up to a cache line, plus a line where that would be a multiple
        of 1 KiB."""
        line = _CACHE_LINE // self.align
        elements = self.K if elements is None else elements
        if isinstance(elements, ir.Constant):
            stride = math.ceil(elements.constant / line) * line
            return stride + line if (stride * self.align) % 1024 == 0 else stride
        b = self.builder
        stride = self._mul(b.udiv(self._add(elements, line - 1), const(line)), line)
        aliased = b.icmp_signed("==", b.urem(stride, const(1024 // self.align)), const(0))
        return b.select(aliased, self._add(stride, line), stride)

    # -- packing ------------------------------------------------------------

    def _emit_for_each_panel(self, block_cols: ir.Value, jc: ir.Value, name: str,
                             body: Callable[[ir.Value, ir.Value, _PanelWidth], None]) -> None:
        """Loop over the column panels of a B block, calling
        body(jr, col, width) with the panel's _PanelWidth (the last panel of
        C may be narrower than a full tile)."""
        b = self.builder
        cols, lanes = self.tile.cols, self.tile.lanes
        full_width = _PanelWidth.of(cols, lanes)
        edge_width = self.spec.N % cols if self.spec.N is not None else None
        with loop(b, const(0), block_cols, cols, name) as panels:
            jr = panels.index
            col = b.add(jc, jr)
            if edge_width == 0:
                body(jr, col, full_width)
            elif edge_width is not None and edge_width == self.spec.N:  # N < cols: only the edge panel
                body(jr, col, _PanelWidth.of(edge_width, lanes))
            else:
                is_full = b.icmp_signed("<=", self._add(col, cols), self.N)
                with b.if_else(is_full) as (full, edge):
                    with full:
                        body(jr, col, full_width)
                    with edge:
                        if edge_width is not None:
                            body(jr, col, _PanelWidth.of(edge_width, lanes))
                        else:
                            self._emit_runtime_edge(b.sub(self.N, col), lambda width: body(jr, col, width))

    def _emit_runtime_edge(self, width: ir.Value,
                           body: Callable[[_PanelWidth], None]) -> None:
        """The edge panel of a runtime N, `width` (1..cols-1) columns wide:
        body(_PanelWidth) once per possible vector count, chosen by a switch."""
        b = self.builder
        lanes, most = self.tile.lanes, self.tile.vectors

        def last_columns(vectors: int) -> ir.Value:
            return b.sub(width, const((vectors - 1) * lanes))

        if most == 1:
            body(_PanelWidth(1, width, lanes))
            return
        vectors = b.udiv(self._add(width, lanes - 1), const(lanes))
        cases = [b.append_basic_block(f"edge.{count}") for count in range(1, most + 1)]
        merge = b.append_basic_block("edge.done")
        switch = b.switch(vectors, cases[-1])
        for count, block in enumerate(cases[:-1], start=1):
            switch.add_case(const(count), block)
        for count, block in enumerate(cases, start=1):
            b.position_at_end(block)
            body(_PanelWidth(count, last_columns(count), lanes))
            b.branch(merge)
        b.position_at_end(merge)

    def _emit_pack_b_block(self, jc: ir.Value, block_cols: ir.Value,
                           packed_b: ir.Value) -> None:
        """Pack B[:, jc:jc+block_cols] as consecutive K x width panels."""
        def pack_panel(jr, col, width):
            panel = self._gep(packed_b, self._mul(jr, self.k_steps))
            self._emit_pack_b_panel(col, panel, width)
        self._emit_for_each_panel(block_cols, jc, "pack_b", pack_panel)

    def _emit_pack_b_panel(self, col: ir.Value, panel: ir.Value, width: _PanelWidth) -> None:
        """panel[k, j] = op(B)[k, col + j] for the panel's columns, 0 up to a whole vector."""
        b = self.builder
        padded = width.padded
        # A run-time edge: the last vector's mask (row-major B) or the last
        # row of B (trans_b), computed once.
        mask = last_row = None
        if not isinstance(width.last, int):
            if self.spec.trans_b:
                last_row = b.sub(self.N, const(1))
            else:
                mask = self._lane_mask(width.last)

        def row_of_b(k, emit):
            if self.spec.trans_b:
                self._pack_b_row_transposed(col, k, width, last_row, emit)
            else:
                self._pack_b_row(col, k, width, mask, emit)
        with loop(b, const(0), self.k_steps, 1, "pack_b.k") as k_loop:
            dst_row = self._gep(panel, self._mul(k_loop.index, padded))
            self._packed(row_of_b, k_loop.index,
                         lambda offset, value: b.store(value, self._gep(dst_row, const(offset)), align=self.align))

    def _pack_b_row(self, col, k, width: _PanelWidth, mask, emit) -> None:
        """B is K x N: row k of the panel is a contiguous piece of row k of B: emit(offset, vector) each."""
        b = self.builder
        lanes = self.tile.lanes
        src_row = self._gep(self.args["B"], b.add(self._mul(k, self.N), col))
        for v in range(width.vectors):
            start = v * lanes
            source = self._gep(src_row, const(start))
            if width.is_full(v):
                vector = self._load_vector(source)
            else:
                # Right edge: load only the columns that exist, zeros elsewhere.
                vector = self._masked_load_vector(source, width.last, mask)
            emit(start, vector)

    def _pack_b_row_transposed(self, col, k, width: _PanelWidth, last_row, emit) -> None:
        """B is N x K: element j of row k of the panel is B[col + j, k]: emit(j, value) each.  In a
        run-time edge vector, columns past N read row N-1 and are 0."""
        b = self.builder
        zero = ir.Constant(self.element, 0.0)
        edge_start = (width.vectors - 1) * self.tile.lanes
        column_k = self._gep(self.args["B"], b.add(self._mul(col, self.K), k))  # B[col, k]; B[col + j, k] j rows on
        row_stride = self.spec.K if self.spec.K is not None else self.K
        for j in range(width.padded):
            if j < edge_start or (isinstance(width.last, int) and j < edge_start + width.last):
                value = self._load_scalar(self._offset(column_k, self._scaled(j, row_stride)))
            elif isinstance(width.last, int):
                value = zero
            else:
                valid = b.icmp_signed(">", width.last, const(j - edge_start))
                source_row = imin(b, self._add(col, j), last_row)
                offset = b.add(self._mul(source_row, self.K), k)
                value = b.select(valid, self._load_scalar(self._gep(self.args["B"], offset)), zero)
            emit(j, value)

    def _packed(self, row_of, step: ir.Value, store) -> None:
        """store(offset, value) for the packed row `step`, from `row_of(k, emit)`, which calls emit(offset,
        float32 value) for the pieces of row k of the operand: stored as they are (float32); with bfloat16
        operands rounded (float32 bits whose lower half is zero); for vdpbf16ps rows 2 step and 2 step + 1
        rounded and paired in one 32-bit lane (k in the lower half, the bfloat16 element order), the second
        zero past an odd K."""
        b = self.builder
        if not self.spec.rounds:
            row_of(step, store)
            return
        if not self.pairs:
            row_of(step, lambda offset, value: store(offset, b.bitcast(_bf16_bits(b, value), value.type)))
            return
        first = b.mul(step, const(2))
        second = b.add(first, const(1))
        odd = self.spec.K is None or self.spec.K % 2 == 1
        if odd:  # the last pair of an odd K reads row K-1 twice and zeroes its second half
            exists = b.icmp_signed("<", second, self.K)
            second = b.select(exists, second, first)
        lows, highs = [], []
        row_of(first, lambda offset, value: lows.append((offset, value)))
        row_of(second, lambda offset, value: highs.append(value))
        for (offset, low), high in zip(lows, highs):
            high_bits = _bf16_bits(b, high)
            if odd:
                high_bits = b.select(exists, high_bits, ir.Constant(high_bits.type, None))
            store(offset, b.or_(high_bits, b.lshr(_bf16_bits(b, low), constant_like(high_bits.type, 16))))

    def _tiles_all_full(self) -> bool:
        """Whether every row tile is known to lie inside M (a static M of whole tiles, counted from row 0)."""
        return self.spec.M is not None and self.spec.M % self.tile.rows == 0 and not self.spec.row_group

    def _shifts_last_tile(self) -> bool:
        """Whether a row tile reaching past M runs the full tiles' K loop (A in place) on the last tile.rows
        rows of A instead, its epilogue skipping the rows above it (another tile's, maybe another thread's:
        stored once, as an epilogue with side effects needs): one K loop instead of two (`_a_shifted`).
        For a static M of a tile or more (A never packed); for a run-time M, where A is row-major and K
        static (a run-time M below one tile packs A's rows into the in-place layout) or A gathered."""
        if self.spec.rounds or self._tiles_all_full():
            return False
        if self.spec.M is not None:
            return self.spec.M >= self.tile.rows
        return not self.spec.trans_a and (self.spec.K is not None or self.spec.gather_a is not None)

    def _a_shifted(self, row: ir.Value, packed_a: ir.Value) -> tuple[ir.Value, _ATile]:
        """The tile of the rows from `row` or, where they reach past M, of the last tile.rows rows of A, read in
        place; and its first row.  A run-time M below one tile reads `packed_a` instead, rows 0..M-1 of A
        packed row-major by `_emit_pack_partial_a_tile` (the same offsets: K elements a row); a gathered A
        (each row's offset loaded from its index anyway) reads row M - 1 for the rows past M."""
        b = self.builder
        rows = self.tile.rows
        first = imin(b, row, b.sub(self.M, const(rows)))
        if self.spec.M is not None:
            return first, self._a_in_place(first)
        below_one_tile = b.icmp_signed("<", first, const(0))
        first = b.select(below_one_tile, const(0), first)
        if self.spec.gather_a is not None:
            last_row = b.sub(self.M, const(1))
            return first, self._a_tile_rows(first, [imin(b, self._add(first, r), last_row) for r in range(rows)],
                                            False)
        in_place = self._a_in_place(first)
        return first, replace(in_place, base=b.select(below_one_tile, packed_a, in_place.base))

    def _partial_tile_row(self, ic: ir.Value) -> ir.Value:
        """First row of the last, partial row tile of tiles counted from row `ic` (== M if there is none)."""
        b = self.builder
        rows = const(self.tile.rows)
        return b.add(ic, b.mul(b.udiv(b.sub(self.M, ic), rows), rows))

    def _emit_pack_partial_a_tile(self, ic: ir.Value, block_rows: ir.Value,
                                  packed_a: ir.Value) -> None:
        """Pack the partial last row tile of A, if it lies in this block (for a shifted last tile: A's rows,
        if M is below one tile)."""
        b = self.builder
        if self._shifts_last_tile() and self.spec.M is None and self.spec.gather_a is None:
            with b.if_then(b.icmp_signed("<", self.M, const(self.tile.rows))):
                self._emit_pack_a_rows(packed_a)
            return
        if self.spec.K is None or self._tiles_all_full() or self._shifts_last_tile():
            return  # no partial tile, or it is read in place (shifted, or with clamped rows)
        partial_row = self._partial_tile_row(ic)
        in_block = b.and_(
            b.icmp_signed("<", partial_row, self.M),
            b.and_(b.icmp_signed(">=", partial_row, ic),
                   b.icmp_signed("<", partial_row, b.add(ic, block_rows))))
        with b.if_then(in_block):
            self._emit_pack_a_tile(partial_row, packed_a)

    def _emit_pack_a_rows(self, packed_a: ir.Value) -> None:
        """packed_a[r, k] = A[min(r, M - 1), k] for the tile's rows, K elements a row (A row-major, M below one
        tile: the rows past M repeat row M - 1, their sums are dropped)."""
        b = self.builder
        last_row = b.sub(self.M, const(1))
        with loop(b, const(0), const(self.tile.rows), 1, "pack_a.r") as tile_rows:
            source = self._gep(self.args["A"], self._mul(imin(b, tile_rows.index, last_row), self.K))
            destination = self._gep(packed_a, self._mul(tile_rows.index, self.K))
            with loop(b, const(0), self.K, 1, "pack_a.k") as k_loop:
                value = self._load_scalar(self._gep(source, k_loop.index))
                b.store(value, self._gep(destination, k_loop.index), align=self.align)

    def _emit_pack_a_block(self, ic: ir.Value, block_rows: ir.Value, packed_a: ir.Value) -> None:
        """Pack rows ic..ic+block_rows-1 of op(A) (bfloat16 operands: A is never read in place), one row
        tile after another: the tile of row ic + t starts t * (packed rows) elements in."""
        b = self.builder
        with loop(b, const(0), block_rows, self.tile.rows, "pack_a.tile") as tiles:
            tile_buffer = self._gep(packed_a, self._mul(tiles.index, self.a_tile_stride))
            row = b.add(ic, tiles.index)
            if self.spec.trans_a:
                self._emit_pack_rounded_a_columns(row, tile_buffer)
            else:
                self._emit_pack_rounded_a_rows(row, tile_buffer)

    def _packed_a_block_tile(self, ir_: ir.Value, packed_a: ir.Value) -> _ATile:
        """The packed tile of row ic + ir_ of a block of bfloat16 operands: k-major for trans_a, else row-major
        (rows a cache-line-padded stride apart)."""
        rows = self.tile.rows
        base = self._gep(packed_a, self._mul(ir_, self.a_tile_stride))
        full = self._tiles_all_full()
        if self.spec.trans_a:
            return _ATile(base, list(range(rows)), rows, rows_may_exceed_m=not full)
        return _ATile(base, [self._scaled(r, self.a_tile_stride) for r in range(rows)], 1, rows_may_exceed_m=not full)

    def _emit_pack_rounded_a_columns(self, row: ir.Value, tile_buffer: ir.Value) -> None:
        """A stored K x M: packed row k of the tile is A[k, row:row + rows], a masked vector load (zeros past
        M), rounded or paired with row k + 1 by `_packed`."""
        b = self.builder
        rows = self.tile.rows
        mask = self._lane_mask(b.sub(self.M, row), rows)

        def rows_of_a(k, emit):
            emit(0, self._masked_load_vector(self._gep(self.args["A"], self._a_offset(row, k)), None, mask, rows))
        with loop(b, const(0), self.k_steps, 1, "pack_a.k") as k_loop:
            destination = self._gep(tile_buffer, self._mul(k_loop.index, rows))
            self._packed(rows_of_a, k_loop.index,
                         lambda _, value: b.store(value, destination, align=self.align))

    def _emit_pack_rounded_a_rows(self, row: ir.Value, tile_buffer: ir.Value) -> None:
        """A stored M x K: row r of the tile is row + r of A (rows past M repeat row M-1: their sums are
        dropped), rounded, or its k-pairs side by side, a vector (two, for pairs) of k at a time; the last
        one is zero padded through masked loads."""
        b = self.builder
        with loop(b, const(0), const(self.tile.rows), 1, "pack_a.r") as tile_rows:
            source_row = imin(b, b.add(row, tile_rows.index), b.sub(self.M, const(1)))
            self._emit_round_row(self._gep(self.args["A"], self._a_offset(source_row, const(0))),
                                 self._gep(tile_buffer, self._mul(tile_rows.index, self.a_tile_stride)))

    def _emit_round_row(self, source: ir.Value, destination: ir.Value) -> None:
        """destination[k] = source[k] rounded, or destination[j] = the pair (source[2j], source[2j + 1]), for
        the K values of a row, a vector (two, for pairs) of k at a time, zero padded past K by masked loads.
        `destination` may be `source`: each store lands at or before the values it was made from."""
        b = self.builder
        lanes = self.tile.lanes
        per_store = 2 * lanes if self.pairs else lanes  # k's per stored vector
        with loop(b, const(0), self.K, per_store, "round_row.k") as k_loop:
            k = k_loop.index
            starts = [self._add(k, start) for start in range(0, per_store, lanes)]
            loads = [self._masked_load_vector(self._gep(source, start), b.sub(self.K, start)) for start in starts]
            bits = [_bf16_bits(b, vector) for vector in loads]
            if self.pairs:  # k-pairs (2j, 2j + 1) of the 2 lanes k's: odd k in the upper half
                indexes = [ir.Constant(ir.VectorType(I32, lanes), list(range(first, 2 * lanes, 2))) for first in (0, 1)]
                even, odd = (b.shuffle_vector(bits[0], bits[1], index) for index in indexes)
                value, offset = b.or_(odd, b.lshr(even, constant_like(even.type, 16))), b.lshr(k, const(1))
            else:
                value, offset = b.bitcast(bits[0], self.vector), k
            b.store(value, self._gep(destination, offset), align=self.align)

    def _emit_pack_a_tile(self, row: ir.Value, tile_buffer: ir.Value) -> None:
        """tile_buffer[k, r] = op(A)[row + r, k], zero for rows >= M."""
        b = self.builder
        rows = self.tile.rows
        zero = ir.Constant(self.element, 0.0)
        last_row = b.sub(self.M, const(1))
        valid, source_rows = [], []
        for r in range(rows):
            row_r = self._add(row, r)
            valid.append(b.icmp_signed("<", row_r, self.M))
            # Rows past M read row M-1 (in bounds) and are then replaced by 0.
            source_rows.append(imin(b, row_r, last_row))
        with loop(b, const(0), self.K, 1, "pack_a.k") as k_loop:
            k = k_loop.index
            dst = self._gep(tile_buffer, self._mul(k, rows))
            for r in range(rows):
                source = self._gep(self.args["A"], self._a_offset(source_rows[r], k))
                value = self._load_scalar(source)
                b.store(b.select(valid[r], value, zero), self._gep(dst, const(r)),
                        align=self.align)

    def _a_offset(self, row: ir.Value, k: ir.Value) -> ir.Value:
        """Element offset of op(A)[row, k] in the stored A."""
        if self.spec.trans_a:
            return self.builder.add(self._mul(self._a_stored_row(k), self.M), row)
        return self.builder.add(self._mul(self._a_stored_row(row), self.K), k)

    def _a_stored_row(self, i: ir.Value) -> ir.Value:
        """The row of the stored A that holds op(A)'s row i (trans_a: its column i): i, or for a gathered A
        indices[i], wrapped once as numpy wraps a negative index (the caller checked every index)."""
        if self.spec.gather_a is None:
            return i
        b = self.builder
        index_type = IR_TYPES[self.spec.gather_a]
        index = b.load(b.gep(self.args["A.indices"], [i], source_etype=index_type), typ=index_type,
                       align=ITEMSIZE[self.spec.gather_a])
        index = b.sext(index, I64) if index_type != I64 else index
        return b.select(b.icmp_signed("<", index, const(0)), b.add(index, self.args["A.rows"]), index)

    def _a_tile_base(self, row: ir.Value) -> ir.Value:
        """Where the row offsets of a tile of rows from `row` count from: &op(A)[row, 0], or for a gathered A
        A itself (row-major: each row's offset says where it is) or &A[0, row] (trans_a: k picks the row)."""
        if self.spec.gather_a is None:
            return self._gep(self.args["A"], self._a_offset(row, const(0)))
        return self._gep(self.args["A"], row) if self.spec.trans_a else self.args["A"]

    def _a_tile_rows(self, row: ir.Value, source_rows: list, rows_may_exceed_m: bool) -> _ATile:
        """The tile of op(A)'s rows `source_rows` (values, the tile's rows from `row` or rows clamped to M),
        read in place."""
        base = self._a_tile_base(row)
        if self.spec.gather_a is not None and not self.spec.trans_a:
            offsets = [self._a_offset(source, const(0)) for source in source_rows]
        else:
            offsets = [self._mul(self.builder.sub(source, row), self._a_row_stride()) for source in source_rows]
        return _ATile(base, offsets, self._a_k_stride(), rows_may_exceed_m,
                      k_gathered=self.spec.gather_a is not None and self.spec.trans_a)

    # -- the block product ----------------------------------------------------

    def _emit_block_product(self, jc, block_cols, ic, block_rows, packed_a, packed_b) -> None:
        def row_tiles(jr, col, width):
            self._emit_row_tiles(ic, block_rows, packed_a, self._b_panel(jr, col, width, packed_b), col, width)
        self._emit_for_each_panel(block_cols, jc, "jr", row_tiles)

    def _b_panel(self, jr, col, width: _PanelWidth, packed_b) -> _BPanel:
        """Panel jr of the block: its packed copy, or B itself when B is read in place."""
        if not self.spec.packs_b:
            stride = self.spec.N if self.spec.N is not None else self.N
            return _BPanel(self._gep(self.args["B"], col), stride, in_place=True)
        return _BPanel(self._gep(packed_b, self._mul(jr, self.k_steps)), width.padded, in_place=False)

    def _emit_row_tiles(self, ic, block_rows, packed_a, panel, col, width: _PanelWidth) -> None:
        """Run the kernel for every row tile of the block against one B panel:
        full tiles read A in place; the partial last one too, shifted up to end
        at row M (`_shifts_last_tile`), else as `_a_partial` says.  A static M
        tells which of the kernels are needed; each leaves its sums to the one
        epilogue that follows."""
        b = self.builder
        rows = self.tile.rows
        with loop(b, const(0), block_rows, rows, "ir") as tiles:
            ir_ = tiles.index
            row = b.add(ic, ir_)
            first = row  # the row of the tile's sums' row 0
            if self.spec.rounds:  # the block's tiles, packed by _emit_pack_a_block
                guard_rows = self._emit_micro_kernel(self._packed_a_block_tile(ir_, packed_a), panel, width)
            elif self._tiles_all_full():
                guard_rows = self._emit_micro_kernel(self._a_in_place(row), panel, width)
            elif self._shifts_last_tile():
                first, a_tile = self._a_shifted(row, packed_a)
                self._emit_micro_kernel(a_tile, panel, width)
                guard_rows = True
            elif self.spec.M is not None and self.spec.M < rows:
                guard_rows = self._emit_micro_kernel(self._a_partial(row, packed_a), panel, width)
            else:
                is_full = b.icmp_signed("<=", self._add(row, rows), self.M)
                with b.if_else(is_full) as (full, partial):
                    with full:
                        self._emit_micro_kernel(self._a_in_place(row), panel, width)
                    with partial:
                        guard_rows = self._emit_micro_kernel(self._a_partial(row, packed_a), panel, width)
            self._emit_tile_epilogue(row, col, width, guard_rows, first)

    def _a_row_stride(self) -> int | ir.Value:
        return 1 if self.spec.trans_a else (self.spec.K if self.spec.K is not None else self.K)

    def _a_k_stride(self) -> int | ir.Value:
        return self.M if self.spec.trans_a else 1

    def _a_in_place(self, row: ir.Value) -> _ATile:
        if self.spec.gather_a is not None:
            return self._a_tile_rows(row, [self._add(row, r) for r in range(self.tile.rows)], False)
        base = self._gep(self.args["A"], self._a_offset(row, const(0)))
        offsets = [self._scaled(r, self._a_row_stride()) for r in range(self.tile.rows)]
        return _ATile(base, offsets, self._a_k_stride(), rows_may_exceed_m=False)

    def _a_partial(self, row: ir.Value, packed_a: ir.Value) -> _ATile:
        """The partial row tile: its packed copy when K is static, else A in
        place with rows past M redirected to row M-1 (their sums are dropped)."""
        rows = self.tile.rows
        if self.spec.K is not None:
            return _ATile(packed_a, list(range(rows)), rows, rows_may_exceed_m=True)
        b = self.builder
        last_row = b.sub(self.M, const(1))
        return self._a_tile_rows(row, [imin(b, self._add(row, r), last_row) for r in range(rows)], True)

    def _emit_micro_kernel(self, a_tile: _ATile, panel: _BPanel, width: _PanelWidth) -> bool:
        """acc[r][v] = sum_k a(r, k) * panel[k, v*lanes:(v+1)*lanes], all of K
        in registers, then stored to the tile's sums (`_emit_tile_epilogue`
        reads them).  Returns whether the tile may hold rows past M."""
        b = self.builder
        lanes = self.tile.lanes
        vectors = width.vectors
        edge_mask = None
        if panel.in_place and not width.is_full(vectors - 1):
            edge_mask = self._lane_mask(width.last)
        preheader = b.block
        k_loop = b.append_basic_block("kernel.k")
        done = b.append_basic_block("kernel.done")
        if self.spec.K is None:  # K may be 0 at run time
            b.cbranch(b.icmp_signed(">", self.K, const(0)), k_loop, done)
        else:
            b.branch(k_loop)

        b.position_at_end(k_loop)
        k = b.phi(I64, name="k")
        k.add_incoming(const(0), preheader)
        zero = ir.Constant(self.vector, [0.0] * lanes)
        accs = []
        for _ in range(self.tile.rows):
            row_accs = [b.phi(self.vector) for _ in range(vectors)]
            for acc in row_accs:
                acc.add_incoming(zero, preheader)
            accs.append(row_accs)

        b_row = self._gep(panel.base, self._mul(k, panel.k_stride))
        b_vectors = []
        for v in range(vectors):
            source = self._gep(b_row, const(v * lanes))
            if self.pairs:
                b_vectors.append(b.load(source, typ=BF16_PAIRS, align=self.align))
            else:
                b_vectors.append(self._masked_load_vector(source, width.last, edge_mask)
                                 if panel.in_place and not width.is_full(v) else self._load_vector(source))
        a_column = self._gep(a_tile.base, self._mul(self._a_stored_row(k) if a_tile.k_gathered else k,
                                                     a_tile.k_stride))
        sums = []
        for r in range(self.tile.rows):
            a_source = self._offset(a_column, a_tile.row_offsets[r])
            if self.pairs:  # one k-pair of row r, in every lane
                a_pair = splat(b, b.load(a_source, typ=I32, align=self.align), lanes)
                a_pair = b.bitcast(a_pair, BF16_PAIRS)
                sums.append([b.call(bf16_dot_intrinsic(b.module), [accs[r][v], a_pair, b_vectors[v]])
                             for v in range(vectors)])
                continue
            a_value = splat(b, self._load_scalar(a_source), lanes)
            sums.append([call_intrinsic(b, "llvm.fma", a_value, b_vectors[v], accs[r][v])
                         for v in range(vectors)])
        for acc_row, sum_row in zip(accs, sums):
            for acc, total in zip(acc_row, sum_row):
                acc.add_incoming(total, k_loop)
        k_next = self._add(k, 1)
        k.add_incoming(k_next, k_loop)
        latch = b.cbranch(b.icmp_signed("<", k_next, self.k_steps), k_loop, done)
        latch.set_metadata("llvm.loop", self._no_unroll_loop_id())

        b.position_at_end(done)
        if self.spec.K is None:
            sums = [[self._merge(zero, preheader, total, k_loop) for total in sum_row]
                    for sum_row in sums]
        for r, sum_row in enumerate(sums):
            for v, total in enumerate(sum_row):
                b.store(total, self._sum_pointer(r, v))
        return a_tile.rows_may_exceed_m

    def _merge(self, first: ir.Value, first_block, second: ir.Value, second_block) -> ir.Value:
        phi = self.builder.phi(first.type)
        phi.add_incoming(first, first_block)
        phi.add_incoming(second, second_block)
        return phi

    def _sum_pointer(self, r: int | ir.Value, v: int) -> ir.Value:
        """Where vector v of row r (an int, or an i64 value) of the tile's sums lies (rows tile.vectors vectors
        apart)."""
        b = self.builder
        vectors = self.tile.vectors
        index = const(r * vectors + v) if isinstance(r, int) else b.add(b.mul(r, const(vectors)), const(v))
        return b.gep(self.sums, [index], source_etype=self.vector)

    def _emit_tile_epilogue(self, row: ir.Value, col: ir.Value, width: _PanelWidth, guard_rows: bool,
                            first: ir.Value | None = None) -> None:
        """The epilogue of the tile's sums, on its rows (those below row_limit when `guard_rows` or row groups
        say some may lie past it): emitted once per panel width, whichever kernels made the sums; a loop over
        the rows, or unrolled for a short K (`_UNROLLED_EPILOGUE_K`).  A shifted last tile's sums start at
        row `first` (<= row): the rows above `row` are skipped."""
        b = self.builder
        guarded = guard_rows or self.spec.row_group
        first = row if first is None else first
        shifted = first is not row
        if self.spec.K is not None and self.spec.K < _UNROLLED_EPILOGUE_K:
            def for_each_row(body: Callable[[int | ir.Value, ir.Value], None]) -> None:
                for r in range(self.tile.rows):
                    row_r = self._add(first, r)
                    if shifted:  # row <= row_r < row_limit, as one unsigned comparison
                        with b.if_then(b.icmp_unsigned("<", b.sub(row_r, row), b.sub(self.row_limit, row))):
                            body(r, row_r)
                    elif guarded:
                        with b.if_then(b.icmp_signed("<", row_r, self.row_limit)):
                            body(r, row_r)
                    else:
                        body(r, row_r)
        else:
            rows = imin(b, const(self.tile.rows), b.sub(self.row_limit, first)) if guarded else const(self.tile.rows)

            def for_each_row(body: Callable[[int | ir.Value, ir.Value], None]) -> None:
                with loop(b, b.sub(row, first) if shifted else const(0), rows, 1, "epilogue.r") as tile_rows:
                    body(tile_rows.index, b.add(first, tile_rows.index))

        if isinstance(width.last, int):
            for_each_row(lambda r, row_r: self._emit_row_epilogue(r, range(width.vectors), row_r, col, width))
            return
        # A run-time edge: the full vectors row by row, then the last one piece by piece, for all rows.
        full = width.vectors - 1
        for_each_row(lambda r, row_r: self._emit_row_epilogue(r, range(full), row_r, col, width))
        self._emit_runtime_pieces(full, self._add(col, full * self.tile.lanes), width.last,
                                  width.vectors < self.tile.vectors, for_each_row)

    def _emit_row_epilogue(self, r: int | ir.Value, vectors: range, row: ir.Value, col: ir.Value,
                           width: _PanelWidth) -> None:
        b = self.builder
        lanes = self.tile.lanes
        for v in vectors:
            total = b.load(self._sum_pointer(r, v), typ=self.vector)
            start = v * lanes
            if width.is_full(v):
                self.epilogue(b, row, self._add(col, start), total, lanes, self.args)
                continue
            # The right edge in power-of-two pieces (10 columns: 8 + 2), so an epilogue runs 2 times, not 10.
            end = start + width.last
            offset = start
            while offset < end:
                piece = 1 << ((end - offset).bit_length() - 1)
                part = self._lanes_of(total, offset - start, piece)
                self.epilogue(b, row, self._add(col, offset), part, piece, self.args)
                offset += piece

    def _lanes_of(self, vector: ir.Value, first: int, count: int) -> ir.Value:
        """Lanes first..first+count-1 of `vector` (a scalar when count == 1)."""
        b = self.builder
        if count == self.tile.lanes:
            return vector
        if count == 1:
            return b.extract_element(vector, ir.Constant(I32, first))
        taken = list(range(first, first + count))
        return b.shuffle_vector(vector, vector, ir.Constant(ir.VectorType(I32, count), taken))

    def _emit_runtime_pieces(self, v: int, col: ir.Value, count: ir.Value, may_be_full: bool,
                             for_each_row: Callable) -> None:
        """The first `count` (1..lanes, known at run time; < lanes unless
        `may_be_full`) lanes of vector v of each row's sums, in power-of-two
        pieces, largest first: a piece of p lanes for each bit p of count, at
        column col + (the higher bits of count), one branch per piece around
        all rows, each piece loaded from the sums where it lies."""
        b = self.builder
        lanes = self.tile.lanes
        piece = lanes if may_be_full else lanes // 2
        while piece >= 1:
            taken = b.icmp_signed("!=", b.and_(count, const(piece)), const(0))
            first = b.and_(count, const(~(2 * piece - 1)))
            offset = b.add(col, first)
            element = self.element if piece == 1 else ir.VectorType(self.element, piece)

            def epilogue(r, row_r):
                part = b.load(self._gep(self._sum_pointer(r, v), first), typ=element, align=self.align)
                self.epilogue(b, row_r, offset, part, piece, self.args)
            with b.if_then(taken):
                for_each_row(epilogue)
            piece //= 2


def bf16_dot_intrinsic(module: ir.Module) -> ir.Function:
    """The `vdpbf16ps` intrinsic, declared (once) with its full type: llvmlite cannot name it."""
    if _BF16_DOT in module.globals:
        return module.globals[_BF16_DOT]
    accumulators = ir.VectorType(ir.FloatType(), 16)
    return ir.Function(module, ir.FunctionType(accumulators, [accumulators, BF16_PAIRS, BF16_PAIRS]), name=_BF16_DOT)


def _bf16_bits(builder: ir.IRBuilder, value: ir.Value) -> ir.Value:
    """The bits of float32 `value` (scalar or vector) rounded to bfloat16, nearest even, in the upper half
    (the lower half zero), as ml_dtypes rounds: past bfloat16's largest finite value to infinity, and a NaN
    stays a NaN (quieted, so a payload in the dropped bits cannot turn it into an infinity)."""
    typ = ir.VectorType(I32, value.type.count) if isinstance(value.type, ir.VectorType) else I32
    bits = builder.bitcast(value, typ)
    odd = builder.and_(builder.lshr(bits, constant_like(typ, 16)), constant_like(typ, 1))
    nearest = builder.add(builder.add(bits, constant_like(typ, 0x7FFF)), odd)
    quiet = builder.or_(bits, constant_like(typ, 0x00400000))
    nan = builder.fcmp_unordered("uno", value, value)
    return builder.and_(builder.select(nan, quiet, nearest), constant_like(typ, -0x10000))


def emit_gemm(module: ir.Module, name: str, spec: GemmSpec, target: Target,
              epilogue: Epilogue | None = None,
              extra_args: Sequence[tuple[str, ir.Type]] = (), pack_a: PackA | None = None,
              prologue: Prologue | None = None) -> ir.Function:
    """Add `name` computing C = op(A) @ op(B) for `spec` to `module`.

    See the module docstring for the signature, threading and epilogue contract.
    """
    runtime_k = [I64] if spec.K is None else []
    runtime_n = [I64] if spec.N is None else []
    params = [PTR, PTR, PTR, I64, PTR, I32, I32, *runtime_k, *runtime_n, *(ty for _, ty in extra_args)]
    function = ir.Function(module, ir.FunctionType(ir.VoidType(), params), name=name)
    function.attributes.add("nounwind")
    for index in range(3):
        function.args[index].add_attribute("noalias")
    function.args[4].add_attribute("noalias")
    _GemmEmitter(function, spec, target, epilogue or store_to_c,
                 [arg_name for arg_name, _ in extra_args], pack_a, prologue).emit()
    return function
