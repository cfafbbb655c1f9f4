"""Benchmark: text near-duplicate detection, ours vs a rensa pipeline and the previous version.

Generates N synthetic-but-realistic social-media posts in EN/FR/DE/ES (templates x entity lists
x slot fillers, with ~15% near-duplicate variants made by small edits and ~5% exact copies),
deterministically from ``--seed``, then runs, on the same keys, each in a forked copy of this
process:

* ours: ``mmner_data.collect.dedup.find_duplicates`` (text links only);
* rensa: the per-post pipeline of issue 13 — ``rensa.RMinHash`` of the post's shingles,
  ``RMinHashLSH.query`` then ``insert`` (``--rensa-bands`` bands, 16 as in rensa's README), each
  candidate verified by exact Jaccard on Python shingle sets; a post is a duplicate when a
  verified candidate exists (same shingles, same threshold);
* old: the previous implementation (datasketch MinHash + MinHashLSH, one query + insert per
  distinct key, exact verification), kept here only as a reference: its near-duplicate pairs
  go through the same ``find_duplicates`` clustering, so its decisions are the old code's.

It prints posts/s for each (best of ``--repeat`` runs), the speed ratios, the peak memory of each
run (resident set growth, each run in a forked copy of this process with its high-water mark
reset), whether our decisions equal the old implementation's, and how the dropped sets agree.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

import numpy as np
import rensa
import xxhash
from datasketch import MinHash, MinHashLSH

from mmner_data.collect.dedup import (
    DedupItem,
    DedupSettings,
    _min_agreement,
    find_duplicates,
    jaccard,
    lsh_params,
    shingles,
)

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


def measured(fn: Callable[[], T]) -> tuple[T, float, float, float]:
    """Run ``fn`` in a forked copy of this process (same data, no copy made) so that each run's
    peak memory is its own; return its result, seconds, peak resident-set growth in MiB and
    CPU seconds (all threads)."""
    gc.collect()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark
        before = _rss_kib("VmRSS")
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
        peak = (_rss_kib("VmHWM") - before) / 1024
        with os.fdopen(w, "wb") as f:
            pickle.dump((out, secs, peak, cpu), f)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        result = pickle.load(f)
    os.waitpid(pid, 0)
    return result


def run_ours(
    keys: list[str],
    settings: DedupSettings,
    text_pairs: Callable[[Sequence[str], DedupSettings], np.ndarray] | None = None,
) -> list[tuple[str, str | None, str | None, str]]:
    """Every decision as ``(post_id, reason, dup_of, cluster_id)``; post ids are ``p<index>``."""
    items = [DedupItem(f"p{i:07d}", (i,), k) for i, k in enumerate(keys)]
    decisions = find_duplicates(items, settings, text_pairs=text_pairs)
    return [(d.post_id, d.reason, d.dup_of, d.cluster_id) for d in decisions]


def run_rensa(keys: list[str], threshold: float, num_perm: int, size: int, bands: int) -> set[int]:
    """The rensa pipeline: MinHash + LSH query, exact Jaccard of candidates, insert; per post."""
    lsh = rensa.RMinHashLSH(threshold, num_perm, bands)
    sets: list[set[str]] = []
    dropped = set()
    for i, key in enumerate(keys):
        sh = shingles(key, size)
        sets.append(sh)
        if not sh:
            continue
        m = rensa.RMinHash(num_perm, 1)
        m.update(list(sh))
        for j in lsh.query(m):
            other = sets[j]
            common = len(sh & other)
            if common / (len(sh) + len(other) - common) >= threshold:
                dropped.add(i)
                break
        lsh.insert(i, m)
    return dropped


# ----------------------------------------------------------------------------- old implementation
# The previous near-duplicate text search of mmner_data/collect/dedup.py, verbatim but for the
# entry point (old_near_text_pairs), kept as the reference our decisions must equal.


class _CompactBuckets:
    """In-memory bucket table for :class:`MinHashLSH`: one dict entry per bucket."""

    def __init__(self) -> None:
        self._dict: dict = {}

    def insert(self, key: object, *vals: object, buffer: bool = False) -> None:
        d = self._dict
        for val in vals:
            cur = d.get(key)
            if cur is None:
                d[key] = val
            elif type(cur) is list:
                cur.append(val)
            else:
                d[key] = [cur, val]

    def get(self, key: object) -> list:
        cur = self._dict.get(key)
        if cur is None:
            return []
        return cur if type(cur) is list else [cur]

    def size(self) -> int:
        return len(self._dict)


class _NoKeys:
    """Stands in for the LSH's key -> band-hashes table, which only ``remove`` needs."""

    def insert(self, key: object, *vals: object, buffer: bool = False) -> None:
        pass

    def __contains__(self, key: object) -> bool:
        return False


