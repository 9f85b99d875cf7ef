"""Checkpoints are read safely (weights_only), unwrapped, verified and fitted strictly, with one-line errors."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Optional

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from ssmzoo import checkpoint_files
from ssmzoo.checkpoint import (
    checkpoint_problem,
    convert_to_safetensors,
    load_into_model,
    load_state_dict,
    read_checkpoint,
    sha256_file,
    sniff_format,
)
from ssmzoo.errors import WeightsError


def small_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5), nn.Flatten(), nn.Linear(5 * 3 * 2, 7))


def fresh_state_dict(seed: int | None = None) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed if seed is not None else torch.seed() % 2**31)
    model = small_model()
    return {
        k: (torch.randn(v.shape, generator=gen) if v.is_floating_point() else v.clone())
        for k, v in model.state_dict().items()
    }


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert torch.equal(a[k], b[k]), k


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    return msg


class ExecutesOnLoad:
    """Unpickling this would run code (touch a marker file): weights_only must refuse it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


# ---------------------------------------------------------------------------------------------
# Reading and unwrapping


def test_flat_safetensors_and_pickle_load_identically(tmp_path):
    sd = fresh_state_dict()
    save_file(sd, tmp_path / "w.safetensors")
    torch.save(sd, tmp_path / "w.pth")
    torch.save(sd, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    for name in ("w.safetensors", "w.pth", "legacy.pt"):
        loaded = read_checkpoint(tmp_path / name)
        assert_same(loaded.state_dict, sd)
        assert loaded.key_path == () and loaded.stripped_prefix is None
    assert sniff_format(tmp_path / "w.safetensors") == "safetensors"
    assert sniff_format(tmp_path / "w.pth") == sniff_format(tmp_path / "legacy.pt") == "pth"


def test_format_comes_from_content_not_extension(tmp_path):
    sd = fresh_state_dict()
    save_file(sd, tmp_path / "actually_safetensors.pth")
    torch.save(sd, tmp_path / "actually_pickle.safetensors")
    assert_same(load_state_dict(tmp_path / "actually_safetensors.pth", format="pth"), sd)
    assert_same(load_state_dict(tmp_path / "actually_pickle.safetensors"), sd)


@pytest.mark.parametrize(
    "wrap,key_path",
    [
        (lambda sd, other: {"model": sd, "epoch": 300, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}},
         ("model",)),
        (lambda sd, other: {"model": other, "model_ema": sd}, ("model_ema",)),
        (lambda sd, other: {"state_dict": sd, "hyper": {"lr": 1e-3}}, ("state_dict",)),
        (lambda sd, other: {"module": sd}, ("module",)),
        (lambda sd, other: {"checkpoint_meta": 1, "model": {"module": sd}}, ("model", "module")),
    ],
)
def test_auto_unwrap(tmp_path, wrap, key_path):
    sd, other = fresh_state_dict(), fresh_state_dict()
    torch.save(wrap(sd, other), tmp_path / "ckpt.pth")
    loaded = read_checkpoint(tmp_path / "ckpt.pth")
    assert loaded.key_path == key_path
    assert_same(loaded.state_dict, sd)


def test_explicit_key_wins_over_ema(tmp_path):
    sd, ema = fresh_state_dict(), fresh_state_dict()
    torch.save({"model": sd, "model_ema": ema}, tmp_path / "ckpt.pth")
    assert_same(load_state_dict(tmp_path / "ckpt.pth", state_dict_key="model"), sd)
    assert_same(load_state_dict(tmp_path / "ckpt.pth"), ema)


def test_missing_explicit_key_lists_available(tmp_path):
    torch.save({"model": fresh_state_dict(), "epoch": 3}, tmp_path / "ckpt.pth")
    with pytest.raises(WeightsError) as err:
        load_state_dict(tmp_path / "ckpt.pth", state_dict_key="model_ema")
    msg = one_line(err)
    assert "'model_ema'" in msg and "'model'" in msg and "'epoch'" in msg and "ckpt.pth" in msg


