"""`ssmzoo classify`, `models`, `info` and `convert` as a user runs them."""

import json
import re
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import ssmzoo  # noqa: F401
from ssmzoo.factory import load_model
from ssmzoo.images import eval_transform, load_image
from ssmzoo.manifest import load_manifest

from conftest import EXAMPLES, photos_under_other_suffixes


def test_classify_prints_top5_imagenet_labels(cli, mini_files, example_images):
    manifest, checkpoint = mini_files
    res = cli("--manifest", manifest, "classify", example_images / "*.jpg", "--model", "groupmamba_mini",
              "--weights", checkpoint)
    assert res.code == 0, res.stderr
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        assert f"{name}.jpg" in res.stdout
    assert res.stdout.count("  1. ") == 4 and res.stdout.count("  5. ") == 4 and "  6. " not in res.stdout


def test_a_newline_in_a_file_name_keeps_each_message_and_header_on_one_line(cli, mini_files, example_images,
                                                                            tmp_path):
    manifest, checkpoint = mini_files
    folder = tmp_path / "nl"
    folder.mkdir()
    (folder / "bad\nname.jpg").write_bytes(b"")
    shutil.copy(example_images / "coffee.jpg", folder / "good\nname.jpg")
    res = cli("--manifest", manifest, "classify", folder, "--model", "groupmamba_mini", "--weights", checkpoint, "-k", "1")
    assert res.code == 1
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {folder}/bad\\nname.jpg: empty file (0 bytes)"], res.stderr
    assert res.stdout.splitlines()[0] == f"{folder}/good\\nname.jpg"
    json_lines = cli("--manifest", manifest, "classify", folder, "--model", "groupmamba_mini", "--weights", checkpoint,
                     "--json").stdout.splitlines()
    assert [json.loads(line)["input"] for line in json_lines] == [str(folder / "bad\nname.jpg"),
                                                                  str(folder / "good\nname.jpg")]  # JSON: as they are


def test_a_progress_bar_on_the_terminal_while_stdout_goes_to_a_file(mini_files, example_images, tmp_path):
    # a folder or a long video took seconds to minutes without a sign of life on the terminal
    import pty

    manifest, checkpoint = mini_files
    results = tmp_path / "out.txt"
    master, terminal = pty.openpty()
    with open(results, "w") as stdout:
        proc = subprocess.Popen([sys.executable, "-m", "ssmzoo", "--manifest", str(manifest), "classify",
                                 str(example_images), "--model", "groupmamba_mini", "--weights", str(checkpoint),
                                 "-b", "1"], stdout=stdout, stderr=terminal, env={**os.environ, "COLUMNS": "100"})
    os.close(terminal)
    seen = b""
    while True:  # read the terminal while ssmzoo runs: a full pty buffer would block its writes
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal's other end is closed and drained
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    proc.wait(timeout=600)
    assert proc.returncode == 0, seen.decode(errors="replace")
    assert b"groupmamba_mini" in seen and b"4/4" in seen  # the bar, counting inputs
    printed = results.read_text()
    assert printed.count("  1. ") == 4 and "\x1b" not in printed and "4/4" not in printed  # the results alone


def test_ranks_line_up_and_names_print_as_they_are(cli, mini_files, example_images, tmp_path):
    # a file name that looks like rich markup is printed literally; ranks 1-12 share one column
    manifest, checkpoint = mini_files
    odd = tmp_path / "photo [bold]1[dim].jpg"
    odd.write_bytes((example_images / "coffee.jpg").read_bytes())
    res = cli("--manifest", manifest, "classify", odd, "--model", "groupmamba_mini", "--weights", checkpoint,
              "--top-k", "12")
    assert res.code == 0, res.stderr
    assert "photo [bold]1[dim].jpg" in res.stdout
    ranks = [line[:6] for line in res.stdout.splitlines() if line.startswith("   ") or line.startswith("  1")]
    assert ranks[0] == "   1. " and ranks[8] == "   9. " and ranks[9] == "  10. " and ranks[11] == "  12. ", ranks


def test_a_directory_input_is_searched_recursively_without_hidden_folders(tmp_path):
    from ssmzoo.classify import expand_inputs

    for rel in ("b.jpg", "sub/a.png", ".cache/c.jpg", "sub/.d.jpg", "sub/notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    assert expand_inputs([str(tmp_path)]) == [(str(tmp_path / "b.jpg"), None), (str(tmp_path / "sub/a.png"), None)]
    # a hidden folder named on the command line is searched
    assert expand_inputs([str(tmp_path / ".cache")]) == [(str(tmp_path / ".cache/c.jpg"), None)]


def test_a_folder_takes_every_suffix_that_naming_the_file_reads(cli, mini_files, tmp_path):
    # a folder used to be listed by ten fixed suffixes: coffee.jfif classified when named, and its
    # folder was "directory holds no image or video files"
    manifest, checkpoint = mini_files
    paths = photos_under_other_suffixes(tmp_path / "photos")
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    run = ["--model", "groupmamba_mini", "--weights", checkpoint, "--json"]
    by_folder = cli("--manifest", manifest, "classify", tmp_path / "photos", *run)
    assert by_folder.code == 0, by_folder.stderr
    named = cli("--manifest", manifest, "classify", *paths, *run)
    assert named.code == 0, named.stderr
    rows = [json.loads(line) for line in by_folder.stdout.splitlines()]
    assert [r["input"] for r in rows] == [str(p) for p in paths]
    assert by_folder.stdout == named.stdout
    # the other file is left out, but said, as eval says it (it used to vanish unsaid)
    assert [line for line in by_folder.stderr.splitlines() if line.startswith("note:")] == [
        f"note: {tmp_path / 'photos'}: 1 file ignored (not an image or video by its suffix)"]
    assert "note:" not in named.stderr


def test_a_recursive_glob_reaches_each_file_once_through_a_link_cycle(tmp_path):
    from ssmzoo.classify import expand_inputs

    (tmp_path / "loop/a").mkdir(parents=True)
    (tmp_path / "loop/a/x.jpg").write_bytes(b"x")
    (tmp_path / "loop/y.jpg").write_bytes(b"y")
    (tmp_path / "loop/a/up").symlink_to(tmp_path / "loop")  # loop/a/up/a/up/... all reach the same files
    assert expand_inputs([str(tmp_path / "loop/**/*.jpg")]) == [
        (str(tmp_path / "loop/a/x.jpg"), None), (str(tmp_path / "loop/y.jpg"), None)]
    assert expand_inputs([str(tmp_path / "loop")]) == expand_inputs([str(tmp_path / "loop/**/*.jpg")])


def test_a_recursive_glob_ends_with_two_links_back_up_the_tree(tmp_path, monkeypatch):
    # `**` does not descend into links to folders (as bash's globstar): with two links to an ancestor
    # glob.glob's walk doubled at every level, and `classify '**/*.jpg'` ran for minutes, then out of memory
    from ssmzoo.classify import expand_inputs

    for sub in ("a", "b", ".hidden"):
        (tmp_path / "loop" / sub).mkdir(parents=True)
        (tmp_path / "loop" / sub / "up").symlink_to("..")
    (tmp_path / "loop/a/x.jpg").write_bytes(b"x")
    (tmp_path / "loop/.hidden/h.jpg").write_bytes(b"h")
    monkeypatch.chdir(tmp_path / "loop")
    assert expand_inputs(["**/*.jpg"]) == [("a/x.jpg", None)]  # hidden folders left out, as glob does
    assert expand_inputs([".hidden/**/*.jpg"]) == [(".hidden/h.jpg", None)]
    assert expand_inputs([str(tmp_path / "loop/**/x.jpg")]) == [(str(tmp_path / "loop/a/x.jpg"), None)]


def test_a_file_named_twice_is_classified_once(cli, mini_files, example_images, monkeypatch):
    # twice, directly and through its folder or a glob, spelt ./x or x/../x, or through a link: one result
    # per file, in the order of first mention; one note on stderr says what was skipped, stdout stays JSON Lines
    manifest, checkpoint = mini_files
    monkeypatch.chdir(example_images.parent)
    (example_images.parent / "alias.jpg").symlink_to(example_images / "chelsea.jpg")
    res = cli("--manifest", manifest, "classify", "images/coffee.jpg", "images/coffee.jpg", "images",
              "./images/coffee.jpg", "images/../images/rocket.jpg", "images/*.jpg", "alias.jpg", "nothing.jpg",
              "nothing.jpg", "--model", "groupmamba_mini", "--weights", checkpoint, "--json")
    assert res.code == 1  # nothing.jpg does not exist
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["input"] for r in rows] == ["images/coffee.jpg", "images/astronaut.jpg", "images/chelsea.jpg",
                                          "images/rocket.jpg", "nothing.jpg"]
    notes = [line for line in res.stderr.splitlines() if line.startswith("note:")]
    assert notes == ["note: skipped 10 inputs naming a file already given: images/coffee.jpg again, images/coffee.jpg "
                     "in folder images, ./images/coffee.jpg = images/coffee.jpg and 7 more (each file is classified once)"]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: nothing.jpg: no such file or directory"] and "1 of 5 inputs failed" in res.stderr


