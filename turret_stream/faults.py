"""Fault injection for crash-consistency tests: die like ``kill -9`` at a named point.

``TURRET_CRASH_AT=<point>`` (or ``<point>:<n>``, the n-th time it is reached) makes the
process exit at once (``os._exit``: no cleanup, no flush, no ``finally``) when the code
reaches ``crash_point(<point>)``. Unset (always, outside tests) it costs one dict lookup.
The points are the write boundaries of a dimension owner's batch
(``clustering/owner_state.py``: ``WRITE_BOUNDARIES``).
"""

from __future__ import annotations

import os

ENV = "TURRET_CRASH_AT"
EXIT_CODE = 86
_reached: dict[str, int] = {}


def crash_point(name: str) -> None:
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] >= int(nth or 1):
        os._exit(EXIT_CODE)
