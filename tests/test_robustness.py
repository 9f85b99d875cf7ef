"""`ssmzoo robustness` end to end on a small ImageNet tree with two models, and its parts.

Every accuracy the sweep reports is recomputed another way: the clean row by `ssmzoo eval`, a JPEG row by
`evaluate(image_hook=...)` (which re-encodes before the eval transform), corruption rows by corrupting the
model's crop by hand, a video JPEG row by `load_video_views(frame_hook=...)`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ssmzoo  # noqa: F401
from ssmzoo.corruptions import ALEXNET_ERRORS, corrupt, jpeg_frame, jpeg_reencode
from ssmzoo.datasets import Sample, build_dataset
from ssmzoo.factory import load_model
from ssmzoo.images import eval_transform, load_image
from ssmzoo.labels import class_ids
from ssmzoo.manifest import load_manifest
from ssmzoo.robustness import (Condition, ImageVariants, SweepError, build_conditions, condition_rng, line_chart,
                               parse_corruptions, parse_qualities, parse_severities, split_eval_transform)

from conftest import EXAMPLES, MINI_MANIFEST

ROOT = Path(__file__).resolve().parents[1]
IDS = class_ids("imagenet-1k")

SECOND = """
  groupmamba_mini_64:
    family: groupmamba
    architecture: groupmamba_tiny
    arch_args: {stem_hidden_dim: 16, embed_dims: [32, 64, 96, 128], mlp_ratios: [8, 8, 4, 4], depths: [1, 2, 2, 1]}
    task: image-classification
    labels: imagenet-1k
    data: {input_size: [3, 64, 64], crop_pct: 1.0, interpolation: bilinear}
  groupmamba_mini_b:
    family: groupmamba
    architecture: groupmamba_tiny
    arch_args: {stem_hidden_dim: 16, embed_dims: [32, 64, 96, 128], mlp_ratios: [8, 8, 4, 4], depths: [1, 2, 2, 1]}
    task: image-classification
    labels: imagenet-1k
    data: {input_size: [3, 96, 96], crop_pct: 0.875, interpolation: bicubic}
