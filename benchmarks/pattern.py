"""Can the photo tell a product's pattern? "Solid" against every other pattern, measured.

    python benchmarks/pattern.py --datasets ../shared/datasets --out runs/pattern-bench

Shopify's ``pattern`` attribute (Solid, Striped, Checkered, Floral, Dots, Texture…) is not written by
``apparel``. This measures what would be needed to write its commonest value, Solid, on the photos
whose colour was labelled by eye, which carry a ``pattern`` label too (benchmarks/data/
colour_labels.csv: 320 amateur product photos; worn_colour_labels.csv: 194 garments worn on white;
the rule in colour_labels.md). Two ways of telling it, each a logistic regression (scikit-learn)
learnt on the tuning parts of both sets and measured on their held-out parts:

- ``photo step``: what every runtime already has for a photo: the store model's probabilities (their
  logarithms) and the texture of the product's pixels as the colour step finds them (how much the
  lightness and the colour vary around a blurred copy, at 56 and 112 pixels a side, and the colour
  names' shares);
- ``network``: the store model's own pooled features (the garment head's 1,280 and the ImageNet
  classifier's 1,000 logits), read from its Keras layers: what a second output of the model would
  give. The shipped artefacts answer the store classes only.

The threshold would be chosen on the tuning parts alone (five-fold cross-validated probabilities) as
the lowest at which Solid is right on at least ``--precision`` of the photos it is given (none: no
threshold reaches it); printed for several thresholds, on the tuning parts (cross-validated) and on
the held-out parts: how many are given Solid, and how many of those are solid.

Writes summary.json and per_photo.csv under --out.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # the colour labels and their split: one rule for both

from colour import LABELS, WORN_LABELS, model_input, split_of  # noqa: E402

SOLID = "solid"
STRENGTHS = (0.003, 0.01, 0.03, 0.1, 1.0)  # the regression's C, chosen by cross-validation on the tuning parts
THRESHOLDS = (0.6, 0.7, 0.8, 0.9, 0.95)  # printed beside the chosen one
BLUR_SIGMA = 1.5  # pixels at 56 a side: a fold's shading is broader than this, a stripe or a print finer


def labelled_photos(datasets: Path) -> list[dict]:
    """Every photo with a pattern label: the amateur ones by path, the worn ones as their crop, each
    with its set, its split (a hash of its path, or of its photo number and garment) and model input."""
    from apparel.store.training_set import CO_PARSING
    from apparel.store.worn import WORN_ON_WHITE, worn_crops

    rows = []
    with open(LABELS, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            rows.append({"set": "amateur", "photo": row["path"], "pattern": row["pattern"],
                         "split": split_of(row["path"]), "input": model_input(datasets / row["path"])})
    with open(WORN_LABELS, newline="", encoding="utf-8") as handle:
        worn = {(row["photo"], row["garment"]): row["pattern"] for row in csv.DictReader(handle)}
    for crop in worn_crops(datasets / CO_PARSING, held_out=True, worn_on_white=True):
        key = (crop.photo, crop.label)
        if crop.backdrop == WORN_ON_WHITE and key in worn:
            rows.append({"set": "worn on white", "photo": f"{crop.photo} {crop.label}", "pattern": worn.pop(key),
                         "split": split_of(f"{crop.photo} {crop.label}"), "input": model_input(crop.image)})
    if worn:
        raise ValueError(f"{len(worn)} labelled garments of {WORN_LABELS} were not found under {datasets}")
    return rows


def texture(photo: np.ndarray) -> list[float]:
    """The product's texture as the colour step sees it: per side (56, 112), the weighted mean of how
    far each product pixel's lightness and colour lie from a blurred copy, its lightness gradient,
    its spread around the product's mean colour and the share beyond 25 CIELAB units of it; then the
    colour names' largest two shares and their entropy."""
    from scipy import ndimage

    from apparel.attributes.colour import product_colour
    from apparel.attributes.colour_space import srgb_to_lab
    from apparel.attributes.config import ColourConfig
    from apparel.attributes.product_pixels import padding_mask, product_weights, small_rgb

    values = []
    for side in (56, 112):
        rgb = small_rgb(photo, side)
        lab = srgb_to_lab(rgb)
        weights = product_weights(lab, padding_mask(rgb), ColourConfig())
        weights = weights / max(weights.sum(), 1e-9)
        blurred = np.stack([ndimage.gaussian_filter(lab[..., c], BLUR_SIGMA * side / 56) for c in range(3)], -1)
        fine = np.abs(lab - blurred)
        rows, columns = np.gradient(lab[..., 0])
        mean = (weights[..., None] * lab).sum(axis=(0, 1))
        distance = np.sqrt(((lab - mean) ** 2).sum(-1))
        values += [(weights * fine[..., 0]).sum(), (weights * np.hypot(fine[..., 1], fine[..., 2])).sum(),
                   (weights * np.hypot(rows, columns)).sum(), (weights * distance).sum(),
                   (weights * (distance > 25)).sum()]
    shares = sorted(product_colour(photo).shares.values(), reverse=True) + [0.0, 0.0]
    entropy = -sum(share * np.log(share) for share in shares if share > 0)
    return values + [shares[0], shares[1], entropy]


