"""Product attributes read from the photo (Shopify's ``color``), after the category is known.

    >>> from apparel.attributes import product_colour, has_colour
"""

from apparel.attributes.colour import (ProductColour, gets_colour, has_colour, photo_attributes,
                                      prepare_colour_naming, product_colour)

__all__ = ["ProductColour", "gets_colour", "has_colour", "photo_attributes", "prepare_colour_naming", "product_colour"]
