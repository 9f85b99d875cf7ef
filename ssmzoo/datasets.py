"""Evaluation datasets: which files, with which label, in a fixed order; and the torch Datasets that read them.

Scanning (``build_dataset``) only lists files and resolves labels to the model's class indices; reading
happens in ``ImageItems`` / ``VideoItems`` on the DataLoader workers, where an unreadable file becomes
a sentinel (``Item.error``) instead of an exception, so one bad JPEG never kills a worker or a run.

Layouts:

* ``imagenet``: ``DIR/val/<synset>/*``, ``DIR/<synset>/*`` (a synset is ``n`` + 8 digits; any subset
  of the 1000 synsets works, each mapped through the model's class ids) or a flat folder of images
  with ``labels_file`` (``filename label`` lines, label = ImageNet-1k index 0..999, synset or class
  name, read as ``--class-map``'s; a ``,`` separated file such as Kaggle's ``LOC_val_solution.csv``
  works too: the label field, else its first word; file names without extension are matched by stem).
* ``imagefolder``: ``DIR/<class>/*`` with class folders matched to the model's class names
  (case, ``_``, ``-`` and spaces ignored; ImageNet synsets and synonyms too), or ``class_map``. For a
  model with a labels file this is the layout to use: each folder is the class of the same name, and
  a folder named by an ImageNet synset (Imagenette's ``n01440764``) is matched through that synset's
  ImageNet names where exactly one of them is a class name (a note lists each such match).
* ``kinetics400`` / ``ssv2``: a list file of ``path label`` lines (space separated, or ``.csv``),
  label = class index or class name; paths relative to ``data_dir``, and may hold spaces (the longest
  leading words naming a file, or all before a tab: see ``_split_line``).
* ``videolist``: the same list for any video model, its labels read against the model's own classes
  (a video model with a labels file has no other layout).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import random
import re
import zlib
from collections import defaultdict
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Iterator, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from .errors import InputError, SsmzooError, UsageError
from .images import Normalizer, image_suffixes, load_image, split_eval_transform, to_uint8_tensor
from .labels import class_ids, class_names, describe, is_builtin, keys_once
from .manifest import ModelEntry
from .paths import files_below, missing_file, special_file
from .text import count, is_are
from .video import VIDEO_SUFFIXES

DATASETS = ("imagenet", "imagefolder", "kinetics400", "ssv2", "videolist")
# The label set each video dataset's list is written in (None: the model's own, whatever it is).
VIDEO_DATASET_LABELS: dict[str, Optional[str]] = {"kinetics400": "kinetics-400", "ssv2": "ssv2", "videolist": None}
# The datasets that read each file option (build_dataset warns where one is given to another).
OPTION_DATASETS = {"--labels": ("imagenet",), "--class-map": ("imagefolder",), "--list": tuple(VIDEO_DATASET_LABELS)}
SYNSET = re.compile(r"^n\d{8}$")
SYNSET_PREFIX = re.compile(r"^(n\d{8})_")  # ImageNet's training file names: n01440764_10026.JPEG

ImageHook = Callable[[Image.Image], Image.Image]


class DatasetError(SsmzooError):
    """The dataset cannot be laid out or labelled (missing folder, unmatched classes, bad list file)."""


class DatasetOptionError(DatasetError, UsageError):
    """The dataset options themselves are wrong: an unknown --dataset, one the model cannot predict, a
    missing option, or a --data-dir/--labels/--class-map/--list path that is absent or of the wrong kind."""


@dataclass(frozen=True)
class Sample:
    path: str
    label: int  # index into the model's classes


@dataclass
class EvalData:
    """A labelled, ordered list of files; ``samples[i]`` is item ``i`` everywhere (shards, outputs)."""

    name: str  # imagenet | imagefolder | kinetics400 | ssv2 | videolist
    kind: str  # image | video
    label_set: str  # the model's label set the labels index into
    root: str
    samples: list[Sample]
    notes: list[str] = field(default_factory=list)
    total: int = 0  # before --limit
    # What was left out that the user may not expect (an empty class folder, a --class-map line naming no
    # folder): the CLI prints each on stderr before the run, so a typo does not pass for a smaller dataset.
    warnings: list[str] = field(default_factory=list)
    # --limit where it took a subset (None otherwise): the subset is chosen before any file is read, so
    # an unreadable file in it is skipped, not replaced, and the summaries say how many were evaluated.
    limited_to: Optional[int] = None

    def __post_init__(self) -> None:
        self.total = self.total or len(self.samples)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def num_classes(self) -> int:
        return len({s.label for s in self.samples})

    def limit(self, n: Optional[int]) -> "EvalData":
        """A deterministic, class-stratified subset of ``n`` items (see ``stratified_subset``); all of them
        where ``n`` is at least their number, still recorded as the limit given (results report it as
        typed, with a note that it took everything, rather than as if there had been none)."""
        if n is None:
            return self
        if n < 1:
            raise DatasetOptionError(f"--limit {n}: expected a positive number")
        samples = stratified_subset(self.samples, n) if n < len(self.samples) else self.samples
        return replace(self, samples=samples, notes=list(self.notes), total=self.total,
                       warnings=list(self.warnings), limited_to=n)

    def limit_note(self, unreadable: int) -> Optional[str]:
        """What --limit took, and what became of it: the subset is fixed before reading (workers read the
        files, ranks get their shards up front; the same files for every run and model), so ``unreadable``
        files in it are skipped, not replaced by others, and fewer than N items are evaluated."""
        if self.limited_to is None:
            return None
        if len(self) == self.total:  # nothing left out: unreadable items are skipped as without --limit
            return f"--limit {self.limited_to} covers all {count(self.total, 'item')} of the dataset"
        note = f"--limit {self.limited_to}: {len(self)} of {count(self.total, 'item')} (class-stratified, deterministic)"
        if unreadable:
            note += (f"; {count(unreadable, 'unreadable item')} among them skipped, not replaced, so "
                     f"{len(self) - unreadable} evaluated")
        return note


def stratified_subset(samples: Sequence[Sample], n: int) -> list[Sample]:
    """Round-robin over classes: every class's first file (in the dataset order), then every class's
    second file, ... until ``n`` are taken; returned in the dataset order. No randomness, so the same
    ``--limit`` always evaluates the same files, and a small limit still covers as many classes as it can."""
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        by_class[s.label].append(i)
    chosen: list[int] = []
    depth = 0
    classes = sorted(by_class)
    while len(chosen) < n:
        for c in classes:
            if depth < len(by_class[c]):
                chosen.append(by_class[c][depth])
                if len(chosen) == n:
                    break
        depth += 1
    return [samples[i] for i in sorted(chosen)]


# --------------------------------------------------------------------------------------------
# Label matching
# --------------------------------------------------------------------------------------------


def normalize_name(name: str) -> str:
    """Case, '_', '-', brackets and runs of spaces do not distinguish class names."""
    return " ".join(re.sub(r"[_\-\[\]]+", " ", name.lower()).split())


def _name_index(label_set: str) -> dict[str, set[int]]:
    """Every spelling of every class (id, short name; for ImageNet every synonym) -> class indices."""
    index: dict[str, set[int]] = defaultdict(set)
    names, ids = class_names(label_set), class_ids(label_set)
    synonyms: list[list[str]] = [[] for _ in names]
    if label_set == "imagenet-1k":
        from timm.data import ImageNetInfo

        info = ImageNetInfo()
        synonyms = [info.index_to_description(i).split(",") for i in range(len(names))]
    for i, (name, cid) in enumerate(zip(names, ids)):
        for spelling in (name, cid, *synonyms[i]):
            if spelling.strip():
                index[normalize_name(spelling)].add(i)
    return index


class LabelResolver:
    """Turns a label written in a file (index, class id, class name) into the model's class index.
    ``index:N`` and ``name:TEXT`` say which is meant, for class names that are numbers (a labels file of
    ``1``, ``0``, ``2``: is ``0`` index 0 or the class named ``0``?)."""

    def __init__(self, label_set: str, allow_names: bool = True):
        self.label_set = label_set
        self.ids = class_ids(label_set)
        self.id_index = {cid: i for i, cid in enumerate(self.ids)}
        self.names = _name_index(label_set) if allow_names else {}

    def __call__(self, text: str) -> Optional[int]:
        """The class index, or None where the label is unknown or ambiguous."""
        text = text.strip()
        kind, explicit = self._explicit(text)
        if kind == "index":
            return int(explicit) if re.fullmatch(r"\d+", explicit) and int(explicit) < len(self.ids) else None
        if kind == "name":
            return self.by_name(explicit)
        if re.fullmatch(r"\d+", text):
            value, named = int(text), self.id_index.get(text)
            if value >= len(self.ids):
                return named
            return value if named is None or named == value else None  # a labels file of numbers: which one?
        return self.by_name(text)

    def by_name(self, text: str) -> Optional[int]:
        """The class a name or id spells (exactly, else ignoring case, '_', '-' and spaces), never read as
        an index: how a class folder is matched, so a folder '3' of a labels file of digits is class '3'."""
        text = text.strip()
        if text in self.id_index:
            return self.id_index[text]
        hits = self.names.get(normalize_name(text), set())
        return next(iter(hits)) if len(hits) == 1 else None

    @staticmethod
    def _explicit(text: str) -> tuple[Optional[str], str]:
        """("index" or "name", the rest) for ``index:N`` / ``name:TEXT``; (None, text) otherwise."""
        kind, colon, rest = text.partition(":")
        return (kind, rest.strip()) if colon and kind in ("index", "name") else (None, text)

    def why_not(self, text: str) -> str:
        text = text.strip()
        kind, explicit = self._explicit(text)
        if kind == "index" and not re.fullmatch(r"\d+", explicit):
            return f"'{text}': expected index:N, N a class index (0..{len(self.ids) - 1})"
        if re.fullmatch(r"\d+", explicit) and kind != "name":
            named = self.id_index.get(text)
            if kind is None and named is not None and int(text) < len(self.ids):
                return (f"'{text}' is ambiguous: the index of class {self.ids[int(text)]!r} and the name of class "
                        f"{named}; write index:{text} for the first or name:{text} for the second")
            return f"index {explicit} is out of range (0..{len(self.ids) - 1})"
        text = explicit
        hits = self.names.get(normalize_name(text), set())
        if len(hits) > 1:
            return f"'{text}' is ambiguous ({', '.join(self.ids[i] for i in sorted(hits))})"
        return f"'{text}' is no {self.label_set} class" if is_builtin(self.label_set) else \
            f"'{text}' is not a class name in {self.label_set}"

    def by_synset(self, folder: str) -> Optional[int]:
        """For a labels file: the class an ImageNet synset folder stands for, where exactly one of the
        synset's ImageNet names (tench, Tinca tinca) is a class name; None otherwise."""
        if is_builtin(self.label_set) or not SYNSET.match(folder):
            return None
        hits = {self.by_name(s) for s in _imagenet_spellings().get(folder, ())} - {None}
        return hits.pop() if len(hits) == 1 else None


