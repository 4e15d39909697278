"""Photos per second of `apparel batch`: the local engine, and Ray Data with 1 and 2 workers, on the
same photos with the same model in one run; then where a photo's time goes.

    .venv/bin/python benchmarks/batch_scale.py                      # 2,000 photos, the shipped photo model
    .venv/bin/python benchmarks/batch_scale.py --photos 300 --configs local,ray-2x1

Each configuration runs in a fresh process, as the command line does, pinned with ``taskset``:
``ray-1x1`` to one core (one Ray worker: its reader and its model replica, one TensorFlow thread,
and Ray's own processes too), ``ray-2x1`` to two (two such workers), ``local`` and ``ray`` (the
default: one replica with the local engine's threads, identical numbers) to every core. Reported:
wall time from process start to exit, time to the first result (imports, Ray's start, model
loading), photos/s over the whole run and after the first result (steady state), Ray's overhead
per photo against the local engine, and whether the outputs equal the local engine's. Then, in
this process on one thread: reading a file, fetching it over HTTP from 127.0.0.1, decoding it to
the model's input, and the model, per photo. Writes ``--out``/results.json and results.csv; the
last line printed is the JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from apparel.artifacts import shipped_model_dir, usable_cores

ROOT = Path(__file__).resolve().parents[1]
# name: (flags of `apparel batch`, cores it may use; None: every core)
CONFIGS = {
    "local": ([], None),
    "ray": (["--engine", "ray"], None),
    "ray-1x1": (["--engine", "ray", "--predictor-threads", "1"], "0"),
    "ray-2x1": (["--engine", "ray", "--predictor-threads", "1"], "0,1"),
}


def write_manifest(photos: Path, count: int, out: Path) -> Path:
    files = sorted(path for path in photos.rglob("*") if path.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise SystemExit(f"{photos} holds no photos")
    # More rows than photos: the photos are listed again in the same order (each row is still
    # read, decoded and predicted), so that start-up weighs on a long run as it would on a catalog.
    files = [files[index % len(files)] for index in range(count)]
    manifest = out / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["photo_id", "path"])
        writer.writerows([index, file.relative_to(photos).as_posix()] for index, file in enumerate(files))
    return manifest


def run_one(args) -> None:
    """In the child process: one configuration, timed from inside (the JSON line on stdout)."""
    started = time.perf_counter()
    from apparel.batch.run import BatchConfig, classify_manifest

    flags = CONFIGS[args.run][0]
    options = {"engine": "ray"} if "--engine" in flags else {}
    if "--predictor-threads" in flags:
        options["predictor_threads"] = int(flags[flags.index("--predictor-threads") + 1])
    marks: list[tuple[float, int]] = []
    config = BatchConfig(model_dir=args.model_dir, images_dir=args.photos, **options)
    report = classify_manifest(args.manifest, args.run_out, config,
                               progress=lambda count: marks.append((time.perf_counter(), count)))
    ended = time.perf_counter()
    first_time, first_count = marks[0]
    steady = (report.rows - first_count) / (marks[-1][0] - first_time) if len(marks) > 1 else float("nan")
    print(json.dumps({"seconds_in_process": ended - started, "first_result_s": first_time - started,
                      "steady_photos_per_s": steady, "rows": report.rows, "failed": report.failed}))


def measure(name: str, args, manifest: Path, out: Path) -> dict:
    flags, cores = CONFIGS[name]
    run_out = out / f"out-{name}"
    shutil.rmtree(run_out, ignore_errors=True)
    command = [sys.executable, __file__, "--run", name, "--manifest", str(manifest), "--run-out", str(run_out),
               "--model-dir", args.model_dir, "--photos-dir", args.photos]
    if cores is not None:
        command = ["taskset", "-c", cores] + command
    # Ray runs its workers at nice 15 by default; on a machine shared with other work that alone
    # would hand the local engine (nice 0) a larger share of the cores than Ray's workers get.
    environment = {**os.environ, "RAY_worker_niceness": str(args.ray_worker_niceness)}
    began = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=environment)
    wall = time.perf_counter() - began
    if finished.returncode != 0:
        raise SystemExit(f"{name} failed:\n{finished.stderr[-3000:]}")
    inside = json.loads(finished.stdout.strip().splitlines()[-1])
    return {"config": name, "flags": " ".join(flags), "cores": cores or "all", "wall_s": round(wall, 2),
            "photos_per_s": round(inside["rows"] / wall, 2), "first_result_s": round(inside["first_result_s"], 2),
            "steady_photos_per_s": round(inside["steady_photos_per_s"], 2), "failed": inside["failed"],
            "output": str(run_out)}


def compare(local: Path, other: Path) -> dict:
    import pyarrow.parquet as pq

    a, b = (pq.read_table(path).sort_by("manifest_row") for path in (local, other))
    labels = a.column("label").equals(b.column("label"))
    difference = float(np.nanmax(np.abs(a.column("probability").to_numpy(zero_copy_only=False)
                                        - b.column("probability").to_numpy(zero_copy_only=False))))
    return {"identical": a.equals(b), "same_labels": labels, "max_probability_difference": difference}


def profile(args, manifest: Path, repeats: int = 64) -> dict:
    """Milliseconds per photo on one thread: file read, loopback HTTP fetch, decode, model."""
    import functools
    import http.server
    import threading

    from apparel.batch.config import ModelSettings
    from apparel.batch.predicting import settings_predictor
    from apparel.contract import InputContract
    from apparel.images.fetch import FetchConfig, fetch_url

    with open(manifest, encoding="utf-8") as handle:
        paths = [Path(args.photos) / row["path"] for row in csv.DictReader(handle)][:repeats]
    contract = InputContract.for_run(args.model_dir)
    timings = {}
    began = time.perf_counter()
    blobs = [path.read_bytes() for path in paths]
    timings["read_file_ms"] = (time.perf_counter() - began) * 1000 / len(paths)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *arguments):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=args.photos))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        fetch = FetchConfig(allow_private=True)
        began = time.perf_counter()
        for path in paths:
            fetch_url(base + path.relative_to(args.photos).as_posix(), fetch)
        timings["fetch_loopback_ms"] = (time.perf_counter() - began) * 1000 / len(paths)
    finally:
        server.shutdown()
        server.server_close()

    began = time.perf_counter()
    inputs = np.stack([contract.decode(blob) for blob in blobs])
    timings["decode_ms"] = (time.perf_counter() - began) * 1000 / len(paths)

    predictor = settings_predictor(ModelSettings(args.model_dir, threads=1))
    predictor.predict_proba(inputs[:32])  # warm-up: the graph is traced on the first call
    began = time.perf_counter()
    for start in range(0, len(inputs), 32):
        predictor.predict_proba(inputs[start : start + 32])
    timings["inference_ms_1_thread"] = (time.perf_counter() - began) * 1000 / len(inputs)
    return {key: round(value, 2) for key, value in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos-dir", dest="photos", default=str(ROOT.parent / "shared/datasets/clothing-dataset-small/train"))
    parser.add_argument("--photos", dest="count", type=int, default=2000, help="photos classified per configuration")
    parser.add_argument("--model-dir", default=str(shipped_model_dir("photos")))
    parser.add_argument("--configs", default="local,ray,ray-1x1,ray-2x1")
    parser.add_argument("--out", default=str(ROOT / "runs/batch-scale"))
    parser.add_argument("--ray-worker-niceness", type=int, default=0,
                        help="niceness of Ray's workers (Ray's default is 15; 0 competes as the local engine does)")
    parser.add_argument("--run", choices=list(CONFIGS), help=argparse.SUPPRESS)
    parser.add_argument("--manifest", help=argparse.SUPPRESS)
    parser.add_argument("--run-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.run:
        return run_one(args)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = write_manifest(Path(args.photos), args.count, out)
    names = args.configs.split(",")
    load_before = os.getloadavg()[0]  # other work on the machine, which shares its cores
    rows = []
    for name in names:
        rows.append(measure(name, args, manifest, out))
        print(f"{name:8} {rows[-1]['photos_per_s']:7.2f} photos/s end to end, steady {rows[-1]['steady_photos_per_s']:7.2f}, "
              f"first result after {rows[-1]['first_result_s']:.1f} s, wall {rows[-1]['wall_s']:.1f} s", flush=True)
    by_name = {row["config"]: row for row in rows}
    if "local" in by_name:
        local = by_name["local"]
        for row in rows:
            if row["config"] != "local":
                row.update(compare(Path(local["output"]), Path(row["output"])))
                row["overhead_ms_per_photo"] = round((row["wall_s"] - local["wall_s"]) * 1000 / args.count, 2)
                row["ratio_to_local"] = round(row["photos_per_s"] / local["photos_per_s"], 3)
                row["steady_ratio_to_local"] = round(row["steady_photos_per_s"] / local["steady_photos_per_s"], 3)
    summary = {"photos": args.count, "model": args.model_dir, "cores": usable_cores(),
               "ray_worker_niceness": args.ray_worker_niceness, "load_average_before": load_before,
               "load_average_after": os.getloadavg()[0],
               "configs": rows, "per_photo": profile(args, manifest)}
    if {"ray-1x1", "ray-2x1"} <= by_name.keys():
        summary["scaling_2_vs_1"] = round(by_name["ray-2x1"]["photos_per_s"] / by_name["ray-1x1"]["photos_per_s"], 3)
        summary["steady_scaling_2_vs_1"] = round(by_name["ray-2x1"]["steady_photos_per_s"]
                                                 / by_name["ray-1x1"]["steady_photos_per_s"], 3)
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    with open(out / "results.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=sorted({key for row in rows for key in row}))
        writer.writeheader()
        writer.writerows(rows)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
