import json

import numpy as np
import pytest

from apparel import artifacts
from apparel.config import TrainConfig
from apparel.errors import ParameterError
from apparel.training.evaluation import evaluate_run
from apparel.inference.prediction import Predictor
from apparel.kinds.fashion_mnist.fitting import shuffled_batches
from apparel.training.trainer import train
from conftest import another_run_holding, needs_real_data

QUICK = TrainConfig(epochs=2, hidden=32, batch_size=32)


def test_train_writes_a_complete_run_directory(tiny_dataset, tmp_path):
    result = train(QUICK, dataset=tiny_dataset, out_dir=tmp_path / "run", verbose=0)
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "history.json", "metrics.json", "model.keras"]
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("test_accuracy", "test_loss", "train_accuracy", "train_loss", "fit_seconds", "parameters"):
        assert isinstance(metrics[key], (int, float)), key
    assert metrics == result.metrics
    history = json.loads((run / "history.json").read_text())
    assert len(history["loss"]) == len(history["accuracy"]) == len(history["seconds"]) == 2
    saved = TrainConfig.load(run / "config.json")
    assert saved == QUICK
    assert "keras" in json.loads((run / "config.json").read_text())["versions"]


def test_reloaded_model_predicts_identically(tiny_dataset, tmp_path):
    result = train(QUICK, dataset=tiny_dataset, out_dir=tmp_path, verbose=0)
    predictor = Predictor.from_dir(tmp_path)
    in_memory = Predictor(result.model)
    np.testing.assert_array_equal(predictor.logits(tiny_dataset.x_test), in_memory.logits(tiny_dataset.x_test))
    # The compiled forward pass agrees with Keras's predict up to float rounding.
    keras_logits = np.asarray(result.model.predict(tiny_dataset.x_test, verbose=0))[:, :10]
    np.testing.assert_allclose(predictor.logits(tiny_dataset.x_test), keras_logits, atol=1e-5)
    # A row's logits do not depend on the batch it comes in, up to kernel rounding.
    np.testing.assert_allclose(predictor.logits(tiny_dataset.x_test[:3]), predictor.logits(tiny_dataset.x_test)[:3], atol=1e-5)
    probabilities = predictor.predict_proba(tiny_dataset.x_test)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    report = evaluate_run(tmp_path, dataset=tiny_dataset)
    assert report["test_accuracy"] == pytest.approx(result.metrics["test_accuracy"])
    assert np.array(report["confusion_matrix"]).sum() == len(tiny_dataset.y_test)
    assert set(json.loads((tmp_path / "metrics.json").read_text())) >= {"per_class", "confusion_matrix", "fit_seconds"}


def test_training_learns_the_synthetic_task(tiny_dataset):
    result = train(QUICK.replace(epochs=8, learning_rate=0.01), dataset=tiny_dataset, verbose=0)
    assert result.metrics["test_accuracy"] > 0.5  # 10 classes: chance is 0.1


@pytest.mark.parametrize("optimizer", ["ftrl", "sgd", "rmsprop", "adamw", "nadam", "lion", "adagrad", "adadelta", "adamax"])
def test_every_builtin_optimizer_trains(optimizer, tiny_dataset):
    result = train(QUICK.replace(epochs=1, optimizer=optimizer), dataset=tiny_dataset, verbose=0)
    assert np.isfinite(result.metrics["train_loss"])


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "gelu"])
def test_activations_and_output_width_vary(activation, tiny_dataset):
    result = train(QUICK.replace(epochs=1, activation=activation, outputs=10), dataset=tiny_dataset, verbose=0)
    assert result.model.output_shape == (None, 10)


def test_extra_metrics_by_string_identifier(tiny_dataset):
    result = train(QUICK.replace(epochs=1, metrics=("accuracy", "SparseTopKCategoricalAccuracy")), dataset=tiny_dataset, verbose=0)
    assert "SparseTopKCategoricalAccuracy" in result.history


def test_validation_split_is_held_out(tiny_dataset):
    result = train(QUICK.replace(epochs=1, validation_split=0.25), dataset=tiny_dataset, verbose=0)
    assert result.metrics["train_images"] == 192 and result.metrics["validation_images"] == 64
    assert "val_accuracy" in result.history


