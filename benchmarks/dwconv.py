"""Times the fused depthwise 3x3 conv + bias + activation (``ssmzoo.ops.triton_dwconv``) against
cuDNN's depthwise conv followed by a separate activation (eager), on GroupMamba's shapes.

    python benchmarks/dwconv.py [--models T,S,B] [--batch 128] [--dtype bfloat16] [--inductor]
    python benchmarks/dwconv.py --sweep [--models T]      # launch-config sweep: picks the defaults
    python benchmarks/dwconv.py --aot [--config '{...}']  # no GPU needed: compile for sm_90, count

Shapes (224 px, channels-last, as the models make them): stage s has an H x W = 56/2^s map; the
PVTv2 FFN's conv has embed_dim * mlp_ratio channels followed by GELU, the mixer's conv has embed_dim
(= 4 * d_inner) channels followed by SiLU. Per shape: median time (triton.testing.do_bench), effective
bandwidth (input read once + output written once + weight and bias) and its fraction of a
device-to-device copy measured in the same run, and the max abs error of each path against
``dwconv3x3_act_ref`` (float32 accumulation, TF32 off; the same rounding points as the kernel).
Inputs rotate among several copies so that small shapes are not timed out of the 50 MB L2.
``--inductor`` also times torch.compile of conv + activation (cuDNN conv + Inductor's bias/activation
kernel, as in the compiled model). The per-model line sums one block of each stage weighted by the
stage depths (FFN + mixer conv), i.e. the conv time of one forward at this batch.

``--aot`` compiles the kernel for sm_90 on any machine (``benchmarks/scan_aot.py``'s method: the
launch is intercepted and specialised as the JIT would, then compiled with Triton's ptxas) and prints
registers, spills, vector loads/stores and barriers for each shape: a check before device time.
"""

from __future__ import annotations

import argparse
import ast
import itertools
import json
import sys

import torch
import torch.nn.functional as F

import triton

from scan import rotating  # noqa: E402  (benchmarks/scan.py: the same L2 rotation)
from kernel_bench import common_args, dispatch, report_sweep  # noqa: E402
from ssmzoo.ops import triton_dwconv as td

MODELS = {  # (embed_dims, mlp_ratios, depths), from the authors' groupmamba.py
    "T": ((64, 128, 348, 448), (8, 8, 4, 4), (3, 4, 9, 3)),
    "S": ((64, 128, 348, 512), (8, 8, 4, 4), (3, 4, 16, 3)),
    "B": ((96, 192, 424, 512), (8, 8, 4, 4), (3, 6, 21, 3)),
}
RES = (56, 28, 14, 7)


def model_shapes(name: str) -> list[tuple[str, int, int, str, int]]:
    """(kind, C, H, activation, depth) per stage: the FFN conv (GELU) and the mixer conv (SiLU)."""
    dims, ratios, depths = MODELS[name]
    out = []
    for C, r, H, d in zip(dims, ratios, RES, depths):
        out.append(("ffn", C * r, H, "gelu", d))
        out.append(("mixer", C, H, "silu", d))
    return out


def bench(fn, rep: int = 100) -> float:
    return triton.testing.do_bench(fn, warmup=25, rep=rep, return_mode="median")


def conv_bytes(batch: int, C: int, H: int, dtype: torch.dtype) -> float:
    e = torch.tensor([], dtype=dtype).element_size()
    return e * (2 * batch * C * H * H + 10 * C)


def make_inputs(batch: int, C: int, H: int, dtype: torch.dtype, gen: torch.Generator):
    x = torch.randn(batch, H, H, C, device="cuda", generator=gen).to(dtype).permute(0, 3, 1, 2)  # channels-last
    w = (torch.randn(C, 1, 3, 3, device="cuda", generator=gen) / 3).to(dtype)
    b = torch.randn(C, device="cuda", generator=gen).to(dtype)
    return x, w, b


def eager(x, w, b, act):
    return getattr(F, act)(F.conv2d(x, w, b, padding=1, groups=x.shape[1]))


def max_err(y, ref) -> float:
    return (y.float() - ref.float()).abs().max().item()


# ---------------------------------------------------------------------------------------------
# GPU timings
# ---------------------------------------------------------------------------------------------

