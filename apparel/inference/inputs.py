"""Model inputs: the one pixel-scale rule every entry point (library, CLI, HTTP) shares.

    >>> from apparel.inference.inputs import as_model_input
    >>> as_model_input(np.full((28, 28), 255, np.uint8)).max()
    1.0
"""

from __future__ import annotations

import os

import numpy as np

from apparel.errors import ParameterError
from apparel.kinds.fashion_mnist.data import IMAGE_SHAPE


def _refuse_files(images) -> None:
    """A photo file (a path, its bytes, a PIL image), or a list of them, given where pixel arrays
    go: said so, rather than "got a single number" for the 0-d array numpy makes of a path."""
    first = images[0] if isinstance(images, (list, tuple)) and images else images
    if isinstance(first, (str, bytes, bytearray, os.PathLike)) or hasattr(first, "getpixel"):
        raise ValueError("images must be pixel arrays here, not photo files; read each file first with "
                         "predictor.contract.decode(path) (or use `apparel predict` on the files)")


def _as_array(images, shape: tuple[int, ...]) -> np.ndarray:
    """``images`` (an array, or a list or tuple of equally shaped ones) as one array; an empty list
    is a batch of none. A ``ParameterError`` naming ``images`` for what numpy cannot stack: a
    generator or None was "a single number", photos of different sizes numpy's own "inhomogeneous
    shape" error."""
    _refuse_files(images)
    if isinstance(images, (list, tuple)) and not images:
        return np.zeros((0, *shape), np.float32)
    if not isinstance(images, (np.ndarray, list, tuple, np.generic, int, float)) and not hasattr(images, "__array__"):
        raise ParameterError(f"{{}} must be an array of pixel values or a list of them, got {type(images).__name__}"
                             + ("; make it a list first (list(...))" if hasattr(images, "__iter__") else ""), "images")
    try:
        return np.asarray(images)
    except ValueError:
        raise ParameterError(f"{{}} must be arrays of one shape, the model's {'×'.join(map(str, shape))}; a list of "
                             "photos of their own sizes (or files) goes through predictor.contract.decode(photo) "
                             "first, one by one", "images") from None


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities from logits along the last axis, computed stably."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=-1, keepdims=True)


def evenly_spaced(total: int, count: int) -> np.ndarray:
    """The indices of ``count`` of ``total`` items spread evenly from the first to the last (all of
    them when ``count`` ≥ ``total``): example inputs that cover every class folder of a sorted list.

    >>> evenly_spaced(10, 4)
    array([0, 3, 6, 9])
    """
    return np.unique(np.linspace(0, total - 1, min(count, total)).round().astype(int))


def as_model_input(images: np.ndarray) -> np.ndarray:
    """Images as float32 (N, 28, 28) in [0, 1]; a single (28, 28) image becomes a batch of one.

    One pixel-scale rule for every entry point (library, CLI, HTTP): ``uint8`` is 0–255; for any
    other numbers each image is read as 0–255 if one of its values is above 1, else as 0–1 (for a
    0–255 image whose brightest pixel is 1 the two readings differ by less than 1/255). Values
    outside [0, 255], NaN, infinities and non-numbers are refused with a ``ValueError``.
    """
    array = _as_array(images, IMAGE_SHAPE)
    if array.shape == IMAGE_SHAPE:
        array = array[None]
    if array.ndim != 3 or array.shape[1:] != IMAGE_SHAPE:
        shape = "×".join(str(n) for n in array.shape) or "a single number"
        raise ValueError(f"images must be 28×28 arrays of pixel values, shaped (N, 28, 28) or (28, 28); got {shape}")
    _check_numbers(array, "pixel values must be numbers (0–1, or 0–255)")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255.0)
    if array.size == 0:
        return array.astype(np.float32)
    high = _checked_range(array)
    batch = np.array(array, dtype=np.float32, copy=high > 1 or array.dtype != np.float32)
    if high > 1:
        batch[batch.reshape(len(batch), -1).max(axis=1) > 1] /= np.float32(255.0)
    return batch


def as_photo_input(images: np.ndarray, size: int) -> np.ndarray:
    """RGB photos as float32 (N, size, size, 3) with values 0–255, the input of a photo model; a
    single (size, size, 3) photo becomes a batch of one.

    The same pixel-scale rule as ``as_model_input``: ``uint8`` is 0–255; otherwise each photo is
    read as 0–255 if one of its values is above 1, else as 0–1. Anything else — a 28×28 array, the
    wrong size, NaN, values outside [0, 255] — is refused with a ``ValueError`` that says what to send.
    """
    shape = (size, size, 3)
    array = _as_array(images, shape)
    if array.shape == shape:
        array = array[None]
    if array.ndim != 4 or array.shape[1:] != shape:
        got = "×".join(str(n) for n in array.shape) or "a single number"
        raise ValueError(f"this photo model takes RGB photos of {size}×{size}×3 pixel values, shaped (N, {size}, {size}, 3); "
                         f"got {got}")
    return _photos_0_255(array)


def photo_pixels(photo: np.ndarray) -> np.ndarray:
    """One RGB photo of any size (H×W×3) as float32 values 0–255, by the same rule: ``uint8`` is
    0–255; other numbers are 0–255 if one is above 1, else 0–1; NaN, infinities, values outside
    [0, 255] and non-numbers are refused with a ``ValueError``."""
    return _photos_0_255(np.asarray(photo)[None])[0]


def _photos_0_255(photos: np.ndarray) -> np.ndarray:
    """Photos (N, …) as float32 0–255, each by the rule of ``as_photo_input``."""
    _check_numbers(photos, "pixel values must be numbers (0–255, or 0–1)")
    if photos.dtype == np.uint8 or photos.size == 0:
        return photos.astype(np.float32)
    _checked_range(photos)
    batch = np.array(photos, dtype=np.float32, copy=True)
    unit = batch.reshape(len(batch), -1).max(axis=1) <= 1
    batch[unit] *= np.float32(255.0)
    return batch


def _check_numbers(array: np.ndarray, message: str) -> None:
    if array.dtype.kind not in "iuf":  # bool, object (huge ints, mixed types), strings, complex
        raise ValueError(message)


def _checked_range(array: np.ndarray) -> float:
    """The largest value of a non-empty ``array``, once all are finite and in [0, 255]."""
    low, high = array.min(), array.max()  # NaN, if any, comes out as both
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError("pixel values must be finite numbers; found NaN or infinity")
    if low < 0 or high > 255:
        raise ValueError(f"pixel values must lie in [0, 1] or [0, 255], found {low:g} to {high:g}")
    return float(high)
