"""Where a model's GPU time goes: torch.profiler over a few forward passes, top kernels by CUDA time.

Run: python benchmarks/profile_model.py groupmamba_tiny --batch-size 128 --dtype bf16
"""

from __future__ import annotations

import argparse

import timm
import torch
from torch.profiler import ProfilerActivity, profile

import ssmzoo  # noqa: F401
from ssmzoo.factory import compile_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="bf16")
    ap.add_argument("--frames", type=int, default=0, help="video input with this many frames")
    ap.add_argument("--rows", type=int, default=25)
    ap.add_argument("--compile", action="store_true", help="profile torch.compile(model)")
    ap.add_argument("--dwconv-op-in-compile", choices=["off", "ffn", "all"], default=None,
                    help="GroupMamba: which depthwise convs run the fused op inside the compiled graph "
                         "(groupmamba.FUSED_DWCONV_UNDER_COMPILE; default: the library's, all; off: "
                         "Inductor's cuDNN conv + fused activation)")
    args = ap.parse_args()
    if args.dwconv_op_in_compile:
        from ssmzoo.models import groupmamba

        groupmamba.FUSED_DWCONV_UNDER_COMPILE = {"all": True, "off": False, "ffn": "ffn"}[args.dwconv_op_in_compile]
    kwargs = {"num_frames": args.frames} if args.frames else {}
    model = timm.create_model(args.model, **kwargs).eval().cuda()
    shape = (args.batch_size, 3, args.frames, 224, 224) if args.frames else (args.batch_size, 3, 224, 224)
    x = torch.randn(shape, device="cuda")
    if args.compile:
        model = compile_model(model)  # with the Inductor work-around `ssmzoo benchmark` uses
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    ctx = (lambda: torch.autocast("cuda", dtype=dtype)) if dtype else (lambda: torch.autocast("cuda", enabled=False))
    with torch.no_grad(), ctx():
        for _ in range(3):
            model(x)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                model(x)
            torch.cuda.synchronize()
    print(f"{args.model} batch {args.batch_size} {args.dtype}{' compiled' if args.compile else ''}"
          f"{' dwconv op in compile: ' + args.dwconv_op_in_compile if args.dwconv_op_in_compile else ''}: 3 forwards")
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=args.rows, max_name_column_width=60))


if __name__ == "__main__":
    main()
