"""The split function: whole groups, deterministic, stratified by language and entity type."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from mmner_data.export.splits import SplitItem, assign_splits, link_groups

FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}
TYPES = ("PER", "ORG", "LOC", "MISC")

_items = st.lists(
    st.tuples(
        st.integers(0, 40),  # group number
        st.sampled_from(["en", "fr", "de", "es"]),
        st.frozensets(st.sampled_from(TYPES), max_size=3),
    ),
    min_size=1,
    max_size=120,
).map(
    lambda rows: [
        SplitItem(f"p{i}", f"g{g}", lang, types) for i, (g, lang, types) in enumerate(rows)
    ]
)


@settings(max_examples=150, deadline=None)
@given(_items, st.integers(0, 10**6))
def test_no_group_crosses_splits_and_result_is_deterministic(items, seed):
    out = assign_splits(items, FRACTIONS, seed)
    assert set(out) == {it.id for it in items}
    assert set(out.values()) <= set(FRACTIONS)
    per_group: dict[str, set[str]] = {}
    for it in items:
        per_group.setdefault(it.group, set()).add(out[it.id])
    assert all(len(s) == 1 for s in per_group.values())
    # same seed → same splits, whatever the input order
    shuffled = list(items)
    random.Random(seed).shuffle(shuffled)
    assert assign_splits(shuffled, FRACTIONS, seed) == out


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10**6), st.integers(30, 200))
def test_singletons_follow_the_fractions_per_language(seed, n):
    rng = random.Random(seed)
    items = [
        SplitItem(
            f"p{i}",
            f"p{i}",
            rng.choice(["en", "fr"]),
            frozenset(rng.sample(TYPES, rng.randint(0, 2))),
        )
        for i in range(n)
    ]
    out = assign_splits(items, FRACTIONS, seed)
    # Within 3.5 posts of the target, per language and per language × entity type (a plain
    # seeded shuffle is off by sqrt(n·p·(1-p)) ≈ 3 for 100 posts, and by 3× that in the tails).
    for lang in ("en", "fr"):
        for typ in (None, *TYPES):
            ids = [it.id for it in items if it.lang == lang and (typ is None or typ in it.types)]
            counts = Counter(out[i] for i in ids)
            for split, frac in FRACTIONS.items():
                assert abs(counts[split] - frac * len(ids)) <= 3.5, (lang, typ, counts)


def test_entity_types_are_spread_over_splits():
    # 100 English posts; 20 of them have a MISC entity: test and validation both get some
    items = [
        SplitItem(f"p{i:03d}", f"p{i:03d}", "en", frozenset({"MISC"} if i % 5 == 0 else {"PER"}))
        for i in range(100)
    ]
    out = assign_splits(items, FRACTIONS, 7)
    misc = Counter(out[it.id] for it in items if "MISC" in it.types)
    assert misc["validation"] == 2 and misc["test"] == 2 and misc["train"] == 16


def test_different_seeds_give_different_splits():
    items = [SplitItem(f"p{i}", f"p{i}", "en") for i in range(50)]
    assert assign_splits(items, FRACTIONS, 1) != assign_splits(items, FRACTIONS, 2)


def test_zero_fraction_split_is_left_out():
    items = [SplitItem(f"p{i}", f"p{i}", "en") for i in range(20)]
    out = assign_splits(items, {"train": 0.9, "validation": 0.1, "test": 0.0}, 3)
    assert Counter(out.values()) == {"train": 18, "validation": 2}


def test_link_groups_is_transitive_and_uses_outside_links():
    groups = link_groups(["a", "b", "c", "d"], [("a", "x"), ("x", "c"), ("d", "d")])
    assert groups == {"a": "a", "b": "b", "c": "a", "d": "d"}
