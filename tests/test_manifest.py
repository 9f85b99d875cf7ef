"""The manifest is validated on load, and users can add their own entries."""

import filecmp
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from ssmzoo.errors import ManifestError
from ssmzoo.manifest import get_entry, load_manifest, parse_manifest

ROOT = Path(__file__).resolve().parents[1]

GOOD = """
models:
  my_model:
    family: groupmamba
    architecture: groupmamba_tiny
    task: image-classification
    labels: imagenet-1k
    data: {input_size: [3, 160, 192], crop_pct: 0.9}
    weights: {repo_id: me/my-model, filename: m.safetensors}
"""


def test_packaged_manifest_loads_and_matches_the_root_file():
    entries = load_manifest()
    assert {"groupmamba_tiny", "groupmamba_small", "groupmamba_base"} <= set(entries)
    tiny = entries["groupmamba_tiny"]
    assert tiny.weights.repo_id == "Abdelrahman-shaker/GroupMamba-Tiny"
    assert tiny.reported.top1 == 83.3 and tiny.reported.params_m == 23
    assert tiny.data.crop_pct == 0.875 and tiny.data.interpolation == "bicubic"
    assert filecmp.cmp(ROOT / "weights_manifest.yaml", ROOT / "ssmzoo" / "weights_manifest.yaml", shallow=False)


def test_every_reported_figure_has_a_source():
    for entry in load_manifest().values():
        if entry.reported.top1 is not None:
            assert entry.reported.source, entry.name


@pytest.mark.parametrize("edit,field", [
    (("task: image-classification", "task: segmentation"), "task"),
    (("labels: imagenet-1k", "labels: coco"), "labels"),
    (("input_size: [3, 160, 192]", "input_size: [160, 192]"), "data.input_size"),
    (("crop_pct: 0.9", "crop_pct: 1.5"), "data.crop_pct"),
    (("repo_id: me/my-model", "repo_id: my-model"), "weights.repo_id"),
    (("filename: m.safetensors", "sha256: abc"), "weights.sha256"),
    (("    family: groupmamba\n", ""), "family"),
    (("family: groupmamba", "family: groupmamba\n    colour: blue"), "colour"),
    (("family: groupmamba", "family: resnet"), "family"),  # a family ssmzoo does not build
    # a 10-class head named with ImageNet's 1000 labels would print wrong names without a word
    (("architecture: groupmamba_tiny", "architecture: groupmamba_tiny\n    arch_args: {num_classes: 10}"),
     "arch_args"),
])
def test_malformed_entry_names_model_and_field(edit, field):
    text = GOOD.replace(*edit)
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, "user.yaml")
    message = str(info.value)
    assert "my_model" in message and f"'{field}'" in message and "user.yaml" in message


def test_a_family_that_contradicts_the_architecture_is_refused(cli, tmp_path):
    # family decides `ssmzoo models`' filter and benchmark's peers: a videomamba entry that builds a
    # GroupMamba was listed and compared as a VideoMamba without a word
    mine = tmp_path / "mine.yaml"
    mine.write_text(GOOD.replace("family: groupmamba", "family: videomamba"))
    message = (f"{mine}: model 'my_model', field 'family': 'videomamba' contradicts architecture 'groupmamba_tiny', "
               "a groupmamba architecture; set family: groupmamba, or pick a videomamba_* architecture")
    with pytest.raises(ManifestError) as info:
        parse_manifest(mine.read_text(), str(mine))
    assert str(info.value) == message
    res = cli("--manifest", mine, "models")  # as any malformed entry: exit code 1, one line
    assert (res.code, res.stdout, res.stderr) == (1, "", f"error: {message}\n")
    assert parse_manifest(GOOD.replace("groupmamba_tiny", "resnet50"), "x.yaml")  # not ssmzoo's: timm decides


VIDEO = """
models:
  my_clips:
    family: videomamba
    architecture: videomamba_tiny
    task: video-classification
    labels: kinetics-400
    video: {num_frames: 8}
"""


