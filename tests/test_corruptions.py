"""JPEG re-encoding and the ImageNet-C corruptions on fixed images.

Hand-computed values for the closed-form corruptions (contrast, brightness, saturate), statistics for the
noises, impulse responses for the blurs, and -- where scikit-image/SciPy happen to be installed -- the
float outputs of the functions the reference implementation calls, to 1e-12.
"""

from __future__ import annotations

import io
import math
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from ssmzoo import corruptions as C

from conftest import EXAMPLES

RANDOM = [n for n, c in C.CORRUPTIONS.items() if c.random]


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """A natural, non-square photo crop (odd sides)."""
    return Image.open(EXAMPLES / "chelsea.jpg").convert("RGB").crop((101, 20, 302, 163))


def _arr(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float64)


# ----------------------------------------------------------------------------- JPEG


def test_jpeg_reencode_changes_pixels_and_quality_orders_psnr(photo):
    qualities = list(range(10, 100, 10))
    outs = [C.jpeg_reencode(photo, q) for q in qualities]
    assert all(o.mode == "RGB" and o.size == photo.size for o in outs)
    psnrs = [C.psnr(photo, o) for o in outs]
    assert all(a < b for a, b in zip(psnrs, psnrs[1:])), psnrs  # higher quality: closer to the original
    assert psnrs[0] < 32 < psnrs[-1] < math.inf
    assert not np.array_equal(np.asarray(outs[-1]), np.asarray(photo))  # even q90 changes pixels
    # grayscale / RGBA input comes back as RGB of the same size
    assert C.jpeg_reencode(photo.convert("L"), 50).mode == "RGB"
    assert C.jpeg_reencode(photo.convert("RGBA"), 50).size == photo.size


def test_jpeg_reencode_is_pillows_default_encoding_with_420_subsampling(photo):
    buf = io.BytesIO()
    photo.save(buf, format="JPEG", quality=37)
    buf.seek(0)
    reference = Image.open(buf)
    assert JpegImagePlugin.get_sampling(reference) == 2  # 4:2:0, the documented setting
    assert np.array_equal(np.asarray(reference.convert("RGB")), np.asarray(C.jpeg_reencode(photo, 37)))
    frame = np.asarray(photo)
    assert np.array_equal(C.jpeg_frame(frame, 37), np.asarray(C.jpeg_reencode(photo, 37)))


@pytest.mark.parametrize("quality", [0, 101, -5, 50.0, True])
def test_jpeg_quality_is_checked(photo, quality):
    with pytest.raises(ValueError):
        C.jpeg_reencode(photo, quality)


# ----------------------------------------------------------------------------- every corruption


@pytest.mark.parametrize("name", list(C.CORRUPTIONS))
def test_output_size_mode_and_dtype(name):
    rng = np.random.default_rng(3)
    img = Image.fromarray(rng.integers(0, 256, (61, 97, 3), dtype=np.uint8))  # odd, non-square
    for severity in C.SEVERITIES:
        out = C.corrupt(img, name, severity, np.random.default_rng(severity))
        assert out.mode == "RGB" and out.size == (97, 61)
        assert np.asarray(out).dtype == np.uint8
    assert C.corrupt(img.convert("L"), name, 3, np.random.default_rng(0)).mode == "RGB"


@pytest.mark.parametrize("name", [n for n in C.CORRUPTIONS if n != "saturate"])
def test_severity_increases_the_change(photo, name):
    """Mean absolute pixel change grows with severity (saturate first lowers, then raises saturation)."""
    diffs = [np.abs(_arr(C.corrupt(photo, name, s, np.random.default_rng(11))) - _arr(photo)).mean()
             for s in C.SEVERITIES]
    assert all(a < b for a, b in zip(diffs, diffs[1:])), diffs
    assert diffs[0] > 0.5


@pytest.mark.parametrize("name", list(C.CORRUPTIONS))
def test_determinism_with_a_seed(photo, name):
    a = C.corrupt(photo, name, 3, np.random.default_rng(5))
    b = C.corrupt(photo, name, 3, np.random.default_rng(5))
    c = C.corrupt(photo, name, 3, np.random.default_rng(6))
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert np.array_equal(np.asarray(a), np.asarray(c)) != (name in RANDOM)


def test_unknown_corruption_and_severity():
    img = Image.new("RGB", (8, 8))
    with pytest.raises(ValueError, match="unknown corruption"):
        C.corrupt(img, "fog", 1)
    for severity in (0, 6):
        with pytest.raises(ValueError, match="severity"):
            C.corrupt(img, "contrast", severity)


