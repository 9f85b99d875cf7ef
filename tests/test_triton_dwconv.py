"""The fused depthwise 3x3 conv + bias + activation kernel (``ssmzoo.ops.triton_dwconv``).

On every machine the kernel runs under the Triton interpreter (``TRITON_INTERPRET=1``, CPU tensors,
small odd shapes) in one subprocess, which also checks the custom operator (opcheck, one graph
under torch.compile, autocast casts) and the GroupMamba wiring; on a CUDA machine GroupMamba-T's
full-size shapes also run compiled (marked ``gpu``).

Two measures per case, on fresh random inputs:
- against ``dwconv3x3_act_ref`` (same rounding points: float32 accumulation, the conv rounded to
  the output dtype, the activation, rounded again): float32 |d| <= 1e-5 + 1e-5 |ref| (summation
  order only); float16/bfloat16 |d| <= 2 eps |ref| + 1e-2 eps (at most ~1-2 ulp) and at most 1% of
  the elements (or 2, on tiny maps) differ at all (seen: 0 - 0.1%, once 2 of 168; skipping the
  intermediate rounding changes 25-35%).
- ||out - ref64|| / ||ref64||, ref64 the float64 function of the same (rounded) input values:
  float32 1e-6, float16 2e-3, bfloat16 1e-2 (the output rounding alone costs ~3e-4 / ~3e-3).
Outputs are pre-filled with NaN, so an unwritten element fails.
"""

from __future__ import annotations

import json
import sys

import pytest
import torch

from interpreter import checked, random_map, run_cases, run_interpreted

pytest.importorskip("triton")

EPS = {"float32": 0.0, "float16": 2.0 ** -10, "bfloat16": 2.0 ** -7}
TOL64 = {"float32": 1e-6, "float16": 2e-3, "bfloat16": 1e-2}


def case(batch, C, H, W, dtype="float32", act="gelu", layout="cl", bias=True, config=None):
    """layout: "cl" channels-last (the models'), "cf" contiguous (B, C, H, W), "sliced" a channel
    slice of a wider channels-last tensor starting at channel 1 (no vector alignment)."""
    return dict(batch=batch, C=C, H=H, W=W, dtype=dtype, act=act, layout=layout, bias=bias, config=config)


def case_id(c: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in c.items() if k != "config" and v is not None) + (
        f"-cfg={c['config']}" if c.get("config") else "")


