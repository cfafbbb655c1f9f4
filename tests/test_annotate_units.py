"""Pure parts of annotate push/pull: label configs, task building, annotation conversion, settings.

No server here; the Label Studio round trips are in tests/test_annotate_push_pull.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmner_data.annotate.label_config import (
    LabelConfigError,
    check_config,
    config_labels,
    render_label_config,
)
from mmner_data.annotate.pull import annotator_id, convert_annotation, region_spans
from mmner_data.annotate.push import (
    PostItem,
    build_task,
    item_score,
    local_files_url,
    prediction_result,
)
from mmner_data.annotate.settings import build_annotate_settings
from mmner_data.config import RecipeError
from mmner_data.schema import EntitySpan
from mmner_data.text.spans import spans_to_tags
from mmner_data.text.tokenize import tokenize

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TYPES = ("PER", "ORG", "LOC", "MISC")


def _region(start: int, end: int, text: str, label: str) -> dict:
    return {
        "from_name": "label",
        "to_name": "text",
        "type": "labels",
        "value": {"start": start, "end": end, "text": text[start:end], "labels": [label]},
    }


# -- label configs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "name"), [("annotate", "ner_text_image.xml"), ("review", "review.xml")]
)
def test_shipped_label_configs_are_the_rendered_defaults(kind: str, name: str) -> None:
    shipped = (REPO / "label_configs" / name).read_text(encoding="utf-8")
    assert shipped == render_label_config(DEFAULT_TYPES, kind)
    assert config_labels(shipped) == list(DEFAULT_TYPES)
    for tag in ('<Image name="image" value="$image"', '<Text name="text" value="$text"'):
        assert tag in shipped


def test_render_uses_the_recipe_types_and_a_user_template() -> None:
    xml = render_label_config(("PER", "EVENT", "PRODUCT"))
    assert config_labels(xml) == ["PER", "EVENT", "PRODUCT"]
    template = (
        '<View><Text name="text" value="$text"/><Labels name="label" toName="text">'
        '<Label value="OLD"/></Labels><Choices name="ok" toName="text"><Choice value="y"/>'
        "</Choices></View>"
    )
    custom = render_label_config(("A", "B"), template=template)
    assert config_labels(custom) == ["A", "B"] and '<Choice value="y"' in custom


@pytest.mark.parametrize(
    "template",
    [
        "<View><Text name='text' value='$text'/></View>",  # no Labels
        "<View><Labels name='label' toName='other'/><Text name='text' value='$text'/></View>",
        "<View><Labels name='label' toName='text'/><Text name='text' value='$body'/></View>",
        "<View><Labels",  # not XML
    ],
)
def test_unusable_templates_are_rejected(template: str) -> None:
    with pytest.raises(LabelConfigError):
        render_label_config(DEFAULT_TYPES, template=template)


def test_check_config_names_the_difference() -> None:
    xml = render_label_config(("PER", "LOC"))
    assert check_config(xml, ("LOC", "PER")) is None  # order does not matter
    why = check_config(xml, DEFAULT_TYPES)
    assert why == "its labels are PER, LOC but the recipe's entity_types are PER, ORG, LOC, MISC"
    assert check_config("<View/>", DEFAULT_TYPES) is not None


# -- tasks and predictions --------------------------------------------------------------------


def test_prediction_result_golden_and_drops_bad_spans() -> None:
    text = "Eileen Collins flew for NASA"
    spans = [
        EntitySpan(0, 14, "PER", 0.75),
        EntitySpan(24, 28, "ORG", 0.5),
        EntitySpan(20, 40, "ORG", 0.5),  # out of range
        EntitySpan(0, 6, "EVENT", 0.5),  # not a label of the project
    ]
    items, dropped = prediction_result(text, spans, DEFAULT_TYPES)
    assert dropped == 2
    assert items == [
        {
            "from_name": "label",
            "to_name": "text",
            "type": "labels",
            "value": {"start": 0, "end": 14, "text": "Eileen Collins", "labels": ["PER"]},
            "score": 0.75,
        },
        {
            "from_name": "label",
            "to_name": "text",
            "type": "labels",
            "value": {"start": 24, "end": 28, "text": "NASA", "labels": ["ORG"]},
            "score": 0.5,
        },
    ]
    assert item_score(spans[:2], None) == pytest.approx(0.625)
    assert item_score(spans[:2], 0.9) == 0.9
    assert item_score([EntitySpan(0, 1, "PER")], None) is None


def test_build_task_and_local_files_url(tmp_path: Path) -> None:
    item = PostItem("mastodon:1", "Hi Paris", "fr", "images/ab/abc.jpg")
    task = build_task(item, "/data/local-files/?d=x.jpg", [{"model_version": "m", "result": []}])
    assert task == {
        "data": {
            "text": "Hi Paris",
            "image": "/data/local-files/?d=x.jpg",
            "post_id": "mastodon:1",
            "lang": "fr",
        },
        "predictions": [{"model_version": "m", "result": []}],
    }
    assert "predictions" not in build_task(item, "", [])
    image = tmp_path / "store dir" / "images" / "ab" / "abc.jpg"
    assert local_files_url(tmp_path, image) == "/data/local-files/?d=store%20dir/images/ab/abc.jpg"


# -- pulled annotations -----------------------------------------------------------------------


def test_convert_annotation_golden_with_snapping() -> None:
    text = "Thomas Pesquet à Toulouse avec le CNES !"
    result = [
        _region(0, 14, text, "PER"),
        {**_region(17, 22, text, "LOC")},  # "Toulo": off-token, snapped to "Toulouse"
        _region(34, 38, text, "ORG"),
        {"from_name": "other", "to_name": "text", "type": "choices", "value": {"choices": ["x"]}},
    ]
    conv = convert_annotation(text, result, DEFAULT_TYPES)
    assert conv.problem is None and conv.snapped == 1
    assert conv.spans == [
        {"start": 0, "end": 14, "label": "PER"},
        {"start": 17, "end": 22, "label": "LOC", "snapped": [17, 25]},
        {"start": 34, "end": 38, "label": "ORG"},
    ]
    assert conv.tags == ["B-PER", "I-PER", "O", "B-LOC", "O", "O", "B-ORG", "O"]
    strict = convert_annotation(text, result, DEFAULT_TYPES, snap="strict")
    assert strict.tags is None and "token boundaries" in (strict.problem or "")


def test_convert_annotation_realigns_utf16_offsets_and_reports_overlaps() -> None:
    text = "🚀🚀 Paris"
    # An older client counted UTF-16 units: each rocket is two.
    result = [
        {
            "from_name": "label",
            "to_name": "text",
            "type": "labels",
            "value": {"start": 5, "end": 10, "text": "Paris", "labels": ["LOC"]},
        }
    ]
    conv = convert_annotation(text, result, DEFAULT_TYPES)
    assert conv.spans == [{"start": 3, "end": 8, "label": "LOC"}]
    assert conv.tags == ["O", "O", "B-LOC"]
    clash = convert_annotation(
        "New York City", [_region(0, 8, "New York City", "LOC"), _region(4, 13, "New York City", "LOC")],
        DEFAULT_TYPES,
    )  # fmt: skip
    assert clash.tags is None and "overlapping" in (clash.problem or "")
    assert len(clash.spans) == 2  # the spans are kept as given


def test_annotator_ids_never_carry_emails() -> None:
    assert annotator_id(7) == "ls:7"
    assert annotator_id({"id": 3, "email": "a@b.c"}) == "ls:3"
    assert annotator_id(None) == "ls:unknown"


_WORDS = st.sampled_from(
    ["Paris", "l'Élysée", "NASA", "🚀", "Jean-Luc", "@anna", "#Berlin", "und", "!"]
)


@settings(max_examples=150, deadline=None)
@given(
    words=st.lists(_WORDS, min_size=1, max_size=12),
    seps=st.lists(st.sampled_from([" ", "  ", "\n"]), min_size=12, max_size=12),
    picks=st.lists(
        st.tuples(st.integers(0, 11), st.integers(1, 3), st.sampled_from(DEFAULT_TYPES))
    ),
)
def test_pull_conversion_matches_the_converters(words, seps, picks) -> None:  # type: ignore[no-untyped-def]
    """LS regions on token boundaries come back as the same spans and the converters' tags."""
    text = "".join(w + s for w, s in zip(words, seps, strict=False)).rstrip()
    tokens = tokenize(text)
    spans: list[EntitySpan] = []
    taken: set[int] = set()
    for first, n, label in picks:
        idx = range(first, min(first + n, len(tokens)))
        if not idx or taken & set(idx):
            continue
        taken |= set(idx)
        spans.append(EntitySpan(tokens[idx[0]].start, tokens[idx[-1]].end, label))
    result = [_region(s.start, s.end, text, s.label) for s in spans]
    assert region_spans(text, result) == sorted(spans)
    conv = convert_annotation(text, result, DEFAULT_TYPES)
    assert conv.problem is None and conv.snapped == 0
    assert conv.tags == spans_to_tags(text, tokens, spans)
    assert [(d["start"], d["end"], d["label"]) for d in conv.spans] == [
        (s.start, s.end, s.label) for s in sorted(spans)
    ]


