"""Times the Triton scans on the vision models' real shapes against the PyTorch path.

    PYTHONPATH=. python3 benchmarks/scan.py [--sweep] [--json out.json]
    PYTHONPATH=. python3 benchmarks/scan.py --lookback | --probe | --plane   # GroupMamba-only sweeps
    PYTHONPATH=. python3 benchmarks/scan.py --strips [--configs '[{...}]'] [--maps 56,28]   # channel-first: strip kernel / configs
    PYTHONPATH=. python3 benchmarks/scan.py --sized-copy   # a copy of each stage's bytes, timed as the kernels
    PYTHONPATH=. python3 benchmarks/scan.py --model-layout T [--configs '[{...}]'] [--layouts tokens,groups]
    PYTHONPATH=. python3 benchmarks/scan.py --norm-gate T   # the scan with the out_norm and gate fused

Prints one table: median time per call (CUDA-graph replays, ``bench``), effective bandwidth (every input read once
+ the output written once), that bandwidth as a fraction of a device-to-device copy measured in the
same run, for GroupMamba also the fastest SM copy of the row's own bytes timed like the kernel (%same:
how near the kernel is to what a copy of that size reaches), and the speed-up over the PyTorch path (``selective_scan_chunked`` with the explicit
flip/transpose copies around it, i.e. the models' torch fallback). Inputs rotate among several
copies so that small shapes are not timed out of the 50 MB L2 cache.

GroupMamba (224x224, batch 128): stage s has an H x W = 56/2^s map and C channels; each of the 4
groups scans d = C/4 channels (ssm_ratio 1, d_state 1), in float32 (the authors force float32).
VideoMamba-S: d_inner 768, d_state 16; image 197 tokens (batch 128), 16-frame video 3137 tokens.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys

import torch
import triton
import triton.testing
import triton.language as tl

from ssmzoo.ops import selective_scan_chunked
from ssmzoo.ops import triton_scan as ts
from ssmzoo.ops.triton_bimamba import bimamba_scan_seq_triton, bimamba_scan_split_triton, layout_flags, split_config

GROUPMAMBA = {  # embed_dims per stage, from the authors' groupmamba.py (classification/models)
    "T": [64, 128, 348, 448],
    "S": [64, 128, 348, 512],
    "B": [96, 192, 424, 512],
}
RES = [56, 28, 14, 7]
L2_ROTATE_BYTES = 400e6


def bench(fn, rep=200) -> float:
    """Median ms per call over CUDA-graph replays of many calls: the GPU time of the kernels. Timed
    call by call (``do_bench``), the host's launch work (~150-400 us per call of the group scan's
    Python launcher) exceeded the GPU time of the small maps' kernels and varied from pass to pass, so
    those rows measured the host (docs/gpu_runs/s24_run8.txt)."""
    return triton.testing.do_bench_cudagraph(fn, rep=rep // 2, return_mode="median")


def slow_bench(fn, reps=3) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]


def copy_bandwidth() -> float:
    src = torch.randn(256 * 2**20, device="cuda")  # 1 GiB
    dst = torch.empty_like(src)
    # timed call by call (a 1 GiB copy is GPU-bound): replayed from a CUDA graph the same copy ran at
    # 2,438 GB/s instead of 2,999 (docs/gpu_runs/s24_run9.txt), which would flatter every ratio
    ms = triton.testing.do_bench(lambda: dst.copy_(src), warmup=25, rep=200, return_mode="median")
    return 2 * src.numel() * 4 / ms / 1e6  # GB/s, read + write


def rotating(make, set_bytes: float):
    """Several independent input sets when one set would fit in L2."""
    n = max(1, min(8, math.ceil(L2_ROTATE_BYTES / set_bytes)))
    sets = [make() for _ in range(n)]
    state = {"i": 0}

    def next_set():
        state["i"] = (state["i"] + 1) % n
        return sets[state["i"]]
    return next_set


def group_inputs(batch, C, H, dtype, channels_last, gen):
    d, N = C // 4, 1

    def amap(c, scale=1.0):
        if channels_last:
            return (torch.randn(batch, H, H, 4, c, device="cuda", generator=gen) * scale).to(dtype).permute(0, 3, 4, 1, 2)
        return (torch.randn(batch, 4, c, H, H, device="cuda", generator=gen) * scale).to(dtype)
    return dict(u=amap(d), delta=amap(d, 0.5), A=-torch.exp(torch.randn(4, d, N, device="cuda", generator=gen) * 0.5),
                B=amap(N), C=amap(N), D=torch.randn(4, d, device="cuda", generator=gen),
                delta_bias=torch.randn(4, d, device="cuda", generator=gen) * 0.1)


def group_bytes(batch, C, H, dtype) -> float:
    e = torch.tensor([], dtype=dtype).element_size()
    L = H * H
    return e * (3 * batch * C * L + 2 * batch * 4 * L) + 4 * 3 * C


def bimamba_inputs(batch, dim, L, N, dtype, gen, channels_last=False):
    """channels_last: (batch, L, .) memory seen as (batch, ., L), as VideoMamba's in_proj makes them."""
    def seq(*shape, scale=1.0):
        if channels_last:
            return (torch.randn(shape[0], shape[2], shape[1], device="cuda", generator=gen) * scale).to(dtype).transpose(1, 2)
        return (torch.randn(*shape, device="cuda", generator=gen) * scale).to(dtype)

    def par(*shape, scale=1.0):
        return torch.randn(*shape, device="cuda", generator=gen) * scale
    return dict(u=seq(batch, dim, L), delta=seq(batch, dim, L, scale=0.5), A=-torch.exp(par(dim, N, scale=0.5)),
                B=seq(batch, N, L), C=seq(batch, N, L), D=par(dim),
                u_b=seq(batch, dim, L), delta_b=seq(batch, dim, L, scale=0.5), A_b=-torch.exp(par(dim, N, scale=0.5)),
                B_b=seq(batch, N, L), C_b=seq(batch, N, L), D_b=par(dim), z=seq(batch, dim, L),
                delta_bias=par(dim, scale=0.1), delta_bias_b=par(dim, scale=0.1), delta_softplus=True,
                backward_flipped=True)


