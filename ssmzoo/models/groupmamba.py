"""GroupMamba: parameter-efficient vision backbone built from Modulated Group Mamba blocks.

Paper: "GroupMamba: Parameter-Efficient and Accurate Group Visual State Space Model"
(Shaker et al., CVPR 2025). Checkpoints: https://huggingface.co/Abdelrahman-shaker

A clean reimplementation that keeps the published state-dict key names, so the authors'
checkpoints load with ``strict=True``. Layout of the network (tokens are channels-last)::

    Stem (3 conv-BN-ReLU, stride 2; conv stride 2; LayerNorm)  -> stage 1 blocks -> norm1
    DownSamples (conv 3x3 stride 2; LayerNorm)                  -> stage 2..4 blocks -> norm2..3
    class token = mean of stage-4 tokens -> ClassBlock (GroupMambaLayer + MLP) -> norm4
    logits = (head + dist_head) / 2 in eval mode

Every token mixer is a ``GroupMambaLayer``: the channels are split in 4 groups, each group runs its
own single-direction SS2D (d_state=1) along a different direction of the feature map (row-major,
column-major, and both reversed), the groups are concatenated again and modulated by a
squeeze-and-excitation style "Channel Affinity Modulation" gate.

All four directional scans go through one function, ``group_scan_4dir``, which takes the groups in
the natural (row-major) spatial layout and returns the merged output in the same layout; a fused GPU
kernel can replace it through ``register_group_scan_backend``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint

from ssmzoo.ops import scan_backend, selective_scan
from ssmzoo.ops.cpu_onednn import PackedLinear, conv2d_act, invalidate_caches
from ssmzoo.ops.directions import merge_order, scan_order  # noqa: F401  (public here too, as before)
from ssmzoo.ops.group_norm import group_norm_gate
from ssmzoo.ops.opaque import call_op

__all__ = [
    "GroupMamba",
    "GroupMambaLayer",
    "SS2D",
    "group_scan_4dir",
    "group_scan_4dir_norm_gate",
    "group_scan_4dir_torch",
    "register_group_scan_backend",
    "scan_order",
    "merge_order",
]

NUM_DIRECTIONS = 4


# The four scan directions (group k along direction k): ssmzoo/ops/directions.py.

def group_scan_4dir_torch(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                          D: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None,
                          delta_softplus: bool = True) -> Tensor:
    """Reference path: reorder each group into its scan order, one grouped selective scan, reorder back.

    Shapes (spatial dims always in the natural row-major layout):
        u, delta      (batch, 4, d, H, W)   group k is scanned along direction k
        A             (4, d, N)             already negative (-exp(A_logs))
        B, C          (batch, 4, N, H, W)   input-dependent, one per group
        D, delta_bias (4, d)
    Returns y (batch, 4, d, H, W) with u's dtype, merged back into the row-major layout.
    """
    batch, groups, dim, height, width = u.shape
    if groups != NUM_DIRECTIONS:
        raise ValueError(f"expected {NUM_DIRECTIONS} channel groups, got {groups}")
    length = height * width

    def to_seq(t: Tensor) -> Tensor:  # (batch, 4, c, H, W) -> (batch, 4, c, L), one copy per layout
        b, _, c = t.shape[:3]
        seq = t.new_empty(b, groups, c, length)
        seq[:, 0::2].unflatten(-1, (height, width)).copy_(t[:, 0::2])                  # row-major
        seq[:, 1::2].unflatten(-1, (width, height)).copy_(t[:, 1::2].transpose(-1, -2))  # column-major
        seq[:, 2:] = seq[:, 2:].flip(-1)                                                # reversed
        return seq

    y = selective_scan(
        to_seq(u).view(batch, groups * dim, length),
        to_seq(delta).view(batch, groups * dim, length),
        A.reshape(groups * dim, -1),
        to_seq(B),
        to_seq(C),
        D=None if D is None else D.reshape(-1),
        delta_bias=None if delta_bias is None else delta_bias.reshape(-1),
        delta_softplus=delta_softplus,
    ).view(batch, groups, dim, length)
    # back to the row-major layout, written straight into a tensor laid out like u (its strides
    # when u is a dense permuted view, so that callers get their channels-last layout back)
    y = torch.cat([y[:, :2], y[:, 2:].flip(-1)], dim=1)  # not in place: a scan may keep y for backward
    out = torch.empty_like(u, dtype=y.dtype)
    out[:, 0::2].copy_(y[:, 0::2].unflatten(-1, (height, width)))
    out[:, 1::2].copy_(y[:, 1::2].unflatten(-1, (width, height)).transpose(-1, -2))
    return out


GroupScanFn = Callable[..., Tensor]
_GROUP_SCAN_BACKENDS: dict[str, GroupScanFn] = {"torch": group_scan_4dir_torch}


def register_group_scan_backend(name: str, fn: GroupScanFn) -> None:
    """Lets a fused kernel (same signature as ``group_scan_4dir_torch``) take over for backend ``name``.

    The backend is picked by ``ssmzoo.ops.scan_backend`` (``SSMZOO_SCAN`` or the device); a backend
    without a fused 4-direction kernel falls back to the torch layout around its plain scan.
    """
    _GROUP_SCAN_BACKENDS[name] = fn


def group_scan_4dir(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
                    D: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None,
                    delta_softplus: bool = True, out_dtype: Optional[torch.dtype] = None) -> Tensor:
    """The 4-direction grouped scan of a GroupMambaLayer; see ``group_scan_4dir_torch`` for shapes.

    ``out_dtype`` (default: u's) is y's dtype. The fused kernel widens bfloat16/float16 inputs to
    float32 in registers (exactly) and writes y in ``out_dtype``, so low-precision activations need
    no float32 copies in memory; other backends get u converted to ``out_dtype`` first.
    """
    backend = scan_backend(u.device)
    if backend == "triton" and backend not in _GROUP_SCAN_BACKENDS:
        from ssmzoo.ops.triton_scan import group_scan_4dir_op  # fused: no layout copies around the scan

        register_group_scan_backend("triton", group_scan_4dir_op)
    fn = _GROUP_SCAN_BACKENDS.get(backend, group_scan_4dir_torch)
    if backend == "triton":
        return call_op(fn, u, delta, A, B, C, D=D, delta_bias=delta_bias, delta_softplus=delta_softplus,
                       out_dtype=out_dtype)
    if out_dtype is not None:
        u = u.to(out_dtype)
    return fn(u, delta, A, B, C, D=D, delta_bias=delta_bias, delta_softplus=delta_softplus)


# Where the out_norm and gate run inside the scan kernel (``group_scan_4dir_norm_gate``): True where
# that was measured faster (``_norm_gate_in_scan``), "all" on every channels-last map, False nowhere
# (the scan writes float32 y, then Inductor's norm + gate kernel).
NORM_GATE_IN_SCAN: bool | str = True


def _norm_gate_in_scan(u: Tensor) -> bool:
    """Whether the scan of u (batch, 4, d, H, W) runs with the norm and gate fused (``NORM_GATE_IN_SCAN``):
    channels-last maps on the Triton backend, except maps of 28x28 and more whose groups are not a
    multiple of 16 channels (GroupMamba-B's stage 1, d 24: rows without vector loads).

    Compiled blocks on the H100, bf16, batch 128, fused against unfused (benchmarks/ab_block.py;
    docs/gpu_runs/s20_run1.txt and s20_run2.txt): GroupMamba-T stage 1 1572.5 vs 1622.6 us, stage 2
    834.2 vs 866.1, stage 3 694.6 vs 695.3-699.7 (even), stage 4 215.5 vs 218.7; GroupMamba-B stage 2
    1251.0 vs 1291.7, stage 3 847.6 vs 871.9-895.2, but stage 1 2669.7 vs 2533.0-2542.9 (the kernel
    alone: 609 vs 375 us for the plain scan, benchmarks/scan.py --norm-gate).
    """
    if scan_backend(u.device) != "triton" or u.shape[2] < 2 or u.stride(2) != 1 or not NORM_GATE_IN_SCAN:
        return False
    H, W = u.shape[-2:]
    return NORM_GATE_IN_SCAN == "all" or u.shape[2] % 16 == 0 or H * W < 28 * 28


# x_proj / out_proj computed inside the norm-gate scan kernel where its tiles allow it
# (``_projections_in_scan``); False: they stay GEMMs around the scan.
X_PROJ_IN_SCAN = True
OUT_PROJ_IN_SCAN = True


def _projections_in_scan(u: Tensor) -> bool:
    """Whether the norm-gate scan of u can also compute the groups' projections (``X_PROJ_IN_SCAN``,
    ``OUT_PROJ_IN_SCAN``): where it runs (``_norm_gate_in_scan``) with tiles large enough for the
    tensor cores (``triton_lookback.projections_fit``)."""
    if not _norm_gate_in_scan(u):
        return False
    from ssmzoo.ops.triton_lookback import projections_fit

    return projections_fit(u.shape[2])


def group_scan_4dir_norm_gate(u: Tensor, delta: Optional[Tensor], A: Tensor, B: Optional[Tensor], C: Optional[Tensor],
                              D: Optional[Tensor], delta_bias: Optional[Tensor], delta_softplus: bool,
                              norm_weight: Tensor, norm_bias: Tensor, eps: float, z: Tensor,
                              pad: int = 0, x_proj: Optional[Tensor] = None,
                              out_proj: Optional[Tensor] = None) -> Tensor:
    """``group_norm_gate(group_scan_4dir(...) in float32 (float64 models: float64), ...)``: the scan,
    each group's LayerNorm and the SiLU(z) gate, in z's dtype; z (batch, 4, d, H, W) like u. Returned
    as out_proj reads it: (batch, H, W, 4 * d + pad), the last ``pad`` channels zeros (``_gemm_pad``).

    On the Triton backend, for d_state 1 on channels-last maps (``NORM_GATE_IN_SCAN``), one kernel:
    the look-back scan normalises and gates y in registers, so the float32 y is never written and
    read back (at GroupMamba-T's stage 1: 103 MB each way per layer, batch 128).

    ``x_proj`` (4, d + 2, d) and ``out_proj`` (4, d, d), only where ``_projections_in_scan``: the
    kernel computes delta, B and C (then None) from u (each group's x_proj, dt_proj folded into its
    delta rows), and returns each group's out_proj of the gated y instead of y.
    """
    if x_proj is not None or out_proj is not None or (B.shape[2] == 1 and _norm_gate_in_scan(u)):
        # (out_proj's output feeds the product with x, no GEMM: it is never widened)
        from ssmzoo.ops.triton_scan import group_scan_4dir_norm_gate_op

        # the projections in the dtypes the kernel multiplies them in, cast here where freezing folds
        # the casts (inside the operator they were a copy kernel per call)
        x_proj = None if x_proj is None else x_proj.to(u.dtype)
        out_proj = None if out_proj is None else out_proj.to(z.dtype)
        return call_op(group_scan_4dir_norm_gate_op, u, delta, A, B, C, D, delta_bias, delta_softplus,
                       norm_weight, norm_bias, eps, z, pad, x_proj, out_proj)
    y = group_scan_4dir(u, delta, A, B, C, D=D, delta_bias=delta_bias, delta_softplus=delta_softplus,
                        out_dtype=torch.promote_types(u.dtype, torch.float32))  # float64 models keep float64
    to_maps = lambda t: t.permute(0, 3, 4, 1, 2)  # noqa: E731  (B, 4, d, H, W) -> (B, H, W, 4, d)
    # compiled, Inductor writes the norm's output into the wider buffer (see _zero_columns)
    return _zero_columns(group_norm_gate(to_maps(y), norm_weight, norm_bias, eps, to_maps(z)).flatten(-2), pad)


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------

class SS2D(nn.Module):
    """One group's selective state-space mixer (VMamba SS2D, reduced to a single direction).

    Only a parameter holder: the GroupMambaLayer runs its four SS2D groups together as batched ops
    (see ``GroupMambaLayer.forward``), which is the same function with a quarter of the launches.
    """

    def __init__(self, d_model: int, d_state: int = 1, ssm_ratio: float = 1.0, d_conv: int = 3,
                 dt_min: float = 0.001, dt_max: float = 0.1, dt_init_floor: float = 1e-4) -> None:
        super().__init__()
        d_inner = int(ssm_ratio * d_model)
        self.d_state = d_state
        self.dt_rank = math.ceil(d_model / 16)
        # Parameters stacked with a leading "K" (number of directions) axis of size 1, as published.
        self.x_proj_weight = nn.Parameter(torch.empty(1, self.dt_rank + 2 * d_state, d_inner))
        self.dt_projs_weight = nn.Parameter(torch.empty(1, d_inner, self.dt_rank))
        self.dt_projs_bias = nn.Parameter(torch.empty(1, d_inner))
        self.A_logs = nn.Parameter(torch.empty(d_inner, d_state))
        self.Ds = nn.Parameter(torch.ones(d_inner))
        self.A_logs._no_weight_decay = True
        self.Ds._no_weight_decay = True
        self.out_norm = nn.LayerNorm(d_inner)
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv2d = nn.Conv2d(d_inner, d_inner, kernel_size=d_conv, padding=(d_conv - 1) // 2,
                                groups=d_inner, bias=True)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)
        self._init_ssm(dt_min, dt_max, dt_init_floor)

    @torch.no_grad()
    def _init_ssm(self, dt_min: float, dt_max: float, dt_init_floor: float) -> None:
        # Mamba's init: softplus(dt_bias) log-uniform in [dt_min, dt_max]; S4D-real A = -(1..N).
        nn.init.uniform_(self.x_proj_weight, -self.x_proj_weight.shape[-1] ** -0.5,
                         self.x_proj_weight.shape[-1] ** -0.5)
        std = self.dt_rank ** -0.5
        nn.init.uniform_(self.dt_projs_weight, -std, std)
        dt = torch.exp(torch.rand(self.dt_projs_bias.shape[-1]) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min)).clamp(min=dt_init_floor)
        self.dt_projs_bias.copy_((dt + torch.log(-torch.expm1(-dt)))[None])
        A = torch.arange(1, self.d_state + 1, dtype=torch.float32).expand_as(self.A_logs)
        self.A_logs.copy_(torch.log(A))
        self.Ds.fill_(1.0)

    @property
    def A(self) -> Tensor:
        return -torch.exp(self.A_logs.float())


class GroupMambaLayer(nn.Module):
    """Modulated Group Mamba token mixer: 4 channel groups x 4 scan directions + channel affinity gate."""

    def __init__(self, input_dim: int, output_dim: int, d_state: int = 1, d_conv: int = 3,
                 expand: float = 1.0, reduction: int = 16) -> None:
        super().__init__()
        if input_dim % NUM_DIRECTIONS:
            raise ValueError(f"GroupMambaLayer needs a channel count divisible by 4, got {input_dim}")
        self.skip_scale = nn.Parameter(torch.ones(1))
        # Channel Affinity Modulation (squeeze-excitation on the normalised input).
        self.fc1 = nn.Linear(input_dim, input_dim // reduction)
        self.fc2 = nn.Linear(input_dim // reduction, output_dim)
        self.norm = nn.LayerNorm(input_dim)  # default eps 1e-5, as published, whatever norm_layer is
        group_dim = input_dim // NUM_DIRECTIONS
        for k in range(NUM_DIRECTIONS):
            self.add_module(f"mamba_g{k + 1}", SS2D(group_dim, d_state=d_state, ssm_ratio=expand, d_conv=d_conv))
        self.proj = PackedLinear(input_dim, output_dim)

    def groups(self) -> list[SS2D]:
        return [getattr(self, f"mamba_g{k + 1}") for k in range(NUM_DIRECTIONS)]

    def _stacked(self, name: str, dim: int = 0) -> Tensor:
        """One of the groups' parameters (dotted ``name``) for all 4 groups, stacked (or, with
        ``dim=None``, concatenated along dim 0).

        The checkpoints keep one SS2D module per group, but running the groups as single batched
        ops (4x fewer, larger kernels) needs their weights side by side; the parameters are small,
        so building the stack on every forward is cheap and keeps the published state-dict layout.
        """
        params = []
        for m in self.groups():
            for attr in name.split("."):
                m = getattr(m, attr)
            params.append(m)
        return torch.cat(params) if dim is None else torch.stack(params, dim=dim)

    def _group_weights(self, x: Tensor) -> dict[str, Tensor]:
        """The groups' parameters stacked for the batched ops of ``forward``, in the form they are used.

        With autograd off (and outside torch.compile, which traces the stacking into its graph) the stack is
        kept between calls (at batch 1 the ~20 small stack/cat/cast kernels per layer cost more than the
        layer's scan; on the GPU they are launches). The cache is keyed on every parameter, its storage
        and its version counter, so replacing a parameter, ``.to()``, ``load_state_dict``, optimizer steps
        and in-place ops on the parameters (under ``torch.no_grad()`` too) rebuild it. Writes through
        ``p.data`` (``p.data.mul_(2)``) or numpy views do not move the version counter and are not
        noticed: call ``invalidate_cache()`` (or ``GroupMamba.invalidate_caches()``) after them. Comparing
        the contents instead would cost about as much as rebuilding. In training it is rebuilt on every call.
        """
        cacheable = (x.device.type in ("cpu", "cuda") and not torch.is_grad_enabled()
                     and not torch.compiler.is_compiling() and not torch.jit.is_tracing())
        if cacheable:
            params = [p for m in self.groups() for p in _parameters_of(m)]
            key = [(p.data_ptr(), p._version, p.dtype) for p in params]
            cached = self.__dict__.get("_group_weights_cache")
            # the cache holds the parameters and their storages, so neither an id nor an address
            # can be reused by a replacement while it lives
            if (cached is not None and cached[1] == key and len(cached[0]) == len(params)
                    and all(a is b for a, b in zip(cached[0], params))):
                return cached[3]
        weights = {
            "in_proj": self._stacked("in_proj.weight"),
            "conv_weight": _depthwise_weight(self._stacked("conv2d.weight", dim=None), x),
            "conv_bias": self._stacked("conv2d.bias", dim=None),
            "x_proj": _scan_precision(self._stacked("x_proj_weight")[:, 0]),
            "dt_proj": _scan_precision(self._stacked("dt_projs_weight")[:, 0]),
            "A": -torch.exp(_scan_precision(self._stacked("A_logs"))),
            "D": _scan_precision(self._stacked("Ds")),
            "delta_bias": _scan_precision(self._stacked("dt_projs_bias")[:, 0]),
            "norm_weight": self._stacked("out_norm.weight"),
            "norm_bias": self._stacked("out_norm.bias"),
            "out_proj": self._stacked("out_proj.weight"),
        }
        if _dense_projections(x):
            weights.update(_block_diagonal_projections(weights))
        if cacheable:
            self.__dict__["_group_weights_cache"] = (params, key, [p.detach() for p in params], weights)
        return weights

    def invalidate_cache(self) -> None:
        """Drops the stacked group weights (``_group_weights``), rebuilt on the next forward."""
        self.__dict__.pop("_group_weights_cache", None)

    def forward(self, x: Tensor, H: int, W: int) -> Tensor:
        if x.dtype == torch.float16 and self.norm.weight.dtype != torch.float16:
            x = x.float()  # as published (float16 activations of a float32 model); a .half() model stays float16
        batch, _, channels = x.shape
        x = self.norm(x)
        x_gemm = _gemm_input(x)  # what in_proj reads; the gate's mean reads it too (see _gemm_input)
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(_gate_input(x_gemm, self.fc1.weight)))))  # (B, C)

        # The 4 SS2D groups as batched ops on channels-last (B, H, W, 4, .) tensors; einsum's "g" is
        # the group axis. Same ops, dtypes and order as running each group alone.
        g1 = self.mamba_g1
        d_inner, dt_rank, d_state = g1.Ds.shape[0], g1.dt_rank, g1.d_state
        x = x.view(batch, H, W, NUM_DIRECTIONS, channels // NUM_DIRECTIONS)
        w = self._group_weights(x)
        dense = "in_proj_dense" in w  # CUDA: block-diagonal dense GEMMs (see _block_diagonal_projections)
        width = NUM_DIRECTIONS * d_inner
        # Compiled for CUDA, u is carried `pad` channels wider, zeros throughout (zero weight rows in
        # in_proj, zero conv weights and bias, SiLU(0) = 0), so that x_proj reads 16-byte aligned rows
        # straight from the conv's output (see _aligned_linear); the scan reads the first `width` channels.
        pad = _gemm_pad(width, x) if dense else 0
        conv_weight, conv_bias = w["conv_weight"], w["conv_bias"]
        if dense:  # every group's u, then every group's z: u is a view of the GEMM's output, no copy
            in_proj = w["in_proj_dense"]
            if pad:
                in_proj = torch.cat([F.pad(in_proj[:width], (0, 0, 0, pad)), F.pad(in_proj[width:], (0, 0, 0, pad))])
                conv_weight, conv_bias = F.pad(conv_weight, (0, 0, 0, 0, 0, 0, 0, pad)), F.pad(conv_bias, (0, pad))
            xz = _aligned_linear(x_gemm.view(batch, H, W, channels), in_proj)
            u, z = xz.split(width + pad, dim=-1)
            z = z[..., :width].unflatten(-1, (NUM_DIRECTIONS, d_inner))
        else:      # per group [u, z]: u is copied to channels-last once, for the conv
            u, z = torch.einsum("bhwgc,gjc->bhwgj", x, w["in_proj"]).split(d_inner, dim=-1)
            u = u.reshape(batch, H, W, width)
        # one depthwise conv over the 4 * d_inner channels
        u = u.permute(0, 3, 1, 2)
        conv = g1.conv2d
        if DWConv.use_fused_kernel(u, conv):  # conv + bias + SiLU in one Triton kernel
            from ssmzoo.ops import triton_dwconv

            u = triton_dwconv.dwconv3x3_act(u, triton_dwconv.tap_major(conv_weight), conv_bias, "silu")
        else:
            u = conv2d_act(u, conv_weight, conv_bias, conv.stride, conv.padding, conv.dilation, u.shape[1], "silu")
        u = u.permute(0, 2, 3, 1)  # (B, H, W, width + pad), a view if channels-last
        # The projections act on each position separately, so they are computed in the spatial
        # layout; only the recurrence itself depends on the scan direction. The authors force the
        # scan inputs to float32: x_proj gets them so (under autocast its GEMM casts them back anyway,
        # see _x_proj_input), the scan widens them itself (in registers; y float32 before the norm).
        to_scan = lambda t: t.permute(0, 3, 4, 1, 2)  # noqa: E731  (B, H, W, 4, c) -> (B, 4, c, H, W) view
        x_proj_in_scan = out_proj_in_scan = False
        if dense:  # delta, B and C of all groups from one GEMM, dt_proj folded into x_proj
            u_wide, u = u, u[..., :width].unflatten(-1, (NUM_DIRECTIONS, d_inner))
            in_scan = d_state == 1 and _projections_in_scan(to_scan(u))
            x_proj_in_scan, out_proj_in_scan = in_scan and X_PROJ_IN_SCAN, in_scan and OUT_PROJ_IN_SCAN
            if x_proj_in_scan:  # or in the scan kernel, from the u it reads (group_scan_4dir_norm_gate)
                dts = Bs = Cs = None
            else:
                x_proj = F.pad(w["x_proj_dense"], (0, pad)) if pad else w["x_proj_dense"]
                x_dbl = F.linear(_x_proj_input(u_wide), x_proj)
                dts, Bs, Cs = torch.split(x_dbl, [width, NUM_DIRECTIONS * d_state, NUM_DIRECTIONS * d_state], dim=-1)
                dts, Bs, Cs = (to_scan(t.unflatten(-1, (NUM_DIRECTIONS, -1))) for t in (dts, Bs, Cs))
        else:
            u = u.reshape(batch, H, W, NUM_DIRECTIONS, d_inner)
            x_dbl = torch.einsum("bhwgd,gcd->bhwgc", _scan_precision(u), w["x_proj"])
            dts, Bs, Cs = torch.split(x_dbl, [dt_rank, d_state, d_state], dim=-1)
            dts = torch.einsum("bhwgr,gdr->bhwgd", dts, w["dt_proj"])
            dts, Bs, Cs = to_scan(dts), to_scan(Bs), to_scan(Cs)

        # the scan, each group's out_norm (all 4 use LayerNorm's default eps) and the SiLU(z) gate, as
        # (B, H, W, width + pad): out_proj's input, its rows widened by zeros like the other GEMMs' inputs
        y = group_scan_4dir_norm_gate(
            to_scan(u), dts, w["A"], Bs, Cs, D=w["D"], delta_bias=w["delta_bias"],
            delta_softplus=True, norm_weight=w["norm_weight"], norm_bias=w["norm_bias"], eps=g1.out_norm.eps,
            z=to_scan(z), pad=0 if out_proj_in_scan else pad, x_proj=w["x_proj_groups"] if x_proj_in_scan else None,
            out_proj=w["out_proj"] if out_proj_in_scan else None,
        )
        if out_proj_in_scan:  # the kernel applied out_proj already
            y = y.unflatten(-1, (NUM_DIRECTIONS, -1))
        elif dense:
            out_proj = F.pad(w["out_proj_dense"], (0, pad)) if pad else w["out_proj_dense"]
            y = F.linear(y, out_proj).unflatten(-1, (NUM_DIRECTIONS, -1))
        else:
            y = torch.einsum("bhwgd,gmd->bhwgm", y.unflatten(-1, (NUM_DIRECTIONS, d_inner)), w["out_proj"])

        # x first: the product takes x's (contiguous) layout; multiplication commutes exactly.
        if PRODUCT_WITH_GEMM_INPUT:  # the normalised x as in_proj read it (see PRODUCT_WITH_GEMM_INPUT)
            x = x_gemm.view(x.shape)
        y = (x * (y * self.skip_scale)).view(batch, H * W, channels)
        y = y * gate.unsqueeze(1)
        return _linear(self.proj, self.norm(y))


# True: the mixer's final product x * y reads the normalised x as in_proj's GEMM reads it (under autocast
# its low-precision copy; otherwise x itself), so that the float32 normalised x is not kept for it:
# Inductor then writes the norm's output once, in the GEMM's dtype. Compiled GroupMamba-T blocks on the
# H100 (bf16, batch 128, benchmarks/ab_block.py, docs/gpu_runs/s22_run2.txt), us per block against two
# compiles of the old code: stage 1 1423.0 vs 1476.8 / 1471.8, stage 2 845.8 vs 842.2 / 818.7, stage 3
# 655.7 vs 674.1 / 671.1, stage 4 209.3 vs 215.9 / 215.4; outputs within 3e-4 to 1.7e-3 (the bf16
# rounding of x). False: the float32 x as published (ab_switches AB_X_FLOAT32).
PRODUCT_WITH_GEMM_INPUT = True


def _parameters_of(module: nn.Module) -> list[Tensor]:
    """``module.parameters()`` as a list (shared ones repeated), read from the modules' dicts: the
    generator chain behind ``parameters()`` took ~35 us per GroupMamba layer on every eager forward
    for ``_group_weights``' cache check (on this repository's CPU the check takes 26 us instead of 48)."""
    params = [p for p in module._parameters.values() if p is not None]
    for child in module._modules.values():
        if child is not None:
            params += _parameters_of(child)
    return params


def _gate_input(x: Tensor, fc1_weight: Tensor) -> Tensor:
    """The gate's squeeze: the mean over all positions of x (B, L, C), accumulated in float32 (float64
    for a float64 model) and handed to fc1 in its weight's dtype. For a float32 model (and under
    autocast, whose parameters are float32) the cast is a no-op; a model cast to bfloat16, float16 or
    float64 gets fc1's own dtype, which its GEMM needs."""
    mean = x.mean(dim=1, dtype=torch.promote_types(x.dtype, torch.float32))
    return mean.to(fc1_weight.dtype)


