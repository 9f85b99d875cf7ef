"""Finding a model's checkpoint: a local file, or a file on the Hugging Face Hub fetched into its cache.

Downloads go through ``huggingface_hub`` (its cache layout, progress bar, token handling, resumable
HTTP). huggingface_hub reads ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and the cache location once, at
import; we read them again on every call so that changing the environment (a test, a long-lived
process) takes effect. Every failure is one :class:`~ssmzoo.errors.WeightsError` line that names the
model and the file, gives the cause and says what to do.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import logging
import os
import re
import socket
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional
from urllib.parse import unquote, urlsplit

from .errors import WeightsError, WeightsOptionError
from .manifest import WeightsSource
from .paths import file_in_the_way, missing_file, name_problem
from .text import count, in_brief, one_line

__all__ = [
    "HUB_PREFIX",
    "WEIGHT_EXTENSIONS",
    "HubRef",
    "ResolvedWeights",
    "download_record",
    "parse_hub_ref",
    "resolve_weights",
    "check_weights_request",
    "is_cached",
    "cached_weights_file",
    "hub_endpoint",
    "hub_offline",
    "hub_cache_dir",
    "choose_weights_file",
]

HUB_PREFIX = "hf-hub:"
# Candidates when a repo's file must be picked, best first: safetensors cannot run code when read.
WEIGHT_EXTENSIONS = (".safetensors", ".pth", ".pt", ".bin")
# A local --weights file may also carry these older names; its content decides how it is read.
_LOCAL_EXTENSIONS = WEIGHT_EXTENSIONS + (".ckpt", ".pth.tar")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_CHECKED_AGAINST = {"manifest": "the manifest's sha256", "hub": "the Hub's sha256"}
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_WEIGHTS_HINT = "pass --weights PATH (a .pth/.pt/.bin/.safetensors file) or --weights hf-hub:ORG/REPO[/FILE][@REVISION]"
# `download` only fills the Hub cache: its --weights takes a Hub reference, and a local file is of no use to it.
HUB_REF = "hf-hub:ORG/REPO[/FILE][@REVISION]"
REVISION_NAMES = "a branch, tag or commit"  # what --revision takes, in the words of its empty-name error
_DOWNLOAD_WEIGHTS_HINT = ("pass --weights hf-hub:ORG/REPO[/FILE][@REVISION] (a local checkpoint needs no download: "
                          "give it to classify, eval or robustness with --weights PATH)")


def _weights_hint(local_weights: bool) -> str:
    """How to name other weights, for a command that takes ``--weights PATH`` (or for ``download``)."""
    return _WEIGHTS_HINT if local_weights else _DOWNLOAD_WEIGHTS_HINT


def _local_copy_hint(local_weights: bool, repo_id: str, cache_dir: Path) -> str:
    """What works without the Hub: ``--weights PATH`` where the command takes it; for ``download``,
    a copy of the repo's cache folder (which it then finds), or a local file given to the other commands."""
    if local_weights:
        return "pass --weights PATH to a local copy"
    folder = cache_dir / ("models--" + repo_id.replace("/", "--"))
    return (f"copy {folder} from a machine that has it (or give a local checkpoint to classify, eval or "
            "robustness with --weights PATH)")


@dataclass(frozen=True)
class ResolvedWeights:
    """A checkpoint on local disk, and where it came from."""

    path: Path
    origin: str  # "hf-hub:org/repo@main/file.pth" or "local:/abs/file.pth"
    filename: str  # file name in the repo (or the local file's name)
    sha256: Optional[str] = None  # expected sha256 (already verified for Hub files), or None
    state_dict_key: Optional[str] = None
    format: str = "auto"
    commit: Optional[str] = None  # Hub commit the file was taken from, when known
    note: Optional[str] = None  # e.g. which file was picked from the repo listing; for the CLI to print
    repo_id: Optional[str] = None  # Hub repo (None for a local file)
    revision: Optional[str] = None  # Hub revision asked for: branch, tag or commit (None for a local file)
    size: Optional[int] = None  # bytes on disk
    checked_sha256: Optional[str] = None  # the sha256 the file was found to have, where it was checked
    checked_against: Optional[str] = None  # "manifest" or "hub" (an LFS file's published sha256), or None
    cached: Optional[bool] = None  # Hub files: already in the local cache (nothing was downloaded)
    # What huggingface_hub logged or warned while fetching (e.g. a download resumed), one line each, for
    # the CLI to print as notes; kept out of the way of the error line when the fetch fails.
    hub_messages: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """The record ``ssmzoo download --json`` prints (Hub fields are None for a local file)."""
        return {
            "origin": self.origin, "repo_id": self.repo_id, "revision": self.revision, "commit": self.commit,
            "filename": self.filename, "path": str(self.path), "size": self.size,
            "sha256": self.checked_sha256, "sha256_checked_against": self.checked_against,
            "already_cached": self.cached, "note": self.note,
        }


def download_record(model: str, resolved: Optional[ResolvedWeights] = None, error: Optional[str] = None) -> dict:
    """One model's entry in ``ssmzoo download --json``: its weights, or (every weights field None) the error."""
    fields = resolved.to_dict() if resolved is not None else dict.fromkeys(_RECORD_FIELDS)
    return {"model": model, **fields, "error": error}


