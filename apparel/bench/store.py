"""The study's store: an Optuna RDB study (SQLite file or a database server), the lock that
serializes claims on it, and the bookkeeping that makes a study resumable.

How a trial is never run twice. Every claim of work — re-queueing what a dead worker left,
queueing missing grid points, popping a queued trial, asking TPE for a new one — happens under one
lock per study: ``flock`` on a file beside a SQLite database, ``pg_advisory_lock`` on PostgreSQL,
``GET_LOCK`` on MySQL. Optuna's own queue pop is not enough: through Python's sqlite3 its
read-then-update is not one transaction, and its ``GridSampler`` re-evaluates points when workers
race or a grid point's trial died. A claimed trial names its worker (host, boot, PID namespace,
pid) and beats a heartbeat into the store; a trial whose local process is gone, or whose heartbeat
is older than the grace period (a worker on another machine), is marked interrupted and its
parameters queued again — once, since the new trial records ``retry_of``.

    >>> from apparel.bench.store import open_study, claim
    >>> storage = open_storage(settings)
    >>> study = open_study(spec, settings, storage)
    >>> trial, others_running = claim(study, storage, spec)

The storage is passed along beside the study (Optuna keeps a study's own storage private).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import socket
import threading
import warnings
from pathlib import Path

from apparel.bench.spec import AXIS_FIELDS, SPEC_ATTR, BenchSettings, StudySpec
from apparel.config import TrainConfig
from apparel.errors import ParameterError


def normalize_storage_url(url: str) -> str:
    """SQLAlchemy's plain ``postgresql://`` means psycopg2; we ship psycopg 3."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def redact(url: str) -> str:
    """The URL without its password, for tables and exports."""
    import sqlalchemy

    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:  # opening it says what is wrong; never echo a password
        return "(not a database URL)"


def open_storage(settings: BenchSettings):
    """An Optuna RDBStorage with heartbeats, creating a SQLite file's directory if needed."""
    import optuna
    import sqlalchemy

    url = normalize_storage_url(settings.storage)
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise ParameterError(f"{{}} {settings.storage!r} is not a database URL; e.g. sqlite:///runs/bench/bench.db "
                             "or postgresql://user:password@host/db", "storage") from None
    engine_kwargs = {}
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ValueError("an in-memory SQLite study cannot be resumed or shared; give a file: sqlite:///path/study.db")
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # Several processes write one file: wait for its lock instead of failing at once.
        engine_kwargs = {"connect_args": {"timeout": 120}}
    else:
        engine_kwargs = {"pool_pre_ping": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs,
                                              heartbeat_interval=settings.heartbeat_seconds,
                                              grace_period=settings.grace_seconds)
        except ImportError as error:
            raise ValueError(f"no database driver for {redact(url)}: {error}") from None
        except Exception as error:
            if type(error).__module__.startswith(("sqlalchemy", "optuna")):
                raise ValueError(f"cannot open the study storage {redact(url)}: {error}") from None
            raise


@contextlib.contextmanager
def study_lock(storage, study_name: str):
    """Serialize claims on one study across processes and machines (see the module docstring)."""
    import sqlalchemy

    url = storage.engine.url
    backend = url.get_backend_name()
    if backend == "sqlite":
        import fcntl

        with open(f"{url.database}.lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    key = int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:8], "big", signed=True)
    if backend == "postgresql":
        take, release = "SELECT pg_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)"
    elif backend in ("mysql", "mariadb"):
        key = f"apparel-{key}"
        take, release = "SELECT GET_LOCK(:key, -1)", "SELECT RELEASE_LOCK(:key)"
    else:
        raise ValueError(f"storage backend {backend!r} is not supported; use sqlite, postgresql or mysql")
    with storage.engine.connect() as connection:
        connection.execute(sqlalchemy.text(take), {"key": key})
        connection.commit()
        try:
            yield
        finally:
            connection.execute(sqlalchemy.text(release), {"key": key})
            connection.commit()


def locked(study, storage):
    """``study_lock`` for an open study."""
    return study_lock(storage, study.study_name)


def trial_id(storage, study_name: str, number: int) -> int:
    """The storage's id of trial ``number`` of a study: what heartbeats and state changes take."""
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), number)


