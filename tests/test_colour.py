"""The product's colour from its photo (apparel.attributes): synthetic photos only, a few ms each."""

import io
from pathlib import Path

import numpy as np
import pytest

from apparel.attributes import has_colour, product_colour
from apparel.attributes.colour_space import ciede2000, lab_to_srgb, srgb_to_lab
from apparel.attributes.config import ColourConfig
from apparel.errors import ParameterError
from apparel.taxonomy import load_taxonomy

# Typical garment colours, none of them one of the naming's reference points.
SWATCHES = {"Black": (28, 28, 30), "White": (244, 244, 240), "Gray": (128, 128, 130), "Navy": (30, 40, 82),
            "Blue": (52, 100, 188), "Green": (52, 128, 72), "Red": (184, 32, 42), "Pink": (236, 142, 172),
            "Purple": (118, 62, 148), "Orange": (236, 122, 44), "Yellow": (242, 212, 60),
            "Beige": (214, 196, 166), "Brown": (108, 74, 46)}
SKIN, HAIR = (222, 170, 138), (40, 28, 22)


def garment_photo(colour, background=(250, 250, 250), size=224, seed=0) -> np.ndarray:
    """A T-shaped garment with shading folds and sensor noise, centred on ``background``."""
    rng = np.random.default_rng(seed)
    photo = np.empty((size, size, 3), np.float64)
    photo[:] = background
    garment = np.zeros((size, size), bool)
    garment[60:200, 75:150] = True   # body
    garment[60:100, 40:185] = True   # sleeves
    lab = srgb_to_lab(np.array(colour, np.float64))
    rows = np.arange(size)[:, None] * np.ones((1, size))
    shading = 6 * np.sin(rows / 9.0)  # folds: ±6 lightness
    shaded = np.stack([np.clip(lab[0] + shading, 0, 100), np.full_like(shading, lab[1]), np.full_like(shading, lab[2])], -1)
    photo[garment] = lab_to_srgb(shaded)[garment]
    photo += rng.normal(0, 2.0, photo.shape)
    return np.clip(photo, 0, 255).astype(np.uint8)


def worn_photo(colour, size=224) -> np.ndarray:
    """The garment worn: a face and arms of skin, dark hair on top, dark trousers below."""
    photo = garment_photo(colour, size=size)
    photo[8:52, 92:132] = SKIN       # face
    photo[2:22, 88:136] = HAIR       # hair
    photo[100:150, 40:62] = SKIN     # forearms below the sleeves
    photo[100:150, 163:185] = SKIN
    photo[200:224, 80:145] = (35, 35, 40)  # trousers, at the edge of the picture
    return photo


@pytest.mark.parametrize("name", list(SWATCHES))
def test_a_plain_garment_on_white_is_named_its_colour(name):
    colour = product_colour(garment_photo(SWATCHES[name]))
    assert colour.main.name == name
    assert colour.second is None
    assert colour.confidence > 0.6


@pytest.mark.parametrize("name", ["Navy", "Red", "Green", "White", "Black", "Blue"])
def test_skin_hair_and_other_garments_are_not_the_product(name):
    colour = product_colour(worn_photo(SWATCHES[name]))
    assert colour.main.name == name
    assert "Beige" not in [colour.main.name, colour.second and colour.second.name]


def test_pixels_follow_the_models_scale_rule_and_nan_is_refused():
    """A 0–1 float photo came out Black, a NaN one Black at a confidence of 1."""
    from apparel.attributes import has_colour

    photo = garment_photo(SWATCHES["Navy"])
    assert product_colour(photo.astype(np.float32) / 255).main.name == product_colour(photo).main.name == "Navy"
    for bad in (np.full(photo.shape, np.nan), -photo.astype(np.float32), photo.astype(np.float32) * 2):
        with pytest.raises(ValueError, match="pixel values must"):
            product_colour(bad)
    assert has_colour("aa-1-13-8") and not has_colour(None) and not has_colour("gc")


def test_a_coloured_floor_is_background():
    # A navy shirt photographed on a brown wooden floor (uneven: a grain of ±12 levels).
    rng = np.random.default_rng(1)
    floor = np.array((150, 110, 70)) + rng.normal(0, 6, (224, 224, 1))
    photo = garment_photo(SWATCHES["Navy"]).astype(np.float64)
    outside = np.all(photo > 240, axis=-1)
    photo[outside] = floor[outside] + np.zeros(3)
    colour = product_colour(np.clip(photo, 0, 255).astype(np.uint8))
    assert colour.main.name == "Navy"
    assert "Brown" not in colour.shares or colour.shares["Brown"] < 0.1


