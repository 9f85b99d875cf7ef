"""The sequential bimamba kernel (``bimamba_scan_seq_triton``) and its split-sequence variant
(``bimamba_scan_split_triton``) against the float64 reference (``bimamba_scan_ref``), as
tests/test_triton_scan.py does for the chunked kernels. The split kernel is also compared with the
sequential one (same tolerances; bit for bit under the interpreter when it runs one segment).

On every machine the kernel runs under the Triton interpreter (``TRITON_INTERPRET=1``, CPU tensors,
small shapes) in one subprocess (the variable must be set before Triton is imported); on a CUDA
machine the full VideoMamba-S shapes also run compiled (marked ``gpu``).

Error measure: ||out - ref|| / ||ref||, ref = the float64 function of the very same (possibly low
precision) input values. Tolerances: float32 1e-5, float16 2e-3, bfloat16 1e-2. Outputs are
pre-filled with NaN, so an unwritten element fails.
"""

from __future__ import annotations

import sys

from unittest import mock

import pytest
import torch

from interpreter import run_cases, run_interpreted

pytest.importorskip("triton")

TOL = {"float32": 1e-5, "float16": 2e-3, "bfloat16": 1e-2}


def case(batch, dim, length, n_state, dtype="float32", flipped=False, layout="cf", groups=None,
         optional=True, config=None, kernel=None):
    """layout: "cf" (batch, d, L) contiguous; "cl" u/delta/z/B/C stored (batch, L, .) and seen
    transposed; "model" what BiMambaMixer passes (u/delta channel-first, z a channels-last slice of
    a wider tensor, B/C (batch, N, L) contiguous); "sliced" every tensor a strided slice.
    kernel: None (the sequential kernel) or "split" (config SEG: tokens per segment)."""
    return dict(batch=batch, dim=dim, length=length, n_state=n_state, dtype=dtype, flipped=flipped,
                layout=layout, groups=groups, optional=optional, config=config, kernel=kernel)


def case_id(c: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in c.items() if k not in ("config", "kernel") and v is not None) + (
        f"-{c['kernel']}" if c.get("kernel") else "") + (
        f"-cfg={c['config']}" if c.get("config") else "")


INTERP_CASES = [
    case(2, 5, 1, 1),
    case(2, 5, 7, 2, config=dict(SPLIT=2)),
    case(1, 37, 37, 16),                                          # 37 channels: 2 blocks of 32
    case(1, 6, 37, 16, flipped=True, config=dict(SPLIT=4)),
    case(1, 6, 37, 16, layout="cl", config=dict(SPLIT=8)),
    case(2, 6, 7, 16, layout="cl", flipped=True, config=dict(SPLIT=1, num_warps=2)),
    case(1, 5, 37, 2, layout="cl", flipped=True),
    case(1, 9, 37, 3, layout="model", flipped=True, config=dict(SPLIT=2)),   # N < NP: padded states
    case(1, 9, 23, 3, layout="model", config=dict(SPLIT=2, PACK=False)),     # ... read through masks
    case(1, 5, 23, 16, layout="sliced", flipped=True, config=dict(PACK=False, SPLIT=4)),
    case(2, 6, 19, 2, groups=2, config=dict(SPLIT=2)),
    case(1, 6, 19, 2, groups=3, layout="cl", flipped=True, config=dict(PACK=False)),
    case(1, 5, 29, 2, optional=False),
    case(1, 5, 29, 16, optional=False, flipped=True, config=dict(SPLIT=4)),
    case(1, 7, 23, 2, dtype="float16", layout="cl", config=dict(SPLIT=2)),
    case(1, 7, 23, 16, dtype="float16", flipped=True, config=dict(SPLIT=4)),
    case(1, 5, 19, 2, dtype="bfloat16", flipped=True),
    case(1, 6, 21, 16, dtype="bfloat16", layout="cl", config=dict(SPLIT=4)),
    case(1, 6, 21, 16, dtype="bfloat16", layout="cl", flipped=True),   # default: ONE_SEGMENT_HALF_CONFIG
    case(1, 6, 21, 16, dtype="bfloat16", layout="model", flipped=True, config=dict(SPLIT=4)),
]

