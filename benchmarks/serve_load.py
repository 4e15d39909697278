"""Load test of `apparel serve`: throughput and latency at 1, 16 and 64 concurrent clients, then overload.

Starts the server (``python -m apparel serve``) on 127.0.0.1 (port 0: the port it bound is read
from its log), warms it up, then at each concurrency sends single-instance 28×28 JSON requests to
``POST /v1/models/apparel:predict`` over keep-alive connections until ``--requests`` are done or
``--seconds`` have passed, whichever comes first. Prints req/s, p50/p99 latency, errors and the
mean micro-batch size per level; the last line is a JSON object (``rps_16``, ``p99_ms_16``,
``errors``, …), also written to ``--out`` if given.

The overload level then starts a second server whose cap on concurrent requests
(``--max-concurrent-requests``) is ``--overload-cap`` and sends from ``--overload-clients``
clients, each waiting as a 503's Retry-After asks (``--overload-retry at-once``: asking again at
once, the worst case): it reports the accepted (200) req/s, the share of 503s, the p99 latency of
the accepted requests, and errors other than 503, which must be none.

    .venv/bin/python benchmarks/serve_load.py                       # the shipped model
    .venv/bin/python benchmarks/serve_load.py --model-dir runs/reference --seconds 5
    .venv/bin/python benchmarks/serve_load.py --clients 16 --overload-clients 256 --overload-cap 16
    .venv/bin/python benchmarks/serve_load.py --protocols           # REST, V2 HTTP, gRPC; version swaps
    .venv/bin/python benchmarks/serve_load.py --protocols --load-generator h2load --rounds 5
    .venv/bin/python benchmarks/serve_load.py --uploads --load-generator h2load --rounds 10 --seconds 4   # photo files

``--protocols`` serves both shipped models from a temporary model repository (gRPC on a port free
when it is picked) and measures 16 clients (``--protocol-clients``) of each protocol on each
model, single-image requests of 0–255 integers (JSON for REST and V2, raw ``UINT8`` for gRPC), the
protocols taking turns for ``--rounds`` rounds (the rounds of each pooled, and gRPC's req/s over
REST's printed), then a level of REST load on the Fashion-MNIST model during which ``--swaps`` new
versions appear, one every ``--swap-every`` s: failed requests (the target is 0) and the seconds
each took to serve. ``--load-generator h2load`` sends the protocol levels from nghttp2's h2load
instead of this process (``make load-tools``): HTTP/1.1 for REST and V2, HTTP/2 for gRPC.
The protocols take turns in each round, in the opposite order in every other round.

``--uploads`` starts a plain ``apparel serve`` (the shipped models, the store model the default, on
the default runtime) with ``--grpc-port``, and sends one photo file a request from 16 clients
(``--protocol-clients``) over three protocols taking turns: a REST multipart upload to ``POST
/predict``, REST TF Serving JSON ``{"instances": [{"b64": …}]}`` and a gRPC ``ModelInfer`` with
the file as a ``BYTES`` element. Each round sends another real JPEG of the small clothing dataset's
validation split (``--datasets``), the same over every protocol. It prints photos/s per protocol and
``rest_upload/grpc`` and ``rest_b64/grpc``: pooled, round by round and their median, and by the
server's CPU a photo (the ratio the rates would have if the server had the cores to itself).

The load generator shares the machine's cores with the server, so it is kept lean: each client is a
coroutine speaking HTTP/1.1 over its own asyncio connection, with the request bytes built once
(``--client httpx`` uses httpx instead, to cross-check; it spends several times more CPU per request).
The Python gRPC client (grpc.aio) still costs about twice the CPU of the raw HTTP client per request,
on the cores the server needs; h2load costs every protocol the same ~0.05 ms.
Traffic goes to 127.0.0.1 only, and every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from apparel.artifacts import shipped_model_dir

HOST = "127.0.0.1"
PATH = "/v1/models/apparel:predict"
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class LevelResult:
    clients: int  # concurrent clients, each with its own keep-alive connection
    requests: int  # requests answered (any status) in the timed window
    errors: int  # non-200 answers (503s included) and failed connections
    seconds: float  # length of the timed window
    rps: float  # requests answered per second
    p50_ms: float  # median latency
    p99_ms: float  # 99th percentile latency
    accepted_rps: float  # 200 answers per second
    accepted_p99_ms: float  # 99th percentile latency of the 200 answers
    busy_share: float  # share of the answers that were 503 (refused: the server was full)
    other_errors: int  # errors that are not 503s (other statuses, failed connections): 0 even under overload
    mean_batch: float | None  # images per model call on the server during the window
    server_cpu_ms: float | None  # server process CPU time (all threads) per answered request
    client_cpu_ms: float  # load generator CPU time per answered request


def request_bytes(port: int, seed: int = 0) -> bytes:
    """One ``:predict`` request of a single 28×28 image of 0–255 integers, ready to write."""
    image = np.random.default_rng(seed).integers(0, 256, size=(28, 28))
    body = json.dumps({"instances": [image.tolist()]}, separators=(",", ":")).encode()
    head = (f"POST {PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


async def back_off(retry_after: str | bytes | None, stop: float) -> None:
    """Wait as a 503's Retry-After asks (seconds), but not past ``stop``."""
    try:
        seconds = float(retry_after)
    except (TypeError, ValueError):
        return
    await asyncio.sleep(max(0.0, min(seconds, stop - time.perf_counter())))