@lru_cache(maxsize=None)
def _imagenet_spellings() -> dict[str, tuple[str, ...]]:
    """ImageNet-1k synset -> its names (the short name and every synonym)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return {synset: tuple(s.strip() for s in info.index_to_description(i).split(",") if s.strip())
            for i, synset in enumerate(class_ids("imagenet-1k"))}


def _few(items: Sequence[str], k: int = 5) -> str:
    shown = ", ".join(repr(x) for x in list(items)[:k])
    return shown + (f" and {len(items) - k} more" if len(items) > k else "")


def _image_files(folder: Path, prune: Optional[Callable[[str], bool]] = None
                 ) -> tuple[list[Path], set[Path], int, list[str], list[Path]]:
    """Image files below ``folder`` (recursive, sorted), those of them that are links (as the walk met
    them), how many other files were ignored, a warning for each folder that could not be read (its
    images are missing: the user must hear of it), and the pipes, sockets and devices, which no reader
    takes (``_special_note`` says so). ``prune``: as for ``files_below``."""
    links: set[Path] = set()
    files, ignored, unreadable, special = files_below(folder, image_suffixes(), follow_links=True, prune=prune,
                                                      links=links)
    return files, links, ignored, [f"{exc.filename or folder}: cannot read this folder ({exc.strerror or exc}); "
                                   "skipped" for exc in unreadable], special


def _class_tree(root: Path, classes: dict[str, int], name: str, label_set: str,
                warnings: Sequence[str] = ()) -> EvalData:
    """The images of each class folder in ``classes`` (folder name -> class index) below ``root``; the
    broken links directly in ``root`` (``_broken_links``) and then ``warnings`` come first among its
    warnings, and are named in the error where no image is found (an error drops the warnings)."""
    samples: list[Sample] = []
    broken = _dangling(root)
    warned = _broken_links(broken) + list(warnings)
    ignored = 0
    special: list[Path] = []
    refused: list[str] = []
    repeated = 0
    real = {folder: os.path.realpath(root / folder) for folder in classes}
    shared = _shared_class_folders(root, real)
    real = {folder: path for folder, path in real.items() if folder not in shared}
    for folder, label in sorted(classes.items()):
        if folder in shared:
            warned.append(shared[folder])
            continue
        listed, links, skipped, unreadable, pipes = _image_files(root / folder,
                                                                 _other_classes(root, folder, real, warned))
        files, elsewhere, again = _file_links(listed, links, folder, real, warned)
        repeated += again
        ignored += skipped
        special.extend(pipes)
        refused.extend(unreadable)
        warned.extend(unreadable)
        if not files and not unreadable and not elsewhere:  # (links elsewhere are warned about one by one)
            # a class that silently scores nothing would look like a smaller dataset
            warned.append(f"{root / folder}: class folder holds no image files; skipped")
        samples.extend(Sample(str(p), label) for p in files)
    if not samples:
        if refused:
            raise DatasetError(f"{root}: no image file could be read: {refused[0]}" + (
                f" (and {count(len(refused) - 1, 'more folder')} like it)" if len(refused) > 1 else ""))
        raise DatasetError(f"{root}: the class folders hold no image files (.jpg, .png or another suffix of a "
                           "format Pillow reads here)" + (f"; {count(len(broken), 'broken link')} skipped: "
                                                         f"{_first_broken(broken)}" if broken else ""))
    notes = _ignored_note(ignored) + _special_note(special)
    if repeated:
        notes.append(f"{count(repeated, 'link')} to an image already counted in the same class folder left out: "
                     "each image is counted once, as a folder reached twice is walked once")
    return EvalData(name, "image", label_set, str(root), samples, notes, warnings=warned)


def _within(path: str, folder: str) -> bool:
    """Whether real path ``path`` is ``folder`` or lies below it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _shared_class_folders(root: Path, real: dict[str, str]) -> dict[str, str]:
    """The class folders below ``root`` (``real``: each one's real path) left out as links to images
    that another class folder counts, each with its warning. As ``_other_classes`` does for links below
    a class folder, a class folder that is a link to the same folder as another (two classes linked to
    one folder outside the dataset, or to another class's own folder), to a folder inside another
    class's, or to a folder holding the class folders (``up -> ..``) would count the same images under
    two labels. Of class folders that are one folder, the folder itself (not a link) keeps its images,
    or else the first by name; one inside another's is left to the outer one."""
    top = os.path.realpath(root)
    groups: dict[str, list[str]] = {}
    for folder in sorted(real):
        groups.setdefault(real[folder], []).append(folder)
    keeper: dict[str, str] = {}  # real path -> the class folder that counts its images
    shared: dict[str, str] = {}

    def skip(folder: str, target: str, where: str) -> None:
        shared[folder] = (f"{root / folder}: links to {target}, {where}; skipped, so its images are not "
                          f"counted again as {folder!r}")

    for target in sorted(groups, key=len):  # (an outer folder before those inside it)
        folders = groups[target]
        if len(folders) > 1:  # (a stat only where class folders share one: the real folder first)
            folders.sort(key=lambda folder: ((root / folder).is_symlink(), folder))
        outer = next((keeper[p] for p in _ancestors(target) if p in keeper), None)
        if _within(top, target):
            for folder in folders:
                skip(folder, target, "a folder holding the class folders")
        elif outer is not None:
            for folder in folders:
                skip(folder, target, f"inside class folder {outer!r}")
        else:
            first = keeper[target] = folders[0]
            for folder in folders[1:]:
                skip(folder, target, f"as class folder {first!r} does" if (root / first).is_symlink()
                     else f"class folder {first!r}")
    return shared


