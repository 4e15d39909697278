"""The service under abuse: fuzzed bodies on every POST route, slow and too many clients, overload,
shutdown with a client hanging, and browsers on other sites (issue #13, findings 4, 9 and 10).

In-process where that is enough (FastAPI's TestClient, httpx's ASGI transport); a real uvicorn
server on 127.0.0.1 (port 0, bound once) for what only a socket shows: read timeouts, the
connection cap, shutdown. Every wait is bounded; every server thread is joined.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import select
import shutil
import socket
import threading
import time
import warnings

import numpy as np
import pytest

from apparel import artifacts
from apparel.inference.prediction import Predictor
from apparel.serve import app as service_app
from apparel.serve.app import create_app
from apparel.serve.batching import MicroBatcher, Overloaded
from apparel.serve.config import ServiceConfig
from apparel.serve.security import LOOPBACK_NAMES, bind_settings, exposure_warning
from conftest import noting_the_loop
from serving import garment_photo, mutate, random_json, running_server, server_thread

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from test_service import LIMITS, PREDICT, client, model_dir, predictor  # noqa: F401 (fixtures)

# Short timeouts, so that the slow-client tests take seconds.
QUICK = dict(header_timeout_s=0.5, body_timeout_s=0.5, keep_alive_s=0.5, shutdown_timeout_s=1.0)


def image_batch(count, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(count, 28, 28)).astype(np.uint8)


def post_json(client, payload, **headers):
    return client.post(PREDICT, content=json.dumps(payload), headers={"Content-Type": "application/json", **headers})


# ---------------------------------------------------------------- fuzzing: 1,000 bodies a route, no 5xx

BOUNDARY = "fuzzboundary"
CONTENT_TYPES = ["application/json", "multipart/form-data; boundary=" + BOUNDARY, "text/plain", "",
                 "multipart/form-data", "application/json; charset=utf-16", "multipart/form-data; boundary=",
                 "multipart/form-data; boundary=" + "b" * 300, 'multipart/form-data; boundary="unclosed',
                 "multipart/form-data; boundary=other", "application/json; charset=latin-1"]


def part(name: str, filename: str | None, content: bytes, boundary: str = BOUNDARY) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
    head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\nContent-Type: image/png\r\n\r\n"
    return head.encode() + content + b"\r\n"


def json_bodies(rng, index: int) -> bytes:
    """A :predict body that is well-formed JSON with something wrong (or nothing) in it."""
    kind = index % 8
    if kind == 0:
        return json.dumps({"instances": random_json(rng)} if rng.random() < 0.7 else random_json(rng)).encode()
    if kind == 1:  # an image with values or rows changed
        instances = image_batch(int(rng.integers(1, 4)), seed=index).tolist()
        image = instances[0]
        image[int(rng.integers(0, 28))][int(rng.integers(0, 28))] = random_json(rng, depth=3)
        if rng.random() < 0.5:
            del image[int(rng.integers(0, 27))]
        return json.dumps({"instances": instances}).encode()
    if kind == 2:  # huge numbers: beyond float64, beyond int64, as literals numpy must refuse
        literal = ["1e400", "-1e400", "1" + "0" * 400, "1e-400", "123456789012345678901234567890"][index % 5]
        row = ",".join([literal] * 28)
        return ('{"instances": [[' + ",".join(f"[{row}]" for _ in range(28)) + "]]}").encode()
    if kind == 3:  # nested structures: deep, wide, objects where arrays go
        depth = int(rng.integers(1, 3000))
        nested = ["[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth,
                  json.dumps({"instances": [[[{"x": 1}] * 28] * 28]}), json.dumps({"instances": [[[[[0]]]]]})]
        return nested[index % len(nested)].encode()
    if kind == 4:  # bad base64: wrong alphabet, padding, whitespace, not a string
        values = ["***", "abc", "YWJj=", "YW Jj", "=" * 8, 12, None, ["YWJj"], {"b64": "x"},
                  base64.b64encode(bytes(rng.integers(0, 256, 64).astype(np.uint8))).decode()]
        return json.dumps({"instances": [{"b64": values[int(rng.integers(0, len(values)))]}]}).encode()
    if kind == 5:  # TensorFlow Serving's named-input form, right and wrong
        named = [{"images": image_batch(1).tolist()}, {"other": image_batch(1).tolist()},
                 {"a": [], "b": []}, {}, {"images": "x"}, {"images": {"images": []}}]
        return json.dumps({"inputs": named[int(rng.integers(0, len(named)))]}).encode()
    if kind == 6:  # wrong types at the top
        values = [{"instances": None}, {"instances": 5}, {"signature_name": 1, "instances": []}, [], "x", 1e308,
                  {"instances": [[0] * 28] * 28}, {"inputs": True}]
        return json.dumps(values[int(rng.integers(0, len(values)))]).encode()
    return json.dumps({"instances": image_batch(1, seed=index).tolist()}).encode()  # valid: a 200


def multipart_bodies(rng, index: int, photo: bytes) -> tuple[bytes, str]:
    """A /predict body with its own Content-Type: broken boundaries, parts and headers."""
    own = "multipart/form-data; boundary=" + BOUNDARY
    kind = index % 8
    if kind == 0:  # the boundary in the body is not the header's
        return part("files", "a.png", photo, boundary="other") + b"--other--\r\n", own
    if kind == 1:  # a closing boundary missing, doubled, or without its CRLF
        ends = [b"", b"--" + BOUNDARY.encode() + b"--", b"--" + BOUNDARY.encode() + b"----\r\n--" + BOUNDARY.encode()]
        return part("files", "a.png", photo) + ends[index % 3], own
    if kind == 2:  # odd part headers: no disposition, filename without quotes, a huge header
        heads = [b"Content-Type: image/png\r\n\r\n",
                 b"Content-Disposition: form-data; name=files; filename=a.png\r\n\r\n",
                 b"Content-Disposition: form-data; name=\"files\"; filename=\"" + b"x" * 5000 + b"\"\r\n\r\n",
                 b"Content-Disposition: form-data\r\n" * 200 + b"\r\n", b"no colon here\r\n\r\n"]
        head = heads[int(rng.integers(0, len(heads)))]
        return b"--" + BOUNDARY.encode() + b"\r\n" + head + photo + b"\r\n--" + BOUNDARY.encode() + b"--\r\n", own
    if kind == 3:  # files that are not images, empty, or random bytes
        content = [b"", b"GIF89a", bytes(rng.integers(0, 256, 500).astype(np.uint8)), photo[: len(photo) // 3]]
        return part("files", "x.png", content[int(rng.integers(0, len(content)))]) + f"--{BOUNDARY}--\r\n".encode(), own
    if kind == 4:  # too many files, or fields only
        parts = [part("files", f"{i}.png", photo) for i in range(int(rng.integers(0, 6)))]
        return b"".join(parts) + part("note", None, b"hello") + f"--{BOUNDARY}--\r\n".encode(), own
    if kind == 5:  # a good body under a wrong Content-Type
        body = part("files", "a.png", photo) + f"--{BOUNDARY}--\r\n".encode()
        return body, CONTENT_TYPES[int(rng.integers(0, len(CONTENT_TYPES)))]
    if kind == 6:
        return mutate(rng, part("files", "a.png", photo) + f"--{BOUNDARY}--\r\n".encode()), own
    return part("files", "a.png", photo) + f"--{BOUNDARY}--\r\n".encode(), own  # valid: a 200


def chaos_bodies(path: str, count: int, seed: int):
    """``count`` (body, content type) pairs for ``path``: a third valid bodies mutated (flips,
    truncations, insertions), a half built to be wrong in one way each, the rest random bytes."""
    rng = np.random.default_rng(seed)
    photo = garment_photo(size=(60, 80), fmt="PNG")
    if path == PREDICT:
        valid = [json.dumps({"instances": image_batch(2).tolist()}).encode(),
                 json.dumps({"instances": [{"b64": base64.b64encode(photo).decode()}]}).encode(),
                 json.dumps({"inputs": {"images": image_batch(1).tolist()}}).encode()]
        own = "application/json"
    else:
        valid = [part("files", "a.png", photo) + f"--{BOUNDARY}--\r\n".encode()]
        own = "multipart/form-data; boundary=" + BOUNDARY
    for index in range(count):
        case = index % 6
        if case in (0, 1):
            yield mutate(rng, valid[int(rng.integers(0, len(valid)))]), own
        elif case in (2, 3, 4):
            yield (json_bodies(rng, index // 6), own) if path == PREDICT else multipart_bodies(rng, index // 6, photo)
        else:
            body = bytes(rng.integers(0, 256, size=int(rng.integers(0, 3000))).astype(np.uint8))
            yield body, CONTENT_TYPES[int(rng.integers(0, len(CONTENT_TYPES)))]


@pytest.mark.parametrize("path", [PREDICT, "/predict"])
def test_a_thousand_chaotic_bodies_never_cause_a_server_error(client, path):
    statuses = []
    started = time.monotonic()
    for body, content_type in chaos_bodies(path, count=1000, seed=13):
        headers = {"Content-Type": content_type} if content_type else {}
        response = client.post(path, content=body, headers=headers)
        assert response.status_code < 500, (path, content_type, body[:200], response.text)
        if response.status_code >= 400:
            assert response.json()["error"]
        statuses.append(response.status_code)
    assert time.monotonic() - started < 60
    assert client.get("/v2/health/ready").status_code == 200
    # The bodies reached the model (200) and many different refusals.
    assert statuses.count(200) >= 50 and len(set(statuses)) >= 4, sorted(set(statuses))


# ---------------------------------------------------------------- admission control and deadlines (finding 4)


def test_requests_past_the_concurrency_cap_get_503_with_retry_after(predictor):
    import httpx

    app = create_app(predictor, max_concurrent_requests=2, retry_after_s=7)
    body = json.dumps({"instances": image_batch(1).tolist()}).encode()

    async def scenario():
        release = asyncio.Event()

        async def slow_body():  # a client still sending: its request holds a slot
            yield body[:10]
            await release.wait()
            yield body[10:]

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=10) as http:
            json_type = {"Content-Type": "application/json"}
            held = [asyncio.create_task(http.post(PREDICT, content=slow_body(), headers=json_type)) for _ in range(2)]
            await asyncio.sleep(0.2)
            refused = await http.post(PREDICT, content=body, headers={"Content-Type": "application/json"})
            health = await http.get("/v2/health/ready")  # not counted: probes answer under overload
            release.set()
            answered = await asyncio.gather(*held)
            after = await http.post(PREDICT, content=body, headers={"Content-Type": "application/json"})
        return refused, health, answered, after

    refused, health, answered, after = asyncio.run(scenario())
    app.state.batcher.close()
    assert refused.status_code == 503 and refused.headers["retry-after"] == "7"
    assert "busy" in refused.json()["error"]
    assert health.status_code == 200
    assert [response.status_code for response in answered] == [200, 200] and after.status_code == 200


def test_a_full_queue_refuses_at_once_and_skips_requests_that_gave_up():
    started, release, calls = threading.Event(), threading.Event(), []

    def infer(images):
        calls.append(len(images))
        started.set()
        release.wait(10)
        return np.zeros((len(images), 10), np.float32)

    batcher = MicroBatcher(infer, max_batch=4, max_wait_ms=0, max_queued=8)

    async def scenario():
        running = asyncio.create_task(batcher.predict(np.zeros((4, 28, 28), np.float32)))
        while not started.is_set():
            await asyncio.sleep(0.01)
        given_up = asyncio.create_task(batcher.predict(np.zeros((3, 28, 28), np.float32)))
        waiting = asyncio.create_task(batcher.predict(np.zeros((5, 28, 28), np.float32)))
        await asyncio.sleep(0.05)
        with pytest.raises(Overloaded, match="most it queues is 8"):
            await batcher.predict(np.zeros((1, 28, 28), np.float32))
        given_up.cancel()  # as the request deadline does
        release.set()
        return [len(result) for result in await asyncio.gather(running, waiting)]

    assert asyncio.run(scenario()) == [4, 5]
    batcher.close()
    assert calls == [4, 5]  # the 3 images whose request gave up never reached the model


def test_a_request_past_its_deadline_gets_503_and_an_overloaded_queue_503(predictor, monkeypatch):
    app = create_app(predictor, request_deadline_s=0.3, retry_after_s=2)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        real_infer, released = app.state.batcher.infer, threading.Event()
        # The model hangs until the test is done with it: only the deadline can answer first.
        app.state.batcher.infer = lambda images: (released.wait(60), real_infer(images))[1]
        started = time.monotonic()
        try:
            response = post_json(test_client, {"instances": image_batch(1).tolist()})
        finally:
            released.set()
        assert response.status_code == 503 and time.monotonic() - started < 30
        assert response.headers["retry-after"] == "2" and "within 0.3 s" in response.json()["error"]
        app.state.batcher.infer = real_infer

    async def full(images):
        raise Overloaded("1,000 images are waiting")

    # Its own server, with a deadline the upload's decoding cannot pass: on a loaded fresh CI machine the
    # first upload's decode took over 0.3 s, and the deadline answered before the queue could.
    app = create_app(predictor, request_deadline_s=30, retry_after_s=2)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        monkeypatch.setattr(app.state.batcher, "predict", full)
        response = test_client.post("/predict", files=[("files", ("a.png", garment_photo(fmt="PNG"), "image/png"))])
        assert response.status_code == 503 and response.headers["retry-after"] == "2"
        assert "waiting" in response.json()["error"]


def test_a_client_that_leaves_before_its_answer_is_counted_499_and_its_wait_is_given_up(predictor):
    """A client gone (its own timeout, a closed tab) was still waited for, and counted a 200: under
    load, the retries of clients that gave up are work no one reads. Its wait for the model ends
    as soon as it goes; the next client is answered."""
    import httpx

    app = create_app(predictor, **{**QUICK, "request_deadline_s": 60})
    real_infer, released, calls = app.state.batcher.infer, threading.Event(), []
    # The first call hangs until the test is done with it: only the client's going can end its request.
    app.state.batcher.infer = lambda images: (calls.append(len(images)), len(calls) > 1 or released.wait(60),
                                              real_infer(images))[2]
    body = json.dumps({"instances": image_batch(1).tolist()}).encode()
    try:
        with running_server(app) as base_url, httpx.Client(base_url=base_url, timeout=10) as http:
            leaving = raw_connection(base_url)
            leaving.sendall(b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            deadline = time.monotonic() + 20
            while not calls and time.monotonic() < deadline:
                time.sleep(0.02)
            assert calls, "the model was never asked"
            leaving.close()  # gone while the model works on its photo

            def counted(status: str) -> bool:
                return any(line.startswith("apparel_predictions_total{") and f'status="{status}"' in line
                           and not line.endswith(" 0.0") for line in http.get("/metrics").text.splitlines())

            while not counted("499") and time.monotonic() < deadline:
                time.sleep(0.05)
            assert counted("499") and not counted("200")
            released.set()
            assert http.post(PREDICT, content=body, headers={"Content-Type": "application/json"}).status_code == 200
            assert counted("200")
    finally:
        released.set()


def test_a_compressed_body_is_refused_by_its_content_encoding(client):
    """tritonclient's gzip was misread ("Inference-Header-Content-Length '146' is not a length within
    the body"), and a plain body labelled gzip was answered as if it were not labelled."""
    import gzip

    payload = {"instances": image_batch(1).tolist()}
    for encoding, body in (("gzip", gzip.compress(json.dumps(payload).encode())), ("gzip", json.dumps(payload)),
                           ("deflate", json.dumps(payload))):
        response = client.post(PREDICT, content=body, headers={"Content-Type": "application/json",
                                                               "Content-Encoding": encoding})
        assert response.status_code == 415, response.text
        assert response.json()["error"] == f"Content-Encoding {encoding} is not accepted; send the body uncompressed"
    assert post_json(client, payload, **{"Content-Encoding": "identity"}).status_code == 200


