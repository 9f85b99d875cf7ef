"""Reading image files robustly, and the eval transform that goes with a model."""

from __future__ import annotations

import re
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError, SsmzooError
from .manifest import DataConfig
from .paths import file_problem
from .video import VIDEO_SUFFIXES

# Formats whose decoder is a library Pillow may be built without (features.check's names). MPO (a stereo
# camera's JPEGs) has no opener of its own: the JPEG opener reads it.
_CODEC_FEATURES = {"JPEG": "jpg", "MPO": "jpg", "JPEG2000": "jpg_2000", "WEBP": "webp", "AVIF": "avif"}
# Above this many pixels a JPEG is decoded at a reduced DCT scale (still >= 4x the crop size), which
# keeps huge photos from costing gigabytes; ordinary photos are decoded in full, exactly as timm does.
DRAFT_ABOVE_PIXELS = 24_000_000
# Pillow refuses images above ~179 MP as possible decompression bombs; panoramas legitimately exceed it.
# Above this many pixels an image is refused before it is decoded (Pillow itself would only raise at twice
# its MAX_IMAGE_PIXELS: above once, it merely warns).
MAX_PIXELS = 1_000_000_000
# The eval transform resizes the short side to the model's scale (e.g. 256) keeping the aspect ratio, so a
# 1-pixel-high strip 1,000,000 wide would become 256,000,000 x 256 before the centre crop (gigabytes).
# Images longer than this many times their width (or the reverse) are refused; panoramas are far below.
MAX_ASPECT_RATIO = 1000


def _decodes(fmt: str) -> bool:
    """Whether Pillow can decode ``fmt`` here, not only name it: some formats need a codec library it
    may be built without, Ghostscript (EPS), or a handler nobody registered (stubs: HDF5, GRIB, BUFR, WMF)."""
    from PIL import ImageFile, features

    if fmt in _CODEC_FEATURES:
        return bool(features.check(_CODEC_FEATURES[fmt]))
    if fmt == "EPS":
        from PIL import EpsImagePlugin

        return bool(EpsImagePlugin.has_ghostscript())
    factory = Image.OPEN[fmt][0] if fmt in Image.OPEN else None
    if isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile):
        return getattr(factory, "_handler", None) is not None
    return factory is not None


@lru_cache(maxsize=None)
def image_suffixes() -> frozenset[str]:
    """The suffixes (lower case, with the dot) of every format Pillow can decode here. ``classify DIR``
    and the datasets list a folder's images by them, so a folder takes the files that naming them
    directly reads (.jfif, .jpe, .jp2, .avif, ...). Video suffixes are left out: Pillow knows .mpg as
    MPEG, but only a video reader decodes it."""
    Image.init()
    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items()
                     if _decodes(fmt)) - frozenset(VIDEO_SUFFIXES)


