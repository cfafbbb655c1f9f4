"""Loading annotations (Label Studio export, store rows) and the stage's settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mmner_data.agreement.load import LoadError, load_from_export, load_from_store
from mmner_data.agreement.pipeline import run_agreement, run_on_export, select_items
from mmner_data.agreement.sequences import AgreementError
from mmner_data.agreement.settings import AgreementSettings, build_agreement_settings
from mmner_data.config import RecipeError
from mmner_data.store import CorpusStore

TEXT = "🚀 Macron à Paris avec l'ONU"
# Macron is [2, 8) and Paris [11, 16) in code points; the emoji is 2 UTF-16 code units.


def region(start: int, end: int, labels: list[str], text: str | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {"start": start, "end": end, "labels": labels}
    if text is not None:
        value["text"] = text
    return {"from_name": "label", "to_name": "text", "type": "labels", "value": value}


def task(annotations: list[dict[str, Any]], **data: Any) -> dict[str, Any]:
    return {
        "id": 1,
        "data": {"text": TEXT, "post_id": "p1", "lang": "fr", **data},
        "annotations": annotations,
    }


def ann(i: int, by: Any, result: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return {
        "id": i,
        "completed_by": by,
        "result": result,
        "was_cancelled": False,
        "updated_at": f"2026-05-0{i}T10:00:00.000000Z",
        **kw,
    }


def write(tmp_path: Path, tasks: Any) -> Path:
    p = tmp_path / "export.json"
    p.write_text(json.dumps(tasks), encoding="utf-8")
    return p


def test_export_records_annotators_offsets_and_statuses(tmp_path: Path) -> None:
    macron = region(2, 8, ["PER"], "Macron")
    paris_utf16 = region(12, 17, ["LOC"], "Paris")  # an old client's UTF-16 offsets
    choice = {"type": "choices", "value": {"choices": ["relevant"]}, "from_name": "rel"}
    tasks = [
        task(
            [
                ann(1, {"id": 5, "email": "ann@example.org"}, [macron, paris_utf16, choice]),
                ann(2, 6, [region(2, 8, ["PER", "ORG"], "Macron")]),
                ann(3, 7, [], was_cancelled=True),
            ]
        )
    ]
    loaded = load_from_export(write(tmp_path, tasks))
    assert loaded.posts["p1"].lang == "fr" and loaded.posts["p1"].text == TEXT
    a, b, c = loaded.annotations
    assert (a.annotator, b.annotator, c.annotator) == ("ls:5", "ls:6", "ls:7")
    assert a.annotation_key == "export.json#1" and a.origin == "ls-export"
    assert [(s.start, s.end, s.label) for s in a.spans] == [(2, 8, "PER"), (11, 16, "LOC")]
    assert TEXT[11:16] == "Paris"
    assert [s.label for s in b.spans] == ["PER", "ORG"]  # two labels: overlapping spans
    assert (a.status, c.status) == ("submitted", "cancelled")
    assert "example.org" not in repr(loaded)
    # two labels on one region cannot both be one token's tag: a named problem
    with pytest.raises(AgreementError, match=r"item 'p1' \(annotator 'ls:6'\).*overlapping"):
        select_items(loaded, AgreementSettings())
    sel = select_items(loaded, AgreementSettings(bad_spans="exclude"))
    assert set(sel.items[0].by_annotator) == {"ls:5", "ls:7"}  # ls:6 excluded, ls:7 cancelled
    assert sel.items[0].by_annotator["ls:7"] == [] and sel.counts["annotations_excluded"] == 1


def test_latest_annotation_of_an_annotator_wins_and_quote_problems_are_named(
    tmp_path: Path,
) -> None:
    tasks = [
        task(
            [
                ann(1, 5, [region(2, 8, ["PER"], "Macron")]),
                ann(3, 5, [region(2, 8, ["ORG"], "Macron")]),  # newer: ORG
                ann(2, 6, [region(2, 8, ["PER"], "Marcon")]),  # quote not in the text
            ]
        )
    ]
    loaded = load_from_export(write(tmp_path, tasks))
    assert loaded.problems == {
        "export.json#2": [
            "item 'p1' (annotator 'ls:6'), region 0: 'Marcon' not found near "
            "offsets 2-8 of the text"
        ]
    }
    with pytest.raises(AgreementError, match=r"'Marcon' not found.*--bad-spans exclude"):
        select_items(loaded, AgreementSettings())
    sel = select_items(loaded, AgreementSettings(bad_spans="exclude"))
    tags = sel.items[0].by_annotator
    assert tags["ls:5"][1] == "B-ORG" and set(tags["ls:6"]) == {"O"}
    assert sel.counts["annotations_superseded"] == 1 and sel.sources["p1"].problems


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a readable JSON file"),
        ('{"a": 1}', "is a list of tasks"),
        ('[{"data": {"text": "x"}, "label": []}]', "not JSON-MIN or CSV"),
        ('[{"annotations": []}]', "has no 'data' object"),
        ('[{"data": {"post_id": 1}, "annotations": []}]', "has no data.text"),
        ('[{"data": {"text": "x"}, "annotations": [{"id": 1, "result": []}]}]', "no user id"),
        (
            '[{"data": {"text": "a b", "post_id": "p"}, "annotations": []},'
            ' {"data": {"text": "a c", "post_id": "p"}, "annotations": []}]',
            "two tasks with different texts",
        ),
    ],
)
def test_bad_export_files(tmp_path: Path, content: str, message: str) -> None:
    p = tmp_path / "e.json"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(LoadError, match=message):
        load_from_export(p)


def _tiny_store(root: Path) -> CorpusStore:
    st = CorpusStore(root)
    with st.transaction() as conn:
        conn.execute(
            "INSERT INTO posts(post_id, source, source_id, text, text_key, lang, status, "
            "ingest_seq) VALUES('p1', 't', '1', ?, 'k', 'fr', 'kept', 1)",
            (TEXT,),
        )
    return st


def _store_ann(st: CorpusStore, key: str, annotator: str, spans: Any) -> None:
    with st.transaction() as conn:
        conn.execute(
            "INSERT INTO annotations(annotation_key, post_id, annotator, origin, status, "
            "spans_json, updated_at, pulled_at) VALUES(?, 'p1', ?, 'label-studio', 'submitted', "
            "?, '2026-05-01T10:00:00Z', 'now')",
            (key, annotator, spans if isinstance(spans, str) else json.dumps(spans)),
        )


def test_store_and_utf16_export_agree(tmp_path: Path) -> None:
    """The store holds code-point offsets; the export an old client's UTF-16 ones."""
    st = _tiny_store(tmp_path / "store")
    _store_ann(
        st,
        "k#1",
        "ls:5",
        [{"start": 2, "end": 8, "label": "PER"}, {"start": 11, "end": 16, "label": "LOC"}],
    )
    _store_ann(
        st,
        "k#2",
        "ls:6",
        [{"start": 2, "end": 8, "label": "PER"}, {"start": 11, "end": 16, "label": "ORG"}],
    )
    tasks = [
        task(
            [
                ann(1, 5, [region(3, 9, ["PER"], "Macron"), region(12, 17, ["LOC"], "Paris")]),
                ann(2, 6, [region(3, 9, ["PER"], "Macron"), region(12, 17, ["ORG"], "Paris")]),
            ]
        )
    ]
    settings = AgreementSettings()
    a = run_agreement(st, settings)
    b = run_on_export(write(tmp_path, tasks), settings, tmp_path / "out")
    assert a.report.to_dict() == b.report.to_dict()
    # by hand: spans {PER, LOC} vs {PER, ORG} → exact F1 = 2·1/4
    assert a.report.overall.span_f1["exact"].mean.value == 0.5
    st.close()


