"""The A/B switches that set one module attribute (benchmarks/ab_variant.py documents each), shared by
``ab_variant.py`` (whole models, one variant per process) and ``ab_block.py`` (single blocks, every
variant in one process)."""
import torch

import ssmzoo.models.groupmamba as gm
import ssmzoo.models.videomamba as vm
import ssmzoo.ops.cpu_onednn as cpu_onednn
import ssmzoo.ops.opaque as opaque
import ssmzoo.ops.triton_bimamba as tb
import ssmzoo.ops.triton_dwconv as td
import ssmzoo.ops.triton_lookback as tlb
import ssmzoo.ops.triton_scan as ts
import ssmzoo.ops.triton_seq as tsq

# Switches that set one module attribute: variable -> (module, attribute, value with the change undone).
ATTRIBUTE_SWITCHES = {
    "AB_EINSUM": (gm, "_dense_projections", lambda x: False),
    "AB_SEQ": (tb, "SPLIT_PHASES_COMPILE", False),
    "AB_BIMAMBA_AHEAD": (tb, "ONE_LANE_SPLIT_CONFIG", {}),
    "AB_EAGER_OPS": (opaque, "EAGER_DIRECT", False),
    "AB_DECOUPLED": (tlb, "DEFAULT_CHAINED", 0),
    "AB_VM_CHANNEL_FIRST": (vm, "SCAN_INPUTS_TOKENS_MAJOR", False),
    "AB_VM_PATCH_CONV": (vm, "PATCH_EMBED_AS_GEMM", False),
    "AB_VM_UNFUSED_CONV": (vm, "FUSED_CAUSAL_CONV", False),
    "AB_PLAIN_LINEAR": (cpu_onednn, "ONEDNN_FUSED", False),
    "AB_PLAIN_CONV": (cpu_onednn, "ONEDNN_CONV", False),
    "AB_CUDNN_STEM": (gm, "STEM_IMPLICIT_GEMM", False),
    "AB_STEM_FIRST_CONV_ONLY": (gm, "STEM_IGEMM_ALL", False),
    "AB_DOWNSAMPLE_NCHW": (gm, "DOWNSAMPLE_CHANNELS_LAST", False),
    "AB_BLOCK_DIAG": (gm, "_block_diag", lambda blocks: torch.block_diag(*blocks)),
    "AB_U_FLOAT": (gm, "_x_proj_input", lambda u: u.float()),
    "AB_UNALIGNED": (gm, "ALIGN_GEMM_INPUTS", False),
    "AB_GATE_MEAN_FP32": (gm, "_gemm_input", lambda x: x),
    "AB_DWCONV_ONE_GEOMETRY": (td, "SHAPE_CONFIGS", {}),
    "AB_DWCONV_WEIGHT_AS_IS": (td, "tap_major", lambda weight: weight),
    "AB_NORM_GATE_UNFUSED": (gm, "NORM_GATE_IN_SCAN", False),
    "AB_NORM_GATE_ALL": (gm, "NORM_GATE_IN_SCAN", "all"),
    "AB_X_PROJ_GEMM": (gm, "X_PROJ_IN_SCAN", False),
    "AB_OUT_PROJ_GEMM": (gm, "OUT_PROJ_IN_SCAN", False),
    "AB_SEQ_SCAN": (tsq, "SEQ_SCAN", True),
    "AB_X_FLOAT32": (gm, "PRODUCT_WITH_GEMM_INPUT", False),
    "AB_DOWNSAMPLE_UNALIGNED": (gm, "ALIGN_DOWNSAMPLE_CHANNELS", False),
    "AB_NG_SEG4": (tlb, "WHOLE_GROUP_CONFIGS", {**tlb.WHOLE_GROUP_CONFIGS, 128: (4, 2)}),
    "AB_SOFTPLUS_LOG": (ts, "SOFTPLUS_POLY", ts.tl.constexpr(False)),
}
