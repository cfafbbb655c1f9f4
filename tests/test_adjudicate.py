"""Adjudication: majority vote per span, review queue reasons, provenance, validation."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmner_data.agreement import (
    AgreementError,
    AnnotatedItem,
    ReviewReason,
    TokenSpan,
    adjudicate,
    bio_to_spans,
    item_agreement,
)

PER01 = ["B-PER", "I-PER", "O", "O"]


def item(by: dict[str, list[str]], item_id: str = "p1") -> AnnotatedItem:
    n = len(next(iter(by.values())))
    return AnnotatedItem(item_id, "en", [f"w{i}" for i in range(n)], by)


def test_clear_majority_with_provenance() -> None:
    it = item(
        {
            "a": ["B-PER", "I-PER", "O", "B-LOC"],
            "b": ["B-PER", "I-PER", "O", "B-LOC"],
            "c": ["B-PER", "I-PER", "O", "O"],
        }
    )
    res = adjudicate([it])
    (gold,) = res.items
    assert gold.spans == [TokenSpan(0, 2, "PER"), TokenSpan(3, 4, "LOC")]
    assert [p.span for p in gold.provenance] == gold.spans
    per, loc = gold.provenance
    assert per.voters == ("a", "b", "c") and per.share == 1.0
    assert loc.voters == ("a", "b") and loc.share == pytest.approx(2 / 3)
    assert not gold.needs_review and res.review_queue == [] and res.gold == [gold]
    assert gold.tags() == ["B-PER", "I-PER", "O", "B-LOC"]
    assert gold.annotators == ("a", "b", "c")


def test_three_annotators_two_agree_on_boundaries() -> None:
    it = item({"a": PER01, "b": PER01, "c": ["B-PER", "I-PER", "I-PER", "O"]})
    (gold,) = adjudicate([it]).items
    assert gold.spans == [TokenSpan(0, 2, "PER")]
    assert gold.provenance[0].voters == ("a", "b")
    assert [r.span for r in gold.rejected] == [TokenSpan(0, 3, "PER")]
    assert [r.voters for r in gold.rejected] == [("c",)]
    assert not gold.needs_review


def test_tie_between_entity_and_no_entity_goes_to_review() -> None:
    it = item({"a": PER01, "b": ["O"] * 4})
    res = adjudicate([it])
    (gold,) = res.items
    assert gold.spans == [] and gold.needs_review and res.gold == []
    (entry,) = res.review_queue
    assert entry.reason is ReviewReason.TIE and entry.item_id == "p1"
    assert [c.span for c in entry.candidates] == [TokenSpan(0, 2, "PER")]
    assert entry.candidates[0].voters == ("a",) and entry.candidates[0].share == 0.5
    assert entry.no_entity_voters == ("b",)
    # the reviewer reads the words, not token indices
    assert 'PER "w0 w1" (tokens 0-1) 1/2' in entry.detail


def test_tie_between_types_and_three_way_split() -> None:
    two = item({"a": PER01, "b": ["B-ORG", "I-ORG", "O", "O"]}, "two")
    three = item({"a": PER01, "b": ["B-ORG", "I-ORG", "O", "O"], "c": ["O"] * 4}, "three")
    res = adjudicate([two, three])
    assert [(e.item_id, e.reason) for e in res.review_queue] == [
        ("two", ReviewReason.TIE),
        ("three", ReviewReason.TIE),
    ]
    assert {c.span.type for c in res.review_queue[1].candidates} == {"PER", "ORG"}


def test_minority_against_clear_no_entity_is_rejected_without_review() -> None:
    it = item({"a": PER01, "b": ["O"] * 4, "c": ["O"] * 4})
    (gold,) = adjudicate([it]).items
    assert gold.spans == [] and not gold.needs_review
    assert [r.span for r in gold.rejected] == [TokenSpan(0, 2, "PER")]


def test_plurality_below_threshold_is_no_majority() -> None:
    org = ["B-ORG", "I-ORG", "O", "O"]
    it = item({"a": PER01, "b": PER01, "c": org, "d": ["O"] * 4})
    (entry,) = adjudicate([it]).review_queue
    assert entry.reason is ReviewReason.NO_MAJORITY
    # with ">= 0.5" the PER span (2 of 4) passes
    (gold,) = adjudicate([it], inclusive=True).items
    assert gold.spans == [TokenSpan(0, 2, "PER")] and not gold.needs_review


def test_overlapping_winners_go_to_review() -> None:
    late = ["O", "B-PER", "I-PER", "O"]
    it = item({"a": PER01, "b": PER01, "c": late, "d": late})
    # strict majority: 2 of 4 each, nothing passes and the lead is shared -> tie
    (strict,) = adjudicate([it]).review_queue
    assert strict.reason is ReviewReason.TIE
    # ">= 0.5": both pass but overlap -> neither is gold
    res = adjudicate([it], threshold=0.5, inclusive=True)
    (entry,) = res.review_queue
    assert entry.reason is ReviewReason.OVERLAP
    assert {c.span for c in entry.candidates} == {TokenSpan(0, 2, "PER"), TokenSpan(1, 3, "PER")}
    assert res.items[0].spans == []


def test_review_in_one_cluster_keeps_gold_elsewhere() -> None:
    it = item(
        {
            "a": ["B-PER", "O", "O", "B-LOC"],
            "b": ["B-PER", "O", "O", "O"],
        }
    )
    (gold,) = adjudicate([it]).items
    assert gold.spans == [TokenSpan(0, 1, "PER")]
    assert gold.needs_review and [e.reason for e in gold.review] == [ReviewReason.TIE]


def test_low_agreement_item_goes_to_review() -> None:
    # a {PER[0,2) LOC[3,4)}, b {PER[0,2)}, c {ORG[3,4)}:
    # F1 a-b = 2·1/3, a-c = 0, b-c = 0 -> mean 2/9
    it = item(
        {
            "a": ["B-PER", "I-PER", "O", "B-LOC"],
            "b": ["B-PER", "I-PER", "O", "O"],
            "c": ["O", "O", "O", "B-ORG"],
        }
    )
    spans = {a: bio_to_spans(t) for a, t in it.by_annotator.items()}
    assert item_agreement(spans) == pytest.approx(2 / 9)
    res = adjudicate([it], min_item_agreement=0.5)
    (entry,) = res.review_queue
    assert entry.reason is ReviewReason.LOW_AGREEMENT and "0.222" in entry.detail
    assert res.items[0].spans == [] and res.items[0].agreement == pytest.approx(2 / 9)
    # without the item threshold PER (2/3) is gold
    assert adjudicate([it]).items[0].spans == [TokenSpan(0, 2, "PER")]


def test_too_few_annotators() -> None:
    single = item({"a": PER01, "b": []})
    res = adjudicate([single])
    assert [e.reason for e in res.review_queue] == [ReviewReason.TOO_FEW_ANNOTATORS]
    assert res.items[0].spans == []
    assert adjudicate([single], min_annotators=1).items[0].spans == [TokenSpan(0, 2, "PER")]
    nobody = AnnotatedItem("p9", "en", ["x"], {})
    assert adjudicate([nobody]).review_queue[0].reason is ReviewReason.TOO_FEW_ANNOTATORS


def test_validation_errors() -> None:
    bad = item({"a": ["B-FOO", "O"], "b": ["O", "O"]}, "p5")
    with pytest.raises(AgreementError, match=r"label 'B-FOO' in item 'p5'"):
        adjudicate([bad], labels=["PER"])
    with pytest.raises(AgreementError, match="threshold"):
        adjudicate([bad], threshold=1.0)
    with pytest.raises(AgreementError, match="threshold"):
        adjudicate([bad], threshold=-0.1)


def test_result_json_round_trip() -> None:
    items = [
        item({"a": PER01, "b": PER01, "c": ["O"] * 4}, "p1"),
        item({"a": PER01, "b": ["O"] * 4}, "p2"),
    ]
    res = adjudicate(items)
    d = res.to_dict()
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert d["items"][0]["spans"] == [{"start": 0, "end": 2, "type": "PER"}]
    assert d["review_queue"][0]["reason"] == "tie" and d["review_queue"][0]["item_id"] == "p2"
    assert d["settings"]["threshold"] == 0.5


TAGS = ["O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


@settings(max_examples=80, deadline=None)
@given(
    st.integers(1, 5).flatmap(
        lambda n_tok: st.dictionaries(
            st.sampled_from("abcde"),
            st.lists(st.sampled_from(TAGS), min_size=n_tok, max_size=n_tok),
            min_size=2,
            max_size=5,
        )
    ),
    st.sampled_from([0.3, 0.5, 0.66]),
    st.booleans(),
)
def test_gold_spans_are_well_formed_majorities(
    by: dict[str, list[str]], threshold: float, inclusive: bool
) -> None:
    it = item(by)
    (gold,) = adjudicate([it], threshold=threshold, inclusive=inclusive).items
    n = len(by)
    gold.tags()  # non-overlapping, in range (raises otherwise)
    for span, prov in zip(gold.spans, gold.provenance, strict=True):
        assert prov.span == span
        voters = {a for a, tags in by.items() if span in bio_to_spans(tags)}
        assert set(prov.voters) == voters
        assert prov.share == len(voters) / n
        assert prov.share >= threshold if inclusive else prov.share > threshold
    decided = set(gold.spans) | {r.span for r in gold.rejected}
    pending = {c.span for e in gold.review for c in e.candidates}
    every = {s for tags in by.values() for s in bio_to_spans(tags)}
    assert decided | pending == every and not (decided & pending)
