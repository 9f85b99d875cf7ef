"""VideoMamba: published key/shape layout, parity with the authors' code (golden data), the
bidirectional mixer against a float64 recurrence, and position-embedding resampling."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import ssmzoo.models.videomamba as vm
from ssmzoo.ops import selective_scan_ref
from conftest import loss_and_grads

DATA = Path(__file__).parent / "data"


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def _mini(kind: str, **overrides) -> vm.VideoMamba:
    cfg = json.loads((DATA / f"videomamba_{kind}_mini_config.json").read_text())
    cfg.update(overrides)
    name = "videomamba_tiny_video" if kind == "video" else "videomamba_tiny"
    return timm.create_model(name, **cfg).eval()


# -- published layouts -----------------------------------------------------------------------------

PUBLISHED = [
    ("tiny_in1k", "videomamba_tiny", {}),
    ("small_in1k", "videomamba_small", {}),
    ("middle_in1k", "videomamba_middle", {}),
    ("base_in1k", "videomamba_base", {}),
    ("tiny_k400_f16", "videomamba_tiny_video", {"num_frames": 16, "num_classes": 400}),
    ("small_k400_f16", "videomamba_small_video", {"num_frames": 16, "num_classes": 400}),
    ("middle_k400_f16", "videomamba_middle_video", {"num_frames": 16, "num_classes": 400}),
]


@pytest.mark.parametrize("tag,name,kwargs", PUBLISHED, ids=[p[0] for p in PUBLISHED])
def test_state_dict_matches_published(tag: str, name: str, kwargs: dict) -> None:
    expected = json.loads((DATA / f"videomamba_{tag}_state_dict_shapes.json").read_text())
    with torch.device("meta"):
        model = timm.create_model(name, **kwargs)
    got = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert set(got) == set(expected), (sorted(set(got) ^ set(expected)))[:10]
    mismatched = {k: (got[k], expected[k]) for k in got if got[k] != expected[k]}
    assert not mismatched, list(mismatched.items())[:5]


def test_registered_names() -> None:
    names = set(timm.list_models("videomamba*"))
    for size in ("tiny", "small", "middle", "base"):
        assert f"videomamba_{size}" in names and f"videomamba_{size}_video" in names
    cfg = timm.create_model("videomamba_tiny", depth=1, embed_dim=32, img_size=32).pretrained_cfg
    assert cfg["crop_pct"] == 0.875 and cfg["interpolation"] == "bicubic"
    assert tuple(cfg["mean"]) == (0.485, 0.456, 0.406) and tuple(cfg["std"]) == (0.229, 0.224, 0.225)


def test_pretrained_flag_refuses_silent_random_weights() -> None:
    with pytest.raises(ValueError, match="manifest"):
        timm.create_model("videomamba_tiny", pretrained=True, depth=1, embed_dim=32)


def test_features_only_gives_the_residual_stream_of_the_last_blocks_as_maps() -> None:
    """timm's feature API, as timm's ViTs have it: ``features_only=True`` (timm's getter) gives the
    residual stream after the last 3 blocks (or ``out_indices``) without the cls token, as
    (B, D, H', W') maps on a non-square image; the same tensors the classifier computes."""
    small = dict(depth=3, embed_dim=32, img_size=32, drop_path_rate=0.0)
    torch.manual_seed(0)
    full = timm.create_model("videomamba_tiny", **small).eval()
    features = timm.create_model("videomamba_tiny", features_only=True, **small).eval()
    assert features.feature_info.channels() == [32, 32, 32]
    assert features.feature_info.reduction() == [16, 16, 16]
    features.model.load_state_dict({k: v for k, v in full.state_dict().items() if k in features.model.state_dict()})
    x = torch.randn(2, 3, 48, 80)  # 3 x 5 patches
    seen = {}
    full.layers[2].norm.register_forward_hook(lambda module, args, out: seen.update(stream=args[0]))
    with torch.no_grad():
        maps = features(x)
        final = full.forward_features(x)
    assert [tuple(m.shape) for m in maps] == [(2, 32, 3, 5)] * 3
    # block 1's stream is what block 2 normalises; the last block's, normalised, is forward_features
    assert torch.allclose(maps[1].flatten(2).transpose(1, 2), seen["stream"][:, 1:], atol=1e-6)
    with torch.no_grad():
        (last, cls), = full.forward_intermediates(x, indices=[2], norm=True, output_fmt="NLC",
                                                   return_prefix_tokens=True, intermediates_only=True)
        tokens, _ = full.forward_intermediates(x)
    assert torch.allclose(last, final[:, 1:], atol=1e-6) and torch.allclose(cls, final[:, :1], atol=1e-6)
    assert torch.equal(tokens, final)
    first = timm.create_model("videomamba_tiny", features_only=True, out_indices=(0,), **small)
    assert len(first.model.layers) == 1 and not any(n.startswith("head") for n, _ in first.model.named_parameters())
    with pytest.raises(ValueError, match="output_fmt 'NHWC'"):
        full.forward_intermediates(x, output_fmt="NHWC")


def test_features_only_on_video_and_stablemamba_gives_time_space_maps() -> None:
    """Video models give (B, D, T', H', W') maps; StableMamba's attention blocks take part like the
    Mamba blocks; ``feature_cfg=dict(norm=True)`` puts each through the final norm (``norm`` itself
    names the blocks' norm kind)."""
    for name in ("videomamba_tiny_video", "stablemamba_tiny_video"):
        extra = dict(num_heads=2) if name.startswith("stable") else {}
        torch.manual_seed(0)
        full = timm.create_model(name, depth=4, embed_dim=32, img_size=32, num_frames=4, **extra).eval()
        features = timm.create_model(name, features_only=True, out_indices=(1, 3), depth=4, embed_dim=32,
                                     img_size=32, num_frames=4, feature_cfg=dict(norm=True), **extra).eval()
        features.model.load_state_dict({k: v for k, v in full.state_dict().items()
                                        if k in features.model.state_dict()})
        clip = torch.randn(1, 3, 4, 32, 48)
        with torch.no_grad():
            maps = features(clip)
            final = full.forward_features(clip)
        assert [tuple(m.shape) for m in maps] == [(1, 32, 4, 2, 3)] * 2, name
        assert torch.allclose(maps[1].flatten(2).transpose(1, 2), final[:, 1:], atol=1e-5), name


# -- parity with the authors' implementation ----------------------------------------------------------

@pytest.mark.parametrize("kind", ["image", "video"])
def test_golden_parity(kind: str) -> None:
    model = _mini(kind)
    model.load_state_dict(load_file(DATA / f"videomamba_{kind}_mini.safetensors"), strict=True)
    io = load_file(DATA / f"videomamba_{kind}_mini_io.safetensors")
    with torch.no_grad():
        tokens = model.forward_features(io["input"])
        features = model.forward_head(tokens, pre_logits=True)
        logits = model.forward_head(tokens)
        direct = model(io["input"])
    assert rel_err(features, io["features"]) <= 1e-5
    assert rel_err(logits, io["logits"]) <= 1e-5
    assert torch.equal(direct, logits)


# -- the mixer against a float64 step-by-step recurrence ---------------------------------------------

def _direction_ref(x, z, conv, x_proj, dt_proj, A_log, D, dt_rank, d_state):
    """One direction in float64: explicit causal conv loop, then the reference recurrence."""
    length = x.shape[-1]
    w = conv.weight.double()[:, 0]                                        # (d, k)
    k = w.shape[-1]
    padded = F.pad(x, (k - 1, 0))
    conv_out = torch.stack([(padded[..., t:t + k] * w).sum(-1) for t in range(length)], -1)
    conv_out = F.silu(conv_out + conv.bias.double()[:, None])
    x_dbl = conv_out.transpose(1, 2) @ x_proj.weight.double().T
    dt, B, C = x_dbl.split([dt_rank, d_state, d_state], dim=-1)
    dt = (dt @ dt_proj.weight.double().T).transpose(1, 2)
    return selective_scan_ref(conv_out, dt, -torch.exp(A_log.double()), B.transpose(1, 2), C.transpose(1, 2),
                              D=D.double(), z=z, delta_bias=dt_proj.bias.double(), delta_softplus=True)


def test_bimamba_mixer_matches_float64_reference() -> None:
    torch.manual_seed(0)
    mixer = vm.BiMambaMixer(24, d_state=8, d_conv=4, expand=2).eval()
    with torch.no_grad():  # move A and D away from their structured init so they matter
        for p in (mixer.A_log, mixer.A_b_log, mixer.D, mixer.D_b):
            p.add_(0.3 * torch.randn_like(p))
    h = torch.randn(2, 37, 24)
    with torch.no_grad():
        out = mixer(h)
        xz = (h.double() @ mixer.in_proj.weight.double().T).transpose(1, 2)
        x, z = xz.chunk(2, dim=1)
        fwd = _direction_ref(x, z, mixer.conv1d, mixer.x_proj, mixer.dt_proj, mixer.A_log, mixer.D,
                             mixer.dt_rank, mixer.d_state)
        bwd = _direction_ref(x.flip(-1), z.flip(-1), mixer.conv1d_b, mixer.x_proj_b, mixer.dt_proj_b,
                             mixer.A_b_log, mixer.D_b, mixer.dt_rank, mixer.d_state)
        ref = (fwd + bwd.flip(-1)).transpose(1, 2) @ mixer.out_proj.weight.double().T
    assert rel_err(out, ref) <= 1e-5


def test_scan_inputs_tokens_major_are_the_same_values_without_copies() -> None:
    """The GPU layout of the scan operands: views of token-major memory, values unchanged."""
    torch.manual_seed(1)
    mixer = vm.BiMambaMixer(24, d_state=8, d_conv=4, expand=2).eval()
    x = mixer.in_proj(torch.randn(2, 37, 24)).transpose(1, 2).chunk(2, dim=1)[0]
    with torch.no_grad():
        plain = mixer._scan_inputs(x, "_b", tokens_major=False)
        viewed = mixer._scan_inputs(x, "_b", tokens_major=True)
    for name in ("u", "delta"):
        assert plain[name].is_contiguous()
        assert viewed[name].stride(1) == 1 and viewed[name].shape == plain[name].shape == (2, 48, 37)
        assert torch.equal(viewed[name], plain[name])
    for name in ("A", "B", "C", "D", "delta_bias"):
        assert torch.equal(viewed[name], plain[name])


@pytest.mark.parametrize("shape,kernel", [((2, 3, 37, 45), (16, 16)), ((1, 3, 5, 34, 50), (2, 16, 16)),
                                          ((2, 4, 4, 7, 9), (1, 3, 3))])
def test_patchify_linear_is_the_strided_conv(shape, kernel) -> None:
    """The CUDA patch embedding (one GEMM over unfolded patches) against the conv it replaces, on sizes
    the kernel does not divide (the conv drops the remainder), images and tubelets."""
    x = torch.randn(*shape, dtype=torch.float64)
    weight = torch.randn(8, shape[1], *kernel, dtype=torch.float64)
    bias = torch.randn(8, dtype=torch.float64)
    conv = F.conv2d if len(kernel) == 2 else F.conv3d
    expected = conv(x, weight, bias, stride=kernel)
    got = vm.patchify_linear(x, weight, bias)
    assert got.shape == expected.shape and torch.allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert got.movedim(1, -1).is_contiguous()  # channels-last memory, what the tokens need


def test_rmsnorm_matches_formula() -> None:
    norm = vm.RMSNorm(10, eps=1e-5)
    with torch.no_grad():
        norm.weight.normal_()
    x = torch.randn(3, 7, 10)
    ref = x.double() / torch.sqrt(x.double().pow(2).mean(-1, keepdim=True) + 1e-5) * norm.weight.double()
    assert rel_err(norm(x), ref) <= 1e-6


# -- position embedding resampling ----------------------------------------------------------------------

def _bicubic(pos: torch.Tensor, old: tuple, new: tuple) -> torch.Tensor:
    dim = pos.shape[-1]
    grid = pos[:, 1:].reshape(1, old[0], old[1], dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new, mode="bicubic", align_corners=False)
    return torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, dim)], dim=1)


