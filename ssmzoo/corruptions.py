"""Image corruptions for ``ssmzoo robustness``: JPEG re-encoding at a chosen quality, and the ImageNet-C
corruptions that need no external assets (Hendrycks & Dietterich, "Benchmarking Neural Network Robustness
to Common Corruptions and Perturbations", ICLR 2019).

The ImageNet-C definitions and per-severity parameters follow the reference implementation,
``hendrycks/robustness`` ``ImageNet-C/create_c/make_imagenet_c.py``, re-implemented with NumPy and Pillow
so that neither OpenCV, scikit-image, Wand nor SciPy is needed at run time:

* every corruption works on float64 RGB in [0, 1] (or on the PIL image where the reference does), and
  the result is clipped, scaled by 255 and *truncated* to uint8, as the reference's ``np.uint8(...)``;
* ``gaussian_blur`` is scikit-image's ``gaussian(sigma, mode='nearest', truncate=4)`` (a separable
  Gaussian with edge replication); ``defocus_blur`` correlates with the reference's anti-aliased disk
  (OpenCV ``GaussianBlur`` of a binary disk) with reflect-101 borders, as ``cv2.filter2D``;
* ``brightness`` and ``saturate`` go through HSV with scikit-image's ``rgb2hsv``/``hsv2rgb`` conventions
  (hue 0 and saturation 0 for grey pixels), so grey pixels turn reddish at saturate severities 4-5
  exactly as in ImageNet-C;
* ``impulse_noise`` is scikit-image's salt-and-pepper noise: each value (per channel) independently
  replaced with probability ``amount``, half by 1 and half by 0.

Random corruptions draw from the ``numpy.random.Generator`` they are given, so a sweep seeds them per
image and condition and gets the same pixels for any number of workers or processes.

The reference parameters are in pixels of a 224 x 224 image; ``ssmzoo robustness`` applies them at the
model's own input resolution (224 for every model in the zoo but the 448/576 fine-tuned ones).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
from PIL import Image

SEVERITIES = (1, 2, 3, 4, 5)


# --------------------------------------------------------------------------------------------
# JPEG
# --------------------------------------------------------------------------------------------

JPEG_SETTINGS = "Pillow's encoder at the given quality, 4:2:0 chroma subsampling (Pillow's default), baseline"
# libjpeg's JPEG_MAX_DIMENSION: a wider or taller image cannot be a JPEG (libjpeg would print a bare line on
# stderr and Pillow raise "broken data stream"), so it is refused before encoding, with this cause.
JPEG_MAX_SIDE = 65500


class TooLargeForJpeg(ValueError):
    """An image wider or taller than ``JPEG_MAX_SIDE``; its message is the cause, for one-line reports."""


def jpeg_reencode(img: Image.Image, quality: int) -> Image.Image:
    """Encodes ``img`` as a JPEG in memory at ``quality`` (1..100) and decodes it again, as RGB.

    Only ``quality`` is passed to Pillow, so the rest is Pillow's default: IJG quantisation tables
    scaled by the quality, 4:2:0 chroma subsampling, no optimisation -- what the ImageNet-C
    ``jpeg_compression`` corruption does too. An image wider or taller than ``JPEG_MAX_SIDE`` raises
    ``TooLargeForJpeg`` before the encoder runs.
    """
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be an integer in 1..100, got {quality!r}")
    if max(img.size) > JPEG_MAX_SIDE:
        raise TooLargeForJpeg(f"too large for JPEG ({max(img.size)} px > {JPEG_MAX_SIDE})")
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as decoded:
        return decoded.convert("RGB")


def jpeg_frame(frame: np.ndarray, quality: int) -> np.ndarray:
    """``jpeg_reencode`` for an H x W x 3 uint8 video frame."""
    return np.asarray(jpeg_reencode(Image.fromarray(np.ascontiguousarray(frame)), quality))


def psnr(a: Image.Image | np.ndarray, b: Image.Image | np.ndarray) -> float:
    """Peak signal-to-noise ratio (dB) of two 8-bit images; inf when they are equal."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    mse = float(np.mean((x - y) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


# --------------------------------------------------------------------------------------------
# Helpers shared by the ImageNet-C corruptions
# --------------------------------------------------------------------------------------------


