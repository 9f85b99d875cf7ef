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
from typing import Callable, Container, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ssmzoo.errors import ScanBackendError

__all__ = [
    "selective_scan",
    "selective_scan_ref",
    "selective_scan_chunked",
    "scan_backend",
    "available_backends",
    "check_scan_args",
    "check_group_scan_args",
    "check_tensor_args",
]


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def check_tensor_args(name: str, names: Sequence[str], values: Sequence[object], optional: Container[str] = (),
                      device: Optional[torch.device] = None) -> torch.device:
    """Each of ``values`` (the arguments called ``names``) a floating-point ``torch.Tensor`` (or None
    where its name is in ``optional``), all on one device: ``device`` if given, else the first tensor's.
    Returns that device. A TypeError / ValueError names the argument, where a kernel would fail
    obscurely or compute on integer data; attributes only, so no device sync."""
    first = None
    for arg, value in zip(names, values):
        if not isinstance(value, Tensor):
            if value is None and arg in optional:
                continue
            raise TypeError(f"{name}: {arg} must be a torch.Tensor, got {type(value).__name__}")
        if not value.is_floating_point():
            raise TypeError(f"{name}: {arg} has dtype {value.dtype}; expected a floating-point dtype")
        if device is None:
            device, first = value.device, arg
        elif value.device != device:
            where = f"{first}'s device" if first else "the device"
            raise ValueError(f"{name}: {arg} is on {value.device}; expected {where} {device}")
    return device


_SCAN_ARGS = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def _scan_arg_names(suffix: str) -> tuple[tuple[str, ...], frozenset[str]]:
    """The scan's argument names with ``suffix`` appended, and those of the optional ones (D, z, delta_bias)."""
    names = tuple(arg + suffix for arg in _SCAN_ARGS)
    return names, frozenset(names[5:])


# built once for the suffixes in use (a plain dict: torch.compile traces it without a warning, unlike lru_cache)
_SCAN_ARG_NAMES = {suffix: _scan_arg_names(suffix) for suffix in ("", "_b")}


def check_scan_args(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor] = None,
                    z: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None, *,
                    name: str = "selective_scan", suffix: str = "") -> None:
    """Refuses arguments that do not fit the scan's signature (see the module docstring), naming the
    argument, its shape and the shape expected from ``u`` and ``A``: broadcasting would otherwise run a
    wrong-shaped B/C/D silently, and other mistakes fail deep inside a backend. Also refuses
    non-tensors, non-floating-point dtypes and tensors on another device than u (``check_tensor_args``).
    ``suffix`` is appended to every argument's name in the messages (``u_b``...: the bimamba scan's
    backward direction).

    Shapes, dtypes and devices only (no values, no device syncs): a few microseconds per call, and
    under torch.compile the comparisons become guards on the shapes."""
    s = suffix
    names, optional = _SCAN_ARG_NAMES[s] if s in _SCAN_ARG_NAMES else _scan_arg_names(s)
    check_tensor_args(name, names, (u, delta, A, B, C, D, z, delta_bias), optional)
    if u.dim() != 3:
        raise ValueError(f"{name}: u{s} has shape {_shape(u)}; expected 3 dimensions (batch, dim, L)")
    batch, dim, length = u.shape
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"{name}: A{s} has shape {_shape(A)}; expected ({dim}, N) = (dim, N) for u{s} of shape "
                         f"{_shape(u)}")
    n_state = A.shape[1]
    for arg, value in (("delta", delta), ("z", z)):
        if value is not None and value.shape != u.shape:
            raise ValueError(f"{name}: {arg}{s} has shape {_shape(value)}; expected u{s}'s shape {_shape(u)} "
                             "= (batch, dim, L)")
    for arg, value in (("D", D), ("delta_bias", delta_bias)):
        if value is not None and value.shape != (dim,):
            raise ValueError(f"{name}: {arg}{s} has shape {_shape(value)}; expected ({dim},) = (dim,)")
    groups = B.shape[1] if B.dim() == 4 else 1
    grouped, plain = (batch, groups, n_state, length), (batch, n_state, length)
    for arg, value in (("B", B), ("C", C)):
        if value.shape != grouped and (groups != 1 or value.shape != plain):
            if arg == "C" and groups != 1:  # C's groups are B's
                expected = (f"({batch}, {groups}, {n_state}, {length}) = (batch, G, N, L) with B{s}'s "
                            f"G = {groups}")
            else:
                expected = (f"({batch}, {n_state}, {length}) = (batch, N, L) or ({batch}, G, {n_state}, {length})"
                            " = (batch, G, N, L)")
            raise ValueError(f"{name}: {arg}{s} has shape {_shape(value)}; expected {expected}, from u{s} "
                             f"{_shape(u)} and A{s} {_shape(A)}")
    if groups == 0 or dim % groups:
        raise ValueError(f"{name}: B{s} and C{s} have {groups} groups (B{s}'s shape {_shape(B)}), which do not "
                         f"divide u{s}'s {dim} channels")


