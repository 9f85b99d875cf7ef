"""Accuracy of one model on one dataset, measured the way the paper measured it, on one process or many.

``evaluate(loaded, data)`` is the library entry point (``ssmzoo eval`` and ``ssmzoo robustness`` call it):
items are read on DataLoader workers (bad files become sentinels), batched through the model under the
requested autocast, and every item gets a ``SampleResult``. Under torchrun each rank evaluates its shard
(items ``rank::world``) and the per-item results are gathered on every rank, so the figures are exactly
those of a single process.

Images use the model's data config (timm's eval transform). Videos use the manifest's test protocol
(frames, temporal sampling, clips x crops, short side, crop size) with the softmax averaged over all
views, as the VideoMamba authors merge their test views.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import torch

from .checkpoint import state_dict_key_text
from .datasets import Batch, EvalData, ImageHook, ImageItems, VideoItems, collate_items
from .distributed import DistContext
from .errors import SsmzooError, UsageError
from .factory import DTYPES, LoadedModel, weights_label
from .inference import BatchRunner, Pipeline, hearing_blocks
from .labels import class_ids, class_names, describe, is_builtin, num_classes, same_classes
from .manifest import ModelEntry
from .paths import write_csv, write_output
from .text import count, rate_text, readable_data, round_rate

# The dataset each label set's published figures were measured on.
REPORTED_ON = {"imagenet-1k": "imagenet", "kinetics-400": "kinetics400", "ssv2": "ssv2"}


def reported_on(label_set: str, kind: str) -> str:
    """The dataset a model's reported top-1 compares with: a labels file's classes can only be read as
    class folders (images) or a list (videos), so a user's own figure for such a model is compared there."""
    if is_builtin(label_set):
        return REPORTED_ON[label_set]
    return "imagefolder" if kind == "image" else "videolist"


@dataclass
class SampleResult:
    index: int
    path: str
    label: int
    prediction: Optional[int] = None
    top5: list[int] = field(default_factory=list)
    probability: Optional[float] = None  # softmax (view-averaged for videos) of the prediction
    error: Optional[str] = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def correct(self) -> Optional[bool]:
        return None if not self.ok else self.prediction == self.label

    @property
    def correct5(self) -> Optional[bool]:
        return None if not self.ok else self.label in self.top5


