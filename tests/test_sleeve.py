"""The sleeve length a model's classes tell (apparel.attributes.sleeve), on hand-made probability
vectors; the model's record that says which classes tell it; and `apparel predict --json`."""

import json

import numpy as np
import pytest

from apparel.attributes import has_sleeve_length, product_attributes, sleeve_attributes, sleeve_length
from apparel.attributes.sleeve import STORE_SLEEVE_CLASSES, THRESHOLD, SleeveLength, check_sleeve_classes
from apparel.errors import SourceError
from apparel.taxonomy import attribute
from apparel.taxonomy.decide import CategoryChooser

STORE_TOPS = ("t-shirt", "polo", "longsleeve", "hoodie", "undershirt", "shirt", "dress")
TOPS_CHOOSER = CategoryChooser({"t-shirt": "aa-1-13-8", "polo": "aa-1-13-6", "longsleeve": "aa-1-13",
                                "hoodie": "aa-1-13-13", "undershirt": "aa-1-13-9", "shirt": "aa-1-13-7",
                                "dress": "aa-1-4"}, 0.7, 0.5, STORE_SLEEVE_CLASSES)


def vector(**probabilities) -> list[float]:
    return [probabilities.get(name, 0.0) for name in STORE_TOPS]


@pytest.mark.parametrize("probabilities, expected", [
    (vector(**{"t-shirt": 0.9}), ("Short", 0.9)),
    (vector(**{"t-shirt": 0.4, "polo": 0.4, "shirt": 0.2}), ("Short", 0.8)),     # unsure which, sure of short
    (vector(longsleeve=0.5, hoodie=0.3, dress=0.2), ("Long", 0.8)),
    (vector(undershirt=0.75, **{"t-shirt": 0.25}), ("Sleeveless", 0.75)),
    (vector(**{"t-shirt": 0.45, "longsleeve": 0.45}), None),                     # short or long: neither sure
    (vector(shirt=0.95), None),                                                   # a shirt has either
    (vector(**{"t-shirt": THRESHOLD - 0.01, "shirt": 1 - THRESHOLD + 0.01}), None),
    (vector(**{"t-shirt": THRESHOLD}), ("Short", THRESHOLD)),
    (vector(**{"t-shirt": 0.9, "polo": float("nan")}), ("Short", 0.9)),          # NaN counts as none
])
def test_the_length_whose_classes_reach_the_threshold_is_told(probabilities, expected):
    found = sleeve_length(probabilities, STORE_TOPS, STORE_SLEEVE_CLASSES)
    assert (found.value.name, round(found.confidence, 6)) == expected if expected else found is None


def test_every_class_tells_a_value_of_shopify_s_attribute():
    values = {value.name for value in attribute("sleeve_length_type").values}
    assert set(STORE_SLEEVE_CLASSES.values()) <= values
    assert check_sleeve_classes({"t-shirt": "short", "tank": "spaghetti strap"}) == {
        "t-shirt": "Short", "tank": "Spaghetti strap"}
    with pytest.raises(ValueError, match="sleeve_classes must map class names to values of sleeve_length_type"):
        check_sleeve_classes({"t-shirt": "Elbow"})
    assert sleeve_length([1.0], ("jacket",), STORE_SLEEVE_CLASSES) is None  # no class that tells one
    found = SleeveLength(attribute("sleeve_length_type").value("short"), 0.91234).to_dict()
    assert found == {"name": "Short", "handle": "sleeve-length-type__short", "gid": "gid://shopify/TaxonomyValue/169",
                     "confidence": 0.912}
    with pytest.raises(ValueError, match="probabilities"):
        sleeve_length([0.5, 0.5], STORE_TOPS, STORE_SLEEVE_CLASSES)  # one per class, or the classes are misread


