"""Inference speed of zoo models, and of the timm models a user would pick instead, side by side.

``run_benchmark(entries, BenchConfig(...))`` is the library entry point (``ssmzoo benchmark`` calls it).
Models are built from the manifest with random weights: speed does not depend on weight values, and
nothing is downloaded. Inputs are random tensors already on the device, so data loading and
preprocessing are not timed.

Each ssmzoo model forms a group with its peers (``--peers``). Every member of a group is built and
warmed up (and compiled / captured in a CUDA graph) in turn, then the timed iterations are
*interleaved*: iteration i of every member runs before iteration i + 1 of any. Background load on a
shared machine therefore hits all members alike, and the throughput ratios stay meaningful.

Timing: one batch per iteration, timed with CUDA events on GPU (no synchronisation inside the loop,
so launch overhead counts as it does in real use) and ``time.perf_counter`` on CPU. Throughput is
samples / total timed time; latency is per batch (median, p90).

FLOPs are counted per sample (one image or one clip) on a copy of the model on the ``meta`` device:
``torch.utils.flop_counter.FlopCounterMode`` counts matmuls, convolutions and attention (2 FLOPs per
multiply-add) but not element-wise ops, and it cannot see inside the selective scan, so every scan
call is counted analytically instead (``scan_flops``). Norms, activations and the scan's layout work
are excluded. Papers usually quote fvcore's count, which is multiply-adds (about half these figures).
"""

from __future__ import annotations

import contextlib
import copy
import gc
import importlib
import importlib.util
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
from torch import Tensor, nn

from .errors import SsmzooError, UsageError
from .factory import (InductorSettings, Override, autocast, build_model, check_cuda_graphs, compile_model,
                      cpu_half_note, resolve_device, resolve_dtype)
from .inference import capture_cuda_graph
from .manifest import ModelEntry
from .text import count

WEIGHTS_NOTE = "random weights (speed does not depend on weight values); random inputs already on the device"
FLOPS_NOTE = ("GFLOPs per image/clip: matmul/conv/attention from FlopCounterMode (2 per multiply-add) plus the "
              "selective scan counted analytically (b*d*L*(9N + 2 with D + 2 with z) per scan call); element-wise "
              "ops excluded; papers' fvcore 'GFLOPs' are multiply-adds, about half")

# The models a user would pick instead (issue 8), all built with pretrained=False.
GROUPMAMBA_PEERS = ("convnext_tiny", "convnext_small", "convnext_base", "swin_tiny_patch4_window7_224",
                    "deit_small_patch16_224", "deit_base_patch16_224", "resnet50")
# Plain ViTs by width: the isotropic VideoMamba/StableMamba models are compared with the ViT of their width.
VIT_BY_WIDTH = {192: "deit_tiny_patch16_224", 384: "deit_small_patch16_224", 768: "deit_base_patch16_224",
                1024: "vit_large_patch16_224"}
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class BenchConfig:
    batch_size: Optional[int] = None      # None: 128 on CUDA, 1 on CPU
    dtype: str = "fp32"
    img_size: Optional[int] = None        # None: the manifest's input size
    frames: Optional[int] = None          # None: the manifest's num_frames (video models)
    device: str = "auto"
    compile: bool = False
    compile_mode: str = "default"
    channels_last: bool = False
    cuda_graphs: bool = False
    warmup: Optional[int] = None          # None: 10 on CUDA, 2 on CPU
    iters: Optional[int] = None           # None: 50 on CUDA, 10 on CPU
    peers: bool = False
    peer_names: Sequence[str] = ()        # replaces the default peers (implies peers)
    threads: Optional[int] = None


@dataclass
class BenchResult:
    name: str
    kind: str                             # "ssmzoo" or "peer"
    group: str                            # the ssmzoo model this row belongs to
    unit: str                             # "img" or "clip"
    input_shape: list[int]
    batch_size: int
    iters: int
    warmup: int
    samples_per_s: float
    latency_ms_median: float
    latency_ms_p90: float
    latencies_ms: list[float]
    params: int
    gflops: Optional[float]               # per sample, scan included
    gflops_scan: Optional[float]
    peak_mem_mib: Optional[float]         # CUDA only
    tokens: Optional[int] = None          # token-sequence peers of video models
    ratio: Optional[float] = None         # peers: group model's throughput / this peer's
    ratio_median: Optional[float] = None  # the same from median latencies (robust to outliers on a busy CPU)
    channels_last: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class BenchReport:
    config: dict[str, Any]
    environment: dict[str, Any]
    results: list[BenchResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        ratios = [{"model": r.group, "peer": r.name, "ratio": r.ratio, "ratio_median": r.ratio_median}
                  for r in self.results
                  if r.kind == "peer" and r.ratio is not None]
        return {"config": self.config, "environment": self.environment,
                "results": [asdict(r) for r in self.results], "ratios": ratios,
                "errors": self.errors, "notes": self.notes}


# ---------------------------------------------------------------------------------------------
# FLOPs
# ---------------------------------------------------------------------------------------------

def scan_flops(batch: int, dim: int, length: int, n_state: int, has_d: bool = False, has_z: bool = False) -> int:
    """One selective scan: per state element exp(dt*A) (2), dt*u*B (2), decay*h + input (2), C*h summed (2),
    the bias/discretisation multiply (1); then D*u + y (2) and the silu(z) gate (2) per output."""
    return batch * dim * length * (9 * n_state + 2 * has_d + 2 * has_z)


@contextlib.contextmanager
def _counting_scans(total: list[int]) -> Iterator[None]:
    """Swaps every scan backend for a stub that adds the analytic count and returns an empty output."""
    ss = importlib.import_module("ssmzoo.ops.selective_scan")

    def stub(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor] = None,
             z: Optional[Tensor] = None, delta_bias: Optional[Tensor] = None, delta_softplus: bool = False,
             **_: Any) -> Tensor:
        total[0] += scan_flops(u.shape[0], u.shape[1], u.shape[2], A.shape[-1], D is not None, z is not None)
        return torch.empty_like(u)

    saved = dict(ss._BACKENDS)
    forced = os.environ.pop("SSMZOO_SCAN", None)  # meta tensors: always the torch path (which we stub)
    try:
        for key in list(ss._BACKENDS):
            ss._BACKENDS[key] = stub
        yield
    finally:  # (a backend registered meanwhile, by a module imported during the count, stays)
        ss._BACKENDS.update(saved)
        if forced is not None:
            os.environ["SSMZOO_SCAN"] = forced


