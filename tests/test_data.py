import gzip

import numpy as np
import pytest

from apparel.kinds.fashion_mnist import data
from conftest import idx_bytes, needs_real_data, write_idx_gz


def test_synthetic_files_load_with_their_shapes(idx_dir):
    dataset = data.load_dataset(idx_dir, verify=False)
    assert dataset.x_train.shape == (256, 28, 28)
    assert dataset.y_train.shape == (256,)
    assert dataset.x_test.shape == (64, 28, 28)
    assert dataset.x_train.dtype == np.float32
    assert 0.0 <= dataset.x_train.min() and dataset.x_train.max() <= 1.0


def test_limit_keeps_the_first_images(idx_dir):
    full = data.load_dataset(idx_dir, verify=False)
    limited = data.load_dataset(idx_dir, limit=10, verify=False)
    np.testing.assert_array_equal(limited.x_train, full.x_train[:10])
    assert len(limited.x_test) == len(full.x_test)
    # A str or a fraction was a TypeError from the comparison or the slice; a folder given as a number too.
    for limit in (0, "5", 1.5, True):
        with pytest.raises(ValueError, match="limit must be a positive whole number of training images"):
            data.load_dataset(idx_dir, limit=limit, verify=False)
    assert len(data.load_dataset(idx_dir, limit=np.int64(3), verify=False).x_train) == 3
    with pytest.raises(ValueError, match="data_dir must be a path"):
        data.load_dataset(3)


def test_train_names_a_config_or_dataset_of_the_wrong_kind():
    from apparel.training.trainer import train

    for config in ({"epochs": 1}, None):
        with pytest.raises(ValueError, match="config must be a TrainConfig"):
            train(config)
    from apparel.config import TrainConfig

    with pytest.raises(ValueError, match="dataset must be a Dataset"):
        train(TrainConfig(epochs=1), dataset="x")


def test_checksum_mismatch_names_the_file(idx_dir):
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz: SHA-256"):
        data.load_dataset(idx_dir)


def test_missing_file_says_how_to_install(idx_dir):
    (idx_dir / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte\.gz: file not found.*apt-get install dataset-fashion-mnist"):
        data.load_dataset(idx_dir, verify=False)


def test_truncated_gzip_is_reported(idx_dir):
    path = idx_dir / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz: cannot decompress.*truncated"):
        data.load_dataset(idx_dir, verify=False)


def test_truncated_content_inside_valid_gzip_is_reported(tmp_path):
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((4, 28, 28), np.uint8))[:-100]))
    with pytest.raises(ValueError, match="truncated or corrupt"):
        data.read_idx(path)


def test_wrong_magic_number_is_reported(idx_dir):
    path = idx_dir / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(b"\x12\x34\x56\x78" + bytes(100)))
    with pytest.raises(ValueError, match="wrong magic number 0x12345678"):
        data.load_dataset(idx_dir, verify=False)


def test_image_and_label_count_mismatch_is_reported(idx_dir):
    write_idx_gz(idx_dir / "train-labels-idx1-ubyte.gz", np.zeros(100, np.uint8))
    with pytest.raises(ValueError, match="256 train images but 100 labels"):
        data.load_dataset(idx_dir, verify=False)


def test_environment_variable_selects_the_directory(idx_dir, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(idx_dir))
    assert data.resolve_data_dir() == idx_dir
    assert data.load_dataset(verify=False).x_train.shape == (256, 28, 28)


@needs_real_data
def test_real_data_is_verified_with_the_reference_shapes():
    dataset = data.load_dataset(scaled=False)
    assert dataset.shapes() == {
        "x_train": (60000, 28, 28),
        "y_train": (60000,),
        "x_test": (10000, 28, 28),
        "y_test": (10000,),
    }
    assert np.bincount(dataset.y_train).tolist() == [6000] * 10


@needs_real_data
def test_keras_cache_makes_load_data_work_offline(tmp_path, monkeypatch):
    import subprocess
    import sys

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    target = data.install_keras_cache()
    assert target == tmp_path / "datasets" / "fashion-mnist"
    # Keras reads KERAS_HOME when it is imported, so ask a fresh interpreter. A download would
    # fail: the origin host is unreachable here.
    code = (
        "import keras, numpy as np; (x, y), (xt, yt) = keras.datasets.fashion_mnist.load_data(); "
        "print(x.shape, int(y[:100].sum()), int(xt[0].sum()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    ours = data.load_dataset(scaled=False)
    assert out.strip() == f"(60000, 28, 28) {int(ours.y_train[:100].sum())} {int(ours.x_test[0].sum())}"
    # A second call leaves good files alone.
    assert data.install_keras_cache() == target
