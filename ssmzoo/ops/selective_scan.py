"""Selective scan (Mamba's S6 recurrence): references and the dispatcher.

Every implementation shares one signature, the one of ``mamba_ssm``'s ``selective_scan_fn``::

    y = selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False)

    u, delta : (batch, dim, L)
    A        : (dim, N)
    B, C     : (batch, N, L) or (batch, G, N, L); group g serves channels [g*dim/G, (g+1)*dim/G)
    D        : (dim,) skip connection, optional
    z        : (batch, dim, L) gate, optional: y *= silu(z)
    delta_bias : (dim,), added to delta before the optional softplus

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t ;  y_t = <C_t, h_t> + D * u_t

The result has u's dtype; every implementation accumulates in float32 (float64 for the reference
recurrence, which exists to be the ground truth of the tests).
"""

from __future__ import annotations

import os
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "selective_scan",
    "selective_scan_ref",
    "selective_scan_chunked",
    "scan_backend",
    "available_backends",
]


def _prepare(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
             delta_bias: Optional[Tensor], delta_softplus: bool, dtype: torch.dtype):
    """Upcast, apply bias/softplus and split channels into B/C groups: (batch, G, dim/G, L)."""
    batch, dim, length = u.shape
    if B.dim() == 3:
        B = B.unsqueeze(1)
    if C.dim() == 3:
        C = C.unsqueeze(1)
    groups = B.shape[1]
    if dim % groups:
        raise ValueError(f"dim {dim} is not divisible by the {groups} groups of B/C")
    u = u.to(dtype)
    delta = delta.to(dtype)
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    per_group = dim // groups
    u = u.view(batch, groups, per_group, length)
    delta = delta.view(batch, groups, per_group, length)
    A = A.to(dtype).view(groups, per_group, -1)
    return u, delta, A, B.to(dtype), C.to(dtype)


