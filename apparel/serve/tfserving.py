"""TensorFlow Serving's REST API for every model of the registry, by name, version or label.

    GET  /v1/models/<name>[/versions/<v>|/labels/<l>]             status of its versions
    GET  /v1/models/<name>[/versions/<v>|/labels/<l>]/metadata    signature (input shape and dtype,
                                                                  output classes), version, accuracy
    POST /v1/models/<name>[/versions/<v>|/labels/<l>]:predict     {"instances": […]} or {"inputs": …}
    POST /v1/models/<name>[/versions/<v>|/labels/<l>]:classify    {"examples": [{"<input>": …}]}

``<name>`` ``apparel`` is the default model (the one name earlier clients knew). An instance is an
array of the model's input shape or ``{"b64": "<image file>"}`` (``payloads``). The same
signature serves TF Serving's gRPC ``GetModelMetadata`` (``signature_def``).

    >>> add_tfserving_routes(app, registry)
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from apparel.contract import InputContract
from apparel.serve.config import ServiceConfig
from apparel.serve.handling import LARGE_BODY, path_parameters, read_body, require_content_type, while_client_waits
from apparel.serve.payloads import (RequestError, instances_to_images, json_body, named_input, predict_request,
                                    refuse_booleans, shape_text)
from apparel.serve.registry import OUTPUT_NAME, Registry, ServedModel, ServedVersion

SIGNATURE = "serving_default"
TAGS = ["TensorFlow Serving"]


def input_range(contract: InputContract) -> str:
    return contract.model_kind.words(contract).pixel_range


def has_photos(payload, max_instances: int) -> bool:
    """Whether a :predict body holds ``{"b64": ...}`` instances (checked only within the limit)."""
    if not isinstance(payload, dict):
        return False
    instances = payload.get("instances", payload.get("inputs", payload.get("examples")))
    return isinstance(instances, list) and len(instances) <= max_instances and any(
        isinstance(instance, dict) for instance in instances)


def signature_def(served: ServedVersion) -> dict:
    """TF Serving's ``SignatureDefMap`` of a version, in its JSON form (``json_format`` reads it
    into the protobuf for gRPC)."""
    def tensor(name: str, shape: list[int]) -> dict:
        return {"name": name, "dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": str(n)} for n in shape]}}

    contract = served.contract
    return {"signature_def": {SIGNATURE: {
        "inputs": {served.input_name: tensor(served.input_name, [-1, *contract.shape])},
        "outputs": {OUTPUT_NAME: tensor(OUTPUT_NAME, [-1, contract.num_classes])},
        "method_name": "tensorflow/serving/predict"}}}


def version_status(model: ServedModel, only: ServedVersion | None = None, repository_error: str = "") -> dict:
    """TF Serving's ``GetModelStatusResponse`` in JSON: each version's state and its load error;
    with ``repository_error`` (a ``models.json`` that cannot be used), that too."""
    # TF Serving's versions are int64 (JSON strings of one), as gRPC answers them: a single run
    # directory's is 1, its digest being the metadata's model_version.
    statuses = []
    for number, status in sorted(model.status.items()):
        if only is not None and number != only.number:
            continue
        statuses.append({"version": str(number), "state": status.state,
                         "status": {"error_code": "UNKNOWN" if status.error else "OK",
                                    "error_message": status.error}})
    answer = {"model_version_status": statuses}
    if repository_error:
        answer["repository_error"] = repository_error
    return answer


def predict_body_doc(contract: InputContract) -> dict:
    """OpenAPI documentation of the :predict body, which the handler reads itself (it parses the
    raw body, for speed and to enforce the limits before anything is decoded)."""
    words = contract.model_kind.words(contract)
    instance, example = words.instance, words.example
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"type": "object", "properties": {
            "instances": {"type": "array", "items": {}, "description": "each " + instance},
            "inputs": {"type": "array", "items": {}, "description": "columnar form of the same list"},
            "signature_name": {"type": "string", "enum": [SIGNATURE]}}},
        "example": example}}}}


def classify_request(payload, served: ServedVersion, max_instances: int, decode_photo) -> np.ndarray:
    """A ``:classify`` body (``{"examples": [{"<feature>": instance}, …]}``, each example one
    feature: the model's one input) → its images."""
    if not isinstance(payload, dict) or "examples" not in payload or set(payload) - {"examples", "context",
                                                                                      "signature_name"}:
        raise RequestError(422, "the body must be {\"examples\": [{\"" + served.input_name + "\": <instance>}, …]}")
    if payload.get("signature_name", SIGNATURE) != SIGNATURE:
        raise RequestError(422, f"unknown signature_name {payload['signature_name']!r}; this model has only {SIGNATURE!r}")
    examples = payload["examples"]
    if not isinstance(examples, list) or not all(isinstance(example, dict) and len(example) == 1 for example in examples):
        raise RequestError(422, f"\"examples\" must be a list of objects of one feature, the model's input "
                                f"{served.input_name!r}: an array or {{\"b64\": …}}")
    instances = [named_input(example, served.input_name) for example in examples]  # its name checked too
    return instances_to_images(instances, contract=served.contract, max_instances=max_instances,
                               decode_photo=decode_photo)


def rest_photo_decoder(served: ServedVersion, config: ServiceConfig) -> Callable[[bytes], np.ndarray]:
    """The request's photo decoder (``ServedVersion.photo_decoder``), its errors named as the
    payload knows the photo (the instance), not as "<N bytes>"."""
    decode_one = served.photo_decoder(config)

    def decode(data: bytes) -> np.ndarray:
        try:
            return decode_one(data)
        except RequestError:
            raise  # the request as a whole is too much: its own status
        except ValueError as error:
            raise ValueError(getattr(error, "reason", str(error))) from None
    return decode


async def rest_answer(served: ServedVersion, body: bytes, verb: str, config: ServiceConfig) -> Response:
    """The answer of ``:predict`` or ``:classify`` (``verb``) to a JSON body."""
    decode = rest_photo_decoder(served, config)

    def parse(payload=None):
        payload = json_body(body) if payload is None else payload
        refuse_booleans(payload, body)
        if verb == "classify":
            return "results", classify_request(payload, served, config.max_instances, decode)
        return predict_request(payload, contract=served.contract, max_instances=config.max_instances,
                               decode_photo=decode, input_name=served.input_name)

    if len(body) >= LARGE_BODY:  # parsing takes a while: keep the event loop free for others
        key, images = await run_in_threadpool(parse)
    else:
        payload = json_body(body)
        if has_photos(payload, config.max_instances):  # decoding photos takes milliseconds
            key, images = await run_in_threadpool(parse, payload)
        else:
            key, images = parse(payload)
    probabilities = await served.batcher.predict(images)
    if key == "results":
        ranked = served.predictor.top_k(probabilities, served.contract.num_classes)
        return Response(json.dumps({"results": [[[label, p] for label, p in row] for row in ranked]}),
                        media_type="application/json")
    return Response(json.dumps({key: probabilities.tolist()}), media_type="application/json")


def add_tfserving_routes(app: FastAPI, registry: Registry, doc_contract: InputContract) -> None:
    """The routes above; ``doc_contract`` (the default model's) documents the body in OpenAPI."""
    add_prediction_routes(app, registry, doc_contract)
    add_status_routes(app, registry)


def add_prediction_routes(app: FastAPI, registry: Registry, doc_contract: InputContract) -> None:
    """``:predict`` and ``:classify``, of the default version, a numbered one or a labelled one."""
    config = registry.config

    async def run(request: Request, verb: str) -> Response:
        path = request.path_params  # name, and version or label when the route has them
        registry.find(path["name"])  # an unknown model is a 404 before its body is read
        require_content_type(request, "application/json")
        body = await read_body(request, config.max_body_bytes)
        served = registry.resolve(path["name"], path.get("version"), path.get("label"))
        with registry.holding(served, "rest", bytes=len(body)):
            return await registry.within_deadline(while_client_waits(request, rest_answer(served, body, verb, config)))

    async def predict(request: Request):
        return await run(request, "predict")

    async def classify(request: Request):
        return await run(request, "classify")

    body_doc = predict_body_doc(doc_contract)
    for route, parameters, summary in (
            ("/v1/models/{name}", ("name",), f"Class probabilities for {shape_text(doc_contract.shape)} arrays (the "
                                             "default model's) or base64 images (TensorFlow Serving REST)"),
            ("/v1/models/{name}/versions/{version}", ("name", "version"), "Predict with one version"),
            ("/v1/models/{name}/labels/{label}", ("name", "label"), "Predict with a labelled version")):
        app.add_api_route(route + ":predict", predict, methods=["POST"], tags=TAGS, summary=summary,
                          openapi_extra={**body_doc, **path_parameters(*parameters)})
        app.add_api_route(route + ":classify", classify, methods=["POST"], tags=TAGS,
                          openapi_extra=path_parameters(*parameters),
                          summary="The classes of each example, best first (TensorFlow Serving :classify)")



VERBS = (":predict", ":classify")


def add_status_routes(app: FastAPI, registry: Registry) -> None:
    """Status and metadata, of a model, a numbered version or a labelled one."""

    # A status path's last part also matches the POST routes' ("apparel:predict", "1:classify"):
    # asked with GET, they get a 405 that names what they take, not "no model 'apparel:predict'".
    def refuse_verb(last: str) -> None:
        if last.endswith(VERBS):
            raise HTTPException(405, f"{last.rsplit(':', 1)[1]} takes POST with a JSON body", headers={"Allow": "POST"})

    @app.get("/v1/models/{name}", tags=TAGS, summary="Status of every version")
    async def status(name: str):
        refuse_verb(name)
        return version_status(registry.find(name), repository_error=registry.repository_error)

    @app.get("/v1/models/{name}/versions/{version}", tags=TAGS, summary="Status of one version")
    async def status_version(name: str, version: str):
        refuse_verb(version)
        return version_status(registry.find(name), registry.resolve(name, version), registry.repository_error)

    @app.get("/v1/models/{name}/labels/{label}", tags=TAGS, summary="Status of a labelled version")
    async def status_label(name: str, label: str):
        refuse_verb(label)
        return version_status(registry.find(name), registry.resolve(name, label=label), registry.repository_error)

    # POSTed with another verb (":predct"), the status paths answered 405 "Allow: GET", as if
    # POST were the mistake. Added after the prediction routes, which match first.
    async def unknown_verb(request: Request):
        last = request.url.path.rsplit("/", 1)[-1]
        if ":" in last:
            raise HTTPException(404, f"unknown verb :{last.rsplit(':', 1)[1]}; POST takes :predict or :classify")
        raise HTTPException(405, "a model's status is read with GET; predict with POST to …:predict",
                            headers={"Allow": "GET"})

    for route in ("/v1/models/{name}", "/v1/models/{name}/versions/{version}", "/v1/models/{name}/labels/{label}"):
        app.add_api_route(route, unknown_verb, methods=["POST"], include_in_schema=False)

    @app.get("/v1/models/{name}/metadata", tags=TAGS, summary="Signature, classes, version, accuracy")
    async def metadata(name: str):
        return model_metadata(registry, registry.resolve(name))

    @app.get("/v1/models/{name}/versions/{version}/metadata", tags=TAGS, summary="Metadata of one version")
    async def metadata_version(name: str, version: str):
        return model_metadata(registry, registry.resolve(name, version))

    @app.get("/v1/models/{name}/labels/{label}/metadata", tags=TAGS, summary="Metadata of a labelled version")
    async def metadata_label(name: str, label: str):
        return model_metadata(registry, registry.resolve(name, label=label))


def model_metadata(registry: Registry, served: ServedVersion) -> dict:
    """TF Serving's ``GetModelMetadataResponse`` (``model_spec``, ``metadata.signature_def``), and
    beside it what a person needs: classes, input, preprocessing, accuracy, the limits."""
    contract, description = served.contract, served.description
    return {
        "model_spec": {"name": served.name, "signature_name": SIGNATURE, "version": str(served.number)},
        "metadata": {"signature_def": signature_def(served)},
        "input_name": served.input_name,  # the name of TensorFlow Serving's {"inputs": {name: [...]}}
        "kind": contract.kind,  # "fashion-mnist" (28×28 grayscale) or "photo" (S×S RGB)
        "class_names": list(contract.class_names),
        "input_shape": list(contract.shape),
        "input_range": input_range(contract),
        "preprocessing": contract.describe(),
        "model_version": description["version"],  # the digest of the model file
        "accuracy": description["accuracy"],  # held out: on the split below
        "accuracy_split": description["accuracy_split"],
        "test_accuracy": description["test_accuracy"],
        "validation_accuracy": description["validation_accuracy"],
        "model": description["model"],
        "parameters": description["parameters"],
        "limits": registry.config.limits(),
    }
