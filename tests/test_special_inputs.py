"""Inputs that name no regular file: an empty name, ``-``, pipes (FIFOs), sockets, links in a loop.

Each is refused with one line naming it and the cause, the same from classify, the image and video
readers and the datasets; none is opened (opening a pipe that nobody writes to waits forever), and
none vanishes unsaid from a folder. A pipe named directly is run in a child process with a time limit,
so that a reader that does open it fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from ssmzoo.errors import InputError
from ssmzoo.images import load_image
from ssmzoo.video import VideoProtocol, load_video_views

PIPE = "is a pipe (FIFO), not a regular file"
LOOP = "symbolic link loop (too many levels of symbolic links)"


def classify(cli, mini_files, *inputs, model="groupmamba_mini", weights=None):
    manifest, checkpoint = mini_files
    return cli("--manifest", manifest, "classify", *inputs, "--model", model, "--weights", weights or checkpoint,
               "--json")


def rows(res) -> dict:
    return {r["input"]: r for r in map(json.loads, res.stdout.splitlines())}


# ----------------------------------------------------------------------------- names that are no path


def test_an_empty_input_name_is_a_usage_error_and_the_current_folder_is_not_classified(
        cli, mini_files, example_images, monkeypatch):
    """``ssmzoo classify "$IMG"`` with IMG unset: Path("") is ".", which used to classify the whole folder."""
    monkeypatch.chdir(example_images)
    for inputs in ([""], ["coffee.jpg", ""]):
        res = classify(cli, mini_files, *inputs)
        assert res.code == 2
        assert res.stderr == "error: '': empty name; give a path (see `ssmzoo classify --help`)\n"
        assert res.stdout == ""


@pytest.mark.parametrize("command,option", [
    ("eval", "--data-dir"), ("eval", "--labels"), ("eval", "--class-map"), ("eval", "--list"),
    ("robustness", "--data-dir"), ("robustness", "--labels"),
])
def test_an_empty_data_path_is_a_usage_error_not_the_current_folder(cli, mini_files, example_images, monkeypatch,
                                                                   command, option):
    manifest, checkpoint = mini_files
    monkeypatch.chdir(example_images)
    sweep = ["--jpeg-quality", "50"] if command == "robustness" else []
    data = [] if option == "--data-dir" else ["--data-dir", "."]
    res = cli("--manifest", manifest, command, "--dataset", "imagenet", *data, option, "", *sweep,
              "--model", "groupmamba_mini", "--weights", checkpoint, "--workers", "0")
    assert res.code == 2 and res.stdout == ""
    assert res.stderr == (f"error: Invalid value for '{option}': '': empty name; give a path "
                          f"(see `ssmzoo {command} --help`)\n")


@pytest.mark.parametrize("command,option", [
    ("eval", "--output' / '-o"), ("eval", "--per-sample"), ("robustness", "--output' / '-o"),
    ("robustness", "--plot"), ("robustness", "--class-map"), ("robustness", "--list"),
])
def test_an_empty_output_or_list_path_is_a_usage_error_not_the_current_folder(
        cli, mini_files, example_images, monkeypatch, command, option):
    """An output used to be checked as ``Path("") == "."`` (``--output .: expected a .json or .csv file
    name``): now every path option refuses an empty name in the data options' words."""
    manifest, checkpoint = mini_files
    monkeypatch.chdir(example_images)
    sweep = ["--jpeg-quality", "50"] if command == "robustness" else []
    res = cli("--manifest", manifest, command, "--dataset", "imagenet", "--data-dir", ".",
              option.split("'")[0], "", *sweep, "--model", "groupmamba_mini", "--weights", checkpoint,
              "--workers", "0")
    assert res.code == 2 and res.stdout == ""
    assert res.stderr == (f"error: Invalid value for '{option}': '': empty name; give a path "
                          f"(see `ssmzoo {command} --help`)\n")


