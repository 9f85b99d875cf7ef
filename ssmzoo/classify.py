"""Top-k classification of image and video files with one model."""

from __future__ import annotations

import glob
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple, Optional

import torch

from .errors import InputError
from .factory import LoadedModel, autocast
from .images import eval_transform, image_suffixes, load_image, out_of_memory
from .inference import hearing_blocks
from .labels import class_ids, class_names
from .paths import NO_SUCH_FILE, check_name, file_problem, files_below, special_file
from .text import count, one_line
from .video import VIDEO_SUFFIXES


@dataclass
class Label:
    index: int
    label: str
    class_id: str
    probability: float


@dataclass
class ClassifyResult:
    input: str
    kind: str
    top: list[Label] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def failed(cls, path: str, error: str) -> "ClassifyResult":
        return cls(path, media_kind(path), error=error)


@dataclass(frozen=True)
class VideoStep:
    """Where one video's classification stands, for a progress display: decoding (nothing in the model
    yet), or ``batch`` views in the model after ``done`` others, ``layer`` of its ``layers`` blocks passed
    (0 of 0 where the model has no list of blocks to count). A video's views go through the model
    ``batch_size`` at a time, often all in one forward pass that takes minutes on a CPU: its blocks are
    what moves meanwhile."""

    path: str
    views: int
    done: int = 0
    batch: int = 0
    layer: int = 0
    layers: int = 0

    @property
    def fraction(self) -> float:
        """The share of the video's views through the model, counting a batch's part by its blocks."""
        part = self.batch * self.layer / self.layers if self.layers else 0.0
        return (self.done + part) / self.views

    def __str__(self) -> str:
        name = one_line(Path(self.path).name, limit=40)
        if not self.batch:
            return f"{name}: {count(self.views, 'view')} done" if self.done else \
                f"{name}: decoding frames for {count(self.views, 'view')}"
        first, last = self.done + 1, self.done + self.batch
        views = f"view {first}/{self.views}" if first == last else f"views {first}-{last}/{self.views}"
        return f"{name}: {views}" + (f", layer {self.layer}/{self.layers}" if self.layers else "")


VideoHook = Callable[[VideoStep], None]


def media_kind(path: str | Path) -> str:
    return "video" if Path(path).suffix.lower() in VIDEO_SUFFIXES else "image"


def content_kind(path: str | Path) -> Optional[str]:
    """"image" or "video" by what the file holds (Pillow reads its header, or ffmpeg finds a video
    stream), None for neither: a file named like the other kind is judged by this."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    if file_problem(path) is not None:  # missing, or a pipe that opening could wait on forever
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path):
                return "image"
    except Image.DecompressionBombError:
        return "image"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        pass
    from .video import is_video_file

    return "video" if is_video_file(path) else None


def _neither(path: str, otherwise: InputError) -> InputError:
    """Why a file that is neither an image nor a video cannot be classified: a media file without a video
    stream (an audio-only .mp4), and a file named or built like a video (an empty or truncated .mp4), in
    the video reader's own words, whichever model met it; else ``otherwise``."""
    from .video import NoVideoStream, looks_like_video, video_error

    error = video_error(path)
    if error is not None and (isinstance(error, NoVideoStream) or looks_like_video(path)):
        return error
    return otherwise


class InputEntry(tuple):
    """An ``expand_inputs`` entry: a ``(path, error)`` pair (it unpacks and compares as one) that also
    says where it came from, for ``duplicates_note``: ``via`` is ``"folder"`` or ``"glob"`` for a file
    found in the folder or by the pattern ``given``, ``""`` for an input named directly (``given`` is
    then the path itself)."""

    given: str
    via: str

    def __new__(cls, path: str, error: Optional[str], given: Optional[str] = None, via: str = "") -> "InputEntry":
        entry = super().__new__(cls, (path, error))
        entry.given = path if given is None or given == path else given
        entry.via = via if entry.given != path else ""
        return entry

    def __getnewargs__(self) -> tuple:  # pickle and copy: tuple's would give the pair as one argument
        return (self[0], self[1], self.given, self.via)


