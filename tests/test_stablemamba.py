"""StableMamba: every registered config builds with the intended block layout; attention against
hand-written math; the interleaved residual protocol against a plain pre-norm Transformer; forward on
odd image and video sizes; state-dict round trip."""

from __future__ import annotations

import io

import pytest
import timm
import torch

import ssmzoo.models.stablemamba as sm
from ssmzoo.models.videomamba import MambaBlock

SIZES = {  # ssmzoo's choice, mirrored here so a silent change of a published config fails a test
    "tiny": (192, 24, 3), "small": (384, 24, 6), "middle": (576, 32, 9), "base": (768, 24, 12),
    "large": (1024, 24, 16),
}
NAMES = [f"stablemamba_{s}{v}" for s in SIZES for v in ("", "_video")]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def _small_image(**kw) -> sm.StableMamba:
    args = dict(img_size=(48, 80), embed_dim=48, depth=5, num_heads=4, attn_layers=[1, 4], num_classes=7)
    args.update(kw)
    return timm.create_model("stablemamba_tiny", **args).eval()


def test_all_names_registered() -> None:
    assert set(NAMES) <= set(timm.list_models("stablemamba*"))


@pytest.mark.parametrize("name", NAMES)
def test_config_builds_with_expected_layout(name: str) -> None:
    size = name.split("_")[1]
    dim, depth, heads = SIZES[size]
    with torch.device("meta"):
        model = timm.create_model(name)
    kinds = ["attn" if isinstance(b, sm.AttentionBlock) else "mamba" for b in model.layers]
    assert len(kinds) == depth
    assert [i for i, k in enumerate(kinds) if k == "attn"] == list(range(3, depth, 4))
    assert all(isinstance(model.layers[i], MambaBlock) for i, k in enumerate(kinds) if k == "mamba")
    attn = model.layers[3]
    assert attn.attn.num_heads == heads and attn.attn.head_dim * heads == dim
    # A pre-norm block with MLP ratio 4 holds 12 d^2 + 13 d parameters.
    assert sum(p.numel() for p in attn.parameters()) == 12 * dim * dim + 13 * dim
    assert model.is_video == name.endswith("_video")
    keys = model.state_dict().keys()
    for key in ("attn.qkv.weight", "attn.proj.weight", "mlp.fc1.weight", "mlp.fc2.weight", "norm1.weight",
                "norm2.weight"):
        assert f"layers.3.{key}" in keys
    assert "layers.0.mixer.A_b_log" in keys


def test_attention_matches_softmax_math() -> None:
    torch.manual_seed(0)
    attn = sm.Attention(48, num_heads=4).eval()
    x = torch.randn(2, 13, 48)
    heads, hd = 4, 12
    xd = x.double()
    qkv = xd @ attn.qkv.weight.double().T + attn.qkv.bias.double()
    q, k, v = qkv.split(48, dim=-1)

    def split(t: torch.Tensor) -> torch.Tensor:  # (b, l, d) -> (b, heads, l, hd)
        return t.reshape(2, 13, heads, hd).transpose(1, 2)

    scores = split(q) @ split(k).transpose(-1, -2) / hd ** 0.5
    weights = torch.exp(scores - scores.max(-1, keepdim=True).values)
    weights = weights / weights.sum(-1, keepdim=True)
    mixed = (weights @ split(v)).transpose(1, 2).reshape(2, 13, 48)
    ref = mixed @ attn.proj.weight.double().T + attn.proj.bias.double()
    with torch.no_grad():
        assert rel_err(attn(x), ref) <= 1e-5


def test_all_attention_model_is_a_prenorm_transformer() -> None:
    """With attention in every slot the residual protocol must reduce to x += attn(ln1(x)); x += mlp(ln2(x))."""
    torch.manual_seed(1)
    model = _small_image(depth=3, attn_layers=None, attn_every=1)
    assert all(isinstance(b, sm.AttentionBlock) for b in model.layers)
    x = torch.randn(2, 3, 48, 80)
    with torch.no_grad():
        h = model._tokens(x)
        for blk in model.layers:
            h = h + blk.attn(blk.norm1(h))
            h = h + blk.mlp(blk.norm2(h))
        ref = model.norm_f(h)
        assert rel_err(model.forward_features(x), ref) <= 1e-5


