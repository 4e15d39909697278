"""The local engine: this process reads ahead on threads while the model predicts (no Ray).

    >>> for result in classify_local(rows, references, read_settings, model_settings, batch_size=32):
    ...     result["row"], result["probabilities"], result["error"]
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from apparel.batch.config import ModelSettings, ReadSettings
from apparel.batch.predicting import Predict, aligned_batches
from apparel.batch.reading import read_batch


def classify_local(rows: np.ndarray, references: list[str], read: ReadSettings, model: ModelSettings,
                   batch_size: int = 32, predictor=None, packed: bool = False,
                   keep_pixels: bool = False) -> Iterator[dict]:
    """``{"row", "probabilities", "error"}`` for each batch of ``rows`` (ascending; see
    ``predicting.aligned_batches``), in order. The next batch is read while this one is predicted,
    so only two batches of pixels are ever held. With no rows (a finished run resumed) the
    model is not loaded. ``packed``: the readable rows predicted together, ``keep_pixels``: their
    inputs returned too (``predicting.Predict``)."""
    chunks = aligned_batches(rows, references, batch_size)
    if not chunks:
        return
    predict = Predict(model, slots=None if packed else batch_size, predictor=predictor, keep_pixels=keep_pixels)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead") as reader:
        ahead = reader.submit(read_batch, chunks[0], read)
        for following in chunks[1:] + [None]:
            batch = ahead.result()
            if following is not None:
                ahead = reader.submit(read_batch, following, read)
            yield predict(batch)
