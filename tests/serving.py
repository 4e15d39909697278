"""Helpers shared by the service tests: a tiny trained model, test photos, a real uvicorn server."""

from __future__ import annotations

import io
import socket
import threading
import time
from contextlib import contextmanager

import numpy as np
from PIL import Image, ImageDraw

from apparel.config import TrainConfig
from apparel.training import train

TINY = TrainConfig(epochs=1, hidden=16, batch_size=64)


def train_tiny_model(dataset, out_dir):
    """A seconds-long model in a real run directory (model.keras, metrics.json, …)."""
    train(TINY, dataset=dataset, out_dir=out_dir, verbose=0)
    return out_dir


def garment_photo(size=(240, 320), colour=(180, 40, 40), fmt="JPEG") -> bytes:
    """A product-photo-like image: a coloured garment shape on a white background."""
    image = Image.new("RGB", size, "white")
    width, height = size
    ImageDraw.Draw(image).rectangle([width // 5, height // 6, 4 * width // 5, 5 * height // 6], fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def mnist_png(pixels: np.ndarray) -> bytes:
    """A 28×28 grayscale PNG, which the photo pipeline takes as it is."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8), "L").save(buffer, format="PNG")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_server(app, timeout: float = 30.0):
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port in a thread; yields the base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
