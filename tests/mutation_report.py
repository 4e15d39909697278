"""The mutation score of `make mutation`, per module and in all, from mutmut's results.

mutmut writes one ``mutants/<module>.py.meta`` per mutated module, with each mutant's exit code.
A mutant counts as killed when a test failed on it (or it hung past its timeout: the suite
noticed); it survived when the tests passed; mutants no test reaches count against the score.
The last line is the one CI and docs/testing.md quote:

    mutation score: 0.91 (killed 812 of 892)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

KILLED = {1, 3, 36, 24, -24, 152, 255}  # test failure, pytest internal error, timeouts (mutmut's codes)
SURVIVED = {0}
NOT_REACHED = {5, 33}


def module_counts(meta: Path) -> tuple[int, int, list[str]]:
    """(killed, counted, surviving mutant names) of one module."""
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    unchecked = [name for name, code in codes.items() if code is None]
    if unchecked:
        raise SystemExit(f"{meta}: {len(unchecked)} mutants not run yet; run `make mutation` to the end")
    killed = sum(code in KILLED for code in codes.values())
    survivors = sorted(name for name, code in codes.items() if code in SURVIVED | NOT_REACHED)
    counted = killed + len(survivors)
    return killed, counted, survivors


def mutated_modules(pyproject: str = "pyproject.toml") -> list[str]:
    """The modules ``[tool.mutmut] only_mutate`` names (a module dropped from it since an earlier
    run may still have results under mutants/: they no longer count)."""
    import tomllib

    return tomllib.loads(Path(pyproject).read_text())["tool"]["mutmut"]["only_mutate"]


def main(root: str = "mutants") -> int:
    metas = [Path(root) / f"{module}.meta" for module in mutated_modules()]
    metas = [meta for meta in metas if meta.exists()]
    if not metas:
        print(f"no mutmut results under {root}/; run `make mutation`", file=sys.stderr)
        return 2
    total_killed = total = 0
    for meta in metas:
        killed, counted, survivors = module_counts(meta)
        total_killed, total = total_killed + killed, total + counted
        module = str(meta.relative_to(root)).removesuffix(".meta")
        score = killed / counted if counted else 1.0
        print(f"{module:<32} {score:.2f}  (killed {killed} of {counted})")
        for name in survivors:
            print(f"    survived: {name}")
    print(f"mutation score: {total_killed / total:.2f} (killed {total_killed} of {total})")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
