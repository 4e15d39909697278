"""Fashion-MNIST, read offline from IDX files and checked before use.

The files come from Debian's package ``dataset-fashion-mnist``; nothing is downloaded.

    >>> from apparel.kinds.fashion_mnist import data
    >>> dataset = data.load_dataset()          # scaled to [0, 1], float32
    >>> dataset.x_train.shape, dataset.y_test.shape
    ((60000, 28, 28), (10000,))
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from apparel.errors import ParameterError, local_path, whole_number

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SHAPE = (28, 28)
DEFAULT_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
DATA_DIR_ENV = "APPAREL_DATA_DIR"
INSTALL_HINT = (
    "install it with `apt-get install dataset-fashion-mnist` (or `make setup`), "
    f"or point --data-dir / ${DATA_DIR_ENV} at a directory holding the four IDX files"
)

# SHA-256 of each file *after* gunzip: the gzip wrapper differs between mirrors, the content must not.
FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}
# IDX magic numbers: 0x00 0x00, type 0x08 (unsigned byte), number of dimensions.
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801


@dataclass(frozen=True)
class Dataset:
    """Train and test arrays; images are float32 in [0, 1] unless ``scaled`` is False."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """The four shapes the walk-through prints, keyed by array name."""
        return {name: getattr(self, name).shape for name in ("x_train", "y_train", "x_test", "y_test")}


def check_dataset(dataset) -> None:
    """``dataset`` is None or a ``Dataset``; a ``ParameterError`` naming ``dataset`` otherwise (an
    array or a path there failed deep inside, as "'str' object has no attribute 'x_test'")."""
    if dataset is not None and not isinstance(dataset, Dataset):
        raise ParameterError(f"{{}} must be a Dataset (load_dataset(…)), got {type(dataset).__name__}", "dataset")


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The directory to read: the argument, else ``$APPAREL_DATA_DIR``, else Debian's location."""
    if data_dir is not None:
        return local_path(data_dir, "data_dir")
    from_env = os.environ.get(DATA_DIR_ENV)
    return Path(from_env) if from_env else DEFAULT_DATA_DIR


def read_idx(path: str | os.PathLike, expected_sha256: str | None = None) -> np.ndarray:
    """Read one gzipped IDX file of unsigned bytes into an array of its declared shape.

    Raises ``ValueError`` naming the file when it is missing, truncated, not IDX, or fails its
    checksum.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: file not found; {INSTALL_HINT}")
    try:
        with gzip.open(path, "rb") as handle:
            raw = handle.read()
    except (EOFError, OSError, zlib.error) as error:
        raise ValueError(
            f"{path}: cannot decompress ({error}); the file is truncated or corrupt, reinstall it "
            "with `apt-get install --reinstall dataset-fashion-mnist`"
        ) from None
    if expected_sha256 is not None:
        digest = hashlib.sha256(raw).hexdigest()
        if digest != expected_sha256:
            raise ValueError(
                f"{path}: SHA-256 of the decompressed content is {digest}, expected {expected_sha256}; "
                "the file is not the published Fashion-MNIST, reinstall `dataset-fashion-mnist`"
            )
    if len(raw) < 4:
        raise ValueError(f"{path}: only {len(raw)} bytes, too short for an IDX header")
    magic = int.from_bytes(raw[:4], "big")
    if magic >> 8 != 0x08 or magic & 0xFF not in (1, 3):
        raise ValueError(
            f"{path}: wrong magic number 0x{magic:08x}; expected 0x{IMAGES_MAGIC:08x} (images) "
            f"or 0x{LABELS_MAGIC:08x} (labels) — is this an IDX file?"
        )
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise ValueError(f"{path}: IDX header cut short ({len(raw)} bytes)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected_bytes = header_size + int(np.prod(shape))
    if len(raw) != expected_bytes:
        raise ValueError(
            f"{path}: header declares shape {shape} ({expected_bytes} bytes) but the file holds "
            f"{len(raw)} bytes; the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def load_raw(
    data_dir: str | os.PathLike | None = None, verify: bool = True
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The four uint8 arrays, in the order ``keras.datasets.fashion_mnist.load_data()`` returns.

    ``verify=False`` skips the SHA-256 check (for other IDX data of the same layout).
    """
    directory = resolve_data_dir(data_dir)
    arrays = {}
    for key, (filename, sha256) in FILES.items():
        arrays[key] = read_idx(directory / filename, sha256 if verify else None)
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
            raise ValueError(f"{directory}: {split} images have shape {images.shape}, expected (N, 28, 28)")
        if labels.ndim != 1 or len(labels) != len(images):
            raise ValueError(
                f"{directory}: {len(images)} {split} images but {labels.shape[0] if labels.ndim else 0} "
                f"labels; the image and label files do not belong together"
            )
        if labels.size and labels.max() >= len(CLASS_NAMES):
            raise ValueError(f"{directory}: {split} labels go up to {labels.max()}, expected 0–9")
    return (arrays["train_images"], arrays["train_labels"]), (arrays["test_images"], arrays["test_labels"])


def scale(images: np.ndarray) -> np.ndarray:
    """Pixels 0–255 to float32 in [0, 1], as the walk-through does with ``/ 255.0``."""
    return np.asarray(images, dtype=np.float32) / np.float32(255.0)


def load_dataset(
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    scaled: bool = True,
    verify: bool = True,
) -> Dataset:
    """Load train and test sets; ``limit`` keeps the first N training images (quick runs)."""
    (x_train, y_train), (x_test, y_test) = load_raw(data_dir, verify=verify)
    if limit is not None:
        limit = whole_number(limit, "limit", "a positive whole number of training images")
        x_train, y_train = x_train[:limit], y_train[:limit]
    if scaled:
        x_train, x_test = scale(x_train), scale(x_test)
    return Dataset(x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64))


def keras_cache_dir(keras_home: str | os.PathLike | None = None) -> Path:
    """Where ``keras.datasets.fashion_mnist`` looks: ``$KERAS_HOME``, else ``~/.keras`` (or
    ``/tmp/.keras`` when the home directory is read-only), as Keras decides when it is imported."""
    home = keras_home or os.environ.get("KERAS_HOME")
    if not home:
        base = Path.home() if os.access(Path.home(), os.W_OK) else Path("/tmp")
        home = base / ".keras"
    return Path(home) / "datasets" / "fashion-mnist"


def install_keras_cache(
    data_dir: str | os.PathLike | None = None, keras_home: str | os.PathLike | None = None
) -> Path:
    """Copy the verified files into Keras's cache so ``load_data()`` works without a network.

    Returns the cache directory. Files already there with the right content are left alone.
    """
    source = resolve_data_dir(data_dir)
    load_raw(source)  # verify everything before copying anything
    target = keras_cache_dir(keras_home)
    target.mkdir(parents=True, exist_ok=True)
    for filename, sha256 in FILES.values():
        destination = target / filename
        if destination.is_file():
            try:
                read_idx(destination, sha256)
                continue
            except ValueError:
                pass  # a stale or broken copy: replace it
        partial = destination.with_name(destination.name + ".partial")
        shutil.copyfile(source / filename, partial)
        os.replace(partial, destination)
    return target
