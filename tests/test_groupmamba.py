"""GroupMamba: published state-dict layout, parity with the authors' code, timm registration, shapes.

Golden files (tests/data/groupmamba_*) come from running the authors' implementation (float64
selective-scan recurrence, float32 elsewhere); see the project's golden README.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ssmzoo.models import groupmamba as gm
from ssmzoo.ops import selective_scan_ref
from conftest import loss_and_grads

DATA = Path(__file__).parent / "data"

# Published sizes (README of the authors: 23M / 34M / 57M parameters, figures truncated to the million).
PUBLISHED_PARAMS_M = {"groupmamba_tiny": 23, "groupmamba_small": 34, "groupmamba_base": 57}


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


@pytest.fixture(scope="module")
def mini_model() -> gm.GroupMamba:
    config = json.loads((DATA / "groupmamba_mini_config.json").read_text())
    model = gm.groupmamba_from_config(config)
    model.load_state_dict(load_file(DATA / "groupmamba_mini.safetensors"), strict=True)
    return model.eval()


@pytest.mark.parametrize("name", ["groupmamba_tiny", "groupmamba_small", "groupmamba_base"])
def test_state_dict_matches_published(name: str) -> None:
    expected = json.loads((DATA / f"{name}_state_dict_shapes.json").read_text())
    model = getattr(gm, name)()
    got = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert sorted(set(expected) - set(got)) == [], "missing keys"
    assert sorted(set(got) - set(expected)) == [], "unexpected keys"
    wrong = {k: (got[k], expected[k]) for k in expected if got[k] != expected[k]}
    assert wrong == {}
    n_params = sum(p.numel() for p in model.parameters())
    assert int(n_params / 1e6) == PUBLISHED_PARAMS_M[name]


def test_mini_matches_golden(mini_model: gm.GroupMamba) -> None:
    io = load_file(DATA / "groupmamba_mini_io.safetensors")
    x = io["input"]
    assert x.shape[-2] != x.shape[-1]
    with torch.no_grad():
        features = mini_model.forward_features(x)
        logits = mini_model.forward_head(features)
        logits_direct = mini_model(x)
    assert features.shape == io["features"].shape and logits.shape == io["logits"].shape
    assert rel_err(features, io["features"]) <= 1e-5
    assert rel_err(logits, io["logits"]) <= 1e-5
    assert torch.equal(logits, logits_direct)


def test_import_ssmzoo_registers_models() -> None:
    # In a fresh interpreter: this test module imports ssmzoo.models itself, which would hide a
    # package __init__ that forgets to import the models.
    code = "import ssmzoo, timm; m = timm.create_model('groupmamba_tiny'); print(type(m).__module__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ssmzoo.models.groupmamba"


def test_timm_create_model() -> None:
    import timm
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, resolve_data_config

    assert {"groupmamba_tiny", "groupmamba_small", "groupmamba_base"} <= set(timm.list_models("groupmamba*"))
    model = timm.create_model("groupmamba_tiny")
    assert isinstance(model, gm.GroupMamba)
    cfg = model.pretrained_cfg
    assert cfg["hf_hub_id"] == "Abdelrahman-shaker/GroupMamba-Tiny"
    data_cfg = resolve_data_config({}, model=model)
    assert data_cfg["input_size"] == (3, 224, 224)
    assert data_cfg["crop_pct"] == 0.875
    assert data_cfg["interpolation"] == "bicubic"
    assert tuple(data_cfg["mean"]) == IMAGENET_DEFAULT_MEAN
    assert tuple(data_cfg["std"]) == IMAGENET_DEFAULT_STD
    for name, hub in [("groupmamba_small", "Small"), ("groupmamba_base", "Base")]:
        assert timm.models.get_pretrained_cfg(name).hf_hub_id == f"Abdelrahman-shaker/GroupMamba-{hub}"
    # timm's num_classes override reaches both heads
    small_head = timm.create_model("groupmamba_tiny", num_classes=7)
    assert small_head.head.out_features == small_head.dist_head.out_features == 7


def test_non_square_input_shape(mini_model: gm.GroupMamba) -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 3, 80, 48)
    with torch.no_grad():
        features = mini_model.forward_features(x)
        logits = mini_model(x)
        tokens = mini_model.forward_stages(x)
    assert features.shape == (3, 128)
    assert logits.shape == (3, 10)
    # five stride-2 convs (7x7 pad 3, then 3x3 pad 1) each give ceil(n / 2)
    height, width = 80, 48
    for _ in range(5):
        height, width = -(-height // 2), -(-width // 2)
    assert (height, width) == (3, 2)
    assert tokens.shape == (3, height * width, 128)
    assert torch.isfinite(logits).all()


def _visit_order(direction: int, height: int, width: int) -> list[int]:
    """Row-major indices of the positions in the order ``direction`` visits them, written out longhand."""
    row_major = [h * width + w for h in range(height) for w in range(width)]
    col_major = [h * width + w for w in range(width) for h in range(height)]
    return [row_major, col_major, row_major[::-1], col_major[::-1]][direction]


@pytest.mark.parametrize("height,width", [(5, 7), (1, 1), (4, 3)])
def test_group_scan_4dir_matches_reference(height: int, width: int) -> None:
    torch.manual_seed(height * 10 + width)
    batch, dim, n_state = 2, 3, 2
    u = torch.randn(batch, 4, dim, height, width)
    delta = torch.randn(batch, 4, dim, height, width) * 0.5
    A = -torch.rand(4, dim, n_state) - 0.1
    B = torch.randn(batch, 4, n_state, height, width)
    C = torch.randn(batch, 4, n_state, height, width)
    D = torch.randn(4, dim)
    delta_bias = torch.randn(4, dim) * 0.1

    y = gm.group_scan_4dir(u, delta, A, B, C, D=D, delta_bias=delta_bias, delta_softplus=True)
    assert y.shape == u.shape

    expected = torch.empty(batch, 4, dim, height * width, dtype=torch.float64)
    for k in range(4):
        order = torch.tensor(_visit_order(k, height, width))
        seq = lambda t: t[:, k].flatten(-2)[..., order]  # noqa: E731
        y_seq = selective_scan_ref(seq(u), seq(delta), A[k], seq(B), seq(C), D=D[k],
                                   delta_bias=delta_bias[k], delta_softplus=True)
        expected[:, k, :, order] = y_seq.double()
    assert rel_err(y, expected.view_as(y)) <= 1e-5


def test_scan_and_merge_orders_are_inverse() -> None:
    x = torch.arange(2 * 3 * 5, dtype=torch.float32).view(2, 3, 5)
    for k in range(4):
        seq = gm.scan_order(x, k)
        assert seq[0].tolist() == [float(i) for i in _visit_order(k, 3, 5)]
        assert torch.equal(gm.merge_order(seq, k, 3, 5), x)


def test_training_mode_backward_and_distilled_outputs() -> None:
    config = json.loads((DATA / "groupmamba_mini_config.json").read_text())
    torch.manual_seed(1)
    model = gm.groupmamba_from_config(config, drop_path_rate=0.1).train()
    x = torch.randn(2, 3, 64, 32)
    logits = model(x)
    assert logits.shape == (2, 10)
    logits.square().mean().backward()
    a_grad = model.block1[0].attn.mamba_g3.A_logs.grad
    assert a_grad is not None and torch.isfinite(a_grad).all() and a_grad.abs().sum() > 0
    model.set_distilled_training(True)
    out, out_dist = model(x)
    assert out.shape == out_dist.shape == (2, 10)


def test_checkpoint_filter_unwraps_containers(mini_model: gm.GroupMamba) -> None:
    sd = mini_model.state_dict()
    for wrapped in ({"model": sd}, {"model_ema": sd, "epoch": 3},
                    {f"module.{k}": v for k, v in sd.items()}):
        filtered = gm.checkpoint_filter_fn(wrapped, mini_model)
        assert set(filtered) == set(sd)


def _layer_longhand(layer: gm.GroupMambaLayer, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """GroupMambaLayer written out one group at a time with each SS2D's own modules (as the authors do),
    the scan of group k run step by step along direction k."""
    batch, _, channels = x.shape
    xn = layer.norm(x)
    gate = torch.sigmoid(layer.fc2(torch.relu(layer.fc1(xn.mean(dim=1)))))
    outs = []
    for k, (m, xg) in enumerate(zip(layer.groups(), xn.view(batch, height, width, channels).chunk(4, dim=-1))):
        u, z = m.in_proj(xg).chunk(2, dim=-1)
        u = torch.nn.functional.silu(m.conv2d(u.permute(0, 3, 1, 2))).float().flatten(-2)  # (B, d, L)
        x_dbl = torch.einsum("bdl,cd->bcl", u, m.x_proj_weight[0])
        dts, Bs, Cs = torch.split(x_dbl, [m.dt_rank, m.d_state, m.d_state], dim=1)
        dts = torch.einsum("brl,dr->bdl", dts, m.dt_projs_weight[0])
        order = torch.tensor(_visit_order(k, height, width))
        y = torch.empty_like(u)
        y[..., order] = selective_scan_ref(u[..., order], dts[..., order], -torch.exp(m.A_logs), Bs[..., order],
                                           Cs[..., order], D=m.Ds, delta_bias=m.dt_projs_bias[0],
                                           delta_softplus=True).float()
        y = m.out_norm(y.transpose(1, 2).reshape(batch, height, width, -1))
        outs.append(m.out_proj(y * torch.nn.functional.silu(z)))
    y = torch.cat(outs, dim=-1) * layer.skip_scale * xn.view(batch, height, width, channels)
    return layer.proj(layer.norm(y.view(batch, height * width, channels) * gate.unsqueeze(1)))


@pytest.mark.parametrize("dense", [False, True], ids=["einsum", "block-diagonal"])
@pytest.mark.parametrize("channels,height,width", [(64, 5, 7), (348, 3, 2), (32, 1, 1)])
def test_batched_group_layer_matches_per_group_longhand(channels: int, height: int, width: int, dense: bool,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # The layer runs its 4 SS2D groups as batched ops: per-group einsums on the CPU, block-diagonal
    # dense GEMMs (dt_proj folded into x_proj) on the GPU, forced here on the CPU. Every parameter
    # (LayerNorm affines included) is randomised so that a group mix-up or a wrong weight layout
    # cannot hide.
    monkeypatch.setattr(gm, "_dense_projections", lambda x: dense)
    torch.manual_seed(channels + height)
    layer = gm.GroupMambaLayer(channels, channels).eval()
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (0.5 if p.ndim == 1 else 0.0))
    x = torch.randn(2, height * width, channels)
    with torch.no_grad():
        out = layer(x, height, width)
        expected = _layer_longhand(layer, x, height, width)
    assert out.shape == expected.shape
    assert rel_err(out, expected) <= 1e-5


def test_block_diagonal_projections_fold_in_float32_under_autocast() -> None:
    # dt_proj is folded into x_proj once (cached); autocast must not round the fold to bfloat16.
    torch.manual_seed(0)
    layer = gm.GroupMambaLayer(64, 64).eval()
    x = torch.randn(1, 4, 4, 4, 16)
    with torch.no_grad():
        weights = layer._group_weights(x)
        plain = gm._block_diagonal_projections(weights)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            under_autocast = gm._block_diagonal_projections(weights)
    assert under_autocast["x_proj_dense"].dtype == torch.float32
    assert torch.equal(under_autocast["x_proj_dense"], plain["x_proj_dense"])
    d, r = 16, layer.mamba_g1.dt_rank
    expected = layer.mamba_g2.dt_projs_weight[0] @ layer.mamba_g2.x_proj_weight[0, :r]  # group 2's block
    assert torch.allclose(plain["x_proj_dense"][d:2 * d, d:2 * d], expected, rtol=1e-6, atol=1e-7)
    assert not plain["x_proj_dense"][:d, d:].any()  # off-diagonal blocks are zeros


def test_block_diagonal_weights_are_folded_by_freezing(monkeypatch: pytest.MonkeyPatch) -> None:
    # The dense projections are built from the weights alone, so a model compiled with freezing (its
    # CUDA setting) should compute them once, as constants, not on every forward. Inductor's constant
    # folding skips tensor constructors, which torch.block_diag starts from: the layer builds its
    # blocks by padding instead (forced onto the CPU here to read the generated code).
    import torch._inductor.config as inductor_config
    from torch._inductor.utils import run_and_get_code

    blocks = torch.randn(4, 5, 3)
    assert torch.equal(gm._block_diag(blocks), torch.block_diag(*blocks))
    monkeypatch.setattr(gm, "_dense_projections", lambda x: True)
    torch._dynamo.reset()
    layer = gm.GroupMambaLayer(32, 32).eval()
    x = torch.randn(2, 3 * 5, 32)
    with torch.no_grad(), inductor_config.patch(freezing=True):
        expected = layer(x, 3, 5)
        out, code = run_and_get_code(torch.compile(layer), x, 3, 5)
    torch._dynamo.reset()
    assert rel_err(out, expected) <= 1e-5
    kernels = set(re.findall(r"\b(?:cpp|triton)_\w+", "\n".join(code)))  # the generated kernels' names
    assert kernels and not [k for k in kernels if "block_diag" in k or "pad" in k]


def test_x_proj_takes_u_as_it_is_only_under_autocast(monkeypatch: pytest.MonkeyPatch) -> None:
    # The authors feed x_proj float32 u. Under autocast the GEMM casts it to its low precision anyway,
    # so the dense path skips the float32 round trip (a copy per layer when compiled): the output must
    # be bit-identical to the round trip's. Without autocast u goes in as float32, as before.
    monkeypatch.setattr(gm, "_dense_projections", lambda x: True)
    torch.manual_seed(1)
    layer = gm.GroupMambaLayer(64, 64).eval()
    x = torch.randn(2, 5 * 3, 64)
    u = torch.randn(2, 3, 3, 4, 16, dtype=torch.bfloat16)
    assert gm._x_proj_input(u).dtype == torch.float32
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert gm._x_proj_input(u) is u
        direct = layer(x, 5, 3)
        monkeypatch.setattr(gm, "_x_proj_input", lambda u: u.float())
        round_trip = layer(x, 5, 3)
    assert torch.equal(direct, round_trip)


def _call_args(code: str, start: int) -> list[str]:
    """The top-level arguments of the call whose "(" is at code[start]."""
    args, depth, begin = [], 0, start + 1
    for i in range(start, len(code)):
        if code[i] in "([":
            depth += 1
        elif code[i] in ")]":
            depth -= 1
            if depth == 0:
                return args + [code[begin:i].strip()]
        elif code[i] == "," and depth == 1:
            args.append(code[begin:i].strip())
            begin = i + 1
    raise ValueError("unbalanced call")


def gemm_widths(code: str, rows: int) -> set[int]:
    """The reduced width K of every GEMM over ``rows`` rows in Inductor's generated code (mm(input,
    weight), addmm(bias, input, weight), oneDNN's _linear_pointwise(input, ...)): the input's
    (rows, K) shape, from its view or from the allocation of the buffer it is."""
    allocated = {name: (int(r), int(k)) for name, r, k in
                 re.findall(r"(buf\d+) = empty_strided_\w+\(\((\d+), (\d+)\)", code)}
    widths = set()
    for m in re.finditer(r"extern_kernels\.(mm|addmm)\(|_linear_pointwise\.default\(", code):
        arg = _call_args(code, m.end() - 1)[1 if m.group(1) == "addmm" else 0]
        view = re.match(r"reinterpret_tensor\(\w+, \((\d+), (\d+)\)", arg)
        shape = (int(view.group(1)), int(view.group(2))) if view else allocated.get(arg)
        if shape and shape[0] == rows:
            widths.add(shape[1])
    return widths


@pytest.mark.parametrize("autocast", [False, True], ids=["float32", "bf16-autocast"])
def test_compiled_gemm_inputs_are_widened_by_their_producers(autocast: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # Compiled for CUDA, a block of 348 channels (stage 3 of -T/-S) feeds its GEMMs rows widened by
    # zeros to 352: the norms' kernels write straight into the wider buffers (a concatenation with
    # zeros) and u is carried 4 zero channels wider from in_proj through the conv, so no GEMM input
    # is 348 wide and Inductor has nothing to pad in copies of its own. Forced onto the CPU here to
    # read the generated code; the results must match the eager block's.
    from torch._inductor.utils import run_and_get_code

    monkeypatch.setattr(gm, "_dense_projections", lambda x: True)
    monkeypatch.setattr(gm, "_widens_gemm_inputs", lambda x: gm.ALIGN_GEMM_INPUTS and torch.compiler.is_compiling())
    torch.manual_seed(3)
    block = gm.Block(348, 4).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn_like(p) * 0.1 + (0.5 if p.ndim == 1 else 0.0))
    x = torch.randn(2, 5 * 3, 348)
    widths = {}
    for align in (True, False):
        monkeypatch.setattr(gm, "ALIGN_GEMM_INPUTS", align)
        torch._dynamo.reset()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            expected = block(x, 5, 3)
            out, code = run_and_get_code(torch.compile(block), x, 5, 3)
        torch._dynamo.reset()
        assert rel_err(out.float(), expected.float()) <= (1e-2 if autocast else 1e-5)
        widths[align] = gemm_widths("\n".join(code), rows=x.shape[0] * x.shape[1])
    assert widths[True] and all(k % 8 == 0 for k in widths[True]), widths
    assert 348 in widths[False]  # what the test would catch


def test_features_only_gives_each_stage_as_nchw_maps_on_odd_shapes():
    """timm's feature API: ``features_only=True`` wraps the model (timm's getter) and returns each stage's
    map, the same tensors the classifier computes; out_indices prunes the stages after the last one."""
    import timm

    small = dict(stem_hidden_dim=16, embed_dims=[32, 64, 96, 128], mlp_ratios=[8, 8, 4, 4], depths=[1, 2, 2, 1])
    torch.manual_seed(0)
    full = timm.create_model("groupmamba_tiny", **small).eval()
    features = timm.create_model("groupmamba_tiny", features_only=True, **small).eval()
    assert features.feature_info.channels() == [32, 64, 96, 128]
    assert features.feature_info.reduction() == [4, 8, 16, 32]
    features.model.load_state_dict({k: v for k, v in full.state_dict().items() if k in features.model.state_dict()})
    x = torch.randn(2, 3, 96, 160)  # non-square
    with torch.no_grad():
        maps = features(x)
        assert [tuple(m.shape) for m in maps] == [(2, 32, 24, 40), (2, 64, 12, 20), (2, 96, 6, 10), (2, 128, 3, 5)]
        assert torch.allclose(maps[-1].flatten(2).transpose(1, 2), full.forward_stages(x), atol=1e-6)
        pooled, maps_again = full.forward_intermediates(x)
        assert torch.allclose(full.forward_head(pooled), full(x), atol=1e-6)
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(maps, maps_again))
    middle = timm.create_model("groupmamba_tiny", features_only=True, out_indices=(1, 2), **small)
    assert middle.feature_info.channels() == [64, 96]
    assert not any(name.startswith(("block4", "post_network", "head")) for name, _ in middle.model.named_parameters())


# ---------------------------------------------------------------------------------------------
# Other dtypes, weight caches, timm's training tools, tracing
# ---------------------------------------------------------------------------------------------

def _small_model(**kwargs) -> gm.GroupMamba:
    torch.manual_seed(0)
    return gm.groupmamba_tiny(depths=(1, 1, 1, 1), num_classes=10, **kwargs)


@pytest.mark.parametrize("dtype, tolerance", [(torch.bfloat16, 5e-2), (torch.float16, 1e-2), (torch.float64, 1e-5)])
def test_a_model_cast_to_another_dtype_runs_in_that_dtype(dtype: torch.dtype, tolerance: float) -> None:
    """``model.to(dtype)`` works as for the other models: the forward stays in the model's dtype (the
    scan in at least float32, as published) and agrees with the float32 model to the dtype's precision."""
    model = _small_model().eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = model(x)
        out = model.to(dtype)(x.to(dtype))
    assert out.dtype == dtype
    assert rel_err(out, reference) <= tolerance


