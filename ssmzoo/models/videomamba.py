"""VideoMamba (Li et al., 2024, arXiv:2403.06977): a plain, non-hierarchical bidirectional Mamba
for images and videos.

The module names follow the authors' release (``OpenGVLab/VideoMamba``), so their checkpoints load
as they are: ``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``temporal_pos_embedding`` (video),
``layers.{i}.norm`` + ``layers.{i}.mixer.*`` (bidirectional Mamba, "bimamba v2"), ``norm_f``, ``head``.

Blocks are pre-norm with the residual stream carried separately (in float32 by default): each block
adds the previous block's output to the residual, normalises it and runs its mixer, exactly the
un-fused form of the authors' fused add+RMSNorm kernels. Position embeddings are resampled at forward
time when the input grid or frame count differs from the configured one (bicubic in space, linear
in time), and ``checkpoint_filter_fn`` does the same to a checkpoint on load.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from timm.layers import DropPath, resample_abs_pos_embed, to_2tuple, trunc_normal_
from timm.models import build_model_with_cfg, register_model
from timm.models._features import feature_take_indices

from ssmzoo.ops import scan_backend, selective_scan
from ssmzoo.ops.opaque import call_op

__all__ = [
    "RMSNorm",
    "BiMambaMixer",
    "MambaBlock",
    "PatchEmbed",
    "VideoMamba",
    "checkpoint_filter_fn",
    "resample_temporal_embed",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class RMSNorm(nn.Module):
    """RMSNorm computed in float32 (like mamba_ssm's reference), returned in the input dtype."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (xf * self.weight.float()).to(x.dtype)


class _FloatLayerNorm(nn.LayerNorm):
    """LayerNorm in float32, for the ``norm='layernorm'`` variant of the authors' code."""

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x.float(), self.normalized_shape, self.weight.float(), self.bias.float(),
                            self.eps).to(x.dtype)


def make_norm(kind: str, dim: int, eps: float) -> nn.Module:
    if kind in ("rmsnorm", "rms"):
        return RMSNorm(dim, eps=eps)
    if kind in ("layernorm", "ln"):
        return _FloatLayerNorm(dim, eps=eps)
    raise ValueError(f"norm must be 'rmsnorm' or 'layernorm', not {kind!r}")


# On the Triton backend the mixer hands the scan u and delta in (batch, L, dim) memory (see
# BiMambaMixer._scan_inputs); False keeps the contiguous (batch, dim, L) copies (side-by-side timing).
SCAN_INPUTS_TOKENS_MAJOR = True
# With them, each direction's causal conv + SiLU is one Triton launch (ssmzoo.ops.triton_causal_conv);
# False keeps F.conv1d, F.silu and the copies around them (side-by-side timing).
FUSED_CAUSAL_CONV = True