async def raw_client(port: int, request: bytes, stop: float, budget: list[int], answers: list[tuple[float, int]],
                     errors: list[int], honour_retry_after: bool = False):
    """Send ``request`` again and again on one connection until ``stop`` or the shared budget runs
    out; each answer is recorded as (seconds, status), each failed connection in ``errors``. After
    a 503 the client waits for its Retry-After if ``honour_retry_after``, else it asks again at once."""
    reader = writer = None
    try:
        while budget[0] > 0 and time.perf_counter() < stop:
            budget[0] -= 1
            if writer is None:
                reader, writer = await asyncio.open_connection(HOST, port)
            started = time.perf_counter()
            try:
                writer.write(request)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                status = int(head[9:12])
                length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
                if length is None:
                    raise ValueError("response without Content-Length")
                await reader.readexactly(int(length.group(1)))
            except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError):
                errors[0] += 1
                writer.close()
                reader = writer = None
                continue
            answers.append((time.perf_counter() - started, status))
            if b"connection: close" in head.lower():
                writer.close()
                reader = writer = None
            if status == 503 and honour_retry_after:
                retry_after = re.search(rb"(?i)\r\nretry-after: *(\d+)", head)
                await back_off(retry_after and retry_after.group(1), stop)
    finally:
        if writer is not None:
            writer.close()


async def httpx_client(port: int, request: bytes, stop: float, budget: list[int], answers: list[tuple[float, int]],
                       errors: list[int], honour_retry_after: bool = False):
    import httpx

    body = request.split(b"\r\n\r\n", 1)[1]
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", timeout=10) as client:
        while budget[0] > 0 and time.perf_counter() < stop:
            budget[0] -= 1
            started = time.perf_counter()
            try:
                response = await client.post(PATH, content=body, headers={"Content-Type": "application/json"})
            except httpx.HTTPError:
                errors[0] += 1
                continue
            answers.append((time.perf_counter() - started, response.status_code))
            if response.status_code == 503 and honour_retry_after:
                await back_off(response.headers.get("retry-after"), stop)


def batch_totals(port: int) -> tuple[float, float] | None:
    """(sum, count) of the server's ``apparel_batch_size`` histogram."""
    import urllib.request

    try:
        text = urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return None
    values = dict(re.findall(r"^apparel_batch_size_(sum|count) ([0-9.e+]+)$", text, re.M))
    return (float(values["sum"]), float(values["count"])) if len(values) == 2 else None


class CpuMeter:
    """CPU time spent by the server process and by the load generator since the meter was made: this
    process, or (``children``) the child processes it ran to their end, such as h2load."""

    def __init__(self, server_pid: int | None, children: bool = False):
        self.server_pid, self.children = server_pid, children
        self.server, self.client = process_cpu_seconds(server_pid), self.client_seconds()

    def client_seconds(self) -> float:
        if not self.children:
            return time.process_time()
        import resource

        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def spent(self) -> tuple[float | None, float]:
        """(server, client) CPU seconds since the meter was made."""
        after = process_cpu_seconds(self.server_pid)
        server = None if self.server is None or after is None else after - self.server
        return server, self.client_seconds() - self.client


