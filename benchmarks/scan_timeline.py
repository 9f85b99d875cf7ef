"""How one launch of the GroupMamba group kernel fills the GPU: each program's start, end and SM.

    PYTHONPATH=. python3 benchmarks/scan_timeline.py [--maps 64x56,96x56] [--dtype float32] [--config '{...}']
        [--save DIR]   # also each map's per-program times as DIR/timeline_C64x56_float32.pt
    python3 benchmarks/scan_timeline.py --load docs/gpu_runs/s33_timelines/timeline_C64x56_float32.pt

The kernel (``_group4_kernel`` with ``TIMES``) reads %globaltimer when a program starts and when it
has issued its last store, and its SM. Printed per map (batch 128, channel-first, the defaults):
the launch's span, when the last program started, the mean program duration of the row and the
column directions, the programs resident per SM at 20 instants (the most that fit is set by the
registers: 12 at 56x56), and how long the programs that started in each part of the span took.
Resident programs below the most that fit, in the middle of the span or at its end (the last
wave), are time the SMs had room for work and none was there: the refill gaps (from a program's end
to its successor's start on that SM) and the last wave are measured separately. Session 33
(docs/scan_notes.md).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys

import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from scan import group_inputs  # noqa: E402

from ssmzoo.ops.triton_scan import group_scan_4dir_triton  # noqa: E402


def timeline(x: dict, config: dict | None, n_sm: int, calls: int = 3) -> dict:
    """Per-program (start, end) in us from the launch's first start, SM and group, of the last of
    ``calls`` launches (the first compiles)."""
    batch, groups, dim_g = x["u"].shape[:3]
    times = torch.zeros(3 * dim_g * groups * batch, dtype=torch.int64, device="cuda")  # BD = 1 or less
    for _ in range(calls):
        group_scan_4dir_triton(**x, delta_softplus=True, config=dict(config or {}, TIMES=times))
    torch.cuda.synchronize()
    t = times.view(-1, 3).cpu()
    ran = t[:, 1] > 0  # programs the launch had (fewer than dim_g per group where BD > 1)
    t = t[ran]
    n_d = int(ran.sum()) // (groups * batch)
    group = (torch.arange(t.shape[0]) // n_d) % groups
    t0 = t[:, 0].min()
    return dict(start=(t[:, 0] - t0).double() / 1e3, end=(t[:, 1] - t0).double() / 1e3, sm=t[:, 2],
                group=group, n_sm=n_sm)


def summary(tl: dict) -> list[str]:
    start, end, group = tl["start"], tl["end"], tl["group"]
    dur, span = end - start, end.max().item()
    rows, cols = group % 2 == 0, group % 2 == 1
    instants = [span * (i + 0.5) / 20 for i in range(20)]
    resident = [((start <= s) & (end > s)).sum().item() / tl["n_sm"] for s in instants]
    lines = [f"span {span:.1f} us, last start {start.max():.1f} us, {len(start)} programs; mean duration "
             f"rows {dur[rows].mean():.1f} us, columns {dur[cols].mean():.1f} us; mean resident per SM "
             f"{dur.sum() / span / tl['n_sm']:.2f}",
             "resident per SM at 20 instants: " + " ".join(f"{r:.1f}" for r in resident)]
    for lo, hi in ((0, 0.25), (0.25, 0.75), (0.75, 1.01)):
        part = (start >= span * lo) & (start < span * hi)
        lines.append(f"started in [{lo:.2f}, {min(hi, 1):.2f}) of the span: {int(part.sum())} programs, "
                     f"mean duration {dur[part].mean():.1f} us")
    gaps, slots = refill_gaps(tl)
    ideal = dur.sum().item() / tl["n_sm"] / slots
    lines.append(f"refills (an SM's k-th start after its first wave follows its k-th end): gap median "
                 f"{gaps.median():.2f} us, mean {gaps.mean():.2f}, p90 {gaps.quantile(0.9):.2f}, max {gaps.max():.2f}; "
                 f"{gaps.sum() / tl['n_sm'] / slots:.1f} us of the span per SM at {slots} resident")
    lines.append(f"the programs' time at {slots} resident per SM would take {ideal:.1f} us of the {span:.1f} "
                 f"({ideal / span:.1%}); the last wave (last start to end) {span - start.max():.1f} us")
    return lines


def refill_gaps(tl: dict) -> tuple[torch.Tensor, int]:
    """Per SM, the time from each program's end to the start of the program that took its place
    (the k-th start after the first wave follows the k-th end), and the first wave's size."""
    gaps, slots = [], 0
    for s in range(tl["n_sm"]):
        on = tl["sm"] == s
        starts, ends = tl["start"][on].sort().values, tl["end"][on].sort().values
        first = int((starts < starts[0] + 0.5).sum())  # started within 0.5 us of the SM's first
        slots = max(slots, first)
        n = len(starts) - first
        gaps.append(starts[first:] - ends[:n])
    return torch.cat(gaps), slots


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--maps", default="64x56,96x56,128x28", help="CxH,... (batch 128)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--config", default=None, help="kernel config dict (Python/JSON literal)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--save", default=None, metavar="DIR", help="save each map's per-program times (torch.save)")
    ap.add_argument("--load", default=None, metavar="FILE", help="summarise a saved timeline (no GPU needed)")
    args = ap.parse_args()
    if args.load:
        for line in summary(torch.load(args.load, weights_only=True)):
            print(line)
        return
    config = ast.literal_eval(args.config) if args.config else None
    gen = torch.Generator(device="cuda").manual_seed(0)
    n_sm = torch.cuda.get_device_properties(0).multi_processor_count
    print(f"{torch.cuda.get_device_name(0)}, {n_sm} SMs, {args.dtype}, batch {args.batch}, config {json.dumps(config)}")
    for spec in args.maps.split(","):
        C, H = map(int, spec.split("x"))
        x = group_inputs(args.batch, C, H, getattr(torch, args.dtype), False, gen)
        print(f"C{C} {H}x{H}")
        times = timeline(x, config, n_sm)
        for line in summary(times):
            print("  " + line, flush=True)
        if args.save:
            torch.save(times, f"{args.save}/timeline_C{C}x{H}_{args.dtype}.pt")


if __name__ == "__main__":
    main()
