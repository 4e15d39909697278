"""apparel: classify clothing product images into categories with Keras 3.

The public API, one import away; each name's module is in its stage's folder
(docs/architecture.md). Importing the package does not import TensorFlow: Keras loads when a model
is built, trained or loaded.

    >>> from apparel import Predictor, TrainConfig, data, evaluate_run, train
    >>> dataset = data.load_dataset()
    >>> result = train(TrainConfig(epochs=20), dataset=dataset, out_dir="runs/mine")
    >>> Predictor.from_dir("runs/mine").predict_proba(dataset.x_test[:30]).shape
    (30, 10)
"""

from apparel.kinds.fashion_mnist import data
from apparel.training import plots
from apparel.config import TrainConfig
from apparel.kinds.fashion_mnist.data import CLASS_NAMES, NUM_CLASSES, load_dataset
from apparel.errors import ParameterError, SourceError
from apparel.training.evaluation import evaluate_run
from apparel.kinds.fashion_mnist.pipeline import photo_to_input
from apparel.inference.export import export_model
from apparel.inference.prediction import Predictor
from apparel.training.models import MODELS, create_model
from apparel.training.trainer import train

__version__ = "0.1.0"
__all__ = [
    "CLASS_NAMES", "MODELS", "NUM_CLASSES", "ParameterError", "Predictor", "SourceError", "TrainConfig",
    "__version__", "create_model", "data", "evaluate_run", "export_model", "load_dataset", "photo_to_input",
    "plots", "train",
]
