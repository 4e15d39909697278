"""Choosing a Shopify category from class probabilities: the hierarchy, abstaining, the reasons,
and how a run's own categories and thresholds are found."""

import json

import numpy as np
import pytest

from apparel.errors import ParameterError, SourceError
from apparel.artifacts import CATEGORIES_FILE
from apparel.shop.categories import optional_run_chooser, run_chooser
from apparel.taxonomy import load_taxonomy
from apparel.taxonomy.decide import OUTSIDE, UNCERTAIN, CategoryChooser
from apparel.taxonomy.judge import judge

CLASSES = {"t-shirt": "aa-1-13-8", "shirt": "aa-1-13-7", "sandals": "aa-8-6", "sneakers": "aa-8-8",
           "backpack": "lb-1", "not-apparel": None}


def chooser(category=0.6, outside=0.8):
    return CategoryChooser(CLASSES, category, outside)


def probabilities(**mass):
    return [mass.get(name.replace("-", "_"), 0.0) for name in CLASSES]


def test_a_sure_leaf_is_written():
    decision = chooser().choose(probabilities(t_shirt=0.9, shirt=0.1))
    assert decision.category.id == "aa-1-13-8" and decision.reason is None
    assert decision.confidence == pytest.approx(0.9)


def test_an_unsure_leaf_gives_its_sure_parent():
    decision = chooser().choose(probabilities(sandals=0.45, sneakers=0.4, t_shirt=0.15))
    assert decision.category.name == "Shoes" and decision.confidence == pytest.approx(0.85)
    decision = chooser().choose(probabilities(t_shirt=0.35, shirt=0.35, sneakers=0.3))
    assert decision.category.name == "Clothing Tops"


def test_the_deepest_sure_node_wins_over_a_likelier_ancestor():
    # Clothing (0.95) is likelier than Clothing Tops (0.95, equal) and T-Shirts (0.7): the deepest sure one.
    decision = chooser().choose(probabilities(t_shirt=0.7, shirt=0.25, sneakers=0.05))
    assert decision.category.id == "aa-1-13-8"


def test_at_zero_the_likeliest_branch_is_followed_to_its_end():
    # Shoes (0.5) beat Clothing (0.4); within Shoes, Sneakers (0.3) beat Sandals (0.2).
    decision = chooser(category=0.0).choose(probabilities(sandals=0.2, sneakers=0.3, t_shirt=0.4, backpack=0.1))
    assert decision.category.id == "aa-8-8"


def test_the_vertical_root_is_never_written():
    # Apparel & Accessories holds 0.8, but no node below it reaches 0.6: left as uncertain.
    decision = chooser().choose(probabilities(t_shirt=0.4, sandals=0.4, backpack=0.2))
    assert decision.category is None and decision.reason == UNCERTAIN
    assert decision.confidence == pytest.approx(0.4)


def test_a_class_of_the_vertical_itself_adds_to_no_category_and_is_not_outside():
    """``other-apparel`` (the store model's: something worn that none of its classes names) takes
    probability from every category without making the product "outside the vertical"."""
    other = CategoryChooser({**CLASSES, "other-apparel": "aa"}, 0.6, 0.5)
    assert "aa" not in [node.id for node in other.nodes]
    masses = [0.0] * len(other.class_names)
    masses[other.class_names.index("other-apparel")], masses[other.class_names.index("shirt")] = 0.55, 0.45
    decision = other.choose(masses)
    assert decision.category is None and decision.reason == UNCERTAIN
    assert decision.confidence == pytest.approx(0.45), "the likeliest category's, not the vertical's"
    masses[other.class_names.index("other-apparel")], masses[other.class_names.index("shirt")] = 0.3, 0.7
    assert other.choose(masses).category.id == "aa-1-13-7"
    assert other.category_of("other-apparel").id == "aa"


def test_not_apparel_is_left_with_its_reason():
    decision = chooser().choose(probabilities(not_apparel=0.85, t_shirt=0.15))
    assert decision.category is None and decision.reason == OUTSIDE
    assert decision.confidence == pytest.approx(0.85)
    # Under the outside threshold, the rest decides: here nothing is sure enough.
    assert chooser().choose(probabilities(not_apparel=0.7, t_shirt=0.3)).reason == UNCERTAIN


def test_thresholds_are_settable_and_checked():
    row = probabilities(t_shirt=0.55, shirt=0.45)
    assert chooser(category=0.6).choose(row).category.name == "Clothing Tops"
    assert chooser(category=0.5).choose(row).category.name == "T-Shirts"
    with pytest.raises(ParameterError, match="category_threshold"):
        CategoryChooser(CLASSES, 1.5, 0.5)
    with pytest.raises(ParameterError, match="outside_threshold"):
        CategoryChooser(CLASSES, 0.5, 0.0)
    with pytest.raises(ParameterError, match="probabilities"):
        chooser().choose_all(np.zeros((2, 3)))