def run_table(args, shapes, dtype, gen, copy_gbs) -> None:
    print(f"{'shape':<26}{'cudnn+act us':>13}{'fused us':>10}{'speedup':>8}{'GB/s':>7}{'%copy':>7}"
          f"{'err fused':>10}{'err cudnn':>10}" + (f"{'inductor us':>12}" if args.inductor else ""), flush=True)
    times = {}
    for key in sorted(shapes, key=lambda k: (-k[1], k[0])):
        kind, H, C, act = key
        nb = conv_bytes(args.batch, C, H, dtype)
        nxt = rotating(lambda: make_inputs(args.batch, C, H, dtype, gen), nb)
        x, w, b = nxt()
        old_tf32 = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False
        ref = td.dwconv3x3_act_ref(x, w, b, act)
        torch.backends.cudnn.allow_tf32 = old_tf32
        err_fused = max_err(td.dwconv3x3_act_triton(x, w, b, act), ref)
        err_cudnn = max_err(eager(x, w, b, act), ref)
        del ref
        t_cudnn = bench(lambda: eager(*nxt(), act), args.rep)
        t_fused = bench(lambda: td.dwconv3x3_act_triton(*nxt(), act), args.rep)
        extra = ""
        if args.inductor:
            comp = torch.compile(lambda x, w, b: eager(x, w, b, act), dynamic=False)
            comp(x, w, b)
            extra = f"{bench(lambda: comp(*nxt()), args.rep) * 1e3:12.1f}"
        gbs = nb / t_fused / 1e6
        times[key] = (t_cudnn, t_fused)
        print(f"{kind + f' C{C} {H}x{H}':<26}{t_cudnn * 1e3:13.1f}{t_fused * 1e3:10.1f}{t_cudnn / t_fused:8.2f}"
              f"{gbs:7.0f}{100 * gbs / copy_gbs:7.1f}{err_fused:10.2g}{err_cudnn:10.2g}" + extra, flush=True)
    print(f"per model (batch {args.batch}, one forward's depthwise convs, depth-weighted):")
    for name in args.models:
        tc = sum(d * times[(k, H, C, a)][0] for k, C, H, a, d in model_shapes(name))
        tf = sum(d * times[(k, H, C, a)][1] for k, C, H, a, d in model_shapes(name))
        print(f"  GroupMamba-{name}: cudnn+act {tc:.2f} ms, fused {tf:.2f} ms (x{tc / tf:.2f})")


def sweep_configs(args) -> list[dict]:
    """Launch configs: the tile variant (BH x BW positions x BC channels) and the row-walking one
    (ROWS rows of a BW-wide strip, UNROLL input rows loaded per step where a row is at most 8 values
    per thread), 4 to 16 outputs per thread, BC <= 16 * num_warps (with wider
    channel blocks the sm_90 compile moves every input tile through shared memory; see --aot)."""
    if args.configs:
        return [dict(c) for c in ast.literal_eval(args.configs)]
    out = []
    for (BH, BW), BC, nw in itertools.product([(1, 8), (2, 8), (4, 8), (8, 8), (2, 16), (4, 16), (1, 32)],
                                              (32, 64, 128), (2, 4, 8)):
        if 4 <= BH * BW * BC // (32 * nw) <= 16 and BC <= 16 * nw:
            out.append(dict(BH=BH, BW=BW, BC=BC, num_warps=nw, ROWS=0))
    for ROWS, BW, BC, nw, UNROLL in itertools.product((8, 64), (8, 16, 32), (32, 64, 128), (2, 4, 8), (1, 2, 4)):
        if 4 <= BW * BC // (32 * nw) <= 16 and BC <= 16 * nw and (UNROLL == 1 or BW * BC // (32 * nw) <= 8):
            out.append(dict(BH=1, BW=BW, BC=BC, num_warps=nw, ROWS=ROWS, UNROLL=UNROLL))
    return out


