"""First use of a model downloads its weights from the Hub (a real local server), later uses hit the cache."""

import contextlib
import hashlib
import io
import json
import os
import pickle
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as st_save

from conftest import MINI_MANIFEST
from hub_server import FakeHub

REPO, FILE = "ssmzoo-test/groupmamba-mini", "groupmamba_mini.pth"  # the mini manifest's weights


@pytest.fixture()
def hub(monkeypatch, tmp_path):
    server = FakeHub().start()
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    yield server
    server.stop()


def test_download_then_classify_from_cache_offline(cli, hub, mini_files, example_images, monkeypatch):
    manifest, checkpoint = mini_files
    hub.add_file("ssmzoo-test/groupmamba-mini", "groupmamba_mini.pth", checkpoint.read_bytes())

    listed = {r["name"]: r for r in json.loads(cli("--manifest", manifest, "models", "--json").stdout)}
    assert listed["groupmamba_mini"]["weights"] == "hub"

    res = cli("--manifest", manifest, "download", "groupmamba_mini")
    assert res.code == 0, res.stderr
    assert "hf-hub:ssmzoo-test/groupmamba-mini" in res.stdout and hub.downloads() == 1
    assert "already cached" not in res.stdout
    again = cli("--manifest", manifest, "download", "groupmamba_mini")  # the line says nothing was fetched
    assert again.code == 0 and again.stdout.rstrip().endswith(", already cached)") and hub.downloads() == 1

    listed = {r["name"]: r for r in json.loads(cli("--manifest", manifest, "models", "--json").stdout)}
    assert listed["groupmamba_mini"]["weights"] == "cached"

    hub.reset_log()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    res = cli("--manifest", manifest, "classify", example_images / "chelsea.jpg", "--model", "groupmamba_mini", "--json")
    assert res.code == 0, res.stderr
    assert len(json.loads(res.stdout)["top"]) == 5
    assert hub.requests == []  # offline: nothing was asked of the server


def test_first_classify_downloads_and_revision_is_honoured(cli, hub, mini_files, example_images):
    manifest, checkpoint = mini_files
    hub.add_file("ssmzoo-test/groupmamba-mini", "groupmamba_mini.pth", b"not this one")
    hub.add_file("ssmzoo-test/groupmamba-mini", "groupmamba_mini.pth", checkpoint.read_bytes(), revision="v2")
    res = cli("--manifest", manifest, "classify", example_images / "coffee.jpg", "--model", "groupmamba_mini",
              "--revision", "v2", "--json")
    assert res.code == 0, res.stderr
    assert "@v2" in res.stderr
    res = cli("--manifest", manifest, "classify", example_images / "coffee.jpg", "--model", "groupmamba_mini")
    assert res.code == 1 and "Traceback" not in res.stderr
    assert len([line for line in res.stderr.splitlines() if line.startswith("error:")]) == 1


def test_download_checks_every_name_before_fetching_any(cli, hub, mini_files):
    manifest, checkpoint = mini_files
    hub.add_file("ssmzoo-test/groupmamba-mini", "groupmamba_mini.pth", checkpoint.read_bytes())
    res = cli("--manifest", manifest, "download", "groupmamba_mini", "groupmamba_minni")
    assert res.code == 2 and res.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "groupmamba_minni" in res.stderr and hub.downloads() == 0


def test_a_model_without_published_weights_fails_alone(cli, hub, mini_files):
    # it used to stop the whole command (exit code 2) before the other models were even tried
    manifest, checkpoint = mini_files
    hub.add_file(REPO, FILE, checkpoint.read_bytes())
    res = cli("--manifest", manifest, "download", "stablemamba_tiny_in1k", "groupmamba_mini")
    [line] = res.stderr.splitlines()
    assert res.code == 1 and res.stdout.startswith("groupmamba_mini: ") and hub.downloads() == 1
    assert line.startswith("error: model 'stablemamba_tiny_in1k' has no published weights, so there is nothing to "
                           "download")
    assert "--weights hf-hub:" in line and "--weights PATH" in line and "classify, eval or robustness" in line
    res = cli("--manifest", manifest, "download", "stablemamba_tiny_in1k", "groupmamba_mini", "--json")
    stable, mini = json.loads(res.stdout)
    assert res.code == 1 and stable["error"] == line.removeprefix("error: ") and stable["path"] is None
    assert mini["error"] is None and mini["already_cached"] is True


def test_a_model_named_twice_is_fetched_once(cli, hub, mini_files):
    manifest, checkpoint = mini_files
    hub.add_file(REPO, FILE, checkpoint.read_bytes())
    res = cli("--manifest", manifest, "download", "groupmamba_mini", "GroupMamba_Mini", "groupmamba_mini", "--json")
    [record] = json.loads(res.stdout)
    assert res.code == 0 and record["model"] == "groupmamba_mini"
    assert res.stderr == "note: groupmamba_mini given more than once; each model is fetched once\n"
    assert record["note"] == "groupmamba_mini given more than once; fetched once"  # --json holds it too
    assert hub.downloads() == 1


