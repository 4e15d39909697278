"""`apparel bench`: complete grids, failures kept, resume after SIGKILL, several workers on one
study (SQLite and a real, throwaway PostgreSQL server), exports. Tiny synthetic data, 1–3 epochs."""

from __future__ import annotations

import csv
import dataclasses
import glob
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest

from apparel.bench import report as bench_report
from apparel.bench.spec import AXIS_FIELDS, BenchSettings, StudySpec, build_study, parse_axis, read_study_file
from apparel.bench.store import claim, locked, open_storage, open_study, point_key, reconcile, trial_id, trial_kind
from apparel.bench.study import run_study
from apparel.cli import main
from apparel.config import TrainConfig

TINY = {"hidden": [16], "epochs": [1]}
DEADLINE_S = 300


def settings_for(tmp_path, name="s", **changes) -> BenchSettings:
    return BenchSettings(storage=f"sqlite:///{tmp_path / 'store' / 'bench.db'}", study=name, **changes)


def trials_of(spec, settings):
    return open_study(spec, settings).get_trials(deepcopy=False)


def complete_points(trials) -> Counter:
    return Counter(t.user_attrs["point"] for t in trials if trial_kind(t) == "complete")


def test_grid_runs_every_point_once_marks_the_reference_and_exports(tiny_dataset, tmp_path):
    # adam × default widths × 20 epochs × batch 32 is the walk-through's configuration.
    spec = StudySpec.from_axes({"optimizers": ["adam", "sgd"], "seeds": [0, 1]})
    settings = settings_for(tmp_path)
    records = run_study(spec, settings, dataset=tiny_dataset, show_progress=False)

    assert len(records) == spec.size() == 4
    assert complete_points(trials_of(spec, settings)) == Counter({point_key(p): 1 for p in spec.grid()})
    record = records[0]
    assert record["history"]["accuracy"] and len(record["history"]["loss"]) == 20
    assert record["parameters"] > 0 and "keras" in record["versions"] and record["fit_seconds"] > 0
    assert {"test_accuracy", "test_loss", "train_accuracy", "train_loss"} <= set(record)

    table = bench_report.results_table(records)
    adam_row = next(line for line in table.splitlines() if " adam " in f" {line} ")
    assert "reference" in adam_row and "±" in adam_row  # marked, mean ± std over the two seeds

    out = tmp_path / "export"
    written = bench_report.write_exports(records, out, meta={"study": "s"})
    assert sorted(p.name for p in written) == sorted(["results.csv", "results.md", "results.json", *bench_report.CHART_FILES])
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["model", "optimizer", "activation", "hidden", "outputs", "epochs", "batch_size",
                       "learning_rate", "seed", "test_accuracy", "test_loss", "train_accuracy", "fit_seconds", "state"]
    assert len(rows) == 5 and {row[-1] for row in rows[1:]} == {"COMPLETE"}
    assert {row[1] for row in rows[1:]} == {"adam", "sgd"} and {row[3] for row in rows[1:]} == {"256"}
    assert "| rank |" in (out / "results.md").read_text()
    assert len(json.loads((out / "results.json").read_text())["trials"]) == 4

    # Rerunning the same study adds nothing.
    again = run_study(spec, settings, dataset=tiny_dataset, show_progress=False)
    assert [r["trial"] for r in again] == [r["trial"] for r in records]
    assert len(trials_of(spec, settings)) == 4


def test_a_failing_trial_is_stored_with_its_error_and_the_study_goes_on(tiny_dataset, tmp_path):
    spec = StudySpec.from_axes({**TINY, "activations": ["no-such-activation", "relu", "tanh"]})
    settings = settings_for(tmp_path)
    records = run_study(spec, settings, dataset=tiny_dataset, show_progress=False)
    states = {r["activation"]: r["state"] for r in records}
    assert states == {"no-such-activation": "FAIL", "relu": "COMPLETE", "tanh": "COMPLETE"}
    failed = next(r for r in records if r["state"] == "FAIL")
    assert "unknown activation 'no-such-activation'" in failed["error"]
    assert "1 failed trial" in bench_report.results_table(records)
    assert "FAIL" in bench_report.csv_text(records)

    # A plain rerun keeps the failure; --retry-failed runs it once more, replacing it.
    assert len(run_study(spec, settings, dataset=tiny_dataset, show_progress=False)) == 3
    retried = run_study(spec, dataclasses.replace(settings, retry_failed=True), dataset=tiny_dataset, show_progress=False)
    assert len(retried) == 3
    assert next(r for r in retried if r["state"] == "FAIL")["retry_of"] == failed["trial"]
    assert len(trials_of(spec, settings)) == 4