def expand_inputs(specs: Iterable[str], notes: Optional[list[str]] = None) -> list[tuple[str, Optional[str]]]:
    """Files, directories (their media files, recursively, sorted; hidden files and folders left out,
    as ``ls`` and glob do) and globs, in the order given.

    Returns (path, error) pairs (``InputEntry``, which also says which input each came from): a spec that names nothing, a folder that cannot be read and a broken
    link become entries with their error, so they are reported with the others instead of stopping
    the run or vanishing from it. A directory's other files (no image or video suffix) are left out;
    ``notes``, where given, gets a line for each directory that had some, so none is left out unsaid.
    """
    specs = list(specs)
    check_input_names(specs)
    found: list[tuple[str, Optional[str]]] = []
    for spec in specs:
        path = Path(spec)
        try:
            if path.is_dir():
                found.extend(InputEntry(p, error, spec, "folder") for p, error in _folder_entries(spec, notes))
            elif path.exists() or os.path.lexists(spec):
                found.append(InputEntry(spec, None))
            elif glob.has_magic(spec):
                matches = _once_each([m for m in _glob(spec) if Path(m).is_file()])
                if not matches:
                    found.append(InputEntry(spec, f"{spec}: no file matches this pattern"))
                found.extend(InputEntry(m, None, spec, "glob") for m in matches)
            else:
                found.append(InputEntry(spec, f"{spec}: {NO_SUCH_FILE}"))
        except OSError as exc:  # a folder on the way that cannot be searched
            found.append(InputEntry(spec, f"{spec}: cannot read it ({exc.strerror or exc})"))
    return found


def check_input_names(specs: Iterable[str]) -> None:
    """Refuses, before anything is read, an input that names no file (``paths.name_problem``: an empty
    name, or ``-`` where no file is named so). A :class:`UsageError`."""
    for spec in specs:
        check_name(spec)


class Repeat(NamedTuple):
    """An input ``drop_duplicates`` left out: its path, the path of the same file kept, and where it
    came from (``InputEntry``'s ``given`` and ``via``)."""
    path: str
    kept: str
    given: str
    via: str = ""


def drop_duplicates(items: list[tuple[str, Optional[str]]]
                    ) -> tuple[list[tuple[str, Optional[str]]], list[Repeat]]:
    """``expand_inputs``' entries with each file kept once, at its first occurrence, and a ``Repeat``
    for each one left out: a file named twice, given directly and through its folder or a glob, or
    spelt two ways (``a.jpg``, ``./a.jpg``, a link to it) would otherwise be classified twice. Files are
    the same when the system says so (device and inode, as ``os.path.samefile``); an entry that cannot
    be looked up (a missing file, a pattern that matched nothing) by its resolved path."""
    kept: list[tuple[str, Optional[str]]] = []
    dropped: list[tuple[str, str]] = []
    first: dict[tuple, str] = {}
    for item in items:
        path, error = item
        try:
            st = os.stat(path)
            key: tuple = ("file", st.st_dev, st.st_ino)
        except (OSError, ValueError):
            key = ("path", os.path.realpath(path))
        if key in first:
            dropped.append(Repeat(path, first[key], getattr(item, "given", path), getattr(item, "via", "")))
            continue
        first[key] = path
        kept.append(item)
    return kept, dropped


def duplicates_note(dropped: list[Repeat], shown: int = 3) -> str:
    """One line saying how many inputs repeated another, with the first few of them, each saying where
    it came from: ``a.jpg again``, ``./a.jpg = a.jpg``, ``d/a.jpg in folder d``, ``d/a.jpg from 'd/*.jpg'``;
    the repeats one folder or pattern gave are one clause (``4 files in folder d``)."""
    groups: dict[tuple[str, str], list[Repeat]] = {}  # (via, given) -> its repeats; a direct input alone
    for k, repeat in enumerate(dropped):
        groups.setdefault((repeat.via, repeat.given) if repeat.via else ("", str(k)), []).append(repeat)
    clauses: list[tuple[str, int]] = []  # (text, how many inputs it stands for)
    for (via, given), repeats in groups.items():
        where = f"in folder {given}" if via == "folder" else f"from {given!r}" if via == "glob" else ""
        path, kept = repeats[0].path, repeats[0].kept
        if len(repeats) > 1:
            text = f"{count(len(repeats), 'file')} {where}"
        elif where:
            text = f"{path} {where}" + (f" = {kept}" if path != kept else "")
        else:
            text = f"{path} = {kept}" if path != kept else f"{path} again"
        clauses.append((text, len(repeats)))
    left = len(dropped) - sum(n for _, n in clauses[:shown])
    more = f" and {left} more" if left else ""
    return (f"skipped {count(len(dropped), 'input')} naming a file already given: "
            f"{', '.join(text for text, _ in clauses[:shown])}{more} (each file is classified once)")


