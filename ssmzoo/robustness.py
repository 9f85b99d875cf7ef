"""``ssmzoo robustness``: top-1 under JPEG re-encoding and ImageNet-C corruptions, several models side by side.

Where the pixels change (and why):

* ``--jpeg-quality``: the *original* decoded image (full resolution, RGB) is encoded in memory with Pillow
  at each quality and decoded again, then the model's eval transform runs (resize, crop, normalise). This
  is what a photo stored at that quality goes through; the StableMamba paper (arXiv 2409.11867) gives no
  other stage as far as we know. Videos: every decoded frame, before the short-side resize.
* ``--corruption``: ImageNet-C corruptions act on the model's resized and centre-cropped input, at its
  input resolution, before normalisation. The reference corrupts the 224 crop of Resize(256) +
  CenterCrop(224), which is exactly the crop every 224 model in the zoo sees (crop_pct 0.875).

One pass over the data serves every condition and every model that shares a resize/crop: a DataLoader
worker decodes an image once, resizes and crops it once, derives all variants (clean, each quality, each
corruption and severity) and returns them as uint8 crops; the main process normalises them per model and
runs each model on all of them (a loader batch holds about ``batch_size`` crops, at least one image's
variants). Videos are decoded once per condition (the JPEG hook sits in the frame decoding), and their
conditions are split over passes so that a loader batch holds about ``batch_size`` clips, as in
``ssmzoo eval``. Random corruptions draw from a generator seeded by (seed, file path, condition), so the
pixels do not depend on workers, processes, ``--limit`` or passes.
Under torchrun each rank sweeps its shard of the items and the per-item outcomes are gathered, as in eval.
An item that fails under some condition only (a panorama too wide to be a JPEG) is left out of every
condition and listed with that cause among the skipped items, so that every row, and each drop from clean,
is over the same items.

The corruption error follows Hendrycks & Dietterich (2019): CE_c = sum_s err(model, c, s) / sum_s
err(AlexNet, c, s), both sums over the severities run (AlexNet's errors are published per severity), for a
corruption whose AlexNet errors are published and a model of ImageNet-1k's classes; mCE is the mean CE
over the corruptions that have one. Published figures sum over severities 1..5 and average all 15
benchmark corruptions (ssmzoo implements 8 of them): the CE table says where a run differs.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from .corruptions import CORRUPTIONS, IMAGENET_C_BENCHMARK, JPEG_SETTINGS, SEVERITIES, TooLargeForJpeg, \
    corruption_error, jpeg_frame, jpeg_reencode
from .datasets import EvalData, Sample
from .distributed import DistContext
from .errors import InputError, OutputError, SsmzooError, UsageError
from .factory import DTYPES, LoadedModel, weights_label
from .images import Normalizer, split_eval_transform, to_uint8_tensor
from .labels import describe, is_builtin
from .paths import write_csv, write_output
from .text import count, is_are, rate_text, readable_data, round_rate

DEFAULT_STEP = 10


class SweepError(UsageError):
    """A sweep option that cannot be parsed (bad range, unknown corruption)."""


# --------------------------------------------------------------------------------------------
# Parsing the sweep
# --------------------------------------------------------------------------------------------


def _texts(texts: str | Sequence[str]) -> list[str]:
    """One option's values as given: a string, or the list a repeated option gives (``-q 10..30 -q 50``)."""
    return [texts] if isinstance(texts, str) else [str(t) for t in texts]


def _repeat_note(option: str, repeated: Sequence[Any]) -> str:
    """The note for values named more than once (as benchmark's for a repeated --model)."""
    return (f"{option}: {', '.join(map(str, repeated))} given more than once; "
            f"{'each is' if len(repeated) > 1 else 'it is'} run once")


def parse_int_values(texts: str | Sequence[str], option: str, lo: int, hi: int, default_step: int = DEFAULT_STEP,
                     notes: Optional[list[str]] = None) -> list[int]:
    """``START..END[:STEP]``, ``A,B,C`` or a mix (``10..30,50``), or several of them (a repeated option):
    the sorted union of the integers, each in ``lo..hi``; a SweepError with one line otherwise.

    END is always run, as the user typed it: where it is off the STEP grid from START (``1..100`` with
    step 10: 1, 11, ..., 91) it is added after the grid's last value, with a note. A range whose STEP is
    larger than END - START is refused (``10..90:200`` would give its two ends alone, most likely a typo
    for a smaller step). A value named more than once (``10,10``, ``10..30,20``) runs once, with a note.
    Notes are appended to ``notes`` when given."""
    example = "10..90:20 or 10,30,50" if hi >= 90 else f"{lo}..{hi} or {lo},{hi}"
    hint = f"expected START..END[:STEP] or a comma-separated list of integers in {lo}..{hi}, e.g. {example}"
    named: list[int] = []
    off_grid: list[str] = []
    for text in _texts(texts):
        parts = [p.strip() for p in text.split(",")]
        if not any(parts):
            raise SweepError(f"{option} {text!r}: {hint}")
        for part in parts:
            m = re.fullmatch(r"(-?\d+)\s*\.\.\s*(-?\d+)(?:\s*:\s*(-?\d+))?", part)
            if m:
                start, end = int(m.group(1)), int(m.group(2))
                step = int(m.group(3)) if m.group(3) is not None else default_step
                if step < 1:
                    raise SweepError(f"{option} {text!r}: the step must be a positive integer, got {step}")
                if start > end:
                    raise SweepError(f"{option} {text!r}: the range {start}..{end} is empty (start above end); "
                                     f"write {end}..{start}")
                if not (lo <= start and end <= hi):
                    raise SweepError(f"{option} {text!r}: values must be in {lo}..{hi}, got {part}")
                if start < end and step > end - start:  # only the two ends would run: a typo for a smaller step?
                    raise SweepError(f"{option} {text!r}: the step {step} is larger than the range {start}..{end}, "
                                     f"which would give its ends alone; use a smaller step (at most {end - start}) "
                                     f"or the list {start},{end}")
                chunk = list(range(start, end + 1, step))
                if chunk[-1] != end:  # END typed: run it, though the steps from START miss it
                    grid = ", ".join(map(str, chunk)) if len(chunk) <= 3 else f"{start}, {start + step}, ..., {chunk[-1]}"
                    off_grid.append(f"{option} {part}: END {end} added off the step-{step} grid ({grid}, then {end})")
                    chunk.append(end)
            elif re.fullmatch(r"-?\d+", part):
                chunk = [int(part)]
                if not lo <= chunk[0] <= hi:
                    raise SweepError(f"{option} {text!r}: values must be in {lo}..{hi}, got {part}")
            else:
                raise SweepError(f"{option} {text!r}: {hint}")
            named += chunk
    values = sorted(set(named))
    if notes is not None:
        notes += off_grid
        repeated = [v for v in values if named.count(v) > 1]
        if repeated:
            notes.append(_repeat_note(option, repeated))
    return values


