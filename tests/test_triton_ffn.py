"""The fused PVTv2 FFN tail: fc2(GELU(dwconv3x3(h) + bias)) in one Triton kernel (``ssmzoo.ops.triton_ffn``).

On every machine the kernel runs under the Triton interpreter (``TRITON_INTERPRET=1``, CPU tensors,
small odd shapes: odd and non-square maps, hidden and output widths that are not multiples of the
blocks, with and without biases, several token / channel tiles) in one subprocess, which also checks
the custom operator (opcheck, one graph under torch.compile, autocast's casts) and the op against
``PVT2FFN``'s plain forward; on a CUDA machine GroupMamba-T's FFN shapes also run compiled (``gpu``).

Measures per case, on fresh random inputs (outputs pre-filled with NaN, so an unwritten element fails):
- against ``dwconv_gelu_linear_ref`` (same rounding points): |d| <= bound, where
  bound = 2 eps |ref| + eps * S + floor, S = (|a| + slope |pre|) @ |fc_weight|^T in float64,
  a the rounded GELU output (fc2's input), pre the conv + bias, slope = |GELU'(pre)|. The first term
  is the output's own rounding (1-2 ulps); the second covers hidden activations that round one ulp
  the other way because the conv was summed in another order (each moves the output by at most
  |w| ulp(a)); S sums absolute terms: a worst case, not a statistical bound.
  float32: eps = 1e-6 (summation order only; float32 has no intermediate rounding), floor 1e-6.
  float16/bfloat16: eps = 2^-10 / 2^-7, floor 1e-2 eps; also at most 10% of the elements may
  differ at all (one flipped hidden value can move every output channel of its token, so this is
  looser than a conv's 1%). Seen under the interpreter (5 seeds): worst 0.08 of the bound (float32),
  1e-5 (float16), 0 (bfloat16); at most 0.06% of float16 and no bfloat16 elements differ.
- ||out - ref64|| / ||ref64||, ref64 the float64 function of the same (rounded) input values:
  float32 1e-6, float16 2e-3, bfloat16 1e-2 (seen under the interpreter: float32 4e-8 - 1.5e-7,
  float16 1.7e-4 - 5.8e-4, bfloat16 1.9e-3 - 2.5e-3: the rounding of the hidden activation and of
  the output; the small cases have few outputs, hence the spread).
"""

from __future__ import annotations

import json
import sys

import pytest
import torch

from interpreter import checked, run_cases, run_interpreted

pytest.importorskip("triton")

EPS = {"float32": 1e-6, "float16": 2.0 ** -10, "bfloat16": 2.0 ** -7}
FLOOR = {"float32": 1e-6, "float16": 1e-2 * 2.0 ** -10, "bfloat16": 1e-2 * 2.0 ** -7}
TOL64 = {"float32": 1e-6, "float16": 2e-3, "bfloat16": 1e-2}
MAX_DIFFER = 0.10


def case(batch, H, W, hid, C, dtype="float32", conv_bias=True, fc_bias=True, config=None):
    return dict(batch=batch, H=H, W=W, hid=hid, C=C, dtype=dtype, conv_bias=conv_bias, fc_bias=fc_bias,
                config=config)


def case_id(c: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in c.items() if k != "config" and v is not None) + (
        f"-cfg={c['config']}" if c.get("config") else "")


T16 = dict(BM=16, BN=16, BK=16)  # several token, output-channel and hidden-channel tiles on small shapes
HOISTED = dict(BLOCKED_A=False, num_stages=2)  # the variant with the conv in the MMA operand layout
INTERP_CASES = [
    case(2, 1, 1, 24, 5),                                              # one token: only the centre tap
    case(2, 3, 7, 24, 12, conv_bias=False),
    case(1, 9, 5, 37, 20, config=T16),                                 # hid, C tails; 3 token tiles
    case(1, 6, 6, 37, 5, fc_bias=False, config=dict(BM=32, BN=16, BK=32, num_warps=2, **HOISTED)),
    case(2, 5, 9, 24, 20, dtype="float16", config=T16),
    case(1, 3, 7, 37, 12, dtype="float16", conv_bias=False, fc_bias=False, config=HOISTED),
    case(1, 1, 1, 24, 5, dtype="float16"),
    case(2, 9, 5, 24, 12, dtype="bfloat16"),
    case(1, 6, 6, 37, 20, dtype="bfloat16", config=dict(T16, **HOISTED)),
    case(1, 7, 3, 24, 5, dtype="bfloat16", conv_bias=False, config=dict(BM=16, BK=16, num_stages=3)),
]


