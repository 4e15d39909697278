"""Where images come from: files, folders, glob patterns and http(s) URLs, read safely and in batches.

    >>> from apparel.images.sources import expand_sources, read_sources
    >>> sources = expand_sources(["photos/", "*.jpg", "https://example.com/shirt.jpg"])
    >>> next(read_sources(sources, contract=InputContract.for_run("models/store")))
    (ImageSource(name='photos/a.jpg', …), array(…, shape=(1, 224, 224, 3)), None)

They are predicted by the loop of ``apparel.batch.loop`` (``predict_sources``).

URLs are fetched by the hardened ``images.fetch``; paths read from a catalog or a manifest must
reach a file inside its images directory.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from apparel.contract import FASHION_MNIST, InputContract
from apparel.errors import ParameterError, SourceError
from apparel.kinds.fashion_mnist.data import IMAGE_SHAPE
from apparel.images import decode
from apparel.images.fetch import FETCHED_SCHEMES, FetchConfig, fetch_url, is_url
from apparel.inference.inputs import as_model_input, evenly_spaced

# What a folder is searched for; a file named explicitly is tried whatever its suffix.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".npy"})
GLOB_CHARACTERS = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class ImageSource:
    """One image to read: a local path or a URL, or the reason it cannot be read."""

    name: str                        # as shown to the user: the path or URL
    path: Path | None = None
    url: str | None = None
    error: str | None = None         # set when the source was refused before reading
    item: int | None = None          # one image of a .npy stack (its index), else all of them


def url_source(url: str) -> ImageSource:
    """A source for ``url``: fetched when its scheme is http or https, else refused with the reason."""
    scheme = url.split("://", 1)[0].lower()
    if scheme in FETCHED_SCHEMES:
        return ImageSource(url, url=url)
    return ImageSource(url, error=f"only http and https URLs are fetched, not {scheme}://")


def contained_source(reference: str, images_dir: str | os.PathLike) -> ImageSource:
    """The source a catalog or manifest cell names: an http(s) URL, or a path that must stay
    inside ``images_dir`` (a file from elsewhere must not read the rest of the disk). A reference
    that cannot be one is a source with its ``error``."""
    if not reference.strip():
        return ImageSource(reference, error="empty image reference")
    if is_url(reference):
        return url_source(reference)
    try:
        return ImageSource(reference, path=resolve_inside(reference, images_dir))
    except SourceError as error:
        return ImageSource(reference, error=error.reason)


def expand_sources(items: Iterable[str]) -> list[ImageSource]:
    """Files, folders (searched recursively for image files), glob patterns and URLs, in order.

    An item that names nothing becomes a source with an ``error``, so a run reports it and goes on.

    >>> [s.name for s in expand_sources(["shop/"])]
    ['shop/bags/tote.jpg', 'shop/dress.png']
    """
    sources: list[ImageSource] = []
    for item in items:
        item = str(item)
        if not item:  # Path("") is the current folder, which no one means by an empty argument
            sources.append(ImageSource("''", error="an empty path names no photo; give a file, a folder or a URL"))
            continue
        if is_url(item):
            sources.append(url_source(item))
            continue
        try:
            sources.extend(_path_sources(item))
        except (OSError, RuntimeError, ValueError) as error:  # a name too long, a symbolic link loop, a NUL byte
            sources.append(ImageSource(item, error=f"cannot read this path ({_path_reason(error)})"))
    return sources


def _path_reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)


def _path_sources(item: str) -> list[ImageSource]:
    """The sources a path names: the images in a folder, a file, or the matches of a pattern."""
    path = Path(item)
    if path.is_dir():
        found = _images_in(path)
        if not found:
            return [ImageSource(item, error=f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")]
        return [ImageSource(str(p), path=p) for p in found]
    if path.is_file():
        return [ImageSource(item, path=path)]
    if GLOB_CHARACTERS.search(item):
        matches = sorted(glob.glob(item, recursive=True))
        if not matches:
            return [ImageSource(item, error="no files match this pattern")]
        sources = []
        for match in matches:
            match_path = Path(match)
            if match_path.is_dir():
                sources.extend(ImageSource(str(p), path=p) for p in _images_in(match_path))
            elif match_path.is_file():
                sources.append(ImageSource(match, path=match_path))
        return sources
    try:
        path.stat()
    except FileNotFoundError:
        return [ImageSource(item, error="file not found")]
    except OSError as error:  # a symbolic link loop, no permission
        return [ImageSource(item, error=f"cannot read this path ({_path_reason(error)})")]
    return [ImageSource(item, error="not a file or a folder")]


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and _may_be_file(p))


def _may_be_file(path: Path) -> bool:
    """Whether ``path`` is a file, or might be one: a path that cannot even be looked at (no
    permission, too long) is kept, so that reading it reports why, rather than left out unsaid."""
    try:
        return path.is_file()
    except OSError:
        return True


def resolve_inside(value: str, images_dir: str | os.PathLike) -> Path:
    """A path read from a catalog or manifest, resolved inside ``images_dir``: relative to it, or
    absolute, with ``..`` or symbolic links on the way, as long as the file it reaches is inside
    (``find /data -name '*.jpg'`` makes a manifest with ``images_dir`` ``/data``); a path that
    leads outside, through ``..``, a symbolic link or from elsewhere on the disk, is refused.

    >>> resolve_inside("shirts/blue.jpg", "images")
    PosixPath('/home/me/shop/images/shirts/blue.jpg')
    >>> resolve_inside("/home/me/shop/images/shirts/../blue.jpg", "images")
    PosixPath('/home/me/shop/images/blue.jpg')
    """
    text = value.strip()
    if not text:
        raise SourceError(value, "empty image path")
    if text.startswith("//") and "." in text[2:].split("/")[0]:  # "//cdn.example.com/a.jpg", as HTML writes it
        raise SourceError(value, "is a URL without its scheme; write it with https: in front")
    if re.match(r"^[A-Za-z]:", text):  # C:\… names another machine's disk: it cannot be inside images_dir here
        raise SourceError(value, "Windows drive paths are refused; give a path inside images_dir (the images folder)")
    posix = PurePosixPath(text.replace("\\", "/"))
    try:
        root = Path(images_dir).resolve()
        # An absolute path replaces root; the file reached (links and ".." followed) is what is checked.
        resolved = (root / Path(*posix.parts)).resolve()
    except (OSError, RuntimeError, ValueError) as error:  # a symbolic link loop (RuntimeError), a NUL byte
        raise SourceError(value, f"cannot resolve the path ({_path_reason(error)})") from None
    if not resolved.is_relative_to(root):
        # The folder is not named: a desk's review file goes to its client, who must not learn the
        # server's folders; the user running a catalog or batch gave it.
        raise SourceError(value, "leads outside images_dir; refused (an image path, however written, "
                                 "must reach a file inside the images folder)")
    return resolved


def read_source(source: ImageSource, fetch: FetchConfig = FetchConfig(), max_pixels: int | None = None,
                contract: InputContract = FASHION_MNIST) -> np.ndarray:
    """The model inputs of one source as ``contract`` says (see ``InputContract.decode``): one
    image for a photo, N ≥ 1 for a ``.npy`` stack. Raises ``ValueError`` with the reason it
    cannot be read."""
    limit = decode.MAX_PIXELS if max_pixels is None else max_pixels
    if source.error is not None:
        raise SourceError(source.name, source.error)
    if source.url is not None:
        data = fetch_url(source.url, fetch)
        return _named(source.name, contract.decode, data, limit)[None]
    if source.path is not None and source.path.suffix.lower() == ".npy":
        stack = _named(source.name, read_image_file, source.path, contract)
        return stack if source.item is None else stack[source.item : source.item + 1]
    return _named(source.name, contract.decode, source.path, limit)[None]


def _named(name: str, read: Callable, data, *args):
    """``read(data, *args)``, its errors naming the source as the user gave it."""
    try:
        return read(data, *args)
    except SourceError as error:
        raise error.renamed(name) from None


def read_sources(
    sources: list[ImageSource], fetch: FetchConfig = FetchConfig(), workers: int = 4,
    contract: InputContract = FASHION_MNIST,
) -> Iterator[tuple[ImageSource, np.ndarray | None, str | None]]:
    """``(source, inputs, error)`` for each source, in order; reading and fetching overlap in
    ``workers`` threads (Pillow and sockets release the GIL)."""

    def attempt(source: ImageSource):
        try:
            return source, read_source(source, fetch, contract=contract), None
        except ValueError as error:  # a SourceError's reason; the source is named beside it
            return source, None, getattr(error, "reason", str(error))

    if workers <= 1 or len(sources) <= 1:
        yield from map(attempt, sources)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(attempt, sources)


def calibration_inputs(items: list[str], contract: InputContract, count: int = 200) -> np.ndarray:
    """Model inputs of ``count`` readable images of ``items`` (files, folders, patterns; evenly
    spaced over all they name, so every class folder gives some), for an int8 export to measure
    its activations on."""
    sources = [source for source in expand_sources(items) if source.error is None]
    if count < 1 or not sources:
        raise ParameterError(f"{{}} {' '.join(items)}: no images to calibrate on (count {count})", "calibration")
    chosen = [sources[i] for i in evenly_spaced(len(sources), count)]
    inputs = [array[:1] for _, array, error in read_sources(chosen, workers=4, contract=contract) if error is None]
    if not inputs:
        raise ParameterError(f"{{}} {' '.join(items)}: none of the images could be read", "calibration")
    return np.concatenate(inputs)


def read_image_file(path: str | os.PathLike, contract: InputContract = FASHION_MNIST) -> np.ndarray:
    """Images from a 28×28 PNG/JPEG (any mode, converted to grayscale) or a ``.npy`` array of
    one (28, 28) image or a stack (N, 28, 28); for a photo model's ``contract``, a ``.npy`` of
    (N, size, size, 3) RGB photos.

    Fashion-MNIST images are light garments on a black background; give images in that form.
    Returns float32 (N, 28, 28) in [0, 1]. Raises ``ValueError`` with the reason it cannot be read.
    """
    path = Path(path)
    if path.suffix.lower() != ".npy":
        image = decode.open_image(path)
        if image.size[::-1] != IMAGE_SHAPE:
            raise SourceError(path, "image is not 28×28 pixels; the model takes 28×28 grayscale images like Fashion-MNIST's")
        single = image.mode in decode.SINGLE_CHANNEL_MODES
        return as_model_input(decode.to_grayscale_array(image) if single else np.asarray(image.convert("L")))
    try:
        found = path.is_file()
        # Mapped, not read: a header declaring a shape larger than the file is refused before
        # anything that size is allocated.
        array = np.load(path, mmap_mode="r", allow_pickle=False) if found else None
    except Exception as error:  # noqa: BLE001 — numpy raises several types for a malformed header
        raise SourceError(path, f"not a readable .npy array ({_path_reason(error) or 'empty file'})") from None
    if array is None:
        raise SourceError(path, "file not found")
    try:
        batch = contract.prepare(array)
    except ValueError as error:
        raise SourceError(path, f"{error}") from None
    if len(batch) == 0:
        raise SourceError(path, f"holds no images (shape {array.shape})")
    return batch