@dataclass
class EvalResult:
    model: str
    weights: str
    weights_key_path: tuple[str, ...]  # where in the file the weights were, e.g. ("model_ema",)
    dataset: str
    data_dir: str
    kind: str  # image | video
    label_set: str
    protocol: str
    views: int  # per item: 1 for images, clips x crops for videos
    total: int  # items in the dataset before --limit
    samples: list[SampleResult]
    wall_s: float  # the evaluation loop (slowest rank), without model loading
    data_wait_s: float  # summed over ranks
    busy_s: float  # summed over ranks: data_wait_s / busy_s is the waiting fraction
    device: str
    dtype: str
    world_size: int = 1
    workers: int = 0
    batch_size: int = 0
    execution: str = "eager"  # eager, CUDA graphs, torch.compile (+ CUDA graphs)
    limit: Optional[int] = None  # --limit, where it took a subset (n items, of which ``evaluated`` were read)
    reported_top1: Optional[float] = None
    reported_source: Optional[str] = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # what the dataset scan left out (stderr's warning: lines)
    # how this run's protocol differs from the one the paper's top-1 was measured with (e.g. --views), if it does
    protocol_differs: Optional[str] = None

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def evaluated(self) -> int:
        return sum(1 for s in self.samples if s.ok)

    @property
    def failed(self) -> list[SampleResult]:
        return [s for s in self.samples if not s.ok]

    def _rate(self, attr: str) -> Optional[float]:
        good = self.evaluated
        return 100.0 * sum(1 for s in self.samples if getattr(s, attr)) / good if good else None

    @property
    def top1(self) -> Optional[float]:
        """Percent of the readable items whose top prediction is the label (skipped items excluded)."""
        return self._rate("correct")

    @property
    def top5(self) -> Optional[float]:
        return self._rate("correct5")

    @property
    def top1_stderr(self) -> Optional[float]:
        """Binomial standard error of top-1 (percent): the sampling noise of a subset."""
        if not self.evaluated or self.top1 is None:
            return None
        p = self.top1 / 100.0
        return 100.0 * math.sqrt(p * (1.0 - p) / self.evaluated)

    @property
    def comparable(self) -> bool:
        """Whether the paper's figure was measured on this dataset (on all of it, unless --limit), with this
        run's protocol (the same views for a video)."""
        return (self.reported_top1 is not None and reported_on(self.label_set, self.kind) == self.dataset
                and self.protocol_differs is None)

    @property
    def reported_caveat(self) -> Optional[str]:
        """Why there is no diff to the paper's top-1 although the model has one."""
        if self.reported_top1 is None or self.comparable:
            return None
        if reported_on(self.label_set, self.kind) != self.dataset:
            return f"the paper's top-1 was measured on {reported_on(self.label_set, self.kind)}, not on this dataset"
        return f"the paper's top-1 was measured with {self.protocol_differs}: no diff is given"

    @property
    def top1_diff(self) -> Optional[float]:
        return None if not self.comparable or self.top1 is None else self.top1 - self.reported_top1

    @property
    def items_per_s(self) -> Optional[float]:
        return self.evaluated / self.wall_s if self.wall_s > 0 else None

    @property
    def views_per_s(self) -> Optional[float]:
        rate = self.items_per_s
        return None if rate is None else rate * self.views

    @property
    def data_wait_fraction(self) -> Optional[float]:
        return self.data_wait_s / self.busy_s if self.busy_s > 0 else None

    def summary(self) -> dict[str, Any]:
        """Everything but the per-item rows, JSON-ready."""
        r = lambda v, d=4: None if v is None else round(v, d)  # noqa: E731
        return {
            "model": self.model, "weights": self.weights, "weights_key_path": list(self.weights_key_path),
            "dataset": self.dataset, "data_dir": self.data_dir,
            "kind": self.kind, "label_set": self.label_set, "protocol": self.protocol, "views": self.views,
            "total": self.total, "limit": self.limit, "n": self.n, "evaluated": self.evaluated,
            "skipped": len(self.failed),
            "top1": r(self.top1), "top5": r(self.top5), "top1_stderr": r(self.top1_stderr),
            "reported_top1": self.reported_top1, "top1_diff": r(self.top1_diff),
            "reported_source": self.reported_source, "reported_caveat": self.reported_caveat,
            "items_per_s": round_rate(self.items_per_s), "views_per_s": round_rate(self.views_per_s),
            "wall_s": r(self.wall_s, 3), "data_wait_fraction": r(self.data_wait_fraction),
            "device": self.device, "dtype": self.dtype, "world_size": self.world_size,
            "workers": self.workers, "batch_size": self.batch_size, "execution": self.execution, "notes": list(self.notes),
            "warnings": list(self.warnings), "skipped_items": [{"path": s.path, "error": s.error} for s in self.failed],
        }

    def sample_rows(self) -> Iterator[dict[str, Any]]:
        ids, names = class_ids(self.label_set), class_names(self.label_set)
        for s in self.samples:
            yield {
                "index": s.index, "path": s.path, "label": s.label, "label_id": ids[s.label],
                "label_name": names[s.label], "prediction": s.prediction,
                "prediction_id": None if s.prediction is None else ids[s.prediction],
                "prediction_name": None if s.prediction is None else names[s.prediction],
                "probability": None if s.probability is None or not math.isfinite(s.probability)
                else round(s.probability, 6),  # (NaN is not JSON)
                "top5": s.top5, "correct": s.correct, "correct5": s.correct5, "error": s.error,
                "notes": list(s.notes),
            }

    def write_summary(self, path: str | Path) -> None:
        """``.json``: the summary object; ``.csv``: a header and one row (lists joined by ' | ', the key path
        as state_dict_key takes it)."""
        path = Path(path)
        summary = self.summary()
        suffix = path.suffix.lower()
        if suffix == ".json":
            write_output("--output", path, json.dumps(readable_data(summary), indent=2) + "\n")
        elif suffix == ".csv":
            summary["weights_key_path"] = state_dict_key_text(summary["weights_key_path"])
            summary["notes"] = " | ".join(summary["notes"])
            summary["warnings"] = " | ".join(summary["warnings"])
            summary["skipped_items"] = " | ".join(f"{d['error']}" for d in summary["skipped_items"])
            write_csv("--output", path, list(summary), [summary])
        else:
            raise UsageError(f"--output {path}: expected a .json or .csv file name")

    def write_per_sample(self, path: str | Path) -> None:
        """``.jsonl``: one object per item; ``.csv``: one row per item (top5 space separated)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            write_output("--per-sample", path, "".join(json.dumps(readable_data(row)) + "\n" for row in self.sample_rows()))
        elif suffix == ".csv":
            rows = []
            for row in self.sample_rows():
                row["top5"] = " ".join(str(i) for i in row["top5"])
                row["notes"] = " | ".join(row["notes"])
                rows.append(row)
            fields = list(rows[0]) if rows else ["index", "path"]
            write_csv("--per-sample", path, fields, rows)
        else:
            raise UsageError(f"--per-sample {path}: expected a .csv or .jsonl file name")


# --------------------------------------------------------------------------------------------
# Protocol
# --------------------------------------------------------------------------------------------


def image_protocol(loaded: LoadedModel) -> str:
    d = loaded.entry.data
    size = d.input_size[-1]
    if d.crop_mode == "center":
        return f"resize {math.floor(size / d.crop_pct)} {d.interpolation}, center crop {size}"
    return f"{d.crop_mode} {size} {d.interpolation} (crop_pct {d.crop_pct})"


def video_protocol(loaded: LoadedModel, views: Optional[tuple[int, int]] = None):
    """The manifest's test protocol as a ``ssmzoo.video.VideoProtocol``, with ``views`` overriding clips x crops."""
    from .video import VideoProtocol

    entry = loaded.entry
    if entry.video is None:
        raise SsmzooError(f"model '{entry.name}' has no video protocol in its manifest entry")
    try:
        protocol = VideoProtocol(**asdict(entry.video))
        return protocol.with_views(*views) if views is not None else protocol
    except ValueError as exc:
        raise SsmzooError(f"model '{entry.name}': video protocol: {exc}") from None