def test_module_prefix_is_stripped(tmp_path):
    sd = fresh_state_dict()
    torch.save({"model": {"module." + k: v for k, v in sd.items()}}, tmp_path / "ddp.pth")
    loaded = read_checkpoint(tmp_path / "ddp.pth")
    assert loaded.stripped_prefix == "module."
    assert_same(loaded.state_dict, sd)
    # Only a prefix shared by every key is a DDP artefact; a submodule that happens to be named
    # "module" must keep its name.
    mixed = {"module.weight": torch.ones(2), "head.weight": torch.zeros(2)}
    save_file(mixed, tmp_path / "mixed.safetensors")
    assert sorted(load_state_dict(tmp_path / "mixed.safetensors")) == ["head.weight", "module.weight"]


def test_no_tensors_is_an_error(tmp_path):
    torch.save({"epoch": 3, "args": {"lr": 0.1}}, tmp_path / "meta.pth")
    with pytest.raises(WeightsError) as err:
        load_state_dict(tmp_path / "meta.pth")
    assert "no tensors" in one_line(err) and "meta.pth" in str(err.value)


def test_weights_only_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"model": fresh_state_dict(), "payload": ExecutesOnLoad(str(marker))}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError) as err:
        load_state_dict(tmp_path / "evil.pth")
    msg = one_line(err)
    assert "evil.pth" in msg and "refuses" in msg and "weights_only" in msg
    assert not marker.exists(), "the pickle's code ran"


def test_custom_class_instance_is_refused(tmp_path):
    torch.save({"model": fresh_state_dict(), "config": ExecutesOnLoad("x")}, tmp_path / "cfg.pth")
    # Build a pickle that references a plain custom class (no __reduce__ tricks).
    torch.save({"model": fresh_state_dict(), "cfg": _Config(3)}, tmp_path / "cfg2.pth")
    for name in ("cfg.pth", "cfg2.pth"):
        with pytest.raises(WeightsError) as err:
            load_state_dict(tmp_path / name)
        assert name in one_line(err)
    assert "_Config" in str(err.value)


class _Config:
    def __init__(self, depth: int) -> None:
        self.depth = depth


# ---------------------------------------------------------------------------------------------
# Where the weights are, without reading them (`ssmzoo info`): the same answer as a full read


def _structure_cases(tmp_path: Path) -> dict[str, tuple[Path, Optional[str]]]:
    """name: (file, state_dict_key) for the layouts published checkpoints come in."""
    import argparse

    import numpy as np

    sd, other = fresh_state_dict(), fresh_state_dict()
    save_file(sd, tmp_path / "flat.safetensors", metadata={"format": "pt"})
    torch.save(sd, tmp_path / "flat.pth")
    torch.save({"model": other, "model_ema": sd, "epoch": np.int64(3), "args": argparse.Namespace(lr=0.1)},
               tmp_path / "ema.pth")
    torch.save({"model": other, "model_ema": sd}, tmp_path / "ema_legacy.pth", _use_new_zipfile_serialization=False)
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}}, tmp_path / "ddp.pth")
    torch.save({"model": {"model_ema": sd}, "optimizer": {"lr": 0.1}}, tmp_path / "nested.pth")
    return {
        "safetensors": (tmp_path / "flat.safetensors", None),
        "safetensors, a key it lacks": (tmp_path / "flat.safetensors", "model"),
        "pth, top-level state dict": (tmp_path / "flat.pth", None),
        "pth, model and model_ema": (tmp_path / "ema.pth", None),
        "pth, model and model_ema, the manifest's key": (tmp_path / "ema.pth", "model"),
        "pth, a key it lacks": (tmp_path / "ema.pth", "state_dict"),
        "legacy pth, model and model_ema": (tmp_path / "ema_legacy.pth", None),
        "legacy pth, the manifest's key": (tmp_path / "ema_legacy.pth", "model"),
        "pth, DDP prefixes": (tmp_path / "ddp.pth", None),
        "pth, nested": (tmp_path / "nested.pth", None),
    }


