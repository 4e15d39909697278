"""Turn HTTP request bodies into model input, rejecting every client mistake with a clear reason.

Kept apart from the FastAPI app so the rules can be read (and tested) on their own:

- ``json_body`` — bytes → a JSON value; malformed JSON is a 400.
- ``instances_to_images`` — TensorFlow Serving's ``instances`` list → the served model's input, as
  its ``InputContract`` says: float32 (N, 28, 28) in [0, 1] for a Fashion-MNIST model, float32
  (N, S, S, 3) with values 0–255 for a photo model. Each instance is an array of that shape or
  ``{"b64": "<base64 image bytes>"}`` (an image file, made into the model's input by the caller's
  ``decode_photo``). Pixel scale is decided per instance: **if any value is above 1 the instance is
  read as 0–255, otherwise as 0–1** (for a 0–255 image whose brightest pixel is 1 the two readings
  differ by less than 1/255). Values must lie in [0, 255]; NaN, infinities, booleans, strings,
  ragged arrays and arrays of the other kind of model (a 28×28 array sent to a photo model, an
  S×S×3 array to a 28×28 model) are rejected with a message saying what to send.
- ``multipart_files`` — a ``multipart/form-data`` body → ``[(filename, bytes), ...]``, parsed in
  memory (the body is already bounded), so nothing from a request is ever written to disk.

    >>> from apparel.serve.payloads import instances_to_images
    >>> instances_to_images([[[0] * 28] * 28]).shape
    (1, 28, 28)
    >>> instances_to_images([[[[0] * 3] * 32] * 32], contract=InputContract("photo", 32, ("a", "b"))).shape
    (1, 32, 32, 3)

Every error is a ``RequestError(status, message)``; the app answers it as ``{"error": message}``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable

import numpy as np

from apparel.contract import FASHION_MNIST, InputContract
from apparel.kinds.base import shape_text


class RequestError(ValueError):
    """A client mistake: the HTTP status to answer and a message saying what to send instead."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def json_body(body: bytes, example: str = '{"instances": [...]}'):
    """The JSON value of a request body (UTF-8/16/32); ``example`` is what the route takes, for
    the message when the body is empty."""
    if not body.strip():
        raise RequestError(400, f"the request body is empty; send a JSON object such as {example}")
    try:
        return json.loads(body)
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        if "integer string conversion" in str(error):  # Python's advice there is for the server, not the client
            raise RequestError(400, "the request body holds a number with thousands of digits; send numbers "
                                    "a pixel or a setting can be") from None
        raise RequestError(400, f"the request body is not valid JSON: {error}") from None
    except RecursionError:
        raise RequestError(400, "the JSON body is nested too deeply") from None


# A JSON true or false as a list element: numpy reads it as 1 or 0 among numbers, so it is looked
# for; this screen of the body keeps the walk over every value for the rare body that may hold one.
LIST_BOOLEAN = re.compile(rb"[\[,]\s*(?:true|false)\b")


def refuse_booleans(value, body: bytes) -> None:
    """A 422 when a JSON boolean lies in a list of ``value``, parsed from ``body``: pixel values
    are numbers, and numpy would silently read true as 1. A boolean as an object's value is a
    setting (``"binary_data": true``), never a pixel, so the walk and the screen agree on lists."""
    if json.detect_encoding(body) == "utf-8" and not ((b"true" in body or b"false" in body)
                                                       and LIST_BOOLEAN.search(body)):
        return
    pending = [(value, False)]
    while pending:
        item, in_list = pending.pop()
        if in_list and (item is True or item is False):
            raise RequestError(422, "pixel values must be numbers (0–1, or 0–255); found true or false")
        if isinstance(item, list):
            pending.extend((element, True) for element in item)
        elif isinstance(item, dict):
            pending.extend((element, False) for element in item.values())


def what_to_send(contract: InputContract) -> str:
    """The instances a model of ``contract`` takes, in words (the start of every shape message)."""
    return contract.model_kind.words(contract).instances


def wrong_shape(shape: tuple[int, ...], contract: InputContract) -> RequestError:
    """The 422 for an array instance of the wrong shape; it names the other kind of model's input."""
    message = f"each instance must be a {shape_text(contract.shape)} array: {what_to_send(contract)}; got {shape_text(shape)}"
    return RequestError(422, message + contract.model_kind.wrong_shape_hint(tuple(shape)))


