"""Dense 2-D convolution as an implicit GEMM in Triton (forward only): GroupMamba's stem.

GroupMamba's stem is a 7x7 stride-2 conv from the 3 image channels, two 3x3 convs at 112x112 (each
conv followed by a batch norm and ReLU), then a 3x3 stride-2 conv to the tokens. cuDNN has no good
kernel for three input channels: on the H100 it ran GroupMamba-T's first conv (batch 128, bf16,
3 -> 32 channels, 224 -> 112) in 0.76 ms, 3.5% of the whole compiled forward, at about 20 TFLOP/s of
useful work (Inductor's autotuner found nothing faster; docs/gpu_runs/). After it, every batch norm
+ ReLU was a pass of its own over a 112x112 map and cuDNN transformed layouts around its 3x3 convs:
~1.1 ms for the whole stem (session 20's profile) against a memory floor of ~0.3 ms.

Here a conv is a GEMM whose A operand is gathered straight from the input: one program computes
BLOCK_M output positions x BLOCK_N output channels of one image; the reduction runs over
K = C_in * KH * KW (147 for the first conv, masked past K), and each chunk of A is loaded by index
arithmetic (channel, kernel row and column from k; input row and column from the output position,
the stride and the padding; zero padding through the masks), so no im2col matrix exists in memory.
For an image (channel-first) k runs channel by channel; for a channels-last map tap by tap, so a
chunk is one tap's contiguous channels, its index math per position and its loads wide. The product
runs on tensor cores (tl.dot) with float32 accumulation; float32 inputs are multiplied as three
TF32 products each (``input_precision="tf32x3"``, about float32's accuracy; "ieee" spilled 19 KB of
registers per thread in the sm_90 compile). The epilogue applies a per-channel scale and bias in
float32 (a conv bias, or an eval-mode batch norm folded into scale and shift) and ReLU, and rounds
once: each stem conv writes its output once. The output is channels-last, the layout of everything
after the stem.

Entry points: ``conv2d_igemm_triton`` (the launch), ``conv2d_igemm_ref`` (F.conv2d accumulated in
float32, scale, bias, ReLU, rounded once), the operator ``torch.ops.ssmzoo.conv2d_igemm`` (opaque to
torch.compile), ``conv2d_igemm`` (applies autocast's input casts, then the operator) and
``conv2d_bn_relu_igemm`` (a conv + eval-mode batch norm + ReLU as one launch).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch import Tensor

import triton
import triton.language as tl

from .opaque import call_op
from .triton_dwconv import _to_dtype, autocast_inputs
from .triton_scan import STRIDE_ORDER_TAGS, _interpreting, _pow2

__all__ = ["conv2d_bn_relu_igemm", "conv2d_igemm", "conv2d_igemm_op", "conv2d_igemm_ref", "conv2d_igemm_triton",
           "igemm_config", "tap_major"]

DEFAULT_CONFIG = dict(BLOCK_M=128, BLOCK_K=32, num_warps=4, num_stages=3)  # num_stages: Triton's default


@triton.jit
def _mma(a, b, acc, F32: tl.constexpr, UPCAST: tl.constexpr):
    """acc + a @ b with the weight b in x's (a's) dtype, on tensor cores; float32 as three TF32 products."""
    b = b.to(a.dtype)
    if UPCAST:  # the interpreter's dot mishandles 16-bit floats; float32 products of them are exact
        a, b = a.to(tl.float32), b.to(tl.float32)
    if F32 or UPCAST:
        return tl.dot(a, b, acc, input_precision="tf32x3")
    return tl.dot(a, b, acc)


@triton.jit
def _conv_igemm_kernel(x_ptr, sx_b, sx_c, sx_h, sx_w, w_ptr, sw_n, sw_c, sw_h, sw_w, scale_ptr, bias_ptr,
                       y_ptr, sy_b, sy_c, sy_h, sy_w, C_out, H, W, OH, OW,
                       C_IN: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr, STRIDE: tl.constexpr,
                       PAD: tl.constexpr, TAP_MAJOR: tl.constexpr,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, K_PAD: tl.constexpr,
                       HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr, RELU: tl.constexpr,
                       F32: tl.constexpr, UPCAST: tl.constexpr):
    """y[b, n, oh, ow] = act(scale[n] * sum_k x[b, c, oh * S - P + kh, ow * S - P + kw] w[n, c, kh, kw] + bias[n]).

    The reduction index k enumerates (c, kh, kw): channel-major (k = c * KH * KW + kh * KW + kw) for
    channel-first inputs, where a chunk of k walks one channel's taps; tap-major
    (k = (kh * KW + kw) * C_IN + c) for channels-last inputs, where a chunk of BLOCK_K <= C_IN k's is
    one tap's contiguous channels (one wide load per position). The weight is read through its own
    strides with k >= K masked, so no reordered or padded copy of it is made per call.
    Grid: (output-position blocks, output-channel blocks, batch)."""
    K: tl.constexpr = C_IN * KH * KW
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
    if TAP_MAJOR and C_IN % BLOCK_K == 0:
        # Tap by tap, each chunk BLOCK_K consecutive channels of one tap: the index math and the
        # masks are per position, the loads contiguous along the channels. A loop, not unrolled, so
        # that Triton pipelines the next tap's loads behind this tap's product (num_stages).
        for tap in tl.range(0, KH * KW):
            kh = tap // KW
            kw = tap % KW
            ih = oh * STRIDE - PAD + kh
            iw = ow * STRIDE - PAD + kw
            ok = mmask & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            a_ptrs = x_base + (ih * sx_h + iw * sx_w)[:, None]
            b_ptrs = w_ptr + n[None, :] * sw_n + (kh * sw_h + kw * sw_w)
            for c0 in tl.static_range(0, C_IN, BLOCK_K):
                c = c0 + tl.arange(0, BLOCK_K)
                a = tl.load(a_ptrs + c[None, :] * sx_c, mask=ok[:, None], other=0.0)
                b = tl.load(b_ptrs + (c * sw_c)[:, None], mask=nmask[None, :], other=0.0)
                acc = _mma(a, b, acc, F32, UPCAST)
    else:  # unrolled: k, and with it the index math's divisions, known at compile time per chunk
        for k0 in tl.static_range(0, K_PAD, BLOCK_K):
            k = k0 + tl.arange(0, BLOCK_K)
            if TAP_MAJOR:
                c = k % C_IN
                r = k // C_IN
            else:
                c = k // (KH * KW)
                r = k % (KH * KW)
            kh_k = r // KW
            kw_k = r % KW
            ih = oh[:, None] * STRIDE - PAD + kh_k[None, :]
            iw = ow[:, None] * STRIDE - PAD + kw_k[None, :]
            ok = mmask[:, None] & (k < K)[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            a = tl.load(x_base + c[None, :] * sx_c + ih * sx_h + iw * sx_w, mask=ok, other=0.0)
            b = tl.load(w_ptr + n[None, :] * sw_n + (c * sw_c + kh_k * sw_h + kw_k * sw_w)[:, None],
                        mask=nmask[None, :] & (k < K)[:, None], other=0.0)
            acc = _mma(a, b, acc, F32, UPCAST)
    if HAS_SCALE:
        acc *= tl.load(scale_ptr + n, mask=nmask, other=0.0).to(tl.float32)[None, :]
    if HAS_BIAS:
        acc += tl.load(bias_ptr + n, mask=nmask, other=0.0).to(tl.float32)[None, :]
    if RELU:
        acc = tl.maximum(acc, 0.0)
    y_ptrs = y_ptr + pid_b * sy_b + (oh * sy_h + ow * sy_w)[:, None] + n[None, :] * sy_c
    tl.store(y_ptrs, _to_dtype(acc, y_ptr.dtype.element_ty, UPCAST and y_ptr.dtype.element_ty == tl.bfloat16),
             mask=mmask[:, None] & nmask[None, :])


def tap_major(x: Tensor) -> bool:
    """Whether the reduction runs tap by tap (channels-last x with several channels: each chunk of k is
    one tap's contiguous channels) rather than channel by channel (channel-first x, e.g. an image)."""
    return x.shape[1] > 1 and x.stride(1) == 1


def igemm_config(C_out: int, K: int, config: Optional[dict] = None, C_in: Optional[int] = None,
                 by_tap: bool = False) -> dict:
    """BLOCK_M output positions (power of 2, >= 16), BLOCK_N = all output channels (up to 128; a
    power of 2, >= 16), BLOCK_K (power of 2, >= 16; tap by tap, one tap's channels up to 64 where
    C_in is a power of 2), K_PAD = K rounded up to BLOCK_K, num_warps, num_stages."""
    cfg = dict(DEFAULT_CONFIG, BLOCK_N=min(128, max(16, _pow2(C_out))))
    if by_tap and C_in is not None and C_in >= 16 and C_in == _pow2(C_in):
        # Tap by tap (benchmarks/stem_conv.py --middle, H100, s21_run2): 32 channels pipeline the taps
        # best over 3 stages (187 vs 208 us unpipelined at 32 -> 32); at 64, 3 stages of 24 KB tiles
        # cost occupancy (1048 vs 544 us at 64 -> 64); 128 output channels want 8 warps, 1 stage (269 us
        # at 64 -> 96 stride 2, s21_run4).
        cfg["BLOCK_K"] = min(64, C_in)
        cfg["num_stages"] = 3 if C_in <= 32 else 1
        if cfg["BLOCK_N"] >= 128:
            cfg.update(BLOCK_M=256, num_warps=8, num_stages=1)
    cfg.update(config or {})
    for key in ("BLOCK_M", "BLOCK_N", "BLOCK_K"):
        if cfg[key] < 16 or cfg[key] != _pow2(cfg[key]):
            raise ValueError(f"{key} must be a power of 2 >= 16 (tensor-core tiles), got {cfg[key]}")
    cfg["K_PAD"] = triton.cdiv(K, cfg["BLOCK_K"]) * cfg["BLOCK_K"]
    return cfg


def _check(x: Tensor, weight: Tensor, bias: Optional[Tensor], scale: Optional[Tensor] = None) -> None:
    if x.dim() != 4 or weight.dim() != 4 or weight.shape[1] != x.shape[1]:
        raise ValueError(f"expected x (B, C, H, W) and weight (C_out, C, KH, KW), got {tuple(x.shape)} "
                         f"and {tuple(weight.shape)}")
    for name, t in (("bias", bias), ("scale", scale)):
        if t is not None and tuple(t.shape) != (weight.shape[0],):
            raise ValueError(f"{name} must be ({weight.shape[0]},), got {tuple(t.shape)}")
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"x must be float32, float16 or bfloat16, got {x.dtype}")
    for name, t in (("weight", weight), ("bias", bias), ("scale", scale)):  # (else the launch reads elsewhere)
        if t is not None and t.device != x.device:
            raise ValueError(f"{name} is on {t.device}; expected x's device {x.device}")
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
                        padding: int = 0, *, scale: Optional[Tensor] = None, relu: bool = False,
                        config: Optional[dict] = None) -> Tensor:
    """``act(F.conv2d(x, weight) * scale + bias)`` (groups 1, square stride/padding) in one launch.

    x (B, C, H, W) any strides, weight (C_out, C, KH, KW) used in x's dtype; scale and bias (C_out,)
    or None, applied in float32 to the float32 accumulator (a conv's bias, or an eval-mode batch norm
    folded to scale and shift); act is ReLU where ``relu``. Returns (B, C_out, OH, OW) channels-last
    in x's dtype, rounded once."""
    _check(x, weight, bias, scale)
    B, C_out, OH, OW = _output_shape(x, weight, stride, padding)
    if OH < 1 or OW < 1:
        raise ValueError(f"the kernel does not fit the input: {tuple(x.shape)} with {tuple(weight.shape)}")
    y = _new_output(x, weight, stride, padding)
    if y.numel() == 0:
        return y
    C_in = x.shape[1]
    by_tap = tap_major(x)
    cfg = igemm_config(C_out, weight[0].numel(), config, C_in, by_tap)
    grid = (triton.cdiv(OH * OW, cfg["BLOCK_M"]), triton.cdiv(C_out, cfg["BLOCK_N"]), B)
    _conv_igemm_kernel[grid](
        x, *x.stride(), weight, *weight.stride(), x if scale is None else scale, x if bias is None else bias,
        y, *y.stride(), C_out, x.shape[2], x.shape[3], OH, OW,
        C_IN=C_in, KH=weight.shape[2], KW=weight.shape[3], STRIDE=stride, PAD=padding, TAP_MAJOR=by_tap,
        BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], BLOCK_K=cfg["BLOCK_K"], K_PAD=cfg["K_PAD"],
        HAS_SCALE=scale is not None, HAS_BIAS=bias is not None, RELU=relu, F32=x.dtype == torch.float32,
        UPCAST=_interpreting() and x.dtype != torch.float32, num_warps=cfg["num_warps"],
        num_stages=cfg["num_stages"])
    return y


