"""The implicit-GEMM conv for few input channels (``ssmzoo.ops.triton_conv``; GroupMamba's stem).

On every machine the kernel runs under the Triton interpreter (``TRITON_INTERPRET=1``, CPU tensors,
small odd shapes) in one subprocess, which also checks the custom operator (opcheck, autocast casts)
and the GroupMamba stem wired to it; on a CUDA machine the stems' full-size shapes run compiled
(marked ``gpu``).

Two measures per case, on fresh random inputs (outputs pre-filled with NaN, so an unwritten element fails):
- against ``conv2d_igemm_ref`` (float32 accumulation, one rounding): float32 |d| <= 1e-5 + 1e-5 |ref|
  (summation order only); float16/bfloat16 |d| <= 2 eps |ref| + 1e-2 eps (about one ulp).
- ||out - ref64|| / ||ref64||, ref64 the float64 conv of the same (rounded) values: float32 1e-6,
  float16 2e-3, bfloat16 1e-2 (the output rounding alone costs ~3e-4 / ~3e-3).
"""

from __future__ import annotations

import json
import sys

import pytest
import torch
import torch.nn.functional as F

from interpreter import checked, random_map, run_cases, run_interpreted

pytest.importorskip("triton")

EPS = {"float32": 0.0, "float16": 2.0 ** -10, "bfloat16": 2.0 ** -7}
TOL64 = {"float32": 1e-6, "float16": 2e-3, "bfloat16": 1e-2}


def case(batch, C, H, W, C_out, k=7, stride=2, padding=3, dtype="float32", layout="cf", bias=False, bn=False,
         config=None):
    """layout: "cf" contiguous (B, C, H, W) (an image batch: the reduction runs channel by channel),
    "cl" channels-last, "sliced" a channel slice of a wider channels-last tensor
    (``interpreter.random_map``; both tap by tap). bn: a float32 scale and shift (a folded batch norm)
    and ReLU in the epilogue."""
    return dict(batch=batch, C=C, H=H, W=W, C_out=C_out, k=k, stride=stride, padding=padding, dtype=dtype,
                layout=layout, bias=bias, bn=bn, config=config)


def case_id(c: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in c.items() if k != "config" and v is not None) + (
        f"-cfg={c['config']}" if c.get("config") else "")


INTERP_CASES = [
    case(2, 3, 23, 17, 32),                                                # the stem's conv, odd map
    case(1, 3, 9, 14, 20, dtype="bfloat16", bias=True),                    # C_out not a power of 2
    case(1, 1, 8, 8, 16, k=3, stride=1, padding=1, dtype="float16", layout="cl"),
    case(2, 4, 11, 6, 40, k=5, stride=3, padding=0, layout="sliced", bias=True),
    case(1, 2, 5, 5, 24, k=3, stride=2, padding=2, dtype="bfloat16", layout="cl"),
    case(1, 3, 7, 9, 200, k=3, stride=1, padding=1, config=dict(BLOCK_M=16, BLOCK_K=16)),  # 2 channel blocks
    case(1, 3, 1, 1, 16, k=1, stride=1, padding=0),
    case(2, 16, 9, 7, 16, k=3, stride=1, padding=1, layout="cl", bn=True),         # the stem's middle convs
    case(1, 32, 7, 10, 64, k=3, stride=2, padding=1, dtype="bfloat16", layout="cl", bias=True),  # its proj
    case(1, 24, 6, 5, 20, k=3, stride=1, padding=1, dtype="float16", layout="sliced", bn=True),  # taps span chunks
    case(1, 16, 5, 6, 24, k=3, stride=1, padding=1, dtype="bfloat16", layout="cf", bn=True),     # channel by channel
]


def _inputs(c: dict, device: str, seed: int):
    gen = torch.Generator().manual_seed(seed)
    dtype = getattr(torch, c["dtype"])
    b, C, H, W = c["batch"], c["C"], c["H"], c["W"]
    x = random_map(gen, b, C, H, W, c["layout"])
    w = torch.randn(c["C_out"], C, c["k"], c["k"], generator=gen) / (c["k"] * C ** 0.5)
    bias = torch.randn(c["C_out"], generator=gen) if c["bias"] else None
    scale = None
    if c["bn"]:  # float32, as the models' folded batch norms hand them over
        scale = torch.rand(c["C_out"], generator=gen).to(device) + 0.5
        shift = torch.randn(c["C_out"], generator=gen)
        bias = shift if bias is None else bias + shift
    return (x.to(device=device, dtype=dtype), w.to(device=device, dtype=dtype),
            None if bias is None else bias.to(device=device, dtype=torch.float32 if c["bn"] else dtype), scale)