def process_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process, all threads (Linux ``/proc``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError, TypeError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Sample:
    """One timed window of load, before it is summarised (the rounds of a protocol pool theirs)."""

    milliseconds: np.ndarray  # latency of each answer
    statuses: np.ndarray  # HTTP status of each answer (200 for a gRPC OK)
    errors: int  # requests without an answer, or answered with a failure the status does not show
    seconds: float
    server_cpu_s: float | None
    client_cpu_s: float


def answered_sample(answers: list[tuple[float, int]], errors: int, seconds: float, cpu: CpuMeter) -> Sample:
    """The ``Sample`` of the Python clients' (seconds, status) answers."""
    server_s, client_s = cpu.spent()
    return Sample(np.array([latency for latency, _ in answers]) * 1000,
                  np.array([status for _, status in answers], dtype=int), errors, seconds, server_s, client_s)


def summarise(clients: int, samples: list[Sample], mean_batch: float | None = None) -> LevelResult:
    """One ``LevelResult`` of one or more windows: their answers pooled, req/s over their summed time."""
    milliseconds = np.concatenate([sample.milliseconds for sample in samples])
    statuses = np.concatenate([sample.statuses for sample in samples])
    seconds = sum(sample.seconds for sample in samples)
    answered = len(milliseconds)
    accepted = milliseconds[statuses == 200]
    busy = int((statuses == 503).sum())
    failed = sum(sample.errors for sample in samples) + answered - len(accepted)
    server = [sample.server_cpu_s for sample in samples]
    server_cpu_ms = None if None in server else round(1000 * sum(server) / max(1, answered), 3)
    client_cpu_ms = round(1000 * sum(sample.client_cpu_s for sample in samples) / max(1, answered), 3)
    return LevelResult(clients, answered, failed, round(seconds, 3), round(answered / seconds, 1),
                       percentile(milliseconds, 50), percentile(milliseconds, 99),
                       round(len(accepted) / seconds, 1), percentile(accepted, 99),
                       round(busy / max(1, answered), 4), failed - busy, mean_batch, server_cpu_ms, client_cpu_ms)


async def run_level(port: int, clients: int, seconds: float, max_requests: int, client: str,
                    server_pid: int | None = None, honour_retry_after: bool = False) -> LevelResult:
    request = request_bytes(port)
    worker = raw_client if client == "raw" else httpx_client
    answers: list[tuple[float, int]] = []
    errors, budget = [0], [max_requests]
    before = batch_totals(port)
    cpu = CpuMeter(server_pid)
    started = time.perf_counter()
    await asyncio.gather(*(worker(port, request, started + seconds, budget, answers, errors, honour_retry_after)
                           for _ in range(clients)))
    elapsed = time.perf_counter() - started
    sample = answered_sample(answers, errors[0], elapsed, cpu)
    after = batch_totals(port)
    mean_batch = None
    if before and after and after[1] > before[1]:
        mean_batch = round((after[0] - before[0]) / (after[1] - before[1]), 2)
    return summarise(clients, [sample], mean_batch)


GRPC_INFER = "/inference.GRPCInferenceService/ModelInfer"


def protocol_body(protocol: str, model: str, shape: tuple[int, ...], input_name: str) -> tuple[str, str, bytes]:
    """(path, content type, body) of one single-image request of ``protocol``: JSON for REST and V2
    HTTP, a serialized ``ModelInferRequest`` with raw ``UINT8`` contents for gRPC."""
    image = np.random.default_rng(0).integers(0, 256, size=shape).astype(np.uint8)
    if protocol == "grpc":
        from tritonclient.grpc import service_pb2

        request = service_pb2.ModelInferRequest(model_name=model)
        request.inputs.add(name=input_name, datatype="UINT8", shape=[1, *shape])
        request.raw_input_contents.append(image.tobytes())
        return GRPC_INFER, "application/grpc", request.SerializeToString()
    if protocol == "rest":
        path, payload = f"/v1/models/{model}:predict", {"instances": [image.tolist()]}
    else:
        path = f"/v2/models/{model}/infer"
        payload = {"inputs": [{"name": input_name, "shape": [1, *shape], "datatype": "UINT8",
                               "data": image.ravel().tolist()}]}
    return path, "application/json", json.dumps(payload, separators=(",", ":")).encode()


async def grpc_client(call, request: bytes, stop: float, budget: list[int], answers: list[tuple[float, int]],
                      errors: list[int], honour_retry_after: bool = False):
    """The gRPC twin of ``raw_client``: one call at a time on the shared channel, the request
    serialized once and the answer left as bytes (as ``raw_client`` leaves its JSON unparsed)."""
    import grpc

    while budget[0] > 0 and time.perf_counter() < stop:
        budget[0] -= 1
        started = time.perf_counter()
        try:
            await call(request, timeout=10)
        except grpc.aio.AioRpcError:
            errors[0] += 1
            continue
        answers.append((time.perf_counter() - started, 200))


async def python_sample(protocol: str, model: str, http_port: int, grpc_port: int, clients: int, seconds: float,
                        max_requests: int, shape, input_name: str, server_pid: int | None = None,
                        request: tuple[str, str, bytes] | None = None) -> Sample:
    """``clients`` Python clients (``raw_client``, or ``grpc_client`` on one grpc.aio channel).
    ``request``: (path, content type, body) to send instead of ``protocol_body``'s array."""
    path, content_type, body = request or protocol_body(protocol, model, shape, input_name)
    answers: list[tuple[float, int]] = []
    errors, budget = [0], [max_requests]
    cpu = CpuMeter(server_pid)
    started = time.perf_counter()
    if protocol == "grpc":
        import grpc

        async with grpc.aio.insecure_channel(f"{HOST}:{grpc_port}") as channel:
            call = channel.unary_unary(path)  # no serializers: bytes in, bytes out
            await asyncio.gather(*(grpc_client(call, body, started + seconds, budget, answers, errors)
                                   for _ in range(clients)))
    else:
        request = (f"POST {path} HTTP/1.1\r\nHost: {HOST}:{http_port}\r\nContent-Type: {content_type}\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        await asyncio.gather(*(raw_client(http_port, request, started + seconds, budget, answers, errors)
                               for _ in range(clients)))
    return answered_sample(answers, errors[0], time.perf_counter() - started, cpu)


def prediction_counts(port: int, model: str, protocol: str) -> dict[str, float]:
    """The server's ``apparel_predictions_total`` of ``model`` over ``protocol``, by status (all versions)."""
    import urllib.request

    text = urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=10).read().decode()
    counts: dict[str, float] = {}
    for labels, value in re.findall(r"^apparel_predictions_total\{([^}]*)\} ([0-9.e+]+)$", text, re.M):
        fields = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if fields.get("model") == model and fields.get("protocol") == protocol:
            counts[fields["status"]] = counts.get(fields["status"], 0.0) + float(value)
    return counts


