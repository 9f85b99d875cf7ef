"""Turning a manifest entry into a ready model: build the architecture, fetch and load weights."""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, NamedTuple, Optional, Sequence

import torch
from torch import nn

from .checkpoint import state_dict_key_text
from .errors import ManifestError, SsmzooError, UsageError, WeightsError
from .labels import is_builtin
from .manifest import ModelEntry, architecture_unregistered, task_contradiction

if TYPE_CHECKING:
    from .checkpoint import LoadedCheckpoint
    from .hub import ResolvedWeights

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# Autocast in fp16/bf16 on a CPU runs slowly wherever the CPU lacks native half-precision matmuls (most do).
CPU_HALF_NOTE = ("--dtype {dtype} on the CPU: half precision is emulated on most CPUs and runs slower than fp32; "
                 "it is for checking numerics, not for speed")


def cpu_half_note(device: torch.device, dtype: torch.dtype) -> Optional[str]:
    """The note for a half-precision run on the CPU, else None."""
    if device.type != "cpu" or dtype == torch.float32:
        return None
    return CPU_HALF_NOTE.format(dtype=next(k for k, v in DTYPES.items() if v == dtype))


def compile_model(model: nn.Module, mode: Optional[str] = None, **kwargs):
    """``torch.compile(model, mode=mode, **kwargs)`` with the model's own Inductor settings, working
    around an Inductor crash where this torch has it.

    A model may carry ``inductor_options``: per device type ("cuda", "cpu"), a dict of
    ``torch._inductor.config`` values. Those for the device of the model's parameters are in force
    whenever the compiled model is called (``InductorSettings``), so they reach that model's graphs
    only, not a timm peer compiled in the same process. They are not passed as
    ``torch.compile(options=...)``: those reach Inductor's compile step but not Dynamo's tracing,
    which reads ``freezing`` itself (to turn parameters into constants of the graph); passed there,
    freezing silently did nothing (H100, session 16: 6,372 img/s and the unfrozen peak memory).

    Inductor's coalescing-tiling analysis raises ``AssertionError`` on some modular index
    expressions (pytorch/pytorch#191603, fixed in later releases); VideoMamba's causal conv and
    flips produce one (seen with torch 2.11 on an H100). Where the analysis fails on such an
    expression, it is switched off for this process: a tiling heuristic, not a change of results.
    """
    if not _tiling_analysis_handles_modular_indexing():
        import torch._inductor.config as inductor_config

        inductor_config.triton.coalesce_tiling_analysis = False
    if not torch.cuda.is_available():
        # Inductor's C++ backend imports torch.utils.cpp_extension, which warns (with a log prefix)
        # that no CUDA runtime exists and which CUDA_HOME it assumes: noise where no CUDA is expected
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    compiled = torch.compile(model, mode=mode, **kwargs)
    own = dict((getattr(model, "inductor_options", None) or {}).get(_device_type(model), {}))
    if own and kwargs.get("backend", "inductor") == "inductor":
        return InductorSettings(compiled, own)
    return compiled


class InductorSettings:
    """A compiled model called with some ``torch._inductor.config`` values in force (then restored):
    tracing, compiling and guard checks all happen inside the call, so they all see them."""

    def __init__(self, compiled: Callable, settings: dict) -> None:
        import torch._inductor.config as inductor_config  # (once here, not on every forward)

        self.compiled, self.settings, self._config = compiled, dict(settings), inductor_config

    def __call__(self, *args, **kwargs):
        with self._config.patch(self.settings):
            return self.compiled(*args, **kwargs)

    def __getattr__(self, name: str):  # the compiled module's own attributes (_orig_mod, ...)
        return getattr(self.compiled, name)


def _device_type(model: nn.Module) -> str:
    param = next(model.parameters(), None)
    return param.device.type if param is not None else "cpu"


def _tiling_analysis_handles_modular_indexing() -> bool:
    try:
        import sympy
        from torch._inductor import tiling_utils
        from torch.utils._sympy.functions import ModularIndexing
    except Exception:  # the analysis (or its module) is not there: nothing to work around
        return True
    n = sympy.Symbol("n1", integer=True, nonnegative=True)
    try:
        for expr in (ModularIndexing(n - 1, 1, 16), ModularIndexing(ModularIndexing(n - 7, 1, 50), 1, 50)):
            tiling_utils.solve_for_tiling(expr)
    except AssertionError:
        return False
    except Exception:  # a different signature: assume a torch that no longer asserts
        return True
    return True


class Override(NamedTuple):
    """An ``arch_args`` value that a command-line option sets in place of the manifest's (``--img-size``
    for ``img_size``): a constructor's complaint about it is the option's, not the manifest entry's."""

    option: str
    value: Any

    def __str__(self) -> str:
        return f"{self.option} {self.value}"


