"""``exp2_fma`` (2^x on the FMA pipe) and ``softplus_poly`` (log(1 + e^x) with a polynomial log1p), from
ssmzoo/ops/triton_math.py, against float64, under the Triton interpreter on every machine (and compiled
on a CUDA one): the bidirectional scan computes part of its decays with the first, GroupMamba's scans
their step sizes with the second, so their errors must stay at MUFU ex2.approx's level (~2 ulp)."""

from __future__ import annotations

import sys

import pytest
import torch

from interpreter import run_interpreted

triton = pytest.importorskip("triton")
tl = triton.language

from ssmzoo.ops.triton_math import exp2_fma, softplus_poly  # noqa: E402  (after the skip: needs Triton)


@triton.jit
def _elementwise_kernel(x_ptr, y_ptr, n, FN: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(y_ptr + offs, FN(tl.load(x_ptr + offs, mask=mask, other=0.0)), mask=mask)


def _apply(fn, x: torch.Tensor) -> torch.Tensor:
    """fn (a ``triton_math`` function) on every element of x, in a Triton kernel."""
    y = torch.empty_like(x)
    _elementwise_kernel[(triton.cdiv(x.numel(), 1024),)](x, y, x.numel(), FN=fn, BLOCK=1024)
    return y


def _exp2_fma_errors(device: str, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    edges = torch.tensor([0.0, -0.0, -0.5, -0.5000001, -1.5, -2.5, -1e-7, -123.999, -124.0])
    x = torch.cat([-torch.rand(50_000, generator=gen) * 124, -torch.rand(5_000, generator=gen) * 1e-3, edges])
    tiny = torch.tensor([-124.5, -125.0, -126.0, -149.0, -200.0, -1e30, float("-inf")])
    x = torch.cat([x, tiny]).to(device)
    y = _apply(exp2_fma, x)
    ref = torch.exp2(x.double())
    normal = x >= -124
    rel = ((y.double() - ref).abs() / ref)[normal]
    return dict(max_rel=rel.max().item(), tiny_max=y[~normal].max().item(), tiny_min=y[~normal].min().item(),
                finite=bool(torch.isfinite(y).all()))


def _softplus_errors(device: str, seed: int) -> dict:
    """Relative error against float64 on inputs the scans see (delta + bias: mostly -10..5) and far out:
    large negative inputs (tiny results), large positive ones (softplus(x) = x), both signs of 0."""
    gen = torch.Generator().manual_seed(seed)
    edges = torch.tensor([0.0, -0.0, 1e-8, -1e-8, 20.0, 20.5, -20.0, 87.0, -87.0, 1e30, -1e30, -103.0])
    x = torch.cat([torch.randn(50_000, generator=gen) * 4 - 3, (torch.rand(20_000, generator=gen) - 0.5) * 200,
                   edges]).to(device)
    y = _apply(softplus_poly, x)
    ref = torch.nn.functional.softplus(x.double(), threshold=1e9)
    normal = ref > 1e-37     # results above float32's normal range (below it the exponential flushes)
    rel = ((y.double() - ref).abs() / ref)[normal]
    # e^-|x| is 2^x of the float32 product -|x| log2(e), rounded: a relative error of up to ~|x| 2^-24 ln 2
    # (x 1.5 with log2(e)'s own rounding) that any tl.exp has compiled (3.6e-6 at |x| near 100 in the
    # first GPU run, session 25), and since session 30 (tl.exp2 of that product) interpreted too; the
    # excess over it is what the polynomial and the exponential itself add.
    excess = rel - x.double().abs()[normal] * 2.0 ** -23
    return dict(max_rel=rel.max().item(), max_excess=excess.max().item(), finite=bool(torch.isfinite(y).all()),
                nonneg=bool((y >= 0).all()), big_is_x=bool((y[x > 20] == x[x > 20]).all()))


def _check_softplus(r: dict, compiled: bool) -> None:
    assert r["finite"] and r["nonneg"], r
    assert r["big_is_x"], r  # softplus(x) = x in float32 for x > 20
    if compiled:  # beyond the exponential's argument rounding: Horner (2.5e-7) and ex2.approx (~2 ulp)
        assert r["max_excess"] < 6e-7, r
    else:         # the interpreter's exp2 is exact to an ulp: Horner's rounding alone
        assert r["max_excess"] < 3.5e-7, r


def test_interpreted_softplus_poly_matches_float64():
    _check_softplus(run_interpreted(__file__, "--interpret-softplus"), compiled=False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_softplus_poly_matches_float64():
    _check_softplus(_softplus_errors("cuda", torch.randint(0, 2**31 - 1, ()).item()), compiled=True)


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


if __name__ == "__main__" and sys.argv[1:2] in (["--interpret"], ["--interpret-softplus"]):
    import json

    errors = _exp2_fma_errors if sys.argv[1] == "--interpret" else _softplus_errors
    print(json.dumps(errors("cpu", int(sys.argv[2]))))