# ----------------------------------------------------------------------------- hand-computed


def _floor_exact(value: Fraction) -> int:
    assert 0.01 < value - math.floor(value) < 0.99, "pick inputs whose results are not near an integer"
    return math.floor(value)


def test_contrast_by_hand():
    """(x - channel mean) * c + channel mean, then scaled by 255 and truncated."""
    # results at least 0.01 away from an integer for every severity, so float rounding cannot move the truncation
    pixels = np.array([[[217, 100, 2], [163, 219, 171]], [[130, 141, 134], [69, 8, 165]]], dtype=np.uint8)
    img = Image.fromarray(pixels)
    for severity, c in zip(C.SEVERITIES, (Fraction(2, 5), Fraction(3, 10), Fraction(1, 5), Fraction(1, 10),
                                           Fraction(1, 20))):
        out = np.asarray(C.corrupt(img, "contrast", severity))
        for ch in range(3):
            values = [Fraction(int(v)) for v in pixels[..., ch].ravel()]
            mean = sum(values) / 4
            expected = [_floor_exact((v - mean) * c + mean) for v in values]
            assert out[..., ch].ravel().tolist() == expected, (severity, ch)


def test_brightness_by_hand():
    """HSV value + c (clipped at 1): a colour scales by (V + c) / V, black becomes grey c, white stays."""
    img = Image.fromarray(np.array([[[200, 100, 50], [0, 0, 0], [255, 255, 255], [240, 30, 60]]], dtype=np.uint8))
    out = np.asarray(C.corrupt(img, "brightness", 1)).reshape(-1, 3).tolist()  # c = 0.1
    assert out[0] == [225, 112, 56]  # (200, 100, 50) * (200/255 + 0.1) / (200/255) = 225.5, 112.75, 56.375
    assert out[1] == [25, 25, 25]  # 0.1 * 255 = 25.5
    assert out[2] == [255, 255, 255]
    assert out[3] == [255, 31, 63]  # V clipped at 1: scale 255/240 -> 255, 31.875, 63.75
    out5 = np.asarray(C.corrupt(img, "brightness", 5)).reshape(-1, 3).tolist()  # c = 0.5
    assert out5[1] == [127, 127, 127] and out5[0] == [255, 127, 63]  # V' = 1: scale 255/200


def test_saturate_by_hand():
    """HSV saturation * c0 + c1: grey pixels (hue 0) turn red-ish at severities 4-5, as in ImageNet-C."""
    img = Image.fromarray(np.array([[[128, 128, 128], [203, 100, 50]]], dtype=np.uint8))
    # (203, 100, 50): V = 203/255, S = 153/203, hue sector 0 with f = (100 - 50) / 153
    grey5, colour5 = np.asarray(C.corrupt(img, "saturate", 5)).reshape(-1, 3).tolist()  # S' = 20 S + 0.2
    assert grey5 == [128, 102, 102]  # r = V, g = b = V (1 - 0.2) = 102.4
    assert colour5 == [203, 66, 0]  # S' = 1: mid = V f = 66.34, min = 0
    grey2, colour2 = np.asarray(C.corrupt(img, "saturate", 2)).reshape(-1, 3).tolist()  # S' = 0.1 S
    assert grey2 == [128, 128, 128]
    assert colour2 == [203, 192, 187]  # mid = V (1 - (1 - f) S') = 192.7, min = V (1 - S') = 187.7


def test_noise_statistics_on_flat_grey():
    grey = Image.new("RGB", (200, 150), (128, 128, 128))
    x = 128 / 255
    rng = np.random.default_rng(0)
    gauss = _arr(C.corrupt(grey, "gaussian_noise", 1, rng)) - 128  # sigma 0.08, no clipping at 6 sigma
    assert gauss.std() == pytest.approx(0.08 * 255, rel=0.03) and gauss.mean() == pytest.approx(-0.5, abs=0.3)
    shot = _arr(C.corrupt(grey, "shot_noise", 1, rng)) / 255  # Poisson(60 x) / 60
    assert shot.mean() == pytest.approx(x, abs=0.01) and shot.std() == pytest.approx(math.sqrt(x / 60), rel=0.05)
    impulse = np.asarray(C.corrupt(grey, "impulse_noise", 5, rng))  # each value: 27% salt or pepper
    assert (impulse == 255).mean() == pytest.approx(0.135, abs=0.01)
    assert (impulse == 0).mean() == pytest.approx(0.135, abs=0.01)
    assert ((impulse == 255) | (impulse == 0) | (impulse == 128)).all()
    per_pixel = (impulse != 128).sum(axis=-1)
    assert 0 < (per_pixel == 1).mean() < 1  # channels are hit independently, as skimage does per value
    speckle = _arr(C.corrupt(grey, "speckle_noise", 1, rng)) / 255 - x  # x * N(0, 0.15)
    assert speckle.std() == pytest.approx(x * 0.15, rel=0.05)


