"""Benchmark: text near-duplicate detection, ours vs the plain datasketch loop.

Generates N synthetic-but-realistic social-media posts in EN/FR/DE/ES (templates x entity lists
x slot fillers, with ~15% near-duplicate variants made by small edits and ~5% exact copies),
deterministically from ``--seed``, then runs

* ours: ``mmner_data.collect.dedup.find_duplicates`` (text links only);
* baseline: ``MinHash(num_perm)`` with the default (SHA-1) hash, ``update(shingle.encode())``
  per shingle, ``lsh.query`` then ``lsh.insert`` per post, default LSH parameters, a post is a
  duplicate when the query returns anything (same shingles, same threshold).

It prints posts/s for both, the speed ratio, the peak memory of each run (resident set growth,
each run in a forked copy of this process with its high-water mark reset), and how the dropped sets agree.

    python benchmarks/dedup.py              # 100k posts
    python benchmarks/dedup.py --n 20000    # smaller
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import pickle
import random
import re
import sys
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from datasketch import MinHash, MinHashLSH

from mmner_data.collect.dedup import DedupItem, DedupSettings, find_duplicates, jaccard, shingles

T = TypeVar("T")

# ----------------------------------------------------------------------------- text key

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_MENTION = re.compile(r"(?<![\w@])@[\w.\-]+(?:@[\w.\-]+)?")
_PUNCT = re.compile(r"[^\w\s]")
_WS = re.compile(r"\s+")


def text_key(text: str) -> str:
    """NFKC, case-folded, URLs/mentions/punctuation (emoji included) removed, spaces collapsed."""
    t = unicodedata.normalize("NFKC", text)
    t = _MENTION.sub(" ", _URL.sub(" ", t)).casefold()
    return _WS.sub(" ", _PUNCT.sub(" ", t)).strip()


# ----------------------------------------------------------------------------- corpus

PEOPLE = [
    "Emmanuel Macron",
    "Olaf Scholz",
    "Pedro Sánchez",
    "Joe Biden",
    "Ursula von der Leyen",
    "Kylian Mbappé",
    "Thomas Müller",
    "Rafael Nadal",
    "Serena Williams",
    "Taylor Swift",
    "Rosalía",
    "Stromae",
    "Helene Fischer",
    "Christine Lagarde",
    "Angela Merkel",
    "Lionel Messi",
    "Aitana Bonmatí",
    "Antoine Griezmann",
    "Leon Draisaitl",
    "Greta Thunberg",
    "Elon Musk",
    "Marie Curie",
    "Zinédine Zidane",
    "Carlos Alcaraz",
    "Jürgen Klopp",
    "Billie Eilish",
    "Fernando Alonso",
    "Annalena Baerbock",
    "Gabriel Attal",
    "Isabel Díaz Ayuso",
]
ORGS = [
    "Real Madrid",
    "Bayern München",
    "Paris Saint-Germain",
    "FC Barcelona",
    "Deutsche Bahn",
    "SNCF",
    "Renfe",
    "Airbus",
    "Volkswagen",
    "Siemens",
    "Telefónica",
    "Le Monde",
    "El País",
    "Der Spiegel",
    "BBC",
    "the European Commission",
    "UNESCO",
    "Greenpeace",
    "Bundestag",
    "Assemblée nationale",
    "Congreso",
    "NASA",
    "ESA",
    "Apple",
    "Google",
    "OpenAI",
    "Zara",
    "Lufthansa",
    "Air France",
    "Iberia",
]
PLACES = [
    "Paris",
    "Berlin",
    "Madrid",
    "London",
    "Lyon",
    "Marseille",
    "Hamburg",
    "München",
    "Köln",
    "Barcelona",
    "Sevilla",
    "Valencia",
    "Bilbao",
    "Toulouse",
    "Bordeaux",
    "Frankfurt",
    "Leipzig",
    "New York",
    "Brussels",
    "Genève",
    "Zürich",
    "Wien",
    "Lisboa",
    "Roma",
    "Montréal",
    "Buenos Aires",
    "México",
    "Nice",
    "Dresden",
    "Málaga",
]
EVENTS = [
    "Roland-Garros",
    "the Champions League final",
    "Oktoberfest",
    "La Tomatina",
    "Eurovision",
    "the Tour de France",
    "Berlinale",
    "Cannes",
    "Fête de la Musique",
    "San Fermín",
    "the World Cup",
    "Wimbledon",
    "Primavera Sound",
    "Karneval",
    "the Olympics",
]

TEMPLATES: dict[str, list[str]] = {
    "en": [
        "{per} just landed in {loc} for talks with {org} {time}",
        "Can't believe {per} scored twice against {org} {time}! What a game in {loc}",
        "Huge queues at {loc} station {time}, {org} says delays of {num} minutes",
        "{org} announces {num} new jobs in {loc}, {per} welcomes the decision",
        "Watching {event} live from {loc} with friends, {per} looks {adj}",
        "Breaking: {per} resigns from {org} after {num} years",
        "Flights between {loc} and {loc2} cancelled {time}, {org} blames the strike",
        "{per} on stage at {event} was {adj}, best night of the year in {loc}",
        "Rain again in {loc} {time}... at least {event} starts soon",
        "Interview with {per} about the future of {org}, worth a read",
        "Just met {per} at a café in {loc}, so {adj} in person",
        "{org} shares fall {num}% after the report on {per}",
    ],
    "fr": [
        "{per} est arrivé à {loc} pour rencontrer {org} {time}",
        "Incroyable, {per} marque deux fois contre {org} {time} ! Quel match à {loc}",
        "Énorme bouchon près de {loc} {time}, {org} annonce {num} minutes de retard",
        "{org} annonce {num} nouveaux emplois à {loc}, {per} salue la décision",
        "On regarde {event} en direct depuis {loc} avec les potes, {per} est {adj}",
        "Urgent : {per} quitte {org} après {num} ans",
        "Les vols entre {loc} et {loc2} sont annulés {time}, {org} accuse la grève",
        "{per} sur scène à {event}, c'était {adj}, la plus belle soirée de l'année à {loc}",
        "Encore de la pluie à {loc} {time}... heureusement {event} commence bientôt",
        "Entretien avec {per} sur l'avenir de {org}, à lire absolument",
        "J'ai croisé {per} dans un café à {loc}, vraiment {adj} en vrai",
        "L'action {org} chute de {num} % après le rapport sur {per}",
    ],
    "de": [
        "{per} ist {time} in {loc} gelandet, Gespräche mit {org} geplant",
        "Unglaublich, {per} trifft doppelt gegen {org} {time}! Was für ein Spiel in {loc}",
        "Riesige Schlangen am Bahnhof {loc} {time}, {org} meldet {num} Minuten Verspätung",
        "{org} kündigt {num} neue Stellen in {loc} an, {per} begrüßt die Entscheidung",
        "Wir schauen {event} live aus {loc}, {per} wirkt {adj}",
        "Eilmeldung: {per} verlässt {org} nach {num} Jahren",
        "Flüge zwischen {loc} und {loc2} {time} gestrichen, {org} verweist auf den Streik",
        "{per} auf der Bühne bei {event} war {adj}, bester Abend des Jahres in {loc}",
        "Schon wieder Regen in {loc} {time}... immerhin beginnt bald {event}",
        "Interview mit {per} über die Zukunft von {org}, lesenswert",
        "Habe gerade {per} in einem Café in {loc} getroffen, persönlich total {adj}",
        "Aktie von {org} fällt um {num} % nach dem Bericht über {per}",
    ],
    "es": [
        "{per} acaba de llegar a {loc} para reunirse con {org} {time}",
        "¡Increíble, {per} marca dos goles contra {org} {time}! Qué partido en {loc}",
        "Colas enormes en la estación de {loc} {time}, {org} anuncia {num} minutos de retraso",
        "{org} anuncia {num} nuevos empleos en {loc}, {per} celebra la decisión",
        "Viendo {event} en directo desde {loc} con amigos, {per} está {adj}",
        "Última hora: {per} deja {org} después de {num} años",
        "Cancelados los vuelos entre {loc} y {loc2} {time}, {org} culpa a la huelga",
        "{per} en el escenario de {event} estuvo {adj}, la mejor noche del año en {loc}",
        "Otra vez lluvia en {loc} {time}... por lo menos {event} empieza pronto",
        "Entrevista con {per} sobre el futuro de {org}, merece la pena",
        "Acabo de ver a {per} en un café de {loc}, muy {adj} en persona",
        "Las acciones de {org} caen un {num} % tras el informe sobre {per}",
    ],
}
TIMES = {
    "en": ["this morning", "tonight", "today", "yesterday", "on Sunday", "again", "right now"],
    "fr": ["ce matin", "ce soir", "aujourd'hui", "hier", "dimanche", "encore", "en ce moment"],
    "de": [
        "heute Morgen",
        "heute Abend",
        "heute",
        "gestern",
        "am Sonntag",
        "schon wieder",
        "gerade",
    ],
    "es": ["esta mañana", "esta noche", "hoy", "ayer", "el domingo", "otra vez", "ahora mismo"],
}
ADJS = {
    "en": ["amazing", "tired", "nervous", "brilliant", "relaxed", "unstoppable", "emotional"],
    "fr": ["incroyable", "fatigué", "nerveux", "génial", "détendu", "inarrêtable", "ému"],
    "de": ["großartig", "müde", "nervös", "brillant", "entspannt", "unaufhaltsam", "gerührt"],
    "es": ["increíble", "cansado", "nervioso", "brillante", "relajado", "imparable", "emocionado"],
}
OPENERS = {
    "en": ["", "", "", "Wow.", "Honestly,", "Update:", "lol", "OMG"],
    "fr": ["", "", "", "Waouh.", "Franchement,", "Info :", "mdr", "Oh là là"],
    "de": ["", "", "", "Wow.", "Ehrlich gesagt,", "Update:", "haha", "Krass"],
    "es": ["", "", "", "Guau.", "Sinceramente,", "Actualización:", "jaja", "Madre mía"],
}
CLOSERS = {
    "en": ["", "", "", "Thoughts?", "Unreal.", "More soon.", "Proud!", "Not again..."],
    "fr": ["", "", "", "Vous en pensez quoi ?", "Dingue.", "À suivre.", "Fier !", "Pas encore..."],
    "de": ["", "", "", "Was meint ihr?", "Irre.", "Mehr bald.", "Stolz!", "Nicht schon wieder..."],
    "es": ["", "", "", "¿Qué opináis?", "Increíble.", "Más pronto.", "¡Orgullo!", "Otra vez no..."],
}
HASHTAGS = [
    "#news",
    "#breaking",
    "#football",
    "#music",
    "#travel",
    "#strike",
    "#live",
    "#Paris2024",
    "#Bundesliga",
    "#LaLiga",
    "#Ligue1",
    "#culture",
    "#economy",
    "#meteo",
]
EMOJI = ["😂", "🔥", "⚽", "🎶", "😡", "🙏", "👏", "😍", "🇫🇷", "🇩🇪", "🇪🇸", "🇬🇧", "☔", "✈️"]


@dataclass(frozen=True)
class Post:
    """A generated post: ``origin`` is the index of the post it was copied/edited from."""

    text: str
    lang: str
    origin: int | None = None
    kind: str = "original"  # original | near | exact


def _original(rng: random.Random) -> Post:
    lang = rng.choice(("en", "fr", "de", "es"))
    loc, loc2 = rng.sample(PLACES, 2)
    body = rng.choice(TEMPLATES[lang]).format(
        per=rng.choice(PEOPLE),
        org=rng.choice(ORGS),
        loc=loc,
        loc2=loc2,
        event=rng.choice(EVENTS),
        time=rng.choice(TIMES[lang]),
        adj=rng.choice(ADJS[lang]),
        num=rng.randint(2, 500),
    )
    parts = [rng.choice(OPENERS[lang]), body, rng.choice(CLOSERS[lang])]
    if rng.random() < 0.5:
        parts.append(" ".join(rng.sample(HASHTAGS, rng.randint(1, 3))))
    if rng.random() < 0.3:
        parts.append(f"https://t.co/{rng.getrandbits(40):010x}")
    if rng.random() < 0.4:
        parts.append(rng.choice(EMOJI))
    if rng.random() < 0.2:
        parts.insert(0, f"@user{rng.randint(1, 5000)}")
    return Post(" ".join(p for p in parts if p), lang)


def _edit(text: str, rng: random.Random) -> str:
    """One small edit a re-poster makes."""
    op = rng.randrange(7)
    words = text.split()
    if op == 0:
        return f"{text} {rng.choice(EMOJI)}"
    if op == 1:
        return f"{text} {rng.choice(HASHTAGS)}"
    if op == 2:
        return f"RT @user{rng.randint(1, 5000)}: {text}"
    if op == 3:  # typo: drop, double or swap a letter inside a longer word
        long = [i for i, w in enumerate(words) if len(w) > 4]
        if long:
            i = rng.choice(long)
            w, j = words[i], rng.randrange(1, len(words[i]) - 2)
            words[i] = rng.choice(
                (w[:j] + w[j + 1 :], w[:j] + w[j] + w[j:], w[:j] + w[j + 1] + w[j] + w[j + 2 :])
            )
        return " ".join(words)
    if op == 4:  # a changed word
        i = rng.randrange(len(words))
        words[i] = rng.choice(["really", "vraiment", "wirklich", "muy", "so", "très", "sehr", "ya"])
        return " ".join(words)
    if op == 5:
        return f"{text} https://bit.ly/{rng.getrandbits(30):08x}"
    return text.upper() if rng.random() < 0.3 else f"{text}!!"


def make_posts(n: int, seed: int = 0) -> list[Post]:
    """``n`` posts: ~80% originals, ~15% near-duplicate edits, ~5% exact copies of earlier posts."""
    rng = random.Random(seed)
    posts: list[Post] = []
    for i in range(n):
        r = rng.random()
        if i < 10 or r < 0.80:
            posts.append(_original(rng))
            continue
        j = rng.randrange(max(0, i - 20000), i)  # reposts follow their source within a while
        src = posts[j]
        root = src.origin if src.origin is not None else j
        if r < 0.95:
            text = _edit(src.text, rng)
            if rng.random() < 0.3:
                text = _edit(text, rng)
            posts.append(Post(text, src.lang, root, "near"))
        else:
            posts.append(Post(src.text, src.lang, root, "exact"))
    return posts


# ----------------------------------------------------------------------------- runners


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def measured(fn: Callable[[], T]) -> tuple[T, float, float]:
    """Run ``fn`` in a forked copy of this process (same data, no copy made) so that each run's
    peak memory is its own; return its result, seconds, and peak resident-set growth in MiB."""
    gc.collect()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark
        before = _rss_kib("VmRSS")
        t0 = time.perf_counter()
        out = fn()
        secs = time.perf_counter() - t0
        peak = (_rss_kib("VmHWM") - before) / 1024
        with os.fdopen(w, "wb") as f:
            pickle.dump((out, secs, peak), f)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        result = pickle.load(f)
    os.waitpid(pid, 0)
    return result


def run_ours(keys: list[str], settings: DedupSettings) -> dict[int, tuple[int, int]]:
    """Dropped post index -> (index of its ``dup_of``, index of its cluster's kept post)."""
    items = [DedupItem(f"p{i:07d}", (i,), k) for i, k in enumerate(keys)]
    decisions = find_duplicates(items, settings)
    return {
        int(d.post_id[1:]): (int(d.dup_of[1:]), int(d.cluster_id[1:]))
        for d in decisions
        if d.dup_of is not None
    }


def run_baseline(keys: list[str], threshold: float, num_perm: int, size: int) -> set[int]:
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    dropped = set()
    for i, key in enumerate(keys):
        if not key:
            continue
        m = MinHash(num_perm=num_perm)
        for s in shingles(key, size):
            m.update(s.encode("utf-8"))
        if lsh.query(m):
            dropped.add(i)
        lsh.insert(i, m)
    return dropped


def _agreement(ours: set[int], base: set[int]) -> str:
    both = len(ours & base)
    p = both / len(ours) if ours else 1.0
    r = both / len(base) if base else 1.0
    return (
        f"dropped: ours {len(ours)}, baseline {len(base)}, both {both}, only ours "
        f"{len(ours - base)}, only baseline {len(base - ours)}; ours vs baseline: "
        f"precision {p:.4f}, recall {r:.4f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="number of posts (default 100000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--shingle-size", type=int, default=5)
    ap.add_argument(
        "--baseline-budget",
        type=float,
        default=180.0,
        help="seconds the baseline may take; beyond, both run on the same prefix for the ratio",
    )
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)

    t0 = time.perf_counter()
    posts = make_posts(args.n, args.seed)
    keys = [text_key(p.text) for p in posts]
    print(
        f"generated {len(posts)} posts in {time.perf_counter() - t0:.1f}s "
        f"({sum(p.kind == 'near' for p in posts)} near-dup edits, "
        f"{sum(p.kind == 'exact' for p in posts)} exact copies; "
        f"mean key length {sum(map(len, keys)) / len(keys):.0f} chars)"
    )
    settings = DedupSettings(
        text_threshold=args.threshold,
        num_perm=args.num_perm,
        shingle_size=args.shingle_size,
        exact_image=False,
        near_image=False,
    )

    # Calibrate the baseline on a small prefix to decide whether it can do all N in budget.
    calib = min(len(keys), 5000)
    _, secs, _ = measured(
        lambda: run_baseline(keys[:calib], args.threshold, args.num_perm, args.shingle_size)
    )
    estimate = secs / calib * len(keys) * 1.1
    m = len(keys)
    if estimate > args.baseline_budget and len(keys) > calib:
        m = max(calib, int(args.baseline_budget / (secs / calib * 1.1)) // 1000 * 1000)
        print(
            f"baseline estimated at {estimate:.0f}s for {len(keys)} posts (> {args.baseline_budget:.0f}s):"
            f" ratio measured on the first {m} posts; ours also runs on all {len(keys)}"
        )
    prefix = keys[:m]

    ours_dup, t_ours, mem_ours = measured(lambda: run_ours(prefix, settings))
    ours = set(ours_dup)
    base, t_base, mem_base = measured(
        lambda: run_baseline(prefix, args.threshold, args.num_perm, args.shingle_size)
    )
    print(
        f"\n== {m} posts, threshold {args.threshold}, {args.shingle_size}-grams, {args.num_perm} perms"
    )
    print(f"ours:     {m / t_ours:9.0f} posts/s  ({t_ours:6.1f}s, peak RSS +{mem_ours:.0f} MiB)")
    print(f"baseline: {m / t_base:9.0f} posts/s  ({t_base:6.1f}s, peak RSS +{mem_base:.0f} MiB)")
    print(f"speed ratio ours/baseline: {t_base / t_ours:.2f}x")
    print(_agreement(ours, base))
    size = args.shingle_size
    direct = indirect = 0
    for i, (j, root) in ours_dup.items():
        if keys[i] == keys[j] or jaccard(shingles(keys[i], size), shingles(keys[j], size)) >= (
            args.threshold
        ):
            direct += 1
        elif j == root:
            indirect += 1
    print(
        f"ours: {direct}/{len(ours_dup)} drops have Jaccard >= {args.threshold} with their "
        f"dup_of, {indirect} joined their cluster only through a later post (dup_of = the kept "
        f"post), {len(ours_dup) - direct - indirect} other"
    )

    # Explain disagreements with exact Jaccard against the post each one was made from.
    intended = {i for i, p in enumerate(posts[:m]) if p.origin is not None}
    print(
        f"vs the generator's labels (edits/copies of an earlier post): ours recall "
        f"{len(ours & intended) / max(1, len(intended)):.4f}, baseline recall "
        f"{len(base & intended) / max(1, len(intended)):.4f}"
    )
    only_base = base - ours
    print(
        f"baseline-only drops that are generator edits/copies: {len(only_base & intended)}"
        f"/{len(only_base)} (the rest: LSH false positives, e.g. same template, other entities)"
    )
    missed = [i for i in intended - ours if keys[i]]
    sims = [
        jaccard(
            shingles(keys[i], args.shingle_size), shingles(keys[posts[i].origin], args.shingle_size)
        )
        for i in missed
    ]
    print(
        f"intended dups ours kept: {len(missed)}, all below the threshold vs their source: "
        f"{all(s < args.threshold for s in sims)} (max J {max(sims, default=0):.3f})"
    )

    if m < len(keys):
        full, t_full, mem_full = measured(lambda: set(run_ours(keys, settings)))
        print(f"\n== ours on all {len(keys)} posts")
        print(
            f"ours:     {len(keys) / t_full:9.0f} posts/s  ({t_full:6.1f}s, peak RSS +{mem_full:.0f} MiB), dropped {len(full)}"
        )


if __name__ == "__main__":
    main()