def test_download_weights_must_name_a_hub_file(cli, hub, mini_files):
    # a local checkpoint has nothing to download: reporting it as fetched would mislead
    manifest, checkpoint = mini_files
    res = cli("--manifest", manifest, "download", "groupmamba_mini", "--weights", checkpoint)
    lines = res.stderr.strip().splitlines()
    assert res.code == 2 and len(lines) == 1 and res.stdout == "", res.stderr
    assert lines[0].startswith(f"error: --weights {checkpoint}: a local file needs no download") and "hf-hub:" in lines[0]
    res = cli("--manifest", manifest, "download", "groupmamba_mini", "videomamba_mini_k400", "--weights", "hf-hub:a/b")
    assert res.code == 2 and res.stderr.count("error:") == 1 and "give it with one MODEL, not 2" in res.stderr
    assert hub.downloads() == 0


def test_a_missing_file_says_where_its_name_came_from(cli, hub, mini_files):
    manifest, checkpoint = mini_files
    hub.add_file(REPO, FILE, checkpoint.read_bytes())
    res = cli("--manifest", manifest, "download", "groupmamba_mini", "--weights", f"hf-hub:{REPO}/nope.pth")
    assert res.code == 1 and f"file 'nope.pth' not found in {REPO}@main" in res.stderr
    assert "check the file name in --weights" in res.stderr and "manifest" not in res.stderr


def test_missing_repo_is_one_line_error(cli, hub, mini_files):
    manifest, _ = mini_files
    res = cli("--manifest", manifest, "download", "groupmamba_mini")
    assert res.code == 1
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "ssmzoo-test/groupmamba-mini" in errors[0]


@pytest.mark.parametrize("offline", [False, True])
def test_download_without_the_hub_suggests_what_works_for_download(cli, mini_files, monkeypatch, offline):
    """`download` has no use for a local file: the advice is to copy the Hub cache entry over (which
    download then finds), or to give a local checkpoint to the commands that take --weights PATH."""
    manifest, _ = mini_files  # (the autouse fixture's HF_ENDPOINT is a closed port)
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    res = cli("--manifest", manifest, "download", "groupmamba_mini")
    lines = res.stderr.strip().splitlines()
    assert res.code == 1 and len(lines) == 1, res.stderr  # a failed run, not a usage error
    assert ("HF_HUB_OFFLINE is set" if offline else "cannot reach http://127.0.0.1:9") in lines[0]
    assert "models--ssmzoo-test--groupmamba-mini from a machine that has it" in lines[0]
    assert "give a local checkpoint to classify, eval or robustness with --weights PATH" in lines[0]
    assert "pass --weights PATH" not in lines[0]


@pytest.mark.parametrize("command", ["", "models", "info", "download", "convert", "classify", "eval", "benchmark",
                                     "robustness"])
def test_every_command_explains_itself(cli, command):
    # (download's help once held rich markup by accident: "[/file]" crashed it with a traceback)
    res = cli(*[c for c in [command] if c], "--help")
    assert res.code == 0, res.stderr
    assert "Usage" in res.stdout and "--help" in res.stdout
    # every option and argument reads as a plain metavar (N, FILE, START..END), never typer's type placeholders
    assert "<list[" not in res.stdout and "range>" not in res.stdout
    assert not re.search(r"<(str|int|float|path|bool)>", res.stdout, re.IGNORECASE), res.stdout


def test_download_json_says_what_was_fetched_and_what_the_cache_already_had(cli, hub, mini_files):
    manifest, checkpoint = mini_files
    data = checkpoint.read_bytes()
    hub.add_file("ssmzoo-test/groupmamba-mini", "groupmamba_mini.pth", data)

    res = cli("--manifest", manifest, "download", "groupmamba_mini", "--json")
    assert res.code == 0, res.stderr
    [record] = json.loads(res.stdout)  # one document: an array, one object per model
    assert record == {
        "model": "groupmamba_mini",
        "origin": "hf-hub:ssmzoo-test/groupmamba-mini@main/groupmamba_mini.pth",
        "repo_id": "ssmzoo-test/groupmamba-mini",
        "revision": "main",
        "commit": hub.commit("ssmzoo-test/groupmamba-mini"),
        "filename": "groupmamba_mini.pth",
        "path": record["path"],
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),  # the Hub publishes an LFS file's sha256; it was checked
        "sha256_checked_against": "hub",
        "already_cached": False,
        "note": None,
        "error": None,
    }
    assert open(record["path"], "rb").read() == data and hub.downloads() == 1

    hub.reset_log()
    again = json.loads(cli("--manifest", manifest, "download", "groupmamba_mini", "--json").stdout)
    assert again == [{**record, "already_cached": True}] and hub.downloads() == 0


