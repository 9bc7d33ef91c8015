"""Long-form dialogue builder: MLDR-style multi-topic conversations from short dialogues.

Each long dialogue joins N topically distinct short dialogues (or a span of each) with consistent
speakers, renumbered utterance and image ids and short template transitions between topics.
Provenance goes into ``Dialogue.metadata``:

- ``provenance``: one entry per utterance, ``{"source_dialogue_id", "source_index"}`` or
  ``{"transition": true}``;
- ``topic_boundaries``: utterance ids where a new topic starts (0 excluded); a transition
  utterance opens the topic it leads into;
- ``topics``: per topic its source dialogue id, utterance span ``[start, end)`` (transition
  excluded), image ids, keywords and categories;
- ``sessions`` (profile ``long``): utterance id and date where each session starts.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

import numpy as np
from pydantic import BaseModel, Field

from ffr_lib.data.model import Dialogue, Image, Utterance
from ffr_lib.mldr.lexicon import categories_of_text
from ffr_lib.mldr.text import content_stems, image_objects, tokens

Embed = Callable[[list[str]], np.ndarray]

SPEAKER_NAMES: list[tuple[str, str]] = [
    ("Alex", "Sam"), ("Maya", "Tom"), ("Lena", "Omar"), ("Chris", "Priya"), ("Jonas", "Emma"),
    ("Nina", "Leo"), ("Sofia", "Ben"), ("Ivan", "Kate"), ("Aisha", "Mark"), ("Lucas", "Mia"),
    ("Hana", "Felix"), ("Ravi", "Julia"), ("Noah", "Clara"), ("Zoe", "Daniel"), ("Yuki", "Paul"),
]  # fmt: skip

# Short, content-free turns that move to a new topic. Content-free on purpose: they must not
# answer any query and must not add topic words.
TRANSITIONS: list[str] = [
    "Anyway, on another note.",
    "By the way, something else.",
    "Oh, that reminds me.",
    "Changing the subject a bit.",
    "Speaking of which, guess what.",
    "Totally different thing, but listen.",
    "Oh wait, before I forget.",
    "Also, I meant to tell you.",
    "On a different note.",
    "Random, but hear this.",
    "So, moving on.",
    "Anyway, enough about that.",
]

SESSION_OPENERS: list[str] = [
    "Hey, it's me again.",
    "Hi! Got a minute?",
    "Hello again.",
    "Hey there, how have you been?",
    "Hi, long time no chat.",
]


class BuildProfile(BaseModel):
    """Shape of the long dialogues a profile produces."""

    name: str
    topics: int = Field(3, ge=1, description="source dialogues per long dialogue")
    turns_per_topic: int | None = Field(
        8, ge=2, description="span taken from each source (None = whole source)"
    )
    turns_jitter: int = Field(2, ge=0, description="random +- on turns_per_topic")
    topics_per_session: int | None = Field(None, ge=1, description="None = one session")
    transitions: bool = True
    max_keyword_overlap: float = Field(
        0.2, ge=0, le=1, description="max Jaccard of keyword sets between topics of one dialogue"
    )
    max_embedding_similarity: float = Field(
        0.6, ge=-1, le=1, description="max cosine between topics (only when an embedder is given)"
    )
    start_date: datetime = datetime(2024, 1, 1, 9, 0)


PROFILES: dict[str, BuildProfile] = {
    # ~25 turns, 3 topics: 3 spans of ~7-8 turns plus 2 transitions (the paper's MLDR shape).
    "mldr": BuildProfile(name="mldr", topics=3, turns_per_topic=8, turns_jitter=2),
    # ~75 turns: 5 whole short dialogues (~14 turns each) plus transitions (WeChat-MDR shape).
    "wechat": BuildProfile(name="wechat", topics=5, turns_per_topic=None),
    # 300+ turns over many dated sessions, 3 topics a session.
    "long": BuildProfile(name="long", topics=24, turns_per_topic=None, topics_per_session=3),
}


class BuilderConfig(BaseModel):
    """How many long dialogues to build and from what."""

    profile: BuildProfile = PROFILES["mldr"]
    seed: int = 0
    n_dialogues: int | None = Field(None, ge=1, description="None = as many as the sources allow")
    max_source_uses: int = Field(1, ge=1, description="how often one short dialogue may be used")
    id_prefix: str = "mldr"
    max_attempts: int = Field(50, ge=1, description="draws per topic slot before giving up")


def get_profile(name: str) -> BuildProfile:
    if name not in PROFILES:
        raise KeyError(f"unknown profile {name!r}; known: {sorted(PROFILES)}")
    return PROFILES[name]


class _Source:
    """A short dialogue prepared for building: keywords, categories, speakers."""

    def __init__(self, dialogue: Dialogue) -> None:
        self.dialogue = dialogue
        text = " ".join(u.text for u in dialogue.utterances)
        captions = " ".join(" ".join(image_objects(i)) for i in dialogue.images)
        self.keywords = content_stems(text + " " + captions)
        self.categories = categories_of_text(text + " " + captions)
        order: list[str] = []
        for speaker in dialogue.speakers + [u.speaker for u in dialogue.utterances]:
            if speaker not in order:
                order.append(speaker)
        self.speakers = order
        self.embedding: np.ndarray | None = None


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


_GREETING = frozenset(
    [
        "hi",
        "hello",
        "hey",
        "hiya",
        "yo",
        "how",
        "are",
        "you",
        "doing",
        "good",
        "fine",
        "great",
        "thanks",
        "thank",
        "ok",
        "okay",
        "well",
        "and",
        "i'm",
        "im",
        "am",
        "what's",
        "up",
        "whats",
        "going",
        "on",
        "sup",
        "morning",
        "evening",
        "doing",
        "today",
        "is",
        "it",
        "been",
        "there",
        "i",
        "about",
        "what",
        "to",
        "meet",
        "nice",
        "you're",
        "your",
        "much",
        "nothing",
    ]  # noqa: SIM905
)


def _is_greeting(text: str) -> bool:
    """An opening pleasantry ("hi", "how are you?"): odd in the middle of a long chat."""
    words = tokens(text)
    return bool(words) and all(w in _GREETING for w in words)


def _pick_span(dialogue: Dialogue, length: int | None, rng: random.Random) -> tuple[int, int]:
    """A contiguous span of ``length`` turns that keeps the dialogue's first image with some talk
    before and after it, and skips opening pleasantries."""
    n = len(dialogue.utterances)
    first = 0
    while first < n - 2 and _is_greeting(dialogue.utterances[first].text):
        first += 1
    if length is None or length >= n - first:
        return first, n
    owners = sorted({i.utterance_index for i in dialogue.images})
    if owners:
        anchor = owners[0]
        before = rng.randint(length // 3, (2 * length) // 3)
        start = anchor - before
    else:
        start = rng.randint(first, n - length)
    start = max(first, min(start, n - length))
    return start, start + length


def _stable_id(prefix: str, seed: int, source_ids: list[str]) -> str:
    digest = hashlib.sha1(("|".join(source_ids) + f"#{seed}").encode()).hexdigest()[:12]
    return f"{prefix}-{digest}"


def combine(
    sources: list[Dialogue],
    profile: BuildProfile,
    rng: random.Random,
    dialogue_id: str,
    speakers: tuple[str, str] | None = None,
) -> Dialogue:
    """Join ``sources`` (in order, one topic each) into one long dialogue with provenance."""
    speakers = speakers or rng.choice(SPEAKER_NAMES)
    utterances: list[Utterance] = []
    images: list[Image] = []
    provenance: list[dict] = []
    boundaries: list[int] = []
    topics: list[dict] = []
    sessions: list[dict] = []
    clock = profile.start_date + timedelta(days=rng.randint(0, 365), minutes=rng.randint(0, 600))
    timed = profile.topics_per_session is not None

    def add(text: str, speaker: str, prov: dict) -> int:
        nonlocal clock
        clock += timedelta(seconds=rng.randint(8, 120))
        utterances.append(
            Utterance(
                index=len(utterances),
                speaker=speaker,
                text=text,
                timestamp=clock if timed else None,
            )
        )
        provenance.append(prov)
        return len(utterances) - 1

    for t, source in enumerate(sources):
        prepared = _Source(source)
        if len(prepared.speakers) > 2:
            raise ValueError(f"source {source.id} has {len(prepared.speakers)} speakers (max 2)")
        # Consistent speakers: the source's first speaker becomes a random one of the two
        # long-dialogue speakers, its second speaker the other, so both sides share photos.
        flip = rng.random() < 0.5
        mapping = {s: speakers[(k + flip) % 2] for k, s in enumerate(prepared.speakers)}
        new_session = timed and t % profile.topics_per_session == 0  # type: ignore[operator]
        if t > 0:
            boundaries.append(len(utterances))
        if new_session:
            if t > 0:
                clock += timedelta(days=rng.randint(1, 6), hours=rng.randint(0, 10))
            sessions.append({"start": len(utterances), "date": clock.isoformat()})
            if t > 0 and profile.transitions:
                add(rng.choice(SESSION_OPENERS), rng.choice(speakers), {"transition": True})
        elif t > 0 and profile.transitions:
            add(rng.choice(TRANSITIONS), rng.choice(speakers), {"transition": True})

        span_len = profile.turns_per_topic
        if span_len is not None and profile.turns_jitter:
            span_len = max(2, span_len + rng.randint(-profile.turns_jitter, profile.turns_jitter))
        start, end = _pick_span(source, span_len, rng)
        topic_start = len(utterances)
        topic_images: list[int] = []
        for src_index in range(start, end):
            src = source.utterances[src_index]
            new_index = add(
                src.text,
                mapping[src.speaker],
                {"source_dialogue_id": source.id, "source_index": src_index},
            )
            for image in source.images_of(src_index):
                images.append(
                    image.model_copy(update={"index": len(images), "utterance_index": new_index})
                )
                topic_images.append(len(images) - 1)
        span_text = " ".join(u.text for u in source.utterances[start:end])
        span_images = " ".join(" ".join(image_objects(images[i])) for i in topic_images)
        topics.append(
            {
                "source_dialogue_id": source.id,
                "source_span": [start, end],
                "start": topic_start,
                "end": len(utterances),
                "image_ids": topic_images,
                "keywords": sorted(content_stems(span_text + " " + span_images)),
                "categories": sorted(categories_of_text(span_text + " " + span_images)),
            }
        )

    metadata: dict = {
        "builder": "mldr",
        "profile": profile.name,
        "source_dialogue_ids": [s.id for s in sources],
        "provenance": provenance,
        "topic_boundaries": boundaries,
        "topics": topics,
    }
    if timed:
        metadata["sessions"] = sessions
    return Dialogue(
        id=dialogue_id,
        source="mldr-builder",
        speakers=list(speakers),
        utterances=utterances,
        images=images,
        metadata=metadata,
    )


def _distinct(candidate: _Source, chosen: list[_Source], profile: BuildProfile) -> bool:
    for other in chosen:
        if _jaccard(candidate.keywords, other.keywords) > profile.max_keyword_overlap:
            return False
        # Same coarse category set (e.g. both only about meals) makes topics indistinct.
        if candidate.categories and candidate.categories == other.categories:
            return False
        if (
            candidate.embedding is not None
            and other.embedding is not None
            and float(candidate.embedding @ other.embedding) > profile.max_embedding_similarity
        ):
            return False
    return True


def build_long_dialogues(
    sources: Iterable[Dialogue], config: BuilderConfig, embed: Embed | None = None
) -> list[Dialogue]:
    """Build long dialogues from short ones; deterministic for a given config and source order.

    Sources with more than two speakers or fewer than two utterances are skipped. Topics in one
    long dialogue are checked to be distinct by keyword overlap and category sets (and by
    embedding cosine when ``embed`` is given).
    """
    profile = config.profile
    rng = random.Random(config.seed)
    pool = [
        _Source(d)
        for d in sources
        if len(d.utterances) >= 2 and len({u.speaker for u in d.utterances}) <= 2
    ]
    if embed is not None and pool:
        vectors = np.asarray(
            embed([" ".join(u.text for u in s.dialogue.utterances) or "-" for s in pool]),
            dtype=np.float32,
        )
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12
        for source, vector in zip(pool, vectors, strict=True):
            source.embedding = vector
    order = list(range(len(pool)))
    rng.shuffle(order)
    uses = dict.fromkeys(order, 0)
    available = list(order)  # indices still usable, in shuffled order
    built: list[Dialogue] = []
    seen_ids: set[str] = set()
    while available and (config.n_dialogues is None or len(built) < config.n_dialogues):
        chosen: list[int] = [available[0]]
        cursor = 1
        attempts = 0
        while (
            len(chosen) < profile.topics
            and cursor < len(available)
            and attempts < config.max_attempts * profile.topics
        ):
            candidate = available[cursor]
            cursor += 1
            attempts += 1
            if candidate in chosen:
                continue
            if _distinct(pool[candidate], [pool[c] for c in chosen], profile):
                chosen.append(candidate)
        if len(chosen) < profile.topics:
            # The head source found no distinct partners: retire it and go on.
            available.pop(0)
            continue
        for c in chosen:
            uses[c] += 1
        available = [a for a in available if uses[a] < config.max_source_uses]
        if config.max_source_uses > 1:
            rng.shuffle(available)
        source_ids = [pool[c].dialogue.id for c in chosen]
        dialogue_id = _stable_id(config.id_prefix, config.seed, source_ids)
        if dialogue_id in seen_ids:
            continue
        seen_ids.add(dialogue_id)
        built.append(combine([pool[c].dialogue for c in chosen], profile, rng, dialogue_id))
    return built
