"""Running an exported ``.tflite`` model with the LiteRT interpreter (no TensorFlow needed).

    >>> from apparel.inference.litert import LiteRTPredictor
    >>> LiteRTPredictor("runs/reference.tflite").predict_proba(images)      # (N, 10)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from apparel.artifacts import usable_cores
from apparel.inference.inputs import as_model_input, as_photo_input


class LiteRTPredictor:
    """Runs an exported ``.tflite`` model with the LiteRT interpreter (no TensorFlow needed).

    The interpreter is not thread-safe: use one instance per thread.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"{self.path}: no such LiteRT model; make one with `apparel export DIR --format litert`")
        if threads is None:
            # LiteRT's own default is one thread; on this project's 2-core CPU a batch of 10,000
            # images runs 1.6× faster on both (docs/performance.md).
            threads = usable_cores()
        self._interpreter = Interpreter(model_path=str(self.path), num_threads=threads)
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self._batch = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The exported input's shape: (1, 28, 28) for Fashion-MNIST models, (1, N, N, 3) for photos."""
        return tuple(int(n) for n in self._interpreter.get_input_details()[0]["shape"])

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Probabilities over the classes, (N, classes), for inputs as the model takes them."""
        shape = self.input_shape
        batch = as_model_input(images) if len(shape) == 3 else as_photo_input(images, shape[1])
        if self._batch != len(batch):
            self._interpreter.resize_tensor_input(self._input, batch.shape, strict=False)
            self._interpreter.allocate_tensors()
            self._batch = len(batch)
        self._interpreter.set_tensor(self._input, batch)
        self._interpreter.invoke()
        return np.array(self._interpreter.get_tensor(self._output))
