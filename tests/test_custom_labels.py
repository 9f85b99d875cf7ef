"""A model fine-tuned on its own classes: `labels:` names a labels file, and every command uses its names.

The fixture is what such a user has: a model folder holding a manifest, a labels file beside it
(named relative to the manifest) and a checkpoint with a 3-class head. Accuracy figures are checked
against predictions computed by running the model by hand, so the expected counts are not guesses.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

import ssmzoo  # noqa: F401
from ssmzoo.errors import LabelsFileError, ManifestError
from ssmzoo.factory import build_model, load_model
from ssmzoo.images import eval_transform, load_image
from ssmzoo.labels import class_ids, class_names, read_labels_file
from ssmzoo.manifest import load_manifest, parse_manifest

from conftest import EXAMPLES, ssmzoo_as_ordinary_user

ARCH = "{stem_hidden_dim: 16, embed_dims: [32, 64, 96, 128], mlp_ratios: [8, 8, 4, 4], depths: [1, 2, 2, 1]}"
NAMES = ["tabby cat", "espresso", "space rocket"]  # "tabby cat" is an ImageNet name too: a labels file wins


def entry_yaml(name: str, labels: str, extra: str = "") -> str:
    return f"""
  {name}:
    family: groupmamba
    architecture: groupmamba_tiny
    arch_args: {ARCH}
    task: image-classification
    labels: {labels}
    data: {{input_size: [3, 96, 96], crop_pct: 0.875, interpolation: bicubic}}{extra}
