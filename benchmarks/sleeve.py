"""How well the store model's classes tell a top's sleeve length (`apparel.attributes.sleeve`).

    python benchmarks/sleeve.py --datasets ../shared/datasets --out runs/sleeve-bench

On the 304 validation photos of tops labelled by eye (benchmarks/data/sleeve_labels.csv, rule in
sleeve_labels.md): each photo goes through the model (the shipped store model unless --model-dir)
and the catalog's rule, a category chosen from its probabilities and a sleeve length where that
category's node takes one and the classes tell it. Printed for the tuning part (where the threshold
was chosen) and the held-out part apart (a third, by a hash of the path, as benchmarks/colour.py
splits its labels): of the photos with a label, how many got a length ("written") and how many of
those were the labelled one; per labelled length, and for thresholds other than the shipped one.

Writes summary.json and per_photo.csv under --out.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # the colour labels' split: one rule for both

from colour import split_of  # noqa: E402

LABELS = ROOT / "benchmarks" / "data" / "sleeve_labels.csv"
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def figures(rows: list[dict], found_key: str) -> dict:
    """Photos with a label, those given a length, and the share of those that is right."""
    labelled = [row for row in rows if row["sleeve"]]
    written = [row for row in labelled if row[found_key]]
    right = sum(row[found_key] == row["sleeve"] for row in written)
    return {"labelled": len(labelled), "written": len(written), "right": right,
            "precision": round(right / len(written), 3) if written else None,
            "coverage": round(len(written) / len(labelled), 3) if labelled else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="../shared/datasets", help="folder holding clothing-dataset-small/-extra")
    parser.add_argument("--model-dir", help="store model run directory (default: the shipped store model)")
    parser.add_argument("--runtime", choices=("litert", "keras"), default="litert")
    parser.add_argument("--out", default="runs/sleeve-bench")
    args = parser.parse_args(argv)

    from apparel.attributes.sleeve import THRESHOLD, product_sleeve
    from apparel.inference.runtime import load_predictor
    from apparel.kinds.registry import PHOTO_KIND
    from apparel.shop.categories import run_chooser

    datasets, out = Path(args.datasets), Path(args.out)
    with open(LABELS, newline="", encoding="utf-8") as handle:
        rows = [{**row, "split": split_of(row["path"])} for row in csv.DictReader(handle)]
    predictor = load_predictor(args.model_dir, kind=PHOTO_KIND, runtime=args.runtime)
    chooser = run_chooser(predictor.model_dir, predictor.class_names)
    inputs = np.stack([predictor.contract.decode(datasets / row["path"]) for row in rows])
    probabilities = predictor.predict_proba(inputs)
    for row, values, decision in zip(rows, probabilities, chooser.choose_all(probabilities)):
        row["category"] = decision.category.path if decision.category is not None else ""
        row["label"] = predictor.class_names[int(np.argmax(values))]
        for threshold in THRESHOLDS:
            found = product_sleeve(values, chooser, decision.category, threshold)
            row[f"found_{threshold}"] = found.value.name if found is not None else ""
        found = product_sleeve(values, chooser, decision.category)
        row["found"] = found.value.name if found is not None else ""
        row["confidence"] = round(found.confidence, 3) if found is not None else ""

    summary = {"model": str(predictor.model_dir), "runtime": args.runtime, "threshold": THRESHOLD, "photos": len(rows)}
    for split in ("tuning", "heldout"):
        part = [row for row in rows if row["split"] == split]
        summary[split] = figures(part, "found")
        summary[split]["per_length"] = {length: figures([row for row in part if row["sleeve"] == length], "found")
                                        for length in sorted({row["sleeve"] for row in part if row["sleeve"]})}
        summary[split]["per_class"] = {name: figures([row for row in part if row["class"] == name], "found")
                                       for name in sorted({row["class"] for row in part})}
        summary[split]["mistakes"] = dict(Counter(f"{row['sleeve']} → {row['found']}" for row in part
                                                  if row["sleeve"] and row["found"] and row["found"] != row["sleeve"]))
        summary[split]["thresholds"] = {str(threshold): figures(part, f"found_{threshold}") for threshold in THRESHOLDS}
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    with open(out / "per_photo.csv", "w", newline="", encoding="utf-8") as handle:
        fields = ["path", "class", "sleeve", "split", "label", "category", "found", "confidence"]
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    for split in ("tuning", "heldout"):
        figure = summary[split]
        print(f"{split}: {figure['labelled']} labelled, a length given for {figure['written']} "
              f"(coverage {figure['coverage']}), right on {figure['right']} (precision {figure['precision']})")
        for length, each in figure["per_length"].items():
            print(f"  {length:16s} {each['labelled']:3d} labelled, given {each['written']:3d}, right {each['right']}")
        print("  mistakes: " + (", ".join(f"{key} ×{count}" for key, count in figure["mistakes"].items()) or "none"))
        print("  by threshold: " + "; ".join(f"{key}: {each['right']}/{each['written']} of {each['labelled']}"
                                             for key, each in figure["thresholds"].items()))
    print(json.dumps({key: summary[key] for key in ("threshold", "photos")} | {
        split: {key: summary[split][key] for key in ("labelled", "written", "right", "precision", "coverage")}
        for split in ("tuning", "heldout")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