def run_sweep(args, shapes, dtype, gen) -> None:
    """Every config on every shape; prints each config's depth-weighted total over the models and
    the best config per shape. Configs are given in full, so the clipping of ``dwconv_config`` to
    small maps/channel counts still applies (as it would for the default)."""
    configs = sweep_configs(args)
    print(f"sweep: {len(configs)} configs x {len(shapes)} shapes (batch {args.batch}, {dtype})", flush=True)
    data = {key: rotating(lambda key=key: make_inputs(args.batch, key[2], key[1], dtype, gen),
                          conv_bytes(args.batch, key[2], key[1], dtype)) for key in shapes}
    weight = {key: 0 for key in shapes}
    for name in args.models:
        for k, C, H, a, d in model_shapes(name):
            weight[(k, H, C, a)] += d
    results = []
    # an untimed first pass: timed first in the process, the default's small shapes came out 1.3-4x
    # slower than the identical config timed later (dwconv_prefetch_s16.txt)
    def time_all(config, rep):  # {shape: ms} with this launch config (None: the default)
        return {key: bench(lambda key=key: td.dwconv3x3_act_triton(*data[key](), key[3], config=config), rep)
                for key in shapes}

    time_all(None, 10)
    first = time_all(None, args.rep)
    for cfg in configs:
        try:
            t = time_all(cfg, args.rep)
        except Exception as exc:  # a config that fails to compile (e.g. out of resources) is reported
            print(f"  {cfg}: failed: {type(exc).__name__}: {str(exc)[:200]}", flush=True)
            continue
        total = sum(weight[k] * t[k] for k in shapes)
        results.append((total, cfg, t))
        print(f"  {json.dumps(cfg):<52} weighted total {total:.3f} ms", flush=True)
    # the default is timed again after the configs and the faster of its two timings counts: in
    # s18_run8.txt (a machine's first minutes) its first timing of every small shape came out at
    # ~85-95 us whatever the shape (57 us and less for the same shapes in later configs)
    last = time_all(None, args.rep)
    base = {key: min(first[key], last[key]) for key in shapes}
    slow = [key for key in shapes if first[key] > 1.1 * last[key]]
    if slow:
        print(f"  (the default's first timing was >10% slower on {len(slow)} of {len(shapes)} shapes; "
              f"its later timing counts)", flush=True)
    report_sweep(results, base, weight, td.DEFAULT_CONFIG, label=lambda k: f"{k[0]} C{k[2]} {k[1]}x{k[1]}",
                 order=lambda k: (-k[1], k[0]), json_path=args.json)


# ---------------------------------------------------------------------------------------------
# Ahead-of-time compile for sm_90 (no GPU)
# ---------------------------------------------------------------------------------------------

def run_aot(args, shapes, dtype) -> None:
    from scan_aot import catch_launch, compile_launch, stats  # benchmarks/ is on sys.path as a script

    config = ast.literal_eval(args.config) if args.config else None
    for key in sorted(shapes, key=lambda k: (-k[1], k[0])):
        kind, H, C, act = key
        x = torch.randn(2, H, H, C).to(dtype).permute(0, 3, 1, 2)
        w, b = torch.randn(C, 1, 3, 3).to(dtype), torch.randn(C).to(dtype)
        seen = catch_launch(td, "_dwconv3x3_kernel", lambda: td.dwconv3x3_act_triton(x, w, b, act, config=config))
        c = compile_launch(td._dwconv3x3_kernel, seen["args"], seen["kwargs"])
        kw = seen["kwargs"]
        cfg = {k: kw[k] for k in ("BH", "BW", "BC", "ALIGN", "num_warps")}
        print(f"{kind} C{C} {H}x{H} {act} {json.dumps(cfg)}\n    {stats(c)}", flush=True)
        if args.ttgir:
            print(c.asm["ttgir"])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="T,S,B", help="comma-separated subset of T,S,B")
    ap.add_argument("--inductor", action="store_true", help="also time torch.compile(conv + activation)")
    args = common_args(ap).parse_args()
    args.models = [m.strip().upper() for m in args.models.split(",") if m.strip()]
    dtype = getattr(torch, args.dtype)
    shapes = sorted({(k, H, C, a) for name in args.models for k, C, H, a, _ in model_shapes(name)})
    return dispatch(args, shapes, dtype, run_aot, run_sweep, run_table, note=", channels-last")

if __name__ == "__main__":
    sys.exit(main())
