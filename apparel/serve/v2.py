"""KServe's Open Inference Protocol (V2) over HTTP, and the tensor rules its gRPC form shares.

    GET  /v2                                              server metadata (name, version, extensions)
    GET  /v2/health/live, /v2/health/ready                (app.py: they predate the other routes)
    GET  /v2/models/<name>[/versions/<v>]                 model metadata: versions, typed inputs, outputs
    GET  /v2/models/<name>[/versions/<v>]/ready           200 when it can answer, 404 otherwise
    POST /v2/models/<name>[/versions/<v>]/infer           typed tensors in, typed tensors out

The one input (named as the metadata says) is ``FP32`` (or another number type) of shape
``[N, 28, 28]`` / ``[N, S, S, 3]`` under the pixel-scale rule of every entry point (0–1, or 0–255
when a value is above 1; ``UINT8`` is always 0–255), or ``BYTES`` of shape ``[N]``: encoded
photo files (base64 strings in JSON; raw bytes in the binary extension and over gRPC). The
outputs are ``probabilities`` (``FP32 [N, classes]``), ``label`` (``BYTES [N]``, the best
class), ``category`` (``BYTES [N]``, each the JSON of the Shopify category chosen from the
probabilities: ``{"id", "gid", "path", "confidence", "reason"}``, or ``null`` for a model whose
classes have no category) and ``color`` (``BYTES [N]``, the JSON of the product's colour,
``{"name", "handle", "gid", "confidence", "second"}``, or ``null`` where the category takes none)
and ``sleeve_length_type`` (``BYTES [N]``, the JSON of the sleeve length the classes tell,
``{"name", "handle", "gid", "confidence"}``, or ``null`` where the category takes none or no length
is sure), each asked for at most once; an answer whose size, reckoned before the model runs, would
pass ``max_response_bytes`` is a 413, and a large one is built on a worker thread. The binary tensor data extension (``Inference-Header-Content-Length``) is supported both
ways: tritonclient uses it by default.

    >>> add_v2_routes(app, registry)
"""

from __future__ import annotations

import base64
import binascii
import json
import struct

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from apparel import __version__
from apparel.attributes import photo_attributes, sleeve_attributes
from apparel.images.fetch import length_header
from apparel.serve.handling import LARGE_BODY, path_parameters, read_body, while_client_waits
from apparel.serve.payloads import RequestError, json_body, refuse_booleans, scale_pixels, shape_text
from apparel.serve.registry import OUTPUT_NAME, Registry, ServedVersion

SERVER_NAME = "apparel"
LABEL_OUTPUT = "label"
CATEGORY_OUTPUT = "category"
COLOR_OUTPUT = "color"
SLEEVE_OUTPUT = "sleeve_length_type"
# The most one category's JSON takes: its id, GID, the longest path of the taxonomy (about 150
# characters), a confidence and a reason, with the keys.
CATEGORY_BYTES = 512
HEADER_LENGTH = "inference-header-content-length"
NUMBER_TYPES = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "UINT8": np.uint8, "UINT16": np.uint16,
                "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64}
TAGS = ["Open Inference Protocol (V2)"]
INFER_EXAMPLE = '{"inputs": [{"name": …, "shape": […], "datatype": …, "data": […]}]}'
OUTPUTS = (OUTPUT_NAME, LABEL_OUTPUT, CATEGORY_OUTPUT, COLOR_OUTPUT, SLEEVE_OUTPUT)
JSON_NUMBER_BYTES = 26  # the longest a float32 takes in a JSON list: "-1.2345678901234567e-05, "
ANSWER_OVERHEAD_BYTES = 1024  # the names, datatypes and shapes around the values
LARGE_ANSWER = LARGE_BODY  # answers from this size on are built on a worker thread


def model_metadata(served: ServedVersion, versions: list[str]) -> dict:
    contract = served.contract
    return {"name": served.name, "versions": versions, "platform": "tensorflow_keras",
            "inputs": [{"name": served.input_name, "datatype": "FP32", "shape": [-1, *contract.shape]}],
            "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, contract.num_classes]},
                        {"name": LABEL_OUTPUT, "datatype": "BYTES", "shape": [-1]},
                        {"name": CATEGORY_OUTPUT, "datatype": "BYTES", "shape": [-1]},
                        {"name": COLOR_OUTPUT, "datatype": "BYTES", "shape": [-1]},
                        {"name": SLEEVE_OUTPUT, "datatype": "BYTES", "shape": [-1]}]}


