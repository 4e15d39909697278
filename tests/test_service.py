"""The prediction service, in-process (every endpoint, every client mistake, fuzzing) and over a
real uvicorn server on 127.0.0.1. The models are a tiny one trained here and the tiny photo model
of the ``photo_run`` fixture, never the shipped models."""

from __future__ import annotations

import asyncio
import base64
import builtins
import hashlib
import io
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
from prometheus_client.parser import text_string_to_metric_families
import pytest
from PIL import Image

from apparel import artifacts, cli
from apparel.kinds.fashion_mnist import pipeline
from apparel.serve import app as service_app
from apparel.serve.batching import MicroBatcher, inference_function, warm_up
from apparel.kinds.fashion_mnist.data import CLASS_NAMES
from apparel.serve.payloads import RequestError, instances_to_images, multipart_files
from apparel.inference.prediction import Predictor
from apparel.serve.app import ServiceConfig, create_app, served_model_dir
from apparel.shop.categories import run_chooser
from conftest import PHOTO_CLASSES, noting_the_loop, render_photo
from serving import garment_photo, mnist_png, mutate, running_server, train_tiny_model

with warnings.catch_warnings():
    # Starlette's test client now prefers the httpx2 package; httpx works the same for these tests.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

PREDICT = "/v1/models/apparel:predict"
LIMITS = dict(max_body_bytes=200_000, max_instances=8, max_files=3, max_pixels=1_000_000)


@pytest.fixture(scope="module")
def model_dir(tiny_dataset, tmp_path_factory):
    return train_tiny_model(tiny_dataset, tmp_path_factory.mktemp("served"))


@pytest.fixture(scope="module")
def predictor(model_dir):
    return Predictor.from_dir(model_dir)


@pytest.fixture(scope="module")
def client(predictor):
    with TestClient(create_app(predictor, **LIMITS), raise_server_exceptions=False) as test_client:
        yield test_client


def assert_category(category: dict, class_names, probabilities) -> None:
    """``category`` is what the shipped mapping, at its own thresholds, chooses from ``probabilities``
    (the tiny models carry no categories.json)."""
    expected = run_chooser(None, class_names).choose(probabilities).to_dict()
    assert set(category) == {"id", "gid", "path", "confidence", "reason"}
    assert category["confidence"] == pytest.approx(expected.pop("confidence"), abs=1e-5)
    assert {key: category[key] for key in expected} == expected


def post_json(client, payload, path=PREDICT):
    return client.post(path, content=json.dumps(payload), headers={"Content-Type": "application/json"})


def upload(client, *files, query=""):
    return client.post("/predict" + query, files=[("files", (name, content, "application/octet-stream")) for name, content in files])


def image_batch(count, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(count, 28, 28)).astype(np.uint8)


# ---------------------------------------------------------------- TensorFlow Serving API


def test_predict_matches_the_predictor_in_both_pixel_scales(client, predictor):
    images = image_batch(3)
    expected = predictor.predict_proba(images)
    for instances in (images.tolist(), (images / 255.0).tolist()):  # 0–255 integers, then 0–1 floats
        response = post_json(client, {"instances": instances})
        assert response.status_code == 200, response.text
        predictions = np.array(response.json()["predictions"])
        assert predictions.shape == (3, 10)
        np.testing.assert_allclose(predictions, expected, atol=1e-5)
        np.testing.assert_allclose(predictions.sum(axis=1), 1.0, rtol=1e-5)


def test_columnar_inputs_answer_outputs(client, predictor):
    images = image_batch(2, seed=1)
    response = post_json(client, {"inputs": images.tolist(), "signature_name": "serving_default"})
    assert response.status_code == 200
    np.testing.assert_allclose(response.json()["outputs"], predictor.predict_proba(images), atol=1e-5)


def test_b64_instances_go_through_the_photo_pipeline(client, predictor):
    pixels = image_batch(1, seed=2)[0]
    photo = garment_photo()
    instances = [{"b64": base64.b64encode(mnist_png(pixels)).decode()}, {"b64": base64.b64encode(photo).decode()},
                 pixels.tolist()]
    response = post_json(client, {"instances": instances})
    assert response.status_code == 200, response.text
    predictions = np.array(response.json()["predictions"])
    expected = predictor.predict_proba(np.stack([pixels / 255.0, pipeline.photo_to_input(photo), pixels / 255.0]))
    np.testing.assert_allclose(predictions, expected, atol=1e-5)


def test_inference_function_matches_predict_proba(predictor, tiny_dataset):
    infer = inference_function(predictor)
    for count in (1, 7, 64):
        images = tiny_dataset.x_test[:count]
        np.testing.assert_allclose(infer(images), predictor.predict_proba(images), atol=1e-6)


