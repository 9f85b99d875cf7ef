"""Images are read whatever their mode, broken files fail with one line, and preprocessing is timm's."""

import json
import struct
import zlib

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config
from torchvision.transforms import functional as TF

import ssmzoo  # noqa: F401  (registers the models)
from ssmzoo.errors import InputError
from ssmzoo.images import eval_transform, load_image
from ssmzoo.manifest import load_manifest


@pytest.fixture()
def photo(tmp_path):
    rng = np.random.default_rng()
    arr = (rng.random((300, 451, 3)) * 255).astype(np.uint8)  # non-square on purpose
    path = tmp_path / "photo.jpg"
    Image.fromarray(arr).save(path, quality=90)
    return path


def test_transform_equals_timm_eval_transform_of_the_registered_model(photo):
    entry = load_manifest()["groupmamba_tiny"]
    ours = eval_transform(entry.data)(load_image(photo))
    model = timm.create_model("groupmamba_tiny", pretrained=False)
    theirs = create_transform(**resolve_data_config({}, model=model), is_training=False)(Image.open(photo).convert("RGB"))
    assert ours.shape == (3, 224, 224)
    assert torch.equal(ours, theirs)


def test_transform_is_resize_256_bicubic_then_center_crop_224(photo):
    """The authors' protocol (their data/build.py with TEST.CROP=True), written out by hand."""
    entry = load_manifest()["groupmamba_tiny"]
    img = Image.open(photo).convert("RGB")
    expected = TF.normalize(
        TF.to_tensor(TF.center_crop(TF.resize(img, 256, interpolation=TF.InterpolationMode.BICUBIC), 224)),
        mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    assert torch.allclose(eval_transform(entry.data)(img), expected, atol=1e-6)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "1"])
def test_odd_modes_become_rgb(tmp_path, mode):
    rng = np.random.default_rng()
    rgb = Image.fromarray((rng.random((40, 50, 3)) * 255).astype(np.uint8))
    if mode == "I;16":
        img = Image.fromarray((rng.random((40, 50)) * 65535).astype(np.uint16))
        suffix = ".png"
    else:
        img = rgb.convert(mode)
        suffix = ".jpg" if mode in ("L", "CMYK") else ".png"
    path = tmp_path / f"img{suffix}"
    img.save(path)
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (50, 40)


def test_16bit_image_keeps_its_range(tmp_path):
    arr = np.full((10, 10), 65535, dtype=np.uint16)
    arr[:5] = 0
    path = tmp_path / "deep.png"
    Image.fromarray(arr).save(path)
    out = np.asarray(load_image(path))
    assert out[0, 0, 0] == 0 and out[9, 9, 0] == 255


def test_transparent_pixels_are_composited_on_white(tmp_path):
    path = tmp_path / "clear.png"
    Image.new("RGBA", (8, 8), (10, 20, 30, 0)).save(path)
    assert np.asarray(load_image(path))[0, 0].tolist() == [255, 255, 255]


def test_huge_jpeg_is_decoded_at_reduced_scale(tmp_path):
    path = tmp_path / "huge.jpg"
    Image.new("RGB", (6000, 4500), (200, 100, 50)).save(path, quality=50)
    img = load_image(path)
    assert img.mode == "RGB" and min(img.size) >= 224 * 4 // 2 and img.size[0] < 6000


@pytest.mark.parametrize("make,cause", [
    (lambda p: None, "no such file or directory"),
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_text("hello, I am not a JPEG"), "not an image"),
])
def test_unreadable_files_fail_with_one_line_naming_the_file(tmp_path, make, cause):
    path = tmp_path / "bad.jpg"
    make(path)
    with pytest.raises(InputError, match=cause) as info:
        load_image(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_truncated_jpeg_fails_with_one_line(tmp_path, photo):
    data = photo.read_bytes()
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError, match="truncated") as info:
        load_image(path)
    assert str(path) in str(info.value)


