"""Character spans ↔ tokens ↔ tags (BIO / BIOES), as pure functions.

Entities are :class:`~mmner_data.schema.EntitySpan` records: character offsets ``[start, end)``
into the original text (what Label Studio, pre-annotation and gold store); models and exports
use one tag per token of :func:`mmner_data.text.tokenize.tokenize`. The rules here are the
contract between the two (property-tested in ``tests/test_convert.py``):

* **Trimming.** A span is first trimmed of surrounding whitespace (:meth:`str.isspace`); a span
  that is only whitespace is an error.
* **Snapping** a span that does not fall on token boundaries:

  - ``"expand"`` (default): grow to cover every token the span touches, even by one character.
    An annotation is never lost, and the result always contains the (trimmed) span.
  - ``"contract"``: shrink to the tokens that lie wholly inside the span; an error if there are
    none.
  - ``"strict"``: an error unless the span starts at a token start and ends at a token end.

* **Conflicts.** Spans that overlap or nest (before or after snapping) raise :class:`SpanError`
  naming both; this includes two distinct spans that snap onto the same token(s). Exact
  duplicates (same offsets and label once trimmed) are merged: they are the same entity.
* **Validation.** Out-of-range, empty or reversed spans and empty labels raise
  :class:`SpanError`; when ``labels`` is given, a label outside it does too.
* **Reading tags** follows conlleval / seqeval (non-strict mode): an ``I-X`` that follows ``O``,
  the start of the sequence, or a tag of another type opens a new entity (as if it were
  ``B-X``); see :func:`repair_bio`. For BIOES, an ``I-X``/``E-X`` that does not continue an
  open ``X`` entity likewise opens a new one, and ``E-X``/``S-X`` close it.

Labels may contain hyphens (``B-MISC-EVENT`` has label ``MISC-EVENT``): the prefix is split off
at the first hyphen.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Collection, Iterable, Sequence

from mmner_data.errors import MmnerError
from mmner_data.schema import EntitySpan
from mmner_data.text.tokenize import Token

__all__ = [
    "SCHEMES",
    "SNAPS",
    "EntitySpan",
    "SpanError",
    "TagError",
    "align_to_text",
    "bio_to_bioes",
    "bioes_to_bio",
    "check_tags",
    "repair_bio",
    "snap_span",
    "spans_to_tags",
    "tags_to_spans",
]

SCHEMES: tuple[str, ...] = ("BIO", "BIOES")
SNAPS: tuple[str, ...] = ("expand", "contract", "strict")


class SpanError(MmnerError):
    """A span that cannot be converted: out of range, empty, off-token, unknown label, overlap."""


class TagError(MmnerError):
    """A malformed tag or an invalid tag sequence."""


# --------------------------------------------------------------------------------------------
# Tags


def _split_tag(tag: str, prefixes: str, index: int) -> tuple[str, str]:
    """``"B-PER"`` → ``("B", "PER")``; ``"O"`` → ``("O", "")``."""
    if tag == "O":
        return "O", ""
    prefix, sep, label = tag.partition("-")
    if not sep or prefix not in prefixes or not label:
        raise TagError(
            f"malformed tag {tag!r} at position {index} (expected O or one of "
            f"{', '.join(p + '-<label>' for p in prefixes)})"
        )
    return prefix, label


def _check_scheme(scheme: str) -> str:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tagging scheme {scheme!r}; expected one of {SCHEMES}")
    return scheme


def repair_bio(tags: Sequence[str]) -> list[str]:
    """Make a BIO sequence valid by reading it the conlleval/seqeval way.

    An ``I-X`` at the start, after ``O``, or after a ``B-Y``/``I-Y`` of another type becomes
    ``B-X`` (it opens an entity). Valid sequences are returned unchanged.
    """
    out: list[str] = []
    open_label = ""
    for i, tag in enumerate(tags):
        prefix, label = _split_tag(tag, "BI", i)
        if prefix == "I" and label != open_label:
            out.append(f"B-{label}")
        else:
            out.append(tag)
        open_label = label
    return out


def bio_to_bioes(tags: Sequence[str]) -> list[str]:
    """BIO → BIOES (single-token entities become ``S-X``, last tokens ``E-X``).

    The input is read as :func:`repair_bio` reads it, so invalid BIO converts too.
    """
    bio = repair_bio(tags)
    out: list[str] = []
    for i, tag in enumerate(bio):
        if tag == "O":
            out.append(tag)
            continue
        prefix, label = tag.split("-", 1)
        continues = i + 1 < len(bio) and bio[i + 1] == f"I-{label}"
        if prefix == "B":
            out.append(f"B-{label}" if continues else f"S-{label}")
        else:
            out.append(f"I-{label}" if continues else f"E-{label}")
    return out


def bioes_to_bio(tags: Sequence[str]) -> list[str]:
    """BIOES → BIO. ``I-X``/``E-X`` that do not continue an open ``X`` entity become ``B-X``."""
    out: list[str] = []
    open_label = ""
    for i, tag in enumerate(tags):
        prefix, label = _split_tag(tag, "BIES", i)
        if prefix == "O":
            out.append("O")
            open_label = ""
        elif prefix in "BS":
            out.append(f"B-{label}")
            open_label = label if prefix == "B" else ""
        else:  # I or E
            out.append(f"I-{label}" if open_label == label else f"B-{label}")
            open_label = label if prefix == "I" else ""
    return out


def check_tags(tags: Sequence[str], scheme: str = "BIO") -> None:
    """Raise :class:`TagError` unless ``tags`` is a valid sequence in ``scheme``.

    Valid BIO: every ``I-X`` follows ``B-X`` or ``I-X``. Valid BIOES additionally: every
    ``B-X``/``I-X`` is followed by ``I-X`` or ``E-X``, and every ``I-X``/``E-X`` follows
    ``B-X`` or ``I-X``.
    """
    _check_scheme(scheme)
    prefixes = "BI" if scheme == "BIO" else "BIES"
    parsed = [_split_tag(t, prefixes, i) for i, t in enumerate(tags)]
    prev_p, prev_l = "O", ""
    for i, (p, lab) in enumerate(parsed):
        inside = p in "IE"
        continues = prev_p in ("B", "I") and prev_l == lab
        if inside and not continues:
            raise TagError(f"{tags[i]!r} at position {i} does not continue an entity")
        if scheme == "BIOES" and prev_p in ("B", "I") and not (p in "IE" and prev_l == lab):
            raise TagError(f"{tags[i - 1]!r} at position {i - 1} is not closed by E-{prev_l}")
        prev_p, prev_l = p, lab
    if scheme == "BIOES" and prev_p in ("B", "I"):
        raise TagError(f"{tags[-1]!r} at the end is not closed by E-{prev_l}")


def tags_to_spans(
    tokens: Sequence[Token], tags: Sequence[str], scheme: str = "BIO"
) -> list[EntitySpan]:
    """Entities of a tag sequence as character spans, first token start to last token end.

    Invalid sequences are read leniently (see the module docstring); use :func:`check_tags`
    first to reject them instead.
    """
    _check_scheme(scheme)
    if len(tokens) != len(tags):
        raise TagError(f"{len(tags)} tags for {len(tokens)} tokens")
    bio = repair_bio(tags) if scheme == "BIO" else bioes_to_bio(tags)
    spans: list[EntitySpan] = []
    i = 0
    while i < len(bio):
        if bio[i] == "O":
            i += 1
            continue
        label = bio[i][2:]
        j = i + 1
        while j < len(bio) and bio[j] == f"I-{label}":
            j += 1
        spans.append(EntitySpan(tokens[i].start, tokens[j - 1].end, label))
        i = j
    return spans


# --------------------------------------------------------------------------------------------
# Spans


def _check_tokens(text: str, tokens: Sequence[Token]) -> None:
    prev_end = 0
    for k, t in enumerate(tokens):
        if not (prev_end <= t.start < t.end <= len(text)) or text[t.start : t.end] != t.text:
            raise ValueError(
                f"token {k} {t!r} does not match the text (tokens must be sorted, "
                f"non-overlapping, non-empty and text[start:end] == token.text)"
            )
        prev_end = t.end


def _moved(span: EntitySpan, start: int, end: int) -> EntitySpan:
    """``span`` at new offsets: the label and score stay, a recorded ``text`` only if unmoved."""
    if (start, end) == (span.start, span.end):
        return span
    return EntitySpan(start, end, span.label, span.score)


def _trim(text: str, span: EntitySpan) -> EntitySpan:
    if not isinstance(span.start, int) or not isinstance(span.end, int):
        raise SpanError(f"span {span} has non-integer offsets")
    if not (0 <= span.start < span.end <= len(text)):
        raise SpanError(f"span {span} is empty or out of range for a text of length {len(text)}")
    s, e = span.start, span.end
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    if s == e:
        raise SpanError(f"span {span} covers only whitespace")
    return _moved(span, s, e)


def _snap_trimmed(
    tokens: Sequence[Token],
    starts: Sequence[int],
    span: EntitySpan,
    original: EntitySpan,
    snap: str,
) -> EntitySpan:
    # Tokens touched: the first whose end is after span.start, up to the last starting before end.
    lo = bisect.bisect_right(starts, span.start) - 1
    if lo < 0 or tokens[lo].end <= span.start:
        lo += 1
    hi = bisect.bisect_left(starts, span.end)  # tokens[lo:hi] start before span.end
    touched = tokens[lo:hi]
    if not touched or touched[0].end <= span.start:
        raise SpanError(f"span {original} touches no token")
    if snap == "expand":
        return _moved(span, touched[0].start, touched[-1].end)
    if snap == "contract":
        inside = [t for t in touched if t.start >= span.start and t.end <= span.end]
        if not inside:
            raise SpanError(f"span {original} contains no whole token (snap='contract')")
        return _moved(span, inside[0].start, inside[-1].end)
    if snap == "strict":
        if touched[0].start != span.start or touched[-1].end != span.end:
            raise SpanError(
                f"span {original} ({span.start}-{span.end} after trimming) does not fall on "
                f"token boundaries {touched[0].start}-{touched[-1].end} (snap='strict')"
            )
        return span
    raise ValueError(f"unknown snap rule {snap!r}; expected one of {SNAPS}")


def snap_span(
    text: str, tokens: Sequence[Token], span: EntitySpan, snap: str = "expand"
) -> EntitySpan:
    """Trim ``span`` of whitespace and snap it onto token boundaries by the ``snap`` rule."""
    if snap not in SNAPS:
        raise ValueError(f"unknown snap rule {snap!r}; expected one of {SNAPS}")
    trimmed = _trim(text, span)
    return _snap_trimmed(tokens, [t.start for t in tokens], trimmed, span, snap)


def _utf16_to_index(text: str, units: int) -> int | None:
    """The code-point index at ``units`` UTF-16 code units into ``text`` (None if mid-pair)."""
    count = 0
    for i, ch in enumerate(text):
        if count == units:
            return i
        count += 2 if ord(ch) > 0xFFFF else 1
        if count > units:
            return None
    return len(text) if count == units else None


def align_to_text(text: str, start: int, end: int, quote: str, window: int = 64) -> tuple[int, int]:
    """Offsets ``(s, e)`` with ``text[s:e] == quote``, for spans coming back from an annotation UI.

    Label Studio sends code-point offsets plus the selected text (``value.text``). Offsets
    can still disagree with the text: older clients counted UTF-16 code units (an emoji counts
    twice) and line breaks may have been normalised. Tried in order: the offsets as given; the
    offsets read as UTF-16 code units; the occurrence of ``quote`` nearest to ``start`` within
    ``window`` characters. Raises :class:`SpanError` when none matches.
    """
    if not quote:
        raise SpanError(f"empty quote for span {start}-{end}")
    if 0 <= start <= end <= len(text) and text[start:end] == quote:
        return start, end
    s16, e16 = _utf16_to_index(text, start), _utf16_to_index(text, end)
    if s16 is not None and e16 is not None and text[s16:e16] == quote:
        return s16, e16
    best: int | None = None
    lo = max(0, start - window)
    pos = text.find(quote, lo, min(len(text), start + window + len(quote)))
    while pos != -1:
        if best is None or abs(pos - start) < abs(best - start):
            best = pos
        pos = text.find(quote, pos + 1, min(len(text), start + window + len(quote)))
    if best is None:
        raise SpanError(f"{quote!r} not found near offsets {start}-{end} of the text")
    return best, best + len(quote)


def _check_label(span: EntitySpan, labels: Collection[str] | None) -> None:
    if not isinstance(span.label, str) or not span.label or span.label != span.label.strip():
        raise SpanError(f"span {span} has an empty or malformed label")
    if labels is not None and span.label not in labels:
        raise SpanError(f"span {span} has label {span.label!r}, not one of {sorted(labels)}")


def _first_overlap(
    spans: Sequence[tuple[EntitySpan, EntitySpan]],
) -> tuple[EntitySpan, EntitySpan] | None:
    """Two original spans whose (snapped) spans overlap, given pairs sorted by snapped span."""
    for (a, a_orig), (b, b_orig) in itertools.pairwise(spans):
        if b.start < a.end:
            return a_orig, b_orig
    return None


def spans_to_tags(
    text: str,
    tokens: Sequence[Token],
    spans: Iterable[EntitySpan],
    scheme: str = "BIO",
    snap: str = "expand",
    labels: Collection[str] | None = None,
) -> list[str]:
    """One tag per token for the entity ``spans`` over ``text``.

    ``tokens`` must be a tokenisation of ``text`` (e.g. :func:`mmner_data.text.tokenize`).
    ``labels``, when given, is the label set of the schema; other labels are an error.
    Raises :class:`SpanError` for invalid, off-token (``snap="strict"``) or conflicting spans.
    """
    _check_scheme(scheme)
    if snap not in SNAPS:
        raise ValueError(f"unknown snap rule {snap!r}; expected one of {SNAPS}")
    _check_tokens(text, tokens)
    originals = list(spans)
    for sp in originals:
        _check_label(sp, labels)
    trimmed = sorted({(_trim(text, sp), sp) for sp in originals}, key=lambda p: (p[0], p[1]))
    # Deduplicate identical trimmed spans, then reject overlaps among what the user wrote.
    unique: dict[EntitySpan, EntitySpan] = {}
    for t, o in trimmed:
        unique.setdefault(t, o)
    pairs = sorted(unique.items())
    if (clash := _first_overlap(pairs)) is not None:
        raise SpanError(f"overlapping or nested spans: {clash[0]} and {clash[1]}")
    starts = [t.start for t in tokens]
    snapped = sorted((_snap_trimmed(tokens, starts, t, o, snap), o) for t, o in pairs)
    if (clash := _first_overlap(snapped)) is not None:
        raise SpanError(
            f"spans {clash[0]} and {clash[1]} overlap once snapped to tokens (snap={snap!r})"
        )
    tags = ["O"] * len(tokens)
    for sp, _ in snapped:
        first = bisect.bisect_left(starts, sp.start)
        last = bisect.bisect_left(starts, sp.end)  # exclusive
        if last - first == 1 and scheme == "BIOES":
            tags[first] = f"S-{sp.label}"
            continue
        tags[first] = f"B-{sp.label}"
        for k in range(first + 1, last):
            tags[k] = f"I-{sp.label}"
        if scheme == "BIOES":
            tags[last - 1] = f"E-{sp.label}"
    return tags
