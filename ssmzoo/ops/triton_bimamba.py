"""VideoMamba's bidirectional scan as a *sequential* Triton kernel (states in registers).

``bimamba_scan_seq_triton`` has exactly the signature and function of
``ssmzoo.ops.triton_scan.bimamba_scan_triton`` (see ``bimamba_scan_ref``): forward and backward
directions, each with its own u/delta/A/B/C/D (the backward one in token order or, with
``backward_flipped``, already flipped), out = (y_f + y_b) * silu(z), float32 accumulation.

Why another kernel: with d_state 16 the scan is compute-bound (2 directions x 16 states = 32 exp2 per
element on the MUFU units). The chunked kernel of ``triton_scan`` spends its time in per-state
``tl.associative_scan`` shuffles; here there is no scan across lanes at all:

* one program owns BD channels of one (batch, group); each channel's NP (= next power of 2 >= N)
  states are split over SPLIT lanes, S_IN = NP / SPLIT states per thread, held in registers as a
  (G, V, SPLIT, BD) tile (see ``_sweep``; lanes along the channels, so channels-last rows coalesce);
* the program walks the sequence one step at a time (h = exp2(dt A log2 e) h + dt u B_t), first the
  backward direction (its ungated partial y, float32, goes to an accumulator: ``out`` itself when it
  is float32), then the forward one, which adds the partial, applies the gate and stores;
* steps go in blocks of SPLIT: a block's per-channel operands are (1, 1, SPLIT, BD) *step tiles*, lane
  s of a channel holding step k + s, so the per-channel work (loads of u, dt, z and the partial,
  softplus, dt u, D u, the gate, the store) is done once per channel-step, by one lane, and each step
  hands dt and dt u to the channel's other lanes through one shuffle each (``_lane_pick``). Before
  session 23 every lane of a channel repeated it for its S_IN states: on the VideoMamba-S shapes, bf16
  with the tokens contiguous (SPLIT 4), the scan took 874 -> 534 us (image) and 1,250 -> 772 us
  (video) with the step tiles (H100, docs/gpu_runs/s23_run1.txt);
* y_t = sum_n h_n C_t,n is an in-thread sum over S_IN states plus log2(SPLIT) shuffles;
* the step tiles of the next block and each next step's B_t / C_t do not depend on the recurrence and
  are loaded ahead (software prefetch), so their latency overlaps the arithmetic; on split sequences
  with one lane per channel B_t / C_t are instead loaded at their step (``BC_AHEAD`` off, see
  ONE_LANE_SPLIT_CONFIG): the 32 registers they held bought more warps per SM, which hid more;
* UNROLL blocks per loop iteration (default 2) let the compiler overlap consecutive steps' chains;
* softplus, the gate's exponential and reciprocal run on the MUFU units (ex2 / lg2 / rcp.approx via
  inline PTX when compiled, ``FAST``).

Compiled for sm_90 (benchmarks/bimamba_seq.py --aot, Triton 3.6 and 3.8), SPLIT 4: no barriers or
shared memory in the step loops, only the lane exchanges and log2(SPLIT) butterfly shuffles per step
for the state sum, B/C as 16-byte loads, ~64-70 registers; SPLIT 1: ~120-140 registers, no spills, and
on Triton 3.6 layout conversions of the B/C tiles in the loop that measured faster than none (see
``permute_tile_loads``).

SPLIT trades parallelism for cross-lane traffic: SPLIT = 1 gives only batch x dim threads (6144 for
the VideoMamba-S video case in one segment: ~1.5 warps per SM; the split kernel below adds segments);
SPLIT = 4 gives 4x the threads, at two shuffles per step for the lane exchanges and two for the sum.

B/C packing (``PACK``, default on): B and C of each direction are copied (a few MB) into one float32
(batch, groups, L, 2 NP) buffer in scan order, so a step's B_t and C_t are 2 NP contiguous floats
(vector loads; the backward direction then reads them by step, flipped or not). With ``PACK=False``
the kernel reads B/C through their strides.

Inputs may be arbitrary strided views (strides are kernel arguments); the kernel also runs under
``TRITON_INTERPRET=1`` on CPU tensors.

``bimamba_scan_split_triton`` (end of the file; the models' path through ``torch.ops.ssmzoo.bimamba_scan``)
is the same function with the sequence split into segments run by different programs (three launches)
where batch x dim gives too few threads (VideoMamba video: 2.96-4.3x faster than one segment on an
H100), and the sequential kernel itself (one segment) elsewhere.
"""

from __future__ import annotations

import re
from typing import Optional

import torch
from torch import Tensor

import triton
import triton.language as tl

from .triton_math import exp2_fma, mufu
from .triton_scan import _bimamba_operands, _check_device, _interpreting, _pow2, check_bimamba_args

__all__ = ["bimamba_scan_seq_triton", "seq_config", "bimamba_scan_split_triton", "split_config", "layout_flags"]


@triton.jit
def _softplus(x, FAST: tl.constexpr):
    # log(1 + e^x) = ln 2 * log2(1 + 2^(x log2 e)): two MUFU ops
    return tl.where(x <= 20.0, mufu(1.0 + tl.exp2(x * 1.4426950408889634), "lg2", FAST) * 0.6931471805599453, x)


def _triton_version() -> tuple[int, int]:
    major, minor = (int(x) for x in re.findall(r"\d+", triton.__version__)[:2])
    return major, minor


def permute_tile_loads(split: int, one_segment: bool) -> bool:
    """Whether the state tiles are loaded through the permuted view (``_load_tile``'s PERM) with SPLIT
    lanes per channel, in the output phase of a scan in one segment (``one_segment``) or in both
    phases of a split one; a config's PERM (both phases), PERM_STATE or PERM_OUT overrides it.

    The state tiles' loads (A, initial states, B_t / C_t) are contiguous along V (4 states) and, in
    the (G, V, SPLIT, BD) order, tie in contiguity along G and BD. Triton's coalescing pass orders tied
    dims by index before 3.7 and in reverse from 3.7 on, so the two versions lay those loads out
    differently, and where that layout differs from the one the step loop's other operands settle on,
    Triton converts it inside the loop. Loading through a (BD, G, SPLIT, V) view flips the tie.

    * SPLIT > 1 (the lane exchanges of ``_lane_pick`` anchor the step tiles' layout): SASS per 2 steps
      (``benchmarks/bimamba_seq.py --aot``, VideoMamba-S, bf16, session 23) on Triton 3.6 without the
      view: output phase 83 / 86 instructions (backward / forward sweep), state phase 58, with only
      the 8 shuffles of the lane exchanges and the sum over lanes; with it 102 / 108 and 67, with 26 /
      13. Triton 3.8 the reverse (86 / 91 and 59 with the view). On the H100 (Triton 3.6, image, SPLIT
      4): 445 us without the view, 624 us with it (docs/gpu_runs/s23_run3.txt).
    * SPLIT 1 (one lane per channel), split into segments (the models' video path): without the view,
      on the H100 (Triton 3.6, video, s23_run3.txt) bf16 741.6 us, float32 773.2 us; with it in both
      phases 844.7 / 874.2, in the output phase only 764.2 / 802.8. Not what the SASS counts predict:
      with the view the loop has no layout conversions (output phase 248 / 281 instructions, state
      phase 188), without it 424 / 460 and 209 with shuffles and barriers, but each lane then loads
      only its share of B_t / C_t (the conversion spreads it) instead of all 2 NP floats.
    * SPLIT 1 in one segment (image, float32; bf16 images run SPLIT 4): with the view 505-507 us,
      without it 554 us (s23_run2.txt, s23_run3.txt, s23_run4.txt), as the SASS counts predict.
    * Triton 3.8 builds SPLIT 1 without the view with no conversions (256 / 289 and 188): no view.
    """
    if split > 1:
        return _triton_version() >= (3, 7)
    return one_segment and _triton_version() < (3, 7)


