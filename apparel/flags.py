"""Config dataclasses as command-line flags: one flag per field, named, typed and documented by it.

Kept apart from the commands in ``cli.py`` so that this mapping, which every command's flags go
through, is small enough for ``make mutation`` to plant bugs in it (docs/testing.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing

from apparel.config import TrainConfig, read_config_file

# Flags whose name is not the parameter's with dashes.
FLAG_NAMES = {"out_dir": "--out", "run_dir": "--out", "csv_path": "CSV", "manifest": "MANIFEST",
              "category": "CATEGORY", "words": "WORD"}


def flag_name(parameter: str) -> str:
    """How the CLI spells a library parameter: ``images_dir`` → ``--images-dir``."""
    return FLAG_NAMES.get(parameter, "--" + parameter.replace("_", "-"))


def add_config_flags(parser: argparse.ArgumentParser, config_class, skip: tuple[str, ...] = ()) -> None:
    """One flag per field of a ``Config`` dataclass: its type, help and default come from the field.

    Every flag defaults to ``None`` ("not given"), so the config's own default applies.
    """
    for field in dataclasses.fields(config_class):
        if field.name in skip:
            continue
        kind = config_class.value_type(field.name)
        flag, help_text = flag_name(field.name), config_class.help(field.name)
        if kind is bool:
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif kind is tuple:
            parser.add_argument(flag, dest=field.name, type=comma_list(_item_type(config_class, field.name)),
                                metavar="A,B", help=help_text)
        else:
            # The values shown in the usage line (the field's own check words a wrong one).
            choices = field.metadata.get("choices")
            parser.add_argument(flag, dest=field.name, type=kind, help=help_text,
                                metavar="{" + ",".join(choices) + "}" if choices else None)


def _item_type(config_class, name: str) -> type:
    """The item type of a tuple field (``float`` for ``tuple[float, ...] | None``); str when mixed."""
    hint = typing.get_type_hints(config_class)[name]
    for option in typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,):
        if typing.get_origin(option) is tuple:
            kinds = {kind for kind in typing.get_args(option) if kind is not Ellipsis}
            return kinds.pop() if len(kinds) == 1 else str
    return str


def port_number(text: str) -> int:
    """An argparse ``type`` for a TCP port: a whole number from 0 (any free one) to 65535 (the
    system read 99999 as 99999 mod 65536, and the server said it listened on a port it did not)."""
    port = int(text)
    if not 0 <= port <= 65535:
        raise ValueError(text)
    return port


port_number.__name__ = "port (0 to 65535)"  # argparse names the type in its error


def comma_list(kind: type = str):
    """An argparse ``type`` reading ``a,b,c`` as a tuple of ``kind``; blank items are dropped. A
    bad item raises ValueError, which argparse reports as an invalid value of the flag."""
    def parse(text: str) -> tuple:
        return tuple(kind(item.strip()) for item in text.split(",") if item.strip())
    parse.__name__ = f"comma-separated {kind.__name__}"  # argparse names the type in its error
    return parse


def config_changes(args, config_class) -> dict:
    """The fields of ``config_class`` whose flags were given."""
    return {field.name: getattr(args, field.name) for field in dataclasses.fields(config_class)
            if getattr(args, field.name, None) is not None}


def train_config_from_args(args) -> TrainConfig:
    """Defaults, then ``--config`` file, then flags that were given."""
    config = TrainConfig()
    if args.config:
        config = config.replace(**read_config_file(args.config))
    return config.replace(**config_changes(args, TrainConfig))
