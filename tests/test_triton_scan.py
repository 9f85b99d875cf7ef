"""Triton scan kernels against the float64 step-by-step recurrence (``selective_scan_ref``).

On every machine the kernels run under the Triton interpreter (``TRITON_INTERPRET=1``, CPU tensors,
small shapes) in one subprocess, because the variable must be set before Triton is imported.
On a CUDA machine the same checks also run compiled, at full size (marked ``gpu``).

Error measure: ||out - ref|| / ||ref||, ref = the float64 recurrence on the same (possibly low
precision) input values, not rounded. Tolerances: float32 1e-5 (seen ~1.4e-7), float16 2e-3,
bfloat16 1e-2 (rounding the output alone costs ~3e-4 / ~2e-3). Outputs are pre-filled with NaN,
so an unwritten element fails.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys

import pytest
import torch

from interpreter import checked, run_cases, run_interpreted

pytest.importorskip("triton")

TOL = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 1e-2}


# ---------------------------------------------------------------------------------------------
# Cases: plain dicts, so the interpreter subprocess can run the very same ones
# ---------------------------------------------------------------------------------------------

def scan_case(batch, dim, length, n_state, groups=None, dtype="float32", reverse=False,
              optional=True, channels_last=False, config=None):
    """channels_last: u/delta/z/B/C are (batch, L, .) tensors seen transposed (as VideoMamba makes them)."""
    return dict(kind="scan", batch=batch, dim=dim, length=length, n_state=n_state, groups=groups,
                dtype=dtype, reverse=reverse, optional=optional, channels_last=channels_last, config=config)


def bimamba_case(batch, dim, length, n_state, dtype="float32", flipped=False, channels_last=False,
                 config=None):
    return dict(kind="bimamba", batch=batch, dim=dim, length=length, n_state=n_state, dtype=dtype,
                flipped=flipped, channels_last=channels_last, config=config)


def group_case(batch, dim, H, W, n_state=1, dtype="float32", channels_last=False, sliced=False,
               config=None):
    """sliced: the maps are views of wider ones, so H and W don't merge into one stride."""
    return dict(kind="group", batch=batch, dim=dim, H=H, W=W, n_state=n_state, dtype=dtype,
                channels_last=channels_last, sliced=sliced, config=config)


def norm_gate_case(batch, dim, H, W, dtype="float32", sliced=False, xproj=False, outproj=False, config=None):
    """The scan with GroupMamba's per-group LayerNorm and SiLU(z) gate fused (channels-last maps, as
    the model's; z a view of another buffer, like the in_proj output it is in the model); xproj: delta,
    B and C computed in the kernel from u and the groups' x_proj weight; outproj: the groups' out_proj
    applied in the kernel too."""
    return dict(kind="norm_gate", batch=batch, dim=dim, H=H, W=W, n_state=1, dtype=dtype,
                channels_last=True, sliced=sliced, xproj=xproj or None, outproj=outproj or None, config=config)


def case_id(c: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in c.items() if k != "config" and v is not None) + (
        f"-cfg={c['config']}" if c.get("config") else "")


