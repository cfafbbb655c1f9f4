"""Spans ↔ BIO/BIOES: golden examples, error cases and property tests."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mmner_data.schema import EntitySpan
from mmner_data.text.spans import (
    SpanError,
    TagError,
    align_to_text,
    bio_to_bioes,
    bioes_to_bio,
    check_tags,
    repair_bio,
    snap_span,
    spans_to_tags,
    tags_to_spans,
)
from mmner_data.text.tokenize import Token, tokenize


def _span(text: str, needle: str, label: str, occurrence: int = 0) -> EntitySpan:
    start = -1
    for _ in range(occurrence + 1):
        start = text.index(needle, start + 1)
    return EntitySpan(start, start + len(needle), label)


# --------------------------------------------------------------------------------------------
# Golden examples, one per language


@pytest.mark.parametrize(
    ("text", "entities", "bio"),
    [
        (
            "Obama's speech in New York was great 🇺🇸",
            [("Obama", "PER"), ("New York", "LOC")],
            "B-PER O O O B-LOC I-LOC O O O",
        ),
        (
            "Jean-Luc Mélenchon visite l'Assemblée nationale à Paris.",
            [("Jean-Luc Mélenchon", "PER"), ("Assemblée nationale", "ORG"), ("Paris", "LOC")],
            "B-PER I-PER O O B-ORG I-ORG O B-LOC O",
        ),
        (
            "Angela Merkel besucht Baden-Württemberg #BW",
            [("Angela Merkel", "PER"), ("Baden-Württemberg", "LOC")],
            "B-PER I-PER O B-LOC O",
        ),
        (
            "¡El Real Madrid gana en Málaga! @realmadrid",
            [("Real Madrid", "ORG"), ("Málaga", "LOC"), ("@realmadrid", "ORG")],
            "O O B-ORG I-ORG O O B-LOC O B-ORG",
        ),
    ],
)
def test_golden_languages(text: str, entities: list[tuple[str, str]], bio: str) -> None:
    tokens = tokenize(text)
    spans = [_span(text, s, lab) for s, lab in entities]
    tags = spans_to_tags(text, tokens, spans, snap="strict")
    assert tags == bio.split()
    assert tags_to_spans(tokens, tags) == sorted(spans)
    bioes = spans_to_tags(text, tokens, spans, scheme="BIOES")
    assert bioes == bio_to_bioes(tags)
    assert tags_to_spans(tokens, bioes, scheme="BIOES") == sorted(spans)


def test_bioes_golden() -> None:
    text = "Real Madrid visite Málaga et New York City"
    tokens = tokenize(text)
    spans = [
        _span(text, "Real Madrid", "ORG"),
        _span(text, "Málaga", "LOC"),
        _span(text, "New York City", "LOC"),
    ]
    assert spans_to_tags(text, tokens, spans, scheme="BIOES") == [
        "B-ORG", "E-ORG", "O", "S-LOC", "O", "B-LOC", "I-LOC", "E-LOC",
    ]  # fmt: skip


def test_adjacent_same_label_entities_stay_separate() -> None:
    text = "Paris Berlin"
    tokens = tokenize(text)
    spans = [EntitySpan(0, 5, "LOC"), EntitySpan(6, 12, "LOC")]
    assert spans_to_tags(text, tokens, spans) == ["B-LOC", "B-LOC"]
    assert tags_to_spans(tokens, ["B-LOC", "B-LOC"]) == spans


def test_labels_with_hyphens() -> None:
    text = "Tour de France"
    tokens = tokenize(text)
    tags = spans_to_tags(text, tokens, [EntitySpan(0, 14, "MISC-EVENT")], scheme="BIOES")
    assert tags == ["B-MISC-EVENT", "I-MISC-EVENT", "E-MISC-EVENT"]
    assert tags_to_spans(tokens, tags, "BIOES") == [EntitySpan(0, 14, "MISC-EVENT")]


# --------------------------------------------------------------------------------------------
# Trimming and snapping

TEXT = "Jean-Luc visite l'Élysée à Paris 🇫🇷 demain"
TOKENS = tokenize(TEXT)  # Jean-Luc visite l' Élysée à Paris 🇫🇷 demain


def test_whitespace_is_trimmed() -> None:
    s = TEXT.index("Paris")
    assert snap_span(TEXT, TOKENS, EntitySpan(s - 1, s + 6, "LOC"), "strict") == EntitySpan(
        s, s + 5, "LOC"
    )


@pytest.mark.parametrize(
    ("needle_start", "needle_end", "snap", "expected"),
    [
        ("Luc", "Luc", "expand", "Jean-Luc"),  # inside one token → that token
        ("an-L", "an-L", "expand", "Jean-Luc"),
        ("Élysée", "Élysée", "expand", "Élysée"),  # exact → unchanged
        ("'Élysée", "Élysée", "expand", "l'Élysée"),  # touches "l'" → grows to it
        ("'Élysée", "Élysée", "contract", "Élysée"),  # "l'" only partly inside → dropped
        ("isite l'Él", "isite l'Él", "contract", "l'"),
        ("Paris", "Paris", "strict", "Paris"),
    ],
)
def test_snap_rules(needle_start: str, needle_end: str, snap: str, expected: str) -> None:
    start = TEXT.index(needle_start)
    end = TEXT.index(needle_end) + len(needle_end)
    got = snap_span(TEXT, TOKENS, EntitySpan(start, end, "X"), snap)
    assert got.text_in(TEXT) == expected
    assert got.label == "X"


def test_strict_rejects_partial_tokens() -> None:
    s = TEXT.index("Luc")
    with pytest.raises(SpanError, match="token boundaries"):
        snap_span(TEXT, TOKENS, EntitySpan(s, s + 3, "PER"), "strict")


def test_contract_without_whole_token_is_an_error() -> None:
    s = TEXT.index("Luc")
    with pytest.raises(SpanError, match="no whole token"):
        snap_span(TEXT, TOKENS, EntitySpan(s, s + 3, "PER"), "contract")


def test_unknown_snap_and_scheme() -> None:
    with pytest.raises(ValueError, match="snap"):
        snap_span(TEXT, TOKENS, EntitySpan(0, 4, "PER"), "grow")
    with pytest.raises(ValueError, match="scheme"):
        spans_to_tags(TEXT, TOKENS, [], scheme="IOB1")
    with pytest.raises(ValueError, match="scheme"):
        tags_to_spans(TOKENS, ["O"] * len(TOKENS), scheme="BILOU")


# --------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    "span",
    [
        EntitySpan(-1, 3, "PER"),
        EntitySpan(0, len(TEXT) + 1, "PER"),
        EntitySpan(5, 5, "PER"),
        EntitySpan(6, 2, "PER"),
    ],
)
def test_out_of_range_or_empty(span: EntitySpan) -> None:
    with pytest.raises(SpanError, match="empty or out of range"):
        spans_to_tags(TEXT, TOKENS, [span])


def test_whitespace_only_span() -> None:
    s = TEXT.index(" visite")
    with pytest.raises(SpanError, match="only whitespace"):
        spans_to_tags(TEXT, TOKENS, [EntitySpan(s, s + 1, "PER")])


def test_overlap_names_both_spans() -> None:
    a, b = EntitySpan(0, 15, "PER"), EntitySpan(9, 24, "LOC")
    with pytest.raises(SpanError, match="overlapping") as err:
        spans_to_tags(TEXT, TOKENS, [a, b])
    assert str(a) in str(err.value) and str(b) in str(err.value)


def test_nested_spans_are_rejected() -> None:
    outer = _span(TEXT, "l'Élysée à Paris", "LOC")
    inner = _span(TEXT, "Paris", "LOC")
    with pytest.raises(SpanError) as err:
        spans_to_tags(TEXT, TOKENS, [inner, outer])
    assert str(outer) in str(err.value) and str(inner) in str(err.value)


def test_same_offsets_different_labels_are_rejected() -> None:
    with pytest.raises(SpanError, match="overlapping"):
        spans_to_tags(TEXT, TOKENS, [EntitySpan(0, 8, "PER"), EntitySpan(0, 8, "ORG")])


def test_spans_colliding_after_snapping() -> None:
    # "Jean" and "Luc" do not overlap, but both expand to the single token "Jean-Luc".
    a, b = EntitySpan(0, 4, "PER"), EntitySpan(5, 8, "PER")
    with pytest.raises(SpanError, match="once snapped") as err:
        spans_to_tags(TEXT, TOKENS, [a, b])
    assert str(a) in str(err.value) and str(b) in str(err.value)


def test_exact_duplicates_are_merged() -> None:
    s = _span(TEXT, "Paris", "LOC")
    padded = EntitySpan(s.start - 1, s.end, "LOC")  # the same entity once trimmed
    assert spans_to_tags(TEXT, TOKENS, [s, s, padded]) == spans_to_tags(TEXT, TOKENS, [s])


def test_labels_are_validated() -> None:
    s = _span(TEXT, "Paris", "CITY")
    with pytest.raises(SpanError, match="CITY"):
        spans_to_tags(TEXT, TOKENS, [s], labels={"PER", "LOC", "ORG", "MISC"})
    with pytest.raises(SpanError, match="label"):
        spans_to_tags(TEXT, TOKENS, [EntitySpan(s.start, s.end, "")])
    tags = spans_to_tags(TEXT, TOKENS, [_span(TEXT, "Paris", "LOC")], labels={"LOC"})
    assert tags.count("B-LOC") == 1


def test_tokens_must_match_the_text() -> None:
    with pytest.raises(ValueError, match="does not match"):
        spans_to_tags("Paris", [Token("Pari", 0, 5)], [])


# --------------------------------------------------------------------------------------------
# Tag sequences


def test_repair_bio_reads_like_conlleval() -> None:
    assert repair_bio(["I-PER", "I-PER", "O", "I-LOC", "B-ORG", "I-LOC", "I-LOC"]) == [
        "B-PER", "I-PER", "O", "B-LOC", "B-ORG", "B-LOC", "I-LOC",
    ]  # fmt: skip
    valid = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC"]
    assert repair_bio(valid) == valid


def test_bioes_to_bio_closes_entities() -> None:
    assert bioes_to_bio(["S-X", "I-X", "E-X", "E-X", "B-X", "E-Y"]) == [
        "B-X", "B-X", "I-X", "B-X", "B-X", "B-Y",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("tags", "scheme", "message"),
    [
        (["I-PER"], "BIO", "does not continue"),
        (["B-PER", "I-LOC"], "BIO", "does not continue"),
        (["B-PER"], "BIOES", "not closed"),
        (["B-PER", "O"], "BIOES", "not closed"),
        (["S-PER", "E-PER"], "BIOES", "does not continue"),
        (["B-PER", "E-LOC"], "BIOES", "does not continue"),
        (["E-PER"], "BIO", "malformed"),
        (["B-"], "BIO", "malformed"),
        (["PER"], "BIOES", "malformed"),
    ],
)
def test_check_tags_rejects(tags: list[str], scheme: str, message: str) -> None:
    with pytest.raises(TagError, match=message):
        check_tags(tags, scheme)


def test_tags_to_spans_length_mismatch() -> None:
    with pytest.raises(TagError, match="tags for"):
        tags_to_spans(TOKENS, ["O"])


def test_tags_to_spans_reads_invalid_bio_leniently() -> None:
    tokens = tokenize("a b c d")
    assert tags_to_spans(tokens, ["I-PER", "I-PER", "O", "I-LOC"]) == [
        EntitySpan(0, 3, "PER"),
        EntitySpan(6, 7, "LOC"),
    ]


# --------------------------------------------------------------------------------------------
# Label Studio offsets


def test_align_to_text() -> None:
    text = "😀 Paris 😀 Berlin"
    assert align_to_text(text, 2, 7, "Paris") == (2, 7)  # code points, as given
    assert align_to_text(text, 12, 18, "Berlin") == (10, 16)  # UTF-16 units (😀 counts 2)
    assert align_to_text(text, 9, 15, "Berlin") == (10, 16)  # off by one → nearest
    with pytest.raises(SpanError, match="not found"):
        align_to_text(text, 2, 7, "London")


# --------------------------------------------------------------------------------------------
# Properties

WORDS = [
    "Paris", "New", "York", "Élysée", "Straße", "Málaga", "Jean-Luc", "l'homme", "qu'il",
    "don't", "Obama's", "z.B.", "1.000,50", "3h30", "@alice", "#Paris", "https://t.co/x",
    "👨‍👩‍👧", "🇫🇷", "👍🏽", ":)", "¿Qué", "!", ",", "…", "«", "»", "(", ")",
]  # fmt: skip
LABELS = ["PER", "LOC", "ORG", "MISC", "MISC-EVENT"]

texts = st.lists(
    st.tuples(
        st.one_of(st.sampled_from(WORDS), st.text(min_size=1, max_size=3)),
        st.sampled_from([" ", "", "  ", "\n", "\u00a0"]),
    ),
    min_size=1,
    max_size=15,
).map(lambda parts: "".join(w + s for w, s in parts))


@st.composite
def aligned_spans(draw: st.DrawFn) -> tuple[str, list[Token], list[EntitySpan]]:
    """A text, its tokens and non-overlapping token-aligned spans."""
    text = draw(texts)
    tokens = tokenize(text)
    assume(tokens)
    cuts = sorted(draw(st.sets(st.integers(0, len(tokens)), max_size=2 * len(tokens) + 2)))
    spans: list[EntitySpan] = []
    for i, j in zip(cuts[::2], cuts[1::2], strict=False):
        if draw(st.booleans()) or not spans:
            spans.append(
                EntitySpan(tokens[i].start, tokens[j - 1].end, draw(st.sampled_from(LABELS)))
            )
    return text, tokens, spans


@st.composite
def valid_tags(draw: st.DrawFn) -> list[str]:
    """Any BIO sequence made valid by repair_bio (covers adjacent entities, type switches)."""
    alphabet = ["O"] + [f"{p}-{lab}" for p in "BI" for lab in LABELS[:3]]
    return repair_bio(draw(st.lists(st.sampled_from(alphabet), max_size=30)))


@settings(max_examples=300, deadline=None)
@given(
    aligned_spans(),
    st.sampled_from(["BIO", "BIOES"]),
    st.sampled_from(["expand", "contract", "strict"]),
)
def test_spans_tags_spans_roundtrip(
    case: tuple[str, list[Token], list[EntitySpan]], scheme: str, snap: str
) -> None:
    text, tokens, spans = case
    tags = spans_to_tags(text, tokens, spans, scheme=scheme, snap=snap)
    check_tags(tags, scheme)
    assert tags_to_spans(tokens, tags, scheme=scheme) == sorted(spans)


@settings(max_examples=300, deadline=None)
@given(valid_tags())
def test_bio_bioes_bio_identity(bio: list[str]) -> None:
    check_tags(bio, "BIO")
    bioes = bio_to_bioes(bio)
    check_tags(bioes, "BIOES")
    assert len(bioes) == len(bio)
    assert bioes_to_bio(bioes) == bio


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]), max_size=30))
def test_any_bio_converts_like_its_repair(tags: list[str]) -> None:
    repaired = repair_bio(tags)
    check_tags(repaired, "BIO")
    assert repair_bio(repaired) == repaired
    assert bioes_to_bio(bio_to_bioes(tags)) == repaired
    tokens = [Token("x", 2 * i, 2 * i + 1) for i in range(len(tags))]
    assert tags_to_spans(tokens, tags) == tags_to_spans(tokens, repaired)


@settings(max_examples=300, deadline=None)
@given(valid_tags(), st.sampled_from(["BIO", "BIOES"]))
def test_tags_spans_tags_identity(bio: list[str], scheme: str) -> None:
    text = " ".join(f"w{i}" for i in range(len(bio)))
    tokens = tokenize(text)
    tags = bio if scheme == "BIO" else bio_to_bioes(bio)
    spans = tags_to_spans(tokens, tags, scheme)
    assert spans_to_tags(text, tokens, spans, scheme=scheme, snap="strict") == tags


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(["O"] + [f"{p}-{lab}" for p in "BIES" for lab in ("PER", "LOC")]),
        max_size=30,
    )
)
def test_lenient_reading_matches_seqeval(tags: list[str]) -> None:
    """An independent oracle: seqeval's (non-strict) chunker agrees on entity boundaries."""
    seqeval = pytest.importorskip("seqeval.metrics.sequence_labeling")
    tokens = [Token("x", 2 * i, 2 * i + 1) for i in range(len(tags))]
    ours = [(s.label, s.start // 2, (s.end - 1) // 2) for s in tags_to_spans(tokens, tags, "BIOES")]
    assert ours == seqeval.get_entities(tags)
    bio = bioes_to_bio(tags)
    ours_bio = [(s.label, s.start // 2, (s.end - 1) // 2) for s in tags_to_spans(tokens, bio)]
    assert ours_bio == seqeval.get_entities(bio) == ours


def _touched(tokens: list[Token], s: int, e: int) -> tuple[int, int]:
    hit = [t for t in tokens if t.start < e and t.end > s]
    return hit[0].start, hit[-1].end


def _trimmed(text: str, s: int, e: int) -> tuple[int, int] | None:
    piece = text[s:e]
    if not piece.strip():
        return None
    s += len(piece) - len(piece.lstrip())
    e -= len(piece) - len(piece.rstrip())
    return s, e


@settings(max_examples=400, deadline=None)
@given(texts, st.data())
def test_expand_always_yields_valid_tags_containing_the_spans(
    text: str, data: st.DataObject
) -> None:
    tokens = tokenize(text)
    n = len(text)
    raw = data.draw(
        st.lists(
            st.tuples(st.integers(0, n), st.integers(0, n), st.sampled_from(LABELS[:2])),
            max_size=4,
        )
    )
    spans = [EntitySpan(min(a, b), max(a, b), lab) for a, b, lab in raw if a != b]
    # Oracle, computed independently of the implementation.
    trimmed = [_trimmed(text, sp.start, sp.end) for sp in spans]
    if any(t is None for t in trimmed):
        with pytest.raises(SpanError, match="whitespace"):
            spans_to_tags(text, tokens, spans, snap="expand")
        return
    distinct = sorted({(t, sp.label) for t, sp in zip(trimmed, spans, strict=True) if t})
    expanded = sorted((_touched(tokens, *t), lab) for t, lab in distinct)
    if _overlapping(distinct) or _overlapping(expanded):
        with pytest.raises(SpanError):
            spans_to_tags(text, tokens, spans, snap="expand")
        return
    tags = spans_to_tags(text, tokens, spans, snap="expand")
    check_tags(tags, "BIO")
    got = tags_to_spans(tokens, tags)
    assert [((g.start, g.end), g.label) for g in got] == expanded
    for (s, e), lab in distinct:
        assert any(g.start <= s and e <= g.end and g.label == lab for g in got), (s, e, lab)


def _overlapping(items: list[tuple[tuple[int, int], str]]) -> bool:
    return any(a[0][1] > b[0][0] for a, b in itertools.pairwise(sorted(items)))


@settings(max_examples=200, deadline=None)
@given(texts, st.data())
def test_contract_stays_inside_the_span(text: str, data: st.DataObject) -> None:
    tokens = tokenize(text)
    assume(text)
    a = data.draw(st.integers(0, len(text) - 1))
    b = data.draw(st.integers(a + 1, len(text)))
    try:
        got = snap_span(text, tokens, EntitySpan(a, b, "PER"), "contract")
    except SpanError:
        assert not any(a <= t.start and t.end <= b for t in tokens)
        return
    assert a <= got.start < got.end <= b
    assert any(t.start == got.start for t in tokens) and any(t.end == got.end for t in tokens)
