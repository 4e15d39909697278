"""Inference: load a trained run and turn images into class probabilities, in Keras or LiteRT;
export a run for other runtimes (``prediction``, ``litert``, ``export``)."""