def byte_elements(raw: bytes) -> list[bytes]:
    """The elements of a binary BYTES tensor: each a 4-byte little-endian length, then its bytes."""
    elements, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise RequestError(422, "a BYTES tensor is cut short: each element is a 4-byte length, then its bytes")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise RequestError(422, "a BYTES element is longer than the data sent")
        elements.append(raw[offset : offset + length])
        offset += length
    return elements


def serialize_bytes(elements: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(element)) + element for element in elements)


def tensor_images(served: ServedVersion, name: str, datatype: str, shape, data, *, max_instances: int,
                  decode_photo) -> np.ndarray:
    """One input tensor → the model's input batch. ``data`` is a numpy array or nested list of
    numbers, or for ``BYTES`` a list of encoded photo files (bytes)."""
    contract = served.contract
    if name != served.input_name:
        raise RequestError(422, f"unknown input {name!r}; this model's one input is {served.input_name!r}")
    if not isinstance(shape, (list, tuple)) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                                       for n in shape) or not shape:
        raise RequestError(422, f"input {name!r}: \"shape\" must be a list of sizes, such as [N, "
                                f"{', '.join(map(str, contract.shape))}]")
    # The shape's own mistakes first: [784], one image's numbers without the batch axis, would read
    # as 784 images and be told it is too many rather than what is wrong with it.
    if datatype == "BYTES" and len(shape) != 1:
        raise RequestError(422, f"a BYTES input holds encoded photo files, shape [N]; got shape {list(shape)}")
    if datatype not in NUMBER_TYPES and datatype != "BYTES":
        raise RequestError(422, f"input {name!r}: datatype {datatype!r} is not taken; send FP32 (or UINT8) pixel "
                                f"values, or BYTES photo files")
    if datatype != "BYTES" and tuple(shape[1:]) != contract.shape:
        raise RequestError(422, f"input {name!r} must have shape [N, {', '.join(map(str, contract.shape))}] "
                                f"({shape_text(contract.shape)} per image), got {list(shape)}")
    if shape[0] > max_instances:
        raise RequestError(413, f"{shape[0]} instances in one request; the limit is {max_instances}, split the request")
    if shape[0] == 0:
        raise RequestError(422, f"input {name!r} is empty; send at least one image")
    if datatype == "BYTES":
        if len(data) != shape[0]:
            raise RequestError(422, f"a BYTES input holds encoded photo files, shape [N]; got shape {list(shape)} "
                                    f"with {len(data)} elements")
        images = []
        for index, photo in enumerate(data):
            try:
                images.append(decode_photo(photo))
            except RequestError:
                raise  # the request as a whole is too much: its own status
            except ValueError as error:
                raise RequestError(422, f"{name}[{index}]: not a usable image: {getattr(error, 'reason', error)}") from None
        return np.stack(images)
    return scale_pixels(typed_array(name, datatype, shape, data), contract)


def typed_array(name: str, datatype: str, shape: list[int], data) -> np.ndarray:
    """The numbers of a tensor as its datatype, in its shape: strings are not numbers (numpy would
    parse "0.5"), and an integer type takes only whole numbers within its range (numpy would wrap
    300 to 44 as UINT8)."""
    dtype = np.dtype(NUMBER_TYPES[datatype])
    count_mistake = RequestError(422, f"input {name!r}: its data must be {int(np.prod(shape)):,} {datatype} numbers, "
                                      "as its shape says")
    try:
        array = np.asarray(data)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise count_mistake from None
    if array.dtype.kind not in "iuf":  # bool, strings, objects (mixed types, huge integers)
        raise RequestError(422, f"input {name!r}: {datatype} data must be numbers, not strings, booleans or nulls")
    if array.dtype != dtype and dtype.kind in "iu" and array.size:
        if array.dtype.kind == "f" and not np.array_equal(array, np.round(array)):
            raise RequestError(422, f"input {name!r}: {datatype} data must be whole numbers; send FP32 for others")
        low, high, limits = array.min(), array.max(), np.iinfo(dtype)
        if low < limits.min or high > limits.max:
            raise RequestError(422, f"input {name!r}: {datatype} values must lie in {limits.min} to {limits.max}, "
                                    f"found {low:g} to {high:g}")
    if array.size != int(np.prod(shape)):
        raise count_mistake
    return array.astype(dtype, copy=False).reshape(shape)


