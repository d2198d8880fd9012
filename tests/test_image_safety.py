"""Image files that must not reach the decoder or the data loader: formats other than photos',
pixel bombs, truncated GIF/BMP/TIFF, and 32-bit images scaled by fixed rules (issue 13)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from fixtures_images import colour_for, noisy, save_image
from PIL import EpsImagePlugin, Image, ImageFile

from fashionlab.data.images import check_image, load_rgb
from fashionlab.data.readers.csv_table import CsvDataModule
from fashionlab.errors import BadImageError

from conftest import ROOT

TRANSFORMS = {"train": {"_target_": "albumentations.Compose", "transforms": [
    {"_target_": "albumentations.Resize", "height": 16, "width": 16},
    {"_target_": "albumentations.ToTensorV2"}]}}
TRANSFORMS["eval"] = TRANSFORMS["train"]


def random_rgb(seed: int = 0, size: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)


def write_cut(path, fmt: str, fraction: float = 0.9):
    """A real `fmt` file cut to `fraction` of its bytes (its header still reads fine)."""
    Image.fromarray(random_rgb()).save(path, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


# ---- formats ------------------------------------------------------------------------------

@pytest.fixture
def no_ghostscript(monkeypatch):
    """Fail loudly if anything hands a file to Ghostscript."""
    def refuse(*args, **kwargs):
        raise AssertionError("Ghostscript was called")
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", refuse)


@pytest.mark.parametrize("fmt, name", [("EPS", "photo.jpg"), ("PPM", "photo.png"), ("ICO", "photo.webp")])
def test_only_photo_formats_are_opened(tmp_path, no_ghostscript, fmt, name):
    path = tmp_path / name
    Image.fromarray(random_rgb(size=32)).save(path, format=fmt)
    assert Image.open(path).format == fmt  # PIL itself would open it
    for check in (check_image, load_rgb):
        with pytest.raises(BadImageError, match=rf"{name}: not an image file of an accepted format "
                                                r"\(JPEG, PNG, WEBP, BMP, GIF, TIFF\)"):
            check(path)


@pytest.mark.parametrize("fmt, ext", [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp"), ("BMP", "bmp"),
                                      ("GIF", "gif"), ("TIFF", "tif")])
def test_photo_formats_still_load(tmp_path, fmt, ext):
    path = save_image(tmp_path / f"ok.{ext}", random_rgb(size=24))
    assert check_image(path).format == fmt
    assert load_rgb(path).shape == (24, 24, 3)


# ---- pixel cap ----------------------------------------------------------------------------

def test_pixel_cap_is_checked_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("I;16", (300, 200)).save(path)  # 60,000 pixels in a few hundred bytes

    def no_decoding(self):
        raise AssertionError("decoded before the pixel check")
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(BadImageError, match=r"bomb\.png: 300x200 = 60000 pixels exceeds the limit "
                                            r"of 50000 pixels"):
        load_rgb(path, max_pixels=50_000)


def test_sixteen_megapixel_png_decodes_without_float64_copies(tmp_path):
    """A 16-bit 16 MP PNG (tens of KB on disk): decoding peaks near the image's own size."""
    path = tmp_path / "i16.png"
    Image.new("I;16", (4000, 4000), 40_000).save(path)
    assert path.stat().st_size < 100_000
    script = textwrap.dedent(f"""
        from pathlib import Path
        from fashionlab.data.images import load_rgb
        def peak_kib():  # VmHWM: this process's peak resident memory (ru_maxrss survives exec)
            status = Path("/proc/self/status").read_text()
            return int(status.split("VmHWM:")[1].split()[0])
        before = peak_kib()
        image = load_rgb({str(path)!r})
        assert image.shape == (4000, 4000, 3) and int(image[0, 0, 0]) == 156, image[0, 0]
        print((peak_kib() - before) // 1024)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, cwd=ROOT, env={"PYTHONPATH": str(ROOT / "src")})
    assert result.returncode == 0, result.stderr
    peak_mib = int(result.stdout.split()[-1])
    # 32 MB of 16-bit pixels + 48 MB of RGB output; float64 copies took over 500 MB
    assert peak_mib < 200, f"peak grew by {peak_mib} MiB"


# ---- truncated GIF, BMP, TIFF -----------------------------------------------------------

@pytest.mark.parametrize("fmt, ext", [("GIF", "gif"), ("BMP", "bmp"), ("TIFF", "tif")])
@pytest.mark.parametrize("fraction", [0.6, 0.95, 0.999])
def test_truncated_gif_bmp_tiff_fail_the_cheap_check(tmp_path, fmt, ext, fraction):
    path = write_cut(tmp_path / f"cut.{ext}", fmt, fraction)
    with Image.open(path) as image:  # the header alone looks fine
        assert image.format == fmt and image.size == (64, 64)
    with pytest.raises(BadImageError, match=rf"cut\.{ext}: .*truncated"):
        check_image(path)


def test_gif_with_a_semicolon_near_the_end_is_still_truncated(tmp_path):
    """The old check looked for 0x3B anywhere in the last 4 KiB."""
    path = tmp_path / "semi.gif"
    Image.fromarray(random_rgb()).save(path)
    data = path.read_bytes()
    cut = data.rindex(b";", 0, len(data) - 50) + 1  # ends in a ';' inside the pixel data
    path.write_bytes(data[:cut])
    with pytest.raises(BadImageError, match=r"semi\.gif: .*truncated"):
        check_image(path)


def test_skip_lists_truncated_gif_bmp_tiff(tmp_path):
    lines = ["path,article"]
    for i in range(12):
        cls = ("shirt", "bag")[i % 2]
        save_image(tmp_path / f"{cls}_{i}.png", noisy(colour_for(cls), i))
        lines.append(f"{cls}_{i}.png,{cls}")
    for fmt, ext in (("GIF", "gif"), ("BMP", "bmp"), ("TIFF", "tif")):
        write_cut(tmp_path / f"cut.{ext}", fmt)
        lines.append(f"cut.{ext},bag")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    dm = CsvDataModule(root=str(tmp_path), tasks={"article": {"kind": "multiclass", "classes": "auto"}},
                       transforms=TRANSFORMS, image_size=16, batch_size=4, seed=0, on_bad_image="skip")
    dm.report_dir = str(tmp_path / "run")
    dm.setup()
    assert sum(len(ds) for ds in dm.splits.values()) == 12
    for ds in dm.splits.values():  # what the data loader does: every kept item decodes
        for i in range(len(ds)):
            ds[i]
    skipped = pd.read_csv(tmp_path / "run" / "skipped_images.csv")
    assert sorted(skipped["path"]) == ["cut.bmp", "cut.gif", "cut.tif"]
    assert skipped["reason"].str.contains("truncated").all()


def test_whole_gif_bmp_tiff_pass_without_decoding(tmp_path, monkeypatch):
    paths = [save_image(tmp_path / f"ok.{ext}", random_rgb()) for ext in ("gif", "bmp", "tif")]
    (tmp_path / "top_down.bmp").write_bytes(_top_down_bmp())
    paths.append(tmp_path / "top_down.bmp")
    import fashionlab.data.images as images

    def no_decoding(path, *args, **kwargs):
        raise AssertionError(f"{path} decoded by the cheap check")
    monkeypatch.setattr(images, "load_rgb", no_decoding)
    for path in paths:
        check_image(path)


def _top_down_bmp() -> bytes:
    """A 3x2 24-bit BMP stored top-down (negative height), rows padded to 4 bytes."""
    import struct

    row = bytes(9) + bytes(3)
    pixels = row * 2
    header = struct.pack("<2sIHHI", b"BM", 54 + len(pixels), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, 3, -2, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return header + info + pixels


# ---- 32-bit integer and float images --------------------------------------------------------

def _gray(path) -> list[int]:
    return load_rgb(path)[0, :, 0].tolist()


def test_32bit_integer_images_use_the_16bit_range(tmp_path):
    """Mode I: values are 16-bit intensities (0..65535 -> 0..255, rounded), clipped; the same
    value gives the same gray whatever else the image holds."""
    Image.fromarray(np.array([[0, 200, 100]], dtype=np.int32)).save(tmp_path / "max200.tif")
    Image.fromarray(np.array([[0, 300, 100]], dtype=np.int32)).save(tmp_path / "max300.tif")
    assert Image.open(tmp_path / "max200.tif").mode == "I"
    assert _gray(tmp_path / "max200.tif") == [0, 1, 0]
    assert _gray(tmp_path / "max300.tif") == [0, 1, 0]
    Image.fromarray(np.array([[-5, 257 * 128, 65535, 2**31 - 1]], dtype=np.int32)).save(tmp_path / "i.tif")
    assert _gray(tmp_path / "i.tif") == [0, 128, 255, 255]


def test_float_images_are_zero_to_one_clipped(tmp_path):
    """Mode F: values in [0, 1] (0 -> 0, 1 -> 255); outside clipped, NaN black."""
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)).save(tmp_path / "unit.tif")
    Image.fromarray(np.array([[0.0, 0.5, 1.0, 200.0, -3.0]], dtype=np.float32)).save(tmp_path / "wide.tif")
    Image.fromarray(np.array([[0.5, np.nan]], dtype=np.float32)).save(tmp_path / "nan.tif")
    assert Image.open(tmp_path / "unit.tif").mode == "F"
    assert _gray(tmp_path / "unit.tif") == [0, 128, 255]
    assert _gray(tmp_path / "wide.tif") == [0, 128, 255, 255, 0]
    assert _gray(tmp_path / "nan.tif") == [128, 0]
