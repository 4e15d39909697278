"""A training run's directory while it trains: every epoch checkpointed, the best epoch kept, an
interrupted run resumed, and what ``train`` returns.

Shared by every kind's training (``trainer.train`` and each kind's ``fitting``).
"""

from __future__ import annotations

import shutil
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from apparel import artifacts
from apparel.config import TrainConfig
from apparel.errors import ParameterError
from apparel.training.models import get_spec


@dataclass
class TrainResult:
    """What `train` returns: the trained Keras model and the figures written to the run directory."""

    model: object
    config: TrainConfig
    history: dict = field(default_factory=dict)  # per-epoch lists: loss, accuracy, seconds, val_*
    metrics: dict = field(default_factory=dict)  # test_* or validation_*, train_*, fit_seconds, parameters
    run_dir: Path | None = None


CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "state.json"
# A photo run's phase-1 figures (kept for a resumed run until it completes), and the training
# photos that could not be read.
HEAD_FILE = "head.json"
SKIPPED_FILE = "skipped.json"
# There while a run writes its directory (``artifacts.one_writer``): a second run there is refused.
# A killed run leaves the file behind, but no lock on it, so it never blocks the next run.
LOCK_FILE = "train.lock"


def epoch_recorder(run_dir: Path | None, history: dict, monitor_best: bool, baseline: tuple | None = None):
    """A callback that times each epoch and, for a run directory, makes each epoch durable: the
    full training state (model and optimizer) for ``--resume``, the best epoch's weights by
    validation accuracy, then history.json and the checkpoint state, each written atomically.

    ``baseline`` is ``(validation accuracy, weights)`` of the model before the first epoch (a
    photo model's head on the frozen backbone): an epoch is kept only if it beats it. Its weights
    are checkpointed as epoch 0's best; a resumed run gives ``(validation accuracy, None)``."""
    import keras

    checkpoints = run_dir / CHECKPOINT_DIR if run_dir is not None else None

    class EpochRecorder(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.history = history
            accuracies = history.get("val_accuracy", [])
            self.best, self.best_epoch, self.best_weights = -np.inf, None, None
            if baseline is not None:
                self.best, self.best_weights, self.best_epoch = baseline[0], baseline[1], 0
            if accuracies and max(accuracies) > self.best:  # an epoch before an interruption beat it
                self.best, self.best_epoch, self.best_weights = max(accuracies), int(np.argmax(accuracies)) + 1, None

        def on_train_begin(self, logs=None):
            if checkpoints is not None and self.best_epoch == 0 and self.best_weights is not None:
                # The model before fine-tuning, so that a resumed run can still keep it.
                artifacts.save_model(self.model, checkpoints / "best-0.keras")

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
                     "best_checkpoint": None if self.best_epoch is None else f"best-{self.best_epoch}.keras"}
            artifacts.write_json(checkpoints / STATE_FILE, state)
            # Whatever the state no longer names is stale, including files a kill left behind.
            for stale in checkpoints.glob("*.keras"):
                if stale.name not in (state["checkpoint"], state["best_checkpoint"]):
                    stale.unlink(missing_ok=True)

    return EpochRecorder()


def load_checkpoint(path: Path, compile: bool = True):
    """A checkpointed training model, loaded in safe mode."""
    import keras

    # The project's own layers (the resolution augmentation's) must be registered before loading:
    # a resumed run's process has not built them.
    import apparel.backbones.layers  # noqa: F401

    return keras.models.load_model(path, compile=compile, safe_mode=True)


def read_state(run_dir: Path) -> dict | None:
    path = run_dir / CHECKPOINT_DIR / STATE_FILE
    return artifacts.read_json(path) if path.exists() else None


def resume_run(run_dir: Path, config: TrainConfig):
    """The compiled model and history of an interrupted run, after checking it is the same run."""
    state = read_state(run_dir)
    if state is None:
        raise ParameterError(f"{{}} {run_dir} holds no interrupted training to resume; start one without {{}}",
                             "out_dir", "resume")
    saved = TrainConfig.load(run_dir / artifacts.CONFIG_FILE)
    if saved != config:
        changed = [key for key, value in config.to_dict().items() if saved.to_dict()[key] != value]
        raise ParameterError(f"{{}} needs the same parameters as the interrupted run; these differ: {', '.join(changed)} "
                             f"(see {run_dir / artifacts.CONFIG_FILE})", "resume")
    trainable = load_checkpoint(run_dir / CHECKPOINT_DIR / state["checkpoint"])
    history = artifacts.read_json(run_dir / artifacts.HISTORY_FILE)
    history = {key: values[: state["epoch"]] for key, values in history.items()}
    return trainable, history, state["epoch"]


# Everything a run directory can hold that apparel wrote: what ``overwrite`` may remove.
RUN_ENTRIES = (artifacts.MODEL_FILE, artifacts.CONFIG_FILE, artifacts.HISTORY_FILE, artifacts.METRICS_FILE,
               artifacts.PLOTS_DIR, CHECKPOINT_DIR, HEAD_FILE, SKIPPED_FILE,
               # The LiteRT artefact predict, serve and catalog make beside the model, and its metadata.
               artifacts.ARTEFACT_FILE, f"{artifacts.ARTEFACT_FILE}.json")


