"""Video input: the VideoMamba authors' test-time frame sampling, decoding with PyAV, multi-view clips.

The sampling formulas and the spatial crops reproduce OpenGVLab/VideoMamba ``videomamba/video_sm``
(inherited from VideoMAE), so a clip classified here sees the frames and pixels the published
accuracies were measured on:

* ``"sparse"`` -- Kinetics-400 (``datasets/kinetics_sparse.py``, ``VideoClsDataset_sparse``,
  ``--data_set Kinetics_sparse --test_num_segment 4 --test_num_crop 3``).
* ``"segment"`` -- Something-Something-v2 (``datasets/ssv2.py``, ``SSVideoClsDataset``,
  ``--data_set SSV2 --test_num_segment 2 --test_num_crop 3``).
* ``"dense"`` -- fixed-stride window (``datasets/kinetics.py``, ``VideoClsDataset``), for
  checkpoints trained with ``--data_set Kinetics``.

Test-time spatial processing (same in all three datasets): resize the short side to
``short_side`` with bilinear interpolation keeping the aspect ratio, then take ``crops`` square
windows spread evenly along the long side (left/centre/right or top/centre/bottom), normalise
with the ImageNet mean/std. The authors average the softmax of all clips x crops views
(``engines/engine_for_finetuning.py``, ``merge``).
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import os
from dataclasses import dataclass, field
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ssmzoo.errors import InputError
from ssmzoo.paths import file_problem
from ssmzoo.text import count, one_line

__all__ = [
    "VIDEO_SUFFIXES",
    "SAMPLING_MODES",
    "VideoProtocol",
    "VideoInfo",
    "VideoClips",
    "sample_frame_indices",
    "probe_video",
    "decode_frames",
    "load_video_views",
    "load_class_names",
]

# File names that mark a video (a tuple: where a list names a file without its suffix, they are tried in
# this order). ``images.image_suffixes()`` is the images' counterpart.
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp")
SAMPLING_MODES = ("sparse", "segment", "dense")

# Videos up to this many frames are decoded front to back (exact frame ordinals, cheap for short
# clips); longer ones are decoded by seeking to the sampled timestamps.
MAX_SEQUENTIAL_FRAMES = 900
# Without a frame count in the container, videos estimated above this many frames are not demuxed
# to count packets (that would read the whole file); the estimate duration x rate is used instead.
MAX_DEMUX_COUNT_FRAMES = 20_000
# Demuxers that turn a single still image into a one-frame "video".
_IMAGE_FORMATS = {"image2", "png_pipe", "jpeg_pipe", "bmp_pipe", "webp_pipe", "tiff_pipe",
                  "pgm_pipe", "ppm_pipe", "pam_pipe", "qoi_pipe", "jpegxl_pipe", "j2k_pipe",
                  "dpx_pipe", "exr_pipe", "sgi_pipe", "svg_pipe", "gem_pipe", "pictor_pipe",
                  "psd_pipe", "xbm_pipe", "xpm_pipe", "xwd_pipe", "photocd_pipe", "pcx_pipe",
                  "hdr_pipe", "dds_pipe", "cri_pipe", "qdraw_pipe", "sunrast_pipe"}


# --------------------------------------------------------------------------------------------
# Protocol
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoProtocol:
    """How a model was evaluated: frames per clip, temporal sampling, clips x crops, sizes.

    ``frame_stride`` only matters for ``sampling="dense"`` (the authors' ``--sampling_rate``).
    ``crop_size`` must not exceed ``short_side``; the authors always use equal values, and then
    each crop is the full short side.
    """

    num_frames: int = 16
    sampling: str = "sparse"
    clips: int = 4
    crops: int = 3
    short_side: int = 224
    crop_size: int = 224
    frame_stride: int = 1

    def __post_init__(self) -> None:
        for name in ("num_frames", "clips", "crops", "short_side", "crop_size", "frame_stride"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"video protocol field '{name}' must be an integer, got {value!r}")
            if value < 1:
                raise ValueError(f"video protocol field '{name}' must be >= 1, got {value}")
        if self.sampling not in SAMPLING_MODES:
            raise ValueError(
                f"video protocol field 'sampling' must be one of {', '.join(SAMPLING_MODES)}, "
                f"got {self.sampling!r}"
            )
        if self.crop_size > self.short_side:
            raise ValueError(
                f"video protocol field 'crop_size' ({self.crop_size}) must not exceed "
                f"'short_side' ({self.short_side})"
            )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "VideoProtocol":
        """Build from a manifest mapping; unknown keys and bad values raise ValueError naming the field."""
        if not isinstance(d, Mapping):
            raise ValueError(f"video protocol must be a mapping, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        for key in d:
            if key not in known:
                raise ValueError(
                    f"video protocol has unknown field '{key}' (known: {', '.join(sorted(known))})"
                )
        return cls(**dict(d))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def with_views(self, clips: int, crops: int) -> "VideoProtocol":
        return dataclasses.replace(self, clips=clips, crops=crops)


# --------------------------------------------------------------------------------------------
# Temporal sampling
# --------------------------------------------------------------------------------------------


def sample_frame_indices(total_frames: int, protocol: VideoProtocol, clip_index: int) -> list[int]:
    """Frame ordinals of one temporal view, exactly as the authors' test loaders pick them.

    Short videos get repeated indices (the authors' formulas repeat frames rather than pad);
    ``len(set(result)) < len(result)`` tells the caller that happened.
    """
    if isinstance(total_frames, bool) or not isinstance(total_frames, (int, np.integer)):
        raise ValueError(f"total_frames must be an integer, got {total_frames!r}")
    total_frames = int(total_frames)
    if total_frames < 1:
        raise ValueError(f"total_frames must be >= 1, got {total_frames}")
    if not 0 <= clip_index < protocol.clips:
        raise ValueError(f"clip_index must be in [0, {protocol.clips}), got {clip_index}")
    num, clips = protocol.num_frames, protocol.clips

    if protocol.sampling == "sparse":
        # kinetics_sparse.py, VideoClsDataset_sparse._get_seq_frames(clip_idx=chunk_nb), mode 'test':
        # num_frames segments over [0, N-1]; view c is shifted by (c+1)/(clips+1) of a segment.
        seg_size = max(0.0, float(total_frames - 1) / num)
        max_frame = total_frames - 1
        duration = seg_size / (clips + 1)
        offset = int(duration * (clip_index + 1))
        return [min(int(np.round(seg_size * i)) + offset, max_frame) for i in range(num)]

    if protocol.sampling == "segment":
        # ssv2.py, SSVideoClsDataset.loadvideo_decord, mode 'test': tick = N / num_frames; the
        # union of int(tick*x) and int(tick/2 + tick*x) is sorted and view c takes [c::2], i.e.
        # view c starts c/clips of a tick into each segment (also SSRawFrameClsDataset's formula,
        # which generalises to any number of views). One view: segment centres, as the authors'
        # 'validation' mode.
        tick = total_frames / float(num)
        if clips == 1:
            return [int(tick / 2.0 + tick * x) for x in range(num)]
        shift = tick * clip_index / clips
        return [int(shift + tick * x) for x in range(num)]

    # "dense": kinetics.py, VideoClsDataset.loadvideo_decord, mode 'test': a window of
    # num_frames * stride frames, its start spread evenly over the video; short videos repeat the
    # last sampled frame. One view (the authors divide by zero there): the centred window.
    stride = protocol.frame_stride
    converted_len = num * stride
    if clips == 1:
        start = int(max(total_frames - converted_len, 0) / 2)
    else:
        step = max(1.0 * (total_frames - converted_len) / (clips - 1), 0)
        start = int(clip_index * step)
    bound = min(start + converted_len, total_frames)
    indices = list(range(start, bound, stride))
    while len(indices) < num:
        indices.append(indices[-1])
    return indices


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about the first video stream (sizes are as stored, before rotation)."""

    path: str
    num_frames: int
    frame_count_source: str  # "container" | "demuxed" | "estimated"
    fps: float | None
    duration: float | None  # seconds
    width: int
    height: int
    codec: str


def _av():
    import av  # local: keeps `import ssmzoo` light

    return av


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return one_line(str(text), join=" ")


def looks_like_video(path: str | os.PathLike) -> bool:
    """Named like a video, or an MP4/MOV by its first bytes: where such a file cannot be read, the video
    reader's reason is the one to give, whichever model met it."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES or _looks_like_iso_media(Path(path))


def _looks_like_iso_media(p: Path) -> bool:
    """MP4/MOV files start with an 'ftyp' box; if one fails to open, its index (moov) is missing or cut."""
    try:
        with open(p, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return len(head) >= 8 and head[4:8] == b"ftyp"


class NoVideoStream(InputError):
    """A file ffmpeg opens that holds no video stream (an audio-only .mp4): one message for it, whether
    a video list, a video model or an image model's check of what the file holds meets it."""

    def __init__(self, path: str | os.PathLike, kinds: Sequence[str]) -> None:
        what = "audio-only file" if list(kinds) == ["audio"] else f"streams: {', '.join(kinds) or 'none'}"
        super().__init__(f"{path}: no video stream ({what})")


def video_error(path: str | os.PathLike) -> InputError | None:
    """Why ffmpeg cannot open the file as a video (a video stream, not a still image), whatever its
    name; None where it can."""
    try:
        container, _, _ = _open(path)
    except InputError as exc:
        return exc
    container.close()
    return None


def is_video_file(path: str | os.PathLike) -> bool:
    """Does ffmpeg open the file as a video (a video stream, not a still image), whatever its name?"""
    return video_error(path) is None


def _open(path: str | os.PathLike) -> tuple[Any, Any, Path]:
    """Open a container and its first video stream, turning every failure into InputError."""
    av = _av()
    p = Path(path)
    problem = file_problem(p)  # (by stat: a pipe is never opened, which could wait forever)
    if problem is not None:
        raise InputError(f"{p}: {problem}")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, not a video file")
    try:
        size = p.stat().st_size
    except OSError as e:
        raise InputError(f"{p}: cannot read file ({_reason(e)})") from e
    if size == 0:
        raise InputError(f"{p}: empty file (0 bytes)")
    try:
        # Tags are read as text with damage replaced: one bad byte in a brand or title (or a title in a legacy
        # encoding) leaves the video playable, where PyAV's default ("strict") raised UnicodeDecodeError.
        container = av.open(str(p), mode="r", metadata_errors="replace")
    except (av.error.FFmpegError, OSError) as e:
        if _looks_like_iso_media(p):
            raise InputError(
                f"{p}: truncated or corrupt MP4/MOV file (ffmpeg: {_reason(e)})"
            ) from e
        raise InputError(
            f"{p}: not a readable video (ffmpeg: {_reason(e)}; truncated, corrupt or not a video file)"
        ) from e
    try:
        if container.format.name in _IMAGE_FORMATS:
            raise InputError(f"{p}: is a still image ({container.format.name}), not a video")
        if not container.streams.video:
            raise NoVideoStream(p, sorted({s.type for s in container.streams}))
        stream = container.streams.video[0]
        if stream.codec_context is None:  # PyAV found no decoder for the codec the container names
            raise InputError(f"{p}: no decodable video stream (its codec is unknown to ffmpeg: "
                             "truncated or corrupt, or an unsupported codec)")
    except BaseException:
        container.close()
        raise
    return container, stream, p


def _fps(stream: Any) -> Fraction | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            rate = Fraction(rate)
            if 0 < rate < 100_000:
                return rate
    return None


def _duration(container: Any, stream: Any) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _check_index_within_file(stream: Any, p: Path) -> None:
    """MP4/MOV keep a byte offset per sample: one past the end of the file means truncation."""
    try:
        entries = stream.index_entries
        end = max((e.pos + e.size for e in entries if e.pos >= 0), default=None)
    except Exception:  # index not exposed by this demuxer/PyAV: nothing to check
        return
    size = p.stat().st_size
    if end is not None and end > size:
        raise InputError(
            f"{p}: truncated file (the container index refers to byte {end}, the file has {size} bytes)"
        )


def _probe(container: Any, stream: Any, p: Path) -> VideoInfo:
    av = _av()
    _check_index_within_file(stream, p)
    fps = _fps(stream)
    duration = _duration(container, stream)
    cc = stream.codec_context
    common = dict(path=str(p), fps=float(fps) if fps else None, duration=duration,
                  width=int(cc.width or 0), height=int(cc.height or 0), codec=str(cc.name))
    if stream.frames and stream.frames > 0:
        return VideoInfo(num_frames=int(stream.frames), frame_count_source="container", **common)
    estimate = int(round(duration * float(fps))) if duration and fps else None
    if estimate is not None and estimate > MAX_DEMUX_COUNT_FRAMES:
        return VideoInfo(num_frames=estimate, frame_count_source="estimated", **common)
    # No frame count in the header (WebM/MKV, some AVI/TS): count packets without decoding them.
    count, last_end = 0, None
    try:
        for packet in container.demux(stream):
            if packet.size <= 0:
                continue
            count += 1
            if packet.pts is not None and packet.time_base:
                end = packet.pts + (packet.duration or 0)
                last_end = end if last_end is None else max(last_end, end)
    except av.error.FFmpegError as e:
        raise InputError(f"{p}: cannot read video packets (ffmpeg: {_reason(e)}; truncated or corrupt)") from e
    if count == 0:
        raise InputError(f"{p}: no video frames in the file (truncated or corrupt)")
    if last_end is not None and duration and duration > 0:
        start = stream.start_time or 0
        covered = float((last_end - start) * stream.time_base)
        if covered < 0.5 * duration:
            raise InputError(
                f"{p}: truncated file (video data ends at {covered:.2f}s, the header says {duration:.2f}s)"
            )
    return VideoInfo(num_frames=count, frame_count_source="demuxed", **common)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Frame count and geometry of the first video stream; InputError for unusable files."""
    container, stream, p = _open(path)
    try:
        return _probe(container, stream, p)
    finally:
        container.close()


def _rotation_ccw(frame: Any, stream: Any) -> int:
    """Counter-clockwise degrees (multiple of 90) to turn a decoded frame upright."""
    try:
        rot = float(frame.rotation or 0)
    except Exception:
        rot = 0.0
    if rot == 0:
        tag = (stream.metadata or {}).get("rotate")  # legacy tag: clockwise degrees
        if tag:
            try:
                rot = -float(tag)
            except ValueError:
                rot = 0.0
    return int(round(rot / 90.0)) * 90 % 360


def _to_rgb(frame: Any, stream: Any) -> tuple[np.ndarray, int]:
    arr = frame.to_ndarray(format="rgb24")
    rot = _rotation_ccw(frame, stream)
    if rot:
        arr = np.ascontiguousarray(np.rot90(arr, k=rot // 90))
    return arr, rot


class _NoTimestamps(Exception):
    pass


@dataclass
class _Decoded:
    frames: dict[int, Any]
    decoded_until: int | None  # frames decoded before the stream ended (None: did not reach the end)


def _decode_sequential(container: Any, stream: Any, wanted: Sequence[int],
                       convert: Callable[[Any], Any]) -> _Decoded:
    wanted_set = set(wanted)
    last_wanted = max(wanted)
    out: dict[int, Any] = {}
    n = 0
    last = None
    for frame in container.decode(stream):
        if n in wanted_set:
            out[n] = convert(frame)
        last = frame
        n += 1
        if n > last_wanted:
            return _Decoded(out, None)
    if last is None:
        return _Decoded(out, 0)
    tail = convert(last)
    for i in wanted:
        if i >= n:
            out[i] = tail
    return _Decoded(out, n)


def _decode_seeking(container: Any, stream: Any, wanted: Sequence[int], fps: Fraction,
                    convert: Callable[[Any], Any]) -> _Decoded:
    """Seek near each wanted frame; frames are matched by timestamp (index = (pts - start) * fps)."""
    tb = stream.time_base
    if not tb:
        raise _NoTimestamps
    start = stream.start_time or 0
    ticks = 1 / (fps * tb)  # stream ticks per frame (Fraction)

    def pts_of(i: float) -> Fraction:
        return start + i * ticks

    def index_of(pts: int) -> float:
        return float((pts - start) / ticks)

    try:
        keyframes = sorted(e.timestamp for e in stream.index_entries if e.is_keyframe)
    except Exception:
        keyframes = []
    gap_without_index = max(32, int(2 * fps))
    keyframe_guard = 16 * ticks

    out: dict[int, Any] = {}
    frames = None  # decode iterator positioned after `pending`
    pending = None  # last decoded frame not yet passed by the targets
    cache: tuple[Any, Any] | None = None  # (frame, converted) to convert each frame once
    last = None
    ended_at: int | None = None

    def converted(frame: Any) -> Any:
        nonlocal cache
        if cache is None or cache[0] is not frame:
            cache = (frame, convert(frame))
        return cache[1]

    for target in wanted:
        target_pts = pts_of(target)
        if ended_at is not None:
            out[target] = converted(last)
            continue
        cur_pts = pending.pts if pending is not None else None
        if frames is None or cur_pts is None:
            need_seek = True
        elif keyframes:
            # Index timestamps are decode times, a few frames before the keyframe is shown: only
            # seek when a keyframe clearly precedes the target, else a seek can land after it.
            k = bisect.bisect_right(keyframes, float(target_pts - keyframe_guard))
            need_seek = k > 0 and keyframes[k - 1] > cur_pts
        else:
            need_seek = target - index_of(cur_pts) > gap_without_index
        if need_seek:
            margin = 2 * ticks
            while True:
                seek_pts = max(Fraction(start), target_pts - margin)
                container.seek(int(math.floor(seek_pts)), stream=stream, backward=True, any_frame=False)
                frames = container.decode(stream)
                pending = next(frames, None)
                if pending is None or pending.pts is None:
                    break
                if index_of(pending.pts) <= target + 0.5 or seek_pts <= start:
                    break
                margin = margin * 4 + 30 * ticks  # landed after the target: seek further back
        while True:
            if pending is None:
                if last is None:
                    return _Decoded(out, 0)
                ended_at = int(round(index_of(last.pts))) + 1 if last.pts is not None else 0
                out[target] = converted(last)
                break
            if pending.pts is None:
                raise _NoTimestamps
            last = pending
            if index_of(pending.pts) >= target - 0.5:
                out[target] = converted(pending)
                break
            pending = next(frames, None)
    return _Decoded(out, ended_at)


def _decode(path: str | os.PathLike, indices: Sequence[int], convert: Callable[[np.ndarray], Any],
            *, max_sequential_frames: int = MAX_SEQUENTIAL_FRAMES,
            info: VideoInfo | None = None) -> tuple[dict[int, Any], VideoInfo, list[str]]:
    av = _av()
    if info is None:
        info = probe_video(path)  # its own container: counting may demux to the end
    container, stream, p = _open(path)
    notes: list[str] = []
    rotations: set[int] = set()

    def convert_frame(frame: Any) -> Any:
        arr, rot = _to_rgb(frame, stream)
        rotations.add(rot)
        return convert(arr)

    try:
        wanted = sorted({int(i) for i in indices})
        if not wanted:
            return {}, info, notes
        if wanted[0] < 0 or wanted[-1] >= info.num_frames:
            raise ValueError(
                f"frame indices must be in [0, {info.num_frames}) for {p}, got {wanted[0]}..{wanted[-1]}"
            )
        stream.thread_type = "AUTO"
        fps = _fps(stream)
        try:
            if info.num_frames > max_sequential_frames and fps is not None:
                try:
                    result = _decode_seeking(container, stream, wanted, fps, convert_frame)
                except _NoTimestamps:
                    container.seek(0)
                    result = _decode_sequential(container, stream, wanted, convert_frame)
            else:
                result = _decode_sequential(container, stream, wanted, convert_frame)
        except av.error.FFmpegError as e:
            raise InputError(f"{p}: decoding failed (ffmpeg: {_reason(e)}; truncated or corrupt)") from e
    finally:
        container.close()

    if result.decoded_until == 0:
        raise InputError(f"{p}: no decodable video frames (truncated or corrupt)")
    if result.decoded_until is not None:
        notes.append(
            f"video ended after {result.decoded_until} frames although {info.num_frames} were "
            f"expected ({info.frame_count_source} count); later frames repeat the last one"
        )
    if info.frame_count_source == "estimated":
        notes.append(f"frame count {info.num_frames} estimated from duration x frame rate")
    rot = next(iter(rotations)) if len(rotations) == 1 else 0
    if rot:
        notes.append(f"rotated {(360 - rot) % 360} degrees clockwise as the file's rotation metadata asks")
    return result.frames, info, notes


def decode_frames(path: str | os.PathLike, indices: Sequence[int], *,
                  max_sequential_frames: int = MAX_SEQUENTIAL_FRAMES) -> list[np.ndarray]:
    """RGB frames (H x W x 3 uint8, upright per the rotation metadata) at the given frame indices.

    Videos up to ``max_sequential_frames`` are decoded front to back and indexed by decode order
    (exact, also for variable frame rate). Longer ones are decoded by seeking near each index, so
    a few frames of a long video cost a few GOPs, not the whole file; there frame i is the first
    frame shown at or after i / average_fps, which is frame i of a constant-frame-rate file.
    """
    frames, _, _ = _decode(path, indices, lambda a: a, max_sequential_frames=max_sequential_frames)
    return [frames[int(i)] for i in indices]


# --------------------------------------------------------------------------------------------
# Spatial views
# --------------------------------------------------------------------------------------------


def _resized_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    # video_transforms/functional.py get_resize_sizes: the long side is truncated, not rounded.
    if width < height:
        return int(short_side * height / width), short_side
    return short_side, int(short_side * width / height)


def _resize_short_side(frame: np.ndarray, short_side: int) -> np.ndarray:
    """Bilinear, half-pixel centres, no antialiasing, rounded to uint8 (the authors' cv2.INTER_LINEAR)."""
    h, w = frame.shape[:2]
    if min(h, w) == short_side:
        return frame
    oh, ow = _resized_size(h, w, short_side)
    t = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float()
    t = F.interpolate(t, size=(oh, ow), mode="bilinear", align_corners=False, antialias=False)
    return t[0].round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def _crop_offsets(height: int, width: int, crop: int, crops: int, k: int) -> tuple[int, int]:
    """(top, left) of crop k: spread along the long side as the authors' test loaders, centred across."""
    long_side = max(height, width)
    if crops == 1:
        along = int((long_side - crop) / 2)
    else:
        along = int(k * (1.0 * (long_side - crop) / (crops - 1)))
    if height >= width:
        return along, int((width - crop) / 2)
    return int((height - crop) / 2), along


@dataclass
class VideoClips:
    """Model-ready views of one video.

    ``tensor`` is (V, 3, T, S, S) float32, V = clips * crops ordered clip-major (view
    ``c * crops + k`` is temporal clip c, spatial crop k), like the authors' test set.
    """

    tensor: torch.Tensor
    notes: list[str] = field(default_factory=list)
    views: tuple[int, int] = (1, 1)
    frame_indices: list[list[int]] = field(default_factory=list)
    total_frames: int = 0


def load_video_views(path: str | os.PathLike, protocol: VideoProtocol, mean: Sequence[float],
                     std: Sequence[float], views: tuple[int, int] | None = None, *,
                     max_sequential_frames: int = MAX_SEQUENTIAL_FRAMES,
                     frame_hook: Callable[[np.ndarray], np.ndarray] | None = None) -> VideoClips:
    """Decode, resize, crop and normalise a video into the protocol's clips x crops views.

    ``views=(clips, crops)`` overrides the protocol's counts, e.g. ``(1, 1)`` for one centred view.
    ``frame_hook`` (e.g. a JPEG re-encode for ``ssmzoo robustness``) runs on every decoded frame
    (H x W x 3 uint8 RGB, upright) before the resize, and must return a frame of the same shape.
    """
    if views is not None:
        if (not isinstance(views, (tuple, list)) or len(views) != 2
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in views)):
            raise ValueError(f"views must be (clips, crops) with positive integers, got {views!r}")
        protocol = protocol.with_views(int(views[0]), int(views[1]))
    mean_t = torch.as_tensor(list(mean), dtype=torch.float32)
    std_t = torch.as_tensor(list(std), dtype=torch.float32)
    if mean_t.shape != (3,) or std_t.shape != (3,) or bool((std_t <= 0).any()):
        raise ValueError(f"mean and std need 3 values each (std > 0), got {list(mean)} and {list(std)}")

    info = probe_video(path)
    clip_indices = [sample_frame_indices(info.num_frames, protocol, c) for c in range(protocol.clips)]
    wanted = sorted({i for clip in clip_indices for i in clip})

    def convert(frame: np.ndarray) -> np.ndarray:
        if frame_hook is not None:
            frame = np.require(frame_hook(frame), requirements=("C", "W"))  # a hook may return read-only memory
        return _resize_short_side(frame, protocol.short_side)

    frames, info, notes = _decode(
        path, wanted, convert, max_sequential_frames=max_sequential_frames, info=info,
    )
    if any(len(set(clip)) < len(clip) for clip in clip_indices):
        notes.insert(0, f"repeated frames: video has {count(info.num_frames, 'frame')}, "
                        f"model samples {protocol.num_frames} per clip")

    shapes = {frames[i].shape for i in wanted}
    if len(shapes) != 1:
        raise InputError(f"{path}: frame size changes within the video ({sorted(shapes)})")
    height, width = next(iter(shapes))[:2]
    crop = protocol.crop_size
    scale = (1.0 / 255.0) / std_t
    shift = mean_t / std_t
    n_views = protocol.clips * protocol.crops
    try:
        out = torch.empty(n_views, 3, protocol.num_frames, crop, crop, dtype=torch.float32)
    except RuntimeError:  # the allocator's refusal: too many views for this machine's memory
        size = n_views * 3 * protocol.num_frames * crop * crop * 4
        raise InputError(f"{path}: {protocol.clips}x{protocol.crops} views of {protocol.num_frames} frames need "
                         f"{size / 2**30:.1f} GiB of memory, more than can be allocated; ask for fewer --views") from None
    for c, clip in enumerate(clip_indices):
        # (T, H, W, 3) uint8 -> (3, T, H, W) normalised float32
        buf = torch.from_numpy(np.stack([frames[i] for i in clip])).permute(3, 0, 1, 2).float()
        buf = buf * scale[:, None, None, None] - shift[:, None, None, None]
        for k in range(protocol.crops):
            top, left = _crop_offsets(height, width, crop, protocol.crops, k)
            out[c * protocol.crops + k] = buf[:, :, top:top + crop, left:left + crop]
    return VideoClips(tensor=out, notes=notes, views=(protocol.clips, protocol.crops),
                      frame_indices=clip_indices, total_frames=info.num_frames)


# --------------------------------------------------------------------------------------------
# Class names
# --------------------------------------------------------------------------------------------

_LABEL_FILES = {
    "kinetics-400": ("kinetics400_classes.txt", 400),
    "ssv2": ("ssv2_classes.txt", 174),
}
_LABEL_ALIASES = {
    "kinetics-400": "kinetics-400", "kinetics400": "kinetics-400", "k400": "kinetics-400",
    "ssv2": "ssv2", "sthv2": "ssv2", "something-something-v2": "ssv2",
}


def load_class_names(label_set: str) -> list[str]:
    """Class names in the datasets' official index order (the order of the released heads).

    Kinetics-400: the official class list sorted alphabetically (index 0 'abseiling'), as in the
    VideoMAE/UniFormer/VideoMamba label csv files. Something-Something-v2: by the index values of
    the official ``something-something-v2-labels.json`` (index 0 'Approaching something with
    your camera').
    """
    key = _LABEL_ALIASES.get(str(label_set).strip().lower())
    if key is None:
        raise ValueError(f"unknown video label set {label_set!r} (known: {', '.join(_LABEL_FILES)})")
    filename, expected = _LABEL_FILES[key]
    text = resources.files("ssmzoo").joinpath("data", filename).read_text(encoding="utf-8")
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != expected:
        raise RuntimeError(f"ssmzoo/data/{filename} has {len(names)} class names, expected {expected}")
    return names