_RECORD_FIELDS = tuple(ResolvedWeights(Path(), "", "").to_dict())  # a failed entry has the same keys


@dataclass(frozen=True)
class HubRef:
    repo_id: str
    filename: Optional[str] = None
    revision: Optional[str] = None


# --------------------------------------------------------------------------------------------------
# Environment, read per call


def _is_true(value: Optional[str]) -> bool:
    return value is not None and value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_endpoint() -> str:
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def hub_offline() -> bool:
    from huggingface_hub import constants

    # Same precedence as huggingface_hub.constants; unset falls back to what it read at import.
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    return _is_true(value) if value is not None else bool(constants.HF_HUB_OFFLINE)


def hub_cache_dir() -> Path:
    """huggingface_hub's cache folder as the current environment defines it (same precedence)."""
    env = os.environ
    if env.get("HF_HUB_CACHE"):
        raw = env["HF_HUB_CACHE"]
    elif env.get("HUGGINGFACE_HUB_CACHE"):
        raw = env["HUGGINGFACE_HUB_CACHE"]
    else:
        return _hf_home_dir() / "hub"
    return Path(os.path.expandvars(os.path.expanduser(raw)))


def _hf_home_dir() -> Path:
    """huggingface_hub's home (HF_HOME): the cache's default parent, and where it reads the token from."""
    env = os.environ
    xdg = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    raw = env.get("HF_HOME") or os.path.join(xdg, "huggingface")
    return Path(os.path.expandvars(os.path.expanduser(raw)))