def _scan_precision(t: Tensor) -> Tensor:
    """t in at least float32: the authors force the scan's inputs and parameters to float32; a model
    cast to float64 keeps float64 (``.float()`` would narrow it). float32 tensors are returned as they are."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _dense_projections(x: Tensor) -> bool:
    """Whether the groups' projections run as block-diagonal dense GEMMs: on the GPU only."""
    return x.is_cuda


def _gemm_input(x: Tensor) -> Tensor:
    """x as a GEMM reads it: under autocast in autocast's dtype (the cast F.linear would make), else as it is.

    The normalised input feeds in_proj and the gate's mean over all positions. Under autocast the
    mean's result goes into the gate's low-precision GEMM anyway, and taken over the low-precision
    copy that in_proj reads (accumulated in float32) it reads half the bytes of the float32 one: on
    GroupMamba-T that mean read ~0.4 ms of float32 per forward (docs/gpu_runs/s18_prof_gm.txt); a
    compiled stage-1 block took 1627.3 against 1644.0 us (docs/gpu_runs/s19_run3.txt). (Compiled,
    Inductor may still read the float32 copy where it fuses the cast into a concatenation, as at
    stage 3.) The difference is within the low precision's rounding of the mean.
    """
    device = x.device.type
    if device in ("cuda", "cpu") and torch.is_autocast_enabled(device):  # (meta tensors: no autocast)
        return x.to(torch.get_autocast_dtype(device))
    return x


