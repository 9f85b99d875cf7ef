"""Standard output that fails as the CLI's other failures do: a full disk behind ``> file`` is one
error line, a reader that left (``ssmzoo models | head -1``) ends the run quietly; neither a traceback."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Callable, Iterator, TextIO

from .errors import SsmzooError


class StdoutError(SsmzooError):
    """stdout cannot be written (a full disk, ``/dev/full``): what the run printed is lost, so it failed."""


class StdoutClosed(Exception):
    """The reader of stdout has gone (a closed pipe). Not an OSError, so that click's own EPIPE handling
    and ``except OSError`` blocks on the way out leave it alone."""


class GuardedStdout:
    """``sys.stdout`` whose failed writes and flushes raise :class:`StdoutError` or :class:`StdoutClosed`
    instead of an OSError from wherever the printing happened; everything else is the stream's own."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        if text == "":  # click probes a stream with an empty write (inside `except Exception`): nothing to lose
            return 0
        return self._guard(self._stream.write, text)

    def flush(self) -> None:
        self._guard(self._stream.flush)

    def _guard(self, call: Callable[..., Any], *args: Any) -> Any:
        try:
            return call(*args)
        except OSError as exc:
            _discard_the_rest(self._stream)
            if isinstance(exc, BrokenPipeError):
                raise StdoutClosed() from None
            raise StdoutError(f"stdout: cannot write ({exc.strerror or exc})") from None

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ... (rich and click ask)
        return getattr(self._stream, name)


def _discard_the_rest(stream: TextIO) -> None:
    """Points stdout's file descriptor at /dev/null: what is still buffered would fail again when Python
    flushes it at exit, with an "Exception ignored" message and exit code 120."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # not a real file (a test's capture): nothing is flushed at exit
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


@contextlib.contextmanager
def guarded_stdout() -> Iterator[None]:
    """``sys.stdout`` guarded for the block, and flushed at its end (also on ``sys.exit``), so that a write
    the buffer took but the disk refuses fails here rather than in Python's shutdown."""
    real = sys.stdout
    guard = GuardedStdout(real)
    sys.stdout = guard  # type: ignore[assignment]
    try:
        try:
            yield
        finally:
            guard.flush()
    finally:
        sys.stdout = real