def _linear_by_hand(embed: torch.Tensor, new_len: int) -> torch.Tensor:
    """Half-pixel-centre linear interpolation along dim 1, written out."""
    old_len = embed.shape[1]
    rows = []
    for i in range(new_len):
        src = min(max((i + 0.5) * old_len / new_len - 0.5, 0.0), old_len - 1)
        lo = int(math.floor(src))
        hi = min(lo + 1, old_len - 1)
        frac = src - lo
        rows.append((1 - frac) * embed[:, lo] + frac * embed[:, hi])
    return torch.stack(rows, dim=1)


def test_spatial_pos_embed_resampled_at_forward() -> None:
    torch.manual_seed(1)
    model = timm.create_model("videomamba_tiny", img_size=64, patch_size=16, embed_dim=32, depth=2,
                              num_classes=5).eval()
    reference = timm.create_model("videomamba_tiny", img_size=(96, 64), patch_size=16, embed_dim=32, depth=2,
                                  num_classes=5).eval()
    with torch.no_grad():  # unit-scale embeddings, so that a wrong layout shows in the output
        model.pos_embed.normal_()
    state = model.state_dict()
    state["pos_embed"] = _bicubic(state["pos_embed"], (4, 4), (6, 4))
    reference.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 96, 64)
    with torch.no_grad():  # every token, not just the logits: a layout error shows there first
        out, ref = model.forward_features(x), reference.forward_features(x)
        # The test can tell layouts apart: height and width swapped gives another answer.
        state["pos_embed"] = _bicubic(model.state_dict()["pos_embed"], (4, 4), (4, 6))
        reference.load_state_dict(state, strict=True)
        swapped = reference.forward_features(x)
    assert rel_err(out, ref) <= 1e-5
    assert rel_err(swapped, ref) > 1e-2