def _aligned_linear(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None) -> Tensor:
    """``F.linear``, with the reduced dimension widened by zeros to a multiple of 8 when compiled for CUDA.

    cuBLAS runs bf16 GEMMs whose rows are not 16-byte aligned on slow kernels (stage 3 of -T/-S is 348
    channels wide), so the model compiles with ``force_shape_pad`` (``GroupMamba.inductor_options``),
    and Inductor then pads such an input in a copy kernel of its own (5 per stage-3 layer, ~10 us
    each, docs/gpu_runs/s18_prof_gm.txt). A concatenation with zeros instead lets Inductor write the
    producing kernel's output straight into the wider buffer (its ``cat`` lowering: the norms before
    proj and the FFN's fc1 write there, docs/gpu_runs/s19_block3_code.txt.gz), with a small kernel for
    the zero columns; the weight's zero columns are folded into a constant by freezing. x_proj's input
    is u, which the layer carries wider itself (``_gemm_pad``). The zeros add exact zeros to every dot
    product. Elsewhere (eager, CPU) it is plain ``F.linear``. On the H100 a compiled stage-3 block of
    GroupMamba-T took 704.3 against 733.5 us (benchmarks/ab_block.py, docs/gpu_runs/s19_run3.txt).
    """
    pad = _gemm_pad(x.shape[-1], x)
    if not pad:
        return F.linear(x, weight, bias)
    # autocast's cast before the concatenation, so that it fuses into the producer
    return F.linear(_zero_columns(_gemm_input(x), pad), F.pad(weight, (0, pad)), bias)


