"""The one read-and-predict loop under ``apparel predict``, ``apparel catalog`` and ``apparel batch``.

    >>> from apparel.batch.loop import classify, model_settings
    >>> model, contract = model_settings(BatchConfig())     # the store model's LiteRT artefact
    >>> for result in classify(rows, references, ReadSettings("images", contract), model, engine="local"):
    ...     result["row"], result["probabilities"], result["error"]

Sources are read and decoded on threads (``reading``), a batch ahead of the model (``engine_local``)
or in Ray Data's tasks (``engine_ray``), predicted in batches by the runtime the settings name
(``predicting``), and come back as ``{"row", "probabilities", "error"}`` batches. The commands keep
only what is theirs: ``predict`` its table, ``catalog`` its products, cache and cells, ``batch`` its
Parquet shards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from apparel.batch.config import ENGINES, ModelSettings, ReadConfig, ReadSettings
from apparel.contract import FASHION_MNIST, InputContract
from apparel.errors import ParameterError
from apparel.images.fetch import FetchConfig
from apparel.images.sources import ImageSource
from apparel.inference.prediction import resolve_model_dir
from apparel.inference.runtime import inference_artefact
from apparel.kinds.registry import PHOTO_KIND


def classify(rows: np.ndarray, references: list, read: ReadSettings, model: ModelSettings, batch_size: int = 32, *,
             engine: str = "local", packed: bool = False, predictors: int | None = None,
             address: str | None = None, predictor=None, keep_pixels: bool = False) -> Iterator[dict]:
    """``{"row", "probabilities", "error"}`` for each batch of ``rows`` (ascending), read from
    ``references`` (strings resolved inside ``read.images_dir``, or ``ImageSource``s) and predicted
    by ``model`` (or ``predictor``, already loaded: local engine only). Each row at its fixed place
    of a batch (the numbers do not depend on what else was read), or ``packed`` together. Local
    batches come in order; Ray's as they finish. ``keep_pixels`` (local engine): the readable rows'
    model inputs come back too, as ``"pixels"``."""
    if engine not in ENGINES:
        raise ParameterError(f"{{}} {engine!r}: choose one of {', '.join(ENGINES)}", "engine")
    if engine == "ray":
        from apparel.batch.engine_ray import classify_ray

        return classify_ray(rows, references, read, model, batch_size, predictors, address, packed=packed)
    from apparel.batch.engine_local import classify_local

    return classify_local(rows, references, read, model, batch_size, predictor=predictor, packed=packed,
                          keep_pixels=keep_pixels)


def model_settings(config: ReadConfig, litert: str | None = None,
                   threads: int | None = None) -> tuple[ModelSettings, InputContract]:
    """The model a run loads and its contract, read from the run directory (or a LiteRT export's
    metadata) without TensorFlow: ``litert`` when given, else the runtime of ``config``: the run's
    LiteRT artefact (made on first use) or its Keras model."""
    if litert is not None:
        if not Path(litert).is_file():
            raise ParameterError(f"{{}} {litert} is not a file; make one with `apparel export DIR --format litert`",
                                 "litert")
        model_dir = None if config.model_dir is None else resolve_model_dir(config.model_dir)
        contract = (InputContract.for_run(model_dir) if model_dir is not None
                    else InputContract.for_export(litert) or FASHION_MNIST)
        return ModelSettings(None if model_dir is None else str(model_dir), litert, threads), contract
    model_dir = resolve_model_dir(config.model_dir, kind=PHOTO_KIND)
    if config.runtime == "litert":
        litert = str(inference_artefact(model_dir))
    return ModelSettings(str(model_dir), litert, threads), InputContract.for_run(model_dir)


def stack_sources(sources: list[ImageSource], contract: InputContract) -> list[ImageSource]:
    """``sources`` with each ``.npy`` stack of several of ``contract``'s inputs as one source per
    image (``name[i]``), so that every source is one row of the loop. Any other stays whole:
    reading it says what is wrong with it."""
    rows = []
    for source in sources:
        count = _stack_length(source, contract)
        if count > 1:
            rows.extend(ImageSource(f"{source.name}[{i}]", path=source.path, item=i) for i in range(count))
        else:
            rows.append(source)
    return rows


def _stack_length(source: ImageSource, contract: InputContract) -> int:
    if source.error is not None or source.path is None or source.path.suffix.lower() != ".npy":
        return 1
    try:
        shape = np.load(source.path, mmap_mode="r", allow_pickle=False).shape
    except Exception:  # noqa: BLE001 — read again in the loop, which names the reason
        return 1
    return shape[0] if tuple(shape[1:]) == contract.shape else 1


def _result(name: str, top: list[tuple[str, float]], category: dict | None = None, extra: dict | None = None) -> dict:
    result = {"file": name, "label": top[0][0], "probability": round(top[0][1], 6),
              "top_k": [{"label": label, "probability": round(p, 6)} for label, p in top]}
    if category is not None:
        result["category"] = category
    return {**result, **(extra or {})}


def predict_sources(
    sources: list[ImageSource],
    predictor,
    top_k: int = 3,
    fetch: FetchConfig = FetchConfig(),
    batch_size: int = 32,
    workers: int = 4,
    progress: Callable[[int], object] | None = None,
    categorize: Callable[[np.ndarray], list[dict]] | None = None,
    attributes: Callable[[np.ndarray, list[dict | None], np.ndarray], list[dict]] | None = None,
) -> list[dict]:
    """Classify every source (``images.sources.expand_sources``) with a loaded ``predictor``
    through the loop: read on ``workers`` threads while the batch before is predicted.

    Returns one dict per image, in order: ``{"file", "label", "probability", "top_k"}``, or
    ``{"file", "error"}`` for a source that could not be read (the run goes on); each image of a
    ``.npy`` stack is ``name[i]``. ``categorize`` turns a batch of probabilities into a store
    category each (``CategoryDecision.to_dict``), added as ``"category"``. ``attributes(inputs,
    categories, probabilities)`` gives each image's attribute fields from its model input, category
    and class probabilities (``apparel.attributes.product_attributes``: ``"color"``,
    ``"sleeve_length_type"``). ``progress(n)`` is called as images finish.
    """
    if top_k < 1:  # it used to become 1 without a word; batch's own setting refuses it too
        raise ParameterError(f"{{}} must be at least 1, got {top_k}", "top_k")
    sources = stack_sources(sources, predictor.contract)
    read = ReadSettings(None, predictor.contract, fetch, workers)
    results: list[dict | None] = [None] * len(sources)
    batches = classify(np.arange(len(sources)), sources, read, ModelSettings(None), batch_size, packed=True,
                       predictor=predictor, keep_pixels=attributes is not None)
    for batch in batches:
        readable = batch["error"] == ""
        probabilities = batch["probabilities"][readable]
        tops = predictor.top_k(probabilities, top_k)
        categories = categorize(probabilities) if categorize is not None and len(tops) else [None] * len(tops)
        extras = (attributes(batch["pixels"], categories, probabilities) if attributes is not None and len(tops)
                  else [None] * len(tops))
        answers = iter(zip(tops, categories, extras))
        for row, error in zip(batch["row"], batch["error"]):
            name = sources[row].name
            results[row] = {"file": name, "error": error} if error else _result(name, *next(answers))
        if progress is not None:
            progress(len(batch["row"]))
    return results
