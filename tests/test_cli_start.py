"""The ``ssmzoo`` command starts without torch and timm: its help and argument errors answer at once,
commands that only read the manifest (``models``) need neither, and the others import them where they
build a model. A library ``import ssmzoo`` still registers the architectures with timm. Fresh
interpreters: this process has imported both."""

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "timm")

# The console script's entry point (ssmzoo_cli:main) in a fresh interpreter; prints its exit code and the
# heavy modules imported, as JSON, on stderr's last line (stdout is the command's). {library} is "import
# ssmzoo" for the slow path a library import takes (the models registered with timm first), or nothing.
ENTRY = """
import json, sys
{library}
import ssmzoo_cli
sys.argv = ["ssmzoo", *json.loads(sys.argv[1])]
try:
    ssmzoo_cli.main()
    code = 0
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "timm"))
print(json.dumps({"code": code, "heavy": heavy, "starting": ssmzoo_cli.starting}), file=sys.stderr)
"""


def entry_point(*args: str, library: bool = False) -> tuple[dict, subprocess.CompletedProcess]:
    """``ssmzoo ARGS`` through the console script; ``library``: with ``import ssmzoo`` done first."""
    code = ENTRY.replace("{library}", "import ssmzoo" if library else "")
    done = subprocess.run([sys.executable, "-c", code, json.dumps(list(args))], capture_output=True, text=True,
                          timeout=600)
    return json.loads(done.stderr.strip().splitlines()[-1]), done


@pytest.mark.parametrize("args, code, says", [
    (["--help"], 0, "Usage: ssmzoo"),
    (["models", "--help"], 0, "Usage: ssmzoo models"),
    (["benchmark", "--help"], 0, "--peer"),
    (["--version"], 0, "ssmzoo 0."),
    (["info"], 2, "Missing argument 'MODEL'"),
    (["download", "--bogus", "groupmamba_tiny"], 2, "No such option: --bogus"),
    # these read the manifest: ssmzoo's architectures are known without timm (ssmzoo.architectures)
    (["download", "groupmamba_tiyn"], 2, "unknown model 'groupmamba_tiyn'; did you mean groupmamba_tiny"),
    (["info", "groupmamba_tiyn"], 2, "unknown model 'groupmamba_tiyn'; did you mean groupmamba_tiny"),
    (["models", "nosuch"], 2, "no model matches 'nosuch'"),
    # an empty name is refused as the option is parsed: before the manifest, torch or the Hub
    (["--manifest", "", "models"], 2, "Invalid value for '--manifest': '': empty name; give a path"),
    (["eval", "--dataset", "imagenet", "--weights", ""], 2, "'--weights' / '-w': '': empty name; give a path"),
    (["classify", "x.jpg", "--revision", ""], 2, "'--revision': '': empty name; give a branch, tag or commit"),
    (["convert", "x.pth", ""], 2, "Invalid value for 'OUTPUT': '': empty name; give a path"),
])
def test_help_and_argument_errors_import_neither_torch_nor_timm(args, code, says):
    result, done = entry_point(*args)
    assert result == {"code": code, "heavy": [], "starting": False}, done.stderr
    assert says in done.stdout + done.stderr


def _put_in_hub_cache(repo_id: str, filename: str, data: bytes) -> None:
    """``data`` as huggingface_hub's cache holds ``repo_id``'s ``filename`` at revision main (conftest's
    HF_HUB_CACHE, which the child processes inherit)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = Path(os.environ["HF_HUB_CACHE"]) / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    path = repo / "snapshots" / commit / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _safetensors(values: int) -> bytes:
    """A safetensors file of one float32 tensor, written by hand (no torch here)."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [values], "data_offsets": [0, 4 * values]}}).encode()
    return struct.pack("<Q", len(header)) + header + bytes(4 * values)


CACHED = """
models:
  mine_cached:
    family: groupmamba
    architecture: groupmamba_tiny
    task: image-classification
    labels: imagenet-1k
    weights: {repo_id: ssmzoo-test/cached, filename: model.safetensors}
  mine_damaged:
    family: videomamba
    architecture: videomamba_tiny_video
    task: video-classification
    labels: kinetics-400
    video: {num_frames: 8}
    weights: {repo_id: ssmzoo-test/damaged, filename: model.pth}
"""