class _Collect(logging.Handler):
    """Keeps each record huggingface_hub logs as one line instead of printing it."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.lines.append(one_line(record.getMessage(), join="; "))


@contextlib.contextmanager
def _hub_messages(lines: list[str]) -> Iterator[None]:
    """huggingface_hub's own log records (its logger, e.g. "Trying to resume download...", "Retrying in
    1s") and warnings (e.g. no symlinks in the cache folder) during a call, collected in ``lines`` rather
    than printed: printed as they come they stand before, and bury, the one-line error a failed fetch
    ends with. The caller prints them as notes after a fetch that worked (its error says what failed).
    Left alone where HF_HUB_VERBOSITY is set: the user asked for the library's own output. Warnings
    keep the filters in force (a filtered-out warning is not collected)."""
    if os.environ.get("HF_HUB_VERBOSITY"):
        yield
        return
    hub_logger = logging.getLogger("huggingface_hub")
    saved = hub_logger.handlers[:], hub_logger.propagate
    hub_logger.handlers, hub_logger.propagate = [_Collect(lines)], False
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            yield
    finally:
        hub_logger.handlers, hub_logger.propagate = saved
        lines.extend(one_line(str(w.message), join="; ") for w in caught)


@contextlib.contextmanager
def _hub_call(offline: bool, progress: bool) -> Iterator[list[str]]:
    """Make huggingface_hub's import-time offline flag follow the environment, mute its bar if asked, and
    collect what it logs or warns (see ``_hub_messages``) in the list it yields."""
    from huggingface_hub import constants
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = offline
    muted = False
    if not progress and not are_progress_bars_disabled():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            disable_progress_bars()
        muted = True
    lines: list[str] = []
    try:
        with _hub_messages(lines):
            yield lines
    finally:
        constants.HF_HUB_OFFLINE = saved
        if muted:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                enable_progress_bars()


# --------------------------------------------------------------------------------------------------
# Parsing --weights


def parse_hub_ref(text: str) -> HubRef:
    """``hf-hub:org/repo[/path/file.ext][@revision]`` or a Hub file URL (``.../org/repo/resolve/rev/file``)."""
    if text.startswith(HUB_PREFIX):
        rest = text[len(HUB_PREFIX) :].strip().strip("/")
        revision = None
        if "@" in rest:  # an empty one (hf-hub:org/repo@$REV, REV unset) would stand for the default, unsaid
            rest, revision = rest.rsplit("@", 1)
            problem = name_problem(revision, read=False, give=REVISION_NAMES + ", or no @")
            if problem is not None:
                raise WeightsOptionError(f"bad --weights {text!r}: revision {problem}")
        parts = [p for p in rest.split("/") if p]
        if len(parts) < 2:
            raise WeightsOptionError(f"bad --weights {text!r}: expected hf-hub:ORG/REPO[/FILE][@REVISION]")
        return HubRef("/".join(parts[:2]), "/".join(parts[2:]) or None, revision)

    url = urlsplit(text)
    endpoint = urlsplit(hub_endpoint())
    hub_hosts = {endpoint.netloc, "huggingface.co", "hf.co"}
    parts = [unquote(p) for p in url.path.strip("/").split("/")]
    if url.netloc in hub_hosts and len(parts) >= 5 and parts[2] in ("resolve", "blob"):
        problem = name_problem(parts[3], read=False, give=REVISION_NAMES)  # (.../resolve//FILE)
        if problem is not None:
            raise WeightsOptionError(f"bad --weights {text!r}: revision {problem}")
        return HubRef("/".join(parts[:2]), "/".join(parts[4:]), parts[3])
    raise WeightsOptionError(
        f"unsupported --weights URL {text!r}: only Hub file URLs ({hub_endpoint()}/ORG/REPO/resolve/REVISION/FILE) "
        "and hf-hub:ORG/REPO[/FILE][@REVISION] are fetched; download the file and pass its path"
    )


def _is_remote(text: str) -> bool:
    return text.startswith(HUB_PREFIX) or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text) is not None


def in_hub_cache(path: Path) -> bool:
    """Whether ``path`` lies in the Hugging Face cache: a file fetched from the network."""
    try:
        return Path(path).resolve().is_relative_to(hub_cache_dir().resolve())
    except OSError:
        return False


def check_trustable(source: str) -> None:
    """Raises the usage error for unpickling ``source`` with its code run (``--trust-checkpoint``) where
    it is not a local file the user has: a Hub reference or URL, or a file in the Hub cache. Whoever
    publishes a file could put code in it; only a file the user vouches for may run any."""
    why = None
    if _is_remote(source):
        why = "it names a file on the network"
    elif in_hub_cache(Path(source)):
        why = f"it is in the Hugging Face cache ({hub_cache_dir()}), fetched from the network"
    if why:
        raise WeightsOptionError(f"--trust-checkpoint {source}: {why}; ssmzoo unpickles such files only with "
                                 "torch.load(weights_only=True). The option is for a local file you trust")


# --------------------------------------------------------------------------------------------------
# Picking a file from a repo


def choose_weights_file(
    files: list[str], pattern: Optional[str], where: str, repo_id: str = "ORG/REPO", *, local_weights: bool = True
) -> tuple[str, str]:
    """Pick the checkpoint among a repo's files: the pattern narrows, then safetensors > pth > pt > bin.

    Returns (filename, note). Two candidates of the best kind are an error: guessing would load the
    wrong variant silently. ``local_weights``: see :func:`resolve_weights`.
    """
    candidates = [f for f in files if f.lower().endswith(WEIGHT_EXTENSIONS)]
    if pattern:
        candidates = [
            f for f in candidates if fnmatch.fnmatch(f, pattern) or fnmatch.fnmatch(f.rsplit("/", 1)[-1], pattern)
        ]
    if not candidates:
        narrowed = f" matching {pattern!r}" if pattern else ""
        raise WeightsError(
            f"{where} has no weights file{narrowed} (looked for {', '.join(WEIGHT_EXTENSIONS)} among "
            f"{len(files)} files); "
            f"set filename in the manifest or {_weights_hint(local_weights)}"
        )
    rank = lambda f: next(i for i, ext in enumerate(WEIGHT_EXTENSIONS) if f.lower().endswith(ext))  # noqa: E731
    best_rank = min(rank(f) for f in candidates)
    best = sorted(f for f in candidates if rank(f) == best_rank)
    if len(best) > 1:
        shown = ", ".join(best[:5]) + (", …" if len(best) > 5 else "")
        raise WeightsError(
            f"{where} has {len(best)} candidate weights files ({shown}); set filename or filename_pattern in the "
            f"manifest, or pass --weights hf-hub:{repo_id}/FILE"
        )
    others = len(candidates) - 1
    note = f"picked {best[0]!r} from {where}"
    if others:
        note += f" (preferred over {others} other weights file{'s' * (others != 1)})"
    return best[0], note


def _cached_files(cache_dir: Path, repo_id: str, revision: str) -> tuple[Optional[str], list[str]]:
    """(commit, files) of a repo revision present in the local cache, without the network."""
    repo_dir = cache_dir / ("models--" + repo_id.replace("/", "--"))
    commit: Optional[str] = revision if _COMMIT_RE.match(revision) else None
    ref = repo_dir / "refs" / revision
    if commit is None and ref.is_file():
        commit = ref.read_text().strip()
    if commit is None:
        return None, []
    snap = repo_dir / "snapshots" / commit
    if not snap.is_dir():
        return commit, []
    files = sorted(p.relative_to(snap).as_posix() for p in snap.rglob("*") if p.is_file())
    return commit, files


# --------------------------------------------------------------------------------------------------
# Errors


def _short(exc: BaseException, limit: int = 160) -> str:
    return in_brief(str(exc), limit) or type(exc).__name__


def _root_cause(exc: BaseException) -> BaseException:
    *_, last = _chain(exc)
    return last


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, then what it was raised from or while handling, outermost first."""
    seen: set[int] = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


# How using a folder fails; the last three carry no file name when a write raises them.
_FOLDER_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.ENOSPC, errno.EDQUOT}
_UNNAMED_FOLDER_ERRNOS = {errno.EROFS, errno.ENOSPC, errno.EDQUOT}


@dataclass(frozen=True)
class _HfFolder:
    path: Path
    variable: str  # the environment variable that names it: "HF_HUB_CACHE" or "HF_HOME"


def _related(path: str, folder: Path) -> bool:
    """Whether ``path`` is ``folder``, inside it, or one of the folders above it (created on the way)."""
    p, f = os.path.abspath(path), os.path.abspath(folder)
    return p == f or p.startswith(f + os.sep) or f.startswith(p.rstrip(os.sep) + os.sep)


