"""Several models by name over every protocol, proven with clients no one here wrote — tritonclient
(Open Inference Protocol over HTTP and gRPC) and tensorflow-serving-api (TF Serving's gRPC
PredictionService) — and hot reload of a model repository under load, over a real uvicorn server
on 127.0.0.1. The models are the tiny ones of the other service tests, never the shipped ones."""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from apparel.inference.runtime import load_predictor
from apparel.serve.app import create_app
from apparel.serve.config import ServiceConfig
from apparel.serve.registry import Registry
from apparel.serve.reload import Reloader
from apparel.serve.repository import Repository
from apparel.serve.telemetry import Metrics, RequestLog
from serving import garment_photo, running_server, train_tiny_model

tritonclient = pytest.importorskip("tritonclient.grpc", reason="make venv installs tritonclient[http,grpc]")
pytest.importorskip("tensorflow_serving.apis", reason="make venv installs tensorflow-serving-api --no-deps")

POLL = 0.3  # seconds between looks at the repository in these tests
SETTINGS = dict(poll_interval_s=POLL, warm_up_s=0.0, max_wait_ms=1.0)


@pytest.fixture(scope="module")
def fashion_run(tiny_dataset, tmp_path_factory):
    return train_tiny_model(tiny_dataset, tmp_path_factory.mktemp("fashion"))


def make_repository(root: Path, fashion_run: Path, photo_run: Path, config: dict | None = None) -> Path:
    shutil.copytree(fashion_run, root / "fashion-mnist" / "1")
    shutil.copytree(photo_run, root / "photos" / "1")
    if config is not None:
        (root / "models.json").write_text(json.dumps(config))
    return root


def repository_app(root: Path, request_log: Path | None = None, **settings):
    config = ServiceConfig(model_repository=str(root), request_log=str(request_log) if request_log else None,
                           log_sample_rate=1.0 if request_log else 0.0, **{**SETTINGS, **settings})
    registry = Registry(config, Metrics(), RequestLog(config.request_log, config.log_sample_rate, seed=0))
    reloader = Reloader(Repository(root), registry)
    reloader.sync()
    return create_app(registry, reloader=reloader, grpc_address="127.0.0.1:0"), reloader


@pytest.fixture(scope="module")
def served(fashion_run, photo_run, tmp_path_factory):
    """A server of both models (gRPC too) and the in-process predictors to compare with."""
    root = make_repository(tmp_path_factory.mktemp("repo"), fashion_run, photo_run,
                           {"default": "photos", "models": {"fashion-mnist": {"version_labels": {"stable": 1}}}})
    log = tmp_path_factory.mktemp("logs") / "requests.jsonl"
    app, _ = repository_app(root, request_log=log)
    with running_server(app) as base_url:
        yield {"url": base_url, "grpc": f"127.0.0.1:{app.state.grpc_port}", "log": log,
               # The runtime the service runs by default (each model's LiteRT artefact), in this process.
               "fashion-mnist": load_predictor(fashion_run), "photos": load_predictor(photo_run)}


def fashion_images(count=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(count, 28, 28)).astype(np.uint8)


def photo_images(count=2, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(count, 32, 32, 3)).astype(np.uint8)


def inputs_for(name):
    return fashion_images() if name == "fashion-mnist" else photo_images()


# ---------------------------------------------------------------- tritonclient, HTTP and gRPC


@pytest.mark.parametrize("name", ["fashion-mnist", "photos"])
@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_http_infer_equals_the_predictor(served, name, binary):
    import tritonclient.http as http

    client = http.InferenceServerClient(served["url"].removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(name)
    metadata = client.get_model_metadata(name)
    assert metadata["inputs"][0]["shape"][1:] == list(served[name].contract.shape)
    images = inputs_for(name).astype(np.float32)
    tensor = http.InferInput(metadata["inputs"][0]["name"], list(images.shape), "FP32")
    tensor.set_data_from_numpy(images, binary_data=binary)
    outputs = [http.InferRequestedOutput("probabilities", binary_data=binary), http.InferRequestedOutput("label")]
    result = client.infer(name, [tensor], outputs=outputs)
    expected = served[name].predict_proba(images)
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=1e-5)
    names = served[name].contract.class_names
    assert [label.decode() for label in result.as_numpy("label")] == [names[i] for i in expected.argmax(-1)]
    client.close()


@pytest.mark.parametrize("name", ["fashion-mnist", "photos"])
def test_tritonclient_grpc_infer_and_metadata(served, name):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(served["grpc"])
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(name)
    metadata = client.get_model_metadata(name)
    assert list(metadata.inputs[0].shape[1:]) == list(served[name].contract.shape) and metadata.versions == ["1"]
    images = inputs_for(name)
    tensor = grpcclient.InferInput(metadata.inputs[0].name, list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images)
    result = client.infer(name, [tensor])
    np.testing.assert_allclose(result.as_numpy("probabilities"), served[name].predict_proba(images), atol=1e-5)
    client.close()


