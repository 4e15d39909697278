"""What a trained model takes and what it answers: its input contract, saved in config.json.

    >>> from apparel.contract import InputContract
    >>> contract = InputContract.for_run("runs/photos")
    >>> contract.kind, contract.shape, contract.class_names[:2]
    ('photo', (224, 224, 3), ('dress', 'hat'))

The contract names the model's kind (``apparel.kinds``): ``fashion-mnist`` models take 28×28
grayscale arrays, ``photo`` models N×N RGB photos. Everything that differs between kinds (the
input's shape and scale, how a photo becomes an input, the words that describe it, the held-out
set) is asked of ``contract.model_kind``, never decided by the caller. A run directory without
the record (written before photo models existed) is a Fashion-MNIST model.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from apparel import artifacts
from apparel.errors import SourceError
from apparel.kinds.fashion_mnist.data import CLASS_NAMES, IMAGE_SHAPE
from apparel.images.decode import MAX_DECODE_BYTES, MAX_PIXELS
from apparel.kinds.base import Kind
from apparel.kinds.registry import kind_named

# The key under which config.json records the contract, beside the training parameters.
CONFIG_KEY = "input"
# The one input's name wherever a protocol or format names it (TF Serving's named inputs, the V2
# tensors, the SavedModel signature, the ONNX graph): one name whichever runtime serves the model.
INPUT_NAME = "images"


@dataclass(frozen=True)
class InputContract:
    kind: str = "fashion-mnist"  # fashion-mnist or photo
    size: int = IMAGE_SHAPE[0]  # side of the square input, pixels
    class_names: tuple[str, ...] = CLASS_NAMES  # the answers, in the order of the model's logits

    def __post_init__(self):
        kind_named(self.kind)  # a ValueError naming the known kinds
        if not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"size must be a positive number of pixels, got {self.size!r}")
        if len(self.class_names) < 2:
            raise ValueError("class_names must name at least two classes")
        object.__setattr__(self, "class_names", tuple(str(name) for name in self.class_names))

    @property
    def model_kind(self) -> Kind:
        """The kind of model this contract is for (``apparel.kinds``): ask it, never branch on it."""
        return kind_named(self.kind)

    @property
    def shape(self) -> tuple[int, ...]:
        """One input's shape: (28, 28) or (N, N, 3)."""
        return self.model_kind.shape(self.size)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def describe(self) -> str:
        """The preprocessing a caller must apply, in words (export metadata, the service)."""
        return self.model_kind.words(self).preprocessing

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """Arrays of pixel values checked and scaled as the model takes them; ``ValueError`` for
        the wrong shape (a 28×28 array to a photo model, a photo array to a 28×28 model)."""
        return self.model_kind.prepare(images, self.size)

    def decode(self, source, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_DECODE_BYTES) -> np.ndarray:
        """One photo (a path, the bytes of an image file, a PIL image) as the model takes it:
        float32 (28, 28) in [0, 1] through the Fashion-MNIST pipeline, or (N, N, 3) with values
        0–255 for a photo model. ``ValueError`` with the reason it cannot be one.

            >>> InputContract.for_run("runs/photos").decode("shirt.jpg").shape
            (224, 224, 3)
        """
        return self.model_kind.decode(source, self.size, max_pixels, max_bytes)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "size": self.size, "class_names": list(self.class_names)}

    @classmethod
    def from_dict(cls, values: dict) -> "InputContract":
        unknown = sorted(set(values) - {"kind", "size", "class_names"})
        if unknown:
            raise ValueError(f"unknown input contract key {', '.join(unknown)}")
        return cls(**{**values, "class_names": tuple(values.get("class_names", CLASS_NAMES))})

    @classmethod
    def for_export(cls, export_path: str | os.PathLike) -> "InputContract | None":
        """The contract written beside an export (``apparel export``; see ``metadata_path``), or
        None when there is none."""
        try:
            recorded = json.loads(metadata_path(export_path).read_text(encoding="utf-8"))
            return cls.from_dict({key: recorded[key] for key in ("kind", "size", "class_names")})
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @classmethod
    def for_run(cls, run_dir: str | os.PathLike) -> "InputContract":
        """The contract recorded in ``run_dir/config.json`` (Fashion-MNIST when the run predates
        contracts and records none); ``run_dir`` may be a shipped model's name (``"store"``). A
        path that is no folder is refused: taking it for a Fashion-MNIST run would send photos to
        the wrong model without a word."""
        folder = artifacts.run_or_shipped(run_dir)
        if not folder.is_dir():
            raise ValueError(f"{run_dir} is no run directory; give the folder `apparel train` wrote (with its "
                             f"config.json) or a shipped model's name ({', '.join(artifacts.shipped_model_names())})")
        path = folder / artifacts.CONFIG_FILE
        if not path.is_file():
            return cls()
        # A config.json that no longer reads must not make a photo model a Fashion-MNIST one, silently.
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise SourceError(path, f"unreadable ({error}); restore it from a copy of the run, or train it again") \
                from None
        if not isinstance(config, dict):
            raise SourceError(path, f"holds a JSON {type(config).__name__}, not the run's settings; restore it from a "
                                    "copy of the run, or train it again")
        recorded = config.get(CONFIG_KEY)
        return cls() if recorded is None else cls.from_dict(recorded)


FASHION_MNIST = InputContract()
# The metadata file of an export: inside a SavedModel directory, else beside the file.
EXPORT_METADATA_FILE = "apparel.json"


def metadata_path(export_path: str | os.PathLike) -> Path:
    """Where an export's metadata lies: ``model.tflite`` → ``model.tflite.json``,
    ``model.onnx`` → ``model.onnx.json``, a SavedModel directory → ``DIR/apparel.json``."""
    path = Path(export_path)
    return path / EXPORT_METADATA_FILE if path.is_dir() else path.with_name(path.name + ".json")
