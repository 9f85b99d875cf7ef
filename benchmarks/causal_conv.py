"""VideoMamba's causal conv1d + SiLU: the Triton kernel against what the mixer ran before it.

For VideoMamba-S shapes (d_inner 768, width 4; image: batch 128 x 197 tokens, video: batch 8 x 3,137
tokens), both directions: time of ``causal_conv1d_silu_triton`` on the mixer's input (a channel
half of the token-major in-projection), GB/s (x read once, y written once) and that as a fraction
of the device-to-device copy bandwidth measured in the same run, against the eager PyTorch path
(flip for the backward direction, F.conv1d, F.silu, the transpose copy to token-major). --sweep
times launch configs instead.

Run: PYTHONPATH=. python benchmarks/causal_conv.py [--dtype bfloat16] [--sweep]
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scan import bench, copy_bandwidth  # noqa: E402

from ssmzoo.ops.triton_causal_conv import causal_conv1d_silu_ref, causal_conv1d_silu_triton  # noqa: E402

SHAPES = {"image": (128, 768, 197), "video": (8, 768, 3137)}


def eager(x, w, b, reverse):
    xs = x.flip(-1) if reverse else x
    y = F.silu(F.conv1d(xs, w, b, padding=w.shape[-1] - 1, groups=x.shape[1])[..., :x.shape[-1]])
    return y.transpose(1, 2).contiguous()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--sweep", action="store_true")
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    copy = copy_bandwidth()
    print(f"device: {torch.cuda.get_device_name()}; copy {copy:.0f} GB/s (read + write); {args.dtype}")
    gen = torch.Generator(device="cuda").manual_seed(0)
    for name, (batch, dim, L) in SHAPES.items():
        xz = torch.randn(batch, L, 2 * dim, device="cuda", generator=gen).to(dtype)
        x = xz.transpose(1, 2)[:, :dim]
        w = (torch.randn(dim, 1, 4, device="cuda", generator=gen) / 2).to(dtype)
        b = torch.randn(dim, device="cuda", generator=gen).to(dtype)
        nbytes = 2 * x.numel() * x.element_size()
        for reverse in (False, True):
            label = f"{name} {'backward' if reverse else 'forward '}"
            if args.sweep:
                for BL, BD, nw in itertools.product((16, 32, 64), (64, 128, 256), (2, 4, 8)):
                    cfg = dict(BL=BL, BD=BD, num_warps=nw)
                    ms = bench(lambda: causal_conv1d_silu_triton(x, w, b, reverse, config=cfg), rep=50)
                    print(f"{label} {cfg}: {ms * 1e3:8.1f} us  {nbytes / ms / 1e6 / copy:6.1%} of copy")
                continue
            ms = bench(lambda: causal_conv1d_silu_triton(x, w, b, reverse))
            ms_eager = bench(lambda: eager(x, w, b, reverse))
            y = causal_conv1d_silu_triton(x, w, b, reverse).double()
            ref = causal_conv1d_silu_ref(x, w, b, reverse).double()
            err = ((y - ref).norm() / ref.norm()).item()
            gbs = nbytes / ms / 1e6
            print(f"{label}: triton {ms * 1e3:7.1f} us = {gbs:6.0f} GB/s = {gbs / copy:5.1%} of copy; "
                  f"eager {ms_eager * 1e3:7.1f} us (x{ms_eager / ms:.1f}); rel err vs ref {err:.1e}")


if __name__ == "__main__":
    main()