# The split-sequence kernel: several segments with a short last one (37 = 4 x 8 + 5 = 2 x 16 + 5,
# 7 = 4 + 3), channel blocks cut by dim (37 over blocks of 32, 6 < 8, 9 < 16), every dtype, with and
# without z / D / delta_bias, both backward layouts; one segment (SEG >= L) must equal the
# sequential kernel bit for bit.
SPLIT_CASES = [
    case(1, 5, 1, 1, config=dict(SEG=4), kernel="split"),
    case(1, 37, 7, 16, config=dict(SEG=4), kernel="split"),
    case(1, 6, 37, 16, flipped=True, config=dict(SEG=8, SPLIT=4), kernel="split"),
    case(1, 9, 37, 3, layout="model", flipped=True, config=dict(SEG=16, SPLIT=2, PACK=False), kernel="split"),
    case(2, 6, 7, 2, groups=2, layout="cl", config=dict(SEG=4), kernel="split"),
    case(1, 6, 37, 16, dtype="bfloat16", layout="cl", optional=False, config=dict(SEG=16, SPLIT=4),
         kernel="split"),
    case(1, 3, 37, 16, dtype="float16", layout="sliced", flipped=True, config=dict(SEG=8, SPLIT=8),
         kernel="split"),
    case(1, 6, 37, 16, flipped=True, config=dict(SEG=64, SPLIT=4), kernel="split"),     # one segment
    # 13 and 3 segments: longer phase-2 chains
    case(1, 5, 37, 16, flipped=True, config=dict(SEG=3), kernel="split"),
    case(1, 5, 13, 2, layout="cl", config=dict(SEG=5, COMBINE_BC=2), kernel="split"),
    # a share of the decays on the FMA pipe (exp2_fma: POLY_*), B/C loaded at their step (BC_AHEAD off)
    case(1, 5, 37, 16, flipped=True, config=dict(SEG=8, POLY_STATE=3, POLY_OUT_V=1, BC_AHEAD=False),
         kernel="split"),
    case(1, 6, 29, 16, dtype="bfloat16", layout="cl", config=dict(SEG=8, SPLIT=4, POLY_STATE_V=1, POLY_OUT=1),
         kernel="split"),
    case(1, 6, 21, 16, layout="cl", flipped=True, config=dict(POLY_OUT=16)),   # every decay on the FMA pipe
    # one lane per channel, channels contiguous, split: ONE_LANE_SPLIT_CONFIG's options (B/C at their step
    # in both phases, UNROLL 1), as the models' video path runs
    case(1, 6, 37, 16, layout="cl", flipped=True, config=dict(SEG=8, SPLIT=1), kernel="split"),
    case(1, 6, 37, 16, dtype="bfloat16", layout="cl", config=dict(SEG=16, SPLIT=1, UNROLL=2), kernel="split"),
]
INTERP_CASES += SPLIT_CASES


def _rand(gen, *shape, scale=1.0):
    return torch.randn(*shape, generator=gen) * scale


def _f64(v):
    return v.double() if torch.is_tensor(v) and v.is_floating_point() else v


