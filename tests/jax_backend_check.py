"""Every registered model on Keras's JAX backend: builds, trains behind the augmentation layers,
gives finite outputs of the right shape, and reloads from .keras with identical outputs.

    make jax-check        # a separate .venv-jax with keras and jax, no TensorFlow

Not part of `make test` (the project's environment has no JAX); exits non-zero on a failure.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ["KERAS_BACKEND"] = "jax"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from apparel.training.models import MODELS, create_model, with_augmentation  # noqa: E402

# Small widths: the check is about the layers working on this backend, not about accuracy.
SMALL = {"seed-mlp": {"hidden": 16}, "mlp": {"hidden": 16}, "cnn": {"width": 4, "hidden": 8},
         "resnet": {"width": 4, "depth": 2, "blocks": 1}}


def check(name: str, images: np.ndarray, labels: np.ndarray) -> str:
    model = create_model(name, **SMALL.get(name, {}))
    trainable = with_augmentation(model, ("shift", "flip", "erase"))
    trainable.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = trainable.fit(images, labels, epochs=2, batch_size=16, verbose=0)
    outputs = model.predict(images, verbose=0)
    assert outputs.shape[0] == len(images) and np.isfinite(outputs).all(), f"{name}: bad outputs"
    assert all(np.isfinite(history.history["loss"])), f"{name}: non-finite loss"
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "model.keras"
        model.save(path)
        reloaded = keras.models.load_model(path, safe_mode=True).predict(images, verbose=0)
    np.testing.assert_allclose(reloaded, outputs, atol=1e-6, err_msg=f"{name}: reload changed outputs")
    return f"{name}: outputs {outputs.shape}, loss {history.history['loss'][0]:.3f} → {history.history['loss'][-1]:.3f}, reload identical"


def main() -> None:
    assert keras.backend.backend() == "jax", "run with KERAS_BACKEND=jax"
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = rng.random((64, 28, 28), dtype=np.float32)
    labels = rng.integers(0, 10, 64)
    for name in MODELS:
        print(check(name, images, labels))
    print(f"all {len(MODELS)} registered models work on the JAX backend (keras {keras.__version__})")


if __name__ == "__main__":
    main()