"""


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("text, expected", [
    ("10..90", [10, 20, 30, 40, 50, 60, 70, 80, 90]),
    ("10..90:20", [10, 30, 50, 70, 90]),
    ("10,30,50", [10, 30, 50]),
    (" 50 ", [50]),
    ("5..25, 90", [5, 15, 25, 90]),
    ("95..100:2", [95, 97, 99, 100]),  # END off the step grid: run too (see the notes test below)
    ("1..100:99", [1, 100]),
    ("30,10,30", [10, 30]),
    ("10..90:80", [10, 90]),  # the largest step that still reaches past START
    ("50..50:10", [50]),  # one value asked for, one value given
])
def test_parse_qualities(text, expected):
    assert parse_qualities(text) == expected


@pytest.mark.parametrize("text, message", [
    ("90..10", "empty"), ("0..120", "1..100"), ("abc", "START..END"), ("", "START..END"), ("10..90:0", "step"),
    ("101", "1..100"), ("-5", "1..100"), ("10..", "START..END"), ("10,,20", "START..END"), ("10-90", "START..END"),
    ("10..101", "1..100"), ("95..200:50", "1..100"),  # an END out of range, also where the steps stop short of it
    ("0..90:200", "1..100"),  # a START out of range is named before the step
    # a step longer than the range: only its two ends would run, most likely a typo for a smaller step
    ("10..90:200", "the step 200 is larger than the range 10..90, which would give its ends alone"),
    ("10..90:81", "use a smaller step (at most 80) or the list 10,90"),
    ("10..90:-5", "step"), (":-5", "START..END"),
])
def test_parse_qualities_rejects(text, message):
    with pytest.raises(SweepError) as info:
        parse_qualities(text)
    assert message in str(info.value) and "\n" not in str(info.value) and "--jpeg-quality" in str(info.value)


@pytest.mark.parametrize("text, expected, note", [
    # END is run as typed, also where the steps from START miss it (1..100 used to stop at 91)
    ("1..100", [1, 11, 21, 31, 41, 51, 61, 71, 81, 91, 100],
     "--jpeg-quality 1..100: END 100 added off the step-10 grid (1, 11, ..., 91, then 100)"),
    ("5..95:20", [5, 25, 45, 65, 85, 95], "--jpeg-quality 5..95:20: END 95 added off the step-20 grid (5, 25, ..., "
                                          "85, then 95)"),
    ("10..90:79", [10, 89, 90], "--jpeg-quality 10..90:79: END 90 added off the step-79 grid (10, 89, then 90)"),
    ("10..90", [10, 20, 30, 40, 50, 60, 70, 80, 90], None),  # on the grid: no note
    ("10..90:80", [10, 90], None),
])
def test_a_range_always_runs_its_end_and_says_when_it_is_off_the_grid(text, expected, note):
    notes: list[str] = []
    assert parse_qualities(text, notes) == expected
    assert notes == ([note] if note else [])


def test_repeated_options_are_merged_and_repeated_values_get_one_note():
    notes: list[str] = []
    assert parse_qualities(["10..30", "50,90"], notes) == [10, 20, 30, 50, 90] and notes == []
    assert parse_qualities("10,10,50", notes) == [10, 50]
    assert notes == ["--jpeg-quality: 10 given more than once; it is run once"]
    notes.clear()
    assert parse_qualities(["10..30,20", "30"], notes) == [10, 20, 30]  # also through a range, or across options
    assert notes == ["--jpeg-quality: 20, 30 given more than once; each is run once"]
    notes.clear()
    assert parse_severities(["1,1", "1..5:3"], notes) == [1, 4, 5]
    assert notes == ["--severity 1..5:3: END 5 added off the step-3 grid (1, 4, then 5)",
                     "--severity: 1 given more than once; it is run once"]
    notes.clear()
    assert parse_corruptions(["gaussian_noise,gaussian_noise", "contrast", "pixelate,contrast"], notes) == \
        ["gaussian_noise", "contrast", "pixelate"]
    assert notes == ["--corruption: gaussian_noise, contrast given more than once; each is run once"]
    notes.clear()
    assert parse_corruptions("contrast,pixelate", notes) == ["contrast", "pixelate"] and notes == []
    with pytest.raises(SweepError, match="--corruption ',': expected corruption names"):
        parse_corruptions(["contrast", ","])


def test_parse_severities_and_corruptions():
    assert parse_severities(None) == [1, 2, 3, 4, 5]
    assert parse_severities("1..5") == [1, 2, 3, 4, 5] and parse_severities("2,4") == [2, 4]
    assert parse_severities("1..5:2") == [1, 3, 5]
    for bad in ("0..5", "6", "5..1", "x", "1..5:9"):
        with pytest.raises(SweepError, match="--severity"):
            parse_severities(bad)
    assert parse_corruptions("contrast, Gaussian-Noise,contrast") == ["contrast", "gaussian_noise"]
    assert set(parse_corruptions("imagenet-c")) == {n for n in parse_corruptions("all") if n in ALEXNET_ERRORS}
    assert len(parse_corruptions("all")) == 11
    with pytest.raises(SweepError, match="'fog' is an ImageNet-C corruption ssmzoo does not implement"):
        parse_corruptions("contrast,fog")
    with pytest.raises(SweepError, match="unknown corruption 'gaussian_nosie'; did you mean gaussian_noise"):
        parse_corruptions("gaussian_nosie")
    with pytest.raises(SweepError, match="unknown corruption 'rain'; available: gaussian_noise"):
        parse_corruptions("rain")


def test_conditions_order_and_keys():
    conds = build_conditions([10, 90, 50], ["contrast"], [3, 1])
    assert [c.label for c in conds] == ["clean", "JPEG q90", "JPEG q50", "JPEG q10", "contrast 1", "contrast 3"]
    assert len({c.key for c in conds}) == len(conds)
    with pytest.raises(SweepError, match="video"):
        Condition("corruption", corruption="contrast", severity=1).frame_hook()


# ----------------------------------------------------------------------------- the worker's pixels


def test_variants_are_the_eval_transform_bit_for_bit(mini_files, tmp_path):
    """Clean = eval's tensor exactly; JPEG = eval transform of the re-encoded original; a corruption = the
    crop corrupted, then ToTensor + Normalize."""
    manifest, _ = mini_files
    entry = load_manifest([manifest])["groupmamba_mini"]
    pre, mean, std = split_eval_transform(entry.data)
    conds = [Condition("clean"), Condition("jpeg", quality=20),
             Condition("corruption", corruption="gaussian_noise", severity=2)]
    path = tmp_path / "odd.png"
    Image.open(EXAMPLES / "coffee.jpg").resize((131, 77)).save(path)
    item = ImageVariants([Sample(str(path), 0)], pre, 96, (96, 96), conds, seed=4, root=str(tmp_path))[0]
    assert item.tensor.dtype == torch.uint8 and item.tensor.shape == (3, 3, 96, 96) and item.errors == [None] * 3
    m, s = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    normalised = item.tensor.float().div(255).sub_(m).div_(s)
    transform = eval_transform(entry.data)
    img = load_image(path, 96)
    assert torch.equal(normalised[0], transform(img))
    assert torch.equal(normalised[1], transform(jpeg_reencode(img, 20)))
    noisy = corrupt(pre(img), "gaussian_noise", 2, condition_rng(4, str(path), str(tmp_path), conds[2]))
    assert torch.equal(item.tensor[2], torch.from_numpy(np.asarray(noisy).copy()).permute(2, 0, 1))
    assert not torch.equal(item.tensor[0], item.tensor[2])


# ----------------------------------------------------------------------------- end to end on images


def _generated(folder: Path) -> list[Path]:
    rng = np.random.default_rng(5)
    paths = [Path(shutil.copy(p, folder / p.name)) for p in sorted(EXAMPLES.glob("*.jpg"))]
    Image.fromarray(rng.integers(0, 256, (80, 121, 3), dtype=np.uint8)).save(folder / "noise.png")
    yy, xx = np.mgrid[0:150, 0:70]
    Image.fromarray(np.stack([xx * 3, yy, (xx + yy) % 256], -1).astype(np.uint8)).save(folder / "gradient.png")
    Image.open(EXAMPLES / "chelsea.jpg").convert("L").resize((101, 99)).save(folder / "gray.jpg")
    return paths + [folder / "noise.png", folder / "gradient.png", folder / "gray.jpg"]


def _predict(loaded, tensors: list[torch.Tensor]) -> list[int]:
    with torch.no_grad():
        return loaded.model(torch.stack(tensors)).argmax(-1).tolist()


@pytest.fixture(scope="module")
def sweep_env(mini_files, tmp_path_factory):
    """Two models (the mini GroupMamba and the same architecture with other weights), 7 readable images
    in an ImageNet val tree labelled so that each model gets some right, and one broken file."""
    import timm

    manifest_a, checkpoint_a = mini_files
    root = tmp_path_factory.mktemp("sweep")
    manifest = root / "two.yaml"
    manifest.write_text(MINI_MANIFEST + SECOND)
    torch.manual_seed(7)
    model = timm.create_model("groupmamba_tiny", stem_hidden_dim=16, embed_dims=[32, 64, 96, 128],
                              mlp_ratios=[8, 8, 4, 4], depths=[1, 2, 2, 1])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    checkpoint_b = root / "b.pth"
    torch.save(model.state_dict(), checkpoint_b)

    staging = root / "staging"
    staging.mkdir()
    paths = _generated(staging)
    entries = load_manifest([manifest])
    loaded = [load_model(entries["groupmamba_mini"], weights=str(checkpoint_a), device="cpu"),
              load_model(entries["groupmamba_mini_b"], weights=str(checkpoint_b), device="cpu")]
    transform = eval_transform(entries["groupmamba_mini"].data)
    clean = [transform(load_image(p, 96)) for p in paths]
    pred_a, pred_b = _predict(loaded[0], clean), _predict(loaded[1], clean)
    labels = [pred_a[i] if i % 2 == 0 else pred_b[i] for i in range(len(paths))]  # both models score
    data = root / "imagenet"
    for path, label in zip(paths, labels):
        (data / "val" / IDS[label]).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, data / "val" / IDS[label] / path.name)
    broken = data / "val" / IDS[labels[0]] / "zz_broken.JPEG"
    broken.write_bytes((EXAMPLES / "rocket.jpg").read_bytes()[:2000])
    return {"manifest": manifest, "weights": [checkpoint_a, checkpoint_b], "data": data, "loaded": loaded,
            "names": ["groupmamba_mini", "groupmamba_mini_b"], "broken": broken, "root": root}


def _sweep_args(env, *args):
    """A two-model sweep on the CPU, whatever the machine (the GPU runner has its own test below)."""
    return ["--manifest", env["manifest"], "robustness", "--dataset", "imagenet", "--data-dir", env["data"],
            "--model", env["names"][0], "--model", env["names"][1], "--weights", env["weights"][0],
            "--weights", env["weights"][1], "--batch-size", "8", "--device", "cpu", *args]


def _hand_accuracy(loaded, data, make) -> float:
    """top-1 of ``loaded`` over the readable items, each item's input tensor given by ``make(sample)``."""
    tensors, labels = [], []
    for s in data.samples:
        try:
            img = load_image(s.path, 96)
        except Exception:  # noqa: BLE001 -- the broken file
            continue
        tensors.append(make(s, img))
        labels.append(s.label)
    preds = _predict(loaded, tensors)
    return 100.0 * sum(p == lab for p, lab in zip(preds, labels)) / len(labels)