def h2load_sample(protocol: str, model: str, http_port: int, grpc_port: int, clients: int, seconds: float,
                  shape, input_name: str, server_pid: int | None = None, rps: float | None = None,
                  request: tuple[str, str, bytes] | None = None) -> Sample:
    """``clients`` concurrent requests from ``h2load`` (nghttp2's C load generator): HTTP/1.1 with a
    connection a client for REST and V2, one HTTP/2 connection of ``clients`` streams for gRPC (as a
    grpc channel). It costs the same little CPU for every protocol, so the cores it shares with the
    server are shared alike. h2load cannot read gRPC trailers, so the server's own count of OK
    answers over gRPC is checked against the answers h2load saw. ``rps``: this many requests a second
    in all, spread over the clients, instead of each client asking again as soon as it is answered.
    ``request``: (path, content type, body) to send instead of ``protocol_body``'s array."""
    path, content_type, body = request or protocol_body(protocol, model, shape, input_name)
    if protocol == "grpc":
        body = b"\0" + len(body).to_bytes(4, "big") + body  # gRPC's frame: not compressed, length
        url, connection_flags = f"http://{HOST}:{grpc_port}{path}", ["--clients", "1", "--max-concurrent-streams",
                                                                  str(clients), "--header", "te: trailers"]
    else:
        url, connection_flags = f"http://{HOST}:{http_port}{path}", ["--h1", "--clients", str(clients),
                                                                  "--max-concurrent-streams", "1"]
    if rps is not None:
        connection_flags += ["--rps", f"{rps / clients:g}"]
    with tempfile.TemporaryDirectory() as folder:
        body_file, log_file = Path(folder) / "body", Path(folder) / "log.tsv"
        body_file.write_bytes(body)
        before = prediction_counts(http_port, model, protocol) if protocol == "grpc" else {}
        cpu = CpuMeter(server_pid, children=True)
        started = time.perf_counter()
        run = subprocess.run(["h2load", *connection_flags, "--duration", f"{round(seconds * 1000)}ms", "--data",
                              str(body_file), "--header", f"content-type: {content_type}", "--log-file",
                              str(log_file), url], capture_output=True, text=True, timeout=seconds + 60)
        elapsed = time.perf_counter() - started
        server_s, client_s = cpu.spent()
        after = prediction_counts(http_port, model, protocol) if protocol == "grpc" else {}
        if run.returncode != 0:
            raise SystemExit(f"h2load failed ({run.returncode}): {run.stderr or run.stdout}")
        rows = [line.split("\t") for line in log_file.read_text().splitlines() if line.strip()]
    # The timed window is h2load's own (--duration), not the process's start-up and shutdown.
    window = re.search(r"finished in ([0-9.]+)(m?s)", run.stdout)
    if window:
        elapsed = float(window.group(1)) / (1000 if window.group(2) == "ms" else 1)
    counts = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                       r"(\d+) errored, (\d+) timeout", run.stdout)
    unanswered = int(counts.group(6)) + int(counts.group(7)) if counts else 0
    statuses = np.array([int(status) for _, status, _ in rows], dtype=int)
    milliseconds = np.array([int(micro) / 1000 for _, _, micro in rows])
    # A request still in flight when h2load stops may be counted by the server but not by h2load.
    ok = after.get("200", 0.0) - before.get("200", 0.0)
    refused_unseen = max(0, int((statuses == 200).sum()) - int(ok)) if protocol == "grpc" else 0
    if refused_unseen:  # which of the 200s were gRPC failures is not known: status 0 for as many
        statuses[np.flatnonzero(statuses == 200)[:refused_unseen]] = 0
    return Sample(milliseconds, statuses, unanswered, elapsed, server_s, client_s)


async def protocol_sample(protocol: str, model: str, http_port: int, grpc_port: int, clients: int,
                          seconds: float, max_requests: int, shape, input_name: str,
                          server_pid: int | None = None, generator: str = "python",
                          request: tuple[str, str, bytes] | None = None) -> Sample:
    """``clients`` clients of one protocol on one model for ``seconds``, from ``generator``; each
    sends ``request`` (path, content type, body; gRPC when ``protocol`` is ``grpc``), by default
    ``protocol_body``'s single array."""
    if generator == "h2load":
        return await asyncio.to_thread(h2load_sample, protocol, model, http_port, grpc_port, clients, seconds,
                                       shape, input_name, server_pid, request=request)
    return await python_sample(protocol, model, http_port, grpc_port, clients, seconds, max_requests,
                               shape, input_name, server_pid, request=request)


async def run_protocol_level(protocol: str, model: str, http_port: int, grpc_port: int, clients: int,
                             seconds: float, max_requests: int, shape, input_name: str,
                             server_pid: int | None = None, generator: str = "python",
                             request: tuple[str, str, bytes] | None = None) -> LevelResult:
    """One window of ``protocol_sample``: req/s, p50, p99, errors, and the CPU each side spent per
    request (client and server share the machine's cores)."""
    return summarise(clients, [await protocol_sample(protocol, model, http_port, grpc_port, clients, seconds,
                                                     max_requests, shape, input_name, server_pid, generator,
                                                     request)])


