"""The photo kind: models that take RGB photos composited on white, padded to a white square and
resized to N×N, pixel values 0–255 (the model normalises them itself). They are measured on a
folder of labelled photos. The store model (``apparel.store``) is one: a photo model whose
answers a taxonomy head (``categories.json``) turns into store categories.

    >>> from apparel.kinds.registry import PHOTO_KIND as kind
    >>> kind.shape(224), kind.default_model
    ((224, 224, 3), 'store')
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from apparel.errors import ParameterError
from apparel.kinds.base import HeldOut, InputWords, Kind, figure, shape_text

# Photos of the fashion-mnist kind's size: what a client sends when it mistakes the model.
FASHION_MNIST_SHAPE = (28, 28)


class PhotoKind(Kind):
    name = "photo"
    default_model_title = "store"  # how a message names it
    default_model = "store"
    # Some 200 times the arithmetic of the 28×28 models: smaller batches.
    batch_size = 32
    transport_dtype = np.uint8  # whole numbers 0–255: a quarter of float32, exactly
    pixel_scale = (0.0, 255.0)
    held_out_split = "validation"  # the folder its settings were chosen on
    reads_colour_photos = True
    pipeline_version = 1  # pipeline.photo_to_rgb: on white, padded square, resized

    def shape(self, size: int) -> tuple[int, ...]:
        return (size, size, 3)

    def words(self, contract) -> InputWords:
        size, shape = contract.size, shape_text(self.shape(contract.size))
        pixel_range = "RGB 0–255, or 0–1 for an instance with no value above 1; or {\"b64\": image file}"
        return InputWords(
            preprocessing=(f"RGB photo composited on white, centred on a white square, resized to {size}×{size}; "
                           f"float32 pixel values 0–255, shape (N, {size}, {size}, 3)"),
            instances=(f"this photo model takes {shape} arrays of RGB pixel values (0–255, or 0–1) "
                       "or {\"b64\": \"<base64 image file>\"} photos of any size"),
            pixel_range=pixel_range,
            instance=(f"a {shape} array of RGB pixel values, photo on white padded to a square ({pixel_range}), "
                      "or {\"b64\": \"<base64 image file>\"} (any photo: it is padded to a white square and resized)"),
            example={"instances": [{"b64": "<base64 of a JPEG or PNG file>"}]},
        )

    def wrong_shape_hint(self, shape: tuple[int, ...]) -> str:
        if tuple(shape) == FASHION_MNIST_SHAPE:
            return " (a Fashion-MNIST array, which this model does not take; send the photo itself as b64)"
        return ""

    def prepare(self, images: np.ndarray, size: int) -> np.ndarray:
        from apparel.inference.inputs import as_photo_input

        return as_photo_input(images, size)

    def decode(self, source, size: int, max_pixels: int, max_bytes: int) -> np.ndarray:
        from apparel.kinds.photo.pipeline import photo_to_rgb

        return photo_to_rgb(source, size, max_pixels, max_bytes).astype(np.float32)

    def steps(self, source, size: int, max_pixels: int, max_bytes: int) -> list:
        from apparel.kinds.photo.pipeline import photo_rgb_steps

        return photo_rgb_steps(source, size, max_pixels, max_bytes)

    def draft_size(self, size: int) -> tuple[int, int]:
        return (size, size)

    def held_out(self, contract, where, images=None, dataset=None, data_dir=None, drawn: bool = False) -> HeldOut:
        from apparel.kinds.photo.data import read_labelled_photos

        if images is None:
            raise ParameterError(f"{where} holds a photo model: give {{}}, a folder of class folders to "
                                 f"{'draw' if drawn else 'measure'} it on", "images")
        photos = read_labelled_photos(images, contract.class_names)
        return HeldOut(photos, photos.labels, contract.class_names, Path(images).name, contract.size, source=str(images))

    def measure(self, model, held_out: HeldOut, batch_size: int) -> dict:
        from apparel.kinds.photo.measure import evaluate_photo_model

        figures = evaluate_photo_model(model, held_out.images, held_out.size, held_out.class_names, batch_size)
        return {"images": held_out.source,
                **{f"images_{key}": figures.pop(key) for key in ("accuracy", "loss", "images", "skipped")},
                **figures}

    def record(self, metrics: dict, report: dict) -> dict:
        # One entry per folder measured, kept beside the others.
        return {"evaluations": {**metrics.get("evaluations", {}), report["images"]: report}}

    def title(self, held_out: HeldOut, report: dict) -> str:
        return f"{held_out.title}, {report['images_images']} photos"

    def check_training(self, config, dataset, data_dir) -> None:
        if dataset is not None or data_dir is not None:
            raise ParameterError("{} trains on Fashion-MNIST; photo models train on images", "dataset")

    def training_data(self, config, validation_split: float, dataset, data_dir, verbose):
        from apparel.kinds.photo.fitting import training_data

        return training_data(config, validation_split, verbose)

    def build(self, config, data, run_dir, verbose, record):
        from apparel.kinds.photo.fitting import build

        record()  # first: an interrupted head phase can be resumed
        return build(config, data, run_dir, verbose)

    def resumed(self, run_dir):
        from apparel.kinds.photo.fitting import resumed_figures

        return resumed_figures(run_dir)

    def recorder_options(self, data, state, trainable) -> dict:
        # Fine-tuning a few photos a class can do worse than the head alone: then the head is kept.
        return {"monitor_best": True, "baseline": (state["head_validation_accuracy"],
                                                   None if trainable is None else trainable.get_weights())}

    def fit(self, trainable, config, data, initial_epoch: int, callbacks: list, verbose) -> None:
        from apparel.kinds.photo.fitting import fit

        fit(trainable, config, data, initial_epoch, callbacks, verbose)

    def metrics(self, config, base, data, history: dict, state, best_epoch, fit_seconds: float) -> dict:
        from apparel.kinds.photo.fitting import metrics

        return metrics(config, base, data, history, state, best_epoch)

    def finish(self, run_dir, base, history: dict, metrics: dict, data) -> None:
        from apparel.kinds.photo.fitting import finish

        finish(run_dir, base, history, metrics, data)

    def measured(self, metrics: dict) -> str:
        # What measured it, and which phase's model was saved.
        kept = "the head alone, no fine-tuning epoch beat it" if metrics["kept"] == "head" else metrics["kept"]
        return (f"validation accuracy {figure(metrics, 'validation_accuracy')} on {metrics['validation_images']} "
                f"validation photos (kept: {kept}), validation loss {figure(metrics, 'validation_loss')}")

    def warnings(self, metrics: dict) -> list[str]:
        from apparel.kinds.photo.fitting import few_validation_note

        notes = [few_validation_note(metrics["few_validation_photos"])] if metrics.get("few_validation_photos") else []
        if metrics.get("skipped_images"):  # which ones, and why, are in the run's skipped.json
            notes.append(f"{metrics['skipped_images']} photos left out as unreadable or too small: listed in skipped.json")
        return notes

    def shown(self, held_out: HeldOut, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``count`` readable photos drawn at random, in colour, as the model sees them."""
        from apparel.kinds.photo.pipeline import photo_to_rgb

        photos, shown, labels = held_out.images, [], []
        for index in np.random.default_rng(seed).permutation(len(photos)):
            try:
                shown.append(photo_to_rgb(photos.paths[index], held_out.size))
            except ValueError:  # unreadable: left out, as the evaluation leaves it out
                continue
            labels.append(int(photos.labels[index]))
            if len(shown) == count:
                break
        if not shown:
            raise ValueError(f"images: no readable photo in {held_out.source}")
        return np.stack(shown), np.array(labels)