def conv2d_igemm_ref(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None, stride: int = 1,
                     padding: int = 0, *, scale: Optional[Tensor] = None, relu: bool = False) -> Tensor:
    """The kernel's function in PyTorch: the weight rounded to x's dtype (as the kernel uses it),
    F.conv2d accumulated in float32 (float64 for float64), scale and bias applied at that precision,
    ReLU, rounded once; channels-last."""
    acc = torch.promote_types(x.dtype, torch.float32)
    y = F.conv2d(x.to(acc), weight.to(x.dtype).to(acc), None, stride=stride, padding=padding)
    if scale is not None:
        y = y * scale.to(acc)[:, None, None]
    if bias is not None:
        y = y + bias.to(acc)[:, None, None]
    if relu:
        y = y.clamp_min(0)
    return y.to(x.dtype).contiguous(memory_format=torch.channels_last)


@torch.library.custom_op("ssmzoo::conv2d_igemm", mutates_args=(), **STRIDE_ORDER_TAGS)
def conv2d_igemm_op(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: int, padding: int,
                    scale: Optional[Tensor] = None, relu: bool = False) -> Tensor:
    """``conv2d_igemm_triton`` as ``torch.ops.ssmzoo.conv2d_igemm``: one opaque node for torch.compile."""
    return conv2d_igemm_triton(x, weight, bias, stride, padding, scale=scale, relu=relu)


