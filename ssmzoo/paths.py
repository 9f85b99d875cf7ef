"""Paths the user gives: where one cannot become a folder (the CLI's output checks, the Hub cache's
errors), and the files a folder holds (``classify DIR`` and the datasets' class folders)."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import Callable, Collection, Iterator, Optional

from .errors import OutputError, UsageError


def file_in_the_way(path: Path) -> Optional[Path]:
    """The nearest existing entry at or above ``path`` when it is not a folder (a file, or a link to
    nothing): folders cannot be made below it. None when that entry is a folder, or nothing exists."""
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return None if candidate.is_dir() else candidate
    return None


def check_output_path(option: str, path: Optional[Path], suffixes: tuple[str, ...]) -> None:
    """Fails now, not after a long run, where ``path`` cannot be written: nothing is created (a run that
    fails or is interrupted leaves no empty folder behind; the writer makes the missing folders), but a
    scratch file is made and removed in the nearest folder that exists, and an existing file is opened
    for appending (every process may check at once). A wrong suffix, a folder, or
    a file where a folder must be is a :class:`UsageError` (the path as typed); a folder or file the
    system will not let us write (permissions, a read-only or full disk) an :class:`OutputError`, exit
    code 1, naming the path and the cause."""
    if path is None:
        return
    if path.suffix.lower() not in suffixes:
        raise UsageError(f"{option} {path}: expected a {' or '.join(suffixes)} file name")
    try:
        if path.is_dir():
            raise UsageError(f"{option} {path}: is a directory")
        blocking = file_in_the_way(path.parent)
        if blocking is not None:
            raise UsageError(f"{option} {path}: {blocking} is a file, not a folder")
        if path.exists():
            with open(path, "a"):
                pass
        else:  # the folder it will be written in, or the nearest existing one above it: must take new entries
            nearest = next(p for p in (path.parent, *path.parent.parents) if os.path.lexists(p))
            with tempfile.NamedTemporaryFile(dir=nearest, prefix=".ssmzoo-check-"):
                pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno in (errno.ENAMETOOLONG, errno.EINVAL):  # no file system would take the name as typed
            raise UsageError(f"{option} {path}: cannot write it ({reason})") from None
        if os.path.lexists(path):
            raise OutputError(f"{option} {path}: cannot write it ({reason})") from None
        folder = next((p for p in path.parents if os.path.isdir(p)), path.parent)
        raise OutputError(f"{option} {path}: cannot create it in {folder} ({reason})") from None


def write_output(option: str, path: Path, text: str) -> None:
    """Writes a command's results file: UTF-8, a file name's bytes that are not UTF-8 as ``\\xNN``
    (``text.readable``: the results are not lost at the end to a name UTF-8 cannot hold), the missing
    folders made now (``check_output_path`` made none). A failure (a full disk) is an
    :class:`OutputError` naming ``option`` and the path, as that check words it."""
    from .text import readable

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(readable(text), encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"{option} {path}: cannot write it ({exc.strerror or exc})") from None


def write_csv(option: str, path: Path, fields: list[str], rows: list[dict]) -> None:
    """``rows`` under a header of ``fields``, written as ``write_output`` writes."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_output(option, path, buf.getvalue())


def name_problem(text: str, *, read: bool = True, give: str = "a path") -> Optional[str]:
    """Why a name given on the command line names no file, or None: an empty one (an unset shell
    variable, ``"$IMG"``), which ``Path`` reads as ``.``, the whole current folder (and which a
    ``--weights`` or ``--revision`` would take as not given at all); and, for a file to ``read``,
    ``-``, which elsewhere means stdin, unread here (unless a file is named so; an output named ``-``
    is left to the output's own checks). One wording for classify's inputs and every path option (where
    click's own prefix names the option); ``give`` says what to give instead where it is no path (a
    revision: "a branch, tag or commit")."""
    if not text:
        return f"'': empty name; give {give}"
    if read and text == "-" and not os.path.lexists(text):
        return "-: reading from stdin is not supported; give a path"
    return None


def check_name(text: str, option: str = "", **kwargs) -> None:
    """``name_problem`` as a :class:`UsageError`, before anything is read; after ``option`` where given
    (the library's callers: click names the CLI's options itself)."""
    problem = name_problem(text, **kwargs)
    if problem is not None:
        raise UsageError(f"{option} {problem}" if option else problem)


NO_SUCH_FILE = "no such file or directory"