def _zero_columns(x: Tensor, pad: int) -> Tensor:
    """x with ``pad`` zero columns appended (x itself for 0): a concatenation, which Inductor writes
    from the kernel that produces x, with a small kernel for the zeros (see _aligned_linear)."""
    return torch.cat([x, x.new_zeros(*x.shape[:-1], pad)], dim=-1) if pad else x


def _linear(linear: nn.Linear, x: Tensor) -> Tensor:
    """``linear(x)`` through ``_aligned_linear`` where that applies, else the module's own forward
    (``PackedLinear``'s oneDNN path on the CPU)."""
    if _widens_gemm_inputs(x):
        return _aligned_linear(x, linear.weight, linear.bias)
    return linear(x)


# False: GEMM inputs keep their width and Inductor pads them in its own copies (side-by-side timing,
# benchmarks/ab_variant.py AB_UNALIGNED).
ALIGN_GEMM_INPUTS = True
# (Tried in session 22 and removed: widening the GEMMs' output rows too, so that stage 3's proj and fc2
# add their bias in cuBLAS's epilogue. 18 small kernels went, but the forward's kernels took 14.23 ms
# against 14.00; docs/gpu_runs/s22_prof_gm_outpad.txt, s22_run15.txt.)


def _widens_gemm_inputs(x: Tensor) -> bool:
    """Whether GEMM inputs are widened to aligned rows (``_aligned_linear``): CUDA tensors inside torch.compile."""
    return ALIGN_GEMM_INPUTS and x.is_cuda and torch.compiler.is_compiling()


