"""What the pipeline cannot carry, found before an agent touches any state.

The API refuses these at the door; this check catches what bypasses it (another
producer on the topic, an older API version): a lone surrogate in any string (the
tokenizer and the store need UTF-8) and a non-finite number (the store's payloads, like
JSON, have no infinity or NaN).
"""

from __future__ import annotations

import math
from typing import Any


def carry_problem(value: Any, path: str = "event") -> str | None:
    """A description of the first value under ``value`` that cannot be carried, or None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{path}: a string with a lone surrogate (not valid UTF-8)"
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return f"{path}: a non-finite number ({value})"
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key!r}".encode("utf-8", "backslashreplace").decode()
            problem = carry_problem(key, where) or carry_problem(item, where)
            if problem:
                return problem
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            problem = carry_problem(item, f"{path}[{i}]")
            if problem:
                return problem
    return None


class PoisonEvent(ValueError):
    """An event or text the pipeline cannot carry (see :func:`carry_problem`)."""