def _folder_entries(spec: str, notes: Optional[list[str]] = None) -> list[tuple[str, Optional[str]]]:
    """A folder's media files (by suffix: any Pillow decodes here, and the videos') as ``expand_inputs``
    entries, and an error entry for each subfolder that cannot be read and each link to nothing, which
    would otherwise drop out unseen; a line in ``notes`` counts its other files (pipes, sockets and
    devices among them, named: whatever their suffix, they are no file to read)."""
    listed, others, unreadable, special = files_below(Path(spec), image_suffixes().union(VIDEO_SUFFIXES),
                                                      follow_links=False)
    if (others or special) and notes is not None:  # a pipe named like an image is no file to read either
        why = [(others, "not an image or video by its suffix")] if others else []
        if special:
            more = f" and {len(special) - 1} more" if len(special) > 1 else ""
            why.append((len(special), f"not a regular file (a pipe, socket or device: {special[0]}{more})"))
        reasons = "; ".join(f"{n} {text}" if len(why) > 1 else text for n, text in why)
        notes.append(f"{spec}: {count(others + len(special), 'file')} ignored ({reasons})")
    entries: list[tuple[str, Optional[str]]] = [
        (str(exc.filename or spec), f"{exc.filename or spec}: cannot read this folder ({exc.strerror or exc})")
        for exc in unreadable]
    for p in listed:
        if p.is_file():
            entries.append((str(p), None))
        elif p.is_symlink() and not p.exists():
            entries.append((str(p), f"{p}: {file_problem(p)}"))
    if not entries:
        return [(spec, f"{spec}: directory holds no image or video files")]
    return sorted(entries, key=lambda entry: Path(entry[0]))


def _glob(spec: str) -> list[str]:
    """glob's matches, where ``**`` does not descend into links to folders (as bash's globstar): glob.glob
    follows them, and two links back up the tree make its walk grow without end (2^depth paths)."""
    parts = Path(spec).parts
    if "**" not in parts:
        return glob.glob(spec)
    fixed = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    anchor = Path(*parts[:fixed]) if fixed else Path(".")
    rest = parts[fixed:]
    hidden_ok = any(part.startswith(".") for part in rest)
    matches = []
    for match in anchor.glob(str(Path(*rest))):
        relative = match.relative_to(anchor).parts
        if hidden_ok or not any(part.startswith(".") for part in relative):  # glob leaves hidden entries out
            matches.append(str(match))
    return matches


def _once_each(paths: list[str]) -> list[str]:
    """Sorted, the first (shortest, then in sorted order) of the paths that reach one file: a pattern can
    match one file under two names where a link to a folder sits among the folders it matches
    (``*/x.jpg``; ``**`` itself does not descend into such links, see ``_glob``). Not ``drop_duplicates``,
    which keeps the first of the names the user gave, in their order, and says which it dropped: these
    names are the glob's, not the user's, so the one kept is the plainest and none is reported; and one
    file here is one real path, so hard links the pattern matches stay two entries for that note."""
    seen: set[str] = set()
    kept = []
    for p in sorted(paths, key=lambda p: (p.count(os.sep), p)):
        real = os.path.realpath(p)
        if real not in seen:
            seen.add(real)
            kept.append(p)
    return sorted(kept)


def _top_k(probs: torch.Tensor, k: int, label_set: str) -> list[Label]:
    names, ids = class_names(label_set), class_ids(label_set)
    values, indices = probs.float().topk(min(k, probs.numel()))
    return [Label(int(i), names[int(i)], ids[int(i)], round(float(v), 6)) for v, i in zip(values, indices)]