SMALL = dict(BH=4, BW=4, BC=32)  # several spatial and channel blocks on small maps
INTERP_CASES = [
    case(2, 5, 1, 1, act="none"),
    case(2, 24, 3, 7, act="gelu"),
    case(1, 37, 9, 5, act="silu", config=SMALL),
    case(1, 37, 6, 6, act="gelu", layout="cf"),
    case(1, 24, 6, 6, act="none", bias=False, config=dict(BH=4, BW=4, BC=16)),
    case(1, 5, 1, 7, act="silu"),
    case(1, 24, 9, 3, act="gelu", layout="sliced", config=dict(BH=8, BW=2, BC=16, num_warps=2)),
    case(1, 24, 7, 1, dtype="float16", act="gelu"),
    case(1, 37, 5, 9, dtype="float16", act="silu", layout="cf", config=SMALL),
    case(1, 12, 6, 6, dtype="float16", act="none", bias=False),
    case(2, 24, 3, 7, dtype="bfloat16", act="gelu"),
    case(1, 37, 6, 6, dtype="bfloat16", act="silu", bias=False, config=SMALL),
    case(2, 12, 9, 5, dtype="bfloat16", act="silu"),                   # C = 12: 4-channel vectors
    case(1, 5, 9, 5, dtype="bfloat16", act="none", layout="cf"),
    case(1, 24, 6, 6, dtype="bfloat16", act="gelu", layout="sliced", config=SMALL),
    # the row-walking variant (ROWS > 0): several row strips and column strips, a last short strip
    case(1, 37, 9, 5, act="gelu", config=dict(ROWS=4, BW=4, BC=32)),
    case(2, 12, 1, 7, act="silu", config=dict(ROWS=4, BW=8)),
    case(1, 24, 7, 6, dtype="bfloat16", act="silu", layout="cf", config=dict(ROWS=7, BW=4, BC=16)),
    case(1, 5, 6, 1, dtype="float16", act="gelu", layout="sliced", bias=False, config=dict(ROWS=2)),
    # several input rows per step of the walk: strips whose row count is no multiple of the unroll
    case(1, 37, 9, 5, act="gelu", config=dict(ROWS=4, BW=4, BC=32, UNROLL=2)),
    case(2, 12, 7, 6, dtype="bfloat16", act="silu", config=dict(ROWS=5, BW=4, UNROLL=4)),
    case(1, 24, 1, 7, dtype="float16", act="none", layout="cf", config=dict(ROWS=3, UNROLL=4)),
    case(1, 5, 6, 3, act="silu", layout="sliced", bias=False, config=dict(ROWS=6, BW=2, UNROLL=2)),
    # the next step's rows loaded before this step's arithmetic (PREFETCH): several strips, strips whose
    # row count is no multiple of the unroll, one-row maps, 16-bit inputs, unaligned channels
    case(1, 37, 9, 5, act="gelu", config=dict(ROWS=4, BW=4, BC=32, UNROLL=2, PREFETCH=1)),
    case(2, 12, 7, 6, dtype="bfloat16", act="silu", config=dict(ROWS=5, BW=4, UNROLL=4, PREFETCH=1)),
    case(1, 24, 1, 7, dtype="float16", act="none", layout="cf", config=dict(ROWS=3, UNROLL=1, PREFETCH=1)),
    case(1, 5, 6, 3, act="gelu", layout="sliced", bias=False, config=dict(ROWS=6, BW=2, UNROLL=4, PREFETCH=1)),
    # MATH=0: the activations through libdevice's erf and IEEE division (the kernel before session 17)
    case(1, 37, 9, 5, act="gelu", config=dict(MATH=0)),
    case(2, 12, 7, 6, dtype="bfloat16", act="silu", config=dict(MATH=0)),
]


def _inputs(c: dict, device: str, seed: int):
    gen = torch.Generator().manual_seed(seed)
    dtype = getattr(torch, c["dtype"])
    b, C, H, W = c["batch"], c["C"], c["H"], c["W"]
    x = random_map(gen, b, C, H, W, c["layout"]).to(device=device, dtype=dtype)
    weight = (torch.randn(C, 1, 3, 3, generator=gen) / 3).to(device=device, dtype=dtype)
    bias = torch.randn(C, generator=gen).to(device=device, dtype=dtype) if c["bias"] else None
    return x, weight, bias


def _activation_slope(pre, act: str):
    """|d act / d z| at the float64 pre-activation z (None for no activation)."""
    if act == "gelu":
        return (torch.special.ndtr(pre) + pre * torch.exp(-0.5 * pre * pre) / (2 * torch.pi) ** 0.5).abs()
    if act == "silu":
        sig = torch.sigmoid(pre)
        return (sig * (1 + pre * (1 - sig))).abs()
    return None


def _errors(y, ref, ref64, dtype: str, pre64=None, act: str = "none") -> dict:
    """Worst |y - ref| over the bound: one or two ulps of the output (fp16/bf16), plus, behind an
    activation, one ulp of the rounded pre-activation carried through the activation's slope (a sum
    in another order may round the conv one ulp the other way; near GELU's tail that moves the output
    by more than an ulp of its own small value)."""
    d = (y.double() - ref.double()).abs()
    if dtype == "float32":
        bound = 1e-5 + 1e-5 * ref.double().abs()
    else:
        bound = 2 * EPS[dtype] * ref.double().abs() + 1e-2 * EPS[dtype]
        slope = None if pre64 is None else _activation_slope(pre64, act)
        if slope is not None:
            bound = bound + 2 * EPS[dtype] * slope * pre64.abs()
    return dict(worst=(d / bound).max().item(), differ=(d > 0).double().mean().item(), n=d.numel(),
                err64=((y.double() - ref64).norm() / ref64.norm()).item(), nan=bool(torch.isnan(y).any()))