def _gemm_pad(width: int, x: Tensor) -> int:
    """Zero columns that widen a ``width``-wide GEMM input to a multiple of 8 where inputs are widened, else 0."""
    return -width % 8 if _widens_gemm_inputs(x) else 0


def _x_proj_input(u: Tensor) -> Tensor:
    """u as the dense x_proj GEMM takes it: in float32 as the authors force, except under autocast,
    where the GEMM runs in its low precision whatever u's dtype: there u.float() would be a float32
    round trip that autocast's cast undoes exactly, and under torch.compile a copy of u per layer
    (0.25 ms per GroupMamba-T forward, docs/gpu_runs/s18_prof_gm.txt)."""
    return u if torch.is_autocast_enabled(u.device.type) else _scan_precision(u)


def _block_diagonal_projections(weights: dict[str, Tensor]) -> dict[str, Tensor]:
    """The groups' projections as dense block-diagonal weights, for the GPU.

    Four per-group einsums are batched GEMMs over a group axis that is not outermost in the
    channels-last activations, so each costs permute copies around a bmm with tiny K (16 channels per
    group at stage 1). One dense GEMM with a block-diagonal weight reads the activations in place;
    its 4x multiply-adds (zeros) are free on tensor cores at these widths, but not on a CPU, which
    keeps the einsums. The zero blocks add exact zeros, so only the summation order differs.
    ``x_proj_dense`` also folds dt_proj into x_proj (W_dt @ W_x[:dt_rank], computed in float32): its
    rows are every group's delta, then every group's B, then every group's C.
    """
    x_proj, dt_proj = weights["x_proj"], weights["dt_proj"]  # (4, r + 2N, d), (4, d, r), float32
    dt_rank = dt_proj.shape[-1]
    d_state = (x_proj.shape[1] - dt_rank) // 2
    with torch.autocast(x_proj.device.type, enabled=False):  # the fold in float32 even under autocast
        delta = dt_proj @ x_proj[:, :dt_rank]                 # (4, d, d)
    b_rows, c_rows = x_proj[:, dt_rank:dt_rank + d_state], x_proj[:, dt_rank + d_state:]
    d_inner = weights["in_proj"].shape[1] // 2
    return {
        # rows: every group's u, then every group's z (each group's in_proj is [u; z])
        "in_proj_dense": torch.cat([_block_diag(weights["in_proj"][:, :d_inner]),
                                    _block_diag(weights["in_proj"][:, d_inner:])]),
        "x_proj_dense": torch.cat([_block_diag(delta), _block_diag(b_rows), _block_diag(c_rows)]),
        "x_proj_groups": torch.cat([delta, b_rows, c_rows], dim=1),  # (4, d + 2, d): for the scan kernel
        "out_proj_dense": _block_diag(weights["out_proj"]),
    }


def _block_diag(blocks: Tensor) -> Tensor:
    """``torch.block_diag(*blocks)`` for stacked blocks (g, m, n), built by zero-padding each block.

    Same values; the form matters under torch.compile with freezing: Inductor's constant folding
    skips tensor constructors, so ``block_diag`` (zeros, then scatters) and everything computed from
    it ran on every forward (18 kernels per GroupMamba-T forward, docs/gpu_runs/s18_prof_gm.txt);
    ``pad`` of a weight is folded into a constant once.
    """
    groups, _, cols = blocks.shape
    return torch.cat([F.pad(blocks[k], (k * cols, (groups - 1 - k) * cols)) for k in range(groups)])


def _depthwise_weight(weight: Tensor, x: Tensor) -> Tensor:
    """The conv weight in the memory format that suits ``x``.

    The depthwise convs here take token-major tensors viewed as (B, C, H, W), so their input is
    channels-last in memory. On CPU, oneDNN uses its fast depthwise kernel only when the weight is
    channels-last too: 7x faster at 512 channels, 56x56, and the same result. CUDA keeps the weight
    as it is (its timings in the README were measured that way).
    """
    # .to(), not .contiguous(): with one input channel per group both stride layouts count as
    # "contiguous", and only .to() actually restrides, which is what oneDNN looks at.
    return weight.to(memory_format=torch.channels_last) if x.device.type == "cpu" else weight


# The fused depthwise-conv kernel also inside torch.compile graphs (DWConv.use_fused_kernel): True for
# every depthwise conv (the default since session 15, see there), "ffn" for the FFNs' only (conv +
# GELU), False for none (Inductor's cuDNN conv + its fused activation).
FUSED_DWCONV_UNDER_COMPILE: bool | str = True


class DWConv(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, bias=True, groups=dim)

    @staticmethod
    def use_fused_kernel(x: Tensor, conv: nn.Conv2d, in_ffn: bool = False) -> bool:
        """Whether a depthwise 3x3 conv of this file runs as the fused Triton kernel (conv + bias +
        activation, ``ssmzoo.ops.triton_dwconv``): CUDA tensors on the "triton" scan backend.
        ``SSMZOO_SCAN=torch`` (or CPU) keeps cuDNN / oneDNN and the separate activation. Under
        torch.compile the kernel runs as an opaque op (``FUSED_DWCONV_UNDER_COMPILE``) whose inputs
        may keep strides Inductor padded (``triton_scan.STRIDE_ORDER_TAGS``): on the H100 the
        compiled GroupMamba-T took 6,374 and 5,876 img/s with it against 5,941 and 5,564 with
        Inductor's cuDNN conv + fused activation (session 15, two machines, each pair side by side,
        docs/gpu_runs/bench_s15_dwconv_op.txt). Without the tag Inductor copied those inputs and the
        op was no clear gain (sessions 12-14 measured it slower). "ffn" uses it for the FFNs' convs
        (``in_ffn``) only, False for none (side-by-side timing: AB_DWCONV_OP_IN_COMPILE)."""
        under_compile = FUSED_DWCONV_UNDER_COMPILE is True or (FUSED_DWCONV_UNDER_COMPILE == "ffn" and in_ffn)
        return (x.is_cuda and (under_compile or not torch.compiler.is_compiling())
                and scan_backend(x.device) == "triton" and conv.kernel_size == (3, 3)
                and conv.stride == (1, 1) and conv.padding == (1, 1) and conv.dilation == (1, 1)
                and conv.groups == conv.in_channels == conv.out_channels)

    def forward(self, x: Tensor, H: int, W: int, activation: str = "none", in_ffn: bool = False) -> Tensor:
        """``activation`` ("none", "gelu", "silu") is applied after the conv (fused on the Triton path);
        ``in_ffn``: the FFN's conv (see ``use_fused_kernel``)."""
        batch, _, channels = x.shape
        x = x.transpose(1, 2).reshape(batch, channels, H, W)  # a channels-last view, no copy
        conv = self.dwconv
        if self.use_fused_kernel(x, conv, in_ffn):
            from ssmzoo.ops import triton_dwconv

            x = triton_dwconv.dwconv3x3_act(x, triton_dwconv.tap_major(conv.weight), conv.bias, activation)  # channels-last out
        else:  # on CPU one oneDNN call with the activation fused where it applies (cpu_onednn)
            x = conv2d_act(x, _depthwise_weight(conv.weight, x), conv.bias, conv.stride, conv.padding,
                           conv.dilation, conv.groups, activation)
        return x.flatten(2).transpose(1, 2)


class PVT2FFN(nn.Module):
    """PVTv2 feed-forward: a depthwise 3x3 conv between the two linears adds local mixing."""

    def __init__(self, in_features: int, hidden_features: int) -> None:
        super().__init__()
        self.fc1 = PackedLinear(in_features, hidden_features)
        self.dwconv = DWConv(hidden_features)
        self.act = nn.GELU()
        self.fc2 = PackedLinear(hidden_features, in_features)

    def forward(self, x: Tensor, H: int, W: int) -> Tensor:
        x = _linear(self.fc1, x)
        if type(self.act) is nn.GELU and self.act.approximate == "none":
            # GELU fused into the conv where it can be: the Triton kernel on CUDA, oneDNN's post-op on
            # CPU inference; elsewhere DWConv applies it separately, as below
            return _linear(self.fc2, self.dwconv(x, H, W, activation="gelu", in_ffn=True))
        return _linear(self.fc2, self.act(self.dwconv(x, H, W)))


