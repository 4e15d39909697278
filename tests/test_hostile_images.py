"""Hostile and unusual images: every reason one cannot be read is that image's ``ValueError`` (in the
library, ``apparel predict``, ``apparel catalog`` and the service), only the accepted formats are
read, and decoding stays within its budget of memory."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import struct
import tracemalloc
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from apparel.cli import main
from apparel.contract import FASHION_MNIST, InputContract
from apparel.images import decode, steps_figure
from apparel.kinds.fashion_mnist import pipeline
from apparel.kinds.photo.pipeline import photo_rgb_steps
from apparel.images.sources import ImageSource, expand_sources, read_source, resolve_inside
from test_catalog import OLD_HEADER, as_bytes, review_rows, row
from test_photos import encoded, garment_photo
from test_sources import model_dir  # noqa: F401 (a fixture)

ACCEPTED = "JPEG, PNG, WebP, GIF, BMP or TIFF"
PHOTO_MODEL = InputContract(kind="photo", size=48, class_names=("a", "b"))


def malformed_dds() -> bytes:
    """A DDS header naming a pixel format Pillow does not implement: it raises NotImplementedError."""
    header = struct.pack("<7I", 124, 0x1007, 16, 16, 0, 0, 0) + bytes(44)
    pixel_format = struct.pack("<2I4s5I", 32, 0x4, b"ABCD", 0, 0, 0, 0, 0)
    return b"DDS " + header + pixel_format + struct.pack("<5I", 0x1000, 0, 0, 0, 0) + bytes(256)


def png_declaring(width: int, height: int, mode: str) -> bytes:
    """A one-pixel PNG of ``mode`` whose header declares width × height pixels."""
    small = encoded(Image.new(mode, (1, 1)), "PNG")
    chunk = b"IHDR" + struct.pack(">II", width, height) + small[24:29]
    return small[:12] + chunk + struct.pack(">I", zlib.crc32(chunk)) + small[33:]


def long_name(folder) -> str:
    return str(folder / ("a" * 300 + ".png"))


# ---------------------------------------------------------------- finding 1: only ValueErrors


@pytest.mark.parametrize("contract", [FASHION_MNIST, PHOTO_MODEL], ids=["fashion-mnist", "photo"])
def test_a_malformed_dds_is_a_value_error_naming_the_accepted_formats(contract, tmp_path):
    path = tmp_path / "bad.dds"
    path.write_bytes(malformed_dds())
    for source in (malformed_dds(), path):
        with pytest.raises(ValueError, match=f"not a readable image: not {ACCEPTED}"):
            contract.decode(source)
    with pytest.raises(ValueError, match="not a readable image"):
        read_source(ImageSource(str(path), path=path), contract=contract)


@pytest.mark.parametrize("raised", [NotImplementedError("unimplemented pixel format"), RuntimeError("decoder"),
                                    struct.error("unpack"), KeyError("tag"), MemoryError()],
                         ids=lambda error: type(error).__name__)
def test_whatever_a_decoder_raises_is_that_images_source_error(raised, monkeypatch):
    def load(self):
        raise raised

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    with pytest.raises(ValueError, match="not a readable image, truncated or corrupt"):
        pipeline.photo_to_input(encoded(garment_photo(), "PNG"))


def test_a_path_too_long_is_a_value_error_everywhere(tmp_path):
    path = long_name(tmp_path)
    with pytest.raises(ValueError, match="cannot read the file .*too long"):
        pipeline.photo_to_input(path)
    with pytest.raises(ValueError, match="too long"):
        read_source(ImageSource(path, path=tmp_path / ("a" * 300 + ".png")))
    [source] = expand_sources([path])
    assert source.name == path and "too long" in source.error


@pytest.mark.parametrize("source", [1, None, 2.5, ["shirt.jpg"], io.BytesIO(b"")])
def test_a_source_of_no_photo_type_is_a_value_error_naming_what_to_give(source):
    for contract in (InputContract(), PHOTO_MODEL):
        with pytest.raises(ValueError, match="source must be a photo's path, its file's bytes or a PIL image, got "):
            contract.decode(source)


def test_an_array_given_to_decode_is_told_it_is_already_pixels():
    with pytest.raises(ValueError, match=r"source is an array of pixels \(shape \(28, 28\)\), already decoded"):
        InputContract().decode(np.zeros((28, 28), np.uint8))


def test_a_symbolic_link_loop_is_a_value_error_everywhere(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    os.symlink("loop", images / "loop")
    os.symlink("loop.jpg", images / "loop.jpg")
    with pytest.raises(ValueError, match="cannot resolve the path .*loop"):
        resolve_inside("loop/dress.png", images)
    with pytest.raises(ValueError, match="cannot resolve the path"):
        resolve_inside("loop.jpg", images)
    [source] = expand_sources([str(images / "loop.jpg")])
    assert "symbolic links" in source.error
    with pytest.raises(ValueError):
        pipeline.photo_to_input(images / "loop.jpg")
    garment_photo().save(images / "dress.png")
    assert [source.name for source in expand_sources([str(images)])] == [str(images / "dress.png")]


def test_a_npy_declaring_a_huge_shape_is_refused_without_allocating_it(tmp_path):
    path = tmp_path / "huge.npy"
    np.save(path, np.zeros((2, 28, 28), np.uint8))
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b"(2, 28, 28), ", b"(99999999, 28, 28),"))  # 73 GB declared
    with pytest.raises(ValueError, match="not a readable .npy array"):
        read_source(ImageSource(str(path), path=path))


# ---------------------------------------------------------------- finding 3: the allow-list


@pytest.mark.parametrize("format", ["DDS", "TGA", "PCX", "ICO", "SGI", "PPM", "QOI", "DIB"])
def test_formats_outside_the_allow_list_are_refused_naming_the_accepted_ones(format):
    data = encoded(garment_photo(), format)
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == format  # Pillow itself reads it
    with pytest.raises(ValueError, match=f"not {ACCEPTED}"):
        pipeline.photo_to_input(data)
    with pytest.raises(ValueError, match=f"not {ACCEPTED}"):
        decode.decode_cost(data)


@pytest.mark.parametrize("format, options", [("JPEG", {"quality": 95}), ("PNG", {}), ("WEBP", {"lossless": True}),
                                             ("GIF", {}), ("BMP", {}), ("TIFF", {"compression": "tiff_lzw"}),
                                             ("MPO", {"quality": 95})])
def test_every_accepted_format_is_read(format, options):
    reference = pipeline.photo_to_input(garment_photo())
    result = pipeline.photo_to_input(encoded(garment_photo(), format, **options))
    assert np.abs(result - reference).mean() < 0.03, format


# ---------------------------------------------------------------- finding 2: the decode budget


def test_decode_cost_is_pixels_times_the_bytes_a_pixel_of_the_mode_takes():
    size = (300, 200)
    assert decode.decode_cost(encoded(Image.new("L", size), "PNG")) == 300 * 200
    assert decode.decode_cost(encoded(Image.new("I;16", size), "PNG")) == 300 * 200 * 2
    assert decode.decode_cost(encoded(Image.new("RGB", size), "PNG")) == 300 * 200 * 4  # Pillow keeps RGB in 4 bytes
    assert decode.decode_cost(encoded(Image.new("P", size), "GIF")) == 300 * 200
    assert decode.decode_cost(encoded(Image.new("RGB", size), "WEBP")) == 300 * 200 * 16  # libwebp's canvases too
    assert decode.decode_cost(Image.new("RGBA", size)) == 300 * 200 * 4
    large = Image.new("RGB", (3200, 2400))
    assert decode.decode_cost(encoded(large, "JPEG")) == 400 * 300 * 4  # decoded at 1/8 scale
    # A progressive JPEG's coefficients are kept at full scale: 2 bytes × 1.5 samples a pixel in 4:2:0.
    assert decode.decode_cost(encoded(large, "JPEG", progressive=True)) == 400 * 300 * 4 + 3200 * 2400 * 3
    with pytest.raises(ValueError, match="not a readable image"):
        decode.decode_cost(b"not an image")


def test_an_image_over_the_decode_budget_is_refused_before_it_is_decoded():
    bomb = png_declaring(8000, 5000, "RGBA")  # RGBA, 40,000,000 pixels: within the pixel limit
    assert decode.decode_cost(bomb) == 160_000_000 <= decode.MAX_DECODE_BYTES
    with pytest.raises(ValueError, match=r"decoding it takes 160,000,000 bytes \(8000×5000 pixels, PNG of mode RGBA\), "
                                         r"over the limit of 134,217,728 bytes per image"):
        pipeline.photo_to_input(bomb, max_bytes=128 * 1024**2)
    assert decode.decode_cost(png_declaring(8000, 5000, "L")) == 40_000_000  # grayscale: within it
    with pytest.raises(ValueError, match="over the limit of 1,000 bytes per image"):
        PHOTO_MODEL.decode(encoded(garment_photo(), "PNG"), max_bytes=1000)


def numpy_peak(function, *args) -> tuple[object, int]:
    """``function(*args)`` and the peak bytes Python and numpy allocated meanwhile."""
    tracemalloc.start()
    try:
        result = function(*args)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("mode", ["I;16", "RGBA", "P"])
def test_a_large_photo_is_reduced_before_any_full_resolution_work(mode):
    small = garment_photo()
    big = small.resize((3000, 4000), Image.Resampling.NEAREST)  # the same photo, ten times larger
    if mode == "I;16":
        big, small = (Image.fromarray(np.asarray(image.convert("L"), np.uint16) * 257) for image in (big, small))
    elif mode == "P":
        big, small = big.quantize(16), small.quantize(16)
    else:
        big, small = big.convert(mode), small.convert(mode)
    data = encoded(big, "PNG")
    # Full resolution, the float copy alone of a 12-megapixel image is 96 MB.
    result, peak = numpy_peak(pipeline.photo_to_input, data)
    assert peak < 12 * 2**20
    assert np.abs(result - pipeline.photo_to_input(encoded(small, "PNG"))).mean() < 0.04
    rgb, peak = numpy_peak(PHOTO_MODEL.decode, data)
    assert rgb.shape == (48, 48, 3) and peak < 12 * 2**20


def test_reducing_keeps_orientation_transparency_and_depth():
    upright = garment_photo(size=(1500, 2000), box=(450, 300, 1050, 1000))  # the garment in the top half
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    reference = pipeline.photo_to_input(upright)
    for format in ("PNG", "TIFF", "WEBP"):
        opened = pipeline.open_image(encoded(stored, format, exif=exif.tobytes()))
        assert opened.width < opened.height and opened.width < 1500, format
        assert np.abs(pipeline.photo_to_input(opened) - reference).mean() < 0.02, format
    palette = garment_photo(size=(1500, 2000), box=(450, 300, 1050, 1700)).quantize(8)
    transparent = palette.getpixel((0, 0))
    steps = dict(pipeline.pipeline_steps(encoded(palette, "PNG", transparency=transparent)))
    assert steps["original"].mode == "RGBA" and steps["on white"].getpixel((0, 0)) == (255, 255, 255)
    # A dark 16-bit image keeps its 16-bit scale (values under 256 are dark, not bright).
    dark = np.full((2000, 1500), 40 * 257, np.uint16)
    dark[300:1700, 450:1050] = 20 * 257
    opened = pipeline.open_image(encoded(Image.fromarray(dark), "PNG"))
    assert opened.mode == "I;16" and decode.to_grayscale_array(opened)[0, 0] == 40


def test_a_side_longer_than_any_photo_s_is_refused_before_decoding():
    """Within the pixel limit, 1×39,000,000 pixels took 1.8 s to open from 75 KB: the rows cost too."""
    for width, height in ((1, 39_000_000), (70_000, 1)):
        with pytest.raises(decode.SourceError, match=f"a side of {max(width, height):,} pixels .*over the limit of "
                                                     "65,535: no photo is that long"):
            decode.open_image(png_declaring(width, height, "L"))
    assert decode.open_image(encoded(Image.new("L", (2, 65_535)), "PNG")).size == (2, 65_535)


def test_a_long_thin_photo_never_makes_a_full_resolution_square():
    thin = Image.new("RGB", (6000, 2), "white")
    thin.paste((200, 30, 30), (2000, 0, 4000, 2))
    steps = dict(photo_rgb_steps(encoded(thin, "PNG"), 48))
    assert max(steps["square"].size) <= 2000 and steps["resized"].size == (48, 48)


def test_drawing_the_steps_of_a_long_thin_photo_stays_small(tmp_path):
    thin = Image.new("RGB", (600, 2), "white")
    thin.paste((200, 30, 30), (200, 0, 400, 2))
    out = steps_figure.draw_steps(encoded(thin, "PNG"), tmp_path / "steps.png")
    with Image.open(out) as drawn:
        assert drawn.width < 10 * 4 * 168


# ---------------------------------------------------------------- through the CLI and the service


@pytest.fixture
def hostile_folder(tmp_path):
    """tmp_path/images: a dress, a tote, a malformed DDS (as .dds and as .png) and a symbolic link loop."""
    images = tmp_path / "images"
    images.mkdir()
    garment_photo().save(images / "dress.png")
    garment_photo(size=(400, 300), box=(40, 90, 360, 220)).save(images / "tote.jpg")
    (images / "bad.dds").write_bytes(malformed_dds())
    (images / "dds.png").write_bytes(malformed_dds())
    os.symlink("loop", images / "loop")
    os.symlink("loop.jpg", images / "loop.jpg")
    return images


def test_predict_reports_hostile_images_and_predicts_the_others(hostile_folder, model_dir, capsys):  # noqa: F811
    images = hostile_folder
    arguments = [str(images), str(images / "bad.dds"), long_name(images), str(images / "loop.jpg"), str(images / "loop" / "x.png")]
    assert main(["predict", str(model_dir), *arguments, "--json"]) == 0
    results = {result["file"]: result for result in json.loads(capsys.readouterr().out)}
    assert {"label", "probability"} <= set(results[str(images / "dress.png")])
    assert {"label", "probability"} <= set(results[str(images / "tote.jpg")])
    assert f"not {ACCEPTED}" in results[str(images / "dds.png")]["error"]
    assert f"not {ACCEPTED}" in results[str(images / "bad.dds")]["error"]
    assert "too long" in results[long_name(images)]["error"]
    assert "symbolic links" in results[str(images / "loop.jpg")]["error"]
    assert "error" in results[str(images / "loop" / "x.png")]


def test_catalog_records_hostile_images_and_categorises_the_others(hostile_folder, model_dir, capsys):  # noqa: F811
    shop = hostile_folder.parent
    product = dict(vendor="Acme", published="TRUE", option1_name="Title", option1_value="Default Title", status="active")
    rows = [row(handle="dress", title="Dress", image_src="images/dress.png", **product),
            row(handle="dds", title="DDS", image_src="images/bad.dds", **product),
            row(handle="dds-as-png", title="DDS as PNG", image_src="images/dds.png", **product),
            row(handle="long", title="Long", image_src="images/" + "a" * 300 + ".png", **product),
            row(handle="loop", title="Loop", image_src="images/loop/x.png", **product),
            row(handle="tote", title="Tote", image_src="images/tote.jpg", **product)]
    source = shop / "products.csv"
    source.write_bytes(as_bytes(OLD_HEADER, rows))
    out = shop / "categorized.csv"
    assert main(["catalog", str(source), "--out", str(out), "--model", str(model_dir), "--images-dir", str(shop),
                 "--min-confidence", "0"]) == 0
    review = review_rows(shop / "categorized.review.csv")
    assert f"not {ACCEPTED}" in review["dds"]["error"] and f"not {ACCEPTED}" in review["dds-as-png"]["error"]
    assert "too long" in review["long"]["error"] and "cannot resolve the path" in review["loop"]["error"]
    assert "6 products in 6 rows: 2 categorised" in capsys.readouterr().out and "dress" not in review
    written = {cells[0]: cells for cells in csv.reader(io.StringIO(out.read_text(encoding="utf-8-sig"), newline=""))}
    assert "apparel:" in written["dress"][6] and "apparel:" in written["tote"][6]


@pytest.fixture
def client(model_dir):  # noqa: F811
    from apparel.inference.prediction import Predictor
    from apparel.serve.app import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    with TestClient(create_app(Predictor.from_dir(model_dir)), raise_server_exceptions=False) as test_client:
        yield test_client


def test_the_service_answers_hostile_images_with_4xx(client):
    photo = encoded(garment_photo(), "JPEG")
    for name, content in (("bad.dds", malformed_dds()), ("dds.png", malformed_dds()), ("bomb.png", png_declaring(8000, 5000, "RGBA"))):
        response = client.post("/predict", files=[("files", ("good.jpg", photo, "image/jpeg")),
                                                  ("files", (name, content, "application/octet-stream"))])
        assert 400 <= response.status_code < 500, response.text
        assert name in response.json()["error"]
    instances = [{"b64": base64.b64encode(photo).decode()}, {"b64": base64.b64encode(malformed_dds()).decode()}]
    response = client.post("/v1/models/apparel:predict", content=json.dumps({"instances": instances}),
                           headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    assert ACCEPTED in response.json()["error"]
