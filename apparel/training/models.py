"""Model registry: builders by name, each returning an uncompiled Keras model that maps a batch of
inputs to logits: 28×28 images in [0, 1] (Fashion-MNIST models) or N×N RGB photos with values
0–255 (photo models, ``input_kind="photo"``).

    >>> from apparel.training.models import create_model, MODELS
    >>> sorted(MODELS)
    ['cnn', 'efficientnet-lite0', 'mlp', 'resnet', 'seed-mlp']
    >>> model = create_model("seed-mlp", hidden=128)     # None or missing: the model's default

Models use Keras layers only, so they run under any Keras backend.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

from apparel.config import AUGMENTATIONS

INPUT_SHAPE = (28, 28)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable
    description: str
    # Fraction of the training set held out for model selection. The reference trains on all
    # 60,000 images, so seed-mlp holds none out by default.
    validation_split: float
    # For training: XLA compiles a dense network's step into much faster CPU code, but its CPU
    # convolutions are slower than TensorFlow's oneDNN kernels, so convolutional models default to
    # no XLA. (Inference never uses XLA: see prediction.compile_forward.)
    jit_compile: bool
    # What the model takes: "fashion-mnist" (28×28 grayscale arrays) or "photo" (N×N RGB).
    input_kind: str = "fashion-mnist"
    # Photo models only: the augmentations used when the config names none, the epochs of the head
    # on the frozen backbone, and the backbone's top blocks fine-tuned after them.
    augment: tuple[str, ...] = ()
    head_epochs: int = 0
    fine_tune_blocks: int = 0

    def defaults(self) -> dict:
        """The builder's keyword defaults, e.g. ``{"hidden": 256, "outputs": 20, ...}``."""
        signature = inspect.signature(self.builder)
        return {name: parameter.default for name, parameter in signature.parameters.items()}


MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, *, validation_split: float = 0.1, jit_compile: bool = True, **photo_settings):
    """Decorator adding a builder to ``MODELS``; its first docstring line is the description.
    ``photo_settings`` are ModelSpec's photo fields (``input_kind``, ``augment``, …)."""

    def decorate(builder: Callable) -> Callable:
        description = (builder.__doc__ or "").strip().splitlines()[0].replace("``", "")
        MODELS[name] = ModelSpec(name, builder, description, validation_split, jit_compile, **photo_settings)
        return builder

    return decorate


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}") from None


def create_model(name: str, **options):
    """Build model ``name``; options set to ``None`` take the model's default.

    Raises ``ValueError`` for an unknown model or an option the model does not have.
    """
    spec = get_spec(name)
    accepted = spec.defaults()
    given = {key: value for key, value in options.items() if value is not None}
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise ValueError(
            f"model {name!r} has no option {', '.join(unknown)}; its options are: {', '.join(accepted)}"
        )
    return spec.builder(**given)


def _check_activation(activation: str) -> None:
    import keras

    try:
        keras.activations.get(activation)
    except (ValueError, TypeError):
        raise ValueError(f"unknown activation {activation!r}; use a Keras activation name such as relu, tanh, sigmoid") from None


def _check_positive(**values) -> None:
    for key, value in values.items():
        if value < 1:
            raise ValueError(f"{key} must be at least 1, got {value}")


@register_model("seed-mlp", validation_split=0.0)
def seed_mlp(hidden: int = 256, outputs: int = 20, activation: str = "relu"):
    """The walk-through's model: Flatten → Dense(256, relu) → Dense(20) logits."""
    import keras
    from keras import layers

    _check_activation(activation)
    _check_positive(hidden=hidden, outputs=outputs)
    return keras.Sequential(
        [
            keras.Input(shape=INPUT_SHAPE),
            layers.Flatten(),
            layers.Dense(hidden, activation=activation),
            layers.Dense(outputs),
        ],
        name="seed_mlp",
    )


@register_model("mlp")
def mlp(
    hidden: int = 512,
    depth: int = 2,
    outputs: int = 10,
    activation: str = "relu",
    dropout: float = 0.2,
    batch_norm: bool = True,
):
    """A deeper MLP: ``depth`` hidden layers, optional batch norm and dropout."""
    import keras
    from keras import layers

    _check_activation(activation)
    _check_positive(hidden=hidden, depth=depth, outputs=outputs)
    stack = [keras.Input(shape=INPUT_SHAPE), layers.Flatten()]
    for _ in range(depth):
        stack.append(layers.Dense(hidden, use_bias=not batch_norm))
        if batch_norm:
            stack.append(layers.BatchNormalization())
        stack.append(layers.Activation(activation))
        if dropout:
            stack.append(layers.Dropout(dropout))
    stack.append(layers.Dense(outputs))
    return keras.Sequential(stack, name="mlp")


def _conv_block(x, filters: int, activation: str, batch_norm: bool):
    from keras import layers

    x = layers.Conv2D(filters, 3, padding="same", use_bias=not batch_norm)(x)
    if batch_norm:
        x = layers.BatchNormalization()(x)
    return layers.Activation(activation)(x)


