"""The documentation: the site builds with ``mkdocs build --strict`` (no broken link, anchor or
missing page), its module table is generated from the package, and the README stays a front page
whose links all land and whose Python example runs.

MkDocs checks only the pages under docs/; the README lives outside the site, so its relative links
are checked here.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from apparel.artifacts import shipped_model_dir
from apparel.contract import InputContract
from conftest import render_photo

REPOSITORY = Path(__file__).resolve().parents[1]
README = REPOSITORY / "README.md"
MAX_README_LINES = 200


def test_the_site_builds_strictly_with_every_module_in_its_table(tmp_path):
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    architecture = (site / "architecture" / "index.html").read_text(encoding="utf-8")
    assert "<!-- module table -->" not in architecture
    for path in sorted((REPOSITORY / "apparel").rglob("*.py")):
        shown = path.relative_to(REPOSITORY).as_posix().removesuffix("__init__.py")
        assert f"<code>{shown}</code>" in architecture, f"{shown} is missing from the module table"


def _hook():
    sys.path.insert(0, str(REPOSITORY / "docs" / "hooks"))
    try:
        import module_table
    finally:
        sys.path.pop(0)
    return module_table


def test_a_module_s_row_is_the_first_sentence_of_its_docstring_as_markdown(tmp_path):
    module = tmp_path / "example.py"
    module.write_text('"""Read ``a|b`` files from\nthe disk, e.g. 0.5 MB. Then more.\n\nDetails."""\n', encoding="utf-8")
    assert _hook().summary(module) == "Read `a\\|b` files from the disk, e.g. 0.5 MB."
    module.write_text('"""The steps, in order:\n\n1. trim"""\n', encoding="utf-8")
    assert _hook().summary(module) == "The steps, in order"
    module.write_text("x = 1\n", encoding="utf-8")
    assert _hook().summary(module) == "—"


def test_the_marker_becomes_the_table_and_other_pages_are_left_alone():
    hook = _hook()
    page = hook.on_page_markdown("before\n<!-- module table -->\nafter", None, None, None)
    assert "| `apparel/serve/app.py` | 7 |" in page and "<!-- module table -->" not in page
    assert hook.on_page_markdown("no marker here", None, None, None) == "no marker here"


def test_the_readme_is_a_front_page_that_starts_with_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_README_LINES
    first_block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    assert [line.split()[:2] for line in first_block.splitlines()] == [["make", "run"], ["make", "test"]]
    # One table of commands; the rest of the material lives in the guides.
    assert len(re.findall(r"^\|---", text, flags=re.MULTILINE)) == 1


def test_every_relative_link_of_the_readme_lands_on_a_file_and_anchor():
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    relative = [link for link in links if not re.match(r"[a-z]+:", link)]
    assert relative, "the README links to no guide"
    for link in relative:
        path, _, anchor = link.partition("#")
        target = REPOSITORY / path
        assert target.is_file(), f"README links to {link}, which does not exist"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", target.read_text(encoding="utf-8"), flags=re.MULTILINE)
            assert anchor in {_slug(heading) for heading in headings}, f"README links to {link}: no such heading"


def test_the_readme_s_python_example_runs_on_the_shipped_photo_model(tmp_path):
    """The example as printed, on two rendered photos under its file names: it must run and print
    each photo's three most likely classes of the shipped store model and its category."""
    code = README.read_text(encoding="utf-8").split("```python\n", 1)[1].split("```", 1)[0]
    rng = np.random.default_rng(0)
    for name in re.findall(r'"(\w+\.jpg)"', code):
        render_photo(1, rng, size=(240, 200)).save(tmp_path / name, quality=90)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPOSITORY)})
    assert result.returncode == 0, result.stderr[-3000:]
    classes = InputContract.for_run(shipped_model_dir("store")).class_names
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["shirt.jpg", "shoes.jpg"]
    for line in lines:
        ranked, category = line.split(" ", 1)[1].split(" → ")
        top = ast.literal_eval(ranked)
        assert len(top) == 3 and top == sorted(top, key=lambda pair: -pair[1])
        assert {name for name, _ in top} <= set(classes)
        # A Shopify category's full path, or the reason none was written.
        assert category.startswith(("Apparel & Accessories > ", "Luggage & Bags > ")) or category in (
            "uncertain", "outside the vertical")


def _slug(heading: str) -> str:
    """The anchor MkDocs's toc extension gives a heading (lower case, punctuation dropped, spaces → -)."""
    words = re.sub(r"[^\w\s-]", "", heading.strip().lower())
    return re.sub(r"[-\s]+", "-", words)
