"""`ssmzoo benchmark`: report fields, iteration accounting, FLOP counting against hand counts, peers and
their ratios, option errors. Small models on CPU; speed itself is never asserted."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from ssmzoo import benchmark as bm
from ssmzoo.manifest import load_manifest
from ssmzoo.ops import selective_scan, selective_scan_ref

from conftest import MINI_MANIFEST

FAST = ("--device", "cpu", "--batch-size", "2", "--warmup", "1", "--iters", "3")


def _json(result):
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)


def _one_line_error(result, *needles: str, code: int = 2) -> None:
    """One ``error:`` line; exit code 2 for a bad option (a usage error), 1 for a failed run."""
    assert result.code == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert lines[0].endswith("(see `ssmzoo benchmark --help`)") == (code == 2)
    for needle in needles:
        assert needle in lines[0]
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------------------------------------
# FLOPs
# ---------------------------------------------------------------------------------------------

def test_flop_count_matches_hand_count_for_conv_and_linear():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 5 * 7, 10))
    total, scan = bm.count_flops(model, (3, 5, 7))
    conv = 2 * (3 * 3 * 3) * 8 * (5 * 7)     # multiply-adds per output element x outputs
    linear = 2 * (8 * 5 * 7) * 10
    assert scan == 0
    assert total == conv + linear
    assert next(model.parameters()).device.type == "cpu"  # counted on a copy


class _ScanModel(nn.Module):
    """A Linear, then one selective scan over its output: the scan is invisible to FlopCounterMode."""

    def __init__(self, dim: int, n_state: int, groups: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.A = nn.Parameter(-torch.rand(dim, n_state) - 0.5)
        self.D = nn.Parameter(torch.randn(dim))
        self.n_state, self.groups = n_state, groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (batch, L, dim)
        u = self.proj(x).transpose(1, 2)
        batch, dim, length = u.shape
        bc = torch.ones(batch, self.groups, self.n_state, length, device=x.device)
        return selective_scan(u, u.sigmoid(), self.A, bc, bc, D=self.D, z=u, delta_softplus=True)


@pytest.mark.parametrize("n_state,groups", [(16, 1), (1, 4)])
def test_scan_flops_are_added_analytically(n_state, groups):
    dim, length = 12, 37
    model = _ScanModel(dim, n_state, groups)
    total, scan = bm.count_flops(model, (length, dim))
    per_element = 9 * n_state + 2 + 2  # state update and read-out, D skip, z gate
    assert scan == dim * length * per_element == bm.scan_flops(1, dim, length, n_state, True, True)
    assert total == 2 * length * dim * dim + scan
    # The stub is gone afterwards: the real scan still runs and still matches the float64 reference.
    u, delta = torch.randn(2, dim, length), torch.rand(2, dim, length)
    bc = torch.randn(2, groups, n_state, length)
    out = selective_scan(u, delta, model.A.detach(), bc, bc)
    ref = selective_scan_ref(u, delta, model.A.detach(), bc, bc)
    torch.testing.assert_close(out, ref.to(out.dtype), rtol=1e-4, atol=1e-4)


def test_video_model_flops_count_every_scan(mini_files):
    """videomamba_mini_k400: 2 bidirectional layers = 4 scans of d_inner 128 over 1 + 4*16 tokens, N = 16."""
    entry = load_manifest([mini_files[0]])["videomamba_mini_k400"]
    from ssmzoo.factory import build_model

    model = build_model(entry)
    _, scan = bm.count_flops(model, (3, 4, 64, 64))
    assert scan == 4 * bm.scan_flops(1, 128, 1 + 4 * 16, 16, True, True)


# ---------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------

def test_json_report_fields(cli, mini_files):
    manifest, _ = mini_files
    report = _json(cli("--manifest", manifest, "benchmark", "-m", "groupmamba_mini", *FAST, "--img-size", "64",
                       "--threads", "1", "--json"))
    assert report["errors"] == []
    assert report["config"]["iters"] == 3 and report["config"]["warmup"] == 1
    assert report["environment"]["device"] == "cpu" and report["environment"]["threads"] == 1
    assert any("random weights" in note for note in report["notes"])
    (row,) = report["results"]
    assert row["name"] == "groupmamba_mini" and row["kind"] == "ssmzoo" and row["unit"] == "img"
    assert row["input_shape"] == [2, 3, 64, 64]
    assert row["iters"] == 3 and len(row["latencies_ms"]) == 3
    assert row["samples_per_s"] > 0
    assert row["latency_ms_median"] <= row["latency_ms_p90"] <= max(row["latencies_ms"])
    assert row["peak_mem_mib"] is None  # CPU
    import timm

    ref = timm.create_model("groupmamba_tiny", stem_hidden_dim=16, embed_dims=[32, 64, 96, 128],
                            mlp_ratios=[8, 8, 4, 4], depths=[1, 2, 2, 1])
    assert row["params"] == sum(p.numel() for p in ref.parameters())
    assert 0 < row["gflops_scan"] < row["gflops"]
    assert report["ratios"] == []


def test_table_output(cli, mini_files):
    manifest, _ = mini_files
    result = cli("--manifest", manifest, "benchmark", "-m", "groupmamba_mini", *FAST, "--img-size", "64")
    assert result.code == 0, result.stderr
    assert "groupmamba_mini" in result.stdout and "img/s" in result.stdout and "random weights" in result.stdout


def test_threads_option_is_restored(cli, mini_files):
    before = torch.get_num_threads()
    _json(cli("--manifest", mini_files[0], "benchmark", "-m", "groupmamba_mini", *FAST, "--img-size", "32",
              "--threads", "1", "--json"))
    assert torch.get_num_threads() == before


def test_exactly_warmup_plus_iters_forward_passes(monkeypatch, mini_files):
    calls = []

    class Counting(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.device.type != "meta":  # the FLOP count runs on a meta copy
                calls.append(x.shape[0])
            return self.conv(x).mean((2, 3))

    monkeypatch.setattr(bm, "build_model", lambda entry, overrides=None: Counting())
    entry = load_manifest([mini_files[0]])["groupmamba_mini"]
    report = bm.run_benchmark([entry], bm.BenchConfig(batch_size=3, device="cpu", warmup=2, iters=5, img_size=16))
    assert calls == [3] * 7
    (row,) = report.results
    assert row.iters == 5 and len(row.latencies_ms) == 5
    assert row.gflops * 1e9 == pytest.approx(2 * 27 * 4 * 14 * 14)
    assert row.samples_per_s == pytest.approx(3 * 5 / (sum(row.latencies_ms) / 1e3), rel=1e-3)

    calls.clear()  # without --batch-size: one image per pass on a CPU (128 on CUDA)
    report = bm.run_benchmark([entry], bm.BenchConfig(device="cpu", warmup=1, iters=2, img_size=16))
    assert calls == [1] * 3 and report.config["batch_size"] == 1


def test_a_model_compiled_with_its_own_inductor_settings_says_so(monkeypatch, mini_files):
    """Peers compile with Inductor's defaults, so a ratio under --compile is only fair if the report
    says what the model's compile did differently. (torch.compile itself is stubbed: a CPU compile of
    the model is not what this checks.)"""

    class WithSettings(nn.Conv2d):
        inductor_options = {"cpu": {"force_shape_pad": True}}

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x).mean((2, 3))

    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: model)
    monkeypatch.setattr(bm, "build_model", lambda entry, overrides=None: WithSettings(3, 4, 3))
    entry = load_manifest([mini_files[0]])["groupmamba_mini"]
    report = bm.run_benchmark([entry], bm.BenchConfig(batch_size=2, device="cpu", warmup=1, iters=1, img_size=16,
                                                      compile=True))
    note = "groupmamba_mini compiled with its own Inductor settings (force_shape_pad=True)"
    assert report.results[0].notes == [note] and note in report.notes


def test_peers_give_ratios(cli, mini_files):
    manifest, _ = mini_files
    report = _json(cli("--manifest", manifest, "benchmark", "-m", "groupmamba_mini", *FAST, "--img-size", "64",
                       "--peer", "test_convnext", "--peer", "test_vit", "--channels-last", "--json"))
    names = [r["name"] for r in report["results"]]
    assert names == ["groupmamba_mini", "test_convnext", "test_vit"]
    model, *peers = report["results"]
    assert model["channels_last"] is True
    assert [p["channels_last"] for p in peers] == [True, False]  # channels_last for CNN peers only
    for peer in peers:
        assert peer["kind"] == "peer" and peer["group"] == "groupmamba_mini"
        assert peer["iters"] == 3 and peer["samples_per_s"] > 0 and peer["gflops"] > 0
        assert peer["ratio"] == pytest.approx(model["samples_per_s"] / peer["samples_per_s"])
        assert peer["ratio_median"] == pytest.approx(peer["latency_ms_median"] / model["latency_ms_median"])
    assert [(r["model"], r["peer"]) for r in report["ratios"]] == [("groupmamba_mini", "test_convnext"),
                                                                    ("groupmamba_mini", "test_vit")]


def test_video_model_peer_runs_on_the_same_tokens(cli, mini_files):
    manifest, _ = mini_files
    report = _json(cli("--manifest", manifest, "benchmark", "-m", "videomamba_mini_k400", *FAST, "--frames", "3",
                       "--peer", "test_vit", "--json"))
    model, peer = report["results"]
    assert model["unit"] == "clip" and model["input_shape"] == [2, 3, 3, 64, 64]
    assert peer["tokens"] == 1 + 3 * (64 // 16) ** 2 and "[49 tokens]" in peer["name"]
    assert peer["input_shape"] == model["input_shape"]
    assert peer["ratio"] == pytest.approx(model["samples_per_s"] / peer["samples_per_s"])


def test_token_vit_attends_over_the_whole_clip():
    import timm

    vit = timm.create_model("test_vit", img_size=32, num_classes=5)
    peer = bm.TokenViT(vit, frames=3).eval()
    seen = []
    peer.vit.blocks[0].register_forward_hook(lambda mod, args, out: seen.append(tuple(args[0].shape)))
    with torch.no_grad():
        out = peer(torch.randn(2, 3, 3, 32, 32))
    assert out.shape == (2, 5)
    assert seen == [(2, 1 + 3 * 4, 64)] and peer.num_tokens == 13


def test_default_peers_follow_the_issue():
    entries = load_manifest()
    specs, note = bm.default_peers(entries["groupmamba_tiny"], SimpleNamespace())
    assert [s.name for s in specs] == list(bm.GROUPMAMBA_PEERS) and note is None
    assert "convnext_small" in bm.GROUPMAMBA_PEERS and "resnet50" in bm.GROUPMAMBA_PEERS
    specs, note = bm.default_peers(entries["videomamba_tiny_in1k"], SimpleNamespace(embed_dim=192))
    assert [(s.name, s.tokens) for s in specs] == [("deit_tiny_patch16_224", False)] and note is None
    specs, note = bm.default_peers(entries["videomamba_middle_k400_f16"], SimpleNamespace(embed_dim=576))
    assert [(s.name, s.tokens) for s in specs] == [("deit_small_patch16_224", True), ("deit_base_patch16_224", True)]
    assert "576" in note
    specs, _ = bm.default_peers(entries["stablemamba_base_in1k"], SimpleNamespace(embed_dim=768))
    assert [s.name for s in specs] == ["deit_base_patch16_224"]


# ---------------------------------------------------------------------------------------------
# Errors: one line each
# ---------------------------------------------------------------------------------------------

def test_a_model_named_twice_is_benchmarked_once_with_a_note(cli, mini_files):
    # it was dropped without a word (and GroupMamba_Mini, the same model, was timed twice); as download says it
    res = cli("--manifest", mini_files[0], "benchmark", "-m", "groupmamba_mini", "-m", "GroupMamba_Mini",
              "-m", "groupmamba_mini", *FAST, "--img-size", "32", "--json")
    assert [r["name"] for r in _json(res)["results"]] == ["groupmamba_mini"]
    assert res.stderr == "note: groupmamba_mini given more than once; each model is benchmarked once\n"


def test_a_typo_beside_all_is_an_error_not_ignored(cli):
    # 'all' runs the zoo; the other names were not looked at, so a typo among them passed without a word
    _one_line_error(cli("benchmark", "-m", "all", "-m", "groupmamba_tinyy", "--device", "cpu"), "unknown model",
                    "groupmamba_tiny")


def test_cuda_graphs_on_cpu_is_one_line(cli, mini_files):
    _one_line_error(cli("--manifest", mini_files[0], "benchmark", "-m", "groupmamba_mini", *FAST, "--cuda-graphs"),
                    "--cuda-graphs", "CUDA")


def test_unknown_model_is_one_line(cli):
    _one_line_error(cli("benchmark", "-m", "groupmamba_tinyy", "--device", "cpu"), "unknown model", "groupmamba_tiny")


def test_bad_options_are_one_line(cli, mini_files):
    manifest = mini_files[0]
    _one_line_error(cli("--manifest", manifest, "benchmark", "-m", "groupmamba_mini", *FAST, "--frames", "4"),
                    "--frames")
    _one_line_error(cli("--manifest", manifest, "benchmark", "-m", "groupmamba_mini", *FAST, "--dtype", "fp8"),
                    "--dtype")
    _one_line_error(cli("benchmark", "--device", "cpu"), "--model")
    _one_line_error(cli("benchmark", "--op", "matmul"), "--op")
    _one_line_error(cli("benchmark", "--op", "scan", "--op-args", "'unclosed"), "--op-args", "No closing quotation")
    # an unknown peer is reported before anything is timed, not after the ssmzoo model's run
    res = cli("--manifest", manifest, "benchmark", "-m", "groupmamba_mini", *FAST, "--img-size", "32",
              "--peer", "no_such_timm_model", "--json")
    _one_line_error(res, "--peer no_such_timm_model", "not a timm model")
    assert res.stdout == ""


def test_non_vit_peer_for_video_models_is_a_usage_error_before_anything_runs(cli, mini_files):
    res = cli("--manifest", mini_files[0], "benchmark", "-m", "videomamba_mini_k400", *FAST,
              "--peer", "test_convnext", "--json")
    _one_line_error(res, "--peer test_convnext", "ViT")
    assert res.stdout == ""


def test_non_vit_peer_is_skipped_only_for_the_video_models_of_a_mixed_list(cli, mini_files):
    # a CNN is a fine peer for the image model; for the video model it is skipped, and the video model is still
    # timed (its whole group used to fail, its own figures lost with it)
    res = cli("--manifest", mini_files[0], "benchmark", "-m", "groupmamba_mini", "-m", "videomamba_mini_k400",
              *FAST, "--img-size", "32", "--peer", "test_convnext", "--json")
    _one_line_error(res, "videomamba_mini_k400: peer test_convnext skipped: video models are compared with a ViT",
                    code=1)
    rows = [(r["group"], r["name"]) for r in json.loads(res.stdout)["results"]]
    assert rows == [("groupmamba_mini", "groupmamba_mini"), ("groupmamba_mini", "test_convnext"),
                    ("videomamba_mini_k400", "videomamba_mini_k400")]


@pytest.mark.parametrize("warmup", ["0", "1"])
def test_a_peer_that_cannot_run_at_the_size_is_skipped_and_the_rest_timed(cli, mini_files, warmup):
    # ConvNeXt's feature maps shrink below its 2x2 downsampling kernel under 32 px: the whole group failed with
    # torch's conv message (and with --warmup 0 the first forward ran untried in the timed loop: a traceback)
    res = cli("--manifest", mini_files[0], "benchmark", "-m", "groupmamba_mini", "--device", "cpu", "--batch-size",
              "2", "--warmup", warmup, "--iters", "2", "--img-size", "20", "--peer", "test_convnext", "--peer",
              "test_resnet", "--json")
    _one_line_error(res, "groupmamba_mini: peer test_convnext skipped: forward failed on input (2, 3, 20, 20) "
                         "(input 20x20 is too small for it: its feature maps shrink below a kernel): RuntimeError: ",
                    code=1)
    report = json.loads(res.stdout)
    model, peer = report["results"]
    assert (model["name"], peer["name"]) == ("groupmamba_mini", "test_resnet")
    assert model["iters"] == peer["iters"] == 2 and peer["ratio"] > 0
    assert report["ratios"] == [{"model": "groupmamba_mini", "peer": "test_resnet", "ratio": peer["ratio"],
                                 "ratio_median": peer["ratio_median"]}]


@pytest.mark.parametrize("model, name", [("videomamba_mini_k400", "test_vit [9 tokens]"),
                                         ("groupmamba_mini", "test_vit")])
def test_a_dynamic_size_vit_peer_at_a_size_its_patch_does_not_divide_reads_the_whole_patches(cli, mini_files,
                                                                                           model, name):
    # test_vit (timm's dynamic_img_size) asserts in its forward that 16 divides the input: the group failed
    # with "AssertionError: Input height (40) should be divisible by patch size (16)." and no figures at all.
    # It now reads the 32x32 its patches cover, as VideoMamba's 16-px patches do: the same 1 + 2 * 4 tokens
    frames = ("--frames", "2") if model.startswith("video") else ()
    report = _json(cli("--manifest", mini_files[0], "benchmark", "-m", model, *FAST, *frames, "--img-size", "40",
                       "--peer", "test_vit", "--json"))
    assert [r["name"] for r in report["results"]] == [model, name] and report["errors"] == []
    assert report["results"][1]["input_shape"] == report["results"][0]["input_shape"]
    assert ("test_vit: its patch embedding (timm's dynamic_img_size) refuses --img-size 40, not a multiple of its "
            "16x16 patches: it reads the top-left 32x32 pixels of each input (the pixels past the last whole patch "
            "are dropped)") in report["notes"]


def test_a_peer_below_one_patch_is_skipped_with_the_video_model_still_timed(cli, mini_files):
    # a 32-px-patch ViT at --img-size 20 (VideoMamba's 16-px patches take it): it failed the whole group
    res = cli("--manifest", mini_files[0], "benchmark", "-m", "videomamba_mini_k400", *FAST, "--frames", "2",
              "--img-size", "20", "--peer", "vit_small_patch32_224", "--peer", "test_vit", "--json")
    _one_line_error(res, "videomamba_mini_k400: peer vit_small_patch32_224 skipped: --img-size 20 is smaller than "
                         "its 32x32 patches", code=1)
    names = [r["name"] for r in json.loads(res.stdout)["results"]]
    assert names == ["videomamba_mini_k400", "test_vit [3 tokens]"]


def test_a_peer_timm_will_not_build_at_the_size_is_built_for_the_multiple_of_its_patch_below(cli, mini_files):
    # XCiT's constructor asserts that its patch divides img_size: timm's AssertionError escaped as a traceback
    res = cli("--manifest", mini_files[0], "benchmark", "-m", "groupmamba_mini", *FAST, "--img-size", "40",
              "--peer", "xcit_nano_12_p16_224", "--json")
    report = _json(res)
    assert [r["name"] for r in report["results"]] == ["groupmamba_mini", "xcit_nano_12_p16_224"]
    assert report["results"][1]["input_shape"] == [2, 3, 40, 40] and report["errors"] == []
    assert ("xcit_nano_12_p16_224: timm cannot build it for --img-size 40 (AssertionError: `patch_size` should "
            "divide image dimensions evenly); built for 32 instead, the largest size below that it takes (a multiple "
            "of its patch size 16): it reads the top-left 32x32 pixels of each input") in report["notes"]
    assert "Traceback" not in res.stderr


def test_a_video_peer_timm_will_not_build_at_the_size_runs_on_the_tokens_it_can_take(cli, mini_files):
    # the hybrid ViT (a ResNet stem, then 8-px patches) refuses 40 px as XCiT does; the clip's frames are cropped
    res = cli("--manifest", mini_files[0], "benchmark", "-m", "videomamba_mini_k400", *FAST, "--frames", "2",
              "--img-size", "40", "--peer", "vit_tiny_r_s16_p8_224", "--json")
    report = _json(res)
    model, peer = report["results"]
    assert peer["name"].startswith("vit_tiny_r_s16_p8_224 [") and peer["input_shape"] == model["input_shape"]
    assert any(n.startswith("vit_tiny_r_s16_p8_224: timm cannot build it for --img-size 40 (AssertionError); "
                            "built for 32 instead, the largest size below that it takes") for n in report["notes"])


def test_vits_whose_blocks_take_extra_arguments_are_not_token_peers():
    # EVA's rotary embedding and XCiT's grid size go to each block: TokenViT's blocks(x) failed mid-run
    assert not bm._timm_is_token_vit("eva02_tiny_patch14_224")
    assert not bm._timm_is_token_vit("xcit_nano_12_p16_224")
    assert bm._timm_is_token_vit("test_vit")


def test_input_smaller_than_one_patch_fails_that_model_in_one_line(cli, mini_files):
    # the patch embedding's convolution would fail deep in the forward pass; GroupMamba takes any size.
    # VideoMamba's constructor refuses the size itself: the error names the option, not the manifest's arch_args
    res = cli("--manifest", mini_files[0], "benchmark", "-m", "videomamba_mini_k400", *FAST, "--img-size", "10")
    _one_line_error(res, "videomamba_mini_k400: videomamba_tiny_video cannot be built with --img-size 10 "
                         "(img_size 10 is smaller than one patch of 16 pixels)", code=1)
    assert "arch_args" not in res.stderr
    assert res.stdout == ""  # no table, so none of the notes that explain it


def test_an_input_below_a_patch_of_a_model_built_at_its_own_size_is_named_too(cli, tmp_path, mini_files):
    # without img_size in arch_args the model is built for 224 and --img-size reaches only the input
    manifest = tmp_path / "m.yaml"
    manifest.write_text(MINI_MANIFEST.replace("{img_size: 64, embed_dim: 64", "{embed_dim: 64")
                        .replace("input_size: [3, 64, 64]", "input_size: [3, 224, 224]"))
    res = cli("--manifest", manifest, "benchmark", "-m", "videomamba_mini_k400", *FAST, "--img-size", "10")
    _one_line_error(res, "videomamba_mini_k400: --img-size 10 is smaller than its 16x16 patches", code=1)


def _tubelets_of_two(tmp_path, arch_args: str = "kernel_size: 2"):
    """The mini manifest with VideoMamba's frames cut into tubelets (here of two frames)."""
    manifest = tmp_path / "tubelets.yaml"
    manifest.write_text(MINI_MANIFEST.replace("num_frames: 4}\n    task", f"num_frames: 4, {arch_args}}}\n    task"))
    return manifest


