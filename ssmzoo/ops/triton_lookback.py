"""GroupMamba's 4-direction scan (d_state 1) as a single-pass chained scan with decoupled look-back.

Why another kernel: the tile kernels of ``triton_scan`` give each program a whole sequence (one
(batch, group, channel block) walks all H x W steps chunk by chunk), so at GroupMamba-T's stage 1
there are only 512 programs, each with one chunk's loads in flight at a time: ~40% of the copy
bandwidth on the models' channels-last maps (docs/scan_notes.md). Splitting the sequence over
programs needs the state entering each segment; computing it in an extra pass re-reads u, delta and
B (~1.7x the bytes). Here every input is read once and y written once, as in CUB's single-pass scan
(Merrill & Garland, "Single-pass Parallel Prefix Scan with Decoupled Look-back", 2016):

* a program takes a ticket from a global counter (atomic add); the ticket, not the program id,
  names its (segment, chain) with all chains' segment 0 first, so every program with a smaller
  ticket has already started: waiting on them cannot deadlock, whatever order the hardware
  schedules programs in. A chain is one (batch, group, channel block); its segments are SEG
  consecutive steps in the group's scan order;
* it loads its (SEG, BD) tile (steps x channels) once, reading each step's position by index
  arithmetic (row-major, column-major, both reversed: no flipped or transposed copies) and scans it
  from h = 0: h_t (local state) and P_t (product of the decays so far), both in registers;
* it publishes its aggregate (P_end, h_end) and flag 1, then looks back over its predecessors:
  segment j's inclusive state (flag 2) ends the walk, an aggregate (flag 1) is folded in and the
  walk goes on to j - 1; the state entering the segment is then H_in, and the program publishes its
  own inclusive state H_in P_end + h_end with flag 2 for its successors;
* y_t = C_t (h_t + P_t H_in) + D u_t is stored in u's layout.

That is the decoupled look-back (``CHAINED=0``). The default (``CHAINED=1``, session 13) skips the
aggregates: a segment waits for its predecessor's inclusive state (flag 2) and takes it as H_in.
Tickets order every chain's segment k before any segment k + 1, so the predecessor has nearly always
finished; this was faster on the H100 and, unlike the decoupled fold, gives the same bits on every
call (see ``DEFAULT_CHAINED``).

GroupMamba's mixer runs it with more around the scan (``group_scan_4dir_norm_gate_triton``): with
``NORM_GATE`` each program holds a whole group and normalises y over the group's channels, then gates
it with SiLU(z), in registers (the float32 y never reaches memory); with ``XPROJ`` it also computes
delta, B and C from the u tile instead of reading an x_proj GEMM's output, and with ``OUTPROJ`` it
writes out_proj's output instead of its input (docs/scan_notes.md, session 20).

Flags and ticket are a fresh zeroed int32 buffer per call; states go through small float32 buffers
(3 x chains x segments x BD floats). A program's threads store its states, meet at a barrier, and one
thread then releases the flag (a release by one thread orders only what it has observed; the barrier
makes the other threads' stores part of that); readers acquire the flag and load the states with
``.cg`` (L2, not a stale L1 line). The barrier was added after the last GPU run (the timed and tested
kernel had none and gave no wrong output in its GPU tests or the ~200 outputs of the sweep, each
checked against the tile kernel); it costs two bar.sync per program.

Under ``TRITON_INTERPRET=1`` programs run one after the other in grid order, which is ticket order,
so the look-back finds every predecessor finished: the kernel's arithmetic and its look-back
bookkeeping are checked on the CPU; the concurrency (spinning on a flag) only on a GPU.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

import triton
import triton.language as tl

from .triton_scan import (_check_device, _check_group_kernel_args, _check_norm_gate_args, _combine, _interpreting,
                          _params, _pow2, _step_delta, _updated_config)

__all__ = ["group_scan_4dir_lookback_triton", "lookback_config", "lookback_default", "projections_fit"]

# From the H100 sweep (benchmarks/scan.py --lookback, 7 configs x GroupMamba's stage shapes, batch 128;
# docs/gpu_runs/scan_lookback.txt): 64 steps x 16 channels on 2 warps was the fastest or within 5% of
# it on every channels-last shape (SEG 256 or 8 warps: 1.3-3x slower).
DEFAULT_SEG, DEFAULT_BD, DEFAULT_WARPS = 64, 16, 2
# CHAINED = 1: a segment waits for its predecessor's inclusive state instead of folding in the
# aggregates of predecessors still looking back. The decoupled fold adds in an order that depends
# on the timing of programs, so two calls on the same input could differ in the last bits (seen on
# the H100: eager and CUDA-graph replay of GroupMamba-T gave probabilities a few ulps apart);
# chained, every output is the same sum on every call.
DEFAULT_CHAINED = 1
# The norm-gate epilogue (whole groups per program): BD -> (SEG, num_warps), from the H100 sweep in the
# compiled model's operand layout (benchmarks/scan.py --norm-gate TB, docs/gpu_runs/s20_run1.txt):
# d 16 at 56x56 230.5 us (SEG 64, 2 warps; 1 or 4 warps 247-248), d 32 at 28x28 109.6 (SEG 64, 4
# warps; 2 warps 113.9, 8 warps 168.8), d 48 at 28x28 181.3 (SEG 32, 2 warps; SEG 64 4 warps 201.2),
# d 112 at 7x7 45.2 (SEG 8, 2 warps; SEG 16 4 warps 61.4), d 87 at 14x14 121.8 (SEG 8; SEG 16 157.6;
# s20_run2.txt: SEG 4 or 1 warp no better). Timings of one config differed by up to 1.5x between
# runs where it was the first timed after the reference (e.g. d 106: 123.0 and 182.0 us).
WHOLE_GROUP_CONFIGS = {16: (64, 2), 32: (64, 4), 64: (32, 2), 128: (8, 2)}  # BD: SEG, num_warps


@triton.jit
def _step_positions(t, g, H, W, L, COLS_T: tl.constexpr):
    """Step t of group g's scan order -> where it is stored, (h, w): 0 row-major, 1 column-major, 2/3
    the same reversed. COLS_T: groups 1 and 3 hold their (square) maps transposed, so their
    column-major order is stored row by row, like the other groups'."""
    tt = tl.where(g >= 2, L - 1 - t, t)
    if COLS_T:
        h, w = tt // W, tt % W
    else:
        col = (g % 2) == 1
        h = tl.where(col, tt % H, tt // W)
        w = tl.where(col, tt // H, tt % W)
    return h, w


@triton.jit
def _group_dot(x, w_ptr, cl, cmask, dim_g, BD: tl.constexpr, IEEE: tl.constexpr, UPCAST: tl.constexpr):
    """x (SEG, BD) rounded to the weight's dtype (a GEMM's input) times the transpose of one group's
    weight at w_ptr (rows cl where cmask, dim_g columns; k >= dim_g loads 0). One helper so that x_proj's
    delta and out_proj's output load the weight, work around the interpreter and choose the precision
    alike: IEEE (float32 x and weight) or UPCAST as exact float32 products, otherwise on the tensor
    cores (float32 accumulation)."""
    k = tl.arange(0, BD)
    w_t = tl.load(w_ptr + cl[None, :] * dim_g + k[:, None], mask=cmask[None, :] & (k < dim_g)[:, None], other=0.0)
    x = x.to(w_t.dtype)  # (x_proj: u's dtype already; out_proj: y's, as the launcher casts the weights)
    if UPCAST:  # the interpreter's dot mishandles 16-bit floats; their float32 products are exact
        x, w_t = x.to(tl.float32), w_t.to(tl.float32)
    if IEEE or UPCAST:
        out = tl.dot(x, w_t, input_precision="ieee")
    else:
        out = tl.dot(x, w_t)
    return out


@triton.jit
def _segment_tile(u_ptr, su_b, su_g, su_c, su_h, su_w, dt_ptr, sdt_b, sdt_g, sdt_c, sdt_h, sdt_w,
                  b_ptr, sb_b, sb_g, sb_h, sb_w, c_ptr, sc_b, sc_g, sc_h, sc_w,
                  seg, g, bb, cl, cmask, dim_g, H, W, L, xw_ptr, SEG: tl.constexpr, BD: tl.constexpr,
                  COLS_T: tl.constexpr, XPROJ: tl.constexpr, F32: tl.constexpr, UPCAST: tl.constexpr):
    """Segment ``seg`` of group g's scan order for channels cl: its positions (h, w), masks, and the
    u, delta (SEG, BD) and B, C (SEG,) tiles in float32. Steps past L load nothing (masked).

    XPROJ (whole groups, cl = 0..BD-1): delta, B and C are not read but computed from the u tile with
    the group's x_proj weight (xw_ptr: (4, dim_g + 2, dim_g) in u's dtype, rows delta (dt_proj folded
    in), B, C): delta on the tensor cores (float32 accumulation; float32 u as exact float32 products),
    B and C as float32 dot products."""
    t = seg * SEG + tl.arange(0, SEG)
    tmask = t < L
    h, w = _step_positions(t, g, H, W, L, COLS_T)
    valid = tmask[:, None] & cmask[None, :]
    u_in = tl.load(u_ptr + bb * su_b + g * su_g + (h * su_h + w * su_w)[:, None] + cl[None, :] * su_c,
                   mask=valid, other=0.0)
    u = u_in.to(tl.float32)
    if XPROJ:
        wg = xw_ptr + g * (dim_g + 2) * dim_g
        dt = _group_dot(u_in, wg, cl, cmask, dim_g, BD, F32, UPCAST)
        bt = tl.sum(u * tl.load(wg + dim_g * dim_g + cl, mask=cmask, other=0.0).to(tl.float32)[None, :], axis=1)
        ct = tl.sum(u * tl.load(wg + (dim_g + 1) * dim_g + cl, mask=cmask, other=0.0).to(tl.float32)[None, :], axis=1)
    else:
        dt = tl.load(dt_ptr + bb * sdt_b + g * sdt_g + (h * sdt_h + w * sdt_w)[:, None] + cl[None, :] * sdt_c,
                     mask=valid, other=0.0).to(tl.float32)
        bt = tl.load(b_ptr + bb * sb_b + g * sb_g + h * sb_h + w * sb_w, mask=tmask, other=0.0).to(tl.float32)
        ct = tl.load(c_ptr + bb * sc_b + g * sc_g + h * sc_h + w * sc_w, mask=tmask, other=0.0).to(tl.float32)
    return h, w, valid, u, dt, bt, ct


@triton.jit
def _norm_gate(y, zt, cmask, dim_g, nw, nb, eps, dtype):
    """y (rows, BD): each row's LayerNorm over its dim_g valid channels (cmask; affine nw, nb: (BD,)),
    rounded to dtype, times SiLU(zt) (float32)."""
    y = tl.where(cmask[None, :], y, 0.0)
    centered = tl.where(cmask[None, :], y - (tl.sum(y, axis=1) / dim_g)[:, None], 0.0)
    rstd = tl.rsqrt(tl.sum(centered * centered, axis=1) / dim_g + eps)
    y = (centered * rstd[:, None] * nw[None, :] + nb[None, :]).to(dtype).to(tl.float32)
    return y * (zt / (1.0 + tl.exp(-zt)))


@triton.jit
def _output(y, u, h, w, valid, g, bb, cl, cmask, gc, dim_g, D_ptr, y_ptr, sy_b, sy_g, sy_c, sy_h, sy_w,
            z_ptr, sz_b, sz_g, sz_c, sz_h, sz_w, nw_ptr, nb_ptr, eps, ow_ptr, HAS_D: tl.constexpr,
            NORM_GATE: tl.constexpr, OUTPROJ: tl.constexpr, BD: tl.constexpr, UPCAST: tl.constexpr):
    """y (+ D u) stored in the output's layout; NORM_GATE: first each position's LayerNorm over the
    group's dim_g channels (affine nw/nb) rounded to y's dtype, times SiLU(z) (z read like u).
    OUTPROJ (whole groups): then the group's out_proj (ow_ptr: (4, dim_g, dim_g) in y's dtype, rows the
    output channels) of that, rounded to y's dtype first as a GEMM's input, on the tensor cores."""
    if HAS_D:
        y += u * tl.load(D_ptr + gc, mask=cmask, other=0.0).to(tl.float32)[None, :]
    if NORM_GATE:
        nw = tl.load(nw_ptr + gc, mask=cmask, other=0.0).to(tl.float32)
        nb = tl.load(nb_ptr + gc, mask=cmask, other=0.0).to(tl.float32)
        zt = tl.load(z_ptr + bb * sz_b + g * sz_g + (h * sz_h + w * sz_w)[:, None] + cl[None, :] * sz_c,
                     mask=valid, other=0.0).to(tl.float32)
        y = _norm_gate(y, zt, cmask, dim_g, nw, nb, eps, y_ptr.dtype.element_ty)
    if OUTPROJ:
        y = _group_dot(y, ow_ptr + g * dim_g * dim_g, cl, cmask, dim_g, BD, y_ptr.dtype.element_ty == tl.float32,
                       UPCAST)
    tl.store(y_ptr + bb * sy_b + g * sy_g + (h * sy_h + w * sy_w)[:, None] + cl[None, :] * sy_c,
             y.to(y_ptr.dtype.element_ty), mask=valid)


@triton.jit
def _group4_lookback_kernel(u_ptr, su_b, su_g, su_c, su_h, su_w, dt_ptr, sdt_b, sdt_g, sdt_c, sdt_h, sdt_w,
                            b_ptr, sb_b, sb_g, sb_h, sb_w, c_ptr, sc_b, sc_g, sc_h, sc_w,
                            y_ptr, sy_b, sy_g, sy_c, sy_h, sy_w,
                            A_ptr, D_ptr, bias_ptr, agg_p_ptr, agg_h_ptr, inc_ptr, flag_ptr, ticket_ptr,
                            dim_g, H, W, L, n_chains, NBLK, NSEG,
                            z_ptr, sz_b, sz_g, sz_c, sz_h, sz_w, nw_ptr, nb_ptr, eps, xw_ptr, ow_ptr,
                            SEG: tl.constexpr, BD: tl.constexpr, CHAINED: tl.constexpr, HAS_D: tl.constexpr,
                            HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, PROBE: tl.constexpr = 0,
                            COLS_T: tl.constexpr = 0, NORM_GATE: tl.constexpr = 0, XPROJ: tl.constexpr = 0,
                            OUTPROJ: tl.constexpr = 0, F32: tl.constexpr = 0, UPCAST: tl.constexpr = 0):
    # NORM_GATE (the programs hold whole groups, NBLK = 1): y is followed by the group's LayerNorm
    # (over its dim_g channels, affine nw/nb) rounded to y's dtype, times SiLU(z); z is read like u
    # PROBE (timing only, wrong output; benchmarks/scan.py --probe): 1 skips the wait for the
    # predecessor, 2 also the scan, 3 is a plain copy of the tiles (program id, no ticket, no flags)
    if PROBE == 3:
        ticket = tl.program_id(0)
    else:
        ticket = tl.atomic_add(ticket_ptr, 1)
    seg = ticket // n_chains
    chain = ticket % n_chains
    blk = chain % NBLK
    g = (chain // NBLK) % 4
    bb = (chain // (NBLK * 4)).to(tl.int64)

    cl = blk * BD + tl.arange(0, BD)
    cmask = cl < dim_g
    gc = g * dim_g + cl                               # channel index within the 4 groups (A, D, bias)
    h, w, valid, u, dt, bt, ct = _segment_tile(u_ptr, su_b, su_g, su_c, su_h, su_w, dt_ptr, sdt_b, sdt_g,
                                               sdt_c, sdt_h, sdt_w, b_ptr, sb_b, sb_g, sb_h, sb_w, c_ptr, sc_b,
                                               sc_g, sc_h, sc_w, seg, g, bb, cl, cmask, dim_g, H, W, L, xw_ptr,
                                               SEG, BD, COLS_T, XPROJ, F32, UPCAST)
    A2 = tl.load(A_ptr + gc, mask=cmask, other=0.0).to(tl.float32) * 1.4426950408889634
    bias = tl.load(bias_ptr + gc, mask=cmask, other=0.0).to(tl.float32)[None, :]  # (not loaded without one)
    dt = _step_delta(dt, bias, valid, HAS_BIAS, SOFTPLUS)  # padding steps: a = 1, b = 0 (identity)
    a = tl.exp2(dt * A2[None, :])
    b = dt * u * bt[:, None]
    if PROBE >= 2:
        P, hl = a, b
    else:
        P, hl = tl.associative_scan((a, b), axis=0, combine_fn=_combine)
    if PROBE == 3:
        tl.store(y_ptr + bb * sy_b + g * sy_g + (h * sy_h + w * sy_w)[:, None] + cl[None, :] * sy_c,
                 (u + dt).to(y_ptr.dtype.element_ty), mask=valid)
        return

    last = (tl.arange(0, SEG) == SEG - 1)[:, None]
    p_end = tl.sum(tl.where(last, P, 0.0), axis=0)    # (BD,): the segment's decay and state from h = 0
    h_end = tl.sum(tl.where(last, hl, 0.0), axis=0)
    cidx = tl.arange(0, BD)
    flags = flag_ptr + chain * NSEG                   # this chain's flag per segment
    states = chain.to(tl.int64) * NSEG * BD + cidx    # this chain's per-segment state slots, + seg * BD
    h_in = tl.zeros([BD], dtype=tl.float32)           # segment 0 starts from h = 0
    if PROBE >= 1:
        pass
    elif CHAINED:  # wait for the predecessor's inclusive state: the same sum whatever the timing
        if seg > 0:
            flag = tl.atomic_add(flags + seg - 1, 0, sem="acquire")
            while flag != 2:
                flag = tl.atomic_add(flags + seg - 1, 0, sem="acquire")
            h_in = tl.load(inc_ptr + states + (seg - 1) * BD, cache_modifier=".cg")
    elif seg > 0:
        tl.store(agg_p_ptr + states + seg * BD, p_end)
        tl.store(agg_h_ptr + states + seg * BD, h_end)
        tl.debug_barrier()  # every thread's stores precede the one thread's release of the flag
        tl.atomic_xchg(flags + seg, 1, sem="release")
        acc_p = tl.full([BD], 1.0, dtype=tl.float32)  # H_in = acc_p * H_{j} + acc_h, walking j down
        acc_h = tl.zeros([BD], dtype=tl.float32)
        j = seg - 1
        while j >= 0:
            flag = tl.atomic_add(flags + j, 0, sem="acquire")
            while flag == 0:
                flag = tl.atomic_add(flags + j, 0, sem="acquire")
            if flag == 2:
                h_in = acc_p * tl.load(inc_ptr + states + j * BD, cache_modifier=".cg") + acc_h
                j = -1
            else:
                acc_h = acc_h + acc_p * tl.load(agg_h_ptr + states + j * BD, cache_modifier=".cg")
                acc_p = acc_p * tl.load(agg_p_ptr + states + j * BD, cache_modifier=".cg")
                j -= 1
    tl.store(inc_ptr + states + seg * BD, p_end * h_in + h_end)  # (segment 0: h_end exactly)
    tl.debug_barrier()
    tl.atomic_xchg(flags + seg, 2, sem="release")

    _output((hl + P * h_in[None, :]) * ct[:, None], u, h, w, valid, g, bb, cl, cmask, gc, dim_g, D_ptr,
            y_ptr, sy_b, sy_g, sy_c, sy_h, sy_w, z_ptr, sz_b, sz_g, sz_c, sz_h, sz_w, nw_ptr, nb_ptr, eps,
            ow_ptr, HAS_D, NORM_GATE, OUTPROJ, BD, UPCAST)


def lookback_default(u: Tensor, n_state: int) -> bool:
    """Where the look-back kernel beat the tile kernel in the H100 sweep (benchmarks/scan.py
    --lookback, batch 128; docs/gpu_runs/scan_lookback.txt): channels-last maps (the models'
    layout), d_state 1, at 56x56 (fp32 217 vs 264 us at C64; bf16 190 vs 293 us; C96 2x) and 28x28
    (bf16 108 vs 156 us at C128, fp32 within 5%), and on maps of one segment (7x7: 36-39 vs 42-48 us);
    at 14x14 (four segments, the last of 4 tokens) the tile kernel stayed faster (100 vs 156 us), and
    on channel-first maps always (3-7x)."""
    H, W = u.shape[-2:]
    return (n_state == 1 and u.shape[2] > 1 and u.stride(2) == 1
            and (H * W >= 28 * 28 or H * W <= DEFAULT_SEG))


def lookback_config(dim_g: int, config: Optional[dict] = None, whole_groups: bool = False) -> dict:
    """SEG steps x BD channels per program (powers of 2), num_warps, CHAINED (see DEFAULT_CHAINED);
    COLS_T 1: groups 1 and 3 of every operand hold their maps transposed (square maps only), a
    candidate layout in which every group's scan order walks memory in order (docs/scan_notes.md,
    item 6; measured with ``benchmarks/scan.py --model-layout --layouts groups_t``, no model uses it).

    ``whole_groups`` (the norm-gate epilogue): BD covers the group's channels (``WHOLE_GROUP_CONFIGS``)."""
    if whole_groups:
        bd = _pow2(dim_g)
        seg, warps = WHOLE_GROUP_CONFIGS.get(bd, (max(8, 1024 // bd), 2))
        defaults = dict(SEG=seg, BD=bd, num_warps=warps)
    else:
        defaults = dict(SEG=DEFAULT_SEG, BD=min(DEFAULT_BD, _pow2(dim_g)), num_warps=DEFAULT_WARPS)
    return _updated_config(dict(defaults, CHAINED=DEFAULT_CHAINED, PROBE=0, COLS_T=0), config, ("SEG", "BD"))


def _tiles_fit_dots(cfg: dict) -> bool:
    """Whether a launch's (SEG, BD) tiles are large enough for ``tl.dot`` (tensor cores: 16 x 16)."""
    return cfg["SEG"] >= 16 and cfg["BD"] >= 16


def projections_fit(dim_g: int) -> bool:
    """Whether the norm-gate launch of groups of ``dim_g`` channels (``WHOLE_GROUP_CONFIGS``) can also
    compute x_proj / out_proj in the kernel: groups of up to 64 channels (8 steps per tile for wider)."""
    return _tiles_fit_dots(lookback_config(dim_g, whole_groups=True))


def norm_gate_operands(norm_gate: Optional[tuple], u: Tensor, placeholder: Tensor, param: Tensor) -> tuple:
    """The norm-gate epilogue's kernel arguments (z, norm weight, norm bias as flat float32, eps) from
    ``norm_gate`` = (norm_weight (4, d), norm_bias (4, d), eps, z like u); without it, placeholders
    (``placeholder`` for z, ``param`` for the weights) the kernel does not read."""
    if norm_gate is None:
        return placeholder, param, param, 0.0
    norm_weight, norm_bias, eps, z = norm_gate
    if z.shape != u.shape:
        raise ValueError(f"z must be shaped like u {tuple(u.shape)}, got {tuple(z.shape)}")
    nw, nb = (t.reshape(-1).float().contiguous() for t in (norm_weight, norm_bias))
    return z, nw, nb, eps


def group_scan_4dir_lookback_triton(u: Tensor, delta: Optional[Tensor], A: Tensor, B: Optional[Tensor],
                                    C: Optional[Tensor], D: Optional[Tensor] = None,
                                    delta_bias: Optional[Tensor] = None, delta_softplus: bool = True, *,
                                    out: Optional[Tensor] = None, config: Optional[dict] = None,
                                    norm_gate: Optional[tuple] = None, x_proj: Optional[Tensor] = None,
                                    out_proj: Optional[Tensor] = None) -> Tensor:
    """``group_scan_4dir_triton``'s function and signature (d_state 1) on the look-back kernel.

    ``norm_gate`` = (norm_weight (4, d), norm_bias (4, d), eps, z like u): the epilogue of
    ``group_scan_4dir_norm_gate_triton`` (each program then holds a whole group: BD >= d).
    ``x_proj`` (4, d + 2, d), with ``norm_gate`` only: delta, B and C (then None) are computed from u
    in the kernel (rows: delta with dt_proj folded in, B, C; used in u's dtype, as a GEMM would).
    ``out_proj`` (4, d, d), likewise: the output is each group's out_proj of the gated y (the weight in
    the output's dtype).

    Arguments checked as ``group_scan_4dir_triton`` checks them (``check_group_scan_args``, ``out`` too)
    and d_state 1, ``norm_gate`` as ``group_scan_4dir_norm_gate_triton`` checks it, each mistake a
    ValueError / TypeError naming the argument; ``group_scan_4dir_triton`` and
    ``group_scan_4dir_norm_gate_triton`` run ``_group_scan_4dir_lookback_triton``, which skips the checks they have made."""
    name = "group_scan_4dir_lookback_triton"
    _check_group_kernel_args(name, "look-back kernel", u, delta, A, B, C, D, delta_bias, out,
                             operands_optional=x_proj is not None)
    if norm_gate is not None:
        norm_weight, norm_bias, _, z = _norm_gate_tuple(name, norm_gate)
        _check_norm_gate_args(name, u, delta, B, C, norm_weight, norm_bias, z, x_proj, out_proj)
    elif x_proj is not None or out_proj is not None:
        raise ValueError(f"{name}: x_proj / out_proj in the scan need the norm-gate epilogue: pass norm_gate")
    _check_device(u)
    return _group_scan_4dir_lookback_triton(u, delta, A, B, C, D, delta_bias, delta_softplus, out=out, config=config,
                                            norm_gate=norm_gate, x_proj=x_proj, out_proj=out_proj)


def _norm_gate_tuple(name: str, norm_gate: object) -> tuple:
    """``norm_gate`` = (norm_weight, norm_bias, eps, z), or a TypeError naming it."""
    if not isinstance(norm_gate, (tuple, list)) or len(norm_gate) != 4:
        raise TypeError(f"{name}: norm_gate must be (norm_weight, norm_bias, eps, z), got {type(norm_gate).__name__}"
                        + (f" of {len(norm_gate)}" if isinstance(norm_gate, (tuple, list)) else ""))
    return tuple(norm_gate)


def _group_scan_4dir_lookback_triton(u: Tensor, delta: Optional[Tensor], A: Tensor, B: Optional[Tensor],
                                     C: Optional[Tensor], D: Optional[Tensor] = None,
                                     delta_bias: Optional[Tensor] = None, delta_softplus: bool = True, *,
                                     out: Optional[Tensor] = None, config: Optional[dict] = None,
                                     norm_gate: Optional[tuple] = None, x_proj: Optional[Tensor] = None,
                                     out_proj: Optional[Tensor] = None) -> Tensor:
    """``group_scan_4dir_lookback_triton`` on arguments already checked (by ``group_scan_4dir_triton`` or
    ``group_scan_4dir_norm_gate_triton``)."""
    batch, groups, dim_g, H, W = u.shape
    if groups != 4 or (B is not None and B.shape[2] != 1):
        raise ValueError("the look-back kernel takes 4 groups and d_state 1")
    L = H * W
    cfg = lookback_config(dim_g, config, whole_groups=norm_gate is not None)
    if norm_gate is not None and cfg["BD"] < dim_g:
        raise ValueError(f"the norm-gate epilogue needs whole groups per program: BD {cfg['BD']} < d {dim_g}")
    if (x_proj is not None or out_proj is not None) and (norm_gate is None or not _tiles_fit_dots(cfg)):
        raise ValueError(f"x_proj / out_proj in the scan need the norm-gate epilogue and tiles of at least "
                         f"16 x 16 (tensor cores), got SEG {cfg['SEG']}, BD {cfg['BD']}")
    if out_proj is not None:
        if tuple(out_proj.shape) != (4, dim_g, dim_g):
            raise ValueError(f"out_proj must be (4, {dim_g}, {dim_g}), got {tuple(out_proj.shape)}")
        out_proj = out_proj.to(out.dtype if out is not None else u.dtype).contiguous()
    if x_proj is not None:
        if tuple(x_proj.shape) != (4, dim_g + 2, dim_g):
            raise ValueError(f"x_proj must be (4, {dim_g + 2}, {dim_g}), got {tuple(x_proj.shape)}")
        x_proj = x_proj.to(u.dtype).contiguous()
        delta = B = C = u  # (not read)
    if cfg["COLS_T"] and H != W:
        raise ValueError(f"COLS_T (groups 1 and 3 stored transposed) needs a square map, got {H}x{W}")
    seg, bd = cfg["SEG"], cfg["BD"]
    nblk = triton.cdiv(dim_g, bd)
    n_chains = batch * 4 * nblk
    nseg = triton.cdiv(L, seg)
    dev = u.device
    y = out if out is not None else torch.empty_like(u)
    A_, D_, bias_ = _params(A, D, delta_bias, 4 * dim_g)
    z, nw, nb, eps = norm_gate_operands(norm_gate, u, y, A_)
    operands = (u, *u.stride(), delta, *delta.stride(), B, B.stride(0), B.stride(1), B.stride(3), B.stride(4),
                C, C.stride(0), C.stride(1), C.stride(3), C.stride(4), y, *y.stride(), A_, D_, bias_)
    flags = torch.zeros(n_chains * nseg + 1, dtype=torch.int32, device=dev)  # + the ticket counter
    states = torch.empty(3, n_chains * nseg * bd, dtype=torch.float32, device=dev)
    _group4_lookback_kernel[(n_chains * nseg,)](
        *operands, states[0], states[1], states[2], flags, flags[n_chains * nseg:],
        dim_g, H, W, L, n_chains, nblk, nseg, z, *z.stride(), nw, nb, float(eps), x_proj if x_proj is not None else A_,
        out_proj if out_proj is not None else A_,
        SEG=seg, BD=bd, CHAINED=bool(cfg["CHAINED"]), HAS_D=D is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(delta_softplus),
        PROBE=int(cfg["PROBE"]), COLS_T=int(cfg["COLS_T"]), NORM_GATE=int(norm_gate is not None),
        XPROJ=int(x_proj is not None), OUTPROJ=int(out_proj is not None), F32=int(u.dtype == torch.float32),
        UPCAST=int(_interpreting() and (u.dtype, y.dtype) != (torch.float32, torch.float32)),  # 16-bit dots
        num_warps=cfg["num_warps"])
    return y