# Small shapes for the interpreter: odd lengths, D not a multiple of the block, several chunks
# (small explicit tiles), non-square maps, both memory layouts, all dtypes.
SMALL = dict(BL=16, BD=4)
INTERP_CASES = [
    scan_case(2, 5, 1, 1, config=SMALL),
    scan_case(2, 5, 7, 1, config=SMALL),
    scan_case(1, 6, 37, 3, config=SMALL),
    scan_case(2, 6, 20, 2, groups=3, config=SMALL),
    scan_case(1, 5, 37, 2, reverse=True, config=SMALL),
    scan_case(1, 3, 29, 2, optional=False, config=SMALL),
    scan_case(1, 5, 197, 1),
    scan_case(1, 5, 23, 2, dtype="float16", config=SMALL),
    scan_case(2, 6, 37, 2, channels_last=True, config=dict(BL=16, BD=4)),
    scan_case(1, 5, 37, 1, channels_last=True, reverse=True, config=dict(BL=16, BD=4, V=4)),
    scan_case(1, 5, 23, 2, dtype="bfloat16", config=SMALL),
    bimamba_case(2, 6, 23, 2, config=SMALL),
    bimamba_case(1, 5, 23, 2, flipped=True, config=SMALL),
    bimamba_case(1, 5, 19, 2, dtype="bfloat16", config=SMALL),
    bimamba_case(1, 6, 21, 2, channels_last=True, flipped=True, config=SMALL),
    group_case(2, 3, 5, 7, config=dict(BL=16, BD=4, BDC=2, CB=4)),
    group_case(1, 5, 9, 10, config=dict(BL=16, BD=4, BDC=4, CB=4)),
    group_case(1, 4, 6, 3, n_state=2, channels_last=True, config=dict(BL=16, BD=4, BDC=4, CB=2)),
    group_case(1, 3, 7, 5, channels_last=True),
    group_case(1, 5, 6, 7, channels_last=True, config=dict(BD=4, BL=16, V=4, TRANS=True, CB=2, BDC=2)),
    group_case(1, 3, 5, 6, sliced=True, config=dict(BL=8, BD=2, BDC=2, CB=2)),
    group_case(1, 4, 5, 6, channels_last=True, sliced=True, config=dict(BL=8, BD=4, BDC=4, CB=2)),
    group_case(1, 3, 4, 6, dtype="bfloat16", config=dict(BL=8, BD=2, BDC=2, CB=2)),
    # v3 paths: two-level column scan (COLS=1, default) with several column blocks, H not a power of
    # two, non-square maps, prefetch; whole-row tiles (ROWS=1); the v2 reshape path (COLS=0)
    group_case(1, 3, 6, 11, config=dict(BL=16, BD=4, BDC=2, CB=4, PREF=True)),
    group_case(1, 5, 8, 16, config=dict(BL=16, BD=4, BDC=4, CB=8)),  # W, rows 8-aligned: vector columns
    group_case(1, 5, 7, 5, n_state=2, channels_last=True, config=dict(BD=4, BDC=4, CB=1, ROWS=1, PREF=True)),
    group_case(2, 6, 5, 9, channels_last=True, config=dict(BD=4, BDC=2, CB=2, ROWS=1)),
    group_case(1, 5, 10, 3, channels_last=True, config=dict(BD=8, BDC=4, CB=4, ROWS=1, PREF=True)),
    group_case(1, 4, 5, 6, channels_last=True, sliced=True, config=dict(BD=4, BDC=4, CB=2, ROWS=1)),
    group_case(1, 3, 5, 7, config=dict(BL=16, BD=4, BDC=2, CB=4, COLS=0)),
    group_case(1, 3, 6, 5, dtype="bfloat16", channels_last=True, config=dict(BD=4, BDC=4, CB=2, ROWS=1)),
    # the single-pass look-back kernel (d_state 1): several segments and channel blocks per chain,
    # segments that end mid-row and mid-column, one-step maps, both layouts, sliced maps, 16-bit
    group_case(2, 5, 7, 9, channels_last=True, config=dict(LOOKBACK=1, SEG=16, BD=4)),
    group_case(1, 3, 5, 6, config=dict(LOOKBACK=1, SEG=8, BD=2)),
    group_case(1, 16, 6, 11, dtype="bfloat16", channels_last=True, config=dict(LOOKBACK=1, SEG=32, BD=16)),
    group_case(1, 4, 1, 1, channels_last=True, config=dict(LOOKBACK=1, SEG=16, BD=4)),
    group_case(1, 4, 5, 6, channels_last=True, sliced=True, config=dict(LOOKBACK=1, SEG=4, BD=4)),
    group_case(2, 6, 4, 13, dtype="float16", channels_last=True, config=dict(LOOKBACK=1, SEG=64, BD=8)),
    # the decoupled look-back (aggregates folded in while predecessors still look back)
    group_case(2, 5, 7, 9, channels_last=True, config=dict(LOOKBACK=1, SEG=16, BD=4, CHAINED=0)),
    group_case(1, 16, 6, 11, dtype="bfloat16", channels_last=True, config=dict(LOOKBACK=1, SEG=8, BD=16, CHAINED=0)),
    # the norm-gate epilogue: whole groups per program (d not a power of 2: masked channels in the
    # norm), several segments, a segment ending mid-column, one-step maps, sliced maps, 16-bit
    norm_gate_case(2, 5, 7, 9, config=dict(SEG=16)),
    norm_gate_case(1, 16, 6, 11, dtype="bfloat16"),
    norm_gate_case(1, 12, 5, 6, sliced=True, config=dict(SEG=8, num_warps=1)),
    norm_gate_case(2, 4, 1, 1),
    norm_gate_case(1, 6, 3, 13, dtype="float16", config=dict(SEG=8, CHAINED=0)),
    # ... with x_proj in the kernel too (tensor-core tiles: SEG and BD >= 16; d below BD: masked)
    norm_gate_case(2, 16, 7, 9, xproj=True, config=dict(SEG=16)),
    norm_gate_case(1, 16, 6, 11, dtype="bfloat16", xproj=True),
    norm_gate_case(1, 12, 5, 6, sliced=True, xproj=True, config=dict(SEG=16)),
    norm_gate_case(1, 20, 3, 13, dtype="float16", xproj=True, config=dict(SEG=16, BD=32)),
    norm_gate_case(2, 16, 7, 9, xproj=True, outproj=True, config=dict(SEG=16)),
    norm_gate_case(1, 12, 6, 11, dtype="float16", outproj=True, config=dict(SEG=16)),
    # the lane-per-channel kernel (opt-in: SEQ=1, or SEQ_SCAN for small channels-last maps): several
    # channel blocks, chunks of K steps that do not divide H x W, one-step maps, sliced maps,
    # channel-first maps, 16-bit; with the norm-gate epilogue (d not a power of 2: masked channels in
    # the norm); SEQ=0 forces the look-back kernel
    group_case(2, 5, 7, 9, channels_last=True, config=dict(SEQ=1, BD=4, K=3)),
    group_case(1, 16, 6, 11, dtype="bfloat16", channels_last=True, config=dict(SEQ=1)),
    group_case(1, 4, 5, 6, channels_last=True, sliced=True, config=dict(SEQ=1, K=4)),
    group_case(1, 4, 1, 1, channels_last=True, config=dict(SEQ=1)),
    group_case(2, 6, 4, 13, dtype="float16", channels_last=True, config=dict(SEQ=1, BD=8, K=5)),
    group_case(1, 3, 5, 6, config=dict(SEQ=1, BD=2)),
    norm_gate_case(2, 5, 7, 9, config=dict(SEQ=1, K=3)),
    norm_gate_case(1, 12, 5, 6, sliced=True, config=dict(SEQ=1, K=2)),
    norm_gate_case(1, 6, 3, 13, dtype="float16", config=dict(SEQ=1)),
    norm_gate_case(1, 16, 6, 11, dtype="bfloat16", config=dict(SEQ=0)),  # the look-back kernel
    # the plane kernel's whole-plane tiles (RUNS=0; channel-first maps, whole planes per program):
    # padded planes (H, W not powers of 2), channel blocks wider than d and not dividing it, one
    # row, one column, 8-aligned planes (vector loads), 16-bit inputs
    group_case(2, 3, 5, 7, config=dict(RUNS=0)),
    group_case(1, 5, 9, 10, config=dict(PLANE=1, RUNS=0, BD=2)),
    group_case(1, 3, 1, 9, config=dict(PLANE=1, RUNS=0)),
    group_case(1, 3, 7, 1, config=dict(PLANE=1, RUNS=0, BD=1, num_warps=1)),
    group_case(1, 4, 8, 8, dtype="float16", config=dict(PLANE=1, RUNS=0, BD=1)),
    group_case(2, 3, 6, 10, dtype="bfloat16", config=dict(RUNS=0)),
    # the plane kernel's runs (its default up to 16 x 16: warps own planes, runs of RUNS steps per
    # thread, every direction a forward scan through its position map): the defaults (two planes per
    # warp in fp32, four in 16-bit dtypes), several chunks per plane (35 steps in chunks of 32; 14x14
    # in chunks of 128), one row, one column, more planes than warps and fewer channels than planes
    # per program, 16-bit inputs, a whole plane in one thread's run
    group_case(2, 3, 5, 7),
    group_case(1, 6, 9, 7, dtype="bfloat16"),
    group_case(1, 5, 13, 11),  # 143 positions: runs of 4, one plane per warp, two chunks of 128
    group_case(2, 3, 5, 7, config=dict(PLANE=1, RUNS=1)),
    group_case(1, 3, 14, 14, config=dict(PLANE=1, RUNS=4)),
    group_case(1, 2, 1, 9, config=dict(PLANE=1, RUNS=2)),
    group_case(1, 2, 7, 1, config=dict(PLANE=1, RUNS=2)),
    group_case(1, 3, 6, 12, dtype="bfloat16", config=dict(PLANE=1, RUNS=2, BD=8, num_warps=2)),
    group_case(1, 5, 3, 6, config=dict(PLANE=1, RUNS=8, BD=2, num_warps=1)),
    # ... the runs' entering states from an inclusive scan of their totals and a gather (RUNS_GATHER, the
    # default on planes of at most 64 positions and in 16-bit dtypes) or a four-component scan
    group_case(2, 3, 5, 7, config=dict(RUNS_GATHER=0)),
    group_case(1, 5, 13, 11, config=dict(RUNS_GATHER=1)),
    group_case(1, 6, 9, 7, dtype="bfloat16", config=dict(RUNS_GATHER=0)),
    # the strip kernel (opt-in STRIPS=1; channel-first planes cut into strips scanned at once, each
    # folding its predecessors' aggregates): several strips per plane that end mid-row, partial column
    # strips at either end (reversed groups), one row, one column, its default tiles, 16-bit inputs
    group_case(2, 3, 5, 7, config=dict(STRIPS=1, SEG=16, KC=2)),
    group_case(1, 2, 1, 9, config=dict(STRIPS=1, SEG=4, KC=2)),
    group_case(1, 2, 7, 1, config=dict(STRIPS=1, SEG=2, KC=1)),
    group_case(1, 3, 8, 16, config=dict(STRIPS=1)),
    group_case(1, 4, 6, 12, dtype="bfloat16", config=dict(STRIPS=1, SEG=16, KC=4, num_warps=1)),
    # the tile kernel's column runs (COLS=2: runs of rows in one thread's registers; channel-first
    # planes, one channel per sweep): runs dividing H (whole padding runs) and not, column blocks
    # cut by W, channel blocks wider than the last one, one row, one column, 16-bit inputs, and a
    # sliced map, whose planes are not contiguous (the two-level sweep runs instead)
    group_case(2, 3, 8, 16, config=dict(COLS=2, BD=1, BDC=1)),
    group_case(1, 3, 13, 9, config=dict(COLS=2, BD=2, BDC=1, RUN=4, CB=4)),
    group_case(1, 2, 1, 6, config=dict(COLS=2, BD=1, BDC=1, CB=4)),
    group_case(1, 2, 7, 1, config=dict(COLS=2, BD=1, BDC=1, CB=2)),
    group_case(1, 4, 6, 12, dtype="bfloat16", config=dict(COLS=2, BD=1, BDC=1, RUN=2)),
    group_case(1, 3, 5, 6, sliced=True, config=dict(COLS=2, BD=1, BDC=1)),
    group_case(1, 2, 13, 9, config=dict(COLS=2, BD=1, BDC=1, RUN=4, PREF=True)),  # next block loaded ahead
    # ... with runs whose length is not a power of 2, scanned as parts of 4 + 2 + 1, 2 + 1, 4 + 2 rows
    # (RUN=7: 56x56 as 8 runs of 7, no padding rows): runs dividing H (14 = 2 x 7; 9 = 3 x 3) and not
    # (13 rows in runs of 7, 5: part of the last run and whole runs past H are padding), one run per
    # column, columns cut by W, the next block and C loaded ahead, 16-bit inputs
    group_case(1, 2, 14, 9, config=dict(COLS=2, BD=1, BDC=1, RUN=7, CB=4)),
    group_case(1, 2, 9, 6, config=dict(COLS=2, BD=1, BDC=1, RUN=3, CB=8, PREF=1)),
    group_case(1, 3, 13, 9, config=dict(COLS=2, BD=1, BDC=1, RUN=7, PREF=2)),
    group_case(1, 2, 13, 5, config=dict(COLS=2, BD=1, BDC=1, RUN=5, CB=2, PREF=1)),
    group_case(1, 2, 7, 6, config=dict(COLS=2, BD=1, BDC=1, RUN=7, PREF=2)),
    group_case(1, 3, 12, 10, dtype="bfloat16", config=dict(ROWS=2, COLS=2, BD=1, BDC=1, RUN=6, KR=4, PREF=1)),
    # ... and its row runs (ROWS=2: blocks of whole rows as 4-element vectors, reversed groups read
    # from the bottom right): blocks of rows dividing H and not, rows not a multiple of 4 (no vector
    # loads), one row, one column, 16-bit inputs, a sliced map (the row sweep runs instead)
    group_case(2, 3, 8, 16, config=dict(ROWS=2, KR=4, BD=1, BDC=1)),
    group_case(1, 3, 13, 9, config=dict(ROWS=2, COLS=2, BD=2, BDC=1)),
    group_case(1, 3, 13, 8, config=dict(ROWS=2, COLS=2, BD=2, BDC=1, KR=4, PREF=True)),
    group_case(1, 2, 1, 6, config=dict(ROWS=2, BD=1, BDC=1)),
    group_case(1, 2, 7, 1, config=dict(ROWS=2, KR=4, BD=1, BDC=1)),
    group_case(1, 4, 6, 12, dtype="bfloat16", config=dict(ROWS=2, COLS=2, KR=2, BD=1, BDC=1)),
    group_case(1, 3, 5, 6, sliced=True, config=dict(ROWS=2, BD=1, BDC=1)),
    # both runs with C loaded ahead too (PREF 2), and row runs over the plane re-cut into rows of
    # another length (ROWW: the row-major sequence is the plane's memory order), 8 | 48 and 4 | 35
    group_case(1, 2, 13, 9, config=dict(ROWS=2, COLS=2, BD=1, BDC=1, RUN=4, KR=4, PREF=2)),
    group_case(1, 3, 6, 8, dtype="bfloat16", config=dict(ROWS=2, COLS=2, BD=1, BDC=1, KR=2, PREF=2)),
    group_case(1, 3, 8, 6, config=dict(ROWS=2, BD=1, BDC=1, KR=2, ROWW=8)),
    group_case(1, 2, 5, 7, config=dict(ROWS=2, COLS=2, BD=1, BDC=1, KR=4, ROWW=35, PREF=2)),
    # ... as on 28x28 maps in fp32: blocks of 8 rows, the last one partly padding (12 = 8 + 4)
    group_case(1, 2, 12, 7, config=dict(ROWS=2, COLS=2, BD=1, BDC=1, RUN=4, KR=8, PREF=2)),
    # ... with the rows the blocks leave over scanned first as a block of their own (RTAIL, the fp32
    # default on 28x28 and 56x56): 1 left over (13 = 1 + 3 x 4, as 56x56's 49 rows of 64), 3 (a
    # 4-row block with one padding row), 4 (28x28's 28 = 4 + 3 x 8), fewer rows than one block,
    # rows re-cut (224 = 7 x 32), 16-bit inputs, no prefetch
    group_case(1, 2, 13, 9, config=dict(ROWS=2, COLS=2, BD=1, BDC=1, KR=4, PREF=2, RTAIL=1)),
    group_case(1, 2, 11, 6, config=dict(ROWS=2, BD=1, BDC=1, KR=4, PREF=1, RTAIL=1)),
    group_case(1, 2, 12, 7, config=dict(ROWS=2, COLS=2, BD=1, BDC=1, RUN=4, KR=8, PREF=2, RTAIL=1)),
    group_case(1, 2, 3, 5, config=dict(ROWS=2, BD=1, BDC=1, KR=4, RTAIL=1)),
    group_case(1, 3, 14, 16, dtype="bfloat16", config=dict(ROWS=2, BD=1, BDC=1, KR=4, ROWW=32, PREF=2, RTAIL=1)),
    group_case(1, 2, 13, 9, config=dict(ROWS=2, BD=1, BDC=1, KR=4, PREF=0, RTAIL=1)),
    # column runs with C multiplied in as each part is scanned (CFOLD, with C loaded ahead: the fp32
    # default on 56x56): parts of 4 + 2 + 1 rows, runs not dividing H, 16-bit inputs, 4-column blocks
    group_case(1, 3, 13, 9, config=dict(COLS=2, BD=1, BDC=1, RUN=7, PREF=2, CFOLD=1)),
    group_case(1, 2, 12, 10, dtype="bfloat16", config=dict(ROWS=2, COLS=2, BD=1, BDC=1, RUN=4, KR=4, PREF=2,
                                                            CFOLD=1)),
    group_case(1, 2, 14, 9, config=dict(ROWS=2, COLS=2, BD=1, BDC=1, RUN=7, CB=4, PREF=2, CFOLD=1, RTAIL=1)),
    # column runs whose pointers show 2 elements of alignment (CVEC 2, the 56x56 default: 2-element
    # vectors along the columns), with and without the fold, runs not dividing H, 16-bit inputs, an odd
    # width (no vectors there: the interpreter checks the arithmetic, the GPU cases the vectors)
    group_case(1, 3, 14, 16, config=dict(COLS=2, BD=1, BDC=1, RUN=7, PREF=2, CFOLD=1, CVEC=2)),
    group_case(1, 2, 13, 8, config=dict(ROWS=2, COLS=2, BD=1, BDC=1, RUN=4, KR=4, PREF=2, CVEC=2)),
    group_case(1, 2, 12, 16, dtype="bfloat16", config=dict(ROWS=2, COLS=2, BD=1, BDC=1, RUN=7, PREF=2, CVEC=2)),
    group_case(1, 2, 7, 9, config=dict(COLS=2, BD=1, BDC=1, RUN=7, PREF=1, CVEC=2)),
]