def test_the_white_padding_of_the_model_input_is_not_the_border():
    # A portrait photo on a beige wall, padded left and right with pure white to the model's square.
    photo = garment_photo(SWATCHES["Green"], background=(205, 190, 160))
    photo[:, :30] = 255
    photo[:, -30:] = 255
    assert product_colour(photo).main.name == "Green"


@pytest.mark.parametrize("padded", [False, True])
def test_a_product_touching_the_frame_of_a_white_studio_photo_is_the_product(padded):
    # A dress as tall as the photo (or a model cut off at the knees), on a pure-white sweep; padded
    # left and right to the model's square, the padding merges with the sweep.
    photo = garment_photo(SWATCHES["Red"], background=(255, 255, 255))
    photo[:60, 75:150] = photo[100, 100]
    photo[200:, 75:150] = photo[150, 100]
    photo = photo[:, 20:204] if not padded else photo
    colour = product_colour(photo)
    assert colour.main.name == "Red" and colour.confidence > 0.8


def test_a_coat_cut_off_by_the_frame_of_a_light_grey_studio_photo_is_the_product():
    # A worn coat from the chin to below the knees, past the top and bottom of a photo on a light
    # grey sweep (not pure white, as a JPEG studio photo is), padded with pure white to the square.
    rng = np.random.default_rng(3)
    photo = np.full((224, 224, 3), 244.0) + rng.normal(0, 1.5, (224, 224, 3))
    photo[:, :40] = photo[:, -40:] = 255
    photo[:, 62:162] = SWATCHES["Brown"]
    colour = product_colour(np.clip(photo, 0, 255).astype(np.uint8))
    assert colour.main.name == "Brown" and colour.confidence > 0.8


def test_two_colours_sharing_the_garment_give_a_second_colour():
    photo = garment_photo(SWATCHES["Navy"])
    stripes = garment_photo(SWATCHES["Red"])
    for top in range(60, 200, 40):  # red stripes, 20 pixels of every 40
        photo[top : top + 20] = stripes[top : top + 20]
    colour = product_colour(photo)
    assert {colour.main.name, colour.second.name} == {"Navy", "Red"}