def test_the_structure_alone_gives_the_answer_a_full_read_gives(tmp_path):
    for case, (path, key) in _structure_cases(tmp_path).items():
        try:
            full = read_checkpoint(path, state_dict_key=key)
        except WeightsError as e:
            with pytest.raises(WeightsError) as err:
                read_checkpoint(path, state_dict_key=key, tensor_data=False)
            assert str(err.value) == str(e), case
            continue
        light = read_checkpoint(path, state_dict_key=key, tensor_data=False)
        assert (light.key_path, light.format, light.stripped_prefix) == (
            full.key_path, full.format, full.stripped_prefix), case
        assert {k: (v.shape, v.dtype) for k, v in light.state_dict.items()} == {
            k: (v.shape, v.dtype) for k, v in full.state_dict.items()}, case
        assert all(v.is_meta for v in light.state_dict.values()), case  # no tensor's bytes were read
    assert read_checkpoint(tmp_path / "ema.pth", tensor_data=False).key_path == ("model_ema",)  # (EMA first)


def test_the_structure_alone_is_refused_as_a_full_read_is(tmp_path):
    import numpy as np

    marker = tmp_path / "pwned"
    torch.save({"model": fresh_state_dict(), "payload": ExecutesOnLoad(str(marker))}, tmp_path / "evil.pth")
    torch.save({"model": fresh_state_dict(), "rng_state": np.arange(3)}, tmp_path / "rng.pth")
    torch.save({"model": fresh_state_dict(), "rng_state": np.arange(3)}, tmp_path / "rng_legacy.pth",
               _use_new_zipfile_serialization=False)
    torch.save({"epoch": 3}, tmp_path / "no_tensors.pth")
    for name in ("evil.pth", "rng.pth", "rng_legacy.pth", "no_tensors.pth"):
        messages = []
        for tensor_data in (True, False):
            with pytest.raises(WeightsError) as err:
                read_checkpoint(tmp_path / name, tensor_data=tensor_data)
            messages.append(str(err.value))
        assert messages[0] == messages[1] and name in messages[0]
    assert not marker.exists(), "the pickle's code ran"


# ---------------------------------------------------------------------------------------------
# Damaged files


