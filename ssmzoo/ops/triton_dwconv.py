"""Depthwise 3x3 convolution + bias + activation in one Triton kernel (forward / inference only).

GroupMamba runs two depthwise 3x3 convs per block on token-major activations, i.e. (B, C, H, W)
tensors in channels-last memory: the PVTv2 FFN's ``DWConv`` followed by GELU, and the mixer's conv
followed by SiLU. On the GPU cuDNN runs the conv and a second kernel re-reads its output for the
bias/activation; here both are one pass over memory: the input is read (about) once, the output
written once.

Numerics follow PyTorch (autocast) as closely as practical: products are accumulated in float32,
the bias is added, the result is rounded to the output dtype (what an eager low-precision conv
returns), then the activation is computed in float32 from that and rounded again. ``gelu`` is the
exact (erf) GELU of ``nn.GELU()``; ``silu`` is ``x / (1 + exp(-x))`` as PyTorch's CUDA kernel. On the
GPU both are evaluated with single MUFU instructions (``ex2.approx.ftz``, ``rcp.approx.ftz``) and
erf through a branch-free erfc fit (``_erfc``): relative error ~2e-7 near 0 and at most ~1.3e-5 in
GELU's far negative tail before the output rounding (where the erf form loses every digit), instead
of libdevice's erff and IEEE division, which took a third of the kernel's instructions (config
``MATH``: 0 keeps those for side-by-side timing).

How the kernel works: one program owns a block of BC channels of one image and a block of the map;
lanes run along the channels, which are contiguous in channels-last memory, so every load and store
is coalesced and vectorised. Two variants (``ROWS`` in the config):
- ROWS = 0 (default): a BH x BW block of positions (flattened); the nine taps are nine masked
  loads of the block shifted by (dh, dw) (zero padding through the masks). Neighbouring taps
  overlap, so they mostly hit L1/L2 and DRAM traffic stays near one read of the input.
- ROWS > 0: the program walks ROWS rows of a BW-wide strip, loading each input row once (three
  shifted loads) and keeping the two unfinished output rows in registers: a third of the load
  requests, at the cost of a sequential loop. UNROLL rows are loaded per step, all before any is
  used, so that more bytes are in flight per program (one row per step was latency-bound: 46% of
  copy bandwidth on the largest shape, 54% with 4 rows per step). PREFETCH = 1 (the default since session
  18) also issues the next step's loads before this step's arithmetic, double-buffering the rows in
  registers so the conv and the activation overlap the next rows' DRAM latency; sm_90 compile under
  Triton 3.6: 96 registers with UNROLL 2 (the default), 152 with UNROLL 4, no spills. It was no
  faster while libdevice's erf dominated the loop (session 16, dwconv_prefetch_s16.txt); with the
  cheaper activations it is 2.6% faster (3.782 against 3.882 ms per GroupMamba-T forward's convs,
  s18_run2.txt).
Channel counts that are not multiples of 16 (e.g. 348) keep their vector width through ``ALIGN``
(C and strides passed divided by it, so the compiler sees multiples).

Entry points: ``dwconv3x3_act_triton`` (the launch), ``dwconv3x3_act_ref`` (F.conv2d + activation,
same rounding points), the operator ``torch.ops.ssmzoo.dwconv3x3_act`` (opaque to torch.compile)
and ``dwconv3x3_act`` (the models' entry: applies autocast's input casts, then the operator).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

import triton
import triton.language as tl

from .cpu_onednn import ACTIVATION_FNS
from .opaque import call_op
from .triton_math import mufu
from .triton_scan import STRIDE_ORDER_TAGS, _interpreting, _pow2

__all__ = [
    "ACTIVATIONS",
    "dwconv3x3_act",
    "dwconv3x3_act_op",
    "dwconv3x3_act_ref",
    "dwconv3x3_act_triton",
    "dwconv_config",
    "tap_major",
]

ACTIVATIONS = {"none": 0, "gelu": 1, "silu": 2}

# Default launch, from H100 sweeps (``python benchmarks/dwconv.py --sweep --models T``, GroupMamba-T's
# FFN and mixer shapes at batch 128 bf16, depth-weighted; docs/gpu_runs/dwconv_sweep.txt, dwconv_unroll.txt):
# the row-walking variant, strips 8 columns x 64 channels walking up to 64 rows, 4 warps, loading 4 input
# rows per step (session 13): 4.53 ms per forward's convs, against 5.33 ms one row per step, 6.11 ms for the best
# position-block config (4 x 8 x 64, ROWS=0) and 10.06 ms for cuDNN + a separate activation.
# PREFETCH (issue the next step's row loads before this step's arithmetic) was no faster then (4.57-4.60
# ms with UNROLL 1, 2 or 4; docs/gpu_runs/dwconv_prefetch_s16.txt): see session 18 below.
# MATH=2 (session 17): 3.871 ms per forward's convs against 4.403 ms with MATH=0 in the same run
# (docs/gpu_runs/s17_run2.txt). Re-swept with MATH=2 (session 18, docs/gpu_runs/s18_run2.txt): with a
# third fewer instructions per output, PREFETCH pays: PREFETCH=1 UNROLL=2 3.782 ms against 3.882 ms
# for the session-17 default (PREFETCH=0 UNROLL=4) in the same run, the best of 12 configs; shorter
# walks (ROWS 16/32), other strip widths and channel blocks were slower in total.
DEFAULT_CONFIG = dict(BH=1, BW=8, BC=64, num_warps=4, ROWS=64, UNROLL=2, PREFETCH=1, MATH=2)

# Per-shape exceptions to DEFAULT_CONFIG: (map width, fewest channels) -> geometry for maps that wide
# with at least that many channels. The FFN convs of stage 2 (28 x 28, 1024 / 1536 channels): strips
# 4 columns wide with 2 warps were the fastest config there in both of session 18's sweeps (232.2 vs
# 249.9 us and 216.5 vs 233.6 us at C1024, 316.5 vs 342.9 us at C1536; docs/gpu_runs/s18_run2.txt,
# s18_run8.txt), and no better on the other maps.
SHAPE_CONFIGS: dict[tuple[int, int], dict] = {(28, 1024): dict(BW=4, num_warps=2)}


# ---------------------------------------------------------------------------------------------
# Kernel
# ---------------------------------------------------------------------------------------------

@triton.jit
def _erfc(z, MATH: tl.constexpr):
    """erfc(z) for z >= 0: Numerical Recipes' ``erfcc`` (a Chebyshev fit, fractional error < 1.2e-7
    in exact arithmetic; in float32 ~2e-7 up to z ~ 2, ~4e-6 at z ~ 4, ~1.3e-5 at z ~ 8: the rounding
    of the exponent's argument, which grows with z^2).
    Branch-free: one reciprocal, ten FMAs, one exponential. libdevice's erff evaluates one of two
    polynomials whose coefficients the compiler materialises with predicated moves: with the exact
    GELU around it ~30 instructions per element, a third of the kernel's, whose instruction issue is
    what bounds it on the H100."""
    t = mufu(1.0 + 0.5 * z, "rcp", MATH == 2)
    p = 0.17087277 * t - 0.82215223
    p = p * t + 1.48851587
    p = p * t - 1.13520398
    p = p * t + 0.27886807
    p = p * t - 0.18628806
    p = p * t + 0.09678418
    p = p * t + 0.37409196
    p = p * t + 1.00002368
    p = p * t - 1.26551223
    return t * mufu((p - z * z) * 1.4426950408889634, "ex2", MATH == 2)


@triton.jit
def _activation(y, ACT: tl.constexpr, MATH: tl.constexpr):
    """MATH (the config's): 0 libdevice's erf and IEEE division (the kernel before session 17, kept
    for side-by-side timing); 1 the erfc fit with exp2 and a division (what the interpreter runs for
    2); 2 the erfc fit on MUFU.EX2 / MUFU.RCP (the GPU default)."""
    if ACT == 1:    # exact GELU (nn.GELU(), approximate="none"): 0.5 y (1 + erf(y / sqrt 2))
        if MATH == 0:
            y = 0.5 * y * (1.0 + tl.math.erf(y * 0.7071067811865476))
        else:
            e = _erfc(tl.abs(y) * 0.7071067811865476, MATH)
            y = 0.5 * y * tl.where(y >= 0, 2.0 - e, e)
    elif ACT == 2:  # SiLU: y / (1 + exp(-y))
        if MATH == 0:
            y = y / (1.0 + tl.exp(-y))
        else:
            y = y * mufu(1.0 + mufu(y * -1.4426950408889634, "ex2", MATH == 2), "rcp", MATH == 2)
    return y


@triton.jit
def _to_dtype(v, dtype, RNE_BF16: tl.constexpr):
    """v (float32) rounded to dtype. RNE_BF16: round to nearest even by hand, for the interpreter,
    whose float32 -> bfloat16 cast truncates (compiled kernels round to nearest even already)."""
    if RNE_BF16:
        bits = v.to(tl.uint32, bitcast=True)
        bits = bits + 0x7FFF + ((bits >> 16) & 1)
        v = ((bits >> 16) << 16).to(tl.float32, bitcast=True)
    return v.to(dtype)


@triton.jit
def _finish(acc, bias, y_ptrs, mask, ACT: tl.constexpr, RNE_BF16: tl.constexpr, MATH: tl.constexpr):
    """Adds the bias, rounds to the output dtype (as an eager conv returns it; a no-op for float32),
    applies the activation in float32 and stores the result rounded again."""
    dtype = y_ptrs.dtype.element_ty
    y = _activation(_to_dtype(acc + bias[None, :], dtype, RNE_BF16).to(tl.float32), ACT, MATH)
    tl.store(y_ptrs, _to_dtype(y, dtype, RNE_BF16), mask=mask)


@triton.jit
def _tap(w_ptr, t: tl.constexpr, C, c, cmask):
    """Weights of tap t = 3 * kh + kw for the channels c, as a (1, BC) float32 row."""
    return tl.load(w_ptr + t * C + c, mask=cmask, other=0.0).to(tl.float32)[None, :]


@triton.jit
def _dwconv3x3_kernel(x_ptr, sx_b, sx_c, sx_h, sx_w, w_ptr, bias_ptr, y_ptr, sy_b, sy_c, sy_h, sy_w,
                      C, H, W, n_wblocks,
                      BH: tl.constexpr, BW: tl.constexpr, BC: tl.constexpr, ROWS: tl.constexpr,
                      UNROLL: tl.constexpr, PREFETCH: tl.constexpr, ALIGN: tl.constexpr, ACT: tl.constexpr,
                      HAS_BIAS: tl.constexpr, RNE_BF16: tl.constexpr, MATH: tl.constexpr):
    """y[b, c, h, w] = act(round(bias[c] + sum_{kh,kw} w9[3 kh + kw, c] x[b, c, h + kh - 1, w + kw - 1])).

    Grid: (spatial blocks, channel blocks, batch). w9 is the weight as a (9, C) tensor (tap-major,
    so each tap's weights are a contiguous vector over the channels). With ALIGN > 1 (host-checked:
    channels contiguous, C, the other strides and both base pointers multiples of ALIGN elements)
    C and the strides arrive divided by ALIGN: multiplying them back makes the divisibility visible
    to the compiler, which then vectorises loads along the channels.

    ROWS = 0: a program computes a BH x BW block of positions (flattened) with nine shifted loads.
    ROWS > 0: a program walks ROWS rows of a BW-wide column strip, one input row per step (three
    loads: columns w - 1, w, w + 1) and keeps the two unfinished output rows in registers, so each
    input row is loaded once per strip, not three times.
    """
    pid_s = tl.program_id(0)
    pid_c = tl.program_id(1)
    pid_b = tl.program_id(2).to(tl.int64)  # batch offsets may pass 2**31 elements at large batch
    C = C * ALIGN
    sx_b = sx_b * ALIGN
    sx_h = sx_h * ALIGN
    sx_w = sx_w * ALIGN
    sy_b = sy_b * ALIGN
    sy_h = sy_h * ALIGN
    sy_w = sy_w * ALIGN

    c = pid_c * BC + tl.arange(0, BC)
    cmask = c < C
    if HAS_BIAS:
        bias = tl.load(bias_ptr + c, mask=cmask, other=0.0).to(tl.float32)
    else:
        bias = tl.zeros([BC], dtype=tl.float32)
    x_base = x_ptr + pid_b * sx_b + c[None, :] * sx_c
    y_base = y_ptr + pid_b * sy_b + c[None, :] * sy_c

    if ROWS == 0:
        i = tl.arange(0, BH * BW)
        h = (pid_s // n_wblocks) * BH + i // BW
        w = (pid_s % n_wblocks) * BW + i % BW
        inside = (h < H) & (w < W)
        acc = tl.zeros([BH * BW, BC], dtype=tl.float32)
        for t in tl.static_range(9):
            hh = h + (t // 3 - 1)
            ww = w + (t % 3 - 1)
            ok = inside & (hh >= 0) & (hh < H) & (ww >= 0) & (ww < W)
            xv = tl.load(x_base + (hh * sx_h + ww * sx_w)[:, None], mask=ok[:, None] & cmask[None, :], other=0.0)
            acc += xv.to(tl.float32) * _tap(w_ptr, t, C, c, cmask)
        _finish(acc, bias, y_base + (h * sy_h + w * sy_w)[:, None], inside[:, None] & cmask[None, :],
                ACT, RNE_BF16, MATH)
    else:
        w = (pid_s % n_wblocks) * BW + tl.arange(0, BW)
        r0 = (pid_s // n_wblocks) * ROWS
        r_end = tl.minimum(r0 + ROWS, H)        # output rows r0 .. r_end - 1
        ok_c = (w < W)[:, None] & cmask[None, :]
        ok_l = ok_c & (w >= 1)[:, None]
        ok_r = (w + 1 < W)[:, None] & cmask[None, :]
        off_c = (w * sx_w)[:, None]
        w00, w01, w02 = _tap(w_ptr, 0, C, c, cmask), _tap(w_ptr, 1, C, c, cmask), _tap(w_ptr, 2, C, c, cmask)
        w10, w11, w12 = _tap(w_ptr, 3, C, c, cmask), _tap(w_ptr, 4, C, c, cmask), _tap(w_ptr, 5, C, c, cmask)
        w20, w21, w22 = _tap(w_ptr, 6, C, c, cmask), _tap(w_ptr, 7, C, c, cmask), _tap(w_ptr, 8, C, c, cmask)
        acc_prev = tl.zeros([BW, BC], dtype=tl.float32)   # output row r - 1 (two kernel rows summed)
        acc_cur = tl.zeros([BW, BC], dtype=tl.float32)    # output row r (one kernel row summed)
        y_row0 = y_base + (w * sy_w)[:, None]
        r = r0 - 1
        # UNROLL input rows per step, every load issued before any is used: more bytes in flight per
        # program, which is what bounds this loop (one row per step waits on DRAM latency with ~1.3 KB
        # outstanding). PREFETCH also issues the next step's loads before this step's arithmetic
        # (double-buffered in registers), so the conv and activation overlap the next rows' latency.
        if PREFETCH:
            rows = _load_rows(x_base, r, sx_h, sx_w, off_c, ok_l, ok_c, ok_r, H, r_end, UNROLL)
            while r <= r_end:  # input rows r0 - 1 .. r_end (a while loop: the interpreter needs it)
                ahead = _load_rows(x_base, r + UNROLL, sx_h, sx_w, off_c, ok_l, ok_c, ok_r, H, r_end, UNROLL)
                acc_prev, acc_cur = _rows_step(rows, acc_prev, acc_cur, r, r0, r_end,
                                               w00, w01, w02, w10, w11, w12, w20, w21, w22,
                                               bias, y_row0, sy_h, ok_c, UNROLL, ACT, RNE_BF16, MATH)
                rows = ahead
                r += UNROLL
        else:
            while r <= r_end:
                rows = _load_rows(x_base, r, sx_h, sx_w, off_c, ok_l, ok_c, ok_r, H, r_end, UNROLL)
                acc_prev, acc_cur = _rows_step(rows, acc_prev, acc_cur, r, r0, r_end,
                                               w00, w01, w02, w10, w11, w12, w20, w21, w22,
                                               bias, y_row0, sy_h, ok_c, UNROLL, ACT, RNE_BF16, MATH)
                r += UNROLL


@triton.jit
def _load_rows(x_base, r, sx_h, sx_w, off_c, ok_l, ok_c, ok_r, H, r_end, UNROLL: tl.constexpr):
    """Input rows r .. r + UNROLL - 1, each at columns w - 1, w, w + 1: a tuple of 3 * UNROLL tiles
    (UNROLL 1, 2 or 4), every load issued before any is used."""
    rows = _load_row(x_base, r, sx_h, sx_w, off_c, ok_l, ok_c, ok_r, H, r_end)
    for i in tl.static_range(1, UNROLL):  # (one return: Triton wants one return type per function)
        rows = rows + _load_row(x_base, r + i, sx_h, sx_w, off_c, ok_l, ok_c, ok_r, H, r_end)
    return rows


@triton.jit
def _rows_step(rows, acc_prev, acc_cur, r, r0, r_end, w00, w01, w02, w10, w11, w12, w20, w21, w22,
               bias, y_row0, sy_h, ok_c, UNROLL: tl.constexpr, ACT: tl.constexpr, RNE_BF16: tl.constexpr,
               MATH: tl.constexpr):
    """``_row_step`` for each of the UNROLL rows of ``_load_rows(r)``, in order."""
    for i in tl.static_range(UNROLL):
        acc_prev, acc_cur = _row_step(rows[3 * i], rows[3 * i + 1], rows[3 * i + 2], acc_prev, acc_cur,
                                      r + i, r0, r_end, w00, w01, w02, w10, w11, w12, w20, w21, w22,
                                      bias, y_row0, sy_h, ok_c, ACT, RNE_BF16, MATH)
    return acc_prev, acc_cur


@triton.jit
def _load_row(x_base, r, sx_h, sx_w, off_c, ok_l, ok_c, ok_r, H, r_end):
    """Input row r at columns w - 1, w, w + 1 (zeros outside the map and past row r_end), as stored."""
    row_ok = (r >= 0) & (r < H) & (r <= r_end)
    src = x_base + r * sx_h + off_c
    return (tl.load(src - sx_w, mask=ok_l & row_ok, other=0.0), tl.load(src, mask=ok_c & row_ok, other=0.0),
            tl.load(src + sx_w, mask=ok_r & row_ok, other=0.0))


@triton.jit
def _row_step(xl, xc, xr, acc_prev, acc_cur, r, r0, r_end, w00, w01, w02, w10, w11, w12, w20, w21, w22,
              bias, y_row0, sy_h, ok_c, ACT: tl.constexpr, RNE_BF16: tl.constexpr, MATH: tl.constexpr):
    """Input row r arrives: it is kernel row 2 of output row r - 1 (then complete and stored), kernel
    row 1 of output row r and kernel row 0 of output row r + 1. Returns the new (acc_prev, acc_cur)."""
    xl, xc, xr = xl.to(tl.float32), xc.to(tl.float32), xr.to(tl.float32)
    if (r > r0) & (r <= r_end):
        _finish(acc_prev + xl * w20 + xc * w21 + xr * w22, bias, y_row0 + (r - 1) * sy_h, ok_c, ACT, RNE_BF16,
                MATH)
    return acc_cur + xl * w10 + xc * w11 + xr * w12, xl * w00 + xc * w01 + xr * w02


# ---------------------------------------------------------------------------------------------
# Host side
# ---------------------------------------------------------------------------------------------

def _align(x: Tensor, y: Tensor) -> int:
    """Largest vector width a (elements, at most 16 bytes) such that x and y have contiguous channels
    and C, every other stride and both base pointers are multiples of a."""
    C = x.shape[1]
    for a in (8, 4, 2):
        if a * x.element_size() > 16:
            continue
        if C % a == 0 and all(
                t.stride(1) == 1 and t.data_ptr() % (a * t.element_size()) == 0
                and all(t.stride(d) % a == 0 for d in (0, 2, 3)) for t in (x, y)):
            return a
    return 1


def dwconv_config(C: int, H: int, W: int, config: Optional[dict] = None) -> dict:
    """Launch geometry: DEFAULT_CONFIG (updated by SHAPE_CONFIGS' entry for this shape, then by
    ``config``) clipped to the map and the channels.

    BH, BW, BC are powers of two; ROWS > 0 selects the row-walking variant (BH is then 1). Keep
    BC <= 16 * num_warps: with wider channel blocks Triton (3.8, sm_90) gives the per-tap weight
    vectors a layout of their own and moves every input tile through shared memory to match it
    (correct, but 19+ barriers; ``benchmarks/dwconv.py --aot`` shows it).
    """
    given = dict(config or {})
    shape_config = next((g for (width, channels), g in SHAPE_CONFIGS.items() if W == width and C >= channels), {})
    cfg = {**DEFAULT_CONFIG, **shape_config, **given}
    cfg["BW"] = min(cfg["BW"], _pow2(W))
    if cfg["ROWS"]:
        cfg["BH"], cfg["ROWS"] = 1, min(int(cfg["ROWS"]), H)
    else:
        cfg["BH"] = min(cfg["BH"], _pow2(H))
        if "BC" not in given:  # small maps (the class token's 1x1): wider channel blocks keep the tile size
            tile = DEFAULT_CONFIG["BH"] * DEFAULT_CONFIG["BW"] * DEFAULT_CONFIG["BC"]
            cfg["BC"] = max(cfg["BC"], min(256, tile // (cfg["BH"] * cfg["BW"])))
    cfg["BC"] = min(cfg["BC"], _pow2(C))
    for k in ("BH", "BW", "BC"):
        if cfg[k] != _pow2(cfg[k]):
            raise ValueError(f"{k} must be a power of two, got {cfg}")
    if cfg["ROWS"] < 0:
        raise ValueError(f"ROWS must be >= 0, got {cfg}")
    if cfg["UNROLL"] not in (1, 2, 4):
        raise ValueError(f"UNROLL (input rows per step of the row walk) must be 1, 2 or 4, got {cfg}")
    if cfg["MATH"] not in (0, 1, 2):
        raise ValueError(f"MATH (the activation's arithmetic, see _activation) must be 0, 1 or 2, got {cfg}")
    return cfg


def _check(x: Tensor, weight: Tensor, bias: Optional[Tensor], activation: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"x must be (B, C, H, W), got shape {tuple(x.shape)}")
    C = x.shape[1]
    if tuple(weight.shape) != (C, 1, 3, 3):
        raise ValueError(f"weight must be ({C}, 1, 3, 3) for a depthwise 3x3 conv, got {tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (C,):
        raise ValueError(f"bias must be ({C},), got {tuple(bias.shape)}")
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"x must be float32, float16 or bfloat16, got {x.dtype}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    for t in (weight, bias):
        if t is not None and t.device != x.device:
            raise ValueError(f"all tensors must be on one device, got {t.device} and {x.device}")
    if x.device.type != "cuda" and not _interpreting():
        raise RuntimeError("the Triton depthwise conv needs CUDA tensors (or TRITON_INTERPRET=1 on CPU)")


def _new_output(x: Tensor) -> Tensor:
    return torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=torch.channels_last)


def dwconv3x3_act_triton(x: Tensor, weight: Tensor, bias: Optional[Tensor], activation: str = "none", *,
                         out: Optional[Tensor] = None, config: Optional[dict] = None) -> Tensor:
    """act(conv2d(x, weight, bias, stride=1, padding=1, groups=C)) in one kernel launch.

    x (B, C, H, W) any strides (fast when channels-last); weight (C, 1, 3, 3); bias (C,) or None;
    activation "none", "gelu" (exact) or "silu". Returns (B, C, H, W) channels-last in x's dtype
    (or writes ``out``, any strides, x's dtype). ``config`` overrides BH, BW, BC, ROWS, num_warps
    (see ``dwconv_config``).
    """
    _check(x, weight, bias, activation)
    B, C, H, W = x.shape
    y = out if out is not None else _new_output(x)
    if y.shape != x.shape or y.dtype != x.dtype:
        raise ValueError("out must have x's shape and dtype")
    if x.numel() == 0:
        return y
    w9 = weight.reshape(C, 9).t().contiguous()          # (9, C): one contiguous vector per tap (no copy: tap_major)
    cfg = dwconv_config(C, H, W, config)
    a = _align(x, y)
    n_wblocks = triton.cdiv(W, cfg["BW"])
    grid = (triton.cdiv(H, cfg["ROWS"] or cfg["BH"]) * n_wblocks, triton.cdiv(C, cfg["BC"]), B)
    sx, sy = x.stride(), y.stride()
    if a > 1:  # channels contiguous (stride 1); the others divided by the alignment (see the kernel)
        sx = (sx[0] // a, 1, sx[2] // a, sx[3] // a)
        sy = (sy[0] // a, 1, sy[2] // a, sy[3] // a)
    _dwconv3x3_kernel[grid](
        x, *sx, w9, bias if bias is not None else w9, y, *sy, C // a, H, W, n_wblocks,
        BH=cfg["BH"], BW=cfg["BW"], BC=cfg["BC"], ROWS=cfg["ROWS"], UNROLL=cfg["UNROLL"], PREFETCH=bool(cfg["PREFETCH"]), ALIGN=a, ACT=ACTIVATIONS[activation],
        HAS_BIAS=bias is not None, RNE_BF16=_interpreting() and y.dtype == torch.bfloat16,
        MATH=min(int(cfg["MATH"]), 1) if _interpreting() else int(cfg["MATH"]),
        num_warps=cfg["num_warps"])
    return y


def tap_major(weight: Tensor) -> Tensor:
    """The (C, 1, 3, 3) weight, same values, as a view of (9, C) memory: one contiguous vector per tap,
    the layout the kernel reads. Given so, ``dwconv3x3_act_triton`` needs no copy of it, and under
    torch.compile with freezing the rearrangement is folded into a constant; given as it is, the
    operator copies it on every call (39 small copy kernels per GroupMamba-T forward,
    docs/gpu_runs/s19_prof_gm.txt). Its end-to-end effect is below what block-level A/B runs resolve
    (docs/gpu_runs/s19_run7.txt: ~50 us per forward, within the spread of two compiles)."""
    C = weight.shape[0]
    return weight.reshape(C, 9).t().contiguous().t().reshape(C, 1, 3, 3)


def dwconv3x3_act_ref(x: Tensor, weight: Tensor, bias: Optional[Tensor], activation: str = "none") -> Tensor:
    """The kernel's function in PyTorch: F.conv2d accumulated in float32 (float64 for float64 inputs),
    rounded to x's dtype, then the activation in float32, rounded again; channels-last output."""
    acc = torch.promote_types(x.dtype, torch.float32)
    y = F.conv2d(x.to(acc), weight.to(acc), None if bias is None else bias.to(acc), padding=1,
                 groups=x.shape[1])
    y = ACTIVATION_FNS[activation](y.to(x.dtype).to(acc)).to(x.dtype)
    return y.contiguous(memory_format=torch.channels_last)


# ---------------------------------------------------------------------------------------------
# The kernel as a PyTorch operator, and the models' entry point
# ---------------------------------------------------------------------------------------------

@torch.library.custom_op("ssmzoo::dwconv3x3_act", mutates_args=(), **STRIDE_ORDER_TAGS)
def dwconv3x3_act_op(x: Tensor, weight: Tensor, bias: Optional[Tensor], activation: str) -> Tensor:
    """``dwconv3x3_act_triton`` as ``torch.ops.ssmzoo.dwconv3x3_act``: one opaque node for
    torch.compile (no tracing into the launch code); output channels-last in x's dtype."""
    return dwconv3x3_act_triton(x, weight, bias, activation)


@dwconv3x3_act_op.register_fake
def _dwconv3x3_act_fake(x, weight, bias, activation):
    return _new_output(x)


def autocast_inputs(*tensors: Optional[Tensor]) -> tuple[Optional[Tensor], ...]:
    """The tensors as autocast would hand them to a conv: under autocast on the first tensor's device,
    floating tensors (except float64) cast to the autocast dtype; else unchanged. Custom operators
    are not autocast, so their entry points call this first."""
    device = tensors[0].device.type
    if not torch.is_autocast_enabled(device):
        return tensors
    dtype = torch.get_autocast_dtype(device)
    return tuple(t.to(dtype) if t is not None and t.is_floating_point() and t.dtype != torch.float64 else t
                 for t in tensors)


def dwconv3x3_act(x: Tensor, weight: Tensor, bias: Optional[Tensor], activation: str) -> Tensor:
    """The operator with autocast's casts: under autocast (on x's device) the inputs are cast to the
    autocast dtype first, as F.conv2d would have them (custom operators are not autocast)."""
    x, weight, bias = autocast_inputs(x, weight, bias)
    return call_op(dwconv3x3_act_op, x, weight, bias, activation)