def open_study(spec: StudySpec, settings: BenchSettings, storage=None):
    """Create the study, or load it and check it was made for the same axes and settings."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = storage or open_storage(settings)
    name = settings.study_name(spec)
    with study_lock(storage, name):
        sampler = optuna.samplers.TPESampler(constant_liar=True)  # only asked in --search mode
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize",
                                    sampler=sampler, load_if_exists=True)
        stored = study.user_attrs.get(SPEC_ATTR)
        wanted = spec.describe()
        if stored is None:
            if study.get_trials(deepcopy=False):
                raise ParameterError(f"{{}} {name!r} in {redact(storage.url)} was not made by `apparel bench`; choose another name",
                                     "study")
            study.set_user_attr(SPEC_ATTR, wanted)
        elif _difference(stored, wanted):
            raise ParameterError(f"{{}} {name!r} in {redact(storage.url)} was made for a different space: "
                                 f"{_difference(stored, wanted)}; use the same axes to resume it, or a new name", "study")
    return study


def _difference(stored: dict, wanted: dict) -> str:
    """What differs, ignoring TrainConfig fields added since the study began that keep their
    default (so a newer apparel resumes an older study)."""
    defaults = json.loads(json.dumps(TrainConfig().to_dict()))
    changes = []
    for section in ("mode", "axes", "base"):
        old, new = stored.get(section), wanted.get(section)
        if isinstance(old, dict) and isinstance(new, dict):
            for key in sorted(set(old) | set(new)):
                if section == "base" and key not in old and new.get(key) == defaults.get(key):
                    continue
                if old.get(key, "(absent)") != new.get(key, "(absent)"):
                    changes.append(f"{key} {old.get(key, '(absent)')} → {new.get(key, '(absent)')}")
        elif old != new:
            changes.append(f"{section} {old} → {new}")
    return "; ".join(changes)


# ---------------------------------------------------------------------------------------------
# Trial bookkeeping: what is done, what is left, who is dead


def point_key(point: dict) -> str:
    return json.dumps([point[name] for name in AXIS_FIELDS])


def trial_kind(trial) -> str:
    """complete, failed (raised), interrupted (its worker died: to re-run), duplicate (a TPE
    repeat, never run), running or waiting."""
    from optuna.trial import TrialState

    if trial.state == TrialState.FAIL:
        if "error" in trial.user_attrs:
            return "failed"
        return "duplicate" if "duplicate_of" in trial.user_attrs else "interrupted"
    return {TrialState.COMPLETE: "complete", TrialState.RUNNING: "running",
            TrialState.WAITING: "waiting"}.get(trial.state, "other")


def live_trials(trials: list) -> list:
    """Trials that count: not interrupted, not duplicates, and not failures since retried."""
    retried = {trial.user_attrs.get("retry_of") for trial in trials}
    return [trial for trial in trials if trial_kind(trial) in ("complete", "failed", "running", "waiting")
            and trial.number not in retried]


def _identity() -> dict:
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    try:  # containers can share a host name and boot id, yet number their processes apart
        pid_namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        pid_namespace = ""
    return {"host": socket.gethostname(), "boot": boot, "pid_namespace": pid_namespace, "pid": os.getpid()}


def _dead_here(worker: dict | None) -> bool:
    """True when ``worker`` ran on this machine, in this PID namespace, and its process is gone
    (or a zombie). Any other worker is judged by its heartbeat."""
    me = _identity()
    if not worker or any(worker.get(key) != me[key] for key in ("host", "boot", "pid_namespace")) or worker.get("pid") == me["pid"]:
        return False
    try:
        os.kill(int(worker["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        state = Path(f"/proc/{worker['pid']}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state in ("Z", "X")


def _fail(storage, study, trial) -> None:
    import optuna
    from optuna.trial import TrialState

    try:
        storage.set_trial_state_values(trial_id(storage, study.study_name, trial.number), state=TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass  # it finished meanwhile


def params_of(trial) -> dict | None:
    params = trial.system_attrs.get("fixed_params") or trial.params
    return dict(params) if set(params) == set(AXIS_FIELDS) else None


def reconcile(study, storage, spec: StudySpec, retry_failed: bool = False) -> None:
    """Under the study lock: mark trials of dead workers interrupted, queue them again, and (grid)
    queue every point no live trial covers. ``retry_failed`` also re-queues trials that raised."""
    import optuna

    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        # A running trial without a worker was orphaned inside a claim, which holds this lock.
        if "worker" not in trial.user_attrs or _dead_here(trial.user_attrs["worker"]):
            _fail(storage, study, trial)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # heartbeats: workers on other machines

    trials = study.get_trials(deepcopy=False)
    retried = {trial.user_attrs.get("retry_of") for trial in trials}
    redo = ("interrupted", "failed") if retry_failed else ("interrupted",)
    for trial in trials:
        params = params_of(trial)
        if trial_kind(trial) in redo and trial.number not in retried and params is not None:
            study.enqueue_trial(params, user_attrs={"point": point_key(params), "retry_of": trial.number})
    if spec.search is None:
        covered = {trial.user_attrs.get("point") for trial in live_trials(study.get_trials(deepcopy=False))}
        for point in spec.grid():
            if point_key(point) not in covered:
                study.enqueue_trial(point, user_attrs={"point": point_key(point)})


def progress(study, spec: StudySpec) -> tuple[int, int, float | None]:
    """(finished, total, best test accuracy so far) over the live trials."""
    finished = [t for t in live_trials(study.get_trials(deepcopy=False)) if trial_kind(t) in ("complete", "failed")]
    total = spec.size() if spec.search is None else spec.search
    scores = [t.user_attrs.get("test_accuracy") for t in finished if trial_kind(t) == "complete"]
    scores = [s for s in scores if isinstance(s, (int, float)) and math.isfinite(s)]
    return min(len(finished), total), total, max(scores) if scores else None


def pending(study, spec: StudySpec) -> bool:
    """Whether any trial is queued or running, or a search has trials left to ask for."""
    trials = study.get_trials(deepcopy=False)
    if any(trial_kind(t) in ("waiting", "running") for t in trials):
        return True
    return spec.search is not None and len(live_trials(trials)) < spec.search


def distributions(spec: StudySpec) -> dict:
    from optuna.distributions import CategoricalDistribution

    return {name: CategoricalDistribution(list(spec.axes[name])) for name in AXIS_FIELDS}


def claim(study, storage, spec: StudySpec) -> tuple[object | None, bool]:
    """The next trial for this worker, marked with it and a first heartbeat; and whether trials of
    other workers are still running (so the caller should wait for them rather than stop)."""
    with locked(study, storage):
        reconcile(study, storage, spec)
        trials = study.get_trials(deepcopy=False)
        waiting = any(trial_kind(t) == "waiting" for t in trials)
        live = live_trials(trials)
        trial = None
        if waiting:
            trial = _ask(study, spec)
        elif spec.search is not None and len(live) < spec.search:
            trial = _ask_new(study, spec, {t.user_attrs.get("point") for t in live})
        if trial is not None:
            trial.set_user_attr("worker", _identity())
            storage.record_heartbeat(trial_id(storage, study.study_name, trial.number))
        others_running = any(trial_kind(t) == "running" for t in trials)
        return trial, others_running


def _ask(study, spec: StudySpec):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        trial = study.ask(distributions(spec))
    trial.set_user_attr("point", point_key(trial.params))
    return trial


def _ask_new(study, spec: StudySpec, taken: set):
    """A new TPE trial at a point no live trial has; repeats are recorded as duplicates (failed,
    which TPE ignores) and, after a few, an untried point is queued instead."""
    from optuna.trial import TrialState

    for _ in range(20):
        trial = _ask(study, spec)
        if trial.user_attrs["point"] not in taken:
            return trial
        trial.set_user_attr("duplicate_of", trial.user_attrs["point"])
        study.tell(trial, state=TrialState.FAIL)
    untried = [point for point in spec.grid() if point_key(point) not in taken]
    if not untried:
        return None
    study.enqueue_trial(untried[0], user_attrs={"point": point_key(untried[0])})
    return _ask(study, spec)


class Heartbeat:
    """Records a trial's heartbeat every few seconds in a background thread."""

    def __init__(self, storage, trial_id: int, seconds: float):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(storage, trial_id, seconds), daemon=True)

    def _beat(self, storage, trial_id, seconds):
        while not self._stop.wait(seconds):
            with contextlib.suppress(Exception):  # a missed beat is retried; the grace period allows it
                storage.record_heartbeat(trial_id)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