def test_status_and_metadata(client, model_dir):
    version = hashlib.sha256((model_dir / artifacts.MODEL_FILE).read_bytes()).hexdigest()[:12]
    status = client.get("/v1/models/apparel").json()["model_version_status"][0]
    # TF Serving's version is an int64, as gRPC answers it; the digest is the metadata's model_version.
    assert status["state"] == "AVAILABLE" and status["version"] == "1"
    metadata = client.get("/v1/models/apparel/metadata").json()
    assert metadata["class_names"] == list(CLASS_NAMES)
    assert metadata["input_shape"] == [28, 28]
    assert metadata["model_version"] == version
    accuracy = json.loads((model_dir / artifacts.METRICS_FILE).read_text())["test_accuracy"]
    assert metadata["test_accuracy"] == pytest.approx(accuracy)
    assert metadata["limits"]["max_instances"] == LIMITS["max_instances"]
    assert metadata["kind"] == "fashion-mnist" and "Fashion-MNIST pipeline" in metadata["preprocessing"]
    assert metadata["accuracy"] == pytest.approx(accuracy) and metadata["accuracy_split"] == "test"


# ---------------------------------------------------------------- photo uploads and the page


def test_upload_gives_top_k_category_and_preview(client, predictor):
    photo, pixels = garment_photo(), image_batch(1, seed=3)[0]
    response = upload(client, ("shirt.jpg", photo), ("small.png", mnist_png(pixels)), query="?preview=true")
    assert response.status_code == 200, response.text
    first, second = response.json()["predictions"]
    assert [first["file"], second["file"]] == ["shirt.jpg", "small.png"]
    expected = predictor.predict_proba(np.stack([pipeline.photo_to_input(photo), pixels / 255.0]))
    for result, row in zip((first, second), expected):
        assert [item["label"] for item in result["top_k"]] == [CLASS_NAMES[i] for i in np.argsort(-row)[:3]]
        assert result["label"] == result["top_k"][0]["label"]
        assert result["probability"] == pytest.approx(row.max(), abs=1e-5)
        assert_category(result["category"], CLASS_NAMES, row)
    preview = Image.open(io.BytesIO(base64.b64decode(second["input_png"].split(",", 1)[1])))
    assert preview.size == (28, 28)
    np.testing.assert_array_equal(np.asarray(preview), pixels)


def test_upload_top_k_parameter_and_no_preview_by_default(client):
    result = upload(client, ("a.jpg", garment_photo()), query="?top_k=5").json()["predictions"][0]
    assert len(result["top_k"]) == 5 and "input_png" not in result


def test_page_and_its_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "style.css"):
        assert f"/static/{name}" in page.text
        assert client.get(f"/static/{name}").status_code == 200
    assert "http://" not in page.text and "https://" not in page.text  # no CDN
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/docs-static/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text.lower()  # the docs page works offline
    assert client.get("/docs-static/swagger-ui-bundle.js").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/models/{name}:predict", "/predict", "/v1/models/{name}", "/v1/models/{name}/metadata",
            "/v2/health/live", "/v2/health/ready", "/metrics", "/v2/models/{name}/infer"} <= set(paths)


# ---------------------------------------------------------------- a photo model: the service follows its contract


@pytest.fixture(scope="module")
def photo_predictor(photo_run):
    return Predictor.from_dir(photo_run)


@pytest.fixture(scope="module")
def photo_client(photo_predictor):
    with TestClient(create_app(photo_predictor, **LIMITS), raise_server_exceptions=False) as test_client:
        yield test_client


def rendered_photo(label: int, seed: int = 0, fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    render_photo(label, np.random.default_rng(seed)).save(buffer, format=fmt)
    return buffer.getvalue()


def photo_array(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(32, 32, 3)).astype(np.uint8)


def test_photo_model_upload_gives_its_classes_and_an_rgb_preview(photo_client, photo_predictor):
    photo = rendered_photo(0)
    response = upload(photo_client, ("dress.jpg", photo), ("shoes.png", rendered_photo(1, fmt="PNG")),
                      query="?preview=true")
    assert response.status_code == 200, response.text
    first, second = response.json()["predictions"]
    model_input = photo_predictor.contract.decode(photo)
    expected = photo_predictor.predict_proba(model_input[None])[0]
    assert [item["label"] for item in first["top_k"]] == [PHOTO_CLASSES[i] for i in np.argsort(-expected)]
    assert first["probability"] == pytest.approx(expected.max(), abs=1e-5)
    for result in (first, second):
        assert result["label"] in PHOTO_CLASSES and len(result["top_k"]) == 3  # top_k 3 of 3 classes
        # The category is chosen from the whole vector, not looked up from the top label.
        probabilities = {item["label"]: item["probability"] for item in result["top_k"]}
        assert_category(result["category"], PHOTO_CLASSES, [probabilities[name] for name in PHOTO_CLASSES])
    preview = Image.open(io.BytesIO(base64.b64decode(first["input_png"].split(",", 1)[1])))
    assert preview.size == (32, 32) and preview.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(preview), np.rint(model_input).astype(np.uint8))


