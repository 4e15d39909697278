"""What the README's two commands install: `make run` only what the main job needs (the data set and
.venv), `make test` the tools the tests drive as well. Read from `make -n`, which runs nothing."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_TOOLS = ("chromium", "postgresql", "nghttp2-client")         # Debian packages only the tests drive
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")


def planned(target: str, *variables: str) -> str:
    """The commands `make TARGET` would run, prerequisites first (``NAME=value`` ``variables`` set)."""
    return subprocess.run(["make", "-n", target, *variables], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout


def commands(text: str) -> list[str]:
    """The lines of ``text`` with backslash continuations joined and runs of spaces made one."""
    return [" ".join(line.split()) for line in text.replace("\\\n", " ").splitlines()]


def test_make_run_installs_only_what_the_main_job_needs():
    commands = planned("run")
    assert "dataset-fashion-mnist" in commands and "apparel train --out" in commands
    assert [tool for tool in TEST_TOOLS if tool in commands] == []


def test_make_test_installs_the_tools_the_tests_drive():
    commands = planned("test")
    assert "dataset-fashion-mnist" in commands and "pytest" in commands
    assert [tool for tool in TEST_TOOLS if tool in commands] == list(TEST_TOOLS)


def test_the_docs_give_the_shipped_photo_model_s_recipe_and_their_example_follows_it():
    """The shipped photo model's flags lived only in the Makefile, and the docs' example trained
    with others (Adam, 20 epochs): the page shows the command `make photos-model` runs, its example
    trains with those flags, and they are the parameters the shipped model's config.json records."""
    from apparel.artifacts import shipped_model_dir
    from apparel.cli import build_parser
    from apparel.config import TrainConfig
    from apparel.flags import train_config_from_args

    recipe = next(line for line in commands(planned("photos-model", "PHOTO_DATA=clothing-dataset-small"))
                  if "apparel train" in line)
    recipe = re.sub(r"^\S*/apparel ", "apparel ", recipe)  # .venv/bin/apparel, as a user types it
    page = commands((ROOT / "docs" / "your-own-categories.md").read_text(encoding="utf-8"))
    assert recipe in page
    example = recipe.replace("--images clothing-dataset-small", "--images shop/labelled").replace("runs/photos", "runs/shop")
    assert example in page
    made = train_config_from_args(build_parser().parse_args(recipe.split()[1:]))
    shipped = TrainConfig.load(shipped_model_dir("photos") / "config.json")
    assert made == shipped.replace(images=("clothing-dataset-small",))
