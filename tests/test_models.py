import numpy as np
import pytest

from apparel.training.models import MODELS, create_model
from apparel.config import TrainConfig
from apparel.kinds.fashion_mnist.fitting import build_model

SMALL_OPTIONS = {
    "seed-mlp": {"hidden": 16},
    "mlp": {"hidden": 16},
    "cnn": {"width": 4, "hidden": 8},
    "resnet": {"width": 4, "depth": 2, "blocks": 1},
}


# Photo models take N×N RGB photos; tiny ones at 32×32, random weights (no ImageNet file read).
PHOTO_SMALL_OPTIONS = {"efficientnet-lite0": {"image_size": 32, "outputs": 3, "weights": None}}


def test_every_registered_model_has_small_options():
    assert set(MODELS) == set(SMALL_OPTIONS) | set(PHOTO_SMALL_OPTIONS)
    assert {name for name, spec in MODELS.items() if spec.input_kind == "photo"} == set(PHOTO_SMALL_OPTIONS)


@pytest.mark.parametrize("name", sorted(PHOTO_SMALL_OPTIONS))
def test_photo_model_shape_training_step_and_round_trip(name, tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    model = create_model(name, **PHOTO_SMALL_OPTIONS[name])
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(12, 32, 32, 3)).astype(np.float32)
    labels = np.arange(12) % 3
    logits = np.asarray(model(images, training=False))
    assert logits.shape == (12, 3) and np.isfinite(logits).all()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    losses = model.fit(images, labels, epochs=5, batch_size=12, shuffle=False, verbose=0).history["loss"]
    assert losses[-1] < losses[0]
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(np.asarray(reloaded(images, training=False)), np.asarray(model(images, training=False)), atol=1e-5)


def test_seed_mlp_is_the_reference_architecture():
    import keras

    model = create_model("seed-mlp")
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Flatten", "Dense", "Dense"]
    assert model.input_shape == (None, 28, 28)
    hidden, logits = model.layers[1], model.layers[2]
    assert hidden.units == 256 and hidden.activation is keras.activations.relu
    assert logits.units == 20 and logits.activation is keras.activations.linear
    assert model.count_params() == 784 * 256 + 256 + 256 * 20 + 20


def test_reference_compile_settings():
    import keras

    _, model = build_model(TrainConfig())
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert isinstance(model.loss, keras.losses.SparseCategoricalCrossentropy)
    assert model.loss.get_config()["from_logits"] is True
    assert model._compile_metrics._user_metrics == ["accuracy"]


def test_unknown_model_option_and_name_are_rejected():
    with pytest.raises(ValueError, match="has no option width"):
        create_model("seed-mlp", width=3)
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        create_model("vgg")
    with pytest.raises(ValueError, match="unknown activation 'relux'"):
        create_model("seed-mlp", activation="relux")


@pytest.mark.parametrize("name", sorted(SMALL_OPTIONS))
def test_model_shape_training_step_and_round_trip(name, tiny_dataset, tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    model = create_model(name, **SMALL_OPTIONS[name])
    images, labels = tiny_dataset.x_train[:64], tiny_dataset.y_train[:64]
    logits = np.asarray(model(images, training=False))
    expected_outputs = 20 if name == "seed-mlp" else 10
    assert logits.shape == (64, expected_outputs)
    assert np.isfinite(logits).all()

    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    losses = model.fit(images, labels, epochs=5, batch_size=64, shuffle=False, verbose=0).history["loss"]
    assert losses[-1] < losses[0]

    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(np.asarray(reloaded(images, training=False)), np.asarray(model(images, training=False)))