def _unusable_hf_folder(exc: BaseException, cache_dir: Path) -> Optional[_HfFolder]:
    """The Hugging Face folder an OSError is about: huggingface_hub creates the cache's folders, lock
    files and blobs, and reads the token from its home. Told by errno and, where the exception names
    one, its file: a refused connection is an OSError too, and must stay a network error."""
    if not isinstance(exc, OSError) or exc.errno not in _FOLDER_ERRNOS:
        return None
    cache = _HfFolder(cache_dir, "HF_HUB_CACHE")
    name = _filename(exc)
    if name is None:
        return cache if exc.errno in _UNNAMED_FOLDER_ERRNOS else None  # a download writes nowhere else
    if _related(name, cache_dir):
        return cache
    home = _hf_home_dir()
    return _HfFolder(home, "HF_HOME") if _related(name, home) else None


def _filename(exc: OSError) -> Optional[str]:
    """The path an OSError names, if it names one (not a file descriptor)."""
    name = exc.filename
    return os.fsdecode(name) if isinstance(name, (str, bytes, os.PathLike)) else None


def _folder_failure(exc: BaseException, cache_dir: Path) -> Optional[tuple[OSError, _HfFolder]]:
    """The first exception in ``exc``'s chain that is about a Hugging Face folder, and that folder."""
    for link in _chain(exc):
        folder = _unusable_hf_folder(link, cache_dir)
        if folder is not None:
            return link, folder  # type: ignore[return-value]
    return None


def _unusable_folder_message(exc: OSError, folder: _HfFolder, purpose: str, verb: str = "write") -> str:
    """One line naming the folder, why it cannot be used (to ``purpose``, e.g. "download ORG/REPO@REV/FILE"),
    and what to do instead."""
    name = _filename(exc)
    filename = Path(name) if name is not None else None
    reason = exc.strerror or type(exc).__name__
    if folder.variable == "HF_HUB_CACHE":
        head = f"cannot {verb} the Hugging Face cache folder {folder.path}"
    else:  # the token is read from there, and the cache is made there unless HF_HUB_CACHE says otherwise
        head = f"cannot use the Hugging Face home folder {folder.path} (HF_HOME)"
    elsewhere = f"set {folder.variable} to a writable folder"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"{head} ({reason}) to {purpose}; free space there, or set {folder.variable} to a folder on "
                "a disk with room")
    in_the_way = None
    if filename is not None and exc.errno in (errno.ENOTDIR, errno.EEXIST):
        in_the_way = file_in_the_way(filename)
    if in_the_way is not None:
        inside = os.path.abspath(in_the_way).startswith(os.path.abspath(folder.path) + os.sep)
        action = f"remove it or {elsewhere}" if inside else elsewhere  # a stray file inside the cache
        return f"{head} to {purpose}: {in_the_way} is a file, not a folder; {action}"
    named = filename is not None and os.path.abspath(filename) != os.path.abspath(folder.path)
    return f"{head} ({reason}{f': {filename}' if named else ''}) to {purpose}; {elsewhere}"


def _check_cache_is_a_folder(model: str, cache_dir: Path, what: str, listing: bool) -> None:
    """Fails where the cache folder is a file or lies under one: such a cache holds nothing, so without
    the Hub the error was "not in the local cache", with the advice to copy a repo folder to a place
    that cannot exist. (Where the Hub answers, huggingface_hub's failed folder names it the same way.)"""
    in_the_way = file_in_the_way(cache_dir)
    if in_the_way is None:
        return
    blocked = NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(cache_dir))
    purpose = f"list the files of {what}" if listing else f"download {what}"
    message = _unusable_folder_message(blocked, _HfFolder(cache_dir, "HF_HUB_CACHE"), purpose)
    raise WeightsError(f"model {model!r}: {message}")


def _unreachable_error(head: str, endpoint: str, what: str, cache_dir: Path, reason: str,
                       local_copy: str) -> WeightsError:
    return WeightsError(
        f"{head}cannot reach {endpoint} ({reason}) to download {what}, and it is not in the local cache "
        f"({cache_dir}); check the network, set HF_ENDPOINT to a reachable Hub mirror, or {local_copy}"
    )