def _png_header_only(path, width: int, height: int) -> None:
    """A PNG that declares ``width`` x ``height`` RGB pixels but holds almost none: Pillow opens it from
    its header, as it would a real giant, without the test having to write gigabytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("width,height,size", [
    (50000, 30000, "50000 x 30000 pixels"),  # 1.5 GP: between MAX_PIXELS and Pillow's own error at twice it
    (60000, 60000, "3,600,000,000 pixels"),  # above Pillow's error, which gives no width and height
])
def test_images_above_max_pixels_are_refused_before_decoding(tmp_path, width, height, size):
    path = tmp_path / "giant.png"
    _png_header_only(path, width, height)
    with pytest.raises(InputError) as info:
        load_image(path)
    assert str(info.value) == f"{path}: image too large ({size}; limit 1,000,000,000 pixels)"


def test_a_strip_too_elongated_for_the_eval_resize_is_refused_and_one_at_the_limit_is_read(tmp_path):
    """Resizing the short side of a 1 x 1,000,000 strip to a model's 256 would make 256,000,000 x 256
    pixels (gigabytes) before the crop: refused from the header, in a fraction of a second."""
    strip, edge = tmp_path / "strip.png", tmp_path / "edge.png"
    Image.new("RGB", (1_000_000, 1)).save(strip)  # 3 KB on disk
    Image.new("RGB", (1, 1000)).save(edge)
    with pytest.raises(InputError) as info:
        load_image(strip)
    assert str(info.value) == (f"{strip}: image too elongated (1000000 x 1 pixels, aspect ratio 1,000,000:1; "
                               "limit 1000:1, as resizing its short side to the model's input would make a huge image)")
    assert load_image(edge).size == (1, 1000)


def test_float_images_in_0_to_1_keep_their_range_and_others_are_read_as_0_to_255(tmp_path):
    """Float TIFFs usually hold 0..1 (scientific and HDR tools write them so); read as 0..255 they were black."""
    ramp = np.linspace(0, 1, 50, dtype=np.float32)[None].repeat(40, axis=0)
    Image.fromarray(ramp).save(tmp_path / "unit.tif")
    Image.fromarray(ramp * 255).save(tmp_path / "bytes.tif")
    unit, scaled = np.asarray(load_image(tmp_path / "unit.tif")), np.asarray(load_image(tmp_path / "bytes.tif"))
    assert unit[0, 0, 0] == 0 and unit[0, -1, 0] == 255 and np.array_equal(unit, scaled)


def test_an_upright_photo_is_not_copied_to_be_turned_upright(tmp_path, monkeypatch):
    """exif_transpose copies every image it does not turn: twice the memory of a large photo, for nothing."""
    Image.new("RGB", (30, 20), (1, 2, 3)).save(tmp_path / "plain.png")

    def no_copy(self):
        raise AssertionError("copied")

    monkeypatch.setattr(Image.Image, "copy", no_copy)
    assert load_image(tmp_path / "plain.png", upright=True).size == (30, 20)


def test_classify_reports_an_elongated_or_out_of_memory_input_and_classifies_the_rest(tmp_path, cli, mini_files,
                                                                                       example_images, monkeypatch):
    import ssmzoo.classify

    strip, heavy, coffee = tmp_path / "strip.png", tmp_path / "heavy.png", example_images / "coffee.jpg"
    Image.new("RGB", (1_000_000, 1)).save(strip)
    Image.new("RGB", (64, 64)).save(heavy)
    real = ssmzoo.classify.load_image

    def exhausting(path, *args, **kwargs):  # as a decoder or resize that runs out of memory
        if str(path) == str(heavy):
            raise MemoryError()
        return real(path, *args, **kwargs)

    monkeypatch.setattr(ssmzoo.classify, "load_image", exhausting)
    res = cli("--manifest", mini_files[0], "classify", strip, heavy, coffee, "--model", "groupmamba_mini",
              "--weights", mini_files[1], "--json")
    assert res.code == 1 and "Traceback" not in res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["input"] for r in rows] == [str(strip), str(heavy), str(coffee)]
    assert rows[0]["error"].startswith(f"{strip}: image too elongated (1000000 x 1 pixels")
    assert rows[1]["error"] == f"{heavy}: out of memory decoding or resizing it (MemoryError)"
    assert rows[2]["error"] is None and len(rows[2]["top"]) == 5
    assert "2 of 3 inputs failed" in res.stderr


def test_classify_turns_a_photo_upright_as_its_exif_orientation_asks(tmp_path, cli, mini_files):
    """A phone stores a photo shot sideways as it was shot, with EXIF orientation 6 ("rotate 90° clockwise
    to view"): classify sees it upright, as a viewer shows it; the datasets keep the stored pixels (timm's
    and the authors' evaluation read them so)."""
    rng = np.random.default_rng(0)
    upright = Image.fromarray(rng.integers(0, 256, (48, 80, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "sideways.png", exif=exif)
    upright.save(tmp_path / "upright.png")
    assert np.array_equal(np.asarray(load_image(tmp_path / "sideways.png", upright=True)), np.asarray(upright))
    assert load_image(tmp_path / "sideways.png").size == (48, 80)  # as stored
    res = cli("--manifest", mini_files[0], "classify", tmp_path / "upright.png", tmp_path / "sideways.png",
              "--model", "groupmamba_mini", "--weights", mini_files[1], "--json", "-k", "3")
    assert res.code == 0, res.stderr
    first, second = (json.loads(line)["top"] for line in res.stdout.splitlines())
    assert first == second


def _written_formats() -> list[tuple[str, str]]:
    """(suffix, format) of each suffix ``image_suffixes`` lists whose format Pillow can also write here."""
    from ssmzoo.images import image_suffixes

    formats = Image.registered_extensions()
    return [(ext, formats[ext]) for ext in sorted(image_suffixes()) if formats.get(ext) in Image.SAVE]


def test_image_suffixes_are_the_formats_pillow_decodes_here():
    """One list for `classify DIR` and the datasets' folders: every suffix Pillow reads here, named as
    a file would be (.jfif and .jpe are JPEG), and none that it names but cannot decode."""
    from PIL import features

    from ssmzoo.images import image_suffixes
    from ssmzoo.video import VIDEO_SUFFIXES

    suffixes = image_suffixes()
    assert {".jpg", ".jpeg", ".jfif", ".jpe", ".png", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm"} <= suffixes
    assert (".webp" in suffixes) == features.check("webp") and (".jp2" in suffixes) == features.check("jpg_2000")
    assert not suffixes & set(VIDEO_SUFFIXES)  # .mpg is a video, though Pillow knows its header
    assert ".h5" not in suffixes  # a stub: Pillow names HDF5 but has no decoder for it


@pytest.mark.parametrize("suffix, fmt", _written_formats())
def test_every_listed_suffix_that_pillow_writes_reads_back(tmp_path, suffix, fmt):
    path = tmp_path / f"image{suffix}"
    for mode in ("RGB", "L", "1", "P"):  # some formats take one mode only (XBM: 1-bit, BLP: palette)
        try:
            Image.new("RGB", (16, 12), (200, 100, 50)).convert(mode).save(path, format=fmt)
            break
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)
    else:
        pytest.skip(f"Pillow cannot write {fmt} from RGB, L, 1-bit or palette images")
    assert load_image(path).mode == "RGB"  # (ICNS stores standard icon sizes: the size may change)