def test_expanded_inputs_pickle_and_copy_with_where_they_came_from(tmp_path):
    # expand_inputs' entries are (path, error) pairs that also say where they came from: they must survive
    # pickling (multiprocessing, a spawned DataLoader) and copying as they are
    import copy
    import pickle

    from ssmzoo.classify import expand_inputs

    (tmp_path / "d").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "d" / "a.jpg")
    entries = expand_inputs([str(tmp_path / "d")])
    for again in (pickle.loads(pickle.dumps(entries)), copy.deepcopy(entries)):
        assert again == entries == [(str(tmp_path / "d" / "a.jpg"), None)]
        assert [(e.given, e.via) for e in again] == [(str(tmp_path / "d"), "folder")]


def test_the_note_on_repeated_inputs_says_where_each_came_from(cli, mini_files, tmp_path, monkeypatch):
    # a repeat found through a pattern or a folder was listed as its bare path ("..., dir1/rocket.jpg,
    # dir1/rocket.jpg"), as if the same name had been dropped twice for nothing
    manifest, checkpoint = mini_files
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dir1").mkdir()
    shutil.copy(EXAMPLES / "rocket.jpg", tmp_path / "dir1" / "rocket.jpg")
    run = ["--model", "groupmamba_mini", "--weights", checkpoint, "-k", "1"]
    res = cli("--manifest", manifest, "classify", "dir1/rocket.jpg", "./dir1/rocket.jpg", "dir1/*.jpg", "dir1", *run)
    assert res.code == 0, res.stderr
    note = ("note: skipped 3 inputs naming a file already given: ./dir1/rocket.jpg = dir1/rocket.jpg, "
            "dir1/rocket.jpg from 'dir1/*.jpg', dir1/rocket.jpg in folder dir1 (each file is classified once)")
    assert [line for line in res.stderr.splitlines() if line.startswith("note:")] == [note]
    # a folder's or a pattern's repeats are one clause; --json keeps the note on stderr, stdout one line per file
    shutil.copy(EXAMPLES / "coffee.jpg", tmp_path / "dir1" / "coffee.jpg")
    res = cli("--manifest", manifest, "classify", "dir1", "dir1", "dir1/*.jpg", "dir1/coffee.jpg", *run, "--json")
    assert res.code == 0, res.stderr
    assert [json.loads(line)["input"] for line in res.stdout.splitlines()] == ["dir1/coffee.jpg", "dir1/rocket.jpg"]
    note = ("note: skipped 5 inputs naming a file already given: 2 files in folder dir1, 2 files from 'dir1/*.jpg', "
            "dir1/coffee.jpg again (each file is classified once)")
    assert [line for line in res.stderr.splitlines() if line.startswith("note:")] == [note]


def test_a_model_whose_output_is_nan_fails_each_input_in_words(cli, mini_files, example_images, tmp_path):
    # NaN scores used to print "1.    nan%  tench" (topk of NaNs is class 0), "probability": NaN in --json
    # (not JSON), and exit 0
    manifest, checkpoint = mini_files
    state = torch.load(checkpoint, weights_only=True)
    state["model"]["module.head.bias"][:] = float("nan")
    broken = tmp_path / "nan.pth"
    torch.save(state, broken)
    res = cli("--manifest", manifest, "classify", example_images / "coffee.jpg", example_images / "rocket.jpg",
              "--model", "groupmamba_mini", "--weights", broken, "--json")
    assert res.code == 1
    rows = [json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in JSON")) for line in res.stdout.splitlines()]
    assert len(rows) == 2 and all(r["top"] == [] for r in rows)
    assert rows[0]["error"] == (f"{example_images / 'coffee.jpg'}: groupmamba_mini's output for it is not finite "
                                "(NaN or inf): its weights are broken, or its activations overflow in float32")


def test_json_output_matches_the_model_run_by_hand(cli, mini_files, example_images):
    manifest, checkpoint = mini_files
    res = cli("--manifest", manifest, "classify", example_images, "--model", "groupmamba_mini",
              "--weights", checkpoint, "--json", "--top-k", "3", "--batch-size", "3")
    assert res.code == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["input"].rsplit("/", 1)[-1] for r in rows] == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"]
    assert {(r["model"], r["weights"]) for r in rows} == {("groupmamba_mini", f"local:{checkpoint}")}

    entry = load_manifest([manifest])["groupmamba_mini"]
    loaded = load_model(entry, weights=str(checkpoint), device="cpu")
    transform = eval_transform(entry.data)
    batch = torch.stack([transform(load_image(example_images / "coffee.jpg"))])
    with torch.no_grad():
        probs = loaded.model(batch).softmax(-1)[0]
    values, indices = probs.topk(3)
    coffee = rows[2]
    assert [t["index"] for t in coffee["top"]] == indices.tolist()
    assert [t["probability"] for t in coffee["top"]] == [round(v, 6) for v in values.tolist()]
    assert coffee["top"][0]["class_id"].startswith("n") and coffee["error"] is None