def test_frames_below_one_tubelet_name_the_option(cli, tmp_path):
    # the constructor refuses num_frames 1 for tubelets of 2 frames; --frames set it, not the manifest
    res = cli("--manifest", _tubelets_of_two(tmp_path), "benchmark", "-m", "videomamba_mini_k400", "-m",
              "groupmamba_mini", *FAST, "--frames", "1", "--json")
    _one_line_error(res, "videomamba_mini_k400: videomamba_tiny_video cannot be built with --frames 1 "
                         "(num_frames 1 gives no tubelet of kernel_size 2 frames; expected num_frames >= 2)", code=1)
    assert "arch_args" not in res.stderr
    assert [r["name"] for r in json.loads(res.stdout)["results"]] == ["groupmamba_mini"]  # the others still run


def test_a_bad_arch_args_value_under_an_option_still_names_the_manifest_field(cli, tmp_path):
    manifest = _tubelets_of_two(tmp_path, "kernel_size: 0")
    res = cli("--manifest", manifest, "benchmark", "-m", "videomamba_mini_k400", *FAST, "--frames", "2")
    _one_line_error(res, f"{manifest}: model 'videomamba_mini_k400', field 'arch_args': videomamba_tiny_video "
                         "cannot be built with {'img_size': 64, 'embed_dim': 64, 'depth': 2, 'kernel_size': 0} and "
                         "--frames 2 (kernel_size must be a positive number of frames, got 0)", code=1)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without a GPU")
