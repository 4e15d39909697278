"""Labelled photos for training a photo model: a folder per class, or a CSV of ``path,label``.

    >>> from apparel.kinds.photo.data import load_photo_splits
    >>> splits = load_photo_splits(["shop/photos"], validation_split=0.15, seed=0)
    >>> splits.class_names, len(splits.train), len(splits.validation)
    (('dress', 'hat', ...), 2600, 460)

A folder per class is the convention of Keras's ``image_dataset_from_directory``. A folder that
holds ``train/`` (and ``validation/``) folders is read as those splits. Otherwise a stratified
share of each class is held out for validation. More collections after the first add training
photos (their classes must be among the first's). Photos that cannot be read, or that are smaller
than ``MIN_SIDE`` pixels, are skipped and counted; they never stop training. Photos are decoded as
training streams them, never all held in memory.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from apparel.errors import ParameterError
from apparel.images.decode import ACCEPTED_FORMATS
from apparel.kinds.photo.pipeline import photo_to_rgb

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
# Smaller photos show too little of the garment to learn from (a thumbnail, an icon, a pixel).
MIN_SIDE = 32
# A class needs this many readable training photos: fewer cannot be split into training and
# validation photos and learnt from.
MIN_PER_CLASS = 5
# With fewer validation photos of a class than this, its figures move in steps too coarse to trust
# (one photo is 0 % or 100 %): training warns, naming the classes.
FEW_VALIDATION_PHOTOS = 10


@dataclass(frozen=True)
class PhotoSet:
    """Photo files and their class indices into ``class_names``."""

    paths: tuple[str, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.paths)

    def counts(self) -> dict[str, int]:
        return {name: int((self.labels == index).sum()) for index, name in enumerate(self.class_names)}

    def subset(self, indices) -> "PhotoSet":
        indices = np.asarray(indices, dtype=np.int64)
        return PhotoSet(tuple(self.paths[i] for i in indices), self.labels[indices], self.class_names)


@dataclass(frozen=True)
class PhotoSplits:
    train: PhotoSet
    validation: PhotoSet
    class_names: tuple[str, ...]
    skipped: dict[str, str] = field(default_factory=dict)  # path -> why it was left out


def read_collection(source: str | os.PathLike) -> list[tuple[str, str]]:
    """(path, class name) pairs of a class-per-folder tree or a ``path,label`` CSV."""
    source = Path(source)
    if source.is_file() and source.suffix.lower() == ".csv":
        return _read_csv(source)
    if not source.is_dir():
        raise ParameterError(f"{{}}: {source} is neither a folder of class folders nor a .csv of path,label", "images")
    pairs = []
    for name in sorted(_class_folders(source)):
        for path in sorted((source / name).rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                pairs.append((str(path), name))
    if not pairs:
        raise ParameterError(f"{{}}: {source} holds no class folders with photos ({', '.join(IMAGE_SUFFIXES)})", "images")
    return pairs


def _class_folders(source: Path) -> list[str]:
    """The class folders of a class-per-folder tree (none for a CSV)."""
    if not source.is_dir():
        return []
    return [folder.name for folder in source.iterdir() if folder.is_dir() and not folder.name.startswith(".")]


def _read_csv(path: Path) -> list[tuple[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ParameterError(f"{{}}: cannot read {path}: {error}", "images") from None
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise ParameterError(f"{{}}: {path} needs the columns path and label, one photo per row", "images")
    # Relative paths are relative to the CSV's own folder, so a CSV travels with its photos.
    return [(str((path.parent / row["path"]).resolve()), row["label"].strip()) for row in rows if row["path"] and row["label"]]


def _screen(pairs: list[tuple[str, str]], skipped: dict[str, str]) -> list[tuple[str, str]]:
    """The pairs whose file opens as an image at least ``MIN_SIDE`` pixels a side (the header
    only: a body that fails to decode later is skipped while training streams it)."""
    from PIL import Image

    kept = []
    for path, label in pairs:
        try:
            with Image.open(path, formats=ACCEPTED_FORMATS) as image:  # what prediction accepts, no more
                width, height = image.size
        except Exception as error:  # Pillow raises many types for a file that is not an image
            skipped[path] = f"not a readable image ({type(error).__name__})"
            continue
        if min(width, height) < MIN_SIDE:
            skipped[path] = f"too small ({width}×{height}, under {MIN_SIDE} pixels a side)"
            continue
        kept.append((path, label))
    return kept


def _as_set(pairs: list[tuple[str, str]], class_names: tuple[str, ...]) -> PhotoSet:
    labels = np.asarray([class_names.index(label) for _, label in pairs], dtype=np.int32)
    return PhotoSet(tuple(path for path, _ in pairs), labels, class_names)


def read_labelled_photos(source: str | os.PathLike, class_names: tuple[str, ...]) -> PhotoSet:
    """The photos of one collection labelled with a model's ``class_names`` (for measuring it):
    unreadable ones are left for the pipeline to skip, an unknown class is an error."""
    pairs = read_collection(source)
    foreign = sorted({label for _, label in pairs} - set(class_names))
    if foreign:
        raise ParameterError(f"{{}}: {source} has classes the model does not know: {', '.join(foreign)} "
                             f"(its classes: {', '.join(class_names)})", "images")
    return _as_set(pairs, class_names)


def stratified_split(photos: PhotoSet, fraction: float, seed: int) -> tuple[PhotoSet, PhotoSet]:
    """Hold out ``fraction`` of each class (at least one photo of each) for validation."""
    rng = np.random.default_rng(seed)
    held = []
    for index in range(len(photos.class_names)):
        members = rng.permutation(np.flatnonzero(photos.labels == index))
        held.extend(members[: max(1, int(round(fraction * len(members))))])
    held_set = set(int(i) for i in held)
    kept = [i for i in range(len(photos)) if i not in held_set]
    return photos.subset(kept), photos.subset(sorted(held_set))


def limit_per_class(photos: PhotoSet, limit: int, seed: int) -> PhotoSet:
    """At most ``limit`` photos of each class, drawn at random (few-shot training)."""
    rng = np.random.default_rng(seed)
    chosen = []
    for index in range(len(photos.class_names)):
        chosen.extend(rng.permutation(np.flatnonzero(photos.labels == index))[:limit])
    return photos.subset(sorted(int(i) for i in chosen))


def load_photo_splits(
    sources, validation_split: float = 0.1, seed: int = 0, per_class_limit: int | None = None
) -> PhotoSplits:
    """Training and validation photos from ``sources`` (see the module docstring)."""
    sources = [Path(source) for source in sources]
    if not sources:
        raise ParameterError("{}: give at least one folder of class folders or a .csv of path,label", "images")
    skipped: dict[str, str] = {}
    main = sources[0]
    train_root = main / "train" if (main / "train").is_dir() else main
    found = read_collection(train_root)
    validation_pairs = (_screen(read_collection(main / "validation"), skipped)
                        if train_root != main and (main / "validation").is_dir() else None)
    # Every class named, even one whose folder is empty or whose photos are all unreadable: it is
    # then too scarce (below), not silently dropped.
    class_names = tuple(sorted({label for _, label in found} | set(_class_folders(train_root))))
    train_pairs = _screen(found, skipped)
    for extra in sources[1:]:
        pairs = _screen(read_collection(extra), skipped)
        foreign = sorted({label for _, label in pairs} - set(class_names))
        if foreign:
            raise ParameterError(f"{{}}: {extra} has classes the first collection lacks: {', '.join(foreign)}", "images")
        train_pairs += pairs
    if len(class_names) < 2:
        raise ParameterError(f"{{}}: {main} holds {len(class_names)} class; a classifier needs at least two", "images")
    # A class's name becomes a Shopify tag (apparel:<class>), and Shopify splits Tags at commas.
    split = [name for name in class_names if "," in name]
    if split:
        raise ParameterError(f"{{}}: class {split[0]!r} has a comma, which Shopify's Tags would split into two tags; "
                             "rename its folder (or its label) without one", "images")
    train = _as_set(train_pairs, class_names)
    if validation_pairs is None:
        if not 0.0 < validation_split < 1.0:
            raise ParameterError(f"{{}} must be in (0, 1) for photos without a validation/ folder, got {validation_split}",
                                 "validation_split")
        train, validation = stratified_split(train, validation_split, seed)
    else:
        foreign = sorted({label for _, label in validation_pairs} - set(class_names))
        if foreign:
            raise ParameterError(f"{{}}: {main / 'validation'} has classes that train/ lacks: {', '.join(foreign)}",
                                 "images")
        validation = _as_set(validation_pairs, class_names)
    if per_class_limit is not None:
        train = limit_per_class(train, per_class_limit, seed)
    scarce = {name: count for name, count in train.counts().items() if count < MIN_PER_CLASS}
    if scarce:
        listed = ", ".join(f"{name} ({count})" for name, count in sorted(scarce.items()))
        split = (f" (with no validation/ folder, {validation_split:.0%} of each class, one photo at least, is "
                 "held out for validation first)" if validation_pairs is None else "")
        raise ParameterError(f"{{}}: too few readable training photos in {listed}; give each class at least "
                             f"{MIN_PER_CLASS} to train on{split}", "images")
    return PhotoSplits(train, validation, class_names, skipped)


def photo_batches(photos: PhotoSet, size: int, batch_size: int, seed: int | None = None, skipped: dict | None = None):
    """A ``tf.data`` pipeline of (float32 (B, size, size, 3) in [0, 255], int32 labels, float32
    weights) batches, decoded in parallel as it streams; reshuffled every epoch when ``seed`` is
    given. A photo that fails to decode comes as a blank image of weight 0 (so it teaches nothing
    and the number of batches stays known) and is recorded in ``skipped``."""
    import tensorflow as tf

    def decode(path):
        try:
            return photo_to_rgb(path.decode(), size), np.float32(1.0)
        except ValueError as error:
            if skipped is not None:
                skipped[path.decode()] = str(error)
            return np.full((size, size, 3), 255, np.uint8), np.float32(0.0)

    def load(path, label):
        image, weight = tf.numpy_function(decode, [path], [tf.uint8, tf.float32], stateful=False)
        image.set_shape((size, size, 3))
        weight.set_shape(())
        return tf.cast(image, tf.float32), label, weight

    dataset = tf.data.Dataset.from_tensor_slices((list(photos.paths), photos.labels))
    if seed is not None:
        dataset = dataset.shuffle(len(photos), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size).prefetch(2)


def photo_outputs(model, photos: PhotoSet, size: int, batch_size: int = 32, skipped: dict | None = None,
                  progress: str | None = None):
    """``model``'s outputs (N, …) and the labels (N,) of every readable photo, in one pass of
    inference; photos that fail to decode are left out (and recorded in ``skipped``). With
    ``progress`` (its label), a bar on stderr counts the photos and says how long is left.

        >>> features, labels = photo_outputs(backbone, splits.train, 224, progress="features of the training photos")
    """
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def forward(batch):
        return model(batch, training=False)

    outputs, labels = [], []
    with progress_bar(len(photos), progress, "photo") as bar:
        for images, batch_labels, weights in photo_batches(photos, size, batch_size, skipped=skipped):
            readable = weights.numpy() > 0
            outputs.append(forward(images).numpy()[readable])
            labels.append(batch_labels.numpy()[readable])
            bar.update(len(readable))
    return np.concatenate(outputs), np.concatenate(labels)


def progress_bar(total: int, label: str | None, unit: str):
    """A tqdm bar on stderr (count, rate, time left) labelled ``label``; none for ``label=None``.
    Away from a terminal (a log file) it redraws every 10 s rather than ten times a second."""
    import sys

    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit=unit, file=sys.stderr, disable=label is None, leave=True,
                mininterval=0.1 if sys.stderr.isatty() else 10.0, dynamic_ncols=True)
