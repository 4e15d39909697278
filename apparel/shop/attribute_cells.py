"""A product's attributes in a Shopify product CSV, where Shopify keeps them.

    >>> from apparel.shop.attribute_cells import COLOUR, metafield_columns
    >>> metafield_columns(["Handle", "Title", "Color (product.metafields.shopify.color-pattern)"], COLOUR)
    [2]

Shopify's export writes each category metafield as a column headed ``<name> (product.metafields.
<namespace>.<key>)`` (help.shopify.com, "Using CSV files to import and export products", the
metafields section); the colour category metafield is ``shopify.color-pattern``, the sleeve length's
``shopify.sleeve-length-type``, and the name before the brackets is in the store's language ("Color",
"Kolor", "色"), so the column is found by its key. Its cell takes the entries' names, comma-separated
("Navy, White"). A file without that column gets a tag instead (``color:navy``,
``sleeve-length:short``). A value the merchant set, in the column or as such a tag, is kept unless
``overwrite``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from apparel.attributes import ProductColour


@dataclass(frozen=True)
class CsvAttribute:
    role: str       # the catalog's name for its column ("colour")
    metafield: str  # how its column's header ends
    tag_prefix: str  # the tag a file without that column gets: prefix + the value's name
    parameter: str  # the catalog's setting that asks for it (``CatalogConfig``'s field, the CLI's flag)
    name: str       # the header's name before the brackets in an English store's export

    @property
    def header(self) -> str:
        """The column's header as an English store's export spells it."""
        return f"{self.name} {self.metafield}"


COLOUR = CsvAttribute("colour", "(product.metafields.shopify.color-pattern)", "color:", "colour", "Color")
SLEEVE = CsvAttribute("sleeve", "(product.metafields.shopify.sleeve-length-type)", "sleeve-length:", "sleeve_length",
                      "Sleeve length type")
BY_PARAMETER = {attribute.parameter: attribute for attribute in (COLOUR, SLEEVE)}


def metafield_columns(header: Sequence, attribute: CsvAttribute) -> list[int]:
    """The indices of ``attribute``'s metafield columns in ``header`` (names, or cells with
    ``value``): one in a file as Shopify exports it."""
    names = [getattr(cell, "value", cell).strip().lower() for cell in header]
    return [index for index, name in enumerate(names) if name.endswith(attribute.metafield)]


def attribute_tag(attribute: CsvAttribute, name: str) -> str:
    """``color:navy``, ``color:rose-gold``, ``sleeve-length:3/4``: a value's name as a tag."""
    return attribute.tag_prefix + name.lower().replace(" ", "-")


def colour_values(colour: ProductColour) -> list[str]:
    """What a colour writes: the main colour's name, and the second's (``Navy, White`` in a cell)."""
    return [value.name for value in (colour.main, colour.second) if value is not None]