def run_case(c: dict, device: str, seed: int) -> dict:
    from ssmzoo.ops.triton_dwconv import dwconv3x3_act_ref, dwconv3x3_act_triton

    x, weight, bias = _inputs(c, device, seed)
    out = torch.full(x.shape, float("nan"), dtype=x.dtype, device=device).contiguous(
        memory_format=torch.channels_last)
    y = dwconv3x3_act_triton(x, weight, bias, c["act"], out=out, config=c["config"])
    ref = dwconv3x3_act_ref(x, weight, bias, c["act"])
    f64 = lambda t: None if t is None else t.double()  # noqa: E731
    ref64 = dwconv3x3_act_ref(f64(x), f64(weight), f64(bias), c["act"])
    pre64 = dwconv3x3_act_ref(f64(x), f64(weight), f64(bias), "none")
    result = _errors(y, ref, ref64, c["dtype"], pre64, c["act"])
    result["out_ok"] = y is out and y.dtype == x.dtype
    return result


def _check(result: dict, c: dict) -> None:
    assert "error" not in result, result.get("error")
    assert not result["nan"], f"unwritten (NaN) outputs: {case_id(c)}"
    assert result["worst"] <= 1.0, f"|out - ref| {result['worst']:.3g}x the bound for {case_id(c)}"
    if c["dtype"] != "float32":  # 1%, but on maps of a few hundred outputs two near-ties may round apart
        assert result["differ"] * result["n"] <= max(0.01 * result["n"], 2), \
            f"{result['differ']:.2%} of outputs differ from ref: {case_id(c)}"
    assert result["err64"] < TOL64[c["dtype"]], f"rel err {result['err64']:.3g} vs float64 for {case_id(c)}"
    assert result["out_ok"], f"out= not returned as given: {case_id(c)}"


# ---------------------------------------------------------------------------------------------
# The operator and the model wiring (run in the interpreter subprocess too)
# ---------------------------------------------------------------------------------------------

def _check_operator(seed: int) -> dict:
    """opcheck (schema, fake tensor, AOT dispatch), one graph under torch.compile, autocast's casts,
    and the GroupMamba modules with the fused path forced on against their plain PyTorch path."""
    from unittest import mock

    import torch.nn.functional as F

    from ssmzoo.models import groupmamba as gm
    from ssmzoo.ops.triton_dwconv import dwconv3x3_act, dwconv3x3_act_op, dwconv3x3_act_ref

    gen = torch.Generator().manual_seed(seed)
    C, H, W = 6, 3, 5
    x = torch.randn(2, H, W, C, generator=gen).permute(0, 3, 1, 2)
    weight, bias = torch.randn(C, 1, 3, 3, generator=gen) / 3, torch.randn(C, generator=gen)
    for args in ((x, weight, bias, "gelu"), (x.contiguous().bfloat16(), weight.bfloat16(), None, "silu")):
        torch.library.opcheck(dwconv3x3_act_op, args)
    out = {}

    # one opaque node: fullgraph compiles through the autocast queries of the models' entry point
    compiled = torch.compile(lambda *a: dwconv3x3_act(*a, "silu") * 2.0, fullgraph=True, backend="eager")
    eager = dwconv3x3_act_op(x, weight, bias, "silu")
    out["compiled"] = ((compiled(x, weight, bias) - 2.0 * eager).abs().max() / eager.abs().max()).item()

    # autocast: the entry point casts what F.conv2d would cast (CPU autocast here, CUDA on a GPU)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = dwconv3x3_act(x, weight, bias, "gelu")
        plain = F.gelu(F.conv2d(x, weight, bias, padding=1, groups=C))
        y_compiled = compiled(x, weight, bias)
    ref = dwconv3x3_act_ref(x.bfloat16(), weight.bfloat16(), bias.bfloat16(), "gelu")
    ref_silu = dwconv3x3_act_ref(x.bfloat16(), weight.bfloat16(), bias.bfloat16(), "silu")
    out["autocast_dtype_ok"] = y.dtype == plain.dtype == y_compiled.dtype == torch.bfloat16
    out["autocast"] = max(_errors(y, ref, ref.double(), "bfloat16")["worst"],
                          _errors(y_compiled, 2.0 * ref_silu, ref_silu.double(), "bfloat16")["worst"])

    # the model wiring: the fused kernel forced on for CPU tensors vs the unchanged PyTorch path
    torch.manual_seed(seed)
    ffn, mixer = gm.PVT2FFN(8, 24).eval(), gm.GroupMambaLayer(16, 16).eval()
    with torch.no_grad():
        for m in (ffn, mixer):
            for p in m.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)
        tokens8, tokens16 = torch.randn(2, H * W, 8, generator=gen), torch.randn(2, H * W, 16, generator=gen)
        plain = ffn(tokens8, H, W), mixer(tokens16, H, W)
        with mock.patch.object(gm.DWConv, "use_fused_kernel", staticmethod(lambda x, conv, in_ffn=False: True)), \
                mock.patch.object(gm.nn.GELU, "forward", side_effect=AssertionError("GELU not fused")):
            fused = ffn(tokens8, H, W), mixer(tokens16, H, W)
    for name, a, b in zip(("ffn", "mixer"), plain, fused):
        out[name] = ((a - b).norm() / a.norm()).item()
    return out