def test_a_task_that_contradicts_what_the_architecture_builds_is_refused(cli, tmp_path):
    # an image architecture under a video task took (B, C, T, H, W) clips and failed on every input
    # with a shape error; the video architecture under an image task the other way round
    mine = tmp_path / "mine.yaml"
    mine.write_text(VIDEO)
    message = (f"{mine}: model 'my_clips', field 'task': 'video-classification' contradicts architecture "
               "'videomamba_tiny', which builds an image model; set task: image-classification, or pick a video "
               "architecture")
    for command in (("models",), ("models", "my_clips"), ("info", "my_clips")):  # on load, whatever the command
        res = cli("--manifest", mine, *command)
        assert (res.code, res.stdout, res.stderr) == (1, "", f"error: {message}\n"), command
    as_image = VIDEO.replace("videomamba_tiny\n", "videomamba_tiny_video\n").replace(
        "task: video-classification", "task: image-classification").replace("labels: kinetics-400", "labels: imagenet-1k")
    with pytest.raises(ManifestError, match="'image-classification' contradicts architecture 'videomamba_tiny_video', "
                                            "which builds a video model; set task: video-classification"):
        parse_manifest(as_image.replace("    video: {num_frames: 8}\n", ""), "x.yaml")
    # arch_args can make an image architecture a video one: then the task agrees
    from ssmzoo.factory import build_model

    with_frames = VIDEO.replace("task: video", "arch_args: {num_frames: 8}\n    task: video")
    assert build_model(parse_manifest(with_frames, "x.yaml")["my_clips"]).is_video


def test_a_video_task_on_an_image_architecture_is_refused_before_its_video_block_is_asked_for(cli, tmp_path):
    # it asked for a `video:` block first; once one was added, `models` passed and `info` failed on the task
    mine = tmp_path / "mine.yaml"
    without_block = VIDEO.replace("videomamba", "groupmamba").replace("    video: {num_frames: 8}\n", "")
    for text in (without_block, VIDEO.replace("videomamba", "groupmamba")):
        mine.write_text(text)
        res = cli("--manifest", mine, "models")
        assert (res.code, res.stdout) == (1, "") and res.stderr == (
            f"error: {mine}: model 'my_clips', field 'task': 'video-classification' contradicts architecture "
            "'groupmamba_tiny', which builds an image model; set task: image-classification, or pick a video "
            "architecture\n")


def test_an_entry_made_in_code_with_a_contradicting_task_still_fails_when_built():
    import dataclasses

    from ssmzoo.factory import build_model

    entry = parse_manifest(GOOD, "user.yaml")["my_model"]
    with pytest.raises(ManifestError, match="^user.yaml: model 'my_model', field 'task': 'video-classification' "
                                            "contradicts architecture 'groupmamba_tiny', which builds an image model"):
        build_model(dataclasses.replace(entry, task="video-classification"))


@pytest.mark.parametrize("num_frames", [None, 4])
def test_what_an_architecture_builds_is_known_without_building_it(num_frames):
    """The manifest checks a task against ``builds_video``, read from the name and arch_args: it must say
    what the built model's ``is_video`` says, for every architecture ssmzoo registers."""
    import timm
    import torch

    from ssmzoo.manifest import FAMILIES
    from ssmzoo.models import VIDEO_FAMILIES, builds_video

    arch_args = {} if num_frames is None else {"num_frames": num_frames}
    for name in timm.list_models([f"{family}_*" for family in VIDEO_FAMILIES]):
        with torch.device("meta"):  # (shapes only: the large ones would take seconds and gigabytes)
            model = timm.create_model(name, depth=2, **arch_args)
        assert builds_video(name, arch_args) == model.is_video, name
    for name in timm.list_models([f"{family}_*" for family in FAMILIES if family not in VIDEO_FAMILIES]) + ["resnet50"]:
        assert not builds_video(name, {}), name


def test_every_registered_architecture_is_named_after_its_family():
    """The family check reads an architecture's family from its name: it must be the module that builds it."""
    import timm

    import ssmzoo.models  # noqa: F401  (registers the architectures)
    from ssmzoo.manifest import FAMILIES, architecture_family

    for family in FAMILIES:
        names = timm.list_models(module=family)
        assert names and all(architecture_family(name) == family for name in names), (family, names)


def test_not_yaml_or_wrong_shape_is_reported():
    with pytest.raises(ManifestError, match="not valid YAML"):
        parse_manifest("models: [unclosed", "x.yaml")
    with pytest.raises(ManifestError, match="'models:'"):
        parse_manifest("- a\n- b\n", "x.yaml")


def test_user_manifest_adds_models_by_argument_and_environment(tmp_path, monkeypatch):
    path = tmp_path / "mine.yaml"
    path.write_text(GOOD)
    assert load_manifest([path])["my_model"].data.input_size == (3, 160, 192)
    monkeypatch.setenv("SSMZOO_MANIFEST", str(path))
    entries = load_manifest()
    assert "my_model" in entries and "groupmamba_tiny" in entries