def test_scan_op_without_cuda_is_one_line(cli):
    _one_line_error(cli("benchmark", "--op", "scan"), "--op scan")


def test_half_precision_on_the_cpu_and_no_warmup_are_noted(cli, mini_files):
    report = _json(cli("--manifest", mini_files[0], "benchmark", "-m", "groupmamba_mini", "--device", "cpu",
                       "--batch-size", "1", "--warmup", "0", "--iters", "2", "--img-size", "64", "--dtype", "bf16",
                       "--json"))
    assert any(n.startswith("--dtype bf16 on the CPU: half precision is emulated") for n in report["notes"])
    # two timed iterations: the median is half the cold one, so it is no refuge
    assert any(n.startswith("--warmup 0 with --iters 2: every figure, the median too, includes the first "
                            "iteration's one-time costs") for n in report["notes"])
    assert not any(n.startswith("--warmup 0: ") for n in report["notes"])
    plain = _json(cli("--manifest", mini_files[0], "benchmark", "-m", "groupmamba_mini", *FAST, "--img-size", "64",
                      "--json"))
    assert not any("half precision" in n or "--warmup 0" in n for n in plain["notes"])


@pytest.mark.parametrize("iters, note", [
    ("1", "--warmup 0 with --iters 1: every figure, the median too, includes the first iteration's one-time costs "
          "(allocation, kernel selection); raise --warmup, or --iters to 3 or more"),
    ("3", "--warmup 0: the first timed iteration carries one-time costs (allocation, kernel selection), so the "
          "median is the figure to read"),  # outvoted by the two after it
])
def test_no_warmup_advice_depends_on_how_many_iterations_outvote_the_cold_one(cli, mini_files, iters, note):
    res = cli("--manifest", mini_files[0], "benchmark", "-m", "groupmamba_mini", "--device", "cpu", "--batch-size",
              "1", "--warmup", "0", "--iters", iters, "--img-size", "32")
    assert res.code == 0, res.stderr
    assert f"note: {note}" in " ".join(res.stdout.split())