ACTIVATION_GRID = (-16.0, 16.0, 4001)  # pre-activations from -16 to 16 (GELU's tail down to ~1e-57)


def _activation_accuracy(device: str, math: int) -> dict:
    """The kernel's activations alone against float64: an identity conv (centre tap 1, no bias) of
    float32 values spread over ``ACTIVATION_GRID`` (one per channel of a 1x1 map). The float64 GELU is 0.5 z erfc(-z / sqrt 2): the
    erf form (PyTorch's) cancels in the negative tail even in float64. Relative errors where
    |act| > 1e-30 (below, float32 flushes or runs out of digits), split at z = -2 for GELU; the
    absolute error everywhere."""
    from ssmzoo.ops.triton_dwconv import dwconv3x3_act_triton

    z = torch.linspace(*ACTIVATION_GRID, dtype=torch.float32)
    x = z.view(1, -1, 1, 1).to(device)
    weight = torch.zeros(z.numel(), 1, 3, 3, device=device)
    weight[:, 0, 1, 1] = 1.0
    z64 = z.double()
    refs = {"gelu": 0.5 * z64 * torch.special.erfc(-z64 * 0.5 ** 0.5), "silu": z64 * torch.sigmoid(z64)}
    out = {}
    for act, ref in refs.items():
        y = dwconv3x3_act_triton(x, weight, None, act, config=dict(MATH=math)).double().flatten().cpu()
        d = (y - ref).abs()
        rel = torch.where(ref.abs() > 1e-30, d / ref.abs().clamp_min(1e-30), torch.zeros_like(d))
        core = z >= -2.0 if act == "gelu" else torch.ones_like(z, dtype=torch.bool)
        out[act] = dict(rel=rel[core].max().item(), tail_rel=rel[~core].max().item() if (~core).any() else 0.0,
                        abs=d.max().item())
    return out


@pytest.fixture(scope="module")
def interpreted() -> dict:
    return run_interpreted(__file__, "--interpret")


@pytest.mark.parametrize("index", range(len(INTERP_CASES)), ids=[case_id(c) for c in INTERP_CASES])
def test_interpreted_kernel_matches_reference(interpreted, index):
    _check(interpreted["cases"][index], INTERP_CASES[index])


def test_operator_compiles_as_one_graph_and_follows_autocast(interpreted):
    r = interpreted["operator"]
    assert "error" not in r, r.get("error")
    assert r["compiled"] < 1e-6, r
    assert r["autocast_dtype_ok"] and r["autocast"] <= 1.0, r  # within ~1-2 bfloat16 ulps of the reference


