"""Compile the GroupMamba group kernel for sm_90 on a machine without a GPU and count what costs
synchronisation (barriers, shuffles, shared-memory traffic, layout conversions) and global loads.

    PYTHONPATH=. python3 benchmarks/scan_aot.py [--ttgir] [--config '{"BD": 16, ...}'] [--shape C,H]

The launch is the real one: ``group_scan_4dir_triton`` runs on small CPU tensors with the
benchmark's layouts (channel-first "bchw" and channels-last "bhwc", float32), its kernel launch
is intercepted, and the arguments are specialised exactly as Triton's JIT does it at run time
(integers equal to 1 become constants; pointers and integers divisible by 16 get
``tt.divisibility``), so vector loads and stride-1 axes show as they would on the device.
Counts are static (instructions in the PTX, not executed instructions): a barrier inside the
chunk loop counts once. Local Triton version, not necessarily the device's.
"""
from __future__ import annotations

import argparse
import contextlib
import ast
import json
import re
from typing import Optional
from unittest import mock

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource, make_backend
from triton.runtime.jit import create_function_from_signature

from ssmzoo.ops import triton_scan as ts
from ssmzoo.ops import triton_lookback as tlb
from ssmzoo.ops import triton_plane as tpl
from ssmzoo.ops import triton_strips as tst

TARGET = GPUTarget("cuda", 90, 32)


def group_inputs(batch, C, H, W, channels_last, dtype=torch.float32):
    """Same memory layouts as benchmarks/scan.py (separate B/C tensors)."""
    d, N = C // 4, 1

    def amap(c):
        if channels_last:
            return torch.randn(batch, H, W, 4, c, dtype=dtype).permute(0, 3, 4, 1, 2)
        return torch.randn(batch, 4, c, H, W, dtype=dtype)
    return dict(u=amap(d), delta=amap(d), A=-torch.rand(4, d, N) - 0.1, B=amap(N), C=amap(N),
                D=torch.randn(4, d), delta_bias=torch.randn(4, d))


def catch_launch(module, kernel: str, call, check: Optional[str] = "_check") -> dict:
    """Runs ``call()`` with ``module.kernel``'s launch (and ``module.check``, the device check, if any)
    replaced: returns the launch's grid, args and kwargs, as the wrapper would have passed them."""
    seen = {}

    class Catch:
        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                seen.update(grid=grid, args=args, kwargs=kwargs)
            return launch

    with mock.patch.object(module, kernel, Catch()), contextlib.ExitStack() as stack:
        if check:
            stack.enter_context(mock.patch.object(module, check, lambda *a: None))
        call()
    return seen


def capture_launch(inputs, config, lookback=False, plane=False, strips=False):
    """The group scan's launch (the look-back kernel's with ``lookback``, the plane kernel's with
    ``plane``, the strip kernel's with ``strips``): (grid, args, kwargs)."""
    if strips:
        seen = catch_launch(tst, "_group4_strips_kernel", lambda: tst.group_scan_4dir_strips_triton(
            **inputs, delta_softplus=True, config=config), check="_check_device")
    elif plane:
        seen = catch_launch(tpl, "_plane_kernel", lambda: tpl.group_scan_4dir_plane_triton(
            **inputs, delta_softplus=True, config=config), check="_check_device")
    elif lookback:
        seen = catch_launch(tlb, "_group4_lookback_kernel", lambda: tlb.group_scan_4dir_lookback_triton(
            **inputs, delta_softplus=True, config=config), check="_check_device")
    else:
        tile = dict(config or {}, LOOKBACK=0)  # the tile kernel, even where the look-back one is the default
        seen = catch_launch(ts, "_group4_kernel", lambda: ts.group_scan_4dir_triton(
            **inputs, delta_softplus=True, config=tile), check="_check_device")
    return seen["grid"], seen["args"], seen["kwargs"]


def compile_launch(kernel, args, kwargs):
    """Specialises and compiles like JITFunction.run does (without a driver)."""
    backend = make_backend(TARGET)
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound_args, specialization, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = kernel._pack_args(backend, kwargs, bound_args, specialization, options)
    src = ASTSource(kernel, signature, constexprs, attrs)
    return triton.compile(src, target=TARGET, options=options.__dict__)