@conv2d_igemm_op.register_fake
def _conv2d_igemm_fake(x, weight, bias, stride, padding, scale=None, relu=False):
    return _new_output(x, weight, stride, padding)


def _weight_in_k_order(x: Tensor, weight: Tensor) -> Tensor:
    """The weight laid out in the kernel's reduction order (channels-last where the kernel runs tap by
    tap), so its loads are contiguous. Done outside the operator, where frozen weights let
    torch.compile fold it; the kernel itself takes any strides."""
    return weight.contiguous(memory_format=torch.channels_last) if tap_major(x) else weight


def conv2d_igemm(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: int, padding: int) -> Tensor:
    """The operator with autocast's casts (custom operators are not autocast): under autocast on x's
    device, x, weight and bias are cast to the autocast dtype first, as F.conv2d would have them."""
    x, weight, bias = autocast_inputs(x, weight, bias)
    return call_op(conv2d_igemm_op, x, _weight_in_k_order(x, weight), bias, stride, padding)


def conv2d_bn_relu_igemm(x: Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> Tensor:
    """``relu(bn(conv(x)))`` for an eval-mode batch norm, in one launch: the norm is folded to a
    float32 scale and shift applied to the conv's float32 accumulator, so the conv's output is
    written once, already normalised and rectified (unfused it is written, read and written again).
    Under autocast x and the weight are cast as F.conv2d would have them; the scale and shift stay
    float32. With frozen weights torch.compile folds the scale and shift to constants."""
    scale = bn.weight.float() * torch.rsqrt(bn.running_var.float() + bn.eps)
    shift = bn.bias.float() - bn.running_mean.float() * scale
    if conv.bias is not None:
        shift = shift + conv.bias.float() * scale
    x, weight = autocast_inputs(x, conv.weight)
    return call_op(conv2d_igemm_op, x, _weight_in_k_order(x, weight), shift, conv.stride[0], conv.padding[0], scale,
                   True)
