"""The ImageNet side taught to read a store's small thumbnails as it reads the photo itself.

    python -m apparel.store distil runs/store-photos --datasets ../shared/datasets --out runs/store-imagenet

EfficientNet-Lite0's ImageNet classifier learnt from sharp photos. Shrunk to a 60×80 thumbnail and
enlarged back to 224 pixels, a blouse is a little of many things to it (a necktie, a quilt, "not
apparel"), and what it takes from the garment head left most such thumbnails for review
(``docs/store-model.md``). No label says what ImageNet class a thumbnail is, but the classifier
itself does, on the same photo at full size: that answer is the target (knowledge distillation,
Hinton et al. 2015, with the pretrained classifier as its own teacher). A copy of its top blocks
(12-15, the head convolution and the classifier; the trunk below stays as pretrained, shared with
the garment head) learns to give it from the photo at full size and from the photo as a thumbnail
(shrunk to a random box, a JPEG read back: ``apparel.images.thumbnails``).

The photos are training-side only, none of them a validation photo: the garment head's
(``training_set``: clothing-dataset-small and -extra, the worn crops of Clothing Co-Parsing), and
Co-Parsing's training-side street photos, their corners and accessories (as worn, worn on white,
cut out onto white), so that what is not apparel and what only ImageNet knows keep their answers. The trunk's
features are computed once (frozen, so each photo's are the same every epoch). Batch
normalisation keeps its pretrained statistics.

The result is ``imagenet_top.weights.h5`` and ``distil.json`` (the settings, the photos, the loss
per epoch) in ``out``; ``python -m apparel.store build … --imagenet-top out/imagenet_top.weights.h5``
builds the store model with it, calibrated again.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from apparel.config import Config, option
from apparel.store.model import imagenet_parts
from apparel.store.training_set import CO_PARSING

WEIGHTS_FILE = "imagenet_top.weights.h5"
RECORD_FILE = "distil.json"


@dataclass(frozen=True)
class DistilConfig(Config):
    """How the ImageNet side is taught to read thumbnails."""

    KEY_NAME = "distillation setting"

    epochs: int = option(3, "passes over the photos", minimum=1)
    learning_rate: float = option(1e-4, "Adam's learning rate", above=0.0)
    batch_size: int = option(64, "photos per step", minimum=1)
    # Thumbnails from about a quarter of the model's input to a little over half: 60×80 reaches
    # 224 pixels enlarged 2.8 times.
    min_side: int = option(56, "smallest thumbnail's longer side, in pixels", minimum=8)
    max_side: int = option(128, "largest thumbnail's longer side, in pixels", minimum=8)
    # Above 1, the full photos count more than their thumbnails: the classifier changes less where
    # it was right already.
    full_weight: float = option(1.0, "weight of a full photo's answer against its thumbnail's", above=0.0)
    seed: int = option(0, "seed of the thumbnails' sizes and of the training's order")

    def check(self) -> None:
        if self.min_side > self.max_side:
            raise ValueError(f"min_side ({self.min_side}) must be at most max_side ({self.max_side})")


def distillation_photos(photos_dir: str | os.PathLike, datasets: str | os.PathLike) -> list:
    """The training-side photos the ImageNet side learns from (paths and PIL images; see the module
    docstring): the linked garment photos' ``train/``, then Co-Parsing's training-side street
    photos, their corners and their accessories."""
    from apparel.store.worn import ACCESSORIES, HELD_OUT_EVERY, worn_crops

    photos = sorted(path for path in (Path(photos_dir) / "train").glob("*/*") if path.is_file())
    if not photos:
        raise ValueError(f"photos_dir: {photos_dir} has no train/<class>/ photos; link them with "
                         "`python -m apparel.store link DATASETS OUT`")
    parsing = Path(datasets) / CO_PARSING
    if parsing.is_dir():
        # Whole street photos of people, then the corners and accessories: none of a photo whose
        # number is divisible by 5, the held-out ones (``worn.HELD_OUT_EVERY``).
        photos += sorted(path for path in (parsing / "photos").glob("*.jpg")
                         if path.stem.isdigit() and int(path.stem) % HELD_OUT_EVERY)
        photos += [crop.image for crop in worn_crops(parsing, held_out=False, cut_outs=True, worn_on_white=True)
                   if crop.category is None or crop.label in ACCESSORIES]
    return photos


def thumbnail_input(photo, rng: random.Random, config: DistilConfig, size: int) -> np.ndarray:
    """``photo`` (a path or PIL image) as a random store thumbnail (longer side between
    ``min_side`` and ``max_side``, 3:4), read back from its JPEG as the model reads a file."""
    from apparel.images.thumbnails import thumbnail_of
    from apparel.kinds.photo.pipeline import photo_to_rgb

    side = rng.randint(config.min_side, config.max_side)
    return photo_to_rgb(thumbnail_of(photo, (max(1, round(side * 0.75)), side)), size)


def features(trunk, top, photos: list, rng: random.Random, config: DistilConfig, size: int,
             batch_size: int = 32, progress: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each photo: the trunk's features of the photo and of a thumbnail of it (float16), and
    the classifier's logits on the photo (the target). ``progress``: a bar's label on stderr."""
    from apparel.kinds.photo.data import progress_bar
    from apparel.kinds.photo.pipeline import photo_to_rgb

    full, small, targets = [], [], []
    with progress_bar(len(photos), progress, "photo") as bar:
        for start in range(0, len(photos), batch_size):
            chunk = photos[start:start + batch_size]
            sharp = np.asarray(trunk(np.stack([photo_to_rgb(photo, size) for photo in chunk]).astype(np.float32)))
            shrunk = trunk(np.stack([thumbnail_input(photo, rng, config, size) for photo in chunk]).astype(np.float32))
            targets.append(np.asarray(top(sharp)))
            full.append(sharp.astype(np.float16))
            small.append(np.asarray(shrunk).astype(np.float16))
            bar.update(len(chunk))
    return np.concatenate(full), np.concatenate(small), np.concatenate(targets)


