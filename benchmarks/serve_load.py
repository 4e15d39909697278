"""Load test of `apparel serve`: throughput and latency at 1, 16 and 64 concurrent clients.

Starts the server (``python -m apparel serve``) on a free 127.0.0.1 port, warms it up, then at each
concurrency sends single-instance 28×28 JSON requests to ``POST /v1/models/apparel:predict`` over
keep-alive connections until ``--requests`` are done or ``--seconds`` have passed, whichever comes
first. Prints req/s, p50/p99 latency, errors and the mean micro-batch size per level; the last line
is a JSON object (``rps_16``, ``p99_ms_16``, ``errors``, …), also written to ``--out`` if given.

    .venv/bin/python benchmarks/serve_load.py                       # the shipped model
    .venv/bin/python benchmarks/serve_load.py --model-dir runs/reference --seconds 5

The load generator shares the machine's cores with the server, so it is kept lean: each client is a
coroutine speaking HTTP/1.1 over its own asyncio connection, with the request bytes built once
(``--client httpx`` uses httpx instead, to cross-check; it spends several times more CPU per request).
Traffic goes to 127.0.0.1 only, and every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

HOST = "127.0.0.1"
PATH = "/v1/models/apparel:predict"
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class LevelResult:
    clients: int  # concurrent clients, each with its own keep-alive connection
    requests: int  # requests answered (any status) in the timed window
    errors: int  # non-200 answers and failed connections
    seconds: float  # length of the timed window
    rps: float  # requests answered per second
    p50_ms: float  # median latency
    p99_ms: float  # 99th percentile latency
    mean_batch: float | None  # images per model call on the server during the window
    server_cpu_ms: float | None  # server process CPU time (all threads) per answered request
    client_cpu_ms: float  # load generator CPU time per answered request


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def request_bytes(port: int, seed: int = 0) -> bytes:
    """One ``:predict`` request of a single 28×28 image of 0–255 integers, ready to write."""
    image = np.random.default_rng(seed).integers(0, 256, size=(28, 28))
    body = json.dumps({"instances": [image.tolist()]}, separators=(",", ":")).encode()
    head = (f"POST {PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


async def raw_client(port: int, request: bytes, stop: float, budget: list[int], latencies: list[float], errors: list[int]):
    """Send ``request`` again and again on one connection until ``stop`` or the shared budget runs out."""
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
            latencies.append(time.perf_counter() - started)
            if status != 200:
                errors[0] += 1
    finally:
        if writer is not None:
            writer.close()


async def httpx_client(port: int, request: bytes, stop: float, budget: list[int], latencies: list[float], errors: list[int]):
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
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                errors[0] += 1


def batch_totals(port: int) -> tuple[float, float] | None:
    """(sum, count) of the server's ``apparel_batch_size`` histogram."""
    import urllib.request

    try:
        text = urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return None
    values = dict(re.findall(r"^apparel_batch_size_(sum|count) ([0-9.e+]+)$", text, re.M))
    return (float(values["sum"]), float(values["count"])) if len(values) == 2 else None


def process_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process, all threads (Linux ``/proc``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError, TypeError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_level(port: int, clients: int, seconds: float, max_requests: int, client: str,
                    server_pid: int | None = None) -> LevelResult:
    request = request_bytes(port)
    worker = raw_client if client == "raw" else httpx_client
    latencies: list[float] = []
    errors, budget = [0], [max_requests]
    before = batch_totals(port)
    server_cpu, client_cpu = process_cpu_seconds(server_pid), time.process_time()
    started = time.perf_counter()
    await asyncio.gather(*(worker(port, request, started + seconds, budget, latencies, errors) for _ in range(clients)))
    elapsed = time.perf_counter() - started
    client_cpu = time.process_time() - client_cpu
    server_after = process_cpu_seconds(server_pid)
    server_cpu = None if server_cpu is None or server_after is None else server_after - server_cpu
    after = batch_totals(port)
    mean_batch = None
    if before and after and after[1] > before[1]:
        mean_batch = round((after[0] - before[0]) / (after[1] - before[1]), 2)
    answered = len(latencies)
    milliseconds = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return LevelResult(clients, answered, errors[0], round(elapsed, 3), round(answered / elapsed, 1),
                       round(float(np.percentile(milliseconds, 50)), 2), round(float(np.percentile(milliseconds, 99)), 2),
                       mean_batch, None if server_cpu is None else round(1000 * server_cpu / max(1, answered), 3),
                       round(1000 * client_cpu / max(1, answered), 3))


def start_server(model_dir: str | None, port: int, extra: list[str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "apparel", "serve", "--host", HOST, "--port", str(port), *extra]
    if model_dir:
        command.insert(4, model_dir)
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    # The server's log goes to an unnamed temporary file: a pipe nobody reads could fill and stall it.
    log = tempfile.TemporaryFile(mode="w+")
    server = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)
    server.log = log
    return server


def wait_ready(server: subprocess.Popen, port: int, timeout: float = 180) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            server.log.seek(0)
            raise SystemExit(f"the server exited with status {server.returncode}:\n{server.log.read()[-3000:]}")
        try:
            if urllib.request.urlopen(f"http://{HOST}:{port}/v2/health/ready", timeout=2).status == 200:
                return
        except OSError:
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
    parser.add_argument("--model-dir", default=str(ROOT / "models" / "default"),
                        help="run directory of a Fashion-MNIST model to serve (default: the shipped models/default)")
    parser.add_argument("--clients", default="1,16,64", help="comma-separated concurrency levels (default 1,16,64)")
    parser.add_argument("--seconds", type=float, default=5.0, help="time limit per level (default 5)")
    parser.add_argument("--requests", type=int, default=20000, help="request limit per level (default 20000)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before the timed levels (default 1)")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw", help="load generator (default raw asyncio)")
    parser.add_argument("--server-arg", action="append", default=[], help="extra `apparel serve` flag, e.g. --server-arg=--max-wait-ms=1")
    parser.add_argument("--out", help="also write the JSON summary here")
    args = parser.parse_args(argv)
    levels = [int(n) for n in args.clients.split(",") if n.strip()]
    if not levels or min(levels) < 1 or args.seconds <= 0 or args.requests < 1:
        parser.error("--clients must list positive integers; --seconds and --requests must be positive")

    port = free_port()
    server = start_server(args.model_dir, port, args.server_arg)
    try:
        wait_ready(server, port)
        if args.warmup > 0:
            asyncio.run(run_level(port, max(levels), args.warmup, args.requests, args.client))
        results = []
        for clients in levels:
            result = asyncio.run(run_level(port, clients, args.seconds, args.requests, args.client, server.pid))
            results.append(result)
            print(f"{clients:>3} clients: {result.rps:8.1f} req/s  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  "
                  f"errors {result.errors}  ({result.requests} requests in {result.seconds:.1f} s, mean batch {result.mean_batch}, "
                  f"CPU ms/request server {result.server_cpu_ms} client {result.client_cpu_ms})",
                  flush=True)
    finally:
        stop_server(server)
    summary = {"model_dir": args.model_dir, "client": args.client, "cpus": os.cpu_count(),
               "errors": sum(result.errors for result in results)}
    for result in results:
        summary.update({f"rps_{result.clients}": result.rps, f"p50_ms_{result.clients}": result.p50_ms,
                        f"p99_ms_{result.clients}": result.p99_ms, f"mean_batch_{result.clients}": result.mean_batch})
    summary["levels"] = [asdict(result) for result in results]
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    return 0 if summary["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