def test_empty_truncated_and_garbage_files(tmp_path):
    sd = fresh_state_dict()
    (tmp_path / "empty.pth").write_bytes(b"")
    buf = io.BytesIO()
    torch.save(sd, buf)
    (tmp_path / "cut.pth").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    buf = io.BytesIO()
    torch.save(sd, buf, _use_new_zipfile_serialization=False)
    (tmp_path / "cut_legacy.pth").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    save_file(sd, tmp_path / "full.safetensors")
    data = (tmp_path / "full.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) - 7])
    # random bytes, but not opening with a format's magic (0x80 is a pickle's, 1 draw in 256)
    (tmp_path / "noise.pth").write_bytes(b"\x01" + os.urandom(332))
    (tmp_path / "page.pth").write_bytes(b"<!DOCTYPE html><html><body>Sign in</body></html>")
    (tmp_path / "pointer.bin").write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n")

    expect = {
        "empty.pth": "empty",
        "cut.pth": "truncated",
        "cut_legacy.pth": "truncated",
        "cut.safetensors": "truncated",
        "noise.pth": "not a checkpoint",
        "page.pth": "HTML",
        "pointer.bin": "Git LFS pointer",
        "absent.pth": "absent.pth: no such file or directory",
    }
    for name, needle in expect.items():
        with pytest.raises(WeightsError) as err:
            load_state_dict(tmp_path / name)
        msg = one_line(err)
        assert name in msg and needle in msg, msg


@pytest.mark.parametrize("protocol", [2, 5])
def test_a_legacy_pickle_cut_off_anywhere_fails_the_layout_check(tmp_path, protocol):
    # The check every download runs (without loading the file): a legacy torch.save cut right after its
    # magic number, inside any of its pickles or inside the tensor data is truncated, the whole file is not.
    buf = io.BytesIO()
    weights = {"w": torch.randn(3, 2), "half": torch.zeros(5, dtype=torch.bfloat16), "t": torch.ones(3, 2).t(),
               "step": torch.tensor(7)}
    torch.save({"model": weights, "epoch": 3}, buf, _use_new_zipfile_serialization=False, pickle_protocol=protocol)
    data = buf.getvalue()
    path = tmp_path / "legacy.pth"
    path.write_bytes(data)
    assert checkpoint_problem(path) is None
    after_magic = len(pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=protocol))
    assert data[:after_magic] == pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=protocol)
    path.write_bytes(data[:after_magic])
    assert checkpoint_problem(path) == (
        "it is a truncated PyTorch checkpoint (legacy format: it ends inside its protocol version)")
    path.write_bytes(data[:-1])
    assert checkpoint_problem(path) == (f"it is a truncated PyTorch checkpoint (legacy format: its tensor data end "
                                        f"at byte {len(data)}, the file has {len(data) - 1})")
    for n in range(after_magic, len(data)) if protocol == 2 else (after_magic + 1, len(data) // 2, len(data) - 9):
        path.write_bytes(data[:n])
        problem = checkpoint_problem(path)
        assert problem is not None and problem.startswith("it is a truncated PyTorch checkpoint"), (n, problem)
    path.write_bytes(data[:after_magic])
    with pytest.raises(WeightsError, match="legacy.pth is truncated"):  # as loading it says
        load_state_dict(path)


def test_the_layout_check_runs_nothing_a_legacy_pickle_names(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": fresh_state_dict(), "payload": ExecutesOnLoad(str(marker))}, path,
               _use_new_zipfile_serialization=False)
    assert checkpoint_problem(path) is None  # a well-formed file: loading it is what refuses the payload
    assert not marker.exists(), "the pickle's code ran"


def test_noise_that_starts_like_a_pickle_is_reported(tmp_path):
    (tmp_path / "fake.pth").write_bytes(b"\x80\x02" + os.urandom(100))
    with pytest.raises(WeightsError) as err:
        load_state_dict(tmp_path / "fake.pth")
    assert "fake.pth" in one_line(err)


# ---------------------------------------------------------------------------------------------
# Checksums


def test_sha256_file_matches_hashlib_across_chunks(tmp_path, monkeypatch):
    data = os.urandom(10_007)
    (tmp_path / "blob").write_bytes(data)
    monkeypatch.setattr(checkpoint_files, "_CHUNK", 97)  # many odd-sized chunks
    assert sha256_file(tmp_path / "blob") == hashlib.sha256(data).hexdigest()
    # A rewritten file is hashed again, not served from the memo.
    data2 = os.urandom(10_007)
    (tmp_path / "blob").write_bytes(data2)
    os.utime(tmp_path / "blob", ns=(1, 1))
    assert sha256_file(tmp_path / "blob") == hashlib.sha256(data2).hexdigest()


def test_sha256_is_checked_before_loading(tmp_path):
    sd = fresh_state_dict()
    torch.save(sd, tmp_path / "w.pth")
    good = hashlib.sha256((tmp_path / "w.pth").read_bytes()).hexdigest()
    assert_same(load_state_dict(tmp_path / "w.pth", sha256=good.upper()), sd)
    bad = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(WeightsError) as err:
        load_state_dict(tmp_path / "w.pth", sha256=bad)
    msg = one_line(err)
    assert "sha256 mismatch" in msg and bad in msg and good in msg and "w.pth" in msg


# ---------------------------------------------------------------------------------------------
# Strict loading


def test_load_into_model_copies_values():
    model, sd = small_model(), fresh_state_dict()
    load_into_model(model, sd, model_name="tiny")
    assert_same({k: v for k, v in model.state_dict().items()}, sd)


def test_load_into_model_reports_missing_unexpected_and_shapes():
    model, sd = small_model(), fresh_state_dict()
    sd.pop("3.bias")
    sd.pop("1.running_var")
    sd["extra.weight"] = torch.zeros(1)
    sd["0.weight"] = torch.zeros(5, 3, 5, 5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsError) as err:
        load_into_model(model, sd, model_name="tiny")
    msg = one_line(err)
    assert "'tiny'" in msg
    assert "2 missing keys" in msg and "3.bias" in msg and "1.running_var" in msg
    assert "1 unexpected key " in msg and "extra.weight" in msg
    assert "1 shape mismatch " in msg and "0.weight (5, 3, 5, 5) vs (5, 3, 3, 3)" in msg
    assert_same(model.state_dict(), before)  # nothing was half-loaded


def test_load_into_model_lists_only_a_few_keys():
    model = nn.Sequential(*[nn.Linear(2, 2) for _ in range(8)])
    with pytest.raises(WeightsError) as err:
        load_into_model(model, {"other": torch.zeros(1)}, model_name="deep")
    msg = one_line(err)
    assert "16 missing keys" in msg and "…" in msg and msg.count(".weight") + msg.count(".bias") == 5


# ---------------------------------------------------------------------------------------------
# Conversion


def test_convert_round_trip_with_shared_and_strided_tensors(tmp_path):
    sd = fresh_state_dict()
    base = torch.randn(6, 4)
    extra = {
        "tied.a": base,
        "tied.b": base,  # same tensor under two names (tied weights)
        "view.t": base.t(),  # non-contiguous view of the same storage
        "view.row": base[2],  # slice at an offset
        "half": torch.randn(3, 5).half(),
        "empty": torch.zeros(0, 3),
        "steps": torch.tensor(7),
    }
    torch.save({"model_ema": {"module." + k: v for k, v in {**sd, **extra}.items()}, "epoch": 1}, tmp_path / "src.pth")
    written = convert_to_safetensors(tmp_path / "src.pth", tmp_path / "out" / "dst.safetensors")
    assert written.tensors == len(sd) + len(extra)
    assert written.tensor_bytes == sum(t.numel() * t.element_size() for t in {**sd, **extra}.values())
    assert written.key_path == ("model_ema",) and written.stripped_prefix == "module."
    assert written.file_bytes == (tmp_path / "out" / "dst.safetensors").stat().st_size
    assert sniff_format(tmp_path / "out" / "dst.safetensors") == "safetensors"
    back = load_state_dict(tmp_path / "out" / "dst.safetensors")
    want = {k: v.contiguous() for k, v in {**sd, **extra}.items()}
    assert_same(back, want)
    model = small_model()
    load_into_model(model, {k: back[k] for k in sd}, model_name="tiny")
    assert not (tmp_path / "out" / "dst.safetensors.tmp").exists()


def test_an_empty_dict_is_called_an_empty_dict(tmp_path):
    # it said "contains no tensors at the top level (keys: )"
    path = tmp_path / "e.pth"
    torch.save({}, path)
    with pytest.raises(WeightsError) as err:
        convert_to_safetensors(path, tmp_path / "o.safetensors")
    assert one_line(err) == (f"{path}: the checkpoint is an empty dict, with no weights in it; save "
                             "`model.state_dict()` of the trained model")
    torch.save({"model": {"w": torch.ones(1)}, "optimizer": {}}, path)  # an empty entry beside the weights is fine
    assert convert_to_safetensors(path, tmp_path / "o.safetensors").key_path == ("model",)
    torch.save({"model": {}}, path)
    with pytest.raises(WeightsError) as err:
        convert_to_safetensors(path, tmp_path / "o.safetensors", state_dict_key="model")
    assert one_line(err).startswith(f"{path}: its entry at model is an empty dict, with no weights in it")


def test_convert_writes_through_a_link_as_cp_does(tmp_path):
    # the link was replaced by a regular file, and the file it points at kept its old content
    sd = fresh_state_dict()
    src = tmp_path / "model.pth"
    torch.save(sd, src)
    (tmp_path / "runs").mkdir()
    target = tmp_path / "runs" / "out.safetensors"
    target.write_bytes(b"old")
    link = tmp_path / "link.safetensors"
    link.symlink_to(Path("runs") / "out.safetensors")  # relative, as `ln -s` makes it
    written = convert_to_safetensors(src, link)
    assert link.is_symlink() and os.readlink(link) == str(Path("runs") / "out.safetensors")
    assert written.output == link and written.file_bytes == target.stat().st_size
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["out.safetensors"]  # no .tmp left behind
    assert_same(load_state_dict(link), sd)


def test_convert_refuses_unsafe_source(tmp_path):
    torch.save({"model": fresh_state_dict(), "cfg": _Config(1)}, tmp_path / "src.pth")
    with pytest.raises(WeightsError):
        convert_to_safetensors(tmp_path / "src.pth", tmp_path / "dst.safetensors")
    assert not (tmp_path / "dst.safetensors").exists()


def test_zip_checkpoint_with_damaged_pickle_is_reported(tmp_path):
    torch.save(fresh_state_dict(), tmp_path / "w.pth")
    with zipfile.ZipFile(tmp_path / "w.pth") as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith("data.pkl"))
    raw = bytearray((tmp_path / "w.pth").read_bytes())
    # The member's bytes start after its local header (30 bytes + name + extra field).
    at = info.header_offset
    name_len = int.from_bytes(raw[at + 26 : at + 28], "little")
    extra_len = int.from_bytes(raw[at + 28 : at + 30], "little")
    start = at + 30 + name_len + extra_len
    raw[start : start + 24] = b"\x00" * 24
    (tmp_path / "w.pth").write_bytes(bytes(raw))
    with pytest.raises(WeightsError) as err:
        load_state_dict(tmp_path / "w.pth")
    assert "w.pth" in one_line(err)