def _rand(gen, *shape, scale=1.0):
    return torch.randn(*shape, generator=gen) * scale


def _f64(v):
    """The reference gets the very same (possibly low-precision) values, in float64, and so returns
    the unrounded float64 result (selective_scan_ref rounds to u's dtype)."""
    return v.double() if torch.is_tensor(v) and v.is_floating_point() else v


def run_case(case: dict, device: str, seed: int) -> dict:
    """Builds fresh random inputs, runs the kernel and the float64 reference; returns the error."""
    from ssmzoo.ops import selective_scan_ref
    from ssmzoo.ops import triton_scan as ts

    gen = torch.Generator().manual_seed(seed)
    dtype = getattr(torch, case["dtype"])
    N = case["n_state"]

    def act(t):  # low-precision inputs live in their dtype; the reference upcasts exactly those
        return t.to(device=device, dtype=dtype)

    def par(t):
        return t.to(device)

    if case["kind"] in ("scan", "bimamba"):
        b, d, L = case["batch"], case["dim"], case["length"]
        G = case.get("groups")
        bc = (b, N, L) if G is None else (b, G, N, L)

        def seq(*shape, scale=1.0):  # (batch, ..., L), stored channels-last if asked
            if case["channels_last"]:
                return act(_rand(gen, shape[0], shape[-1], *shape[1:-1], scale=scale)).movedim(1, -1)
            return act(_rand(gen, *shape, scale=scale))

        def direction():
            return dict(u=seq(b, d, L), delta=seq(b, d, L, scale=0.5),
                        A=par(-torch.exp(_rand(gen, d, N, scale=0.5))), B=seq(*bc),
                        C=seq(*bc), D=par(_rand(gen, d)), delta_bias=par(_rand(gen, d, scale=0.1)))

        out = torch.full((b, d, L), float("nan"), dtype=dtype, device=device)
        if case["channels_last"]:
            out = torch.full((b, L, d), float("nan"), dtype=dtype, device=device).transpose(1, 2)
        z = seq(b, d, L)
        if case["kind"] == "scan":
            x = dict(direction(), z=z)
            if not case["optional"]:
                x.update(D=None, z=None, delta_bias=None)
            y = ts.selective_scan_triton(**x, delta_softplus=True, reverse=case["reverse"], out=out,
                                         config=case["config"])
            x64 = {k: _f64(v) for k, v in x.items()}
            if case["reverse"]:
                flip = {k: (v.flip(-1) if k in ("u", "delta", "z", "B", "C") and v is not None else v)
                        for k, v in x64.items()}
                ref = selective_scan_ref(**flip, delta_softplus=True).flip(-1)
            else:
                ref = selective_scan_ref(**x64, delta_softplus=True)
        else:
            f, bw = direction(), direction()
            args = dict(u=f["u"], delta=f["delta"], A=f["A"], B=f["B"], C=f["C"], D=f["D"],
                        u_b=bw["u"], delta_b=bw["delta"], A_b=bw["A"], B_b=bw["B"], C_b=bw["C"],
                        D_b=bw["D"], z=z, delta_bias=f["delta_bias"], delta_bias_b=bw["delta_bias"],
                        delta_softplus=True, backward_flipped=case["flipped"])
            y = ts.bimamba_scan_triton(**args, out=out, config=case["config"])
            ref = ts.bimamba_scan_ref(**{k: _f64(v) for k, v in args.items()})
    else:
        b, d, H, W = case["batch"], case["dim"], case["H"], case["W"]
        pad = 3 if case["sliced"] else 0
        if case["channels_last"]:  # (b, H, W, 4, d) memory, seen as (b, 4, d, H, W)
            def amap(c, scale=1.0):
                return act(_rand(gen, b, H, W + pad, 4, c, scale=scale)).permute(0, 3, 4, 1, 2)[..., :W]
        else:
            def amap(c, scale=1.0):
                return act(_rand(gen, b, 4, c, H, W + pad, scale=scale))[..., :W]
        u, delta = amap(d), amap(d, 0.5)
        Bm, Cm = amap(N), amap(N)
        A = par(-torch.exp(_rand(gen, 4, d, N, scale=0.5)))
        D, bias = par(_rand(gen, 4, d)), par(_rand(gen, 4, d, scale=0.1))
        out = torch.full_like(u, float("nan"))
        if case["kind"] == "norm_gate":
            z = amap(d)
            extra = (par(1.0 + _rand(gen, 4, d, scale=0.2)), par(_rand(gen, 4, d, scale=0.2)), 1e-5, z)
            xw = None
            if case.get("xproj"):  # (weights representable in the inputs' dtype: the kernel rounds to it)
                xw = par(_rand(gen, 4, d + 2, d, scale=d ** -0.5).to(dtype).float())
                delta = Bm = Cm = None
            ow = par(_rand(gen, 4, d, d, scale=d ** -0.5).to(dtype).float()) if case.get("outproj") else None
            y = ts.group_scan_4dir_norm_gate_triton(u, delta, A, Bm, Cm, D, bias, True, *extra, x_proj=xw,
                                                    out_proj=ow, out=out, config=case["config"])
            ref = ts.group_scan_4dir_norm_gate_ref(*[_f64(t) for t in (u, delta, A, Bm, Cm, D, bias, True, *extra)],
                                                   x_proj=_f64(xw), out_proj=_f64(ow))
        else:
            y = ts.group_scan_4dir_triton(u, delta, A, Bm, Cm, D, bias, True, out=out, config=case["config"])
            ref = ts.group_scan_4dir_ref(*[_f64(t) for t in (u, delta, A, Bm, Cm, D, bias)], True)
    assert y is out and y.dtype == dtype
    err = ((y.double() - ref.double()).norm() / ref.double().norm()).item()
    return dict(err=err, nan=bool(torch.isnan(y).any()), shape=list(y.shape))