def to_float(img: Image.Image) -> np.ndarray:
    """RGB PIL image -> H x W x 3 float64 in [0, 1] (the reference's ``np.array(x) / 255.``)."""
    return np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0


def to_image(x: np.ndarray) -> Image.Image:
    """Float RGB in [0, 1] -> uint8 PIL image: clip, scale by 255 and truncate, as ImageNet-C saved it."""
    return Image.fromarray((np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8), mode="RGB")


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """scikit-image's ``rgb2hsv`` conventions: hue in [0, 1), grey pixels get hue 0 and saturation 0,
    and where channels tie for the maximum, blue's formula wins over green's over red's."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = rgb.max(axis=-1)
    delta = v - rgb.min(axis=-1)
    grey = delta == 0
    safe = np.where(grey, 1.0, delta)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(grey, 0.0, delta / np.where(v == 0, 1.0, v))
    h = np.select([b == v, g == v], [4.0 + (r - g) / safe, 2.0 + (b - r) / safe], (g - b) / safe)
    h = np.where(grey, 0.0, (h / 6.0) % 1.0)
    return np.stack([h, s, v], axis=-1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """Inverse of ``rgb_to_hsv`` (scikit-image's ``hsv2rgb`` sector formulas)."""
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    sector = np.floor(h * 6.0)
    f = h * 6.0 - sector
    p, q, t = v * (1.0 - s), v * (1.0 - f * s), v * (1.0 - (1.0 - f) * s)
    k = (sector.astype(np.int64) % 6)[..., None]
    choices = [np.stack(c, axis=-1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))]
    return np.choose(k, choices)


def _correlate(x: np.ndarray, kernel: np.ndarray, pad_mode: str) -> np.ndarray:
    """Per-channel 2-D correlation of H x W x C float64 ``x`` with ``kernel`` (odd sides), borders padded
    with ``np.pad(pad_mode)`` ('edge' = SciPy's 'nearest', 'reflect' = OpenCV's reflect-101). Computed
    by FFT: float64-exact to ~1e-15 and as fast for a 21 x 21 disk as for a 3 x 3 kernel."""
    kh, kw = kernel.shape
    padded = np.pad(x, ((kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)), mode=pad_mode)
    size = padded.shape[:2]
    spectrum = np.fft.rfft2(padded, axes=(0, 1)) * np.fft.rfft2(kernel[::-1, ::-1], s=size)[..., None]
    full = np.fft.irfft2(spectrum, s=size, axes=(0, 1))  # circular; the valid part has no wrap-around
    return full[kh - 1:, kw - 1:][: x.shape[0], : x.shape[1]]


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """SciPy's ``gaussian_filter`` kernel: radius ``int(truncate * sigma + 0.5)``, normalised to sum 1."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    phi = np.exp(-0.5 / (sigma * sigma) * x ** 2)
    return phi / phi.sum()


def _cv2_gaussian_kernel1d(ksize: int, sigma: float) -> np.ndarray:
    """OpenCV's ``getGaussianKernel`` for sigma > 0: exp(-x^2 / 2 sigma^2) on ksize taps, normalised."""
    x = np.arange(ksize, dtype=np.float64) - (ksize - 1) / 2.0
    w = np.exp(-(x ** 2) / (2.0 * sigma * sigma))
    return w / w.sum()


def disk_kernel(radius: int, alias_blur: float) -> np.ndarray:
    """The reference's defocus kernel: a binary disk of ``radius`` on a 17 x 17 grid (a
    (2 radius + 1)-square one above radius 8), normalised, then anti-aliased with a 3 x 3 (5 x 5 above
    radius 8) Gaussian of sigma ``alias_blur`` with reflect-101 borders (``cv2.GaussianBlur``)."""
    if radius <= 8:
        grid, ksize = np.arange(-8, 9), 3
    else:
        grid, ksize = np.arange(-radius, radius + 1), 5
    xx, yy = np.meshgrid(grid, grid)
    disk = (xx ** 2 + yy ** 2 <= radius ** 2).astype(np.float64)
    disk /= disk.sum()
    g = _cv2_gaussian_kernel1d(ksize, alias_blur)
    out = _correlate(disk[..., None], np.outer(g, g), pad_mode="reflect")[..., 0]
    return out.astype(np.float32)  # the reference's kernel is float32


