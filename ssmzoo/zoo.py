"""What `ssmzoo models` and `ssmzoo info` report about the zoo."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Optional

from .manifest import ModelEntry
from .text import one_line


def weights_status(entry: ModelEntry) -> str:
    """'cached', 'damaged' (cached, but not a checkpoint: `ssmzoo download` says why), 'hub'
    (published, not downloaded yet) or 'none' (no published weights)."""
    return _cached_weights(entry)[0]


def _cached_weights(entry: ModelEntry) -> tuple[str, Optional[Path], Optional[str]]:
    """:func:`weights_status`, the cached file where it is 'cached', and why it is 'damaged' (one line)."""
    if entry.weights is None:
        return "none", None, None
    from .hub import cached_weights_file

    path = cached_weights_file(entry.weights)
    if path is None:
        return "hub", None, None
    from .checkpoint_files import checkpoint_problem  # (its headers alone: no torch)

    try:
        problem = checkpoint_problem(path)
    except OSError as e:  # unreadable: of no use either
        return "damaged", None, f"it cannot be read: {e.strerror or e}"
    return ("damaged", None, problem) if problem else ("cached", path, None)


def _cached_key_path(entry: ModelEntry, path: Optional[Path]) -> tuple[Optional[list[str]], Optional[str]]:
    """Where in the cached checkpoint the weights are (e.g. ``["model_ema"]``, ``[]`` for a flat file), as
    classify and eval will take them, and None; or None and why the file cannot be read safely (one line)
    where it is cached but classify and eval would refuse it. (None, None) where no file is cached.
    Reads the file's structure only (a safetensors header, a pickle without its tensors' bytes)."""
    if path is None:
        return None, None
    from .checkpoint import read_checkpoint
    from .errors import WeightsError

    try:
        loaded = read_checkpoint(path, state_dict_key=entry.weights.state_dict_key, tensor_data=False)
    except WeightsError as e:  # as a run would say it
        return None, one_line(str(e), join=" ")
    return list(loaded.key_path), None


def task_word(entry: ModelEntry) -> str:
    """'image' or 'video': the task as the table shows it and as a filter word picks it."""
    return "video" if entry.is_video else "image"


def matching_entries(entries: Mapping[str, ModelEntry], patterns: list[str]) -> dict[str, ModelEntry]:
    """The entries any pattern matches (all for none), case-insensitively: ``image`` or ``video`` the
    entries of that task (the table's task column: ``video`` is not a part of 'videomamba_tiny_in1k',
    an image model), a glob against the name, or else a part of the name, family or task."""
    import fnmatch

    def matches(entry: ModelEntry, pattern: str) -> bool:
        pattern = pattern.lower()
        if pattern in ("image", "video"):
            return task_word(entry) == pattern
        fields = (entry.name.lower(), entry.family.lower(), entry.task.lower())
        if any(c in pattern for c in "*?["):
            return fnmatch.fnmatchcase(fields[0], pattern)
        return any(pattern in f for f in fields)

    return {name: e for name, e in entries.items() if not patterns or any(matches(e, p) for p in patterns)}


def model_rows(entries: Mapping[str, ModelEntry]) -> list[dict[str, Any]]:
    return [
        {
            "name": e.name,
            "family": e.family,
            "task": task_word(e),
            "labels": e.labels,
            "num_classes": e.num_classes,
            "frames": e.video.num_frames if e.video else None,
            "params_m": e.reported.params_m,
            "top1": e.reported.top1,
            "weights": weights_status(e),
        }
        for e in entries.values()
    ]


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


# `ssmzoo info`'s table labels for the JSON keys that read differently to a person (the others show as is).
INFO_LABELS = {
    "params_m_counted": "params_m (counted)",
    "params_m_reported": "params_m (reported)",
    "top1_reported": "top1 (reported)",
    "gflops_reported": "gflops (reported)",
    "reported_source": "reported source",
    "data_config_resolved": "data config (resolved)",
    "video_protocol": "video protocol",
    "weights_status": "weights status",
    "weights_key_path": "weights key (cached)",
    "scan_backend_cpu": "scan backend (cpu)",
    "scan_backend_cuda": "scan backend (cuda)",
    "num_classes": "classes",
}


def model_info(entry: ModelEntry) -> dict[str, Any]:
    """The manifest entry plus facts measured on the built model (parameter count, data config, scan).
    Keys are identifiers, for scripts (``info --json``); ``info_rows`` gives the table's labels."""
    from timm.data import resolve_data_config

    from .factory import build_model

    model = build_model(entry)
    params = count_parameters(model)
    status, cached, damage = _cached_weights(entry)
    key_path, unreadable = _cached_key_path(entry, cached)
    data = resolve_data_config({}, model=model)
    info: dict[str, Any] = {
        "name": entry.name,
        "family": entry.family,
        "architecture": entry.architecture,
        "arch_args": dict(entry.arch_args) or None,
        "task": entry.task,
        "labels": entry.labels,
        "num_classes": entry.num_classes,
        "params_m_counted": round(params / 1e6, 2),
        "params_m_reported": entry.reported.params_m,
        "top1_reported": entry.reported.top1,
        "gflops_reported": entry.reported.gflops,
        "reported_source": entry.reported.source,
        "data_config_resolved": {k: (list(v) if isinstance(v, tuple) else v) for k, v in data.items()},
        "video_protocol": asdict(entry.video) if entry.video else None,
        "weights": asdict(entry.weights) if entry.weights else None,  # an object or null, for scripts
        "weights_note": None if entry.weights else "none published: pass --weights PATH",
        "weights_status": status,
        "weights_key_path": key_path,
        # why the cached file is of no use: 'damaged' (its headers), or 'cached' but refused by the safe load
        "weights_problem": damage or unreadable,
        "license": dict(entry.license) or None,
        "paper": dict(entry.paper) or None,
        "scan_backend_cpu": _backend_text("cpu"),
        "scan_backend_cuda": _backend_text("cuda"),
        "notes": entry.notes or None,
        "manifest": _manifest_file(entry.source_file),
    }
    return info