def test_only_a_category_whose_node_takes_one_gets_it():
    assert has_sleeve_length("aa-1-13-8") and has_sleeve_length("aa-1-13") and has_sleeve_length("aa-1-4")
    assert not has_sleeve_length("aa-1-13-13") and not has_sleeve_length("aa-8") and not has_sleeve_length(None)
    sure_tee = np.array([vector(**{"t-shirt": 0.9})] * 4)
    categories = [{"id": "aa-1-13-8"}, {"id": "aa-1-13-13"}, {"id": None, "reason": "uncertain"}, None]
    fields = sleeve_attributes(sure_tee, TOPS_CHOOSER, categories)
    assert fields[0]["sleeve_length_type"]["name"] == "Short" and fields[1:] == [{}, {}, {}]
    # With the colour: both fields, each where its category takes it.
    photos = np.full((4, 64, 64, 3), 255, np.uint8)
    photos[:, 16:48, 16:48] = (30, 40, 82)
    both = product_attributes(photos, categories, sure_tee, TOPS_CHOOSER)
    assert set(both[0]) == {"color", "sleeve_length_type"} and both[0]["color"]["name"] == "Navy"
    assert set(both[1]) == {"color"} and set(both[2]) == {"color"} and both[3] == {}
    # The same classes by a model whose record names no sleeve classes: none, whatever the names.
    plain = CategoryChooser(dict(zip(STORE_TOPS, [TOPS_CHOOSER.category_of(name) for name in STORE_TOPS])), 0.7, 0.5)
    assert sleeve_attributes(sure_tee, plain, categories) == [{}] * 4
    assert sleeve_attributes(sure_tee, None, categories) == [{}] * 4


def test_the_model_s_record_says_which_classes_tell_it_and_its_exports_carry_it(sleeve_run, photo_run, tmp_path):
    from apparel import artifacts
    from apparel.cli import main
    from apparel.inference.prediction import Predictor
    from apparel.shop.categories import run_chooser
    from conftest import PHOTO_CLASSES

    assert run_chooser(sleeve_run, PHOTO_CLASSES).sleeve_classes == {"t-shirt": "Short"}
    assert run_chooser(photo_run, PHOTO_CLASSES).sleeve_classes == {}
    assert run_chooser("store", Predictor.from_dir("store").class_names).sleeve_classes == STORE_SLEEVE_CLASSES
    # An export without its run answers with them too.
    assert main(["export", str(sleeve_run), "--format", "litert", "--out", str(tmp_path / "m.tflite")]) == 0
    export = Predictor.from_litert(tmp_path / "m.tflite")
    assert run_chooser(None, export.class_names, export=tmp_path / "m.tflite").sleeve_classes == {"t-shirt": "Short"}
    # A record naming a length Shopify has not is refused with the file, not written.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / artifacts.CATEGORIES_FILE).write_text(json.dumps({
        "categories": {"dress": "aa-1-4", "shoes": "aa-8", "t-shirt": "aa-1-13-8"},
        "sleeve_length_type": {"t-shirt": "Elbow"}, "category_threshold": 0.5, "outside_threshold": 0.5}))
    with pytest.raises(SourceError, match="sleeve_length_type: .*rebuild the model"):
        run_chooser(broken, PHOTO_CLASSES)


def test_predict_json_gives_the_sleeve_length(sleeve_run, tmp_path, capsys, monkeypatch):
    from conftest import answering

    from apparel.cli import main
    from apparel.inference.prediction import Predictor
    from test_photos import garment_photo

    garment_photo(size=(300, 400), box=(60, 60, 240, 340), colour=(30, 40, 82)).save(tmp_path / "tee.png")
    sure = answering(sleeve_run, [0.05, 0.05, 0.9])  # the tiny model's classes: dress, shoes, t-shirt
    monkeypatch.setattr(Predictor, "from_dir", classmethod(lambda cls, *arguments, **keywords: sure))
    assert main(["predict", str(sleeve_run), str(tmp_path / "tee.png"), "--json", "--runtime", "keras"]) == 0
    (answer,) = json.loads(capsys.readouterr().out)
    assert answer["category"]["path"].endswith("T-Shirts")
    assert answer["sleeve_length_type"] == {"name": "Short", "handle": "sleeve-length-type__short",
                                            "gid": "gid://shopify/TaxonomyValue/169", "confidence": 0.9}
    assert answer["color"]["name"] == "Navy"
