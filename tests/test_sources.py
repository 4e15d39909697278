"""Image sources: files, folders, globs, URLs (from a server on 127.0.0.1), and their safety rules."""

import contextlib
import csv
import io
import ipaddress
import json
import os
import re
import socket
import threading
import time

import numpy as np
import pytest

from apparel.contract import FASHION_MNIST
from apparel.inference.prediction import Predictor
from apparel.images import fetch, sources
from apparel.images.fetch import FetchConfig, fetch_url
from apparel.batch.loop import predict_sources
from apparel.images.sources import ImageSource, expand_sources, resolve_inside
from local_http import serve
from test_photos import garment_photo

LOCAL = FetchConfig(timeout=1.0, allow_private=True)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_dataset):
    """A tiny model trained on synthetic data: real predictions, no dependence on the shipped models.
    (Its own, not serving's: the catalog tests' confidence thresholds were set on this one.)"""
    from apparel.config import TrainConfig
    from serving import train_tiny_model

    return train_tiny_model(tiny_dataset, tmp_path_factory.mktemp("model"), TrainConfig(epochs=1, hidden=8, jit_compile=False))


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "shop"
    (folder / "bags").mkdir(parents=True)
    garment_photo().save(folder / "dress.png")
    garment_photo(size=(400, 300), box=(40, 90, 360, 220)).save(folder / "bags" / "tote.jpg")
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return folder


@pytest.fixture
def server(image_folder):
    with serve(image_folder) as (base, server):
        yield base, server


def test_expand_files_folders_globs_and_urls(image_folder, tmp_path):
    found = expand_sources([str(image_folder), str(image_folder / "*.png"), str(image_folder / "notes.txt"),
                            "https://example.com/a.jpg", "ftp://example.com/a.jpg",
                            str(tmp_path / "missing.png"), str(tmp_path / "none-*.png")])
    names = [source.name for source in found]
    assert names[:3] == [str(image_folder / "bags" / "tote.jpg"), str(image_folder / "broken.jpg"), str(image_folder / "dress.png")]
    assert names[3:] == [str(image_folder / "dress.png"), str(image_folder / "notes.txt"), "https://example.com/a.jpg",
                         "ftp://example.com/a.jpg", str(tmp_path / "missing.png"), str(tmp_path / "none-*.png")]
    assert found[5].url == "https://example.com/a.jpg" and found[5].error is None
    assert "only http and https" in found[6].error
    assert found[7].error == "file not found" and found[8].error == "no files match this pattern"
    recursive = expand_sources([str(tmp_path / "**" / "*.jpg")])
    assert {s.path.name for s in recursive} == {"tote.jpg", "broken.jpg"}
    # An empty argument is no photo (Path("") would be the current folder, searched whole).
    empty = expand_sources(["", str(image_folder / "dress.png")])
    assert [source.name for source in empty] == ["''", str(image_folder / "dress.png")]
    assert "an empty path names no photo" in empty[0].error and empty[1].error is None


def test_paths_from_a_catalog_stay_inside_the_images_dir(tmp_path):
    images = tmp_path / "images"
    (images / "shirts").mkdir(parents=True)
    (tmp_path / "secret.png").write_bytes(b"x")
    assert resolve_inside("shirts/blue.jpg", images) == (images / "shirts" / "blue.jpg").resolve()
    assert resolve_inside("shirts\\blue.jpg", images) == (images / "shirts" / "blue.jpg").resolve()
    for escape in ("../secret.png", "shirts/../../secret.png", "/etc/passwd", "C:\\Windows\\win.ini", "\\\\server\\share\\x.png"):
        with pytest.raises(ValueError, match="refused"):
            resolve_inside(escape, images)
    os.symlink(tmp_path / "secret.png", images / "link.png")
    with pytest.raises(ValueError, match="outside images_dir"):
        resolve_inside("link.png", images)
    # A protocol-relative URL, as HTML writes it, was "leads outside images_dir".
    with pytest.raises(ValueError, match="is a URL without its scheme; write it with https: in front"):
        resolve_inside("//cdn.example.com/shirts/blue.jpg", images)