def test_photo_model_top_k_is_bounded_by_its_classes(photo_client):
    response = upload(photo_client, ("a.jpg", rendered_photo(2)), query="?top_k=4")
    assert response.status_code == 422 and "top_k" in response.json()["error"]
    assert "less than or equal to 3" in response.json()["error"]
    result = upload(photo_client, ("a.jpg", rendered_photo(2)), query="?top_k=2").json()["predictions"][0]
    assert len(result["top_k"]) == 2 and "input_png" not in result


def test_photo_model_b64_and_array_instances(photo_client, photo_predictor):
    photo, pixels = rendered_photo(2, seed=1), photo_array(seed=1)
    response = post_json(photo_client, {"instances": [{"b64": base64.b64encode(photo).decode()}, pixels.tolist()]})
    assert response.status_code == 200, response.text
    predictions = np.array(response.json()["predictions"])
    expected = photo_predictor.predict_proba(np.stack([photo_predictor.contract.decode(photo), pixels]))
    assert predictions.shape == (2, len(PHOTO_CLASSES))
    np.testing.assert_allclose(predictions, expected, atol=1e-5)
    # The per-instance scale rule: the same photo as 0–1 floats gives the same answer.
    for instances in ([pixels.tolist()], [(pixels / 255.0).tolist()]):
        response = post_json(photo_client, {"inputs": instances})
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(response.json()["outputs"], expected[1:], atol=1e-4)


PHOTO_MODEL_MISTAKES = {
    # name: (instances, message fragments)
    "a Fashion-MNIST array": ([[[0] * 28] * 28], ["32×32×3", "got 28×28", "Fashion-MNIST", "b64"]),
    "several Fashion-MNIST arrays": ([[[0] * 28] * 28] * 2, ["32×32×3", "got 28×28", "b64"]),
    "a photo of the wrong size": ([[[[0] * 3] * 28] * 28], ["32×32×3", "got 28×28×3"]),
    "RGBA": ([[[[0] * 4] * 32] * 32], ["32×32×3", "got 32×32×4"]),
    "grayscale at the right size": ([[[0] * 32] * 32], ["32×32×3", "got 32×32"]),
    "over 255": ([[[[256] * 3] * 32] * 32], ["[0, 255]"]),
    "NaN": ([[[[float("nan")] * 3] * 32] * 32], ["NaN"]),
    "ragged": ([[[[0] * 3] * 32] * 31 + [[[0] * 2] * 32]], ["instances[0]", "32×32×3"]),
    "strings": ([[[["a"] * 3] * 32] * 32], ["numbers"]),
}


@pytest.mark.parametrize("name", PHOTO_MODEL_MISTAKES)
def test_photo_model_refuses_arrays_of_another_shape_with_what_to_send(photo_client, name):
    instances, fragments = PHOTO_MODEL_MISTAKES[name]
    response = post_json(photo_client, {"instances": instances})
    assert response.status_code == 422, response.text
    for fragment in fragments:
        assert fragment in response.json()["error"]


def test_fashion_mnist_model_refuses_photo_arrays(client):
    response = post_json(client, {"instances": [photo_array().tolist()]})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert "28×28" in error and "got 32×32×3" in error and "b64" in error


def test_photo_model_metadata_and_page_description(photo_client, photo_predictor, photo_run):
    metadata = photo_client.get("/v1/models/apparel/metadata").json()
    assert metadata["kind"] == "photo"
    assert metadata["input_shape"] == [32, 32, 3]
    assert metadata["class_names"] == list(PHOTO_CLASSES)
    assert metadata["preprocessing"] == photo_predictor.contract.describe()
    assert metadata["accuracy"] == pytest.approx(0.5) and metadata["accuracy_split"] == "validation"
    assert metadata["validation_accuracy"] == pytest.approx(0.5) and metadata["test_accuracy"] is None
    version = hashlib.sha256((photo_run / artifacts.MODEL_FILE).read_bytes()).hexdigest()[:12]
    assert metadata["model_version"] == version
    schema = photo_client.get("/openapi.json").json()
    parameters = {item["name"]: item for item in schema["paths"]["/predict"]["post"]["parameters"]}
    assert parameters["top_k"]["schema"]["anyOf"][0]["maximum"] == 3
    assert "32×32×3" in schema["paths"]["/v1/models/{name}:predict"]["post"]["summary"]


