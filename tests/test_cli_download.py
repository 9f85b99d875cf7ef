"""First use of a model downloads its weights from the Hub (a real local server), later uses hit the cache."""

import json
import re

import pytest

from hub_server import FakeHub


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
    # nor a model with nothing to download (no published weights, no --weights)
    res = cli("--manifest", manifest, "download", "groupmamba_mini", "stablemamba_tiny_in1k")
    lines = res.stderr.strip().splitlines()
    assert res.code == 2 and len(lines) == 1 and hub.downloads() == 0
    assert "'stablemamba_tiny_in1k' has no published weights, so there is nothing to download" in lines[0]
    assert "--weights hf-hub:" in lines[0] and "--weights PATH" in lines[0] and "classify, eval or robustness" in lines[0]


def test_download_weights_must_name_a_hub_file(cli, hub, mini_files):
    # a local checkpoint has nothing to download: reporting it as fetched would mislead
    manifest, checkpoint = mini_files
    res = cli("--manifest", manifest, "download", "groupmamba_mini", "--weights", checkpoint)
    lines = res.stderr.strip().splitlines()
    assert res.code == 2 and len(lines) == 1 and res.stdout == "", res.stderr
    assert lines[0].startswith(f"error: --weights {checkpoint}: a local file needs no download") and "hf-hub:" in lines[0]
    res = cli("--manifest", manifest, "download", "groupmamba_mini", "groupmamba_mini", "--weights", "hf-hub:a/b")
    assert res.code == 2 and res.stderr.count("error:") == 1 and "give it with one MODEL, not 2" in res.stderr
    assert hub.downloads() == 0


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