@triton.jit
def _load_tile(ptrs, mask, HAS_MASK: tl.constexpr, PERM: tl.constexpr):
    """tl.load of a (G, V, SPLIT, BD) state tile, through the permuted view with PERM (see
    permute_tile_loads)."""
    if PERM:
        ptrs = tl.permute(ptrs, (3, 0, 2, 1))
        if HAS_MASK:
            mask = tl.permute(mask, (3, 0, 2, 1))
    if HAS_MASK:
        r = tl.load(ptrs, mask=mask, other=0.0)
    else:
        r = tl.load(ptrs)
    if PERM:
        r = tl.permute(r, (1, 3, 2, 0))
    return r


@triton.jit
def _bcast(v):
    """(BD,) per-channel vector -> (1, 1, 1, BD), broadcastable against the state tile."""
    return v[None, None, None, :]


@triton.jit
def _decay(x, poly, POLY: tl.constexpr):
    """2^x per state of the tile: where ``poly`` (a state mask, see ``_tile_index``) on the FMA pipe
    (``exp2_fma``), the rest on the MUFU unit. Where the step loop is bound by the MUFU pipe, moving a
    few exponentials off it balances the two. POLY: whether any state is on the FMA pipe."""
    if POLY:
        r = tl.where(poly, exp2_fma(x), tl.exp2(x))
    else:
        r = tl.exp2(x)
    return r


@triton.jit
def _indices(k, L, REV: tl.constexpr, U_STEP: tl.constexpr, BC_STEP: tl.constexpr):
    """Step k's token p (L - 1 - k with REV) and the indices u/delta (k if U_STEP else p) and B/C
    (k if BC_STEP else p) are read at."""
    if REV:
        p = L - 1 - k
    else:
        p = k
    if U_STEP:
        iu = k
    else:
        iu = p
    if BC_STEP:
        ib = k
    else:
        ib = p
    return p, iu, ib


@triton.jit
def _lane_pick(t, j: tl.constexpr):
    """Step j of a (1, 1, SPLIT, BD) step tile, broadcast along the SPLIT axis: each channel's SPLIT
    lanes exchange their values (one shuffle each) instead of all computing the same step."""
    if t.shape[2] == 1:
        r = t
    else:
        r = tl.gather(t, tl.full(t.shape, j, tl.int32), axis=2)
    return r


@triton.jit
def _step_dt(dt_q, u_q, k, k1, sp, bias4, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, FAST: tl.constexpr):
    """A block's step tile of dt (bias, softplus) and dt u, one element per lane; steps past the
    segment (k + sp >= k1) get dt = 0: no decay, no input, so the block needs no other mask."""
    dt = dt_q.to(tl.float32)
    if HAS_BIAS:
        dt = dt + bias4
    if SOFTPLUS:
        dt = _softplus(dt, FAST)
    dt = tl.where(k + sp < k1, dt, 0.0)
    return dt, dt * u_q.to(tl.float32)


@triton.jit
def _out_block(k, k1, L, h, b_n, c_n, u_q, dt_q, z_q, a_q, sp, u_ptr, ru4, su_l, dt_ptr, rdt4, sdt_l,
               b_ptr, c_ptr, offn, nmask, sb_l, z_ptr, rz4, sz_l, y_ptr, acc_ptr, ry4, rya4, sy_l,
               cmask4, A2, D4, bias4, poly, REV: tl.constexpr, U_STEP: tl.constexpr, BC_STEP: tl.constexpr,
               HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, HAS_Z: tl.constexpr,
               ACC_IN: tl.constexpr, ACC_OUT: tl.constexpr, BC_MASK: tl.constexpr, FAST: tl.constexpr,
               PERM: tl.constexpr, POLY: tl.constexpr, BC_AHEAD: tl.constexpr):
    """Steps k .. k + SPLIT - 1 (a block) of one direction, with the step tiles (u_q, dt_q, z_q, a_q:
    (1, 1, SPLIT, BD), lane s holding step k + s) and, with BC_AHEAD, step k's B/C tiles loaded
    before; loads the next block's step tiles and, step by step, the next step's B/C (BC_AHEAD) or
    each step's own B/C at that step.

    Per-channel work (softplus, dt u, D u, the partial, the gate, the store) is done once per
    channel-step by the lane that holds the step, not by all SPLIT lanes of the channel; only the
    state update and the sum over states run per step on every lane."""
    Q: tl.constexpr = sp.shape[2]
    dt, dtu = _step_dt(dt_q, u_q, k, k1, sp, bias4, HAS_BIAS, SOFTPLUS, FAST)
    p, _, _ = _indices(k + sp, L, REV, U_STEP, BC_STEP)
    smask = cmask4 & (k + sp < k1)
    yq = tl.zeros_like(dt)
    if HAS_D:
        yq = D4 * u_q.to(tl.float32)
    if ACC_IN:
        yq += a_q
    if HAS_Z:
        zz = z_q.to(tl.float32)
        gate = zz * mufu(1.0 + mufu(zz * -1.4426950408889634, "ex2", FAST), "rcp", FAST)
    # prefetch the next block's step tiles (clamped to the last step: past it, unused)
    pn, iun, _ = _indices(tl.minimum(k + Q + sp, L - 1), L, REV, U_STEP, BC_STEP)
    u_q = tl.load(u_ptr + ru4 + iun * su_l)
    dt_q = tl.load(dt_ptr + rdt4 + iun * sdt_l)
    if HAS_Z:
        z_q = tl.load(z_ptr + rz4 + pn * sz_l)
    if ACC_IN:
        a_q = tl.load(acc_ptr + rya4 + pn * sy_l)
    for j in tl.static_range(Q):
        if BC_AHEAD:  # step j's B/C were loaded a step ahead; load step j + 1's
            bt = b_n.to(tl.float32)
            ct = c_n.to(tl.float32)
            _, _, ib1 = _indices(tl.minimum(k + j + 1, L - 1), L, REV, U_STEP, BC_STEP)
            b_n = _load_tile(b_ptr + offn + ib1 * sb_l, nmask, BC_MASK, PERM)
            c_n = _load_tile(c_ptr + offn + ib1 * sb_l, nmask, BC_MASK, PERM)
        else:  # at their step: fewer live registers, the latency left to other warps
            _, _, ibj = _indices(tl.minimum(k + j, L - 1), L, REV, U_STEP, BC_STEP)
            bt = _load_tile(b_ptr + offn + ibj * sb_l, nmask, BC_MASK, PERM).to(tl.float32)
            ct = _load_tile(c_ptr + offn + ibj * sb_l, nmask, BC_MASK, PERM).to(tl.float32)
        h = _decay(_lane_pick(dt, j) * A2, poly, POLY) * h + _lane_pick(dtu, j) * bt
        y = tl.sum(tl.sum(tl.sum(h * ct, axis=0, keep_dims=True), axis=1, keep_dims=True), axis=2,
                   keep_dims=True)
        yq = tl.where(sp == j, yq + y, yq)
    if ACC_OUT:
        tl.store(acc_ptr + ry4 + p * sy_l, yq, mask=smask)
    else:
        if HAS_Z:
            yq = yq * gate
        tl.store(y_ptr + ry4 + p * sy_l, yq.to(y_ptr.dtype.element_ty), mask=smask)
    return h, b_n, c_n, u_q, dt_q, z_q, a_q


