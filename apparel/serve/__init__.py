"""Serving: the prediction service over HTTP and gRPC, built by ``app.create_app`` and run by
``app.run_server`` (``apparel serve``), with its web page in ``static/``.

Each module of this folder says in its docstring what it holds; the table of them all is built
from those docstrings with the documentation site (docs/architecture.md), so no list is kept here.
"""
