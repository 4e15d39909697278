"""What a benchmark study explores: its axes (optimizer, activation, widths, epochs, …), the
fixed rest of the training configuration, grid or TPE, and where it is stored — from flags or a
TOML study file.

    >>> from apparel.bench.spec import StudySpec
    >>> spec = StudySpec.from_axes({"optimizers": ["adam", "ftrl"], "activations": ["relu", "tanh"]})
    >>> spec.size(), spec.varying()
    (4, ['optimizer', 'activation'])
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, field

from apparel.config import Config, TrainConfig, option
from apparel.errors import ParameterError

# Axis name in flags and study files → TrainConfig field, in the order of the results columns.
AXES = {
    "models": "model",
    "optimizers": "optimizer",
    "activations": "activation",
    "hidden": "hidden",
    "outputs": "outputs",
    "epochs": "epochs",
    "batch_sizes": "batch_size",
    "learning_rates": "learning_rate",
    "seeds": "seed",
}
AXIS_FIELDS = tuple(AXES.values())
# The walk-through's configuration, marked in every results table (any seed).
REFERENCE = {"model": "seed-mlp", "optimizer": "adam", "activation": "relu", "hidden": 256, "outputs": 20,
             "epochs": 20, "batch_size": 32, "learning_rate": 0.001}
DEFAULT_STORAGE = "sqlite:///runs/bench/bench.db"
SPEC_ATTR = "apparel_spec"  # study user attribute holding StudySpec.describe()


@dataclass(frozen=True)
class StudySpec:
    """What a study explores. Every axis has at least one value; ``None`` means the model's (or
    optimizer's) own default. The rest of the training configuration is fixed by ``base``."""

    axes: dict = field(default_factory=dict)  # TrainConfig field → tuple of values, all nine fields
    base: TrainConfig = TrainConfig()  # the non-axis parameters (limit, validation_split, …)
    search: int | None = None  # None: every grid point; N: N trials of TPE over the same space

    @classmethod
    def from_axes(cls, axes: dict, base: TrainConfig | None = None, search: int | None = None) -> "StudySpec":
        """Axes by field or plural name (``{"optimizers": ["adam", "ftrl"]}``); missing ones take
        ``base``'s value. Values are checked the way ``TrainConfig`` checks them."""
        base = base or TrainConfig()
        chosen = {name: (getattr(base, name),) for name in AXIS_FIELDS}
        for key, values in axes.items():
            name = AXES.get(key, key)
            if name not in AXIS_FIELDS:
                raise ValueError(f"unknown axis {key!r}; axes are: {', '.join(AXES)}")
            values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
            if not values:
                raise ValueError(f"axis {key!r} has no values")
            if len(set(values)) != len(values):
                raise ValueError(f"axis {key!r} repeats a value: {list(values)}")
            for value in values:
                # The axis's own message first (it names the axis), then the config's type and bounds.
                if isinstance(value, (int, float)) and not isinstance(value, bool) and name != "seed" and value <= 0:
                    raise ValueError(f"axis {key!r}: values must be positive, got {value}")
                base.replace(**{name: value})
            chosen[name] = tuple(float(v) if name == "learning_rate" and v is not None else v for v in values)
        from apparel.training.models import get_spec

        for model in chosen["model"]:
            get_spec(model)  # an unknown model name is a typo: stop before the study starts
        fixed = {key: value for key, value in base.to_dict().items() if key not in AXIS_FIELDS}
        spec = cls(chosen, TrainConfig().replace(**fixed), search)
        if search is not None and not 1 <= search <= spec.size():
            raise ParameterError(f"{{}} takes 1 to {spec.size()} trials (the size of this space), got {search}", "search")
        return spec

    def size(self) -> int:
        return math.prod(len(values) for values in self.axes.values())

    def grid(self) -> list[dict]:
        """Every point of the space, the first axis varying slowest."""
        import itertools

        return [dict(zip(AXIS_FIELDS, point)) for point in itertools.product(*(self.axes[name] for name in AXIS_FIELDS))]

    def varying(self) -> list[str]:
        return [name for name in AXIS_FIELDS if len(self.axes[name]) > 1]

    def config_for(self, point: dict) -> TrainConfig:
        return self.base.replace(**{name: point[name] for name in AXIS_FIELDS})

    def describe(self) -> dict:
        """What identifies the study (stored in it; a rerun must match it)."""
        base = {key: value for key, value in self.base.to_dict().items() if key not in AXIS_FIELDS}
        description = {"mode": "grid" if self.search is None else "search",
                       "axes": {name: list(self.axes[name]) for name in AXIS_FIELDS}, "base": base}
        return json.loads(json.dumps(description))  # as the store gives it back: tuples become lists

    def default_name(self) -> str:
        """``bench-`` and a hash of the axes and the non-default settings, so that a TrainConfig
        field added later (at its default) keeps the name, and the study, of the same command."""
        description = self.describe()
        defaults = json.loads(json.dumps(TrainConfig().to_dict()))
        description["base"] = {key: value for key, value in description["base"].items() if value != defaults.get(key)}
        digest = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()
        return f"bench-{digest[:8]}"