def test_weight_caches_follow_updates_and_invalidate_caches_covers_writes_through_data() -> None:
    """The inference caches (packed linears, stacked group weights) notice in-place updates of the
    parameters; writes through ``p.data`` are not recorded by any version counter and need
    ``invalidate_caches()``."""
    model = _small_model().eval()
    x = torch.randn(1, 3, 64, 64)

    def fresh_output() -> torch.Tensor:
        fresh = gm.groupmamba_tiny(depths=(1, 1, 1, 1), num_classes=10).eval()
        fresh.load_state_dict(model.state_dict())
        return fresh(x)

    mixer = model.block1[0].attn
    with torch.no_grad():
        before = model(x)
        mixer.proj.weight.mul_(0.5)           # in place on the parameters: noticed
        mixer.mamba_g1.A_logs.mul_(0.5)
        assert torch.equal(model(x), fresh_output())
        mixer.proj.weight.data.mul_(0.5)      # through .data: seen after invalidate_caches()
        mixer.mamba_g2.A_logs.data.mul_(0.5)
        assert model.invalidate_caches() > 0
        after = model(x)
        assert torch.equal(after, fresh_output())
    assert not torch.allclose(after, before)


def test_layer_decay_trains_the_stem_and_grows_with_depth() -> None:
    """timm's layer-wise lr decay groups the parameters by ``group_matcher``: the stem gets the smallest
    positive scale, each later block a larger one, the heads 1."""
    from timm.models import group_parameters
    from timm.optim import create_optimizer_v2

    model = _small_model()
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05, layer_decay=0.75)
    scale = {id(p): group["lr_scale"] for group in optimizer.param_groups for p in group["params"]}
    scales = [scale[id(p)] for _, p in model.named_parameters()]  # in the order the network runs them
    assert scales[0] == min(scales) > 0                             # patch_embed1, the stem
    assert scales == sorted(scales)
    assert scale[id(model.head.weight)] == 1.0
    # stem, 4 blocks (downsamplings and stage norms with them), class-token network, heads
    assert len(set(scales)) == 7
    # coarse: stem, 4 stages, class-token network, heads
    assert len(group_parameters(model, model.group_matcher(coarse=True))) == 7


