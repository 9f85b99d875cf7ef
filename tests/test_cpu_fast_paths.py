"""CPU inference fast paths: the in-place chunked scan and GroupMambaLayer's cached weight stack.

Both are taken only with autograd off (on CPU for the cache); each is checked against the path taken
with autograd on, which is the previous code, and against the float64 reference recurrence.
"""

from __future__ import annotations

import importlib

import pytest
import torch

from ssmzoo.models import groupmamba as gm
from ssmzoo.ops import selective_scan_chunked, selective_scan_ref

scan_module = importlib.import_module("ssmzoo.ops.selective_scan")


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


def _scan_inputs(batch: int, dim: int, length: int, n_state: int, scale: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    return dict(u=torch.randn(batch, dim, length, generator=g),
                delta=torch.randn(batch, dim, length, generator=g) * scale,
                A=-torch.rand(dim, n_state, generator=g) - 0.5,
                B=torch.randn(batch, n_state, length, generator=g),
                C=torch.randn(batch, n_state, length, generator=g),
                D=torch.randn(dim, generator=g), delta_bias=torch.randn(dim, generator=g) * 0.1,
                delta_softplus=True)


@pytest.mark.parametrize("batch,dim,length,n_state,scale", [
    (1, 12, 3136, 1, 0.5), (2, 7, 97, 2, 3.0), (3, 5, 1, 1, 1.0), (2, 9, 301, 1, 30.0), (1, 6, 1000, 2, 0.01),
])
def test_inplace_scan_matches_reference_and_autograd_path(batch, dim, length, n_state, scale) -> None:
    args = _scan_inputs(batch, dim, length, n_state, scale, seed=length + dim)
    expected = selective_scan_ref(**args)
    with torch.no_grad():
        fast = selective_scan_chunked(**args)
    graph_args = {k: (v.clone().requires_grad_() if k == "u" else v) for k, v in args.items()}
    with torch.enable_grad():
        graph = selective_scan_chunked(**graph_args)
    assert graph.requires_grad and not fast.requires_grad
    assert rel_err(fast, expected) <= 1e-6
    assert rel_err(fast, graph.detach()) <= 1e-6


@pytest.mark.parametrize("max_chunk,budget", [(7, 1 << 22), (5, 60), (64, 1), (1, 1 << 22)])
def test_inplace_scan_chunks_and_blocks(max_chunk: int, budget: int) -> None:
    # several chunks per block and several blocks (odd sizes, padded last chunk), state carried over
    batch, dim, length = 2, 6, 131
    args = _scan_inputs(batch, dim, length, 1, 1.0, seed=max_chunk)
    uu, dt, AA, BB, CC = scan_module._prepare(args["u"], args["delta"], args["A"], args["B"], args["C"],
                                             args["delta_bias"], True, torch.float32)
    with torch.no_grad():
        y = scan_module._scan_factorized(uu, dt, AA, BB, CC, max_chunk=max_chunk, budget=budget)
    expected = selective_scan_ref(args["u"], args["delta"], args["A"], args["B"], args["C"],
                                  delta_bias=args["delta_bias"], delta_softplus=True)
    assert rel_err(y.reshape(batch, dim, length), expected) <= 1e-6


def _random_layer(channels: int, seed: int) -> gm.GroupMambaLayer:
    torch.manual_seed(seed)
    layer = gm.GroupMambaLayer(channels, channels).eval()
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (0.5 if p.ndim == 1 else 0.0))
    return layer


@pytest.mark.parametrize("channels,height,width", [(64, 5, 7), (348, 3, 2)])
def test_cached_group_weights_follow_parameter_changes(channels: int, height: int, width: int,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # bitwise comparisons with the autograd path: the output projection as F.linear on both
    # (its oneDNN path sums in another order; tests/test_cpu_onednn.py checks it)
    monkeypatch.setattr("ssmzoo.ops.cpu_onednn.ONEDNN_FUSED", False)
    layer = _random_layer(channels, seed=channels)
    x = torch.randn(2, height * width, channels)

    def uncached() -> torch.Tensor:
        with torch.enable_grad():  # autograd on: the stack is rebuilt, as before the cache existed
            return layer(x, height, width).detach()

    with torch.inference_mode():
        first = layer(x, height, width)
        again = layer(x, height, width)
    assert torch.equal(first, again)
    assert torch.equal(first, uncached())

    # a state dict load (in-place copies) must be seen
    other = _random_layer(channels, seed=channels + 1)
    layer.load_state_dict(other.state_dict())
    with torch.no_grad():
        loaded = layer(x, height, width)
    assert not torch.equal(loaded, first)
    assert torch.equal(loaded, uncached())

    # so must an in-place update of a single weight, and a replaced parameter
    with torch.no_grad():
        layer.mamba_g3.A_logs.add_(0.25)
        updated = layer(x, height, width)
    assert torch.equal(updated, uncached())
    layer.mamba_g2.out_proj.weight = torch.nn.Parameter(torch.randn_like(layer.mamba_g2.out_proj.weight))
    with torch.no_grad():
        replaced = layer(x, height, width)
    assert not torch.equal(replaced, updated)
    assert torch.equal(replaced, uncached())

    # and a replaced submodule
    norm = layer.mamba_g4.out_norm
    layer.mamba_g4.out_norm = torch.nn.LayerNorm(norm.normalized_shape, eps=norm.eps)
    with torch.no_grad():
        layer.mamba_g4.out_norm.weight.normal_()
        swapped = layer(x, height, width)
    assert not torch.equal(swapped, replaced)
    assert torch.equal(swapped, uncached())
