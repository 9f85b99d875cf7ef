"""Wording shared by the commands' messages."""

from __future__ import annotations

from typing import Optional


def count(n: int, noun: str, plural: str | None = None) -> str:
    """'1 frame', '2 frames' (``plural`` where adding an s is wrong, e.g. 'passes')."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def one_line(text: str, *, join: Optional[str] = None, limit: Optional[int] = None) -> str:
    """``text`` made one line, as errors, notes and each result's header line promise.

    By default the text is kept as it is, with its control characters written as escapes (a newline in
    a file name as ``\\n``): for messages that name files. ``join``: for prose from a library or an
    exception, whose line breaks are layout: each line's runs of whitespace become one space, blank
    lines are dropped and the rest joined with ``join`` (``" "`` or ``"; "``); control characters left
    over are escaped as before. ``limit``: at most that many characters, the end cut to ``…``."""
    if join is not None:
        text = join.join(" ".join(line.split()) for line in text.splitlines() if line.strip())
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def in_brief(text: str, limit: int = 120) -> str:
    """An exception's or a library's text as a short reason inside a message of ours: ``one_line`` with
    its line breaks and runs of whitespace made single spaces, cut to ``limit`` characters."""
    return one_line(text, join=" ", limit=limit)