def test_no_weight_decay_names_the_ssm_parameters_for_timm() -> None:
    from timm.optim import create_optimizer_v2

    model = _small_model()
    names = model.no_weight_decay()
    assert "block1.0.attn.mamba_g1.A_logs" in names and "post_network.0.attn.mamba_g4.Ds" in names
    assert "block1.0.attn.skip_scale" in names
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05)
    decay = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    a_logs = [p for name, p in model.named_parameters() if name.endswith("A_logs")]
    assert a_logs and all(decay[id(p)] == 0.0 for p in a_logs)
    assert decay[id(model.block1[0].attn.proj.weight)] == 0.05


def test_grad_checkpointing_recomputes_blocks_with_the_same_loss_and_grads() -> None:
    model = _small_model(drop_path_rate=0.0).train()
    x = torch.randn(2, 3, 64, 64)
    calls: list[str] = []
    model.block2[0].register_forward_pre_hook(lambda *_: calls.append("block2.0"))

    loss, grads = loss_and_grads(model, x)
    assert len(calls) == 1
    model.set_grad_checkpointing(True)
    loss_ckpt, grads_ckpt = loss_and_grads(model, x)
    assert len(calls) == 3  # forward, then again in the backward pass
    assert torch.allclose(loss_ckpt, loss, rtol=1e-6, atol=0)
    assert grads_ckpt.keys() == grads.keys()
    for name, grad in grads.items():  # (the class token's skip_scale gets a zero gradient: its LayerNorm cancels it)
        torch.testing.assert_close(grads_ckpt[name], grad, rtol=1e-5, atol=1e-8, msg=name)
    with torch.no_grad():  # nothing to recompute without autograd
        model(x)
    assert len(calls) == 4