def photo_step_features(inputs: np.ndarray, model_dir: str | None) -> np.ndarray:
    """The store model's log-probabilities (its artefact's, as every runtime answers) beside ``texture``."""
    from apparel.inference.runtime import load_predictor
    from apparel.kinds.registry import PHOTO_KIND

    predictor = load_predictor(model_dir, kind=PHOTO_KIND)
    logs = np.log(np.maximum(predictor.predict_proba(inputs), 1e-6))
    return np.hstack([logs, np.array([texture(photo) for photo in inputs])])


def network_features(inputs: np.ndarray, model_dir: str | None, batch: int = 32) -> np.ndarray:
    """The garment head's pooled features and the ImageNet logits, from the store model's Keras
    layers (``apparel.store.model.branches`` names them)."""
    from apparel.inference.prediction import load_model, resolve_model_dir
    from apparel.kinds.registry import PHOTO_KIND

    model = load_model(resolve_model_dir(model_dir, PHOTO_KIND))
    trunk, garment, imagenet = (model.get_layer(name) for name in ("garment_trunk", "garment_top", "imagenet_top"))
    parts = []
    for start in range(0, len(inputs), batch):
        shared = trunk(inputs[start:start + batch].astype(np.float32))
        parts.append(np.hstack([np.asarray(garment(shared)), np.asarray(imagenet(shared))]))
    return np.concatenate(parts)


def solid_model(features: np.ndarray, solid: np.ndarray, precision: float, seed: int = 0) -> dict:
    """The regression (its strength chosen by five-fold cross-validated log loss) and the threshold
    chosen on its cross-validated probabilities, all on the tuning photos given."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    best = None
    for strength in STRENGTHS:
        pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=strength, max_iter=5000))
        probabilities = cross_val_predict(pipeline, features, solid, cv=folds, method="predict_proba")[:, 1]
        loss = -np.mean(np.log(np.where(solid, probabilities, 1 - probabilities).clip(1e-9)))
        if best is None or loss < best[0]:
            best = (loss, strength, probabilities)
    _, strength, probabilities = best
    threshold = None
    for candidate in np.round(np.arange(0.5, 1.0, 0.01), 2):
        given = probabilities >= candidate
        if given.sum() >= 10 and solid[given].mean() >= precision:
            threshold = float(candidate)
            break
    fitted = make_pipeline(StandardScaler(), LogisticRegression(C=strength, max_iter=5000)).fit(features, solid)
    return {"strength": strength, "threshold": threshold, "model": fitted, "cross_validated": probabilities}


def given_solid(probabilities: np.ndarray, solid: np.ndarray, threshold: float | None) -> dict:
    """Photos, those given Solid at ``threshold``, and the share of those that are solid."""
    given = probabilities >= threshold if threshold is not None else np.zeros(len(solid), bool)
    return {"photos": int(len(solid)), "solid": int(solid.sum()), "given": int(given.sum()),
            "right": int(solid[given].sum()),
            "precision": round(float(solid[given].mean()), 3) if given.any() else None,
            "coverage_of_solid": round(float(given[solid].mean()), 3) if solid.any() else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--model-dir", help="store model run directory (default: the shipped store model)")
    parser.add_argument("--precision", type=float, default=0.95, help="Solid's precision the threshold must reach")
    parser.add_argument("--out", type=Path, default=Path("runs/pattern-bench"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    rows = labelled_photos(args.datasets)
    inputs = np.stack([row.pop("input") for row in rows])
    solid = np.array([row["pattern"] == SOLID for row in rows])
    tuning = np.array([row["split"] == "tuning" for row in rows])
    sets = np.array([row["set"] for row in rows])
    summary = {"photos": len(rows), "labels": {name: int(sum(row["pattern"] == name for row in rows))
                                               for name in sorted({row["pattern"] for row in rows})},
               "precision_asked": args.precision}
    for name, features in (("photo step", photo_step_features(inputs, args.model_dir)),
                           ("network", network_features(inputs, args.model_dir))):
        chosen = solid_model(features[tuning], solid[tuning], args.precision)
        probabilities = chosen["model"].predict_proba(features)[:, 1]
        part = {"strength": chosen["strength"], "threshold": chosen["threshold"], "by_threshold": {}}
        for threshold in THRESHOLDS:
            part["by_threshold"][threshold] = {
                "tuning (cross-validated)": given_solid(chosen["cross_validated"], solid[tuning], threshold),
                **{label: given_solid(probabilities[members], solid[members], threshold) for label, members in (
                    ("held out amateur", ~tuning & (sets == "amateur")),
                    ("held out worn on white", ~tuning & (sets == "worn on white")))}}
            wrong = ~tuning & ~solid & (probabilities >= threshold)
            part["by_threshold"][threshold]["held out given Solid wrongly"] = sorted(
                rows[i]["pattern"] for i in np.flatnonzero(wrong))
        summary[name] = part
        for row, probability in zip(rows, probabilities):
            row[f"solid_{name.replace(' ', '_')}"] = round(float(probability), 3)
        print(f"{name}: C {part['strength']}, threshold for {args.precision}: {part['threshold']}")
        for threshold, figures in part["by_threshold"].items():
            print(f"  {threshold}: " + "; ".join(f"{label} {value['right']}/{value['given']} of {value['solid']} solid"
                                            for label, value in figures.items() if isinstance(value, dict)))
    with open(args.out / "per_photo.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
