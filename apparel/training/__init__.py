"""The training core: the registered models (``models``), their optimisers and losses
(``optimization``), a run directory's life (``runs``), a model's figures on labelled images
(``scores``); then, above the model kinds (``apparel.kinds``), the one training path
(``trainer.train``), a run's held-out figures (``evaluation.evaluate_run``) and its figures as
pictures (``plots``).

This file imports nothing, so that the kinds can use the lower modules without loading the
training path that asks them."""