def test_two_model_sweep_table_json_csv_and_reference_values(cli, sweep_env, tmp_path):
    env = sweep_env
    out_json, out_csv = tmp_path / "r.json", tmp_path / "r.csv"
    res = cli(*_sweep_args(env, "--jpeg-quality", "10..90:40", "--corruption", "contrast,gaussian_noise,saturate",
                           "--workers", "2", "--output", out_json))
    assert res.code == 0, res.stderr
    report = json.loads(out_json.read_text())

    # --- what ran
    labels = [c["condition"] for c in report["conditions"]]
    assert labels[:4] == ["clean", "JPEG q90", "JPEG q50", "JPEG q10"] and len(labels) == 4 + 15
    assert [m["label"] for m in report["models"]] == env["names"]
    assert report["n"] == 8 and [s["path"] for s in report["skipped_items"]] == [str(env["broken"])]
    assert report["passes"] == 1  # one decode per image serves all 19 conditions and both models
    assert report["evaluations_per_s"] == pytest.approx(8 * 19 * 2 / report["wall_s"], rel=0.01)
    assert report["warnings"] == []  # the dataset scan's warning lines, as eval's results carry them
    rows = {(r["model"], r["key"]): r for r in report["results"]}
    assert len(rows) == 2 * 19 and all(r["evaluated"] == 7 and r["skipped"] == 1 for r in rows.values())

    # --- the clean row is `ssmzoo eval` on the same data
    for name, weights in zip(env["names"], env["weights"]):
        ev = cli("--manifest", env["manifest"], "eval", "--dataset", "imagenet", "--data-dir", env["data"],
                 "--model", name, "--weights", weights, "--workers", "0", "--json")
        assert ev.code == 0, ev.stderr
        summary = json.loads(ev.stdout)
        assert rows[(name, "clean")]["top1"] == summary["top1"] and rows[(name, "clean")]["top5"] == summary["top5"]
        assert 0 < summary["top1"] < 100

    # --- JPEG rows = evaluate() with a re-encoding hook before the eval transform; corruption rows by hand
    from ssmzoo.evaluate import evaluate

    entry = env["loaded"][0].entry
    data = build_dataset("imagenet", entry, env["data"])
    pre, _, _ = split_eval_transform(entry.data)
    to_tensor = eval_transform(entry.data).transforms[-2:]  # ToTensor, Normalize

    def crop_then(corruption: str, severity: int):
        cond = Condition("corruption", corruption=corruption, severity=severity)

        def make(sample, img):
            out = corrupt(pre(img), corruption, severity, condition_rng(0, sample.path, data.root, cond))
            return to_tensor[1](to_tensor[0](out))
        return make

    changed = 0
    for k, (name, loaded) in enumerate(zip(env["names"], env["loaded"])):
        for q in (10, 50, 90):
            hooked = evaluate(loaded, data, workers=0, image_hook=lambda im, q=q: jpeg_reencode(im, q))
            assert rows[(name, f"jpeg_q{q}")]["top1"] == round(hooked.top1, 4), (name, q)
            changed += hooked.top1 != rows[(name, "clean")]["top1"]
        for corruption, severity in (("contrast", 5), ("gaussian_noise", 3), ("saturate", 4)):
            expected = _hand_accuracy(loaded, data, crop_then(corruption, severity))
            assert rows[(name, f"{corruption}_s{severity}")]["top1"] == pytest.approx(expected, abs=1e-3)
            changed += expected != rows[(name, "clean")]["top1"]
    assert changed > 0  # the sweep is not trivially flat

    # --- drop = clean - row; best = the highest top-1 of the row
    for (name, key), row in rows.items():
        assert row["drop"] == pytest.approx(rows[(name, "clean")]["top1"] - row["top1"], abs=2e-4)
        other = rows[(env["names"][1 - env["names"].index(name)], key)]
        assert row["best"] == (row["top1"] >= other["top1"])

    # --- CE and mCE from the rows and AlexNet's errors
    ces = {(c["model"], c["corruption"]): c for c in report["corruption_errors"]}
    for name in env["names"]:
        for corruption in ("contrast", "gaussian_noise"):
            errs = [100 - rows[(name, f"{corruption}_s{s}")]["top1"] for s in range(1, 6)]
            expected = 100 * sum(errs) / sum(100 * a for a in ALEXNET_ERRORS[corruption])
            assert ces[(name, corruption)]["ce"] == pytest.approx(expected, abs=1e-3)
        assert ces[(name, "saturate")]["ce"] is None and "AlexNet" in ces[(name, "saturate")]["why_no_ce"]
        mce = report["mce"][name]
        assert mce["corruptions"] == ["contrast", "gaussian_noise"] and mce["of_benchmark"] == 15
        assert mce["mce"] == pytest.approx((ces[(name, "contrast")]["ce"] + ces[(name, "gaussian_noise")]["ce"]) / 2,
                                           abs=1e-3)

    # --- the table, the CE table and the terminal charts
    text = res.stdout
    for needle in ("ssmzoo robustness on imagenet (7 of 8 images evaluated)", "groupmamba_mini_b", "JPEG q10",
                   "contrast 5", "drop", "ImageNet-C corruption error (CE: error over AlexNet's, severities 1..5)",
                   "mCE", "no CE for saturate: no published AlexNet errors", "7 of 8 items evaluated",
                   "top-1 (%) against JPEG quality", "top-1 (%) against severity", "in 1 pass "):
        assert needle in text, needle
    q10 = next(line for line in text.splitlines() if "JPEG q10" in line)
    a, b = rows[(env["names"][0], "jpeg_q10")], rows[(env["names"][1], "jpeg_q10")]
    assert f"{a['top1']:.2f}" in q10 and f"{a['drop']:+.2f}" in q10 and f"{b['top1']:.2f}" in q10
    skipped = [line for line in res.stderr.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 1 and str(env["broken"]) in skipped[0] and "Traceback" not in res.stderr

    # --- same sweep on 0 workers, as CSV: identical numbers (random corruptions seeded per image)
    res0 = cli(*_sweep_args(env, "--jpeg-quality", "10..90:40", "--corruption", "contrast,gaussian_noise,saturate",
                            "--workers", "0", "--output", out_csv, "--json", "--no-chart"))
    assert res0.code == 0, res0.stderr
    assert json.loads(res0.stdout)["results"] == report["results"]
    with out_csv.open() as f:
        table = list(csv.DictReader(f))
    kinds = [r["kind"] for r in table]
    assert kinds.count("ce") == 2 * 3 and kinds.count("mce") == 2 and len(table) == 2 * 19 + 8
    first = next(r for r in table if r["key"] == "jpeg_q50" and r["model"] == env["names"][1])
    assert float(first["top1"]) == rows[(env["names"][1], "jpeg_q50")]["top1"]
    # --seed only reaches the random corruptions: a contrast row is the same under another seed
    res7 = cli(*_sweep_args(env, "--corruption", "contrast", "--severity", "2", "--seed", "7", "--workers", "0",
                            "--json"))
    assert res7.code == 0, res7.stderr
    r7 = {(r["model"], r["key"]): r for r in json.loads(res7.stdout)["results"]}
    assert r7[(env["names"][0], "contrast_s2")]["top1"] == rows[(env["names"][0], "contrast_s2")]["top1"]


def test_nan_model_outputs_are_said_as_eval_says_them(cli, sweep_env, tmp_path):
    # a checkpoint with a NaN head used to give plain top-1 figures and drops (a NaN's top-k is an
    # arbitrary class); eval and classify said so, robustness did not
    env = sweep_env
    state = torch.load(env["weights"][0], weights_only=True)
    state["model"]["module.head.bias"][:] = float("nan")
    broken = tmp_path / "nan.pth"
    torch.save(state, broken)
    res = cli(*[broken if arg == env["weights"][0] else arg
                for arg in _sweep_args(env, "--jpeg-quality", "50", "--workers", "0", "--json")])
    assert res.code == 0, res.stderr
    report = json.loads(res.stdout)
    a, b = env["names"]
    assert f"14 evaluations got a model output that is not finite (NaN or inf), so their predictions mean nothing: " \
           f"{a}'s weights are broken, or its activations overflow in float32" in report["notes"]
    assert not any(b + "'s weights" in note for note in report["notes"])
    assert {(r["model"], r["not_finite"]) for r in report["results"]} == {(a, 7), (b, 0)}


def test_limit_counts_unreadable_files_among_its_n_and_says_so(cli, sweep_env, tmp_path):
    # --limit picks its items before any is read; the unreadable ones among them are skipped, not replaced,
    # and the title, the note and --json say how many of the N were read
    env = sweep_env
    data = tmp_path / "imagenet"
    shutil.copytree(env["data"], data)
    cut = sorted((data / "val").iterdir())[0] / "aa_cut.JPEG"  # its class's first file: --limit takes it
    cut.write_bytes((EXAMPLES / "coffee.jpg").read_bytes()[:1500])
    args = ["--manifest", env["manifest"], "robustness", "--dataset", "imagenet", "--data-dir", data,
            "--model", env["names"][0], "--weights", env["weights"][0], "--jpeg-quality", "50", "--limit", "8",
            "--workers", "0", "--device", "cpu"]
    res = cli(*args, "--json")
    assert res.code == 0, res.stderr
    report = json.loads(res.stdout)
    assert (report["limit"], report["n"], report["readable"], report["skipped"], report["total"]) == (8, 8, 7, 1, 9)
    assert [Path(s["path"]).name for s in report["skipped_items"]] == ["aa_cut.JPEG"]  # (zz_broken: not taken)
    assert all((r["n"], r["evaluated"]) == (8, 7) for r in report["results"])
    assert ("--limit 8: 8 of 9 items (class-stratified, deterministic); 1 unreadable item among them skipped, "
            "not replaced, so 7 evaluated") in report["notes"]
    table = cli(*args, "--no-chart").stdout
    assert "ssmzoo robustness on imagenet (7 of 8 images evaluated)" in table and "7 of 8 items evaluated" in table


def test_a_broken_link_among_the_images_is_said_as_classify_says_it(cli, sweep_env, tmp_path):
    env = sweep_env
    data = tmp_path / "imagenet"
    shutil.copytree(env["data"], data)
    link = sorted((data / "val").iterdir())[0] / "aa_link.JPEG"
    link.symlink_to("nowhere.JPEG")
    res = cli("--manifest", env["manifest"], "robustness", "--dataset", "imagenet", "--data-dir", data,
              "--model", env["names"][0], "--weights", env["weights"][0], "--jpeg-quality", "50",
              "--workers", "0", "--device", "cpu", "--json")
    assert res.code == 0, res.stderr
    assert {"path": str(link), "error": f"{link}: broken link (its target nowhere.JPEG does not exist)"} in \
        json.loads(res.stdout)["skipped_items"]


def _one_model_q50(cli, env, *extra):
    """The first model of ``sweep_env`` at JPEG quality 50 on the CPU, with ``extra`` options."""
    return cli("--manifest", env["manifest"], "robustness", "--dataset", "imagenet", "--data-dir", env["data"],
               "--model", env["names"][0], "--weights", env["weights"][0], "--jpeg-quality", "50",
               "--workers", "0", "--device", "cpu", *extra)


def test_a_limit_above_the_dataset_size_is_reported_as_given(cli, sweep_env):
    res = _one_model_q50(cli, sweep_env, "--limit", "100000", "--json")
    assert res.code == 0, res.stderr
    report = json.loads(res.stdout)
    assert (report["limit"], report["n"], report["total"]) == (100000, 8, 8)
    assert "--limit 100000 covers all 8 items of the dataset" in report["notes"]


def test_a_one_item_sweep_says_image_in_the_singular(cli, sweep_env):
    res = _one_model_q50(cli, sweep_env, "--limit", "1", "--no-chart")
    assert res.code == 0, res.stderr
    assert "ssmzoo robustness on imagenet (1 image)" in res.stdout


def test_each_models_weights_line_is_said_once_and_names_its_state_dict(cli, sweep_env):
    env = sweep_env  # a: {"model": {"module." + name: ...}}, as training scripts save; b: a bare state dict
    a, b = env["weights"]
    lines = [f"groupmamba_mini: weights local:{a} (state dict under 'model')", f"groupmamba_mini_b: weights local:{b}"]
    res = cli(*_sweep_args(env, "--jpeg-quality", "50", "--limit", "2", "--workers", "0", "--no-chart"))
    assert res.code == 0, res.stderr
    assert [line for line in res.stderr.splitlines() if ": weights " in line] == lines
    assert all(f"; weights {line.split(': weights ')[1]}" in res.stdout for line in lines)  # under the table
    res = cli(*_sweep_args(env, "--jpeg-quality", "50", "--limit", "2", "--workers", "0", "--json"))
    assert [m["weights_key_path"] for m in json.loads(res.stdout)["models"]] == [["model"], []]


def test_models_with_different_crops_get_their_own_pass(cli, sweep_env):
    """A 96 (crop_pct 0.875, bicubic) and a 64 (crop_pct 1, bilinear) model: two resize/crop groups, each
    model's clean row still equal to its own `ssmzoo eval`, its corruption applied at its own resolution."""
    env = sweep_env
    args = ["--manifest", env["manifest"], "robustness", "--dataset", "imagenet", "--data-dir", env["data"],
            "--model", "groupmamba_mini", "--model", "groupmamba_mini_64", "--weights", env["weights"][0],
            "--weights", env["weights"][0], "--jpeg-quality", "30", "--corruption", "pixelate", "--severity", "1",
            "--workers", "0", "--json"]
    res = cli(*args)
    assert res.code == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["passes"] == 2 and "2 resize/crop groups" in " ".join(report["notes"])
    rows = {(r["model"], r["key"]): r for r in report["results"]}
    for name in ("groupmamba_mini", "groupmamba_mini_64"):
        ev = cli("--manifest", env["manifest"], "eval", "--dataset", "imagenet", "--data-dir", env["data"],
                 "--model", name, "--weights", env["weights"][0], "--workers", "0", "--json")
        assert json.loads(ev.stdout)["top1"] == rows[(name, "clean")]["top1"]
    entry = load_manifest([env["manifest"]])["groupmamba_mini_64"]
    loaded = load_model(entry, weights=str(env["weights"][0]), device="cpu")
    data = build_dataset("imagenet", entry, env["data"])
    pre, _, _ = split_eval_transform(entry.data)
    steps = eval_transform(entry.data).transforms
    expected = _hand_accuracy(loaded, data, lambda s, img: steps[-1](steps[-2](corrupt(pre(img), "pixelate", 1))))
    assert rows[("groupmamba_mini_64", "pixelate_s1")]["top1"] == pytest.approx(expected, abs=1e-3) and expected > 0


def test_repeated_options_off_grid_ends_and_ce_over_the_severities_run(cli, sweep_env, tmp_path):
    """-q given twice runs the union (it used to run the last one alone); END off the step grid runs, with a
    note; a value named twice gets one note; with --severity 1,5 the CE compares the model's errors at 1
    and 5 with AlexNet's at 1 and 5 (the heading, the AlexNet column and the JSON say so), not with
    AlexNet's mean over 1..5."""
    env = sweep_env
    out = tmp_path / "r.json"
    res = cli("--manifest", env["manifest"], "robustness", "--dataset", "imagenet", "--data-dir", env["data"],
              "--model", env["names"][0], "--weights", env["weights"][0], "--device", "cpu", "--workers", "0",
              "--limit", "3", "-q", "1..100:45", "-q", "46,91,91", "--corruption", "gaussian_noise",
              "--corruption", "contrast,gaussian_noise", "--severity", "5", "--severity", "1,5", "--no-chart",
              "--output", out)
    assert res.code == 0, res.stderr
    report = json.loads(out.read_text())
    assert [c["condition"] for c in report["conditions"]] == [
        "clean", "JPEG q100", "JPEG q91", "JPEG q46", "JPEG q1",
        "gaussian_noise 1", "gaussian_noise 5", "contrast 1", "contrast 5"]
    sweep_notes = ["--jpeg-quality 1..100:45: END 100 added off the step-45 grid (1, 46, 91, then 100)",
                   "--jpeg-quality: 46, 91 given more than once; each is run once",
                   "--corruption: gaussian_noise given more than once; it is run once",
                   "--severity: 5 given more than once; it is run once"]
    assert report["notes"][:4] == sweep_notes
    assert all(f"note: {n}" in res.stdout for n in sweep_notes)  # under the table too

    rows = {r["key"]: r for r in report["results"]}
    for summary in report["corruption_errors"]:
        name = summary["corruption"]
        errs = [100 - rows[f"{name}_s{s}"]["top1"] for s in (1, 5)]
        alexnet = [100 * ALEXNET_ERRORS[name][s - 1] for s in (1, 5)]
        assert summary["severities"] == [1, 5]
        assert summary["alexnet_mean_error"] == pytest.approx(sum(alexnet) / 2, abs=1e-3)
        assert summary["ce"] == pytest.approx(100 * sum(errs) / sum(alexnet), abs=1e-3)
        assert summary["why_no_ce"] is None
    assert report["mce"][env["names"][0]]["severities"] == [1, 5]
    text = res.stdout
    assert "ImageNet-C corruption error (CE: error over AlexNet's, severities 1,5)" in text
    assert "severities 1..5" not in text
    assert "CE and mCE over severities 1,5 only: published ones sum over 1..5, so they do not compare" in text
    contrast = [line for line in text.splitlines() if line.startswith("│ contrast ")][-1]  # the CE table's row
    assert f"{100 * (ALEXNET_ERRORS['contrast'][0] + ALEXNET_ERRORS['contrast'][4]) / 2:.1f}" in contrast


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_a_full_disk_at_the_end_names_the_output_option(cli, sweep_env, tmp_path, suffix):
    target = tmp_path / f"full{suffix}"
    target.symlink_to("/dev/full")  # opens for appending (the check before the run), fails on writing
    res = _one_model_q50(cli, sweep_env, "--limit", "1", "--no-chart", "--output", target)
    lines = res.stderr.strip().splitlines()
    assert res.code == 1 and lines[-1] == f"error: --output {target}: cannot write it (No space left on device)"


@pytest.mark.parametrize("args, message", [
    (("--jpeg-quality", "90..10"), "empty"),
    (("--jpeg-quality", "0..120"), "values must be in 1..100"),
    (("--jpeg-quality", "abc"), "START..END"),
    (("--jpeg-quality", "10..90:200"), "--jpeg-quality '10..90:200': the step 200 is larger than the range 10..90"),
    (("--corruption", "contrast", "--severity", "1..5:9"), "--severity '1..5:9': the step 9 is larger"),
    (("--corruption", "fog"), "ImageNet-C corruption ssmzoo does not implement"),
    (("--corruption", "frosty"), "unknown corruption"),
    (("--corruption", "contrast", "--severity", "0..9"), "--severity"),
    (("--jpeg-quality", "50", "--severity", "1"), "--severity applies to --corruption"),
    ((), "nothing to sweep"),
])
def test_invalid_sweeps_are_one_line_usage_errors(cli, sweep_env, args, message):
    res = cli(*_sweep_args(sweep_env, *args))
    lines = res.stderr.strip().splitlines()
    assert res.code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], res.stderr
    assert res.stdout == ""


