"""The merchant's desk end to end with the shipped store model: a catalog of local photos uploaded
to a real `apparel serve`, the page driven in Chromium while it fills, the server restarted
mid-job, and the download compared with `apparel catalog --colour --sleeve-length --decisions` (the
desk writes colours and sleeve lengths).

    .venv/bin/python benchmarks/desk_check.py --images-dir /work/shared/datasets/clothing-dataset-small/train

Measures: the time from the upload to the first status line, the arrow-key latency and the long
tasks while the table fills, the time to classify every product; checks that the decisions made
before the restart are there after it, and that the downloaded CSV is byte for byte the command's
output with the downloaded decisions.csv (the command is given the job's image cache, as a rerun
of the command would find its own, so it does not classify the photos a second time). The last
line is the report as one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY / "tests"))


def write_catalog(images_dir: Path, count: int, path: Path, seed: int) -> None:
    """A Shopify export of ``count`` products, one photo each, from the JPEGs under ``images_dir``."""
    photos = sorted(images_dir.rglob("*.jpg"))
    if len(photos) < count:
        raise SystemExit(f"{images_dir} holds {len(photos)} JPEGs; give --products {len(photos)} or fewer")
    random.Random(seed).shuffle(photos)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(["Handle", "Title", "Vendor", "Product Category", "Type", "Tags", "Image Src", "Image Position"])
        for number, photo in enumerate(photos[:count]):
            writer.writerow([f"product-{number:04d}", f"Product {number}", "Acme", "", "", "",
                             photo.relative_to(images_dir).as_posix(), "1"])


def start_server(port: int, jobs: Path, images_dir: Path, log: Path) -> subprocess.Popen:
    server = subprocess.Popen([sys.executable, "-m", "apparel", "serve", "--port", str(port), "--desk-jobs", str(jobs),
                               "--images-dir", str(images_dir), "--warm-up-s", "1"], cwd=REPOSITORY,
                              stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2):
                return server
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"apparel serve exited; see {log}")
            time.sleep(0.5)
    raise SystemExit(f"apparel serve did not get ready in 180 s; see {log}")


def stop_server(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGINT)
    server.wait(60)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images-dir", required=True, type=Path, help="folder of product photos (JPEG, any depth)")
    parser.add_argument("--products", type=int, default=1000, help="products in the catalog (default 1000)")
    parser.add_argument("--port", type=int, default=8767)
    parser.add_argument("--seed", type=int, default=0, help="which photos, in which order")
    parser.add_argument("--work", type=Path, help="folder for the catalog, the jobs and the outputs (default: a temporary one)")
    parser.add_argument("--screenshot", type=Path, help="also save the page, once every product is classified, as this PNG "
                                                         "(docs/images/desk.png: --products 40 from validation/)")
    args = parser.parse_args(argv)

    from playwright import sync_api
    from desk_shop import arrow_key_latencies
    from test_browser import CHROMIUM, CHROMIUM_ARGS

    work = args.work or Path(tempfile.mkdtemp(prefix="desk-check-"))
    work.mkdir(parents=True, exist_ok=True)
    catalog, jobs, log = work / "products.csv", work / "jobs", work / "server.log"
    write_catalog(args.images_dir, args.products, catalog, args.seed)
    url = f"http://127.0.0.1:{args.port}/desk"
    report = {"products": args.products, "images_dir": str(args.images_dir)}
    waiting = "s => document.getElementById('status').textContent.startsWith(s)"
    server = start_server(args.port, jobs, args.images_dir, log)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_init_script("window.longTasks = []; new PerformanceObserver((list) => { for (const entry of "
                                "list.getEntries()) window.longTasks.push(entry.duration); })"
                                ".observe({ type: 'longtask', buffered: true });")
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        try:
            page.goto(url)
            started = time.perf_counter()
            page.set_input_files("#csv", str(catalog))
            page.wait_for_function("() => document.getElementById('status').textContent.includes(' of ')",
                                   timeout=5_000)
            report["first_status_s"] = round(time.perf_counter() - started, 3)
            page.wait_for_function("() => document.querySelector(\".row[data-handle='product-0000'] .confidence\")"
                                   "?.textContent", timeout=120_000)
            page.focus("#viewport")
            page.keyboard.press("Home")
            latencies = arrow_key_latencies(page)
            report["still_filling"] = page.locator("#status").text_content()
            report["arrow_latency_ms"] = {"median": round(statistics.median(latencies) * 1000, 1),
                                          "max": round(max(latencies) * 1000, 1)}
            long_tasks = page.evaluate("window.longTasks")
            report["long_tasks"] = {"count": len(long_tasks), "longest_ms": round(max(long_tasks, default=0), 1)}
            # Decisions while it runs: the suggestion of one, T-shirts for two, one left as it is.
            page.keyboard.press("Home")
            page.keyboard.press("x")
            page.keyboard.press("ArrowDown")
            page.keyboard.press(" ")
            page.keyboard.press("ArrowDown")
            page.keyboard.press(" ")
            page.fill("#search", "tee")
            page.locator("#search-results li").first.wait_for()
            page.press("#search", "Enter")
            page.wait_for_function("() => document.querySelector(\".row[data-handle='product-0002'] .reason\")"
                                   ".textContent.startsWith('✓')")
            job_id = page.evaluate("location.hash.slice(1)")
            decided_before = page.eval_on_selector_all(".row .reason.decided", "cells => cells.length")
            report["state_at_restart"] = json.loads((jobs / job_id / "job.json").read_text())["state"]
            report["done_at_restart"] = page.locator("#status").text_content()
            stop_server(server)
            server = start_server(args.port, jobs, args.images_dir, log)
            # The page asks again until the new server answers; a reload then finds the job too.
            page.wait_for_function(waiting, arg="Done:", timeout=600_000)
            page.reload()
            page.wait_for_function(waiting, arg="Done:", timeout=60_000)
            report["classified_s"] = round(time.perf_counter() - started, 1)
            report["decisions_kept"] = page.eval_on_selector_all(".row .reason.decided", "cells => cells.length") \
                == decided_before == 3
            if args.screenshot is not None:
                page.keyboard.press("Home")
                page.screenshot(path=str(args.screenshot))
            out = work / "desk"
            out.mkdir(exist_ok=True)
            for selector, name in (("#download-csv", "categorized.csv"), ("#download-decisions", "decisions.csv")):
                with page.expect_download() as download:
                    page.click(selector)
                download.value.save_as(out / name)
            report["javascript_errors"] = errors
        finally:
            browser.close()
            stop_server(server)
    cli = work / "cli"
    cli.mkdir(exist_ok=True)
    shutil.copyfile(jobs / job_id / "work" / "categorized.cache.jsonl", cli / "categorized.cache.jsonl")
    subprocess.run([sys.executable, "-m", "apparel", "catalog", str(catalog), "--out", str(cli / "categorized.csv"),
                    "--images-dir", str(args.images_dir), "--colour", "--sleeve-length", "--decisions", str(out / "decisions.csv")],
                   cwd=REPOSITORY, check=True)
    report["download_equals_cli"] = (out / "categorized.csv").read_bytes() == (cli / "categorized.csv").read_bytes()
    report["work"] = str(work)
    print(json.dumps(report))
    return 0 if report["download_equals_cli"] and report["decisions_kept"] and not errors else 1


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
