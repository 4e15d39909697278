"""Benchmark results: the ranked table (terminal and Markdown), CSV/JSON exports and four charts.

Works on the records ``apparel.bench.study.collect`` returns; charts are matplotlib ``Figure``
objects, as in ``apparel.training.plots``.

    >>> from apparel import bench_report
    >>> print(bench_report.results_table(records))
    >>> bench_report.write_exports(records, "runs/bench/mine", meta={"study": "mine"})
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

from apparel import artifacts
from apparel.training.plots import new_figure, save_figure
from apparel.bench.spec import AXIS_FIELDS, is_reference

CSV_COLUMNS = (*AXIS_FIELDS, "test_accuracy", "test_loss", "train_accuracy", "fit_seconds", "state")
CHART_FILES = ("accuracy_by_optimizer.png", "optimizer_activation_heatmap.png", "accuracy_vs_epochs.png",
               "accuracy_vs_time.png")
REFERENCE_NOTE = "reference"


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _std(values: list[float]) -> float:
    """Sample standard deviation (0 for a single value)."""
    if len(values) < 2:
        return 0.0
    mean = _mean(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _scored(records: list[dict]) -> list[dict]:
    return [r for r in records if r["state"] == "COMPLETE" and isinstance(r.get("test_accuracy"), (int, float))]


def summarize(records: list[dict]) -> list[dict]:
    """Completed trials grouped by everything but the seed, best mean test accuracy first."""
    groups: dict[tuple, list[dict]] = {}
    for record in _scored(records):
        key = tuple(record[name] for name in AXIS_FIELDS if name != "seed")
        groups.setdefault(key, []).append(record)
    rows = []
    for members in groups.values():
        row = {name: members[0][name] for name in AXIS_FIELDS if name != "seed"}
        row["seeds"] = sorted(m["seed"] for m in members)
        row["trials"] = len(members)
        for metric in ("test_accuracy", "test_loss", "train_accuracy", "fit_seconds"):
            values = [m[metric] for m in members if isinstance(m.get(metric), (int, float))]
            row[metric] = _mean(values) if values else None
            row[metric + "_std"] = _std(values) if values else None
        row["reference"] = is_reference(members[0])
        rows.append(row)
    return sorted(rows, key=lambda row: -row["test_accuracy"])


def varying_axes(records: list[dict]) -> list[str]:
    """Axes (but the seed) whose values differ between trials: the table's columns."""
    return [name for name in AXIS_FIELDS if name != "seed" and len({repr(r.get(name)) for r in records}) > 1]


def fixed_axes(records: list[dict]) -> dict:
    varying = set(varying_axes(records)) | {"seed"}
    return {name: records[0].get(name) for name in AXIS_FIELDS if name not in varying} if records else {}


def _value(value) -> str:
    if value is None:
        return "default"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _figure_text(mean, std, repeated: bool, digits: int = 4) -> str:
    if mean is None:
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if repeated else f"{mean:.{digits}f}"


