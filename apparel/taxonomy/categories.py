"""Shopify's product taxonomy as a tree of ``Category`` nodes, looked up by id, GID or full path.

    >>> from apparel.taxonomy import load_taxonomy
    >>> taxonomy = load_taxonomy()
    >>> tee = taxonomy.get("aa-1-13-8")        # or its GID, or its path in any letter case
    >>> tee.path, tee.gid
    ('Apparel & Accessories > Clothing > Clothing Tops > T-Shirts', 'gid://shopify/TaxonomyCategory/aa-1-13-8')
    >>> taxonomy.vertical_of("hb-3-2").name     # a cosmetics node: not apparel
    'Health & Beauty'

The full path is what a Shopify product CSV's category column takes; the id and GID are what the
Admin API takes. Apparel & Accessories and Luggage & Bags carry their attributes; the other
verticals come from release 2024-07, which ships none.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from apparel.errors import ParameterError, whole_number

DATA_FILE = Path(__file__).resolve().parent / "data" / "categories.json"
GID_PREFIX = "gid://shopify/TaxonomyCategory/"
SEPARATOR = " > "
_ID = re.compile(r"^[a-z]{2}(-\d+)*$")


@dataclass(frozen=True, slots=True)
class Category:
    """One node of the taxonomy."""

    id: str  # "aa-1-13-8": the vertical's prefix, then the position under each ancestor
    name: str  # "T-Shirts"
    path: str  # "Apparel & Accessories > Clothing > Clothing Tops > T-Shirts", the names root to node
    gid: str  # "gid://shopify/TaxonomyCategory/aa-1-13-8", the Admin API's form of the id
    parent_id: str | None  # None for a vertical's root
    children: tuple[str, ...]  # the direct children's ids, in Shopify's order
    attributes: tuple[str, ...]  # attribute friendly_ids ("color", …); empty where the data has none
    vertical: str  # the root's name: "Apparel & Accessories", "Health & Beauty", …

    def to_dict(self) -> dict:
        """The JSON form: every field (``json.dumps`` takes no dataclass)."""
        return {"id": self.id, "name": self.name, "path": self.path, "gid": self.gid, "parent_id": self.parent_id,
                "children": list(self.children), "attributes": list(self.attributes), "vertical": self.vertical}


class Taxonomy:
    """Every category of the shipped release; ``load_taxonomy()`` builds the one the tool uses.

    Methods that take a category accept its id, its GID, its full path (letter case and the spaces
    around ``>`` do not matter) or a ``Category``.
    """

    def __init__(self, categories: Sequence[Category], release: str):
        self.release = release
        self._by_id = {category.id: category for category in categories}
        self._by_path = {_path_key(category.path): category for category in categories}
        self._index = None  # the search index, built at the first search

    def __len__(self) -> int:
        return len(self._by_id)

    def __repr__(self) -> str:  # what a notebook shows of load_taxonomy()
        return f"<Taxonomy release {self.release}: {len(self):,} categories>"

    def __iter__(self) -> Iterator[Category]:
        return iter(self._by_id.values())

    def __contains__(self, category) -> bool:
        return isinstance(category, (str, Category)) and self.find(category) is not None

    def find(self, category: str | Category) -> Category | None:
        """The node ``category`` names, or None."""
        if isinstance(category, Category):
            return self._by_id.get(category.id)
        if not isinstance(category, str):  # None was "'None' is not a category; closest: … Non-Electric Vehicles"
            raise ParameterError(f"{{}} must be an id (aa-1-13-8), a GID or a full path, or a Category; got "
                                 f"{type(category).__name__}", "category")
        text = _without_gid(category)
        if _ID.match(text.lower()):
            return self._by_id.get(text.lower())
        return self._by_path.get(_path_key(text))

    def get(self, category: str | Category) -> Category:
        """The node ``category`` names; a ``ParameterError`` naming the closest nodes if none."""
        found = self.find(category)
        if found is None:
            raise ParameterError("{} " + self.unknown_reason(str(category)), "category")
        return found

    def unknown_reason(self, value: str) -> str:
        """Why ``value`` names no node, with the closest ones: the text of every "unknown
        category" error, so a mapping file and a command line say the same."""
        closest = self.closest(value)
        hint = "; ".join(f"{category.id} {category.path}" for category in closest)
        return (f"{value!r} is not a category of Shopify's product taxonomy; "
                + (f"closest: {hint}" if hint else "give a full path or an id such as aa-1-13-8")
                + "; look categories up with `apparel taxonomy search WORDS`")

    def closest(self, value: str, limit: int = 3) -> list[Category]:
        """The nodes nearest to a ``value`` that names none: for an id, its nearest existing
        ancestor; for a path, the best matches of its last part's words, or of its spelling."""
        text = _without_gid(value)
        if _ID.match(text.lower()):
            parts = text.lower().split("-")
            for end in range(len(parts) - 1, 0, -1):
                if "-".join(parts[:end]) in self._by_id:
                    return [self._by_id["-".join(parts[:end])]]
            return []
        last = text.split(">")[-1]
        if not last.strip():  # nothing to look for: search would say its own parameter is empty
            return []
        return self.search(last, limit) or self._search_index().spelled_like(last, limit)

    def children(self, category: str | Category) -> tuple[Category, ...]:
        """The direct children, in Shopify's order."""
        return tuple(self._by_id[child] for child in self.get(category).children)

    def ancestors(self, category: str | Category) -> tuple[Category, ...]:
        """The nodes above ``category``, its vertical's root first."""
        found, chain = self.get(category), []
        while found.parent_id is not None:
            found = self._by_id[found.parent_id]
            chain.append(found)
        return tuple(reversed(chain))

    def is_ancestor(self, ancestor: str | Category, descendant: str | Category) -> bool:
        """Whether ``ancestor`` lies strictly above ``descendant`` (Clothing above T-Shirts)."""
        above, below = self.get(ancestor), self.get(descendant)
        return below.id.startswith(above.id + "-")

    def vertical_of(self, category: str | Category) -> Category:
        """The root of the vertical ``category`` belongs to (``aa``: Apparel & Accessories)."""
        return self._by_id[self.get(category).id.split("-")[0]]

    def search(self, words: str | Sequence[str], limit: int = 10) -> list[Category]:
        """Categories whose names match every word, best first: ``search("tee")`` and
        ``search("t-shirt")`` both start with Clothing Tops > T-Shirts."""
        limit = whole_number(limit, "limit", "a whole number, at least 1")
        if not isinstance(words, str) and not (isinstance(words, Sequence) and all(isinstance(w, str) for w in words)):
            raise ParameterError(f"{{}} must be words to look for (\"tee\", or a list of them), got {words!r}", "words")
        text = words if isinstance(words, str) else " ".join(words)
        if not text.strip():
            raise ParameterError("{} holds no word; give one or more to look for, e.g. \"tee\"", "words")
        found = self._search_index().search(text, limit)
        named = self.find(text.strip())  # a full path, an id or a GID pasted in: that node first
        if named is None:
            return found
        return [named, *(category for category in found if category.id != named.id)][:limit]

    def _search_index(self):
        if self._index is None:
            from apparel.taxonomy.search import SearchIndex

            self._index = SearchIndex(list(self))
        return self._index


