"""The answer format: exact reference format, the think-tag policy, the compact form."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ffr_lib.data.format.answer import (
    MALFORMED,
    compact_to_reference,
    format_answer,
    format_compact,
    parse,
    parse_answer,
    parse_compact,
    reference_to_compact,
    status_counts,
)

REF = "<|utt_ids_start|>[3, 4, 5]<|utt_ids_end|>;<|img_ids_start|>[1]<|img_ids_end|>"


def test_format_answer_is_exactly_the_reference_string() -> None:
    assert format_answer([5, 3, 4], [1]) == REF
    assert (
        format_answer([], [])
        == "<|utt_ids_start|>[]<|utt_ids_end|>;<|img_ids_start|>[]<|img_ids_end|>"
    )
    # sets: duplicates collapse, order is canonical
    assert format_answer([4, 3, 3, 5], (1, 1)) == REF


def test_parse_reference() -> None:
    a = parse_answer(REF)
    assert (a.utt_ids, a.img_ids, a.well_formed, a.syntax_ok) == ([3, 4, 5], [1], True, True)
    empty = parse_answer(format_answer([], []))
    assert empty.well_formed and empty.is_empty
    # tolerated whitespace variants
    assert parse_answer(
        " <|utt_ids_start|>[3,4]<|utt_ids_end|> ; <|img_ids_start|>[ ]<|img_ids_end|>\n"
    ).utt_ids == [3, 4]
    # unsorted ids are fine and come back sorted
    assert parse_answer(
        "<|utt_ids_start|>[9, 2]<|utt_ids_end|>;<|img_ids_start|>[]<|img_ids_end|>"
    ).utt_ids == [2, 9]


def test_duplicates_parse_but_are_not_well_formed() -> None:
    a = parse_answer(
        "<|utt_ids_start|>[3, 3, 4]<|utt_ids_end|>;<|img_ids_start|>[1]<|img_ids_end|>"
    )
    assert a.syntax_ok and not a.well_formed
    assert a.utt_ids == [3, 4] and a.img_ids == [1]


def test_malformed_never_raises_and_gives_empty_sets() -> None:
    bad = [
        "",
        "3, 4, 5",
        "[3, 4]",
        REF.replace(";", ""),
        REF.replace("[1]", "[-1]"),
        REF.replace("[1]", "[1.5]"),
        REF.replace("[1]", "[a]"),
        REF.replace("[3, 4, 5]", "[3, 4,]"),
        # image part first is not the format
        "<|img_ids_start|>[1]<|img_ids_end|>;<|utt_ids_start|>[3]<|utt_ids_end|>",
        None,
        42,
        ["not", "a", "string"],
    ]
    for text in bad:
        a = parse_answer(text)
        assert a.utt_ids == [] and a.img_ids == [] and not a.well_formed and not a.syntax_ok, text
        assert a.status == "malformed" and not a.recovered, text


def test_answer_inside_other_text_is_recovered_as_the_official_evaluation_does() -> None:
    other = REF.replace("[3, 4, 5]", "[7]")
    for text in (
        "The answer is " + REF,
        REF + " because the user asked about it",
        REF + other,  # the first answer counts
        "<think>unclosed " + REF,
        "<think>hm " + other + "</think> so: " + REF,  # a leading think block is skipped
    ):
        a = parse_answer(text)
        assert (a.utt_ids, a.img_ids, a.status) == ([3, 4, 5], [1], "recovered"), text
        # R_F1 / R_Format still see the exact format only.
        assert not a.syntax_ok and not a.well_formed, text
    assert parse_answer(REF).status == "exact"
    c = parse_compact("Sure! U 3-5, 9; I none. Hope that helps")
    assert (c.utt_ids, c.img_ids, c.status) == ([3, 4, 5, 9], [], "recovered")
    assert parse_compact("U 1; I 1 extra").status == "recovered"
    # not inside a word, and an invalid first answer is malformed
    assert parse_compact("YOU 3; I 2").status == "malformed"
    assert parse_compact("x U 5-3; I none then U 1; I none").status == "malformed"
    assert status_counts([parse_answer(REF), parse_answer("x " + REF), MALFORMED]) == {
        "exact": 1,
        "recovered": 1,
        "malformed": 1,
    }


def test_think_tag_policy() -> None:
    # one leading think block is stripped, even when it mentions markers
    think = "<think>maybe <|utt_ids_start|>[0]<|utt_ids_end|>?\nno, 3-5</think>\n"
    assert parse_answer(think + REF).utt_ids == [3, 4, 5]
    assert parse_answer(think + REF).well_formed
    # trailing end-of-turn tokens are ignored
    assert parse_answer(REF + "<|im_end|>").well_formed
    # two think blocks, unclosed, stray closing tag, think after the answer: malformed
    for text in (
        think + think + REF,
        "<think>unclosed " + REF,
        "</think>" + REF,
        REF + "<think>x</think>",
        "hello <think>x</think>" + REF,
    ):
        assert not parse_answer(text).syntax_ok, text


def test_compact_form() -> None:
    assert format_compact([3, 4, 5, 9], [1]) == "U 3-5, 9; I 1"
    assert format_compact([], []) == "U none; I none"
    assert format_compact([0, 2, 3, 7, 8, 9, 11], [0, 1]) == "U 0, 2-3, 7-9, 11; I 0-1"
    a = parse_compact("U 3-5, 9; I 1")
    assert (a.utt_ids, a.img_ids, a.well_formed) == ([3, 4, 5, 9], [1], True)
    assert parse_compact("<think>hm</think> U none; I 2").img_ids == [2]
    # overlapping ranges are duplicates
    overlap = parse_compact("U 1-3, 2; I none")
    assert overlap.syntax_ok and not overlap.well_formed and overlap.utt_ids == [1, 2, 3]
    for text in (
        "U 5-3; I none",
        "U ; I none",
        "I 1; U 2",
        "U 1; I 1 extra",
        "U 0-999999999; I none",
    ):
        assert not parse_compact(text).syntax_ok, text
    assert parse("U 1; I none", "compact").utt_ids == [1]
    assert not parse("U 1; I none", "reference").syntax_ok


def test_converters() -> None:
    assert reference_to_compact(REF) == "U 3-5; I 1"
    assert compact_to_reference("U 3-5; I 1") == REF
    assert compact_to_reference("garbage") is None
    assert reference_to_compact("garbage") is None


ids = st.sets(st.integers(min_value=0, max_value=300), max_size=30)


@given(ids, ids)
def test_round_trips(utt: set[int], img: set[int]) -> None:
    ref = format_answer(utt, img)
    parsed = parse_answer(ref)
    assert (set(parsed.utt_ids), set(parsed.img_ids), parsed.well_formed) == (utt, img, True)
    compact = format_compact(utt, img)
    assert compact == reference_to_compact(ref)
    assert compact_to_reference(compact) == ref
    back = parse_compact(compact)
    assert (set(back.utt_ids), set(back.img_ids), back.well_formed) == (utt, img, True)


@given(st.text(max_size=200))
def test_parse_never_raises(text: str) -> None:
    for a in (parse_answer(text), parse_compact(text)):
        assert a.well_formed <= a.syntax_ok
        assert not (a.syntax_ok and a.recovered)
        if a.status == "malformed":
            assert a.is_empty