def test_photo_model_batcher_uses_the_contract_shape(photo_predictor):
    infer = inference_function(photo_predictor)
    images = np.stack([photo_array(seed) for seed in range(3)]).astype(np.float32)
    np.testing.assert_allclose(infer(images), photo_predictor.predict_proba(images), atol=1e-5)
    assert warm_up(infer, 3, photo_predictor.contract.shape) == 3
    assert warm_up(infer, 50, photo_predictor.contract.shape, seconds=0) == 1  # stops at the time limit


def test_serve_without_a_directory_prefers_the_shipped_photo_model(photo_run, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("APPAREL_MODEL_DIR", raising=False)
    monkeypatch.setattr(service_app, "DEFAULT_PHOTO_MODEL_DIR", photo_run)
    assert served_model_dir() == photo_run
    assert served_model_dir(photo_run) == photo_run
    monkeypatch.setattr(service_app, "DEFAULT_PHOTO_MODEL_DIR", tmp_path / "not-trained-yet")
    fallback = served_model_dir()
    assert fallback.name == "default"
    note = capsys.readouterr().err
    assert note.count("\n") == 1 and "not-trained-yet" in note and "Fashion-MNIST" in note
    monkeypatch.setenv("APPAREL_MODEL_DIR", str(photo_run))
    assert served_model_dir() == photo_run


# ---------------------------------------------------------------- health, metrics, batching


def test_health(client):
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}


@pytest.mark.parametrize("path", ["/v2/health/ready", "/", "/v1/models/apparel", "/v2/models/apparel"])
def test_head_is_answered_as_get_without_the_body(client, path):
    got, head = client.get(path), client.head(path)
    assert got.status_code == head.status_code == 200 and got.content and head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.headers["content-length"] == got.headers["content-length"]
    # A route that takes no GET still refuses HEAD, naming what it takes.
    for post_only in (PREDICT, "/predict", "/v2/models/apparel/infer"):
        refused = client.head(post_only)
        assert refused.status_code == 405 and refused.content == b"" and "POST" in refused.headers["allow"]


def test_a_verb_asked_with_get_or_an_unknown_verb_is_told_what_the_route_takes(client):
    """A status path's last part also matches "apparel:predict" or "1:classify": asked with GET, a
    verb is a 405 naming POST (it was "no version 1:predict"); POSTed with a misspelt verb, a 404
    naming the verbs (it was a 405 saying to GET it). Every Allow that names GET names HEAD too."""
    for path in ("/v1/models/apparel:predict", "/v1/models/apparel/versions/1:predict",
                 "/v1/models/apparel/labels/stable:classify"):
        for method in ("GET", "HEAD"):
            refused = client.request(method, path)
            assert refused.status_code == 405 and refused.headers["allow"] == "POST", (method, path, refused.text)
    for path in ("/v1/models/apparel:predct", "/v1/models/apparel/versions/1:foo", "/v1/models/apparel/labels/a:b"):
        refused = client.post(path, json={"instances": []})
        assert refused.status_code == 404 and "POST takes :predict or :classify" in refused.json()["error"], path
    refused = client.post("/v1/models/apparel", json={"instances": []})
    assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"
    assert client.delete("/v2/health/ready").headers["allow"] == "GET, HEAD"


def test_metrics_count_routes_statuses_latency_and_batches(client):
    post_json(client, {"instances": image_batch(2).tolist()})
    post_json(client, {"instances": "nope"})
    client.get("/no/such/path")
    client.get("/docs")
    client.get("/static/app.js")
    text = client.get("/metrics").text
    route = "/v1/models/{name}:predict"  # the template: one series for every model name
    assert f'apparel_http_requests_total{{method="POST",route="{route}",status="200"}}' in text
    assert f'apparel_http_requests_total{{method="POST",route="{route}",status="422"}}' in text
    assert 'apparel_predictions_total{model="apparel",protocol="rest",status="200",version="' in text
    assert 'route="other",status="404"' in text
    assert 'route="/docs",status="200"' in text and 'route="/static",status="200"' in text
    assert f'apparel_http_request_duration_seconds_count{{route="{route}"}}' in text
    samples = {sample.name: sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name.startswith(("apparel_batch_size", "apparel_inference_seconds"))}
    # Recorded, not just declared: model calls were counted, with the images they carried.
    assert samples["apparel_batch_size_count"] >= 1 and samples["apparel_batch_size_sum"] >= 2
    assert samples["apparel_inference_seconds_count"] == samples["apparel_batch_size_count"]
    assert samples["apparel_inference_seconds_sum"] > 0


