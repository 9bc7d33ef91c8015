"""Long-dialogue builder: dense ids, complete provenance, consistent speakers, determinism."""

from __future__ import annotations

from ffr_lib.mldr.builder import BuilderConfig, build_long_dialogues, get_profile
from ffr_lib.mldr.synthetic import synthetic_dialogue, synthetic_sources
from ffr_lib.mldr.text import content_stems


def _build(n: int = 45, seed: int = 0, profile: str = "mldr", turns: int = 10):
    sources = synthetic_sources(n, seed=1, turns=turns)
    config = BuilderConfig(profile=get_profile(profile), seed=seed)
    return sources, build_long_dialogues(sources, config)


def test_ids_dense_and_images_follow_their_utterance() -> None:
    sources, built = _build()
    by_id = {s.id: s for s in sources}
    assert len(built) == 15  # 45 sources, 3 per dialogue, each used once
    for d in built:
        assert [u.index for u in d.utterances] == list(range(len(d.utterances)))
        assert [i.index for i in d.images] == list(range(len(d.images)))
        for image in d.images:
            prov = d.metadata["provenance"][image.utterance_index]
            src = by_id[prov["source_dialogue_id"]]
            # the image kept its owner: the source image sat on the same source utterance
            assert any(
                si.utterance_index == prov["source_index"] and si.caption == image.caption
                for si in src.images
            )


def test_provenance_complete_and_maps_back_to_source_text() -> None:
    sources, built = _build()
    by_id = {s.id: s for s in sources}
    for d in built:
        prov = d.metadata["provenance"]
        assert len(prov) == len(d.utterances)
        topics = d.metadata["topics"]
        assert len(topics) == 3
        assert d.metadata["topic_boundaries"] == [t["start"] - 1 for t in topics[1:]]
        for i, p in enumerate(prov):
            if p.get("transition"):
                assert i in d.metadata["topic_boundaries"]
                continue
            src = by_id[p["source_dialogue_id"]]
            assert src.utterances[p["source_index"]].text == d.utterances[i].text
        # every source used exactly once per dialogue, spans contiguous and in order
        assert len({t["source_dialogue_id"] for t in topics}) == 3
        for t in topics:
            idx = [prov[i]["source_index"] for i in range(t["start"], t["end"])]
            assert idx == list(range(*t["source_span"]))


def test_speakers_consistent() -> None:
    _, built = _build()
    for d in built:
        assert len(d.speakers) == 2
        assert {u.speaker for u in d.utterances} <= set(d.speakers)
        for t in d.metadata["topics"]:
            # within a topic each source speaker maps onto one long-dialogue speaker
            mapping: dict[int, str] = {}
            for i in range(t["start"], t["end"]):
                parity = d.metadata["provenance"][i]["source_index"] % 2  # sources alternate a/b
                assert (
                    mapping.setdefault(parity, d.utterances[i].speaker) == d.utterances[i].speaker
                )
            assert len(set(mapping.values())) == len(mapping)


def test_deterministic_by_seed() -> None:
    _, a = _build(seed=3)
    _, b = _build(seed=3)
    _, c = _build(seed=4)
    assert [d.model_dump() for d in a] == [d.model_dump() for d in b]
    assert [d.model_dump() for d in a] != [d.model_dump() for d in c]


def test_topics_of_one_dialogue_are_distinct() -> None:
    _, built = _build()
    for d in built:
        cats = [d_t["source_dialogue_id"] for d_t in d.metadata["topics"]]
        keywords = [set(t["keywords"]) for t in d.metadata["topics"]]
        assert len(set(cats)) == 3
        for i in range(3):
            for j in range(i + 1, 3):
                inter, union = keywords[i] & keywords[j], keywords[i] | keywords[j]
                assert len(inter) / len(union) <= 0.2


def test_same_topic_sources_are_not_combined() -> None:
    import random

    rng = random.Random(0)
    same = [synthetic_dialogue(f"pets-{k}", "pets", rng) for k in range(6)]
    assert build_long_dialogues(same, BuilderConfig()) == []
    mixed = same[:1] + [
        synthetic_dialogue("m", "meals", rng),
        synthetic_dialogue("v", "vehicles", rng),
    ]
    built = build_long_dialogues(mixed, BuilderConfig())
    assert len(built) == 1
    assert sorted(t["source_dialogue_id"] for t in built[0].metadata["topics"]) == [
        "m",
        "pets-0",
        "v",
    ]
    assert "dog" in content_stems(" ".join(u.text for u in built[0].utterances)) or "pet" in str(
        built[0].metadata["topics"]
    )


def test_long_profile_has_sessions_with_timestamps() -> None:
    _, built = _build(n=50, profile="long", turns=14)
    assert len(built) == 2
    for d in built:
        assert len(d.utterances) >= 300
        sessions = d.metadata["sessions"]
        assert len(sessions) == 8
        stamps = [u.timestamp for u in d.utterances]
        assert all(s is not None for s in stamps)
        assert stamps == sorted(stamps)
        # a new session starts at least a day after the previous utterance
        for s in sessions[1:]:
            gap = stamps[s["start"]] - stamps[s["start"] - 1]
            assert gap.days >= 1


def test_mldr_profile_turn_count_is_about_25() -> None:
    _, built = _build(n=60, turns=14)
    mean = sum(len(d.utterances) for d in built) / len(built)
    assert 20 <= mean <= 30