@triton.jit
def _state_block(k, k1, L, h, dsum, b_n, u_q, dt_q, sp, u_ptr, ru4, su_l, dt_ptr, rdt4, sdt_l, b_ptr, offn,
                 nmask, sb_l, A2, bias4, poly, REV: tl.constexpr, U_STEP: tl.constexpr, BC_STEP: tl.constexpr,
                 HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, BC_MASK: tl.constexpr, FAST: tl.constexpr,
                 PERM: tl.constexpr, POLY: tl.constexpr, BC_AHEAD: tl.constexpr):
    """_out_block's state update only (no C, z, partial, y): h, and dsum, each channel's running sum of
    dt (the same on all its lanes: it adds the exchanged dt, in the state tile's layout family)."""
    Q: tl.constexpr = sp.shape[2]
    dt, dtu = _step_dt(dt_q, u_q, k, k1, sp, bias4, HAS_BIAS, SOFTPLUS, FAST)
    _, iun, _ = _indices(tl.minimum(k + Q + sp, L - 1), L, REV, U_STEP, BC_STEP)
    u_q = tl.load(u_ptr + ru4 + iun * su_l)
    dt_q = tl.load(dt_ptr + rdt4 + iun * sdt_l)
    for j in tl.static_range(Q):
        if BC_AHEAD:
            bt = b_n.to(tl.float32)
            _, _, ib1 = _indices(tl.minimum(k + j + 1, L - 1), L, REV, U_STEP, BC_STEP)
            b_n = _load_tile(b_ptr + offn + ib1 * sb_l, nmask, BC_MASK, PERM)
        else:
            _, _, ibj = _indices(tl.minimum(k + j, L - 1), L, REV, U_STEP, BC_STEP)
            bt = _load_tile(b_ptr + offn + ibj * sb_l, nmask, BC_MASK, PERM).to(tl.float32)
        dt_j = _lane_pick(dt, j)
        dsum += dt_j
        h = _decay(dt_j * A2, poly, POLY) * h + _lane_pick(dtu, j) * bt
    return h, dsum, b_n, u_q, dt_q


