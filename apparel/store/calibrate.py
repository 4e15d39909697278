"""Choosing the store model's settings on validation photos, never on a test split.

    >>> from apparel.store.calibrate import calibrate
    >>> settings, figures = calibrate(head_logits, imagenet_logits, truths, sets, head_labels, class_names)

The validation photos (``build.validation_photos``) are clothing-dataset-small's ``validation/``,
clothing-dataset-extra's validation senders (``training_set.extra_split``), and Clothing
Co-Parsing's held-out photos: crops of what is worn, and street corners with nothing worn (not a
product). Two steps:

1. The garment head's temperature by temperature scaling (Guo et al., 2017): the one scalar that
   minimises the negative log-likelihood of the head's validation labels (thumbnails too).
2. The ImageNet side's temperature (at most 1: see ``IMAGENET_TEMPERATURES``), ``outside_sum``,
   the head's surest probability that still lets that sum count (``OUTSIDE_SUM_HEAD_MAXES``)
   and the two thresholds by a grid over the product photos (small, extra) and the street
   corners, each as given and as a 60×80 thumbnail (``THUMBNAIL_BOX``): among the settings whose
   wrong share stays within ``MAX_WRONG`` (0.08, what a merchant is promised) with 95 % confidence
   (``wrong_bound``: a few hundred photos measure a share to about a point), the one with the
   most right answers plus exact ones (an exact category counts twice: a true parent such as
   "Clothing Tops" is right, but the merchant still has to go deeper). The worn crops are
   reported beside it, garments and accessories apart, not chosen on: cut from street photos,
   small and partly hidden, they are a harder kind of photo than a store's.

Every figure of the chosen setting is kept in the model's ``categories.json``.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from apparel.inference.inputs import softmax
from apparel.store.model import Mixing, mix, read_classes
from apparel.taxonomy.decide import CategoryChooser
from apparel.taxonomy.judge import judge

# Never flatter than the ImageNet classifier's own (T ≤ 1): no validation photo here shows an
# accessory as a store shows it, and flattening, which the garment photos alone favoured (a grid
# reaching 1.5 chose 1.5), left almost no worn accessory crop with a right category: most were
# taken for the clothes around them (docs/store-model.md). Still so with the head's bag class:
# choosing on every validation set, worn and cut-out ones too, a grid reaching 1.5 chose 1.5
# (small's right 0.921 -> 0.956), and the accessories only ImageNet knows fell away (sunglasses
# right on 19 of 46 crops at T = 1, 6 at 1.2, 3 at 1.5).
IMAGENET_TEMPERATURES = (0.6, 0.8, 1.0)
OUTSIDE_SUMS = (0.7, 0.8, 0.9)
# 1: the sum counts whatever the head says (the rule before 2026-12-07). Lower: a photo the head is
# sure of is not "a little of many things" however blurred ImageNet finds it (docs/store-model.md).
OUTSIDE_SUM_HEAD_MAXES = (1.0, 0.8, 0.7, 0.6, 0.5)
CATEGORY_THRESHOLDS = (0.5, 0.6, 0.7, 0.8)
OUTSIDE_THRESHOLDS = (0.5, 0.6, 0.8)
MAX_WRONG = 0.08
# One-sided 95 %: the grid keeps a setting only if its wrong share is below MAX_WRONG by this many
# standard errors. Without it, the store model whose ImageNet side reads thumbnails (distil.py) took
# a threshold of 0.6 at 0.0795 wrong on the 780 photos chosen on, and 0.11 on every validation photo.
WRONG_CONFIDENCE_Z = 1.645
# A store's photos come at every size, down to 60×80-pixel thumbnails (some public product catalogues
# hold none larger), and the settings chosen on full-size photos alone wrote a wrong category for 0.081
# of the catalogue benchmark's photos as 60×80 thumbnails, 0.075 chosen on both (docs/store-model.md).
# So every validation photo is seen twice, as given and shrunk to fit this box (``as_thumbnail``).
THUMBNAIL_BOX = (60, 80)
FULL_SIZE_SETS = ("small", "extra", "street")


def as_thumbnail(set_name: str) -> str:
    """The name of a validation set's photos shrunk to fit ``THUMBNAIL_BOX``: "small 60x80"."""
    return f"{set_name} {THUMBNAIL_BOX[0]}x{THUMBNAIL_BOX[1]}"


CHOSEN_ON = (*FULL_SIZE_SETS, *map(as_thumbnail, FULL_SIZE_SETS))


