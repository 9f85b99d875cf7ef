"""Causal depthwise conv1d + SiLU in Triton, read forwards or backwards (forward / inference only).

Each direction of VideoMamba's (and StableMamba's) bidirectional mixer starts with
``silu(conv1d(x)[..., :L])``: a depthwise conv of width 4 over the tokens, causal (only the current
and the three previous tokens), on the in-projection's output, which is token-major memory (batch,
L, 2 * d_inner) viewed as (batch, d_inner, L). The backward direction runs it on the reversed
sequence. In PyTorch that is a flip copy for the backward direction, a conv that for this layout falls
back to ATen's generic depthwise kernel (on the H100, VideoMamba-S 16 frames, batch 8: 202 us per
call against ~26 us to read and write the data once; a quarter of the compiled forward's GPU time,
docs/gpu_runs/prof_vm16_compiled_s14.txt), the SiLU pass, and a transpose copy to the token-major
layout that x_proj and the scan want.

Here one launch per direction reads x where it lies (any strides; fast when channels are contiguous),
reverses the sequence by index (``reverse``: output position t reads input L - 1 - t and its
predecessors in the reversed order, so the output is in the reversed order, as
``conv1d(x.flip(-1))`` gives it), adds the bias and writes SiLU of the result as token-major
(batch, L, d) memory, returned as its (batch, d, L) view. A program owns BL consecutive output
tokens x BD channels of one sequence: K shifted loads of the (BL, BD) tile (the overlap of the shifts
hits L1), K multiply-adds per element in float32.

Measured (H100, bf16, docs/gpu_runs/causal_conv_s14.txt): 42-44 us per call on both shapes, 59-61% of
copy bandwidth, against 544-610 us for the eager path; VideoMamba-S eager + CUDA graphs 141.6 ->
265.0 clips/s (16 frames) and 2,559 -> 5,163 img/s (image), side by side.

Numerics follow eager PyTorch under autocast: float32 accumulation, the bias added, the conv result
rounded to x's dtype (what a low-precision conv returns), SiLU computed in float32 from that and
rounded again (what F.silu returns).

Entry points: ``causal_conv1d_silu_triton`` (the launch), ``causal_conv1d_silu_ref`` (PyTorch, same
rounding points), the operator ``torch.ops.ssmzoo.causal_conv1d_silu`` (opaque to torch.compile) and
``causal_conv1d_silu`` (the models' entry: autocast's casts, then the operator).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

import triton
import triton.language as tl

from .opaque import call_op
from .triton_dwconv import _activation, _to_dtype, autocast_inputs
from .triton_scan import _interpreting, _pow2

__all__ = ["causal_conv1d_silu", "causal_conv1d_silu_op", "causal_conv1d_silu_ref", "causal_conv1d_silu_triton",
           "causal_conv_config"]

# BL tokens x BD channels per program; not swept yet (benchmarks/causal_conv.py --sweep). BD 128 gives
# each warp full 128-byte rows of 16-bit channels.
DEFAULT_CONFIG = dict(BL=32, BD=128, num_warps=4)


@triton.jit
def _causal_conv1d_silu_kernel(x_ptr, sx_b, sx_d, sx_l, w_ptr, bias_ptr, y_ptr, sy_b, sy_d, sy_l, D, L,
                               K: tl.constexpr, BL: tl.constexpr, BD: tl.constexpr, REVERSE: tl.constexpr,
                               HAS_BIAS: tl.constexpr, RNE_BF16: tl.constexpr):
    """y[b, d, t] = silu(round(bias[d] + sum_k wk[k, d] * xs[b, d, t - K + 1 + k])), xs = x, or x
    reversed along t (REVERSE); terms before the sequence start are zero. wk is the weight (K, D).

    Grid: (token blocks, channel blocks, batch)."""
    t = tl.program_id(0) * BL + tl.arange(0, BL)
    d = tl.program_id(1) * BD + tl.arange(0, BD)
    b = tl.program_id(2).to(tl.int64)
    ok_d = d < D
    x_base = x_ptr + b * sx_b + d[None, :] * sx_d
    acc = tl.zeros((BL, BD), dtype=tl.float32)
    for k in tl.static_range(K):
        s = t - (K - 1) + k                     # source token in the direction's order
        if REVERSE:
            p = L - 1 - s
        else:
            p = s
        ok = (s >= 0) & (s < L)
        xk = tl.load(x_base + p[:, None].to(tl.int64) * sx_l, mask=ok[:, None] & ok_d[None, :], other=0.0)
        wk = tl.load(w_ptr + k * D + d, mask=ok_d, other=0.0).to(tl.float32)
        acc += xk.to(tl.float32) * wk[None, :]
    if HAS_BIAS:
        acc += tl.load(bias_ptr + d, mask=ok_d, other=0.0).to(tl.float32)[None, :]
    y_ptrs = y_ptr + b * sy_b + t[:, None].to(tl.int64) * sy_l + d[None, :] * sy_d
    dtype = y_ptr.dtype.element_ty
    y = _activation(_to_dtype(acc, dtype, RNE_BF16).to(tl.float32), 2, 0)  # SiLU, libdevice math (MATH 0)
    tl.store(y_ptrs, _to_dtype(y, dtype, RNE_BF16), mask=(t < L)[:, None] & ok_d[None, :])


def causal_conv_config(dim: int, config: Optional[dict] = None) -> dict:
    """BL tokens x BD channels per program (powers of 2) and num_warps; BD no wider than needed."""
    cfg = dict(DEFAULT_CONFIG, BD=min(DEFAULT_CONFIG["BD"], _pow2(dim)))
    cfg.update({k: v for k, v in (config or {}).items() if k in cfg})
    for key in ("BL", "BD"):
        if cfg[key] < 1 or cfg[key] & (cfg[key] - 1):
            raise ValueError(f"{key} must be a power of 2, got {cfg[key]}")
    return cfg


def _check(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> None:
    if x.dim() != 3:
        raise ValueError(f"x must be (batch, dim, L), got {tuple(x.shape)}")
    D = x.shape[1]
    if weight.dim() not in (2, 3) or weight.shape[0] != D or (weight.dim() == 3 and weight.shape[1] != 1):
        raise ValueError(f"weight must be a depthwise ({D}, 1, K) or ({D}, K), got {tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (D,):
        raise ValueError(f"bias must be ({D},), got {tuple(bias.shape)}")
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"x must be float32, float16 or bfloat16, got {x.dtype}")
    for name, t in (("weight", weight), ("bias", bias)):  # (else the launch reads another device's memory)
        if t is not None and t.device != x.device:
            raise ValueError(f"{name} is on {t.device}; expected x's device {x.device}")
    if x.device.type != "cuda" and not _interpreting():
        raise RuntimeError("the Triton causal conv needs CUDA tensors (or TRITON_INTERPRET=1 on CPU)")


def _new_output(x: Tensor) -> Tensor:
    """(batch, dim, L) as a view of token-major (batch, L, dim) memory."""
    B, D, L = x.shape
    return torch.empty(B, L, D, dtype=x.dtype, device=x.device).transpose(1, 2)


def causal_conv1d_silu_triton(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, reverse: bool = False,
                              *, config: Optional[dict] = None) -> Tensor:
    """``silu(conv1d(xs, weight, bias, padding=K - 1, groups=dim)[..., :L])`` with xs = x, or
    ``x.flip(-1)`` if ``reverse``, in one launch.

    x (batch, dim, L) any strides; weight (dim, 1, K) or (dim, K) and bias (dim,) or None, used in
    float32. Returns (batch, dim, L) in x's dtype, a view of contiguous (batch, L, dim) memory."""
    _check(x, weight, bias)
    B, D, L = x.shape
    y = _new_output(x)
    if y.numel() == 0:
        return y
    K = weight.shape[-1]
    wk = weight.reshape(D, K).t().contiguous()           # (K, D): one contiguous vector per tap
    cfg = causal_conv_config(D, config)
    grid = (triton.cdiv(L, cfg["BL"]), triton.cdiv(D, cfg["BD"]), B)
    _causal_conv1d_silu_kernel[grid](
        x, *x.stride(), wk, bias if bias is not None else wk, y, *y.stride(), D, L,
        K=K, BL=cfg["BL"], BD=cfg["BD"], REVERSE=bool(reverse), HAS_BIAS=bias is not None,
        RNE_BF16=_interpreting() and y.dtype == torch.bfloat16, num_warps=cfg["num_warps"])
    return y