@pytest.mark.parametrize("args,where,stderr", [
    (["--manifest", "", "models"], "ssmzoo", "Invalid value for '--manifest'"),
    (["convert", "", "out.safetensors"], "ssmzoo convert", "Invalid value for 'CHECKPOINT'"),
    (["convert", "in.pth", ""], "ssmzoo convert", "Invalid value for 'OUTPUT'"),
])
def test_an_empty_manifest_or_convert_path_is_a_usage_error_not_the_current_folder(cli, tmp_path, monkeypatch,
                                                                                  args, where, stderr):
    # they said ".: cannot read manifest: it is a folder, not a file" and "output .: expected a .safetensors
    # file name"
    monkeypatch.chdir(tmp_path)
    res = cli(*args)
    assert res.code == 2 and res.stdout == ""
    assert res.stderr == f"error: {stderr}: '': empty name; give a path (see `{where} --help`)\n"


def test_a_dash_output_is_left_to_the_outputs_own_checks(cli, mini_files):
    # "-" would be stdout, not stdin: an output's wrong-suffix error says what it takes
    _, checkpoint = mini_files
    res = cli("convert", checkpoint, "-")
    assert res.code == 2 and res.stderr == "error: output -: expected a .safetensors file name " \
                                           "(see `ssmzoo convert --help`)\n"


@pytest.mark.parametrize("option", ["--labels", "--list"])
def test_a_dash_data_path_says_stdin_is_not_read(cli, mini_files, example_images, monkeypatch, option):
    manifest, checkpoint = mini_files
    monkeypatch.chdir(example_images)
    res = cli("--manifest", manifest, "eval", "--dataset", "imagenet", "--data-dir", ".", option, "-",
              "--model", "groupmamba_mini", "--weights", checkpoint, "--workers", "0")
    assert res.code == 2 and res.stdout == ""
    assert res.stderr == (f"error: Invalid value for '{option}': -: reading from stdin is not supported; "
                          "give a path (see `ssmzoo eval --help`)\n")


def test_dash_says_stdin_is_not_read_unless_a_file_is_named_so(cli, mini_files, example_images, monkeypatch):
    monkeypatch.chdir(example_images)
    res = classify(cli, mini_files, "-")
    assert res.code == 2 and res.stdout == ""
    assert res.stderr == ("error: -: reading from stdin is not supported; give a path "
                          "(see `ssmzoo classify --help`)\n")
    shutil.copy("coffee.jpg", "-")  # a file that is really called "-" is an input like any other
    res = classify(cli, mini_files, "-")
    assert res.code == 0, res.stderr
    assert rows(res)["-"]["error"] is None


def test_one_wording_for_names_that_are_no_path(tmp_path, monkeypatch):
    # classify's inputs and eval's/robustness' data options say it the same way
    from ssmzoo.errors import UsageError
    from ssmzoo.paths import check_name, name_problem

    monkeypatch.chdir(tmp_path)
    assert name_problem("") == "'': empty name; give a path"
    assert name_problem("-") == "-: reading from stdin is not supported; give a path"
    assert name_problem("a.jpg") is None
    assert name_problem("-", read=False) is None  # an output's name: its own checks refuse it
    assert name_problem("", read=False, give="a branch, tag or commit") == \
        "'': empty name; give a branch, tag or commit"
    with pytest.raises(UsageError, match="empty name"):
        check_name("")
    with pytest.raises(UsageError, match="^--output '': empty name; give a path$"):
        check_name("", "--output", read=False)
    (tmp_path / "-").write_bytes(b"")  # a file really called "-" is a name like any other
    assert name_problem("-") is None


# ----------------------------------------------------------------------------- pipes, sockets, devices


