"""Model families; importing registers each architecture with timm.

Which architectures they register, and what each builds, is ``ssmzoo.architectures`` (torch-free, so the
manifest reads it without importing these); tests/test_cli_start.py checks that the two agree.
"""

from ..architectures import ARCHITECTURES, VIDEO_FAMILIES, builds_video
from . import groupmamba, stablemamba, videomamba

__all__ = ["ARCHITECTURES", "VIDEO_FAMILIES", "builds_video", "groupmamba", "stablemamba", "videomamba"]
