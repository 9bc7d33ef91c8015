"""Small text helpers shared by the builder, the query generator and the baselines.

A deliberately simple tokenizer and stemmer (no model, no download): the same normalisation is used
to build queries, to verify negatives and to run the word-overlap baselines, so that "a word occurs
in the dialogue" means the same thing everywhere.
"""

from __future__ import annotations

import re

from ffr_lib.data.model import Dialogue, Image

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

# Common English function words plus chat filler; content words are what is left.
STOPWORDS: frozenset[str] = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "also",
        "am",
        "an",
        "and",
        "any",
        "are",
        "aren't",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "can't",
        "cannot",
        "could",
        "couldn't",
        "did",
        "didn't",
        "do",
        "does",
        "doesn't",
        "doing",
        "don't",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "get",
        "got",
        "had",
        "hadn't",
        "has",
        "hasn't",
        "have",
        "haven't",
        "having",
        "he",
        "he'd",
        "he'll",
        "he's",
        "her",
        "here",
        "here's",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "how's",
        "i",
        "i'd",
        "i'll",
        "i'm",
        "i've",
        "if",
        "in",
        "into",
        "is",
        "isn't",
        "it",
        "it's",
        "its",
        "itself",
        "just",
        "let's",
        "like",
        "me",
        "more",
        "most",
        "mustn't",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "ought",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "really",
        "same",
        "shan't",
        "she",
        "she'd",
        "she'll",
        "she's",
        "should",
        "shouldn't",
        "so",
        "some",
        "such",
        "than",
        "that",
        "that's",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "there's",
        "these",
        "they",
        "they'd",
        "they'll",
        "they're",
        "they've",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "wasn't",
        "we",
        "we'd",
        "we'll",
        "we're",
        "we've",
        "were",
        "weren't",
        "what",
        "what's",
        "when",
        "when's",
        "where",
        "where's",
        "which",
        "while",
        "who",
        "who's",
        "whom",
        "why",
        "why's",
        "will",
        "with",
        "won't",
        "would",
        "wouldn't",
        "you",
        "you'd",
        "you'll",
        "you're",
        "you've",
        "your",
        "yours",
        "yourself",
        "yourselves",
        "yes",
        "yeah",
        "yep",
        "nope",
        "ok",
        "okay",
        "oh",
        "ah",
        "hey",
        "hi",
        "hello",
        "lol",
        "haha",
        "wow",
        "cool",
        "nice",
        "great",
        "good",
        "thanks",
        "thank",
        "sure",
        "well",
        "um",
        "uh",
        "hmm",
        "right",
        "one",
        "two",
        "much",
        "many",
        "lot",
        "lots",
        "thing",
        "things",
        "something",
        "anything",
        "stuff",
        "going",
        "go",
        "gonna",
        "want",
        "wanna",
        "know",
        "think",
        "see",
        "look",
        "looks",
        "looking",
        "make",
        "made",
        "say",
        "said",
        "tell",
        "told",
        "maybe",
        "still",
        "even",
        "back",
        "way",
        "day",
        "time",
        "today",
        "now",
        "u",
        "ur",
        "im",
        "dont",
        "cant",
        "thats",
        "whats",
        "ive",
        "youre",
        "awesome",
        "amazing",
        "love",
        "lovely",
        "beautiful",
        "fun",
        "glad",
        "happy",
        "sounds",
        "sound",
        "pretty",
    ]
)


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens (apostrophe contractions kept whole)."""
    return _TOKEN.findall(text.lower())


def stem(word: str) -> str:
    """A tiny suffix stripper, enough to match plural/verb forms ("dogs" ~ "dog", "baking" ~ "bake")."""
    w = word.lower()
    if len(w) <= 3:
        return w
    for suffix, repl in (
        ("ies", "y"),
        ("sses", "ss"),
        ("ches", "ch"),
        ("shes", "sh"),
        ("xes", "x"),
        ("ing", ""),
        ("ed", ""),
        ("s", ""),
    ):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            if suffix == "s" and w.endswith("ss"):
                return w
            w = w[: len(w) - len(suffix)] + repl
            break
    # "baking" -> "bak" and "bake" -> "bake": drop a final e so both meet at "bak".
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    # "running" -> "runn" -> "run"
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "aeiouls":
        w = w[:-1]
    return w


def content_words(text: str) -> list[str]:
    """Tokens that are not stopwords or numbers, in order (duplicates kept)."""
    return [t for t in tokens(text) if t not in STOPWORDS and not t.isdigit() and len(t) > 1]


def content_stems(text: str) -> set[str]:
    """Stems of the content words of a text."""
    return {stem(t) for t in content_words(text)}


_OBJECTS = re.compile(r"objects in the photo\s*:\s*(.+)$", re.IGNORECASE)


def image_objects(image: Image) -> list[str]:
    """The things an image shows, from its caption/OCR text.

    A caption of the form "... Objects in the photo: Dog, Grass" gives its object list; any other
    caption gives its content words, so any reader's images work.
    """
    text = image.content_text()
    match = _OBJECTS.search(text.split(" | ")[0]) if text else None
    if match:
        return [o.strip().lower() for o in match.group(1).split(",") if o.strip()]
    return content_words(text)


def utterance_render(dialogue: Dialogue, index: int, with_speaker: bool = True) -> str:
    """Text of one utterance as a text model sees it: speaker, text, and its images' content."""
    utterance = dialogue.utterances[index]
    parts = [f"{utterance.speaker}: {utterance.text}" if with_speaker else utterance.text]
    for image in dialogue.images_of(index):
        content = image.content_text()
        parts.append(f"[image: {content}]" if content else "[image]")
    return " ".join(p for p in parts if p.strip())


def dialogue_stems(dialogue: Dialogue) -> set[str]:
    """Every content stem in a dialogue: utterance texts and image captions/OCR (not speakers)."""
    stems: set[str] = set()
    for utterance in dialogue.utterances:
        stems |= content_stems(utterance.text)
    for image in dialogue.images:
        stems |= content_stems(image.content_text())
    return stems
