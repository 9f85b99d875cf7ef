"""`ssmzoo benchmark` with one change undone, for side-by-side A/B runs on the device.

AB_EINSUM=1: GroupMamba's per-group einsums on CUDA (instead of block-diagonal dense GEMMs).
AB_SEQ=1:    the bimamba scan in one segment (the sequential kernel, as before the split defaults).
AB_BIMAMBA_AHEAD=1: split bimamba scans with one lane per channel as in session 23 (segments of 64, B/C loaded
              a step ahead, UNROLL 2) instead of ONE_LANE_SPLIT_CONFIG.
AB_EAGER_OPS=1: in eager mode, ssmzoo's custom operators called through the PyTorch dispatcher (before
              session 24) instead of their functions directly (``ssmzoo.ops.opaque.call_op``).
AB_TILE_LOADS=1 (or 0): the bimamba scan's state-tile loads through the permuted view (or as they are)
    whatever SPLIT, segments and Triton version (``triton_bimamba.permute_tile_loads`` chooses by them).
AB_NO_LOOKBACK=1: GroupMamba's group scan on the tile kernel everywhere (no look-back kernel).
AB_DECOUPLED=1: the look-back kernel's decoupled variant (CHAINED=0, the default before session 13).
AB_DWCONV='{"UNROLL": 4}': the fused depthwise conv kernel's default launch config updated by this JSON.
AB_VM_CHANNEL_FIRST=1: VideoMamba's scan inputs u/delta as contiguous (batch, dim, L) copies (before
    session 13) instead of views of (batch, L, dim) memory.
AB_VM_UNFUSED_CONV=1: VideoMamba's causal conv1d + SiLU as F.conv1d, F.silu and the copies around them
    (before session 14) instead of the Triton kernel.
AB_VM_PATCH_CONV=1: VideoMamba's patch embedding as the cuDNN conv (instead of one GEMM over the patches).
AB_PLAIN_LINEAR=1: CPU linears and convs + activation as the plain PyTorch ops (instead of oneDNN fused ones, ssmzoo.ops.cpu_onednn).
AB_PLAIN_CONV=1: GroupMamba's CPU depthwise convs as F.conv2d + a separate activation (only the linears fused).
AB_CUDNN_STEM=1: GroupMamba's stem on cuDNN (instead of the Triton implicit GEMMs).
AB_STEM_FIRST_CONV_ONLY=1: GroupMamba's stem with only the 3-channel conv on the Triton implicit GEMM
    (before session 21) and the rest as cuDNN convs + batch-norm/ReLU kernels, instead of all four convs
    with their norms and ReLUs in the kernel's epilogue (``groupmamba.STEM_IGEMM_ALL``).
AB_DOWNSAMPLE_NCHW=1: GroupMamba's downsampling convs on CUDA take contiguous NCHW maps (as published,
    before session 21) instead of channels-last views of the tokens (``groupmamba.DOWNSAMPLE_CHANNELS_LAST``).
AB_DWCONV_OP_IN_COMPILE=0: GroupMamba's depthwise convs under torch.compile as Inductor's cuDNN conv +
    fused activation (before session 15) instead of the fused Triton op (an opaque node); =ffn: the op
    for the FFNs' convs only; =1: the op for all (the default).
AB_BLOCK_DIAG=1: GroupMamba's block-diagonal projections built with torch.block_diag (before session 18),
    which freezing does not fold, instead of by padding (``groupmamba._block_diag``).
AB_U_FLOAT=1: GroupMamba's dense x_proj GEMM takes u.float() under autocast too (before session 18),
    which costs a copy of u per layer under torch.compile.
AB_UNALIGNED=1: GroupMamba's GEMM inputs keep their width under torch.compile (before session 19), and
    Inductor pads 348-wide ones (stage 3 of -T/-S) in copies of its own, instead of their producers
    writing rows widened by zeros (``groupmamba._aligned_linear``, ``_gemm_pad``).
AB_GATE_MEAN_FP32=1: GroupMamba's gate takes the mean of the float32 normalised input under autocast too
    (before session 19), instead of the low-precision copy that in_proj reads (``groupmamba._gemm_input``).
AB_DWCONV_ONE_GEOMETRY=1: the fused depthwise conv with DEFAULT_CONFIG on every shape (before session 19),
    without ``triton_dwconv.SHAPE_CONFIGS``' geometry for stage 2's FFN convs.
AB_DWCONV_WEIGHT_AS_IS=1: GroupMamba's depthwise-conv weights handed to the fused op as they are (before
    session 19: the op copies each into its tap-major layout on every call) instead of as
    ``triton_dwconv.tap_major`` views, which freezing folds.
AB_NORM_GATE_UNFUSED=1: GroupMamba's scan writes float32 y and Inductor's kernel computes the out_norm and
    gate (before session 20), instead of the scan kernel's epilogue (``groupmamba.NORM_GATE_IN_SCAN``).
AB_NORM_GATE_ALL=1: the fused norm-gate scan on every channels-last map, also GroupMamba-B's stage 1,
    where it was measured slower (a candidate, not an undo).
AB_X_PROJ_GEMM=1: GroupMamba's x_proj stays a GEMM whose output the norm-gate scan reads (before session 20),
    instead of the scan kernel computing delta, B and C from u (``groupmamba.X_PROJ_IN_SCAN``).
AB_OUT_PROJ_GEMM=1: GroupMamba's out_proj stays a GEMM after the norm-gate scan, instead of the scan kernel's
    epilogue (``groupmamba.OUT_PROJ_IN_SCAN``).
AB_SEQ_SCAN=1: GroupMamba's scans on small maps (up to 16 x 16: stages 3 and 4) run on the lane-per-channel
    kernel (``triton_seq.SEQ_SCAN``; a candidate, slower in session 22) instead of the look-back kernel.
AB_X_FLOAT32=1: the mixer's final product x * y reads the float32 normalised x (before session 22) instead
    of in_proj's low-precision copy of it (``groupmamba.PRODUCT_WITH_GEMM_INPUT``).
AB_NG_SEG4=1: the norm-gate scan on groups of 65-128 channels in segments of 4 steps (a candidate).
AB_SOFTPLUS_LOG=1: GroupMamba's scans compute softplus with libdevice's logf of 1 + e^x (before session 25)
    instead of the polynomial log1p (``triton_scan.SOFTPLUS_POLY``).
AB_DOWNSAMPLE_UNALIGNED=1: GroupMamba's compiled downsampling convs on their own channel counts (before
    session 22; cuDNN pads 348 channels itself) instead of widened to multiples of 8
    (``groupmamba.ALIGN_DOWNSAMPLE_CHANNELS``).
AB_MODEL_INDUCTOR='{"force_shape_pad": false}': GroupMamba's own CUDA Inductor settings
    (``GroupMamba.inductor_options["cuda"]``, which ``compile_model`` keeps in force) updated by this JSON.
AB_EXACT_STRIDES=1: torch.compile gives ssmzoo's operators inputs with exactly the eager strides
    (PyTorch's default for custom operators, before session 15) instead of their
    ``needs_fixed_stride_order`` tag (triton_scan.STRIDE_ORDER_TAGS: padded strides pass uncopied).
    (Session 15 measured the tag's effect before it existed with AB_OP_LAYOUT=needs_fixed_stride_order,
    i.e. ``torch._functorch.config.custom_op_default_layout_constraint``, which untagged ops follow.)
"""
import json
import os
import sys

