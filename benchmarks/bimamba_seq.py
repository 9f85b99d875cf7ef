"""The sequential bimamba kernel (ssmzoo/ops/triton_bimamba.py) vs the chunked one (triton_scan).

    python benchmarks/bimamba_seq.py                 # on a CUDA machine: check + time
    python benchmarks/bimamba_seq.py --configs '[{"SPLIT": 1}, {"SPLIT": 4, "num_warps": 2}]'
    python benchmarks/bimamba_seq.py --aot           # no GPU needed: compile for sm_90, PTX stats
    python benchmarks/bimamba_seq.py --segments 64,128,256,512,0 --shapes video   # split-sequence sweep
    python benchmarks/bimamba_seq.py --aot --segments 256 --configs '[{}]'       # its three phases, sm_90

``--segments`` (tokens per segment; 0 = the kernel's default) also times ``bimamba_scan_split_triton``
with every config of ``--configs`` (default: SPLIT_CONFIGS) and each SEG, after the sequential rows.

Shapes: VideoMamba-S (d_inner 768, d_state 16), image (batch 128, L 197) and video (batch 8,
L 3137), bf16 and fp32, in two layouts: "cl" (u/delta/z channels-last views of token-major memory:
what BiMambaMixer passes since session 13) and "model" (what it passed before: u/delta channel-first
contiguous, z a channels-last view of xz, B/C (batch, N, L) contiguous; the name is kept for the
earlier runs' logs). Every kernel's output is checked against the chunked kernel
(relative norm) before timing; times are triton.testing.do_bench medians over rotating input sets.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys

import torch

import triton
from ssmzoo.ops import triton_bimamba as tb

D_INNER, N_STATE = 768, 16
SHAPES = {"image": (128, 197), "video": (8, 3137)}
LAYOUTS = ("cl", "model")


def make_inputs(batch, length, dtype, layout, device, gen):
    d, n = D_INNER, N_STATE

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen) * scale).to(device=device, dtype=dtype)

    def seq(scale=1.0, cl=True):  # (batch, d, L)
        if cl:
            return rand(batch, length, d, scale=scale).transpose(1, 2)
        return rand(batch, d, length, scale=scale)

    cl = layout == "cl"

    def direction():
        return dict(u=seq(cl=cl), delta=seq(0.5, cl=cl) - 1.0,
                    A=-torch.arange(1, n + 1, dtype=torch.float32, device=device).repeat(d, 1),
                    B=rand(batch, n, length), C=rand(batch, n, length),
                    D=torch.ones(d, device=device), delta_bias=torch.randn(d, generator=gen).to(device) * 0.1 - 3.0)

    f, bw = direction(), direction()
    if cl:
        z = seq()
    else:  # a channels-last half of xz, as the model slices it
        z = rand(batch, length, 2 * d).transpose(1, 2)[:, d:]
    return dict(u=f["u"], delta=f["delta"], A=f["A"], B=f["B"], C=f["C"], D=f["D"],
                u_b=bw["u"], delta_b=bw["delta"], A_b=bw["A"], B_b=bw["B"], C_b=bw["C"], D_b=bw["D"],
                z=z, delta_bias=f["delta_bias"], delta_bias_b=bw["delta_bias"], delta_softplus=True,
                backward_flipped=True)


# ---------------------------------------------------------------------------------------------
# Ahead-of-time compile for sm_90 (no GPU): the very call the wrapper would launch
# ---------------------------------------------------------------------------------------------

_TY = {torch.float32: "*fp32", torch.float16: "*fp16", torch.bfloat16: "*bf16"}
_ARGS = ("u", "delta", "A", "B", "C", "D", "u_b", "delta_b", "A_b", "B_b", "C_b", "D_b", "z",
         "delta_bias", "delta_bias_b", "delta_softplus", "backward_flipped")


def aot_compile(inputs: dict, config: dict):
    """The sequential kernel's launch (the split kernel's last phase over one segment), compiled:
    (compiled kernel, grid)."""
    y, launches = tb._launch_split(*[inputs[k] for k in _ARGS], None,
                                   dict(config, SEG=max(1, inputs["u"].shape[-1])))
    (kernel, grid, args, meta), = launches
    return _aot(kernel, args, meta), grid


def aot_compile_split(inputs: dict, config: dict):
    """The split kernel's launches (phase 1 and 2 only with several segments), compiled:
    [(kernel name, compiled kernel, grid)]."""
    y, launches = tb._launch_split(*[inputs[k] for k in _ARGS], None, config)
    return [(kernel.fn.__name__, _aot(kernel, args, meta), grid) for kernel, grid, args, meta in launches]


def _aot(kernel, args, meta):
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    meta = dict(meta)
    names = list(inspect.signature(kernel.fn).parameters)
    num_warps = meta.pop("num_warps")
    sig, constexprs, attrs = {}, dict(meta), {}
    for i, (name, a) in enumerate(zip(names, args)):  # the JIT's specialisation: ints == 1 become
        if torch.is_tensor(a):                         # constants, multiples of 16 get an attribute
            sig[name] = _TY[a.dtype]
            if a.data_ptr() % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
        elif a == 1:
            sig[name] = "constexpr"
            constexprs[name] = 1
        else:
            sig[name] = "i64" if abs(a) >= 2**31 else "i32"
            if a % 16 == 0:
                attrs[(i,)] = [["tt.divisibility", 16]]
    for name in names[len(args):]:
        sig[name] = "constexpr"
    src = ASTSource(kernel, sig, constexprs=constexprs, attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=num_warps))


def _tool(name):
    import os
    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)


def ptx_stats(c) -> dict:
    """Counts in the PTX (whole kernel), ptxas' register / spill report, and per-loop SASS counts
    (each backward branch = one sweep's step loop: instructions, MUFU, SHFL, LDG, BAR)."""
    import os
    import subprocess
    import tempfile

    ptx = c.asm["ptx"]
    out = dict(bar=len(re.findall(r"bar\.sync|barrier\.sync", ptx)), shfl=len(re.findall(r"shfl\.sync", ptx)),
               ex2=len(re.findall(r"ex2\.approx", ptx)), lg2=len(re.findall(r"lg2\.approx", ptx)),
               ldg=len(re.findall(r"ld\.global", ptx)), ldg_v=len(re.findall(r"ld\.global[^;]*\.v[24]", ptx)),
               lds=len(re.findall(r"ld\.shared", ptx)), local=len(re.findall(r"(?:ld|st)\.local", ptx)))
    with tempfile.TemporaryDirectory() as tmp:
        src, cubin = os.path.join(tmp, "k.ptx"), os.path.join(tmp, "k.cubin")
        with open(src, "w") as fh:
            fh.write(ptx)
        rep = subprocess.run([_tool("ptxas"), "--gpu-name", "sm_90a", "-v", src, "-o", cubin],
                             capture_output=True, text=True).stderr
        m = re.search(r"Used (\d+) registers", rep)
        out["regs"] = int(m.group(1)) if m else None
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", rep)
        out["spill_bytes"] = (int(m.group(1)) + int(m.group(2))) if m else None
        sass = subprocess.run([_tool("cuobjdump"), "-sass", cubin], capture_output=True, text=True).stdout
    ins = re.findall(r"/\*([0-9a-f]{4,})\*/\s+(.*?);", sass)
    addr = [int(a_, 16) for a_, _ in ins]
    loops = []
    for i, (a_, text) in enumerate(ins):
        m = re.search(r"BRA (0x[0-9a-f]+)", text)
        if m and int(m.group(1), 16) < int(a_, 16):
            lo = addr.index(int(m.group(1), 16))
            body = [t for _, t in ins[lo:i + 1]]
            loops.append(dict(n=len(body), mufu=sum("MUFU" in t for t in body), shfl=sum("SHFL" in t for t in body),
                              ldg=sum("LDG" in t for t in body), bar=sum("BAR" in t for t in body),
                              lds=sum("LDS" in t or "STS" in t for t in body)))
    out["loops"] = loops
    return out


# ---------------------------------------------------------------------------------------------
# Timing on a CUDA device
# ---------------------------------------------------------------------------------------------

def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def run_gpu(configs, reps_sets=3, segments=None, split_configs=None, shapes=None, split_only=False,
            layouts=LAYOUTS):
    from triton.testing import do_bench

    from ssmzoo.ops.triton_scan import bimamba_scan_triton

    dev = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name(dev)}, torch {torch.__version__}, triton {triton.__version__}")
    rows = []
    for case, (batch, length) in SHAPES.items():
        if shapes and case not in shapes:
            continue
        for dtype in (torch.bfloat16, torch.float32):
            for layout in layouts:
                gen = torch.Generator().manual_seed(0)
                sets = [make_inputs(batch, length, dtype, layout, dev, gen) for _ in range(reps_sets)]
                ref = bimamba_scan_triton(**sets[0])
                it = iter(range(1 << 30))

                def timed(fn):
                    return do_bench(lambda: fn(**sets[next(it) % reps_sets]), warmup=25, rep=200)

                t_old = timed(bimamba_scan_triton)
                row = dict(case=case, dtype=str(dtype).split(".")[-1], layout=layout, chunked_us=t_old * 1e3)
                print(f"{case} {row['dtype']} {layout}: chunked (triton_scan) {t_old * 1e3:9.1f} us", flush=True)
                for cfg in [] if split_only else configs:
                    fn = lambda **kw: tb.bimamba_scan_seq_triton(**kw, config=cfg)  # noqa: E731
                    err = rel(fn(**sets[0]), ref)
                    t = timed(fn)
                    print(f"    seq {json.dumps(cfg):55s} {t * 1e3:9.1f} us  x{t_old / t:5.2f}  "
                          f"rel err vs chunked {err:.2e}", flush=True)
                    row[json.dumps(cfg)] = dict(us=t * 1e3, err=err)
                for cfg in (split_configs or []) if segments else []:
                    for seg in segments:
                        scfg = dict(cfg, SEG=seg) if seg else dict(cfg)
                        full = tb.split_config(batch, D_INNER, length, N_STATE, scfg, **tb.layout_flags(sets[0]["u"]))
                        fn = lambda **kw: tb.bimamba_scan_split_triton(**kw, config=scfg)  # noqa: E731
                        err = rel(fn(**sets[0]), ref)
                        t = timed(fn)
                        tag = f"{json.dumps(scfg)} (SEG {full['SEG']} x {full['NSEG']}, SPLIT {full['SPLIT']})"
                        print(f"    split {tag:55s} {t * 1e3:9.1f} us  x{t_old / t:5.2f}  "
                              f"rel err vs chunked {err:.2e}", flush=True)
                        row["split " + json.dumps(scfg)] = dict(us=t * 1e3, err=err)
                rows.append(row)
                del sets
                torch.cuda.empty_cache()
    return rows


