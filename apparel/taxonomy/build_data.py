"""Regenerate ``data/categories.json`` from the upstream files (maintainers only; needs PyYAML).

    python -m apparel.taxonomy.build_data ../shared/taxonomy

The run time reads JSON only, so installing ``apparel`` needs no YAML parser. The source files are
checked against the SHA-256 recorded here: the generated file is reproducible from the same inputs,
and a changed input (a newer upstream commit) is a deliberate edit of this file, not an accident.
``attributes.json`` and ``LICENSE`` are copied verbatim.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"

# file → (sha256, where it comes from). Upstream: https://github.com/Shopify/product-taxonomy (MIT).
SOURCES = {
    "aa_apparel_accessories.yml": (
        "05330795fac41c77dc7aed13355a0197c47425e73cfce8cdc8aeb67e410548c0",
        "Shopify/product-taxonomy data/categories/aa_apparel_accessories.yml@e5ade3738fa71098dcffa85f30ff7b4287e7695d"),
    "lb_luggage_bags.yml": (
        "156ba82ea32c9214ebf31c2722e763d3cedcd344e10e1c79a29cc033416fbe6f",
        "Shopify/product-taxonomy data/categories/lb_luggage_bags.yml@7d33d623986ad8b4a7b71fd622d2ca1ca0e959e7"),
    "categories-2024-07.json": (
        "bcb2c370f98de1ae745d82ef963c4ed127ec0e1e718665827942ed0d64d3ebd6",
        "release 2024-07 (en), as packaged in fabiofcferreira/shopify-taxonomy packages/en/src/en.json"),
    "attributes.json": (
        "d516535e6658673d64e21341a848170b41709cd96625d08585f136314d258b0c",
        "Shopify/product-taxonomy data/attributes.yml@88cd2a6bb885c3bd4b2e3c86051b7954780333d5, "
        "data/values.yml@4ba479e8b3251f0fa080c1025ddaa503d197d772, "
        "dist/en/attributes.json@cc0309448ab0bbbba607a9a2c6e0f9b7045e1d32"),
    "LICENSE": (
        "6a2261660cc6cb406ed6ef788347d8cb35e939f4537def9e699abf88ed025273",
        "Shopify/product-taxonomy LICENSE@f354e5702c62dfdc33b3f1f8d6be75cc75c40554"),
}
# The verticals read from the upstream YAML (with attributes); every other one comes from 2024-07.
YAML_VERTICALS = {"aa": "aa_apparel_accessories.yml", "lb": "lb_luggage_bags.yml"}


def build(source_dir: str | Path, out_dir: str | Path = DATA_DIR) -> Path:
    """Check the sources, write ``categories.json`` and copy ``attributes.json`` and ``LICENSE``."""
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    for name, (digest, _) in SOURCES.items():
        actual = hashlib.sha256((source_dir / name).read_bytes()).hexdigest()
        if actual != digest:
            raise ValueError(f"source_dir: {source_dir / name} has sha256 {actual}, expected {digest}; "
                             "if it is a new upstream version, record its commit and digest in SOURCES")
    release = json.loads((source_dir / "categories-2024-07.json").read_text(encoding="utf-8"))
    verticals = []
    for vertical in release["verticals"]:
        if vertical["prefix"] in YAML_VERTICALS:
            file = YAML_VERTICALS[vertical["prefix"]]
            rows = _yaml_rows(source_dir / file, vertical["prefix"])
            source = SOURCES[file][1]
        else:
            rows = [[category["id"], category["name"]] for category in vertical["categories"]]
            source = SOURCES["categories-2024-07.json"][1]
        verticals.append({"prefix": vertical["prefix"], "name": vertical["name"], "source": source, "categories": rows})
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "categories.json"
    target.write_text(_dump(release["version"], verticals), encoding="utf-8")
    for name in ("attributes.json", "LICENSE"):
        shutil.copyfile(source_dir / name, out_dir / name)
    return target


def _yaml_rows(path: Path, prefix: str) -> list[list]:
    """``[id, name, [attribute, …]]`` per category in depth-first order (as the 2024-07 list is),
    siblings in the upstream order. The loader finds a parent from the id (``aa-1-13-8`` → ``aa-1-13``), so this
    checks that every upstream ``children`` list says the same."""
    import yaml

    entries = yaml.safe_load(path.read_text(encoding="utf-8"))
    by_id = {entry["id"]: entry for entry in entries}
    rows, stack = [], [prefix]
    while stack:
        entry = by_id[stack.pop()]
        for child in entry["children"]:
            if child.rsplit("-", 1)[0] != entry["id"]:
                raise ValueError(f"{path}: {child} is listed under {entry['id']}, not under the parent its id names")
        rows.append([entry["id"], entry["name"], list(entry["attributes"])])
        stack.extend(reversed(entry["children"]))
    if len(rows) != len(entries):
        raise ValueError(f"{path}: {len(entries) - len(rows)} categories are not reachable from {prefix}")
    return rows


def _dump(version: str, verticals: list[dict]) -> str:
    """One category a line: compact, and a new release reads as a line diff."""
    lines = ["{", f'"release": {json.dumps(version)},', '"verticals": [']
    for index, vertical in enumerate(verticals):
        head = {key: vertical[key] for key in ("prefix", "name", "source")}
        lines.append(json.dumps(head, ensure_ascii=False)[:-1] + ', "categories": [')
        rows = [json.dumps(row, ensure_ascii=False, separators=(",", ":")) for row in vertical["categories"]]
        lines.append(",\n".join(rows))
        lines.append("]}" + ("," if index < len(verticals) - 1 else ""))
    lines += ["]", "}", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m apparel.taxonomy.build_data SOURCE_DIR (the folder holding the upstream files)")
    print(f"wrote {build(sys.argv[1])}")
