"""A store's catalogue from the labelled photos we have, through `apparel catalog`, scored against
Shopify's taxonomy: how many products get the exact category, a right but shallower one, a wrong
one, an invalid one, or none.

    python benchmarks/catalogue.py --datasets ../shared/datasets --out runs/catalogue-bench
    python benchmarks/catalogue.py --datasets ../shared/datasets --out runs/catalogue-keras --runtime keras
    python benchmarks/catalogue.py --datasets ../shared/datasets --out runs/catalogue-thumb --thumbnail 60x80

Only validation sides are used: clothing-dataset-small's validation/, clothing-dataset-extra's
validation senders, Clothing Co-Parsing's held-out photos (worn crops of every labelled garment
and accessory, and street corners with nothing worn: not a product of the vertical; and the same
things cut out by their labels onto white, as a store shows a bag or a shoe: source "on white";
and the worn crops with the street behind the person made white, as a store shows a garment on a
model in a studio: source "worn on white"; ``store.worn``). The crops
are written as JPEG files under --out (never into the project). Each photo is one product of a
Shopify product CSV (the current header style, or --header-style old), local image paths.

Scores (apparel.taxonomy.judge): exact; parent (a true ancestor below the vertical's root);
blank-right (nothing written for a non-product); wrong; invalid (a value that is no Shopify
category); blank (left for review). Right = exact + parent + blank-right. Printed per product type
and per source, with photos per second of the catalog run (the model loaded and warmed up first,
so the rate is the steady one; the load is timed apart).

--thumbnail WxH shrinks every photo to fit that box first (aspect kept, as a store's small
thumbnails: some public product catalogues hold only 60×80-pixel photos), written under --out.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apparel.images.thumbnails import thumbnail_of  # noqa: E402

HEADERS = {"new": ("URL handle", "Title", "Product category", "Type", "Tags", "Product image URL"),
           "old": ("Handle", "Title", "Product Category", "Type", "Tags", "Image Src")}
KINDS = ("exact", "parent", "blank-right", "wrong", "invalid", "blank")


def catalogue_products(datasets: Path, images: Path) -> list[dict]:
    """Every validation photo as a product: handle, image path, product type, source, truth id."""
    from apparel.store.build import crop_set
    from apparel.store.model import read_classes
    from apparel.store.training_set import CO_PARSING, SMALL, extra_photos
    from apparel.store.worn import worn_crops

    categories = read_classes()
    products = [{"image": str(path), "type": path.parent.name, "source": "small", "truth": categories[path.parent.name][0]}
                for path in sorted((datasets / SMALL / "validation").glob("*/*.jpg"))]
    products += [{"image": str(path), "type": name, "source": "extra", "truth": categories[name][0]}
                 for path, name, split in extra_photos(datasets) if split == "validation"]
    images.mkdir(parents=True, exist_ok=True)
    for number, crop in enumerate(worn_crops(datasets / CO_PARSING, held_out=True, cut_outs=True,
                                             worn_on_white=True)):
        source = crop_set(crop)
        path = images / f"{crop.photo}-{number}-{crop.label}-{source.replace(' ', '-')}.jpg"
        if not path.is_file():
            crop.image.save(path, quality=92)
        products.append({"image": str(path), "type": crop.label if crop.category else "street (not apparel)",
                         "source": source, "truth": crop.category})
    for number, product in enumerate(products):
        product["handle"] = f"product-{number:05d}"
    return products


def thumbnails(products: list[dict], box: tuple[int, int], folder: Path) -> list[dict]:
    """The products with each photo shrunk to fit ``box`` (width, height), as JPEGs in ``folder``,
    written again on every run (a handle names another photo when the data sets or --limit change)."""
    folder.mkdir(parents=True, exist_ok=True)
    smaller = []
    for product in products:
        path = folder / f"{product['handle']}.jpg"
        path.write_bytes(thumbnail_of(product["image"], box))
        smaller.append({**product, "image": str(path)})
    return smaller


def parse_box(text: str) -> tuple[int, int]:
    try:
        width, height = (int(side) for side in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give the box as WIDTHxHEIGHT in pixels, e.g. 60x80") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: both sides must be at least 1 pixel")
    return width, height


def write_catalogue(products: list[dict], path: Path, style: str) -> Path:
    """The product CSV, image paths relative to the folder all photos share (returned: the
    catalog's --images-dir, which local paths must resolve inside)."""
    root = Path(os.path.commonpath([str(Path(product["image"]).resolve().parent) for product in products]))
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADERS[style])
        for product in products:
            image = Path(product["image"]).resolve().relative_to(root)
            writer.writerow([product["handle"], f"Product {product['handle']}", "", "", "", str(image)])
    return root


