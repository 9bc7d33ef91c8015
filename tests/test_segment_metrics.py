"""Pk and WindowDiff on hand-computed cases, and fragment construction."""

from __future__ import annotations

import pytest

from ffr_lib.data.model import Dialogue, Image, Utterance
from ffr_lib.segment.fragments import fragments_from_boundaries
from ffr_lib.segment.metrics import default_k, pk, window_diff
from ffr_lib.segment.windows import FixedWindowSegmenter, WindowConfig, window_boundaries


def test_perfect_and_default_k() -> None:
    assert pk([4, 8], [4, 8], 12) == 0.0
    assert window_diff([4, 8], [4, 8], 12) == 0.0
    assert default_k([4, 8], 12) == 2  # 3 segments of 4 -> half of 4


def test_pk_hand_computed() -> None:
    # reference segments [0..4], [5..9]; hypothesis has no boundary; k=2
    # probes i=0..7 (i, i+2): reference differs across the boundary for i=3,4 -> 2 errors of 8
    assert pk([5], [], 10, k=2) == pytest.approx(2 / 8)
    # hypothesis one off (boundary at 6): i=3 (3,5) ref split, hyp same -> error; i=4 (4,6) both
    # split -> agree; i=5 (5,7) ref same, hyp split -> error: 2 of 8
    assert pk([5], [6], 10, k=2) == pytest.approx(2 / 8)
    # a hypothesis boundary far from the reference one (at 2): i=0,1 and i=3,4 disagree -> 4 of 8
    assert pk([5], [2], 10, k=2) == pytest.approx(4 / 8)


def test_window_diff_hand_computed() -> None:
    # windows (i, i+2] for i=0..7; reference boundary 5 counted for i=3,4; hypothesis none
    assert window_diff([5], [], 10, k=2) == pytest.approx(2 / 8)
    # two hypothesis boundaries 5 and 6 vs reference 5: windows i=3 (4,5] r1 h1; i=4 (5,6] r1 h2;
    # i=5 (6,7] r0 h1 -> 2 errors; Pk misses the double boundary at i=4 and counts i=5 only
    assert window_diff([5], [5, 6], 10, k=2) == pytest.approx(2 / 8)
    assert pk([5], [5, 6], 10, k=2) == pytest.approx(1 / 8)


def _dialogue(n: int = 10) -> Dialogue:
    return Dialogue(
        id="d1",
        source="t",
        utterances=[Utterance(index=i, speaker="ab"[i % 2], text=f"line {i}") for i in range(n)],
        images=[
            Image(index=0, utterance_index=2, caption="Objects in the photo: Dog"),
            Image(index=1, utterance_index=7, ocr_text="SALE"),
        ],
    )


def test_fragments_cover_each_utterance_once_with_images() -> None:
    d = _dialogue()
    frags = fragments_from_boundaries(d, [3, 7, 0, 99])
    assert [f.utterance_ids for f in frags] == [[0, 1, 2], [3, 4, 5, 6], [7, 8, 9]]
    assert [f.image_ids for f in frags] == [[0], [], [1]]
    assert "[image: Objects in the photo: Dog]" in frags[0].text
    assert "[image: SALE]" in frags[2].text
    assert len({f.id for f in frags}) == 3
    # stable ids; content change changes the id
    assert [f.id for f in fragments_from_boundaries(d, [3, 7])] == [f.id for f in frags]
    changed = d.model_copy(deep=True)
    changed.utterances[0].text = "edited"
    assert fragments_from_boundaries(changed, [3, 7])[0].id != frags[0].id
    assert fragments_from_boundaries(changed, [3, 7])[1].id == frags[1].id


def test_fixed_windows() -> None:
    assert window_boundaries(10, 4) == [4, 8]
    assert window_boundaries(9, 4) == [4]  # tail of 1 joins the previous window
    assert window_boundaries(3, 4) == []
    frags = FixedWindowSegmenter(WindowConfig(size=4)).segment(_dialogue())
    assert sorted(i for f in frags for i in f.utterance_ids) == list(range(10))