def bimamba_bytes(batch, dim, L, N, dtype) -> float:
    e = torch.tensor([], dtype=dtype).element_size()
    return e * (6 * batch * dim * L + 4 * batch * N * L)


def rel_err(out, ref) -> float:
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


# CHAINED 1 waits for the predecessor's inclusive state (deterministic), 0 is the decoupled look-back
LOOKBACK_CONFIGS = [dict(LOOKBACK=1, SEG=seg, BD=bd, num_warps=nw, CHAINED=ch)
                    for seg, bd, nw, ch in [(64, 16, 2, 1), (64, 16, 2, 0), (128, 16, 4, 1), (32, 16, 2, 1),
                                            (128, 16, 4, 0)]]


MAP_SIZES = None  # --maps: only these map sizes (H) in the GroupMamba sweeps


def group_stage_inputs(gen, variants):
    """Every GroupMamba stage shape at batch 128, largest map first, in each (dtype, channels_last) of
    ``variants``: yields (C, H, dtype, channels_last, bytes, next input set)."""
    for C, H in sorted({(C, r) for dims in GROUPMAMBA.values() for C, r in zip(dims, RES)}, key=lambda t: -t[1]):
        if MAP_SIZES and H not in MAP_SIZES:
            continue
        for dtype, cl in variants:
            nb = group_bytes(128, C, H, dtype)
            yield C, H, dtype, cl, nb, rotating(lambda: group_inputs(128, C, H, dtype, cl, gen), nb)


def default_vs_configs(gen, record, title: str, variants, kernel: str, configs, label) -> None:
    """Every GroupMamba stage shape (batch 128) in each (dtype, channels_last) of ``variants``: the
    default kernel, then each of ``configs(H)``, whose output is checked against the default's;
    ``label(cfg)`` names a config in the table."""
    print(title, flush=True)
    for C, H, dtype, cl, nb, nxt in group_stage_inputs(gen, variants):
        x = nxt()
        ref = ts.group_scan_4dir_triton(**x, delta_softplus=True)
        layout = "bhwc" if cl else "bchw"
        ms = bench(lambda: ts.group_scan_4dir_triton(**nxt(), delta_softplus=True))
        record(f"gm {layout} default", f"C{C} {H}x{H} d{C // 4}", dtype, ms, nb)
        for cfg in configs(H):
            try:
                err = rel_err(ts.group_scan_4dir_triton(**x, delta_softplus=True, config=cfg), ref)
                ms = bench(lambda: ts.group_scan_4dir_triton(**nxt(), delta_softplus=True, config=cfg))
                record(f"gm {layout} {kernel}", f"C{C} {H}x{H} d{C // 4}", dtype, ms, nb, err=err, extra=label(cfg))
            except Exception as exc:  # a config that does not compile is reported, not fatal
                print(f"  config {cfg} failed: {type(exc).__name__}: {exc}", flush=True)


def lookback_sweep(gen, record) -> None:
    """The default kernel vs the look-back kernel's configs, both layouts."""
    default_vs_configs(
        gen, record, "GroupMamba fused scan: default kernel vs look-back configs (batch 128):",
        [(torch.float32, True), (torch.bfloat16, True), (torch.float32, False)], "lookback",
        lambda H: LOOKBACK_CONFIGS,
        lambda cfg: f"SEG {cfg['SEG']} BD {cfg['BD']} nw {cfg['num_warps']} chained {cfg['CHAINED']}")


def probe_sweep(gen, record) -> None:
    """What bounds the look-back kernel: the same tiles with the wait for the predecessor skipped
    (PROBE 1), also the scan (2), and as a plain copy of the tiles in the same order (3). Timing
    only: probes 1-3 give wrong outputs."""
    print("GroupMamba look-back kernel and its probes (batch 128, channels-last):", flush=True)
    for C, H, dtype, cl, nb, nxt in group_stage_inputs(gen, [(torch.float32, True), (torch.bfloat16, True)]):
        if H not in (56, 28):
            continue
        for seg, nw in [(64, 2), (128, 4)]:
            for probe in (0, 1, 2, 3):
                cfg = dict(LOOKBACK=1, SEG=seg, BD=16, num_warps=nw, CHAINED=1, PROBE=probe)
                ms = bench(lambda: ts.group_scan_4dir_triton(**nxt(), delta_softplus=True, config=cfg))
                record(f"gm bhwc probe {probe}", f"C{C} {H}x{H} d{C // 4}", dtype, ms, nb,
                       extra=f"SEG {seg} BD 16 nw {nw}")


