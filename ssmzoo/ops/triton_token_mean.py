"""The mean over the tokens of a (B, L, C) tensor, accumulated in float32, in one Triton kernel.

GroupMamba's gate starts from the mean of the normalised input over all positions. Compiled,
Inductor fuses that mean with the cast that makes in_proj's low-precision copy: at stage 3 it reads
the float32 input again (twice the bytes of the copy) in a reduction over the non-contiguous token
axis, 18 us per call for 35 MB on the H100 (9 calls per GroupMamba-T forward, s21_prof_gm_final.txt).
Here the mean reads the low-precision copy that in_proj reads anyway: one program sums BL x BC tiles
of one image's tokens for BC contiguous channels (coalesced loads along the channels) and writes
BC float32 means; the grid is (images, channel blocks).

Entry points: ``token_mean_triton`` (the launch), ``token_mean_ref`` (``x.mean(dim=1, dtype=float32)``),
and the operator ``torch.ops.ssmzoo.token_mean`` (opaque to torch.compile; GroupMamba calls it
through ``groupmamba._token_mean`` on CUDA tensors of the Triton backend).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

import triton
import triton.language as tl

from .triton_scan import STRIDE_ORDER_TAGS, _interpreting

__all__ = ["token_mean_op", "token_mean_ref", "token_mean_triton", "DEFAULT_CONFIG"]

DEFAULT_CONFIG = dict(BL=64, BC=64, num_warps=4)


@triton.jit
def _token_mean_kernel(x_ptr, sx_b, sx_l, y_ptr, L, C_al, inv_L,
                       BL: tl.constexpr, BC: tl.constexpr, ALIGN: tl.constexpr):
    """y[b, c] = inv_L * sum_l x[b, l, c] in float32, channels contiguous. Grid: (batch, channel blocks).

    C and the token stride come divided by ALIGN (C_al, sx_l), so the compiler sees multiples of it
    and keeps vector loads where C is not a multiple of the vector (stage 3's 348 channels)."""
    C = C_al * ALIGN
    pid_b = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1) * BC + tl.arange(0, BC)
    cmask = c < C
    base = x_ptr + pid_b * sx_b + c[None, :]
    acc = tl.zeros([BL, BC], dtype=tl.float32)
    for l0 in tl.range(0, L, BL):
        rows = l0 + tl.arange(0, BL)
        ptrs = base + rows[:, None] * (sx_l * ALIGN)
        acc += tl.load(ptrs, mask=(rows < L)[:, None] & cmask[None, :], other=0.0).to(tl.float32)
    tl.store(y_ptr + pid_b * C + c, tl.sum(acc, axis=0) * inv_L, mask=cmask)


def _alignment(x: Tensor) -> int:
    """The widest vector (in elements, up to 16 bytes) that divides C and the token stride."""
    for align in (16 // x.element_size(), 4, 2):
        if x.shape[2] % align == 0 and x.stride(1) % align == 0:
            return align
    return 1


def token_mean_triton(x: Tensor, *, config: Optional[dict] = None) -> Tensor:
    """``x.mean(dim=1, dtype=torch.float32)`` for x (B, L, C) with contiguous channels: (B, C) float32."""
    if x.dim() != 3:
        raise ValueError(f"expected x (batch, tokens, channels), got {tuple(x.shape)}")
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"x must be float32, float16 or bfloat16, got {x.dtype}")
    if x.device.type != "cuda" and not _interpreting():
        raise RuntimeError("the Triton token mean needs CUDA tensors (or TRITON_INTERPRET=1 on CPU)")
    if x.stride(2) != 1 and x.shape[2] > 1:
        x = x.contiguous()
    B, L, C = x.shape
    y = torch.empty(B, C, dtype=torch.float32, device=x.device)
    if y.numel() == 0:
        return y
    if L == 0:
        return y.fill_(float("nan"))  # as torch.mean over an empty axis
    cfg = {**DEFAULT_CONFIG, **(config or {})}
    grid = (B, triton.cdiv(C, cfg["BC"]))
    align = _alignment(x)
    _token_mean_kernel[grid](x, x.stride(0), x.stride(1) // align, y, L, C // align, 1.0 / L,
                             BL=cfg["BL"], BC=cfg["BC"], ALIGN=align, num_warps=cfg["num_warps"])
    return y


def token_mean_ref(x: Tensor) -> Tensor:
    """The kernel's function in PyTorch."""
    return x.mean(dim=1, dtype=torch.float32)


@torch.library.custom_op("ssmzoo::token_mean", mutates_args=(), **STRIDE_ORDER_TAGS)
def token_mean_op(x: Tensor) -> Tensor:
    """``token_mean_triton`` as ``torch.ops.ssmzoo.token_mean``: one opaque node for torch.compile, so
    Inductor cannot fuse the mean back onto the float32 tensor the low-precision x was cast from."""
    return token_mean_triton(x)


@token_mean_op.register_fake
def _token_mean_fake(x):
    return x.new_empty(x.shape[0], x.shape[2], dtype=torch.float32)