"""


def manifest(*entries: str) -> str:
    return "models:" + "".join(entries)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """runs/coffee3/: my.yaml (labels: classes.txt, relative), classes.txt, best.pth (3-class head)."""
    root = tmp_path_factory.mktemp("runs") / "coffee3"
    root.mkdir()
    (root / "classes.txt").write_text("\n".join(NAMES) + "\n\n")  # a blank line at the end is fine
    (root / "my.yaml").write_text(manifest(entry_yaml("coffee3", "classes.txt")))
    entry = load_manifest([root / "my.yaml"])["coffee3"]
    torch.manual_seed(3)
    model = build_model(entry)
    with torch.no_grad():  # decisive outputs, so the by-hand top-1 is stable
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    torch.save({"model": model.state_dict(), "epoch": 30}, root / "best.pth")
    return root


def hand_top1(model_dir: Path, paths: list[Path]) -> list[int]:
    entry = load_manifest([model_dir / "my.yaml"])["coffee3"]
    loaded = load_model(entry, weights=str(model_dir / "best.pth"), device="cpu")
    transform = eval_transform(entry.data)
    batch = torch.stack([transform(load_image(p, entry.data.input_size[-1])) for p in paths])
    with torch.no_grad():
        return loaded.model(batch).argmax(-1).tolist()


def run(cli, model_dir: Path, command: str, *args):
    return cli("--manifest", model_dir / "my.yaml", command, *args)


# ----------------------------------------------------------------------------- the manifest and the file


def test_a_relative_labels_file_is_found_beside_the_manifest_from_any_folder(model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the model folder
    entry = load_manifest([model_dir / "my.yaml"])["coffee3"]
    assert entry.labels == str(model_dir / "classes.txt") and entry.num_classes == 3
    assert class_names(entry.labels) == tuple(NAMES) and class_ids(entry.labels) == tuple(NAMES)
    assert build_model(entry).head.out_features == 3


def test_a_labels_path_may_start_with_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "three.txt").write_text("a\nb\nc\n")
    entry = parse_manifest(manifest(entry_yaml("m", "~/labels/three.txt")), "user.yaml", base_dir=Path("/nowhere"))
    assert entry["m"].labels == str(tmp_path / "labels" / "three.txt") and entry["m"].num_classes == 3


def test_text_files_strip_spaces_a_bom_and_crlf_line_ends(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_bytes("\ufeff  cat \r\nhot dog\r\n\r\n\r\n".encode())
    assert read_labels_file(path) == ("cat", "hot dog")


@pytest.mark.parametrize("content", [
    ["tabby cat", "espresso", "space rocket"],  # a list
    {"1": "espresso", "0": "tabby cat", "2": "space rocket"},  # id2label: the keys give the order
    {"architecture": "groupmamba_tiny", "num_classes": 3,  # a Hugging Face config.json
     "id2label": {"0": "tabby cat", "1": "espresso", "2": "space rocket"}, "label2id": {"tabby cat": 0}},
    {"architecture": "groupmamba_tiny", "label_names": ["tabby cat", "espresso", "space rocket"]},  # timm's
])
def test_json_labels_a_list_an_index_object_or_a_config(tmp_path, content):
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(content))
    assert read_labels_file(path) == tuple(NAMES)
    (tmp_path / "m.yaml").write_text(manifest(entry_yaml("m", "labels.json")))
    assert load_manifest([tmp_path / "m.yaml"])["m"].num_classes == 3


def test_num_classes_must_match_the_labels_file(tmp_path):
    (tmp_path / "classes.txt").write_text("a\nb\nc\n")
    text = manifest(entry_yaml("m", "classes.txt").replace("depths: [1, 2, 2, 1]",
                                                            "depths: [1, 2, 2, 1], num_classes: 10"))
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, "user.yaml", base_dir=tmp_path)
    assert str(info.value) == (f"user.yaml: model 'm', field 'arch_args': num_classes 10 does not match labels file "
                               f"{tmp_path / 'classes.txt'} (3 classes); the head's size comes from labels, so "
                               "leave it out")
    agreeing = parse_manifest(text.replace("num_classes: 10", "num_classes: 3"), "user.yaml", base_dir=tmp_path)
    assert build_model(agreeing["m"]).head.out_features == 3


BAD_FILES = [  # (file name, content or None for no file, the cause the message gives)
    ("gone.txt", None, "gone.txt: no such labels file"),
    ("empty.txt", "", "empty.txt: no class names (the labels file is empty)"),
    ("blanks.txt", "\n\n", "blanks.txt: no class names (the labels file is empty)"),
    ("gap.txt", "cat\ndog\n\nfish\n", "gap.txt:3: blank line between class names"),
    ("twice.txt", "cat\ndog\ncat\n", "twice.txt:3: class name 'cat' repeats line 1"),
    ("twice.json", '["cat", "dog", "dog"]', "twice.json: item 2: class name 'dog' repeats item 1"),
    ("gap.json", '{"0": "cat", "2": "dog"}', "gap.json: index 1 is missing (the indices must be 0..1, each once"),
    ("key.json", '{"0": "cat", "0": "dog"}', "key.json: key '0' appears twice"),
    ("number.json", '["cat", 7]', "number.json: item 1: expected a class name, got 7"),
    ("broken.json", '["cat", "dog"', "broken.json:1: not valid JSON"),
    ("other.json", '{"classes": ["cat"]}', "other.json: expected a list of class names or an object index -> name"),
    ("latin1.txt", "caf\xe9\n".encode("latin-1"), "latin1.txt: not a UTF-8 text file"),
    ("labels.csv", "cat\ndog\n", "would need to end in .txt (one class name per line) or .json (a list of names, "
                                 "or an object index -> name)"),
]


@pytest.mark.parametrize("name,content,cause", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_a_bad_labels_file_is_one_line_naming_the_model_the_file_and_the_cause(cli, tmp_path, name, content, cause):
    if content is not None:
        (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    (tmp_path / "my.yaml").write_text(manifest(entry_yaml("mine", name)))
    with pytest.raises(ManifestError) as info:
        load_manifest([tmp_path / "my.yaml"])
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'my.yaml'}: model 'mine', field 'labels': ")
    assert str(tmp_path / name) in message and cause in message, message
    res = cli("--manifest", tmp_path / "my.yaml", "models")  # what the inside of a file says: a failed run
    assert res.code == 1 and res.stdout == "" and res.stderr == f"error: {message}\n"


def test_a_folder_or_an_unreadable_file_says_so(tmp_path):
    (tmp_path / "dir.txt").mkdir()
    with pytest.raises(LabelsFileError, match=r"dir.txt: is a directory, not a labels file$"):
        read_labels_file(tmp_path / "dir.txt")
    locked = tmp_path / "locked.txt"
    locked.write_text("cat\n")
    (tmp_path / "my.yaml").write_text(manifest(entry_yaml("mine", "locked.txt")))
    locked.chmod(0)
    try:  # a user's process, which permission bits apply to (root's override dropped)
        res = ssmzoo_as_ordinary_user("--manifest", tmp_path / "my.yaml", "models", cwd=tmp_path)
    finally:
        locked.chmod(0o644)
    assert res.returncode == 1 and res.stdout == "", res
    assert res.stderr.strip().endswith(f"{locked}: cannot read the labels file (Permission denied)"), res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_a_name_that_is_no_label_set_and_no_file_lists_both(tmp_path):
    with pytest.raises(ManifestError) as info:
        parse_manifest(manifest(entry_yaml("m", "imagenet1k")), "user.yaml", base_dir=tmp_path)
    assert str(info.value) == (
        f"user.yaml: model 'm', field 'labels': 'imagenet1k' is not one of imagenet-1k, kinetics-400, ssv2, nor a "
        f"labels file: {tmp_path / 'imagenet1k'} would need to end in .txt (one class name per line) or .json (a "
        "list of names, or an object index -> name)")


# ----------------------------------------------------------------------------- classify, info, models


def test_classify_prints_the_files_class_names(cli, model_dir, example_images):
    res = run(cli, model_dir, "classify", example_images, "--model", "coffee3", "--weights", model_dir / "best.pth")
    assert res.code == 0, res.stderr
    assert "--top-k 5 is more than coffee3's 3 classes; showing them all" in res.stderr
    blocks = res.stdout.strip().split("\n" + str(example_images))
    assert len(blocks) == 4
    for block in blocks:  # each image: all three names once, no synset after them
        lines = block.strip().splitlines()[1:]
        assert sorted(line.split("%  ")[1] for line in lines) == sorted(NAMES), block
    assert "(n0" not in res.stdout


def test_classify_json_gives_index_name_and_probability_as_the_model_does(cli, model_dir):
    image = EXAMPLES / "coffee.jpg"
    res = run(cli, model_dir, "classify", image, "--model", "coffee3", "--weights", model_dir / "best.pth",
              "--json", "--top-k", "2")
    assert res.code == 0, res.stderr
    row = json.loads(res.stdout)
    entry = load_manifest([model_dir / "my.yaml"])["coffee3"]
    loaded = load_model(entry, weights=str(model_dir / "best.pth"), device="cpu")
    with torch.no_grad():
        probs = loaded.model(eval_transform(entry.data)(load_image(image)).unsqueeze(0)).softmax(-1)[0]
    values, indices = probs.topk(2)
    assert [t["index"] for t in row["top"]] == indices.tolist()
    assert [t["label"] for t in row["top"]] == [NAMES[i] for i in indices.tolist()]
    assert [t["class_id"] for t in row["top"]] == [t["label"] for t in row["top"]]
    assert [t["probability"] for t in row["top"]] == [round(v, 6) for v in values.tolist()]


def test_info_and_models_show_the_labels_file_and_its_class_count(cli, model_dir):
    res = run(cli, model_dir, "info", "coffee3", "--json")
    assert res.code == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["labels"] == str(model_dir / "classes.txt") and info["num_classes"] == 3
    table = run(cli, model_dir, "info", "coffee3").stdout
    assert f"│ labels                 │ {model_dir / 'classes.txt'}" in table
    assert "│ classes                │ 3: tabby cat, espresso, space rocket" in table
    rows = {r["name"]: r for r in json.loads(run(cli, model_dir, "models", "--json").stdout)}
    assert rows["coffee3"]["num_classes"] == 3 and rows["groupmamba_tiny"]["num_classes"] == 1000
    assert rows["coffee3"]["labels"] == str(model_dir / "classes.txt")
    line = next(l for l in run(cli, model_dir, "models", "coffee3").stdout.splitlines() if "coffee3" in l)
    assert line.split("│")[4].strip() == "3"  # the classes column


def test_a_checkpoint_whose_head_has_another_size_says_so_in_classes(cli, model_dir, tmp_path):
    state = torch.load(model_dir / "best.pth")["model"]
    for key in ("head.weight", "head.bias", "dist_head.weight", "dist_head.bias"):
        state[key] = torch.cat([state[key], state[key][:1]])  # a 4th class the labels file does not name
    torch.save(state, tmp_path / "four.pth")
    res = run(cli, model_dir, "classify", EXAMPLES / "coffee.jpg", "--model", "coffee3",
              "--weights", tmp_path / "four.pth")
    assert res.code == 1 and res.stdout == ""
    assert res.stderr.strip().splitlines()[-1].endswith(
        f"the checkpoint's head (head) has 4 outputs, but coffee3's labels file {model_dir / 'classes.txt'} "
        "lists 3 classes")


# ----------------------------------------------------------------------------- eval and robustness on class folders


@pytest.fixture()
def coffee_folders(model_dir, tmp_path):
    """DIR/<class name>/ for the README photos plus two copies: images 0, 2, 4 under the class the model
    predicts for them, images 1, 3, 5 under the next class; spelled as a user would (case, '_')."""
    staging = tmp_path / "staging"
    staging.mkdir()
    paths = [Path(shutil.copy(p, staging)) for p in sorted(EXAMPLES.glob("*.jpg"))]
    for src, name in ((paths[0], "flipped.png"), (paths[1], "small.jpg")):
        from PIL import Image

        img = Image.open(src).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        img.resize((img.width // 3, img.height // 2)).save(staging / name)
        paths.append(staging / name)
    predicted = hand_top1(model_dir, paths)
    folder_of = {"tabby cat": "Tabby_Cat", "espresso": "espresso", "space rocket": "space-rocket"}
    root = tmp_path / "val"
    expected = {}
    for i, (path, top1) in enumerate(zip(paths, predicted)):
        label = top1 if i % 2 == 0 else (top1 + 1) % 3
        dest = root / folder_of[NAMES[label]] / path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest)
        expected[str(dest)] = (label, top1)
    return root, expected


def test_eval_on_class_folders_named_as_the_labels(cli, model_dir, coffee_folders, tmp_path):
    root, expected = coffee_folders
    per_sample = tmp_path / "ps.jsonl"
    res = run(cli, model_dir, "eval", "--dataset", "imagefolder", "--data-dir", root, "--model", "coffee3",
              "--weights", model_dir / "best.pth", "--device", "cpu", "--workers", "0", "--batch-size", "4",
              "--per-sample", per_sample, "--json")
    assert res.code == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["evaluated"] == 6 and summary["label_set"] == str(model_dir / "classes.txt")
    assert summary["top1"] == pytest.approx(50.0) and summary["top5"] == 100.0
    assert "top-5 takes in all 3 classes of coffee3: 100% by definition" in summary["notes"]
    rows = {r["path"]: r for r in map(json.loads, per_sample.read_text().splitlines())}
    assert {p: (r["label"], r["prediction"]) for p, r in rows.items()} == expected
    for r in rows.values():
        assert r["label_name"] == NAMES[r["label"]] and r["prediction_name"] == NAMES[r["prediction"]]
        assert r["correct"] == (r["label"] == r["prediction"])


def test_folders_that_are_no_class_name_are_an_error_until_mapped(cli, model_dir, coffee_folders, tmp_path):
    root, expected = coffee_folders
    for odd in ("latte", "misc"):
        (root / odd).mkdir()
        shutil.copy(next(iter(expected)), root / odd / "x.jpg")
    args = ("--dataset", "imagefolder", "--data-dir", root, "--model", "coffee3", "--weights", model_dir / "best.pth",
            "--device", "cpu", "--workers", "0")
    res = run(cli, model_dir, "eval", *args)
    assert res.code == 1 and res.stdout == ""
    folders = len([p for p in root.iterdir() if p.is_dir()])
    assert res.stderr.strip().splitlines()[-1] == (
        f"error: {root}: 2 of {folders} class folders match no class of coffee3 (the names in "
        f"{model_dir / 'classes.txt'}): 'latte', 'misc'; rename them or pass --class-map FILE ('folder label' lines, label = class index, id or name)")
    class_map = tmp_path / "map.txt"
    class_map.write_text("latte espresso\nmisc 2\n")  # a class name, or an index
    res = run(cli, model_dir, "eval", *args, "--class-map", class_map, "--per-sample", tmp_path / "ps.jsonl", "--json")
    assert res.code == 0, res.stderr
    labels = {Path(r["path"]).parent.name: r["label"]
              for r in map(json.loads, (tmp_path / "ps.jsonl").read_text().splitlines())}
    assert labels["latte"] == 1 and labels["misc"] == 2 and json.loads(res.stdout)["evaluated"] == 8


def test_dataset_imagenet_points_a_custom_model_to_imagefolder(cli, model_dir, coffee_folders):
    root, _ = coffee_folders
    res = run(cli, model_dir, "eval", "--dataset", "imagenet", "--data-dir", root, "--model", "coffee3",
              "--weights", model_dir / "best.pth", "--device", "cpu")
    assert res.code == 2
    assert res.stderr.strip() == (
        f"error: --dataset imagenet needs an ImageNet-1k model; this one predicts the 3 classes of "
        f"{model_dir / 'classes.txt'}: use --dataset imagefolder, which matches class folders to those names "
        "(ImageNet synset folders through their names) (see `ssmzoo eval --help`)")


def test_imagenette_style_synset_folders_find_their_class_by_imagenet_name(tmp_path):
    """n01440764 is ImageNet's 'tench, Tinca tinca': a labels file naming 'tench' claims that folder;
    a synset none of whose names is a class stays unmatched."""
    from ssmzoo.datasets import DatasetError, build_dataset

    (tmp_path / "classes.txt").write_text("tench\nEnglish springer\nparachute\n")
    (tmp_path / "m.yaml").write_text(manifest(entry_yaml("nette", "classes.txt")))
    entry = load_manifest([tmp_path / "m.yaml"])["nette"]
    root = tmp_path / "imagenette" / "val"
    for folder in ("n01440764", "n02102040", "parachute"):
        (root / folder).mkdir(parents=True)
        shutil.copy(EXAMPLES / "coffee.jpg", root / folder / "a.jpg")
    data = build_dataset("imagefolder", entry, root)
    assert {Path(s.path).parent.name: s.label for s in data.samples} == {"n01440764": 0, "n02102040": 1, "parachute": 2}
    assert "2 ImageNet synset folders matched to class names through their ImageNet names: n01440764 -> tench, " \
           "n02102040 -> English springer" in data.notes
    (root / "n03000684").mkdir()  # chain saw: not a class here
    shutil.copy(EXAMPLES / "coffee.jpg", root / "n03000684" / "a.jpg")
    with pytest.raises(DatasetError, match="1 of 4 class folders matches no class of nette .*'n03000684'; rename it or"):
        build_dataset("imagefolder", entry, root)
    with pytest.raises(DatasetError, match=f"'val' holds class folders: pass --data-dir {root}$"):
        build_dataset("imagefolder", entry, root.parent)


def digits_model(tmp_path: Path, names: tuple[str, ...], folders: tuple[str, ...]):
    """A model whose class names are numbers (digits.txt: ``names``) and DIR/<folder>/a.jpg for each folder."""
    (tmp_path / "digits.txt").write_text("\n".join(names) + "\n")
    (tmp_path / "m.yaml").write_text(manifest(entry_yaml("digits", "digits.txt")))
    root = tmp_path / "data"
    for folder in folders:
        (root / folder).mkdir(parents=True)
        shutil.copy(EXAMPLES / "coffee.jpg", root / folder / "a.jpg")
    return load_manifest([tmp_path / "m.yaml"])["digits"], root


def test_class_names_that_are_numbers_match_folders_by_name_and_refuse_an_ambiguous_map(tmp_path):
    """A labels file of digits (house numbers 1..3): folder '1' is the class named '1' (index 0); in a
    --class-map, '2' could mean index 2 or the class named '2', so it is refused, and a name that is no
    index ('3') is fine."""
    from ssmzoo.datasets import DatasetError, build_dataset

    entry, root = digits_model(tmp_path, ("1", "2", "3"), ("1", "2", "three"))
    class_map = tmp_path / "map.txt"
    class_map.write_text("three 3\n")
    data = build_dataset("imagefolder", entry, root, class_map=class_map)
    assert {Path(s.path).parent.name: s.label for s in data.samples} == {"1": 0, "2": 1, "three": 2}
    class_map.write_text("three 2\n")
    with pytest.raises(DatasetError, match="'2' is ambiguous: the index of class '3' and the name of class 1; "
                                           "write index:2 for the first or name:2 for the second$"):
        build_dataset("imagefolder", entry, root, class_map=class_map)


def test_index_and_name_prefixes_say_which_a_number_means(tmp_path):
    """Class names 1, 0, 2: '0' in a --class-map is index 0 (class '1') or the class named '0' (index 1).
    It used to be refused with "write the class name instead", which is the same '0'; index:0 and name:0
    say which, in --class-map and in a video list alike."""
    from ssmzoo.datasets import DatasetError, build_dataset, video_list_dataset

    entry, root = digits_model(tmp_path, ("1", "0", "2"), ("zero", "first", "two"))
    class_map = tmp_path / "map.txt"
    class_map.write_text("zero name:0\nfirst index:0\ntwo name: 2\n")
    data = build_dataset("imagefolder", entry, root, class_map=class_map)
    assert {Path(s.path).parent.name: s.label for s in data.samples} == {"zero": 1, "first": 0, "two": 2}
    for label, why in (("0", "write index:0 for the first or name:0 for the second"),
                       ("index:3", "index 3 is out of range (0..2)"),
                       ("index:zero", "'index:zero': expected index:N, N a class index (0..2)"),
                       ("name:3", "'3' is not a class name in")):
        class_map.write_text(f"zero {label}\nfirst index:0\ntwo name:2\n")
        with pytest.raises(DatasetError, match=f"folder 'zero': .*{re.escape(why)}"):
            build_dataset("imagefolder", entry, root, class_map=class_map)

    (tmp_path / "a.mp4").write_bytes(b"not decoded here")
    (tmp_path / "b.mp4").write_bytes(b"not decoded here")
    lst = tmp_path / "list.txt"
    lst.write_text("a.mp4 name:0\nb.mp4 index:0\n")
    assert [s.label for s in video_list_dataset("videolist", lst, tmp_path, str(tmp_path / "digits.txt")).samples] \
        == [1, 0]


def test_robustness_compares_two_models_with_copies_of_one_labels_file(cli, model_dir, coffee_folders, tmp_path):
    """Two runs, each with its own copy of classes.txt: the same classes, so they are compared side by
    side; clean top-1 is eval's, and CE against AlexNet (ImageNet's 1000 classes) is not given."""
    root, _ = coffee_folders
    other = tmp_path / "run2"
    other.mkdir()
    shutil.copy(model_dir / "classes.txt", other / "classes.txt")
    (other / "run2.yaml").write_text(manifest(entry_yaml("coffee3_run2", "classes.txt")))
    res = cli("--manifest", model_dir / "my.yaml", "--manifest", other / "run2.yaml", "robustness",
              "--dataset", "imagefolder", "--data-dir", root, "--model", "coffee3", "--model", "coffee3_run2",
              "--weights", model_dir / "best.pth", "--weights", model_dir / "best.pth", "--device", "cpu",
              "--workers", "0", "--corruption", "contrast", "--severity", "1..5", "--json")
    assert res.code == 0, res.stderr
    report = json.loads(res.stdout)
    clean = [row for row in report["results"] if row["kind"] == "clean"]
    assert [row["top1"] for row in clean] == [pytest.approx(50.0)] * 2
    summaries = [s for s in report["corruption_errors"] if s["corruption"] == "contrast"]
    assert len(summaries) == 2 and all(s["ce"] is None for s in summaries)
    assert summaries[0]["why_no_ce"] == ("AlexNet's errors are on ImageNet-1k's classes, not on the 3 classes of "
                                         f"{model_dir / 'classes.txt'}")

    (other / "classes.txt").write_text("tabby cat\nlatte\nspace rocket\n")  # other classes: not comparable
    res = cli("--manifest", model_dir / "my.yaml", "--manifest", other / "run2.yaml", "robustness",
              "--dataset", "imagefolder", "--data-dir", root, "--model", "coffee3", "--model", "coffee3_run2",
              "--jpeg-quality", "50")
    assert res.code == 2 and "must predict the same labels" in res.stderr
    assert f"coffee3_run2 (the 3 classes of {other / 'classes.txt'})" in res.stderr


def test_robustness_of_a_model_with_its_own_classes_leaves_the_ce_columns_out(cli, model_dir, coffee_folders):
    """No CE/mCE against AlexNet for N classes of one's own: the corruption table has no AlexNet or CE
    column and one line says why, naming the corruptions in table order (it was one line per corruption,
    alphabetical, under a table of blank CE cells)."""
    root, _ = coffee_folders
    res = cli("--manifest", model_dir / "my.yaml", "robustness", "--dataset", "imagefolder", "--data-dir", root,
              "--model", "coffee3", "--weights", model_dir / "best.pth", "--device", "cpu", "--workers", "0",
              "--corruption", "pixelate,contrast", "--severity", "1,5", "--no-chart")
    assert res.code == 0, res.stderr
    text = res.stdout
    assert "ImageNet-C corruptions: mean error over severities 1,5" in text
    assert "AlexNet\n" not in text and "│ AlexNet" not in text and "┃ AlexNet" not in text and " CE " not in text
    assert "mCE │" not in text and "│ mCE" not in text
    why = [line for line in text.splitlines() if line.startswith("no CE")]
    assert why == [f"no CE/mCE for pixelate, contrast: AlexNet's errors are on ImageNet-1k's classes, not on the 3 "
                   f"classes of {model_dir / 'classes.txt'}"]


# ----------------------------------------------------------------------------- a video model with its own classes


VIDEO_ENTRY = """
  clips3:
    family: videomamba
    architecture: videomamba_tiny_video
    arch_args: {img_size: 64, embed_dim: 64, depth: 2, num_frames: 4}
    task: video-classification
    labels: actions.json
    data: {input_size: [3, 64, 64], crop_pct: 1.0, interpolation: bilinear}
    video: {num_frames: 4, sampling: sparse, clips: 2, crops: 3, short_side: 64, crop_size: 64}