def _hub_error(exc: Exception, *, model: str, repo_id: str, revision: str, filename: Optional[str],
               endpoint: str, offline: bool, cache_dir: Path, local_weights: bool = True,
               file_from_weights: bool = False) -> WeightsError:
    """One line for a failed Hub call (``file_from_weights``: the file name came from --weights)."""
    from huggingface_hub import utils as hf_utils

    what = f"{repo_id}@{revision}" + (f"/{filename}" if filename else "")
    head = f"model {model!r}: "
    local_copy, weights_hint = _local_copy_hint(local_weights, repo_id, cache_dir), _weights_hint(local_weights)
    gated = getattr(hf_utils, "GatedRepoError", ())
    repo_nf = getattr(hf_utils, "RepositoryNotFoundError", ())
    rev_nf = getattr(hf_utils, "RevisionNotFoundError", ())
    entry_nf = getattr(hf_utils, "RemoteEntryNotFoundError", None) or getattr(hf_utils, "EntryNotFoundError", ())
    local_nf = getattr(hf_utils, "LocalEntryNotFoundError", ())
    http_err = getattr(hf_utils, "HfHubHTTPError", ())
    validation = getattr(hf_utils, "HFValidationError", ())

    failure = None if isinstance(exc, http_err) else _folder_failure(exc, cache_dir)
    if failure is not None:
        failed, folder = failure
        # huggingface_hub notes a 404 in the cache too: when that write fails, the Hub's answer is the news
        answer = next((e for e in _chain(failed) if isinstance(e, http_err)), None)
        if answer is None:
            purpose = f"download {what}" if filename else f"list the files of {what}"
            return WeightsError(head + _unusable_folder_message(failed, folder, purpose))
        exc = answer  # type: ignore[assignment]
    if isinstance(exc, local_nf):
        if offline:
            return WeightsError(
                f"{head}{what} is not in the local cache ({cache_dir}) and HF_HUB_OFFLINE is set; unset "
                f"HF_HUB_OFFLINE to download it, or {local_copy}"
            )
        return _unreachable_error(head, endpoint, what, cache_dir, _short(_root_cause(exc), 100), local_copy)
    if isinstance(exc, gated):
        return WeightsError(
            f"{head}{repo_id} on {endpoint} is gated; accept its conditions on the repo page and set HF_TOKEN "
            "(or log in with `hf auth login`)"
        )
    if isinstance(exc, repo_nf):
        return WeightsError(
            f"{head}weights repo {repo_id!r} not found on {endpoint} (404; a private repo needs HF_TOKEN); check "
            f"repo_id in the manifest or {weights_hint}"
        )
    if isinstance(exc, rev_nf):
        return WeightsError(
            f"{head}revision {revision!r} not found in {repo_id} on {endpoint}; use an existing branch, tag or "
            "commit (e.g. --revision main)"
        )
    if isinstance(exc, entry_nf):
        return WeightsError(
            f"{head}file {filename!r} not found in {repo_id}@{revision} on {endpoint}; "
            + ("check the file name in --weights (or leave it out to pick the repo's weights file)"
               if file_from_weights else
               f"check filename in the manifest or pass --weights hf-hub:{repo_id}/FILE")
        )
    if isinstance(exc, validation):
        return WeightsError(f"{head}invalid Hub reference {what!r} ({_short(exc)})")
    message = str(exc)
    sizes = re.search(r"should be of size (\d+) but has size (\d+)", message)
    if sizes:
        return WeightsError(
            f"{head}download of {what} from {endpoint} was truncated (got {sizes.group(2)} of {sizes.group(1)} "
            "bytes); the partial file was discarded, run again (and check the network or proxy if it repeats)"
        )
    if isinstance(exc, http_err):
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        return WeightsError(
            f"{head}HTTP {status} from {endpoint} while fetching {what}; try again later or {weights_hint}"
        )
    cause = _root_cause(exc)
    if _is_connection_problem(exc) or _is_connection_problem(cause):
        action = "download" if filename else "list the files of"
        return WeightsError(
            f"{head}cannot reach {endpoint} to {action} {what} [{_short(cause, 100)}]; check the network, set "
            f"HF_ENDPOINT to a reachable Hub mirror, or {local_copy}"
        )
    return WeightsError(
        f"{head}download of {what} from {endpoint} failed ({type(cause).__name__}: {_short(cause, 120)}); run again, "
        f"check the network or HF_ENDPOINT, or {weights_hint}"
    )