@pytest.mark.parametrize("as_arg", [Path, str, lambda p: [p], lambda p: (str(p),)],
                         ids=["Path", "str", "list", "tuple"])
def test_extra_manifests_are_one_path_or_a_collection_of_them(tmp_path, as_arg):
    """A single path is one file, not a sequence of one-character paths."""
    path = tmp_path / "mine.yaml"
    path.write_text(GOOD)
    assert "my_model" in load_manifest(as_arg(path))


def test_unknown_model_suggests_close_names():
    with pytest.raises(ManifestError, match="did you mean groupmamba_tiny"):
        get_entry(load_manifest(), "groupmamba_tiyn")


def test_an_unregistered_architecture_is_refused_on_load_by_every_command(cli, tmp_path):
    # it was listed by `models` (exit 0) and only `info` failed, with a message of another shape
    mine = tmp_path / "user.yaml"
    mine.write_text(GOOD.replace("architecture: groupmamba_tiny", "architecture: groupmamba_tiy"))
    for command in (("models",), ("models", "my_model"), ("info", "my_model")):
        res = cli("--manifest", mine, *command)
        [line] = res.stderr.splitlines()
        assert (res.code, res.stdout) == (1, ""), command
        assert line.startswith(f"error: {mine}: model 'my_model', field 'architecture': 'groupmamba_tiy' is not a "
                               "registered architecture; did you mean groupmamba_tiny"), line
        assert "ssmzoo's are groupmamba_base" in line and "videomamba_small_video" in line, line
    with pytest.raises(ManifestError, match="field 'architecture': 'nosuch_arch' is not a registered architecture"):
        parse_manifest(GOOD.replace("groupmamba_tiny", "nosuch_arch"), "user.yaml")
    # timm's own architectures, with or without a pretrained tag, are registered too
    assert parse_manifest(GOOD.replace("groupmamba_tiny", "resnet50.a1_in1k"), "user.yaml")


def test_a_model_name_in_another_case_finds_the_model():
    entries = load_manifest()
    assert get_entry(entries, "GroupMamba_Tiny") is entries["groupmamba_tiny"]
    with pytest.raises(ManifestError, match="did you mean groupmamba_tiny"):
        get_entry(entries, "groupmamba_tiy")


@pytest.mark.parametrize("architecture,arch_args,cause", [
    # GroupMamba checks its stage lists; a string has no entry per stage
    ("groupmamba_tiny", '{depths: "abc"}', "(embed_dims, mlp_ratios and depths must have one entry per stage)"),
    # a negative width reaches torch, which refuses to make the tensor
    ("videomamba_tiny", "{embed_dim: -5}", "(Trying to create tensor with negative dimension -5"),
])
def test_arch_args_the_architecture_cannot_build_are_a_manifest_error(cli, tmp_path, mini_files, example_images,
                                                                     architecture, arch_args, cause):
    # they crashed with the constructor's traceback, in `info` and in every command that builds the model
    manifest, checkpoint = mini_files
    mine = tmp_path / "aa.yaml"
    mine.write_text(GOOD.replace("groupmamba_tiny", f"{architecture}\n    arch_args: {arch_args}")
                    .replace("family: groupmamba", f"family: {architecture.split('_')[0]}"))
    head = f"error: {mine}: model 'my_model', field 'arch_args': {architecture} cannot be built with "
    res = cli("--manifest", mine, "info", "my_model")
    [line] = res.stderr.splitlines()
    assert (res.code, res.stdout) == (1, "") and line.startswith(head) and cause in line
    res = cli("--manifest", mine, "classify", example_images / "coffee.jpg", "--model", "my_model",
              "--weights", checkpoint)
    [line] = res.stderr.splitlines()[-1:]
    assert res.code == 1 and line.startswith(head) and cause in line and "Traceback" not in res.stderr


def test_a_build_failure_without_arch_args_is_not_blamed_on_the_entry(monkeypatch):
    # the architecture's own defaults failing is ssmzoo's bug: it keeps its exception and traceback
    import timm

    from ssmzoo.factory import build_model

    def broken(*args, **kwargs):
        raise ValueError("a bug inside the model code")

    monkeypatch.setattr(timm, "create_model", broken)
    with pytest.raises(ValueError, match="a bug inside the model code"):
        build_model(parse_manifest(GOOD, "user.yaml")["my_model"])