"""
ACTIONS = ["pour coffee", "launch rocket", "pet cat"]


def test_a_video_model_with_its_own_classes_classifies_and_evaluates_on_a_list(cli, tmp_path):
    """`--dataset videolist`: a Kinetics-style 'path label' list read against the model's own classes
    (label = name or index); `--dataset kinetics400` refuses it and points there."""
    import timm
    from video_fixtures import write_mp4

    from ssmzoo.video import VideoProtocol, load_video_views

    (tmp_path / "actions.json").write_text(json.dumps({str(i): name for i, name in enumerate(ACTIONS)}))
    (tmp_path / "clips.yaml").write_text("models:" + VIDEO_ENTRY)
    torch.manual_seed(5)
    model = timm.create_model("videomamba_tiny_video", img_size=64, embed_dim=64, depth=2, num_frames=4, num_classes=3)
    with torch.no_grad():
        model.head.weight.mul_(20)  # decisive scores
    torch.save(model.state_dict(), tmp_path / "clips3.pth")
    videos = [write_mp4(tmp_path / f"clip{k}.mp4", 10 + 4 * k, (64 + 16 * k, 64)) for k in range(4)]

    entry = load_manifest([tmp_path / "clips.yaml"])["clips3"]
    protocol = VideoProtocol(num_frames=4, sampling="sparse", clips=1, crops=1, short_side=64, crop_size=64)
    with torch.no_grad():
        top1 = [int(model.eval()(load_video_views(v, protocol, entry.data.mean, entry.data.std).tensor).argmax(-1)[0])
                for v in videos]
    labels = [top1[0], (top1[1] + 1) % 3, top1[2], (top1[3] + 2) % 3]  # 2 of 4 right
    lst = tmp_path / "val.txt"
    lst.write_text("".join(f"{v.name} {ACTIONS[lab] if k % 2 else lab}\n"  # names and indices
                           for k, (v, lab) in enumerate(zip(videos, labels))))
    common = ("--model", "clips3", "--weights", tmp_path / "clips3.pth", "--views", "1x1")

    res = cli("--manifest", tmp_path / "clips.yaml", "classify", videos[0], *common, "--top-k", "1")
    assert res.code == 0, res.stderr
    assert res.stdout.splitlines()[1].endswith(f"%  {ACTIONS[top1[0]]}")

    res = cli("--manifest", tmp_path / "clips.yaml", "eval", "--dataset", "videolist", "--list", lst, *common,
              "--workers", "0", "--per-sample", tmp_path / "ps.jsonl", "--json")
    assert res.code == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["evaluated"] == 4 and summary["top1"] == pytest.approx(50.0)
    rows = [json.loads(line) for line in (tmp_path / "ps.jsonl").read_text().splitlines()]
    assert [r["label"] for r in rows] == labels and [r["prediction"] for r in rows] == top1
    assert [r["label_name"] for r in rows] == [ACTIONS[lab] for lab in labels]

    res = cli("--manifest", tmp_path / "clips.yaml", "eval", "--dataset", "kinetics400", "--list", lst, *common)
    assert res.code == 2 and res.stderr.strip() == (
        f"error: --dataset kinetics400 needs a kinetics-400 model; this one predicts the 3 classes of "
        f"{tmp_path / 'actions.json'}: use --dataset videolist, whose labels are its class names or indices "
        "(see `ssmzoo eval --help`)")
