"""REST serving of this checkout against another git revision, side by side: has a change made it slower?

Two servers of the shipped Fashion-MNIST model run at once on 127.0.0.1, this checkout's and the
one of ``--baseline`` (a git worktree of that revision in a temporary folder, removed at the end,
served from this environment), and h2load (``make load-tools``) sends single-image JSON requests
to ``/v1/models/apparel:predict`` of each in turn, the order swapped every round so that a change
in the machine's speed falls on both alike. Each round measures two things:

- **CPU a request at a fixed rate** (``--rate`` requests a second from 16 clients): the server
  process's CPU time (all threads) over the requests answered. The rate is well below what the
  server can take, so the figure is the cost of a request, not of contention.
- **Throughput at 16 clients**, each asking again as soon as it is answered: req/s.

The summary gives each side's mean, the ratio (this checkout over the baseline) and the spread
of the per-round ratios; the last line is JSON (``cpu_ratio``, ``rps_ratio``, …), also written to
``--out``. Bounded: ``--rounds`` × 4 levels of ``--seconds`` each.

    .venv/bin/python benchmarks/serve_ab.py --baseline e11b604^ --rounds 10   # before the protocols of #15
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import serve_load  # noqa: E402  (beside this file)

# This checkout's shipped model, by its path: a baseline revision may keep its models elsewhere.
MODEL = serve_load.shipped_model_dir("default")
SHAPE = (28, 28)


def level(port: int, pid: int, seconds: float, rate: float | None) -> serve_load.LevelResult:
    """16 clients on ``/v1/models/apparel:predict`` (the alias: every revision serves it)."""
    sample = serve_load.h2load_sample("rest", "apparel", port, 0, 16, seconds, SHAPE, "", server_pid=pid, rps=rate)
    return serve_load.summarise(16, [sample])


def compare(args, baseline: Path) -> dict:
    servers = {"baseline": serve_load.start_server(str(MODEL), [], source=baseline),
               "current": serve_load.start_server(str(MODEL), [])}
    try:
        ports = {side: serve_load.wait_ready(server) for side, server in servers.items()}
        for side in servers:  # warm-up, not counted
            level(ports[side], servers[side].pid, 2, None)
        rounds = []
        for number in range(args.rounds):
            sides = ("baseline", "current") if number % 2 == 0 else ("current", "baseline")
            result = {}
            for side in sides:
                fixed = level(ports[side], servers[side].pid, args.seconds, args.rate)
                full = level(ports[side], servers[side].pid, args.seconds, None)
                if fixed.errors or full.errors:
                    raise SystemExit(f"{side}: {fixed.errors + full.errors} failed requests")
                result[side] = {"cpu_ms": fixed.server_cpu_ms, "rps": full.rps}
            rounds.append(result)
            print(f"round {number + 1}: CPU a request at {args.rate:g} req/s: baseline "
                  f"{result['baseline']['cpu_ms']:.3f} ms, current {result['current']['cpu_ms']:.3f} ms; "
                  f"16 clients: baseline {result['baseline']['rps']:.1f}, current {result['current']['rps']:.1f} req/s",
                  flush=True)
    finally:
        for server in servers.values():
            serve_load.stop_server(server)
    summary = {"baseline": args.baseline, "rounds": args.rounds, "seconds": args.seconds, "rate": args.rate}
    for key in ("cpu_ms", "rps"):
        for side in ("baseline", "current"):
            summary[f"{key}_{side}"] = round(statistics.mean(r[side][key] for r in rounds), 3)
        ratios = [r["current"][key] / r["baseline"][key] for r in rounds]
        name = "cpu_ratio" if key == "cpu_ms" else "rps_ratio"
        summary[name] = round(summary[f"{key}_current"] / summary[f"{key}_baseline"], 3)
        summary[f"{name}_rounds"] = [round(min(ratios), 3), round(statistics.median(ratios), 3), round(max(ratios), 3)]
    print(f"CPU a request at {args.rate:g} req/s: baseline {summary['cpu_ms_baseline']:.3f} ms, current "
          f"{summary['cpu_ms_current']:.3f} ms, current/baseline {summary['cpu_ratio']:.3f} "
          f"(rounds: min, median, max {summary['cpu_ratio_rounds']})")
    print(f"16 clients: baseline {summary['rps_baseline']:.1f}, current {summary['rps_current']:.1f} req/s, "
          f"current/baseline {summary['rps_ratio']:.3f} (rounds: min, median, max {summary['rps_ratio_rounds']})")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="the git revision to compare with (a commit, tag, HEAD~3…)")
    parser.add_argument("--rounds", type=int, default=10, help="rounds, each side measured once a round (default 10)")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds of each level (default 4)")
    parser.add_argument("--rate", type=float, default=640.0, help="requests a second of the fixed-rate level (default 640)")
    parser.add_argument("--out", help="also write the JSON summary here")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0 or args.rate <= 0:
        parser.error("--rounds must be at least 1, --seconds and --rate positive")
    if shutil.which("h2load") is None:
        parser.error("h2load is missing: make load-tools (Debian's nghttp2-client)")
    git = ["git", "-C", str(serve_load.ROOT)]
    resolved = subprocess.run([*git, "rev-parse", "--verify", "--quiet", f"{args.baseline}^{{commit}}"],
                              capture_output=True, text=True)
    if resolved.returncode != 0:
        parser.error(f"--baseline {args.baseline!r} is not a commit of this repository")
    with tempfile.TemporaryDirectory() as folder:
        worktree = Path(folder) / "baseline"
        subprocess.run([*git, "worktree", "add", "--detach", "--quiet", str(worktree), resolved.stdout.strip()],
                       check=True)
        try:
            summary = compare(args, worktree)
        finally:
            subprocess.run([*git, "worktree", "remove", "--force", str(worktree)], check=False)
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
