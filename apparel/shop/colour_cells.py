"""The product's colour in a Shopify product CSV, where Shopify keeps it.

    >>> from apparel.shop.colour_cells import colour_column
    >>> colour_column(["Handle", "Title", "Color (product.metafields.shopify.color-pattern)"])
    2

Shopify's export writes each category metafield as a column headed ``<name> (product.metafields.
<namespace>.<key>)`` (help.shopify.com, "Using CSV files to import and export products", the
metafields section); the colour category metafield is ``shopify.color-pattern``, and the name before
the brackets is in the store's language ("Color", "Kolor", "色"), so the column is found by its key.
Its cell takes the colour entries' names, comma-separated ("Navy, White"). A file without that
column gets a ``color:<name>`` tag instead. A colour the merchant set, in the column or as a
``color:`` tag, is kept unless ``overwrite``.
"""

from __future__ import annotations

from collections.abc import Sequence

from apparel.attributes import ProductColour

METAFIELD = "(product.metafields.shopify.color-pattern)"
TAG_PREFIX = "color:"


def colour_column(header: Sequence) -> int | None:
    """The index of the colour metafield's column in ``header`` (names, or cells with ``value``)."""
    names = [getattr(cell, "value", cell).strip().lower() for cell in header]
    return next((index for index, name in enumerate(names) if name.endswith(METAFIELD)), None)


def colour_tag(colour: ProductColour) -> str:
    """``color:navy``, ``color:rose-gold``: the main colour's name as a tag."""
    return TAG_PREFIX + colour.main.name.lower().replace(" ", "-")


def colour_cell(colour: ProductColour) -> str:
    """The metafield column's value: the main colour's name, and the second's (``Navy, White``)."""
    return ", ".join(value.name for value in (colour.main, colour.second) if value is not None)
