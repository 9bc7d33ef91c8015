"""Synthetic short dialogues with known topics, for tests and demos (no data files needed).

Each dialogue talks about one lexicon category through a few of its member words and shares one
photo of them, between two speakers. Frames use only function words, so dialogues about different
categories share no content words.
"""

from __future__ import annotations

import random

from ffr_lib.data.model import Dialogue, Image, Utterance
from ffr_lib.mldr.lexicon import CATEGORIES, categories_of_word

FRAMES = [
    "I have a {w} now.",
    "What about the {w}?",
    "Do you like {w}?",
    "My {w} is here with me.",
    "It was the {w} and the {v}.",
    "Is that your {w}?",
    "The {w} is over there.",
    "We had a {w} and a {v} at our place.",
]
REPLIES = ["Yes!", "No way.", "Oh really?", "Haha, I see.", "Me too.", "Why?"]


def _clean_members(category: str) -> list[str]:
    # Words that belong to this category only, so the topic is unambiguous.
    cat = next(c for c in CATEGORIES if c.name == category)
    return sorted({m for m in cat.members if categories_of_word(m) == (category,)})


def synthetic_dialogue(
    dialogue_id: str, category: str, rng: random.Random, turns: int = 10, with_image: bool = True
) -> Dialogue:
    """One two-speaker dialogue about ``category``; a photo of two member words mid-way."""
    words = _clean_members(category)
    speakers = ["a", "b"]
    utterances: list[Utterance] = []
    images: list[Image] = []
    photo_at = turns // 2
    for i in range(turns):
        speaker = speakers[i % 2]
        if with_image and i == photo_at:
            utterances.append(Utterance(index=i, speaker=speaker, text=""))
            shown = rng.sample(words, min(2, len(words)))
            images.append(
                Image(
                    index=0,
                    utterance_index=i,
                    caption="Objects in the photo: " + ", ".join(w.title() for w in shown),
                )
            )
            continue
        if i % 2 == 0 or rng.random() < 0.5:
            w, v = rng.sample(words, 2) if len(words) > 1 else (words[0], words[0])
            text = rng.choice(FRAMES).format(w=w, v=v)
        else:
            text = rng.choice(REPLIES)
        utterances.append(Utterance(index=i, speaker=speaker, text=text))
    return Dialogue(
        id=dialogue_id,
        source="synthetic",
        speakers=speakers,
        utterances=utterances,
        images=images,
        metadata={"category": category},
    )


def synthetic_sources(n: int, seed: int = 0, turns: int = 10) -> list[Dialogue]:
    """``n`` short dialogues cycling through the lexicon's categories."""
    rng = random.Random(seed)
    names = [c.name for c in CATEGORIES if len(_clean_members(c.name)) >= 3]
    return [
        synthetic_dialogue(f"syn-{k}", names[k % len(names)], rng, turns=turns) for k in range(n)
    ]
