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
    ap.add_argument("--kernels", action="store_true",
                    help="also list every GPU kernel (full name, ms per forward, calls) and the share of "
                         "each kind: GEMM, depthwise conv, scan, other convs, Inductor's fused kernels, the rest")
    ap.add_argument("--gemm-shapes", action="store_true",
                    help="also list ATen's GEMM calls (mm, addmm, bmm; what Inductor hands to cuBLAS) by input "
                         "shapes, with their GPU time per forward")
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
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=args.gemm_shapes) as prof:
            for _ in range(3):
                model(x)
            torch.cuda.synchronize()
    print(f"{args.model} batch {args.batch_size} {args.dtype}{' compiled' if args.compile else ''}"
          f"{' dwconv op in compile: ' + args.dwconv_op_in_compile if args.dwconv_op_in_compile else ''}: 3 forwards")
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=args.rows, max_name_column_width=60))
    if args.kernels:
        print_kernels(prof, forwards=3)
    if args.gemm_shapes:
        print_gemm_shapes(prof, forwards=3)


def print_gemm_shapes(prof, forwards: int) -> None:
    """One row per (op, input shapes): which GEMMs the time goes to, e.g. to find misaligned widths."""
    rows = [e for e in prof.key_averages(group_by_input_shape=True)
            if e.key in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm") and e.device_time_total > 0]
    total = sum(e.device_time_total for e in rows)
    print(f"ATen GEMMs: {total / forwards / 1e3:.2f} ms per forward (ms per forward, calls per forward, op, input shapes):")
    for e in sorted(rows, key=lambda e: -e.device_time_total):
        print(f"  {e.device_time_total / forwards / 1e3:7.3f}  {e.count / forwards:5.1f}  {e.key:12s} {e.input_shapes}")


# Inductor names its pointwise / reduction kernels after the ops they fuse
# ("..._convolution_..._group_scan_4dir_..."), so they are told apart by prefix first
INDUCTOR_FUSED_PREFIXES = ("triton_poi_", "triton_per_", "triton_red_")
KERNEL_KINDS = (  # then the first substring match wins; names as the profiler reports the GPU kernels
    ("depthwise conv (ssmzoo)", ("_dwconv3x3_kernel",)),
    ("scan (ssmzoo)", ("_group4", "_plane", "_split_", "_scan_kernel", "_bimamba")),
    ("conv (cuDNN, ssmzoo igemm)", ("conv", "fprop", "_igemm")),  # cuDNN's implicit GEMMs say "gemm" too
    ("GEMM", ("gemm", "nvjet", "cutlass", "triton_mm", "triton_tem_fused_mm", "triton_tem_fused_addmm")),
)


def kernel_kind(name: str) -> str:
    low = name.lower()
    if low.startswith(INDUCTOR_FUSED_PREFIXES):
        return "Inductor fused"
    for kind, keys in KERNEL_KINDS:
        if any(k in low for k in keys):
            return kind
    return "other"


def print_kernels(prof, forwards: int) -> None:
    """GPU kernels only (device-side events), so the shares add up to the GPU's busy time."""
    # "## Call CompiledFxGraph ... ##" is a user annotation that torch 2.11 also reports as a device-side
    # event spanning the whole compiled call (76 of "93.6" ms in s18_prof_gm.txt): not a kernel
    kernels = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA
               and e.self_device_time_total > 0 and not e.key.startswith("## ")]
    total = sum(e.self_device_time_total for e in kernels)
    kind_of = {e.key: kernel_kind(e.key) for e in kernels}
    kinds: dict[str, float] = {}
    for e in kernels:
        kinds[kind_of[e.key]] = kinds.get(kind_of[e.key], 0.0) + e.self_device_time_total
    print(f"GPU busy {total / forwards / 1e3:.2f} ms per forward; by kind:")
    for kind, t in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:32s} {t / forwards / 1e3:7.3f} ms  {100 * t / total:5.1f}%")
    print("kernels (ms per forward, calls per forward, kind, name):")
    for e in sorted(kernels, key=lambda e: -e.self_device_time_total):
        print(f"  {e.self_device_time_total / forwards / 1e3:7.3f}  {e.count / forwards:5.1f}  "
              f"{kind_of[e.key][:12]:12s}  {e.key[:160]}")


if __name__ == "__main__":
    main()