def _check(result: dict, case: dict) -> None:
    assert not result["nan"], f"unwritten (NaN) outputs: {case_id(case)}"
    assert result["err"] < TOL[case["dtype"]], f"rel err {result['err']:.3g} for {case_id(case)}"


# ---------------------------------------------------------------------------------------------
# Interpreter (every machine)
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def interpreted() -> list[dict]:
    return run_interpreted(__file__, "--interpret")


@pytest.mark.parametrize("index", range(len(INTERP_CASES)), ids=[case_id(c) for c in INTERP_CASES])
def test_interpreted_kernel_matches_float64_reference(interpreted, index):
    result = interpreted[index]
    assert "error" not in result, result.get("error")
    _check(result, INTERP_CASES[index])


def test_import_registers_backend():
    import importlib

    from ssmzoo.ops import available_backends
    from ssmzoo.ops import triton_scan

    dispatch = importlib.import_module("ssmzoo.ops.selective_scan")
    # the unchecked kernel: selective_scan has checked the arguments (selective_scan_triton checks them)
    assert dispatch._BACKENDS["triton"] is triton_scan._selective_scan_triton
    assert ("triton" in available_backends()) == torch.cuda.is_available()  # listed where it can run


def test_group_reference_matches_model_convention():
    """The fused op's reference follows the same direction convention as the GroupMamba model."""
    gm = pytest.importorskip("ssmzoo.models.groupmamba")
    from ssmzoo.ops import selective_scan_chunked
    from ssmzoo.ops.triton_scan import group_scan_4dir_ref

    gen = torch.Generator().manual_seed(torch.seed() % 2**31)
    b, d, H, W, N = 2, 3, 5, 7, 1
    u, delta = torch.randn(b, 4, d, H, W, generator=gen), torch.randn(b, 4, d, H, W, generator=gen) * 0.5
    Bm, Cm = torch.randn(b, 4, N, H, W, generator=gen), torch.randn(b, 4, N, H, W, generator=gen)
    A = -torch.exp(torch.randn(4, d, N, generator=gen) * 0.5)
    D, bias = torch.randn(4, d, generator=gen), torch.randn(4, d, generator=gen) * 0.1
    ref = group_scan_4dir_ref(u, delta, A, Bm, Cm, D, bias, True, scan_fn=selective_scan_chunked)
    model = gm.group_scan_4dir_torch(u, delta, A, Bm, Cm, D=D, delta_bias=bias, delta_softplus=True)
    assert ((ref - model).norm() / ref.norm()).item() < 1e-6


def _check_custom_ops(seed: int) -> dict:
    """The kernels as torch operators: schema and fake (shape/stride) functions pass torch's opcheck,
    and a function calling them compiles as one graph (``fullgraph``) with the same result."""
    from ssmzoo.ops import triton_scan as ts

    gen = torch.Generator().manual_seed(seed)
    b, d, H, W, N = 2, 5, 3, 7, 1
    u = torch.randn(b, H, W, 4, d, generator=gen).permute(0, 3, 4, 1, 2)  # channels-last, as in the model
    delta = torch.randn(b, H, W, 4, d, generator=gen).permute(0, 3, 4, 1, 2) * 0.5
    Bm, Cm = torch.randn(b, 4, N, H, W, generator=gen), torch.randn(b, 4, N, H, W, generator=gen)
    A = -torch.exp(torch.randn(4, d, N, generator=gen) * 0.5)
    group_args = (u, delta, A, Bm, Cm, torch.randn(4, d, generator=gen), torch.randn(4, d, generator=gen), True)

    L, n = 11, 2
    seq = lambda *shape: torch.randn(*shape, generator=gen)  # noqa: E731
    bim_args = (seq(b, d, L), seq(b, d, L) * 0.5, -torch.rand(d, n, generator=gen) - 0.5, seq(b, n, L),
                seq(b, n, L), seq(d), seq(b, d, L), seq(b, d, L) * 0.5, -torch.rand(d, n, generator=gen) - 0.5,
                seq(b, n, L), seq(b, n, L), seq(d), seq(b, d, L), seq(d), seq(d), True, True)
    z = torch.randn(b, H, W, 4, d, generator=gen).permute(0, 3, 4, 1, 2)
    norm_gate_args = group_args + (1.0 + 0.2 * torch.randn(4, d, generator=gen), 0.2 * torch.randn(4, d, generator=gen),
                                   1e-5, z)
    errors = {}
    for name, op, args in (("group", ts.group_scan_4dir_op, group_args), ("bimamba", ts.bimamba_scan_op, bim_args),
                           ("norm_gate", ts.group_scan_4dir_norm_gate_op, norm_gate_args)):
        torch.library.opcheck(op, args, test_utils=("test_schema", "test_faketensor"))
        compiled = torch.compile(lambda *a, op=op: op(*a) * 2.0, fullgraph=True, backend="eager")
        eager = op(*args)
        errors[name] = ((compiled(*args) - 2.0 * eager).abs().max() / eager.abs().max()).item()

    # bfloat16 activations in, float32 out: the kernel widens exactly, so this equals the float32 run
    # on the same (rounded) values.
    rounded = tuple(t.bfloat16() if t.dim() == 5 else t for t in group_args[:5])
    lowp_args = rounded + group_args[5:] + (torch.float32,)
    torch.library.opcheck(ts.group_scan_4dir_op, lowp_args, test_utils=("test_schema", "test_faketensor"))
    y_lowp = ts.group_scan_4dir_op(*lowp_args)
    y_f32 = ts.group_scan_4dir_op(*(t.float() for t in rounded), *group_args[5:])
    assert y_lowp.dtype == torch.float32 and y_lowp.stride() == y_f32.stride()
    errors["group_bf16_in"] = ((y_lowp - y_f32).abs().max() / y_f32.abs().max()).item()

    # the norm-gate operator's output is out_proj's input: (b, H, W, 4 d + pad), the pad zeros; the
    # same values as the float64 reference and as without the pad
    padded_args = norm_gate_args + (3,)
    torch.library.opcheck(ts.group_scan_4dir_norm_gate_op, padded_args, test_utils=("test_schema", "test_faketensor"))
    wide, narrow = ts.group_scan_4dir_norm_gate_op(*padded_args), ts.group_scan_4dir_norm_gate_op(*norm_gate_args)
    assert wide.shape == (b, H, W, 4 * d + 3) and narrow.shape == (b, H, W, 4 * d), (wide.shape, narrow.shape)
    errors["norm_gate_pad_zeros"] = wide[..., 4 * d:].abs().max().item()
    errors["norm_gate_pad_values"] = (wide[..., :4 * d] - narrow).abs().max().item()
    ref = ts.group_scan_4dir_norm_gate_ref(*(t.double() if torch.is_tensor(t) else t for t in norm_gate_args))
    errors["norm_gate_vs_float64"] = ((narrow.double() - ref.permute(0, 3, 4, 1, 2).flatten(-2)).norm()
                                      / ref.norm()).item()

    # x_proj and out_proj in the kernel (16 channels per group: tensor-core tiles)
    d16 = 16
    maps = lambda c: torch.randn(b, H, W, 4, c, generator=gen).permute(0, 3, 4, 1, 2)  # noqa: E731
    proj_args = (maps(d16), None, -torch.exp(torch.randn(4, d16, 1, generator=gen) * 0.5), None, None,
                 torch.randn(4, d16, generator=gen), 0.1 * torch.randn(4, d16, generator=gen), True,
                 1.0 + 0.2 * torch.randn(4, d16, generator=gen), 0.2 * torch.randn(4, d16, generator=gen), 1e-5,
                 maps(d16), 0, 0.25 * torch.randn(4, d16 + 2, d16, generator=gen),
                 0.25 * torch.randn(4, d16, d16, generator=gen))
    torch.library.opcheck(ts.group_scan_4dir_norm_gate_op, proj_args, test_utils=("test_schema", "test_faketensor"))
    projected = ts.group_scan_4dir_norm_gate_op(*proj_args)
    ref = ts.group_scan_4dir_norm_gate_ref(*(t.double() if torch.is_tensor(t) else t for t in proj_args[:12]),
                                           x_proj=proj_args[13].double(), out_proj=proj_args[14].double())
    errors["projections_vs_float64"] = ((projected.double() - ref.permute(0, 3, 4, 1, 2).flatten(-2)).norm()
                                        / ref.norm()).item()
    return errors