def _inputs(c: dict, device: str, seed: int):
    gen = torch.Generator().manual_seed(seed)
    dtype = getattr(torch, c["dtype"])
    hid, C = c["hid"], c["C"]

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen) * scale).to(device=device, dtype=dtype)

    h = rnd(c["batch"], c["H"] * c["W"], hid)
    conv_weight = rnd(hid, 1, 3, 3, scale=1 / 3)
    conv_bias = rnd(hid) if c["conv_bias"] else None
    fc_weight = rnd(C, hid, scale=hid ** -0.5)
    fc_bias = rnd(C) if c["fc_bias"] else None
    return h, conv_weight, conv_bias, fc_weight, fc_bias


def _gelu_slope(pre):
    """|GELU'(z)| at the float64 pre-activation z."""
    return (torch.special.ndtr(pre) + pre * torch.exp(-0.5 * pre * pre) / (2 * torch.pi) ** 0.5).abs()


def _errors(y, inputs, H: int, W: int, dtype: str) -> dict:
    """Worst |y - ref| over the bound of the module docstring, the fraction of differing elements and
    the relative error against the float64 function."""
    from ssmzoo.ops.triton_dwconv import dwconv3x3_act_ref
    from ssmzoo.ops.triton_ffn import dwconv_gelu_linear_ref

    h, conv_weight, conv_bias, fc_weight, fc_bias = inputs
    ref = dwconv_gelu_linear_ref(*inputs[:1], H, W, *inputs[1:]).double()
    f64 = [None if t is None else t.double() for t in inputs]
    ref64 = dwconv_gelu_linear_ref(f64[0], H, W, *f64[1:])
    B, L, hid = h.shape
    x = h.transpose(1, 2).reshape(B, hid, H, W)
    a = dwconv3x3_act_ref(x, conv_weight, conv_bias, "gelu").flatten(2).transpose(1, 2).double()
    pre = dwconv3x3_act_ref(x.double(), f64[1], f64[2], "none").flatten(2).transpose(1, 2)
    S = (a.abs() + _gelu_slope(pre) * pre.abs()) @ f64[3].abs().t()
    d = (y.double() - ref).abs()
    bound = 2 * EPS[dtype] * ref.abs() + EPS[dtype] * S + FLOOR[dtype]
    return dict(worst=(d / bound).max().item(), differ=(d > 0).double().mean().item(),
                err64=((y.double() - ref64).norm() / ref64.norm()).item(), nan=bool(torch.isnan(y).any()))


def run_case(c: dict, device: str, seed: int) -> dict:
    from ssmzoo.ops.triton_ffn import dwconv_gelu_linear_triton

    inputs = _inputs(c, device, seed)
    h = inputs[0]
    out = torch.full((c["batch"], c["H"] * c["W"], c["C"]), float("nan"), dtype=h.dtype, device=device)
    y = dwconv_gelu_linear_triton(h, c["H"], c["W"], *inputs[1:], config=c["config"], out=out)
    result = _errors(y, inputs, c["H"], c["W"], c["dtype"])
    result["out_ok"] = y is out and y.dtype == h.dtype
    return result


def _check(result: dict, c: dict) -> None:
    assert "error" not in result, result.get("error")
    assert not result["nan"], f"unwritten (NaN) outputs: {case_id(c)}"
    assert result["worst"] <= 1.0, f"|out - ref| {result['worst']:.3g}x the bound for {case_id(c)}"
    if c["dtype"] != "float32":
        assert result["differ"] <= MAX_DIFFER, f"{result['differ']:.2%} of outputs differ from ref: {case_id(c)}"
    assert result["err64"] < TOL64[c["dtype"]], f"rel err {result['err64']:.3g} vs float64 for {case_id(c)}"
    assert result["out_ok"], f"out= not returned as given: {case_id(c)}"


# ---------------------------------------------------------------------------------------------
# The operator (run in the interpreter subprocess too)
# ---------------------------------------------------------------------------------------------

