"""Video input: authors' frame sampling, PyAV decoding, views, errors, class-name files."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from ssmzoo import video as V
from ssmzoo.errors import InputError, SsmzooError
from ssmzoo.video import (
    VideoProtocol,
    decode_frames,
    load_class_names,
    load_video_views,
    probe_video,
    sample_frame_indices,
)

from video_fixtures import (
    has_encoder,
    index_frame,
    read_index,
    truncate,
    write_audio_only,
    write_mp4,
    write_video,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def vids(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    return {
        "v30": write_mp4(d / "v30.mp4", 30),
        "v5": write_mp4(d / "v5.mp4", 5),
        "v240": write_mp4(d / "v240.mp4", 240, gop=10),
        "v240_gop250": write_mp4(d / "v240_gop250.mp4", 240),
        "dir": d,
    }


def _ordinal_protocol(**kw) -> VideoProtocol:
    base = dict(num_frames=16, sampling="sparse", clips=4, crops=3, short_side=224, crop_size=224)
    base.update(kw)
    return VideoProtocol(**base)


# ----------------------------------------------------------------------------- class names


def test_kinetics400_class_names():
    names = load_class_names("kinetics-400")
    assert len(names) == 400 and len(set(names)) == 400
    assert names[0] == "abseiling" and names[1] == "air drumming" and names[5] == "archery"
    assert names[208] == "passing American football (in game)"
    assert names[209] == "passing American football (not in game)"
    assert names[399] == "zumba"
    # the official class list, alphabetically sorted, is the index order of the released heads
    assert names == sorted(names)
    assert load_class_names("k400") == names


def test_ssv2_class_names():
    names = load_class_names("ssv2")
    assert len(names) == 174 and len(set(names)) == 174
    # index values of the official something-something-v2-labels.json
    assert names[0] == "Approaching something with your camera"
    assert names[1] == "Attaching something to something"
    assert names[16] == "Holding something"
    assert names[109] == "Putting something on a surface"
    assert names[173] == "Wiping something off of something"
    assert names == sorted(names)
    assert all("[" not in n for n in names)  # templates with placeholders removed, as in the json


def test_unknown_label_set():
    with pytest.raises(ValueError, match="imagenet"):
        load_class_names("imagenet")


# ----------------------------------------------------------------------------- protocol


def test_protocol_from_dict_roundtrip():
    d = {"num_frames": 8, "sampling": "segment", "clips": 2, "crops": 3, "short_side": 224,
         "crop_size": 224}
    p = VideoProtocol.from_dict(d)
    assert (p.num_frames, p.sampling, p.clips, p.crops) == (8, "segment", 2, 3)
    assert VideoProtocol.from_dict(p.to_dict()) == p
    assert VideoProtocol.from_dict({}) == VideoProtocol()


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"num_frames": 0}, "num_frames"),
        ({"num_frames": "16"}, "num_frames"),
        ({"num_frames": True}, "num_frames"),
        ({"num_frames": 16.0}, "num_frames"),
        ({"sampling": "random"}, "sampling"),
        ({"clips": 0}, "clips"),
        ({"crops": -3}, "crops"),
        ({"short_side": 0}, "short_side"),
        ({"crop_size": 256}, "crop_size"),
        ({"frame_stride": 0}, "frame_stride"),
        ({"frames": 16}, "frames"),
    ],
)
def test_protocol_from_dict_names_bad_field(bad, field):
    with pytest.raises(ValueError, match=f"'{field}'"):
        VideoProtocol.from_dict(bad)


def test_protocol_from_dict_rejects_non_mapping():
    with pytest.raises(ValueError, match="mapping"):
        VideoProtocol.from_dict([("num_frames", 16)])


# ----------------------------------------------------------------------------- temporal sampling

# Hand computations. K400 'sparse' (kinetics_sparse.py): seg = (N-1)/T, offset = int(seg/(C+1)*(c+1)),
# index_i = min(round_half_even(seg*i) + offset, N-1).


def test_sparse_n300_hand_computed():
    p = _ordinal_protocol()
    # seg = 299/16 = 18.6875; round(seg*i), i = 0..15 (149.5 -> 150)
    starts = [0, 19, 37, 56, 75, 93, 112, 131, 150, 168, 187, 206, 224, 243, 262, 280]
    # offsets int(3.7375*(c+1)) = 3, 7, 11, 14
    for c, off in enumerate([3, 7, 11, 14]):
        assert sample_frame_indices(300, p, c) == [s + off for s in starts]


def test_sparse_round_half_to_even():
    p = _ordinal_protocol()
    # N = 21: seg = 1.25, 2.5 -> 2, 7.5 -> 8, 12.5 -> 12, 17.5 -> 18; offsets int(0.25*(c+1)) = 0,0,0,1
    clip0 = [0, 1, 2, 4, 5, 6, 8, 9, 10, 11, 12, 14, 15, 16, 18, 19]
    assert sample_frame_indices(21, p, 0) == clip0
    assert sample_frame_indices(21, p, 2) == clip0
    assert sample_frame_indices(21, p, 3) == [i + 1 for i in clip0]


def test_sparse_short_video_repeats_frames():
    p = _ordinal_protocol()
    # N = 5: seg = 0.25, offsets all 0; 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, 3.5 -> 4
    expected = [0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3, 4, 4]
    for c in range(4):
        assert sample_frame_indices(5, p, c) == expected
    assert sample_frame_indices(1, p, 3) == [0] * 16


def test_sparse_single_clip():
    p = _ordinal_protocol(num_frames=8, clips=1)
    # N = 100: seg = 99/8 = 12.375, offset int(6.1875) = 6
    starts = [0, 12, 25, 37, 50, 62, 74, 87]  # 24.75, 37.125, 49.5->50, 61.875, 74.25, 86.625
    assert sample_frame_indices(100, p, 0) == [s + 6 for s in starts]


@pytest.mark.parametrize("n", [1, 2, 7, 16, 17, 33, 64, 65, 299, 1001])
def test_sparse_indices_valid(n):
    p = _ordinal_protocol()
    for c in range(4):
        idx = sample_frame_indices(n, p, c)
        assert len(idx) == 16 and all(0 <= i < n for i in idx)
        assert idx == sorted(idx)
        if n > 16:  # enough frames: no repeats
            assert len(set(idx)) == 16


# SSv2 'segment' (ssv2.py, SSVideoClsDataset, test_num_segment=2): tick = N/T, view 0 int(tick*x),
# view 1 int(tick/2 + tick*x).


def test_segment_n50_hand_computed():
    p = _ordinal_protocol(sampling="segment", clips=2)
    assert sample_frame_indices(50, p, 0) == [0, 3, 6, 9, 12, 15, 18, 21, 25, 28, 31, 34, 37, 40, 43, 46]
    assert sample_frame_indices(50, p, 1) == [1, 4, 7, 10, 14, 17, 20, 23, 26, 29, 32, 35, 39, 42, 45, 48]


def test_segment_short_video():
    p = _ordinal_protocol(sampling="segment", clips=2, num_frames=8)
    # tick = 0.625
    assert sample_frame_indices(5, p, 0) == [0, 0, 1, 1, 2, 3, 3, 4]
    assert sample_frame_indices(5, p, 1) == [0, 0, 1, 2, 2, 3, 4, 4]


def test_segment_single_view_uses_segment_centres():
    p = _ordinal_protocol(sampling="segment", clips=1, num_frames=4)
    # tick = 10: int(5 + 10x)
    assert sample_frame_indices(40, p, 0) == [5, 15, 25, 35]


def _authors_ssv2_test_views(n: int, num_segment: int) -> list[list[int]]:
    """The authors' formulation: sorted union of both offsets, then view c = [c::2]."""
    tick = n / float(num_segment)
    all_index = [int(tick / 2.0 + tick * x) for x in range(num_segment)] + [
        int(tick * x) for x in range(num_segment)
    ]
    all_index = sorted(all_index)
    return [all_index[0::2], all_index[1::2]]


