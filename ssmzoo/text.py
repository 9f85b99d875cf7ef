"""Wording shared by the commands' messages."""

from __future__ import annotations

import math
import re
from typing import Any, Optional

_NOT_UTF8 = re.compile("[\udc80-\udcff]")


def count(n: int, noun: str, plural: str | None = None) -> str:
    """'1 frame', '2 frames' (``plural`` where adding an s is wrong, e.g. 'passes')."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def is_are(n: int) -> str:
    """The verb after ``count(n, ...)``: '1 folder is', '2 folders are'."""
    return "is" if n == 1 else "are"


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
        text = "".join(ch if ch.isprintable() else _escaped(ch) for ch in text)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def _escaped(ch: str) -> str:
    """One unprintable character as an escape: a byte of a file name that is not UTF-8 (which Python
    holds as a lone surrogate, U+DC80..U+DCFF) as that byte, ``\\xff``; anything else as Python writes it."""
    if "\udc80" <= ch <= "\udcff":
        return f"\\x{ord(ch) - 0xDC00:02x}"
    return ch.encode("unicode_escape").decode("ascii")


def readable(text: str) -> str:
    """``text`` with the bytes of a file name that are not UTF-8 written as ``\\xNN`` (``bad\\xffjunk.jpg``):
    Python holds them as lone surrogates, which UTF-8 files cannot hold and strict JSON readers reject."""
    return _NOT_UTF8.sub(lambda m: _escaped(m.group()), text)


def readable_data(obj: Any) -> Any:
    """``readable`` applied to every string in ``obj`` (dicts, lists, tuples): what is written as JSON or CSV."""
    if isinstance(obj, str):
        return readable(obj)
    if isinstance(obj, dict):
        return {readable_data(k): readable_data(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [readable_data(v) for v in obj]
    return obj


def in_brief(text: str, limit: int = 120) -> str:
    """An exception's or a library's text as a short reason inside a message of ours: ``one_line`` with
    its line breaks and runs of whitespace made single spaces, cut to ``limit`` characters."""
    return one_line(text, join=" ", limit=limit)


def _rate_decimals(value: float, decimals: int, significant: int) -> int:
    """Decimals that keep ``decimals`` and at least ``significant`` significant digits of ``value``."""
    if not value or not math.isfinite(value):
        return decimals
    return max(decimals, significant - 1 - math.floor(math.log10(abs(value))))


def round_rate(value: Optional[float], decimals: int = 2, significant: int = 3) -> Optional[float]:
    """A rate (items/s) rounded for JSON: ``decimals`` places, more where the rate is small, so that a slow
    run keeps ``significant`` digits (0.004843 -> 0.00484, not 0.0); None stays None."""
    if value is None:
        return None
    return round(value, _rate_decimals(value, decimals, significant))


def rate_text(value: float, decimals: int = 1, significant: int = 3) -> str:
    """A rate as printed: ``decimals`` places, more for a small one (``12.3``, ``0.00484``)."""
    return f"{value:.{_rate_decimals(value, decimals, significant)}f}"
