"""Classifying a manifest of photos, on this machine or on a Ray cluster (``apparel batch``).

    >>> from apparel.batch.run import BatchConfig, classify_manifest
    >>> report = classify_manifest("photos.csv", "predictions/", BatchConfig(engine="ray"))

``loop.py`` is the read-and-predict loop that ``apparel predict`` and ``apparel catalog`` use too;
``manifest.py`` reads the manifest, ``reading.py`` fetches and decodes a batch of rows,
``predicting.py`` holds the model, ``output.py`` writes the Parquet data set (``writing.py``: what
it and ``apparel catalog`` share about writing); ``engine_local.py`` and ``engine_ray.py`` run the
same steps, in this process or on Ray Data.
"""