@pytest.mark.parametrize("t", [8, 16])
def test_segment_matches_authors_sort_and_stride(t):
    p = _ordinal_protocol(sampling="segment", clips=2, num_frames=t)
    for n in range(1, 260):
        ref = _authors_ssv2_test_views(n, t)
        assert [sample_frame_indices(n, p, c) for c in range(2)] == ref, n


def test_dense_hand_computed():
    p = _ordinal_protocol(sampling="dense", num_frames=8, frame_stride=4, clips=3)
    # window 32, step (100-32)/2 = 34 -> starts 0, 34, 68
    assert sample_frame_indices(100, p, 0) == [0, 4, 8, 12, 16, 20, 24, 28]
    assert sample_frame_indices(100, p, 1) == [34, 38, 42, 46, 50, 54, 58, 62]
    assert sample_frame_indices(100, p, 2) == [68, 72, 76, 80, 84, 88, 92, 96]
    # short video: step clamps at 0, last frame repeated
    assert sample_frame_indices(20, p, 2) == [0, 4, 8, 12, 16, 16, 16, 16]
    one = _ordinal_protocol(sampling="dense", num_frames=4, frame_stride=2, clips=1)
    assert sample_frame_indices(20, one, 0) == [6, 8, 10, 12]  # centred: start int((20-8)/2)


