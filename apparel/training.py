"""Compile and train a registered model, and write a complete run directory.

    >>> from apparel.config import TrainConfig
    >>> from apparel.training import train
    >>> result = train(TrainConfig(epochs=2, limit=5000), out_dir="runs/quick")
    >>> result.metrics["test_accuracy"]
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from apparel import artifacts
from apparel.config import TrainConfig
from apparel.data import Dataset, load_dataset
from apparel.models import create_model, get_spec

OPTIMIZERS = ("adam", "adamw", "nadam", "adamax", "rmsprop", "sgd", "adagrad", "adadelta", "ftrl", "lion", "adafactor")
MODEL_OPTIONS = ("hidden", "outputs", "activation", "depth", "blocks", "width", "dropout", "batch_norm")


@dataclass
class TrainResult:
    """What `train` returns: the trained Keras model and the figures written to the run directory."""

    model: object
    config: TrainConfig
    history: dict = field(default_factory=dict)  # per-epoch lists: loss, accuracy, seconds, val_*
    metrics: dict = field(default_factory=dict)  # test_*, train_*, fit_seconds, parameters
    run_dir: Path | None = None


def make_optimizer(name: str, learning_rate: float | None = None):
    """A Keras optimizer by its built-in name (``adam``, ``ftrl``, …), with an optional rate."""
    import keras

    settings = {} if learning_rate is None else {"learning_rate": learning_rate}
    try:
        return keras.optimizers.get({"class_name": name, "config": settings})
    except (ValueError, TypeError):
        raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}") from None


def build_model(config: TrainConfig):
    """The registered model named by ``config``, compiled as the walk-through compiles it."""
    import keras

    for name in config.metrics:
        # Keras resolves these few names against the loss itself; others must be metric names.
        if name not in ("accuracy", "acc", "crossentropy", "ce"):
            try:
                keras.metrics.get(name)
            except (ValueError, TypeError):
                raise ValueError(
                    f"unknown metric {name!r}; use Keras metric identifiers such as accuracy, "
                    "SparseTopKCategoricalAccuracy, MeanSquaredError, AUC"
                ) from None
    options = {key: getattr(config, key) for key in MODEL_OPTIONS}
    model = create_model(config.model, **options)
    try:
        model.compile(
            optimizer=make_optimizer(config.optimizer, config.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=list(config.metrics),
            steps_per_execution=config.steps_per_execution,
            jit_compile="auto" if config.jit_compile is None else config.jit_compile,
        )
    except (ValueError, TypeError) as error:
        raise ValueError(f"cannot compile {config.model!r} with metrics {list(config.metrics)}: {error}") from None
    return model


def split_validation(dataset: Dataset, fraction: float) -> tuple[tuple[np.ndarray, np.ndarray], tuple | None]:
    """Hold out the last ``fraction`` of the training set (as Keras's ``validation_split`` does)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation_split must be in [0, 1), got {fraction}")
    count = int(round(len(dataset.x_train) * fraction))
    if count == 0:
        return (dataset.x_train, dataset.y_train), None
    cut = len(dataset.x_train) - count
    return (dataset.x_train[:cut], dataset.y_train[:cut]), (dataset.x_train[cut:], dataset.y_train[cut:])


def _history_writer(run_dir: Path | None):
    """A callback that times each epoch and rewrites history.json after it, so a killed run keeps
    the epochs it finished."""
    import keras

    class EpochRecorder(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.history: dict[str, list] = {}

        def on_epoch_begin(self, epoch, logs=None):
            self._started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.history.setdefault("seconds", []).append(round(time.perf_counter() - self._started, 4))
            for key, value in (logs or {}).items():
                if key == "learning_rate":
                    continue
                self.history.setdefault(key, []).append(float(value))
            if run_dir is not None:
                artifacts.write_json(run_dir / artifacts.HISTORY_FILE, self.history)

    return EpochRecorder()


def train(
    config: TrainConfig,
    dataset: Dataset | None = None,
    out_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    verbose: int | str = "auto",
) -> TrainResult:
    """Train ``config`` on Fashion-MNIST (or ``dataset``), evaluate on the test set, and — when
    ``out_dir`` is given — write model.keras, config.json, history.json and metrics.json there."""
    import keras

    from apparel.evaluation import evaluate_model

    if config.epochs < 1 or config.batch_size < 1:
        raise ValueError("epochs and batch_size must be at least 1")
    run_dir = Path(out_dir) if out_dir is not None else None
    if dataset is None:
        dataset = load_dataset(data_dir, limit=config.limit)
    elif config.limit is not None:
        dataset = Dataset(dataset.x_train[: config.limit], dataset.y_train[: config.limit], dataset.x_test, dataset.y_test)
    keras.utils.set_random_seed(config.seed)
    model = build_model(config)

    fraction = config.validation_split
    if fraction is None:
        fraction = get_spec(config.model).validation_split
    (x_train, y_train), validation = split_validation(dataset, fraction)

    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        config.save(run_dir / artifacts.CONFIG_FILE, {"versions": artifacts.library_versions()})
    recorder = _history_writer(run_dir)
    started = time.perf_counter()
    model.fit(
        x_train,
        y_train,
        epochs=config.epochs,
        batch_size=config.batch_size,
        validation_data=validation,
        callbacks=[recorder],
        verbose=verbose,
    )
    fit_seconds = time.perf_counter() - started

    history = recorder.history
    test = evaluate_model(model, dataset.x_test, dataset.y_test, batch_size=max(config.batch_size, 256))
    metrics = {
        "model": config.model,
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        # As Keras reports them: the running mean over the last epoch, not a separate pass.
        "train_accuracy": history["accuracy"][-1] if "accuracy" in history else None,
        "train_loss": history["loss"][-1],
        "fit_seconds": round(fit_seconds, 3),
        "epoch_seconds": round(float(np.median(history["seconds"])), 4),
        "parameters": int(model.count_params()),
        "train_images": int(len(x_train)),
        "validation_images": 0 if validation is None else int(len(validation[0])),
        "test_images": int(len(dataset.x_test)),
    }
    if validation is not None and "val_accuracy" in history:
        metrics["validation_accuracy"] = history["val_accuracy"][-1]
    if run_dir is not None:
        artifacts.save_model(model, run_dir / artifacts.MODEL_FILE)
        artifacts.write_json(run_dir / artifacts.METRICS_FILE, metrics)
    return TrainResult(model, config, history, metrics, run_dir)
