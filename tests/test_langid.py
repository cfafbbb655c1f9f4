"""Language ID on lingua's shipped models (no download)."""

import pytest

from mmner_data.collect.langid import LanguageIdentifier


@pytest.fixture(scope="module")
def li():
    return LanguageIdentifier()


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        (
            "Just landed at JFK with @sarah, heading straight to the Google office in Manhattan 🚕",
            "en",
        ),
        (
            "Emmanuel Macron est à Marseille aujourd'hui pour rencontrer les pêcheurs du Vieux-Port",
            "fr",
        ),
        ("Angela Merkel besucht heute das neue Werk von Siemens in München #Industrie", "de"),
        ("Messi marca dos goles y el Inter Miami gana otra vez en Florida, qué locura", "es"),
        ("Oggi sono andato a Roma con Marco e abbiamo mangiato una pizza buonissima", "it"),
        ("Hoje fui ao Porto com a Maria e comemos uma francesinha deliciosa", "pt"),
    ],
)
def test_detects_language_with_confidence(li, text, lang):
    res = li.detect(text)
    assert res.lang == lang
    assert 0.3 < res.confidence <= 1.0
    assert res.runner_up != lang and res.runner_up_confidence <= res.confidence


def test_markup_only_has_no_language(li):
    assert li.detect("@bob https://x.org 🔥🔥 2026!").lang is None


def test_hashtag_words_count_as_text(li):
    assert li.detect("#Bonjour #Paris, quelle belle journée au bord de la Seine").lang == "fr"


def test_unknown_language_code_is_an_error():
    with pytest.raises(ValueError, match="unknown ISO 639-1"):
        LanguageIdentifier(targets=("xx",)).detect("hello there friends")