@functools.cache
def load_taxonomy(data_file: str | Path = DATA_FILE) -> Taxonomy:
    """The taxonomy shipped with the package (read once, then cached)."""
    data = json.loads(Path(data_file).read_text(encoding="utf-8"))
    categories = []
    for vertical in data["verticals"]:
        categories.extend(_vertical_categories(vertical["categories"], vertical["name"]))
    return Taxonomy(categories, data["release"])


def _vertical_categories(rows: list[list], vertical: str) -> list[Category]:
    """Rows ``[id, name]`` or ``[id, name, attributes]``, parents before children."""
    children: dict[str, list[str]] = {}
    for row in rows:
        parent = _parent_id(row[0])
        if parent is not None:
            children.setdefault(parent, []).append(row[0])
    paths: dict[str, str] = {}
    categories = []
    for row in rows:
        id_, name = row[0], row[1]
        parent = _parent_id(id_)
        paths[id_] = name if parent is None else paths[parent] + SEPARATOR + name
        categories.append(Category(id_, name, paths[id_], GID_PREFIX + id_, parent, tuple(children.get(id_, ())),
                                   tuple(row[2]) if len(row) > 2 else (), vertical))
    return categories


def _without_gid(value: str) -> str:
    """``value`` stripped, less a leading GID prefix: an id then, if it was a GID."""
    text = str(value).strip()
    return text[len(GID_PREFIX):] if text.lower().startswith(GID_PREFIX.lower()) else text


def _parent_id(category_id: str) -> str | None:
    return category_id.rsplit("-", 1)[0] if "-" in category_id else None


def _path_key(path: str) -> str:
    """A path as compared: parts stripped, letter case folded."""
    return SEPARATOR.join(part.strip() for part in path.split(">")).casefold()