def test_other_bad_options(cli, sweep_env, tmp_path):
    env = sweep_env
    res = cli("--manifest", env["manifest"], "robustness", "--dataset", "imagenet", "--data-dir", env["data"],
              "--model", env["names"][0], "--model", env["names"][1], "--weights", env["weights"][0],
              "--jpeg-quality", "50")
    assert res.code == 2 and "one per model" in res.stderr
    res = cli(*_sweep_args(env, "--jpeg-quality", "50", "--output", tmp_path / "r.txt"))
    assert res.code == 2 and "--output" in res.stderr and "Traceback" not in res.stderr
    res = cli(*_sweep_args(env, "--jpeg-quality", "50", "--plot", tmp_path / "p.gif"))
    assert res.code == 2 and ".png" in res.stderr and res.stderr.strip().endswith("(see `ssmzoo robustness --help`)")


def test_plot_file_or_a_clear_message(cli, sweep_env, tmp_path, monkeypatch):
    env = sweep_env
    target = tmp_path / "plots" / "sweep.png"
    try:
        import matplotlib  # noqa: F401
        have = True
    except ImportError:
        have = False
    if have:
        res = cli(*_sweep_args(env, "--jpeg-quality", "30,70", "--corruption", "pixelate", "--severity", "1,5",
                               "--limit", "3", "--workers", "0", "--plot", target))
        assert res.code == 0, res.stderr
        assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and target.stat().st_size > 5000
        assert f"plot: {target}" in res.stdout
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    res = cli(*_sweep_args(env, "--jpeg-quality", "50", "--plot", tmp_path / "x.png"))
    lines = res.stderr.strip().splitlines()
    # the extra as the README words it (ssmzoo is installed from its repository; this said pip install 'ssmzoo[plot]')
    assert res.code == 1 and len(lines) == 1 and 'pip install -e ".[plot]"' in lines[0]
    assert '`pip install -e ".[plot]"`' in (ROOT / "README.md").read_text()
    assert not (tmp_path / "x.png").exists()


