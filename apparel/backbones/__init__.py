"""Pretrained networks built from Keras layers, their weights read from registry packages."""