def array_instance(instance, contract: InputContract = FASHION_MNIST) -> np.ndarray:
    """One array of numbers of the contract's shape (0–1, or 0–255 when any value is above 1) → the
    model's input for it."""
    try:
        array = np.asarray(instance)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise RequestError(422, f"each instance must be a {shape_text(contract.shape)} array of numbers; "
                                "this one is ragged") from None
    return scale_pixels(array[None], contract)[0]


def scale_pixels(batch: np.ndarray, contract: InputContract = FASHION_MNIST) -> np.ndarray:
    """(N, *contract.shape) numbers → the model's input, by the rule every entry point shares
    (``inference.inputs``: [0, 1] for 28×28 models, 0–255 for photo models); a mistake is a 422."""
    if batch.shape[1:] != contract.shape:
        raise wrong_shape(batch.shape[1:], contract)
    try:
        return contract.prepare(batch)
    except ValueError as error:
        raise RequestError(422, f"instance {error}") from None


def instances_to_images(
    instances,
    *,
    contract: InputContract = FASHION_MNIST,
    max_instances: int = 256,
    decode_photo: Callable[[bytes], np.ndarray] | None = None,
) -> np.ndarray:
    """TensorFlow Serving ``instances`` → float32 (N, *contract.shape): the model's input.

    ``decode_photo(image_bytes)`` turns a ``{"b64": ...}`` instance into one input of the
    contract's shape (the photo pipeline); it must raise ``ValueError`` for bytes that are not a
    usable image.
    """
    if not isinstance(instances, list):
        raise RequestError(422, f"\"instances\" must be a list of {shape_text(contract.shape)} arrays "
                                "or {\"b64\": \"<base64 image>\"} objects")
    if not instances:
        raise RequestError(422, "\"instances\" is empty; send at least one image")
    if len(instances) > max_instances:
        raise RequestError(413, f"{len(instances)} instances in one request; the limit is {max_instances}, split the request")
    if not any(isinstance(instance, dict) for instance in instances):
        # The common case, all arrays: one numpy conversion for the whole request.
        try:
            batch = np.asarray(instances)
        except (ValueError, TypeError, OverflowError, RecursionError):
            batch = None  # ragged somewhere: find and name the culprit below
        if batch is not None and batch.ndim == len(contract.shape) + 1:
            return scale_pixels(batch, contract)
    images = []
    for index, instance in enumerate(instances):
        try:
            if isinstance(instance, dict):
                images.append(b64_instance(instance, decode_photo, contract))
            else:
                images.append(array_instance(instance, contract))
        except RequestError as error:
            raise RequestError(error.status, f"instances[{index}]: {error.message}") from None
    return np.stack(images)


