from hypothesis import given
from hypothesis import strategies as st

from mmner_data.collect.normalise import (
    content_words,
    find_entities,
    html_to_text,
    is_retweet,
    text_key,
)


def test_entities_keep_offsets_into_original_text():
    text = "RT @anna@mastodon.social: Macron à #Marseille 🇫🇷 👩🏽‍🚀 https://ex.fr/a?b=1."
    ents = find_entities(text)
    kinds = [(e.kind, e.text) for e in ents]
    assert ("mention", "@anna@mastodon.social") in kinds
    assert ("hashtag", "#Marseille") in kinds
    assert ("url", "https://ex.fr/a?b=1") in kinds  # trailing full stop is not part of the URL
    assert ("emoji", "🇫🇷") in kinds
    assert ("emoji", "👩🏽‍🚀") in kinds  # ZWJ sequence with a skin tone is one emoji
    for e in ents:
        assert text[e.start : e.end] == e.text
    assert [e.start for e in ents] == sorted(e.start for e in ents)


def test_at_inside_url_and_email_is_not_a_mention():
    ents = find_entities("see https://x.org/@bob/123 or mail me")
    assert [e.kind for e in ents] == ["url"]


def test_text_key_is_lossy_and_stable():
    a = text_key("RT @bob: Real Madrid gana en el Bernabéu!!! https://t.co/x 🔥")
    b = text_key("Real  Madrid gana en el BERNABÉU https://t.co/y")
    assert a == b == "real madrid gana en el bernabéu"
    assert text_key("#Berlin ist schön") == "berlin ist schön"


def test_retweet_and_content_words():
    assert is_retweet("RT @someone: hello")
    assert not is_retweet("ART @someone hello")
    assert content_words("@a @b #tag https://x.y 🔥") == 0
    assert content_words("Angela Merkel in #Berlin") == 3


def test_html_to_text_mastodon_markup():
    html = (
        '<p>Hallo <span class="h-card"><a href="https://m.s/@ana" class="u-url mention">'
        "@<span>ana</span></a></span> &amp; Co.<br>Zweite Zeile</p><p>"
        '<a href="https://m.s/tags/berlin" class="mention hashtag">#<span>Berlin</span></a></p>'
    )
    assert html_to_text(html) == "Hallo @ana & Co.\nZweite Zeile\n\n#Berlin"
    assert html_to_text("plain &amp; simple") == "plain & simple"


@given(st.text(max_size=200))
def test_entities_are_disjoint_substrings(text):
    ents = find_entities(text)
    end = -1
    for e in ents:
        assert text[e.start : e.end] == e.text
        assert e.start >= end
        end = e.end


@given(st.text(max_size=200))
def test_text_key_is_idempotent(text):
    k = text_key(text)
    assert text_key(k) == k
