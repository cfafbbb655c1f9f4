"""Pseudonymisation of exported text: handles and e-mail addresses hashed, URLs cut to the host.

Policy (see docs/export.md):

* **@mentions** (``@name``, ``@name@instance.social``, ``@name.bsky.social``) become
  ``@user_<12 hex>``: the same salted HMAC that ``collect`` stores for authors
  (``collect.pipeline.pseudonym(salt, source, handle)``), so a mention of an author and the
  author column carry the same pseudonym within one source.
* **E-mail addresses** become ``user_<12 hex>@example.invalid`` (same hash, source ``email``).
* **URLs** keep only scheme and host: ``https://news.example.com/a/b?c=1`` →
  ``https://news.example.com`` (no path, query, fragment, user info or port; a bare
  ``t.co/x`` becomes ``http://t.co``).
* Everything else (names of people in the text, hashtags) is kept: the entities are the data.

Replacements are whole tokens of :func:`mmner_data.text.tokenize`, so token boundaries survive
and every token maps to exactly one token of the new text. :class:`OffsetMap` carries any
character offset of the original text through the replacements.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from mmner_data.text.tokenize import Token

_URL_SCHEME = re.compile(r"(?i)^(?:https?://|www\.)")
_BARE_URL = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.){1,10}[a-z]{2,}(?:/\S*)?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^\W\d_]{2,}$")
_MENTION = re.compile(r"^@[\w.\-]+(?:@[\w.\-]+)?$")


@dataclass(frozen=True, slots=True)
class Replacement:
    """``text[start:end]`` (one token) is written as ``new``; ``kind`` is url|mention|email."""

    start: int
    end: int
    new: str
    kind: str


def handle_pseudonym(salt: str, source: str, handle: str) -> str:
    """``user_<12 hex>``, identical to what ``collect`` stores for the same author handle."""
    from mmner_data.collect.pipeline import pseudonym

    out = pseudonym(salt, source, handle)
    assert out is not None
    return out


def reduce_url(url: str) -> str:
    """Scheme and host only (lower-case host, no user info or port); ``http://`` if none."""
    target = url if "://" in url else "http://" + url
    try:
        parts = urlsplit(target)
        host = parts.hostname
    except ValueError:
        host = None
    if not host:
        return "http://invalid.invalid"
    scheme = (parts.scheme or "http").lower()
    return f"{scheme}://{host.lower()}"


def classify(token: str) -> str | None:
    """``url``, ``email``, ``mention`` or None for a token of the tokenizer."""
    if _URL_SCHEME.match(token) or _BARE_URL.match(token):
        return "url"
    if token.startswith("@"):
        return "mention" if len(token) > 1 and _MENTION.match(token) else None
    if _EMAIL.match(token):
        return "email"
    return None


def find_replacements(tokens: Sequence[Token], salt: str, source: str) -> list[Replacement]:
    """The replacements for one post's tokens (in order, never overlapping)."""
    out: list[Replacement] = []
    for tok in tokens:
        kind = classify(tok.text)
        if kind == "url":
            new = reduce_url(tok.text)
        elif kind == "mention":
            new = "@" + handle_pseudonym(salt, source, tok.text[1:])
        elif kind == "email":
            new = handle_pseudonym(salt, "email", tok.text) + "@example.invalid"
        else:
            continue
        if new != tok.text:
            out.append(Replacement(tok.start, tok.end, new, kind))
    return out


class OffsetMap:
    """Maps character offsets of the original text to offsets of the rewritten text.

    An offset outside every replaced region moves by the length change of the regions before
    it. An offset strictly inside a region maps to the region's new start (``side="start"``)
    or new end (``side="end"``), so a span that cuts into a replaced token covers all of it.
    """

    def __init__(self, replacements: Sequence[Replacement]):
        reps = sorted(replacements, key=lambda r: r.start)
        for a, b in itertools.pairwise(reps):
            if b.start < a.end:
                raise ValueError(f"overlapping replacements at {a.start} and {b.start}")
        self._reps = reps
        self._ends = [r.end for r in reps]
        self._shift_before: list[int] = []
        shift = 0
        for r in reps:
            self._shift_before.append(shift)
            shift += len(r.new) - (r.end - r.start)

    def __call__(self, pos: int, side: str = "start") -> int:
        # index of the first region that ends after pos
        i = bisect.bisect_right(self._ends, pos)
        if i < len(self._reps) and self._reps[i].start < pos:
            r = self._reps[i]
            new_start = r.start + self._shift_before[i]
            return new_start if side == "start" else new_start + len(r.new)
        shift = self._shift_before[i] if i < len(self._reps) else self._total_shift()
        return pos + shift

    def _total_shift(self) -> int:
        if not self._reps:
            return 0
        last = self._reps[-1]
        return self._shift_before[-1] + len(last.new) - (last.end - last.start)

    def span(self, start: int, end: int) -> tuple[int, int]:
        return self(start, "start"), self(end, "end")


def apply_replacements(text: str, replacements: Sequence[Replacement]) -> str:
    """The rewritten text."""
    parts: list[str] = []
    pos = 0
    for r in sorted(replacements, key=lambda r: r.start):
        parts.append(text[pos : r.start])
        parts.append(r.new)
        pos = r.end
    parts.append(text[pos:])
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class PseudonymisedText:
    text: str
    tokens: list[Token]
    replacements: list[Replacement]
    offsets: OffsetMap


def pseudonymise(text: str, tokens: Sequence[Token], salt: str, source: str) -> PseudonymisedText:
    """Rewrite ``text`` by the policy; ``tokens`` (its tokenisation) are carried over 1:1."""
    reps = find_replacements(tokens, salt, source)
    new_text = apply_replacements(text, reps)
    omap = OffsetMap(reps)
    new_tokens = []
    for tok in tokens:
        s, e = omap.span(tok.start, tok.end)
        new_tokens.append(Token(new_text[s:e], s, e))
    return PseudonymisedText(new_text, new_tokens, reps, omap)
