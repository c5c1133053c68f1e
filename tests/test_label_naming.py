"""Choosing between the LLM's candidates and the fallback's name, with the real embedding
model: the name that finds its topic among the others wins, and the record says why."""

from __future__ import annotations

import numpy as np
import pytest

from turret_stream.embedding import open_embedder
from turret_stream.labels.fallback import TopicLabel
from turret_stream.labels.naming import choose, margins
from turret_stream.labels.ollama import OllamaLabel

from .test_pipeline import GROUPS


@pytest.fixture(scope="module")
def space():
    embedder = open_embedder()
    centres = {}
    for group, texts in GROUPS.items():
        centre = embedder.embed(texts).mean(axis=0)
        centres[group] = centre / np.linalg.norm(centre)
    return embedder, centres


def situation(space, group: str):
    embedder, centres = space
    others = np.stack([c for g, c in centres.items() if g != group])
    return embedder, centres[group], others


def llm(*names: str, description: str = "Users cannot get into their accounts.") -> OllamaLabel:
    return OllamaLabel(names[0], description, "qwen", tuple(names), seconds=1.5)


FALLBACK = TopicLabel("Password Reset", 'Texts mentioning "password", e.g. "..."', ("login",))


def test_margin_is_positive_for_a_name_of_its_own_topic(space) -> None:
    embedder, centre, others = situation(space, "password")
    own, wrong = margins(embedder, ["Forgotten Password", "Card Delivery"], centre, others)
    assert own > 0 > wrong


def test_keeps_the_fallback_when_the_llm_name_identifies_worse(space) -> None:
    embedder, centre, others = situation(space, "password")
    decision = choose(embedder, llm("Account Help Topics"), FALLBACK, centre, others)
    assert decision.source == "fallback" and decision.name == "Password Reset"
    assert decision.description == FALLBACK.description
    note = decision.note()
    assert note["winner"] == "fallback"
    assert note["fallback"]["name"] == "Password Reset"
    [candidate] = note["candidates"]
    assert candidate["name"] == "Account Help Topics"
    assert candidate["margin"] < note["fallback"]["margin"]
    assert "identifies the topic worse" in note["reason"]


def test_the_best_identifying_candidate_wins_over_a_weaker_fallback(space) -> None:
    embedder, centre, others = situation(space, "password")
    weak = TopicLabel("Account Access Messages", "Texts.", ("login",))
    decision = choose(
        embedder, llm("Card Delivery Status", "Forgotten Password Reset"), weak, centre, others
    )
    assert decision.source == "llm" and decision.name == "Forgotten Password Reset"
    assert decision.description == "Users cannot get into their accounts."
    assert decision.model == "qwen"
    scores = {c["name"]: c["margin"] for c in decision.note()["candidates"]}
    assert scores["Forgotten Password Reset"] > scores["Card Delivery Status"]
    assert scores["Forgotten Password Reset"] >= decision.note()["fallback"]["margin"]


def test_a_winner_without_a_description_takes_the_fallbacks(space) -> None:
    embedder, centre, others = situation(space, "password")
    weak = TopicLabel("Account Access Messages", "Texts mentioning login.", ("login",))
    answer = llm("Forgotten Password Reset", description="")
    decision = choose(embedder, answer, weak, centre, others)
    assert decision.source == "llm" and decision.description == "Texts mentioning login."


def test_a_name_another_topic_has_gets_the_distinguishing_term(space) -> None:
    embedder, centre, others = situation(space, "password")
    weak = TopicLabel("Account Access Messages", "Texts.", ("login", "password"))
    decision = choose(
        embedder, llm("Password Reset Help"), weak, centre, others, taken=["password reset help"]
    )
    assert decision.name == "Login Password Reset Help"


def test_no_answer_keeps_the_fallback_and_counts_as_failed(space) -> None:
    embedder, centre, others = situation(space, "password")
    decision = choose(embedder, None, FALLBACK, centre, others)
    assert decision.failed and decision.source == "fallback" and decision.name == "Password Reset"


def test_a_candidate_within_the_tolerance_wins_and_the_record_says_so(space) -> None:
    embedder, centre, others = situation(space, "password")
    [strong, near] = margins(embedder, ["Password Reset", "Forgotten Password"], centre, others)
    fallback = TopicLabel("Password Reset", "Texts.", ("password",))
    answer = llm("Forgotten Password")
    gap = strong - near
    assert gap > 0  # the offline name identifies a little better here
    strict = choose(embedder, answer, fallback, centre, others, tolerance=0.0)
    assert strict.source == "fallback" and "tolerance 0" in strict.reason
    loose = choose(embedder, answer, fallback, centre, others, tolerance=gap + 0.01)
    assert loose.source == "llm" and loose.name == "Forgotten Password"
    assert "tolerance" in loose.note()["reason"]
