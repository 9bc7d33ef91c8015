"""Splits: disjoint by source dialogue, checks that can fail, files that read back."""

from __future__ import annotations

import json

import pytest

from ffr_lib.data.canonical import read_canonical
from ffr_lib.data.dataset import Dataset
from ffr_lib.data.model import Query, QueryType
from ffr_lib.mldr.splits import (
    SplitConfig,
    assign_sources,
    build_splits,
    check_gold_in_range,
    check_no_leakage,
    check_query_mix,
    write_splits,
)
from ffr_lib.mldr.stats import dataset_stats
from ffr_lib.mldr.synthetic import synthetic_sources


@pytest.fixture(scope="module")
def splits() -> dict[str, Dataset]:
    config = SplitConfig(seed=7, fractions={"train": 0.6, "val": 0.2, "test": 0.2})
    return build_splits(synthetic_sources(150, seed=3), config)


def test_disjoint_by_source(splits) -> None:
    assert all(ds.dialogues for ds in splits.values())
    sources = {
        name: {s for d in ds.dialogues for s in d.metadata["source_dialogue_ids"]}
        for name, ds in splits.items()
    }
    assert not sources["train"] & sources["val"]
    assert not sources["train"] & sources["test"]
    assert not sources["val"] & sources["test"]
    ok, details = check_no_leakage(splits)
    assert ok, details


def test_leak_is_detected(splits) -> None:
    leaked = dict(splits)
    leaked["val"] = Dataset(
        dialogues=splits["val"].dialogues + splits["train"].dialogues[:1], queries=[]
    )
    ok, details = check_no_leakage(leaked)
    assert not ok and details["n_shared"] >= 3


def test_assignment_deterministic_and_proportional() -> None:
    ids = [f"s{i}" for i in range(100)]
    config = SplitConfig(seed=1)
    a = assign_sources(ids, config)
    assert a == assign_sources(list(reversed(ids)), config)
    assert sum(v == "train" for v in a.values()) == 80
    assert a != assign_sources(ids, SplitConfig(seed=2))


def test_gold_range_and_mix_checks(splits) -> None:
    train = splits["train"]
    assert check_gold_in_range(train)[0]
    ok, details = check_query_mix(train, SplitConfig().queries.type_mix, 0.05)
    assert ok, details
    bad_query = Query(
        id="bad",
        dialogue_id=train.dialogues[0].id,
        text="x",
        type=QueryType.UTTERANCE_ONLY,
        gold_utterance_ids=[10_000],
    )
    ok, details = check_gold_in_range(Dataset(dialogues=train.dialogues, queries=[bad_query]))
    assert not ok and details["n_problems"] == 1
    only_negative = {QueryType.NEGATIVE: 1.0}
    assert not check_query_mix(train, only_negative)[0]


def test_write_and_read_back(splits, tmp_path) -> None:
    written = write_splits(splits, tmp_path / "mldr")
    for name, ds in splits.items():
        back = read_canonical(tmp_path / "mldr" / name)
        assert [d.id for d in back.dialogues] == [d.id for d in ds.dialogues]
        assert len(back.queries) == len(ds.queries)
        assert (
            back.dialogues[0].metadata["topic_boundaries"]
            == ds.dialogues[0].metadata["topic_boundaries"]
        )
    assert set(written["swift"]) == set(splits)
    lines = (tmp_path / "mldr" / "swift" / "val.jsonl").read_text().splitlines()
    assert len(lines) == len(splits["val"].queries)
    assert {"messages", "solution"} <= set(json.loads(lines[0]))


def test_stats(splits) -> None:
    stats = dataset_stats(splits["train"])
    ds = splits["train"]
    assert stats["dialogues"] == len(ds.dialogues)
    assert stats["queries"] == len(ds.queries)
    assert sum(stats["turn_histogram"].values()) == len(ds.dialogues)
    assert sum(stats["image_histogram"].values()) == len(ds.dialogues)
    assert sum(stats["query_types"].values()) == len(ds.queries)
    assert sum(stats["query_families"].values()) == len(ds.queries)
    assert stats["topics_mean"] == 3.0