def test_line_chart_places_markers():
    from rich.console import Console

    chart = line_chart("t", "x", [("a", [(10.0, 0.0), (90.0, 100.0)]), ("b", [(10.0, 100.0), (90.0, 100.0)])],
                       width=21, height=5)
    console = Console(width=80, color_system=None, record=True)
    console.print(chart)
    lines = console.export_text().rstrip("\n").splitlines()
    assert len(lines) == 9  # title, 5 rows, axis, ticks, legend
    grid = [line.split("┤ ", 1)[-1].split("│ ", 1)[-1] for line in lines[1:6]]
    assert lines[1].lstrip().startswith("100.0") and lines[5].lstrip().startswith("0.0")
    assert grid[4][0] == "●" and grid[0][0] == "■"  # a: (10, 0) bottom left; b: (10, 100) top left
    assert grid[0][20] == "◉"  # both at (90, 100): the overlap marker
    assert "·" in grid[2]  # a's line passes through the middle
    assert "● a" in lines[-1] and "■ b" in lines[-1] and "◉ several" in lines[-1]
    assert "10" in lines[7] and "90" in lines[7]


# ----------------------------------------------------------------------------- video


def test_video_jpeg_sweep_frame_by_frame(cli, mini_video_checkpoint, tmp_path):
    from video_fixtures import write_mp4

    from ssmzoo.evaluate import video_protocol
    from ssmzoo.video import load_video_views

    manifest = tmp_path / "m.yaml"
    manifest.write_text(MINI_MANIFEST)
    rng = np.random.default_rng(0)

    def textured(i: int, size: tuple[int, int]) -> np.ndarray:
        w, h = size
        base = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        return np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))[:h, :w]

    videos = [write_mp4(tmp_path / f"v{k}.mp4", 10 + 3 * k, (80 + 16 * k, 64), frame_fn=textured) for k in range(3)]
    entry = load_manifest([manifest])["videomamba_mini_k400"]
    loaded = load_model(entry, weights=str(mini_video_checkpoint), device="cpu")
    protocol = video_protocol(loaded, (1, 1))

    def predict(path, hook=None):
        clips = load_video_views(path, protocol, entry.data.mean, entry.data.std, frame_hook=hook)
        with torch.no_grad():
            return int(loaded.model(clips.tensor).softmax(-1).mean(0).argmax())

    clean = [predict(v) for v in videos]
    q5 = [predict(v, lambda f: jpeg_frame(f, 5)) for v in videos]
    labels = [clean[0], q5[1], clean[2] if clean[2] != q5[2] else (clean[2] + 1) % 400]
    (tmp_path / "list.txt").write_text("".join(f"{v.name} {lab}\n" for v, lab in zip(videos, labels))
                                       + "missing.mp4 3\n")
    res = cli("--manifest", manifest, "robustness", "--dataset", "kinetics400", "--list", tmp_path / "list.txt",
              "--model", "videomamba_mini_k400", "--weights", mini_video_checkpoint, "--views", "1x1",
              "--jpeg-quality", "5,95", "--workers", "0", "--batch-size", "2", "--json")
    assert res.code == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["passes"] == 2  # 3 conditions, 2 clips per batch: conditions (clean, q95), then (q5)
    rows = {r["key"]: r for r in report["results"]}
    expect = lambda preds: 100.0 * sum(p == lab for p, lab in zip(preds, labels)) / 3  # noqa: E731
    assert rows["clean"]["top1"] == pytest.approx(expect(clean), abs=1e-3)
    assert rows["jpeg_q5"]["top1"] == pytest.approx(expect(q5), abs=1e-3)
    assert rows["jpeg_q5"]["drop"] == pytest.approx(expect(clean) - expect(q5), abs=1e-3)
    assert rows["clean"]["evaluated"] == 3 and rows["clean"]["skipped"] == 1
    assert any("every decoded frame" in n for n in report["notes"])
    ev = cli("--manifest", manifest, "eval", "--dataset", "kinetics400", "--list", tmp_path / "list.txt",
             "--model", "videomamba_mini_k400", "--weights", mini_video_checkpoint, "--views", "1x1",
             "--workers", "0", "--json")
    assert json.loads(ev.stdout)["top1"] == rows["clean"]["top1"]
    res = cli("--manifest", manifest, "robustness", "--dataset", "kinetics400", "--list", tmp_path / "list.txt",
              "--model", "videomamba_mini_k400", "--corruption", "contrast")
    assert res.code == 2 and "video models take --jpeg-quality only" in res.stderr


