"""Image fuzz: mutated files of every accepted format through the decode path that predict, catalog
and the service use. Each one must either decode to a finite model input or be refused with a
``ValueError`` (a ``SourceError``); any other exception is a failure, and so is a file of a format
outside the allow-list that decodes. Peak memory must stay bounded.

Seeds are small images of each accepted format in its common variants (modes, compressions,
animation, EXIF orientation), and of other formats Pillow reads (DDS, a malformed one too, TGA,
ICO, JPEG 2000, …); each mutant takes one seed and one mutation: bytes flipped, cut short, header
bytes overwritten, a huge width and height declared, a span zeroed, duplicated or moved, a TIFF
tag's value changed. Every mutant is decoded from bytes (the service's path) for the Fashion-MNIST and
a photo model's input, and every fourth also from a file through ``images.sources.read_source``
(the path of ``apparel predict`` and ``apparel catalog``).

    .venv/bin/python benchmarks/image_fuzz.py                       # 20,000 mutants
    .venv/bin/python benchmarks/image_fuzz.py --images 2000 --seed 3 --out fuzz.json

Prints images/s, the outcomes per format and the peak RSS; the last line is the report as one JSON
object. ``tests/test_image_fuzz.py`` runs the short version of this in the suite.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import resource
import struct
import sys
import tempfile
import time
import traceback
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

MUTATIONS = ("flip", "truncate", "header", "huge", "zero", "duplicate", "move", "tag")
# Declared sizes of the "huge" mutation: past Pillow's own bomb check, past ours, just under it,
# and degenerate (one row of two billion pixels, a zero side).
HUGE_SIZES = ((65535, 65535), (100_000, 100_000), (2**31 - 1, 1), (1, 2**31 - 1), (20_000, 20_000),
              (6_400, 6_400), (9_000, 4_000), (0, 480), (40_000, 3))
SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif"}


@dataclass
class FuzzReport:
    """What one fuzz run found."""

    images: int                 # mutants generated
    decodes: int                # decode attempts (a mutant is decoded two or three ways)
    decoded: int                # attempts that gave a finite model input
    refused: int                # attempts refused with a ValueError
    failed: int                 # attempts that raised anything else, or gave a bad input: must be 0
    seconds: float              # wall time of the decoding, seeds and warm-up excluded
    images_per_second: float    # mutants decoded per second (all their ways)
    slowest_ms: float           # the slowest single decode attempt
    peak_rss_mb: float          # the process's peak resident memory, start-up included
    baseline_rss_mb: float      # its resident memory after start-up and warm-up, before the fuzz
    mutants_per_format: dict = field(default_factory=dict)  # format → mutants of it
    per_format: dict = field(default_factory=dict)   # format → decode attempts {"decoded": n, "refused": n, "failed": n}
    failures: list = field(default_factory=list)     # the first failures: format, seed, mutation, error


# ---------------------------------------------------------------- seeds


def _garment(size=(64, 80), mode="RGB"):
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, "white")
    width, height = size
    draw = ImageDraw.Draw(image)
    draw.rectangle([width // 5, height // 6, 4 * width // 5, 5 * height // 6], fill=(170, 40, 40))
    draw.rectangle([width // 5, height // 3, 4 * width // 5, height // 3 + 6], fill=(60, 20, 20))
    if mode == "RGBA":
        pixels = np.asarray(image.convert("RGBA")).copy()
        pixels[(pixels[..., :3] == 255).all(axis=-1), 3] = 0
        return Image.fromarray(pixels, "RGBA")
    if mode == "I;16":
        return Image.fromarray(np.asarray(image.convert("L"), dtype=np.uint16) * 257)
    if mode == "P":
        return image.quantize(16)
    return image.convert(mode)


def _encoded(image, format: str, **options) -> bytes:
    # Copies: a save leaves its encoder's settings on the image, and Pillow's TIFF writer would
    # take a JPEG save's for its own.
    if "append_images" in options:
        options["append_images"] = [frame.copy() for frame in options["append_images"]]
    buffer = io.BytesIO()
    image.copy().save(buffer, format=format, **options)
    return buffer.getvalue()


def _malformed_dds() -> bytes:
    """A DDS header naming a pixel format Pillow does not implement (it raises NotImplementedError)."""
    header = struct.pack("<7I", 124, 0x1007, 16, 16, 0, 0, 0) + bytes(44)
    pixel_format = struct.pack("<2I4s5I", 32, 0x4, b"ABCD", 0, 0, 0, 0, 0)
    return b"DDS " + header + pixel_format + struct.pack("<5I", 0x1000, 0, 0, 0, 0) + bytes(256)


def foreign_seeds() -> list[tuple[str, str, bytes]]:
    """(format, variant, bytes) of formats Pillow reads that are not accepted: each must be refused."""
    from PIL import features

    rgb = _garment()
    found = [("DDS", "malformed", _malformed_dds()), ("DDS", "RGB", _encoded(rgb, "DDS"))]
    found += [(format, "RGB", _encoded(rgb, format)) for format in ("TGA", "PCX", "ICO", "SGI", "PPM", "IM", "QOI", "DIB")]
    found += [("MSP", "1-bit", _encoded(rgb.convert("1"), "MSP")), ("SPIDER", "F", _encoded(rgb.convert("F"), "SPIDER"))]
    if features.check("jpg_2000"):
        found.append(("JPEG2000", "RGB", _encoded(rgb, "JPEG2000")))
    return found


def seeds() -> list[tuple[str, str, bytes]]:
    """(format, variant, bytes) for each accepted format in its common variants, then the foreign ones."""
    from PIL import Image, features

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° to display
    rgb, rgba, grey = _garment(), _garment(mode="RGBA"), _garment(mode="L")
    frames = [rgb, _garment(size=(64, 80)).rotate(90)]
    found = [
        ("JPEG", "baseline", _encoded(rgb, "JPEG", quality=85)),
        ("JPEG", "progressive", _encoded(rgb, "JPEG", quality=70, progressive=True)),
        ("JPEG", "grayscale", _encoded(grey, "JPEG")),
        ("JPEG", "CMYK", _encoded(rgb.convert("CMYK"), "JPEG")),
        ("JPEG", "EXIF orientation", _encoded(rgb, "JPEG", exif=exif.tobytes())),
        ("JPEG", "large, drafted", _encoded(_garment(size=(1200, 1600)), "JPEG", quality=60)),
        ("JPEG", "MPO", _encoded(rgb, "MPO", save_all=True, append_images=[frames[1]])),
        ("PNG", "RGB", _encoded(rgb, "PNG")),
        ("PNG", "RGBA", _encoded(rgba, "PNG")),
        ("PNG", "L", _encoded(grey, "PNG")),
        ("PNG", "LA", _encoded(rgba.convert("LA"), "PNG")),
        ("PNG", "palette, transparent", _encoded(_garment(mode="P"), "PNG", transparency=0)),
        ("PNG", "16-bit", _encoded(_garment(mode="I;16"), "PNG")),
        ("PNG", "1-bit", _encoded(rgb.convert("1"), "PNG")),
        ("PNG", "large, reduced", _encoded(_garment(size=(1000, 1400), mode="RGBA"), "PNG")),
        ("PNG", "animated", _encoded(rgb, "PNG", save_all=True, append_images=frames[1:])),
        ("PNG", "EXIF orientation", _encoded(rgb, "PNG", exif=exif.tobytes())),
        ("GIF", "palette", _encoded(rgb, "GIF")),
        ("GIF", "transparent", _encoded(_garment(mode="P"), "GIF", transparency=0)),
        ("GIF", "animated", _encoded(rgb, "GIF", save_all=True, append_images=frames[1:], duration=100)),
        ("BMP", "RGB", _encoded(rgb, "BMP")),
        ("BMP", "palette", _encoded(_garment(mode="P"), "BMP")),
        ("BMP", "1-bit", _encoded(rgb.convert("1"), "BMP")),
        ("BMP", "L", _encoded(grey, "BMP")),
        ("TIFF", "raw", _encoded(rgb, "TIFF")),
        ("TIFF", "LZW", _encoded(rgb, "TIFF", compression="tiff_lzw")),
        ("TIFF", "deflate, RGBA", _encoded(rgba, "TIFF", compression="tiff_adobe_deflate")),
        ("TIFF", "packbits, L", _encoded(grey, "TIFF", compression="packbits")),
        ("TIFF", "JPEG", _encoded(rgb, "TIFF", compression="jpeg")),
        ("TIFF", "group4", _encoded(rgb.convert("1"), "TIFF", compression="group4")),
        ("TIFF", "16-bit", _encoded(_garment(mode="I;16"), "TIFF")),
        ("TIFF", "CMYK", _encoded(rgb.convert("CMYK"), "TIFF")),
        ("TIFF", "orientation", _encoded(rgb, "TIFF", exif=exif.tobytes())),
        ("TIFF", "multi-page", _encoded(rgb, "TIFF", save_all=True, append_images=frames[1:])),
    ]
    if features.check("webp"):
        found += [
            ("WEBP", "lossy", _encoded(rgb, "WEBP", quality=80)),
            ("WEBP", "lossless RGBA", _encoded(rgba, "WEBP", lossless=True)),
            ("WEBP", "animated", _encoded(rgb, "WEBP", save_all=True, append_images=frames[1:])),
            ("WEBP", "EXIF orientation", _encoded(rgb, "WEBP", exif=exif.tobytes())),
        ]
    return found + foreign_seeds()


# ---------------------------------------------------------------- mutations


def _png_huge(data: bytearray, width: int, height: int) -> None:
    if data[12:16] == b"IHDR":
        data[16:24] = struct.pack(">II", width & 0xFFFFFFFF, height & 0xFFFFFFFF)
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # a valid CRC: the header is believed


def _gif_huge(data: bytearray, width: int, height: int) -> None:
    pair = struct.pack("<HH", min(width, 65535), min(height, 65535))
    data[6:10] = pair  # the logical screen
    descriptor = data.find(b"\x2c\x00\x00\x00\x00", 13)  # the first image, at (0, 0)
    if descriptor > 0:
        data[descriptor + 5 : descriptor + 9] = pair


def _bmp_huge(data: bytearray, width: int, height: int) -> None:
    data[18:26] = struct.pack("<ii", min(width, 2**31 - 1), min(height, 2**31 - 1))


def _jpeg_huge(data: bytearray, width: int, height: int) -> None:
    for marker in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2"):
        start = data.find(marker)
        if start > 0:
            data[start + 5 : start + 9] = struct.pack(">HH", min(height, 65535), min(width, 65535))
            return


def _webp_huge(data: bytearray, width: int, height: int) -> None:
    kind = bytes(data[12:16])
    if kind == b"VP8X":
        data[24:30] = (max(width, 1) - 1).to_bytes(4, "little")[:3] + (max(height, 1) - 1).to_bytes(4, "little")[:3]
    elif kind == b"VP8L":
        bits = ((max(width, 1) - 1) & 0x3FFF) | (((max(height, 1) - 1) & 0x3FFF) << 14)
        data[21:25] = (bits | (data[24] & 0xF0) << 24).to_bytes(4, "little")
    elif kind == b"VP8 ":
        data[26:30] = struct.pack("<HH", width & 0x3FFF, height & 0x3FFF)


def _tiff_entries(data: bytes) -> tuple[str, list[int]]:
    """The byte order and the offsets of the first IFD's 12-byte entries (none when unparsable)."""
    order = "<" if data[:2] == b"II" else ">"
    try:
        (offset,) = struct.unpack_from(order + "I", data, 4)
        (count,) = struct.unpack_from(order + "H", data, offset)
    except struct.error:
        return order, []
    return order, [offset + 2 + 12 * i for i in range(count) if offset + 14 + 12 * i <= len(data)]


