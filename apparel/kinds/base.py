"""The protocol every model kind follows: what a model of the kind takes, in words and as arrays,
where its shipped model and its held-out set are, and how it trains.

    >>> from apparel.contract import InputContract
    >>> contract = InputContract.for_run("models/store")
    >>> kind = contract.model_kind
    >>> kind.name, kind.shape(contract.size), kind.words(contract).instances
    ('photo', (224, 224, 3), 'this photo model takes 224×224×3 arrays …')

Code outside ``apparel/kinds/`` asks the kind (through the contract saved with every run) and
never branches on which kind it holds; a new kind is a new folder and a line in ``registry``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def shape_text(shape: tuple[int, ...]) -> str:
    """``(28, 28)`` → ``'28×28'``, for messages."""
    return "×".join(str(n) for n in shape) or "a single number"


def figure(metrics: dict, key: str) -> str:
    """One of a run's figures as a summary shows it: four decimals, or n/a."""
    return "n/a" if metrics.get(key) is None else f"{metrics[key]:.4f}"


@dataclass(frozen=True)
class InputWords:
    """A kind's input described for people: every message, document and metadata file that says
    what to send takes its words from here."""

    preprocessing: str  # what a caller must do to a photo first (export metadata, the service)
    instances: str  # the arrays and files a model takes: the start of every shape message
    pixel_range: str  # the pixel values one instance may hold
    instance: str  # one instance of a :predict body, for the OpenAPI document
    example: dict  # a :predict body that works


@dataclass(frozen=True)
class HeldOut:
    """The labelled images a model is measured on, away from its training: the test set of
    Fashion-MNIST, or a folder of photos. ``logits`` runs a model over them."""

    images: object  # the arrays, or the photos (a PhotoSet)
    labels: np.ndarray
    class_names: tuple[str, ...]
    title: str  # what it is, for a figure's title: "test set", or the folder's name
    size: int  # the side of the model's square input
    source: str | None = None  # the folder or CSV it was read from, if any
    samples: tuple | None = None  # training (images, labels) to draw as the data set's samples, if any

    def __len__(self) -> int:
        return len(self.labels)


class Kind:
    """One kind of model. Subclasses set the attributes and implement the methods; instances hold
    no state (one per kind, in ``registry.KINDS``)."""

    name: str  # as recorded in config.json's "input" (apparel.contract)
    default_model: str  # the shipped model (apparel/shipped_models/NAME) used when none is given
    default_model_title: str  # how a message names that model: "the shipped … model"
    batch_size: int  # images per forward pass when predicting
    transport_dtype: type  # how a batch travels between processes without loss (batch engines)
    pixel_scale: tuple[float, float]  # the range of the values the model itself takes
    held_out_split: str  # which split a run's held-out accuracy is measured on: "test" or "validation"
    reads_colour_photos: bool  # photos in colour: a product's colour is read, and a store model is built on it
    pipeline_version: int  # bumped when its pixel pipeline changes: cached answers of the old one are not reused

    def shape(self, size: int) -> tuple[int, ...]:
        """One input's shape for a model of side ``size``."""
        raise NotImplementedError

    def words(self, contract) -> InputWords:
        """The input of ``contract``'s model, in words (see ``InputWords``)."""
        raise NotImplementedError

    def wrong_shape_hint(self, shape: tuple[int, ...]) -> str:
        """What an array of ``shape`` most likely is when it is not this kind's input ('' if unknown)."""
        return ""

    def prepare(self, images: np.ndarray, size: int) -> np.ndarray:
        """Arrays of pixel values checked and scaled as the model takes them (one pixel-scale rule
        for every entry point: ``apparel.inference.inputs``); ``ValueError`` saying what to send."""
        raise NotImplementedError

    def decode(self, source, size: int, max_pixels: int, max_bytes: int) -> np.ndarray:
        """One photo (path, bytes or PIL image) as the model's float32 input."""
        raise NotImplementedError

    def steps(self, source, size: int, max_pixels: int, max_bytes: int) -> list:
        """The named PIL images from the photo as read to the model's input (``apparel preprocess``)."""
        raise NotImplementedError

    def draft_size(self, size: int) -> tuple[int, int]:
        """The smallest decode that still makes a full-quality input (JPEG draft mode)."""
        raise NotImplementedError

    def held_out(self, contract, where, images=None, dataset=None, data_dir=None, drawn: bool = False) -> HeldOut:
        """The labelled set the model of ``contract`` in ``where`` is measured (or ``drawn``) on:
        ``images`` (a folder of class folders or a ``path,label`` CSV) for kinds measured on photos,
        else the data set (``dataset``, or the one in ``data_dir``). ``ParameterError`` naming
        ``images`` when the wrong one is given."""
        raise NotImplementedError

    def measure(self, model, held_out: HeldOut, batch_size: int) -> dict:
        """``model``'s figures on ``held_out``: loss, accuracy, the classification report, under
        the keys ``metrics.json`` keeps them."""
        raise NotImplementedError

    def record(self, metrics: dict, report: dict) -> dict:
        """What ``report`` (``measure``'s) adds to a run's metrics.json (``metrics``: what it holds now)."""
        raise NotImplementedError

    def title(self, held_out: HeldOut, report: dict) -> str:
        """What ``report`` measured, for a figure's title."""
        return held_out.title

    # How it trains: ``apparel.training.trainer.train`` runs these steps, in this order, for every kind.

    def check_training(self, config, dataset, data_dir) -> None:
        """Refuse, before anything is written, training inputs this kind does not take."""

    def training_data(self, config, validation_split: float, dataset, data_dir, verbose):
        """What the run trains on and is measured on; it has ``class_names`` and ``size``."""
        raise NotImplementedError

    def build(self, config, data, run_dir, verbose, record):
        """A new run's model: ``(base, trainable, state)``; ``base`` is saved and used for
        inference, ``trainable`` is what ``fit`` runs, ``state`` what ``metrics`` needs of the
        build. ``record()`` writes the run's config.json once the run may be resumed."""
        raise NotImplementedError

    def resumed(self, run_dir):
        """The ``state`` of an interrupted run's build, read back from ``run_dir``."""
        return None

    def recorder_options(self, data, state, trainable) -> dict:
        """How the epoch recorder keeps the best epoch (``runs.epoch_recorder``'s ``monitor_best``
        and ``baseline``); ``trainable`` is None for a resumed run."""
        raise NotImplementedError

    def fit(self, trainable, config, data, initial_epoch: int, callbacks: list, verbose) -> None:
        """Train ``trainable`` from ``initial_epoch`` to ``config.epochs`` with ``callbacks``."""
        raise NotImplementedError

    def metrics(self, config, base, data, history: dict, state, best_epoch, fit_seconds: float) -> dict:
        """The finished run's figures, for metrics.json."""
        raise NotImplementedError

    def finish(self, run_dir, base, history: dict, metrics: dict, data) -> None:
        """Write the finished run into ``run_dir`` (``runs.finish_run`` and what the kind adds)."""
        from apparel.training.runs import finish_run

        finish_run(run_dir, base, history, metrics)

    def measured(self, metrics: dict) -> str:
        """A finished run's held-out figures in words (``apparel train``'s summary)."""
        split = self.held_out_split
        return f"{split} accuracy {figure(metrics, split + '_accuracy')}, {split} loss {figure(metrics, split + '_loss')}"

    def warnings(self, metrics: dict) -> list[str]:
        """What a person should know about a finished run's figures."""
        return []

    def shown(self, held_out: HeldOut, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``count`` images of ``held_out`` as the model takes them, and their labels, to draw."""
        raise NotImplementedError
