"""The model zoo's manifest: which models exist, how to build them, where their weights live.

The packaged ``weights_manifest.yaml`` is read first; a user's file (``--manifest PATH`` or the
``SSMZOO_MANIFEST`` environment variable, several paths joined by ``os.pathsep``) adds entries or
replaces entries of the same name. Every entry is validated when it is read, so a typo fails with
the model's name and the field, not with a ``KeyError`` deep inside a run.

An entry's ``labels`` is one of ssmzoo's label sets or a labels file (``ssmzoo.labels``): a relative path
is taken from the manifest file's folder, so a model folder with its manifest, checkpoint and labels
file works from anywhere. The file is read with the manifest, and ``ModelEntry.labels`` holds its
absolute path.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import yaml

from .architectures import ARCHITECTURES, FAMILIES, builds_video, ours
from .errors import LabelsFileError, ManifestError, ManifestFileError, ManifestOptionError
from .labels import BUILTIN_LABEL_SETS, LABELS_FILE_FORMATS, LABELS_FILE_SUFFIXES, num_classes, read_labels_file
from .paths import missing_file

MANIFEST_ENV = "SSMZOO_MANIFEST"
TASKS = ("image-classification", "video-classification")
LABEL_SETS = BUILTIN_LABEL_SETS  # or a labels file (see _label_set)
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
FORMATS = ("auto", "pth", "safetensors")
SAMPLINGS = ("sparse", "segment", "dense")  # see ssmzoo.video.sample_frame_indices


@dataclass(frozen=True)
class WeightsSource:
    """Where a model's published checkpoint lives on the Hugging Face Hub."""

    repo_id: str
    filename: Optional[str] = None
    filename_pattern: Optional[str] = None
    revision: str = "main"
    sha256: Optional[str] = None
    format: str = "auto"
    state_dict_key: Optional[str] = None
    size_mb: Optional[float] = None


@dataclass(frozen=True)
class DataConfig:
    """Eval preprocessing, in timm's ``pretrained_cfg`` vocabulary."""

    input_size: tuple[int, int, int] = (3, 224, 224)
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    crop_mode: str = "center"

    def as_timm(self) -> dict[str, Any]:
        return {
            "input_size": tuple(self.input_size),
            "crop_pct": self.crop_pct,
            "interpolation": self.interpolation,
            "mean": tuple(self.mean),
            "std": tuple(self.std),
            "crop_mode": self.crop_mode,
        }


@dataclass(frozen=True)
class VideoConfig:
    """Test protocol of a video model, as its authors report their numbers."""

    num_frames: int
    sampling: str = "sparse"
    clips: int = 1
    crops: int = 1
    short_side: int = 224
    crop_size: int = 224


@dataclass(frozen=True)
class Reported:
    """Figures the paper or model zoo reports; never filled with our own measurements."""

    params_m: Optional[float] = None
    gflops: Optional[float] = None
    top1: Optional[float] = None
    top5: Optional[float] = None
    source: Optional[str] = None


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    architecture: str
    task: str
    labels: str  # a label set's name (imagenet-1k, ...) or a labels file's absolute path
    data: DataConfig
    arch_args: Mapping[str, Any] = field(default_factory=dict)
    video: Optional[VideoConfig] = None
    weights: Optional[WeightsSource] = None
    license: Mapping[str, Any] = field(default_factory=dict)
    paper: Mapping[str, Any] = field(default_factory=dict)
    reported: Reported = field(default_factory=Reported)
    notes: str = ""
    ssmzoo_choice: Any = None  # which architecture values are ours, not the paper's (StableMamba)
    source_file: str = ""

    @property
    def is_video(self) -> bool:
        return self.task == "video-classification"

    @property
    def num_classes(self) -> int:
        return num_classes(self.labels)


