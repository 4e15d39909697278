"""gRPC: the Open Inference Protocol's ``GRPCInferenceService`` and TensorFlow Serving's
``PredictionService`` (``Predict``, ``GetModelMetadata``), on one port, on the app's event loop.

The message types are the published ``.proto`` definitions as their registry packages ship them
compiled: ``tritonclient[grpc]`` (``tritonclient.grpc.service_pb2``, KServe's
``grpc_predict_v2.proto`` as Triton extends it) and ``tensorflow-serving-api`` (installed with
``--no-deps`` beside ``tensorflow-cpu``). Requests go through the same registry, batcher, limits
and deadline as HTTP; a client mistake is ``INVALID_ARGUMENT`` (``NOT_FOUND`` for an unknown model
or version), a full service ``RESOURCE_EXHAUSTED`` — gRPC's own answer, too, past
``max_concurrent_requests`` calls at once or a message over ``max_body_bytes``. An answer that
would pass ``max_response_bytes`` is refused (``INVALID_ARGUMENT``) before the model runs.

    >>> server, port = await start_grpc_server(registry, "127.0.0.1:0")   # in the app's lifespan
    >>> await server.stop(grace=10)
"""

from __future__ import annotations

import asyncio
import functools

import numpy as np

from apparel import __version__
from apparel.serve.batching import Overloaded
from apparel.serve.payloads import RequestError
from apparel.serve.registry import OUTPUT_NAME, Registry, ServedVersion
from apparel.serve.security import key_refusal
from apparel.serve.tfserving import SIGNATURE, signature_def
from apparel.serve.v2 import (SERVER_NAME, answer_size, answers_slowly, check_answer_size, model_metadata,
                              output_tensors, raw_tensor_data, requested_outputs, serialize_bytes, tensor_images)

INSTALL_HINT = ("gRPC needs the protocol stubs of tritonclient[grpc] and tensorflow-serving-api: "
                ".venv/bin/pip install 'tritonclient[grpc]' && .venv/bin/pip install --no-deps tensorflow-serving-api")
# Where each datatype's values lie in an InferTensorContents message (the non-raw form).
CONTENTS_FIELDS = {"FP32": "fp32_contents", "FP64": "fp64_contents", "UINT8": "uint_contents",
                   "UINT16": "uint_contents", "INT8": "int_contents", "INT16": "int_contents",
                   "INT32": "int_contents", "INT64": "int64_contents", "BYTES": "bytes_contents"}


def status_code(error: Exception):
    import grpc

    if isinstance(error, Overloaded):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if isinstance(error, RequestError) and error.status == 404:
        return grpc.StatusCode.NOT_FOUND
    return grpc.StatusCode.INVALID_ARGUMENT


def answering_errors(method):
    """Client mistakes and overload as gRPC statuses with the message HTTP would give."""
    @functools.wraps(method)
    async def call(self, request, context):
        try:
            return await method(self, request, context)
        except (RequestError, Overloaded) as error:
            await context.abort(status_code(error), getattr(error, "message", str(error)))
    return call


class Predictions:
    """What both services share: resolve, hold the version, decode off the loop, batch."""

    def __init__(self, registry: Registry):
        self.registry = registry

    async def run(self, served: ServedVersion, message_bytes: int, name: str, datatype: str, shape, data,
                  outputs: dict[str, bool], answer, echoed: int = 0):
        """The answer ``answer(served, probabilities, images)`` builds, once its size (``outputs`` and
        ``echoed`` as ``v2.answer_size`` takes them) is known to be within the limit; a large one,
        or one with colours, is built on a worker thread (``v2.answers_slowly``)."""
        config = self.registry.config
        with self.registry.holding(served, "grpc", bytes=message_bytes):
            async def work():
                arguments = dict(max_instances=config.max_instances, decode_photo=served.photo_decoder(config))
                if datatype == "BYTES":
                    images = await asyncio.to_thread(tensor_images, served, name, datatype, shape, data, **arguments)
                else:
                    images = tensor_images(served, name, datatype, shape, data, **arguments)
                size = answer_size(served, len(images), outputs, echoed)
                check_answer_size(size, config.max_response_bytes)
                probabilities = await served.batcher.predict(images)
                if answers_slowly(served, size, outputs):
                    return await asyncio.to_thread(answer, served, probabilities, images)
                return answer(served, probabilities, images)

            return await self.registry.within_deadline(work())


