"""Training configuration: one frozen dataclass, saved as JSON next to every model.

Values come from the defaults, then a JSON/TOML file, then command-line flags, in that order.

    >>> from apparel.config import TrainConfig
    >>> config = TrainConfig(optimizer="ftrl", epochs=5)
    >>> TrainConfig.from_dict(config.to_dict()) == config
    True
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run. ``None`` means "the model's own default"."""

    # Model, by registry name (see `apparel.models.MODELS`), and its shape parameters.
    model: str = "seed-mlp"
    hidden: int | None = None  # hidden width; seed-mlp: 256
    outputs: int | None = None  # number of logits; seed-mlp keeps the reference's 20, others 10
    activation: str | None = None  # any Keras activation name; seed-mlp: relu
    depth: int | None = None  # hidden layers (mlp) or residual stages (resnet)
    blocks: int | None = None  # residual blocks per stage (resnet)
    width: int | None = None  # first convolution's filters (cnn, resnet)
    dropout: float | None = None
    batch_norm: bool | None = None

    # Optimisation, as the walk-through's compile() and fit().
    optimizer: str = "adam"  # any Keras built-in optimizer name
    learning_rate: float | None = None  # None: the optimizer's Keras default
    epochs: int = 20
    batch_size: int = 32
    seed: int = 0
    metrics: tuple[str, ...] = ("accuracy",)  # Keras string identifiers
    limit: int | None = None  # use only the first N training images
    validation_split: float | None = None  # held out of the training set; None: the model's default

    # Regularisation and schedule. With a validation split the saved model is the epoch with the
    # best validation accuracy; the test set is only used for the final figure.
    schedule: str = "constant"  # constant, cosine or one-cycle (per step, over all epochs)
    label_smoothing: float = 0.0
    augment: tuple[str, ...] = ()  # any of: shift, flip, erase — active only while training
    early_stopping: int | None = None  # patience in epochs on validation accuracy
    mixed_precision: bool = False  # bfloat16 compute, float32 weights; off by default on CPU

    # Speed. Running many steps per call into the compiled graph removes Python overhead that
    # dominates a model this small; it does not change the arithmetic.
    steps_per_execution: int = 64
    jit_compile: bool | None = None  # XLA; None: the model's default (on for dense, off for conv)

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["metrics"] = list(self.metrics)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Build a config, rejecting unknown keys and wrongly typed values by name."""
        return cls(**_checked(cls, values))

    def replace(self, **changes) -> "TrainConfig":
        """A copy with some values changed, checked like ``from_dict``."""
        return dataclasses.replace(self, **_checked(type(self), changes))

    def save(self, path: str | os.PathLike, extra: dict | None = None) -> None:
        """Write as JSON (atomically); ``extra`` adds keys such as library versions."""
        from apparel.artifacts import write_json

        write_json(path, {**self.to_dict(), **(extra or {})})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TrainConfig":
        """Read a config written by ``save`` or by hand, as JSON or TOML."""
        return cls.from_dict(read_config_file(path))


# Keys that `save` records beside the parameters and that are not parameters themselves.
RECORD_ONLY_KEYS = ("versions",)


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


def _checked(cls, values: dict) -> dict:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    checked = {}
    for key, value in values.items():
        if key not in fields:
            raise ValueError(f"unknown config key {key!r}; known keys: {', '.join(fields)}")
        checked[key] = _coerce(key, value, hints[key])
    return checked


def _coerce(key: str, value, hint):
    """Check ``value`` against a field's type hint; lists become tuples, ints may become floats."""
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in allowed:
            return None
        raise ValueError(f"config key {key!r} cannot be null")
    for kind in allowed:
        origin = typing.get_origin(kind)
        if origin is tuple and isinstance(value, (list, tuple)):
            if all(isinstance(item, str) for item in value):
                return tuple(value)
        elif kind is bool and isinstance(value, bool):
            return value
        elif kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        elif kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        elif kind is str and isinstance(value, str):
            return value
    names = " or ".join(getattr(kind, "__name__", str(kind)) for kind in allowed if kind is not type(None))
    raise ValueError(f"config key {key!r} must be {names}, got {value!r}")

