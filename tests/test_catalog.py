"""`apparel catalog`: Shopify exports in both header styles, every untouched byte kept."""

import contextlib
import csv
import errno
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

from apparel.errors import ParameterError
from apparel.shop.catalog import CatalogConfig, categorize_catalog, find_columns
from apparel.shop.splice import parse_records
from apparel.shop.taxonomy import load_mapping
from apparel.cli import build_parser, main
from conftest import PHOTO_CLASSES, another_run_holding
from local_http import serve
from test_photos import garment_photo
from test_sources import model_dir  # noqa: F401 (a fixture)

BOM = "\ufeff"
OLD_HEADER = ["Handle", "Title", "Body (HTML)", "Vendor", "Product Category", "Type", "Tags", "Published",
              "Option1 Name", "Option1 Value", "Variant SKU", "Variant Price", "Image Src", "Image Position",
              "Image Alt Text", "Variant Image", "Status"]
NEW_HEADER = ["Title", "URL handle", "Description", "Vendor", "Product category", "Type", "Tags",
              "Published on online store", "Status", "SKU", "Price", "Product image URL", "Image position",
              "Image alt text", "Variant image URL"]
DRESSES = "Apparel & Accessories > Clothing > Dresses"
HANDBAGS = '"Apparel & Accessories > Handbags, Wallets & Cases > Handbags"'


class ShapePredictor:
    """Stands in for a model: tall garments are dresses (0.91), wide ones bags (0.91), square ones
    a shirt (0.35), a bag (0.30) or a sandal (0.28): no category, not even Clothing (0.40), reaches
    the default --min-confidence."""

    def __init__(self, fail_on_call=None):
        self.calls, self.fail_on_call = [], fail_on_call

    def predict_proba(self, images):
        self.calls.append(len(images))
        if self.fail_on_call == len(self.calls):
            raise KeyboardInterrupt
        probabilities = np.full((len(images), 10), 0.01)
        for row, image in zip(probabilities, np.asarray(images)):
            height = len(np.flatnonzero(image.max(axis=1) > 0.1))
            width = len(np.flatnonzero(image.max(axis=0) > 0.1))
            if abs(height - width) <= 3:
                row[[6, 8, 5]] = (0.35, 0.3, 0.28)
            else:
                row[3 if height > width else 8] = 0.91
        return probabilities / probabilities.sum(axis=1, keepdims=True)

# The fetch deadline: the slow image (a minute in coming) always misses it, the others, from
# 127.0.0.1, make it even on a machine busy with other work (0.5 s did not, under mutmut).
TIMEOUT = 2.0


@pytest.fixture
def shop(tmp_path):
    """tmp_path/images with a dress (tall), a tote (wide), a square shirt and a broken JPEG."""
    images = tmp_path / "images"
    images.mkdir()
    garment_photo().save(images / "dress.png")
    garment_photo(size=(400, 300), box=(40, 90, 360, 220), colour=(30, 60, 150)).convert("RGB").save(images / "tote.jpg", quality=90)
    garment_photo(size=(300, 300), box=(60, 60, 240, 240), colour=(40, 120, 60)).save(images / "square.png")
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF" + b"\x00" * 40)
    (tmp_path / "secret.png").write_bytes((images / "dress.png").read_bytes())
    with serve(images) as (base, _):
        yield tmp_path, base


def row(**cells):
    """A row of the old-style header: raw cell text by column name (unnamed cells are empty)."""
    keys = {name.lower().replace(" ", "_").replace("(", "").replace(")", ""): i for i, name in enumerate(OLD_HEADER)}
    raw = [""] * len(OLD_HEADER)
    for key, value in cells.items():
        raw[keys[key]] = value
    return raw


def old_style_catalog(base):
    """(input rows, expected output rows), raw cell text, in the older header style."""
    product = dict(vendor="Acme", published="TRUE", option1_name="Title", option1_value="Default Title", status="active")
    body = '"<p>Light, airy ""linen""</p>\r\n<p>Second line</p>"'
    rows = [
        row(handle="summer-dress", title="Summer Dress", body_html=body, vendor="Acme", tags='"summer, sale"',
            published="TRUE", option1_name="Size", option1_value="S", variant_sku="SD-S", variant_price="49.00",
            image_src="images/dress.png", image_position="1", image_alt_text='"A dress"', status="active"),
        row(handle="summer-dress", option1_value="M", variant_sku="SD-M", variant_price="49.00"),
        row(handle="summer-dress", image_src="images/tote.jpg", image_position="2"),
        row(handle="city-tote", title="City Tote", body_html="<p>Roomy</p>", type='""', tags='""',
            image_src=f"{base}/tote.jpg", image_position="1", **product),
        row(handle="plain-shirt", title="Plain Shirt", type="Shirts", image_src="images/square.png", **product),
        row(handle="old-coat", title="Old Coat", product_category="Apparel & Accessories > Clothing > Outerwear > Coats & Jackets",
            type="Coat", tags="existing", image_src="images/dress.png", **product),
        row(handle="broken-thing", title="Broken", image_src="images/broken.jpg", **product),
        row(handle="missing-thing", title="Missing", image_src="images/nothing.png", **product),
        row(handle="sneaky", title="Sneaky", image_src="../secret.png", **product),
        row(handle="absolute", title="Absolute", image_src="/etc/hostname", **product),
        row(handle="slow-one", title="Slow", image_src=f"{base}/slow/dress.png", **product),
        row(handle="no-photo", title="No Photo", variant_price="  12.00 ", **product),
        row(handle="café-bag", title='"Café Bag ☕"', image_src="images/tote.jpg", **product),
        row(handle="fallback", title="Fallback", image_src="images/broken.jpg", image_position="1", **product),
        row(handle="fallback", image_src="images/dress.png", image_position="2"),
        row(handle="variant-only", title="Variant Only", variant_image="images/dress.png", **product),
    ]
    expected = [list(cells) for cells in rows]
    category, type_, tags = 4, 5, 6
    expected[0][category], expected[0][type_], expected[0][tags] = DRESSES, "Dress", '"summer, sale, apparel:Dress"'
    expected[3][category], expected[3][type_], expected[3][tags] = HANDBAGS, '"Bag"', '"apparel:Bag"'
    expected[5][tags] = '"existing, apparel:Dress"'
    expected[12][category], expected[12][type_], expected[12][tags] = HANDBAGS, "Bag", "apparel:Bag"
    expected[13][category], expected[13][type_], expected[13][tags] = DRESSES, "Dress", "apparel:Dress"
    expected[15][category], expected[15][type_], expected[15][tags] = DRESSES, "Dress", "apparel:Dress"
    return rows, expected


def as_bytes(header, rows, newline="\r\n", bom=True, final_newline=False) -> bytes:
    text = newline.join(",".join(cells) for cells in [header] + rows) + (newline if final_newline else "")
    return ((BOM if bom else "") + text).encode("utf-8")


def config(model_dir, shop_dir, **changes) -> CatalogConfig:
    settings = dict(model_dir=str(model_dir), images_dir=str(shop_dir), allow_private=True, timeout=TIMEOUT, read_threads=4)
    return CatalogConfig(**{**settings, **changes})


def review_rows(path):
    with open(path, encoding="utf-8", newline="") as handle:
        return {row["handle"]: row for row in csv.DictReader(handle)}


def test_categories_are_filled_and_every_other_byte_is_kept(shop, model_dir):
    shop_dir, base = shop
    rows, expected = old_style_catalog(base)
    source = shop_dir / "products.csv"
    source.write_bytes(as_bytes(OLD_HEADER, rows))
    report = categorize_catalog(source, shop_dir / "out.csv", config(model_dir, shop_dir), predictor=ShapePredictor())
    assert (shop_dir / "out.csv").read_bytes() == as_bytes(OLD_HEADER, expected)
    assert source.read_bytes() == as_bytes(OLD_HEADER, rows)  # the input is never touched
    assert (report.rows, report.products, report.categorized, report.uncertain) == (16, 13, 6, 1)
    assert (report.failed, report.no_image, report.changed_cells) == (5, 1, 16)

    review = review_rows(shop_dir / "out.review.csv")
    assert review["plain-shirt"]["status"] == "uncertain" and review["plain-shirt"]["category"] == ""
    assert review["plain-shirt"]["confidence"] == "0.4000"  # the likeliest category's, Clothing's
    assert review["plain-shirt"]["label"] == "Shirt" and review["plain-shirt"]["probability"].startswith("0.3")
    assert review["plain-shirt"]["top_k"] == "Shirt 0.3500; Bag 0.3000; Sandal 0.2800"
    assert "not a readable image" in review["broken-thing"]["error"]
    assert "file not found" in review["missing-thing"]["error"]
    assert "leads outside images_dir" in review["sneaky"]["error"]
    assert "leads outside images_dir" in review["absolute"]["error"]
    assert "timed out" in review["slow-one"]["error"]
    assert review["no-photo"]["status"] == "no image"
    assert set(review) == {"plain-shirt", "broken-thing", "missing-thing", "sneaky", "absolute", "slow-one", "no-photo"}


def test_reruns_are_idempotent_and_use_the_cache(shop, model_dir):
    shop_dir, base = shop
    rows, _ = old_style_catalog(base)
    source = shop_dir / "products.csv"
    source.write_bytes(as_bytes(OLD_HEADER, rows))
    first = categorize_catalog(source, shop_dir / "a.csv", config(model_dir, shop_dir), predictor=ShapePredictor())
    output = (shop_dir / "a.csv").read_bytes()
    again = ShapePredictor()
    second = categorize_catalog(source, shop_dir / "a.csv", config(model_dir, shop_dir), predictor=again)
    assert (shop_dir / "a.csv").read_bytes() == output
    # 7 images classified: the first run's 6, plus images/dress.png found in the cache on its second try.
    assert (first.predicted, first.cached) == (6, 1)
    assert (second.predicted, second.cached) == (0, 7) and again.calls == []
    # Categorising the categorised file changes nothing more.
    third = categorize_catalog(shop_dir / "a.csv", shop_dir / "b.csv", config(model_dir, shop_dir), predictor=ShapePredictor())
    assert (shop_dir / "b.csv").read_bytes() == output and third.changed_cells == 0


