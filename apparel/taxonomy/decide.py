"""From a model's class probabilities to one Shopify category, or to none with a reason.

    >>> from apparel.taxonomy.decide import CategoryChooser
    >>> chooser = CategoryChooser({"t-shirt": "aa-1-13-8", "shirt": "aa-1-13-7", "other": None},
    ...                           category_threshold=0.6, outside_threshold=0.8)
    >>> chooser.choose([0.45, 0.45, 0.10]).category.name     # unsure which top, sure it is one
    'Clothing Tops'
    >>> chooser.choose([0.05, 0.05, 0.90]).reason
    'outside the vertical'

Each class of a model stands for a node of the taxonomy (or for nothing: a class mapped to no
category is "not one of the store's products"). A node's probability is the sum of its own
classes' and its descendants', so a parent is always at least as likely as any child. The choice
walks down from the top: the likeliest category just below a vertical's root, then its likeliest
child, and so on, for as long as the next one's probability reaches ``category_threshold``:
"Shoes" when the shoe is surely a shoe but may be a sandal or a heel. Above 0.5 that is simply the
deepest sure category (two siblings cannot both pass); at 0 it follows the likeliest branch to its
end. A product whose unmapped classes reach ``outside_threshold`` is left blank with the reason
"outside the vertical"; one where no category reaches the threshold is left blank as "uncertain".
A vertical's root ("Apparel & Accessories") is never written: it tells a merchant nothing. A class
mapped to the root is a thing of the vertical that none of the other classes names (the store
model's ``other-apparel``): its probability counts towards no category and not as outside.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from apparel.errors import ParameterError
from apparel.taxonomy.categories import Category, load_taxonomy

OUTSIDE = "outside the vertical"
# A model's float16 softmax rounds: its rows may sum a hair over 1.
PROBABILITY_SLACK = 1e-3
UNCERTAIN = "uncertain"


@dataclass(frozen=True)
class CategoryDecision:
    category: Category | None  # the node written, None when the product is left for review
    confidence: float  # the chosen node's probability; when left, the likeliest node's (or outside's)
    reason: str | None  # None when a category is written; OUTSIDE or UNCERTAIN otherwise

    def to_dict(self) -> dict:
        """The JSON form every interface returns (``predict --json``, batch, serve)."""
        found = self.category
        return {"id": found.id if found else None, "gid": found.gid if found else None,
                "path": found.path if found else None, "confidence": round(float(self.confidence), 6),
                "reason": self.reason}


def _is_real(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, complex)


class CategoryChooser:
    """Chooses a category for rows of class probabilities (see the module docstring).

    ``class_categories`` maps every class name, in the model's output order, to a category (id,
    GID, full path or ``Category``) or to None.
    """

    def __init__(self, class_categories: Mapping[str, str | Category | None], category_threshold: float,
                 outside_threshold: float, sleeve_classes: Mapping[str, str] | None = None):
        for name, value in (("category_threshold", category_threshold), ("outside_threshold", outside_threshold)):
            # A string ("0.5") or None compared with a number is a TypeError that names nothing; a flag
            # is no threshold. Any other real number (numpy's, a Fraction, a 0-d array) is one.
            if isinstance(value, (bool, np.bool_, str, bytes)) or not _is_real(value):
                raise ParameterError(f"{{}} must be a number in [0, 1], got {value!r}", name)
        if not 0.0 <= category_threshold <= 1.0:
            raise ParameterError(f"{{}} must be in [0, 1], got {category_threshold}", "category_threshold")
        if not 0.0 < outside_threshold <= 1.0:
            raise ParameterError(f"{{}} must be in (0, 1], got {outside_threshold}", "outside_threshold")
        taxonomy = load_taxonomy()
        self.class_names = tuple(class_categories)
        self.category_threshold = category_threshold
        self.outside_threshold = outside_threshold
        # Which of the model's classes tell a sleeve length (``apparel.attributes.sleeve``): part of
        # the model's category record, measured on its own classes; none for any other model.
        self.sleeve_classes = dict(sleeve_classes or {})
        unknown = sorted(set(self.sleeve_classes) - set(self.class_names))
        if unknown:
            raise ParameterError(f"{{}} names {', '.join(unknown)}, which are not classes of this model", "sleeve_classes")
        nodes: list[Category] = []
        index: dict[str, int] = {}  # a node's id → its column
        members: list[list[int]] = []  # per class, the columns of the nodes it counts towards
        self._own: dict[str, Category | None] = {}
        for name, value in class_categories.items():
            columns = []
            self._own[name] = found = None if value is None else taxonomy.get(value)
            if found is not None:
                # The vertical's root is left out: it is never written. A class that stands for the
                # root itself ("apparel, none of the kinds I know") adds to no category and is not
                # outside either: where it is likely, no category is sure and the product is left.
                for node in (*taxonomy.ancestors(found)[1:], *([found] if found.parent_id is not None else [])):
                    if node.id not in index:
                        index[node.id] = len(nodes)
                        nodes.append(node)
                    columns.append(index[node.id])
            members.append(columns)
        self.nodes = tuple(nodes)
        # Which node each class's probability adds to (its own and every ancestor below the root).
        self._sums = np.zeros((len(members), len(self.nodes)), dtype=np.float64)
        for row, columns in enumerate(members):
            self._sums[row, columns] = 1.0
        self._outside = np.asarray([found is None for found in self._own.values()], dtype=np.float64)
        # The walk's steps: the categories just below a vertical's root, then each one's children.
        self._top = [column for column, node in enumerate(self.nodes) if node.parent_id not in index]
        self._children = [[index[child] for child in node.children if child in index] for node in self.nodes]

    @property
    def version(self) -> str:
        """12 hex digits that change with any class's category, either threshold or the sleeve
        classes: what a resumed batch checks so that one output never mixes two calibrations."""
        record = {"categories": {name: found.id if found else None for name, found in self._own.items()},
                  "thresholds": [self.category_threshold, self.outside_threshold]}
        if self.sleeve_classes:  # (a model without them keeps the version it had)
            record["sleeve_classes"] = self.sleeve_classes
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]

    def category_of(self, class_name: str) -> Category | None:
        """The category ``class_name`` stands for (None: not one of the store's products)."""
        if class_name not in self._own:
            raise ParameterError(f"{{}} {class_name!r} is none of this model's classes ({', '.join(self.class_names)})",
                                 "class_name")
        return self._own[class_name]

    def choose_all(self, probabilities) -> list[CategoryDecision]:
        """A decision for each row of ``probabilities`` (N, classes)."""
        rows = np.asarray(probabilities, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != len(self.class_names):
            raise ParameterError(f"{{}} must have one column per class ({len(self.class_names)}), got shape "
                                 f"{rows.shape}", "probabilities")
        # Probabilities, or the walk decides on nonsense: NaN compares false at every step, so a model
        # trained into NaN got the first category of all, "sure" at a confidence of NaN.
        if not np.isfinite(rows).all() or (rows < -PROBABILITY_SLACK).any() \
                or (rows.sum(axis=1) > 1 + PROBABILITY_SLACK).any():
            raise ParameterError("{} must be each row's class probabilities: finite, 0 to 1, summing to at most 1 "
                                 "(the model's answer has NaN or other values: retrain it, or give softmax outputs)",
                                 "probabilities")
        node_mass = rows @ self._sums
        outside = rows @ self._outside
        decisions = []
        for masses, out in zip(node_mass, outside):
            if out >= self.outside_threshold:
                decisions.append(CategoryDecision(None, float(out), OUTSIDE))
                continue
            chosen, step = None, self._top
            while step:
                best = max(step, key=lambda column: masses[column])
                if masses[best] <= 0.0 or masses[best] < self.category_threshold:
                    break
                chosen, step = best, self._children[best]
            if chosen is None:
                best = float(masses.max()) if len(masses) else 0.0
                decisions.append(CategoryDecision(None, max(best, float(out)), UNCERTAIN))
            else:
                decisions.append(CategoryDecision(self.nodes[chosen], float(masses[chosen]), None))
        return decisions

    def choose(self, probabilities: Sequence[float]) -> CategoryDecision:
        """The decision for one row of class probabilities."""
        return self.choose_all([probabilities])[0]