def test_download_json_of_a_small_git_file_claims_no_checksum(cli, hub, mini_files):
    # a file stored in git, not LFS, has no sha256 on the Hub, and the manifest pins none: nothing was checked
    manifest, checkpoint = mini_files
    hub.add_file("ssmzoo-test/groupmamba-mini", "groupmamba_mini.pth", checkpoint.read_bytes(), lfs=False)
    res = cli("--manifest", manifest, "download", "groupmamba_mini", "--json")
    assert res.code == 0, res.stderr
    [record] = json.loads(res.stdout)
    assert record["sha256"] is None and record["sha256_checked_against"] is None
    assert record["size"] == checkpoint.stat().st_size and record["already_cached"] is False


def test_one_failed_model_does_not_stop_the_others(cli, hub, mini_files, tmp_path):
    """Each model is fetched in turn: a failure is reported (one error line; in --json its entry's error,
    every other field null) and the exit code is 1, but the models after it are still fetched."""
    manifest, checkpoint = mini_files
    hub.add_file("ssmzoo-test/groupmamba-mini", "groupmamba_mini.pth", checkpoint.read_bytes())
    missing = tmp_path / "missing.yaml"  # a second model, whose repo the Hub does not have
    missing.write_text(MINI_MANIFEST.split("  videomamba_mini_k400:")[0]
                       .replace("groupmamba_mini:", "groupmamba_gone:").replace("groupmamba-mini", "groupmamba-gone"))

    res = cli("--manifest", manifest, "--manifest", missing, "download", "groupmamba_gone", "groupmamba_mini")
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert res.code == 1 and len(errors) == 1 and "ssmzoo-test/groupmamba-gone" in errors[0]
    assert res.stdout.startswith("groupmamba_mini: ") and len(res.stdout.splitlines()) == 1

    res = cli("--manifest", manifest, "--manifest", missing, "download", "groupmamba_gone", "groupmamba_mini",
              "--json")
    assert res.code == 1 and "Traceback" not in res.stderr
    gone, mini = json.loads(res.stdout)
    assert gone["model"] == "groupmamba_gone" and gone["error"] == errors[0].removeprefix("error: ")
    assert set(gone) == set(mini) and all(gone[k] is None for k in gone if k not in ("model", "error"))
    assert mini["error"] is None and mini["already_cached"] is True and mini["size"] == checkpoint.stat().st_size


def test_download_json_usage_errors_print_no_json(cli, hub, mini_files):
    # a name that is not in the zoo fails before anything is fetched: one line, exit code 2, nothing on stdout
    manifest, _ = mini_files
    res = cli("--manifest", manifest, "download", "groupmamba_minni", "--json")
    assert res.code == 2 and res.stdout == "" and len(res.stderr.strip().splitlines()) == 1
    assert "groupmamba_minni" in res.stderr and hub.downloads() == 0