import ssmzoo.models.groupmamba as gm
import ssmzoo.ops.triton_bimamba as tb
import ssmzoo.ops.triton_dwconv as td
import ssmzoo.ops.triton_scan as ts
from ab_switches import ATTRIBUTE_SWITCHES

for variable, (module, attribute, value) in ATTRIBUTE_SWITCHES.items():
    if os.environ.get(variable):
        setattr(module, attribute, value)

if os.environ.get("AB_TILE_LOADS"):
    _perm = bool(int(os.environ["AB_TILE_LOADS"]))
    tb.permute_tile_loads = lambda split, one_segment: _perm
if os.environ.get("AB_NO_LOOKBACK"):
    _plain = ts.group_scan_4dir_triton
    ts.group_scan_4dir_triton = lambda *a, config=None, **k: _plain(*a, config=dict(config or {}, LOOKBACK=0), **k)
if os.environ.get("AB_DWCONV"):
    td.DEFAULT_CONFIG.update(json.loads(os.environ["AB_DWCONV"]))
if os.environ.get("AB_DWCONV_OP_IN_COMPILE"):
    _value = os.environ["AB_DWCONV_OP_IN_COMPILE"]
    gm.FUSED_DWCONV_UNDER_COMPILE = {"1": True, "0": False}.get(_value, _value)
if os.environ.get("AB_MODEL_INDUCTOR"):
    gm.GroupMamba.inductor_options = {**gm.GroupMamba.inductor_options,
                                      "cuda": {**gm.GroupMamba.inductor_options["cuda"],
                                               **json.loads(os.environ["AB_MODEL_INDUCTOR"])}}
if os.environ.get("AB_EXACT_STRIDES"):
    import torch._inductor.graph
    import torch._inductor.lowering

    _tag_of = torch._inductor.lowering.get_layout_constraint_tag

    def _exact_for_ssmzoo(fn, *args, **kwargs):
        if getattr(fn, "namespace", None) == "ssmzoo":
            return torch.Tag.needs_exact_strides
        return _tag_of(fn, *args, **kwargs)
    torch._inductor.lowering.get_layout_constraint_tag = _exact_for_ssmzoo
    torch._inductor.graph.get_layout_constraint_tag = _exact_for_ssmzoo
if os.environ.get("AB_INDUCTOR"):
    import torch._inductor.config as inductor_config

    for _name, _value in json.loads(os.environ["AB_INDUCTOR"]).items():
        _owner, _, _attr = _name.rpartition(".")
        _target = inductor_config
        for _part in filter(None, _owner.split(".")):
            _target = getattr(_target, _part)
        if not hasattr(_target, _attr):
            raise SystemExit(f"AB_INDUCTOR: torch._inductor.config has no {_name!r}")
        setattr(_target, _attr, _value)
from ssmzoo.cli import app  # noqa: E402

sys.argv = ["ssmzoo", "benchmark", *sys.argv[1:]]
app()
