"""Tests for the EfficientNet-Lite0 Keras port and the torch-free checkpoint reader.

The reference logits in ``fixtures/lite0_reference.npz`` come from the original PyTorch
network (``benchmarks/lite0_reference.py``, run once in a throwaway environment with torch).
"""

from __future__ import annotations

import os
import pathlib
import pickle
import struct
import zipfile

import numpy as np
import pytest

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"

import keras  # noqa: E402

from apparel.backbones.efficientnet_lite import (  # noqa: E402
    NUM_BLOCKS,
    block_layer_names,
    efficientnet_lite0,
    imagenet_weights_path,
    load_torch_state_dict,
    set_trainable_blocks,
)
from apparel.backbones.torch_checkpoint import load_state_dict  # noqa: E402

TOLERANCE = 1e-4
# Keras' own model.save() trips a numpy-2 __array__ DeprecationWarning in TF; not ours.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def weights_path() -> str:
    return imagenet_weights_path()


@pytest.fixture(scope="module")
def imagenet_model(weights_path: str) -> keras.Model:
    return efficientnet_lite0(weights=weights_path)


def test_logits_match_pytorch_reference(imagenet_model: keras.Model) -> None:
    ref = np.load(FIXTURES / "lite0_reference.npz")
    logits = imagenet_model.predict(ref["images"].astype("float32"), verbose=0)
    assert logits.shape == ref["logits"].shape == (4, 1000)
    assert np.abs(logits - ref["logits"]).max() <= TOLERANCE


def _legacy_file(payload: bytes, keys: list[str] | None = None, data: bytes = b"") -> bytes:
    """A legacy-layout .pth whose state-dict pickle is ``payload``."""
    header = b"".join(
        pickle.dumps(obj, protocol=2)
        for obj in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True})
    )
    return header + payload + pickle.dumps(keys or [], protocol=2) + data


# A pickle that would call os.system("...") if any unpickler resolved the global.
EVIL = b"cos\nsystem\n(S'echo pwned > /dev/null'\ntR."


def test_unpickler_refuses_code_execution(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a))  # would record any call
    legacy = tmp_path / "evil_legacy.pth"
    legacy.write_bytes(_legacy_file(EVIL))
    zipped = tmp_path / "evil_zip.pth"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("archive/data.pkl", EVIL)
    for path in (legacy, zipped):
        with pytest.raises(ValueError, match=r"refusing to unpickle global 'os\.system'"):
            load_state_dict(path)
    # Also in the first (magic-number) pickle, before any header check.
    raw = tmp_path / "evil_raw.pth"
    raw.write_bytes(EVIL)
    with pytest.raises(ValueError, match="os.system"):
        load_state_dict(raw)
    assert calls == []


def test_reads_zip_checkpoint_made_by_torch() -> None:
    sd = load_state_dict(FIXTURES / "tiny_zip_checkpoint.pth")
    assert set(sd) == {"weight", "ints"}  # num_batches_tracked dropped
    np.testing.assert_array_equal(sd["weight"], np.arange(24, dtype=np.float32).reshape(4, 6).T[1:])
    np.testing.assert_array_equal(sd["ints"], np.array([1, -2, 3], dtype=np.int64))


def test_rejects_out_of_bounds_strides(tmp_path: pathlib.Path) -> None:
    # Hand-written pickle (torch is not importable here): {"w": tensor of size 4}
    # over a float storage that holds only 2 elements.
    payload = (
        b"\x80\x02ccollections\nOrderedDict\n)R(X\x01\x00\x00\x00w"
        b"ctorch._utils\n_rebuild_tensor_v2\n"
        b"((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x02Ntq\x00Q"
        b"K\x00K\x04\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtRu."
    )
    data = struct.pack("<q", 2) + np.array([1, 2], "<f4").tobytes()
    path = tmp_path / "oob.pth"
    path.write_bytes(_legacy_file(payload, ["0"], data))
    with pytest.raises(ValueError, match="storage has only 2 elements"):
        load_state_dict(path)


def test_missing_and_unused_weights_raise(weights_path: str) -> None:
    model = efficientnet_lite0(weights=None)
    state = load_state_dict(weights_path)
    missing = dict(state)
    del missing["_blocks.7._bn1.running_var"]
    with pytest.raises(ValueError, match=r"missing tensors \['_blocks\.7\._bn1\.running_var'\]"):
        load_torch_state_dict(model, missing)
    extra = dict(state, **{"_blocks.99._project_conv.weight": np.zeros((1, 1, 1, 1), np.float32)})
    with pytest.raises(ValueError, match=r"unused tensors \['_blocks\.99\._project_conv\.weight'\]"):
        load_torch_state_dict(model, extra)
    # Without a classifier the _fc tensors are the only ones allowed to be unused.
    efficientnet_lite0(weights=weights_path, include_top=False)


def test_keras_file_round_trip_safe_mode(tmp_path: pathlib.Path) -> None:
    model = efficientnet_lite0(input_shape=(96, 96, 3), weights=None, classes=7)
    # Non-trivial BN statistics so a wrong reload would show.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            rng = np.random.default_rng(len(layer.name))
            layer.set_weights([gamma, beta + 0.1, mean + rng.normal(0, 0.1, mean.shape), var * 1.5])
    x = np.random.default_rng(0).uniform(0, 255, (2, 96, 96, 3)).astype("float32")
    path = tmp_path / "lite0.keras"
    model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_block_groups_cover_all_weights() -> None:
    model = efficientnet_lite0(weights=None, include_top=False, pooling="avg")
    groups = block_layer_names(model)
    assert list(groups) == ["stem"] + [f"block_{i}" for i in range(NUM_BLOCKS)] + ["head", "top"]
    assert model.output_shape == (None, 1280)
    trainable = set(set_trainable_blocks(model, top_k=2))
    assert trainable == set(groups["block_14"] + groups["block_15"] + groups["head"] + groups["top"])
    frozen = [w for w in model.non_trainable_weights if "moving" not in w.path]
    assert frozen and all(not model.get_layer(n).trainable for n in groups["block_13"])