# The float32 activations against float64 (``_activation_accuracy``). MATH 0 (libdevice erf, IEEE
# division; the formula of PyTorch's kernels): ~1e-7 relative, but 1 + erf cancels in GELU's tail
# (z < -5: float32 runs out of digits, 100% relative error, ~1e-7 absolute), so its tail is not
# bounded here. The erfc fit (MATH 1, 2): ~2e-7 near 0, growing with z^2 in the negative tail (the
# float32 exponent's argument): 4e-6 at -6, 1.3e-5 at -12. Every variant: absolute error < 2e-6.
ACTIVATION_TOL = {0: dict(rel=2e-6, tail_rel=None), 1: dict(rel=2e-6, tail_rel=5e-5),
                  2: dict(rel=2e-6, tail_rel=5e-5)}


def _check_accuracy(acc: dict, math: int) -> None:
    assert "error" not in acc, acc.get("error")
    tol = ACTIVATION_TOL[math]
    for act in ("gelu", "silu"):
        assert acc[act]["rel"] < tol["rel"] and acc[act]["abs"] < 2e-6, (math, act, acc[act])
        if tol["tail_rel"] is not None:
            assert acc[act]["tail_rel"] < tol["tail_rel"], (math, act, acc[act])


@pytest.mark.parametrize("math", [0, 1])
def test_interpreted_activations_match_float64(interpreted, math):
    _check_accuracy(interpreted["accuracy"][str(math)], math)


def test_groupmamba_modules_with_fused_kernel_match_pytorch_path(interpreted):
    r = interpreted["operator"]
    assert "error" not in r, r.get("error")
    assert r["ffn"] < 1e-5 and r["mixer"] < 1e-5, r


def test_tap_major_weight_is_the_layout_the_kernel_reads():
    # The models hand the operator their weights as tap_major views: same values, and the (9, C)
    # tap-major matrix the launch builds from them is the tensor's own memory (no copy per call;
    # under torch.compile with freezing the rearrangement is folded once).
    from ssmzoo.ops.triton_dwconv import tap_major

    weight = torch.randn(37, 1, 3, 3)
    viewed = tap_major(weight)
    assert viewed.shape == weight.shape and torch.equal(viewed, weight)
    w9 = viewed.reshape(37, 9).t()
    assert w9.is_contiguous() and w9.data_ptr() == viewed.data_ptr()
    assert not weight.reshape(37, 9).t().is_contiguous()  # what the operator would otherwise copy


def test_config_and_argument_checks():
    from ssmzoo.ops.triton_dwconv import dwconv3x3_act_triton, dwconv_config

    default = dwconv_config(512, 56, 56)
    walk = dict(UNROLL=default["UNROLL"], PREFETCH=default["PREFETCH"], MATH=2)
    assert default == dict(BH=1, BW=8, BC=64, num_warps=4, ROWS=56, **walk)  # walks the whole map
    assert dwconv_config(512, 56, 56, dict(BH=4, ROWS=0)) == dict(BH=4, BW=8, BC=64, num_warps=4, ROWS=0, **walk)
    assert dwconv_config(512, 14, 14, dict(ROWS=56))["ROWS"] == 14
    assert dwconv_config(1792, 7, 7)["BW"] == 8 and dwconv_config(37, 1, 7)["BH"] == 1
    assert dwconv_config(448, 1, 1, dict(ROWS=0))["BC"] == 256  # the class token: one position, wider channel block
    assert dwconv_config(5, 9, 5)["BC"] == 8
    # stage 2's FFN convs (28 x 28, 1024+ channels) have a geometry of their own; the mixer's keep the default
    assert {k: dwconv_config(1024, 28, 28)[k] for k in ("BW", "num_warps")} == dict(BW=4, num_warps=2)
    assert {k: dwconv_config(128, 28, 28)[k] for k in ("BW", "num_warps")} == dict(BW=8, num_warps=4)
    assert dwconv_config(1536, 28, 28, dict(BW=8))["BW"] == 8  # a given config still wins
    with pytest.raises(ValueError):
        dwconv_config(64, 8, 8, dict(BW=6))
    with pytest.raises(ValueError, match="UNROLL"):
        dwconv_config(64, 8, 8, dict(UNROLL=3))
    with pytest.raises(ValueError, match="MATH"):
        dwconv_config(64, 8, 8, dict(MATH=3))
    x = torch.zeros(1, 4, 3, 3)
    with pytest.raises(ValueError):
        dwconv3x3_act_triton(x, torch.zeros(4, 1, 5, 5), None, "gelu")
    with pytest.raises(ValueError):
        dwconv3x3_act_triton(x, torch.zeros(4, 1, 3, 3), None, "relu")
    with pytest.raises(ValueError):
        dwconv3x3_act_triton(x.double(), torch.zeros(4, 1, 3, 3), None, "gelu")


