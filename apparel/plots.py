"""The walk-through's figures and a run's diagnostics, as matplotlib figures.

Each function returns a ``matplotlib.figure.Figure`` (shown inline in Jupyter); ``write_plots``
saves them all as PNGs into a run's ``plots/`` directory: for a Fashion-MNIST run from the data
set, for a photo run from a folder of labelled photos (``images``), drawn in colour.

    >>> from apparel import data, plots
    >>> dataset = data.load_dataset()
    >>> plots.sample_grid(dataset.x_train, dataset.y_train, named=True)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from apparel import artifacts
from apparel.data import CLASS_NAMES

RIGHT_COLOUR = "tab:blue"
WRONG_COLOUR = "tab:red"


def new_figure(width: float, height: float):
    """A matplotlib ``Figure`` of this size in inches: every chart of the package starts here."""
    # Figure objects, not pyplot: no global state, no GUI backend needed on a server.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def sample_grid(images: np.ndarray, labels: np.ndarray, named: bool = False, count: int = 100):
    """The first ``count`` images in a square grid, labelled by number (colour map as
    ``imshow`` draws it) or, with ``named``, by class name in black on white."""
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
                images: str | os.PathLike | None = None) -> list[Path]:
    """Write every figure of a run into ``model_dir/plots/`` and return the paths.

    A Fashion-MNIST run is drawn from the data set (samples, test predictions, confusion matrix);
    a photo run from ``images``, a folder of class folders (or a ``path,label`` CSV) with the
    model's classes: its photos' predictions and its confusion matrix. Both get the training curves.

    >>> write_plots("photos", images="clothing-dataset-small/validation")
    """
    from apparel.data import load_dataset
    from apparel.errors import ParameterError
    from apparel.evaluation import classification_report
    from apparel.inference.prediction import Predictor, resolve_model_dir

    model_dir = resolve_model_dir(model_dir, photos=images is not None)
    out = model_dir / artifacts.PLOTS_DIR
    predictor = Predictor.from_dir(model_dir)
    if predictor.contract.is_photo:
        if images is None:
            raise ParameterError(f"{model_dir} holds a photo model: give {{}}, a folder of class folders to draw it on",
                                 "images")
        figures = _photo_figures(predictor, images)
    elif images is not None:
        raise ParameterError(f"{model_dir} holds a Fashion-MNIST model, drawn on the test set; leave {{}} out", "images")
    else:
        if dataset is None:
            dataset = load_dataset(data_dir)
        probabilities = predictor.predict_proba(dataset.x_test)
        report = classification_report(dataset.y_test, probabilities.argmax(axis=-1))
        figures = {
            "samples_numbered.png": sample_grid(dataset.x_train, dataset.y_train, named=False),
            "samples_named.png": sample_grid(dataset.x_train, dataset.y_train, named=True),
            "predictions.png": predictions_grid(dataset.x_test, probabilities, dataset.y_test),
            "confusion_matrix.png": confusion_matrix_figure(report["confusion_matrix"]),
        }
    history_path = model_dir / artifacts.HISTORY_FILE
    if history_path.exists():
        figures["training_curves.png"] = training_curves(artifacts.read_json(history_path))
    return [save_figure(figure, out / name) for name, figure in figures.items()]


def _photo_figures(predictor, images: str | os.PathLike, count: int = 30, seed: int = 0) -> dict:
    """The predictions grid (``count`` photos drawn at random, in colour, as the model sees them)
    and the confusion matrix over every photo of ``images``."""
    from apparel.evaluation import evaluate_photo_model
    from apparel.images.photo_rgb import photo_to_rgb
    from apparel.photo_data import read_labelled_photos

    contract = predictor.contract
    photos = read_labelled_photos(images, contract.class_names)
    report = evaluate_photo_model(predictor.model, photos, contract.size, contract.class_names)
    shown, labels = [], []
    for index in np.random.default_rng(seed).permutation(len(photos)):
        try:
            shown.append(photo_to_rgb(photos.paths[index], contract.size))
        except ValueError:  # unreadable: left out, as the evaluation leaves it out
            continue
        labels.append(int(photos.labels[index]))
        if len(shown) == count:
            break
    if not shown:
        raise ValueError(f"images: no readable photo in {images}")
    probabilities = predictor.predict_proba(np.stack(shown).astype(np.float32))
    title = f"Confusion matrix ({Path(images).name}, {report['images']} photos)"
    return {
        "predictions.png": predictions_grid(np.stack(shown), probabilities, np.array(labels), count,
                                            class_names=contract.class_names),
        "confusion_matrix.png": confusion_matrix_figure(report["confusion_matrix"], title, contract.class_names),
    }