def test_a_busy_machine_is_noted(cli, mini_files, monkeypatch):
    cpus = os.cpu_count()
    monkeypatch.setattr(os, "getloadavg", lambda: (cpus + 10.5, 1.0, 1.0))
    report = _json(cli("--manifest", mini_files[0], "benchmark", "-m", "groupmamba_mini", *FAST, "--img-size", "32",
                       "--json"))
    note = (f"the 1-minute load average was {cpus + 10.5:.2f} on {cpus} CPU{'s' if cpus > 1 else ''} before the run: "
            "other work may have slowed these figures; rerun on an idle machine to compare")
    assert report["environment"]["load_average"][0] == cpus + 10.5 and note in report["notes"]
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    idle = _json(cli("--manifest", mini_files[0], "benchmark", "-m", "groupmamba_mini", *FAST, "--img-size", "32",
                     "--json"))
    assert not any("load average" in n for n in idle["notes"])


def test_small_figures_keep_three_significant_digits():
    from ssmzoo.benchmark import figure

    assert [figure(v, 2) for v in (0.005, 0.0123, 0.5, 1.234, 1234.5)] == ["0.005", "0.0123", "0.50", "1.23", "1,234.50"]
    assert [figure(v, 1) for v in (0.038, 0.04, 12.34, 0.0)] == ["0.038", "0.04", "12.3", "0.0"]