class Classifier:
    """Runs one loaded model over files; images are batched, a video's views are batched within the video."""

    def __init__(self, loaded: LoadedModel, top_k: int = 5, batch_size: int = 32,
                 views: Optional[tuple[int, int]] = None):
        self.loaded = loaded
        self.entry = loaded.entry
        self.top_k = top_k
        self.batch_size = max(1, batch_size)
        self.views = views
        self.transform = eval_transform(self.entry.data)

    @torch.inference_mode()
    def _probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.loaded.device, non_blocking=True)
        with autocast(self.loaded.device, self.loaded.dtype):
            logits = self.loaded.model(batch)
        return logits.float().softmax(dim=-1).cpu()

    def _result(self, path: str, kind: str, probs: torch.Tensor, notes: Optional[list[str]] = None) -> ClassifyResult:
        """The top-k of ``probs``, or a failure where they are not finite: a NaN's top-k is class 0 at
        "nan%", which reads like an answer (and is not valid JSON)."""
        if not bool(torch.isfinite(probs).all()):
            dtype = str(self.loaded.dtype).removeprefix("torch.")
            return ClassifyResult.failed(path, f"{path}: {self.entry.name}'s output for it is not finite (NaN or inf): "
                                               f"its weights are broken, or its activations overflow in {dtype}")
        return ClassifyResult(path, kind, _top_k(probs, self.top_k, self.entry.labels), notes or [])

    def _image_results(self, items: list[tuple[str, torch.Tensor]]) -> list[ClassifyResult]:
        probs = self._probabilities(torch.stack([t for _, t in items]))
        return [self._result(p, "image", pr) for (p, _), pr in zip(items, probs)]

    def _video_result(self, path: str, on_video: Optional[VideoHook] = None) -> ClassifyResult:
        from .video import VideoProtocol, load_video_views

        protocol = VideoProtocol(**asdict(self.entry.video))
        if on_video is not None:
            n_clips, n_crops = self.views or (protocol.clips, protocol.crops)
            on_video(VideoStep(path, n_clips * n_crops))
        clips = load_video_views(path, protocol, self.entry.data.mean, self.entry.data.std, views=self.views)
        # Views go through the model batch_size at a time: a long protocol (or --views) costs time, not memory.
        parts = clips.tensor.split(self.batch_size)
        if on_video is None:
            probs = torch.cat([self._probabilities(part) for part in parts]).mean(dim=0)
        else:
            probs = torch.cat(self._probabilities_saying(path, parts, on_video)).mean(dim=0)
        views = clips.tensor.shape[0]
        notes = list(clips.notes) + [f"{count(views, 'view')} averaged"] if views > 1 else list(clips.notes)
        return self._result(path, "video", probs, notes)

    def _probabilities_saying(self, path: str, parts: tuple[torch.Tensor, ...],
                              on_video: VideoHook) -> list[torch.Tensor]:
        """``_probabilities`` of each batch of a video's views, the same batches and numbers, with ``on_video``
        told as each batch passes each of the model's blocks (forward hooks, removed after each batch)."""
        views = sum(part.shape[0] for part in parts)
        probs: list[torch.Tensor] = []
        done = 0
        for part in parts:
            def heard(layer: int, layers: int, done: int = done, batch: int = part.shape[0]) -> None:
                on_video(VideoStep(path, views, done, batch, layer, layers))

            with hearing_blocks(self.loaded.model, heard) as layers:
                on_video(VideoStep(path, views, done, part.shape[0], 0, layers))
                probs.append(self._probabilities(part))
            done += part.shape[0]
        on_video(VideoStep(path, views, done))
        return probs

    def _kind_by_content(self, path: str) -> str:
        """The kind of an input whose name says it is not the model's kind: a renamed file of the
        model's kind runs, anything else is refused naming what the file really holds."""
        problem = file_problem(path)  # e.g. a dangling link, a pipe
        if problem is not None:
            raise InputError(f"{path}: {problem}")
        kind = content_kind(path)
        if kind == self._model_kind:
            return kind
        if kind is None:
            raise _neither(path, InputError(f"{path}: not an image or video file ssmzoo can read"))
        raise self._wrong_kind(path, kind)

    @property
    def _model_kind(self) -> str:
        return "video" if self.entry.is_video else "image"

    def _wrong_kind(self, path: str, kind: str) -> InputError:
        article = {"image": "an image", "video": "a video"}
        return InputError(f"{path}: is {article[kind]}, but {self.entry.name} is {article[self._model_kind]} model")

    def _load_image(self, path: str):
        """The image, or the reason it cannot be one (a video named like an image says so)."""
        try:
            return load_image(path, self.entry.data.input_size[-1], upright=True)
        except InputError as exc:
            kind = content_kind(path)
            if kind == "video":
                raise self._wrong_kind(path, "video") from None
            raise (_neither(path, exc) if kind is None else exc) from None

    def run(self, inputs: list[tuple[str, Optional[str]]],
            on_video: Optional[VideoHook] = None) -> Iterator[ClassifyResult]:
        """Yields one result per input, in input order; a failing input yields a result with ``error``.
        ``on_video`` (a progress display's) hears each video's steps (``VideoStep``) while it is classified."""
        pending: list[tuple[str, torch.Tensor]] = []
        ready: dict[int, ClassifyResult] = {}
        slots: dict[str, list[int]] = {}

        def flush() -> None:
            for result in self._image_results(pending):
                ready[slots[result.input].pop(0)] = result
            pending.clear()

        next_out = 0
        for i, (path, error) in enumerate(inputs):
            kind = media_kind(path)
            try:
                if error:
                    raise InputError(error)
                special = special_file(path)  # said the same for any model, and never opened (see there)
                if special is not None:
                    raise InputError(f"{path}: {special}")
                if (kind == "video") != self.entry.is_video:
                    kind = self._kind_by_content(path)
                if kind == "image":
                    tensor = self.transform(self._load_image(path))
                    slots.setdefault(path, []).append(i)
                    pending.append((path, tensor))
                    if len(pending) >= self.batch_size:
                        flush()
                else:
                    ready[i] = self._video_result(path, on_video)
            except InputError as exc:
                ready[i] = ClassifyResult.failed(path, str(exc))
            except MemoryError:  # one input too big to decode or resize here: the others still run
                ready[i] = ClassifyResult.failed(path, out_of_memory(path))
            while next_out in ready:
                result = ready.pop(next_out)
                next_out += 1
                yield result
        if pending:
            flush()
        while next_out in ready:
            yield ready.pop(next_out)
            next_out += 1
