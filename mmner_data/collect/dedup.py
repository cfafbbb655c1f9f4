"""Exact and near-duplicate detection over posts (text and images).

Four kinds of *link* join two posts, strongest first:

1. ``exact_dup_text``  — the same non-empty ``text_key``;
2. ``near_dup_text``   — Jaccard similarity of the posts' character ``shingle_size``-gram sets
   is at least ``text_threshold`` (candidates from MinHash-LSH, verified exactly; the search
   is split into pure steps an engine can shard: :func:`text_signatures`, :func:`band_hashes`,
   :func:`bucket_pairs`, :func:`verify_pairs`, composed locally by :func:`near_text_pairs`);
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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import rensa

from mmner_data.schema import DropReason

__all__ = [
    "REASONS",
    "DedupDecision",
    "DedupItem",
    "DedupSettings",
    "band_hashes",
    "bucket_pairs",
    "find_duplicates",
    "jaccard",
    "lsh_params",
    "near_pairs_hamming",
    "near_text_pairs",
    "parse_phash",
    "shingles",
    "text_signatures",
    "verify_pairs",
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
# Batch sizes keep temporaries small (fresh memory costs a page fault per 4 KiB).
_KEY_CHUNK = 512  # keys shingled per batch
# Rows per rensa call: below its smallest parallel batch (32), so rensa never starts its rayon
# thread pool (a fork()ed child of a process that has one hangs on its next parallel call).
_RENSA_ROWS = 31
_PROGRESS_EVERY = 2048  # keys signed per progress call
_SMALL_BUCKET = 64  # buckets up to this size are paired by offsets, larger ones block-wise
_PAIR_CHUNK = 1 << 12  # candidate pairs screened per vectorised step
_PAIR_BLOCK = 1 << 18  # candidate pairs generated per step
_EXACT_CHUNK = 1 << 9  # pairs whose shingle sets are intersected per vectorised step
_HIST_BITS = 7  # shingle-count histograms of 2**7 hash bins bound |A ∩ B| (_exact_pairs)
_HIST_BINS = 1 << _HIST_BITS
_BRUTE_FORCE_MAX = 2048  # unique phash values up to which all pairs are compared directly
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


# The near-duplicate text search is a chain of pure steps, so that an engine can run the
# per-key and per-pair ones on shards and only the bucket shuffle and the decisions globally:
#
#   text_signatures (per key) -> band_hashes (per key) -> bucket_pairs (per bucket value)
#   -> verify_pairs (per pair) ; near_text_pairs is the local composition.

_M64 = (1 << 64) - 1
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_PAD = 0x110000  # not a code point: fills the shingle of a key shorter than the shingle size


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (a bijection of uint64), in place; returns ``x``."""
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _ranges(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(owner, position)``: ``position`` runs through ``starts[i] .. starts[i] + counts[i] - 1``
    for every ``i`` in turn, and ``owner`` says which ``i`` each position belongs to."""
    owner = np.repeat(np.arange(len(counts)), counts)
    first = np.cumsum(counts) - counts
    return owner, np.arange(len(owner), dtype=np.int64) + (starts - first)[owner]


@dataclass(frozen=True)
class _Shingled:
    """The character ``k``-grams of a batch of keys, as start positions in their code points."""

    k: int
    cps: np.ndarray  # code points of all keys (uint32), then k pads
    pos: np.ndarray  # start of each shingle in cps
    owner: np.ndarray  # the key each shingle belongs to
    width: np.ndarray | None  # characters in each shingle; None when every key has >= k
    offsets: np.ndarray  # the shingles of key i are [offsets[i], offsets[i + 1])

    def fold(
        self,
        values: np.ndarray,
        pad: int,
        init: int,
        step: Callable[[np.ndarray, np.ndarray], np.ndarray],
    ) -> np.ndarray:
        """``acc = step(acc, c)`` over the ``values`` of each shingle's ``k`` characters (``pad``
        past the end of a key shorter than ``k``), from ``acc = init``; uint64 per shingle.

        ``values`` has one entry per code point plus ``k`` trailing pads. The fold runs at every
        position of the text with contiguous slices and is then taken at the shingle starts;
        only the shingles of short keys are redone with their padding.
        """
        k = self.k
        n = len(values) - k
        acc = np.full(n, init, dtype=np.uint64)
        for j in range(k):
            acc = step(acc, values[j : j + n])
        out = acc.take(self.pos)
        if self.width is not None:
            short = np.flatnonzero(self.width < k)
            acc = np.full(len(short), init, dtype=np.uint64)
            for j in range(k):
                c = values.take(self.pos[short] + j)
                c[self.width[short] <= j] = pad
                acc = step(acc, c)
            out[short] = acc
        return out


def _fnv_step(acc: np.ndarray, c: np.ndarray) -> np.ndarray:
    acc ^= c
    acc *= _FNV_PRIME
    return acc


def _shingled(keys: Sequence[str], k: int) -> _Shingled:
    """Vectorised :func:`shingles` (with repeats): a key of ``L > k`` characters has ``L - k + 1``
    shingles, a shorter non-empty key one (the whole key), an empty key none."""
    lengths = np.fromiter(map(len, keys), dtype=np.int64, count=len(keys))
    text = "".join(keys).encode("utf-32-le", "surrogatepass")
    cps = np.concatenate([np.frombuffer(text, dtype="<u4"), np.full(k, _PAD, dtype=np.uint32)])
    counts = np.where(lengths > k, lengths - k + 1, (lengths > 0).astype(np.int64))
    owner, pos = _ranges(np.cumsum(lengths) - lengths, counts)
    short = np.minimum(lengths, k)
    width = short[owner] if (short[counts > 0] < k).any() else None
    offsets = np.zeros(len(keys) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return _Shingled(k, cps, pos, owner, width, offsets)


def text_signatures(keys: Sequence[str], settings: DedupSettings) -> np.ndarray:
    """MinHash signatures of the keys' shingle sets, ``(len(keys), num_perm)`` uint32.

    Each shingle is hashed from its code points with fixed constants (FNV-1a + splitmix64) and
    the hashes go to rensa's ``RMinHash`` (permutations seeded by ``settings.seed``). Row ``i``
    depends only on ``keys[i]`` and the settings: the same bytes in any process, on any
    machine, for any split of the keys into batches.
    """
    k, perms = settings.shingle_size, settings.num_perm
    out = np.empty((len(keys), perms), dtype=np.uint32)
    for s in range(0, len(keys), _KEY_CHUNK):
        sh = _shingled(keys[s : s + _KEY_CHUNK], k)
        tokens = _mix64(sh.fold(sh.cps, _PAD, int(_FNV_OFFSET), _fnv_step))
        offsets = sh.offsets.astype(np.uint64)
        for r in range(0, len(offsets) - 1, _RENSA_ROWS):
            o = offsets[r : r + _RENSA_ROWS + 1]
            digests = rensa.RMinHash.digest_matrix_from_flat_token_hashes(
                tokens[int(o[0]) : int(o[-1])], o - o[0], perms, settings.seed & _M64
            )
            out[s + r : s + r + digests.len()] = digests.to_rows()
    return out


def band_hashes(signatures: np.ndarray, settings: DedupSettings) -> np.ndarray:
    """LSH bucket values, ``(n, bands)`` uint64, with ``(bands, rows)`` from :func:`lsh_params`.

    Column ``b`` hashes the ``rows`` signature values of band ``b``; its low bits hold ``b``
    itself, so two different bands never share a bucket value.
    """
    bands, rows = lsh_params(settings.text_threshold, settings.num_perm)
    sig = np.asarray(signatures)
    view = sig[:, : bands * rows].reshape(len(sig), bands, rows)
    h = np.full((len(sig), bands), _FNV_OFFSET, dtype=np.uint64)
    for r in range(rows):
        h ^= view[:, :, r].astype(np.uint64)
        _mix64(h)
    low = np.uint64((1 << max(1, (bands - 1).bit_length())) - 1)
    h &= ~low
    h |= np.arange(bands, dtype=np.uint64)
    return h


def _unique_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rows ``(min, max)`` of the index pairs, self-pairs dropped, unique and sorted."""
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    keep = lo != hi
    lo, hi = lo[keep], hi[keep]
    if not len(lo):
        return np.empty((0, 2), dtype=np.int64)
    if lo.min() >= 0 and hi.max() < 1 << 32:  # one sortable 64-bit code per pair
        code = np.unique((lo.astype(np.uint64) << np.uint64(32)) | hi.astype(np.uint64))
        return np.stack([code >> np.uint64(32), code & np.uint64(0xFFFFFFFF)], axis=1).astype(
            np.int64
        )
    return np.unique(np.stack([lo, hi], axis=1).astype(np.int64), axis=0)