def ptxas_info(ptx: str) -> dict:
    """Registers and spills from Triton's bundled ptxas (the compiled kernel's n_regs needs a driver)."""
    import os, subprocess, tempfile
    exe = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        out = subprocess.run([exe, "-v", "--gpu-name", "sm_90a", src, "-o", os.path.join(d, "k.cubin")],
                             capture_output=True, text=True).stderr
    regs = re.search(r"Used (\d+) registers", out)
    spill = re.search(r"(\d+) bytes spill stores", out)
    return dict(regs=int(regs.group(1)) if regs else None, spill=int(spill.group(1)) if spill else None)


def sass(c) -> str:
    """The kernel's SASS (Triton's bundled cuobjdump on its cubin): to check that a change leaves
    the compiled code of a timed kernel byte-identical."""
    import os, subprocess, tempfile
    exe = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "k.cubin")
        with open(path, "wb") as f:
            f.write(c.asm["cubin"])
        return subprocess.run([exe, "-sass", path], capture_output=True, text=True, check=True).stdout


def stats(c) -> dict:
    ttgir, ptx = c.asm["ttgir"], c.asm["ptx"]
    count = lambda pat, text=ptx: len(re.findall(pat, text))  # noqa: E731
    return dict(bar=count(r"bar\.sync|barrier\.sync"), shfl=count(r"shfl\.sync"),
                ld_shared=count(r"ld\.shared"), st_shared=count(r"st\.shared"),
                cvt=count(r"convert_layout", ttgir),
                ldg=count(r"ld\.global"), ldg_v=count(r"ld\.global[^;]*\.v[24]"),
                stg=count(r"st\.global"), stg_v=count(r"st\.global[^;]*\.v[24]"),
                smem=c.metadata.shared, **ptxas_info(ptx))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=None, help="config dict (Python/JSON literal) for both layouts")
    ap.add_argument("--layout", default=None, choices=["bchw", "bhwc"])
    ap.add_argument("--shape", default="64,56", help="C,H[,W] (default stage 1: 64,56)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"], help="operand dtype")
    ap.add_argument("--ttgir", action="store_true", help="print the TTGIR of each kernel")
    ap.add_argument("--sass", default=None, metavar="FILE", help="write each kernel's SASS to FILE.<layout>")
    ap.add_argument("--lookback", action="store_true", help="the look-back kernel (ssmzoo/ops/triton_lookback.py)")
    ap.add_argument("--plane", action="store_true", help="the plane kernel (ssmzoo/ops/triton_plane.py; bchw only)")
    ap.add_argument("--strips", action="store_true", help="the strip kernel (ssmzoo/ops/triton_strips.py; bchw only)")
    args = ap.parse_args()
    dims = [int(x) for x in args.shape.split(",")]
    C, H = dims[0], dims[1]
    W = dims[2] if len(dims) > 2 else H
    config = ast.literal_eval(args.config) if args.config else None
    for name in ("bhwc", "bchw"):
        if args.layout and name != args.layout:
            continue
        if (args.plane or args.strips) and name == "bhwc":
            continue
        _, kargs, kwargs = capture_launch(group_inputs(2, C, H, W, name == "bhwc", getattr(torch, args.dtype)), config, args.lookback, args.plane,
                                          args.strips)
        kernel = (tst._group4_strips_kernel if args.strips else tpl._plane_kernel if args.plane
                  else tlb._group4_lookback_kernel if args.lookback else ts._group4_kernel)
        c = compile_kernel = compile_launch(kernel, kargs, kwargs)
        cfg = {k: kwargs[k] for k in ("BD", "BL", "V", "TRANS", "ALIGN", "HP", "CB", "BDC", "COLS", "PREF", "ROWS", "SEG", "KC", "RUN", "RUN2", "RUN3", "QR", "EVEN", "EVENR", "WC")
               if k in kwargs}
        cfg["num_warps"] = kwargs["num_warps"]
        print(f"{name} C{C} {H}x{W} {json.dumps(cfg)}\n    {stats(compile_kernel)}", flush=True)
        if args.ttgir:
            print(c.asm["ttgir"])
        if args.sass:
            with open(f"{args.sass}.{name}", "w") as f:
                f.write(sass(c))


if __name__ == "__main__":
    main()