@dataclass(frozen=True)
class Settings:
    mixing: Mixing  # the temperatures, outside_sum and outside_sum_head_max of the model's layers
    category_threshold: float  # write the deepest category at least this likely
    outside_threshold: float  # leave a product as not apparel when that is at least this likely

    def to_dict(self) -> dict:
        return {**asdict(self.mixing), "category_threshold": self.category_threshold,
                "outside_threshold": self.outside_threshold}


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T minimising the mean negative log-likelihood of softmax(logits / T)."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    def nll(log_t: float) -> float:
        log_p = log_softmax(logits / np.exp(log_t), axis=1)
        return float(-log_p[np.arange(len(labels)), labels].mean())

    return float(np.exp(minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded").x))


def store_chooser(class_names: Sequence[str], category_threshold: float, outside_threshold: float) -> CategoryChooser:
    """The chooser of a store model whose classes are ``class_names`` (categories from classes.csv)."""
    categories = read_classes()
    return CategoryChooser({name: categories[name][0] or None for name in class_names}, category_threshold,
                           outside_threshold)


def tally(chooser: CategoryChooser, probabilities: np.ndarray, truths: Sequence[str | None]) -> dict[str, float]:
    """Shares of exact / parent / blank-right / wrong / blank over the photos (see ``judge``)."""
    counts = Counter(judge(decision.category, truth) for decision, truth in zip(chooser.choose_all(probabilities), truths))
    total = max(1, sum(counts.values()))
    return {kind: round(counts[kind] / total, 4) for kind in ("exact", "parent", "blank-right", "wrong", "blank")} | {
        "photos": sum(counts.values())}


def wrong_bound(shares: dict) -> float:
    """The wrong share's upper 95 % bound (normal approximation) over ``shares``' photos."""
    wrong, photos = shares["wrong"], max(1, shares["photos"])
    return wrong + WRONG_CONFIDENCE_Z * (wrong * (1 - wrong) / photos) ** 0.5


def right(shares: dict) -> float:
    return shares["exact"] + shares["parent"] + shares["blank-right"]


RELIABILITY_BINS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def reliability(chooser: CategoryChooser, probabilities: np.ndarray, truths: Sequence[str | None]) -> list[dict]:
    """How far a written category's confidence can be trusted: for each band of confidence, the
    photos whose category was written in it, their mean confidence and the share that was right."""
    decisions = chooser.choose_all(probabilities)
    bands = []
    for low, high in zip(RELIABILITY_BINS[:-1], RELIABILITY_BINS[1:]):
        inside = [(decision.confidence, judge(decision.category, truth)) for decision, truth in zip(decisions, truths)
                  if decision.category is not None and low <= decision.confidence < high + (high == 1.0)]
        if inside:
            bands.append({"confidence": f"{low:.1f}-{high:.1f}", "photos": len(inside),
                          "mean_confidence": round(float(np.mean([c for c, _ in inside])), 4),
                          "right": round(sum(kind in ("exact", "parent") for _, kind in inside) / len(inside), 4)})
    return bands


def head_calibration(head_logits: np.ndarray, labels: np.ndarray, temperature: float) -> dict:
    """The garment head's negative log-likelihood and expected calibration error (10 bands of its
    top probability) on its validation labels, before and after its temperature."""
    figures = {}
    for name, value in (("before", 1.0), ("after", temperature)):
        probabilities = softmax(head_logits / value)
        top, hit = probabilities.max(axis=1), probabilities.argmax(axis=1) == labels
        bands = np.minimum((top * 10).astype(int), 9)
        error = sum((bands == band).mean() * abs(top[bands == band].mean() - hit[bands == band].mean())
                    for band in range(10) if (bands == band).any())
        figures[name] = {"temperature": value, "nll": round(float(-np.log(probabilities[np.arange(len(labels)), labels]
                                                                          + 1e-12).mean()), 4),
                         "ece": round(float(error), 4)}
    return figures


def calibrate(head_logits: np.ndarray, imagenet_logits: np.ndarray, truths: Sequence[str | None],
              sets: Sequence[str], head_labels: np.ndarray, class_names: Sequence[str]) -> tuple[Settings, dict]:
    """The settings (see the module docstring) and the validation figures of the chosen one.

    ``truths`` is each photo's category id (None: not a product); ``sets`` names its validation
    set (``as_thumbnail`` of it for a thumbnail); ``head_labels`` is its garment class index, -1
    where the head has no such class."""
    sets, truths = np.asarray(sets), np.asarray(truths, dtype=object)
    labelled = head_labels >= 0
    head_temperature = round(fit_temperature(head_logits[labelled], head_labels[labelled]), 3)
    chosen_on = np.isin(sets, CHOSEN_ON)
    # A thumbnail is its photo again, not another measurement: the bound counts each photo once.
    full_size = np.isin(sets, FULL_SIZE_SETS)
    measured = max(int((chosen_on & full_size).sum()), int((chosen_on & ~full_size).sum()))
    best = None
    for imagenet_temperature, outside_sum, head_max in itertools.product(IMAGENET_TEMPERATURES, OUTSIDE_SUMS,
                                                                         OUTSIDE_SUM_HEAD_MAXES):
        mixing = Mixing(head_temperature, imagenet_temperature, outside_sum, head_max)
        probabilities = mix(head_logits[chosen_on], imagenet_logits[chosen_on], mixing)
        for category_threshold, outside_threshold in itertools.product(CATEGORY_THRESHOLDS, OUTSIDE_THRESHOLDS):
            chooser = store_chooser(class_names, category_threshold, outside_threshold)
            shares = tally(chooser, probabilities, truths[chosen_on])
            rank = (wrong_bound({**shares, "photos": measured}) <= MAX_WRONG, right(shares) + shares["exact"])
            # A tie keeps the earlier setting: for one temperature and sum, no gate (1) before any gate.
            if best is None or rank > best[0]:
                best = (rank, Settings(mixing, category_threshold, outside_threshold))
    settings = best[1]
    probabilities = mix(head_logits, imagenet_logits, settings.mixing)
    chooser = store_chooser(class_names, settings.category_threshold, settings.outside_threshold)
    figures = {name: tally(chooser, probabilities[sets == name], truths[sets == name]) for name in sorted(set(sets))}
    figures["chosen on"] = tally(chooser, probabilities[chosen_on], truths[chosen_on])
    products = np.isin(sets, ("small", "extra"))
    figures["reliability (small and extra)"] = reliability(chooser, probabilities[products], truths[products])
    figures["garment head"] = head_calibration(head_logits[labelled], head_labels[labelled], head_temperature)
    return settings, figures
