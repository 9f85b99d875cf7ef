"""On a CUDA device the models run the Triton scan kernels and still compute the published function.

Skipped without CUDA (CI); run on the GPU machine before calling GPU work done.
"""

import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file

import ssmzoo  # noqa: F401
from ssmzoo.models import groupmamba as gm
from ssmzoo.ops import scan_backend

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def exact_fp32_matmuls(monkeypatch):
    """TF32 would dominate the error budget; the golden comparison is about the function, in fp32."""
    monkeypatch.delenv("SSMZOO_SCAN", raising=False)
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def rel_err(out, ref):
    return ((out.double().cpu() - ref.double().cpu()).norm() / ref.double().cpu().norm()).item()


def test_cuda_tensors_pick_the_triton_backend():
    assert scan_backend("cuda") == "triton"


def test_groupmamba_golden_with_triton_scan():
    model = gm.groupmamba_from_config(json.loads((DATA / "groupmamba_mini_config.json").read_text()))
    model.load_state_dict(load_file(DATA / "groupmamba_mini.safetensors"), strict=True)
    model = model.eval().cuda()
    io = load_file(DATA / "groupmamba_mini_io.safetensors")
    with torch.no_grad():
        features = model.forward_features(io["input"].cuda())
        logits = model.forward_head(features)
    assert rel_err(features, io["features"]) <= 1e-5
    assert rel_err(logits, io["logits"]) <= 1e-5


@pytest.mark.parametrize("kind", ["image", "video"])
def test_videomamba_golden_with_triton_scan(kind):
    cfg = json.loads((DATA / f"videomamba_{kind}_mini_config.json").read_text())
    model = timm.create_model("videomamba_tiny_video" if kind == "video" else "videomamba_tiny", **cfg)
    model.load_state_dict(load_file(DATA / f"videomamba_{kind}_mini.safetensors"), strict=True)
    model = model.eval().cuda()
    io = load_file(DATA / f"videomamba_{kind}_mini_io.safetensors")
    with torch.no_grad():
        tokens = model.forward_features(io["input"].cuda())
        features = model.forward_head(tokens, pre_logits=True)
        logits = model.forward_head(tokens)
    assert rel_err(features, io["features"]) <= 1e-5
    assert rel_err(logits, io["logits"]) <= 1e-5


@pytest.mark.parametrize("name,shape", [
    ("groupmamba_tiny", (4, 3, 224, 224)),
    ("groupmamba_tiny", (2, 3, 160, 256)),          # non-square
    ("videomamba_small", (4, 3, 224, 224)),
    ("videomamba_small_video", (1, 3, 16, 224, 224)),  # 3137 tokens
])
def test_full_size_models_triton_equals_torch_backend(name, shape, monkeypatch):
    torch.manual_seed(0)
    kwargs = {"num_frames": 16} if name.endswith("_video") else {}
    model = timm.create_model(name, **kwargs).eval().cuda()
    x = torch.randn(shape, device="cuda")
    with torch.no_grad():
        fast = model(x)
        monkeypatch.setenv("SSMZOO_SCAN", "torch")
        slow = model(x)
    assert rel_err(fast, slow) <= 1e-4


def test_bf16_autocast_agrees_with_fp32_on_top1():
    torch.manual_seed(0)
    model = timm.create_model("groupmamba_tiny").eval().cuda()
    x = torch.randn(16, 3, 224, 224, device="cuda")
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = model(x)
    assert torch.isfinite(low).all()
    assert rel_err(low.float(), ref) <= 5e-2


@pytest.mark.parametrize("autocast", [False, True], ids=["float32", "bf16-autocast"])
def test_compiled_block_of_unaligned_width_matches_eager(autocast):
    """Stage 3 of GroupMamba-T/-S is 348 channels wide, not a multiple of 8: compiled, its GEMM inputs
    are widened by zeros (groupmamba._aligned_linear, _gemm_pad), which must not change the function.
    (The golden models' widths are multiples of 8.)"""
    import torch._inductor.config as inductor_config

    torch.manual_seed(0)
    block = gm.Block(348, 4).eval().cuda()
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn_like(p) * 0.1 + (0.5 if p.ndim == 1 else 0.0))
    x = torch.randn(4, 14 * 13, 348, device="cuda")
    torch._dynamo.reset()
    with (torch.no_grad(), inductor_config.patch(**gm.GroupMamba.inductor_options["cuda"]),
          torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast)):
        expected = block(x, 14, 13)
        out = torch.compile(block, fullgraph=True)(x, 14, 13)
    torch._dynamo.reset()
    assert rel_err(out.float(), expected.float()) <= (2e-2 if autocast else 1e-4)


@pytest.mark.parametrize("autocast", [False, True], ids=["float32", "bf16-autocast"])
@pytest.mark.parametrize("channels", [(128, 348), (348, 448)], ids=["out-348", "in-348"])
def test_compiled_downsampling_of_unaligned_width_matches_eager(channels, autocast):
    """Compiled for CUDA, the downsampling conv's unaligned channel counts (GroupMamba-T/-S: 348) are
    widened by zeros (groupmamba.DownSamples._aligned_conv): the function must not change. The input
    is a channels-last view of tokens, as forward_stages hands it over; the map is not square."""
    import torch._inductor.config as inductor_config

    torch.manual_seed(0)
    cin, cout = channels
    down = gm.DownSamples(cin, cout).eval().cuda()
    with torch.no_grad():
        down.norm.weight.uniform_(0.5, 1.5)
        down.norm.bias.normal_()
    tokens = torch.randn(4, 15 * 13, cin, device="cuda")
    x = tokens.reshape(4, 15, 13, cin).permute(0, 3, 1, 2)
    torch._dynamo.reset()
    with (torch.no_grad(), inductor_config.patch(**gm.GroupMamba.inductor_options["cuda"]),
          torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast)):
        expected, H, W = down(x)
        out, H2, W2 = torch.compile(down, fullgraph=True)(x)
    torch._dynamo.reset()
    assert (H2, W2) == (H, W) == (8, 7) and out.shape == expected.shape == (4, 56, cout)
    assert rel_err(out.float(), expected.float()) <= (2e-2 if autocast else 1e-4)


@pytest.mark.parametrize("family", ["groupmamba", "videomamba_video"])
def test_compiled_model_matches_golden(family):
    """torch.compile sees the Triton scans as opaque custom ops and must not change the function."""
    if family == "groupmamba":
        model = gm.groupmamba_from_config(json.loads((DATA / "groupmamba_mini_config.json").read_text()))
        stem = "groupmamba_mini"
    else:
        cfg = json.loads((DATA / "videomamba_video_mini_config.json").read_text())
        model = timm.create_model("videomamba_tiny_video", **cfg)
        stem = "videomamba_video_mini"
    model.load_state_dict(load_file(DATA / f"{stem}.safetensors"), strict=True)
    model = model.eval().cuda()
    io = load_file(DATA / f"{stem}_io.safetensors")
    from ssmzoo.factory import compile_model

    compiled = compile_model(model, fullgraph=True)
    with torch.no_grad():
        logits = compiled(io["input"].cuda())
    assert rel_err(logits, io["logits"]) <= 1e-5