# --------------------------------------------------------------------------------------------
# ImageNet-C corruptions (parameters per severity 1..5 from make_imagenet_c.py)
# --------------------------------------------------------------------------------------------

Rng = np.random.Generator


def _gaussian_noise(img: Image.Image, c: float, rng: Rng) -> Image.Image:
    x = to_float(img)
    return to_image(x + rng.normal(size=x.shape, scale=c))


def _shot_noise(img: Image.Image, c: float, rng: Rng) -> Image.Image:
    x = to_float(img)
    return to_image(rng.poisson(x * c) / c)


def _impulse_noise(img: Image.Image, amount: float, rng: Rng) -> Image.Image:
    x = to_float(img)
    flipped = rng.random(x.shape) < amount
    salted = rng.random(x.shape) < 0.5
    out = x.copy()
    out[flipped & salted] = 1.0
    out[flipped & ~salted] = 0.0
    return to_image(out)


def _speckle_noise(img: Image.Image, c: float, rng: Rng) -> Image.Image:
    x = to_float(img)
    return to_image(x + x * rng.normal(size=x.shape, scale=c))


def _gaussian_blur(img: Image.Image, sigma: float, rng: Rng) -> Image.Image:
    k = gaussian_kernel1d(sigma)
    return to_image(_correlate(to_float(img), np.outer(k, k), pad_mode="edge"))


def _defocus_blur(img: Image.Image, c: tuple[int, float], rng: Rng) -> Image.Image:
    kernel = disk_kernel(c[0], c[1]).astype(np.float64)
    return to_image(_correlate(to_float(img), kernel, pad_mode="reflect"))


def _contrast(img: Image.Image, c: float, rng: Rng) -> Image.Image:
    x = to_float(img)
    means = x.mean(axis=(0, 1), keepdims=True)
    return to_image((x - means) * c + means)


def _brightness(img: Image.Image, c: float, rng: Rng) -> Image.Image:
    hsv = rgb_to_hsv(to_float(img))
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0.0, 1.0)
    return to_image(hsv_to_rgb(hsv))


def _saturate(img: Image.Image, c: tuple[float, float], rng: Rng) -> Image.Image:
    hsv = rgb_to_hsv(to_float(img))
    hsv[..., 1] = np.clip(hsv[..., 1] * c[0] + c[1], 0.0, 1.0)
    return to_image(hsv_to_rgb(hsv))


def _jpeg_compression(img: Image.Image, quality: int, rng: Rng) -> Image.Image:
    return jpeg_reencode(img, quality)


def _pixelate(img: Image.Image, c: float, rng: Rng) -> Image.Image:
    w, h = img.size
    small = img.convert("RGB").resize((max(1, int(w * c)), max(1, int(h * c))), Image.Resampling.BOX)
    return small.resize((w, h), Image.Resampling.BOX)


# AlexNet's top-1 error (fraction) per severity 1..5 on ImageNet-C, the normaliser of the corruption
# error. Per-severity values as distributed with timm's ImageNet-C helpers
# (``imagenetc_alexnet_error_rates_list``); their means equal, to the 6 digits printed there, the
# per-corruption AlexNet errors that google-research/augmix ``imagenet.py`` (``ALEXNET_ERR``, "Raw
# AlexNet errors taken from https://github.com/hendrycks/robustness") divides by; both give the ImageNet-C
# paper's AlexNet column. The four "extra" corruptions (speckle_noise, gaussian_blur, spatter, saturate)
# have no published AlexNet errors, so they get no corruption error.
ALEXNET_ERRORS: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.69528, 0.82542, 0.93554, 0.98138, 0.99452),
    "shot_noise": (0.71224, 0.85108, 0.93574, 0.98182, 0.99146),
    "impulse_noise": (0.78374, 0.89808, 0.9487, 0.9872, 0.99548),
    "defocus_blur": (0.65624, 0.73202, 0.85036, 0.91364, 0.94714),
    "glass_blur": (0.64308, 0.75054, 0.88806, 0.91622, 0.93344),
    "motion_blur": (0.5843, 0.70048, 0.82108, 0.8975, 0.92638),
    "zoom_blur": (0.70008, 0.76992, 0.80784, 0.84198, 0.87198),
    "snow": (0.71726, 0.88392, 0.86468, 0.9187, 0.94952),
    "frost": (0.6139, 0.79734, 0.8879, 0.89942, 0.9343),
    "fog": (0.67474, 0.7605, 0.84378, 0.8726, 0.945),
    "brightness": (0.4514, 0.48502, 0.54048, 0.62166, 0.7244),
    "contrast": (0.64548, 0.7615, 0.88874, 0.9776, 0.9927),
    "elastic_transform": (0.52596, 0.70116, 0.55686, 0.64076, 0.80554),
    "pixelate": (0.52218, 0.5462, 0.73728, 0.87092, 0.91262),
    "jpeg_compression": (0.51002, 0.54718, 0.57294, 0.65458, 0.74778),
}
# The 15 corruptions of the ImageNet-C benchmark (the published mCE averages all of them).
IMAGENET_C_BENCHMARK = tuple(ALEXNET_ERRORS)