def read_written(path: Path, style: str) -> dict[str, str]:
    handle_column, category_column = HEADERS[style][0], HEADERS[style][2]
    with open(path, encoding="utf-8", newline="") as handle:
        return {row[handle_column]: row[category_column] for row in csv.DictReader(handle)}


def score(products: list[dict], written: dict[str, str]) -> dict:
    from apparel.taxonomy import load_taxonomy
    from apparel.taxonomy.judge import judge

    taxonomy = load_taxonomy()
    by_type, by_source, total = defaultdict(Counter), defaultdict(Counter), Counter()
    for product in products:
        value = written.get(product["handle"], "").strip()
        node = taxonomy.find(value) if value else None
        kind = "invalid" if value and node is None else judge(node, product["truth"])
        for counter in (by_type[product["type"]], by_source[product["source"]], total):
            counter[kind] += 1
    return {"total": total, "by_source": by_source, "by_type": by_type}


def shares(counter: Counter) -> dict:
    count = sum(counter.values())
    result = {kind: round(counter[kind] / count, 4) if count else 0.0 for kind in KINDS}
    result["right"] = round(result["exact"] + result["parent"] + result["blank-right"], 4)
    result["products"] = count
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=str(ROOT.parent / "shared" / "datasets"))
    parser.add_argument("--out", default="runs/catalogue-bench")
    parser.add_argument("--model-dir", default=None, help="run directory or shipped name (default: the catalog's)")
    parser.add_argument("--header-style", choices=tuple(HEADERS), default="new")
    parser.add_argument("--limit", type=int, default=None, help="only the first N products (a quick look)")
    parser.add_argument("--runtime", choices=("litert", "keras"), default="litert",
                        help="the model's LiteRT artefact (the commands' default) or Keras")
    parser.add_argument("--thumbnail", type=parse_box, default=None, metavar="WxH",
                        help="shrink every photo to fit this box first, e.g. 60x80 (small store thumbnails)")
    args = parser.parse_args()

    from apparel.inference.runtime import load_predictor
    from apparel.kinds.registry import PHOTO_KIND
    from apparel.shop.catalog import CatalogConfig, categorize_catalog

    out = Path(args.out)
    products = catalogue_products(Path(args.datasets), out / "images")[: args.limit]
    if args.thumbnail:
        products = thumbnails(products, args.thumbnail, out / "thumbnails-{}x{}".format(*args.thumbnail))
    catalogue, written_path = out / "products.csv", out / "categorized.csv"
    images_dir = write_catalogue(products, catalogue, args.header_style)
    for stale in (written_path, out / "categorized.cache.jsonl"):  # a fresh run: no cached images
        stale.unlink(missing_ok=True)
    started = time.perf_counter()
    predictor = load_predictor(args.model_dir, kind=PHOTO_KIND, runtime=args.runtime)
    predictor.predict_proba(np.zeros((1, *predictor.contract.shape), "uint8"))  # warmed up: the rate is steady
    load_seconds = time.perf_counter() - started
    config = CatalogConfig(model_dir=str(predictor.model_dir), images_dir=str(images_dir), runtime=args.runtime)
    started = time.perf_counter()
    report = categorize_catalog(catalogue, written_path, config, predictor=predictor)
    seconds = time.perf_counter() - started
    result = score(products, read_written(written_path, args.header_style))
    summary = {
        "model": str(predictor.model_dir), "runtime": args.runtime, "products": len(products), "header_style": args.header_style,
        "thumbnail": list(args.thumbnail) if args.thumbnail else None,
        "all": shares(result["total"]),
        "products_of_the_vertical": shares(sum((c for s, c in result["by_source"].items() if s != "street"), Counter())),
        "by_source": {name: shares(counter) for name, counter in sorted(result["by_source"].items())},
        "by_type": {name: shares(counter) for name, counter in sorted(result["by_type"].items())},
        "photos_per_second": round(report.predicted / seconds, 1), "catalog_seconds": round(seconds, 1),
        "model_load_seconds": round(load_seconds, 1), "report": report.to_dict(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(f"{'product type':<24} {'n':>5} " + " ".join(f"{kind:>11}" for kind in (*KINDS, "right")))
    rows = [(name, value) for name, value in summary["by_type"].items()]
    rows += [("— source: " + name, value) for name, value in summary["by_source"].items()]
    rows += [("— all products", summary["all"])]
    for name, value in rows:
        print(f"{name[:24]:<24} {value['products']:>5} " + " ".join(f"{value[kind]:>11.3f}" for kind in (*KINDS, "right")))
    print(f"{report.predicted} photos in {seconds:.1f} s: {summary['photos_per_second']} photos/s "
          f"(model load {load_seconds:.1f} s apart); summary: {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