def test_the_readers_refuse_a_pipe_by_what_it_is_without_opening_it(tmp_path):
    """A pipe reports size 0: it used to be called an empty file. Neither reader opens it here (the
    test would hang: nothing writes to these pipes)."""
    for name in ("fifo.jpg", "fifo.mp4"):
        os.mkfifo(tmp_path / name)
    with pytest.raises(InputError) as info:
        load_image(tmp_path / "fifo.jpg")
    assert str(info.value) == f"{tmp_path / 'fifo.jpg'}: {PIPE}"
    with pytest.raises(InputError) as info:
        load_video_views(tmp_path / "fifo.mp4", VideoProtocol(), (0.5,) * 3, (0.5,) * 3)
    assert str(info.value) == f"{tmp_path / 'fifo.mp4'}: {PIPE}"
    with pytest.raises(InputError) as info:
        load_image("/dev/null")
    assert str(info.value) == "/dev/null: is a device, not a regular file"


def test_classify_of_a_pipe_with_no_writer_fails_at_once_instead_of_waiting(mini_files, example_images):
    """``mkfifo f.jpg; ssmzoo classify f.jpg`` used to wait forever for a writer."""
    manifest, checkpoint = mini_files
    os.mkfifo(example_images / "f.jpg")
    res = subprocess.run([sys.executable, "-m", "ssmzoo", "--manifest", str(manifest), "classify", "f.jpg",
                          "coffee.jpg", "--model", "groupmamba_mini", "--weights", str(checkpoint)],
                         capture_output=True, text=True, cwd=example_images, timeout=300)
    assert res.returncode == 1
    assert f"error: f.jpg: {PIPE}" in res.stderr.splitlines()
    assert "coffee.jpg" in res.stdout  # the rest is classified
    assert "1 of 2 inputs failed" in res.stderr


@pytest.mark.parametrize("model", ["groupmamba_mini", "videomamba_mini_k400"])
def test_a_process_substitution_pipe_is_refused_in_the_same_words_by_any_model(
        cli, mini_files, mini_video_checkpoint, example_images, model):
    """``ssmzoo classify <(cat x.jpg)`` names /dev/fd/N, a pipe: an image model called it an empty file,
    a video model read it to find it held an image. Here the pipe holds a JPEG, its writer closed."""
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, (example_images / "coffee.jpg").read_bytes()[:4096])
        os.close(write_end)
        path = f"/dev/fd/{read_end}"
        if not os.path.exists(path):
            pytest.skip("no /dev/fd here")
        weights = mini_video_checkpoint if model.startswith("videomamba") else None
        res = classify(cli, mini_files, path, model=model, weights=weights)
    finally:
        os.close(read_end)
    assert res.code == 1
    assert rows(res)[path]["error"] == f"{path}: {PIPE}"


def test_pipes_and_sockets_in_a_folder_are_counted_among_the_ignored_files(cli, mini_files, example_images):
    """They used to vanish from a folder's listing unsaid."""
    os.mkfifo(example_images / "pipe.jpg")
    (example_images / "notes.txt").write_text("not a photo")
    res = classify(cli, mini_files, example_images)
    assert res.code == 0, res.stderr
    assert (f"note: {example_images}: 2 files ignored (1 not an image or video by its suffix; 1 not a regular "
            f"file (a pipe, socket or device: {example_images / 'pipe.jpg'}))") in res.stderr.splitlines()
    assert len(rows(res)) == 4  # the four photos
    (example_images / "notes.txt").unlink()
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(example_images / "a.sock"))
        res = classify(cli, mini_files, example_images)
    finally:
        server.close()
    assert res.code == 0, res.stderr
    assert (f"note: {example_images}: 2 files ignored (not a regular file (a pipe, socket or device: "
            f"{example_images / 'a.sock'} and 1 more))") in res.stderr.splitlines()


def _eval(cli, mini_files, *args):
    manifest, checkpoint = mini_files
    return cli("--manifest", manifest, "eval", "--model", "groupmamba_mini", "--weights", checkpoint,
               "--workers", "0", "--json", *args)


