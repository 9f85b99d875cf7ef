"""Wording shared by the commands' messages."""

from __future__ import annotations


def count(n: int, noun: str, plural: str | None = None) -> str:
    """'1 frame', '2 frames' (``plural`` where adding an s is wrong, e.g. 'passes')."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def one_line(text: str) -> str:
    """``text`` with its control characters written as escapes (a newline in a file name as ``\\n``), so that
    a message about the file stays one line, as errors, notes and each result's header line promise."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