class _TextIndex:
    """MinHash-LSH over shingle sets, with every candidate verified by exact Jaccard."""

    def __init__(self, keys: Sequence[str], settings: DedupSettings) -> None:
        self.threshold = settings.text_threshold
        self.num_perm = settings.num_perm
        self.seed = settings.seed
        self.permutations = MinHash(
            num_perm=settings.num_perm, seed=settings.seed, scheme="affine32"
        ).permutations
        self.lsh = MinHashLSH(
            num_perm=settings.num_perm,
            params=lsh_params(settings.text_threshold, settings.num_perm),
            hashfunc=xxhash.xxh64_intdigest,
        )
        self.lsh.hashtables = [_CompactBuckets() for _ in self.lsh.hashtables]
        self.lsh.keys = _NoKeys()
        self.fingerprints: list[np.ndarray] = []
        self.signatures = np.empty((len(keys), settings.num_perm), dtype=np.uint32)
        self.min_agreement = _min_agreement(settings.text_threshold, settings.num_perm)
        self.lengths = np.zeros(len(keys), dtype=np.int64)
        size = settings.shingle_size

        @lru_cache(maxsize=4096)
        def shingle_set(idx: int) -> frozenset[str]:
            return frozenset(shingles(keys[idx], size))

        self._shingles = shingle_set

    def close(self) -> None:
        self.lsh.hashtables = []
        self.fingerprints = []
        self.signatures = self.signatures[:0]
        self._shingles.cache_clear()

    def minhash(self, sh: list[bytes]) -> MinHash:
        m = MinHash(
            num_perm=self.num_perm,
            seed=self.seed,
            hashfunc=xxhash.xxh32_intdigest,
            permutations=self.permutations,
            scheme="affine32",
        )
        m.update_batch(sh)
        return m

    def add(self, idx: int) -> list[int]:
        sh = self._shingles(idx)
        encoded = [s.encode("utf-8") for s in sh]
        fp = np.unique(np.fromiter(map(xxhash.xxh64_intdigest, encoded), np.uint64, len(sh)))
        m = self.minhash(encoded)
        candidates = self.lsh.query(m)
        self.lsh.insert(idx, m, check_duplication=False)
        self.fingerprints.append(fp)
        self.signatures[idx] = m.hashvalues
        n = self.lengths[idx] = len(sh)
        if not candidates:
            return []
        t = self.threshold
        cand = np.fromiter(candidates, dtype=np.int64, count=len(candidates))
        nj = self.lengths[cand]
        ok = np.minimum(nj, n) / np.maximum(nj, n) >= t
        cand, nj = cand[ok], nj[ok]
        if len(cand) and self.min_agreement:
            ok = (self.signatures[cand] == m.hashvalues).sum(axis=1) >= self.min_agreement
            cand, nj = cand[ok], nj[ok]
        if not len(cand):
            return []
        fps = [self.fingerprints[j] for j in cand.tolist()]
        other = np.concatenate(fps)
        pos = np.minimum(np.searchsorted(fp, other), len(fp) - 1)
        owner = np.repeat(np.arange(len(cand)), [len(f) for f in fps])
        inter = np.bincount(owner, weights=fp[pos] == other, minlength=len(cand))
        ok = inter / (n + nj - inter) >= t
        found = []
        for j, size in zip(cand[ok].tolist(), nj[ok].tolist(), strict=True):
            common = len(sh.intersection(self._shingles(j)))
            if common / (n + size - common) >= t:
                found.append(j)
        return found


def old_near_text_pairs(keys: Sequence[str], settings: DedupSettings) -> np.ndarray:
    """The old search's verified pairs (query + insert key by key, in order)."""
    index = _TextIndex(keys, settings)
    found = [(h, g) for g in range(len(keys)) for h in index.add(g)]
    index.close()
    return np.array(found, dtype=np.int64).reshape(-1, 2)


# ----------------------------------------------------------------------------- main


def best_of(repeat: int, fn: Callable[[], T]) -> tuple[T, float, float, float]:
    """:func:`measured`, ``repeat`` times: the first result, then the fastest run's seconds,
    peak memory and CPU seconds."""
    out, *best = measured(fn)
    for _ in range(repeat - 1):
        best = min(best, list(measured(fn)[1:]))
    return out, *best


