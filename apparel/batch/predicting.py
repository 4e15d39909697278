"""The model at work on batches of read images; Ray's actors hold one each (loaded once).

    >>> predict = Predict(ModelSettings("runs/photos"))
    >>> predict({"row": rows, "pixels": pixels, "error": errors})["probabilities"].shape
    (32, 10)
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from apparel.batch.config import ModelSettings


def settings_predictor(settings: ModelSettings):
    """The ``Predictor`` of ``settings``: the LiteRT file they name (``batch.loop.model_settings``
    resolved it, artefact or export, before the workers start), else Keras, each with
    ``settings.threads``. Choosing a runtime for a run directory is ``inference.runtime.load_predictor``."""
    from apparel.inference.prediction import Predictor
    from apparel.kinds.registry import PHOTO_KIND
    from apparel.inference.runtime import set_tensorflow_threads

    if settings.litert is not None:
        # The interpreter takes its own thread count; TensorFlow is not started for it.
        return Predictor.from_litert(settings.litert, settings.model_dir, settings.threads)
    if settings.threads is not None:
        set_tensorflow_threads(settings.threads, "predictor_threads")
    return Predictor.from_dir(settings.model_dir, kind=PHOTO_KIND)


def aligned_batches(rows: np.ndarray, references: list[str], batch_size: int) -> list[dict]:
    """``{"row", "image"}`` batches of the (ascending) ``rows``: row r goes with the rows of
    the same ``r // batch_size``, whatever else was already done, failed or retried; none for no rows."""
    if len(rows) == 0:
        return []
    groups = np.flatnonzero(np.diff(rows // batch_size)) + 1
    starts, ends = np.concatenate([[0], groups]), np.concatenate([groups, [len(rows)]])
    return [{"row": rows[start:end], "image": references[start:end]} for start, end in zip(starts, ends)]


class Predict:
    """``{"row", "pixels", "error"}`` → ``{"row", "probabilities", "error"}``; a row with an
    error is not predicted (its probabilities are NaN). A callable class so that Ray Data builds
    it once per actor and the model stays loaded.

    With ``slots``, each row is predicted at place ``row % slots`` of a batch of ``slots``
    (zeros where no row is): a row's probabilities depend on the batch's size and the row's place
    in it (the last digits of the sums; not on the other rows), so fixed places make them the same
    on every engine, after a resume or a retry. Without, the readable rows are predicted packed
    together, as ``apparel catalog`` does. ``keep_pixels`` also returns the readable rows' inputs,
    as read (bytes for photos), as ``"pixels"``; ``settings.colour`` each row's colour as ``"colour"`` (``photo_colours``).
    """

    def __init__(self, settings: ModelSettings, slots: int | None = None, predictor=None, keep_pixels: bool = False):
        self.slots, self.keep_pixels, self.colour = slots, keep_pixels, settings.colour
        self.predictor = predictor if predictor is not None else settings_predictor(settings)

    def __call__(self, batch: dict) -> dict:
        if not self.colour:
            return self._predicted(batch, None)
        # The colours are named on a thread while the model predicts: on two cores a catalog's
        # colour step then cost 0.10–0.12 of its time rather than 0.17–0.22 (benchmarks/colour.py
        # --catalog). A thread of this call's own: a pool kept across calls would not survive a fork.
        with ThreadPoolExecutor(1, thread_name_prefix="apparel-colour") as pool:
            return self._predicted(batch, pool)

    def _predicted(self, batch: dict, pool: ThreadPoolExecutor | None) -> dict:
        rows = np.asarray(batch["row"], dtype=np.int64)
        errors = np.asarray(batch["error"], dtype=object)
        readable = errors == ""
        # The inputs as read (bytes 0–255 for photos) go to the model and the colour step as they
        # are: as floats, a nearly black photo (every value 0 or 1) would be taken for a 0–1 photo
        # and read 255 times brighter, by both.
        pixels = np.asarray(batch["pixels"])[readable]
        colours = pool.submit(photo_colours, pixels, readable) if pool is not None else None
        answered = None
        if readable.any() and self.slots is None:
            answered = np.asarray(self.predictor.predict_proba(pixels))
        elif readable.any():
            places = rows[readable] % self.slots
            placed = np.zeros((self.slots, *pixels.shape[1:]), dtype=pixels.dtype)
            placed[places] = pixels
            answered = np.asarray(self.predictor.predict_proba(placed))[places]
        # A stand-in predictor (a test's) may have no contract: its answers say how many classes,
        # and a batch it gave none has no columns to fill.
        contract = getattr(self.predictor, "contract", None)
        classes = answered.shape[-1] if answered is not None else getattr(contract, "num_classes", 0)
        probabilities = np.full((len(rows), classes), np.nan, dtype=np.float32)
        if answered is not None:
            probabilities[readable] = answered
        answer = {"row": rows, "probabilities": probabilities, "error": errors}
        if colours is not None:
            answer["colour"] = colours.result()
        if self.keep_pixels:  # the readable rows as read, for what is read from the photo itself (colour)
            answer["pixels"] = pixels
        return answer


def photo_colours(pixels: np.ndarray, readable: np.ndarray) -> np.ndarray:
    """Each row's colour (``apparel.attributes.product_colour``) as JSON text, "" for a row that was
    not read: text travels through Ray Data's blocks as any column does. Whether the product
    gets one is decided with the category (``output.category_columns``, ``gets_colour``)."""
    from apparel.attributes import product_colour

    colours = np.full(len(readable), "", dtype=object)
    colours[readable] = [json.dumps(product_colour(pixel).to_dict(), separators=(",", ":")) for pixel in pixels]
    return colours
