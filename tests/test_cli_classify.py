"""`ssmzoo classify`, `models`, `info` and `convert` as a user runs them."""

import json
import subprocess
import sys

import torch
from PIL import Image

import ssmzoo  # noqa: F401
from ssmzoo.factory import load_model
from ssmzoo.images import eval_transform, load_image
from ssmzoo.manifest import load_manifest


def test_classify_prints_top5_imagenet_labels(cli, mini_files, example_images):
    manifest, checkpoint = mini_files
    res = cli("--manifest", manifest, "classify", example_images / "*.jpg", "--model", "groupmamba_mini",
              "--weights", checkpoint)
    assert res.code == 0, res.stderr
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        assert f"{name}.jpg" in res.stdout
    assert res.stdout.count("  1. ") == 4 and res.stdout.count("  5. ") == 4 and "  6. " not in res.stdout


def test_json_output_matches_the_model_run_by_hand(cli, mini_files, example_images):
    manifest, checkpoint = mini_files
    res = cli("--manifest", manifest, "classify", example_images, "--model", "groupmamba_mini",
              "--weights", checkpoint, "--json", "--top-k", "3", "--batch-size", "3")
    assert res.code == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["input"].rsplit("/", 1)[-1] for r in rows] == ["astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg"]

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
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: unknown model 'groupmamba_minu'; did you mean groupmamba_mini")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_models_lists_the_zoo(cli):
    res = cli("models", "--json")
    assert res.code == 0
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["groupmamba_tiny"]["top1"] == 83.3 and rows["groupmamba_tiny"]["weights"] == "hub"
    assert cli("models").stdout.count("groupmamba_") >= 3


def test_info_counts_parameters_of_the_built_model(cli):
    res = cli("info", "groupmamba_tiny", "--json")
    assert res.code == 0, res.stderr
    info = json.loads(res.stdout)
    assert abs(info["params_m (counted)"] - 23.0) < 0.5 and info["params_m (reported)"] == 23
    assert info["data config (resolved)"]["crop_pct"] == 0.875
    assert info["scan backend (cpu)"] == "torch"


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