def test_rows_that_are_no_probabilities_are_refused_not_walked():
    """NaN compared false at every step: a model trained into NaN got the first category of all."""
    for row in ([np.nan] * 6, [-1.0] * 6, [5.0] * 6, probabilities(t_shirt=0.9, shirt=0.9)):
        with pytest.raises(ParameterError, match="probabilities must be each row's class probabilities"):
            chooser().choose(row)
    assert chooser().choose(probabilities(t_shirt=0.9005, shirt=0.1)).category.id == "aa-1-13-8"  # float16 rounding
    assert chooser().category_of("backpack").id == "lb-1"
    with pytest.raises(ParameterError, match="'jumper' is none of this model's classes"):
        chooser().category_of("jumper")


def test_a_category_outside_the_taxonomy_is_refused():
    with pytest.raises(ValueError, match="category"):
        CategoryChooser({"shirt": "Apparel & Accessories > Clothing > Shirts & Tops"}, 0.5, 0.5)


def test_every_answer_has_id_gid_path_and_confidence():
    answer = chooser().choose(probabilities(backpack=1.0)).to_dict()
    assert answer == {"id": "lb-1", "gid": "gid://shopify/TaxonomyCategory/lb-1",
                      "path": "Luggage & Bags > Backpacks", "confidence": 1.0, "reason": None}
    assert chooser().choose(probabilities(not_apparel=1.0)).to_dict()["path"] is None


def test_judge_names_exact_parent_wrong_and_blank():
    taxonomy = load_taxonomy()
    assert judge(taxonomy.get("aa-8-6"), "aa-8-6") == "exact"
    assert judge(taxonomy.get("aa-8"), "aa-8-6") == "parent"
    assert judge(taxonomy.get("aa"), "aa-8-6") == "wrong"  # the vertical's root tells nothing
    assert judge(taxonomy.get("aa-8-8"), "aa-8-6") == "wrong"
    assert judge(taxonomy.get("aa-8-6"), None) == "wrong"
    assert judge(None, None) == "blank-right" and judge(None, "aa-8-6") == "blank"


def test_a_run_brings_its_own_categories_and_thresholds(tmp_path):
    (tmp_path / CATEGORIES_FILE).write_text(json.dumps(
        {"categories": CLASSES, "category_threshold": 0.9, "outside_threshold": 0.5}), encoding="utf-8")
    found = run_chooser(tmp_path, list(CLASSES))
    assert (found.category_threshold, found.outside_threshold) == (0.9, 0.5)
    assert run_chooser(tmp_path, list(CLASSES), category_threshold=0.4).category_threshold == 0.4
    with pytest.raises(SourceError, match="no category for jacket"):
        run_chooser(tmp_path, [*CLASSES, "jacket"])
    (tmp_path / CATEGORIES_FILE).write_text("{", encoding="utf-8")
    with pytest.raises(SourceError, match="unreadable"):
        run_chooser(tmp_path, list(CLASSES))


def test_a_shipped_model_s_categories_by_its_name_and_thresholds_that_are_no_numbers():
    from apparel.contract import InputContract
    from apparel.errors import ParameterError

    names = InputContract.for_run("store").class_names
    assert run_chooser("store", names).category_threshold == 0.7  # its categories.json, not the ten-class mapping
    for value in ("0.5", True):  # a TypeError from a comparison named nothing; a flag is no threshold
        with pytest.raises(ParameterError, match="outside_threshold must be a number in"):
            run_chooser("store", names, outside_threshold=value)
    from fractions import Fraction

    for value in (Fraction(1, 2), np.array(0.5), np.float32(0.5), 1):  # any real number is one
        assert run_chooser("store", names, category_threshold=value).category_threshold == value


def test_without_categories_the_shipped_mapping_serves_known_classes(tmp_path):
    from apparel.contract import InputContract

    known = InputContract(kind="photo", size=32, class_names=("dress", "shoes", "t-shirt"))
    decision = optional_run_chooser(tmp_path, known.class_names).choose([0.1, 0.1, 0.8])
    assert decision.category.id == "aa-1-13-8"
    own = InputContract(kind="photo", size=32, class_names=("capes", "cloaks"))
    assert optional_run_chooser(tmp_path, own.class_names) is None  # a merchant's own classes: no category, no error


def test_a_model_of_its_own_classes_is_told_to_give_a_mapping_not_to_edit_the_package():
    """It said "…/apparel/shop/taxonomy.csv: no row for bottoms, caps; give every class a row"."""
    from apparel.errors import ParameterError
    from apparel.shop.taxonomy import load_mapping

    with pytest.raises(ParameterError, match="this model's classes bottoms, caps have no Shopify category of their "
                                             "own; give mapping FILE") as error:
        load_mapping(None, ["bottoms", "caps"])
    assert error.value.parameters == ("mapping",)