def test_gaussian_blur_impulse_response():
    """A single white pixel far from the borders spreads into the SciPy kernel (radius 4 sigma)."""
    arr = np.zeros((61, 61, 3))
    arr[30, 30] = 1.0
    for severity, sigma in zip(C.SEVERITIES, (1, 2, 3, 4, 6)):
        kernel = C.gaussian_kernel1d(sigma)
        assert kernel.shape == (2 * int(4 * sigma + 0.5) + 1,) and kernel.sum() == pytest.approx(1)
        out = C._correlate(arr, np.outer(kernel, kernel), "edge")
        r = len(kernel) // 2
        assert r <= 30  # the whole response fits in the image
        np.testing.assert_allclose(out[30 - r:31 + r, 30 - r:31 + r, 1], np.outer(kernel, kernel), atol=1e-12)
        assert out[..., 0].sum() == pytest.approx(1.0)
    flat = Image.new("RGB", (40, 30), (90, 91, 92))  # edge replication keeps a flat image flat
    assert np.abs(_arr(C.corrupt(flat, "gaussian_blur", 5)) - [90, 91, 92]).max() <= 1


def test_defocus_disk_kernel():
    for radius, blur in ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)):
        k = C.disk_kernel(radius, blur)
        assert k.shape == ((17, 17) if radius <= 8 else (21, 21)) and k.dtype == np.float32
        assert np.allclose(k, k.T) and np.allclose(k, k[::-1]) and np.allclose(k, k[:, ::-1])
        if radius <= 6:  # the disk stays inside the grid: anti-aliasing keeps the sum
            assert k.sum() == pytest.approx(1.0, abs=1e-6)
    # radius 3, alias sigma 0.1: the Gaussian is nearly a delta (exp(-50) off-centre), so the kernel is the
    # normalised binary disk of 29 pixels
    k = C.disk_kernel(3, 0.1)
    assert (k > 1e-6).sum() == 29 and k.max() == pytest.approx(1 / 29, rel=1e-6)
    # impulse response of the filter is the kernel itself
    arr = np.zeros((41, 41, 3))
    arr[20, 20] = 1.0
    out = C._correlate(arr, C.disk_kernel(6, 0.5).astype(np.float64), "reflect")
    np.testing.assert_allclose(out[12:29, 12:29, 2], C.disk_kernel(6, 0.5), atol=1e-7)


def test_pixelate_by_hand():
    """BOX down to int(side * c) and back: a 10 x 4 image at c = 0.5 averages 2 x 2 blocks."""
    arr = np.arange(10 * 4 * 3, dtype=np.uint8).reshape(4, 10, 3) * 2
    out = np.asarray(C.corrupt(Image.fromarray(arr), "pixelate", 2))  # c = 0.5
    blocks = arr.reshape(2, 2, 5, 2, 3).astype(np.float64).mean(axis=(1, 3))
    expected = np.repeat(np.repeat(blocks, 2, axis=0), 2, axis=1)
    assert np.abs(out - expected).max() <= 1


def test_jpeg_compression_corruption_uses_the_reference_qualities(photo):
    for severity, quality in zip(C.SEVERITIES, (25, 18, 15, 10, 7)):
        assert np.array_equal(np.asarray(C.corrupt(photo, "jpeg_compression", severity)),
                              np.asarray(C.jpeg_reencode(photo, quality)))


# ----------------------------------------------------------------------------- against scikit-image / SciPy


def test_hsv_round_trip_and_conventions():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.random((20, 20, 3)), rng.integers(0, 3, (20, 20, 3)) / 2.0])  # many ties and greys
    np.testing.assert_allclose(C.hsv_to_rgb(C.rgb_to_hsv(x)), x, atol=1e-12)
    hsv = C.rgb_to_hsv(np.array([[[0.5, 0.5, 0.5], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.5, 0.5]]]))
    assert hsv[0, 0].tolist() == [0.0, 0.0, 0.5] and hsv[0, 1].tolist() == [0.0, 0.0, 0.0]
    assert hsv[0, 2].tolist() == [0.0, 1.0, 1.0]
    assert hsv[0, 3, 0] == pytest.approx(0.5)  # cyan; green and blue tie, blue's formula: 4 + (r - g) / d