def test_overwrite_replaces_a_filled_category(shop, model_dir):
    shop_dir, base = shop
    rows, _ = old_style_catalog(base)
    source = shop_dir / "products.csv"
    source.write_bytes(as_bytes(OLD_HEADER, rows))
    categorize_catalog(source, shop_dir / "out.csv", config(model_dir, shop_dir, overwrite=True), predictor=ShapePredictor())
    written = list(csv.reader(io.StringIO((shop_dir / "out.csv").read_text(encoding="utf-8-sig"), newline="")))
    old_coat = next(cells for cells in written if cells[0] == "old-coat")
    assert old_coat[4] == DRESSES and old_coat[5] == "Coat"  # Type is only ever filled when empty


def test_current_header_style_without_bom(shop, model_dir):
    shop_dir, base = shop

    def new_row(title="", handle="", category="", type_="", tags="", image="", position="", variant_image=""):
        return [title, handle, "", "Acme" if title else "", category, type_, tags, "TRUE" if title else "",
                "active" if title else "", "", "9.99", image, position, "", variant_image]

    rows = [new_row("Tote", "tote", image=f"{base}/tote.jpg", position="1"),
            new_row(handle="tote", image="images/dress.png", position="2"),
            new_row("Dress", "dress", tags='"red,long"', image="images/dress.png", position="1"),
            new_row("Shirt", "shirt", image="images/square.png")]
    source = shop_dir / "new.csv"
    source.write_bytes(as_bytes(NEW_HEADER, rows, newline="\n", bom=False, final_newline=True))
    report = categorize_catalog(source, shop_dir / "out.csv", config(model_dir, shop_dir), predictor=ShapePredictor())
    expected = [list(cells) for cells in rows]
    expected[0][4:7] = [HANDBAGS, "Bag", "apparel:Bag"]
    expected[2][4:7] = [DRESSES, "Dress", '"red,long, apparel:Dress"']
    assert (shop_dir / "out.csv").read_bytes() == as_bytes(NEW_HEADER, expected, newline="\n", bom=False, final_newline=True)
    assert (report.categorized, report.uncertain) == (2, 1)


def interrupted_run(shop, model_dir):
    """An old-style catalog whose run was interrupted at its third image: (shop dir, source,
    settings, the expected output rows)."""
    shop_dir, base = shop
    rows, expected = old_style_catalog(base)
    source = shop_dir / "products.csv"
    source.write_bytes(as_bytes(OLD_HEADER, rows))
    settings = config(model_dir, shop_dir, batch_size=1, read_threads=1)
    with pytest.raises(KeyboardInterrupt):
        categorize_catalog(source, shop_dir / "out.csv", settings, predictor=ShapePredictor(fail_on_call=3))
    return shop_dir, source, settings, expected


def test_an_interrupted_run_resumes_from_the_cache(shop, model_dir):
    shop_dir, source, settings, expected = interrupted_run(shop, model_dir)
    assert not (shop_dir / "out.csv").exists()  # nothing half-written
    assert len((shop_dir / "out.cache.jsonl").read_text().splitlines()) == 2
    resumed = categorize_catalog(source, shop_dir / "out.csv", settings, predictor=ShapePredictor())
    # The two finished images (images/dress.png and the tote's URL) serve five products.
    assert (resumed.cached, resumed.predicted) == (5, 2)
    assert (shop_dir / "out.csv").read_bytes() == as_bytes(OLD_HEADER, expected)
    # A damaged cache line (killed mid-write) is skipped, not fatal.
    with open(shop_dir / "out.cache.jsonl", "a") as handle:
        handle.write('{"key": "x", "probab')
    assert categorize_catalog(source, shop_dir / "out.csv", settings, predictor=ShapePredictor()).cached == 7


def test_a_cache_cut_mid_line_or_not_ours_does_not_lose_new_entries(shop, model_dir):
    shop_dir, source, settings, expected = interrupted_run(shop, model_dir)
    cache = shop_dir / "out.cache.jsonl"
    with open(cache, "a") as handle:  # a line without a key, then one killed mid-write
        handle.write('{"probabilities": [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]}\n{"key": "x", "probab')
    resumed = categorize_catalog(source, shop_dir / "out.csv", settings, predictor=ShapePredictor())
    assert (resumed.cached, resumed.predicted) == (5, 2)
    # The entries appended after the cut line start lines of their own, so nothing is predicted again.
    again = ShapePredictor()
    assert categorize_catalog(source, shop_dir / "out.csv", settings, predictor=again).cached == 7 and again.calls == []
    assert (shop_dir / "out.csv").read_bytes() == as_bytes(OLD_HEADER, expected)


def test_a_cache_entry_no_model_wrote_is_read_again_not_trusted(shop, model_dir):
    """Probabilities that are NaN or outside [0, 1] (a hand-edited or damaged cache) are skipped:
    that photo is predicted again, and the run does not stop on them."""
    shop_dir, source, settings, expected = interrupted_run(shop, model_dir)
    cache = shop_dir / "out.cache.jsonl"
    lines = cache.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2  # the two images finished before the interruption, serving five products
    for bad in (float("nan"), -0.5, 1.5):
        entries = [json.loads(line) for line in lines]
        entries[0]["probabilities"][0] = bad
        cache.write_text("".join(json.dumps(entry) + "\n" for entry in entries), encoding="utf-8")
        resumed = categorize_catalog(source, shop_dir / "out.csv", settings, predictor=ShapePredictor())
        assert resumed.cached + resumed.predicted == 7 and resumed.predicted > 2, bad  # the bad one's read again
        assert (shop_dir / "out.csv").read_bytes() == as_bytes(OLD_HEADER, expected)


def test_empty_npy_images_are_recorded_errors_and_keep_the_batch_aligned(shop, model_dir):
    shop_dir, _ = shop
    images = shop_dir / "images"
    (images / "empty.npy").write_bytes(b"")
    np.save(images / "none.npy", np.zeros((0, 28, 28), dtype=np.uint8))
    rows = [row(handle="empty", title="Empty", type='""', image_src="images/empty.npy"),
            row(handle="none", title="None", type='""', image_src="images/none.npy"),
            row(handle="dress", title="Dress", type='""', image_src="images/dress.png"),
            row(handle="tote", title="Tote", type='""', image_src="images/tote.jpg")]
    source = shop_dir / "products.csv"
    source.write_bytes(as_bytes(OLD_HEADER, rows))
    predictor = ShapePredictor()
    report = categorize_catalog(source, shop_dir / "out.csv", config(model_dir, shop_dir), predictor=predictor)
    assert (report.categorized, report.failed, predictor.calls) == (2, 2, [2])  # one batch of the two photos
    review = review_rows(shop_dir / "out.review.csv")
    assert "not a readable .npy array" in review["empty"]["error"] and "holds no images" in review["none"]["error"]
    written = {cells[0]: cells for cells in csv.reader(io.StringIO((shop_dir / "out.csv").read_text(encoding="utf-8-sig"), newline=""))}
    assert written["dress"][5] == "Dress" and written["tote"][5] == "Bag"  # each photo its own prediction

    # Should a reader ever hand back zero images for a source, the catalog records an error too.
    from apparel.batch import reading

    real = reading.read_sources

    def zero_images_for_none(sources, *args):
        for source, array, error in real(sources, *args):
            yield (source, np.zeros((0, 28, 28), np.float32), None) if source.name.endswith("none.npy") else (source, array, error)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reading, "read_sources", zero_images_for_none)
        categorize_catalog(source, shop_dir / "again.csv", config(model_dir, shop_dir), predictor=ShapePredictor())
    assert (shop_dir / "again.csv").read_bytes() == (shop_dir / "out.csv").read_bytes()
    assert review_rows(shop_dir / "again.review.csv")["none"]["error"] == "images/none.npy: holds no images"


def test_min_confidence_and_a_custom_mapping(shop, model_dir):
    shop_dir, base = shop
    rows, _ = old_style_catalog(base)
    source = shop_dir / "products.csv"
    source.write_bytes(as_bytes(OLD_HEADER, rows))
    mapping = shop_dir / "mapping.csv"
    # An id is as good as a path in the mapping; the CSV gets the node's full path.
    mapping.write_text(load_mapping_text().replace("Apparel & Accessories > Clothing > Clothing Tops > Shirts", "aa-1-13-5"), encoding="utf-8")
    report = categorize_catalog(source, shop_dir / "out.csv", config(model_dir, shop_dir, min_confidence=0.0, mapping=str(mapping)),
                                predictor=ShapePredictor())
    assert report.uncertain == 0
    written = list(csv.reader(io.StringIO((shop_dir / "out.csv").read_text(encoding="utf-8-sig"), newline="")))
    shirt = next(cells for cells in written if cells[0] == "plain-shirt")
    assert shirt[4:7] == ["Apparel & Accessories > Clothing > Clothing Tops > Overshirts", "Shirts", "apparel:Shirt"]
    mapping.write_text("class,category\nDress,aa-1-4\nJumpsuit,aa-1-9\n", encoding="utf-8")
    loaded = load_mapping(mapping, ["Dress"])  # rows for other models' classes are kept
    assert {name: node.path for name, node in loaded.items()} == {"Dress": DRESSES, "Jumpsuit": "Apparel & Accessories > Clothing > One-Pieces"}
    with pytest.raises(ValueError, match="no row for T-shirt/top"):
        load_mapping(mapping)
    with pytest.raises(ValueError, match="no row for shoes, t-shirt") as refused:
        load_mapping(mapping, ["Dress", "shoes", "t-shirt"])
    assert "capitals" not in str(refused.value)
    # A row in other capitals looks right to the eye: the message points at it.
    with pytest.raises(ValueError, match="no row for dress; .* the file has 'Dress' for 'dress': class names are compared with their capitals"):
        load_mapping(mapping, ["dress"])
    mapping.write_text("class,category\nDress,aa-1-4\nDress,aa-1-9\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 3: class 'Dress' has two rows"):
        load_mapping(mapping, ["Dress"])