def test_paths_that_reach_inside_the_images_dir_are_accepted_however_written(tmp_path):
    """A manifest made with `find /data -name '*.jpg'` holds absolute paths; `..` may pass through."""
    images = tmp_path / "images"
    (images / "shirts").mkdir(parents=True)
    blue = (images / "shirts" / "blue.jpg").resolve()
    for inside in (str(blue), f"{images}/shirts/../shirts/blue.jpg", "shirts/../shirts/blue.jpg",
                   "../images/shirts/blue.jpg", "shirts//blue.jpg"):
        assert resolve_inside(inside, images) == blue, inside
    assert resolve_inside(str(blue), "/") == blue                   # --images-dir /: the whole disk
    (tmp_path / "secret.png").write_bytes(b"x")
    os.symlink(images / "shirts", tmp_path / "outside-link")       # a way in from outside is fine
    assert resolve_inside(str(tmp_path / "outside-link" / "blue.jpg"), images) == blue
    os.symlink(tmp_path, images / "up")                             # a link out, then back in: fine
    assert resolve_inside("up/images/shirts/blue.jpg", images) == blue
    for escape in (str(tmp_path / "secret.png"), f"{images}/../secret.png", "up/secret.png", "up/../secret.png"):
        with pytest.raises(ValueError, match="leads outside images_dir; refused") as refused:
            resolve_inside(escape, images)
        reason = str(refused.value).removeprefix(f"{escape}: ")     # what follows the path as it was given
        assert str(images) not in reason                               # a desk's client must not learn its folders


def test_fetch_from_a_local_server(server, image_folder):
    base, _ = server
    assert fetch_url(f"{base}/dress.png", LOCAL) == (image_folder / "dress.png").read_bytes()
    assert fetch_url(f"{base}/redirect/3/dress.png", LOCAL) == (image_folder / "dress.png").read_bytes()
    with pytest.raises(ValueError, match="more than 5 redirects"):
        fetch_url(f"{base}/loop", LOCAL)
    with pytest.raises(ValueError, match="more than 2 redirects"):
        fetch_url(f"{base}/redirect/3/dress.png", FetchConfig(allow_private=True, max_redirects=2))
    with pytest.raises(ValueError, match="HTTP 404"):
        fetch_url(f"{base}/missing.png", LOCAL)
    with pytest.raises(ValueError, match="over the limit of 100"):
        fetch_url(f"{base}/dress.png", FetchConfig(allow_private=True, max_bytes=100))
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(ValueError, match="cannot connect to 127.0.0.1"):
        fetch_url(f"http://127.0.0.1:{port}/dress.png", LOCAL)


def test_a_slow_url_times_out(server):
    base, _ = server
    start = time.monotonic()
    with pytest.raises(ValueError, match="timed out after 0.5 s"):
        fetch_url(f"{base}/slow/dress.png", FetchConfig(timeout=0.5, allow_private=True))
    assert time.monotonic() - start < 30  # the server answers after 60 s: only the deadline ends it sooner


