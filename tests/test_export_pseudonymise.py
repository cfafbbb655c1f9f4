"""Pseudonymisation: handles hashed like collect's authors, URLs cut to host, offsets re-mapped."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from mmner_data.collect.pipeline import pseudonym
from mmner_data.export.pseudonymise import (
    OffsetMap,
    Replacement,
    apply_replacements,
    classify,
    pseudonymise,
    reduce_url,
)
from mmner_data.schema import EntitySpan
from mmner_data.text.spans import spans_to_tags, tags_to_spans
from mmner_data.text.tokenize import tokenize

SALT = "s3cret"


def test_golden_rewrite():
    text = (
        "@nora_skies met Angela Merkel in Berlin https://news.example.com/a/b?c=1#x "
        "via www.example.org/p/@kat and t.co/AbC, mail nora@example.org!"
    )
    p = pseudonymise(text, tokenize(text), SALT, "mastodon")
    handle = pseudonym(SALT, "mastodon", "nora_skies")
    assert p.text == (
        f"@{handle} met Angela Merkel in Berlin https://news.example.com "
        "via http://www.example.org and http://t.co, mail "
        f"{pseudonym(SALT, 'email', 'nora@example.org')}@example.invalid!"
    )
    assert [r.kind for r in p.replacements] == ["mention", "url", "url", "url", "email"]
    # tokens carried over 1:1 and equal to a fresh tokenisation of the new text
    assert [(t.text, t.start, t.end) for t in p.tokens] == [
        (t.text, t.start, t.end) for t in tokenize(p.text)
    ]
    for tok in p.tokens:
        assert p.text[tok.start : tok.end] == tok.text


def test_mentions_are_consistent_and_case_insensitive_and_match_authors():
    a = pseudonymise("@Kat_Roasts hi", tokenize("@Kat_Roasts hi"), SALT, "mastodon")
    b = pseudonymise("yo @kat_roasts", tokenize("yo @kat_roasts"), SALT, "mastodon")
    assert (
        a.replacements[0].new
        == b.replacements[0].new
        == "@" + pseudonym(SALT, "mastodon", "kat_roasts")
    )
    other_salt = pseudonymise("@kat_roasts", tokenize("@kat_roasts"), "other", "mastodon")
    assert other_salt.replacements[0].new != a.replacements[0].new
    fed = "@nora@mastodon.example.social"
    c = pseudonymise(fed, tokenize(fed), SALT, "mastodon")
    assert c.text == "@" + pseudonym(SALT, "mastodon", "nora@mastodon.example.social")


def test_classify_leaves_ordinary_tokens_alone():
    for tok in ["U.S.", "z.B.", "1.000,50", "Berlin", "#NASA", "@", "e.g.", "fini.Es", "10:30"]:
        assert classify(tok) is None, tok
    assert classify("https://x.org/a") == "url"
    assert classify("@bob.bsky.social") == "mention"


def test_reduce_url_drops_userinfo_port_path():
    assert reduce_url("https://bob:pw@Host.Example.com:8443/p?q#f") == "https://host.example.com"
    assert reduce_url("http://[::1") == "http://invalid.invalid"


def test_entity_spans_keep_their_text_through_replacements():
    text = "Thanks @kat_roasts! Monmouth Coffee https://x.example.com/p is near Borough Market"
    tokens = tokenize(text)
    gold = [
        EntitySpan(text.index(w), text.index(w) + len(w), label)
        for w, label in (("Monmouth Coffee", "ORG"), ("Borough Market", "LOC"))
    ]
    tags = spans_to_tags(text, tokens, gold)
    p = pseudonymise(text, tokens, SALT, "mastodon")
    new_spans = tags_to_spans(p.tokens, tags)
    assert [p.text[s.start : s.end] for s in new_spans] == ["Monmouth Coffee", "Borough Market"]
    assert [p.offsets.span(s.start, s.end) for s in gold] == [(s.start, s.end) for s in new_spans]


# ---- properties -------------------------------------------------------------------------

_word = st.text(string.ascii_letters, min_size=1, max_size=8)
_piece = st.one_of(
    _word,
    _word.map(lambda w: "@" + w),
    st.tuples(_word, _word).map(lambda t: f"https://{t[0].lower()}.example.com/{t[1]}?a=1"),
    st.tuples(_word, _word).map(lambda t: f"{t[0]}@{t[1].lower()}.org"),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_piece, min_size=1, max_size=12), st.data())
def test_spans_outside_replacements_cover_the_same_text(pieces, data):
    text = " ".join(pieces)
    tokens = tokenize(text)
    p = pseudonymise(text, tokens, SALT, "src")
    assert len(p.tokens) == len(tokens)
    for tok in p.tokens:
        assert p.text[tok.start : tok.end] == tok.text and tok.text.strip() == tok.text
    # any token-aligned span without a replaced token keeps its text
    replaced = {(r.start, r.end) for r in p.replacements}
    i = data.draw(st.integers(0, len(tokens) - 1))
    j = data.draw(st.integers(i, len(tokens) - 1))
    inside = tokens[i : j + 1]
    s, e = p.offsets.span(inside[0].start, inside[-1].end)
    if not any((t.start, t.end) in replaced for t in inside):
        assert p.text[s:e] == text[inside[0].start : inside[-1].end]
    assert (s, e) == (p.tokens[i].start, p.tokens[j].end)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_offset_map_is_monotone_and_exact_outside_regions(data):
    n = data.draw(st.integers(0, 60))
    text = "x" * n
    cuts = sorted(set(data.draw(st.lists(st.integers(0, n), max_size=8))))
    reps = []
    for a, b in zip(cuts[::2], cuts[1::2], strict=False):
        if a < b:
            reps.append(Replacement(a, b, "Y" * data.draw(st.integers(1, 5)), "url"))
    omap = OffsetMap(reps)
    new = apply_replacements(text, reps)
    assert omap(0) == 0 and omap(n, "end") == len(new)
    prev = 0
    for pos in range(n + 1):
        m = omap(pos)
        assert m >= prev
        prev = m
    for r in reps:
        s, e = omap.span(r.start, r.end)
        assert new[s:e] == r.new