def test_a_build_failure_keeps_the_constructors_error_and_blames_what_set_the_value():
    # the one-line error is the CLI's; a library user still has the constructor's own exception as the cause
    from ssmzoo.errors import SsmzooError
    from ssmzoo.factory import Override, build_model

    entry = parse_manifest(SMALL_VIDEOMAMBA, "aa.yaml")["my"]
    with pytest.raises(SsmzooError) as info:
        build_model(entry, {"img_size": Override("--img-size", 8)})
    assert not isinstance(info.value, ManifestError)
    assert str(info.value) == ("my: videomamba_tiny cannot be built with --img-size 8 "
                               "(img_size 8 is smaller than one patch of 16 pixels)")
    assert isinstance(info.value.__cause__, ValueError) and "img_size 8" in str(info.value.__cause__)
    # an override that keeps the manifest's value is none: the manifest's entry and field are named
    bad = parse_manifest(SMALL_VIDEOMAMBA.replace("img_size: 100", "img_size: 100, embed_dim: -5"), "aa.yaml")["my"]
    with pytest.raises(ManifestError) as info:
        build_model(bad, {"img_size": Override("--img-size", 100)})
    assert str(info.value).startswith("aa.yaml: model 'my', field 'arch_args': videomamba_tiny cannot be built "
                                      "with {'img_size': 100, 'embed_dim': -5} (Trying to create tensor")
    assert isinstance(info.value.__cause__, RuntimeError)
    # a cause naming neither the options' arguments nor the manifest's says both were in play
    with pytest.raises(SsmzooError) as info:
        build_model(bad, {"img_size": Override("--img-size", 64)})
    assert not isinstance(info.value, ManifestError)
    assert str(info.value).startswith("aa.yaml: model 'my': videomamba_tiny cannot be built with manifest arch_args "
                                      "{'embed_dim': -5} and --img-size 64 (Trying to create tensor")


SMALL_VIDEOMAMBA = """
models:
  my:
    family: videomamba
    architecture: videomamba_tiny
    arch_args: {img_size: 100}
    task: image-classification
    labels: imagenet-1k
"""


def test_img_size_in_arch_args_sets_the_input_size_eval_uses():
    # it used to keep the default 224: eval resized to 256 and fed 224 px crops to a model built for 100 px
    from PIL import Image

    from ssmzoo.images import eval_transform

    entry = parse_manifest(SMALL_VIDEOMAMBA, "aa.yaml")["my"]
    assert entry.data.input_size == (3, 100, 100)
    photo = Image.new("RGB", (300, 200))
    assert eval_transform(entry.data)(photo).shape == (3, 100, 100)  # resize 114 (100 / crop_pct 0.875), crop 100
    wide = parse_manifest(SMALL_VIDEOMAMBA.replace("img_size: 100", "img_size: [96, 128]"), "aa.yaml")["my"]
    assert wide.data.input_size == (3, 96, 128)
    # a video model's protocol sizes follow too
    clips = parse_manifest(SMALL_VIDEOMAMBA.replace("videomamba_tiny", "videomamba_tiny_video")
                           .replace("image-classification", "video-classification")
                           .replace("imagenet-1k", "kinetics-400") + "    video: {num_frames: 8}\n", "aa.yaml")["my"]
    assert clips.data.input_size == (3, 100, 100) and clips.video.crop_size == clips.video.short_side == 100


def test_an_input_size_that_contradicts_img_size_is_refused():
    text = SMALL_VIDEOMAMBA.replace("    labels: imagenet-1k\n",
                                    "    labels: imagenet-1k\n    data: {input_size: [3, 224, 224]}\n")
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, "aa.yaml")
    assert str(info.value) == ("aa.yaml: model 'my', field 'data.input_size': [3, 224, 224] contradicts arch_args "
                               "img_size 100: the model is built for 100x100 inputs; make them agree, or leave "
                               "input_size out (it follows img_size)")
    agreeing = text.replace("[3, 224, 224]", "[3, 100, 100]")
    assert parse_manifest(agreeing, "aa.yaml")["my"].data.input_size == (3, 100, 100)


SMALL_CLIPS = """
models:
  my_clips:
    family: videomamba
    architecture: videomamba_tiny_video
    arch_args: {num_frames: 8, kernel_size: 2, depth: 1, embed_dim: 64, img_size: 32}
    task: video-classification
    labels: kinetics-400
    video: {num_frames: 1}
"""


