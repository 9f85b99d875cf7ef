"""PVTv2 FFN tail in one Triton kernel: ``fc2(GELU(dwconv3x3(h) + conv_bias)) + fc2_bias`` from fc1's
output ``h`` (forward / inference only).

**Measured slower, not used by the models.** On an H100 (bf16, batch 128; benchmarks/ffn.py,
docs/gpu_runs/ffn.txt) GroupMamba-T's FFN tails per forward took 16.8 ms with this kernel against
6.9 ms for the fused depthwise-conv op + cuBLAS linear and 11.0 ms eager (3.7-9% of copy bandwidth:
the nine-tap conv in the GEMM's prologue is bound by CUDA-core work and low occupancy, not by DRAM);
wired into the model it took eager GroupMamba-T from 2,817 to 2,296 img/s and compiled from 5,319 to
3,745. It stays here, tested, as the starting point for another attempt (the conv would have to be
amortised over more output channels per program, or moved to a producer warp group).

GroupMamba's FFN is fc1 (C -> hid, hid = 4..8 C) -> depthwise 3x3 conv (+ bias) on the token map ->
exact GELU -> fc2 (hid -> C). The hidden tensor is the big one (batch 128, 56 x 56 tokens, 512
channels: 411 MB in bf16): unfused it is written by fc1, read and re-written by the conv(+GELU) and
read again by fc2. Here fc2 is a GEMM whose A operand is produced on the fly (prologue fusion): the
conv + bias + GELU of a (BM tokens x BK hidden channels) tile is computed in registers and fed to
``tl.dot`` with the matching (BK x BN) slice of fc2's weight, so the conv/GELU result never touches
memory. DRAM traffic is about one read of h and one write of the output.

How the kernel works: a program owns BM consecutive tokens of one image (row-major, as the tokens
are stored) and BN output channels; it walks the hidden channels in BK chunks. Per chunk the nine
taps are nine masked loads of the (BM, BK) tile shifted by dh * W + dw tokens; the masks come from
each token's (row, col), so the zero padding at the map's borders is exact and no tap reaches into
another image. The taps overlap heavily: with plain loads (num_stages=1, the default) the three
column shifts of a row mostly hit L1, and the row shifts hit L2 lines that the neighbouring token
tiles read too (num_stages >= 2 turns the taps into cp.async copies, which bypass L1: nine reads
from L2 per element). The N tiles of one token tile are adjacent in the launch order, so their
re-reads of h hit L2. When C > BN the conv is recomputed per N tile: CUDA-core work, not DRAM
traffic; BN >= C (up to 256) avoids it for the first two stages. The conv, bias and GELU run on
CUDA cores in float32 (about 50 instructions per hidden element: with this much arithmetic per
byte the kernel is likely bound by them, not by DRAM, at C <= 128), the GEMM on the tensor cores
(wgmma on Hopper). ``BLOCKED_A`` keeps Triton from computing the conv in the MMA operand layout
(see ``_ffn_kernel``). Hidden and output widths need not be multiples of the blocks (348, 1392):
tails are masked (masked hidden channels give GELU(0) = 0 against a zero weight). Widths that are
not multiples of 16 (C = 348, 424) keep wide stores through ``A_C`` (C passed divided by the
alignment, as in ``triton_dwconv``); likewise ``A_H`` for the hidden width.

Numerics follow eager PyTorch under autocast: the conv accumulates in float32, the bias is added, the
result is rounded to h's dtype (what an eager low-precision conv returns), the exact (erf) GELU is
computed in float32 from that and rounded to h's dtype (what F.gelu returns), and that is fc2's
input: ``tl.dot`` with float32 accumulation, + fc2's bias in float32, one rounding at the store
(cuBLAS's bias epilogue). For float32 inputs the dot uses ``input_precision="ieee"`` (full float32
products, no TF32), so float32 results match a float32 reference to summation order; for
float16/bfloat16 the products of the rounded operands are exact in float32, so only the summation
order differs from the reference. The interpreter's bfloat16 is stored as uint16 and its dot would
multiply the bit patterns: under ``TRITON_INTERPRET=1`` bfloat16 tiles are widened to float32 before
the dot (the same exact products), and its float32 -> bfloat16 cast truncates, hence ``RNE_BF16``.

Entry points: ``dwconv_gelu_linear_triton`` (the launch), ``dwconv_gelu_linear_ref`` (PyTorch, same
rounding points), the operator ``torch.ops.ssmzoo.dwconv_gelu_linear`` (opaque to torch.compile) and
``dwconv_gelu_linear`` (the models' entry: applies autocast's casts, then the operator).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

import triton
import triton.language as tl

from .opaque import call_op
from .triton_dwconv import _activation, _align, _to_dtype, dwconv3x3_act_ref
from .triton_scan import _interpreting, _pow2

__all__ = [
    "dwconv_gelu_linear",
    "dwconv_gelu_linear_op",
    "dwconv_gelu_linear_ref",
    "dwconv_gelu_linear_triton",
    "ffn_config",
]

# Launch defaults. UNTIMED GUESSES until ``python benchmarks/ffn.py --sweep`` runs on an H100; chosen
# from the sm_90 compile (``benchmarks/ffn.py --aot``, Triton 3.6 and 3.8: 140-235 registers, no
# spills): 64 tokens per program; every output channel in one N tile up to 256 (the conv is not
# recomputed for C <= 256, twice for C = 348..512); 32 hidden channels per step; 8 warps (two warp
# groups splitting N; with 4 warps the C = 64 stage spills on Triton 3.6); no software pipelining
# (num_stages=1: the nine tap loads stay plain L1-cached loads that mostly hit L1; pipelined, they
# become cp.async copies that bypass L1, so every tap is read from L2); BLOCKED_A (see the kernel).
DEFAULT_CONFIG = dict(BM=64, BN=256, BK=32, num_warps=8, num_stages=1, BLOCKED_A=True)


# ---------------------------------------------------------------------------------------------
# Kernel
# ---------------------------------------------------------------------------------------------

@triton.jit
def _k_step(acc, k0, h_base, t, valid, row, col, H, W, HID, w9_ptr, cb_ptr, fw_ptr, n, nmask, dtype: tl.constexpr,
            BK: tl.constexpr, HAS_CB: tl.constexpr, IEEE: tl.constexpr, DOT_F32: tl.constexpr,
            RNE_BF16: tl.constexpr, BLOCKED_A: tl.constexpr):
    """One BK chunk of hidden channels: the conv + bias + GELU tile (BM, BK), then acc += tile @ fw^T."""
    k = k0 + tl.arange(0, BK)
    kmask = k < HID
    conv = tl.zeros([t.shape[0], BK], dtype=tl.float32)
    for tap in tl.static_range(9):
        dh = tap // 3 - 1
        dw = tap % 3 - 1
        ok = valid & (row + dh >= 0) & (row + dh < H) & (col + dw >= 0) & (col + dw < W)
        x = tl.load(h_base + ((t + (dh * W + dw)) * HID)[:, None] + k[None, :],
                    mask=ok[:, None] & kmask[None, :], other=0.0)
        wk = tl.load(w9_ptr + tap * HID + k, mask=kmask, other=0.0).to(tl.float32)
        conv += x.to(tl.float32) * wk[None, :]
    if HAS_CB:
        conv += tl.load(cb_ptr + k, mask=kmask, other=0.0).to(tl.float32)[None, :]
    # round as the eager conv returns it, GELU in float32, round as F.gelu returns it: fc2's input
    a = _to_dtype(_activation(_to_dtype(conv, dtype, RNE_BF16).to(tl.float32), 1, 0), dtype, RNE_BF16)  # MATH 0
    if BLOCKED_A:  # a no-op select (a is 0 there already) that Triton cannot hoist a layout through
        a = tl.where(kmask[None, :], a, 0.0).to(dtype)
    wt = tl.load(fw_ptr + n[None, :] * HID + k[:, None], mask=kmask[:, None] & nmask[None, :], other=0.0)
    if DOT_F32:    # interpreter, bfloat16: widen (exact) so the dot multiplies values, not bit patterns
        acc = tl.dot(a.to(tl.float32), wt.to(tl.float32), acc, input_precision="ieee")
    elif IEEE:     # float32 inputs: full-precision products, not TF32
        acc = tl.dot(a, wt, acc, input_precision="ieee")
    else:
        acc = tl.dot(a, wt, acc)
    return acc


@triton.jit
def _ffn_kernel(h_ptr, w9_ptr, cb_ptr, fw_ptr, fb_ptr, y_ptr, L, H, W, HID, C, n_mtiles, n_ntiles,
                BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, A_H: tl.constexpr, A_C: tl.constexpr,
                HAS_CB: tl.constexpr, HAS_FB: tl.constexpr, IEEE: tl.constexpr, DOT_F32: tl.constexpr,
                RNE_BF16: tl.constexpr, BLOCKED_A: tl.constexpr, WHILE: tl.constexpr):
    """y[b, t, n] = fb[n] + sum_k fw[n, k] gelu(round(cb[k] + sum_tap w9[tap, k] h[b, t + shift(tap), k])).

    Grid: (B * n_mtiles * n_ntiles,), the N tile fastest (programs sharing a token tile run side by
    side, so the conv's re-reads of h for another N tile hit L2). h (B, L, HID), y (B, L, C) and
    fw (C, HID) are contiguous; w9 is the conv weight as (9, HID) (one contiguous vector per tap).
    HID and C arrive divided by A_H / A_C (host-checked multiples): multiplying them back makes the
    divisibility visible to the compiler, which then vectorises along the channels.

    BLOCKED_A: left alone, Triton moves the conversion to the dot operand's register layout up through
    the elementwise conv/GELU code to the nine loads: each tap then goes through shared memory, and
    when the warps split N (num_warps * 16 > BM) each warp group computes the whole conv tile again.
    The select on the hidden-channel mask stops that: the conv and GELU run once, spread over all
    warps in the loads' (coalesced) layout, and only the finished A tile is converted.

    WHILE (the interpreter): the hidden-channel loop as a while loop, since Triton 3.6's interpreter
    cannot range() over a runtime bound (with NumPy >= 2.4); compiled, a range() loop, which the
    software pipeliner handles (num_stages >= 2) and a while loop it does not.
    """
    pid = tl.program_id(0)
    pid_n = pid % n_ntiles
    pid_m = pid // n_ntiles
    b = (pid_m // n_mtiles).to(tl.int64)  # batch offsets may pass 2**31 elements
    m0 = (pid_m % n_mtiles) * BM
    HID = HID * A_H
    C = C * A_C
    dtype: tl.constexpr = y_ptr.dtype.element_ty

    t = m0 + tl.arange(0, BM)           # tokens of image b
    valid = t < L
    row = t // W
    col = t % W
    n = pid_n * BN + tl.arange(0, BN)    # output channels
    nmask = n < C
    h_base = h_ptr + b * L * HID
    acc = tl.zeros([BM, BN], dtype=tl.float32)
    if WHILE:
        k0 = 0
        while k0 < HID:
            acc = _k_step(acc, k0, h_base, t, valid, row, col, H, W, HID, w9_ptr, cb_ptr, fw_ptr, n, nmask, dtype,
                          BK, HAS_CB, IEEE, DOT_F32, RNE_BF16, BLOCKED_A)
            k0 += BK
    else:
        for k0 in range(0, HID, BK):
            acc = _k_step(acc, k0, h_base, t, valid, row, col, H, W, HID, w9_ptr, cb_ptr, fw_ptr, n, nmask, dtype,
                          BK, HAS_CB, IEEE, DOT_F32, RNE_BF16, BLOCKED_A)
    if HAS_FB:
        acc += tl.load(fb_ptr + n, mask=nmask, other=0.0).to(tl.float32)[None, :]
    y_ptrs = y_ptr + b * L * C + (t * C)[:, None] + n[None, :]
    tl.store(y_ptrs, _to_dtype(acc, dtype, RNE_BF16), mask=valid[:, None] & nmask[None, :])


# ---------------------------------------------------------------------------------------------
# Host side
# ---------------------------------------------------------------------------------------------

def ffn_config(C: int, hid: int, H: int, W: int, config: Optional[dict] = None) -> dict:
    """Launch geometry: DEFAULT_CONFIG (updated by ``config``) clipped to the problem.

    BM (tokens), BN (output channels), BK (hidden channels per step) are powers of two >= 16
    (``tl.dot``'s minimum), clipped to the token count, C and hid; BLOCKED_A (bool) see
    ``_ffn_kernel``. Untimed guesses until the benchmark's sweep runs (see DEFAULT_CONFIG).
    """
    cfg = dict(DEFAULT_CONFIG, **dict(config or {}))
    cfg["BM"] = min(cfg["BM"], max(16, _pow2(H * W)))
    cfg["BN"] = min(cfg["BN"], max(16, _pow2(C)))
    cfg["BK"] = min(cfg["BK"], max(16, _pow2(hid)))
    for key in ("BM", "BN", "BK"):
        if cfg[key] != _pow2(cfg[key]) or cfg[key] < 16:
            raise ValueError(f"{key} must be a power of two >= 16, got {cfg}")
    cfg["BLOCKED_A"] = bool(cfg["BLOCKED_A"])
    return cfg


def _check(h: Tensor, H: int, W: int, conv_weight: Tensor, conv_bias: Optional[Tensor], fc_weight: Tensor,
           fc_bias: Optional[Tensor]) -> None:
    if h.dim() != 3 or h.shape[1] != H * W:
        raise ValueError(f"h must be (B, H*W, hid) with H*W = {H * W}, got shape {tuple(h.shape)}")
    hid = h.shape[2]
    if tuple(conv_weight.shape) != (hid, 1, 3, 3):
        raise ValueError(f"conv_weight must be ({hid}, 1, 3, 3), got {tuple(conv_weight.shape)}")
    if conv_bias is not None and tuple(conv_bias.shape) != (hid,):
        raise ValueError(f"conv_bias must be ({hid},), got {tuple(conv_bias.shape)}")
    if fc_weight.dim() != 2 or fc_weight.shape[1] != hid:
        raise ValueError(f"fc_weight must be (C, {hid}), got {tuple(fc_weight.shape)}")
    if fc_bias is not None and tuple(fc_bias.shape) != (fc_weight.shape[0],):
        raise ValueError(f"fc_bias must be ({fc_weight.shape[0]},), got {tuple(fc_bias.shape)}")
    if h.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"h must be float32, float16 or bfloat16, got {h.dtype}")
    if H * W * max(hid, fc_weight.shape[0]) >= 2**31:  # in-image offsets are 32-bit in the kernel
        raise ValueError(f"one image's map must hold fewer than 2**31 elements, got {H} x {W} x {hid}")
    for t in (conv_weight, conv_bias, fc_weight, fc_bias):
        if t is not None and t.device != h.device:
            raise ValueError(f"all tensors must be on one device, got {t.device} and {h.device}")
        if t is not None and t.dtype != h.dtype:
            raise ValueError(f"weights must have h's dtype {h.dtype}, got {t.dtype}")
    if h.device.type != "cuda" and not _interpreting():
        raise RuntimeError("the Triton FFN kernel needs CUDA tensors (or TRITON_INTERPRET=1 on CPU)")


def _channel_align(t: Tensor, H: int, W: int) -> int:
    """``_align`` of a contiguous (B, H*W, n) tensor seen as its channels-last (B, n, H, W) map."""
    B, _, n = t.shape
    return _align(*(t.view(B, H, W, n).permute(0, 3, 1, 2),) * 2)


def dwconv_gelu_linear_triton(h: Tensor, H: int, W: int, conv_weight: Tensor, conv_bias: Optional[Tensor],
                              fc_weight: Tensor, fc_bias: Optional[Tensor], *, config: Optional[dict] = None,
                              out: Optional[Tensor] = None) -> Tensor:
    """linear(gelu(dwconv3x3(h) + conv_bias), fc_weight, fc_bias) in one kernel launch.

    h (B, H*W, hid) tokens of an H x W map in row-major order (made contiguous if it is not);
    conv_weight (hid, 1, 3, 3), conv_bias (hid,) or None, fc_weight (C, hid), fc_bias (C,) or None,
    all in h's dtype on h's device. Returns (B, H*W, C) in h's dtype (or writes ``out``, contiguous).
    ``config`` overrides BM, BN, BK, num_warps, num_stages (see ``ffn_config``).
    """
    _check(h, H, W, conv_weight, conv_bias, fc_weight, fc_bias)
    B, L, hid = h.shape
    C = fc_weight.shape[0]
    h = h.contiguous()
    y = out if out is not None else torch.empty(B, L, C, dtype=h.dtype, device=h.device)
    if y.shape != (B, L, C) or y.dtype != h.dtype or not y.is_contiguous():
        raise ValueError(f"out must be a contiguous ({B}, {L}, {C}) tensor of h's dtype")
    if y.numel() == 0:
        return y
    cfg = ffn_config(C, hid, H, W, config)
    w9 = conv_weight.reshape(hid, 9).t().contiguous()     # (9, hid): one contiguous vector per tap
    fw = fc_weight.contiguous()
    a_h = _channel_align(h, H, W)
    a_c = _channel_align(y, H, W)
    n_mtiles, n_ntiles = triton.cdiv(L, cfg["BM"]), triton.cdiv(C, cfg["BN"])
    interp_bf16 = _interpreting() and h.dtype == torch.bfloat16
    _ffn_kernel[(B * n_mtiles * n_ntiles,)](
        h, w9, conv_bias if conv_bias is not None else w9, fw, fc_bias if fc_bias is not None else fw, y,
        L, H, W, hid // a_h, C // a_c, n_mtiles, n_ntiles,
        BM=cfg["BM"], BN=cfg["BN"], BK=cfg["BK"], A_H=a_h, A_C=a_c,
        HAS_CB=conv_bias is not None, HAS_FB=fc_bias is not None, IEEE=h.dtype == torch.float32,
        DOT_F32=interp_bf16, RNE_BF16=interp_bf16, BLOCKED_A=cfg["BLOCKED_A"], WHILE=_interpreting(),
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"])
    return y


def dwconv_gelu_linear_ref(h: Tensor, H: int, W: int, conv_weight: Tensor, conv_bias: Optional[Tensor],
                           fc_weight: Tensor, fc_bias: Optional[Tensor]) -> Tensor:
    """The kernel's function in PyTorch with eager autocast's rounding points: the conv accumulated in
    float32 (float64 for float64 inputs) + bias, rounded to h's dtype, GELU in float32, rounded again
    (``dwconv3x3_act_ref``), then the linear accumulated in float32 + bias, rounded to h's dtype."""
    B, L, hid = h.shape
    acc = torch.promote_types(h.dtype, torch.float32)
    x = h.transpose(1, 2).reshape(B, hid, H, W)           # the token map, channels-last view
    with torch.autocast(h.device.type, enabled=False):    # the rounding points above, not autocast's
        a = dwconv3x3_act_ref(x, conv_weight, conv_bias, "gelu").flatten(2).transpose(1, 2)   # (B, L, hid)
        y = F.linear(a.to(acc), fc_weight.to(acc), None if fc_bias is None else fc_bias.to(acc))
    return y.to(h.dtype)


# ---------------------------------------------------------------------------------------------
# The kernel as a PyTorch operator, and the models' entry point
# ---------------------------------------------------------------------------------------------

@torch.library.custom_op("ssmzoo::dwconv_gelu_linear", mutates_args=())
def dwconv_gelu_linear_op(h: Tensor, H: int, W: int, conv_weight: Tensor, conv_bias: Optional[Tensor],
                          fc_weight: Tensor, fc_bias: Optional[Tensor]) -> Tensor:
    """``dwconv_gelu_linear_triton`` as ``torch.ops.ssmzoo.dwconv_gelu_linear``: one opaque node for
    torch.compile (no tracing into the launch code); output (B, L, C) contiguous in h's dtype."""
    return dwconv_gelu_linear_triton(h, H, W, conv_weight, conv_bias, fc_weight, fc_bias)


@dwconv_gelu_linear_op.register_fake
def _dwconv_gelu_linear_fake(h, H, W, conv_weight, conv_bias, fc_weight, fc_bias):
    return h.new_empty((h.shape[0], h.shape[1], fc_weight.shape[0]))


def dwconv_gelu_linear(h: Tensor, H: int, W: int, conv_weight: Tensor, conv_bias: Optional[Tensor],
                       fc_weight: Tensor, fc_bias: Optional[Tensor]) -> Tensor:
    """The operator with autocast's casts: under autocast (on h's device) the inputs are cast to the
    autocast dtype first, as F.conv2d and F.linear would have them (custom operators are not autocast)."""
    device = h.device.type
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
        # autocast leaves float64 (and non-floating) tensors alone
        h, conv_weight, conv_bias, fc_weight, fc_bias = (
            t if t is None or not t.is_floating_point() or t.dtype == torch.float64 else t.to(dtype)
            for t in (h, conv_weight, conv_bias, fc_weight, fc_bias))
    return call_op(dwconv_gelu_linear_op, h, H, W, conv_weight, conv_bias, fc_weight, fc_bias)