@pytest.mark.parametrize("name", ["fashion-mnist", "photos"])
def test_the_category_output_is_the_chosen_shopify_category_over_http_and_grpc(served, name):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as http

    from apparel.shop.categories import optional_run_chooser

    predictor = served[name]
    images = inputs_for(name).astype(np.float32)
    expected = [decision.to_dict() for decision in optional_run_chooser(
        predictor.model_dir, predictor.class_names).choose_all(predictor.predict_proba(images))]
    answers = []
    for module, address in ((http, served["url"].removeprefix("http://")), (grpcclient, served["grpc"])):
        client = module.InferenceServerClient(address)
        metadata = client.get_model_metadata(name, **({"as_json": True} if module is grpcclient else {}))
        tensor = module.InferInput(metadata["inputs"][0]["name"], list(images.shape), "FP32")
        tensor.set_data_from_numpy(images)
        result = client.infer(name, [tensor], outputs=[module.InferRequestedOutput("category")])
        answers.append([json.loads(value) for value in result.as_numpy("category")])
        client.close()
    for answer in answers:
        assert [item["id"] for item in answer] == [item["id"] for item in expected]
        assert [item["reason"] for item in answer] == [item["reason"] for item in expected]
        assert all(item["path"] is None or item["gid"].endswith(item["id"]) for item in answer)


def test_tritonclient_sends_photo_files_as_bytes_over_both_transports(served):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as http


    photo = garment_photo()
    expected = served["photos"].predict_proba(served["photos"].contract.decode(photo)[None])
    input_name = http.InferenceServerClient(served["url"].removeprefix("http://")).get_model_metadata("photos")[
        "inputs"][0]["name"]
    for module, address in ((http, served["url"].removeprefix("http://")), (grpcclient, served["grpc"])):
        client = module.InferenceServerClient(address)
        tensor = module.InferInput(input_name, [1], "BYTES")
        tensor.set_data_from_numpy(np.array([photo], dtype=np.object_))
        result = client.infer("photos", [tensor])
        np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=1e-4)
        client.close()


def test_the_color_and_sleeve_outputs_are_the_product_s_over_http_and_grpc(served):
    import io

    import tritonclient.grpc as grpcclient
    import tritonclient.http as http
    from PIL import Image

    from apparel.attributes import photo_attributes, sleeve_attributes
    from apparel.shop.categories import optional_run_chooser

    predictor = served["photos"]
    photo = Image.new("RGB", (300, 400), "white")
    photo.paste((30, 40, 82), (60, 60, 240, 340))  # a navy garment on a white sweep
    buffer = io.BytesIO()
    photo.save(buffer, format="PNG")
    model_input = predictor.contract.decode(buffer.getvalue())[None]
    categories = [decision.to_dict() for decision in optional_run_chooser(
        predictor.model_dir, predictor.class_names).choose_all(predictor.predict_proba(model_input))]
    expected = photo_attributes(model_input, categories)[0].get("color")
    # (tests/test_service.py gives the sleeve length of a sure T-shirt; here it is whatever the tiny model's is)
    chooser = optional_run_chooser(predictor.model_dir, predictor.class_names)
    sleeve = sleeve_attributes(predictor.predict_proba(model_input), chooser, categories)[0].get("sleeve_length_type")
    assert expected is not None and expected["name"] == "Navy"  # the tiny model's category takes a colour
    input_name = http.InferenceServerClient(served["url"].removeprefix("http://")).get_model_metadata("photos")[
        "inputs"][0]["name"]
    for module, address in ((http, served["url"].removeprefix("http://")), (grpcclient, served["grpc"])):
        client = module.InferenceServerClient(address)
        tensor = module.InferInput(input_name, [1], "BYTES")
        tensor.set_data_from_numpy(np.array([buffer.getvalue()], dtype=np.object_))
        result = client.infer("photos", [tensor])  # every output, the colour and sleeve length among them
        assert [json.loads(value) for value in result.as_numpy("color")] == [expected]
        assert [json.loads(value) for value in result.as_numpy("sleeve_length_type")] == [sleeve]
        client.close()


def test_grpc_errors_map_to_status_codes(served):
    import grpc
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(served["grpc"])
    wrong = grpcclient.InferInput(client.get_model_metadata("fashion-mnist").inputs[0].name, [1, 32, 32, 3], "FP32")
    wrong.set_data_from_numpy(np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(InferenceServerException) as error:
        client.infer("fashion-mnist", [wrong])
    assert error.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT) and "28" in error.value.message()
    with pytest.raises(InferenceServerException) as error:
        client.get_model_metadata("no-such-model")
    assert error.value.status() == str(grpc.StatusCode.NOT_FOUND)
    client.close()