def test_unknown_optimizer_and_metric_are_clear_errors(tiny_dataset):
    with pytest.raises(ValueError, match="unknown optimizer 'adamm'"):
        train(QUICK.replace(optimizer="adamm"), dataset=tiny_dataset, verbose=0)
    with pytest.raises(ValueError, match="unknown metric 'no_such_metric'"):
        train(QUICK.replace(metrics=("no_such_metric",)), dataset=tiny_dataset, verbose=0)


def test_atomic_writes_leave_no_temporary_files(tmp_path):
    artifacts.write_json(tmp_path / "a.json", {"x": 1})
    with pytest.raises(RuntimeError):
        with artifacts.atomic_path(tmp_path / "a.json") as temporary:
            temporary.write_text("half")
            raise RuntimeError("killed")
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_a_folder_that_takes_no_new_file_is_said_of_the_file_asked_for(tmp_path, monkeypatch):
    """The CLI names an OSError's file; a read-only folder used to name the hidden temporary."""
    import errno
    import tempfile

    def refused(prefix, suffix, dir):
        raise PermissionError(errno.EPERM, "Operation not permitted", f"{dir}/{prefix}x1y2{suffix}")

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(PermissionError) as error:
        artifacts.write_json(tmp_path / "model.json", {"x": 1})
    assert error.value.filename == str(tmp_path / "model.json") and error.value.errno == errno.EPERM


def test_atomic_writes_go_through_a_link_and_refuse_a_pipe(tmp_path):
    """`catalog --out` on a symbolic link replaced the link and never wrote its target; on a pipe or
    /dev/full it put a file in their place."""
    import os

    (tmp_path / "shop").mkdir()
    (tmp_path / "out.json").symlink_to(tmp_path / "shop" / "real.json")
    artifacts.write_json(tmp_path / "out.json", {"x": 1})
    assert (tmp_path / "out.json").is_symlink() and json.loads((tmp_path / "shop" / "real.json").read_text()) == {"x": 1}
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ValueError, match="pipe is not a regular file"):
        artifacts.write_json(tmp_path / "pipe", {"x": 1})
    assert (tmp_path / "pipe").is_fifo()


def test_options_of_the_stronger_models_train(tiny_dataset):
    config = TrainConfig(
        model="cnn", width=4, hidden=8, epochs=2, validation_split=0.25, schedule="one-cycle",
        label_smoothing=0.1, augment=("shift", "flip", "erase"), early_stopping=1, learning_rate=0.01,
    )
    result = train(config, dataset=tiny_dataset, verbose=0)
    assert 1 <= result.metrics["best_epoch"] <= 2
    assert result.metrics["validation_accuracy"] == max(result.history["val_accuracy"])
    # The saved model is the bare network: augmentation acts only inside fit.
    assert result.model.name == "cnn"


@pytest.mark.parametrize("schedule", ["cosine", "one-cycle"])
def test_schedules_change_the_learning_rate_over_the_run(schedule):
    from apparel.training.optimization import learning_rate_for

    rate = learning_rate_for(TrainConfig(schedule=schedule, learning_rate=0.01, epochs=2), steps_per_epoch=10)
    start, middle, end = (float(rate(step)) for step in (0, 8, 20))
    assert end < 0.002 and middle > end
    with pytest.raises(ValueError, match="unknown schedule"):
        learning_rate_for(TrainConfig(schedule="step"), 10)


def interrupt_after_epoch_2():
    """A Keras callback that stops training as Ctrl-C would, once two epochs are checkpointed."""
    import keras

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    return Interrupt()


