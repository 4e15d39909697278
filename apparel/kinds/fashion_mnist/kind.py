"""The Fashion-MNIST kind: models that take 28×28 grayscale arrays, light garment on black, in
[0, 1]; a photo reaches them through the Fashion-MNIST pipeline (``apparel.kinds.fashion_mnist.pipeline``).
They are measured on Fashion-MNIST's test set.

    >>> from apparel.kinds.registry import FASHION_MNIST_KIND as kind
    >>> kind.shape(28), kind.default_model
    ((28, 28), 'default')
"""

from __future__ import annotations

import numpy as np

from apparel.errors import ParameterError
from apparel.kinds.base import HeldOut, InputWords, Kind
from apparel.kinds.fashion_mnist.pipeline import PIPELINE_VERSION


class FashionMnistKind(Kind):
    name = "fashion-mnist"
    default_model_title = "Fashion-MNIST"  # how a message names it
    default_model = "default"
    batch_size = 1024
    transport_dtype = np.float32
    pixel_scale = (0.0, 1.0)
    held_out_split = "test"
    reads_colour_photos = False  # 28×28 grey arrays: no colour to read (its classes get their categories all the same)
    pipeline_version = PIPELINE_VERSION

    def shape(self, size: int) -> tuple[int, ...]:
        return (size, size)

    def words(self, contract) -> InputWords:
        pixel_range = "0–1, or 0–255 for an instance with any value above 1; or {\"b64\": image file}"
        return InputWords(
            preprocessing=("Fashion-MNIST: 28×28 grayscale, light garment on black, float32 in [0, 1], shape (N, 28, 28); "
                           "a photo goes through the Fashion-MNIST pipeline (trim, resize, sharpen, pad, negate, stretch)"),
            instances=("this Fashion-MNIST model takes 28×28 arrays of grayscale pixel values (light garment on black) "
                       "or {\"b64\": \"<base64 image file>\"} photos"),
            pixel_range=pixel_range,
            instance=("a 28×28 array of pixels, light garment on black (0–1; an instance with any value above 1 is "
                      "read as 0–255) or {\"b64\": \"<base64 image file>\"} (any photo: the Fashion-MNIST pipeline applies)"),
            example={"instances": [[[0] * 28] * 28]},
        )

    def wrong_shape_hint(self, shape: tuple[int, ...]) -> str:
        if len(shape) == 3 and shape[-1] == 3:
            return " (a colour photo array; send the photo file as b64, it goes through the Fashion-MNIST pipeline)"
        return ""

    def prepare(self, images: np.ndarray, size: int) -> np.ndarray:
        from apparel.inference.inputs import as_model_input

        return as_model_input(images)

    def decode(self, source, size: int, max_pixels: int, max_bytes: int) -> np.ndarray:
        from apparel.kinds.fashion_mnist.pipeline import photo_to_input

        return photo_to_input(source, max_pixels, max_bytes)

    def steps(self, source, size: int, max_pixels: int, max_bytes: int) -> list:
        from apparel.kinds.fashion_mnist.pipeline import pipeline_steps

        return pipeline_steps(source, max_pixels, max_bytes)

    def draft_size(self, size: int) -> tuple[int, int]:
        from apparel.images.decode import DRAFT_SIZE

        return DRAFT_SIZE

    def held_out(self, contract, where, images=None, dataset=None, data_dir=None, drawn: bool = False) -> HeldOut:
        from apparel.kinds.fashion_mnist.data import load_dataset

        if images is not None:
            raise ParameterError(f"{where} holds a Fashion-MNIST model, {'drawn' if drawn else 'measured'} on the test "
                                 "set; leave {} out", "images")
        if dataset is None:
            dataset = load_dataset(data_dir)
        return HeldOut(dataset.x_test, dataset.y_test, contract.class_names, "test set", contract.size,
                       samples=(dataset.x_train, dataset.y_train))

    def measure(self, model, held_out: HeldOut, batch_size: int) -> dict:
        from apparel.training.scores import classification_report, evaluate_model

        figures = evaluate_model(model, held_out.images, held_out.labels, batch_size=batch_size)
        # The reference model has extra logits (20 for ten classes): never a label.
        predicted = figures["logits"][:, :len(held_out.class_names)].argmax(axis=-1)
        return {
            "test_accuracy": figures["accuracy"],
            "test_loss": figures["loss"],
            "test_images": int(len(held_out.labels)),
            **classification_report(held_out.labels, predicted, held_out.class_names),
        }

    def record(self, metrics: dict, report: dict) -> dict:
        return report  # the test set's figures, in place of the training's own

    def check_training(self, config, dataset, data_dir) -> None:
        if config.images:
            raise ValueError(f"model {config.model!r} takes Fashion-MNIST arrays, not photos; choose a photo model such "
                             "as efficientnet-lite0, or leave images empty")

    def training_data(self, config, validation_split: float, dataset, data_dir, verbose):
        from apparel.kinds.fashion_mnist.fitting import training_data

        return training_data(config, validation_split, dataset, data_dir)

    def build(self, config, data, run_dir, verbose, record):
        from apparel.kinds.fashion_mnist.fitting import build_model

        base, trainable = build_model(config, -(-len(data.train[0]) // config.batch_size))
        record()
        return base, trainable, None

    def recorder_options(self, data, state, trainable) -> dict:
        return {"monitor_best": data.validation is not None}

    def fit(self, trainable, config, data, initial_epoch: int, callbacks: list, verbose) -> None:
        from apparel.kinds.fashion_mnist.fitting import fit

        fit(trainable, config, data, initial_epoch, callbacks, verbose)

    def metrics(self, config, base, data, history: dict, state, best_epoch, fit_seconds: float) -> dict:
        from apparel.kinds.fashion_mnist.fitting import metrics

        return metrics(config, base, data, history, best_epoch, fit_seconds)

    def shown(self, held_out: HeldOut, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        return held_out.images[:count], held_out.labels[:count]
