"""Robust image loading: EXIF orientation, every PIL mode to RGB, bad files caught and named."""

import numpy as np
import pytest
from fixtures_images import save_image, write_garbage, write_truncated_jpeg
from PIL import Image

from fashionlab.data.images import check_image, check_images, load_rgb
from fashionlab.errors import BadImageError


def test_exif_orientation_is_applied(tmp_path):
    array = np.zeros((10, 20, 3), dtype=np.uint8)  # 10 high, 20 wide: left red, right blue
    array[:, :10] = (255, 0, 0)
    array[:, 10:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    Image.fromarray(array).save(path, exif=exif, quality=95)
    image = load_rgb(path)
    assert image.shape == (20, 10, 3) and image.dtype == np.uint8
    assert image[2, 5, 0] > 200 and image[2, 5, 2] < 60     # top: the red left half
    assert image[17, 5, 2] > 200 and image[17, 5, 0] < 60   # bottom: the blue right half


def test_grayscale_l_becomes_rgb(tmp_path):
    path = tmp_path / "gray.png"
    Image.fromarray(np.array([[0, 77], [200, 255]], dtype=np.uint8), mode="L").save(path)
    image = load_rgb(path)
    assert image.shape == (2, 2, 3)
    assert image[:, :, 0].tolist() == [[0, 77], [200, 255]]
    assert (image[:, :, 0] == image[:, :, 1]).all() and (image[:, :, 1] == image[:, :, 2]).all()


def test_la_and_rgba_composite_over_white(tmp_path):
    la = Image.fromarray(np.array([[[50, 255], [50, 0]]], dtype=np.uint8), mode="LA")
    la.save(tmp_path / "la.png")
    assert load_rgb(tmp_path / "la.png")[0].tolist() == [[50, 50, 50], [255, 255, 255]]
    rgba = np.array([[[255, 0, 0, 255], [0, 0, 255, 0], [0, 0, 0, 128]]], dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    image = load_rgb(tmp_path / "rgba.png")
    assert image[0, 0].tolist() == [255, 0, 0]
    assert image[0, 1].tolist() == [255, 255, 255]
    assert 120 <= image[0, 2, 0] <= 135  # half-transparent black over white: mid gray


def test_palette_with_and_without_transparency(tmp_path):
    p = Image.new("P", (2, 1))
    p.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    p.putpixel((0, 0), 0)
    p.putpixel((1, 0), 1)
    p.save(tmp_path / "p.png")
    assert load_rgb(tmp_path / "p.png")[0].tolist() == [[255, 0, 0], [0, 255, 0]]
    p.save(tmp_path / "pt.png", transparency=1)
    assert load_rgb(tmp_path / "pt.png")[0].tolist() == [[255, 0, 0], [255, 255, 255]]


def test_cmyk_becomes_rgb(tmp_path):
    rgb = Image.fromarray(np.array([[[255, 0, 0], [0, 0, 255]]], dtype=np.uint8))
    rgb.convert("CMYK").save(tmp_path / "cmyk.tif")
    assert Image.open(tmp_path / "cmyk.tif").mode == "CMYK"
    assert load_rgb(tmp_path / "cmyk.tif")[0].tolist() == [[255, 0, 0], [0, 0, 255]]
    rgb.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    image = load_rgb(tmp_path / "cmyk.jpg")
    assert image.shape == (1, 2, 3) and image[0, 0, 0] > 200 and image[0, 1, 2] > 200


def test_sixteen_bit_png_is_scaled_to_eight_bits(tmp_path):
    values = np.array([[0, 257 * 128, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "i16.png")
    assert Image.open(tmp_path / "i16.png").mode.startswith("I")
    image = load_rgb(tmp_path / "i16.png")
    assert image.dtype == np.uint8 and image[0, :, 0].tolist() == [0, 128, 255]
    # a dark 16-bit image stays dark (scaled, not read as 8-bit values)
    Image.fromarray(np.array([[0, 200]], dtype=np.uint16)).save(tmp_path / "dark.png")
    assert load_rgb(tmp_path / "dark.png")[0, :, 0].tolist() == [0, 1]


def test_truncated_jpeg_is_caught_by_the_cheap_check(tmp_path):
    path = write_truncated_jpeg(tmp_path / "cut.jpg")
    with Image.open(path) as image:  # the header alone looks fine
        assert image.size == (64, 64)
    for check in (check_image, load_rgb):
        with pytest.raises(BadImageError, match=r"cut\.jpg: corrupt or truncated"):
            check(path)


def test_garbage_bytes_and_missing_and_empty_files(tmp_path):
    with pytest.raises(BadImageError, match=r"junk\.jpg: not an image file"):
        check_image(write_garbage(tmp_path / "junk.jpg"))
    with pytest.raises(BadImageError, match=r"junk\.jpg: not an image file"):
        load_rgb(tmp_path / "junk.jpg")
    with pytest.raises(BadImageError, match=r"gone\.png: file not found"):
        check_image(tmp_path / "gone.png")
    with pytest.raises(BadImageError, match=r"gone\.png: file not found"):
        load_rgb(tmp_path / "gone.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(BadImageError, match="empty file"):
        check_image(tmp_path / "empty.jpg")


@pytest.mark.parametrize("side", [40, 100])  # over the limit (PIL warns), over twice (PIL raises)
def test_decompression_bomb(tmp_path, monkeypatch, side):
    path = save_image(tmp_path / "big.png", np.zeros((side, side, 3), dtype=np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    for check in (check_image, load_rgb):
        with pytest.raises(BadImageError, match=r"big\.png: decompression bomb"):
            check(path)


def test_jpeg_with_trailing_bytes_is_decoded_to_decide(tmp_path):
    path = save_image(tmp_path / "tail.jpg", np.full((16, 16, 3), 90, dtype=np.uint8))
    path.write_bytes(path.read_bytes() + b"\x00" * 5000)  # end marker no longer in the last 4 KiB
    info = check_image(path)
    assert info.format == "JPEG" and (info.width, info.height) == (16, 16)


def test_check_images_reports_each_file(tmp_path):
    good = save_image(tmp_path / "ok.png", np.zeros((4, 4, 3), dtype=np.uint8))
    bad = write_garbage(tmp_path / "bad.png")
    infos, errors = check_images([good, bad, tmp_path / "missing.png"], workers=2)
    assert infos[0] is not None and errors[0] is None
    assert infos[1] is None and "not an image" in errors[1].reason
    assert errors[2].reason == "file not found"
    assert infos[0].quick_hash != check_image(save_image(tmp_path / "x.png",
                                                         np.ones((4, 4, 3), np.uint8))).quick_hash
