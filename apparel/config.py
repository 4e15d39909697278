"""Training configuration: one frozen dataclass, saved as JSON next to every model.

Values come from the defaults, then a JSON/TOML file, then command-line flags, in that order.

    >>> from apparel.config import TrainConfig
    >>> config = TrainConfig(optimizer="ftrl", epochs=5)
    >>> TrainConfig.from_dict(config.to_dict()) == config
    True
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import numbers
import os
import tomllib
import types
import typing
from dataclasses import dataclass
from typing import ClassVar
from pathlib import Path

from apparel.errors import ParameterError


def option(default, help: str, *, minimum: float | None = None, maximum: float | None = None,
           below: float | None = None, above: float | None = None, choices: tuple | None = None, **tags):
    """A config field with its help text and bounds: the one place a parameter is described.

    The CLI builds its flags from these (``help``, the default, the type), and ``Config`` checks the
    bounds at construction. ``below`` and ``above`` are exclusive bounds; ``tags`` mark groups of fields
    (``model=True``: a model builder's parameter).

    >>> workers: int = option(4, "images read and fetched in parallel", minimum=1)
    """
    metadata = {"help": help, "minimum": minimum, "maximum": maximum, "below": below, "above": above,
                "choices": choices, **tags}
    if isinstance(default, (list, dict, set)):
        raise TypeError("give a tuple, not a mutable default")
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Config:
    """The base of every configuration dataclass: one validation style, at construction.

    Each field's value is checked against its type hint (ints may become floats, lists tuples) and
    against the bounds given with ``option``; ``from_dict`` and ``replace`` also reject unknown
    keys. Every error names the key. Subclasses add cross-field checks in ``check``.

    >>> @dataclass(frozen=True)
    ... class FetchConfig(Config):
    ...     timeout: float = option(10.0, "seconds for the whole fetch", minimum=0.001)
    >>> FetchConfig(timeout=0)
    Traceback (most recent call last):
    apparel.errors.ParameterError: timeout must be at least 0.001, got 0
    """

    # How messages call a key: "unknown config key 'epoch'", "unknown service setting 'max_bacth'".
    KEY_NAME: ClassVar[str] = "config key"

    def __post_init__(self):
        hints = _hints(type(self))
        for field in dataclasses.fields(self):
            value = _coerce(field.name, getattr(self, field.name), hints[field.name], self.KEY_NAME)
            _check_bounds(field, value)
            object.__setattr__(self, field.name, value)
        self.check()

    def check(self) -> None:
        """Checks across fields; raise ``ParameterError`` naming them."""

    @classmethod
    def from_dict(cls, values: dict):
        """Build a config, rejecting unknown keys and wrongly typed values by name."""
        _reject_unknown(cls, values)
        return cls(**values)

    def replace(self, **changes):
        """A copy with some values changed, checked like ``from_dict``."""
        _reject_unknown(type(self), changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def value_type(cls, name: str) -> type:
        """The type of field ``name`` without ``None``: ``int`` for ``int | None``, ``tuple`` for tuples."""
        hint = _hints(cls)[name]
        kinds = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        kind = next(kind for kind in kinds if kind is not type(None))
        return typing.get_origin(kind) or kind

    @classmethod
    def help(cls, name: str) -> str:
        """The help text of field ``name`` (from its ``option``), with its default."""
        field = next(field for field in dataclasses.fields(cls) if field.name == name)
        text = field.metadata.get("help", "")
        default = field.default
        if default is None or default is False or default == () or not text:
            return text
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        return f"{text} (default {shown})"


@functools.cache
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _reject_unknown(cls, values: dict) -> None:
    names = [field.name for field in dataclasses.fields(cls)]
    for key in values:
        if key not in names:
            # The key is no parameter of its own (no flag is named for it): the file or dict it came in is.
            raise ParameterError(f"unknown {cls.KEY_NAME} {key!r}; known keys: {', '.join(names)}", "config")


def _check_bounds(field, value) -> None:
    meta = field.metadata
    if value is None or isinstance(value, (bool, str, tuple)):
        if meta.get("choices"):  # a tuple field's choices are its items' (augment=("crop", "flip"))
            for item in value if isinstance(value, tuple) else (value,):
                if item is not None and item not in meta["choices"]:
                    raise ParameterError(f"unknown {{}} {item!r}; choose one of: {', '.join(meta['choices'])}",
                                         field.name)
        return
    if isinstance(value, float) and not math.isfinite(value):  # NaN passes every bound's comparison
        raise ParameterError(f"{{}} must be a finite number, got {value!r}", field.name)
    if meta.get("minimum") is not None and value < meta["minimum"]:
        raise ParameterError(f"{{}} must be a number of at least {meta['minimum']:g}, got {value!r}", field.name)
    if meta.get("maximum") is not None and value > meta["maximum"]:
        raise ParameterError(f"{{}} must be at most {meta['maximum']:g}, got {value!r}", field.name)
    if meta.get("below") is not None and value >= meta["below"]:
        raise ParameterError(f"{{}} must be below {meta['below']:g}, got {value!r}", field.name)
    if meta.get("above") is not None and value <= meta["above"]:
        raise ParameterError(f"{{}} must be above {meta['above']:g}, got {value!r}", field.name)


# The Keras optimizers a run may name (``training.optimization.make_optimizer``).
OPTIMIZERS = ("adam", "adamw", "nadam", "adamax", "rmsprop", "sgd", "adagrad", "adadelta", "ftrl", "lion", "adafactor")
# Fashion-MNIST: shift, flip, erase; photos: crop (a random zoom into up to a quarter of the
# photo, shifted), flip, colour (brightness, contrast and saturation jitter of about 10 %),
# resolution (half the batches seen at a quarter to all of their resolution: small thumbnails).
AUGMENTATIONS = ("shift", "flip", "erase", "crop", "colour", "resolution")


@dataclass(frozen=True)
class TrainConfig(Config):
    """Everything that determines a training run. ``None`` means "the model's own default"."""

    # Model, by registry name (see `apparel.training.models.MODELS`), and its shape parameters: the fields
    # marked model=True are passed to the model's builder (a new model's parameter goes here too).
    model: str = option("seed-mlp", "registered model name (see `apparel models`)")
    hidden: int | None = option(None, "hidden width (seed-mlp: 256)", minimum=1, model=True)
    outputs: int | None = option(None, "number of output logits (seed-mlp: 20, as the reference; 10 is natural)",
                                 minimum=1, model=True)
    activation: str | None = option(None, "Keras activation name: relu, tanh, sigmoid, gelu, … (seed-mlp: relu)",
                                    model=True)
    depth: int | None = option(None, "hidden layers (mlp) or residual stages (resnet)", minimum=1, model=True)
    blocks: int | None = option(None, "residual blocks per stage (resnet)", minimum=1, model=True)
    width: int | None = option(None, "filters of the first convolution (cnn, resnet)", minimum=1, model=True)
    dropout: float | None = option(None, "dropout rate", minimum=0.0, below=1.0, model=True)
    batch_norm: bool | None = option(None, "batch normalisation (mlp)", model=True)
    image_size: int | None = option(None, "photo models: side of the square input, pixels (efficientnet-lite0: 224)",
                                    minimum=32, model=True)

    # Photo models train on the store's own photos instead of Fashion-MNIST.
    images: tuple[str, ...] = option((), "photo models: a folder of class folders (with train/ and validation/ "
                                         "inside, or split here) or a CSV of path,label; more, comma-separated, "
                                         "add training photos")
    per_class_limit: int | None = option(None, "photo models: at most N training photos of each class", minimum=1)
    head_epochs: int | None = option(None, "photo models: epochs of the new head on the frozen backbone before "
                                           "fine-tuning (efficientnet-lite0: 30)", minimum=1)
    fine_tune_blocks: int | None = option(None, "photo models: the backbone's top blocks trained with the head "
                                                "(efficientnet-lite0: 4 of 16)", minimum=0, maximum=16)

    # Optimisation, as the walk-through's compile() and fit().
    optimizer: str = option("adam", "Keras optimizer name: adam, ftrl, sgd, rmsprop, adamw, nadam, lion, …",
                            choices=OPTIMIZERS)
    learning_rate: float | None = option(None, "learning rate (default: the optimizer's own)", minimum=0.0)
    epochs: int = option(20, "training epochs", minimum=1)
    batch_size: int = option(32, "batch size", minimum=1)
    seed: int = option(0, "random seed")
    metrics: tuple[str, ...] = option(("accuracy",), "comma-separated Keras metric names")
    limit: int | None = option(None, "train on the first N training images only", minimum=1)
    validation_split: float | None = option(None, "fraction of the training set held out (default: the model's)",
                                            minimum=0.0, below=1.0)

    # Regularisation and schedule. With a validation split the saved model is the epoch with the
    # best validation accuracy; the test set is only used for the final figure.
    schedule: str = option("constant", "learning-rate schedule, per step over all epochs",
                           choices=("constant", "cosine", "one-cycle"))
    label_smoothing: float = option(0.0, "label smoothing", minimum=0.0, below=1.0)
    augment: tuple[str, ...] | None = option(None, "comma-separated training augmentations, active only while "
                                                   "training: shift, flip, erase (Fashion-MNIST), crop, flip, colour, "
                                                   "resolution (photos; efficientnet-lite0: crop, flip, colour); "
                                                   "default: the model's", choices=AUGMENTATIONS)
    early_stopping: int | None = option(None, "stop after this many epochs without a better validation accuracy",
                                        minimum=1)
    mixed_precision: bool = option(False, "bfloat16 compute with float32 weights (default off: no gain on this CPU)")

    # Speed. Running many steps per call into the compiled graph removes Python overhead that
    # dominates a model this small; it does not change the arithmetic.
    steps_per_execution: int = option(64, "training steps per compiled call", minimum=1)
    jit_compile: bool | None = option(None, "XLA compilation (default: the model's; on for dense, off for conv)")

    def model_options(self) -> dict:
        """The fields passed to the model's builder (``None``: the builder's default)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)
                if field.metadata.get("model")}

    def save(self, path: str | os.PathLike, extra: dict | None = None) -> None:
        """Write as JSON (atomically); ``extra`` adds keys such as library versions."""
        from apparel.artifacts import write_json

        write_json(path, {**self.to_dict(), **(extra or {})})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TrainConfig":
        """Read a config written by ``save`` or by hand, as JSON or TOML."""
        return cls.from_dict(read_config_file(path))