def test_training_checkpoint_with_argparse_namespace_loads(tmp_path):
    """DeiT-style training scripts store their argparse.Namespace beside the weights; that is allowed."""
    import argparse

    path = tmp_path / "train.pth"
    weights = {"w": torch.randn(3)}
    torch.save({"model": weights, "args": argparse.Namespace(lr=0.1, model="x"), "epoch": 299}, path)
    loaded = load_state_dict(path)
    assert list(loaded) == ["w"] and torch.equal(loaded["w"], weights["w"])


@pytest.mark.parametrize("seed", range(40))
def test_random_bytes_are_never_called_pickled_objects(tmp_path, seed):
    """Garbage must read as 'not a checkpoint', whatever the weights-only unpickler trips over."""
    import random

    path = tmp_path / "noise.pth"
    path.write_bytes(random.Random(seed).randbytes(333))
    with pytest.raises(WeightsError) as err:
        load_state_dict(path)
    assert "not a checkpoint" in str(err.value) or "truncated" in str(err.value)
    assert "pickled Python objects" not in str(err.value)


# ---------------------------------------------------------------------------------------------
# Research checkpoints: numpy scalars load safely; anything else needs the user's say-so


def research_checkpoint(path: Path, weights: dict, *, legacy: bool = False) -> Path:
    """What DeiT-lineage training scripts save: the weights beside numpy scalars (epoch, best accuracy)."""
    import numpy as np

    torch.save({"model": weights, "epoch": np.int64(3), "best_acc": np.float64(83.1), "max_acc": np.float32(83.5),
                "improved": np.bool_(True), "dtype": np.dtype("float16")}, path,
               _use_new_zipfile_serialization=not legacy)
    return path


