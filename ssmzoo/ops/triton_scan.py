"""Selective scan in Triton (forward / inference only), plus two fused vision-model variants.

Four entry points, all accumulating in float32:

``selective_scan_triton``  the plain scan, ``selective_scan_ref``'s signature; registered as the
    ``"triton"`` backend of ``ssmzoo.ops.selective_scan`` when this module is imported.
``group_scan_4dir_triton`` GroupMamba's four-direction grouped scan, the signature of
    ``ssmzoo.models.groupmamba.group_scan_4dir_torch``: group k of the channels is scanned along
    direction k of the H x W map (0 row-major, 1 column-major, 2 and 3 the same reversed), read
    straight from the (batch, 4, d, H, W) tensors whatever their strides (channel-first or
    channels-last) and written back in the spatial layout: no transposes, flips or copies.
``group_scan_4dir_norm_gate_triton`` the same scan with what follows it in GroupMamba's mixer (each
    group's LayerNorm and the SiLU(z) gate, optionally out_proj) and optionally what precedes it
    (x_proj) in the kernel (the look-back kernel of ``triton_lookback``); reference
    ``group_scan_4dir_norm_gate_ref``.
``bimamba_scan_triton``    VideoMamba's bidirectional ("bimamba v2") mixer scan: forward and
    backward directions, each with its own u/delta/A/B/C/D, in one launch; the backward direction
    is read by index, and gate and skip terms are fused into the epilogue.

How the kernels work: one program owns a block of channels of one (batch, group) and walks the
sequence in chunks; inside a chunk the linear recurrence h_t = a_t h_{t-1} + b_t is one
``tl.associative_scan`` over (a, b) pairs, and only the state (BD x N floats) crosses chunks. A
reversed direction walks the chunks from the end and scans each chunk backwards, so its loads stay
ascending (and vectorisable). The column-major directions load a tile of CB whole columns in memory
order (coalesced in either layout) and scan it as loaded, in two levels (along h inside each column,
then the column totals across the tile; ``_sweep_cols2``), so no data moves between threads except
inside the scans; channels-last maps run their rows the same way (whole-row tiles).

All index arithmetic is done in the kernel; inputs may be arbitrary strided views. On a machine
without CUDA the kernels run under ``TRITON_INTERPRET=1`` on CPU tensors (that is how CI tests them).
Floors, timings per version and what still limits speed: docs/scan_notes.md.
"""

from __future__ import annotations

import math
import re
from typing import Optional

import torch
from torch import Tensor

import triton
import triton.language as tl

from .directions import merge_order, scan_order
from .group_norm import group_norm_gate
from .selective_scan import (check_group_scan_args, check_scan_args, check_tensor_args, register_backend,
                             selective_scan_ref)
from .triton_math import softplus_poly

__all__ = [
    "selective_scan_triton",
    "group_scan_4dir_triton",
    "group_scan_4dir_norm_gate_triton",
    "bimamba_scan_triton",
    "check_bimamba_args",
    "group_scan_4dir_ref",
    "group_scan_4dir_norm_gate_ref",
    "bimamba_scan_ref",
]



# ---------------------------------------------------------------------------------------------
# Kernel building blocks
# ---------------------------------------------------------------------------------------------

@triton.jit
def _combine(a1, b1, a2, b2):
    # (a1, b1) is the earlier step: h -> a2 * (a1 * h + b1) + b2
    return a1 * a2, a2 * b1 + b2


# softplus as a polynomial log1p (``triton_math.softplus_poly``: ~12 instructions instead of ~30, more
# precise for negative inputs, GroupMamba's usual case) in the look-back, plane, lane-per-channel and
# strip kernels, where it timed faster or even on the H100 (docs/gpu_runs/s25_run7.txt: norm-gate
# scans up to 8% faster); the tile kernels (``_chunk``, ``_sweep_cols2``) keep libdevice's logf of
# 1 + e^x (LIBDEVICE), with which they timed faster (channel-first 56x56 4%, channels-last 14x14 14%).
# False: libdevice's logf everywhere, as before session 25 (benchmarks' AB_SOFTPLUS_LOG).
SOFTPLUS_POLY = tl.constexpr(True)


def _ties_reversed(version: str) -> bool:
    """Does this Triton's layout pass order tile axes of equal contiguity by descending index (3.7 and
    later; 3.6 and earlier: ascending)? The run tiles are laid out by that rule (``_load01``)."""
    major, minor = (int(x) for x in re.findall(r"\d+", version)[:2])
    return (major, minor) >= (3, 7)


TIES_REVERSED = tl.constexpr(_ties_reversed(triton.__version__))


@triton.jit
def _softplus(x, LIBDEVICE: tl.constexpr = False):
    if SOFTPLUS_POLY and not LIBDEVICE:
        sp = softplus_poly(x)
    else:
        sp = tl.where(x <= 20.0, tl.log(1.0 + tl.exp(x)), x)
    return sp


@triton.jit
def _step_delta(dt, bias, valid, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, LIBDEVICE: tl.constexpr = False):
    """softplus(delta + bias) as the scans use it, and 0 on padding steps (invalid): their decay is
    then 1 and their input 0, the identity step. LIBDEVICE: softplus through libdevice's logf."""
    if HAS_BIAS:
        dt = dt + bias
    if SOFTPLUS:
        dt = _softplus(dt, LIBDEVICE)
    return tl.where(valid, dt, 0.0)


@triton.jit
def _column(tile, n, nidx):
    """Column n of a small (BD, NP) register tile, as a (BD,) vector."""
    return tl.sum(tl.where(nidx[None, :] == n, tile, 0.0), axis=1)


@triton.jit
def _pos(p, W, sh, sw, FLAT: tl.constexpr):
    """Flat position p of an H x W map -> element offset (FLAT: the two dims merge into one stride)."""
    if FLAT:
        off = p * sw
    else:
        off = (p // W) * sh + (p % W) * sw
    return off


@triton.jit
def _load_params(A_ptr, D_ptr, bias_ptr, cl, cmask, NSTATE: tl.constexpr, NP: tl.constexpr,
                 HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr):
    """A (pre-scaled by log2 e for exp2), D and delta_bias of the program's channels (contiguous)."""
    nidx = tl.arange(0, NP)
    A2 = tl.load(A_ptr + cl[:, None] * NSTATE + nidx[None, :],
                 mask=cmask[:, None] & (nidx[None, :] < NSTATE), other=0.0).to(tl.float32) * 1.4426950408889634
    if HAS_D:
        Dv = tl.load(D_ptr + cl, mask=cmask, other=0.0).to(tl.float32)
    else:
        Dv = tl.zeros_like(cl).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + cl, mask=cmask, other=0.0).to(tl.float32)
    else:
        bias = tl.zeros_like(cl).to(tl.float32)
    return A2, Dv, bias


@triton.jit
def _load_tie2(ptrs, mask, CHANNELS_LAST: tl.constexpr):
    """Load of a 2-D tile with no contiguous axis (``_chunk``'s broadcast B/C), laid out like u. Where
    u's channels are contiguous (CHANNELS_LAST), Triton 3.6 lays B/C out with lanes on the channel axis,
    as it lays out u (ties between axes broken by ascending index). From 3.7 (``TIES_REVERSED``) the tie
    goes the other way and B/C land across the other axis: layout conversions through shared memory
    every chunk (sm_90, channels-last 14x14 C348: 40 barriers and 544 shuffles instead of 20 and 292).
    Presented transposed there, they are laid out as under 3.6 (24 and 292). Channel-first maps keep
    3.7+'s own tie, which already matches u there (transposing them made it worse: 80 barriers
    instead of 56)."""
    if TIES_REVERSED:
        if CHANNELS_LAST:
            return tl.trans(tl.load(tl.trans(ptrs), mask=tl.trans(mask), other=0.0))
    return tl.load(ptrs, mask=mask, other=0.0)


@triton.jit
def _chunk(u, dt, S, A2, Dv, bias, b_ptr, sb_n, c_ptr, sc_n, offb, offc, pmask,
           NSTATE: tl.constexpr, NP: tl.constexpr, REV: tl.constexpr,
           HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, valid, CHANNELS_LAST: tl.constexpr = False):
    """One chunk of the scan on (BD, T) tiles in sequence order; returns y (no gate) and new state.

    offb/offc: (T,) offsets of B/C for state 0; pmask (T,) valid steps; valid (BD, T) full mask.
    CHANNELS_LAST: u's channels are contiguous (how B/C are loaded: ``_load_tie2``).
    The carried state enters through the first step's input (b_0 += a_0 * S), so the scan result
    is the state itself; padding steps are the identity (a = 1, b = 0).
    """
    dt = _step_delta(dt, bias[:, None], valid, HAS_BIAS, SOFTPLUS, True)
    dtu = dt * u
    y = u * Dv[:, None]
    nidx = tl.arange(0, NP)
    T: tl.constexpr = u.shape[1]
    tidx = tl.arange(0, T)
    if REV:
        first = T - 1
        last = 0
    else:
        first = 0
        last = T - 1
    zero = tl.zeros_like(u).to(tl.int32)  # B/C are loaded as broadcast (BD, T) tiles, directly in
    bmask = pmask[None, :] & (zero == 0)  # the scan's layout (a (T,) vector would need a shuffle)
    for n in tl.static_range(NSTATE):
        bn = _load_tie2(b_ptr + n * sb_n + offb[None, :] + zero, bmask, CHANNELS_LAST).to(tl.float32)
        cn = _load_tie2(c_ptr + n * sc_n + offc[None, :] + zero, bmask, CHANNELS_LAST).to(tl.float32)
        a = tl.exp2(dt * _column(A2, n, nidx)[:, None])
        b = dtu * bn
        b += tl.where(tidx[None, :] == first, a * _column(S, n, nidx)[:, None], 0.0)
        _, h = tl.associative_scan((a, b), axis=1, combine_fn=_combine, reverse=REV)
        y += h * cn
        s_new = tl.sum(tl.where(tidx[None, :] == last, h, 0.0), axis=1)
        S = tl.where(nidx[None, :] == n, s_new[:, None], S)
    return y, S


@triton.jit
def _gate(y, z_ptr, offz, valid, HAS_Z: tl.constexpr):
    if HAS_Z:
        zz = tl.load(z_ptr + offz, mask=valid, other=0.0).to(tl.float32)
        y = y * (zz / (1.0 + tl.exp(-zz)))
    return y


@triton.jit
def _to_seq(x3):
    """(R, V, BD) tile in memory order -> (BD, R * V) in sequence order. The reshape makes Triton
    move the data (through shared memory) into its default layout for the new shape, whose lanes run
    along the sequence: many threads share one long scan instead of one thread owning it."""
    x = tl.permute(x3, (2, 0, 1))
    return tl.reshape(x, (x.shape[0], x.shape[1] * x.shape[2]))


@triton.jit
def _from_seq(x, R: tl.constexpr, V: tl.constexpr):
    """Inverse of ``_to_seq``."""
    return tl.permute(tl.reshape(x, (x.shape[0], R, V)), (1, 2, 0))


