"""Typing metadata keys: text (clustered), enum (segment), number (context), ignore."""

from __future__ import annotations

import itertools
import json

import pytest

from turret_stream.dimensions import (
    FieldTypeTracker,
    classify_value,
    is_numeric,
    split_metadata,
)
from turret_stream.settings import DimensionSettings

DEFAULTS = DimensionSettings()  # min_observations 20, enum: <= 50 distinct, <= 40 chars, <= 0.5

PROMPTS = [
    "How do I reset my password?",
    "I forgot my login credentials",
    "What is the weather in Paris?",
    "Why was my card declined at the supermarket?",
    "Can I change the currency of my account?",
    "refund",
    "help",
    "My transfer has been pending for three days",
    "How long does a top up by bank transfer take?",
    "Where can I see my card PIN?",
    "thanks",
    "Is there a fee for exchanging euros?",
    "I was charged twice for one purchase",
    "How do I close my account?",
    "The app crashes when I open my statements",
    "Can I get a physical card as well as a virtual one?",
    "What happens if I enter the wrong PIN three times?",
    "hi",
    "Why is my balance not updated after a deposit?",
    "How do I add money with Apple Pay?",
    "Please explain the exchange rate you applied",
    "My card payment was reverted",
    "Do you support Google Pay?",
]
PLATFORMS = ["mobile", "web", "desktop", "mobile", "mobile", "web"]
PLANS = ["Free", "Pro", "Enterprise Annual", "Pro", "Free", "Team"]


def tracker(key: str = "field", settings: DimensionSettings = DEFAULTS, project="shop"):
    return FieldTypeTracker(project, key, settings)


def feed(tracker: FieldTypeTracker, values) -> FieldTypeTracker:
    for value in values:
        tracker.observe(value)
    return tracker


def cycle(values, count: int) -> list:
    return list(itertools.islice(itertools.cycle(values), count))


# --- one value, before a key is decided -------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("How do I reset my password?", "text"),
        ("I forgot my login credentials", "text"),
        ("reset password", "enum"),  # two words, short
        ("mobile", "enum"),
        ("Enterprise Annual", "enum"),
        ("x" * 41, "text"),  # more than enum_max_chars
        ("x" * 40, "enum"),
        (42, "number"),
        (3.5, "number"),
        ("42", "number"),
        (" -1.5e3 ", "number"),
        (".5", "number"),
        ("nan", "enum"),
        ("inf", "enum"),
        ("1_000", "enum"),
        ("v2", "enum"),
        (True, "enum"),
        (False, "enum"),
        (None, "ignore"),
        ("", "enum"),
    ],
)
def test_classify_value(value, expected):
    assert classify_value(value, DEFAULTS) == expected


def test_is_numeric_does_not_take_booleans():
    assert not is_numeric(True)
    assert is_numeric(0)
    assert is_numeric("0")


def test_classify_value_follows_enum_max_chars():
    assert classify_value("enterprise", DimensionSettings(enum_max_chars=5)) == "text"


# --- keys -------------------------------------------------------------------------------


def test_a_key_never_seen_is_ignored_and_nulls_are_not_observed():
    key = feed(tracker(), [None, None])
    assert key.type == "ignore"
    assert key.seen == 0
    assert not key.decided


def test_prompts_are_text_from_the_first_one_and_stay_text():
    key = feed(tracker("prompt"), PROMPTS[:1])
    assert (key.type, key.decided) == ("text", False)
    feed(key, PROMPTS[1:])
    assert (key.type, key.decided) == ("text", True)


def test_short_prompts_are_provisionally_enum_then_text_once_decided():
    # Chat openers are short, but they do not repeat like a segment's values do.
    openers = [f"hello {i}" for i in range(19)]
    key = feed(tracker("opener"), openers)
    assert (key.type, key.decided) == ("enum", False)
    key.observe("hello again")
    assert (key.type, key.decided) == ("text", True)


def test_platform_is_an_enum():
    key = feed(tracker("platform"), PLATFORMS)
    assert (key.type, key.decided) == ("enum", False)
    feed(key, cycle(PLATFORMS, 100))
    assert (key.type, key.decided) == ("enum", True)


def test_plan_names_are_an_enum_even_with_a_long_one():
    # "Enterprise Plus Annual" has 3 words: provisionally text ...
    plans = [*PLANS, "Enterprise Plus Annual"]
    key = feed(tracker("plan"), plans)
    assert (key.type, key.decided) == ("text", False)
    # ... but once decided the values repeat, are few and short: a segment.
    feed(key, cycle(plans, 30))
    assert (key.type, key.decided) == ("enum", True)


def test_numeric_strings_and_numbers_are_numbers():
    key = feed(tracker("latency_ms"), ["120", 95, "87.5", 230, "1e3"])
    assert key.type == "number"
    feed(key, cycle(["120", 95, 3.25], 40))
    assert (key.type, key.decided) == ("number", True)


def test_a_number_key_that_gets_words_follows_the_string_rule():
    key = feed(tracker("version"), cycle(["1", "2", 3], 30))
    assert key.type == "number"
    key.observe("2.1-beta")
    assert key.type == "enum"  # 4 distinct short values over 31


def test_booleans_are_an_enum():
    key = feed(tracker("is_trial"), cycle([True, False, True], 50))
    assert (key.type, key.decided) == ("enum", True)


