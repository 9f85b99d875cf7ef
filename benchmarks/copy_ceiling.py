"""What a copy of each GroupMamba scan stage's bytes can reach, by three copies, on the GPU.

    PYTHONPATH=. python3 benchmarks/copy_ceiling.py [--json out.json]

Why: the issue-5 table's ``%same`` column compares each scan with ``torch``'s ``copy_`` of the same
bytes replayed from a CUDA graph. Captured in a graph, a device-to-device ``cudaMemcpyAsync`` becomes
a memcpy node, which the driver may run on a copy engine rather than on the SMs; a 1 GiB copy ran
at 2,438 GB/s that way against 2,999 GB/s call by call (docs/gpu_runs/s24_run9.txt). If an SM
kernel copies the same bytes faster, ``%same`` flatters the scans. So every size is copied three
ways, all as CUDA-graph replays over rotating buffers (as ``benchmarks/scan.py`` times the kernels):

* ``copy_``: ``dst.copy_(src)``, what ``%same`` uses today;
* ``add``: ``torch.add(src, 0.0, out=dst)``, PyTorch's vectorised elementwise kernel on the SMs;
* ``triton``: a plain Triton load/store kernel, the best of a few block sizes and warp counts.

The 1 GiB copy (the ``%copy`` reference) is also timed call by call, each way.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
import triton

from scan import GROUPMAMBA, RES, SAME_BYTES_COPIES, group_bytes, sized_copy_ms, triton_copy

COPY_CONFIGS = [(1024, 4), (2048, 4), (4096, 4), (4096, 8), (8192, 8), (16384, 16)]  # (BLOCK, num_warps)


def copies(block_warps):
    """name -> fn(dst, src)."""
    out = {"copy_": lambda d, s: d.copy_(s), "add": SAME_BYTES_COPIES["add"]}
    for block, warps in block_warps:
        out[f"triton B{block} w{warps}"] = lambda d, s, b=block, w=warps: triton_copy(d, s, b, w)
    return out


def time_sized(nbytes: float, fn, gen, graph: bool = True) -> float:
    """ms per copy of ``nbytes`` (half read, half written), float32 buffers: graph replays, or call by
    call (the 1 GiB reference)."""
    if graph:
        return sized_copy_ms(nbytes, fn, gen)
    half = int(nbytes // 8)
    dst, src = torch.empty(half, device="cuda"), torch.randn(half, device="cuda", generator=gen)
    return triton.testing.do_bench(lambda: fn(dst, src), warmup=25, rep=200, return_mode="median")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("benchmarks/copy_ceiling.py times copies on a GPU and needs a CUDA device")
    gen = torch.Generator(device="cuda").manual_seed(0)
    props = torch.cuda.get_device_properties(0)
    print(f"device: {props.name}, {props.multi_processor_count} SMs; torch {torch.__version__}, "
          f"triton {triton.__version__}", flush=True)
    fns = copies(COPY_CONFIGS)
    records = []
    gib = 2**30
    ref = None
    print("1 GiB copy (read + write = 2 GiB moved), GB/s:", flush=True)
    for graph in (False, True):
        for name, fn in fns.items():
            ms = time_sized(gib, fn, gen, graph=graph)
            gbs = gib / ms / 1e6
            if name == "copy_" and not graph:
                ref = gbs
            records.append(dict(size="1 GiB", bytes=gib, copy=name, graph=graph, ms=ms, GBs=gbs))
            print(f"  {'graph' if graph else 'call by call':<13} {name:<20} {ms * 1e3:9.1f} us {gbs:7.0f} GB/s",
                  flush=True)
    print(f"The stage sizes (fp32 and bf16 scan bytes, batch 128), graph replays; % of the 1 GiB copy_ "
          f"call by call ({ref:.0f} GB/s):", flush=True)
    shapes = sorted({(C, r) for dims in GROUPMAMBA.values() for C, r in zip(dims, RES)}, key=lambda t: -t[1])
    for C, H in shapes:
        for dtype in (torch.float32, torch.bfloat16):
            nb = group_bytes(128, C, H, dtype)
            best_triton = None
            for name, fn in fns.items():
                ms = time_sized(nb, fn, gen)
                gbs = nb / ms / 1e6
                rec = dict(size=f"C{C} {H}x{H} {str(dtype).replace('torch.', '')}", bytes=nb, copy=name,
                           graph=True, ms=ms, GBs=gbs, frac_copy=gbs / ref)
                records.append(rec)
                if name.startswith("triton"):
                    if best_triton is None or ms < best_triton["ms"]:
                        best_triton = rec
                    continue
                print(f"  {rec['size']:<20} {nb / 1e6:7.1f} MB  {name:<20} {ms * 1e3:8.1f} us {gbs:6.0f} GB/s "
                      f"{gbs / ref * 100:5.1f}%", flush=True)
            print(f"  {best_triton['size']:<20} {nb / 1e6:7.1f} MB  {'best ' + best_triton['copy']:<20} "
                  f"{best_triton['ms'] * 1e3:8.1f} us {best_triton['GBs']:6.0f} GB/s "
                  f"{best_triton['frac_copy'] * 100:5.1f}%", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(device=props.name, copy_GBs=ref, records=records), f, indent=1)


if __name__ == "__main__":
    main()