def requested_outputs(names: list[str]) -> list[str]:
    """The outputs a request asks for, in its order (all when it names none), checked before the
    model runs: each must be known and named once, as each entry adds a full copy to the answer."""
    for name in names:
        if name not in OUTPUTS:
            raise RequestError(422, f"unknown output {name!r}; the outputs are {', '.join(OUTPUTS)}")
    for name in OUTPUTS:
        if names.count(name) > 1:
            raise RequestError(422, f"output {name!r} is asked for {names.count(name)} times; name each output once")
    return names or list(OUTPUTS)


def answer_size(served: ServedVersion, count: int, outputs: dict[str, bool], extra: int = 0) -> int:
    """An upper bound, in bytes, of the answer for ``count`` images: ``outputs`` maps each output
    sent to whether its values go as binary; ``extra`` is what else is echoed (the request's id)."""
    names = served.contract.class_names
    size = ANSWER_OVERHEAD_BYTES + extra
    for name, binary in outputs.items():
        if name == OUTPUT_NAME:
            size += count * len(names) * (4 if binary else JSON_NUMBER_BYTES)
        elif name in (CATEGORY_OUTPUT, COLOR_OUTPUT, SLEEVE_OUTPUT):  # a colour's or sleeve's JSON is shorter
            size += count * (CATEGORY_BYTES + 4 if binary else 2 * CATEGORY_BYTES)  # JSON inside JSON: escaped
        else:
            size += count * max((len(label.encode()) + 4) if binary else len(json.dumps(label)) + 2 for label in names)
    return size


def check_answer_size(size: int, limit: int) -> None:
    if size > limit:
        raise RequestError(413, f"the answer would take up to {size:,} bytes; the limit (max_response_bytes) is "
                                f"{limit:,}: send fewer instances, or ask for fewer outputs")


def output_tensors(served: ServedVersion, probabilities: np.ndarray, names: list[str],
                   images: np.ndarray | None = None) -> list[tuple]:
    """(name, datatype, shape, values) of each output of ``names`` (from ``requested_outputs``):
    numbers as float32 arrays, labels, categories, colours and sleeve lengths as lists of UTF-8
    bytes. The colour is read from ``images``, the model inputs, the sleeve length from the
    probabilities; ``null`` where the category takes none."""
    tensors = []
    chooser = served.categories
    decisions = (chooser.choose_all(probabilities) if chooser is not None else [None] * len(probabilities))
    categories = [None if decision is None else decision.to_dict() for decision in decisions]
    for name in names:
        if name == OUTPUT_NAME:
            values = np.asarray(probabilities, dtype=np.float32)
            tensors.append((name, "FP32", list(values.shape), values))
        elif name == CATEGORY_OUTPUT:
            values = [json.dumps(category, separators=(",", ":")).encode() for category in categories]
            tensors.append((name, "BYTES", [len(values)], values))
        elif name == COLOR_OUTPUT:
            fields = (photo_attributes(images, categories)
                      if images is not None and served.contract.model_kind.reads_colour_photos else [{}] * len(categories))
            values = [json.dumps(field.get("color"), separators=(",", ":")).encode() for field in fields]
            tensors.append((name, "BYTES", [len(values)], values))
        elif name == SLEEVE_OUTPUT:
            fields = sleeve_attributes(probabilities, chooser, categories)
            values = [json.dumps(field.get(SLEEVE_OUTPUT), separators=(",", ":")).encode() for field in fields]
            tensors.append((name, "BYTES", [len(values)], values))
        else:
            classes = served.contract.class_names
            labels = [classes[index].encode() for index in probabilities.argmax(axis=-1)]
            tensors.append((name, "BYTES", [len(labels)], labels))
    return tensors


def answers_slowly(served: ServedVersion, size: int, outputs) -> bool:
    """Whether building an answer of ``size`` bytes with ``outputs`` takes long enough to belong
    on a worker thread, not the event loop every other request waits on: a large answer, or
    colours, which read each photo's pixels (a few milliseconds a photo)."""
    return size >= LARGE_ANSWER or (COLOR_OUTPUT in outputs and served.contract.model_kind.reads_colour_photos)


def parse_infer_body(body: bytes, header_length: str | None):
    """The JSON of an infer request and its binary part (empty without the extension)."""
    if header_length is None:
        head, binary = body, b""
    else:
        length = length_header(header_length)
        if length is None or length > len(body):
            shown = header_length if len(header_length) <= 40 else f"{header_length[:40]}…"
            raise RequestError(400, f"Inference-Header-Content-Length {shown!r} is not a length within the body")
        head, binary = body[:length], body[length:]
        if not head.strip():
            raise RequestError(400, f"Inference-Header-Content-Length {header_length!r} leaves no JSON before the "
                                    "binary data; give the length of the JSON part")
    request = json_body(head, INFER_EXAMPLE)
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list) or len(request["inputs"]) != 1:
        raise RequestError(422, "the body must be {\"inputs\": [one tensor {\"name\", \"shape\", \"datatype\", "
                                "\"data\"}]}: the model has one input")
    check_structure(request)
    tensor = request["inputs"][0]
    if isinstance(tensor, dict) and tensor.get("datatype") != "BYTES":
        refuse_booleans(tensor.get("data"), head)
    return request, binary