class _Fields:
    """Reads one mapping of one entry, naming model and field in every complaint."""

    def __init__(self, model: str, where: str, raw: Any, source: str):
        self.model, self.where, self.source = model, where, source
        if not isinstance(raw, Mapping):
            self.fail("", f"expected a mapping, got {type(raw).__name__}")
        self.raw = raw

    def fail(self, key: str, why: str) -> None:
        path = f"{self.where}.{key}" if self.where and key else (self.where or key)
        raise ManifestError(f"{self.source}: model '{self.model}', field '{path}': {why}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., choices=None):
        if key not in self.raw or self.raw[key] is None:
            if default is ...:
                self.fail(key, "is required")
            return default
        value = self.raw[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            self.fail(key, f"expected {names}, got {value!r}")
        if choices is not None and value not in choices:
            self.fail(key, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def numbers(self, key: str, count: int, default: Any, positive: bool = False) -> tuple:
        value = self.get(key, list, default)
        if value is default:
            return tuple(default)
        if len(value) != count or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            self.fail(key, f"expected a list of {count} numbers, got {value!r}")
        if positive and not all(v > 0 for v in value):
            self.fail(key, f"expected positive numbers, got {value!r}")
        return tuple(value)

    def unknown(self, allowed: set[str]) -> None:
        extra = sorted(set(self.raw) - allowed)
        if extra:
            self.fail(extra[0], f"unknown field (allowed: {', '.join(sorted(allowed))})")


def architecture_family(architecture: str) -> Optional[str]:
    """The family of one of ssmzoo's architectures, from its name (each is registered as ``FAMILY_...``);
    None for a name outside them (timm then decides whether it exists)."""
    return next((family for family in FAMILIES if architecture.startswith(f"{family}_")), None)


def architecture_unregistered(architecture: str) -> Optional[str]:
    """Why ``architecture`` names no architecture timm can build (ssmzoo's included, though the ``ssmzoo``
    command imports the package without registering them); None where it does. ssmzoo's own are known from
    ``ssmzoo.architectures`` without importing timm (and torch, which it imports): any other name is
    timm's to judge. A ``hf-hub:``/``local-dir:`` name is timm's to resolve when the model is built, and a
    pretrained tag (``resnet50.a1_in1k``) is not part of the name."""
    if ours(architecture) is not None:
        return None
    import difflib

    import timm
    from timm.models import parse_model_name, split_model_name_tag

    source, name = parse_model_name(architecture)
    if source:
        return None
    name = split_model_name_tag(name)[0]
    if timm.is_model(name):  # (ssmzoo's own were answered above, by ours())
        return None
    close = difflib.get_close_matches(name, sorted(set(timm.list_models()) | set(ARCHITECTURES)), n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return (f"{architecture!r} is not a registered architecture; {hint}ssmzoo's are {', '.join(ARCHITECTURES)} "
            "(or any of timm's: timm.list_models())")


def task_contradiction(task: str, architecture: str, arch_args: Mapping[str, Any], video_model: bool) -> str:
    """Why ``task`` cannot be the task of ``architecture`` built with ``arch_args``, which builds a video
    model where ``video_model`` (``ssmzoo.architectures.builds_video``, or the built model's ``is_video``)."""
    built, other = ("a video", "an image") if video_model else ("an image", "a video")
    with_args = f" with arch_args {dict(arch_args)}" if arch_args else ""
    return (f"{task!r} contradicts architecture '{architecture}'{with_args}, which builds {built} model; set task: "
            f"{'video' if video_model else 'image'}-classification, or pick {other} architecture")


def _built_size(arch_args: Mapping[str, Any]) -> Optional[tuple[int, int]]:
    """The (height, width) ``arch_args.img_size`` builds the model for (an int or a pair, as timm takes
    it): the data config's input size must be that, or eval feeds the model crops of another size (the
    resize before the crop follows from it and crop_pct, as in timm). None where it is absent or not a
    size (the build then names the bad value)."""
    size = arch_args.get("img_size")
    pair = [size, size] if isinstance(size, int) else size
    if not isinstance(pair, list) or len(pair) != 2:
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair):
        return None
    return int(pair[0]), int(pair[1])


def _label_set(top: _Fields, base_dir: Path) -> str:
    """The entry's ``labels``: a label set's name as is, else a labels file, read now (a bad one fails
    here, naming the model) and named by its absolute path."""
    value = top.get("labels", str)
    if value in LABEL_SETS:
        return value
    path = Path(os.path.abspath(base_dir / Path(value).expanduser()))
    if path.suffix.lower() not in LABELS_FILE_SUFFIXES:
        top.fail("labels", f"{value!r} is not one of {', '.join(LABEL_SETS)}, nor a labels file: {path} would "
                           f"need to end in {LABELS_FILE_FORMATS}")
    try:
        read_labels_file(path)
    except LabelsFileError as exc:
        top.fail("labels", str(exc))
    return str(path)


def _parse_entry(name: str, raw: Any, source: str, base_dir: Path) -> ModelEntry:
    top = _Fields(name, "", raw, source)
    top.unknown({"family", "architecture", "arch_args", "task", "labels", "data", "video", "weights",
                 "license", "paper", "reported", "notes", "ssmzoo_choice"})
    task = top.get("task", str, choices=TASKS)
    arch_args = dict(top.get("arch_args", dict, {}))
    family = top.get("family", str, choices=FAMILIES)
    architecture = top.get("architecture", str)
    unregistered = architecture_unregistered(architecture)
    if unregistered is not None:
        top.fail("architecture", unregistered)
    implied = architecture_family(architecture)
    if implied not in (None, family):  # family picks benchmark peers, and `models` filters on it
        top.fail("family", f"{family!r} contradicts architecture {architecture!r}, a {implied} architecture; "
                           f"set family: {implied}, or pick a {family}_* architecture")
    video_model = builds_video(architecture, arch_args)
    if video_model != (task == "video-classification"):  # else every input fails later, with a shape error
        top.fail("task", task_contradiction(task, architecture, arch_args, video_model))
    d = _Fields(name, "data", top.get("data", dict, {}), source)
    d.unknown({"input_size", "crop_pct", "interpolation", "mean", "std", "crop_mode"})
    built_for = _built_size(arch_args)
    input_size = tuple(int(v) for v in d.numbers("input_size", 3, (3, *(built_for or (224, 224))), positive=True))
    if built_for is not None and input_size[1:] != built_for:
        d.fail("input_size", f"{list(input_size)} contradicts arch_args img_size {arch_args['img_size']!r}: the "
                             f"model is built for {built_for[0]}x{built_for[1]} inputs; make them agree, or leave "
                             "input_size out (it follows img_size)")
    data = DataConfig(
        input_size=input_size,  # type: ignore[arg-type]
        crop_pct=d.get("crop_pct", float, 0.875),
        interpolation=d.get("interpolation", str, "bicubic", choices=INTERPOLATIONS),
        mean=d.numbers("mean", 3, (0.485, 0.456, 0.406)),
        std=d.numbers("std", 3, (0.229, 0.224, 0.225), positive=True),
        crop_mode=d.get("crop_mode", str, "center", choices=("center", "squash", "border")),
    )
    if not 0 < data.crop_pct <= 1:
        d.fail("crop_pct", f"must be in (0, 1], got {data.crop_pct}")

    video = None
    if task == "video-classification":
        v = _Fields(name, "video", top.get("video", dict), source)
        v.unknown({"num_frames", "sampling", "clips", "crops", "short_side", "crop_size"})
        video = VideoConfig(
            num_frames=v.get("num_frames", int),
            sampling=v.get("sampling", str, "sparse", choices=SAMPLINGS),
            clips=v.get("clips", int, 1),
            crops=v.get("crops", int, 1),
            short_side=v.get("short_side", int, data.input_size[-1]),
            crop_size=v.get("crop_size", int, data.input_size[-1]),
        )
        for key in ("num_frames", "clips", "crops", "short_side", "crop_size"):
            if getattr(video, key) < 1:
                v.fail(key, "must be >= 1")
        built_frames = arch_args.get("num_frames")
        if built_frames is not None and built_frames != video.num_frames:
            # the model is built for arch_args' clips (classify, eval) or for the protocol's (benchmark),
            # and a constructor's refusal of the protocol's was blamed on arch_args; agreeing values lose
            # nothing (the temporal embedding is resampled on load as it would be in the forward)
            v.fail("num_frames", f"{video.num_frames} contradicts arch_args num_frames {built_frames!r}: the model is "
                                 f"built for {built_frames!r}-frame clips; make them agree, or leave num_frames "
                                 "out of arch_args (the model is then built for video.num_frames)")
    elif "video" in top.raw and top.raw["video"] is not None:
        top.fail("video", "only video-classification models take a video protocol")

    weights = None
    if top.raw.get("weights") is not None:
        w = _Fields(name, "weights", top.get("weights", dict), source)
        w.unknown({"repo_id", "filename", "filename_pattern", "revision", "sha256", "format",
                   "state_dict_key", "size_mb"})
        repo_id = w.get("repo_id", str)
        if repo_id.count("/") != 1:
            w.fail("repo_id", f"expected 'organisation/name', got {repo_id!r}")
        sha = w.get("sha256", str, None)
        if sha is not None and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha.lower())):
            w.fail("sha256", "expected 64 hexadecimal digits")
        weights = WeightsSource(
            repo_id=repo_id,
            filename=w.get("filename", str, None),
            filename_pattern=w.get("filename_pattern", str, None),
            revision=str(w.get("revision", (str, int), "main")),
            sha256=sha.lower() if sha else None,
            format=w.get("format", str, "auto", choices=FORMATS),
            state_dict_key=w.get("state_dict_key", str, None),
            size_mb=w.get("size_mb", float, None),
        )

    r = _Fields(name, "reported", top.get("reported", dict, {}), source)
    r.unknown({"params_m", "gflops", "top1", "top5", "source"})
    reported = Reported(
        params_m=r.get("params_m", float, None),
        gflops=r.get("gflops", float, None),
        top1=r.get("top1", float, None),
        top5=r.get("top5", float, None),
        source=r.get("source", str, None),
    )
    if any(v is not None for v in (reported.params_m, reported.gflops, reported.top1, reported.top5)) \
            and not reported.source:
        r.fail("source", "reported figures need a source")

    labels = _label_set(top, base_dir)
    if "num_classes" in arch_args and arch_args["num_classes"] != num_classes(labels):
        # a head of another size would be given names of this label set: wrong labels, silently
        what = f"labels {labels!r}" if labels in LABEL_SETS else f"labels file {labels}"
        top.fail("arch_args", f"num_classes {arch_args['num_classes']!r} does not match {what} "
                              f"({num_classes(labels)} classes); the head's size comes from labels, so leave it out")
    return ModelEntry(
        name=name,
        family=family,
        architecture=architecture,
        task=task,
        labels=labels,
        data=data,
        arch_args=arch_args,
        video=video,
        weights=weights,
        license=dict(top.get("license", dict, {})),
        paper=dict(top.get("paper", dict, {})),
        reported=reported,
        notes=str(top.get("notes", str, "")),
        ssmzoo_choice=top.raw.get("ssmzoo_choice"),
        source_file=source,
    )


def parse_manifest(text: str, source: str = "<manifest>", base_dir: Optional[Path] = None) -> dict[str, ModelEntry]:
    """The entries of one manifest's text; ``base_dir`` (default: the current folder) is where relative
    labels files are looked for: the manifest file's folder when it was read from one."""
    base_dir = Path.cwd() if base_dir is None else Path(base_dir)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ManifestError(f"{source}{where}: not valid YAML: {problem}") from None
    if doc is None:
        raise ManifestError(f"{source}: the manifest is empty; expected a top-level 'models:' mapping")
    if not isinstance(doc, Mapping) or not isinstance(doc.get("models"), Mapping):
        raise ManifestError(f"{source}: expected a top-level 'models:' mapping")
    entries = {}
    for name, raw in doc["models"].items():
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").replace(".", "").isalnum():
            raise ManifestError(f"{source}: model name {name!r} must be letters, digits, '_', '-' or '.'")
        entries[name] = _parse_entry(name, raw, source, base_dir)
    return entries


def packaged_manifest_text() -> str:
    return resources.files("ssmzoo").joinpath("weights_manifest.yaml").read_text(encoding="utf-8")


# Parsed manifest files, so that a command handling many models (`benchmark --model all`, several --model
# of robustness) reads and validates each file once per process: per (folder, file, source, base dir), the
# file's (mtime, size, inode) and those of the labels files its entries read, and the entries. A file
# that changed (any of the three) is read afresh; one that fails to parse is not remembered. As git does
# for its index, a file changed within _RACY_NS of when it was read may have changed again within the
# file system's timestamp granularity (milliseconds) at the same size: its entries are not remembered.
_parsed: dict[tuple, tuple[tuple, tuple, dict[str, "ModelEntry"]]] = {}
_RACY_NS = 2_000_000_000


def _signature(path: str | Path) -> Optional[tuple]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def _parse_file(path: Path, source: str, base_dir: Optional[Path], read: Callable[[], str]) -> dict[str, ModelEntry]:
    """``parse_manifest(read(), source, base_dir)``, remembered while the file (and its labels files) stay
    the same. ``base_dir`` None is the current folder, as for :func:`parse_manifest`; a relative ``path``
    is a file of the current folder: both are part of the key."""
    key = (os.getcwd(), str(path), source, None if base_dir is None else str(base_dir))
    now, signature = time.time_ns(), _signature(path)
    known = _parsed.get(key)
    if (known is not None and signature is not None and known[0] == signature
            and all(_signature(f) == s for f, s in known[1])):
        return dict(known[2])
    entries = parse_manifest(read(), source, base_dir)  # (a change after the stat above: read again next time)
    labels_files = tuple((e.labels, _signature(e.labels)) for e in entries.values() if e.labels not in LABEL_SETS)
    signatures = [signature, *(s for _, s in labels_files)]
    if all(s is not None and now - s[0] > _RACY_NS for s in signatures):
        _parsed[key] = (signature, labels_files, entries)
    else:
        _parsed.pop(key, None)
    return dict(entries)


def load_manifest(extra: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None = None
                  ) -> dict[str, ModelEntry]:
    """The packaged manifest, then ``SSMZOO_MANIFEST`` files, then ``extra`` (later ones win): one path
    or a list of them. Each file is read and validated once per process while it stays the same (see
    ``_parse_file``)."""
    packaged = resources.files("ssmzoo").joinpath("weights_manifest.yaml")
    if isinstance(packaged, Path):
        entries = _parse_file(packaged, str(packaged), None, packaged_manifest_text)
    else:  # (a package inside a zip file: no file to stat)
        entries = parse_manifest(packaged_manifest_text(), "weights_manifest.yaml")
    paths: list[str | Path] = [p for p in os.environ.get(MANIFEST_ENV, "").split(os.pathsep) if p]
    paths += _manifest_paths(extra)
    for path in paths:
        path = Path(path).expanduser()
        entries.update(_parse_file(path, str(path), path.parent, functools.partial(_read_manifest_file, path)))
    return entries


def _manifest_paths(extra: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None) -> list[str | Path]:
    """``extra`` as a list of paths: a single str or Path is one file, not a sequence of characters."""
    if extra is None:
        return []
    if isinstance(extra, (str, os.PathLike)):
        return [os.fspath(extra)]
    return [os.fspath(p) for p in extra]


def _read_manifest_file(path: Path) -> str:
    """The manifest file's text. A path that names no file (nothing there, or a folder) is a usage error
    (exit code 2, as for any path typed wrong); a file the system will not let us read, or one that is
    not UTF-8 text, is a malformed manifest (exit code 1), as invalid YAML or a bad entry is."""
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        raise ManifestFileError(f"{path}: cannot read manifest: {missing_file(path)}") from None
    except IsADirectoryError:
        raise ManifestFileError(f"{path}: cannot read manifest: it is a folder, not a file") from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read manifest: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: cannot read manifest: not a UTF-8 text (YAML) file") from None


def get_entry(entries: Mapping[str, ModelEntry], name: str) -> ModelEntry:
    if name in entries:
        return entries[name]
    folded = [key for key in entries if key.lower() == name.lower()]
    if len(folded) == 1:  # GroupMamba_Tiny: the names differ only in case, so there is no doubt which
        return entries[folded[0]]
    import difflib

    close = difflib.get_close_matches(name, list(entries), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `ssmzoo models` lists them"
    raise ManifestOptionError(f"unknown model '{name}'{hint}")
