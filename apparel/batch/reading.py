"""Fetching and decoding a batch of image references: the same fetcher, decoder, limits and
errors as ``apparel predict`` and ``apparel catalog`` (``images.sources.read_source``).

    >>> batch = read_batch({"row": np.array([0, 1]), "image": np.array(["a.jpg", "https://…/b.jpg"])}, settings)
    >>> batch["pixels"].shape, batch["error"]
    ((2, 224, 224, 3), array(['', ''], dtype=object))

A reference that cannot be read keeps its row, with zeros for pixels and the reason in ``error``:
a bad image is an answer, never a failed job.
"""

from __future__ import annotations

import numpy as np

from apparel.batch.config import ReadSettings
from apparel.images.sources import ImageSource, contained_source, read_sources


def read_batch(batch: dict, settings: ReadSettings) -> dict:
    """``{"row", "image"}`` → ``{"row", "pixels", "error"}``: each reference read as the model's
    input (the contract's shape), or zeros and the reason it could not be ("" when it could)."""
    pixels = np.zeros((len(batch["image"]), *settings.contract.shape), dtype=settings.transport_dtype())
    errors = np.full(len(batch["image"]), "", dtype=object)
    sources = [_source(reference, settings.images_dir) for reference in batch["image"]]
    outcomes = read_sources(sources, settings.fetch, settings.threads, settings.contract)
    for index, (_, inputs, error) in enumerate(outcomes):
        if error is None and len(inputs) == 0:  # a .npy stack of none; of several, the first counts (as in catalogs)
            error = "holds no images"
        if error is None:
            pixels[index] = inputs[0]
        else:
            errors[index] = error
    return {"row": np.asarray(batch["row"], dtype=np.int64), "pixels": pixels, "error": errors}


def _source(reference, images_dir: str | None) -> ImageSource:
    """A manifest's or catalog's reference, resolved inside ``images_dir``; a source already made
    (``apparel predict``'s, named by the user on the command line) as it is."""
    return reference if isinstance(reference, ImageSource) else contained_source(str(reference), images_dir)