def test_interrupted_training_resumes_from_its_last_epoch(tiny_dataset, tmp_path):
    config = QUICK.replace(epochs=4, validation_split=0.25)
    with pytest.raises(KeyboardInterrupt):
        train(config, dataset=tiny_dataset, out_dir=tmp_path, verbose=0, callbacks=[interrupt_after_epoch_2()])
    assert json.loads((tmp_path / "checkpoints" / "state.json").read_text())["epoch"] == 2
    assert not (tmp_path / "model.keras").exists()

    with pytest.raises(ValueError, match="interrupted training; continue it with resume, or start over with overwrite"):
        train(config, dataset=tiny_dataset, out_dir=tmp_path, verbose=0)
    with pytest.raises(ValueError, match="these differ: epochs"):
        train(config.replace(epochs=5), dataset=tiny_dataset, out_dir=tmp_path, verbose=0, resume=True)

    result = train(config, dataset=tiny_dataset, out_dir=tmp_path, verbose=0, resume=True)
    assert result.metrics["epochs_run"] == 4
    assert len(json.loads((tmp_path / "history.json").read_text())["loss"]) == 4
    assert not (tmp_path / "checkpoints").exists()
    assert (tmp_path / "model.keras").exists()
    # The resumed epochs see the batches the uninterrupted run sees, so they end where it ends.
    uninterrupted = train(config, dataset=tiny_dataset, verbose=0)
    np.testing.assert_allclose(result.history["loss"], uninterrupted.history["loss"], rtol=1e-4)


def test_training_batches_are_reshuffled_every_epoch_and_reproducible():
    x = np.arange(10 * 2 * 2, dtype=np.float32).reshape(10, 2, 2)
    y = np.arange(10)

    def epochs(dataset, count):
        return [[(images.numpy(), labels.numpy()) for images, labels in dataset] for _ in range(count)]

    seen = epochs(shuffled_batches(x, y, batch_size=4, seed=3), 3)
    orders = [np.concatenate([labels for _, labels in epoch]) for epoch in seen]
    for epoch, order in zip(seen, orders):
        assert [len(labels) for _, labels in epoch] == [4, 4, 2]  # a last partial batch, as Keras makes
        assert sorted(order) == list(range(10))  # every example once
        for images, labels in epoch:
            np.testing.assert_array_equal(images[:, 0, 0] / 4, labels)  # images stay with their labels
    # Keras 3's own numpy input repeats one order every epoch under a global seed; this must not.
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
    # An epoch's order depends only on the seed and its number: a resumed run sees the same batches.
    resumed = epochs(shuffled_batches(x, y, batch_size=4, seed=3, first_epoch=2), 1)[0]
    np.testing.assert_array_equal(np.concatenate([labels for _, labels in resumed]), orders[2])
    other_seed = epochs(shuffled_batches(x, y, batch_size=4, seed=4), 1)[0]
    assert not np.array_equal(np.concatenate([labels for _, labels in other_seed]), orders[0])


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    import os

    artifacts.write_json(tmp_path / "a.json", {"x": 1})
    mode = os.stat(tmp_path / "a.json").st_mode & 0o777
    assert mode == 0o666 & ~artifacts._umask()