def build_model(entry: ModelEntry, overrides: Optional[Mapping[str, Override]] = None) -> nn.Module:
    """The bare architecture (random weights) with the entry's data config attached, timm-style.

    ``overrides`` (by ``arch_args`` name) replace the entry's values; where the constructor refuses one
    of them, the error names its option (a plain :class:`SsmzooError`), not the manifest's field."""
    import timm

    from . import models  # noqa: F401  (registers our architectures with timm)

    overrides = {k: o for k, o in (overrides or {}).items() if entry.arch_args.get(k, _UNSET) != o.value}
    kwargs = {"num_classes": entry.num_classes, **entry.arch_args}
    protocol_frames = entry.video is not None and kwargs.get("num_frames") is None
    if protocol_frames:  # built for the protocol's clips (the manifest refuses an arch_args num_frames that differs)
        kwargs["num_frames"] = entry.video.num_frames
    kwargs.update((k, o.value) for k, o in overrides.items())
    try:
        model = timm.create_model(entry.architecture, pretrained=False, **kwargs)
    except _BUILD_ERRORS as exc:
        if isinstance(exc, RuntimeError) and "Unknown model" in str(exc):  # (an entry not read from a manifest)
            raise ManifestError(f"{entry.source_file or 'manifest'}: model '{entry.name}', field 'architecture': "
                                f"{architecture_unregistered(entry.architecture)}") from None
        if not entry.arch_args and not overrides and not protocol_frames:  # the architecture's own defaults
            raise  # failed: ssmzoo's bug, whole
        raise _build_failure(entry, overrides, exc) from exc  # (the constructor's own error, for library users)
    builds_video = bool(getattr(model, "is_video", False))
    if builds_video != entry.is_video:  # (an entry not read from a manifest, which checks this on load)
        raise ManifestError(f"{entry.source_file or 'manifest'}: model '{entry.name}', field 'task': "
                            + task_contradiction(entry.task, entry.architecture, entry.arch_args, builds_video))
    cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
    cfg.update(entry.data.as_timm())
    model.pretrained_cfg = cfg
    return model


_UNSET = object()

# What a constructor raises for arguments it cannot use: a wrong type or unknown name (TypeError), a
# value it checks (ValueError, AssertionError) or one that reaches torch (RuntimeError: a negative
# size), an index or a division that a bad length or a zero sets off.
_BUILD_ERRORS = (TypeError, ValueError, RuntimeError, AssertionError, ArithmeticError, IndexError)


def _build_failure(entry: ModelEntry, overrides: Mapping[str, Override], exc: Exception) -> SsmzooError:
    """The one-line error for arguments the architecture cannot be built with, blaming what set them: the
    options whose arguments the constructor's message names; else the entry's ``arch_args`` (a
    :class:`ManifestError` naming file, model and field) where it names one of those or no option is in
    play; else both, as they were. The constructor's message alone reads as a crash of ssmzoo's."""
    message = str(exc)
    cause = (message.strip().splitlines() or [type(exc).__name__])[0]

    def named(key: str) -> bool:
        return re.search(rf"(?<!\w){re.escape(key)}(?!\w)", message) is not None

    blamed = {k: o for k, o in overrides.items() if named(k)}
    options = ", ".join(map(str, (blamed or overrides).values()))
    own = {k: v for k, v in entry.arch_args.items() if k not in overrides}
    where = f"{entry.source_file or 'manifest'}: model '{entry.name}'"
    frames = entry.video.num_frames if entry.video is not None else None
    if (frames is not None and "num_frames" not in overrides and named("num_frames")
            and own.get("num_frames") in (None, frames)):  # the model was built for the protocol's clips
        others = {k: v for k, v in own.items() if k != "num_frames" and named(k)}
        with_args = f" with arch_args {others}" if others else ""
        return ManifestError(f"{where}, field 'video.num_frames': {entry.architecture} cannot be built for "
                             f"{frames}-frame clips{with_args} ({cause})")
    if blamed or not own:
        return SsmzooError(f"{entry.name}: {entry.architecture} cannot be built with {options} ({cause})")
    with_options = f" and {options}" if options else ""
    if not overrides or any(named(k) for k in own):
        return ManifestError(f"{where}, field 'arch_args': {entry.architecture} cannot be built with {own}"
                             f"{with_options} ({cause})")
    return SsmzooError(f"{where}: {entry.architecture} cannot be built with manifest arch_args {own}"
                       f"{with_options} ({cause})")


def adapt_state_dict(state_dict: dict, model: nn.Module) -> dict:
    """Lets a model family remap a checkpoint (e.g. resize position embeddings) via timm's convention:
    a module-level ``checkpoint_filter_fn(state_dict, model)`` beside the model class."""
    module = sys.modules.get(type(model).__module__)
    fn = getattr(module, "checkpoint_filter_fn", None)
    return fn(state_dict, model) if fn is not None else state_dict


@dataclass
class LoadedModel:
    model: nn.Module
    entry: ModelEntry
    weights_origin: str
    device: torch.device
    dtype: torch.dtype
    # the wrapper keys the weights were found under in the file, e.g. ("model_ema",); () when flat
    weights_key_path: tuple[str, ...] = ()