def run_case(c: dict, device: str, seed: int) -> dict:
    from ssmzoo.ops.triton_bimamba import bimamba_scan_seq_triton, bimamba_scan_split_triton, split_config
    from ssmzoo.ops.triton_scan import bimamba_scan_ref

    gen = torch.Generator().manual_seed(seed)
    dtype = getattr(torch, c["dtype"])
    b, d, L, N, G = c["batch"], c["dim"], c["length"], c["n_state"], c["groups"]
    layout = c["layout"]

    def act(t):
        return t.to(device=device, dtype=dtype)

    def par(t):
        return t.to(device)

    def seq(*shape, scale=1.0, cl=None):  # (batch, ..., L)
        cl = layout == "cl" if cl is None else cl
        if cl:
            return act(_rand(gen, shape[0], shape[-1], *shape[1:-1], scale=scale)).movedim(1, -1)
        if layout == "sliced":
            return act(_rand(gen, *shape[:-1], 2 * shape[-1] + 1, scale=scale))[..., 1::2]
        return act(_rand(gen, *shape, scale=scale))

    bc = (b, N, L) if G is None else (b, G, N, L)

    def direction():
        return dict(u=seq(b, d, L), delta=seq(b, d, L, scale=0.5),
                    A=par(-torch.exp(_rand(gen, d, N, scale=0.5))), B=seq(*bc), C=seq(*bc),
                    D=par(_rand(gen, d)), delta_bias=par(_rand(gen, d, scale=0.1)))

    f, bw = direction(), direction()
    if layout == "model":  # z: the second half of a channels-last (batch, L, 2d) tensor
        z = act(_rand(gen, b, L, 2 * d)).transpose(1, 2)[:, d:]
    else:
        z = seq(b, d, L)
    args = dict(u=f["u"], delta=f["delta"], A=f["A"], B=f["B"], C=f["C"], D=f["D"],
                u_b=bw["u"], delta_b=bw["delta"], A_b=bw["A"], B_b=bw["B"], C_b=bw["C"], D_b=bw["D"],
                z=z, delta_bias=f["delta_bias"], delta_bias_b=bw["delta_bias"], delta_softplus=True,
                backward_flipped=c["flipped"])
    if not c["optional"]:
        args.update(D=None, D_b=None, z=None, delta_bias=None, delta_bias_b=None, delta_softplus=False)
    if layout in ("cl", "model"):
        out = torch.full((b, L, d), float("nan"), dtype=dtype, device=device).transpose(1, 2)
    else:
        out = torch.full((b, d, L), float("nan"), dtype=dtype, device=device)
    split = c.get("kernel") == "split"
    scan = bimamba_scan_split_triton if split else bimamba_scan_seq_triton
    y = scan(**args, out=out, config=c["config"])
    ref = bimamba_scan_ref(**{k: _f64(v) for k, v in args.items()})
    assert y is out and y.dtype == dtype
    err = ((y.double() - ref.double()).norm() / ref.double().norm()).item()
    # without ``out``: a fresh tensor of u's dtype, in u's memory order
    result = dict(err=err, nan=bool(torch.isnan(y).any()))
    if not split or layout == "cl":  # (the split kernel shares the output code: checked once, to save time)
        y2 = scan(**args, config=c["config"])
        result["same_without_out"] = bool(torch.equal(y2, y)) and y2.dtype == dtype
    if split:  # against the sequential kernel (its own launch config: SEG removed)
        cfg = {k: v for k, v in (c["config"] or {}).items() if k not in ("SEG", "COMBINE_BC")} or None
        y_seq = bimamba_scan_seq_triton(**args, config=cfg)
        result.update(err_seq=((y.double() - y_seq.double()).norm() / y_seq.double().norm()).item(),
                      same_as_seq=bool(torch.equal(y, y_seq)), interpreted=device == "cpu",
                      nseg=split_config(b, d, L, N, c["config"])["NSEG"])
    return result


def _check(result: dict, c: dict) -> None:
    assert "error" not in result, result.get("error")
    assert not result["nan"], f"unwritten (NaN) outputs: {case_id(c)}"
    assert result["err"] < TOL[c["dtype"]], f"rel err {result['err']:.3g} for {case_id(c)}"
    assert result.get("same_without_out", True), f"out= and a fresh output differ: {case_id(c)}"
    if "err_seq" in result:
        assert result["err_seq"] < TOL[c["dtype"]], f"rel diff to the sequential kernel {result['err_seq']:.3g}"
        if result["nseg"] == 1 and result["interpreted"]:
            assert result["same_as_seq"], f"one segment differs from the sequential kernel: {case_id(c)}"


@pytest.fixture(scope="module")
def interpreted() -> list[dict]:
    return run_interpreted(__file__, "--interpret")


@pytest.mark.parametrize("index", range(len(INTERP_CASES)), ids=[case_id(c) for c in INTERP_CASES])
def test_interpreted_kernel_matches_float64_reference(interpreted, index):
    _check(interpreted[index], INTERP_CASES[index])


def test_config_rules():
    from ssmzoo.ops.triton_bimamba import seq_config

    assert seq_config(8, 768, 3137, 16)["SPLIT"] == 4       # VideoMamba-S video: few channels
    assert seq_config(128, 768, 197, 16)["SPLIT"] == 1      # image: one thread per channel
    assert seq_config(1, 4, 10, 2)["SPLIT"] == 2            # never more lanes than states
    assert seq_config(1, 4, 10, 16, dict(SPLIT=4))["BD"] == 8
    with pytest.raises(ValueError):
        seq_config(1, 4, 10, 16, dict(SPLIT=4, num_warps=2))