def seq_config(batch: int, dim: int, length: int, n_state: int, config: Optional[dict] = None) -> dict:
    """Launch geometry: SPLIT lanes per channel (states split over them), BD channels per program
    (= 32 / SPLIT lanes x num_warps x channels per thread), PACK (see the module docstring), UNROLL.
    CPT > 1 (SPLIT 1 only) compiles with shared-memory layout conversions inside the step loop: kept
    for experiments, not recommended.

    Default: enough threads for ~8 warps per SM of an H100 (132 SMs) where batch x dim is small
    (VideoMamba video: 6144 channels -> SPLIT 4), else one thread per channel (SPLIT 1).
    """
    NP = _pow2(n_state)
    want = 132 * 8 * 32
    split = 1
    while split < min(4, NP) and batch * dim * split < want:
        split *= 2
    cfg = dict(SPLIT=split, num_warps=1, CPT=1, PACK=True, UNROLL=2, POLY_STATE=0, POLY_STATE_V=0, POLY_OUT=0,
               POLY_OUT_V=0, BC_AHEAD=True, BC_AHEAD_STATE=True)
    if config:
        cfg.update(config)
    split = cfg["SPLIT"] = min(cfg["SPLIT"], NP)   # (a fixed config may name more lanes than states)
    if split < 1 or NP % split or 32 % split:
        raise ValueError(f"SPLIT must be a power of 2 <= 32, got {cfg}")
    if split > 1 and (cfg["num_warps"] != 1 or cfg["CPT"] != 1):
        raise ValueError(f"SPLIT > 1 needs num_warps = 1 and CPT = 1 (lanes: 32 / SPLIT channels x SPLIT), got {cfg}")
    cfg.setdefault("BD", (32 // split) * cfg["num_warps"] * cfg["CPT"])
    return cfg


def _pack_bc(B4: Tensor, C4: Tensor, NP: int, flip: bool) -> Tensor:
    """(batch, groups, L, 2 NP) float32: [..., :N] = B_t, [..., NP:NP + N] = C_t (step order)."""
    batch, groups, n_state, length = B4.shape
    bc = torch.zeros(batch, groups, length, 2 * NP, dtype=torch.float32, device=B4.device)
    Bt, Ct = B4.transpose(-1, -2), C4.transpose(-1, -2)
    if flip:
        Bt, Ct = Bt.flip(-2), Ct.flip(-2)
    bc[..., :n_state] = Bt
    bc[..., NP:NP + n_state] = Ct
    return bc


def bimamba_scan_seq_triton(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                            u_b: Tensor, delta_b: Tensor, A_b: Tensor, B_b: Tensor, C_b: Tensor,
                            D_b: Optional[Tensor], z: Optional[Tensor] = None,
                            delta_bias: Optional[Tensor] = None, delta_bias_b: Optional[Tensor] = None,
                            delta_softplus: bool = False, *, backward_flipped: bool = False,
                            out: Optional[Tensor] = None, config: Optional[dict] = None) -> Tensor:
    """``bimamba_scan_triton``'s function and signature, on the sequential kernel (module docstring):
    the split kernel's last phase over one segment, the whole sequence, from h = 0.

    ``config`` overrides the launch: SPLIT (lanes per channel), num_warps, CPT (channels per thread)
    or BD (channels per program), PACK (copy B/C to a packed float32 buffer first).
    Arguments are checked by ``check_bimamba_args`` (ValueError / TypeError naming the argument).
    """
    check_bimamba_args("bimamba_scan_seq_triton", u, delta, A, B, C, D, u_b, delta_b, A_b, B_b, C_b, D_b, z,
                       delta_bias, delta_bias_b, out)
    return _bimamba_scan_split(u, delta, A, B, C, D, u_b, delta_b, A_b, B_b, C_b, D_b, z, delta_bias, delta_bias_b,
                               delta_softplus, backward_flipped, out, dict(config or {}, SEG=max(1, u.shape[-1])))


# ---------------------------------------------------------------------------------------------
# Split-sequence (chunk-parallel) variant: segments of each direction on different programs
# ---------------------------------------------------------------------------------------------
# The sequential kernel has batch x dim channel-sequences of work in flight (6144 for VideoMamba-S
# video: ~3% of copy bandwidth on an H100). Here the tokens are cut into S segments of SEG tokens
# (the last one shorter) and each direction runs in three launches:
#   1. _split_state_kernel, per (segment, direction, channel block): the recurrence from h = 0 over
#      the segment; its final state (NP floats per channel) and the sum of its softplus'd deltas
#      (one float per channel: the segment's total decay is exp(A_n * sum_t dt_t) for every state n,
#      because A does not depend on t; storing the exponent avoids underflow) go to float32 scratch;
#   2. _split_combine_kernel, per (channel block, batch, direction): S - 1 sequential steps
#      h_in[j + 1] = exp(A dtsum[j]) h_in[j] + h_end[j] (j in the direction's step order), in place;
#   3. _split_out_kernel, per (segment, channel block): the backward and then the forward direction
#      over the segment's tokens from their initial states, with the same epilogue as
#      the sequential kernel (backward partial to the accumulator, D skip, gate, store).
# Segments are token ranges [s SEG, min(L, (s + 1) SEG)), so the backward direction's segment s
# covers steps [L - t1, L - t0) and its step-order index is S - 1 - s. Scratch slot j of a direction
# holds, after phase 2, the initial state of its step-order segment j (phase 1 writes the final state
# of segment j into slot j + 1; slot 0 is set to zero by phase 2). S = 1 runs phase 3 alone from h = 0:
# that is the sequential kernel (bimamba_scan_seq_triton).

@triton.jit
def _tile_index(cl, NSTATE: tl.constexpr, S_IN: tl.constexpr, SPLIT: tl.constexpr, POLY_N: tl.constexpr,
                POLY_V: tl.constexpr):
    """The (G, V, SPLIT, BD) state tile's state indices n4 (G, V, SPLIT, 1), an int32 zero tile, the
    state mask (n < NSTATE), exactly as in _sweep, and ``poly``, the states whose decay _decay computes
    on the FMA pipe: the first POLY_N of each thread's S_IN states and the first POLY_V of each group
    of V. The select folds away at compile time only where the mask's axis lies in each thread's
    registers (Triton's layout decides: on the device's Triton 3.6, with one lane per channel, the V
    axis always and the G axis only with the permuted tile loads); elsewhere both are computed."""
    BD: tl.constexpr = cl.shape[0]
    V: tl.constexpr = 4 if S_IN >= 4 else S_IN
    G: tl.constexpr = S_IN // V
    gi = tl.arange(0, G)[:, None, None, None]
    vi = tl.arange(0, V)[None, :, None, None]
    sp = tl.arange(0, SPLIT)[None, None, :, None]
    n4 = sp * S_IN + gi * V + vi
    zero4 = tl.zeros([G, V, SPLIT, BD], dtype=tl.int32)
    nmask = (n4 < NSTATE) & (zero4 == 0)
    poly = (gi * V + vi < POLY_N) | (vi < POLY_V)
    return n4, zero4, nmask, poly


@triton.jit
def _seg_state(u_ptr, su_c, su_l, dt_ptr, sdt_c, sdt_l, b_ptr, sb_n, sb_l, A_ptr, bias_ptr,
               hs_ptr, ds_ptr, cl, cmask, k0, k1, L,
               NSTATE: tl.constexpr, S_IN: tl.constexpr, SPLIT: tl.constexpr,
               REV: tl.constexpr, U_STEP: tl.constexpr, BC_STEP: tl.constexpr,
               HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, BC_MASK: tl.constexpr,
               FAST: tl.constexpr, UNROLL: tl.constexpr, PERM: tl.constexpr, POLY_N: tl.constexpr,
               POLY_V: tl.constexpr, BC_AHEAD: tl.constexpr):
    """Phase 1 for one direction: steps k0 <= k < k1 from h = 0 (indices as in _sweep); stores the
    final state to hs_ptr[c, n] and log2 of the segment's decay, sum_t dt_t A_n log2(e), to
    ds_ptr[c, n] (NP floats per channel each). Pointers are offset to the program's (batch, group) /
    scratch slot. Steps go in blocks of SPLIT, as in _sweep (``_state_block``)."""
    NP: tl.constexpr = S_IN * SPLIT
    n4, zero4, nmask, poly = _tile_index(cl, NSTATE, S_IN, SPLIT, POLY_N, POLY_V)
    POLY: tl.constexpr = POLY_N + POLY_V > 0
    A2 = _load_tile(A_ptr + _bcast(cl) * NSTATE + n4, nmask & _bcast(cmask), True,
                    PERM) * 1.4426950408889634
    bias = tl.load(bias_ptr + cl, mask=cmask, other=0.0)
    offn = n4 * sb_n + zero4
    clc = tl.minimum(cl, tl.max(tl.where(cmask, cl, 0), axis=0))
    sp = tl.arange(0, SPLIT)[None, None, :, None]
    ru4 = _bcast(clc * su_c)
    rdt4 = _bcast(clc * sdt_c)
    bias4 = _bcast(bias)
    h = zero4.to(tl.float32)
    _, iu, _ = _indices(tl.minimum(k0 + sp, L - 1), L, REV, U_STEP, BC_STEP)
    u_q = tl.load(u_ptr + ru4 + iu * su_l)
    dt_q = tl.load(dt_ptr + rdt4 + iu * sdt_l)
    dsum = dt_q.to(tl.float32) * 0.0  # (zeros in the step tiles' layout)
    _, _, ib = _indices(k0, L, REV, U_STEP, BC_STEP)
    b_n = _load_tile(b_ptr + offn + ib * sb_l, nmask, BC_MASK, PERM)
    k = k0
    while k < k1:  # blocks of SPLIT steps, UNROLL blocks per iteration (steps past k1: dt = 0)
        for r in tl.static_range(UNROLL):
            h, dsum, b_n, u_q, dt_q = _state_block(
                k + r * SPLIT, k1, L, h, dsum, b_n, u_q, dt_q, sp, u_ptr, ru4, su_l, dt_ptr, rdt4, sdt_l,
                b_ptr, offn, nmask, sb_l, A2, bias4, poly, REV, U_STEP, BC_STEP, HAS_BIAS, SOFTPLUS, BC_MASK, FAST,
                PERM, POLY, BC_AHEAD)
        k += UNROLL * SPLIT
    lg = A2 * dsum  # (dsum: each channel's sum of dt, on all its lanes)
    off = _bcast(cl) * NP + n4 + zero4
    smask = _bcast(cmask) & (zero4 == 0)
    tl.store(hs_ptr + off, h, mask=smask)
    tl.store(ds_ptr + off, lg, mask=smask)  # log2 of the segment's decay, per state


@triton.jit
def _sweep(u_ptr, su_c, su_l, dt_ptr, sdt_c, sdt_l, b_ptr, c_ptr, sb_n, sb_l,
             z_ptr, sz_c, sz_l, y_ptr, acc_ptr, sy_c, sy_l,
             A_ptr, D_ptr, bias_ptr, hs_ptr, cl, cmask, k0, k1, L,
             NSTATE: tl.constexpr, S_IN: tl.constexpr, SPLIT: tl.constexpr,
             REV: tl.constexpr, U_STEP: tl.constexpr, BC_STEP: tl.constexpr,
             HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
             HAS_Z: tl.constexpr, ACC_IN: tl.constexpr, ACC_OUT: tl.constexpr,
             BC_MASK: tl.constexpr, FAST: tl.constexpr, UNROLL: tl.constexpr, HAS_INIT: tl.constexpr,
             PERM: tl.constexpr, POLY_N: tl.constexpr, POLY_V: tl.constexpr, BC_AHEAD: tl.constexpr):
    """One direction over steps k0 <= k < k1 (all L for the sequential kernel, one segment in phase 3
    of the split kernel), from the state at hs_ptr[c, n] (HAS_INIT) or from zero; token p = k (or
    L - 1 - k with REV). u/delta are read at index k if U_STEP else p, B/C at k if BC_STEP else p;
    z, y and the accumulator at p. Pointers are already offset to the program's (batch, group); cl:
    (BD,) channel indices. Loads are unmasked (channel indices past the group's end are clamped to
    its last channel and steps past the last to the last one; only stores are masked); B/C loads are
    masked only where states n >= N are not backed by memory (BC_MASK: unpacked B/C with N < NP).

    The state tile is (G, V, SPLIT, BD), state n = split_lane * S_IN + g * V + v: V = 4 consecutive
    states (one 16-byte load of packed B/C) and G = S_IN / V groups of them per thread, SPLIT lanes
    per channel. The steps go in blocks of SPLIT (``_out_block``), UNROLL blocks per loop iteration;
    per-channel operands are (1, 1, SPLIT, BD) step tiles, lane s of a channel holding step k + s."""
    NP: tl.constexpr = S_IN * SPLIT
    n4, zero4, nmask, poly = _tile_index(cl, NSTATE, S_IN, SPLIT, POLY_N, POLY_V)
    POLY: tl.constexpr = POLY_N + POLY_V > 0
    A2 = _load_tile(A_ptr + _bcast(cl) * NSTATE + n4, nmask & _bcast(cmask), True,
                    PERM) * 1.4426950408889634
    Dv = tl.load(D_ptr + cl, mask=cmask, other=0.0)
    bias = tl.load(bias_ptr + cl, mask=cmask, other=0.0)
    offn = n4 * sb_n + zero4
    clc = tl.minimum(cl, tl.max(tl.where(cmask, cl, 0), axis=0))
    sp = tl.arange(0, SPLIT)[None, None, :, None]
    ru4 = _bcast(clc * su_c)
    rdt4 = _bcast(clc * sdt_c)
    rz4 = _bcast(clc * sz_c)
    ry4 = _bcast(cl * sy_c)
    rya4 = _bcast(clc * sy_c)
    cmask4 = _bcast(cmask)
    D4 = _bcast(Dv)
    bias4 = _bcast(bias)
    if HAS_INIT:
        h = _load_tile(hs_ptr + _bcast(cl) * NP + n4 + zero4, _bcast(cmask) & (zero4 == 0), True,
                       PERM)
    else:
        h = zero4.to(tl.float32)
    p, iu, _ = _indices(tl.minimum(k0 + sp, L - 1), L, REV, U_STEP, BC_STEP)
    u_q = tl.load(u_ptr + ru4 + iu * su_l)
    dt_q = tl.load(dt_ptr + rdt4 + iu * sdt_l)
    z_q = u_q
    a_q = u_q
    if HAS_Z:
        z_q = tl.load(z_ptr + rz4 + p * sz_l)
    if ACC_IN:
        a_q = tl.load(acc_ptr + rya4 + p * sy_l)
    _, _, ib = _indices(k0, L, REV, U_STEP, BC_STEP)
    b_n = _load_tile(b_ptr + offn + ib * sb_l, nmask, BC_MASK, PERM)
    c_n = _load_tile(c_ptr + offn + ib * sb_l, nmask, BC_MASK, PERM)
    k = k0
    while k < k1:  # blocks of SPLIT steps, UNROLL blocks per iteration (steps past k1: masked)
        for r in tl.static_range(UNROLL):
            h, b_n, c_n, u_q, dt_q, z_q, a_q = _out_block(
                k + r * SPLIT, k1, L, h, b_n, c_n, u_q, dt_q, z_q, a_q, sp, u_ptr, ru4, su_l, dt_ptr, rdt4,
                sdt_l, b_ptr, c_ptr, offn, nmask, sb_l, z_ptr, rz4, sz_l, y_ptr, acc_ptr, ry4, rya4, sy_l,
                cmask4, A2, D4, bias4, poly, REV, U_STEP, BC_STEP, HAS_D, HAS_BIAS, SOFTPLUS, HAS_Z,
                ACC_IN, ACC_OUT, BC_MASK, FAST, PERM, POLY, BC_AHEAD)
        k += UNROLL * SPLIT


@triton.jit
def _split_state_kernel(u_ptr, su_b, su_c, su_l, dt_ptr, sdt_b, sdt_c, sdt_l,
                        b_ptr, sb_b, sb_g, sb_n, sb_l, A_ptr, bias_ptr,
                        ub_ptr, sub_b, sub_c, sub_l, dtb_ptr, sdtb_b, sdtb_c, sdtb_l,
                        bb_ptr, sbb_b, sbb_g, sbb_n, sbb_l, Ab_ptr, biasb_ptr,
                        hs_ptr, ds_ptr, n_batch, dim, dim_g, L, SEG, NSEG, NBLK,
                        NSTATE: tl.constexpr, S_IN: tl.constexpr, SPLIT: tl.constexpr,
                        BD: tl.constexpr, B_FLIPPED: tl.constexpr, PACKED: tl.constexpr,
                        HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, BC_MASK: tl.constexpr,
                        FAST: tl.constexpr, UNROLL: tl.constexpr, PERM: tl.constexpr, POLY_N: tl.constexpr,
                        POLY_V: tl.constexpr, BC_AHEAD: tl.constexpr):
    """Phase 1. Grid (NBLK x 2 (NSEG - 1), groups, batch): program q = pid0 // NBLK runs the forward
    direction's step-order segment q (q < NSEG - 1) or the backward one's q - (NSEG - 1); the last
    segment of each direction has no successor and is not run. Consecutive programs share a segment
    (neighbouring channel blocks: channels-last rows shared in L2)."""
    NP: tl.constexpr = S_IN * SPLIT
    pid = tl.program_id(0)
    blk = pid % NBLK
    q = pid // NBLK
    g = tl.program_id(1)
    bb = tl.program_id(2).to(tl.int64)
    c0 = g * dim_g
    cl = blk * BD + tl.arange(0, BD)
    cmask = cl < dim_g
    if q < NSEG - 1:  # forward, segment s = j = q: steps = tokens [s SEG, (s + 1) SEG)
        j = q
        k0 = j * SEG
        k1 = tl.minimum(k0 + SEG, L)
        slot = (bb * NSEG + j + 1).to(tl.int64)  # direction 0
        _seg_state(u_ptr + bb * su_b + c0 * su_c, su_c, su_l, dt_ptr + bb * sdt_b + c0 * sdt_c, sdt_c, sdt_l,
                   b_ptr + bb * sb_b + g * sb_g, sb_n, sb_l, A_ptr + c0 * NSTATE, bias_ptr + c0,
                   hs_ptr + slot * dim * NP + c0 * NP, ds_ptr + (slot - 1) * dim * NP + c0 * NP, cl, cmask,
                   k0, k1, L,
                   NSTATE, S_IN, SPLIT, False, False, False, HAS_BIAS, SOFTPLUS, BC_MASK, FAST, UNROLL, PERM,
                   POLY_N, POLY_V, BC_AHEAD)
    else:             # backward, step-order segment j = token segment s = NSEG - 1 - j
        j = q - (NSEG - 1)
        s = NSEG - 1 - j
        t0 = s * SEG
        t1 = tl.minimum(t0 + SEG, L)
        slot = ((n_batch + bb) * NSEG + j + 1).to(tl.int64)  # direction 1
        _seg_state(ub_ptr + bb * sub_b + c0 * sub_c, sub_c, sub_l, dtb_ptr + bb * sdtb_b + c0 * sdtb_c, sdtb_c,
                   sdtb_l, bb_ptr + bb * sbb_b + g * sbb_g, sbb_n, sbb_l, Ab_ptr + c0 * NSTATE, biasb_ptr + c0,
                   hs_ptr + slot * dim * NP + c0 * NP, ds_ptr + (slot - 1) * dim * NP + c0 * NP, cl, cmask,
                   L - t1, L - t0, L,
                   NSTATE, S_IN, SPLIT, True, B_FLIPPED, B_FLIPPED or PACKED, HAS_BIAS, SOFTPLUS, BC_MASK, FAST,
                   UNROLL, PERM, POLY_N, POLY_V, BC_AHEAD)


@triton.jit
def _split_combine_kernel(hs_ptr, ds_ptr, n_batch, dim, NSEG, NP: tl.constexpr, BC: tl.constexpr):
    """Phase 2. Grid (channel blocks of BC, batch, 2 directions): slot 0 = 0, then for j < NSEG - 1
    h_in[j + 1] = exp2(lg[j]) h_in[j] + h_end[j] (h_end[j] is in slot j + 1, lg[j] = log2 of segment
    j's decay), in place; the next segment's inputs are loaded before the current combine."""
    c = tl.program_id(0) * BC + tl.arange(0, BC)[:, None]
    n = tl.arange(0, NP)[None, :]
    bb = tl.program_id(1).to(tl.int64)
    dr = tl.program_id(2)
    cm2 = (c < dim) & (n < NP)
    base = (dr * n_batch + bb) * NSEG
    hrow = hs_ptr + base * dim * NP + c * NP + n
    drow = ds_ptr + base * dim * NP + c * NP + n
    carry = tl.zeros([BC, NP], dtype=tl.float32)
    tl.store(hrow, carry, mask=cm2)
    e_n = tl.load(hrow + dim * NP, mask=cm2, other=0.0)
    d_n = tl.load(drow, mask=cm2, other=0.0)
    j = 0
    while j < NSEG - 1:
        e = e_n
        d = d_n
        jn = tl.minimum(j + 1, NSEG - 2)
        e_n = tl.load(hrow + (jn + 1) * dim * NP, mask=cm2, other=0.0)
        d_n = tl.load(drow + jn * dim * NP, mask=cm2, other=0.0)
        carry = tl.exp2(d) * carry + e
        tl.store(hrow + (j + 1) * dim * NP, carry, mask=cm2)
        j += 1


@triton.jit
def _split_out_kernel(u_ptr, su_b, su_c, su_l, dt_ptr, sdt_b, sdt_c, sdt_l,
                      b_ptr, c_ptr, sb_b, sb_g, sb_n, sb_l, A_ptr, D_ptr, bias_ptr,
                      ub_ptr, sub_b, sub_c, sub_l, dtb_ptr, sdtb_b, sdtb_c, sdtb_l,
                      bb_ptr, cb_ptr, sbb_b, sbb_g, sbb_n, sbb_l, Ab_ptr, Db_ptr, biasb_ptr,
                      z_ptr, sz_b, sz_c, sz_l, y_ptr, acc_ptr, sy_b, sy_c, sy_l,
                      hs_ptr, n_batch, dim, dim_g, L, SEG, NSEG, NBLK,
                      NSTATE: tl.constexpr, S_IN: tl.constexpr, SPLIT: tl.constexpr,
                      BD: tl.constexpr, B_FLIPPED: tl.constexpr, PACKED: tl.constexpr,
                      HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
                      HAS_Z: tl.constexpr, BC_MASK: tl.constexpr, FAST: tl.constexpr,
                      UNROLL: tl.constexpr, HAS_INIT: tl.constexpr, PERM: tl.constexpr, POLY_N: tl.constexpr,
                      POLY_V: tl.constexpr, BC_AHEAD: tl.constexpr):
    """Phase 3. Grid (NBLK x NSEG, groups, batch): token segment s = pid0 // NBLK; backward direction
    first (its partial to acc), then forward + partial + gate -> y; with one segment (NSEG = 1, no
    HAS_INIT) this is the sequential kernel over the whole sequence."""
    NP: tl.constexpr = S_IN * SPLIT
    pid = tl.program_id(0)
    blk = pid % NBLK
    s = pid // NBLK
    g = tl.program_id(1)
    bb = tl.program_id(2).to(tl.int64)
    c0 = g * dim_g
    cl = blk * BD + tl.arange(0, BD)
    cmask = cl < dim_g
    t0 = s * SEG
    t1 = tl.minimum(t0 + SEG, L)
    yo = bb * sy_b + c0 * sy_c
    slot_b = ((n_batch + bb) * NSEG + (NSEG - 1 - s)).to(tl.int64)
    slot_f = (bb * NSEG + s).to(tl.int64)
    _sweep(ub_ptr + bb * sub_b + c0 * sub_c, sub_c, sub_l, dtb_ptr + bb * sdtb_b + c0 * sdtb_c, sdtb_c, sdtb_l,
             bb_ptr + bb * sbb_b + g * sbb_g, cb_ptr + bb * sbb_b + g * sbb_g, sbb_n, sbb_l,
             z_ptr, sz_c, sz_l, y_ptr + yo, acc_ptr + yo, sy_c, sy_l,
             Ab_ptr + c0 * NSTATE, Db_ptr + c0, biasb_ptr + c0, hs_ptr + slot_b * dim * NP + c0 * NP,
             cl, cmask, L - t1, L - t0, L,
             NSTATE, S_IN, SPLIT, True, B_FLIPPED, B_FLIPPED or PACKED,
             HAS_D, HAS_BIAS, SOFTPLUS, False, False, True, BC_MASK, FAST, UNROLL, HAS_INIT, PERM, POLY_N,
             POLY_V, BC_AHEAD)
    tl.debug_barrier()  # the forward sweep reads partials written by this program's threads
    _sweep(u_ptr + bb * su_b + c0 * su_c, su_c, su_l, dt_ptr + bb * sdt_b + c0 * sdt_c, sdt_c, sdt_l,
             b_ptr + bb * sb_b + g * sb_g, c_ptr + bb * sb_b + g * sb_g, sb_n, sb_l,
             z_ptr + bb * sz_b + c0 * sz_c, sz_c, sz_l, y_ptr + yo, acc_ptr + yo, sy_c, sy_l,
             A_ptr + c0 * NSTATE, D_ptr + c0, bias_ptr + c0, hs_ptr + slot_f * dim * NP + c0 * NP,
             cl, cmask, t0, t1, L,
             NSTATE, S_IN, SPLIT, False, False, False,
             HAS_D, HAS_BIAS, SOFTPLUS, HAS_Z, True, False, BC_MASK, FAST, UNROLL, HAS_INIT, PERM, POLY_N,
             POLY_V, BC_AHEAD)


# Defaults from the H100 sweep (benchmarks/bimamba_seq.py --segments 64,128,256,512; VideoMamba-S
# d_inner 768, d_state 16; docs/gpu_runs/bimamba_split.txt): on the video shape (batch 8, 3137
# tokens) SEG 64 was the fastest segment length in every layout and dtype (bf16: 801 us channels-last,
# 1,245-1,507 us in the model's layout, against 3,416-3,681 us for one segment); SEG 128 was within 6%.
SPLIT_SEG = 64  # default segment length (tokens) when batch x dim alone gives too few threads
# 16-bit u/delta with the tokens contiguous (the layout VideoMamba's mixer passes) ran fastest with
# 4 lanes per channel in both shapes of that sweep (image bf16: 854 us vs 1,392 us with SPLIT 1; video
# bf16, SEG 64: 1,245 us vs 1,507 us), while float32 and channels-last inputs ran fastest with one.
NARROW_ROWS_SPLIT = 4
# 16-bit channels-last u/delta in one segment (VideoMamba-S image, batch 128, bf16, what the model
# passes): with the step tiles (session 23, docs/gpu_runs/s23_run2.txt, s23_run3.txt) 4 lanes per
# channel and one block per loop iteration ran 445-447 us, against 495-499 us for SPLIT 1 (512 us
# for SPLIT 4 with UNROLL 2; 480 us for session 22's kernel). float32 stays on SPLIT 1 (505 vs 535 us).
ONE_SEGMENT_HALF_CONFIG = dict(SPLIT=4, UNROLL=1)
# One lane per channel on split sequences with the channels contiguous (VideoMamba-S video in the
# models' layout, either dtype): B_t / C_t loaded at their step in both phases instead of a step
# ahead (output phase 124 -> 96 registers, state phase 96 -> 80 under Triton 3.6), one block per
# iteration and segments of 128 tokens ran bf16 693-694 us and float32 712-713 us, against 742-746 /
# 776 us for the earlier default (SEG 64, UNROLL 2, B/C a step ahead), side by side on the H100
# (docs/gpu_runs/s24_run3.txt; s24_run2.txt: each change alone; SEG 96 / 112 / 160 slower, s24_run7.txt).
# The one-segment kernel (images) keeps the prefetch: without it 555 vs 449 us bf16, 910 vs 507 us
# float32 (s24_run1.txt). With the tokens contiguous instead (float32 there runs one lane per channel
# too) segments of 128 with these options were slower than session 23's launch: 2,028.5 us
# (s24_run5.txt) against 1,722.7 us with it (s24_run10.txt).
ONE_LANE_SPLIT_CONFIG = dict(SEG=128, UNROLL=1, BC_AHEAD=False, BC_AHEAD_STATE=False)
# Triton 3.5 (PyTorch 2.9's) fails inside its layout pass (TritonGPURemoveLayoutConversions: "parent
# layout must have at least rank >= 2") on the state phase's kernel; the one-segment path (the output
# kernel alone) compiles there. So before 3.6 the default is one segment: slower on short batches of
# long sequences (video), but it runs (seen with benchmarks/bimamba_seq.py --aot under Triton 3.5.1).
SPLIT_PHASES_COMPILE = _triton_version() >= (3, 6)


def layout_flags(u: Tensor) -> dict:
    """split_config's layout arguments for u (batch, dim, L): 16-bit with the tokens contiguous
    (``narrow_rows``), the channels contiguous (``channels_last``), both of the latter
    (``half_channels_last``)."""
    batch, dim, length = u.shape
    channels_last = u.stride(-2) == 1 and dim > 1
    return dict(narrow_rows=u.stride(-1) == 1 and u.element_size() == 2 and length > 1, channels_last=channels_last,
                half_channels_last=channels_last and u.element_size() == 2)


def split_config(batch: int, dim: int, length: int, n_state: int, config: Optional[dict] = None, *,
                 narrow_rows: bool = False, channels_last: bool = False, half_channels_last: bool = False) -> dict:
    """``seq_config`` plus SEG (tokens per segment; SEG >= length: one segment, the sequential kernel's
    work) and COMBINE_BC (channels per phase-2 program).

    Default: one segment where batch x dim already fills an H100 (seq_config's 8 warps per SM, e.g. the
    image shape) or Triton cannot compile the split phases (``SPLIT_PHASES_COMPILE``), else segments of
    ONE_LANE_SPLIT_CONFIG's SEG tokens where u's channels are contiguous (``channels_last``) and that
    gives one lane per channel (VideoMamba-S video: 25 segments), of SPLIT_SEG otherwise. SPLIT then
    follows seq_config with batch x segments sequences per direction (video: SPLIT 1, no redundant
    per-channel work), except that ``narrow_rows`` (u is 16-bit with its tokens contiguous) asks for
    NARROW_ROWS_SPLIT, and ``half_channels_last`` (u is 16-bit with its channels contiguous, the
    models' layout) in one segment for ONE_SEGMENT_HALF_CONFIG. Split sequences with one lane per
    channel and contiguous channels take ONE_LANE_SPLIT_CONFIG's other options (B/C loaded at their
    step) where ``config`` does not name them. ``layout_flags(u)`` gives the three flags."""
    config = dict(config or {})
    seg = config.pop("SEG", None)
    bc = config.pop("COMBINE_BC", 32)
    if narrow_rows and "SPLIT" not in config:
        config["SPLIT"] = NARROW_ROWS_SPLIT
    if seg is None:
        if batch * dim >= 132 * 8 * 32 or not SPLIT_PHASES_COMPILE:
            seg = length
        elif channels_last:
            one_lane_seg = ONE_LANE_SPLIT_CONFIG.get("SEG", SPLIT_SEG)
            long_segs = triton.cdiv(length, min(one_lane_seg, max(1, length)))
            one_lane = seq_config(batch * long_segs, dim, length, n_state, config)["SPLIT"] == 1
            seg = one_lane_seg if one_lane else SPLIT_SEG
        else:
            seg = SPLIT_SEG
    seg = int(seg)
    if seg < 1:
        raise ValueError(f"SEG must be >= 1, got {seg}")
    seg = min(seg, max(1, length))
    nseg = triton.cdiv(length, seg)
    if half_channels_last and nseg == 1 and "SPLIT" not in config:
        config = dict(ONE_SEGMENT_HALF_CONFIG, **config)
    cfg = seq_config(batch * nseg, dim, length, n_state, config)
    if channels_last and nseg > 1 and cfg["SPLIT"] == 1:
        cfg.update({k: v for k, v in ONE_LANE_SPLIT_CONFIG.items() if k not in config and k != "SEG"})
    cfg.update(SEG=seg, NSEG=nseg, COMBINE_BC=bc)
    return cfg


def bimamba_scan_split_triton(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                              u_b: Tensor, delta_b: Tensor, A_b: Tensor, B_b: Tensor, C_b: Tensor,
                              D_b: Optional[Tensor], z: Optional[Tensor] = None,
                              delta_bias: Optional[Tensor] = None, delta_bias_b: Optional[Tensor] = None,
                              delta_softplus: bool = False, *, backward_flipped: bool = False,
                              out: Optional[Tensor] = None, config: Optional[dict] = None) -> Tensor:
    """``bimamba_scan_seq_triton``'s function and signature, split along the sequence into segments run
    by different programs (three launches; see the comment above ``_tile_index``) where batch x dim
    gives too few threads; else one segment, the sequential kernel. ``torch.ops.ssmzoo.bimamba_scan``
    (the models' path) runs this with its default config.

    ``config``: SEG (tokens per segment), COMBINE_BC (channels per phase-2 program), PERM / PERM_STATE /
    PERM_OUT (the state-tile load order, see ``permute_tile_loads``), BC_AHEAD / BC_AHEAD_STATE (B/C
    loaded a step ahead in the output / state phase), POLY_OUT / POLY_OUT_V / POLY_STATE / POLY_STATE_V
    (decays on the FMA pipe, ``_tile_index``' poly mask; measured slower, off) and everything
    ``bimamba_scan_seq_triton`` takes (SPLIT, num_warps, CPT / BD, PACK, UNROLL, FAST).
    Arguments are checked by ``check_bimamba_args`` (ValueError / TypeError naming the argument).
    """
    check_bimamba_args("bimamba_scan_split_triton", u, delta, A, B, C, D, u_b, delta_b, A_b, B_b, C_b, D_b, z,
                       delta_bias, delta_bias_b, out)
    return _bimamba_scan_split(u, delta, A, B, C, D, u_b, delta_b, A_b, B_b, C_b, D_b, z, delta_bias, delta_bias_b,
                               delta_softplus, backward_flipped, out, config)


def _bimamba_scan_split(u, delta, A, B, C, D, u_b, delta_b, A_b, B_b, C_b, D_b, z, delta_bias, delta_bias_b,
                        delta_softplus, backward_flipped, out, config) -> Tensor:
    """``bimamba_scan_split_triton`` on arguments ``check_bimamba_args`` has checked."""
    _check_device(u)
    y, launches = _launch_split(u, delta, A, B, C, D, u_b, delta_b, A_b, B_b, C_b, D_b, z, delta_bias,
                                delta_bias_b, delta_softplus, backward_flipped, out, config)
    for kernel, grid, args, meta in launches:
        kernel[grid](*args, **meta)
    return y


def _launch_split(u, delta, A, B, C, D, u_b, delta_b, A_b, B_b, C_b, D_b, z, delta_bias, delta_bias_b,
                  delta_softplus, backward_flipped, out, config):
    """Output, scratch and packed B/C buffers, and the (kernel, grid, args, meta) of each phase in
    launch order (phases 1 and 2 only with more than one segment)."""
    batch, dim, length = u.shape
    (B4, C4, Bb4, Cb4, (A_, D_, bias_), (Ab_, Db_, biasb_), y, acc, zz) = _bimamba_operands(
        u, delta, A, B, C, D, u_b, delta_b, A_b, B_b, C_b, D_b, z, delta_bias, delta_bias_b, out)
    groups, n_state = B4.shape[1], B4.shape[2]
    dim_g = dim // groups
    NP = _pow2(n_state)
    cfg = split_config(batch, dim, length, n_state, config, **layout_flags(u))
    seg, nseg = cfg["SEG"], cfg["NSEG"]
    if cfg["PACK"]:
        bc = _pack_bc(B4, C4, NP, False)
        bcb = _pack_bc(Bb4, Cb4, NP, not backward_flipped)
        f_bc = (bc[..., :NP], bc[..., NP:], bc.stride(0), bc.stride(1), 1, bc.stride(2))
        b_bc = (bcb[..., :NP], bcb[..., NP:], bcb.stride(0), bcb.stride(1), 1, bcb.stride(2))
    else:
        if B4.stride() != C4.stride() or Bb4.stride() != Cb4.stride():
            B4, C4, Bb4, Cb4 = (t.contiguous() for t in (B4, C4, Bb4, Cb4))
        f_bc = (B4, C4, *B4.stride())
        b_bc = (Bb4, Cb4, *Bb4.stride())
    nblk = triton.cdiv(dim_g, cfg["BD"])
    common = dict(NSTATE=n_state, S_IN=NP // cfg["SPLIT"], SPLIT=cfg["SPLIT"], BD=cfg["BD"],
                  B_FLIPPED=bool(backward_flipped), PACKED=bool(cfg["PACK"]),
                  HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(delta_softplus),
                  BC_MASK=not cfg["PACK"] and n_state < NP,
                  FAST=cfg.get("FAST", not _interpreting()), UNROLL=cfg["UNROLL"], num_warps=cfg["num_warps"])

    def perm(phase_key: str, one_segment: bool) -> bool:  # the tile-load order: config, else the rule
        return bool(cfg.get(phase_key, cfg.get("PERM", permute_tile_loads(cfg["SPLIT"], one_segment))))

    launches = []
    if nseg > 1:
        # scratch, [direction, batch, slot, channel, NP]: states, and log2 of the segments' decays
        hs = torch.empty(2, batch, nseg, dim, NP, dtype=torch.float32, device=u.device)
        ds = torch.empty_like(hs)
        launches.append((_split_state_kernel, (nblk * 2 * (nseg - 1), groups, batch),
                         (u, *u.stride(), delta, *delta.stride(), f_bc[0], *f_bc[2:], A_, bias_,
                          u_b, *u_b.stride(), delta_b, *delta_b.stride(), b_bc[0], *b_bc[2:], Ab_, biasb_,
                          hs, ds, batch, dim, dim_g, length, seg, nseg, nblk),
                         dict(common, PERM=perm("PERM_STATE", False), POLY_N=cfg["POLY_STATE"],
                              POLY_V=cfg["POLY_STATE_V"], BC_AHEAD=bool(cfg["BC_AHEAD_STATE"]))))
        bcc = cfg["COMBINE_BC"]
        launches.append((_split_combine_kernel, (triton.cdiv(dim, bcc), batch, 2),
                         (hs, ds, batch, dim, nseg), dict(NP=NP, BC=bcc, num_warps=max(1, min(4, bcc * NP // 128)))))
    else:
        hs = y  # (not read: HAS_INIT is off)
    launches.append((_split_out_kernel, (nblk * nseg, groups, batch),
                     (u, *u.stride(), delta, *delta.stride(), *f_bc, A_, D_, bias_,
                      u_b, *u_b.stride(), delta_b, *delta_b.stride(), *b_bc, Ab_, Db_, biasb_,
                      zz, *zz.stride(), y, acc, *y.stride(), hs, batch, dim, dim_g, length, seg, nseg, nblk),
                     dict(common, HAS_D=D is not None, HAS_Z=z is not None, HAS_INIT=nseg > 1,
                          PERM=perm("PERM_OUT", nseg == 1), POLY_N=cfg["POLY_OUT"],
                          POLY_V=cfg["POLY_OUT_V"],
                          BC_AHEAD=bool(cfg["BC_AHEAD"]))))
    return y, launches
