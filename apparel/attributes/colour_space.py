"""sRGB to CIELAB and the CIEDE2000 colour difference, in numpy.

    >>> import numpy as np
    >>> from apparel.attributes.colour_space import srgb_to_lab, ciede2000
    >>> lab = srgb_to_lab(np.array([[255, 255, 255], [0, 0, 128]]))
    >>> lab.round(1)[0].tolist()[0]
    100.0
    >>> float(ciede2000(lab[0], lab[1])) > 50
    True

CIELAB because distances in it follow what people see far better than RGB's (two blues that look
alike are close, a navy and a black are apart by how different they look), and CIEDE2000 because it
corrects CIELAB where it still errs most: dark colours, near-greys and the blue hues that garments
are full of. Both are the CIE's published formulas (D65 white, the 2° observer).
"""

from __future__ import annotations

import numpy as np

# sRGB (linear) to CIE XYZ, D65: IEC 61966-2-1.
_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])


def _linear(values: np.ndarray) -> np.ndarray:
    """sRGB's transfer function undone: values 0–1 to linear light."""
    return np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4)


# The 256 levels of an 8-bit channel, linearised once: a photo's pixels are such levels, and a lookup
# costs a fraction of the power function on every pixel (the same values, computed the same way).
_LINEAR_LEVELS = _linear(np.arange(256, dtype=np.float64) / 255.0)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (L 0–100, a and b about ±128) of sRGB values 0–255 in the last axis (any shape …×3)."""
    rgb = np.asarray(rgb)
    if rgb.dtype == np.uint8:
        linear = _LINEAR_LEVELS[rgb]
    else:
        linear = _linear(np.asarray(rgb, dtype=np.float64) / 255.0)
    xyz = linear @ _RGB_TO_XYZ.T / _WHITE_D65
    delta = 6 / 29
    f = np.where(xyz > delta ** 3, np.cbrt(xyz), xyz / (3 * delta ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """sRGB values 0–255 (clipped to the gamut) of CIELAB values: the inverse of ``srgb_to_lab``."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], axis=-1)
    delta = 6 / 29
    xyz = np.where(f > delta, f ** 3, 3 * delta ** 2 * (f - 4 / 29)) * _WHITE_D65
    linear = np.clip(xyz @ np.linalg.inv(_RGB_TO_XYZ).T, 0, 1)
    values = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    return values * 255.0


def lch(lab: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lightness, chroma and hue angle (degrees, 0–360) of CIELAB values."""
    lab = np.asarray(lab, dtype=np.float64)
    return lab[..., 0], np.hypot(lab[..., 1], lab[..., 2]), np.degrees(np.arctan2(lab[..., 2], lab[..., 1])) % 360


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 difference between CIELAB values (broadcast over the leading axes; kL = kC = kH = 1)."""
    lab1, lab2 = np.asarray(lab1, dtype=np.float64), np.asarray(lab2, dtype=np.float64)
    l1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    l2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]
    mean_c7 = ((np.hypot(a1, b1) + np.hypot(a2, b2)) / 2) ** 7
    g = 0.5 * (1 - np.sqrt(mean_c7 / (mean_c7 + 25.0 ** 7)))
    a1, a2 = a1 * (1 + g), a2 * (1 + g)
    c1, c2 = np.hypot(a1, b1), np.hypot(a2, b2)
    h1, h2 = np.degrees(np.arctan2(b1, a1)) % 360, np.degrees(np.arctan2(b2, a2)) % 360
    chromatic = (c1 * c2) != 0
    dh = h2 - h1
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(chromatic, dh, 0.0)
    delta_l, delta_c = l2 - l1, c2 - c1
    delta_h = 2 * np.sqrt(c1 * c2) * np.sin(np.radians(dh / 2))
    mean_l, mean_c = (l1 + l2) / 2, (c1 + c2) / 2
    hue_sum = h1 + h2
    mean_h = np.where(np.abs(h1 - h2) > 180, np.where(hue_sum < 360, hue_sum + 360, hue_sum - 360), hue_sum) / 2
    mean_h = np.where(chromatic, mean_h, hue_sum)
    t = (1 - 0.17 * np.cos(np.radians(mean_h - 30)) + 0.24 * np.cos(np.radians(2 * mean_h))
         + 0.32 * np.cos(np.radians(3 * mean_h + 6)) - 0.20 * np.cos(np.radians(4 * mean_h - 63)))
    s_l = 1 + 0.015 * (mean_l - 50) ** 2 / np.sqrt(20 + (mean_l - 50) ** 2)
    s_c, s_h = 1 + 0.045 * mean_c, 1 + 0.015 * mean_c * t
    mean_c7 = mean_c ** 7
    r_t = (-2 * np.sqrt(mean_c7 / (mean_c7 + 25.0 ** 7))
           * np.sin(np.radians(60 * np.exp(-(((mean_h - 275) / 25) ** 2)))))
    return np.sqrt((delta_l / s_l) ** 2 + (delta_c / s_c) ** 2 + (delta_h / s_h) ** 2
                   + r_t * (delta_c / s_c) * (delta_h / s_h))
