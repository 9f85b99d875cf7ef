"""Shared fixtures: a small GroupMamba in a user manifest, a real checkpoint for it, and a CLI runner."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

MINI_MANIFEST = """
models:
  groupmamba_mini:
    family: groupmamba
    architecture: groupmamba_tiny
    arch_args: {stem_hidden_dim: 16, embed_dims: [32, 64, 96, 128], mlp_ratios: [8, 8, 4, 4], depths: [1, 2, 2, 1]}
    task: image-classification
    labels: imagenet-1k
    data: {input_size: [3, 96, 96], crop_pct: 0.875, interpolation: bicubic}
    weights: {repo_id: ssmzoo-test/groupmamba-mini, filename: groupmamba_mini.pth, state_dict_key: model}
  videomamba_mini_k400:
    family: videomamba
    architecture: videomamba_tiny_video
    arch_args: {img_size: 64, embed_dim: 64, depth: 2, num_frames: 4}
    task: video-classification
    labels: kinetics-400
    data: {input_size: [3, 64, 64], interpolation: bilinear}
    video: {num_frames: 4, sampling: sparse, clips: 2, crops: 3, short_side: 64, crop_size: 64}
"""


@pytest.fixture(autouse=True)
def isolated_hub(tmp_path_factory, monkeypatch):
    """No test touches the user's Hugging Face cache or the network."""
    home = tmp_path_factory.mktemp("hf_home")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a closed port: any stray request fails fast
    monkeypatch.delenv("SSMZOO_MANIFEST", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


@pytest.fixture(scope="session")
def mini_files(tmp_path_factory):
    """A user manifest with a small GroupMamba (1000 classes) and a random checkpoint for it."""
    import ssmzoo  # noqa: F401
    import timm

    root = tmp_path_factory.mktemp("mini")
    manifest = root / "mini.yaml"
    manifest.write_text(MINI_MANIFEST)
    torch.manual_seed(0)
    model = timm.create_model("groupmamba_tiny", stem_hidden_dim=16, embed_dims=[32, 64, 96, 128],
                              mlp_ratios=[8, 8, 4, 4], depths=[1, 2, 2, 1])
    with torch.no_grad():  # make the heads decisive so top-k orders are stable
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    checkpoint = root / "groupmamba_mini.pth"
    torch.save({"model": {"module." + k: v for k, v in model.state_dict().items()}, "epoch": 3}, checkpoint)
    return manifest, checkpoint


@pytest.fixture(scope="session")
def mini_video_checkpoint(tmp_path_factory):
    """Random weights for the manifest's `videomamba_mini_k400` (a bare state dict, as the authors publish)."""
    import ssmzoo  # noqa: F401
    import timm

    torch.manual_seed(1)
    model = timm.create_model("videomamba_tiny_video", img_size=64, embed_dim=64, depth=2, num_frames=4,
                              num_classes=400)
    path = tmp_path_factory.mktemp("mini_video") / "videomamba_mini_k400.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture()
def example_images(tmp_path):
    """The README's example photos, copied so tests may add broken files beside them."""
    folder = tmp_path / "images"
    folder.mkdir()
    for path in sorted(EXAMPLES.glob("*.jpg")):
        shutil.copy(path, folder / path.name)
    return folder



def loss_and_grads(model: torch.nn.Module, x: torch.Tensor, seed: int | None = None
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A training step's loss (mean square of the output) and each parameter's gradient, for comparing
    two ways of running one model (e.g. with and without gradient checkpointing); ``seed`` fixes the
    random draws (drop path) before the forward."""
    model.zero_grad(set_to_none=True)
    if seed is not None:
        torch.manual_seed(seed)
    loss = model(x).square().mean()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def photos_under_other_suffixes(folder: Path) -> list[Path]:
    """The coffee photo saved under suffixes Pillow reads here that the old fixed list left out: JPEG's
    .jfif and .jpe always, .jp2 and .avif where this Pillow has their codecs."""
    from PIL import Image, features

    photo = Image.open(EXAMPLES / "coffee.jpg").convert("RGB").resize((120, 80))
    suffixes = [".jfif", ".jpe"] + [s for s, f in ((".jp2", "jpg_2000"), (".avif", "avif")) if features.check(f)]
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in suffixes:
        photo.save(folder / f"coffee{suffix}")
    return sorted(folder / f"coffee{s}" for s in suffixes)


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


@pytest.fixture()
def cli(capsys):
    """Runs the console entry point in-process, as `ssmzoo ARGS...` would, and captures its output."""
    from ssmzoo.cli import run

    def invoke(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            run([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke


@pytest.fixture()
def no_tf32():
    """Float32 matmuls and convolutions in full precision on CUDA (TF32 is cuDNN's default for convs),
    so GPU results can be held to float32 tolerances."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


WITHOUT_OVERRIDE = ["--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search"]


def ssmzoo_as_ordinary_user(*args, cwd: Path) -> subprocess.CompletedProcess:
    """``ssmzoo ARGS`` in a child process that permission bits apply to: where the tests run as root,
    its capabilities to override them are dropped (util-linux's ``setpriv``), as an ordinary user's are."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: permission bits cannot be made to apply")
        prefix = [setpriv, *WITHOUT_OVERRIDE]
    command = [*prefix, sys.executable, "-m", "ssmzoo", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=600)

