"""What the README's two commands install: `make run` only what the main job needs (the data set and
.venv), `make test` the tools the tests drive as well. Read from `make -n`, which runs nothing."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_TOOLS = ("chromium", "postgresql", "nghttp2-client")         # Debian packages only the tests drive
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")


def planned(target: str) -> str:
    """The commands `make TARGET` would run, prerequisites first."""
    return subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def test_make_run_installs_only_what_the_main_job_needs():
    commands = planned("run")
    assert "dataset-fashion-mnist" in commands and "apparel train --out" in commands
    assert [tool for tool in TEST_TOOLS if tool in commands] == []


def test_make_test_installs_the_tools_the_tests_drive():
    commands = planned("test")
    assert "dataset-fashion-mnist" in commands and "pytest" in commands
    assert [tool for tool in TEST_TOOLS if tool in commands] == list(TEST_TOOLS)