def free_port() -> int:
    """A port free now, for the server's gRPC (its HTTP port is chosen by the server itself)."""
    import socket

    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def measure_protocols(args) -> dict:
    """REST, V2 HTTP and gRPC at ``--protocol-clients`` on both shipped models, served from a
    temporary model repository; then the swap level: ``--swaps`` new versions of the Fashion-MNIST
    model, one every ``--swap-every`` s, under the same load over REST, counting failed requests."""
    import urllib.request

    summary = {}
    with tempfile.TemporaryDirectory() as folder:
        repository = Path(folder)
        for name, source in (("fashion-mnist", shipped_model_dir("default")), ("photos", shipped_model_dir("photos"))):
            shutil.copytree(source, repository / name / "1")
        grpc_port = free_port()
        server = start_server(None, ["--model-repository", str(repository), "--grpc-port", str(grpc_port),
                                     "--poll-interval-s", str(args.poll_interval), *args.server_arg])
        try:
            port = wait_ready(server)
            for model in ("fashion-mnist", "photos"):
                metadata = json.load(urllib.request.urlopen(f"http://{HOST}:{port}/v2/models/{model}"))
                shape, input_name = tuple(metadata["inputs"][0]["shape"][1:]), metadata["inputs"][0]["name"]
                summary.update(compare_protocols(args, model, port, grpc_port, shape, input_name, server.pid))
            if args.swaps:
                summary.update(swap_level(args, repository, port, grpc_port))
        finally:
            stop_server(server)
    return summary


PROTOCOLS = ("rest", "v2", "grpc")


def compare_protocols(args, model: str, port: int, grpc_port: int, shape, input_name: str, server_pid: int) -> dict:
    """Each protocol on ``model`` for ``--rounds`` rounds (``take_turns``), the rounds of a protocol pooled."""
    level = functools.partial(protocol_sample, model=model, http_port=port, grpc_port=grpc_port,
                              clients=args.protocol_clients, max_requests=args.requests, shape=shape,
                              input_name=input_name, generator=args.load_generator, server_pid=server_pid)
    samples = take_turns(args, PROTOCOLS, lambda protocol, _, seconds: asyncio.run(level(protocol, seconds=seconds)),
                         model)
    summary = {}
    for protocol in PROTOCOLS:
        result = summarise(args.protocol_clients, samples[protocol])
        key = f"{protocol}_{model}"
        summary.update({f"rps_{key}": result.rps, f"p50_ms_{key}": result.p50_ms, f"p99_ms_{key}": result.p99_ms,
                        f"errors_{key}": result.errors, f"server_cpu_ms_{key}": result.server_cpu_ms,
                        f"client_cpu_ms_{key}": result.client_cpu_ms})
        print(f"{protocol:>4} {model:<13} {args.protocol_clients} clients ({args.load_generator}, {args.rounds} x "
              f"{args.seconds:g} s): {result.rps:8.1f} req/s  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  "
              f"errors {result.errors}  CPU ms/request server {result.server_cpu_ms} client {result.client_cpu_ms}",
              flush=True)
    summary[f"grpc_over_rest_{model}"] = round(summary[f"rps_grpc_{model}"] / summary[f"rps_rest_{model}"], 3)
    print(f"gRPC / REST on {model}: {summary[f'grpc_over_rest_{model}']:.3f}", flush=True)
    return summary


def take_turns(args, protocols: tuple[str, ...], sample, what: str) -> dict[str, list[Sample]]:
    """Each protocol's samples of ``--rounds`` rounds of ``--seconds``, after ``--warmup`` s of each
    (round 0, not kept): ``sample(protocol, round_number, seconds)``. The protocols take turns
    within a round, in the opposite order in every other round, so that a change in what else the
    cores run, or a protocol slowed by the one before it, falls on all of them alike."""
    for protocol in protocols:
        sample(protocol, 0, args.warmup)
    samples: dict[str, list[Sample]] = {protocol: [] for protocol in protocols}
    for round_number in range(1, args.rounds + 1):
        for protocol in protocols if round_number % 2 else protocols[::-1]:
            taken = sample(protocol, round_number, args.seconds)
            samples[protocol].append(taken)
            if args.rounds > 1:
                rps = len(taken.milliseconds) / taken.seconds
                print(f"  round {round_number} {protocol:>6} {what}: {rps:8.1f} req/s", flush=True)
    return samples


# One photo file a request: a REST multipart upload (POST /predict, what the web page sends), REST
# TF Serving JSON with the file as base64, gRPC KServe ModelInfer with it as a BYTES element.
UPLOAD_PROTOCOLS = ("upload", "b64", "grpc")
SMALL_PHOTOS = "clothing-dataset-small/validation"