def views_differ(protocol, paper_views: tuple[int, int]) -> Optional[str]:
    """How ``protocol``'s clips x crops differ from the paper's (``--views``), for ``EvalResult.protocol_differs``;
    None where they are the same. The one comparison that both it and ``describe_video_protocol`` use."""
    if (protocol.clips, protocol.crops) == tuple(paper_views):
        return None
    return (f"{count(paper_views[0], 'clip')} x {count(paper_views[1], 'crop')}, not this run's "
            f"{count(protocol.clips, 'clip')} x {count(protocol.crops, 'crop')} (--views)")


def describe_video_protocol(protocol, paper_views: tuple[int, int]) -> str:
    """The protocol line of a video run; views other than the paper's are marked as --views."""
    views = f"{count(protocol.clips, 'clip')} x {count(protocol.crops, 'crop')}"
    if views_differ(protocol, paper_views) is not None:
        views += f" (--views; the paper's protocol is {paper_views[0]}x{paper_views[1]})"
    return (f"{count(protocol.num_frames, 'frame')}, {protocol.sampling} sampling, {views}, "
            f"short side {protocol.short_side}, crop {protocol.crop_size}, softmax averaged")


def default_workers(dist: Optional[DistContext] = None) -> int:
    """This process's share of the CPUs, less two (the loop and the copy to the GPU) where there are
    more than four, at most 32. On a GPU, decoding JPEGs is what limits eval: on a 16-core H100 host
    the loader alone gave 895 img/s with 8 workers and 1,340 with 14 (docs/gpu_runs/eval_runs.txt)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    per_process = cpus // (dist.local_world_size if dist is not None else 1)
    return max(0, min(32, per_process - 2 if per_process > 4 else per_process))


def loader_workers(batch_size: int, workers: Optional[int], dist: Optional[DistContext] = None) -> int:
    """--batch-size and --workers of a dataset run checked (usage errors), and the workers to use."""
    if batch_size < 1:
        raise UsageError(f"--batch-size {batch_size}: expected a positive number")
    workers = default_workers(dist) if workers is None else workers
    if workers < 0:
        raise UsageError(f"--workers {workers}: expected 0 or more")
    return workers


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


def _device_name(device: torch.device, world: int) -> str:
    name = str(device)
    if device.type == "cuda":
        with contextlib.suppress(Exception):
            name = f"{name} ({torch.cuda.get_device_name(device)})"
    return f"{world} x {name.replace(f'cuda:{device.index}', 'cuda')}" if world > 1 else name


class BatchTimer:
    """Iterates data loaders and adds up the time spent waiting for batches, which (with
    ``model_wait``) says whether more ``--workers`` would help."""

    def __init__(self) -> None:
        self.wait_s = 0.0  # all waits for a batch
        self.first_wait_s = 0.0  # waits for each loader's first batch (worker start-up, nothing to overlap)

    def batches(self, loader: Iterable) -> Iterator:
        iterator = iter(loader)
        first = True
        while True:
            start = time.perf_counter()
            batch = next(iterator, None)
            waited = time.perf_counter() - start
            self.wait_s += waited
            if first:
                self.first_wait_s += waited
                first = False
            if batch is None:
                return
            yield batch

    def model_wait(self, pipeline: Pipeline, cuda: bool) -> float:
        """Seconds the model sat idle for want of data. On CUDA reading overlaps the forward, so that is
        the wait for each loader's first batch plus the GPU's idle gaps between batches; on CPU, where
        nothing overlaps, every wait for a batch."""
        return self.first_wait_s + pipeline.idle_s if cuda else self.wait_s


def check_compatible(entry: ModelEntry, data: EvalData) -> None:
    """A model can only be scored on a dataset with its label set and its kind (image or video): a
    usage error, as --dataset and --model are what the user chose."""
    if not same_classes(data.label_set, entry.labels):
        raise UsageError(f"dataset labels are {describe(data.label_set)}, but {entry.name} predicts "
                         f"{describe(entry.labels)}")
    if (data.kind == "video") != entry.is_video:
        raise UsageError(f"{data.name} is {'a video' if data.kind == 'video' else 'an image'} dataset, but {entry.name} is "
                         f"{'a video' if entry.is_video else 'an image'} model")


def not_finite_note(n: int, unit: str, model: str, dtype: torch.dtype) -> str:
    """The note for ``n`` results (``unit``: item, evaluation) whose model output was not finite (eval's and
    robustness's): a NaN's top-k is an arbitrary class, so their accuracy would read like a real one."""
    return (f"{count(n, unit)} got a model output that is not finite (NaN or inf), so their predictions mean "
            f"nothing: {model}'s weights are broken, or its activations overflow in {str(dtype).removeprefix('torch.')}")


def evaluate(loaded: LoadedModel, data: EvalData, *, batch_size: int = 64, workers: Optional[int] = None,
             views: Optional[tuple[int, int]] = None, image_hook: Optional[ImageHook] = None,
             hook_seed: int = 0, dist: Optional[DistContext] = None, prefetch: int = 4,
             cuda_graphs: Optional[bool] = None, compile: bool = False,
             on_progress: Optional[Callable[[int, int], None]] = None,
             on_step: Optional[Callable[[float, int, str], None]] = None) -> EvalResult:
    """Evaluates ``loaded`` on ``data``; every rank returns the same, complete result.

    ``batch_size`` counts images, or for videos clips (views) per forward pass (at least one whole
    video per batch). ``image_hook`` runs on each RGB PIL image before the eval transform (see
    ``ImageItems``). ``cuda_graphs`` (default: on for CUDA) and ``compile`` pick how the forward runs
    (``ssmzoo.inference.BatchRunner``). ``on_progress(done, total)`` follows this rank's shard. ``on_step``,
    where given, is told within a batch for videos on a CPU, where one batch can take minutes, as the forward
    passes each of the model's blocks: ``on_step(done, total, what)``, ``done`` a fraction, ``what`` e.g.
    ``'videomamba_tiny_k400: batch 3/10, layer 5/24'`` (``progress_bar``'s ``update`` takes both calls).
    """
    dist = dist or DistContext()
    entry = loaded.entry
    check_compatible(entry, data)
    workers = loader_workers(batch_size, workers, dist)

    differs = None
    if data.kind == "image":
        items: torch.utils.data.Dataset = ImageItems(data.samples, entry, image_hook, hook_seed, data.root)
        per_item, items_per_batch, protocol = 1, batch_size, image_protocol(loaded)
    else:
        if image_hook is not None:
            raise SsmzooError("image_hook applies to image datasets only")
        vp = video_protocol(loaded, views)
        items = VideoItems(data.samples, vp, entry.data.mean, entry.data.std)
        per_item = vp.clips * vp.crops
        items_per_batch = max(1, batch_size // per_item)
        paper_views = (entry.video.clips, entry.video.crops)
        protocol, differs = describe_video_protocol(vp, paper_views), views_differ(vp, paper_views)

    shard = dist.shard(len(data))
    runner = BatchRunner(loaded, batch_size, cuda_graphs=cuda_graphs, compile=compile,
                         preprocess=items.normalizer(loaded.device) if isinstance(items, ImageItems) else None)
    loader = torch.utils.data.DataLoader(  # no pin_memory: the runner stages batches through its own pinned ring
        torch.utils.data.Subset(items, shard), batch_size=items_per_batch, shuffle=False,
        num_workers=workers, collate_fn=collate_items, prefetch_factor=prefetch if workers > 0 else None)

    results: list[SampleResult] = []
    paths = [s.path for s in data.samples]
    labels = [s.label for s in data.samples]
    timer = BatchTimer()

    def scored(batch: Batch, values: torch.Tensor, indices: torch.Tensor) -> None:
        for row, index in enumerate(batch.indices):
            top = indices[row].tolist()
            results.append(SampleResult(index, paths[index], labels[index], prediction=top[0], top5=top,
                                        probability=float(values[row, 0]), notes=list(batch.notes[row])))
        if on_progress is not None:
            on_progress(len(results), len(shard))

    # Within a batch only for videos on a CPU, eager: there a batch is minutes; on CUDA it is quick, and a
    # replayed CUDA graph or a compiled forward would not run the hooks (or would break on them).
    within = on_step is not None and data.kind == "video" and not runner.cuda and runner.mode == "eager"
    batches = -(-len(shard) // items_per_batch)

    def passing(number: int, batch: Batch):
        """Tells on_step as this batch's forward passes each block: its rows go through the model in
        runner.passes, each pass through all blocks."""
        if not within:
            return contextlib.nullcontext()
        before, items = len(results), len(batch.indices)
        rows = items * per_item  # (items, views, ...) flattened to rows
        chunks = runner.passes(rows)
        calls = [0]

        def heard(layer: int, layers: int) -> None:
            chunk = min(calls[0] // layers, len(chunks) - 1)
            calls[0] += 1
            share = (sum(chunks[:chunk]) + chunks[chunk] * layer / layers) / rows
            part = f", part {chunk + 1}/{len(chunks)}" if len(chunks) > 1 else ""
            on_step(before + items * share, len(shard),
                        f"{entry.name}: batch {number}/{batches}{part}, layer {layer}/{layers}")

        return hearing_blocks(loaded.model, heard)

    if on_progress is not None:
        on_progress(0, len(shard))
    start = time.perf_counter()
    # On a CPU the forward runs in submit: collecting it at once keeps results (and the bar) up to date.
    with Pipeline(depth=1 if runner.cuda else 0) as pipeline:
        for number, batch in enumerate(timer.batches(loader), 1):
            for index, error in batch.failed:
                results.append(SampleResult(index, paths[index], labels[index], error=error))
            if batch.tensor is not None:
                with passing(number, batch):
                    pipeline.submit(runner, batch.tensor, per_item, lambda v, i, b=batch: scored(b, v, i))
            elif on_progress is not None:
                on_progress(len(results), len(shard))
    wall = time.perf_counter() - start

    gathered = dist.all_gather((results, wall, timer.model_wait(pipeline, runner.cuda)))
    merged = sorted((r for part, _, _ in gathered for r in part), key=lambda r: r.index)
    if [r.index for r in merged] != list(range(len(data))):  # sharding must cover each item exactly once
        raise RuntimeError(f"evaluation covered {len(merged)} results for {len(data)} items")
    notes = list(data.notes)
    limited = data.limit_note(sum(1 for r in merged if not r.ok))
    if limited:
        notes.append(limited)
    not_finite = sum(1 for r in merged if r.probability is not None and not math.isfinite(r.probability))
    if not_finite:
        notes.append(not_finite_note(not_finite, "item", entry.name, loaded.dtype))
    if num_classes(entry.labels) <= 5:
        notes.append(f"top-5 takes in all {num_classes(entry.labels)} classes of {entry.name}: 100% by definition")
    return EvalResult(
        model=entry.name, weights=loaded.weights_origin, weights_key_path=loaded.weights_key_path,
        dataset=data.name, data_dir=data.root, kind=data.kind,
        label_set=data.label_set, protocol=protocol, views=per_item, total=data.total, samples=merged,
        wall_s=max(w for _, w, _ in gathered), data_wait_s=sum(d for _, _, d in gathered),
        busy_s=sum(w for _, w, _ in gathered), device=_device_name(loaded.device, dist.world_size),
        dtype=next((k for k, v in DTYPES.items() if v == loaded.dtype), str(loaded.dtype)),
        world_size=dist.world_size, workers=workers, batch_size=batch_size, execution=runner.mode,
        limit=data.limited_to,
        reported_top1=entry.reported.top1, reported_source=entry.reported.source, notes=notes + runner.notes,
        warnings=list(data.warnings), protocol_differs=differs)


# --------------------------------------------------------------------------------------------
# Presentation (shared by `eval` and `robustness`)
# --------------------------------------------------------------------------------------------


def progress_bar(console, description: str, unit: str, *, transient: bool = False, redirect_stdout: bool = True):
    """A rich progress bar (items/s, ETA) on ``console``; use as ``with progress_bar(...) as update:``
    and pass ``update`` as ``on_progress``. ``update(done, total, what)`` shows ``what`` (plain text) instead
    of ``description`` until the next update; ``done`` may be a fraction (inputs done, and a long video's share).
    ``transient``: gone when done. ``redirect_stdout``: what is written to stdout meanwhile is printed
    above the bar (rich's default), which is right only while stdout is the bar's terminal, not a file."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
    from rich.text import Text

    def rate(task) -> Optional[float]:  # the average since the start: steady for batched evaluation
        elapsed = task.finished_time or task.elapsed
        return task.completed / elapsed if task.completed and elapsed else None

    class Rate(ProgressColumn):
        def render(self, task) -> Text:
            r = rate(task)
            return Text(f"{r:.1f} {unit}/s" if r else f"- {unit}/s", style="cyan")

    class Eta(ProgressColumn):
        def render(self, task) -> Text:
            r = rate(task)
            if not r or task.total is None:
                return Text("eta -:--:--", style="cyan")
            left = int(max(0.0, task.total - task.completed) / r)
            return Text(f"eta {left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}", style="cyan")

    @contextlib.contextmanager
    def bar() -> Iterator[Callable[..., None]]:
        if not console.is_terminal:  # a log or a pipe: no bar, and no blank line where it would have been
            yield lambda done, total, what=None: None
            return
        progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), Rate(),
                            TimeElapsedColumn(), Eta(), console=console, transient=transient,
                            redirect_stdout=redirect_stdout)
        with progress:
            task = progress.add_task(description, total=None)

            def update(done: float, total: int, what: Optional[str] = None) -> None:
                progress.update(task, completed=done, total=total, description=description if what is None else what)

            yield update

    return bar()


def _fmt(value: Optional[float], spec: str = ".2f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def summary_table(result: EvalResult):
    from rich.table import Table

    unit = "img/s" if result.kind == "image" else "clips/s"
    table = Table(title=f"ssmzoo eval: {result.model} on {result.dataset}", title_justify="left")
    for col in ("model", "dataset", "evaluated", "top-1", "top-5", "paper top-1", "diff", unit, "device", "dtype"):
        table.add_column(col, justify="left" if col in ("model", "dataset", "device", "dtype") else "right", overflow="fold")
    top1 = _fmt(result.top1)
    if result.top1_stderr is not None and result.top1 is not None:
        top1 += f" ±{result.top1_stderr:.2f}"
    table.add_row(result.model, result.dataset, str(result.evaluated), top1, _fmt(result.top5),
                  _fmt(result.reported_top1, ".1f"), _fmt(result.top1_diff, "+.2f"),
                  "-" if result.views_per_s is None else rate_text(result.views_per_s), result.device, result.dtype)
    wait = result.data_wait_fraction
    lines = [f"protocol: {result.protocol}",
             f"{result.evaluated} of {count(result.n, 'item')} evaluated"
             + (f", {len(result.failed)} unreadable skipped" if result.failed else "")
             + (f"; {rate_text(result.items_per_s, 2)} videos/s" if result.kind == "video" and result.items_per_s else ""),
             f"wall {result.wall_s:.1f}s, waiting for data {_fmt(None if wait is None else wait * 100, '.0f', '%')}"
             f" ({count(result.workers, 'worker')}, batch {result.batch_size}, {result.execution}"
             + (f", {result.world_size} processes" if result.world_size > 1 else "") + ")"]
    if result.reported_caveat:
        lines.append(result.reported_caveat)
    lines.append(f"weights: {weights_label(result.weights, result.weights_key_path)}")
    lines += [f"note: {n}" for n in result.notes]
    table.caption = "\n".join(lines)
    table.caption_justify = "left"
    return table