# ---------------------------------------------------------------------------------------------
# A cache folder that cannot be written: the message names the folder, not the network


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` and every folder in it made read-only (0o500) for the block; skips the test where
    this process writes there anyway (root, whom the permission bits do not stop)."""
    folders = [folder, *(p for p in folder.rglob("*") if p.is_dir())]
    for f in folders:
        f.chmod(0o500)
    try:
        probe = folder / "probe"
        try:
            probe.touch()
        except PermissionError:
            pass
        else:
            probe.unlink()
            pytest.skip(f"this process (euid {os.geteuid()}) writes into read-only folders")
        yield folder
    finally:
        for f in folders:
            f.chmod(0o700)


def test_a_read_only_cache_is_named_with_what_to_do(cli, hub, mini_files, tmp_path, monkeypatch):
    manifest, checkpoint = mini_files
    hub.add_file(REPO, FILE, checkpoint.read_bytes())
    cache = tmp_path / "read_only_cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    with read_only(cache):
        res = cli("--manifest", manifest, "download", "groupmamba_mini")
        as_json = cli("--manifest", manifest, "download", "groupmamba_mini", "--json")
    message = (f"model 'groupmamba_mini': cannot write the Hugging Face cache folder {cache} (Permission denied: "
               f"{cache / 'models--ssmzoo-test--groupmamba-mini'}) to download {REPO}@main/{FILE}; set HF_HUB_CACHE "
               "to a writable folder")
    assert (res.code, res.stdout, res.stderr) == (1, "", f"error: {message}\n")
    assert as_json.code == 1 and json.loads(as_json.stdout)[0]["error"] == message
    assert hub.downloads() == 0


def test_a_read_only_cache_still_serves_what_it_has(cli, hub, mini_files, tmp_path, monkeypatch):
    # a shared, read-only cache filled by someone else: nothing needs writing, so nothing fails
    manifest, checkpoint = mini_files
    hub.add_file(REPO, FILE, checkpoint.read_bytes())
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "shared_cache"))
    assert cli("--manifest", manifest, "download", "groupmamba_mini").code == 0
    with read_only(tmp_path / "shared_cache"):
        res = cli("--manifest", manifest, "download", "groupmamba_mini", "--json")
    assert res.code == 0, res.stderr
    assert json.loads(res.stdout)[0]["already_cached"] is True


@pytest.mark.parametrize("variable", ["HF_HUB_CACHE", "HF_HOME"])
def test_a_cache_path_under_a_file_names_the_file_in_the_way(cli, hub, mini_files, tmp_path, monkeypatch, variable):
    manifest, checkpoint = mini_files
    hub.add_file(REPO, FILE, checkpoint.read_bytes())
    a_file = tmp_path / "notes.txt"
    a_file.write_text("a file where a folder was meant")
    monkeypatch.setenv(variable, str(a_file / "hf"))
    if variable == "HF_HOME":
        monkeypatch.delenv("HF_HUB_CACHE")
    cache = a_file / "hf" if variable == "HF_HUB_CACHE" else a_file / "hf" / "hub"
    res = cli("--manifest", manifest, "download", "groupmamba_mini")
    assert (res.code, res.stdout) == (1, "")
    assert res.stderr == (f"error: model 'groupmamba_mini': cannot write the Hugging Face cache folder {cache} to "
                          f"download {REPO}@main/{FILE}: {a_file} is a file, not a folder; set HF_HUB_CACHE to a "
                          "writable folder\n")


@pytest.mark.parametrize("offline", [False, True])
def test_a_cache_that_is_a_file_is_named_even_without_the_hub(cli, mini_files, tmp_path, monkeypatch, offline):
    # with the Hub unreachable this was "not in the local cache", with the advice to copy a repo folder
    # under the file ({a_file}/models--...), a place that cannot exist
    manifest, _ = mini_files  # (the autouse fixture's HF_ENDPOINT is a closed port)
    a_file = tmp_path / "coffee.jpg"
    a_file.write_bytes(b"not a folder")
    monkeypatch.setenv("HF_HUB_CACHE", str(a_file))
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message = (f"model 'groupmamba_mini': cannot write the Hugging Face cache folder {a_file} to download "
               f"{REPO}@main/{FILE}: {a_file} is a file, not a folder; set HF_HUB_CACHE to a writable folder")
    res = cli("--manifest", manifest, "download", "groupmamba_mini")
    assert (res.code, res.stdout, res.stderr) == (1, "", f"error: {message}\n")
    res = cli("--manifest", manifest, "download", "groupmamba_mini", "--json")
    assert res.code == 1 and json.loads(res.stdout)[0]["error"] == message


def test_a_newline_in_a_file_name_keeps_the_error_line_one_line(cli, mini_files, tmp_path, monkeypatch):
    # the per-model error line printed the message as it was: a newline in the path split it in two
    manifest, _ = mini_files  # (the autouse fixture's HF_ENDPOINT is a closed port)
    a_file = tmp_path / "coffee\n.jpg"
    a_file.write_bytes(b"not a folder")
    monkeypatch.setenv("HF_HUB_CACHE", str(a_file))
    message = (f"model 'groupmamba_mini': cannot write the Hugging Face cache folder {a_file} to download "
               f"{REPO}@main/{FILE}: {a_file} is a file, not a folder; set HF_HUB_CACHE to a writable folder")
    res = cli("--manifest", manifest, "download", "groupmamba_mini")
    assert (res.code, res.stdout) == (1, "")
    assert res.stderr == "error: " + message.replace("\n", "\\n") + "\n"
    res = cli("--manifest", manifest, "download", "groupmamba_mini", "--json")
    assert res.code == 1 and json.loads(res.stdout)[0]["error"] == message  # JSON: as it is


def test_a_file_inside_the_cache_where_a_folder_belongs(cli, hub, mini_files, tmp_path, monkeypatch):
    manifest, checkpoint = mini_files
    hub.add_file(REPO, FILE, checkpoint.read_bytes())
    cache = Path(os.environ["HF_HUB_CACHE"])
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "models--ssmzoo-test--groupmamba-mini").write_text("stray")
    res = cli("--manifest", manifest, "download", "groupmamba_mini")
    [line] = res.stderr.splitlines()
    assert res.code == 1 and line.endswith(f": {cache / 'models--ssmzoo-test--groupmamba-mini'} is a file, not a "
                                           "folder; remove it or set HF_HUB_CACHE to a writable folder")


def test_a_missing_file_is_reported_as_missing_even_when_the_cache_cannot_be_written(cli, hub, mini_files, tmp_path,
                                                                                      monkeypatch):
    # huggingface_hub notes the Hub's 404 in the cache; that write failing must not hide the 404
    manifest, checkpoint = mini_files
    hub.add_file(REPO, FILE, checkpoint.read_bytes())
    (tmp_path / "notes.txt").write_text("")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "notes.txt" / "hub"))
    res = cli("--manifest", manifest, "download", "groupmamba_mini", "--weights", f"hf-hub:{REPO}/other.pth")
    [line] = res.stderr.splitlines()
    assert res.code == 1 and f"file 'other.pth' not found in {REPO}@main" in line and "cache" not in line


def test_classify_reports_an_unwritable_cache_the_same_way(cli, hub, mini_files, example_images, tmp_path,
                                                           monkeypatch):
    manifest, checkpoint = mini_files
    hub.add_file(REPO, FILE, checkpoint.read_bytes())
    (tmp_path / "notes.txt").write_text("")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "notes.txt" / "hub"))
    res = cli("--manifest", manifest, "classify", example_images / "coffee.jpg", "--model", "groupmamba_mini")
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert res.code == 1 and "Traceback" not in res.stderr and len(errors) == 1
    assert f"cannot write the Hugging Face cache folder {tmp_path / 'notes.txt' / 'hub'}" in errors[0]
    assert "network" not in errors[0]


# ---------------------------------------------------------------------------------------------
# A Hub file that is not a checkpoint: reported when downloaded, not when a model first loads it


def torch_zip(names: list[str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name in names:
            archive.writestr(name, b"payload")
    return buf.getvalue()


SAFETENSORS = st_save({"stem.weight": torch.zeros(64, 3, 3, 3)})
NOT_CHECKPOINTS = {
    "one byte": ("w.pth", b"x", "it is neither a safetensors file nor a PyTorch checkpoint"),
    "an error page": ("w.pth", b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>",
                      "it is an HTML page (an error or login page saved instead of the weights)"),
    "a cut-off safetensors file": ("w.safetensors", SAFETENSORS[:-1000],
                                   f"it is a truncated safetensors file (its tensors end at byte {len(SAFETENSORS)}, "
                                   f"the file has {len(SAFETENSORS) - 1000})"),
    "a zip of other things": ("w.pth", torch_zip(["photo.jpg"]),
                              "it is a zip archive (1 file) without a data.pkl, not a PyTorch checkpoint"),
    "a pickle torch.save did not write": ("w.bin", pickle.dumps({"w": [1.0]}, protocol=2),
                                          "it is a pickle, but not a PyTorch checkpoint (it does not open with "
                                          "torch.save's magic number)"),
}


@pytest.mark.parametrize("case", NOT_CHECKPOINTS)
def test_download_refuses_a_hub_file_that_is_not_a_checkpoint(cli, hub, mini_files, case):
    """The file stays where huggingface_hub put it (the cache is its), and the message says where."""
    manifest, _ = mini_files
    name, data, reason = NOT_CHECKPOINTS[case]
    hub.add_file("ssmzoo-test/broken", name, data)
    weights = f"hf-hub:ssmzoo-test/broken/{name}"
    cached = Path(os.environ["HF_HUB_CACHE"]) / "models--ssmzoo-test--broken" / "snapshots" / hub.commit(
        "ssmzoo-test/broken") / name

    res = cli("--manifest", manifest, "download", "groupmamba_mini", "--weights", weights)
    assert (res.code, res.stdout) == (1, "")
    assert res.stderr == (f"error: model 'groupmamba_mini': downloaded ssmzoo-test/broken@main/{name} ({len(data)} "
                          f"byte{'s' * (len(data) != 1)}) is not a checkpoint: {reason}; the Hub file may be broken: "
                          f"pin another --revision or report it to the repo's owners; it stays in the cache at "
                          f"{cached}\n")
    assert cached.read_bytes() == data

    hub.reset_log()  # asked again, the copy in the cache is judged the same way, and nothing is fetched
    res = cli("--manifest", manifest, "download", "groupmamba_mini", "--weights", weights)
    assert res.code == 1 and res.stderr.startswith("error: model 'groupmamba_mini': the cached copy of ")
    assert reason in res.stderr and hub.downloads() == 0


@pytest.fixture()
def broken_beside_good(hub, mini_files, tmp_path):
    """(manifest, second manifest, checkpoint): groupmamba_mini's weights on the Hub, and a model
    groupmamba_broken (the second manifest) whose Hub file is an error page."""
    manifest, checkpoint = mini_files
    hub.add_file(REPO, FILE, checkpoint.read_bytes())
    hub.add_file("ssmzoo-test/groupmamba-broken", FILE, b"<html>Service Unavailable</html>")
    broken = tmp_path / "broken.yaml"
    entry = MINI_MANIFEST.split("  videomamba_mini_k400:")[0].replace("groupmamba_mini:", "groupmamba_broken:")
    broken.write_text(entry.replace("groupmamba-mini", "groupmamba-broken"))
    return manifest, broken, checkpoint


def test_a_broken_hub_file_fails_its_model_only(cli, broken_beside_good):
    manifest, broken, checkpoint = broken_beside_good
    res = cli("--manifest", manifest, "--manifest", broken, "download", "groupmamba_broken", "groupmamba_mini",
              "--json")
    assert res.code == 1 and "Traceback" not in res.stderr
    failed, fetched = json.loads(res.stdout)
    assert failed["model"] == "groupmamba_broken" and "is not a checkpoint: it is an HTML page" in failed["error"]
    assert failed["path"] is None and failed["error"] in res.stderr
    assert fetched["error"] is None and fetched["size"] == checkpoint.stat().st_size


def test_models_lists_a_broken_cached_file_as_damaged(cli, broken_beside_good):
    manifest, broken, _ = broken_beside_good
    assert cli("--manifest", manifest, "--manifest", broken, "download", "groupmamba_broken", "groupmamba_mini").code == 1

    listed = {r["name"]: r["weights"] for r in json.loads(
        cli("--manifest", manifest, "--manifest", broken, "models", "--json").stdout)}
    assert listed["groupmamba_broken"] == "damaged" and listed["groupmamba_mini"] == "cached"


def test_huggingface_hubs_own_messages_never_bury_the_error_line(hub, mini_files, tmp_path):
    """huggingface_hub logs each broken transfer as it retries ("Trying to resume download...", at last
    "Max retries exceeded."): printed as they came, those lines stood before, and buried, the one-line
    error. Now a fetch that failed ends with its error alone, and one that was resumed and worked gets
    the library's message as one note line. (A child process: the library's log handler writes to the
    real stderr, which an in-process capture does not see.)"""
    manifest, checkpoint = mini_files
    hub.add_file(REPO, FILE, checkpoint.read_bytes(), fault="drop_once")  # resumed once, then fine
    hub.add_file("ssmzoo-test/groupmamba-flaky", FILE, checkpoint.read_bytes() + b"\0", fault="drop_always")
    flaky = tmp_path / "flaky.yaml"
    entry = MINI_MANIFEST.split("  videomamba_mini_k400:")[0].replace("groupmamba_mini:", "groupmamba_flaky:")
    flaky.write_text(entry.replace("groupmamba-mini", "groupmamba-flaky"))
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_VERBOSITY"}
    res = subprocess.run([sys.executable, "-m", "ssmzoo", "--manifest", manifest, "--manifest", flaky, "download",
                          "groupmamba_mini", "groupmamba_flaky"], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 1
    assert res.stdout.startswith("groupmamba_mini: ") and len(res.stdout.splitlines()) == 1
    note, error = res.stderr.splitlines()
    assert note.startswith(f"groupmamba_mini: huggingface_hub: Error while downloading from {hub.cdn}/cdn/")
    assert note.endswith("; Trying to resume download...")
    assert error.startswith("error: model 'groupmamba_flaky': download of ssmzoo-test/groupmamba-flaky@main/"
                            f"{FILE} from {hub.endpoint} failed (RemoteProtocolError: peer closed connection")


# ---------------------------------------------------------------------------------------------
# Which state dict of a Hub checkpoint is in use; pickles from the Hub are never trusted


def _saved(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def test_the_state_dict_a_hub_checkpoint_supplied_is_named_by_classify_eval_and_info(cli, hub, mini_files,
                                                                                     example_images, tmp_path):
    manifest, checkpoint = mini_files
    auto = tmp_path / "auto.yaml"  # no state_dict_key: ssmzoo picks among the file's entries, EMA first
    auto.write_text(MINI_MANIFEST.replace(", state_dict_key: model}", "}"))
    weights = torch.load(checkpoint, weights_only=True)["model"]
    hub.add_file(REPO, FILE, _saved({"model": weights, "model_ema": weights, "epoch": 3}))
    line = f"groupmamba_mini: weights hf-hub:{REPO}@main/{FILE} (state dict under 'model_ema')"

    info = json.loads(cli("--manifest", auto, "info", "groupmamba_mini", "--json").stdout)
    assert (info["weights_status"], info["weights_key_path"]) == ("hub", None)  # nothing to read yet

    res = cli("--manifest", auto, "classify", example_images / "coffee.jpg", "--model", "groupmamba_mini", "--json")
    assert res.code == 0 and res.stderr.splitlines() == [line], res.stderr
    assert json.loads(res.stdout)["weights_key_path"] == ["model_ema"]

    (tmp_path / "val" / "n01440764").mkdir(parents=True)  # one image of an ImageNet class, for eval
    (tmp_path / "val" / "n01440764" / "coffee.jpg").write_bytes((example_images / "coffee.jpg").read_bytes())
    res = cli("--manifest", auto, "eval", "--dataset", "imagenet", "--data-dir", tmp_path, "--model",
              "groupmamba_mini", "--device", "cpu", "--workers", "0")
    assert res.code == 0 and [x for x in res.stderr.splitlines() if "weights" in x] == [line], res.stderr
    assert f"weights: hf-hub:{REPO}@main/{FILE} (state dict under 'model_ema')" in res.stdout
    res = cli("--manifest", auto, "eval", "--dataset", "imagenet", "--data-dir", tmp_path, "--model",
              "groupmamba_mini", "--device", "cpu", "--workers", "0", "--json")
    assert json.loads(res.stdout)["weights_key_path"] == ["model_ema"]

    info = json.loads(cli("--manifest", auto, "info", "groupmamba_mini", "--json").stdout)
    assert (info["weights_status"], info["weights_key_path"], info["weights_problem"]) == ("cached", ["model_ema"], None)
    assert re.search(r"│ weights key \(cached\) +│ model_ema ", cli("--manifest", auto, "info", "groupmamba_mini").stdout)
    # the manifest's state_dict_key, where it names one, is what classify takes and what info shows
    assert json.loads(cli("--manifest", manifest, "info", "groupmamba_mini", "--json").stdout)[
        "weights_key_path"] == ["model"]


def _squeezed(text: str) -> str:
    return "".join(text.split())


def _table_value(table: str, label: str) -> str:
    """A row's value in `info`'s table, its folded lines joined, without whitespace (folds break anywhere)."""
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in table.splitlines() if line.startswith("│")]
    start = next(i for i, row in enumerate(rows) if row[0] == label)
    parts = [rows[start][1]]
    for row in rows[start + 1:]:
        if row[0]:
            break
        parts.append(row[1])
    return _squeezed("".join(parts))


def test_info_says_why_a_cached_file_cannot_be_used(cli, hub, mini_files, example_images):
    """A cached file that the safe load refuses is 'cached (unreadable: why)', as classify would say it; one
    whose headers already show it broken (here: cut off in the cache) is 'damaged (why)'. --json keeps
    weights_status and tells why in weights_problem."""
    import numpy as np

    manifest, checkpoint = mini_files
    weights = torch.load(checkpoint, weights_only=True)["model"]
    hub.add_file(REPO, FILE, _saved({"model": weights, "rng_state": np.arange(3)}))  # a class weights_only refuses
    res = cli("--manifest", manifest, "download", "groupmamba_mini", "--json")
    assert res.code == 0, res.stderr
    cached = Path(json.loads(res.stdout)[0]["path"])

    info = json.loads(cli("--manifest", manifest, "info", "groupmamba_mini", "--json").stdout)
    assert (info["weights_status"], info["weights_key_path"]) == ("cached", None)
    why = info["weights_problem"]
    assert why.startswith(f"{cached} holds pickled Python objects besides tensors (") and "\n" not in why
    assert "multiarray._reconstruct)" in why
    error = cli("--manifest", manifest, "classify", example_images / "coffee.jpg", "--model", "groupmamba_mini").stderr
    assert error.splitlines()[-1].endswith(why)  # the very words a run fails with
    table = cli("--manifest", manifest, "info", "groupmamba_mini").stdout
    assert _table_value(table, "weights status") == _squeezed(f"cached (unreadable: {why})")
    assert "weights_problem" not in table and "weights problem" not in table  # said in the status row

    # the cached file cut off where it lies (the snapshot's link to its blob, where huggingface_hub finds it)
    data = _saved({"model": weights})
    hub.add_file(REPO, FILE, data, revision="v2")
    res = cli("--manifest", manifest, "download", "groupmamba_mini", "--revision", "v2", "--json")
    assert res.code == 0, res.stderr
    cut = Path(json.loads(res.stdout)[0]["path"])
    with open(cut, "r+b") as f:
        f.truncate(len(data) // 2)
    pinned = manifest.with_name("pinned.yaml")
    pinned.write_text(manifest.read_text().replace("repo_id: ssmzoo-test/groupmamba-mini,",
                                                   "repo_id: ssmzoo-test/groupmamba-mini, revision: v2,"))
    info = json.loads(cli("--manifest", pinned, "info", "groupmamba_mini", "--json").stdout)
    assert (info["weights_status"], info["weights_key_path"]) == ("damaged", None)
    assert info["weights_problem"].startswith("it is a truncated or damaged PyTorch zip checkpoint")
    table = cli("--manifest", pinned, "info", "groupmamba_mini").stdout
    assert _table_value(table, "weights status") == _squeezed(f"damaged ({info['weights_problem']})")


def test_a_downloaded_pickle_is_never_trusted(cli, hub, mini_files, example_images, tmp_path):
    import numpy as np

    manifest, checkpoint = mini_files
    weights = torch.load(checkpoint, weights_only=True)["model"]
    hub.add_file(REPO, FILE, _saved({"model": weights, "rng_state": np.arange(3)}))
    res = cli("--manifest", manifest, "download", "groupmamba_mini", "--json")
    assert res.code == 0, res.stderr
    cached = json.loads(res.stdout)[0]["path"]

    res = cli("convert", cached, tmp_path / "w.safetensors", "--trust-checkpoint")
    assert res.code == 2 and res.stdout == "" and not (tmp_path / "w.safetensors").exists()
    assert res.stderr.splitlines() == [
        f"error: --trust-checkpoint {cached}: it is in the Hugging Face cache ({os.environ['HF_HUB_CACHE']}), "
        "fetched from the network; ssmzoo unpickles such files only with torch.load(weights_only=True). The option "
        "is for a local file you trust (see `ssmzoo convert --help`)"]

    res = cli("--manifest", manifest, "classify", example_images / "coffee.jpg", "--model", "groupmamba_mini")
    assert res.code == 1 and res.stderr.splitlines()[-1].startswith("error: ")
    error = res.stderr.splitlines()[-1]
    assert "multiarray._reconstruct)" in error and "--trust-checkpoint" not in error  # (numpy._core in numpy 2)
    assert error.endswith("it was fetched from the Hub, so ssmzoo never unpickles it otherwise: ask the repo's "
                          "owners for a safetensors copy, or pass --weights with another file")


# ---------------------------------------------------------------------------------------------
# An empty --weights or --revision (an unset shell variable) is refused, never taken as not given


def test_an_empty_weights_or_revision_never_falls_back_to_the_published_weights(cli, hub, mini_files, example_images):
    """``--weights "$CKPT"`` with CKPT unset used to evaluate the manifest's Hub weights instead of the
    user's checkpoint, saying nothing (here the Hub serves them, so that fallback would succeed);
    ``--revision "$REV"`` fetched @main, and ``hf-hub:ORG/REPO@$REV`` its default."""
    manifest, checkpoint = mini_files
    hub.add_file(REPO, FILE, checkpoint.read_bytes())
    data = ["--dataset", "imagenet", "--data-dir", example_images, "--limit", "1", "--workers", "0"]
    cases = [
        (["classify", example_images / "coffee.jpg"], "--weights", "' / '-w", "a path"),
        (["eval", *data], "--weights", "' / '-w", "a path"),
        (["robustness", *data, "--jpeg-quality", "50"], "--weights", "' / '-w", "a path"),
        (["download"], "--weights", "", "hf-hub:ORG/REPO[/FILE][@REVISION]"),
        (["classify", example_images / "coffee.jpg"], "--revision", "", "a branch, tag or commit"),
        (["eval", *data], "--revision", "", "a branch, tag or commit"),
        (["robustness", *data, "--jpeg-quality", "50"], "--revision", "", "a branch, tag or commit"),
        (["download"], "--revision", "", "a branch, tag or commit"),
    ]
    for args, option, short, give in cases:
        command = args[0]
        model = [] if command == "download" else ["--model"]
        res = cli("--manifest", manifest, *args[:1], *model, "groupmamba_mini", *args[1:], option, "")
        assert (res.code, res.stdout) == (2, ""), (args, option, res.stderr)
        assert res.stderr == (f"error: Invalid value for '{option}{short}': '': empty name; give {give} "
                              f"(see `ssmzoo {command} --help`)\n")
    res = cli("--manifest", manifest, "download", "groupmamba_mini", "--weights", f"hf-hub:{REPO}@")
    assert (res.code, res.stdout) == (2, "")
    assert res.stderr == (f"error: bad --weights 'hf-hub:{REPO}@': revision '': empty name; give a branch, tag or "
                          "commit, or no @ (see `ssmzoo download --help`)\n")
    assert hub.requests == [] and hub.downloads() == 0


def test_a_model_named_twice_that_fails_has_the_note_in_its_json_record_too(cli, hub, mini_files):
    # the note was in a fetched model's record only: a failed one (no network, no such repo) had null
    manifest, checkpoint = mini_files
    res = cli("--manifest", manifest, "download", "groupmamba_mini", "stablemamba_tiny_in1k", "groupmamba_mini",
              "--json")
    mini, stable = json.loads(res.stdout)
    assert res.code == 1 and mini["error"] is not None and stable["error"] is not None
    assert res.stderr.startswith("note: groupmamba_mini given more than once; each model is fetched once\n")
    assert mini["note"] == "groupmamba_mini given more than once; tried once" and stable["note"] is None
    assert all(mini[k] is None for k in mini if k not in ("model", "error", "note"))  # no weights fields
