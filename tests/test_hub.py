"""Weights resolution against a real local HTTP server speaking the Hub protocol (no mocks).

huggingface_hub does every request itself; HF_ENDPOINT, HF_HOME/HF_HUB_CACHE and HF_HUB_OFFLINE are
set per test in the environment, which ssmzoo.hub must honour although huggingface_hub read them
at import.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import socket
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as st_save

sys.path.insert(0, str(Path(__file__).parent))
from hub_server import FakeHub  # noqa: E402

from ssmzoo.checkpoint import load_state_dict  # noqa: E402
from ssmzoo.errors import WeightsError, WeightsOptionError  # noqa: E402
from ssmzoo.hub import (  # noqa: E402
    WEIGHT_EXTENSIONS, ResolvedWeights, check_weights_request, hub_cache_dir, is_cached, parse_hub_ref,
    resolve_weights,
)
from ssmzoo.manifest import WeightsSource  # noqa: E402

REPO = "ssmzoo-test/TinyNet"


def state_dict(seed: int | None = None) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed if seed is not None else torch.seed() % 2**31)
    return {"stem.weight": torch.randn(4, 3, 3, 3, generator=gen), "head.bias": torch.randn(5, generator=gen)}


def pth_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def same(a: dict, b: dict) -> bool:
    return sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert msg and "\n" not in msg, msg
    return msg


def blobs(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("blobs/*") if p.is_file()]


@pytest.fixture
def hub(tmp_path, monkeypatch):
    server = FakeHub().start()
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    # Explicitly online, whatever the environment huggingface_hub was imported in.
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    for name in ("TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    yield server
    server.stop()


@pytest.fixture
def cache(hub, tmp_path) -> Path:
    return tmp_path / "hf_home" / "hub"


# ---------------------------------------------------------------------------------------------
# Download and cache


def test_download_then_cache_hit(hub, cache):
    sd = state_dict()
    hub.add_file(REPO, "tiny.pth", pth_bytes({"model": sd}))
    src = WeightsSource(repo_id=REPO, filename="tiny.pth", state_dict_key="model", format="pth")
    assert not is_cached(src)

    rw = resolve_weights("tiny", src, progress=False)
    assert isinstance(rw, ResolvedWeights)
    assert rw.path.is_file() and cache in rw.path.parents  # the per-test HF_HUB_CACHE, not ~/.cache
    assert hub_cache_dir() == cache
    assert rw.origin == f"hf-hub:{REPO}@main/tiny.pth"
    assert rw.filename == "tiny.pth" and rw.state_dict_key == "model" and rw.format == "pth"
    assert rw.commit == hub.commit(REPO)
    assert same(load_state_dict(rw.path, state_dict_key=rw.state_dict_key), sd)
    assert hub.downloads() == 1
    assert is_cached(src)

    rw2 = resolve_weights("tiny", src, progress=False)
    assert rw2.path == rw.path
    assert hub.downloads() == 1, "a cached file was downloaded again"
    assert hub.count("HEAD", "/resolve/") == 2  # huggingface_hub still checks the ref is current


def test_non_lfs_file_and_progress_flag_restored(hub):
    from huggingface_hub.utils import are_progress_bars_disabled

    hub.add_file(REPO, "small.safetensors", st_save(state_dict(1)), lfs=False)
    before = are_progress_bars_disabled()
    rw = resolve_weights("tiny", WeightsSource(repo_id=REPO, filename="small.safetensors"), progress=False)
    assert are_progress_bars_disabled() == before
    assert same(load_state_dict(rw.path), state_dict(1))
    assert hub.count("GET", f"/{REPO}/resolve/main/small.safetensors") == 1  # served directly, no CDN hop


def test_token_goes_to_the_hub_not_the_cdn(hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_ssmzoo_test_token")
    hub.add_file(REPO, "tiny.pth", pth_bytes(state_dict()))
    resolve_weights("tiny", WeightsSource(repo_id=REPO, filename="tiny.pth"), progress=False)
    head = [r for r in hub.requests if r.method == "HEAD"][0]
    cdn = [r for r in hub.requests if r.path.startswith("/cdn/")][0]
    assert head.headers.get("authorization") == "Bearer hf_ssmzoo_test_token"
    assert "authorization" not in {k.lower() for k in cdn.headers}


def test_endpoint_is_read_per_call(hub, monkeypatch, tmp_path):
    hub.add_file(REPO, "tiny.pth", pth_bytes(state_dict(1)))
    with FakeHub() as other:
        other.add_file(REPO, "tiny.pth", pth_bytes(state_dict(2)))
        monkeypatch.setenv("HF_ENDPOINT", other.endpoint)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "other_cache"))
        rw = resolve_weights("tiny", WeightsSource(repo_id=REPO, filename="tiny.pth"), progress=False)
        assert same(load_state_dict(rw.path), state_dict(2))
        assert other.downloads() == 1 and hub.requests == []
        assert str(tmp_path / "other_cache") in str(rw.path)


# ---------------------------------------------------------------------------------------------
# Offline and unreachable


def test_offline_with_cache_makes_no_request(hub, monkeypatch):
    hub.add_file(REPO, "tiny.pth", pth_bytes(state_dict(3)))
    hub.add_file(REPO, "model.safetensors", st_save(state_dict(4)))
    first = resolve_weights("tiny", WeightsSource(repo_id=REPO, filename="tiny.pth"), progress=False)
    auto = resolve_weights("tiny", WeightsSource(repo_id=REPO), progress=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.reset_log()
    again = resolve_weights("tiny", WeightsSource(repo_id=REPO, filename="tiny.pth"), progress=False)
    assert again.path == first.path and same(load_state_dict(again.path), state_dict(3))
    picked = resolve_weights("tiny", WeightsSource(repo_id=REPO), progress=False)  # listing from the cache
    assert picked.filename == "model.safetensors" == auto.filename
    assert "local cache" in picked.note
    assert hub.requests == []
    # Turning offline mode off again in the environment brings the network back.
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    resolve_weights("tiny", WeightsSource(repo_id=REPO, filename="tiny.pth"), progress=False)
    assert hub.count("HEAD") == 1


def test_offline_without_cache_is_one_clear_line(hub, monkeypatch, cache):
    hub.add_file(REPO, "tiny.pth", pth_bytes(state_dict()))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for src in (WeightsSource(repo_id=REPO, filename="tiny.pth"), WeightsSource(repo_id=REPO)):
        with pytest.raises(WeightsError) as err:
            resolve_weights("tiny_net", src, progress=False)
        msg = one_line(err)
        assert "'tiny_net'" in msg and REPO in msg and "HF_HUB_OFFLINE" in msg and "--weights" in msg
        assert str(cache) in msg
    assert hub.requests == []


def test_unreachable_endpoint_uses_cache(hub, monkeypatch):
    hub.add_file(REPO, "tiny.pth", pth_bytes(state_dict(5)))
    src = WeightsSource(repo_id=REPO, filename="tiny.pth")
    first = resolve_weights("tiny", src, progress=False)
    assert first.note is None
    hub.stop()  # the connection is now refused
    again = resolve_weights("tiny", src, progress=False)
    assert again.path == first.path and same(load_state_dict(again.path), state_dict(5))
    # what could not be checked is said (download prints the note, and --json has it in `note`)
    assert again.checked_against == "hub" and again.cached
    assert again.note == (f"Hub unreachable ({hub.endpoint}): the cached copy matches the sha256 the Hub published "
                          "when it was fetched, but whether the Hub has a newer one was not checked: it may be stale")


def test_unreachable_endpoint_says_a_cached_file_with_no_checksum_is_unverified(hub):
    hub.add_file(REPO, "tiny.pth", pth_bytes(state_dict(6)), lfs=False)  # a git blob: no sha256 published
    src = WeightsSource(repo_id=REPO, filename="tiny.pth")
    first = resolve_weights("tiny", src, progress=False)
    assert first.checked_against is None and first.note is None
    hub.stop()
    again = resolve_weights("tiny", src, progress=False)
    assert again.path == first.path and again.cached
    assert (again.to_dict()["sha256"], again.to_dict()["sha256_checked_against"]) == (None, None)
    assert again.note == (f"Hub unreachable ({hub.endpoint}): the cached copy was not verified against the Hub's "
                          "checksum and may be stale")


def test_endpoint_that_is_not_a_hub_and_nothing_cached(hub, monkeypatch):
    hub.add_file(REPO, "tiny.pth", pth_bytes(state_dict()))
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint + "/not-a-hub")  # plain 404s without Hub headers
    with pytest.raises(WeightsError) as err:
        resolve_weights("tiny", WeightsSource(repo_id=REPO, filename="tiny.pth"), progress=False)
    msg = one_line(err)
    assert "cannot reach" in msg and "/not-a-hub" in msg and "HF_ENDPOINT" in msg and "--weights" in msg


# ---------------------------------------------------------------------------------------------
# Revisions and 404s


def test_revisions_are_separate(hub, monkeypatch):
    hub.add_file(REPO, "tiny.pth", pth_bytes(state_dict(10)))
    hub.add_file(REPO, "tiny.pth", pth_bytes(state_dict(11)), revision="v2")
    src = WeightsSource(repo_id=REPO, filename="tiny.pth")
    main = resolve_weights("tiny", src, progress=False)
    v2 = resolve_weights("tiny", src, revision="v2", progress=False)
    assert v2.origin == f"hf-hub:{REPO}@v2/tiny.pth" and v2.commit == hub.commit(REPO, "v2") != main.commit
    assert same(load_state_dict(main.path), state_dict(10)) and same(load_state_dict(v2.path), state_dict(11))
    pinned = WeightsSource(repo_id=REPO, filename="tiny.pth", revision="v2")
    assert same(load_state_dict(resolve_weights("tiny", pinned, progress=False).path), state_dict(11))
    # A commit hash already in the cache needs no network at all.
    hub.reset_log()
    by_commit = resolve_weights("tiny", src, revision=hub.commit(REPO, "v2"), progress=False)
    assert by_commit.path == v2.path and hub.requests == []
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_weights("tiny", src, revision="v2", progress=False).path == v2.path


@pytest.mark.parametrize(
    "source,needles",
    [
        (WeightsSource(repo_id="nobody/Missing", filename="w.pth"),
         ["'nobody/Missing' not found", "HF_TOKEN", "--weights"]),
        (WeightsSource(repo_id=REPO, filename="other.pth"), ["'other.pth' not found", f"{REPO}@main"]),
        (WeightsSource(repo_id=REPO, filename="tiny.pth", revision="v9"), ["revision 'v9' not found", REPO]),
        (WeightsSource(repo_id="nobody/Missing"), ["'nobody/Missing' not found"]),
        (WeightsSource(repo_id=REPO, revision="v9"), ["revision 'v9' not found"]),
    ],
)
def test_not_found_errors(hub, source, needles):
    hub.add_file(REPO, "tiny.pth", pth_bytes(state_dict()))
    with pytest.raises(WeightsError) as err:
        resolve_weights("tiny", source, progress=False)
    msg = one_line(err)
    assert "'tiny'" in msg and hub.endpoint in msg
    for needle in needles:
        assert needle in msg, msg


# ---------------------------------------------------------------------------------------------
# Broken transfers and checksums


def test_truncated_download_is_refused_and_not_cached(hub, cache):
    data = pth_bytes(state_dict(20))
    hub_file = hub.add_file(REPO, "tiny.pth", data, fault="short")
    src = WeightsSource(repo_id=REPO, filename="tiny.pth")
    with pytest.raises(WeightsError) as err:
        resolve_weights("tiny", src, progress=False)
    msg = one_line(err)
    assert "truncated" in msg and f"got {len(data) // 2} of {len(data)} bytes" in msg and "tiny.pth" in msg
    assert blobs(cache) == [] and not is_cached(src)
    hub_file.fault = None  # the network recovers: the next run works
    assert same(load_state_dict(resolve_weights("tiny", src, progress=False).path), state_dict(20))


def test_dropped_connection_is_resumed_with_range(hub):
    # huggingface_hub writes in 10 MiB chunks and resumes after the last complete one, so the file
    # must be large enough for half of it to hold a chunk.
    big = {"big": torch.randn(6_000_000, generator=torch.Generator().manual_seed(21))}
    data = st_save(big)
    hub.add_file(REPO, "big.safetensors", data, fault="drop_once")
    rw = resolve_weights("big", WeightsSource(repo_id=REPO, filename="big.safetensors"), progress=False)
    assert rw.path.read_bytes() == data and same(load_state_dict(rw.path), big)
    ranged = [r.headers.get("Range") or r.headers.get("range") for r in hub.requests if r.path.startswith("/cdn/")]
    assert ranged[0] is None and len(ranged) == 2
    start = int(ranged[1].removeprefix("bytes=").removesuffix("-"))
    assert 0 < start < len(data) // 2
    # huggingface_hub's own line about it is kept for the caller to print after the fetch, not printed
    (said,) = rw.hub_messages
    assert said.startswith(f"Error while downloading from {hub.cdn}/cdn/") and said.endswith(
        "; Trying to resume download...")


def test_served_file_that_is_not_a_checkpoint(hub, cache):
    # found when fetched (for download, classify and eval alike), not when a model first loads it
    hub.add_file(REPO, "tiny.pth", b"<!DOCTYPE html><html>rate limited</html>")
    with pytest.raises(WeightsError) as err:
        resolve_weights("tiny", WeightsSource(repo_id=REPO, filename="tiny.pth"), progress=False)
    msg = one_line(err)
    assert "'tiny'" in msg and "HTML" in msg and "--revision" in msg
    kept = cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / hub.commit(REPO) / "tiny.pth"
    assert msg.endswith(f"it stays in the cache at {kept}") and kept.is_file()  # huggingface_hub's cache, left as is


def legacy_pth_bytes(obj, protocol: int = 2) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=False, pickle_protocol=protocol)
    return buf.getvalue()


@pytest.mark.parametrize("name,data", [
    ("zip.pth", pth_bytes({"model": state_dict(80)})),
    ("legacy.pth", legacy_pth_bytes(state_dict(80))),
    ("legacy5.pt", legacy_pth_bytes(state_dict(80), protocol=5)),
    ("pytorch_model.bin", pth_bytes(state_dict(80))),
    ("model.safetensors", st_save(state_dict(80), metadata={"format": "pt"})),
    ("safetensors.bin", st_save(state_dict(80))),  # the content decides, not the name
], ids=lambda value: value if isinstance(value, str) else "")
def test_every_kind_of_checkpoint_passes_the_check_after_download(hub, name, data):
    hub.add_file(REPO, name, data)
    rw = resolve_weights("tiny", WeightsSource(repo_id=REPO, filename=name), progress=False)
    assert rw.path.read_bytes() == data


SAFETENSORS = st_save(state_dict(81))
ZIP_PTH = pth_bytes(state_dict(81))
LEGACY_PTH = legacy_pth_bytes(state_dict(81))


@pytest.mark.parametrize("name,data,reason", [
    ("empty.pth", b"", "it is empty;"),
    ("pointer.pth", b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 9\n",
     "it is a Git LFS pointer, not the weights;"),  # (no `git lfs pull` advice: of no use for a Hub download)
    ("cut.pth", ZIP_PTH[:-200], "it is a truncated or damaged PyTorch zip checkpoint (its zip directory cannot"),
    ("cut_legacy.pth", legacy_pth_bytes(state_dict(81))[:5], "starts with a pickle opcode but is not a PyTorch "
                                                             "checkpoint, or is cut off"),
    # cut right after torch.save's magic number, and inside the tensor data: truncated, not a checkpoint
    ("magic_only.pth", LEGACY_PTH[:len(pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=2))],
     "it is a truncated PyTorch checkpoint (legacy format: it ends inside its protocol version);"),
    ("cut_data_legacy.pth", LEGACY_PTH[:-10], f"it is a truncated PyTorch checkpoint (legacy format: its tensor data "
                                              f"end at byte {len(LEGACY_PTH)}, the file has {len(LEGACY_PTH) - 10});"),
    ("cut_header.safetensors", SAFETENSORS[:40], "it is a truncated safetensors file (its header alone should take"),
    ("long.safetensors", SAFETENSORS + b"\0" * 7, "it is a damaged safetensors file (7 bytes after the last tensor's"),
    ("bad_json.safetensors", (8).to_bytes(8, "little") + b"{'a': 1}", "its safetensors header is not valid JSON"),
    ("no_offsets.safetensors", (16).to_bytes(8, "little") + b'{"w": {"a": 1}} ',
     "its safetensors header gives tensor 'w' no valid data_offsets"),
], ids=lambda value: value if isinstance(value, str) and value.endswith(WEIGHT_EXTENSIONS) else "")
def test_download_that_is_not_a_checkpoint_is_an_error(hub, name, data, reason):
    hub.add_file(REPO, name, data)
    with pytest.raises(WeightsError) as err:
        resolve_weights("tiny", WeightsSource(repo_id=REPO, filename=name), progress=False)
    msg = one_line(err)
    assert f"downloaded {REPO}@main/{name} ({len(data)} bytes) is not a checkpoint: " in msg
    assert reason in msg, msg


def test_a_damaged_cached_copy_without_a_checksum_may_be_deleted_and_fetched_again(hub, cache):
    # a file stored in git (no sha256 on the Hub) that is damaged in the cache, not on the Hub
    data = pth_bytes(state_dict(82))
    hub.add_file(REPO, "tiny.pth", data, lfs=False)
    src = WeightsSource(repo_id=REPO, filename="tiny.pth")
    rw = resolve_weights("tiny", src, progress=False)
    rw.path.resolve().write_bytes(data[:100])
    with pytest.raises(WeightsError) as err:
        resolve_weights("tiny", src, progress=False)
    msg = one_line(err)
    assert "the cached copy of" in msg and "(if only that copy is damaged, delete it and run again)" in msg
    rw.path.resolve().unlink()
    assert same(load_state_dict(resolve_weights("tiny", src, progress=False).path), state_dict(82))


def test_a_manifest_pin_that_the_hub_file_does_not_match_leaves_the_intact_file_in_the_cache(hub, cache):
    data = pth_bytes(state_dict(30))
    hub.add_file(REPO, "tiny.pth", data)  # LFS: the blob is named by its sha256, so the file is known intact
    wrong = hashlib.sha256(b"the published file").hexdigest()
    src = WeightsSource(repo_id=REPO, filename="tiny.pth", sha256=wrong)
    with pytest.raises(WeightsError) as err:
        resolve_weights("tiny", src, progress=False)
    msg = one_line(err)
    assert f"(sha256 {hashlib.sha256(data).hexdigest()}) is not the file the manifest pins (sha256 {wrong})" in msg
    assert "the Hub file changed" in msg and "stays in the cache" in msg and "'tiny'" in msg
    assert len(blobs(cache)) == 1  # another model naming the same file without the pin still has it
    unpinned = WeightsSource(repo_id=REPO, filename="tiny.pth")
    assert same(load_state_dict(resolve_weights("tiny", unpinned, progress=False).path), state_dict(30))
    assert hub.downloads() == 1
    good = WeightsSource(repo_id=REPO, filename="tiny.pth", sha256=hashlib.sha256(data).hexdigest().upper())
    rw = resolve_weights("tiny", good, progress=False)
    assert rw.sha256 == good.sha256 and same(load_state_dict(rw.path, sha256=rw.sha256), state_dict(30))
    # The manifest's checksum belongs to its revision: another revision is not checked against it.
    hub.add_file(REPO, "tiny.pth", pth_bytes(state_dict(31)), revision="v2")
    assert resolve_weights("tiny", good, revision="v2", progress=False).sha256 is None


def test_a_damaged_cached_copy_is_deleted_and_fetched_afresh_in_the_same_run(hub, cache):
    data = pth_bytes(state_dict(33))
    hub.add_file(REPO, "tiny.pth", data)
    src = WeightsSource(repo_id=REPO, filename="tiny.pth", sha256=hashlib.sha256(data).hexdigest())
    blob = resolve_weights("tiny", src, progress=False).path.resolve()
    blob.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # one bit flipped on disk
    rw = resolve_weights("tiny", src, progress=False)
    assert hub.downloads() == 2 and same(load_state_dict(rw.path, sha256=rw.sha256), state_dict(33))
    assert not rw.cached


def test_offline_a_damaged_cached_copy_is_deleted_with_what_to_do(hub, cache, monkeypatch):
    data = pth_bytes(state_dict(34))
    hub.add_file(REPO, "tiny.pth", data)
    src = WeightsSource(repo_id=REPO, filename="tiny.pth")
    resolve_weights("tiny", src, progress=False).path.resolve().write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError) as err:
        resolve_weights("tiny", src, progress=False)
    msg = one_line(err)
    assert "sha256 mismatch" in msg and "unset HF_HUB_OFFLINE and run again to download it afresh" in msg
    assert blobs(cache) == []
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert same(load_state_dict(resolve_weights("tiny", src, progress=False).path), state_dict(34))


def test_hub_checksum_catches_corruption_without_manifest_sha(hub, cache):
    hub.add_file(REPO, "tiny.pth", pth_bytes(state_dict()), fault="wrong_sha")
    with pytest.raises(WeightsError) as err:
        resolve_weights("tiny", WeightsSource(repo_id=REPO, filename="tiny.pth"), progress=False)
    msg = one_line(err)
    assert "sha256 mismatch" in msg and "Hub" in msg and "deleted" in msg
    assert blobs(cache) == []


# ---------------------------------------------------------------------------------------------
# Picking a file from the repo listing


def test_listing_prefers_safetensors(hub):
    hub.add_file(REPO, "README.md", b"# tiny", lfs=False)
    hub.add_file(REPO, "pytorch_model.bin", pth_bytes(state_dict(40)))
    hub.add_file(REPO, "tiny.pth", pth_bytes(state_dict(41)))
    hub.add_file(REPO, "weights/model.safetensors", st_save(state_dict(42)))
    rw = resolve_weights("tiny", WeightsSource(repo_id=REPO), progress=False)
    assert rw.filename == "weights/model.safetensors" and rw.origin.endswith("@main/weights/model.safetensors")
    assert "weights/model.safetensors" in rw.note and "2 other" in rw.note
    assert same(load_state_dict(rw.path), state_dict(42))
    assert hub.count("GET", f"/api/models/{REPO}/tree/main") == 1
    by_pattern = resolve_weights("tiny", WeightsSource(repo_id=REPO, filename_pattern="*.pth"), progress=False)
    assert by_pattern.filename == "tiny.pth" and same(load_state_dict(by_pattern.path), state_dict(41))
    assert hub.downloads() == 2  # only the chosen files were fetched


def test_listing_follows_the_repo_and_falls_back_to_cache_when_unreachable(hub):
    """Slow (~25 s): huggingface_hub retries a refused listing 5 times with backoff before giving up."""
    hub.add_file(REPO, "tiny.pth", pth_bytes(state_dict(43)))
    src = WeightsSource(repo_id=REPO)
    first = resolve_weights("tiny", src, progress=False)
    assert first.filename == "tiny.pth" and hub.count("GET", "/tree/") == 1 and is_cached(src)
    # main moves on: the old file is gone, a new one appears.
    rev = hub.new_commit(REPO)
    del rev.files["tiny.pth"]
    hub.add_file(REPO, "tiny_v2.pth", pth_bytes(state_dict(44)))
    moved = resolve_weights("tiny", src, progress=False)
    assert moved.filename == "tiny_v2.pth" and moved.commit == rev.commit and hub.count("GET", "/tree/") == 2
    assert same(load_state_dict(moved.path), state_dict(44))
    hub.stop()
    fallback = resolve_weights("tiny", src, progress=False)
    assert fallback.path == moved.path and "unreachable" in fallback.note


def test_listing_ambiguous_or_empty(hub):
    hub.add_file(REPO, "a.safetensors", st_save(state_dict()))
    hub.add_file(REPO, "b.safetensors", st_save(state_dict()))
    hub.add_file("ssmzoo-test/Docs", "README.md", b"nothing here", lfs=False)
    with pytest.raises(WeightsError) as err:
        resolve_weights("tiny", WeightsSource(repo_id=REPO), progress=False)
    msg = one_line(err)
    assert "2 candidate" in msg and "a.safetensors" in msg and "b.safetensors" in msg and "filename" in msg
    assert "'tiny'" in msg and f"--weights hf-hub:{REPO}/FILE" in msg
    with pytest.raises(WeightsError) as err:
        resolve_weights("tiny", WeightsSource(repo_id="ssmzoo-test/Docs"), progress=False)
    assert "no weights file" in one_line(err)
    with pytest.raises(WeightsError) as err:
        resolve_weights("tiny", WeightsSource(repo_id=REPO, filename_pattern="*_ema.pth"), progress=False)
    assert "'*_ema.pth'" in one_line(err)
    assert hub.downloads() == 0


# ---------------------------------------------------------------------------------------------
# --weights overrides


def test_hub_override_forms(hub):
    hub.add_file(REPO, "tiny.pth", pth_bytes(state_dict(50)))
    hub.add_file("someone/Finetuned", "sub/ft.safetensors", st_save(state_dict(51)), revision="v3")
    hub.add_file("someone/Finetuned", "sub/ft.safetensors", st_save(state_dict(52)))
    manifest = WeightsSource(repo_id=REPO, filename="tiny.pth", state_dict_key="model", sha256="0" * 64)

    rw = resolve_weights("tiny", manifest, override="hf-hub:someone/Finetuned/sub/ft.safetensors@v3", progress=False)
    assert rw.origin == "hf-hub:someone/Finetuned@v3/sub/ft.safetensors"
    assert rw.sha256 is None and rw.state_dict_key is None  # the manifest's pins are for another file
    assert same(load_state_dict(rw.path), state_dict(51))

    listed = resolve_weights("tiny", None, override="hf-hub:someone/Finetuned", progress=False)
    assert listed.filename == "sub/ft.safetensors" and same(load_state_dict(listed.path), state_dict(52))

    url = f"{hub.endpoint}/someone/Finetuned/resolve/v3/sub/ft.safetensors"
    assert resolve_weights("tiny", None, override=url, progress=False).path == rw.path

    with pytest.raises(WeightsError) as err:
        resolve_weights("tiny", manifest, override="hf-hub:someone/Finetuned@v3", revision="main", progress=False)
    assert "--revision" in one_line(err)


def test_hub_override_of_the_manifest_repo_keeps_its_file(hub):
    hub.add_file(REPO, "tiny.pth", pth_bytes({"model": state_dict(60)}))
    hub.add_file(REPO, "tiny.pth", pth_bytes({"model": state_dict(61)}), revision="v2")
    manifest = WeightsSource(repo_id=REPO, filename="tiny.pth", state_dict_key="model")
    rw = resolve_weights("tiny", manifest, override=f"hf-hub:{REPO}@v2", progress=False)
    assert rw.filename == "tiny.pth" and rw.state_dict_key == "model"
    assert same(load_state_dict(rw.path, state_dict_key=rw.state_dict_key), state_dict(61))


def test_local_override(hub, tmp_path):
    sd = state_dict(70)
    local = tmp_path / "mine.pth"
    local.write_bytes(pth_bytes(sd))
    rw = resolve_weights("tiny", WeightsSource(repo_id=REPO, filename="tiny.pth", sha256="0" * 64), override=str(local))
    assert rw.path == local.resolve() and rw.origin == f"local:{local.resolve()}" and rw.sha256 is None
    assert same(load_state_dict(rw.path), sd)
    assert hub.requests == []

    (tmp_path / "notes.txt").write_text("x")
    cases = {
        str(tmp_path / "absent.pth"): "absent.pth: no such file or directory",
        "someone/Finetuned": "hf-hub:someone/Finetuned",
        str(tmp_path): "not a file",
        str(tmp_path / "notes.txt"): "notes.txt is not a checkpoint: it is neither a safetensors file nor a PyTorch",
        "ftp://example.com/w.pth": "unsupported --weights URL",
        "hf-hub:justonepart": "hf-hub:ORG/REPO",
    }
    for override, needle in cases.items():
        with pytest.raises(WeightsError) as err:
            resolve_weights("tiny", None, override=override)
        assert needle in one_line(err), str(err.value)


def test_an_empty_override_or_revision_is_refused_not_taken_as_none(hub):
    """An unset shell variable (``--weights "$CKPT"``, ``--revision "$REV"``, ``hf-hub:ORG/REPO@$REV``)
    used to fetch the manifest's weights (or its revision) instead, unsaid; the Hub here has them."""
    hub.add_file(REPO, "tiny.pth", pth_bytes(state_dict(80)))
    src = WeightsSource(repo_id=REPO, filename="tiny.pth")
    cases = [
        (dict(override=""), "--weights '': empty name; give a path"),
        (dict(override="", local_weights=False), "--weights '': empty name; give hf-hub:ORG/REPO[/FILE][@REVISION]"),
        (dict(revision=""), "--revision '': empty name; give a branch, tag or commit"),
        (dict(override=f"hf-hub:{REPO}", revision=""), "--revision '': empty name; give a branch, tag or commit"),
        (dict(override=f"hf-hub:{REPO}@"),
         f"bad --weights 'hf-hub:{REPO}@': revision '': empty name; give a branch, tag or commit, or no @"),
        (dict(override=f"{hub.endpoint}/{REPO}/resolve//tiny.pth"),
         f"bad --weights '{hub.endpoint}/{REPO}/resolve//tiny.pth': revision '': empty name; give a branch, tag "
         "or commit"),
    ]
    for kwargs, message in cases:
        with pytest.raises(WeightsOptionError) as err:
            resolve_weights("tiny", src, progress=False, **kwargs)
        assert one_line(err) == message
        with pytest.raises(WeightsOptionError):  # the check a command makes before fetching anything
            check_weights_request("tiny", src, **kwargs)
    assert hub.requests == []


def test_no_source_and_no_override(hub):
    with pytest.raises(WeightsError) as err:
        resolve_weights("stablemamba_tiny", None)
    msg = one_line(err)
    assert "'stablemamba_tiny'" in msg and "no published weights" in msg and "--weights" in msg


def test_parse_hub_ref():
    ref = parse_hub_ref("hf-hub:org/repo")
    assert (ref.repo_id, ref.filename, ref.revision) == ("org/repo", None, None)
    ref = parse_hub_ref("hf-hub:org/repo/dir/f.pth@refs/pr/1")
    assert (ref.repo_id, ref.filename, ref.revision) == ("org/repo", "dir/f.pth", "refs/pr/1")
    ref = parse_hub_ref("https://huggingface.co/org/repo/blob/main/w.safetensors")
    assert (ref.repo_id, ref.filename, ref.revision) == ("org/repo", "w.safetensors", "main")


def test_free_port_is_really_closed():
    # Guards test_unreachable_endpoint_uses_cache: a stopped FakeHub refuses connections.
    server = FakeHub().start()
    port = server.port
    server.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