def test_a_busy_print_is_multicolor():
    photo = garment_photo(SWATCHES["Red"])
    colours = [SWATCHES[name] for name in ("Red", "Yellow", "Blue", "Green", "Purple")]
    garment = ~np.all(photo > 240, axis=-1)
    for index in range(0, 224, 8):  # bands of five colours, 8 pixels each
        band = np.zeros_like(garment)
        band[index : index + 8] = True
        photo[band & garment] = colours[(index // 8) % len(colours)]
    colour = product_colour(photo)
    assert colour.main.name == "Multicolor"
    assert colour.main.handle == "color__multicolor"


def test_the_same_photo_as_floats_or_bytes_and_at_any_size():
    photo = garment_photo(SWATCHES["Purple"])
    assert product_colour(photo.astype(np.float32)).main.name == "Purple"
    tall = np.repeat(photo, 3, axis=0)[:600]  # a 600×224 photo, not a square
    assert product_colour(tall).main.name == "Purple"


def test_the_lookups_that_keep_the_step_cheap_give_the_arithmetic_s_values_to_the_bit():
    """8-bit photos take lookups and a partition where floats take the formulas and np.percentile:
    the same values, so a photo's colour does not depend on the path it took."""
    from apparel.attributes.colour import name_pixels
    from apparel.attributes.product_pixels import _percentile

    rng = np.random.default_rng(7)
    photo = rng.integers(0, 256, (56, 56, 3), dtype=np.uint8)
    assert np.array_equal(srgb_to_lab(photo), srgb_to_lab(photo.astype(np.float32)))
    gain = np.array([1.3, 1.0, 1.17], np.float32)
    balanced = np.clip(photo.astype(np.float32) * gain, 0, 255)
    assert np.array_equal(name_pixels(photo, gain), name_pixels(balanced))
    assert np.array_equal(name_pixels(photo), name_pixels(photo.astype(np.float64)))
    for count in (1, 2, 3, 57, 2352, 3015, 3136):
        for percentile in (0.0, 50.0, 90.0, 99.0, 99.5, 100.0):
            for low, high in ((180, 255), (33, 215), (9, 76), (24, 45)):  # two levels: interpolation's last bits
                pixels = rng.choice(np.array([low, high], np.uint8), (count, 3), p=[0.9, 0.1])
                expected = np.percentile(pixels.astype(np.float32), percentile, axis=0)
                found = _percentile(pixels, percentile)
                assert found.dtype == expected.dtype and np.array_equal(found, expected), (count, percentile, low)
    pixels = np.zeros((2352, 3), np.uint8)  # a 3:4 photo padded to 56×42: 0.4 of the way, from the upper end
    pixels[:2116], pixels[2116:] = 33, 215
    assert np.array_equal(_percentile(pixels, 90.0), np.percentile(pixels.astype(np.float32), 90.0, axis=0))


def test_a_nearly_black_photo_read_from_a_file_is_black(tmp_path):
    """A photo read from a file is bytes; one whose values are all 0 or 1 is a black product, not a
    0–1 float photo (which the colour step would scale to white)."""
    from PIL import Image

    from apparel.attributes import photo_attributes
    from apparel.batch.loop import predict_sources
    from apparel.images.sources import expand_sources

    photo = np.zeros((224, 224, 3), np.uint8)
    photo[40:190, 60:165] = 1
    Image.fromarray(photo).save(tmp_path / "black.png")
    results = predict_sources(expand_sources([str(tmp_path / "black.png")]), ShirtPredictor(),
                              categorize=lambda probabilities: [{"id": "aa-1-13-8"} for _ in probabilities],
                              attributes=lambda inputs, categories, _: photo_attributes(inputs, categories))
    assert results[0]["color"]["name"] == "Black"
    # The server hands the model's float32 inputs, 0–255 by the photo model's contract, over as they are.
    assert photo_attributes(photo[None].astype(np.float32), [{"id": "aa-1-13-8"}])[0]["color"]["name"] == "Black"


def test_the_answer_carries_shopify_ids():
    answer = product_colour(garment_photo(SWATCHES["Navy"])).to_dict()
    assert answer["name"] == "Navy" and answer["handle"] == "color__navy"
    assert answer["gid"] == "gid://shopify/TaxonomyValue/15"
    assert 0 < answer["confidence"] <= 1 and answer["second"] is None


def test_only_categories_whose_node_has_the_color_attribute():
    taxonomy = load_taxonomy()
    assert has_colour(taxonomy.get("aa-1-13-8"))  # T-Shirts
    without = [category for category in taxonomy if "color" not in category.attributes]
    assert without and not has_colour(without[0])


def test_not_a_photo_is_refused():
    with pytest.raises(ValueError, match="H×W×3"):
        product_colour(np.zeros((28, 28)))


def test_settings_are_checked_by_name():
    with pytest.raises(ParameterError, match="second_share"):
        ColourConfig(second_share=1.5)


def test_ciede2000_matches_the_published_pairs():
    # Sharma, Wu and Dalal (2005), pairs 1, 4 and 7 of their test data.
    first = np.array([[50, 2.6772, -79.7751], [50, -1.3802, -84.2814], [50, 0, 0]])
    second = np.array([[50, 0, -82.7485], [50, 0, -82.7485], [50, -1, 2]])
    assert np.allclose(ciede2000(first, second), [2.0425, 1.0000, 2.3669], atol=1e-4)


class ShirtPredictor:
    """A photo model that answers "t-shirt" for every photo (the store's own categories are not needed)."""

    contract = None

    def __init__(self):
        from apparel.contract import InputContract

        self.contract = InputContract("photo", 224, ("t-shirt", "not-apparel"))

    def predict_proba(self, images):
        return np.tile(np.array([[0.9, 0.1]], np.float32), (len(images), 1))

    def top_k(self, probabilities, k=3):
        from apparel.inference.prediction import Predictor

        return Predictor(model=None, contract=self.contract).top_k(probabilities, k)


def test_predictions_carry_the_colour_where_the_category_takes_one_or_the_kind_was_unsure(tmp_path):
    from PIL import Image

    from apparel.attributes import photo_attributes
    from apparel.batch.loop import predict_sources
    from apparel.images.sources import expand_sources

    names = ("Navy", "Red", "Green", "Black")
    for name in names:
        Image.fromarray(garment_photo(SWATCHES[name])).save(tmp_path / f"{name}.png")
    tee = load_taxonomy().get("aa-1-13-8")
    no_colour = next(category for category in load_taxonomy() if "color" not in category.attributes)
    # The T-shirt category takes a colour, another category none; a product left uncertain is still
    # the store's and gets its colour, one outside the vertical (a perfume) none.
    answers = iter([{"id": tee.id}, {"id": no_colour.id}, {"id": None, "reason": "uncertain"},
                    {"id": None, "reason": "outside the vertical"}])
    results = predict_sources(expand_sources([str(tmp_path / f"{name}.png") for name in names]),
                              ShirtPredictor(), categorize=lambda probabilities: [next(answers) for _ in probabilities],
                              attributes=lambda inputs, categories, _: photo_attributes(inputs, categories))
    assert results[0]["color"]["name"] == "Navy" and results[0]["color"]["gid"] == "gid://shopify/TaxonomyValue/15"
    assert "color" not in results[1]
    assert results[2]["color"]["name"] == "Green"
    assert "color" not in results[3]
    assert photo_attributes(np.stack([garment_photo(SWATCHES["Red"])]), [None]) == [{}]


def test_photos_named_together_on_a_cold_process_compute_the_naming_table_once(monkeypatch):
    """A fresh server's first concurrent uploads each name a photo on a worker thread: they wait
    for one computation of the naming table, rather than each making its own."""
    import threading

    from apparel.attributes import colour

    computations = []
    real = colour.ciede2000

    def counted(*arguments):
        computations.append(1)
        return real(*arguments)

    monkeypatch.setattr(colour, "ciede2000", counted)
    monkeypatch.setattr(colour, "_TABLE_FILE", colour._TABLE_FILE.with_name("no-such-table.npz"))  # computed
    colour._loaded_name_table.cache_clear()
    photo = garment_photo(SWATCHES["Navy"])
    names = []
    threads = [threading.Thread(target=lambda: names.append(product_colour(photo).main.name)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert names == ["Navy"] * 4
    slices_of_one_table = len(computations)
    colour._loaded_name_table.cache_clear()
    colour.prepare_colour_naming()
    assert slices_of_one_table == len(computations) - slices_of_one_table  # the four threads: one table
    colour._loaded_name_table.cache_clear()  # the shipped table again, for the tests after this one


def test_the_shipped_naming_table_is_the_one_today_s_references_give(tmp_path, monkeypatch):
    """The table ships so that no process spends a second computing it; one of other reference
    colours (edited without ``make colour-table``) is not used, a missing or broken one neither."""
    from apparel.attributes import colour

    computed = colour.computed_name_table()
    with np.load(colour._TABLE_FILE, allow_pickle=False) as shipped:
        assert np.array_equal(shipped["table"], computed), "run `make colour-table` after changing REFERENCES"
        stale = {"table": np.zeros_like(shipped["table"]), "references": shipped["references"][1:],
                 "cell": shipped["cell"]}
    np.savez(tmp_path / "stale.npz", **stale)
    np.savez(tmp_path / "out-of-range.npz", **{**stale, "table": np.full_like(stale["table"], 200),
                                               "references": colour._reference_rows()})
    (tmp_path / "broken.npz").write_bytes(b"not a table")
    whole = colour._TABLE_FILE.read_bytes()
    (tmp_path / "cut.npz").write_bytes(whole[: len(whole) // 2])
    flipped = bytearray(whole)
    flipped[len(whole) // 3] ^= 0xFF  # inside the compressed table
    (tmp_path / "flipped.npz").write_bytes(bytes(flipped))
    try:
        for name in ("stale.npz", "out-of-range.npz", "broken.npz", "cut.npz", "flipped.npz", "missing.npz"):
            monkeypatch.setattr(colour, "_TABLE_FILE", tmp_path / name)
            colour._loaded_name_table.cache_clear()
            assert np.array_equal(colour._name_table(), computed), name
    finally:
        colour._loaded_name_table.cache_clear()


def test_a_white_garment_nearly_as_light_as_the_studio_s_sweep_is_white():
    # Worn on a flat light sweep, a white garment's lit parts lie within a few CIELAB units of it:
    # taken for background, they left the folds, the skin and the other clothes to name it (Beige).
    photo = garment_photo((248, 248, 246))
    photo[8:52, 92:132] = SKIN
    photo[2:22, 88:136] = HAIR
    photo[100:150, 40:62] = photo[100:150, 163:185] = SKIN
    photo[200:224, 80:145] = (35, 35, 40)
    assert product_colour(photo).main.name == "White"
    assert product_colour(photo, ColourConfig(background_tolerance=6.0)).main.name != "White"


@pytest.mark.parametrize("border, garment, background", [
    ((99.6, 95.0), 93.0, False),  # a white sweep, uneven as a thumbnail's JPEG makes it: its flat distance
    ((50.0, 56.0), 58.0, True),   # a grey rug as uneven: its spread's distance, as before
], ids=["white sweep", "grey rug"])
def test_a_white_sweep_keeps_its_flat_distance_however_uneven_its_border(border, garment, background):
    from apparel.attributes.product_pixels import background_mask

    # The border alternates two lightnesses (one colour to the border's clustering, its spread
    # about 2.3); inside it, the first of them and a block of the garment's lightness.
    lab = np.zeros((56, 56, 3))
    lab[..., 0] = border[0]
    rows, columns = np.indices((56, 56))
    ring = (np.minimum(rows, columns) < 2) | (np.maximum(rows, columns) > 53)
    lab[ring & ((rows + columns) % 2 == 1), 0] = border[1]
    lab[18:38, 18:38, 0] = garment
    assert background_mask(lab)[18:38, 18:38].all() == background
    assert background_mask(lab)[10, 10]  # the inside of the border's own colour is background either way


def colour_benchmark():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "colour_benchmark", Path(__file__).resolve().parent.parent / "benchmarks" / "colour.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    return benchmark


def test_the_colour_benchmark_names_labelled_photos_as_thumbnails_on_request(tmp_path, monkeypatch):
    from PIL import Image

    from apparel.kinds.photo.pipeline import photo_to_rgb

    benchmark = colour_benchmark()
    photo = np.full((600, 300, 3), 255, np.uint8)
    photo[100:500, 60:240] = (25, 35, 75)  # a navy garment on a white sweep
    (tmp_path / "shirts").mkdir()
    Image.fromarray(photo).save(tmp_path / "shirts" / "navy.jpg", quality=95)
    rows = [{"path": "shirts/navy.jpg", "main": "navy", "second": "", "split": "tuning"}]
    read = []
    monkeypatch.setattr(benchmark, "photo_to_rgb", lambda image, side: read.append(image) or photo_to_rgb(image, side))
    for thumbnail, size, kind in ((None, None, None), ((60, 80), (40, 80), "JPEG")):
        assert [row["found"] for row in benchmark.label_accuracy(rows, tmp_path, thumbnail)] == ["navy"]
        if thumbnail:  # what the colour step read is the shrunk photo, a JPEG file's bytes
            shrunk = Image.open(io.BytesIO(read[-1]))
            assert (shrunk.size, shrunk.format) == (size, kind)


def test_the_recolour_check_takes_the_side_asked_for_and_names_each_colour(tmp_path):
    import scipy.io
    from PIL import Image

    benchmark = colour_benchmark()
    (tmp_path / "annotations" / "pixel-level").mkdir(parents=True)
    (tmp_path / "photos").mkdir()
    labels = np.zeros((120, 80), np.uint8)
    labels[10:30, 30:50] = 41  # skin
    labels[30:110, 15:65] = 5  # the garment
    for number in (1, 5, 10):  # 5 and 10 are kept aside, 1 is not
        scipy.io.savemat(tmp_path / "annotations" / "pixel-level" / f"{number:04d}.mat", {"groundtruth": labels})
        Image.fromarray(np.full((120, 80, 3), 120, np.uint8)).save(tmp_path / "photos" / f"{number:04d}.jpg")
    for side, people in (("training", 1), ("heldout", 2)):
        result = benchmark.recolour_check(tmp_path, 5, side)
        assert result["side"] == side and result["people"] == people
        for framing in ("person", "garment"):
            assert result[framing]["per_colour"] == {name: {"people": 1, "right": 1.0}
                                                     for name in list(benchmark.TARGETS)[:people]}
            assert result[framing]["with_skin_rule"] == 1.0
    # Framed on the garment, the picture is the garment and a tenth of its size around it.
    picture, _ = benchmark.recoloured(np.full((120, 80, 3), 120, np.uint8), labels, (28, 28, 30), "garment")
    assert picture.shape == (80 + 2 * 8, 50 + 2 * 5, 3)
    assert benchmark.recoloured(np.full((120, 80, 3), 120, np.uint8), labels, (28, 28, 30))[0].shape == (119, 69, 3)


def test_a_wrong_kind_of_argument_is_a_value_error_naming_it():
    """They were AttributeErrors from deep inside ('int' object has no attribute 'attributes')."""
    from apparel.attributes import has_colour, product_colour
    from apparel.errors import ParameterError

    for category in (3, ["aa-1"], 1.5):
        with pytest.raises(ParameterError, match="category must be a Category or its id, GID or path"):
            has_colour(category)
    with pytest.raises(ParameterError, match="photo is the photo's pixels, not its file: read it first"):
        product_colour("shirt.jpg")
    with pytest.raises(ParameterError, match="config must be a ColourConfig, got str"):
        product_colour(np.zeros((8, 8, 3), np.uint8), "x")