def test_a_run_directory_never_mixes_two_runs(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    train(QUICK, dataset=tiny_dataset, out_dir=run, verbose=0)
    before = {path.name: path.read_bytes() for path in run.iterdir()}
    with pytest.raises(ValueError, match=r"out_dir .*run already holds config.json, history.json, metrics.json, "
                                         r"model.keras; choose a new folder, or replace that run with overwrite"):
        train(QUICK.replace(seed=1), dataset=tiny_dataset, out_dir=run, verbose=0)
    assert {path.name: path.read_bytes() for path in run.iterdir()} == before  # nothing touched
    with pytest.raises(ValueError, match="holds no interrupted training to resume"):
        train(QUICK, dataset=tiny_dataset, out_dir=run, verbose=0, resume=True)
    with pytest.raises(ValueError, match="resume continues the run and overwrite replaces it"):
        train(QUICK, dataset=tiny_dataset, out_dir=run, verbose=0, resume=True, overwrite=True)

    (run / "plots").mkdir()
    (run / "plots" / "old.png").write_bytes(b"old figure")
    # What predict and serve make beside a run's model (its LiteRT artefact) is the run's too.
    (run / "model.tflite").write_bytes(b"artefact")
    (run / "model.tflite.json").write_text("{}")
    result = train(QUICK.replace(seed=1), dataset=tiny_dataset, out_dir=run, verbose=0, overwrite=True)
    assert TrainConfig.load(run / "config.json").seed == 1
    assert json.loads((run / "metrics.json").read_text()) == result.metrics
    assert sorted(path.name for path in run.iterdir()) == ["config.json", "history.json", "metrics.json", "model.keras"]

    # Overwrite replaces a run, not whatever else the folder holds.
    (run / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"holds files a run does not write \(notes.txt\)"):
        train(QUICK, dataset=tiny_dataset, out_dir=run, verbose=0, overwrite=True)
    assert (run / "notes.txt").read_text() == "mine" and (run / "model.keras").exists()


def test_one_run_at_a_time_trains_into_a_folder(tiny_dataset, tmp_path, capsys):
    """A second run into a folder a live run is writing would interleave their checkpoints and
    overwrite each other's model: it is refused, whatever it trains; a killed run's lock blocks nothing."""
    from apparel.cli import main

    run, config = tmp_path / "run", QUICK.replace(epochs=3, validation_split=0.25)
    with pytest.raises(KeyboardInterrupt):
        train(config, dataset=tiny_dataset, out_dir=run, verbose=0, callbacks=[interrupt_after_epoch_2()])
    with another_run_holding(run / "train.lock"):
        busy = f"^out_dir {run}: another run is writing there \\(it holds {run / 'train.lock'}\\); wait for it to end"
        with pytest.raises(ParameterError, match=busy):
            train(config, dataset=tiny_dataset, out_dir=run, verbose=0, resume=True)
        with pytest.raises(ParameterError, match=busy):
            train(TrainConfig(model="efficientnet-lite0", images=(str(tmp_path / "photos"),)), out_dir=run, resume=True)
        for flags in (["--resume"], ["--overwrite"], ["--model", "efficientnet-lite0", "--images", "photos"]):
            assert main(["train", "--out", str(run), "--epochs", "1", *flags]) == 2
            error = capsys.readouterr().err.splitlines()[-1]
            assert "another run is writing there" in error and error.endswith("(--out)")
    assert (run / "train.lock").exists()  # left by the holder, as by a killed run: it locks nothing
    result = train(config, dataset=tiny_dataset, out_dir=run, verbose=0, resume=True)
    assert result.metrics["epochs_run"] == 3
    assert sorted(path.name for path in run.iterdir()) == ["config.json", "history.json", "metrics.json", "model.keras"]
    with pytest.raises(ValueError, match="neither a folder"):  # a run that fails first leaves no empty folder
        train(TrainConfig(model="efficientnet-lite0", images=(str(tmp_path / "nowhere"),)), out_dir=tmp_path / "new")
    assert not (tmp_path / "new").exists()


@needs_real_data
def test_train_cli_refuses_an_occupied_out_naming_its_flags(tmp_path, capsys):
    from apparel.cli import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_bytes(b"the shipped model")
    flags = ["train", "--out", str(run), "--epochs", "1", "--hidden", "8", "--limit", "500"]
    assert main(flags) == 2
    error = capsys.readouterr().err
    assert "--out" in error and "already holds model.keras" in error and "--overwrite" in error
    assert (run / "model.keras").read_bytes() == b"the shipped model"
    assert main([*flags, "--overwrite"]) == 0
    assert TrainConfig.load(run / "config.json").epochs == 1


@needs_real_data
def test_train_killed_at_random_points_ends_as_an_uninterrupted_run(tmp_path):
    """SIGKILL `apparel train` three times at random moments, rerun it as its error says (--resume
    when a checkpoint exists, --overwrite when only the run's first file does), and the finished
    run has the uninterrupted run's configuration, epochs and figures."""
    import random
    import signal
    import subprocess
    import sys
    import time

    flags = ["--epochs", "6", "--hidden", "32", "--limit", "3000", "--validation-split", "0.2", "--seed", "3"]

    def start(out, *extra):
        return subprocess.Popen([sys.executable, "-m", "apparel", "train", "--out", str(out), *flags, *extra],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def epoch_of(state) -> int:
        try:
            return json.loads(state.read_text())["epoch"]
        except (OSError, ValueError):
            return 0

    reference = start(tmp_path / "reference")
    assert reference.wait(timeout=300) == 0, reference.stderr.read()

    run, chooser, kills = tmp_path / "run", random.Random(0), 0
    while True:
        state = run / "checkpoints" / "state.json"
        extra = ["--resume"] if state.exists() else ["--overwrite"] if run.exists() and any(run.iterdir()) else []
        worker = start(run, *extra)
        if kills == 3:
            assert worker.wait(timeout=300) == 0, worker.stderr.read()
            break
        # A random moment after a random number of further epochs (0: once the run has begun).
        epochs, deadline = epoch_of(state) + chooser.randint(0, 2), time.monotonic() + 120
        while worker.poll() is None and not (epoch_of(state) >= epochs and (run / "config.json").exists()):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(chooser.uniform(0.0, 0.5))
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        worker.stderr.close()
        kills += 1

    ours, theirs = (TrainConfig.load(path / "config.json") for path in (run, tmp_path / "reference"))
    assert ours == theirs
    history, expected = (json.loads((path / "history.json").read_text()) for path in (run, tmp_path / "reference"))
    assert len(history["loss"]) == len(expected["loss"]) == 6
    np.testing.assert_allclose(history["val_accuracy"], expected["val_accuracy"], atol=0.01)
    metrics, wanted = (json.loads((path / "metrics.json").read_text()) for path in (run, tmp_path / "reference"))
    assert metrics["epochs_run"] == wanted["epochs_run"] and metrics["best_epoch"] == wanted["best_epoch"]
    assert abs(metrics["test_accuracy"] - wanted["test_accuracy"]) <= 0.01
    assert not (run / "checkpoints").exists()


def test_a_killed_saves_temporary_does_not_make_a_folder_foreign(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    leftover = run / ".model.keras.partial-k1ll3d.keras"  # what a SIGKILL during save_model leaves
    leftover.write_bytes(b"half a model")
    train(QUICK, dataset=tiny_dataset, out_dir=run, verbose=0)
    assert not leftover.exists()
    assert sorted(path.name for path in run.iterdir()) == ["config.json", "history.json", "metrics.json", "model.keras"]


def test_a_best_epoch_from_before_an_interruption_is_the_saved_model(tiny_dataset, tmp_path):
    import shutil

    import keras

    config = QUICK.replace(epochs=4, validation_split=0.25)
    with pytest.raises(KeyboardInterrupt):
        train(config, dataset=tiny_dataset, out_dir=tmp_path, verbose=0, callbacks=[interrupt_after_epoch_2()])
    state = json.loads((tmp_path / "checkpoints" / "state.json").read_text())
    best = tmp_path / "checkpoints" / state["best_checkpoint"]
    kept = shutil.copy(best, tmp_path / "best-before.keras")  # the run removes its checkpoints when done
    # No later epoch can beat a perfect score: the best epoch stays the one before the interruption.
    history = json.loads((tmp_path / "history.json").read_text())
    history["val_accuracy"][state["best_epoch"] - 1] = 1.0
    (tmp_path / "history.json").write_text(json.dumps(history))

    result = train(config, dataset=tiny_dataset, out_dir=tmp_path, verbose=0, resume=True)
    expected = keras.models.load_model(kept, compile=False).get_weights()
    for saved, wanted in zip(Predictor.from_dir(tmp_path).model.get_weights(), expected):
        np.testing.assert_array_equal(saved, wanted)
    assert result.metrics["best_epoch"] == state["best_epoch"]


def test_the_plot_helpers_name_a_count_or_array_that_does_not_fit():
    """predictions_grid of 40 images with 10 rows of probabilities was an IndexError deep in the
    drawing; labels too short, None for images, or count 0 alike (count 0 drew an empty figure)."""
    from apparel.training import plots

    images, labels = np.zeros((40, 28, 28)), np.zeros(40, int)
    for call, message in ((lambda: plots.sample_grid(None, labels), "images must be an array with one row per image"),
                          (lambda: plots.sample_grid(images, labels[:5]), "labels has 5 rows, fewer than the 40"),
                          (lambda: plots.sample_grid(images, labels, count=0), "count must be a positive whole number"),
                          (lambda: plots.predictions_grid(images, np.full((10, 10), 0.1), labels),
                           "probabilities has 10 rows, fewer than the 30 images drawn"),
                          (lambda: plots.predictions_grid(images, np.full((40, 3), 0.3), labels),
                           r"probabilities must have one column per class \(10: class_names\), got shape \(40, 3\)")):
        with pytest.raises(ValueError, match=message):
            call()
    assert len(plots.predictions_grid(images[:4], np.full((4, 10), 0.1), labels[:4]).axes) == 8  # fewer than count: all