def _manifest_file(source: str) -> str:
    """The manifest file an entry came from as a full path (the packaged one's is already), whatever the
    current folder; a source that names no file (a manifest given as text) as it is."""
    return os.path.abspath(source) if os.path.isfile(source) else source


def _backend_text(device: str) -> str:
    """Which scan backend runs on ``device`` here, and why, for ``info``; a forced backend that cannot
    run is shown with its reason rather than stopping the command."""
    import torch

    from .errors import ScanBackendError
    from .ops.selective_scan import forced_scan_backend, scan_backend, triton_installed

    if device == "cuda" and not torch.cuda.is_available():
        return "none: no CUDA device here (on one: " + (
            "triton)" if triton_installed() else "torch; install triton for the Triton scan)")
    try:
        backend = scan_backend(device)
    except ScanBackendError as exc:
        return f"cannot run: {exc}"
    return f"{backend} (forced by SSMZOO_SCAN)" if forced_scan_backend() else backend


def _first_names(label_set: str, k: int = 5) -> str:
    from .labels import class_names

    names = class_names(label_set)
    return ", ".join(names[:k]) + (f", ... ({len(names) - k} more)" if len(names) > k else "")


def info_rows(info: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, text) per ``model_info`` field for the table: dicts as ``k=v, ...``, None as blank."""
    from .checkpoint import state_dict_key_text

    rows = []
    for key, value in info.items():
        if key == "num_classes":  # the first names too: a labels file read in another order shows here
            value = f"{value}: {_first_names(info['labels'])}"
        if key == "weights_note":  # said in the weights row, where there are none
            continue
        if key == "weights" and value is None:
            value = info.get("weights_note")
        if key == "weights_problem":  # said in the status row: "cached (unreadable: ...)", "damaged (...)"
            continue
        if key == "weights_status" and info.get("weights_problem"):
            value = (f"cached (unreadable: {info['weights_problem']})" if value == "cached"
                     else f"{value} ({info['weights_problem']})")
        if key == "weights_key_path" and value is not None:
            value = state_dict_key_text(value) or "(top level)"
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items() if v is not None)
        rows.append((INFO_LABELS.get(key, key), "" if value is None else str(value)))
    return rows
