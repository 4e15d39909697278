"""Payload parsing on its own (``apparel.serve.payloads``): no app, no model, numpy only.

Each client mistake is checked for its status and its whole message (what the client reads),
and each accepted body for the values the model would get, worked out by hand.
"""

import base64

import numpy as np
import pytest

from apparel.contract import FASHION_MNIST, InputContract
from apparel.serve.payloads import (
    RequestError,
    array_instance,
    b64_instance,
    instances_to_images,
    json_body,
    multipart_files,
    named_input,
    predict_request,
    scale_pixels,
    shape_text,
    what_to_send,
    wrong_shape,
)

PHOTO = InputContract("photo", 4, ("shirt", "shoe"))  # a tiny photo model: 4×4×3 inputs
FASHION_TEXT = ("this Fashion-MNIST model takes 28×28 arrays of grayscale pixel values (light garment on black) "
                "or {\"b64\": \"<base64 image file>\"} photos")
PHOTO_TEXT = ("this photo model takes 4×4×3 arrays of RGB pixel values (0–255, or 0–1) "
              "or {\"b64\": \"<base64 image file>\"} photos of any size")


def raised(call, *args, **kwargs) -> RequestError:
    with pytest.raises(RequestError) as caught:
        call(*args, **kwargs)
    return caught.value


def image(value, shape=(28, 28)) -> list:
    return np.full(shape, value).tolist()


# json_body


def test_json_body_parses_utf8_and_utf16():
    assert json_body(b'{"instances": [1, 2]}') == {"instances": [1, 2]}
    assert json_body('{"a": "é"}'.encode("utf-16")) == {"a": "é"}
    assert json_body(b" 3 ") == 3


@pytest.mark.parametrize("body", [b"", b"  \r\n\t "])
def test_an_empty_body_is_a_400_that_shows_a_body(body):
    error = raised(json_body, body)
    assert (error.status, error.message) == (
        400, "the request body is empty; send a JSON object such as {\"instances\": [...]}")
    assert str(error) == error.message


def test_malformed_json_is_a_400_with_the_parser_s_reason():
    error = raised(json_body, b'{"instances": [1,')
    assert error.status == 400
    assert error.message.startswith("the request body is not valid JSON: Expecting value: line 1 column 18")
    assert raised(json_body, b"\xff\xfe\xfa").message.startswith("the request body is not valid JSON: ")


def test_a_number_of_thousands_of_digits_is_a_400_that_gives_the_client_no_server_advice():
    error = raised(json_body, b'{"instances": [' + b"9" * 5000 + b"]}")
    assert error.status == 400 and "a number with thousands of digits" in error.message
    assert "sys." not in error.message


def test_json_nested_too_deeply_is_a_400():
    error = raised(json_body, b"[" * 100_000 + b"]" * 100_000)
    assert (error.status, error.message) == (400, "the JSON body is nested too deeply")


# the shape messages


def test_shape_text():
    assert shape_text((28, 28)) == "28×28"
    assert shape_text((4, 4, 3)) == "4×4×3"
    assert shape_text((7,)) == "7"
    assert shape_text(()) == "a single number"


def test_what_to_send_names_each_kind_of_model_s_input():
    assert what_to_send(FASHION_MNIST) == FASHION_TEXT
    assert what_to_send(PHOTO) == PHOTO_TEXT


def test_wrong_shape_says_what_to_send_and_names_the_other_kind_of_input():
    error = wrong_shape((28, 28), PHOTO)
    assert error.status == 422
    assert error.message == (f"each instance must be a 4×4×3 array: {PHOTO_TEXT}; got 28×28 (a Fashion-MNIST array, "
                             "which this model does not take; send the photo itself as b64)")
    assert wrong_shape((5, 5), PHOTO).message == f"each instance must be a 4×4×3 array: {PHOTO_TEXT}; got 5×5"
    colour = " (a colour photo array; send the photo file as b64, it goes through the Fashion-MNIST pipeline)"
    assert wrong_shape((9, 9, 3), FASHION_MNIST).message == (
        f"each instance must be a 28×28 array: {FASHION_TEXT}; got 9×9×3{colour}")
    # Neither hint where it does not fit: not three axes, or not three channels last.
    for shape in ((3,), (9, 3), (9, 9, 4), (9, 9, 3, 3), (3, 9, 9)):
        assert wrong_shape(shape, FASHION_MNIST).message.endswith(f"; got {shape_text(shape)}"), shape
    assert wrong_shape((28, 28, 3), PHOTO).message.endswith("; got 28×28×3")