# ----------------------------------------------------------------------------- torchrun


def test_torchrun_two_processes_report_what_one_process_does(cli, sweep_env, tmp_path):
    env = sweep_env
    common = [str(a) for a in _sweep_args(env, "--jpeg-quality", "20", "--corruption", "gaussian_noise",
                                          "--severity", "4", "--workers", "1", "--device", "cpu", "--json")]
    one = cli(*common)
    assert one.code == 0, one.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2", "--master-addr",
         "127.0.0.1", "--master-port", str(port), "-m", "ssmzoo", *common],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    multi, single = json.loads(proc.stdout), json.loads(one.stdout)  # only rank 0 printed
    assert multi["world_size"] == 2 and multi["device"] == "2 x cpu"
    assert multi["results"] == single["results"] and multi["skipped_items"] == single["skipped_items"]
    assert proc.stderr.count("skipped: ") == 1
    assert not math.isnan(multi["wall_s"])


def test_help_lists_every_corruption(cli):
    import inspect

    from ssmzoo.cli import robustness_cmd
    from ssmzoo.corruptions import CORRUPTIONS

    assert cli("robustness", "--help").code == 0
    text = inspect.signature(robustness_cmd).parameters["corruption"].default.help
    assert all(name in text for name in CORRUPTIONS), text


