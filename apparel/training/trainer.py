"""Train a registered model and write a complete run directory: one path for every kind.

    >>> from apparel.config import TrainConfig
    >>> from apparel.training.trainer import train
    >>> result = train(TrainConfig(epochs=2, limit=5000), out_dir="runs/quick")
    >>> result.metrics["test_accuracy"]

The model's kind (``apparel.kinds``, named by the model's registry entry) supplies each step: its
training data, its model built (or an interrupted run's resumed), its fit, its figures, its
finished run directory. What every kind shares lives here once: the run directory claimed, the
seed, the config and input contract recorded, the epochs checkpointed, the best epoch restored.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from apparel import artifacts
from apparel.config import TrainConfig
from apparel.contract import CONFIG_KEY, InputContract
from apparel.errors import ParameterError
from apparel.kinds.fashion_mnist.data import Dataset, check_dataset
from apparel.kinds.base import Kind
from apparel.kinds.registry import kind_named
from apparel.training.models import get_spec
from apparel.training.runs import TrainResult, base_model, claimed_run_dir, epoch_recorder, restore_best, resume_run


def train(
    config: TrainConfig,
    dataset: Dataset | None = None,
    out_dir: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    verbose: int | str = "auto",
    resume: bool = False,
    callbacks: list | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Train ``config``'s model on its kind's data — Fashion-MNIST (or ``dataset``, or the one in
    ``data_dir``) for 28×28 models, ``config.images`` for photo models — measure it on its
    held-out set, and — when ``out_dir`` is given — write model.keras, config.json (with the input
    contract), history.json and metrics.json there.

    Each finished epoch is checkpointed in ``out_dir/checkpoints``; after an interruption the same
    call with ``resume=True`` continues from the last finished epoch (and the checkpoints are
    removed when training completes). A directory that already holds a run is refused unless
    ``overwrite``, and so is one that another live run is writing (see ``runs.claimed_run_dir``).
    With validation data, the saved model is the epoch with the best validation accuracy.
    ``callbacks`` are extra Keras callbacks, run after the checkpointing one.
    """
    import keras

    if not isinstance(config, TrainConfig):
        raise ParameterError(f"{{}} must be a TrainConfig (TrainConfig(model=…, epochs=…)), got {type(config).__name__}",
                             "config")
    check_dataset(dataset)
    spec = get_spec(config.model)
    kind = kind_of(config)
    kind.check_training(config, dataset, data_dir)
    validation_split = spec.validation_split if config.validation_split is None else config.validation_split
    run_dir = Path(out_dir) if out_dir is not None else None
    with claimed_run_dir(run_dir, resume, overwrite):
        data = kind.training_data(config, validation_split, dataset, data_dir, verbose)
        keras.utils.set_random_seed(config.seed)
        if resume:
            trainable, history, initial_epoch = resume_run(run_dir, config)
            base, state = base_model(trainable, config), kind.resumed(run_dir)
        else:
            base, trainable, state = kind.build(config, data, run_dir, verbose,
                                                record=lambda: record_run(run_dir, config, kind.name, data))
            history, initial_epoch = {}, 0
        recorder = epoch_recorder(run_dir, history, **kind.recorder_options(data, state, None if resume else trainable))
        started = time.perf_counter()
        if initial_epoch < config.epochs:
            kind.fit(trainable, config, data, initial_epoch, [recorder, *(callbacks or [])], verbose)
        fit_seconds = time.perf_counter() - started
        restore_best(trainable, recorder, run_dir)
        metrics = kind.metrics(config, base, data, history, state, recorder.best_epoch, fit_seconds)
        if run_dir is not None:
            kind.finish(run_dir, base, history, metrics, data)
        return TrainResult(base, config, history, metrics, run_dir)


def kind_of(config: TrainConfig) -> Kind:
    """The kind of model ``config`` trains, as its model's registry entry names it."""
    return kind_named(get_spec(config.model).input_kind)


def record_run(run_dir: Path | None, config: TrainConfig, kind: str, data) -> None:
    """config.json of a new run: the parameters, the input contract (which finds the model's kind
    again) and the library versions."""
    if run_dir is None:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    contract = InputContract(kind=kind, size=data.size, class_names=data.class_names)
    config.save(run_dir / artifacts.CONFIG_FILE, {CONFIG_KEY: contract.to_dict(), "versions": artifacts.library_versions()})
