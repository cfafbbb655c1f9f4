"""Train/validation/test splits: whole duplicate groups, stratified by language and entity types.

:func:`assign_splits` is pure and deterministic: the same items, fractions and seed give the same
splits in any process (no Python ``hash()``; input order does not matter).

* **Groups.** Items that share a ``group`` (a near-duplicate cluster) always land in one split;
  :func:`link_groups` builds groups from any number of "these posts belong together" links.
* **Stratification.** Per language (a group's language is its most frequent one), groups are
  shuffled with a seeded RNG, the larger first, and each goes to the split whose *relative
  deficit* — ``(target - current) / target`` averaged over the group's features (its size and
  each entity type present in its posts) — is largest. So every language, and within it every
  entity type, is spread over the splits in about the requested fractions.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from mmner_data.export.settings import SPLIT_NAMES

_N = "\x00n"  # the size feature (cannot collide with an entity type)


@dataclass(frozen=True, slots=True)
class SplitItem:
    """One post as the splitter sees it."""

    id: str
    group: str
    lang: str
    types: frozenset[str] = frozenset()


def link_groups(ids: Iterable[str], links: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Connected components of ``links`` over ``ids``: id → the smallest id of its component.

    Links that name an id outside ``ids`` still join what they touch (a dropped post can tie
    two exported ones together).
    """
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    def union(a: str, b: str) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            lo, hi = sorted((ra, rb))
            parent[hi] = lo

    ids = list(ids)
    for i in ids:
        find(i)
    for a, b in links:
        if a and b:
            union(a, b)
    return {i: find(i) for i in ids}


def assign_splits(
    items: Sequence[SplitItem], fractions: Mapping[str, float], seed: int
) -> dict[str, str]:
    """Item id → split name (one of ``fractions`` with a fraction > 0)."""
    splits = [s for s in SPLIT_NAMES if fractions.get(s, 0.0) > 0] + [
        s for s in fractions if s not in SPLIT_NAMES and fractions[s] > 0
    ]
    if not splits:
        raise ValueError("no split has a fraction > 0")
    total = sum(fractions[s] for s in splits)
    ratio = {s: fractions[s] / total for s in splits}

    groups: dict[str, list[SplitItem]] = {}
    for it in items:
        groups.setdefault(it.group, []).append(it)
    by_lang: dict[str, list[tuple[str, Counter[str]]]] = {}
    for gid in sorted(groups):
        members = groups[gid]
        langs = Counter(m.lang for m in members)
        lang = min(langs, key=lambda x: (-langs[x], x))
        feats: Counter[str] = Counter({_N: len(members)})
        for m in members:
            feats.update(m.types)
        by_lang.setdefault(lang, []).append((gid, feats))

    out: dict[str, str] = {}
    for lang in sorted(by_lang):
        entries = by_lang[lang]
        random.Random(f"{seed}:{lang}").shuffle(entries)
        entries.sort(key=lambda e: -e[1][_N])  # stable: larger groups first, else shuffled
        totals: Counter[str] = Counter()
        for _, feats in entries:
            totals.update(feats)
        counts = {s: Counter() for s in splits}
        for gid, feats in entries:
            best = max(splits, key=lambda s: _deficit(feats, counts[s], totals, ratio[s]))
            counts[best].update(feats)
            for m in groups[gid]:
                out[m.id] = best
    return out


def _deficit(feats: Counter[str], have: Counter[str], totals: Counter[str], ratio: float) -> float:
    """Mean relative shortfall of a split over the group's features (size counts double)."""
    score = 0.0
    weight = 0.0
    for f in feats:
        target = ratio * totals[f]
        w = 2.0 if f == _N else 1.0
        score += w * (target - have[f]) / target
        weight += w
    return score / weight