def test_split_config_rules():
    from ssmzoo.ops.triton_bimamba import split_config

    # VideoMamba-S video with the channels contiguous (the models' layout): 25 segments of 128 (the last
    # 65), one lane per channel, B/C loaded at their step
    video = split_config(8, 768, 3137, 16, channels_last=True)
    assert (video["SEG"], video["NSEG"], video["SPLIT"]) == (128, 25, 1)
    assert (video["UNROLL"], video["BC_AHEAD"], video["BC_AHEAD_STATE"]) == (1, False, False)
    assert split_config(8, 768, 3137, 16, dict(UNROLL=2), channels_last=True)["UNROLL"] == 2  # a given option wins
    tiny = split_config(1, 6, 37, 16, dict(SEG=8, SPLIT=1), channels_last=True)  # (the interpreter cases')
    assert (tiny["NSEG"], tiny["BC_AHEAD"], tiny["BC_AHEAD_STATE"], tiny["UNROLL"]) == (5, False, False, 1)
    # one clip: segments of 128 would give too few threads for one lane per channel; 64 still give one
    clip = split_config(1, 768, 3137, 16, channels_last=True)
    assert (clip["SEG"], clip["SPLIT"], clip["BC_AHEAD"]) == (64, 1, False)
    # tokens contiguous (float32): 50 segments of 64, B/C a step ahead (the other launch measured slower)
    video_rows = split_config(8, 768, 3137, 16)
    assert (video_rows["SEG"], video_rows["NSEG"], video_rows["SPLIT"], video_rows["BC_AHEAD"]) == (64, 50, 1, True)
    image = split_config(128, 768, 197, 16)                 # image: enough channels, no split
    assert (image["NSEG"], image["SPLIT"]) == (1, 1)
    # 16-bit inputs with contiguous tokens (VideoMamba's layout): 4 lanes per channel, as timed
    assert split_config(128, 768, 197, 16, narrow_rows=True)["SPLIT"] == 4
    video_narrow = split_config(8, 768, 3137, 16, narrow_rows=True)   # (not re-timed: SEG 64, B/C ahead)
    assert (video_narrow["SPLIT"], video_narrow["SEG"], video_narrow["BC_AHEAD"]) == (4, 64, True)
    assert split_config(8, 768, 3137, 16, dict(SPLIT=2), narrow_rows=True)["SPLIT"] == 2  # a given SPLIT wins
    assert split_config(1, 4, 10, 2, narrow_rows=True)["SPLIT"] == 2  # never more lanes than states
    # 16-bit channels-last inputs (what the models pass): 4 lanes per channel, one block per iteration, in
    # one segment (image), as timed; split into segments (video), one lane per channel
    image_half = split_config(128, 768, 197, 16, half_channels_last=True)
    assert (image_half["NSEG"], image_half["SPLIT"], image_half["UNROLL"]) == (1, 4, 1)
    video_half = split_config(8, 768, 3137, 16, channels_last=True, half_channels_last=True)
    assert (video_half["NSEG"], video_half["SPLIT"], video_half["UNROLL"]) == (25, 1, 1)
    assert split_config(128, 768, 197, 16, dict(SPLIT=1), half_channels_last=True)["UNROLL"] == 2
    assert split_config(1, 4, 37, 16, dict(SEG=8))["NSEG"] == 5
    # where Triton cannot compile the split phases (3.5), the default is one segment
    with mock.patch("ssmzoo.ops.triton_bimamba.SPLIT_PHASES_COMPILE", False):
        assert split_config(8, 768, 3137, 16)["NSEG"] == 1
    assert split_config(1, 4, 7, 16, dict(SEG=100))["SEG"] == 7
    assert split_config(1, 4, 1, 16, dict(SEG=4))["NSEG"] == 1
    with pytest.raises(ValueError):
        split_config(1, 4, 10, 16, dict(SEG=0))


# ---------------------------------------------------------------------------------------------
# Compiled, on a CUDA device: the VideoMamba-S shapes
# ---------------------------------------------------------------------------------------------