def b64_instance(instance: dict, decode_photo: Callable[[bytes], np.ndarray] | None,
                 contract: InputContract = FASHION_MNIST) -> np.ndarray:
    if set(instance) != {"b64"} or not isinstance(instance["b64"], str):
        raise RequestError(422, "an object instance must be {\"b64\": \"<base64-encoded image file>\"} and nothing else")
    try:
        data = base64.b64decode(instance["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(422, "the \"b64\" value is not valid base64") from None
    if not data:
        raise RequestError(422, "the \"b64\" value decodes to no bytes; send an image file")
    if decode_photo is None:
        raise RequestError(422, f"this server takes no image files, only {shape_text(contract.shape)} arrays")
    try:
        image = np.asarray(decode_photo(data), dtype=np.float32)
    except RequestError:
        raise  # the request as a whole is too much: its own status
    except ValueError as error:
        raise RequestError(422, f"the \"b64\" image cannot be used: {error}") from None
    if image.shape != contract.shape:  # a decoder for another kind of model: the server's mistake
        raise RuntimeError(f"decode_photo gave an input of shape {image.shape}, not the model's {contract.shape}")
    return image


def predict_request(payload, *, contract: InputContract = FASHION_MNIST, max_instances: int = 256,
                    decode_photo=None, input_name: str | None = None) -> tuple[str, np.ndarray]:
    """A TensorFlow Serving ``:predict`` body → (response key, images).

    ``{"instances": [...]}`` answers ``{"predictions": ...}``; the columnar ``{"inputs": [...]}``
    (the same list, for this single-input model) answers ``{"outputs": ...}``, and so does its
    named form ``{"inputs": {"<input_name>": [...]}}`` (any one name when ``input_name`` is ``None``).
    """
    if not isinstance(payload, dict):
        raise RequestError(422, "the body must be a JSON object such as {\"instances\": [...]}")
    unknown = sorted(set(payload) - {"instances", "inputs", "signature_name"})
    if unknown:
        raise RequestError(422, f"unknown key {unknown[0]!r}; send {{\"instances\": [...]}} (or \"inputs\")")
    signature = payload.get("signature_name", "serving_default")
    if signature != "serving_default":
        raise RequestError(422, f"unknown signature_name {signature!r}; this model has only \"serving_default\"")
    if ("instances" in payload) == ("inputs" in payload):
        raise RequestError(422, "send exactly one of \"instances\" (row format) or \"inputs\" (columnar format)")
    key, answer = ("instances", "predictions") if "instances" in payload else ("inputs", "outputs")
    instances = payload[key]
    if key == "inputs" and isinstance(instances, dict):
        instances = named_input(instances, input_name)
    if key == "instances" and isinstance(instances, list):
        # The row format may name the input in each instance too: {"<input name>": <instance>}.
        instances = [named_input(item, input_name) if isinstance(item, dict) and len(item) == 1 and "b64" not in item
                     else item for item in instances]
    return answer, instances_to_images(instances, contract=contract, max_instances=max_instances,
                                       decode_photo=decode_photo)


def named_input(inputs: dict, input_name: str | None):
    """The list of TensorFlow Serving's ``{"inputs": {name: [...]}}``: this model has one input."""
    expected = repr(input_name) if input_name else "its name"
    if len(inputs) != 1:
        raise RequestError(422, f"this model has one input, so \"inputs\" must name one ({expected}), "
                                f"not {len(inputs)}; or send {{\"inputs\": [...]}}")
    (name, instances), = inputs.items()
    if input_name is not None and name != input_name:
        raise RequestError(422, f"unknown input {name!r}; this model's input is {input_name!r}")
    return instances


class _MultipartCollector:
    """Callbacks for python-multipart's parser that keep each file part in memory."""

    def __init__(self, max_files: float, max_fields: float):
        self.max_files, self.max_fields = max_files, max_fields
        self.files: list[tuple[str, bytes]] = []
        self.fields = 0
        self.ended = False
        self.open_part = False
        self._headers: dict[bytes, bytes] = {}
        self._data = bytearray()
        self._name = bytearray()
        self._value = bytearray()

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": lambda data, start, end: self._data.extend(data[start:end]),
            "on_part_end": self.on_part_end,
            "on_header_field": lambda data, start, end: self._name.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self.on_header_end,
            "on_end": self.on_end,
        }

    def on_part_begin(self):
        self.open_part, self._headers, self._data = True, {}, bytearray()

    def on_header_end(self):
        self._headers[bytes(self._name).lower()] = bytes(self._value)
        self._name, self._value = bytearray(), bytearray()

    def on_part_end(self):
        from python_multipart.multipart import parse_options_header

        self.open_part = False
        _, disposition = parse_options_header(self._headers.get(b"content-disposition", b""))
        if b"filename" in disposition:
            self.files.append((disposition[b"filename"].decode("utf-8", "replace"), bytes(self._data)))
            if len(self.files) > self.max_files:
                raise RequestError(413, f"more than {self.max_files} files in one upload; the limit is {self.max_files}")
        else:
            self.fields += 1
            if self.fields > self.max_fields:
                raise RequestError(413, f"more than {self.max_fields} form fields; send only the image files")

    def on_end(self):
        self.ended = True


def multipart_files(
    body: bytes, content_type: str, *, max_files: float = float("inf"), max_fields: float = 100
) -> list[tuple[str, bytes]]:
    """The file parts of a ``multipart/form-data`` body, as (filename, content); other fields are
    ignored. More than ``max_files`` files or ``max_fields`` other fields is a 413."""
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise RequestError(400, "the multipart Content-Type has no boundary; let your HTTP client build the form")
    collector = _MultipartCollector(max_files, max_fields)
    try:
        parser = MultipartParser(boundary, collector.callbacks())
        parser.write(body)
        parser.finalize()
    except RequestError:
        raise
    except (FormParserError, ValueError) as error:
        raise RequestError(400, f"malformed multipart body: {error}") from None
    if collector.open_part or not collector.ended:
        raise RequestError(400, "the multipart body is cut short (no closing boundary); send the whole form")
    return collector.files
