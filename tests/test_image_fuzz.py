"""The image fuzz, short: 3,000 mutated images (over 2,000 of the accepted formats, the rest of
formats that must be refused) through the decode path of predict, catalog and the service, in a
process of its own so that its peak memory is its own. ``benchmarks/image_fuzz.py`` is the long run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from apparel.images.decode import ACCEPTED_FORMATS, MAX_DECODE_BYTES

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "image_fuzz.py"
IMAGES = 3_000


@pytest.fixture(scope="module")
def report() -> dict:
    completed = subprocess.run([sys.executable, str(BENCHMARK), "--images", str(IMAGES)],
                               capture_output=True, text=True, timeout=600)
    assert completed.stdout, completed.stderr[-2000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_every_mutant_decodes_or_is_refused_with_a_value_error(report):
    assert report["images"] == IMAGES
    assert report["failed"] == 0, json.dumps(report["failures"][:3], indent=1)
    accepted = {format: outcomes for format, outcomes in report["per_format"].items() if format in ACCEPTED_FORMATS}
    assert set(accepted) == set(ACCEPTED_FORMATS)
    assert sum(report["mutants_per_format"][format] for format in ACCEPTED_FORMATS) >= 2_000
    for format, outcomes in accepted.items():  # mutants that still decode, and mutants refused
        assert outcomes.get("decoded", 0) > 0 and outcomes.get("refused", 0) > 0, (format, outcomes)
    foreign = {format: outcomes for format, outcomes in report["per_format"].items() if format not in ACCEPTED_FORMATS}
    assert "DDS" in foreign and all(set(outcomes) == {"refused"} for outcomes in foreign.values()), foreign


def test_memory_and_time_stay_bounded(report):
    # One image at a time may take MAX_DECODE_BYTES (256 MiB) decoding, and the pipeline's reduced
    # copies a little more; before the decode budget, the same mutants took 16 GB and 35 s each.
    assert report["peak_rss_mb"] - report["baseline_rss_mb"] < 2 * MAX_DECODE_BYTES / 2**20 + 100, report
    assert report["slowest_ms"] < 10_000, report
