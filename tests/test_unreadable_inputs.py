"""Files and folders the user cannot read: each is named with its cause, the rest is still processed.

Permission bits do not stop root, so where the tests run as root the CLI runs in a child process whose
capabilities to override them are dropped (util-linux's ``setpriv``), as an ordinary user's would be.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ssmzoo_as_ordinary_user

def ssmzoo(*args, cwd: Path) -> subprocess.CompletedProcess:
    """``ssmzoo ARGS`` in a child process that permission bits apply to."""
    return ssmzoo_as_ordinary_user(*args, cwd=cwd)


@pytest.fixture()
def locked(tmp_path):
    """chmod 000 on the paths given, undone at the end so pytest can clean up."""
    paths: list[Path] = []

    def lock(*targets: Path) -> None:
        for target in targets:
            target.chmod(0)
            paths.append(target)

    yield lock
    for target in paths:
        target.chmod(0o755)


def test_classify_names_each_unreadable_input_and_classifies_the_rest(mini_files, example_images, locked):
    manifest, checkpoint = mini_files
    folder = example_images
    (folder / "sub/locked").mkdir(parents=True)
    shutil.copy(folder / "coffee.jpg", folder / "sub/locked/inside.jpg")
    shutil.copy(folder / "coffee.jpg", folder / "noperm.jpg")
    (folder / "sub/gone.jpg").symlink_to(folder / "deleted.jpg")  # a link to nothing
    locked(folder / "sub/locked", folder / "noperm.jpg")

    res = ssmzoo("--manifest", manifest, "classify", "images", "images/sub/locked/inside.jpg",
                 "--model", "groupmamba_mini", "--weights", checkpoint, "--json", cwd=folder.parent)
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    rows = {r["input"]: r for r in map(json.loads, res.stdout.splitlines())}
    assert [name for name, r in rows.items() if r["error"] is None] == [
        "images/astronaut.jpg", "images/chelsea.jpg", "images/coffee.jpg", "images/rocket.jpg"]
    assert rows["images/noperm.jpg"]["error"] == "images/noperm.jpg: cannot read it (Permission denied)"
    assert rows["images/sub/locked"]["error"] == "images/sub/locked: cannot read this folder (Permission denied)"
    assert rows["images/sub/locked/inside.jpg"]["error"] == (
        "images/sub/locked/inside.jpg: cannot read it (Permission denied)")
    assert rows["images/sub/gone.jpg"]["error"].startswith("images/sub/gone.jpg: broken link")
    assert "4 of 8 inputs failed" in res.stderr


def test_an_unreadable_folder_given_as_input_is_not_called_empty(mini_files, example_images, locked):
    manifest, checkpoint = mini_files
    locked(example_images)
    res = ssmzoo("--manifest", manifest, "classify", "images", "--model", "groupmamba_mini", "--weights", checkpoint,
                 cwd=example_images.parent)
    assert res.returncode == 1
    assert res.stderr.splitlines() == ["error: images: cannot read this folder (Permission denied)",
                                       "1 of 1 input failed"]


def test_unreadable_weights_are_one_line_error(mini_files, example_images, tmp_path, locked):
    manifest, checkpoint = mini_files
    mine = tmp_path / "mine.pth"
    shutil.copy(checkpoint, mine)
    locked(mine)
    res = ssmzoo("--manifest", manifest, "classify", example_images / "coffee.jpg", "--model", "groupmamba_mini",
                 "--weights", mine, cwd=tmp_path)
    assert res.returncode == 1
    assert res.stdout == ""
    assert res.stderr.splitlines()[-1] == f"error: cannot read weights file {mine}: Permission denied"
    assert "Traceback" not in res.stderr


def test_eval_warns_of_a_class_folder_it_cannot_read(mini_files, example_images, tmp_path, locked):
    manifest, checkpoint = mini_files
    data = tmp_path / "val"
    for synset, photo in [("n01440764", "coffee.jpg"), ("n01443537", "chelsea.jpg"), ("n01484850", "rocket.jpg")]:
        (data / synset).mkdir(parents=True)
        shutil.copy(example_images / photo, data / synset / photo)
    locked(data / "n01443537")
    res = ssmzoo("--manifest", manifest, "eval", "-d", "imagenet", "--data-dir", data, "--model", "groupmamba_mini",
                 "--weights", checkpoint, "--workers", "0", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    warning = f"{data / 'n01443537'}: cannot read this folder (Permission denied); skipped"
    assert f"warning: {warning}" in res.stderr.splitlines()
    report = json.loads(res.stdout)
    assert report["warnings"] == [warning]  # the JSON alone says the figure lacks a class
    assert report["evaluated"] == 2


def test_eval_of_only_unreadable_class_folders_fails_naming_one(mini_files, example_images, tmp_path, locked):
    manifest, checkpoint = mini_files
    data = tmp_path / "val"
    (data / "n01440764").mkdir(parents=True)
    shutil.copy(example_images / "coffee.jpg", data / "n01440764/coffee.jpg")
    locked(data / "n01440764")
    res = ssmzoo("--manifest", manifest, "eval", "-d", "imagenet", "--data-dir", data, "--model", "groupmamba_mini",
                 "--weights", checkpoint, "--workers", "0", cwd=tmp_path)
    assert res.returncode == 1
    assert res.stderr.splitlines()[-1] == (
        f"error: {data}: no image file could be read: {data / 'n01440764'}: cannot read this folder "
        "(Permission denied); skipped")


@pytest.mark.parametrize("mode", [0o555, 0o000], ids=["read-only folder", "locked folder"])
def test_convert_into_a_folder_it_cannot_write_is_a_failed_run_not_a_usage_error(mini_files, tmp_path, mode):
    # the path is fine as typed; the file system refuses it: exit code 1, one line naming the path and the cause
    _, checkpoint = mini_files
    folder = tmp_path / "out"
    folder.mkdir()
    folder.chmod(mode)
    try:
        for target in (folder / "w.safetensors", folder / "new" / "w.safetensors"):
            res = ssmzoo("convert", checkpoint, target, cwd=tmp_path)
            assert (res.returncode, res.stdout) == (1, ""), res.stderr
            assert res.stderr.splitlines() == [
                f"error: output {target}: cannot create it in {folder} (Permission denied)"]
    finally:
        folder.chmod(0o755)
    assert list(folder.iterdir()) == []


def test_eval_output_that_cannot_be_written_fails_before_the_run(mini_files, example_images, tmp_path):
    # an existing --output file that may be read, not written: exit code 1 at once, before any model is loaded
    manifest, checkpoint = mini_files
    data = tmp_path / "val" / "n01440764"
    data.mkdir(parents=True)
    shutil.copy(example_images / "coffee.jpg", data / "coffee.jpg")
    summary = tmp_path / "summary.json"
    summary.write_text("{}")
    summary.chmod(0o444)
    res = ssmzoo("--manifest", manifest, "eval", "-d", "imagenet", "--data-dir", tmp_path / "val", "--model",
                 "groupmamba_mini", "--weights", checkpoint, "--workers", "0", "--output", summary, cwd=tmp_path)
    assert (res.returncode, res.stdout) == (1, ""), res.stderr
    assert res.stderr.splitlines() == [f"error: --output {summary}: cannot write it (Permission denied)"]
