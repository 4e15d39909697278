"""Shopify's product taxonomy shipped with the package: lookups, search, mappings, ``apparel taxonomy``."""

import json

import pytest

from apparel.cli import main
from apparel.errors import ParameterError, SourceError
from apparel.shop.taxonomy import DEFAULT_MAPPING, load_mapping
from apparel.taxonomy import GID_PREFIX, attribute, load_taxonomy
from apparel.taxonomy.categories import DATA_FILE

TEE = "Apparel & Accessories > Clothing > Clothing Tops > T-Shirts"


def test_a_node_is_found_by_id_gid_and_path_alike():
    taxonomy = load_taxonomy()
    tee = taxonomy.get("aa-1-13-8")
    assert (tee.name, tee.path, tee.gid) == ("T-Shirts", TEE, "gid://shopify/TaxonomyCategory/aa-1-13-8")
    assert tee.parent_id == "aa-1-13" and tee.vertical == "Apparel & Accessories"
    assert "sleeve_length_type" in tee.attributes and tee.children == ()
    assert taxonomy.get(GID_PREFIX + "aa-1-13-8") is tee
    assert taxonomy.get(" apparel & accessories>clothing > CLOTHING TOPS > t-shirts ") is tee
    assert [node.id for node in taxonomy.ancestors(tee)] == ["aa", "aa-1", "aa-1-13"]
    assert taxonomy.is_ancestor("aa-1", tee) and not taxonomy.is_ancestor(tee, "aa-1") and not taxonomy.is_ancestor(tee, tee)
    assert "aa-1-13-8" in taxonomy and "aa-1-13-99" not in taxonomy


def test_every_vertical_of_the_release_is_there_and_each_path_names_one_node():
    taxonomy = load_taxonomy()
    shipped = json.loads(DATA_FILE.read_text(encoding="utf-8"))
    assert taxonomy.release == shipped["release"] == "2024-07"
    assert len(taxonomy) == 10_281 and len({node.path for node in taxonomy}) == len(taxonomy)
    assert {node.id for node in taxonomy if node.parent_id is None} == {vertical["prefix"] for vertical in shipped["verticals"]}
    for node in taxonomy:
        assert all(taxonomy.get(child).parent_id == node.id for child in node.children)


def test_a_category_of_another_vertical_is_known_and_is_not_apparel():
    taxonomy = load_taxonomy()
    cosmetics = taxonomy.get("Health & Beauty > Personal Care > Cosmetics")
    assert cosmetics.id == "hb-3-2" and cosmetics.attributes == ()  # 2024-07 lists no attributes
    assert taxonomy.vertical_of(cosmetics).name == cosmetics.vertical == "Health & Beauty"
    assert taxonomy.vertical_of("lb-1").name == "Luggage & Bags" and taxonomy.get("lb-1").attributes  # backpacks


@pytest.mark.parametrize("words", ["tee", "t-shirt", "T-Shirts", "tshirt", ["t-shirt"]])
def test_search_finds_t_shirts_first(words):
    assert load_taxonomy().search(words, limit=3)[0].id == "aa-1-13-8"


@pytest.mark.parametrize("text", ["Apparel & Accessories > Shoes", "aa-8", "gid://shopify/TaxonomyCategory/aa-8"])
def test_search_for_a_node_s_own_path_or_id_finds_it_first(text):
    """A path pasted in ranked Shoe Accessories above Shoes (more of its words matched)."""
    found = load_taxonomy().search(text, limit=3)
    assert found[0].id == "aa-8" and len(found) <= 3 and [c.id for c in found].count("aa-8") == 1


def test_search_of_no_words_is_refused_by_name():
    with pytest.raises(ParameterError, match="words must be words to look for"):
        load_taxonomy().search(None)
    for nothing in ("", "   ", []):  # not "no category matches", as if a word had been looked for
        with pytest.raises(ParameterError, match="words holds no word; give one or more to look for"):
            load_taxonomy().search(nothing)


def test_search_ranks_apparel_and_plurals_sensibly():
    taxonomy = load_taxonomy()
    assert taxonomy.search("hoodie", 1)[0].path == "Apparel & Accessories > Clothing > Clothing Tops > Hoodies"
    assert taxonomy.search("rain coats", 1)[0].id == "aa-1-10-2-10"
    assert taxonomy.search("lipstick", 1)[0].vertical == "Health & Beauty"
    assert taxonomy.search("no such garment") == []
    for limit in (0, "3", None, 2.5, True):  # a str or None was a bare TypeError
        with pytest.raises(ParameterError, match="^limit must be a whole number, at least 1"):
            taxonomy.search("tee", limit=limit)


