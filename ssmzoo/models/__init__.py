"""Model families; importing registers each architecture with timm."""

from typing import Any, Mapping

from . import groupmamba, stablemamba, videomamba  # noqa: F401

# The families whose models take clips: a model of theirs is a video model where it is built with
# ``num_frames`` (VideoMamba.is_video), which their ``*_video`` architectures default to (8).
VIDEO_FAMILIES = ("videomamba", "stablemamba")


def builds_video(architecture: str, arch_args: Mapping[str, Any]) -> bool:
    """Whether ``timm.create_model(architecture, **arch_args)`` builds a video model (one that takes
    (B, C, T, H, W) clips), told from the name and the arguments without building it, so a manifest can
    check its ``task`` when it is read. The built model says the same in its ``is_video``
    (tests/test_manifest.py checks every architecture). timm drops arguments that are None, so
    ``num_frames: null`` leaves a ``*_video`` architecture's default in place. Architectures outside
    ssmzoo's video families (GroupMamba, timm's own) build image models."""
    if not architecture.startswith(tuple(f"{family}_" for family in VIDEO_FAMILIES)):
        return False
    return arch_args.get("num_frames") is not None or architecture.endswith("_video")
