"""Step-indexed flows between topics (a Sankey's nodes and links), from collapsed paths.

Pure and separate from ``journey_queries``: it only needs each distinct collapsed path
with its number of sessions (``JourneyStats.paths``), which every journey request has.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from itertools import pairwise
from typing import Any


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def step_flows(paths: Mapping[tuple[str, ...], int], steps: int) -> dict[str, Any]:
    """Nodes are (step, topic) for steps 1..``steps``: how many sessions were in ``topic``
    at that step, and how many of them ended there (``ended``: no further step). Links
    go from step k to step k+1 with ``count`` sessions and ``probability`` =
    P(next topic | current topic at step k). ``beyond`` counts the sessions with more
    than ``steps`` steps (cut at the last one shown).

    >>> flows = step_flows({("A", "B"): 2, ("A",): 1, ("B", "A", "B"): 1}, 2)
    >>> [(n["step"], n["topic"], n["sessions"], n["ended"]) for n in flows["nodes"]]
    [(1, 'A', 3, 1), (1, 'B', 1, 0), (2, 'B', 2, 2), (2, 'A', 1, 0)]
    >>> [(k["step"], k["from"], k["to"], k["count"], k["probability"]) for k in flows["links"]]
    [(1, 'A', 'B', 2, 0.6667), (1, 'B', 'A', 1, 1.0)]
    >>> flows["beyond"]
    1
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    nodes: Counter[tuple[int, str]] = Counter()
    ended: Counter[tuple[int, str]] = Counter()
    links: Counter[tuple[int, str, str]] = Counter()
    beyond = 0
    for path, sessions in paths.items():
        shown = path[:steps]
        for k, topic in enumerate(shown, 1):
            nodes[(k, topic)] += sessions
        if not shown:
            continue
        for k, (a, b) in enumerate(pairwise(shown), 1):
            links[(k, a, b)] += sessions
        if len(path) > steps:
            beyond += sessions
        else:
            ended[(len(shown), shown[-1])] += sessions
    node_rows = [
        {"step": k, "topic": t, "sessions": n, "ended": ended[(k, t)]}
        for (k, t), n in sorted(nodes.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][1]))
    ]
    link_rows = [
        {
            "step": k,
            "from": a,
            "to": b,
            "count": n,
            "probability": _ratio(n, nodes[(k, a)]),
        }
        for (k, a, b), n in sorted(links.items(), key=lambda kv: (kv[0][0], -kv[1], kv[0][1:]))
    ]
    return {"nodes": node_rows, "links": link_rows, "beyond": beyond}
