import json

import numpy as np
import pytest

from apparel import artifacts
from apparel.config import TrainConfig
from apparel.evaluation import evaluate_run
from apparel.inference.prediction import Predictor
from apparel.training import shuffled_batches, train

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
    from apparel.training import learning_rate_for

    rate = learning_rate_for(TrainConfig(schedule=schedule, learning_rate=0.01, epochs=2), steps_per_epoch=10)
    start, middle, end = (float(rate(step)) for step in (0, 8, 20))
    assert end < 0.002 and middle > end
    with pytest.raises(ValueError, match="unknown schedule"):
        learning_rate_for(TrainConfig(schedule="step"), 10)


def test_interrupted_training_resumes_from_its_last_epoch(tiny_dataset, tmp_path):
    import keras

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    config = QUICK.replace(epochs=4, validation_split=0.25)
    with pytest.raises(KeyboardInterrupt):
        train(config, dataset=tiny_dataset, out_dir=tmp_path, verbose=0, callbacks=[Interrupt()])
    assert json.loads((tmp_path / "checkpoints" / "state.json").read_text())["epoch"] == 2
    assert not (tmp_path / "model.keras").exists()

    with pytest.raises(ValueError, match="interrupted training; rerun with --resume"):
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
