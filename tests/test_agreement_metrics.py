"""Agreement metrics: hand-computed goldens, reference implementations, edge cases, report files."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import replace

import krippendorff
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa

from mmner_data.agreement import (
    AgreementError,
    AnnotatedItem,
    TokenSpan,
    agreement_report,
    bio_to_spans,
    cohen_kappa,
    fleiss_kappa,
    krippendorff_alpha,
    pairwise_cohen_kappa,
    pairwise_span_f1,
    reliability_matrix,
    span_f1,
    spans_to_bio,
    type_confusion,
    write_report,
)
from mmner_data.agreement.sequences import (
    DEGENERATE_NOTE,
    NO_SPANS_NOTE,
    NO_TOKENS_EXCL_NOTE,
    tag_type,
)

I = AnnotatedItem  # noqa: E741
TOL = 1e-9


def item(item_id: str, by: dict[str, list[str]], lang: str = "en") -> AnnotatedItem:
    n = len(next(iter(by.values())))
    return AnnotatedItem(item_id, lang, [f"t{i}" for i in range(n)], by)


# --- BIO helpers ---------------------------------------------------------------------------


def test_bio_to_spans_and_back() -> None:
    tags = ["B-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG", "I-ORG"]
    spans = bio_to_spans(tags)
    assert spans == [
        TokenSpan(0, 2, "PER"),
        TokenSpan(3, 4, "LOC"),  # a stray I- starts a span
        TokenSpan(4, 5, "LOC"),  # B- after LOC starts a new one
        TokenSpan(5, 7, "ORG"),  # type change starts a new one
    ]
    assert bio_to_spans(spans_to_bio(spans, len(tags))) == spans
    with pytest.raises(AgreementError, match="overlaps"):
        spans_to_bio([TokenSpan(0, 2, "PER"), TokenSpan(1, 3, "LOC")], 4)
    assert tag_type("B-MISC") == "MISC" and tag_type("O") == "O"


# --- golden values -------------------------------------------------------------------------


def test_perfect_agreement_is_one_everywhere() -> None:
    by = {"a": ["B-PER", "I-PER", "O", "B-LOC"], "b": ["B-PER", "I-PER", "O", "B-LOC"]}
    items = [item("1", by), item("2", {"a": ["O", "B-ORG"], "b": ["O", "B-ORG"]})]
    for mode in ("bio", "type"):
        for excl in (False, True):
            assert cohen_kappa(items, "a", "b", mode=mode, exclude_all_o=excl).value == 1.0
            assert fleiss_kappa(items, mode=mode, exclude_all_o=excl).value == 1.0
            assert krippendorff_alpha(items, mode=mode, exclude_all_o=excl).value == 1.0
    for match in ("exact", "partial"):
        assert span_f1(items, "a", "b", match=match).micro.value == 1.0


def test_systematic_disagreement_has_hand_computed_negative_kappa() -> None:
    # a: PER O O, b: O PER O (type labels).
    # p_o = 1/3; marginals a = b = {PER: 1, O: 2}; p_e = (1·1 + 2·2)/9 = 5/9
    # kappa = (1/3 - 5/9) / (1 - 5/9) = (-2/9) / (4/9) = -0.5
    items = [item("1", {"a": ["B-PER", "O", "O"], "b": ["O", "B-PER", "O"]})]
    k = cohen_kappa(items, "a", "b")
    assert k.value == pytest.approx(-0.5, abs=TOL)
    assert (k.n_items, k.n_annotators, k.n_tokens, k.annotators) == (1, 2, 3, ("a", "b"))
    # Excluding token 2 (both O): p_o = 0, p_e = (1·1 + 1·1)/4 = 1/2 -> kappa = -1
    k_ex = cohen_kappa(items, "a", "b", exclude_all_o=True)
    assert k_ex.value == pytest.approx(-1.0, abs=TOL) and k_ex.n_tokens == 2
    # Fleiss: P_i = 0, 0, 1 -> P̄ = 1/3; p_PER = 2/6, p_O = 4/6 -> P_e = 5/9 -> -0.5
    assert fleiss_kappa(items).value == pytest.approx(-0.5, abs=TOL)
    # Krippendorff (nominal): coincidences o_PO = o_OP = 2, o_OO = 2; n_PER = 2, n_O = 4, n = 6
    # alpha = 1 - (n - 1) · Σ_{c≠k} o_ck / Σ_{c≠k} n_c n_k = 1 - 5 · 4 / 16 = -0.25
    assert krippendorff_alpha(items).value == pytest.approx(-0.25, abs=TOL)


def test_excluding_all_o_tokens_removes_the_inflation() -> None:
    # 10 tokens; a marks PER on 0-1, b on 0 only.
    # all tokens: p_o = 9/10, marginals a {PER 2, O 8}, b {PER 1, O 9}
    #   p_e = (2·1 + 8·9)/100 = 0.74 -> kappa = (0.9 - 0.74)/(0.26) = 8/13
    # excluding the 8 tokens both tagged O: a [PER, PER], b [PER, O]
    #   p_o = 1/2, p_e = (2·1 + 0·1)/4 = 1/2 -> kappa = 0
    a = ["B-PER", "I-PER"] + ["O"] * 8
    b = ["B-PER", "O"] + ["O"] * 8
    items = [item("1", {"a": a, "b": b})]
    assert cohen_kappa(items, "a", "b").value == pytest.approx(8 / 13, abs=TOL)
    excl = cohen_kappa(items, "a", "b", exclude_all_o=True)
    assert excl.value == pytest.approx(0.0, abs=TOL)
    assert excl.n_tokens == 2
    # bio labels: a [B-PER, I-PER], b [B-PER, O] on the kept tokens -> p_e = (1·1)/4,
    # p_o = 1/2 -> kappa = (1/2 - 1/4)/(3/4) = 1/3
    bio = cohen_kappa(items, "a", "b", mode="bio", exclude_all_o=True)
    assert bio.value == pytest.approx(1 / 3, abs=TOL)


def test_missing_annotator_hand_computed() -> None:
    # c did not label item 2.
    items = [
        item("1", {"a": ["B-PER", "O"], "b": ["B-PER", "O"], "c": ["O", "O"]}),
        item("2", {"a": ["B-LOC", "O"], "b": ["B-LOC", "O"]}),
    ]
    pairs = pairwise_cohen_kappa(items)
    ab, ac = pairs.pair("a", "b"), pairs.pair("c", "a")
    assert ab is not None and ac is not None
    assert ab.value == 1.0 and (ab.n_items, ab.n_tokens) == (2, 4)
    # a [PER, O] vs c [O, O]: p_o = 1/2, p_e = (1·0 + 1·2)/4 = 1/2 -> 0
    assert ac.value == pytest.approx(0.0, abs=TOL) and (ac.n_items, ac.n_tokens) == (1, 2)
    assert pairs.mean.value == pytest.approx(1 / 3, abs=TOL)
    assert (pairs.mean.n_items, pairs.mean.n_tokens, pairs.mean.detail["n_token_pairs"]) == (
        2,
        4,
        8,
    )
    # excluding all-O: only token 0 of each item has a non-O tag from someone
    excl = pairwise_cohen_kappa(items, exclude_all_o=True).mean
    assert (excl.n_items, excl.n_tokens, excl.detail["n_token_pairs"]) == (2, 2, 4)
    # Fleiss over a, b, c uses item 1 only: P = 1/3, 1 -> P̄ = 2/3; p = 1/3, 2/3 -> P_e = 5/9
    # kappa = (2/3 - 5/9)/(4/9) = 1/4
    fl = fleiss_kappa(items)
    assert fl.value == pytest.approx(0.25, abs=TOL) and (fl.n_items, fl.n_tokens) == (1, 2)
    # Krippendorff with c missing on item 2 (units {P,P,O} {O,O,O} {L,L} {O,O}):
    # o_PP = 1, o_PO = o_OP = 1, o_OO = 3 + 2, o_LL = 2; n_P = 2, n_O = 6, n_L = 2, n = 10
    # alpha = 1 - 9 · 2 / (2 · (2·6 + 2·2 + 6·2)) = 1 - 18/56 = 19/28
    al = krippendorff_alpha(items)
    assert al.value == pytest.approx(19 / 28, abs=TOL)
    assert (al.n_items, al.n_annotators, al.n_tokens) == (2, 3, 4)
    assert al.detail["n_ratings"] == 10


def test_single_identical_category_is_one_with_note_and_matches_sklearn_convention() -> None:
    items = [item("1", {"a": ["O", "O", "O"], "b": ["O", "O", "O"]})]
    k = cohen_kappa(items, "a", "b")
    assert k.value == 1.0 and k.note == DEGENERATE_NOTE
    assert cohen_kappa_score(["O"] * 3, ["O"] * 3, replace_undefined_by=1.0) == 1.0
    assert fleiss_kappa(items).value == 1.0
    assert krippendorff_alpha(items).value == 1.0
    excl = cohen_kappa(items, "a", "b", exclude_all_o=True)
    assert excl.value is None and excl.note == NO_TOKENS_EXCL_NOTE and excl.n_tokens == 0
    f1 = span_f1(items, "a", "b")
    assert f1.micro.value is None and f1.micro.note == NO_SPANS_NOTE


# --- span F1 -------------------------------------------------------------------------------


def test_span_f1_exact_vs_partial() -> None:
    # a: PER[0,2) LOC[3,4); b: PER[0,3) LOC[3,4)
    items = [
        item(
            "1", {"a": ["B-PER", "I-PER", "O", "B-LOC"], "b": ["B-PER"] + ["I-PER"] * 2 + ["B-LOC"]}
        )
    ]
    exact = span_f1(items, "a", "b", match="exact")
    partial = span_f1(items, "a", "b", match="partial")
    assert exact.micro.value == pytest.approx(2 * 1 / 4)  # 1 matched of 2 + 2 spans
    assert exact.micro.detail == {"matched": 1, "n_spans": 4, "spans_a": 2, "spans_b": 2}
    assert partial.micro.value == 1.0
    assert exact.per_type["PER"].value == 0.0 and exact.per_type["LOC"].value == 1.0
    assert partial.per_type["PER"].value == 1.0


def test_partial_match_is_one_to_one_and_type_sensitive() -> None:
    # a: one PER over 4 tokens; b: two PER spans inside it -> only one may match: 2·1/3
    items = [
        item(
            "1",
            {"a": ["B-PER", "I-PER", "I-PER", "I-PER"], "b": ["B-PER", "I-PER", "B-PER", "I-PER"]},
        ),
        item("2", {"a": ["B-PER", "I-PER"], "b": ["B-ORG", "I-ORG"]}),  # same span, other type
    ]
    one = span_f1(items[:1], "a", "b", match="partial")
    assert one.micro.value == pytest.approx(2 / 3) and one.micro.detail["matched"] == 1
    flipped = [
        I("f", "en", ["x"] * 4, {"a": items[0].by_annotator["b"], "b": items[0].by_annotator["a"]})
    ]
    assert span_f1(flipped, "a", "b", match="partial").micro.detail["matched"] == 1
    assert span_f1(items[:1], "a", "b", match="exact").micro.value == 0.0
    other = span_f1(items[1:], "a", "b", match="partial")
    assert other.micro.value == 0.0
    assert other.per_type["PER"].value == 0.0 and other.per_type["ORG"].value == 0.0


def test_span_f1_mean_over_pairs_vs_pooled() -> None:
    items = [
        item("1", {"a": ["B-PER", "O"], "b": ["B-PER", "O"], "c": ["O", "B-LOC"]}),
        item("2", {"a": ["B-LOC", "B-PER"], "b": ["B-LOC", "O"]}),
    ]
    s = pairwise_span_f1(items, match="exact")
    # a-b: matched 2 of 3 + 2 spans -> 0.8; a-c: 0 of 1 + 1 -> 0; b-c: 0 of 1 + 1 -> 0
    assert [round(p.micro.value or 0, 9) for p in s.pairs] == [0.8, 0.0, 0.0]
    assert s.mean.value == pytest.approx(0.8 / 3)
    assert s.pooled.value == pytest.approx(2 * 2 / (5 + 2 + 2))
    # PER: a-b matched 1 of 2 + 1 spans, a-c 0 of 1 + 0, b-c 0 of 1 + 0 -> 2 · 1 / 5
    assert s.per_type_pooled["PER"].value == pytest.approx(2 * 1 / 5)
    assert (s.mean.n_items, s.mean.n_annotators, s.mean.n_tokens) == (2, 3, 4)


# --- reference implementations -------------------------------------------------------------

TAGS = ["O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG"]
NAMES = ["a", "b", "c", "d"]


@st.composite
def annotated_items(draw: st.DrawFn, min_items: int = 1) -> list[AnnotatedItem]:
    n_ann = draw(st.integers(2, 4))
    names = NAMES[:n_ann]
    out = []
    for k in range(draw(st.integers(min_items, 6))):
        n_tok = draw(st.integers(1, 7))
        who = draw(st.sets(st.sampled_from(names), min_size=2, max_size=n_ann))
        by = {
            a: draw(st.lists(st.sampled_from(TAGS), min_size=n_tok, max_size=n_tok))
            for a in sorted(who)
        }
        out.append(AnnotatedItem(f"i{k}", draw(st.sampled_from(["en", "fr"])), ["x"] * n_tok, by))
    return out


def _labels(tags: list[str], mode: str) -> list[str]:
    return tags if mode == "bio" else [tag_type(t) for t in tags]


pytestmark = pytest.mark.filterwarnings(
    "ignore:A single label was found:UserWarning",
    "ignore::sklearn.exceptions.UndefinedMetricWarning",
)
HYP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@HYP
@given(annotated_items(), st.sampled_from(["bio", "type"]), st.booleans())
def test_cohen_matches_sklearn(items: list[AnnotatedItem], mode: str, excl: bool) -> None:
    for a, b in itertools.combinations(NAMES, 2):
        shared = [it for it in items if a in it.by_annotator and b in it.by_annotator]
        if not shared:
            continue
        y1, y2 = [], []
        for it in shared:
            for t1, t2 in zip(it.by_annotator[a], it.by_annotator[b], strict=True):
                if excl and t1 == "O" and t2 == "O":
                    continue
                y1 += _labels([t1], mode)
                y2 += _labels([t2], mode)
        got = cohen_kappa(items, a, b, mode=mode, exclude_all_o=excl)  # type: ignore[arg-type]
        assert got.n_tokens == len(y1)
        if not y1:
            assert got.value is None
            continue
        want = cohen_kappa_score(y1, y2, replace_undefined_by=1.0)
        assert got.value is not None and abs(got.value - want) <= TOL


@HYP
@given(annotated_items(), st.sampled_from(["bio", "type"]), st.booleans())
def test_fleiss_matches_statsmodels(items: list[AnnotatedItem], mode: str, excl: bool) -> None:
    panel = sorted({a for it in items for a in it.by_annotator})
    shared = [it for it in items if all(a in it.by_annotator for a in panel)]
    assume(shared)
    rows = []
    for it in shared:
        for tags in zip(*(it.by_annotator[a] for a in panel), strict=True):
            if excl and all(t == "O" for t in tags):
                continue
            rows.append(_labels(list(tags), mode))
    got = fleiss_kappa(items, panel, mode=mode, exclude_all_o=excl)  # type: ignore[arg-type]
    assert got.n_tokens == len(rows) and got.n_annotators == len(panel)
    if not rows:
        assert got.value is None
        return
    cats = sorted({c for r in rows for c in r})
    codes = np.array([[cats.index(c) for c in r] for r in rows])
    if len(cats) == 1:
        assert got.value == 1.0 and got.note == DEGENERATE_NOTE
        return
    table, _ = aggregate_raters(codes)
    want = sm_fleiss_kappa(table, method="fleiss")
    assert got.value is not None and abs(got.value - want) <= TOL


@HYP
@given(annotated_items(), st.sampled_from(["bio", "type"]), st.booleans())
def test_alpha_matches_krippendorff(items: list[AnnotatedItem], mode: str, excl: bool) -> None:
    anns = sorted({a for it in items for a in it.by_annotator})
    cats: dict[str, int] = {}
    columns = []
    for it in items:
        for i in range(len(it.tokens)):
            col = [it.by_annotator[a][i] if a in it.by_annotator else None for a in anns]
            if excl and all(t in (None, "O") for t in col):
                continue
            columns.append(
                [
                    np.nan if t is None else cats.setdefault(_labels([t], mode)[0], len(cats))
                    for t in col
                ]
            )
    got = krippendorff_alpha(items, mode=mode, exclude_all_o=excl)  # type: ignore[arg-type]
    assert got.n_tokens == len(columns)
    if not columns:
        assert got.value is None
        return
    if len(cats) == 1:
        assert got.value == 1.0
        return
    want = krippendorff.alpha(reliability_data=np.array(columns).T, level_of_measurement="nominal")
    assert got.value is not None and abs(got.value - want) <= TOL


@HYP
@given(annotated_items())
def test_span_f1_properties(items: list[AnnotatedItem]) -> None:
    exact = pairwise_span_f1(items, match="exact")
    partial = pairwise_span_f1(items, match="partial")
    for pe, pp in zip(exact.pairs, partial.pairs, strict=True):
        assert pe.annotators == pp.annotators
        if pe.micro.value is None:
            assert pp.micro.value is None
            continue
        assert 0.0 <= pe.micro.value <= pp.micro.value <= 1.0  # type: ignore[operator]
        a, b = pe.annotators
        swapped = span_f1(items, b, a, match="partial")
        assert swapped.micro.value == pp.micro.value


@HYP
@given(annotated_items())
def test_report_is_strict_json_and_never_nan(items: list[AnnotatedItem]) -> None:
    result = agreement_report(items)
    d = result.to_dict()
    text = json.dumps(d, allow_nan=False)  # raises on NaN / inf
    assert json.loads(text) == d
    for mode in ("bio", "type"):
        for var in ("all_tokens", "excluding_all_o"):
            v = result.overall.krippendorff[mode][var].value
            assert v is None or (math.isfinite(v) and -1.0 - TOL <= v <= 1.0 + TOL)


@HYP
@given(annotated_items(min_items=2))
def test_language_sections_equal_the_functions_on_the_subset(items: list[AnnotatedItem]) -> None:
    result = agreement_report(items)
    for lang, section in result.by_lang.items():
        subset = [it for it in items if it.lang == lang]
        for mode in ("bio", "type"):
            for excl in (False, True):
                var = "excluding_all_o" if excl else "all_tokens"
                want = pairwise_cohen_kappa(subset, mode=mode, exclude_all_o=excl)  # type: ignore[arg-type]
                got = section.cohen[mode][var]
                assert got.pairs == want.pairs and got.mean == want.mean
                alpha = krippendorff_alpha(subset, mode=mode, exclude_all_o=excl)  # type: ignore[arg-type]
                got_alpha = section.krippendorff[mode][var]
                # category codes differ between the two encodings: float rounding only
                assert got_alpha.value == pytest.approx(alpha.value, abs=TOL)
                assert replace(got_alpha, value=None) == replace(alpha, value=None)
        assert section.span_f1["partial"] == pairwise_span_f1(subset, match="partial")
        assert section.confusion == type_confusion(subset, labels=result.labels)


def test_reliability_matrix_and_fleiss_panel_choice() -> None:
    items = [
        item("1", {"a": ["B-PER", "O"], "b": ["B-PER", "O"], "c": ["O", "O"]}),
        item("2", {"a": ["O", "O"], "b": ["B-LOC", "O"]}),
        item("3", {"a": ["O", "B-ORG"], "b": ["O", "B-ORG"]}),
    ]
    matrix, anns, cats = reliability_matrix(items)
    assert anns == ["a", "b", "c"] and cats[0] == "O" and matrix.shape == (3, 6)
    assert np.isnan(matrix[2, 2:]).all() and not np.isnan(matrix[:2]).any()
    # panel {a, b} covers 6 tokens × 2 ratings = 12 > {a, b, c}: 2 tokens × 3 = 6
    fl = agreement_report(items).overall.fleiss["type"]["all_tokens"]
    assert fl.annotators == ("a", "b") and fl.n_items == 3 and fl.n_tokens == 6
    assert fl.note is not None and "panel a, b" in fl.note


def test_confusion_is_symmetric_and_counts_pairs() -> None:
    items = [
        item("1", {"a": ["B-PER", "O"], "b": ["B-LOC", "O"], "c": ["B-PER", "O"]}),
    ]
    conf = type_confusion(items)
    m = np.array(conf.matrix)
    assert conf.labels == ["O", "LOC", "PER"]
    assert (m == m.T).all() and m.sum() == 2 * 3 * 2  # 3 pairs × 2 tokens, both directions
    per, loc, o = conf.labels.index("PER"), conf.labels.index("LOC"), conf.labels.index("O")
    assert m[per, per] == 2 and m[per, loc] == 2 and m[o, o] == 6


# --- edge cases ----------------------------------------------------------------------------


def _raises(fn, match: str) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(AgreementError, match=match) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_only_one_annotator() -> None:
    items = [item("1", {"a": ["B-PER"]}), item("2", {"a": ["O"], "b": []})]
    _raises(lambda: agreement_report(items), r"only one annotator \('a'\) labelled any item")
    _raises(lambda: agreement_report([]), "no annotations")


def test_no_item_labelled_by_two() -> None:
    items = [item("1", {"a": ["B-PER"]}), item("2", {"b": ["O"]})]
    _raises(lambda: agreement_report(items), "no item was labelled by at least 2 annotators")
    both = [*items, item("3", {"a": ["O"], "b": ["O"]})]
    _raises(lambda: agreement_report(both, min_annotators=3), "at least 3 annotators")
    _raises(lambda: agreement_report(both, min_annotators=1), "min_annotators must be at least 2")


def test_label_outside_schema_names_label_and_item() -> None:
    items = [item("p1", {"a": ["O"], "b": ["O"]}), item("p7", {"a": ["B-FOO"], "b": ["O"]})]
    msg = _raises(lambda: agreement_report(items, labels=["PER", "LOC"]), "not in the schema")
    assert "'B-FOO'" in msg and "'p7'" in msg and "'a'" in msg
    # tags given as B-/I- in the schema work too
    assert agreement_report(items, labels=["B-FOO", "I-FOO"]).labels == ("FOO",)


def test_malformed_tag_and_length_mismatch() -> None:
    bad = [AnnotatedItem("p2", "en", ["x"], {"a": ["PER"], "b": ["O"]})]
    msg = _raises(lambda: agreement_report(bad), "is not a BIO tag")
    assert "'PER'" in msg and "'p2'" in msg
    short = [AnnotatedItem("p3", "en", ["x", "y"], {"a": ["O"], "b": ["O", "O"]})]
    _raises(lambda: agreement_report(short), r"item 'p3': annotator 'a' has 1 tags for 2 tokens")
    dup = [item("p4", {"a": ["O"], "b": ["O"]}), item("p4", {"a": ["O"], "b": ["O"]})]
    _raises(lambda: agreement_report(dup), "'p4' appears more than once")


def test_pair_and_panel_errors() -> None:
    items = [item("1", {"a": ["O"], "b": ["O"]}), item("2", {"a": ["O"], "c": ["O"]})]
    _raises(lambda: cohen_kappa(items, "b", "c"), "'b' and 'c' labelled no item in common")
    _raises(lambda: cohen_kappa(items, "a", "z"), "annotator 'z' labelled no item")
    _raises(lambda: cohen_kappa(items, "a", "a"), "two different annotators")
    _raises(lambda: fleiss_kappa(items, ["a", "b", "c"]), "no item was labelled by all of")
    _raises(lambda: fleiss_kappa(items, ["a"]), "at least two annotators")
    _raises(lambda: cohen_kappa(items, "a", "b", mode="bioes"), "unknown label mode")  # type: ignore[arg-type]
    _raises(lambda: span_f1(items, "a", "b", match="fuzzy"), "unknown span match")  # type: ignore[arg-type]


def test_annotator_who_labelled_nothing_is_excluded_with_warning() -> None:
    items = [
        item("1", {"a": ["B-PER", "O"], "b": ["B-PER", "O"], "ghost": []}),
        item("2", {"a": ["O", "O"], "b": ["O", "B-LOC"], "ghost": []}),
    ]
    r = agreement_report(items)
    assert r.overall.annotators == ("a", "b")
    assert "annotator 'ghost' labelled nothing and is excluded" in r.warnings
    assert r.overall.fleiss["type"]["all_tokens"].annotators == ("a", "b")


def test_per_language_sections_and_language_errors() -> None:
    items = [
        item("1", {"a": ["B-PER", "O"], "b": ["B-PER", "O"]}, lang="en"),
        item("2", {"a": ["B-LOC", "O"], "b": ["O", "O"]}, lang="fr"),
        item("3", {"a": ["O", "O"]}, lang="de"),
    ]
    r = agreement_report(items)
    assert set(r.by_lang) == {"de", "en", "fr"}
    assert r.by_lang["en"].cohen["type"]["all_tokens"].mean.value == 1.0
    assert r.by_lang["fr"].n_items == 1 and r.by_lang["fr"].n_tokens == 2
    assert r.by_lang["de"].error is not None and "only one annotator" in r.by_lang["de"].error
    assert any("language 'de'" in w for w in r.warnings)
    assert r.n_items_input == 3 and r.n_items_used == 2
    # one pair; PER matched, a's LOC unmatched: 2 · 1 / (2 + 1)
    assert r.overall.span_f1["exact"].mean.value == pytest.approx(2 / 3)


# --- report files --------------------------------------------------------------------------


def test_write_report_files_and_json_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    items = [
        item(
            "1", {"a": ["B-PER", "I-PER", "O"], "b": ["B-PER", "O", "O"], "c": ["B-ORG", "O", "O"]}
        ),
        item("2", {"a": ["O", "B-LOC", "O"], "b": ["O", "B-LOC", "O"]}, lang="fr"),
    ]
    result = agreement_report(items, labels=["PER", "LOC", "ORG"])
    paths = write_report(result, tmp_path / "out")
    for p in (paths.json, paths.markdown, paths.heatmap, paths.confusion):
        assert p.exists() and p.stat().st_size > 0 and p.parent == tmp_path / "out"
    for png in (paths.heatmap, paths.confusion):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(paths.json.read_text()) == result.to_dict()
    md = paths.markdown.read_text()
    assert "| scope | items | annotators | tokens | span F1 exact" in md
    assert "| overall | 2 | 3 | 6 |" in md and "| fr | 1 | 2 | 3 |" in md
    assert "| a – b |" in md and "| PER |" in md
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left behind