def photo_request(protocol: str, model: str, photo: bytes, input_name: str) -> tuple[str, str, bytes]:
    """(path, content type, body) of a request of ``protocol`` (``UPLOAD_PROTOCOLS``) carrying the
    photo file ``photo``, built by the clients' own libraries (urllib3, tritonclient)."""
    if protocol == "upload":
        from urllib3 import encode_multipart_formdata

        body, content_type = encode_multipart_formdata({"files": ("photo.jpg", photo, "image/jpeg")})
        return "/predict", content_type, body
    if protocol == "b64":
        payload = {"instances": [{"b64": base64.b64encode(photo).decode("ascii")}]}
        return f"/v1/models/{model}:predict", "application/json", json.dumps(payload).encode()
    if protocol != "grpc":
        raise ValueError(f"protocol must be one of {', '.join(UPLOAD_PROTOCOLS)}, got {protocol!r}")
    from tritonclient.grpc import service_pb2
    from tritonclient.utils import serialize_byte_tensor

    request = service_pb2.ModelInferRequest(model_name=model)
    request.inputs.add(name=input_name, datatype="BYTES", shape=[1])
    request.raw_input_contents.append(serialize_byte_tensor(np.array([photo], dtype=object)).item())
    return GRPC_INFER, "application/grpc", request.SerializeToString()