@pytest.mark.parametrize("generator", ["python", "h2load"])
def test_the_load_generators_of_serve_load_count_answers_and_failures(served, generator, monkeypatch):
    """benchmarks/serve_load.py's protocol levels, briefly, on each protocol: answers counted, none
    failed; a gRPC call to a model that is not there is a failure even to h2load, which sees only
    HTTP/2's 200 (the server's own count of OK answers is checked)."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import serve_load

    port, grpc_port = int(served["url"].rsplit(":", 1)[1]), int(served["grpc"].rsplit(":", 1)[1])
    import httpx

    input_name = httpx.get(f"{served['url']}/v2/models/fashion-mnist").json()["inputs"][0]["name"]
    level = functools.partial(serve_load.run_protocol_level, http_port=port, grpc_port=grpc_port, clients=4,
                              seconds=0.5 if generator == "h2load" else 60.0, max_requests=30, shape=(28, 28),
                              input_name=input_name, generator=generator)
    for protocol in serve_load.PROTOCOLS:
        result = asyncio.run(level(protocol, "fashion-mnist"))
        assert result.errors == 0 and result.requests > 0 and result.p99_ms > 0, (protocol, result)
        if generator == "python":
            assert result.requests == 30  # bounded by count
        else:
            assert result.client_cpu_ms > 0  # h2load's CPU, as a child process's
    missing = asyncio.run(level("grpc", "no-such-model"))
    assert missing.errors > 0 and missing.errors >= missing.requests and missing.accepted_rps == 0
    if generator == "h2load":  # at a fixed rate: 40 a second from the 4 clients for a second
        paced = serve_load.h2load_sample("rest", "fashion-mnist", port, grpc_port, 4, 1.0, (28, 28), input_name,
                                         rps=40)
        assert 20 <= len(paced.milliseconds) <= 48 and set(paced.statuses) == {200}


@pytest.mark.parametrize("generator", ["python", "h2load"])
def test_serve_load_sends_a_photo_file_over_each_upload_protocol(served, generator, monkeypatch):
    """benchmarks/serve_load.py --uploads, briefly: the same photo file as a REST multipart upload,
    REST base64 JSON and a gRPC BYTES element to the default model, each answered without failure."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import httpx
    import serve_load

    port, grpc_port = int(served["url"].rsplit(":", 1)[1]), int(served["grpc"].rsplit(":", 1)[1])
    metadata = httpx.get(f"{served['url']}/v2/models/apparel").json()
    model, input_name = metadata["name"], metadata["inputs"][0]["name"]
    for protocol in serve_load.UPLOAD_PROTOCOLS:
        request = serve_load.photo_request(protocol, model, garment_photo(), input_name)
        result = asyncio.run(serve_load.run_protocol_level(
            protocol, model, port, grpc_port, clients=2, seconds=0.5 if generator == "h2load" else 60.0,
            max_requests=6, shape=None, input_name=input_name, generator=generator, request=request))
        assert result.errors == 0 and result.requests > 0, (protocol, result)
    with pytest.raises(ValueError, match="protocol must be one of"):
        serve_load.photo_request("v2", model, garment_photo(), input_name)


def test_serve_ab_refuses_a_baseline_that_is_not_a_commit(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import serve_ab

    with pytest.raises(SystemExit):
        serve_ab.main(["--baseline", "no-such-revision-anywhere"])
    assert "is not a commit of this repository" in capsys.readouterr().err


# ---------------------------------------------------------------- tensorflow-serving-api


@pytest.mark.parametrize("name", ["fashion-mnist", "photos"])
def test_tensorflow_serving_stubs_predict_and_read_metadata(served, name):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

    with grpc.insecure_channel(served["grpc"]) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = name
        metadata = stub.GetModelMetadata(request, timeout=30)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        metadata.metadata["signature_def"].Unpack(signatures)
        (input_name, input_info), = signatures.signature_def["serving_default"].inputs.items()
        assert [dim.size for dim in input_info.tensor_shape.dim] == [-1, *served[name].contract.shape]
        images = inputs_for(name).astype(np.float32)
        predict = predict_pb2.PredictRequest()
        predict.model_spec.name = name
        predict.model_spec.signature_name = "serving_default"
        predict.inputs[input_name].CopyFrom(tf.make_tensor_proto(images))
        response = stub.Predict(predict, timeout=30)
    assert response.model_spec.version.value == 1
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]),
                               served[name].predict_proba(images), atol=1e-5)