def _ancestors(path: str) -> Iterator[str]:
    """The folders above absolute path ``path``, nearest first."""
    while (parent := os.path.dirname(path)) != path:
        yield parent
        path = parent


def _other_classes(root: Path, folder: str, real: dict[str, str], warned: list[str]) -> Callable[[str], bool]:
    """``files_below``'s ``prune`` for class folder ``folder`` (``real``: each class folder's real path):
    true, with a warning, for a folder reached through a link that leads into another class folder, or
    above one (``up -> ..``): its images are counted under their own class, and would be counted again
    under this one. Other links (to folders outside the dataset, or within this class) are followed."""
    own = real[folder]
    fenced = [os.path.realpath(root), *real.values()]

    def prune(path: str) -> bool:
        target = os.path.realpath(path)
        if _within(target, own):
            return False
        other = next((name for name, r in real.items() if name != folder and _within(target, r)), None)
        if other is None and not any(_within(f, target) for f in fenced):
            return False
        where = f"inside class folder {other!r}" if other is not None else "a folder holding the class folders"
        warned.append(f"{path}: links to {target}, {where}; not followed, so its images are not counted "
                      f"again as {folder!r}")
        return True

    return prune


def _file_links(files: Sequence[Path], links: Collection[Path], folder: str, real: dict[str, str],
                warned: list[str]) -> tuple[list[Path], int, int]:
    """Class folder ``folder``'s image ``files`` (``links``: those that are links, as ``files_below``
    met them; ``real``: each class folder's real path) less its links to files that are counted
    already, as ``_other_classes`` does for links to folders: a link to an image inside another class
    folder would count that image twice, under two labels (a warning names it and the target's class),
    and a link to an image this class already counts (the image itself, or another link to it) would
    weigh it double. Links to images outside the class folders (a shared store) are kept, once each.
    Also returns how many links were left out of each kind."""
    linked = [p for p in files if p in links]
    if not linked:
        return list(files), 0, 0
    own = real[folder]
    real_parent = {parent: os.path.realpath(parent) for parent in {p.parent for p in files}}  # (one per folder)
    seen = {os.path.join(real_parent[p.parent], p.name) for p in files if p not in links}
    dropped: set[Path] = set()
    elsewhere = again = 0
    for path in linked:
        target = os.path.realpath(path)
        other = None if _within(target, own) or not os.path.exists(target) else next(
            (name for name, r in real.items() if name != folder and _within(target, r)), None)
        if other is not None:
            warned.append(f"{path}: links to {target}, inside class folder {other!r}; skipped, so the image is "
                          f"not counted again as {folder!r}")
            elsewhere += 1
        elif target in seen:
            again += 1
        else:
            seen.add(target)
            continue
        dropped.add(path)
    return [p for p in files if p not in dropped], elsewhere, again