# ---------------------------------------------------------------------------------------------
# Compiled, on a CUDA device: GroupMamba-T's shapes (FFN hidden 512/1024/1392/1792 at 56/28/14/7,
# mixer convs 64/128/348/448 channels), batch 4, plus one batch-128 stage-1 case
# ---------------------------------------------------------------------------------------------

GPU_CASES = [
    case(4, 512, 56, 56, dtype="bfloat16"),
    case(4, 1024, 28, 28, dtype="bfloat16"),
    case(4, 1392, 14, 14, dtype="bfloat16"),
    case(4, 1792, 7, 7, dtype="bfloat16"),
    case(128, 512, 56, 56, dtype="bfloat16"),
    case(4, 512, 56, 56, dtype="float32"),
    case(4, 1392, 14, 14, dtype="float16"),
    case(4, 64, 56, 56, dtype="bfloat16", act="silu"),
    case(4, 348, 14, 14, dtype="bfloat16", act="silu"),                  # C = 348: 4-channel vectors
    case(4, 448, 7, 7, dtype="float32", act="silu"),
    case(128, 448, 1, 1, dtype="bfloat16", act="silu"),                  # the class token's mixer
    case(4, 128, 28, 28, dtype="bfloat16", act="none", bias=False),
    case(4, 1024, 28, 28, dtype="bfloat16", layout="cf"),
    case(4, 348, 14, 14, dtype="float32", act="silu", layout="sliced"),
    case(3, 520, 23, 9, dtype="bfloat16", config=dict(BH=2, BW=16, BC=128, num_warps=8)),
    case(4, 512, 56, 56, dtype="bfloat16", config=dict(ROWS=8, BW=8, BC=64)),
    case(4, 348, 14, 14, dtype="float32", act="silu", config=dict(ROWS=14, BW=16, BC=32, num_warps=2)),
    case(3, 520, 23, 9, dtype="float16", layout="cf", config=dict(ROWS=5, BW=4, BC=128)),
    case(4, 512, 56, 56, dtype="bfloat16", act="gelu", config=dict(ROWS=56, BW=8, BC=64, UNROLL=4)),
    case(3, 348, 14, 13, dtype="float32", act="silu", config=dict(ROWS=14, BW=8, BC=32, UNROLL=2)),
    case(3, 520, 23, 9, dtype="bfloat16", layout="cf", config=dict(ROWS=23, BW=4, BC=64, UNROLL=4)),
    case(4, 512, 56, 56, dtype="bfloat16", config=dict(UNROLL=2, PREFETCH=1)),
    case(3, 348, 14, 13, dtype="float32", act="silu", layout="sliced", config=dict(UNROLL=4, PREFETCH=1)),
    case(4, 512, 56, 56, dtype="bfloat16", config=dict(MATH=0)),
    case(4, 348, 14, 14, dtype="float32", act="silu", config=dict(MATH=0)),
]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("c", GPU_CASES, ids=[case_id(c) for c in GPU_CASES])
def test_gpu_kernel_matches_reference(c, no_tf32):
    seed = torch.randint(0, 2**31 - 1, ()).item()
    result = run_case(c, "cuda", seed)
    print(f"{case_id(c)}: {result}")
    _check(result, c)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("math", [0, 2])