def test_concurrent_requests_share_batches_and_get_their_own_rows(predictor):
    import httpx

    app = create_app(predictor, max_wait_ms=20)
    images = image_batch(24, seed=4)
    expected = predictor.predict_proba(images)

    async def send_all():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await asyncio.gather(*(http.post(PREDICT, json={"instances": [image.tolist()]}) for image in images))

    responses = asyncio.run(send_all())
    app.state.batcher.close()
    for response, row in zip(responses, expected):
        assert response.status_code == 200
        np.testing.assert_allclose(response.json()["predictions"][0], row, atol=1e-5)
    batches = app.state.metrics.batch_size.collect()[0].samples
    count = next(sample.value for sample in batches if sample.name.endswith("_count"))
    images_seen = next(sample.value for sample in batches if sample.name.endswith("_sum"))
    assert images_seen == len(images)  # every image went through a recorded model call
    assert 1 <= count < len(images)  # and some calls answered several requests at once


def test_micro_batcher_respects_max_batch_and_delivers_errors():
    sizes = []

    def infer(images):
        sizes.append(len(images))
        if np.isnan(images).any():
            raise RuntimeError("model failure")
        return np.repeat(images.reshape(len(images), -1)[:, :1], 10, axis=1)

    batcher = MicroBatcher(infer, max_batch=4, max_wait_ms=50)

    async def run():
        calls = [batcher.predict(np.full((1, 28, 28), i, np.float32)) for i in range(10)]
        return await asyncio.gather(*calls)

    results = asyncio.run(run())
    assert [float(r[0, 0]) for r in results] == list(range(10)) and max(sizes) <= 4 and sum(sizes) == 10
    with pytest.raises(RuntimeError, match="model failure"):
        asyncio.run(batcher.predict(np.full((1, 28, 28), np.nan, np.float32)))
    batcher.close()
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(infer, max_batch=0)


# ---------------------------------------------------------------- client mistakes → 4xx with a message


def nested(depth):
    return "[" * depth + "]" * depth


BOMB = None


def bomb_png() -> bytes:
    """A PNG that declares 5000×5000 pixels (over the 1 MP test limit) and is only a few kB."""
    global BOMB
    if BOMB is None:
        buffer = io.BytesIO()
        Image.new("L", (5000, 5000)).save(buffer, format="PNG")
        BOMB = buffer.getvalue()
    return BOMB


JSON_MISTAKES = {
    # name: (body bytes, content type, status, message fragment)
    "wrong content type": (b'{"instances": []}', "text/plain", 415, "Content-Type must be application/json"),
    "no content type": (b'{"instances": []}', None, 415, "Content-Type"),
    "body over the limit": (b" " * 200_001, "application/json", 413, "limit"),
    "empty body": (b"", "application/json", 400, "empty"),
    "malformed JSON": (b'{"instances": [1, 2', "application/json", 400, "not valid JSON"),
    "not UTF-8": (b'{"instances": "\xff\xfe\xfa"}', "application/json", 400, "not valid JSON"),
    "nested too deeply": (nested(100_000).encode(), "application/json", 400, "JSON"),
    "not an object": (b"[1, 2, 3]", "application/json", 422, "JSON object"),
    "unknown key": (b'{"instances": [], "extra": 1}', "application/json", 422, "unknown key 'extra'"),
    "both formats": (b'{"instances": [], "inputs": []}', "application/json", 422, "exactly one"),
    "unknown signature": (b'{"instances": [], "signature_name": "x"}', "application/json", 422, "signature_name"),
    "instances not a list": (b'{"instances": "abc"}', "application/json", 422, "must be a list"),
    "no instances": (b'{"instances": []}', "application/json", 422, "empty"),
    "too many instances": (json.dumps({"instances": [[[0] * 28] * 28] * 9}).encode(), "application/json", 413, "limit is 8"),
    "wrong shape": (json.dumps({"instances": [[[0] * 27] * 28]}).encode(), "application/json", 422, "28×28"),
    "flat instance": (json.dumps({"instances": [[0] * 784]}).encode(), "application/json", 422, "28×28"),
    "scalar instance": (b'{"instances": [5]}', "application/json", 422, "28×28"),
    "ragged": (json.dumps({"instances": [[[0] * 28] * 27 + [[0] * 5]]}).encode(), "application/json", 422, "instances[0]"),
    "strings": (json.dumps({"instances": [[["a"] * 28] * 28]}).encode(), "application/json", 422, "numbers"),
    "booleans": (json.dumps({"instances": [[[True] * 28] * 28]}).encode(), "application/json", 422, "numbers"),
    "NaN": (json.dumps({"instances": [[[float("nan")] * 28] * 28]}).encode(), "application/json", 422, "NaN"),
    "Infinity": (json.dumps({"instances": [[[0] * 27 + [float("inf")]] * 28]}).encode(), "application/json", 422, "NaN or infinity"),
    "huge integer": (json.dumps({"instances": [[[10**30] * 28] * 28]}).encode(), "application/json", 422, "numbers"),
    "negative": (json.dumps({"instances": [[[-1] * 28] * 28]}).encode(), "application/json", 422, "[0, 255]"),
    "over 255": (json.dumps({"instances": [[[256] * 28] * 28]}).encode(), "application/json", 422, "[0, 255]"),
    "b64 not base64": (b'{"instances": [{"b64": "***"}]}', "application/json", 422, "not valid base64"),
    "b64 with extra key": (b'{"instances": [{"b64": "", "x": 1}]}', "application/json", 422, "b64"),
    "b64 empty": (b'{"instances": [{"b64": ""}]}', "application/json", 422, "no bytes"),
    "b64 not an image": (json.dumps({"instances": [{"b64": base64.b64encode(b"hello").decode()}]}).encode(),
                         "application/json", 422, "not a readable image"),
}