@pytest.mark.parametrize("layout", ["zip", "legacy", "legacy saved under numpy 1"])
def test_numpy_scalars_beside_the_weights_load_with_weights_only(tmp_path, layout):
    weights = fresh_state_dict()
    path = research_checkpoint(tmp_path / "best.pth", weights, legacy=layout != "zip")
    if layout == "legacy saved under numpy 1":  # numpy 1 pickles its scalars as numpy.core.multiarray.scalar
        raw = path.read_bytes()
        assert raw.count(b"numpy._core.multiarray") == 1
        path.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    allowed = set(torch.serialization.get_safe_globals())  # (torch allows some classes itself)
    loaded = read_checkpoint(path)
    assert loaded.key_path == ("model",)
    assert_same(loaded.state_dict, weights)
    assert set(torch.serialization.get_safe_globals()) == allowed  # allowed for that load only, not for good


def test_pickled_objects_beyond_numpy_scalars_are_refused_naming_the_file_and_the_class(tmp_path):
    import argparse

    import numpy as np

    cases = {
        "args.pth": {"model": fresh_state_dict(), "args": argparse.Namespace(lr=0.1, output_dir=Path("runs/x"))},
        "rng.pth": {"model": fresh_state_dict(), "rng_state": np.arange(3)},  # arrays: not scalars
    }
    for name, obj in cases.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(WeightsError) as err:
            read_checkpoint(tmp_path / name)
        message = one_line(err)
        blocked = "PosixPath" if name == "args.pth" else "multiarray._reconstruct"
        assert message.startswith(f"{tmp_path / name} holds pickled Python objects besides tensors (")
        assert blocked in message and "weights_only=True" in message
        assert f"`ssmzoo convert {tmp_path / name} OUT.safetensors --trust-checkpoint`" in message


