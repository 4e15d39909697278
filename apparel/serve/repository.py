"""A model repository in TensorFlow Serving's layout: which model versions should be served.

    models/                         # apparel serve --model-repository models
    ├── models.json                 # optional: version policy and labels per model, the default model
    ├── fashion-mnist/
    │   ├── 1/  model.keras config.json metrics.json …   (a run directory: apparel train --out …/1)
    │   └── 2/
    └── photos/
        └── 7/

A version is a folder named by a positive integer (at most 2⁶³−1, TF Serving's int64) that holds
a ``model.keras``; a folder numbered above that is refused, its model's status says why. ``models.json``
speaks TF Serving's ``model_config`` terms (its ``model_version_policy`` and ``version_labels``)::

    {"default": "fashion-mnist",
     "models": {"fashion-mnist": {"version_policy": {"latest": {"num_versions": 2}},
                                  "version_labels": {"stable": 1, "canary": 2}},
                "photos": {"version_policy": {"specific": {"versions": [7]}}}}}

Without it every model serves its latest version and has no labels. Nothing here loads a model:
``scan`` says what should be served, ``apparel.serve.reload`` makes it so.

    >>> wanted = Repository("models").scan()
    >>> wanted["fashion-mnist"].versions
    {2: PosixPath('models/fashion-mnist/2')}
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from apparel import artifacts

CONFIG_FILE = "models.json"
# TF Serving's protocols carry a version as an int64: a larger number could be served over REST
# but not named over gRPC, so it is no version at all.
MAX_VERSION = 2**63 - 1
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # a URL path segment with no escaping


@dataclass(frozen=True)
class VersionPolicy:
    """TF Serving's ``model_version_policy``: the ``latest`` N versions, ``all``, or ``specific`` ones."""

    kind: str = "latest"
    count: int = 1  # for latest
    versions: tuple[int, ...] = ()  # for specific

    @classmethod
    def from_dict(cls, value, model: str) -> "VersionPolicy":
        where = f"{CONFIG_FILE}: models.{model}.version_policy"
        if not isinstance(value, dict) or len(value) != 1:
            raise ValueError(f"{where} must be one of {{\"latest\": {{\"num_versions\": N}}}}, {{\"all\": {{}}}}, "
                             "{\"specific\": {\"versions\": [N, …]}}")
        (kind, options), = value.items()
        options = options or {}
        if kind in ("all", "latest", "specific") and not isinstance(options, dict):
            raise ValueError(f"{where}.{kind} must be an object, got {json.dumps(options)}")
        if kind == "all" and options == {}:
            return cls("all")
        if kind == "latest" and set(options) <= {"num_versions"}:
            count = options.get("num_versions", 1)
            if isinstance(count, int) and not isinstance(count, bool) and count >= 1:
                return cls("latest", count=count)
            raise ValueError(f"{where}.latest.num_versions must be a whole number of at least 1, got {count!r}")
        if kind == "specific" and set(options) == {"versions"}:
            versions = options["versions"]
            if isinstance(versions, list) and versions and all(is_version(number) for number in versions):
                return cls("specific", versions=tuple(sorted(set(versions))))
            raise ValueError(f"{where}.specific.versions must be a list of version numbers (1 to 2^63-1), got {versions!r}")
        raise ValueError(f"{where}: unknown policy {json.dumps(value)}; use latest, all or specific")

    def select(self, available: list[int]) -> list[int]:
        """The versions to serve among those on disk."""
        ordered = sorted(available)
        if self.kind == "all":
            return ordered
        if self.kind == "latest":
            return ordered[-self.count:]
        return [number for number in ordered if number in self.versions]