def test_a_video_num_frames_that_contradicts_arch_args_is_refused_naming_the_video_field(cli, tmp_path):
    # the model was built for arch_args' 8 frames (classify, eval) while benchmark built it for the protocol's 1,
    # which the constructor refused, blamed on field 'arch_args' with a num_frames the manifest's arch_args lack
    mine = tmp_path / "mine.yaml"
    mine.write_text(SMALL_CLIPS)
    message = (f"{mine}: model 'my_clips', field 'video.num_frames': 1 contradicts arch_args num_frames 8: the model "
               "is built for 8-frame clips; make them agree, or leave num_frames out of arch_args (the model is then "
               "built for video.num_frames)")
    res = cli("--manifest", mine, "info", "my_clips")
    assert (res.code, res.stdout, res.stderr) == (1, "", f"error: {message}\n")
    with pytest.raises(ManifestError) as info:
        parse_manifest(SMALL_CLIPS.replace("{num_frames: 1}", "{num_frames: 16}"), "aa.yaml")
    assert "field 'video.num_frames': 16 contradicts arch_args num_frames 8" in str(info.value)
    assert parse_manifest(SMALL_CLIPS.replace("{num_frames: 1}", "{num_frames: 8}"), "aa.yaml")["my_clips"]


def test_a_model_built_for_the_protocols_clips_blames_video_num_frames_when_it_cannot_be_built(cli, tmp_path):
    # without num_frames in arch_args the model is built for video.num_frames (as benchmark builds it), so a
    # frame count the constructor refuses is video.num_frames' error: classify crashed with a traceback in the
    # first forward (a model built for the default 8 frames, fed 1-frame clips), benchmark blamed 'arch_args'
    from ssmzoo.factory import build_model

    text = SMALL_CLIPS.replace("num_frames: 8, ", "")
    mine = tmp_path / "mine.yaml"
    mine.write_text(text)
    message = (f"{mine}: model 'my_clips', field 'video.num_frames': videomamba_tiny_video cannot be built for "
               "1-frame clips with arch_args {'kernel_size': 2} (num_frames 1 gives no tubelet of kernel_size 2 "
               "frames; expected num_frames >= 2)")
    res = cli("--manifest", mine, "info", "my_clips")
    assert (res.code, res.stdout, res.stderr) == (1, "", f"error: {message}\n")
    # as benchmark builds it: the protocol's frames put into arch_args
    entry = parse_manifest(text, "aa.yaml")["my_clips"]
    with pytest.raises(ManifestError, match=r"^aa.yaml: model 'my_clips', field 'video.num_frames': "):
        build_model(replace(entry, arch_args={**entry.arch_args, "num_frames": 1}))
    # a protocol the model can be built for: the model takes the protocol's clips
    assert build_model(parse_manifest(text.replace("{num_frames: 1}", "{num_frames: 4}"), "aa.yaml")["my_clips"]
                       ).num_frames == 4


def test_packaged_video_entries_build_their_models_for_the_protocols_frames():
    entries = [e for e in load_manifest().values() if e.video is not None]
    assert entries and all(e.arch_args.get("num_frames") in (None, e.video.num_frames) for e in entries)


def test_packaged_entries_give_input_size_and_img_size_that_agree():
    # the *_448 and *_576 entries give both; each pair must agree (or the packaged manifest would not load)
    entries = load_manifest()
    sized = [e for e in entries.values() if "img_size" in e.arch_args]
    assert any(e.arch_args["img_size"] == 448 for e in sized)
    assert all(e.data.input_size[1:] == (e.arch_args["img_size"],) * 2 for e in sized)


# ---------------------------------------------------------------------------------------------
# Each manifest file is read and validated once per process while it stays the same


@pytest.fixture()
def parses(monkeypatch):
    """The sources parse_manifest was called for, in order."""
    import ssmzoo.manifest as manifest_mod

    calls: list[str] = []
    real = manifest_mod.parse_manifest

    def counted(text, source="<manifest>", base_dir=None):
        calls.append(source)
        return real(text, source, base_dir)

    monkeypatch.setattr(manifest_mod, "parse_manifest", counted)
    return calls


