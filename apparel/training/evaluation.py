"""A run's held-out figures, recomputed from its saved model and merged into its metrics.json.

    >>> from apparel.training.evaluation import evaluate_run
    >>> report = evaluate_run("runs/reference")
    >>> report["test_accuracy"], report["most_confused"][0]
"""

from __future__ import annotations

import os

from apparel import artifacts
from apparel.contract import InputContract
from apparel.errors import local_path
from apparel.kinds.fashion_mnist.data import Dataset, check_dataset
from apparel.inference.prediction import Predictor, resolve_model_dir
from apparel.kinds.registry import kind_for_inputs


def evaluate_run(
    model_dir: str | os.PathLike | None = None,
    dataset: Dataset | None = None,
    data_dir: str | os.PathLike | None = None,
    write: bool = True,
    images: str | os.PathLike | None = None,
) -> dict:
    """Reload a run's model, recompute its held-out figures and (``write``) merge them into its
    metrics.json, except a shipped model's (package data, whose figures are the ones it shipped
    with). Returns the figures.

    The model's kind says what it is measured on: a Fashion-MNIST model on the test set
    (``test_*``); a photo model on ``images``, a folder of class folders or a ``path,label`` CSV
    whose classes are the model's (``images_*``, with the folder's name in ``images``).
    """
    check_dataset(dataset)
    if images is not None:
        local_path(images, "images")
    path = resolve_model_dir(model_dir, kind=kind_for_inputs(images is not None))
    predictor = Predictor.from_dir(path)
    kind = predictor.contract.model_kind
    held_out = kind.held_out(predictor.contract, path, images, dataset, data_dir)
    report = kind.measure(predictor.model, held_out, predictor.batch_size)
    if write:
        keep_figures(path, report)
    return report


def keep_figures(model_dir: str | os.PathLike, report: dict) -> bool:
    """Merge ``report`` (``evaluate_run``'s, of this run) into the run's metrics.json; a shipped
    model's is left as shipped (False). Apart from ``evaluate_run`` so that its figures can be
    shown before a run that takes no new file (read-only) refuses them."""
    path = resolve_model_dir(model_dir)
    if artifacts.is_shipped(path):
        return False
    kind = InputContract.for_run(path).model_kind
    metrics_file = path / artifacts.METRICS_FILE
    metrics = artifacts.read_json(metrics_file) if metrics_file.exists() else {}
    artifacts.update_json(metrics_file, kind.record(metrics, report))
    return True