def test_broken_inputs_are_reported_and_the_rest_classified(cli, mini_files, example_images):
    manifest, checkpoint = mini_files
    (example_images / "empty.jpg").write_bytes(b"")
    (example_images / "notes.jpg").write_text("not an image")
    gray = example_images / "gray.png"
    Image.open(example_images / "chelsea.jpg").convert("L").save(gray)
    res = cli("--manifest", manifest, "classify", example_images, example_images / "missing.jpg",
              "--model", "groupmamba_mini", "--weights", checkpoint, "--json")
    assert res.code == 1
    rows = {r["input"].rsplit("/", 1)[-1]: r for r in map(json.loads, res.stdout.splitlines())}
    assert len(rows) == 8
    assert rows["gray.png"]["error"] is None and len(rows["gray.png"]["top"]) == 5
    for bad, cause in [("empty.jpg", "empty file"), ("notes.jpg", "not an image"), ("missing.jpg", "no such file")]:
        assert cause in rows[bad]["error"]
    error_lines = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 3 and "3 of 8 inputs failed" in res.stderr
    assert "Traceback" not in res.stderr


def test_no_weights_offline_is_one_line_error(cli, monkeypatch, example_images):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    res = cli("classify", example_images / "coffee.jpg", "--model", "groupmamba_tiny")
    assert res.code == 1
    assert res.stdout == ""
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "--weights" in lines[0]


def test_user_errors_never_print_a_traceback(tmp_path, mini_files):
    manifest, _ = mini_files
    proc = subprocess.run([sys.executable, "-m", "ssmzoo", "--manifest", str(manifest), "classify",
                           str(tmp_path / "x.jpg"), "--model", "groupmamba_minu"], capture_output=True, text=True)
    assert proc.returncode == 2  # a model name the user typed: a usage error
    assert proc.stderr.strip().startswith("error: unknown model 'groupmamba_minu'; did you mean groupmamba_mini")
    assert proc.stderr.strip().endswith("(see `ssmzoo classify --help`)")
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("option, value, message", [
    ("--device", "tpu", "--device 'tpu': expected auto, cpu, cuda or cuda:N"),  # checked by ssmzoo
    ("--device", "mps", "--device mps: ssmzoo runs on cpu or cuda"),  # a torch device ssmzoo does not run on
    ("--device", "meta", "--device meta: ssmzoo runs on cpu or cuda"),
    ("--dtype", "fp64", "--dtype 'fp64': expected one of fp32, fp16, bf16"),  # checked by ssmzoo
    ("--top-k", "0", "Invalid value for '--top-k' / '-k'"),  # checked by click
    ("--weights", "nothing_here.pth", "nothing_here.pth: no such file or directory"),
])
def test_a_bad_option_value_is_a_usage_error_whoever_checks_it(cli, mini_files, example_images, option, value,
                                                                message):
    """Exit code 2 and one line pointing at the command's --help, as click's own checks give."""
    manifest, checkpoint = mini_files
    args = ["--manifest", manifest, "classify", example_images / "coffee.jpg", "--model", "groupmamba_mini"]
    res = cli(*args, *(["--weights", checkpoint] if option != "--weights" else []), option, value)
    assert res.code == 2 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), res.stderr
    assert lines[0].endswith("(see `ssmzoo classify --help`)")


def test_manifest_after_the_command_says_where_it_goes(cli, mini_files):
    res = cli("models", "--manifest", mini_files[0])
    assert res.code == 2
    assert res.stderr.strip() == ("error: --manifest is an option of ssmzoo itself: put it before the command, as in "
                                  "`ssmzoo --manifest FILE models ...` (or set $SSMZOO_MANIFEST)")
    assert "groupmamba_mini" in cli("--manifest", mini_files[0], "models").stdout


def test_a_manifest_that_is_not_text_is_a_malformed_manifest(cli, example_images):
    # the file is there, so --manifest was typed right: what is in it is wrong, as for invalid YAML
    res = cli("--manifest", example_images / "coffee.jpg", "models")
    assert res.code == 1 and res.stdout == "" and "Traceback" not in res.stderr
    assert res.stderr == f"error: {example_images / 'coffee.jpg'}: cannot read manifest: not a UTF-8 text (YAML) file\n"


def test_a_manifest_path_with_no_file_is_a_usage_error_and_a_bad_file_a_failed_run(cli, tmp_path):
    """As the README's exit codes say: a path that names no file (nothing there, a broken link, a folder)
    is the command line typed wrong, exit code 2 pointing at `ssmzoo --help` (--manifest is ssmzoo's
    option); a file that is there but malformed (not UTF-8, not YAML, empty, a bad entry) exit code 1."""
    (tmp_path / "link.yaml").symlink_to("gone.yaml")
    (tmp_path / "latin1.yaml").write_bytes("models: {caf\xe9: 1}\n".encode("latin-1"))
    (tmp_path / "unclosed.yaml").write_text("models: [\n")
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "typo.yaml").write_text("models:\n  m:\n    famliy: groupmamba\n")
    cases = [
        ("nosuch.yaml", 2, "cannot read manifest: no such file or directory (see `ssmzoo --help`)"),
        ("link.yaml", 2, "cannot read manifest: broken link (its target gone.yaml does not exist) (see `ssmzoo --help`)"),
        (".", 2, "cannot read manifest: it is a folder, not a file (see `ssmzoo --help`)"),
        ("latin1.yaml", 1, "cannot read manifest: not a UTF-8 text (YAML) file"),
        ("unclosed.yaml", 1, ":2:1: not valid YAML: expected the node content, but found '<stream end>'"),
        ("empty.yaml", 1, ": the manifest is empty; expected a top-level 'models:' mapping"),
        ("typo.yaml", 1, ": model 'm', field 'famliy': unknown field"),
    ]
    for name, code, tail in cases:
        path = tmp_path / name
        res = cli("--manifest", path, "models")
        [line] = res.stderr.splitlines()
        assert (res.code, res.stdout) == (code, ""), (name, res.stderr)
        assert line.startswith(f"error: {path}") and tail in line and (line.endswith("--help`)") == (code == 2)), line