class BiMambaMixer(nn.Module):
    """Bidirectional Mamba ("bimamba v2"): the backward direction has its own conv/x_proj/dt_proj/A/D,
    runs on the flipped sequence (gate included), and is flipped back and summed before ``out_proj``."""

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: float = 2,
                 dt_rank: Union[int, str] = "auto", dt_min: float = 1e-3, dt_max: float = 0.1,
                 dt_init_floor: float = 1e-4, conv_bias: bool = True, bias: bool = False) -> None:
        super().__init__()
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        d_inner = self.d_inner

        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=bias)
        self.out_proj = nn.Linear(d_inner, d_model, bias=bias)
        for suffix in ("", "_b"):
            A_log = torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1)
            self.register_parameter(self._a_name(suffix), nn.Parameter(A_log))
            self.register_parameter("D" + suffix, nn.Parameter(torch.ones(d_inner)))
            conv = nn.Conv1d(d_inner, d_inner, kernel_size=d_conv, groups=d_inner,
                             padding=d_conv - 1, bias=conv_bias)
            x_proj = nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False)
            dt_proj = nn.Linear(self.dt_rank, d_inner, bias=True)
            self._init_dt(dt_proj, dt_min, dt_max, dt_init_floor)
            setattr(self, "conv1d" + suffix, conv)
            setattr(self, "x_proj" + suffix, x_proj)
            setattr(self, "dt_proj" + suffix, dt_proj)

    @staticmethod
    def _a_name(suffix: str) -> str:
        return "A_log" if not suffix else "A_b_log"  # the published (Vim) spelling

    def _init_dt(self, dt_proj: nn.Linear, dt_min: float, dt_max: float, floor: float) -> None:
        # Mamba's init: softplus(dt bias) log-uniform in [dt_min, dt_max], so early steps neither
        # forget everything nor nothing.
        std = self.dt_rank ** -0.5
        nn.init.uniform_(dt_proj.weight, -std, std)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=floor)
        with torch.no_grad():
            dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        dt_proj.bias._no_reinit = True  # type: ignore[attr-defined]

    def _scan_inputs(self, x: Tensor, suffix: str, tokens_major: bool = False,
                     fused_conv: bool = False) -> dict[str, Tensor]:
        """One direction's scan operands: causal depthwise conv + SiLU, input-dependent dt/B/C.
        ``suffix`` "_b" is the backward direction: x is read reversed and the operands come out in
        the reversed token order.

        u and delta are (batch, dim, L); with ``tokens_major`` they are views of (batch, L, dim)
        memory (channels contiguous): u is the copy x_proj needs anyway, delta dt_proj's output as it
        comes, so neither is copied again for the scan, and the bidirectional GPU kernel reads that
        layout fastest. Otherwise both are contiguous (batch, dim, L), the CPU scan's layout.
        ``fused_conv`` (with ``tokens_major``) runs the conv + SiLU as the Triton kernel.
        """
        length = x.shape[-1]
        conv: nn.Conv1d = getattr(self, "conv1d" + suffix)
        x_proj: nn.Linear = getattr(self, "x_proj" + suffix)
        dt_proj: nn.Linear = getattr(self, "dt_proj" + suffix)
        reverse = bool(suffix)                                                  # the backward direction
        if tokens_major and fused_conv:
            # One Triton launch: the causal conv read forwards or backwards by index, bias, SiLU,
            # written token-major (no flip copy, no generic ATen depthwise kernel, no transpose copy).
            from ssmzoo.ops.triton_causal_conv import causal_conv1d_silu

            x = causal_conv1d_silu(x, conv.weight, conv.bias, reverse)
            x_tokens = x.transpose(1, 2)                                        # contiguous (b, l, d)
        else:
            x = F.silu(conv(x.flip(-1) if reverse else x)[..., :length])
            x_tokens = x.transpose(1, 2).contiguous()                           # (b, l, d): x_proj's input
        x_dbl = x_proj(x_tokens)                                                # (b, l, r + 2n)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.linear(dt, dt_proj.weight).transpose(1, 2)                       # bias goes in the scan
        if tokens_major:
            u = x_tokens.transpose(1, 2)
        else:
            u, dt = x, dt.contiguous()
        A = -torch.exp(getattr(self, self._a_name(suffix)).float())
        return dict(u=u, delta=dt, A=A, B=B.transpose(1, 2).contiguous(), C=C.transpose(1, 2).contiguous(),
                    D=getattr(self, "D" + suffix).float(), delta_bias=dt_proj.bias.float())

    def forward(self, hidden_states: Tensor) -> Tensor:
        xz = self.in_proj(hidden_states).transpose(1, 2)                        # (b, 2*d_inner, l)
        x, z = xz.chunk(2, dim=1)
        triton = scan_backend(x.device) == "triton"
        tokens_major = triton and SCAN_INPUTS_TOKENS_MAJOR
        fused_conv = tokens_major and FUSED_CAUSAL_CONV
        fwd = self._scan_inputs(x, "", tokens_major, fused_conv)
        bwd = self._scan_inputs(x, "_b", tokens_major, fused_conv)              # on the reversed sequence
        if triton:
            # One launch for both directions; the reversed one is read by index, gate and D fused.
            from ssmzoo.ops.triton_scan import bimamba_scan_op

            y = call_op(
                bimamba_scan_op, fwd["u"], fwd["delta"], fwd["A"], fwd["B"], fwd["C"], fwd["D"],
                bwd["u"], bwd["delta"], bwd["A"], bwd["B"], bwd["C"], bwd["D"],
                z=z, delta_bias=fwd["delta_bias"], delta_bias_b=bwd["delta_bias"],
                delta_softplus=True, backward_flipped=True)
        else:
            y = selective_scan(**fwd, z=z.contiguous(), delta_softplus=True)
            y_b = selective_scan(**bwd, z=z.flip(-1).contiguous(), delta_softplus=True)
            y = y + y_b.flip(-1)
        return self.out_proj(y.transpose(1, 2))


