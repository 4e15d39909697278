"""MkDocs hook: the table of apparel's modules, built from the package when the site is built.

A page holding the marker below gets, in its place, one row per module of ``apparel/``: its path,
its stage (``tests/test_layout.py``'s ``STAGES``, the order imports must follow) and the first
sentence of its docstring. The table is read from the source with ``ast`` (nothing is imported,
so building the site needs no TensorFlow), so it cannot fall behind the code the way a hand-kept
list did.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

MARKER = "<!-- module table -->"
REPOSITORY = Path(__file__).resolve().parents[2]
PACKAGE = REPOSITORY / "apparel"


def _layout():
    """``tests/test_layout.py``, loaded by path: the stages live there, beside the test that enforces them."""
    spec = importlib.util.spec_from_file_location("_apparel_layout", REPOSITORY / "tests" / "test_layout.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def summary(path: Path) -> str:
    """The first sentence of the module's docstring, as Markdown that fits in a table cell."""
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    if not docstring:
        return "—"
    paragraph = " ".join(docstring.split("\n\n")[0].split())
    # A sentence ends at a full stop followed by a capital letter; "e.g. x" and "0.5" do not end one.
    sentence = re.split(r"(?<=[.!?])\s+(?=[A-Z`])", paragraph)[0]
    return sentence.rstrip(":").replace("``", "`").replace("|", "\\|")


def module_table() -> str:
    layout = _layout()
    rows = []
    for path in PACKAGE.rglob("*.py"):
        name = layout.module_name(path)
        shown = path.relative_to(REPOSITORY).as_posix()
        if path.name == "__init__.py":
            shown = shown.removesuffix("__init__.py")
        try:
            stage = layout.stage(name)
        except KeyError:  # a module test_layout.py does not place yet: its test says so, not the site
            stage = "—"
        rows.append((str(stage), shown, summary(path)))
    lines = ["| module | stage | what it holds |", "|---|---|---|"]
    lines += [f"| `{shown}` | {stage} | {text} |" for stage, shown, text in sorted(rows)]
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, module_table())