def parse_qualities(texts: str | Sequence[str], notes: Optional[list[str]] = None) -> list[int]:
    """``--jpeg-quality``'s values (see ``parse_int_values``; step 10 unless given)."""
    return parse_int_values(texts, "--jpeg-quality", 1, 100, notes=notes)


def parse_severities(texts: Optional[str | Sequence[str]], notes: Optional[list[str]] = None) -> list[int]:
    """``--severity``'s values, 1..5 when not given (see ``parse_int_values``; step 1 unless given)."""
    if texts is None or (not isinstance(texts, str) and not texts):
        return list(SEVERITIES)
    return parse_int_values(texts, "--severity", 1, 5, default_step=1, notes=notes)


_IMPLEMENTED_BENCHMARK = [n for n in CORRUPTIONS if n in IMAGENET_C_BENCHMARK]


def parse_corruptions(texts: str | Sequence[str], notes: Optional[list[str]] = None) -> list[str]:
    """Comma-separated names, ``imagenet-c`` (the benchmark corruptions implemented here) or ``all``, in the
    order first named, each once (a repeated option adds its names; a name given more than once, also
    through ``imagenet-c`` or ``all``, gets one note in ``notes``)."""
    names: list[str] = []
    for text in _texts(texts):
        before = len(names)
        for word in (w.strip().lower().replace("-", "_") for w in text.split(",")):
            if not word:
                continue
            if word == "all":
                names += list(CORRUPTIONS)
            elif word == "imagenet_c":
                names += _IMPLEMENTED_BENCHMARK
            elif word in CORRUPTIONS:
                names.append(word)
            elif word in IMAGENET_C_BENCHMARK:  # a real ImageNet-C corruption that ssmzoo does not implement
                raise SweepError(f"--corruption {text!r}: {word!r} is an ImageNet-C corruption ssmzoo does not "
                                 f"implement (it needs image assets or code not ported yet); implemented: "
                                 f"{', '.join(CORRUPTIONS)}")
            else:
                import difflib

                close = difflib.get_close_matches(word, [*CORRUPTIONS, "imagenet_c", "all"], n=3)
                hint = f"did you mean {', '.join(close)}? " if close else ""
                raise SweepError(f"--corruption {text!r}: unknown corruption {word!r}; {hint}available: "
                                 f"{', '.join(CORRUPTIONS)} (or 'imagenet-c': the {len(_IMPLEMENTED_BENCHMARK)} of "
                                 f"ImageNet-C's {len(IMAGENET_C_BENCHMARK)} implemented here; 'all': those and the "
                                 "extra ones)")
        if len(names) == before:
            raise SweepError(f"--corruption {text!r}: expected corruption names, e.g. gaussian_noise,contrast")
    unique = list(dict.fromkeys(names))
    repeated = [n for n in unique if names.count(n) > 1]
    if notes is not None and repeated:
        notes.append(_repeat_note("--corruption", repeated))
    return unique


@dataclass(frozen=True)
class Condition:
    """One way of presenting the data: clean, a JPEG quality, or a corruption at a severity."""

    kind: str  # clean | jpeg | corruption
    quality: Optional[int] = None
    corruption: Optional[str] = None
    severity: Optional[int] = None

    @property
    def key(self) -> str:
        if self.kind == "jpeg":
            return f"jpeg_q{self.quality}"
        if self.kind == "corruption":
            return f"{self.corruption}_s{self.severity}"
        return "clean"

    @property
    def label(self) -> str:
        if self.kind == "jpeg":
            return f"JPEG q{self.quality}"
        if self.kind == "corruption":
            return f"{self.corruption} {self.severity}"
        return "clean"

    def apply_original(self, img: Image.Image) -> Image.Image:
        """The change made to the decoded image before resize/crop (JPEG), else the image itself."""
        return jpeg_reencode(img, self.quality) if self.kind == "jpeg" else img

    def apply_crop(self, crop: Image.Image, rng: np.random.Generator) -> Image.Image:
        """The change made to the model-resolution crop (ImageNet-C), else the crop itself."""
        if self.kind == "corruption":
            return CORRUPTIONS[self.corruption](crop, self.severity, rng)
        return crop

    def frame_hook(self) -> Optional[Callable[[np.ndarray], np.ndarray]]:
        if self.kind == "jpeg":
            quality = self.quality
            return lambda frame: jpeg_frame(frame, quality)
        if self.kind == "corruption":
            raise SweepError("corruptions are defined on images; video models take --jpeg-quality only")
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"condition": self.label, "key": self.key, "kind": self.kind, "quality": self.quality,
                "corruption": self.corruption, "severity": self.severity}


def build_conditions(qualities: Sequence[int] = (), corruptions: Sequence[str] = (),
                     severities: Sequence[int] = SEVERITIES) -> list[Condition]:
    """Clean first, then qualities from best to worst, then each corruption at each severity."""
    conditions = [Condition("clean")]
    conditions += [Condition("jpeg", quality=q) for q in sorted(set(qualities), reverse=True)]
    conditions += [Condition("corruption", corruption=c, severity=s) for c in corruptions for s in sorted(severities)]
    return conditions


# --------------------------------------------------------------------------------------------
# Reading: one decode per item, every condition of the pass
# --------------------------------------------------------------------------------------------


def _relative(path: str, root: str) -> str:
    try:
        return os.path.relpath(path, root or ".")
    except ValueError:  # another drive (Windows)
        return path


def condition_rng(seed: int, path: str, root: str, condition: Condition) -> np.random.Generator:
    """The generator of one image under one condition: independent of workers, ranks and passes."""
    return np.random.default_rng([seed & 0xFFFFFFFF, zlib.crc32(os.fsencode(_relative(path, root))),
                                  zlib.crc32(condition.key.encode())])


def _unexpected(path: str, exc: BaseException) -> str:
    return f"{path}: unreadable ({type(exc).__name__}: {' '.join(str(exc).split()) or 'no message'})"


def _condition_failed(path: str, cond: Condition, exc: BaseException) -> str:
    """One line for an image that is readable but fails under ``cond``: a known cause in words, else the exception."""
    if isinstance(exc, TooLargeForJpeg):
        return f"{path}: {cond.label} failed: {exc}"
    return f"{path}: {cond.label} failed ({type(exc).__name__}: {' '.join(str(exc).split()) or 'no message'})"


@dataclass
class _Item:
    index: int
    tensor: Optional[torch.Tensor]  # (V, ...) one row per condition of the pass; zeros where it failed
    errors: list[Optional[str]]  # per condition
    load_error: Optional[str] = None  # the file itself could not be read: every condition fails
    notes: tuple[str, ...] = ()


