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
from itertools import chain

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

    def presence(self, topic_of: Callable[[int], str | None]) -> Presence:
        """Which topics each recorded session touched, through the current mapping: the
        same as ``Presence.of(self.topic_sets(topic_of))``, built with array operations
        (the owner learns neutral topics at every reclustering, over up to
        ``context_sessions`` sessions: set-building in Python took ~40 ms at 20,000)."""
        lists = list(self.sessions.values())
        flat = np.fromiter(chain.from_iterable(lists), dtype=np.int64)
        rows = np.repeat(
            np.arange(len(lists)), np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
        )
        mcs = _distinct(flat)
        at = np.searchsorted(mcs, flat)
        named = [topic_of(int(mc)) for mc in mcs]
        topics = sorted({t for t in named if t is not None})
        index = {t: i for i, t in enumerate(topics)}
        topic = np.array([index[t] if t is not None else -1 for t in named], dtype=np.int64)[at]
        kept = topic >= 0
        width = max(len(topics), 1)
        pairs = _distinct(rows[kept] * width + topic[kept])
        return Presence(topics, pairs // width, pairs % width)


def _distinct(values: np.ndarray) -> np.ndarray:
    """The sorted distinct values. ``np.unique`` hashes integers in the NumPy installed
    here (2.4): 34 ms against this sort's 2 ms on 100,000 of them."""
    ordered = np.sort(values)
    if len(ordered) < 2:
        return ordered
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]


class Presence:
    """Sessions x topics, as the distinct (session, topic) pairs, sessions in order."""

    def __init__(self, topics: list[str], rows: np.ndarray, cols: np.ndarray) -> None:
        self.topics = topics  # sorted
        self.rows = rows  # session numbers, ascending
        self.cols = cols  # index into topics

    @classmethod
    def of(cls, sessions: Iterable[set[str]]) -> Presence:
        sets = list(sessions)
        topics = sorted(set().union(*sets)) if sets else []
        index = {t: i for i, t in enumerate(topics)}
        rows = [r for r, s in enumerate(sets) for _ in s]
        cols = [index[t] for s in sets for t in sorted(s)]
        return cls(topics, np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64))

    def multi(self) -> Presence:
        """Only the sessions with two topics or more (renumbered in order)."""
        if not len(self.rows):
            return self
        per_row = np.bincount(self.rows)
        keep = per_row[self.rows] >= 2
        rows = self.rows[keep]
        renumbered = np.searchsorted(_distinct(rows), rows)
        return Presence(self.topics, renumbered.astype(np.int64), self.cols[keep])

    @property
    def sessions(self) -> int:
        return int(self.rows[-1]) + 1 if len(self.rows) else 0


def topic_specificity(sessions: Iterable[set[str]], min_topic_sessions: int) -> dict[str, float]:
    """KL divergence of each topic's co-occurrence profile from the overall profile, for
    topics present in at least ``min_topic_sessions`` sessions that share them with
    another topic."""
    return specificity(Presence.of(sessions).multi(), min_topic_sessions)


def specificity(multi: Presence, min_topic_sessions: int) -> dict[str, float]:
    """``topic_specificity`` over the multi-topic sessions' presence."""
    counts = np.bincount(multi.cols, minlength=len(multi.topics))
    judged = np.flatnonzero(counts >= min_topic_sessions)
    if len(judged) < 2:
        return {}
    column = np.full(len(multi.topics), -1, dtype=np.int64)
    column[judged] = np.arange(len(judged))
    keep = column[multi.cols] >= 0
    presence = sparse.csr_matrix(
        (np.ones(int(keep.sum())), (multi.rows[keep], column[multi.cols[keep]])),
        shape=(multi.sessions, len(judged)),
    )
    together = (presence.T @ presence).toarray()
    np.fill_diagonal(together, 0.0)
    overall = together.sum(axis=0)
    if overall.sum() == 0:
        return {}
    overall = overall / overall.sum()
    totals = together.sum(axis=1, keepdims=True)
    share = together / np.where(totals > 0, totals, 1.0)
    terms = np.zeros_like(share)
    seen = share > 0
    terms[seen] = share[seen] * np.log(share[seen] / np.broadcast_to(overall, share.shape)[seen])
    divergence = terms.sum(axis=1)
    return {multi.topics[j]: float(divergence[i]) for i, j in enumerate(judged) if totals[i, 0] > 0}


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
    return neutral_of(
        Presence.of(sessions), min_sessions=min_sessions, min_topic_sessions=min_topic_sessions
    )


def neutral_of(presence: Presence, *, min_sessions: int, min_topic_sessions: int) -> frozenset[str]:
    """``neutral_topics`` over a presence matrix (``SessionContext.presence``)."""
    multi = presence.multi()
    if multi.sessions < min_sessions:
        return frozenset()
    found = specificity(multi, min_topic_sessions)
    if len(found) < 4:
        return frozenset()
    logs = {t: float(np.log(max(v, 1e-9))) for t, v in found.items()}
    cut = otsu_threshold(logs.values())
    if cut is None:
        return frozenset()
    return frozenset(t for t, v in logs.items() if v < cut)
