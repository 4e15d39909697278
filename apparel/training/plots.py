"""The walk-through's figures and a run's diagnostics, as matplotlib figures.

Each function returns a ``matplotlib.figure.Figure`` (shown inline in Jupyter); ``write_plots``
saves them all as PNGs into a run's ``plots/`` directory: for a Fashion-MNIST run from the data
set, for a photo run from a folder of labelled photos (``images``), drawn in colour.

    >>> from apparel.kinds.fashion_mnist import data
    >>> from apparel.training import plots
    >>> dataset = data.load_dataset()
    >>> plots.sample_grid(dataset.x_train, dataset.y_train, named=True)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from apparel import artifacts
from apparel.errors import ParameterError, whole_number
from apparel.kinds.fashion_mnist.data import CLASS_NAMES

RIGHT_COLOUR = "tab:blue"
WRONG_COLOUR = "tab:red"


def new_figure(width: float, height: float):
    """A matplotlib ``Figure`` of this size in inches: every chart of the package starts here."""
    # Figure objects, not pyplot: no global state, no GUI backend needed on a server.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _check_rows(count: int, **arrays) -> None:
    """A ``ValueError`` naming the parameter when ``count`` is no positive whole number, or when the
    arrays' rows do not pair up (an IndexError deep in the drawing, else)."""
    count = whole_number(count, "count", "a positive whole number of images")
    lengths = {}
    for name, array in arrays.items():
        try:
            lengths[name] = len(array)
        except TypeError:
            raise ParameterError(f"{{}} must be an array with one row per image, got {type(array).__name__}",
                                 name) from None
    for name, length in lengths.items():
        if length < min(count, lengths["images"]):
            raise ParameterError(f"{{}} has {length} rows, fewer than the {min(count, lengths['images'])} images drawn; "
                                 "give one row per image", name)


def sample_grid(images: np.ndarray, labels: np.ndarray, named: bool = False, count: int = 100):
    """The first ``count`` images in a square grid, labelled by number (colour map as
    ``imshow`` draws it) or, with ``named``, by class name in black on white."""
    _check_rows(count, images=images, labels=labels)
    side = int(np.ceil(np.sqrt(count)))
    figure = new_figure(10, 10)
    for index in range(min(count, len(images))):
        axes = figure.add_subplot(side, side, index + 1)
        axes.set_xticks([])
        axes.set_yticks([])
        if named:
            axes.imshow(images[index], cmap="binary")
            axes.set_xlabel(CLASS_NAMES[int(labels[index])], fontsize=7)
        else:
            axes.imshow(images[index])
            axes.set_xlabel(str(int(labels[index])), fontsize=8)
    figure.tight_layout()
    return figure


def predictions_grid(images: np.ndarray, probabilities: np.ndarray, labels: np.ndarray, count: int = 30,
                     class_names: tuple[str, ...] = CLASS_NAMES):
    """The first ``count`` images with the predicted class, its confidence and the true class
    (blue when right, red when wrong), each beside a bar chart of the probabilities over
    ``class_names``. Images are 28×28 grayscale (drawn as ink on paper) or RGB photos (as they are);
    the bars of a photo model's classes are named, Fashion-MNIST's numbered."""
    _check_rows(count, images=images, probabilities=probabilities, labels=labels)
    if np.shape(probabilities)[-1] != len(class_names):
        raise ParameterError(f"{{}} must have one column per class ({len(class_names)}: class_names), got shape "
                             f"{np.shape(probabilities)}", "probabilities")
    columns = 5
    count = min(count, len(images))
    rows = int(np.ceil(count / columns))
    figure = new_figure(2 * 2 * columns, 2.2 * rows)
    for index in range(count):
        predicted = int(np.argmax(probabilities[index]))
        true = int(labels[index])
        colour = RIGHT_COLOUR if predicted == true else WRONG_COLOUR
        image_axes = figure.add_subplot(rows, 2 * columns, 2 * index + 1)
        if np.ndim(images[index]) == 3:
            image_axes.imshow(images[index])
        else:
            image_axes.imshow(images[index], cmap="binary")
        image_axes.set_xticks([])
        image_axes.set_yticks([])
        image_axes.set_xlabel(
            f"{class_names[predicted]} {100 * probabilities[index, predicted]:.0f}%\n({class_names[true]})",
            color=colour,
            fontsize=8,
        )
        bar_axes = figure.add_subplot(rows, 2 * columns, 2 * index + 2)
        bars = bar_axes.bar(range(len(class_names)), probabilities[index], color="#999999")
        bars[predicted].set_color(WRONG_COLOUR)
        bars[true].set_color(RIGHT_COLOUR)
        bar_axes.set_ylim(0, 1)
        bar_axes.set_xticks(range(len(class_names)))
        if tuple(class_names) == CLASS_NAMES:
            bar_axes.set_xticklabels([str(i) for i in range(len(class_names))], fontsize=6)
        else:
            bar_axes.set_xticklabels(class_names, fontsize=5, rotation=90)
        bar_axes.set_yticks([])
    figure.tight_layout()
    return figure