DEFAULT_CONFIGS = [
    {},                                        # the default (seq_config: SPLIT 4 video, 1 image; UNROLL 2)
    {"SPLIT": 1},
    {"SPLIT": 2},
    {"SPLIT": 4},
    {"SPLIT": 4, "UNROLL": 4},
    {"SPLIT": 8},
    {"SPLIT": 1, "num_warps": 4},
    {"SPLIT": 4, "PACK": False},
]

SPLIT_CONFIGS = [  # with --segments (the split kernel: parallelism now also comes from the segments)
    {},
    {"SPLIT": 1},
    {"SPLIT": 2},
    {"SPLIT": 4},
    {"SPLIT": 1, "UNROLL": 4},
]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--aot", action="store_true", help="compile for sm_90 without a GPU and print PTX stats")
    ap.add_argument("--configs", help="JSON list of config dicts (default: a small sweep)")
    ap.add_argument("--dump", help="with --aot: directory to write the .ptx / .ttgir files to")
    ap.add_argument("--segments", help="comma list of SEG values (tokens per segment, 0 = default): also run "
                                       "the split-sequence kernel (with --aot: only it)")
    ap.add_argument("--shapes", help="comma list of shapes to run (image, video; default both)")
    ap.add_argument("--layouts", help="comma list of layouts to run (cl, model; default both)")
    ap.add_argument("--split-only", action="store_true", help="with --segments: time only the split kernel")
    ap.add_argument("--once", metavar="SHAPE", help="run the models' default scan 3 times on SHAPE (bf16, "
                                                   "token-major) and exit: a target for ncu")
    args = ap.parse_args(argv)
    segments = [int(x) for x in args.segments.split(",")] if args.segments else None
    shapes = args.shapes.split(",") if args.shapes else None
    layouts = args.layouts.split(",") if args.layouts else LAYOUTS
    if args.configs:
        configs = split_configs = json.loads(args.configs)
    else:
        configs, split_configs = DEFAULT_CONFIGS, SPLIT_CONFIGS
    if args.aot:
        gen = torch.Generator().manual_seed(0)
        for case, (batch, length) in SHAPES.items():
            if shapes and case not in shapes:
                continue
            for dtype in (torch.bfloat16, torch.float32):
                for layout in layouts:
                    inputs = make_inputs(batch, length, dtype, layout, "cpu", gen)
                    compiled = []
                    if segments:
                        for cfg in split_configs:
                            for seg in segments:
                                scfg = dict(cfg, SEG=seg) if seg else dict(cfg)
                                for name, c, grid in aot_compile_split(inputs, scfg):
                                    compiled.append((f"{case} {str(dtype)[6:]} {layout} split {json.dumps(scfg)} "
                                                     f"{name}", c, grid))
                    else:
                        for cfg in configs:
                            c, grid = aot_compile(inputs, cfg)
                            compiled.append((f"{case} {str(dtype)[6:]} {layout} {json.dumps(cfg)}", c, grid))
                    for tag, c, grid in compiled:
                        print(f"{tag:70s} grid {grid} {ptx_stats(c)}", flush=True)
                        if args.dump:
                            import os
                            os.makedirs(args.dump, exist_ok=True)
                            stem = re.sub(r"[^\w]+", "_", tag).strip("_")
                            for ext in ("ptx", "ttgir"):
                                with open(os.path.join(args.dump, f"{stem}.{ext}"), "w") as fh:
                                    fh.write(c.asm[ext])
        return
    if not torch.cuda.is_available():
        sys.exit("needs a CUDA device (or --aot)")
    if args.once:
        inputs = make_inputs(*SHAPES[args.once], torch.bfloat16, "cl", "cuda", torch.Generator().manual_seed(0))
        for _ in range(3):
            tb.bimamba_scan_split_triton(**inputs)
        torch.cuda.synchronize()
        return
    run_gpu(configs, segments=segments, split_configs=split_configs, shapes=shapes, split_only=args.split_only,
            layouts=layouts)


if __name__ == "__main__":
    main()
