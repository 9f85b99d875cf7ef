"""Class names for each label set a model can predict.

A label set is named by a string: one of ssmzoo's sets (``imagenet-1k``, ``kinetics-400``, ``ssv2``) or
the absolute path of a user's labels file, for a model fine-tuned on other classes. Keeping it a string
lets every caller (classify, the datasets, eval's outputs) look names up the same way for both kinds.

Labels files (picked by suffix):

* ``.txt``: one class name per line, in index order; blank lines at the end are ignored, a blank line
  between names is an error (it would shift every later class by one).
* ``.json``: a list of names, or an object ``{"0": name, "1": name, ...}`` with every index 0..N-1 once
  (timm / Hugging Face ``id2label``); an object holding ``id2label`` or ``label_names`` (a Hugging Face
  or timm ``config.json``) is read through that key.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from .errors import LabelsFileError, ManifestError

NUM_CLASSES = {"imagenet-1k": 1000, "kinetics-400": 400, "ssv2": 174}
BUILTIN_LABEL_SETS = tuple(NUM_CLASSES)
LABELS_FILE_SUFFIXES = (".txt", ".json")
LABELS_FILE_FORMATS = ".txt (one class name per line) or .json (a list of names, or an object index -> name)"

# Labels files read in this process, by absolute path: a model's head is built for the file as it was
# when the manifest was read, so its names must not change under it if the file is edited mid-run.
_FILES: dict[str, tuple[str, ...]] = {}


def is_builtin(label_set: str) -> bool:
    """Whether ``label_set`` names one of ssmzoo's label sets rather than a labels file."""
    return label_set in NUM_CLASSES


def read_labels_file(path: str | Path) -> tuple[str, ...]:
    """The class names of a labels file, checked (see the module docstring), and remembered so that
    ``class_names(str(path))`` returns them. Raises :class:`LabelsFileError` naming the file and the cause."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in LABELS_FILE_SUFFIXES:
        raise LabelsFileError(f"{path}: a labels file ends in {LABELS_FILE_FORMATS}"
                              + (f"; not {path.suffix!r}" if path.suffix else ""))
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise LabelsFileError(f"{path}: no such labels file") from None
    except IsADirectoryError:
        raise LabelsFileError(f"{path}: is a directory, not a labels file") from None
    except OSError as exc:
        raise LabelsFileError(f"{path}: cannot read the labels file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise LabelsFileError(f"{path}: not a UTF-8 text file") from None
    names = _json_names(path, text) if suffix == ".json" else _text_names(path, text)
    if not names:
        raise LabelsFileError(f"{path}: no class names (the labels file is empty)")
    _FILES[str(path)] = names
    return names


def _text_names(path: Path, text: str) -> tuple[str, ...]:
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    for n, line in enumerate(lines, 1):
        if not line:
            raise LabelsFileError(f"{path}:{n}: blank line between class names (one name per line, every line "
                                  "up to the last name; blank lines only at the end)")
    seen: dict[str, int] = {}
    for n, name in enumerate(lines, 1):
        if name in seen:
            raise LabelsFileError(f"{path}:{n}: class name {name!r} repeats line {seen[name]}")
        seen[name] = n
    return tuple(lines)


def keys_once(error: Callable[[str], Exception]) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    """A ``json.loads`` ``object_pairs_hook`` that raises ``error(key)`` for a key given twice: ``json``
    keeps the last silently, and a class (or a --class-map folder) given twice is a mistake to name."""
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen:
                raise error(key)
            seen.add(key)
        return dict(items)

    return pairs


def _json_names(path: Path, text: str) -> tuple[str, ...]:
    try:
        raw = json.loads(text, object_pairs_hook=keys_once(lambda key: LabelsFileError(
            f"{path}: key {key!r} appears twice")))
    except json.JSONDecodeError as exc:
        raise LabelsFileError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg} (column {exc.colno})") from None
    if isinstance(raw, dict) and not all(re.fullmatch(r"\d+", k.strip()) for k in raw):
        # a config.json: timm's label_names (a list) or Hugging Face's id2label (an object)
        key = next((k for k in ("id2label", "label_names") if k in raw), None)
        if key is None:
            raise LabelsFileError(f"{path}: expected a list of class names or an object index -> name (keys "
                                  f"'0', '1', ...), or a config.json with id2label or label_names; got keys "
                                  f"{', '.join(repr(k) for k in list(raw)[:5])}")
        raw = raw[key]
    if isinstance(raw, list):
        names = list(raw)
        where = "item"
    elif isinstance(raw, dict):
        indices: dict[int, Any] = {}
        for key, value in raw.items():
            if not re.fullmatch(r"\d+", key.strip()):
                raise LabelsFileError(f"{path}: key {key!r} is not a class index (expected '0', '1', ...)")
            if int(key) in indices:
                raise LabelsFileError(f"{path}: index {int(key)} appears twice")
            indices[int(key)] = value
        missing = [i for i in range(len(indices)) if i not in indices]
        if missing:
            beyond = max(indices)
            raise LabelsFileError(f"{path}: index {missing[0]} is missing (the indices must be 0..{len(indices) - 1}, "
                                  f"each once; the highest is {beyond})")
        names = [indices[i] for i in range(len(indices))]
        where = "index"
    else:
        raise LabelsFileError(f"{path}: expected a list of class names or an object index -> name, "
                              f"got a JSON {type(raw).__name__}")
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise LabelsFileError(f"{path}: {where} {i}: expected a class name, got {json.dumps(name)}")
        name = name.strip()
        if name in seen:
            raise LabelsFileError(f"{path}: {where} {i}: class name {name!r} repeats {where} {seen[name]}")
        seen[name] = i
    return tuple(n.strip() for n in names)


@lru_cache(maxsize=None)
def _builtin_names(label_set: str) -> tuple[str, ...]:
    if label_set == "imagenet-1k":
        from timm.data import ImageNetInfo

        info = ImageNetInfo()
        return tuple(info.index_to_description(i).split(",")[0].strip() for i in range(info.num_classes()))
    from .video import load_class_names

    return tuple(load_class_names(label_set))


def class_names(label_set: str) -> tuple[str, ...]:
    """Short human-readable names in the model's index order (a labels file's names as written)."""
    if is_builtin(label_set):
        return _builtin_names(label_set)
    if label_set in _FILES:
        return _FILES[label_set]
    if Path(label_set).suffix.lower() in LABELS_FILE_SUFFIXES:  # an entry built without load_manifest
        return read_labels_file(label_set)
    raise ManifestError(f"unknown label set '{label_set}'")


@lru_cache(maxsize=None)
def _imagenet_ids() -> tuple[str, ...]:
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return tuple(info.index_to_label_name(i) for i in range(info.num_classes()))


def class_ids(label_set: str) -> tuple[str, ...]:
    """Stable identifiers (ImageNet synsets; the names themselves for the video sets and labels files)."""
    return _imagenet_ids() if label_set == "imagenet-1k" else class_names(label_set)


def num_classes(label_set: str) -> int:
    """How many outputs a model's head has for this label set."""
    return NUM_CLASSES[label_set] if is_builtin(label_set) else len(class_names(label_set))


def describe(label_set: str) -> str:
    """For messages: the set's name, or 'the N classes of FILE'."""
    return label_set if is_builtin(label_set) else f"the {num_classes(label_set)} classes of {label_set}"


def same_classes(a: str, b: str) -> bool:
    """Whether two label sets name the same classes in the same order (two copies of one labels file do)."""
    return a == b or (not (is_builtin(a) and is_builtin(b)) and class_names(a) == class_names(b))
