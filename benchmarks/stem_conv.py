"""Times GroupMamba's stem convs: cuDNN against the Triton implicit GEMM (``ssmzoo.ops.triton_conv``)
and a few of its launch configs. The first conv (3 -> 32/64 channels, 7x7, stride 2, 224 -> 112); with
``--middle`` the channels-last 3x3 convs after it (32 -> 32 and 64 -> 64 with a batch norm + ReLU,
the proj 32 -> 64 and 64 -> 96, stride 2), cuDNN's conv timed with and without the eager norm + ReLU.

    python benchmarks/stem_conv.py [--batch 128] [--dtype bfloat16] [--middle]

Per shape: median time (triton.testing.do_bench), effective bandwidth (input read once + output
written once) against a device-to-device copy measured in the same run, and each path's max abs error
against ``conv2d_igemm_ref`` (float32 accumulation, TF32 off).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

import triton

from scan import copy_bandwidth  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
from ssmzoo.ops import triton_conv as tc

CONFIGS = [dict(BLOCK_M=m, BLOCK_K=k, num_warps=w) for m, k, w in
           [(128, 32, 4), (64, 32, 4), (256, 32, 8), (128, 16, 4), (128, 64, 4), (128, 32, 8), (64, 16, 2)]]
MIDDLE_CONFIGS = [dict(BLOCK_M=m, BLOCK_K=k, num_warps=w, num_stages=s) for m, k, w, s in
                  [(128, 64, 4, 1), (128, 64, 4, 2), (128, 64, 4, 3), (128, 32, 4, 1), (128, 32, 4, 2), (128, 32, 4, 3),
                   (128, 32, 4, 4), (64, 32, 4, 3), (64, 64, 4, 2), (128, 32, 8, 3), (256, 32, 8, 2), (256, 32, 8, 3),
                   (256, 64, 8, 1), (256, 64, 8, 2), (128, 16, 4, 4), (256, 16, 8, 4)]]
# (C_in, C_out, stride, batch norm + ReLU)
MIDDLE_SHAPES = [(32, 32, 1, True), (32, 64, 2, False), (64, 64, 1, True), (64, 64, 2, False), (64, 96, 2, False)]


def bench(fn) -> float:
    return triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median")


def reference(x, w, bias, stride, padding, **epilogue):
    """``conv2d_igemm_ref`` with TF32 off (cuDNN's float32 accumulation) and the bytes moved (x read
    once, the output written once)."""
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    ref = tc.conv2d_igemm_ref(x, w, bias, stride, padding, **epilogue)
    torch.backends.cudnn.allow_tf32 = old
    return ref, x.numel() * x.element_size() + ref.numel() * ref.element_size()


def print_rows(rows, ref, nbytes: int, copy_gbs: float) -> None:
    """One line per (name, fn, output): median time, bandwidth, share of copy, max error vs ``ref``."""
    for name, fn, out in rows:
        ms = bench(fn)
        gbs = nbytes / ms / 1e6
        err = (out.float() - ref.float()).abs().max().item()
        print(f"  {name:<58}{ms * 1e3:9.1f} us{gbs:7.0f} GB/s{100 * gbs / copy_gbs:6.1f}%  max err {err:.3g}",
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--middle", action="store_true", help="the 3x3 convs after the first (channels-last)")
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    torch.backends.cudnn.benchmark = True
    copy_gbs = copy_bandwidth()
    print(f"device: {torch.cuda.get_device_name()}; torch {torch.__version__}, triton {triton.__version__}; "
          f"copy {copy_gbs:.0f} GB/s; batch {args.batch}, {dtype}", flush=True)
    if args.middle:
        return middle(args.batch, dtype, copy_gbs)
    for c_out in (32, 64):
        x = torch.randn(args.batch, 3, 224, 224, device="cuda").to(dtype)
        w = (torch.randn(c_out, 3, 7, 7, device="cuda") / 7).to(dtype)
        ref, nbytes = reference(x, w, None, 2, 3)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        w_cl = w.contiguous(memory_format=torch.channels_last)
        rows = [("cudnn NCHW in", lambda: F.conv2d(x, w, None, 2, 3), F.conv2d(x, w, None, 2, 3)),
                ("cudnn channels-last", lambda: F.conv2d(x_cl, w_cl, None, 2, 3), F.conv2d(x_cl, w_cl, None, 2, 3))]
        for cfg in CONFIGS:
            rows.append((f"igemm {cfg}", lambda cfg=cfg: tc.conv2d_igemm_triton(x, w, None, 2, 3, config=cfg),
                         tc.conv2d_igemm_triton(x, w, None, 2, 3, config=cfg)))
        print(f"3 -> {c_out} channels, 7x7 stride 2, 224x224 -> 112x112:")
        print_rows(rows, ref, nbytes, copy_gbs)


def middle(batch: int, dtype: torch.dtype, copy_gbs: float) -> None:
    for c_in, c_out, stride, bn in MIDDLE_SHAPES:
        x = torch.randn(batch, c_in, 112, 112, device="cuda").to(dtype).contiguous(memory_format=torch.channels_last)
        w = (torch.randn(c_out, c_in, 3, 3, device="cuda") / (3 * c_in ** 0.5)).to(dtype)
        w_cl = w.contiguous(memory_format=torch.channels_last)
        scale = torch.rand(c_out, device="cuda") + 0.5 if bn else None
        bias = torch.randn(c_out, device="cuda")
        ref, nbytes = reference(x, w, bias, stride, 1, scale=scale, relu=bn)
        b16 = bias.to(dtype)

        def cudnn_bn_relu():
            y = F.conv2d(x, w_cl, None, stride, 1)
            return torch.relu(y * scale[:, None, None] + bias[:, None, None]).to(dtype)
        rows = [("cudnn conv alone", lambda: F.conv2d(x, w_cl, b16, stride, 1), F.conv2d(x, w_cl, b16, stride, 1))]
        if bn:
            rows.append(("cudnn conv + eager norm + ReLU", cudnn_bn_relu, cudnn_bn_relu()))
        for cfg in [None] + [c for c in MIDDLE_CONFIGS if c["BLOCK_K"] <= c_in]:  # None: the shape's default
            fn = (lambda cfg=cfg: tc.conv2d_igemm_triton(x, w, bias, stride, 1, scale=scale, relu=bn, config=cfg))
            rows.append((f"igemm {cfg or 'default'}", fn, fn()))
        print(f"{c_in} -> {c_out} channels, 3x3 stride {stride}, 112x112, channels-last"
              f"{', batch norm + ReLU' if bn else ''}:")
        print_rows(rows, ref, nbytes, copy_gbs)


if __name__ == "__main__":
    main()
