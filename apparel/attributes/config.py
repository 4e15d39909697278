"""The colour step's thresholds: one frozen dataclass, every value chosen on the tuning half of
``benchmarks/data/colour_labels.csv`` (and, for skin, on Clothing Co-Parsing's labelled pixels).

    >>> from apparel.attributes.config import ColourConfig
    >>> ColourConfig().second_share
    0.25
    >>> ColourConfig(second_share=2)
    Traceback (most recent call last):
    apparel.errors.ParameterError: second_share must be at most 1, got 2.0
"""

from __future__ import annotations

from dataclasses import dataclass

from apparel.config import Config, option


@dataclass(frozen=True)
class ColourConfig(Config):
    """How the product's pixels are found and named."""

    KEY_NAME = "colour setting"

    # Naming: shares of the product's (centre-weighted) pixels.
    second_share: float = option(0.25, "share a second colour needs to be named", minimum=0.0, maximum=1.0)
    multicolor_share: float = option(0.25, "below this main share, with a third colour near the second's share, "
                                           "the product is Multicolor", minimum=0.0, maximum=1.0)
    # Exposure: the photo's brightest pixels (this percentile) are taken for white, by at most max_gain.
    white_percentile: float = option(90.0, "percentile of the photo's pixels taken for white", minimum=50.0,
                                     maximum=100.0)
    max_gain: float = option(1.3, "largest brightening of a dim photo (1: none)", minimum=1.0, maximum=4.0)
    # Which pixels are the product's.
    centre_sigma: float = option(0.35, "width of the centre weighting, a fraction of the photo's side",
                                 minimum=0.05)
    max_skin_share: float = option(0.45, "skin-coloured pixels are left out when they are less than this share "
                                         "of the foreground (0: never)", minimum=0.0, maximum=1.0)
    min_foreground: float = option(0.04, "below this share of foreground (a white product on white), every "
                                         "pixel counts", minimum=0.0, maximum=1.0)
    # 3, not 6: on a studio's flat sweep a white garment's lit parts are within 6 units of it and were
    # taken for background, leaving its folds, the model's skin and the other clothes to name it
    # (Co-Parsing's training-side people recoloured on a sweep, `benchmarks/colour.py --recolour 400
    # --recolour-side training`: white 3 -> 6 of 31, brown 17 -> 16 of 30, the rest the same; no
    # labelled amateur photo changed: docs/colour.md).
    # A studio's white sweep keeps it however uneven its border looks (JPEG noise, light falling off,
    # the blend at the product's edge; more in a 60x80 thumbnail): the spread's distance took white
    # and pale garments for the sweep (docs/colour.md, "The sweep's distance stays flat").
    background_tolerance: float = option(3.0, "CIELAB distance from a flat border colour, or a white sweep, still "
                                         "background", minimum=0.0)
    background_spread: float = option(2.5, "an uneven border's distance (not a white sweep's), in multiples of its "
                                      "spread", minimum=0.0)
    max_background_tolerance: float = option(25.0, "the largest background distance", minimum=0.0)
    min_border_share: float = option(0.15, "share of the border a colour needs to be a background colour",
                                     minimum=0.0, maximum=1.0)