def test_gpu_activations_match_float64(math):
    _check_accuracy(_activation_accuracy("cuda", math), math)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("act", ["gelu", "silu"])
def test_gpu_kernel_agrees_with_cudnn_eager(act, no_tf32):
    """bfloat16, as under autocast: the fused kernel vs cuDNN's conv then the activation (eager).

    Eager may round twice before the activation (the conv's output, then after adding the bias,
    if the bias is added as a separate op); the kernel rounds once. So the bound is a few ulps of
    the conv's magnitude (|conv| + |bias|), not of the output's, and differing elements are only
    reported."""
    import torch.nn.functional as F

    from ssmzoo.ops.triton_dwconv import dwconv3x3_act_triton

    c = case(8, 512, 56, 56, dtype="bfloat16", act=act)
    x, weight, bias = _inputs(c, "cuda", torch.randint(0, 2**31 - 1, ()).item())
    eager = getattr(F, act)(F.conv2d(x, weight, bias, padding=1, groups=512)).float()
    y = dwconv3x3_act_triton(x, weight, bias, act).float()
    scale = F.conv2d(x.float(), weight.float(), None, padding=1, groups=512).abs() + bias.float().abs()[:, None, None]
    d = (y - eager).abs()
    print(f"{act}: max |fused - cudnn| {d.max().item():.3g}, {(d > 0).float().mean().item():.3%} of elements differ")
    assert (d <= 4 * EPS["bfloat16"] * scale + 1e-3).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_operator_opcheck():
    from ssmzoo.ops.triton_dwconv import dwconv3x3_act_op

    x, weight, bias = _inputs(case(2, 40, 9, 13), "cuda", 0)
    torch.library.opcheck(dwconv3x3_act_op, (x, weight, bias, "gelu"))
    torch.library.opcheck(dwconv3x3_act_op, (x.contiguous().half(), weight.half(), None, "silu"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("autocast", [False, True])
def test_gpu_groupmamba_modules_fused_vs_torch_backend(autocast, monkeypatch, no_tf32):
    """GroupMamba-T stage-1 FFN and mixer on CUDA: the fused convs (triton backend) against
    SSMZOO_SCAN=torch (cuDNN conv, separate activation), in float32 and under bfloat16 autocast."""
    from ssmzoo.models import groupmamba as gm

    monkeypatch.delenv("SSMZOO_SCAN", raising=False)
    torch.manual_seed(0)
    ffn, mixer = gm.PVT2FFN(64, 512).eval().cuda(), gm.GroupMambaLayer(64, 64).eval().cuda()
    x = torch.randn(2, 56 * 48, 64, device="cuda")
    ctx = torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast)
    with torch.no_grad(), ctx:
        assert gm.DWConv.use_fused_kernel(x.view(2, 56, 48, 64).permute(0, 3, 1, 2), ffn.dwconv.dwconv)
        fast = ffn(x, 56, 48), mixer(x, 56, 48)
        monkeypatch.setenv("SSMZOO_SCAN", "torch")
        slow = ffn(x, 56, 48), mixer(x, 56, 48)
    for a, b in zip(fast, slow):
        assert a.dtype == b.dtype
        err = ((a.double() - b.double()).norm() / b.double().norm()).item()
        print(f"autocast={autocast}: rel err {err:.3g}")
        assert err <= (2e-2 if autocast else 1e-4)


if __name__ == "__main__" and sys.argv[1:2] == ["--interpret"]:
    # Runs in the subprocess started by the ``interpreted`` fixture (TRITON_INTERPRET=1 already set).
    seed = int(sys.argv[2])
    operator = checked(_check_operator, seed)
    accuracy = {math: checked(_activation_accuracy, "cpu", math) for math in (0, 1)}
    print(json.dumps(dict(cases=json.loads(run_cases(run_case, INTERP_CASES, seed)), operator=operator,
                          accuracy=accuracy)))
