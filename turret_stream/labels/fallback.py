"""Offline topic labels: class-based TF-IDF over a dimension's topics, made into a phrase.

This labeller needs no model and no network, so every topic has a name at once; an LLM
label may replace it later. It follows BERTopic's c-TF-IDF: all texts of a topic form one
class document, scored against the other topics of the same dimension, so that a topic is
named by what sets it apart rather than by what every topic says.

Differences from BERTopic, each for a reason:
- A term counts once per text (``binary``): the term frequency of a class is the share of
  its texts that contain the term, so one text repeating a word does not dominate.
- Plurals are folded ("cards" -> "card", and British "-ise" -> "-ize") on the
  vectorizer's output, so a topic's weight is not split between two forms of one word;
  names show the form the topic's texts use most.
- "not" and "up" stay in the token stream, inside phrases only ("card not working", "top
  up"): without them a name can say the opposite of its texts, or lose its verb.
- The name is a phrase, not a list of top words: the best-scoring bigram/trigram that
  covers the top words, then the next strong words, in the order the texts use them.
- Topics that still get the same name (an over-split theme) get a word that tells them
  apart.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

__all__ = ["TopicLabel", "label_topics"]


@dataclass(frozen=True)
class TopicLabel:
    """A topic's readable name, a one-sentence description and the terms behind them."""

    name: str
    description: str
    terms: tuple[str, ...]


# -- terms --------------------------------------------------------------------------------

_NEGATION = [
    (re.compile(r"\b(?:can['\u2019]?t|cannot)\b"), "can not"),
    (re.compile(r"\bwon['\u2019]t\b"), "will not"),
    (
        re.compile(
            r"\b(do|does|did|is|was|are|were|has|have|had|could|should|would)n['\u2019]?t\b"
        ),
        r"\1 not",
    ),
]


def _expand_negation(text: str) -> str:
    """Lower case, with "n't" spelled "not" so that negation is one token everywhere."""
    text = text.lower()
    for pattern, replacement in _NEGATION:
        text = pattern.sub(replacement, text)
    return text


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# scikit-learn's list holds nouns that are content in product texts ("top up", "wrong
# amount", "bill"), as its docs warn, and lacks a few auxiliaries.
_CONTENT_WORDS = _words(
    "top amount bill interest name system fire call detail back full empty front side part bottom"
)
_MORE_STOP_WORDS = _words("did does doing just ok okay hi hey")
# What is left of a contraction once the tokenizer drops the apostrophe ("I've", "didn't").
_CONTRACTION_PARTS = _words("ve ll re im ca wo don doesn didn isn wasn aren weren")
STOP_WORDS = frozenset(
    w
    for w in (ENGLISH_STOP_WORDS - _CONTENT_WORDS) | _MORE_STOP_WORDS | _CONTRACTION_PARTS
    # "cant", "hasnt": the preprocessor already turns them into "can not", "has not".
    if _expand_negation(w) == w
)
# "not" directly before a stop word negates no content word ("did not give me my card"):
# dropped, it cannot join the words around it into a false phrase ("atm not card").
_STOP_PATTERN = "|".join(sorted(STOP_WORDS - {"not", "up"}, key=lambda w: (-len(w), w)))
_LOOSE_NOT = re.compile(rf"\bnot\s+(?=(?:{_STOP_PATTERN})\b)")


def _normalize(text: str) -> str:
    return _LOOSE_NOT.sub("", _expand_negation(text))


# Stop words that change a phrase's meaning: kept inside phrases ("card not working",
# "top up card"), never a term of their own nor at a phrase's start; "up" may end one.
_INSIDE = frozenset({"not", "up"})
_MAY_END = frozenset({"up"})
# Letters only: numbers and amounts ("24", "100") make poor names.
_TOKEN_PATTERN = r"(?u)\b[^\W\d_]{2,}\b"
_tokens = re.compile(_TOKEN_PATTERN).findall


@lru_cache(maxsize=65536)
def singular(word: str) -> str:
    """``word`` without a plural ending ("cards" -> "card", "fees" -> "fee")."""
    if word == "ups":  # "top ups": the particle of a phrasal verb, plural as a noun
        return "up"
    if len(word) <= 3 or word.endswith(("ss", "us", "is", "ous")):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes", "zzes")):
        return word[:-2]
    if word.endswith("s"):
        return word[:-1]
    return word