class FFN(nn.Module):
    """Plain MLP for the class token (a single token has no neighbourhood to convolve)."""

    def __init__(self, in_features: int, hidden_features: int) -> None:
        super().__init__()
        self.fc1 = PackedLinear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = PackedLinear(hidden_features, in_features)

    def forward(self, x: Tensor, H: int, W: int) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Stage block. The mixer normalises its own input, hence no ``norm1`` (key names as published)."""

    def __init__(self, dim: int, mlp_ratio: float, drop_path: float = 0.0,
                 norm_layer: Callable[[int], nn.Module] = nn.LayerNorm) -> None:
        super().__init__()
        self.norm2 = norm_layer(dim)
        self.attn = GroupMambaLayer(dim, dim)
        self.mlp = PVT2FFN(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: Tensor, H: int, W: int) -> Tensor:
        x = x + self.drop_path(self.attn(x, H, W))
        return x + self.drop_path(self.mlp(self.norm2(x), H, W))


class ClassBlock(nn.Module):
    """Post-network block that refines only the class token (a 1x1 "image" for the mixer)."""

    def __init__(self, dim: int, mlp_ratio: float, norm_layer: Callable[[int], nn.Module] = nn.LayerNorm) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.norm2 = norm_layer(dim)
        self.attn = GroupMambaLayer(dim, dim)
        self.mlp = FFN(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        cls = x[:, :1]
        cls = cls + self.norm1(self.attn(cls, 1, 1))
        cls = cls + self.mlp(self.norm2(cls), 1, 1)
        return torch.cat([cls, x[:, 1:]], dim=1)


class Stem(nn.Module):
    """Three conv-BN-ReLU (the first with stride 2), then a stride-2 conv to tokens: /4 overall."""

    def __init__(self, in_channels: int, hidden_dim: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, hidden_dim, kernel_size=7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden_dim, hidden_dim, kernel_size=3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden_dim, hidden_dim, kernel_size=3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(hidden_dim),
            nn.ReLU(inplace=True),
        )
        self.proj = nn.Conv2d(hidden_dim, out_channels, kernel_size=3, stride=2, padding=1)
        self.norm = nn.LayerNorm(out_channels)

    def forward(self, x: Tensor) -> tuple[Tensor, int, int]:
        if _stem_on_igemm(x, self):
            x = self.forward_igemm(x)
        else:
            x = self.proj(self.conv(x))
        H, W = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), H, W

    def forward_igemm(self, x: Tensor) -> Tensor:
        """The four convs as ``ssmzoo.ops.triton_conv`` launches, each batch norm and ReLU in its conv's
        epilogue. On the H100 (bf16, batch 128) cuDNN's path took ~1.1 ms per GroupMamba-T forward:
        cuDNN has no good kernel for the 3-channel 7x7 conv (0.76 ms alone), every batch norm + ReLU
        was a pass of its own over the 112x112 maps, and cuDNN transformed layouts around its convs."""
        from ssmzoo.ops.triton_conv import conv2d_bn_relu_igemm, conv2d_igemm

        if not STEM_IGEMM_ALL:  # session 20's stem, kept for A/B runs: the 3-channel conv alone
            first = self.conv[0]
            x = conv2d_igemm(x, first.weight, first.bias, first.stride[0], first.padding[0])
            return self.proj(self.conv[1:](x))
        for i in range(0, len(self.conv), 3):
            x = conv2d_bn_relu_igemm(x, self.conv[i], self.conv[i + 1])
        if self.proj.out_channels > STEM_IGEMM_MAX_PROJ_CHANNELS:
            return self.proj(x)
        return conv2d_igemm(x, self.proj.weight, self.proj.bias, self.proj.stride[0], self.proj.padding[0])


# The stem as Triton implicit GEMMs on CUDA (see Stem.forward_igemm); False keeps cuDNN.
STEM_IMPLICIT_GEMM = True
# All four convs with their batch norms and ReLUs on the kernel; False: the first conv only (A/B runs).
STEM_IGEMM_ALL = True
# The stem's last conv stays on cuDNN beyond this many output channels: GroupMamba-B's 64 -> 96 took
# 269 us in the kernel's best config against cuDNN's 230 (128-wide channel tiles; s21_run4).
STEM_IGEMM_MAX_PROJ_CHANNELS = 64


def _igemm_fits(conv: nn.Conv2d) -> bool:
    """A plain conv (groups 1, no dilation, square stride and zero padding): what the kernel computes."""
    return (conv.groups == 1 and conv.dilation == (1, 1) and conv.padding_mode == "zeros"
            and isinstance(conv.padding, tuple) and conv.stride[0] == conv.stride[1]
            and conv.padding[0] == conv.padding[1])


def _stem_on_igemm(x: Tensor, stem: "Stem") -> bool:
    """Whether the stem runs as ``Stem.forward_igemm``: CUDA tensors on the "triton" scan backend, in
    eval mode (the batch norms fold to a scale and shift only with their running statistics)."""
    return (STEM_IMPLICIT_GEMM and x.is_cuda and scan_backend(x.device) == "triton" and not stem.training
            and all(_igemm_fits(m) for m in stem.modules() if isinstance(m, nn.Conv2d)))


# On CUDA the downsampling convs take the tokens as they are, a channels-last view (B, C, H, W), and
# return channels-last maps whose tokens are views again. The published code makes the map contiguous
# first: cuDNN then transformed it to NHWC and its output back (8 layout kernels, ~0.16 ms per
# GroupMamba-T forward on the H100, s21_prof_gm.txt), and the tokens after the conv were another copy.
# CPU keeps the contiguous map, the layout its oneDNN path was measured with.
DOWNSAMPLE_CHANNELS_LAST = True


# Compiled for CUDA, the downsampling convs run with their channel counts widened to multiples of 8
# (``DownSamples._aligned_conv``): no cuDNN padding kernels, 14.23 -> 14.00 ms of kernels per compiled
# GroupMamba-T forward on the H100 (docs/gpu_runs/s22_prof_gm.txt, s22_prof_gm_down.txt). False: the
# convs on their own channel counts (ab_switches AB_DOWNSAMPLE_UNALIGNED).
ALIGN_DOWNSAMPLE_CHANNELS = True


class DownSamples(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1)
        self.norm = nn.LayerNorm(out_channels)

    def forward(self, x: Tensor) -> tuple[Tensor, int, int]:
        if ALIGN_DOWNSAMPLE_CHANNELS and _widens_gemm_inputs(x):
            x = self._aligned_conv(x)
        else:
            x = self.proj(x)
        H, W = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), H, W

    def _aligned_conv(self, x: Tensor) -> Tensor:
        """``self.proj(x)`` with both channel counts widened by zeros to multiples of 8 (compiled for
        CUDA, like ``_aligned_linear``): cuDNN pads unaligned channels itself in kernels of its own
        (GroupMamba-T/-S: 348). The input's zero channels are a concatenation Inductor writes from
        the kernel that produces x (x is a channels-last view of tokens: channels are its last memory
        dim); the output's extra channels (zero weights and bias) are sliced off, a view."""
        conv = self.proj
        pad_in, pad_out = _gemm_pad(conv.in_channels, x), _gemm_pad(conv.out_channels, x)
        weight, bias = conv.weight, conv.bias
        if pad_in:
            x = _zero_columns(_gemm_input(x.permute(0, 2, 3, 1)), pad_in).permute(0, 3, 1, 2)
            weight = F.pad(weight, (0, 0, 0, 0, 0, pad_in))
        if pad_out:
            weight = F.pad(weight, (0, 0, 0, 0, 0, 0, 0, pad_out))
            bias = None if bias is None else F.pad(bias, (0, pad_out))
        return F.conv2d(x, weight, bias, conv.stride, conv.padding)[:, :conv.out_channels]


# ---------------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------------

