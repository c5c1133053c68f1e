"""What a topic name and description must look like, checked after a model answers.

A small model does not reliably follow the rules it is given, so every answer is checked
here: a name is a 2-5 word Title Case noun phrase that does not end on a connective, is
not generic and does not copy a name the prompt showed; a description is one third-person
sentence under ``MAX_DESCRIPTION_CHARS``. A broken rule comes back as a short reason, which
the labeller sends to the model once as a correction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MIN_NAME_WORDS = 2
MAX_NAME_WORDS = 5
MAX_DESCRIPTION_CHARS = 160
# Longer than this before cutting: a sentence or a list, not a name.
_MAX_RAW_NAME_WORDS = 8

# Straight, curly and angle quotes; escaped because some look like other characters.
_QUOTES = "\"'`\u201c\u201d\u2018\u2019\u00ab\u00bb\u201e"
_PUNCT = ".,;:!?-\u2013\u2014"  # with en and em dashes
_MARKUP = re.compile(r"[*#_`~|<>\[\]{}\\]|https?:|\n")
_LABEL_PREFIX = re.compile(r"^(?:topic|name|title|label)(?: name)?\s*[:=-]\s*", re.IGNORECASE)
# Words that make a sentence or a chatty reply rather than a noun phrase.
_SENTENCE_WORDS = frozenset(
    {
        "is", "are", "was", "were", "am", "be", "been", "being",
        "i", "i'm", "i'll", "i've", "you", "here", "here's", "let's",
        "sorry", "cannot", "can't", "unable", "sure", "certainly", "okay",
    }
)  # fmt: skip
# Small words: lower case inside a Title Case name, never its last word (a dangling
# "and"/"of" is what a cut leaves behind).
MINOR_WORDS = frozenset(
    {
        "a", "an", "the", "and", "or", "nor", "but", "of", "for", "to", "from",
        "in", "on", "at", "by", "with", "vs", "via", "per", "as", "about", "into",
    }
)  # fmt: skip
# Where a long name may be cut: before one of these, the words so far are a whole phrase.
_CONNECTIVES = MINOR_WORDS - {"a", "an", "the"}
# A name made only of these says nothing about its topic ("General Customer Questions").
_GENERIC = frozenset(
    {
        "unknown", "none", "n/a", "null", "untitled", "topic", "topics", "name", "label",
        "misc", "miscellaneous", "other", "others", "general", "various", "issue", "issues",
        "problem", "problems", "question", "questions", "request", "requests", "inquiry",
        "inquiries", "query", "queries", "help", "support", "customer", "customers", "user",
        "users", "message", "messages", "account", "service", "services", "concern",
        "concerns", "information", "info", "assistance", "feedback", "and", "of", "for",
    }
)  # fmt: skip
_FIRST_OR_SECOND_PERSON = re.compile(
    r"\b(?:i|i'm|i've|i'll|me|my|mine|we|we're|our|us|you|your|you're)\b", re.IGNORECASE
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'\u201c])")


def name_key(name: str) -> str:
    """Names equal up to case, spacing and punctuation ("card-arrival" is "Card Arrival")."""
    return " ".join(re.findall(r"[a-z0-9]+", name.lower()))


def clean_name(raw: object, forbidden: Iterable[str] = ()) -> tuple[str | None, str]:
    """The name in Title Case and "", or None and why it is no name.

    A name over ``MAX_NAME_WORDS`` words is cut before a connective ("Rate Limits and
    Quotas for Enterprise" -> "Rate Limits and Quotas"), never mid-phrase; one that cannot
    be cut so is refused. ``forbidden``: names the model was shown and must not return.
    """
    if not isinstance(raw, str) or not raw.strip():
        return None, "the name is empty"
    if _MARKUP.search(raw.strip()):
        return None, f"{raw.strip()[:60]!r} has markup in it; give plain words"
    name = _LABEL_PREFIX.sub("", raw.strip())
    name = name.strip(_QUOTES + _PUNCT + " \t")
    words = name.split()
    if not any(c.isalpha() for c in name):
        return None, f"{raw.strip()[:60]!r} has no words"
    if len(words) > _MAX_RAW_NAME_WORDS:
        return None, f"{name[:60]!r} is a sentence; give a 2-5 word name"
    lowered = [w.lower().strip(_QUOTES + _PUNCT) for w in words]
    if _SENTENCE_WORDS.intersection(lowered):
        return None, f"{name!r} is a sentence; give a 2-5 word noun phrase"
    if "?" in raw:
        return None, f"{name!r} is a question; give a noun phrase"
    words = _cut(words)
    if words is None:
        return None, f"{name!r} has over {MAX_NAME_WORDS} words"
    while words and words[-1].lower().strip(_PUNCT) in MINOR_WORDS:
        words.pop()  # a dangling "and", "of", "for"
    if len(words) < MIN_NAME_WORDS:
        return None, f"{name!r} is one word; use {MIN_NAME_WORDS}-{MAX_NAME_WORDS} words"
    name = " ".join(_title_case(words)).strip(_QUOTES + _PUNCT)
    if all(w.lower().strip(_PUNCT) in _GENERIC for w in words):
        return None, f"{name!r} is too generic; use the specific words of the messages"
    shown = {name_key(f) for f in forbidden}
    if name_key(name) in shown:
        return None, f"{name!r} is the name of another topic; name what sets this one apart"
    return name, ""


def _cut(words: list[str]) -> list[str] | None:
    if len(words) <= MAX_NAME_WORDS:
        return list(words)
    # The last connective that still leaves a whole phrase of at least two words before it.
    for i in range(MAX_NAME_WORDS, MIN_NAME_WORDS - 1, -1):
        if words[i].lower() in _CONNECTIVES:
            return list(words[:i])
    return None


def _title_case(words: list[str]) -> list[str]:
    shouting = len(words) > 1 and all(w.upper() == w for w in words)
    out = []
    for i, word in enumerate(words):
        if shouting:
            word = word.lower()
        if i > 0 and word.lower() in MINOR_WORDS:
            out.append(word.lower())
        elif word.islower():
            # Only all-lowercase words change: "API", "iPhone", "GPT-4o" keep their casing.
            out.append(word[0].upper() + word[1:])
        else:
            out.append(word)
    return out


def clean_description(raw: object) -> tuple[str | None, str]:
    """One third-person sentence under ``MAX_DESCRIPTION_CHARS`` and "", or None and why.

    Of several sentences the first is kept (when it follows the rules on its own).
    """
    if not isinstance(raw, str):
        return None, "the description is missing"
    text = " ".join(raw.split()).strip(_QUOTES + " ")
    if not text:
        return None, "the description is empty"
    text = _SENTENCE_END.split(text, maxsplit=1)[0].strip()
    if text.endswith("?") or _FIRST_OR_SECOND_PERSON.search(text):
        return None, (
            "the description is written as a user's message; write one sentence about "
            "the users in the third person"
        )
    if len(text) > MAX_DESCRIPTION_CHARS:
        return None, f"the description has {len(text)} characters; keep it under 160"
    if _MARKUP.search(text):
        return None, "the description has markup in it"
    if not text.endswith((".", "!")):
        text += "."
    return text[0].upper() + text[1:], ""
