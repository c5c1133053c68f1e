"""Which metadata keys are clustering dimensions: typing each key from the values it gets.

Turret's rule is "the metadata key becomes the clustering dimension; additional fields
provide context but aren't clustered". turret-stream types every metadata key of every
project as one of:

- ``text``: a clustering dimension (its values are embedded and clustered into topics);
- ``enum``: a segment kept on each event for filtering, e.g. ``platform=mobile``;
- ``number``: context, stored but neither clustered nor segmented;
- ``ignore``: dropped (only by configuration).

The type of a key is decided from the values seen so far, and re-checked on every value:

1. An override in ``dimensions.overrides`` always wins: ``"project:key"`` first, then
   ``"key"``.
2. ``null`` values are skipped: they are not counted as observations.
3. If every value seen is a number, the key is ``number``: JSON numbers (not booleans) and
   strings that read as a decimal number (``"42"``, ``"-3.5"``, ``"1e3"``; not ``"nan"``,
   ``"inf"`` or ``"1_000"``).
4. Else, if every value seen is a boolean, the key is ``enum``.
5. Else (strings, or a mix of kinds) the string rule applies, where a boolean counts as the
   value ``"true"``/``"false"`` and a number as its JSON text:

   - Once ``min_observations`` values were seen (the key is *decided*): ``enum`` if there
     are at most ``enum_max_distinct`` distinct values, AND every value seen is at most
     ``enum_max_chars`` characters long, AND distinct values / values seen is at most
     ``enum_max_distinct_ratio``; otherwise ``text``. An enum key whose values stop
     repeating thus becomes ``text``. A decided ``text`` key stays ``text`` for good (its
     distinct values only grow; later repeats do not turn free text into a segment).
   - Before that (*provisional*): ``text`` if any value seen so far has 3 or more words or
     more than ``enum_max_chars`` characters, else ``enum``.

A key with no value seen yet (or only nulls) is ``ignore``. ``classify_value`` gives the
provisional type of one value by the same rules, for routing an event whose key has not
been decided yet.

A :class:`FieldTypeTracker` holds what these rules need for one project+key, in bounded
space (at most ``enum_max_distinct + 1`` distinct values, each at most ``enum_max_chars``
long), and round-trips through ``to_dict``/``from_dict`` for persistence.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal, TypeAlias

from turret_stream.settings import DimensionSettings

FieldType: TypeAlias = Literal["text", "enum", "number", "ignore"]

# A decimal number, as JSON or a person would write it; Python's float() also accepts
# "nan", "infinity" and "1_000", which are words here.
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_TEXT_MIN_WORDS = 3


def is_numeric(value: Any) -> bool:
    """A JSON number (not a boolean) or a string holding a decimal number."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    return isinstance(value, str) and _NUMBER.fullmatch(value.strip()) is not None


def _as_string(value: Any) -> str:
    # JSON text for non-strings, so True is "true" (the same segment as the string "true").
    return value if isinstance(value, str) else json.dumps(value)


def _text_like(string: str, max_chars: int) -> bool:
    return len(string) > max_chars or len(string.split()) >= _TEXT_MIN_WORDS


def classify_value(value: Any, settings: DimensionSettings | None = None) -> FieldType:
    """The provisional type of one value (overrides aside): see the module docstring."""
    settings = settings or DimensionSettings()
    if value is None:
        return "ignore"
    if isinstance(value, bool):
        return "enum"
    if is_numeric(value):
        return "number"
    return "text" if _text_like(_as_string(value), settings.enum_max_chars) else "enum"


def override_for(project: str, key: str, settings: DimensionSettings) -> FieldType | None:
    """The configured type of ``key`` in ``project``, if any (``project:key`` wins)."""
    overrides = settings.overrides
    return overrides.get(f"{project}:{key}", overrides.get(key))


