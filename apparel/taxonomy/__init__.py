"""Shopify's Standard Product Taxonomy, shipped with the package (``data/README.md`` names the
release, the upstream commits and the MIT license): every category the tool writes or returns is
a node of it. The shop, prediction, serving and batch stages read it; it imports nothing heavy.

    >>> from apparel.taxonomy import load_taxonomy, attribute
    >>> load_taxonomy().search("tee")[0].id
    'aa-1-13-8'
    >>> attribute("color").values[0].name
    'Beige'
"""

from apparel.taxonomy.attributes import Attribute, AttributeValue, attribute, defined_attributes
from apparel.taxonomy.categories import GID_PREFIX, Category, Taxonomy, load_taxonomy

__all__ = ["Attribute", "AttributeValue", "Category", "GID_PREFIX", "Taxonomy", "attribute", "defined_attributes",
           "load_taxonomy"]
