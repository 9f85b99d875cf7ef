"""Paths the user gives: where one cannot become a folder (the CLI's output checks, the Hub cache's
errors), and the files a folder holds (``classify DIR`` and the datasets' class folders)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Collection, Optional


def file_in_the_way(path: Path) -> Optional[Path]:
    """The nearest existing entry at or above ``path`` when it is not a folder (a file, or a link to
    nothing): folders cannot be made below it. None when that entry is a folder, or nothing exists."""
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return None if candidate.is_dir() else candidate
    return None


def files_below(root: Path, suffixes: Collection[str], *, follow_links: bool) -> tuple[list[Path], int, list[OSError]]:
    """The files below ``root`` whose suffix (lower-cased) is in ``suffixes``, sorted; how many other
    files there are; and the error of each folder that could not be read, whose files are missing from
    the list (callers must say so). Hidden files and folders are left out, as ``ls`` and glob do. An
    entry is listed by its name, so a link to nothing is listed too."""
    files: list[Path] = []
    others = 0
    unreadable: list[OSError] = []
    for folder, subfolders, names in os.walk(root, followlinks=follow_links, onerror=unreadable.append):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in names:
            if name.startswith("."):
                continue
            if Path(name).suffix.lower() in suffixes:
                files.append(Path(folder, name))
            else:
                others += 1
    return sorted(files), others, unreadable