def run_case(c: dict, device: str, seed: int) -> dict:
    from ssmzoo.ops.triton_conv import conv2d_igemm_ref, conv2d_igemm_triton

    x, w, b, scale = _inputs(c, device, seed)
    relu = c["bn"]
    y = conv2d_igemm_triton(x, w, b, c["stride"], c["padding"], scale=scale, relu=relu, config=c["config"])
    ref = conv2d_igemm_ref(x, w, b, c["stride"], c["padding"], scale=scale, relu=relu)
    ref64 = F.conv2d(x.double(), w.double(), None, stride=c["stride"], padding=c["padding"])
    if scale is not None:
        ref64 = ref64 * scale.double()[:, None, None]
    if b is not None:
        ref64 = ref64 + b.double()[:, None, None]
    if relu:
        ref64 = ref64.clamp_min(0)
    eps = EPS[c["dtype"]]
    d = (y.double() - ref.double()).abs()
    bound = (1e-5 + 1e-5 * ref.double().abs()) if eps == 0.0 else (2 * eps * ref.double().abs() + 1e-2 * eps)
    return dict(shape=list(y.shape), channels_last=y.is_contiguous(memory_format=torch.channels_last),
                dtype_ok=y.dtype == x.dtype, nan=bool(torch.isnan(y).any()), within=bool((d <= bound).all()),
                max_d=d.max().item(), err64=((y.double() - ref64).norm() / ref64.norm()).item(),
                ref_shape=list(ref64.shape))


def _check(r: dict, c: dict) -> None:
    assert "error" not in r, r.get("error")
    assert r["shape"] == r["ref_shape"] and r["channels_last"] and r["dtype_ok"], r
    assert not r["nan"], f"unwritten outputs: {case_id(c)}"
    assert r["within"], f"max |d| {r['max_d']:.3g} against the float32-accumulated reference: {case_id(c)}"
    assert r["err64"] < TOL64[c["dtype"]], f"rel err {r['err64']:.3g} against float64: {case_id(c)}"


def _check_operator_and_stem(seed: int) -> dict:
    """The subprocess side: opcheck of the operator, autocast casts, and a GroupMamba stem forced onto
    the kernels (``Stem.forward_igemm``: batch norms folded into the epilogues) against the plain stem."""
    import ssmzoo.models.groupmamba as gm
    from ssmzoo.ops.triton_conv import conv2d_igemm, conv2d_igemm_op

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 13, 10, generator=gen)
    w = torch.randn(8, 3, 7, 7, generator=gen) / 7
    out = {}
    torch.library.opcheck(conv2d_igemm_op, (x, w, None, 2, 3))
    x_cl = torch.randn(1, 16, 6, 7, generator=gen).contiguous(memory_format=torch.channels_last)
    torch.library.opcheck(conv2d_igemm_op, (x_cl, torch.randn(8, 16, 3, 3, generator=gen), torch.randn(8, generator=gen),
                                            1, 1, torch.rand(8, generator=gen), True))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out["autocast_dtype"] = str(conv2d_igemm(x, w, None, 2, 3).dtype)
    stem = gm.Stem(3, 16, 32).eval()
    with torch.no_grad():
        for m in stem.modules():  # BatchNorm statistics away from the identity
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
        plain, H, W = stem(x)
        gm._stem_on_igemm = lambda x, stem: True
        fused, H2, W2 = stem(x)
    out["stem_shape_ok"] = (H, W) == (H2, W2) and plain.shape == fused.shape
    out["stem_err"] = ((fused - plain).norm() / plain.norm()).item()
    return out


# ---------------------------------------------------------------------------------------------
# Interpreter (every machine)
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def interpreted() -> dict:
    return {"cases": run_interpreted(__file__, "--interpret"), "operator": run_interpreted(__file__, "--operator")}


