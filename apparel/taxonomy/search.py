"""Word search over category names: what ``Taxonomy.search`` and its "closest" hints use.

A query word matches a word of a name when they are equal or the name's word starts with it
(three letters at least), after folding case, dropping apostrophes (``Men's`` → ``mens``) and
joining hyphenated words (``T-Shirts`` → ``tshirts``), in the plural or singular (``tshirt``).
Every query word must match the node's name or one of its ancestors' names; a match in the name
itself counts more, an equal word more than a prefix, and a name made of nothing but equal words
(``T-Shirts`` for "t-shirt") most. Ties go to the tool's own verticals, then to the shallower
node, then to Shopify's order.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

# Everyday words for a category whose name uses another one. Only words that name the same thing.
SYNONYMS = {
    "tee": ("tshirt",),
    "jumper": ("sweater",),
    "pullover": ("sweater",),
    "trainer": ("sneaker",),
    "purse": ("handbag",),
}
# The verticals this tool categorises into: first on a tie (a "tee" is a T-shirt before a golf tee).
OWN_VERTICALS = ("aa", "lb")
_WORD = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
EXACT, PREFIX, IN_ANCESTOR, WHOLE_NAME = 3, 2, 1, 2


@dataclass(frozen=True, slots=True)
class _Entry:
    category: object  # the Category
    name_words: tuple[frozenset[str], ...]  # the forms of each of the name's words, hyphenated ones joined
    name_tokens: frozenset[str]  # all those forms and the parts of hyphenated words ("t", "shirt")
    ancestor_tokens: frozenset[str]
    rank: tuple  # the tie-break: not one of the own verticals, depth, position


class SearchIndex:
    """The words of every category, built once per taxonomy."""

    def __init__(self, categories: Sequence):
        self._entries = []
        # id → the tokens of the node's name and of its ancestors' names; parents come first.
        tokens_of: dict[str, frozenset[str]] = {}
        above: dict[str, frozenset[str]] = {}
        for position, category in enumerate(categories):
            words, parts = _words(category.name)
            tokens_of[category.id] = frozenset().union(*words, *parts)
            parent = category.parent_id
            above[category.id] = frozenset() if parent is None else above[parent] | tokens_of[parent]
            own = category.id.split("-")[0] in OWN_VERTICALS
            self._entries.append(_Entry(category, tuple(words), tokens_of[category.id], above[category.id],
                                        (not own, category.id.count("-"), position)))

    def search(self, text: str, limit: int) -> list:
        """Up to ``limit`` categories matching every word of ``text``, best first."""
        query = [_alternatives(forms) for forms in _words(text)[0]]
        if not query:
            return []
        scored = []
        for entry in self._entries:
            score = _score(query, entry)
            if score:
                scored.append((-score, entry.rank, entry.category))
        scored.sort(key=lambda item: item[:2])
        return [category for _, _, category in scored[:limit]]

    def spelled_like(self, text: str, limit: int) -> list:
        """Categories whose name is spelled most like ``text`` (a typo: "Dreses")."""
        names = {}
        for entry in self._entries:
            names.setdefault(entry.category.name.casefold(), []).append(entry)
        close = difflib.get_close_matches(text.strip().casefold(), list(names), n=limit, cutoff=0.8)
        found = [entry for name in close for entry in sorted(names[name], key=lambda entry: entry.rank)]
        return [entry.category for entry in found[:limit]]


def _score(query: list[tuple[str, ...]], entry: _Entry) -> int:
    """0 unless every query word matches the name or an ancestor's."""
    total, exactly_matched = 0, set()
    for alternatives in query:
        in_name = max((_match(word, token) for word in alternatives for token in entry.name_tokens), default=0)
        if in_name:
            total += in_name
            exactly_matched.update(index for index, forms in enumerate(entry.name_words) if forms & alternatives)
        elif any(_match(word, token) for word in alternatives for token in entry.ancestor_tokens):
            total += IN_ANCESTOR
        else:
            return 0
    if len(exactly_matched) == len(entry.name_words):
        total += WHOLE_NAME
    return total


def _match(word: str, token: str) -> int:
    if word == token:
        return EXACT
    return PREFIX if len(word) >= 3 and token.startswith(word) else 0


def _alternatives(forms: frozenset[str]) -> frozenset[str]:
    return forms.union(*(SYNONYMS.get(form, ()) for form in forms))


def _words(text: str) -> tuple[list[frozenset[str]], list[frozenset[str]]]:
    """The forms of each word of ``text`` (hyphenated ones joined) and of its hyphenated words'
    parts. A word's forms are itself and its singular: "hoodies" meets "hoodie", "accessories"
    meets "accessory"."""
    words, parts = [], []
    for word in _WORD.findall(text.casefold().replace("'", "").replace("\u2019", "")):
        words.append(_forms(word.replace("-", "")))
        if "-" in word:
            parts.extend(_forms(part) for part in word.split("-"))
    return words, parts


def _forms(word: str) -> frozenset[str]:
    forms = {word, _singular(word)}
    if len(word) > 3 and word.endswith("ies"):
        forms.add(word[:-1])  # "hoodies": "hoodie" as well as "hoody"
    return frozenset(forms)


def _singular(word: str) -> str:
    """A plural's singular, roughly: enough that "shirts" and "shirt" (or "dresses") meet."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us")):
        return word[:-1]
    return word
