"""`ssmzoo benchmark` with one of session 12's changes undone, for side-by-side A/B runs on the device.

AB_EINSUM=1: GroupMamba's per-group einsums on CUDA (instead of block-diagonal dense GEMMs).
AB_SEQ=1:    the bimamba scan in one segment (the sequential kernel, as before the split defaults).
AB_NO_LOOKBACK=1: GroupMamba's group scan on the tile kernel everywhere (no look-back kernel).
"""
import os
import sys

import ssmzoo.models.groupmamba as gm
import ssmzoo.ops.triton_bimamba as tb

if os.environ.get("AB_EINSUM"):
    gm._dense_projections = lambda x: False
if os.environ.get("AB_SEQ"):
    tb.SPLIT_SEG = 10 ** 9
if os.environ.get("AB_NO_LOOKBACK"):
    import ssmzoo.ops.triton_scan as ts

    _plain = ts.group_scan_4dir_triton
    ts.group_scan_4dir_triton = lambda *a, config=None, **k: _plain(*a, config=dict(config or {}, LOOKBACK=0), **k)
from ssmzoo.cli import app  # noqa: E402

sys.argv = ["ssmzoo", "benchmark", *sys.argv[1:]]
app()