@pytest.mark.parametrize("args", [["models"], ["models", "--json"], ["models", "video", "tiny"]])
def test_models_reads_the_manifest_without_torch_and_says_what_the_library_import_says(args):
    # ssmzoo's architectures and what each builds come from ssmzoo.architectures, not timm's registry
    fast, done = entry_point(*args)
    assert fast == {"code": 0, "heavy": [], "starting": False}, done.stderr
    slow, slow_done = entry_point(*args, library=True)
    assert slow["code"] == 0 and {"torch", "timm"} <= set(slow["heavy"]), slow_done.stderr
    assert done.stdout == slow_done.stdout and "groupmamba_tiny" in done.stdout
    assert (done.stderr.splitlines()[:-1], slow_done.stderr.splitlines()[:-1]) == ([], [])


def test_models_checks_cached_files_without_torch_or_timm(tmp_path):
    # a cached file's headers are checked by ssmzoo.checkpoint_files (its bytes alone); the architectures by
    # ssmzoo.architectures
    manifest = tmp_path / "cached.yaml"
    manifest.write_text(CACHED)
    _put_in_hub_cache("ssmzoo-test/cached", "model.safetensors", _safetensors(4))
    _put_in_hub_cache("ssmzoo-test/damaged", "model.pth", b"<html>rate limited</html>")
    for args in (["models", "--json", "mine"], ["models", "mine"]):
        fast, done = entry_point("--manifest", str(manifest), *args)
        assert fast["code"] == 0 and fast["heavy"] == [], (fast, done.stderr)
        slow, slow_done = entry_point("--manifest", str(manifest), *args, library=True)
        assert slow["code"] == 0 and done.stdout == slow_done.stdout, (done.stdout, slow_done.stdout)
    assert {r["name"]: r["weights"] for r in json.loads(entry_point("--manifest", str(manifest), "models", "--json",
                                                                    "mine")[1].stdout)} == {
        "mine_cached": "cached", "mine_damaged": "damaged"}


def test_a_manifest_naming_timms_own_architecture_imports_timm_to_check_it(tmp_path):
    # only names outside ssmzoo's table need timm's registry: a timm model, and a typo (for "did you mean")
    manifest = tmp_path / "timm.yaml"
    manifest.write_text("models:\n  res:\n    family: groupmamba\n    architecture: resnet50.a1_in1k\n"
                        "    task: image-classification\n    labels: imagenet-1k\n")
    fast, done = entry_point("--manifest", str(manifest), "models", "--json", "res")
    assert fast["code"] == 0 and "timm" in fast["heavy"], done.stderr
    assert [r["name"] for r in json.loads(done.stdout)] == ["res"]
    manifest.write_text(manifest.read_text().replace("resnet50.a1_in1k", "groupmamba_tiy"))
    for library in (False, True):
        result, done = entry_point("--manifest", str(manifest), "models", library=library)
        assert result["code"] == 1 and done.stdout == "", done.stderr
        assert ("'groupmamba_tiy' is not a registered architecture; did you mean groupmamba_tiny, "
                "groupmamba_base, groupmamba_small? ssmzoo's are groupmamba_base, ") in done.stderr


def test_a_command_that_builds_a_model_registers_the_architectures(tmp_path):
    # `info` counts the built model's parameters: timm builds it, with ssmzoo's architectures registered
    manifest = tmp_path / "small.yaml"
    manifest.write_text("models:\n  small:\n    family: videomamba\n    architecture: videomamba_tiny\n"
                        "    arch_args: {depth: 1, embed_dim: 32, img_size: 32}\n    task: image-classification\n"
                        "    labels: imagenet-1k\n")
    result, done = entry_point("--manifest", str(manifest), "info", "--json", "small")
    assert result["code"] == 0 and "timm" in result["heavy"], done.stderr
    assert json.loads(done.stdout)["params_m_counted"] > 0