class ImageVariants(torch.utils.data.Dataset):
    """Decodes an image once and returns it under every condition as uint8 (V, 3, H, W) crops."""

    def __init__(self, samples: Sequence[Sample], pre: Callable[[Image.Image], Image.Image], min_side: int,
                 crop_size: tuple[int, int], conditions: Sequence[Condition], seed: int = 0, root: str = ""):
        self.paths = [s.path for s in samples]
        self.pre, self.min_side, self.crop_size = pre, min_side, tuple(crop_size)
        self.conditions, self.seed, self.root = list(conditions), seed, root

    def __len__(self) -> int:
        return len(self.paths)

    def _variant(self, img: Image.Image, crop: Optional[Image.Image], cond: Condition, path: str) -> torch.Tensor:
        if cond.kind == "corruption":
            out = cond.apply_crop(crop, condition_rng(self.seed, path, self.root, cond))
        elif cond.kind == "jpeg":
            out = self.pre(cond.apply_original(img))
        else:
            out = crop
        pixels = to_uint8_tensor(out)
        if tuple(pixels.shape) != (3, *self.crop_size):
            raise ValueError(f"{cond.label} gave a {tuple(pixels.shape[1:]) + (3,)} image, expected {self.crop_size + (3,)}")
        return pixels

    def __getitem__(self, index: int) -> _Item:
        from .images import load_image

        path = self.paths[index]
        try:
            img = load_image(path, self.min_side)
            crop = self.pre(img) if any(c.kind != "jpeg" for c in self.conditions) else None
        except InputError as exc:
            return _Item(index, None, [str(exc)] * len(self.conditions), load_error=str(exc))
        except Exception as exc:  # noqa: BLE001 -- one odd file is one skipped item
            message = _unexpected(path, exc)
            return _Item(index, None, [message] * len(self.conditions), load_error=message)
        rows: list[Optional[torch.Tensor]] = []
        errors: list[Optional[str]] = []
        for cond in self.conditions:
            try:
                rows.append(self._variant(img, crop, cond, path))
                errors.append(None)
            except Exception as exc:  # noqa: BLE001 -- this condition fails for this image only
                rows.append(None)
                errors.append(_condition_failed(path, cond, exc))
        blank = torch.zeros(3, *self.crop_size, dtype=torch.uint8)
        return _Item(index, torch.stack([r if r is not None else blank for r in rows]), errors)


class VideoVariants(torch.utils.data.Dataset):
    """Every condition's views of a video, (V, clips x crops, 3, T, S, S) float; one decode per condition
    (the frame hook runs inside the decoder's conversion step)."""

    def __init__(self, samples: Sequence[Sample], protocol: Any, mean: Sequence[float], std: Sequence[float],
                 conditions: Sequence[Condition]):
        self.paths = [s.path for s in samples]
        self.protocol, self.mean, self.std = protocol, tuple(mean), tuple(std)
        self.conditions = list(conditions)
        self.hooks = [c.frame_hook() for c in self.conditions]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> _Item:
        from .video import load_video_views

        path = self.paths[index]
        rows: list[Optional[torch.Tensor]] = []
        errors: list[Optional[str]] = []
        notes: tuple[str, ...] = ()
        for k, (cond, hook) in enumerate(zip(self.conditions, self.hooks)):
            try:
                clips = load_video_views(path, self.protocol, self.mean, self.std, frame_hook=hook)
                rows.append(clips.tensor)
                errors.append(None)
                notes = notes or tuple(clips.notes)
            except Exception as exc:  # noqa: BLE001
                message = str(exc) if isinstance(exc, InputError) else _unexpected(path, exc)
                if k == 0 and isinstance(exc, InputError):  # the file itself: no condition can read it
                    return _Item(index, None, [message] * len(self.conditions), load_error=message)
                rows.append(None)
                errors.append(message if isinstance(exc, InputError) else _condition_failed(path, cond, exc))
        shape = next(r.shape for r in rows if r is not None) if any(r is not None for r in rows) else None
        if shape is None:
            return _Item(index, None, errors, load_error=errors[0])
        return _Item(index, torch.stack([r if r is not None else torch.zeros(shape) for r in rows]), errors,
                     notes=notes)


@dataclass
class _Batch:
    indices: list[int]  # items with a tensor, in ``tensor`` order
    tensor: Optional[torch.Tensor]  # (B, V, ...)
    errors: list[list[Optional[str]]]  # per item of ``indices``, per condition
    failed: list[tuple[int, str]]  # items whose file could not be read
    notes: list[tuple[str, ...]]

    def pin_memory(self) -> "_Batch":
        if self.tensor is not None:
            self.tensor = self.tensor.pin_memory()
        return self


def _collate(items: list[_Item]) -> _Batch:
    good = [it for it in items if it.tensor is not None]
    failed = [(it.index, it.load_error or "unreadable") for it in items if it.tensor is None]
    return _Batch([it.index for it in good], torch.stack([it.tensor for it in good]) if good else None,
                  [it.errors for it in good], failed, [it.notes for it in good])


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass
class ModelRun:
    label: str  # the column name: the model name (with #k when a model appears twice)
    name: str
    weights: str
    protocol: str
    weights_key_path: list[str]  # where in the file the weights were, e.g. ["model_ema"]


@dataclass
class Cell:
    """One model under one condition."""

    model: str
    condition: Condition
    n: int
    evaluated: int
    correct1: int
    correct5: int
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, error) of the skipped items
    not_finite: int = 0  # evaluated items whose model output was NaN or inf: their predictions mean nothing

    @property
    def top1(self) -> Optional[float]:
        return 100.0 * self.correct1 / self.evaluated if self.evaluated else None

    @property
    def top5(self) -> Optional[float]:
        return 100.0 * self.correct5 / self.evaluated if self.evaluated else None

    @property
    def error(self) -> Optional[float]:
        return None if self.top1 is None else 100.0 - self.top1


@dataclass
class CorruptionSummary:
    model: str
    corruption: str
    severities: list[int]
    mean_error: Optional[float]  # percent, over the severities run
    ce: Optional[float]  # percent, over the severities run; None where AlexNet's errors do not apply
    alexnet_mean_error: Optional[float]  # percent, AlexNet's mean over the same severities (``severities``)
    why_no_ce: Optional[str] = None


