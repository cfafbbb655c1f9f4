"""Offsets-preserving text normalisation.

The original text is never edited: NER spans point into it. What social-media markup carries
(URLs, @mentions, #hashtags, emoji) is *recorded* as :class:`TextEntity` spans, and a lossy
``text_key`` is derived for hashing and near-duplicate shingling only.
"""

from __future__ import annotations

import html
import re
import unicodedata
from html.parser import HTMLParser

from mmner_data.schema import TextEntity

URL_RE = re.compile(r"(?:https?://|www\.)[^\s<>\"']+[^\s<>\"'.,;:!?)\]}»”’]", re.IGNORECASE)
# @user or @user@instance.social (Mastodon) or @handle.bsky.social (Bluesky)
MENTION_RE = re.compile(
    r"(?<![\w@])@[A-Za-z0-9_](?:[A-Za-z0-9_.\-]*[A-Za-z0-9_])?(?:@[A-Za-z0-9.\-]+\.[A-Za-z]{2,})?"
)
HASHTAG_RE = re.compile(r"(?<![\w#&])#[^\W\d_][\w]*|(?<![\w#&])#\d+[^\W\d][\w]*")
# Emoji: pictographs with optional variation selector / skin tone, ZWJ sequences, flags.
_EMOJI_CORE = (
    r"(?:[\U0001F1E6-\U0001F1FF]{2}"
    r"|[\U0001F300-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\u2300-\u23FF]"
    r"[\uFE0F\U0001F3FB-\U0001F3FF]*)"
)
EMOJI_RE = re.compile(rf"{_EMOJI_CORE}(?:\u200D{_EMOJI_CORE})*")
RETWEET_PREFIX_RE = re.compile(r"^\s*RT\s+@[\w.\-]+(?:@[\w.\-]+)?\s*:\s*", re.IGNORECASE)
_PUNCT_RE = re.compile(r"[^\w\s]", re.UNICODE)
_WS_RE = re.compile(r"\s+")


def find_entities(text: str) -> list[TextEntity]:
    """URLs, mentions, hashtags and emoji with character offsets into ``text``, in order.

    Earlier kinds win where matches overlap (an ``@`` inside a URL is part of the URL).
    """
    found: list[TextEntity] = []
    taken = [False] * len(text)
    for kind, pattern in (
        ("url", URL_RE),
        ("mention", MENTION_RE),
        ("hashtag", HASHTAG_RE),
        ("emoji", EMOJI_RE),
    ):
        for m in pattern.finditer(text):
            start, end = m.span()
            if any(taken[start:end]):
                continue
            for i in range(start, end):
                taken[i] = True
            found.append(TextEntity(kind=kind, start=start, end=end, text=m.group()))
    found.sort(key=lambda e: (e.start, e.end))
    return found


def is_retweet(text: str) -> bool:
    """A classic ``RT @user:`` repost."""
    return RETWEET_PREFIX_RE.match(text) is not None


def text_key(text: str) -> str:
    """A lossy key for exact/near-duplicate detection (never used for spans).

    NFKC, case-folded, ``RT @x:`` prefix, URLs, mentions and emoji removed, ``#`` dropped
    (the hashtag word stays), punctuation removed, whitespace collapsed.
    """
    t = unicodedata.normalize("NFKC", text)
    t = RETWEET_PREFIX_RE.sub("", t)
    t = URL_RE.sub(" ", t)
    t = MENTION_RE.sub(" ", t)
    t = EMOJI_RE.sub(" ", t)
    t = t.casefold()
    t = _PUNCT_RE.sub(" ", t)
    return _WS_RE.sub(" ", t).strip()


def content_words(text: str) -> int:
    """Number of words once URLs, mentions, hashtags and emoji are set aside."""
    t = URL_RE.sub(" ", text)
    t = MENTION_RE.sub(" ", t)
    t = HASHTAG_RE.sub(" ", t)
    t = EMOJI_RE.sub(" ", t)
    return len([w for w in _PUNCT_RE.sub(" ", t).split() if w])


class _HTMLToText(HTMLParser):
    """Mastodon/RSS HTML → plain text: paragraphs become blank lines, ``<br>`` a newline."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag in ("p", "div", "li", "blockquote") and self.parts:
            self.parts.append("\n\n")
        # Mastodon hides URL prefixes in <span class="invisible">: keep them, the text must
        # show the whole URL as a reader would copy it.

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """Plain text of an HTML fragment; entities decoded, surrounding whitespace stripped."""
    if "<" not in markup:
        return html.unescape(markup).strip()
    parser = _HTMLToText()
    parser.feed(markup)
    parser.close()
    text = "".join(parser.parts)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()
