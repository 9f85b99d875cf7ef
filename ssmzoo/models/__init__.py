"""Model families; importing registers each architecture with timm."""

from . import groupmamba, stablemamba, videomamba  # noqa: F401