def check_structure(request: dict) -> None:
    """The parts of a request read as objects and names are objects and names (a 422 otherwise,
    before the model runs): ``parameters`` objects, a tensor's ``name`` and ``datatype`` strings,
    ``outputs`` a list of objects with string names, the ``id`` a string, the binary flags true or false."""
    def is_object(value) -> bool:
        return value is None or isinstance(value, dict)

    def is_flag(parameters, name: str) -> bool:  # null, as any optional field may be, is "not given"
        value = parameters.get(name) if isinstance(parameters, dict) else None
        return value is None or isinstance(value, bool)

    tensor = request["inputs"][0]
    outputs = request.get("outputs")
    if outputs is not None and not (isinstance(outputs, list) and all(isinstance(o, dict) for o in outputs)):
        raise RequestError(422, "\"outputs\" must be a list of {\"name\": …} objects")
    problems = [
        # Echoed back in the answer: a number there could be NaN or 1e999, which JSON cannot carry.
        request.get("id") is not None and not isinstance(request["id"], str)
        and "the request's \"id\" must be a string (or null)",
        not is_flag(request.get("parameters"), "binary_data_output")
        and "\"binary_data_output\" must be true or false",
        any(not is_flag(output.get("parameters"), "binary_data") for output in outputs or ())
        and "an output's \"binary_data\" must be true or false",
        not is_object(request.get("parameters")) and "the request's \"parameters\" must be an object",
        isinstance(tensor, dict) and not is_object(tensor.get("parameters")) and "an input's \"parameters\" must be an object",
        isinstance(tensor, dict) and not all(isinstance(tensor.get(key), str) for key in ("name", "datatype"))
        and "an input's \"name\" and \"datatype\" must be strings",
        any(not isinstance(output.get("name"), str) or not is_object(output.get("parameters")) for output in outputs or ())
        and "each output must have a string \"name\" and an object of \"parameters\"",
    ]
    problem = next((problem for problem in problems if problem), None)
    if problem:
        raise RequestError(422, problem)


def infer_input(tensor, binary: bytes):
    """(name, datatype, shape, data) of the one input tensor, from its JSON ``data`` or its bytes."""
    if not isinstance(tensor, dict):
        raise RequestError(422, "an input tensor must be an object with \"name\", \"shape\", \"datatype\", \"data\"")
    name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
    size = (tensor.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size != len(binary):
            raise RequestError(422, f"input {name!r}: binary_data_size {size!r} does not match the {len(binary):,} "
                                    "bytes after the JSON header")
        return name, datatype, shape, raw_tensor_data(name, datatype, binary)
    if "data" not in tensor:
        raise RequestError(422, f"input {name!r} has no \"data\"")
    data = tensor["data"]
    if datatype == "BYTES":
        try:
            return name, datatype, shape, [base64.b64decode(item, validate=True) for item in data]
        except (TypeError, binascii.Error, ValueError):
            raise RequestError(422, f"input {name!r}: BYTES data in JSON must be base64 strings of photo files") from None
    return name, datatype, shape, data


def raw_tensor_data(name: str, datatype: str, raw: bytes):
    """The values of a tensor sent as bytes (HTTP's binary extension, gRPC's ``raw_input_contents``):
    numbers little-endian, ``BYTES`` elements each behind its 4-byte length."""
    if datatype == "BYTES":
        return byte_elements(raw)
    if datatype not in NUMBER_TYPES:
        raise RequestError(422, f"input {name!r}: datatype {datatype!r} is not taken; send FP32, UINT8 or BYTES")
    try:
        return np.frombuffer(raw, dtype=np.dtype(NUMBER_TYPES[datatype]).newbyteorder("<"))
    except ValueError:
        raise RequestError(422, f"input {name!r}: {len(raw):,} bytes are not whole {datatype} numbers") from None


def output_choice(request: dict) -> dict[str, bool]:
    """Each output a request asks for (its structure checked by check_structure) → whether its
    values go as binary."""
    outputs = request.get("outputs") or []
    binary_default = bool((request.get("parameters") or {}).get("binary_data_output", False))
    given = {output["name"]: output.get("parameters") or {} for output in outputs}
    return {name: bool(given.get(name, {}).get("binary_data", binary_default))
            for name in requested_outputs([output["name"] for output in outputs])}


def infer_response(served: ServedVersion, request: dict, outputs: dict[str, bool], probabilities: np.ndarray,
                   images: np.ndarray | None = None) -> Response:
    answer = {"model_name": served.name, "model_version": served.label, "outputs": []}
    if "id" in request:
        answer["id"] = request["id"]
    chunks = []
    for name, datatype, shape, values in output_tensors(served, probabilities, list(outputs), images):
        tensor = {"name": name, "datatype": datatype, "shape": shape}
        if outputs[name]:
            raw = serialize_bytes(values) if datatype == "BYTES" else values.astype("<f4").tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = [value.decode() for value in values] if datatype == "BYTES" else values.ravel().tolist()
        answer["outputs"].append(tensor)
    head = json.dumps(answer).encode()
    if not chunks:
        return Response(head, media_type="application/json")
    return Response(head + b"".join(chunks), media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(head))})


