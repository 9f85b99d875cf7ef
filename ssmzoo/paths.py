"""Where a path cannot become a folder: shared by the CLI's output checks and the Hub cache's errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional


def file_in_the_way(path: Path) -> Optional[Path]:
    """The nearest existing entry at or above ``path`` when it is not a folder (a file, or a link to
    nothing): folders cannot be made below it. None when that entry is a folder, or nothing exists."""
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return None if candidate.is_dir() else candidate
    return None