@pytest.mark.parametrize("index", range(len(INTERP_CASES)), ids=[case_id(c) for c in INTERP_CASES])
def test_interpreted_kernel_matches_reference(interpreted, index):
    _check(interpreted["cases"][index], INTERP_CASES[index])


def test_operator_follows_autocast_and_the_stem_wiring_matches(interpreted):
    r = interpreted["operator"]
    assert "error" not in r, r.get("error")
    assert r["autocast_dtype"] == "torch.bfloat16"
    assert r["stem_shape_ok"] and r["stem_err"] < 1e-5, r


def test_config_and_argument_checks():
    from ssmzoo.ops.triton_conv import conv2d_igemm_triton, igemm_config

    cfg = igemm_config(32, 147)
    assert cfg["BLOCK_N"] == 32 and cfg["K_PAD"] % cfg["BLOCK_K"] == 0 and cfg["K_PAD"] >= 147
    assert igemm_config(20, 9)["BLOCK_N"] == 32 and igemm_config(300, 9)["BLOCK_N"] == 128
    with pytest.raises(ValueError, match="BLOCK_K"):
        igemm_config(32, 147, dict(BLOCK_K=8))
    with pytest.raises(ValueError, match="weight"):
        conv2d_igemm_triton(torch.zeros(1, 3, 8, 8), torch.zeros(4, 2, 3, 3))
    with pytest.raises(ValueError, match="float32, float16 or bfloat16"):
        conv2d_igemm_triton(torch.zeros(1, 3, 8, 8, dtype=torch.float64), torch.zeros(4, 3, 3, 3))
    with pytest.raises(ValueError, match="weight is on meta; expected x's device cpu"):  # (meta: another device)
        conv2d_igemm_triton(torch.zeros(1, 3, 8, 8), torch.zeros(4, 3, 3, 3, device="meta"))


def test_cpu_tensors_need_the_interpreter(monkeypatch):
    from ssmzoo.ops.triton_conv import conv2d_igemm_triton

    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="CUDA"):
        conv2d_igemm_triton(torch.zeros(1, 3, 8, 8), torch.zeros(4, 3, 3, 3))


# ---------------------------------------------------------------------------------------------
# GPU (full size)
# ---------------------------------------------------------------------------------------------

GPU_CASES = [
    case(16, 3, 224, 224, 32, dtype="bfloat16"),                  # GroupMamba-T's stem conv
    case(16, 3, 224, 224, 64, dtype="bfloat16", layout="cl"),     # -S / -B
    case(16, 32, 112, 112, 32, k=3, stride=1, padding=1, dtype="bfloat16", layout="cl", bn=True),  # T's middle convs
    case(16, 32, 112, 112, 64, k=3, stride=2, padding=1, dtype="bfloat16", layout="cl", bias=True),  # T's proj
    case(8, 64, 112, 112, 64, k=3, stride=1, padding=1, dtype="bfloat16", layout="cl", bn=True),   # -S / -B
    case(8, 64, 112, 112, 96, k=3, stride=2, padding=1, dtype="bfloat16", layout="cl", bias=True),  # -B's proj
    case(4, 32, 57, 43, 32, k=3, stride=1, padding=1, layout="cl", bn=True),                      # float32, odd map
    case(4, 3, 224, 224, 32),
    case(4, 3, 227, 201, 64, dtype="float16", bias=True),
    case(3, 3, 97, 131, 48, k=5, stride=2, padding=2, dtype="bfloat16", layout="sliced"),
]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("c", GPU_CASES, ids=[case_id(c) for c in GPU_CASES])
def test_gpu_kernel_matches_reference(c, no_tf32):
    result = run_case(c, "cuda", torch.randint(0, 2**31 - 1, ()).item())
    print(f"{case_id(c)}: max |d| {result.get('max_d', float('nan')):.3g}, rel err vs float64 "
          f"{result.get('err64', float('nan')):.3g}")  # shown with pytest -s: the record of a device run
    _check(result, c)


if __name__ == "__main__" and sys.argv[1:2] == ["--interpret"]:
    print(run_cases(run_case, INTERP_CASES, int(sys.argv[2])))
elif __name__ == "__main__" and sys.argv[1:2] == ["--operator"]:
    print(json.dumps(checked(_check_operator_and_stem, int(sys.argv[2]))))