def _check_operator(seed: int) -> dict:
    """opcheck (schema, fake tensor, AOT dispatch), one graph under torch.compile, autocast's casts,
    and the operator against PVT2FFN's plain PyTorch forward (fc1 in PyTorch, the rest fused)."""
    from ssmzoo.models import groupmamba as gm
    from ssmzoo.ops.triton_ffn import dwconv_gelu_linear, dwconv_gelu_linear_op

    H, W = 3, 5
    inputs = _inputs(case(2, H, W, 24, 6), "cpu", seed)
    h, cw, cb, fw, fb = inputs
    bf = [t.bfloat16() for t in inputs]
    for args in ((h, H, W, cw, cb, fw, fb), (bf[0], H, W, bf[1], None, bf[3], None)):
        torch.library.opcheck(dwconv_gelu_linear_op, args)
    out = {}

    # one opaque node: fullgraph compiles through the autocast queries of the models' entry point
    compiled = torch.compile(lambda h, *a: dwconv_gelu_linear(h, H, W, *a) * 2.0, fullgraph=True, backend="eager")
    eager = dwconv_gelu_linear_op(h, H, W, cw, cb, fw, fb)
    out["compiled"] = ((compiled(h, cw, cb, fw, fb) - 2.0 * eager).abs().max() / eager.abs().max()).item()

    # autocast: the entry point casts what F.conv2d / F.linear would cast (CPU autocast here)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = dwconv_gelu_linear(h, H, W, cw, cb, fw, fb)
        y_compiled = compiled(h, cw, cb, fw, fb)
    out["autocast_dtype_ok"] = y.dtype == y_compiled.dtype == torch.bfloat16
    out["autocast"] = max(_errors(y, bf, H, W, "bfloat16")["worst"],
                          _errors(y_compiled / 2.0, bf, H, W, "bfloat16")["worst"])  # * 2, / 2: exact

    # the module: PVT2FFN's plain forward (CPU: cuDNN-free conv, separate GELU) vs fc1 + the fused op
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    ffn = gm.PVT2FFN(8, 24).eval()
    with torch.no_grad():
        for p in ffn.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
        tokens = torch.randn(2, H * W, 8, generator=gen)
        plain = ffn(tokens, H, W)
        conv = ffn.dwconv.dwconv
        fused = dwconv_gelu_linear(ffn.fc1(tokens), H, W, conv.weight, conv.bias, ffn.fc2.weight, ffn.fc2.bias)
    out["module"] = ((plain - fused).norm() / plain.norm()).item()
    return out


@pytest.fixture(scope="module")
def interpreted() -> dict:
    return run_interpreted(__file__, "--interpret")


@pytest.mark.parametrize("index", range(len(INTERP_CASES)), ids=[case_id(c) for c in INTERP_CASES])
def test_interpreted_kernel_matches_reference(interpreted, index):
    result = interpreted["cases"][index]
    print(f"{case_id(INTERP_CASES[index])}: {result}")
    _check(result, INTERP_CASES[index])


def test_operator_compiles_as_one_graph_and_follows_autocast(interpreted):
    r = interpreted["operator"]
    assert "error" not in r, r.get("error")
    assert r["compiled"] < 1e-6, r
    assert r["autocast_dtype_ok"] and r["autocast"] <= 1.0, r


def test_operator_matches_pvt2ffn_module(interpreted):
    r = interpreted["operator"]
    assert "error" not in r, r.get("error")
    assert r["module"] < 1e-5, r


def test_config_and_argument_checks():
    from ssmzoo.ops.triton_ffn import dwconv_gelu_linear_triton, ffn_config

    cfg = ffn_config(64, 512, 56, 56)
    assert (cfg["BM"], cfg["BN"], cfg["BK"]) == (64, 64, 32) and cfg["num_warps"] == 8 and cfg["BLOCKED_A"]
    cfg = ffn_config(448, 1792, 7, 7)
    assert (cfg["BM"], cfg["BN"]) == (64, 256) and cfg["num_warps"] == 8
    cfg = ffn_config(5, 24, 1, 1, dict(BK=64))
    assert (cfg["BM"], cfg["BN"], cfg["BK"]) == (16, 16, 32)   # clipped to the problem, never below 16
    with pytest.raises(ValueError):
        ffn_config(64, 512, 56, 56, dict(BK=48))
    with pytest.raises(ValueError):
        ffn_config(64, 512, 56, 56, dict(BN=8))
    h, cw, fw = torch.zeros(1, 6, 8), torch.zeros(8, 1, 3, 3), torch.zeros(4, 8)
    with pytest.raises(ValueError):
        dwconv_gelu_linear_triton(h, 2, 2, cw, None, fw, None)           # H * W != L
    with pytest.raises(ValueError):
        dwconv_gelu_linear_triton(h, 2, 3, torch.zeros(8, 1, 5, 5), None, fw, None)
    with pytest.raises(ValueError):
        dwconv_gelu_linear_triton(h, 2, 3, cw, None, torch.zeros(4, 7), None)
    with pytest.raises(ValueError):
        dwconv_gelu_linear_triton(h, 2, 3, cw, None, fw.half(), None)    # mixed dtypes
    with pytest.raises(ValueError):
        dwconv_gelu_linear_triton(h.double(), 2, 3, cw.double(), None, fw.double(), None)


