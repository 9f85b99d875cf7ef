"""What the fused-kernel benchmarks (dwconv.py, ffn.py) share: the run's dispatch and device banner,
and the end of a launch-config sweep."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Hashable, Optional

import torch
import triton

from scan import copy_bandwidth  # noqa: E402  (benchmarks/ is on sys.path when run as a script)


def common_args(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options every fused-kernel benchmark takes (after its own --models and extras)."""
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--rep", type=int, default=100, help="do_bench rep (ms)")
    ap.add_argument("--sweep", action="store_true", help="sweep launch configs instead of the table")
    ap.add_argument("--configs", default=None, help="sweep these configs (a Python/JSON list of dicts)")
    ap.add_argument("--aot", action="store_true", help="compile for sm_90 without a GPU and print counts")
    ap.add_argument("--config", default=None, help="--aot: config dict to compile (default: the default)")
    ap.add_argument("--ttgir", action="store_true", help="--aot: print the TTGIR")
    ap.add_argument("--json", default=None, help="--sweep: write all results here")
    return ap


def dispatch(args, shapes, dtype, run_aot: Callable, run_sweep: Callable, run_table: Callable, note: str = "") -> int:
    """--aot compiles without a GPU; otherwise a CUDA device is needed: prints the device banner (copy
    bandwidth measured now) and runs the sweep or the table under no_grad."""
    if args.aot:
        run_aot(args, shapes, dtype)
        return 0
    if not torch.cuda.is_available():
        print("needs a CUDA device (use --aot to compile for sm_90 without one)", file=sys.stderr)
        return 1
    gen = torch.Generator(device="cuda").manual_seed(0)
    props = torch.cuda.get_device_properties(0)
    copy_gbs = copy_bandwidth()
    print(f"device: {props.name}, {props.multi_processor_count} SMs; torch {torch.__version__}, "
          f"triton {triton.__version__}, cuDNN {torch.backends.cudnn.version()}; device-to-device copy "
          f"{copy_gbs:.0f} GB/s (read + write); batch {args.batch}, {args.dtype}{note}", flush=True)
    with torch.no_grad():
        if args.sweep:
            run_sweep(args, shapes, dtype, gen)
        else:
            run_table(args, shapes, dtype, gen, copy_gbs)
    return 0


def report_sweep(results: list, base: dict, weight: dict, default_config: dict, label: Callable[[Hashable], str],
                 order: Callable[[Hashable], object], json_path: Optional[str] = None) -> None:
    """``results``: (depth-weighted total ms, config, {shape: ms}) per timed config; ``base``: the
    default config's {shape: ms}. Prints the default's total, the best 8 configs and the best config
    per shape (in ``order``), and writes every result to ``json_path``."""
    default_total = sum(weight[k] * base[k] for k in base)
    print(f"default {json.dumps(default_config)}: weighted total {default_total:.3f} ms")
    results = sorted(results + [(default_total, dict(default_config, default=True), base)], key=lambda r: r[0])
    print("best 8 configs:")
    for total, cfg, _ in results[:8]:
        print(f"  {total:8.3f} ms  {json.dumps(cfg)}")
    print("best per shape (us; default in brackets):")
    for key in sorted(base, key=order):
        _, cfg, t = min(results, key=lambda r: r[2][key])
        print(f"  {label(key)}: {t[key] * 1e3:8.1f} [{base[key] * 1e3:8.1f}]  {json.dumps(cfg)}")
    if json_path:
        with open(json_path, "w") as f:
            json.dump([dict(cfg=c, total_ms=tot, ms={label(k): v for k, v in t.items()}) for tot, c, t in results],
                      f, indent=1)