# array instances and the pixel scale


def test_an_array_instance_is_read_as_0_to_1_unless_a_value_is_above_1():
    unit = array_instance(image(0.5))
    assert unit.shape == (28, 28) and unit.dtype == np.float32
    assert np.all(unit == np.float32(0.5))
    assert np.all(array_instance(image(1.0)) == 1.0)  # 1 is the top of 0–1, not 1/255
    wide = image(0)
    wide[3][4] = 51
    scaled = array_instance(wide)
    assert scaled[3, 4] == np.float32(51 / 255) and scaled.sum() == np.float32(0.2)


def test_a_ragged_instance_is_a_422():
    error = raised(array_instance, [[0, 1], [2]])
    assert (error.status, error.message) == (422, "each instance must be a 28×28 array of numbers; this one is ragged")
    assert raised(array_instance, [[0, 1], [2]], PHOTO).message.startswith("each instance must be a 4×4×3 array")


def test_scale_pixels_for_a_photo_contract_gives_0_to_255():
    batch = np.stack([np.full((4, 4, 3), 0.2), np.full((4, 4, 3), 2.0)])
    photos = scale_pixels(batch, PHOTO)
    assert photos.dtype == np.float32
    assert np.allclose(photos[0], 51.0) and np.allclose(photos[1], 2.0)


def test_scale_pixels_refuses_the_wrong_shape_and_bad_values():
    error = raised(scale_pixels, np.zeros((2, 28, 27)))
    assert error.status == 422 and error.message.startswith("each instance must be a 28×28 array: ")
    assert error.message.endswith("; got 28×27")
    error = raised(scale_pixels, np.full((1, 28, 28), 256.0))
    assert (error.status, error.message) == (422, "instance pixel values must lie in [0, 1] or [0, 255], found 256 to 256")
    error = raised(scale_pixels, np.full((1, 4, 4, 3), -1.0), PHOTO)
    assert (error.status, error.message) == (422, "instance pixel values must lie in [0, 1] or [0, 255], found -1 to -1")


# instances


def test_instances_become_one_float32_batch_each_scaled_on_its_own():
    batch = instances_to_images([image(0.5), image(255), image(0)])
    assert batch.shape == (3, 28, 28) and batch.dtype == np.float32
    assert [float(batch[i, 0, 0]) for i in range(3)] == [0.5, 1.0, 0.0]


def test_instances_for_a_photo_contract():
    batch = instances_to_images([image(1.0, (4, 4, 3)), image(10, (4, 4, 3))], contract=PHOTO)
    assert batch.shape == (2, 4, 4, 3)
    assert np.all(batch[0] == 255.0) and np.all(batch[1] == 10.0)


@pytest.mark.parametrize("instances, message", [
    ({"b64": "x"}, "\"instances\" must be a list of 28×28 arrays or {\"b64\": \"<base64 image>\"} objects"),
    ("[]", "\"instances\" must be a list of 28×28 arrays or {\"b64\": \"<base64 image>\"} objects"),
    ([], "\"instances\" is empty; send at least one image"),
])
def test_instances_that_are_not_a_list_of_images(instances, message):
    error = raised(instances_to_images, instances)
    assert (error.status, error.message) == (422, message)


def test_too_many_instances_is_a_413_and_the_limit_itself_is_taken():
    error = raised(instances_to_images, [image(0)] * 3, max_instances=2)
    assert (error.status, error.message) == (413, "3 instances in one request; the limit is 2, split the request")
    assert instances_to_images([image(0)] * 2, max_instances=2).shape == (2, 28, 28)
    assert raised(instances_to_images, [image(0)] * 257).status == 413
    assert instances_to_images([image(0)] * 256).shape == (256, 28, 28)


