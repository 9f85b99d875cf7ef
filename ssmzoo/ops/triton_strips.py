"""GroupMamba's 4-direction scan (d_state 1) on channel-first maps: one pass over strips of each plane.

Why another kernel: on channel-first maps every (batch, group, channel) plane is one contiguous H x W
block, so unlike channels-last maps nothing forces a scattered access pattern; the tile kernel of
``triton_scan`` still gives each plane to one one-warp program that walks it chunk by chunk with one
chunk's loads in flight (Nsight Compute on the H100, docs/gpu_runs/s25_run1.txt: 51% of DRAM
bandwidth at 56x56, 22% occupancy for its registers, ~88 instructions per element). Here a plane is
cut into NSEG strips that separate programs scan at once, each loading its whole tile up front, as an
elementwise kernel does:

* rows (groups 0 and 2, row-major and reversed): a strip is SEG consecutive positions, a 1-D scan;
* columns (groups 1 and 3): a strip is KC whole columns, loaded as an (HP, KC) tile with the
  columns' elements contiguous along w (32-byte and wider pieces of each row); scanned along h inside
  each column, and the column totals across the KC columns (``_combine_x``: the exclusive prefix gives
  each column's entering state), as ``triton_scan._sweep_cols2`` does.

A strip needs the state entering it. Programs take tickets chain by chain (a chain is one plane's
strips in scan order), so the strips of one plane run at the same time and read one contiguous block
of memory together. Each publishes its aggregate (the strip's decay product and state from h = 0)
with a release flag as soon as its tile is scanned, then folds *all* its predecessors' aggregates in
a fixed order (an ``associative_scan`` over at most NSEG of them). Nobody waits on an inclusive state,
so strips of a plane do not run one after the other; and the sum is the same whatever the timing,
so every call gives the same bits (the property the chained look-back of ``triton_lookback`` was
chosen for). A predecessor has a smaller ticket, so it has started and publishes without waiting:
no deadlock whatever the scheduling.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

import triton
import triton.language as tl

from .triton_plane import _plane_ok
from .triton_scan import (_align, _channel_params, _check_device, _check_group_kernel_args, _combine, _combine_x,
                          _params, _pow2, _step_delta, _updated_config)

__all__ = ["group_scan_4dir_strips_triton", "strips_config", "strips_fit"]

TILE = 512        # elements per strip (rows: SEG; columns: HP x KC), the launch default
DEFAULT_WARPS = 2


@triton.jit
def _fold_predecessors(agg_ptr, flag_ptr, base, seg, p_end, h_end, NSEG_P: tl.constexpr):
    """Publishes this strip's aggregate (p_end, h_end) and returns the state entering it: the
    composition of strips 0..seg-1's aggregates, in order (identity for strip 0)."""
    tl.store(agg_ptr + 2 * (base + seg), p_end)
    tl.store(agg_ptr + 2 * (base + seg) + 1, h_end)
    tl.debug_barrier()  # every thread's stores precede the release of the flag
    tl.atomic_xchg(flag_ptr + base + seg, 1, sem="release")
    k = 0
    while k < seg:  # (predecessors publish without waiting: these spins end)
        flag = tl.atomic_add(flag_ptr + base + k, 0, sem="acquire")
        while flag == 0:
            flag = tl.atomic_add(flag_ptr + base + k, 0, sem="acquire")
        k += 1
    j = tl.arange(0, NSEG_P)
    before = j < seg
    pj = tl.load(agg_ptr + 2 * (base + j), mask=before, other=1.0, cache_modifier=".cg")
    hj = tl.load(agg_ptr + 2 * (base + j) + 1, mask=before, other=0.0, cache_modifier=".cg")
    _, hs = tl.associative_scan((pj, hj), axis=0, combine_fn=_combine)
    return tl.sum(tl.where(j == seg - 1, hs, 0.0))


@triton.jit
def _row_strip(u_ptr, dt_ptr, b_ptr, c_ptr, y_ptr, A2, Dv, bias, agg_ptr, flag_ptr, base, seg, L,
               SEG: tl.constexpr, NSEG_P: tl.constexpr, REV: tl.constexpr, HAS_BIAS: tl.constexpr,
               SOFTPLUS: tl.constexpr):
    """Strip ``seg`` of a row-major scan (REV: reversed) of one plane: SEG consecutive positions,
    loaded in ascending order (REV scans them backwards)."""
    if REV:
        p0 = L - (seg + 1) * SEG
    else:
        p0 = seg * SEG
    idx = tl.arange(0, SEG)
    p = p0 + idx
    pmask = (p >= 0) & (p < L)
    u = tl.load(u_ptr + p, mask=pmask, other=0.0).to(tl.float32)
    dt = tl.load(dt_ptr + p, mask=pmask, other=0.0).to(tl.float32)
    bt = tl.load(b_ptr + p, mask=pmask, other=0.0).to(tl.float32)
    ct = tl.load(c_ptr + p, mask=pmask, other=0.0).to(tl.float32)
    dt = _step_delta(dt, bias, pmask, HAS_BIAS, SOFTPLUS)  # padding: a = 1, b = 0 (identity steps)
    P, hl = tl.associative_scan((tl.exp2(dt * A2), dt * u * bt), axis=0, combine_fn=_combine, reverse=REV)
    if REV:
        end = idx == 0
    else:
        end = idx == SEG - 1
    h_in = _fold_predecessors(agg_ptr, flag_ptr, base, seg, tl.sum(tl.where(end, P, 0.0)),
                              tl.sum(tl.where(end, hl, 0.0)), NSEG_P)
    y = ct * (hl + P * h_in) + Dv * u
    tl.store(y_ptr + p, y.to(y_ptr.dtype.element_ty), mask=pmask)


