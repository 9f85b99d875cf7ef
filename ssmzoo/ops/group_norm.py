"""What follows GroupMamba's 4-direction scan: each group's LayerNorm, then the SiLU gate of z.

Kept beside the kernels (not in the model file) because it has two implementations with one
meaning: this PyTorch one (the CPU path, and the reference of the fused kernel) and the epilogue of
the look-back scan kernel (``triton_lookback``, ``NORM_GATE``), which computes it on the scan's
float32 y in registers instead of writing y to memory and reading it back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def group_layer_norm(y: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """LayerNorm over the last dim of (..., 4, d) with a per-group affine ``weight``/``bias`` (4, d),
    in float32 (float64 stays float64).

    Equals the 4 groups' ``nn.LayerNorm(d)`` (biased variance, eps inside the root). Written with
    plain two-pass reductions because y comes from the scan in any layout (no copy to a contiguous
    input), and because ``layer_norm`` on rows of d = 16..112 channels (one launch per group) was the
    slowest kernel of the model on GPU. (``torch.var_mean`` is ~20x slower than ``mean`` on CPU here.)
    """
    dtype = torch.promote_types(y.dtype, torch.float32)
    y = y.to(dtype)
    centered = y - y.mean(dim=-1, keepdim=True)
    var = (centered * centered).mean(dim=-1, keepdim=True)
    return torch.addcmul(bias.to(dtype), centered * torch.rsqrt(var + eps), weight.to(dtype))


def group_norm_gate(y: Tensor, weight: Tensor, bias: Tensor, eps: float, z: Tensor) -> Tensor:
    """``group_layer_norm(y)`` rounded to z's dtype, times SiLU(z): the mixer's output before out_proj.

    The fused kernel computes SiLU(z) and the product in float32 and rounds once; here, as in the
    authors' code, SiLU(z) is rounded to z's dtype first (for 16-bit z a difference of at most an ulp).
    """
    return group_layer_norm(y, weight, bias, eps).to(z.dtype) * F.silu(z)
