"""Tiny real video files written with PyAV for the video tests.

Frame i shows its index in two flat gray halves (left: i // 16, right: i % 16, in steps of 16
gray levels), which survives lossy compression, so a test can read back which frame it got.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Callable, Sequence

import av
import numpy as np

LEVEL_STEP = 16
LEVEL_BASE = 8
MAX_INDEX = 255


def index_levels(index: int) -> tuple[int, int]:
    """Gray levels (left half, right half) that encode a frame index."""
    if not 0 <= index <= MAX_INDEX:
        raise ValueError(f"frame index {index} cannot be encoded (0..{MAX_INDEX})")
    return LEVEL_BASE + LEVEL_STEP * (index // 16), LEVEL_BASE + LEVEL_STEP * (index % 16)


def index_frame(index: int, size: tuple[int, int]) -> np.ndarray:
    """H x W x 3 uint8 frame for `index`; size is (width, height)."""
    width, height = size
    left, right = index_levels(index)
    img = np.empty((height, width, 3), np.uint8)
    img[:, : width // 2] = left
    img[:, width // 2 :] = right
    return img


def read_index(img: np.ndarray) -> int:
    """Frame index encoded by `index_frame`, read from the centres of the two halves."""
    h, w = img.shape[:2]
    left = img[h // 4 : 3 * h // 4, w // 8 : 3 * w // 8].mean()
    right = img[h // 4 : 3 * h // 4, 5 * w // 8 : 7 * w // 8].mean()
    hi = int(round((left - LEVEL_BASE) / LEVEL_STEP))
    lo = int(round((right - LEVEL_BASE) / LEVEL_STEP))
    return 16 * hi + lo


def write_video(
    path: str | Path,
    num_frames: int,
    size: tuple[int, int] = (64, 48),
    fps: int = 30,
    *,
    rotate: int | None = None,
    codec: str = "libx264",
    container_format: str | None = None,
    gop: int | None = None,
    faststart: bool = False,
    timestamps_ms: Sequence[int] | None = None,
    frame_fn: Callable[[int, tuple[int, int]], np.ndarray] = index_frame,
) -> Path:
    """Encode `num_frames` frames from `frame_fn(i, size)`.

    rotate: display rotation in degrees counter-clockwise (PyAV's `set_display_rotation` and
    `VideoFrame.rotation` convention; a phone's legacy `rotate=90` tag is -90 here).
    timestamps_ms: explicit presentation times for a variable-frame-rate file.
    """
    path = Path(path)
    options = {"movflags": "+faststart"} if faststart else {}
    out = av.open(str(path), mode="w", format=container_format, options=options)
    try:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        if gop is not None:
            stream.codec_context.gop_size = gop
        if timestamps_ms is not None:
            if len(timestamps_ms) != num_frames:
                raise ValueError("need one timestamp per frame")
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotate is not None:
            stream.set_display_rotation(rotate)
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(frame_fn(i, size), format="rgb24")
            if timestamps_ms is not None:
                frame.pts = int(timestamps_ms[i])
                frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    finally:
        out.close()
    return path


def write_mp4(path: str | Path, num_frames: int, size: tuple[int, int] = (64, 48), fps: int = 30,
              rotate: int | None = None, **kwargs) -> Path:
    return write_video(path, num_frames, size, fps, rotate=rotate, **kwargs)


def write_audio_only(path: str | Path, seconds: float = 0.25, sample_rate: int = 16000) -> Path:
    """An .mp4/.m4a holding one AAC audio stream and no video."""
    path = Path(path)
    out = av.open(str(path), mode="w", format="mp4")
    try:
        stream = out.add_stream("aac", rate=sample_rate)
        stream.layout = "mono"
        n = 1024
        t = np.arange(int(seconds * sample_rate), dtype=np.float32) / sample_rate
        wave = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for k in range(0, len(wave), n):
            chunk = np.zeros((1, n), np.float32)
            piece = wave[k : k + n]
            chunk[0, : len(piece)] = piece
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = k
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    finally:
        out.close()
    return path


def truncate(path: str | Path, fraction: float = 0.5) -> Path:
    """Cut a file down to `fraction` of its bytes, in place."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def has_encoder(name: str) -> bool:
    return name in av.codecs_available