# Keys that `save` records beside the parameters and that are not parameters themselves.
RECORD_ONLY_KEYS = ("versions", "input")


def read_config_file(path: str | os.PathLike) -> dict:
    """The parameters in a ``.json`` or ``.toml`` file, with a clear error if it cannot be read."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"cannot read config file {path}: {error.strerror}") from None
    try:
        values = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"config file {path} is not valid {path.suffix.lstrip('.') or 'JSON'}: {error}") from None
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must hold a mapping of parameter names to values")
    for key in RECORD_ONLY_KEYS:  # a run's config.json is a valid config file
        values.pop(key, None)
    return values


def _tuple_items(hint, value) -> tuple | None:
    """``value`` as the tuple ``hint`` describes (``tuple[str, ...]``, ``tuple[float, float]``), or None."""
    args = typing.get_args(hint)
    kinds = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
    if len(kinds) != len(value):
        return None
    try:
        return tuple(_coerce("item", item, kind) for item, kind in zip(value, kinds))
    except ValueError:
        return None


def _coerce(key: str, value, hint, key_name: str = "config key"):
    """Check ``value`` against a field's type hint; lists become tuples, ints may become floats."""
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in allowed:
            return None
        raise ParameterError(f"{key_name} {{!r}} cannot be null", key)
    for kind in allowed:
        origin = typing.get_origin(kind)
        if origin is tuple and isinstance(value, (list, tuple)):
            items = _tuple_items(kind, value)
            if items is not None:
                return items
        elif kind is bool and isinstance(value, bool):
            return value
        elif kind is int and isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)  # a NumPy integer too (a grid's np.arange), saved as JSON's
        elif kind is float and isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
        elif kind is str and isinstance(value, str):
            return value
        elif kind is str and isinstance(value, os.PathLike) and isinstance(os.fspath(value), str):
            return os.fspath(value)  # a pathlib.Path for a folder or file, kept as its text
    names = " or ".join(getattr(kind, "__name__", str(kind)) for kind in allowed if kind is not type(None))
    raise ParameterError(f"{key_name} {{!r}} must be {names}, got {value!r}", key)