def _special_note(special: Sequence[Path]) -> list[str]:
    """The note for the pipes, sockets and devices among a dataset's files (``paths.special_file``),
    whatever their suffix: no reader opens them (a pipe could wait forever), and none goes unsaid."""
    return [f"{count(len(special), 'file')} ignored as not a regular file (a pipe, socket or device): "
            f"{_few([str(p) for p in special], 3)}"] if special else []


def _ignored_note(ignored: int) -> list[str]:
    """The note for files left out as no image (by suffix): a stray README must not pass unsaid, nor a
    folder of .heic photos that this Pillow cannot read."""
    return [f"{count(ignored, 'non-image file')} ignored"] if ignored else []


def _flat_others_note(files: Iterable[Path], special: Sequence[Path], taken: Collection[str] = ()) -> list[str]:
    """``_ignored_note`` for a flat folder's ``files`` (``_files_in``) that are no image, less those
    ``taken`` (resolved paths: the files a labels list names, the list itself), and ``_special_note``
    for its pipes, sockets and devices (``special``, from the same listing)."""
    return (_ignored_note(sum(1 for p in files if not _is_image(p) and os.path.realpath(p) not in taken))
            + _special_note(special))


# --------------------------------------------------------------------------------------------
# Layouts
# --------------------------------------------------------------------------------------------


def _subdirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _dangling(root: Path) -> list[Path]:
    """The links directly in ``root`` (hidden ones left out) that lead nowhere, sorted."""
    return [p for p in sorted(root.iterdir()) if not p.name.startswith(".") and p.is_symlink() and not p.exists()]


def _broken_links(links: Sequence[Path]) -> list[str]:
    """A warning for each link of ``_dangling`` (``missing_file``'s words): a class folder linked from
    another disk that is not mounted would otherwise vanish, its class unscored, as if the dataset were
    smaller (an empty or unreadable class folder is warned about too)."""
    return [f"{p}: {missing_file(p)}; skipped" for p in links]


def _links_to_nothing(links: Sequence[Path], noun: str) -> str:
    """'N <noun>s, all broken links: the first's cause (and N-1 more like it)', for an error: where
    every class folder is such a link, "no class folders" would send the user looking for a wrong
    layout, when the disk they point at may just not be mounted."""
    if len(links) == 1:
        return f"1 {noun}, a broken link: {_first_broken(links)}"
    return f"{count(len(links), noun)}, all broken links: {_first_broken(links)}"


def _first_broken(links: Sequence[Path]) -> str:
    """The first of ``links`` and why it leads nowhere, and how many more there are."""
    more = f" (and {len(links) - 1} more like it)" if len(links) > 1 else ""
    return f"{links[0]}: {missing_file(links[0])}{more}"


def _not_found(option: str, path: Path, directory: bool) -> DatasetOptionError:
    """Says what is at ``path`` instead of the directory (or file) the option needs: a device or a pipe
    (``/dev/null``) is no directory either, so only a directory is called one."""
    if not path.exists():
        return DatasetOptionError(f"{option} {path}: no such {'directory' if directory else 'file'}")
    if directory:
        return DatasetOptionError(f"{option} {path}: is not a directory")
    return DatasetOptionError(f"{option} {path}: " + ("is a directory, not a file" if path.is_dir() else
                                                      special_file(path) or "not a regular file"))


def imagenet_dataset(data_dir: Path, label_set: str, labels_file: Optional[Path] = None) -> EvalData:
    """ImageNet-1k validation in the ``val/<synset>/`` (or ``<synset>/``) tree, or flat with a labels file."""
    if label_set != "imagenet-1k":
        hint = "" if is_builtin(label_set) else (": use --dataset imagefolder, which matches class folders to "
                                                 "those names (ImageNet synset folders through their names)")
        raise DatasetOptionError(f"--dataset imagenet needs an ImageNet-1k model; this one predicts "
                                 f"{describe(label_set)}{hint}")
    if not data_dir.is_dir():
        raise _not_found("--data-dir", data_dir, directory=True)
    if labels_file is not None:
        return _flat_imagenet(data_dir, label_set, labels_file)
    root = data_dir / "val" if (data_dir / "val").is_dir() else data_dir
    folders = _subdirs(root)
    synsets = [f for f in folders if SYNSET.match(f)]
    if not synsets:
        files, special = _files_in(root)
        images = [p for p in files if _is_image(p)]
        by_name = _synset_named(images, label_set, files, special)
        if by_name is not None:
            return by_name
        broken = [p for p in _dangling(root) if SYNSET.match(p.name)]
        if broken:
            raise DatasetError(f"--data-dir {data_dir}: {_links_to_nothing(broken, 'synset folder')}")
        val = data_dir / "val"
        if val.is_symlink() and not val.exists():
            raise DatasetError(f"--data-dir {data_dir}: no ImageNet synset folders, and {val}: {missing_file(val)}")
        message = f"--data-dir {data_dir}: no ImageNet synset folders (n########); "
        # What the folder holds decides it, as for the other layouts (imagefolder's "no class folders", its
        # unmatched folders' "pass --class-map"): a failed run, exit code 1, whether or not --labels would help.
        if images:
            unnamed = [p.name for p in images if not SYNSET_PREFIX.match(p.name)]
            some = (f" ({len(unnamed)} of {len(images)} do not: {_few(unnamed)})"
                    if len(unnamed) < len(images) else "")
            raise DatasetError(message + "a flat folder of images needs --labels FILE ('filename label' lines) "
                                     f"or file names that begin with their synset (n01440764_10026.JPEG){some}")
        raise DatasetError(message + "expected val/<synset>/*.JPEG or <synset>/*.JPEG")
    resolver = LabelResolver(label_set, allow_names=False)
    unknown = [f for f in synsets if f not in resolver.id_index]
    if unknown:
        raise DatasetError(f"{root}: {count(len(unknown), 'synset folder')} "
                           f"{'is not an ImageNet-1k class' if len(unknown) == 1 else 'are not ImageNet-1k classes'}: "
                           f"{_few(unknown)}")
    data = _class_tree(root, {f: resolver.id_index[f] for f in synsets}, "imagenet", label_set)
    others = [f for f in folders if not SYNSET.match(f)]
    if others:
        data.notes.append(f"ignored {count(len(others), 'folder')} that {is_are(len(others))} not "
                          f"{'a synset' if len(others) == 1 else 'synsets'}: {_few(others, 3)}")
    data.notes.extend(_loose_images_note(root, "synset folders"))
    return data