def count_flops(model: nn.Module, sample_shape: Sequence[int]) -> tuple[int, int]:
    """(total FLOPs, of which selective scan) for one forward of a (1, *sample_shape) input.

    Runs on a ``meta`` copy, so it costs no compute and leaves ``model`` untouched."""
    from torch.utils.flop_counter import FlopCounterMode

    meta = copy.deepcopy(model).to("meta").eval()
    scans = [0]
    counter = FlopCounterMode(display=False)
    with _counting_scans(scans), counter, torch.no_grad():
        meta(torch.empty(1, *sample_shape, device="meta"))
    return counter.get_total_flops() + scans[0], scans[0]


# ---------------------------------------------------------------------------------------------
# Peers
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PeerSpec:
    name: str                 # timm model name
    tokens: bool = False      # run its blocks on a video model's token sequence


def _vit_peers_for_width(width: int) -> list[str]:
    if width in VIT_BY_WIDTH:
        return [VIT_BY_WIDTH[width]]
    widths = sorted(VIT_BY_WIDTH)
    below = [w for w in widths if w < width]
    above = [w for w in widths if w > width]
    # No ViT of this width (VideoMamba-M's 576): the ones either side of it.
    return [VIT_BY_WIDTH[w] for w in (below[-1:] + above[:1])]


def default_peers(entry: ModelEntry, model: nn.Module) -> tuple[list[PeerSpec], Optional[str]]:
    """The peers issue 8 names for a model, and a note when they are not an exact match."""
    if entry.family == "groupmamba":
        return [PeerSpec(n) for n in GROUPMAMBA_PEERS], None
    width = getattr(model, "embed_dim", None)
    if not isinstance(width, int):
        return [], f"{entry.name}: no default peers for family '{entry.family}' (pass --peer NAME)"
    names = _vit_peers_for_width(width)
    note = None if width in VIT_BY_WIDTH else f"{entry.name}: no ViT of width {width}; peers {', '.join(names)}"
    return [PeerSpec(n, tokens=entry.is_video) for n in names], note


class TokenViT(nn.Module):
    """A timm ViT run on a whole clip: its patch embedding on every frame, one joint space-time sequence
    of 1 + T * patches tokens, its blocks, norm and head. So a video model's ratio to it compares the
    linear scan with attention on identical token counts."""

    def __init__(self, vit: nn.Module, frames: int, name: str = "", crop: Optional[int] = None) -> None:
        super().__init__()
        if not _is_vit_with_class_token(vit):
            raise SsmzooError(_not_a_token_vit(name or type(vit).__name__))
        self.vit = vit
        self.frames = frames
        self.crop = crop  # built for a smaller side than the input's (see _Cropped)
        self.num_tokens = 1 + frames * vit.patch_embed.num_patches
        dim = vit.cls_token.shape[-1]
        self.pos_embed = nn.Parameter(torch.randn(1, self.num_tokens, dim) * 0.02)
        vit.pos_embed = None  # replaced by the clip-length embedding above

    def forward(self, x: Tensor) -> Tensor:
        if self.crop is not None:
            x = x[..., :self.crop, :self.crop]
        batch, chans, frames, height, width = x.shape
        tokens = self.vit.patch_embed(x.transpose(1, 2).reshape(batch * frames, chans, height, width))
        tokens = tokens.reshape(batch, -1, tokens.shape[-1])
        x = torch.cat([self.vit.cls_token.expand(batch, -1, -1), tokens], dim=1) + self.pos_embed
        x = self.vit.norm_pre(x) if hasattr(self.vit, "norm_pre") else x
        x = self.vit.norm(self.vit.blocks(x))
        return self.vit.forward_head(x)


class _Cropped(nn.Module):
    """A peer that timm builds only for a smaller side than the input's: it reads the top-left ``crop`` x ``crop``
    pixels, the ones a patch embedding of its patch size reads of the larger input (it drops the rest)."""

    def __init__(self, model: nn.Module, crop: int) -> None:
        super().__init__()
        self.model = model
        self.crop = crop

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x[..., :self.crop, :self.crop])


def _stem_conv(model: nn.Module) -> Optional[nn.Module]:
    """The convolution that first sees the input: the patch embedding's projection, else the first
    convolution the model registers (a CNN's stem, e.g. ConvNeXt's 4x4 patchify conv)."""
    proj = getattr(getattr(model, "patch_embed", None), "proj", None)
    if isinstance(proj, (nn.Conv2d, nn.Conv3d)):
        return proj
    return next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))), None)