# -- settings ---------------------------------------------------------------------------------


def test_settings_read_secrets_from_named_env_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_LS_URL", "http://ls.example:8080/")
    monkeypatch.setenv("MY_LS_KEY", "secret-value")
    s = build_annotate_settings({"url_env": "MY_LS_URL", "api_key_env": "MY_LS_KEY"})
    assert s.resolved_url() == "http://ls.example:8080"
    assert s.resolved_api_key() == "secret-value"
    assert "secret-value" not in s.model_dump_json()
    monkeypatch.delenv("MY_LS_KEY")
    with pytest.raises(RecipeError, match="set MY_LS_KEY"):
        s.resolved_api_key()


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"api_key": "abc"}, "annotate.api_key: unknown key"),
        ({"api_key_env": "not a name"}, "annotate.api_key_env"),
        ({"overlap": 0}, "annotate.overlap"),
        ({"overlap_fraction": 1.5}, "annotate.overlap_fraction"),
        ({"images": "s3"}, "annotate.images"),
        ({"url": "ftp://x"}, "annotate.url"),
    ],
)
def test_bad_settings_name_the_key(section: dict, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        build_annotate_settings(section)


def test_overlap_settings() -> None:
    s = build_annotate_settings({"overlap": 2}, {"overlap_fraction": 0.25, "batch_size": None})
    assert (s.maximum_annotations(), s.overlap_cohort_percentage()) == (2, 25)
    assert s.batch_size == 500 and s.image_mode() == "local-files"
    assert build_annotate_settings({"image_url_base": "http://h/i/"}).image_mode() == "url"


def test_image_url_base_points_into_the_store_images_folder(tmp_path: Path) -> None:
    from mmner_data.annotate.push import PushError, _check_image_serving, _image_urls
    from mmner_data.store import CorpusStore

    with CorpusStore(tmp_path / "store") as st:
        item = PostItem("p", "t", "en", "images/ab/abc def.jpg")
        s = build_annotate_settings({"image_url_base": "http://imgs.example:8000/store/"})
        assert _check_image_serving(st, s, [item]) is None
        url = _image_urls(st, None, s, 0, [item], None)  # type: ignore[arg-type]
        assert url(item) == "http://imgs.example:8000/store/ab/abc%20def.jpg"
        assert url(PostItem("q", "t", "en", None)) == ""
        local = build_annotate_settings({"document_root": str(tmp_path / "elsewhere")})
        with pytest.raises(PushError, match="not under the Label Studio document root"):
            _check_image_serving(st, local, [item])
        assert _check_image_serving(st, build_annotate_settings({"images": "none"}), [item]) is None