def load_mapping_text() -> str:
    from apparel.shop.taxonomy import DEFAULT_MAPPING

    return DEFAULT_MAPPING.read_text(encoding="utf-8")


PHOTO_MODEL_CLASSES = ("dress", "hat", "longsleeve", "outwear", "pants", "shirt", "shoes", "shorts", "skirt", "t-shirt")


def test_the_shipped_mapping_is_the_shopify_taxonomy():
    from apparel.kinds.fashion_mnist.data import CLASS_NAMES

    mapping = {name: node.path for name, node in load_mapping().items()}
    assert mapping["Bag"] == "Apparel & Accessories > Handbags, Wallets & Cases > Handbags"
    assert mapping["Ankle boot"] == "Apparel & Accessories > Shoes > Boots"
    photo = {name: node.path for name, node in load_mapping(class_names=PHOTO_MODEL_CLASSES).items()}
    assert photo == mapping and set(mapping) == set(CLASS_NAMES) | set(PHOTO_MODEL_CLASSES)  # one file for both models
    assert mapping["dress"] == mapping["Dress"] == DRESSES and mapping["shoes"] == "Apparel & Accessories > Shoes"
    # Shopify's own nodes (aa-1-13-8 T-Shirts), not Google's "Clothing > Shirts & Tops".
    assert mapping["t-shirt"] == mapping["T-shirt/top"] == "Apparel & Accessories > Clothing > Clothing Tops > T-Shirts"
    assert mapping["shirt"] == mapping["Shirt"] == "Apparel & Accessories > Clothing > Clothing Tops > Shirts"
    assert mapping["longsleeve"] == "Apparel & Accessories > Clothing > Clothing Tops"
    assert len(mapping) == 20 and all(path.startswith("Apparel & Accessories > ") for path in mapping.values())


class PhotoShapePredictor:
    """Stands in for a photo model of classes dress, shoes, t-shirt: everything is a t-shirt."""

    def __init__(self, contract):
        self.contract, self.calls = contract, []

    def predict_proba(self, images):
        images = np.asarray(images)
        assert images.shape[1:] == self.contract.shape  # the photo pipeline, not the 28×28 one
        self.calls.append(len(images))
        return np.tile([0.05, 0.05, 0.9], (len(images), 1))


def test_a_photo_model_labels_with_its_own_classes_and_its_own_cache(shop, model_dir, photo_run):
    from apparel.contract import InputContract

    shop_dir, base = shop
    rows, _ = old_style_catalog(base)
    source = shop_dir / "products.csv"
    source.write_bytes(as_bytes(OLD_HEADER, rows))
    photo = PhotoShapePredictor(InputContract.for_run(photo_run))
    report = categorize_catalog(source, shop_dir / "out.csv", config(photo_run, shop_dir), predictor=photo)
    assert report.categorized == 7 and photo.calls
    written = list(csv.reader(io.StringIO((shop_dir / "out.csv").read_text(encoding="utf-8-sig"), newline="")))
    dress = next(cells for cells in written if cells[0] == "summer-dress")
    assert dress[4:7] == ["Apparel & Accessories > Clothing > Clothing Tops > T-Shirts", "t-shirt", "summer, sale, apparel:t-shirt"]
    # Switching the model never reuses the other model's probabilities: same output, same cache file.
    fashion = ShapePredictor()
    report = categorize_catalog(source, shop_dir / "out.csv", config(model_dir, shop_dir), predictor=fashion)
    assert (report.predicted, report.cached) == (6, 1)  # as on a first run: dress.png once, found again on a second try
    again = PhotoShapePredictor(photo.contract)
    assert categorize_catalog(source, shop_dir / "out.csv", config(photo_run, shop_dir), predictor=again).cached == 7
    assert again.calls == []


def test_a_loaded_predictor_brings_its_own_model_and_another_models_is_refused(shop, photo_run):
    """A photo run's predictor was read with the store model's categories: "sleeve_classes names
    hoodie, polo…, not classes of this model"."""
    from apparel.inference.prediction import Predictor

    shop_dir, base = shop
    rows, _ = old_style_catalog(base)
    source = shop_dir / "products.csv"
    source.write_bytes(as_bytes(OLD_HEADER, rows))
    loaded = Predictor.from_dir(photo_run)
    report = categorize_catalog(source, shop_dir / "out.csv", config(photo_run, shop_dir).replace(model_dir=None),
                                predictor=loaded)
    assert report.predicted > 0
    labels = {outcome.label for outcome in report.outcomes if outcome.label}
    assert labels and labels <= set(PHOTO_CLASSES)  # the photo run's classes, with its categories
    with pytest.raises(ParameterError, match=r"^predictor is the model of .*, but model_dir names .*store; give "
                                             r"config.model_dir the predictor's folder, or leave it out$"):
        categorize_catalog(source, shop_dir / "other.csv", config("store", shop_dir), predictor=loaded)
    assert not (shop_dir / "other.csv").exists()


def test_records_keep_their_spans_and_read_like_the_csv_module():
    text = 'a,"b,1","c ""q""\r\nd",\r\n\r\n"",x\ny,"z"'
    records = parse_records(text)
    assert [[cell.value for cell in record.cells] for record in records] == [
        row for row in csv.reader(io.StringIO(text, newline="")) if row]
    assert [text[cell.start:cell.end] for cell in records[0].cells] == ["a", '"b,1"', '"c ""q""\r\nd"', ""]
    with pytest.raises(ValueError, match="line 1: a quoted cell is never closed"):
        parse_records('a,"open\n')


def test_a_csv_cut_inside_a_quoted_cell_is_refused_even_after_doubled_quotes():
    text = 'Handle,Body\r\nx,"<p>A ""linen"" dress, ""airy""</p>\r\nsecond line"\r\ny,"say ""hi"""\r\n'
    assert [[cell.value for cell in record.cells] for record in parse_records(text)] == list(
        csv.reader(io.StringIO(text, newline="")))
    quoted = [cell for record in parse_records(text) for cell in record.cells if cell.quoted]
    for cell in quoted:
        # Every cut before the closing quote, but those just after a quote: 'x,"a ""' ends a cell "a ".
        for cut in (cut for cut in range(cell.start + 1, cell.end) if text[cut - 1] != '"'):
            with pytest.raises(ValueError, match="a quoted cell is never closed; is the CSV complete?"):
                parse_records(text[:cut])
    with pytest.raises(ValueError, match="line 1: a quoted cell is never closed"):
        parse_records('a,"open ""x"" more\n')