@contextlib.contextmanager
def trickling_server(head: bytes, body: bytes, pause: float = 0.2):
    """A server on 127.0.0.1 that sends ``head`` at once, then ``body`` one byte every ``pause``
    seconds (so no single read ever waits long); yields its base URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop = threading.Event()

    def answer(connection):
        with connection, contextlib.suppress(OSError):  # the client hung up
            connection.settimeout(5)
            connection.recv(65536)
            connection.sendall(head)
            for i in range(len(body)):
                if stop.wait(pause):
                    return
                connection.sendall(body[i : i + 1])

    def accept():
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=answer, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_a_server_trickling_bytes_cannot_outlast_the_deadline():
    # One byte every 0.2 s never trips a per-read timeout; the whole fetch must still end at 1 s.
    response = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n"
    for head, body in ((response, b"x" * 1000), (b"", response + b"x" * 1000)):  # trickled body, then headers
        with trickling_server(head, body) as base:
            start = time.monotonic()
            with pytest.raises(ValueError, match="timed out after 1 s"):
                fetch_url(f"{base}/shirt.png", LOCAL)
            assert time.monotonic() - start < 30  # the whole body takes 200 s to trickle
    # Without a Content-Length the cut-short body is not taken for the whole one.
    with trickling_server(b"HTTP/1.0 200 OK\r\n\r\n", b"x" * 1000) as base:
        with pytest.raises(ValueError, match="timed out after 1 s"):
            fetch_url(f"{base}/shirt.png", LOCAL)


def test_a_slow_dns_lookup_counts_against_the_deadline(monkeypatch):
    answered = threading.Event()

    def slow(host, *args, **kwargs):  # a resolver that hangs, and never asks the real network
        answered.wait(60)
        raise socket.gaierror(socket.EAI_AGAIN, "no answer")

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    start = time.monotonic()
    try:
        with pytest.raises(ValueError, match="cannot resolve host 'shop.example': timed out"):
            fetch_url("http://shop.example/shirt.png", FetchConfig(timeout=0.5))
        assert time.monotonic() - start < 30  # the lookup would take 60 s: the deadline ended it
    finally:
        answered.set()  # the lookup's thread ends now, not after the test


def test_urls_are_percent_encoded_and_idn_hosts_sent_as_punycode(server, image_folder, monkeypatch):
    base, httpd = server
    (image_folder / "blue shirt.png").write_bytes((image_folder / "dress.png").read_bytes())
    (image_folder / "café.png").write_bytes((image_folder / "dress.png").read_bytes())
    expected = (image_folder / "dress.png").read_bytes()
    assert fetch_url(f"{base}/blue shirt.png", LOCAL) == expected
    assert fetch_url(f"{base}/café.png?size=große Größe", LOCAL) == expected
    assert fetch_url(f"{base}/caf%C3%A9.png", LOCAL) == expected  # escapes already made are kept
    assert httpd.requests[-3:] == ["/blue%20shirt.png", "/caf%C3%A9.png?size=gro%C3%9Fe%20Gr%C3%B6%C3%9Fe",
                                   "/caf%C3%A9.png"]

    resolved = []
    monkeypatch.setattr(fetch, "checked_addresses", lambda host, *args, **kwargs: resolved.append(host) or ["127.0.0.1"])
    port = base.rsplit(":", 1)[1]
    assert fetch_url(f"http://bücher.example:{port}/dress.png", LOCAL) == expected
    assert resolved == ["xn--bcher-kva.example"] and httpd.hosts[-1] == f"xn--bcher-kva.example:{port}"

    for url, reason in ((f"http://{'ü' * 70}.example/x.png", "not a valid host name"),
                        ("http://[::1/x.png", "not a valid URL"), ("http://example.com:99999/x.png", "bad port")):
        with pytest.raises(ValueError, match=f"^{re.escape(url)}: .*{reason}"):
            fetch_url(url, LOCAL)


def test_a_url_with_port_0_is_refused_not_fetched_from_port_80(monkeypatch):
    connected = []
    monkeypatch.setattr(fetch, "checked_addresses", lambda host, port, *args, **kwargs: connected.append(port) or ["127.0.0.1"])
    for url in ("http://example.com:0/shirt.jpg", "https://example.com:00/shirt.jpg"):
        with pytest.raises(ValueError, match=f"^{re.escape(url)}: port 0 in the URL; a port is 1 to 65535"):
            fetch_url(url, LOCAL)
    assert connected == []  # refused before any lookup or connection


def test_private_addresses_are_refused_unless_allowed(server):
    base, httpd = server
    with pytest.raises(ValueError, match="127.0.0.1, a private, loopback or link-local address; refused: images are "
                                         r"fetched from the internet only, unless your own network is allowed \("
                                         "--allow-private with predict"):
        fetch_url(f"{base}/dress.png")
    port = base.rsplit(":", 1)[1]
    with pytest.raises(ValueError, match="loopback"):
        fetch_url(f"http://localhost:{port}/dress.png")
    assert httpd.requests == []  # refused before connecting
    for address in ("10.1.2.3", "192.168.0.1", "169.254.169.254", "::1", "fe80::1", "::ffff:127.0.0.1", "100.64.0.1", "0.0.0.0"):
        with pytest.raises(ValueError, match="refused"):
            fetch.checked_addresses(address, 80)
    assert fetch.checked_addresses("10.1.2.3", 80, allow_private=True) == ["10.1.2.3"]
    # Private IPv4 reached through IPv6: NAT64 (well-known and local-use), 6to4, IPv4-compatible,
    # Teredo (private server, then private client), site-local, SIIT-translated.
    for address in ("64:ff9b::a00:1", "64:ff9b:1::a00:1", "2002:7f00:1::1", "::127.0.0.1", "::8.8.8.8",
                    "2001:0:a00:1:8000:63bf:f7f7:f7f7", "2001:0:4136:e378:8000:63bf:f5ff:fffe", "fec0::1",
                    "::ffff:0:a00:1"):
        with pytest.raises(ValueError, match="refused"):
            fetch.checked_addresses(address, 80)
    # The same forms around public IPv4 addresses, and plain public addresses, are fetched.
    for address in ("64:ff9b::808:808", "2002:808:808::1", "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
                    "::ffff:8.8.8.8", "2606:4700::1", "8.8.8.8"):
        assert fetch._is_public(ipaddress.ip_address(address)), address
    for url in ("file:///etc/passwd", "ftp://example.com/x.png", "gopher://x/"):
        with pytest.raises(ValueError, match="only http and https"):
            fetch_url(url, LOCAL)


def test_a_redirect_to_a_private_address_is_refused(server, monkeypatch):
    base, httpd = server
    # Pretend the local server is a public one: the redirect's target must still be checked.
    monkeypatch.setattr(fetch, "_is_public", lambda address: str(address) == "127.0.0.1")
    with pytest.raises(ValueError, match="10.0.0.7, a private"):
        fetch_url(f"{base}/to/http://10.0.0.7/latest/meta-data", FetchConfig(timeout=1.0))
    assert len(httpd.requests) == 1


def test_the_host_header_names_the_host_not_the_address(server, monkeypatch):
    base, httpd = server
    port = base.rsplit(":", 1)[1]
    assert fetch_url(f"http://localhost:{port}/dress.png", LOCAL).startswith(b"\x89PNG")
    assert httpd.hosts == [f"localhost:{port}"]


class CountingPredictor:
    """Stands in for a model: 'Dress' for tall garments, 'Bag' for wide ones; counts its calls."""

    def __init__(self):
        self.calls = []

    def predict_proba(self, images):
        images = np.asarray(images)
        self.calls.append(len(images))
        probabilities = np.full((len(images), 10), 0.01, dtype=np.float32)
        for row, image in zip(probabilities, images):
            rows, columns = np.flatnonzero(image.max(axis=1) > 0.1), np.flatnonzero(image.max(axis=0) > 0.1)
            row[3 if len(rows) > len(columns) else 8] = 0.91
        return probabilities

    contract = FASHION_MNIST  # its inputs are 28×28 and its classes Fashion-MNIST's

    def top_k(self, probabilities, k=3):
        return Predictor(model=None).top_k(probabilities, k)


def test_predict_sources_reads_in_parallel_and_predicts_in_one_batch(server, image_folder):
    base, _ = server
    np.save(image_folder / "stack.npy", np.zeros((2, 28, 28), dtype=np.uint8))
    items = [str(image_folder / "dress.png"), f"{base}/bags/tote.jpg", str(image_folder / "broken.jpg"),
             f"{base}/missing.jpg", str(image_folder / "stack.npy"), str(image_folder / "nowhere.png")]
    predictor = CountingPredictor()
    ticks = []
    results = predict_sources(expand_sources(items), predictor, top_k=2, fetch=LOCAL, progress=ticks.append)
    assert predictor.calls == [4]  # dress, tote and the stack's two images, together
    assert sum(ticks) == 7  # one for each image: the stack's two count apart
    assert [r["file"] for r in results] == items[:4] + [items[4] + "[0]", items[4] + "[1]", items[5]]
    assert results[0]["label"] == "Dress" and results[1]["label"] == "Bag"
    assert results[0]["probability"] == pytest.approx(0.91) and len(results[0]["top_k"]) == 2
    assert "not a readable image" in results[2]["error"] and "HTTP 404" in results[3]["error"]
    assert results[6]["error"] == "file not found"
    json.dumps(results)
    assert predict_sources([ImageSource("x", error="file not found")], predictor) == [{"file": "x", "error": "file not found"}]


def test_empty_npy_files_are_errors_not_missing_rows(image_folder):
    (image_folder / "empty.npy").write_bytes(b"")
    np.save(image_folder / "none.npy", np.zeros((0, 28, 28), dtype=np.uint8))
    np.save(image_folder / "one.npy", np.zeros((28, 28), dtype=np.uint8))
    items = [str(image_folder / name) for name in ("empty.npy", "none.npy", "dress.png", "one.npy")]
    predictor = CountingPredictor()
    results = predict_sources(expand_sources(items), predictor)
    assert [r["file"] for r in results] == items and predictor.calls == [2]
    assert "not a readable .npy array" in results[0]["error"] and "holds no images" in results[1]["error"]
    assert results[2]["label"] == "Dress" and "label" in results[3]
    assert predict_sources(expand_sources(items[:2]), predictor) == results[:2] and predictor.calls == [2]


def test_read_source_names_the_source_in_errors(server):
    base, _ = server
    with pytest.raises(ValueError, match=r"^http://127.0.0.1:\d+/broken.jpg: not a readable image"):
        sources.read_source(ImageSource(f"{base}/broken.jpg", url=f"{base}/broken.jpg"), LOCAL)
    image = sources.read_source(ImageSource("d", url=f"{base}/dress.png"), LOCAL)
    assert image.shape == (1, 28, 28) and image.dtype == np.float32


def test_predict_command_on_folders_globs_and_urls(server, image_folder, model_dir, capsys):
    from apparel.cli import main

    base, _ = server
    items = [str(image_folder), str(image_folder / "*.png"), f"{base}/bags/tote.jpg"]
    assert main(["predict", str(model_dir), *items, "--allow-private", "--json", "--top-k", "2"]) == 0
    results = json.loads(capsys.readouterr().out)
    files = [result["file"] for result in results]
    assert files == [str(image_folder / "bags" / "tote.jpg"), str(image_folder / "broken.jpg"), str(image_folder / "dress.png"),
                     str(image_folder / "dress.png"), f"{base}/bags/tote.jpg"]
    assert "not a readable image" in results[1]["error"]
    for result in results[:1] + results[2:]:
        assert set(result) == {"file", "label", "probability", "top_k", "category"} and len(result["top_k"]) == 2

    assert main(["predict", "--model-dir", str(model_dir), str(image_folder), "--csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["file", "label_1", "probability_1", "label_2", "probability_2", "label_3", "probability_3",
                       "category_id", "category", "category_confidence", "category_reason", "error"]
    assert [row[0] for row in rows[1:]] == files[:3] and rows[2][-1].startswith("not a readable image")
    # A 28×28 model's answers get their category too (taxonomy.csv); an unreadable file none.
    assert all(row[7].startswith("aa-") or row[10] == "uncertain" for row in rows[1:] if not row[-1])
    assert rows[2][7:11] == ["", "", "", ""]
    assert 0 <= float(rows[1][2]) <= 1

    assert main(["predict", str(model_dir), str(image_folder / "dress.png"), f"{base}/dress.png"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0].split() == ["file", "top", "1", "top", "2", "top", "3", "category"]
    assert str(image_folder / "dress.png") in captured.out
    assert f"{base}/dress.png: error: 127.0.0.1 resolves to 127.0.0.1, a private" in captured.err
    assert main(["predict", str(model_dir), f"{base}/dress.png"]) == 1  # nothing could be read


def test_preprocess_command_draws_the_steps(image_folder, tmp_path, capsys):
    from apparel.cli import main
    from apparel.inference.prediction import DEFAULT_MODEL_DIR

    fashion = ["--model", str(DEFAULT_MODEL_DIR)]  # its pipeline has the most steps; the default is the photo model's
    assert main(["preprocess", str(image_folder / "dress.png"), "--out", str(tmp_path / "steps.png"), *fashion]) == 0
    assert "trimmed 121×281" in capsys.readouterr().out
    assert (tmp_path / "steps.png").read_bytes().startswith(b"\x89PNG")
    assert main(["preprocess", str(image_folder / "dress.png"), "--out", str(tmp_path / "steps.jpg")]) == 0
    assert (tmp_path / "steps.jpg").read_bytes().startswith(b"\xff\xd8")  # a JPEG, as its name says
    assert main(["preprocess", str(image_folder / "broken.jpg"), "--out", str(tmp_path / "x.png")]) == 2
    assert "not a readable image" in capsys.readouterr().err and not (tmp_path / "x.png").exists()


def test_a_length_header_is_read_as_ascii_digits_and_never_as_python_s_refusal():
    """"²" is a digit to str.isdigit and int() refuses it; thousands of digits int() refuses too."""
    import sys

    from apparel.images.fetch import length_header

    assert [length_header(value) for value in ("0", "007", "1234", "", "²", "-1", " 5", "1e3", None)] == [
        0, 7, 1234, None, None, None, None, None, None]
    assert length_header("9" * 5000) == sys.maxsize and length_header("0" * 5000 + "12") == 12