def table_rows(records: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the ranked table (strings), shared by the terminal and Markdown."""
    axes = varying_axes(records) or ["optimizer"]
    summary = summarize(records)
    repeated = any(row["trials"] > 1 for row in summary)
    header = ["rank", *axes]
    if repeated:
        header.append("seeds")
    header += ["test acc", "test loss", "train acc", "fit s", "note"]
    rows = []
    for rank, row in enumerate(summary, start=1):
        cells = [str(rank), *(_value(row[name]) for name in axes)]
        if repeated:
            cells.append(str(row["trials"]))
        many = row["trials"] > 1
        cells += [_figure_text(row["test_accuracy"], row["test_accuracy_std"], many),
                  _figure_text(row["test_loss"], row["test_loss_std"], many),
                  _figure_text(row["train_accuracy"], row["train_accuracy_std"], many),
                  _figure_text(row["fit_seconds"], row["fit_seconds_std"], many, digits=1),
                  REFERENCE_NOTE if row["reference"] else ""]
        rows.append(cells)
    return header, rows


def _failures(records: list[dict]) -> list[str]:
    lines = []
    for record in records:
        if record["state"] != "COMPLETE":
            where = ", ".join(f"{name} {_value(record.get(name))}" for name in varying_axes(records) + ["seed"])
            lines.append(f"trial {record['trial']} ({where}): {record.get('error', 'failed')}")
    return lines


def results_table(records: list[dict], markdown: bool = False) -> str:
    """The ranked table: best first, the reference configuration marked, mean ± std over seeds."""
    if not records:
        return "no finished trials yet"
    header, rows = table_rows(records)
    fixed = ", ".join(f"{name} {_value(value)}" for name, value in fixed_axes(records).items())
    seeds = sorted({r["seed"] for r in records})
    lines = []
    if markdown:
        lines += [f"Fixed: {fixed}; seeds {', '.join(map(str, seeds))}.", "",
                  "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(f"**{c}**" if row[-1] and c else c for c in row) + " |" for row in rows]
    else:
        widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
        lines.append(f"fixed: {fixed}; seeds {', '.join(map(str, seeds))}")
        for row in [header, *rows]:
            lines.append("  ".join(cell.rjust(width) if index == 0 else cell.ljust(width)
                                   for index, (cell, width) in enumerate(zip(row, widths))).rstrip())
    failures = _failures(records)
    if failures:
        lines += ["", f"{len(failures)} failed trial(s):" if not markdown else f"{len(failures)} failed trial(s):", ""]
        lines += [("- " if markdown else "  ") + line for line in failures]
    return "\n".join(lines)


def csv_text(records: list[dict]) -> str:
    """One row per finished trial, in trial order, with exactly ``CSV_COLUMNS``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for record in records:
        writer.writerow(["" if record.get(column) is None else record.get(column) for column in CSV_COLUMNS])
    return buffer.getvalue()


def write_exports(records: list[dict], out_dir: str | os.PathLike, meta: dict | None = None) -> list[Path]:
    """Write results.csv, results.md, results.json and the four charts into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = meta or {}
    written = []
    with artifacts.atomic_path(out / "results.csv") as temporary:
        temporary.write_text(csv_text(records), encoding="utf-8")
    written.append(out / "results.csv")
    title = f"# Benchmark study `{meta['study']}`\n\n" if meta.get("study") else "# Benchmark study\n\n"
    with artifacts.atomic_path(out / "results.md") as temporary:
        temporary.write_text(title + results_table(records, markdown=True) + "\n", encoding="utf-8")
    written.append(out / "results.md")
    artifacts.write_json(out / "results.json", {**meta, "summary": summarize(records), "trials": records})
    written.append(out / "results.json")
    scored = _scored(records)
    if scored:
        charts = (accuracy_by_optimizer(scored), optimizer_activation_heatmap(scored),
                  accuracy_vs_epochs(scored), accuracy_vs_time(scored))
        written += [save_figure(figure, out / name) for name, figure in zip(CHART_FILES, charts)]
    return written


# ---------------------------------------------------------------------------------------------
# Charts


def _colours(names: list[str]) -> dict:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: cmap(index % cmap.N) for index, name in enumerate(names)}


def _ordered(records: list[dict], name: str) -> list:
    """Values of an axis, best mean test accuracy first (so charts read like the table)."""
    values = {}
    for record in records:
        values.setdefault(record[name], []).append(record["test_accuracy"])
    return sorted(values, key=lambda value: -_mean(values[value]))


def _seed_groups(records: list[dict]) -> dict[tuple, list[float]]:
    """Test accuracies of each configuration, over its seeds."""
    groups: dict[tuple, list[float]] = {}
    for record in records:
        key = tuple(record[name] for name in AXIS_FIELDS if name != "seed")
        groups.setdefault(key, []).append(record["test_accuracy"])
    return groups


def _cell(records: list[dict]) -> tuple[float, float]:
    """Mean test accuracy over configurations, and the pooled spread over seeds within them."""
    groups = _seed_groups(records)
    means = [_mean(values) for values in groups.values()]
    variances = [_std(values) ** 2 for values in groups.values() if len(values) > 1]
    return _mean(means), math.sqrt(_mean(variances)) if variances else 0.0


def accuracy_by_optimizer(records: list[dict]):
    """Bars of test accuracy per optimizer, one per activation, error bars the std over seeds."""
    optimizers = _ordered(records, "optimizer")
    activations = _ordered(records, "activation")
    colours = _colours([str(a) for a in activations])
    repeated = any(len(group) > 1 for group in _seed_groups(records).values())
    figure = new_figure(min(16, max(6, 0.4 * len(optimizers) * len(activations) + 2)), 4.5)
    axes = figure.add_subplot(1, 1, 1)
    width = 0.8 / len(activations)
    lowest = 1.0
    for index, activation in enumerate(activations):
        heights, errors, positions = [], [], []
        for position, optimizer in enumerate(optimizers):
            cell = [r for r in records if r["optimizer"] == optimizer and r["activation"] == activation]
            if cell:
                mean, spread = _cell(cell)
                heights.append(mean)
                errors.append(spread)
                positions.append(position + (index - (len(activations) - 1) / 2) * width)
                lowest = min(lowest, mean - spread)
        bars = axes.bar(positions, heights, width=width, yerr=errors if repeated else None, capsize=3, label=str(activation),
                        color=colours[str(activation)])
        if len(optimizers) * len(activations) <= 40:
            axes.bar_label(bars, fmt="%.3f", fontsize=6, padding=2)
    axes.set_xticks(range(len(optimizers)))
    axes.set_xticklabels([str(o) for o in optimizers], rotation=30, ha="right")
    axes.set_ylabel("test accuracy")
    axes.set_ylim(max(0.0, lowest - 0.05), 1.0)
    axes.set_title("Test accuracy by optimizer" + (" (error bars: std over seeds)" if repeated else " (one seed each)"))
    axes.grid(axis="y", alpha=0.3)
    if len(activations) > 1:
        axes.legend(title="activation")
    figure.tight_layout()
    return figure


def optimizer_activation_heatmap(records: list[dict]):
    """Mean test accuracy for each optimizer × activation pair."""
    import numpy as np

    optimizers = _ordered(records, "optimizer")
    activations = _ordered(records, "activation")
    grid = np.full((len(optimizers), len(activations)), np.nan)
    for i, optimizer in enumerate(optimizers):
        for j, activation in enumerate(activations):
            cell = [r for r in records if r["optimizer"] == optimizer and r["activation"] == activation]
            if cell:
                grid[i, j] = _cell(cell)[0]
    figure = new_figure(2.2 + 1.3 * len(activations), 1.2 + 0.45 * len(optimizers))
    axes = figure.add_subplot(1, 1, 1)
    image = axes.imshow(grid, cmap="viridis", aspect="auto")
    figure.colorbar(image, ax=axes, label="test accuracy")
    axes.set_xticks(range(len(activations)))
    axes.set_xticklabels([str(a) for a in activations])
    axes.set_yticks(range(len(optimizers)))
    axes.set_yticklabels([str(o) for o in optimizers])
    axes.set_xlabel("activation")
    axes.set_ylabel("optimizer")
    axes.set_title("Test accuracy: optimizer × activation")
    middle = np.nanmean(grid)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            if not np.isnan(grid[i, j]):
                axes.text(j, i, f"{grid[i, j]:.3f}", ha="center", va="center", fontsize=8,
                          color="black" if grid[i, j] > middle else "white")
    figure.tight_layout()
    return figure


def accuracy_vs_epochs(records: list[dict]):
    """Left: training accuracy after each epoch (mean per optimizer); right: test accuracy at
    each ``epochs`` setting of the study."""
    optimizers = _ordered(records, "optimizer")
    colours = _colours([str(o) for o in optimizers])
    figure = new_figure(12, 4.5)
    curves = figure.add_subplot(1, 2, 1)
    finals = figure.add_subplot(1, 2, 2)
    for optimizer in optimizers:
        mine = [r for r in records if r["optimizer"] == optimizer]
        histories = [r.get("history", {}).get("accuracy") or [] for r in mine]
        length = max((len(h) for h in histories), default=0)
        if length:
            means = [_mean([h[e] for h in histories if len(h) > e and h[e] is not None] or [math.nan]) for e in range(length)]
            curves.plot(range(1, length + 1), means, "-", color=colours[str(optimizer)], label=str(optimizer))
        settings = sorted({r["epochs"] for r in mine})
        finals.plot(settings, [_cell([r for r in mine if r["epochs"] == e])[0] for e in settings], "-o",
                    color=colours[str(optimizer)], label=str(optimizer))
    curves.set_xlabel("epoch")
    curves.set_ylabel("training accuracy (running mean over the epoch)")
    curves.set_title("Training accuracy per epoch")
    finals.set_xlabel("epochs trained")
    finals.set_ylabel("test accuracy")
    finals.set_title("Test accuracy vs epochs")
    from matplotlib.ticker import MaxNLocator

    for axes in (curves, finals):
        axes.grid(alpha=0.3)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    finals.legend(fontsize=8)
    figure.tight_layout()
    return figure


def accuracy_vs_time(records: list[dict]):
    """Each trial's test accuracy against its training time, coloured by optimizer."""
    optimizers = _ordered(records, "optimizer")
    activations = _ordered(records, "activation")
    colours = _colours([str(o) for o in optimizers])
    markers = dict(zip(activations, "os^Dv<>Pp*"))
    figure = new_figure(8, 5)
    axes = figure.add_subplot(1, 1, 1)
    for optimizer in optimizers:
        for activation in activations:
            mine = [r for r in records if r["optimizer"] == optimizer and r["activation"] == activation
                    and isinstance(r.get("fit_seconds"), (int, float))]
            if mine:
                label = str(optimizer) if len(activations) == 1 else f"{optimizer}, {activation}"
                axes.scatter([r["fit_seconds"] for r in mine], [r["test_accuracy"] for r in mine],
                             color=colours[str(optimizer)], marker=markers.get(activation, "o"), label=label)
    axes.set_xlabel("training time (s)")
    axes.set_ylabel("test accuracy")
    axes.set_title("Test accuracy vs training time")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, ncol=2 if len(optimizers) * len(activations) > 10 else 1)
    figure.tight_layout()
    return figure