def test_grpc_values_are_read_where_their_dtype_keeps_them_or_refused_never_read_as_zeros(served):
    """TensorFlow reads a TensorProto's values from its dtype's own field only: DT_FLOAT pixels sent
    in int_val were filled with zeros and a black image answered. And FP16 pixels, which V2 over
    HTTP takes, are taken over gRPC too (raw_input_contents), with the same answer."""
    import grpc
    import tensorflow as tf
    import tritonclient.grpc as grpcclient
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    images = fashion_images(count=1)
    client = grpcclient.InferenceServerClient(served["grpc"])
    name = client.get_model_metadata("fashion-mnist").inputs[0].name
    with grpc.insecure_channel(served["grpc"]) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

        def predict(proto):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "fashion-mnist"
            request.inputs[name].CopyFrom(proto)
            return stub.Predict(request, timeout=30)

        def shaped(dtype):
            proto = tf.make_tensor_proto([], dtype=dtype)
            proto.tensor_shape.Clear()
            for size in images.shape:
                proto.tensor_shape.dim.add().size = size
            return proto

        misplaced = shaped(tf.float32)
        misplaced.int_val.extend(images.ravel().tolist())
        doubled = tf.make_tensor_proto(images.astype(np.float32))
        doubled.float_val.extend([0.5])
        files = tf.make_tensor_proto([b"x"], dtype=tf.string)
        files.ClearField("string_val")
        files.tensor_content = b"\xff\xd8 a photo"  # TensorFlow reads N empty strings from this
        for proto, message in ((misplaced, "DT_FLOAT values go in float_val (or tensor_content); got int_val"),
                               (doubled, "has both tensor_content and float_val; send one"),
                               (files, "DT_STRING photo files go in string_val, not tensor_content")):
            with pytest.raises(grpc.RpcError) as error:
                predict(proto)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in error.value.details()
        placed = shaped(tf.float32)
        placed.float_val.extend(images.ravel().astype(float).tolist())
        np.testing.assert_allclose(tf.make_ndarray(predict(placed).outputs["probabilities"]),
                                   served["fashion-mnist"].predict_proba(images.astype(np.float32)), atol=1e-5)

    half = grpcclient.InferInput(name, list(images.shape), "FP16")
    half.set_data_from_numpy(images.astype(np.float16))
    np.testing.assert_allclose(client.infer("fashion-mnist", [half]).as_numpy("probabilities"),
                               served["fashion-mnist"].predict_proba(images.astype(np.float32)), atol=1e-5)
    client.close()


# ---------------------------------------------------------------- REST by name, V2 JSON, logs


