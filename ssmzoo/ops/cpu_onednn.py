"""CPU inference through oneDNN's fused operators: linears with a prepacked weight, convs with their
activation (inference only).

Linears. ``F.linear`` on CPU is ATen's addmm: the bias is first broadcast-copied into the whole
output, then the GEMM accumulates onto it (MKL/oneDNN with beta = 1). oneDNN's own linear with a
weight reordered once into its blocked layout applies the bias in the GEMM's epilogue and skips both
the copy and the per-call weight handling. On the 2-core CI machine (fp32, two threads) that took
GroupMamba-T's eight FFN/projection GEMM shapes from 9.69 to 7.61 ms in total (3136 x 64 -> 512:
1.56 -> 1.36 ms; 3136 x 512 -> 64: 1.52 -> 1.09 ms), with the same results up to float32 summation
order. ``PackedLinear`` (an ``nn.Linear``, same parameters and state-dict names). The packed weight
is cached on the module, keyed on the weight parameter, its storage and its version counter (see
``PackedLinear`` for what that does and does not notice; ``invalidate_caches`` drops the cache).

Convs + activation. GroupMamba's depthwise 3x3 convs are followed by GELU (FFN) or SiLU (mixer); on
the channels-last maps they produce, ATen's separate activation pass cost more than the conv (stage
1, 512 x 56 x 56: conv 0.31 ms, + GELU 4.7 ms; fused by oneDNN as a post-op 0.85 ms; GroupMamba-T's
four FFN shapes 19.7 -> 6.5 ms per image, max relative difference 9e-8). ``conv2d_act``.

Both take their oneDNN path where it applies (CPU float32 tensors, autograd off, no CPU autocast,
not inside torch.compile or ``torch.jit.trace``, oneDNN's operators present; ``ONEDNN_FUSED`` on) and
are the plain PyTorch ops otherwise.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ONEDNN_CONV", "ONEDNN_FUSED", "PackedLinear", "conv2d_act", "invalidate_caches"]

# False: the plain PyTorch ops everywhere (side-by-side timing, debugging); ONEDNN_CONV False: for the
# convs only.
ONEDNN_FUSED = True
ONEDNN_CONV = True


def _onednn_available() -> bool:
    return (torch.backends.mkldnn.is_available()
            and all(hasattr(torch.ops.mkldnn, op) for op in ("_linear_pointwise", "_reorder_linear_weight",
                                                             "_convolution_pointwise")))


_AVAILABLE = _onednn_available()


def _applies(x: Tensor, weight: Tensor) -> bool:
    return (ONEDNN_FUSED and _AVAILABLE and x.device.type == "cpu" and x.dtype == torch.float32
            and weight.dtype == torch.float32 and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling()
            and not torch.jit.is_tracing())  # the tracer cannot record oneDNN's list-of-Scalar? arguments


class PackedLinear(nn.Linear):
    """``nn.Linear`` whose CPU inference forward runs oneDNN's linear with a prepacked weight (module
    docstring). The packed copy is a cache: it is left out of pickling and ``copy.deepcopy`` (an
    opaque oneDNN tensor has no storage to copy) and rebuilt on the next forward.

    The cache is rebuilt when the weight parameter is replaced, gets new storage (``.to()``,
    ``param.data = t``) or its version counter moves: ``load_state_dict``, optimizer steps and every
    in-place op on the parameter or on a view of it (``with torch.no_grad(): w.mul_(2)``). It is NOT
    noticed when the storage is written through a tensor with a version counter of its own:
    ``w.data.mul_(2)``, ``w.data.copy_(t)``, numpy or DLPack views. After such writes call
    ``invalidate_cache()`` (or ``invalidate_caches(model)``). Checking the contents instead would read
    the whole weight on every call, about what repacking it costs.
    """

    _CACHE = "_ssmzoo_packed_weight"

    def _packed_weight(self) -> Tensor:
        weight = self.weight
        key = (weight.data_ptr(), weight._version)
        cached = self.__dict__.get(self._CACHE)
        # the cache holds the parameter and (detached) its storage, so neither the parameter's id nor the
        # storage's address can be reused by a replacement meanwhile
        if cached is not None and cached[0] is weight and cached[1] == key:
            return cached[3]
        packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None)
        self.__dict__[self._CACHE] = (weight, key, weight.detach(), packed)
        return packed

    def invalidate_cache(self) -> None:
        """Drops the packed weight, rebuilt from the current weight on the next CPU inference call."""
        self.__dict__.pop(self._CACHE, None)

    def forward(self, x: Tensor) -> Tensor:
        if not _applies(x, self.weight):
            return F.linear(x, self.weight, self.bias)
        bias = None if self.bias is None else self.bias.detach()
        return torch.ops.mkldnn._linear_pointwise(x, self._packed_weight(), bias, "none", [], "")

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop(self._CACHE, None)
        return state


def invalidate_caches(module: nn.Module) -> int:
    """Drops every weight-derived cache in ``module`` and its submodules (each submodule's
    ``invalidate_cache()``: ``PackedLinear``, GroupMamba's mixers); returns how many modules were asked.

    Needed only after weights were written in ways their version counters do not record (``p.data``
    in-place ops, numpy views; see ``PackedLinear``); the next forward rebuilds the caches."""
    count = 0
    for m in module.modules():
        invalidate = getattr(m, "invalidate_cache", None)
        if callable(invalidate):
            invalidate()
            count += 1
    return count


# oneDNN's post-op names for the activations the models fuse ("gelu" with algorithm "none" is exact GELU)
_POST_OPS = {"none": ("none", ""), "gelu": ("gelu", "none"), "silu": ("swish", "")}
# The same activations as plain PyTorch functions (the fallback here, and the fused GPU kernels' references).
ACTIVATION_FNS: dict[str, Callable[[Tensor], Tensor]] = {"none": lambda t: t, "gelu": F.gelu, "silu": F.silu}


def conv2d_act(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: Sequence[int], padding: Sequence[int],
               dilation: Sequence[int], groups: int, activation: str = "none") -> Tensor:
    """``act(F.conv2d(x, weight, bias, stride, padding, dilation, groups))`` with ``activation`` in
    "none", "gelu" (exact), "silu"; one oneDNN call with the activation as a post-op where that applies
    (module docstring). Integer-tuple padding only (no "same"/"valid" strings)."""
    if activation not in _POST_OPS:
        raise ValueError(f"activation must be one of {', '.join(_POST_OPS)}, got {activation!r}")
    if ONEDNN_CONV and _applies(x, weight):
        attr, algorithm = _POST_OPS[activation]
        return torch.ops.mkldnn._convolution_pointwise(
            x, weight, None if bias is None else bias.detach(), list(padding), list(stride), list(dilation),
            groups, attr, [], algorithm)
    y = F.conv2d(x, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)
    return ACTIVATION_FNS[activation](y)
