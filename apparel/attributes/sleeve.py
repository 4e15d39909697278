"""The product's sleeve length, as a value of Shopify's ``sleeve_length_type`` attribute, from the
store model's class probabilities: several of its classes are kinds of top that have one sleeve
length (a T-shirt's sleeves are short, a longsleeve's long, an undershirt has none).

    >>> from apparel.attributes.sleeve import sleeve_length
    >>> found = sleeve_length([0.55, 0.30, 0.15], ("t-shirt", "polo", "shirt"), {"t-shirt": "Short", "polo": "Short"})
    >>> found.value.name, round(found.confidence, 2)
    ('Short', 0.85)

A sleeve length is the one whose classes' probabilities add up to at least ``THRESHOLD``: a photo the
model finds a T-shirt or a polo (both short) has short sleeves even when it cannot tell which of the
two. Nothing is written when no length is that sure, or for a shirt, a blouse, a top or a dress,
whose classes hold both lengths. Which classes tell which length is part of a model's category
record (``categories.json``'s ``sleeve_length_type``, read into ``CategoryChooser.sleeve_classes``):
the store model's, written by ``apparel.store.build`` from ``STORE_SLEEVE_CLASSES``, where it was
measured. Another model tells none, whatever its classes are called: the ``photos`` model's
``t-shirt`` also holds the tank tops it has no class for. ``docs/colour.md`` ("Sleeve length") says
how well, measured on benchmarks/data/sleeve_labels.csv.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from apparel.errors import ParameterError
from apparel.taxonomy import AttributeValue, Category, attribute, load_taxonomy

ATTRIBUTE = "sleeve_length_type"
# The store model's classes that tell a sleeve length, by the data sets' own labels: clothing-dataset's
# T-shirts and longsleeves are told apart by their sleeves, its undershirts are sleeveless, its polos
# short- and its hoodies long-sleeved, as 88 of 88, 55 of 55, 41 of 43, 37 of 40 and 24 of 25 of
# their validation photos are (benchmarks/data/sleeve_labels.csv). Not ``top``: the store head learnt
# camisoles and Co-Parsing's tops of every sleeve as one class, and tank tops have a class of their
# own, so ``t-shirt`` is not where they go.
STORE_SLEEVE_CLASSES = {"t-shirt": "Short", "polo": "Short", "longsleeve": "Long", "hoodie": "Long",
                        "undershirt": "Sleeveless"}
# Chosen on the tuning part of the labels (benchmarks/sleeve.py): the most photos with a length
# while at most one in a hundred is wrong (0.7 until the store model was calibrated on thumbnails too,
# when 0.6 went from 2 wrong of 128 to 1 of 127).
THRESHOLD = 0.6
# Raised whenever a product's sleeve length would come out otherwise (the classes, the threshold): a
# batch folder records it, so that a resume never mixes rows of two rules.
SLEEVE_RULE = 2


@dataclass(frozen=True)
class SleeveLength:
    """A product's sleeve length and how sure: its classes' summed probability."""

    value: AttributeValue
    confidence: float

    def to_dict(self) -> dict:
        """The JSON form ``predict --json`` and serve give."""
        return {**self.value.to_dict(), "confidence": round(float(self.confidence), 3)}


def check_sleeve_classes(sleeve_classes: Mapping[str, str]) -> dict[str, str]:
    """``sleeve_classes`` (class → a value of ``sleeve_length_type``, by its name) with each value
    spelt as Shopify spells it; a ``ParameterError`` for one that is no value of the attribute."""
    lengths = attribute(ATTRIBUTE)
    try:
        return {str(name): lengths.value(str(value)).name for name, value in dict(sleeve_classes).items()}
    except (TypeError, ValueError, AttributeError) as error:
        raise ParameterError(f"{{}} must map class names to values of {ATTRIBUTE}: {error}", "sleeve_classes") from None


def sleeve_length(probabilities: Sequence[float] | np.ndarray, class_names: Sequence[str],
                  sleeve_classes: Mapping[str, str], threshold: float = THRESHOLD) -> SleeveLength | None:
    """The sleeve length ``probabilities`` (one per class of ``class_names``) make sure enough, or
    None (see the module docstring). ``sleeve_classes`` maps the classes that tell one to its name;
    a value that is no probability (NaN) counts as none."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.shape != (len(class_names),):
        raise ParameterError(f"{{}} must be one per class ({len(class_names)}), got shape {probabilities.shape}",
                             "probabilities")
    sums: dict[str, float] = {}
    for name, probability in zip(class_names, np.nan_to_num(probabilities, nan=0.0, posinf=0.0, neginf=0.0)):
        if name in sleeve_classes:
            sums[sleeve_classes[name]] = sums.get(sleeve_classes[name], 0.0) + float(probability)
    if not sums:
        return None
    name, confidence = max(sums.items(), key=lambda item: item[1])
    return SleeveLength(attribute(ATTRIBUTE).value(name), confidence) if confidence >= threshold else None


def has_sleeve_length(category: Category | str | None) -> bool:
    """Whether Shopify's node for ``category`` (a ``Category``, or its id, GID or path) takes a sleeve
    length: T-Shirts, Polos, Tank Tops, Blouses, Clothing Tops, Dresses, Coats & Jackets do; Shirts,
    Hoodies, Sweaters, Pants and Shoes do not."""
    if category is None:
        return False
    if not isinstance(category, Category):
        category = load_taxonomy().get(category)
    return ATTRIBUTE in category.attributes


def product_sleeve(probabilities, chooser, category: Category | str | None,
                   threshold: float = THRESHOLD) -> SleeveLength | None:
    """The sleeve length to give a product of class ``probabilities`` whose chosen category is
    ``category``, by ``chooser``'s model (a ``CategoryChooser``: its classes and sleeve classes):
    only where that node takes one (a hoodie's Shopify category has none, however sure its sleeves
    are), so a product left without a category gets none either."""
    if chooser is None or not chooser.sleeve_classes or not has_sleeve_length(category):
        return None
    return sleeve_length(probabilities, chooser.class_names, chooser.sleeve_classes, threshold)


def sleeve_attributes(probabilities: np.ndarray, chooser, categories: Sequence[dict | None]) -> list[dict]:
    """For each row of class ``probabilities`` and its category (``CategoryDecision.to_dict``, or
    None), the field to add to its answer by ``chooser``'s model: ``{"sleeve_length_type": …}`` or ``{}``."""
    fields = []
    for row, category in zip(np.asarray(probabilities), categories, strict=True):
        found = product_sleeve(row, chooser, category.get("id") if category else None)
        fields.append({ATTRIBUTE: found.to_dict()} if found is not None else {})
    return fields