class MambaBlock(nn.Module):
    """Add -> norm -> mixer: returns the mixer output and the updated residual stream."""

    def __init__(self, dim: int, norm: str = "rmsnorm", norm_epsilon: float = 1e-5,
                 residual_in_fp32: bool = True, drop_path: float = 0.0, **mixer_kwargs: Any) -> None:
        super().__init__()
        self.residual_in_fp32 = residual_in_fp32
        self.mixer = BiMambaMixer(dim, **mixer_kwargs)
        self.norm = make_norm(norm, dim, norm_epsilon)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, hidden_states: Tensor, residual: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        residual = hidden_states if residual is None else residual + self.drop_path(hidden_states)
        if self.residual_in_fp32:
            residual = residual.float()
        hidden_states = self.norm(residual.to(self.norm.weight.dtype))
        return self.mixer(hidden_states), residual


class PatchEmbed(nn.Module):
    """Non-overlapping patches: Conv2d for images, Conv3d with a (tubelet, p, p) kernel for videos."""

    def __init__(self, img_size: Union[int, Sequence[int]] = 224, patch_size: int = 16, in_chans: int = 3,
                 embed_dim: int = 192, video: bool = False, kernel_size: int = 1) -> None:
        super().__init__()
        self.img_size = to_2tuple(img_size)
        self.patch_size = to_2tuple(patch_size)
        self.grid_size = (self.img_size[0] // self.patch_size[0], self.img_size[1] // self.patch_size[1])
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.video = video
        self.tubelet_size = kernel_size
        if video:
            k = (kernel_size, *self.patch_size)
            self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=k, stride=k)
        else:
            self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=self.patch_size, stride=self.patch_size)

    def forward(self, x: Tensor) -> Tensor:
        if x.is_cuda and PATCH_EMBED_AS_GEMM:
            return patchify_linear(x, self.proj.weight, self.proj.bias)
        return self.proj(x)


# On CUDA the patch embedding runs as one GEMM over the unfolded patches (``patchify_linear``): cuDNN's
# kernel for the video model's Conv3d took 0.66 ms per batch of 8 16-frame clips on the H100 (its
# generic implicit_convolveNd_sgemm; docs/gpu_runs/prof_vm16_compiled_s14.txt), for 15 GFLOP. False
# keeps the conv (side-by-side timing).
PATCH_EMBED_AS_GEMM = True