def _files_in(folder: Path) -> tuple[list[Path], list[Path]]:
    """The files directly in ``folder`` (hidden ones left out), sorted, and apart from them its pipes,
    sockets and devices (``special_file``: no file to read): one listing of a flat folder (of maybe 50,000
    images) that its images, its unlabelled images, its other files and its special files are all taken
    from. The listing's own file types tell most entries apart without a stat: only links are followed."""
    files: list[Path] = []
    special: list[Path] = []
    with os.scandir(folder) as listing:
        for e in listing:
            if e.name.startswith("."):
                continue
            if e.is_file():
                files.append(Path(e.path))
            elif not e.is_dir() and special_file(e.path) is not None:
                special.append(Path(e.path))
    return sorted(files), sorted(special)


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in image_suffixes()


def _images_in(folder: Path) -> list[Path]:
    """The images directly in ``folder`` (by suffix; hidden files left out), sorted."""
    return [p for p in _files_in(folder)[0] if _is_image(p)]


def _loose_images_note(root: Path, folders: str) -> list[str]:
    """A note naming the images directly in ``root``, which a tree of class folders leaves out."""
    loose = [p.name for p in _images_in(root)]
    return [f"{count(len(loose), 'image')} directly in {root} (outside {folders}) ignored: {_few(loose, 3)}"] \
        if loose else []


def _synset_named(images: list[Path], label_set: str, files: list[Path], special: Sequence[Path]
                  ) -> Optional[EvalData]:
    """Flat images named as ImageNet's training files are (``n01440764_10026.JPEG``), each labelled by
    the synset its name begins with; None unless at least half of the names begin with one (a folder of
    ILSVRC2012_val_* files needs --labels). An image whose name does not (a stray ``holiday.jpg``) has no
    label: it is named in a warning and skipped, and the others are evaluated. ``files``: the folder's
    files (``_files_in``), images and others, and ``special`` its pipes, sockets and devices."""
    prefixes = [SYNSET_PREFIX.match(p.name) for p in images]
    named = [(p, m.group(1)) for p, m in zip(images, prefixes) if m]
    if not named or 2 * len(named) < len(images):
        return None
    resolver = LabelResolver(label_set, allow_names=False)
    unknown = sorted({synset for _, synset in named if synset not in resolver.id_index})
    if unknown:
        raise DatasetError(f"{images[0].parent}: {len(unknown)} file-name synsets are not ImageNet-1k classes: "
                           f"{_few(unknown)}")
    samples = [Sample(str(p), resolver.id_index[synset]) for p, synset in named]
    unnamed = [p for p, m in zip(images, prefixes) if not m]
    warnings = [_unlabelled(unnamed, "file name without an ImageNet synset in front, as n01440764_10026.JPEG has")] \
        if unnamed else []
    return EvalData("imagenet", "image", label_set, str(images[0].parent), samples,
                    ["labels from the synset each file name begins with", *_flat_others_note(files, special)],
                    warnings=warnings)


def _unlabelled(images: Sequence[Path], why: str) -> str:
    """The warning for images a flat layout finds no label for: the file (or the first few) and why."""
    if len(images) == 1:
        return f"{images[0]}: no label ({why}); skipped"
    return f"{images[0].parent}: {len(images)} images with no label ({why}); skipped: {_few([p.name for p in images])}"


