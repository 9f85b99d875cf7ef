"""Launch GroupMamba's 4-direction scan a few times on one shape, for a profiler (ncu, nsys) to catch.

    ncu -k regex:_group4 --launch-skip 2 --launch-count 1 python benchmarks/scan_once.py --layout cl --C 64 --H 56

--copy launches a plain device-to-device copy of the same byte count instead: the streaming
reference that the scan's DRAM throughput is compared with. Prints nothing but the chosen kernel.
"""
from __future__ import annotations

import argparse
import json

import torch

from benchmarks.scan import group_bytes, group_inputs
from ssmzoo.ops import triton_scan as ts

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layout", choices=["cl", "cf"], default="cl", help="channels-last / channel-first")
    parser.add_argument("--C", type=int, default=64)
    parser.add_argument("--H", type=int, default=56)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--config", default=None, help="JSON launch config (default: the library's)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--copy", action="store_true", help="a copy of the same byte count instead")
    args = parser.parse_args()
    dtype = DTYPES[args.dtype]
    gen = torch.Generator("cuda").manual_seed(0)
    if args.copy:
        n = int(group_bytes(args.batch, args.C, args.H, dtype) // 8)  # read + write: half each, float32
        src = torch.randn(n, device="cuda", generator=gen)
        dst = torch.empty_like(src)
        for _ in range(args.reps):  # an elementwise kernel (copy_ would be a cudaMemcpy, which ncu skips)
            torch.mul(src, 1.0, out=dst)
    else:
        inputs = group_inputs(args.batch, args.C, args.H, dtype, args.layout == "cl", gen)
        config = json.loads(args.config) if args.config else None
        for _ in range(args.reps):
            ts.group_scan_4dir_triton(**inputs, delta_softplus=True, config=config)
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
