"""Optimizers, learning-rate schedules and the loss, by name, as every training run compiles them.

    >>> from apparel.training.optimization import make_optimizer
    >>> make_optimizer("ftrl", 0.01).name
    'ftrl'
"""

from __future__ import annotations

from apparel.config import OPTIMIZERS, TrainConfig


def make_optimizer(name: str, learning_rate: float | None = None):
    """A Keras optimizer by its built-in name (``adam``, ``ftrl``, …), with an optional rate."""
    import keras

    settings = {} if learning_rate is None else {"learning_rate": learning_rate}
    try:
        return keras.optimizers.get({"class_name": name, "config": settings})
    except (ValueError, TypeError):
        raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}") from None


def learning_rate_for(config: TrainConfig, steps_per_epoch: int):
    """A float or a per-step schedule over the whole run (``config.schedule``)."""
    import keras

    base = config.learning_rate
    if base is None:
        base = float(make_optimizer(config.optimizer).learning_rate.numpy())
    total = max(1, steps_per_epoch * config.epochs)
    if config.schedule == "constant":
        return base
    if config.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(base, decay_steps=total, alpha=0.01)
    if config.schedule == "one-cycle":
        # Warm up from base/25 to base over the first 30 % of steps, then anneal towards zero.
        warmup = max(1, int(0.3 * total))
        return keras.optimizers.schedules.CosineDecay(
            base / 25, decay_steps=total - warmup, alpha=1e-3, warmup_target=base, warmup_steps=warmup
        )
    raise ValueError(f"unknown schedule {config.schedule!r}; choose constant, cosine or one-cycle")


def make_loss(label_smoothing: float = 0.0):
    """Cross-entropy from logits; with smoothing it takes one-hot labels (Keras's sparse loss has
    no smoothing), without it class indices."""
    import keras

    if label_smoothing:
        return keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