def missing_file(path: str | os.PathLike) -> str:
    """Why a file that is not there cannot be read, in one wording wherever a data file (a classify
    input, a dataset's image or video) is missing: for a link to nothing, what it points at (the link
    itself is there, so "no such file" would send the user looking in the wrong place); for links that
    point at each other in a loop, that; else ``NO_SUCH_FILE``."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop (too many levels of symbolic links)"
    except ValueError:  # a NUL in the name
        return NO_SUCH_FILE
    try:
        return f"broken link (its target {os.readlink(path)} does not exist)"
    except (OSError, ValueError):
        return NO_SUCH_FILE


def special_file(path: str | os.PathLike) -> Optional[str]:
    """Why ``path`` is no file to read, where it is a pipe (FIFO, also ``<(cmd)``'s /dev/fd/N), a socket
    or a device, told by ``os.stat`` alone: it is never opened, as opening a pipe that nobody writes to
    waits forever. Reading those is not supported. None for anything else (a regular file, a folder, or
    a path stat cannot reach: the caller's own checks say why)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISFIFO(mode):
        return "is a pipe (FIFO), not a regular file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a regular file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a regular file"
    return None


def file_problem(path: str | os.PathLike) -> Optional[str]:
    """Why ``path`` cannot be read as a file, found without opening it: missing (``missing_file``'s
    words) or a pipe, socket or device (``special_file``'s); None otherwise (a folder included: each
    reader has its words for one)."""
    if not os.path.exists(path):
        return missing_file(path)
    return special_file(path)


def files_below(root: Path, suffixes: Collection[str], *, follow_links: bool,
                prune: Optional[Callable[[str], bool]] = None, links: Optional[set[Path]] = None
                ) -> tuple[list[Path], int, list[OSError], list[Path]]:
    """The files below ``root`` whose suffix (lower-cased) is in ``suffixes``, sorted; how many other
    files there are; the error of each folder that could not be read, whose files are missing from the
    list (callers must say so); and the pipes, sockets and devices (``special_file``), sorted, whatever
    their suffix: no reader takes them, and callers say they were left out. Hidden files and folders
    are left out, as ``ls`` and glob do. An entry is listed by its name, so a link to nothing is listed
    too. Following links, each folder is walked once (by device and inode): a link back to a folder
    above (``self -> .``, ``up -> ..``) would otherwise list its files again and again, or never end.
    ``prune(folder)``, where given, is asked of each folder below ``root``: where true, that folder is
    not walked (a dataset's class folder leaves out links to the other classes' folders; ``prune`` says
    why). ``links``, where given, gets the listed files that are links, told by the listing's file types
    as the walk meets them (no second listing, no stat per file)."""
    files: list[Path] = []
    special: list[Path] = []
    others = 0
    unreadable: list[OSError] = []
    walked: set[tuple[int, int]] = set()
    for folder, subfolders, entries in _walk(os.fspath(root), follow_links, unreadable.append):
        if follow_links:
            try:
                st = os.stat(folder)
            except OSError as exc:
                unreadable.append(exc)
                subfolders[:] = []
                continue
            if (st.st_dev, st.st_ino) in walked:
                subfolders[:] = []
                continue
            walked.add((st.st_dev, st.st_ino))
        if prune is not None and folder != str(root) and prune(folder):
            subfolders[:] = []
            continue
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(folder, entry.name)
            if not _is_regular(entry) and special_file(path) is not None:  # (a stat only where not regular)
                special.append(path)
            elif path.suffix.lower() in suffixes:
                files.append(path)
                if links is not None and _is_link(entry):
                    links.add(path)
            else:
                others += 1
    return sorted(files), others, unreadable, sorted(special)


def _walk(top: str, follow_links: bool, onerror: Callable[[OSError], None]
          ) -> Iterator[tuple[str, list[str], list[os.DirEntry]]]:
    """``os.walk(top, followlinks=follow_links, onerror=onerror)``, top-down (the caller may prune or
    reorder each folder's subfolder names in place), with each folder's other entries as ``os.DirEntry``:
    their file types come with the listing, so telling a regular file from a pipe costs no stat per file
    (``os.walk`` gives their names only; a dataset folder may hold 50,000)."""
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as listing:
                listed = list(listing)
        except OSError as exc:
            onerror(exc)
            continue
        folders: list[os.DirEntry] = []
        others: list[os.DirEntry] = []
        for entry in listed:
            (folders if _is_folder(entry) else others).append(entry)
        names = [entry.name for entry in folders]
        yield folder, names, others
        links = set() if follow_links else {entry.name for entry in folders if entry.is_symlink()}
        stack.extend(os.path.join(folder, name) for name in reversed(names) if name not in links)


def _is_folder(entry: os.DirEntry) -> bool:
    """A folder, or a link to one (as ``os.walk`` sorts them)."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _is_link(entry: os.DirEntry) -> bool:
    """A link; from the listing's file type where it has one."""
    try:
        return entry.is_symlink()
    except OSError:
        return False


def _is_regular(entry: os.DirEntry) -> bool:
    """A regular file, or a link to one; from the listing's file type where it has one."""
    try:
        return entry.is_file()
    except OSError:
        return False