@lru_cache(maxsize=65536)
def _fold_word(word: str) -> str:
    # British -ise spellings join the -ize ones ("recognised" -> "recognized"); the name
    # shows whichever form the topic's texts use most.
    word = singular(word)
    if len(word) >= 6:
        word = _BRITISH.sub(r"iz\1", word)
    return word


_BRITISH = re.compile(r"is(e|ed|es|ing|ation)$")


@lru_cache(maxsize=262144)
def _fold(gram: str) -> str:
    return " ".join(_fold_word(w) for w in gram.split(" "))


_SUFFIXES = ("ation", "ing", "ed", "es", "al", "e", "s")
_PREFIXES = ("un", "re")


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 2:
            return word[: -len(suffix)]
    return word


def same_word(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` look like forms of one word ("support"/"supported").

    Crude on purpose (no stemmer dependency): equal after one suffix is cut, or sharing a
    prefix that leaves at most two letters of the shorter word ("transfer"/"transferred"),
    also after an "un"/"re" prefix ("unblock"/"blocked").
    """
    a, b = _stem(a), _stem(b)
    if a == b:
        return True
    # One root with a negating or repeating prefix reads as a repeat too ("Unblock PIN
    # Blocked", "Reactivate Activate").
    for x, y in ((a, b), (b, a)):
        if x.startswith(_PREFIXES) and len(x) >= 7 and same_word(x[2:], y):
            return True
    common = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        common += 1
    shorter = min(len(a), len(b))
    return (common == shorter and shorter >= 3) or common >= max(4, shorter - 2)


def _as_is(text: str) -> str:
    return text


def _make_analyzer() -> Callable[[str], list[str]]:
    """A text's folded 1-3-grams, stop words out but "not" and "up" in.

    Keeping them in the token stream means no phrase bridges a negation: "card has not
    arrived" gives "card not arrived", never "card arrived". They never start a phrase and
    "not" never ends one, so neither is a term of its own.
    """
    ngrams = CountVectorizer(
        preprocessor=_as_is,  # _normalize runs first, once per text
        token_pattern=_TOKEN_PATTERN,
        stop_words=sorted(STOP_WORDS - _INSIDE),
        ngram_range=(1, 3),
    ).build_analyzer()

    def analyze(text: str) -> list[str]:
        grams = []
        for gram in map(_fold, ngrams(_normalize(text))):
            words = gram.split(" ")  # folded first: "ups" is "up"
            if words[0] not in _INSIDE and (words[-1] not in _INSIDE or words[-1] in _MAY_END):
                grams.append(gram)
        return grams

    return analyze


_analyze = _make_analyzer()


@dataclass
class _Scores:
    """c-TF-IDF of every (topic, term), and which texts hold which term."""

    scores: sp.csr_matrix  # topics x terms
    shares: sp.csr_matrix  # topics x terms: share of the topic's texts holding the term
    docs: sp.csr_matrix  # texts x terms, binary
    offsets: np.ndarray  # texts of topic i are rows offsets[i]:offsets[i + 1] of docs
    vocabulary: np.ndarray

    def ranked(self, topic: int) -> list[tuple[str, float]]:
        """The topic's terms, best first; equal scores in vocabulary order (deterministic)."""
        start, end = self.scores.indptr[topic], self.scores.indptr[topic + 1]
        idx, val = self.scores.indices[start:end], self.scores.data[start:end]
        return [(str(self.vocabulary[idx[i]]), float(val[i])) for i in np.lexsort((idx, -val))]

    def most_typical(self, topic: int) -> int:
        """Index (within the topic) of the text whose terms best match the topic's (cosine)."""
        rows = self.docs[self.offsets[topic] : self.offsets[topic + 1]]
        match = np.asarray(rows @ self.scores[topic].T.toarray()).ravel()
        lengths = np.sqrt(np.maximum(np.diff(rows.indptr), 1))
        return int(np.argmax(match / lengths))


def _class_tfidf(texts: list[list[str]]) -> _Scores:
    """c-TF-IDF: share of a topic's texts holding the term x idf.

    idf is BERTopic's ``log(1 + A / f_t)``: A the average number of terms in a class,
    f_t the term's count over all classes (both counting a term once per text).
    """
    flat = [text for members in texts for text in members]
    sizes = np.array([len(m) for m in texts], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    vectorizer = CountVectorizer(analyzer=_analyze, binary=True, dtype=np.float64)
    try:
        docs = vectorizer.fit_transform(flat).tocsr()
    except ValueError:  # not one term in any text
        empty = sp.csr_matrix((len(flat), 0))
        none = sp.csr_matrix((len(texts), 0))
        return _Scores(none, none, empty, offsets, np.array([]))
    rows = np.repeat(np.arange(len(texts)), sizes)
    membership = sp.csr_matrix(
        (np.ones(len(flat)), (rows, np.arange(len(flat)))), shape=(len(texts), len(flat))
    )
    counts = (membership @ docs).tocsr()
    total = np.asarray(counts.sum(axis=0)).ravel()
    average = counts.sum() / max(1, len(texts))
    idf = np.log1p(average / np.maximum(total, 1))
    shares = (sp.diags(1.0 / np.maximum(sizes, 1)) @ counts).tocsr()
    scores = (shares @ sp.diags(idf)).tocsr()
    return _Scores(scores, shares, docs, offsets, vectorizer.get_feature_names_out())


# -- names --------------------------------------------------------------------------------

_CANDIDATES = 40  # top terms of a topic considered for its name
SEED_MIN = 0.3  # a phrase may seed the name if it scores this share of the best phrase
EXTEND_MIN = 0.5  # a further word joins if it scores this share of the topic's top word
COMPLETE_MIN = 0.7  # "disposable virtual" -> "disposable virtual card" at this share
EXPAND_MIN = 0.5  # "top" becomes "top up" if "top up" scores this share of "top"


def label_topics(
    topics: Mapping[str, Sequence[str]],
    *,
    representatives: Mapping[str, Sequence[str]] | None = None,
    max_words: int = 4,
) -> dict[str, TopicLabel]:
    """A label for every topic of one dimension, from the texts of all of them.

    ``topics`` maps a topic id to its texts (all of them, or a sample); the other topics
    are what a topic is told apart from, so pass the whole dimension at once.
    ``representatives`` optionally gives a topic's most typical texts, best first (e.g. the
    events nearest its centre): the first is quoted in the description, else the member
    that best matches the topic's terms is. ``max_words`` (2-5) caps the name's length.
    Deterministic: the same input gives the same labels.
    """
    max_words = min(5, max(2, max_words))
    ids = list(topics)
    # An event may carry no text (None): it counts as an empty one.
    texts = [[t if isinstance(t, str) else "" for t in topics[i]] for i in ids]
    scores = _class_tfidf(texts)
    labels: dict[str, TopicLabel] = {}
    examples: dict[str, str] = {}
    for row, topic in enumerate(ids):
        members = texts[row]
        ranked = scores.ranked(row)
        if not ranked:
            labels[topic] = _wordless_label(members)
            continue
        given = [r for r in (representatives or {}).get(topic) or () if r and r.strip()]
        examples[topic] = given[0] if given else members[scores.most_typical(row)]
        labels[topic] = _label(members, ranked, examples[topic], max_words)
    _tell_apart(labels, ids, texts, scores, examples, max_words)
    return labels


def _name_key(name: str) -> tuple[str, ...]:
    """Names equal up to word forms and order ("Exchange Rates", "Rate Exchange")."""
    return tuple(sorted(_stem(_fold_word(w.lower())) for w in name.split()))


def _tell_apart(
    labels: dict[str, TopicLabel],
    ids: list[str],
    texts: list[list[str]],
    scores: _Scores,
    examples: Mapping[str, str],
    max_words: int,
) -> None:
    """Give topics that got the same name a word that sets them apart.

    Over-split topics (two halves of one theme) come out with the same name. All but the
    largest get the word whose share of their texts most exceeds its share in any
    namesake's texts (of the few best, the first that makes the name unique).
    """
    row = {topic: i for i, topic in enumerate(ids)}
    named = Counter(_name_key(label.name) for label in labels.values())
    namesakes: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for topic in ids:
        if topic in examples:  # not a wordless topic
            namesakes[_name_key(labels[topic].name)].append(topic)
    for group in namesakes.values():
        if len(group) < 2:
            continue
        # Smallest first: once the others have moved on, the largest keeps the plain name.
        group.sort(key=lambda t: (len(texts[row[t]]), row[t]))
        local = _class_tfidf([texts[row[t]] for t in group])
        shares = local.shares.toarray()
        for k, topic in enumerate(group):
            if named[_name_key(labels[topic].name)] < 2:
                continue
            taken = [_fold_word(w.lower()) for w in labels[topic].name.split()]
            contrast = shares[k] - np.delete(shares, k, axis=0).max(axis=0)
            candidates = [
                str(local.vocabulary[j])
                for j in np.argsort(-contrast, kind="stable")[:50]
                if contrast[j] > 0 and " " not in local.vocabulary[j]
            ]
            candidates = [w for w in candidates if not any(same_word(w, t) for t in taken)]
            for word in candidates[:5]:
                members, ranked = texts[row[topic]], scores.ranked(row[topic])
                label = _label(members, ranked, examples[topic], max_words, word)
                if named[_name_key(label.name)] == 0:
                    named[_name_key(labels[topic].name)] -= 1
                    named[_name_key(label.name)] += 1
                    labels[topic] = label
                    break


def _label(
    members: Sequence[str],
    ranked: list[tuple[str, float]],
    example: str,
    max_words: int,
    distinct: str | None = None,
) -> TopicLabel:
    """The label of one topic; ``distinct``: a word its name must hold (see _tell_apart)."""
    texts = _Texts(members)
    score = dict(ranked)
    seed, extras = _choose(ranked, max_words)
    if distinct is not None:
        # First among the extra words, so the last to go; the seed phrase gives up its
        # last word if it leaves no room.
        while len(seed) >= max_words or seed[-1] == "not":
            seed = seed[:-1]
        extras = [distinct, *(w for w in extras if not same_word(w, distinct))]
        extras = extras[: max_words - len(seed)]
    # A phrase with "not"/"up" put in must be strong enough to seed a name itself.
    floor = SEED_MIN * max((s for t, s in ranked if " " in t), default=0.0)
    # "Not"/"Up" count as words: drop the weakest extra words to make room for them, but
    # not the word that tells namesakes apart.
    least = 1 if distinct is not None and extras else 0
    for keep in range(len(extras), least - 1, -1):
        seq = texts.arrange(_content(seed) + extras[:keep])
        room = max_words - len(seed) - keep if keep == least else max_words
        words = texts.render(seq, seed, score, floor, room)
        if len(words) <= max_words:
            break
    name = " ".join(words)
    if len(words) == 1:
        # One content word in the whole topic (e.g. every text is "thanks"): still 2 words.
        name += " Messages"
    terms = _terms(ranked, texts)
    return TopicLabel(name, _describe(members, terms, example), terms)


def _content(words: Sequence[str]) -> list[str]:
    return [w for w in words if w not in _INSIDE]


def _choose(ranked: list[tuple[str, float]], max_words: int) -> tuple[list[str], list[str]]:
    """The name's words: a seed phrase, then the next strong single words."""
    unigrams = [(t, s) for t, s in ranked if " " not in t]
    unigram = dict(unigrams)
    top_word = unigrams[0][1]
    head = sum(s for _, s in unigrams[:2])
    phrases = [
        (words, s)
        for words, s in ((tuple(t.split(" ")), s) for t, s in ranked[:_CANDIDATES])
        if len(words) > 1 and len(words) <= max_words and _distinct(_content(words))
    ]
    seed: tuple[str, ...] = (unigrams[0][0],)
    if phrases:
        best = max(s for _, s in phrases)

        def value(phrase: tuple[tuple[str, ...], float]) -> float:
            # As strong as a phrase, and covering the topic's top words.
            words, s = phrase
            cover = sum(unigram.get(w, 0.0) for w in _content(words)) / head
            return s / best + min(1.0, cover)

        usable = [p for p in phrases if p[1] >= SEED_MIN * best]
        seed, seed_score = max(usable, key=value)
        # Complete a phrase its texts nearly always continue ("disposable virtual" ->
        # "disposable virtual card"): a cut phrase often ends on an adjective.
        longer = [
            (s, p)
            for p, s in usable
            if len(p) == len(seed) + 1 and seed in (p[:-1], p[1:]) and p[0] not in _INSIDE
        ]
        if longer and max(longer)[0] >= COMPLETE_MIN * seed_score:
            seed = max(longer)[1]
    extras: list[str] = []
    for word, s in unigrams:
        if len(seed) + len(extras) >= max_words or s < EXTEND_MIN * top_word:
            break
        if not any(same_word(word, c) for c in (*_content(seed), *extras)):
            extras.append(word)
    return list(seed), extras


def _distinct(words: Sequence[str]) -> bool:
    return not any(same_word(a, b) for i, a in enumerate(words) for b in words[i + 1 :])


def _inside_variant(
    words: Sequence[str], score: Mapping[str, float], floor: float
) -> tuple[str, str, bool] | None:
    """Where "not" or "up" goes in ``words`` (one name word, or two neighbours), if at all.

    Returns the word, the name word it sticks to and whether it goes after that word: for
    a pair, between the two ("card not working", "top up card"); for one word, after it
    ("top up"). Only if that phrase is common among the texts with the plain one (at least
    ``EXPAND_MIN`` of its score) and, for a pair, a phrase of weight itself (``floor``).
    """
    plain = " ".join(words)
    if len(words) == 1:
        options = [(f"{plain} up", "up", words[0], True)]
    else:
        a, b = words
        options = [(f"{a} not {b}", "not", b, False), (f"{a} up {b}", "up", a, True)]
    best, word, anchor, after = max((score.get(o[0], 0.0), *o[1:]) for o in options)
    needed = max(floor if len(words) > 1 else 0.0, EXPAND_MIN * score.get(plain, 0.0))
    return (word, anchor, after) if best > 0 and best >= needed else None


class _Texts:
    """What naming needs from a topic's texts: word order, surface forms and casing."""

    def __init__(self, members: Sequence[str]) -> None:
        # Folded words of each text, for word order: stop words stay (they count towards
        # positions), so the tokens need no negation handling.
        self.docs: list[list[str]] = []
        self.forms: dict[str, Counter[str]] = defaultdict(Counter)
        for text in members:
            # Capitals in a shouted text say nothing about a word's usual casing.
            shouted = text.isupper()
            doc = []
            for token in _tokens(text):
                word = _fold_word(token.lower())
                doc.append(word)
                self.forms[word][token.lower() if shouted else token] += 1
            self.docs.append(doc)

    def surface(self, word: str, title: bool = True) -> str:
        """The topic's most common form of a folded word ("cards" if most texts say so).

        In Title Case for a name; acronyms ("ATM", "PIN") keep their capitals.
        """
        lower: Counter[str] = Counter()
        upper = 0
        for form, n in self.forms.get(word, Counter()).items():
            lower[form.lower()] += n
            if form.isupper() and len(form) <= 5:
                upper += n
        best = min(lower.items(), key=lambda kv: (-kv[1], kv[0]))[0] if lower else word
        if 2 * upper > sum(lower.values()):
            return best.upper()
        return best.capitalize() if title else best

    def arrange(self, words: list[str]) -> list[str]:
        """``words`` in the order the texts usually give them.

        Of all orders (a name has at most 5 words), the one most texts agree with: a point
        per text with a before b for each pair in that order, and one per text with b
        right after a (stop words aside) for each neighbouring pair, which keeps phrases
        whole. Ties go to the order of the words' mean relative positions in the texts.
        """
        before, adjacent, mean = self._order_counts(words)
        by_mean = sorted(words, key=lambda w: (mean[w], w))

        def key(order: tuple[str, ...]) -> tuple[int, int]:
            agree = sum(before[a, b] for i, a in enumerate(order) for b in order[i + 1 :])
            agree += sum(adjacent[a, b] for a, b in itertools.pairwise(order))
            off = sum(abs(i - by_mean.index(w)) for i, w in enumerate(order))
            return (-agree, off)

        return list(min(itertools.permutations(by_mean), key=key))

    def _order_counts(
        self, words: list[str]
    ) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]], dict[str, float]]:
        """Texts with a before b, texts with b right after a, mean relative positions."""
        wanted = set(words)
        before: Counter[tuple[str, str]] = Counter()
        adjacent: Counter[tuple[str, str]] = Counter()
        positions: dict[str, list[float]] = defaultdict(list)
        for doc in self.docs:
            first: dict[str, int] = {}
            for i, w in enumerate(doc):
                if w in wanted and w not in first:
                    first[w] = i
            if not first:
                continue
            for w, i in first.items():
                positions[w].append(i / max(1, len(doc) - 1))
                for v, j in first.items():
                    if i < j:
                        before[w, v] += 1
            content = [w for w in doc if w not in STOP_WORDS]
            adjacent.update(
                {(a, b) for a, b in itertools.pairwise(content) if a in wanted and b in wanted}
            )
        mean = {w: float(np.mean(positions[w])) if positions[w] else 1.0 for w in words}
        return before, adjacent, mean

    def render(
        self,
        seq: list[str],
        seed: Sequence[str],
        score: Mapping[str, float],
        floor: float,
        room: int,
    ) -> list[str]:
        """``seq`` in the texts' own forms, with "not"/"up" back where the texts have them.

        The seed phrase brings its own; other words get one where the texts nearly always
        have it ("top" -> "top up"), while ``room`` lasts.
        """
        before: dict[str, str] = {}
        after: dict[str, str] = {}
        for i, w in enumerate(seed):
            if w in _MAY_END:
                after[seed[i - 1]] = w
            elif w in _INSIDE:
                before[seed[i + 1]] = w
        for i, w in enumerate(seq):
            # A pair that stays adjacent first ("card not working"), then one word ("top up").
            for span in [seq[i : i + 2], [w]] if i + 1 < len(seq) else [[w]]:
                variant = _inside_variant(span, score, floor) if room > 0 else None
                if variant is None:
                    continue
                word, anchor, is_after = variant
                slot = after if is_after else before
                if anchor not in slot:
                    slot[anchor] = word
                    room -= 1
                    break
        out = []
        for w in seq:
            out += [before[w].capitalize()] if w in before else []
            out.append(self.surface(w))
            out += [after[w].capitalize()] if w in after else []
        return out


def _terms(ranked: list[tuple[str, float]], texts: _Texts, limit: int = 8) -> tuple[str, ...]:
    """The topic's top terms in its own words, one per word form ("card not work" after
    "card not working"), with "up" where the texts nearly always have it ("top" -> "top up").
    """
    score = dict(ranked)
    out: list[str] = []
    seen: set[tuple[str, ...]] = set()
    for term, s in ranked:
        if score.get(f"{term} up", 0.0) >= EXPAND_MIN * s:
            term += " up"
        words = term.split(" ")
        key = tuple(_stem(w) for w in words)
        if key not in seen:
            seen.add(key)
            out.append(" ".join(texts.surface(w, title=False) for w in words))
            if len(out) == limit:
                break
    return tuple(out)


def _describe(members: Sequence[str], terms: tuple[str, ...], example: str) -> str:
    """One honest sentence: what the texts mention, and one of them."""
    asking = sum("?" in t for t in members) >= 0.6 * len(members)
    kind = "Questions" if asking else "Texts"
    # The top terms that add a word; a phrase takes the place of shown terms it contains
    # ("card", "arrived" -> "card not arrived").
    shown: list[str] = []
    for term in terms:
        words = set(term.lower().split(" ")) - _INSIDE
        contained = [t for t in shown if set(t.lower().split(" ")) - _INSIDE < words]
        if not contained and words <= {w for t in shown for w in t.lower().split(" ")}:
            continue
        shown = [t for t in shown if t not in contained]
        shown.append(term)
        if len(shown) == 3:
            break
    shown = [f'"{t}"' for t in shown]
    about = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]
    example = " ".join(example.split())
    if len(example) > 80:
        example = example[:77].rstrip() + "..."
    return f'{kind} mentioning {about}, e.g. "{example}".'


def _wordless_label(members: Sequence[str]) -> TopicLabel:
    """A topic without a content word: name it by its most common words, if any."""
    # Ties in first-seen order: deterministic for the same input.
    words = [w for w, _ in Counter(w.lower() for t in members for w in _tokens(t)).most_common(2)]
    if not words:
        return TopicLabel("Empty Texts", "Texts without words.", ())
    name = " ".join(w.capitalize() for w in words)
    if len(words) == 1:
        name += " Messages"
    example = next(" ".join(t.split()) for t in members if _tokens(t))
    return TopicLabel(name, f'Short texts such as "{example[:80]}".', tuple(words))
