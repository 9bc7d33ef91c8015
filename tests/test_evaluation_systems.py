"""The registry of evaluation systems: one table names them, and the default list, the CLI help,
the report's legend and the names the built systems report under all come from it."""

from __future__ import annotations

import pytest

from ffr_lib.evaluation import baselines
from ffr_lib.evaluation.harness import System
from ffr_lib.evaluation.report import render_markdown
from ffr_lib.evaluation.systems import (
    BASELINE_NAMES,
    OPTIONAL_SYSTEM_NAMES,
    SYSTEM_NAMES,
    SYSTEMS,
    SystemOptions,
    build_system,
    build_systems,
    systems_help,
)
from ffr_lib.registry import Entry, Registry, UnknownNameError


def test_every_registered_name_builds_a_system_reporting_under_it() -> None:
    assert len(SYSTEMS) == 16
    for name in SYSTEMS:
        system = build_system(name, SystemOptions(model="tiny", k=5))
        assert isinstance(system, System)
        assert system.name == name and system.description == SYSTEMS.entry(name).description
        assert system.description, name
    # The F2RVLM stages are one class; the registry tells them apart.
    sft, zero = build_systems(["f2rvlm-sft", "f2rvlm-zero-shot"])
    assert (sft.stage, zero.stage) == ("sft", "zero-shot")
    fem = build_system("fem", SystemOptions(k=7))
    assert fem.k == 7 and not fem.hybrid
    hybrid = build_system("hybrid", SystemOptions(k=7))
    assert hybrid.hybrid and hybrid.modes == ("corpus",)
    assert hybrid.skip_reason("single") and not hybrid.skip_reason("corpus")


def test_default_and_optional_names_come_from_the_registry() -> None:
    assert tuple(n for n in SYSTEMS if SYSTEMS.entry(n).default) == SYSTEM_NAMES
    assert set(SYSTEM_NAMES) | set(OPTIONAL_SYSTEM_NAMES) == set(SYSTEMS)
    assert OPTIONAL_SYSTEM_NAMES == ("f2rvlm-zero-shot",)
    assert [s.name for s in build_systems()] == list(SYSTEM_NAMES)
    # The names callers import from baselines are the registry's.
    assert baselines.SYSTEM_NAMES is SYSTEM_NAMES and baselines.build_systems is build_systems
    text = systems_help()
    assert all(name in text for name in SYSTEMS) and "default all but f2rvlm-zero-shot" in text


def test_unknown_system_is_one_error_listing_the_known_ones() -> None:
    with pytest.raises(UnknownNameError) as caught:
        build_systems(["bm25-utt", "bm25", "fem2"])
    message = str(caught.value)
    assert message.startswith("unknown systems 'bm25', 'fem2'; known: bm25-utt, bm25-frag,")
    assert all(name in message for name in SYSTEMS)
    assert isinstance(caught.value, ValueError)  # what `ffr eval` reports as a usage error


def test_report_legend_describes_the_registered_systems_it_shows() -> None:
    text = render_markdown({"x/single": {"bm25-utt": {"n": 2.0, "f1": 0.5}, "mine": {"n": 1.0}}})
    assert "Systems:" in text
    assert f"- `bm25-utt`: {SYSTEMS.entry('bm25-utt').description}" in text
    assert "`fem`" not in text and "- `mine`" not in text  # only shown, only registered ones


def test_registry_imports_a_named_factory_on_first_use() -> None:
    registry = Registry(
        "part", {"join": Entry("joins paths", "os.path:join"), "len": Entry("", len)}
    )
    assert registry.factory("join")("a", "b") == "a/b" and registry.factory("len") is len
    assert registry.names() == ("join", "len") and "join" in registry
    with pytest.raises(UnknownNameError, match=r"^unknown part 'x'; known: join, len$"):
        registry.factory("x")


def test_the_registry_marks_the_baselines_and_built_systems_carry_the_mark() -> None:
    assert set(BASELINE_NAMES) == {
        "bm25-utt", "bm25-frag", "dense-minilm", "position-prior", "overlap-window",
        "minilm-window", "zsum-runs", "whole-dialogue",
    }  # fmt: skip
    for name in ("bm25-utt", "fem", "ffrs", "reader", "f2rvlm", "zsum-runs"):
        assert build_system(name).baseline is (name in BASELINE_NAMES), name