def test_temporal_pos_embed_resampled_at_forward() -> None:
    torch.manual_seed(2)
    kwargs = dict(img_size=32, patch_size=16, embed_dim=32, depth=2, num_classes=5)
    model = timm.create_model("videomamba_tiny_video", num_frames=4, **kwargs).eval()
    reference = timm.create_model("videomamba_tiny_video", num_frames=8, **kwargs).eval()
    with torch.no_grad():
        model.temporal_pos_embedding.normal_()
    state = model.state_dict()
    state["temporal_pos_embedding"] = _linear_by_hand(state["temporal_pos_embedding"], 8)
    reference.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        assert rel_err(model.forward_features(x), reference.forward_features(x)) <= 1e-5


def test_checkpoint_filter_resamples_on_load() -> None:
    torch.manual_seed(3)
    small = timm.create_model("videomamba_tiny_video", img_size=64, num_frames=4, embed_dim=32, depth=2,
                              num_classes=5).eval()
    with torch.no_grad():
        small.temporal_pos_embedding.normal_()
    big = timm.create_model("videomamba_tiny_video", img_size=96, num_frames=6, embed_dim=32, depth=2,
                            num_classes=5).eval()
    filtered = vm.checkpoint_filter_fn({"model": small.state_dict()}, big)
    big.load_state_dict(filtered, strict=True)
    x = torch.randn(1, 3, 6, 96, 96)
    with torch.no_grad():  # load-time and forward-time resampling are the same operation
        assert rel_err(big.forward_features(x), small.forward_features(x)) <= 1e-6