@triton.jit
def _sweep_flat(u_ptr, u_off, su_c, su_h, su_w, dt_ptr, dt_off, sdt_c, sdt_h, sdt_w,
                b_ptr, sb_n, sb_h, sb_w, c_ptr, sc_n, sc_h, sc_w,
                z_ptr, z_off, sz_c, sz_h, sz_w, y_ptr, acc_ptr, y_off, sy_c, sy_h, sy_w,
                A_ptr, D_ptr, bias_ptr, cl, cmask, L, W,
                NSTATE: tl.constexpr, NP: tl.constexpr, BL: tl.constexpr, V: tl.constexpr,
                TRANS: tl.constexpr, ALIGN: tl.constexpr, REV: tl.constexpr, IN_FLIP: tl.constexpr,
                FLAT: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
                HAS_Z: tl.constexpr, ACC_IN: tl.constexpr, ACC_OUT: tl.constexpr, CHANNELS_LAST: tl.constexpr = False):
    """Scan along the flat position p = h * W + w (1-D sequences: H = 1, W = L).

    REV walks p from L - 1 down to 0 (chunks from the end, each scanned backwards, so loads stay
    ascending). IN_FLIP: u/delta/B/C are stored flipped (step p at L-1-p); z and y stay in order.
    TRANS: tiles are loaded as (BL / V, V, BD) (for channels-last memory) and moved to (BD, BL).
    ACC_OUT stores the ungated float32 result to acc; ACC_IN adds acc before gating and storing.
    x_off is the (batch, group) element offset of tensor x; rows start at x_off + channel * sx_c.
    """
    ru = u_off + cl * su_c
    rdt = dt_off + cl * sdt_c
    rz = z_off + cl * sz_c
    ry = y_off + cl * sy_c
    if ALIGN > 1:  # host-checked: rows and L are multiples of ALIGN elements -> vector loads
        L = (L // ALIGN) * ALIGN  # (exact; tl.multiple_of on a scalar is dropped, arithmetic is not)
        ru = tl.multiple_of(ru, ALIGN)
        rdt = tl.multiple_of(rdt, ALIGN)
        rz = tl.multiple_of(rz, ALIGN)
        ry = tl.multiple_of(ry, ALIGN)
    A2, Dv, bias = _load_params(A_ptr, D_ptr, bias_ptr, cl, cmask, NSTATE, NP, HAS_D, HAS_BIAS)
    S = tl.zeros([cl.shape[0], NP], dtype=tl.float32)
    lidx = tl.arange(0, BL)
    R: tl.constexpr = BL // V
    rr = tl.arange(0, R)
    vv = tl.arange(0, V)
    nchunks = (L + BL - 1) // BL
    k = 0
    while k < nchunks:  # (a while loop: Triton 3.6's interpreter cannot range() over a runtime bound)
        if REV:
            p0 = (nchunks - 1 - k) * BL
        else:
            p0 = k * BL
        p = p0 + lidx
        pmask = p < L
        if IN_FLIP:
            s = L - 1 - p
        else:
            s = p
        valid = cmask[:, None] & pmask[None, :]
        if TRANS:
            p3 = p0 + rr[:, None] * V + vv[None, :]                      # (R, V)
            if IN_FLIP:
                s3 = L - 1 - p3
            else:
                s3 = p3
            valid3 = (p3 < L)[:, :, None] & cmask[None, None, :]
            u = _to_seq(tl.load(u_ptr + _pos(s3, W, su_h, su_w, FLAT)[:, :, None] + ru[None, None, :],
                                mask=valid3, other=0.0).to(tl.float32))
            dt = _to_seq(tl.load(dt_ptr + _pos(s3, W, sdt_h, sdt_w, FLAT)[:, :, None] + rdt[None, None, :],
                                 mask=valid3, other=0.0).to(tl.float32))
        else:
            u = tl.load(u_ptr + ru[:, None] + _pos(s, W, su_h, su_w, FLAT)[None, :],
                        mask=valid, other=0.0).to(tl.float32)
            dt = tl.load(dt_ptr + rdt[:, None] + _pos(s, W, sdt_h, sdt_w, FLAT)[None, :],
                         mask=valid, other=0.0).to(tl.float32)
        y, S = _chunk(u, dt, S, A2, Dv, bias, b_ptr, sb_n, c_ptr, sc_n,
                      _pos(s, W, sb_h, sb_w, FLAT), _pos(s, W, sc_h, sc_w, FLAT), pmask,
                      NSTATE, NP, REV, HAS_BIAS, SOFTPLUS, valid, CHANNELS_LAST)
        if TRANS:
            y = _from_seq(y, R, V)
            offy = _pos(p3, W, sy_h, sy_w, FLAT)[:, :, None] + ry[None, None, :]
            offz = _pos(p3, W, sz_h, sz_w, FLAT)[:, :, None] + rz[None, None, :]
            vmask = valid3
        else:
            offy = ry[:, None] + _pos(p, W, sy_h, sy_w, FLAT)[None, :]
            offz = rz[:, None] + _pos(p, W, sz_h, sz_w, FLAT)[None, :]
            vmask = valid
        if ACC_IN:  # partial result of the other direction (float32, y's layout)
            y += tl.load(acc_ptr + offy, mask=vmask, other=0.0)
        if ACC_OUT:
            tl.store(acc_ptr + offy, y, mask=vmask)
        else:
            y = _gate(y, z_ptr, offz, vmask, HAS_Z)
            tl.store(y_ptr + offy, y.to(y_ptr.dtype.element_ty), mask=vmask)
        k += 1


@triton.jit
def _sweep_cols(u_ptr, u_off, su_c, su_h, su_w, dt_ptr, dt_off, sdt_c, sdt_h, sdt_w,
                b_ptr, sb_n, sb_h, sb_w, c_ptr, sc_n, sc_h, sc_w,
                y_ptr, y_off, sy_c, sy_h, sy_w,
                A_ptr, D_ptr, bias_ptr, cl, cmask, H, W,
                NSTATE: tl.constexpr, NP: tl.constexpr, HP: tl.constexpr, CB: tl.constexpr,
                REV: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
                SOFTPLUS: tl.constexpr, CHANNELS_LAST: tl.constexpr = False):
    """Column-major scan of an H x W map: tiles of CB whole columns, loaded in memory order as
    (CB, HP, BD) and moved in registers to (BD, CB * HP), which is column-major sequence order
    (rows h >= H are padding steps that leave the state unchanged). CHANNELS_LAST: see ``_load_tie2``."""
    T: tl.constexpr = CB * HP
    A2, Dv, bias = _load_params(A_ptr, D_ptr, bias_ptr, cl, cmask, NSTATE, NP, HAS_D, HAS_BIAS)
    S = tl.zeros([cl.shape[0], NP], dtype=tl.float32)
    hidx = tl.arange(0, HP)
    widx = tl.arange(0, CB)
    nblocks = (W + CB - 1) // CB
    k = 0
    while k < nblocks:
        if REV:
            w = (nblocks - 1 - k) * CB + widx
        else:
            w = k * CB + widx
        pm2 = (w[:, None] < W) & (hidx[None, :] < H)                       # (CB, HP)
        valid3 = pm2[:, :, None] & cmask[None, None, :]
        u = _to_seq(tl.load(u_ptr + (w[:, None] * su_w + hidx[None, :] * su_h)[:, :, None] + (u_off + cl * su_c)[None, None, :],
                            mask=valid3, other=0.0).to(tl.float32))
        dt = _to_seq(tl.load(dt_ptr + (w[:, None] * sdt_w + hidx[None, :] * sdt_h)[:, :, None] + (dt_off + cl * sdt_c)[None, None, :],
                             mask=valid3, other=0.0).to(tl.float32))
        pmask = tl.reshape(pm2, (T,))
        valid = cmask[:, None] & pmask[None, :]
        offb = tl.reshape(w[:, None] * sb_w + hidx[None, :] * sb_h, (T,))
        offc = tl.reshape(w[:, None] * sc_w + hidx[None, :] * sc_h, (T,))
        y, S = _chunk(u, dt, S, A2, Dv, bias, b_ptr, sb_n, c_ptr, sc_n, offb, offc, pmask,
                      NSTATE, NP, REV, HAS_BIAS, SOFTPLUS, valid, CHANNELS_LAST)
        y = _from_seq(y, CB, HP)
        tl.store(y_ptr + (w[:, None] * sy_w + hidx[None, :] * sy_h)[:, :, None] + (y_off + cl * sy_c)[None, None, :],
                 y.to(y_ptr.dtype.element_ty), mask=valid3)
        k += 1


@triton.jit
def _combine_x(a1, b1, ea1, eb1, a2, b2, ea2, eb2):
    """``_combine`` plus the exclusive part: (ea, eb) of a segment is the composition of all its
    steps but the last (identity for one step), so an inclusive scan yields the exclusive prefix
    (the state *entering* each element) without a shift or a division."""
    return a1 * a2, a2 * b1 + b2, a1 * ea2, ea2 * b1 + eb2


@triton.jit
def _sweep_cols2(u_ptr, u_off, su_c, su_h, su_w, dt_ptr, dt_off, sdt_c, sdt_h, sdt_w,
                 b_ptr, sb_n, sb_h, sb_w, c_ptr, sc_n, sc_h, sc_w,
                 y_ptr, y_off, sy_c, sy_h, sy_w,
                 A_ptr, D_ptr, bias_ptr, cl, cmask, H, W,
                 NSTATE: tl.constexpr, NP: tl.constexpr, HP: tl.constexpr, CB: tl.constexpr,
                 REV: tl.constexpr, CALIGN: tl.constexpr, PREF: tl.constexpr, HAS_D: tl.constexpr,
                 HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """Column-major scan on the natural (CB, HP, BD) tile of CB whole columns, with no reshape:
    a two-level scan. (1) ``associative_scan`` along h inside each column from a zero state gives
    the local state hl and the cumulative product Ap of the a's; (2) the column totals (last row:
    padding rows h >= H are identity steps) are scanned across the CB columns with ``_combine_x``,
    which gives each column's entering state cin from the carried state S; (3) h = hl + Ap * cin.
    Nothing is divided by a product of a's (those underflow). CALIGN > 1 (host-checked: W and the
    h strides are multiples of it) lets channel-first columns load as vectors along w.
    PREF loads the next block's u/delta before scanning the current one (software prefetch)."""
    if CALIGN > 1:
        W = (W // CALIGN) * CALIGN
        su_h = (su_h // CALIGN) * CALIGN
        sdt_h = (sdt_h // CALIGN) * CALIGN
        sb_h = (sb_h // CALIGN) * CALIGN
        sc_h = (sc_h // CALIGN) * CALIGN
        sy_h = (sy_h // CALIGN) * CALIGN
    BD: tl.constexpr = cl.shape[0]
    nidx = tl.arange(0, NP)[None, :, None]                                 # (1, NP, 1)
    c3 = cl[None, None, :]
    cm3 = cmask[None, None, :]
    A3 = tl.load(A_ptr + c3 * NSTATE + nidx, mask=cm3 & (nidx < NSTATE), other=0.0).to(tl.float32) * 1.4426950408889634
    if HAS_D:
        D3 = tl.load(D_ptr + c3, mask=cm3, other=0.0).to(tl.float32)
    if HAS_BIAS:
        bias3 = tl.load(bias_ptr + c3, mask=cm3, other=0.0).to(tl.float32)
    S = tl.zeros([1, NP, BD], dtype=tl.float32)
    hidx = tl.arange(0, HP)
    widx = tl.arange(0, CB)
    h3 = hidx[None, :, None]
    w3 = widx[:, None, None]
    if REV:
        last_h = 0
        last_w = 0
    else:
        last_h = HP - 1
        last_w = CB - 1
    ru = (u_off + cl * su_c)[None, None, :]
    rdt = (dt_off + cl * sdt_c)[None, None, :]
    ry = (y_off + cl * sy_c)[None, None, :]
    nblocks = (W + CB - 1) // CB
    zero = tl.zeros([CB, HP, BD], dtype=tl.int32)   # B/C: broadcast tiles loaded in the tile's layout
    if PREF:  # first block's tiles before the loop; each iteration then loads the next one's
        if REV:
            w = (nblocks - 1) * CB + widx
        else:
            w = widx
        pm2 = (w[:, None] < W) & (hidx[None, :] < H)                           # (CB, HP)
        valid3 = pm2[:, :, None] & cm3
        u = tl.load(u_ptr + (w[:, None] * su_w + hidx[None, :] * su_h)[:, :, None] + ru, mask=valid3, other=0.0)
        dt = tl.load(dt_ptr + (w[:, None] * sdt_w + hidx[None, :] * sdt_h)[:, :, None] + rdt, mask=valid3, other=0.0)
    k = 0
    while k < nblocks:
        if not PREF:
            if REV:
                w = (nblocks - 1 - k) * CB + widx
            else:
                w = k * CB + widx
            pm2 = (w[:, None] < W) & (hidx[None, :] < H)                       # (CB, HP)
            valid3 = pm2[:, :, None] & cm3
            u = tl.load(u_ptr + (w[:, None] * su_w + hidx[None, :] * su_h)[:, :, None] + ru, mask=valid3, other=0.0)
            dt = tl.load(dt_ptr + (w[:, None] * sdt_w + hidx[None, :] * sdt_h)[:, :, None] + rdt, mask=valid3, other=0.0)
        else:  # next block's u/delta in flight while this one is scanned (masked off past the end)
            if REV:
                wn = (nblocks - 2 - k) * CB + widx
            else:
                wn = (k + 1) * CB + widx
            pmn = ((wn[:, None] < W) & (wn[:, None] >= 0) & (hidx[None, :] < H))
            vn = pmn[:, :, None] & cm3
            u_n = tl.load(u_ptr + (wn[:, None] * su_w + hidx[None, :] * su_h)[:, :, None] + ru, mask=vn, other=0.0)
            dt_n = tl.load(dt_ptr + (wn[:, None] * sdt_w + hidx[None, :] * sdt_h)[:, :, None] + rdt, mask=vn, other=0.0)
        uf = u.to(tl.float32)
        dtf = dt.to(tl.float32)
        if HAS_BIAS:
            dtf = dtf + bias3
        if SOFTPLUS:
            dtf = _softplus(dtf, True)
        dtf = tl.where(valid3, dtf, 0.0)
        dtu = dtf * uf
        if HAS_D:
            y = uf * D3
        else:
            y = tl.zeros_like(uf)
        bmask = pm2[:, :, None] & (zero == 0)
        offb = (w[:, None] * sb_w + hidx[None, :] * sb_h)[:, :, None] + zero
        offc = (w[:, None] * sc_w + hidx[None, :] * sc_h)[:, :, None] + zero
        for n in tl.static_range(NSTATE):
            bn = tl.load(b_ptr + n * sb_n + offb, mask=bmask, other=0.0).to(tl.float32)
            cn = tl.load(c_ptr + n * sc_n + offc, mask=bmask, other=0.0).to(tl.float32)
            a = tl.exp2(dtf * tl.sum(tl.where(nidx == n, A3, 0.0), axis=1, keep_dims=True))
            Ap, hl = tl.associative_scan((a, dtu * bn), axis=1, combine_fn=_combine, reverse=REV)
            s_n = tl.sum(tl.where(nidx == n, S, 0.0), axis=1, keep_dims=True)          # (1, 1, BD)
            if CB == 1:
                cin = s_n
                h = hl + Ap * cin
                s_new = tl.sum(tl.where(h3 == last_h, h, 0.0), axis=1, keep_dims=True)
            else:
                ae = tl.sum(tl.where(h3 == last_h, Ap, 0.0), axis=1, keep_dims=True)   # (CB, 1, BD)
                be = tl.sum(tl.where(h3 == last_h, hl, 0.0), axis=1, keep_dims=True)
                _, _, ea, eb = tl.associative_scan((ae, be, tl.full(ae.shape, 1.0, tl.float32), tl.zeros_like(be)),
                                                   axis=0, combine_fn=_combine_x, reverse=REV)
                cin = ea * s_n + eb                                                     # entering state
                h = hl + Ap * cin
                s_new = tl.sum(tl.where(w3 == last_w, ae * cin + be, 0.0), axis=0, keep_dims=True)
            y += h * cn
            S = tl.where(nidx == n, s_new, S)
        tl.store(y_ptr + (w[:, None] * sy_w + hidx[None, :] * sy_h)[:, :, None] + ry,
                 y.to(y_ptr.dtype.element_ty), mask=valid3)
        k += 1
        if PREF:
            w = wn
            pm2 = pmn
            valid3 = vn
            u = u_n
            dt = dt_n


@triton.jit
def _swap(x, AXIS: tl.constexpr):
    """x's axis 0 and axis AXIS (1 or 2) of a 3-D tile swapped (a permute: no data movement)."""
    if AXIS == 1:
        return tl.permute(x, (1, 0, 2))
    else:
        return tl.permute(x, (2, 1, 0))


@triton.jit
def _load01(ptrs, mask, AXIS: tl.constexpr = 1):
    """Load of a 3-D run tile whose strided axes should be laid out as Triton 3.6 does it (lanes on
    the stride-1 axis, then on axis 0; with AXIS 2, no axis contiguous: lanes on axis 0, then 1, then
    2). Triton orders a tile's axes of equal contiguity by ascending index up to 3.6 and by
    descending index from 3.7 (``TIES_REVERSED``): there the pointers are presented with axes 0 and
    AXIS swapped, so that every version lays the tile out the same way."""
    if TIES_REVERSED:
        return _swap(tl.load(_swap(ptrs, AXIS), mask=_swap(mask, AXIS), other=0.0), AXIS)
    return tl.load(ptrs, mask=mask, other=0.0)


@triton.jit
def _store01(ptrs, value, mask, AXIS: tl.constexpr = 1):
    """``_load01``'s store."""
    if TIES_REVERSED:
        tl.store(_swap(ptrs, AXIS), _swap(value, AXIS), mask=_swap(mask, AXIS))
    else:
        tl.store(ptrs, value, mask=mask)


@triton.jit
def _load_block(u_ptr, dt_ptr, b_ptr, c_ptr, base, off, mask, WITH_C: tl.constexpr):
    """One block of a run sweep: its u, delta, B and (WITH_C) C tiles as stored (u again in C's place
    otherwise, unused)."""
    u = _load01(u_ptr + base + off, mask)
    dt = _load01(dt_ptr + base + off, mask)
    bv = _load01(b_ptr + base + off, mask)
    if WITH_C:
        cv = _load01(c_ptr + base + off, mask)
    else:
        cv = u
    return u, dt, bv, cv


@triton.jit
def _channel_params(A_ptr, D_ptr, bias_ptr, c, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr):
    """One channel's A (pre-scaled by log2 e for exp2), D and delta_bias (0 where absent)."""
    A2 = tl.load(A_ptr + c).to(tl.float32) * 1.4426950408889634
    Dv = 0.0
    bias = 0.0
    if HAS_D:
        Dv = tl.load(D_ptr + c).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + c).to(tl.float32)
    return A2, Dv, bias


@triton.jit
def _runs_from_zero(u, dt, bv, A2, Dv, bias, step_mask, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
                    SOFTPLUS: tl.constexpr, LIBDEVICE: tl.constexpr):
    """The run sweeps' first step on a loaded float32 block: along axis 1 (a thread's registers, or
    a row), each run's decay products Ap and states hl from a zero state, and the D skip term.
    Steps outside ``step_mask`` are the identity (padding)."""
    dt = _step_delta(dt, bias, step_mask, HAS_BIAS, SOFTPLUS, LIBDEVICE)
    Ap, hl = tl.associative_scan((tl.exp2(dt * A2), dt * u * bv), axis=1, combine_fn=_combine)
    if HAS_D:
        y = u * Dv
    else:
        y = tl.zeros_like(u)
    return Ap, hl, y


@triton.jit
def _col_block(i, nblocks, H, W: tl.constexpr, CB: tl.constexpr, REV: tl.constexpr, hmask, k3):
    """Offset of column block i (of the column runs' walk) and its mask (none valid past the last)."""
    if REV:
        w0 = (nblocks - 1 - i) * CB
        base = (H - 1) * W + w0
    else:
        w0 = i * CB
        base = w0
    return base, hmask & (k3 < W - w0) & (i < nblocks)


@triton.jit
def _col_part(H, W: tl.constexpr, Q: tl.constexpr, P: tl.constexpr, CB: tl.constexpr, RL: tl.constexpr,
              OFF: tl.constexpr, EVEN: tl.constexpr, REV: tl.constexpr):
    """Offsets (from a block's base) and row mask of one part of the column runs: rows OFF .. OFF + P - 1
    of each run of RL rows (row h = q * RL + OFF + p; REV counts rows from the bottom)."""
    q3 = tl.arange(0, Q)[:, None, None]
    p3 = tl.arange(0, P)[None, :, None]
    k3 = tl.arange(0, CB)[None, None, :]
    h = q3 * RL + OFF + p3
    hw = h * W + k3
    if EVEN:
        hmask = q3 < H // RL
    else:
        hmask = h < H
    if REV:
        hw = k3 - h * W
    return hw, hmask


@triton.jit
def _f32(u, dt, bv, cv, WITH_C: tl.constexpr):
    """A loaded block's tiles in float32 (C as it is unless WITH_C: a placeholder, or loaded later)."""
    u = u.to(tl.float32)
    dt = dt.to(tl.float32)
    bv = bv.to(tl.float32)
    if WITH_C:
        cv = cv.to(tl.float32)
    return u, dt, bv, cv


@triton.jit
def _col_part_scan(u, dt, bv, A2, Dv, bias, step_mask, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
                   SOFTPLUS: tl.constexpr, LIBDEVICE: tl.constexpr):
    """``_runs_from_zero`` on a (Q, P, CB) part (float32), plus the part's totals (its last row's Ap and
    hl, (Q, CB)): the runs' registers, no shuffles."""
    Ap, hl, y = _runs_from_zero(u, dt, bv, A2, Dv, bias, step_mask, HAS_D, HAS_BIAS, SOFTPLUS, LIBDEVICE)
    P: tl.constexpr = u.shape[1]
    last = tl.arange(0, P)[None, :, None] == P - 1
    return Ap, hl, y, tl.sum(tl.where(last, Ap, 0.0), axis=1), tl.sum(tl.where(last, hl, 0.0), axis=1)


@triton.jit
def _col_part_store(y_ptr, base, hw, valid, y, hl, Ap, cin, cv):
    """A part's output: the skip term y plus C times the state, h = hl + Ap * (state entering the part,
    (Q, CB))."""
    y += (hl + Ap * cin[:, None, :]) * cv
    _store01(y_ptr + base + hw, y.to(y_ptr.dtype.element_ty), valid)


@triton.jit
def _col_part_store_folded(y_ptr, base, hw, valid, P, Q, cin):
    """``_col_part_store`` with C folded in at scan time (P = y + hl C, Q = Ap C): two values per
    element wait for the entering states, instead of y, hl, Ap and a C loaded late."""
    _store01(y_ptr + base + hw, (P + Q * cin[:, None, :]).to(y_ptr.dtype.element_ty), valid)


@triton.jit
def _sweep_col_runs(u_ptr, dt_ptr, b_ptr, c_ptr, y_ptr, A_ptr, D_ptr, bias_ptr, c, H, W: tl.constexpr,
                    R: tl.constexpr, Q: tl.constexpr, CB: tl.constexpr, EVEN: tl.constexpr, REV: tl.constexpr,
                    PREF: tl.constexpr,
                    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
                    LIBDEVICE: tl.constexpr, R2: tl.constexpr = 0, R3: tl.constexpr = 0,
                    CFOLD: tl.constexpr = False):
    """Column-major scan of one channel's contiguous H x W plane (one state; the pointers are the
    planes' starts) on (Q, R, CB) tiles: row h = q * R + r of column w0 + k. Loaded along the
    columns (k, the stride-1 axis, gets the lanes, then q), the R rows of a run sit in one thread,
    so the scan down a column is sequential in registers: (1) runs from a zero state give the local
    state hl and the product Ap of their a's; (2) the run totals are scanned along q (the column's
    runs) and the column totals across k (``_combine_x``: exclusive prefixes), from the carried
    state S; (3) h = hl + Ap * (state entering the run). Shuffles only on the totals.
    Runs of a length RL that is not a power of 2 (56 = 8 runs of 7 rows: no padding rows) are up to
    three power-of-2 parts of R, R2 and R3 rows (7 = 4 + 2 + 1), each its own (Q, part, CB) tile; a
    part's state entering is its run's entering state through the parts before it, a (Q, CB) step.
    EVEN (RL divides H): whole runs are valid or padding, so a thread's masks are one per run.
    REV walks the rows from the bottom (h = H - 1 - (q * RL + r)) so that the scans along r and q
    run forwards (a reversed ``associative_scan`` costs butterfly shuffles even along a thread's own
    registers); only the scan across the k columns, ascending in memory, is reversed. W is a
    constexpr so that the rows of a run are immediate offsets from one address; the caller keeps
    the pointers' alignment unknown
    to the compiler, which would otherwise put vector loads along k and the runs across lanes; or it
    shows 2 elements of it (CVEC 2) where 2-element vectors along k leave the (Q, CB / 2) tile enough
    lanes (56x56: 8 x 4) to keep the runs in threads.
    PREF 1 loads the next block's u, delta and B while this one is scanned, PREF 2 its C too (C's
    load otherwise waits until the scan is done: the compiler sinks it to its use). CFOLD (with
    PREF 2) multiplies C in as soon as a part is scanned, y + (hl + Ap cin) C = (y + hl C) + (Ap C) cin:
    fewer live registers, so C's prefetch fits in the registers PREF 1 needs (56x56 fp32: 168)."""
    RL: tl.constexpr = R + R2 + R3
    A2, Dv, bias = _channel_params(A_ptr, D_ptr, bias_ptr, c, HAS_D, HAS_BIAS)
    k3 = tl.arange(0, CB)[None, None, :]
    hw, hmask = _col_part(H, W, Q, R, CB, RL, 0, EVEN, REV)
    if R2 > 0:
        hw2, hmask2 = _col_part(H, W, Q, R2, CB, RL, R, EVEN, REV)
    if R3 > 0:
        hw3, hmask3 = _col_part(H, W, Q, R3, CB, RL, R + R2, EVEN, REV)
    if REV:
        last_k = 0
    else:
        last_k = CB - 1
    last_q = Q - 1
    q2 = tl.arange(0, Q)[:, None]
    k1 = tl.arange(0, CB)
    S = 0.0
    nblocks = (W + CB - 1) // CB
    if PREF:
        base, valid = _col_block(0, nblocks, H, W, CB, REV, hmask, k3)
        u_in, dt_in, bv_in, cv_in = _load_block(u_ptr, dt_ptr, b_ptr, c_ptr, base, hw, valid, PREF == 2)
        if R2 > 0:
            base_p, valid2 = _col_block(0, nblocks, H, W, CB, REV, hmask2, k3)
            u2_in, dt2_in, bv2_in, cv2_in = _load_block(u_ptr, dt_ptr, b_ptr, c_ptr, base, hw2, valid2, PREF == 2)
        if R3 > 0:
            base_p, valid3 = _col_block(0, nblocks, H, W, CB, REV, hmask3, k3)
            u3_in, dt3_in, bv3_in, cv3_in = _load_block(u_ptr, dt_ptr, b_ptr, c_ptr, base, hw3, valid3, PREF == 2)
    i = 0
    while i < nblocks:
        base, valid = _col_block(i, nblocks, H, W, CB, REV, hmask, k3)
        if R2 > 0:
            base_p, valid2 = _col_block(i, nblocks, H, W, CB, REV, hmask2, k3)
        if R3 > 0:
            base_p, valid3 = _col_block(i, nblocks, H, W, CB, REV, hmask3, k3)
        if PREF:
            u, dt, bv, cv = _f32(u_in, dt_in, bv_in, cv_in, PREF == 2)
            if R2 > 0:
                u2, dt2, bv2, cv2 = _f32(u2_in, dt2_in, bv2_in, cv2_in, PREF == 2)
            if R3 > 0:
                u3, dt3, bv3, cv3 = _f32(u3_in, dt3_in, bv3_in, cv3_in, PREF == 2)
            base_n, valid_n = _col_block(i + 1, nblocks, H, W, CB, REV, hmask, k3)
            u_in, dt_in, bv_in, cv_in = _load_block(u_ptr, dt_ptr, b_ptr, c_ptr, base_n, hw, valid_n, PREF == 2)
            if R2 > 0:
                base_p, valid_n = _col_block(i + 1, nblocks, H, W, CB, REV, hmask2, k3)
                u2_in, dt2_in, bv2_in, cv2_in = _load_block(u_ptr, dt_ptr, b_ptr, c_ptr, base_n, hw2, valid_n,
                                                            PREF == 2)
            if R3 > 0:
                base_p, valid_n = _col_block(i + 1, nblocks, H, W, CB, REV, hmask3, k3)
                u3_in, dt3_in, bv3_in, cv3_in = _load_block(u_ptr, dt_ptr, b_ptr, c_ptr, base_n, hw3, valid_n,
                                                            PREF == 2)
        else:
            u, dt, bv, cv = _f32(*_load_block(u_ptr, dt_ptr, b_ptr, c_ptr, base, hw, valid, False), False)
            if R2 > 0:
                u2, dt2, bv2, cv2 = _f32(*_load_block(u_ptr, dt_ptr, b_ptr, c_ptr, base, hw2, valid2, False), False)
            if R3 > 0:
                u3, dt3, bv3, cv3 = _f32(*_load_block(u_ptr, dt_ptr, b_ptr, c_ptr, base, hw3, valid3, False), False)
        Ap, hl, y, at, bt = _col_part_scan(u, dt, bv, A2, Dv, bias, valid, HAS_D, HAS_BIAS, SOFTPLUS, LIBDEVICE)
        if CFOLD:
            y, Ap = y + hl * cv, Ap * cv
        if R2 > 0:  # the runs' totals through each part: (at, bt) composed with the next part's
            Ap2, hl2, y2, at2, bt2 = _col_part_scan(u2, dt2, bv2, A2, Dv, bias, valid2, HAS_D, HAS_BIAS,
                                                    SOFTPLUS, LIBDEVICE)
            if CFOLD:
                y2, Ap2 = y2 + hl2 * cv2, Ap2 * cv2
            a_in2, b_in2 = at, bt                                            # entering part 2, from the run's
            at, bt = at * at2, at2 * bt + bt2
        if R3 > 0:
            Ap3, hl3, y3, at3, bt3 = _col_part_scan(u3, dt3, bv3, A2, Dv, bias, valid3, HAS_D, HAS_BIAS,
                                                    SOFTPLUS, LIBDEVICE)
            if CFOLD:
                y3, Ap3 = y3 + hl3 * cv3, Ap3 * cv3
            a_in3, b_in3 = at, bt
            at, bt = at * at3, at3 * bt + bt3
        ai, bi, ea, eb = tl.associative_scan((at, bt, tl.full(at.shape, 1.0, tl.float32), tl.zeros_like(bt)),
                                             axis=0, combine_fn=_combine_x)
        ac = tl.sum(tl.where(q2 == last_q, ai, 0.0), axis=0)                 # (CB,) column totals
        bc = tl.sum(tl.where(q2 == last_q, bi, 0.0), axis=0)
        _, _, eac, ebc = tl.associative_scan((ac, bc, tl.full(ac.shape, 1.0, tl.float32), tl.zeros_like(bc)),
                                             axis=0, combine_fn=_combine_x, reverse=REV)
        cin_col = eac * S + ebc                                              # state entering column k
        S = tl.sum(tl.where(k1 == last_k, ac * cin_col + bc, 0.0), axis=0)
        cin = ea * cin_col[None, :] + eb                                     # state entering run (q, k)
        if CFOLD:  # C is in y and Ap already
            _col_part_store_folded(y_ptr, base, hw, valid, y, Ap, cin)
            if R2 > 0:
                _col_part_store_folded(y_ptr, base, hw2, valid2, y2, Ap2, a_in2 * cin + b_in2)
            if R3 > 0:
                _col_part_store_folded(y_ptr, base, hw3, valid3, y3, Ap3, a_in3 * cin + b_in3)
        else:
            if PREF < 2:  # every part's C before any store, which the compiler may not move loads across
                cv = _load01(c_ptr + base + hw, valid).to(tl.float32)
                if R2 > 0:
                    cv2 = _load01(c_ptr + base + hw2, valid2).to(tl.float32)
                if R3 > 0:
                    cv3 = _load01(c_ptr + base + hw3, valid3).to(tl.float32)
            _col_part_store(y_ptr, base, hw, valid, y, hl, Ap, cin, cv)
            if R2 > 0:
                _col_part_store(y_ptr, base, hw2, valid2, y2, hl2, Ap2, a_in2 * cin + b_in2, cv2)
            if R3 > 0:
                _col_part_store(y_ptr, base, hw3, valid3, y3, hl3, Ap3, a_in3 * cin + b_in3, cv3)
        i += 1


@triton.jit
def _reverse4(x):
    """(K, Q, 4) -> (K, Q, 4) with each group of 4 along the last axis in reverse order: register
    moves only where the 4 sit in one thread (a vector load's)."""
    a, b = tl.split(tl.reshape(x, (x.shape[0], x.shape[1], 2, 2)))   # (v0, v2), (v1, v3)
    v0, v2 = tl.split(a)
    v1, v3 = tl.split(b)
    return tl.reshape(tl.join(tl.join(v3, v1), tl.join(v2, v0)), x.shape)


@triton.jit
def _row_tile(x, WP: tl.constexpr, REV: tl.constexpr):
    """A loaded (Q, K, 4) tile of a row block (axes in this order so that the lanes go along the row,
    q, before k), as (K, WP) in scan order (float32)."""
    x = tl.permute(x.to(tl.float32), (1, 0, 2))
    if REV:
        x = _reverse4(x)
    return tl.reshape(x, (x.shape[0], WP))


@triton.jit
def _row_block(i, nblocks, H, W: tl.constexpr, K: tl.constexpr, EVEN: tl.constexpr, REV: tl.constexpr,
               wmask, k3, T: tl.constexpr = 0):
    """Offset of row block i (of the row runs' walk, after its T tail rows) and its mask (none valid
    past the last)."""
    h0 = T + i * K
    if REV:
        base = (H - 1 - h0) * W
    else:
        base = h0 * W
    if EVEN:
        valid = wmask & (k3 < K * (nblocks - i))
    else:
        valid = wmask & (k3 < H - h0)
    return base, valid


@triton.jit
def _row_geometry(W: tl.constexpr, K: tl.constexpr, WP: tl.constexpr, REV: tl.constexpr):
    """Offsets (from a block's first row) of a block of K rows as (WP / 4, K, 4) tiles, the mask of the
    row's valid columns, and the tile's row index."""
    V: tl.constexpr = 4
    Q: tl.constexpr = WP // V
    q3 = tl.arange(0, Q)[:, None, None]
    k3 = tl.arange(0, K)[None, :, None]
    v3 = tl.arange(0, V)[None, None, :]
    if REV:
        w3 = (Q - 1 - q3) * V + v3
        off = w3 - k3 * W                                                    # rows from the bottom
    else:
        w3 = q3 * V + v3
        off = k3 * W + w3
    return off, w3 < W, k3


@triton.jit
def _row_scan(u, dt, bv, S, A2, Dv, bias, step_mask, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
              SOFTPLUS: tl.constexpr, LIBDEVICE: tl.constexpr, FIRST: tl.constexpr):
    """One block of K rows in scan order ((K, WP) float32 tiles) from the carried state S: returns
    the D skip term, the states h and the state after the block. Steps outside ``step_mask`` are
    the identity. FIRST: S is 0 (the walk's first block), so the rows' decay products are not needed."""
    K: tl.constexpr = u.shape[0]
    WP: tl.constexpr = u.shape[1]
    Ap, hl, y = _runs_from_zero(u, dt, bv, A2, Dv, bias, step_mask, HAS_D, HAS_BIAS, SOFTPLUS, LIBDEVICE)
    j2 = tl.arange(0, WP)[None, :]
    k1 = tl.arange(0, K)
    ar = tl.sum(tl.where(j2 == WP - 1, Ap, 0.0), axis=1)                      # (K,) row totals
    br = tl.sum(tl.where(j2 == WP - 1, hl, 0.0), axis=1)
    ai, bi, ea, eb = tl.associative_scan((ar, br, tl.full(ar.shape, 1.0, tl.float32), tl.zeros_like(br)),
                                         axis=0, combine_fn=_combine_x)
    if FIRST:
        cin = eb                                                             # state entering row k
        S = tl.sum(tl.where(k1 == K - 1, bi, 0.0), axis=0)
    else:
        cin = ea * S + eb
        S = tl.sum(tl.where(k1 == K - 1, ai * S + bi, 0.0), axis=0)
    return y, hl + Ap * cin[:, None], S


@triton.jit
def _row_store(y_ptr, base, off, y, valid, REV: tl.constexpr):
    """Store of a (K, WP) block in scan order as the (WP / 4, K, 4) tile it was loaded as."""
    K: tl.constexpr = y.shape[0]
    WP: tl.constexpr = y.shape[1]
    y3 = tl.reshape(y, (K, WP // 4, 4))
    if REV:
        y3 = _reverse4(y3)
    _store01(y_ptr + base + off, tl.permute(y3, (1, 0, 2)).to(y_ptr.dtype.element_ty), valid)


@triton.jit
def _sweep_row_runs(u_ptr, dt_ptr, b_ptr, c_ptr, y_ptr, A_ptr, D_ptr, bias_ptr, c, H, W: tl.constexpr,
                    K: tl.constexpr, WP: tl.constexpr, EVEN: tl.constexpr, REV: tl.constexpr, PREF: tl.constexpr,
                    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
                    LIBDEVICE: tl.constexpr, T: tl.constexpr = 0, KT: tl.constexpr = 1):
    """Row-major scan of one channel's contiguous H x W plane (one state; the pointers are the
    planes' starts) in blocks of K whole rows: (WP / 4, K, 4) tiles loaded as 4-element vectors,
    seen as (K, WP) in scan order, scanned along the rows with ``associative_scan`` (each thread's 4
    in registers, then the lanes), the rows' totals scanned down the block (``_combine_x``) from the
    carried state. REV walks the rows from the bottom, the groups of 4 from the right and each
    thread's 4 in reverse register order, so every scan runs forwards (reversed scans cost
    butterfly shuffles) while the loads stay ascending vectors. EVEN: K divides H - T (no row masks).
    T > 0: the walk's first T rows (T <= KT, a power of 2) are one block of KT rows of their own,
    scanned before the loop (its loads in flight with the first whole block's), so that the
    whole blocks carry no padding rows.
    PREF 1 loads the next block's u, delta and B while this one is scanned, PREF 2 its C too."""
    A2, Dv, bias = _channel_params(A_ptr, D_ptr, bias_ptr, c, HAS_D, HAS_BIAS)
    off, wmask, k3 = _row_geometry(W, K, WP, REV)
    j2 = tl.arange(0, WP)[None, :]
    k2 = tl.arange(0, K)[:, None]
    if REV:
        scan_mask = j2 >= WP - W                                             # position j holds w = WP - 1 - j
    else:
        scan_mask = j2 < W
    S = 0.0
    nblocks = (H - T + K - 1) // K
    i = 0
    if PREF:
        base, valid = _row_block(0, nblocks, H, W, K, EVEN, REV, wmask, k3, T)
        u_in, dt_in, bv_in, cv_in = _load_block(u_ptr, dt_ptr, b_ptr, c_ptr, base, off, valid, PREF == 2)
    if T > 0:
        off_t, wmask_t, k3_t = _row_geometry(W, KT, WP, REV)
        if REV:
            base_t = (H - 1) * W
        else:
            base_t = 0
        valid_t = wmask_t & (k3_t < T)
        ut, dtt, bvt, cvt = _load_block(u_ptr, dt_ptr, b_ptr, c_ptr, base_t, off_t, valid_t, True)
        mask_t = scan_mask
        if T < KT:
            mask_t = scan_mask & (tl.arange(0, KT)[:, None] < T)
        yt, ht, S = _row_scan(_row_tile(ut, WP, REV), _row_tile(dtt, WP, REV), _row_tile(bvt, WP, REV), S,
                              A2, Dv, bias, mask_t, HAS_D, HAS_BIAS, SOFTPLUS, LIBDEVICE, True)
        _row_store(y_ptr, base_t, off_t, yt + ht * _row_tile(cvt, WP, REV), valid_t, REV)
    while i < nblocks:
        h0 = T + i * K
        base, valid = _row_block(i, nblocks, H, W, K, EVEN, REV, wmask, k3, T)
        if PREF:
            u = _row_tile(u_in, WP, REV)
            dt = _row_tile(dt_in, WP, REV)
            bv = _row_tile(bv_in, WP, REV)
            if PREF == 2:
                cv = _row_tile(cv_in, WP, REV)
            base_n, valid_n = _row_block(i + 1, nblocks, H, W, K, EVEN, REV, wmask, k3, T)
            u_in, dt_in, bv_in, cv_in = _load_block(u_ptr, dt_ptr, b_ptr, c_ptr, base_n, off, valid_n, PREF == 2)
        else:
            u, dt, bv, _ = _load_block(u_ptr, dt_ptr, b_ptr, c_ptr, base, off, valid, False)
            u = _row_tile(u, WP, REV)
            dt = _row_tile(dt, WP, REV)
            bv = _row_tile(bv, WP, REV)
        y, h, S = _row_scan(u, dt, bv, S, A2, Dv, bias, scan_mask & (k2 < H - h0), HAS_D, HAS_BIAS, SOFTPLUS,
                            LIBDEVICE, False)                               # padding rows: identity
        if PREF < 2:
            cv = _row_tile(_load01(c_ptr + base + off, valid), WP, REV)
        _row_store(y_ptr, base, off, y + h * cv, valid, REV)
        i += 1


# ---------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------

@triton.jit
def _scan_kernel(u_ptr, su_b, su_c, su_l, dt_ptr, sdt_b, sdt_c, sdt_l,
                 b_ptr, sb_b, sb_g, sb_n, sb_l, c_ptr, sc_b, sc_g, sc_n, sc_l,
                 z_ptr, sz_b, sz_c, sz_l, y_ptr, sy_b, sy_c, sy_l,
                 A_ptr, D_ptr, bias_ptr, dim_g, L,
                 NSTATE: tl.constexpr, NP: tl.constexpr, BD: tl.constexpr, BL: tl.constexpr,
                 V: tl.constexpr, TRANS: tl.constexpr, ALIGN: tl.constexpr,
                 REV: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
                 SOFTPLUS: tl.constexpr, HAS_Z: tl.constexpr):
    """Plain selective scan; grid (channel blocks of a group, groups, batch)."""
    pid_d = tl.program_id(0)
    g = tl.program_id(1)
    bb = tl.program_id(2).to(tl.int64)
    c0 = g * dim_g
    cl = pid_d * BD + tl.arange(0, BD)
    cmask = cl < dim_g
    _sweep_flat(u_ptr, bb * su_b + c0 * su_c, su_c, 0, su_l,
                dt_ptr, bb * sdt_b + c0 * sdt_c, sdt_c, 0, sdt_l,
                b_ptr + bb * sb_b + g * sb_g, sb_n, 0, sb_l,
                c_ptr + bb * sc_b + g * sc_g, sc_n, 0, sc_l,
                z_ptr, bb * sz_b + c0 * sz_c, sz_c, 0, sz_l,
                y_ptr, y_ptr, bb * sy_b + c0 * sy_c, sy_c, 0, sy_l,
                A_ptr + c0 * NSTATE, D_ptr + c0, bias_ptr + c0, cl, cmask, L, L,
                NSTATE, NP, BL, V, TRANS, ALIGN, REV, False, True, HAS_D, HAS_BIAS, SOFTPLUS, HAS_Z, False, False)


@triton.jit
def _bimamba_kernel(u_ptr, su_b, su_c, su_l, dt_ptr, sdt_b, sdt_c, sdt_l,
                    b_ptr, sb_b, sb_g, sb_n, sb_l, c_ptr, sc_b, sc_g, sc_n, sc_l,
                    A_ptr, D_ptr, bias_ptr,
                    ub_ptr, sub_b, sub_c, sub_l, dtb_ptr, sdtb_b, sdtb_c, sdtb_l,
                    bb_ptr, sbb_b, sbb_g, sbb_n, sbb_l, cb_ptr, scb_b, scb_g, scb_n, scb_l,
                    Ab_ptr, Db_ptr, biasb_ptr,
                    z_ptr, sz_b, sz_c, sz_l, y_ptr, acc_ptr, sy_b, sy_c, sy_l, dim_g, L,
                    NSTATE: tl.constexpr, NP: tl.constexpr, BD: tl.constexpr, BL: tl.constexpr,
                    V: tl.constexpr, TRANS: tl.constexpr, ALIGN: tl.constexpr,
                    B_FLIPPED: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
                    SOFTPLUS: tl.constexpr, HAS_Z: tl.constexpr):
    """Backward direction first (partial sum to acc, float32), then forward + gate + store."""
    pid_d = tl.program_id(0)
    g = tl.program_id(1)
    bb = tl.program_id(2).to(tl.int64)
    c0 = g * dim_g
    cl = pid_d * BD + tl.arange(0, BD)
    cmask = cl < dim_g
    yo = bb * sy_b + c0 * sy_c
    zo = bb * sz_b + c0 * sz_c
    _sweep_flat(ub_ptr, bb * sub_b + c0 * sub_c, sub_c, 0, sub_l,
                dtb_ptr, bb * sdtb_b + c0 * sdtb_c, sdtb_c, 0, sdtb_l,
                bb_ptr + bb * sbb_b + g * sbb_g, sbb_n, 0, sbb_l,
                cb_ptr + bb * scb_b + g * scb_g, scb_n, 0, scb_l,
                z_ptr, zo, sz_c, 0, sz_l, y_ptr, acc_ptr, yo, sy_c, 0, sy_l,
                Ab_ptr + c0 * NSTATE, Db_ptr + c0, biasb_ptr + c0, cl, cmask, L, L,
                NSTATE, NP, BL, V, TRANS, ALIGN, True, B_FLIPPED, True, HAS_D, HAS_BIAS, SOFTPLUS, False, False, True)
    tl.debug_barrier()  # the forward sweep reads partials that other threads of this program wrote
    _sweep_flat(u_ptr, bb * su_b + c0 * su_c, su_c, 0, su_l,
                dt_ptr, bb * sdt_b + c0 * sdt_c, sdt_c, 0, sdt_l,
                b_ptr + bb * sb_b + g * sb_g, sb_n, 0, sb_l,
                c_ptr + bb * sc_b + g * sc_g, sc_n, 0, sc_l,
                z_ptr, zo, sz_c, 0, sz_l, y_ptr, acc_ptr, yo, sy_c, 0, sy_l,
                A_ptr + c0 * NSTATE, D_ptr + c0, bias_ptr + c0, cl, cmask, L, L,
                NSTATE, NP, BL, V, TRANS, ALIGN, False, False, True, HAS_D, HAS_BIAS, SOFTPLUS, HAS_Z, True, False)


@triton.jit(do_not_specialize=["zero"])
def _group4_kernel(u_ptr, su_b, su_g, su_c, su_h, su_w, dt_ptr, sdt_b, sdt_g, sdt_c, sdt_h, sdt_w,
                   b_ptr, sb_b, sb_g, sb_n, sb_h, sb_w, c_ptr, sc_b, sc_g, sc_n, sc_h, sc_w,
                   y_ptr, sy_b, sy_g, sy_c, sy_h, sy_w,
                   A_ptr, D_ptr, bias_ptr, dim_g, H, W, zero, times_ptr,
                   NSTATE: tl.constexpr, NP: tl.constexpr, BD: tl.constexpr, BL: tl.constexpr,
                   V: tl.constexpr, TRANS: tl.constexpr, ALIGN: tl.constexpr,
                   HP: tl.constexpr, CB: tl.constexpr, BDC: tl.constexpr, FLAT: tl.constexpr,
                   COLS: tl.constexpr, CALIGN: tl.constexpr, PREF: tl.constexpr, CFOLD: tl.constexpr,
                   ROWS: tl.constexpr, WP: tl.constexpr, RUN: tl.constexpr, RUN2: tl.constexpr, RUN3: tl.constexpr,
                   QR: tl.constexpr, EVEN: tl.constexpr, WC: tl.constexpr,
                   KR: tl.constexpr, WPR: tl.constexpr, EVENR: tl.constexpr, WR: tl.constexpr,
                   TR: tl.constexpr, KTR: tl.constexpr, CHANNELS_LAST: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
                   TIMES: tl.constexpr = False, CVEC: tl.constexpr = 1):
    """GroupMamba's 4-direction scan; grid (channel blocks, 4 directions/groups, batch).

    TIMES: each program writes its start and end (%globaltimer, ns) and its SM to
    times_ptr[program, 0:3], program = (batch entry * 4 + group) * channel blocks + channel block: a
    diagnostic of how the launch fills the SMs (docs/scan_notes.md, "Session 33")."""
    if TIMES:
        t_start = _globaltimer()
    pid_d = tl.program_id(0)
    g = tl.program_id(1)
    bb = tl.program_id(2).to(tl.int64)
    cl = pid_d * BD + tl.arange(0, BD)
    cmask = cl < dim_g
    uo = bb * su_b + g * su_g
    dto = bb * sdt_b + g * sdt_g
    b0 = b_ptr + bb * sb_b + g * sb_g
    c0 = c_ptr + bb * sc_b + g * sc_g
    yo = bb * sy_b + g * sy_g
    A0 = A_ptr + g * dim_g * NSTATE
    D0 = D_ptr + g * dim_g
    bias0 = bias_ptr + g * dim_g
    if g % 2 == 0 and ROWS == 2:  # row runs: blocks of whole rows, vector loads (contiguous planes, one state)
        for j in tl.static_range(BD):
            cs = pid_d * BD + j
            if cs < dim_g:
                if g == 0:
                    _sweep_row_runs(u_ptr + (uo + cs * su_c), dt_ptr + (dto + cs * sdt_c), b0, c0,
                                    y_ptr + (yo + cs * sy_c), A0, D0, bias0, cs, H * WC // WR, WR, KR, WPR, EVENR,
                                    False, PREF, HAS_D, HAS_BIAS, SOFTPLUS, False, TR, KTR)
                else:
                    _sweep_row_runs(u_ptr + (uo + cs * su_c), dt_ptr + (dto + cs * sdt_c), b0, c0,
                                    y_ptr + (yo + cs * sy_c), A0, D0, bias0, cs, H * WC // WR, WR, KR, WPR, EVENR,
                                    True, PREF, HAS_D, HAS_BIAS, SOFTPLUS, False, TR, KTR)
    elif g % 2 == 0 and ROWS == 1:  # row-major as whole-row tiles: the column code with h <-> w
        for j in tl.static_range(BD // BDC):
            cj = pid_d * BD + j * BDC + tl.arange(0, BDC)
            if g == 0:
                _sweep_cols2(u_ptr, uo, su_c, su_w, su_h, dt_ptr, dto, sdt_c, sdt_w, sdt_h, b0, sb_n, sb_w,
                             sb_h, c0, sc_n, sc_w, sc_h, y_ptr, yo, sy_c, sy_w, sy_h, A0, D0, bias0, cj,
                             cj < dim_g, W, H, NSTATE, NP, WP, CB, False, 1, PREF, HAS_D, HAS_BIAS, SOFTPLUS)
            else:
                _sweep_cols2(u_ptr, uo, su_c, su_w, su_h, dt_ptr, dto, sdt_c, sdt_w, sdt_h, b0, sb_n, sb_w,
                             sb_h, c0, sc_n, sc_w, sc_h, y_ptr, yo, sy_c, sy_w, sy_h, A0, D0, bias0, cj,
                             cj < dim_g, W, H, NSTATE, NP, WP, CB, True, 1, PREF, HAS_D, HAS_BIAS, SOFTPLUS)
    elif g % 2 == 0:  # row-major, reversed for group 2
        if g == 0:
            _sweep_flat(u_ptr, uo, su_c, su_h, su_w, dt_ptr, dto, sdt_c, sdt_h, sdt_w, b0, sb_n, sb_h, sb_w,
                        c0, sc_n, sc_h, sc_w, y_ptr, 0, 0, 0, 0, y_ptr, y_ptr, yo, sy_c, sy_h, sy_w,
                        A0, D0, bias0, cl, cmask, H * W, W,
                        NSTATE, NP, BL, V, TRANS, ALIGN, False, False, FLAT, HAS_D, HAS_BIAS, SOFTPLUS,
                        False, False, False, CHANNELS_LAST)
        else:
            _sweep_flat(u_ptr, uo, su_c, su_h, su_w, dt_ptr, dto, sdt_c, sdt_h, sdt_w, b0, sb_n, sb_h, sb_w,
                        c0, sc_n, sc_h, sc_w, y_ptr, 0, 0, 0, 0, y_ptr, y_ptr, yo, sy_c, sy_h, sy_w,
                        A0, D0, bias0, cl, cmask, H * W, W,
                        NSTATE, NP, BL, V, TRANS, ALIGN, True, False, FLAT, HAS_D, HAS_BIAS, SOFTPLUS,
                        False, False, False, CHANNELS_LAST)
    else:  # column-major, reversed for group 3; sub-blocks of BDC channels keep the tiles small
        zc = zero * CVEC  # the alignment the column runs' pointers show: CVEC elements (1: none)
        for j in tl.static_range(BD // BDC):
            cj = pid_d * BD + j * BDC + tl.arange(0, BDC)
            if COLS == 2:  # runs of R rows per thread (contiguous planes, one state, BDC == 1)
                cs = pid_d * BD + j
                if cs < dim_g:
                    if g == 1:
                        _sweep_col_runs(u_ptr + (uo + cs * su_c + zc), dt_ptr + (dto + cs * sdt_c + zc),
                                        b0 + zc, c0 + zc, y_ptr + (yo + cs * sy_c + zc), A0, D0, bias0, cs,
                                        H, WC, RUN, QR, CB, EVEN, False, PREF, HAS_D, HAS_BIAS, SOFTPLUS, False,
                                        RUN2, RUN3, CFOLD)
                    else:
                        _sweep_col_runs(u_ptr + (uo + cs * su_c + zc), dt_ptr + (dto + cs * sdt_c + zc),
                                        b0 + zc, c0 + zc, y_ptr + (yo + cs * sy_c + zc), A0, D0, bias0, cs,
                                        H, WC, RUN, QR, CB, EVEN, True, PREF, HAS_D, HAS_BIAS, SOFTPLUS, False,
                                        RUN2, RUN3, CFOLD)
            elif COLS == 1:  # two-level scan on the natural tile (default)
                if g == 1:
                    _sweep_cols2(u_ptr, uo, su_c, su_h, su_w, dt_ptr, dto, sdt_c, sdt_h, sdt_w, b0, sb_n, sb_h,
                                 sb_w, c0, sc_n, sc_h, sc_w, y_ptr, yo, sy_c, sy_h, sy_w, A0, D0, bias0, cj,
                                 cj < dim_g, H, W, NSTATE, NP, HP, CB, False, CALIGN, PREF, HAS_D, HAS_BIAS, SOFTPLUS)
                else:
                    _sweep_cols2(u_ptr, uo, su_c, su_h, su_w, dt_ptr, dto, sdt_c, sdt_h, sdt_w, b0, sb_n, sb_h,
                                 sb_w, c0, sc_n, sc_h, sc_w, y_ptr, yo, sy_c, sy_h, sy_w, A0, D0, bias0, cj,
                                 cj < dim_g, H, W, NSTATE, NP, HP, CB, True, CALIGN, PREF, HAS_D, HAS_BIAS, SOFTPLUS)
            elif g == 1:  # COLS == 0: v2, tiles reshaped into sequence order
                _sweep_cols(u_ptr, uo, su_c, su_h, su_w, dt_ptr, dto, sdt_c, sdt_h, sdt_w, b0, sb_n, sb_h, sb_w,
                            c0, sc_n, sc_h, sc_w, y_ptr, yo, sy_c, sy_h, sy_w, A0, D0, bias0, cj, cj < dim_g,
                            H, W, NSTATE, NP, HP, CB, False, HAS_D, HAS_BIAS, SOFTPLUS, CHANNELS_LAST)
            else:
                _sweep_cols(u_ptr, uo, su_c, su_h, su_w, dt_ptr, dto, sdt_c, sdt_h, sdt_w, b0, sb_n, sb_h, sb_w,
                            c0, sc_n, sc_h, sc_w, y_ptr, yo, sy_c, sy_h, sy_w, A0, D0, bias0, cj, cj < dim_g,
                            H, W, NSTATE, NP, HP, CB, True, HAS_D, HAS_BIAS, SOFTPLUS, CHANNELS_LAST)

    if TIMES:
        lin = pid_d + tl.num_programs(0) * (g + 4 * tl.program_id(2))
        tl.store(times_ptr + 3 * lin, t_start)
        tl.store(times_ptr + 3 * lin + 1, _globaltimer())
        tl.store(times_ptr + 3 * lin + 2, _smid())


@triton.jit
def _globaltimer():
    return tl.inline_asm_elementwise("mov.u64 $0, %globaltimer;", "=l", [], dtype=tl.int64, is_pure=False, pack=1)


@triton.jit
def _smid():
    return tl.inline_asm_elementwise("mov.u32 $0, %smid;", "=r", [], dtype=tl.int32, is_pure=False,
                                     pack=1).to(tl.int64)


# ---------------------------------------------------------------------------------------------
# Python wrappers
# ---------------------------------------------------------------------------------------------

def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _updated_config(defaults: dict, config: Optional[dict], pow2_keys: tuple[str, ...]) -> dict:
    """``defaults`` updated by the entries of ``config`` it has keys for (others are ignored: one
    config dict may carry several kernels' keys); the ``pow2_keys`` must be powers of 2."""
    cfg = dict(defaults)
    cfg.update({k: v for k, v in (config or {}).items() if k in cfg})
    for key in pow2_keys:
        if cfg[key] < 1 or cfg[key] & (cfg[key] - 1):
            raise ValueError(f"{key} must be a power of 2, got {cfg[key]}")
    return cfg


def _check_device(*tensors: Optional[Tensor]) -> None:
    """One device, CUDA (or the interpreter). The entry points whose arguments ``check_scan_args`` /
    ``check_group_scan_args`` checked (one device, each argument named) pass u alone."""
    dev = tensors[0].device
    for t in tensors:
        if t is not None and t.device != dev:
            raise ValueError(f"all tensors must be on one device, got {t.device} and {dev}")
    if dev.type != "cuda" and not _interpreting():
        raise RuntimeError("the Triton scan needs CUDA tensors (or TRITON_INTERPRET=1 on CPU)")


def _check_out(name: str, out: Optional[Tensor], u: Tensor) -> None:
    """``out`` (if given) must be a floating-point tensor of u's shape on u's device: the kernels write
    it through its strides, so a smaller one would be written out of bounds."""
    if out is None:
        return
    check_tensor_args(name, ("out",), (out,), device=u.device)
    if out.shape != u.shape:
        raise ValueError(f"{name}: out has shape {tuple(out.shape)}; expected u's shape {tuple(u.shape)}")


def _check_group_kernel_args(name: str, kernel: str, u: Tensor, delta: Optional[Tensor], A: Tensor,
                             B: Optional[Tensor], C: Optional[Tensor], D: Optional[Tensor],
                             delta_bias: Optional[Tensor], out: Optional[Tensor], *,
                             operands_optional: bool = False) -> None:
    """The checks of a 4-direction kernel's public entry point (``group_scan_4dir_lookback_triton``...):
    ``check_group_scan_args``, ``out`` (``_check_out``) and d_state 1 (A (4, d, 1)), the ``kernel``
    named in that message; the device check (``_check_device``) is the caller's. ``group_scan_4dir_triton``
    and ``group_scan_4dir_norm_gate_triton``, which have made these checks, run the unchecked
    ``_group_scan_4dir_*_triton`` functions."""
    check_group_scan_args(u, delta, A, B, C, D, delta_bias, name=name, operands_optional=operands_optional)
    _check_out(name, out, u)
    if A.shape[2] != 1:
        raise ValueError(f"{name}: A has shape {tuple(A.shape)}; the {kernel} takes d_state 1: (4, d, 1)")


def _check_norm_gate_args(name: str, u: Tensor, delta: Optional[Tensor], B: Optional[Tensor],
                          C: Optional[Tensor], norm_weight: Tensor, norm_bias: Tensor, z: Tensor,
                          x_proj: Optional[Tensor] = None, out_proj: Optional[Tensor] = None) -> None:
    """The norm-gate epilogue's arguments (``group_scan_4dir_norm_gate_triton``'s docstring), u, delta,
    B and C having been checked by ``check_group_scan_args``: ValueError / TypeError naming the argument."""
    check_tensor_args(name, ("norm_weight", "norm_bias", "z", "x_proj", "out_proj"),
                      (norm_weight, norm_bias, z, x_proj, out_proj), ("x_proj", "out_proj"), device=u.device)
    if (x_proj is None) == (delta is None or B is None or C is None):
        raise ValueError(f"{name}: pass either delta, B and C or x_proj")
    dim_g = u.shape[2]
    for arg, value in (("norm_weight", norm_weight), ("norm_bias", norm_bias)):
        if value.shape != (4, dim_g):
            raise ValueError(f"{name}: {arg} has shape {tuple(value.shape)}; expected (4, {dim_g}) = (4, d)")
    if z.shape != u.shape:
        raise ValueError(f"{name}: z has shape {tuple(z.shape)}; expected u's shape {tuple(u.shape)}")
    for arg, value, expected in (("x_proj", x_proj, (4, dim_g + 2, dim_g)), ("out_proj", out_proj, (4, dim_g, dim_g))):
        if value is not None and value.shape != expected:
            what = "(4, d + 2, d)" if arg == "x_proj" else "(4, d, d)"
            raise ValueError(f"{name}: {arg} has shape {tuple(value.shape)}; expected {expected} = {what}")


def _interpreting() -> bool:
    import os
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _params(A: Tensor, D: Optional[Tensor], delta_bias: Optional[Tensor], dim: int):
    """Small per-channel parameters as contiguous float32 (dim, N), (dim,), (dim,)."""
    A = A.reshape(dim, -1).float().contiguous()
    Dv = A if D is None else D.reshape(dim).float().contiguous()
    bias = A if delta_bias is None else delta_bias.reshape(dim).float().contiguous()
    return A, Dv, bias


def _bc4(t: Tensor) -> Tensor:
    return t.unsqueeze(1) if t.dim() == 3 else t


def _new_like_seq(u: Tensor, dtype: torch.dtype) -> Tensor:
    """(batch, dim, L) output in u's memory order (channels-last when u is)."""
    batch, dim, length = u.shape
    if u.stride(1) == 1 and u.stride(2) != 1 and dim > 1:
        return torch.empty(batch, length, dim, dtype=dtype, device=u.device).transpose(1, 2)
    return torch.empty(batch, dim, length, dtype=dtype, device=u.device)


def _align(*tensors: Tensor) -> int:
    """Largest a in (8, 4, 2) such that every row (last dim, stride 1, length a multiple of a) of
    every tensor starts on a multiple of a elements: then the kernels may use vector loads."""
    for a in (8, 4, 2):
        if all(t.shape[-1] % a == 0 and t.stride(-1) == 1 and t.data_ptr() % (a * t.element_size()) == 0
               and all(t.stride(i) % a == 0 for i in range(t.dim() - 1) if t.shape[i] > 1)
               for t in tensors):
            return a
    return 1


def _seq_layout(length: int, n_state: int, contiguous: bool, align: int, elem: int) -> dict:
    """Launch geometry for (batch, dim, L) sequences (chosen by the H100 sweeps in docs/scan_notes.md).

    contiguous (L is the stride-1 axis): one warp per channel row, BL = 32 lanes x vector width, so a
    chunk's scan never crosses warps (no barriers). Otherwise (channels-last) tiles of BL steps x BD
    channels are loaded along the channels and moved to the sequence-major layout in registers.
    Many states (VideoMamba's 16) make the kernel compute-bound: single-warp programs were fastest.
    """
    if contiguous:
        vec = max(1, min(align, 16 // elem))
        if n_state > 4:
            return dict(BD=1, BL=32 * vec, V=1, num_warps=1)
        return dict(BD=4, BL=32 * vec, V=1, num_warps=4)
    if n_state > 4:
        return dict(BD=4, BL=32, V=1, num_warps=1)
    return dict(BD=8, BL=32, V=1, num_warps=4)


def _seq_config(u: Tensor, others: tuple, n_state: int, config: Optional[dict]) -> dict:
    contiguous = u.stride(2) == 1 and u.shape[2] > 1
    align = _align(u, *others) if contiguous else 1
    cfg = _seq_layout(u.shape[2], n_state, contiguous, align, u.element_size())
    cfg.update(TRANS=not contiguous, ALIGN=align)
    if config:
        cfg.update(config)
    if cfg["BL"] % cfg["V"]:
        raise ValueError(f"V must divide BL, got {cfg}")
    return cfg


def selective_scan_triton(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                          D: Optional[Tensor] = None, z: Optional[Tensor] = None,
                          delta_bias: Optional[Tensor] = None, delta_softplus: bool = False,
                          *, reverse: bool = False, out: Optional[Tensor] = None,
                          config: Optional[dict] = None) -> Tensor:
    """``selective_scan_ref``'s function in one kernel launch (inputs may be strided views).

    ``reverse=True`` runs the recurrence from the last step to the first (the output keeps the
    input's order), i.e. ``flip(scan(flip(inputs)))`` without the flips. ``out`` (batch, dim, L) of
    u's dtype receives the result if given. ``config`` overrides the launch (BD, BL, num_warps).

    The arguments are checked as the dispatcher checks them (``check_scan_args``; ``out`` too), each
    mistake a ValueError / TypeError naming the argument rather than a failure inside the launch or
    a silently wrong result. The dispatcher's ``"triton"`` backend is ``_selective_scan_triton``,
    which skips the checks it has already made.
    """
    check_scan_args(u, delta, A, B, C, D, z, delta_bias, name="selective_scan_triton")
    _check_out("selective_scan_triton", out, u)
    _check_device(u)
    return _selective_scan_triton(u, delta, A, B, C, D, z, delta_bias, delta_softplus, reverse=reverse, out=out,
                                  config=config)


def _selective_scan_triton(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                           D: Optional[Tensor] = None, z: Optional[Tensor] = None,
                           delta_bias: Optional[Tensor] = None, delta_softplus: bool = False,
                           *, reverse: bool = False, out: Optional[Tensor] = None,
                           config: Optional[dict] = None) -> Tensor:
    """``selective_scan_triton`` on arguments already checked (the dispatcher's ``"triton"`` backend:
    ``selective_scan`` checks them and runs it on CUDA tensors only)."""
    batch, dim, length = u.shape
    B4, C4 = _bc4(B), _bc4(C)
    groups, n_state = B4.shape[1], B4.shape[2]
    dim_g = dim // groups
    A_, D_, bias_ = _params(A, D, delta_bias, dim)
    y = out if out is not None else _new_like_seq(u, u.dtype)
    zz = z if z is not None else y
    cfg = _seq_config(u, (delta, zz, y), n_state, config)
    grid = (triton.cdiv(dim_g, cfg["BD"]), groups, batch)
    _scan_kernel[grid](
        u, *u.stride(), delta, *delta.stride(), B4, *B4.stride(), C4, *C4.stride(),
        zz, *zz.stride(), y, *y.stride(), A_, D_, bias_, dim_g, length,
        NSTATE=n_state, NP=_pow2(n_state), BD=cfg["BD"], BL=cfg["BL"], V=cfg["V"], TRANS=cfg["TRANS"],
        ALIGN=cfg["ALIGN"], REV=bool(reverse),
        HAS_D=D is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(delta_softplus),
        HAS_Z=z is not None, num_warps=cfg["num_warps"])
    return y


def check_bimamba_args(name: str, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                       u_b: Tensor, delta_b: Tensor, A_b: Tensor, B_b: Tensor, C_b: Tensor, D_b: Optional[Tensor],
                       z: Optional[Tensor], delta_bias: Optional[Tensor], delta_bias_b: Optional[Tensor],
                       out: Optional[Tensor] = None) -> None:
    """The bimamba scans' arguments (chunked here, sequential in triton_bimamba): each direction as
    ``check_scan_args`` checks a scan (the backward one's arguments named u_b, delta_b...), and both
    directions alike, since one launch runs them with one shape, state size and set of optional terms."""
    check_scan_args(u, delta, A, B, C, D, z, delta_bias, name=name)
    if isinstance(u_b, Tensor):  # (u_b first: the backward direction's other arguments are checked against it)
        if u_b.device != u.device:
            raise ValueError(f"{name}: u_b is on {u_b.device}; expected u's device {u.device}")
        if u_b.shape != u.shape:
            raise ValueError(f"{name}: u_b has shape {tuple(u_b.shape)}; expected u's shape {tuple(u.shape)} "
                             "(both directions share (batch, dim, L))")
    check_scan_args(u_b, delta_b, A_b, B_b, C_b, D_b, None, delta_bias_b, name=name, suffix="_b")
    for arg, value, forward in (("A_b", A_b, A), ("B_b", _bc4(B_b), _bc4(B))):
        if value.shape != forward.shape:
            raise ValueError(f"{name}: {arg} has shape {tuple(value.shape)}; expected the forward direction's "
                             f"{tuple(forward.shape)} (both directions share N and B/C's groups)")
    if (D is None) != (D_b is None) or (delta_bias is None) != (delta_bias_b is None):
        raise ValueError(f"{name}: give D / delta_bias for both directions (D_b / delta_bias_b) or for neither")
    _check_out(name, out, u)


def _bimamba_operands(u, delta, A, B, C, D, u_b, delta_b, A_b, B_b, C_b, D_b, z, delta_bias, delta_bias_b,
                      out):
    """Operands shared by the bimamba kernels (arguments checked by ``check_bimamba_args``):
    B/C of both directions as (batch, groups, N, L) views, each direction's (A, D, delta_bias) as
    float32, the output y, a float32 accumulator for the backward partial (y itself when float32), and
    z (y stands in when there is no gate)."""
    dim = u.shape[1]
    B4, C4, Bb4, Cb4 = _bc4(B), _bc4(C), _bc4(B_b), _bc4(C_b)
    y = out if out is not None else _new_like_seq(u, u.dtype)
    acc = y if y.dtype == torch.float32 else torch.empty_strided(y.shape, y.stride(), dtype=torch.float32,
                                                                  device=y.device)
    return (B4, C4, Bb4, Cb4, _params(A, D, delta_bias, dim), _params(A_b, D_b, delta_bias_b, dim), y, acc,
            z if z is not None else y)


def bimamba_scan_triton(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                        u_b: Tensor, delta_b: Tensor, A_b: Tensor, B_b: Tensor, C_b: Tensor,
                        D_b: Optional[Tensor], z: Optional[Tensor] = None,
                        delta_bias: Optional[Tensor] = None, delta_bias_b: Optional[Tensor] = None,
                        delta_softplus: bool = False, *, backward_flipped: bool = False,
                        out: Optional[Tensor] = None, config: Optional[dict] = None) -> Tensor:
    """Bimamba v2 (VideoMamba / Vim) mixer scan in one launch; see ``bimamba_scan_ref`` for the exact
    function. Forward inputs are in token order. Backward inputs (u_b, delta_b, B_b, C_b) are in
    token order (``backward_flipped=False``; the scan then runs from the last token to the first)
    or, as the authors compute them on ``xz.flip(-1)``, already flipped (``backward_flipped=True``).
    z (token order) gates both directions: (y_f + y_b) * silu(z), with each D skip included.
    Arguments are checked by ``check_bimamba_args`` (ValueError / TypeError naming the argument).
    """
    check_bimamba_args("bimamba_scan_triton", u, delta, A, B, C, D, u_b, delta_b, A_b, B_b, C_b, D_b, z,
                       delta_bias, delta_bias_b, out)
    _check_device(u)
    batch, dim, length = u.shape
    (B4, C4, Bb4, Cb4, (A_, D_, bias_), (Ab_, Db_, biasb_), y, acc, zz) = _bimamba_operands(
        u, delta, A, B, C, D, u_b, delta_b, A_b, B_b, C_b, D_b, z, delta_bias, delta_bias_b, out)
    groups, n_state = B4.shape[1], B4.shape[2]
    dim_g = dim // groups
    cfg = _seq_config(u, (delta, u_b, delta_b, zz, y, acc), n_state, config)
    grid = (triton.cdiv(dim_g, cfg["BD"]), groups, batch)
    _bimamba_kernel[grid](
        u, *u.stride(), delta, *delta.stride(), B4, *B4.stride(), C4, *C4.stride(), A_, D_, bias_,
        u_b, *u_b.stride(), delta_b, *delta_b.stride(), Bb4, *Bb4.stride(), Cb4, *Cb4.stride(),
        Ab_, Db_, biasb_, zz, *zz.stride(), y, acc, *y.stride(), dim_g, length,
        NSTATE=n_state, NP=_pow2(n_state), BD=cfg["BD"], BL=cfg["BL"], V=cfg["V"], TRANS=cfg["TRANS"],
        ALIGN=cfg["ALIGN"], B_FLIPPED=bool(backward_flipped),
        HAS_D=D is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(delta_softplus),
        HAS_Z=z is not None, num_warps=cfg["num_warps"])
    return y


def _flat_ok(t: Tensor, H: int, W: int) -> bool:
    """Do the (H, W) dims of t (last two) merge into one stride?"""
    return H == 1 or t.stride(-2) == W * t.stride(-1)


def _run_length(H: int, odd: bool = False) -> int:
    """Rows per thread in the column-run sweep: the largest power of 2 up to 16 that divides H (then
    whole runs are valid or padding), else 8. With ``odd``, 7 where H is 7 times a power of 2: then
    the runs cover H exactly (the sweep scans a run of 7 as parts of 4, 2 and 1 rows)."""
    if odd and H % 7 == 0 and _pow2(H // 7) == H // 7:
        return 7
    run = 16
    while run > 1 and H % run:
        run //= 2
    return run if run > 1 else min(8, _pow2(H))


def _run_parts(run: int) -> tuple[int, int, int]:
    """A column run of ``run`` rows as up to three power-of-2 parts, largest first (7 -> 4, 2, 1; 0 for
    a part not there): the column-run sweep scans each part as its own tile."""
    parts = [1 << b for b in range(int(run).bit_length() - 1, -1, -1) if run >> b & 1]
    if run < 1 or len(parts) > 3:
        raise ValueError(f"RUN (rows per column run) must be a sum of at most 3 powers of 2, got {run}")
    return tuple(parts + [0] * (3 - len(parts)))


def _row_width(W: int) -> int:
    """Row length of the row-run tiles: W rounded up to a power of 2, at least one 4-element vector."""
    return max(4, _pow2(W))


def _row_length(H: int, W: int) -> int:
    """Row length the row runs scan the plane in: W, or W rounded up to a power of 2 where that
    divides H * W. The row-major sequence is the plane's memory order whatever the row length, so
    56 x 56 is scanned as 49 x 64: the same (KR, 64) tiles without their 8 padding columns."""
    width = _row_width(W)
    return width if (H * W) % width == 0 else W


def _group_config(u: Tensor, others: tuple, flat: bool, config: Optional[dict]) -> dict:
    """Launch geometry of the 4-direction kernel (same ideas as ``_seq_layout``)."""
    dim_g, H, W = u.shape[2], u.shape[3], u.shape[4]
    HP = _pow2(H)
    contiguous = u.stride(-1) == 1 and flat and W > 1   # channel-first maps
    align = _align(*[t.flatten(-2) for t in (u, *others)]) if contiguous else 1
    if contiguous:  # H100 sweep (docs/gpu_runs/scan_sweep_v3.txt): single-channel one-warp programs on
        # large maps (50.5% of copy bandwidth at 56x56 C64, vs 42.6% for 4-channel tiles), prefetching
        # 4-channel tiles on small ones (30.7% at 14x14 C348, vs 15.7%)
        vec = max(1, min(align, 16 // u.element_size()))
        CB = max(1, min(_pow2(W), max(8, 256 // HP)))   # >= 8 whole columns: >= 32-byte rows
        if H >= 28:  # row and column runs, each loading its next block ahead (ROWS=2 in blocks of KR=4
            # rows, COLS=2, PREF; group_scan_4dir_triton falls back to the flat and two-level sweeps where
            # planes are not contiguous or N > 1): 56x56 C64 fp32 142.2 us vs 203.1 for those sweeps,
            # 28x28 C192 101.8 vs 121.0 (docs/gpu_runs/s26_run3.txt, s26_run7.txt, s26_run8.txt). 28x28 also
            # prefetches C (PREF 2; 123 -> 128 registers, 16 warps per SM either way): fp32 C192 97.8 vs
            # 102.4 us, C128 67.2 vs 70.3; at 56x56 (167 -> 203 registers) it was 7% slower. 56x56 row runs
            # scan the plane as 49 rows of 64 (ROWW, no padding columns): C96 199.9 vs 201.7 us,
            # C64 140.1 vs 141.7, bf16 1-2% (s27_run2.txt). 28x28 row runs in blocks of 8 rows (4 blocks, the
            # last half padding) instead of 4 (7 blocks): fp32 C128 66.0 -> 64.3 us, C192 95.9 -> 93.4
            # (s30_run10.txt, s30_run11.txt); 16 rows and 56x56 with 8 were slower. In fp32 the rows left
            # over by the blocks (56x56: 49 = 12 x 4 + 1; 28x28: 28 = 3 x 8 + 4) are a block of their own
            # scanned first (RTAIL), so no block carries padding rows: C64 137.7 -> 137.1 us, C96 195.8 ->
            # 195.2, 28x28 C128 64.3 -> 63.8; in bf16 56x56 it was 1-2% slower (s31_run1.txt)
            # Column runs of 7 rows where H is 7 times a power of 2 (56 = 8 x 7, 28 = 4 x 7; parts of 4 + 2 + 1
            # rows) instead of a power of 2 (64 rows for 56, 32 for 28): no padding rows. bf16 56x56 C64
            # 104.0 -> 95.3 us, C96 148.4 -> 135.0; fp32 C64 137.0 -> 136.5, C96 195.6 -> 196.2, 28x28 C128
            # 63.9 -> 63.5, C192 93.4 -> 92.6 (s32_run2.txt)
            # fp32 56x56: C prefetched too (PREF 2) with C folded in as each part is scanned (CFOLD), which
            # keeps 168 registers: C64 136.4 -> 135.0 us, C96 195.6 -> 194.2; bf16 1-2% slower, 28x28 even
            # (s37_run3.txt, s37_run4.txt)
            # Column runs loaded as 2-element vectors along the columns (CVEC 2: the pointers' alignment
            # shown as 2 elements, not hidden), where the (runs, columns / 2) tile still fills a warp's lanes
            # (56x56: 8 runs x 4 column pairs), so a run's rows stay in one thread: half the column loads
            # and stores. fp32 C64 135.1 -> 133.2 us, C96 194.3 -> 192.6; bf16 (128 registers instead of
            # 168, so C prefetched too, PREF 2: 160) C64 94.5 -> 88.3, C96 135.2 -> 126.2 (s38_run1.txt,
            # s38_run2.txt). 28x28 (4 runs: the rows would cross lanes) 1-6% slower: off there
            wide32 = HP > 32 and u.element_size() == 4
            run = _run_length(H, odd=True)
            cvec = 2 if HP > 32 and CB * _pow2(-(-H // run)) >= 64 else 1
            cfg = dict(BD=1, BL=32 * vec, V=1, num_warps=1, CB=CB, BDC=1, TRANS=False, COLS=2, ROWS=2,
                       KR=8 if HP <= 32 else 4, PREF=2 if HP <= 32 or wide32 or cvec > 1 else 1, CFOLD=wide32,
                       ROWW=_row_length(H, W), RTAIL=u.element_size() == 4, RUN=run, CVEC=cvec)
            if u.element_size() == 2 and HP <= 32:  # 16-bit 28x28: the flat row sweep and 4-column blocks
                cfg.update(ROWS=0, CB=4, RUN=_run_length(H))  # (bf16 C192 70.3 vs 75.7 us, s26_run9.txt)
        else:
            cfg = dict(BD=4, BL=32 * vec, V=1, num_warps=4, CB=min(_pow2(W), 8), BDC=2, TRANS=False, PREF=True)
    else:  # channels-last (the models' layout): channel-major tiles (lanes along the channels), the
        # v2 path. The v3 one-warp whole-row/column tiles (ROWS=1, COLS=1) compile without barriers
        # but timed 2-3.5x slower at 56x56 on the H100 (same sweep), so they are opt-in via config.
        BD = min(16, max(1, _pow2(dim_g)))
        cfg = dict(BD=BD, BL=max(16, 1024 // BD), V=1, num_warps=4, CB=1, BDC=BD, TRANS=False, ROWS=0, COLS=0)
    # channel-first columns: vector loads along w need W and the h strides to be multiples too
    calign = _align(u, *others) if contiguous else 1
    cfg = dict(dict(ALIGN=align, CALIGN=calign, COLS=1, PREF=False, CFOLD=False, CVEC=1, ROWS=0, RUN=_run_length(H),
                    KR=max(1, min(HP, 512 // _row_width(W))), ROWW=W, RTAIL=False), **cfg)
    if config:
        cfg.update(config)
    if "BDC" not in cfg:
        cfg["BDC"] = min(cfg["BD"], max(1, 1024 // (HP * cfg["CB"])))
    if cfg["BD"] % cfg["BDC"] or cfg["BL"] % cfg["V"]:
        raise ValueError(f"BDC must divide BD and V must divide BL, got {cfg}")
    return cfg


def _channels_contiguous(u: Tensor) -> bool:
    """Are u's channels its contiguous axis (a channels-last map)? The tile sweeps load B/C by it
    (``_load_tie2``)."""
    return u.stride(2) == 1


def _kernel_chosen(config: Optional[dict], key: str, default) -> bool:
    """config[key] forces a kernel on or off; without a config its default rule decides; an explicit
    config without the key keeps the tile kernel."""
    if config is not None and key in config:
        return bool(config[key])
    return config is None and default()


def group_scan_4dir_triton(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                           D: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None,
                           delta_softplus: bool = True, *, out: Optional[Tensor] = None,
                           config: Optional[dict] = None) -> Tensor:
    """GroupMamba's fused 4-direction scan; same function and shapes as ``group_scan_4dir_torch``:

        u, delta      (batch, 4, d, H, W)  any strides (e.g. a channels-last (batch, H, W, 4, d)
                                            tensor permuted to this shape is read as such)
        A             (4, d, N)             negative
        B, C          (batch, 4, N, H, W)   any strides
        D, delta_bias (4, d)                optional
    Returns y (batch, 4, d, H, W) in u's dtype and u's memory order (``torch.empty_like`` keeps the
    order of u's strides, also where u is a view of a wider buffer), where group k
    is the selective scan along direction k (0 row-major, 1 column-major, 2 row-major reversed,
    3 column-major reversed), merged back into the row-major spatial layout. Arguments (``out``
    too: u's shape) are checked by ``check_group_scan_args`` (ValueError / TypeError naming the argument).
    """
    check_group_scan_args(u, delta, A, B, C, D, delta_bias, name="group_scan_4dir_triton")
    _check_out("group_scan_4dir_triton", out, u)
    _check_device(u)
    batch, groups, dim_g, H, W = u.shape
    n_state = B.shape[2]
    y = out if out is not None else torch.empty_like(u)
    # the unchecked kernels: the arguments are checked above
    from .triton_lookback import _group_scan_4dir_lookback_triton, lookback_default  # (they import this module)
    from .triton_plane import _group_scan_4dir_plane_triton, _plane_ok, plane_default
    from .triton_seq import _group_scan_4dir_seq_triton, seq_default
    from .triton_strips import _group_scan_4dir_strips_triton

    def chosen(key: str, default) -> bool:
        return _kernel_chosen(config, key, default)

    if config is not None and config.get("COLS_T") and (not config.get("LOOKBACK") or config.get("PLANE")):
        raise ValueError("COLS_T (groups 1 and 3 stored transposed) exists in the look-back kernel only: "
                         "pass LOOKBACK=1 with it")
    if chosen("SEQ", lambda: seq_default(u, n_state)):
        # a lane per channel walking the whole sequence (ssmzoo/ops/triton_seq.py): small channels-last maps
        return _group_scan_4dir_seq_triton(u, delta, A, B, C, D, delta_bias, delta_softplus, out=y, config=config)
    if chosen("STRIPS", lambda: False):
        # strips of channel-first planes scanned at once, states folded across strips (triton_strips.py)
        return _group_scan_4dir_strips_triton(u, delta, A, B, C, D, delta_bias, delta_softplus, out=y,
                                              config=config)
    if chosen("PLANE", lambda: plane_default(u, delta, B, C, y, n_state)):
        # whole planes per program (ssmzoo/ops/triton_plane.py): channel-first maps up to 16 x 16
        return _group_scan_4dir_plane_triton(u, delta, A, B, C, D, delta_bias, delta_softplus, out=y,
                                             config=config)
    if chosen("LOOKBACK", lambda: lookback_default(u, n_state)):
        # single-pass chained scan (ssmzoo/ops/triton_lookback.py)
        return _group_scan_4dir_lookback_triton(u, delta, A, B, C, D, delta_bias, delta_softplus, out=y,
                                                config=config)
    A_, D_, bias_ = _params(A, D, delta_bias, 4 * dim_g)
    flat = all(_flat_ok(t, H, W) for t in (u, delta, B, C, y))
    cfg = _group_config(u, (delta, y), flat, config)
    # row and column runs need contiguous planes everywhere (one offset tile for all operands) and one
    # state; elsewhere the flat and two-level sweeps run, with their own PREF default
    runs_ok = n_state == 1 and all(_plane_ok(t, H, W) for t in (u, delta, B, C, y))
    fell_back = False
    if cfg["COLS"] == 2 and not (runs_ok and cfg["BDC"] == 1):
        cfg["COLS"], fell_back = 1, True
    if cfg["ROWS"] == 2 and not runs_ok:
        cfg["ROWS"], fell_back = 0, True
    if fell_back and not (config and "PREF" in config):
        cfg["PREF"] = False
    runs = cfg["COLS"] == 2 or cfg["ROWS"] == 2
    row_w = cfg["ROWW"]  # the row runs see the plane as (H W / row_w, row_w): the same row-major sequence
    if (H * W) % row_w:
        raise ValueError(f"ROWW must divide H * W, got {row_w} for {H}x{W}")
    n_rows = H * W // row_w
    tail_rows = n_rows % cfg["KR"] if cfg["RTAIL"] else 0  # scanned as one block of their own first
    run_parts = _run_parts(cfg["RUN"])
    times = cfg.get("TIMES")  # a diagnostic: an int64 tensor of 3 per program (see _group4_kernel)
    grid = (triton.cdiv(dim_g, cfg["BD"]), 4, batch)
    if times is not None and times.numel() < 3 * math.prod(grid):
        raise ValueError(f"TIMES needs 3 int64 per program, {3 * math.prod(grid)} in all")
    _group4_kernel[grid](
        u, *u.stride(), delta, *delta.stride(), B, *B.stride(), C, *C.stride(), y, *y.stride(),
        A_, D_, bias_, dim_g, H, W, 0, y if times is None else times, TIMES=times is not None,
        NSTATE=n_state, NP=_pow2(n_state), BD=cfg["BD"], BL=cfg["BL"], V=cfg["V"], TRANS=cfg["TRANS"],
        ALIGN=cfg["ALIGN"], HP=_pow2(H), CB=cfg["CB"], BDC=cfg["BDC"], FLAT=flat,
        COLS=int(cfg["COLS"]), CALIGN=cfg["CALIGN"], PREF=int(cfg["PREF"]), CFOLD=bool(cfg["CFOLD"]) and int(cfg["PREF"]) == 2, ROWS=int(cfg["ROWS"]), WP=_pow2(W), RUN=run_parts[0],
        RUN2=run_parts[1], RUN3=run_parts[2], QR=_pow2(-(-H // cfg["RUN"])), EVEN=H % cfg["RUN"] == 0, WC=W if runs else 0, KR=cfg["KR"], WPR=_row_width(row_w), EVENR=(n_rows - tail_rows) % cfg["KR"] == 0,
        WR=row_w if runs else 0, TR=tail_rows, KTR=_pow2(tail_rows), CHANNELS_LAST=_channels_contiguous(u),
        HAS_D=D is not None, HAS_BIAS=delta_bias is not None,
        SOFTPLUS=bool(delta_softplus), num_warps=cfg["num_warps"], maxnreg=cfg.get("maxnreg"),
        CVEC=int(cfg["CVEC"]))
    return y


def group_scan_4dir_norm_gate_triton(u: Tensor, delta: Optional[Tensor], A: Tensor, B: Optional[Tensor],
                                     C: Optional[Tensor], D: Optional[Tensor], delta_bias: Optional[Tensor],
                                     delta_softplus: bool, norm_weight: Tensor, norm_bias: Tensor, eps: float,
                                     z: Tensor, *, x_proj: Optional[Tensor] = None,
                                     out_proj: Optional[Tensor] = None, out: Optional[Tensor] = None,
                                     config: Optional[dict] = None) -> Tensor:
    """GroupMamba's scan with what follows it in the mixer, ``group_scan_4dir_norm_gate_ref``'s function:
    y = the 4-direction scan (float32 in registers), each group's LayerNorm over its d channels (affine
    ``norm_weight``/``norm_bias`` (4, d)) rounded to z's dtype, times SiLU(z). z is (batch, 4, d, H, W)
    like u, any strides. Returns z's dtype in u's memory order. d_state 1, on the look-back kernel
    (``triton_lookback``), whose programs then hold whole groups.

    ``x_proj`` (4, d + 2, d): what precedes the scan too. delta, B and C (pass None) are then each
    group's x_proj of u (rows: delta with dt_proj folded in, B, C), computed in the kernel from the u
    tile it reads anyway (the weight in u's dtype, float32 accumulation), instead of read from a GEMM's
    output; needs launch tiles of at least 16 x 16 (``triton_lookback.WHOLE_GROUP_CONFIGS``).
    ``out_proj`` (4, d, d): and what follows: the result is each group's out_proj of the gated y
    (rounded to z's dtype as a GEMM's input, the weight in z's dtype, float32 accumulation).

    The scan's arguments are checked by ``check_group_scan_args``, the others (x_proj's and out_proj's
    shapes too) by ``_check_norm_gate_args`` (ValueError / TypeError naming the argument)."""
    name = "group_scan_4dir_norm_gate_triton"
    _check_group_kernel_args(name, "fused norm-gate scan", u, delta, A, B, C, D, delta_bias, out,
                             operands_optional=True)
    _check_norm_gate_args(name, u, delta, B, C, norm_weight, norm_bias, z, x_proj, out_proj)
    _check_device(u)
    from .triton_lookback import _group_scan_4dir_lookback_triton  # (it imports this module)
    from .triton_seq import _group_scan_4dir_seq_triton, seq_default

    y = out if out is not None else torch.empty_like(u, dtype=z.dtype)
    projections = x_proj is not None or out_proj is not None
    if _kernel_chosen(config, "SEQ", lambda: not projections and seq_default(u, 1)):
        if projections:
            raise ValueError("x_proj / out_proj in the scan exist in the look-back kernel only (drop SEQ)")
        return _group_scan_4dir_seq_triton(u, delta, A, B, C, D, delta_bias, delta_softplus, out=y, config=config,
                                           norm_gate=(norm_weight, norm_bias, eps, z))
    return _group_scan_4dir_lookback_triton(u, delta, A, B, C, D, delta_bias, delta_softplus, out=y,
                                            config=config, norm_gate=(norm_weight, norm_bias, eps, z), x_proj=x_proj,
                                            out_proj=out_proj)


def x_proj_operands(u: Tensor, x_proj: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """delta (batch, 4, d, H, W), B and C (batch, 4, 1, H, W): each group's x_proj (4, d + 2, d) of u,
    the weight rounded to u's dtype, products accumulated in float32 (float64 for float64)."""
    acc = torch.promote_types(u.dtype, torch.float32)
    out = torch.einsum("bgdhw,gcd->bgchw", u.to(acc), x_proj.to(u.dtype).to(acc))
    d = u.shape[2]
    return out[:, :, :d], out[:, :, d:d + 1], out[:, :, d + 1:]


# ---------------------------------------------------------------------------------------------
# Pure-PyTorch references of the fused ops (explicit flips / transposes around a plain scan)
# ---------------------------------------------------------------------------------------------

def group_scan_4dir_ref(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                        D: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None,
                        delta_softplus: bool = True, scan_fn=selective_scan_ref) -> Tensor:
    """The 4-direction group scan with explicit reorder copies around ``scan_fn`` (float64 by default).
    Arguments checked by ``check_group_scan_args`` (ValueError / TypeError naming the argument)."""
    check_group_scan_args(u, delta, A, B, C, D, delta_bias, name="group_scan_4dir_ref")
    batch, groups, dim_g, H, W = u.shape
    ys = []
    for k in range(groups):
        y = scan_fn(scan_order(u[:, k], k).contiguous(), scan_order(delta[:, k], k).contiguous(),
                    A[k], scan_order(B[:, k], k).contiguous(), scan_order(C[:, k], k).contiguous(),
                    D=None if D is None else D[k], delta_bias=None if delta_bias is None else delta_bias[k],
                    delta_softplus=delta_softplus)
        ys.append(merge_order(y, k, H, W))
    return torch.stack(ys, dim=1)


def group_scan_4dir_norm_gate_ref(u: Tensor, delta: Optional[Tensor], A: Tensor, B: Optional[Tensor],
                                  C: Optional[Tensor], D: Optional[Tensor], delta_bias: Optional[Tensor],
                                  delta_softplus: bool, norm_weight: Tensor, norm_bias: Tensor, eps: float, z: Tensor,
                                  x_proj: Optional[Tensor] = None, out_proj: Optional[Tensor] = None,
                                  scan_fn=selective_scan_ref) -> Tensor:
    """``group_norm_gate`` of ``group_scan_4dir_ref``'s y (float64 inputs: float64 throughout); with
    ``x_proj``, delta, B and C from ``x_proj_operands``; with ``out_proj``, each group's out_proj of
    that (weight rounded to z's dtype, accumulated in float32 / float64, rounded once). Arguments
    checked as ``group_scan_4dir_norm_gate_triton`` checks them (any d_state without x_proj)."""
    name = "group_scan_4dir_norm_gate_ref"
    check_group_scan_args(u, delta, A, B, C, D, delta_bias, name=name, operands_optional=x_proj is not None)
    _check_norm_gate_args(name, u, delta, B, C, norm_weight, norm_bias, z, x_proj, out_proj)
    if x_proj is not None and A.shape[2] != 1:
        raise ValueError(f"{name}: A has shape {tuple(A.shape)}; x_proj computes d_state 1: (4, d, 1)")
    if x_proj is not None:
        delta, B, C = x_proj_operands(u, x_proj)
    y = group_scan_4dir_ref(u, delta, A, B, C, D, delta_bias, delta_softplus, scan_fn=scan_fn)
    to_maps = lambda t: t.permute(0, 3, 4, 1, 2)  # noqa: E731  (b, 4, d, H, W) -> (b, H, W, 4, d)
    y = group_norm_gate(to_maps(y), norm_weight, norm_bias, eps, to_maps(z))
    if out_proj is not None:
        acc = torch.promote_types(y.dtype, torch.float32)
        y = torch.einsum("bhwgd,ged->bhwge", y.to(acc), out_proj.to(y.dtype).to(acc)).to(y.dtype)
    return y.permute(0, 3, 4, 1, 2)


def bimamba_scan_ref(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                     u_b: Tensor, delta_b: Tensor, A_b: Tensor, B_b: Tensor, C_b: Tensor,
                     D_b: Optional[Tensor], z: Optional[Tensor] = None,
                     delta_bias: Optional[Tensor] = None, delta_bias_b: Optional[Tensor] = None,
                     delta_softplus: bool = False, *, backward_flipped: bool = False,
                     scan_fn=selective_scan_ref) -> Tensor:
    """out = scan(u, ..., z) + flip(scan(flipped backward inputs, ..., z=flip(z))), as mamba_simple.py
    (bimamba v2) computes it; backward inputs are flipped first unless ``backward_flipped``."""
    def fl(t: Tensor) -> Tensor:
        return t if backward_flipped else t.flip(-1)

    y_f = scan_fn(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)
    y_b = scan_fn(fl(u_b), fl(delta_b), A_b, fl(B_b), fl(C_b), D=D_b,
                  z=None if z is None else z.flip(-1), delta_bias=delta_bias_b, delta_softplus=delta_softplus)
    return y_f + y_b.flip(-1)


register_backend("triton", _selective_scan_triton)  # selective_scan has checked the arguments


# ---------------------------------------------------------------------------------------------
# The fused kernels as PyTorch operators
# ---------------------------------------------------------------------------------------------
# torch.compile treats a custom op as one opaque node with a known output shape (the fake
# functions below), instead of tracing into the launch code (host-side stride and alignment checks,
# Triton's launcher), so the models compile as one graph around the scans.


def _stride_order_tags() -> dict:
    """``custom_op`` keyword arguments that let Inductor hand the GroupMamba operators inputs whose
    strides it padded, as long as the dimensions keep their order (``needs_fixed_stride_order``).
    PyTorch's default for custom operators (``needs_exact_strides``) copies such an input back to
    the strides of the eager trace. The kernels read any strides. Measured on the H100 with the
    depthwise-conv op inside the compiled GroupMamba-T: 6,374 img/s against 5,829 with the default
    constraint (session 15, one machine, Inductor caches off; docs/gpu_runs/bench_s15_dwconv_op.txt).
    Older PyTorch without the tag or the argument: no tags, the default."""
    import inspect

    tag = getattr(torch.Tag, "needs_fixed_stride_order", None)
    if tag is None or "tags" not in inspect.signature(torch.library.custom_op).parameters:
        return {}
    return {"tags": (tag,)}


STRIDE_ORDER_TAGS = _stride_order_tags()


@torch.library.custom_op("ssmzoo::group_scan_4dir", mutates_args=(), **STRIDE_ORDER_TAGS)
def group_scan_4dir_op(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                       D: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None,
                       delta_softplus: bool = True, out_dtype: Optional[torch.dtype] = None) -> Tensor:
    """``group_scan_4dir_triton`` as the operator ``torch.ops.ssmzoo.group_scan_4dir``; y in
    ``out_dtype`` (default u's dtype), laid out like u."""
    return group_scan_4dir_triton(u, delta, A, B, C, D=D, delta_bias=delta_bias, delta_softplus=delta_softplus,
                                  out=_group_scan_4dir_fake(u, delta, A, B, C, out_dtype=out_dtype))


@group_scan_4dir_op.register_fake
def _group_scan_4dir_fake(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True, out_dtype=None):
    return torch.empty_like(u, dtype=out_dtype or u.dtype)


@torch.library.custom_op("ssmzoo::group_scan_4dir_norm_gate", mutates_args=(), **STRIDE_ORDER_TAGS)
def group_scan_4dir_norm_gate_op(u: Tensor, delta: Optional[Tensor], A: Tensor, B: Optional[Tensor],
                                 C: Optional[Tensor], D: Optional[Tensor], delta_bias: Optional[Tensor],
                                 delta_softplus: bool, norm_weight: Tensor, norm_bias: Tensor, eps: float,
                                 z: Tensor, pad: int = 0, x_proj: Optional[Tensor] = None,
                                 out_proj: Optional[Tensor] = None) -> Tensor:
    """``group_scan_4dir_norm_gate_triton`` as the operator ``torch.ops.ssmzoo.group_scan_4dir_norm_gate``,
    in the layout GroupMamba's out_proj reads: (batch, H, W, 4 * d + pad), channels-last, the last
    ``pad`` channels zeros (a GEMM input widened to aligned rows without a copy); with ``out_proj``,
    out_proj's output in the same layout."""
    wide = _group_scan_4dir_norm_gate_fake(u, delta, A, B, C, D, delta_bias, delta_softplus, norm_weight,
                                           norm_bias, eps, z, pad, x_proj, out_proj)
    batch, groups, dim_g, H, W = u.shape
    if pad:
        wide[..., groups * dim_g:].zero_()
    out = wide[..., :groups * dim_g].unflatten(-1, (groups, dim_g)).permute(0, 3, 4, 1, 2)
    group_scan_4dir_norm_gate_triton(u, delta, A, B, C, D, delta_bias, delta_softplus, norm_weight, norm_bias,
                                     eps, z, x_proj=x_proj, out_proj=out_proj, out=out)
    return wide


@group_scan_4dir_norm_gate_op.register_fake
def _group_scan_4dir_norm_gate_fake(u, delta, A, B, C, D, delta_bias, delta_softplus, norm_weight, norm_bias,
                                    eps, z, pad=0, x_proj=None, out_proj=None):
    batch, groups, dim_g, H, W = u.shape
    return u.new_empty(batch, H, W, groups * dim_g + pad, dtype=z.dtype)


@torch.library.custom_op("ssmzoo::bimamba_scan", mutates_args=())
def bimamba_scan_op(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                    u_b: Tensor, delta_b: Tensor, A_b: Tensor, B_b: Tensor, C_b: Tensor,
                    D_b: Optional[Tensor], z: Optional[Tensor] = None,
                    delta_bias: Optional[Tensor] = None, delta_bias_b: Optional[Tensor] = None,
                    delta_softplus: bool = False, backward_flipped: bool = False) -> Tensor:
    """The bimamba scan as the operator ``torch.ops.ssmzoo.bimamba_scan``: the sequential kernel of
    ``triton_bimamba`` (4-6x faster than ``bimamba_scan_triton`` on VideoMamba-S image shapes on an
    H100, docs/gpu_runs/bimamba_seq.txt), split along the sequence where batch x channels alone are
    too few threads (VideoMamba-S 16-frame video: 3-4x faster than one segment,
    docs/gpu_runs/bimamba_split.txt); same function."""
    from .triton_bimamba import bimamba_scan_split_triton

    return bimamba_scan_split_triton(u, delta, A, B, C, D, u_b, delta_b, A_b, B_b, C_b, D_b, z=z,
                                     delta_bias=delta_bias, delta_bias_b=delta_bias_b,
                                     delta_softplus=delta_softplus, backward_flipped=backward_flipped)


@bimamba_scan_op.register_fake
def _bimamba_scan_fake(u, delta, A, B, C, D, u_b, delta_b, A_b, B_b, C_b, D_b, z=None, delta_bias=None,
                       delta_bias_b=None, delta_softplus=False, backward_flipped=False):
    return _new_like_seq(u, u.dtype)
