"""Times the fused PVTv2 FFN tail (``ssmzoo.ops.triton_ffn``: fc2(GELU(dwconv3x3(h) + b)) in one
kernel, the conv/GELU result never stored) against the unfused paths, on GroupMamba's FFN shapes.

    python benchmarks/ffn.py [--models T,S,B] [--batch 128] [--dtype bfloat16]
    python benchmarks/ffn.py --sweep [--models T]        # launch-config sweep (default: GroupMamba-T)
    python benchmarks/ffn.py --aot [--config '{...}']    # no GPU needed: compile for sm_90, count

Paths, all from fc1's output h (B, H*W, hid) bf16 by default (fc1 itself is common to all):
(a) eager: cuDNN depthwise conv (+ bias) -> F.gelu -> F.linear (fc2), the models' torch path;
(b) ssmzoo's fused conv + GELU kernel (``dwconv3x3_act``, h read once, the hidden result written
    once) -> F.linear (reads it again);
(c) the fused kernel (h read once, the output written once).
Per stage: median times (triton.testing.do_bench), effective bandwidth of (c) counting h read once
+ the output written once (+ weights), its fraction of a device-to-device copy measured in the same
run, and the max relative error of (b) and (c) against (a) (max |d| / max |a|; (a) rounds like (c)
except that cuDNN may round the conv before adding its bias). Inputs rotate among several copies so
that the small stages are not timed out of the 50 MB L2. The per-model lines sum the stages weighted
by their depths: one forward's FFN tails at this batch.

``--sweep`` times a list of launch configs (BM tokens x BN output channels x BK hidden channels,
num_warps, num_stages) on every stage and prints each config's depth-weighted total, the best ones
and the best per stage. ``--aot`` compiles the kernel for sm_90 on any machine
(``benchmarks/scan_aot.py``'s method) and prints registers, spills, shared memory and barriers.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys

import torch
import torch.nn.functional as F

import triton

from scan import rotating  # noqa: E402  (benchmarks/scan.py: the same L2 rotation)
from kernel_bench import common_args, dispatch, report_sweep  # noqa: E402
from ssmzoo.ops import triton_ffn as tf
from ssmzoo.ops.triton_dwconv import dwconv3x3_act_triton

MODELS = {  # (embed_dims, mlp_ratios, depths), as ssmzoo/models/groupmamba.py builds them (the authors')
    "T": ((64, 128, 348, 448), (8, 8, 4, 4), (3, 4, 9, 3)),
    "S": ((64, 128, 348, 512), (8, 8, 4, 4), (3, 4, 16, 3)),
    "B": ((96, 192, 424, 512), (8, 8, 4, 4), (3, 6, 21, 3)),
}
RES = (56, 28, 14, 7)


def model_shapes(name: str) -> list[tuple[int, int, int, int]]:
    """(C, hid, H, depth) per stage."""
    dims, ratios, depths = MODELS[name]
    return [(C, C * r, H, d) for C, r, H, d in zip(dims, ratios, RES, depths)]


def bench(fn, rep: int = 100) -> float:
    return triton.testing.do_bench(fn, warmup=25, rep=rep, return_mode="median")


def io_bytes(batch: int, C: int, hid: int, H: int, dtype: torch.dtype) -> float:
    """h read once + the output written once + the weights."""
    e = torch.tensor([], dtype=dtype).element_size()
    return e * (batch * H * H * (hid + C) + 10 * hid + hid * C + C)


def make_inputs(batch: int, C: int, hid: int, H: int, dtype: torch.dtype, gen: torch.Generator):
    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, device="cuda", generator=gen) * scale).to(dtype)
    return (rnd(batch, H * H, hid), rnd(hid, 1, 3, 3, scale=1 / 3), rnd(hid), rnd(C, hid, scale=hid ** -0.5),
            rnd(C))


def eager(h, cw, cb, fw, fb, H):
    B, L, hid = h.shape
    x = h.transpose(1, 2).reshape(B, hid, H, H)  # channels-last view, as DWConv makes it
    return F.linear(F.gelu(F.conv2d(x, cw, cb, padding=1, groups=hid)).flatten(2).transpose(1, 2), fw, fb)


def dwconv_then_linear(h, cw, cb, fw, fb, H):
    B, L, hid = h.shape
    x = h.transpose(1, 2).reshape(B, hid, H, H)
    return F.linear(dwconv3x3_act_triton(x, cw, cb, "gelu").flatten(2).transpose(1, 2), fw, fb)


def fused(h, cw, cb, fw, fb, H, config=None):
    return tf.dwconv_gelu_linear_triton(h, H, H, cw, cb, fw, fb, config=config)


def rel_err(y, ref) -> float:
    return ((y.float() - ref.float()).abs().max() / ref.float().abs().max()).item()


# ---------------------------------------------------------------------------------------------
# GPU timings
# ---------------------------------------------------------------------------------------------

def run_table(args, shapes, dtype, gen, copy_gbs) -> None:
    print(f"{'stage':<22}{'eager us':>10}{'dw+lin us':>10}{'fused us':>10}{'vs eager':>9}{'vs dw':>7}"
          f"{'GB/s':>7}{'%copy':>7}{'err dw':>9}{'err fused':>10}", flush=True)
    times = {}
    for key in sorted(shapes, key=lambda k: -k[2]):
        C, hid, H = key
        nb = io_bytes(args.batch, C, hid, H, dtype)
        nxt = rotating(lambda: make_inputs(args.batch, C, hid, H, dtype, gen), nb)
        inputs = nxt()
        ref = eager(*inputs, H)
        err_dw = rel_err(dwconv_then_linear(*inputs, H), ref)
        err_fused = rel_err(fused(*inputs, H), ref)
        del ref
        t = (bench(lambda: eager(*nxt(), H), args.rep), bench(lambda: dwconv_then_linear(*nxt(), H), args.rep),
             bench(lambda: fused(*nxt(), H), args.rep))
        times[key] = t
        gbs = nb / t[2] / 1e6
        print(f"{f'C{C} hid{hid} {H}x{H}':<22}{t[0] * 1e3:10.1f}{t[1] * 1e3:10.1f}{t[2] * 1e3:10.1f}"
              f"{t[0] / t[2]:9.2f}{t[1] / t[2]:7.2f}{gbs:7.0f}{100 * gbs / copy_gbs:7.1f}{err_dw:9.2g}"
              f"{err_fused:10.2g}", flush=True)
    print(f"per model (batch {args.batch}, one forward's FFN tails after fc1, depth-weighted):")
    for name in args.models:
        tot = [sum(d * times[(C, hid, H)][i] for C, hid, H, d in model_shapes(name)) for i in range(3)]
        print(f"  GroupMamba-{name}: eager {tot[0]:.2f} ms, dwconv+linear {tot[1]:.2f} ms, fused {tot[2]:.2f} ms "
              f"(x{tot[0] / tot[2]:.2f} vs eager, x{tot[1] / tot[2]:.2f} vs dwconv+linear)")


def sweep_configs(args) -> list[dict]:
    """32 configs over BM 32..128, BN 64..256, BK 32..64, num_warps 4/8, num_stages 1..3, with and
    without BLOCKED_A: 8 warps (the default) in tiles up to 64 x 256 x 64 and 128 x 128 x 32, each as
    plain loads (num_stages=1, BLOCKED_A), pipelined with BLOCKED_A and pipelined without it (Triton's
    own layout choice: the taps go through shared memory in the MMA operand layout); a few 4-warp
    tiles and 3-stage pipelines. The sm_90 compile (Triton 3.6) spills in some (BK=64 with BN >= 128
    at C >= 348, BM=128 with num_stages=1, most 4-warp tiles): they are kept to be measured. On the
    small-C stages several configs coincide once clipped: those are timed once."""
    if args.configs:
        return [dict(c) for c in ast.literal_eval(args.configs)]
    variants = ((1, True), (2, True), (2, False))
    out = [dict(BM=BM, BN=BN, BK=BK, num_warps=8, num_stages=ns, BLOCKED_A=blocked)
           for BM, BN, BK in [(64, 64, 32), (64, 128, 32), (64, 256, 32), (64, 64, 64), (64, 128, 64),
                              (64, 256, 64), (128, 64, 32), (128, 128, 32)]
           for ns, blocked in variants]
    out += [dict(BM=64, BN=BN, BK=32, num_warps=4, num_stages=ns, BLOCKED_A=blocked)
            for BN in (64, 128) for ns, blocked in ((1, True), (2, False))]
    out += [dict(BM=32, BN=BN, BK=BK, num_warps=4, num_stages=1, BLOCKED_A=True) for BN, BK in ((128, 64), (256, 32))]
    out += [dict(BM=64, BN=256, BK=32, num_warps=8, num_stages=3, BLOCKED_A=blocked) for blocked in (True, False)]
    return out


def run_sweep(args, shapes, dtype, gen) -> None:
    """Every config on every stage; configs are clipped by ``ffn_config`` (BN to the channel count,
    BM to the token count) as the default is, and a clipped config already timed on a stage is not
    timed again. Prints each config's depth-weighted total, the best ones and the best per stage."""
    configs = sweep_configs(args)
    print(f"sweep: {len(configs)} configs x {len(shapes)} stages (batch {args.batch}, {dtype})", flush=True)
    data = {key: rotating(lambda key=key: make_inputs(args.batch, *key, dtype, gen), io_bytes(args.batch, *key, dtype))
            for key in shapes}
    weight = {key: 0 for key in shapes}
    for name in args.models:
        for C, hid, H, d in model_shapes(name):
            weight[(C, hid, H)] += d
    seen: dict = {}

    def timed(key, cfg):
        eff = json.dumps(tf.ffn_config(key[0], key[1], key[2], key[2], cfg), sort_keys=True)
        if (key, eff) not in seen:
            seen[(key, eff)] = bench(lambda: fused(*data[key](), key[2], cfg), args.rep)
        return seen[(key, eff)]

    base = {key: timed(key, None) for key in shapes}
    results = []
    for cfg in configs:
        try:
            t = {key: timed(key, cfg) for key in shapes}
        except Exception as exc:  # a config that fails to compile (e.g. out of shared memory) is reported
            print(f"  {json.dumps(cfg)}: failed: {type(exc).__name__}: {str(exc)[:160]}", flush=True)
            continue
        total = sum(weight[k] * t[k] for k in shapes)
        results.append((total, cfg, t))
        print(f"  {json.dumps(cfg):<100} weighted total {total:.3f} ms  "
              + " ".join(f"{t[k] * 1e3:.0f}" for k in sorted(shapes, key=lambda k: -k[2])), flush=True)
    report_sweep(results, base, weight, tf.DEFAULT_CONFIG, label=lambda k: f"C{k[0]} hid{k[1]} {k[2]}x{k[2]}",
                 order=lambda k: -k[2], json_path=args.json)