def round_photos(datasets: Path, count: int) -> list[Path]:
    """``count`` photos of the small clothing dataset's validation split, spread over its classes
    (one a round: every protocol sends the same photo in a round)."""
    paths = sorted((datasets / SMALL_PHOTOS).glob("*/*.jpg"))
    if not paths:
        raise SystemExit(f"no photos in {datasets / SMALL_PHOTOS}; give --datasets")
    return [paths[index * len(paths) // count] for index in range(count)]


def measure_uploads(args) -> dict:
    """The default model of a plain ``apparel serve`` (the shipped store model, on the default
    runtime), gRPC on too: a photo file a request at ``--protocol-clients`` over each of
    ``UPLOAD_PROTOCOLS``, taking turns (``take_turns``), and each REST form's photos/s over gRPC's."""
    import urllib.request

    photos = round_photos(args.datasets, args.rounds + 1)  # round 0: the warm-up
    grpc_port = free_port()
    server = start_server(None, ["--grpc-port", str(grpc_port), *args.server_arg])
    try:
        port = wait_ready(server)
        metadata = json.load(urllib.request.urlopen(f"http://{HOST}:{port}/v2/models/apparel"))
        model, input_name = metadata["name"], metadata["inputs"][0]["name"]  # the default's own name

        def sample(protocol: str, round_number: int, seconds: float) -> Sample:
            request = photo_request(protocol, model, photos[round_number].read_bytes(), input_name)
            return asyncio.run(protocol_sample(protocol, model, port, grpc_port, args.protocol_clients, seconds,
                                               args.requests, None, input_name, server.pid, args.load_generator,
                                               request))

        samples = take_turns(args, UPLOAD_PROTOCOLS, sample, model)
    finally:
        stop_server(server)
    return upload_summary(args, model, samples, photos[1:])


def upload_summary(args, model: str, samples: dict[str, list[Sample]], photos: list[Path]) -> dict:
    """Photos/s of each protocol (its rounds pooled; a request is one photo), and each REST form's
    over gRPC's: pooled, round by round and their median, and by the server's CPU a photo."""
    summary = {"model": model, "photos": [f"{path.parent.name}/{path.name}" for path in photos],
               "load_generator": args.load_generator, "clients": args.protocol_clients, "rounds": args.rounds,
               "seconds": args.seconds}
    for protocol in UPLOAD_PROTOCOLS:
        result = summarise(args.protocol_clients, samples[protocol])
        summary.update({f"photos_per_s_{protocol}": result.rps, f"p50_ms_{protocol}": result.p50_ms,
                        f"p99_ms_{protocol}": result.p99_ms, f"errors_{protocol}": result.errors,
                        f"server_cpu_ms_{protocol}": result.server_cpu_ms,
                        f"client_cpu_ms_{protocol}": result.client_cpu_ms})
        print(f"{protocol:>6} {model} {args.protocol_clients} clients ({args.load_generator}, {args.rounds} x "
              f"{args.seconds:g} s): {result.rps:8.1f} photos/s  p50 {result.p50_ms:7.2f} ms  "
              f"p99 {result.p99_ms:7.2f} ms  errors {result.errors}  "
              f"CPU ms/photo server {result.server_cpu_ms} client {result.client_cpu_ms}", flush=True)
    rate = lambda sample: len(sample.milliseconds) / sample.seconds
    for protocol in ("upload", "b64"):
        key = f"rest_{protocol}_over_grpc"
        summary[key] = round(summary[f"photos_per_s_{protocol}"] / summary["photos_per_s_grpc"], 3)
        rounds = [round(rate(rest) / rate(grpc), 3) for rest, grpc in zip(samples[protocol], samples["grpc"])]
        summary[f"{key}_rounds"], summary[f"{key}_median_round"] = rounds, round(float(np.median(rounds)), 3)
        # What the rate ratio would be if the server had the cores to itself (the rate bound by its
        # CPU a photo): steadier than the rates when other work takes the cores in turns.
        cpu = summary[f"server_cpu_ms_{protocol}"], summary["server_cpu_ms_grpc"]
        summary[f"{key}_by_server_cpu"] = round(cpu[1] / cpu[0], 3) if None not in cpu else None
        print(f"rest_{protocol}/grpc: {summary[key]:.3f}  (median round {summary[f'{key}_median_round']:.3f}, rounds "
              f"{rounds}; by server CPU a photo {summary[f'{key}_by_server_cpu']})", flush=True)
    return summary


def swap_level(args, repository: Path, port: int, grpc_port: int) -> dict:
    """Load on the Fashion-MNIST model while new versions appear (each copied aside, then renamed
    into the repository so it appears whole); how long each took to serve, and failed requests."""
    import threading
    import urllib.request

    metadata_url = f"http://{HOST}:{port}/v2/models/fashion-mnist"
    metadata = json.load(urllib.request.urlopen(metadata_url))
    shape, input_name = tuple(metadata["inputs"][0]["shape"][1:]), metadata["inputs"][0]["name"]
    delays = []

    def swap():
        for version in range(2, args.swaps + 2):
            time.sleep(args.swap_every)
            staging = repository / f".staging-{version}"
            shutil.copytree(repository / "fashion-mnist" / "1", staging)
            staging.rename(repository / "fashion-mnist" / str(version))
            appeared = time.monotonic()
            while json.load(urllib.request.urlopen(metadata_url))["versions"][-1] != str(version):
                time.sleep(0.05)
            delays.append(round(time.monotonic() - appeared, 2))

    swapper = threading.Thread(target=swap)
    swapper.start()
    seconds = args.swap_every * (args.swaps + 1) + 2 * args.poll_interval
    result = asyncio.run(run_protocol_level("rest", "fashion-mnist", port, grpc_port, args.protocol_clients,
                                            seconds, 10**9, shape, input_name))
    swapper.join()
    print(f"swap: {args.swaps} new versions under {args.protocol_clients} clients: {result.requests} requests, "
          f"errors {result.errors}, seconds to serve each {delays} (poll {args.poll_interval} s)", flush=True)
    return {"swaps": args.swaps, "swap_errors": result.errors, "swap_requests": result.requests,
            "swap_rps": result.rps, "swap_p99_ms": result.p99_ms, "swap_seconds_to_serve": delays}


def percentile(milliseconds: np.ndarray, q: float) -> float:
    return round(float(np.percentile(milliseconds, q)), 2) if len(milliseconds) else float("nan")


def start_server(model_dir: str | None, extra: list[str], source: Path = ROOT) -> subprocess.Popen:
    """``apparel serve`` on 127.0.0.1, port 0: the system gives it a free port, and nothing can take
    that port between its choice and the bind (``wait_ready`` reads it from the log). ``source``: a
    checkout whose ``apparel`` package is served instead of this one (in this environment)."""
    command = [sys.executable, "-m", "apparel", "serve", "--host", HOST, "--port", "0", *extra]
    if model_dir:
        command.insert(4, model_dir)
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if source != ROOT:
        environment["PYTHONPATH"] = str(source)
    # The server's log goes to an unnamed temporary file: a pipe nobody reads could fill and stall it.
    log = tempfile.TemporaryFile(mode="w+")
    server = subprocess.Popen(command, cwd=source, env=environment, stdout=log, stderr=subprocess.STDOUT)
    server.log = log
    return server


def wait_ready(server: subprocess.Popen, timeout: float = 180) -> int:
    """The port of ``server`` once it answers ready."""
    import urllib.request

    deadline, port = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        server.log.seek(0)
        log = server.log.read()
        if server.poll() is not None:
            raise SystemExit(f"the server exited with status {server.returncode}:\n{log[-3000:]}")
        bound = re.search(rf"running on http://{re.escape(HOST)}:(\d+)", log)
        port = int(bound.group(1)) if bound else None
        try:
            if port and urllib.request.urlopen(f"http://{HOST}:{port}/v2/health/ready", timeout=2).status == 200:
                return port
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server did not become ready within {timeout:.0f} s")


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGINT)  # uvicorn shuts down gracefully on SIGINT
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # Its requests are 28×28 arrays, so it serves the Fashion-MNIST model unless told otherwise.
    parser.add_argument("--model-dir", default=str(shipped_model_dir("default")),
                        help="run directory of a Fashion-MNIST model to serve (default: the shipped `default`)")
    parser.add_argument("--clients", default="1,16,64", help="comma-separated concurrency levels (default 1,16,64)")
    parser.add_argument("--seconds", type=float, default=5.0, help="time limit per level (default 5)")
    parser.add_argument("--requests", type=int, default=20000, help="request limit per level (default 20000)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before the timed levels (default 1)")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw", help="load generator (default raw asyncio)")
    parser.add_argument("--server-arg", action="append", default=[], help="extra `apparel serve` flag, e.g. --server-arg=--max-wait-ms=1")
    parser.add_argument("--overload-clients", type=int, default=256, help="clients of the overload level (0: none; default 256)")
    parser.add_argument("--overload-cap", type=int, default=16,
                        help="the overload server's --max-concurrent-requests (default 16)")
    parser.add_argument("--overload-retry", choices=("after", "at-once"), default="after",
                        help="after a 503 the overload clients wait for its Retry-After (default), or ask again "
                             "at once (the worst case: a flood of refusals competing with the work)")
    parser.add_argument("--protocols", action="store_true",
                        help="instead: REST, V2 HTTP and gRPC on both shipped models, then the version-swap level")
    parser.add_argument("--uploads", action="store_true",
                        help="instead: photo files to a plain `apparel serve` (the store model) as REST uploads, "
                             "REST base64 JSON and gRPC BYTES, and each REST form's photos/s over gRPC's")
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared/datasets",
                        help=f"the folder holding {SMALL_PHOTOS}, the photos of --uploads (default ../shared/datasets)")
    parser.add_argument("--protocol-clients", type=int, default=16, help="clients per protocol level (default 16)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of the protocol levels, the protocols taking turns in each (default 1)")
    parser.add_argument("--load-generator", choices=("python", "h2load"), default="python",
                        help="the protocol levels' clients: this process's asyncio clients (default), or h2load "
                             "(Debian's nghttp2-client: `make load-tools`), which costs every protocol the same "
                             "little CPU")
    parser.add_argument("--swaps", type=int, default=5, help="new versions during the swap level (default 5; 0: none)")
    parser.add_argument("--swap-every", type=float, default=3.0, help="seconds between two new versions (default 3)")
    parser.add_argument("--poll-interval", type=float, default=1.0, help="the server's --poll-interval-s (default 1)")
    parser.add_argument("--out", help="also write the JSON summary here")
    args = parser.parse_args(argv)
    if args.protocols or args.uploads:
        if args.protocols and args.uploads:
            parser.error("give --protocols or --uploads, not both")
        if args.rounds < 1 or args.protocol_clients < 1 or args.seconds <= 0:
            parser.error("--rounds and --protocol-clients must be at least 1, --seconds positive")
        if args.load_generator == "h2load" and shutil.which("h2load") is None:
            parser.error("--load-generator h2load needs h2load: make load-tools (Debian's nghttp2-client)")
        summary = {"cpus": os.cpu_count(), **(measure_uploads(args) if args.uploads else measure_protocols(args))}
        summary["errors"] = sum(value for key, value in summary.items() if key.startswith(("errors_", "swap_errors")))
        if args.out:
            Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
        print(json.dumps(summary))
        return 0 if summary["errors"] == 0 else 1
    levels = [int(n) for n in args.clients.split(",") if n.strip()]
    if not levels or min(levels) < 1 or args.seconds <= 0 or args.requests < 1:
        parser.error("--clients must list positive integers; --seconds and --requests must be positive")
    if args.overload_clients < 0 or args.overload_cap < 1:
        parser.error("--overload-clients must be 0 or more, --overload-cap at least 1")

    results = measure(args, levels, args.server_arg)
    summary = {"model_dir": args.model_dir, "client": args.client, "cpus": os.cpu_count(),
               "errors": sum(result.errors for result in results)}
    for result in results:
        summary.update({f"rps_{result.clients}": result.rps, f"p50_ms_{result.clients}": result.p50_ms,
                        f"p99_ms_{result.clients}": result.p99_ms, f"mean_batch_{result.clients}": result.mean_batch})
    summary["levels"] = [asdict(result) for result in results]
    if args.overload_clients:
        cap = ["--max-concurrent-requests", str(args.overload_cap)]
        overload, = measure(args, [args.overload_clients], [*args.server_arg, *cap], warm_clients=args.overload_cap,
                            honour_retry_after=args.overload_retry == "after")
        summary.update({"overload_cap": args.overload_cap, "overload_retry": args.overload_retry,
                        "overload_accepted_rps": overload.accepted_rps,
                        "overload_busy_share": overload.busy_share, "overload_accepted_p99_ms": overload.accepted_p99_ms,
                        "overload_other_errors": overload.other_errors, "overload": asdict(overload)})
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    return 0 if summary["errors"] == 0 and summary.get("overload_other_errors", 0) == 0 else 1