def training_curves(history: dict):
    """Loss and accuracy per epoch, with the validation curves when the run held data out."""
    figure = new_figure(10, 4)
    for position, metric in enumerate(("loss", "accuracy"), start=1):
        axes = figure.add_subplot(1, 2, position)
        for key, style in ((metric, "-o"), (f"val_{metric}", "--s")):
            if key in history:
                epochs = range(1, len(history[key]) + 1)
                axes.plot(epochs, history[key], style, label=key.replace("val_", "validation ") or key)
        axes.set_xlabel("epoch")
        axes.set_ylabel(metric)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    return figure


def confusion_matrix_figure(matrix, title: str = "Confusion matrix (test set)", class_names: tuple[str, ...] = CLASS_NAMES):
    """Counts of true class (rows) against predicted class (columns)."""
    matrix = np.asarray(matrix)
    figure = new_figure(8, 7)
    axes = figure.add_subplot(1, 1, 1)
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046)
    axes.set_xticks(range(len(class_names)))
    axes.set_xticklabels(class_names, rotation=45, ha="right")
    axes.set_yticks(range(len(class_names)))
    axes.set_yticklabels(class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    threshold = matrix.max() / 2
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            axes.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7,
                      color="white" if matrix[i, j] > threshold else "black")
    figure.tight_layout()
    return figure


def save_figure(figure, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Save a figure as PNG atomically."""
    path = Path(path)
    with artifacts.atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=dpi, format="png")
    return path


def write_plots(model_dir: str | os.PathLike, dataset=None, data_dir: str | os.PathLike | None = None,
                images: str | os.PathLike | None = None, out: str | os.PathLike | None = None) -> list[Path]:
    """Write every figure of a run into ``out`` (default ``model_dir/plots/``; for a shipped model,
    which lives inside the installed package, ``plots-<name>`` in the working directory) and
    return the paths.

    The model's kind says what it is drawn on (``Kind.held_out``): a Fashion-MNIST run on the data
    set (samples, test predictions, confusion matrix); a photo run on ``images``, a folder of class
    folders (or a ``path,label`` CSV) with the model's classes: its photos' predictions and its
    confusion matrix. Both get the training curves.

    >>> write_plots("photos", images="clothing-dataset-small/validation")
    """
    from apparel.inference.prediction import Predictor, resolve_model_dir
    from apparel.kinds.registry import kind_for_inputs

    model_dir = resolve_model_dir(model_dir, kind_for_inputs(images is not None))
    if out is None:
        out = Path(f"plots-{model_dir.name}") if artifacts.is_shipped(model_dir) else model_dir / artifacts.PLOTS_DIR
    out = Path(out)
    predictor = Predictor.from_dir(model_dir)
    figures = held_out_figures(predictor, predictor.contract.model_kind.held_out(
        predictor.contract, model_dir, images, dataset, data_dir, drawn=True))
    history_path = model_dir / artifacts.HISTORY_FILE
    if history_path.exists():
        figures["training_curves.png"] = training_curves(artifacts.read_json(history_path))
    return [save_figure(figure, out / name) for name, figure in figures.items()]


def held_out_figures(predictor, held_out, count: int = 30, seed: int = 0) -> dict:
    """The figures of a model on its held-out set: the data set's samples (when it has training
    samples to show), the predictions grid (``count`` images as the model sees them) and the
    confusion matrix over the whole set."""
    kind = predictor.contract.model_kind
    report = kind.measure(predictor.model, held_out, predictor.batch_size)
    shown, labels = kind.shown(held_out, count, seed)
    figures = {}
    if held_out.samples is not None:
        figures["samples_numbered.png"] = sample_grid(*held_out.samples, named=False)
        figures["samples_named.png"] = sample_grid(*held_out.samples, named=True)
    names = held_out.class_names
    figures["predictions.png"] = predictions_grid(shown, predictor.predict_proba(shown), labels, count, class_names=names)
    title = f"Confusion matrix ({kind.title(held_out, report)})"
    figures["confusion_matrix.png"] = confusion_matrix_figure(report["confusion_matrix"], title, names)
    return figures