class GroupMamba(nn.Module):
    """GroupMamba classifier; keyword arguments mirror the published configs (plus ``layer_norm_eps``).

    ``layer_norm_eps`` applies to the block/stage/class-token norms (the published models use 1e-6);
    the stem, downsampling, mixer and SS2D output norms keep LayerNorm's default 1e-5, as published.
    """

    # Inductor settings for torch.compile of this model on each device type (``factory.compile_model``
    # keeps them in force while the compiled model is traced, compiled and called), each measured side
    # by side on one H100 (bf16, batch 128, compile + CUDA graphs, GroupMamba-T; the A/B runs set them
    # globally, as benchmarks/ab_variant.py AB_INDUCTOR does, which is what compile_model reproduces):
    # - force_shape_pad: pad every GEMM's operands to multiples of 8 elements. Stage 3 of -T/-S is 348
    #   channels wide (87 per group), and cuBLAS ran those GEMMs on Ampere CUTLASS kernels for 2-element
    #   alignment (36 per forward, 3.2 of 21.3 ms; docs/gpu_runs/prof_gm_s16.txt); Inductor's own
    #   padding heuristic left them, as memory-bound. 6,295 -> 6,579 img/s (ab_s16_shapepad.txt).
    # - freezing: with autograd off (inference), the weights are constants of the compiled graph, and
    #   what is computed from weights alone is folded once: the groups' stacked and block-diagonal
    #   projections, -exp(A_logs), the stem's batch norms, the autocast casts of every weight (~330 small
    #   kernels per forward). 6,566 -> 7,022 img/s (ab_s16_freeze.txt). As with any freezing, a model
    #   compiled for inference must not have its weights changed afterwards; training is unaffected.
    # Not on CPU: freezing fails there in torch 2.14 (its conv-weight layout pass meets a graph output
    # that is not a tensor; the CPU graph is split by graph breaks), and CPU inference does not compile.
    inductor_options = {"cuda": {"force_shape_pad": True, "freezing": True}}

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        stem_hidden_dim: int = 32,
        embed_dims: Sequence[int] = (64, 128, 348, 448),
        mlp_ratios: Sequence[float] = (8, 8, 4, 4),
        depths: Sequence[int] = (3, 4, 9, 3),
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        layer_norm_eps: float = 1e-6,
        distillation: bool = True,
        num_stages: Optional[int] = None,
    ) -> None:
        super().__init__()
        if num_stages is not None and num_stages != len(depths):
            raise ValueError(f"num_stages={num_stages} but {len(depths)} depths were given")
        if not len(embed_dims) == len(mlp_ratios) == len(depths):
            raise ValueError("embed_dims, mlp_ratios and depths must have one entry per stage")
        self.num_classes = num_classes
        self.depths = list(depths)
        self.num_stages = len(depths)
        self.num_features = self.head_hidden_size = embed_dims[-1]
        self.drop_rate = drop_rate
        self.distilled_training = False  # timm's DeiT convention: tuple of logits only when asked
        self.grad_checkpointing = False
        norm_layer = lambda dim: nn.LayerNorm(dim, eps=layer_norm_eps)  # noqa: E731

        # Linear in depth, in plain Python so that the model builds on the meta device (torch.linspace's
        # .tolist() reads data); the values are torch.linspace's in float64 rather than float32 (they
        # differ by < 1e-7, and only in training, where drop path acts).
        total = sum(depths)
        dpr = [drop_path_rate * i / (total - 1) if total > 1 else 0.0 for i in range(total)]
        cur = 0
        self.feature_info = []
        for i in range(self.num_stages):
            if i == 0:
                patch_embed = Stem(in_chans, stem_hidden_dim, embed_dims[0])
            else:
                patch_embed = DownSamples(embed_dims[i - 1], embed_dims[i])
            blocks = nn.ModuleList([
                Block(embed_dims[i], mlp_ratios[i], drop_path=dpr[cur + j], norm_layer=norm_layer)
                for j in range(depths[i])
            ])
            cur += depths[i]
            setattr(self, f"patch_embed{i + 1}", patch_embed)
            setattr(self, f"block{i + 1}", blocks)
            setattr(self, f"norm{i + 1}", norm_layer(embed_dims[i]))
            self.feature_info.append(dict(num_chs=embed_dims[i], reduction=2 ** (i + 2), module=f"block{i + 1}"))

        self.post_network = nn.ModuleList([ClassBlock(embed_dims[-1], mlp_ratios[-1], norm_layer=norm_layer)])
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.dist = distillation
        if distillation:
            self.dist_head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def no_weight_decay_keywords(self) -> set[str]:
        return {"A_logs", "Ds", "skip_scale"}

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Full names of the parameters kept out of weight decay: the SSMs' A_logs and Ds (the authors
        mark them ``_no_weight_decay``) and skip_scale. timm's optimizer factory reads only this set
        (not the keywords or the marks); without it the 2-D A_logs were decayed. (1-D parameters, biases
        and norms included, timm leaves undecayed by itself.)"""
        keywords = self.no_weight_decay_keywords()
        return {name for name, p in self.named_parameters()
                if name.rsplit(".", 1)[-1] in keywords or getattr(p, "_no_weight_decay", False)}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Parameter groups by depth for timm's layer-wise lr decay and ``group_parameters``: the stem
        (patch_embed1); then per stage (``coarse``) or per block, each downsampling with its stage's
        first block and each stage's norm with its last block (suffix 99999: timm's MATCH_PREV_GROUP);
        then the class-token network with the final norm. The heads, unmatched, come last."""
        stage_norms = "|".join(str(i) for i in range(1, self.num_stages))  # norm{num_stages} is the final norm
        blocks = [(r"^(?:patch_embed|block)(\d+)\.", None), (rf"^norm({stage_norms})\.", None)] if coarse else [
            (r"^patch_embed(\d+)\.", (0,)),
            (r"^block(\d+)\.(\d+)\.", None),
            (rf"^norm({stage_norms})\.", (99999,)),
        ]
        return dict(stem=r"^patch_embed1\.", blocks=blocks,
                    class_token=rf"^(?:post_network|norm{self.num_stages})\.")

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage block's activations in the backward pass instead of keeping them
        (timm's ``--grad-checkpointing``): applies wherever autograd records the forward."""
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def invalidate_caches(self) -> int:
        """Drops the weight-derived caches of CPU/GPU inference (packed linears, stacked group weights).

        Needed only after weights were written without moving their version counters, e.g.
        ``p.data.mul_(0.5)`` or numpy views; state-dict loading, ``.to()``, optimizer steps and
        in-place ops on the parameters are noticed by themselves (``GroupMambaLayer._group_weights``)."""
        return invalidate_caches(self)

    @torch.jit.ignore
    def set_distilled_training(self, enable: bool = True) -> None:
        self.distilled_training = enable

    @torch.jit.ignore
    def get_classifier(self) -> tuple[nn.Module, nn.Module] | nn.Module:
        return (self.head, self.dist_head) if self.dist else self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        self.num_classes = num_classes
        make = lambda: nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()  # noqa: E731
        self.head = make()
        if self.dist:
            self.dist_head = make()

    def _stage(self, i: int, x: Tensor) -> tuple[Tensor, int, int]:
        """Stage ``i + 1`` on the image or the previous stage's map: its tokens (B, H*W, C) for the last
        stage, else the (B, C, H, W) map the next stage reads (after the stage's LayerNorm)."""
        x, H, W = getattr(self, f"patch_embed{i + 1}")(x)
        recompute = self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting()
        for blk in getattr(self, f"block{i + 1}"):
            x = checkpoint(blk, x, H, W) if recompute else blk(x, H, W)
        if i != self.num_stages - 1:
            x = getattr(self, f"norm{i + 1}")(x)
            x = x.reshape(x.shape[0], H, W, -1).permute(0, 3, 1, 2)  # (B, C, H, W), channels-last memory
            if not (x.is_cuda and DOWNSAMPLE_CHANNELS_LAST):
                x = x.contiguous()
        return x, H, W

    def forward_stages(self, x: Tensor) -> Tensor:
        """Image -> stage-4 tokens (B, H/32 * W/32, C), before the class-token network."""
        for i in range(self.num_stages):
            x, _, _ = self._stage(i, x)
        return x

    def forward_intermediates(self, x: Tensor, indices: Optional[int | list[int]] = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW", intermediates_only: bool = False
                              ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """timm's feature API (``features_only=True``): each stage's map as (B, C, H, W). Stages 1-3 give
        what the next stage reads (after their LayerNorm); stage 4 its raw tokens, or LayerNorm'd with ``norm``."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt {output_fmt!r}: GroupMamba gives NCHW feature maps")
        take, last = feature_take_indices(self.num_stages, indices)
        intermediates: list[Tensor] = []
        for i in range(last + 1 if stop_early or intermediates_only else self.num_stages):
            x, H, W = self._stage(i, x)
            if i in take:
                if i != self.num_stages - 1:
                    intermediates.append(x)
                else:  # tokens: as a map, LayerNorm'd where asked
                    tokens = getattr(self, f"norm{i + 1}")(x) if norm else x
                    intermediates.append(tokens.reshape(x.shape[0], H, W, -1).permute(0, 3, 1, 2).contiguous())
        if intermediates_only:
            return intermediates
        return self._class_token_feature(x), intermediates

    def prune_intermediate_layers(self, indices: int | list[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drops the stages after the last feature taken (and the class-token network and heads)."""
        take, last = feature_take_indices(self.num_stages, indices)
        for i in range(last + 1, self.num_stages):
            for name in (f"patch_embed{i + 1}", f"block{i + 1}", f"norm{i + 1}"):
                setattr(self, name, nn.Identity())
        if prune_head:
            self.post_network = nn.ModuleList()
            self.reset_classifier(0)
        return take

    def _class_token_feature(self, tokens: Tensor) -> Tensor:
        """Stage-4 tokens -> the normalised class-token feature (B, num_features)."""
        x = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)
        for blk in self.post_network:
            x = blk(x)
        return getattr(self, f"norm{self.num_stages}")(x[:, 0])

    def forward_features(self, x: Tensor) -> Tensor:
        """Image -> normalised class-token feature (B, num_features), the input of the heads."""
        return self._class_token_feature(self.forward_stages(x))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        x = self.head_drop(x)
        if pre_logits:
            return x
        if not self.dist:
            return self.head(x)
        x, x_dist = self.head(x), self.dist_head(x)
        if self.distilled_training and self.training and not torch.jit.is_scripting():
            return x, x_dist
        return (x + x_dist) / 2

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        return self.forward_head(self.forward_features(x))


# ---------------------------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------------------------

MODEL_ARGS: dict[str, dict[str, Any]] = {
    "groupmamba_tiny": dict(stem_hidden_dim=32, embed_dims=(64, 128, 348, 448), mlp_ratios=(8, 8, 4, 4),
                            depths=(3, 4, 9, 3), layer_norm_eps=1e-6),
    "groupmamba_small": dict(stem_hidden_dim=64, embed_dims=(64, 128, 348, 512), mlp_ratios=(8, 8, 4, 4),
                             depths=(3, 4, 16, 3), layer_norm_eps=1e-6),
    "groupmamba_base": dict(stem_hidden_dim=64, embed_dims=(96, 192, 424, 512), mlp_ratios=(8, 8, 4, 4),
                            depths=(3, 6, 21, 3), layer_norm_eps=1e-6),
}


def _cfg(hf_hub_id: str, filename: str, **kwargs: Any) -> dict[str, Any]:
    # The authors evaluate with Resize(256) + CenterCrop(224) and ImageNet mean/std (their
    # data/build.py), not with the mean/std 0.5 of the default_cfg their timm registration carries.
    return {
        "hf_hub_id": hf_hub_id,
        "hf_hub_filename": filename,
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": None,
        "crop_pct": 0.875,
        "crop_mode": "center",
        "interpolation": "bicubic",
        "fixed_input_size": False,
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "patch_embed1.conv.0",
        "classifier": ("head", "dist_head"),
        **kwargs,
    }


default_cfgs = generate_default_cfgs({
    "groupmamba_tiny.in1k": _cfg("Abdelrahman-shaker/GroupMamba-Tiny", "groupmamba_tiny_ema.pth"),
    "groupmamba_small.in1k": _cfg("Abdelrahman-shaker/GroupMamba-Small", "groupmamba_small_ema.pth"),
    "groupmamba_base.in1k": _cfg("Abdelrahman-shaker/GroupMamba-Base", "groupmamba_base_ema.pth"),
})


def checkpoint_filter_fn(state_dict: dict[str, Any], model: GroupMamba) -> dict[str, Tensor]:
    """Unwraps training-checkpoint containers ({'model': ...}, EMA dicts) and 'module.' prefixes."""
    for key in ("model_ema", "state_dict_ema", "model", "state_dict"):
        if isinstance(state_dict.get(key), dict):
            state_dict = state_dict[key]
            break
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state_dict.items()}