def measure(args, levels: list[int], server_args: list[str], warm_clients: int | None = None,
            honour_retry_after: bool = False) -> list[LevelResult]:
    """Start a server with ``server_args``, warm it up, run each level, stop it."""
    server = start_server(args.model_dir, server_args)
    results = []
    try:
        port = wait_ready(server)
        if args.warmup > 0:
            asyncio.run(run_level(port, warm_clients or max(levels), args.warmup, args.requests, args.client))
        for clients in levels:
            result = asyncio.run(run_level(port, clients, args.seconds, args.requests, args.client, server.pid,
                                           honour_retry_after))
            results.append(result)
            print(f"{clients:>3} clients: {result.rps:8.1f} req/s  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  "
                  f"errors {result.errors}  ({result.requests} requests in {result.seconds:.1f} s, mean batch {result.mean_batch}, "
                  f"CPU ms/request server {result.server_cpu_ms} client {result.client_cpu_ms})", flush=True)
            if result.busy_share:
                print(f"    accepted {result.accepted_rps:.1f} req/s, p99 {result.accepted_p99_ms:.2f} ms; "
                      f"503 {100 * result.busy_share:.1f}% of answers; other errors {result.other_errors}", flush=True)
    finally:
        stop_server(server)
    return results


if __name__ == "__main__":
    sys.exit(main())