@triton.jit
def _column_strip(u_ptr, dt_ptr, b_ptr, c_ptr, y_ptr, A2, Dv, bias, agg_ptr, flag_ptr, base, seg, H, W,
                  HP: tl.constexpr, KC: tl.constexpr, NSEG_P: tl.constexpr, ALIGN: tl.constexpr,
                  REV: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """Strip ``seg`` of a column-major scan (REV: reversed) of one plane: KC whole columns as an
    (HP, KC) tile. ALIGN (host-checked, ``triton_scan._align``: W a multiple of it) lets the rows'
    pieces load as vectors."""
    if ALIGN > 1:
        W = (W // ALIGN) * ALIGN  # (exact; tells the compiler the rows' alignment)
    if REV:
        w0 = W - (seg + 1) * KC
    else:
        w0 = seg * KC
    hi = tl.arange(0, HP)
    wi = tl.arange(0, KC)
    w = w0 + wi
    mask = (hi[:, None] < H) & (w[None, :] >= 0) & (w[None, :] < W)
    off = hi[:, None] * W + w[None, :]
    u = tl.load(u_ptr + off, mask=mask, other=0.0).to(tl.float32)
    dt = tl.load(dt_ptr + off, mask=mask, other=0.0).to(tl.float32)
    bt = tl.load(b_ptr + off, mask=mask, other=0.0).to(tl.float32)
    ct = tl.load(c_ptr + off, mask=mask, other=0.0).to(tl.float32)
    dt = _step_delta(dt, bias, mask, HAS_BIAS, SOFTPLUS)
    # (1) down (REV: up) each column from h = 0: local state hl, decay product Ap
    Ap, hl = tl.associative_scan((tl.exp2(dt * A2), dt * u * bt), axis=0, combine_fn=_combine, reverse=REV)
    if REV:
        last_h = 0
        last_w = 0
    else:
        last_h = HP - 1
        last_w = KC - 1
    ae = tl.sum(tl.where(hi[:, None] == last_h, Ap, 0.0), axis=0)   # (KC,) column totals (padding
    be = tl.sum(tl.where(hi[:, None] == last_h, hl, 0.0), axis=0)   # rows and columns: identity)
    # (2) across the columns: inclusive totals and each column's exclusive prefix
    Pi, Hi, ea, eb = tl.associative_scan((ae, be, tl.full(ae.shape, 1.0, tl.float32), tl.zeros_like(be)),
                                         axis=0, combine_fn=_combine_x, reverse=REV)
    h_in = _fold_predecessors(agg_ptr, flag_ptr, base, seg, tl.sum(tl.where(wi == last_w, Pi, 0.0)),
                              tl.sum(tl.where(wi == last_w, Hi, 0.0)), NSEG_P)
    # (3) each column's entering state, and the states themselves
    y = ct * (hl + Ap * (ea * h_in + eb)[None, :]) + Dv * u
    tl.store(y_ptr + off, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _group4_strips_kernel(u_ptr, su_b, su_g, su_c, dt_ptr, sdt_b, sdt_g, sdt_c, b_ptr, sb_b, sb_g,
                          c_ptr, sc_b, sc_g, y_ptr, sy_b, sy_g, sy_c, A_ptr, D_ptr, bias_ptr,
                          agg_ptr, flag_ptr, ticket_ptr, dim_g, H, W, L, NSEG, NSEG_ROWS, NSEG_COLS,
                          SEG: tl.constexpr, HP: tl.constexpr, KC: tl.constexpr, NSEG_P: tl.constexpr,
                          ALIGN: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
                          SOFTPLUS: tl.constexpr):
    """Grid: one program per (chain, strip); a chain is one (batch, group, channel) plane."""
    ticket = tl.atomic_add(ticket_ptr, 1)
    chain = ticket // NSEG
    seg = ticket % NSEG
    c = chain % dim_g
    g = (chain // dim_g) % 4
    bb = (chain // (dim_g * 4)).to(tl.int64)
    gc = g * dim_g + c
    A2, Dv, bias = _channel_params(A_ptr, D_ptr, bias_ptr, gc, HAS_D, HAS_BIAS)
    u0 = u_ptr + bb * su_b + g * su_g + c * su_c
    dt0 = dt_ptr + bb * sdt_b + g * sdt_g + c * sdt_c
    b0 = b_ptr + bb * sb_b + g * sb_g
    c0 = c_ptr + bb * sc_b + g * sc_g
    y0 = y_ptr + bb * sy_b + g * sy_g + c * sy_c
    base = chain * NSEG
    if g % 2 == 0:
        if seg < NSEG_ROWS:
            if g == 0:
                _row_strip(u0, dt0, b0, c0, y0, A2, Dv, bias, agg_ptr, flag_ptr, base, seg, L,
                           SEG, NSEG_P, False, HAS_BIAS, SOFTPLUS)
            else:
                _row_strip(u0, dt0, b0, c0, y0, A2, Dv, bias, agg_ptr, flag_ptr, base, seg, L,
                           SEG, NSEG_P, True, HAS_BIAS, SOFTPLUS)
    elif seg < NSEG_COLS:
        if g == 1:
            _column_strip(u0, dt0, b0, c0, y0, A2, Dv, bias, agg_ptr, flag_ptr, base, seg, H, W,
                          HP, KC, NSEG_P, ALIGN, False, HAS_BIAS, SOFTPLUS)
        else:
            _column_strip(u0, dt0, b0, c0, y0, A2, Dv, bias, agg_ptr, flag_ptr, base, seg, H, W,
                          HP, KC, NSEG_P, ALIGN, True, HAS_BIAS, SOFTPLUS)


def strips_fit(u: Tensor, others: tuple, n_state: int) -> bool:
    """Whether the strip kernel can run: d_state 1 and every plane (u, delta, B, C, y) one
    contiguous row-major H x W block (channel-first maps)."""
    H, W = u.shape[-2:]
    return n_state == 1 and all(_plane_ok(t, H, W) for t in (u, *others))


def strips_config(H: int, W: int, config: Optional[dict] = None) -> dict:
    """KC columns of HP = H rounded up to a power of 2 per column strip, SEG positions per row strip,
    both about TILE elements and with about as many strips per plane (a chain's strip count is the
    larger of the two), num_warps."""
    HP = _pow2(H)
    KC = max(1, min(_pow2(W), TILE // HP))
    n_cols = triton.cdiv(W, KC)
    SEG = max(16, _pow2(triton.cdiv(H * W, n_cols)))
    return _updated_config(dict(SEG=SEG, KC=KC, num_warps=DEFAULT_WARPS), config, ("SEG", "KC"))


def group_scan_4dir_strips_triton(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                                  D: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None,
                                  delta_softplus: bool = True, *, out: Optional[Tensor] = None,
                                  config: Optional[dict] = None) -> Tensor:
    """``group_scan_4dir_triton``'s function and signature on the strip kernel (channel-first maps
    whose planes are contiguous, d_state 1; ``strips_fit``).

    Arguments checked as ``group_scan_4dir_triton`` checks them (``check_group_scan_args``, ``out`` too)
    and d_state 1, each mistake a ValueError / TypeError naming the argument; ``group_scan_4dir_triton``
    runs ``_group_scan_4dir_strips_triton``, which skips the checks it has made."""
    name = "group_scan_4dir_strips_triton"
    _check_group_kernel_args(name, "strip kernel", u, delta, A, B, C, D, delta_bias, out)
    _check_device(u)
    return _group_scan_4dir_strips_triton(u, delta, A, B, C, D, delta_bias, delta_softplus, out=out, config=config)


def _group_scan_4dir_strips_triton(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                                   D: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None,
                                   delta_softplus: bool = True, *, out: Optional[Tensor] = None,
                                   config: Optional[dict] = None) -> Tensor:
    """``group_scan_4dir_strips_triton`` on arguments already checked (by ``group_scan_4dir_triton``)."""
    batch, groups, dim_g, H, W = u.shape
    y = out if out is not None else torch.empty_like(u)
    if groups != 4 or not strips_fit(u, (delta, B, C, y), B.shape[2]):
        raise ValueError("the strip kernel takes 4 groups, d_state 1 and contiguous H x W planes")
    cfg = strips_config(H, W, config)
    seg, kc, hp = cfg["SEG"], cfg["KC"], _pow2(H)
    L = H * W
    nseg_rows, nseg_cols = triton.cdiv(L, seg), triton.cdiv(W, kc)
    nseg = max(nseg_rows, nseg_cols)
    n_chains = batch * 4 * dim_g
    A_, D_, bias_ = _params(A, D, delta_bias, 4 * dim_g)
    flags = torch.zeros(n_chains * nseg + 1, dtype=torch.int32, device=u.device)  # + the ticket counter
    aggregates = torch.empty(n_chains * nseg * 2, dtype=torch.float32, device=u.device)
    _group4_strips_kernel[(n_chains * nseg,)](
        u, u.stride(0), u.stride(1), u.stride(2), delta, delta.stride(0), delta.stride(1), delta.stride(2),
        B, B.stride(0), B.stride(1), C, C.stride(0), C.stride(1), y, y.stride(0), y.stride(1), y.stride(2),
        A_, D_, bias_, aggregates, flags, flags[n_chains * nseg:], dim_g, H, W, L, nseg, nseg_rows, nseg_cols,
        SEG=seg, HP=hp, KC=kc, NSEG_P=max(2, _pow2(nseg)), ALIGN=_align(u, delta, B, C, y), HAS_D=D is not None,
        HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(delta_softplus), num_warps=cfg["num_warps"])
    return y