_GROUP_SCAN_ARGS = ("u", "delta", "A", "B", "C", "D", "delta_bias")


def check_group_scan_args(u: Tensor, delta: Optional[Tensor], A: Tensor, B: Optional[Tensor], C: Optional[Tensor],
                          D: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None, *,
                          name: str = "group_scan_4dir", operands_optional: bool = False) -> None:
    """``check_scan_args`` for GroupMamba's 4-direction scan (``ssmzoo.models.groupmamba.group_scan_4dir_torch``'s
    shapes): u, delta (batch, 4, d, H, W), A (4, d, N), B, C (batch, 4, N, H, W), D, delta_bias (4, d).
    ``operands_optional``: delta, B and C may be None (the fused scan computes them from x_proj).
    The kernels read A, D and delta_bias reshaped to (4 d, ...), so a wrong-shaped one of the same size
    would run silently; maps of another size would be read out of bounds."""
    optional = ("D", "delta_bias", "delta", "B", "C") if operands_optional else ("D", "delta_bias")
    check_tensor_args(name, _GROUP_SCAN_ARGS, (u, delta, A, B, C, D, delta_bias), optional)
    if u.dim() != 5 or u.shape[1] != 4:
        raise ValueError(f"{name}: u has shape {_shape(u)}; expected (batch, 4, d, H, W): 4 groups of d channels")
    batch, _, dim_g, H, W = u.shape
    if delta is not None and delta.shape != u.shape:
        raise ValueError(f"{name}: delta has shape {_shape(delta)}; expected u's shape {_shape(u)} "
                         "= (batch, 4, d, H, W)")
    if A.dim() != 3 or A.shape[:2] != (4, dim_g):
        raise ValueError(f"{name}: A has shape {_shape(A)}; expected (4, {dim_g}, N) = (4, d, N) for u of shape "
                         f"{_shape(u)}")
    n_state = A.shape[2]
    for arg, value in (("B", B), ("C", C)):
        if value is not None and value.shape != (batch, 4, n_state, H, W):
            raise ValueError(f"{name}: {arg} has shape {_shape(value)}; expected ({batch}, 4, {n_state}, {H}, {W}) "
                             f"= (batch, 4, N, H, W), from u {_shape(u)} and A {_shape(A)}")
    for arg, value in (("D", D), ("delta_bias", delta_bias)):
        if value is not None and value.shape != (4, dim_g):
            raise ValueError(f"{name}: {arg} has shape {_shape(value)}; expected (4, {dim_g}) = (4, d)")


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
    check_scan_args(u, delta, A, B, C, D, z, delta_bias, name="selective_scan_ref")
    batch, dim, length = u.shape
    uu, dt, AA, BB, CC = _prepare(u, delta, A, B, C, delta_bias, delta_softplus, torch.float64)
    state = uu.new_zeros(*uu.shape[:3], AA.shape[-1])  # (batch, G, dim/G, N)
    ys = []
    for t in range(length):
        decay = torch.exp(dt[..., t, None] * AA)
        state = decay * state + (dt[..., t] * uu[..., t])[..., None] * BB[:, :, None, :, t]
        ys.append((state * CC[:, :, None, :, t]).sum(-1))
    y = torch.stack(ys, dim=-1) if ys else uu.new_empty(*uu.shape)                # (L = 0: nothing to stack)
    y = y.reshape(batch, dim, length)
    return _finish(y, u.to(torch.float64), D, z, u.dtype)


