import json
from pathlib import Path

import pytest

from apparel.cli import build_parser
from apparel.flags import train_config_from_args
from apparel.config import TrainConfig


def test_round_trip_through_json(tmp_path):
    config = TrainConfig(optimizer="ftrl", hidden=128, metrics=("accuracy", "AUC"), learning_rate=0.01)
    path = tmp_path / "config.json"
    config.save(path, {"versions": {"keras": "3"}})
    assert TrainConfig.load(path) == config
    assert json.loads(path.read_text())["versions"] == {"keras": "3"}


def test_a_path_and_numpy_numbers_are_taken_as_what_they_name():
    """CatalogConfig(images_dir=Path(...)) was refused ("must be str, got PosixPath"), and a grid's
    np.int64 epochs "must be int"; they are kept as JSON's str and int."""
    import numpy as np

    from apparel.shop.catalog import CatalogConfig

    config = CatalogConfig(images_dir=Path("shop/photos"), model_dir=Path("store"))
    assert config.images_dir == "shop/photos" and config.model_dir == "store"
    train = TrainConfig(epochs=np.int64(3), learning_rate=np.float32(0.5))
    assert type(train.epochs) is int and train.epochs == 3 and type(train.learning_rate) is float
    assert json.loads(json.dumps(train.to_dict()))["epochs"] == 3
    for bad in ({"epochs": np.bool_(True)}, {"epochs": 2.5}, {"epochs": True}):
        with pytest.raises(ValueError, match="'epochs' must be int"):
            TrainConfig(**bad)


def test_unknown_key_is_named(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown config key 'epoch'"):
        TrainConfig.from_dict({"epoch": 3})
    # The CLI named a flag for the key, "(--epoch)", which train does not have: the file's flag is the one.
    from apparel.cli import main

    (tmp_path / "config.json").write_text('{"epoch": 3}')
    assert main(["train", "--config", str(tmp_path / "config.json"), "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert "unknown config key 'epoch'" in error and error.endswith("(--config)\n") and "--epoch" not in error
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "values, message",
    [
        ({"epochs": "20"}, "'epochs' must be int"),
        ({"epochs": 2.5}, "'epochs' must be int"),
        ({"batch_norm": 1}, "'batch_norm' must be bool"),
        ({"metrics": [1, 2]}, "'metrics' must be tuple"),
        ({"optimizer": None}, "'optimizer' cannot be null"),
    ],
)
def test_wrong_types_are_named(values, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict(values)


def test_integers_are_accepted_for_floats():
    assert TrainConfig.from_dict({"learning_rate": 1}).learning_rate == 1.0


def test_defaults_then_file_then_flags(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text('optimizer = "sgd"\nepochs = 3\nhidden = 64\n')
    args = build_parser().parse_args(["train", "--out", "x", "--config", str(path), "--epochs", "5", "--metrics", "accuracy,AUC"])
    config = train_config_from_args(args)
    assert (config.optimizer, config.epochs, config.hidden, config.batch_size) == ("sgd", 5, 64, 32)
    assert config.metrics == ("accuracy", "AUC")


def test_unreadable_config_file_is_reported(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid json"):
        TrainConfig.load(path)
    with pytest.raises(ValueError, match="cannot read config file"):
        TrainConfig.load(tmp_path / "missing.json")


def test_a_value_with_braces_gets_the_error_not_a_crash():
    from apparel.errors import ParameterError

    with pytest.raises(ParameterError, match=r"unknown schedule '\{x\}'") as caught:
        TrainConfig(schedule="{x}")
    assert caught.value.render(lambda name: "--" + name).startswith("unknown --schedule '{x}'")


def test_a_config_file_that_does_not_parse_names_its_format(tmp_path):
    from apparel.config import read_config_file

    for name, text, kind in (("params", "{epochs: 3}", "JSON"), ("params.json", "{", "json"),
                             ("params.toml", "epochs = ", "toml")):
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=f"config file .*{name} is not valid {kind}: "):
            read_config_file(tmp_path / name)
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold a mapping of parameter names to values"):
        read_config_file(tmp_path / "list.json")
    (tmp_path / "run.json").write_text('{"epochs": 3, "input": {"kind": "photo"}, "versions": {"keras": "3"}}')
    assert read_config_file(tmp_path / "run.json") == {"epochs": 3}  # a run's own records are left out


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_float_setting_must_be_a_finite_number(value):
    """NaN passes every bound (each comparison is False) and infinity overflows timers downstream."""
    from apparel.images.fetch import FetchConfig

    with pytest.raises(ValueError, match="timeout must be a finite number"):
        FetchConfig(timeout=value)
    with pytest.raises(ValueError, match="learning_rate must be a finite number"):
        TrainConfig(learning_rate=value)
    with pytest.raises(ValueError, match="timeout must be at most 3600"):  # the clock's type overflowed at 1e10
        FetchConfig(timeout=1e10)


def test_an_optimizer_or_augmentation_no_run_knows_is_refused_before_any_work():
    """Checked when the settings are made, not after the head has trained (a half-written run)."""
    with pytest.raises(ValueError, match="unknown optimizer 'nope'; choose one of: adam,"):
        TrainConfig(optimizer="nope")
    with pytest.raises(ValueError, match="unknown augment 'foo'; choose one of: shift,"):
        TrainConfig(augment=("crop", "foo"))
    assert TrainConfig(optimizer="adamw", augment=("crop", "flip")).augment == ("crop", "flip")

