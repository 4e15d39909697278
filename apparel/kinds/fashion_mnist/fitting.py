"""How a Fashion-MNIST model fits: a registered 28×28 model compiled as the walk-through compiles
it, fitted on the training arrays (the last ``validation_split`` held out) with Keras's ``fit``,
measured on the test set. ``apparel.training.trainer.train`` runs it through the one training path.

    >>> from apparel.kinds.fashion_mnist.fitting import training_data, build_model
    >>> data = training_data(TrainConfig(limit=5000), validation_split=0.0)
    >>> base, trainable = build_model(TrainConfig(), steps_per_epoch=157)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from apparel.config import TrainConfig
from apparel.kinds.fashion_mnist.data import CLASS_NAMES, IMAGE_SHAPE, Dataset, load_dataset
from apparel.training.models import create_model, get_spec, with_augmentation
from apparel.training.optimization import learning_rate_for, make_loss, make_optimizer
from apparel.training.runs import augmentations
from apparel.training.scores import evaluate_model


@dataclass(frozen=True)
class FashionTraining:
    """What a Fashion-MNIST run trains and is measured on."""

    dataset: Dataset  # the test set is the run's held-out set
    train: tuple[np.ndarray, np.ndarray]
    validation: tuple[np.ndarray, np.ndarray] | None  # the last validation_split of the training set
    class_names: tuple[str, ...] = CLASS_NAMES
    size: int = IMAGE_SHAPE[0]


def training_data(config: TrainConfig, validation_split: float, dataset: Dataset | None = None,
                  data_dir: str | os.PathLike | None = None) -> FashionTraining:
    """Fashion-MNIST from ``data_dir`` (or ``dataset``), its training set cut to ``config.limit``,
    the last ``validation_split`` of it held out."""
    if dataset is None:
        dataset = load_dataset(data_dir, limit=config.limit)
    elif config.limit is not None:
        dataset = Dataset(dataset.x_train[: config.limit], dataset.y_train[: config.limit], dataset.x_test, dataset.y_test)
    train, validation = split_validation(dataset, validation_split)
    return FashionTraining(dataset, train, validation)


def build_model(config: TrainConfig, steps_per_epoch: int = 1875):
    """The registered model named by ``config``, compiled as the walk-through compiles it.

    Returns ``(base, trainable)``: ``base`` is the model that is saved and used for inference;
    ``trainable`` is what ``fit`` runs — ``base`` itself, or ``base`` behind augmentation layers.
    """
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
    options = config.model_options()
    previous_policy = keras.config.dtype_policy()
    if config.mixed_precision:
        keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        base = create_model(config.model, **options)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    trainable = with_augmentation(base, augmentations(config))
    optimizer = make_optimizer(config.optimizer, config.learning_rate)
    optimizer.learning_rate = learning_rate_for(config, steps_per_epoch)
    loss = make_loss(config.label_smoothing)
    try:
        trainable.compile(
            optimizer=optimizer,
            loss=loss,
            metrics=list(config.metrics),
            steps_per_execution=config.steps_per_execution,
            jit_compile=get_spec(config.model).jit_compile if config.jit_compile is None else config.jit_compile,
        )
    except (ValueError, TypeError) as error:
        raise ValueError(f"cannot compile {config.model!r} with metrics {list(config.metrics)}: {error}") from None
    return base, trainable

def split_validation(dataset: Dataset, fraction: float) -> tuple[tuple[np.ndarray, np.ndarray], tuple | None]:
    """Hold out the last ``fraction`` of the training set (as Keras's ``validation_split`` does)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation_split must be in [0, 1), got {fraction}")
    count = int(round(len(dataset.x_train) * fraction))
    if count == 0:
        return (dataset.x_train, dataset.y_train), None
    cut = len(dataset.x_train) - count
    return (dataset.x_train[:cut], dataset.y_train[:cut]), (dataset.x_train[cut:], dataset.y_train[cut:])


def shuffled_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int = 0, first_epoch: int = 0):
    """The training set as a TensorFlow dataset of batches, reshuffled every epoch.

    The same batches as Keras's own numpy input (a fresh permutation each epoch, a last partial
    batch), built more cheaply: the arrays sit in memory as tensors, each epoch gathers them once
    in shuffled order, and every batch is then a contiguous slice. Keras's pipeline gathers each
    batch in a per-batch function; for a model as small as the reference that costs about a sixth
    of the epoch (docs/performance.md). Epoch ``e``'s order depends only on ``seed`` and ``e``, so
    a run resumed at ``first_epoch`` sees the batches the uninterrupted run would have seen.
    TensorFlow backend only (``train`` gives other backends the arrays for Keras to batch).
    """
    import tensorflow as tf

    count = len(x)
    full = count // batch_size
    images, labels = tf.constant(x), tf.constant(y)
    epoch = tf.Variable(first_epoch, dtype=tf.int64, trainable=False)

    def one_epoch(_):
        key = tf.stack([tf.constant(seed, tf.int64), epoch.assign_add(1) - 1])
        order = tf.random.experimental.stateless_shuffle(tf.range(count), seed=key)
        shuffled_x, shuffled_y = tf.gather(images, order), tf.gather(labels, order)
        cut = full * batch_size
        batches = tf.data.Dataset.from_tensor_slices((
            tf.reshape(shuffled_x[:cut], (full, batch_size, *x.shape[1:])),
            tf.reshape(shuffled_y[:cut], (full, batch_size, *y.shape[1:])),
        ))
        if cut < count:
            batches = batches.concatenate(tf.data.Dataset.from_tensors((shuffled_x[cut:], shuffled_y[cut:])))
        return batches

    # A new iterator per epoch reruns the shuffle; the known length gives Keras its progress bar.
    dataset = tf.data.Dataset.from_tensors(0).flat_map(one_epoch)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(-(-count // batch_size))).prefetch(4)
    # tf.data's autotuner runs in the background and, on two cores, takes CPU from the training
    # step: with it on, epochs of the reference model varied from 0.9 to 2 s; off, 0.86–0.91 s.
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def fit(trainable, config: TrainConfig, data: FashionTraining, initial_epoch: int, callbacks: list,
        verbose: int | str) -> None:
    """Keras's ``fit`` over the training arrays from ``initial_epoch`` to ``config.epochs``."""
    import keras

    (x_train, y_train), validation = data.train, data.validation
    if config.label_smoothing:  # the smoothed loss takes one-hot labels
        classes = trainable.output_shape[-1]
        y_train = keras.utils.to_categorical(y_train, classes)
        validation = None if validation is None else (validation[0], keras.utils.to_categorical(validation[1], classes))
    trainable.fit(**_fit_inputs(config, x_train, y_train, initial_epoch), epochs=config.epochs,
                  initial_epoch=initial_epoch, validation_data=validation, verbose=verbose,
                  callbacks=[*callbacks, *_stopping(config, validation)])


def _fit_inputs(config: TrainConfig, x_train: np.ndarray, y_train: np.ndarray, initial_epoch: int) -> dict:
    import keras

    if keras.backend.backend() == "tensorflow":
        batches = shuffled_batches(x_train, y_train, config.batch_size, config.seed, initial_epoch)
        return {"x": batches, "shuffle": False}  # the dataset shuffles itself
    return {"x": x_train, "y": y_train, "batch_size": config.batch_size}


def _stopping(config: TrainConfig, validation) -> list:
    import keras

    if config.early_stopping is None:
        return []
    if validation is None:
        raise ValueError("early_stopping needs a validation split (validation_split > 0)")
    return [keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=config.early_stopping)]


def metrics(config: TrainConfig, base, data: FashionTraining, history: dict, best_epoch, fit_seconds: float) -> dict:
    """The run's figures: the test set's, then the training's as Keras reported them."""
    dataset, validation, train_images = data.dataset, data.validation, len(data.train[0])
    test = evaluate_model(base, dataset.x_test, dataset.y_test, batch_size=max(config.batch_size, 256))
    metrics = {
        "model": config.model,
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        # As Keras reports them: the running mean over the last epoch, not a separate pass.
        "train_accuracy": history["accuracy"][-1] if "accuracy" in history else None,
        "train_loss": history["loss"][-1],
        "fit_seconds": round(float(sum(history["seconds"])), 3),
        "wall_seconds_this_call": round(fit_seconds, 3),
        "epoch_seconds": round(float(np.median(history["seconds"])), 4),
        "epochs_run": len(history["loss"]),
        "parameters": int(base.count_params()),
        "train_images": int(train_images),
        "validation_images": 0 if validation is None else int(len(validation[0])),
        "test_images": int(len(dataset.x_test)),
    }
    if validation is not None and "val_accuracy" in history:
        metrics["validation_accuracy"] = max(history["val_accuracy"])
        metrics["best_epoch"] = best_epoch
    return metrics
