"""Train a photo model in two phases: a classification head on the frozen pretrained backbone's
features, then the backbone's top blocks fine-tuned with the head at a lower learning rate.

    >>> from apparel.config import TrainConfig
    >>> from apparel.training.trainer import train
    >>> config = TrainConfig(model="efficientnet-lite0", images=("shop/photos",), epochs=4)
    >>> train(config, out_dir="runs/shop").metrics["validation_accuracy"]

``apparel.training.trainer.train`` runs these steps through the one training path: ``training_data``,
``build`` (phase 1 included), ``fit`` (phase 2), ``metrics``, ``finish``.

Phase 1 reads every photo once, without augmentation, and fits the head on the pooled features
held in memory (1,280 numbers a photo): seconds per epoch instead of a pass of the backbone.
Phase 2 streams the photos through augmentation and the network every epoch; its epochs are
checkpointed like the Fashion-MNIST models' (so ``resume`` continues an interrupted run) and the
saved model is the epoch with the best validation accuracy, or the head alone if no epoch beats it
(``metrics["kept"]`` says which).

Unless ``verbose=0``, each phase shows its progress on stderr: a bar for the pass over the photos,
one for the head's epochs, Keras's own for fine-tuning; and a class with fewer than
``FEW_VALIDATION_PHOTOS`` validation photos is named in a warning, as its figures are too coarse.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from apparel import artifacts
from apparel.config import TrainConfig
from apparel.kinds.photo.data import (FEW_VALIDATION_PHOTOS, PhotoSplits, load_photo_splits, photo_batches,
                                      photo_outputs, progress_bar)
from apparel.kinds.photo.measure import evaluate_photo_model
from apparel.training.models import create_model, get_spec, with_augmentation
from apparel.training.optimization import learning_rate_for, make_optimizer
from apparel.training.runs import HEAD_FILE, SKIPPED_FILE, augmentations, finish_run

# Phase 1: the head's learning rate on the frozen features (Adam's default) and its batch size.
HEAD_LEARNING_RATE = 1e-3
HEAD_BATCH_SIZE = 64


@dataclass
class PhotoTraining:
    """What a photo run trains and is measured on: its validation photos are its held-out set."""

    splits: PhotoSplits
    size: int  # the side of the square input, resolved once: the config's, else the model's default
    skipped: dict = field(default_factory=dict)  # path -> why it was left out, filled as photos stream
    few: dict = field(default_factory=dict)  # the classes under FEW_VALIDATION_PHOTOS, and their counts

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.splits.class_names


def training_data(config: TrainConfig, validation_split: float, verbose: int | str = 0) -> PhotoTraining:
    """The photos of ``config.images``, split; a warning first (unless ``verbose=0``) when a
    class has too few validation photos, as the run's figures will rest on them."""
    splits = load_photo_splits(config.images, validation_split, config.seed, config.per_class_limit)
    size = config.image_size or get_spec(config.model).defaults()["image_size"]
    data = PhotoTraining(splits, size, dict(splits.skipped), few_validation_photos(splits))
    if data.few and verbose != 0:
        _say(f"warning: {few_validation_note(data.few)}")
    return data


def _loss(config: TrainConfig):
    import keras

    # One-hot labels throughout, so that label smoothing is available.
    return keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=config.label_smoothing)


def _one_hot(batches, classes: int):
    import tensorflow as tf

    def one_hot(images, labels, weights):
        return images, tf.one_hot(labels, classes), weights

    return batches.map(one_hot)


