"""The store model as one Keras model: a fine-tuned garment run and the backbone's own ImageNet
classifier on one shared trunk, their probabilities mixed into one distribution over the store's
classes.

    >>> from apparel.store.model import Mixing, build_store_model
    >>> model, class_names = build_store_model(garment_model, head_classes, Mixing(0.9, 1.5, 0.8))

How the two are mixed (``classes.csv`` names every class and its Shopify category,
``imagenet_classes.csv`` which ImageNet classes stand for which store class):

- **accessories**: the ImageNet classifier's probabilities summed per store class (watch,
  sunglasses, wallet, backpack, sneakers…): what no garment photo here shows;
- **not apparel**: ImageNet's other classes (animals, food, vehicles, electronics, cosmetics,
  furniture, scenes…) except those marked ``garment`` (clothing and cloth: jersey, velvet, apron…).
  Garment photos spread a little probability over many such classes (a hat is a bit of a bucket,
  a lampshade, a thimble…), so it is not their sum that counts but the likeliest one (a perfume
  bottle is surely "perfume"), or the sum once it passes ``outside_sum`` (a street corner is a
  little of many street things and of nothing worn) while the garment head is no surer of its
  own likeliest class than ``outside_sum_head_max``: a blurred thumbnail or a small worn crop is
  also a little of many things to ImageNet, and the head, which learned from such photos, still
  knows the T-shirt;
- **garments**: what is left, shared out by the garment head's probabilities.

So a product is a watch as far as ImageNet is sure it is one, and a T-shirt as far as ImageNet
sees nothing else and the head a T-shirt. Each side's logits are divided by a temperature before
its softmax; the temperatures, ``outside_sum`` and ``outside_sum_head_max`` are chosen on validation
photos (``calibrate.py``).

Both networks keep EfficientNet-Lite0's first twelve blocks as pretrained (the garment run
fine-tunes only the top blocks, ``--fine-tune-blocks 4``), so those run once for both; only the
top blocks and the 1×1 head convolution run twice (about 30 % more arithmetic than one network).
The output is the logarithm of the mixed probabilities: logits like any other model's, so
prediction, serving, export and evaluation need nothing new. ``mix`` computes the same in NumPy.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from apparel.inference.inputs import softmax

HERE = Path(__file__).resolve().parent
CLASSES_FILE = HERE / "classes.csv"
IMAGENET_FILE = HERE / "imagenet_classes.csv"
GARMENT = "garment"
NOT_APPAREL = "not-apparel"
# The last layer the garment run shares with the pretrained backbone: block 11 (blocks 12-15 are
# fine-tuned with --fine-tune-blocks 4).
TRUNK_END = "blocks_11_bn2"


# Read once: the calibration grid asks for them hundreds of times.
@functools.cache
def read_classes(path: str | Path = CLASSES_FILE) -> dict[str, tuple[str, str]]:
    """Store class → (its category id, empty for ``not-apparel``; ``garment head`` or ``imagenet``)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["class"]: (row["category"], row["source"]) for row in csv.DictReader(handle)}


def imagenet_store_classes() -> list[str]:
    """The classes the ImageNet classifier stands for, in output order (``not-apparel`` not
    among them: it is always last)."""
    return [name for name, (_, source) in read_classes().items() if source == "imagenet" and name != NOT_APPAREL]


@functools.cache
def imagenet_classes(path: str | Path = IMAGENET_FILE) -> dict[int, str]:
    """ImageNet class index → store class or ``garment``; indices not listed are ``not-apparel``."""
    with open(path, newline="", encoding="utf-8") as handle:
        return {int(row["imagenet_index"]): row["store_class"] for row in csv.DictReader(handle)}


def store_class_names(head_classes: tuple[str, ...]) -> tuple[str, ...]:
    """The store model's classes in output order: the head's, the ImageNet side's, ``not-apparel``."""
    return (*head_classes, *imagenet_store_classes(), NOT_APPAREL)