def _bucket_blocks(
    index: np.ndarray, hashes: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """:func:`bucket_pairs` block by block, as ``(a, b)`` arrays (either order, repeats where
    an index repeats in a bucket)."""
    order = np.argsort(hashes)  # any order within a bucket will do
    sorted_h = hashes.take(order)
    starts = np.flatnonzero(np.r_[True, sorted_h[1:] != sorted_h[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    # Small buckets: pair each member with the one d places later in its bucket, d = 1, 2, ...
    small = (sizes >= 2) & (sizes <= _SMALL_BUCKET)
    owner, pos = _ranges(starts[small], sizes[small])
    end = (starts + sizes)[small].take(owner)
    members = index.take(order)
    d = 1
    while len(pos):
        keep = pos + d < end
        pos, end = pos[keep], end[keep]
        yield members.take(pos), members.take(pos + d)
        d += 1
    # Large buckets: all pairs of the distinct members, a block of rows at a time.
    large = sizes > _SMALL_BUCKET
    for s, size in zip(starts[large].tolist(), sizes[large].tolist(), strict=True):
        bucket = np.unique(members[s : s + size])
        m = len(bucket)
        step = max(1, _PAIR_BLOCK // m)
        for i in range(0, m - 1, step):
            rows = np.arange(i, min(i + step, m - 1))
            owner, cols = _ranges(rows + 1, m - 1 - rows)
            yield bucket.take(rows.take(owner)), bucket.take(cols)


def bucket_pairs(index: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Candidate pairs: every ``(a, b)``, ``a < b``, of indices sharing a bucket value.

    Row ``k`` says that key ``index[k]`` (int64) has bucket value ``hashes[k]`` (uint64), e.g.
    the flattened :func:`band_hashes` of a shard. Returns ``(m, 2)`` int64, unique and sorted.
    Pairs only come from rows with equal values, so splitting the rows by bucket value into
    any partitions and taking the union of the results gives the same pairs.
    """
    index = np.asarray(index, dtype=np.int64).ravel()
    hashes = np.asarray(hashes, dtype=np.uint64).ravel()
    if len(index) != len(hashes):
        raise ValueError(f"{len(index)} indices but {len(hashes)} bucket values")
    blocks = list(_bucket_blocks(index, hashes))
    if not blocks:
        return np.empty((0, 2), dtype=np.int64)
    a, b = zip(*blocks, strict=True)
    return _unique_pairs(np.concatenate(a), np.concatenate(b))


def _agreement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Number of equal values in each row of two equally shaped 2-D arrays."""
    eq = x == y
    width = eq.shape[1]
    if width % 8 or width > 255:
        return np.count_nonzero(eq, axis=1)
    # Sum the bytes 8 at a time: no lane exceeds 255, then add up the 8 lanes.
    lanes = eq.view(np.uint64).sum(axis=1, dtype=np.uint64)
    return (lanes * np.uint64(0x0101010101010101)) >> np.uint64(56)


def _agree(a: np.ndarray, b: np.ndarray, sig: np.ndarray, low: np.ndarray, need: int) -> np.ndarray:
    """Which pairs ``(a[i], b[i])`` have signatures equal in at least ``need`` positions.

    ``low`` (the low byte of ``sig``: equal wherever ``sig`` is) screens first, so full rows
    are only read for the pairs that may pass."""
    keep = np.zeros(len(a), dtype=bool)
    for s in range(0, len(a), _PAIR_CHUNK):
        x, y = a[s : s + _PAIR_CHUNK], b[s : s + _PAIR_CHUNK]
        maybe = np.flatnonzero(_agreement(low.take(x, axis=0), low.take(y, axis=0)) >= need)
        x, y = x.take(maybe), y.take(maybe)
        keep[s + maybe[_agreement(sig.take(x, axis=0), sig.take(y, axis=0)) >= need]] = True
    return keep


def _exact_pairs(pairs: np.ndarray, keys: Sequence[str], settings: DedupSettings) -> np.ndarray:
    """The pairs whose shingle sets have exact Jaccard similarity >= the threshold.

    Each shingle becomes an exact integer code (its characters, numbered from 1, side by side in
    ``bits`` bits each, 0 for the padding of a short key) tagged with its key in the high bits,
    so all sets are one sorted array. Cheapest test first, each one only an upper bound on the
    Jaccard similarity but the last: set sizes (``min/max``), per-key counts of shingles in
    :data:`_HIST_BINS` hash bins (``|A ∩ B| <= sum(min(a_bin, b_bin))``), then the exact
    ``|A ∩ B|`` by merging sorted runs. Python sets when the codes do not fit 64 bits.
    """
    k, t = settings.shingle_size, settings.text_threshold
    if not len(pairs):
        return np.empty((0, 2), dtype=np.int64)
    rows, local = np.unique(pairs, return_inverse=True)
    local = local.reshape(-1, 2)
    sub = [keys[i] for i in rows.tolist()]
    key_bits = max(1, (len(sub) - 1).bit_length())
    chunks = [sub[s : s + _KEY_CHUNK] for s in range(0, len(sub), _KEY_CHUNK)]
    texts = [np.frombuffer("".join(c).encode("utf-32-le", "surrogatepass"), "<u4") for c in chunks]
    bits = (int(max(x.max(initial=0) for x in texts)) + 1).bit_length()
    alphabet = None
    if k * bits + key_bits > 64:  # number only the characters that occur
        alphabet = np.unique(np.concatenate(texts))
        bits = len(alphabet).bit_length()
    del texts
    if k * bits + key_bits > 64:
        return _exact_pairs_slow(pairs, keys, settings)
    shift, width = np.uint64(k * bits), np.uint64(bits)
    mask = (np.uint64(1) << shift) - np.uint64(1)

    def pack(acc: np.ndarray, c: np.ndarray) -> np.ndarray:
        acc <<= width
        acc |= c
        return acc

    # All sets in one array, filled chunk by chunk (its unused tail is never touched).
    lengths = np.fromiter(map(len, sub), dtype=np.int64, count=len(sub))
    code = np.empty(int(np.maximum(lengths - k + 1, 1).sum()), dtype=np.uint64)
    filled = 0
    sizes, hists, unbounded = [], [], []
    for s, chunk in zip(range(0, len(sub), _KEY_CHUNK), chunks, strict=True):
        sh = _shingled(chunk, k)
        values = sh.cps if alphabet is None else np.searchsorted(alphabet, sh.cps)
        values = values.astype(np.uint64) + np.uint64(1)
        values[-k:] = 0
        part = sh.fold(values, 0, 0, pack)
        part |= sh.owner.astype(np.uint64) << shift
        part.sort()
        part = part[np.r_[True, part[1:] != part[:-1]]]  # each key's set, keys in order
        owner = (part >> shift).astype(np.intp)
        sizes.append(np.bincount(owner, minlength=len(chunk)))
        bins = (_mix64(part & mask) >> np.uint64(64 - _HIST_BITS)).astype(np.intp)
        h = np.bincount(owner * _HIST_BINS + bins, minlength=len(chunk) * _HIST_BINS)
        h = h.reshape(len(chunk), _HIST_BINS)
        unbounded.append(h.max(axis=1) > 255)  # such a key's bound is not used
        hists.append(np.minimum(h, 255).astype(np.uint8))
        part += np.uint64(s) << shift
        code[filled : filled + len(part)] = part
        filled += len(part)
    code = code[:filled]
    sizes = np.concatenate(sizes)
    hist, unbounded = np.concatenate(hists), np.concatenate(unbounded)
    del hists
    first = np.cumsum(sizes) - sizes
    na, nb = sizes[local[:, 0]], sizes[local[:, 1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        maybe = np.flatnonzero(np.minimum(na, nb) / np.maximum(na, nb) >= t)
        ok = []
        for s in range(0, len(maybe), _PAIR_CHUNK):
            m = maybe[s : s + _PAIR_CHUNK]
            a, b = local[m, 0], local[m, 1]
            both = np.minimum(hist.take(a, axis=0), hist.take(b, axis=0))
            common = both.sum(axis=1, dtype=np.int64)
            ok.append((common / (na[m] + nb[m] - common) >= t) | unbounded[a] | unbounded[b])
    if ok:
        maybe = maybe[np.concatenate(ok)]
    # |A ∩ B| for a block of pairs at once: both sets of every pair, tagged with the pair's
    # number in the block, are two sorted runs; one merge (a stable sort of two runs is linear)
    # puts each common shingle next to its twin.
    step = min(_EXACT_CHUNK, 1 << (64 - int(shift)))
    keep = np.zeros(len(pairs), dtype=bool)
    for s in range(0, len(maybe), step):
        m = maybe[s : s + step]
        sides = np.concatenate([local[m, 0], local[m, 1]])
        owner, at = _ranges(first[sides], sizes[sides])
        owner[owner >= len(m)] -= len(m)  # the pair's number, on both sides
        both = (code.take(at) & mask) | (owner.astype(np.uint64) << shift)
        both.sort(kind="stable")
        # Pair j's merged run is both[start[j]:end[j]]; its twins are the equal neighbours.
        seen = np.zeros(len(both), dtype=np.int64)
        np.cumsum(both[1:] == both[:-1], out=seen[1:])
        end = np.cumsum(na[m] + nb[m])
        inter = seen[end - 1] - seen[end - na[m] - nb[m]]
        keep[m[inter / (na[m] + nb[m] - inter) >= t]] = True
    return pairs[keep]


def _exact_pairs_slow(
    pairs: np.ndarray, keys: Sequence[str], settings: DedupSettings
) -> np.ndarray:
    """:func:`_exact_pairs` on Python sets of shingle strings (any alphabet, any size)."""
    k, t = settings.shingle_size, settings.text_threshold
    sets: dict[int, set[str]] = {}
    keep = []
    for a, b in pairs.tolist():
        for i in (a, b):
            if i not in sets:
                sets[i] = shingles(keys[i], k)
        sa, sb = sets[a], sets[b]
        common = len(sa & sb)
        union = len(sa) + len(sb) - common
        keep.append(union > 0 and common / union >= t)
    return pairs[np.array(keep, dtype=bool)]


def verify_pairs(
    pairs: np.ndarray, keys: Sequence[str], signatures: np.ndarray, settings: DedupSettings
) -> np.ndarray:
    """The candidate pairs (indices into ``keys``/``signatures``) whose exact Jaccard similarity
    of shingle sets reaches ``settings.text_threshold``.

    Pairs whose signatures agree in fewer positions than a pair at the threshold falls below with
    probability <= :data:`ESTIMATE_MAX_SKIP` are skipped; the rest are judged exactly (after
    cheap upper bounds: set sizes, shingle-count histograms). Each pair is judged on its own
    rows only, so any split of the pairs into batches gives the same union. Returns
    ``(m, 2)`` int64 ``(a, b)``, ``a < b``, unique and sorted.
    """
    p = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    p = _unique_pairs(p[:, 0], p[:, 1])
    need = _min_agreement(settings.text_threshold, settings.num_perm)
    if need and len(p):
        rows, local = np.unique(p, return_inverse=True)  # only this batch's rows
        local = local.reshape(-1, 2)
        sig = np.asarray(signatures)[rows]
        p = p[_agree(local[:, 0], local[:, 1], sig, sig.astype(np.uint8), need)]
    return _exact_pairs(p, keys, settings)


def near_text_pairs(
    keys: Sequence[str],
    settings: DedupSettings,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """All pairs of ``keys`` that :func:`verify_pairs` accepts among the :func:`bucket_pairs` of
    their :func:`band_hashes` — the whole search in one process. ``progress(advance)`` is called
    with the number of keys signed since its last call.

    Runs band by band, so that memory holds one band's candidate pairs at a time (and the
    few that pass the signature screen). Returns ``(m, 2)`` int64, unique and sorted.
    """
    n = len(keys)
    if n > 1 << 32:
        raise ValueError(f"{n} keys: near_text_pairs handles up to 2**32 (shard them)")
    sig = np.empty((n, settings.num_perm), dtype=np.uint32)
    for s in range(0, n, _PROGRESS_EVERY):
        e = min(n, s + _PROGRESS_EVERY)
        sig[s:e] = text_signatures(keys[s:e], settings)
        if progress:
            progress(e - s)
    code = _screened_candidates(sig, settings)
    del sig
    pairs = np.stack([code >> np.uint64(32), code & np.uint64(0xFFFFFFFF)], axis=1)
    return _exact_pairs(pairs.astype(np.int64), keys, settings)


def _screened_candidates(sig: np.ndarray, settings: DedupSettings) -> np.ndarray:
    """The :func:`bucket_pairs` of all keys that pass the signature screen of
    :func:`verify_pairs`, as sorted unique codes ``a << 32 | b``, ``a < b``; band by band."""
    buckets = band_hashes(sig, settings)
    need = _min_agreement(settings.text_threshold, settings.num_perm)
    low = sig.astype(np.uint8)
    index = np.arange(len(sig), dtype=np.int64)
    found: list[np.ndarray] = []
    held = compact = 0
    for band in range(buckets.shape[1]):
        for a, b in _bucket_blocks(index, np.ascontiguousarray(buckets[:, band])):
            ok = _agree(a, b, sig, low, need)
            x, y = a[ok].astype(np.uint64), b[ok].astype(np.uint64)
            found.append((np.minimum(x, y) << np.uint64(32)) | np.maximum(x, y))
            held += len(found[-1])
        if held > 2 * compact + _PAIR_BLOCK:  # a pair sharing several bands: held once
            found = [np.unique(np.concatenate(found))]
            held = compact = len(found[0])
    return np.unique(np.concatenate(found)) if found else np.empty(0, dtype=np.uint64)


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
    *,
    text_pairs: Callable[[Sequence[str], DedupSettings], np.ndarray] | None = None,
) -> list[DedupDecision]:
    """Decide, for every item, whether it is kept or a duplicate (and of whom).

    Pure and deterministic: the result depends only on the items (not their input order) and
    the settings. Decisions come back in processing order (``order_key``, then ``post_id``).
    ``progress(advance)`` is called with the number of items processed since its last call;
    the advances add up to the number of items.

    The near-duplicate text links come from ``text_pairs(keys, settings)`` — the distinct
    non-empty text keys in order of first appearance in, ``(m, 2)`` index pairs of keys out —
    when given (an engine's own, e.g. sharded, search), else from :func:`near_text_pairs`.
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
        if text_pairs is not None:
            pairs = np.asarray(text_pairs(t_keys, settings), dtype=np.int64).reshape(-1, 2)
        else:
            # Progress in items: done[g - 1] items have one of the first g keys.
            done = np.cumsum(np.bincount(t_groups, minlength=len(t_keys))).tolist()
            signed = 0

            def advance(keys_done: int) -> None:
                nonlocal signed, reported
                signed += keys_done
                if progress and done[signed - 1] > reported:
                    progress(done[signed - 1] - reported)
                    reported = done[signed - 1]

            pairs = near_text_pairs(t_keys, settings, advance)
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