@pytest.mark.parametrize("name", JSON_MISTAKES)
def test_json_mistakes_are_4xx_with_a_message(client, name):
    body, content_type, status, fragment = JSON_MISTAKES[name]
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post(PREDICT, content=body, headers=headers)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"] and "BytesIO" not in response.json()["error"]


def upload_mistakes():
    photo = garment_photo(fmt="PNG")
    return {
        # name: (files, status, message fragment)
        "not an image": ([("notes.txt", b"just some text")], 422, "'notes.txt': not a readable image"),
        "truncated image": ([("cut.png", photo[: len(photo) // 2])], 422, "'cut.png'"),
        "decompression bomb": ([("bomb.png", bomb_png())], 422, "decompression bomb"),
        "empty file": ([("empty.jpg", b"")], 400, "'empty.jpg' is empty"),
        "one good one bad": ([("good.png", photo), ("bad.gif", b"GIF89a")], 422, "'bad.gif'"),
        "too many files": ([(f"{i}.png", photo) for i in range(4)], 413, "the limit is 3"),
        "blank photo": ([("white.png", garment_photo(colour=(255, 255, 255), fmt="PNG"))], 422, "one colour"),
    }


@pytest.mark.parametrize("name", list(upload_mistakes()))
def test_upload_mistakes_are_4xx_with_a_message(client, name):
    files, status, fragment = upload_mistakes()[name]
    response = upload(client, *files)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]


@pytest.mark.parametrize(
    "body, content_type, status, fragment",
    [
        (b"--x\r\n", "application/json", 415, "multipart/form-data"),
        (b"abc", "multipart/form-data", 400, "no boundary"),
        (b"--x\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.png\"\r\n\r\nabc",
         "multipart/form-data; boundary=x", 400, "cut short"),
        (b"--x\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n--x--\r\n",
         "multipart/form-data; boundary=x", 400, "no file"),
        (b"garbage that is not multipart", "multipart/form-data; boundary=x", 400, "multipart"),
        (b"x" * 200_001, "multipart/form-data; boundary=x", 413, "limit"),
        (b"".join(b"--x\r\nContent-Disposition: form-data; name=\"f%d\"\r\n\r\nv\r\n" % i for i in range(101)) + b"--x--\r\n",
         "multipart/form-data; boundary=x", 413, "form fields"),
    ],
)
def test_malformed_uploads_are_4xx(client, body, content_type, status, fragment):
    response = client.post("/predict", content=body, headers={"Content-Type": content_type})
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]


def test_bad_parameters_paths_and_methods_are_json_errors(client):
    response = upload(client, ("a.jpg", garment_photo()), query="?top_k=0")
    assert response.status_code == 422 and "top_k" in response.json()["error"]
    assert client.get("/nowhere").json() == {"error": "Not Found"}
    assert client.get(PREDICT).status_code == 405 and "error" in client.get(PREDICT).json()


def test_chunked_body_over_the_limit_is_413(client):
    def chunks():
        for _ in range(30):
            yield b" " * 10_000

    response = client.post(PREDICT, content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def test_nothing_is_written_to_disk_while_serving(predictor, monkeypatch):
    written = []
    real_open = builtins.open

    def watching_open(file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax+"):
            written.append(file)
        return real_open(file, mode, *args, **kwargs)

    big_photo = garment_photo(size=(1000, 1000), fmt="BMP")  # 3 MB: over Starlette's 1 MB spooling to disk
    with TestClient(create_app(predictor, max_body_bytes=8_000_000)) as big_client:
        monkeypatch.setattr(builtins, "open", watching_open)
        for name in ("TemporaryFile", "NamedTemporaryFile", "SpooledTemporaryFile", "mkstemp", "mkdtemp"):
            monkeypatch.setattr(tempfile, name, lambda *a, _name=name, **k: written.append(_name))
        assert upload(big_client, ("big.bmp", big_photo), ("small.jpg", garment_photo())).status_code == 200
        assert upload(big_client, ("bad.png", b"not a png")).status_code == 422
        assert post_json(big_client, {"instances": image_batch(2).tolist()}).status_code == 200
        large = post_json(big_client, {"instances": image_batch(120).tolist()})  # ~330 kB: parsed off the loop
        assert large.status_code == 200 and len(large.json()["predictions"]) == 120
        monkeypatch.undo()
    assert written == []


# ---------------------------------------------------------------- fuzzing (each POST route: test_serve_chaos.py)


def test_fuzzed_bodies_to_a_photo_model_never_cause_a_server_error(photo_client):
    rng = np.random.default_rng(99)
    valid = [json.dumps({"instances": [photo_array().tolist()]}).encode(),
             json.dumps({"instances": [{"b64": base64.b64encode(rendered_photo(0, fmt="PNG")).decode()}]}).encode(),
             json.dumps({"instances": image_batch(1).tolist()}).encode()]
    statuses = []
    for index in range(120):
        body = valid[index % 3] if index % 10 == 0 else mutate(rng, valid[int(rng.integers(0, 3))])
        response = photo_client.post(PREDICT, content=body, headers={"Content-Type": "application/json"})
        assert response.status_code < 500, (body[:200], response.text)
        if response.status_code >= 400:
            assert response.json()["error"]
        statuses.append(response.status_code)
    assert 200 in statuses and 422 in statuses and photo_client.get("/v2/health/ready").status_code == 200


# ---------------------------------------------------------------- the request rules on their own


def test_instances_scale_rule_is_per_instance():
    dark = np.zeros((28, 28))
    dark[0, 0] = 1.0  # brightest value 1: read as 0–1
    bright = np.zeros((28, 28))
    bright[0, 0] = 255  # a value above 1: read as 0–255
    images = instances_to_images([dark.tolist(), bright.tolist()])
    assert images.dtype == np.float32 and images[0, 0, 0] == 1.0 and images[1, 0, 0] == 1.0
    with pytest.raises(RequestError, match="limit is 1") as error:
        instances_to_images([dark.tolist()] * 2, max_instances=1)
    assert error.value.status == 413


def test_multipart_files_keeps_every_file_and_ignores_fields():
    body = (b"--b\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n"
            b"--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"x.png\"\r\n\r\n\x89PNG\r\n\r\n"
            b"--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"y.jpg\"\r\n\r\n\r\n--b--\r\n")
    assert multipart_files(body, "multipart/form-data; boundary=b") == [("x.png", b"\x89PNG\r\n"), ("y.jpg", b"")]


def test_service_config_rejects_unknown_and_bad_settings(predictor):
    with pytest.raises(ValueError, match="unknown service setting 'max_bacth'"):
        ServiceConfig().replace(max_bacth=3)
    with pytest.raises(ValueError, match="max_files must be a number of at least 1"):
        ServiceConfig(max_files=0)
    with pytest.raises(ValueError, match="unknown service setting"):
        create_app(predictor, nonsense=1)


# ---------------------------------------------------------------- a real server and the command line


def test_real_uvicorn_server_on_loopback(predictor, monkeypatch):
    import httpx

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import serve_load

    app = create_app(predictor)
    with running_server(app) as base_url:
        with httpx.Client(base_url=base_url, timeout=10) as http:
            assert http.get("/v2/health/ready").json() == {"ready": True}
            response = http.post(PREDICT, json={"instances": image_batch(1).tolist()})
            assert response.status_code == 200 and len(response.json()["predictions"][0]) == 10
            files = {"files": ("a.jpg", garment_photo(), "image/jpeg")}
            assert http.post("/predict", files=files).json()["predictions"][0]["label"] in CLASS_NAMES
            assert http.post(PREDICT, content=b"{", headers={"Content-Type": "application/json"}).status_code == 400
            assert "text/html" in http.get("/").headers["content-type"]
        # The load generator of benchmarks/serve_load.py, briefly: bounded in count and time.
        port = int(base_url.rsplit(":", 1)[1])
        # Bounded by count: 40 requests, however slow the machine (the minute is only a backstop).
        result = asyncio.run(serve_load.run_level(port, clients=4, seconds=60.0, max_requests=40, client="raw"))
        assert result.requests == 40 and result.errors == 0 and result.p99_ms > 0
    assert app.state.batcher._executor is None  # shutdown stopped the inference thread


def test_serve_command_reports_a_missing_model(tmp_path, capsys):
    assert cli.main(["serve", str(tmp_path / "nothing"), "--port", "1"]) == 2
    assert "nothing does not exist" in capsys.readouterr().err
    assert cli.main(["serve", str(tmp_path), "--max-batch", "0"]) == 2
    assert "max_batch must be a number of at least 1" in capsys.readouterr().err


def test_ready_turns_503_when_the_server_shuts_down(predictor):
    app = create_app(predictor)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert client.get("/v2/health/ready").json() == {"ready": True}
    # Shut down (the lifespan has ended): load balancers must stop sending; liveness stays.
    after = TestClient(app, base_url="http://127.0.0.1")
    response = after.get("/v2/health/ready")
    assert response.status_code == 503 and "starting or shutting down" in response.json()["error"]
    assert after.get("/v2/health/live").status_code == 200


def test_photo_model_upload_gives_the_colour_where_the_category_takes_one(photo_client, photo_predictor):
    from apparel.attributes import photo_attributes
    from test_photos import garment_photo

    buffer = io.BytesIO()
    garment_photo(size=(300, 400), box=(60, 60, 240, 340), colour=(30, 40, 82)).save(buffer, format="PNG")
    result = upload(photo_client, ("navy.png", buffer.getvalue())).json()["predictions"][0]
    model_input = photo_predictor.contract.decode(buffer.getvalue())
    expected = photo_attributes(model_input[None], [result["category"]])[0]
    assert result["category"]["id"]  # the tiny model's category for it takes a colour
    assert result["color"] == expected["color"] and result["color"]["name"] == "Navy"
    assert result["color"]["gid"] == "gid://shopify/TaxonomyValue/15"


def test_upload_and_v2_answers_carry_the_sleeve_length_the_classes_tell(sleeve_run):
    from conftest import answering
    from test_photos import garment_photo

    buffer = io.BytesIO()
    garment_photo(size=(300, 400), box=(60, 60, 240, 340), colour=(30, 40, 82)).save(buffer, format="PNG")
    short = {"name": "Short", "handle": "sleeve-length-type__short", "gid": "gid://shopify/TaxonomyValue/169",
             "confidence": 0.9}
    for probabilities, expected in (([0.05, 0.05, 0.9], short), ([0.05, 0.9, 0.05], None)):  # a T-shirt, shoes
        with TestClient(create_app(answering(sleeve_run, probabilities), **LIMITS)) as client:
            result = upload(client, ("tee.png", buffer.getvalue())).json()["predictions"][0]
            assert result.get("sleeve_length_type") == expected
            input_name = client.get("/v2/models/apparel").json()["inputs"][0]["name"]
            tensor = {"name": input_name, "shape": [1], "datatype": "BYTES",
                      "data": [base64.b64encode(buffer.getvalue()).decode()]}
            answer = client.post("/v2/models/apparel/infer", json={"inputs": [tensor]}).json()
            outputs = {output["name"]: output for output in answer["outputs"]}
            assert outputs["sleeve_length_type"]["datatype"] == "BYTES"
            assert [json.loads(value) for value in outputs["sleeve_length_type"]["data"]] == [expected]
            names = [output["name"] for output in client.get("/v2/models/apparel").json()["outputs"]]
            assert names[-1] == "sleeve_length_type"


def test_a_v2_answer_with_colours_is_built_off_the_event_loop(photo_predictor, monkeypatch):
    """Naming a colour reads each photo's pixels (milliseconds a photo): the answer that carries
    colours is built on a worker thread, so the requests behind it do not wait for it."""
    from apparel.serve import v2

    recording, named_on_loop = noting_the_loop(v2.photo_attributes)
    monkeypatch.setattr(v2, "photo_attributes", recording)
    with TestClient(create_app(photo_predictor, **LIMITS)) as client:
        input_name = client.get("/v2/models/apparel").json()["inputs"][0]["name"]
        tensor = {"name": input_name, "shape": [1, 32, 32, 3], "datatype": "UINT8",
                  "data": photo_array().ravel().tolist()}
        answered = client.post("/v2/models/apparel/infer", json={"inputs": [tensor]})  # every output: colour too
        assert answered.status_code == 200, answered.text
        assert "color" in [output["name"] for output in answered.json()["outputs"]]
    assert named_on_loop == [False]
