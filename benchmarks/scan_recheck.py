"""Re-times the default GroupMamba scan at 56x56 (C64, C96) three times in one process, in the three
layouts/dtypes of ``benchmarks/scan.py``'s table: a check on a single slow timing of that table
(session 22: channels-last fp32 C64 read 294.8 us there, 208.6-209.4 us here; docs/gpu_runs/s22_run12.txt).

    PYTHONPATH=. python benchmarks/scan_recheck.py
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scan import bench, copy_bandwidth, group_bytes, group_inputs, rotating  # noqa: E402
from ssmzoo.ops import triton_scan as ts  # noqa: E402
gen = torch.Generator(device="cuda").manual_seed(0)
copy = copy_bandwidth()
print(f"copy {copy:.0f} GB/s")
for C, H in [(64, 56), (96, 56)]:
    for rnd in range(3):
        for dtype, cl in [(torch.float32, False), (torch.float32, True), (torch.bfloat16, True)]:
            nb = group_bytes(128, C, H, dtype)
            nxt = rotating(lambda: group_inputs(128, C, H, dtype, cl, gen), nb)
            ms = bench(lambda: ts.group_scan_4dir_triton(**nxt(), delta_softplus=True))
            print(f"round {rnd} C{C} {H}x{H} {'bhwc' if cl else 'bchw'} {str(dtype)[6:]:9} {ms * 1e3:7.1f} us "
                  f"{nb / ms / 1e6 / copy * 100:5.1f}% of copy", flush=True)