def _states(database: Path) -> Counter:
    try:
        with sqlite3.connect(database, timeout=5) as connection:
            return Counter(state for (state,) in connection.execute("SELECT state FROM trials"))
    except sqlite3.OperationalError:  # not created yet
        return Counter()


def test_resume_after_sigkill_reruns_only_the_interrupted_trial(idx_dir, tmp_path, capsys):
    database = tmp_path / "store" / "bench.db"
    flags = ["bench", "--seeds", "0,1,2,3", "--hidden", "16", "--epochs", "3", "--storage", f"sqlite:///{database}",
             "--study", "killed", "--data-dir", str(idx_dir), "--no-verify"]
    worker = subprocess.Popen([sys.executable, "-m", "apparel", *flags], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + DEADLINE_S
    try:
        while True:
            states = _states(database)
            if states["COMPLETE"] >= 1 and states["RUNNING"] == 1:
                # Frozen, the worker cannot finish that trial between this look and the kill.
                worker.send_signal(signal.SIGSTOP)
                states = _states(database)
                if states["COMPLETE"] >= 1 and states["RUNNING"] == 1:
                    break
                worker.send_signal(signal.SIGCONT)
            assert worker.poll() is None, f"the worker ended before it could be killed: {states}"
            assert time.monotonic() < deadline, "the worker never finished a trial"
            time.sleep(0.02)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()

    spec, settings = build_study({"seeds": [0, 1, 2, 3], "hidden": [16], "epochs": [3]},
                                 {"storage": f"sqlite:///{database}", "study": "killed"})
    before = {t.number: t for t in trials_of(spec, settings)}
    finished = {n: t.datetime_complete for n, t in before.items() if t.state.name == "COMPLETE"}
    interrupted = [n for n, t in before.items() if t.state.name == "RUNNING"]
    assert finished and len(interrupted) == 1, {n: t.state.name for n, t in before.items()}

    out = tmp_path / "export"
    assert main([*flags, "--export", str(out)]) == 0
    assert "rank" in capsys.readouterr().out

    after = {t.number: t for t in trials_of(spec, settings)}
    for number, completed_at in finished.items():  # finished trials were kept, not re-run
        assert after[number].state.name == "COMPLETE" and after[number].datetime_complete == completed_at
    assert trial_kind(after[interrupted[0]]) == "interrupted"
    retry = [t for t in after.values() if t.user_attrs.get("retry_of") == interrupted[0]]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE"
    assert retry[0].user_attrs["point"] == before[interrupted[0]].user_attrs["point"]
    assert complete_points(after.values()) == Counter({point_key(p): 1 for p in spec.grid()})
    with open(out / "results.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 4


def _run_two_workers(storage: str, idx_dir: Path, name: str) -> None:
    spec = StudySpec.from_axes({"optimizers": ["adam", "sgd"], "seeds": [0, 1, 2], "hidden": [8], "epochs": [2]})
    settings = BenchSettings(storage=storage, study=name, workers=2, data_dir=str(idx_dir), verify_data=False,
                             poll_seconds=0.5)
    records = run_study(spec, settings, show_progress=False)
    trials = trials_of(spec, settings)
    # Every grid point ran exactly once, and no trial was ever created beyond the grid.
    assert len(trials) == spec.size() == 6
    assert complete_points(trials) == Counter({point_key(p): 1 for p in spec.grid()})
    assert len(records) == 6 and all(r["state"] == "COMPLETE" for r in records)
    workers = {r["worker"]["pid"] for r in records}
    print(f"{name}: trials per worker process {Counter(r['worker']['pid'] for r in records)}")
    assert os.getpid() not in workers


def test_two_workers_on_one_sqlite_study_never_duplicate_a_trial(idx_dir, tmp_path):
    _run_two_workers(f"sqlite:///{tmp_path / 'store' / 'bench.db'}", idx_dir, "sqlite-pair")


@pytest.fixture
def postgres_url():
    """A throwaway PostgreSQL cluster listening on a Unix socket only (no TCP port to pick and
    race for), removed afterwards."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not binaries:
        pytest.skip("PostgreSQL server binaries are not installed (apt-get install postgresql, as `make setup` does)")
    bin_dir = Path(binaries[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="apparel-pg-"))
    as_postgres = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(root, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    data = root / "data"
    try:
        subprocess.run([*as_postgres, bin_dir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"],
                       check=True, capture_output=True, timeout=120)
        subprocess.run([*as_postgres, bin_dir / "pg_ctl", "-D", data, "-l", root / "server.log", "-w", "-t", "60",
                        "-o", f"-k {root} -c listen_addresses='' -c fsync=off", "start"],
                       check=True, capture_output=True, timeout=120)
        yield f"postgresql://postgres@/postgres?host={root}"
    finally:
        subprocess.run([*as_postgres, bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_on_one_postgresql_study_run_every_point_once(postgres_url, idx_dir):
    _run_two_workers(postgres_url, idx_dir, "postgres-pair")


def test_tpe_search_runs_n_distinct_points_and_resumes_to_a_larger_n(tiny_dataset, tmp_path):
    axes = {**TINY, "optimizers": ["adam", "sgd"], "activations": ["relu", "tanh"]}
    settings = settings_for(tmp_path, "tpe")
    records = run_study(StudySpec.from_axes(axes, search=3), settings, dataset=tiny_dataset, show_progress=False)
    assert len(records) == 3
    assert len({(r["optimizer"], r["activation"]) for r in records}) == 3
    assert len(run_study(StudySpec.from_axes(axes, search=3), settings, dataset=tiny_dataset, show_progress=False)) == 3
    records = run_study(StudySpec.from_axes(axes, search=4), settings, dataset=tiny_dataset, show_progress=False)
    assert len({(r["optimizer"], r["activation"]) for r in records}) == 4
    with pytest.raises(ValueError, match="1 to 4 trials"):
        StudySpec.from_axes(axes, search=5)


def test_a_silent_worker_on_another_machine_is_failed_and_its_trial_queued_again(tmp_path):
    spec = StudySpec.from_axes({"seeds": [0, 1]})
    # A minute of grace while its heartbeat must count as fresh, however slow the machine is;
    # then one second, waited out for sure.
    patient = settings_for(tmp_path, heartbeat_seconds=1, grace_seconds=60)
    storage = open_storage(patient)
    study = open_study(spec, patient, storage)
    with locked(study, storage):
        reconcile(study, storage, spec)
    trial, _ = claim(study, storage, spec)
    trial.set_user_attr("worker", {"host": "another-machine", "boot": "x", "pid": 1})
    with locked(study, storage):
        reconcile(study, storage, spec)  # its heartbeat is fresh: left alone
    assert trial_kind(study.get_trials(deepcopy=False)[trial.number]) == "running"
    strict = settings_for(tmp_path, heartbeat_seconds=1, grace_seconds=1)
    storage = open_storage(strict)
    study = open_study(spec, strict, storage)
    time.sleep(3.0)  # no heartbeat for longer than the grace period (stored to the whole second)
    with locked(study, storage):
        reconcile(study, storage, spec)
    trials = study.get_trials(deepcopy=False)
    assert trial_kind(trials[trial.number]) == "interrupted"
    queued = [t for t in trials if t.user_attrs.get("retry_of") == trial.number]
    assert len(queued) == 1 and queued[0].state.name == "WAITING"
    assert queued[0].system_attrs["fixed_params"] == trial.params


def test_a_worker_in_another_pid_namespace_is_not_judged_by_its_pid():
    from apparel.bench.store import _dead_here, _identity

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    me = _identity()
    assert me["pid_namespace"] == os.readlink("/proc/self/ns/pid")
    assert _dead_here({**me, "pid": gone.pid})  # same host, boot and namespace: the pid tells
    # A container sharing host name and boot id numbers its processes apart: its heartbeat tells.
    assert not _dead_here({**me, "pid_namespace": "pid:[4026599999]", "pid": gone.pid})
    assert not _dead_here({key: value for key, value in me.items() if key != "pid_namespace"} | {"pid": gone.pid})
    assert not _dead_here({**me, "pid": os.getpid()})


def test_a_trial_finished_by_another_worker_meanwhile_is_left_alone(tmp_path, monkeypatch, capsys):
    from types import SimpleNamespace

    import apparel.training.trainer
    from apparel.bench.study import run_trial
    from optuna.trial import TrialState

    spec = StudySpec.from_axes({"seeds": [0, 1]})
    settings = settings_for(tmp_path)
    storage = open_storage(settings)
    study = open_study(spec, settings, storage)
    with locked(study, storage):
        reconcile(study, storage, spec)

    def finish(trial):  # what another worker's reconcile does to a trial it judges dead
        storage.set_trial_state_values(trial_id(storage, study.study_name, trial.number), state=TrialState.FAIL)

    # Finished before this worker starts on it, and while it trains (then stores its figures).
    first, _ = claim(study, storage, spec)
    finish(first)
    run_trial(study, first, spec, dataset=None)
    second, _ = claim(study, storage, spec)
    result = SimpleNamespace(model=None, history={"loss": [0.5]}, metrics={"test_accuracy": 0.9})
    monkeypatch.setattr(apparel.training.trainer, "train", lambda *args, **kwargs: finish(second) or result)
    run_trial(study, second, spec, dataset=None)

    trials = study.get_trials(deepcopy=False)
    assert [trial_kind(trials[t.number]) for t in (first, second)] == ["interrupted", "interrupted"]
    assert "test_accuracy" not in trials[second.number].user_attrs
    assert capsys.readouterr().err.count("was finished by another worker meanwhile") == 2


def test_study_file_flags_and_mismatches(tmp_path, capsys):
    study_file = tmp_path / "study.toml"
    study_file.write_text('optimizers = ["adam", "ftrl"]\nepochs = 5\nsearch = 2\nlimit = 1000\n'
                          'storage = "sqlite:///x.db"\n[train]\nsteps_per_execution = 8\n')
    options = read_study_file(study_file)
    spec, settings = build_study(options["axes"], options["settings"], options["train"])
    assert spec.axes["optimizer"] == ("adam", "ftrl") and spec.axes["epochs"] == (5,) and spec.search == 2
    assert spec.base.limit == 1000 and spec.base.steps_per_execution == 8 and settings.storage == "sqlite:///x.db"
    assert set(spec.axes) == set(AXIS_FIELDS) and spec.config_for(spec.grid()[1]) == TrainConfig(
        optimizer="ftrl", epochs=5, limit=1000, steps_per_execution=8)

    study_file.write_text("optimisers = ['adam']\n")
    with pytest.raises(ValueError, match="unknown key 'optimisers'"):
        read_study_file(study_file)
    with pytest.raises(ValueError, match="'x' is not an integer"):
        parse_axis("epochs", "5,x")
    assert parse_axis("learning_rates", "default, 0.01") == [None, 0.01]
    with pytest.raises(ValueError, match="unknown model 'seed-mpl'"):
        StudySpec.from_axes({"models": ["seed-mpl"]})
    with pytest.raises(ValueError, match="must be positive"):
        StudySpec.from_axes({"epochs": [0]})

    settings = settings_for(tmp_path, "fixed")
    open_study(StudySpec.from_axes({"optimizers": ["adam"]}), settings)
    with pytest.raises(ValueError, match="different space: optimizer"):
        open_study(StudySpec.from_axes({"optimizers": ["adam", "sgd"]}), settings)
    with pytest.raises(ValueError, match="in-memory"):
        open_study(StudySpec.from_axes({}), BenchSettings(storage="sqlite:///:memory:"))
    assert main(["bench", "--epochs", "1,x"]) == 2
    assert "--epochs" in capsys.readouterr().err
    # Settings flags come from BenchSettings' fields, and errors name them.
    assert main(["bench", "--storage", "::not a url", "--heartbeat-seconds", "0"]) == 2
    assert "heartbeat_seconds" in capsys.readouterr().err
    assert main(["bench", "--storage", "::not a url"]) == 2
    error = capsys.readouterr().err
    assert "is not a database URL" in error and "(--storage)" in error