def test_against_scikit_image_and_scipy():
    skimage = pytest.importorskip("skimage")
    from skimage.color import hsv2rgb, rgb2hsv
    from skimage.filters import gaussian

    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(2)
    photo = C.to_float(Image.open(EXAMPLES / "coffee.jpg").convert("RGB").resize((83, 57)))
    ties = rng.integers(0, 4, (30, 31, 3)) / 3.0
    for x in (photo, ties):
        np.testing.assert_allclose(C.rgb_to_hsv(x), rgb2hsv(x), atol=1e-12)
        hsv = rgb2hsv(x)
        np.testing.assert_allclose(C.hsv_to_rgb(hsv), hsv2rgb(hsv), atol=1e-12)
    for sigma in (1, 2, 3, 4, 6):
        k = C.gaussian_kernel1d(sigma)
        ours = C._correlate(photo, np.outer(k, k), "edge")
        ref = gaussian(photo, sigma=sigma, channel_axis=-1, mode="nearest", truncate=4.0)
        np.testing.assert_allclose(ours, ref, atol=1e-12)
    for radius, blur in ((3, 0.1), (8, 0.5), (10, 0.5)):
        g = C._cv2_gaussian_kernel1d(3 if radius <= 8 else 5, blur)
        grid = np.arange(-8, 9) if radius <= 8 else np.arange(-radius, radius + 1)
        xx, yy = np.meshgrid(grid, grid)
        disk = (xx ** 2 + yy ** 2 <= radius ** 2).astype(np.float64)
        disk /= disk.sum()
        ref_kernel = ndimage.correlate(disk, np.outer(g, g), mode="mirror")  # cv2's reflect-101 border
        np.testing.assert_allclose(C.disk_kernel(radius, blur), ref_kernel, rtol=1e-6, atol=1e-12)
        kernel = C.disk_kernel(radius, blur).astype(np.float64)
        ours = C._correlate(photo, kernel, "reflect")
        ref = np.stack([ndimage.correlate(photo[..., c], kernel, mode="mirror") for c in range(3)], -1)
        np.testing.assert_allclose(ours, ref, atol=1e-12)
    assert skimage is not None


# ----------------------------------------------------------------------------- AlexNet normalisation


def test_alexnet_errors_match_the_published_means():
    """Per-severity AlexNet errors vs the per-corruption means in google-research/augmix imagenet.py
    (ALEXNET_ERR, "Raw AlexNet errors taken from https://github.com/hendrycks/robustness")."""
    augmix = dict(zip(
        ["gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
         "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression"],
        [0.886428, 0.894468, 0.922640, 0.819880, 0.826268, 0.785948, 0.798360, 0.866816, 0.826572, 0.819324,
         0.564592, 0.853204, 0.646056, 0.717840, 0.606500]))
    assert list(C.ALEXNET_ERRORS) == list(augmix) == list(C.IMAGENET_C_BENCHMARK)
    for name, per_severity in C.ALEXNET_ERRORS.items():
        assert len(per_severity) == 5 and all(0 < e < 1 for e in per_severity)
        assert np.mean(per_severity) == pytest.approx(augmix[name], abs=2e-6), name
    with_ce = [n for n, c in C.CORRUPTIONS.items() if c.alexnet_errors is not None]
    assert with_ce == ["gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "brightness", "contrast",
                       "pixelate", "jpeg_compression"]
    assert {n for n, c in C.CORRUPTIONS.items() if c.family == "extra"} == {"speckle_noise", "gaussian_blur",
                                                                               "saturate"}


def test_corruption_error_formula():
    assert C.corruption_error([10, 20, 30, 40, 50], [50, 50, 50, 50, 50]) == pytest.approx(0.6)
    assert C.corruption_error([10, 50], [40, 60]) == pytest.approx(0.6)  # two severities, AlexNet's at the same two
    for errors, alexnet in (([10, 20], [50] * 5), ([], []), ([10] * 6, [50] * 6)):
        with pytest.raises(ValueError, match="same severities"):
            C.corruption_error(errors, alexnet)