def test_torch_jit_trace_takes_the_plain_ops() -> None:
    """Tracing steps around the oneDNN operators (the tracer cannot record their arguments). Traced
    without autograd, as the scan's path depends on it (trace's own check reruns under no_grad)."""
    model = _small_model().eval()
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.randn(1, 3, 64, 64))
        x = torch.randn(2, 3, 64, 64)
        assert rel_err(traced(x), model(x)) <= 1e-5


def test_builds_on_the_meta_device_with_the_drop_path_rates_of_torch_linspace() -> None:
    """The drop-path rates are computed in Python (torch.linspace(...).tolist() cannot read a meta
    tensor); they are torch.linspace's up to its float32 rounding."""
    with torch.device("meta"):
        model = gm.groupmamba_tiny(drop_path_rate=0.2)
    assert {p.device.type for p in model.parameters()} == {"meta"}
    rates = [getattr(blk.drop_path, "drop_prob", 0.0) for i in range(4) for blk in getattr(model, f"block{i + 1}")]
    expected = torch.linspace(0, 0.2, sum(model.depths), dtype=torch.float64)
    assert rates[0] == 0.0 and rates[-1] == 0.2
    torch.testing.assert_close(torch.tensor(rates, dtype=torch.float64), expected, rtol=0, atol=1e-15)
    torch.testing.assert_close(torch.tensor(rates, dtype=torch.float32), torch.linspace(0, 0.2, sum(model.depths)),
                               rtol=0, atol=1e-7)


def test_pretrained_weights_neither_reachable_nor_cached_name_the_repo_and_file(tmp_path: Path) -> None:
    """huggingface_hub's own LocalEntryNotFoundError names neither; ssmzoo raises one that does (chained
    to it). Real huggingface_hub in a fresh interpreter: HF_HUB_OFFLINE=1 and an empty cache."""
    import os

    code = ("import ssmzoo, timm\n"
            "from huggingface_hub.errors import LocalEntryNotFoundError\n"
            "try:\n"
            "    timm.create_model('groupmamba_small', pretrained=True)\n"
            "except LocalEntryNotFoundError as e:\n"
            "    print(type(e.__cause__).__name__); print(e)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hub")}
    env.pop("TRANSFORMERS_OFFLINE", None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    cause, message = done.stdout.strip().split("\n", 1)
    assert cause == "LocalEntryNotFoundError"
    assert "groupmamba_small" in message and "'Abdelrahman-shaker/GroupMamba-Small'" in message
    assert "'groupmamba_small_ema.pth'" in message and "HF_HUB_OFFLINE is set" in message
    assert str(tmp_path / "hub") in message and "pretrained_cfg_overlay=dict(file=PATH)" in message
