"""Neutral topics: topics that show up in every kind of conversation, so they carry no
information about where a session is going ("thanks", "yes", "at 7 pm", "in San Jose").

A journey should follow the task, not the slot-filling replies inside it. Which topics
are neutral is learned from the sessions themselves, without labels: the owner records
which micro-clusters each recent session touched (``SessionContext``), and at each
reclustering every topic's *co-occurrence profile* (how often each other topic appears
in the same sessions) is compared with the profile of all topics together. A topic that
appears beside everything has a profile close to the overall one (small KL divergence);
a task topic ("book a table", "find a flight") keeps company with a few related topics
(large divergence). The split between the two groups is the Otsu threshold of the log
divergences (the cut that best separates two groups, no tuned constant), applied only
when there is enough evidence (``min_sessions`` multi-topic sessions; topics seen in at
least ``min_topic_sessions`` sessions).

Journeys then treat an event in a neutral topic like noise: it never starts a switch
(see ``journeys.session_path`` and ``agents/sessions.py``).
"""

from __future__ import annotations

import json
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable

import numpy as np
from scipy import sparse

# A session's distinct micro-clusters are remembered up to this many (long sessions
# would otherwise dominate the counts and the memory).
MAX_MCS_PER_SESSION = 64


class SessionContext:
    """The distinct micro-clusters of the ``max_sessions`` most recently active sessions."""

    def __init__(self, max_sessions: int) -> None:
        self.max_sessions = max_sessions
        self.sessions: OrderedDict[str, list[int]] = OrderedDict()

    def observe(self, session_id: str, mc: int) -> None:
        mcs = self.sessions.pop(session_id, None)
        if mcs is None:
            mcs = []
        if mc not in mcs and len(mcs) < MAX_MCS_PER_SESSION:
            mcs.append(mc)
        self.sessions[session_id] = mcs  # most recent last
        self._trim()

    def _trim(self) -> None:
        while len(self.sessions) > self.max_sessions:
            self.sessions.popitem(last=False)

    def to_blob(self) -> bytes:
        """The sessions as compressed JSON (``{"sessions": [[id, [mc, ...]], ...]}``)."""
        data = {"sessions": [[s, mcs] for s, mcs in self.sessions.items()]}
        return zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 3)

    @classmethod
    def from_blob(cls, blob: bytes, max_sessions: int) -> SessionContext:
        ctx = cls(max_sessions)
        for session_id, mcs in json.loads(zlib.decompress(blob))["sessions"]:
            ctx.sessions[str(session_id)] = [int(m) for m in mcs]
        ctx._trim()
        return ctx

    def topic_sets(self, topic_of: Callable[[int], str | None]) -> list[set[str]]:
        """Each recorded session's distinct topics, through the current mapping."""
        cache: dict[int, str | None] = {}
        out = []
        for mcs in self.sessions.values():
            topics = set()
            for mc in mcs:
                if mc not in cache:
                    cache[mc] = topic_of(mc)
                if cache[mc] is not None:
                    topics.add(cache[mc])
            out.append(topics)
        return out


def topic_specificity(sessions: Iterable[set[str]], min_topic_sessions: int) -> dict[str, float]:
    """KL divergence of each topic's co-occurrence profile from the overall profile, for
    topics present in at least ``min_topic_sessions`` sessions that share them with
    another topic."""
    multi = [s for s in sessions if len(s) >= 2]
    counts: dict[str, int] = {}
    for s in multi:
        for t in s:
            counts[t] = counts.get(t, 0) + 1
    topics = sorted(t for t, n in counts.items() if n >= min_topic_sessions)
    if len(topics) < 2:
        return {}
    index = {t: i for i, t in enumerate(topics)}
    rows, cols = [], []
    for r, s in enumerate(multi):
        for t in s:
            if t in index:
                rows.append(r)
                cols.append(index[t])
    presence = sparse.csr_matrix(
        (np.ones(len(rows)), (rows, cols)), shape=(len(multi), len(topics))
    )
    together = (presence.T @ presence).toarray()
    np.fill_diagonal(together, 0.0)
    overall = together.sum(axis=0)
    if overall.sum() == 0:
        return {}
    overall = overall / overall.sum()
    out = {}
    for t, i in index.items():
        row = together[i]
        if row.sum() == 0:
            continue
        p = row / row.sum()
        seen = p > 0
        out[t] = float(np.sum(p[seen] * np.log(p[seen] / overall[seen])))
    return out


def otsu_threshold(values: Iterable[float]) -> float | None:
    """The cut between two groups of ``values`` that maximises the between-group
    variance (Otsu's method); None with fewer than two distinct values."""
    x = np.sort(np.asarray(list(values), dtype=float))
    if len(x) < 2 or x[0] == x[-1]:
        return None
    n = len(x)
    k = np.arange(1, n)
    left_sum = np.cumsum(x)[:-1]
    left_mean = left_sum / k
    right_mean = (x.sum() - left_sum) / (n - k)
    between = k * (n - k) * (left_mean - right_mean) ** 2
    between[x[:-1] == x[1:]] = -1.0  # never cut between equal values
    best = int(np.argmax(between))
    return float((x[best] + x[best + 1]) / 2)


def neutral_topics(
    sessions: Iterable[set[str]], *, min_sessions: int, min_topic_sessions: int
) -> frozenset[str]:
    """Topics whose co-occurrence profile is close to everyone's (see module doc)."""
    sessions = [s for s in sessions if len(s) >= 2]
    if len(sessions) < min_sessions:
        return frozenset()
    specificity = topic_specificity(sessions, min_topic_sessions)
    if len(specificity) < 4:
        return frozenset()
    logs = {t: float(np.log(max(v, 1e-9))) for t, v in specificity.items()}
    cut = otsu_threshold(logs.values())
    if cut is None:
        return frozenset()
    return frozenset(t for t, v in logs.items() if v < cut)
