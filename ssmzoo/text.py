"""Wording shared by the commands' messages."""

from __future__ import annotations


def count(n: int, noun: str, plural: str | None = None) -> str:
    """'1 frame', '2 frames' (``plural`` where adding an s is wrong, e.g. 'passes')."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