def _tiff_set(data: bytearray, order: str, entry: int, value: int) -> None:
    (kind,) = struct.unpack_from(order + "H", data, entry + 2)
    if kind == 3:  # SHORT, left-justified in the value field
        struct.pack_into(order + "HH", data, entry + 8, value & 0xFFFF, 0)
    else:
        struct.pack_into(order + "I", data, entry + 8, value & 0xFFFFFFFF)


def _tiff_huge(data: bytearray, width: int, height: int) -> None:
    order, entries = _tiff_entries(data)
    for entry in entries:
        (tag,) = struct.unpack_from(order + "H", data, entry)
        if tag in (256, 257):
            _tiff_set(data, order, entry, width if tag == 256 else height)


HUGE = {"PNG": _png_huge, "GIF": _gif_huge, "BMP": _bmp_huge, "JPEG": _jpeg_huge, "WEBP": _webp_huge, "TIFF": _tiff_huge}


def mutate(format: str, data: bytes, mutation: str, rng: np.random.Generator) -> bytes:
    """``data`` with one ``mutation`` (see ``MUTATIONS``) drawn with ``rng``."""
    out = bytearray(data)
    size = len(out)
    if mutation == "flip":
        near_start = rng.random() < 0.5
        for _ in range(int(rng.integers(1, 17))):
            position = int(rng.integers(0, min(size, 256) if near_start else size))
            out[position] ^= int(rng.integers(1, 256))
    elif mutation == "truncate":
        out = out[: int(rng.integers(0, size))]
    elif mutation == "header":
        for _ in range(int(rng.integers(1, 5))):
            position = int(rng.integers(0, min(size, 64)))
            out[position] = int(rng.choice([0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF]))
    elif mutation == "huge":
        width, height = HUGE_SIZES[int(rng.integers(0, len(HUGE_SIZES)))]
        if format in HUGE:
            HUGE[format](out, width, height)
        else:  # a foreign format: its header edited instead
            return mutate(format, data, "header", rng)
    elif mutation == "zero":
        start, length = int(rng.integers(0, size)), int(rng.integers(1, 65))
        out[start : start + length] = bytes(len(out[start : start + length]))
    elif mutation == "duplicate":
        start = int(rng.integers(0, size))
        piece = out[start : start + int(rng.integers(1, 257))]
        out[start:start] = piece * int(rng.integers(1, 9))
    elif mutation == "move":
        start, to = int(rng.integers(0, size)), int(rng.integers(0, size))
        piece = out[start : start + int(rng.integers(1, 129))]
        del out[start : start + len(piece)]
        out[to:to] = piece
    elif mutation == "tag":  # a TIFF entry's value, else a 32-bit field anywhere near the start
        order, entries = _tiff_entries(bytes(out)) if format == "TIFF" else ("<", [])
        value = int(rng.choice([0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, int(rng.integers(0, 2**32))]))
        if entries:
            _tiff_set(out, order, entries[int(rng.integers(0, len(entries)))], value)
        elif size >= 4:
            struct.pack_into("<I", out, int(rng.integers(0, min(size, 128) - 3)), value)
    else:
        raise ValueError(f"unknown mutation {mutation!r}; one of {', '.join(MUTATIONS)}")
    return bytes(out)


