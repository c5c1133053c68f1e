"""One topic's LLM round: ask for candidates, keep the name that identifies the topic.

A model's name is not trusted: each candidate and the fallback's name are embedded with the
product's embedder and scored by how well they find their topic, the way a reader would
find a topic from its name. The ``margin`` of a name is its cosine to its own topic's
centre minus its best cosine to any other topic's centre of the dimension: positive when
the name sits nearest its own topic. The best LLM candidate replaces the fallback's name
only if its margin is at least the fallback's; otherwise the fallback stays. Both names,
their margins and the reason are recorded with the label.

A name another topic of the dimension already has is not chosen: the candidate gets the
topic's most distinguishing c-TF-IDF term added (when it has room), else the next
candidate is tried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from turret_stream.embedding import Embedder
from turret_stream.labels.rules import MAX_NAME_WORDS, name_key


class Fallback(Protocol):
    name: str
    description: str
    terms: tuple[str, ...]


@dataclass(frozen=True)
class Scored:
    name: str
    source: str  # "llm" | "fallback"
    margin: float

    def view(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "margin": round(self.margin, 4)}


@dataclass(frozen=True)
class Decision:
    """Which name a topic gets, and why (``note`` is what the label record keeps)."""

    name: str
    description: str
    source: str  # "llm" | "fallback"
    reason: str
    fallback: Scored | None = None
    candidates: tuple[Scored, ...] = ()
    model: str | None = None
    seconds: float = 0.0
    failed: bool = False  # the model gave no usable name (down, slow, nonsense)

    def note(self) -> dict[str, Any]:
        return {
            "winner": self.source,
            "reason": self.reason,
            "fallback": self.fallback.view() if self.fallback else None,
            "candidates": [c.view() for c in self.candidates],
            "seconds": round(self.seconds, 2),
        }


def margins(
    embedder: Embedder, names: Sequence[str], centre: np.ndarray, others: np.ndarray
) -> list[float]:
    """Each name's cosine to ``centre`` minus its best cosine to a row of ``others``."""
    if not names:
        return []
    vectors = embedder.embed(list(names))
    own = vectors @ _unit(centre)
    if len(others) == 0:
        return [float(x) for x in own]
    rivals = (vectors @ _unit_rows(np.asarray(others, dtype=np.float32)).T).max(axis=1)
    return [float(x) for x in own - rivals]


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / max(float(np.linalg.norm(v)), 1e-12)


def _unit_rows(m: np.ndarray) -> np.ndarray:
    if m.ndim != 2 or len(m) == 0:
        return m
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)


async def decide(
    ollama: Any,
    embedder: Embedder,
    *,
    texts: Sequence[str],
    fallback: Fallback,
    centre: np.ndarray,
    others: np.ndarray,
    neighbours: Sequence[str],
    taken: Sequence[str] = (),
    tolerance: float = 0.0,
) -> Decision:
    """Ask ``ollama`` for candidates and pick this topic's name (see the module docstring).

    ``centre``: the topic's centre; ``others``: the other topics' centres (rows);
    ``neighbours``: the current names of the nearest topics, nearest first (shown to the
    model); ``taken``: every other topic's current name in the dimension; ``tolerance``:
    how much lower than the fallback's margin the best candidate's may be and still win.
    """
    answer = await ollama.label(
        list(texts), neighbours=list(neighbours), terms=list(fallback.terms)
    )
    return await asyncio.to_thread(
        choose, embedder, answer, fallback, centre, others, taken, tolerance
    )


def choose(
    embedder: Embedder,
    answer: Any,
    fallback: Fallback,
    centre: np.ndarray,
    others: np.ndarray,
    taken: Sequence[str] = (),
    tolerance: float = 0.0,
) -> Decision:
    """The name a topic gets, given the model's ``answer`` (an OllamaLabel or None)."""
    [kept] = margins(embedder, [fallback.name], centre, others)
    base = Scored(fallback.name, "fallback", kept)
    if answer is None:
        return Decision(
            fallback.name,
            fallback.description,
            "fallback",
            "the model gave no usable name",
            base,
            failed=True,
        )
    used = {name_key(n) for n in taken}
    names = [_distinct(n, used, fallback.terms) for n in answer.candidates or (answer.name,)]
    names = list(dict.fromkeys(n for n in names if n is not None))
    scored = tuple(
        Scored(n, "llm", m)
        for n, m in zip(names, margins(embedder, names, centre, others), strict=True)
    )
    common = {"fallback": base, "model": answer.model, "seconds": answer.seconds}
    if not scored:
        return Decision(
            fallback.name,
            fallback.description,
            "fallback",
            "every candidate repeats another topic's name",
            candidates=scored,
            **common,
        )
    best = max(scored, key=lambda s: s.margin)
    if best.margin >= base.margin - tolerance:
        return Decision(
            best.name,
            answer.description or fallback.description,
            "llm",
            f"{best.name!r} identifies the topic as well as {base.name!r} "
            f"(margin {best.margin:.3f} >= {base.margin:.3f} - tolerance {tolerance:g})",
            candidates=scored,
            **common,
        )
    return Decision(
        fallback.name,
        fallback.description,
        "fallback",
        f"the best candidate {best.name!r} identifies the topic worse than {base.name!r} "
        f"(margin {best.margin:.3f} < {base.margin:.3f} - tolerance {tolerance:g})",
        candidates=scored,
        **common,
    )


def _distinct(name: str, used: set[str], terms: Sequence[str]) -> str | None:
    """``name``, or with the topic's distinguishing term added if another topic has it."""
    if name_key(name) not in used:
        return name
    words = name.split()
    for term in terms:
        extra = [w.capitalize() if w.islower() else w for w in term.split()]
        if any(name_key(w) in name_key(name).split() for w in extra):
            continue
        if len(words) + len(extra) > MAX_NAME_WORDS:
            continue
        longer = " ".join(extra + words)
        if name_key(longer) not in used:
            return longer
    return None