def teach(top, full: np.ndarray, small: np.ndarray, targets: np.ndarray, config: DistilConfig,
          progress: str | None = None) -> list[float]:
    """Train ``top`` (in place) to give ``targets``' softmax from both kinds of features; returns
    the loss (cross-entropy to the targets) after each epoch. ``progress``: a bar's label on stderr."""
    import keras

    from apparel.inference.inputs import softmax
    from apparel.kinds.photo.data import progress_bar

    for layer in top.layers:  # the pretrained statistics: the photos here are not ImageNet's mix
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    top.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    inputs = np.concatenate([full, small]).astype(np.float32)
    wanted = softmax(np.concatenate([targets, targets])).astype(np.float32)
    weights = np.concatenate([np.full(len(full), config.full_weight), np.ones(len(small))]).astype(np.float32)
    with progress_bar(config.epochs, progress, "epoch") as bar:
        shown = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: (bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False), bar.update()))
        history = top.fit(inputs, wanted, sample_weight=weights, batch_size=config.batch_size, epochs=config.epochs,
                          shuffle=True, verbose=0, callbacks=[shown])
    return [round(float(loss), 4) for loss in history.history["loss"]]


def distil_imagenet_top(photos_dir: str | os.PathLike, datasets: str | os.PathLike, out: str | os.PathLike,
                        config: DistilConfig = DistilConfig(), size: int = 224, show_progress: bool = False) -> dict:
    """Write ``out/imagenet_top.weights.h5`` and ``out/distil.json`` (see the module docstring);
    returns the record. ``show_progress``: bars on stderr for its two long steps (tens of minutes
    on two cores)."""
    import keras

    from apparel import artifacts

    started = time.perf_counter()
    photos = distillation_photos(photos_dir, datasets)
    keras.utils.set_random_seed(config.seed)
    trunk, top = imagenet_parts(size)
    full, small, targets = features(trunk, top, photos, random.Random(config.seed), config, size,
                                    progress="features of the photos and their thumbnails" if show_progress else None)
    before = thumbnail_fit(top, small, targets)
    losses = teach(top, full, small, targets, config, progress="teaching the top blocks" if show_progress else None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with artifacts.atomic_path(out / WEIGHTS_FILE) as temporary:
        # Keras tells its weights format by the name's ending, which the temporary's lacks.
        staged = temporary.with_name(f"{temporary.name}.weights.h5")
        try:
            top.save_weights(staged)
            os.replace(staged, temporary)
        finally:
            staged.unlink(missing_ok=True)
    record = {"config": config.to_dict(), "photos": len(photos), "size": size, "loss": losses,
              # How near the thumbnails' answers are to the full photos', on these (training) photos.
              "thumbnails": {"before": before, "after": thumbnail_fit(top, small, targets)},
              "seconds": round(time.perf_counter() - started, 1)}
    artifacts.write_json(out / RECORD_FILE, record)
    return record


def thumbnail_fit(top, small: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """How near ``top``'s answers on thumbnails' features are to ``targets`` (its logits on the full
    photos): the share whose likeliest ImageNet class is the same, and the mean Kullback-Leibler
    divergence from them."""
    from scipy.special import log_softmax

    answers = np.asarray(top.predict(small.astype(np.float32), batch_size=256, verbose=0))
    wanted = log_softmax(targets.astype(np.float64), axis=1)
    divergence = (np.exp(wanted) * (wanted - log_softmax(answers.astype(np.float64), axis=1))).sum(axis=1)
    return {"same_class": round(float(np.mean(answers.argmax(axis=1) == targets.argmax(axis=1))), 4),
            "divergence": round(float(divergence.mean()), 5)}