def test_the_instance_at_fault_is_named_by_its_index():
    ragged = raised(instances_to_images, [image(0), image(0, (28, 27))])
    assert ragged.status == 422
    assert ragged.message.startswith("instances[1]: each instance must be a 28×28 array: ")
    assert ragged.message.endswith("; got 28×27")
    # All the same wrong shape: still named per instance.
    flat = raised(instances_to_images, [[1, 2, 3], [4, 5, 6]])
    assert flat.message.startswith("instances[0]: each instance must be a 28×28 array: ")
    assert flat.message.endswith("; got 3")
    bad = image(0)
    bad[0][0] = float("nan")
    error = raised(instances_to_images, [image(0), image(0), bad])
    assert (error.status, error.message) == (
        422, "instance pixel values must be finite numbers; found NaN or infinity")
    nested = raised(instances_to_images, [image(0), [[[0, 1], [2]]]])
    assert nested.message == "instances[1]: each instance must be a 28×28 array of numbers; this one is ragged"


# {"b64": ...} instances


def encoded(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


def test_b64_instances_go_through_decode_photo():
    seen = []

    def decode(data):
        seen.append(data)
        return np.full((28, 28), len(data) / 10, np.float64)

    batch = instances_to_images([encoded(b"abc"), image(0.5), encoded(b"abcdefg")], decode_photo=decode)
    assert seen == [b"abc", b"abcdefg"]
    assert batch.dtype == np.float32 and batch.shape == (3, 28, 28)
    assert [round(float(batch[i, 0, 0]), 6) for i in range(3)] == [0.3, 0.5, 0.7]


@pytest.mark.parametrize("instance, message", [
    ({"b64": "YWJj", "name": "x"}, "an object instance must be {\"b64\": \"<base64-encoded image file>\"} and nothing else"),
    ({"data": "YWJj"}, "an object instance must be {\"b64\": \"<base64-encoded image file>\"} and nothing else"),
    ({"b64": 12}, "an object instance must be {\"b64\": \"<base64-encoded image file>\"} and nothing else"),
    ({"b64": "YWJ*"}, "the \"b64\" value is not valid base64"),
    ({"b64": "YWJ"}, "the \"b64\" value is not valid base64"),
    ({"b64": "é"}, "the \"b64\" value is not valid base64"),
    ({"b64": ""}, "the \"b64\" value decodes to no bytes; send an image file"),
])
def test_b64_instance_mistakes(instance, message):
    error = raised(b64_instance, instance, lambda data: np.zeros((28, 28)))
    assert (error.status, error.message) == (422, message)
    listed = raised(instances_to_images, [image(0), instance], decode_photo=lambda data: np.zeros((28, 28)))
    assert (listed.status, listed.message) == (422, f"instances[1]: {message}")


def test_b64_without_a_decoder_says_what_the_server_takes():
    error = raised(b64_instance, encoded(b"png"), None)
    assert (error.status, error.message) == (422, "this server takes no image files, only 28×28 arrays")
    assert raised(b64_instance, encoded(b"png"), None, PHOTO).message == (
        "this server takes no image files, only 4×4×3 arrays")


def test_decode_photo_errors_keep_their_meaning():
    def unusable(data):
        raise ValueError("not an image")

    error = raised(b64_instance, encoded(b"abc"), unusable)
    assert (error.status, error.message) == (422, "the \"b64\" image cannot be used: not an image")

    def too_big(data):
        raise RequestError(413, "the image is too large")

    error = raised(instances_to_images, [encoded(b"abc")], decode_photo=too_big)
    assert (error.status, error.message) == (413, "instances[0]: the image is too large")


def test_a_decoder_of_the_wrong_shape_is_the_server_s_mistake():
    with pytest.raises(RuntimeError, match=r"decode_photo gave an input of shape \(28, 28\), not the model's \(4, 4, 3\)"):
        b64_instance(encoded(b"abc"), lambda data: np.zeros((28, 28)), PHOTO)
    photo = b64_instance(encoded(b"abc"), lambda data: np.ones((4, 4, 3), np.uint8), PHOTO)
    assert photo.dtype == np.float32 and photo.shape == (4, 4, 3) and photo.sum() == 48


# :predict bodies


def test_predict_request_row_and_columnar_forms():
    key, images = predict_request({"instances": [image(255)]})
    assert key == "predictions" and images.shape == (1, 28, 28) and images.max() == 1.0
    key, images = predict_request({"inputs": [image(0.25), image(0.5)], "signature_name": "serving_default"})
    assert key == "outputs" and images.shape == (2, 28, 28) and float(images[1, 0, 0]) == 0.5
    key, images = predict_request({"inputs": {"pixels": [image(0.5)]}}, input_name="pixels")
    assert key == "outputs" and images.shape == (1, 28, 28)
    key, images = predict_request({"inputs": {"any": [image(0.5)]}})
    assert key == "outputs" and images.shape == (1, 28, 28)


def test_predict_request_passes_its_settings_on():
    key, images = predict_request({"instances": [image(2, (4, 4, 3))]}, contract=PHOTO)
    assert images.shape == (1, 4, 4, 3) and images.max() == 2.0
    assert raised(predict_request, {"instances": [image(0)] * 3}, max_instances=2).status == 413
    key, images = predict_request({"instances": [encoded(b"a")]}, decode_photo=lambda data: np.full((28, 28), 0.5))
    assert float(images[0, 0, 0]) == 0.5


@pytest.mark.parametrize("payload, message", [
    ([1, 2], "the body must be a JSON object such as {\"instances\": [...]}"),
    ("instances", "the body must be a JSON object such as {\"instances\": [...]}"),
    ({"instances": [], "zeta": 1, "alpha": 2}, "unknown key 'alpha'; send {\"instances\": [...]} (or \"inputs\")"),
    ({"instances": [1], "signature_name": "predict"},
     "unknown signature_name 'predict'; this model has only \"serving_default\""),
    ({"instances": [1], "inputs": [1]}, "send exactly one of \"instances\" (row format) or \"inputs\" (columnar format)"),
    ({}, "send exactly one of \"instances\" (row format) or \"inputs\" (columnar format)"),
    ({"signature_name": "serving_default"},
     "send exactly one of \"instances\" (row format) or \"inputs\" (columnar format)"),
])
def test_predict_request_mistakes(payload, message):
    error = raised(predict_request, payload)
    assert (error.status, error.message) == (422, message)


def test_named_inputs():
    assert named_input({"pixels": [1]}, "pixels") == [1]
    assert named_input({"x": [2]}, None) == [2]
    error = raised(named_input, {"a": [1], "b": [2]}, "pixels")
    assert (error.status, error.message) == (
        422, "this model has one input, so \"inputs\" must name one ('pixels'), not 2; or send {\"inputs\": [...]}")
    assert raised(named_input, {}, None).message == (
        "this model has one input, so \"inputs\" must name one (its name), not 0; or send {\"inputs\": [...]}")
    error = raised(named_input, {"image": [1]}, "pixels")
    assert (error.status, error.message) == (422, "unknown input 'image'; this model's input is 'pixels'")
    error = raised(predict_request, {"inputs": {"image": [image(0)]}}, input_name="pixels")
    assert error.message == "unknown input 'image'; this model's input is 'pixels'"


# multipart/form-data


def form(*parts: tuple[str, str | None, bytes], boundary: str = "XyZ", end: bool = True) -> bytes:
    body = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += (f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
                 "Content-Type: application/octet-stream\r\n\r\n").encode() + content + b"\r\n"
    return body + (f"--{boundary}--\r\n".encode() if end else b"")


TYPE = "multipart/form-data; boundary=XyZ"


def test_multipart_files_are_kept_in_order_and_fields_are_skipped():
    body = form(("file", "a.png", b"\x89PNG one"), ("note", None, b"hello"), ("file", "b é.jpg", b"two\r\nlines"))
    assert multipart_files(body, TYPE) == [("a.png", b"\x89PNG one"), ("b é.jpg", b"two\r\nlines")]
    assert multipart_files(form(("note", None, b"x")), TYPE) == []


def test_multipart_header_names_are_read_in_any_case():
    body = (b"--XyZ\r\ncontent-DISPOSITION: form-data; name=\"f\"; filename=\"c.png\"\r\n\r\nabc\r\n--XyZ--\r\n")
    assert multipart_files(body, TYPE) == [("c.png", b"abc")]


def test_multipart_limits_are_413s_and_the_limits_themselves_are_taken():
    files = form(("f", "1.png", b"1"), ("f", "2.png", b"2"), ("f", "3.png", b"3"))
    assert len(multipart_files(files, TYPE, max_files=3)) == 3
    error = raised(multipart_files, files, TYPE, max_files=2)
    assert (error.status, error.message) == (413, "more than 2 files in one upload; the limit is 2")
    fields = form(("a", None, b"1"), ("b", None, b"2"), ("f", "x.png", b"x"))
    assert multipart_files(fields, TYPE, max_fields=2) == [("x.png", b"x")]
    error = raised(multipart_files, fields, TYPE, max_fields=1)
    assert (error.status, error.message) == (413, "more than 1 form fields; send only the image files")
    many = form(*[(f"n{i}", None, b"v") for i in range(101)])
    assert raised(multipart_files, many, TYPE).status == 413
    assert multipart_files(form(*[(f"n{i}", None, b"v") for i in range(100)]), TYPE) == []


@pytest.mark.parametrize("content_type", ["multipart/form-data", "multipart/form-data; boundary=", "text/plain"])
def test_multipart_without_a_boundary_is_a_400(content_type):
    error = raised(multipart_files, form(("f", "a.png", b"1")), content_type)
    assert (error.status, error.message) == (
        400, "the multipart Content-Type has no boundary; let your HTTP client build the form")


def test_multipart_cut_short_or_malformed_is_a_400():
    cut = "the multipart body is cut short (no closing boundary); send the whole form"
    whole = form(("f", "a.png", b"12345"))
    for body in (form(("f", "a.png", b"1"), end=False), whole[:-12], b""):
        error = raised(multipart_files, body, TYPE)
        assert (error.status, error.message) == (400, cut)
    error = raised(multipart_files, b"--XyZ\r\nno colon here\r\n\r\n", TYPE)
    assert error.status == 400 and error.message.startswith("malformed multipart body: ")
    error = raised(multipart_files, b"garbage before the boundary", TYPE)
    assert error.status == 400 and error.message.startswith("malformed multipart body: ")


def test_a_mixed_list_for_a_photo_contract_reads_each_instance_by_it():
    seen = []

    def decode(data):
        seen.append(data)
        return np.full((4, 4, 3), 7, np.uint8)

    batch = instances_to_images([encoded(b"jpeg"), image(0.5, (4, 4, 3))], contract=PHOTO, decode_photo=decode)
    assert seen == [b"jpeg"] and batch.shape == (2, 4, 4, 3)
    assert np.all(batch[0] == 7.0) and np.all(batch[1] == np.float32(127.5))
    assert array_instance(image(0.5, (4, 4, 3)), PHOTO).shape == (4, 4, 3)


def test_b64_with_characters_outside_the_alphabet_is_refused_not_skipped():
    decoded = []
    for value in ("YW*Jj", "YW Jj", "YWJj\n"):
        error = raised(b64_instance, {"b64": value}, decoded.append)
        assert (error.status, error.message) == (422, "the \"b64\" value is not valid base64")
    assert decoded == []


def test_the_default_limit_is_256_instances():
    assert raised(predict_request, {"instances": [image(0)] * 257}).message == (
        "257 instances in one request; the limit is 256, split the request")
    assert predict_request({"instances": [image(0)] * 256})[1].shape == (256, 28, 28)


def test_a_file_name_that_is_not_utf8_is_kept_with_replacement_characters():
    body = b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"\xff\xfe.png\"\r\n\r\nabc\r\n--XyZ--\r\n"
    assert multipart_files(body, TYPE) == [("\ufffd\ufffd.png", b"abc")]


def test_a_form_with_no_parts_at_all_has_no_files():
    assert multipart_files(b"--XyZ--\r\n", TYPE) == []