def test_store_rows_that_cannot_be_read(tmp_path: Path) -> None:
    st = _tiny_store(tmp_path / "store")
    _store_ann(st, "k#1", "ls:5", '{"start": 2}')
    with pytest.raises(LoadError, match="annotation 'k#1': spans_json is not a list"):
        load_from_store(st)
    st.close()


def test_settings_from_recipe_section_and_overrides() -> None:
    s = build_agreement_settings(
        {"langs": "EN,fr", "since": "2026-04-01", "review_below": 0.5},
        {"min_annotators": 3, "langs": None, "entity_types": "PER,LOC"},
        entity_types=("PER", "ORG"),
    )
    assert s.langs == ("en", "fr") and s.min_annotators == 3 and s.entity_types == ("PER", "LOC")
    assert s.since is not None and s.since.isoformat() == "2026-04-01T00:00:00+00:00"
    s = build_agreement_settings({}, {"langs": ["de", "es,fr"]}, entity_types=("PER",))
    assert s.langs == ("de", "es", "fr") and s.entity_types == ("PER",) and s.adjudicate
    for section, message in [
        ({"min_annotator": 2}, "agreement.min_annotator: unknown key"),
        ({"threshold": 1.0}, "agreement.threshold"),
        ({"since": "last week"}, "not an ISO 8601 date"),
        ({"langs": ["english"]}, "not a language code"),
        ({"entity_types": ["PER"]}, "top-level entity_types"),
        ({"bad_spans": "ignore"}, "agreement.bad_spans"),
    ]:
        with pytest.raises(RecipeError, match=message):
            build_agreement_settings(section)