def test_a_trusted_local_file_is_unpickled_whole(tmp_path):
    import numpy as np

    weights = fresh_state_dict()
    torch.save({"model_ema": weights, "rng_state": np.arange(3), "out": Path("runs/x")}, tmp_path / "mine.pth")
    loaded = read_checkpoint(tmp_path / "mine.pth", trust=True)
    assert loaded.key_path == ("model_ema",)
    assert_same(loaded.state_dict, weights)


def test_a_trusted_file_naming_code_that_is_not_importable_here_says_where_to_convert_it(tmp_path, monkeypatch):
    import importlib
    import sys

    (tmp_path / "trainer_cfg.py").write_text("class Config:\n    depth = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = importlib.import_module("trainer_cfg").Config()
    torch.save({"model": fresh_state_dict(), "cfg": config}, tmp_path / "run.pth")
    monkeypatch.delitem(sys.modules, "trainer_cfg")
    (tmp_path / "trainer_cfg.py").unlink()  # as on another machine, without the training code
    with pytest.raises(WeightsError) as err:
        read_checkpoint(tmp_path / "run.pth", trust=True)
    message = one_line(err)
    assert message.startswith(f"{tmp_path / 'run.pth'} names Python code that cannot be imported here "
                              "(ModuleNotFoundError: No module named 'trainer_cfg')")
    assert message.endswith("convert it where the code that saved it is importable (e.g. in the training "
                            "repository's folder)")


def test_trust_is_refused_for_what_comes_from_the_network(tmp_path, monkeypatch):
    from ssmzoo.errors import UsageError

    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    fetched = cache / "models--org--repo" / "blobs" / "0123abcd"
    fetched.parent.mkdir(parents=True)
    torch.save({"model": fresh_state_dict(), "out": Path("x")}, fetched)
    for source, why in [("hf-hub:org/repo/w.pth", "it names a file on the network"),
                        ("https://huggingface.co/org/repo/resolve/main/w.pth", "it names a file on the network"),
                        (str(fetched), f"it is in the Hugging Face cache ({cache}), fetched from the network")]:
        with pytest.raises(UsageError) as err:
            read_checkpoint(source, trust=True)
        assert one_line(err).startswith(f"--trust-checkpoint {source}: {why}; ")
    with pytest.raises(WeightsError) as err:  # and without it, no advice to trust it
        read_checkpoint(fetched)
    assert "fetched from the Hub" in one_line(err) and "--trust-checkpoint" not in str(err.value)


def test_the_header_checks_spell_out_torch_saves_magic_number():
    # ssmzoo.checkpoint_files judges files without importing torch (ssmzoo models, download: see
    # tests/test_cli_start.py), so it writes the number out; it must be torch's
    from ssmzoo.checkpoint_files import TORCH_MAGIC_NUMBER

    assert TORCH_MAGIC_NUMBER == torch.serialization.MAGIC_NUMBER