def _row(name: str, kind: str = "ssmzoo", **fields) -> bm.BenchResult:
    values = dict(name=name, kind=kind, group="m", unit="img", input_shape=[1, 3, 32, 32], batch_size=1, iters=2,
                  warmup=1, samples_per_s=10.0, latency_ms_median=100.0, latency_ms_p90=110.0,
                  latencies_ms=[100.0, 110.0], params=1_000_000, gflops=1.0, gflops_scan=0.1, peak_mem_mib=None)
    return bm.BenchResult(**{**values, **fields})


def _table_text(*rows: bm.BenchResult) -> str:
    from rich.console import Console

    config = dict(compile=False, channels_last=False, cuda_graphs=False, dtype="fp32", batch_size=1, warmup=1, iters=2)
    console = Console(width=250, record=True, file=open(os.devnull, "w"))
    console.print(bm.results_table(bm.BenchReport(config=config, environment={"device": "cpu"}, results=list(rows))))
    return console.export_text()


def test_gflops_keep_three_significant_digits_in_the_table():
    # 2 decimals showed a small model's 0.0123 GFLOPs as 0.01 (and 0.004 as 0.00)
    text = _table_text(_row("a", gflops=0.0123), _row("b", gflops=0.004), _row("c", gflops=9.321))
    assert "0.0123" in text and "0.004" in text and "9.32" in text and "0.01 " not in text