def _full_scale(img: Image.Image, arr: np.ndarray) -> float:
    """The value that means white in a 16-bit, 32-bit or float image: 65535 for 16-bit data (or any values
    above 255), 1.0 for a float image whose values are all within 0..1 (the usual range of float pixels,
    which 255 would turn black), else 255."""
    finite = arr[np.isfinite(arr)]
    peak = float(finite.max()) if finite.size else 0.0
    if img.mode.startswith("I;16") or peak > 255:
        return 65535.0
    return 1.0 if img.mode == "F" and peak <= 1.0 else 255.0


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: 16-bit and float images are rescaled (see ``_full_scale``; NaN is
    black), alpha is composited on white."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = _full_scale(img, arr)
        arr = np.clip(np.nan_to_num(arr / hi * 255.0 + 0.5, nan=0.0), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def size_problem(width: int, height: int) -> str | None:
    """Why an image of this size is refused (too many pixels, or too elongated for the eval resize), or None."""
    if width * height > MAX_PIXELS:
        return f"image too large ({width} x {height} pixels; limit {MAX_PIXELS:,} pixels)"
    long, short = max(width, height), max(1, min(width, height))
    if long > MAX_ASPECT_RATIO * short:
        return (f"image too elongated ({width} x {height} pixels, aspect ratio {long / short:,.0f}:1; limit "
                f"{MAX_ASPECT_RATIO}:1, as resizing its short side to the model's input would make a huge image)")
    return None


def out_of_memory(path: str | Path) -> str:
    """The one line for an input that exhausted memory while it was decoded or resized."""
    return f"{path}: out of memory decoding or resizing it (MemoryError)"


def load_image(path: str | Path, min_side: int = 224, upright: bool = False) -> Image.Image:
    """Opens an image as RGB or raises InputError with one line naming the file and the cause. With
    ``upright``, turned as its EXIF orientation asks (a phone photo shot sideways is stored sideways);
    the datasets keep the pixels as stored, as timm's and the authors' evaluation read them."""
    path = Path(path)
    try:
        problem = file_problem(path)  # (by stat: a pipe is never opened, which could wait forever)
        if problem is not None:
            raise InputError(f"{path}: {problem}")
        if path.is_dir():
            raise InputError(f"{path}: is a directory")
        if path.stat().st_size == 0:
            raise InputError(f"{path}: empty file (0 bytes)")
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, MAX_PIXELS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # EXIF / ICC chatter is not the user's problem
            img = Image.open(path)
            problem = size_problem(*img.size)  # from the header, before a byte of pixels is decoded
            if problem is not None:
                raise InputError(f"{path}: {problem}")
            if img.format == "JPEG" and img.width * img.height > DRAFT_ABOVE_PIXELS:
                img.draft("RGB", (min_side * 4, min_side * 4))
            img.load()
            if upright:
                ImageOps.exif_transpose(img, in_place=True)  # (a copy otherwise, even when upright)
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image Pillow can read") from None
    except Image.DecompressionBombError as exc:
        pixels = re.search(r"\((\d+) pixels\)", str(exc))  # Pillow's own check, at 2 x MAX_IMAGE_PIXELS
        size = f"{int(pixels.group(1)):,} pixels" if pixels else "its size"
        raise InputError(f"{path}: image too large ({size}; limit {MAX_PIXELS:,} pixels)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:  # the system refused (permissions, I/O):
            raise InputError(f"{path}: cannot read it ({exc.strerror or exc})") from None  # Pillow's carry no errno
        raise InputError(f"{path}: truncated or corrupt image ({exc})") from None
    return _to_rgb(img)


def eval_transform(data: DataConfig) -> Callable[[Image.Image], torch.Tensor]:
    """timm's own eval transform for the model's data config: resize shorter side by crop_pct, crop, normalise."""
    from timm.data import create_transform

    cfg = data.as_timm()
    return create_transform(
        input_size=cfg["input_size"],
        is_training=False,
        interpolation=cfg["interpolation"],
        mean=cfg["mean"],
        std=cfg["std"],
        crop_pct=cfg["crop_pct"],
        crop_mode=cfg["crop_mode"],
    )


def split_eval_transform(data_cfg: DataConfig) -> tuple[Callable[[Image.Image], Image.Image], tuple, tuple]:
    """timm's eval transform as (PIL resize/crop part, mean, std).

    Workers then ship uint8 crops (a quarter of the bytes of float32) and ``Normalizer`` redoes
    ToTensor + Normalize on the model's device with torchvision's exact float32 operations, so the
    model sees bit-for-bit the tensor ``eval_transform`` makes. The crop is also where ImageNet-C
    corruptions act.
    """
    from torchvision import transforms

    steps = list(eval_transform(data_cfg).transforms)
    cut = next((k for k, s in enumerate(steps) if type(s).__name__ in ("ToTensor", "MaybeToTensor")), None)
    rest = steps[cut + 1:] if cut is not None else []
    if cut is None or len(rest) != 1 or not isinstance(rest[0], transforms.Normalize):
        raise SsmzooError(f"unexpected eval transform {steps}: expected PIL steps, ToTensor, Normalize")
    mean = tuple(float(v) for v in torch.as_tensor(rest[0].mean).flatten())
    std = tuple(float(v) for v in torch.as_tensor(rest[0].std).flatten())
    return transforms.Compose(steps[:cut]), mean, std


def to_uint8_tensor(img: Image.Image) -> torch.Tensor:
    """An RGB PIL image as a (3, H, W) uint8 tensor (torchvision's ToTensor before its division)."""
    return torch.from_numpy(np.array(img.convert("RGB"), dtype=np.uint8, copy=True)).permute(2, 0, 1)


class Normalizer:
    """ToTensor's ``/ 255`` and Normalize on uint8 (..., 3, H, W) batches, wherever they are: the same
    float32 operations in the same order as torchvision, hence the same values on any device."""

    def __init__(self, mean: tuple, std: tuple, device: torch.device | str = "cpu") -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(3, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(torch.float32).div(255).sub_(self.mean).div_(self.std)
