"""How well `apparel.attributes.product_colour` names a product's colour, and what it costs.

    python benchmarks/colour.py --datasets ../shared/datasets --out runs/colour-bench
    python benchmarks/colour.py --datasets ../shared/datasets --out runs/colour-bench --skin --recolour 60 --time 64

- On the photos labelled by eye (benchmarks/data/colour_labels.csv): main colour right, per colour and
  overall, on the tuning part (where every threshold was chosen) and the held-out part apart; the
  confusion between neighbours (navy/blue/black, beige/white/brown/gray); second colour right.
- ``--worn``: the same on Clothing Co-Parsing's held-out people with the street made white, as a
  store photographs a garment on a model, and on the same garments cut out onto white, as a product
  shot (benchmarks/data/worn_colour_labels.csv: each photo's largest garment, labelled by eye after
  the colour step was built; nothing was chosen on them).
- ``--skin``: the skin rule on Clothing Co-Parsing's labelled pixels (photos kept aside): the
  skin pixels it finds, the garment (and hair) pixels it takes for skin. ``--fit-skin`` chooses
  the box again on the other photos, as it was chosen.
- ``--recolour N``: N Co-Parsing people cut out onto white, their largest garment recoloured to a
  known colour (its shading kept): is the main colour that one, with skin, hair and the other
  garments in the picture? Per colour too, framed on the whole person and, as a catalogue frames
  a product, on the garment. ``--recolour-side training`` takes the photos that are not kept
  aside, where a setting may be chosen.
- ``--time N``: milliseconds the colour step adds per photo against the photo path (decoding, the
  224-pixel model input and the store model's prediction), timed in the same run, one photo at a
  time (each step's code cold after the other's: the dearest case).
- ``--catalog N``: ``apparel catalog`` of N local photos of clothing-dataset-small's ``train/``
  (every k-th), with ``--colour`` and without, in turns in one run (fresh cache, the model loaded
  and warmed up): the photos/s a whole catalog loses to the colour step.
- ``--thumbnail WxH``: the labelled photos (and with ``--worn`` the labelled garments, with
  ``--recolour`` the recoloured people) shrunk to fit that box first and read back from a JPEG,
  as ``catalogue.py --thumbnail`` makes a store's small thumbnails (some public product
  catalogues hold only 60×80-pixel photos). ``--skin``, ``--time`` and ``--catalog`` measure
  full-size photos whatever it says.

Writes summary.json, per_photo.csv and per_colour.csv under --out.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # the catalogue benchmark's parse_box

from apparel.attributes.colour import REFERENCES, product_colour  # noqa: E402
from apparel.attributes.colour_space import srgb_to_lab  # noqa: E402
from apparel.attributes.product_pixels import skin_mask  # noqa: E402
from apparel.images.thumbnails import thumbnail_of  # noqa: E402
from apparel.kinds.photo.pipeline import photo_to_rgb  # noqa: E402
from apparel.store.training_set import CO_PARSING  # noqa: E402
from catalogue import parse_box  # noqa: E402

LABELS = ROOT / "benchmarks" / "data" / "colour_labels.csv"
WORN_LABELS = ROOT / "benchmarks" / "data" / "worn_colour_labels.csv"
HELDOUT_EVERY = 3  # a path whose hash is divisible by 3 is held out
NEIGHBOURS = (("navy", "blue", "black"), ("beige", "white", "brown", "gray"))
SIDE = 224  # the photo model's input, which the colour step reads


def split_of(path: str) -> str:
    """'heldout' or 'tuning', fixed by the path alone."""
    return "heldout" if int(hashlib.sha256(path.encode()).hexdigest()[:8], 16) % HELDOUT_EVERY == 0 else "tuning"


def read_labels(path: Path = LABELS) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [{**row, "split": split_of(row["path"])} for row in csv.DictReader(handle)]


def model_input(photo, thumbnail: tuple[int, int] | None = None) -> np.ndarray:
    """The 224-pixel input the colour step reads, of ``photo`` (a path or PIL image) as it is or,
    with ``thumbnail`` (width, height), shrunk to fit that box and read back from a JPEG."""
    if thumbnail is None:
        return photo_to_rgb(photo, SIDE)
    return photo_to_rgb(thumbnail_of(photo, thumbnail), SIDE)  # the JPEG read back as a store's file is


def label_accuracy(rows: list[dict], datasets: Path, thumbnail: tuple[int, int] | None = None) -> list[dict]:
    """Each labelled photo with the colour found."""
    results = []
    for row in rows:
        colour = product_colour(model_input(datasets / row["path"], thumbnail))
        results.append({**row, "found": colour.main.name.lower(),
                        "found_second": colour.second.name.lower() if colour.second else "",
                        "confidence": round(colour.confidence, 3)})
    return results


def worn_label_accuracy(path: Path, parsing: Path, thumbnail: tuple[int, int] | None = None) -> list[dict]:
    """Each labelled garment (``worn_colour_labels.csv``) with the colour found, twice: worn on white
    (the crop with the street made white, as a store photographs a garment on a model) and cut out
    onto white (the garment's own pixels alone, as a product shot), the crops ``apparel.store.worn``
    makes of it for the catalogue benchmark; ``split`` says which."""
    from apparel.store.worn import CUT_OUT, WORN_ON_WHITE, worn_crops

    with open(path, newline="", encoding="utf-8") as handle:
        labelled = {(row["photo"], row["garment"]): row for row in csv.DictReader(handle)}
    results = []
    for crop in worn_crops(parsing, held_out=True, cut_outs=True, worn_on_white=True):
        row = labelled.get((crop.photo, crop.label))
        if crop.backdrop not in (WORN_ON_WHITE, CUT_OUT) or row is None:
            continue
        colour = product_colour(model_input(crop.image, thumbnail))
        results.append({**row, "split": crop.backdrop, "found": colour.main.name.lower(),
                        "found_second": colour.second.name.lower() if colour.second else "",
                        "confidence": round(colour.confidence, 3)})
    found = sum(result["split"] == WORN_ON_WHITE for result in results)
    if found != len(labelled):
        raise ValueError(f"{len(labelled) - found} labelled garments of {path} were not found in {parsing}")
    return results


def summarise(results: list[dict]) -> dict:
    summary = {}
    for split in dict.fromkeys(row["split"] for row in results):
        part = [row for row in results if row["split"] == split]
        right = [row["found"] == row["main"] for row in part]
        per_colour = {}
        for name in sorted({row["main"] for row in part}):
            these = [row["found"] == row["main"] for row in part if row["main"] == name]
            per_colour[name] = {"photos": len(these), "right": round(float(np.mean(these)), 3)}
        confusion = {}
        for group in NEIGHBOURS:
            counts = Counter((row["main"], row["found"]) for row in part if row["main"] in group)
            confusion["/".join(group)] = {f"{truth}->{found}": count for (truth, found), count in sorted(counts.items())}
        with_second = [row for row in part if row["second"]]
        summary[split] = {
            "photos": len(part),
            "main_right": round(float(np.mean(right)), 3),
            # a main colour that the labeller gave as the second one is half right: the right colours, the wrong order
            "main_in_labelled_pair": round(float(np.mean([row["found"] in (row["main"], row["second"]) for row in part])), 3),
            "second_right_where_labelled": round(float(np.mean([row["found_second"] == row["second"] for row in with_second])), 3)
            if with_second else None,
            "per_colour": per_colour,
            "neighbour_confusion": confusion,
        }
    return summary


# Co-Parsing: label indices that are not a garment, and the ids kept aside for measuring (the skin
# box was fitted on the others).
PARSING_NOT_GARMENT = {0: "null", 19: "hair", 41: "skin"}
PARSING_HELDOUT_EVERY = 5
# Recolouring targets: typical garment colours, none of them one of the naming's reference points.
TARGETS = {"black": (28, 28, 30), "white": (244, 244, 240), "gray": (128, 128, 130), "navy": (30, 40, 82),
           "blue": (52, 100, 188), "green": (52, 128, 72), "red": (184, 32, 42), "pink": (236, 142, 172),
           "purple": (118, 62, 148), "orange": (236, 122, 44), "yellow": (242, 212, 60),
           "beige": (214, 196, 166), "brown": (108, 74, 46)}


def _parsing(root: Path, ids) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    import scipy.io
    from PIL import Image

    for number in ids:
        mat = root / "annotations" / "pixel-level" / f"{number:04d}.mat"
        if mat.exists():
            yield number, np.asarray(Image.open(root / "photos" / f"{number:04d}.jpg").convert("RGB")), \
                scipy.io.loadmat(mat)["groundtruth"]


def skin_rule(root: Path) -> dict:
    """The skin box on the held-out Co-Parsing photos: skin pixels it finds, garment pixels it takes
    for skin (and hair pixels, which it is not meant to find)."""
    found = {"skin": [], "garment": [], "hair": []}
    for _, photo, labels in _parsing(root, range(PARSING_HELDOUT_EVERY, 1005, PARSING_HELDOUT_EVERY)):
        flagged = skin_mask(srgb_to_lab(photo[::4, ::4]))
        labels = labels[::4, ::4]
        found["skin"].append(flagged[labels == 41])
        found["hair"].append(flagged[labels == 19])
        found["garment"].append(flagged[~np.isin(labels, list(PARSING_NOT_GARMENT))])
    return {f"{kind}_flagged": round(float(np.concatenate(parts).mean()), 3) for kind, parts in found.items()}


def fit_skin(root: Path) -> dict:
    """The skin box as it was chosen: a grid over hue, chroma and lightness bounds on every fourth
    Co-Parsing photo not kept aside (8× subsampled pixels), maximising the share of skin pixels
    found minus 3 times the share of garment pixels taken for skin (a garment pixel lost costs more
    than a skin pixel kept)."""
    import itertools

    from apparel.attributes.colour_space import lch

    skin, garment = [], []
    fitting = [number for number in range(1, 1005, 4) if number % PARSING_HELDOUT_EVERY]
    for _, photo, labels in _parsing(root, fitting):
        lab, labels = srgb_to_lab(photo[::8, ::8]), labels[::8, ::8]
        skin.append(lab[labels == 41])
        garment.append(lab[~np.isin(labels, list(PARSING_NOT_GARMENT))])
    channels = {kind: lch(np.concatenate(parts)) for kind, parts in (("skin", skin), ("garment", garment))}

    def flagged(kind, box):
        lightness, chroma, hue = channels[kind]
        return float(np.mean((hue >= box[0]) & (hue <= box[1]) & (chroma >= box[2]) & (chroma <= box[3])
                             & (lightness >= box[4]) & (lightness <= box[5])))

    grid = itertools.product((15, 20, 25, 30), (65, 75, 85), (5, 8, 10, 14), (35, 45, 60), (20, 30, 40), (85, 95))
    score, box = max((flagged("skin", box) - 3 * flagged("garment", box), box) for box in grid)
    return {"hue": box[:2], "chroma": box[2:4], "lightness": box[4:], "skin_found": round(flagged("skin", box), 3),
            "garment_taken": round(flagged("garment", box), 3)}


def recoloured(photo: np.ndarray, labels: np.ndarray, target: tuple[int, int, int],
               framing: str = "person") -> tuple[np.ndarray, str]:
    """The person cut out onto a white sweep, their largest garment recoloured to ``target`` with its
    shading kept, cropped to the whole person (``framing`` "person") or, as a catalogue frames the
    product, to the garment with a tenth of its size around it ("garment": the rest of the person
    at the edges); and the garment's Co-Parsing name."""
    from apparel.attributes.colour_space import lab_to_srgb

    garments = [(int((labels == index).sum()), int(index)) for index in np.unique(labels)
                if int(index) not in PARSING_NOT_GARMENT]
    _, largest = max(garments)
    lab = srgb_to_lab(photo)
    garment = labels == largest
    target_lab = srgb_to_lab(np.array(target, dtype=np.float64))
    shading = lab[..., 0] - np.median(lab[..., 0][garment])
    new = np.stack([np.clip(target_lab[0] + 0.6 * shading, 1, 99), np.full(shading.shape, target_lab[1]),
                    np.full(shading.shape, target_lab[2])], axis=-1)
    out = np.where(garment[..., None], lab_to_srgb(new), photo.astype(np.float64))
    out[labels == 0] = 250.0
    if framing == "garment":  # as apparel.store.worn frames a garment
        from apparel.store.worn import margin_box

        rows, columns = np.nonzero(garment)
        left, top, right, bottom = margin_box(rows.min(), rows.max() + 1, columns.min(), columns.max() + 1,
                                              *garment.shape)
        out = out[top:bottom, left:right]
    else:
        rows, columns = np.nonzero(labels)
        margin = 10
        out = out[max(rows.min() - margin, 0):rows.max() + margin, max(columns.min() - margin, 0):columns.max() + margin]
    return np.clip(out, 0, 255).astype(np.uint8), str(largest)


def recolour_check(root: Path, count: int, side: str = "heldout", thumbnail: tuple[int, int] | None = None) -> dict:
    """Main colour right on ``count`` recoloured people, framed whole and framed on the garment (see
    ``recoloured``), with the skin rule and without it, overall and per colour (with the rule).
    ``side`` "heldout" takes the photos kept aside (what is reported); "training" the others, where
    settings are chosen (the flat-border background tolerance was). ``thumbnail``: each picture
    shrunk to fit that box first (``model_input``)."""
    from PIL import Image

    from apparel.attributes.config import ColourConfig

    names = list(TARGETS)
    framings = ("person", "garment")
    right = {framing: {"with_skin_rule": [], "without_skin_rule": []} for framing in framings}
    per_colour = {framing: {name: [] for name in names} for framing in framings}
    ids = (range(PARSING_HELDOUT_EVERY, 1005, PARSING_HELDOUT_EVERY) if side == "heldout"
           else [number for number in range(1, 1005) if number % PARSING_HELDOUT_EVERY])
    for index, (_, photo, labels) in zip(range(count), _parsing(root, ids)):
        name = names[index % len(names)]
        for framing in framings:
            picture, _ = recoloured(photo, labels, TARGETS[name], framing)
            pixels = model_input(Image.fromarray(picture), thumbnail)
            right[framing]["with_skin_rule"].append(product_colour(pixels).main.name.lower() == name)
            per_colour[framing][name].append(right[framing]["with_skin_rule"][-1])
            right[framing]["without_skin_rule"].append(
                product_colour(pixels, ColourConfig(max_skin_share=0.0)).main.name.lower() == name)
    result = {"side": side, "people": len(right["person"]["with_skin_rule"])}
    for framing in framings:
        result[framing] = {
            **{key: round(float(np.mean(values)), 3) for key, values in right[framing].items()},
            "per_colour": {name: {"people": len(values), "right": round(float(np.mean(values)), 3)}
                           for name, values in per_colour[framing].items() if values}}
    return result


def timing(rows: list[dict], datasets: Path, count: int) -> dict:
    """Per photo, warmed up: the photo path (decode + model input, then the store model's prediction
    of that one photo, on the commands' default runtime) and the colour step on the same input."""
    from apparel.inference.runtime import load_predictor
    from apparel.kinds.registry import PHOTO_KIND

    predictor = load_predictor(None, kind=PHOTO_KIND)
    paths = [datasets / row["path"] for row in rows[:count]]
    inputs = [photo_to_rgb(path, SIDE) for path in paths[:4]]
    for photo in inputs:  # warm up: the compiled model, the naming table
        predictor.predict_proba(photo[None])
        product_colour(photo)
    read_s = predict_s = colour_s = 0.0
    for path in paths:
        start = time.perf_counter()
        photo = photo_to_rgb(path, SIDE)
        read_s += time.perf_counter() - start
        start = time.perf_counter()
        predictor.predict_proba(photo[None])
        predict_s += time.perf_counter() - start
        start = time.perf_counter()
        product_colour(photo)
        colour_s += time.perf_counter() - start
    photos = len(paths)
    path_ms = 1000 * (read_s + predict_s) / photos
    return {"photos": photos, "read_ms": round(1000 * read_s / photos, 2),
            "predict_ms": round(1000 * predict_s / photos, 2), "colour_ms": round(1000 * colour_s / photos, 2),
            "colour_share_of_photo_path": round(1000 * colour_s / photos / path_ms, 3),
            "photos_per_s_without": round(1000 / path_ms, 1),
            "photos_per_s_with": round(1000 / (path_ms + 1000 * colour_s / photos), 1)}


def catalog_timing(datasets: Path, count: int, rounds: int = 5) -> dict:
    """``apparel catalog``'s photos/s on ``count`` local photos without and with the colour step,
    in turns (``rounds`` pairs after one warm-up pair), and the share of the catalog's time the step
    adds: the median of the pairs' ratios, which holds when the machine's speed drifts."""
    from benchmarks.speed_photos import steady_catalog

    from apparel.inference.runtime import load_predictor
    from apparel.kinds.registry import PHOTO_KIND

    predictor = load_predictor(None, kind=PHOTO_KIND)
    train = datasets / "clothing-dataset-small" / "train"
    everything = sorted(train.glob("*/*.jpg"))
    photos = everything[:: max(1, len(everything) // count)][:count]
    rates: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="colour-catalog-") as work:
        for round_ in range(rounds + 1):
            for colour in (False, True):
                fresh = Path(work) / f"{round_}-{colour}"  # a catalog's cache sits beside its output
                fresh.mkdir()
                rate = steady_catalog(predictor, photos, train, fresh, 1, colour=colour, warm_up=False)
                if round_:  # the first pair warms the model, the naming table and the file cache up
                    rates[colour].append(rate)
    shares = [without / with_colour - 1 for without, with_colour in zip(rates[False], rates[True])]
    return {"photos": len(photos), "photos_per_s_without": statistics.median(rates[False]),
            "photos_per_s_with": statistics.median(rates[True]),
            "colour_share_of_catalog": round(statistics.median(shares), 3),
            "rounds": {"without": rates[False], "with": rates[True]}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--labels", type=Path, default=LABELS)
    parser.add_argument("--out", type=Path, default=Path("runs/colour-bench"))
    parser.add_argument("--split", choices=("tuning", "heldout", "both"), default="both")
    parser.add_argument("--worn", action="store_true", help="measure on the labelled garments worn on white")
    parser.add_argument("--worn-labels", type=Path, default=WORN_LABELS)
    parser.add_argument("--skin", action="store_true", help="measure the skin rule on Co-Parsing's held-out photos")
    parser.add_argument("--fit-skin", action="store_true", help="choose the skin box again on the other photos")
    parser.add_argument("--recolour", type=int, default=0, help="recoloured Co-Parsing people to check")
    parser.add_argument("--recolour-side", choices=("heldout", "training"), default="heldout",
                        help="recolour the photos kept aside (reported) or the others (where settings are chosen)")
    parser.add_argument("--time", type=int, default=0, help="photos to time the colour step on")
    parser.add_argument("--catalog", type=int, default=0,
                        help="local photos to time `apparel catalog` on, with --colour and without")
    parser.add_argument("--thumbnail", type=parse_box, metavar="WxH",
                        help="name the labelled photos shrunk to fit this box first (e.g. 60x80)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = [row for row in read_labels(args.labels) if args.split in ("both", row["split"])]
    results = label_accuracy(rows, args.datasets, args.thumbnail)
    summary = {"thumbnail": "x".join(map(str, args.thumbnail)) if args.thumbnail else None,
               "labels": summarise(results)}
    with open(args.out / "per_photo.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(results[0]))
        writer.writeheader()
        writer.writerows(results)
    parsing = args.datasets / CO_PARSING
    if args.worn:
        worn = worn_label_accuracy(args.worn_labels, parsing, args.thumbnail)
        summary["worn_labels"] = summarise(worn)
        with open(args.out / "worn_per_photo.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(worn[0]))
            writer.writeheader()
            writer.writerows(worn)
    if args.fit_skin:
        summary["skin_fit"] = fit_skin(parsing)
        print("skin box fitted", summary["skin_fit"])
    if args.skin:
        summary["skin_rule"] = skin_rule(parsing)
        print("skin rule", summary["skin_rule"])
    if args.recolour:
        summary["recoloured"] = recolour_check(parsing, args.recolour, args.recolour_side, args.thumbnail)
        print("recoloured", summary["recoloured"])
    if args.time:
        summary["timing"] = timing(rows, args.datasets, args.time)
        print("timing", summary["timing"])
    if args.catalog:
        summary["catalog_timing"] = catalog_timing(args.datasets, args.catalog)
        print("catalog timing", summary["catalog_timing"])
    per_colour = [{"split": split, "colour": name, **values}
                  for key in ("labels", "worn_labels") for split, part in summary.get(key, {}).items()
                  for name, values in part["per_colour"].items()]
    with open(args.out / "per_colour.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["split", "colour", "photos", "right"])
        writer.writeheader()
        writer.writerows(per_colour)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({split: {key: value for key, value in part.items() if key != "per_colour"}
                      for key in ("labels", "worn_labels") for split, part in summary.get(key, {}).items()},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