@dataclass
class RobustnessReport:
    dataset: str
    data_dir: str
    kind: str  # image | video (the dataset's, also the noun items are counted in)
    label_set: str
    n: int
    total: int
    models: list[ModelRun]
    conditions: list[Condition]
    cells: dict[tuple[str, str], Cell]
    # (path, error) of the items left out of every condition: files no condition could read, and files that
    # failed under some condition only (so that every row, and each drop, is over the same items)
    skipped: list[tuple[str, str]]
    passes: int
    wall_s: float
    data_wait_s: float
    busy_s: float
    device: str
    dtype: str
    world_size: int = 1
    workers: int = 0
    batch_size: int = 0
    seed: int = 0
    execution: str = "eager"  # eager, CUDA graphs, torch.compile (+ CUDA graphs)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # what the dataset scan left out (stderr's warning: lines)
    limit: Optional[int] = None  # --limit, where it took a subset (n items, of which ``evaluated`` were evaluated)

    @property
    def evaluated(self) -> int:
        """Items evaluated under every condition: at most ``n``, as --limit's unreadable files are not replaced,
        and without the readable ones that failed under some condition (a panorama too wide for JPEG)."""
        return self.n - len(self.skipped)

    @property
    def readable(self) -> int:
        """``evaluated``, under its first name (the JSON key ``readable`` is kept for existing readers)."""
        return self.evaluated

    @property
    def items_title(self) -> str:
        """"24 images", or "23 of 24 images evaluated" where items were skipped (the table's and plot's title):
        not "readable", as an item that failed under one condition only was read."""
        return f"{self.evaluated} of {count(self.n, self.kind)} evaluated" if self.skipped else count(self.n, self.kind)

    @property
    def data_wait_fraction(self) -> Optional[float]:
        return self.data_wait_s / self.busy_s if self.busy_s > 0 else None

    @property
    def evaluations_per_s(self) -> Optional[float]:
        """Items times conditions times models per second of wall time (the run's throughput)."""
        return self.n * len(self.conditions) * len(self.models) / self.wall_s if self.wall_s > 0 else None

    def cell(self, model: str, condition: Condition | str) -> Cell:
        key = condition if isinstance(condition, str) else condition.key
        return self.cells[(model, key)]

    def drop(self, model: str, condition: Condition | str) -> Optional[float]:
        """Clean top-1 minus this condition's top-1, in points (positive: worse than clean)."""
        clean, this = self.cell(model, "clean").top1, self.cell(model, condition).top1
        return None if clean is None or this is None else clean - this

    @property
    def corruptions(self) -> list[str]:
        return list(dict.fromkeys(c.corruption for c in self.conditions if c.kind == "corruption"))

    @property
    def qualities(self) -> list[int]:
        return [c.quality for c in self.conditions if c.kind == "jpeg"]

    @property
    def severities(self) -> list[int]:
        """The corruption severities run (every corruption runs the same ones)."""
        return sorted({c.severity for c in self.conditions if c.kind == "corruption"})

    def corruption_summaries(self, model: str) -> list[CorruptionSummary]:
        """Per corruption: the model's mean error and CE, both over the severities run, AlexNet's too
        (ImageNet-C publishes AlexNet's error per severity, so a subset compares like with like)."""
        out = []
        for name in self.corruptions:
            conds = [c for c in self.conditions if c.corruption == name]
            errors = [self.cell(model, c).error for c in conds]
            sev = [c.severity for c in conds]
            published = CORRUPTIONS[name].alexnet_errors
            alexnet = None if published is None else [100.0 * published[s - 1] for s in sev]
            mean = None if any(e is None for e in errors) else float(np.mean(errors))
            ce, why = None, None
            if not is_builtin(self.label_set):  # chance level alone differs between 1000 classes and N
                why = f"AlexNet's errors are on ImageNet-1k's classes, not on {describe(self.label_set)}"
            elif alexnet is None:
                why = "no published AlexNet errors (ImageNet-C's 'extra' corruptions)"
            elif mean is None:
                why = "no image was evaluated at some severity"
            else:
                ce = 100.0 * corruption_error(errors, alexnet)
            out.append(CorruptionSummary(model, name, sev, mean, ce,
                                         None if alexnet is None else float(np.mean(alexnet)), why))
        return out

    def mce(self, model: str) -> tuple[Optional[float], list[str]]:
        """Mean CE over the corruptions that have one, and their names."""
        ces = [(s.corruption, s.ce) for s in self.corruption_summaries(model) if s.ce is not None]
        return (float(np.mean([v for _, v in ces])), [c for c, _ in ces]) if ces else (None, [])

    def best(self, condition: Condition) -> set[str]:
        """The models with the highest top-1 under ``condition`` (ties: all of them)."""
        scores = {m.label: self.cell(m.label, condition).top1 for m in self.models}
        valid = [v for v in scores.values() if v is not None]
        return {m for m, v in scores.items() if v is not None and v == max(valid)} if valid else set()

    # ---- machine-readable output

    def rows(self) -> list[dict[str, Any]]:
        """One row per model and condition (the CSV rows and the JSON ``results``)."""
        r = lambda v, d=4: None if v is None else round(v, d)  # noqa: E731
        out = []
        for cond in self.conditions:
            for m in self.models:
                cell = self.cell(m.label, cond)
                out.append({"model": m.label, **cond.to_dict(), "n": cell.n, "evaluated": cell.evaluated,
                            "skipped": cell.n - cell.evaluated, "top1": r(cell.top1), "top5": r(cell.top5),
                            "error": r(cell.error), "drop": r(self.drop(m.label, cond)),
                            "best": m.label in self.best(cond), "not_finite": cell.not_finite})
        return out

    def to_dict(self) -> dict[str, Any]:
        r = lambda v, d=4: None if v is None else round(v, d)  # noqa: E731
        summaries, mces = [], {}
        for m in self.models:
            for s in self.corruption_summaries(m.label):
                summaries.append({"model": s.model, "corruption": s.corruption, "severities": s.severities,
                                  "mean_error": r(s.mean_error), "ce": r(s.ce),
                                  "alexnet_mean_error": r(s.alexnet_mean_error), "why_no_ce": s.why_no_ce})
            value, names = self.mce(m.label)
            if self.corruptions:
                mces[m.label] = {"mce": r(value), "corruptions": names, "of_benchmark": len(IMAGENET_C_BENCHMARK),
                                 "severities": self.severities}
        return {
            "command": "robustness", "dataset": self.dataset, "data_dir": self.data_dir, "kind": self.kind,
            "label_set": self.label_set, "total": self.total, "limit": self.limit, "n": self.n,
            "evaluated": self.evaluated, "readable": self.readable, "skipped": len(self.skipped),
            "models": [vars(m).copy() for m in self.models],
            "conditions": [c.to_dict() for c in self.conditions], "results": self.rows(),
            "corruption_errors": summaries, "mce": mces,
            "skipped_items": [{"path": p, "error": e} for p, e in self.skipped],
            "passes": self.passes, "wall_s": r(self.wall_s, 3), "evaluations_per_s": round_rate(self.evaluations_per_s),
            "data_wait_fraction": r(self.data_wait_fraction),
            "device": self.device, "dtype": self.dtype, "world_size": self.world_size, "workers": self.workers,
            "batch_size": self.batch_size, "seed": self.seed, "execution": self.execution, "notes": list(self.notes),
            "warnings": list(self.warnings),
        }

    def write(self, path: str | Path, option: str = "--output") -> None:
        """``.json``: ``to_dict()``; ``.csv``: the per-condition rows, then one ``ce`` row per model and
        corruption and one ``mce`` row per model. A failed write (a full disk) is an OutputError naming
        ``option``, as the CLI's check before the run words it."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".json":
            write_output(option, path, json.dumps(readable_data(self.to_dict()), indent=2) + "\n")
            return
        if suffix != ".csv":
            raise UsageError(f"--output {path}: expected a .json or .csv file name")
        rows = [{**row, "ce": None} for row in self.rows()]
        fields = list(rows[0]) if rows else ["model", "condition"]
        blank = dict.fromkeys(fields)
        for m in self.models:
            for s in self.corruption_summaries(m.label):
                rows.append({**blank, "model": m.label, "condition": f"{s.corruption} (severities "
                             f"{','.join(map(str, s.severities))})", "kind": "ce", "corruption": s.corruption,
                             "error": None if s.mean_error is None else round(s.mean_error, 4),
                             "ce": None if s.ce is None else round(s.ce, 4)})
            value, names = self.mce(m.label)
            if value is not None:
                rows.append({**blank, "model": m.label, "condition": f"mCE ({count(len(names), 'corruption')})",
                             "kind": "mce", "corruption": " ".join(names), "ce": round(value, 4)})
        write_csv(option, path, fields, rows)


# --------------------------------------------------------------------------------------------
# The sweep
# --------------------------------------------------------------------------------------------


def _chunks(items: list, size: int) -> list[list]:
    return [items[k:k + size] for k in range(0, len(items), size)]


def _model_labels(models: Sequence[LoadedModel]) -> list[str]:
    names = [m.entry.name for m in models]
    return [n if names.count(n) == 1 else f"{n}#{names[:k + 1].count(n)}" for k, n in enumerate(names)]


def _partly_failed(errors: dict[tuple[str, str], dict[int, str]], labels: Sequence[str],
                   conditions: Sequence[Condition], load_errors: dict[int, str]) -> dict[int, str]:
    """Items that were read but failed under some condition (for some model), each with its first error in
    condition order: ``run_robustness`` leaves them out of every condition, as if unreadable."""
    out: dict[int, str] = {}
    for cond in conditions:
        for label in labels:
            for index, error in sorted(errors[(label, cond.key)].items()):
                if index not in load_errors:
                    out.setdefault(index, error)
    return out


def _partial_note(n: int, kind: str) -> str:
    return (f"{count(n, kind)} readable but failing under some condition "
            f"{is_are(n)} left out of every condition (named in the skipped items, with the cause), "
            "so every row, and each drop from clean, is over the same items")


def run_robustness(models: Sequence[LoadedModel], data: EvalData, conditions: Sequence[Condition], *,
                   batch_size: int = 64, workers: Optional[int] = None, views: Optional[tuple[int, int]] = None,
                   seed: int = 0, dist: Optional[DistContext] = None, prefetch: int = 2,
                   cuda_graphs: Optional[bool] = None, compile: bool = False,
                   on_progress: Optional[Callable[[int, int], None]] = None) -> RobustnessReport:
    """Evaluates every model under every condition; every rank returns the same, complete report.

    ``batch_size`` counts images (video clips) per forward pass, as in ``evaluate``; a loader batch holds
    about that many variants, so memory in flight is what ``ssmzoo eval`` uses. ``cuda_graphs`` and
    ``compile`` as in ``evaluate``.
    """
    from .evaluate import (BatchTimer, _device_name, check_compatible, loader_workers,
                           describe_video_protocol, image_protocol, not_finite_note, video_protocol)
    from .inference import BatchRunner, Pipeline

    dist = dist or DistContext()
    if not models:
        raise SsmzooError("no model to evaluate")
    conditions = list(conditions)
    if not conditions or conditions[0].kind != "clean":
        raise SsmzooError("the first condition must be the clean one (the reference of every drop)")
    for m in models:
        check_compatible(m.entry, data)
    if data.kind == "video" and any(c.kind == "corruption" for c in conditions):
        raise SweepError("corruptions are defined on images; video models take --jpeg-quality only")
    workers = loader_workers(batch_size, workers, dist)

    labels = _model_labels(models)
    runs: list[ModelRun] = []
    # Models that see the same pixels share passes: same resize/crop (images) or same views (videos).
    groups: dict[Any, list[int]] = {}
    setups: dict[Any, dict[str, Any]] = {}
    norms: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {}  # per image model: ToTensor + Normalize
    for k, m in enumerate(models):
        entry = m.entry
        if data.kind == "image":
            pre, mean, std = split_eval_transform(entry.data)
            key = (repr(pre), entry.data.input_size[-1])
            setups.setdefault(key, {"pre": pre, "min_side": entry.data.input_size[-1],
                                    "crop": tuple(entry.data.input_size[-2:]), "per_item": 1})
            norms[k] = Normalizer(mean, std, m.device)  # on the device: the loader ships uint8 crops
            protocol = image_protocol(m)
        else:
            vp = video_protocol(m, views)
            key = (repr(vp), tuple(entry.data.mean), tuple(entry.data.std))
            setups.setdefault(key, {"protocol": vp, "mean": entry.data.mean, "std": entry.data.std,
                                    "per_item": vp.clips * vp.crops})
            protocol = describe_video_protocol(vp, (entry.video.clips, entry.video.crops))
        groups.setdefault(key, []).append(k)
        runs.append(ModelRun(labels[k], entry.name, m.weights_origin, protocol, list(m.weights_key_path)))

    n = len(data)
    shard = dist.shard(n)
    label_of = np.array([s.label for s in data.samples], dtype=np.int64)
    # Per cell: prediction (-2: another rank's item, -1: skipped), top-5 hit, output not finite.
    pred = {(l, c.key): np.full(n, -2, dtype=np.int32) for l in labels for c in conditions}
    hit5 = {key: np.zeros(n, dtype=bool) for key in pred}
    nonfinite = {key: np.zeros(n, dtype=bool) for key in pred}
    errors: dict[tuple[str, str], dict[int, str]] = {key: {} for key in pred}
    load_errors: dict[int, str] = {}

    plans = []
    for key, members in groups.items():
        per_item = setups[key]["per_item"]
        # Images: every condition in one pass (a crop is small). Videos: a variant is clips x crops views of
        # T frames, so a pass carries as many conditions as fit in a batch, and each is its own decode anyway.
        per_pass = len(conditions) if data.kind == "image" else max(1, min(len(conditions), batch_size // per_item))
        for chunk in _chunks(conditions, per_pass):
            plans.append((key, members, chunk, max(1, batch_size // (len(chunk) * per_item))))
    total_units = len(shard) * len(plans)
    done = 0
    if on_progress is not None:
        on_progress(0, total_units)
    runners = [BatchRunner(m, batch_size, cuda_graphs=cuda_graphs, compile=compile, preprocess=norms.get(k))
               for k, m in enumerate(models)]
    cuda = all(r.cuda for r in runners)

    def scored(k: int, batch: Any, chunk: Sequence[Condition], where: list[list[int]],
               values: torch.Tensor, indices: torch.Tensor) -> None:
        finite = torch.isfinite(values[:, 0]).tolist()
        for r, (i, v) in enumerate(where):
            index, cell = batch.indices[i], (labels[k], chunk[v].key)
            top = indices[r]
            pred[cell][index] = int(top[0])
            hit5[cell][index] = bool((top == int(label_of[index])).any())
            nonfinite[cell][index] = not finite[r]

    timer = BatchTimer()
    start = time.perf_counter()
    with Pipeline() as pipeline:
        for key, members, chunk, items_per_batch in plans:
            setup = setups[key]
            if data.kind == "image":
                dataset: torch.utils.data.Dataset = ImageVariants(
                    data.samples, setup["pre"], setup["min_side"], setup["crop"], chunk, seed, data.root)
            else:
                dataset = VideoVariants(data.samples, setup["protocol"], setup["mean"], setup["std"], chunk)
            loader = torch.utils.data.DataLoader(  # no pin_memory: the runners stage through their own pinned ring
                torch.utils.data.Subset(dataset, shard), batch_size=items_per_batch, shuffle=False,
                num_workers=workers, collate_fn=_collate, prefetch_factor=prefetch if workers > 0 else None)
            for batch in timer.batches(loader):
                for index, error in batch.failed:
                    load_errors[index] = error
                    for k in members:
                        for cond in chunk:
                            pred[(labels[k], cond.key)][index] = -1
                            errors[(labels[k], cond.key)][index] = error
                if batch.tensor is not None:
                    ok = torch.tensor([[e is None for e in row] for row in batch.errors], dtype=torch.bool)
                    rows = batch.tensor[ok]  # (R, ...) every readable (item, condition) pair, item-major
                    where = ok.nonzero().tolist()
                    for k in members:
                        if rows.shape[0]:
                            pipeline.submit(runners[k], rows, setup["per_item"],
                                            lambda v, i, k=k, b=batch, c=chunk, w=where: scored(k, b, c, w, v, i))
                        for i, row_errors in enumerate(batch.errors):
                            for v, error in enumerate(row_errors):
                                if error is not None:
                                    cell = (labels[k], chunk[v].key)
                                    pred[cell][batch.indices[i]] = -1
                                    errors[cell][batch.indices[i]] = error
                done += len(batch.indices) + len(batch.failed)
                if on_progress is not None:
                    on_progress(done, total_units)
    wall = time.perf_counter() - start

    gathered = dist.all_gather((pred, hit5, nonfinite, errors, load_errors, wall, timer.model_wait(pipeline, cuda)))
    if dist.enabled:
        for part_pred, part_hit5, part_nonfinite, part_errors, part_load, _, _ in \
                gathered[:dist.rank] + gathered[dist.rank + 1:]:
            for cell, values in part_pred.items():
                mine = values != -2
                pred[cell][mine] = values[mine]
                hit5[cell][mine] = part_hit5[cell][mine]
                nonfinite[cell][mine] = part_nonfinite[cell][mine]
                errors[cell].update(part_errors[cell])
            load_errors.update(part_load)
    partial = _partly_failed(errors, labels, conditions, load_errors)
    for index, error in partial.items():  # left out of every condition, so each row covers the same items
        load_errors[index] = error
        for cell in pred:
            pred[cell][index] = -1
            errors[cell].setdefault(index, error)
    paths = [s.path for s in data.samples]
    cells: dict[tuple[str, str], Cell] = {}
    for (label, ckey), values in pred.items():
        if (values == -2).any():
            raise RuntimeError(f"robustness sweep left items of {label} / {ckey} unevaluated")
        good = values >= 0
        cond = next(c for c in conditions if c.key == ckey)
        cells[(label, ckey)] = Cell(label, cond, n, int(good.sum()), int((values[good] == label_of[good]).sum()),
                                    int(hit5[(label, ckey)][good].sum()),
                                    [(paths[i], e) for i, e in sorted(errors[(label, ckey)].items())],
                                    int(nonfinite[(label, ckey)][good].sum()))

    notes = list(data.notes)
    limited = data.limit_note(len(load_errors))
    if limited:
        notes.append(limited)
    if partial:
        notes.append(_partial_note(len(partial), data.kind))
    for label, m in zip(labels, models):  # a model's count over all conditions (each row has its own in the JSON)
        not_finite = sum(cells[(label, c.key)].not_finite for c in conditions)
        if not_finite:
            notes.append(not_finite_note(not_finite, "evaluation", label, m.dtype))
    if any(c.kind == "jpeg" for c in conditions):
        where = ("every decoded frame, before the short-side resize" if data.kind == "video" else
                 "the original decoded image, before the model's resize and crop")
        notes.append(f"JPEG: re-encoded in memory, {where}; {JPEG_SETTINGS}")
    if any(c.kind == "corruption" for c in conditions):
        notes.append("corruptions: ImageNet-C definitions (Hendrycks & Dietterich 2019), applied to the model's "
                     "resized and centre-cropped input before normalisation; random ones seeded per image "
                     f"(--seed {seed})")
    passes_per_group = {}
    for key, _, _, _ in plans:
        passes_per_group[key] = passes_per_group.get(key, 0) + 1
    detail = ("each video decoded once per condition" if data.kind == "video" else
              "each image decoded once per resize/crop group")
    notes.append(f"{count(len(conditions), 'condition')} x {count(len(models), 'model')} in "
                 f"{count(len(plans), 'pass', 'passes')} over the data "
                 f"({count(len(groups), 'resize/crop group')}; {detail})")
    first = models[0]
    return RobustnessReport(
        dataset=data.name, data_dir=data.root, kind=data.kind, label_set=data.label_set, n=n, total=data.total,
        limit=data.limited_to, models=runs, conditions=conditions, cells=cells,
        skipped=[(paths[i], e) for i, e in sorted(load_errors.items())], passes=len(plans),
        wall_s=max(w for *_, w, _ in gathered), data_wait_s=sum(d for *_, d in gathered),
        busy_s=sum(w for *_, w, _ in gathered), device=_device_name(first.device, dist.world_size),
        dtype=next((k for k, v in DTYPES.items() if v == first.dtype), str(first.dtype)),
        world_size=dist.world_size, workers=workers, batch_size=batch_size, seed=seed,
        execution=runners[0].mode, notes=notes + [n for r in runners for n in r.notes], warnings=list(data.warnings))


# --------------------------------------------------------------------------------------------
# Presentation: tables, a terminal chart, a matplotlib figure
# --------------------------------------------------------------------------------------------

COLORS = ("cyan", "magenta", "yellow", "green", "blue", "red")
MARKERS = ("●", "■", "▲", "◆", "✚", "★")
OVERLAP = "◉"  # where markers of several models fall on the same character


def _fmt(value: Optional[float], spec: str = ".2f") -> str:
    return "-" if value is None else f"{value:{spec}}"


def results_table(report: RobustnessReport):
    """One row per condition, a (top-1, drop) column pair per model; the best top-1 of a row in bold green."""
    from rich.table import Table

    table = Table(title=f"ssmzoo robustness on {report.dataset} ({report.items_title})", title_justify="left")
    table.add_column("condition", justify="left", overflow="fold")
    for m in report.models:
        table.add_column(f"{m.label}\ntop-1", justify="right", overflow="fold")
        table.add_column("\ndrop", justify="right", overflow="fold")
    previous = None
    for cond in report.conditions:
        group = cond.corruption or cond.kind
        if previous is not None and group != previous:
            table.add_section()
        previous = group
        best = report.best(cond) if len(report.models) > 1 else set()
        cells = []
        for m in report.models:
            cell = report.cell(m.label, cond)
            top1 = _fmt(cell.top1)
            cells.append(f"[bold green]{top1}[/]" if m.label in best else top1)
            cells.append("" if cond.kind == "clean" else _fmt(report.drop(m.label, cond), "+.2f"))
        table.add_row(cond.label, *cells)
    skipped = len(report.skipped)
    per = report.evaluations_per_s or 0.0
    wait = report.data_wait_fraction
    lines = ["top-1 in %; drop = clean top-1 minus this row's, in points"
             + ("; best model per row in bold green" if len(report.models) > 1 else ""),
             f"{report.n - skipped} of {count(report.n, 'item')} evaluated, {skipped} skipped; "
             f"wall {report.wall_s:.1f}s ({rate_text(per)} model-evaluations/s), waiting for data "
             f"{'-' if wait is None else f'{wait * 100:.0f}%'} ({count(report.workers, 'worker')}, batch {report.batch_size}, "
             f"{report.execution}"
             + (f", {report.world_size} processes" if report.world_size > 1 else "")
             + f"), {report.device}, {report.dtype}"]
    for m in report.models:
        lines.append(f"{m.label}: {m.protocol}; weights {weights_label(m.weights, m.weights_key_path)}")
    lines += [f"note: {note}" for note in report.notes]
    extra = [f"{c.label}: {m.label} skipped {len(cell.errors) - skipped} more"
             for c in report.conditions for m in report.models
             if len((cell := report.cell(m.label, c)).errors) > skipped]
    lines += extra[:5]
    table.caption = "\n".join(lines)
    table.caption_justify = "left"
    return table


def severity_text(severities: Sequence[int]) -> str:
    """``1..5`` for a run of three or more, else ``1,5``: how a heading names the severities run."""
    sev = sorted(severities)
    if len(sev) >= 3 and sev == list(range(sev[0], sev[-1] + 1)):
        return f"{sev[0]}..{sev[-1]}"
    return ",".join(map(str, sev))


def ce_table(report: RobustnessReport):
    """Mean error and corruption error per corruption and model, and the mCE; None without corruptions.
    Where no corruption has a CE (a model with its own classes, only ImageNet-C's extra corruptions) the
    AlexNet and CE columns are left out, and one line per cause says why, naming the corruptions."""
    from rich.table import Table

    if not report.corruptions:
        return None
    severities = report.severities
    sev_text = severity_text(severities)
    partial = severities != list(SEVERITIES)
    summaries = {m.label: {s.corruption: s for s in report.corruption_summaries(m.label)} for m in report.models}
    with_ce = any(s.ce is not None for per in summaries.values() for s in per.values())
    if with_ce:
        title = f"ImageNet-C corruption error (CE: error over AlexNet's, severities {sev_text})"
    else:
        title = f"ImageNet-C corruptions: mean error over severities {sev_text}"
    table = Table(title=title, title_justify="left")
    table.add_column("corruption", justify="left", overflow="fold")
    if with_ce:
        table.add_column("AlexNet\nerror", justify="right", overflow="fold")
    for m in report.models:
        table.add_column(f"{m.label}\nerror", justify="right", overflow="fold")
        if with_ce:
            table.add_column("\nCE", justify="right", overflow="fold")
    for name in report.corruptions:
        first = summaries[report.models[0].label][name]
        ces = {lab: s[name].ce for lab, s in summaries.items() if s[name].ce is not None}
        best = {lab for lab, v in ces.items() if v == min(ces.values())} if len(ces) > 1 else set()
        row = [name] + ([_fmt(first.alexnet_mean_error, ".1f")] if with_ce else [])
        for m in report.models:
            s = summaries[m.label][name]
            row.append(_fmt(s.mean_error))
            if with_ce:
                ce = _fmt(s.ce, ".1f")
                row.append(f"[bold green]{ce}[/]" if m.label in best else ce)
        table.add_row(*row)
    lines = [f"error = mean top-1 error (%) over severities {sev_text}"
             + ("; CE and mCE in % (AlexNet = 100), AlexNet's error over the same severities" if with_ce else "")]
    if with_ce:
        table.add_section()
        mces = {m.label: report.mce(m.label) for m in report.models}
        row = ["mCE", ""]
        values = {lab: v for lab, (v, _) in mces.items() if v is not None}
        best = {lab for lab, v in values.items() if v == min(values.values())} if len(values) > 1 else set()
        for m in report.models:
            v = _fmt(mces[m.label][0], ".1f")
            row += ["", f"[bold green]{v}[/]" if m.label in best else v]
        table.add_row(*row)
        names = mces[report.models[0].label][1]
        if names:
            lines.append(f"mCE over {len(names)} of ImageNet-C's {len(IMAGENET_C_BENCHMARK)} corruptions "
                         f"({', '.join(names)})" + ("; published mCE figures average all 15, so compare with care"
                                                     if len(names) < len(IMAGENET_C_BENCHMARK) else ""))
        if partial:
            lines.append(f"CE and mCE over severities {sev_text} only: published ones sum over 1..5, so they "
                         "do not compare")
    causes: dict[str, list[str]] = {}  # one line per cause, its corruptions in table order
    for name in report.corruptions:
        why = summaries[report.models[0].label][name].why_no_ce
        if why:
            causes.setdefault(why, []).append(name)
    lines += [f"no CE{'' if with_ce else '/mCE'} for {', '.join(names)}: {why}" for why, names in causes.items()]
    table.caption = "\n".join(lines)
    table.caption_justify = "left"
    return table


def _y_range(values: Sequence[float]) -> tuple[float, float]:
    """Multiples of 5 around the values, within 0..100 and at least 5 apart."""
    lo = max(0.0, math.floor((min(values) - 1) / 5) * 5)
    hi = min(100.0, math.ceil((max(values) + 1) / 5) * 5)
    if hi - lo < 5:
        lo, hi = max(0.0, hi - 5), max(hi, 5.0)
    return lo, hi


def line_chart(title: str, x_label: str, series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
               x_names: Optional[dict[float, str]] = None, width: int = 60, height: int = 11):
    """A small scatter-and-line chart as rich ``Text``: one marker and colour per series, y in percent."""
    from rich.text import Text

    points = [(x, y) for _, pts in series for x, y in pts if y is not None]
    text = Text()
    text.append(f"{title}\n", style="bold")
    if not points:
        return text.append("(nothing to draw)\n")
    xs = sorted({x for x, _ in points})
    lo_x, hi_x = xs[0], xs[-1]
    lo, hi = _y_range([y for _, y in points])
    grid: list[list[tuple[str, Optional[str]]]] = [[(" ", None)] * width for _ in range(height)]

    def col(x: float) -> int:
        return width // 2 if hi_x == lo_x else round((x - lo_x) / (hi_x - lo_x) * (width - 1))

    def row(y: float) -> int:
        return min(height - 1, max(0, round((hi - y) / (hi - lo) * (height - 1))))

    for k, (_, pts) in enumerate(series):
        style = COLORS[k % len(COLORS)]
        good = sorted((x, y) for x, y in pts if y is not None)
        for (x0, y0), (x1, y1) in zip(good, good[1:]):
            c0, c1 = col(x0), col(x1)
            for c in range(c0 + 1, c1):
                r = row(y0 + (y1 - y0) * (c - c0) / (c1 - c0))
                if grid[r][c][0] == " ":
                    grid[r][c] = ("·", style)
        for x, y in good:
            r, c = row(y), col(x)
            taken = grid[r][c][0] in MARKERS and grid[r][c][1] != style
            grid[r][c] = (OVERLAP, None) if taken or grid[r][c][0] == OVERLAP else (MARKERS[k % len(MARKERS)], style)
    for r in range(height):
        y = hi - (hi - lo) * r / (height - 1)
        text.append(f"{y:6.1f} ┤ " if r in (0, height // 2, height - 1) else "       │ ", style="dim")
        for ch, style in grid[r]:
            text.append(ch, style=style)
        text.append("\n")
    text.append("       └" + "─" * (width + 1) + "\n", style="dim")
    ticks = [" "] * (width + 12)
    for x in xs:
        name = (x_names or {}).get(x, f"{x:g}")
        start = max(0, min(col(x) - len(name) // 2, width + 11 - len(name)))
        if all(ch == " " for ch in ticks[max(0, start - 1):start + len(name) + 1]):
            ticks[start:start + len(name)] = list(name)
    text.append("         " + "".join(ticks).rstrip() + "\n", style="dim")
    text.append(f"         {x_label};  ", style="dim")
    for k, (name, _) in enumerate(series):
        text.append(f"{MARKERS[k % len(MARKERS)]} {name}  ", style=COLORS[k % len(COLORS)])
    if any(ch == OVERLAP for line in grid for ch, _ in line):
        text.append(f"{OVERLAP} several")
    return text.append("\n")


def _jpeg_series(report: RobustnessReport) -> tuple[list, dict[float, str]]:
    qs = sorted(report.qualities)
    step = qs[-1] - qs[-2] if len(qs) > 1 else 10
    clean_x = float(min(100 + step, qs[-1] + step))
    series = []
    for m in report.models:
        pts = [(float(q), report.cell(m.label, f"jpeg_q{q}").top1) for q in qs]
        series.append((m.label, pts + [(clean_x, report.cell(m.label, "clean").top1)]))
    return series, {clean_x: "clean"}


def _severity_series(report: RobustnessReport) -> list:
    series = []
    severities = sorted({c.severity for c in report.conditions if c.kind == "corruption"})
    for m in report.models:
        pts = [(0.0, report.cell(m.label, "clean").top1)]
        for s in severities:
            vals = [report.cell(m.label, c).top1 for c in report.conditions if c.severity == s]
            vals = [v for v in vals if v is not None]
            pts.append((float(s), float(np.mean(vals)) if vals else None))
        series.append((m.label, pts))
    return series


def charts(report: RobustnessReport, width: int = 60) -> list:
    """The terminal charts: top-1 against JPEG quality; mean top-1 over the corruptions against severity."""
    out = []
    if report.qualities:
        series, names = _jpeg_series(report)
        out.append(line_chart("top-1 (%) against JPEG quality", "JPEG quality (clean at the right)", series, names,
                              width=width))
    if report.corruptions:
        out.append(line_chart(f"top-1 (%) against severity, mean over {count(len(report.corruptions), 'corruption')}",
                              "severity (0 = clean)", _severity_series(report), {0.0: "clean"}, width=width))
    return out


PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def check_plot_target(path: Path) -> None:
    """Fails before a long sweep when the figure could not be drawn at the end (the CLI also checks
    that ``path`` can be written)."""
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise UsageError(f"--plot {path}: expected a {', '.join(PLOT_SUFFIXES)} file name")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise SsmzooError("--plot needs matplotlib: pip install -e \".[plot]\" in the ssmzoo repository (or pip "
                          "install matplotlib)") from None


def save_plot(report: RobustnessReport, path: str | Path) -> None:
    """Top-1 against JPEG quality (clean dashed) and/or mean top-1 against severity, one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    panels = (["jpeg"] if report.qualities else []) + (["corruption"] if report.corruptions else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(6.4 * len(panels), 4.4), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, panel in zip(axes[0], panels):
        for k, m in enumerate(report.models):
            color = colors[k % len(colors)]
            clean = report.cell(m.label, "clean").top1
            if panel == "jpeg":
                qs = sorted(report.qualities)
                ys = [report.cell(m.label, f"jpeg_q{q}").top1 for q in qs]
                ax.plot(qs, [np.nan if y is None else y for y in ys], marker="o", color=color, label=m.label)
                if clean is not None:
                    ax.axhline(clean, color=color, linestyle="--", linewidth=1, alpha=0.7)
                ax.set_xlabel("JPEG quality (dashed: clean)")
            else:
                xs, ys = zip(*_severity_series(report)[k][1])
                ax.plot(xs, [np.nan if y is None else y for y in ys], marker="o", color=color, label=m.label)
                ax.set_xticks(list(xs), ["clean" if x == 0 else f"{x:g}" for x in xs])
                ax.set_xlabel(f"severity (mean over {count(len(report.corruptions), 'corruption')})")
        values = [v for line in ax.get_lines() for v in line.get_ydata() if np.isfinite(v)]
        if values:
            lo, hi = _y_range(values)
            ax.set_ylim(lo - 0.02 * (hi - lo), hi + 0.02 * (hi - lo))
        ax.set_ylabel("top-1 (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"ssmzoo robustness: {report.dataset}, {report.items_title}")
    fig.tight_layout()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    except OSError as exc:
        raise OutputError(f"--plot {path}: cannot write it ({exc.strerror or exc})") from None
    finally:
        plt.close(fig)