def _covered(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """How many of ``size`` input pixels (from the start) a convolution's windows reach: 0 when no window
    fits. A stride-s conv whose last window ends short of the edge never reads the pixels past it."""
    out = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    if out < 1:
        return 0
    return min(size, (out - 1) * stride + dilation * (kernel - 1) + 1 - padding)


def _check_input_size(name: str, model: nn.Module, height: int, width: int,
                      frames: Optional[int] = None) -> Optional[str]:
    """A patch-embedding model needs at least one patch: below that its convolution fails deep in the
    forward pass. A size that is not a multiple of the patch runs, but the patch embedding (a convolution
    whose stride is its kernel, or the GEMM over the same patches) drops the pixels past the last whole
    patch: the note that says so, so that a timing is not read as one of the size asked for. Any stem
    conv is checked by its own arithmetic (ConvNeXt's 4x4 patchify conv drops pixels too; GroupMamba's
    and ResNet's padded strided convs reach every pixel and get no note)."""
    conv = _stem_conv(model)
    if conv is None or conv.in_channels != 3 or isinstance(conv.padding, str):
        return None
    kernel, stride, padding, dilation = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    patches = all(k == s for k, s in zip(kernel, stride)) and not any(padding) and set(dilation) == {1}
    size = height if height == width else f"{height}x{width}"
    ph, pw = kernel[-2], kernel[-1]
    what = f"{ph}x{pw} patches" if patches else f"first conv's {ph}x{pw} kernel at stride {stride[-2]}x{stride[-1]}"
    seen = [_covered(side, *args) for side, args in
            zip((height, width), zip(kernel[-2:], stride[-2:], padding[-2:], dilation[-2:]))]
    if 0 in seen:
        raise SsmzooError(f"{name}: --img-size {size} is smaller than its {what}")
    notes = []
    if seen != [height, width]:
        notes.append(f"--img-size {size} is not a multiple of its {what}: it sees {seen[0]}x{seen[1]} of each "
                     "input (the pixels past the last whole patch are dropped)" if patches else
                     f"--img-size {size} does not fit its {what}: it sees {seen[0]}x{seen[1]} of each input "
                     "(the pixels past its last window are dropped)")
    if frames is not None and conv.weight.dim() == 5:
        kept = _covered(frames, kernel[0], stride[0], padding[0], dilation[0])
        if 0 < kept < frames:
            notes.append(f"{frames} frames are not a multiple of its tubelet of {kernel[0]}: it sees {kept} of each "
                         "clip's frames")
    return f"{name}: " + "; ".join(notes) if notes else None


def _params_note(entry: ModelEntry, model: nn.Module, overrides: dict[str, Override]) -> Optional[str]:
    """Where --img-size/--frames rebuilt the model and that changed its parameter count (VideoMamba's
    position embeddings are sized to the input): a note naming both counts and the tensors that differ,
    so that the params column is not read as the published model's. The manifest-size model is built on
    the meta device (no memory, no init); a model that cannot be built there gets no note."""
    if not overrides:
        return None
    try:
        with torch.device("meta"):
            base = build_model(entry)
    except Exception:  # noqa: BLE001 - informational only
        return None
    here = dict(model.named_parameters())
    there = dict(base.named_parameters())
    n_here, n_there = sum(p.numel() for p in here.values()), sum(p.numel() for p in there.values())
    if n_here == n_there:
        return None
    changed = [k for k in here if k not in there or here[k].shape != there[k].shape]
    changed += [k for k in there if k not in here]
    options = " ".join(str(o) for o in overrides.values())
    return (f"{entry.name}: {n_here:,} parameters as built for {options}, {n_there:,} at its manifest size "
            f"(sized to the input: {', '.join(changed[:3])}{', ...' if len(changed) > 3 else ''})")


def usable_cpus() -> tuple[Optional[int], str]:
    """The CPUs this process may run on (its affinity mask, where the platform has one), else the machine's,
    and how to say which: a container or ``taskset`` may allow fewer than ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0)), "this process may use"
    except (AttributeError, OSError):  # not on every platform
        return os.cpu_count(), "this machine has"


def threads_note(threads: Optional[int]) -> Optional[str]:
    """--threads above the CPUs this process may run on: taken as asked (the user may mean it), but the
    threads take turns on the CPUs, so every figure is likely slower than with one thread per CPU."""
    if threads is None:
        return None
    cpus, where = usable_cpus()
    if cpus and threads > cpus:
        return (f"--threads {threads} is more than the {count(cpus, 'CPU')} {where}: oversubscribed (the threads "
                f"take turns), so the figures are likely slower than with --threads {cpus}")
    return None


def _is_vit_with_class_token(model: nn.Module) -> bool:
    """TokenViT runs ``blocks`` as one module on the token sequence: a ModuleList of blocks that take extra
    arguments (EVA's rotary embedding, XCiT's grid size) is not such a ViT."""
    return all(hasattr(model, a) for a in ("patch_embed", "blocks", "cls_token", "norm", "forward_head")) \
        and getattr(model, "cls_token", None) is not None and isinstance(model.blocks, nn.Sequential)


def _not_a_token_vit(name: str) -> str:
    return (f"--peer {name}: video models are compared with a ViT (with a class token) on the same tokens; "
            "this model is not one")


def _timm():
    """timm, with ssmzoo's architectures registered: the ``ssmzoo`` command imports the package without
    them (``ssmzoo/__init__.py``), and a ``--peer`` may name one of ours (``videomamba_small``)."""
    import timm

    importlib.import_module(f"{__package__}.models")  # registers our architectures with timm
    return timm


def _timm_is_token_vit(name: str) -> bool:
    """Can ``TokenViT`` run the timm model ``name``? Built on the meta device: no memory, no init cost."""
    timm = _timm()

    try:
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False)
    except Exception:  # noqa: BLE001 - a model that cannot be built on meta: its real build will tell
        return True
    return _is_vit_with_class_token(model)


def _create_timm(name: str, img_size: int, num_classes: int) -> nn.Module:
    timm = _timm()

    try:
        try:
            return timm.create_model(name, pretrained=False, num_classes=num_classes, img_size=img_size)
        except TypeError:  # CNNs take any size and no img_size argument
            return timm.create_model(name, pretrained=False, num_classes=num_classes)
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise _not_a_timm_model(name) from None
        raise


def _patch_side(name: str) -> Optional[int]:
    """The patch side of timm model ``name`` (built at its own size on the meta device), if it has one."""
    timm = _timm()
    try:
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False)
    except Exception:  # noqa: BLE001 - no patch size to go by
        return None
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None) or getattr(model, "patch_size", None)
    if isinstance(patch, (tuple, list)):
        patch = patch[0] if len(set(patch)) == 1 else None
    return patch if isinstance(patch, int) and patch > 1 else None


def _dynamic_patch(model: nn.Module) -> Optional[int]:
    """The patch side of a timm ViT built with ``dynamic_img_size`` and no ``dynamic_img_pad``: its patch embedding
    takes any input size but asserts that the patch divides it (``test_vit`` is one)."""
    embed = getattr(model, "patch_embed", None)
    patch = getattr(embed, "patch_size", None)
    if getattr(embed, "strict_img_size", True) or getattr(embed, "dynamic_img_pad", True) or not patch:
        return None
    patch = tuple(patch) if isinstance(patch, (tuple, list)) else (patch, patch)
    return patch[0] if len(set(patch)) == 1 else None


def _build_peer(name: str, size: int, num_classes: int) -> tuple[nn.Module, Optional[int], Optional[str]]:
    """(peer, the side it reads where smaller than ``size``, a note saying so), built for a ``size`` input.

    Where the patch does not divide ``size``, a patch embedding drops the pixels past the last whole patch (the
    ssmzoo model's does too). Some timm models refuse such a size instead: a ViT built with ``dynamic_img_size``
    asserts it in its forward, and some constructors (XCiT, NesT, hybrid ViTs) assert it. Those are given the
    top-left part of each input they can take, the largest multiple of their patch below ``size``. One that
    still cannot be built is an SsmzooError naming the size and timm's reason."""
    try:
        model = _create_timm(name, size, num_classes)
    except SsmzooError:
        raise
    except Exception as exc:  # noqa: BLE001 - timm's constructors assert what they cannot take
        cause = _first_line(exc)
    else:
        patch = _dynamic_patch(model)
        if not patch or size % patch == 0 or size < patch:  # below a patch: _check_input_size says so
            return model, None, None
        side = size // patch * patch
        return model, side, (f"{name}: its patch embedding (timm's dynamic_img_size) refuses --img-size {size}, "
                             f"not a multiple of its {patch}x{patch} patches: it reads the top-left {side}x{side} "
                             "pixels of each input (the pixels past the last whole patch are dropped)")
    patch = _patch_side(name)
    timm = _timm()
    for side in range(size // patch * patch if patch else 0, 0, -(patch or 1))[:16]:
        if side == size:
            continue
        try:
            with torch.device("meta"):  # a cheap trial: no memory, no init
                timm.create_model(name, pretrained=False, num_classes=num_classes, img_size=side)
            model = _create_timm(name, side, num_classes)
        except Exception:  # noqa: BLE001 - the first refusal is the one to report
            continue
        return model, side, (f"{name}: timm cannot build it for --img-size {size} ({cause}); built for {side} "
                             f"instead, the largest size below that it takes (a multiple of its patch size {patch}): "
                             f"it reads the top-left {side}x{side} pixels of each input")
    raise SsmzooError(f"timm cannot build it for --img-size {size} ({cause})")


def _timm_has(name: str) -> bool:
    timm = _timm()

    return timm.is_model(name)


def _not_a_timm_model(name: str) -> UsageError:
    return UsageError(f"--peer {name}: not a timm model (`python -c \"import timm; "
                      f"print(timm.list_models('*{name.split('_')[0]}*'))\"` lists similar ones)")


def _is_cnn(model: nn.Module) -> bool:
    return not any("attention" in type(m).__name__.lower() for m in model.modules())


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------

def _channels_last(module: nn.Module) -> None:
    """channels_last for 4-D and channels_last_3d for 5-D weights (Module.to would fail on a mix)."""
    for tensor in list(module.parameters()) + list(module.buffers()):
        if tensor.dim() == 4:
            tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
        elif tensor.dim() == 5:
            tensor.data = tensor.data.contiguous(memory_format=torch.channels_last_3d)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


class _Timer:
    """Per-iteration times: CUDA events recorded on the current stream, or perf_counter on CPU."""

    def __init__(self, device: torch.device, iters: int) -> None:
        self.cuda = device.type == "cuda"
        self.device = device
        if self.cuda:
            self.events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                           for _ in range(iters)]
        else:
            self.times = [0.0] * iters
            self._t0 = 0.0

    def start(self, i: int) -> None:
        if self.cuda:
            self.events[i][0].record()
        else:
            self._t0 = time.perf_counter()

    def stop(self, i: int) -> None:
        if self.cuda:
            self.events[i][1].record()
        else:
            self.times[i] = (time.perf_counter() - self._t0) * 1e3

    def times_ms(self) -> list[float]:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            return [a.elapsed_time(b) for a, b in self.events]
        return list(self.times)


@dataclass
class _Member:
    name: str
    kind: str
    model: nn.Module
    sample_shape: tuple[int, ...]
    unit: str
    params: int
    gflops: Optional[float] = None
    gflops_scan: Optional[float] = None
    tokens: Optional[int] = None
    channels_last: bool = False
    step: Optional[Callable[[], Any]] = None
    peak_mem_mib: Optional[float] = None
    timer: Optional[_Timer] = None
    notes: list[str] = field(default_factory=list)
    compile_note: Optional[str] = None  # what its torch.compile did beyond Inductor's defaults


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


class _Bench:
    def __init__(self, cfg: BenchConfig, device: torch.device, dtype: torch.dtype, warmup: int, iters: int):
        self.cfg, self.device, self.dtype, self.warmup, self.iters = cfg, device, dtype, warmup, iters

    # -- one member ------------------------------------------------------------------------------
    def _member(self, name: str, kind: str, model: nn.Module, sample_shape: tuple[int, ...], unit: str,
                channels_last: bool, tokens: Optional[int] = None) -> _Member:
        model.eval().requires_grad_(False)  # no autocast weight cache (CUDA-graph safe), no autograd
        member = _Member(name, kind, model, sample_shape, unit, params=sum(p.numel() for p in model.parameters()),
                         tokens=tokens, channels_last=channels_last)
        try:
            total, scan = count_flops(model, sample_shape)
            member.gflops, member.gflops_scan = total / 1e9, scan / 1e9
        except Exception as exc:  # informational only: never fail a speed run over it
            member.notes.append(f"FLOPs not counted ({_first_line(exc)})")
        return member

    def _prepare(self, m: _Member) -> None:
        """Moves to the device, warms up (compiles), captures a CUDA graph; records peak memory."""
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(self.device)
            base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        model = m.model.to(self.device)
        x = torch.randn(self.cfg.batch_size, *m.sample_shape, device=self.device)
        if m.channels_last:
            _channels_last(model)
            x = x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
        fn: Callable[[Tensor], Any] = model
        if self.cfg.compile:
            fn = compile_model(model, mode=None if self.cfg.compile_mode == "default" else self.cfg.compile_mode)
            if isinstance(fn, InductorSettings):  # say what differs from a plain torch.compile
                m.compile_note = (f"{m.name} compiled with its own Inductor settings ("
                                  + ", ".join(f"{k}={v}" for k, v in sorted(fn.settings.items())) + ")")
                m.notes.append(m.compile_note)

        def forward() -> Any:
            with autocast(self.device, self.dtype):
                return fn(x)

        try:
            with torch.inference_mode():
                if self.cfg.cuda_graphs:
                    try:
                        graph, _ = capture_cuda_graph(forward, self.device, warmup=max(self.warmup, 3))
                    except Exception as exc:
                        raise SsmzooError(f"{m.name}: --cuda-graphs: capture failed ({_first_line(exc)})") from None
                    graph.replay()
                    m.step = graph.replay
                else:
                    for _ in range(self.warmup):
                        forward()
                    m.step = forward
                if cuda:
                    torch.cuda.synchronize(self.device)
        except Exception as exc:
            raise self._failure(m, exc) from None
        if cuda:
            m.peak_mem_mib = (torch.cuda.max_memory_allocated(self.device) - base) / 2**20
        m.timer = _Timer(self.device, self.iters)

    def _failure(self, m: _Member, exc: Exception) -> SsmzooError:
        """A forward that raised, as one line naming the member, the input and the cause."""
        if isinstance(exc, SsmzooError):
            return exc
        if isinstance(exc, torch.OutOfMemoryError):
            return SsmzooError(f"{m.name}: out of memory at batch {self.cfg.batch_size} (use a smaller --batch-size)")
        what = "--compile failed" if self.cfg.compile else "forward failed"
        shape = (self.cfg.batch_size, *m.sample_shape)
        hint = ""
        if "can't be greater than actual input size" in str(exc):  # a later layer's kernel on a shrunk feature map
            hint = f" (input {shape[-2]}x{shape[-1]} is too small for it: its feature maps shrink below a kernel)"
        return SsmzooError(f"{m.name}: {what} on input {shape}{hint}: {_first_line(exc)}")

    def _time(self, members: list[_Member], failed: Optional[dict[str, str]] = None) -> list[_Member]:
        """Interleaved: iteration i of every member before iteration i + 1 of any. With --warmup 0 the first
        forward of each runs here: a member that fails is dropped (its reason in ``failed``, by name) and the
        others go on; the first member's failure (the ssmzoo model's) fails the group. Returns those timed."""
        live = list(members)
        try:
            with torch.inference_mode():
                for i in range(self.iters):
                    for m in list(live):
                        m.timer.start(i)
                        try:
                            m.step()
                        except Exception as exc:  # noqa: BLE001 - reported as one line
                            if m is members[0] or failed is None:
                                raise self._failure(m, exc) from None
                            failed[m.name] = str(self._failure(m, exc))
                            live.remove(m)
                            continue
                        m.timer.stop(i)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
        except torch.OutOfMemoryError:
            raise SsmzooError(f"out of memory at batch {self.cfg.batch_size} (use a smaller --batch-size)") from None
        return live

    def _result(self, m: _Member, group: str) -> BenchResult:
        times = m.timer.times_ms()
        total_s = sum(times) / 1e3
        return BenchResult(
            name=m.name, kind=m.kind, group=group, unit=m.unit,
            input_shape=[self.cfg.batch_size, *m.sample_shape], batch_size=self.cfg.batch_size,
            iters=len(times), warmup=self.warmup,
            samples_per_s=self.cfg.batch_size * len(times) / total_s if total_s > 0 else float("inf"),
            latency_ms_median=_percentile(times, 50), latency_ms_p90=_percentile(times, 90),
            latencies_ms=[round(t, 4) for t in times], params=m.params,
            gflops=m.gflops, gflops_scan=m.gflops_scan, peak_mem_mib=m.peak_mem_mib,
            tokens=m.tokens, channels_last=m.channels_last, notes=m.notes)

    # -- one group: an ssmzoo model and its peers --------------------------------------------------
    def _peer(self, spec: PeerSpec, height: int, width: int, frames: Optional[int], classes: int,
              sample: tuple[int, ...], unit: str, notes: list[str]) -> _Member:
        """One peer, built for the group's input (or the most of it timm can take), or an SsmzooError."""
        if width != height:
            raise SsmzooError(f"its input must be square, not {height}x{width}")
        peer, crop, note = _build_peer(spec.name, height, classes)
        seen = crop or height
        size_note = _check_input_size(spec.name, peer, seen, seen)
        notes.extend(n for n in (note, size_note) if n)
        if spec.tokens:
            peer = TokenViT(peer, frames, spec.name, crop=crop)
            return self._member(f"{spec.name} [{peer.num_tokens} tokens]", "peer", peer, sample, unit, False,
                                tokens=peer.num_tokens)
        if crop is not None:
            peer = _Cropped(peer, crop)
        return self._member(spec.name, "peer", peer, sample, unit, self.cfg.channels_last and _is_cnn(peer))

    def group(self, entry: ModelEntry, notes: list[str], errors: Optional[list[str]] = None) -> list[BenchResult]:
        """The ssmzoo model and its peers. A peer that cannot be built or run is skipped: one line in ``errors``
        (``MODEL: peer NAME skipped: cause``), and the rest of the group is still timed; where ``errors`` is
        None that line fails the group instead."""
        cfg = self.cfg
        skipped: dict[str, str] = {}  # peer name: why
        overrides: dict[str, Override] = {}  # a constructor refusing one of them names the option
        height, width = entry.data.input_size[1:]
        if cfg.img_size is not None:
            height = width = cfg.img_size
            if "img_size" in entry.arch_args:
                overrides["img_size"] = Override("--img-size", cfg.img_size)
        frames = None
        if entry.is_video:
            frames = cfg.frames or entry.video.num_frames
            if cfg.frames is not None:
                overrides["num_frames"] = Override("--frames", cfg.frames)
            elif entry.arch_args.get("num_frames") != frames:  # clips of the protocol's length, as eval reads
                entry = replace(entry, arch_args={**entry.arch_args, "num_frames": frames})
        model = build_model(entry, overrides)
        for note in (_check_input_size(entry.name, model, height, width, frames),
                     _params_note(entry, model, overrides)):
            if note:
                notes.append(note)
        sample = (3, frames, height, width) if frames else (3, height, width)
        unit = "clip" if frames else "img"
        members = [self._member(entry.name, "ssmzoo", model, sample, unit, cfg.channels_last)]

        if cfg.peers:
            if cfg.peer_names:
                specs = [PeerSpec(n, tokens=entry.is_video) for n in cfg.peer_names]
            else:
                specs, note = default_peers(entry, model)
                if note:
                    notes.append(note)
            classes = getattr(model, "num_classes", 1000) or 1000
            for spec in specs:
                peer_notes: list[str] = []
                try:
                    members.append(self._peer(spec, height, width, frames, classes, sample, unit, peer_notes))
                except SsmzooError as exc:
                    if errors is None:
                        raise
                    skipped[spec.name] = str(exc)
                notes.extend(peer_notes)  # a peer built for less of the input says so even where it then fails
        if cfg.compile:
            torch._dynamo.reset()  # each group compiles afresh: no recompile limit carried over from the last
        self._prepare(members[0])  # the ssmzoo model's failure is the group's
        for m in list(members[1:]):
            try:
                self._prepare(m)
            except SsmzooError as exc:
                if errors is None:
                    raise
                skipped[m.name] = str(exc)
                members.remove(m)
        notes.extend(m.compile_note for m in members if m.compile_note)
        timed = self._time(members, None if errors is None else skipped)
        for name, why in skipped.items():
            for prefix in (f"{name}: ", f"--peer {name}: "):  # the line names the peer once
                why = why[len(prefix):] if why.startswith(prefix) else why
            errors.append(f"{entry.name}: peer {name} skipped: {why}")
        results = [self._result(m, entry.name) for m in timed]
        for r in results[1:]:
            r.ratio = results[0].samples_per_s / r.samples_per_s
            r.ratio_median = r.latency_ms_median / results[0].latency_ms_median
        return results


@contextlib.contextmanager
def _settings(cfg: BenchConfig, device: torch.device) -> Iterator[None]:
    threads = torch.get_num_threads()
    cudnn = torch.backends.cudnn.benchmark
    try:
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        if device.type == "cuda":
            torch.cuda.set_device(device)
            torch.backends.cudnn.benchmark = True
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = cudnn


def _environment(device: torch.device) -> dict[str, Any]:
    import timm

    from . import __version__
    from .ops import scan_backend

    env: dict[str, Any] = {
        "device": str(device), "torch": torch.__version__, "timm": timm.__version__, "ssmzoo": __version__,
        "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        env["scan_backend"] = scan_backend(device)
    except Exception as exc:  # pragma: no cover - informational only
        env["scan_backend"] = f"unavailable ({_first_line(exc)})"
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
        env["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
        env["cudnn_benchmark"] = True
    else:
        env["device_name"] = f"CPU ({env['cpu']}, {env['threads']} threads)"
    try:
        env["load_average"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        pass
    return env


def load_note(env: dict[str, Any]) -> Optional[str]:
    """A note where the machine was already busy before the run: a 1-minute load average above its CPU count
    means other work competes for the CPUs, and every figure may be slower than this machine can do."""
    load, cpus = env.get("load_average"), env.get("cpu_count")
    if not load or not cpus or load[0] <= cpus:
        return None
    return (f"the 1-minute load average was {load[0]:.2f} on {count(cpus, 'CPU')} before the run: other work "
            "may have slowed these figures; rerun on an idle machine to compare")


def check_config(cfg: BenchConfig, entries: Sequence[ModelEntry]) -> tuple[torch.device, torch.dtype]:
    """Every option problem as one UsageError, before anything is built."""
    device = resolve_device(cfg.device)
    if device.type == "cuda" and device.index is None:  # events and set_device need an index
        device = torch.device("cuda", torch.cuda.current_device())
    dtype = resolve_dtype(cfg.dtype)
    if cfg.batch_size is not None and cfg.batch_size < 1:
        raise UsageError("--batch-size must be >= 1")
    blank = [name for name in cfg.peer_names if not name.strip()]
    if blank:  # timm's "not a model" for '' would point at a list of every model
        raise UsageError(f"--peer {blank[0]!r}: the name is empty (pass a timm model name, e.g. resnet50)")
    unknown = [name for name in cfg.peer_names if not _timm_has(name)]
    if unknown:
        raise _not_a_timm_model(unknown[0])
    if entries and all(e.is_video for e in entries):  # in a mixed list only the video models would fail
        for name in cfg.peer_names:
            if not _timm_is_token_vit(name):
                raise UsageError(_not_a_token_vit(name))
    check_cuda_graphs(cfg.cuda_graphs, device)
    if cfg.compile_mode not in COMPILE_MODES:
        raise UsageError(f"--compile-mode {cfg.compile_mode!r}: expected one of {', '.join(COMPILE_MODES)}")
    if cfg.cuda_graphs and cfg.compile and cfg.compile_mode in ("reduce-overhead", "max-autotune"):
        raise UsageError(f"--cuda-graphs with --compile-mode {cfg.compile_mode}: that mode already uses CUDA "
                         "graphs; use max-autotune-no-cudagraphs or default")
    if cfg.threads is not None and cfg.threads < 1:
        raise UsageError("--threads must be >= 1")
    if cfg.frames is not None:
        if cfg.frames < 1:
            raise UsageError("--frames must be >= 1")
        if not any(e.is_video for e in entries):
            raise UsageError("--frames: none of the selected models takes video")
    if cfg.img_size is not None and cfg.img_size < 1:
        raise UsageError("--img-size must be >= 1")
    for option, value in (("--warmup", cfg.warmup), ("--iters", cfg.iters)):
        if value is not None and value < (0 if option == "--warmup" else 1):
            raise UsageError(f"{option} must be >= {0 if option == '--warmup' else 1}")
    return device, dtype


def run_benchmark(entries: Sequence[ModelEntry], cfg: BenchConfig,
                  on_group: Optional[Callable[[str, Optional[list[BenchResult]], Optional[str]], None]] = None
                  ) -> BenchReport:
    """Benchmarks each entry (with its peers when asked); a failing model is reported, the others still run."""
    device, dtype = check_config(cfg, entries)
    if cfg.peer_names:  # each peer once, in the order first given
        cfg = replace(cfg, peers=True, peer_names=tuple(dict.fromkeys(cfg.peer_names)))
    cuda = device.type == "cuda"
    if cfg.batch_size is None:
        cfg = replace(cfg, batch_size=128 if cuda else 1)
    warmup = cfg.warmup if cfg.warmup is not None else (10 if cuda else 2)
    iters = cfg.iters if cfg.iters is not None else (50 if cuda else 10)
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}
    config.update(warmup=warmup, iters=iters, peer_names=list(cfg.peer_names))
    with _settings(cfg, device):
        report = BenchReport(config=config, environment=_environment(device), notes=[WEIGHTS_NOTE, FLOPS_NOTE])
        for note in (load_note(report.environment), threads_note(cfg.threads)):
            if note:
                report.notes.append(note)
        half_note = cpu_half_note(device, dtype)
        if half_note:
            report.notes.append(half_note)
        if warmup == 0 and iters >= 3:  # the cold iteration is outvoted in the median
            report.notes.append("--warmup 0: the first timed iteration carries one-time costs (allocation, "
                                "kernel selection), so the median is the figure to read")
        elif warmup == 0:  # one or two timed iterations: the median holds the cold one too
            report.notes.append(f"--warmup 0 with --iters {iters}: every figure, the median too, includes the first "
                                "iteration's one-time costs (allocation, kernel selection); raise --warmup, or "
                                "--iters to 3 or more")
        bench = _Bench(cfg, device, dtype, warmup, iters)
        for entry in entries:
            try:
                peer_errors: list[str] = []  # a group that fails reports its own error, not its peers'
                results = bench.group(entry, report.notes, peer_errors)
                report.results.extend(results)
                report.errors.extend(peer_errors)
                if on_group:
                    on_group(entry.name, results, None)
            except SsmzooError as exc:
                message = str(exc) if str(exc).startswith(entry.name) else f"{entry.name}: {exc}"
                report.errors.append(message)
                if on_group:
                    on_group(entry.name, None, message)
            finally:
                gc.collect()
                if cuda:
                    torch.cuda.empty_cache()
    return report


# ---------------------------------------------------------------------------------------------
# --op scan
# ---------------------------------------------------------------------------------------------

def find_scan_script() -> Optional[Path]:
    """benchmarks/scan.py of a source checkout (beside the package) or of the current directory."""
    for root in (Path(__file__).resolve().parents[1], Path.cwd()):
        path = root / "benchmarks" / "scan.py"
        if path.is_file():
            return path
    return None


def run_scan_op(args: Sequence[str] = ()) -> None:
    """Hands over to benchmarks/scan.py's ``main`` (the Triton scan kernels on the models' shapes)."""
    path = find_scan_script()
    if path is None:
        raise SsmzooError("--op scan: benchmarks/scan.py was not found (it ships with the source checkout, "
                          "not the installed package; run from the repository root)")
    if not torch.cuda.is_available():
        raise UsageError("--op scan times the Triton scan kernels and needs a CUDA device")
    spec = importlib.util.spec_from_file_location("ssmzoo_benchmarks_scan", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        raise SsmzooError(f"--op scan: {path} cannot be imported ({_first_line(exc)})") from None
    if not hasattr(module, "main"):
        raise SsmzooError(f"--op scan: {path} has no main() function")
    argv = sys.argv
    sys.argv = [str(path), *args]
    try:
        module.main()
    finally:
        sys.argv = argv


# ---------------------------------------------------------------------------------------------
# Table
# ---------------------------------------------------------------------------------------------

def figure(value: float, places: int) -> str:
    """``places`` decimals, or three significant figures where those decimals would show a small value as 0.
    The table and the command's progress lines both use it, so the same figure reads the same in both."""
    if value != 0 and abs(value) < 10 ** (1 - places):
        return f"{value:.3g}"
    return f"{value:,.{places}f}"


def results_table(report: BenchReport):
    from rich.table import Table

    cfg, env = report.config, report.environment
    extras = [name for name, on in (("compile", cfg["compile"]), ("channels_last", cfg["channels_last"]),
                                    ("cuda graphs", cfg["cuda_graphs"])) if on]
    title = (f"ssmzoo benchmark: {env.get('device_name', env['device'])}, {cfg['dtype']}, batch {cfg['batch_size']}"
             f"{', ' + ', '.join(extras) if extras else ''}; {cfg['warmup']} warm-up + {count(cfg['iters'], 'timed iteration')}")
    table = Table(title=title, title_justify="left")
    rows = report.results
    # Columns no row fills are left out: ratios without peers, peak memory off CUDA (measured there only).
    columns: list[tuple[str, Callable[[BenchResult], str]]] = [
        ("model", lambda r: r.name if r.kind == "ssmzoo" else f"  vs {r.name}"),
        ("input", lambda r: "x".join(str(v) for v in r.input_shape)),
        ("throughput", lambda r: f"{figure(r.samples_per_s, 1)} {r.unit}/s"),
    ]
    if any(r.ratio is not None for r in rows):
        columns += [("ssmzoo/peer", lambda r: "" if r.ratio is None else f"{figure(r.ratio, 2)}x"),
                    ("(by median)", lambda r: "" if r.ratio_median is None else f"{figure(r.ratio_median, 2)}x")]
    columns += [("ms/batch (median)", lambda r: figure(r.latency_ms_median, 2)),
                ("ms/batch (p90)", lambda r: figure(r.latency_ms_p90, 2))]
    if any(r.peak_mem_mib is not None for r in rows):
        columns.append(("peak mem (MiB)", lambda r: "" if r.peak_mem_mib is None else f"{r.peak_mem_mib:,.0f}"))
    columns += [("params (M)", lambda r: f"{r.params / 1e6:.1f}"),
                ("GFLOPs", lambda r: "" if r.gflops is None else figure(r.gflops, 2))]
    for name, _ in columns:
        table.add_column(name, justify="left" if name in ("model", "input") else "right", overflow="fold")
    for r in rows:
        table.add_row(*(cell(r) for _, cell in columns), style="bold" if r.kind == "ssmzoo" else None)
    return table
