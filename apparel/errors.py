"""The two errors the library raises for a caller's mistake; both are ``ValueError``s.

``ParameterError`` is about a parameter's value. Its message is written with ``{}`` where the
parameter goes, so each caller names it in its own terms: the library as ``images_dir``, the CLI as
``--images-dir``; nobody re-words the text.

    >>> error = ParameterError("{} is not a folder: shop/images", "images_dir")
    >>> str(error)
    'images_dir is not a folder: shop/images'
    >>> error.render(lambda name: "--" + name.replace("_", "-"))
    '--images-dir is not a folder: shop/images'

``SourceError`` is about one input (a file, a URL, an upload): ``source`` names it as the code that
read it knew it, ``reason`` says what is wrong, and a caller that knows a better name (the upload's
file name, the catalog row) puts its own in front of ``reason``.

    >>> error = SourceError("<2,048 bytes>", "not an image")
    >>> str(error), error.reason
    ('<2,048 bytes>: not an image', 'not an image')
"""

from __future__ import annotations

import numbers
import os
import re
from collections.abc import Callable
from pathlib import Path

# What a URL begins with (a scheme, then "://"): refused where a local path is wanted, and fetched
# where an image may be either (apparel.images.fetch.is_url).
URL_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class ParameterError(ValueError):
    """A parameter's value is wrong; ``parameters`` are the names the message mentions."""

    def __init__(self, template: str, *parameters: str):
        self.template = template
        self.parameters = parameters
        super().__init__(_fill(template, parameters))

    def render(self, name: Callable[[str], str]) -> str:
        """The message with each parameter named by ``name(parameter)``."""
        return _fill(self.template, [name(parameter) for parameter in self.parameters])


def _fill(template: str, names) -> str:
    """Each ``{}`` (or ``{!r}``, quoted) in turn replaced by a name. Not ``str.format``: the message
    quotes the user's own values and paths, and a brace in one (``--schedule '{x}'``) must not
    break the error itself."""
    names = list(names)
    queue = iter(names)
    return _MARKER.sub(lambda marker: repr(next(queue)) if marker.group(1) else next(queue), template,
                       count=len(names))


_MARKER = re.compile(r"\{(!r)?\}")


class SourceError(ValueError):
    """One input cannot be used: ``source`` names it, ``reason`` says why."""

    def __init__(self, source: str, reason: str):
        self.source = str(source)
        self.reason = reason
        super().__init__(f"{self.source}: {reason}")

    def renamed(self, source: str) -> "SourceError":
        """The same reason, the source named as the caller knows it."""
        return SourceError(source, self.reason)


def local_path(value, parameter: str):
    """``value`` as a ``Path`` when it names a local file or folder (a str or ``os.PathLike``);
    a ``ParameterError`` naming ``parameter`` otherwise. A URL is refused too: as a path,
    "https://cdn…/p.csv" became the folders https:/cdn…, silently.

    >>> local_path("products.csv", "csv_path")
    PosixPath('products.csv')
    """
    if isinstance(value, bytes) or not isinstance(value, (str, os.PathLike)):
        raise ParameterError(f"{{}} must be a path (a str or pathlib.Path), got {type(value).__name__} "
                             f"{value!r:.60}", parameter)
    text = os.fspath(value)
    if isinstance(text, str) and URL_PATTERN.match(text):
        raise ParameterError(f"{{}} {text} is a URL; give a local path", parameter)
    return Path(value)


def whole_number(value, parameter: str, what: str = "a whole number of at least 1") -> int:
    """``value`` as an ``int`` when it is a whole number of at least 1 (a NumPy integer too; not a
    bool, not 2.5 or "3"); a ``ParameterError`` naming ``parameter`` otherwise, saying it must be
    ``what``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ParameterError(f"{{}} must be {what}, got {value!r:.40}", parameter)
    return int(value)