@dataclass(frozen=True)
class Corruption:
    name: str
    family: str  # ImageNet-C's grouping: noise, blur, weather, digital; "extra" for the held-out four
    params: tuple  # the reference's parameter for severity 1..5
    fn: Callable[[Image.Image, object, Rng], Image.Image]
    random: bool

    @property
    def alexnet_errors(self) -> Optional[tuple[float, ...]]:
        return ALEXNET_ERRORS.get(self.name)

    def __call__(self, img: Image.Image, severity: int, rng: Optional[Rng] = None) -> Image.Image:
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be 1..5, got {severity!r}")
        if rng is None:
            rng = np.random.default_rng()
        return self.fn(img.convert("RGB"), self.params[severity - 1], rng)


CORRUPTIONS: dict[str, Corruption] = {c.name: c for c in (
    Corruption("gaussian_noise", "noise", (0.08, 0.12, 0.18, 0.26, 0.38), _gaussian_noise, True),
    Corruption("shot_noise", "noise", (60, 25, 12, 5, 3), _shot_noise, True),
    Corruption("impulse_noise", "noise", (0.03, 0.06, 0.09, 0.17, 0.27), _impulse_noise, True),
    Corruption("defocus_blur", "blur", ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)), _defocus_blur, False),
    Corruption("brightness", "weather", (0.1, 0.2, 0.3, 0.4, 0.5), _brightness, False),
    Corruption("contrast", "digital", (0.4, 0.3, 0.2, 0.1, 0.05), _contrast, False),
    Corruption("pixelate", "digital", (0.6, 0.5, 0.4, 0.3, 0.25), _pixelate, False),
    Corruption("jpeg_compression", "digital", (25, 18, 15, 10, 7), _jpeg_compression, False),
    Corruption("speckle_noise", "extra", (0.15, 0.2, 0.35, 0.45, 0.6), _speckle_noise, True),
    Corruption("gaussian_blur", "extra", (1, 2, 3, 4, 6), _gaussian_blur, False),
    Corruption("saturate", "extra", ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)), _saturate, False),
)}


def corrupt(img: Image.Image, name: str, severity: int, rng: Optional[Rng] = None) -> Image.Image:
    """Applies ImageNet-C corruption ``name`` at ``severity`` (1..5); returns an RGB image of the same size."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; available: {', '.join(CORRUPTIONS)}")
    return CORRUPTIONS[name](img, severity, rng)


def corruption_error(errors: Sequence[float], alexnet: Sequence[float]) -> float:
    """ImageNet-C's CE: the model's errors summed over the severities over AlexNet's summed over the same
    severities (same units, same order). Published CEs sum over all five, 1..5; over fewer it is the same
    ratio restricted to them, not comparable with published figures."""
    if not errors or len(errors) != len(alexnet) or len(errors) > len(SEVERITIES):
        raise ValueError(f"the corruption error needs the model's and AlexNet's errors at the same severities, "
                         f"got {len(errors)} and {len(alexnet)}")
    return float(sum(errors)) / float(sum(alexnet))
