"""`ssmzoo eval` on small real datasets: ImageNet layouts, ImageFolder, a Kinetics list, torchrun sharding.

Labels are chosen from predictions computed by running the model directly (load_image + timm's eval
transform + forward; for videos the authors' views averaged by hand), so top-1 and top-5 have known,
non-trivial values that the CLI must reproduce.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ssmzoo  # noqa: F401
from ssmzoo.datasets import DatasetError, EvalData, Sample, build_dataset, stratified_subset
from ssmzoo.errors import SsmzooError
from ssmzoo.factory import load_model
from ssmzoo.images import eval_transform, load_image
from ssmzoo.labels import class_ids
from ssmzoo.manifest import load_manifest

from conftest import EXAMPLES, MINI_MANIFEST, photos_under_other_suffixes

ROOT = Path(__file__).resolve().parents[1]
IDS = class_ids("imagenet-1k")

EVAL_MANIFEST = MINI_MANIFEST + """
  groupmamba_evalmini:
    family: groupmamba
    architecture: groupmamba_tiny
    arch_args: {stem_hidden_dim: 16, embed_dims: [32, 64, 96, 128], mlp_ratios: [8, 8, 4, 4], depths: [1, 2, 2, 1]}
    task: image-classification
    labels: imagenet-1k
    data: {input_size: [3, 96, 96], crop_pct: 0.875, interpolation: bicubic}
    reported: {top1: 50.0, source: "a made-up figure for the test"}
  videomamba_evalmini:
    family: videomamba
    architecture: videomamba_tiny_video
    arch_args: {embed_dim: 64, depth: 2, img_size: 64, num_frames: 4}
    task: video-classification
    labels: kinetics-400
    data: {input_size: [3, 64, 64], crop_pct: 1.0, interpolation: bilinear}
    video: {num_frames: 4, sampling: sparse, clips: 2, crops: 3, short_side: 64, crop_size: 64}
    reported: {top1: 40.0, source: "a made-up figure for the test"}
"""


def _generated_images(folder: Path) -> list[Path]:
    """Odd sizes and modes: noise, gradients, grayscale, RGBA, a PNG; plus the example photos."""
    rng = np.random.default_rng(7)
    paths = []
    for src in sorted(EXAMPLES.glob("*.jpg")):
        paths.append(Path(shutil.copy(src, folder / src.name)))
    noise = Image.fromarray(rng.integers(0, 256, (80, 121, 3), dtype=np.uint8))
    noise.save(folder / "noise.jpg", quality=90)
    yy, xx = np.mgrid[0:150, 0:70]
    grad = np.stack([xx * 3, yy, (xx + yy) % 256], -1).astype(np.uint8)
    Image.fromarray(grad).save(folder / "gradient.png")
    gray = Image.open(EXAMPLES / "chelsea.jpg").convert("L").resize((101, 99))
    gray.save(folder / "gray.jpg")
    rgba = np.concatenate([rng.integers(0, 256, (131, 97, 3)), np.full((131, 97, 1), 128)], -1).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(folder / "alpha.png")
    blobs = Image.open(EXAMPLES / "coffee.jpg").resize((200, 90)).rotate(90, expand=True)
    blobs.save(folder / "sideways.jpg")
    paths += [folder / n for n in ("noise.jpg", "gradient.png", "gray.jpg", "alpha.png", "sideways.jpg")]
    return paths


def _hand_top5(entry, checkpoint, paths) -> list[list[int]]:
    loaded = load_model(entry, weights=str(checkpoint), device="cpu")
    transform = eval_transform(entry.data)
    batch = torch.stack([transform(load_image(p, entry.data.input_size[-1])) for p in paths])
    with torch.no_grad():
        return loaded.model(batch).softmax(-1).topk(5).indices.tolist()


@pytest.fixture(scope="session")
def eval_env(mini_files, tmp_path_factory):
    """Manifest with an eval model (reported top-1 50.0), 9 readable images and their by-hand top-5."""
    manifest_dir = tmp_path_factory.mktemp("evalmanifest")
    manifest = manifest_dir / "eval.yaml"
    manifest.write_text(EVAL_MANIFEST)
    _, checkpoint = mini_files
    staging = tmp_path_factory.mktemp("staging")
    paths = _generated_images(staging)
    entry = load_manifest([manifest])["groupmamba_evalmini"]
    top5 = _hand_top5(entry, checkpoint, paths)
    # Image i is labelled: its top-1 (i % 3 == 0), its 3rd guess (top-5 only), or a class outside its top-5.
    labels = []
    for i, t in enumerate(top5):
        labels.append([t[0], t[2], next(c for c in range(1000) if c not in t)][i % 3])
    return {"manifest": manifest, "checkpoint": checkpoint, "paths": paths, "top5": top5, "labels": labels}


def _break_files(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    empty = folder / "zz_empty.JPEG"
    empty.write_bytes(b"")
    text = folder / "zz_text.JPEG"
    text.write_text("this is not a JPEG")
    cut = folder / "zz_truncated.JPEG"
    cut.write_bytes((EXAMPLES / "rocket.jpg").read_bytes()[:3000])
    return [empty, text, cut]


@pytest.fixture()
def imagenet_tree(eval_env, tmp_path):
    """DIR/val/<synset>/ with the 9 images under their chosen labels and 3 broken files."""
    root = tmp_path / "imagenet"
    expected = {}
    for path, label, top5 in zip(eval_env["paths"], eval_env["labels"], eval_env["top5"]):
        dest = root / "val" / IDS[label] / path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest)
        expected[str(dest)] = (label, top5)
    bad = _break_files(root / "val" / IDS[eval_env["labels"][0]])
    (root / "val" / IDS[eval_env["labels"][0]] / "README.txt").write_text("not an image, ignored")
    return root, expected, bad


def _eval(cli, env, *args):
    """The eval command on the CPU, whatever the machine (the GPU loop has its own tests below)."""
    return cli("--manifest", env["manifest"], "eval", "--model", "groupmamba_evalmini",
               "--weights", env["checkpoint"], "--device", "cpu", *args)


def test_imagenet_tree_metrics_per_sample_and_skips(cli, eval_env, imagenet_tree, tmp_path):
    root, expected, bad = imagenet_tree
    per_sample, summary_file = tmp_path / "ps.jsonl", tmp_path / "out" / "results.json"
    res = _eval(cli, eval_env, "--dataset", "imagenet", "--data-dir", root, "--batch-size", "4", "--workers", "2",
                "--per-sample", per_sample, "--output", summary_file, "--json")
    assert res.code == 0, res.stderr
    summary = json.loads(res.stdout)
    assert json.loads(summary_file.read_text()) == summary
    assert (summary["n"], summary["evaluated"], summary["skipped"], summary["total"]) == (12, 9, 3, 12)
    assert summary["top1"] == pytest.approx(100 * 3 / 9, abs=1e-3)
    assert summary["top5"] == pytest.approx(100 * 6 / 9, abs=1e-3)
    assert summary["top1_diff"] == pytest.approx(100 * 3 / 9 - 50.0, abs=1e-3) and summary["reported_caveat"] is None
    assert summary["data_dir"] == str(root / "val") and summary["workers"] == 2
    assert 0.0 <= summary["data_wait_fraction"] <= 1.0 and summary["items_per_s"] > 0
    assert summary["protocol"] == "resize 109 bicubic, center crop 96"
    assert summary["execution"] == "eager"  # CPU: no CUDA graphs

    rows = [json.loads(line) for line in per_sample.read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(12))
    assert [r["path"] for r in rows] == sorted(r["path"] for r in rows)  # synset, then file name
    good = {r["path"]: r for r in rows if r["error"] is None}
    assert set(good) == set(expected)
    for path, (label, top5) in expected.items():
        r = good[path]
        assert (r["label"], r["label_id"], r["top5"], r["prediction"]) == (label, IDS[label], top5, top5[0])
        assert r["correct"] == (label == top5[0]) and r["correct5"] == (label in top5)
        assert r["prediction_id"] == IDS[top5[0]] and 0 < r["probability"] <= 1
    errors = {Path(r["path"]).name: r["error"] for r in rows if r["error"] is not None}
    assert set(errors) == {p.name for p in bad}
    assert "empty file" in errors["zz_empty.JPEG"] and "not an image" in errors["zz_text.JPEG"]
    assert "truncated" in errors["zz_truncated.JPEG"]
    skipped = [line for line in res.stderr.splitlines() if line.startswith("skipped: ")]
    assert len(skipped) == 3 and all(str(p) in "\n".join(skipped) for p in bad)
    assert "Traceback" not in res.stderr


def test_table_csv_outputs_and_synset_root_layout(cli, eval_env, imagenet_tree, tmp_path):
    root, expected, _ = imagenet_tree
    per_sample, summary_file = tmp_path / "ps.csv", tmp_path / "results.csv"
    # DIR/<synset>/ (no val/) is accepted too.
    res = _eval(cli, eval_env, "--dataset", "imagenet", "--data-dir", root / "val", "--workers", "0",
                "--per-sample", per_sample, "--output", summary_file)
    assert res.code == 0, res.stderr
    table = res.stdout
    for text in ("groupmamba_evalmini", "imagenet", "33.33 ±15.71", "66.67", "50.0", "-16.67", "img/s", "cpu", "fp32",
                 "protocol: resize 109 bicubic, center crop 96", "9 of 12 items evaluated, 3 unreadable skipped",
                 "waiting for data"):
        assert text in table, text
    with per_sample.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12
    by_path = {r["path"]: r for r in rows}
    for path, (label, top5) in expected.items():
        assert by_path[path]["top5"] == " ".join(map(str, top5)) and by_path[path]["prediction"] == str(top5[0])
    with summary_file.open() as f:
        (summary,) = list(csv.DictReader(f))
    assert summary["evaluated"] == "9" and float(summary["top5"]) == pytest.approx(66.6667, abs=1e-3)


def test_limit_is_class_stratified_and_deterministic(cli, eval_env, imagenet_tree, tmp_path):
    root, _, _ = imagenet_tree
    classes = sorted(d.name for d in (root / "val").iterdir())
    runs = []
    for _ in range(2):
        out = tmp_path / "ps.jsonl"
        res = _eval(cli, eval_env, "--dataset", "imagenet", "--data-dir", root, "--limit", len(classes),
                    "--workers", "0", "--per-sample", out, "--json")
        assert res.code == 0, res.stderr
        runs.append([json.loads(line)["path"] for line in out.read_text().splitlines()])
        assert json.loads(res.stdout)["total"] == 12 and json.loads(res.stdout)["n"] == len(classes)
    assert runs[0] == runs[1]
    # One item per class: each class's first file in sorted order.
    firsts = [str(sorted(p for p in (root / "val" / c).iterdir() if p.suffix != ".txt")[0]) for c in classes]
    assert runs[0] == firsts


def test_limit_counts_unreadable_files_among_its_n_and_says_so(cli, eval_env, imagenet_tree):
    # --limit picks its items before any is read (the same files for every run and model); an unreadable
    # one among them is skipped, not replaced, and the table, the note and --json say how many were evaluated
    root, _, bad = imagenet_tree
    res = _eval(cli, eval_env, "--dataset", "imagenet", "--data-dir", root, "--limit", "11", "--workers", "0",
                "--json")
    assert res.code == 0, res.stderr
    summary = json.loads(res.stdout)
    assert (summary["limit"], summary["n"], summary["evaluated"], summary["skipped"], summary["total"]) == (11, 11, 9, 2, 12)
    assert {Path(s["path"]).name for s in summary["skipped_items"]} == {"zz_empty.JPEG", "zz_text.JPEG"}
    assert ("--limit 11: 11 of 12 items (class-stratified, deterministic); 2 unreadable items among them skipped, "
            "not replaced, so 9 evaluated") in summary["notes"]
    table = _eval(cli, eval_env, "--dataset", "imagenet", "--data-dir", root, "--limit", "11", "--workers", "0").stdout
    assert "9 of 11 items evaluated, 2 unreadable skipped" in table
    assert "note: --limit 11: 11 of 12 items (class-stratified, deterministic); 2 unreadable items among them" in table
    # without --limit there is no limit to speak of
    assert json.loads(_eval(cli, eval_env, "--dataset", "imagenet", "--data-dir", root, "--workers", "0",
                            "--json").stdout)["limit"] is None
    # a limit above the dataset's size takes it all and is reported as given (it was null, without a word)
    over = json.loads(_eval(cli, eval_env, "--dataset", "imagenet", "--data-dir", root, "--limit", "100000",
                            "--workers", "0", "--json").stdout)
    assert (over["limit"], over["n"], over["total"]) == (100000, 12, 12)
    assert "--limit 100000 covers all 12 items of the dataset" in over["notes"]


def test_stratified_subset_round_robin():
    samples = [Sample(f"{c}/{i}", c) for c, count in ((0, 5), (1, 1), (2, 3)) for i in range(count)]
    picked = stratified_subset(samples, 6)
    assert [s.path for s in picked] == ["0/0", "0/1", "0/2", "1/0", "2/0", "2/1"]
    assert stratified_subset(samples, 9) == samples
    data = EvalData("imagenet", "image", "imagenet-1k", "/", samples).limit(4)
    assert (len(data), data.total) == (4, 9)


def test_flat_folder_with_labels_file(cli, eval_env, tmp_path):
    folder = tmp_path / "flat"
    folder.mkdir()
    lines, expected = ["ImageId,PredictionString"], {}
    for k, (path, label) in enumerate(zip(eval_env["paths"], eval_env["labels"]), 1):
        name = f"ILSVRC2012_val_{k:08d}"
        Image.open(path).convert("RGB").save(folder / f"{name}.JPEG", quality=95)
        expected[name] = label
        # Kaggle-style: stem only, synset or index, extra words after the label.
        lines.append(f"{name},{IDS[label]} 1 2 3 4" if k % 2 else f"{name}.JPEG,{label}")
    (folder / "unlabelled.JPEG").write_bytes((folder / "ILSVRC2012_val_00000001.JPEG").read_bytes())
    (folder / "README.md").write_text("not an image: ignored, and said so")
    labels = tmp_path / "val_labels.csv"
    labels.write_text("\n".join(lines + ["ILSVRC2012_val_00000099,0"]) + "\n")  # listed but missing
    out = tmp_path / "ps.jsonl"
    res = _eval(cli, eval_env, "--dataset", "imagenet", "--data-dir", folder, "--labels", labels,
                "--workers", "0", "--per-sample", out, "--json")
    assert res.code == 0, res.stderr
    summary = json.loads(res.stdout)
    assert (summary["n"], summary["evaluated"], summary["skipped"]) == (10, 9, 1)
    assert summary["warnings"] == [f"{folder / 'unlabelled.JPEG'}: no label (not named in {labels}); skipped"]
    assert f"warning: {folder / 'unlabelled.JPEG'}: no label" in res.stderr
    assert summary["notes"][1:] == ["1 non-image file ignored"]  # (the README.md; after the header note)
    rows = {Path(r["path"]).stem: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows["ILSVRC2012_val_00000099"]["error"].endswith(": no such file or directory")
    assert {k: rows[k]["label"] for k in expected} == expected
    # Re-encoded JPEGs may move a prediction, but the accuracy must follow the per-item rows.
    correct = sum(rows[k]["prediction"] == expected[k] for k in expected)
    assert summary["top1"] == pytest.approx(100 * correct / 9, abs=1e-3)

    bad = tmp_path / "bad_labels.txt"
    bad.write_text("ILSVRC2012_val_00000001.JPEG n01440764\nILSVRC2012_val_00000002.JPEG n99999999\n")
    res = _eval(cli, eval_env, "--dataset", "imagenet", "--data-dir", folder, "--labels", bad)
    assert res.code == 1 and res.stdout == ""
    assert res.stderr.strip().splitlines()[-1].startswith("error: ") and "bad_labels.txt:2" in res.stderr
    # a first line naming an image is data, not a header: a typo there is an error, not a skipped line
    typo = tmp_path / "typo_first.txt"
    typo.write_text("ILSVRC2012_val_00000001.JPEG n0144O764\nILSVRC2012_val_00000002.JPEG n01440764\n")
    res = _eval(cli, eval_env, "--dataset", "imagenet", "--data-dir", folder, "--labels", typo)
    assert res.code == 1 and "typo_first.txt:1" in res.stderr.strip().splitlines()[-1]
    res = _eval(cli, eval_env, "--dataset", "imagenet", "--data-dir", folder)  # (--labels missing: what the
    assert res.code == 1 and "--labels" in res.stderr and "Traceback" not in res.stderr  # folder holds decides)


def test_a_labels_file_takes_the_labels_class_map_and_list_take(cli, eval_env, tmp_path):
    """--labels read only indices and synsets, and called a class name 'no imagenet-1k class', though
    --class-map, --list and the README's index:/name: prefixes take names: one parser reads all three."""
    folder = tmp_path / "flat"
    folder.mkdir()
    for name in "abcdef":
        shutil.copy(eval_env["paths"][0], folder / f"{name}.jpg")
    labels = tmp_path / "flat.txt"
    labels.write_text("a.jpg 967\nb.jpg n04008634\nc.jpg tabby\nd.jpg name:tabby cat\ne.jpg index:5\n"
                      "f.jpg tiger cat\n")
    out = tmp_path / "ps.jsonl"
    res = _eval(cli, eval_env, "--dataset", "imagenet", "--data-dir", folder, "--labels", labels,
                "--workers", "0", "--per-sample", out, "--json")
    assert res.code == 0, res.stderr
    rows = {Path(r["path"]).name: (r["label"], r["label_name"]) for r in map(json.loads, out.read_text().splitlines())}
    assert rows == {"a.jpg": (967, "espresso"), "b.jpg": (744, "projectile"), "c.jpg": (281, "tabby"),
                    "d.jpg": (281, "tabby"), "e.jpg": (5, "electric ray"), "f.jpg": (282, "tiger cat")}
    accepted = "(a label is an ImageNet-1k index 0..999 in sorted-synset order, a synset or a class name)"
    for label, why in (("tabbby", "'tabbby' is no imagenet-1k class"),
                       ("crane", "'crane' is ambiguous (n02012849, n03126707)"),
                       ("n99999999 1 2 3 4", "'n99999999' is no imagenet-1k class")):
        labels.write_text(f"a.jpg 967\nb.jpg {label}\n")
        res = _eval(cli, eval_env, "--dataset", "imagenet", "--data-dir", folder, "--labels", labels)
        assert (res.code, res.stdout) == (1, "")
        assert res.stderr.strip().splitlines()[-1] == f"error: {labels}:2: {why} {accepted}"