def _is_connection_problem(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    return isinstance(exc, (ConnectionError, TimeoutError)) or any(
        n in names for n in ("ConnectError", "TimeoutException", "NetworkError", "ConnectionError", "Timeout")
    )


def _delete_cached(path: Path) -> bool:
    """Remove a cached snapshot file and the blob it points to; True when nothing is left behind."""
    ok = True
    targets = [path.resolve(), path] if path.is_symlink() else [path]
    for target in targets:
        try:
            target.unlink(missing_ok=True)
        except OSError:
            ok = False
    return ok


# --------------------------------------------------------------------------------------------------
# Resolution


_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def _probe_endpoint(endpoint: str, timeout: float = 3.0) -> Optional[str]:
    """None if the Hub's host accepts a TCP connection, else why not.

    Without it, a machine with no network waits ~25 s while huggingface_hub retries (and prints each
    retry) before the cache is even consulted. Behind a proxy the host is not ours to probe: say yes.
    """
    if any(os.environ.get(v) for v in _PROXY_VARS):
        return None
    parts = urlsplit(endpoint)
    if not parts.hostname:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as exc:
        return _short(exc, 80)
    return None


@dataclass(frozen=True)
class _Fetched:
    path: Path
    filename: str
    commit: Optional[str]
    note: Optional[str]
    checked_sha256: Optional[str]
    checked_against: Optional[str]
    cached: bool
    size: int  # bytes
    hub_messages: tuple[str, ...] = ()  # what huggingface_hub logged or warned, one line each


def _cache_state(cache_dir: Path, repo_id: str, filename: str) -> tuple[set[str], set[Path]]:
    """(blob names, snapshot files named ``filename``) of a repo in the cache: what a download would reuse."""
    repo_dir = cache_dir / ("models--" + repo_id.replace("/", "--"))
    blobs, snapshots = repo_dir / "blobs", repo_dir / "snapshots"
    try:
        names = {p.name for p in blobs.iterdir()} if blobs.is_dir() else set()
        commits = list(snapshots.iterdir()) if snapshots.is_dir() else []
        pointers = {d / filename for d in commits if (d / filename).exists()}
    except OSError:
        return set(), set()
    return names, pointers


def _fetch_from_hub(
    model_name: str,
    repo_id: str,
    filename: Optional[str],
    pattern: Optional[str],
    revision: str,
    sha256: Optional[str],
    progress: bool,
    local_weights: bool = True,
    refetch: bool = True,
    file_from_weights: bool = False,
) -> _Fetched:
    """Download (or find in the cache) one file and check its sha256 where one is known. A damaged
    cached copy is deleted and, where the Hub can be reached (and ``refetch``), fetched once afresh."""
    from huggingface_hub import HfApi, hf_hub_download

    endpoint, offline, cache_dir = hub_endpoint(), hub_offline(), hub_cache_dir()
    probe_failure = None if offline else _probe_endpoint(endpoint)
    local_only = offline or probe_failure is not None
    if local_only:  # (with the Hub, its answer comes first: a missing file is the news, then the folder's failure)
        _check_cache_is_a_folder(model_name, cache_dir, f"{repo_id}@{revision}" + (f"/{filename}" if filename else ""),
                                 listing=filename is None)
    local_copy = _local_copy_hint(local_weights, repo_id, cache_dir)
    note = None
    listing_unreachable = False  # the Hub answered the probe but not the listing: the cache's files were used

    def fail(exc: Exception, name: Optional[str]) -> WeightsError:
        if probe_failure is not None:
            what = f"{repo_id}@{revision}" + (f"/{name}" if name else "")
            return _unreachable_error(f"model {model_name!r}: ", endpoint, what, cache_dir, probe_failure, local_copy)
        return _hub_error(exc, model=model_name, repo_id=repo_id, revision=revision, filename=name,
                          endpoint=endpoint, offline=offline, cache_dir=cache_dir, local_weights=local_weights,
                          file_from_weights=file_from_weights)

    with _hub_call(local_only, progress) as hub_said:
        if filename is None:
            where = f"{repo_id}@{revision}"
            try:
                _, cached = _cached_files(cache_dir, repo_id, revision)
            except OSError as exc:
                failure = _folder_failure(exc, cache_dir)
                if failure is None:
                    raise WeightsError(f"model {model_name!r}: cannot read the Hugging Face cache folder {cache_dir} "
                                       f"({exc.strerror or exc})") from None
                message = _unusable_folder_message(*failure, f"list the files of {where}", verb="read")
                raise WeightsError(f"model {model_name!r}: {message}") from None
            if local_only:
                if not cached and offline:
                    raise WeightsError(
                        f"model {model_name!r}: HF_HUB_OFFLINE is set and no file of {where} is in the local cache "
                        f"({cache_dir}); unset HF_HUB_OFFLINE to download it, or {local_copy}"
                    )
                if not cached:
                    raise fail(ConnectionError(probe_failure), None)
                state = "offline" if offline else f"{endpoint} unreachable"
                files, where = cached, where + f" (local cache, {state})"
            else:
                try:
                    files = HfApi(endpoint=endpoint).list_repo_files(repo_id, revision=revision)
                except Exception as exc:  # noqa: BLE001 - mapped to one line below
                    unreachable = _is_connection_problem(exc) or _is_connection_problem(_root_cause(exc))
                    if not (unreachable and cached):
                        raise fail(exc, None) from exc
                    # Like huggingface_hub for a named file: when the Hub cannot be reached, use the cache.
                    files, where = cached, where + f" (local cache, {endpoint} unreachable)"
                    listing_unreachable = True
            try:
                filename, note = choose_weights_file(list(files), pattern, where, repo_id,
                                                     local_weights=local_weights)
            except WeightsError as exc:
                raise WeightsError(f"model {model_name!r}: {exc}") from None
        blobs_before, pointers_before = _cache_state(cache_dir, repo_id, filename)
        try:
            local = hf_hub_download(
                repo_id,
                filename,
                revision=revision,
                cache_dir=str(cache_dir),
                endpoint=endpoint,
                local_files_only=local_only,
            )
        except Exception as exc:  # noqa: BLE001 - mapped to one line below
            raise fail(exc, filename) from exc

    path = Path(local)
    blob_name = path.resolve().name
    # hf_hub_download reuses a blob (or snapshot file) that is already there instead of downloading it
    cached = local_only or path in pointers_before or blob_name in blobs_before
    # Cache layout: .../snapshots/<commit>/<filename>
    snapshot = path.parents[len(Path(filename).parts) - 1]
    commit = snapshot.name if snapshot.parent.name == "snapshots" else None

    # The manifest's checksum pins the content; without one, an LFS blob is named by its sha256 on
    # the Hub, which still catches a corrupted or tampered cache entry.
    what = f"{repo_id}@{revision}/{filename}"
    expected, against = (sha256.lower(), "manifest") if sha256 else (
        (blob_name, "hub") if _SHA256_RE.match(blob_name) else (None, None)
    )
    if expected:
        from .checkpoint_files import sha256_file

        got = sha256_file(path)
        if got != expected:
            if got == blob_name:  # the file is intact (an LFS blob is named by its sha256): the pin differs
                raise WeightsError(
                    f"model {model_name!r}: {what} on the Hub (sha256 {got}) is not the file the manifest pins "
                    f"(sha256 {expected}): the Hub file changed; pin the revision that has it (--revision) or "
                    f"update sha256 in the manifest; the file stays in the cache at {path}"
                )
            removed = _delete_cached(path)
            if removed and cached and refetch and not local_only:  # a damaged copy: fetch it afresh, once
                return _fetch_from_hub(model_name, repo_id, filename, None, revision, sha256, progress,
                                       local_weights, refetch=False, file_from_weights=file_from_weights)
            if not removed:
                fate = f"remove {path.resolve()} and run again"
            elif offline:
                fate = "the cached file was deleted; unset HF_HUB_OFFLINE and run again to download it afresh"
            elif local_only:
                fate = f"the cached file was deleted; run again when {endpoint} can be reached to download it afresh"
            else:  # a fresh download (a damaged cached copy was fetched afresh above)
                fate = "the downloaded file was deleted; run again to download it afresh"
            if sha256:
                fate += "; if it repeats, the Hub file changed: pin a revision or update sha256 in the manifest"
            raise WeightsError(
                f"model {model_name!r}: sha256 mismatch for {what} against "
                f"{_CHECKED_AGAINST[against]}: expected {expected}, got {got}; {fate}"
            )
    size = _check_layout(model_name, what, path, cached=cached, checksummed=bool(expected))
    if cached and against != "manifest" and (probe_failure is not None or listing_unreachable):
        note = "; ".join(filter(None, [note, _unverified_note(endpoint, against)]))
    return _Fetched(path, filename, commit, note, expected, against, cached, size, _counted(hub_said))


def _unverified_note(endpoint: str, against: Optional[str]) -> str:
    """What a cached copy used while the Hub cannot be reached leaves unchecked (the manifest's sha256 pins
    the content, so none of this is said then)."""
    if against == "hub":  # the blob's name: the sha256 the Hub published when the file was fetched
        return (f"Hub unreachable ({endpoint}): the cached copy matches the sha256 the Hub published when it was "
                "fetched, but whether the Hub has a newer one was not checked: it may be stale")
    return (f"Hub unreachable ({endpoint}): the cached copy was not verified against the Hub's checksum and may "
            "be stale")


def _counted(lines: list[str]) -> tuple[str, ...]:
    """Each distinct line once, in order, with how often it came where it repeated (retries)."""
    return tuple(line + (f" ({n} times)" if n > 1 else "") for line, n in Counter(lines).items())


def _check_layout(model_name: str, what: str, path: Path, *, cached: bool, checksummed: bool) -> int:
    """The file's size; raises when the file cannot be a checkpoint (an error page, a cut-off file), so
    that `download` says so now rather than a model's first load later. The file stays: the cache is
    huggingface_hub's, and a file whose sha256 is the Hub's would only be fetched again as it is."""
    from .checkpoint_files import checkpoint_problem

    try:
        problem = checkpoint_problem(path)
        size = path.stat().st_size
    except OSError as exc:
        raise WeightsError(f"model {model_name!r}: cannot read {path}: {exc.strerror or exc}") from None
    if problem is None:
        return size
    which = "the cached copy of" if cached else "downloaded"
    fate = f"it stays in the cache at {path}"
    if cached and not checksummed:  # never compared with the Hub's: the damage may be local
        fate += " (if only that copy is damaged, delete it and run again)"
    raise WeightsError(
        f"model {model_name!r}: {which} {what} ({count(size, 'byte')}) is not a checkpoint: {problem}; "
        f"the Hub file may be broken: pin another --revision or report it to the repo's owners; {fate}"
    )


def _resolve_local(override: str) -> ResolvedWeights:
    """A local ``--weights`` file, checked as reading it would check it (the same one-line errors as
    ``convert``'s): by its content, not its name's suffix."""
    path = Path(os.path.expanduser(override))
    if not path.exists():
        hint = ""
        if re.fullmatch(r"[\w.-]+/[\w.-]+", override) and not override.lower().endswith(_LOCAL_EXTENSIONS):
            hint = f" (for a Hub repo write --weights hf-hub:{override})"
        raise WeightsOptionError(f"{override}: {missing_file(path)}{hint}")
    if not path.is_file():
        raise WeightsOptionError(f"--weights {path} is not a file; {_WEIGHTS_HINT}")
    from .checkpoint_files import check_checkpoint_file

    check_checkpoint_file(path)
    path = path.resolve()
    return ResolvedWeights(path=path, origin=f"local:{path}", filename=path.name, size=path.stat().st_size)


def check_weights_request(
    model_name: str,
    source: Optional[WeightsSource],
    *,
    override: Optional[str] = None,
    revision: Optional[str] = None,
    local_weights: bool = True,
) -> None:
    """Raises the :class:`WeightsOptionError` that :func:`resolve_weights` would (a bad ``--weights``,
    ``--weights``/``--revision`` naming two revisions, a model with no published weights and no
    ``--weights``) without the network, so a command can check every model before fetching any. An
    empty ``override`` or ``revision`` (``--weights "$CKPT"`` with CKPT unset) is refused, never taken as
    not given: that would load the manifest's weights instead of the user's, unsaid."""
    for option, value, give in (("--weights", override, "a path" if local_weights else HUB_REF),
                                ("--revision", revision, REVISION_NAMES)):
        problem = None if value is None else name_problem(value, read=False, give=give)
        if problem is not None:
            raise WeightsOptionError(f"{option} {problem}")
    if override is not None:
        if not _is_remote(override):
            if not local_weights:
                raise WeightsOptionError(f"--weights {override}: a local file needs no download; this option takes "
                                         "hf-hub:org/repo[/file][@rev]")
            if revision:  # it would be ignored, unsaid
                raise WeightsOptionError(f"--revision {revision} picks a version of Hub weights; --weights {override} "
                                         "is a local file: drop one of them")
            _resolve_local(override)
            return
        ref = parse_hub_ref(override)
        if ref.revision and revision and ref.revision != revision:
            raise WeightsOptionError(
                f"--weights {override!r} names revision {ref.revision!r} but --revision is {revision!r}; give only one"
            )
    elif source is None:
        nothing = "" if local_weights else ", so there is nothing to download"
        raise WeightsOptionError(f"model {model_name!r} has no published weights{nothing}; "
                                 f"{_weights_hint(local_weights)}")


def resolve_weights(
    model_name: str,
    source: Optional[WeightsSource],
    *,
    override: Optional[str] = None,
    revision: Optional[str] = None,
    progress: bool = True,
    local_weights: bool = True,
) -> ResolvedWeights:
    """Find the checkpoint for ``model_name`` on disk, downloading it from the Hub if needed.

    ``override`` is the CLI's ``--weights``: a local file, ``hf-hub:org/repo[/file][@rev]`` or a Hub
    file URL. ``revision`` (``--revision``) replaces the manifest's. The manifest's sha256 and
    state-dict key apply only when the very same file (repo, name, revision) is fetched.
    ``local_weights``: whether the calling command takes ``--weights PATH`` (``download`` does not:
    it only fills the Hub cache), so that error messages suggest what works there.
    """
    check_weights_request(model_name, source, override=override, revision=revision, local_weights=local_weights)
    if override is not None:
        if not _is_remote(override):
            return _resolve_local(override)
        ref = parse_hub_ref(override)
        same_repo = source is not None and source.repo_id == ref.repo_id
        rev = ref.revision or revision or (source.revision if same_repo else "main")
        filename = ref.filename or (source.filename if same_repo else None)
        pattern = source.filename_pattern if same_repo and filename is None else None
    else:
        same_repo = True
        rev = revision or source.revision
        filename, pattern = source.filename, source.filename_pattern

    repo_id = ref.repo_id if override is not None else source.repo_id  # type: ignore[union-attr]
    pinned = (
        source is not None
        and same_repo
        and source.filename is not None
        and filename == source.filename
        and rev == source.revision
    )
    sha256 = source.sha256 if pinned else None
    fetched = _fetch_from_hub(model_name, repo_id, filename, pattern, rev, sha256, progress, local_weights,
                              file_from_weights=bool(override and ref.filename))
    filename = fetched.filename
    same_file = source is not None and same_repo and (source.filename in (None, filename))
    return ResolvedWeights(
        path=fetched.path,
        origin=f"{HUB_PREFIX}{repo_id}@{rev}/{filename}",
        filename=filename,
        sha256=sha256,
        state_dict_key=source.state_dict_key if same_file else None,
        format=source.format if same_file else "auto",
        commit=fetched.commit,
        note=fetched.note,
        repo_id=repo_id,
        revision=rev,
        size=fetched.size,
        checked_sha256=fetched.checked_sha256,
        checked_against=fetched.checked_against,
        cached=fetched.cached,
        hub_messages=fetched.hub_messages,
    )


def is_cached(source: WeightsSource, *, revision: Optional[str] = None) -> bool:
    """Whether the source's file is already in the local Hub cache (no network)."""
    return cached_weights_file(source, revision=revision) is not None


def cached_weights_file(source: WeightsSource, *, revision: Optional[str] = None) -> Optional[Path]:
    """The source's file in the local Hub cache, or None where it is not there (no network)."""
    rev = revision or source.revision
    cache_dir = hub_cache_dir()
    filename = source.filename
    if filename is None:
        try:
            _, files = _cached_files(cache_dir, source.repo_id, rev)
        except OSError:  # an unreadable cache holds nothing usable
            return None
        try:
            filename, _ = choose_weights_file(files, source.filename_pattern, source.repo_id, source.repo_id)
        except WeightsError:
            return None
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(source.repo_id, filename, cache_dir=str(cache_dir), revision=rev)
    except Exception:  # noqa: BLE001 - a malformed name simply is not cached
        return None
    return Path(found) if isinstance(found, str) and os.path.isfile(found) else None
