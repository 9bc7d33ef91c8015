"""Offline query generator: queries with gold fragments, in several families of different hardness.

Families (``Query.family``):

- ``question``: a question about what one speaker said on a topic, named by its category in other
  words ("What did Maya say about food?" when she wrote "pizza"). Gold: that speaker's 1-3
  utterances in the category, often scattered.
- ``question_photo``: the same plus the photo shared in that part of the chat (multimodal).
- ``topic``: one topic of the conversation described by categories unique to it, in other words
  ("when we talked about pets and the photo of an animal at home"). Gold: the topic's span and
  its images (contiguous).
- ``multi_topic``: two topics at once (two fragments).
- ``image_ref``: a photo through an abstraction of what it shows ("the picture of a vehicle").
- ``extractive`` / ``image_literal``: easy contrast families that copy words from the gold
  utterances or the photo description; a word-overlap baseline solves them.
- ``negative_question`` / ``negative_topic`` / ``negative_image``: the same templates about a
  category that is absent from the dialogue, preferably a near miss from the same domain (cats
  when the chat is about dogs). Verified against the dialogue's words, not only by construction.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from pydantic import BaseModel, Field

from ffr_lib.data.model import Dialogue, Query, QueryType
from ffr_lib.mldr.lexicon import (
    CATEGORIES,
    by_name,
    categories_of_text,
    categories_of_word,
    category_stems,
)
from ffr_lib.mldr.text import content_stems, content_words, dialogue_stems, image_objects, stem

FAMILY_TYPES: dict[str, QueryType] = {
    "question": QueryType.UTTERANCE_ONLY,
    "extractive": QueryType.UTTERANCE_ONLY,
    "question_photo": QueryType.MULTIMODAL,
    "topic": QueryType.MULTIMODAL,  # utterance-only when the topic has no image
    "multi_topic": QueryType.MULTIMODAL,  # utterance-only when the topics have no image
    "image_ref": QueryType.IMAGE_ONLY,
    "image_literal": QueryType.IMAGE_ONLY,
    "negative_question": QueryType.NEGATIVE,
    "negative_topic": QueryType.NEGATIVE,
    "negative_image": QueryType.NEGATIVE,
}

HARD_FAMILIES = ("question", "question_photo", "topic", "multi_topic", "image_ref")
EASY_FAMILIES = ("extractive", "image_literal")

Q_TEMPLATES = [
    "What did {s} say about {p}?",
    "When did {s} bring up {p}?",
    "Find where {s} talks about {p}.",
    "What did {s} tell {o} about {p}?",
    "Which messages from {s} were about {p}?",
    "{s} mentioned something about {p} at some point - where was that?",
]
QP_TEMPLATES = [
    "What did {s} say about {p}, and which photo went with it?",
    "{s}'s comments on {p} and the picture shared around then",
    "When {s} brought up {p} - show me that and the photo",
    "Find what {s} said about {p} together with the image from that part",
]
TOPIC_TEMPLATES = [
    "the part of the chat about {p}",
    "When did we talk about {p}?",
    "Find the conversation where {s} and {o} discussed {p}",
    "the bit about {p}",
    "that time the chat turned to {p}",
]
TOPIC_IMG_TEMPLATES = [
    "the part of the chat about {p} and the photo of {i}",
    "When we talked about {p} - including the picture of {i}",
    "the conversation on {p}, with the photo showing {i}",
    "Find the discussion of {p} and the image of {i} that came with it",
]
MULTI_TEMPLATES = [
    "the parts about {p} and about {q}",
    "Find both conversations: the one on {p} and the one on {q}",
    "everything we said about {p}, and later about {q}",
]
IMAGE_TEMPLATES = [
    "the photo of {i}",
    "Show me the picture of {i} that {s} sent",
    "Which image showed {i}?",
    "that snapshot with {i} in it",
    "find the pic of {i}",
]
EXTRACTIVE_TEMPLATES = [
    "the messages where {w} come up",
    "the part mentioning {w}",
    "find where they talk about {w}",
]
IMAGE_LITERAL_TEMPLATES = [
    "the photo with {w}",
    "the picture showing {w}",
]


class QueryConfig(BaseModel):
    """What the offline generator produces."""

    seed: int = 0
    per_dialogue: int = Field(6, ge=1)
    type_mix: dict[QueryType, float] = Field(
        default_factory=lambda: {
            QueryType.MULTIMODAL: 0.3,
            QueryType.UTTERANCE_ONLY: 0.3,
            QueryType.IMAGE_ONLY: 0.2,
            QueryType.NEGATIVE: 0.2,
        }
    )
    family_weights: dict[str, float] = Field(
        default_factory=lambda: {
            "question": 0.7,
            "extractive": 0.2,
            "topic": 0.5,
            "question_photo": 0.3,
            "multi_topic": 0.2,
            "image_ref": 0.8,
            "image_literal": 0.2,
            "negative_question": 0.4,
            "negative_topic": 0.3,
            "negative_image": 0.3,
        },
        description="relative weight of each family inside its query type; 0 turns it off",
    )
    max_question_gold: int = Field(3, ge=1)


class _Candidate(BaseModel):
    family: str
    type: QueryType
    text: str
    utterance_ids: list[int]
    image_ids: list[int]
    metadata: dict = Field(default_factory=dict)


def _runs(ids: Sequence[int]) -> int:
    """Number of contiguous runs in a sorted id list (1 = contiguous gold)."""
    ids = sorted(ids)
    return sum(1 for k, i in enumerate(ids) if k == 0 or i != ids[k - 1] + 1)


class _View:
    """Per-dialogue facts the families need."""

    def __init__(self, dialogue: Dialogue) -> None:
        self.d = dialogue
        prov = dialogue.metadata.get("provenance") or []
        self.transition = {
            i for i, p in enumerate(prov) if isinstance(p, dict) and p.get("transition")
        }
        self.utt_cats: list[dict[str, list[str]]] = []
        for u in dialogue.utterances:
            cats: dict[str, list[str]] = {}
            if u.index not in self.transition:
                for w in content_words(u.text):
                    for c in categories_of_word(w):
                        cats.setdefault(c, []).append(w)
            self.utt_cats.append(cats)
        self.img_cats: list[dict[str, list[str]]] = []
        for image in dialogue.images:
            cats = {}
            for obj in image_objects(image):
                for w in content_words(obj):
                    for c in categories_of_word(w):
                        cats.setdefault(c, []).append(obj)
            self.img_cats.append(cats)
        topics = dialogue.metadata.get("topics")
        if topics:
            self.topics = [(t["start"], t["end"]) for t in topics]
        else:  # a dialogue that was not built here: the whole dialogue is one topic
            self.topics = [(0, len(dialogue.utterances))]
        self.topic_cats: list[set[str]] = []
        self.topic_imgs: list[list[int]] = []
        for start, end in self.topics:
            cats: set[str] = set()
            for i in range(start, end):
                cats |= set(self.utt_cats[i])
            imgs = [im.index for im in dialogue.images if start <= im.utterance_index < end]
            for j in imgs:
                cats |= set(self.img_cats[j])
            self.topic_cats.append(cats)
            self.topic_imgs.append(imgs)
        self.all_cats: set[str] = set().union(*self.topic_cats) if self.topic_cats else set()
        self.stems = dialogue_stems(dialogue)
        self.speakers = sorted({u.speaker for u in dialogue.utterances})

    def topic_of(self, utterance_id: int) -> int | None:
        for k, (start, end) in enumerate(self.topics):
            if start <= utterance_id < end:
                return k
        return None

    def other(self, speaker: str) -> str:
        others = [s for s in self.speakers if s != speaker]
        return others[0] if others else "them"

    def unambiguous(self, words: list[str], category: str) -> bool:
        return any(categories_of_word(w) == (category,) for w in words)


def _phrase(rng: random.Random, category: str) -> str:
    return rng.choice(by_name()[category].phrases)


def _image_phrase(rng: random.Random, category: str) -> str:
    return rng.choice(by_name()[category].image_phrases)


def _question_gold(v: _View, speaker: str, category: str) -> list[int]:
    return [
        i
        for i, cats in enumerate(v.utt_cats)
        if category in cats and v.d.utterances[i].speaker == speaker
    ]


def _question(v: _View, rng: random.Random, cfg: QueryConfig) -> list[_Candidate]:
    out = []
    for speaker in v.speakers:
        cats = sorted(
            {
                c
                for i, cs in enumerate(v.utt_cats)
                for c in cs
                if v.d.utterances[i].speaker == speaker
            }
        )
        for category in cats:
            gold = _question_gold(v, speaker, category)
            if not (1 <= len(gold) <= cfg.max_question_gold):
                continue
            if not any(v.unambiguous(v.utt_cats[i][category], category) for i in gold):
                continue
            p = _phrase(rng, category)
            text = rng.choice(Q_TEMPLATES).format(s=speaker, o=v.other(speaker), p=p)
            meta = {"category": category, "speaker": speaker, "phrase": p}
            out.append(
                _Candidate(
                    family="question",
                    type=QueryType.UTTERANCE_ONLY,
                    text=text,
                    utterance_ids=gold,
                    image_ids=[],
                    metadata=meta,
                )
            )
            topics = {v.topic_of(i) for i in gold}
            if len(topics) == 1:
                (k,) = topics
                if k is not None and v.topic_imgs[k]:
                    text = rng.choice(QP_TEMPLATES).format(s=speaker, p=p)
                    out.append(
                        _Candidate(
                            family="question_photo",
                            type=QueryType.MULTIMODAL,
                            text=text,
                            utterance_ids=gold,
                            image_ids=v.topic_imgs[k],
                            metadata={**meta, "topic": k},
                        )
                    )
    return out


def _unique_topic_cats(v: _View, k: int) -> list[str]:
    others = (
        set().union(*(c for j, c in enumerate(v.topic_cats) if j != k))
        if len(v.topics) > 1
        else set()
    )
    start, end = v.topics[k]
    evidence: dict[str, list[str]] = {}
    for i in range(start, end):
        for c, ws in v.utt_cats[i].items():
            evidence.setdefault(c, []).extend(ws)
    for j in v.topic_imgs[k]:
        for c, ws in v.img_cats[j].items():
            evidence.setdefault(c, []).extend(ws)
    return sorted(c for c in v.topic_cats[k] - others if v.unambiguous(evidence.get(c, []), c))


def _topic_gold(v: _View, k: int) -> list[int]:
    start, end = v.topics[k]
    return [i for i in range(start, end) if i not in v.transition]


def _topic(v: _View, rng: random.Random) -> list[_Candidate]:
    out = []
    unique = [_unique_topic_cats(v, k) for k in range(len(v.topics))]
    for k, cats in enumerate(unique):
        if not cats:
            continue
        chosen = rng.sample(cats, min(len(cats), rng.choice((1, 2))))
        p = " and ".join(_phrase(rng, c) for c in chosen)
        s = rng.choice(v.speakers) if v.speakers else "they"
        imgs = v.topic_imgs[k]
        img_cats = sorted({c for j in imgs for c in v.img_cats[j]} & set(cats))
        if imgs and img_cats:
            text = rng.choice(TOPIC_IMG_TEMPLATES).format(
                p=p, i=_image_phrase(rng, rng.choice(img_cats))
            )
        elif imgs:
            text = (
                rng.choice(TOPIC_TEMPLATES).format(p=p, s=s, o=v.other(s))
                + ", with the photo from then"
            )
        else:
            text = rng.choice(TOPIC_TEMPLATES).format(p=p, s=s, o=v.other(s))
        qtype = QueryType.MULTIMODAL if imgs else QueryType.UTTERANCE_ONLY
        out.append(
            _Candidate(
                family="topic",
                type=qtype,
                text=text,
                utterance_ids=_topic_gold(v, k),
                image_ids=imgs,
                metadata={"topic": k, "categories": chosen},
            )
        )
    for a in range(len(v.topics)):
        for b in range(a + 1, len(v.topics)):
            if not unique[a] or not unique[b]:
                continue
            ca, cb = rng.choice(unique[a]), rng.choice(unique[b])
            text = rng.choice(MULTI_TEMPLATES).format(p=_phrase(rng, ca), q=_phrase(rng, cb))
            imgs = v.topic_imgs[a] + v.topic_imgs[b]
            qtype = QueryType.MULTIMODAL if imgs else QueryType.UTTERANCE_ONLY
            out.append(
                _Candidate(
                    family="multi_topic",
                    type=qtype,
                    text=text,
                    utterance_ids=_topic_gold(v, a) + _topic_gold(v, b),
                    image_ids=imgs,
                    metadata={"topics": [a, b], "categories": [ca, cb]},
                )
            )
    return out


def _images(v: _View, rng: random.Random) -> list[_Candidate]:
    out = []
    for image in v.d.images:
        j = image.index
        sender = v.d.utterances[image.utterance_index].speaker
        others = (
            set().union(*(set(c) for k, c in enumerate(v.img_cats) if k != j))
            if len(v.img_cats) > 1
            else set()
        )
        unique = sorted(
            c
            for c in set(v.img_cats[j]) - others
            if v.unambiguous([w for o in v.img_cats[j][c] for w in content_words(o)], c)
        )
        if unique:
            c = rng.choice(unique)
            text = rng.choice(IMAGE_TEMPLATES).format(i=_image_phrase(rng, c), s=sender)
            out.append(
                _Candidate(
                    family="image_ref",
                    type=QueryType.IMAGE_ONLY,
                    text=text,
                    utterance_ids=[],
                    image_ids=[j],
                    metadata={"category": c},
                )
            )
        objects = image_objects(image)
        own = {stem(w) for o in objects for w in content_words(o)}
        other_objs = {
            stem(w)
            for k, im in enumerate(v.d.images)
            if k != j
            for o in image_objects(im)
            for w in content_words(o)
        }
        literal = [
            o
            for o in objects
            if {stem(w) for w in content_words(o)}
            and not ({stem(w) for w in content_words(o)} & other_objs)
        ]
        if literal and own:
            w = ", ".join(rng.sample(literal, min(2, len(literal))))
            out.append(
                _Candidate(
                    family="image_literal",
                    type=QueryType.IMAGE_ONLY,
                    text=rng.choice(IMAGE_LITERAL_TEMPLATES).format(w=w),
                    utterance_ids=[],
                    image_ids=[j],
                    metadata={},
                )
            )
    return out


def _extractive(v: _View, rng: random.Random) -> list[_Candidate]:
    out = []
    for start, end in v.topics:
        ids = [i for i in range(start, end) if i not in v.transition]
        if len(ids) < 2:
            continue
        length = rng.randint(2, min(4, len(ids)))
        first = rng.randint(0, len(ids) - length)
        window = ids[first : first + length]
        words: list[str] = []
        for i in window:
            for w in content_words(v.d.utterances[i].text):
                if w not in words:
                    words.append(w)
        if len(words) < 2:
            continue
        picked = rng.sample(words, min(3, len(words)))
        text = rng.choice(EXTRACTIVE_TEMPLATES).format(
            w=", ".join(picked[:-1]) + " and " + picked[-1]
        )
        out.append(
            _Candidate(
                family="extractive",
                type=QueryType.UTTERANCE_ONLY,
                text=text,
                utterance_ids=window,
                image_ids=[],
                metadata={"copied_words": picked},
            )
        )
    return out


def is_unanswerable(dialogue: Dialogue, category: str, phrase: str) -> tuple[bool, str]:
    """Check against the dialogue's words that a query about ``category`` (named by ``phrase``)
    has no answer in it: no word of the category and no content word of the phrase occurs in any
    utterance or image description, and no word of the dialogue falls in the category."""
    stems = dialogue_stems(dialogue)
    hit = sorted(category_stems(category) & stems)
    if hit:
        return False, f"category words present: {hit}"
    phrase_hit = sorted(content_stems(phrase) & stems)
    if phrase_hit:
        return False, f"phrase words present: {phrase_hit}"
    text = (
        " ".join(u.text for u in dialogue.utterances)
        + " "
        + " ".join(i.content_text() for i in dialogue.images)
    )
    if category in categories_of_text(text):
        return False, "a dialogue word belongs to the category"
    return True, "no category or phrase word occurs in the dialogue"


def _negatives(v: _View, rng: random.Random) -> list[_Candidate]:
    present_groups = {by_name()[c].group for c in v.all_cats}
    absent = [
        c.name
        for c in CATEGORIES
        if not (category_stems(c.name) & v.stems) and c.name not in v.all_cats
    ]
    near = [c for c in absent if by_name()[c].group in present_groups]
    pool = near or absent
    out = []
    for c in rng.sample(pool, min(len(pool), 4)):
        s = rng.choice(v.speakers) if v.speakers else "they"
        for family in ("negative_question", "negative_topic", "negative_image"):
            if family == "negative_image":
                p = _image_phrase(rng, c)
                text = rng.choice(IMAGE_TEMPLATES).format(i=p, s=s)
            else:
                p = _phrase(rng, c)
                templates = Q_TEMPLATES if family == "negative_question" else TOPIC_TEMPLATES
                text = rng.choice(templates).format(s=s, o=v.other(s), p=p)
            ok, why = is_unanswerable(v.d, c, p)
            if ok:
                out.append(
                    _Candidate(
                        family=family,
                        type=QueryType.NEGATIVE,
                        text=text,
                        utterance_ids=[],
                        image_ids=[],
                        metadata={
                            "category": c,
                            "phrase": p,
                            "near_miss": c in near,
                            "verified": why,
                        },
                    )
                )
    return out


def candidate_queries(
    dialogue: Dialogue, config: QueryConfig, rng: random.Random
) -> list[_Candidate]:
    """Every query the families can make for one dialogue (before sampling to the type mix)."""
    v = _View(dialogue)
    return (
        _question(v, rng, config)
        + _topic(v, rng)
        + _images(v, rng)
        + _extractive(v, rng)
        + _negatives(v, rng)
    )


def _type_plan(n_dialogues: int, config: QueryConfig, rng: random.Random) -> list[list[QueryType]]:
    """Query types for every dialogue, so that the whole set follows ``type_mix`` exactly."""
    total = n_dialogues * config.per_dialogue
    weights = {t: w for t, w in config.type_mix.items() if w > 0}
    norm = sum(weights.values())
    exact = {t: total * w / norm for t, w in weights.items()}
    counts = {t: int(x) for t, x in exact.items()}
    for t in sorted(exact, key=lambda t: exact[t] - counts[t], reverse=True)[
        : total - sum(counts.values())
    ]:
        counts[t] += 1
    plan = [t for t in QueryType if t in counts for _ in range(counts[t])]
    rng.shuffle(plan)
    return [
        plan[k * config.per_dialogue : (k + 1) * config.per_dialogue] for k in range(n_dialogues)
    ]


def _fallback_order(wanted: QueryType) -> list[QueryType]:
    # When a dialogue cannot give the planned type (e.g. it has no image), the closest type.
    order = {
        QueryType.IMAGE_ONLY: [QueryType.MULTIMODAL, QueryType.UTTERANCE_ONLY, QueryType.NEGATIVE],
        QueryType.MULTIMODAL: [QueryType.UTTERANCE_ONLY, QueryType.IMAGE_ONLY, QueryType.NEGATIVE],
        QueryType.UTTERANCE_ONLY: [QueryType.MULTIMODAL, QueryType.NEGATIVE, QueryType.IMAGE_ONLY],
        QueryType.NEGATIVE: [QueryType.UTTERANCE_ONLY, QueryType.MULTIMODAL, QueryType.IMAGE_ONLY],
    }
    return [wanted, *order[wanted]]


def generate_queries(
    dialogues: Sequence[Dialogue], config: QueryConfig | None = None
) -> list[Query]:
    """Queries for every dialogue, following ``config.type_mix`` over the whole set.

    Deterministic for a given config and dialogue order. Inside a type, families are drawn by
    ``family_weights``; no two queries of a dialogue share a gold answer and family.
    """
    config = config or QueryConfig()
    rng = random.Random(config.seed)
    plan = _type_plan(len(dialogues), config, rng)
    queries: list[Query] = []
    for dialogue, types in zip(dialogues, plan, strict=True):
        local = random.Random(f"{config.seed}:{dialogue.id}")
        candidates = [
            c
            for c in candidate_queries(dialogue, config, local)
            if config.family_weights.get(c.family, 0) > 0
        ]
        used: set[tuple] = set()
        made = 0
        for wanted in types:
            for qtype in _fallback_order(wanted):
                pool = [
                    c
                    for c in candidates
                    if c.type == qtype
                    and (c.family, tuple(c.utterance_ids), tuple(c.image_ids)) not in used
                ]
                if not pool:
                    continue
                families = sorted({c.family for c in pool})
                family = local.choices(
                    families, weights=[config.family_weights[f] for f in families]
                )[0]
                pick = local.choice([c for c in pool if c.family == family])
                used.add((pick.family, tuple(pick.utterance_ids), tuple(pick.image_ids)))
                gold_runs = _runs(pick.utterance_ids) if pick.utterance_ids else 0
                queries.append(
                    Query(
                        id=f"{dialogue.id}-q{made}",
                        dialogue_id=dialogue.id,
                        text=pick.text,
                        type=pick.type,
                        gold_utterance_ids=pick.utterance_ids,
                        gold_image_ids=pick.image_ids,
                        family=pick.family,
                        metadata={
                            **pick.metadata,
                            "planned_type": str(wanted),
                            "gold_runs": gold_runs,
                            "contiguous": gold_runs == 1,
                        },
                    )
                )
                made += 1
                break
    return queries
