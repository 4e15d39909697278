"""Compile and train a registered model, and write a complete run directory.

    >>> from apparel.config import TrainConfig
    >>> from apparel.training import train
    >>> result = train(TrainConfig(epochs=2, limit=5000), out_dir="runs/quick")
    >>> result.metrics["test_accuracy"]
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from apparel import artifacts
from apparel.config import TrainConfig
from apparel.data import Dataset, load_dataset
from apparel.models import create_model, get_spec

OPTIMIZERS = ("adam", "adamw", "nadam", "adamax", "rmsprop", "sgd", "adagrad", "adadelta", "ftrl", "lion", "adafactor")


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


def learning_rate_for(config: TrainConfig, steps_per_epoch: int):
    """A float or a per-step schedule over the whole run (``config.schedule``)."""
    import keras

    base = config.learning_rate
    if base is None:
        base = float(make_optimizer(config.optimizer).learning_rate.numpy())
    total = max(1, steps_per_epoch * config.epochs)
    if config.schedule == "constant":
        return base
    if config.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(base, decay_steps=total, alpha=0.01)
    if config.schedule == "one-cycle":
        # Warm up from base/25 to base over the first 30 % of steps, then anneal towards zero.
        warmup = max(1, int(0.3 * total))
        return keras.optimizers.schedules.CosineDecay(
            base / 25, decay_steps=total - warmup, alpha=1e-3, warmup_target=base, warmup_steps=warmup
        )
    raise ValueError(f"unknown schedule {config.schedule!r}; choose constant, cosine or one-cycle")


def build_model(config: TrainConfig, steps_per_epoch: int = 1875):
    """The registered model named by ``config``, compiled as the walk-through compiles it.

    Returns ``(base, trainable)``: ``base`` is the model that is saved and used for inference;
    ``trainable`` is what ``fit`` runs — ``base`` itself, or ``base`` behind augmentation layers.
    """
    import keras

    from apparel.models import with_augmentation

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
    trainable = with_augmentation(base, config.augment)
    optimizer = make_optimizer(config.optimizer, config.learning_rate)
    optimizer.learning_rate = learning_rate_for(config, steps_per_epoch)
    if config.label_smoothing:
        # Keras's sparse loss has no smoothing: the labels are one-hot encoded for this loss.
        loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=config.label_smoothing)
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
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


CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "state.json"


def _epoch_callback(run_dir: Path | None, history: dict, monitor_best: bool):
    """A callback that times each epoch and, for a run directory, makes each epoch durable: the
    full training state (model and optimizer) for ``--resume``, the best epoch's weights by
    validation accuracy, then history.json and the checkpoint state, each written atomically."""
    import keras

    checkpoints = run_dir / CHECKPOINT_DIR if run_dir is not None else None

    class EpochRecorder(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.history = history
            accuracies = history.get("val_accuracy", [])
            self.best = max(accuracies) if accuracies else -np.inf
            self.best_epoch = int(np.argmax(accuracies)) + 1 if accuracies else None
            self.best_weights = None

        def on_epoch_begin(self, epoch, logs=None):
            self._started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.history.setdefault("seconds", []).append(round(time.perf_counter() - self._started, 4))
            for key, value in (logs or {}).items():
                if key != "learning_rate":
                    self.history.setdefault(key, []).append(float(value))
            improved = monitor_best and (logs or {}).get("val_accuracy", -np.inf) > self.best
            if improved:
                self.best, self.best_epoch = float(logs["val_accuracy"]), epoch + 1
                self.best_weights = self.model.get_weights()
            if checkpoints is None:
                return
            checkpoints.mkdir(parents=True, exist_ok=True)
            if improved:
                # Named by epoch and recorded in the state below: after a kill between the two
                # writes, a resumed run never picks up a best model the state does not know.
                artifacts.save_model(self.model, checkpoints / f"best-{epoch + 1}.keras")
            # Epoch-numbered checkpoint, then the state naming it: a kill at any point leaves
            # a state that points at a complete checkpoint.
            checkpoint = checkpoints / f"epoch-{epoch + 1}.keras"
            artifacts.save_model(self.model, checkpoint)
            artifacts.write_json(run_dir / artifacts.HISTORY_FILE, self.history)
            state = {"epoch": epoch + 1, "checkpoint": checkpoint.name, "best_epoch": self.best_epoch,
                     "best_checkpoint": f"best-{self.best_epoch}.keras" if self.best_epoch else None}
            artifacts.write_json(checkpoints / STATE_FILE, state)
            # Whatever the state no longer names is stale, including files a kill left behind.
            for stale in checkpoints.glob("*.keras"):
                if stale.name not in (state["checkpoint"], state["best_checkpoint"]):
                    stale.unlink(missing_ok=True)

    return EpochRecorder()


def _read_state(run_dir: Path) -> dict | None:
    path = run_dir / CHECKPOINT_DIR / STATE_FILE
    return artifacts.read_json(path) if path.exists() else None


def _resume(run_dir: Path, config: TrainConfig):
    """The compiled model and history of an interrupted run, after checking it is the same run."""
    import keras

    state = _read_state(run_dir)
    if state is None:
        raise ValueError(f"{run_dir} holds no interrupted training to resume; drop --resume to start one")
    saved = TrainConfig.load(run_dir / artifacts.CONFIG_FILE)
    if saved != config:
        changed = [key for key, value in config.to_dict().items() if saved.to_dict()[key] != value]
        raise ValueError(
            f"--resume needs the same parameters as the interrupted run; these differ: {', '.join(changed)} "
            f"(see {run_dir / artifacts.CONFIG_FILE})"
        )
    trainable = keras.models.load_model(run_dir / CHECKPOINT_DIR / state["checkpoint"], safe_mode=True)
    history = artifacts.read_json(run_dir / artifacts.HISTORY_FILE)
    history = {key: values[: state["epoch"]] for key, values in history.items()}
    return trainable, history, state["epoch"]


def _base_model(trainable, config: TrainConfig):
    """The inference model inside a (possibly augmented) training model."""
    return trainable.layers[-1] if config.augment else trainable


def train(
    config: TrainConfig,
    dataset: Dataset | None = None,
    out_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    verbose: int | str = "auto",
    resume: bool = False,
    callbacks: list | None = None,
) -> TrainResult:
    """Train ``config`` on Fashion-MNIST (or ``dataset``), evaluate on the test set, and — when
    ``out_dir`` is given — write model.keras, config.json, history.json and metrics.json there.

    Each finished epoch is checkpointed in ``out_dir/checkpoints``; after an interruption the same
    call with ``resume=True`` continues from the last finished epoch (and the checkpoints are
    removed when training completes). With a validation split, the saved model is the epoch with
    the best validation accuracy. ``callbacks`` are extra Keras callbacks, run after the
    checkpointing one.
    """
    import keras

    from apparel.evaluation import evaluate_model

    if config.epochs < 1 or config.batch_size < 1:
        raise ValueError("epochs and batch_size must be at least 1")
    run_dir = Path(out_dir) if out_dir is not None else None
    if dataset is None:
        dataset = load_dataset(data_dir, limit=config.limit)
    elif config.limit is not None:
        dataset = Dataset(dataset.x_train[: config.limit], dataset.y_train[: config.limit], dataset.x_test, dataset.y_test)
    fraction = config.validation_split
    if fraction is None:
        fraction = get_spec(config.model).validation_split
    (x_train, y_train), validation = split_validation(dataset, fraction)
    steps_per_epoch = -(-len(x_train) // config.batch_size)

    keras.utils.set_random_seed(config.seed)
    interrupted = run_dir is not None and _read_state(run_dir) is not None
    if resume and run_dir is None:
        raise ValueError("resume needs the run directory of the interrupted training")
    if interrupted and not resume:
        raise ValueError(
            f"{run_dir} holds an interrupted training; rerun with --resume to continue it, or choose another --out"
        )
    if resume:
        trainable, history, initial_epoch = _resume(run_dir, config)
        base = _base_model(trainable, config)
    else:
        base, trainable = build_model(config, steps_per_epoch)
        history, initial_epoch = {}, 0
        if run_dir is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            config.save(run_dir / artifacts.CONFIG_FILE, {"versions": artifacts.library_versions()})

    if config.label_smoothing:
        y_fit = keras.utils.to_categorical(y_train, base.output_shape[-1])
        validation = None if validation is None else (validation[0], keras.utils.to_categorical(validation[1], base.output_shape[-1]))
    else:
        y_fit = y_train
    recorder = _epoch_callback(run_dir, history, monitor_best=validation is not None)
    callbacks = [recorder, *(callbacks or [])]
    if config.early_stopping is not None:
        if validation is None:
            raise ValueError("early_stopping needs a validation split (validation_split > 0)")
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=config.early_stopping))
    started = time.perf_counter()
    if initial_epoch < config.epochs:
        if keras.backend.backend() == "tensorflow":
            batches = shuffled_batches(x_train, y_fit, config.batch_size, config.seed, initial_epoch)
            inputs = {"x": batches, "shuffle": False}  # the dataset shuffles itself
        else:
            inputs = {"x": x_train, "y": y_fit, "batch_size": config.batch_size}
        trainable.fit(
            **inputs,
            epochs=config.epochs,
            initial_epoch=initial_epoch,
            validation_data=validation,
            callbacks=callbacks,
            verbose=verbose,
        )
    fit_seconds = time.perf_counter() - started

    state = _read_state(run_dir) if run_dir is not None else None
    if recorder.best_weights is not None:
        trainable.set_weights(recorder.best_weights)
    elif state and state.get("best_checkpoint"):
        # The best epoch came before an interruption.
        best_file = run_dir / CHECKPOINT_DIR / state["best_checkpoint"]
        trainable.set_weights(keras.models.load_model(best_file, compile=False, safe_mode=True).get_weights())

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
        "train_images": int(len(x_train)),
        "validation_images": 0 if validation is None else int(len(validation[0])),
        "test_images": int(len(dataset.x_test)),
    }
    if validation is not None and "val_accuracy" in history:
        metrics["validation_accuracy"] = max(history["val_accuracy"])
        metrics["best_epoch"] = recorder.best_epoch
    if run_dir is not None:
        artifacts.save_model(base, run_dir / artifacts.MODEL_FILE)
        artifacts.write_json(run_dir / artifacts.HISTORY_FILE, history)
        artifacts.write_json(run_dir / artifacts.METRICS_FILE, metrics)
        shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)
    return TrainResult(base, config, history, metrics, run_dir)