@dataclass(frozen=True)
class BenchSettings(Config):
    """Where and how a study runs (nothing here changes a trial's result)."""

    storage: str = option(DEFAULT_STORAGE, "SQLAlchemy URL of the study database (postgresql:// uses psycopg 3)")
    study: str | None = option(None, "study name (default: derived from the axes, so one command = one study)")
    workers: int = option(1, "local worker processes, the CPU threads divided among them; 1 runs in this process",
                          minimum=1)
    data_dir: str | None = option(None, "Fashion-MNIST IDX files (default: $APPAREL_DATA_DIR or Debian's)")
    verify_data: bool = option(True, "check the data's SHA-256 (off: other IDX data of the same layout)")
    retry_failed: bool = option(False, "run trials that raised once more")
    heartbeat_seconds: int = option(20, "how often a running trial says it is alive", minimum=1)
    grace_seconds: int = option(90, "silence after which a trial on another machine counts as dead", minimum=1)
    poll_seconds: float = option(2.0, "while waiting for other workers' trials", minimum=0.0)

    def study_name(self, spec: StudySpec) -> str:
        return self.study or spec.default_name()


# ---------------------------------------------------------------------------------------------
# Options: a TOML study file, then flags


AXIS_TYPES = {axis: TrainConfig.value_type(name) for axis, name in AXES.items()}
# Study-file keys besides the axes, with their types; flags of the same name override them. The
# search size and the export folder belong to the command; limit and validation split are fixed
# TrainConfig values of every trial.
SETTING_TYPES = {**{setting.name: BenchSettings.value_type(setting.name) for setting in dataclasses.fields(BenchSettings)},
                 "search": int, "export": str, "limit": int, "validation_split": float}


def parse_axis(name: str, text: str) -> list:
    """``"adam, ftrl"`` → ``["adam", "ftrl"]``, typed per axis; ``default`` means the model's or
    optimizer's own value."""
    kind = AXIS_TYPES[name]
    values = []
    for item in (part.strip() for part in str(text).split(",")):
        if not item:
            continue
        if item.lower() in ("default", "none"):
            values.append(None)
            continue
        try:
            values.append(kind(item))
        except ValueError:
            raise ParameterError(f"{{}}: {item!r} is not {'an integer' if kind is int else 'a number'}", name) from None
    if not values:
        raise ParameterError("{} needs at least one value", name)
    return values


def read_study_file(path: str | os.PathLike) -> dict:
    """A TOML study: axes by their flag names (lists or single values), settings such as
    ``storage`` or ``search``, and an optional ``[train]`` table of other TrainConfig values.

        optimizers = ["adam", "ftrl"]
        activations = ["relu", "tanh"]
        epochs = 20
        storage = "sqlite:///runs/bench/mine.db"
        [train]
        steps_per_execution = 32
    """
    from apparel.config import read_config_file

    values = read_config_file(path)
    options: dict = {"axes": {}, "settings": {}, "train": {}}
    for key, value in values.items():
        key = key.replace("-", "_")
        if key in AXIS_TYPES:
            items = value if isinstance(value, list) else [value]
            kind = AXIS_TYPES[key]
            for item in items:
                if not (item is None or isinstance(item, kind) or (kind is float and isinstance(item, int))) or isinstance(item, bool):
                    raise ValueError(f"{path}: {key} must hold {kind.__name__} values, got {item!r}")
            options["axes"][key] = items
        elif key in SETTING_TYPES:
            if not isinstance(value, SETTING_TYPES[key]) and not (SETTING_TYPES[key] is float and isinstance(value, int)):
                raise ValueError(f"{path}: {key} must be {SETTING_TYPES[key].__name__}, got {value!r}")
            options["settings"][key] = value
        elif key == "train" and isinstance(value, dict):
            options["train"] = value
        else:
            raise ValueError(f"{path}: unknown key {key!r}; known keys: {', '.join([*AXIS_TYPES, *SETTING_TYPES, 'train'])}")
    return options


def build_study(axes: dict, settings: dict, train: dict | None = None) -> tuple[StudySpec, BenchSettings]:
    """Spec and settings from axis lists and setting values (as ``read_study_file`` returns them,
    with flags merged in)."""
    settings = dict(settings)
    fixed = dict(train or {})
    for key in ("limit", "validation_split"):
        if settings.get(key) is not None:
            fixed[key] = settings[key]
    base = TrainConfig().replace(**fixed)
    spec = StudySpec.from_axes(axes, base, settings.get("search"))
    known = {setting.name: settings[setting.name] for setting in dataclasses.fields(BenchSettings)
             if settings.get(setting.name) is not None}
    return spec, BenchSettings(**known)


# ---------------------------------------------------------------------------------------------
# Reading results


def resolved_axes(params: dict, learning_rate: float | None = None) -> dict:
    """The nine axis values as trained: ``None`` replaced by the model's default and by the
    optimizer's measured learning rate."""
    from apparel.training.models import MODELS

    values = {name: params.get(name) for name in AXIS_FIELDS}
    spec = MODELS.get(values["model"])
    defaults = spec.defaults() if spec else {}
    for name in ("hidden", "outputs", "activation"):
        if values[name] is None:
            values[name] = defaults.get(name)
    if values["learning_rate"] is None and learning_rate is not None:
        values["learning_rate"] = float(f"{learning_rate:.7g}")  # float32 0.0099999998 → 0.01
    return values


def is_reference(record: dict) -> bool:
    return all(record.get(name) == value for name, value in REFERENCE.items())
