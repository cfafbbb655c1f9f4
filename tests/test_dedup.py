"""Exact and near-duplicate detection: golden cases, clustering rules, images, properties."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import subprocess
import sys
from collections import Counter
from itertools import combinations, pairwise

import imagehash
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageEnhance

from mmner_data.collect import dedup
from mmner_data.collect.dedup import (
    DedupDecision,
    DedupItem,
    DedupSettings,
    band_hashes,
    bucket_pairs,
    find_duplicates,
    lsh_params,
    near_pairs_hamming,
    near_text_pairs,
    text_signatures,
    verify_pairs,
)
from mmner_data.collect.normalise import text_key

TEXT_ONLY = DedupSettings(exact_image=False, near_image=False)
IMAGES_ONLY = DedupSettings(exact_text=False, near_text=False)


def items_of(*texts: str) -> list[DedupItem]:
    return [DedupItem(f"p{i}", (i,), text_key(t)) for i, t in enumerate(texts)]


def by_id(decisions: list[DedupDecision]) -> dict[str, DedupDecision]:
    return {d.post_id: d for d in decisions}


def exact_jaccard(a: str, b: str, k: int = 5) -> float:
    def sh(s: str) -> set[str]:
        return {s} if len(s) <= k else {s[i : i + k] for i in range(len(s) - k + 1)}

    sa, sb = sh(text_key(a)), sh(text_key(b))
    return len(sa & sb) / len(sa | sb)


# --------------------------------------------------------------------------- golden cases

GOLDEN = {
    "en": (
        "Huge queues at Paddington station this morning, Network Rail says delays of 40 minutes",
        "Huge queues at Paddington station this morning, Network Rail says delays of 40 minutes 😡",
        "Huge queues at Paddington station this morning, Network Rail says delays of 40 minutes #strike",
        "Huge queues at Paddington station this evening, Network Rail says delays of 40 minutes",
        "Taylor Swift announced two extra concerts at Wembley Stadium for next summer",
    ),
    "fr": (
        "Énorme bouchon sur le périphérique de Lyon ce matin, la préfecture annonce une heure de retard",
        "Énorme bouchon sur le périphérique de Lyon ce matin, la préfecture annonce une heure de retard !! 🚗",
        "Énorme bouchon sur le périphérique de Lyon ce matin, la préfecture annonce une heure de retard #A7",
        "Énorme bouchon sur le périphérique de Lyon ce soir, la préfecture annonce une heure de retard",
        "Kylian Mbappé a signé au Real Madrid, les supporters du PSG sont furieux",
    ),
    "de": (
        "Riesige Schlangen am Hauptbahnhof München heute Morgen, die Deutsche Bahn meldet Verspätungen",
        "Riesige Schlangen am Hauptbahnhof München heute Morgen, die Deutsche Bahn meldet Verspätungen 🙄",
        "Riesige Schlangen am Hauptbahnhof München heute Morgen, die Deutsche Bahn meldet Verspätungen #Streik",
        "Riesige Schlangen am Hauptbahnhof München heute Abend, die Deutsche Bahn meldet Verspätungen",
        "Olaf Scholz trifft Emmanuel Macron in Berlin, um über Energiepolitik zu sprechen",
    ),
    "es": (
        "Colas enormes en la estación de Atocha esta mañana, Renfe anuncia retrasos de cuarenta minutos",
        "Colas enormes en la estación de Atocha esta mañana, Renfe anuncia retrasos de cuarenta minutos 😤",
        "Colas enormes en la estación de Atocha esta mañana, Renfe anuncia retrasos de cuarenta minutos #huelga",
        "Colas enormes en la estación de Atocha esta tarde, Renfe anuncia retrasos de cuarenta minutos",
        "Rosalía publica un nuevo disco grabado entre Barcelona y Nueva York",
    ),
}


@pytest.mark.parametrize("lang", sorted(GOLDEN))
def test_golden_per_language(lang: str) -> None:
    original, emoji, hashtag, changed, other = GOLDEN[lang]
    # The near-duplicates really are above the threshold, the unrelated post far below it.
    assert exact_jaccard(original, hashtag) >= 0.7
    assert exact_jaccard(original, changed) >= 0.7
    assert exact_jaccard(original, other) < 0.2
    got = by_id(find_duplicates(items_of(original, emoji, hashtag, changed, other), TEXT_ONLY))
    assert got["p0"] == DedupDecision("p0", None, None, "p0")
    # An added emoji or "!!" vanishes from the text key: an exact duplicate.
    assert got["p1"] == DedupDecision("p1", "exact_dup_text", "p0", "p0")
    assert got["p2"] == DedupDecision("p2", "near_dup_text", "p0", "p0")
    assert got["p3"] == DedupDecision("p3", "near_dup_text", "p0", "p0")
    assert got["p4"] == DedupDecision("p4", None, None, "p4")


def test_same_template_different_entities_are_not_merged() -> None:
    posts = [
        "Emmanuel Macron est arrivé à Marseille pour rencontrer Airbus ce matin",
        "Olaf Scholz est arrivé à Hamburg pour rencontrer Siemens ce soir",
        "Pedro Sánchez est arrivé à Sevilla pour rencontrer Renfe hier",
    ]
    for a, b in combinations(posts, 2):
        assert exact_jaccard(a, b) < 0.7
    assert all(d.reason is None for d in find_duplicates(items_of(*posts), TEXT_ONLY))


def test_short_and_empty_text_keys() -> None:
    items = [
        DedupItem("a", (1,), "lol"),
        DedupItem("b", (2,), "lol"),
        DedupItem("c", (3,), "lolz"),  # one shingle each ("lol" vs "lolz"): Jaccard 0
        DedupItem("d", (4,), ""),
        DedupItem("e", (5,), ""),  # empty keys never link
    ]
    got = by_id(find_duplicates(items, TEXT_ONLY))
    assert got["b"].reason == "exact_dup_text" and got["b"].dup_of == "a"
    assert [got[k].reason for k in "cde"] == [None, None, None]


# --------------------------------------------------------------------------- clustering rules

# A and C differ in two places; B is halfway: A~B and B~C above 0.7, A~C below.
CHAIN_A = "the mayor of springfield opened the new public library on main street with the whole city council today"
CHAIN_B = "the mayor of springfield opened the new public library on main street with the whole school board today"
CHAIN_C = "the mayor of shelbyville opened the new public library on main street with the whole school board today"


def test_transitive_cluster() -> None:
    assert exact_jaccard(CHAIN_A, CHAIN_B) >= 0.7 and exact_jaccard(CHAIN_B, CHAIN_C) >= 0.7
    assert exact_jaccard(CHAIN_A, CHAIN_C) < 0.7
    got = by_id(find_duplicates(items_of(CHAIN_A, CHAIN_B, CHAIN_C), TEXT_ONLY))
    assert got["p0"].reason is None
    assert got["p1"] == DedupDecision("p1", "near_dup_text", "p0", "p0")
    # C has no link to A: its strongest link to an earlier member is to B.
    assert got["p2"] == DedupDecision("p2", "near_dup_text", "p1", "p0")


def test_member_joined_only_through_a_later_member() -> None:
    # Order A, C, B: C's only link (to B) is to a later post, but C is in A's cluster.
    items = [
        DedupItem("A", (1,), text_key(CHAIN_A)),
        DedupItem("C", (2,), text_key(CHAIN_C)),
        DedupItem("B", (3,), text_key(CHAIN_B)),
    ]
    got = by_id(find_duplicates(items, TEXT_ONLY))
    assert got["A"].reason is None
    assert got["B"] == DedupDecision("B", "near_dup_text", "A", "A")
    assert got["C"] == DedupDecision("C", "near_dup_text", "A", "A")


def test_strongest_link_wins_then_earliest() -> None:
    ph = "c2924c5532bddfc8"
    items = [
        DedupItem("x", (1,), "completely unrelated words here", (), (ph,)),
        DedupItem("y", (2,), "a post about the weather in madrid", ("s1",)),
        DedupItem("z", (3,), "a post about the weather in madrid", ("s1",)),
        DedupItem("w", (4,), "a post about the weather in madrid", ("s1",), (ph,)),
    ]
    got = by_id(find_duplicates(items))
    # w is a near-image duplicate of x (earliest) but an exact text duplicate of y: text wins.
    assert got["w"] == DedupDecision("w", "exact_dup_text", "y", "x")
    assert got["z"] == DedupDecision("z", "exact_dup_text", "y", "x")
    # y's only links are to later posts (z, w): it is dropped as a duplicate of the kept x,
    # with its own strongest link as the reason.
    assert got["y"] == DedupDecision("y", "exact_dup_text", "x", "x")
    assert got["x"].reason is None


def test_settings_switch_links_off() -> None:
    texts = (CHAIN_A, CHAIN_A, CHAIN_B)
    exact_off = by_id(find_duplicates(items_of(*texts), DedupSettings(exact_text=False)))
    assert exact_off["p1"].reason == "near_dup_text"  # identical keys: Jaccard 1
    near_off = by_id(find_duplicates(items_of(*texts), DedupSettings(near_text=False)))
    assert near_off["p1"].reason == "exact_dup_text" and near_off["p2"].reason is None
    strict = by_id(find_duplicates(items_of(*texts), DedupSettings(text_threshold=0.99)))
    assert strict["p2"].reason is None
    off = DedupSettings(exact_text=False, near_text=False, exact_image=False, near_image=False)
    assert all(d.reason is None for d in find_duplicates(items_of(*texts), off))


def test_input_order_does_not_matter() -> None:
    texts = [*GOLDEN["en"], *GOLDEN["de"], CHAIN_A, CHAIN_C, CHAIN_B]
    items = [
        DedupItem(f"p{i}", (i % 3, i), text_key(t), (f"s{i % 4}",) if i % 5 == 0 else ())
        for i, t in enumerate(texts)
    ]
    want = sorted(find_duplicates(items), key=lambda d: d.post_id)
    rng = random.Random(7)
    for _ in range(5):
        shuffled = items[:]
        rng.shuffle(shuffled)
        assert sorted(find_duplicates(shuffled), key=lambda d: d.post_id) == want


def test_deterministic_across_processes() -> None:
    texts = [*GOLDEN["fr"], *GOLDEN["es"], CHAIN_A, CHAIN_B, CHAIN_C]
    code = (
        "import json, sys\n"
        "from mmner_data.collect.dedup import DedupItem, find_duplicates\n"
        "texts = json.loads(sys.stdin.read())\n"
        "items = [DedupItem(f'p{i}', (i,), t) for i, t in enumerate(texts)]\n"
        "print(json.dumps([list(vars(d).values()) for d in find_duplicates(items)]))\n"
    )
    keys = json.dumps([text_key(t) for t in texts])
    outs = set()
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        res = subprocess.run(
            [sys.executable, "-c", code], input=keys, capture_output=True, text=True, env=env
        )
        assert res.returncode == 0, res.stderr
        outs.add(res.stdout)
    here = [
        [d.post_id, d.reason, d.dup_of, d.cluster_id] for d in find_duplicates(items_of(*texts))
    ]
    assert outs == {json.dumps(here) + "\n"}


def test_duplicate_post_ids_rejected_and_empty_input() -> None:
    assert find_duplicates([]) == []
    with pytest.raises(ValueError, match="unique"):
        find_duplicates([DedupItem("a", (1,), "x"), DedupItem("a", (2,), "y")])
    with pytest.raises(ValueError):
        DedupSettings(text_threshold=0)


def test_progress_advances_add_up() -> None:
    rng = random.Random(3)
    items = [DedupItem(f"p{i}", (i,), f"post {rng.random()} words") for i in range(5000)]
    seen: list[int] = []
    find_duplicates(items, progress=seen.append)
    assert sum(seen) == 5000 and len(seen) > 1 and all(a > 0 for a in seen)


# --------------------------------------------------------------------------- images


def _jpeg(im: Image.Image, quality: int = 70) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf)


def _copy(im: Image.Image) -> Image.Image:
    """An 80% resized JPEG q70 copy, as reposts come back."""
    return _jpeg(im.resize((int(im.width * 0.8), int(im.height * 0.8)), Image.LANCZOS))


@pytest.fixture(scope="module")
def photos() -> dict[str, str]:
    from skimage import data

    astronaut = Image.fromarray(data.astronaut()).convert("RGB")
    banner = astronaut.copy()
    ImageDraw.Draw(banner).rectangle((20, 440, 300, 500), fill=(255, 255, 255))
    return {
        "astronaut": str(imagehash.phash(astronaut)),
        "copy": str(imagehash.phash(_copy(astronaut))),
        "brighter": str(imagehash.phash(_copy(ImageEnhance.Brightness(astronaut).enhance(1.3)))),
        "banner": str(imagehash.phash(_copy(banner))),
        "coffee": str(imagehash.phash(Image.fromarray(data.coffee()).convert("RGB"))),
    }


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def test_real_phash_near_and_far(photos: dict[str, str]) -> None:
    orig = photos["astronaut"]
    for name in ("copy", "brighter", "banner"):
        assert hamming(orig, photos[name]) <= 6, name
    assert hamming(orig, photos["coffee"]) > 20
    items = [
        DedupItem("orig", (1,), "", ("sha-orig",), (orig,)),
        DedupItem("copy", (2,), "", ("sha-copy",), (photos["copy"],)),
        DedupItem("banner", (3,), "", ("sha-banner",), (photos["banner"],)),
        DedupItem("same-file", (4,), "", ("sha-orig",), (orig,)),
        DedupItem("coffee", (5,), "", ("sha-coffee",), (photos["coffee"],)),
    ]
    got = by_id(find_duplicates(items, IMAGES_ONLY))
    assert got["orig"].reason is None
    assert got["copy"] == DedupDecision("copy", "near_dup_image", "orig", "orig")
    assert got["banner"] == DedupDecision("banner", "near_dup_image", "orig", "orig")
    assert got["same-file"] == DedupDecision("same-file", "exact_dup_image", "orig", "orig")
    assert got["coffee"] == DedupDecision("coffee", None, None, "coffee")


def test_hamming_threshold_is_inclusive(photos: dict[str, str]) -> None:
    d = hamming(photos["astronaut"], photos["brighter"])
    assert d > 0
    items = [
        DedupItem("a", (1,), "", (), (photos["astronaut"],)),
        DedupItem("b", (2,), "", (), (photos["brighter"],)),
    ]
    assert by_id(find_duplicates(items, DedupSettings(image_hamming=d)))["b"].reason == (
        "near_dup_image"
    )
    assert by_id(find_duplicates(items, DedupSettings(image_hamming=d - 1)))["b"].reason is None


def test_multi_image_posts_and_bad_phash() -> None:
    items = [
        DedupItem("a", (1,), "", ("s1", "s2")),
        DedupItem("b", (2,), "", ("s3",)),
        DedupItem("c", (3,), "", ("s3", "s2")),  # shares s2 with a and s3 with b
    ]
    got = by_id(find_duplicates(items))
    assert got["b"] == DedupDecision("b", "exact_dup_image", "a", "a")  # via c, a later post
    assert got["c"] == DedupDecision("c", "exact_dup_image", "a", "a")
    for bad in ("not-hex", "-1", "0x12", "123456789abcdef01"):
        with pytest.raises(ValueError, match="perceptual hash"):
            find_duplicates([DedupItem("a", (1,), "", (), (bad,))])


@pytest.mark.parametrize("k", [0, 1, 4, 6, 10])
def test_pigeonhole_matches_brute_force(monkeypatch: pytest.MonkeyPatch, k: int) -> None:
    rng = np.random.default_rng(k)
    base = rng.integers(0, 2**63, size=300, dtype=np.uint64) << np.uint64(1)
    vals = [int(b) for b in base]
    for b in base[:150]:  # near copies: 1..12 flipped bits
        flips = rng.choice(64, size=int(rng.integers(1, 13)), replace=False)
        vals.append(int(b) ^ int(sum(1 << int(f) for f in flips)))
    vals += [0] + [1 << i for i in range(64)]  # one dense neighbourhood (a big bucket)
    values = np.unique(np.array(vals, dtype=np.uint64))
    want = {
        (i, j)
        for i, j in combinations(range(len(values)), 2)
        if (int(values[i]) ^ int(values[j])).bit_count() <= k
    }
    monkeypatch.setattr(dedup, "_BRUTE_FORCE_MAX", 10)
    got = near_pairs_hamming(values, k)
    assert {tuple(p) for p in got.tolist()} == want
    assert len(got) == len(want)  # no repeats
    monkeypatch.setattr(dedup, "_BRUTE_FORCE_MAX", 10**9)
    assert {tuple(p) for p in near_pairs_hamming(values, k).tolist()} == want


# --------------------------------------------------------------------------- LSH internals


def test_lsh_params_bound_the_miss_probability() -> None:
    for t in (0.5, 0.7, 0.8, 0.9):
        b, r = lsh_params(t, 128)
        assert b * r <= 128 and b >= 2
        assert (1 - t**r) ** b <= dedup.LSH_MAX_MISS
        # and it is the most selective such choice: one more row per band misses more
        assert (1 - t ** (r + 1)) ** (128 // (r + 1)) > dedup.LSH_MAX_MISS
    assert lsh_params(0.7, 128) == (32, 4)


@pytest.mark.parametrize(("t", "perms"), [(0.5, 128), (0.7, 128), (0.9, 64), (0.7, 16)])
def test_estimate_precheck_bound(t: float, perms: int) -> None:
    """A pair at the threshold has fewer equal MinHash values than the pre-check needs with
    probability <= ESTIMATE_MAX_SKIP, and the bound is the tightest such one."""
    from fractions import Fraction
    from math import comb

    p = Fraction(t).limit_denominator(1000)

    def below(k: int) -> float:  # P(Binomial(perms, t) < k)
        return float(sum(comb(perms, i) * p**i * (1 - p) ** (perms - i) for i in range(k)))

    need = dedup._min_agreement(t, perms)
    assert below(need) <= dedup.ESTIMATE_MAX_SKIP < below(need + 1)
    assert need < t * perms  # never stricter than the estimate at the threshold itself


def test_band_hashes_bucket_equal_bands_only() -> None:
    """Two keys share column b's bucket value exactly when their band-b rows are equal, and
    different bands never share a value."""
    rng = random.Random(1)
    keys = [" ".join(rng.choice(["ab", "cd", "ef", "gh"]) for _ in range(8)) for _ in range(300)]
    s = DedupSettings()
    bands, rows = lsh_params(s.text_threshold, s.num_perm)
    sig = text_signatures(keys, s)
    h = band_hashes(sig, s)
    assert h.shape == (len(keys), bands) and h.dtype == np.uint64
    for b in range(bands):
        band = sig[:, b * rows : (b + 1) * rows]
        same_rows = (band[:, None, :] == band[None, :, :]).all(axis=2)
        assert np.array_equal(h[:, b][:, None] == h[:, b][None, :], same_rows)
        assert len(np.unique(band, axis=0)) < len(keys)  # the corpus does make collisions
    columns = [set(h[:, b].tolist()) for b in range(bands)]
    assert all(not (x & y) for x, y in combinations(columns, 2))
    assert np.array_equal(band_hashes(sig.astype(np.uint64), s), h)


def test_near_pairs_found_at_the_threshold() -> None:
    """Recall right at the threshold: LSH must find (almost) every pair with J just >= 0.7."""
    rng = random.Random(11)
    words = ["alpha", "brava", "cielo", "dorf", "eins", "fuego", "gare", "hiver", "isla", "jour"]
    pairs = 0
    for n in range(300):
        base = " ".join(rng.choice(words) + str(rng.randrange(100)) for _ in range(12))
        variant = base
        while exact_jaccard(base, variant) >= 0.75:  # edit until just above the threshold
            i = rng.randrange(len(variant) - 2)
            nxt = variant[:i] + rng.choice("xyz") + variant[i + 1 :]
            if exact_jaccard(base, nxt) < 0.7:
                break
            variant = nxt
        if exact_jaccard(base, variant) < 0.7:
            continue
        got = find_duplicates(
            [DedupItem("a", (n, 0), base), DedupItem("b", (n, 1), variant)], TEXT_ONLY
        )
        pairs += 1
        assert got[1].reason == "near_dup_text", (base, variant)
    assert pairs > 250


# --------------------------------------------------------------------------- properties

BASES = [
    "the mayor of springfield opened the new public library on main street today",
    "le maire de lyon a inauguré la nouvelle médiathèque place bellecour ce matin",
    "der bürgermeister von köln hat heute die neue stadtbibliothek am dom eröffnet",
    "el alcalde de sevilla inauguró hoy la nueva biblioteca pública junto al río",
    "huge queues at the station again tonight trains delayed by forty minutes",
    "ok",
    "lol",
]


@st.composite
def text_keys(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from([*BASES, ""]))
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.integers(0, 2))
        words = text.split()
        if op == 0:
            text = f"{text} {draw(st.sampled_from(['breaking', 'wow', 'encore', 'heute', 'ya']))}"
        elif op == 1 and words:
            i = draw(st.integers(0, len(words) - 1))
            words[i] = draw(st.sampled_from(["nouvelle", "neue", "nueva", "new", "x"]))
            text = " ".join(words)
        elif words:
            text = " ".join(words[: max(1, len(words) - draw(st.integers(1, 4)))])
    return text


PHASH_BASES = [0x0123456789ABCDEF, 0xC2924C5532BDDFC8, 0xC2924C5532BDDF00]


@st.composite
def phashes(draw: st.DrawFn) -> str:
    v = draw(st.sampled_from(PHASH_BASES))
    for bit in draw(st.lists(st.integers(0, 63), max_size=9)):
        v ^= 1 << bit
    return f"{v:016x}"


@st.composite
def item_lists(draw: st.DrawFn) -> list[DedupItem]:
    n = draw(st.integers(0, 12))
    return [
        DedupItem(
            post_id=f"p{i}",
            order_key=(draw(st.integers(0, 4)),),
            text_key=draw(text_keys()),
            image_sha256=tuple(draw(st.lists(st.sampled_from(["s1", "s2", "s3"]), max_size=2))),
            image_phash=tuple(draw(st.lists(phashes(), max_size=2))),
        )
        for i in range(n)
    ]


dedup_settings = st.builds(
    DedupSettings,
    exact_text=st.booleans(),
    near_text=st.booleans(),
    text_threshold=st.sampled_from([0.5, 0.7, 0.9]),
    exact_image=st.booleans(),
    near_image=st.booleans(),
    image_hamming=st.sampled_from([0, 3, 6]),
)


def _shingles(key: str, k: int) -> set[str]:
    if not key:
        return set()
    return {key} if len(key) <= k else {key[i : i + k] for i in range(len(key) - k + 1)}


def _grey_band_top(threshold: float) -> float:
    """Below this Jaccard (and at or above the threshold) LSH may miss a pair with probability
    above 1e-9; brute-force equality is only asserted for inputs with no pair in that band."""
    b, r = lsh_params(threshold, 128)
    j = threshold
    while (1 - j**r) ** b > 1e-9:
        j += 0.005
    return j


def reference(items: list[DedupItem], s: DedupSettings) -> list[DedupDecision]:
    """Brute force over all pairs, straight from the documented rules."""
    order = sorted(items, key=lambda it: (it.order_key, it.post_id))
    n = len(order)
    links: dict[tuple[int, int], set[int]] = {}
    for i, j in combinations(range(n), 2):
        a, b = order[i], order[j]
        kinds = set()
        if a.text_key and b.text_key:
            if s.exact_text and a.text_key == b.text_key:
                kinds.add(0)
            sa, sb = _shingles(a.text_key, s.shingle_size), _shingles(b.text_key, s.shingle_size)
            if s.near_text and len(sa & sb) / len(sa | sb) >= s.text_threshold:
                kinds.add(1)
        if s.exact_image and set(a.image_sha256) & set(b.image_sha256):
            kinds.add(2)
        if s.near_image and any(
            (int(p, 16) ^ int(q, 16)).bit_count() <= s.image_hamming
            for p in a.image_phash
            for q in b.image_phash
        ):
            kinds.add(3)
        if kinds:
            links[i, j] = links[j, i] = kinds
    root = list(range(n))
    for i in range(n):  # components by flooding; root = smallest member
        stack, seen = [i], {i}
        while stack:
            x = stack.pop()
            for y in range(n):
                if (x, y) in links and y not in seen:
                    seen.add(y)
                    stack.append(y)
        root[i] = min(seen)
    out = []
    for i, it in enumerate(order):
        cid = order[root[i]].post_id
        if root[i] == i:
            out.append(DedupDecision(it.post_id, None, None, cid))
            continue
        earlier = [(min(links[i, j]), j) for j in range(i) if (i, j) in links]
        if earlier:
            kind, j = min(earlier)
            out.append(DedupDecision(it.post_id, dedup.REASONS[kind], order[j].post_id, cid))
        else:
            kind = min(min(links[i, j]) for j in range(n) if (i, j) in links)
            out.append(DedupDecision(it.post_id, dedup.REASONS[kind], cid, cid))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(items=item_lists(), s=dedup_settings, data=st.data())
def test_matches_brute_force_reference(
    items: list[DedupItem], s: DedupSettings, data: st.DataObject
) -> None:
    if s.near_text:
        top = _grey_band_top(s.text_threshold)
        for a, b in combinations({it.text_key for it in items if it.text_key}, 2):
            sa, sb = _shingles(a, 5), _shingles(b, 5)
            assume(not s.text_threshold <= len(sa & sb) / len(sa | sb) < top)
    shuffled = data.draw(st.permutations(items))
    assert find_duplicates(shuffled, s) == reference(items, s)


@settings(max_examples=200, deadline=None)
@given(items=item_lists(), s=dedup_settings)
def test_cluster_invariants(items: list[DedupItem], s: DedupSettings) -> None:
    decisions = find_duplicates(items, s)
    order = sorted(items, key=lambda it: (it.order_key, it.post_id))
    assert [d.post_id for d in decisions] == [it.post_id for it in order]
    pos = {it.post_id: i for i, it in enumerate(order)}
    dec = {d.post_id: d for d in decisions}
    clusters: dict[str, list[str]] = {}
    for d in decisions:
        clusters.setdefault(d.cluster_id, []).append(d.post_id)
    for cid, members in clusters.items():
        kept = [m for m in members if dec[m].reason is None]
        assert kept == [cid] == [min(members, key=pos.__getitem__)]  # one kept: the first
    for d in decisions:
        if d.reason is None:
            assert d.dup_of is None
        else:
            assert d.reason in dedup.REASONS
            assert d.dup_of is not None and pos[d.dup_of] < pos[d.post_id]
            assert dec[d.dup_of].cluster_id == d.cluster_id


# --------------------------------------------------------------------------- scale-out steps
# text_signatures -> band_hashes -> bucket_pairs -> verify_pairs must give the same pairs
# whatever the split into shards, batches or partitions (an engine runs them distributed).

SENTENCES = [
    "the mayor of springfield opened the new public library on main street with the whole council",
    "le maire de lyon a inauguré la nouvelle médiathèque place bellecour avec tout le conseil",
    "der bürgermeister von köln hat heute die neue stadtbibliothek am dom mit dem stadtrat eröffnet",
    "el alcalde de sevilla inauguró hoy la nueva biblioteca pública junto al río con el concejo",
    "мэр москвы открыл сегодня новую публичную библиотеку на главной улице вместе с советом",
    "東京都知事は今日新しい公共図書館を開館しました市議会の全員が出席しました本当におめでとう",
]


def edited_corpus(seed: int, edits: int, sentences: list[str] = SENTENCES) -> list[str]:
    """Distinct keys: each sentence and ``edits`` copies with 1-6 character edits each (so
    pairs of every similarity from ~0.4 to ~0.97 within a family), plus short keys."""
    rng = random.Random(seed)
    keys = []
    for base in sentences:
        keys.append(base)
        for _ in range(edits):
            text = base
            for _ in range(rng.randint(1, 6)):
                i = rng.randrange(len(text))
                op = rng.randrange(3)
                if op == 0:
                    text = text[:i] + text[i + 1 :]
                elif op == 1:
                    text = text[:i] + rng.choice("xyzéж字 ") + text[i:]
                else:
                    text = text[:i] + rng.choice("abcdefg") + text[i + 1 :]
            keys.append(text)
    keys += ["ok", "lol", "ok!", "a", "short one", "short two", "lolz"]
    return list(dict.fromkeys(keys))


def brute_force_jaccard(keys: list[str], k: int) -> dict[tuple[int, int], float]:
    sets = [_shingles(key, k) for key in keys]
    return {
        (i, j): len(sets[i] & sets[j]) / len(sets[i] | sets[j])
        for i, j in combinations(range(len(keys)), 2)
    }


def all_candidates(sig: np.ndarray, s: DedupSettings) -> np.ndarray:
    h = band_hashes(sig, s)
    return bucket_pairs(np.repeat(np.arange(len(sig)), h.shape[1]), h.ravel())


def as_set(pairs: np.ndarray) -> set[tuple[int, int]]:
    return {(a, b) for a, b in pairs.tolist()}


def test_text_signatures_any_batch_split() -> None:
    keys = [*edited_corpus(1, 30), "", "x" * 3000]
    s = DedupSettings()
    whole = text_signatures(keys, s)
    assert whole.shape == (len(keys), 128) and whole.dtype == np.uint32
    rng = random.Random(2)
    for _ in range(4):
        cuts = sorted(rng.sample(range(1, len(keys)), rng.randint(1, 6)))
        bounds = pairwise([0, *cuts, len(keys)])
        parts = [text_signatures(keys[a:b], s) for a, b in bounds]
        assert np.array_equal(np.concatenate(parts), whole)
    shuffled = rng.sample(range(len(keys)), len(keys))
    assert np.array_equal(text_signatures([keys[i] for i in shuffled], s), whole[shuffled])
    # Same key, same row; the seed and the shingle size matter.
    assert np.array_equal(text_signatures([keys[5]] * 3, s), whole[[5, 5, 5]])
    assert not np.array_equal(text_signatures(keys[:5], DedupSettings(seed=2)), whole[:5])
    assert not np.array_equal(text_signatures(keys[:5], DedupSettings(shingle_size=4)), whole[:5])


def test_text_signatures_golden() -> None:
    """Pinned values: a rensa release that changed its digests would split a cluster's
    signatures between old and new workers, so it must fail here first."""
    got = text_signatures(["hello world", "ok", "привет мир"], DedupSettings())[:, :4]
    assert got.tolist() == [
        [3533270281, 2287808031, 3278759455, 3583680703],
        [4033901522, 3758062586, 3877712928, 3512846280],
        [3302098490, 78452230, 3260340273, 3494290888],
    ]


def test_text_signatures_identical_across_processes() -> None:
    keys = edited_corpus(3, 10)
    code = (
        "import hashlib, json, sys\n"
        "from mmner_data.collect.dedup import DedupSettings, text_signatures\n"
        "keys = json.loads(sys.stdin.read())\n"
        "sig = text_signatures(keys[::-1], DedupSettings())[::-1]\n"  # another batch layout
        "print(hashlib.sha256(sig.tobytes()).hexdigest())\n"
    )
    want = hashlib.sha256(text_signatures(keys, DedupSettings()).tobytes()).hexdigest()
    for seed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        res = subprocess.run(
            [sys.executable, "-c", code],
            input=json.dumps(keys),
            capture_output=True,
            text=True,
            env=env,
        )
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == want


def test_signatures_leave_a_process_safe_to_fork() -> None:
    """No thread pool is started (rensa's would hang the next parallel call in a forked child),
    so a process that signed keys can still fork workers that sign keys."""
    code = (
        "import os, threading\n"
        "from mmner_data.collect.dedup import DedupSettings, text_signatures\n"
        "keys = [f'key number {i} with words' for i in range(2000)]\n"
        "a = text_signatures(keys, DedupSettings())\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os._exit(0 if (text_signatures(keys, DedupSettings()) == a).all() else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "threads = open('/proc/self/status').read().split('Threads:')[1].split()[0]\n"
        "print(os.waitstatus_to_exitcode(status), threads)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["0", "1"]


HASHES = [0, 1, 7, 2**63, 2**64 - 1, 0x9E3779B97F4A7C15]


def check_bucket_pairs(rows: list[tuple[int, int]], part_of: dict[int, int]) -> None:
    """bucket_pairs over ``(index, bucket value)`` rows is the brute-force definition, and the
    same union when the rows are split by bucket value (``part_of``) into partitions."""
    index = np.array([r[0] for r in rows], dtype=np.int64)
    hashes = np.array([r[1] for r in rows], dtype=np.uint64)
    whole = bucket_pairs(index, hashes)
    assert whole.dtype == np.int64 and whole.shape[1:] == (2,)
    assert np.array_equal(whole, np.unique(whole, axis=0))  # unique, sorted
    want = {(min(a, b), max(a, b)) for (a, h), (b, g) in combinations(rows, 2) if h == g and a != b}
    assert as_set(whole) == want
    where = np.array([part_of[h] for _, h in rows], dtype=np.int64)
    pieces = [bucket_pairs(index[where == p], hashes[where == p]) for p in set(part_of.values())]
    assert np.array_equal(np.unique(np.concatenate(pieces), axis=0).reshape(-1, 2), whole)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_bucket_pairs_partitioned_by_bucket_value(data: st.DataObject) -> None:
    values = data.draw(st.lists(st.sampled_from(HASHES), min_size=1, max_size=6, unique=True))
    rows = data.draw(st.lists(st.tuples(st.integers(0, 40), st.sampled_from(values)), max_size=160))
    n_parts = data.draw(st.integers(1, 4))
    check_bucket_pairs(rows, {h: data.draw(st.integers(0, n_parts - 1)) for h in HASHES})


def test_bucket_pairs_large_buckets() -> None:
    """Buckets beyond dedup._SMALL_BUCKET members take another path."""
    rng = random.Random(8)
    rows = [(rng.randrange(400), rng.choice(HASHES[:3])) for _ in range(600)]
    rows += [(i, HASHES[3]) for i in range(200)]  # one member each: a bucket of 200
    assert max(Counter(h for _, h in rows).values()) > 3 * dedup._SMALL_BUCKET
    check_bucket_pairs(rows, {h: i % 2 for i, h in enumerate(HASHES)})


def test_verify_pairs_any_batch_split() -> None:
    keys = edited_corpus(4, 40)
    s = DedupSettings()
    sig = text_signatures(keys, s)
    cand = all_candidates(sig, s)
    want = verify_pairs(cand, keys, sig, s)
    assert 50 < len(want) < len(cand)  # some pass, some are rejected
    assert np.array_equal(want, np.unique(want, axis=0))
    rng = np.random.default_rng(5)
    for _ in range(3):
        shuffled = cand[rng.permutation(len(cand))]
        shuffled[::2] = shuffled[::2, ::-1]  # either order within a pair
        cuts = np.sort(rng.choice(len(cand), size=4, replace=False))
        got = [verify_pairs(b, keys, sig, s) for b in np.split(shuffled, cuts)]
        assert np.array_equal(np.unique(np.concatenate(got), axis=0), want)
    # The local composition is the same search.
    assert np.array_equal(near_text_pairs(keys, s), want)


@pytest.mark.parametrize(
    ("sentences", "size"),
    [
        (SENTENCES[:4], 5),  # Latin script: codes from the code points
        (SENTENCES, 5),  # CJK too: codes from a numbering of the characters that occur
        (SENTENCES, 12),  # codes would not fit 64 bits: Python sets
    ],
)
def test_verified_pairs_match_brute_force(sentences: list[str], size: int) -> None:
    keys = edited_corpus(6, 40, sentences)
    s = DedupSettings(shingle_size=size)
    t = s.text_threshold
    sims = brute_force_jaccard(keys, size)
    got = as_set(near_text_pairs(keys, s))
    sig = text_signatures(keys, s)
    assert got == as_set(verify_pairs(all_candidates(sig, s), keys, sig, s))
    assert all(sims[p] >= t for p in got)  # precision is exact
    above = {p for p, j in sims.items() if j >= t + 0.1}
    near = {p for p, j in sims.items() if t <= j < t + 0.1}
    below = {p for p, j in sims.items() if t - 0.1 <= j < t}
    assert len(above) > 20 and len(near) > 30 and len(below) > 30  # the corpus covers them
    assert above <= got  # LSH misses a pair at J >= 0.8 with probability ~5e-8
    assert len(near & got) >= 0.97 * len(near)


def test_text_pairs_engine_hook() -> None:
    texts = [*GOLDEN["en"], *GOLDEN["fr"], CHAIN_A, CHAIN_C, CHAIN_B, CHAIN_A, ""]
    items = [DedupItem(f"p{i}", (i % 4, i), text_key(t)) for i, t in enumerate(texts)]
    default = find_duplicates(items, TEXT_ONLY)
    assert find_duplicates(items, TEXT_ONLY, text_pairs=near_text_pairs) == default
    assert any(d.reason == "near_dup_text" for d in default)
    seen: list[list[str]] = []

    def no_pairs(keys: list[str], s: DedupSettings) -> np.ndarray:
        seen.append(list(keys))
        return np.empty((0, 2), dtype=np.int64)

    none = find_duplicates(items, TEXT_ONLY, text_pairs=no_pairs)
    order = sorted(items, key=lambda it: (it.order_key, it.post_id))
    assert seen == [list(dict.fromkeys(it.text_key for it in order if it.text_key))]
    assert all(d.reason != "near_dup_text" for d in none)
    assert {d.reason for d in none} == {None, "exact_dup_text"}


def test_near_text_pairs_edge_cases() -> None:
    s = DedupSettings()
    assert near_text_pairs([], s).shape == (0, 2)
    assert near_text_pairs(["only one"], s).shape == (0, 2)
    assert text_signatures([], s).shape == (0, 128)
    assert band_hashes(text_signatures([], s), s).shape == (0, 32)
    assert bucket_pairs(np.array([], dtype=np.int64), np.array([], dtype=np.uint64)).shape == (
        0,
        2,
    )
    assert verify_pairs(np.empty((0, 2)), [], text_signatures([], s), s).shape == (0, 2)
    # Different keys with the same shingle set are linked (J = 1); a key with itself never.
    keys = ["abcabcab", "abcabcabca", "zzzzzz"]
    assert _shingles(keys[0], 5) == _shingles(keys[1], 5)
    assert as_set(near_text_pairs(keys, s)) == {(0, 1)}
    assert verify_pairs(np.array([[2, 2], [1, 0]]), keys, text_signatures(keys, s), s).tolist() == [
        [0, 1]
    ]
    with pytest.raises(ValueError, match="indices"):
        bucket_pairs(np.arange(3), np.arange(2, dtype=np.uint64))
