"""GroupMamba's 4-direction scan (d_state 1) with one lane per channel, each walking its whole sequence.

Why another kernel: on GroupMamba's small maps (14x14 and 7x7: stages 3 and 4) there are many
sequences (batch x channels: 44,544 at GroupMamba-T's stage 3, batch 128) and they are short (196 or
49 steps). The look-back kernel cuts them into segments of a few steps (8 with the norm-gate
epilogue) that wait on one another through flags, and scans each segment across lanes
(``tl.associative_scan``: shuffles); at 14x14 it ran at 21-25% of the copy bandwidth
(docs/scan_notes.md). Here a program owns BD channels of one group of one image, each lane a channel
(every load and store a contiguous run of channels in the models' channels-last maps), and walks
the group's scan order step by step: the recurrence is one FMA per step in a register, with no
shuffles, no flags and no zeroed buffers. The steps' loads do not depend on the state, so the next
K steps' loads are issued before the current K steps are computed: 2K steps of u, delta, B, C
(and z) in flight per program hide the memory latency that one-warp programs otherwise expose.

``NORM_GATE``: the program holds the whole group (BD >= d) on one warp by default, so that each
step's LayerNorm over the group's channels is a reduction within the warp, and y is normalised and
gated with SiLU(z) before it is stored (float32 y never reaches memory), as in the look-back
kernel's epilogue (``triton_lookback._norm_gate``).

Measured on the H100 (session 22, docs/scan_notes.md "Session 22"): slower than the look-back kernel
at 14x14 (norm-gate 145-184 vs ~105-122 us; compiled GroupMamba-T stage-3 block 724 vs 676 us) and
about even at 7x7. Each warp's instruction stream bounds it (~106 instructions per step), not the
loads in flight, so it is not the models' default (``SEQ_SCAN``); it stays as an option.

Entry point: ``group_scan_4dir_seq_triton`` (``group_scan_4dir_triton``'s signature, d_state 1, plus
the norm-gate epilogue); ``group_scan_4dir_triton`` / ``group_scan_4dir_norm_gate_triton`` run it
with ``config={"SEQ": 1}`` (or by ``seq_default`` where ``SEQ_SCAN`` is set).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

import triton
import triton.language as tl

from .triton_lookback import _norm_gate, _norm_gate_tuple, _segment_tile, norm_gate_operands
from .triton_scan import (_check_device, _check_group_kernel_args, _check_norm_gate_args, _params, _pow2, _step_delta,
                          _updated_config)

__all__ = ["group_scan_4dir_seq_triton", "seq_config", "seq_default"]

# Launch defaults: 32 channels on one warp for the plain scan, the whole group on one warp with the
# norm-gate epilogue; K = 8 steps per chunk (16 in flight with the next chunk's loads), 4 for whole
# groups of 64 channels or more (``seq_config``). The H100 sweep (docs/gpu_runs/s22_run1.txt): K 2-8
# within ~10%; 2 warps per program faster than 1 at 14x14 (145.4 vs 170-184 us) and 7x7 (41.3 vs 45.3).
DEFAULT_BD, DEFAULT_K, DEFAULT_WARPS = 32, 8, 1
# The largest map (H x W) on which the models use this kernel where SEQ_SCAN is set.
SEQ_MAX_TOKENS = 16 * 16
# True: the models run this kernel on small maps (``seq_default``). Off: slower than the look-back kernel
# on the H100 (docs/gpu_runs/s22_run1.txt; side-by-side timing: ab_switches AB_SEQ_SCAN).
SEQ_SCAN = False


@triton.jit
def _step_loads(u_ptr, su_b, su_g, su_c, su_h, su_w, dt_ptr, sdt_b, sdt_g, sdt_c, sdt_h, sdt_w,
                b_ptr, sb_b, sb_g, sb_h, sb_w, c_ptr, sc_b, sc_g, sc_h, sc_w,
                z_ptr, sz_b, sz_g, sz_c, sz_h, sz_w, t, g, bb, cl, cmask, dim_g, H, W, L,
                BD: tl.constexpr, NORM_GATE: tl.constexpr, F32: tl.constexpr):
    """Step t of group g's scan order as (1, BD) tiles: (h, w, valid, u, delta, B, C, z) (z = u
    without the norm-gate epilogue). Steps past L load nothing."""
    h, w, valid, u, dt, bt, ct = _segment_tile(u_ptr, su_b, su_g, su_c, su_h, su_w, dt_ptr, sdt_b, sdt_g, sdt_c,
                                               sdt_h, sdt_w, b_ptr, sb_b, sb_g, sb_h, sb_w, c_ptr, sc_b, sc_g,
                                               sc_h, sc_w, t, g, bb, cl, cmask, dim_g, H, W, L, u_ptr,
                                               1, BD, 0, 0, F32, 0)
    if NORM_GATE:
        zt = tl.load(z_ptr + bb * sz_b + g * sz_g + (h * sz_h + w * sz_w)[:, None] + cl[None, :] * sz_c,
                     mask=valid, other=0.0).to(tl.float32)
    else:
        zt = u
    return h, w, valid, u, dt, bt, ct, zt


@triton.jit
def _chunk_loads(u_ptr, su_b, su_g, su_c, su_h, su_w, dt_ptr, sdt_b, sdt_g, sdt_c, sdt_h, sdt_w,
                 b_ptr, sb_b, sb_g, sb_h, sb_w, c_ptr, sc_b, sc_g, sc_h, sc_w,
                 z_ptr, sz_b, sz_g, sz_c, sz_h, sz_w, t0, g, bb, cl, cmask, dim_g, H, W, L,
                 K: tl.constexpr, BD: tl.constexpr, NORM_GATE: tl.constexpr, F32: tl.constexpr):
    """Steps t0 .. t0 + K - 1: a tuple of 8 K tiles (``_step_loads`` per step), every load issued
    before any is used."""
    steps = _step_loads(u_ptr, su_b, su_g, su_c, su_h, su_w, dt_ptr, sdt_b, sdt_g, sdt_c, sdt_h, sdt_w,
                        b_ptr, sb_b, sb_g, sb_h, sb_w, c_ptr, sc_b, sc_g, sc_h, sc_w,
                        z_ptr, sz_b, sz_g, sz_c, sz_h, sz_w, t0, g, bb, cl, cmask, dim_g, H, W, L, BD, NORM_GATE, F32)
    for k in tl.static_range(1, K):  # (one return: Triton wants one return type per function)
        steps = steps + _step_loads(u_ptr, su_b, su_g, su_c, su_h, su_w, dt_ptr, sdt_b, sdt_g, sdt_c, sdt_h,
                                    sdt_w, b_ptr, sb_b, sb_g, sb_h, sb_w, c_ptr, sc_b, sc_g, sc_h, sc_w,
                                    z_ptr, sz_b, sz_g, sz_c, sz_h, sz_w, t0 + k, g, bb, cl, cmask, dim_g, H, W, L,
                                    BD, NORM_GATE, F32)
    return steps


@triton.jit
def _chunk_steps(steps, state, A2, bias, Dv, nw, nb, eps, cmask, dim_g, bb, g, cl,
                 y_ptr, sy_b, sy_g, sy_c, sy_h, sy_w, K: tl.constexpr, HAS_D: tl.constexpr,
                 HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, NORM_GATE: tl.constexpr):
    """The recurrence over one chunk's K loaded steps, in order, each step's output stored; returns the
    state after the last step (padding steps past L are identity steps and store nothing)."""
    for k in tl.static_range(K):
        h, w, valid = steps[8 * k], steps[8 * k + 1], steps[8 * k + 2]
        u, dt, bt, ct, zt = steps[8 * k + 3], steps[8 * k + 4], steps[8 * k + 5], steps[8 * k + 6], steps[8 * k + 7]
        dt = _step_delta(dt, bias, valid, HAS_BIAS, SOFTPLUS)
        state = tl.exp2(dt * A2) * state + dt * u * bt[:, None]
        y = state * ct[:, None]
        if HAS_D:
            y += u * Dv
        if NORM_GATE:
            y = _norm_gate(y, zt, cmask, dim_g, nw, nb, eps, y_ptr.dtype.element_ty)
        tl.store(y_ptr + bb * sy_b + g * sy_g + (h * sy_h + w * sy_w)[:, None] + cl[None, :] * sy_c,
                 y.to(y_ptr.dtype.element_ty), mask=valid)
    return state


@triton.jit
def _group4_seq_kernel(u_ptr, su_b, su_g, su_c, su_h, su_w, dt_ptr, sdt_b, sdt_g, sdt_c, sdt_h, sdt_w,
                       b_ptr, sb_b, sb_g, sb_h, sb_w, c_ptr, sc_b, sc_g, sc_h, sc_w,
                       y_ptr, sy_b, sy_g, sy_c, sy_h, sy_w, A_ptr, D_ptr, bias_ptr,
                       z_ptr, sz_b, sz_g, sz_c, sz_h, sz_w, nw_ptr, nb_ptr, eps, dim_g, NBLK,
                       H: tl.constexpr, W: tl.constexpr, BD: tl.constexpr, K: tl.constexpr,
                       HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
                       NORM_GATE: tl.constexpr, F32: tl.constexpr):
    """One program: channels blk * BD .. of group g of image bb, over all H x W steps of the group's
    scan order (H, W compile-time: the step -> position divisions become multiplications)."""
    pid = tl.program_id(0)
    blk = pid % NBLK
    g = (pid // NBLK) % 4
    bb = (pid // (NBLK * 4)).to(tl.int64)
    L: tl.constexpr = H * W
    cl = blk * BD + tl.arange(0, BD)
    cmask = cl < dim_g
    gc = g * dim_g + cl
    A2 = tl.load(A_ptr + gc, mask=cmask, other=0.0)[None, :] * 1.4426950408889634
    bias = tl.load(bias_ptr + gc, mask=cmask, other=0.0)[None, :]
    Dv = tl.load(D_ptr + gc, mask=cmask, other=0.0)[None, :]
    if NORM_GATE:
        nw = tl.load(nw_ptr + gc, mask=cmask, other=0.0)
        nb = tl.load(nb_ptr + gc, mask=cmask, other=0.0)
    else:
        nw, nb = Dv, Dv
    state = tl.zeros([1, BD], dtype=tl.float32)
    steps = _chunk_loads(u_ptr, su_b, su_g, su_c, su_h, su_w, dt_ptr, sdt_b, sdt_g, sdt_c, sdt_h, sdt_w,
                         b_ptr, sb_b, sb_g, sb_h, sb_w, c_ptr, sc_b, sc_g, sc_h, sc_w,
                         z_ptr, sz_b, sz_g, sz_c, sz_h, sz_w, 0, g, bb, cl, cmask, dim_g, H, W, L, K, BD, NORM_GATE, F32)
    for t0 in range(0, L, K):
        ahead = _chunk_loads(u_ptr, su_b, su_g, su_c, su_h, su_w, dt_ptr, sdt_b, sdt_g, sdt_c, sdt_h, sdt_w,
                             b_ptr, sb_b, sb_g, sb_h, sb_w, c_ptr, sc_b, sc_g, sc_h, sc_w,
                             z_ptr, sz_b, sz_g, sz_c, sz_h, sz_w, t0 + K, g, bb, cl, cmask, dim_g, H, W, L, K, BD,
                             NORM_GATE, F32)
        state = _chunk_steps(steps, state, A2, bias, Dv, nw, nb, eps, cmask, dim_g, bb, g, cl,
                             y_ptr, sy_b, sy_g, sy_c, sy_h, sy_w, K, HAS_D, HAS_BIAS, SOFTPLUS, NORM_GATE)
        steps = ahead


def seq_default(u: Tensor, n_state: int) -> bool:
    """Where the models use this kernel: d_state 1, channels-last maps of at most SEQ_MAX_TOKENS."""
    H, W = u.shape[-2:]
    return SEQ_SCAN and n_state == 1 and u.shape[2] > 1 and u.stride(2) == 1 and H * W <= SEQ_MAX_TOKENS


def seq_config(dim_g: int, config: Optional[dict] = None, whole_groups: bool = False) -> dict:
    """BD channels per program (a power of 2; ``whole_groups``, the norm-gate epilogue: the group's
    channels, rounded up), K steps per chunk, num_warps."""
    bd = _pow2(dim_g) if whole_groups else min(DEFAULT_BD, _pow2(dim_g))
    # whole groups of 64+ channels on one warp: 2+ channels per lane, so half the steps per chunk
    # (sm_90, Triton 3.6: d 87 with K 8 needs 255 registers and spills; K 4 207, no spills)
    k = DEFAULT_K // 2 if whole_groups and bd >= 64 else DEFAULT_K
    cfg = _updated_config(dict(BD=bd, K=k, num_warps=DEFAULT_WARPS), config, ("BD",))
    if cfg["K"] < 1:
        raise ValueError(f"K (steps per chunk) must be >= 1, got {cfg['K']}")
    return cfg


def group_scan_4dir_seq_triton(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                               D: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None,
                               delta_softplus: bool = True, *, out: Optional[Tensor] = None,
                               config: Optional[dict] = None, norm_gate: Optional[tuple] = None) -> Tensor:
    """``group_scan_4dir_triton``'s function and signature (d_state 1) on the lane-per-channel kernel.

    ``norm_gate`` = (norm_weight (4, d), norm_bias (4, d), eps, z like u): each step's y is then each
    group's LayerNorm (rounded to the output's dtype) times SiLU(z), as in
    ``group_scan_4dir_norm_gate_triton`` (a program then holds the whole group: BD >= d).

    Arguments checked as ``group_scan_4dir_triton`` checks them (``check_group_scan_args``, ``out`` too)
    and d_state 1, ``norm_gate`` as ``group_scan_4dir_norm_gate_triton`` checks it, each mistake a
    ValueError / TypeError naming the argument; ``group_scan_4dir_triton`` and
    ``group_scan_4dir_norm_gate_triton`` run ``_group_scan_4dir_seq_triton``, which skips the checks they have made."""
    name = "group_scan_4dir_seq_triton"
    _check_group_kernel_args(name, "lane-per-channel scan", u, delta, A, B, C, D, delta_bias, out)
    if norm_gate is not None:
        norm_weight, norm_bias, _, z = _norm_gate_tuple(name, norm_gate)
        _check_norm_gate_args(name, u, delta, B, C, norm_weight, norm_bias, z)
    _check_device(u)
    return _group_scan_4dir_seq_triton(u, delta, A, B, C, D, delta_bias, delta_softplus, out=out, config=config,
                                       norm_gate=norm_gate)


def _group_scan_4dir_seq_triton(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                                D: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None,
                                delta_softplus: bool = True, *, out: Optional[Tensor] = None,
                                config: Optional[dict] = None, norm_gate: Optional[tuple] = None) -> Tensor:
    """``group_scan_4dir_seq_triton`` on arguments already checked (by ``group_scan_4dir_triton`` or
    ``group_scan_4dir_norm_gate_triton``)."""
    batch, groups, dim_g, H, W = u.shape
    if groups != 4 or B.shape[2] != 1:
        raise ValueError("the lane-per-channel scan takes 4 groups and d_state 1")
    cfg = seq_config(dim_g, config, whole_groups=norm_gate is not None)
    if norm_gate is not None and cfg["BD"] < dim_g:
        raise ValueError(f"the norm-gate epilogue needs whole groups per program: BD {cfg['BD']} < d {dim_g}")
    y = out if out is not None else torch.empty_like(u)
    if y.numel() == 0:
        return y
    A_, D_, bias_ = _params(A, D, delta_bias, 4 * dim_g)
    z, nw, nb, eps = norm_gate_operands(norm_gate, u, u, A_)
    nblk = triton.cdiv(dim_g, cfg["BD"])
    _group4_seq_kernel[(batch * 4 * nblk,)](
        u, *u.stride(), delta, *delta.stride(), B, B.stride(0), B.stride(1), B.stride(3), B.stride(4),
        C, C.stride(0), C.stride(1), C.stride(3), C.stride(4), y, *y.stride(), A_, D_, bias_,
        z, *z.stride(), nw, nb, float(eps), dim_g, nblk,
        H=H, W=W, BD=cfg["BD"], K=cfg["K"], HAS_D=D is not None, HAS_BIAS=delta_bias is not None,
        SOFTPLUS=bool(delta_softplus), NORM_GATE=norm_gate is not None, F32=int(u.dtype == torch.float32),
        num_warps=cfg["num_warps"])
    return y