def test_help_says_what_the_options_take():
    import inspect

    from ssmzoo.cli import eval_cmd, robustness_cmd

    helps = {name: p.default.help for name, p in inspect.signature(robustness_cmd).parameters.items()
             if hasattr(p.default, "help")}
    assert "image models (video models take --jpeg-quality only)" in helps["corruption"]
    assert "START..END[:STEP]" in helps["severity"] and "START..END[:STEP]" in helps["jpeg_quality"]
    assert all("repeatable" in helps[k] for k in ("jpeg_quality", "corruption", "severity"))
    for command in (robustness_cmd, eval_cmd):  # the layouts the README documents for --dataset imagenet
        text = inspect.signature(command).parameters["data_dir"].default.help
        assert "DIR/val/<synset>/*" in text and "a flat folder of <synset>_*.JPEG files" in text, text


# ----------------------------------------------------------------------------- on a GPU (skipped without CUDA)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_sweep_with_graphs_matches_eager(sweep_env, no_tf32):
    """Two models through the GPU runner (uint8 crops normalised on the device, one batch in flight):
    CUDA-graph replay gives exactly the eager results, and both match the CPU sweep's counts."""
    from ssmzoo.datasets import build_dataset
    from ssmzoo.robustness import run_robustness

    entries = load_manifest([sweep_env["manifest"]])
    data = build_dataset("imagenet", entries[sweep_env["names"][0]], sweep_env["data"])
    conditions = build_conditions([30], ["contrast"], [2])

    def models(device):
        return [load_model(entries[n], weights=str(w), device=device) for n, w in zip(sweep_env["names"], sweep_env["weights"])]

    def counts(report):
        return {key: (c.evaluated, c.correct1, c.correct5) for key, c in report.cells.items()}

    cpu = run_robustness(models("cpu"), data, conditions, batch_size=4, workers=0)
    gpu = models("cuda")
    graphs = run_robustness(gpu, data, conditions, batch_size=4, workers=2)
    eager = run_robustness(gpu, data, conditions, batch_size=4, workers=2, cuda_graphs=False)
    assert (graphs.execution, eager.execution) == ("CUDA graphs", "eager")
    assert counts(graphs) == counts(eager)
    assert counts(graphs) == counts(cpu)  # 7 images: a near-tie flip would show here; none expected
    assert 0.0 <= graphs.data_wait_s <= graphs.busy_s