# -- Label Studio offsets: code points by convention, UTF-16 only on evidence ---------------------

EMOJI_TEXT = "🎉🎉 Macron in Paris"  # two astral characters: readings differ by 2 after them


def _offsets_export(tmp_path: Path, regions: list[dict]) -> Path:
    return write(tmp_path, [task([ann(1, 5, regions)], text=EMOJI_TEXT)])


def test_offsets_without_text_are_code_points_and_counted_as_unverified(tmp_path: Path) -> None:
    from mmner_data.agreement.load import load_from_export

    loaded = load_from_export(_offsets_export(tmp_path, [region(3, 9, ["PER"], None)]))
    (a,) = loaded.annotations
    assert [(s.start, s.end) for s in a.spans] == [(3, 9)]
    assert EMOJI_TEXT[3:9] == "Macron"
    assert loaded.offsets == {"spans_read_as_codepoints_unverified": 1}
    assert "read as code points" in loaded.warnings[0]


def test_utf16_evidence_in_the_file_decides_the_quote_less_regions(tmp_path: Path) -> None:
    from mmner_data.agreement.load import load_from_export

    # an old client: UTF-16 offsets (each emoji counts 2); one region carries its text
    regions = [region(5, 11, ["PER"], None), region(15, 20, ["LOC"], "Paris")]
    loaded = load_from_export(_offsets_export(tmp_path, regions))
    (a,) = loaded.annotations
    assert sorted((EMOJI_TEXT[s.start : s.end], s.label) for s in a.spans) == [
        ("Macron", "PER"),
        ("Paris", "LOC"),
    ]
    assert loaded.offsets == {"spans_read_as_utf16_by_evidence": 1}


def test_offsets_past_the_text_as_code_points_are_utf16(tmp_path: Path) -> None:
    from mmner_data.agreement.load import load_from_export

    n = len(EMOJI_TEXT)
    loaded = load_from_export(_offsets_export(tmp_path, [region(n - 3, n + 2, ["LOC"], None)]))
    (a,) = loaded.annotations
    assert [EMOJI_TEXT[s.start : s.end] for s in a.spans] == ["Paris"]
    assert loaded.offsets == {"spans_read_as_utf16_out_of_range": 1}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ([{"data": {"text": "a b"}, "annotations": [{"id": 1, "completed_by": 1, "result": 5}]}],
         "'result' is a int"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ([{"data": {"text": "a b", "post_id": {"x": 1}}, "annotations": []}], "post_id"),
    ],
)  # fmt: skip
def test_wrong_shapes_are_one_line_errors(tmp_path: Path, content: Any, message: str) -> None:
    from mmner_data.agreement.load import LoadError, load_from_export

    path = tmp_path / "export.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(LoadError, match=message):
        load_from_export(path)