@contextmanager
def claimed_run_dir(run_dir: Path | None, resume: bool = False, overwrite: bool = False):
    """The block as the only run writing ``run_dir``, which ``prepare_run_dir`` made ready first.
    Another live run writing there refuses this one (a ``ParameterError`` naming ``out_dir``): two
    runs would interleave their checkpoints and overwrite each other's model.

        >>> with claimed_run_dir(Path("runs/shop"), resume=True):
        ...     train_the_rest()
    """
    if run_dir is None:
        prepare_run_dir(run_dir, resume, overwrite)
        yield
        return
    if run_dir.exists() and not run_dir.is_dir():
        raise ParameterError(f"{{}} {run_dir} is a file; give a folder for the run", "out_dir")
    made = not run_dir.exists()
    try:
        with artifacts.one_writer(run_dir / LOCK_FILE, "out_dir", run_dir):
            prepare_run_dir(run_dir, resume, overwrite)
            yield
    finally:
        if made and run_dir.is_dir() and not any(run_dir.iterdir()):
            # A run that failed before writing anything leaves no empty folder (unless another run
            # took it meanwhile: then it is that run's).
            with suppress(OSError):
                run_dir.rmdir()


def prepare_run_dir(run_dir: Path | None, resume: bool = False, overwrite: bool = False) -> None:
    """Make sure one directory never mixes two runs: a new run starts in an empty (or new)
    directory; ``resume`` needs an interrupted run there; ``overwrite`` removes a previous run's
    files first, and nothing else (a folder holding other files is refused, not emptied)."""
    if run_dir is None:
        if resume or overwrite:
            raise ParameterError("{} needs {}, the run directory", "resume" if resume else "overwrite", "out_dir")
        return
    if resume and overwrite:
        raise ParameterError("{} continues the run and {} replaces it; choose one", "resume", "overwrite")
    for name in RUN_ENTRIES:  # what a killed run was writing when it died is nobody's file
        artifacts.remove_stale_temporaries(run_dir / name)
    interrupted = read_state(run_dir) is not None
    if resume:
        if not interrupted:
            raise ParameterError(f"{{}} {run_dir} holds no interrupted training to resume; start one without {{}}",
                                 "out_dir", "resume")
        return
    if run_dir.exists() and not run_dir.is_dir():
        raise ParameterError(f"{{}} {run_dir} is a file; give a folder for the run", "out_dir")
    # The lock is the live run's own (``claimed_run_dir``), or a killed run's that locks nothing.
    entries = sorted(entry.name for entry in run_dir.iterdir() if entry.name != LOCK_FILE) if run_dir.exists() else []
    if not entries:
        return
    if not overwrite:
        if interrupted:
            raise ParameterError(f"{{}} {run_dir} holds an interrupted training; continue it with {{}}, or start "
                                 "over with {}", "out_dir", "resume", "overwrite")
        raise ParameterError(f"{{}} {run_dir} already holds {', '.join(entries[:4])}{' …' if len(entries) > 4 else ''}; "
                             "choose a new folder, or replace that run with {}", "out_dir", "overwrite")
    foreign = [name for name in entries if name not in RUN_ENTRIES]
    if foreign:
        raise ParameterError(f"{{}} {run_dir} holds files a run does not write ({', '.join(foreign[:4])}); "
                             "choose a folder of its own for the run", "out_dir")
    for name in entries:
        path = run_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def restore_best(trainable, recorder, run_dir: Path | None) -> None:
    """Give ``trainable`` the weights of the best epoch by validation accuracy, if one was kept."""
    state = read_state(run_dir) if run_dir is not None else None
    if recorder.best_weights is not None:
        trainable.set_weights(recorder.best_weights)
    elif state and state.get("best_checkpoint"):
        # The best epoch came before an interruption.
        best_file = run_dir / CHECKPOINT_DIR / state["best_checkpoint"]
        trainable.set_weights(load_checkpoint(best_file, compile=False).get_weights())


def augmentations(config: TrainConfig) -> tuple[str, ...]:
    """The augmentations ``config`` trains with: its own, else its model's default."""
    return get_spec(config.model).augment if config.augment is None else config.augment


def base_model(trainable, config: TrainConfig):
    """The inference model inside a (possibly augmented) training model."""
    return trainable.layers[-1] if augmentations(config) else trainable


def finish_run(run_dir: Path, base, history: dict, metrics: dict) -> None:
    """Write the trained model and its figures, then drop the checkpoints: the run is complete."""
    artifacts.save_model(base, run_dir / artifacts.MODEL_FILE)
    artifacts.write_json(run_dir / artifacts.HISTORY_FILE, history)
    artifacts.write_json(run_dir / artifacts.METRICS_FILE, metrics)
    shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)
