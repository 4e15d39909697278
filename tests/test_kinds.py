"""The model kinds: each registered kind keeps the protocol's promises on tiny inputs, the
contract saved with a run finds its kind (old runs included), and nothing outside
``apparel/kinds/`` branches on which kind it holds."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from apparel.contract import InputContract
from apparel.kinds.registry import KINDS, kind_for_inputs, kind_named

PACKAGE = Path(__file__).resolve().parents[1] / "apparel"
SIZES = {"fashion-mnist": 28, "photo": 32}


def contract_of(name: str) -> InputContract:
    return InputContract(kind=name, size=SIZES[name], class_names=("a", "b", "c"))


@pytest.mark.parametrize("name", sorted(KINDS))
def test_a_kind_prepares_its_own_arrays_and_refuses_the_others(name):
    contract = contract_of(name)
    kind = contract.model_kind
    assert kind is kind_named(name) and kind.name == name
    full = np.full((2, *contract.shape), 255, np.uint8)
    prepared = contract.prepare(full)
    assert prepared.shape == (2, *contract.shape) and prepared.dtype == np.float32
    assert prepared.max() == kind.pixel_scale[1]  # 255 means the brightest value the model takes
    for other in sorted(set(KINDS) - {name}):
        with pytest.raises(ValueError):
            contract.prepare(np.zeros((1, *contract_of(other).shape), np.uint8))


@pytest.mark.parametrize("name", sorted(KINDS))
def test_a_kind_decodes_a_photo_file_to_its_input(name, tmp_path):
    contract = contract_of(name)
    photo = Image.new("RGB", (64, 48), "white")
    photo.paste((200, 30, 30), (16, 8, 48, 40))  # a garment on white
    path = tmp_path / "garment.png"
    photo.save(path)
    decoded = contract.decode(str(path))
    assert decoded.shape == contract.shape and decoded.dtype == np.float32
    names = [step for step, _ in contract.model_kind.steps(str(path), contract.size, 10**7, 10**9)]
    assert names[0] == "original" and len(names) > 1


@pytest.mark.parametrize("name", sorted(KINDS))
def test_a_kind_words_its_input_once_for_every_place_that_says_it(name):
    from apparel.serve.payloads import what_to_send, wrong_shape
    from apparel.serve.tfserving import input_range

    contract = contract_of(name)
    words = contract.model_kind.words(contract)
    assert contract.describe() == words.preprocessing
    assert what_to_send(contract) == words.instances and input_range(contract) == words.pixel_range
    for other in sorted(set(KINDS) - {name}):  # another kind's array is named as such
        shape = contract_of(other).shape
        message = wrong_shape(shape, contract).message
        assert message.startswith(f"each instance must be a {'×'.join(map(str, contract.shape))} array")
        assert message.endswith(contract.model_kind.wrong_shape_hint(shape)) and contract.model_kind.wrong_shape_hint(shape)


def test_the_contract_saved_with_a_run_finds_its_kind_and_an_old_run_is_fashion_mnist(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    (old / "config.json").write_text(json.dumps({"model": "cnn", "epochs": 1}))  # before contracts existed
    (new / "config.json").write_text(json.dumps({"model": "x", "input": contract_of("photo").to_dict()}))
    assert InputContract.for_run(old).model_kind.name == "fashion-mnist"
    assert InputContract.for_run(new).model_kind is kind_named("photo")
    assert InputContract.for_run("photos").model_kind is kind_named("photo")  # a shipped model by name
    with pytest.raises(ValueError, match="is no run directory; give the folder `apparel train` wrote"):
        InputContract.for_run(tmp_path / "no-such-run")  # was silently Fashion-MNIST
    with pytest.raises(ValueError, match="kind must be one of fashion-mnist, photo"):
        InputContract(kind="sketch")


def test_files_go_to_the_photo_kinds_model_and_arrays_to_the_walk_throughs():
    assert kind_for_inputs(True).default_model == "store"
    assert kind_for_inputs(False).default_model == "default"


def test_nothing_outside_the_kinds_folders_branches_on_the_kind():
    branch = re.compile(r"is_photo|input_kind ==|\bphotos=|contract\.kind ==|\.model_kind\.name ==")
    found = [f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
             for path in sorted(PACKAGE.rglob("*.py")) if "kinds" not in path.relative_to(PACKAGE).parts
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
             if branch.search(line)]
    assert found == []
