"""Dense 2-D convolution with few input channels as an implicit GEMM in Triton (forward only).

GroupMamba's stem starts with a 7x7 stride-2 conv from the 3 image channels. cuDNN has no good
kernel for three input channels: on the H100 it ran GroupMamba-T's (batch 128, bf16, 3 -> 32
channels, 224 -> 112) in 0.76 ms, 3.5% of the whole compiled forward, at about 20 TFLOP/s of
useful work (Inductor's autotuner found nothing faster; docs/gpu_runs/). Its data are small (38 MB
in, 103 MB out), so the conv should take a fraction of that.

Here the conv is a GEMM whose A operand is gathered straight from the input: one program computes
BLOCK_M output positions x BLOCK_N output channels of one image; the reduction runs over
K = C_in * KH * KW (147 for the stem, padded with zero weights to a multiple of BLOCK_K), and each
chunk of A is loaded by index arithmetic (channel, kernel row and column from k; input row and
column from the output position, the stride and the padding; zero padding through the masks), so
no im2col matrix exists in memory. The product runs on tensor cores (tl.dot) with float32
accumulation; float32 inputs are multiplied as three TF32 products each (``input_precision="tf32x3"``,
about float32's accuracy; "ieee" spilled 19 KB of registers per thread in the sm_90 compile).
The output is channels-last, the layout of everything after the stem.

Entry points: ``conv2d_igemm_triton`` (the launch), ``conv2d_igemm_ref`` (F.conv2d accumulated in
float32, rounded once), the operator ``torch.ops.ssmzoo.conv2d_igemm`` (opaque to torch.compile) and
``conv2d_igemm`` (applies autocast's input casts, then the operator).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

import triton
import triton.language as tl

from .triton_dwconv import _to_dtype, autocast_inputs
from .triton_scan import STRIDE_ORDER_TAGS, _interpreting, _pow2

__all__ = ["conv2d_igemm", "conv2d_igemm_op", "conv2d_igemm_ref", "conv2d_igemm_triton", "igemm_config",
           "MAX_IN_CHANNELS"]

# Used for convs with at most this many input channels (image stems); wider convs are GEMM-shaped
# enough for cuDNN.
MAX_IN_CHANNELS = 4
DEFAULT_CONFIG = dict(BLOCK_M=128, BLOCK_K=32, num_warps=4)


@triton.jit
def _conv_igemm_kernel(x_ptr, sx_b, sx_c, sx_h, sx_w, w_ptr, bias_ptr, y_ptr, sy_b, sy_c, sy_h, sy_w,
                       C_out, H, W, OH, OW, K,
                       KH: tl.constexpr, KW: tl.constexpr, STRIDE: tl.constexpr, PAD: tl.constexpr,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, K_PAD: tl.constexpr,
                       HAS_BIAS: tl.constexpr, F32: tl.constexpr, UPCAST: tl.constexpr):
    """y[b, n, oh, ow] = bias[n] + sum_k x[b, c, oh * S - P + kh, ow * S - P + kw] w[k, n], k = (c, kh, kw).

    w is the weight as a zero-padded (K_PAD, C_out) matrix (row k = c * KH * KW + kh * KW + kw).
    Grid: (output-position blocks, output-channel blocks, batch)."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    pid_b = tl.program_id(2).to(tl.int64)
    m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mmask = m < OH * OW
    nmask = n < C_out
    oh = m // OW
    ow = m % OW
    x_base = x_ptr + pid_b * sx_b
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for k0 in tl.static_range(0, K_PAD, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        c = k // (KH * KW)
        r = k % (KH * KW)
        ih = oh[:, None] * STRIDE - PAD + (r // KW)[None, :]
        iw = ow[:, None] * STRIDE - PAD + (r % KW)[None, :]
        ok = mmask[:, None] & (k < K)[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        a = tl.load(x_base + c[None, :] * sx_c + ih * sx_h + iw * sx_w, mask=ok, other=0.0)
        b = tl.load(w_ptr + k[:, None] * C_out + n[None, :], mask=nmask[None, :], other=0.0)
        if UPCAST:  # the interpreter's dot mishandles 16-bit floats; float32 products of them are exact
            a, b = a.to(tl.float32), b.to(tl.float32)
        if F32 or UPCAST:
            acc = tl.dot(a, b, acc, input_precision="tf32x3")
        else:
            acc = tl.dot(a, b, acc)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + n, mask=nmask, other=0.0).to(tl.float32)[None, :]
    y_ptrs = y_ptr + pid_b * sy_b + (oh * sy_h + ow * sy_w)[:, None] + n[None, :] * sy_c
    tl.store(y_ptrs, _to_dtype(acc, y_ptr.dtype.element_ty, UPCAST and y_ptr.dtype.element_ty == tl.bfloat16),
             mask=mmask[:, None] & nmask[None, :])


def igemm_config(C_out: int, K: int, config: Optional[dict] = None) -> dict:
    """BLOCK_M output positions (power of 2, >= 16), BLOCK_N = all output channels (up to 128; a
    power of 2, >= 16), BLOCK_K (power of 2, >= 16), K_PAD = K rounded up to BLOCK_K, num_warps."""
    cfg = dict(DEFAULT_CONFIG, BLOCK_N=min(128, max(16, _pow2(C_out))), **(config or {}))
    for key in ("BLOCK_M", "BLOCK_N", "BLOCK_K"):
        if cfg[key] < 16 or cfg[key] != _pow2(cfg[key]):
            raise ValueError(f"{key} must be a power of 2 >= 16 (tensor-core tiles), got {cfg[key]}")
    cfg["K_PAD"] = triton.cdiv(K, cfg["BLOCK_K"]) * cfg["BLOCK_K"]
    return cfg


def _check(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> None:
    if x.dim() != 4 or weight.dim() != 4 or weight.shape[1] != x.shape[1]:
        raise ValueError(f"expected x (B, C, H, W) and weight (C_out, C, KH, KW), got {tuple(x.shape)} "
                         f"and {tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"bias must be ({weight.shape[0]},), got {tuple(bias.shape)}")
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"x must be float32, float16 or bfloat16, got {x.dtype}")
    if x.device.type != "cuda" and not _interpreting():
        raise RuntimeError("the Triton conv needs CUDA tensors (or TRITON_INTERPRET=1 on CPU)")


def _output_shape(x: Tensor, weight: Tensor, stride: int, padding: int) -> tuple[int, int, int, int]:
    KH, KW = weight.shape[-2:]
    OH = (x.shape[2] + 2 * padding - KH) // stride + 1
    OW = (x.shape[3] + 2 * padding - KW) // stride + 1
    return x.shape[0], weight.shape[0], OH, OW


def _new_output(x: Tensor, weight: Tensor, stride: int, padding: int) -> Tensor:
    return torch.empty(_output_shape(x, weight, stride, padding), dtype=x.dtype, device=x.device,
                       memory_format=torch.channels_last)


def conv2d_igemm_triton(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, stride: int = 1,
                        padding: int = 0, *, config: Optional[dict] = None) -> Tensor:
    """``F.conv2d(x, weight, bias, stride, padding)`` (groups 1, square stride/padding) in one launch.

    x (B, C, H, W) any strides, weight (C_out, C, KH, KW), bias (C_out,) or None; the weight and bias
    are used in x's dtype. Returns (B, C_out, OH, OW) channels-last in x's dtype."""
    _check(x, weight, bias)
    B, C_out, OH, OW = _output_shape(x, weight, stride, padding)
    if OH < 1 or OW < 1:
        raise ValueError(f"the kernel does not fit the input: {tuple(x.shape)} with {tuple(weight.shape)}")
    y = _new_output(x, weight, stride, padding)
    if y.numel() == 0:
        return y
    K = weight[0].numel()
    cfg = igemm_config(C_out, K, config)
    w_mat = torch.zeros(cfg["K_PAD"], C_out, dtype=x.dtype, device=x.device)
    w_mat[:K] = weight.reshape(C_out, K).t()
    grid = (triton.cdiv(OH * OW, cfg["BLOCK_M"]), triton.cdiv(C_out, cfg["BLOCK_N"]), B)
    _conv_igemm_kernel[grid](
        x, *x.stride(), w_mat, bias.to(x.dtype) if bias is not None else w_mat, y, *y.stride(),
        C_out, x.shape[2], x.shape[3], OH, OW, K,
        KH=weight.shape[2], KW=weight.shape[3], STRIDE=stride, PAD=padding,
        BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], BLOCK_K=cfg["BLOCK_K"], K_PAD=cfg["K_PAD"],
        HAS_BIAS=bias is not None, F32=x.dtype == torch.float32,
        UPCAST=_interpreting() and x.dtype != torch.float32, num_warps=cfg["num_warps"])
    return y


def conv2d_igemm_ref(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, stride: int = 1,
                     padding: int = 0) -> Tensor:
    """The kernel's function in PyTorch: weight and bias rounded to x's dtype (as the kernel uses
    them), F.conv2d accumulated in float32 (float64 for float64), rounded once; channels-last."""
    acc = torch.promote_types(x.dtype, torch.float32)
    w = weight.to(x.dtype).to(acc)
    b = None if bias is None else bias.to(x.dtype).to(acc)
    y = F.conv2d(x.to(acc), w, b, stride=stride, padding=padding).to(x.dtype)
    return y.contiguous(memory_format=torch.channels_last)


@torch.library.custom_op("ssmzoo::conv2d_igemm", mutates_args=(), **STRIDE_ORDER_TAGS)
def conv2d_igemm_op(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: int, padding: int) -> Tensor:
    """``conv2d_igemm_triton`` as ``torch.ops.ssmzoo.conv2d_igemm``: one opaque node for torch.compile."""
    return conv2d_igemm_triton(x, weight, bias, stride, padding)


@conv2d_igemm_op.register_fake
def _conv2d_igemm_fake(x, weight, bias, stride, padding):
    return _new_output(x, weight, stride, padding)


def conv2d_igemm(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: int, padding: int) -> Tensor:
    """The operator with autocast's casts (custom operators are not autocast): under autocast on x's
    device, x, weight and bias are cast to the autocast dtype first, as F.conv2d would have them."""
    x, weight, bias = autocast_inputs(x, weight, bias)
    return conv2d_igemm_op(x, weight, bias, stride, padding)