def test_bad_inputs_are_clear_errors(shop, model_dir):
    shop_dir, _ = shop
    source = shop_dir / "products.csv"
    source.write_bytes(as_bytes(OLD_HEADER, []))
    with pytest.raises(ValueError, match="is the input file"):
        categorize_catalog(source, source, config(model_dir, shop_dir))
    (shop_dir / "latin1.csv").write_bytes("Handle,Title\ncaf\xe9,x\n".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        categorize_catalog(shop_dir / "latin1.csv", shop_dir / "o.csv", config(model_dir, shop_dir))
    (shop_dir / "other.csv").write_text("Name,Price\nx,1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no Handle / URL handle column"):
        categorize_catalog(shop_dir / "other.csv", shop_dir / "o.csv", config(model_dir, shop_dir))
    (shop_dir / "lower.csv").write_text("Handle,Title,Type,image\nh,x,,a.jpg\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no Image Src / Product image URL column, so no photos to classify; name the "
                                         r"column that holds the image paths or URLs as image_column \(--image-column\)"):
        categorize_catalog(shop_dir / "lower.csv", shop_dir / "o.csv", config(model_dir, shop_dir))
    with pytest.raises(ValueError, match="min_confidence"):
        CatalogConfig(min_confidence=1.5)
    # Folders and unreadable files are clear errors naming the path, never tracebacks.
    (shop_dir / "good.csv").write_bytes(as_bytes(OLD_HEADER, []))
    with pytest.raises(ValueError, match=f"^{shop_dir}: cannot read it \\(Is a directory\\)"):
        categorize_catalog(shop_dir, shop_dir / "o.csv", config(model_dir, shop_dir))
    with pytest.raises(ValueError, match=f"^out {shop_dir} is a folder"):
        categorize_catalog(shop_dir / "good.csv", shop_dir, config(model_dir, shop_dir))
    with pytest.raises(ValueError, match=f"^{shop_dir}: cannot read it \\(Is a directory\\)"):
        load_mapping(shop_dir)
    with pytest.raises(ValueError, match="cannot read it"):
        categorize_catalog(shop_dir / "good.csv", shop_dir / "o.csv", config(model_dir, shop_dir, mapping=str(shop_dir)))

    def refused(self):
        raise PermissionError(13, "Permission denied", str(self))

    with pytest.MonkeyPatch.context() as patch:  # as root a chmod would not stop the read
        patch.setattr(type(source), "read_bytes", refused)
        with pytest.raises(ValueError, match=r"products.csv: cannot read it \(Permission denied\)"):
            categorize_catalog(source, shop_dir / "o.csv", config(model_dir, shop_dir))
    assert not (shop_dir / "o.csv").exists()


def test_the_image_column_can_be_named(shop, model_dir):
    """--image-column, as `apparel batch` has it: a column the export's header names otherwise."""
    shop_dir, _ = shop
    header = ["Handle", "Title", "Type", "Photo", "Image Src"]
    rows = [["dress", "Dress", "", f"{shop_dir}/images/dress.png", "images/tote.jpg"]]
    (shop_dir / "products.csv").write_bytes(as_bytes(header, rows))
    categorize_catalog(shop_dir / "products.csv", shop_dir / "out.csv", config(model_dir, shop_dir, image_column="Photo"),
                       predictor=ShapePredictor())
    assert review_rows(shop_dir / "out.review.csv") == {}                  # the dress, not the tote in Image Src
    assert (shop_dir / "out.csv").read_bytes() == as_bytes(header, [["dress", "Dress", "Dress", *rows[0][3:]]])
    with pytest.raises(ParameterError, match="^image_column 'photo' is not a column of .*: Handle, Title, Type"):
        categorize_catalog(shop_dir / "products.csv", shop_dir / "o.csv", config(model_dir, shop_dir, image_column="photo"),
                           predictor=ShapePredictor())
    parsed = build_parser().parse_args(["catalog", "products.csv", "--out", "o.csv", "--image-column", "Photo"])
    assert parsed.image_column == "Photo"


def test_a_handle_on_rows_that_disagree_is_listed_for_review_and_still_categorised(shop, model_dir):
    shop_dir, _ = shop
    header = ["Handle", "Title", "Type", "Image Src", "Image Position"]
    rows = [["dress", "Summer Dress", "", "images/dress.png", "1"],
            ["dress", "", "", "images/tote.jpg", "2"],                      # a second image: no disagreement
            ["dress", "Winter Coat", "", "images/dress.png", "3"],           # another product's title
            ["dress", "Winter Coat", "", "images/dress.png", "3"],           # the same again: noted once
            ["tote", "Tote", "", "images/tote.jpg", "1"],
            ["tote", "Tote", "", "images/dress.png", "1"]]                   # two first images
    (shop_dir / "products.csv").write_bytes(as_bytes(header, rows))
    report = categorize_catalog(shop_dir / "products.csv", shop_dir / "out.csv", config(model_dir, shop_dir),
                                predictor=ShapePredictor())
    with open(shop_dir / "out.review.csv", encoding="utf-8", newline="") as handle:
        review = [(row["handle"], row["status"], row["error"]) for row in csv.DictReader(handle)]
    assert review == [
        ("dress", "handle on rows with different titles",
         "'Summer Dress' (row 2), 'Winter Coat' (row 4); merged as one product"),
        ("tote", "handle on rows with different images at one position",
         "position 1: 'images/tote.jpg' (row 6), 'images/dress.png' (row 7); merged as one product")]
    assert (report.products, report.categorized, report.disagreeing) == (2, 2, 2)
    expected = [list(cells) for cells in rows]
    expected[0][2], expected[4][2] = "Dress", "Bag"                          # categorised as before
    assert (shop_dir / "out.csv").read_bytes() == as_bytes(header, expected)


def test_a_row_without_a_handle_is_listed_for_review_and_left_as_it_is(shop, model_dir, capsys):
    shop_dir, _ = shop
    header = ["Handle", "Title", "Type", "Image Src", "Image Position"]
    rows = [["dress", "Summer Dress", "", "images/dress.png", "1"],
            ["", "Lost Tote", "", "images/tote.jpg", "1"],                    # its handle deleted by hand
            [" ", "", "", "images/dress.png", "2"],                           # a blank handle is none either
            ["", "", "", "", ""]]                                              # empty cells: nothing to say
    (shop_dir / "products.csv").write_bytes(as_bytes(header, rows))
    report = categorize_catalog(shop_dir / "products.csv", shop_dir / "out.csv", config(model_dir, shop_dir),
                                predictor=ShapePredictor())
    with open(shop_dir / "out.review.csv", encoding="utf-8", newline="") as handle:
        review = [(row["handle"], row["title"], row["image"], row["status"], row["error"])
                  for row in csv.DictReader(handle)]
    hint = "has no Handle / URL handle, so it is no product's and was left as it is; give it its product's handle"
    assert review == [("", "Lost Tote", "images/tote.jpg", "row without a handle", f"row 3 {hint}"),
                      ("", "", "images/dress.png", "row without a handle", f"row 4 {hint}")]
    assert (report.rows, report.products, report.categorized, report.no_handle) == (4, 1, 1, 2)
    expected = [list(cells) for cells in rows]
    expected[0][2] = "Dress"
    assert (shop_dir / "out.csv").read_bytes() == as_bytes(header, expected)  # the rows are kept, untouched

    assert main(["catalog", str(shop_dir / "products.csv"), "--out", str(shop_dir / "again.csv"), "--model",
                 str(model_dir), "--images-dir", str(shop_dir)]) == 0
    assert "2 rows without a handle, no product's: left as they are (listed in the review)" in capsys.readouterr().out


class FullDiskCache:
    """The image cache on a disk that fills up: part of a line is written, then ENOSPC, and
    closing raises it again (as a buffered file whose flush failed does)."""

    def __init__(self, handle):
        self.handle = handle

    def writelines(self, lines):
        self.handle.write(lines[0][:20])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def close(self):
        self.handle.close()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("full", ["out.csv", "out.review.csv", "out.cache.jsonl"])
def test_a_full_disk_names_the_file_and_a_rerun_resumes_exactly(shop, model_dir, monkeypatch, full):
    from apparel.shop import catalog

    shop_dir, base = shop
    rows = [cells for cells in old_style_catalog(base)[0] if "/slow/" not in cells[12]]  # no time-out to wait out
    (shop_dir / "products.csv").write_bytes(as_bytes(OLD_HEADER, rows))
    settings = config(model_dir, shop_dir)
    categorize_catalog(shop_dir / "products.csv", shop_dir / "clean" / "out.csv", settings, predictor=ShapePredictor())
    real_atomic_path, real_open_cache = catalog.atomic_path, catalog.open_cache

    @contextlib.contextmanager
    def filling_up(path):
        with real_atomic_path(path) as temporary:
            yield temporary
            if Path(path).name == full:              # the disk fills up as the file is finished
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as patch:
        patch.setattr(catalog, "atomic_path", filling_up)
        if full.endswith(".jsonl"):
            patch.setattr(catalog, "open_cache", lambda path: FullDiskCache(real_open_cache(path)))
        with pytest.raises(OSError, match=f"^\\[Errno {errno.ENOSPC}\\] No space left on device while writing "
                                          f"{shop_dir / full}; nothing finished before it is lost: free some space "
                                          "and rerun the same command, which resumes$") as raised:
            categorize_catalog(shop_dir / "products.csv", shop_dir / "out.csv", settings, predictor=ShapePredictor())
    assert raised.value.errno == errno.ENOSPC
    assert not list(shop_dir.glob(".out*"))                                   # no temporary left behind
    categorize_catalog(shop_dir / "products.csv", shop_dir / "out.csv", settings, predictor=ShapePredictor())
    for name in ("out.csv", "out.review.csv"):
        assert (shop_dir / name).read_bytes() == (shop_dir / "clean" / name).read_bytes()


def test_one_run_at_a_time_writes_an_output(shop, model_dir):
    shop_dir, base = shop
    (shop_dir / "products.csv").write_bytes(as_bytes(OLD_HEADER, [row(handle="dress", title="Dress",
                                                                       image_src="images/dress.png")]))
    out = shop_dir / "out.csv"
    with another_run_holding(shop_dir / "out.csv.lock"):
        with pytest.raises(ParameterError, match=f"^out {out}: another run is writing there"):
            categorize_catalog(shop_dir / "products.csv", out, config(model_dir, shop_dir), predictor=ShapePredictor())
    assert not out.exists()
    assert categorize_catalog(shop_dir / "products.csv", out, config(model_dir, shop_dir),
                              predictor=ShapePredictor()).categorized == 1
    assert not (shop_dir / "out.csv.lock").exists()                          # removed as the run ended
    with pytest.raises(ParameterError, match="is the lock file of out"):
        categorize_catalog(shop_dir / "products.csv.lock", shop_dir / "products.csv", config(model_dir, shop_dir))


def test_no_file_written_may_be_the_input(shop, model_dir, capsys):
    """The review CSV and the cache are named after the output; neither they nor the output may
    be the input, by name or through a link, and the input stays as it was."""
    shop_dir, _ = shop
    original = as_bytes(OLD_HEADER, [row(handle="x", title="=X", image_src="images/dress.png")])
    review_input = shop_dir / "shop.review.csv"
    review_input.write_bytes(original)
    settings = config(model_dir, shop_dir)
    with pytest.raises(ParameterError, match="is the review CSV of out") as error:
        categorize_catalog(review_input, shop_dir / "shop.csv", settings, predictor=ShapePredictor())
    assert error.value.parameters == ("csv_path", "out")
    cache_input = shop_dir / "shop.cache.jsonl"
    cache_input.write_bytes(original)
    with pytest.raises(ParameterError, match="is the image cache of out"):
        categorize_catalog(cache_input, shop_dir / "shop.csv", settings, predictor=ShapePredictor())
    (shop_dir / "products.csv").write_bytes(original)
    (shop_dir / "hard.csv").hardlink_to(shop_dir / "products.csv")
    with pytest.raises(ParameterError, match="hard.csv is the input file") as error:
        categorize_catalog(shop_dir / "products.csv", shop_dir / "hard.csv", settings, predictor=ShapePredictor())
    assert error.value.parameters == ("out",)
    (shop_dir / "linked.review.csv").symlink_to(shop_dir / "products.csv")
    with pytest.raises(ParameterError, match="is the review CSV of out"):
        categorize_catalog(shop_dir / "products.csv", shop_dir / "linked.csv", settings, predictor=ShapePredictor())
    (shop_dir / "pair.review.csv").symlink_to(shop_dir / "pair.csv")
    with pytest.raises(ParameterError, match="the output .*pair.csv and the review CSV .*pair.review.csv are one file"):
        categorize_catalog(shop_dir / "products.csv", shop_dir / "pair.csv", settings, predictor=ShapePredictor())
    (shop_dir / "boxed.review.csv").mkdir()
    with pytest.raises(ParameterError, match="would write its review CSV to .*boxed.review.csv, a folder"):
        categorize_catalog(shop_dir / "products.csv", shop_dir / "boxed.csv", settings, predictor=ShapePredictor())
    # A product's own photo named as the output (a slip of tab-completion) was replaced by the CSV.
    (shop_dir / "dress.JPG").write_bytes(b"\xff\xd8 a product photo")
    for name in ("dress.JPG", "new.png"):
        with pytest.raises(ParameterError, match=f"{name} names an image file; the output is a CSV"):
            categorize_catalog(shop_dir / "products.csv", shop_dir / name, settings, predictor=ShapePredictor())
    assert (shop_dir / "dress.JPG").read_bytes() == b"\xff\xd8 a product photo" and not (shop_dir / "new.png").exists()
    assert main(["catalog", str(review_input), "--out", str(shop_dir / "shop.csv"), "--model-dir", str(model_dir)]) == 2
    printed = capsys.readouterr().err
    assert f"{review_input} is the review CSV of" in printed and "--out" in printed
    for path in (review_input, cache_input, shop_dir / "products.csv"):
        assert path.read_bytes() == original
    assert not (shop_dir / "shop.csv").exists() and not (shop_dir / "linked.csv").exists()


def test_no_file_written_may_be_the_decisions_or_the_mapping_and_an_empty_out_is_refused(shop, model_dir, capsys):
    """The merchant's decisions and mapping files are inputs as the catalog is: an output, review
    CSV or cache named like one of them is refused and the file stays as it was."""
    shop_dir, _ = shop
    (shop_dir / "products.csv").write_bytes(as_bytes(OLD_HEADER, [row(handle="x", title="X", image_src="images/dress.png")]))
    decided = b"handle,category\nx,keep\n"
    for name in ("d.csv", "d.review.csv", "d.cache.jsonl"):
        (shop_dir / name).write_bytes(decided)
        assert main(["catalog", str(shop_dir / "products.csv"), "--out", str(shop_dir / "d.csv"),
                     "--model-dir", str(model_dir), "--decisions", str(shop_dir / name)]) == 2
        printed = capsys.readouterr().err
        assert f"{shop_dir / name} is the " in printed and "--decisions" in printed and "--out" in printed, printed
        assert (shop_dir / name).read_bytes() == decided
        (shop_dir / name).unlink()
    mapping = shop_dir / "m.review.csv"
    mapping.write_bytes(b"label,category\n")
    with pytest.raises(ParameterError, match="is the review CSV of out") as error:
        categorize_catalog(shop_dir / "products.csv", shop_dir / "m.csv", config(model_dir, shop_dir, mapping=str(mapping)),
                           predictor=ShapePredictor())
    assert error.value.parameters == ("mapping", "out") and mapping.read_bytes() == b"label,category\n"
    with pytest.raises(ParameterError, match="names no file") as error:
        categorize_catalog(shop_dir / "products.csv", "", config(model_dir, shop_dir), predictor=ShapePredictor())
    assert error.value.parameters == ("out",)
    assert not (shop_dir / "d.csv").exists() and not (shop_dir / "m.csv").exists()


def test_the_review_csv_neutralises_formulas_and_the_output_keeps_them(shop, model_dir):
    """OWASP's CSV-injection rule for the review (a file for a spreadsheet): a cell starting with
    = + - @ tab or carriage return starts with ' instead. The output keeps the store's bytes."""
    shop_dir, _ = shop
    rows = [row(handle='"=HYPERLINK(""http://evil.example"",""x"")"', title="@SUM(A1:A9)", image_src="images/square.png"),
            row(handle="+plus", title='"-2+3"', image_src="=cmd|' /C calc'!A0"),
            row(handle="tabbed", title='"\tTabbed"'),
            row(handle="returned", title='"\rReturned"'),
            row(handle="dress", title="=1+1", product_category="=2+2", image_src="images/dress.png")]
    source = shop_dir / "products.csv"
    source.write_bytes(as_bytes(OLD_HEADER, rows))
    categorize_catalog(source, shop_dir / "out.csv", config(model_dir, shop_dir), predictor=ShapePredictor())
    review = (shop_dir / "out.review.csv").read_text(encoding="utf-8")
    cells = [cell for line in csv.reader(io.StringIO(review, newline="")) for cell in line]
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
    by_handle = review_rows(shop_dir / "out.review.csv")
    assert set(by_handle) == {"'=HYPERLINK(\"http://evil.example\",\"x\")", "'+plus", "tabbed", "returned", "dress"}
    # Its kept category "=2+2" is none of Shopify's: listed, and quoted safely in the review.
    assert by_handle["dress"]["status"] == "not Shopify's category" and "'=2+2'" in by_handle["dress"]["error"]
    hyperlink = by_handle["'=HYPERLINK(\"http://evil.example\",\"x\")"]
    assert (hyperlink["title"], hyperlink["status"]) == ("'@SUM(A1:A9)", "uncertain")
    assert by_handle["'+plus"]["title"] == "'-2+3" and by_handle["'+plus"]["image"] == "'=cmd|' /C calc'!A0"
    assert by_handle["'+plus"]["error"].startswith("'=cmd|' /C calc'!A0: ")
    assert (by_handle["tabbed"]["title"], by_handle["returned"]["title"]) == ("'\tTabbed", "'\rReturned")
    expected = [list(cells) for cells in rows]
    expected[4][5:7] = ["Dress", "apparel:Dress"]  # the category "=2+2" was filled already: kept as it was
    assert (shop_dir / "out.csv").read_bytes() == as_bytes(OLD_HEADER, expected)


def test_the_command_with_a_trained_model(shop, model_dir, capsys):
    shop_dir, base = shop
    rows, _ = old_style_catalog(base)
    source = shop_dir / "products.csv"
    source.write_bytes(as_bytes(OLD_HEADER, rows))
    out = shop_dir / "categorized.csv"
    assert main(["catalog", str(source), "--out", str(out), "--model", str(model_dir), "--images-dir", str(shop_dir),
                 "--min-confidence", "0", "--allow-private", "--timeout", str(TIMEOUT)]) == 0
    printed = capsys.readouterr().out
    assert "13 products in 16 rows: 7 categorised" in printed and "review:" in printed
    before = list(csv.reader(io.StringIO(source.read_text(encoding="utf-8-sig"), newline="")))
    after = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8-sig"), newline="")))
    assert len(after) == len(before)  # no row lost
    mapping = {node.path for node in load_mapping().values() if node is not None}
    for old, new in zip(before, after):
        changed = [i for i, (a, b) in enumerate(zip(old, new)) if a != b]
        assert set(changed) <= {4, 5, 6}
        if changed:
            assert new[4] == old[4] or new[4] in mapping
            assert new[6].split(", ")[-1].startswith("apparel:")
    raw_before, raw_after = source.read_bytes().split(b"\r\n"), out.read_bytes().split(b"\r\n")
    assert raw_after[3:5] == raw_before[3:5] == [b"summer-dress,,,,,,,,,M,SD-M,49.00,,,,,", b"summer-dress,,,,,,,,,,,,images/tote.jpg,2,,,"]
    assert main(["catalog", str(source), "--out", str(source)]) == 2
    assert "is the input file" in capsys.readouterr().err


def test_the_command_with_a_photo_model_writes_its_classes(shop, photo_run, capsys):
    shop_dir, base = shop
    rows, _ = old_style_catalog(base)
    source = shop_dir / "products.csv"
    source.write_bytes(as_bytes(OLD_HEADER, rows))
    out = shop_dir / "categorized.csv"
    assert main(["catalog", str(source), "--out", str(out), "--model", str(photo_run), "--images-dir", str(shop_dir),
                 "--min-confidence", "0", "--allow-private", "--timeout", str(TIMEOUT)]) == 0
    assert "13 products in 16 rows: 7 categorised" in capsys.readouterr().out
    after = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8-sig"), newline="")))
    own = {name: node.path for name, node in load_mapping(class_names=PHOTO_CLASSES).items() if name in PHOTO_CLASSES}
    written = [cells for cells in after[1:] if cells[6].startswith("apparel:") or ", apparel:" in cells[6]]
    assert len(written) == 7
    for cells in written:
        named = cells[6].split("apparel:")[-1]
        # The tag names the likeliest class when the category is that class's own, else the category.
        assert named in own or named in {path.rsplit(" > ", 1)[-1] for path in own.values()}
        if cells[0] != "old-coat":  # its category was filled already
            # At 0 the walk follows the likeliest branch to its end: one of the classes' own categories.
            assert cells[4] in own.values()
            assert cells[4] == own[named] if named in own else cells[4].endswith(" > " + named)


def test_our_tag_is_added_once_and_replaced_only_with_overwrite():
    from apparel.shop.catalog import _with_tag

    assert _with_tag("", "apparel:Dress", "apparel:", False) == "apparel:Dress"
    assert _with_tag("summer,  sale ", "apparel:Dress", "apparel:", False) == "summer,  sale, apparel:Dress"
    assert _with_tag("summer, APPAREL:dress", "apparel:Dress", "apparel:", False) == "summer, APPAREL:dress"
    assert _with_tag("summer, apparel:Coat", "apparel:Dress", "apparel:", False) == "summer, apparel:Coat"
    assert _with_tag("apparel:Coat, summer", "apparel:Dress", "apparel:", True) == "summer, apparel:Dress"


def test_edits_are_spliced_in_file_order_whatever_order_they_come_in():
    from apparel.shop.splice import splice

    text = "a,b,c\r\nd,e,f"
    assert splice(text, [(9, 10, "E"), (0, 1, "A"), (4, 5, "C")]) == "A,b,C\r\nd,E,f"
    assert splice(text, []) == text


def test_a_products_cells_go_to_the_row_that_carries_its_title(shop, model_dir):
    shop_dir, _ = shop
    rows = [row(handle="late-title", image_src="images/dress.png", image_position="1"),
            row(handle="late-title", title="Late Title", vendor="Acme", status="active")]
    source = shop_dir / "products.csv"
    source.write_bytes(as_bytes(OLD_HEADER, rows))
    categorize_catalog(source, shop_dir / "out.csv", config(model_dir, shop_dir), predictor=ShapePredictor())
    written = list(csv.reader(io.StringIO((shop_dir / "out.csv").read_text(encoding="utf-8-sig"), newline="")))
    assert written[1][4:7] == ["", "", ""]  # the first row has the image, but no title: left alone
    assert written[2][4:7] == [DRESSES, "Dress", "apparel:Dress"]


def test_the_command_passes_overwrite_on(shop, photo_run, capsys):
    shop_dir, base = shop
    rows, _ = old_style_catalog(base)
    source = shop_dir / "products.csv"
    source.write_bytes(as_bytes(OLD_HEADER, rows))
    flags = ["catalog", str(source), "--model", str(photo_run), "--images-dir", str(shop_dir), "--min-confidence", "0",
             "--allow-private", "--timeout", str(TIMEOUT)]

    def old_coat(out):
        written = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8-sig"), newline="")))
        return next(cells for cells in written if cells[0] == "old-coat")

    assert main([*flags, "--out", str(shop_dir / "kept.csv")]) == 0
    assert old_coat(shop_dir / "kept.csv")[4] == rows[5][4]  # filled already: kept
    assert main([*flags, "--out", str(shop_dir / "replaced.csv"), "--overwrite"]) == 0
    replaced = old_coat(shop_dir / "replaced.csv")
    assert replaced[4] != rows[5][4] and replaced[4] in {node.path for node in load_mapping().values() if node is not None}
    capsys.readouterr()


def test_cells_are_read_and_written_back_as_csv_would():
    from apparel.shop.splice import encode_cell

    record = parse_records("a,b\r\n")[0]
    assert [record.value(i) for i in (0, 1, 2, 5, None)] == ["a", "b", "", "", ""]  # short rows read as empty
    assert encode_cell("XL shirt", False) == "XL shirt"  # nothing to quote
    assert encode_cell("a, b", False) == '"a, b"' and encode_cell(" padded", False) == '" padded"'
    assert encode_cell('say "hi"', False) == '"say ""hi"""' and encode_cell("plain", True) == '"plain"'
    for value in ("a, b", 'say "hi"', "two\nlines", "XX"):
        assert next(csv.reader(io.StringIO(encode_cell(value, False)))) == [value]


def test_an_unclosed_quote_names_its_line():
    with pytest.raises(ValueError, match="line 3: a quoted cell is never closed"):
        parse_records('\na,b\n"open,c\n')


def test_records_know_where_they_start_and_end_whatever_the_line_ending():
    text = '"a"b,c\rx\n\n,\r\n'
    records = parse_records(text)
    assert [(record.start, record.end) for record in records] == [(0, 6), (7, 8), (10, 11)]  # the blank line is no record
    assert [[(cell.start, cell.end, cell.value, cell.quoted) for cell in record.cells] for record in records] == [
        [(0, 4, "ab", True), (5, 6, "c", False)], [(7, 8, "x", False)], [(10, 10, "", False), (11, 11, "", False)]]
    assert [[cell.value for cell in record.cells] for record in records] == [
        row for row in csv.reader(io.StringIO(text, newline="")) if row]
    assert parse_records("") == [] and parse_records("\r\n\n") == []


def test_read_csv_text_keeps_the_bom_apart_and_names_each_refusal(tmp_path):
    from apparel.errors import SourceError
    from apparel.shop.splice import BOM, read_csv_text

    path = tmp_path / "products.csv"
    path.write_bytes(BOM + "Handle,Title\r\nx,é\r\n".encode())
    assert read_csv_text(path) == (BOM, "Handle,Title\r\nx,é\r\n")
    path.write_bytes(b"a," + BOM)  # a BOM anywhere else is text
    assert read_csv_text(path) == (b"", "a,\ufeff")
    path.write_bytes(b"a,\xff\r\n")
    with pytest.raises(SourceError) as caught:
        read_csv_text(path)
    assert str(caught.value) == (f"{path}: not UTF-8 ('utf-8' codec can't decode byte 0xff in position 2: invalid start "
                                 "byte); export it from Shopify again or save it as UTF-8")
    with pytest.raises(SourceError) as caught:
        read_csv_text(tmp_path / "missing.csv")
    assert str(caught.value) == f"{tmp_path / 'missing.csv'}: file not found"
    with pytest.raises(SourceError) as caught:
        read_csv_text(tmp_path)
    assert str(caught.value) == f"{tmp_path}: cannot read it (Is a directory); give a readable CSV file"


def test_line_endings_are_read_where_each_record_ends():
    text = "\r\na,b\nc,d\r\ne\n"  # a file that starts with a blank CRLF line, then mixed endings
    assert [[cell.value for cell in record.cells] for record in parse_records(text)] == [["a", "b"], ["c", "d"], ["e"]]


COLOUR_HEADER = OLD_HEADER + ["Color (product.metafields.shopify.color-pattern)"]


def colour_shop(shop_dir) -> None:
    """A navy and a red product photo, the garment filling the middle of a white sweep."""
    garment_photo(size=(300, 400), box=(60, 60, 240, 340), colour=(30, 40, 82)).save(shop_dir / "images" / "navy.png")
    garment_photo(size=(300, 400), box=(60, 60, 240, 340), colour=(184, 32, 42)).save(shop_dir / "images" / "red.png")


def colour_catalog(shop_dir, red_cell: str = "") -> Path:
    """``colour_shop``'s photos as a navy and a red T-shirt of a CSV with the colour column (the
    red one's cell ``red_cell``: a merchant's colour, or empty)."""
    colour_shop(shop_dir)
    product = dict(vendor="Acme", status="active")
    rows = [row(handle="navy-tee", title="Navy Tee", image_src="images/navy.png", **product) + [""],
            row(handle="red-tee", title="Red Tee", image_src="images/red.png", **product) + [red_cell]]
    source = shop_dir / "products.csv"
    source.write_bytes(as_bytes(COLOUR_HEADER, rows))
    return source


def written_rows(path) -> dict[str, list[str]]:
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"), newline="")))
    return {cells[0]: cells for cells in rows[1:] if cells[0]}


def test_colour_goes_in_the_metafield_column_and_a_merchant_colour_is_kept(shop, photo_run):
    from apparel.contract import InputContract

    shop_dir, _ = shop
    source = colour_catalog(shop_dir, red_cell="Green")
    photo = PhotoShapePredictor(InputContract.for_run(photo_run))
    report = categorize_catalog(source, shop_dir / "out.csv", config(photo_run, shop_dir, colour=True), predictor=photo)
    written = written_rows(shop_dir / "out.csv")
    assert written["navy-tee"][-1] == "Navy" and "color:" not in written["navy-tee"][6]
    assert written["red-tee"][-1] == "Green"  # the merchant's own colour
    assert report.coloured == 2
    categorize_catalog(source, shop_dir / "again.csv", config(photo_run, shop_dir, colour=True, overwrite=True),
                       predictor=photo)
    assert written_rows(shop_dir / "again.csv")["red-tee"][-1] == "Red"
    # Without --colour, nothing of it is written.
    categorize_catalog(source, shop_dir / "plain.csv", config(photo_run, shop_dir), predictor=photo)
    assert written_rows(shop_dir / "plain.csv")["navy-tee"][-1] == ""


def test_a_product_left_uncertain_still_gets_its_colour(shop, photo_run):
    """Its kind was unsure, not that it is the store's: the merchant needs its colour whichever
    category they give it (it used to get none)."""
    from apparel.contract import InputContract

    shop_dir, _ = shop
    source = colour_catalog(shop_dir)
    photo = PhotoShapePredictor(InputContract.for_run(photo_run))
    settings = config(photo_run, shop_dir, colour=True, min_confidence=1.0)  # no category is ever sure enough
    report = categorize_catalog(source, shop_dir / "out.csv", settings, predictor=photo)
    written = written_rows(shop_dir / "out.csv")
    assert report.uncertain == 2 and report.categorized == 0 and report.coloured == 2
    assert (written["navy-tee"][4], written["navy-tee"][-1]) == ("", "Navy")
    assert (written["red-tee"][4], written["red-tee"][-1]) == ("", "Red")


def test_colour_becomes_a_tag_without_the_column_and_a_merchant_tag_is_kept(shop, photo_run):
    from apparel.contract import InputContract

    shop_dir, _ = shop
    colour_shop(shop_dir)
    product = dict(vendor="Acme", status="active")
    rows = [row(handle="navy-tee", title="Navy Tee", tags='"summer"', image_src="images/navy.png", **product),
            row(handle="red-tee", title="Red Tee", tags='"color:green"', image_src="images/red.png", **product)]
    source = shop_dir / "products.csv"
    source.write_bytes(as_bytes(OLD_HEADER, rows))
    photo = PhotoShapePredictor(InputContract.for_run(photo_run))
    categorize_catalog(source, shop_dir / "out.csv", config(photo_run, shop_dir, colour=True), predictor=photo)
    written = written_rows(shop_dir / "out.csv")
    assert written["navy-tee"][6] == "summer, apparel:t-shirt, color:navy"
    assert written["red-tee"][6] == "color:green, apparel:t-shirt"
    categorize_catalog(source, shop_dir / "again.csv", config(photo_run, shop_dir, colour=True, overwrite=True),
                       predictor=photo)
    assert written_rows(shop_dir / "again.csv")["red-tee"][6] == "apparel:t-shirt, color:red"


def test_a_decided_category_still_gets_the_photos_colour_and_keep_changes_nothing(shop, photo_run):
    from apparel.contract import InputContract

    shop_dir, _ = shop
    colour_shop(shop_dir)
    product = dict(vendor="Acme", status="active")
    rows = [row(handle="navy-dress", title="Navy Dress", image_src="images/navy.png", **product) + [""],
            row(handle="red-tee", title="Red Tee", image_src="images/red.png", **product) + [""],
            row(handle="navy-card", title="Navy Card", image_src="images/navy.png", **product) + [""]]
    source = shop_dir / "products.csv"
    source.write_bytes(as_bytes(COLOUR_HEADER, rows))
    photo = PhotoShapePredictor(InputContract.for_run(photo_run))
    # The merchant chose the category, not the colour; a gift card's node takes no colour.
    decisions = {"navy-dress": "aa-1-4", "red-tee": "keep", "navy-card": "gc"}
    report = categorize_catalog(source, shop_dir / "out.csv", config(photo_run, shop_dir, colour=True),
                                predictor=photo, decisions=decisions)
    written = written_rows(shop_dir / "out.csv")
    assert written["navy-dress"][4] == DRESSES and written["navy-dress"][-1] == "Navy"
    assert written["red-tee"] == written_rows(source)["red-tee"]
    assert written["navy-card"][4] == "Gift Cards" and written["navy-card"][-1] == ""
    assert (report.decided, report.coloured) == (3, 1)


def test_a_colour_is_read_with_the_category_and_kept_in_the_cache(shop, photo_run):
    """One read of each photo gives both; a rerun takes both from the cache, and a photo cached by
    a run without colour is read again once (it has none to give)."""
    from apparel.contract import InputContract

    shop_dir, _ = shop
    source = colour_catalog(shop_dir)
    photo = PhotoShapePredictor(InputContract.for_run(photo_run))
    coloured = config(photo_run, shop_dir, colour=True)
    first = categorize_catalog(source, shop_dir / "out.csv", coloured, predictor=photo)
    assert (first.predicted, first.cached) == (2, 0)
    written = (shop_dir / "out.csv").read_bytes()
    again = categorize_catalog(source, shop_dir / "out.csv", coloured, predictor=photo)
    assert (again.predicted, again.cached) == (0, 2)
    assert (shop_dir / "out.csv").read_bytes() == written
    assert {row[0]: row[-1] for row in written_rows(shop_dir / "out.csv").values()} == {"navy-tee": "Navy",
                                                                                         "red-tee": "Red"}

    plain = categorize_catalog(source, shop_dir / "plain.csv", config(photo_run, shop_dir), predictor=photo)
    assert (plain.predicted, plain.cached) == (2, 0)
    with_colour = categorize_catalog(source, shop_dir / "plain.csv", coloured, predictor=photo)
    assert (with_colour.predicted, with_colour.cached) == (2, 0)
    assert (shop_dir / "plain.csv").read_bytes() == written
    assert categorize_catalog(source, shop_dir / "plain.csv", coloured, predictor=photo).cached == 2


def test_a_colour_counts_only_where_the_file_holds_it_now(shop, photo_run, capsys):
    """A row too short for the colour's cell is reviewed and not counted; a file with neither the
    metafield column nor Tags gets no colour, and the command says why (both were counted as
    "with their colour")."""
    from apparel.contract import InputContract

    shop_dir, _ = shop
    colour_shop(shop_dir)
    product = dict(vendor="Acme", status="active")
    rows = [row(handle="navy-tee", title="Navy Tee", image_src="images/navy.png", **product) + [""],
            row(handle="red-tee", title="Red Tee", image_src="images/red.png", **product)]  # no colour cell
    source = shop_dir / "products.csv"
    source.write_bytes(as_bytes(COLOUR_HEADER, rows))
    photo = PhotoShapePredictor(InputContract.for_run(photo_run))
    report = categorize_catalog(source, shop_dir / "out.csv", config(photo_run, shop_dir, colour=True), predictor=photo)
    assert report.coloured == 1 and report.nowhere == ()
    assert written_rows(shop_dir / "out.csv")["navy-tee"][-1] == "Navy"
    assert review_rows(shop_dir / "out.review.csv")["red-tee"]["status"] == "row too short"

    no_tags = [name for name in OLD_HEADER if name != "Tags"]
    source.write_bytes(as_bytes(no_tags, [[cell for name, cell in zip(OLD_HEADER, cells) if name != "Tags"]
                                          for cells in (row(handle="navy-tee", title="Navy Tee",
                                                            image_src="images/navy.png", **product),)]))
    report = categorize_catalog(source, shop_dir / "bare.csv", config(photo_run, shop_dir, colour=True,
                                                                      sleeve_length=True), predictor=photo)
    assert (report.coloured, report.nowhere) == (0, ("colour", "sleeve_length"))
    assert main(["catalog", str(source), "--out", str(shop_dir / "cli.csv"), "--model", str(photo_run),
                 "--images-dir", str(shop_dir), "--colour"]) == 0
    said = capsys.readouterr()
    assert "0 products with their colour" in said.out
    assert ('warning: --colour: ' in said.err and "(product.metafields.shopify.color-pattern)" in said.err
            and "nor Tags, so none was written" in said.err)


def test_a_field_held_by_two_columns_is_refused_naming_them(shop, photo_run):
    """Which one to read and write would be a guess (the first was written, and a merchant's value
    in the second was kept beside a different one)."""
    from apparel.contract import InputContract
    from apparel.errors import SourceError

    shop_dir, _ = shop
    colour_shop(shop_dir)
    product = dict(vendor="Acme", status="active")
    tee = row(handle="navy-tee", title="Navy Tee", image_src="images/navy.png", **product)
    source = shop_dir / "products.csv"
    source.write_bytes(as_bytes(COLOUR_HEADER + ["Colour (product.metafields.shopify.color-pattern)"],
                                [tee + ["", "Red"]]))
    with pytest.raises(SourceError, match=r"'Color \(product.metafields.shopify.color-pattern\)' \(column 18\) and "
                                          r"'Colour \(product.metafields.shopify.color-pattern\)' \(column 19\) hold "
                                          "the same field; keep one of them"):
        categorize_catalog(source, shop_dir / "out.csv", config(photo_run, shop_dir, colour=True))
    assert not (shop_dir / "out.csv").exists()
    # Without --colour the catalog neither reads nor writes those columns: the file is taken.
    categorize_catalog(source, shop_dir / "out.csv", config(photo_run, shop_dir),
                       predictor=PhotoShapePredictor(InputContract.for_run(photo_run)))
    # Both header styles' names for one field, or one name twice, are refused whatever the flags.
    for header in (OLD_HEADER + ["URL handle"], OLD_HEADER + ["tags"]):
        source.write_bytes(as_bytes(header, [tee + [""]]))
        with pytest.raises(SourceError, match="hold the same field"):
            categorize_catalog(source, shop_dir / "twice.csv", config(photo_run, shop_dir))
    three = parse_records("Handle,Tags,tags,TAGS,Image Src\n")[0]
    with pytest.raises(SourceError, match=r"^x.csv: 'Tags' \(column 2\), 'tags' \(column 3\) and 'TAGS' \(column 4\) "
                                          "hold the same field; keep one of them and try again$"):
        find_columns(three, Path("x.csv"))
    many = parse_records("Handle,Image Src," + ",".join(["Tags"] * 10_000) + "\n")[0]
    with pytest.raises(SourceError, match=r"^x.csv: 'Tags' \(column 3\), 'Tags' \(column 4\), 'Tags' \(column 5\) "
                                          r"and 9,997 more hold the same field; keep one of them and try again$"):
        find_columns(many, Path("x.csv"))
    # The image columns --image-column stands for are not read: two of them are no matter then.
    images = parse_records("Handle,Title,Image Src,Product image URL,My Image,Tags\n")[0]
    assert find_columns(images, Path("x.csv"), image_column="My Image")["image"] == 4
    with pytest.raises(SourceError, match="'Image Src' \\(column 3\\) and 'Product image URL' \\(column 4\\) hold"):
        find_columns(images, Path("x.csv"))
    # A file that is no product export is told so first.
    with pytest.raises(SourceError, match="no Handle"):
        find_columns(parse_records("Name,Name,Price\n")[0], Path("x.csv"))


SLEEVE_HEADER = OLD_HEADER + ["Sleeve length type (product.metafields.shopify.sleeve-length-type)"]


def test_sleeve_length_goes_in_its_metafield_column_or_a_tag_and_a_merchant_value_is_kept(shop, sleeve_run, photo_run, capsys):
    """The photo model answers t-shirt (0.9) for every photo: T-Shirts, whose sleeves its record
    says are short."""
    from apparel.contract import InputContract

    shop_dir, _ = shop
    colour_shop(shop_dir)
    product = dict(vendor="Acme", status="active")
    rows = [row(handle="navy-tee", title="Navy Tee", image_src="images/navy.png", **product) + [""],
            row(handle="red-tee", title="Red Tee", image_src="images/red.png", **product) + ["Long"]]
    source = shop_dir / "products.csv"
    source.write_bytes(as_bytes(SLEEVE_HEADER, rows))
    photo = PhotoShapePredictor(InputContract.for_run(sleeve_run))
    report = categorize_catalog(source, shop_dir / "out.csv", config(sleeve_run, shop_dir, sleeve_length=True),
                                predictor=photo)
    written = written_rows(shop_dir / "out.csv")
    assert written["navy-tee"][-1] == "Short" and "sleeve-length:" not in written["navy-tee"][6]
    assert written["red-tee"][-1] == "Long"  # the merchant's own
    assert report.sleeved == 2
    categorize_catalog(source, shop_dir / "again.csv", config(sleeve_run, shop_dir, sleeve_length=True, overwrite=True),
                       predictor=photo)
    assert written_rows(shop_dir / "again.csv")["red-tee"][-1] == "Short"
    categorize_catalog(source, shop_dir / "plain.csv", config(sleeve_run, shop_dir), predictor=photo)
    assert written_rows(shop_dir / "plain.csv")["navy-tee"][-1] == ""  # only when asked for
    # Without the column: a tag, beside a merchant's own, which is kept.
    tagged = [row(handle="navy-tee", title="Navy Tee", tags='"summer"', image_src="images/navy.png", **product),
              row(handle="red-tee", title="Red Tee", tags='"sleeve-length:long"', image_src="images/red.png", **product)]
    source.write_bytes(as_bytes(OLD_HEADER, tagged))
    categorize_catalog(source, shop_dir / "tags.csv", config(sleeve_run, shop_dir, sleeve_length=True, colour=True),
                       predictor=photo)
    written = written_rows(shop_dir / "tags.csv")
    assert written["navy-tee"][6] == "summer, apparel:t-shirt, color:navy, sleeve-length:short"
    assert written["red-tee"][6] == "sleeve-length:long, apparel:t-shirt, color:red"
    # Not for a product left without a category; for one the merchant decided, only when they took
    # the model's own category (the desk's Accept), not another (a dress, against the classes).
    unsure = config(sleeve_run, shop_dir, sleeve_length=True, min_confidence=1.0)  # left uncertain: no category
    assert categorize_catalog(source, shop_dir / "unsure.csv", unsure, predictor=photo).sleeved == 0
    decided = categorize_catalog(source, shop_dir / "decided.csv", config(sleeve_run, shop_dir, sleeve_length=True),
                                 predictor=photo, decisions={"navy-tee": "aa-1-13-8", "red-tee": "aa-1-4"})
    written = written_rows(shop_dir / "decided.csv")
    assert decided.sleeved == 1 and "sleeve-length:short" in written["navy-tee"][6]
    assert written["red-tee"][6] == "sleeve-length:long, apparel:Dresses"  # the merchant's own tag, as it was
    # A model whose record names no sleeve classes (the photos model, a merchant's own) tells none.
    plain = categorize_catalog(source, shop_dir / "plain-model.csv", config(photo_run, shop_dir, sleeve_length=True),
                               predictor=PhotoShapePredictor(InputContract.for_run(photo_run)))
    assert plain.sleeved == 0
    assert main(["catalog", str(source), "--out", str(shop_dir / "cli.csv"), "--model", str(sleeve_run),
                 "--images-dir", str(shop_dir), "--sleeve-length"]) == 0
    assert "products with their sleeve length (written, or the merchant's kept)" in capsys.readouterr().out


def test_an_empty_tag_prefix_is_refused():
    """With "" every tag a product had was taken for the tool's own, and no tag was written."""
    with pytest.raises(ParameterError, match="tag_prefix must not be empty"):
        CatalogConfig(tag_prefix=" ")
    assert CatalogConfig(tag_prefix="ai:").tag_prefix == "ai:"


@pytest.mark.parametrize("separator", [";", "\t"])
def test_a_header_of_another_separator_is_told_to_be_saved_with_commas(tmp_path, separator):
    for header in (OLD_HEADER, NEW_HEADER):
        (tmp_path / "p.csv").write_text(separator.join(header) + "\n", encoding="utf-8")
        with pytest.raises(ValueError, match="header is one column of names separated by .*: save it as CSV with commas"):
            categorize_catalog(tmp_path / "p.csv", tmp_path / "o.csv")


def test_a_run_that_reads_no_photo_fails_and_says_where_it_looked(shop, model_dir, capsys):
    """A wrong --images-dir reads nothing: the command exits 1, as batch does, naming the folder;
    one readable photo among them is a run that worked."""
    shop_dir, _ = shop
    product = dict(vendor="Acme", status="active")
    source = shop_dir / "products.csv"
    source.write_bytes(as_bytes(OLD_HEADER, [row(handle="a", title="A", image_src="dress.png", **product),
                                             row(handle="b", title="B", image_src="tote.jpg", **product),
                                             row(handle="c", title="C", **product)]))
    command = ["catalog", str(source), "--out", str(shop_dir / "out.csv"), "--model", str(model_dir)]
    assert main(command) == 1
    said = capsys.readouterr()
    assert "0 categorised" in said.out and "2 with unreadable images, 1 without images" in said.out
    assert (f"none of the 2 products' images could be read" in said.err and f"inside {shop_dir}:" in said.err
            and "--images-dir" in said.err)
    assert main(command + ["--images-dir", str(shop_dir / "images"), "--min-confidence", "0"]) == 0


def test_a_row_too_short_for_its_category_is_not_counted_categorised(shop, model_dir, capsys):
    shop_dir, _ = shop
    header = ["Handle", "Image Src", "Title", "Product Category", "Type", "Tags"]
    source = shop_dir / "products.csv"
    source.write_bytes(as_bytes(header, [["dress", "images/dress.png", "Dress", "", "", ""],
                                         ["short", "images/dress.png"]]))
    report = categorize_catalog(source, shop_dir / "out.csv", config(model_dir, shop_dir))
    assert (report.products, report.categorized, report.short) == (2, 1, 1)
    assert {outcome.handle: outcome.status for outcome in report.outcomes}["short"] == "row too short"  # the desk's
    review = list(csv.DictReader(open(shop_dir / "out.review.csv", encoding="utf-8")))
    assert {entry["status"] for entry in review if entry["handle"] == "short"} == {"row too short"}
    assert main(["catalog", str(source), "--out", str(shop_dir / "cli.csv"), "--model", str(model_dir),
                 "--images-dir", str(shop_dir)]) == 0
    assert "2 products in 2 rows: 1 categorised" in capsys.readouterr().out


def test_a_run_refused_before_it_writes_leaves_no_folder(shop, model_dir, capsys):
    shop_dir, _ = shop
    source = shop_dir / "products.csv"
    source.write_bytes(as_bytes(OLD_HEADER, [row(handle="a", title="A", image_src="images/dress.png")]))
    out = shop_dir / "new" / "deeper" / "out.csv"
    assert main(["catalog", str(source), "--out", str(out), "--model", str(model_dir),
                 "--mapping", str(shop_dir / "nothing.csv")]) == 2
    assert "nothing.csv" in capsys.readouterr().err and not (shop_dir / "new").exists()
    (shop_dir / "kept").mkdir()  # a folder the user made is theirs, empty or not
    assert main(["catalog", str(source), "--out", str(shop_dir / "kept" / "out.csv"), "--model", str(model_dir),
                 "--mapping", str(shop_dir / "nothing.csv")]) == 2
    assert (shop_dir / "kept").is_dir()


def test_a_review_that_cannot_be_written_leaves_the_last_output_with_its_review(shop, model_dir, monkeypatch):
    """The output and its review are a pair: the output is renamed into place only after the
    review is written."""
    import apparel.shop.catalog as catalog

    shop_dir, _ = shop
    source = shop_dir / "products.csv"
    source.write_bytes(as_bytes(OLD_HEADER, [row(handle="a", title="A", image_src="images/dress.png")]))
    out = shop_dir / "out.csv"
    categorize_catalog(source, out, config(model_dir, shop_dir))
    before = out.read_bytes(), (shop_dir / "out.review.csv").read_bytes()

    def cut(path, review):
        raise OSError(errno.EIO, "Input/output error", str(path))

    monkeypatch.setattr(catalog, "write_review", cut)
    with pytest.raises(OSError):
        categorize_catalog(source, out, config(model_dir, shop_dir, min_confidence=0.0))
    assert (out.read_bytes(), (shop_dir / "out.review.csv").read_bytes()) == before


def test_a_wrong_kind_of_argument_to_the_library_is_a_value_error_naming_it(shop, model_dir):
    """A URL as out made folders named https:/…; a dict as config, a model's name as predictor, a
    number as progress or decisions that are not str were TypeErrors and AttributeErrors."""
    from apparel.shop.categories import run_chooser

    shop_dir, _ = shop
    csv_path, out = shop_dir / "products.csv", shop_dir / "out.csv"
    cases = [((None, out), "csv_path must be a path"), ((csv_path, "https://cdn.example.com/p.csv"), "out .* is a URL"),
             ((csv_path, out, {"images_dir": "x"}), "config must be a CatalogConfig"),
             ((csv_path, out, config(model_dir, shop_dir), "store"), "predictor must have predict_proba"),
             ((csv_path, out, config(model_dir, shop_dir), None, 3), "progress must be a function"),
             ((csv_path, out, config(model_dir, shop_dir), None, None, {"loafers": 3}), "decisions maps a product's handle")]
    for arguments, message in cases:
        with pytest.raises(ParameterError, match=message):
            categorize_catalog(*arguments)
    assert not (shop_dir / "https:").exists() and not out.exists()
    for arguments, message in (((shop_dir / "nosuch", ["a"]), "model_dir .*nosuch is no folder; give a run directory"),
                               ((model_dir, "shirt"), "class_names must be the model's class names, a list of str")):
        with pytest.raises(ParameterError, match=message):
            run_chooser(*arguments)
