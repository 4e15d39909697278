"""Benchmark studies: train every point of a grid (or N points chosen by Optuna's TPE) over the
training axes, in an Optuna study stored in a database, resumable and shared by many workers.

    >>> from apparel.bench.study import StudySpec, BenchSettings, run_study
    >>> spec = StudySpec.from_axes({"optimizers": ["adam", "ftrl"], "epochs": [5]})
    >>> records = run_study(spec, BenchSettings(storage="sqlite:///runs/bench/mine.db", study="mine"))
    >>> records[0]["test_accuracy"]

The axes and settings live in ``apparel.bench.spec``, the store, its lock and the resume logic in
``apparel.bench.store``, the tables and charts in ``apparel.bench.report``.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Callable

from apparel.artifacts import usable_cores
from apparel.bench.spec import (  # re-exported: the public API of a study, in one place
    AXES,
    AXIS_FIELDS,
    AXIS_TYPES,
    SETTING_TYPES,
    BenchSettings,
    StudySpec,
    build_study,
    is_reference,
    parse_axis,
    read_study_file,
    resolved_axes,
)
from apparel.bench.store import (
    Heartbeat,
    claim,
    live_trials,
    locked,
    open_storage,
    open_study,
    params_of,
    pending,
    progress,
    reconcile,
    redact,
    trial_id,
    trial_kind,
)

__all__ = ["AXES", "AXIS_FIELDS", "AXIS_TYPES", "SETTING_TYPES", "BenchSettings", "StudySpec", "build_study", "claim",
           "collect", "is_reference", "live_trials", "locked", "open_storage", "open_study", "parse_axis", "progress",
           "read_study_file", "reconcile", "redact", "resolved_axes", "run_study", "run_trial", "run_worker", "trial_id",
           "trial_kind"]


def run_trial(study, trial, spec: StudySpec, dataset) -> None:
    """Train the trial's configuration and store its figures; an exception is stored as the
    trial's error (the study goes on); an interrupt leaves it to be re-run. A trial finished
    meanwhile by another worker (judged dead, say) is left as it is: this one says so and goes on."""
    from optuna.exceptions import UpdateFinishedTrialError

    try:
        _run_trial(study, trial, spec, dataset)
    except UpdateFinishedTrialError as error:
        print(f"apparel bench: trial {trial.number} was finished by another worker meanwhile; "
              f"its result here is dropped ({error})", file=sys.stderr)


def _run_trial(study, trial, spec: StudySpec, dataset) -> None:
    import keras
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    from apparel.artifacts import library_versions
    from apparel.training.trainer import train

    def tell(*args, **kwargs):
        # skip_if_finished covers a trial already finished; the error, one finished in between.
        study.tell(trial, *args, skip_if_finished=True, **kwargs)

    config = spec.config_for(trial.params)
    trial.set_user_attr("config", config.to_dict())
    trial.set_user_attr("versions", library_versions())
    try:
        result = train(config, dataset=dataset, verbose=0)
        learning_rate = _learning_rate(result.model)
    except Exception as error:  # noqa: BLE001 — any failure of one configuration is a result
        trial.set_user_attr("error", f"{type(error).__name__}: {error}"[:2000])
        tell(state=TrialState.FAIL)
        return
    except BaseException:
        try:
            tell(state=TrialState.FAIL)  # no "error": interrupted, re-run next time
        except UpdateFinishedTrialError:
            pass  # finished by another worker: nothing to re-run
        raise
    finally:
        keras.backend.clear_session()
    metrics = result.metrics
    for key in ("test_accuracy", "test_loss", "train_accuracy", "train_loss", "fit_seconds", "epoch_seconds",
                "parameters", "train_images", "test_images", "validation_accuracy"):
        if key in metrics:
            trial.set_user_attr(key, _finite(metrics[key]))
    trial.set_user_attr("history", {key: [_finite(v) for v in values] for key, values in result.history.items()})
    trial.set_user_attr("learning_rate", learning_rate)
    # TPE steers on held-out data when there is any, so the test set stays a test.
    tell(metrics.get("validation_accuracy", metrics["test_accuracy"]))


def _finite(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _learning_rate(model) -> float | None:
    import keras

    try:
        return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    except (AttributeError, TypeError, ValueError):
        return None


def run_worker(spec: StudySpec, settings: BenchSettings, dataset=None,
               on_progress: Callable[[object], None] | None = None) -> int:
    """Claim and run trials of the study until none is left; returns how many this worker ran."""
    storage = open_storage(settings)
    study = open_study(spec, settings, storage)
    ran = 0
    while True:
        trial, others_running = claim(study, storage, spec)
        if trial is None:
            if not others_running:
                return ran
            # Another worker's trial may still die and need re-running here: wait for it.
            if on_progress:
                on_progress(study)
            time.sleep(settings.poll_seconds)
            continue
        if dataset is None:
            from optuna.trial import TrialState

            from apparel.kinds.fashion_mnist.data import load_dataset

            try:  # loaded once there is work; a missing data set is the command's error, not the trial's
                dataset = load_dataset(settings.data_dir, verify=settings.verify_data)
            except BaseException:
                study.tell(trial, state=TrialState.FAIL)  # interrupted: the next run takes it again
                raise
        with Heartbeat(storage, trial_id(storage, study.study_name, trial.number), settings.heartbeat_seconds):
            run_trial(study, trial, spec, dataset)
        ran += 1
        if on_progress:
            on_progress(study)


def _worker_process(spec: StudySpec, settings: BenchSettings, threads: int) -> None:
    """Entry point of a worker process: limit its threads before TensorFlow starts."""
    import signal

    for variable in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ[variable] = str(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    def interrupt(signum, frame):
        raise KeyboardInterrupt  # so the running trial is stored as interrupted at once

    signal.signal(signal.SIGTERM, interrupt)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    try:
        run_worker(spec, settings)
    except ValueError as error:
        print(f"apparel bench worker: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def threads_per_worker(workers: int) -> int:
    return max(1, usable_cores() // workers)


def run_study(spec: StudySpec, settings: BenchSettings, dataset=None, show_progress: bool = True) -> list[dict]:
    """Run (or resume) the study to the end with ``settings.workers`` workers and return its
    records (see ``collect``). ``dataset`` (tests, notebooks) needs a single worker."""
    if dataset is not None and settings.workers > 1:
        raise ValueError("an in-memory dataset serves one worker; give data_dir for several")
    storage = open_storage(settings)
    study = open_study(spec, settings, storage)
    with locked(study, storage):
        reconcile(study, storage, spec, retry_failed=settings.retry_failed)
    done, total, _ = progress(study, spec)
    bar = _progress_bar(settings.study_name(spec), done, total, show_progress)

    def update(current_study) -> None:
        finished, _, best = progress(current_study, spec)
        if best is not None:
            bar.set_postfix_str(f"best test acc {best:.4f}", refresh=False)
        if finished > bar.n:
            bar.update(finished - bar.n)

    update(study)
    try:
        if not pending(study, spec):
            pass  # finished earlier: no worker to start
        elif settings.workers == 1:
            run_worker(spec, settings, dataset=dataset, on_progress=update)
        else:
            _run_processes(spec, settings, study, update)
    finally:
        update(study)
        bar.close()
    return collect(study)


def _progress_bar(name: str, done: int, total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc=name, unit="trial", disable=not enabled,
                bar_format="{desc}: {n}/{total} trials |{bar}| [{elapsed} elapsed, {remaining} left]{postfix}",
                file=sys.stderr, dynamic_ncols=True)


def _run_processes(spec: StudySpec, settings: BenchSettings, study, update) -> None:
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # a fresh interpreter: TensorFlow is not fork-safe
    threads = threads_per_worker(settings.workers)
    processes = [context.Process(target=_worker_process, args=(spec, settings, threads), name=f"bench-worker-{i}")
                 for i in range(settings.workers)]
    for process in processes:
        process.start()
    try:
        while any(process.is_alive() for process in processes):
            update(study)
            time.sleep(settings.poll_seconds)
    except KeyboardInterrupt:
        # Ctrl-C reached the workers too: give them time to store their trials as interrupted.
        for process in processes:
            process.join(10)
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join(30)
        raise
    failed = [f"{process.name} exited with {process.exitcode}" for process in processes if process.exitcode]
    if failed:
        raise ValueError("; ".join(failed) + " (its error is printed above); rerun the command to resume")


def collect(study) -> list[dict]:
    """One record per live finished trial, in trial order: the axis values (model defaults and
    the optimizer's learning rate filled in), figures, history, parameter count, versions, error."""
    records = []
    for trial in live_trials(study.get_trials(deepcopy=False)):
        kind = trial_kind(trial)
        if kind not in ("complete", "failed"):
            continue
        attrs = trial.user_attrs
        record = {"trial": trial.number, "state": trial.state.name, **resolved_axes(params_of(trial) or {}, attrs.get("learning_rate"))}
        for key in ("test_accuracy", "test_loss", "train_accuracy", "train_loss", "fit_seconds", "epoch_seconds",
                    "parameters", "train_images", "test_images", "validation_accuracy", "error", "history",
                    "versions", "worker", "retry_of"):
            if key in attrs:
                record[key] = attrs[key]
        record["params"] = dict(trial.params)
        record["started"] = trial.datetime_start.isoformat(timespec="seconds") if trial.datetime_start else None
        record["finished"] = trial.datetime_complete.isoformat(timespec="seconds") if trial.datetime_complete else None
        records.append(record)
    return records