def _check_norm_gate_layer(seed: int) -> dict:
    """GroupMambaLayer on the Triton backend (forced for CPU tensors in the interpreter): the scan with
    the norm and gate fused, against the same layer with them in PyTorch after the scan, and against
    the torch backend; float32 and bfloat16 autocast. "widened": the GPU's dense projections with GEMM
    inputs widened to aligned rows (as compiled for CUDA), 20 channels: out_proj reads 24-wide rows.
    "x_proj": 16 channels per group, where the kernel computes x_proj itself."""
    from unittest import mock

    from ssmzoo.models import groupmamba as gm
    from ssmzoo.ops import triton_scan as ts

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    H, W = 7, 9  # 63 steps: one segment, where the look-back kernel is the default
    real_op = ts.group_scan_4dir_norm_gate_op
    rel = lambda a, b: ((a.float() - b.float()).norm() / b.float().norm()).item()  # noqa: E731
    out = {}
    for name, channels, widened in (("plain", 24, False), ("widened", 20, True), ("x_proj", 64, True)):
        mixer = gm.GroupMambaLayer(channels, channels).eval()
        x = torch.randn(2, H * W, channels, generator=gen)
        pads = []
        with torch.no_grad(), contextlib.ExitStack() as stack:
            for p in mixer.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)
            plain = mixer(x, H, W)
            stack.enter_context(mock.patch.object(gm, "scan_backend", lambda device=None: "triton"))
            stack.enter_context(mock.patch.object(
                ts, "group_scan_4dir_norm_gate_op",
                side_effect=lambda *a: pads.append((a[12], a[13] is not None, a[14] is not None)) or real_op(*a)))
            if widened:
                stack.enter_context(mock.patch.object(gm, "_dense_projections", lambda x: True))
                stack.enter_context(mock.patch.object(gm, "_widens_gemm_inputs", lambda x: True))
                mixer.__dict__.pop("_group_weights_cache", None)  # (kept between calls, without the dense weights)
            fused = mixer(x, H, W)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                fused_bf16 = mixer(x, H, W)
            fused_pads = list(pads)
            with mock.patch.object(gm, "NORM_GATE_IN_SCAN", False):
                unfused = mixer(x, H, W)
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    unfused_bf16 = mixer(x, H, W)
        out[name] = dict(fused_pads=fused_pads, unfused_calls=len(pads) - len(fused_pads),
                         vs_unfused=rel(fused, unfused), vs_torch=rel(fused, plain),
                         bf16=rel(fused_bf16, unfused_bf16), bf16_dtype=str(fused_bf16.dtype))
    return out


def test_groupmamba_layer_with_norm_and_gate_in_the_scan_matches_the_unfused_layer():
    # The mixer's out_norm and SiLU(z) gate run in the scan kernel's epilogue on the Triton backend
    # (GroupMamba's NORM_GATE_IN_SCAN); the layer's output must not change beyond rounding, also
    # where out_proj reads rows widened by zero channels that the operator writes.
    r = run_interpreted(__file__, "--norm-gate-layer")
    assert "error" not in r, r
    # (pad, x_proj computed in the kernel, out_proj applied in it) per fused call
    assert r["plain"]["fused_pads"] == [[0, False, False]] * 2, r
    assert r["widened"]["fused_pads"] == [[4, False, False]] * 2, r
    assert r["x_proj"]["fused_pads"] == [[0, True, True]] * 2, r
    for case in r.values():
        assert case["unfused_calls"] == 0, r
        assert case["vs_unfused"] < 1e-5 and case["vs_torch"] < 1e-5, r
        assert case["bf16"] < 1e-2 and case["bf16_dtype"] == "torch.bfloat16", r


def test_custom_ops_compile_as_one_graph():
    errors = run_interpreted(__file__, "--custom-ops")
    assert max(errors.values()) < 1e-6, errors


# ---------------------------------------------------------------------------------------------
# Compiled, on a CUDA device
# ---------------------------------------------------------------------------------------------