def _aged(path: Path, seconds_ago: float, ns: int | None = None) -> int:
    """Gives ``path`` an mtime ``seconds_ago`` in the past (a file written a while ago, not just now), or
    ``ns``; returns it."""
    import os
    import time

    ns = ns if ns is not None else time.time_ns() - int(seconds_ago * 1e9)
    os.utime(path, ns=(ns, ns))
    return ns


def test_a_manifest_is_read_once_while_it_stays_the_same_and_again_when_it_changes(tmp_path, parses):
    mine = tmp_path / "mine.yaml"
    mine.write_text(GOOD)
    _aged(mine, 60)
    for _ in range(5):  # as `benchmark --model all` asks, once per model
        entries = load_manifest([mine])
    assert entries["my_model"].data.crop_pct == 0.9
    assert parses.count(str(mine)) == 1 and parses.count("weights_manifest.yaml") <= 1

    entries["my_model"] = None  # what a caller does with its dict is its own
    assert load_manifest([mine])["my_model"].data.crop_pct == 0.9

    mine.write_text(GOOD.replace("crop_pct: 0.9", "crop_pct: 0.8"))  # same size, another mtime
    then = _aged(mine, 30)
    assert load_manifest([mine])["my_model"].data.crop_pct == 0.8 and parses.count(str(mine)) == 2

    mine.write_text(GOOD.replace("crop_pct: 0.9", "crop_pct: 0.85"))  # the same mtime, another size
    _aged(mine, 0, ns=then)
    assert load_manifest([mine])["my_model"].data.crop_pct == 0.85 and parses.count(str(mine)) == 3
    assert load_manifest([mine])["my_model"].data.crop_pct == 0.85 and parses.count(str(mine)) == 3


def test_a_manifest_is_read_again_when_a_labels_file_it_names_changes(tmp_path, parses):
    labels = tmp_path / "classes.txt"
    labels.write_text("cat\ndog\n")
    _aged(labels, 60)
    mine = tmp_path / "mine.yaml"
    mine.write_text(GOOD.replace("labels: imagenet-1k", "labels: classes.txt"))
    _aged(mine, 60)
    assert load_manifest([mine])["my_model"].num_classes == 2
    assert load_manifest([mine])["my_model"].num_classes == 2 and parses.count(str(mine)) == 1
    labels.write_text("cat\ndog\nfox\n")
    _aged(labels, 30)
    assert load_manifest([mine])["my_model"].num_classes == 3 and parses.count(str(mine)) == 2


def test_a_manifest_written_just_now_is_read_every_time(tmp_path, parses):
    """A file rewritten within the file system's timestamp granularity, at the same size, keeps its
    (mtime, size): one changed that recently is never taken from memory."""
    mine = tmp_path / "mine.yaml"
    mine.write_text(GOOD)
    assert load_manifest([mine])["my_model"].data.crop_pct == 0.9
    mine.write_text(GOOD.replace("crop_pct: 0.9", "crop_pct: 0.8"))
    assert load_manifest([mine])["my_model"].data.crop_pct == 0.8 and parses.count(str(mine)) == 2


def test_a_manifest_that_fails_is_not_remembered(tmp_path, parses):
    mine = tmp_path / "mine.yaml"
    mine.write_text(GOOD.replace("crop_pct: 0.9", "crop_pct: 1.5"))
    _aged(mine, 60)
    for _ in range(2):
        with pytest.raises(ManifestError, match="crop_pct"):
            load_manifest([mine])
    assert parses.count(str(mine)) == 2
    mine.unlink()
    with pytest.raises(ManifestError, match="cannot read manifest"):
        load_manifest([mine])


def test_info_names_the_manifest_by_its_full_path_and_weights_is_an_object_or_null(cli, tmp_path, monkeypatch):
    import ssmzoo

    packaged = str(Path(ssmzoo.__file__).resolve().parent / "weights_manifest.yaml")
    monkeypatch.chdir(tmp_path)  # where no weights_manifest.yaml is: a bare name would point nowhere
    published = json.loads(cli("info", "groupmamba_tiny", "--json").stdout)
    assert published["manifest"] == packaged and Path(published["manifest"]).is_file()
    assert isinstance(published["weights"], dict) and published["weights_note"] is None
    none = json.loads(cli("info", "stablemamba_tiny_in1k", "--json").stdout)
    assert none["weights"] is None and none["weights_note"] == "none published: pass --weights PATH"
    table = cli("info", "stablemamba_tiny_in1k").stdout
    assert re.search(r"│ weights +│ none published: pass --weights PATH", table) and "weights_note" not in table