def test_image_checkpoint_into_video_model_is_framewise() -> None:
    """A one-frame clip through a video model holding image weights equals the image model: checks the
    token layout (cls first, spatial order) and the centred 2D->3D kernel inflation."""
    torch.manual_seed(4)
    image = timm.create_model("videomamba_tiny", img_size=(48, 64), embed_dim=32, depth=3, num_classes=5).eval()
    video = timm.create_model("videomamba_tiny_video", img_size=(48, 64), num_frames=1, embed_dim=32, depth=3,
                              num_classes=5).eval()
    filtered = vm.checkpoint_filter_fn({"model": image.state_dict()}, video)
    missing, unexpected = video.load_state_dict(filtered, strict=False)
    assert missing == ["temporal_pos_embedding"] and unexpected == []
    with torch.no_grad():
        video.temporal_pos_embedding.zero_()
        x = torch.randn(2, 3, 48, 64)
        assert rel_err(video.forward_features(x[:, :, None]), image.forward_features(x)) <= 1e-6


def test_bfloat16_forward_tracks_float32() -> None:
    torch.manual_seed(5)
    model = timm.create_model("videomamba_tiny", img_size=(32, 48), embed_dim=32, depth=2, num_classes=5).eval()
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        ref = model(x)
        out = model.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    assert rel_err(out.float(), ref) <= 5e-2