GPU_CASES = [
    scan_case(2, 96, 1, 1),
    scan_case(2, 37, 7, 16),
    scan_case(2, 770, 197, 16),
    scan_case(1, 96, 3137, 16),
    scan_case(2, 87, 3136, 1),
    scan_case(2, 40, 197, 4, groups=2),
    scan_case(2, 48, 3137, 16, reverse=True),
    scan_case(2, 33, 200, 2, optional=False),
    scan_case(2, 96, 197, 16, dtype="float16"),
    scan_case(2, 96, 197, 16, dtype="bfloat16"),
    scan_case(2, 96, 3137, 16, channels_last=True),
    scan_case(2, 770, 197, 4, channels_last=True, dtype="bfloat16", reverse=True),
    bimamba_case(2, 96, 197, 16),
    bimamba_case(1, 40, 3137, 16, flipped=True),
    bimamba_case(2, 96, 197, 16, dtype="bfloat16"),
    bimamba_case(2, 96, 197, 16, dtype="float16", flipped=True),
    bimamba_case(2, 96, 3137, 16, channels_last=True, flipped=True),
    bimamba_case(2, 768, 197, 16, channels_last=True, dtype="bfloat16"),
    group_case(2, 16, 56, 56),
    group_case(2, 16, 56, 56, channels_last=True),
    group_case(2, 16, 56, 56, dtype="bfloat16"),
    group_case(2, 87, 14, 14),  # (the plane kernel's runs, default on channel-first maps up to 16 x 16)
    group_case(2, 87, 14, 14, config=dict(PLANE=0)),  # the tile kernel there
    group_case(2, 87, 14, 14, config=dict(RUNS=0)),  # the plane kernel's whole-plane tiles
    group_case(2, 87, 14, 14, channels_last=True),
    group_case(2, 112, 7, 7),
    group_case(2, 112, 7, 7, dtype="bfloat16"),
    group_case(2, 112, 7, 7, dtype="bfloat16", config=dict(RUNS=0)),
    group_case(2, 112, 7, 7, config=dict(RUNS_GATHER=0)),
    group_case(2, 87, 14, 14, config=dict(RUNS_GATHER=1)),
    group_case(2, 87, 14, 14, dtype="bfloat16", config=dict(RUNS_GATHER=0)),
    group_case(2, 87, 14, 14, dtype="bfloat16", config=dict(RUNS=8, BD=8, num_warps=8)),
    group_case(2, 32, 28, 28, config=dict(PLANE=1)),
    group_case(2, 16, 56, 56, config=dict(PLANE=1, BD=1, num_warps=16)),
    group_case(2, 24, 9, 13),
    group_case(2, 24, 9, 13, sliced=True),
    group_case(2, 24, 13, 9, channels_last=True),
    group_case(2, 10, 11, 6, n_state=3),
    group_case(2, 32, 28, 28, dtype="bfloat16"),
    group_case(2, 48, 28, 28),  # (fp32 default: row runs in blocks of 8 rows, column runs, PREF 2)
    group_case(2, 32, 28, 28, dtype="float16", channels_last=True),
    # the norm-gate epilogue at the model's shapes (GroupMamba-T/S stages 1-4, -B stages 1-4)
    norm_gate_case(2, 16, 56, 56),
    norm_gate_case(32, 16, 56, 56, dtype="bfloat16"),
    norm_gate_case(4, 32, 28, 28, dtype="bfloat16"),
    norm_gate_case(2, 87, 14, 14, sliced=True),
    norm_gate_case(4, 112, 7, 7, dtype="bfloat16"),
    norm_gate_case(8, 24, 56, 56, dtype="bfloat16"),
    norm_gate_case(4, 48, 28, 28),
    norm_gate_case(4, 106, 14, 14, dtype="bfloat16"),
    norm_gate_case(4, 128, 7, 7, dtype="bfloat16"),
    norm_gate_case(2, 16, 56, 56, xproj=True),
    norm_gate_case(32, 16, 56, 56, dtype="bfloat16", xproj=True),
    norm_gate_case(4, 32, 28, 28, dtype="bfloat16", xproj=True),
    norm_gate_case(4, 48, 28, 28, xproj=True),
    norm_gate_case(32, 16, 56, 56, dtype="bfloat16", xproj=True, outproj=True),
    norm_gate_case(4, 32, 28, 28, dtype="bfloat16", xproj=True, outproj=True),
    norm_gate_case(2, 48, 28, 28, xproj=True, outproj=True),
    # the models' small maps on their default kernels (where SEQ_SCAN would switch to the lane-per-channel
    # kernel), and the lane-per-channel kernel itself (SEQ=1) on small and large maps
    group_case(4, 112, 7, 7, channels_last=True, dtype="bfloat16"),
    group_case(2, 87, 14, 14, channels_last=True, dtype="bfloat16", config=dict(SEQ=1, BD=64, num_warps=2)),
    group_case(2, 32, 28, 28, channels_last=True, config=dict(SEQ=1)),
    group_case(2, 16, 56, 56, channels_last=True, dtype="bfloat16", config=dict(SEQ=1, K=16)),
    norm_gate_case(4, 87, 14, 14, dtype="bfloat16"),
    norm_gate_case(2, 87, 14, 14, config=dict(SEQ=0)),  # the look-back kernel, forced
    norm_gate_case(4, 32, 28, 28, dtype="bfloat16", config=dict(SEQ=1)),
    # look-back kernel at full size: many programs spin on their predecessors' flags at once
    group_case(2, 16, 56, 56, channels_last=True, config=dict(LOOKBACK=1)),
    group_case(32, 16, 56, 56, channels_last=True, dtype="bfloat16", config=dict(LOOKBACK=1)),
    group_case(2, 87, 14, 14, channels_last=True, config=dict(LOOKBACK=1)),
    group_case(2, 112, 7, 7, channels_last=True, config=dict(LOOKBACK=1, SEG=64, BD=16, num_warps=2)),
    group_case(2, 24, 13, 9, config=dict(LOOKBACK=1, SEG=256, BD=8)),
    group_case(32, 16, 56, 56, channels_last=True, config=dict(LOOKBACK=1, CHAINED=0)),
    group_case(4, 96, 28, 28, channels_last=True, dtype="bfloat16", config=dict(LOOKBACK=1, CHAINED=0)),
    # the strip kernel at full size: the strips of a plane run at once and wait on each other's flags
    group_case(8, 16, 56, 56, config=dict(STRIPS=1)),
    group_case(16, 48, 28, 28, dtype="bfloat16", config=dict(STRIPS=1)),
    group_case(4, 24, 13, 9, config=dict(STRIPS=1, SEG=16, KC=2)),
    # the tile kernel's column runs at full size
    group_case(8, 16, 56, 56, config=dict(COLS=2)),
    group_case(16, 48, 28, 28, dtype="bfloat16", config=dict(COLS=2, BD=1, BDC=1)),
    group_case(4, 24, 13, 9, config=dict(COLS=2, BD=1, BDC=1)),
    group_case(8, 16, 56, 56, config=dict(COLS=2, PREF=True)),
    group_case(8, 16, 56, 56, config=dict(ROWS=2)),
    group_case(8, 24, 56, 56),  # the defaults: rows of 64 (ROWW) at 56x56, C prefetched (PREF 2) at 28x28,
    group_case(16, 48, 28, 28),  # the left-over rows first (RTAIL, fp32), column runs of 7 rows
    group_case(8, 16, 56, 56, config=dict(RTAIL=0)),  # ... and without that, the last block part padding
    group_case(8, 16, 56, 56, config=dict(PREF=2, CFOLD=0)),
    group_case(8, 16, 56, 56, config=dict(PREF=1)),  # the fp32 default up to session 36 (no CFOLD without PREF 2)
    group_case(8, 24, 56, 56, dtype="bfloat16", config=dict(PREF=2, CFOLD=1)),
    # the 56x56 defaults before session 38 (column runs without vector loads; bf16 without C ahead),
    # and 2-element column vectors where they are not the default: 28x28 (the runs cross lanes), planes
    # of an odd size (every other plane is not 8-byte aligned: the compiler must keep scalar loads)
    group_case(8, 16, 56, 56, config=dict(CVEC=1)),
    group_case(8, 24, 56, 56, dtype="bfloat16", config=dict(CVEC=1, PREF=1)),
    group_case(16, 48, 28, 28, config=dict(CVEC=2)),
    group_case(4, 9, 57, 45, config=dict(ROWS=2, COLS=2, BD=1, BDC=1, CVEC=2)),
    group_case(4, 9, 57, 45, dtype="bfloat16", config=dict(ROWS=2, COLS=2, BD=1, BDC=1, CVEC=2, PREF=2)),
    # column runs: of 8 rows, the last run padding (the default up to session 31: it is 7 rows, as
    # parts of 4 + 2 + 1, since, also in bf16), of 14 (8 + 4 + 2), and of 7 with 16-bit 28x28's
    # 4-column blocks
    group_case(8, 16, 56, 56, config=dict(RUN=8)),
    group_case(8, 24, 56, 56, dtype="bfloat16"),
    group_case(8, 16, 56, 56, dtype="bfloat16", config=dict(RUN=14)),
    group_case(16, 48, 28, 28, config=dict(RUN=4)),
    group_case(16, 48, 28, 28, dtype="bfloat16", config=dict(RUN=7)),
    group_case(16, 48, 28, 28, dtype="bfloat16", config=dict(ROWS=2, BD=1, BDC=1)),
    group_case(4, 24, 13, 9, config=dict(ROWS=2, COLS=2, BD=1, BDC=1)),
]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("case", GPU_CASES, ids=[case_id(c) for c in GPU_CASES])
def test_gpu_kernel_matches_float64_reference(case):
    seed = torch.randint(0, 2**31 - 1, ()).item()
    result = run_case(case, "cuda", seed)
    print(f"{case_id(case)}: rel err {result['err']:.3g}")
    _check(result, case)


