"""The four scan directions of GroupMamba's grouped scan, as index orders of an H x W map.

Group k of the channels is scanned along direction k:
  0: row-major             (h, w) -> h * W + w
  1: column-major          (h, w) -> w * H + h
  2: row-major reversed    (h, w) -> L - 1 - (h * W + w)
  3: column-major reversed (h, w) -> L - 1 - (w * H + h)
Kept beside the kernels (not in the model file) so the PyTorch references of the fused kernels and
the model share one definition without ops importing models.
"""

from __future__ import annotations

from torch import Tensor


def scan_order(x: Tensor, direction: int) -> Tensor:
    """(..., H, W) feature map -> (..., L) sequence in the order ``direction`` visits it."""
    if direction in (1, 3):
        x = x.transpose(-1, -2)
    seq = x.flatten(-2)
    if direction in (2, 3):
        seq = seq.flip(-1)
    return seq


def merge_order(seq: Tensor, direction: int, height: int, width: int) -> Tensor:
    """Inverse of ``scan_order``: (..., L) sequence -> (..., H, W) feature map."""
    if direction in (2, 3):
        seq = seq.flip(-1)
    if direction in (1, 3):
        return seq.unflatten(-1, (width, height)).transpose(-1, -2)
    return seq.unflatten(-1, (height, width))