def test_jpeg_refuses_an_image_too_wide_for_it_before_libjpeg_prints_anything(capfd):
    from ssmzoo.corruptions import TooLargeForJpeg

    with pytest.raises(TooLargeForJpeg, match=r"^too large for JPEG \(70000 px > 65500\)$"):
        jpeg_reencode(Image.new("RGB", (70000, 100)), 50)
    assert capfd.readouterr().err == ""  # libjpeg's bare "Maximum supported image dimension" line


def test_an_image_failing_under_one_condition_is_left_out_of_all_and_named(cli, mini_files, tmp_path):
    """A 70000-pixel-wide panorama is readable (clean) but cannot be a JPEG: it is skipped with that cause,
    named in --json's skipped items, and left out of the clean row too, so the drop compares the same image."""
    manifest, checkpoint = mini_files
    folder = tmp_path / "wide" / "n01440764"
    folder.mkdir(parents=True)
    wide = folder / "a_wide.png"
    Image.new("RGB", (70000, 100), (90, 120, 60)).save(wide)
    shutil.copy(EXAMPLES / "coffee.jpg", folder / "b_coffee.jpg")
    args = ["--manifest", manifest, "robustness", "--dataset", "imagenet", "--data-dir", tmp_path / "wide",
            "--model", "groupmamba_mini", "--weights", checkpoint, "-q", "50,30", "--workers", "0", "--device", "cpu"]
    res = cli(*args, "--json")
    assert res.code == 0, res.stderr
    report = json.loads(res.stdout)
    cause = f"{wide}: JPEG q50 failed: too large for JPEG (70000 px > 65500)"
    assert report["skipped_items"] == [{"path": str(wide), "error": cause}]
    # "evaluated", not "readable": the panorama was read (the JSON keeps "readable", the same count, for old readers)
    assert (report["n"], report["evaluated"], report["readable"], report["skipped"]) == (2, 1, 1, 1)
    assert all((r["n"], r["evaluated"], r["skipped"]) == (2, 1, 1) for r in report["results"])
    clean, q50 = (next(r for r in report["results"] if r["key"] == k) for k in ("clean", "jpeg_q50"))
    assert q50["drop"] == pytest.approx(clean["top1"] - q50["top1"])
    assert ("1 image readable but failing under some condition is left out of every condition (named in the "
            "skipped items, with the cause), so every row, and each drop from clean, is over the same items"
            in report["notes"])
    assert res.stderr.count(str(wide)) == 1 and f"skipped: {cause}" in res.stderr
    table = cli(*args, "--no-chart").stdout
    assert "ssmzoo robustness on imagenet (1 of 2 images evaluated)" in table and "1 of 2 items evaluated, 1 skipped" in table
    assert "images readable" not in table and "items readable" not in table