def test_booleans_count_as_true_and_false_among_strings():
    key = feed(tracker("flag"), cycle([True, "true", False, "false", "unknown"], 40))
    assert key.type == "enum"
    assert key.distinct == 3


def test_an_enum_whose_values_stop_repeating_becomes_text_for_good():
    key = feed(tracker("ref"), cycle(["mobile", "web", "desktop"], 20))
    assert (key.type, key.decided) == ("enum", True)
    # Unique short values: 3 + k distinct over 20 + k seen passes 0.5 at k = 15.
    for i in range(14):
        key.observe(f"ref-{i}")
    assert key.type == "enum"
    key.observe("ref-14")
    assert key.type == "text"
    # Repeats would bring the ratio back down, but a text key stays text.
    feed(key, cycle(["mobile", "web"], 500))
    assert key.type == "text"


def test_more_distinct_values_than_enum_max_distinct_is_text():
    settings = DimensionSettings(enum_max_distinct=5, enum_max_distinct_ratio=1.0)
    key = feed(tracker("country", settings), cycle(["de", "fr", "it", "es", "pt"], 20))
    assert key.type == "enum"
    key.observe("nl")
    assert key.type == "text"


def test_one_long_value_makes_a_decided_key_text():
    key = feed(tracker("status"), cycle(["ok", "error"], 30))
    assert key.type == "enum"
    key.observe("error: the upstream model timed out after 30 seconds")
    assert key.type == "text"


def test_min_observations_decides_when_a_key_is_decided():
    settings = DimensionSettings(min_observations=3)
    key = feed(tracker("reply", settings), ["ok", "no", "fine"])
    assert (key.type, key.decided) == ("text", True)  # 3 distinct of 3: 1.0 > 0.5


# --- overrides --------------------------------------------------------------------------


def test_an_override_by_key_wins_over_the_values():
    settings = DimensionSettings(overrides={"sku": "enum", "latency": "ignore"})
    sku = feed(tracker("sku", settings), [f"sku-{i}" for i in range(100)])
    assert (sku.type, sku.decided) == ("enum", True)
    latency = feed(tracker("latency", settings), [1, 2, 3])
    assert latency.type == "ignore"


def test_an_override_applies_before_any_value():
    settings = DimensionSettings(overrides={"prompt": "text"})
    key = tracker("prompt", settings)
    assert (key.type, key.decided) == ("text", True)


def test_a_project_override_beats_a_key_override():
    settings = DimensionSettings(overrides={"shop:plan": "text", "plan": "ignore"})
    assert feed(tracker("plan", settings, project="shop"), PLANS).type == "text"
    assert feed(tracker("plan", settings, project="blog"), PLANS).type == "ignore"


# --- persistence ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "values"),
    [
        ("prompt", PROMPTS),
        ("platform", cycle(PLATFORMS, 40)),
        ("plan", PLANS),
        ("latency_ms", ["120", 95, "87.5"]),
        ("ref", [*cycle(["a", "b"], 20), *(f"r{i}" for i in range(30))]),
    ],
)
def test_to_dict_from_dict_round_trip(key, values):
    original = feed(tracker(key), values)
    data = json.loads(json.dumps(original.to_dict()))
    restored = FieldTypeTracker.from_dict(data, DEFAULTS)
    assert restored.to_dict() == original.to_dict()
    assert (restored.type, restored.decided) == (original.type, original.decided)
    # And it goes on the same way.
    more = ["web", "A new long question about my account?", 7]
    assert feed(restored, more).to_dict() == feed(original, more).to_dict()


def test_the_saved_state_is_bounded():
    settings = DimensionSettings(enum_max_distinct=10)
    key = feed(tracker("user", settings, project="p"), [f"user-{i}" for i in range(19)])
    assert not key.decided
    assert len(key.to_dict()["distinct"]) == 11  # enum_max_distinct + 1
    key = feed(tracker("prompt", settings), ["a fairly long prompt " * 20] * 5)
    assert key.to_dict()["distinct"] == []  # values over enum_max_chars are not kept


def test_from_dict_applies_todays_settings():
    key = feed(tracker("plan"), cycle(PLANS, 40))
    assert key.type == "enum"
    stricter = DimensionSettings(enum_max_distinct=3)
    restored = FieldTypeTracker.from_dict(key.to_dict(), stricter)
    assert restored.type == "text"
    assert len(restored.to_dict()["distinct"]) <= 4
    overridden = DimensionSettings(overrides={"plan": "ignore"})
    assert FieldTypeTracker.from_dict(key.to_dict(), overridden).type == "ignore"


# --- splitting one event's metadata -----------------------------------------------------


def test_split_metadata():
    metadata = {
        "prompt": "How do I reset my password?",
        "answer": "   ",
        "platform": "mobile",
        "is_trial": True,
        "latency_ms": 120,
        "debug": "x",
        "new_key": "first time seen",
        "note": None,
        "summary": 42,
    }
    types = {
        "prompt": "text",
        "answer": "text",
        "platform": "enum",
        "is_trial": "enum",
        "latency_ms": "number",
        "debug": "ignore",
        "note": "text",
        "summary": "text",
    }
    texts, segments, context = split_metadata(metadata, types)
    assert texts == {"prompt": "How do I reset my password?"}
    assert segments == {"platform": "mobile", "is_trial": True}
    assert context == {"latency_ms": 120, "new_key": "first time seen", "summary": 42}