def test_the_architecture_table_is_what_ssmzoo_registers_and_builds():
    """``ssmzoo.architectures`` answers for timm's registry when the manifest is read: it must name every
    architecture ``import ssmzoo`` registers, each with its family (the module that builds it) and what
    it builds with its defaults and with ``num_frames``."""
    import timm
    import torch

    import ssmzoo.models  # (registers the architectures)
    from ssmzoo.architectures import ARCHITECTURES, FAMILIES, VIDEO_FAMILIES, builds_video
    from ssmzoo.manifest import architecture_unregistered

    assert ssmzoo.models.ARCHITECTURES is ARCHITECTURES and ssmzoo.models.builds_video is builds_video
    registered = {name: family for family in FAMILIES for name in timm.list_models(module=family)}
    assert {name: arch.family for name, arch in ARCHITECTURES.items()} == registered
    assert list(ARCHITECTURES) == timm.list_models([f"{family}_*" for family in FAMILIES])  # the error's order
    for name, arch in ARCHITECTURES.items():
        video_family = arch.family in VIDEO_FAMILIES
        for arch_args in ({}, {"num_frames": 4}) if video_family else ({},):
            if video_family:
                with torch.device("meta"):  # (shapes only)
                    model = timm.create_model(name, depth=1, **arch_args)
            else:  # (GroupMamba cannot be built on meta: a small one on the CPU)
                model = timm.create_model(name, stem_hidden_dim=16, embed_dims=[32, 64, 96, 128], depths=[1, 1, 1, 1])
            assert bool(getattr(model, "is_video", False)) == builds_video(name, arch_args), (name, arch_args)
        assert arch.video == builds_video(name, {}) and architecture_unregistered(name) is None


def test_python_m_ssmzoo_starts_without_torch():
    # runpy imports the package before __main__; the package tells it from sys.argv[0] == "-m"
    code = ("import runpy, sys; sys.argv = ['-m', '--help']; sys.orig_argv = [sys.executable, '-m', 'ssmzoo', '--help']\n"
            "try:\n    runpy.run_module('ssmzoo', run_name='__main__', alter_sys=True)\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'timm')), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert "Usage: ssmzoo" in done.stdout and done.stderr.strip().splitlines()[-1] == "[]", done.stderr
    # and as a shell runs it, interpreter options first
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "ssmzoo", "--help"], capture_output=True,
                          text=True, timeout=600)
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert done.returncode == 0 and "ssmzoo.cli" in imported and not imported & set(HEAVY), done.stderr[-2000:]


@pytest.mark.parametrize("code", [
    "import ssmzoo",
    "import ssmzoo_cli, ssmzoo",  # the launcher imported, not started: a library import as any other
    "import sys; sys.argv[0] = '-m'; import ssmzoo",  # inside another `python -c`, not runpy's -m ssmzoo
])
def test_import_ssmzoo_registers_the_models_with_timm(code):
    check = f"{code}\nimport timm; print(timm.is_model('groupmamba_tiny'), type(timm.create_model('groupmamba_tiny')).__module__)"
    done = subprocess.run([sys.executable, "-c", check, "-m", "ssmzoo"], capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "ssmzoo.models.groupmamba"]


@pytest.mark.parametrize("argv, module", [
    (["python", "-m", "ssmzoo", "--help"], "ssmzoo"),
    (["python", "-mssmzoo"], "ssmzoo"),
    (["python", "-Im", "ssmzoo"], "ssmzoo"),
    (["python", "-X", "importtime", "-u", "-W", "ignore", "-m", "ssmzoo"], "ssmzoo"),
    (["python", "-mother", "-m", "ssmzoo"], "other"),  # ssmzoo is an argument of `other`
    (["python", "-c", "import ssmzoo", "-m", "ssmzoo"], None),
    (["python", "-Ic", "import ssmzoo", "-m", "ssmzoo"], None),
    (["python", "script.py", "-m", "ssmzoo"], None),
    (["python", "-", "-m", "ssmzoo"], None),
    (["python"], None),
])
def test_the_module_python_m_runs_is_read_from_the_interpreters_command_line(argv, module):
    from ssmzoo import _module_run

    assert _module_run(argv) == module


def test_a_peer_may_be_one_of_ssmzoos_own_architectures_from_the_command(tmp_path):
    # the command imports the package without registering our architectures; --peer checks timm's registry
    result, done = entry_point("benchmark", "--model", "groupmamba_tiny", "--peer", "videomamba_tiny",
                               "--device", "cpu", "--img-size", "32", "--iters", "1", "--warmup", "0", "--json")
    assert result["code"] == 0, done.stderr
    rows = json.loads(done.stdout)["results"]
    assert [(r["name"], r["kind"]) for r in rows] == [("groupmamba_tiny", "ssmzoo"), ("videomamba_tiny", "peer")]
