"""``exp2_fma`` (2^x on the FMA pipe, ssmzoo/ops/triton_math.py) against float64 2^x, under the Triton
interpreter on every machine (and compiled on a CUDA one): the bidirectional scan computes part of its
decays with it, so its error must stay at MUFU ex2.approx's level (~2 ulp)."""

from __future__ import annotations

import sys

import pytest
import torch

from interpreter import run_interpreted

triton = pytest.importorskip("triton")
tl = triton.language

from ssmzoo.ops.triton_math import exp2_fma  # noqa: E402  (after the skip: needs Triton)


@triton.jit
def _exp2_fma_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(y_ptr + offs, exp2_fma(tl.load(x_ptr + offs, mask=mask, other=0.0)), mask=mask)


def _exp2_fma_errors(device: str, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    edges = torch.tensor([0.0, -0.0, -0.5, -0.5000001, -1.5, -2.5, -1e-7, -123.999, -124.0])
    x = torch.cat([-torch.rand(50_000, generator=gen) * 124, -torch.rand(5_000, generator=gen) * 1e-3, edges])
    tiny = torch.tensor([-124.5, -125.0, -126.0, -149.0, -200.0, -1e30, float("-inf")])
    x = torch.cat([x, tiny]).to(device)
    y = torch.empty_like(x)
    _exp2_fma_kernel[(triton.cdiv(x.numel(), 1024),)](x, y, x.numel(), BLOCK=1024)
    ref = torch.exp2(x.double())
    normal = x >= -124
    rel = ((y.double() - ref).abs() / ref)[normal]
    return dict(max_rel=rel.max().item(), tiny_max=y[~normal].max().item(), tiny_min=y[~normal].min().item(),
                finite=bool(torch.isfinite(y).all()))


def _check(r: dict) -> None:
    assert r["finite"]
    assert r["max_rel"] < 3e-7, r            # MUFU ex2.approx: ~2.4e-7
    assert 0.0 < r["tiny_min"] and r["tiny_max"] <= 2.0 ** -124, r   # clamped at 2^-125: no wrap-around


def test_interpreted_exp2_fma_matches_float64():
    _check(run_interpreted(__file__, "--interpret"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_exp2_fma_matches_float64():
    _check(_exp2_fma_errors("cuda", torch.randint(0, 2**31 - 1, ()).item()))


if __name__ == "__main__" and sys.argv[1:2] == ["--interpret"]:
    import json

    print(json.dumps(_exp2_fma_errors("cpu", int(sys.argv[2]))))