# ---------------------------------------------------------------------------------------------
# Compiled, on a CUDA device: GroupMamba-T's FFN shapes (C, hid, map) = (64, 512, 56), (128, 1024, 28),
# (348, 1392, 14), (448, 1792, 7), batch 8, plus batch-128 cases and non-default configs
# ---------------------------------------------------------------------------------------------

T_FFN = [(64, 512, 56), (128, 1024, 28), (348, 1392, 14), (448, 1792, 7)]
GPU_CASES = (
    [case(8, H, H, hid, C, dtype="bfloat16") for C, hid, H in T_FFN]
    + [case(8, H, H, hid, C, dtype="float32") for C, hid, H in T_FFN]
    + [case(128, 56, 56, 512, 64, dtype="bfloat16"), case(128, 7, 7, 1792, 448, dtype="bfloat16"),
       case(128, 14, 14, 1392, 348, dtype="float32"),
       case(8, 28, 28, 1024, 128, dtype="float16"),
       case(3, 23, 9, 520, 100, dtype="bfloat16", conv_bias=False),
       case(8, 56, 56, 512, 64, dtype="bfloat16", config=dict(BM=128, BN=64, BK=32, num_warps=8, num_stages=2)),
       case(8, 14, 14, 1392, 348, dtype="bfloat16", config=dict(BM=32, BN=128, BK=64, num_warps=4, num_stages=1)),
       case(8, 28, 28, 1024, 128, dtype="bfloat16", config=dict(BN=128, num_warps=8, BLOCKED_A=False, num_stages=2)),
       case(8, 14, 14, 1392, 348, dtype="float32", config=dict(BM=64, BN=128, BK=32, num_warps=4, BLOCKED_A=False)),
       case(2, 1, 1, 1792, 448, dtype="bfloat16", fc_bias=False)]
)


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
def test_gpu_operator_opcheck():
    from ssmzoo.ops.triton_ffn import dwconv_gelu_linear_op

    h, cw, cb, fw, fb = _inputs(case(2, 9, 13, 40, 24), "cuda", 0)
    torch.library.opcheck(dwconv_gelu_linear_op, (h, 9, 13, cw, cb, fw, fb))
    torch.library.opcheck(dwconv_gelu_linear_op, (h.half(), 9, 13, cw.half(), None, fw.half(), None))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_agrees_with_eager_autocast():
    """GroupMamba-T stage-1 FFN tail under bfloat16 autocast: the fused op against eager cuDNN conv +
    GELU + cuBLAS linear (which may round once more, after the conv and before its bias)."""
    import torch.nn.functional as F

    from ssmzoo.ops.triton_ffn import dwconv_gelu_linear

    torch.manual_seed(0)
    B, H, W, hid, C = 8, 56, 56, 512, 64
    h = torch.randn(B, H * W, hid, device="cuda")
    cw, cb = torch.randn(hid, 1, 3, 3, device="cuda") / 3, torch.randn(hid, device="cuda")
    fw, fb = torch.randn(C, hid, device="cuda") / hid ** 0.5, torch.randn(C, device="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        fused = dwconv_gelu_linear(h, H, W, cw, cb, fw, fb)
        x = h.transpose(1, 2).reshape(B, hid, H, W)
        eager = F.linear(F.gelu(F.conv2d(x, cw, cb, padding=1, groups=hid)).flatten(2).transpose(1, 2), fw, fb)
    assert fused.dtype == eager.dtype == torch.bfloat16
    err = ((fused.double() - eager.double()).norm() / eager.double().norm()).item()
    print(f"rel err fused vs eager autocast: {err:.3g}")
    assert err < 1e-2


if __name__ == "__main__" and sys.argv[1:2] == ["--interpret"]:
    # Runs in the subprocess started by the ``interpreted`` fixture (TRITON_INTERPRET=1 already set).
    seed = int(sys.argv[2])
    operator = checked(_check_operator, seed)
    print(json.dumps(dict(cases=json.loads(run_cases(run_case, INTERP_CASES, seed)), operator=operator)))