def test_the_table_leaves_out_columns_no_row_fills():
    # without peers the ratio columns were always empty, and so was peak memory on the CPU
    alone = _table_text(_row("a"))
    assert "ssmzoo/peer" not in alone and "(by median)" not in alone and "peak mem" not in alone
    assert "params (M)" in alone and "GFLOPs" in alone and "ms/batch (median)" in alone
    both = _table_text(_row("a", peak_mem_mib=12.0), _row("p", "peer", ratio=0.5, ratio_median=0.52, peak_mem_mib=30.0))
    assert "ssmzoo/peer" in both and "(by median)" in both and "peak mem (MiB)" in both
    assert "0.50x" in both and "0.52x" in both


def test_the_progress_line_uses_the_tables_figures(cli, mini_files, monkeypatch):
    # it printed f"{0.599:,.1f}" = 0.6 where the table said 0.599 (and 0.0 for a very slow model)
    def fake_run(entries, cfg, on_group=None):
        rows = [_row("groupmamba_mini", samples_per_s=0.599), _row("x", samples_per_s=0.00432)]
        for row in rows:
            on_group(row.name, [row], None)
        return bm.BenchReport(config={}, environment={}, results=[])

    monkeypatch.setattr(bm, "run_benchmark", fake_run)
    res = cli("--manifest", mini_files[0], "benchmark", "-m", "groupmamba_mini", "--device", "cpu")
    assert res.code == 0, res.stderr
    assert res.stderr.splitlines() == ["groupmamba_mini: 0.599 img/s", "x: 0.00432 img/s"]


