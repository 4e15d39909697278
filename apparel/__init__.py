"""apparel: classify clothing product images into categories with Keras 3.

Kept light on purpose: importing the package does not import TensorFlow.

    >>> from apparel import data, training, prediction
"""

from apparel.data import CLASS_NAMES

__version__ = "0.1.0"
__all__ = ["CLASS_NAMES", "__version__"]