PLANE_CONFIGS = {  # whole-plane tiles (RUNS=0): (BD, num_warps) per map size, 4-16 elements per thread per tensor
    56: [(1, 8), (1, 16), (1, 4)],
    28: [(1, 2), (1, 4), (2, 4), (4, 8)],
    14: [(4, 2), (4, 4), (8, 4), (16, 8)],
    7: [(16, 2), (16, 4), (32, 4), (64, 8)],
}


PLANE_RUNS_CONFIGS = {  # the plane kernel's runs (its default on maps up to 16x16): (RUNS, BD, num_warps);
    # BD / num_warps planes per warp. Session 28's sweep (s28_run1.txt) chose the defaults at 14x14 and 7x7.
    # None at 28x28 and 56x56: the chunks, unrolled, compile for tens of seconds each (s28_run2.txt timed
    # out compiling them), and the row and column runs of the default kernel reach 77-80% there.
    56: [],
    28: [],
    14: [(4, 2, 2), (4, 1, 1), (8, 2, 2), (4, 8, 8), (8, 4, 4)],
    7: [(2, 4, 2), (2, 8, 2), (2, 2, 1), (2, 16, 4), (2, 32, 8)],
}


@triton.jit
def _copy_kernel(src, dst, n, BLOCK: tl.constexpr):
    """A plain SM copy (``same_bytes_copy_ms``, benchmarks/copy_ceiling.py)."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(dst + offs, tl.load(src + offs, mask=mask), mask=mask)


def triton_copy(dst, src, block: int, warps: int) -> None:
    n = src.numel()
    _copy_kernel[(triton.cdiv(n, block),)](src, dst, n, BLOCK=block, num_warps=warps)


# The SM copies ``same_bytes_copy_ms`` takes the fastest of (docs/gpu_runs/s29_run1.txt: each was the
# fastest on some stage size; torch's copy_ was the slowest on every one)
SAME_BYTES_COPIES = {
    "add": lambda dst, src: torch.add(src, 0.0, out=dst),
    "triton B1024 w4": lambda dst, src: triton_copy(dst, src, 1024, 4),
    "triton B2048 w4": lambda dst, src: triton_copy(dst, src, 2048, 4),
    "triton B4096 w4": lambda dst, src: triton_copy(dst, src, 4096, 4),
}


def sized_copy_ms(nbytes: float, copy, gen) -> float:
    """``copy(dst, src)`` of ``nbytes`` (half read, half written, float32 buffers) timed like the kernels
    (graph replays, rotating buffers)."""
    half = int(nbytes // 8)  # float32 elements read (and as many written)
    nxt = rotating(lambda: (torch.empty(half, device="cuda"), torch.randn(half, device="cuda", generator=gen)),
                   nbytes)

    def call():
        dst, src = nxt()
        copy(dst, src)
    return bench(call)


def same_bytes_copy_ms(nbytes: float, gen) -> float:
    """The fastest SM copy of ``nbytes`` timed like the kernels: the 1 GiB copy of the %copy column is
    the issue's reference, but a copy of 15-50 MB pays a launch and a tail of its own. Not ``copy_``:
    captured in a CUDA graph it becomes a memcpy node, which ran ~20% slower than an SM copy of the
    same bytes (docs/gpu_runs/s29_run1.txt; session 28's %same column used it)."""
    return min(sized_copy_ms(nbytes, copy, gen) for copy in SAME_BYTES_COPIES.values())


def sized_copy_sweep(gen, record) -> None:
    """What a plain (SM) copy of each GroupMamba stage's bytes reaches at that size (``same_bytes_copy_ms``)."""
    print("A device-to-device copy of each GroupMamba stage's bytes (fp32, batch 128), timed as the kernels:",
          flush=True)
    for C, H, dtype, cl, nb, _ in group_stage_inputs(gen, [(torch.float32, False)]):
        record("copy same bytes", f"C{C} {H}x{H} d{C // 4}", dtype, same_bytes_copy_ms(nb, gen), int(nb // 8) * 8)


def plane_sweep(gen, record, configs=None) -> None:
    """Channel-first maps: the default kernel vs the plane kernel (ssmzoo/ops/triton_plane.py) with its
    default config (runs), its whole-plane tiles (RUNS=0, default and PLANE_CONFIGS), then more runs
    (PLANE_RUNS_CONFIGS); or vs ``configs`` (each with PLANE=1 added)."""
    def candidates(H):
        if configs:
            return [dict(cfg, PLANE=1) for cfg in configs]
        return ([dict(PLANE=1), dict(PLANE=1, RUNS=0)]
                + [dict(PLANE=1, RUNS=0, BD=bd, num_warps=nw) for bd, nw in PLANE_CONFIGS[H]]
                + [dict(PLANE=1, RUNS=r, BD=bd, num_warps=nw) for r, bd, nw in PLANE_RUNS_CONFIGS[H]])
    default_vs_configs(
        gen, record, "GroupMamba fused scan, channel-first: default kernel vs plane kernel (batch 128):",
        [(torch.float32, False), (torch.bfloat16, False)], "plane", candidates, str)


STRIP_CONFIGS = [dict(STRIPS=1)] + [dict(STRIPS=1, SEG=seg, KC=kc, num_warps=nw) for seg, kc, nw in
                                    [(512, 8, 1), (512, 8, 4), (256, 4, 2), (1024, 16, 4)]]


def strips_sweep(gen, record, configs=None) -> None:
    """Channel-first maps: the default kernel vs the strip kernel (ssmzoo/ops/triton_strips.py) with its
    default config and the ones in STRIP_CONFIGS (SEG/KC are per-shape defaults where absent)."""
    default_vs_configs(
        gen, record, "GroupMamba fused scan, channel-first: default kernel vs "
                     + ("these configs" if configs else "strip kernel") + " (batch 128):",
        [(torch.float32, False), (torch.bfloat16, False)], "config" if configs else "strips",
        lambda H: configs or STRIP_CONFIGS, lambda cfg: json.dumps(cfg))


def model_layout_inputs(batch, C, H, gen, layout="tokens"):
    """The scan's operands as GroupMamba's compiled CUDA forward hands them over (bf16 autocast), y float32.

    "tokens" (the model today): u the depthwise conv's channels-last bf16 output (batch, H, W, C),
    delta/B/C strided views of one bf16 x_proj GEMM output whose rows (every group's delta, then B,
    then C) Inductor pads to a multiple of 8. "groups" (a candidate, docs/scan_notes.md item 6): every
    operand group-major, u (batch, 4, H, W, d) and x_proj per group (batch, 4, H, W, d + 2: delta, B,
    C), so that a group's values at consecutive positions are one block of memory; y likewise.
    "groups_t": the same memory with groups 1 and 3 holding their maps transposed (the look-back
    kernel's COLS_T), so that every group's scan order walks memory in order."""
    d = C // 4
    A = -torch.exp(torch.randn(4, d, 1, device="cuda", generator=gen) * 0.5)
    params = dict(A=A, D=torch.randn(4, d, device="cuda", generator=gen),
                  delta_bias=torch.randn(4, d, device="cuda", generator=gen) * 0.1)
    if layout in ("groups", "groups_t"):  # (random values: the transposition is only how they are read)
        u = torch.randn(batch, 4, H, H, d, device="cuda", generator=gen).to(torch.bfloat16)
        x_dbl = (torch.randn(batch, 4, H, H, d + 2, device="cuda", generator=gen) * 0.5).to(torch.bfloat16)
        to_scan = lambda t: t.permute(0, 1, 4, 2, 3)  # noqa: E731
        return dict(u=to_scan(u), delta=to_scan(x_dbl[..., :d]), B=to_scan(x_dbl[..., d:d + 1]),
                    C=to_scan(x_dbl[..., d + 1:]), **params)
    u = torch.randn(batch, H, H, C, device="cuda", generator=gen).to(torch.bfloat16)
    width = -(-(C + 8) // 8) * 8
    x_dbl = (torch.randn(batch, H, H, width, device="cuda", generator=gen) * 0.5).to(torch.bfloat16)
    to_scan = lambda t: t.unflatten(-1, (4, -1)).permute(0, 3, 4, 1, 2)  # noqa: E731
    return dict(u=to_scan(u), delta=to_scan(x_dbl[..., :C]), B=to_scan(x_dbl[..., C:C + 4]),
                C=to_scan(x_dbl[..., C + 4:C + 8]), **params)


def model_layout_bytes(batch, C, H) -> float:
    """u, delta (bf16) and B, C (bf16) read once, y (float32) written once."""
    return batch * H * H * (C * (2 + 2 + 4) + 8 * 2)


MODEL_LAYOUT_CONFIGS = {  # per map size: candidates against the default (which picks its kernel itself)
    56: [dict(LOOKBACK=1, SEG=s, BD=bd, num_warps=nw, CHAINED=1) for s, bd, nw in
         [(64, 16, 2), (128, 16, 4), (64, 8, 1), (64, 8, 2), (64, 32, 4), (128, 32, 4)]],
    28: [dict(LOOKBACK=1, SEG=s, BD=bd, num_warps=nw, CHAINED=1) for s, bd, nw in
         [(64, 16, 2), (128, 16, 4), (64, 8, 1), (64, 32, 4), (128, 32, 4)]],
    14: [dict(BD=bd, BL=bl, num_warps=nw, CB=1, BDC=bd, ROWS=0, COLS=0) for bd, bl, nw in
         [(16, 64, 4), (16, 32, 2), (16, 128, 4), (16, 256, 8), (8, 64, 2), (8, 128, 4), (32, 32, 4),
          (32, 64, 4), (32, 64, 8)]]
        + [dict(BD=16, num_warps=nw, CB=1, BDC=bdc, ROWS=1) for nw, bdc in [(1, 16), (2, 16), (1, 8)]]
        + [dict(LOOKBACK=1, SEG=s, BD=bd, num_warps=nw, CHAINED=1) for s, bd, nw in [(64, 16, 2), (32, 16, 1), (256, 16, 8)]],
    7: [dict(LOOKBACK=1, SEG=64, BD=bd, num_warps=nw, CHAINED=1) for bd, nw in [(16, 2), (8, 1), (32, 4), (16, 4)]]
        + [dict(BD=16, BL=64, num_warps=4, CB=1, BDC=16, ROWS=0, COLS=0), dict(BD=32, BL=64, num_warps=4, CB=1, BDC=32, ROWS=0, COLS=0)],
}
# the lane-per-channel kernel (ssmzoo/ops/triton_seq.py) on the small maps (at 56x56 and 28x28 it was
# 2.5-5x slower than the look-back kernel, docs/gpu_runs/s22_run1.txt)
SEQ_CONFIGS = [dict(SEQ=1, BD=bd, K=k, num_warps=nw) for bd, k, nw in
               [(32, 8, 1), (32, 4, 1), (32, 16, 1), (64, 8, 2), (64, 4, 1), (16, 8, 1)]]
for _size in (14, 7):
    MODEL_LAYOUT_CONFIGS[_size].extend(SEQ_CONFIGS)


def model_layout_sweep(gen, record, models: str, configs, layouts=("tokens",)) -> None:
    """Every stage shape of the given GroupMamba models (batch 128) in the models' own operand layout
    (``model_layout_inputs``; with ``layouts`` also candidate layouts): the default kernel, then each
    candidate config (``configs`` or MODEL_LAYOUT_CONFIGS by map size), checked against the default's
    output."""
    print("GroupMamba fused scan in the compiled model's operand layout (bf16 in, float32 y, batch 128):", flush=True)
    shapes = sorted({(C, r) for m in models for C, r in zip(GROUPMAMBA[m], RES)}, key=lambda t: (-t[1], t[0]))
    for (C, H), layout in itertools.product(shapes, layouts):
        nb = model_layout_bytes(128, C, H)
        nxt = rotating(lambda: model_layout_inputs(128, C, H, gen, layout), nb)

        # COLS_T exists in the look-back kernel only: there its default and look-back configs
        base = dict(LOOKBACK=1, COLS_T=1) if layout == "groups_t" else None
        candidates = configs if configs is not None else MODEL_LAYOUT_CONFIGS.get(H, [])
        if layout == "groups_t":
            candidates = [dict(c, COLS_T=1) for c in candidates if c.get("LOOKBACK")]

        def run(cfg, x=None):
            x = x or nxt()
            out = torch.empty_like(x["u"], dtype=torch.float32)  # laid out like u, as the model's operator does
            return ts.group_scan_4dir_triton(**x, delta_softplus=True, out=out, config=cfg)

        x0 = nxt()
        ref = run(base, x0)
        name = "gm model" + ("" if layout == "tokens" else f" {layout}")
        record(f"{name} default", f"C{C} {H}x{H} d{C // 4}", torch.bfloat16, bench(lambda: run(base)), nb,
               extra=str(base or ""))
        for cfg in candidates:
            try:
                err = rel_err(run(cfg, x0), ref)
                record(f"{name} config", f"C{C} {H}x{H} d{C // 4}", torch.bfloat16, bench(lambda: run(cfg)), nb,
                       err=err, extra=str(cfg))
            except Exception as exc:  # a config that does not compile is reported, not fatal
                print(f"  config {cfg} failed: {type(exc).__name__}: {exc}", flush=True)


NORM_GATE_CONFIGS = {  # per map size: candidates against the default of the fused norm-gate kernel
    56: [dict(SEG=s, num_warps=nw) for s, nw in [(64, 1), (32, 2), (16, 1), (128, 2)]],
    28: [dict(SEG=s, num_warps=nw) for s, nw in [(64, 2), (32, 1), (16, 1), (32, 4)]],
    14: [dict(SEG=s, num_warps=nw) for s, nw in [(4, 1), (4, 2), (8, 1), (8, 4), (16, 2)]],
    7: [dict(SEG=s, num_warps=nw) for s, nw in [(4, 1), (4, 2), (8, 1), (8, 4)]],
}
for _size in (14, 7):  # the lane-per-channel kernel, whole groups on 1 or 2 warps (small maps, as above)
    NORM_GATE_CONFIGS[_size].extend(dict(SEQ=1, K=k, num_warps=nw) for k, nw in [(4, 1), (2, 1), (8, 1), (4, 2)])


def norm_gate_sweep(gen, record, models: str, configs) -> None:
    """The scan with the out_norm and SiLU(z) gate fused (``group_scan_4dir_norm_gate_triton``) in the
    compiled model's operand layout (z a view of the in_proj output, bf16 out), beside the plain
    scan writing float32 y (what the unfused model runs before Inductor's norm + gate kernel).
    Bytes of the fused kernel: u, delta, z, B, C read (bf16), the bf16 output written."""
    print("GroupMamba scan with the norm and gate fused, the compiled model's operand layout (batch 128):",
          flush=True)
    shapes = sorted({(C, r) for m in models for C, r in zip(GROUPMAMBA[m], RES)}, key=lambda t: (-t[1], t[0]))
    for C, H in shapes:
        d = C // 4

        def inputs():
            x = model_layout_inputs(128, C, H, gen)
            xz = torch.randn(128, H, H, 2 * C, device="cuda", generator=gen).to(torch.bfloat16)  # in_proj's output
            x.update(z=xz[..., C:].unflatten(-1, (4, d)).permute(0, 3, 4, 1, 2),
                     norm_weight=1.0 + 0.1 * torch.randn(4, d, device="cuda", generator=gen),
                     norm_bias=0.1 * torch.randn(4, d, device="cuda", generator=gen))
            return x

        nb_fused = 128 * H * H * (C * 2 * 4 + 8 * 2)
        nb_scan = model_layout_bytes(128, C, H)
        nxt = rotating(inputs, nb_fused + 128 * H * H * C * 2)
        shape = f"C{C} {H}x{H} d{d}"

        def fused(cfg, x=None):
            x = x or nxt()
            return ts.group_scan_4dir_norm_gate_triton(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"],
                                                       x["delta_bias"], True, x["norm_weight"], x["norm_bias"],
                                                       1e-5, x["z"], config=cfg)

        def scan_only():
            x = nxt()
            out = torch.empty_like(x["u"], dtype=torch.float32)
            return ts.group_scan_4dir_triton(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"], x["delta_bias"],
                                             True, out=out)

        x0 = nxt()
        ref = ts.group_scan_4dir_norm_gate_ref(*(x0[k] for k in ("u", "delta", "A", "B", "C", "D", "delta_bias")),
                                               True, x0["norm_weight"], x0["norm_bias"], 1e-5, x0["z"],
                                               scan_fn=selective_scan_chunked)
        record("gm scan, float32 y", shape, torch.bfloat16, bench(scan_only), nb_scan)
        record("gm scan+norm+gate", shape, torch.bfloat16, bench(lambda: fused(None)), nb_fused,
               err=rel_err(fused(None, x0), ref))
        for cfg in configs if configs is not None else NORM_GATE_CONFIGS.get(H, []):
            try:
                err = rel_err(fused(cfg, x0), ref)
                record("gm scan+norm+gate config", shape, torch.bfloat16, bench(lambda: fused(cfg)), nb_fused,
                       err=err, extra=str(cfg))
            except Exception as exc:  # a config that does not compile is reported, not fatal
                print(f"  config {cfg} failed: {type(exc).__name__}: {exc}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sweep", action="store_true", help="also try launch configs on key shapes")
    ap.add_argument("--sweep-only", action="store_true", help="stop after the sweep")
    ap.add_argument("--no-torch", action="store_true", help="skip the (slow) PyTorch-path timings")
    ap.add_argument("--json", default=None)
    ap.add_argument("--lookback", action="store_true",
                    help="only the GroupMamba shapes: the default kernel vs the look-back kernel's configs")
    ap.add_argument("--probe", action="store_true",
                    help="only the look-back kernel's probes (what bounds it: the wait, the scan, the access pattern)")
    ap.add_argument("--plane", action="store_true",
                    help="only channel-first GroupMamba shapes: the default kernel vs the plane kernel's configs")
    ap.add_argument("--sized-copy", action="store_true",
                    help="only a copy of each GroupMamba stage's bytes, timed as the kernels: what a copy reaches at that size")
    ap.add_argument("--strips", action="store_true",
                    help="only channel-first GroupMamba shapes: the default kernel vs the strip kernel's configs "
                         "(STRIP_CONFIGS or --configs)")
    ap.add_argument("--model-layout", default=None, metavar="MODELS",
                    help="only the GroupMamba scan in the compiled models' operand layout, for these models "
                         "(e.g. T or TSB): the default vs candidate configs (MODEL_LAYOUT_CONFIGS or --configs)")
    ap.add_argument("--norm-gate", default=None, metavar="MODELS",
                    help="only the scan with the out_norm and gate fused, for these models' stage shapes, beside "
                         "the plain scan: the default vs candidate configs (delta, B, C read from memory: the "
                         "models' path at 14x14 and 7x7; at 56x56 and 28x28 they compute x_proj and out_proj "
                         "in the kernel too, which this sweep does not time)")
    ap.add_argument("--maps", default=None, help="comma-separated map sizes (e.g. 56,28) for the GroupMamba sweeps")
    ap.add_argument("--configs", default=None, help="JSON list of configs for --model-layout / --norm-gate / --strips / --plane")
    ap.add_argument("--layouts", default="tokens",
                    help="--model-layout operand layouts, comma-separated: tokens (the model's today), groups "
                         "(group-major, a candidate; docs/scan_notes.md item 6), groups_t (group-major with "
                         "groups 1 and 3 stored transposed: look-back kernel, COLS_T)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("benchmarks/scan.py times the Triton scan kernels and needs a CUDA device")
    if args.maps:
        global MAP_SIZES
        MAP_SIZES = {int(h) for h in args.maps.split(",")}
    gen = torch.Generator(device="cuda").manual_seed(0)
    props = torch.cuda.get_device_properties(0)
    copy_gbs = copy_bandwidth()
    print(f"device: {props.name}, {props.multi_processor_count} SMs; torch {torch.__version__}, "
          f"triton {triton.__version__}; device-to-device copy {copy_gbs:.0f} GB/s (read + write)", flush=True)
    rows, records = [], []

    def record(name, shape, dtype, ms, nbytes, torch_ms=None, err=None, extra="", same_copy_ms=None):
        gbs = nbytes / ms / 1e6
        rec = dict(name=name, shape=shape, dtype=str(dtype).replace("torch.", ""), ms=ms, GBs=gbs,
                   frac_copy=gbs / copy_gbs, torch_ms=torch_ms, speedup=(torch_ms / ms) if torch_ms else None,
                   err=err, extra=extra, same_copy_ms=same_copy_ms,
                   frac_same_copy=(same_copy_ms / ms) if same_copy_ms else None)
        if same_copy_ms:
            extra = f"{extra} a copy of the same bytes {same_copy_ms*1e3:.1f} us ({rec['frac_same_copy'] * 100:.1f}% of this speed)"
        records.append(rec)
        rows.append(rec)
        print(f"  {name:<28} {shape:<24} {rec['dtype']:<8} {ms*1e3:9.1f} us {gbs:7.0f} GB/s "
              f"{rec['frac_copy']*100:5.1f}%  torch {('%.2f ms' % torch_ms) if torch_ms else '-':>10} "
              f"x{rec['speedup'] or 0:6.1f}  err {err if err is None else '%.1e' % err} {extra}", flush=True)

    configs = json.loads(args.configs) if args.configs else None
    only = [  # (flag, the sweep it runs instead of the table)
        (args.lookback, lambda: lookback_sweep(gen, record)),
        (args.probe, lambda: probe_sweep(gen, record)),
        (args.plane, lambda: plane_sweep(gen, record, configs)),
        (args.sized_copy, lambda: sized_copy_sweep(gen, record)),
        (args.strips, lambda: strips_sweep(gen, record, configs)),
        (args.norm_gate, lambda: norm_gate_sweep(gen, record, args.norm_gate, configs)),
        (args.model_layout, lambda: model_layout_sweep(gen, record, args.model_layout, configs,
                                                       tuple(args.layouts.split(",")))),
    ]
    for flag, sweep in only:
        if flag:
            sweep()
            return

    # ---------------- config sweep on the key shapes
    if args.sweep:
        print("sweep (GroupMamba fused scan, batch 128, float32):", flush=True)
        for C, H in [(64, 56), (348, 14)]:
            for cl in (False, True):
                nb = group_bytes(128, C, H, torch.float32)
                nxt = rotating(lambda: group_inputs(128, C, H, torch.float32, cl, gen), nb)
                if cl:  # v3 candidates (docs/scan_notes.md, "v3"); None = the current default
                    cfgs = [None,                                                       # ROWS1 nw1 BD16 BDC8 CB1
                            dict(BD=16, BL=64, num_warps=4, CB=1, BDC=16, ROWS=0, COLS=0),  # v2 default
                            dict(BD=16, num_warps=1, CB=1, BDC=16, ROWS=1),
                            dict(BD=16, num_warps=2, CB=1, BDC=16, ROWS=1),
                            dict(BD=8, num_warps=1, CB=1, BDC=8, ROWS=1),
                            dict(BD=16, num_warps=1, CB=1, BDC=8, ROWS=1, PREF=True)]
                else:
                    cfgs = [None,                                                       # v3: COLS=1
                            dict(COLS=0),                                               # v2 default
                            dict(BD=4, num_warps=4, CB=8, BDC=4),
                            dict(BD=2, num_warps=2, CB=8, BDC=1),
                            dict(BD=1, num_warps=1, CB=8, BDC=1),
                            dict(BD=4, num_warps=4, CB=8, BDC=2, PREF=True)]
                for cfg in cfgs:
                    try:
                        ms = bench(lambda: ts.group_scan_4dir_triton(**nxt(), delta_softplus=True, config=cfg or None))
                        record(f"gm {'bhwc' if cl else 'bchw'}", f"C{C} {H}x{H}", torch.float32, ms, nb, extra=str(cfg))
                    except Exception as exc:  # a config that does not compile is reported, not fatal
                        print(f"  config {cfg} failed: {type(exc).__name__}: {exc}", flush=True)
        for cl in (False, True):
            print(f"sweep (bimamba, VideoMamba-S video, batch 8, {'channels-last' if cl else 'channel-first'}):", flush=True)
            nb = bimamba_bytes(8, 768, 3137, 16, torch.bfloat16)
            nxt = rotating(lambda: bimamba_inputs(8, 768, 3137, 16, torch.bfloat16, gen, cl), nb)
            cfgs = ([None, dict(BD=8, BL=32), dict(BD=4, BL=64), dict(BD=1, BL=32, num_warps=1),
                     dict(BD=2, BL=64, num_warps=2)] if not cl else
                    [None, dict(BD=32, BL=32, TRANS=False, num_warps=1), dict(BD=4, BL=32, num_warps=1),
                     dict(BD=16, BL=32, V=4), dict(BD=8, BL=64)])
            for cfg in cfgs:
                ms = bench(lambda: ts.bimamba_scan_triton(**nxt(), config=cfg))
                record("bimamba" + (" cl" if cl else ""), "768x3137 N16 b8", torch.bfloat16, ms, nb, extra=str(cfg))
        rows.clear()
        if args.sweep_only:
            return

    # ---------------- GroupMamba stages
    print("GroupMamba fused 4-direction scan (batch 128):", flush=True)
    seen, same_copy = {}, {}
    for C, H, dtype, cl, nb, nxt in group_stage_inputs(
            gen, [(torch.float32, False), (torch.float32, True), (torch.bfloat16, True)]):
        x = nxt()
        y = ts.group_scan_4dir_triton(**x, delta_softplus=True)
        torch_ms = None
        ref = ts.group_scan_4dir_ref(**x, delta_softplus=True, scan_fn=selective_scan_chunked)
        err = rel_err(y, ref)  # against the float32 torch path (float64 checks are in the tests)
        if not args.no_torch and dtype == torch.float32 and not cl:
            torch_ms = slow_bench(lambda: ts.group_scan_4dir_ref(**nxt(), delta_softplus=True,
                                                                 scan_fn=selective_scan_chunked))
        del y, ref
        ms = bench(lambda: ts.group_scan_4dir_triton(**nxt(), delta_softplus=True))
        layout = "bhwc" if cl else "bchw"
        if nb not in same_copy:
            same_copy[nb] = same_bytes_copy_ms(nb, gen)
        record(f"gm {layout}", f"C{C} {H}x{H} d{C // 4}", dtype, ms, nb, torch_ms, err, same_copy_ms=same_copy[nb])
        seen[(C, H, str(dtype), layout)] = records[-1]
    print("GroupMamba per model (float32, batch 128), sum over one block of each stage:")
    for name, dims in GROUPMAMBA.items():
        if any((C, r, "torch.float32", layout) not in seen for C, r in zip(dims, RES) for layout in ("bchw", "bhwc")):
            print(f"  GroupMamba-{name}: not every stage was timed (--maps)")
            continue
        parts = []
        for layout in ("bchw", "bhwc"):
            tot = sum(seen[(C, r, "torch.float32", layout)]["ms"] for C, r in zip(dims, RES))
            parts.append(f"{layout} {tot*1e3:.0f} us")
        tt = sum(seen[(C, r, "torch.float32", "bchw")]["torch_ms"] or 0 for C, r in zip(dims, RES))
        print(f"  GroupMamba-{name}: " + ", ".join(parts) + (f", torch path {tt:.1f} ms" if tt else ""))

    # ---------------- VideoMamba
    print("VideoMamba-S bimamba scan (d_inner 768, d_state 16):", flush=True)
    for tag, batch, L in [("image", 128, 197), ("video16", 8, 3137)]:
        for dtype, cl in [(torch.float32, False), (torch.bfloat16, False), (torch.bfloat16, True)]:
            if cl:
                tag = tag.split()[0] + " cl"
            nb = bimamba_bytes(batch, 768, L, 16, dtype)
            nxt = rotating(lambda: bimamba_inputs(batch, 768, L, 16, dtype, gen, cl), nb)
            x = nxt()
            y = ts.bimamba_scan_triton(**x)
            ref = ts.bimamba_scan_ref(**x, scan_fn=selective_scan_chunked)
            err = rel_err(y, ref)
            del y, ref
            torch_ms = None
            if not args.no_torch and not cl:
                torch_ms = slow_bench(lambda: ts.bimamba_scan_ref(**nxt(), scan_fn=selective_scan_chunked))
            ms = bench(lambda: ts.bimamba_scan_triton(**nxt()))
            record(f"vm bimamba chunked {tag}", f"b{batch} 768x{L} N16", dtype, ms, nb, torch_ms, err)
            # the sequential kernel, which the models use (torch.ops.ssmzoo.bimamba_scan)
            ref = ts.bimamba_scan_ref(**x, scan_fn=selective_scan_chunked)
            err_seq = rel_err(bimamba_scan_seq_triton(**x), ref)
            ms = bench(lambda: bimamba_scan_seq_triton(**nxt()))
            record(f"vm bimamba seq {tag}", f"b{batch} 768x{L} N16", dtype, ms, nb, torch_ms, err_seq)
            # its split-sequence variant, the models' path (default segments: one for image, several
            # for video16, their length by layout: triton_bimamba.split_config)
            err_split = rel_err(bimamba_scan_split_triton(**x), ref)
            del ref
            scfg = split_config(batch, 768, L, 16, **layout_flags(x["u"]))
            ms = bench(lambda: bimamba_scan_split_triton(**nxt()))
            record(f"vm bimamba split {tag}", f"b{batch} 768x{L} N16", dtype, ms, nb, torch_ms, err_split,
                   extra=f"SEG {scfg['SEG']} x {scfg['NSEG']} SPLIT {scfg['SPLIT']}")
            # one direction alone, plain API
            single = {k: x[k] for k in ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")}
            nb1 = torch.tensor([], dtype=dtype).element_size() * (4 * batch * 768 * L + 2 * batch * 16 * L)
            ms1 = bench(lambda: ts.selective_scan_triton(**single, delta_softplus=True))
            record(f"vm 1-dir {tag}", f"b{batch} 768x{L} N16", dtype, ms1, nb1)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(device=props.name, copy_GBs=copy_gbs, rows=records), f, indent=1)

    print("\nsummary:")
    print("(%copy: of the 1 GiB device-to-device copy's bandwidth; %same: the fastest SM copy of the row's own "
          "bytes, timed like the kernel, as a % of the kernel's speed)")
    print(f"{'case':<22}{'shape':<22}{'dtype':<10}{'us':>9}{'GB/s':>8}{'%copy':>7}{'%same':>7}{'torch ms':>10}"
          f"{'speedup':>9}")
    for r in rows:
        same = r.get("frac_same_copy")
        print(f"{r['name']:<22}{r['shape']:<22}{r['dtype']:<10}{r['ms']*1e3:9.1f}{r['GBs']:8.0f}"
              f"{r['frac_copy']*100:7.1f}{(same or float('nan'))*100:7.1f}{(r['torch_ms'] or float('nan')):10.2f}"
              f"{(r['speedup'] or float('nan')):9.1f}")


if __name__ == "__main__":
    sys.exit(main())
