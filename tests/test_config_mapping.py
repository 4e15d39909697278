"""Configuration dataclasses and their command-line flags (``apparel.config``, ``apparel.cli``'s
mapping of fields to flags), on a small config made for the test: every type, bound and message."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

import pytest

from apparel.flags import add_config_flags, comma_list, config_changes, flag_name, train_config_from_args
from apparel.config import Config, TrainConfig, option, read_config_file
from apparel.errors import ParameterError


@dataclass(frozen=True)
class Knobs(Config):
    KEY_NAME = "knob"

    count: int = option(2, "how many", minimum=1, maximum=5)
    rate: float = option(0.5, "a rate", minimum=0.0, below=1.0)
    name: str = option("a", "a name", choices=("a", "b"))
    size: int | None = option(None, "a size", minimum=1, model=True)
    pair: tuple[float, float] = option((1.0, 2.5), "two numbers")
    tags: tuple[str, ...] = option((), "tags")
    flag: bool = option(False, "a flag")
    maybe: bool | None = option(None, "maybe")
    seed: int = option(0, "a seed")
    label: str = option("x", "")


@dataclass(frozen=True)
class Ordered(Config):
    low: int = option(1, "low")
    high: int = option(2, "high")

    def check(self) -> None:
        if self.low > self.high:
            raise ParameterError("{} must not be above {}", "low", "high")


def message(call, *args, **kwargs) -> str:
    with pytest.raises(ParameterError) as caught:
        call(*args, **kwargs)
    return str(caught.value)


# values and their types


def test_defaults_and_values_of_each_type():
    knobs = Knobs()
    assert (knobs.count, knobs.rate, knobs.name, knobs.size, knobs.pair, knobs.tags, knobs.flag, knobs.maybe,
            knobs.seed) == (2, 0.5, "a", None, (1.0, 2.5), (), False, None, 0)
    knobs = Knobs(count=5, rate=0, name="b", size=7, pair=[3, 4], tags=["p", "q"], flag=True, maybe=False)
    assert (knobs.count, knobs.rate, knobs.name, knobs.size, knobs.pair, knobs.tags, knobs.flag, knobs.maybe) == (
        5, 0.0, "b", 7, (3.0, 4.0), ("p", "q"), True, False)
    assert type(knobs.rate) is float and [type(value) for value in knobs.pair] == [float, float]
    assert type(knobs.pair) is tuple and type(knobs.tags) is tuple


@pytest.mark.parametrize("values, text", [
    ({"count": "3"}, "knob 'count' must be int, got '3'"),
    ({"count": 2.0}, "knob 'count' must be int, got 2.0"),
    ({"count": True}, "knob 'count' must be int, got True"),
    ({"count": None}, "knob 'count' cannot be null"),
    ({"rate": "0.5"}, "knob 'rate' must be float, got '0.5'"),
    ({"rate": False}, "knob 'rate' must be float, got False"),
    ({"name": 1}, "knob 'name' must be str, got 1"),
    ({"size": 1.5}, "knob 'size' must be int, got 1.5"),
    ({"flag": 1}, "knob 'flag' must be bool, got 1"),
    ({"flag": "yes"}, "knob 'flag' must be bool, got 'yes'"),
    ({"maybe": 0}, "knob 'maybe' must be bool, got 0"),
    ({"pair": [1]}, "knob 'pair' must be tuple, got [1]"),
    ({"pair": [1, 2, 3]}, "knob 'pair' must be tuple, got [1, 2, 3]"),
    ({"pair": ["1", 2]}, "knob 'pair' must be tuple, got ['1', 2]"),
    ({"pair": "12"}, "knob 'pair' must be tuple, got '12'"),
    ({"tags": ["a", 2]}, "knob 'tags' must be tuple, got ['a', 2]"),
    ({"tags": "ab"}, "knob 'tags' must be tuple, got 'ab'"),
])
def test_wrong_types_are_named_with_the_value(values, text):
    assert message(Knobs, **values) == text


def test_a_config_s_own_key_name_is_the_default():
    assert message(Ordered, low="1") == "config key 'low' must be int, got '1'"
    assert message(Ordered, low=None) == "config key 'low' cannot be null"
    assert message(Ordered.from_dict, {"lo": 1}) == "unknown config key 'lo'; known keys: low, high"


def test_a_type_error_is_parameter_error_naming_the_field():
    with pytest.raises(ParameterError) as caught:
        Knobs(count="3")
    assert caught.value.parameters == ("count",)
    assert caught.value.render(lambda name: "--" + name) == "knob '--count' must be int, got '3'"


# bounds and choices


@pytest.mark.parametrize("values, text", [
    ({"count": 0}, "count must be a number of at least 1, got 0"),
    ({"count": 6}, "count must be at most 5, got 6"),
    ({"rate": -0.25}, "rate must be a number of at least 0, got -0.25"),
    ({"rate": 1.0}, "rate must be below 1, got 1.0"),
    ({"rate": 1}, "rate must be below 1, got 1.0"),
    ({"size": 0}, "size must be a number of at least 1, got 0"),
    ({"name": "c"}, "unknown name 'c'; choose one of: a, b"),
])
def test_bounds_and_choices_are_named(values, text):
    assert message(Knobs, **values) == text


def test_the_bounds_themselves_are_allowed():
    knobs = Knobs(count=1, rate=0.0)
    assert (knobs.count, knobs.rate) == (1, 0.0)
    assert Knobs(count=5, rate=0.999).count == 5
    assert Knobs(size=1).size == 1


@dataclass(frozen=True)
class Share(Config):
    share: float = option(0.5, "a share", above=0.0, maximum=1.0)


def test_an_exclusive_lower_bound_refuses_the_bound_and_below():
    assert message(Share, share=0.0) == "share must be above 0, got 0.0"
    assert message(Share, share=-1) == "share must be above 0, got -1.0"
    assert (Share(share=1.0).share, Share(share=1e-9).share) == (1.0, 1e-9)


def test_cross_field_checks_run_at_construction_and_on_replace():
    assert message(Ordered, low=3) == "low must not be above high"
    ordered = Ordered(low=2)
    assert (ordered.low, ordered.high) == (2, 2)
    assert message(ordered.replace, high=1) == "low must not be above high"


def test_option_keeps_help_bounds_and_tags_and_refuses_mutable_defaults():
    field = option(3, "help text", minimum=1, maximum=9, below=10, choices=(1, 3), model=True)
    assert field.default == 3
    assert dict(field.metadata) == {"help": "help text", "minimum": 1, "maximum": 9, "below": 10, "above": None,
                                    "choices": (1, 3), "model": True}
    for mutable in ([1], {"a": 1}, {1}):
        with pytest.raises(TypeError, match="^give a tuple, not a mutable default$"):
            option(mutable, "x")


# from_dict, replace, to_dict


def test_unknown_keys_are_named_with_the_known_ones():
    known = "count, rate, name, size, pair, tags, flag, maybe, seed, label"
    assert message(Knobs.from_dict, {"count": 2, "cuont": 3}) == f"unknown knob 'cuont'; known keys: {known}"
    assert message(Knobs().replace, colour="red") == f"unknown knob 'colour'; known keys: {known}"


def test_from_dict_replace_and_to_dict_round_trip():
    knobs = Knobs.from_dict({"count": 4, "tags": ["x"]})
    assert (knobs.count, knobs.tags, knobs.rate) == (4, ("x",), 0.5)
    changed = knobs.replace(rate=0.25, pair=(0, 1))
    assert (changed.count, changed.rate, changed.pair) == (4, 0.25, (0.0, 1.0)) and knobs.rate == 0.5
    assert changed.to_dict() == {"count": 4, "rate": 0.25, "name": "a", "size": None, "pair": [0.0, 1.0],
                                 "tags": ["x"], "flag": False, "maybe": None, "seed": 0, "label": "x"}
    assert Knobs.from_dict(json.loads(json.dumps(changed.to_dict()))) == changed
    assert message(knobs.replace, count=0) == "count must be a number of at least 1, got 0"


def test_value_type_drops_none_and_generic_arguments():
    assert [Knobs.value_type(name) for name in ("count", "rate", "name", "size", "pair", "tags", "flag", "maybe")] == [
        int, float, str, int, tuple, tuple, bool, bool]


def test_help_shows_the_default_where_there_is_one():
    assert Knobs.help("count") == "how many (default 2)"
    assert Knobs.help("rate") == "a rate (default 0.5)"
    assert Knobs.help("name") == "a name (default a)"
    assert Knobs.help("pair") == "two numbers (default 1.0,2.5)"
    assert Knobs.help("seed") == "a seed (default 0)"
    for name, text in (("size", "a size"), ("tags", "tags"), ("flag", "a flag"), ("maybe", "maybe"), ("label", "")):
        assert Knobs.help(name) == text
    assert TrainConfig.help("metrics") == "comma-separated Keras metric names (default accuracy)"


def test_train_config_model_options_are_the_fields_marked_model():
    config = TrainConfig(hidden=64, dropout=0.25)
    options = config.model_options()
    assert list(options) == ["hidden", "outputs", "activation", "depth", "blocks", "width", "dropout", "batch_norm",
                             "image_size"]
    assert (options["hidden"], options["dropout"], options["depth"]) == (64, 0.25, None)


# config files


def test_save_and_load_keep_every_value_and_the_extra_keys(tmp_path):
    config = TrainConfig(epochs=3, metrics=("accuracy", "AUC"), dropout=0.5)
    config.save(tmp_path / "config.json", {"versions": {"keras": "3"}, "input": {"kind": "photo"}})
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["epochs"] == 3 and written["metrics"] == ["accuracy", "AUC"] and written["versions"] == {"keras": "3"}
    assert TrainConfig.load(tmp_path / "config.json") == config
    config.save(tmp_path / "plain.json")
    assert json.loads((tmp_path / "plain.json").read_text()) == config.to_dict()


def test_read_config_file_by_suffix(tmp_path):
    (tmp_path / "a.toml").write_text('epochs = 3\nmetrics = ["accuracy"]\n', encoding="utf-8")
    assert read_config_file(tmp_path / "a.toml") == {"epochs": 3, "metrics": ["accuracy"]}
    (tmp_path / "b.json").write_text('{"optimizer": "sgd", "activation": "é"}', encoding="utf-8")
    assert read_config_file(tmp_path / "b.json") == {"optimizer": "sgd", "activation": "é"}
    (tmp_path / "c.cfg").write_text('{"epochs": 4}')
    assert read_config_file(str(tmp_path / "c.cfg")) == {"epochs": 4}


def test_config_file_errors_name_the_file_and_what_is_wrong(tmp_path):
    missing = tmp_path / "missing.json"
    with pytest.raises(ValueError) as caught:
        read_config_file(missing)
    assert str(caught.value) == f"cannot read config file {missing}: No such file or directory"
    (tmp_path / "bad.toml").write_text("epochs = ")
    with pytest.raises(ValueError) as caught:
        read_config_file(tmp_path / "bad.toml")
    assert str(caught.value).startswith(f"config file {tmp_path / 'bad.toml'} is not valid toml: ")
    (tmp_path / "bad").write_text("{")
    with pytest.raises(ValueError) as caught:
        read_config_file(tmp_path / "bad")
    assert str(caught.value).startswith(f"config file {tmp_path / 'bad'} is not valid JSON: ")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(ValueError) as caught:
        read_config_file(tmp_path / "list.json")
    assert str(caught.value) == f"config file {tmp_path / 'list.json'} must hold a mapping of parameter names to values"


# command-line flags


def test_flag_names():
    assert flag_name("images_dir") == "--images-dir"
    assert flag_name("epochs") == "--epochs"
    assert (flag_name("out_dir"), flag_name("run_dir"), flag_name("csv_path"), flag_name("manifest")) == (
        "--out", "--out", "CSV", "MANIFEST")


def test_comma_lists():
    assert comma_list()(" a, b ,,c ") == ("a", "b", "c")
    assert comma_list()("accuracy") == ("accuracy",)
    assert comma_list()(" , ") == ()
    assert comma_list(float)("1, 2.5") == (1.0, 2.5)
    with pytest.raises(ValueError):
        comma_list(int)("1,x")


def knob_parser(skip=()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_config_flags(parser, Knobs, skip=skip)
    return parser


def test_one_flag_per_field_each_not_given_by_default():
    args = knob_parser().parse_args([])
    assert vars(args) == {name: None for name in ("count", "rate", "name", "size", "pair", "tags", "flag", "maybe",
                                                  "seed", "label")}
    assert config_changes(args, Knobs) == {}


def test_flags_parse_to_the_field_s_type():
    args = knob_parser().parse_args(["--count", "3", "--rate", "0.25", "--name", "b", "--size", "9", "--pair", "1,2",
                                     "--tags", " p, q ,", "--flag", "--no-maybe", "--seed", "0"])
    changes = config_changes(args, Knobs)
    assert changes == {"count": 3, "rate": 0.25, "name": "b", "size": 9, "pair": (1.0, 2.0), "tags": ("p", "q"),
                       "flag": True, "maybe": False, "seed": 0}
    # A tuple flag's items have the field's item type, so the config takes them as they are.
    knobs = Knobs().replace(**changes)
    assert (knobs.count, knobs.pair, knobs.tags, knobs.maybe, knobs.seed) == (3, (1.0, 2.0), ("p", "q"), False, 0)
    with pytest.raises(argparse.ArgumentError, match="invalid comma-separated float value: '1,x'"):
        knob_parser().parse_args(["--pair", "1,x"])
    assert config_changes(knob_parser().parse_args(["--no-flag"]), Knobs) == {"flag": False}
    with pytest.raises(argparse.ArgumentError):
        knob_parser().parse_args(["--count", "2.5"])


def test_each_flag_carries_its_field_s_help():
    actions = {action.dest: action for action in knob_parser()._actions}
    assert actions["count"].help == "how many (default 2)" and actions["count"].option_strings == ["--count"]
    assert actions["pair"].help == "two numbers (default 1.0,2.5)" and actions["pair"].metavar == "A,B"
    assert actions["flag"].option_strings == ["--flag", "--no-flag"] and actions["flag"].default is None


def test_skipped_fields_get_no_flag():
    parser = knob_parser(skip=("rate", "flag"))
    assert "rate" not in vars(parser.parse_args([])) and "flag" not in vars(parser.parse_args([]))
    with pytest.raises(SystemExit):
        parser.parse_args(["--rate", "0.1"])
    assert vars(parser.parse_args(["--count", "4"]))["count"] == 4


def test_config_changes_ignore_fields_without_a_flag():
    args = argparse.Namespace(count=4, tags=None, other=1)
    assert config_changes(args, Knobs) == {"count": 4}


def test_train_config_from_flags_alone_and_over_a_file(tmp_path):
    args = argparse.Namespace(config=None, epochs=7, metrics=("AUC",), optimizer=None)
    config = train_config_from_args(args)
    assert (config.epochs, config.metrics, config.optimizer) == (7, ("AUC",), "adam")
    (tmp_path / "run.json").write_text('{"epochs": 2, "optimizer": "sgd", "versions": {}}')
    args = argparse.Namespace(config=str(tmp_path / "run.json"), epochs=None, metrics=None, optimizer=None)
    config = train_config_from_args(args)
    assert (config.epochs, config.optimizer, config.batch_size) == (2, "sgd", 32)


@dataclass(frozen=True)
class Mixed(Config):
    either: int | str = option(1, "a number or a name")
    plain: int = 3  # a field without an option: no help text
    out_dir: str | None = option(None, "where")


def test_a_field_of_two_types_names_both():
    assert Mixed(either="x").either == "x" and Mixed(either=2).either == 2
    assert message(Mixed, either=1.5) == "config key 'either' must be int or str, got 1.5"


def test_a_field_without_an_option_has_no_help():
    assert Mixed.help("plain") == ""
    assert Mixed.help("either") == "a number or a name (default 1)"


def test_coerce_names_a_config_key_by_default():
    from apparel.config import _coerce

    with pytest.raises(ParameterError) as caught:
        _coerce("epochs", None, int)
    assert str(caught.value) == "config key 'epochs' cannot be null"
    assert _coerce("epochs", 3, int | None) == 3 and _coerce("rate", 3, float) == 3.0


def test_a_config_file_s_format_is_named_by_its_suffix(tmp_path):
    (tmp_path / "bad.XML").write_text("<x/>")
    with pytest.raises(ValueError) as caught:
        read_config_file(tmp_path / "bad.XML")
    assert str(caught.value).startswith(f"config file {tmp_path / 'bad.XML'} is not valid XML: ")


def test_a_renamed_flag_still_sets_its_field_and_later_fields_keep_their_flags():
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_config_flags(parser, Mixed, skip=("either",))
    args = parser.parse_args(["--out", "runs/x", "--plain", "4"])
    assert config_changes(args, Mixed) == {"out_dir": "runs/x", "plain": 4}
    actions = {action.dest: action for action in knob_parser(skip=("rate",))._actions}
    assert actions["flag"].help == "a flag" and actions["maybe"].help == "maybe"
    assert actions["tags"].help == "tags" and actions["seed"].help == "a seed (default 0)"
    assert "rate" not in actions and actions["count"].type is int and actions["size"].type is int


@dataclass(frozen=True)
class Lists(Config):
    weights: tuple[float, ...] | None = option(None, "weights")
    pair: tuple[int, float] = option((1, 0.5), "a count and a rate")


def test_a_tuple_flag_reads_items_of_the_field_s_type_even_when_optional():
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_config_flags(parser, Lists)
    args = parser.parse_args(["--weights", "0.5,2", "--pair", "3,2.5"])
    # A tuple of one item type (optional or not) reads that type; a tuple of mixed types reads text.
    assert config_changes(args, Lists) == {"weights": (0.5, 2.0), "pair": ("3", "2.5")}
    with pytest.raises(argparse.ArgumentError, match="invalid comma-separated float value: 'x'"):
        parser.parse_args(["--weights", "x"])
