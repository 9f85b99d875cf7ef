"""The token mean kernel (``ssmzoo.ops.triton_token_mean``; GroupMamba's gate input).

On every machine the kernel runs under the Triton interpreter (``TRITON_INTERPRET=1``, CPU tensors,
odd token counts and channel counts, sliced rows as the models hand them over) in one subprocess,
which also checks the custom operator (opcheck); on a CUDA machine the models' shapes run compiled
(marked ``gpu``). Outputs are compared with the float64 mean of the same values: float32
accumulation of up to 3,136 tokens stays within 1e-5 relative (|d| <= 1e-5 (|ref| + mean |x|)).
"""

from __future__ import annotations

import json
import sys

import pytest
import torch

from interpreter import checked, run_cases, run_interpreted

pytest.importorskip("triton")


def case(batch, L, C, dtype="float32", row=None, config=None):
    """row: the row stride, wider than C (a slice of a wider buffer, as stage 3's 348 of 352)."""
    return dict(batch=batch, L=L, C=C, dtype=dtype, row=row, config=config)


def case_id(c: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in c.items() if v is not None)


INTERP_CASES = [
    case(2, 7, 20),
    case(1, 197, 87, dtype="bfloat16", row=96),            # L not a multiple of BL, C of BC, sliced rows
    case(3, 1, 16, dtype="float16"),                       # one token (the class-token network)
    case(1, 130, 70, config=dict(BL=16, BC=32, num_warps=1)),  # several channel blocks, L loop
]


def run_case(c: dict, device: str, seed: int) -> dict:
    from ssmzoo.ops.triton_token_mean import token_mean_triton

    gen = torch.Generator().manual_seed(seed)
    wide = torch.randn(c["batch"], c["L"], c["row"] or c["C"], generator=gen) + 0.5
    x = wide[..., :c["C"]].to(device=device, dtype=getattr(torch, c["dtype"]))
    y = token_mean_triton(x, config=c["config"])
    ref = x.double().mean(dim=1)
    d = (y.double() - ref).abs()
    scale = ref.abs() + x.double().abs().mean(dim=1)
    return dict(shape_ok=tuple(y.shape) == (c["batch"], c["C"]), dtype_ok=y.dtype == torch.float32,
                within=bool((d <= 1e-5 * scale).all()), max_rel=(d / scale).max().item())


def _check(r: dict, c: dict) -> None:
    assert "error" not in r, r.get("error")
    assert r["shape_ok"] and r["dtype_ok"], r
    assert r["within"], f"max rel err {r['max_rel']:.3g}: {case_id(c)}"


def _check_operator(seed: int) -> dict:
    from ssmzoo.ops.triton_token_mean import token_mean_op

    gen = torch.Generator().manual_seed(seed)
    torch.library.opcheck(token_mean_op, (torch.randn(2, 9, 40, generator=gen)[..., :36],))
    torch.library.opcheck(token_mean_op, (torch.randn(2, 5, 9, generator=gen).transpose(1, 2),))  # strided channels
    return {"ok": True}


@pytest.fixture(scope="module")
def interpreted() -> dict:
    return {"cases": run_interpreted(__file__, "--interpret"), "operator": run_interpreted(__file__, "--operator")}


@pytest.mark.parametrize("index", range(len(INTERP_CASES)), ids=[case_id(c) for c in INTERP_CASES])
def test_interpreted_kernel_matches_float64_mean(interpreted, index):
    _check(interpreted["cases"][index], INTERP_CASES[index])


def test_operator_passes_opcheck(interpreted):
    assert interpreted["operator"] == {"ok": True}, interpreted["operator"]


def test_groupmamba_takes_torch_mean_on_cpu():
    import ssmzoo.models.groupmamba as gm

    x = torch.randn(2, 5, 3, dtype=torch.bfloat16)
    torch.testing.assert_close(gm._token_mean(x), x.mean(dim=1, dtype=torch.float32), rtol=0, atol=0)


def test_argument_checks(monkeypatch):
    from ssmzoo.ops.triton_token_mean import token_mean_triton

    with pytest.raises(ValueError, match="batch, tokens, channels"):
        token_mean_triton(torch.zeros(2, 3))
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="CUDA"):
        token_mean_triton(torch.zeros(1, 2, 3))


GPU_CASES = [
    case(128, 3136, 64, dtype="bfloat16"),              # GroupMamba-T stage 1
    case(128, 784, 128, dtype="bfloat16"),              # stage 2
    case(128, 196, 348, dtype="bfloat16", row=352),     # stage 3, sliced rows
    case(128, 49, 448, dtype="bfloat16"),               # stage 4
    case(8, 197, 87, row=96),                           # float32
]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("c", GPU_CASES, ids=[case_id(c) for c in GPU_CASES])
def test_gpu_kernel_matches_float64_mean(c):
    result = run_case(c, "cuda", torch.randint(0, 2**31 - 1, ()).item())
    print(f"{case_id(c)}: max rel err {result['max_rel']:.3g}")
    _check(result, c)


if __name__ == "__main__" and sys.argv[1:2] == ["--interpret"]:
    print(run_cases(run_case, INTERP_CASES, int(sys.argv[2])))
elif __name__ == "__main__" and sys.argv[1:2] == ["--operator"]:
    print(json.dumps(checked(_check_operator, int(sys.argv[2]))))
