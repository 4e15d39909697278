"""Every model kind by the name its runs record (``config.json``'s ``"input"``, read by
``apparel.contract``), and the kind a command falls back to when given no model.

    >>> from apparel.kinds.registry import kind_named
    >>> kind_named("photo").default_model
    'store'
"""

from __future__ import annotations

from apparel.kinds.base import Kind
from apparel.kinds.fashion_mnist.kind import FashionMnistKind
from apparel.kinds.photo.kind import PhotoKind

FASHION_MNIST_KIND = FashionMnistKind()
PHOTO_KIND = PhotoKind()
KINDS: dict[str, Kind] = {kind.name: kind for kind in (FASHION_MNIST_KIND, PHOTO_KIND)}


def kind_named(name: str) -> Kind:
    """The kind called ``name``; ``ValueError`` naming the known ones otherwise."""
    try:
        return KINDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {name!r}") from None


def kind_for_inputs(files: bool) -> Kind:
    """The kind whose shipped model takes what a user gave when naming no model: photo files go
    to the photo kind's (the store model), arrays to the Fashion-MNIST walk-through's."""
    return PHOTO_KIND if files else FASHION_MNIST_KIND