def test_sample_indices_rejects_bad_args():
    p = _ordinal_protocol()
    with pytest.raises(ValueError, match="clip_index"):
        sample_frame_indices(100, p, 4)
    with pytest.raises(ValueError, match="total_frames"):
        sample_frame_indices(0, p, 0)


# ----------------------------------------------------------------------------- decoding


def test_probe_mp4(vids):
    info = probe_video(vids["v30"])
    assert info.num_frames == 30 and info.frame_count_source == "container"
    assert (info.width, info.height) == (64, 48)
    assert info.fps == pytest.approx(30.0)


def test_decode_frame_identity(vids):
    idx = [0, 7, 29, 7, 13]
    frames = decode_frames(vids["v30"], idx)
    assert [f.shape for f in frames] == [(48, 64, 3)] * 5
    assert all(f.dtype == np.uint8 for f in frames)
    assert [read_index(f) for f in frames] == idx
    # pixels close to what was encoded (lossy codec)
    assert np.abs(frames[1].astype(int) - index_frame(7, (64, 48))).mean() < 2.0


@pytest.mark.parametrize("key", ["v240", "v240_gop250"])
def test_decode_seek_path_matches_sequential(vids, key):
    idx = [3, 100, 101, 150, 239, 0, 64, 65, 66, 200]
    seek = decode_frames(vids[key], idx, max_sequential_frames=0)
    seq = decode_frames(vids[key], idx, max_sequential_frames=10**9)
    assert [read_index(f) for f in seek] == idx
    assert [read_index(f) for f in seq] == idx
    for a, b in zip(seek, seq):
        np.testing.assert_array_equal(a, b)


def test_seek_path_decodes_a_few_gops_not_the_whole_video(tmp_path, monkeypatch):
    import builtins

    p = write_mp4(tmp_path / "long.mp4", 1200, gop=30, frame_fn=lambda i, s: index_frame(i % 256, s))
    pulled = [0]

    def counting_next(it, *default):
        pulled[0] += 1
        return builtins.next(it, *default)

    monkeypatch.setattr(V, "next", counting_next, raising=False)  # the seek path pulls frames with next()
    idx = [5, 400, 800, 1199]
    frames = decode_frames(p, idx, max_sequential_frames=0)
    assert [read_index(f) for f in frames] == [i % 256 for i in idx]
    assert 0 < pulled[0] <= 4 * 30 + 8  # at most one GOP per target


def test_decode_out_of_range_index(vids):
    with pytest.raises(ValueError, match=r"\[0, 30\)"):
        decode_frames(vids["v30"], [30])


def test_variable_frame_rate_uses_frame_ordinals(tmp_path):
    ts = [0, 33, 66, 200, 233, 500, 510, 520, 900, 1000]
    p = write_mp4(tmp_path / "vfr.mp4", len(ts), timestamps_ms=ts)
    info = probe_video(p)
    assert info.num_frames == 10
    idx = [0, 3, 5, 6, 9]
    assert [read_index(f) for f in decode_frames(p, idx)] == idx


def test_matroska_counts_packets(tmp_path):
    p = write_video(tmp_path / "v.mkv", 37, container_format="matroska")
    info = probe_video(p)
    assert (info.num_frames, info.frame_count_source) == (37, "demuxed")
    assert [read_index(f) for f in decode_frames(p, [0, 18, 36])] == [0, 18, 36]


