"""Tokeniser: golden examples per language and property tests of its invariants."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmner_data.text.tokenize import Token, token_texts, tokenize

# --------------------------------------------------------------------------------------------
# Golden examples

# Expected tokens are written space-separated (tokens never contain whitespace).
GOLDEN: list[tuple[str, str]] = [
    # English: clitics split Penn-Treebank style, possessives too.
    (
        "I don't think Obama's plan can't work, it's @user's fault!",
        "I do n't think Obama 's plan ca n't work , it 's @user 's fault !",
    ),
    (
        "We're in the U.S. now… I'll say e.g. 1,000.50 dollars?!",
        "We 're in the U.S. now … I 'll say e.g. 1,000.50 dollars ?!",
    ),
    ("O'Brien loves rock'n'roll :) <3", "O'Brien loves rock'n'roll :) <3"),
    # French: elision split after the apostrophe (both ' and ’); aujourd'hui stays whole.
    (
        "L'homme qu'il a vu aujourd'hui à Paris… jusqu’à l’Élysée, n'est-ce pas ?",
        "L' homme qu' il a vu aujourd'hui à Paris … jusqu’ à l’ Élysée , n' est-ce pas ?",
    ),
    (
        "Jean-Luc Mélenchon : « C'est 3h30 du matin » quelqu'un d'autre",
        "Jean-Luc Mélenchon : « C' est 3h30 du matin » quelqu'un d' autre",
    ),
    # German: hyphenated compounds, decimal comma, abbreviations, 's clitic.
    (
        "Baden-Württemberg zahlt 1.000,50 € – z.B. für Straßen. Wie geht's?",
        "Baden-Württemberg zahlt 1.000,50 € – z.B. für Straßen . Wie geht 's ?",
    ),
    # Spanish: inverted marks are separate tokens.
    (
        "¿Qué tal, @Real_Madrid? ¡Hola desde Málaga! #VamosEspaña",
        "¿ Qué tal , @Real_Madrid ? ¡ Hola desde Málaga ! #VamosEspaña",
    ),
    # Social-media entities; trailing ")" and "." are not part of a URL.
    (
        "Check https://example.com/a?b=1). Or www.foo.de, mail jean.dupont+x@mail.fr! t.co/AbC",
        "Check https://example.com/a?b=1 ) . Or www.foo.de , mail jean.dupont+x@mail.fr ! t.co/AbC",
    ),
    (
        "@alice@mastodon.social @bob.bsky.social RT:#COVID-19 at 10:30 on 12/05/2024",
        "@alice@mastodon.social @bob.bsky.social RT : #COVID - 19 at 10:30 on 12/05/2024",
    ),
    # Emoji: ZWJ family, skin tone, two flags written together, tag-sequence flag, keycap, VS16.
    (
        "👨‍👩‍👧 👍🏽🇫🇷🇩🇪 🏴󠁧󠁢󠁥󠁮󠁧󠁿 1️⃣ ❤️Paris😂😂",
        "👨‍👩‍👧 👍🏽 🇫🇷 🇩🇪 🏴󠁧󠁢󠁥󠁮󠁧󠁿 1️⃣ ❤️ Paris 😂 😂",
    ),
    # Bare domains only with a path or an unambiguous TLD: "fini.Es" stays three tokens.
    ("fini.Es amazon.com", "fini . Es amazon.com"),
    ("", ""),
    (" \n\t\u00a0\u3000 ", ""),
]


@pytest.mark.parametrize(("text", "expected"), GOLDEN, ids=[g[0][:25] for g in GOLDEN])
def test_golden(text: str, expected: str) -> None:
    assert token_texts(text) == (expected.split(" ") if expected else [])
    _check_invariants(text, tokenize(text))


def test_offsets_are_characters() -> None:
    text = "😂 Zoë à Köln"
    assert tokenize(text) == [
        Token("😂", 0, 1),
        Token("Zoë", 2, 5),
        Token("à", 6, 7),
        Token("Köln", 8, 12),
    ]


def test_token_is_frozen() -> None:
    tok = tokenize("Paris")[0]
    with pytest.raises(AttributeError):
        tok.start = 3  # type: ignore[misc]


def test_combining_marks_stay_in_words() -> None:
    text = "Mare\u0301chal Zo\u0308e"  # decomposed é and ë
    assert token_texts(text) == ["Mare\u0301chal", "Zo\u0308e"]


def test_fast_on_a_large_text() -> None:
    post = "L'équipe de Jean-Luc a gagné 1.000,50 € à Baden-Württemberg 🇩🇪👍🏽 https://t.co/x #win @fan "
    text = post * 2000  # ~190k characters
    t0 = time.perf_counter()
    tokens = tokenize(text)
    elapsed = time.perf_counter() - t0
    assert len(tokens) == 2000 * len(tokenize(post))
    assert elapsed < 10.0  # ~0.5 s here; generous for a shared CI machine


@pytest.mark.parametrize(
    "text",
    [
        "a." * 25_000,
        "a-" * 25_000,
        "ab'" * 16_000,
        "1," * 25_000,
        "@" * 50_000,
        "a" * 50_000,
        "http://" + "a/" * 25_000,
        "#" * 50_000,
        "x@" * 25_000,
        ":)" * 25_000,
    ],
    ids=lambda t: repr(t[:6]),
)
def test_adversarial_inputs_stay_fast(text: str) -> None:
    """No catastrophic backtracking: 50k characters of a repeated pattern in well under 2 s."""
    t0 = time.perf_counter()
    tokens = tokenize(text)
    assert time.perf_counter() - t0 < 2.0
    _check_invariants(text, tokens)


# --------------------------------------------------------------------------------------------
# Properties

WORDS = [
    "Paris", "homme", "Élysée", "Mélenchon", "Straße", "Württemberg", "Málaga", "España",
    "niño", "über", "don't", "Obama's", "l'homme", "qu'il", "aujourd'hui", "jusqu’à",
    "Jean-Luc", "Baden-Württemberg", "z.B.", "U.S.", "3h30", "1,000.50", "1.000,50", "10:30",
    "COVID-19", "O'Brien", "geht's", "¿Qué", "¡Hola", "ß", "İstanbul", "ǅ",
]  # fmt: skip
PIECES = [
    "https://example.com/a?b=1", "www.foo.de/x", "t.co/AbC", "jean.dupont@mail.fr",
    "@alice", "@alice@mastodon.social", "#VamosEspaña", "#1", "C#",
    "👨‍👩‍👧", "👍🏽", "🇫🇷", "🏴󠁧󠁢󠁥󠁮󠁧󠁿", "❤️", "1️⃣", "😂", ":)", "<3", ":-(",
]  # fmt: skip
PUNCT = [*".,;:!?…()[]{}«»\"'’-–—/\\&%€$*+=<>|~^_`@#", "...", "?!", "--"]
SPACES = [" ", "  ", "\n", "\t", "\r\n", "\u00a0", "\u3000", "\u2009", "\u200b", ""]

token_piece = st.one_of(
    st.sampled_from(WORDS),
    st.sampled_from(PIECES),
    st.sampled_from(PUNCT),
    st.text(max_size=4),  # anything at all: control chars, surrogate-free astral, marks
)
texts = st.lists(st.tuples(token_piece, st.sampled_from(SPACES)), max_size=25).map(
    lambda parts: "".join(p + s for p, s in parts)
)


def _check_invariants(text: str, tokens: list[Token]) -> None:
    prev_end = 0
    covered = [False] * len(text)
    for tok in tokens:
        assert 0 <= prev_end <= tok.start < tok.end <= len(text), (tok, prev_end)
        assert text[tok.start : tok.end] == tok.text
        assert not any(c.isspace() for c in tok.text), tok
        for i in range(tok.start, tok.end):
            covered[i] = True
        prev_end = tok.end
    uncovered = [(i, text[i]) for i in range(len(text)) if not covered[i] and not text[i].isspace()]
    assert not uncovered


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts)
def test_invariants(text: str) -> None:
    tokens = tokenize(text)
    _check_invariants(text, tokens)
    assert tokenize(text) == tokens  # deterministic


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_invariants_on_arbitrary_unicode(text: str) -> None:
    _check_invariants(text, tokenize(text))


def _shift(tokens: list[Token], by: int) -> list[Token]:
    return [Token(t.text, t.start + by, t.end + by) for t in tokens]


@settings(max_examples=200, deadline=None)
@given(texts, st.sampled_from([" ", "\n", "\t ", "\u00a0", "\u3000"]), texts)
def test_whitespace_is_a_hard_boundary(a: str, sep: str, b: str) -> None:
    """Tokens never depend on text across whitespace: tokenising pieces separately agrees."""
    joined = a + sep + b
    assert tokenize(joined) == tokenize(a) + _shift(tokenize(b), len(a) + len(sep))


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(WORDS + PIECES), st.sampled_from([".", ",", "!", "?", ";", ")", "»", "…"]))
def test_trailing_punctuation_is_split(word: str, punct: str) -> None:
    """A word, URL, mention... followed by sentence punctuation keeps its own tokens."""
    expected = tokenize(word)
    assert tokenize(word + punct + " ")[: len(expected)] == expected