def fit_head(base, data: PhotoTraining, config: TrainConfig, verbose: int | str = 0) -> dict:
    """Phase 1: the head (dropout, dense) on the frozen backbone's pooled features. ``base`` keeps
    the head of the best epoch by validation accuracy. Returns the phase's figures. Unless
    ``verbose`` is 0, bars on stderr follow the pass over the photos and the head's epochs."""
    import keras

    shown = verbose != 0
    started = time.perf_counter()
    splits, skipped, size, classes = data.splits, data.skipped, data.size, len(data.class_names)
    backbone = base.get_layer("backbone")
    x_train, y_train = photo_outputs(backbone, splits.train, size, config.batch_size, skipped,
                                     progress="features of the training photos" if shown else None)
    x_val, y_val = photo_outputs(backbone, splits.validation, size, config.batch_size, skipped,
                                 progress="features of the validation photos" if shown else None)
    feature_seconds = time.perf_counter() - started
    # The head's layers are base's own, so training them here trains base's head.
    head = keras.Sequential([keras.Input((x_train.shape[1],)), base.get_layer("head_dropout"), base.get_layer("classifier")])
    head.compile(keras.optimizers.Adam(HEAD_LEARNING_RATE), _loss(config), metrics=["accuracy"])
    best = {"accuracy": -1.0, "epoch": 0, "weights": None}
    epochs = config.head_epochs or get_spec(config.model).head_epochs

    with progress_bar(epochs, "head on the frozen backbone" if shown else None, "epoch") as bar:

        class KeepBest(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if logs["val_accuracy"] > best["accuracy"]:
                    best.update(accuracy=float(logs["val_accuracy"]), epoch=epoch + 1, weights=head.get_weights())
                bar.set_postfix(val_accuracy=f"{logs['val_accuracy']:.4f}", best=f"{best['accuracy']:.4f}", refresh=False)
                bar.update()

        head.fit(x_train, keras.utils.to_categorical(y_train, classes), batch_size=HEAD_BATCH_SIZE, epochs=epochs,
                 validation_data=(x_val, keras.utils.to_categorical(y_val, classes)), callbacks=[KeepBest()], verbose=0)
    head.set_weights(best["weights"])
    return {
        # Unrounded: fine-tuning epochs must beat it, not a figure rounded below it.
        "head_validation_accuracy": best["accuracy"],
        "head_best_epoch": best["epoch"],
        "feature_seconds": round(feature_seconds, 3),
        "head_seconds": round(time.perf_counter() - started - feature_seconds, 3),
    }


def compile_fine_tuning(base, config: TrainConfig, steps_per_epoch: int):
    """Phase 2's model: the backbone's top ``fine_tune_blocks`` blocks and the head trainable,
    batch normalisation frozen (batches of 32 photos give poor statistics), behind augmentation."""
    import keras

    # Imported here: the backbone module imports Keras, which the CLI must not load to start.
    from apparel.backbones.efficientnet_lite import set_trainable_blocks

    spec = get_spec(config.model)
    backbone = base.get_layer("backbone")
    set_trainable_blocks(backbone, spec.fine_tune_blocks if config.fine_tune_blocks is None else config.fine_tune_blocks)
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    trainable = with_augmentation(base, augmentations(config))
    optimizer = make_optimizer(config.optimizer, config.learning_rate)
    optimizer.learning_rate = learning_rate_for(config, steps_per_epoch)
    trainable.compile(optimizer=optimizer, loss=_loss(config), metrics=["accuracy"], jit_compile=False)
    return trainable


def build(config: TrainConfig, data: PhotoTraining, run_dir: Path | None, verbose: int | str):
    """A new run's model, its head fitted (phase 1; its figures kept in the run directory so a
    resumed run has them), compiled for fine-tuning. Returns ``(base, trainable, head_figures)``."""
    options = {**config.model_options(), "image_size": data.size, "outputs": len(data.class_names)}
    base = create_model(config.model, **options)
    head_figures = fit_head(base, data, config, verbose)
    if run_dir is not None:
        artifacts.write_json(run_dir / HEAD_FILE, head_figures)
    trainable = compile_fine_tuning(base, config, -(-len(data.splits.train) // config.batch_size))
    return base, trainable, head_figures


def resumed_figures(run_dir: Path) -> dict:
    """The head's figures of an interrupted run (phase 1 is not run again)."""
    return artifacts.read_json(run_dir / HEAD_FILE)


def fit(trainable, config: TrainConfig, data: PhotoTraining, initial_epoch: int, callbacks: list,
        verbose: int | str) -> None:
    """Phase 2: the photos streamed through augmentation and the network, from ``initial_epoch``."""
    classes, size, skipped = len(data.class_names), data.size, data.skipped
    if verbose != 0:
        spec = get_spec(config.model)
        blocks = spec.fine_tune_blocks if config.fine_tune_blocks is None else config.fine_tune_blocks
        _say(f"fine-tuning the head and the backbone's top {blocks} block{'' if blocks == 1 else 's'}: epochs "
             f"{initial_epoch + 1} to {config.epochs}, one kept only if it beats the best before it")
    trainable.fit(
        _one_hot(photo_batches(data.splits.train, size, config.batch_size, config.seed, skipped), classes),
        validation_data=_one_hot(photo_batches(data.splits.validation, size, config.batch_size, skipped=skipped), classes),
        epochs=config.epochs, initial_epoch=initial_epoch, callbacks=callbacks, verbose=verbose,
        shuffle=False,  # the pipeline reshuffles every epoch itself
    )


def few_validation_photos(splits: PhotoSplits) -> dict[str, int]:
    """The classes with fewer than ``FEW_VALIDATION_PHOTOS`` validation photos, and how many each has."""
    return {name: count for name, count in splits.validation.counts().items() if count < FEW_VALIDATION_PHOTOS}


def few_validation_note(few: dict[str, int]) -> str:
    """What ``few_validation_photos`` found, said for a person.

        >>> few_validation_note({"dress": 1, "hat": 2})
        'dress (1), hat (2) have fewer than 10 validation photos: their accuracy moves in steps too coarse to trust'
    """
    listed = ", ".join(f"{name} ({count})" for name, count in sorted(few.items()))
    return (f"{listed} {'has' if len(few) == 1 else 'have'} fewer than {FEW_VALIDATION_PHOTOS} validation photos: "
            "their accuracy moves in steps too coarse to trust")


def kept_model(best_epoch: int | None) -> str:
    """Which phase's model a run keeps: the head alone (epoch 0: no fine-tuning epoch beat it),
    or a fine-tuning epoch."""
    return "head" if not best_epoch else f"fine-tuning epoch {best_epoch}"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def metrics(config: TrainConfig, base, data: PhotoTraining, history: dict, head_figures: dict, best_epoch) -> dict:
    """The run's figures: the validation photos', the head's, then the fine-tuning's as Keras reported them."""
    splits, skipped, few = data.splits, data.skipped, data.few
    report = evaluate_photo_model(base, splits.validation, data.size, splits.class_names)
    return {
        "model": config.model,
        "validation_accuracy": report["accuracy"],
        "validation_loss": report["loss"],
        # As Keras reports them: the running mean over the last epoch, not a separate pass.
        "train_accuracy": history["accuracy"][-1] if history.get("accuracy") else None,
        "train_loss": history["loss"][-1] if history.get("loss") else None,
        **head_figures,
        "fine_tune_seconds": round(float(sum(history.get("seconds", []))), 3),
        "fit_seconds": round(float(sum(history.get("seconds", []))) + head_figures["feature_seconds"]
                             + head_figures["head_seconds"], 3),
        "epochs_run": len(history.get("loss", [])),
        "best_epoch": best_epoch,
        "kept": kept_model(best_epoch),  # the saved model: "head", or "fine-tuning epoch N"
        "parameters": int(base.count_params()),
        "train_images": len(splits.train),
        "validation_images": len(splits.validation),
        "class_counts": splits.train.counts(),
        "validation_class_counts": splits.validation.counts(),
        "few_validation_photos": few,  # the classes under FEW_VALIDATION_PHOTOS, and their counts
        "skipped_images": len(skipped),
        "validation_report": {key: report[key] for key in ("per_class", "confusion_matrix", "most_confused")},
    }


def finish(run_dir: Path, base, history: dict, metrics: dict, data: PhotoTraining) -> None:
    """The run directory completed: the model, its figures, the photos left out and why."""
    skipped = data.skipped
    if skipped:  # which photos were left out, and why
        artifacts.write_json(run_dir / SKIPPED_FILE, skipped)
    finish_run(run_dir, base, history, metrics)
    (run_dir / HEAD_FILE).unlink(missing_ok=True)