def test_compile_mode_without_compile_is_a_usage_error(cli, mini_files):
    # it used to time the eager model and report compile_mode max-autotune beside compile false
    res = cli("--manifest", mini_files[0], "benchmark", "-m", "groupmamba_mini", "--compile-mode", "max-autotune")
    assert res.code == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines()[-1].startswith("error: --compile-mode max-autotune applies to compiled "
                                                          "models: add --compile")



def test_more_threads_than_cpus_is_noted_with_the_report(cli, mini_files):
    # 999 threads on 2 CPUs ran ~90x slower and the header said "999 threads"; the note went to stderr only,
    # so --json and the notes under the table left it out. Taken as asked (not clamped), noted with the report.
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    args = ("--manifest", mini_files[0], "benchmark", "-m", "groupmamba_mini", *FAST, "--img-size", "32")
    res = cli(*args, "--threads", cpus + 1, "--json")
    report = _json(res)
    assert report["environment"]["threads"] == cpus + 1  # not clamped
    note = (f"--threads {cpus + 1} is more than the {cpus} CPU{'s' if cpus > 1 else ''} this process may use: "
            f"oversubscribed (the threads take turns), so the figures are likely slower than with --threads {cpus}")
    assert note in report["notes"] and "--threads" not in res.stderr
    table = cli(*args, "--threads", cpus + 1)
    assert table.code == 0 and f"note: {note}" in " ".join(table.stdout.split())
    assert not any("--threads" in n for n in _json(cli(*args, "--threads", cpus, "--json"))["notes"])


def test_usable_cpus_follow_the_affinity_mask(monkeypatch):
    # a container or taskset may allow fewer CPUs than the machine has: those are the ones threads share
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert bm.usable_cpus() == (2, "this process may use")
    assert bm.threads_note(3).startswith("--threads 3 is more than the 2 CPUs this process may use")
    monkeypatch.delattr(os, "sched_getaffinity")
    assert bm.usable_cpus() == (64, "this machine has") and bm.threads_note(3) is None


