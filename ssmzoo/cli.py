"""The ``ssmzoo`` command line: parse, call the library, print. Nothing else lives here."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import threading
from importlib import import_module
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperCommand

from . import __version__
from .errors import ManifestFileError, SsmzooError, UsageError
from .paths import check_output_path, name_problem
from .stdout import StdoutClosed, StdoutError, guarded_stdout
from .text import count, one_line, readable_data

# click's UsageError, from the click typer uses (recent typers carry their own copy of click)
ClickUsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")

app = typer.Typer(
    name="ssmzoo",
    help="Run, evaluate and stress-test vision state-space models (GroupMamba, VideoMamba, StableMamba).",
    epilog="\b\nEnvironment:\n"
           "  SSMZOO_MANIFEST  extra manifest files, ':'-separated (as --manifest)\n"
           "  SSMZOO_SCAN      force the selective-scan backend: torch or triton (default: triton on CUDA, torch\n"
           "                   elsewhere; `ssmzoo info MODEL` shows which runs)\n"
           "  HF_HOME, HF_HUB_CACHE, HF_ENDPOINT, HF_HUB_OFFLINE, HF_TOKEN  where and how weights are fetched\n"
           "                   (huggingface_hub's own variables)\n"
           "  HF_HUB_VERBOSITY huggingface_hub's own messages as they come (default: after a fetch that worked,\n"
           "                   one line each; none before a failed fetch's error)",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)
# Piped output is not squeezed into 80 columns: tables stay whole for `grep` and logs.
out = Console(highlight=False, soft_wrap=True,
              width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)
INFO_WIDTH = 100  # `ssmzoo info`'s table, at most


class _Outputs:
    """What eval and robustness have written so far, for the line an interrupted run ends with
    ("interrupted: nothing written"); ``tracked`` is False for commands that write no results."""
    tracked = False
    written: List[str] = []

    @classmethod
    def reset(cls, tracked: bool = False) -> None:
        cls.tracked, cls.written = tracked, []

    @classmethod
    def interrupted(cls) -> str:
        if not cls.tracked:
            return "interrupted"
        return "interrupted: " + ("wrote " + ", ".join(cls.written) if cls.written else "nothing written")


class State:
    manifests: list[Path] = []


class _Interrupted(Exception):
    """Ctrl-C in a command, carried past typer (which makes it a bare exit code 130) to ``_run``, which
    says so in one line."""


# The commands that build a model: they import torch and timm first, with Ctrl-C held back meanwhile
# (``_import_heavy``). `info` does so once its model is found; `models` and `download` need neither.
_HEAVY_COMMANDS = frozenset({"classify", "eval", "robustness", "benchmark", "convert"})


def _import_heavy() -> None:
    """torch and timm imported (seconds) with Ctrl-C held back (``_interrupts_deferred``)."""
    with _interrupts_deferred():
        import_module("timm")  # (imports torch)


@contextlib.contextmanager
def _interrupts_deferred():
    """Ctrl-C held back while torch and timm import: a KeyboardInterrupt raised inside their C++
    extensions' initialisation can abort the process (pybind11's "terminate called ...", SIGABRT) instead
    of ending the command with exit code 130. Meanwhile SIGINT is only recorded; the KeyboardInterrupt
    comes right after the block. (Signal handlers can be set from the main thread only.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pressed: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pressed.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pressed:
        raise KeyboardInterrupt


class Command(TyperCommand):
    """Every ssmzoo command. A library :class:`UsageError` leaves as click's own usage errors do (exit
    code 2, one line pointing at this command's --help), and an argument's help shows its metavar
    alone (typer appends its type, e.g. ``INPUT <list[str]>``)."""

    def invoke(self, ctx):
        try:
            if ctx.command.name in _HEAVY_COMMANDS:
                _import_heavy()
            return super().invoke(ctx)
        except UsageError as exc:  # a bad --manifest is an option of ssmzoo itself, not of the command
            where = ctx.parent if isinstance(exc, ManifestFileError) and ctx.parent is not None else ctx
            raise ClickUsageError(str(exc), ctx=where) from None
        except KeyboardInterrupt:
            raise _Interrupted() from None

    def collect_usage_pieces(self, ctx) -> list[str]:  # `info [OPTIONS] MODEL`, not typer's `{MODEL}`
        return [re.sub(r"\{([^{}]*)\}", r"\1", piece) for piece in super().collect_usage_pieces(ctx)]

    def format_options(self, ctx, formatter) -> None:  # typer's layout, less the type after an argument
        arguments, options = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                name = (param.metavar or param.name.upper()) + ("..." if param.nargs != 1 else "")
                arguments.append((name, record[1]))
            else:
                options.append(record)
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _none_readable(n: int) -> str:
    """The error of a run whose items all failed to read: 'none of the 3 items', 'the one item'."""
    return "the one item could not be read" if n == 1 else f"none of the {n} items could be read"


def fail(message: str) -> None:
    """A run-time failure: exit code 1 (a usage error is raised as :class:`UsageError` instead). One line,
    whatever file names ``message`` holds (see ``one_line``), and never read as markup."""
    message = one_line(message)
    if err.is_terminal:
        err.print(f"[bold red]error:[/] {escape(message)}", markup=True)
    else:
        print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(1)


def _entries():
    from .manifest import load_manifest

    with _interrupts_deferred():  # (a manifest naming timm's own architectures imports timm to check them)
        return load_manifest(State.manifests)


def _entry(name: str):
    from .manifest import get_entry

    return get_entry(_entries(), name)


def _models_once(names: List[str], done: str) -> list:
    """The manifest entries of ``names``, every name checked first (an unknown one is a usage error), each
    model once in the order first given; a note on stderr names the models given more than once, saying
    each is ``done`` ("fetched") once. GroupMamba_Tiny is groupmamba_tiny too."""
    return _models_and_repeats(names, done)[0]


def _models_and_repeats(names: List[str], done: str) -> tuple[list, list]:
    """``_models_once``, and the names of the models given more than once (for --json's notes)."""
    from .manifest import get_entry

    zoo = _entries()
    named = [get_entry(zoo, name) for name in names]
    entries = list({entry.name: entry for entry in named}.values())
    repeated = [e.name for e in entries if named.count(e) > 1]
    if repeated:
        err.print(f"note: {', '.join(repeated)} given more than once; each model is {done} once", markup=False,
                  style="dim")
    return entries, repeated


def _json_print(obj) -> None:
    print(json.dumps(readable_data(obj), indent=None, default=str))


def _warn(data) -> None:
    """What the dataset scan left out that the user may not expect, one line each (the run goes on)."""
    for message in data.warnings:
        err.print(f"warning: {one_line(message)}", markup=False)


def _version(value: bool) -> None:
    if value:
        print(f"ssmzoo {__version__}")
        raise typer.Exit()


def _checked(text: str, convert=Path, **kwargs):
    """``text`` as ``convert`` makes it, where ``paths.name_problem(text, **kwargs)`` finds nothing wrong: an
    empty name (an unset shell variable, ``--data-dir "$DATA"``) is refused as classify's inputs are, a
    usage error naming the option, before typer would make it ``Path("") == Path(".")`` (or a
    ``--weights ''`` would stand for no --weights at all)."""
    problem = name_problem(text, **kwargs)
    if problem is not None:
        raise typer.BadParameter(problem)
    return convert(text)


def _path(text: str) -> Path:
    """The parser of the files and folders a command reads (--manifest, the data options, convert's
    CHECKPOINT): neither empty nor ``-`` (stdin, not read)."""
    return _checked(text)


def _output(text: str) -> Path:
    """The parser of the files a command writes (--output, --per-sample, --plot, convert's OUTPUT): not
    empty (``-``, a name like any other here, fails the output's own checks)."""
    return _checked(text, read=False)


def _weights(text: str) -> str:
    """The parser of classify's, eval's and robustness' --weights: a path (as ``_path``) or a Hub reference."""
    return _checked(text, str)


def _download_weights(text: str) -> str:
    """The parser of download's --weights: a Hub reference, not empty."""
    from .hub import HUB_REF

    return _checked(text, str, read=False, give=HUB_REF)


def _revision(text: str) -> str:
    """The parser of --revision: not empty (it would stand for the manifest's revision, unsaid)."""
    from .hub import REVISION_NAMES

    return _checked(text, str, read=False, give=REVISION_NAMES)


@app.callback()
def main(
    manifest: Optional[List[Path]] = typer.Option(
        None, "--manifest", parser=_path, metavar="FILE",
        help="Extra manifest YAML adding or overriding models (repeatable; also $SSMZOO_MANIFEST)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    from .allocator import keep_freed_memory

    keep_freed_memory()  # no page faults on every CPU forward ($SSMZOO_MALLOC_TUNING=0: off)
    State.manifests = list(manifest or [])


@app.command("models", cls=Command)
def models_cmd(
    patterns: Optional[List[str]] = typer.Argument(
        None, metavar="PATTERN", help="Only the models a pattern matches: image or video (the task), a glob "
        "against the name (videomamba_*_k400*), or a part of the name, family or manifest task (tiny, groupmamba, "
        "video-classification)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON array instead of a table."),
) -> None:
    """List the zoo: name, family, task, reported figures and whether weights are cached."""
    from .zoo import matching_entries, model_rows

    entries = _entries()
    chosen = matching_entries(entries, patterns or [])
    if not chosen:
        raise UsageError(f"no model matches {' '.join(map(repr, patterns or []))}; `ssmzoo models` lists all "
                         f"{len(entries)}")
    rows = model_rows(chosen)
    if as_json:
        _json_print(rows)
        return
    table = Table(title="ssmzoo models", show_lines=False, caption="params M, top-1: the paper's figures (blank "
                  "where it gives none; `ssmzoo info MODEL` counts the built model's parameters)", caption_justify="left")
    for col, just in [("model", "left"), ("family", "left"), ("task", "left"), ("classes", "right"),
                      ("frames", "right"), ("params M", "right"), ("top-1", "right"), ("weights", "left")]:
        table.add_column(col, justify=just, overflow="fold", no_wrap=col in ("model", "family"))  # whole, to copy
    for r in rows:
        table.add_row(r["name"], r["family"], r["task"], str(r["num_classes"]), str(r["frames"] or ""),
                      "" if r["params_m"] is None else f"{r['params_m']:g}",
                      "" if r["top1"] is None else f"{r['top1']:.1f}", r["weights"])
    out.print(table)


@app.command("info", cls=Command)
def info_cmd(
    model: str = typer.Argument(..., metavar="MODEL", help="Model name (see `ssmzoo models`)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a model's manifest entry, resolved data config, counted parameters and scan backend."""
    from .zoo import info_rows, model_info

    entry = _entry(model)
    _import_heavy()  # (it builds the model, to count its parameters)
    info = model_info(entry)
    if as_json:
        _json_print(info)
        return
    # at most 100 columns, a terminal's width where narrower: its prose wraps where a person reads it, the
    # same piped or not (stdout that is not a terminal is 200 columns wide, for the wide tables of eval)
    table = Table(show_header=False, title=f"{model}", title_justify="left", width=min(out.width, INFO_WIDTH))
    table.add_column("field", style="bold", overflow="fold")
    table.add_column("value", overflow="fold")
    for label, value in info_rows(info):
        table.add_row(label, value)
    out.print(table)


@app.command("download", cls=Command)
def download_cmd(
    models: List[str] = typer.Argument(..., metavar="MODEL", help="Model names to fetch into the Hugging Face cache."),
    revision: Optional[str] = typer.Option(
        None, "--revision", parser=_revision, metavar="REV", help="Hub branch, tag or commit (default: manifest's)."),
    weights: Optional[str] = typer.Option(
        None, "--weights", parser=_download_weights, metavar="HF-HUB-REF", help="Fetch this instead: hf-hub:org/repo[/file][@rev]."),
    as_json: bool = typer.Option(
        False, "--json", help="One JSON array, an object per model (a failed one has its error), instead of lines."),
) -> None:
    """Fetch published weights (cached by huggingface_hub; honours HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE).
    Exit code 1 if any model failed (the others are still fetched)."""
    from .hub import check_weights_request, download_record, resolve_weights

    entries, repeated = _models_and_repeats(models, "fetched")  # every name checked before anything is fetched
    models = [e.name for e in entries]
    if weights and len(models) > 1:
        raise UsageError(f"--weights names one checkpoint; give it with one MODEL, not {len(models)}")
    for entry in entries:  # what the command line says; a model without published weights fails on its own below
        if entry.weights is not None or weights:
            check_weights_request(entry.name, entry.weights, override=weights, revision=revision, local_weights=False)
    failed, records = 0, []
    for name, entry in zip(models, entries):
        try:
            resolved = resolve_weights(entry.name, entry.weights, override=weights, revision=revision, progress=True,
                                       local_weights=False)
        except SsmzooError as exc:
            failed += 1
            err.print(f"error: {one_line(str(exc))}", markup=False)
            record = download_record(name, error=str(exc))  # JSON holds any text as it is
        else:
            if resolved.note:
                err.print(f"{name}: {resolved.note}", markup=False)
            _hub_notes(name, resolved)
            record = download_record(name, resolved)
        if name in repeated:  # stderr's note above, in this model's own record too, fetched or failed
            done = "fetched once" if record["error"] is None else "tried once"
            record["note"] = "; ".join(filter(None, [f"{name} given more than once; {done}", record["note"]]))
        records.append(record)
        if record["error"] is not None:
            continue
        if not as_json:
            print(f"{name}: {resolved.path}  ({resolved.origin}{', already cached' if resolved.cached else ''})")
    if as_json:
        _json_print(records)
    if failed:
        raise typer.Exit(1)


@app.command("convert", cls=Command)
def convert_cmd(
    checkpoint: Path = typer.Argument(..., parser=_path, metavar="CHECKPOINT", help="A .pth/.pt/.bin/.safetensors checkpoint."),
    output: Path = typer.Argument(..., parser=_output, metavar="OUTPUT", help="Where to write the .safetensors file."),
    state_dict_key: Optional[str] = typer.Option(
        None, "--state-dict-key", metavar="KEY", help="Key holding the weights (default: auto)."),
    model: Optional[str] = typer.Option(
        None, "--model", metavar="NAME", help="Also check that the weights load strictly into this model."),
    trust_checkpoint: bool = typer.Option(
        False, "--trust-checkpoint", help="Unpickle CHECKPOINT whatever it holds (e.g. numpy arrays, config "
        "classes), running the code it names: only for a local file you trust, never one from the Hub. Without "
        "it, pickles holding more than tensors, numbers and argparse.Namespace are refused."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a line."),
) -> None:
    """Rewrite a checkpoint as safetensors (no pickle needed to load it again)."""
    from .checkpoint import convert_to_safetensors, load_into_model
    from .errors import WeightsError
    from .factory import adapt_state_dict, build_model

    check_output_path("output", output, (".safetensors",))
    built = build_model(_entry(model)) if model else None  # an unknown model fails before anything is read

    def strict_load(sd):  # before the file is written: a failed check writes nothing
        try:
            load_into_model(built, adapt_state_dict(dict(sd), built), model_name=model)
        except WeightsError as exc:
            raise WeightsError(f"{checkpoint}: {exc}") from None
    written = convert_to_safetensors(checkpoint, output, state_dict_key=state_dict_key,
                                     check=strict_load if model else None, trust=trust_checkpoint)
    if as_json:
        _json_print({**written.to_dict(), "loads_strictly_into": model})
    else:
        print(f"{output}: {count(written.tensors, 'tensor')}" + (f", loads strictly into {model}" if model else ""))


def _hub_notes(model: str, resolved) -> None:
    """What huggingface_hub logged or warned while fetching the weights (e.g. a resumed download), one
    line each on stderr, after the fetch rather than interleaved with it."""
    for line in resolved.hub_messages:
        err.print(f"{model}: huggingface_hub: {line}", markup=False, style="dim")


def _weights_reporter(model: str, enabled: bool = True):
    """``load_model``'s ``on_weights`` for classify, eval and robustness: says on stderr which file was
    picked from a repo listing, what huggingface_hub said, and which checkpoint (and which of its state
    dicts) is in use. ``enabled``: False on the ranks other than the first under torchrun."""
    from .factory import weights_label

    def report(resolved, checkpoint) -> None:
        if not enabled:
            return
        if resolved.note:
            err.print(f"{model}: {resolved.note}", markup=False, style="dim")
        _hub_notes(model, resolved)
        label = weights_label(resolved.origin, checkpoint.key_path if checkpoint is not None else ())
        err.print(f"{model}: weights {label}", markup=False, style="dim")
    return report


def _note_ignored_views(views: Optional[str], entry) -> None:
    if views is not None and not entry.is_video:
        err.print(f"note: --views applies to video models; {entry.name} is an image model, so it is ignored",
                  markup=False, style="dim")


def _parse_views(views: Optional[str]) -> Optional[tuple[int, int]]:
    if views is None:
        return None
    try:
        clips, crops = (int(v) for v in views.lower().split("x"))
        if clips < 1 or crops < 1:
            raise ValueError
    except ValueError:
        raise UsageError(f"--views {views!r}: expected CLIPSxCROPS, e.g. 4x3 or 1x1") from None
    return clips, crops


@app.command("classify", cls=Command)
def classify_cmd(
    inputs: List[str] = typer.Argument(..., metavar="INPUT", help="Image/video files, directories (searched recursively; hidden entries skipped) or glob patterns."),
    model: str = typer.Option(
        "groupmamba_tiny", "--model", "-m", metavar="NAME", help="Model name (see `ssmzoo models`)."),
    weights: Optional[str] = typer.Option(
        None, "--weights", "-w", parser=_weights, metavar="CHECKPOINT",
        help="Checkpoint to use instead of the manifest's: a local .pth/.safetensors or hf-hub:org/repo."),
    revision: Optional[str] = typer.Option(
        None, "--revision", parser=_revision, metavar="REV", help="Hub revision of the weights."),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, metavar="K", help="How many labels per input."),
    device: str = typer.Option("auto", "--device", metavar="DEVICE", help="auto, cpu, cuda or cuda:N."),
    dtype: str = typer.Option(
        "fp32", "--dtype", metavar="DTYPE", help="fp32, fp16 or bf16 (autocast; the scan accumulates in fp32)."),
    batch_size: int = typer.Option(16, "--batch-size", "-b", min=1, metavar="N", help="Images, or a video's views, per forward pass."),
    views: Optional[str] = typer.Option(
        None, "--views", metavar="CLIPSxCROPS", help="Video views CLIPSxCROPS (default: the model's protocol)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per input, one per line (JSON Lines), "
                                 "each naming the model and weights."),
) -> None:
    """Top-k labels for images and videos. Exit code 1 if any input failed (the others are still classified)."""
    from .classify import Classifier, ClassifyResult, drop_duplicates, duplicates_note, expand_inputs, media_kind
    from .evaluate import progress_bar
    from .factory import cpu_half_note, load_model

    parsed_views = _parse_views(views)
    entry = _entry(model)
    _note_ignored_views(views, entry)
    n_classes = entry.num_classes
    if top_k > n_classes:
        err.print(f"note: --top-k {top_k} is more than {entry.name}'s {n_classes} classes; showing them all",
                  markup=False, style="dim")
    notes: list[str] = []
    items, repeated = drop_duplicates(expand_inputs(inputs, notes))
    for note in notes + ([duplicates_note(repeated)] if repeated else []):
        err.print(f"note: {one_line(note)}", markup=False, style="dim")
    weights_origin = key_path = classifier = None  # each --json line says what produced it
    if not all(error for _, error in items):  # else nothing to classify: no model to load (seconds) either
        loaded = load_model(entry, weights=weights, revision=revision, device=device, dtype=dtype,
                            on_weights=_weights_reporter(entry.name))
        weights_origin, key_path = loaded.weights_origin, list(loaded.weights_key_path)
        clips, crops = parsed_views or ((entry.video.clips, entry.video.crops) if entry.video else (1, 1))
        slow_video = (loaded.device.type == "cpu" and entry.is_video and clips * crops > 1
                      and any(media_kind(path) == "video" for path, error in items if not error))
        for note in (cpu_half_note(loaded.device, loaded.dtype),
                     f"{clips}x{crops} = {clips * crops} views per video, each a forward pass of the model on the "
                     "CPU; --views 1x1 for a quick look" if slow_video else None):
            if note:
                err.print(f"note: {note}", markup=False, style="dim")
        classifier = Classifier(loaded, top_k=top_k, batch_size=batch_size, views=parsed_views)
    failed = done = 0
    # a bar while inputs are classified (a folder, a long video: its views, and their blocks, move it too):
    # stdout's lines go above it where stdout is the same terminal, and straight to their file where it is redirected
    bar = progress_bar(err, entry.name, "inputs", transient=True, redirect_stdout=sys.stdout.isatty())
    with bar as update:
        update(0, len(items))
        results = (classifier.run(items, on_video=lambda step: update(done + step.fraction, len(items),
                                                                      f"{entry.name} {step}"))
                   if classifier else (ClassifyResult.failed(path, error) for path, error in items))
        for done, result in enumerate(results, 1):
            failed += _print_result(result, entry.name, weights_origin, key_path, as_json)
            update(done, len(items))
    if failed:
        err.print(f"{failed} of {count(len(items), 'input')} failed", markup=False)
        raise typer.Exit(1)


def _print_result(result, model: str, weights_origin: Optional[str], key_path, as_json: bool) -> int:
    """One classify result on stdout (its error on stderr); 1 if it failed."""
    if not result.ok:
        err.print(f"error: {one_line(result.error)}", markup=False)
    if as_json:
        _json_print({**result.to_dict(), "model": model, "weights": weights_origin, "weights_key_path": key_path})
    elif result.ok:
        out.print(f"[bold]{escape(one_line(result.input))}[/]")
        width = len(str(len(result.top)))  # ranks right-aligned: " 9." above "10."
        for rank, label in enumerate(result.top, 1):
            suffix = f"  [dim]({escape(label.class_id)})[/]" if label.class_id != label.label else ""
            out.print(f"  {rank:>{width}}. {label.probability * 100:6.2f}%  {escape(label.label)}{suffix}")
        for note in result.notes:
            out.print(f"  [dim]note: {escape(note)}[/]")
    return 0 if result.ok else 1


def _eval_option(name: str):
    """An option ``eval`` and ``robustness`` share, defined once (a fresh OptionInfo per use)."""
    specs = {
        "limit": ((None, "--limit"), dict(min=1, metavar="N", help="Take N items: round-robin over classes in "
                                          "file order (deterministic); unreadable ones among them are skipped, "
                                          "not replaced.")),
        "batch_size": ((64, "--batch-size", "-b"), dict(min=1, metavar="N",
                                                         help="Images, or video clips (views), per forward pass.")),
        "workers": ((None, "--workers"), dict(min=0, metavar="N", help="DataLoader workers (default: CPUs per process "
                                              "less 2 above 4 CPUs, at most 32).")),
        "device": (("auto", "--device"), dict(metavar="DEVICE",
                                              help="auto, cpu or cuda (under torchrun: each rank's own GPU).")),
        "views": ((None, "--views"), dict(metavar="CLIPSxCROPS",
                                          help="Video views CLIPSxCROPS (default: the paper's protocol).")),
        "cuda_graphs": ((None, "--cuda-graphs/--no-cuda-graphs"), dict(
            help="Replay each batch's forward from a captured CUDA graph (default: on with CUDA; same kernels and "
                 "predictions, far less launch overhead).")),
        "compile_": ((False, "--compile"), dict(help="torch.compile the model first (a minute or more per model: pays "
                                                "off on large datasets).")),
    }
    args, kwargs = specs[name]
    return typer.Option(*args, **kwargs)

@app.command("eval", cls=Command)
def eval_cmd(
    dataset: str = typer.Option(
        ..., "--dataset", "-d", metavar="NAME", help="imagenet, imagefolder, kinetics400, ssv2 or videolist (any "
        "video model's 'path label' list)."),
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", parser=_path, metavar="DIR", help="imagenet: DIR/val/<synset>/*, DIR/<synset>/*, a flat folder of "
        "<synset>_*.JPEG files, or a flat folder with --labels; imagefolder: DIR/<class>/*; videos: the root the --list paths are relative to (default: the "
        "list's folder)."),
    model: str = typer.Option(
        "groupmamba_tiny", "--model", "-m", metavar="NAME", help="Model name (see `ssmzoo models`)."),
    weights: Optional[str] = typer.Option(
        None, "--weights", "-w", parser=_weights, metavar="CHECKPOINT",
        help="Checkpoint to use instead of the manifest's: a local .pth/.safetensors or hf-hub:org/repo."),
    revision: Optional[str] = typer.Option(
        None, "--revision", parser=_revision, metavar="REV", help="Hub revision of the weights."),
    labels: Optional[Path] = typer.Option(
        None, "--labels", parser=_path, metavar="FILE",
        help="imagenet, flat folder: 'filename label' lines (label: index 0..999, synset or class name)."),
    class_map: Optional[Path] = typer.Option(
        None, "--class-map", parser=_path, metavar="FILE",
        help="imagefolder: 'folder label' lines (or JSON) for folders not named as the model's classes."),
    list_file: Optional[Path] = typer.Option(
        None, "--list", parser=_path, metavar="FILE",
        help="kinetics400/ssv2/videolist: 'path label' lines (space separated or .csv; label: index or class name)."),
    limit: Optional[int] = _eval_option("limit"),
    batch_size: int = _eval_option("batch_size"),
    workers: Optional[int] = _eval_option("workers"),
    device: str = _eval_option("device"),
    dtype: str = typer.Option(
        "fp32", "--dtype", metavar="DTYPE", help="fp32, fp16 or bf16 (autocast; the scan accumulates in fp32)."),
    views: Optional[str] = _eval_option("views"),
    cuda_graphs: Optional[bool] = _eval_option("cuda_graphs"),
    compile_: bool = _eval_option("compile_"),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", parser=_output, metavar="FILE", help="Write the summary to results.json or .csv."),
    per_sample: Optional[Path] = typer.Option(
        None, "--per-sample", parser=_output, metavar="FILE", help="Write each item's prediction to a .csv or .jsonl file."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object instead of a table."),
) -> None:
    """Top-1/top-5 accuracy on a dataset, the paper's way; shards over processes under `torchrun -m ssmzoo eval`."""
    from .datasets import build_dataset
    from .distributed import init_from_env
    from .evaluate import evaluate, progress_bar, summary_table
    from .factory import check_load_options, load_model

    _Outputs.reset(tracked=True)
    parsed_views = _parse_views(views)
    check_output_path("--output", output, (".json", ".csv"))
    check_output_path("--per-sample", per_sample, (".csv", ".jsonl"))
    if output is not None and per_sample is not None and output.resolve() == per_sample.resolve():
        raise UsageError(f"--output and --per-sample both name {output}: the per-item rows would overwrite the summary")
    ctx, device = init_from_env(device)
    try:
        entry = _entry(model)
        check_load_options(entry, weights=weights, revision=revision, device=device, dtype=dtype,
                           cuda_graphs=cuda_graphs)
        if ctx.is_main:
            _note_ignored_views(views, entry)
        data = ctx.main_computes(lambda: build_dataset(dataset, entry, data_dir, labels_file=labels,
                                                       class_map=class_map, list_file=list_file).limit(limit))
        if ctx.is_main:
            _warn(data)
        loaded = ctx.main_first(lambda: load_model(entry, weights=weights, revision=revision, device=device,
                                                   dtype=dtype, progress=ctx.is_main,
                                                   on_weights=_weights_reporter(entry.name, ctx.is_main)))
        unit = "img" if data.kind == "image" else "videos"
        label = f"{entry.name} on {dataset}" + (f" (rank 0 of {ctx.world_size})" if ctx.enabled else "")
        bar = progress_bar(err, label, unit) if ctx.is_main else contextlib.nullcontext(None)
        with bar as update:
            result = evaluate(loaded, data, batch_size=batch_size, workers=workers, views=parsed_views,
                              dist=ctx, cuda_graphs=cuda_graphs, compile=compile_, on_progress=update, on_step=update)
    except SsmzooError as exc:
        if ctx.is_main:
            raise
        raise typer.Exit(exc.exit_code)  # rank 0 prints it
    finally:
        ctx.close()
    if not ctx.is_main:
        return
    for item in result.failed:
        err.print(f"skipped: {one_line(item.error)}", markup=False)
    if output is not None:
        result.write_summary(output)
        _Outputs.written.append(str(output))
    if per_sample is not None:
        result.write_per_sample(per_sample)
        _Outputs.written.append(str(per_sample))
    if as_json:
        _json_print(result.summary())
    else:
        out.print(summary_table(result))
    if result.evaluated == 0:
        fail(_none_readable(result.n))


@app.command("benchmark", cls=Command)
def benchmark_cmd(
    model: Optional[List[str]] = typer.Option(
        None, "--model", "-m", metavar="NAME", help="Model name (repeatable), or 'all' for the whole zoo."),
    op: Optional[str] = typer.Option(
        None, "--op", metavar="NAME", help="Time one operator instead: 'scan' (runs benchmarks/scan.py, CUDA)."),
    op_args: str = typer.Option(
        "", "--op-args", metavar="ARGS", help="Arguments passed to the --op script, e.g. '--no-torch'."),
    batch_size: Optional[int] = typer.Option(
        None, "--batch-size", "-b", metavar="N",
        help="Images (or clips) per forward pass (default: 128 on CUDA, 1 on CPU)."),
    dtype: str = typer.Option("fp32", "--dtype", metavar="DTYPE", help="fp32, fp16 or bf16 (autocast)."),
    img_size: Optional[int] = typer.Option(
        None, "--img-size", metavar="PIXELS", help="Square input side (default: the manifest's, e.g. 224)."),
    frames: Optional[int] = typer.Option(
        None, "--frames", metavar="N", help="Frames per clip for video models (default: the manifest's)."),
    device: str = typer.Option("auto", "--device", metavar="DEVICE", help="auto, cpu, cuda or cuda:N."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile every model (peers too)."),
    compile_mode: Optional[str] = typer.Option(
        None, "--compile-mode", metavar="MODE",
        help="With --compile: default, reduce-overhead, max-autotune or max-autotune-no-cudagraphs."),
    channels_last: bool = typer.Option(False, "--channels-last", help="channels_last model and input (peers: CNNs only)."),
    cuda_graphs: bool = typer.Option(False, "--cuda-graphs", help="Capture the forward in a CUDA graph and time replays."),
    warmup: Optional[int] = typer.Option(
        None, "--warmup", metavar="N", help="Untimed iterations first (default: 10 on CUDA, 2 on CPU)."),
    iters: Optional[int] = typer.Option(
        None, "--iters", metavar="N", help="Timed iterations (default: 50 on CUDA, 10 on CPU)."),
    peers: bool = typer.Option(False, "--peers", help="Also time the timm models a user would pick instead; print ratios."),
    peer: Optional[List[str]] = typer.Option(
        None, "--peer", metavar="NAME", help="A timm model to compare with (repeatable; replaces the default peers)."),
    threads: Optional[int] = typer.Option(None, "--threads", metavar="N", help="CPU threads (torch.set_num_threads)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Inference speed with random weights: throughput, latency, peak GPU memory, params, GFLOPs; peers side by side."""
    import shlex

    from .benchmark import BenchConfig, figure, results_table, run_benchmark, run_scan_op

    if op is not None:
        if op != "scan":
            raise UsageError(f"--op {op!r}: the only operator benchmark is 'scan'")
        if model:
            raise UsageError("--op scan times the scan kernels alone: drop --model")
        try:
            script_args = shlex.split(op_args)
        except ValueError as exc:  # e.g. an unclosed quote
            raise UsageError(f"--op-args {op_args!r}: {exc}") from None
        run_scan_op(script_args)
        return
    if not model:
        raise UsageError("pass --model NAME (repeatable, or 'all') or --op scan")
    if compile_mode is not None and not compile_:  # it would time eager models, saying nothing
        raise UsageError(f"--compile-mode {compile_mode} applies to compiled models: add --compile")
    if "all" in model:  # the other names are still checked: a typo beside 'all' is an error, not ignored
        _models_once([name for name in model if name != "all"], "benchmarked")
        selected = list(_entries().values())
    else:
        selected = _models_once(model, "benchmarked")
    repeated = [name for name in dict.fromkeys(peer or ()) if peer.count(name) > 1]
    if repeated:  # run_benchmark times each peer once; noted as --model repeats are
        err.print(f"note: {', '.join(repeated)} given more than once; each peer is benchmarked once", markup=False,
                  style="dim")
    cfg = BenchConfig(batch_size=batch_size, dtype=dtype, img_size=img_size, frames=frames, device=device,
                      compile=compile_, compile_mode=compile_mode or "default", channels_last=channels_last,
                      cuda_graphs=cuda_graphs, warmup=warmup, iters=iters, peers=peers,
                      peer_names=tuple(peer or ()), threads=threads)

    def progress(name, results, error) -> None:
        if results and not as_json:  # the table's own formatter: the same figure reads the same in both
            err.print(f"{name}: {figure(results[0].samples_per_s, 1)} {results[0].unit}/s", markup=False, style="dim")

    report = run_benchmark(selected, cfg, on_group=progress)
    if as_json:
        _json_print(report.to_dict())
    else:
        if report.results:  # the notes explain the table: none without one
            out.print(results_table(report))
            for note in report.notes:
                out.print(f"[dim]note: {note}[/]")
    for message in report.errors:
        err.print(f"error: {one_line(message)}", markup=False)
    if report.errors:
        raise typer.Exit(1)


@app.command("robustness", cls=Command)
def robustness_cmd(
    dataset: str = typer.Option(
        ..., "--dataset", "-d", metavar="NAME", help="imagenet, imagefolder, kinetics400, ssv2 or videolist."),
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", parser=_path, metavar="DIR", help="As for `ssmzoo eval`: imagenet DIR/val/<synset>/*, "
        "DIR/<synset>/*, a flat folder of <synset>_*.JPEG files, or a flat folder with --labels; imagefolder "
        "DIR/<class>/*; videos: the root of the --list paths."),
    model: Optional[List[str]] = typer.Option(
        None, "--model", "-m", metavar="NAME",
        help="Model name (repeatable: the models are compared side by side; default groupmamba_tiny)."),
    weights: Optional[List[str]] = typer.Option(
        None, "--weights", "-w", parser=_weights, metavar="CHECKPOINT",
        help="Checkpoint per --model, in the same order (repeatable; local file or hf-hub:org/repo)."),
    revision: Optional[str] = typer.Option(
        None, "--revision", parser=_revision, metavar="REV", help="Hub revision of the weights."),
    jpeg_quality: Optional[List[str]] = typer.Option(
        None, "--jpeg-quality", "-q", metavar="START..END", help="JPEG qualities 1..100: START..END[:STEP] (step 10 "
        "by default; END always runs) or a list, e.g. 10..90, 10..90:20, 10,30,50; repeatable (the values are "
        "merged). Each image is re-encoded in memory (Pillow, 4:2:0) before resize/crop."),
    corruption: Optional[List[str]] = typer.Option(
        None, "--corruption", "-c", metavar="NAMES", help="ImageNet-C corruptions, for image models (video models "
        "take --jpeg-quality only), comma separated: gaussian_noise, "
        "shot_noise, impulse_noise, defocus_blur, brightness, contrast, pixelate, jpeg_compression (the 8 of "
        "ImageNet-C's 15 implemented here: 'imagenet-c' runs them), speckle_noise, gaussian_blur, saturate "
        "(ImageNet-C's extra ones: 'all' adds them); repeatable. Applied to the model-size crop."),
    severity: Optional[List[str]] = typer.Option(
        None, "--severity", "-s", metavar="START..END",
        help="Corruption severities 1..5: START..END[:STEP] (1..5, the default; END always runs) or a list "
        "(1,3,5); repeatable."),
    labels: Optional[Path] = typer.Option(
        None, "--labels", parser=_path, metavar="FILE", help="imagenet, flat folder: 'filename label' lines."),
    class_map: Optional[Path] = typer.Option(
        None, "--class-map", parser=_path, metavar="FILE", help="imagefolder: 'folder label' lines (or JSON)."),
    list_file: Optional[Path] = typer.Option(None, "--list", parser=_path, metavar="FILE", help="kinetics400/ssv2/videolist: 'path label' lines."),
    limit: Optional[int] = _eval_option("limit"),
    batch_size: int = _eval_option("batch_size"),
    workers: Optional[int] = _eval_option("workers"),
    device: str = _eval_option("device"),
    dtype: str = typer.Option("fp32", "--dtype", metavar="DTYPE", help="fp32, fp16 or bf16 (autocast)."),
    views: Optional[str] = _eval_option("views"),
    cuda_graphs: Optional[bool] = _eval_option("cuda_graphs"),
    compile_: bool = _eval_option("compile_"),
    seed: int = typer.Option(
        0, "--seed", metavar="INT", help="Seed of the random corruptions (noise), drawn per image and condition."),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", parser=_output, metavar="FILE", help="Write the results to a .json or .csv file."),
    plot: Optional[Path] = typer.Option(
        None, "--plot", parser=_output, metavar="FILE",
        help="Draw top-1 against quality/severity to a .png/.svg/.pdf (needs matplotlib)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as one JSON object instead of tables."),
    no_chart: bool = typer.Option(False, "--no-chart", help="No chart in the terminal after the table."),
) -> None:
    """Top-1 under JPEG re-encoding and ImageNet-C corruptions, models side by side, clean in the same run."""
    from .datasets import build_dataset
    from .distributed import init_from_env
    from .evaluate import progress_bar
    from .factory import check_load_options, load_model
    from .labels import describe, same_classes
    from .robustness import (PLOT_SUFFIXES, SweepError, build_conditions, ce_table, charts, check_plot_target,
                             parse_corruptions, parse_qualities, parse_severities, results_table, run_robustness,
                             save_plot)

    sweep_notes: list[str] = []  # off-grid ENDs, values given more than once: under the table and in --json
    qualities = parse_qualities(jpeg_quality, sweep_notes) if jpeg_quality else []
    corruptions = parse_corruptions(corruption, sweep_notes) if corruption else []
    if severity and not corruptions:
        raise SweepError("--severity applies to --corruption; JPEG qualities are set with --jpeg-quality")
    severities = parse_severities(severity, sweep_notes)
    if not qualities and not corruptions:
        raise UsageError("nothing to sweep: pass --jpeg-quality (e.g. 10..90) and/or --corruption (e.g. imagenet-c)")
    models = list(model or ["groupmamba_tiny"])
    _Outputs.reset(tracked=True)
    if weights and len(weights) != len(models):
        raise UsageError(f"--weights was given {count(len(weights), 'time')} for {len(models)} --model: give one per model, "
                         "in order")
    parsed_views = _parse_views(views)
    check_output_path("--output", output, (".json", ".csv"))
    if plot is not None:
        check_plot_target(plot)
        check_output_path("--plot", plot, PLOT_SUFFIXES)
    entries = [_entry(name) for name in models]
    if not all(same_classes(e.labels, entries[0].labels) for e in entries) or len({e.is_video for e in entries}) > 1:
        raise UsageError("the --model entries must predict the same labels from the same kind of input: "
                         + ", ".join(f"{e.name} ({describe(e.labels)})" for e in entries))
    if entries[0].is_video and corruptions:
        raise UsageError("corruptions are defined on images; video models take --jpeg-quality only (applied frame "
                         "by frame)")
    conditions = build_conditions(qualities, corruptions, severities)
    ctx, device = init_from_env(device)
    if ctx.is_main:
        _note_ignored_views(views, entries[0])
    try:
        for k, entry in enumerate(entries):
            check_load_options(entry, weights=weights[k] if weights else None, revision=revision, device=device,
                               dtype=dtype, cuda_graphs=cuda_graphs)
        data = ctx.main_computes(lambda: build_dataset(dataset, entries[0], data_dir, labels_file=labels,
                                                       class_map=class_map, list_file=list_file).limit(limit))
        if ctx.is_main:
            _warn(data)
        loaded = []
        for k, entry in enumerate(entries):
            override, say = weights[k] if weights else None, _weights_reporter(entry.name, ctx.is_main)
            loaded.append(ctx.main_first(lambda: load_model(entry, weights=override, revision=revision, device=device,
                                                            dtype=dtype, progress=ctx.is_main, on_weights=say)))
        unit = "img" if data.kind == "image" else "videos"
        label = f"{count(len(conditions), 'condition')} x {count(len(loaded), 'model')} on {dataset}" + (
            f" (rank 0 of {ctx.world_size})" if ctx.enabled else "")
        bar = progress_bar(err, label, unit) if ctx.is_main else contextlib.nullcontext(None)
        with bar as update:
            report = run_robustness(loaded, data, conditions, batch_size=batch_size, workers=workers,
                                    views=parsed_views, seed=seed, dist=ctx, cuda_graphs=cuda_graphs,
                                    compile=compile_, on_progress=update)
    except SsmzooError as exc:
        if ctx.is_main:
            raise
        raise typer.Exit(exc.exit_code)  # rank 0 prints it
    finally:
        ctx.close()
    if not ctx.is_main:
        return
    report.notes[:0] = sweep_notes
    # an item that failed under one condition only is among the skipped, left out of every condition
    for path, error in report.skipped:
        err.print(f"skipped: {one_line(error)}", markup=False)
    if output is not None:
        report.write(output)
        _Outputs.written.append(str(output))
    if plot is not None:
        save_plot(report, plot)
        _Outputs.written.append(str(plot))
    if as_json:
        _json_print(report.to_dict())
    else:
        out.print(results_table(report))
        table = ce_table(report)
        if table is not None:
            out.print(table)
        if not no_chart:
            for chart in charts(report):
                out.print(chart)
        if plot is not None:
            out.print(f"plot: {plot}")
    if all(cell.evaluated == 0 for cell in report.cells.values()):
        fail(_none_readable(report.n))


def run(argv: Optional[List[str]] = None) -> None:
    """Console entry point: user errors become one line on stderr, never a traceback; exit code 2 for a
    usage error (an option or argument, whether click or ssmzoo checked it), 1 for a failed run. So is
    stdout that cannot be written (a full disk); a closed pipe (`| head -1`) ends the run quietly."""
    try:
        with guarded_stdout():
            _run(argv)
    except StdoutClosed:  # the reader has what it wanted; exit code 1, as click and Python's docs do
        sys.exit(1)
    except StdoutError as exc:  # found by the last flush, after the command returned
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


def _run(argv: Optional[List[str]]) -> None:
    _Outputs.reset()
    try:
        code = app(args=argv, prog_name="ssmzoo", standalone_mode=False)
    except ClickUsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `ssmzoo` alone: the help, as click shows it
            exc.show()
            sys.exit(exc.exit_code)
        where = exc.ctx.command_path if exc.ctx is not None else "ssmzoo"
        if getattr(exc, "option_name", None) == "--manifest" and where != "ssmzoo":
            print(f"error: --manifest is an option of ssmzoo itself: put it before the command, as in "
                  f"`ssmzoo --manifest FILE {where.split()[-1]} ...` (or set $SSMZOO_MANIFEST)", file=sys.stderr)
            sys.exit(exc.exit_code)
        print(f"error: {exc.format_message()} (see `{where} --help`)", file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Abort:
        print(_Outputs.interrupted(), file=sys.stderr)
        sys.exit(130)
    except SsmzooError as exc:  # (a UsageError from a command arrives as click's, above)
        print(f"error: {one_line(str(exc))}" + (" (see `ssmzoo --help`)" if isinstance(exc, UsageError) else ""),
              file=sys.stderr)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, _Interrupted):
        print(_Outputs.interrupted(), file=sys.stderr)
        sys.exit(130)
    if isinstance(code, int) and code:
        sys.exit(code)
