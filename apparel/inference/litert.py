"""Running an exported ``.tflite`` model with the LiteRT interpreter (no TensorFlow needed).

    >>> from apparel.inference.litert import LiteRTPredictor
    >>> LiteRTPredictor("runs/reference.tflite").predict_proba(images)      # (N, 10)
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from apparel.artifacts import usable_cores
from apparel.contract import FASHION_MNIST, InputContract
from apparel.errors import whole_number


class LiteRTPredictor:
    """Runs an exported ``.tflite`` model with the LiteRT interpreter (no TensorFlow needed).

    ``contract`` says what the export takes (default: the one recorded beside it by ``apparel
    export``, else Fashion-MNIST's). The interpreter is not thread-safe, so calls take turns: the
    service's batcher, the desk's rounds and a download may share one model.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None, contract: InputContract | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"{self.path}: no such LiteRT model; make one with `apparel export DIR --format litert`")
        if threads is not None:
            threads = whole_number(threads, "threads")
        if threads is None:
            # LiteRT's own default is one thread; on this project's 2-core CPU a batch of 10,000
            # images runs 1.6× faster on both (docs/performance.md).
            threads = usable_cores()
        try:
            self._interpreter = Interpreter(model_path=str(self.path), num_threads=threads)
        except ValueError as error:  # LiteRT's own words ("not a valid Flatbuffer buffer") name no fix
            raise ValueError(f"{self.path} is not a LiteRT model ({error}); give a .tflite file made by "
                             "`apparel export DIR --format litert`") from None
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self._batch = None
        self._turn = threading.Lock()
        self.contract = contract or InputContract.for_export(self.path) or FASHION_MNIST

    def __repr__(self) -> str:  # what a notebook shows
        return (f"LiteRTPredictor({str(self.path)!r}, {self.contract.kind} model of {self.contract.num_classes} "
                f"classes, inputs {'×'.join(map(str, self.contract.shape))})")

    @property
    def outputs(self) -> int:
        """How many classes the export answers (its output's last dimension)."""
        return int(self._interpreter.get_output_details()[0]["shape"][-1])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The exported input's shape: (1, 28, 28) for Fashion-MNIST models, (1, N, N, 3) for photos."""
        return tuple(int(n) for n in self._interpreter.get_input_details()[0]["shape"])

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Probabilities over the classes, (N, classes), for images checked and scaled by the
        contract's rule (``InputContract.prepare``)."""
        return self.run(self.contract.prepare(images))

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The export's output for a float32 ``batch`` already as the model takes it."""
        if len(batch) == 0:  # XNNPack cannot be resized to no rows ("failed to prepare")
            return np.zeros((0, self.outputs), dtype=np.float32)
        with self._turn:
            if self._batch != len(batch):
                self._interpreter.resize_tensor_input(self._input, batch.shape, strict=False)
                self._interpreter.allocate_tensors()
                self._batch = len(batch)
            self._interpreter.set_tensor(self._input, batch)
            self._interpreter.invoke()
            return np.array(self._interpreter.get_tensor(self._output))
