"""The walk-through notebook runs top to bottom with small parameters in the project's own
environment, and what it reports is sane.

Run by hand with other values (or refresh the committed outputs with the defaults):

    .venv/bin/python tests/test_notebook.py --out /tmp/walkthrough.ipynb epochs=2 train_limit=5000
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "walkthrough.ipynb"
# A CI run: one epoch on 2,000 images, a 2 × 2 study of one epoch on 1,000, 40 product photos.
SMALL = {
    "epochs": 1,
    "train_limit": 2000,
    "bench_optimizers": ["adam", "sgd"],
    "bench_activations": ["relu", "tanh"],
    "bench_epochs": 1,
    "bench_limit": 1000,
    "photo_count": 40,
}
# One epoch of seed-mlp on 2,000 images reached 0.76 test accuracy (seed 6); chance is 0.10.
ACCURACY_FLOOR = 0.5
TIMEOUT_S = 600  # per cell


def parameters_index(notebook) -> int:
    """The index of the cell tagged ``parameters`` (papermill's convention)."""
    for index, cell in enumerate(notebook.cells):
        if "parameters" in cell.metadata.get("tags", []):
            return index
    raise ValueError(f"{NOTEBOOK} has no cell tagged 'parameters'")


def execute(parameters: dict, extra_cells: tuple[str, ...] = (), record_timing: bool = True):
    """Run the notebook in a Jupyter kernel of this interpreter, with ``parameters`` injected in a
    cell after the ``parameters`` cell (tagged ``injected-parameters``, as papermill does; one
    left from a saved run is dropped first).
    Returns the executed notebook; a failing cell raises ``nbclient.exceptions.CellExecutionError``."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # A saved run's injected values are replaced, not stacked (papermill does the same).
    notebook.cells = [cell for cell in notebook.cells if "injected-parameters" not in cell.metadata.get("tags", [])]
    if parameters:
        source = "# Parameters\n" + "\n".join(f"{name} = {value!r}" for name, value in parameters.items())
        injected = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
        notebook.cells.insert(parameters_index(notebook) + 1, injected)
    for source in extra_cells:
        notebook.cells.append(nbformat.v4.new_code_cell(source))
    # The kernel must be this environment's Python: the venv's own kernel spec comes first on
    # JUPYTER_PATH (a user's ~/.local kernel named python3 would otherwise win), and
    # jupyter_client launches its "python" as sys.executable.
    previous = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join([str(Path(sys.prefix) / "share" / "jupyter"), *filter(None, [previous])])
    try:
        NotebookClient(
            notebook,
            kernel_name="python3",
            timeout=TIMEOUT_S,
            record_timing=record_timing,
            coalesce_streams=True,
            resources={"metadata": {"path": str(NOTEBOOK.parent)}},
        ).execute()
    finally:
        if previous is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = previous
    return notebook


def stream_text(cell) -> str:
    return "".join(output.get("text", "") for output in cell.get("outputs", []) if output.output_type == "stream")


def summary_of(notebook) -> dict:
    """The JSON line the notebook's last cell prints."""
    lines = [line for line in stream_text(notebook.cells[-1]).splitlines() if line.startswith("{")]
    if not lines:
        raise ValueError("the notebook's last cell printed no JSON summary")
    return json.loads(lines[-1])


def test_notebook_has_a_parameters_cell_with_epochs_and_train_limit():
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    namespace: dict = {}
    exec(notebook.cells[parameters_index(notebook)].source, namespace)
    assert namespace["epochs"] == 20 and namespace["train_limit"] is None
    assert set(SMALL) <= set(namespace), "every value CI overrides is a parameter"


def test_committed_notebook_keeps_a_full_run_and_stays_small():
    import nbformat

    assert NOTEBOOK.stat().st_size <= 3 * 1024 * 1024
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    steps = [cell for cell in code if not {"parameters", "injected-parameters"} & set(cell.metadata.get("tags", []))]
    assert all(cell.get("outputs") for cell in steps), "every cell but the parameters shows its output"
    assert not any(output.output_type == "error" for cell in code for output in cell.outputs)
    images = sum(1 for cell in code for output in cell.outputs if any(key.startswith("image/") for key in output.get("data", {})))
    assert images >= 8
    summary = summary_of(notebook)
    assert summary["epochs"] == 20 and summary["train_images"] == 60000
    assert 0.85 <= summary["reference_test_accuracy"] <= 0.92


def test_notebook_runs_top_to_bottom_with_small_parameters(tmp_path, monkeypatch):
    # Keras's cache goes to a temporary home, not the user's ~/.keras.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    notebook = execute(SMALL, extra_cells=("import sys\nprint(json.dumps({'prefix': sys.prefix}))",))

    assert json.loads(stream_text(notebook.cells[-1]).strip().splitlines()[-1]) == {"prefix": sys.prefix}
    notebook.cells.pop()
    summary = summary_of(notebook)
    assert summary["epochs"] == 1 and summary["train_images"] == 2000
    assert summary["reference_test_accuracy"] >= ACCURACY_FLOOR, summary
    assert summary["default_test_accuracy"] >= ACCURACY_FLOOR, summary
    assert summary["bench_trials"] == 4
    assert summary["photo_images"] == 40 and summary["litert_agreement"] >= 0.99
    assert (tmp_path / "keras" / "datasets" / "fashion-mnist").is_dir()
    assert not list(tmp_path.glob("apparel-notebook-*")), "the notebook removes its scratch folder"
    images = sum(1 for cell in notebook.cells if cell.cell_type == "code"
                 for output in cell.outputs if any(key.startswith("image/") for key in output.get("data", {})))
    assert images >= 8


# Lines TensorFlow's and LiteRT's C++ code writes straight to the kernel's stderr, whatever the
# log level: dropped from a saved notebook (they say nothing about the run).
NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|I\d{4} [\d:.]+ +\d+ port\.cc:\d+\] oneDNN custom operations are on\..*"
    r"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\."
)


def drop_library_noise(notebook) -> None:
    """Remove stderr outputs that hold nothing but the lines of ``NOISE``."""
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [
                output for output in cell.outputs
                if not (output.output_type == "stream" and output.name == "stderr"
                        and all(NOISE.fullmatch(line) for line in output.text.splitlines() if line.strip()))
            ]


def main(argv: list[str]) -> int:
    """``--out FILE [name=value ...]``: execute with those parameters (Python literals) and save,
    without per-cell timing metadata or the C++ libraries' stderr noise."""
    import ast

    import nbformat

    if len(argv) < 2 or argv[0] != "--out":
        print(__doc__, file=sys.stderr)
        return 2
    parameters = {}
    for item in argv[2:]:
        name, _, value = item.partition("=")
        parameters[name] = ast.literal_eval(value)
    notebook = execute(parameters, record_timing=False)
    drop_library_noise(notebook)
    nbformat.write(notebook, argv[1])
    print(json.dumps(summary_of(notebook)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
