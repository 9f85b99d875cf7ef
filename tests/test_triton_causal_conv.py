"""The causal depthwise conv1d + SiLU kernel (``ssmzoo.ops.triton_causal_conv``; VideoMamba's mixer).

On every machine the kernel runs under the Triton interpreter (``TRITON_INTERPRET=1``, CPU tensors,
small odd shapes) in one subprocess, which also checks the custom operator (opcheck, autocast casts)
and the VideoMamba mixer's scan operands computed with it; on a CUDA machine the model's full-size
shapes run compiled (marked ``gpu``).

Two measures per case, on fresh random inputs:
- against ``causal_conv1d_silu_ref`` (same rounding points, float32 accumulation): float32
  |d| <= 1e-5 + 1e-5 |ref|; float16/bfloat16 |d| <= 2 eps max(|ref|, |conv|) + 1e-2 eps, conv the
  value before the SiLU (a one-ulp difference in the rounded conv moves the SiLU by up to ~1.1 of it,
  however small the SiLU's output).
- ||out - ref64|| / ||ref64||, ref64 the float64 conv + SiLU of the same (rounded) values, no
  intermediate rounding: float32 1e-6, float16 2e-3, bfloat16 1e-2.
"""

from __future__ import annotations

import json
import sys

import pytest
import torch
import torch.nn.functional as F

from interpreter import checked, run_cases, run_interpreted

pytest.importorskip("triton")

EPS = {"float32": 0.0, "float16": 2.0 ** -10, "bfloat16": 2.0 ** -7}
TOL64 = {"float32": 1e-6, "float16": 2e-3, "bfloat16": 1e-2}


def case(batch, D, L, k=4, reverse=False, dtype="float32", layout="tokens", bias=True, config=None):
    """layout: "tokens" the first half of a token-major (batch, L, 2 D) tensor viewed as (batch, D, L)
    (the mixer's x), "cf" contiguous (batch, D, L), "odd" channels 1..D of a (batch, L, 2 D + 1)
    tensor (no vector alignment)."""
    return dict(batch=batch, D=D, L=L, k=k, reverse=reverse, dtype=dtype, layout=layout, bias=bias,
                config=config)


def case_id(c: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in c.items() if k != "config" and v is not None) + (
        f"-cfg={c['config']}" if c.get("config") else "")


INTERP_CASES = [
    case(2, 40, 37, config=dict(BL=8, BD=32)),                           # two channel blocks, odd L
    case(2, 40, 37, reverse=True, config=dict(BL=8, BD=32)),
    case(1, 6, 1, reverse=True),                                         # one token
    case(3, 5, 2, k=3, dtype="bfloat16", layout="cf"),                   # L shorter than the kernel
    case(2, 48, 7, reverse=True, dtype="bfloat16", bias=False),
    case(1, 24, 19, reverse=True, dtype="float16", layout="odd", config=dict(BL=4)),
    case(2, 17, 33, k=2, layout="odd"),
]


def _inputs(c: dict, device: str, seed: int):
    gen = torch.Generator().manual_seed(seed)
    b, D, L = c["batch"], c["D"], c["L"]
    if c["layout"] == "tokens":
        x = torch.randn(b, L, 2 * D, generator=gen).transpose(1, 2)[:, :D]
    elif c["layout"] == "cf":
        x = torch.randn(b, D, L, generator=gen)
    else:
        x = torch.randn(b, L, 2 * D + 1, generator=gen).transpose(1, 2)[:, 1:D + 1]
    w = torch.randn(D, 1, c["k"], generator=gen) / c["k"] ** 0.5
    bias = torch.randn(D, generator=gen) * 0.5 if c["bias"] else None
    dtype = getattr(torch, c["dtype"])
    return (x.to(device=device, dtype=dtype), w.to(device=device, dtype=dtype),
            None if bias is None else bias.to(device=device, dtype=dtype))


def run_case(c: dict, device: str, seed: int) -> dict:
    from ssmzoo.ops.triton_causal_conv import causal_conv1d_silu_ref, causal_conv1d_silu_triton

    x, w, b = _inputs(c, device, seed)
    y = causal_conv1d_silu_triton(x, w, b, c["reverse"], config=c["config"])
    ref = causal_conv1d_silu_ref(x, w, b, c["reverse"]).double()
    xs = x.double().flip(-1) if c["reverse"] else x.double()
    L = x.shape[-1]
    conv64 = F.conv1d(xs, w.double(), None if b is None else b.double(), padding=c["k"] - 1, groups=c["D"])[..., :L]
    ref64 = F.silu(conv64)
    eps = EPS[c["dtype"]]
    d = (y.double() - ref).abs()
    bound = (1e-5 + 1e-5 * ref.abs()) if eps == 0.0 else (2 * eps * torch.maximum(ref.abs(), conv64.abs()) + 1e-2 * eps)
    return dict(shape=list(y.shape), ref_shape=list(ref64.shape), tokens_major=y.transpose(1, 2).is_contiguous(),
                dtype_ok=y.dtype == x.dtype, nan=bool(torch.isnan(y).any()), within=bool((d <= bound).all()),
                max_d=d.max().item(), err64=((y.double() - ref64).norm() / ref64.norm()).item())


def _check(r: dict, c: dict) -> None:
    assert "error" not in r, r.get("error")
    assert r["shape"] == r["ref_shape"] and r["tokens_major"] and r["dtype_ok"], r
    assert not r["nan"], f"NaN outputs: {case_id(c)}"
    assert r["within"], f"max |d| {r['max_d']:.3g} against the same-rounding reference: {case_id(c)}"
    assert r["err64"] < TOL64[c["dtype"]], f"rel err {r['err64']:.3g} against float64: {case_id(c)}"