def patchify_linear(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """A conv whose stride equals its kernel (non-overlapping patches, no padding), as
    ``F.conv2d/conv3d(x, weight, bias, stride=kernel)`` computes it, via one copy of the patches into
    rows and one GEMM. x (B, C, *S) with S of 2 or 3 dims; weight (D, C, *K). Returns (B, D, *S // K),
    a view of channels-last memory (what the token layout needs next)."""
    kernel = weight.shape[2:]
    batch, chans = x.shape[:2]
    grid = [s // k for s, k in zip(x.shape[2:], kernel)]
    x = x[(slice(None), slice(None), *(slice(0, g * k) for g, k in zip(grid, kernel)))]
    split = [d for g, k in zip(grid, kernel) for d in (g, k)]
    x = x.reshape(batch, chans, *split)
    n = len(kernel)
    # (B, C, g0, k0, g1, k1, ...) -> (B, g0, g1, ..., C, k0, k1, ...): a row per patch, in weight's order
    order = [0, *range(2, 2 + 2 * n, 2), 1, *range(3, 3 + 2 * n, 2)]
    # the patches copied once, straight into the dtype F.linear computes in under autocast
    device = x.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
    rows = torch.empty(batch, *grid, chans, *kernel, dtype=dtype, device=x.device)
    rows.copy_(x.permute(order))
    out = F.linear(rows.view(-1, chans * math.prod(kernel)), weight.reshape(weight.shape[0], -1), bias)
    return out.view(batch, *grid, weight.shape[0]).movedim(-1, 1)


def resample_temporal_embed(embed: Tensor, num_frames: int) -> Tensor:
    """Linear interpolation of a (1, T, D) temporal embedding to ``num_frames`` entries."""
    if embed.shape[1] == num_frames:
        return embed
    out = F.interpolate(embed.float().transpose(1, 2), size=num_frames, mode="linear", align_corners=False)
    return out.transpose(1, 2).to(embed.dtype)


def resample_spatial_embed(embed: Tensor, new_grid: Sequence[int], old_grid: Sequence[int]) -> Tensor:
    """Bicubic resampling of a (1, 1 + H*W, D) position embedding (cls slot kept), as the authors'
    fine-tuning code does it (no antialiasing)."""
    if tuple(new_grid) == tuple(old_grid):
        return embed
    return resample_abs_pos_embed(embed, new_size=list(new_grid), old_size=list(old_grid),
                                  num_prefix_tokens=1, interpolation="bicubic", antialias=False)


GLOBAL_POOLS = ("token", "avg")


def check_global_pool(global_pool: str) -> str:
    """The pooling ``forward_head`` knows: 'token' (the cls token) or 'avg' (the mean of the others).
    Checked in the constructor and in ``reset_classifier`` alike, so no other value is mean-pooled
    silently."""
    if global_pool not in GLOBAL_POOLS:
        raise ValueError(f"global_pool must be 'token' or 'avg', got {global_pool!r}")
    return global_pool


def check_video_size(img_size: Union[int, Sequence[int]], patch_size: Union[int, Sequence[int]],
                     num_frames: Optional[int], kernel_size: int) -> None:
    """Sizes that leave no patch (an image side below the patch size) or no tubelet (fewer frames than
    ``kernel_size``) would build and only fail at the first forward, deep inside a conv or resize."""
    if kernel_size < 1:
        raise ValueError(f"kernel_size must be a positive number of frames, got {kernel_size}")
    if num_frames is not None and num_frames < kernel_size:
        raise ValueError(f"num_frames {num_frames} gives no tubelet of kernel_size {kernel_size} frames; "
                         f"expected num_frames >= {kernel_size}")
    if any(side < patch for side, patch in zip(to_2tuple(img_size), to_2tuple(patch_size))):
        raise ValueError(f"img_size {img_size} is smaller than one patch of {patch_size} pixels")


class VideoMamba(nn.Module):
    """VideoMamba for images (``num_frames=None``) and videos (input ``(B, C, T, H, W)``).

    Videos are cut into tubelets of ``kernel_size`` frames (stride ``kernel_size``): a clip whose
    frame count is not a multiple of it loses its last ``T % kernel_size`` frames, as in the authors'
    Conv3d patch embedding (e.g. 9 frames with kernel_size 2 are read as 4 tubelets of 8 frames).
    """

    def __init__(
        self,
        img_size: Union[int, Sequence[int]] = 224,
        patch_size: int = 16,
        depth: int = 24,
        embed_dim: int = 192,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "token",
        num_frames: Optional[int] = None,
        kernel_size: int = 1,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        fc_drop_rate: float = 0.0,
        norm: str = "rmsnorm",
        norm_epsilon: float = 1e-5,
        residual_in_fp32: bool = True,
        d_state: int = 16,
        d_conv: int = 4,
        expand: float = 2,
        dt_rank: Union[int, str] = "auto",
        ssm_cfg: Optional[Dict[str, Any]] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        channels = kwargs.pop("channels", None)  # the authors' name for in_chans
        if channels is not None:
            in_chans = channels
        for legacy in ("rms_norm", "fused_add_norm", "bimamba"):
            value = kwargs.pop(legacy, None)
            if legacy == "rms_norm" and value is not None:
                norm = "rmsnorm" if value else "layernorm"
            if legacy == "bimamba" and value is False:
                raise ValueError("only the bidirectional (bimamba) mixer of the published models is implemented")
        if kwargs:
            raise TypeError(f"unexpected arguments: {sorted(kwargs)}")
        check_global_pool(global_pool)
        check_video_size(img_size, patch_size, num_frames, kernel_size)
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.num_features = self.embed_dim = embed_dim
        self.num_frames = num_frames
        self.is_video = num_frames is not None
        self.residual_in_fp32 = residual_in_fp32
        self.depth = depth
        self.grad_checkpointing = False
        self._norm_kind = norm
        self._norm_epsilon = norm_epsilon
        self._mixer_kwargs: Dict[str, Any] = dict(d_state=d_state, d_conv=d_conv, expand=expand, dt_rank=dt_rank)
        self._mixer_kwargs.update(ssm_cfg or {})  # the authors' way of passing Mamba options

        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim,
                                      video=self.is_video, kernel_size=kernel_size)
        num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        if self.is_video:
            self.temporal_pos_embedding = nn.Parameter(torch.zeros(1, num_frames // kernel_size, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)

        dpr = [drop_path_rate * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]
        # Like the authors: block i drops the *previous* block's output with rate inter_dpr[i].
        inter_dpr = [0.0] + dpr
        self.layers = nn.ModuleList([self._make_layer(i, inter_dpr[i]) for i in range(depth)])
        self.feature_info = [dict(num_chs=embed_dim, reduction=patch_size, module=f"layers.{i}") for i in range(depth)]
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        self.norm_f = make_norm(norm, embed_dim, norm_epsilon)
        self.head_drop = nn.Dropout(fc_drop_rate) if fc_drop_rate > 0 else nn.Identity()
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    # -- construction -----------------------------------------------------------------------------
    def _make_layer(self, index: int, drop_path: float) -> nn.Module:
        return MambaBlock(self.embed_dim, norm=self._norm_kind, norm_epsilon=self._norm_epsilon,
                          residual_in_fp32=self.residual_in_fp32, drop_path=drop_path, **self._mixer_kwargs)

    def _init_weights(self) -> None:
        trunc_normal_(self.pos_embed, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                if module.bias is not None and not getattr(module.bias, "_no_reinit", False):
                    nn.init.zeros_(module.bias)
        for name, p in self.named_parameters():
            # GPT-2 style: shrink the projections that write into the residual stream.
            if name.endswith(("mixer.out_proj.weight", "mlp.fc2.weight")):
                nn.init.kaiming_uniform_(p, a=math.sqrt(5))
                with torch.no_grad():
                    p /= math.sqrt(self.depth)
        for module in self.modules():
            if isinstance(module, BiMambaMixer):
                # dt_proj weights have their own init; trunc_normal above replaced it.
                for suffix in ("", "_b"):
                    dt_proj = getattr(module, "dt_proj" + suffix)
                    std = module.dt_rank ** -0.5
                    nn.init.uniform_(dt_proj.weight, -std, std)

    # -- timm API ---------------------------------------------------------------------------------
    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        return {"pos_embed", "cls_token", "temporal_pos_embedding"}

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """A new head for ``num_classes`` (0: none); ``global_pool`` 'token' or 'avg' as in the constructor
        (None keeps the current one)."""
        if global_pool is not None:
            self.global_pool = check_global_pool(global_pool)
        self.num_classes = num_classes
        self.head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()

    def get_num_layers(self) -> int:
        return len(self.layers)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        """Parameter groups by depth for timm's layer-wise lr decay and ``group_parameters`` (timm's ViT
        convention; ``coarse`` gives the same groups): the embeddings (patch, cls, position, time); one
        group per block; the final norm with the last block (timm's MATCH_PREV_GROUP, 99999). The head,
        unmatched, comes last."""
        return dict(stem=r"^(?:cls_token|pos_embed|temporal_pos_embedding|patch_embed\.)",
                    blocks=[(r"^layers\.(\d+)\.", None), (r"^norm_f\.", (99999,))])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass instead of keeping them (timm's
        ``--grad-checkpointing``): applies wherever autograd records the forward."""
        self.grad_checkpointing = enable

    # -- forward ----------------------------------------------------------------------------------
    def _spatial_pos_embed(self, grid: Tuple[int, int]) -> Tensor:
        return resample_spatial_embed(self.pos_embed, grid, self.patch_embed.grid_size)

    def _tokens(self, x: Tensor) -> Tensor:
        """Patches + cls + position embeddings; videos are ordered frame by frame after the cls."""
        if self.is_video and x.dim() != 5:
            raise ValueError(f"video model expects (B, C, T, H, W), got {tuple(x.shape)}")
        if not self.is_video and x.dim() != 4:
            raise ValueError(f"image model expects (B, C, H, W), got {tuple(x.shape)}")
        self._check_input_size(x)
        x = self.patch_embed(x)
        batch, dim = x.shape[:2]
        grid = (x.shape[-2], x.shape[-1])
        pos = self._spatial_pos_embed(grid)
        cls = (self.cls_token + pos[:, :1]).expand(batch, -1, -1)
        if self.is_video:
            frames = x.shape[2]
            x = x.permute(0, 2, 3, 4, 1)                                        # (b, t, h, w, d)
            x = x.reshape(batch, frames, grid[0] * grid[1], dim) + pos[:, None, 1:]
            x = x + resample_temporal_embed(self.temporal_pos_embedding, frames)[:, :, None]
            x = x.reshape(batch, frames * grid[0] * grid[1], dim)
        else:
            x = x.flatten(2).transpose(1, 2) + pos[:, 1:]
        return torch.cat([cls, x], dim=1)

    def _check_input_size(self, x: Tensor) -> None:
        """At least one patch (and, for videos, one tubelet of frames): a smaller input would reach the
        patch conv and fail there without naming the input. Shapes only (guards under torch.compile)."""
        minimum = (*((self.patch_embed.tubelet_size,) if self.is_video else ()), *self.patch_embed.patch_size)
        if any(have < need for have, need in zip(x.shape[2:], minimum)):
            axes = "(T, H, W)" if self.is_video else "(H, W)"
            raise ValueError(f"input of shape {tuple(x.shape)} is smaller than one "
                             f"{'tubelet' if self.is_video else 'patch'}: {axes} must be at least {minimum}")

    def _run_layers(self, hidden: Tensor, take: Sequence[int] = (), stop: Optional[int] = None
                    ) -> Tuple[Optional[Tensor], list[Tensor]]:
        """The blocks on the tokens: the normalised final tokens (None when ``stop`` ends the walk
        after block ``stop``), and the residual stream after each block in ``take`` (a block's pending
        output added, as the next block does; drop path as in eval)."""
        residual: Optional[Tensor] = None
        taken: list[Tensor] = []
        # Each block is recomputed with the (hidden, residual) pair it was given: both are its inputs,
        # and both of its outputs carry gradients (the first block's residual is None).
        recompute = self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting()
        for i, layer in enumerate(self.layers):
            hidden, residual = (checkpoint(layer, hidden, residual, use_reentrant=False) if recompute
                                else layer(hidden, residual))
            if i in take:
                taken.append(residual + hidden)
            if i == stop:
                return None, taken
        residual = hidden if residual is None else residual + self.drop_path(hidden)
        return self.norm_f(residual.to(self.norm_f.weight.dtype)), taken

    def forward_features(self, x: Tensor) -> Tensor:
        """All normalised tokens (B, 1 + N, D); token 0 is the cls token."""
        return self._run_layers(self.pos_drop(self._tokens(x)))[0]

    def _token_grid(self, x: Tensor) -> Tuple[int, ...]:
        """The patch grid of an input: (H', W') for images, (T', H', W') for videos."""
        p_h, p_w = self.patch_embed.patch_size
        grid = (x.shape[-2] // p_h, x.shape[-1] // p_w)
        return (x.shape[2] // self.patch_embed.tubelet_size, *grid) if self.is_video else grid

    def forward_intermediates(self, x: Tensor, indices: Optional[Union[int, Sequence[int]]] = None,
                              return_prefix_tokens: bool = False, norm: bool = False, stop_early: bool = False,
                              output_fmt: str = "NCHW", intermediates_only: bool = False
                              ) -> Union[list, Tuple[Tensor, list]]:
        """timm's feature API (``features_only=True``, timm's ViT conventions): the residual stream
        after each block in ``indices`` (an int n: the last n blocks), without the cls token, as maps
        (``NCHW``: (B, D, H', W') for images, (B, D, T', H', W') for videos) or tokens (``NLC``),
        each through the final norm with ``norm``; ``return_prefix_tokens`` pairs each with its cls
        token (B, 1, D)."""
        if output_fmt not in ("NCHW", "NLC"):
            raise ValueError(f"output_fmt {output_fmt!r}: VideoMamba gives 'NCHW' maps or 'NLC' tokens")
        take, last = feature_take_indices(len(self.layers), indices)
        grid = self._token_grid(x)
        final, taken = self._run_layers(self.pos_drop(self._tokens(x)), take,
                                        stop=last if stop_early or intermediates_only else None)
        intermediates: list = []
        for stream in taken:
            if norm:
                stream = self.norm_f(stream.to(self.norm_f.weight.dtype))
            cls, tokens = stream[:, :1], stream[:, 1:]
            if output_fmt == "NCHW":
                tokens = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)
            intermediates.append((tokens, cls) if return_prefix_tokens else tokens)
        if intermediates_only:
            return intermediates
        if final is None:  # stopped early: the last stream taken, normalised, stands for the output
            final = self.norm_f(taken[-1].to(self.norm_f.weight.dtype))
        return final, intermediates

    def prune_intermediate_layers(self, indices: Union[int, Sequence[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drops the blocks after the last one taken (and the final norm and the head, where asked)."""
        take, last = feature_take_indices(len(self.layers), indices)
        self.layers = self.layers[:last + 1]
        if prune_norm:
            self.norm_f = nn.Identity()
        if prune_head:
            self.reset_classifier(0)
        return take

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = x[:, 0] if self.global_pool == "token" else x[:, 1:].mean(dim=1)
        return x if pre_logits else self.head(self.head_drop(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def _inflate_patch_weight(weight: Tensor, frames: int) -> Tensor:
    """2D patch kernel -> 3D tubelet kernel, centred in time like the authors' ``inflate_weight``."""
    out = weight.new_zeros(weight.shape[0], weight.shape[1], frames, *weight.shape[2:])
    out[:, :, frames // 2] = weight
    return out


def checkpoint_filter_fn(state_dict: Dict[str, Tensor], model: VideoMamba) -> Dict[str, Tensor]:
    """Adapt an authors' checkpoint to ``model``: unwrap ``model``/``module``, resample position
    embeddings to the model's grid and frame count, inflate a 2D patch kernel into a video model."""
    for key in ("model", "module", "state_dict"):
        if key in state_dict and isinstance(state_dict[key], dict):
            state_dict = state_dict[key]
            break
    state_dict = dict(state_dict)
    own = model.state_dict()
    pos = state_dict.get("pos_embed")
    if pos is not None and pos.shape != own["pos_embed"].shape:
        old = int(math.sqrt(pos.shape[1] - 1))
        if old * old != pos.shape[1] - 1:
            raise ValueError(f"cannot infer the grid of a {tuple(pos.shape)} pos_embed")
        state_dict["pos_embed"] = resample_spatial_embed(pos, model.patch_embed.grid_size, (old, old))
    temporal = state_dict.get("temporal_pos_embedding")
    if temporal is not None and "temporal_pos_embedding" in own:
        state_dict["temporal_pos_embedding"] = resample_temporal_embed(
            temporal, own["temporal_pos_embedding"].shape[1])
    elif temporal is not None:
        del state_dict["temporal_pos_embedding"]
    proj = state_dict.get("patch_embed.proj.weight")
    target = own["patch_embed.proj.weight"]
    if proj is not None and proj.dim() == 4 and target.dim() == 5:
        state_dict["patch_embed.proj.weight"] = _inflate_patch_weight(proj, target.shape[2])
    return state_dict


# ---------------------------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------------------------

def _cfg(video: bool = False, **kwargs: Any) -> Dict[str, Any]:
    cfg = dict(
        url="", num_classes=400 if video else 1000, input_size=(3, 224, 224), pool_size=None,
        # Images: Resize(224/0.875, bicubic) + CenterCrop (image_sm/datasets.py). Videos: short side
        # resized to 224 (bilinear), 3 crops of 224 x 4 clips (video_sm test loaders).
        crop_pct=1.0 if video else 0.875, interpolation="bilinear" if video else "bicubic",
        mean=IMAGENET_MEAN, std=IMAGENET_STD, first_conv="patch_embed.proj", classifier="head",
        license="apache-2.0", paper_ids="arXiv:2403.06977",
        paper_name="VideoMamba: State Space Model for Efficient Video Understanding",
        origin_url="https://github.com/OpenGVLab/VideoMamba",
    )
    cfg.update(kwargs)
    return cfg


_SIZES: Dict[str, Dict[str, Any]] = {
    "tiny": dict(patch_size=16, embed_dim=192, depth=24),
    "small": dict(patch_size=16, embed_dim=384, depth=24),
    "middle": dict(patch_size=16, embed_dim=576, depth=32),
    "base": dict(patch_size=16, embed_dim=768, depth=24),
}

default_cfgs: Dict[str, Dict[str, Any]] = {}
for _size in _SIZES:
    default_cfgs[f"videomamba_{_size}"] = _cfg()
    default_cfgs[f"videomamba_{_size}_video"] = _cfg(video=True)


def create_model_with_cfg(cls: type, variant: str, pretrained: bool, defaults: Dict[str, Any],
                          **kwargs: Any) -> nn.Module:
    """Shared builder: size defaults overridable by any kwarg (so small test configs build)."""
    if pretrained:
        raise ValueError(f"{variant}: timm-side pretrained loading is not wired; load weights with "
                         "ssmzoo's weights manifest (the checkpoints go through checkpoint_filter_fn)")
    args = dict(defaults)
    args.update(kwargs)
    # features_only: timm's getter over forward_intermediates; by default the last 3 blocks, as timm's
    # ViTs; feature_cfg=dict(norm=True, output_fmt="NLC") reaches the getter (``norm`` is the blocks')
    feature_cfg = dict(feature_cls="getter", out_indices=3, **args.pop("feature_cfg", None) or {})
    return build_model_with_cfg(cls, variant, pretrained=False, pretrained_filter_fn=checkpoint_filter_fn,
                                feature_cfg=feature_cfg, **args)


def _image(size: str, pretrained: bool, **kwargs: Any) -> VideoMamba:
    return create_model_with_cfg(VideoMamba, f"videomamba_{size}", pretrained, _SIZES[size], **kwargs)


def _video(size: str, pretrained: bool, **kwargs: Any) -> VideoMamba:
    kwargs.setdefault("num_frames", 8)
    return create_model_with_cfg(VideoMamba, f"videomamba_{size}_video", pretrained, _SIZES[size], **kwargs)


@register_model
def videomamba_tiny(pretrained: bool = False, **kwargs: Any) -> VideoMamba:
    """VideoMamba-Ti (192 wide, 24 blocks), image input."""
    return _image("tiny", pretrained, **kwargs)


@register_model
def videomamba_small(pretrained: bool = False, **kwargs: Any) -> VideoMamba:
    """VideoMamba-S (384 wide, 24 blocks), image input."""
    return _image("small", pretrained, **kwargs)


@register_model
def videomamba_middle(pretrained: bool = False, **kwargs: Any) -> VideoMamba:
    """VideoMamba-M (576 wide, 32 blocks), image input."""
    return _image("middle", pretrained, **kwargs)


@register_model
def videomamba_base(pretrained: bool = False, **kwargs: Any) -> VideoMamba:
    """VideoMamba-B (768 wide, 24 blocks), image input."""
    return _image("base", pretrained, **kwargs)


@register_model
def videomamba_tiny_video(pretrained: bool = False, **kwargs: Any) -> VideoMamba:
    """VideoMamba-Ti for clips (B, C, T, H, W); ``num_frames`` defaults to 8."""
    return _video("tiny", pretrained, **kwargs)


@register_model
def videomamba_small_video(pretrained: bool = False, **kwargs: Any) -> VideoMamba:
    """VideoMamba-S for clips (B, C, T, H, W); ``num_frames`` defaults to 8."""
    return _video("small", pretrained, **kwargs)


@register_model
def videomamba_middle_video(pretrained: bool = False, **kwargs: Any) -> VideoMamba:
    """VideoMamba-M for clips (B, C, T, H, W); ``num_frames`` defaults to 8."""
    return _video("middle", pretrained, **kwargs)


@register_model
def videomamba_base_video(pretrained: bool = False, **kwargs: Any) -> VideoMamba:
    """VideoMamba-B for clips (no published video checkpoint; for fine-tuning from the IN-1k base)."""
    return _video("base", pretrained, **kwargs)