def add_v2_routes(app: FastAPI, registry: Registry) -> None:
    config = registry.config

    def versions_of(name: str) -> list[str]:
        return [served.label for _, served in sorted(registry.find(name).versions.items())]

    @app.get("/v2", tags=TAGS, summary="Server metadata")
    async def server_metadata():
        return {"name": SERVER_NAME, "version": __version__, "extensions": ["binary_tensor_data"]}

    @app.get("/v2/models/{name}", tags=TAGS, summary="Model metadata: versions, typed input and outputs")
    async def metadata(name: str):
        return model_metadata(registry.resolve(name), versions_of(name))

    @app.get("/v2/models/{name}/versions/{version}", tags=TAGS, summary="Metadata of one version")
    async def metadata_version(name: str, version: str):
        return model_metadata(registry.resolve(name, version), versions_of(name))

    @app.get("/v2/models/{name}/ready", tags=TAGS, summary="Whether the model can answer")
    async def ready(name: str):
        return {"name": registry.resolve(name).name, "ready": True}

    @app.get("/v2/models/{name}/versions/{version}/ready", tags=TAGS, summary="Whether the version can answer")
    async def ready_version(name: str, version: str):
        return {"name": registry.resolve(name, version).name, "ready": True}

    async def infer(request: Request) -> Response:
        name = request.path_params["name"]
        registry.find(name)
        body = await read_body(request, config.max_body_bytes)
        served = registry.resolve(name, request.path_params.get("version"))
        with registry.holding(served, "v2", bytes=len(body)):
            return await registry.within_deadline(
                while_client_waits(request, answer(served, body, request.headers.get(HEADER_LENGTH))))

    async def answer(served: ServedVersion, body: bytes, header_length: str | None) -> Response:
        # A large body's JSON is parsed and walked on a worker thread. The parse itself holds the GIL
        # (about a second for 15 MB of numbers here), so other requests still wait for that part.
        request, binary = (await run_in_threadpool(parse_infer_body, body, header_length) if len(body) >= LARGE_BODY
                           else parse_infer_body(body, header_length))
        outputs = output_choice(request)
        name, datatype, shape, data = infer_input(request["inputs"][0], binary)

        arguments = dict(max_instances=config.max_instances, decode_photo=served.photo_decoder(config))
        if datatype == "BYTES" or len(body) >= LARGE_BODY:  # decoding photos, or a large array: off the loop
            images = await run_in_threadpool(tensor_images, served, name, datatype, shape, data, **arguments)
        else:
            images = tensor_images(served, name, datatype, shape, data, **arguments)
        size = answer_size(served, len(images), outputs, len(json.dumps(request["id"])) if "id" in request else 0)
        check_answer_size(size, config.max_response_bytes)
        probabilities = await served.batcher.predict(images)
        if answers_slowly(served, size, outputs):
            return await run_in_threadpool(infer_response, served, request, outputs, probabilities, images)
        return infer_response(served, request, outputs, probabilities, images)

    app.add_api_route("/v2/models/{name}/infer", infer, methods=["POST"], tags=TAGS,
                      summary="Inference on typed tensors", openapi_extra=path_parameters("name"))
    app.add_api_route("/v2/models/{name}/versions/{version}/infer", infer, methods=["POST"], tags=TAGS,
                      summary="Inference with one version", openapi_extra=path_parameters("name", "version"))