def mutants(count: int, seed: int = 0):
    """``count`` (format, variant, mutation, bytes), the formats and mutations in turn."""
    rng = np.random.default_rng(seed)
    pool = seeds()
    for index in range(count):
        format, variant, data = pool[index % len(pool)]
        mutation = MUTATIONS[(index // len(pool)) % len(MUTATIONS)] if rng.random() < 0.5 else str(rng.choice(MUTATIONS))
        yield format, variant, mutation, mutate(format, data, mutation, rng)


# ---------------------------------------------------------------- the run


def _decoders(folder: Path):
    """(name, decode(format, data) → model input) for each path an image takes into a model."""
    from apparel.contract import FASHION_MNIST, InputContract
    from apparel.images import decode
    from apparel.images.sources import ImageSource, read_source

    photo = InputContract(kind="photo", size=48, class_names=("a", "b"))

    def from_file(format: str, data: bytes) -> np.ndarray:
        path = folder / f"mutant{SUFFIXES.get(format, '.' + format.lower())}"
        path.write_bytes(data)
        return read_source(ImageSource(str(path), path=path), contract=FASHION_MNIST)[0]

    def cost(format: str, data: bytes) -> np.ndarray:
        if decode.decode_cost(data) < 0:
            raise AssertionError("a negative decode cost")
        return np.zeros(FASHION_MNIST.shape, np.float32)

    return {
        "bytes, Fashion-MNIST": (FASHION_MNIST.shape, lambda format, data: FASHION_MNIST.decode(data)),
        "bytes, photo model": (photo.shape, lambda format, data: photo.decode(data)),
        "file, Fashion-MNIST": (FASHION_MNIST.shape, from_file),
        "decode_cost": (FASHION_MNIST.shape, cost),
    }


def peak_rss_mb() -> float:
    # ru_maxrss is in kibibytes on Linux, bytes on macOS.
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def run(images: int, seed: int = 0, max_failures: int = 20) -> FuzzReport:
    """Decode ``images`` mutants every way; the report counts what became of them."""
    from apparel.images.decode import ACCEPTED_FORMATS

    counts = {outcome: 0 for outcome in ("decoded", "refused", "failed")}
    per_format: dict[str, Counter] = {}
    failures, slowest, decodes, mutants_per_format = [], 0.0, 0, Counter()
    with tempfile.TemporaryDirectory() as temporary:
        decoders = _decoders(Path(temporary))
        for format, variant, data in seeds():  # warm-up: every decoder loaded, every path taken once
            for _, decoder in decoders.values():
                try:
                    decoder(format, data)
                except ValueError:
                    pass  # a foreign format
        baseline = peak_rss_mb()
        start = time.perf_counter()
        for index, (format, variant, mutation, data) in enumerate(mutants(images, seed)):
            mutants_per_format[format] += 1
            for name, (shape, decoder) in decoders.items():
                if name.startswith("file") and index % 4:
                    continue
                began = time.perf_counter()
                try:
                    result = decoder(format, data)
                    if result.shape != shape or not np.isfinite(result).all():
                        raise AssertionError(f"a bad model input: shape {result.shape}, finite {np.isfinite(result).all()}")
                    if format not in ACCEPTED_FORMATS:
                        raise AssertionError(f"decoded, though {format} is not an accepted format")
                    outcome = "decoded"
                except ValueError:
                    outcome = "refused"
                except Exception as error:  # noqa: BLE001 — what the fuzz is looking for
                    outcome = "failed"
                    if len(failures) < max_failures:
                        failures.append({"format": format, "seed": variant, "mutation": mutation, "index": index,
                                         "decoder": name, "error": f"{type(error).__name__}: {error}",
                                         "where": traceback.format_exc(limit=-3).splitlines()[-6:]})
                slowest = max(slowest, time.perf_counter() - began)
                decodes += 1
                counts[outcome] += 1
                per_format.setdefault(format, Counter())[outcome] += 1
        seconds = time.perf_counter() - start
    return FuzzReport(
        images=images, decodes=decodes, **counts, seconds=round(seconds, 2),
        images_per_second=round(images / seconds, 1) if seconds else math.inf,
        slowest_ms=round(slowest * 1000, 1), peak_rss_mb=round(peak_rss_mb(), 1), baseline_rss_mb=round(baseline, 1),
        mutants_per_format=dict(sorted(mutants_per_format.items())),
        per_format={format: dict(counter) for format, counter in sorted(per_format.items())}, failures=failures,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20_000, help="mutants to decode (default 20,000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mutations")
    parser.add_argument("--out", help="also write the JSON report to this file")
    args = parser.parse_args(argv)
    report = run(args.images, args.seed)
    print(f"{report.images} mutants, {report.decodes} decodes in {report.seconds} s: {report.images_per_second} images/s, "
          f"slowest decode {report.slowest_ms} ms")
    print(f"decoded {report.decoded}, refused {report.refused}, failed {report.failed}")
    for format, outcomes in report.per_format.items():
        print(f"  {format:<5} " + ", ".join(f"{name} {count}" for name, count in sorted(outcomes.items())))
    print(f"peak RSS {report.peak_rss_mb} MB (after start-up {report.baseline_rss_mb} MB)")
    for failure in report.failures[:5]:
        print(f"FAILED {failure}", file=sys.stderr)
    text = json.dumps(asdict(report))
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(text)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