def imagenet_columns(store_classes: list[str], mapping: dict[int, str] | None = None) -> np.ndarray:
    """(1000, len(store_classes) + 2) 0/1 matrix: which ImageNet class adds to which store
    class; the last two columns are ``garment`` and ``not-apparel``."""
    mapping = imagenet_classes() if mapping is None else mapping
    columns = {name: index for index, name in enumerate([*store_classes, GARMENT, NOT_APPAREL])}
    unknown = sorted(set(mapping.values()) - set(columns))
    if unknown:
        raise ValueError(f"imagenet_classes: {', '.join(unknown)} are not store classes; add them to classes.csv")
    matrix = np.zeros((1000, len(columns)), dtype=np.float32)
    for index in range(1000):
        matrix[index, columns[mapping.get(index, NOT_APPAREL)]] = 1.0
    return matrix


def split_backbone(backbone, name: str):
    """(trunk, top) of an EfficientNet-Lite backbone at ``TRUNK_END``: two Keras models that
    share the backbone's layers and weights."""
    import keras

    middle = backbone.get_layer(TRUNK_END).output
    return keras.Model(backbone.input, middle, name=f"{name}_trunk"), keras.Model(middle, backbone.output, name=f"{name}_top")


def _constant_dense(kernel: np.ndarray, name: str, bias: np.ndarray | None = None):
    """A frozen Dense layer computing ``x @ kernel (+ bias)``: sums and selections as a layer."""
    import keras

    layer = keras.layers.Dense(kernel.shape[1], use_bias=bias is not None, trainable=False, name=name)
    layer.build((None, kernel.shape[0]))
    layer.set_weights([kernel.astype(np.float32)] + ([bias.astype(np.float32)] if bias is not None else []))
    return layer


def imagenet_parts(size: int):
    """(trunk, top) of EfficientNet-Lite0 with its pretrained ImageNet classifier, for ``size``-pixel
    photos, split where the store model's two branches part."""
    from apparel.backbones.efficientnet_lite import efficientnet_lite0

    imagenet = efficientnet_lite0((size, size, 3), include_top=True, weights="imagenet", name="imagenet")
    return split_backbone(imagenet, "imagenet")


def branches(garment_model, imagenet_top_weights: str | Path | None = None):
    """A Keras model from a photo to (the garment head's logits, the ImageNet classifier's
    logits), the two sharing blocks 0-11. ``garment_model`` is a photo run's Keras model (a
    ``backbone`` then ``head_dropout`` and ``classifier``); ``imagenet_top_weights``, the
    classifier's top blocks taught to read thumbnails (``distil.py``), else as pretrained."""
    import keras

    size = garment_model.input_shape[1]
    trunk, garment_top = split_backbone(garment_model.get_layer("backbone"), "garment")
    imagenet_trunk, imagenet_top = imagenet_parts(size)
    if imagenet_top_weights is not None:
        if not Path(imagenet_top_weights).is_file():
            raise ValueError(f"imagenet_top: {imagenet_top_weights} is no file; make it with "
                             "`python -m apparel.store distil`")
        imagenet_top.load_weights(imagenet_top_weights)
    for mine, theirs in zip(trunk.weights, imagenet_trunk.weights):
        if not np.allclose(np.asarray(mine), np.asarray(theirs)):
            raise ValueError(f"the garment run changed the pretrained layer {mine.path}; train it with "
                             "--fine-tune-blocks 4 or fewer so that both networks share blocks 0-11")
    inputs = keras.Input((size, size, 3), name="image")
    shared = trunk(inputs)
    head_logits = garment_model.get_layer("classifier")(garment_top(shared))
    return keras.Model(inputs, [head_logits, imagenet_top(shared)], name="store_branches")


@dataclass(frozen=True)
class Mixing:
    head_temperature: float  # divides the garment head's logits (temperature scaling)
    imagenet_temperature: float  # divides the ImageNet classifier's logits
    outside_sum: float  # the not-apparel classes' sum counts once it passes this (else their likeliest)
    # ... and only while the head's top probability is at most this (1: whatever the head says).
    outside_sum_head_max: float = 1.0

    def check(self) -> None:
        for name in ("head_temperature", "imagenet_temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("outside_sum", "outside_sum_head_max"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")