def inference_service(registry: Registry):
    """The Open Inference Protocol's ``GRPCInferenceService`` (the calls a client of a model
    needs; the repository, configuration and statistics calls answer UNIMPLEMENTED)."""
    from tritonclient.grpc import service_pb2 as pb, service_pb2_grpc as rpc

    predictions = Predictions(registry)

    def infer_response(served: ServedVersion, probabilities: np.ndarray, images: np.ndarray, *, names: list[str],
                       request_id: str):
        response = pb.ModelInferResponse(model_name=served.name, model_version=served.label, id=request_id)
        for name, datatype, shape, values in output_tensors(served, probabilities, names, images):
            response.outputs.add(name=name, datatype=datatype, shape=shape)
            response.raw_output_contents.append(serialize_bytes(values) if datatype == "BYTES"
                                                else values.astype("<f4").tobytes())
        return response

    class InferenceService(rpc.GRPCInferenceServiceServicer):
        async def ServerLive(self, request, context):
            return pb.ServerLiveResponse(live=True)

        async def ServerReady(self, request, context):
            ready = registry.ready and not registry.unavailable()
            return pb.ServerReadyResponse(ready=ready)

        async def ModelReady(self, request, context):
            try:
                registry.resolve(request.name, request.version or None)
            except RequestError:
                return pb.ModelReadyResponse(ready=False)
            return pb.ModelReadyResponse(ready=True)

        async def ServerMetadata(self, request, context):
            return pb.ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=[])

        @answering_errors
        async def ModelMetadata(self, request, context):
            served = registry.resolve(request.name, request.version or None)
            versions = [other.label for _, other in sorted(registry.find(request.name).versions.items())]
            metadata = model_metadata(served, versions)
            tensors = lambda items: [pb.ModelMetadataResponse.TensorMetadata(**item) for item in items]
            return pb.ModelMetadataResponse(name=metadata["name"], versions=versions, platform=metadata["platform"],
                                            inputs=tensors(metadata["inputs"]), outputs=tensors(metadata["outputs"]))

        @answering_errors
        async def ModelInfer(self, request, context):
            served = registry.resolve(request.model_name, request.model_version or None)
            if len(request.inputs) != 1:
                raise RequestError(422, f"the model has one input, {served.input_name!r}; got {len(request.inputs)}")
            tensor = request.inputs[0]
            names = requested_outputs([output.name for output in request.outputs])
            data = v2_input_data(tensor, request.raw_input_contents)
            return await predictions.run(served, request.ByteSize(), tensor.name, tensor.datatype, list(tensor.shape),
                                         data, dict.fromkeys(names, True),
                                         functools.partial(infer_response, names=names, request_id=request.id),
                                         echoed=len(request.id.encode()))

    return InferenceService(), rpc.add_GRPCInferenceServiceServicer_to_server


def v2_input_data(tensor, raw_contents):
    """The values of an input tensor: from ``raw_input_contents`` (what tritonclient sends; every
    datatype HTTP's binary extension takes, FP16 too) or from its typed ``contents``."""
    if raw_contents:
        if len(raw_contents) != 1:
            raise RequestError(422, "raw_input_contents must hold one entry, for the one input")
        if tensor.contents.ByteSize():  # which would answer? Triton refuses the two together too
            raise RequestError(422, f"input {tensor.name!r} has both contents and raw_input_contents; send one")
        return raw_tensor_data(tensor.name, tensor.datatype, raw_contents[0])
    if tensor.datatype not in CONTENTS_FIELDS:
        raise RequestError(422, f"input {tensor.name!r}: datatype {tensor.datatype!r} is not taken in contents; "
                                "send FP32, UINT8 or BYTES there, or any datatype HTTP takes as raw_input_contents")
    own = CONTENTS_FIELDS[tensor.datatype]
    # Values in another field than the datatype's were read as none at all.
    strays = sorted({field.name for field, _ in tensor.contents.ListFields()} - {own})
    if strays:
        raise RequestError(422, f"input {tensor.name!r}: {tensor.datatype} values go in contents.{own}; got "
                                f"{', '.join(strays)}")
    values = getattr(tensor.contents, own)
    return list(values) if tensor.datatype == "BYTES" else np.asarray(values)


# Where a TensorProto keeps each dtype's values when they are not in tensor_content. TensorFlow
# reads only that field and fills the declared size from it: values sent in another field were
# read as zeros, and a black photo answered.
VALUE_FIELDS = {"DT_FLOAT": "float_val", "DT_DOUBLE": "double_val", "DT_HALF": "half_val", "DT_BFLOAT16": "half_val",
                "DT_UINT8": "int_val", "DT_UINT16": "int_val", "DT_INT8": "int_val", "DT_INT16": "int_val",
                "DT_INT32": "int_val", "DT_INT64": "int64_val", "DT_UINT32": "uint32_val", "DT_UINT64": "uint64_val",
                "DT_STRING": "string_val"}


