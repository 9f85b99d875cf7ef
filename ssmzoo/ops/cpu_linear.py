"""Linear layers on CPU through oneDNN with a prepacked weight (inference only).

``F.linear`` on CPU is ATen's addmm: the bias is first broadcast-copied into the whole output, then
the GEMM accumulates onto it (MKL/oneDNN with beta = 1). oneDNN's own linear with a weight reordered
once into its blocked layout applies the bias in the GEMM's epilogue and skips both the copy and the
per-call weight handling. On the 2-core CI machine (fp32, two threads) that took GroupMamba-T's eight
FFN/projection GEMM shapes from 9.69 to 7.61 ms in total (3136 x 64 -> 512: 1.56 -> 1.36 ms;
3136 x 512 -> 64: 1.52 -> 1.09 ms), with the same results up to float32 summation order.

``packed_linear(x, linear)`` takes that path where it applies (CPU float32 tensors, autograd off, no
CPU autocast, not inside torch.compile, oneDNN present; ``PACKED_LINEAR`` on) and is ``F.linear``
otherwise. The packed weight is cached on the module, keyed on the weight parameter, its storage and
its version counter, so ``load_state_dict``, ``.to()`` or an in-place update repacks it.
``PackedLinear`` is an ``nn.Linear`` (same parameters and state-dict names) that forwards through it.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

__all__ = ["PACKED_LINEAR", "PackedLinear", "packed_linear"]

# False: plain F.linear everywhere (side-by-side timing, debugging).
PACKED_LINEAR = True


def _onednn_linear_available() -> bool:
    return (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))


_AVAILABLE = _onednn_linear_available()


def _applies(x: Tensor, linear: nn.Linear) -> bool:
    return (PACKED_LINEAR and _AVAILABLE and x.device.type == "cpu" and x.dtype == torch.float32
            and linear.weight.dtype == torch.float32 and not torch.is_grad_enabled()
            and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling())


def _packed_weight(linear: nn.Linear) -> Tensor:
    weight = linear.weight
    key = (weight.data_ptr(), weight._version)
    cached = linear.__dict__.get("_ssmzoo_packed_weight")
    # the cache holds the parameter itself, so neither its id nor its address can be reused meanwhile
    if cached is not None and cached[0] is weight and cached[1] == key:
        return cached[2]
    packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None)
    linear.__dict__["_ssmzoo_packed_weight"] = (weight, key, packed)
    return packed


def packed_linear(x: Tensor, linear: nn.Linear) -> Tensor:
    """``linear(x)``, through oneDNN with a prepacked weight where that applies (module docstring)."""
    if not _applies(x, linear):
        return F.linear(x, linear.weight, linear.bias)
    bias = None if linear.bias is None else linear.bias.detach()
    return torch.ops.mkldnn._linear_pointwise(x, _packed_weight(linear), bias, "none", [], "")


class PackedLinear(nn.Linear):
    """``nn.Linear`` whose CPU inference forward runs ``packed_linear``."""

    def forward(self, x: Tensor) -> Tensor:
        return packed_linear(x, self)
