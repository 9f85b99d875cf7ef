"""GroupMamba's 4-direction scan (d_state 1) on channel-first maps, one whole plane per program.

Why another kernel: the tile kernels of ``triton_scan`` walk a channel's H x W plane chunk by chunk,
carrying the state from one chunk to the next, so a program has one chunk's loads in flight at a
time and waits for each before scanning it (~51% of copy bandwidth at 56x56, 57-61% at 28x28 on
the H100). On a channel-first map a channel's plane is one contiguous block of memory (12.5 KB at
56x56 in float32), small enough to hold in registers: here a program loads its BD channels' planes
at once (every load in flight together, each byte read once and fully coalesced), scans them in
registers and writes the result. There is no carried state, no chunk loop and no look-back.
Measured on the H100 it wins on small maps only (14x14 and 7x7, see DEFAULT_ELEMS); on larger ones
a whole plane is too much for one program to hold with more than one or two programs per SM.

The four directions are one scan each over the plane's positions in that direction's order:

* rows (groups 0 and 2): the plane in memory order *is* the row-major sequence, loaded as a flat
  (BD, LP) tile (LP = H*W rounded up to a power of 2; the padding steps are masked to the identity
  a = 1, b = 0) and scanned along it, backwards (``reverse=True``) for group 2;
* columns (groups 1 and 3): the plane is loaded as a (BD, WP, HP) tile (w, then h), coalesced
  along w as it lies in memory, and reshaped in registers to (BD, WP * HP), which is column-major
  order with identity padding steps at the end of each column (h >= H); scanned, and the state
  reshaped back to (BD, WP, HP) for the output. The reshapes are the transpose, done on chip.

The default since session 28 (``RUNS`` > 0; ``RUNS=0`` selects the whole-plane tiles above): ``_runs``
gives each plane one warp (or a warp two to four small planes) and each thread runs of R consecutive
steps, and scans every direction forwards through its position map (no reversed scans, no reshapes,
no shared memory; ~64 instead of ~86 sm_90 instructions per step at 14x14, docs/scan_notes.md
"Session 27"). On the H100 (docs/gpu_runs/s28_run1.txt, batch 128, fp32) it takes 14x14 C424 from
73.0 to 54.7 us (58.6% -> 78.2% of copy bandwidth) and 7x7 C512 from 27.4 to 17.7 us (47% -> 73%).

Numerics match the other kernels: float32 state whatever the input dtype, softplus(delta + bias),
a = exp2(delta * A * log2(e)), b = delta * B * u, y = C * h + D * u.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

import triton
import triton.language as tl

from .triton_scan import (_align, _check_device, _check_group_kernel_args, _combine, _combine_x, _flat_ok, _load01,
                          _params, _pow2, _step_delta, _store01, _updated_config)

__all__ = ["group_scan_4dir_plane_triton", "plane_config", "plane_default"]

# From the H100 sweep (benchmarks/scan.py --plane, batch 128; docs/gpu_runs/scan_plane_s15.txt): about
# 1024 elements per program on 4 warps (8 per thread per tensor) was the best configuration of the
# whole-plane tiles (RUNS=0) on every map size, and the plane kernel beat the tile kernels only on maps
# of at most 16 x 16 positions (14x14: 73 vs 100 us in float32; 7x7: 33-37 vs 48-53 us). On 28x28 and
# 56x56 the tile kernels stay: a program then holds too much for more than one or two to fit on an SM.
DEFAULT_ELEMS, DEFAULT_WARPS, MAX_DEFAULT_PLANE = 1024, 4, 256
# The runs' defaults (docs/gpu_runs/s28_run1.txt, H100, batch 128): runs of 4 steps on planes of more
# than 64 positions (14x14: 54.7 us vs 58.5 with runs of 8 and 69.0 with runs of 2, C424 fp32), of 2
# on smaller ones (7x7: one chunk of 64 steps per warp); one plane per warp on the larger planes (two:
# 72.4 vs 54.7 us), and on the small ones two planes per warp in 4-byte dtypes (17.7 us vs 20.8 with
# one, 19.1 with four; C512) and four in 2-byte ones (16.4 vs 17.8 with two, bf16). Not kept
# (docs/gpu_runs/s29_run2.txt, s29_run3_ab.txt): C loaded with a chunk's other tiles instead of after
# its scan (even at 14x14, slower at 7x7), the next chunk's tiles loaded before a chunk's scan, and
# several batch entries per program with the next one's tiles loaded ahead (slower or even everywhere).
# RUNS_GATHER (the state entering each run from an inclusive scan of the runs' totals and a gather of
# the left lane's, instead of a four-component scan): on planes of at most 64 positions and in 16-bit
# dtypes (docs/gpu_runs/s29_run5.txt: 7x7 C512 fp32 17.2 -> 16.5 us, bf16 16.0 -> 15.2; 14x14 C348 bf16
# 38.0 -> 37.3), not on 14x14 in fp32 (45.3 -> 45.8). The first chunk enters from state 0, so it takes
# its runs' entering states from the two-component scan whatever RUNS_GATHER says and skips the decay
# products (session 30, docs/gpu_runs/s30_run4_ab.txt, with softplus through exp2: 14x14 C348 fp32
# 45.3 -> 44.2 us, 7x7 C512 16.5 -> 15.9, bf16 4-7% faster). Not kept (s30_run1.txt, s30_pack.diff):
# streams of several batch entries' planes scanned as one sequence (decay 0 at each plane's first step)
# to fill the lanes a 49- or 196-step plane leaves idle: up to a third fewer instructions per step, yet
# 2-80% slower than the same code without it in every configuration tried.
RUNS_SMALL_PLANE = 64
# Warps per program of the runs on planes of more than RUNS_SMALL_PLANE positions (one plane each):
# 2 (docs/gpu_runs/s30_run8.txt, 14x14 fp32: C348 44.0 -> 43.7 us, C424 52.9 -> 52.4; bf16 even or 1%
# faster; 1 warp: fp32 as fast, bf16 1% slower; 8: 7-9% slower). Small planes keep DEFAULT_WARPS.
RUNS_WARPS_LARGE_PLANE = 2


@triton.jit
def _decay_input(u, dt, bt, A2, bias, valid, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """Each step's decay a = exp2(delta * A2) (A2 = A log2 e) and input b = delta * B * u, padding
    steps the identity (a = 1, b = 0)."""
    dt = _step_delta(dt, bias, valid, HAS_BIAS, SOFTPLUS)
    return tl.exp2(dt * A2), dt * u * bt


@triton.jit
def _rows(u_ptr, ru, dt_ptr, rdt, b_row, c_row, y_ptr, ry, A2, bias, Dv, cmask, L,
          LP: tl.constexpr, ALIGN: tl.constexpr, REV: tl.constexpr,
          HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """Row-major: the plane in memory order as a flat (BD, LP) tile, backwards when REV."""
    if ALIGN > 1:
        L = (L // ALIGN) * ALIGN  # exact (host-checked); tells the compiler the masks come in vectors
    t = tl.arange(0, LP)
    tmask = t < L
    valid = cmask[:, None] & tmask[None, :]
    u = tl.load(u_ptr + ru[:, None] + t[None, :], mask=valid, other=0.0).to(tl.float32)
    dt = tl.load(dt_ptr + rdt[:, None] + t[None, :], mask=valid, other=0.0).to(tl.float32)
    bt = tl.load(b_row + t, mask=tmask, other=0.0).to(tl.float32)
    ct = tl.load(c_row + t, mask=tmask, other=0.0).to(tl.float32)
    a, b = _decay_input(u, dt, bt[None, :], A2[:, None], bias[:, None], valid, HAS_BIAS, SOFTPLUS)
    _, h = tl.associative_scan((a, b), axis=1, combine_fn=_combine, reverse=REV)
    y = h * ct[None, :]
    if HAS_D:
        y += u * Dv[:, None]
    tl.store(y_ptr + ry[:, None] + t[None, :], y.to(y_ptr.dtype.element_ty), mask=valid)


@triton.jit
def _cols(u_ptr, ru, dt_ptr, rdt, b_row, c_row, y_ptr, ry, A2, bias, Dv, cmask, H, W,
          BD: tl.constexpr, HP: tl.constexpr, WP: tl.constexpr, REV: tl.constexpr,
          HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """Column-major: the plane as a (BD, WP, HP) tile, coalesced along w as it lies in memory, and
    as (BD, WP * HP) in sequence order for the scan; backwards when REV."""
    w = tl.arange(0, WP)
    hh = tl.arange(0, HP)
    pos = hh[None, :] * W + w[:, None]                     # (WP, HP) offsets in the plane
    pmask = (w[:, None] < W) & (hh[None, :] < H)
    valid = cmask[:, None, None] & pmask[None, :, :]
    u = tl.load(u_ptr + ru[:, None, None] + pos[None, :, :], mask=valid, other=0.0).to(tl.float32)
    dt = tl.load(dt_ptr + rdt[:, None, None] + pos[None, :, :], mask=valid, other=0.0).to(tl.float32)
    bt = tl.load(b_row + pos, mask=pmask, other=0.0).to(tl.float32)
    ct = tl.load(c_row + pos, mask=pmask, other=0.0).to(tl.float32)
    a, b = _decay_input(u, dt, bt[None, :, :], A2[:, None, None], bias[:, None, None], valid, HAS_BIAS, SOFTPLUS)
    a = tl.reshape(a, (BD, WP * HP))
    b = tl.reshape(b, (BD, WP * HP))
    _, h = tl.associative_scan((a, b), axis=1, combine_fn=_combine, reverse=REV)
    y = tl.reshape(h, (BD, WP, HP)) * ct[None, :, :]
    if HAS_D:
        y += u * Dv[:, None, None]
    tl.store(y_ptr + ry[:, None, None] + pos[None, :, :], y.to(y_ptr.dtype.element_ty), mask=valid)


@triton.jit
def _runs(u_ptr, ru, dt_ptr, rdt, b_row, c_row, y_ptr, ry, A2, bias, Dv, cmask, one,
          H: tl.constexpr, W: tl.constexpr, R: tl.constexpr, GATHER: tl.constexpr, COLS: tl.constexpr,
          REV: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """One direction over BD whole planes, a warp per plane or per few planes (RUNS): (32, BD, R) tiles whose
    element (lane, c, r) is step s = 32 R j + R lane + r of chunk j, so each thread holds runs of R
    consecutive steps and the scan along them is a loop in registers; only the runs' totals cross
    lanes (``_combine_x``: exclusive prefixes; with GATHER an inclusive scan of two components and each
    lane's left neighbour's result, fewer instructions), no warps, no shared memory. Every direction is the
    same forward scan over steps s, read through its position map (column-major: h = s mod H,
    w = s div H; reversed: s -> HW - 1 - s), so no scan runs reversed. The steps along r are scaled
    by ``one`` (a run-time 1) to hide their contiguity: Triton's layout pass orders axes of equal
    contiguity by index (``_load01``: lanes on the 32 axis, warps on the planes, r in each
    thread's registers) and would otherwise put r first. (Loads are scalar, also where a run is contiguous: vector loads
    along r make r the tile's fastest axis, which Triton 3.6's scan lowering fails to compile here.)"""
    L: tl.constexpr = H * W
    CH: tl.constexpr = 32 * R
    l3 = tl.arange(0, 32)[:, None, None]
    r3 = tl.arange(0, R)[None, None, :]
    last = (l3 == 31) & (r3 == R - 1)
    c3 = cmask[None, :, None]
    zero3 = tl.zeros_like(c3.to(tl.int32))  # B and C (shared by a group's planes) loaded with u's shape
    A3 = A2[None, :, None]
    S = tl.zeros_like(A3)                                     # (1, BD, 1): the state carried between chunks
    for j in tl.static_range((L + CH - 1) // CH):
        s = j * CH + l3 * R + r3 * one
        smask = s < L
        if REV:
            s = L - 1 - s
        if COLS:
            pos = (s % H) * W + s // H
        else:
            pos = s
        valid = c3 & smask
        u = _load01(u_ptr + ru[None, :, None] + pos, valid, 2).to(tl.float32)
        dt = _load01(dt_ptr + rdt[None, :, None] + pos, valid, 2).to(tl.float32)
        bt = _load01(b_row + pos + zero3, valid, 2).to(tl.float32)  # per plane: one layout
        a, b = _decay_input(u, dt, bt, A3, bias[None, :, None], valid, HAS_BIAS, SOFTPLUS)
        Ap, hl = tl.associative_scan((a, b), axis=2, combine_fn=_combine)       # runs, in registers
        # the runs' totals (32, BD, 1): kept 3-D, as Triton's scan wants its operand's blocked layout
        at = tl.sum(tl.where(r3 == R - 1, Ap, 0.0), axis=2, keep_dims=True)
        bt2 = tl.sum(tl.where(r3 == R - 1, hl, 0.0), axis=2, keep_dims=True)
        if GATHER or j == 0:  # inclusive scan of the totals, then each lane takes its left neighbour's
            ai, bi = tl.associative_scan((at, bt2), axis=0, combine_fn=_combine)
            left = tl.maximum(l3 - 1, 0) + zero3                             # (32, BD, 1)
            eb = tl.where(l3 == 0, 0.0, tl.gather(bi, left, axis=0))
            if j > 0:  # (the first chunk enters from state 0: its runs' decay products are not needed)
                ea = tl.where(l3 == 0, 1.0, tl.gather(ai, left, axis=0))
        else:
            _, _, ea, eb = tl.associative_scan((at, bt2, at * 0.0 + 1.0, bt2 * 0.0), axis=0, combine_fn=_combine_x)
        if j > 0:
            h = hl + Ap * (ea * S + eb)                                         # + state entering each run
        else:
            h = hl + Ap * eb                                                    # (ea * 0 + eb: exact, ea is finite)
        S = tl.sum(tl.sum(tl.where(last, h, 0.0), axis=2, keep_dims=True), axis=0, keep_dims=True)
        ct = _load01(c_row + pos + zero3, valid, 2).to(tl.float32)
        y = h * ct
        if HAS_D:
            y += u * Dv[None, :, None]
        _store01(y_ptr + ry[None, :, None] + pos, y.to(y_ptr.dtype.element_ty), valid, 2)


@triton.jit(do_not_specialize=["one"])
def _plane_kernel(u_ptr, su_b, su_g, su_c, dt_ptr, sdt_b, sdt_g, sdt_c,
                  b_ptr, sb_b, sb_g, c_ptr, sc_b, sc_g, y_ptr, sy_b, sy_g, sy_c,
                  A_ptr, D_ptr, bias_ptr, dim_g, H, W, one,
                  BD: tl.constexpr, LP: tl.constexpr, HP: tl.constexpr, WP: tl.constexpr,
                  ALIGN: tl.constexpr, RUNS: tl.constexpr, GATHER: tl.constexpr, HC: tl.constexpr, WC: tl.constexpr,
                  HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """Grid (channel blocks, 4 groups, batch). Planes are contiguous: h stride W, w stride 1."""
    blk = tl.program_id(0)
    g = tl.program_id(1)
    bb = tl.program_id(2).to(tl.int64)
    cl = blk * BD + tl.arange(0, BD)
    cmask = cl < dim_g
    gc = g * dim_g + cl
    A2 = tl.load(A_ptr + gc, mask=cmask, other=0.0).to(tl.float32) * 1.4426950408889634
    bias = tl.load(bias_ptr + gc, mask=cmask, other=0.0).to(tl.float32)
    Dv = tl.load(D_ptr + gc, mask=cmask, other=0.0).to(tl.float32)
    b_row = b_ptr + bb * sb_b + g * sb_g
    c_row = c_ptr + bb * sc_b + g * sc_g
    if RUNS > 0:  # (the default) warps own planes, runs of RUNS steps per thread (H, W constexprs HC, WC)
        # the batch entry's offset on the base pointers, the (BD,) plane starts within it as 32-bit
        # offsets: fewer 64-bit address instructions (host-checked; docs/gpu_runs/s29_run3_ab.txt,
        # fp32: 14x14 C348 45.9 -> 45.2 us, 7x7 C512 17.75 -> 17.15)
        u_ptr += bb * su_b
        dt_ptr += bb * sdt_b
        y_ptr += bb * sy_b
        ru = g * su_g + cl * su_c
        rdt = g * sdt_g + cl * sdt_c
        ry = g * sy_g + cl * sy_c
        if g == 0:
            _runs(u_ptr, ru, dt_ptr, rdt, b_row, c_row, y_ptr, ry, A2, bias, Dv, cmask, one, HC, WC, RUNS, GATHER,
                  False, False, HAS_D, HAS_BIAS, SOFTPLUS)
        elif g == 1:
            _runs(u_ptr, ru, dt_ptr, rdt, b_row, c_row, y_ptr, ry, A2, bias, Dv, cmask, one, HC, WC, RUNS, GATHER,
                  True, False, HAS_D, HAS_BIAS, SOFTPLUS)
        elif g == 2:
            _runs(u_ptr, ru, dt_ptr, rdt, b_row, c_row, y_ptr, ry, A2, bias, Dv, cmask, one, HC, WC, RUNS, GATHER,
                  False, True, HAS_D, HAS_BIAS, SOFTPLUS)
        else:
            _runs(u_ptr, ru, dt_ptr, rdt, b_row, c_row, y_ptr, ry, A2, bias, Dv, cmask, one, HC, WC, RUNS, GATHER,
                  True, True, HAS_D, HAS_BIAS, SOFTPLUS)
    else:  # whole-plane tiles
        ru = bb * su_b + g * su_g + cl * su_c                 # (BD,) plane starts
        rdt = bb * sdt_b + g * sdt_g + cl * sdt_c
        ry = bb * sy_b + g * sy_g + cl * sy_c
        if ALIGN > 1:  # host-checked: planes start on multiples of ALIGN elements -> vector loads
            ru = tl.multiple_of(ru, ALIGN)
            rdt = tl.multiple_of(rdt, ALIGN)
            ry = tl.multiple_of(ry, ALIGN)
        if g == 0:
            _rows(u_ptr, ru, dt_ptr, rdt, b_row, c_row, y_ptr, ry, A2, bias, Dv, cmask, H * W,
                  LP, ALIGN, False, HAS_D, HAS_BIAS, SOFTPLUS)
        elif g == 2:
            _rows(u_ptr, ru, dt_ptr, rdt, b_row, c_row, y_ptr, ry, A2, bias, Dv, cmask, H * W,
                  LP, ALIGN, True, HAS_D, HAS_BIAS, SOFTPLUS)
        elif g == 1:
            _cols(u_ptr, ru, dt_ptr, rdt, b_row, c_row, y_ptr, ry, A2, bias, Dv, cmask, H, W,
                  BD, HP, WP, False, HAS_D, HAS_BIAS, SOFTPLUS)
        else:
            _cols(u_ptr, ru, dt_ptr, rdt, b_row, c_row, y_ptr, ry, A2, bias, Dv, cmask, H, W,
                  BD, HP, WP, True, HAS_D, HAS_BIAS, SOFTPLUS)


def _plane_ok(t: Tensor, H: int, W: int) -> bool:
    """Is every (h, w) plane of t contiguous (w stride 1, h stride W)?"""
    return t.stride(-1) == 1 and _flat_ok(t, H, W)


def _entry_span(t: Tensor) -> int:
    """Elements from a batch entry's first to its last one, plus one."""
    return 1 + sum((n - 1) * abs(st) for n, st in zip(t.shape[1:], t.stride()[1:]))