def test_an_unknown_category_names_the_parameter_and_the_closest_nodes():
    taxonomy = load_taxonomy()
    with pytest.raises(ValueError, match=r"^category 'Apparel & Accessories > Clothing > Shirts & Tops' is not a "
                                         r"category of Shopify's product taxonomy; closest: aa-1-13-7 "):
        taxonomy.get("Apparel & Accessories > Clothing > Shirts & Tops")  # Google's taxonomy, not Shopify's
    with pytest.raises(ValueError, match="closest: aa-1-13 Apparel & Accessories > Clothing > Clothing Tops;"):
        taxonomy.get("aa-1-13-99")
    with pytest.raises(ValueError, match="closest: aa-1-4 Apparel & Accessories > Clothing > Dresses"):
        taxonomy.get("Apparel & Accessories > Clothing > Dreses")
    for blank in ("", "  ", "Apparel & Accessories >"):  # search's own "words holds no word" came out
        with pytest.raises(ParameterError, match=f"^category {blank!r} is not a category .*; give a full path or an "
                                                 "id such as aa-1-13-8") as error:
            taxonomy.get(blank)
        assert error.value.parameters == ("category",)
    # None was taken for the word "None": "closest: … Non-Electric Vehicles".
    for wrong in (None, 13, ["aa-1-4"]):
        with pytest.raises(ParameterError, match=r"^category must be an id \(aa-1-13-8\), a GID or a full path, or a "
                                                 r"Category; got "):
            taxonomy.get(wrong)
        assert wrong not in taxonomy


def test_a_category_goes_into_json_and_the_taxonomy_shows_what_it_is():
    """json.dumps(category) was a TypeError, and a notebook showed '<…Taxonomy object at 0x7f…>'."""
    import json

    taxonomy = load_taxonomy()
    tee = json.loads(json.dumps(taxonomy.get("aa-1-13-8").to_dict()))
    assert tee["path"] == "Apparel & Accessories > Clothing > Clothing Tops > T-Shirts" and tee["parent_id"] == "aa-1-13"
    assert "color" in tee["attributes"] and tee["children"] == []
    assert repr(taxonomy) == f"<Taxonomy release {taxonomy.release}: {len(taxonomy):,} categories>"


def test_attributes_give_names_ids_gids_and_values():
    color = attribute("color")
    assert (color.name, color.id, color.gid) == ("Color", 1, "gid://shopify/TaxonomyAttribute/1")
    black = color.value("black")
    assert (black.name, black.handle, black.gid) == ("Black", "color__black", "gid://shopify/TaxonomyValue/1")
    assert attribute("sleeve_length_type").value("3/4").handle == "sleeve-length-type__3-4"
    with pytest.raises(ValueError, match="^friendly_id 'size' has no values in the shipped data; known: age_group"):
        attribute("size")
    with pytest.raises(ValueError, match="^value 'Plaid' is not a value of color; it takes Beige, Black"):
        color.value("Plaid")
    with pytest.raises(ParameterError, match="^value must be a value's name, handle or friendly_id, got NoneType$"):
        color.value(None)


def test_every_row_of_the_shipped_mapping_is_a_node():
    mapping = load_mapping(DEFAULT_MAPPING, class_names=())
    taxonomy = load_taxonomy()
    assert len(mapping) == 20 and all(node is not None and taxonomy.get(node.id) is node for node in mapping.values())
    assert mapping["t-shirt"].id == mapping["T-shirt/top"].id == "aa-1-13-8"


def test_a_mapping_takes_ids_gids_and_paths_and_refuses_others_with_their_line(tmp_path):
    path = tmp_path / "mapping.csv"
    path.write_text(f"class,category\nDress,aa-1-4\ncoat,{GID_PREFIX}aa-1-10-2\nshirt,{TEE}\nsock,\n", encoding="utf-8")
    mapping = load_mapping(path, ["Dress", "coat", "shirt", "sock"])
    assert [mapping[name].id for name in ("Dress", "coat", "shirt")] == ["aa-1-4", "aa-1-10-2", "aa-1-13-8"]
    assert mapping["sock"] is None  # an empty category: write none
    # A quoted cell over two lines: the line counted is the file's, not the record's.
    path.write_text('class,category\n"Dress\n",aa-1-4\nshirt,My Shop > Shirts\n', encoding="utf-8")
    with pytest.raises(SourceError, match=rf"^{path}: line 4: category 'My Shop > Shirts' is not a category of "
                                          r"Shopify's product taxonomy; closest: aa-1-13-7 .* Clothing Tops > Shirts"):
        load_mapping(path, ["shirt"])
    path.write_text("class,category\nDress,aa-99\n", encoding="utf-8")
    with pytest.raises(SourceError, match="line 2: category 'aa-99' is not a category"):
        load_mapping(path, ["Dress"])


def test_the_command_searches_and_shows(capsys):
    assert main(["taxonomy", "search", "tee", "--limit", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].split(None, 1) == ["aa-1-13-8", TEE]
    assert main(["taxonomy", "search", "zzzz"]) == 1  # nothing found: exit 1 as grep, the hint on stderr
    found = capsys.readouterr()
    assert found.out == "" and "no category matches 'zzzz'" in found.err
    assert main(["taxonomy", "show", "Apparel & Accessories > Clothing > Clothing Tops"]) == 0
    shown = capsys.readouterr().out
    assert "gid://shopify/TaxonomyCategory/aa-1-13" in shown and "children (12):" in shown
    assert "  aa-1-13-8   T-Shirts" in shown and "Color (19): Beige, Black," in shown
    assert "top_length_type     (its values are not in the shipped data)" in shown
    assert main(["taxonomy", "show", "hb-3-2"]) == 0
    assert "attributes: none in the shipped data" in capsys.readouterr().out
    assert main(["taxonomy", "show", "aa-1-13-99"]) == 2
    assert "closest: aa-1-13 " in capsys.readouterr().err