def _check_operator_and_mixer(seed: int) -> dict:
    """The subprocess side: opcheck of the operator, autocast casts, and VideoMamba's mixer computing
    both directions' scan operands with the kernel against F.conv1d + F.silu."""
    import ssmzoo.models.videomamba as vm
    from ssmzoo.ops.triton_causal_conv import causal_conv1d_silu, causal_conv1d_silu_op

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 11, 16, generator=gen).transpose(1, 2)
    w = torch.randn(16, 1, 4, generator=gen)
    out = {}
    for reverse in (False, True):
        torch.library.opcheck(causal_conv1d_silu_op, (x, w, None, reverse))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out["autocast_dtype"] = str(causal_conv1d_silu(x, w, None).dtype)
    torch.manual_seed(seed)
    mixer = vm.BiMambaMixer(24, d_state=8, d_conv=4, expand=2).eval()
    with torch.no_grad():
        xm = mixer.in_proj(torch.randn(2, 37, 24, generator=gen)).transpose(1, 2).chunk(2, dim=1)[0]
        errs = []
        for suffix in ("", "_b"):
            plain = mixer._scan_inputs(xm, suffix, tokens_major=False)
            fused = mixer._scan_inputs(xm, suffix, tokens_major=True, fused_conv=True)
            for name in ("u", "delta", "B", "C"):
                errs.append(((fused[name] - plain[name]).norm() / plain[name].norm()).item())
            out["u_tokens_major"] = fused["u"].transpose(1, 2).is_contiguous()
    out["mixer_err"] = max(errs)
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


def test_operator_follows_autocast_and_the_mixer_gets_the_same_scan_operands(interpreted):
    r = interpreted["operator"]
    assert "error" not in r, r.get("error")
    assert r["autocast_dtype"] == "torch.bfloat16"
    assert r["u_tokens_major"] and r["mixer_err"] < 1e-5, r


def test_reference_reverse_is_the_conv_of_the_flipped_sequence():
    """The reference's own contract (what the kernel is held to): reverse = conv1d of x.flip(-1)."""
    from ssmzoo.ops.triton_causal_conv import causal_conv1d_silu_ref

    conv = torch.nn.Conv1d(6, 6, 4, groups=6, padding=3).double()
    x = torch.randn(2, 6, 9, dtype=torch.float64)
    with torch.no_grad():
        expected = F.silu(conv(x.flip(-1))[..., :9])
        got = causal_conv1d_silu_ref(x, conv.weight, conv.bias, reverse=True)
    assert torch.allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert got.transpose(1, 2).is_contiguous()


def test_config_and_argument_checks():
    from ssmzoo.ops.triton_causal_conv import causal_conv1d_silu_triton, causal_conv_config

    assert causal_conv_config(768)["BD"] == 128 and causal_conv_config(40)["BD"] == 64
    with pytest.raises(ValueError, match="BL"):
        causal_conv_config(64, dict(BL=24))
    with pytest.raises(ValueError, match="depthwise"):
        causal_conv1d_silu_triton(torch.zeros(1, 8, 5), torch.zeros(8, 2, 4))
    with pytest.raises(ValueError, match=r"\(batch, dim, L\)"):
        causal_conv1d_silu_triton(torch.zeros(8, 5), torch.zeros(8, 1, 4))
    with pytest.raises(ValueError, match="float32, float16 or bfloat16"):
        causal_conv1d_silu_triton(torch.zeros(1, 8, 5, dtype=torch.float64), torch.zeros(8, 1, 4))
    with pytest.raises(ValueError, match="bias is on meta; expected x's device cpu"):  # (meta: another device)
        causal_conv1d_silu_triton(torch.zeros(1, 8, 5), torch.zeros(8, 1, 4), torch.zeros(8, device="meta"))


def test_cpu_tensors_need_the_interpreter(monkeypatch):
    from ssmzoo.ops.triton_causal_conv import causal_conv1d_silu_triton

    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="CUDA"):
        causal_conv1d_silu_triton(torch.zeros(1, 8, 5), torch.zeros(8, 1, 4))


# ---------------------------------------------------------------------------------------------
# GPU (full size)
# ---------------------------------------------------------------------------------------------

GPU_CASES = [
    case(2, 768, 3137, dtype="bfloat16"),                 # VideoMamba-S 16 frames, forward direction
    case(2, 768, 3137, reverse=True, dtype="bfloat16"),   # ... backward
    case(16, 768, 197, reverse=True),                     # VideoMamba-S image, float32
    case(3, 100, 1001, dtype="float16", layout="odd"),
    case(4, 384, 197, reverse=True, dtype="bfloat16", layout="cf"),
]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("c", GPU_CASES, ids=[case_id(c) for c in GPU_CASES])
def test_gpu_kernel_matches_reference(c):
    _check(run_case(c, "cuda", torch.randint(0, 2**31 - 1, ()).item()), c)


if __name__ == "__main__" and sys.argv[1:2] == ["--interpret"]:
    print(run_cases(run_case, INTERP_CASES, int(sys.argv[2])))
elif __name__ == "__main__" and sys.argv[1:2] == ["--operator"]:
    print(json.dumps(checked(_check_operator_and_mixer, int(sys.argv[2]))))