_MAX_LOG_DECAY = 600.0


def selective_scan_chunked(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                           D: Optional[Tensor] = None, z: Optional[Tensor] = None,
                           delta_bias: Optional[Tensor] = None, delta_softplus: bool = False) -> Tensor:
    """The CPU path: vectorised over batch and channels, never a Python loop over every position
    for narrow states.

    Narrow states (N <= 2, GroupMamba's N = 1): chunked closed form (``_scan_factorized``), O(L*N)
    work and L/chunk Python steps. Wide states (VideoMamba's N = 16): the closed form's float64
    tensors cost more than they save, so positions are stepped through with block-wise precomputed
    decays and inputs (``_scan_stepwise``). ``benchmarks/scan_cpu.py`` measures both against a loop.
    """
    check_scan_args(u, delta, A, B, C, D, z, delta_bias, name="selective_scan_chunked")
    return _selective_scan_chunked(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def _selective_scan_chunked(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                            z: Optional[Tensor], delta_bias: Optional[Tensor], delta_softplus: bool) -> Tensor:
    """``selective_scan_chunked`` on arguments already checked (the dispatcher checks them once)."""
    batch, dim, length = u.shape
    uu, dt, AA, BB, CC = _prepare(u, delta, A, B, C, delta_bias, delta_softplus, torch.float32)
    # The closed form needs every single step's decay below e^600 (float64); beyond that, step.
    # (Empty inputs step: nothing to take the largest decay of, and no step to take.)
    narrow = (A.shape[-1] <= 2 and dt.numel() > 0 and AA.numel() > 0
              and float((dt.abs().amax() * AA.abs().amax()).item()) <= _MAX_LOG_DECAY)
    scan = _scan_factorized if narrow else _scan_stepwise
    y = scan(uu, dt, AA, BB, CC).reshape(batch, dim, length)
    return _finish(y, u.float(), D, z, u.dtype)


def _scan_stepwise(uu: Tensor, dt: Tensor, AA: Tensor, BB: Tensor, CC: Tensor, block: int = 16) -> Tensor:
    """Wide states: step through positions; decays and inputs of ``block`` positions are computed at
    once, time-major so that each step reads and writes contiguous memory."""
    batch, groups, per_group, length = uu.shape
    state = uu.new_zeros(batch, groups, per_group, AA.shape[-1])
    y = uu.new_empty(batch, groups, per_group, length)
    for start in range(0, length, block):
        stop = min(start + block, length)
        dt_c = dt[..., start:stop].permute(3, 0, 1, 2)[..., None]              # (T, b, g, p, 1)
        decay = torch.exp(dt_c * AA)                                            # (T, b, g, p, N)
        B_c = BB[..., start:stop].permute(3, 0, 1, 2)[:, :, :, None]            # (T, b, g, 1, N)
        inputs = (dt_c * uu[..., start:stop].permute(3, 0, 1, 2)[..., None]) * B_c
        states = torch.empty_like(decay)
        for t in range(stop - start):
            state = torch.addcmul(inputs[t], decay[t], state)
            states[t] = state
        C_c = CC[..., start:stop].permute(3, 0, 1, 2)[:, :, :, None]            # (T, b, g, 1, N)
        y[..., start:stop] = (states * C_c).sum(-1).permute(1, 2, 3, 0)
    return y


def _scan_factorized(uu: Tensor, dt: Tensor, AA: Tensor, BB: Tensor, CC: Tensor,
                     max_chunk: int = 1024, budget: int = 1 << 22) -> Tensor:
    """Chunked scan in O(L*N) work: inside a chunk, h_t = e^{c_t} * cumsum_s(e^{-c_s} x_s) with c the
    cumulative log-decay, in float64.

    The factor e^{-c_s} grows along the chunk; the chunk length is chosen from the largest per-step
    decay so that it never exceeds e^600 (float64 overflows past e^709): exact for any input whose
    single-step decays dt*|A| stay below 600 (``selective_scan_chunked`` steps through the others),
    only shorter chunks (more Python steps) when decays are extreme. The chunks are carried
    into each other by a short loop over chunks. Work is done in blocks of positions of about
    ``budget`` float64 elements to bound memory (one block for a single image).

    Written for few, large, in-place kernels: at batch 1 on CPU each kernel launch (and each
    wake-up of the worker threads) costs as much as the arithmetic. In-place and ``out=`` ops don't
    mix with autograd, so a scan that autograd records takes ``_scan_factorized_autograd`` (the same
    arithmetic, out of place, in blocks of 1024 positions and chunks of at most 64).
    """
    if torch.is_grad_enabled() and any(t.requires_grad for t in (uu, dt, AA, BB, CC)):
        return _scan_factorized_autograd(uu, dt, AA, BB, CC)
    batch, groups, per_group, length = uu.shape
    n_state = AA.shape[-1]
    y = uu.new_empty(batch, groups, per_group, length)
    if length == 0:
        return y
    max_step = float((dt.abs().amax() * AA.abs().amax()).item())
    chunk = int(max(1, min(max_chunk, length, 600.0 // max(max_step, 1e-6))))
    rows = max(1, batch * groups * per_group * n_state)
    block = max(chunk, budget // rows // chunk * chunk)
    A64 = AA.double()[:, :, None, :]                                           # (g, p, 1, N)
    state: Optional[Tensor] = None                                             # (b, g, p, N) float64
    for start in range(0, length, block):
        stop = min(start + block, length)
        size = stop - start
        n_chunks = -(-size // chunk)
        padded = n_chunks * chunk
        seq = (batch, groups, per_group, padded, n_state)
        shape = (batch, groups, per_group, n_chunks, chunk, n_state)
        dt_b = dt[..., start:stop].to(torch.float64, copy=True)                # (b, g, p, T)
        # cumulative log-decay; padded steps neither decay nor add input
        cum = dt_b.new_empty(seq)
        torch.mul(dt_b[..., None], A64, out=cum[..., :size, :])
        x = torch.empty_like(cum)
        if padded != size:
            cum[..., size:, :] = 0.0
            x[..., size:, :] = 0.0
        torch.mul(dt_b.mul_(uu[..., start:stop])[..., None],
                  BB[..., start:stop].transpose(-1, -2)[:, :, None], out=x[..., :size, :])
        cum = cum.view(shape).cumsum_(dim=-2)
        decay = torch.exp(cum)                                                  # e^{c_t}
        local = x.view(shape).div_(decay).cumsum_(dim=-2).mul_(decay)           # state from this chunk's inputs
        if n_chunks > 1 or state is not None:
            chunk_decay = decay[..., -1, :]                                     # (b, g, p, chunks, N)
            chunk_last = local[..., -1, :]
            starts = torch.empty_like(chunk_decay)
            for c in range(n_chunks):
                if state is None:
                    starts[..., c, :] = 0.0
                    state = chunk_last[..., c, :].clone()
                else:
                    starts[..., c, :] = state
                    state = torch.addcmul(chunk_last[..., c, :], chunk_decay[..., c, :], state)
            local.addcmul_(decay, starts[..., None, :])
        else:
            state = local[..., -1, -1, :].clone()
        states = local.view(seq)[..., :size, :]
        C_b = CC[..., start:stop].transpose(-1, -2)[:, :, None]                 # (b, g, 1, T, N)
        if n_state == 1:  # computed in float64, rounded once into y
            torch.mul(states[..., 0], C_b[..., 0], out=y[..., start:stop])
        else:
            y[..., start:stop] = (states * C_b).sum(-1)
    return y


def _scan_factorized_autograd(uu: Tensor, dt: Tensor, AA: Tensor, BB: Tensor, CC: Tensor,
                     max_chunk: int = 64, block: int = 1024) -> Tensor:
    """``_scan_factorized`` written with out-of-place ops only, for when autograd records the scan.

    Chunked scan in O(L*N) work: inside a chunk, h_t = e^{c_t} * cumsum_s(e^{-c_s} x_s) with c the
    cumulative log-decay, in float64.

    The factor e^{-c_s} grows along the chunk; the chunk length is chosen from the largest per-step
    decay so that it never exceeds e^600 (float64 overflows past e^709): exact for any input whose
    single-step decays dt*|A| stay below 600 (``selective_scan_chunked`` steps through the others),
    only shorter chunks (more Python steps) when decays are extreme. Work is done ``block``
    positions at a time to bound memory.
    """
    batch, groups, per_group, length = uu.shape
    n_state = AA.shape[-1]
    max_step = float((dt.abs().amax() * AA.abs().amax()).item()) if length else 0.0
    chunk = int(max(1, min(max_chunk, 600.0 // max(max_step, 1e-6))))
    block = max(chunk, block // chunk * chunk)
    A64 = AA.double()[:, :, None, :]                                           # (g, p, 1, N)
    state = uu.new_zeros(batch, groups, per_group, n_state, dtype=torch.float64)
    y = uu.new_empty(batch, groups, per_group, length)
    for start in range(0, length, block):
        stop = min(start + block, length)
        size = stop - start
        pad = (-size) % chunk
        n_chunks = (size + pad) // chunk
        dt_b = dt[..., start:stop].double()
        x_b = (dt_b * uu[..., start:stop])[..., None] * BB[..., start:stop].transpose(-1, -2)[:, :, None].double()
        log_decay = dt_b[..., None] * A64                                      # (b, g, p, T, N)
        if pad:  # padded steps neither decay nor add input
            log_decay = F.pad(log_decay, (0, 0, 0, pad))
            x_b = F.pad(x_b, (0, 0, 0, pad))
        shape = (batch, groups, per_group, n_chunks, chunk, n_state)
        cum = log_decay.reshape(shape).cumsum(dim=-2)
        local = torch.exp(cum) * (torch.exp(-cum) * x_b.reshape(shape)).cumsum(dim=-2)
        chunk_decay = torch.exp(cum[..., -1, :])                               # (b, g, p, chunks, N)
        starts = torch.empty_like(chunk_decay)
        for c in range(n_chunks):
            starts[..., c, :] = state
            state = chunk_decay[..., c, :] * state + local[..., c, -1, :]
        states = (local + torch.exp(cum) * starts[..., None, :]).reshape(batch, groups, per_group, -1, n_state)
        C_b = CC[..., start:stop].transpose(-1, -2)[:, :, None].double()        # (b, g, 1, T, N)
        y[..., start:stop] = (states[..., :size, :] * C_b).sum(-1).to(y.dtype)
    return y


ScanFn = Callable[..., Tensor]
_BACKENDS: dict[str, ScanFn] = {"torch": _selective_scan_chunked}
"""Every backend is called as ``fn(u, delta, A, B, C, D=, z=, delta_bias=, delta_softplus=)``, with
arguments that ``selective_scan`` has checked (``check_scan_args``)."""


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
    """The backends that can run on this machine, i.e. the values ``SSMZOO_SCAN`` accepts here: the
    Triton scan only where it imports and a CUDA device exists (elsewhere it is refused)."""
    triton = _triton_ready()
    return sorted(name for name in _BACKENDS if name != "triton" or triton)


def scan_backend(device: torch.device | str | None = None) -> str:
    """Which backend runs on ``device``: ``SSMZOO_SCAN`` wins, else Triton on CUDA when importable.

    A forced backend that cannot run here is a ``ScanBackendError`` naming what is missing, not a
    failure deep inside a kernel launch."""
    forced = forced_scan_backend()
    device = torch.device(device) if device is not None else None
    if forced:
        if forced not in _BACKENDS and forced != "triton":
            known = " or ".join(sorted(set(_BACKENDS) | {"triton"}))
            raise ScanBackendError(f"SSMZOO_SCAN={forced!r}: expected {known} (or unset it: Triton on CUDA devices, "
                                   "PyTorch elsewhere)")
        if forced == "triton":
            if not _triton_ready():
                missing = "a CUDA device" if triton_installed() else "the triton package and a CUDA device"
                raise ScanBackendError(f"SSMZOO_SCAN=triton: the Triton scan needs {missing}, which this machine "
                                       "lacks; unset SSMZOO_SCAN or set it to torch")
            if device is not None and device.type != "cuda":
                raise ScanBackendError(f"SSMZOO_SCAN=triton: the Triton scan runs on CUDA tensors, not "
                                       f"{device.type}; unset SSMZOO_SCAN or run on a CUDA device")
        return forced
    if device is not None and device.type == "cuda" and _triton_ready():
        return "triton"
    return "torch"


def forced_scan_backend() -> Optional[str]:
    """The backend ``SSMZOO_SCAN`` names (lower-cased), or None where it is unset."""
    return os.environ.get("SSMZOO_SCAN", "").strip().lower() or None


def triton_installed() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True


def _selective_scan_chunked_op(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                               z: Optional[Tensor], delta_bias: Optional[Tensor], delta_softplus: bool) -> Tensor:
    """``selective_scan_chunked`` as one opaque node for torch.compile. Traced, its chunk length
    (chosen from the inputs' largest decay, an ``.item()``) breaks the graph in every layer, and
    the wide-state path's loop over positions would be unrolled."""
    return _selective_scan_chunked(u, delta, A, B, C, D, z, delta_bias, delta_softplus).contiguous()


# torch.library.custom_op exists from torch 2.4; on older releases compile traces the scan as it is
selective_scan_chunked_op: Optional[Callable[..., Tensor]] = None
if hasattr(torch.library, "custom_op"):
    selective_scan_chunked_op = torch.library.custom_op("ssmzoo::selective_scan_chunked", mutates_args=())(
        _selective_scan_chunked_op)

    @selective_scan_chunked_op.register_fake
    def _selective_scan_chunked_fake(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        return u.new_empty(u.shape)


def _records_autograd(*tensors: Optional[Tensor]) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                   D: Optional[Tensor] = None, z: Optional[Tensor] = None,
                   delta_bias: Optional[Tensor] = None, delta_softplus: bool = False) -> Tensor:
    """Runs the selective scan on the backend that suits ``u``'s device (see ``scan_backend``).
    While torch.compile traces, the PyTorch path is the opaque operator ``selective_scan_chunked_op``
    (it has no backward: a scan that autograd records is traced as plain PyTorch).

    The arguments are checked first (``check_scan_args``: shapes only, no device sync). An empty scan
    (L = 0, or no batch or channels) takes the PyTorch path on any device: an empty output, the same
    from every backend."""
    check_scan_args(u, delta, A, B, C, D, z, delta_bias)
    backend = scan_backend(u.device)
    if backend != "torch" and u.numel() == 0:
        backend = "torch"
    if (backend == "torch" and selective_scan_chunked_op is not None and torch.compiler.is_compiling()
            and not _records_autograd(u, delta, A, B, C, D, z, delta_bias)):
        return selective_scan_chunked_op(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    fn = _BACKENDS[backend]
    return fn(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)