def test_queue_must_hold_one_full_request():
    with pytest.raises(ValueError, match="max_queued_images must be at least max_instances and max_files"):
        ServiceConfig(max_instances=300, max_queued_images=256)


# ---------------------------------------------------------------- slow clients on a real server (finding 4)


def raw_connection(base_url: str) -> socket.socket:
    host, port = base_url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)), timeout=5)
    return connection


def read_until_closed(connection: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    started, received = time.monotonic(), b""
    connection.settimeout(limit)
    while True:
        chunk = connection.recv(65536)
        if not chunk:
            return received, time.monotonic() - started
        received += chunk


def test_slow_clients_are_cut_off_while_others_are_answered(predictor):
    import httpx

    app = create_app(predictor, **QUICK)
    body = json.dumps({"instances": image_batch(1).tolist()}).encode()
    with running_server(app) as base_url:
        silent = raw_connection(base_url)  # connects, sends nothing
        half_headers = raw_connection(base_url)
        half_headers.sendall(b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
        half_body = raw_connection(base_url)
        half_body.sendall(b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:100])
        trickle = raw_connection(base_url)  # headers a byte at a time: each byte in time, the whole too late
        with httpx.Client(base_url=base_url, timeout=5) as http:
            for _ in range(3):  # meanwhile others are answered at once
                assert http.post(PREDICT, content=body, headers={"Content-Type": "application/json"}).status_code == 200
            trickle_started = time.monotonic()
            for byte in b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n":
                # Stop once the server has answered: a byte sent after it closed would reset the connection.
                if select.select([trickle], [], [], 0.4)[0]:
                    break
                trickle.sendall(bytes([byte]))
            # The whole request would take 20 s to trickle in: the 0.5 s header timeout cut it.
            assert time.monotonic() - trickle_started < 10
        for connection in (silent, half_headers, half_body, trickle):
            # Left alone these would wait for ever (limit: the test's own 30 s); the timeouts are 0.5 s.
            answer, seconds = read_until_closed(connection, limit=30)
            assert seconds < 10, seconds
            assert answer.startswith(b"HTTP/1.1 408"), answer
            connection.close()
        with httpx.Client(base_url=base_url, timeout=5) as http:
            assert http.get("/v2/health/ready").status_code == 200


def test_idle_keep_alive_connections_close_and_too_many_connections_get_503(predictor):
    app = create_app(predictor, **QUICK, max_connections=2, retry_after_s=3)
    with running_server(app) as base_url:
        kept = raw_connection(base_url)
        kept.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        held = raw_connection(base_url)
        time.sleep(0.1)
        extra = raw_connection(base_url)  # the third connection: past the cap
        answer, _ = read_until_closed(extra, limit=3)
        assert answer.startswith(b"HTTP/1.1 503") and b"retry-after: 3" in answer.lower()
        answer, seconds = read_until_closed(kept, limit=30)  # answered, then idle past keep_alive_s (0.5 s)
        assert answer.startswith(b"HTTP/1.1 200") and seconds < 10
        for connection in (kept, held, extra):
            connection.close()


def test_a_body_sent_after_an_early_answer_leaves_the_connection_to_the_keep_alive_limit(predictor):
    """A request answered before its body is read (415, 404) whose client then sends the body and
    goes quiet, or a client that sends only blank lines: each connection closes after keep_alive_s
    as an idle one does; they used to stay open for good and fill max_connections."""
    app = create_app(predictor, **QUICK)
    with running_server(app) as base_url:
        connections = []
        for path, content_type in ((PREDICT.encode(), b"text/plain"), (b"/v1/models/nope:predict", b"application/json")):
            early = raw_connection(base_url)
            early.sendall(b"POST " + path + b" HTTP/1.1\r\n"
                          b"Host: 127.0.0.1\r\nContent-Type: " + content_type + b"\r\nContent-Length: 1000\r\n\r\n")
            assert early.recv(65536).split(b" ")[1] in (b"415", b"404")  # answered before the body came
            early.sendall(b"x" * 1000)  # the body, then nothing more
            connections.append(early)
        blank = raw_connection(base_url)
        blank.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert blank.recv(65536).startswith(b"HTTP/1.1 200")
        blank.sendall(b"\r\n")  # starts no request
        connections.append(blank)
        for connection in connections:
            _, seconds = read_until_closed(connection, limit=30)  # the limit: 0.5 s; left open, the test's 30 s
            assert seconds < 10, seconds
            connection.close()


def test_a_body_trickled_after_an_early_answer_is_cut_off_without_a_second_answer(predictor):
    """A 413 given for a declared length, the client trickling the body on past the body timeout:
    the connection closes, and the 413 stays the request's one answer (a 408 followed it)."""
    app = create_app(predictor, **QUICK, max_body_bytes=1000)
    with running_server(app) as base_url:
        early = raw_connection(base_url)
        early.sendall(b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n")
        answer, started = b"", time.monotonic()
        while time.monotonic() - started < 10:
            if select.select([early], [], [], 0.1)[0]:
                chunk = early.recv(65536)
                if not chunk:
                    break
                answer += chunk
            else:
                try:
                    early.sendall(b"x")  # a byte every 0.1 s: the whole body would take 500 s
                except OSError:
                    break
        assert answer.startswith(b"HTTP/1.1 413") and answer.count(b"HTTP/1.1 ") == 1, answer
        assert time.monotonic() - started < 10
        early.close()


def test_shutdown_finishes_work_in_flight_then_closes_slow_connections(predictor):
    """What Ctrl-C does (uvicorn's signal handler sets ``should_exit``) with a request being
    computed and a client stuck half-way through its body: the first is answered, the second cut
    off, and the server stops within shutdown_timeout_s."""
    from apparel.serve.server import server_options, serving_server

    app = create_app(predictor, header_timeout_s=30, body_timeout_s=30, shutdown_timeout_s=1.5)
    real_infer = app.state.batcher.infer
    app.state.batcher.infer = lambda images: (time.sleep(0.5), real_infer(images))[1]
    server = serving_server(app, **server_options(app.state.config, "127.0.0.1", 0), log_level="critical")
    with server_thread(server) as (base_url, thread):
        body = json.dumps({"instances": image_batch(1).tolist()}).encode()
        head = (b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body))
        stuck = raw_connection(base_url)
        stuck.sendall(head + body[:50])
        working = raw_connection(base_url)
        working.sendall(head + body)
        time.sleep(0.2)  # the working request is in the model now
        started = time.monotonic()
        server.should_exit = True
        answer, _ = read_until_closed(working, limit=30)
        assert answer.startswith(b"HTTP/1.1 200") and b"predictions" in answer
        # The stuck client's body timeout is 30 s: the 1.5 s shutdown bound is what closes it.
        _, seconds = read_until_closed(stuck, limit=30)
        thread.join(30)
        assert not thread.is_alive() and time.monotonic() - started < 20
        assert seconds < 20
        stuck.close()
        working.close()


def test_a_signal_to_stop_makes_grpc_refuse_new_calls_at_once_while_http_finishes(predictor):
    """gRPC said ready, and took new calls, until every HTTP connection had drained: only then did
    the lifespan's end mark the service not ready and stop it."""
    import signal

    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    from apparel.serve.server import server_options, serving_server

    app = create_app(predictor, grpc_address="127.0.0.1:0", shutdown_timeout_s=5)
    real_infer, released = app.state.batcher.infer, threading.Event()
    app.state.batcher.infer = lambda images: (released.wait(20), real_infer(images))[1]
    server = serving_server(app, **server_options(app.state.config, "127.0.0.1", 0), log_level="critical")
    try:
        with server_thread(server) as (base_url, thread):
            grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{app.state.grpc_port}")
            assert grpc.is_server_ready()
            body = json.dumps({"instances": image_batch(1).tolist()}).encode()
            working = raw_connection(base_url)
            working.sendall(b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                            b"application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            time.sleep(0.3)  # in the model now, which holds it
            server.handle_exit(signal.SIGTERM, None)  # what the signal calls
            deadline = time.monotonic() + 5
            while app.state.registry.ready and time.monotonic() < deadline:
                time.sleep(0.02)
            assert not app.state.registry.ready  # at once, not once HTTP has drained
            try:
                assert not grpc.is_server_ready()
            except InferenceServerException:
                pass  # refused: the server takes no new call
            released.set()
            answer, _ = read_until_closed(working, limit=30)
            assert answer.startswith(b"HTTP/1.1 200") and b"predictions" in answer  # the call in flight is answered
            working.close()
            grpc.close()
            thread.join(30)
            assert not thread.is_alive()
    finally:
        released.set()


# ---------------------------------------------------------------- browsers and other machines (finding 9)


def test_loopback_binds_answer_only_loopback_host_names(predictor):
    import httpx

    config = bind_settings(ServiceConfig(), "127.0.0.1", environ={})
    assert set(LOOPBACK_NAMES) <= set(config.allowed_hosts)
    assert bind_settings(ServiceConfig(), "0.0.0.0", environ={}).allowed_hosts == ()
    assert "[::1]" in bind_settings(ServiceConfig(), "::1", environ={}).allowed_hosts
    with running_server(create_app(predictor, config)) as base_url:
        port = base_url.rsplit(":", 1)[1]
        with httpx.Client(base_url=base_url, timeout=5) as http:
            for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST"):
                assert http.get("/v1/models/apparel", headers={"Host": host}).status_code == 200
            # A site whose name was re-pointed to 127.0.0.1 (DNS rebinding) sends its own name.
            rebound = http.get("/v1/models/apparel/metadata", headers={"Host": f"evil.example:{port}"})
            assert rebound.status_code == 400 and "class_names" not in rebound.text
            # Said as every client mistake is (it was the plain text "Invalid host header").
            assert "--allowed-hosts" in rebound.json()["error"] and "localhost" in rebound.json()["error"]
        # The check judged the first Host: another behind it passed, in either order (RFC 9112: a 400).
        for hosts in ((f"127.0.0.1:{port}", "evil.example"), ("evil.example", f"127.0.0.1:{port}")):
            with socket.create_connection(("127.0.0.1", int(port)), timeout=5) as raw:
                raw.sendall(b"GET /v1/models/apparel HTTP/1.1\r\n" + b"".join(
                    b"Host: " + host.encode() + b"\r\n" for host in hosts) + b"Connection: close\r\n\r\n")
                answer = b""
                while chunk := raw.recv(65536):
                    answer += chunk
            assert answer.startswith(b"HTTP/1.1 400") and b"more than one Host header" in answer, answer[:300]
        # HTTP/1.0 needs no Host, and a simple probe sends none: the address it reached names it. Not
        # HTTP/1.1, which must send one.
        for version, status in ((b"1.0", b"200"), (b"1.1", b"400")):
            with socket.create_connection(("127.0.0.1", int(port)), timeout=5) as raw:
                raw.sendall(b"GET /v2/health/live HTTP/" + version + b"\r\nConnection: close\r\n\r\n")
                answer = b""
                while chunk := raw.recv(65536):
                    answer += chunk
            assert answer.split(b" ", 2)[1] == status, answer[:300]


def test_cross_origin_posts_are_refused(predictor):
    app = create_app(predictor, allowed_origins=("https://shop.example.com",))
    files = [("files", ("a.png", garment_photo(fmt="PNG"), "image/png"))]
    with TestClient(app, base_url="http://127.0.0.1:8000") as test_client:
        for origin in ("http://evil.example", "null", "http://127.0.0.1:9999", "https://shop.example.com.evil.example"):
            response = test_client.post("/predict", files=files, headers={"Origin": origin})
            assert response.status_code == 403 and "another site" in response.json()["error"], origin
        for origin in ("http://127.0.0.1:8000", "https://shop.example.com", None):  # its own page, allowed, no browser
            headers = {"Origin": origin} if origin else {}
            assert test_client.post("/predict", files=files, headers=headers).status_code == 200, origin
        refused = post_json(test_client, {"instances": image_batch(1).tolist()}, Origin="http://evil.example")
        assert refused.status_code == 403
        # Only the first was judged: the page's own Origin first let another site's behind it pass.
        for origins in (("http://127.0.0.1:8000", "http://evil.example"), ("http://127.0.0.1:8000",) * 2):
            response = test_client.post("/predict", files=files, headers=[("Origin", origin) for origin in origins])
            assert response.status_code == 400 and "more than one Origin" in response.json()["error"], origins
        # Served beyond loopback with no --allowed-hosts, the Origin was judged by the first Host of two.
        response = test_client.post("/predict", files=files, headers=[
            ("Host", "evil.example"), ("Host", "127.0.0.1:8000"), ("Origin", "http://evil.example")])
        assert response.status_code == 400 and "more than one Host header" in response.json()["error"]


def test_metadata_shows_no_path_and_no_key(predictor):
    app = create_app(predictor, taxonomy=None, api_key="s3cret-key")
    with TestClient(app) as test_client:
        metadata = test_client.get("/v1/models/apparel/metadata", headers={"X-API-Key": "s3cret-key"}).json()
    assert "taxonomy" not in metadata["limits"] and "api_key" not in metadata["limits"]
    assert "s3cret" not in json.dumps(metadata) and "taxonomy" not in json.dumps(metadata)
    assert metadata["limits"]["max_concurrent_requests"] == 64


def test_an_api_key_is_required_on_every_route_but_health(predictor):
    app = create_app(predictor, api_key="s3cret-key")
    with TestClient(app, raise_server_exceptions=False) as test_client:
        for path in ("/v1/models/apparel", "/v1/models/apparel/metadata", "/metrics", "/", "/openapi.json", "/docs"):
            response = test_client.get(path)
            assert response.status_code == 401 and "API key" in response.json()["error"], path
            assert response.headers["www-authenticate"] == "Bearer"
            assert test_client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert test_client.get(path, headers={"Authorization": "Bearer s3cret-key"}).status_code == 200, path
        assert post_json(test_client, {"instances": image_batch(1).tolist()}).status_code == 401
        keyed = post_json(test_client, {"instances": image_batch(1).tolist()}, **{"X-API-Key": "s3cret-key"})
        assert keyed.status_code == 200
        for path in ("/v2/health/live", "/v2/health/ready"):
            assert test_client.get(path).status_code == 200


def test_the_page_signs_in_with_the_key_and_a_session_cookie(predictor):
    """With an API key, a browser gets a login form at /; the right key sets an HttpOnly,
    SameSite=Strict cookie (never the key) that opens the page, its files and its upload, and
    nothing else; a wrong key or a forged cookie is refused (#31.12)."""
    app = create_app(predictor, api_key="s3cret-key")
    browser = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    files = [("files", ("a.png", garment_photo(fmt="PNG"), "image/png"))]
    with TestClient(app, base_url="http://127.0.0.1:8000", follow_redirects=False) as test_client:
        form = test_client.get("/", headers=browser)
        assert form.status_code == 401 and 'action="/login"' in form.text and 'name="key"' in form.text
        assert "set-cookie" not in form.headers
        assert test_client.get("/").json()["error"].startswith("this server requires an API key")  # not a browser
        wrong = test_client.post("/login", data={"key": "s3cret-kex"}, headers=browser)
        assert wrong.status_code == 401 and "wrong API key" in wrong.text and "set-cookie" not in wrong.headers
        assert test_client.post("/login", content=b"key=s3cret-key",
                                headers={"Content-Type": "application/x-www-form-urlencoded",
                                         "Origin": "http://evil.example"}).status_code == 403
        signed_in = test_client.post("/login", data={"key": "s3cret-key"}, headers=browser)
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/"
        cookie = signed_in.headers["set-cookie"]
        test_client.cookies.clear()  # each request below names the cookie it brings
        attributes = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")[1:]}
        assert "httponly" in attributes and attributes["samesite"].lower() == "samesite=strict"
        assert attributes["path"] == "Path=/" and "s3cret" not in cookie
        assert "s3cret" not in signed_in.headers["location"]
        session = {"Cookie": cookie.split(";")[0]}
        assert test_client.get("/", headers=session).status_code == 200
        assert test_client.get("/static/app.js", headers=session).status_code == 200
        assert test_client.get("/v1/models/apparel/metadata", headers=session).status_code == 200
        assert test_client.post("/predict", files=files, headers=session).status_code == 200
        for path in ("/metrics", "/v1/models/apparel", "/docs", "/openapi.json"):  # the key's, not the page's
            assert test_client.get(path, headers=session).status_code == 401, path
        assert post_json(test_client, {"instances": image_batch(1).tolist()}, **session).status_code == 401
        name, value = cookie.split(";")[0].split("=", 1)
        for forged in ("s3cret-key", value[:-1] + ("0" if value[-1] != "0" else "1"), "", "é" * 64):
            forged_cookie = {"Cookie": f"{name}={forged}".encode()}
            assert test_client.get("/static/app.js", headers=forged_cookie).status_code == 401
            assert test_client.post("/predict", files=files, headers=forged_cookie).status_code == 401
    # Another app (a restarted server) has another secret: yesterday's cookie opens nothing.
    with TestClient(create_app(predictor, api_key="s3cret-key")) as restarted:
        assert restarted.get("/static/app.js", headers=session).status_code == 401


def test_without_a_key_there_is_no_login(predictor):
    with TestClient(create_app(predictor)) as test_client:
        assert test_client.get("/").status_code == 200
        assert test_client.post("/login", data={"key": "anything"}).status_code in (404, 405)


def test_the_key_comes_from_the_environment_and_exposure_is_warned(model_dir, monkeypatch, capsys):
    assert bind_settings(ServiceConfig(), "0.0.0.0", environ={"APPAREL_API_KEY": "from-env"}).api_key == "from-env"
    assert bind_settings(ServiceConfig(api_key="flag"), "0.0.0.0", environ={"APPAREL_API_KEY": "env"}).api_key == "flag"
    assert "without an API key" in exposure_warning(ServiceConfig(), "0.0.0.0")
    assert exposure_warning(ServiceConfig(api_key="k"), "0.0.0.0") is None
    assert exposure_warning(ServiceConfig(), "127.0.0.1") is None
    assert exposure_warning(ServiceConfig(), "localhost") is None
    served = {}
    monkeypatch.setattr(service_app, "serve", lambda app, **options: served.update(app=app, options=options))
    monkeypatch.delenv("APPAREL_API_KEY", raising=False)
    service_app.run_server(model_dir, host="0.0.0.0", port=0, header_timeout_s=3)
    assert "warning: serving on 0.0.0.0 without an API key" in capsys.readouterr().err
    assert served["options"]["timeout_graceful_shutdown"] == ServiceConfig().shutdown_timeout_s
    assert served["options"]["http"].settings.header_timeout_s == 3
    monkeypatch.setenv("APPAREL_API_KEY", "from-env")
    service_app.run_server(model_dir, host="0.0.0.0", port=0)
    assert "warning" not in capsys.readouterr().err
    with TestClient(served["app"]) as test_client:
        assert test_client.get("/v1/models/apparel").status_code == 401
        assert test_client.get("/v1/models/apparel", headers={"X-API-Key": "from-env"}).status_code == 200


@pytest.mark.parametrize("key", ["clé-secrète", " s3cret", "s3cret\n", "tab\tkey"])
def test_a_key_that_headers_cannot_carry_is_refused_at_start(key, monkeypatch, capsys):
    """A UTF-8 key was taken, then every request with it got 401 and gRPC metadata could not carry
    it; spaces around a key are dropped by HTTP parsers (#31.14)."""
    from apparel.cli import main

    with pytest.raises(ValueError, match="^api_key must be printable ASCII"):
        ServiceConfig(api_key=key)
    monkeypatch.delenv("APPAREL_API_KEY", raising=False)
    assert main(["serve", "--api-key", key]) == 2
    error = capsys.readouterr().err
    assert "error: api_key must be printable ASCII" in error and error.strip().endswith("(--api-key)")
    assert ServiceConfig(api_key="s3cret key-1").api_key == "s3cret key-1"


# ---------------------------------------------------------------- TensorFlow Serving details (finding 10)


def test_named_inputs_are_the_columnar_form(client, predictor):
    images = image_batch(2, seed=5)
    name = client.get("/v1/models/apparel/metadata").json()["input_name"]
    # One name whichever runtime serves it: Keras's own ("input_layer") broke the docs' examples.
    assert name == "images" != predictor.model.inputs[0].name
    response = post_json(client, {"inputs": {name: images.tolist()}})
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json()["outputs"], predictor.predict_proba(images), atol=1e-5)
    wrong = post_json(client, {"inputs": {"pixels": images.tolist()}})
    assert wrong.status_code == 422 and f"this model's input is {name!r}" in wrong.json()["error"]
    two = post_json(client, {"inputs": {name: images.tolist(), "other": []}})
    assert two.status_code == 422 and "one input" in two.json()["error"]


def test_litert_serving_shows_the_version_of_the_tflite(model_dir, tmp_path, monkeypatch):
    from apparel.inference.export import export_model

    tflite = export_model(model_dir, "litert", tmp_path / "model.tflite")
    served = {}
    monkeypatch.setattr(service_app, "serve", lambda app, **options: served.update(app=app))
    service_app.run_server(model_dir, port=0, litert=tflite)
    # A loopback bind answers loopback Host names only: not TestClient's "testserver".
    with TestClient(served["app"], base_url="http://127.0.0.1") as test_client:
        metadata = test_client.get("/v1/models/apparel/metadata").json()
        status = test_client.get("/v1/models/apparel").json()["model_version_status"][0]
    expected = hashlib.sha256(tflite.read_bytes()).hexdigest()[:12]
    assert metadata["model_version"] == expected and status["version"] == metadata["model_spec"]["version"] == "1"
    assert expected != hashlib.sha256((model_dir / artifacts.MODEL_FILE).read_bytes()).hexdigest()[:12]


@pytest.mark.parametrize("content", ["[0.9, 0.8]", '"accurate"', "null", "{not json"])
def test_a_metrics_file_that_is_not_an_object_is_ignored_with_a_warning(predictor, model_dir, tmp_path, content,
                                                                         caplog):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy(model_dir / artifacts.MODEL_FILE, run_dir / artifacts.MODEL_FILE)
    (run_dir / artifacts.METRICS_FILE).write_text(content)
    damaged = Predictor(predictor.model, run_dir, contract=predictor.contract)
    with caplog.at_level(logging.WARNING, logger="apparel.serve.app"):
        app = create_app(damaged)
    assert "accuracy is not shown" in caplog.text and str(run_dir) in caplog.text
    with TestClient(app) as test_client:
        metadata = test_client.get("/v1/models/apparel/metadata").json()
    assert metadata["test_accuracy"] is None and metadata["model_version"] is not None


def test_a_requests_photos_share_one_decode_budget(predictor):
    """Each photo may decode within max_decode_bytes; all of one request's within
    max_request_decode_bytes together: more photos than that is a 413, not a server holding GBs."""
    photo = garment_photo(size=(400, 300))  # decodes to 400×300×4 bytes = 480,000 (a reduced JPEG costs less)
    limits = dict(max_request_decode_bytes=1_000_000, max_files=8)
    with TestClient(create_app(predictor, **limits), base_url="http://127.0.0.1") as client:
        files = [("files", (f"{i}.png", photo_png(photo), "image/png")) for i in range(3)]
        response = client.post("/predict", files=files[:2])
        assert response.status_code == 200, response.text
        response = client.post("/predict", files=files)  # 1,440,000 bytes together
        assert response.status_code == 413 and "send fewer or smaller photos" in response.json()["error"]
        instances = [{"b64": base64.b64encode(photo_png(photo)).decode()}] * 3
        response = client.post(PREDICT, json={"instances": instances})
        assert response.status_code == 413, response.text
    with TestClient(create_app(predictor, max_decode_bytes=400_000), base_url="http://127.0.0.1") as client:
        response = client.post("/predict", files=files[:1])
        assert response.status_code == 422 and "over the limit of 400,000 bytes per image" in response.json()["error"]


def photo_png(jpeg: bytes) -> bytes:
    """The photo as a PNG, whose decode cost is its full size (a JPEG is decoded reduced)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("body", [
    {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1], "parameters": "x"}]},
    {"inputs": [{"name": "x", "shape": [1], "datatype": ["FP32"], "data": [1]}]},
    {"inputs": [{"name": ["x"], "shape": [1], "datatype": "FP32", "data": [1]}]},
    {"parameters": [1], "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]},
    {"outputs": [{"name": ["probabilities"]}], "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]},
    {"outputs": [{"name": "probabilities", "parameters": 3}], "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]},
    {"id": 7, "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]},
    {"parameters": {"binary_data_output": "no"}, "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]},
    {"outputs": [{"name": "probabilities", "parameters": {"binary_data": 0}}],
     "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]},
], ids=["input parameters", "datatype list", "name list", "request parameters", "output name list", "output parameters",
        "id number", "binary_data_output string", "binary_data number"])
def test_v2_bodies_of_the_wrong_structure_are_422(client, body):
    response = client.post("/v2/models/apparel/infer", json=body)
    assert response.status_code == 422, response.text


@pytest.mark.parametrize("body, header, message", [
    ('{"inputs": []}', "9" * 4301, f"Inference-Header-Content-Length '{'9' * 40}…' is not"),
    ('{"inputs": []}', "0" * 4300 + "5", "the request body is not valid JSON"),  # its first 5 bytes
    ('{"inputs": []}', "-1", "Inference-Header-Content-Length '-1' is not a length within the body"),
    ('{"inputs": []}', "0", "Inference-Header-Content-Length '0' leaves no JSON before the binary data"),
    ('{"inputs": [' + "1" * 5000 + "]}", None, "a number with thousands of digits"),
    ('{"inputs": ' + "[" * 50_000 + "]" * 50_000 + "}", None, "nested too deeply"),
    ("", None, 'the request body is empty; send a JSON object such as {"inputs": '),
], ids=["header of thousands of digits", "header of leading zeros", "negative header", "zero header",
        "number of thousands of digits",
        "nested too deeply", "empty"])
def test_a_v2_body_or_length_header_python_cannot_read_is_a_400_that_says_what_to_send(client, body, header, message):
    """What Python refuses to read (an int of over 4,300 digits, JSON nested past its recursion
    limit) is the client's mistake, said as REST says it, never a 500 or Python's advice to the server."""
    headers = {"Content-Type": "application/json", **({"Inference-Header-Content-Length": header} if header else {})}
    response = client.post("/v2/models/apparel/infer", content=body, headers=headers)
    assert response.status_code == 400 and message in response.json()["error"], response.text
    assert "sys.set_int_max_str_digits" not in response.text and "recursion" not in response.text


def test_a_v2_image_sent_without_its_batch_axis_is_told_its_shape_not_that_it_is_too_many(client):
    """[784] (one image's numbers flat) read as 784 images: a 413 "split the request" for a request
    that needed its shape mended."""
    input_name = client.get("/v2/models/apparel").json()["inputs"][0]["name"]
    for shape in ([784], [28, 28]):
        body = {"inputs": [{"name": input_name, "shape": shape, "datatype": "FP32", "data": [0.5] * 784}]}
        response = client.post("/v2/models/apparel/infer", json=body)
        assert response.status_code == 422, response.text
        assert f"must have shape [N, 28, 28] (28×28 per image), got {shape}" in response.json()["error"]
    many = {"inputs": [{"name": input_name, "shape": [300, 28, 28], "datatype": "FP32", "data": [0.5] * 784}]}
    assert client.post("/v2/models/apparel/infer", json=many).status_code == 413  # the right shape, too many
    photos = {"inputs": [{"name": input_name, "shape": [300, 1], "datatype": "BYTES", "data": ["eA=="]}]}
    response = client.post("/v2/models/apparel/infer", json=photos)
    assert response.status_code == 422 and "shape [N]; got shape [300, 1]" in response.json()["error"]


def test_a_v2_id_that_json_cannot_carry_back_is_refused(client):
    """The id is echoed in the answer: a NaN or 1e999 there made an answer no strict JSON parser reads."""
    input_name = client.get("/v2/models/apparel").json()["inputs"][0]["name"]
    data = ",".join(["0.5"] * 784)
    for value in ("NaN", "1e999"):
        body = f'{{"id": {value}, "inputs": [{{"name": "{input_name}", "shape": [1, 28, 28], "datatype": "FP32", "data": [{data}]}}]}}'
        response = client.post("/v2/models/apparel/infer", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 422 and '"id" must be a string' in response.json()["error"], response.text
    body = body.replace('"id": 1e999', '"id": "order-7"')
    answer = client.post("/v2/models/apparel/infer", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 200 and answer.json()["id"] == "order-7"
    # null, as pydantic-made clients send an unset optional field, is no id (and no flag) at all.
    body = body.replace('"id": "order-7"', '"id": null, "parameters": {"binary_data_output": null}')
    answer = client.post("/v2/models/apparel/infer", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 200 and answer.json()["id"] is None


def test_a_request_log_that_cannot_be_written_is_refused_at_start_up(tmp_path):
    from apparel.errors import ParameterError
    from apparel.serve.telemetry import RequestLog

    with pytest.raises(ParameterError, match="request_log .* cannot be appended to"):
        RequestLog(tmp_path / "no-such-folder" / "requests.jsonl", 1.0)
    log = RequestLog(tmp_path / "requests.jsonl", 1.0)
    (tmp_path / "requests.jsonl").unlink()
    (tmp_path / "requests.jsonl").mkdir()  # gone from under the server: a warning, not a failed answer
    log.record(model="m", status=200)


def v2_body(count: int, outputs=None, **parameters) -> dict:
    images = np.random.default_rng(0).random((count, 28, 28)).round(3)
    body = {"inputs": [{"name": "pixels", "shape": [count, 28, 28], "datatype": "FP32", "data": images.ravel().tolist()}]}
    if outputs is not None:
        body["outputs"] = [{"name": name} for name in outputs]
    return {**body, **parameters}


@pytest.mark.parametrize("outputs, message", [
    (["probabilities"] * 20, "'probabilities' is asked for 20 times"),
    (["label", "probabilities", "label"], "'label' is asked for 2 times"),
    (["probabilities", "logits"], "unknown output 'logits'"),
])
def test_v2_outputs_named_twice_or_unknown_are_refused_before_the_model_runs(client, predictor, outputs, message,
                                                                             monkeypatch):
    """Each entry of "outputs" was a full copy of the answer: 10,000 of one name made 549 MB (#31.8)."""
    input_name = client.get("/v2/models/apparel").json()["inputs"][0]["name"]
    calls = []

    async def predict(images):
        calls.append(len(images))

    monkeypatch.setattr(client.app.state.batcher, "predict", predict)
    body = v2_body(1, outputs)
    body["inputs"][0]["name"] = input_name
    response = client.post("/v2/models/apparel/infer", json=body)
    assert response.status_code == 422 and message in response.json()["error"], response.text
    assert not calls


def test_a_v2_answer_over_max_response_bytes_is_refused_before_it_is_built(predictor, monkeypatch):
    """The answer's size is reckoned from the images and the outputs asked for, before the model
    runs; one that fits is built on a worker thread once it is large, never on the event loop (#31.8)."""
    from apparel.serve import v2

    recording, built_on_loop = noting_the_loop(v2.infer_response)
    monkeypatch.setattr(v2, "infer_response", recording)
    with TestClient(create_app(predictor, **LIMITS, max_response_bytes=2_000)) as small:
        input_name = small.get("/v2/models/apparel").json()["inputs"][0]["name"]
        too_big = v2_body(8)
        too_big["inputs"][0]["name"] = input_name
        response = small.post("/v2/models/apparel/infer", json=too_big)
        assert response.status_code == 413 and "send fewer instances" in response.json()["error"], response.text
        assert built_on_loop == []
        one = v2_body(1, ["probabilities", "label"])
        one["inputs"][0]["name"] = input_name
        response = small.post("/v2/models/apparel/infer", json=one)
        assert response.status_code == 200 and len(response.content) <= 2_000, response.text
        monkeypatch.setattr(v2, "LARGE_ANSWER", 0)  # every answer "large": off the loop
        response = small.post("/v2/models/apparel/infer", json=one)
        assert response.status_code == 200
    assert built_on_loop == [True, False]


def test_pixels_must_be_numbers_of_their_datatype(client):
    """numpy read a JSON true as 1, a string "0.5" as 0.5 and a UINT8 300 as a count mistake (#31.15)."""
    input_name = client.get("/v2/models/apparel").json()["inputs"][0]["name"]
    pixels = np.full((1, 28, 28), 0.5).tolist()
    pixels[0][3][4] = True
    response = post_json(client, {"instances": pixels})
    assert response.status_code == 422 and "true or false" in response.json()["error"], response.text

    def v2(datatype, data):
        tensor = {"name": input_name, "shape": [1, 28, 28], "datatype": datatype, "data": data}
        return client.post("/v2/models/apparel/infer", json={"inputs": [tensor]})

    for data in (pixels, [True] * 784, ["0.5"] * 784, [0.5] * 783 + ["0.5"]):
        response = v2("FP32", data)
        assert response.status_code == 422 and "numbers" in response.json()["error"], (data[-1], response.text)
    response = v2("UINT8", [300] + [0] * 783)
    assert response.status_code == 422 and "0 to 255, found 0 to 300" in response.json()["error"], response.text
    response = v2("UINT8", [0.5] * 784)
    assert response.status_code == 422 and "whole numbers" in response.json()["error"], response.text
    response = v2("UINT8", [0] * 783)
    assert response.status_code == 422 and "784 UINT8 numbers" in response.json()["error"], response.text
    assert v2("UINT8", [255] * 784).status_code == 200
    assert v2("FP32", [0.5] * 784).status_code == 200
    # A boolean elsewhere in the request is no pixel: binary_data_output is one.
    tensor = {"name": input_name, "shape": [1, 28, 28], "datatype": "FP32", "data": [0.5] * 784}
    response = client.post("/v2/models/apparel/infer", json={"inputs": [tensor], "parameters": {"binary_data_output": False}})
    assert response.status_code == 200, response.text


def test_serve_says_a_port_is_taken_before_loading_and_never_that_it_serves(monkeypatch, capsys):
    """`apparel serve --port 1` said "serving on http://127.0.0.1:1/" before it failed to bind (#31.6)."""
    from apparel.cli import main

    def no_load(*args, **kwargs):
        raise AssertionError("the models were loaded before the port was checked")

    monkeypatch.setattr(service_app, "served_models", no_load)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    error = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in error and "(--port, --host)" in error
    assert "serving on" not in error


def test_a_long_url_or_long_headers_are_refused_as_soon_as_seen(predictor):
    """No size limit held a request's line and headers before the key was checked: now a URL past
    max_header_bytes is a 414 and headers past it a 431, the connection closed, before the app
    (and its key check) sees the request (#31.9)."""
    app = create_app(predictor, **QUICK, api_key="s3cret", max_header_bytes=8_000)
    key = b"X-API-Key: s3cret\r\n"
    with running_server(app) as base_url:
        def answer(*pieces: bytes) -> bytes:
            connection = raw_connection(base_url)
            for piece in pieces:
                connection.sendall(piece)
            received, _ = read_until_closed(connection, limit=10)
            connection.close()
            return received

        status = lambda received: received.split(b"\r\n", 1)[0]
        long_url = b"GET /v1/models/apparel?" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + key + b"\r\n"
        assert status(answer(long_url)) == b"HTTP/1.1 414 URI Too Long"
        long_header = b"GET /v1/models/apparel HTTP/1.1\r\nHost: 127.0.0.1\r\n" + key + b"X-Big: " + b"b" * 10_000 + b"\r\n\r\n"
        assert status(answer(long_header)) == b"HTTP/1.1 431 Request Header Fields Too Large"
        many = b"".join(b"X-Many-%d: %s\r\n" % (index, b"m" * 90) for index in range(100))
        assert status(answer(b"GET /v1/models/apparel HTTP/1.1\r\nHost: 127.0.0.1\r\n" + many + b"\r\n")).startswith(
            b"HTTP/1.1 431")
        # Refused while the header is still coming: the server does not wait for its end.
        unfinished = b"GET /v1/models/apparel HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"b" * 12_000
        assert status(answer(unfinished)).startswith(b"HTTP/1.1 431")
        fits = b"GET /v1/models/apparel HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + key
        assert status(answer(fits + b"X-Some: " + b"s" * 4_000 + b"\r\n\r\n")) == b"HTTP/1.1 200 OK"
        assert status(answer(b"GET /v1/models/apparel HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")) \
            == b"HTTP/1.1 401 Unauthorized"


def test_a_boolean_setting_beside_the_pixels_is_not_a_pixel():
    """The screen and the walk agree: only a boolean in a list is a pixel (#31.15)."""
    from apparel.serve.payloads import RequestError, refuse_booleans

    body = b'{"instances": [[0.1]], "x": true, "s": "[true"}'  # the string makes the screen look
    refuse_booleans(json.loads(body), body)  # a setting: accepted
    with pytest.raises(RequestError):
        refuse_booleans({"instances": [[0.1, True]]}, b'{"instances": [[0.1, true]]}')