def _gpu_group_operands(b: int, d: int, H: int, W: int, channels_last: bool = False) -> tuple:
    """Fresh random (u, delta, A, B, C, D, delta_bias) of a 4-group scan on the GPU, d_state 1."""
    gen = torch.Generator().manual_seed(torch.randint(0, 2**31 - 1, ()).item())

    def amap(c: int) -> torch.Tensor:
        if channels_last:
            return torch.randn(b, H, W, 4, c, generator=gen).cuda().permute(0, 3, 4, 1, 2)
        return torch.randn(b, 4, c, H, W, generator=gen).cuda()
    A = -torch.rand(4, d, 1, generator=gen).cuda() - 0.1
    D, bias = torch.randn(4, d, generator=gen).cuda(), 0.1 * torch.randn(4, d, generator=gen).cuda()
    return amap(d), amap(d), A, amap(1), amap(1), D, bias


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_group_scan_default_gives_the_same_bits_on_every_call():
    """The models' default (the chained look-back at 56x56): no result depends on program timing."""
    from ssmzoo.ops import triton_scan as ts
    from ssmzoo.ops.triton_lookback import lookback_default

    u, delta, A, Bm, Cm, D, bias = _gpu_group_operands(64, 16, 56, 56, channels_last=True)
    assert lookback_default(u, 1)
    first = ts.group_scan_4dir_triton(u, delta, A, Bm, Cm, D, bias, True)
    for _ in range(20):
        assert torch.equal(ts.group_scan_4dir_triton(u, delta, A, Bm, Cm, D, bias, True), first)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_group_kernel_times_each_program_without_changing_its_result():
    """TIMES (benchmarks/scan_timeline.py): every program writes when it started and ended and on which SM."""
    from ssmzoo.ops import triton_scan as ts

    b, d = 3, 16
    u, delta, A, Bm, Cm, D, bias = _gpu_group_operands(b, d, 56, 56)
    times = torch.zeros(3 * d * 4 * b, dtype=torch.int64, device="cuda")
    timed = ts.group_scan_4dir_triton(u, delta, A, Bm, Cm, D, bias, True, config=dict(TIMES=times))
    assert torch.equal(timed, ts.group_scan_4dir_triton(u, delta, A, Bm, Cm, D, bias, True))
    start, end, sm = times.view(-1, 3).cpu().unbind(1)
    assert (start > 0).all() and (end >= start).all()
    assert (end - start).max() < 10**8  # ns: each program took under 0.1 s
    assert ((sm >= 0) & (sm < torch.cuda.get_device_properties(0).multi_processor_count)).all()
    with pytest.raises(ValueError, match="3 int64 per program"):
        ts.group_scan_4dir_triton(u, delta, A, Bm, Cm, D, bias, True, config=dict(TIMES=times[:-1]))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_strip_kernel_gives_the_same_bits_on_every_call():
    """The strip kernel folds its predecessors' aggregates in a fixed order, whichever finished first."""
    from ssmzoo.ops import triton_scan as ts

    u, delta, A, Bm, Cm, D, bias = _gpu_group_operands(32, 16, 56, 56)
    first = ts.group_scan_4dir_triton(u, delta, A, Bm, Cm, D, bias, True, config=dict(STRIPS=1))
    for _ in range(20):
        assert torch.equal(ts.group_scan_4dir_triton(u, delta, A, Bm, Cm, D, bias, True, config=dict(STRIPS=1)), first)


def test_groupmamba_operators_accept_padded_strides_under_compile():
    """GroupMamba's operators tell torch.compile that inputs whose strides Inductor padded (same
    dimension order) need no copy: the kernels read any strides (the "sliced" cases above)."""
    from ssmzoo.ops.triton_scan import STRIDE_ORDER_TAGS

    for module in ("triton_conv", "triton_dwconv"):  # registers their operators
        importlib.import_module(f"ssmzoo.ops.{module}")

    if not STRIDE_ORDER_TAGS:
        pytest.skip("this PyTorch has no layout tags for custom operators")
    for name in ("group_scan_4dir", "dwconv3x3_act", "conv2d_igemm"):
        assert torch.Tag.needs_fixed_stride_order in getattr(torch.ops.ssmzoo, name).default.tags, name


def test_row_runs_scan_a_plane_in_rows_of_a_power_of_2_where_that_divides_it(monkeypatch):
    from ssmzoo.ops import triton_scan as ts

    # 56 x 56 positions are 49 rows of 64 in memory order: the same tiles without padding columns
    assert [ts._row_length(h, w) for h, w in ((56, 56), (28, 28), (14, 14), (7, 7), (8, 6), (6, 8))] == \
        [64, 28, 14, 7, 8, 8]
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # CPU tensors pass the device check; refused before launch
    x = torch.randn(1, 4, 2, 5, 6)
    with pytest.raises(ValueError, match="ROWW must divide"):
        ts.group_scan_4dir_triton(x, x, -torch.ones(4, 2, 1), x[:, :, :1], x[:, :, :1],
                                  config=dict(ROWS=2, BD=1, BDC=1, ROWW=4))


def test_column_runs_cover_maps_of_7_times_a_power_of_2_without_padding_rows():
    # 56 = 8 runs of 7 rows and 28 = 4 x 7, each run scanned as power-of-2 parts; other heights keep
    # power-of-2 runs; a run length needing more than three parts is refused before launch
    from ssmzoo.ops.triton_scan import _group_config, _run_length, _run_parts

    assert [_run_length(h, odd=True) for h in (56, 28, 112, 64, 48, 13)] == [7, 7, 7, 16, 16, 8]
    assert [_run_parts(r) for r in (7, 14, 8, 3, 5)] == [(4, 2, 1), (8, 4, 2), (8, 0, 0), (2, 1, 0), (4, 1, 0)]
    with pytest.raises(ValueError, match="at most 3 powers of 2"):
        _run_parts(15)

    def default_run(H, dtype):
        u = torch.empty(128, 4, 16, H, H, dtype=dtype)
        return _group_config(u, (u,), True, None)["RUN"]

    assert default_run(56, torch.float32) == default_run(56, torch.bfloat16) == 7
    assert default_run(28, torch.float32) == 7
    assert default_run(28, torch.bfloat16) == 4  # 16-bit 28x28: 4-column blocks, power-of-2 runs


def test_column_runs_load_2_element_vectors_where_their_tile_still_fills_a_warp():
    # 56 rows are 8 runs of 7: 8 runs x 4 column pairs of an 8-column block are a warp's 32 lanes, so the
    # runs stay in threads; 28 rows (4 runs) and 64 (4 runs of 16) would put a run's rows across lanes
    from ssmzoo.ops.triton_scan import _group_config

    def default(H, dtype, W=None):
        u = torch.empty(128, 4, 16, H, W or H, dtype=dtype)
        cfg = _group_config(u, (u,), True, None)
        return cfg["CVEC"], cfg["PREF"]

    assert default(56, torch.float32) == (2, 2)
    assert default(56, torch.bfloat16) == (2, 2)  # 128 registers with vectors: C is loaded ahead too
    assert default(112, torch.float16, W=40) == (2, 2)
    assert default(28, torch.float32)[0] == default(28, torch.bfloat16)[0] == 1
    assert default(64, torch.float32)[0] == 1


def test_run_tiles_follow_this_tritons_rule_for_ordering_strided_axes():
    # Triton 3.7 reversed the order its layout pass gives tile axes of equal contiguity; the run
    # kernels present their tiles accordingly (the interpreter runs the path of the installed version)
    from ssmzoo.ops.triton_scan import _ties_reversed

    assert [_ties_reversed(v) for v in ("3.5.1", "3.6.0", "3.7.0", "3.8.0", "3.10.0+git1234", "4.0.0")] == \
        [False, False, True, True, True, True]


def test_tile_sweeps_load_b_c_transposed_on_channels_last_maps_from_triton_3_7():
    # B/C tiles have no contiguous axis; on channels-last maps they must share u's layout (lanes on
    # the channels), which Triton 3.7+ gives them only when presented transposed (the interpreter runs
    # the installed version's path, so the interpreted channels-last cases above check that path)
    # (``_load_tie2`` transposes them where TIES_REVERSED and the host says the channels are contiguous)
    from ssmzoo.ops.triton_scan import _channels_contiguous

    channels_last = torch.randn(1, 3, 3, 4, 5).permute(0, 3, 4, 1, 2)
    channel_first = torch.randn(1, 4, 5, 3, 3)
    assert _channels_contiguous(channels_last)
    assert not _channels_contiguous(channel_first)