def test_a_manifest_that_is_not_yaml_names_the_line_and_column(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  foo: [1, 2\n  bar: 3\n")
    res = cli("--manifest", bad, "models")
    assert res.code == 1 and res.stderr.strip() == f"error: {bad}:3:6: not valid YAML: expected ',' or ']', but got ':'"


def test_a_damaged_checkpoint_is_a_failed_run_not_a_usage_error(cli, mini_files, example_images, tmp_path):
    manifest, _ = mini_files
    damaged = tmp_path / "damaged.pth"
    damaged.write_bytes(b"PK\x03\x04 not really a zip archive")
    res = cli("--manifest", manifest, "classify", example_images / "coffee.jpg", "--model", "groupmamba_mini",
              "--weights", damaged)
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert res.code == 1 and len(errors) == 1 and "damaged.pth" in errors[0] and "--help" not in errors[0]
    assert "Traceback" not in res.stderr


def test_models_lists_the_zoo(cli):
    res = cli("models", "--json")
    assert res.code == 0
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["groupmamba_tiny"]["top1"] == 83.3 and rows["groupmamba_tiny"]["weights"] == "hub"
    table = cli("models").stdout
    assert table.count("groupmamba_") >= 3
    assert "the paper's figures" in table and "`ssmzoo info MODEL` counts" in table  # blanks: figures no paper gives


def test_models_filters_by_glob_or_part_of_name_family_or_task(cli):
    def names(*patterns):
        res = cli("models", *patterns, "--json")
        assert res.code == 0, res.stderr
        return [r["name"] for r in json.loads(res.stdout)]

    assert names("groupmamba_*") == ["groupmamba_tiny", "groupmamba_small", "groupmamba_base"]
    assert names("GroupMamba") == names("groupmamba_*")  # the family, in any case
    assert set(names("groupmamba_t*", "groupmamba_b*")) == {"groupmamba_tiny", "groupmamba_base"}
    video = names("video-classification")
    assert video and all("k400" in n or "ssv2" in n or "video" in n for n in video) and "groupmamba_tiny" not in video
    assert "videomamba_tiny_in1k" in names("videomamba") and "videomamba_tiny_k400_f8" in names("VideoMamba")
    res = cli("models", "resnet*")
    assert res.code == 2 and res.stderr.startswith("error: no model matches 'resnet*'; `ssmzoo models` lists all")


def test_models_image_or_video_lists_that_task_only(cli):
    # `ssmzoo models video` used to list VideoMamba's ImageNet entries too: 'video' is a part of 'videomamba'
    rows = {r["name"]: r for r in json.loads(cli("models", "--json").stdout)}
    for word in ("video", "Video", "image"):
        res = cli("models", word, "--json")
        assert res.code == 0, res.stderr
        listed = [r["name"] for r in json.loads(res.stdout)]
        assert listed == [name for name, r in rows.items() if r["task"] == word.lower()]
        assert ("videomamba_tiny_in1k" in listed) == (word == "image")
    assert "image or video (the task)" in " ".join(cli("models", "--help").stdout.split())


def test_info_counts_parameters_of_the_built_model(cli):
    res = cli("info", "groupmamba_tiny", "--json")
    assert res.code == 0, res.stderr
    info = json.loads(res.stdout)
    assert all(key.isidentifier() and key == key.lower() for key in info), list(info)  # snake_case, for scripts
    assert abs(info["params_m_counted"] - 23.0) < 0.5 and info["params_m_reported"] == 23
    assert info["top1_reported"] == 83.3 and info["weights_status"] == "hub"
    assert info["data_config_resolved"]["crop_pct"] == 0.875
    assert info["scan_backend_cpu"] == "torch"
    table = cli("info", "groupmamba_tiny").stdout  # the table keeps its labels for people
    for label in ("params_m (counted)", "data config (resolved)", "weights status", "scan backend (cpu)"):
        assert f"│ {label} " in table
    assert "params_m_counted" not in table



def _without_rows(table: str, starts: tuple[str, ...]) -> str:
    """A rich table's text without the rows whose line contains one of ``starts``, their wrapped lines too."""
    kept, dropping = [], False
    for line in table.splitlines():
        if any(s in line for s in starts):
            dropping = True
            continue
        if dropping and line.startswith("│" + " " * 24 + "│"):  # the dropped row's continuation
            continue
        dropping = False
        kept.append(line)
    return "\n".join(kept)


def test_info_table_is_the_readmes_example_100_columns_wide_when_piped(cli):
    # piped (as here), the table is 100 columns, not the 200 of wide tables: the README shows it as printed
    from ssmzoo.cli import INFO_WIDTH, out

    if out.width < INFO_WIDTH:
        pytest.skip(f"COLUMNS={out.width} here: the table follows it")
    table = cli("info", "groupmamba_tiny").stdout
    assert {len(line) for line in table.splitlines()[1:]} == {INFO_WIDTH}
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    example = readme.split("$ ssmzoo info groupmamba_tiny\n", 1)[1].split("```", 1)[0]
    # the manifest row is the packaged file's full path, which depends on where ssmzoo is installed (and
    # may wrap onto more lines); the README was made on a machine without a GPU, whose scan row differs
    packaged = str(Path(ssmzoo.__file__).parent / "weights_manifest.yaml")
    assert packaged.replace(" ", "") in re.sub(r"[│\s]", "", table), table
    varies = ("│ manifest ",) + (("scan backend (cuda)",) if torch.cuda.is_available() else ())
    table, example = (_without_rows(text, varies) for text in (table, example))
    assert table.strip() == example.strip()

def test_convert_writes_safetensors_that_classify_the_same(cli, mini_files, example_images, tmp_path):
    manifest, checkpoint = mini_files
    out = tmp_path / "mini.safetensors"
    res = cli("--manifest", manifest, "convert", checkpoint, out, "--model", "groupmamba_mini")
    assert res.code == 0, res.stderr
    assert "loads strictly into groupmamba_mini" in res.stdout
    args = ("--manifest", manifest, "classify", example_images / "rocket.jpg", "--model", "groupmamba_mini", "--json")
    from_pth = json.loads(cli(*args, "--weights", checkpoint).stdout)
    from_st = json.loads(cli(*args, "--weights", out).stdout)
    assert from_pth["top"] == from_st["top"]
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # not safetensors' owner-only mode


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_convert_json_says_what_was_written_and_where_the_weights_were(cli, mini_files, tmp_path):
    manifest, checkpoint = mini_files  # {"model": {"module." + key: tensor}, "epoch": 3}
    source = torch.load(checkpoint, weights_only=True)["model"]
    out = tmp_path / "mini.safetensors"
    res = cli("--manifest", manifest, "convert", checkpoint, out, "--model", "groupmamba_mini", "--json")
    assert res.code == 0, res.stderr
    assert json.loads(res.stdout) == {
        "source": str(checkpoint),
        "output": str(out),
        "tensors": len(source),
        "tensor_bytes": sum(t.numel() * t.element_size() for t in source.values()),
        "file_bytes": out.stat().st_size,  # the data plus the safetensors header
        "source_format": "pth",
        "key_path": ["model"],  # the weights were found under "model"...
        "stripped_prefix": "module.",  # ...with DDP's prefix, which was removed
        "loads_strictly_into": "groupmamba_mini",
    }
    assert res.stderr == ""

    again = json.loads(cli("convert", out, tmp_path / "copy.safetensors", "--json").stdout)  # no --model: no check
    assert again["source_format"] == "safetensors" and again["key_path"] == [] and again["stripped_prefix"] is None
    assert again["loads_strictly_into"] is None and again["tensors"] == len(source)
    assert again["tensor_bytes"] == json.loads(res.stdout)["tensor_bytes"]


def test_the_weights_line_and_json_name_the_state_dict_the_checkpoint_supplied(cli, mini_files, example_images,
                                                                             tmp_path):
    # A training checkpoint often holds both the weights and their EMA; which one ran was said by
    # `convert --json` alone. The weights line says it once, and each --json line carries it.
    manifest, checkpoint = mini_files
    weights = torch.load(checkpoint, weights_only=True)["model"]
    both, flat = tmp_path / "both.pth", tmp_path / "flat.pth"
    torch.save({"model": weights, "model_ema": weights, "epoch": 3}, both)
    torch.save(weights, flat)
    args = ("--manifest", manifest, "classify", example_images / "coffee.jpg", "--model", "groupmamba_mini")
    for path, key_path, line in [
        (both, ["model_ema"], f"groupmamba_mini: weights local:{both} (state dict under 'model_ema')"),
        (checkpoint, ["model"], f"groupmamba_mini: weights local:{checkpoint} (state dict under 'model')"),
        (flat, [], f"groupmamba_mini: weights local:{flat}"),  # nothing to choose from: the line as it was
    ]:
        res = cli(*args, "--weights", path)
        assert res.code == 0 and res.stderr.splitlines() == [line], res.stderr
        res = cli(*args, "--weights", path, "--json")
        row = json.loads(res.stdout)
        assert (row["weights"], row["weights_key_path"]) == (f"local:{path}", key_path)
        assert res.stderr.splitlines() == [line]


def test_research_checkpoints_with_numpy_scalars_classify_and_convert(cli, mini_files, example_images, tmp_path):
    import numpy as np

    manifest, checkpoint = mini_files
    weights = torch.load(checkpoint, weights_only=True)["model"]
    research = tmp_path / "best.pth"
    torch.save({"model": weights, "epoch": np.int64(3), "best_acc": np.float64(83.1)}, research)
    args = ("--manifest", manifest, "classify", example_images / "coffee.jpg", "--model", "groupmamba_mini", "--json")
    assert json.loads(cli(*args, "--weights", research).stdout)["top"] == \
        json.loads(cli(*args, "--weights", checkpoint).stdout)["top"]
    res = cli("--manifest", manifest, "convert", research, tmp_path / "best.safetensors", "--model", "groupmamba_mini")
    assert res.code == 0 and res.stdout.endswith("loads strictly into groupmamba_mini\n"), res.stderr


def test_a_checkpoint_holding_other_objects_converts_only_when_trusted(cli, mini_files, example_images, tmp_path):
    import argparse

    import numpy as np

    manifest, checkpoint = mini_files
    weights = torch.load(checkpoint, weights_only=True)["model"]
    mine = tmp_path / "mine.pth"
    torch.save({"model": weights, "args": argparse.Namespace(output_dir=tmp_path / "runs"), "rng": np.arange(4)},
               mine)
    out = tmp_path / "mine.safetensors"
    classify = ("--manifest", manifest, "classify", example_images / "coffee.jpg", "--model", "groupmamba_mini")
    for res in (cli(*classify, "--weights", mine), cli("convert", mine, out)):  # the same loader, the same line
        assert res.code == 1 and res.stdout == "", res.stderr
        assert res.stderr.splitlines()[-1] == (
            f"error: {mine} holds pickled Python objects besides tensors ({type(tmp_path).__module__}."
            f"{type(tmp_path).__name__}), which ssmzoo refuses to unpickle (torch.load weights_only=True: they could "
            f"run code); if you trust this file, rewrite it once as safetensors with `ssmzoo convert {mine} "
            "OUT.safetensors --trust-checkpoint` (which runs the code it names) and use that file")
    assert not out.exists()

    res = cli("--manifest", manifest, "convert", mine, out, "--trust-checkpoint", "--model", "groupmamba_mini", "--json")
    assert res.code == 0 and res.stderr == "", res.stderr
    assert json.loads(res.stdout)["key_path"] == ["model"]
    res = cli(*classify, "--weights", out)  # and what it wrote loads with weights_only, as any safetensors
    assert res.code == 0 and res.stderr.splitlines() == [f"groupmamba_mini: weights local:{out}"]
    assert "--trust-checkpoint" in cli("convert", "--help").stdout


def test_trust_checkpoint_is_refused_for_a_hub_reference(cli, tmp_path):
    res = cli("convert", "hf-hub:org/repo/w.pth", tmp_path / "w.safetensors", "--trust-checkpoint")
    assert res.code == 2 and res.stdout == ""
    assert res.stderr.splitlines() == [
        "error: --trust-checkpoint hf-hub:org/repo/w.pth: it names a file on the network; ssmzoo unpickles such "
        "files only with torch.load(weights_only=True). The option is for a local file you trust "
        "(see `ssmzoo convert --help`)"]


def test_weights_and_convert_judge_a_file_by_its_content_and_say_the_same(cli, mini_files, example_images, tmp_path):
    # --weights judged by the suffix ("unsupported file type", exit code 2), convert by the content; and a
    # missing file was "--weights X: file not found" there, "weights file not found: X" here
    manifest, checkpoint = mini_files
    photo = example_images / "coffee.jpg"
    empty = tmp_path / "x.jpg"
    empty.write_bytes(b"")
    renamed = tmp_path / "weights.data"  # a checkpoint under an unusual name is still one
    shutil.copy(checkpoint, renamed)
    cases = [
        (photo, 1, f"error: {photo} is not a checkpoint: it is neither a safetensors file nor a PyTorch checkpoint"),
        (empty, 1, f"error: weights file {empty} is empty (0 bytes), probably an interrupted download; delete it and "
                   "download it again (or save it again, if it is your own file)"),
        (tmp_path / "nosuch.pth", 2, f"error: {tmp_path / 'nosuch.pth'}: no such file or directory (see `ssmzoo "
                                     "{command} --help`)"),
    ]
    for weights, code, line in cases:
        res = cli("--manifest", manifest, "classify", photo, "--model", "groupmamba_mini", "--weights", weights)
        assert (res.code, res.stdout, res.stderr) == (code, "", line.format(command="classify") + "\n"), res.stderr
        res = cli("convert", weights, tmp_path / "out.safetensors")
        assert (res.code, res.stdout, res.stderr) == (code, "", line.format(command="convert") + "\n"), res.stderr
    res = cli("--manifest", manifest, "classify", photo, "--model", "groupmamba_mini", "--weights", renamed, "--json")
    assert res.code == 0 and json.loads(res.stdout)["top"], res.stderr


def test_convert_json_failures_are_the_usual_one_line_errors(cli, mini_files, tmp_path):
    manifest, checkpoint = mini_files
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    for args, code, message in [
        ((tmp_path / "none.pth", tmp_path / "x.safetensors"), 2, "none.pth: no such file or directory"),
        ((checkpoint, tmp_path / "x.pth"), 2, "expected a .safetensors file name"),
        ((checkpoint, blocked / "x.safetensors"), 2, "is a file, not a folder"),
        ((checkpoint, tmp_path / "x.safetensors", "--model", "stablemamba_tiny_in1k"), 1, "do not fit"),
    ]:
        res = cli("--manifest", manifest, "convert", *args, "--json")
        lines = res.stderr.strip().splitlines()
        assert res.code == code and res.stdout == "" and len(lines) == 1, (args, res.stderr)
        assert lines[0].startswith("error:") and message in lines[0], (args, lines)
    assert not (tmp_path / "x.safetensors").exists()


def test_convert_checks_before_it_writes(cli, mini_files, tmp_path):
    manifest, checkpoint = mini_files
    out = tmp_path / "wrong.safetensors"
    res = cli("--manifest", manifest, "convert", checkpoint, out, "--model", "stablemamba_tiny_in1k")
    assert res.code == 1 and "Traceback" not in res.stderr and res.stderr.startswith("error:")  # weights do not fit
    assert "do not fit" in res.stderr and res.stderr.startswith(f"error: {checkpoint}: ")  # names the file
    res2 = cli("--manifest", manifest, "convert", checkpoint, out, "--model", "no_such_model")
    assert res2.code == 2 and "no_such_model" in res2.stderr
    assert not out.exists() and not list(tmp_path.glob("wrong*"))  # nothing written, no temp file left


def test_video_and_image_inputs_mixed(cli, mini_files, mini_video_checkpoint, example_images, tmp_path):
    from video_fixtures import write_mp4

    manifest, image_checkpoint = mini_files
    clip = write_mp4(tmp_path / "clip.mp4", num_frames=20, size=(96, 72))
    short = write_mp4(tmp_path / "short.mp4", num_frames=2, size=(80, 64))
    photo = example_images / "coffee.jpg"

    res = cli("--manifest", manifest, "classify", clip, short, photo, "--model", "videomamba_mini_k400",
              "--weights", mini_video_checkpoint, "--json", "--top-k", "2")
    rows = {r["input"].rsplit("/", 1)[-1]: r for r in map(json.loads, res.stdout.splitlines())}
    assert res.code == 1  # the photo cannot go through a video model
    assert "is an image, but videomamba_mini_k400 is a video model" in rows["coffee.jpg"]["error"]
    assert rows["clip.mp4"]["kind"] == "video" and len(rows["clip.mp4"]["top"]) == 2
    assert "6 views averaged" in rows["clip.mp4"]["notes"]
    assert any("repeated frames" in n for n in rows["short.mp4"]["notes"])
    from ssmzoo.labels import class_names
    assert rows["clip.mp4"]["top"][0]["label"] == class_names("kinetics-400")[rows["clip.mp4"]["top"][0]["index"]]

    assert "note: 2x3 = 6 views per video, each a forward pass of the model on the CPU" in res.stderr
    single = cli("--manifest", manifest, "classify", clip, "--model", "videomamba_mini_k400",
                 "--weights", mini_video_checkpoint, "--json", "--views", "1x1")
    assert single.code == 0 and json.loads(single.stdout)["notes"] == []
    assert "views per video" not in single.stderr

    res = cli("--manifest", manifest, "classify", photo, clip, "--model", "groupmamba_mini",
              "--weights", image_checkpoint, "--json")
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert res.code == 1 and rows[0]["error"] is None
    assert "is a video, but groupmamba_mini is an image model" in rows[1]["error"]


def test_a_renamed_file_is_judged_by_its_content(cli, mini_files, mini_video_checkpoint, example_images, tmp_path):
    # the name decides only while it agrees with the model; otherwise the content does
    import shutil

    from video_fixtures import write_mp4

    manifest, image_checkpoint = mini_files
    clip_as_jpg = tmp_path / "clip.jpg"
    write_mp4(tmp_path / "clip.mp4", num_frames=20, size=(96, 72)).rename(clip_as_jpg)
    photo_as_mp4 = tmp_path / "photo.mp4"
    shutil.copy(example_images / "coffee.jpg", photo_as_mp4)
    notes = tmp_path / "notes.md"
    notes.write_text("# not media\n")

    dangling = tmp_path / "gone.jpg"
    dangling.symlink_to(tmp_path / "nowhere.jpg")

    res = cli("--manifest", manifest, "classify", clip_as_jpg, notes, photo_as_mp4, dangling, "--model",
              "videomamba_mini_k400", "--weights", mini_video_checkpoint, "--json", "--views", "1x1")
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert res.code == 1 and "Traceback" not in res.stderr
    assert rows[0]["error"] is None and rows[0]["kind"] == "video" and rows[0]["top"]
    assert rows[1]["error"] == f"{notes}: not an image or video file ssmzoo can read"
    assert rows[2]["error"] == f"{photo_as_mp4}: is a still image (jpeg_pipe), not a video"
    assert rows[3]["error"] == f"{dangling}: broken link (its target {tmp_path / 'nowhere.jpg'} does not exist)"

    res = cli("--manifest", manifest, "classify", photo_as_mp4, clip_as_jpg, "--model", "groupmamba_mini",
              "--weights", image_checkpoint, "--json")
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert rows[0]["error"] is None and rows[0]["kind"] == "image" and rows[0]["top"]
    assert rows[1]["error"] == f"{clip_as_jpg}: is a video, but groupmamba_mini is an image model"


def test_an_audio_only_file_gets_one_message_whoever_reads_it(cli, mini_files, mini_video_checkpoint, tmp_path):
    # an image model judging a sound.mp4 by its content used to say "not an image or video file ssmzoo can
    # read", where a video model, eval's video lists and robustness say there is no video stream
    from video_fixtures import write_audio_only

    manifest, image_checkpoint = mini_files
    sound = write_audio_only(tmp_path / "sound.mp4")
    renamed = tmp_path / "sound.jpg"
    renamed.write_bytes(sound.read_bytes())
    errors = []
    for model, weights in (("groupmamba_mini", image_checkpoint), ("videomamba_mini_k400", mini_video_checkpoint)):
        res = cli("--manifest", manifest, "classify", sound, renamed, "--model", model, "--weights", weights, "--json")
        assert res.code == 1 and "Traceback" not in res.stderr
        errors += [json.loads(line)["error"] for line in res.stdout.splitlines()]
    listed = tmp_path / "list.txt"
    listed.write_text("sound.mp4 abseiling\n")
    res = cli("--manifest", manifest, "eval", "--dataset", "kinetics400", "--list", listed, "--model",
              "videomamba_mini_k400", "--weights", mini_video_checkpoint, "--workers", "0")
    errors += [line.removeprefix("skipped: ") for line in res.stderr.splitlines() if line.startswith("skipped: ")]
    assert errors == [f"{path}: no video stream (audio-only file)" for path in (sound, renamed, sound, renamed, sound)]


def test_a_damaged_mp4_is_reported_and_the_later_inputs_are_classified(cli, mini_files, mini_video_checkpoint,
                                                                       tmp_path):
    # one byte in the sample table's box name: ffmpeg opens the file, but its video stream has no codec. It
    # used to end classify with an AttributeError traceback (losing the inputs after it) and eval's skip
    # said "unreadable (AttributeError: 'NoneType' object has no attribute 'width')"
    from video_fixtures import write_mp4

    manifest, image_checkpoint = mini_files
    clip = write_mp4(tmp_path / "clip.mp4", num_frames=20, size=(96, 72))
    data = bytearray(clip.read_bytes())
    data[data.index(b"stbl") + 1] = 0x94
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    error = (f"{damaged}: no decodable video stream (its codec is unknown to ffmpeg: truncated or corrupt, "
             "or an unsupported codec)")

    res = cli("--manifest", manifest, "classify", damaged, clip, "--model", "videomamba_mini_k400",
              "--weights", mini_video_checkpoint, "--json", "--views", "1x1")
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert res.code == 1 and "Traceback" not in res.stderr
    assert rows[0]["error"] == error and rows[1]["error"] is None and rows[1]["top"]

    # an image model checks what a file named like a video holds: the same line
    res = cli("--manifest", manifest, "classify", damaged, "--model", "groupmamba_mini",
              "--weights", image_checkpoint, "--json")
    assert res.code == 1 and "Traceback" not in res.stderr
    assert json.loads(res.stdout)["error"] == error

    listed = tmp_path / "list.txt"
    listed.write_text("damaged.mp4 abseiling\nclip.mp4 abseiling\n")
    res = cli("--manifest", manifest, "eval", "--dataset", "kinetics400", "--list", listed, "--model",
              "videomamba_mini_k400", "--weights", mini_video_checkpoint, "--workers", "0")
    assert f"skipped: {error}" in res.stderr.splitlines() and "Traceback" not in res.stderr


def test_an_unreadable_video_gets_the_same_cause_from_an_image_model(cli, mini_files, mini_video_checkpoint,
                                                                      tmp_path):
    # an image model judging these by content used to say "not an image or video file ssmzoo can read" where
    # the video model names the cause; a truncated MP4 renamed .jpg is recognised by its 'ftyp' box
    from video_fixtures import truncate, write_mp4

    manifest, image_checkpoint = mini_files
    zero = tmp_path / "zero.mp4"
    zero.write_bytes(b"")
    cut = truncate(write_mp4(tmp_path / "cut.mp4", num_frames=30, size=(96, 72)), 0.5)
    cut_as_jpg = tmp_path / "cut.jpg"
    cut_as_jpg.write_bytes(cut.read_bytes())
    inputs = (zero, cut, cut_as_jpg)
    errors = {}
    for model, weights in (("groupmamba_mini", image_checkpoint), ("videomamba_mini_k400", mini_video_checkpoint)):
        res = cli("--manifest", manifest, "classify", *inputs, "--model", model, "--weights", weights, "--json")
        assert res.code == 1 and "Traceback" not in res.stderr
        errors[model] = [json.loads(line)["error"] for line in res.stdout.splitlines()]
    assert errors["groupmamba_mini"] == errors["videomamba_mini_k400"]
    assert errors["groupmamba_mini"][0] == f"{zero}: empty file (0 bytes)"
    assert [e.startswith(f"{path}: truncated or corrupt MP4/MOV file (ffmpeg: ") for path, e in
            zip(inputs[1:], errors["groupmamba_mini"][1:])] == [True, True]


def test_bad_views_option_is_one_line_error(cli, mini_files, example_images):
    manifest, checkpoint = mini_files
    res = cli("--manifest", manifest, "classify", example_images, "--model", "groupmamba_mini",
              "--weights", checkpoint, "--views", "4by3")
    assert res.code == 2 and res.stderr.strip() == (
        "error: --views '4by3': expected CLIPSxCROPS, e.g. 4x3 or 1x1 (see `ssmzoo classify --help`)")


def test_a_videos_views_go_through_the_model_batch_size_at_a_time(cli, mini_files, mini_video_checkpoint, tmp_path):
    from video_fixtures import write_mp4

    clip = write_mp4(tmp_path / "clip.mp4", num_frames=20, size=(96, 72))
    runs = [cli("--manifest", mini_files[0], "classify", clip, "--model", "videomamba_mini_k400", "--weights",
                mini_video_checkpoint, "--json", "--views", "3x3", "--top-k", "3", "--batch-size", size)
            for size in ("2", "9")]
    assert [r.code for r in runs] == [0, 0]
    small, whole = (json.loads(r.stdout) for r in runs)
    assert small["notes"] == ["9 views averaged"]
    assert [t["index"] for t in small["top"]] == [t["index"] for t in whole["top"]]
    for a, b in zip(small["top"], whole["top"]):
        assert a["probability"] == pytest.approx(b["probability"], rel=1e-4)


def test_a_videos_views_and_the_models_blocks_move_the_progress_and_nothing_else(mini_files, mini_video_checkpoint,
                                                                                tmp_path):
    # a long video on a CPU (12 views in one forward pass, minutes) left the bar, counting inputs, standing still
    from ssmzoo.classify import Classifier
    from video_fixtures import write_mp4

    clip = str(write_mp4(tmp_path / "clip.mp4", num_frames=20, size=(96, 72)))
    loaded = load_model(load_manifest([mini_files[0]])["videomamba_mini_k400"], weights=str(mini_video_checkpoint),
                        device="cpu")
    steps = []
    heard = list(Classifier(loaded, top_k=3, batch_size=4, views=(3, 2)).run([(clip, None)], on_video=steps.append))
    assert [str(s) for s in steps] == [
        "clip.mp4: decoding frames for 6 views",
        "clip.mp4: views 1-4/6, layer 0/2", "clip.mp4: views 1-4/6, layer 1/2", "clip.mp4: views 1-4/6, layer 2/2",
        "clip.mp4: views 5-6/6, layer 0/2", "clip.mp4: views 5-6/6, layer 1/2", "clip.mp4: views 5-6/6, layer 2/2",
        "clip.mp4: 6 views done"]
    assert [s.fraction for s in steps] == pytest.approx([0, 0, 2 / 6, 4 / 6, 4 / 6, 5 / 6, 1, 1])
    plain = list(Classifier(loaded, top_k=3, batch_size=4, views=(3, 2)).run([(clip, None)]))
    assert [r.to_dict() for r in heard] == [r.to_dict() for r in plain]  # the same batches, the same numbers
    assert not any(block._forward_hooks for block in loaded.model.modules())  # none left behind
    one = []
    list(Classifier(loaded, batch_size=1, views=(1, 2)).run([(clip, None)], on_video=one.append))
    assert str(one[2]) == "clip.mp4: view 1/2, layer 1/2" and one[2].fraction == pytest.approx(0.25)


def test_the_classify_bar_follows_a_videos_views_and_says_which(cli, mini_files, mini_video_checkpoint, tmp_path,
                                                                monkeypatch):
    import contextlib

    import ssmzoo.evaluate
    from video_fixtures import write_mp4

    clip = write_mp4(tmp_path / "clip.mp4", num_frames=20, size=(96, 72))
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"")  # fails: the bar moves past it too
    args = ("--manifest", mini_files[0], "classify", photo, clip, "--model", "videomamba_mini_k400", "--weights",
            mini_video_checkpoint, "--json", "--views", "1x2", "-b", "1")
    plain = cli(*args)
    updates = []

    @contextlib.contextmanager
    def recorder(console, description, unit, **_):
        yield lambda done, total, what=None: updates.append((done, total, what))

    monkeypatch.setattr(ssmzoo.evaluate, "progress_bar", recorder)
    watched = cli(*args)
    assert watched.code == plain.code == 1 and watched.stdout == plain.stdout  # the same lines, --json too
    name = "videomamba_mini_k400"
    assert updates[0] == (0, 2, None) and updates[1] == (1, 2, None) and updates[-1] == (2, 2, None)
    assert (1.25, 2, f"{name} clip.mp4: view 1/2, layer 1/2") in updates
    assert (1.75, 2, f"{name} clip.mp4: view 2/2, layer 1/2") in updates
    assert [u[0] for u in updates] == sorted(u[0] for u in updates)


def test_the_bar_shows_a_file_name_as_it_is():
    import io

    from rich.console import Console

    from ssmzoo.evaluate import progress_bar

    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    with progress_bar(console, "m", "inputs") as update:
        update(0.5, 2, "m [bold]x[/bold].mp4: view 1/2")
    shown = console.file.getvalue()
    assert "m [bold]x[/bold].mp4: view 1/2" in shown and "0/2" in shown
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    with progress_bar(console, "m", "inputs") as update:
        update(0.5, 2, "m x.mp4: view 1/2")
        update(1, 2)
    shown = console.file.getvalue()
    assert "1/2" in shown and "x.mp4" not in shown  # back to the bar's own description


def test_more_views_than_memory_holds_fail_that_video_in_one_line(cli, mini_files, mini_video_checkpoint, tmp_path):
    from video_fixtures import write_mp4

    clip = write_mp4(tmp_path / "clip.mp4", num_frames=20, size=(96, 72))
    res = cli("--manifest", mini_files[0], "classify", clip, "--model", "videomamba_mini_k400", "--weights",
              mini_video_checkpoint, "--views", "100000x10000")
    assert res.code == 1
    assert f"error: {clip}: 100000x10000 views of 4 frames need 183105.5 GiB of memory, more than can be " \
           "allocated; ask for fewer --views" in res.stderr.splitlines()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA device")
def test_a_scan_backend_forced_where_it_cannot_run_is_one_line(cli, mini_files, example_images, monkeypatch):
    manifest, checkpoint = mini_files
    for value, message in [("bogus", "SSMZOO_SCAN='bogus': expected torch or triton"),
                           ("triton", "SSMZOO_SCAN=triton: the Triton scan needs")]:
        monkeypatch.setenv("SSMZOO_SCAN", value)
        res = cli("--manifest", manifest, "classify", example_images / "coffee.jpg", "--model", "groupmamba_mini",
                  "--weights", checkpoint)
        assert res.code == 1 and res.stdout == ""
        assert res.stderr.splitlines()[-1].startswith(f"error: {message}"), res.stderr
        info = json.loads(cli("info", "groupmamba_tiny", "--json").stdout)  # info shows why instead of failing
        assert info["scan_backend_cpu"].startswith(f"cannot run: {message}")
    monkeypatch.setenv("SSMZOO_SCAN", "torch")
    info = json.loads(cli("info", "groupmamba_tiny", "--json").stdout)
    assert info["scan_backend_cpu"] == "torch (forced by SSMZOO_SCAN)"
    assert info["scan_backend_cuda"].startswith("none: no CUDA device here")


def test_stablemamba_without_weights_says_how_to_pass_a_checkpoint(cli, example_images, tmp_path):
    res = cli("classify", example_images / "coffee.jpg", "--model", "stablemamba_tiny_in1k")
    assert res.code == 2  # the model needs an option the user left out
    assert res.stderr.strip().startswith("error: model 'stablemamba_tiny_in1k' has no published weights; pass --weights")


def test_stablemamba_with_a_users_checkpoint_classifies_and_converts(cli, example_images, tmp_path):
    """A StableMamba the user trained: save -> convert -> classify, like any other family."""
    import timm

    manifest = tmp_path / "sm.yaml"
    manifest.write_text(
        "models:\n  stablemamba_mini:\n    family: stablemamba\n    architecture: stablemamba_tiny\n"
        "    arch_args: {img_size: 64, embed_dim: 64, depth: 4, num_heads: 2}\n"
        "    task: image-classification\n    labels: imagenet-1k\n    data: {input_size: [3, 64, 64]}\n")
    model = timm.create_model("stablemamba_tiny", img_size=64, embed_dim=64, depth=4, num_heads=2)
    torch.save({"model": model.state_dict()}, tmp_path / "mine.pth")
    res = cli("--manifest", manifest, "convert", tmp_path / "mine.pth", tmp_path / "mine.safetensors",
              "--model", "stablemamba_mini")
    assert res.code == 0, res.stderr
    res = cli("--manifest", manifest, "classify", example_images, "--model", "stablemamba_mini",
              "--weights", tmp_path / "mine.safetensors", "--json")
    assert res.code == 0, res.stderr
    assert len(res.stdout.splitlines()) == 4


def test_options_that_cannot_apply_say_so(cli, mini_files, example_images):
    manifest, checkpoint = mini_files
    res = cli("--manifest", manifest, "classify", example_images / "coffee.jpg", "--model", "groupmamba_mini",
              "--weights", checkpoint, "--top-k", "2000", "--views", "2x1", "--json")
    assert res.code == 0, res.stderr
    assert len(json.loads(res.stdout)["top"]) == 1000
    assert "--top-k 2000 is more than groupmamba_mini's 1000 classes" in res.stderr
    assert "--views applies to video models" in res.stderr


def test_only_missing_inputs_are_reported_without_loading_a_model(cli, tmp_path):
    # (the autouse fixture's HF_ENDPOINT is a closed port: loading groupmamba_tiny would fail loudly)
    res = cli("classify", tmp_path / "gone.jpg", tmp_path / "*.png", "--model", "groupmamba_tiny", "--json")
    assert res.code == 1 and "huggingface" not in res.stderr.lower() and "weights" not in res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [bool(r["error"]) for r in rows] == [True, True] and "no such file" in rows[0]["error"]
    assert res.stderr.strip().splitlines()[-1] == "2 of 2 inputs failed"


def test_unreachable_hub_without_cache_is_one_line_error(cli, example_images):
    """HF_ENDPOINT (set by the autouse fixture) points at a closed port: no retries, one line, exit 1."""
    res = cli("classify", example_images / "coffee.jpg", "--model", "groupmamba_tiny")
    assert res.code == 1
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot reach http://127.0.0.1:9" in lines[0] and "--weights" in lines[0]
    assert "Retry" not in res.stderr


def test_revision_with_a_local_checkpoint_is_a_usage_error(cli, mini_files, example_images):
    # --revision picks a Hub version; with a local --weights it used to be ignored without a word
    manifest, checkpoint = mini_files
    res = cli("--manifest", manifest, "classify", example_images / "coffee.jpg", "--model", "groupmamba_mini",
              "--weights", checkpoint, "--revision", "v2")
    assert res.code == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines()[-1] == (
        f"error: --revision v2 picks a version of Hub weights; --weights {checkpoint} is a local file: drop one of "
        "them (see `ssmzoo classify --help`)")