def test_eval_leaves_out_a_pipe_among_the_images_and_says_so(cli, mini_files, example_images, tmp_path):
    tree = tmp_path / "val"
    (tree / "n01440764").mkdir(parents=True)
    shutil.copy(example_images / "coffee.jpg", tree / "n01440764")
    os.mkfifo(tree / "n01440764" / "pipe.JPEG")
    res = _eval(cli, mini_files, "--dataset", "imagenet", "--data-dir", tree)
    assert res.code == 0, res.stderr
    summary = json.loads(res.stdout)
    assert (summary["n"], summary["skipped"]) == (1, 0)
    assert (f"1 file ignored as not a regular file (a pipe, socket or device): "
            f"'{tree / 'n01440764' / 'pipe.JPEG'}'") in summary["notes"]
    flat = tmp_path / "flat"  # a flat folder of synset-named files, the same
    flat.mkdir()
    shutil.copy(example_images / "coffee.jpg", flat / "n01440764_1.JPEG")
    os.mkfifo(flat / "n01440764_2.JPEG")
    res = _eval(cli, mini_files, "--dataset", "imagenet", "--data-dir", flat)
    assert res.code == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["n"] == 1
    assert (f"1 file ignored as not a regular file (a pipe, socket or device): "
            f"'{flat / 'n01440764_2.JPEG'}'") in summary["notes"]


def test_eval_reads_no_pipe_from_a_list_or_as_a_labels_file(cli, mini_files, mini_video_checkpoint, tmp_path):
    os.mkfifo(tmp_path / "clip.mp4")
    (tmp_path / "list.txt").write_text("clip.mp4 0\n")
    manifest, _ = mini_files
    res = cli("--manifest", manifest, "eval", "--dataset", "kinetics400", "--list", tmp_path / "list.txt",
              "--model", "videomamba_mini_k400", "--weights", mini_video_checkpoint, "--workers", "0")
    assert res.code == 1
    assert f"skipped: {tmp_path / 'clip.mp4'}: {PIPE}" in res.stderr.splitlines()
    os.mkfifo(tmp_path / "labels.txt")
    res = _eval(cli, mini_files, "--dataset", "imagenet", "--data-dir", tmp_path, "--labels", tmp_path / "labels.txt")
    assert res.code == 2
    assert res.stderr.startswith(f"error: --labels {tmp_path / 'labels.txt'}: {PIPE}")


# ----------------------------------------------------------------------------- links in a loop


def test_links_in_a_loop_are_called_a_loop_not_a_broken_link(cli, mini_files, example_images, tmp_path):
    """``ln -s loop2.jpg loop1.jpg; ln -s loop1.jpg loop2.jpg``: both targets exist (as links), so
    "its target loop2.jpg does not exist" was wrong."""
    (example_images / "loop1.jpg").symlink_to("loop2.jpg")
    (example_images / "loop2.jpg").symlink_to("loop1.jpg")
    res = classify(cli, mini_files, example_images / "loop1.jpg", example_images)
    assert res.code == 1
    found = rows(res)
    assert found[str(example_images / "loop1.jpg")]["error"] == f"{example_images / 'loop1.jpg'}: {LOOP}"
    assert found[str(example_images / "loop2.jpg")]["error"] == f"{example_images / 'loop2.jpg'}: {LOOP}"
    tree = tmp_path / "val" / "n01440764"
    tree.mkdir(parents=True)
    shutil.copy(example_images / "coffee.jpg", tree)
    (tree / "loop.JPEG").symlink_to("loop.JPEG")
    res = _eval(cli, mini_files, "--dataset", "imagenet", "--data-dir", tree.parent)
    assert res.code == 0, res.stderr
    assert json.loads(res.stdout)["skipped_items"] == [
        {"path": str(tree / "loop.JPEG"), "error": f"{tree / 'loop.JPEG'}: {LOOP}"}]


def test_a_missing_file_is_said_in_one_wording_by_every_reader(tmp_path):
    for path in (tmp_path / "gone.jpg", tmp_path / "gone.mp4"):
        with pytest.raises(InputError) as info:
            (load_image if path.suffix == ".jpg" else
             lambda p: load_video_views(p, VideoProtocol(), (0.5,) * 3, (0.5,) * 3))(path)
        assert str(info.value) == f"{path}: no such file or directory"