GPU_CASES = [
    case(2, 768, 197, 16, dtype="bfloat16", layout="cl"),
    case(2, 768, 197, 16, dtype="float32", layout="cl", flipped=True),
    case(2, 768, 3137, 16, dtype="bfloat16", layout="cl", flipped=True),
    case(2, 768, 3137, 16, dtype="float32", layout="cl"),
    case(2, 768, 197, 16, dtype="bfloat16", layout="model", flipped=True),
    case(2, 768, 3137, 16, dtype="float32", layout="model", flipped=True),
    case(2, 768, 197, 16, dtype="float16", layout="cf"),
    case(2, 96, 197, 16, dtype="bfloat16", layout="cl", config=dict(SPLIT=1)),
    case(2, 96, 197, 16, dtype="bfloat16", layout="cl", config=dict(SPLIT=2)),
    case(2, 96, 197, 16, dtype="float32", layout="cl", config=dict(SPLIT=8)),
    case(2, 96, 197, 16, dtype="float32", layout="cl", config=dict(SPLIT=1, num_warps=4)),
    case(2, 100, 197, 16, dtype="float32", layout="model", config=dict(PACK=False)),
    case(2, 40, 200, 3, dtype="float32", layout="sliced", groups=2),
    case(2, 33, 200, 2, optional=False),
    # split-sequence kernel: default segments (video: 13 x 256) and explicit ones
    case(2, 768, 197, 16, dtype="bfloat16", layout="cl", config=dict(SEG=64), kernel="split"),
    case(2, 768, 197, 16, dtype="float32", layout="model", flipped=True, config=dict(SEG=50, SPLIT=4),
         kernel="split"),
    case(2, 768, 3137, 16, dtype="bfloat16", layout="cl", flipped=True, kernel="split"),
    case(2, 768, 3137, 16, dtype="float32", layout="model", kernel="split"),
    case(2, 768, 3137, 16, dtype="bfloat16", layout="model", flipped=True, config=dict(SEG=128, SPLIT=4),
         kernel="split"),
    case(2, 100, 3137, 3, dtype="float32", layout="sliced", groups=2, config=dict(SEG=200, PACK=False),
         kernel="split"),
    # candidate launches: decays partly on the FMA pipe, B/C at their step (timed in benchmarks/bimamba_seq.py)
    case(2, 768, 3137, 16, dtype="bfloat16", layout="cl", flipped=True, kernel="split",
         config=dict(PERM_STATE=True, POLY_STATE=3)),
    case(2, 768, 3137, 16, dtype="float32", layout="cl", kernel="split", config=dict(POLY_STATE_V=1)),
    case(2, 768, 3137, 16, dtype="bfloat16", layout="cl", kernel="split", config=dict(BC_AHEAD=False, POLY_OUT_V=1)),
    case(2, 768, 197, 16, dtype="bfloat16", layout="cl", config=dict(POLY_OUT_V=1)),
]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("c", GPU_CASES, ids=[case_id(c) for c in GPU_CASES])
def test_gpu_kernel_matches_float64_reference(c):
    seed = torch.randint(0, 2**31 - 1, ()).item()
    result = run_case(c, "cuda", seed)
    print(f"{case_id(c)}: rel err {result['err']:.3g}")
    _check(result, c)


# The state-tile loads through a permuted view (``permute_tile_loads``, chosen by SPLIT, segments and
# the Triton version; the interpreter runs whichever this Triton picks) must give the same results: a
# few cases with the choice flipped.
FLIPPED_LOAD_CASES = [
    case(1, 37, 37, 16),
    case(1, 6, 37, 16, flipped=True, config=dict(SEG=8, SPLIT=4), kernel="split"),
    case(1, 37, 7, 16, layout="cl", config=dict(SEG=4), kernel="split"),
    case(1, 9, 23, 3, layout="model", config=dict(SPLIT=2, PACK=False)),     # masked B/C loads
]


@pytest.fixture(scope="module")
def interpreted_flipped_loads() -> list[dict]:
    return run_interpreted(__file__, "--interpret-flipped-loads")


@pytest.mark.parametrize("index", range(len(FLIPPED_LOAD_CASES)), ids=[case_id(c) for c in FLIPPED_LOAD_CASES])
def test_interpreted_kernel_with_the_other_tile_load_order(interpreted_flipped_loads, index):
    _check(interpreted_flipped_loads[index], FLIPPED_LOAD_CASES[index])


if __name__ == "__main__" and sys.argv[1:2] == ["--interpret"]:
    # Runs in the subprocess started by the ``interpreted`` fixture (TRITON_INTERPRET=1 already set).
    print(run_cases(run_case, INTERP_CASES, int(sys.argv[2])))
elif __name__ == "__main__" and sys.argv[1:2] == ["--interpret-flipped-loads"]:
    import ssmzoo.ops.triton_bimamba as tb

    _chosen = tb.permute_tile_loads
    tb.permute_tile_loads = lambda split, one_segment: not _chosen(split, one_segment)
    print(run_cases(run_case, FLIPPED_LOAD_CASES, int(sys.argv[2])))