def _label_lines(path: Path, is_name: Callable[[str], bool] = lambda _: False, suffixes: Collection[str] = (),
                 option: str = "", fields: str = "path label") -> Iterator[tuple[int, str, str]]:
    """(line number, first field, label field) of a ``name label`` or ``name,label`` file; a text
    line is split by ``_split_line`` (``is_name``, ``suffixes``), so a name may hold spaces. Errors
    begin with ``option`` (``--class-map ``) where the file is not named so elsewhere."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise DatasetError(f"{option}{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{option}{path}: not a text file") from None
    if path.suffix.lower() == ".csv":
        for n, row in enumerate(csv.reader(text.splitlines()), 1):
            if row and any(c.strip() for c in row):
                name, label = _csv_fields(row)
                if not name or not label:
                    raise DatasetError(f"{option}{path}:{n}: expected '{fields.replace(' ', ',')}', "
                                       f"got {','.join(row)!r}")
                yield n, name, label
        return
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = _split_line(line, is_name, suffixes)
        if parts is None:
            raise DatasetError(f"{option}{path}:{n}: expected '{fields}', got {line!r}")
        yield n, *parts


def _csv_fields(row: Sequence[str]) -> tuple[str, str]:
    """(first field, label field) of a CSV row, stripped, the label being the last field that is not
    empty (a spreadsheet may add empty columns); either is '' where the row lacks it (``a.JPEG,`` or
    ``,5``): the caller's error names the line, where an empty name would stand for the data folder
    itself and an empty label for no class."""
    cells = [c.strip() for c in row]
    while cells and not cells[-1]:
        cells.pop()
    return (cells[0], cells[-1]) if len(cells) > 1 else ("", "")


def _split_line(line: str, is_name: Callable[[str], bool], suffixes: Collection[str]) -> Optional[tuple[str, str]]:
    """``(name, label)`` of a ``name label`` line, where the name (a path, a folder) may hold spaces:
    split at the first tab where there is one; else the name is the longest run of leading words that
    ``is_name`` (names an existing file or folder), and where none does (a missing file, a header),
    the words up to the first with one of ``suffixes`` (``my clips/a b.mp4 label``), else the first
    word. None for a line of one field."""
    if "\t" in line:
        name, label = (part.strip() for part in line.split("\t", 1))
        return (name, label) if name and label else None
    spans = [m.span() for m in re.finditer(r"\S+", line)]
    if len(spans) < 2:
        return None
    cut = next((k for k in range(len(spans) - 1, 0, -1) if is_name(line[:spans[k - 1][1]])), None)
    if cut is None:
        cut = next((k + 1 for k, (a, b) in enumerate(spans[:-1]) if Path(line[a:b]).suffix.lower() in suffixes), 1)
    return line[:spans[cut - 1][1]], line[spans[cut][0]:]


def _header_note(list_file: Path, n: int, name: str, label_text: str) -> str:
    """The note for a list's first line taken as a header (it names no file and has no label): said, so
    that a first line naming a missing file does not vanish unseen."""
    return f"{list_file}:{n}: first line taken as a header and skipped ({name} {label_text})"


def _listed_once(seen: dict[str, int], key: str, list_file: Path | str, n: int, name: str) -> None:
    """Refuses a second line for one ``key`` (a file's resolved path, so ``a.mp4``, ``./a.mp4`` and a
    link to it are one; a --class-map folder), naming both lines: a file counted twice would weigh double
    in the accuracy, and a folder mapped twice would silently take its last label."""
    if key in seen:
        raise DatasetError(f"{list_file}:{n}: {name} is listed twice (first on line {seen[key]})")
    seen[key] = n


def _flat_label(resolver: LabelResolver, label_text: str) -> tuple[Optional[int], str]:
    """(class index or None, why not) for a --labels line's label field: read as --class-map and --list
    labels are (index, synset, class name, ``index:``/``name:``), the whole field first, so that a name of
    several words (``tiger cat``) is that class, not ``tiger``; else its first word, for a field that goes
    on after the label (Kaggle's ``LOC_val_solution.csv``: ``n01751748 1 2 3 4 ...``)."""
    word = label_text.split()[0]
    for text in dict.fromkeys((label_text, word)):
        label = resolver(text)
        if label is not None:
            return label, ""
    # the first word's reason where it reads as an index, synset or index:N (the field goes on after it)
    first = word != label_text and (word.isdigit() or SYNSET.match(word) or word.startswith("index:"))
    return None, resolver.why_not(word if first else label_text)


def _flat_imagenet(data_dir: Path, label_set: str, labels_file: Path) -> EvalData:
    resolver = LabelResolver(label_set)
    listing, special = _files_in(data_dir)
    files = {p.name: p for p in listing}
    stems: dict[str, Path] = {}
    for p in listing:
        if _is_image(p):
            stems.setdefault(p.stem, p)
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    header: Optional[str] = None

    def named(text: str) -> bool:
        return text in files or text in stems

    for k, (n, name, label_text) in enumerate(_label_lines(labels_file, named, image_suffixes())):
        label, why = _flat_label(resolver, label_text)
        listed = files.get(name) or stems.get(name)
        if label is None:
            if k == 0 and listed is None and Path(name).suffix.lower() not in image_suffixes():
                header = _header_note(labels_file, n, name, label_text)
                continue  # a header row (ImageId,PredictionString): names no image
            raise DatasetError(f"{labels_file}:{n}: {why} (a label is an ImageNet-1k index 0..999 in "
                               "sorted-synset order, a synset or a class name)")
        path = listed or data_dir / name
        _listed_once(seen, os.path.realpath(path), labels_file, n, name)
        samples.append(Sample(str(path), label))
    if not samples:
        raise DatasetError(f"{labels_file}: no 'filename label' lines")
    samples.sort(key=lambda s: s.path)
    unlabelled = [p for p in listing if _is_image(p) and os.path.realpath(p) not in seen]
    warnings = [_unlabelled(unlabelled, f"not named in {labels_file}")] if unlabelled else []
    notes = ([header] if header else []) + _flat_others_note(listing, special, {*seen, os.path.realpath(labels_file)})
    return EvalData("imagenet", "image", label_set, str(data_dir), samples, notes, warnings=warnings)


def class_map_entries(path: Path, folders: Sequence[str] = ()) -> list[tuple[str, str, str]]:
    """(where, folder, label) of each ``--class-map`` entry, where = ``FILE:LINE`` (``FILE`` for JSON),
    so an entry can be reported by its line. Formats: ``folder label`` lines (tab separated, or space
    separated where the folder is the longest prefix naming an existing folder, so both may hold
    spaces), a ``.csv`` or a JSON object. A folder given twice is an error naming both lines."""
    if path.suffix.lower() == ".json":
        once = keys_once(lambda key: DatasetError(f"--class-map {path}: folder {key!r} is listed twice"))
        try:
            raw = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=once)
        except (OSError, ValueError) as exc:
            raise DatasetError(f"--class-map {path}: cannot read JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise DatasetError(f"--class-map {path}: expected a JSON object folder -> label")
        return [(str(path), str(k), str(v)) for k, v in raw.items()]
    lines = _label_lines(path, set(folders).__contains__, option="--class-map ", fields="folder label")
    seen: dict[str, int] = {}
    entries: list[tuple[str, str, str]] = []
    for n, name, label in lines:
        _listed_once(seen, name, f"--class-map {path}", n, f"folder {name!r}")
        entries.append((f"{path}:{n}", name, label))
    return entries


def imagefolder_dataset(data_dir: Path, label_set: str, class_map: Optional[Path] = None,
                        model_name: str = "the model") -> EvalData:
    """``<class>/<image>`` with each folder matched to one of the model's classes."""
    if not data_dir.is_dir():
        raise _not_found("--data-dir", data_dir, directory=True)
    folders = _subdirs(data_dir)
    if not folders:
        broken = [p for p in _dangling(data_dir) if not _is_image(p)]  # (a link to a missing image is no folder)
        if broken:
            raise DatasetError(f"--data-dir {data_dir}: {_links_to_nothing(broken, 'class folder')}")
        raise DatasetError(f"--data-dir {data_dir}: no class folders (expected <class>/<image> files)")
    resolver = LabelResolver(label_set)
    entries = class_map_entries(class_map, folders) if class_map is not None else []
    mapping = {name: label for _, name, label in entries}
    present = set(folders)
    warnings = [f"--class-map {where}: names no folder {name!r} in {data_dir}; ignored"
                for k, (where, name, label) in enumerate(entries)
                if name not in present and not (k == 0 and resolver(label) is None)]  # (not a header row)
    classes: dict[str, int] = {}
    unmatched: list[str] = []
    through_synsets: list[str] = []
    for folder in folders:
        if folder in mapping:
            label = resolver(mapping[folder])
            if label is None:
                raise DatasetError(f"--class-map {class_map}: folder {folder!r}: {resolver.why_not(mapping[folder])}")
            classes[folder] = label
            continue
        label = resolver.by_name(folder)  # bare numbers (not names) only via --class-map
        if label is None:
            label = resolver.by_synset(folder)
            if label is not None:
                through_synsets.append(f"{folder} -> {resolver.ids[label]}")
        if label is None:
            unmatched.append(folder)
        else:
            classes[folder] = label
    if unmatched:
        # a split folder (train/, val/) whose subfolders are the classes: point at it
        splits = [f for f in unmatched if any(resolver.by_name(sub) is not None or resolver.by_synset(sub) is not None
                                              for sub in _subdirs(data_dir / f)[:50])]
        hint = (f"; {_few(splits)} {'holds' if len(splits) == 1 else 'hold'} class folders: pass --data-dir "
                f"{data_dir / splits[0]}" if splits else
                f"; rename {'it' if len(unmatched) == 1 else 'them'} or pass --class-map FILE ('folder label' lines, "
                "label = class index, id or name)")
        classes_of = (f"{label_set} class of {model_name}" if is_builtin(label_set) else
                      f"class of {model_name} (the names in {label_set})")
        ambiguous = [f for f in unmatched if len(resolver.names.get(normalize_name(f), ())) > 1]
        why = (f" ({'; '.join(resolver.why_not(f) for f in ambiguous[:3])}: pass --class-map to choose)"
               if ambiguous else "")
        raise DatasetError(
            f"{data_dir}: {len(unmatched)} of {count(len(folders), 'class folder')} "
            f"{'matches' if len(unmatched) == 1 else 'match'} no {classes_of}: "
            f"{_few(unmatched)}{why}{hint}")
    data = _class_tree(data_dir, classes, "imagefolder", label_set, warnings)
    if through_synsets:
        data.notes.append(f"{count(len(through_synsets), 'ImageNet synset folder')} matched to class names through "
                          "their ImageNet names: " + ", ".join(through_synsets))
    data.notes.extend(_loose_images_note(data_dir, "class folders"))
    return data


def video_list_dataset(name: str, list_file: Path, data_dir: Optional[Path], label_set: str) -> EvalData:
    """A Kinetics-400 / SSv2 list (or ``videolist``, any video model's): ``path label`` (or ``path
    num_frames label``) lines."""
    expected = VIDEO_DATASET_LABELS[name]
    if expected is not None and label_set != expected:
        hint = "" if is_builtin(label_set) else ": use --dataset videolist, whose labels are its class names or indices"
        raise DatasetOptionError(f"--dataset {name} needs a {expected} model; this one predicts "
                                 f"{describe(label_set)}{hint}")
    root = data_dir if data_dir is not None else list_file.parent
    if not root.is_dir():
        raise _not_found("--data-dir", root, directory=True)
    resolver = LabelResolver(label_set)
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    header: Optional[str] = None

    def locate(text: str) -> Path:
        """The file a list names: below ``root`` unless absolute; without a suffix, by the video suffixes."""
        path = Path(text)
        path = path if path.is_absolute() else root / path
        if not path.suffix and not path.exists():
            path = next((path.with_name(path.name + s) for s in VIDEO_SUFFIXES
                         if path.with_name(path.name + s).exists()), path)
        return path

    lines = _label_lines(list_file, lambda text: os.path.lexists(locate(text)), VIDEO_SUFFIXES)
    for k, (n, path_text, label_text) in enumerate(lines):
        parts = label_text.split()
        if len(parts) > 1 and all(re.fullmatch(r"\d+", p) for p in parts):
            label_text = parts[-1]  # "path num_frames label" (TSN / mmaction rawframe lists)
        path = locate(path_text)
        label = resolver(label_text)
        if label is None:
            if k == 0 and not path.exists() and Path(path_text).suffix.lower() not in VIDEO_SUFFIXES:
                header = _header_note(list_file, n, path_text, label_text)
                continue  # a header row (after any comments): names no file
            raise DatasetError(f"{list_file}:{n}: {resolver.why_not(label_text)}")
        _listed_once(seen, os.path.realpath(path), list_file, n, path_text)
        samples.append(Sample(str(path), label))
    if not samples:
        raise DatasetError(f"{list_file}: no 'path label' lines")
    return EvalData(name, "video", label_set, str(root), samples, [header] if header else [])


def build_dataset(name: str, entry: ModelEntry, data_dir: Optional[Path] = None, *,
                  labels_file: Optional[Path] = None, class_map: Optional[Path] = None,
                  list_file: Optional[Path] = None) -> EvalData:
    """Lists and labels a dataset for ``entry``'s classes; raises DatasetError with one line to fix it.
    A --labels, --class-map or --list that this dataset does not read is a warning (it is ignored)."""
    data = _build_dataset(name, entry, data_dir, labels_file=labels_file, class_map=class_map, list_file=list_file)
    for option, value in (("--labels", labels_file), ("--class-map", class_map), ("--list", list_file)):
        if value is not None and name not in OPTION_DATASETS[option]:
            readers = OPTION_DATASETS[option]
            either = " or ".join(filter(None, (", ".join(readers[:-1]), readers[-1])))
            data.warnings.append(f"{option} {value}: read by --dataset {either} only; "
                                 f"ignored with --dataset {name}")
    return data


def _build_dataset(name: str, entry: ModelEntry, data_dir: Optional[Path], *, labels_file: Optional[Path],
                   class_map: Optional[Path], list_file: Optional[Path]) -> EvalData:
    if name not in DATASETS:
        raise DatasetOptionError(f"--dataset {name!r}: expected one of {', '.join(DATASETS)}")
    is_video = name in VIDEO_DATASET_LABELS
    if is_video != entry.is_video:
        kind = "a video" if entry.is_video else "an image"
        raise DatasetOptionError(f"--dataset {name} is {'a video' if is_video else 'an image'} dataset, but "
                                 f"{entry.name} is {kind} model")
    if is_video:
        if list_file is None:
            raise DatasetOptionError(f"--dataset {name} needs --list FILE ('path label' lines)")
        if not list_file.is_file():
            raise _not_found("--list", list_file, directory=False)
        return video_list_dataset(name, list_file, data_dir, entry.labels)
    if data_dir is None:
        raise DatasetOptionError(f"--dataset {name} needs --data-dir DIR")
    for option, value in (("--labels", labels_file), ("--class-map", class_map)):
        if value is not None and name in OPTION_DATASETS[option] and not value.is_file():
            raise _not_found(option, value, directory=False)
    if name == "imagenet":
        return imagenet_dataset(data_dir, entry.labels, labels_file)
    return imagefolder_dataset(data_dir, entry.labels, class_map, entry.name)


# --------------------------------------------------------------------------------------------
# Reading items (DataLoader side)
# --------------------------------------------------------------------------------------------


@dataclass
class Item:
    """One read item; ``tensor`` is None and ``error`` says why when the file could not be used."""

    index: int
    tensor: Optional[torch.Tensor]
    error: Optional[str] = None
    notes: tuple[str, ...] = ()


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Python, NumPy and torch RNGs seeded for one item, then restored."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


def _unexpected(path: str, exc: BaseException) -> str:
    return f"{path}: unreadable ({type(exc).__name__}: {' '.join(str(exc).split()) or 'no message'})"


class ImageItems(torch.utils.data.Dataset):
    """Loads, hooks, resizes and crops images into uint8 (3, S, S) tensors; ``normalizer`` (on the
    model's device) finishes timm's eval transform bit for bit. ``image_hook(img)`` (e.g. JPEG
    re-encoding, a corruption) runs on the RGB PIL image before the eval transform, on the worker, with
    the Python/NumPy/torch RNGs seeded from ``hook_seed`` and the file's path below ``root``, so a
    random hook gives the same pixels for any number of workers or processes and any ``--limit``. An
    exception from loading, the hook or the transform marks the item bad."""

    def __init__(self, samples: Sequence[Sample], entry: ModelEntry, image_hook: Optional[ImageHook] = None,
                 hook_seed: int = 0, root: str = ""):
        self.paths = [s.path for s in samples]
        self.seeds = [hook_seed * 1_000_003 + zlib.crc32(os.fsencode(os.path.relpath(s.path, root or ".")))
                      for s in samples]
        self.transform, self.mean, self.std = split_eval_transform(entry.data)
        self.min_side = entry.data.input_size[-1]
        self.image_hook = image_hook

    def __len__(self) -> int:
        return len(self.paths)

    def normalizer(self, device: torch.device) -> Normalizer:
        return Normalizer(self.mean, self.std, device)

    def __getitem__(self, index: int) -> Item:
        path = self.paths[index]
        try:
            img = load_image(path, self.min_side)
            if self.image_hook is not None:
                with seeded(self.seeds[index]):
                    img = self.image_hook(img)
            return Item(index, to_uint8_tensor(self.transform(img)))
        except InputError as exc:
            return Item(index, None, str(exc))
        except Exception as exc:  # a file Pillow chokes on in an unusual way: still one skipped item
            return Item(index, None, _unexpected(path, exc))


class VideoItems(torch.utils.data.Dataset):
    """Decodes each video into the protocol's clips x crops views, (V, 3, T, S, S)."""

    def __init__(self, samples: Sequence[Sample], protocol: Any, mean: Sequence[float], std: Sequence[float]):
        self.paths = [s.path for s in samples]
        self.protocol, self.mean, self.std = protocol, tuple(mean), tuple(std)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Item:
        from .video import load_video_views

        path = self.paths[index]
        try:
            clips = load_video_views(path, self.protocol, self.mean, self.std)
            return Item(index, clips.tensor, notes=tuple(clips.notes))
        except InputError as exc:
            return Item(index, None, str(exc))
        except Exception as exc:
            return Item(index, None, _unexpected(path, exc))


@dataclass
class Batch:
    indices: list[int]  # dataset indices of the rows of ``tensor``
    tensor: Optional[torch.Tensor]
    notes: list[tuple[str, ...]]
    failed: list[tuple[int, str]]

    def pin_memory(self) -> "Batch":  # DataLoader(pin_memory=True) calls this on custom batch types
        if self.tensor is not None:
            self.tensor = self.tensor.pin_memory()
        return self


def collate_items(items: list[Item]) -> Batch:
    good = [it for it in items if it.tensor is not None]
    return Batch(indices=[it.index for it in good],
                 tensor=torch.stack([it.tensor for it in good]) if good else None,
                 notes=[it.notes for it in good],
                 failed=[(it.index, it.error or "unreadable") for it in items if it.tensor is None])