# -- arguments and inputs the model cannot use are refused up front --------------------------------

def _tiny(name: str = "videomamba_tiny", **kw) -> vm.VideoMamba:
    args = dict(img_size=32, embed_dim=32, depth=2, num_classes=5)
    args.update(kw)
    return timm.create_model(name, **args).eval()


@pytest.mark.parametrize("pool", ["max", "", "bogus"])
def test_reset_classifier_refuses_a_pooling_the_constructor_refuses(pool: str) -> None:
    with pytest.raises(ValueError, match="global_pool must be 'token' or 'avg'"):
        _tiny(global_pool=pool)
    model = _tiny()
    with pytest.raises(ValueError, match=f"global_pool must be 'token' or 'avg', got {pool!r}"):
        model.reset_classifier(7, global_pool=pool)
    assert model.global_pool == "token" and model.num_classes == 5  # a refused call changes nothing


def test_reset_classifier_sets_the_head_and_a_known_pooling() -> None:
    model = _tiny()
    model.reset_classifier(7, global_pool="avg")
    assert model.global_pool == "avg" and model.num_classes == 7
    model.reset_classifier(0)
    assert model.global_pool == "avg" and model(torch.randn(1, 3, 32, 32)).shape == (1, 32)


@pytest.mark.parametrize("kwargs,message", [
    (dict(num_frames=0), r"num_frames 0 gives no tubelet of kernel_size 1 frames"),
    (dict(num_frames=1, kernel_size=2), r"num_frames 1 gives no tubelet of kernel_size 2 frames"),
    (dict(num_frames=4, kernel_size=0), r"kernel_size must be a positive number of frames, got 0"),
    (dict(img_size=8), r"img_size 8 is smaller than one patch of 16 pixels"),
])
def test_sizes_that_leave_no_patch_or_tubelet_are_refused_at_construction(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _tiny("videomamba_tiny_video", **kwargs)


@pytest.mark.parametrize("name,shape,message", [
    ("videomamba_tiny", (1, 3, 15, 32), r"input of shape \(1, 3, 15, 32\) is smaller than one patch: "
                                        r"\(H, W\) must be at least \(16, 16\)"),
    ("videomamba_tiny_video", (1, 3, 1, 32, 32), r"input of shape \(1, 3, 1, 32, 32\) is smaller than one "
                                                 r"tubelet: \(T, H, W\) must be at least \(2, 16, 16\)"),
])
def test_an_input_below_one_patch_or_tubelet_is_a_value_error_naming_its_shape(name, shape, message) -> None:
    model = _tiny(name, **(dict(num_frames=4, kernel_size=2) if name.endswith("_video") else {}))
    with torch.no_grad(), pytest.raises(ValueError, match=message):
        model(torch.randn(shape))
    with torch.no_grad(), pytest.raises(ValueError, match=message):
        model.forward_intermediates(torch.randn(shape))


def test_an_odd_frame_count_with_kernel_size_2_drops_the_last_frame_as_the_authors_conv_does() -> None:
    """Documented behaviour (VideoMamba's docstring), not an error: 5 frames are read as 2 tubelets."""
    model = _tiny("videomamba_tiny_video", num_frames=4, kernel_size=2)
    x = torch.randn(1, 3, 5, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), model(x[:, :, :4]))


# -- timm's training API: gradient checkpointing, parameter groups, meta-device construction --------