def test_plane_kernel_runs_by_default_with_configs_measured_per_plane_size_and_dtype():
    from ssmzoo.ops.triton_plane import plane_config

    # 14x14: runs of 4, one plane per warp, two warps; 7x7: runs of 2, four warps of two planes (fp32) or
    # four (16-bit)
    # ... the runs' entering states by a gather on small planes and in 16-bit dtypes
    assert plane_config(87, 14, 14) == dict(BD=2, num_warps=2, RUNS=4, RUNS_GATHER=0)
    assert plane_config(87, 14, 14, elem_size=2) == dict(BD=2, num_warps=2, RUNS=4, RUNS_GATHER=1)
    assert plane_config(128, 7, 7) == dict(BD=8, num_warps=4, RUNS=2, RUNS_GATHER=1)
    assert plane_config(128, 7, 7, elem_size=2) == dict(BD=16, num_warps=4, RUNS=2, RUNS_GATHER=1)
    assert plane_config(87, 14, 14, dict(RUNS=4, num_warps=8)) == dict(BD=8, num_warps=8, RUNS=4, RUNS_GATHER=0)
    assert plane_config(87, 14, 14, dict(RUNS=8, BD=2)) == dict(BD=2, num_warps=2, RUNS=8, RUNS_GATHER=0)
    assert plane_config(128, 7, 7, dict(RUNS_GATHER=0))["RUNS_GATHER"] == 0
    # RUNS=0: the whole-plane tiles, about 1024 elements per program (RUNS_GATHER unused)
    assert plane_config(87, 14, 14, dict(RUNS=0)) == dict(BD=4, num_warps=4, RUNS=0, RUNS_GATHER=0)
    assert plane_config(128, 7, 7, dict(RUNS=0))["BD"] == 16
    # ... also the default on planes larger than 16 x 16, where the runs were not measured
    assert plane_config(32, 28, 28) == dict(BD=1, num_warps=4, RUNS=0, RUNS_GATHER=0)


def test_plane_kernel_runs_measure_a_batch_entrys_span_for_their_32_bit_offsets():
    from ssmzoo.ops.triton_plane import _entry_span

    x = torch.zeros(2, 4, 3, 5, 7)
    assert _entry_span(x) == 4 * 3 * 5 * 7  # contiguous: one entry's elements
    assert _entry_span(x[:, :, :2]) == 4 * 3 * 5 * 7 - 5 * 7  # up to its last plane's last element
    assert _entry_span(torch.zeros(2, 5, 7, 4, 3).permute(0, 3, 4, 1, 2)) == 4 * 3 * 5 * 7


def test_plane_kernel_runs_must_be_a_power_of_2():
    from ssmzoo.ops.triton_plane import plane_config

    for runs in (3, -2):
        with pytest.raises(ValueError, match="RUNS must be 0 or a power of 2"):
            plane_config(87, 14, 14, dict(RUNS=runs))


def test_plane_kernel_refuses_maps_whose_planes_are_not_contiguous(monkeypatch):
    from ssmzoo.ops.triton_plane import group_scan_4dir_plane_triton

    monkeypatch.setenv("TRITON_INTERPRET", "1")  # past the device check (CPU tensors); no launch follows

    u = torch.randn(1, 4, 3, 5, 9)[..., :6]  # rows 9 apart, 6 long
    Bm = torch.randn(1, 4, 1, 5, 6)
    with pytest.raises(ValueError, match="contiguous"):
        group_scan_4dir_plane_triton(u, u, -torch.ones(4, 3, 1), Bm, Bm)


def test_strip_kernel_refuses_maps_whose_planes_are_not_contiguous(monkeypatch):
    from ssmzoo.ops.triton_strips import group_scan_4dir_strips_triton

    monkeypatch.setenv("TRITON_INTERPRET", "1")  # past the device check (CPU tensors); no launch follows

    u = torch.randn(1, 5, 6, 4, 3).permute(0, 3, 4, 1, 2)  # channels-last
    Bm = torch.randn(1, 4, 1, 5, 6)
    with pytest.raises(ValueError, match="contiguous"):
        group_scan_4dir_strips_triton(u, u, -torch.ones(4, 3, 1), Bm, Bm)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_dispatcher_uses_triton():
    from ssmzoo.ops import scan_backend

    assert scan_backend("cuda") == "triton" or os.environ.get("SSMZOO_SCAN")


def _check_transposed_columns(seed: int) -> dict:
    """The look-back kernel with COLS_T (groups 1 and 3 stored transposed) on operands whose odd groups
    are the transposes of a plain run's: the same outputs, transposed back, bit for bit (the same steps
    in the same order, only read from other addresses)."""
    from ssmzoo.ops import triton_scan as ts

    gen = torch.Generator().manual_seed(seed)
    b, d, n = 2, 5, 6  # a 6 x 6 map: 36 steps in 3 segments of 16
    group_major = lambda c, s=1.0: torch.randn(b, 4, n, n, c, generator=gen).mul(s).permute(0, 1, 4, 2, 3)  # noqa: E731
    args = dict(u=group_major(d), delta=group_major(d, 0.5), B=group_major(1), C=group_major(1),
                A=-torch.exp(torch.randn(4, d, 1, generator=gen) * 0.5), D=torch.randn(4, d, generator=gen),
                delta_bias=torch.randn(4, d, generator=gen) * 0.1)

    def odd_transposed(t):  # (b, 4, c, H, W) with groups 1 and 3 transposed, laid out like t
        out = t.clone()
        out[:, 1::2] = t[:, 1::2].transpose(-1, -2)
        return out

    cfg = dict(LOOKBACK=1, SEG=16, BD=4)
    plain = ts.group_scan_4dir_triton(**args, config=cfg)
    stored = {k: odd_transposed(v) if v.dim() == 5 else v for k, v in args.items()}
    cols_t = odd_transposed(ts.group_scan_4dir_triton(**stored, config=dict(cfg, COLS_T=1)))
    errors = {}
    for name, bad in (("tile kernel", dict(COLS_T=1)), ("non-square map", dict(cfg, COLS_T=1))):
        try:
            x = {k: v[..., :5] if v.dim() == 5 and name == "non-square map" else v for k, v in stored.items()}
            ts.group_scan_4dir_triton(**x, config=bad)
            errors[name] = "accepted"
        except ValueError as exc:
            errors[name] = str(exc)
    return dict(equal=bool(torch.equal(cols_t, plain)), max_abs=(cols_t - plain).abs().max().item(), refused=errors)


def test_lookback_kernel_reads_columns_stored_transposed():
    # A candidate layout for the models (docs/scan_notes.md, item 6): with groups 1 and 3 stored
    # transposed every group's scan walks memory in order. The option must not change a single bit,
    # and the kernels that do not have it must refuse it rather than read the wrong positions.
    result = run_interpreted(__file__, "--cols-t")
    assert result["equal"], result
    assert "look-back kernel only" in result["refused"]["tile kernel"], result
    assert "square" in result["refused"]["non-square map"], result


def test_group_scan_output_keeps_the_memory_order_of_a_strided_u():
    # Compiled for CUDA, GroupMamba's u is a channels-last view of a wider buffer (its rows padded
    # with zero channels for the GEMMs, groupmamba._gemm_pad). y must keep u's channels-last order
    # (not turn channel-first): the operator's fake (its y under torch.compile; the operator allocates
    # y the same way) and the PyTorch reference (the CPU path) both rely on torch.empty_like keeping
    # the order of a non-dense tensor's strides.
    from ssmzoo.models.groupmamba import group_scan_4dir_torch
    from ssmzoo.ops.triton_scan import _group_scan_4dir_fake

    batch, H, W, groups, d = 2, 5, 3, 4, 7
    wide = torch.randn(batch, H, W, groups * d + 4)
    u = wide[..., :groups * d].unflatten(-1, (groups, d)).permute(0, 3, 4, 1, 2)  # (batch, 4, d, H, W)
    B, C = torch.randn(batch, groups, 1, H, W), torch.randn(batch, groups, 1, H, W)
    A = -torch.ones(groups, d, 1)
    y = _group_scan_4dir_fake(u, u, A, B, C, out_dtype=torch.float64)
    assert y.shape == u.shape and y.dtype == torch.float64
    assert y.permute(0, 3, 4, 1, 2).is_contiguous()  # dense, channels-last like u
    assert group_scan_4dir_torch(u, u.clone(), A, B, C).permute(0, 3, 4, 1, 2).is_contiguous()
    dense = wide[..., :groups * d].contiguous().unflatten(-1, (groups, d)).permute(0, 3, 4, 1, 2)
    assert _group_scan_4dir_fake(dense, dense, A, B, C).stride() == dense.stride()


if __name__ == "__main__" and sys.argv[1:2] == ["--interpret"]:
    # Runs in the subprocess started by the ``interpreted`` fixture (TRITON_INTERPRET=1 already set).
    print(run_cases(run_case, INTERP_CASES, int(sys.argv[2])))
elif __name__ == "__main__" and sys.argv[1:2] == ["--custom-ops"]:
    print(json.dumps(_check_custom_ops(int(sys.argv[2]))))
elif __name__ == "__main__" and sys.argv[1:2] == ["--norm-gate-layer"]:
    print(json.dumps(checked(_check_norm_gate_layer, int(sys.argv[2]))))
elif __name__ == "__main__" and sys.argv[1:2] == ["--cols-t"]:
    print(json.dumps(_check_transposed_columns(int(sys.argv[2]))))
