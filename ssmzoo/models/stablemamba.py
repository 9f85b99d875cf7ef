"""StableMamba (Suleman, Wasim, Naseer and Gall; arXiv:2409.11867, IJCV 2026): VideoMamba with
self-attention blocks interleaved among the bidirectional Mamba blocks, which the paper reports lets
large SSMs train without VideoMamba's self-distillation.

The authors released no code or weights. The stored copies of the paper (arXiv v2 HTML and the IJCV
version on PMC, PMC13090270) could only be read up to the abstract and the first lines of the
introduction: they name "a Mamba-Attention interleaved architecture" but none of its sizes, so every
size below (patch size, width, depth, heads, d_state, where attention goes, the norm of the attention
blocks) is ssmzoo's choice and is listed under ``ssmzoo_choice`` in weights_manifest.yaml: the
VideoMamba sizes, with one standard pre-norm Transformer block (timm-style ``norm1``/``attn.qkv``/
``attn.proj``/``norm2``/``mlp.fc1``/``mlp.fc2``) in place of every ``attn_every``-th block. All blocks
share one list ``layers``; attention blocks are plain pre-norm blocks written into the same float32
residual stream the Mamba blocks use.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from timm.layers import DropPath, Mlp
from timm.models import register_model

from .videomamba import VideoMamba, _cfg, create_model_with_cfg

__all__ = ["Attention", "AttentionBlock", "StableMamba", "attention_layer_indices"]


class Attention(nn.Module):
    """Multi-head self-attention, ``softmax(QK^T / sqrt(d)) V`` through ``F.scaled_dot_product_attention``."""

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor) -> Tensor:
        batch, length, dim = x.shape
        qkv = self.qkv(x).reshape(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)                                                 # (b, heads, l, hd)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        x = x.transpose(1, 2).reshape(batch, length, dim)
        return self.proj_drop(self.proj(x))


class AttentionBlock(nn.Module):
    """Pre-norm Transformer block speaking the Mamba blocks' (hidden, residual) protocol.

    It first folds the pending output of the previous block into the residual stream, then runs
    ``x + attn(norm1(x))`` and hands ``mlp(norm2(x))`` on as its own pending output, so the next block
    (or the final norm) adds it: the result equals ``x + mlp(norm2(x))`` of a standard block.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path: float = 0.0, norm_eps: float = 1e-6, residual_in_fp32: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__()
        self.residual_in_fp32 = residual_in_fp32
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU, drop=proj_drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def _ln(self, norm: nn.LayerNorm, x: Tensor) -> Tensor:
        dtype = self.norm1.weight.dtype
        return F.layer_norm(x.float(), norm.normalized_shape, norm.weight.float(), norm.bias.float(),
                            norm.eps).to(dtype)

    def forward(self, hidden_states: Tensor, residual: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        residual = hidden_states if residual is None else residual + self.drop_path(hidden_states)
        if self.residual_in_fp32:
            residual = residual.float()
        residual = residual + self.drop_path(self.attn(self._ln(self.norm1, residual)))
        return self.mlp(self._ln(self.norm2, residual)), residual


def attention_layer_indices(depth: int, attn_layers: Optional[Sequence[int]] = None,
                            attn_every: Optional[int] = None) -> Tuple[int, ...]:
    """Where the attention blocks go: explicit ``attn_layers``, else every ``attn_every``-th block
    (indices attn_every-1, 2*attn_every-1, ...)."""
    if attn_layers is not None and attn_every is not None:
        raise ValueError("give attn_layers or attn_every, not both")
    if attn_layers is not None:
        layers = tuple(sorted({int(i) for i in attn_layers}))
        bad = [i for i in layers if not 0 <= i < depth]
        if bad:
            raise ValueError(f"attention indices {bad} are outside 0..{depth - 1}")
        return layers
    if attn_every is None or attn_every <= 0:
        raise ValueError("attn_every must be a positive integer")
    return tuple(range(attn_every - 1, depth, attn_every))


class StableMamba(VideoMamba):
    """VideoMamba backbone with attention blocks at ``attn_layers`` (or every ``attn_every``-th block)."""

    def __init__(self, *args: Any, depth: int = 24, embed_dim: int = 192, attn_layers: Optional[Sequence[int]] = None,
                 attn_every: Optional[int] = None, num_heads: int = 3, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, attn_drop_rate: float = 0.0, **kwargs: Any) -> None:
        if attn_layers is None and attn_every is None:
            attn_every = 4
        self.attn_layers = attention_layer_indices(depth, attn_layers, attn_every)
        self._attn_kwargs = dict(num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                                 attn_drop=attn_drop_rate)
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        super().__init__(*args, depth=depth, embed_dim=embed_dim, **kwargs)

    def _make_layer(self, index: int, drop_path: float) -> nn.Module:
        if index in self.attn_layers:
            return AttentionBlock(self.embed_dim, drop_path=drop_path, residual_in_fp32=self.residual_in_fp32,
                                  **self._attn_kwargs)
        return super()._make_layer(index, drop_path)


# Every value here is ssmzoo's choice (see the module docstring and weights_manifest.yaml):
# VideoMamba's widths and depths, heads of 64 channels, attention at every 4th block.
_SIZES: Dict[str, Dict[str, Any]] = {
    "tiny": dict(patch_size=16, embed_dim=192, depth=24, num_heads=3, attn_every=4),
    "small": dict(patch_size=16, embed_dim=384, depth=24, num_heads=6, attn_every=4),
    "middle": dict(patch_size=16, embed_dim=576, depth=32, num_heads=9, attn_every=4),
    "base": dict(patch_size=16, embed_dim=768, depth=24, num_heads=12, attn_every=4),
    "large": dict(patch_size=16, embed_dim=1024, depth=24, num_heads=16, attn_every=4),
}

_PAPER = dict(paper_ids="arXiv:2409.11867",
              paper_name="StableMamba: Distillation-free Scaling of Large State-Space Models for Images and Videos",
              origin_url="https://arxiv.org/abs/2409.11867", license=None)
default_cfgs: Dict[str, Dict[str, Any]] = {}
for _size in _SIZES:
    default_cfgs[f"stablemamba_{_size}"] = _cfg(**_PAPER)
    default_cfgs[f"stablemamba_{_size}_video"] = _cfg(video=True, **_PAPER)


def _defaults(size: str, kwargs: Dict[str, Any]) -> Dict[str, Any]:
    defaults = dict(_SIZES[size])
    if "attn_layers" in kwargs:  # an explicit placement replaces the default spacing
        defaults.pop("attn_every")
    return defaults


def _image(size: str, pretrained: bool, **kwargs: Any) -> StableMamba:
    return create_model_with_cfg(StableMamba, f"stablemamba_{size}", pretrained, _defaults(size, kwargs), **kwargs)


def _video(size: str, pretrained: bool, **kwargs: Any) -> StableMamba:
    kwargs.setdefault("num_frames", 8)
    return create_model_with_cfg(StableMamba, f"stablemamba_{size}_video", pretrained, _defaults(size, kwargs),
                                 **kwargs)


@register_model
def stablemamba_tiny(pretrained: bool = False, **kwargs: Any) -> StableMamba:
    """192 wide, 24 blocks (6 attention, 3 heads), image input."""
    return _image("tiny", pretrained, **kwargs)


@register_model
def stablemamba_small(pretrained: bool = False, **kwargs: Any) -> StableMamba:
    """384 wide, 24 blocks (6 attention, 6 heads), image input."""
    return _image("small", pretrained, **kwargs)


@register_model
def stablemamba_middle(pretrained: bool = False, **kwargs: Any) -> StableMamba:
    """576 wide, 32 blocks (8 attention, 9 heads), image input."""
    return _image("middle", pretrained, **kwargs)


@register_model
def stablemamba_base(pretrained: bool = False, **kwargs: Any) -> StableMamba:
    """768 wide, 24 blocks (6 attention, 12 heads), image input."""
    return _image("base", pretrained, **kwargs)


@register_model
def stablemamba_large(pretrained: bool = False, **kwargs: Any) -> StableMamba:
    """1024 wide, 24 blocks (6 attention, 16 heads), image input."""
    return _image("large", pretrained, **kwargs)


@register_model
def stablemamba_tiny_video(pretrained: bool = False, **kwargs: Any) -> StableMamba:
    return _video("tiny", pretrained, **kwargs)


@register_model
def stablemamba_small_video(pretrained: bool = False, **kwargs: Any) -> StableMamba:
    return _video("small", pretrained, **kwargs)


@register_model
def stablemamba_middle_video(pretrained: bool = False, **kwargs: Any) -> StableMamba:
    return _video("middle", pretrained, **kwargs)


@register_model
def stablemamba_base_video(pretrained: bool = False, **kwargs: Any) -> StableMamba:
    return _video("base", pretrained, **kwargs)


@register_model
def stablemamba_large_video(pretrained: bool = False, **kwargs: Any) -> StableMamba:
    return _video("large", pretrained, **kwargs)
