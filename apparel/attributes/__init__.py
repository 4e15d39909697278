"""Product attributes, after the category is known: Shopify's ``color`` read from the photo, and
its ``sleeve_length_type`` told by the model's classes.

    >>> from apparel.attributes import product_colour, has_colour, product_attributes
"""

from apparel.attributes.colour import (ProductColour, gets_colour, has_colour, photo_attributes,
                                      prepare_colour_naming, product_colour)
from apparel.attributes.sleeve import SleeveLength, has_sleeve_length, sleeve_attributes, sleeve_length


def product_attributes(photos, categories: list[dict | None], probabilities, chooser) -> list[dict]:
    """Each product's attribute fields: ``"color"`` from its model input (``photo_attributes``) and
    ``"sleeve_length_type"`` from its class probabilities by ``chooser``'s model (the
    ``CategoryChooser`` its categories came from; ``sleeve_attributes``), each where its category
    takes it."""
    return [colour | sleeve for colour, sleeve in zip(photo_attributes(photos, categories),
                                                      sleeve_attributes(probabilities, chooser, categories),
                                                      strict=True)]


__all__ = ["ProductColour", "SleeveLength", "gets_colour", "has_colour", "has_sleeve_length", "photo_attributes",
           "prepare_colour_naming", "product_attributes", "product_colour", "sleeve_attributes", "sleeve_length"]