def _finish(y: Tensor, u: Tensor, D: Optional[Tensor], z: Optional[Tensor], out_dtype: torch.dtype) -> Tensor:
    if D is not None:
        y = y + u * D.to(y.dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y.to(out_dtype)


def selective_scan_ref(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                       D: Optional[Tensor] = None, z: Optional[Tensor] = None,
                       delta_bias: Optional[Tensor] = None, delta_softplus: bool = False) -> Tensor:
    """The recurrence step by step in float64: slow, obviously right, the ground truth for tests."""
    batch, dim, length = u.shape
    uu, dt, AA, BB, CC = _prepare(u, delta, A, B, C, delta_bias, delta_softplus, torch.float64)
    state = uu.new_zeros(*uu.shape[:3], AA.shape[-1])  # (batch, G, dim/G, N)
    ys = []
    for t in range(length):
        decay = torch.exp(dt[..., t, None] * AA)
        state = decay * state + (dt[..., t] * uu[..., t])[..., None] * BB[:, :, None, :, t]
        ys.append((state * CC[:, :, None, :, t]).sum(-1))
    y = torch.stack(ys, dim=-1).reshape(batch, dim, length)
    return _finish(y, u.to(torch.float64), D, z, u.dtype)


def _default_chunk(n_state: int) -> int:
    # The intra-chunk matrix holds chunk*chunk*N values per channel: keep it near 16K.
    return 64 if n_state <= 2 else (32 if n_state <= 8 else 16)


def selective_scan_chunked(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                           D: Optional[Tensor] = None, z: Optional[Tensor] = None,
                           delta_bias: Optional[Tensor] = None, delta_softplus: bool = False,
                           chunk: Optional[int] = None) -> Tensor:
    """The CPU path, float32.

    Narrow states (N <= 2, GroupMamba's N = 1): chunked parallel form. Inside a chunk every output is
    a decayed sum over earlier inputs, computed at once from the cumulative log-decay (differences of
    it are always <= 0 when A <= 0, so nothing overflows); only the state crosses chunk boundaries, so
    the Python loop runs L/chunk times, not L. Wide states (VideoMamba's N = 16) would pay N*chunk
    times the work that way, so they step through positions with block-wise precomputed terms
    (``_scan_stepwise``). ``benchmarks/scan_cpu.py`` measures both against a plain loop.
    """
    batch, dim, length = u.shape
    n_state = A.shape[-1]
    uu, dt, AA, BB, CC = _prepare(u, delta, A, B, C, delta_bias, delta_softplus, torch.float32)
    if n_state > 2:
        y = _scan_stepwise(uu, dt, AA, BB, CC).reshape(batch, dim, length)
        return _finish(y, u.float(), D, z, u.dtype)
    chunk = chunk or _default_chunk(n_state)
    groups, per_group = uu.shape[1], uu.shape[2]
    state = uu.new_zeros(batch, groups, per_group, n_state)
    y = uu.new_empty(batch, groups, per_group, length)
    causal = torch.ones(chunk, chunk, dtype=torch.bool, device=u.device).tril()
    for start in range(0, length, chunk):
        stop = min(start + chunk, length)
        size = stop - start
        dt_c = dt[..., start:stop]                                   # (b, g, p, T)
        log_decay = dt_c[..., None] * AA[:, :, None, :]              # (b, g, p, T, N)
        cum = log_decay.cumsum(dim=-2)
        B_c = BB[..., start:stop].transpose(-1, -2)[:, :, None]      # (b, g, 1, T, N)
        C_c = CC[..., start:stop].transpose(-1, -2)[:, :, None]      # (b, g, 1, T, N)
        inputs = (dt_c * uu[..., start:stop])[..., None] * B_c       # (b, g, p, T, N)
        # weights[t, s] = exp(cum_t - cum_s) for s <= t, else 0
        diff = cum[..., :, None, :] - cum[..., None, :, :]           # (b, g, p, T, T, N)
        mask = causal[:size, :size, None]
        weights = torch.exp(diff.masked_fill(~mask, float("-inf")))
        states = (weights * inputs[..., None, :, :]).sum(-2) + torch.exp(cum) * state[..., None, :]
        y[..., start:stop] = (states * C_c).sum(-1)
        state = states[..., -1, :]
    y = y.reshape(batch, dim, length)
    return _finish(y, u.float(), D, z, u.dtype)


def _scan_stepwise(uu: Tensor, dt: Tensor, AA: Tensor, BB: Tensor, CC: Tensor, block: int = 256) -> Tensor:
    """Wide states (N > 2): the intra-chunk matrix would cost N*chunk times the work, so step through
    positions instead, with the exponentials and inputs of a block of positions computed at once."""
    batch, groups, per_group, length = uu.shape
    state = uu.new_zeros(batch, groups, per_group, AA.shape[-1])
    y = uu.new_empty(batch, groups, per_group, length)
    for start in range(0, length, block):
        stop = min(start + block, length)
        dt_c = dt[..., start:stop, None]                                        # (b, g, p, T, 1)
        decay = torch.exp(dt_c * AA[:, :, None, :])                             # (b, g, p, T, N)
        inputs = (dt_c * uu[..., start:stop, None]) * BB[..., start:stop].transpose(-1, -2)[:, :, None]
        states = torch.empty_like(decay)
        for t in range(stop - start):
            state = torch.addcmul(inputs[..., t, :], decay[..., t, :], state)
            states[..., t, :] = state
        y[..., start:stop] = torch.einsum("bgptn,bgnt->bgpt", states, CC[..., start:stop])
    return y


ScanFn = Callable[..., Tensor]
_BACKENDS: dict[str, ScanFn] = {"torch": selective_scan_chunked}


def register_backend(name: str, fn: ScanFn) -> None:
    """Lets the GPU kernels (``ssmzoo.ops.triton_scan``) slot in without this module importing them."""
    _BACKENDS[name] = fn


def _triton_ready() -> bool:
    try:
        from . import triton_scan  # noqa: F401  (registers the "triton" backend on import)
    except Exception:
        return False
    return "triton" in _BACKENDS and torch.cuda.is_available()


def available_backends() -> list[str]:
    _triton_ready()
    return sorted(_BACKENDS)


def scan_backend(device: torch.device | str | None = None) -> str:
    """Which backend runs on ``device``: ``SSMZOO_SCAN`` wins, else Triton on CUDA when importable."""
    forced = os.environ.get("SSMZOO_SCAN", "").strip().lower()
    if forced:
        if forced == "triton" and not _triton_ready():
            raise RuntimeError("SSMZOO_SCAN=triton but Triton or a CUDA device is not available")
        if forced not in _BACKENDS and forced != "triton":
            raise ValueError(f"SSMZOO_SCAN={forced!r}: expected one of torch, triton")
        return forced
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda" and _triton_ready():
        return "triton"
    return "torch"


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                   D: Optional[Tensor] = None, z: Optional[Tensor] = None,
                   delta_bias: Optional[Tensor] = None, delta_softplus: bool = False) -> Tensor:
    """Runs the selective scan on the backend that suits ``u``'s device (see ``scan_backend``)."""
    fn = _BACKENDS[scan_backend(u.device)]
    return fn(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)