# ---------------------------------------------------------------------------------------------
# Ahead-of-time compile for sm_90 (no GPU)
# ---------------------------------------------------------------------------------------------

def run_aot(args, shapes, dtype) -> None:
    from scan_aot import catch_launch, compile_launch, stats  # benchmarks/ is on sys.path as a script

    config = ast.literal_eval(args.config) if args.config else None
    for key in sorted(shapes, key=lambda k: -k[2]):
        C, hid, H = key
        inputs = [t.cpu() for t in make_cpu_inputs(C, hid, H, dtype)]
        seen = catch_launch(tf, "_ffn_kernel",
                            lambda: tf.dwconv_gelu_linear_triton(inputs[0], H, H, *inputs[1:], config=config))
        c = compile_launch(tf._ffn_kernel, seen["args"], seen["kwargs"])
        kw = seen["kwargs"]
        cfg = {k: kw[k] for k in ("BM", "BN", "BK", "A_H", "A_C", "BLOCKED_A", "num_warps", "num_stages")}
        mma = re.search(r"nvidia_mma<[^>]*warpsPerCTA = (\[\d+, \d+\])", c.asm["ttgir"])
        print(f"C{C} hid{hid} {H}x{H} {json.dumps(cfg)}\n    {stats(c)} mma warps {mma and mma.group(1)}", flush=True)
        if args.ttgir:
            print(c.asm["ttgir"])


def make_cpu_inputs(C: int, hid: int, H: int, dtype: torch.dtype):
    """Small CPU tensors of the stage's widths (batch 2): only shapes, strides and alignment matter."""
    return (torch.randn(2, H * H, hid).to(dtype), torch.randn(hid, 1, 3, 3).to(dtype), torch.randn(hid).to(dtype),
            torch.randn(C, hid).to(dtype), torch.randn(C).to(dtype))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=None, help="comma-separated subset of T,S,B (default: all; T for --sweep)")
    args = common_args(ap).parse_args()
    args.models = [m.strip().upper() for m in (args.models or ("T" if args.sweep else "T,S,B")).split(",") if m.strip()]
    dtype = getattr(torch, args.dtype)
    shapes = sorted({(C, hid, H) for name in args.models for C, hid, H, _ in model_shapes(name)})
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # float32: no TF32 anywhere
    return dispatch(args, shapes, dtype, run_aot, run_sweep, run_table)


if __name__ == "__main__":
    sys.exit(main())
