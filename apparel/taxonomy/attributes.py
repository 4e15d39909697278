"""The attributes whose values ship with the package: color, pattern, fabric, neckline, …

    >>> from apparel.taxonomy import attribute
    >>> color = attribute("color")
    >>> color.gid, color.value("black").gid
    ('gid://shopify/TaxonomyAttribute/1', 'gid://shopify/TaxonomyValue/1')

A category names more attributes (``size``, ``care_instructions``, …) than have values here;
``defined_attributes()`` says which do.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from apparel.errors import ParameterError

DATA_FILE = Path(__file__).resolve().parent / "data" / "attributes.json"


@dataclass(frozen=True, slots=True)
class AttributeValue:
    """One value an attribute takes."""

    name: str  # "Rose gold"
    handle: str  # "color__rose-gold", the taxonomy's handle
    friendly_id: str  # "color__rose_gold", as the attribute's value list names it
    id: int
    gid: str  # "gid://shopify/TaxonomyValue/<id>"

    def to_dict(self) -> dict:
        """How every answer names the value: ``{"name", "handle", "gid"}``."""
        return {"name": self.name, "handle": self.handle, "gid": self.gid}


@dataclass(frozen=True, slots=True)
class Attribute:
    """An attribute and its values, in Shopify's order."""

    name: str  # "Color"
    friendly_id: str  # "color", as categories name it
    handle: str
    id: int
    gid: str  # "gid://shopify/TaxonomyAttribute/<id>"
    description: str
    values: tuple[AttributeValue, ...]

    def value(self, name: str) -> AttributeValue:
        """The value named ``name`` (its name in any case, its handle or friendly_id)."""
        if not isinstance(name, str):
            raise ParameterError(f"{{}} must be a value's name, handle or friendly_id, got {type(name).__name__}",
                                 "value")
        wanted = name.strip().casefold()
        for value in self.values:
            if wanted in (value.name.casefold(), value.handle, value.friendly_id):
                return value
        raise ParameterError(f"{{}} {name!r} is not a value of {self.friendly_id}; it takes "
                             + ", ".join(value.name for value in self.values), "value")


@functools.cache
def defined_attributes(data_file: str | Path = DATA_FILE) -> dict[str, Attribute]:
    """friendly_id → Attribute, for every attribute whose values ship (read once)."""
    data = json.loads(Path(data_file).read_text(encoding="utf-8"))
    return {key: Attribute(item["name"], item["friendly_id"], item["handle"], item["id"], item["gid"],
                           item["description"],
                           tuple(AttributeValue(value["name"], value["handle"], value["friendly_id"], value["id"],
                                                value["gid"]) for value in item["values"]))
            for key, item in data.items()}


def attribute(friendly_id: str) -> Attribute:
    """The attribute ``friendly_id`` (``color``, ``sleeve_length_type``, …)."""
    attributes = defined_attributes()
    if friendly_id not in attributes:
        raise ParameterError(f"{{}} {friendly_id!r} has no values in the shipped data; known: "
                             + ", ".join(sorted(attributes)), "friendly_id")
    return attributes[friendly_id]