class FieldTypeTracker:
    """The type of one metadata key of one project, updated value by value."""

    def __init__(self, project: str, key: str, settings: DimensionSettings | None = None) -> None:
        self.project = project
        self.key = key
        self._settings = settings or DimensionSettings()
        self._override = override_for(project, key, self._settings)
        self.seen = 0  # values observed (nulls excluded)
        self.numbers = 0  # ... of which numeric
        self.booleans = 0  # ... of which booleans
        self.longest = 0  # characters of the longest value, as a string
        self.text_like = False  # some value had >= 3 words or > enum_max_chars characters
        self.text_for_good = False  # decided text once: final
        # Distinct values up to enum_max_distinct + 1: one more than an enum may have is
        # enough to know it is not one. Values over enum_max_chars are never kept (one of
        # them already rules out enum).
        self._distinct: set[str] = set()
        self._type: FieldType = self._override or "ignore"

    @property
    def type(self) -> FieldType:
        return self._type

    @property
    def decided(self) -> bool:
        """True when ``type`` is final for now: overridden, or min_observations reached."""
        return self._override is not None or self.seen >= self._settings.min_observations

    @property
    def distinct(self) -> int:
        """Distinct values seen, counted up to ``enum_max_distinct + 1``."""
        return len(self._distinct)

    def observe(self, value: Any) -> None:
        if value is None:
            return
        self.seen += 1
        if isinstance(value, bool):
            self.booleans += 1
        elif is_numeric(value):
            self.numbers += 1
        if not self.text_for_good:
            string = _as_string(value)
            self.longest = max(self.longest, len(string))
            limits = self._settings
            self.text_like = self.text_like or _text_like(string, limits.enum_max_chars)
            if (
                len(string) <= limits.enum_max_chars
                and len(self._distinct) <= limits.enum_max_distinct
            ):
                self._distinct.add(string)
        self._type = self._decide()

    def _decide(self) -> FieldType:
        if self._override is not None:
            return self._override
        if self.seen == 0:
            return "ignore"
        if self.numbers == self.seen:
            return "number"
        if self.booleans == self.seen:
            return "enum"
        if self.text_for_good:
            return "text"
        limits = self._settings
        if self.seen < limits.min_observations:
            return "text" if self.text_like else "enum"
        enum = (
            len(self._distinct) <= limits.enum_max_distinct
            and self.longest <= limits.enum_max_chars
            and len(self._distinct) / self.seen <= limits.enum_max_distinct_ratio
        )
        if enum:
            return "enum"
        self.text_for_good = True
        self._distinct.clear()  # no longer needed: keeps the persisted state small
        return "text"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state; the override is not stored (it is configuration)."""
        return {
            "project": self.project,
            "key": self.key,
            "seen": self.seen,
            "numbers": self.numbers,
            "booleans": self.booleans,
            "longest": self.longest,
            "text_like": self.text_like,
            "text_for_good": self.text_for_good,
            "distinct": sorted(self._distinct),
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], settings: DimensionSettings | None = None
    ) -> FieldTypeTracker:
        """A tracker from ``to_dict`` output, typed under ``settings`` (today's config)."""
        tracker = cls(data["project"], data["key"], settings)
        tracker.seen = int(data["seen"])
        tracker.numbers = int(data["numbers"])
        tracker.booleans = int(data["booleans"])
        tracker.longest = int(data["longest"])
        tracker.text_like = bool(data["text_like"])
        tracker.text_for_good = bool(data["text_for_good"])
        # The bound may have shrunk in the configuration since the state was saved.
        keep = tracker._settings.enum_max_distinct + 1
        tracker._distinct = set(sorted(data["distinct"])[:keep])
        tracker._type = tracker._decide()
        return tracker

    def __repr__(self) -> str:
        state = "decided" if self.decided else "provisional"
        return (
            f"<FieldTypeTracker {self.project}:{self.key} {self._type} ({state}, {self.seen} seen)>"
        )


def split_metadata(
    metadata: Mapping[str, Any], types: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
    """``(texts, segments, context)`` of one event's metadata, by key type.

    - ``texts``: keys typed ``text`` with a non-blank string value, the values to embed;
    - ``segments``: keys typed ``enum``, values as sent (a boolean stays a boolean);
    - ``context``: keys typed ``number``, keys with no type yet, and the non-string values
      of ``text`` keys (nothing to embed, but not lost).

    ``ignore`` keys, null values and blank strings of ``text`` keys are dropped.
    """
    texts: dict[str, str] = {}
    segments: dict[str, Any] = {}
    context: dict[str, Any] = {}
    for key, value in metadata.items():
        if value is None:
            continue
        kind = types.get(key)
        if kind == "ignore":
            continue
        if kind == "text" and isinstance(value, str):
            if value.strip():
                texts[key] = value
        elif kind == "enum":
            segments[key] = value
        else:
            context[key] = value
    return texts, segments, context