@register_model("cnn", jit_compile=False)
def cnn(
    width: int = 32,
    hidden: int = 128,
    outputs: int = 10,
    activation: str = "relu",
    dropout: float = 0.3,
    batch_norm: bool = True,
):
    """A small VGG-style CNN: two blocks of two 3×3 convolutions, then a dense head."""
    import keras
    from keras import layers

    _check_activation(activation)
    _check_positive(width=width, hidden=hidden, outputs=outputs)
    inputs = keras.Input(shape=INPUT_SHAPE)
    x = layers.Reshape(INPUT_SHAPE + (1,))(inputs)
    for filters in (width, 2 * width):
        x = _conv_block(x, filters, activation, batch_norm)
        x = _conv_block(x, filters, activation, batch_norm)
        x = layers.MaxPooling2D()(x)
        if dropout:
            x = layers.Dropout(dropout / 2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(hidden, activation=activation)(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    outputs_ = layers.Dense(outputs)(x)
    return keras.Model(inputs, outputs_, name="cnn")


@register_model("resnet", jit_compile=False)
def resnet(
    width: int = 32,
    depth: int = 3,
    blocks: int = 2,
    outputs: int = 10,
    activation: str = "relu",
    dropout: float = 0.0,
):
    """A pre-activation ResNet: ``depth`` stages of ``blocks`` residual blocks, width doubling."""
    import keras
    from keras import layers

    _check_activation(activation)
    _check_positive(width=width, depth=depth, blocks=blocks, outputs=outputs)
    inputs = keras.Input(shape=INPUT_SHAPE)
    x = layers.Reshape(INPUT_SHAPE + (1,))(inputs)
    x = layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
    for stage in range(depth):
        filters = width * 2**stage
        for block in range(blocks):
            strides = 2 if stage > 0 and block == 0 else 1
            shortcut = x
            y = layers.BatchNormalization()(x)
            y = layers.Activation(activation)(y)
            if strides != 1 or shortcut.shape[-1] != filters:
                shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False)(y)
            y = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(y)
            y = layers.BatchNormalization()(y)
            y = layers.Activation(activation)(y)
            if dropout:
                y = layers.Dropout(dropout)(y)
            y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
            x = layers.Add()([shortcut, y])
    x = layers.BatchNormalization()(x)
    x = layers.Activation(activation)(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs_ = layers.Dense(outputs)(x)
    return keras.Model(inputs, outputs_, name="resnet")


@register_model(
    "efficientnet-lite0", jit_compile=False, input_kind="photo",
    augment=("crop", "flip", "colour"), head_epochs=30, fine_tune_blocks=4,
)
def efficientnet_lite0(image_size: int = 224, outputs: int = 10, dropout: float = 0.2, weights: str | None = "imagenet"):
    """EfficientNet-Lite0 pretrained on ImageNet with a new classification head: RGB photos."""
    import keras
    from keras import layers

    from apparel.backbones.efficientnet_lite import efficientnet_lite0 as backbone_model  # imports Keras

    _check_positive(image_size=image_size, outputs=outputs)
    backbone = backbone_model((image_size, image_size, 3), include_top=False, weights=weights, pooling="avg",
                              name="backbone")
    inputs = keras.Input((image_size, image_size, 3))
    features = layers.Dropout(dropout, name="head_dropout")(backbone(inputs))
    return keras.Model(inputs, layers.Dense(outputs, name="classifier")(features), name="efficientnet_lite0")


def with_augmentation(model, augment: tuple[str, ...]):
    """``model`` behind random image augmentation that acts only in training (``fit``); at
    inference the added layers pass images through unchanged.

    ``augment`` names any of: ``shift`` (up to 10 % each way), ``flip`` (left–right),
    ``erase`` (a random rectangle, as in random erasing), ``crop`` (zoom in by up to 25 % at a
    random place), ``colour`` (brightness, contrast, saturation), ``resolution`` (photos: a batch
    at a lower resolution, ``backbones.layers.RandomResolution``). Uncovered borders take the
    background: black for 28×28 arrays, white for photos.
    """
    import keras
    from keras import layers

    unknown = sorted(set(augment) - set(AUGMENTATIONS))
    if unknown:
        raise ValueError(f"unknown augmentation {', '.join(unknown)}; choose from: {', '.join(AUGMENTATIONS)}")
    if not augment:
        return model
    shape = tuple(model.input_shape[1:])
    photo = len(shape) == 3
    top = 255.0 if photo else 1.0
    background = 255.0 if photo else 0.0
    stack = [keras.Input(shape=shape)] + ([] if photo else [layers.Reshape(shape + (1,))])
    if "crop" in augment:
        stack.append(layers.RandomZoom((-0.25, 0.0), fill_mode="constant", fill_value=background))
    if "shift" in augment or "crop" in augment:
        stack.append(layers.RandomTranslation(0.1, 0.1, fill_mode="constant", fill_value=background))
    if "flip" in augment:
        stack.append(layers.RandomFlip("horizontal"))
    if "colour" in augment:
        stack += [layers.RandomBrightness(0.1, value_range=(0.0, top)), layers.RandomContrast(0.1, value_range=(0.0, top))]
        if photo:
            stack.append(layers.RandomSaturation((0.4, 0.6), value_range=(0.0, top)))
    if "resolution" in augment:
        if not photo:
            raise ValueError("augment: resolution is for photo models; use shift, flip or erase for 28×28 images")
        from apparel.backbones.layers import RandomResolution

        stack.append(RandomResolution())
    if "erase" in augment:
        stack.append(layers.RandomErasing(factor=0.5, scale=(0.02, 0.2), fill_value=background, value_range=(0.0, top)))
    stack += ([] if photo else [layers.Reshape(shape)]) + [model]
    return keras.Sequential(stack, name=f"{model.name}_augmented")