@pytest.mark.parametrize("shape", [(3, 50, 83), (3, 37, 101)])
def test_image_forward_odd_sizes(shape: tuple) -> None:
    torch.manual_seed(2)
    model = _small_image()
    x = torch.randn(3, *shape)
    with torch.no_grad():
        out = model(x)
        single = model(x[1:2])
    assert out.shape == (3, 7) and torch.isfinite(out).all()
    assert rel_err(single, out[1:2]) <= 1e-5  # no mixing across the batch


def test_video_forward_odd_sizes() -> None:
    torch.manual_seed(3)
    model = timm.create_model("stablemamba_tiny_video", img_size=32, num_frames=4, embed_dim=48, depth=4,
                              num_heads=4, attn_every=2, num_classes=7).eval()
    x = torch.randn(2, 3, 5, 40, 56)  # 5 frames (trained for 4), 2x3 patch grid (trained for 2x2)
    with torch.no_grad():
        out = model(x)
        single = model(x[:1])
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    assert rel_err(single, out[:1]) <= 1e-5


def test_state_dict_round_trip() -> None:
    torch.manual_seed(4)
    model = _small_image()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(5)
    fresh = _small_image()
    x = torch.randn(2, 3, 48, 80)
    with torch.no_grad():
        assert not torch.allclose(fresh(x), model(x))
        fresh.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
        assert torch.equal(fresh(x), model(x))


def test_attention_placement_arguments() -> None:
    assert sm.attention_layer_indices(10, attn_every=3) == (2, 5, 8)
    assert sm.attention_layer_indices(10, attn_layers=[9, 0, 0]) == (0, 9)
    with pytest.raises(ValueError):
        sm.attention_layer_indices(10, attn_layers=[10])
    with pytest.raises(ValueError):
        sm.attention_layer_indices(10, attn_layers=[1], attn_every=2)
    with pytest.raises(ValueError):
        timm.create_model("stablemamba_tiny", embed_dim=50, num_heads=4, depth=2)


MANIFEST_ENTRIES = [f"stablemamba_{s}_{t}" for s in SIZES for t in ("in1k", "k400")]


@pytest.mark.parametrize("name", MANIFEST_ENTRIES)
def test_manifest_entry_matches_the_model_it_builds(name: str) -> None:
    """The manifest's ``ssmzoo_choice`` must describe the model ssmzoo actually builds, and with no
    readable per-model figure in the paper, ``reported`` must stay empty."""
    from ssmzoo.manifest import load_manifest

    entry = load_manifest()[name]
    choice = entry.ssmzoo_choice
    with torch.device("meta"):
        model = timm.create_model(entry.architecture, **dict(entry.arch_args))
    attn = [i for i, b in enumerate(model.layers) if isinstance(b, sm.AttentionBlock)]
    mamba = next(b for b in model.layers if isinstance(b, MambaBlock))
    assert model.embed_dim == choice["embed_dim"]
    assert len(model.layers) == choice["depth"]
    assert attn == list(choice["attn_layers"]) == list(range(choice["attn_every"] - 1, choice["depth"],
                                                             choice["attn_every"]))
    assert model.layers[attn[0]].attn.num_heads == choice["num_heads"]
    assert model.layers[attn[0]].mlp.fc1.out_features == int(choice["mlp_ratio"] * choice["embed_dim"])
    assert tuple(model.patch_embed.patch_size) == (choice["patch_size"],) * 2
    assert mamba.mixer.d_state == choice["d_state"]
    if entry.is_video:
        assert entry.arch_args["num_frames"] == entry.video.num_frames == choice["num_frames"]
    r = entry.reported
    assert (r.params_m, r.gflops, r.top1, r.top5) == (None, None, None, None)
    assert entry.weights is None


@pytest.mark.parametrize("pool", ["max", "", "bogus"])
def test_reset_classifier_refuses_a_pooling_the_constructor_refuses(pool: str) -> None:
    """StableMamba inherits VideoMamba's head: the same two poolings, checked the same way."""
    with pytest.raises(ValueError, match="global_pool must be 'token' or 'avg'"):
        _small_image(global_pool=pool)
    model = _small_image()
    with pytest.raises(ValueError, match=f"global_pool must be 'token' or 'avg', got {pool!r}"):
        model.reset_classifier(3, global_pool=pool)
    model.reset_classifier(3, global_pool="avg")
    assert model.global_pool == "avg" and model(torch.randn(1, 3, 48, 80)).shape == (1, 3)