def test_a_peer_named_twice_is_timed_once_with_a_note(cli, mini_files):
    # --peer test_convnext --peer test_convnext timed it twice: two identical rows
    res = cli("--manifest", mini_files[0], "benchmark", "-m", "groupmamba_mini", *FAST, "--img-size", "32",
              "--peer", "test_convnext", "--peer", "test_convnext", "--json")
    report = _json(res)
    assert [r["name"] for r in report["results"]] == ["groupmamba_mini", "test_convnext"]
    assert report["config"]["peer_names"] == ["test_convnext"]
    assert res.stderr == "note: test_convnext given more than once; each peer is benchmarked once\n"


@pytest.mark.parametrize("name", ["", "  "])
def test_an_empty_peer_name_says_so(cli, mini_files, name):
    # it said "--peer : not a timm model (... list_models('**') ...)"
    res = cli("--manifest", mini_files[0], "benchmark", "-m", "groupmamba_mini", *FAST, "--peer", name)
    _one_line_error(res, f"--peer {name!r}: the name is empty")
    assert "timm.list_models" not in res.stderr and res.stdout == ""


def test_params_that_follow_the_input_size_are_noted(cli, mini_files):
    # VideoMamba's position embeddings are sized to the input: at another --img-size the params column is
    # not the published model's count
    def run(*extra):
        return _json(cli("--manifest", mini_files[0], "benchmark", "-m", "videomamba_mini_k400", *FAST,
                         "--frames", "2", *extra, "--json"))

    report = run("--img-size", "32")
    (row,) = report["results"]
    notes = [n for n in report["notes"] if "parameters as built" in n]
    assert len(notes) == 1 and notes[0].startswith(f"videomamba_mini_k400: {row['params']:,} parameters as built "
                                                   "for --img-size 32 --frames 2, ")
    assert "at its manifest size (sized to the input: pos_embed, temporal_pos_embedding)" in notes[0]
    assert not any("parameters as built" in n for n in
                   _json(cli("--manifest", mini_files[0], "benchmark", "-m", "groupmamba_mini", *FAST, "--img-size",
                             "32", "--json"))["notes"])



def test_a_size_that_is_not_a_multiple_of_the_patch_is_noted(cli, mini_files):
    # VideoMamba's 16-px patch embedding drops the pixels past the last whole patch: 40 px is timed as 32
    def notes(size):
        return _json(cli("--manifest", mini_files[0], "benchmark", "-m", "videomamba_mini_k400", *FAST,
                         "--img-size", size, "--frames", "2", "--json"))["notes"]

    assert ("videomamba_mini_k400: --img-size 40 is not a multiple of its 16x16 patches: it sees 32x32 of each "
            "input (the pixels past the last whole patch are dropped)") in notes(40)
    assert not any("not a multiple" in n for n in notes(48))


def test_every_stem_that_drops_pixels_is_noted_and_padded_stems_are_not(mini_files):
    # the note looked for patch_embed.patch_size only: ConvNeXt's 4x4 patchify stem dropped pixels unnoticed
    import timm

    convnext = timm.create_model("test_convnext", pretrained=False)
    assert bm._check_input_size("test_convnext", convnext, 33, 34) == (
        "test_convnext: --img-size 33x34 is not a multiple of its 4x4 patches: it sees 32x32 of each input "
        "(the pixels past the last whole patch are dropped)")
    assert bm._check_input_size("test_convnext", convnext, 32, 32) is None
    # GroupMamba's stem (7x7 stride 2 padding 3, then 3x3 stride 2 padding 1) and ResNet's pad: every pixel is read
    entry = load_manifest([mini_files[0]])["groupmamba_mini"]
    from ssmzoo.factory import build_model

    for model in (build_model(entry), timm.create_model("resnet18", pretrained=False)):
        assert all(bm._check_input_size("m", model, size, size) is None for size in (33, 35, 47))
    # a conv that is not a patchify one but still ends short of the edge
    odd = nn.Sequential(nn.Conv2d(3, 4, kernel_size=3, stride=2))
    assert bm._check_input_size("odd", odd, 34, 34) == (
        "odd: --img-size 34 does not fit its first conv's 3x3 kernel at stride 2x2: it sees 33x33 of each input "
        "(the pixels past its last window are dropped)")


def test_frames_past_the_last_tubelet_are_noted():
    import timm

    model = timm.create_model("videomamba_tiny_video", img_size=32, embed_dim=32, depth=1, num_frames=4,
                              kernel_size=2, num_classes=3)
    assert bm._check_input_size("vm", model, 32, 32, frames=5) == (
        "vm: 5 frames are not a multiple of its tubelet of 2: it sees 4 of each clip's frames")
    assert bm._check_input_size("vm", model, 32, 32, frames=4) is None
