"""Photo models: labelled photo collections, the two-phase training, the run directory's input
contract, resume, and measuring a photo run on a folder. Tiny rendered photos, 32×32 inputs."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import PHOTO_CLASSES, write_photo_folders

from apparel.config import TrainConfig
from apparel.contract import InputContract
from apparel.errors import ParameterError
from apparel.training.evaluation import evaluate_run
from apparel.inference.prediction import Predictor
from apparel.kinds.photo.data import MIN_PER_CLASS, load_photo_splits, photo_batches
from apparel.training.trainer import train

TINY = dict(model="efficientnet-lite0", image_size=32, epochs=1, head_epochs=2, batch_size=8, fine_tune_blocks=1)


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    return write_photo_folders(tmp_path_factory.mktemp("photos"), per_class=10)


def test_a_folder_of_class_folders_is_split_stratified(photo_folder):
    splits = load_photo_splits([photo_folder], validation_split=0.2, seed=0)
    assert splits.class_names == PHOTO_CLASSES
    assert splits.train.counts() == {name: 8 for name in PHOTO_CLASSES}
    assert splits.validation.counts() == {name: 2 for name in PHOTO_CLASSES}
    assert not set(splits.train.paths) & set(splits.validation.paths)


def test_train_and_validation_folders_are_used_as_they_are(tmp_path):
    write_photo_folders(tmp_path / "train", per_class=6)
    write_photo_folders(tmp_path / "validation", per_class=2, seed=1)
    splits = load_photo_splits([tmp_path], validation_split=0.5, seed=0)
    assert len(splits.train) == 18 and len(splits.validation) == 6
    assert all("/validation/" in path for path in splits.validation.paths)


def test_a_class_whose_name_has_a_comma_is_refused_before_training(photo_folder, tmp_path):
    """Its tag, "apparel:chaussures, pointure", is two tags to Shopify: "apparel:chaussures" and "pointure"."""
    rows = ["path,label"] + [f'{photo_folder}/{name}/{i}.jpg,"{name}, x"' for name in PHOTO_CLASSES for i in range(6)]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError, match="class '.*, x' has a comma, which Shopify's Tags would split into two tags"):
        load_photo_splits([tmp_path / "labels.csv"], validation_split=0.2, seed=0)


def test_a_csv_of_path_and_label_with_relative_paths(photo_folder, tmp_path):
    rows = ["path,label"] + [f"{photo_folder}/{name}/{i}.jpg,{name}" for name in PHOTO_CLASSES for i in range(6)]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    splits = load_photo_splits([tmp_path / "labels.csv"], validation_split=0.2, seed=0)
    assert splits.class_names == PHOTO_CLASSES and len(splits.train) + len(splits.validation) == 18


def test_unreadable_and_tiny_photos_are_skipped_and_counted(tmp_path):
    write_photo_folders(tmp_path, per_class=7)
    (tmp_path / "dress" / "broken.jpg").write_bytes(b"not a photo at all")
    from PIL import Image

    Image.new("RGB", (8, 8), "red").save(tmp_path / "shoes" / "icon.png")
    splits = load_photo_splits([tmp_path], validation_split=0.2, seed=0)
    assert set(splits.skipped) == {str(tmp_path / "dress" / "broken.jpg"), str(tmp_path / "shoes" / "icon.png")}
    assert "too small" in splits.skipped[str(tmp_path / "shoes" / "icon.png")]
    assert len(splits.train) + len(splits.validation) == 21


def test_a_class_with_too_few_photos_is_a_clear_error(tmp_path):
    write_photo_folders(tmp_path, per_class=8)
    for path in sorted((tmp_path / "shoes").iterdir())[2:]:
        path.unlink()
    with pytest.raises(ValueError, match=rf"too few readable training photos in shoes \(\d\); give each class at least {MIN_PER_CLASS}"):
        load_photo_splits([tmp_path], validation_split=0.2, seed=0)


def test_the_run_s_summary_says_how_many_photos_were_left_out():
    from apparel.kinds.registry import PHOTO_KIND

    assert PHOTO_KIND.warnings({"skipped_images": 3}) == [
        "3 photos left out as unreadable or too small: listed in skipped.json"]
    assert PHOTO_KIND.warnings({"skipped_images": 0, "few_validation_photos": {}}) == []


def test_an_empty_class_or_one_of_unreadable_photos_is_named_not_dropped(tmp_path):
    """A class folder with no photo, or none readable, is a class too scarce to learn: named in the
    error, not left out of the model without a word. The error says the split took its share."""
    write_photo_folders(tmp_path, per_class=8)
    (tmp_path / "skirt").mkdir()
    (tmp_path / "scarf").mkdir()
    (tmp_path / "scarf" / "broken.jpg").write_bytes(b"not a photo at all")
    with pytest.raises(ParameterError, match=r"too few readable training photos in scarf \(0\), skirt \(0\); .* "
                                             r"\(with no validation/ folder, 20% of each class") as error:
        load_photo_splits([tmp_path], validation_split=0.2, seed=0)
    assert error.value.parameters == ("images",)
    with pytest.raises(ParameterError, match="validation_split must be in") as error:
        load_photo_splits([tmp_path], validation_split=0.0, seed=0)
    assert error.value.parameters == ("validation_split",)


def test_a_photo_that_fails_to_decode_gets_weight_zero_and_is_recorded(photo_folder, tmp_path):
    splits = load_photo_splits([photo_folder], validation_split=0.2, seed=0)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(open(splits.train.paths[0], "rb").read()[:200])  # the header opens, the body is gone
    photos = splits.train.subset([0, 1])
    photos = type(photos)((str(truncated), photos.paths[1]), photos.labels, photos.class_names)
    skipped = {}
    images, labels, weights = next(iter(photo_batches(photos, 32, batch_size=2, skipped=skipped)))
    assert images.shape == (2, 32, 32, 3) and list(weights.numpy()) == [0.0, 1.0]
    assert list(skipped) == [str(truncated)]


def test_training_writes_a_photo_run_that_predicts_its_own_classes(photo_folder, tmp_path):
    result = train(TrainConfig(images=(str(photo_folder),), validation_split=0.2, **TINY), out_dir=tmp_path / "run")
    run = tmp_path / "run"
    config = json.loads((run / "config.json").read_text())
    assert config["input"] == {"kind": "photo", "size": 32, "class_names": list(PHOTO_CLASSES)}
    assert TrainConfig.load(run / "config.json") == result.config  # the recorded contract is not a parameter
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["train_images"] == 24 and metrics["validation_images"] == 6 and metrics["epochs_run"] == 1
    assert 0.0 <= metrics["validation_accuracy"] <= 1.0 and metrics["head_best_epoch"] >= 1
    assert set(metrics["validation_report"]["per_class"]) == set(PHOTO_CLASSES)
    assert not (run / "checkpoints").exists()
    predictor = Predictor.from_dir(run)
    assert predictor.contract == InputContract("photo", 32, PHOTO_CLASSES)
    probabilities = predictor.predict_proba(np.full((2, 32, 32, 3), 255, np.uint8))
    assert probabilities.shape == (2, 3) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="takes RGB photos of 32×32×3"):
        predictor.predict_proba(np.zeros((1, 28, 28), np.float32))
    report = evaluate_run(run, images=photo_folder)
    assert report["images_images"] == 30 and set(report["per_class"]) == set(PHOTO_CLASSES)
    assert sum(map(sum, report["confusion_matrix"])) == 30


def test_photo_training_shows_each_phase_and_says_which_model_it_kept(photo_folder, tmp_path, capsys):
    """It was silent through the pass over the photos and the head's epochs, then its summary's
    accuracy (the head's, kept without a word) contradicted the fine-tuning bar's, on 2 photos a
    class without a warning. A fine-tuning rate of 0 cannot beat the head: the head is kept."""
    from apparel.cli import main

    flags = ["train", "--model", "efficientnet-lite0", "--images", str(photo_folder), "--validation-split", "0.2",
             "--image-size", "32", "--epochs", "2", "--head-epochs", "2", "--batch-size", "8",
             "--fine-tune-blocks", "1", "--learning-rate", "0", "--out", str(tmp_path / "run")]
    assert main(flags) == 0
    out, err = capsys.readouterr()
    err = err.replace("\r", "\n")
    for label, count, unit in (("features of the training photos", 24, "photo"),
                               ("features of the validation photos", 6, "photo"),
                               ("head on the frozen backbone", 2, "epoch")):  # done, with the time it took and had left
        # tqdm writes a rate under one a second as seconds per unit ("1.03s/epoch" on a busy machine).
        assert re.search(rf"^{label}: 100%.*\| {count}/{count} \[\d\d:\d\d<\d\d:\d\d, .*({unit}/s|s/{unit})", err,
                         re.MULTILINE), err
    assert "fine-tuning the head and the backbone's top 1 block: epochs 1 to 2" in err and "Epoch 2/2" in out + err
    few = "dress (2), shoes (2), t-shirt (2) have fewer than 10 validation photos"
    assert err.index(few) < err.index("features of the training photos")  # said before the run's figures
    summary = next(line for line in out.splitlines() if line.startswith("efficientnet-lite0:"))
    assert " on 6 validation photos (kept: the head alone, no fine-tuning epoch beat it)" in summary
    assert f"warning: {few}" in err.splitlines()[-1]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["kept"] == "head" and metrics["best_epoch"] == 0
    assert metrics["few_validation_photos"] == metrics["validation_class_counts"] == {name: 2 for name in PHOTO_CLASSES}
    assert metrics["validation_accuracy"] == pytest.approx(metrics["head_validation_accuracy"], abs=1e-4)


def test_a_resumed_photo_run_still_keeps_the_head_and_verbose_0_is_quiet(photo_folder, tmp_path, capsys):
    """An interrupted run whose head beat its fine-tuning epochs: resumed, it used to look for a
    best fine-tuning checkpoint never written; it keeps the head, saved before fine-tuning."""
    import keras

    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise KeyboardInterrupt

    config = TrainConfig(images=(str(photo_folder),), validation_split=0.2, learning_rate=0.0, **{**TINY, "epochs": 2})
    with pytest.raises(KeyboardInterrupt):
        train(config, out_dir=tmp_path / "run", callbacks=[StopAfterFirstEpoch()], verbose=0)
    result = train(config, out_dir=tmp_path / "run", resume=True, verbose=0)
    assert capsys.readouterr().err == ""
    assert result.metrics["kept"] == "head" and result.metrics["best_epoch"] == 0
    assert len(result.history["val_accuracy"]) == 2
    assert result.metrics["validation_accuracy"] == pytest.approx(result.metrics["head_validation_accuracy"], abs=1e-4)


def test_an_interrupted_photo_run_resumes(photo_folder, tmp_path):
    import keras

    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    config = TrainConfig(images=(str(photo_folder),), validation_split=0.2, **{**TINY, "epochs": 2})
    with pytest.raises(KeyboardInterrupt):
        train(config, out_dir=tmp_path / "run", callbacks=[StopAfterFirstEpoch()])
    assert (tmp_path / "run" / "checkpoints" / "state.json").exists()
    with pytest.raises(ValueError, match="interrupted training"):
        train(config, out_dir=tmp_path / "run")
    result = train(config, out_dir=tmp_path / "run", resume=True)
    assert result.metrics["epochs_run"] == 2 and len(result.history["loss"]) == 2


def test_a_fashion_mnist_model_refuses_images_and_a_photo_model_needs_them(photo_folder):
    with pytest.raises(ValueError, match="takes Fashion-MNIST arrays, not photos"):
        train(TrainConfig(model="cnn", images=(str(photo_folder),)))
    with pytest.raises(ValueError, match="images"):
        train(TrainConfig(model="efficientnet-lite0"))


def test_the_resolution_augmentation_blurs_some_training_batches_and_leaves_inference_alone():
    import tensorflow as tf

    from apparel.backbones.layers import RandomResolution

    stripes = np.zeros((2, 32, 32, 3), np.float32)
    stripes[:, :, ::2] = 255.0  # one-pixel stripes: gone at a quarter of the resolution
    always = RandomResolution(smallest=0.25, rate=1.0, seed=0)
    graph = tf.function(lambda x: always(x, training=True), input_signature=[tf.TensorSpec((None, 32, 32, 3), tf.float32)])
    shrunk = graph(stripes).numpy()
    assert shrunk.shape == stripes.shape and shrunk.dtype == np.float32
    assert shrunk.std() < 0.5 * stripes.std()  # the stripes are smoothed towards grey
    assert np.allclose(always(stripes, training=False), stripes)
    plain = np.full((2, 32, 32, 3), 200.0, np.float32)
    assert np.allclose(graph(plain).numpy(), 200.0, atol=1e-3)  # a flat photo keeps its colour
    never = RandomResolution(rate=0.0, seed=0)
    assert np.array_equal(never(stripes, training=True).numpy(), stripes)
    half = RandomResolution(rate=0.5, seed=0)
    changed = [not np.array_equal(half(stripes, training=True).numpy(), stripes) for _ in range(40)]
    assert 5 < sum(changed) < 35


def test_a_photo_run_trains_with_the_resolution_augmentation_and_saves_the_bare_network(photo_folder, tmp_path):
    train(TrainConfig(images=(str(photo_folder),), validation_split=0.2, augment=("crop", "flip", "colour", "resolution"),
                      **TINY), out_dir=tmp_path / "run")
    import keras

    saved = keras.saving.load_model(tmp_path / "run" / "model.keras")
    assert not any("resolution" in layer.name for layer in saved.layers)
    assert Predictor.from_dir(tmp_path / "run").predict_proba(np.zeros((1, 32, 32, 3), np.uint8)).shape == (1, 3)
    from apparel.training.models import with_augmentation

    arrays = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(10)])
    with pytest.raises(ValueError, match="resolution is for photo models"):
        with_augmentation(arrays, ("flip", "resolution"))


def test_a_run_with_the_resolution_augmentation_resumes_in_a_fresh_process(photo_folder, tmp_path):
    """The checkpoint holds the project's own augmentation layer: a new process, which has not
    built one, must still load it (it failed with "Could not locate class 'RandomResolution'")."""
    import subprocess
    import sys

    import keras

    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise KeyboardInterrupt

    config = TrainConfig(images=(str(photo_folder),), validation_split=0.2, augment=("flip", "resolution"),
                         **{**TINY, "epochs": 2})
    with pytest.raises(KeyboardInterrupt):
        train(config, out_dir=tmp_path / "run", callbacks=[StopAfterFirstEpoch()])
    resume = ("import sys; from apparel.config import TrainConfig; from apparel.training.trainer import train; "
              "run = sys.argv[1]; result = train(TrainConfig.load(run + '/config.json'), out_dir=run, resume=True); "
              "print('epochs run', result.metrics['epochs_run'])")
    done = subprocess.run([sys.executable, "-c", resume, str(tmp_path / "run")], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "epochs run 2" in done.stdout