def causal_conv1d_silu_ref(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None,
                           reverse: bool = False) -> Tensor:
    """The kernel's function in PyTorch: F.conv1d accumulated in float32 (float64 for float64 inputs),
    rounded to x's dtype, SiLU in float32, rounded again; a view of token-major memory."""
    acc = torch.promote_types(x.dtype, torch.float32)
    xs = x.flip(-1) if reverse else x
    K, L = weight.shape[-1], x.shape[-1]
    y = F.conv1d(xs.to(acc), weight.reshape(x.shape[1], 1, K).to(acc), None if bias is None else bias.to(acc),
                 padding=K - 1, groups=x.shape[1])[..., :L]
    y = F.silu(y.to(x.dtype).to(acc)).to(x.dtype)
    return y.transpose(1, 2).contiguous().transpose(1, 2)


@torch.library.custom_op("ssmzoo::causal_conv1d_silu", mutates_args=())
def causal_conv1d_silu_op(x: Tensor, weight: Tensor, bias: Optional[Tensor], reverse: bool) -> Tensor:
    """``causal_conv1d_silu_triton`` as ``torch.ops.ssmzoo.causal_conv1d_silu``: one opaque node for
    torch.compile; output (batch, dim, L) viewing token-major memory, in x's dtype."""
    return causal_conv1d_silu_triton(x, weight, bias, reverse)


@causal_conv1d_silu_op.register_fake
def _causal_conv1d_silu_fake(x, weight, bias, reverse):
    return _new_output(x)


def causal_conv1d_silu(x: Tensor, weight: Tensor, bias: Optional[Tensor], reverse: bool = False) -> Tensor:
    """The operator with autocast's casts: under autocast (on x's device) the inputs are cast to the
    autocast dtype first, as F.conv1d would have them (custom operators are not autocast)."""
    x, weight, bias = autocast_inputs(x, weight, bias)
    return call_op(causal_conv1d_silu_op, x, weight, bias, reverse)
