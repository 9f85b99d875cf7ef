"""`ssmzoo benchmark` with one of session 12's changes undone, for side-by-side A/B runs on the device.

AB_EINSUM=1: GroupMamba's per-group einsums on CUDA (instead of block-diagonal dense GEMMs).
AB_SEQ=1:    the bimamba scan in one segment (the sequential kernel, as before the split defaults).
"""
import os
import sys

import ssmzoo.models.groupmamba as gm
import ssmzoo.ops.triton_bimamba as tb

if os.environ.get("AB_EINSUM"):
    gm._dense_projections = lambda x: False
if os.environ.get("AB_SEQ"):
    tb.SPLIT_SEG = 10 ** 9
from ssmzoo.cli import app  # noqa: E402

sys.argv = ["ssmzoo", "benchmark", *sys.argv[1:]]
app()