def _dropped(
    decisions: list[tuple[str, str | None, str | None, str]],
) -> dict[int, tuple[int, int]]:
    """Dropped post index -> (index of its ``dup_of``, index of its cluster's kept post)."""
    return {int(p[1:]): (int(d[1:]), int(c[1:])) for p, r, d, c in decisions if d is not None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="number of posts (default 100000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--shingle-size", type=int, default=5)
    ap.add_argument("--rensa-bands", type=int, default=16, help="rensa LSH bands (default 16)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of ours and rensa; best counts")
    ap.add_argument("--no-old", action="store_true", help="skip the old implementation")
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)

    t0 = time.perf_counter()
    posts = make_posts(args.n, args.seed)
    keys = [text_key(p.text) for p in posts]
    n = len(keys)
    print(
        f"generated {n} posts in {time.perf_counter() - t0:.1f}s "
        f"({sum(p.kind == 'near' for p in posts)} near-dup edits, "
        f"{sum(p.kind == 'exact' for p in posts)} exact copies; "
        f"{len(set(keys))} distinct keys, mean length {sum(map(len, keys)) / n:.0f} chars)"
    )
    settings = DedupSettings(
        text_threshold=args.threshold,
        num_perm=args.num_perm,
        shingle_size=args.shingle_size,
        exact_image=False,
        near_image=False,
    )
    t, size = args.threshold, args.shingle_size

    ours_dec, t_ours, mem_ours, cpu_ours = best_of(args.repeat, lambda: run_ours(keys, settings))
    base, t_base, mem_base, cpu_base = best_of(
        args.repeat,
        lambda: run_rensa(keys, t, args.num_perm, size, args.rensa_bands),
    )
    ours_dup = _dropped(ours_dec)
    ours = set(ours_dup)
    print(f"\n== {n} posts, threshold {t}, {size}-grams, {args.num_perm} perms")
    print(
        f"ours:     {n / t_ours:9.0f} posts/s  ({t_ours:6.2f}s, cpu {cpu_ours:6.2f}s, "
        f"peak RSS +{mem_ours:.0f} MiB), dropped {len(ours)}"
    )
    print(
        f"rensa:    {n / t_base:9.0f} posts/s  ({t_base:6.2f}s, cpu {cpu_base:6.2f}s, "
        f"peak RSS +{mem_base:.0f} MiB), dropped {len(base)}  [{args.rensa_bands} bands x "
        f"{args.num_perm // args.rensa_bands} rows]"
    )
    if not args.no_old:
        old_dec, t_old, mem_old, cpu_old = measured(
            lambda: run_ours(keys, settings, text_pairs=old_near_text_pairs)
        )
        print(
            f"old:      {n / t_old:9.0f} posts/s  ({t_old:6.2f}s, cpu {cpu_old:6.2f}s, "
            f"peak RSS +{mem_old:.0f} MiB), dropped {len(_dropped(old_dec))}"
        )
    print(f"speed ratio ours/rensa: {t_base / t_ours:.2f}x", end="")
    print(f", ours/old: {t_old / t_ours:.2f}x" if not args.no_old else "")
    if not args.no_old:
        differ = sum(a != b for a, b in zip(ours_dec, old_dec, strict=True))
        print(
            f"ours vs old: decisions identical: {ours_dec == old_dec} "
            f"({n} decisions, {differ} differ)"
        )
    both = len(ours & base)
    print(
        f"ours vs rensa: dropped by both {both}, only ours {len(ours - base)}, only rensa "
        f"{len(base - ours)} (every rensa drop is ours: {base <= ours})"
    )
    direct = indirect = 0
    for i, (j, root) in ours_dup.items():
        if keys[i] == keys[j] or jaccard(shingles(keys[i], size), shingles(keys[j], size)) >= t:
            direct += 1
        elif j == root:
            indirect += 1
    print(
        f"ours: {direct}/{len(ours_dup)} drops have Jaccard >= {t} with their dup_of, "
        f"{indirect} joined their cluster only through a later post (dup_of = the kept post), "
        f"{len(ours_dup) - direct - indirect} other"
    )
    intended = {i for i, p in enumerate(posts) if p.origin is not None}
    print(
        f"vs the generator's labels (edits/copies of an earlier post): ours recall "
        f"{len(ours & intended) / max(1, len(intended)):.4f}, rensa recall "
        f"{len(base & intended) / max(1, len(intended)):.4f}"
    )
    missed = [i for i in intended - ours if keys[i]]
    sims = [jaccard(shingles(keys[i], size), shingles(keys[posts[i].origin], size)) for i in missed]
    print(
        f"intended dups ours kept: {len(missed)}, all below the threshold vs their source: "
        f"{all(s < t for s in sims)} (max J {max(sims, default=0):.3f})"
    )


if __name__ == "__main__":
    main()
