"""ssmzoo's architectures by name: their family and what each builds, without importing torch or timm.

The manifest validates every entry's ``architecture`` when it is read; for ssmzoo's own it asks this
table, so that commands which only read the manifest (``ssmzoo models``, a mistyped ``download``) need
neither torch nor timm (seconds to import). ``ssmzoo.models`` registers the same names with timm
(tests/test_cli_start.py checks that they agree, and that each builds what ``builds_video`` says).
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Optional

FAMILIES = ("groupmamba", "videomamba", "stablemamba")
# The families whose models take clips: a model of theirs is a video model where it is built with
# ``num_frames`` (VideoMamba.is_video), which their ``*_video`` architectures default to (8).
VIDEO_FAMILIES = ("videomamba", "stablemamba")


class Architecture(NamedTuple):
    family: str
    video: bool  # builds a video model with its defaults (num_frames 8)


def _table() -> dict[str, Architecture]:
    sizes = {"groupmamba": ("tiny", "small", "base"),
             "videomamba": ("tiny", "small", "middle", "base"),
             "stablemamba": ("tiny", "small", "middle", "base", "large")}
    table = {f"{family}_{size}": Architecture(family, False) for family in FAMILIES for size in sizes[family]}
    table.update({f"{family}_{size}_video": Architecture(family, True)
                  for family in VIDEO_FAMILIES for size in sizes[family]})
    return dict(sorted(table.items()))


# Every architecture ssmzoo registers with timm, sorted by name (as timm.list_models sorts them)
ARCHITECTURES: dict[str, Architecture] = _table()


def ours(architecture: str) -> Optional[Architecture]:
    """The entry of one of ssmzoo's architectures, a pretrained tag (``groupmamba_tiny.in1k``) aside;
    None for any other name (timm's own, ``hf-hub:...``, a typo)."""
    return ARCHITECTURES.get(architecture.split(".", 1)[0]) if ":" not in architecture else None


def builds_video(architecture: str, arch_args: Mapping[str, Any]) -> bool:
    """Whether ``timm.create_model(architecture, **arch_args)`` builds a video model (one that takes
    (B, C, T, H, W) clips), told from the name and the arguments without building it, so a manifest can
    check its ``task`` when it is read. The built model says the same in its ``is_video``
    (tests/test_manifest.py checks every architecture). timm drops arguments that are None, so
    ``num_frames: null`` leaves a ``*_video`` architecture's default in place. Architectures outside
    ssmzoo's video families (GroupMamba, timm's own) build image models."""
    arch = ours(architecture)
    if arch is None or arch.family not in VIDEO_FAMILIES:
        return False
    return arch.video or arch_args.get("num_frames") is not None
