"""Helpers shared by the service tests: a tiny trained model, test photos, a real uvicorn server."""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import json
import base64
import io
import os
import shutil
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from apparel.config import TrainConfig
from apparel.training.trainer import train

TINY = TrainConfig(epochs=1, hidden=16, batch_size=64)


def train_tiny_model(dataset, out_dir, config: TrainConfig = TINY):
    """A seconds-long model in a real run directory (model.keras, metrics.json, …), copied into
    ``out_dir``. Trained once per test session and config; under `make mutation`, whose hundreds of
    short sessions set $APPAREL_TEST_MODEL_CACHE, once per mutation run. Training is seeded, so a
    copy is the model a new training would give."""
    shutil.copytree(_trained_once(dataset, config), out_dir, dirs_exist_ok=True)
    return Path(out_dir)


_TRAINED: dict[tuple, Path] = {}


def _trained_once(dataset, config: TrainConfig) -> Path:
    shared = os.environ.get("APPAREL_TEST_MODEL_CACHE")
    if shared:
        # The config's own text names the folder: each config its model.
        name = hashlib.sha256(json.dumps(dataclasses.asdict(config), sort_keys=True).encode()).hexdigest()[:16]
        target = Path(shared) / f"tiny-model-{name}"
        if not (target / "model.keras").exists():
            work = Path(tempfile.mkdtemp(dir=shared))
            train(config, dataset=dataset, out_dir=work / "run", verbose=0)
            try:
                os.replace(work / "run", target)  # atomic: a session beside this one sees all or nothing
            except OSError:  # another session got there first
                pass
            shutil.rmtree(work, ignore_errors=True)
        return target
    key = (id(dataset), config)
    if key not in _TRAINED:
        work = Path(tempfile.mkdtemp(prefix="apparel-tiny-model-"))
        atexit.register(shutil.rmtree, work, True)
        train(config, dataset=dataset, out_dir=work / "run", verbose=0)
        _TRAINED[key] = work / "run"
    return _TRAINED[key]


def garment_photo(size=(240, 320), colour=(180, 40, 40), fmt="JPEG") -> bytes:
    """A product-photo-like image: a coloured garment shape on a white background."""
    image = Image.new("RGB", size, "white")
    width, height = size
    ImageDraw.Draw(image).rectangle([width // 5, height // 6, 4 * width // 5, 5 * height // 6], fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def mutate(rng, body: bytes) -> bytes:
    """One random edit of ``body``: flip, delete, insert, duplicate or truncate bytes."""
    data = bytearray(body)
    for _ in range(int(rng.integers(1, 6))):
        choice = rng.integers(0, 5)
        position = int(rng.integers(0, max(1, len(data))))
        if choice == 0 and data:
            data[position] = int(rng.integers(0, 256))
        elif choice == 1 and data:
            del data[position : position + int(rng.integers(1, 50))]
        elif choice == 2:
            data[position:position] = bytes(rng.integers(0, 256, size=int(rng.integers(1, 20))).astype(np.uint8))
        elif choice == 3:
            chunk = data[position : position + int(rng.integers(1, 200))]
            data[position:position] = chunk
        else:
            data = data[:position]
    return bytes(data)


def random_json(rng, depth=0):
    kind = rng.integers(0, 8 if depth < 4 else 4)
    if kind == 0:
        return float(rng.normal() * 10 ** int(rng.integers(0, 6)))
    if kind == 1:
        return int(rng.integers(-300, 300))
    if kind == 2:
        return [None, True, False, "x", "", float("nan"), float("inf")][int(rng.integers(0, 7))]
    if kind == 3:
        return {"b64": base64.b64encode(bytes(rng.integers(0, 256, size=int(rng.integers(0, 40))).astype(np.uint8))).decode()}
    if kind in (4, 5, 6):
        return [random_json(rng, depth + 1) for _ in range(int(rng.integers(0, 30)))]
    return {str(rng.integers(0, 3)): random_json(rng, depth + 1)}


def mnist_png(pixels: np.ndarray) -> bytes:
    """A 28×28 grayscale PNG, which the photo pipeline takes as it is."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8), "L").save(buffer, format="PNG")
    return buffer.getvalue()


@contextmanager
def running_server(app, timeout: float = 30.0):
    """Serve ``app`` with uvicorn on 127.0.0.1 in a thread, with the limits and timeouts of its
    ``ServiceConfig``; yields the base URL. The port is the one the server itself bound (port 0:
    nothing else can take it in between), and the thread is stopped and joined on the way out."""
    from apparel.serve.server import server_options, serving_server

    server = serving_server(app, **server_options(app.state.config, "127.0.0.1", 0), log_level="warning",
                            access_log=False)
    with server_thread(server, timeout) as (base_url, _):
        yield base_url


@contextmanager
def server_thread(server, timeout: float = 30.0):
    """Run a uvicorn ``server`` (bound to 127.0.0.1) in a thread; yields its base URL and the
    thread, stopped and joined on the way out."""
    thread = threading.Thread(target=server.run, name="uvicorn-under-test")
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}", thread
    finally:
        stop_server_thread(server, thread, timeout)


def stop_server_thread(server, thread: threading.Thread, timeout: float) -> None:
    """Ask a uvicorn ``server`` running in ``thread`` to exit (as Ctrl-C does); if it has not after
    ``timeout`` s, force it (as a second Ctrl-C does). Raises if the thread is still alive."""
    server.should_exit = True
    thread.join(timeout)
    if thread.is_alive():
        server.force_exit = True
        thread.join(timeout)
    if thread.is_alive():
        raise RuntimeError("the uvicorn thread did not stop")