def weights_label(origin: str, key_path: Sequence[str] = ()) -> str:
    """The checkpoint in use, as the weights lines name it: its origin and, where the file nests the
    weights, the key that supplied them. A training checkpoint often holds both ``model`` and
    ``model_ema``, and which one was taken changes the accuracy; the key is written as
    ``state_dict_key`` / ``--state-dict-key`` take it, so the other can be chosen."""
    return origin + (f" (state dict under '{state_dict_key_text(key_path)}')" if key_path else "")


def parse_device(device: str) -> torch.device:
    """``--device`` as torch reads it (not ``auto``), or the usage error naming what it accepts: ssmzoo
    runs on CPUs and CUDA GPUs (torch also names mps, xpu, meta, ..., which fail deep inside it), and
    cuda needs one here."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: no CUDA device is available (use --device cpu)")
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise UsageError(f"--device {device!r}: expected auto, cpu, cuda or cuda:N") from None
    if parsed.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {device}: ssmzoo runs on cpu or cuda (expected auto, cpu, cuda or cuda:N)")
    return parsed


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = parse_device(device)
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise UsageError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    return resolved


def resolve_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise UsageError(f"--dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def check_cuda_graphs(cuda_graphs: bool, device: torch.device) -> None:
    """--cuda-graphs asked for on a device that has none: a usage error before anything runs."""
    if cuda_graphs and device.type != "cuda":
        raise UsageError(f"--cuda-graphs needs a CUDA device (running on {device}); drop it or use --device cuda")


def check_load_options(entry: ModelEntry, *, weights: Optional[str] = None, revision: Optional[str] = None,
                       device: str = "auto", dtype: str = "fp32", cuda_graphs: Optional[bool] = None) -> None:
    """Raises the usage error ``load_model`` (or, for ``cuda_graphs``, the runner) would for these options
    (--device, --dtype, --weights, --revision, --cuda-graphs) without loading anything, so a command
    can fail before a long dataset scan."""
    from .hub import check_weights_request

    torch_device = resolve_device(device)
    resolve_dtype(dtype)
    check_cuda_graphs(bool(cuda_graphs), torch_device)
    check_weights_request(entry.name, entry.weights, override=weights, revision=revision)


def load_model(entry: ModelEntry, *, weights: Optional[str] = None, revision: Optional[str] = None,
               device: str = "auto", dtype: str = "fp32", progress: bool = True,
               on_weights: Optional[Callable[[ResolvedWeights, Optional[LoadedCheckpoint]], None]] = None,
               ) -> LoadedModel:
    """Builds ``entry`` and loads its weights (the manifest's Hub source, or ``weights`` override).

    ``on_weights(resolved, checkpoint)`` is called once the file has been read, to say which file and
    which of its state dicts are in use; with ``checkpoint`` None where reading it failed, before the
    error is raised, so that the file is named either way."""
    from .checkpoint import load_into_model, read_checkpoint
    from .hub import resolve_weights

    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype)
    resolved = resolve_weights(entry.name, entry.weights, override=weights, revision=revision, progress=progress)
    try:
        checkpoint = read_checkpoint(resolved.path, state_dict_key=resolved.state_dict_key, sha256=resolved.sha256)
    except WeightsError:
        if on_weights is not None:
            on_weights(resolved, None)
        raise
    if on_weights is not None:
        on_weights(resolved, checkpoint)
    state_dict = checkpoint.state_dict
    model = build_model(entry)
    state_dict = adapt_state_dict(state_dict, model)
    try:
        load_into_model(model, state_dict, model_name=entry.name)
    except WeightsError as exc:
        hint = _head_hint(model, state_dict, entry)
        if hint is None:
            raise
        raise WeightsError(f"{exc}; {hint}") from None
    model.eval().to(torch_device)
    return LoadedModel(model, entry, resolved.origin, torch_device, torch_dtype, checkpoint.key_path)


def _head_hint(model: nn.Module, state_dict: dict, entry: ModelEntry) -> Optional[str]:
    """Where a checkpoint's classifier has another number of classes than the entry's labels, says so in
    those terms (a labels file with a line too many or too few, or the wrong labels for the weights)."""
    heads = model.get_classifier() if hasattr(model, "get_classifier") else ()
    head = heads[0] if isinstance(heads, tuple) else heads  # GroupMamba's (head, dist_head)
    name = next((n for n, m in model.named_modules() if m is head and n), None)
    weight = state_dict.get(f"{name}.weight") if name is not None else None
    if weight is None or weight.ndim < 1 or weight.shape[0] == entry.num_classes:
        return None
    labels = (f"labels {entry.labels} have" if is_builtin(entry.labels) else f"labels file {entry.labels} lists")
    return (f"the checkpoint's head ({name}) has {weight.shape[0]} outputs, but {entry.name}'s {labels} "
            f"{entry.num_classes} classes")


def autocast(device: torch.device, dtype: torch.dtype):
    """Mixed precision for fp16/bf16 (the scan still accumulates in fp32); a no-op for fp32."""
    if dtype == torch.float32:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)