TIMM_API_MODELS = [
    ("videomamba_tiny", dict(img_size=32, embed_dim=16, depth=3, num_classes=3), (2, 3, 32, 32)),
    ("videomamba_tiny_video", dict(img_size=32, embed_dim=16, depth=2, num_classes=3, num_frames=4, kernel_size=2),
     (1, 3, 4, 32, 32)),
    ("stablemamba_tiny", dict(img_size=32, embed_dim=16, depth=3, num_heads=2, attn_layers=[1], num_classes=3),
     (2, 3, 32, 32)),
]


@pytest.mark.parametrize("name,kwargs,shape", TIMM_API_MODELS)
def test_grad_checkpointing_gives_the_same_loss_and_grads(name: str, kwargs: dict, shape: tuple) -> None:
    """timm's ``--grad-checkpointing`` calls ``set_grad_checkpointing(True)``: each block, given the
    (hidden, residual) pair, is run again in the backward pass, and the gradients are those without it
    (float64; drop path on, which the recomputation replays with the same random draws)."""
    torch.manual_seed(0)
    model = timm.create_model(name, drop_path_rate=0.3, **kwargs).double().train()
    x = torch.randn(shape, dtype=torch.float64)
    calls: list[int] = []
    model.layers[1].register_forward_pre_hook(lambda *_: calls.append(1))

    loss, grads = loss_and_grads(model, x, seed=1)
    assert len(calls) == 1
    model.set_grad_checkpointing(True)
    loss_ckpt, grads_ckpt = loss_and_grads(model, x, seed=1)
    assert len(calls) == 3  # forward, then again in the backward pass
    torch.testing.assert_close(loss_ckpt, loss, rtol=1e-12, atol=0)
    assert grads_ckpt.keys() == grads.keys() == {n for n, _ in model.named_parameters()}
    for n, grad in grads.items():
        torch.testing.assert_close(grads_ckpt[n], grad, rtol=1e-10, atol=1e-14, msg=n)
    with torch.no_grad():  # nothing to recompute without autograd
        model(x)
    assert len(calls) == 4
    model.set_grad_checkpointing(False)
    assert not model.grad_checkpointing


@pytest.mark.parametrize("coarse", [False, True])
@pytest.mark.parametrize("name,kwargs,shape", TIMM_API_MODELS)
def test_group_matcher_puts_every_parameter_in_one_group_by_depth(name: str, kwargs: dict, shape: tuple,
                                                                  coarse: bool) -> None:
    from timm.models import group_parameters
    from timm.optim import create_optimizer_v2

    model = timm.create_model(name, **kwargs)
    groups = group_parameters(model, model.group_matcher(coarse=coarse))
    names = [n for members in groups.values() for n in members]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())  # each exactly once
    ordered = list(groups.values())
    # the embeddings, one group per block (the final norm with the last), the head
    assert len(ordered) == len(model.layers) + 2
    assert "cls_token" in ordered[0] and "pos_embed" in ordered[0] and "patch_embed.proj.weight" in ordered[0]
    assert ("temporal_pos_embedding" in ordered[0]) == model.is_video
    last = f"layers.{len(model.layers) - 1}."
    assert "norm_f.weight" in ordered[-2] and all(n.startswith((last, "norm_f.")) for n in ordered[-2])
    assert ordered[-1] == ["head.weight", "head.bias"]
    # timm's layer-wise lr decay reads the same groups: the embeddings get the smallest scale, the head 1
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-3, layer_decay=0.75)
    scale = {id(p): group["lr_scale"] for group in optimizer.param_groups for p in group["params"]}
    assert scale[id(model.cls_token)] == min(scale.values()) < scale[id(model.layers[0].norm.weight)]
    assert scale[id(model.head.weight)] == 1.0


@pytest.mark.parametrize("name,kwargs,shape", TIMM_API_MODELS)
def test_builds_on_the_meta_device(name: str, kwargs: dict, shape: tuple) -> None:
    with torch.device("meta"):
        model = timm.create_model(name, drop_path_rate=0.2, **kwargs)
    assert {p.device.type for p in model.parameters()} == {"meta"}
