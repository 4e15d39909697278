"""Serving: the HTTP app (``app``), its settings and runner (``server``), request bodies
(``payloads``), the micro-batcher (``batching``) and the web page (``static/``)."""