def plane_default(u: Tensor, delta: Tensor, B: Tensor, C: Tensor, y: Tensor, n_state: int) -> bool:
    """Where the plane kernel is the default: d_state 1, contiguous planes (channel-first maps) of
    2 to MAX_DEFAULT_PLANE positions (see DEFAULT_ELEMS)."""
    H, W = u.shape[-2:]
    return (n_state == 1 and 1 < H * W <= MAX_DEFAULT_PLANE
            and all(_plane_ok(t, H, W) for t in (u, delta, B, C, y)))


def plane_config(dim_g: int, H: int, W: int, config: Optional[dict] = None, elem_size: int = 4) -> dict:
    """RUNS (steps per thread's run, 0 for the whole-plane tiles), BD channels per program (a power of
    2), num_warps and RUNS_GATHER. Runs (the default up to MAX_DEFAULT_PLANE positions, see RUNS_SMALL_PLANE): one plane per warp and
    RUNS_WARPS_LARGE_PLANE warps, two or four planes per warp and DEFAULT_WARPS warps on planes of at
    most 64 positions, BD = num_warps x planes per warp unless given. Whole-plane tiles:
    about DEFAULT_ELEMS elements of each tensor per program (at least one plane) on DEFAULT_WARPS warps."""
    small = H * W <= RUNS_SMALL_PLANE
    runs = 0 if H * W > MAX_DEFAULT_PLANE else 2 if small else 4  # (larger planes: runs not measured, and
    # their chunks, unrolled, take minutes to compile: 25 of 128 steps at 56x56)
    gather = int(small or elem_size < 4)  # (RUNS_GATHER: see RUNS_SMALL_PLANE)
    cfg = _updated_config(dict(BD=1, num_warps=DEFAULT_WARPS, RUNS=runs, RUNS_GATHER=gather), config, ("BD",))
    if cfg["RUNS"] & (cfg["RUNS"] - 1) or cfg["RUNS"] < 0:
        raise ValueError(f"RUNS must be 0 or a power of 2, got {cfg['RUNS']}")
    if cfg["RUNS"] and not small and "num_warps" not in (config or {}):
        cfg["num_warps"] = RUNS_WARPS_LARGE_PLANE
    if "BD" not in (config or {}):
        if cfg["RUNS"]:
            cfg["BD"] = cfg["num_warps"] * ((2 if elem_size >= 4 else 4) if small else 1)
        else:
            size = max(_pow2(H * W), _pow2(H) * _pow2(W))
            cfg["BD"] = max(1, min(_pow2(dim_g), DEFAULT_ELEMS // size))
    return cfg


def group_scan_4dir_plane_triton(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                                 D: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None,
                                 delta_softplus: bool = True, *, out: Optional[Tensor] = None,
                                 config: Optional[dict] = None) -> Tensor:
    """``group_scan_4dir_triton``'s function and signature (d_state 1, contiguous planes).

    Arguments checked as ``group_scan_4dir_triton`` checks them (``check_group_scan_args``, ``out`` too)
    and d_state 1, each mistake a ValueError / TypeError naming the argument; ``group_scan_4dir_triton``
    runs ``_group_scan_4dir_plane_triton``, which skips the checks it has made."""
    name = "group_scan_4dir_plane_triton"
    _check_group_kernel_args(name, "plane kernel", u, delta, A, B, C, D, delta_bias, out)
    _check_device(u)
    return _group_scan_4dir_plane_triton(u, delta, A, B, C, D, delta_bias, delta_softplus, out=out, config=config)


def _group_scan_4dir_plane_triton(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                                  D: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None,
                                  delta_softplus: bool = True, *, out: Optional[Tensor] = None,
                                  config: Optional[dict] = None) -> Tensor:
    """``group_scan_4dir_plane_triton`` on arguments already checked (by ``group_scan_4dir_triton``)."""
    batch, groups, dim_g, H, W = u.shape
    y = out if out is not None else torch.empty_like(u)
    if groups != 4 or B.shape[2] != 1:
        raise ValueError("the plane kernel takes 4 groups and d_state 1")
    if not all(_plane_ok(t, H, W) for t in (u, delta, B, C, y)):
        raise ValueError("the plane kernel needs contiguous (H, W) planes (channel-first maps)")
    cfg = plane_config(dim_g, H, W, config, u.element_size())
    if cfg["RUNS"] and max(_entry_span(t) for t in (u, delta, y)) >= 2**31:
        cfg["RUNS"] = 0  # the runs address a batch entry's planes with 32-bit offsets
    A_, D_, bias_ = _params(A, D, delta_bias, 4 * dim_g)
    grid = (triton.cdiv(dim_g, cfg["BD"]), 4, batch)
    _plane_kernel[grid](
        u, u.stride(0), u.stride(1), u.stride(2), delta, delta.stride(0), delta.stride(1), delta.stride(2),
        B, B.stride(0), B.stride(1), C, C.stride(0), C.stride(1), y, y.stride(0), y.stride(1), y.stride(2),
        A_, D_, bias_, dim_g, H, W, 1,
        BD=cfg["BD"], LP=_pow2(H * W), HP=_pow2(H), WP=_pow2(W), ALIGN=_align(*[t.flatten(-2) for t in (u, delta, y)]),
        RUNS=cfg["RUNS"], GATHER=bool(cfg["RUNS_GATHER"]), HC=H if cfg["RUNS"] else 0, WC=W if cfg["RUNS"] else 0,
        HAS_D=D is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(delta_softplus),
        num_warps=cfg["num_warps"])
    return y