def mix(head_logits: np.ndarray, imagenet_logits: np.ndarray, mixing: Mixing) -> np.ndarray:
    """What ``build_store_model``'s layers compute, in NumPy, for choosing the settings: (N, store
    classes) probabilities from the two branches' logits."""
    columns = imagenet_columns(imagenet_store_classes())
    seen = softmax(imagenet_logits / mixing.imagenet_temperature)
    head = softmax(head_logits / mixing.head_temperature)
    accessories = seen @ columns[:, :-2]
    outside_classes = seen[:, columns[:, -1] == 1]
    total = outside_classes.sum(axis=1, keepdims=True)
    counts = (total >= mixing.outside_sum) & (head.max(axis=1, keepdims=True) <= mixing.outside_sum_head_max)
    outside = np.maximum(outside_classes.max(axis=1, keepdims=True), np.where(counts, total, 0.0))
    garments = np.maximum(1.0 - accessories.sum(axis=1, keepdims=True) - outside, 0.0)
    return np.concatenate([head * garments, accessories, outside], axis=1)


def build_store_model(garment_model, head_classes: tuple[str, ...], mixing: Mixing,
                      imagenet_top_weights: str | Path | None = None):
    """The mixed model (see the module docstring) and its class names (the head's classes, then
    ``classes.csv``'s ImageNet classes, ``not-apparel`` last); ``imagenet_top_weights`` as for
    ``branches``."""
    import keras
    from keras import layers

    from apparel.backbones.layers import AtMost, Logarithm

    mixing.check()
    unknown = [name for name in head_classes if name not in read_classes()]
    if unknown:
        raise ValueError(f"classes.csv has no category for the garment run's {', '.join(unknown)}; add a row each")
    columns = imagenet_columns(imagenet_store_classes())
    outside_columns = np.flatnonzero(columns[:, -1] == 1)
    two = branches(garment_model, imagenet_top_weights)
    head_logits, imagenet_logits = two.outputs
    head = layers.Softmax(name="head_probabilities")(
        layers.Rescaling(1.0 / mixing.head_temperature, name="head_temperature")(head_logits))
    seen = layers.Softmax(name="imagenet_probabilities")(
        layers.Rescaling(1.0 / mixing.imagenet_temperature, name="imagenet_temperature")(imagenet_logits))
    accessories = _constant_dense(columns[:, :-2], "accessories")(seen)
    # The not-apparel classes picked out (a 0/1 selection), for their likeliest one and their sum.
    picked = _constant_dense(np.eye(1000, dtype=np.float32)[:, outside_columns], "not_apparel_classes")(seen)
    likeliest = layers.GlobalMaxPooling1D(name="not_apparel_likeliest")(
        layers.Reshape((len(outside_columns), 1), name="not_apparel_column")(picked))
    total = _constant_dense(columns[:, -1:], "not_apparel_sum")(seen)
    # ReLU with a threshold passes the sum only once it reaches outside_sum (0 below it).
    passed = layers.ReLU(threshold=mixing.outside_sum, name="not_apparel_sum_passed")(total)
    if mixing.outside_sum_head_max < 1:  # at 1 the head never stops it: the layers of the models before it
        unsure = AtMost(mixing.outside_sum_head_max, name="head_unsure")(head)
        passed = layers.Multiply(name="not_apparel_sum_head_unsure")([passed, unsure])
    outside = layers.Maximum(name="not_apparel")([likeliest, passed])
    # 1 - accessories - not apparel, floored at 0 against rounding: what the garment head shares out.
    evidence = layers.Concatenate(name="imagenet_evidence")([accessories, outside])
    garments = layers.ReLU(name="garment_share")(
        _constant_dense(-np.ones((evidence.shape[-1], 1)), "garment_rest", bias=np.ones(1))(evidence))
    garment_each = _constant_dense(np.ones((1, len(head_classes))), "garment_share_each")(garments)
    mixed = layers.Concatenate(name="store_probabilities")(
        [layers.Multiply(name="garments")([head, garment_each]), accessories, outside])
    model = keras.Model(two.inputs, Logarithm(name="store_logits")(mixed), name="store")
    return model, store_class_names(head_classes)