def is_version(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_VERSION


@dataclass(frozen=True)
class ModelSettings:
    policy: VersionPolicy = VersionPolicy()
    labels: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RepositoryConfig:
    """The contents of ``models.json`` (all optional)."""

    default: str | None = None
    models: dict[str, ModelSettings] = field(default_factory=dict)

    @classmethod
    def read(cls, root: Path) -> "RepositoryConfig":
        path = root / CONFIG_FILE
        if not path.is_file():
            return cls()
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ValueError(f"{CONFIG_FILE} cannot be read: {error}") from None
        except RecursionError:  # JSON nested thousands deep: a broken file, not a broken server
            raise ValueError(f"{CONFIG_FILE} cannot be read: its JSON is nested too deeply") from None
        try:
            return cls.from_dict(values)
        except RecursionError:  # a message quoting a deeply nested value
            raise ValueError(f"{CONFIG_FILE} holds a value nested too deeply to be a setting") from None

    @classmethod
    def from_dict(cls, values) -> "RepositoryConfig":
        if not isinstance(values, dict) or set(values) - {"default", "models"}:
            raise ValueError(f"{CONFIG_FILE} must be an object with \"models\" and optionally \"default\"")
        default = values.get("default")
        if default is not None and not isinstance(default, str):
            raise ValueError(f"{CONFIG_FILE}: \"default\" must be a model name")
        models = values.get("models", {})
        if not isinstance(models, dict):
            raise ValueError(f"{CONFIG_FILE}: \"models\" must map model names to their settings")
        return cls(default, {name: model_settings(name, settings) for name, settings in models.items()})


def model_settings(name: str, settings) -> ModelSettings:
    if not isinstance(settings, dict) or set(settings) - {"version_policy", "version_labels"}:
        raise ValueError(f"{CONFIG_FILE}: models.{name} may hold only \"version_policy\" and \"version_labels\"")
    policy = VersionPolicy.from_dict(settings["version_policy"], name) if "version_policy" in settings else VersionPolicy()
    labels = settings.get("version_labels", {})
    if not isinstance(labels, dict) or not all(isinstance(label, str) and not label.isdigit() and is_version(number)
                                               for label, number in labels.items()):
        raise ValueError(f"{CONFIG_FILE}: models.{name}.version_labels must map names (not numbers) to version "
                         "numbers (1 to 2^63-1), such as {\"stable\": 1, \"canary\": 2}")
    return ModelSettings(policy, dict(labels))


@dataclass(frozen=True)
class WantedModel:
    """One model as the repository wants it served: version number → run directory, and labels."""

    versions: dict[int, Path]
    labels: dict[str, int] = field(default_factory=dict)
    refused: dict[int, str] = field(default_factory=dict)  # version folders that cannot be served → why


@dataclass
class Repository:
    """A folder of models in TF Serving's layout (see the module's docstring)."""

    root: Path

    def __post_init__(self):
        self.root = Path(self.root)
        if not self.root.is_dir():
            raise ValueError(f"the model repository {self.root} is not a folder; give a folder holding "
                             "<model name>/<version number>/model.keras")

    def scan(self) -> tuple[dict[str, WantedModel], str | None]:
        """Every model and the versions its policy selects, and the default model's name (from
        ``models.json``, else ``None``). A ``models.json`` that cannot be used is a ``ValueError``."""
        config = RepositoryConfig.read(self.root)
        wanted = {}
        for folder in sorted(self.root.iterdir()):
            if not folder.is_dir() or not MODEL_NAME.match(folder.name):
                continue
            on_disk = {int(child.name): child for child in folder.iterdir()
                       if child.name.isascii() and child.name.isdigit() and int(child.name) >= 1 and (child / artifacts.MODEL_FILE).is_file()}
            refused = {number: f"version {number} is above {MAX_VERSION} (2^63-1), the largest version TF Serving's "
                               f"protocols carry; renumber its folder" for number in on_disk if number > MAX_VERSION}
            settings = config.models.get(folder.name, ModelSettings())
            selected = settings.policy.select([number for number in on_disk if number not in refused])
            wanted[folder.name] = WantedModel({number: on_disk[number] for number in selected}, settings.labels,
                                              refused)
        return wanted, config.default


def version_fingerprint(path: Path) -> tuple:
    """(name, size, modification time) of every file in a version's folder: a failed version is
    tried again only once one of them has changed (its model.keras was still being copied, or its
    config.json has been fixed)."""
    files = []
    try:
        for file in sorted(path.rglob("*")):
            if file.is_file():
                stat = file.stat()
                files.append((file.relative_to(path).as_posix(), stat.st_size, stat.st_mtime_ns))
    except OSError:  # the folder is changing under us: the next poll looks again
        return ()
    return tuple(files)