def test_rest_by_name_version_label_and_classify(served):
    import httpx

    images = fashion_images(2)
    expected = served["fashion-mnist"].predict_proba(images)
    with httpx.Client(base_url=served["url"], timeout=30) as http:
        for path in ("/v1/models/fashion-mnist:predict", "/v1/models/fashion-mnist/versions/1:predict",
                     "/v1/models/fashion-mnist/labels/stable:predict"):
            answer = http.post(path, json={"instances": images.tolist()})
            np.testing.assert_allclose(answer.json()["predictions"], expected, atol=1e-5)
        classified = http.post("/v1/models/fashion-mnist:classify",
                               json={"examples": [{"images": image.tolist()} for image in images]}).json()
        names = served["fashion-mnist"].contract.class_names
        assert [row[0][0] for row in classified["results"]] == [names[i] for i in expected.argmax(-1)]
        # TensorFlow Serving's row format may name the input in each instance; a feature of another name is refused.
        named = http.post("/v1/models/fashion-mnist:predict", json={"instances": [{"images": image.tolist()}
                                                                                   for image in images]})
        np.testing.assert_allclose(named.json()["predictions"], expected, atol=1e-5)
        other = http.post("/v1/models/fashion-mnist:classify", json={"examples": [{"x": images[0].tolist()}]})
        assert other.status_code == 422 and "unknown input 'x'" in other.json()["error"]
        photo = base64.b64encode(garment_photo()).decode()
        assert http.post("/v1/models/apparel:predict", json={"instances": [{"b64": photo}]}).json()[
            "predictions"][0].__len__() == 3  # the alias is the default model: photos
        status = http.get("/v1/models/fashion-mnist").json()["model_version_status"]
        assert status == [{"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]
        assert http.get("/v1/models/fashion-mnist/labels/canary").status_code == 404
        assert http.get("/v1/models/nothing/metadata").status_code == 404
        signature = http.get("/v1/models/photos/metadata").json()["metadata"]["signature_def"]["signature_def"]
        assert signature["serving_default"]["outputs"]["probabilities"]["tensor_shape"]["dim"][1]["size"] == "3"
        v2 = http.post("/v2/models/fashion-mnist/versions/1/infer", json={"inputs": [
            {"name": http.get("/v2/models/fashion-mnist").json()["inputs"][0]["name"], "shape": [2, 28, 28],
             "datatype": "UINT8", "data": images.ravel().tolist()}]}).json()
        np.testing.assert_allclose(np.reshape(v2["outputs"][0]["data"], (2, 10)), expected, atol=1e-5)
        assert http.get("/v2").json()["extensions"] == ["binary_tensor_data"]
        mistake = http.post("/v2/models/fashion-mnist/infer", json={"inputs": [{"name": "x"}]})
        assert mistake.status_code == 422 and "input" in mistake.json()["error"]
        metrics = http.get("/metrics").text
    for protocol in ("rest", "v2", "grpc"):
        assert f'model="fashion-mnist",protocol="{protocol}",status="200",version="1"' in metrics
    lines = [json.loads(line) for line in served["log"].read_text().splitlines()]
    assert {line["protocol"] for line in lines} >= {"rest", "v2", "grpc"}
    assert all(set(line) == {"time", "model", "version", "protocol", "status", "ms", "bytes"} for line in lines)


# ---------------------------------------------------------------- hot reload


def test_versions_swap_under_load_without_a_failed_request(fashion_run, photo_run, tmp_path):
    """Five new versions while 16 clients send requests: no request fails, each new version
    serves within two poll intervals of its folder appearing (plus its load), a version that
    cannot load keeps the working one serving and shows its error, a removed one unloads."""
    import httpx

    root = make_repository(tmp_path / "repo", fashion_run, photo_run)
    app, reloader = repository_app(root)
    images = fashion_images(1).tolist()
    failures, answers, stop = [], [], threading.Event()

    def client():
        with httpx.Client(base_url=base_url, timeout=30) as http:
            while not stop.is_set():
                response = http.post("/v1/models/fashion-mnist:predict", json={"instances": images})
                (answers if response.status_code == 200 else failures).append(response.status_code)

    with running_server(app) as base_url:
        threads = [threading.Thread(target=client) for _ in range(16)]
        for thread in threads:
            thread.start()
        try:
            http = httpx.Client(base_url=base_url, timeout=30)
            for version in range(2, 7):
                staging = tmp_path / f"staging-{version}"
                shutil.copytree(fashion_run, staging)
                staging.rename(root / "fashion-mnist" / str(version))  # appears whole: a rename
                appeared = time.monotonic()
                while http.get("/v2/models/fashion-mnist").json()["versions"][-1] != str(version):
                    assert time.monotonic() - appeared < 2 * POLL + 5, f"version {version} never served"
                    time.sleep(0.02)
            broken = root / "fashion-mnist" / "9"
            broken.mkdir()
            (broken / "model.keras").write_bytes(b"not a model")
            time.sleep(3 * POLL)
            status = {item["version"]: item for item in http.get("/v1/models/fashion-mnist").json()["model_version_status"]}
            assert status["9"]["state"] == "END" and "failed to load" in status["9"]["status"]["error_message"]
            assert status["6"]["state"] == "AVAILABLE" and status["5"]["state"] == "END"
            assert http.get("/v2/models/fashion-mnist").json()["versions"] == ["6"]
            shutil.rmtree(broken)
            shutil.rmtree(root / "fashion-mnist" / "6")  # the latest left is 5 again
            time.sleep(3 * POLL)
            assert http.get("/v2/models/fashion-mnist").json()["versions"] == ["5"]
            http.close()
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
    assert failures == [] and len(answers) > 50
    assert reloader._thread is None  # the server's shutdown stopped the poller


def test_a_grpc_port_that_is_taken_stops_the_start_and_what_it_had_started(fashion_run, photo_run, tmp_path):
    """The lifespan fails with the port's message, and the batchers it had started are stopped."""
    import socket

    from starlette.testclient import TestClient

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        root = make_repository(tmp_path / "repo", fashion_run, photo_run)
        config = ServiceConfig(model_repository=str(root), **SETTINGS)
        registry = Registry(config, Metrics())
        reloader = Reloader(Repository(root), registry)
        reloader.sync()
        app = create_app(registry, reloader=reloader, grpc_address=f"127.0.0.1:{taken.getsockname()[1]}")
        with pytest.raises(ValueError, match="gRPC cannot listen"):
            with TestClient(app, base_url="http://127.0.0.1"):
                pass
    assert all(served.batcher._executor is None for served in registry.all_versions())
    assert reloader._thread is None and not registry.ready


def test_a_broken_models_json_keeps_what_is_served(fashion_run, photo_run, tmp_path):
    root = make_repository(tmp_path / "repo", fashion_run, photo_run,
                           {"models": {"fashion-mnist": {"version_policy": {"specific": {"versions": [1]}}}}})
    config = ServiceConfig(model_repository=str(root), **SETTINGS)
    registry = Registry(config, Metrics())
    reloader = Reloader(Repository(root), registry)
    reloader.sync()
    assert sorted(registry.models) == ["fashion-mnist", "photos"]
    (root / "models.json").write_text("{\"models\": {\"fashion-mnist\": {\"version_policy\": {\"newest\": 1}}}}")
    reloader.sync()
    assert "unknown policy" in reloader.error and sorted(registry.models["fashion-mnist"].versions) == [1]
    for served in registry.all_versions():
        served.batcher.close()


def test_a_version_above_int64_is_refused_and_the_last_good_one_kept(fashion_run, photo_run, tmp_path):
    """Version 2^63 was served, retired version 1, and broke TF Serving's gRPC ("Value out of
    range"): it is now refused, with the reason in the model's status (#31.11)."""
    from apparel.serve.repository import MAX_VERSION

    root = make_repository(tmp_path / "repo", fashion_run, photo_run)
    registry = Registry(ServiceConfig(model_repository=str(root), **SETTINGS), Metrics())
    reloader = Reloader(Repository(root), registry)
    reloader.sync()
    shutil.copytree(fashion_run, root / "fashion-mnist" / str(MAX_VERSION + 1))
    reloader.sync()
    model = registry.models["fashion-mnist"]
    assert sorted(model.versions) == [1] and registry.resolve("fashion-mnist").number == 1
    status = model.status[MAX_VERSION + 1]
    assert status.state == "END" and "above 9223372036854775807" in status.error
    with pytest.raises(ValueError, match="1 to 2\\^63-1"):
        (root / "models.json").write_text(json.dumps({"models": {"photos": {"version_labels": {"big": 2**63}}}}))
        Repository(root).scan()
    for served in registry.all_versions():
        served.batcher.close()


def test_grpc_needs_the_api_key_and_refuses_tensors_by_their_declared_shape(fashion_run, photo_run, tmp_path):
    """The key guards gRPC as it guards HTTP (probes excepted), and a Predict that declares a huge
    tensor in a few bytes is refused before any array is made."""
    import grpc
    import tensorflow as tf
    import tritonclient.grpc as grpcclient
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    from tritonclient.utils import InferenceServerException

    root = make_repository(tmp_path / "repo", fashion_run, photo_run)
    app, _ = repository_app(root, api_key="s3cret")
    with running_server(app):
        address = f"127.0.0.1:{app.state.grpc_port}"
        client = grpcclient.InferenceServerClient(address)
        assert client.is_server_live() and client.is_server_ready()  # probes: no key
        with pytest.raises(InferenceServerException) as error:
            client.get_model_metadata("fashion-mnist")
        assert error.value.status() == str(grpc.StatusCode.UNAUTHENTICATED)
        metadata = client.get_model_metadata("fashion-mnist", headers={"authorization": "Bearer s3cret"})
        assert metadata.name == "fashion-mnist"
        name = metadata.inputs[0].name
        client.close()
        with grpc.insecure_channel(address) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "fashion-mnist"
            bomb = tf.make_tensor_proto([0.5], dtype=tf.float32)  # one value, declared as 20,000 images
            bomb.tensor_shape.dim[0].size = 20_000
            for size in (28, 28):
                bomb.tensor_shape.dim.add().size = size
            request.inputs[name].CopyFrom(bomb)
            with pytest.raises(grpc.RpcError) as error:
                stub.Predict(request, timeout=30, metadata=[("x-api-key", "s3cret")])
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "20000 instances" in error.value.details()
            bomb.tensor_shape.dim[0].size = 2
            request.inputs[name].CopyFrom(bomb)
            with pytest.raises(grpc.RpcError) as error:
                stub.Predict(request, timeout=30, metadata=[("x-api-key", "s3cret")])
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "declares 1568 values" in error.value.details()


def test_grpc_refuses_repeated_outputs_and_answers_over_max_response_bytes(served):
    """Over gRPC, 8,000 copies of one output made 82 MB and RESOURCE_EXHAUSTED; now a repeat is a
    client mistake, and so is an answer reckoned above max_response_bytes, on both services (#31.8)."""
    import warnings

    import grpc
    import tensorflow as tf
    import tritonclient.grpc as grpcclient
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    from tritonclient.utils import InferenceServerException

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    app = create_app(served["fashion-mnist"], grpc_address="127.0.0.1:0", max_response_bytes=1_400, **SETTINGS)
    with TestClient(app):
        address = f"127.0.0.1:{app.state.grpc_port}"
        client = grpcclient.InferenceServerClient(address)
        name = client.get_model_metadata("apparel").inputs[0].name

        def infer(count, outputs):
            tensor = grpcclient.InferInput(name, [count, 28, 28], "UINT8")
            tensor.set_data_from_numpy(fashion_images(count))
            return client.infer("apparel", [tensor], outputs=[grpcclient.InferRequestedOutput(o) for o in outputs])

        for outputs, message in ((["probabilities"] * 20, "asked for 20 times"), (["scores"], "unknown output")):
            with pytest.raises(InferenceServerException) as error:
                infer(1, outputs)
            assert error.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT) and message in error.value.message()
        with pytest.raises(InferenceServerException) as error:
            infer(16, ["probabilities", "label"])
        assert error.value.status() == str(grpc.StatusCode.INVALID_ARGUMENT) and "max_response_bytes" in error.value.message()
        assert infer(1, ["probabilities", "label"]).as_numpy("probabilities").shape == (1, 10)
        client.close()
        with grpc.insecure_channel(address) as channel:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "apparel"
            request.inputs[name].CopyFrom(tf.make_tensor_proto(fashion_images(16).astype(np.float32)))
            with pytest.raises(grpc.RpcError) as error:
                prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "max_response_bytes" in error.value.details()


def test_a_failed_version_is_tried_again_when_its_config_is_fixed(fashion_run, photo_run, tmp_path):
    """Only a changed model.keras used to bring a failed version back: a fixed config.json was
    never noticed (#31.13). Its status names no server path and holds one line."""
    from apparel import artifacts
    from apparel.contract import CONFIG_KEY

    root = make_repository(tmp_path / "repo", fashion_run, photo_run)
    registry = Registry(ServiceConfig(model_repository=str(root), **SETTINGS), Metrics())
    reloader = Reloader(Repository(root), registry)
    reloader.sync()
    version = root / "photos" / "2"
    shutil.copytree(photo_run, version)
    good = (version / artifacts.CONFIG_FILE).read_text()
    broken = json.loads(good)
    broken[CONFIG_KEY]["colour"] = "rgb"  # a key no contract has
    (version / artifacts.CONFIG_FILE).write_text(json.dumps(broken))
    reloader.sync()
    status = registry.models["photos"].status[2]
    assert status.state == "END" and "unknown input contract key colour" in status.error
    assert str(tmp_path) not in status.error and "\n" not in status.error
    reloader.sync()  # nothing changed: not tried again
    assert sorted(registry.models["photos"].versions) == [1]
    (version / artifacts.CONFIG_FILE).write_text(good)
    reloader.sync()
    assert sorted(registry.models["photos"].versions) == [2] and registry.models["photos"].status[2].state == "AVAILABLE"
    for served in registry.all_versions():
        served.batcher.close()


def test_a_new_model_that_fails_leaves_the_server_ready_and_a_label_on_no_version_is_said(fashion_run, photo_run,
                                                                                         tmp_path):
    """A model dropped in later that failed (or was still loading) took the whole server out of its
    load balancer; a label on a retired version answered 404s with no word; a broken config.json's
    status named no file."""
    from starlette.testclient import TestClient

    root = make_repository(tmp_path / "repo", fashion_run, photo_run)
    registry = Registry(ServiceConfig(model_repository=str(root), **SETTINGS), Metrics())
    reloader = Reloader(Repository(root), registry)
    reloader.sync()
    app = create_app(registry, reloader=None)
    shirts = root / "shirts" / "1"
    shutil.copytree(photo_run, shirts)
    (shirts / "config.json").write_text("{broken")
    reloader.sync()
    assert registry.models["shirts"].status[1].error.startswith("version 1 failed to load: shirts/1/config.json: ")
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert client.get("/v2/health/ready").status_code == 200  # the new model alone is not ready
        assert client.get("/v2/models/shirts/ready").status_code != 200
        # A model the server started with is waited on: with no version, the server is not ready.
        retired = registry.models["fashion-mnist"].versions[1]
        registry.withdraw(retired)
        assert client.get("/v2/health/ready").status_code == 503
        registry.add(retired)
        (root / "models.json").write_text(json.dumps({"models": {"photos": {"version_labels": {"stable": 7}}}}))
        reloader.sync()
        assert "version label 'stable' of photos names version 7, which is not served" in registry.repository_error
        assert "version label 'stable'" in client.get("/v1/models/photos").json()["repository_error"]
    for served in registry.all_versions():
        served.batcher.close()


def test_a_cut_short_model_is_called_damaged_without_the_server_s_paths(fashion_run, photo_run, tmp_path):
    """GET /v1/models/NAME showed …/repo/fashion-mnist/2/model.keras and called a truncated file
    "File not found" (#31.13)."""
    from starlette.testclient import TestClient

    root = make_repository(tmp_path / "repo", fashion_run, photo_run)
    app, _ = repository_app(root)
    version = root / "fashion-mnist" / "2"
    shutil.copytree(fashion_run, version)
    model_file = version / "model.keras"
    model_file.write_bytes(model_file.read_bytes()[: model_file.stat().st_size // 2])
    with TestClient(app, base_url="http://127.0.0.1") as client:
        deadline = time.monotonic() + 20 * POLL + 10
        while "2" not in {item["version"] for item in client.get("/v1/models/fashion-mnist").json()["model_version_status"]
                          if item["state"] == "END"}:
            assert time.monotonic() < deadline, "version 2 was never tried"
            time.sleep(POLL)
        answer = client.get("/v1/models/fashion-mnist").json()
        error = {item["version"]: item for item in answer["model_version_status"]}["2"]["status"]["error_message"]
    assert error.startswith("version 2 failed to load: fashion-mnist/2/model.keras is damaged or cut short")
    assert "File not found" not in error and str(tmp_path) not in error and "\n" not in error
    assert "repository_error" not in answer


def test_a_models_json_nested_too_deeply_is_a_status_and_one_log_line(fashion_run, photo_run, tmp_path, caplog):
    """It stopped the start as "a bug" (RecursionError) and logged a traceback at every poll;
    now it is a clear message, in the models' status and in the log once per change (#31.13)."""
    import logging

    from starlette.testclient import TestClient

    from apparel.serve.app import repository_registry

    root = make_repository(tmp_path / "repo", fashion_run, photo_run)
    (root / "models.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="models.json cannot be read: its JSON is nested too deeply"):
        repository_registry(ServiceConfig(model_repository=str(root), **SETTINGS))
    (root / "models.json").write_text(json.dumps({"models": {"photos": {}}}))
    registry = Registry(ServiceConfig(model_repository=str(root), **SETTINGS), Metrics())
    reloader = Reloader(Repository(root), registry)
    reloader.sync()
    (root / "models.json").write_text("{\"models\": " * 50_000)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="apparel.serve.reload"):
        for _ in range(3):
            reloader.sync()
        app = create_app(registry)
        with TestClient(app, base_url="http://127.0.0.1") as client:
            answer = client.get("/v1/models/photos").json()
        (root / "models.json").write_text(json.dumps({"models": {"photos": {}}}))
        reloader.sync()
    assert answer["repository_error"].startswith("models.json cannot be read: its JSON is nested too deeply")
    assert [item["state"] for item in answer["model_version_status"]] == ["AVAILABLE"]
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None and "nested too deeply" in errors[0].getMessage()
    assert registry.repository_error == "" and "read again" in caplog.records[-1].getMessage()
    for served in registry.all_versions():
        served.batcher.close()


def test_grpc_bytes_that_are_no_message_are_invalid_argument(served):
    """Random bytes, a cut message or a name that is not UTF-8 were UNKNOWN ("Unexpected DecodeError"):
    gRPC parsed them before any handler could say what was wrong."""
    import grpc

    from tritonclient.grpc import service_pb2

    good = service_pb2.ModelInferRequest(model_name="fashion-mnist").SerializeToString()
    with grpc.insecure_channel(served["grpc"]) as channel:
        for method in ("/inference.GRPCInferenceService/ModelInfer", "/inference.GRPCInferenceService/ModelMetadata",
                       "/tensorflow.serving.PredictionService/Predict"):
            call = channel.unary_unary(method, request_serializer=lambda raw: raw, response_deserializer=lambda raw: raw)
            for raw in (b"\xff\xff\xff", good[:-3], b"\x0a\x02\xff\xfe"):
                with pytest.raises(grpc.RpcError) as error:
                    call(raw, timeout=10)
                assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, raw, error.value.details())
                assert f"the request is not a {method} message" in error.value.details()
        # Both kinds of values for one input: which should answer? Refused, as Triton refuses it.
        both = service_pb2.ModelInferRequest(model_name="fashion-mnist", raw_input_contents=[bytes(784)])
        tensor = both.inputs.add(name="images", datatype="UINT8", shape=[1, 28, 28])
        tensor.contents.uint_contents.extend([0] * 784)
        infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer", request_serializer=lambda raw: raw,
                                    response_deserializer=lambda raw: raw)
        with pytest.raises(grpc.RpcError) as error:
            infer(both.SerializeToString(), timeout=10)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "has both contents and raw_input_contents; send one" in error.value.details()
        live = channel.unary_unary("/inference.GRPCInferenceService/ServerLive", request_serializer=lambda raw: raw,
                                   response_deserializer=lambda raw: raw)
        assert live(b"", timeout=10) is not None  # and the server is still up