def check_declared_tensor(proto, served: ServedVersion, max_instances: int, string_type: int) -> None:
    """Refuse a TensorProto by its declared shape before it is made an array: TensorFlow fills a
    few values (or none) out to the declared size, so 40 bytes could ask for gigabytes. Its values
    must lie where its dtype keeps them, in one place."""
    from tensorflow.core.framework import types_pb2

    dims = [dim.size for dim in proto.tensor_shape.dim]
    wanted = "[N]" if proto.dtype == string_type else f"[N, {', '.join(map(str, served.contract.shape))}]"
    expected_rest = [] if proto.dtype == string_type else list(served.contract.shape)
    if not dims or dims[1:] != expected_rest or dims[0] < 1:
        raise RequestError(422, f"input {served.input_name!r} must have shape {wanted}, got {dims}")
    if dims[0] > max_instances:
        raise RequestError(413, f"{dims[0]} instances; at most {max_instances} per request")
    dtype = types_pb2.DataType.Name(proto.dtype) if proto.dtype in types_pb2.DataType.values() else str(proto.dtype)
    filled = sorted(field.name for field, _ in proto.ListFields() if field.name.endswith("_val"))
    if proto.tensor_content:
        if proto.dtype == string_type:  # TensorFlow reads a string tensor's values from string_val alone
            raise RequestError(422, f"input {served.input_name!r}: DT_STRING photo files go in string_val, not "
                                    "tensor_content")
        if filled:
            raise RequestError(422, f"input {served.input_name!r} has both tensor_content and {', '.join(filled)}; "
                                    "send one")
        return
    own = VALUE_FIELDS.get(dtype)
    if own is None:
        raise RequestError(422, f"input {served.input_name!r} must be DT_FLOAT (or DT_UINT8) pixel values or "
                                f"DT_STRING photo files, got {dtype}")
    if any(field != own for field in filled):
        raise RequestError(422, f"input {served.input_name!r}: {dtype} values go in {own} (or tensor_content); got "
                                f"{', '.join(filled)}")
    count, given = int(np.prod(dims)), len(getattr(proto, own))
    if given != count:
        raise RequestError(422, f"input {served.input_name!r} declares {count} values and holds {given}")


def prediction_service(registry: Registry):
    """TensorFlow Serving's ``PredictionService``: ``Predict`` and ``GetModelMetadata``
    (``Classify``, ``Regress`` and ``MultiInference`` answer UNIMPLEMENTED)."""
    import tensorflow as tf
    from google.protobuf import json_format
    from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc as rpc

    predictions = Predictions(registry)

    def resolve(spec) -> ServedVersion:
        version = spec.version.value if spec.HasField("version") else None
        return registry.resolve(spec.name, version, spec.version_label or None)

    def answer_spec(target, served: ServedVersion) -> None:
        target.name = served.name
        target.version.value = served.number
        target.signature_name = SIGNATURE

    def predict_response(served: ServedVersion, probabilities: np.ndarray, images: np.ndarray):
        response = predict_pb2.PredictResponse()
        answer_spec(response.model_spec, served)
        response.outputs[OUTPUT_NAME].CopyFrom(tf.make_tensor_proto(probabilities.astype(np.float32)))
        return response

    class PredictionService(rpc.PredictionServiceServicer):
        @answering_errors
        async def Predict(self, request, context):
            served = resolve(request.model_spec)
            if request.model_spec.signature_name not in ("", SIGNATURE):
                raise RequestError(422, f"unknown signature_name {request.model_spec.signature_name!r}; this model "
                                        f"has only {SIGNATURE!r}")
            if list(request.inputs) != [served.input_name]:
                raise RequestError(422, f"inputs must hold the model's one input {served.input_name!r}, got "
                                        f"{sorted(request.inputs) or 'none'}")
            if any(name != OUTPUT_NAME for name in request.output_filter):
                raise RequestError(422, f"unknown output in output_filter; the output is {OUTPUT_NAME!r}")
            proto = request.inputs[served.input_name]
            check_declared_tensor(proto, served, registry.config.max_instances, tf.string.as_datatype_enum)
            try:
                array = tf.make_ndarray(proto)
            except Exception as error:  # a TensorProto whose content does not match its shape or dtype
                raise RequestError(422, f"input {served.input_name!r} is not a valid tensor: {error}") from None
            if proto.dtype == tf.string.as_datatype_enum:
                data, datatype, shape = list(array.ravel()), "BYTES", [array.size]
            elif array.dtype.kind in "iuf" and array.ndim >= 1:
                datatype = {np.dtype(np.uint8): "UINT8", np.dtype(np.float32): "FP32"}.get(array.dtype, "FP64")
                data, shape = array, list(array.shape)
            else:
                raise RequestError(422, f"input {served.input_name!r} must be DT_FLOAT (or DT_UINT8) pixel values of "
                                        f"shape [N, {', '.join(map(str, served.contract.shape))}], or DT_STRING photo files")
            return await predictions.run(served, request.ByteSize(), served.input_name, datatype, shape, data,
                                         {OUTPUT_NAME: True}, predict_response)

        @answering_errors
        async def GetModelMetadata(self, request, context):
            served = resolve(request.model_spec)
            if any(field != "signature_def" for field in request.metadata_field):
                raise RequestError(422, "the only metadata_field is \"signature_def\"")
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            answer_spec(response.model_spec, served)
            signatures = json_format.ParseDict(signature_def(served), get_model_metadata_pb2.SignatureDefMap())
            response.metadata["signature_def"].Pack(signatures)
            return response

    return PredictionService(), rpc.add_PredictionServiceServicer_to_server