def _hub_weights_unavailable(variant: str, kwargs: dict[str, Any], error: Exception) -> Optional[Exception]:
    """What to raise when the pretrained weights of ``variant`` could not be fetched from the Hub and are
    not in the cache (huggingface_hub's LocalEntryNotFoundError names neither the repo nor the file):
    the same exception type, naming them, the endpoint or offline mode, and the cache folder; None when
    the weights were not to come from the Hub."""
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError
    from timm.models._builder import _resolve_pretrained_source, resolve_pretrained_cfg

    if not isinstance(error, LocalEntryNotFoundError):
        return None
    try:
        cfg = resolve_pretrained_cfg(variant, pretrained_cfg=kwargs.get("pretrained_cfg"),
                                     pretrained_cfg_overlay=kwargs.get("pretrained_cfg_overlay")).to_dict()
        load_from, location = _resolve_pretrained_source(cfg)
    except Exception:  # noqa: BLE001 - the original error is raised instead
        return None
    if load_from != "hf-hub":
        return None
    repo_id, filename = location if isinstance(location, tuple) else (location, "its default weights file")
    cache = kwargs.get("cache_dir") or constants.HF_HUB_CACHE
    if constants.HF_HUB_OFFLINE:
        why = "HF_HUB_OFFLINE is set, so the Hub was not asked"
        todo = "unset HF_HUB_OFFLINE to download it"
    else:
        cause = error.__cause__
        detail = f" ({type(cause).__name__}: {cause})" if cause is not None else ""
        why = f"the Hugging Face Hub at {constants.ENDPOINT} could not be reached{detail}"
        todo = "check the connection (and HF_ENDPOINT) and try again; HF_HUB_OFFLINE=1 skips the Hub's retries"
    return LocalEntryNotFoundError(
        f"{variant}: cannot load the pretrained weights {filename!r} of Hub repo {repo_id!r}: {why}, and the "
        f"file is not in the local cache ({cache}). To fix: {todo}, or give a local copy with "
        f"pretrained_cfg_overlay=dict(file=PATH).")


def _create_groupmamba(variant: str, pretrained: bool = False, **kwargs: Any) -> GroupMamba:
    try:
        return build_model_with_cfg(
            GroupMamba, variant, pretrained,
            pretrained_filter_fn=checkpoint_filter_fn,
            feature_cfg=dict(feature_cls="getter", out_indices=(0, 1, 2, 3)),
            **kwargs,
        )
    except Exception as error:
        clear = _hub_weights_unavailable(variant, kwargs, error) if pretrained else None
        if clear is None:
            raise
        raise clear from error


def groupmamba_from_config(config: dict[str, Any], **overrides: Any) -> GroupMamba:
    """Builds an unregistered GroupMamba from architecture kwargs (e.g. a JSON config)."""
    return GroupMamba(**{**config, **overrides})


@register_model
def groupmamba_tiny(pretrained: bool = False, **kwargs: Any) -> GroupMamba:
    """GroupMamba-T: 23M params, 83.3% ImageNet-1k top-1 (published)."""
    return _create_groupmamba("groupmamba_tiny", pretrained, **{**MODEL_ARGS["groupmamba_tiny"], **kwargs})


@register_model
def groupmamba_small(pretrained: bool = False, **kwargs: Any) -> GroupMamba:
    """GroupMamba-S: 34M params, 83.9% ImageNet-1k top-1 (published)."""
    return _create_groupmamba("groupmamba_small", pretrained, **{**MODEL_ARGS["groupmamba_small"], **kwargs})


@register_model
def groupmamba_base(pretrained: bool = False, **kwargs: Any) -> GroupMamba:
    """GroupMamba-B: 57M params, 84.5% ImageNet-1k top-1 (published)."""
    return _create_groupmamba("groupmamba_base", pretrained, **{**MODEL_ARGS["groupmamba_base"], **kwargs})