def test_flat_folder_named_as_imagenet_training_files_is_labelled_by_the_names(cli, eval_env, tmp_path):
    folder = tmp_path / "train_named"
    folder.mkdir()
    expected = {}
    for k, (path, label) in enumerate(zip(eval_env["paths"], eval_env["labels"])):
        name = f"{IDS[label]}_{1000 + k}.JPEG"  # ImageNet's training naming: the synset, then a number
        shutil.copy(path, folder / name)
        expected[name] = label
    (folder / "README.md").write_text("not an image: ignored")
    out = tmp_path / "ps.jsonl"
    res = _eval(cli, eval_env, "--dataset", "imagenet", "--data-dir", folder, "--workers", "0", "--json",
                "--per-sample", out)
    assert res.code == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["evaluated"] == 9 and "labels from the synset each file name begins with" in summary["notes"]
    assert "1 non-image file ignored" in summary["notes"]  # the README.md, said as class folders say it
    rows = {Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    assert {k: rows[k]["label"] for k in expected} == expected

    (folder / "n99999999_1.JPEG").write_bytes((folder / next(iter(expected))).read_bytes())  # not an IN-1k class
    res = _eval(cli, eval_env, "--dataset", "imagenet", "--data-dir", folder)
    assert res.code == 1 and "file-name synsets are not ImageNet-1k classes: 'n99999999'" in res.stderr


def test_a_stray_image_among_synset_named_files_is_named_and_skipped(cli, eval_env, tmp_path):
    # one holiday.JPEG among n01440764_1000.JPEG ... used to fail the whole run with "no ImageNet synset
    # folders", naming neither the file nor what was wrong with it
    folder = tmp_path / "train_named"
    folder.mkdir()
    for k, (path, label) in enumerate(zip(eval_env["paths"], eval_env["labels"])):
        shutil.copy(path, folder / f"{IDS[label]}_{1000 + k}.JPEG")
    stray = folder / "holiday.JPEG"
    shutil.copy(eval_env["paths"][0], stray)
    res = _eval(cli, eval_env, "--dataset", "imagenet", "--data-dir", folder, "--workers", "0", "--json")
    assert res.code == 0, res.stderr
    why = "no label (file name without an ImageNet synset in front, as n01440764_10026.JPEG has); skipped"
    assert res.stderr.splitlines()[0] == f"warning: {stray}: {why}"
    summary = json.loads(res.stdout)
    assert summary["evaluated"] == 9 and summary["warnings"] == [f"{stray}: {why}"]
    # where most names carry no synset (ILSVRC2012_val_*), the layout is not synset-named: --labels is missing
    for k in range(9):
        shutil.copy(stray, folder / f"ILSVRC2012_val_{k:08d}.JPEG")
    res = _eval(cli, eval_env, "--dataset", "imagenet", "--data-dir", folder)
    last = res.stderr.strip().splitlines()[-1]
    assert res.code == 1 and "needs --labels FILE" in last and "(10 of 19 do not: 'ILSVRC2012_val_00000000.JPEG'" in last


def test_images_outside_the_class_folders_are_named_in_a_note(cli, eval_env, imagenet_tree):
    root, _, _ = imagenet_tree
    shutil.copy(eval_env["paths"][0], root / "val" / "holiday.jpg")
    res = _eval(cli, eval_env, "--dataset", "imagenet", "--data-dir", root, "--workers", "0", "--limit", "1",
                "--json")
    assert res.code == 0, res.stderr
    assert f"1 image directly in {root / 'val'} (outside synset folders) ignored: 'holiday.jpg'" in \
        json.loads(res.stdout)["notes"]


def test_a_link_back_to_a_folder_above_does_not_count_its_images_again(cli, eval_env, tmp_path):
    """Class folders are walked through links, but each folder once: ``self -> .`` used to list the
    folder's image 41 times over (and inflate top-1), two ``up -> ..`` links made the walk endless."""
    root = tmp_path / "folder"
    paths = eval_env["paths"]
    for k, folder in enumerate(("tabby cat", "goldfish")):
        (root / folder / "sub").mkdir(parents=True)
        shutil.copy(paths[k], root / folder / paths[k].name)
    (root / "tabby cat" / "self").symlink_to(".")
    (root / "goldfish" / "sub" / "up").symlink_to("..")
    (root / "tabby cat" / "sub").rmdir()
    (root / "tabby cat" / "sub").mkdir()
    (root / "tabby cat" / "sub" / "up").symlink_to("..")
    out = tmp_path / "ps.jsonl"
    res = _eval(cli, eval_env, "--dataset", "imagefolder", "--data-dir", root, "--workers", "0",
                "--per-sample", out, "--json")
    assert res.code == 0, res.stderr
    assert json.loads(res.stdout)["evaluated"] == 2
    assert sorted(Path(json.loads(line)["path"]).name for line in out.read_text().splitlines()) == sorted(
        p.name for p in paths[:2])


def test_a_broken_link_in_a_class_folder_is_said_as_classify_says_it(cli, eval_env, tmp_path):
    """It used to be "no such file", though the link is there: what is missing is its target."""
    root = tmp_path / "folder"
    (root / "tabby cat").mkdir(parents=True)
    shutil.copy(eval_env["paths"][0], root / "tabby cat")
    link = root / "tabby cat" / "gone.JPEG"
    link.symlink_to("nowhere.JPEG")
    res = _eval(cli, eval_env, "--dataset", "imagefolder", "--data-dir", root, "--workers", "0", "--json")
    assert res.code == 0, res.stderr
    why = f"{link}: broken link (its target nowhere.JPEG does not exist)"
    assert json.loads(res.stdout)["skipped_items"] == [{"path": str(link), "error": why}]
    assert f"skipped: {why}" in res.stderr.splitlines()
    classified = cli("--manifest", eval_env["manifest"], "classify", root, "--model", "groupmamba_evalmini",
                     "--weights", eval_env["checkpoint"], "--device", "cpu")
    assert f"error: {why}" in classified.stderr.splitlines()


def test_a_class_folder_that_is_a_broken_link_is_warned_about(cli, eval_env, tmp_path):
    """A class folder linked from a disk that is not mounted used to vanish without a word (exit 0, no
    warning), its class unscored, as if the dataset were smaller."""
    tree, folder = tmp_path / "tree", tmp_path / "folder"
    (tree / "val" / IDS[0]).mkdir(parents=True)
    (folder / "tench").mkdir(parents=True)
    shutil.copy(eval_env["paths"][0], tree / "val" / IDS[0])
    shutil.copy(eval_env["paths"][0], folder / "tench")
    for link in (tree / "val" / IDS[1], folder / "goldfish"):
        link.symlink_to(tmp_path / "unmounted" / link.name)
        dataset = "imagenet" if link.parent.name == "val" else "imagefolder"
        res = _eval(cli, eval_env, "--dataset", dataset, "--data-dir", link.parents[1 if dataset == "imagenet" else 0],
                    "--workers", "0", "--json")
        assert res.code == 0, res.stderr
        why = f"{link}: broken link (its target {tmp_path / 'unmounted' / link.name} does not exist); skipped"
        assert json.loads(res.stdout)["warnings"] == [why] and f"warning: {why}" in res.stderr.splitlines()


def test_a_dataset_whose_class_folders_are_all_broken_links_says_so(cli, eval_env, tmp_path):
    """Every class folder linked from a disk that is not mounted used to give "no class folders" (or "no
    ImageNet synset folders"), as if the layout were wrong: the error names the cause, one line, exit 1."""
    gone = tmp_path / "unmounted"
    tree, folder = tmp_path / "tree", tmp_path / "folder"
    (tree / "val").mkdir(parents=True)
    folder.mkdir()
    for k in range(3):
        (tree / "val" / IDS[k]).symlink_to(gone / IDS[k])
    (folder / "tench").symlink_to(gone / "tench")
    (folder / "stray.jpg").symlink_to(gone / "stray.jpg")  # a link to a missing image is no class folder
    first = tree / "val" / IDS[0]
    for dataset, data_dir, expected in (
            ("imagenet", tree, f"--data-dir {tree}: 3 synset folders, all broken links: {first}: broken link "
                               f"(its target {gone / IDS[0]} does not exist) (and 2 more like it)"),
            ("imagefolder", folder, f"--data-dir {folder}: 1 class folder, a broken link: {folder / 'tench'}: "
                                    f"broken link (its target {gone / 'tench'} does not exist)")):
        res = _eval(cli, eval_env, "--dataset", dataset, "--data-dir", data_dir)
        assert (res.code, res.stdout, res.stderr.splitlines()) == (1, "", [f"error: {expected}"])

    # some broken, the others empty: the error that none holds an image names the broken ones too
    (tree / "val" / IDS[3]).mkdir()
    res = _eval(cli, eval_env, "--dataset", "imagenet", "--data-dir", tree)
    assert res.code == 1 and res.stderr.splitlines() == [
        f"error: {tree / 'val'}: the class folders hold no image files (.jpg, .png or another suffix of a format "
        f"Pillow reads here); 3 broken links skipped: {first}: broken link (its target {gone / IDS[0]} does not "
        "exist) (and 2 more like it)"]

    # val/ itself a link to nothing
    other = tmp_path / "other"
    other.mkdir()
    (other / "val").symlink_to(gone / "val")
    res = _eval(cli, eval_env, "--dataset", "imagenet", "--data-dir", other)
    assert res.code == 1 and res.stderr.splitlines() == [
        f"error: --data-dir {other}: no ImageNet synset folders, and {other / 'val'}: broken link (its target "
        f"{gone / 'val'} does not exist)"]


def test_a_link_from_a_class_folder_to_another_class_is_not_followed(cli, eval_env, tmp_path):
    """``tench/up -> ..`` used to count the brambling folder's image a second time, labelled tench; each
    file is counted once, under its own class, and the link is named in a warning."""
    val = tmp_path / "imagenet" / "val"
    for k in range(2):
        (val / IDS[k] / "sub").mkdir(parents=True)
        shutil.copy(eval_env["paths"][k], val / IDS[k] / "sub" / "a.JPEG")
    (val / IDS[0] / "up").symlink_to("..")
    (val / IDS[0] / "side").symlink_to(Path("..") / IDS[1] / "sub")
    (val / IDS[1] / "sub" / "self").symlink_to(".")  # within its own class: followed, and walked once
    out = tmp_path / "ps.csv"
    res = _eval(cli, eval_env, "--dataset", "imagenet", "--data-dir", val.parent, "--workers", "0",
                "--per-sample", out, "--json")
    assert res.code == 0, res.stderr
    rows = list(csv.DictReader(out.open()))
    assert [(r["path"], r["label_id"]) for r in rows] == [(str(val / IDS[k] / "sub" / "a.JPEG"), IDS[k])
                                                          for k in range(2)]
    again = f"; not followed, so its images are not counted again as '{IDS[0]}'"
    assert json.loads(res.stdout)["warnings"] == [
        f"{val / IDS[0] / 'side'}: links to {os.path.realpath(val / IDS[1] / 'sub')}, inside class folder "
        f"'{IDS[1]}'{again}",
        f"{val / IDS[0] / 'up'}: links to {os.path.realpath(val)}, a folder holding the class folders{again}"]


def _jpeg(path: Path, shade: int) -> Path:
    """A small real JPEG (one flat colour) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), (shade, 255 - shade, 128)).save(path, quality=90)
    return path


def test_a_file_link_from_a_class_folder_to_another_class_is_not_counted_there(cli, eval_env, tmp_path):
    """``tench/x.JPEG -> ../brambling/a.JPEG`` used to count brambling's image twice, once labelled
    tench; as for a link to a folder, it is counted once, under its own class, and the link is named in
    a warning with the target's class."""
    val = tmp_path / "imagenet" / "val"
    for k in range(2):
        _jpeg(val / IDS[k] / "a.JPEG", 60 * k)
    link = val / IDS[0] / "x.JPEG"
    os.symlink(Path("..") / IDS[1] / "a.JPEG", link)
    out = tmp_path / "ps.csv"
    res = _eval(cli, eval_env, "--dataset", "imagenet", "--data-dir", val.parent, "--workers", "0",
                "--per-sample", out, "--json")
    assert res.code == 0, res.stderr
    assert [(r["path"], r["label_id"]) for r in csv.DictReader(out.open())] == [
        (str(val / IDS[k] / "a.JPEG"), IDS[k]) for k in range(2)]
    why = (f"{link}: links to {os.path.realpath(val / IDS[1] / 'a.JPEG')}, inside class folder '{IDS[1]}'; "
           f"skipped, so the image is not counted again as '{IDS[0]}'")
    assert json.loads(res.stdout)["warnings"] == [why] and f"warning: {why}" in res.stderr.splitlines()


def test_file_links_within_a_class_or_to_a_shared_store_count_each_image_once(eval_env, tmp_path):
    """A link to an image outside the dataset (a shared store) is counted; two links in one class to the
    same image, or a link to an image the class holds itself, count it once (a note says so), as a
    folder reached twice through links is walked once. A class whose only images are links into another
    class gets the link warnings, not "holds no image files" as well; a broken link stays listed (its
    read fails, naming the missing target), even where its target would lie in another class."""
    entry = load_manifest([eval_env["manifest"]])["groupmamba_evalmini"]
    root = tmp_path / "folder"
    store = _jpeg(tmp_path / "store" / "s.jpg", 10)
    tabby = _jpeg(root / "tabby cat" / "t.jpg", 20)
    goldfish = _jpeg(root / "goldfish" / "g.jpg", 30)
    os.symlink(store, root / "tabby cat" / "shared1.jpg")
    os.symlink(store, root / "tabby cat" / "shared2.jpg")  # the same image again
    os.symlink(store, root / "goldfish" / "shared.jpg")  # another class's link to the store: its own choice
    os.symlink("t.jpg", root / "tabby cat" / "self.jpg")  # the class's own image again
    os.symlink(goldfish, root / "tabby cat" / "fish.jpg")  # another class's image
    os.symlink(root / "goldfish" / "gone.jpg", root / "tabby cat" / "gone.jpg")  # broken
    (root / "tench").mkdir()
    os.symlink(tabby, root / "tench" / "cat.jpg")  # its only image is tabby's
    data = build_dataset("imagefolder", entry, root)
    assert [(Path(s.path).relative_to(root).as_posix(), s.label) for s in data.samples] == [
        ("goldfish/g.jpg", 1), ("goldfish/shared.jpg", 1),
        ("tabby cat/gone.jpg", 281), ("tabby cat/shared1.jpg", 281), ("tabby cat/t.jpg", 281)]
    assert data.warnings == [
        f"{root / 'tabby cat' / 'fish.jpg'}: links to {os.path.realpath(goldfish)}, inside class folder "
        "'goldfish'; skipped, so the image is not counted again as 'tabby cat'",
        f"{root / 'tench' / 'cat.jpg'}: links to {os.path.realpath(tabby)}, inside class folder "
        "'tabby cat'; skipped, so the image is not counted again as 'tench'"]
    assert "2 links to an image already counted in the same class folder left out: each image is counted " \
           "once, as a folder reached twice is walked once" in data.notes


def test_class_folders_linked_to_one_folder_count_its_images_once(eval_env, tmp_path):
    """Two class folders that are links to one folder outside the dataset used to count its images
    under both labels; the first by name keeps them, and the other is left out with a warning naming
    both class folders and the folder. A class folder that is a link to another class's own folder
    (whatever the names' order: the folder itself keeps its images, as a file link into another class
    is left out), to a folder inside another class's, or to the folder holding the class folders is left
    out the same way. Each warning comes in its class's place, by name, and none says "holds no image
    files"."""
    entry = load_manifest([eval_env["manifest"]])["groupmamba_evalmini"]
    root = tmp_path / "folder"
    store = tmp_path / "store" / "cats"
    _jpeg(store / "a.jpg", 10)
    _jpeg(store / "sub" / "b.jpg", 20)
    goldfish = _jpeg(root / "goldfish" / "g.jpg", 30).parent
    os.symlink(store, root / "tiger cat")
    os.symlink(store, root / "tabby cat")  # the same folder; first by name, so it keeps the images
    os.symlink(goldfish, root / "axolotl")  # first by name, but goldfish is the folder itself
    os.symlink(store / "sub", root / "tench")  # inside the folder tabby cat counts
    os.symlink(".", root / "coho")  # the folder holding the class folders
    data = build_dataset("imagefolder", entry, root)
    assert [(Path(s.path).relative_to(root).as_posix(), s.label) for s in data.samples] == [
        ("goldfish/g.jpg", 1), ("tabby cat/a.jpg", 281), ("tabby cat/sub/b.jpg", 281)]
    skipped = "; skipped, so its images are not counted again as"
    assert data.warnings == [
        f"{root / 'axolotl'}: links to {os.path.realpath(goldfish)}, class folder 'goldfish'{skipped} 'axolotl'",
        f"{root / 'coho'}: links to {os.path.realpath(root)}, a folder holding the class folders{skipped} 'coho'",
        f"{root / 'tench'}: links to {os.path.realpath(store / 'sub')}, inside class folder 'tabby cat'"
        f"{skipped} 'tench'",
        f"{root / 'tiger cat'}: links to {os.path.realpath(store)}, as class folder 'tabby cat' does"
        f"{skipped} 'tiger cat'"]


def test_imagenet_synset_folders_linked_to_one_folder_are_warned_about_by_eval(cli, eval_env, tmp_path):
    """The same through ``ssmzoo eval --dataset imagenet``: val/<synset> links to one folder score its
    images once, under the first synset, and the warning is printed and in --json."""
    store = tmp_path / "store"
    _jpeg(store / "a.JPEG", 40)
    val = tmp_path / "imagenet" / "val"
    val.mkdir(parents=True)
    for k in range(2):
        os.symlink(store, val / IDS[k])
    out = tmp_path / "ps.csv"
    res = _eval(cli, eval_env, "--dataset", "imagenet", "--data-dir", val.parent, "--workers", "0",
                "--per-sample", out, "--json")
    assert res.code == 0, res.stderr
    assert [(r["path"], r["label_id"]) for r in csv.DictReader(out.open())] == [(str(val / IDS[0] / "a.JPEG"),
                                                                                  IDS[0])]
    why = (f"{val / IDS[1]}: links to {os.path.realpath(store)}, as class folder '{IDS[0]}' does; skipped, so "
           f"its images are not counted again as '{IDS[1]}'")
    assert json.loads(res.stdout)["warnings"] == [why] and f"warning: {why}" in res.stderr.splitlines()


def test_a_class_folder_is_listed_once(eval_env, tmp_path, monkeypatch):
    """Telling which images are links used to list each folder of images a second time (a class folder
    may hold thousands); the walk's own listing tells them, so each folder is read once."""
    entry = load_manifest([eval_env["manifest"]])["groupmamba_evalmini"]
    root = tmp_path / "folder"
    store = _jpeg(tmp_path / "store" / "s.jpg", 10)
    _jpeg(root / "goldfish" / "g.jpg", 30)
    _jpeg(root / "tabby cat" / "sub" / "t.jpg", 20)
    os.symlink(store, root / "tabby cat" / "sub" / "shared.jpg")
    os.symlink(store, root / "tabby cat" / "again.jpg")
    listed: list[str] = []
    scandir = os.scandir

    def counted(path=".", *args, **kwargs):
        listed.append(os.fspath(path))
        return scandir(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", counted)
    data = build_dataset("imagefolder", entry, root)
    assert [Path(s.path).relative_to(root).as_posix() for s in data.samples] == [
        "goldfish/g.jpg", "tabby cat/again.jpg", "tabby cat/sub/t.jpg"]  # (sub/shared.jpg: the same image)
    below = sorted(p for p in listed if Path(p) != root)
    assert below == sorted(str(root / f) for f in ("goldfish", "tabby cat", "tabby cat/sub"))


def test_files_below_names_the_links_it_lists_where_asked(tmp_path):
    """``links`` gets the listed files that are links (a link to nothing included), as the walk met
    them; files of other suffixes, and links to folders, are not in it."""
    from ssmzoo.paths import files_below

    _jpeg(tmp_path / "a" / "real.jpg", 10)
    os.symlink("real.jpg", tmp_path / "a" / "link.jpg")
    os.symlink("nowhere.jpg", tmp_path / "a" / "broken.jpg")
    os.symlink("real.jpg", tmp_path / "a" / "note.txt")
    os.symlink("a", tmp_path / "b")
    links: set[Path] = set()
    files, others, unreadable, special = files_below(tmp_path, {".jpg"}, follow_links=False, links=links)
    assert files == [tmp_path / "a" / n for n in ("broken.jpg", "link.jpg", "real.jpg")]
    assert links == {tmp_path / "a" / "broken.jpg", tmp_path / "a" / "link.jpg"}
    assert (others, unreadable, special) == (1, [], [])


def test_a_file_name_that_is_not_utf8_is_evaluated_and_written_readably(cli, eval_env, tmp_path):
    """Such a name used to end the run in a traceback (the item's seed encoded its path as UTF-8), then
    the --per-sample CSV could not be written; the name is shown and written with the byte escaped."""
    folder = tmp_path / "imagenet" / "val" / IDS[0]
    folder.mkdir(parents=True)
    shutil.copy(eval_env["paths"][0], folder / "ok.JPEG")
    shutil.copy(eval_env["paths"][0], folder / os.fsdecode(b"caf\xe9.JPEG"))
    (folder / os.fsdecode(b"bad\xffjunk.jpg")).write_text("not an image")
    for per_sample in ("ps.csv", "ps.jsonl"):
        res = _eval(cli, eval_env, "--dataset", "imagenet", "--data-dir", folder.parents[1], "--workers", "0",
                    "--per-sample", tmp_path / per_sample, "--json")
        assert res.code == 0, res.stderr
        text = (tmp_path / per_sample).read_text(encoding="utf-8")
        rows = list(csv.DictReader(text.splitlines())) if per_sample.endswith(".csv") else \
            [json.loads(line) for line in text.splitlines()]
        assert f"{folder}/caf\\xe9.JPEG" in [r["path"] for r in rows]
    summary = json.loads(res.stdout)
    assert (summary["evaluated"], summary["skipped"]) == (2, 1)
    bad = f"{folder}/bad\\xffjunk.jpg"
    assert summary["skipped_items"] == [{"path": bad, "error": f"{bad}: not an image Pillow can read"}]
    assert f"skipped: {bad}: not an image Pillow can read" in res.stderr.splitlines()


def test_item_seeds_hash_a_file_names_bytes_whether_or_not_they_are_utf8(eval_env):
    """eval's and robustness's per-file seeds (random hooks, corruptions) hash the name's bytes below the
    root, so a UTF-8 name keeps its seed and a name that is not UTF-8 has one too (it used to raise)."""
    import zlib

    from ssmzoo.datasets import ImageItems
    from ssmzoo.robustness import Condition, condition_rng

    entry = load_manifest([eval_env["manifest"]])["groupmamba_evalmini"]
    names = ["café.JPEG", os.fsdecode(b"caf\xe9.JPEG")]
    items = ImageItems([Sample(f"/d/{n}", 0) for n in names], entry, hook_seed=1, root="/d")
    assert items.seeds == [1_000_003 + zlib.crc32(b) for b in ("café.JPEG".encode(), b"caf\xe9.JPEG")]
    draws = [condition_rng(0, f"/d/{n}", "/d", Condition("jpeg", quality=50)).random() for n in names]
    assert draws[0] != draws[1]


def test_a_labels_csv_line_without_a_name_or_a_label_is_an_error_naming_the_line(cli, eval_env, tmp_path):
    """An empty label used to end eval and robustness in an IndexError; an empty name was taken as the
    data folder ('skipped: DIR: is a directory', exit 0). A .txt line of one field says the same."""
    folder = tmp_path / "flat"
    folder.mkdir()
    for k in (1, 2):
        shutil.copy(eval_env["paths"][0], folder / f"ILSVRC_{k}.JPEG")
    for second in ("ILSVRC_2.JPEG,", ",5", "ILSVRC_2.JPEG, "):
        labels = tmp_path / "labels.csv"
        labels.write_text(f"ILSVRC_1.JPEG,{IDS[0]}\n{second}\n")
        res = _eval(cli, eval_env, "--dataset", "imagenet", "--data-dir", folder, "--labels", labels)
        assert (res.code, res.stdout) == (1, "") and "Traceback" not in res.stderr
        assert res.stderr.strip().splitlines()[-1] == f"error: {labels}:2: expected 'path,label', got {second!r}"
    # empty columns after the label (a spreadsheet's export) are no mistake
    labels.write_text(f"ILSVRC_1.JPEG,{IDS[0]},,\nILSVRC_2.JPEG,{IDS[1]},\n")
    res = _eval(cli, eval_env, "--dataset", "imagenet", "--data-dir", folder, "--labels", labels, "--workers", "0",
                "--json")
    assert res.code == 0 and json.loads(res.stdout)["evaluated"] == 2, res.stderr


def test_class_folders_take_every_suffix_classify_takes(cli, eval_env, tmp_path):
    # class folders were walked by ten fixed suffixes: coffee.jfif, .jpe, .jp2 and .avif were left out
    # as "non-image files", though classify read them
    root = tmp_path / "folder"
    paths = photos_under_other_suffixes(root / "espresso")
    shutil.copy(eval_env["paths"][0], root / "espresso")
    out = tmp_path / "ps.jsonl"
    res = _eval(cli, eval_env, "--dataset", "imagefolder", "--data-dir", root, "--workers", "0",
                "--per-sample", out, "--json")
    assert res.code == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["evaluated"] == len(paths) + 1 and not any("ignored" in n for n in summary["notes"])
    assert {Path(json.loads(line)["path"]).suffix for line in out.read_text().splitlines()} >= {".jfif", ".jpe"}


def test_nan_model_outputs_are_said_and_not_written_as_json_nan(cli, eval_env, tmp_path):
    # a checkpoint with a NaN head used to give a plain top-1 (a NaN's top-k is an arbitrary class), and
    # "probability": NaN in the per-sample JSON Lines, which is not JSON
    state = torch.load(eval_env["checkpoint"], weights_only=True)
    state["model"]["module.head.bias"][:] = float("nan")
    broken = tmp_path / "nan.pth"
    torch.save(state, broken)
    root = tmp_path / "folder"
    for k, folder in enumerate(("tabby cat", "goldfish")):
        (root / folder).mkdir(parents=True)
        shutil.copy(eval_env["paths"][k], root / folder)
    out = tmp_path / "ps.jsonl"
    res = cli("--manifest", eval_env["manifest"], "eval", "--model", "groupmamba_evalmini", "--weights", broken,
              "--device", "cpu", "--dataset", "imagefolder", "--data-dir", root, "--workers", "0",
              "--per-sample", out, "--json")
    assert res.code == 0, res.stderr
    notes = json.loads(res.stdout)["notes"]
    assert any(n.startswith("2 items got a model output that is not finite (NaN or inf), so their predictions "
                            "mean nothing") for n in notes), notes
    rows = [json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in JSON")) for line in out.read_text().splitlines()]
    assert [r["probability"] for r in rows] == [None, None]


def test_imagefolder_matches_class_names_and_reports_unmatched(cli, eval_env, tmp_path):
    root = tmp_path / "folder"
    spellings = {"Tabby_Cat": 281, "great-white shark": 2, "n01443537": 1, "GOLDFISH": 1, "Egyptian cat": 285}
    paths = eval_env["paths"]
    for k, folder in enumerate(spellings):
        (root / folder).mkdir(parents=True)
        shutil.copy(paths[k], root / folder / paths[k].name)
    out = tmp_path / "ps.jsonl"
    res = _eval(cli, eval_env, "--dataset", "imagefolder", "--data-dir", root, "--workers", "0",
                "--per-sample", out, "--json")
    assert res.code == 0, res.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {Path(r["path"]).parent.name: r["label"] for r in rows} == spellings
    summary = json.loads(res.stdout)
    assert summary["top1_diff"] is None and summary["reported_top1"] == 50.0  # not the paper's dataset
    assert summary["reported_caveat"] == "the paper's top-1 was measured on imagenet, not on this dataset"

    for odd in ("crane", "vacation photos", "17", "misc"):
        (root / odd).mkdir()
        shutil.copy(paths[0], root / odd / "x.jpg")
    res = _eval(cli, eval_env, "--dataset", "imagefolder", "--data-dir", root)
    assert res.code == 1 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--class-map" in lines[0]
    assert "4 of 9 class folders" in lines[0]
    assert all(repr(name) in lines[0] for name in ("crane", "vacation photos", "17", "misc"))
    assert "'crane' is ambiguous (n02012849, n03126707)" in lines[0]  # two ImageNet classes, not none

    class_map = tmp_path / "map.txt"
    class_map.write_text("crane n03126707\nvacation photos seashore\n17 17\nmisc 999\n")
    res = _eval(cli, eval_env, "--dataset", "imagefolder", "--data-dir", root, "--class-map", class_map,
                "--workers", "0", "--per-sample", out, "--json")
    assert res.code == 0, res.stderr
    labels = {Path(r["path"]).parent.name: r["label"] for r in map(json.loads, out.read_text().splitlines())}
    assert labels == {**spellings, "crane": 517, "vacation photos": 978, "17": 17, "misc": 999}

    # one level too high (the folder holds a split whose subfolders are the classes): says where to point
    res = _eval(cli, eval_env, "--dataset", "imagefolder", "--data-dir", tmp_path)
    assert res.code == 1 and res.stderr.strip().endswith(f"'folder' holds class folders: pass --data-dir {root}")


def test_class_map_lines_and_class_folders_that_hold_nothing_are_warned_about(cli, eval_env, tmp_path):
    """Not silently skipped: a --class-map line naming no folder of the data dir (a typo, a renamed
    folder) and a class folder without images each get a warning line on stderr; the run goes on."""
    root = tmp_path / "folder"
    paths = eval_env["paths"]
    for k, folder in enumerate(("cats", "sharks")):
        (root / folder).mkdir(parents=True)
        shutil.copy(paths[k], root / folder / paths[k].name)
    (root / "goldfish").mkdir()  # empty
    (root / "Egyptian cat").mkdir()
    (root / "Egyptian cat" / "notes.txt").write_text("no images here")
    class_map = tmp_path / "map.txt"
    class_map.write_text("cats tabby cat\nsharks great white shark\n# fixed below\nsharcs great white shark\n")
    res = _eval(cli, eval_env, "--dataset", "imagefolder", "--data-dir", root, "--class-map", class_map,
                "--workers", "0", "--json")
    assert res.code == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["n"] == 2
    assert [line for line in res.stderr.splitlines() if line.startswith("warning: ")] == [
        f"warning: --class-map {class_map}:4: names no folder 'sharcs' in {root}; ignored",
        f"warning: {root / 'Egyptian cat'}: class folder holds no image files; skipped",
        f"warning: {root / 'goldfish'}: class folder holds no image files; skipped",
    ]
    assert ["warning: " + w for w in summary["warnings"]] == [  # ... and the same in the results
        line for line in res.stderr.splitlines() if line.startswith("warning: ")]

    entry = load_manifest([eval_env["manifest"]])["groupmamba_evalmini"]
    csv_map = tmp_path / "map.csv"  # a header row is no stale line
    csv_map.write_text("folder,label\ncats,tabby cat\nsharks,great white shark\nsharcs,great white shark\n")
    data = build_dataset("imagefolder", entry, root, class_map=csv_map)
    assert [w for w in data.warnings if "--class-map" in w] == [
        f"--class-map {csv_map}:4: names no folder 'sharcs' in {root}; ignored"]
    json_map = tmp_path / "map.json"
    json_map.write_text(json.dumps({"cats": "tabby cat", "sharks": "great white shark", "sharcs": "2"}))
    data = build_dataset("imagefolder", entry, root, class_map=json_map).limit(1)  # (--limit keeps them)
    assert f"--class-map {json_map}: names no folder 'sharcs' in {root}; ignored" in data.warnings


def test_a_class_map_giving_one_folder_twice_is_refused_naming_both_lines(cli, eval_env, tmp_path):
    """`cats tabby cat` then `cats goldfish` used to keep the last label, silently."""
    root = tmp_path / "folder"
    for k, folder in enumerate(("cats", "sharks")):
        (root / folder).mkdir(parents=True)
        shutil.copy(eval_env["paths"][k], root / folder)
    class_map = tmp_path / "map.txt"
    class_map.write_text("cats tabby cat\nsharks great white shark\ncats goldfish\n")
    res = _eval(cli, eval_env, "--dataset", "imagefolder", "--data-dir", root, "--class-map", class_map)
    assert res.code == 1 and res.stderr.strip().splitlines() == [
        f"error: --class-map {class_map}:3: folder 'cats' is listed twice (first on line 1)"]
    csv_map = tmp_path / "map.csv"
    csv_map.write_text("folder,label\ncats,tabby cat\nsharks,2\ncats,1\n")
    res = _eval(cli, eval_env, "--dataset", "imagefolder", "--data-dir", root, "--class-map", csv_map)
    assert res.code == 1 and res.stderr.strip().endswith(f"{csv_map}:4: folder 'cats' is listed twice (first on line 2)")
    json_map = tmp_path / "map.json"  # JSON itself allows a key twice, and keeps the last
    json_map.write_text('{"cats": "tabby cat", "sharks": "2", "cats": "1"}')
    res = _eval(cli, eval_env, "--dataset", "imagefolder", "--data-dir", root, "--class-map", json_map)
    assert res.code == 1 and res.stderr.strip() == f"error: --class-map {json_map}: folder 'cats' is listed twice"


def test_a_file_option_the_dataset_does_not_read_is_warned_about_and_ignored(cli, eval_env, tmp_path):
    """--list (video datasets) or --class-map (imagefolder) given with --dataset imagenet: a warning line,
    also where the file does not exist, since it is not read; the run goes on."""
    root = tmp_path / "val" / IDS[eval_env["labels"][0]]
    root.mkdir(parents=True)
    shutil.copy(eval_env["paths"][0], root)
    res = _eval(cli, eval_env, "--dataset", "imagenet", "--data-dir", tmp_path, "--list", tmp_path / "nothing.txt",
                "--class-map", tmp_path / "nope.txt", "--workers", "0", "--json")
    assert res.code == 0, res.stderr
    assert f"warning: --list {tmp_path / 'nothing.txt'}: read by --dataset kinetics400, ssv2 or videolist only; ignored " \
           "with --dataset imagenet" in res.stderr
    assert f"warning: --class-map {tmp_path / 'nope.txt'}: read by --dataset imagefolder only" in res.stderr
    assert json.loads(res.stdout)["n"] == 1


def test_dataset_model_mismatch_and_bad_options_are_one_line_errors(cli, eval_env, tmp_path):
    """Options that cannot be used as typed are usage errors (exit code 2, pointing at --help); a data
    dir that exists but does not hold a dataset is a failed run (exit code 1), whatever it holds instead:
    nothing, or images that would need --labels."""
    (tmp_path / "videos").mkdir()
    lst = tmp_path / "list.txt"
    lst.write_text("a.mp4 0\n")
    res = _eval(cli, eval_env, "--dataset", "imagenet", "--data-dir", tmp_path / "videos")
    lines = res.stderr.strip().splitlines()
    assert res.code == 1 and lines[-1].startswith("error:") and "no ImageNet synset folders" in lines[-1]
    assert "--help" not in lines[-1]
    flat = tmp_path / "flat"  # images without folders or --labels: the same mistake, the same exit code
    flat.mkdir()
    shutil.copy(eval_env["paths"][0], flat)
    res = _eval(cli, eval_env, "--dataset", "imagenet", "--data-dir", flat)
    lines = res.stderr.strip().splitlines()
    assert res.code == 1 and "a flat folder of images needs --labels FILE" in lines[-1], res.stderr
    assert "--help" not in lines[-1]
    checks = [
        (("--dataset", "kinetics400", "--list", lst), "image model"),
        (("--dataset", "imagenet"), "--dataset imagenet needs --data-dir DIR"),
        (("--dataset", "imagenet", "--data-dir", tmp_path / "nope"), "no such directory"),
        (("--dataset", "imagenet", "--data-dir", lst), "is not a directory"),
        (("--dataset", "imagenet", "--data-dir", tmp_path, "--labels", tmp_path / "videos"), "a directory, not a file"),
        # a device is no directory: it used to be called one
        (("--dataset", "imagenet", "--data-dir", tmp_path, "--labels", os.devnull),
         f"--labels {os.devnull}: is a device, not a regular file"),
        (("--dataset", "imagefolder", "--data-dir", tmp_path, "--class-map", os.devnull), "is a device, not a regular file"),
        (("--dataset", "coco", "--data-dir", tmp_path), "expected one of imagenet, imagefolder"),
        (("--dataset", "imagenet", "--data-dir", tmp_path, "--device", "tpu"), "--device 'tpu'"),
        (("--dataset", "imagenet", "--data-dir", tmp_path, "--dtype", "fp64"), "--dtype 'fp64'"),
        (("--dataset", "imagenet", "--data-dir", tmp_path, "--limit", "0"), "Invalid value for '--limit'"),
        (("--dataset", "imagenet", "--data-dir", tmp_path, "--output", tmp_path / "r.txt"), "--output"),
        # checked before the run, not when the results are written at its end
        (("--dataset", "imagenet", "--data-dir", tmp_path, "--output", tmp_path / "videos.json"), "is a directory"),
        (("--dataset", "imagenet", "--data-dir", tmp_path, "--per-sample", lst / "x.csv"),
         f"{lst} is a file, not a folder"),
        (("--dataset", "imagenet", "--data-dir", tmp_path, "--per-sample", lst / "sub" / "x.csv"),
         f"{lst} is a file, not a folder"),
        (("--dataset", "imagenet", "--data-dir", tmp_path, "--output", tmp_path / "r.csv", "--per-sample",
          tmp_path / "r.csv"), "both name"),
    ]
    (tmp_path / "videos.json").mkdir()
    for args, message in checks:
        res = _eval(cli, eval_env, *args)
        lines = res.stderr.strip().splitlines()
        assert res.code == 2 and lines[-1].startswith("error:") and message in lines[-1], (args, res.stderr)
        assert lines[-1].endswith("(see `ssmzoo eval --help`)") and "Traceback" not in res.stderr


def test_a_video_lists_first_line_is_a_header_only_where_it_names_no_file(tmp_path):
    from ssmzoo.datasets import DatasetError, video_list_dataset

    (tmp_path / "a.mp4").write_bytes(b"not decoded here")
    lst = tmp_path / "list.txt"
    lst.write_text("a.mp4 notaclass\n")
    with pytest.raises(DatasetError, match=r"list\.txt:1: "):
        video_list_dataset("kinetics400", lst, tmp_path, "kinetics-400")
    lst.write_text("path label\na.mp4 3\n")
    assert [s.label for s in video_list_dataset("kinetics400", lst, tmp_path, "kinetics-400").samples] == [3]
    lst.write_text("# my clips\npath label\na.mp4 3\n")  # a header after comment lines
    data = video_list_dataset("kinetics400", lst, tmp_path, "kinetics-400")
    assert [s.label for s in data.samples] == [3]
    assert data.notes == [f"{lst}:2: first line taken as a header and skipped (path label)"]  # said, not silent
    # a first line naming a video that is missing is data, not a header: it used to vanish, unsaid
    lst.write_text("clips/missing.mp4 abseilling\na.mp4 3\n")
    with pytest.raises(DatasetError, match=r"list\.txt:1: 'abseilling' is no kinetics-400 class"):
        video_list_dataset("kinetics400", lst, tmp_path, "kinetics-400")


def test_a_list_line_without_a_suffix_finds_the_video_by_classifys_suffixes(tmp_path):
    """A list may name a clip without its suffix: the video suffixes (the ones classify knows videos by)
    are tried in order, and the first that names a file is taken."""
    from ssmzoo.classify import media_kind
    from ssmzoo.datasets import video_list_dataset

    for name in ("a.webm", "a.mkv", "b.3gp"):
        (tmp_path / name).write_bytes(b"not decoded here")
    lst = tmp_path / "list.txt"
    lst.write_text("a 3\nb 4\n")
    paths = [Path(s.path) for s in video_list_dataset("kinetics400", lst, tmp_path, "kinetics-400").samples]
    assert [p.name for p in paths] == ["a.mkv", "b.3gp"]  # .mkv comes before .webm
    assert [media_kind(p) for p in paths] == ["video", "video"]


def test_list_paths_may_hold_spaces(cli, eval_env, tmp_path):
    """The path is the longest run of leading words naming a file (as --class-map finds its folder), or
    everything before a tab: `with space.mp4 3` used to be taken as a header when first, and later to be
    the path `with` and the label `space.mp4 3`. A missing file keeps its spaces up to its suffix."""
    from ssmzoo.datasets import video_list_dataset

    (tmp_path / "my clips").mkdir()
    for name in ("with space.mp4", "my clips/two  spaces.webm", "plain.mp4"):
        (tmp_path / name).write_bytes(b"not decoded here")
    lst = tmp_path / "list.txt"
    lst.write_text("with space.mp4 3\nmy clips/two  spaces.webm abseiling\nmy clips/two  spaces 120 7\n"
                   "gone away.mp4 5\nplain 4\n")
    with pytest.raises(DatasetError, match=r"list\.txt:3: my clips/two  spaces is listed twice \(first on line 2\)"):
        video_list_dataset("kinetics400", lst, tmp_path, "kinetics-400")  # (suffix-less: found by its suffix)
    lst.write_text("path label\nwith space.mp4 3\nmy clips/two  spaces.webm abseiling\ngone away.mp4 5\n"
                   "tabbed name\t6\nplain 4\n")
    data = video_list_dataset("kinetics400", lst, tmp_path, "kinetics-400")
    assert [(os.path.relpath(s.path, tmp_path), s.label) for s in data.samples] == [
        ("with space.mp4", 3), ("my clips/two  spaces.webm", 0), ("gone away.mp4", 5), ("tabbed name", 6),
        ("plain.mp4", 4)]
    assert data.notes == [f"{lst}:1: first line taken as a header and skipped (path label)"]

    folder = tmp_path / "flat"  # an image list's names too
    folder.mkdir()
    shutil.copy(eval_env["paths"][0], folder / "my photo.jpg")
    labels = tmp_path / "labels.txt"
    labels.write_text(f"my photo.jpg {IDS[7]}\n")
    entry = load_manifest([eval_env["manifest"]])["groupmamba_evalmini"]
    data = build_dataset("imagenet", entry, folder, labels_file=labels)
    assert [(Path(s.path).name, s.label) for s in data.samples] == [("my photo.jpg", 7)]


def test_a_video_listed_twice_is_refused_naming_both_lines(tmp_path):
    """A clip on two lines (again, or spelt ./two.mp4) used to be evaluated twice and counted twice in
    the accuracy, with no note; it is refused as the images' --labels refuses a file listed twice."""
    from ssmzoo.datasets import DatasetError, video_list_dataset

    for name in ("one.mp4", "two.mp4"):
        (tmp_path / name).write_bytes(b"not decoded here")
    lst = tmp_path / "list.txt"
    lst.write_text("one.mp4 2\ntwo.mp4 3\ntwo.mp4 3\n")
    with pytest.raises(DatasetError, match=r"^.*list\.txt:3: two\.mp4 is listed twice \(first on line 2\)$"):
        video_list_dataset("kinetics400", lst, tmp_path, "kinetics-400")
    lst.write_text("two.mp4 3\none.mp4 2\n./two.mp4 4\n")  # another spelling of the same file
    with pytest.raises(DatasetError, match=r"list\.txt:3: \./two\.mp4 is listed twice \(first on line 1\)$"):
        video_list_dataset("kinetics400", lst, tmp_path, "kinetics-400")


def test_an_image_listed_twice_in_labels_is_refused_naming_both_lines(cli, eval_env, tmp_path):
    folder = tmp_path / "flat"
    folder.mkdir()
    for k in range(2):
        shutil.copy(eval_env["paths"][k], folder / f"img{k}.jpg")
    labels = tmp_path / "l_dup.txt"
    labels.write_text("img0.jpg 1\nimg1.jpg 2\n./img0.jpg 1\n")
    res = _eval(cli, eval_env, "--dataset", "imagenet", "--data-dir", folder, "--labels", labels)
    assert res.code == 1 and res.stderr.strip().splitlines()[-1] == (
        f"error: {labels}:3: ./img0.jpg is listed twice (first on line 1)")


def test_cuda_graphs_on_a_cpu_device_is_a_one_line_error(cli, eval_env, imagenet_tree):
    res = _eval(cli, eval_env, "--dataset", "imagenet", "--data-dir", imagenet_tree[0], "--device", "cpu",
                "--cuda-graphs")
    # checked with the other options, before the dataset is scanned or the weights are loaded
    assert res.code == 2 and res.stderr.strip().splitlines() == [
        "error: --cuda-graphs needs a CUDA device (running on cpu); drop it or use --device cuda "
        "(see `ssmzoo eval --help`)"], res.stderr


def test_torchrun_two_processes_report_what_one_process_does(cli, eval_env, tmp_path):
    """7 items (6 images + 1 broken) over 2 gloo ranks: shards of 4 and 3, gathered on rank 0."""
    root = tmp_path / "seven"
    for path, label in list(zip(eval_env["paths"], eval_env["labels"]))[:6]:
        (root / "val" / IDS[label]).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, root / "val" / IDS[label] / path.name)
    (root / "val" / IDS[eval_env["labels"][1]] / "broken.JPEG").write_text("nope")
    common = ["--manifest", str(eval_env["manifest"]), "eval", "--model", "groupmamba_evalmini", "--weights",
              str(eval_env["checkpoint"]), "--dataset", "imagenet", "--data-dir", str(root), "--batch-size", "2",
              "--workers", "1", "--device", "cpu", "--json"]
    single = tmp_path / "single.jsonl"
    res = cli(*common, "--per-sample", single)
    assert res.code == 0, res.stderr

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    multi = tmp_path / "multi.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
         "--master-addr", "127.0.0.1", "--master-port", str(port), "-m", "ssmzoo", *common, "--per-sample", str(multi)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary, one = json.loads(proc.stdout), json.loads(res.stdout)  # only rank 0 printed
    assert summary["world_size"] == 2 and summary["device"] == "2 x cpu"
    for key in ("n", "evaluated", "skipped", "top1", "top5", "skipped_items", "total"):
        assert summary[key] == one[key], key
    assert (one["n"], one["skipped"]) == (7, 1)
    assert proc.stderr.count("skipped: ") == 1
    a = [json.loads(line) for line in single.read_text().splitlines()]
    b = [json.loads(line) for line in multi.read_text().splitlines()]
    assert [r["index"] for r in b] == list(range(7))
    for ra, rb in zip(a, b):
        pa, pb = ra.pop("probability"), rb.pop("probability")
        assert ra == rb
        assert pa == pb or abs(pa - pb) < 1e-5


@pytest.mark.parametrize("device", ["tpu", "mps"])
def test_under_torchrun_a_device_other_than_cpu_or_cuda_is_a_usage_error(monkeypatch, device):
    """A typo in --device must not silently put every rank on the CPU (checked before any process group)."""
    from ssmzoo.distributed import init_from_env
    from ssmzoo.errors import UsageError

    for key, value in dict(WORLD_SIZE="2", RANK="0", LOCAL_RANK="0", LOCAL_WORLD_SIZE="2").items():
        monkeypatch.setenv(key, value)
    with pytest.raises(UsageError, match=f"--device '?{device}'?: "):
        init_from_env(device)


# ----------------------------------------------------------------------------- video


def _pattern(seed: int):
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (4, 3))

    def frame(i: int, size: tuple[int, int]) -> np.ndarray:
        w, h = size
        img = np.empty((h, w, 3), np.uint8)
        img[:] = colours[i % 4]
        img[: h // 2, : w // 3] = colours[(i + 1) % 4]
        img[h // 3:, (i * 3) % w:] = colours[(i + 2) % 4]
        return img

    return frame


@pytest.fixture(scope="module")
def video_env(tmp_path_factory):
    from video_fixtures import truncate, write_mp4

    import timm

    root = tmp_path_factory.mktemp("k400")
    manifest = root / "eval.yaml"
    manifest.write_text(EVAL_MANIFEST)
    torch.manual_seed(1)
    model = timm.create_model("videomamba_tiny_video", embed_dim=64, depth=2, img_size=64, num_frames=4,
                              num_classes=400)
    with torch.no_grad():
        model.head.weight.mul_(20)  # decisive scores so rankings are stable
    checkpoint = root / "videomamba_evalmini.pth"
    torch.save(model.state_dict(), checkpoint)
    videos = root / "videos"
    videos.mkdir()
    sizes = [(96, 64), (64, 80), (72, 72), (112, 64)]
    paths = [write_mp4(videos / f"clip{k}.mp4", 12 + 5 * k, sizes[k], frame_fn=_pattern(k)) for k in range(4)]
    cut = truncate(write_mp4(videos / "cut.mp4", 30, (64, 64), frame_fn=_pattern(9)), 0.3)
    return {"manifest": manifest, "checkpoint": checkpoint, "root": root, "paths": paths, "cut": cut}


def _hand_video_probs(env, path, views):
    from ssmzoo.video import VideoProtocol, load_video_views

    entry = load_manifest([env["manifest"]])["videomamba_evalmini"]
    loaded = load_model(entry, weights=str(env["checkpoint"]), device="cpu")
    protocol = VideoProtocol(num_frames=4, sampling="sparse", clips=2, crops=3, short_side=64, crop_size=64)
    clips = load_video_views(path, protocol, entry.data.mean, entry.data.std, views=views)
    with torch.no_grad():
        return loaded.model(clips.tensor).softmax(-1).mean(0)


def test_the_protocol_line_and_the_reported_caveat_compare_views_the_same_way():
    """describe_video_protocol marks --views exactly where views_differ (EvalResult.protocol_differs) says
    the run's clips x crops are not the paper's: one comparison, not two that could drift apart."""
    from ssmzoo.evaluate import describe_video_protocol, views_differ
    from ssmzoo.video import VideoProtocol

    paper = VideoProtocol(num_frames=4, sampling="sparse", clips=2, crops=3, short_side=64, crop_size=64)
    for clips, crops in ((2, 3), (1, 1), (3, 2), (2, 1)):
        run = paper.with_views(clips, crops)
        differs = views_differ(run, (paper.clips, paper.crops))
        assert (differs is None) == ((clips, crops) == (2, 3))
        assert ("(--views; the paper's protocol is 2x3)" in describe_video_protocol(run, (2, 3))) == (differs is not None)
    assert views_differ(paper.with_views(1, 1), (2, 3)) == "2 clips x 3 crops, not this run's 1 clip x 1 crop (--views)"


@pytest.mark.parametrize("views", [None, "1x1"])
def test_kinetics_list_views_averaged(cli, video_env, views, tmp_path):
    env = video_env
    probs = [_hand_video_probs(env, p, None if views is None else (1, 1)) for p in env["paths"]]
    top5 = [p.topk(5).indices.tolist() for p in probs]
    from ssmzoo.labels import class_names

    names = class_names("kinetics-400")
    labels = [top5[0][0], top5[1][1], top5[2][0], next(c for c in range(400) if c not in top5[3])]
    lst = env["root"] / f"val_{views}.txt"
    lines = [f"videos/{p.name} {names[lab] if k % 2 else lab}" for k, (p, lab) in enumerate(zip(env["paths"], labels))]
    lines += ["videos/cut.mp4 3", "videos/missing 5"]
    lst.write_text("\n".join(lines) + "\n")
    out = tmp_path / "ps.jsonl"
    args = ["--manifest", env["manifest"], "eval", "--model", "videomamba_evalmini", "--weights", env["checkpoint"],
            "--dataset", "kinetics400", "--list", lst, "--data-dir", env["root"], "--batch-size", "7",
            "--workers", "0", "--per-sample", out, "--json"]
    res = cli(*args, *(["--views", views] if views else []))
    assert res.code == 0, res.stderr
    summary = json.loads(res.stdout)
    assert (summary["n"], summary["evaluated"], summary["skipped"]) == (6, 4, 2)
    assert summary["views"] == (6 if views is None else 1)
    assert summary["top1"] == pytest.approx(50.0) and summary["top5"] == pytest.approx(75.0)
    if views is None:  # the paper's 2 clips x 3 crops: its figure (40.0 here) is compared
        assert summary["top1_diff"] == pytest.approx(10.0) and summary["reported_caveat"] is None
    else:  # other views: the figure stays in view, with why there is no diff to it
        assert summary["top1_diff"] is None and summary["reported_top1"] == pytest.approx(40.0)
        assert summary["reported_caveat"] == ("the paper's top-1 was measured with 2 clips x 3 crops, not this run's "
                                              "1 clip x 1 crop (--views): no diff is given")
        table = cli(*[a for a in args if a != "--json"], "--views", views).stdout
        assert "the paper's top-1 was measured with 2 clips x 3 crops" in table.replace("\n", " ")
    expected_protocol = "4 frames, sparse sampling, " + (
        "2 clips x 3 crops" if views is None else "1 clip x 1 crop (--views; the paper's protocol is 2x3)")
    assert summary["protocol"].startswith(expected_protocol)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    for row, p, t, lab in zip(rows, probs, top5, labels):
        assert row["top5"] == t and row["label"] == lab
        assert row["probability"] == pytest.approx(float(p.max()), abs=1e-5)
    assert "truncated" in rows[4]["error"] or "corrupt" in rows[4]["error"]
    assert rows[5]["error"].endswith(": no such file or directory")  # as classify and the images say it
    assert res.stderr.count("skipped: ") == 2


def test_video_eval_on_a_cpu_moves_the_progress_within_a_batch_and_nothing_else(video_env):
    # one batch of videos x 12 views on a CPU takes minutes, and the bar moved once per batch: now it follows
    # the forward through the model's blocks (the hooks classify uses), with the same numbers
    from ssmzoo.evaluate import evaluate

    env = video_env
    entry = load_manifest([env["manifest"]])["videomamba_evalmini"]
    loaded = load_model(entry, weights=str(env["checkpoint"]), device="cpu")
    lst = env["root"] / "val_progress.txt"
    lst.write_text("".join(f"videos/{p.name} {k}\n" for k, p in enumerate(env["paths"][:3])) + "videos/missing 5\n")
    data = build_dataset("kinetics400", entry, env["root"], list_file=lst)
    calls = []
    # 2x3 views a video, 4 rows a forward: one video a batch, in two passes (4 + 2 views) of the 2 blocks
    heard = evaluate(loaded, data, batch_size=4, workers=0, on_progress=lambda *a: calls.append(a),
                     on_step=lambda *a: calls.append(a))
    assert calls[:6] == [(0, 4),
                         (pytest.approx(1 / 3), 4, "videomamba_evalmini: batch 1/4, part 1/2, layer 1/2"),
                         (pytest.approx(2 / 3), 4, "videomamba_evalmini: batch 1/4, part 1/2, layer 2/2"),
                         (pytest.approx(5 / 6), 4, "videomamba_evalmini: batch 1/4, part 2/2, layer 1/2"),
                         (pytest.approx(1.0), 4, "videomamba_evalmini: batch 1/4, part 2/2, layer 2/2"),
                         (1, 4)]
    assert [c[2] for c in calls if len(c) == 3][-1] == "videomamba_evalmini: batch 3/4, part 2/2, layer 2/2"
    done = [c[0] for c in calls]
    assert done == sorted(done) and done[-1] == 4 and len(calls) == 1 + 3 * 5 + 1  # + the missing video's
    assert not any(m._forward_hooks for m in loaded.model.modules())  # none left behind
    plain = evaluate(loaded, data, batch_size=4, workers=0)
    assert list(heard.sample_rows()) == list(plain.sample_rows())
    assert (heard.top1, heard.top5, heard.notes, heard.execution) == (plain.top1, plain.top5, plain.notes, "eager")
    one = []  # 1x1 views, 2 videos a batch: one pass a batch
    evaluate(loaded, data, batch_size=2, workers=0, views=(1, 1), on_progress=lambda *a: one.append(a),
             on_step=lambda *a: one.append(a))
    counted = []  # a library caller's on_progress(done, total) alone: told per batch, as before on_step
    evaluate(loaded, data, batch_size=2, workers=0, views=(1, 1), on_progress=lambda d, t: counted.append(d))
    assert counted == [0, 2, 4]
    assert one[1:4] == [(pytest.approx(1.0), 4, "videomamba_evalmini: batch 1/2, layer 1/2"),
                        (pytest.approx(2.0), 4, "videomamba_evalmini: batch 1/2, layer 2/2"), (2, 4)]


def test_video_dataset_needs_matching_label_set(cli, video_env):
    env = video_env
    lst = env["root"] / "ssv2.txt"
    lst.write_text("videos/clip0.mp4 1\n")
    res = cli("--manifest", env["manifest"], "eval", "--model", "videomamba_evalmini", "--weights", env["checkpoint"],
              "--dataset", "ssv2", "--list", lst)
    assert res.code == 2 and "needs a ssv2 model" in res.stderr and "Traceback" not in res.stderr


def test_build_dataset_is_a_library_call(eval_env, imagenet_tree):
    root, expected, bad = imagenet_tree
    entry = load_manifest([eval_env["manifest"]])["groupmamba_evalmini"]
    data = build_dataset("imagenet", entry, root)
    assert len(data) == 12 and data.kind == "image" and data.num_classes == len({lab for lab, _ in expected.values()})
    assert any("non-image" in n for n in data.notes)
    with pytest.raises(SsmzooError):
        build_dataset("imagefolder", entry, root / "missing")



def test_synset_layout_messages_count_folders_in_words(eval_env, tmp_path):
    # "1 folders that are not synsets" read badly: one folder is "1 folder that is not a synset"
    entry = load_manifest([eval_env["manifest"]])["groupmamba_evalmini"]
    root = tmp_path / "val"
    (root / IDS[0]).mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / IDS[0] / "a.JPEG")
    (root / "extras").mkdir()
    assert "ignored 1 folder that is not a synset: 'extras'" in build_dataset("imagenet", entry, root).notes
    (root / "more").mkdir()
    assert "ignored 2 folders that are not synsets: 'extras', 'more'" in build_dataset("imagenet", entry, root).notes
    (root / "n99999999").mkdir()
    with pytest.raises(DatasetError, match="1 synset folder is not an ImageNet-1k class: 'n99999999'$"):
        build_dataset("imagenet", entry, root)
    (root / "n99999998").mkdir()
    with pytest.raises(DatasetError, match="2 synset folders are not ImageNet-1k classes: 'n99999998', 'n99999999'$"):
        build_dataset("imagenet", entry, root)

# ----------------------------------------------------------------------------- library API (robustness builds on it)


def _flip(img: Image.Image) -> Image.Image:
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def _noisy(img: Image.Image) -> Image.Image:
    """A random corruption: reproducible only through the per-item seeding."""
    arr = np.asarray(img, dtype=np.int16) + np.random.randint(-60, 61, size=(img.height, img.width, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _reject_png(img: Image.Image) -> Image.Image:
    if img.width == 70:  # gradient.png
        raise ValueError("cannot corrupt this one")
    return img


def test_evaluate_library_with_image_hooks(eval_env, imagenet_tree):
    from ssmzoo.evaluate import evaluate

    root, expected, _ = imagenet_tree
    entry = load_manifest([eval_env["manifest"]])["groupmamba_evalmini"]
    loaded = load_model(entry, weights=str(eval_env["checkpoint"]), device="cpu")
    data = build_dataset("imagenet", entry, root)

    flipped = evaluate(loaded, data, batch_size=5, workers=0, image_hook=_flip)
    good = [s for s in flipped.samples if s.ok]
    transform = eval_transform(entry.data)
    batch = torch.stack([transform(_flip(load_image(s.path, 96))) for s in good])
    with torch.no_grad():
        hand = loaded.model(batch).softmax(-1).topk(5).indices.tolist()
    assert [s.top5 for s in good] == hand and len(flipped.failed) == 3

    # A random hook gives the same pixels whatever the worker count (seeded per file), and differs by seed.
    subset = data.limit(5)
    runs = [evaluate(loaded, subset, batch_size=16, workers=w, image_hook=_noisy, hook_seed=s)
            for w, s in ((0, 1), (2, 1), (0, 2))]
    rows = [[(r.top5, r.probability) for r in run.samples] for run in runs]
    assert rows[0] == rows[1] and rows[0] != rows[2]

    rejected = evaluate(loaded, data, workers=0, image_hook=_reject_png)
    (bad,) = [s for s in rejected.failed if s.path.endswith("gradient.png")]
    assert "ValueError: cannot corrupt this one" in bad.error and len(rejected.failed) == 4


# ----------------------------------------------------------------------------- on a GPU (skipped without CUDA)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_eval_graphs_eager_and_compile_agree(eval_env, imagenet_tree, no_tf32):
    """The GPU loop (staging ring, pipelining, uint8 crops normalised on the device) predicts what the
    CPU does; CUDA-graph replay ranks the classes as the eager forward does; torch.compile agrees within
    rounding."""
    from ssmzoo.evaluate import evaluate

    root, expected, bad = imagenet_tree
    entry = load_manifest([eval_env["manifest"]])["groupmamba_evalmini"]
    data = build_dataset("imagenet", entry, root)
    cpu = evaluate(load_model(entry, weights=str(eval_env["checkpoint"]), device="cpu"), data, batch_size=4, workers=0)
    loaded = load_model(entry, weights=str(eval_env["checkpoint"]), device="cuda")
    runs = {mode: evaluate(loaded, data, batch_size=4, workers=2, cuda_graphs=graphs, compile=comp)
            for mode, graphs, comp in (("graphs", None, False), ("eager", False, False), ("compile", True, True))}
    assert [r.execution for r in runs.values()] == ["CUDA graphs", "eager", "torch.compile + CUDA graphs"]
    rows = {mode: [(s.path, s.error is None, s.top5) for s in r.samples] for mode, r in runs.items()}
    assert rows["graphs"] == rows["eager"]
    # Full batches run the same kernels either way (bitwise: test_inference); a short batch is zero-padded
    # for the graph but runs at its own size eagerly, where cuBLAS may pick other kernels: rounding only.
    for ours, ref in zip(runs["graphs"].samples, runs["eager"].samples):
        if ref.ok:
            assert ours.probability == pytest.approx(ref.probability, rel=1e-5, abs=1e-7)
    for mode in ("graphs", "compile"):
        assert len(runs[mode].failed) == len(bad) and 0.0 <= runs[mode].data_wait_fraction <= 1.0
        for ours, ref in zip(runs[mode].samples, cpu.samples):
            assert (ours.path, ours.ok) == (ref.path, ref.ok)
            if ref.ok:  # near-ties aside, the same class; the probability of each one's top class agrees
                assert ours.probability == pytest.approx(ref.probability, rel=1e-3, abs=1e-6)
                assert ours.prediction == ref.prediction or abs(ours.probability - ref.probability) < 1e-4


def test_nothing_readable_is_one_error_line_and_each_skipped_file_one_line(cli, eval_env, tmp_path):
    # `fail`'s message and the skipped lines before it stay one line each, a newline in a file name included
    root = tmp_path / "folder"
    (root / "tabby cat").mkdir(parents=True)
    (root / "tabby cat" / "bad\nname.JPEG").write_bytes(b"")
    res = _eval(cli, eval_env, "--dataset", "imagefolder", "--data-dir", root, "--workers", "0", "--json")
    assert (res.code, res.stderr.splitlines()[-2:]) == (1, [
        f"skipped: {root}/tabby cat/bad\\nname.JPEG: empty file (0 bytes)",
        "error: the one item could not be read"]), res.stderr


@pytest.mark.parametrize("terminal", [False, True])
def test_fail_writes_one_line_whatever_the_message_holds(terminal, capsys, monkeypatch):
    # no command passes a file name to `fail` yet; one that does gets one line, not markup, on a terminal too
    import io

    import typer
    from rich.console import Console

    from ssmzoo import cli

    screen = io.StringIO()
    if terminal:
        monkeypatch.setattr(cli, "err", Console(file=screen, force_terminal=True, color_system=None, soft_wrap=True))
    with pytest.raises(typer.Exit) as exit_:
        cli.fail("[bold]bad\nname.JPEG\x1b[31m: cannot read it")
    written = screen.getvalue() if terminal else capsys.readouterr().err
    assert exit_.value.exit_code == 1
    assert written == "error: [bold]bad\\nname.JPEG\\x1b[31m: cannot read it\n"


def test_ctrl_c_during_eval_exits_130_says_nothing_was_written_and_leaves_no_output_folder(eval_env, tmp_path):
    # the output's folders are made when the results are written, not before the run: an interrupted run
    # leaves no empty results/ folder behind, and its last line says that nothing was written
    classes = tmp_path / "data" / "tabby cat"
    classes.mkdir(parents=True)
    for i in range(3000):  # minutes of work on the CPU at batch 1: the run is still going when the signal comes
        os.link(eval_env["paths"][i % len(eval_env["paths"])], classes / f"{i}.JPEG")
    output = tmp_path / "results" / "run1" / "summary.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ssmzoo", "--manifest", str(eval_env["manifest"]), "eval", "--model",
         "groupmamba_evalmini", "--weights", str(eval_env["checkpoint"]), "--device", "cpu", "--dataset",
         "imagefolder", "--data-dir", str(tmp_path / "data"), "--workers", "0", "--batch-size", "1",
         "--output", str(output)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:  # "groupmamba_evalmini: weights ...": the model is loaded, the loop comes next
        seen.append(line)
        if ": weights " in line:
            break
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    stdout, rest = proc.communicate(timeout=60)
    stderr = "".join(seen) + rest
    assert proc.returncode == 130, repr(stderr)
    assert "Traceback" not in stderr and stdout == "", repr(stderr)
    assert stderr.splitlines()[-1] == "interrupted: nothing written", repr(stderr)
    assert not (tmp_path / "results").exists()


def test_a_run_that_fails_before_writing_creates_no_output_folder(cli, eval_env, tmp_path):
    # the pre-flight check of --output and --per-sample tries the nearest existing folder; it creates nothing
    output, per_sample = tmp_path / "new" / "summary.json", tmp_path / "other" / "deep" / "rows.csv"
    res = _eval(cli, eval_env, "--dataset", "imagefolder", "--data-dir", tmp_path / "missing",
                "--output", output, "--per-sample", per_sample)
    assert res.code != 0 and "Traceback" not in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("option, name", [("--output", "full.json"), ("--output", "full.csv"),
                                          ("--per-sample", "full.jsonl"), ("--per-sample", "full.csv")])
def test_a_full_disk_at_the_end_names_the_option_written(cli, eval_env, imagenet_tree, tmp_path, option, name):
    # as robustness says it, and as the check before the run words a path that cannot be written
    root = imagenet_tree[0]
    target = tmp_path / name
    target.symlink_to("/dev/full")  # opens for appending (the check before the run), fails on writing
    res = _eval(cli, eval_env, "--dataset", "imagenet", "--data-dir", root, "--limit", "2", "--workers", "0",
                option, target)
    lines = res.stderr.strip().splitlines()
    assert res.code == 1 and lines[-1] == f"error: {option} {target}: cannot write it (No space left on device)"