def test_estimated_frame_count_is_reported(tmp_path, monkeypatch):
    p = write_video(tmp_path / "v.mkv", 30, container_format="matroska")
    monkeypatch.setattr(V, "MAX_DEMUX_COUNT_FRAMES", 0)
    info = probe_video(p)
    assert info.frame_count_source == "estimated" and abs(info.num_frames - 30) <= 1
    clips = load_video_views(p, _ordinal_protocol(num_frames=4, short_side=48, crop_size=48),
                             IMAGENET_MEAN, IMAGENET_STD)
    assert any("estimated" in n for n in clips.notes)


@pytest.mark.skipif(not (has_encoder("libvpx-vp9") or has_encoder("libvpx")), reason="no VP8/VP9 encoder")
def test_webm(tmp_path):
    codec = "libvpx-vp9" if has_encoder("libvpx-vp9") else "libvpx"
    p = write_video(tmp_path / "v.webm", 30, codec=codec, container_format="webm")
    info = probe_video(p)
    assert (info.num_frames, info.frame_count_source) == (30, "demuxed")
    assert [read_index(f) for f in decode_frames(p, [2, 29])] == [2, 29]
    truncate(p, 0.5)
    with pytest.raises(InputError, match="truncated"):
        load_video_views(p, _ordinal_protocol(num_frames=4), IMAGENET_MEAN, IMAGENET_STD)


# ----------------------------------------------------------------------------- rotation


def _left_white(i, size):
    w, h = size
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = 255
    return img