# Like HTTP's health routes, liveness and readiness need no key: probes call them.
OPEN_METHODS = frozenset({"/inference.GRPCInferenceService/ServerLive", "/inference.GRPCInferenceService/ServerReady"})


def api_key_interceptor(key: str):
    """Every call but the probes must bring ``key`` in its metadata (``authorization: Bearer KEY``
    or ``x-api-key: KEY``), as every HTTP route but health must; others get UNAUTHENTICATED."""
    import grpc

    class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
        async def intercept_service(self, continuation, details):
            if details.method in OPEN_METHODS:
                return await continuation(details)
            metadata = {name.lower(): value for name, value in details.invocation_metadata or ()}
            refusal = key_refusal(metadata.get("x-api-key"), metadata.get("authorization"), key.encode())
            if refusal is None:
                return await continuation(details)

            async def refuse(request, context):
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, refusal)

            return grpc.unary_unary_rpc_method_handler(refuse)

    return ApiKeyInterceptor()


def decoding_interceptor():
    """Every call's message parsed inside the handler, so that bytes that are no message of the
    method's type (random bytes, a cut message, text that is not UTF-8) are INVALID_ARGUMENT with
    what to send: gRPC's own parse, before any handler, answered them UNKNOWN."""
    import grpc

    class DecodingInterceptor(grpc.aio.ServerInterceptor):
        async def intercept_service(self, continuation, details):
            handler = await continuation(details)
            if handler is None or handler.unary_unary is None or handler.request_deserializer is None:
                return handler
            parse, behaviour = handler.request_deserializer, handler.unary_unary

            async def parsed(raw: bytes, context):
                try:
                    request = parse(raw)
                except Exception as error:  # noqa: BLE001 — protobuf's DecodeError, or a runtime's own
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                        f"the request is not a {details.method} message ({error}); send the "
                                        "protobuf message the service defines (KServe's or TensorFlow Serving's .proto)")
                return await behaviour(request, context)

            return grpc.unary_unary_rpc_method_handler(parsed, response_serializer=handler.response_serializer)

    return DecodingInterceptor()


async def start_grpc_server(registry: Registry, address: str):
    """Both services on ``address`` (``host:port``; port 0 for a free one), started on the running
    event loop, so gRPC and HTTP requests share the batches. Returns the server and its port."""
    try:
        import grpc
        services = [inference_service(registry), prediction_service(registry)]
    except ImportError as error:
        raise ValueError(f"{INSTALL_HINT} ({error})") from None
    config = registry.config
    interceptors = [decoding_interceptor()] + ([api_key_interceptor(config.api_key)] if config.api_key else [])
    server = grpc.aio.server(maximum_concurrent_rpcs=config.max_concurrent_requests, interceptors=interceptors, options=[
        ("grpc.max_receive_message_length", config.max_body_bytes),
        # Answers are bounded by max_response_bytes before they are built; this is gRPC's own
        # backstop, kept above what metadata answers need however low that bound is set.
        ("grpc.max_send_message_length", max(config.max_response_bytes, 4 * 1024 * 1024))])
    for servicer, add in services:
        add(servicer, server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:
        port = 0
    if port == 0:
        raise ValueError(f"gRPC cannot listen on {address}: the port is taken or the address is not this machine's")
    await server.start()
    return server, port
