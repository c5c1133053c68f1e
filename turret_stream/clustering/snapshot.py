"""A TopicModel's learned state as bytes, and back.

Centres live in the centre index (Qdrant); everything else a model has learned (weights,
shared density, links, absorptions, topic ids and history, the reclustering clock) is
small enough to write whole after each batch. JSON, zlib-compressed: readable with two
lines of Python, stable across versions of this code.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from turret_stream.clustering.dbstream import DBSTREAM, Decayed, MicroCluster
from turret_stream.clustering.model import TopicModel
from turret_stream.clustering.topics import TopicChange

FORMAT = 1


def _pairs(pairs: dict[tuple[int, int], Decayed]) -> list[list[float]]:
    return [[a, b, d.value, d.t] for (a, b), d in pairs.items()]


def model_state(model: TopicModel) -> dict[str, Any]:
    e: DBSTREAM = model.engine
    r = model.registry
    return {
        "format": FORMAT,
        "engine": {
            "mcs": [[m.id, m.weight, m.last_update, m.created, m.count] for m in e._mcs.values()],
            "shared": _pairs(e._shared),
            "links": _pairs(e._links),
            "absorbed": [[k, v] for k, v in e._absorbed.items()],
            "next_id": e._next_id,
            "step": e._step,
            "last_cleanup": e._last_cleanup,
        },
        "model": {
            "since_recluster": model._since_recluster,
            "last_recluster": model._last_recluster,
            "communities": [[k, v] for k, v in model._communities.items()],
        },
        "registry": {
            "mapping": [[k, v] for k, v in r.mapping.items()],
            "successor": r.successor,
            "history": [[c.kind, c.topic, c.at, c.other] for c in r.history],
        },
    }


def restore_model(model: TopicModel, state: dict[str, Any]) -> None:
    """Load ``state`` (from :func:`model_state`) into a freshly built model."""
    if state.get("format") != FORMAT:
        raise ValueError(f"unknown model state format {state.get('format')!r}")
    e = model.engine
    s = state["engine"]
    e._mcs = {int(m[0]): MicroCluster(int(m[0]), m[1], m[2], m[3], int(m[4])) for m in s["mcs"]}
    e._shared = {(int(a), int(b)): Decayed(v, t) for a, b, v, t in s["shared"]}
    e._links = {(int(a), int(b)): Decayed(v, t) for a, b, v, t in s["links"]}
    e._pairs_of = {}
    for pair in [*e._shared, *e._links]:
        e._pairs_of.setdefault(pair[0], set()).add(pair)
        e._pairs_of.setdefault(pair[1], set()).add(pair)
    e._absorbed = {int(k): (None if v is None else int(v)) for k, v in s["absorbed"]}
    e._next_id = int(s["next_id"])
    e._step = int(s["step"])
    e._last_cleanup = s["last_cleanup"]
    m = state["model"]
    model._since_recluster = int(m["since_recluster"])
    model._last_recluster = m["last_recluster"]
    model._communities = {int(k): int(v) for k, v in m["communities"]}
    r = state["registry"]
    model.registry.mapping = {int(k): v for k, v in r["mapping"]}
    model.registry.successor = dict(r["successor"])
    model.registry.history = [TopicChange(k, t, at, o) for k, t, at, o in r["history"]]


def dumps(state: dict[str, Any]) -> bytes:
    return zlib.compress(json.dumps(state, separators=(",", ":")).encode(), 3)


def loads(data: bytes) -> dict[str, Any]:
    return json.loads(zlib.decompress(data))