@pytest.mark.parametrize(
    "rotate, shape, white_part",
    [
        (None, (48, 64, 3), "left"),
        (-90, (64, 48, 3), "top"),  # phone 'rotate=90': display turned 90 degrees clockwise
        (90, (64, 48, 3), "bottom"),
        (180, (48, 64, 3), "right"),
    ],
)
def test_rotation_metadata_applied(tmp_path, rotate, shape, white_part):
    p = write_mp4(tmp_path / "rot.mp4", 6, rotate=rotate, frame_fn=_left_white)
    (f,) = decode_frames(p, [3])
    assert f.shape == shape
    h, w = f.shape[:2]
    halves = {
        "left": (f[:, : w // 2], f[:, w // 2 :]),
        "right": (f[:, w // 2 :], f[:, : w // 2]),
        "top": (f[: h // 2], f[h // 2 :]),
        "bottom": (f[h // 2 :], f[: h // 2]),
    }
    white, black = halves[white_part]
    assert white.mean() > 250 and black.mean() < 5


def test_rotated_video_views_follow_display_geometry(tmp_path):
    p = write_mp4(tmp_path / "rot.mp4", 6, rotate=-90, frame_fn=_left_white)
    prot = _ordinal_protocol(num_frames=4, clips=1, crops=3, short_side=32, crop_size=32)
    clips = load_video_views(p, prot, (0, 0, 0), (1, 1, 1))
    # display 48x64 (w x h) -> 32 x int(32*64/48)=42; crops at rows 0, 5, 10 of a top-white frame
    t = clips.tensor
    assert t.shape == (3, 3, 4, 32, 32)
    assert any("clockwise" in n for n in clips.notes)
    white_rows = 21  # 64/2 rows scaled by 42/64
    for k, top in enumerate([0, 5, 10]):
        expect = (white_rows - top) / 32
        assert t[k].mean().item() == pytest.approx(expect, abs=0.04)


# ----------------------------------------------------------------------------- views


def test_views_shapes_and_override(vids):
    prot = _ordinal_protocol(num_frames=8, short_side=32, crop_size=32)
    full = load_video_views(vids["v30"], prot, IMAGENET_MEAN, IMAGENET_STD)
    assert full.tensor.shape == (12, 3, 8, 32, 32) and full.tensor.dtype == torch.float32
    assert full.views == (4, 3) and full.total_frames == 30 and full.notes == []
    assert full.frame_indices == [sample_frame_indices(30, prot, c) for c in range(4)]
    one = load_video_views(vids["v30"], prot, IMAGENET_MEAN, IMAGENET_STD, views=(1, 1))
    assert one.tensor.shape == (1, 3, 8, 32, 32) and one.views == (1, 1)
    assert one.frame_indices == [sample_frame_indices(30, prot.with_views(1, 1), 0)]
    two = load_video_views(vids["v30"], prot, IMAGENET_MEAN, IMAGENET_STD, views=(2, 1))
    assert two.tensor.shape == (2, 3, 8, 32, 32)
    with pytest.raises(ValueError, match="views"):
        load_video_views(vids["v30"], prot, IMAGENET_MEAN, IMAGENET_STD, views=(0, 1))


def test_views_are_exact_crops_of_decoded_frames(vids):
    # 64x48 frames with short_side 48: no resize, so each view must equal a window of the
    # decoded frames; crops along the long (width) side at int(k*(64-48)/2) = 0, 8, 16.
    prot = _ordinal_protocol(num_frames=4, clips=2, crops=3, short_side=48, crop_size=48)
    clips = load_video_views(vids["v30"], prot, (0, 0, 0), (1, 1, 1))
    for c in range(2):
        idx = sample_frame_indices(30, prot, c)
        frames = np.stack(decode_frames(vids["v30"], idx))  # T H W 3
        for k, left in enumerate([0, 8, 16]):
            view = clips.tensor[c * 3 + k]  # 3 T H W
            ref = torch.from_numpy(frames[:, :, left:left + 48]).permute(3, 0, 1, 2).float() / 255
            torch.testing.assert_close(view, ref, rtol=0, atol=1e-6)
        # clip-major order: the view's frames are the clip's sampled frames
        got = [read_index((clips.tensor[c * 3 + 1, :, t].permute(1, 2, 0).numpy() * 255).round()) for t in range(4)]
        assert got == idx


def test_views_with_resize_match_manual_pipeline(vids):
    prot = _ordinal_protocol(num_frames=4, clips=1, crops=3, short_side=24, crop_size=24)
    clips = load_video_views(vids["v30"], prot, (0, 0, 0), (1, 1, 1))
    idx = sample_frame_indices(30, prot, 0)
    frames = np.stack([V._resize_short_side(f, 24) for f in decode_frames(vids["v30"], idx)])
    assert frames.shape == (4, 24, 32, 3)  # 48x64 -> 24 x int(24*64/48)=32
    for k, left in enumerate([0, 4, 8]):  # int(k * (32-24)/2)
        ref = torch.from_numpy(frames[:, :, left:left + 24]).permute(3, 0, 1, 2).float() / 255
        torch.testing.assert_close(clips.tensor[k], ref, rtol=0, atol=1e-6)


def test_a_frame_hook_may_return_read_only_frames(vids):
    # robustness's JPEG hook hands back Pillow-backed arrays; torch.from_numpy warns on read-only memory
    prot = _ordinal_protocol(num_frames=4, clips=1, crops=1, short_side=24, crop_size=24)

    def read_only(frame):
        frame = frame.copy()
        frame.flags.writeable = False
        return frame
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hooked = load_video_views(vids["v30"], prot, (0, 0, 0), (1, 1, 1), frame_hook=read_only)
    torch.testing.assert_close(hooked.tensor, load_video_views(vids["v30"], prot, (0, 0, 0), (1, 1, 1)).tensor)


def test_normalisation(vids):
    prot = _ordinal_protocol(num_frames=4, clips=2, crops=2, short_side=32, crop_size=32)
    raw = load_video_views(vids["v30"], prot, (0, 0, 0), (1, 1, 1)).tensor
    assert raw.min() >= 0 and raw.max() <= 1
    norm = load_video_views(vids["v30"], prot, IMAGENET_MEAN, IMAGENET_STD).tensor
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1, 1)
    torch.testing.assert_close(norm, (raw - mean) / std, rtol=0, atol=2e-6)
    with pytest.raises(ValueError, match="mean and std"):
        load_video_views(vids["v30"], prot, (0.5, 0.5), IMAGENET_STD)


def test_fewer_frames_than_needed(vids):
    prot = _ordinal_protocol(num_frames=16, clips=4, crops=1, short_side=48, crop_size=48)
    clips = load_video_views(vids["v5"], prot, (0, 0, 0), (1, 1, 1))
    assert clips.notes[0] == "repeated frames: video has 5 frames, model samples 16 per clip"
    expected = [0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3, 4, 4]
    assert clips.frame_indices == [expected] * 4
    # 64x48 frame centre crop (left 8) still shows the index halves at columns 24 and 40
    got = [read_index((clips.tensor[0, :, t].permute(1, 2, 0).numpy() * 255).round()) for t in range(16)]
    assert got == expected
    assert clips.tensor.shape == (4, 3, 16, 48, 48)


def test_resize_short_side_matches_float64_bilinear_reference():
    rng = np.random.default_rng(0)

    def reference(img: np.ndarray, oh: int, ow: int) -> np.ndarray:
        # half-pixel centres, edge clamp, no antialias (cv2.INTER_LINEAR semantics), float64
        h, w = img.shape[:2]

        def axis(n_out, n_in):
            src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
            i0 = np.floor(src).astype(int)
            frac = src - i0
            frac[i0 < 0] = 0.0
            i0 = np.clip(i0, 0, n_in - 1)
            i1 = np.clip(i0 + 1, 0, n_in - 1)
            return i0, i1, frac

        y0, y1, fy = axis(oh, h)
        x0, x1, fx = axis(ow, w)
        a = img.astype(np.float64)
        top = a[y0][:, x0] * (1 - fx)[None, :, None] + a[y0][:, x1] * fx[None, :, None]
        bot = a[y1][:, x0] * (1 - fx)[None, :, None] + a[y1][:, x1] * fx[None, :, None]
        return top * (1 - fy)[:, None, None] + bot * fy[:, None, None]

    for (h, w), side in [((37, 53), 24), ((53, 37), 24), ((17, 29), 40), ((48, 64), 48), ((31, 31), 20)]:
        img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        out = V._resize_short_side(img, side)
        oh, ow = V._resized_size(h, w, side)
        assert out.shape == (oh, ow, 3) and out.dtype == np.uint8 and min(oh, ow) == side
        if min(h, w) == side:
            np.testing.assert_array_equal(out, img)
            continue
        ref = reference(img, oh, ow)
        assert np.abs(out.astype(np.float64) - ref).max() <= 0.5 + 1e-3


def test_resize_and_crop_geometry_hand_computed():
    # video_transforms get_resize_sizes truncates the long side
    assert V._resized_size(256, 340, 224) == (224, 297)
    assert V._resized_size(1920, 1080, 224) == (398, 224)
    # landscape 224x297: step (297-224)/2 = 36.5 -> lefts 0, 36, 73
    assert [V._crop_offsets(224, 297, 224, 3, k) for k in range(3)] == [(0, 0), (0, 36), (0, 73)]
    assert V._crop_offsets(224, 297, 224, 1, 0) == (0, 36)
    # portrait 398x224: tops 0, 87, 174
    assert [V._crop_offsets(398, 224, 224, 3, k) for k in range(3)] == [(0, 0), (87, 0), (174, 0)]
    # crop smaller than the short side: centred across
    assert V._crop_offsets(256, 340, 224, 3, 2) == (16, 116)


# ----------------------------------------------------------------------------- unusable files


def _one_line_naming(exc: pytest.ExceptionInfo, path) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg
    assert isinstance(exc.value, SsmzooError)
    return msg


def test_missing_file(tmp_path):
    p = tmp_path / "nope.mp4"
    with pytest.raises(InputError) as e:
        load_video_views(p, VideoProtocol(), IMAGENET_MEAN, IMAGENET_STD)
    assert f"{p}: no such file or directory" == _one_line_naming(e, p)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.mp4"
    p.write_bytes(b"")
    with pytest.raises(InputError) as e:
        decode_frames(p, [0])
    assert "0 bytes" in _one_line_naming(e, p)


@pytest.mark.parametrize("faststart", [False, True])
def test_truncated_mp4(tmp_path, faststart):
    p = write_mp4(tmp_path / "cut.mp4", 30, faststart=faststart)
    truncate(p, 0.5)
    with pytest.raises(InputError) as e:
        load_video_views(p, VideoProtocol(), IMAGENET_MEAN, IMAGENET_STD)
    assert "truncated" in _one_line_naming(e, p)


def test_truncated_mp4_with_decodable_start(tmp_path):
    # index at the front: the first frames still decode, the sample table points past the end
    p = write_mp4(tmp_path / "cut.mp4", 120, faststart=True)
    truncate(p, 0.6)
    with pytest.raises(InputError) as e:
        load_video_views(p, VideoProtocol(), IMAGENET_MEAN, IMAGENET_STD)
    assert "truncated file (the container index refers to byte" in _one_line_naming(e, p)


def test_truncated_matroska(tmp_path):
    p = write_video(tmp_path / "cut.mkv", 60, container_format="matroska")
    truncate(p, 0.5)
    with pytest.raises(InputError) as e:
        load_video_views(p, VideoProtocol(), IMAGENET_MEAN, IMAGENET_STD)
    assert "truncated" in _one_line_naming(e, p)


def test_text_file_named_mp4(tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("this is not a video\n" * 20)
    with pytest.raises(InputError) as e:
        probe_video(p)
    assert "not a readable video" in _one_line_naming(e, p)


def test_audio_only_file(tmp_path):
    p = write_audio_only(tmp_path / "sound.mp4")
    with pytest.raises(InputError) as e:
        load_video_views(p, VideoProtocol(), IMAGENET_MEAN, IMAGENET_STD)
    assert "no video stream (audio-only file)" in _one_line_naming(e, p)


def test_still_image_is_not_a_video(tmp_path):
    from PIL import Image

    p = tmp_path / "photo.png"
    Image.fromarray(index_frame(3, (64, 48))).save(p)
    with pytest.raises(InputError) as e:
        decode_frames(p, [0])
    assert "still image" in _one_line_naming(e, p)


def test_directory_is_not_a_video(tmp_path):
    with pytest.raises(InputError) as e:
        probe_video(tmp_path)
    assert "directory" in _one_line_naming(e, tmp_path)


def _damaged(source, tmp_path, position: int, value: int, name: str = "damaged.mp4"):
    """A copy of `source` with the byte at `position` set to `value`."""
    data = bytearray(source.read_bytes())
    data[position] = value
    out = tmp_path / name
    out.write_bytes(bytes(data))
    return out


def test_a_damaged_brand_or_tag_does_not_make_a_video_unreadable(tmp_path):
    # ffmpeg plays it; PyAV's strict UTF-8 reading of the container's tags raised UnicodeDecodeError
    clip = write_mp4(tmp_path / "clip.mp4", 8, size=(32, 32))
    brands = clip.read_bytes().index(b"isomiso2")
    damaged = _damaged(clip, tmp_path, brands + 4, 0xD3)  # 'iso2' -> '\xd3so2', not UTF-8
    assert [read_index(f) for f in decode_frames(damaged, [0, 7])] == [0, 7]


def test_a_sample_description_ffmpeg_cannot_decode_is_named(tmp_path):
    # a damaged sample table leaves a video stream without a codec: PyAV gives it no codec context
    clip = write_mp4(tmp_path / "clip.mp4", 8, size=(32, 32))
    damaged = _damaged(clip, tmp_path, clip.read_bytes().index(b"stbl") + 1, 0x94)
    with pytest.raises(InputError) as e:
        probe_video(damaged)
    assert _one_line_naming(e, damaged) == (f"{damaged}: no decodable video stream (its codec is unknown to ffmpeg: "
                                            "truncated or corrupt, or an unsupported codec)")
    assert V.video_error(damaged) is not None and not V.is_video_file(damaged)


def test_one_byte_damage_decodes_or_is_an_input_error(tmp_path):
    # a small deterministic fuzz of the places where damage escaped as other exceptions: the file type box,
    # the sample table's box names and codec tag, and a spread of the index (moov) bytes
    clip = write_mp4(tmp_path / "clip.mp4", 8, size=(32, 32))
    data = clip.read_bytes()
    moov = data.index(b"moov") - 4
    names = [data.index(tag) + k for tag in (b"stbl", b"stsd", b"avc1", b"avcC") for k in range(4)]
    positions = sorted(set(range(32)) | set(names) | set(range(moov, len(data), 13)))
    protocol = VideoProtocol(num_frames=4, clips=1, crops=1, short_side=32, crop_size=32)
    outcomes = {"decoded": 0, "refused": 0}
    for position in positions:
        for value in (data[position] ^ 0x80, data[position] ^ 0xFF):
            damaged = _damaged(clip, tmp_path, position, value)
            try:
                load_video_views(damaged, protocol, IMAGENET_MEAN, IMAGENET_STD)
                outcomes["decoded"] += 1
            except InputError as e:
                assert str(e).startswith(f"{damaged}: ") and "\n" not in str(e)
                outcomes["refused"] += 1
    assert outcomes["decoded"] and outcomes["refused"]
