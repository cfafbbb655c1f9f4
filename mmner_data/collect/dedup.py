"""Exact and near-duplicate detection over posts (text and images).

Four kinds of *link* join two posts, strongest first:

1. ``exact_dup_text``  — the same non-empty ``text_key``;
2. ``near_dup_text``   — Jaccard similarity of the posts' character ``shingle_size``-gram sets
   is at least ``text_threshold`` (candidates from MinHash-LSH, verified exactly);
3. ``exact_dup_image`` — an image ``sha256`` in common;
4. ``near_dup_image``  — two image perceptual hashes within ``image_hamming`` bits.

Clusters are the connected components of all links. Items are taken in ``order_key`` order
(ties broken by ``post_id``); the first member of a cluster is kept, every other member is
dropped with the strongest link it has to an earlier member as ``reason`` and the earliest such
member as ``dup_of``. A member whose links all go to *later* members (it joined the cluster
through them) gets ``dup_of`` = the kept member and its own strongest link as ``reason``.
``cluster_id`` is the kept member's ``post_id``. See ``docs/dedup.md``.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import xxhash
from datasketch import MinHash, MinHashLSH

from mmner_data.schema import DropReason

__all__ = [
    "REASONS",
    "DedupDecision",
    "DedupItem",
    "DedupSettings",
    "find_duplicates",
    "jaccard",
    "lsh_params",
    "near_pairs_hamming",
    "parse_phash",
    "shingles",
]

#: Link kinds, strongest first; the index is the link's rank.
REASONS: tuple[str, ...] = (
    DropReason.EXACT_DUP_TEXT.value,
    DropReason.NEAR_DUP_TEXT.value,
    DropReason.EXACT_DUP_IMAGE.value,
    DropReason.NEAR_DUP_IMAGE.value,
)
_EXACT_TEXT, _NEAR_TEXT, _EXACT_IMAGE, _NEAR_IMAGE = range(4)

#: Bound on the probability that LSH misses a pair at exactly the threshold (:func:`lsh_params`).
LSH_MAX_MISS = 1e-3
#: Bound on the probability that the MinHash pre-check skips a pair at the threshold.
ESTIMATE_MAX_SKIP = 1e-6
_PROGRESS_EVERY = 2048
_BRUTE_FORCE_MAX = 2048  # unique phash values up to which all pairs are compared directly
_SHINGLE_CACHE = 4096  # shingle sets of recent keys kept for verification
_HEX64 = re.compile(r"[0-9a-fA-F]{1,16}")
_BLOCK = 1 << 22  # XOR/popcount elements per vectorised step


@dataclass(frozen=True)
class DedupItem:
    """One post as dedup sees it.

    ``order_key`` fixes who is "first" (the store uses ``(created_at, source, source_id)``);
    ``text_key`` is the lossy normalised text (``collect.normalise.text_key``), empty for none;
    ``image_phash`` holds 64-bit perceptual hashes as 16 hex digits (``str(imagehash.phash(im))``).
    """

    post_id: str
    order_key: tuple
    text_key: str
    image_sha256: tuple[str, ...] = ()
    image_phash: tuple[str, ...] = ()


@dataclass(frozen=True)
class DedupSettings:
    """Which links count and their thresholds (mirrors the recipe's ``dedup`` section)."""

    exact_text: bool = True
    near_text: bool = True
    text_threshold: float = 0.7
    num_perm: int = 128
    shingle_size: int = 5
    exact_image: bool = True
    near_image: bool = True
    image_hamming: int = 6
    seed: int = 1

    @classmethod
    def from_recipe(cls, section: object, **overrides: object) -> DedupSettings:
        """From the recipe's ``dedup`` section (same field names), with ``overrides`` on top."""
        names = (
            "exact_text",
            "near_text",
            "text_threshold",
            "num_perm",
            "shingle_size",
            "exact_image",
            "near_image",
            "image_hamming",
        )
        values = {name: getattr(section, name) for name in names}
        return cls(**{**values, **overrides})  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        if not 0.0 < self.text_threshold <= 1.0:
            raise ValueError(f"text_threshold must be in (0, 1], got {self.text_threshold}")
        if self.num_perm < 2:
            raise ValueError(f"num_perm must be >= 2, got {self.num_perm}")
        if self.shingle_size < 1:
            raise ValueError(f"shingle_size must be >= 1, got {self.shingle_size}")
        if self.image_hamming < 0:
            raise ValueError(f"image_hamming must be >= 0, got {self.image_hamming}")


@dataclass(frozen=True)
class DedupDecision:
    """The verdict for one item: ``reason`` is None when kept, else one of :data:`REASONS`."""

    post_id: str
    reason: str | None
    dup_of: str | None
    cluster_id: str


# --------------------------------------------------------------------------- text


def shingles(text_key: str, size: int) -> set[str]:
    """Character ``size``-grams of ``text_key``; a key shorter than ``size`` is one shingle."""
    if not text_key:
        return set()
    if len(text_key) <= size:
        return {text_key}
    return {text_key[i : i + size] for i in range(len(text_key) - size + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    """Exact Jaccard similarity ``|a ∩ b| / |a ∪ b|`` (0 for two empty sets)."""
    if not a and not b:
        return 0.0
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    inter = len(small.intersection(large))
    return inter / (len(a) + len(b) - inter)


def lsh_params(threshold: float, num_perm: int, max_miss: float = LSH_MAX_MISS) -> tuple[int, int]:
    """LSH ``(bands, rows)``: the most rows per band that still miss a pair of Jaccard exactly
    ``threshold`` with probability ``(1 - t**r)**b <= max_miss``.

    More rows mean fewer false candidates to verify; the miss probability falls steeply above
    the threshold (for 0.7 and 128 permutations, 32 bands of 4 rows: 1.5e-4 at 0.7, 5e-8 at 0.8).
    """
    best = (num_perm, 1)
    for rows in range(1, num_perm // 2 + 1):
        bands = num_perm // rows
        if (1.0 - threshold**rows) ** bands <= max_miss:
            best = (bands, rows)
        else:
            break
    return best


def _min_agreement(threshold: float, num_perm: int, max_skip: float = ESTIMATE_MAX_SKIP) -> int:
    """The fewest equal MinHash values a candidate needs to be checked exactly: for a pair of
    Jaccard ``>= threshold`` the count is Binomial(num_perm, J), and the bound is chosen so that
    such a pair falls below it with probability at most ``max_skip``."""
    p, n = threshold, num_perm
    if p >= 1.0:
        return n
    tail, need = 0.0, 0
    for k in range(n + 1):
        log_pmf = (
            math.lgamma(n + 1)
            - math.lgamma(k + 1)
            - math.lgamma(n - k + 1)
            + k * math.log(p)
            + (n - k) * math.log1p(-p)
        )
        tail += math.exp(log_pmf)
        if tail > max_skip:
            break
        need = k + 1
    return need


class _CompactBuckets:
    """In-memory bucket table for :class:`MinHashLSH`: one dict entry per bucket holding the
    key itself (one member) or a list (several), instead of datasketch's set per bucket.

    Same answers as the stock ``dict`` storage for ``insert``/``get`` at a fraction of the
    memory (a post fills ~20 distinct buckets; an empty Python set alone is 216 bytes).
    """

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
    """Stands in for the LSH's key → band-hashes table, which only ``remove`` needs."""

    def insert(self, key: object, *vals: object, buffer: bool = False) -> None:
        pass

    def __contains__(self, key: object) -> bool:
        return False


class _TextIndex:
    """MinHash-LSH over shingle sets, with every candidate verified by exact Jaccard.

    Verification is vectorised over a query's candidates on each key's sorted 64-bit shingle
    fingerprints (xxh64), and pairs that pass are confirmed on the shingle strings themselves,
    so a reported pair always has Jaccard >= threshold.
    """

    def __init__(self, keys: Sequence[str], settings: DedupSettings) -> None:
        self.threshold = settings.text_threshold
        self.num_perm = settings.num_perm
        self.seed = settings.seed
        # Generate the permutations once; every MinHash shares the same array.
        self.permutations = MinHash(
            num_perm=settings.num_perm, seed=settings.seed, scheme="affine32"
        ).permutations
        self.lsh = MinHashLSH(
            num_perm=settings.num_perm,
            params=lsh_params(settings.text_threshold, settings.num_perm),
            hashfunc=xxhash.xxh64_intdigest,  # int bucket keys: smaller than the band bytes
        )
        # Lighter in-memory storage (see _CompactBuckets); the index only inserts and queries.
        self.lsh.hashtables = [_CompactBuckets() for _ in self.lsh.hashtables]
        self.lsh.keys = _NoKeys()
        self.fingerprints: list[np.ndarray] = []
        self.signatures = np.empty((len(keys), settings.num_perm), dtype=np.uint32)
        self.min_agreement = _min_agreement(settings.text_threshold, settings.num_perm)
        self.lengths = np.zeros(len(keys), dtype=np.int64)
        size = settings.shingle_size

        @lru_cache(maxsize=_SHINGLE_CACHE)
        def shingle_set(idx: int) -> frozenset[str]:
            return frozenset(shingles(keys[idx], size))

        self._shingles = shingle_set  # a closure over keys, not self: no reference cycle

    def close(self) -> None:
        """Free the index now (MinHashLSH holds a reference cycle that only gc would break)."""
        self.lsh.hashtables = []
        self.fingerprints = []
        self.signatures = self.signatures[:0]
        self._shingles.cache_clear()

    def minhash(self, sh: Iterable[bytes]) -> MinHash:
        """MinHash of UTF-8 encoded shingles (xxh32, shared permutations, one batch update)."""
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
        """Index key ``idx`` (keys must be added in increasing order); return the earlier
        indexed keys whose exact Jaccard similarity with it reaches the threshold."""
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
        ok = np.minimum(nj, n) / np.maximum(nj, n) >= t  # J <= min/max of the set sizes
        cand, nj = cand[ok], nj[ok]
        if len(cand) and self.min_agreement:  # MinHash estimate far below the threshold
            ok = (self.signatures[cand] == m.hashvalues).sum(axis=1) >= self.min_agreement
            cand, nj = cand[ok], nj[ok]
        if not len(cand):
            return []
        # |A ∩ B| for all candidates at once: look their fingerprints up in this key's.
        fps = [self.fingerprints[j] for j in cand.tolist()]
        other = np.concatenate(fps)
        pos = np.minimum(np.searchsorted(fp, other), len(fp) - 1)
        owner = np.repeat(np.arange(len(cand)), [len(f) for f in fps])
        inter = np.bincount(owner, weights=fp[pos] == other, minlength=len(cand))
        ok = inter / (n + nj - inter) >= t
        found = []
        for j, size in zip(cand[ok].tolist(), nj[ok].tolist(), strict=True):
            common = len(sh.intersection(self._shingles(j)))  # confirm on the strings
            if common / (n + size - common) >= t:
                found.append(j)
        return found


# --------------------------------------------------------------------------- images


def parse_phash(value: str) -> int:
    """A 64-bit perceptual hash from its hex form (``str(imagehash.phash(image))``)."""
    v = value.strip()
    if not _HEX64.fullmatch(v):
        raise ValueError(f"not a 64-bit hex perceptual hash: {value!r}")
    return int(v, 16)


def _pairs_within(values: np.ndarray, members: np.ndarray, k: int) -> np.ndarray:
    """Pairs ``(a, b)``, ``a < b``, of the sorted index array ``members`` whose values are
    within Hamming distance ``k`` (XOR + popcount, about 4M comparisons per step)."""
    out = []
    m = len(members)
    s = 0
    while s < m - 1:
        step = max(1, _BLOCK // (m - s))
        rows, cols = members[s : s + step], members[s:]
        d = np.bitwise_count(values[rows][:, None] ^ values[cols][None, :])
        ri, ci = np.nonzero(d <= k)
        keep = ci > ri  # cols start at rows[0]: strictly later members only
        if keep.any():
            out.append(np.stack([rows[ri[keep]], cols[ci[keep]]], axis=1))
        s += step
    return np.concatenate(out) if out else np.empty((0, 2), dtype=np.int64)


def near_pairs_hamming(values: np.ndarray, k: int) -> np.ndarray:
    """All index pairs ``(i, j)``, ``i < j``, of distinct uint64 ``values`` within Hamming ``k``.

    Up to :data:`_BRUTE_FORCE_MAX` values: vectorised XOR + popcount over all pairs, in chunks.
    Beyond: pigeonhole — split the 64 bits into ``k + 1`` bit ranges; two hashes within ``k``
    bits agree exactly on at least one range, so only values sharing a range value are compared.
    Returns an ``(m, 2)`` int64 array sorted by rows, without repeats.
    """
    values = np.asarray(values, dtype=np.uint64)
    n = len(values)
    if n < 2:
        return np.empty((0, 2), dtype=np.int64)
    idx = np.arange(n, dtype=np.int64)
    if n <= _BRUTE_FORCE_MAX or k >= 63:
        pairs = _pairs_within(values, idx, k)
    else:
        parts = []
        bounds = np.linspace(0, 64, k + 2).astype(int)
        for lo, hi in itertools.pairwise(bounds.tolist()):
            mask = np.uint64((1 << (hi - lo)) - 1)
            key = (values >> np.uint64(lo)) & mask
            order = np.argsort(key, kind="stable")
            sk = key[order]
            starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]])
            sizes = np.diff(np.r_[starts, n])
            # Small buckets: compare each value with the next d-th one in the same bucket.
            small = sizes <= 64
            bucket = np.repeat(np.arange(len(starts)), sizes)
            pos = np.arange(n) - starts[bucket]
            in_small = small[bucket]
            for d in range(1, int(sizes[small].max(initial=1))):
                sel = np.flatnonzero(in_small[:-d] & (pos[:-d] + d < sizes[bucket[:-d]]))
                if not len(sel):
                    break
                a, b = order[sel], order[sel + d]
                hit = np.bitwise_count(values[a] ^ values[b]) <= k
                parts.append(np.stack([np.minimum(a, b)[hit], np.maximum(a, b)[hit]], axis=1))
            for s in np.flatnonzero(~small):
                members = np.sort(order[starts[s] : starts[s] + sizes[s]])
                parts.append(_pairs_within(values, members, k))
        pairs = np.concatenate(parts) if parts else np.empty((0, 2), dtype=np.int64)
    if not len(pairs):
        return pairs.reshape(0, 2).astype(np.int64)
    return np.unique(pairs.astype(np.int64), axis=0)


# --------------------------------------------------------------------------- clustering


class _UnionFind:
    """Union-find whose root is always the smallest index of its component."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            if ra < rb:
                self.parent[rb] = ra
            else:
                self.parent[ra] = rb


def _apply_links(
    low: np.ndarray,
    high: np.ndarray,
    uf: _UnionFind,
    items: np.ndarray,
    groups: np.ndarray,
    n_groups: int,
    pairs: np.ndarray | None = None,
) -> None:
    """Record one kind of link, given as groups of items plus links between whole groups.

    ``(items[k], groups[k])`` says item belongs to group; all members of a group are linked to
    each other, and every member of group ``a`` to every member of group ``b`` for each row
    ``(a, b)`` of ``pairs``. Updates this kind's ``low``/``high`` rows (smallest / largest item
    linked to each item, the item itself included) and the union-find.
    """
    if not len(items):
        return
    n_sentinel = np.iinfo(np.int64).max
    first = np.full(n_groups, n_sentinel, dtype=np.int64)
    last = np.full(n_groups, -1, dtype=np.int64)
    np.minimum.at(first, groups, items)
    np.maximum.at(last, groups, items)
    glow, ghigh = first.copy(), last.copy()
    if pairs is not None and len(pairs):
        a, b = pairs[:, 0], pairs[:, 1]
        np.minimum.at(glow, a, first[b])
        np.minimum.at(glow, b, first[a])
        np.maximum.at(ghigh, a, last[b])
        np.maximum.at(ghigh, b, last[a])
        for x, y in zip(first[a].tolist(), first[b].tolist(), strict=True):
            uf.union(x, y)
    np.minimum.at(low, items, glow[groups])
    np.maximum.at(high, items, ghigh[groups])
    for x, y in zip(first[groups].tolist(), items.tolist(), strict=True):
        uf.union(x, y)


def _memberships(keys_per_item: Iterable[Iterable]) -> tuple[np.ndarray, np.ndarray, list]:
    """``(items, groups, keys)``: item ``items[k]`` has key ``keys[groups[k]]`` (deduplicated
    per item); keys are numbered in order of first appearance."""
    number: dict = {}
    items: list[int] = []
    groups: list[int] = []
    for i, keys in enumerate(keys_per_item):
        for key in dict.fromkeys(keys):
            items.append(i)
            groups.append(number.setdefault(key, len(number)))
    return np.array(items, dtype=np.int64), np.array(groups, dtype=np.int64), list(number)


def find_duplicates(
    items: Iterable[DedupItem],
    settings: DedupSettings = DedupSettings(),
    progress: Callable[[int], None] | None = None,
) -> list[DedupDecision]:
    """Decide, for every item, whether it is kept or a duplicate (and of whom).

    Pure and deterministic: the result depends only on the items (not their input order) and
    the settings. Decisions come back in processing order (``order_key``, then ``post_id``).
    ``progress(advance)`` is called with the number of items processed since its last call;
    the advances add up to the number of items.
    """
    ordered = sorted(items, key=lambda it: (it.order_key, it.post_id))
    n = len(ordered)
    if len({it.post_id for it in ordered}) != n:
        raise ValueError("post_id values must be unique")
    uf = _UnionFind(n)
    ar = np.arange(n, dtype=np.int64)
    # Per link kind: smallest and largest item linked to each item (the item itself if none).
    low = np.tile(ar, (4, 1))
    high = low.copy()
    reported = 0

    # ---- text: identical keys form a group; the near-duplicate search runs on groups.
    t_items, t_groups, t_keys = _memberships(
        (it.text_key,) if it.text_key else () for it in ordered
    )
    if settings.exact_text:
        _apply_links(low[_EXACT_TEXT], high[_EXACT_TEXT], uf, t_items, t_groups, len(t_keys))
    if settings.near_text and t_keys:
        # Groups are numbered in order of their first member, so LSH sees keys in item order,
        # and a group's exact duplicates never need a MinHash of their own.
        sizes = np.bincount(t_groups, minlength=len(t_keys)).tolist()
        index = _TextIndex(t_keys, settings)
        found: list[tuple[int, int]] = []
        pending = 0
        for g in range(len(t_keys)):
            found.extend((h, g) for h in index.add(g))
            pending += sizes[g]
            if progress and pending >= _PROGRESS_EVERY:
                progress(pending)
                reported += pending
                pending = 0
        index.close()
        pairs = np.array(found, dtype=np.int64).reshape(-1, 2)
        _apply_links(low[_NEAR_TEXT], high[_NEAR_TEXT], uf, t_items, t_groups, len(t_keys), pairs)

    # ---- images
    if settings.exact_image:
        s_items, s_groups, s_keys = _memberships(
            (s for s in it.image_sha256 if s) for it in ordered
        )
        _apply_links(low[_EXACT_IMAGE], high[_EXACT_IMAGE], uf, s_items, s_groups, len(s_keys))
    if settings.near_image:
        p_items, p_groups, p_keys = _memberships(
            (parse_phash(p) for p in it.image_phash if p) for it in ordered
        )
        if p_keys:
            pairs = near_pairs_hamming(np.array(p_keys, dtype=np.uint64), settings.image_hamming)
            _apply_links(
                low[_NEAR_IMAGE], high[_NEAR_IMAGE], uf, p_items, p_groups, len(p_keys), pairs
            )

    # ---- decisions
    earlier = low < ar  # [kind, item]: linked to an earlier item by this kind
    linked = earlier | (high > ar)
    has_earlier = earlier.any(axis=0)
    kind_earlier = earlier.argmax(axis=0)  # first True = strongest kind
    kind_linked = linked.argmax(axis=0)
    dup_earlier = low[kind_earlier, ar]
    decisions = []
    for i, it in enumerate(ordered):
        root = uf.find(i)
        cluster_id = ordered[root].post_id
        if root == i:
            decisions.append(DedupDecision(it.post_id, None, None, cluster_id))
        elif has_earlier[i]:
            kind, dup = int(kind_earlier[i]), int(dup_earlier[i])
            decisions.append(
                DedupDecision(it.post_id, REASONS[kind], ordered[dup].post_id, cluster_id)
            )
        else:  # joined to its cluster only through later members: a duplicate of the kept one
            kind = int(kind_linked[i])
            decisions.append(DedupDecision(it.post_id, REASONS[kind], cluster_id, cluster_id))
    if progress and n - reported:
        progress(n - reported)
    return decisions
