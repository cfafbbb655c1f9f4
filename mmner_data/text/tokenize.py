"""Rule-based tokeniser for social-media text in EN/FR/DE/ES, with character offsets.

Every token keeps its offsets into the original string (``text[start:end] == token.text``), so
Label Studio character spans, tokens and BIO tags convert both ways without loss. Whitespace is
never part of a token and every other character belongs to exactly one token.

Rules, in priority order (the first that matches at a position wins):

1. **URLs** are one token: ``https://…``, ``www.…``, and bare lowercase domains followed by a
   path (``t.co/x``, ``bit.ly/x``) or ending in an unambiguous TLD (``example.com``; ``.com .org
   .net .edu .gov .io .info .social``), so that ``fini.Es`` or ``done.It`` stay words. Trailing
   sentence punctuation, quotes and closing brackets are left out of a URL.
2. **E-mail addresses**, **@mentions** (including Mastodon ``@user@instance.social`` and
   Bluesky ``@name.bsky.social``) and **#hashtags** are one token each.
3. **Emoji** are one token per grapheme cluster: ZWJ sequences (👨‍👩‍👧), skin tones (👍🏽),
   flags (🇫🇷, 🏴 tag sequences), keycaps (1️⃣) and variation selectors stay whole; two emoji
   written together are two tokens. Common ASCII emoticons (``:)``, ``:-(``, ``<3``) are one
   token when they stand alone.
4. **Abbreviations** written as letter-dot pairs (``U.S.``, ``z.B.``, ``e.g.``) are one token.
5. **French elision** is split after the apostrophe (``'`` or ``’``): ``l'homme`` → ``l'`` +
   ``homme``, ``qu'il`` → ``qu'`` + ``il``, ``jusqu'à`` → ``jusqu'`` + ``à`` (for c d j l m n s
   t qu jusqu lorsqu puisqu quoiqu, any case). ``aujourd'hui``, ``quelqu'un`` and ``prud'homme``
   are words, not elisions.
6. **English (and German) clitics** are split Penn-Treebank style, always, whatever the language:
   a word ending in ``n't`` or ``'s 'm 're 've 'll 'd`` loses that suffix to its own token:
   ``don't`` → ``do`` + ``n't``, ``can't`` → ``ca`` + ``n't``, ``Obama's`` → ``Obama`` + ``'s``,
   ``geht's`` → ``geht`` + ``'s``, ``90's`` → ``90`` + ``'s``; after a mention or hashtag too
   (``@user's`` → ``@user`` + ``'s``). This keeps an entity (``Obama``) on token boundaries.
7. **Words and numbers**: runs of letters, marks, digits and ``_``, joined by hyphens between
   word characters (``Jean-Luc``, ``Baden-Württemberg``, ``COVID-19``), by apostrophes between
   word characters (``O'Brien``, ``rock'n'roll``) and by ``. , : /`` between digits
   (``1,000.50``, ``1.000,50``, ``10:30``, ``12/05/2024``); ``3h30`` is a plain run.
8. **Punctuation**: runs of ``. ! ? …`` are one token (``...``, ``?!``), as are runs of two or
   more hyphens; anything else is a token per grapheme cluster (a symbol with its combining
   marks stays whole).

"Whitespace" is :meth:`str.isspace`. The tokeniser is a single compiled regular expression
(the ``regex`` package, for Unicode properties and grapheme clusters) plus the clitic split,
so it is deterministic and runs in linear time (repetitions that could backtrack are bounded;
see ``test_adversarial_inputs_stay_fast``).
"""

from __future__ import annotations

from dataclasses import dataclass

import regex

__all__ = ["Token", "token_texts", "tokenize"]


@dataclass(frozen=True, slots=True)
class Token:
    """A token and its character offsets: ``original[start:end] == text``."""

    text: str
    start: int
    end: int


# Every character for which str.isspace() is true lies below U+3001.
_WS_CHARS = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())
_WS = "[" + regex.escape(_WS_CHARS) + "]"
_NOT_WS = "[^" + regex.escape(_WS_CHARS) + "]"
_NOT_WS_URL = "[^" + regex.escape(_WS_CHARS) + '<>"]'

_W = r"[\p{L}\p{M}\p{N}_]"  # a word character
_HYPHEN = "[-\u2010\u2011]"
_APOS = "['\u2019]"

# Bare domains: any TLD when a path follows (t.co/x, bit.ly/x); a few unambiguous TLDs without
# one (example.com). Lowercase only, so "fini.Es" or "done.It" stay words.
_TLD_ANY = r"[a-z]{2,}"
_TLD_ALONE = "com|org|net|edu|gov|io|info|social"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
_URL = (
    rf"(?:(?i:https?://|www\.){_NOT_WS_URL}*"
    rf"|(?<![\w@.\-])(?:{_LABEL}\.){{1,10}}"
    rf"(?:{_TLD_ANY}/{_NOT_WS_URL}*|(?:{_TLD_ALONE})(?!{_W})(?:/{_NOT_WS_URL}*)?))"
)
# The URL may not end in sentence punctuation or a closing bracket/quote.
_URL_END = r"(?<![.,;:!?)\]}'\u2019\u201d\u00bb\u2026])"
_URL_FULL = rf"{_URL}{_URL_END}"

_EMAIL = rf"(?<!{_W}){_W}+(?:[.+\-]{_W}+)*@{_W}+(?:[.\-]{_W}+)*\.\p{{L}}{{2,}}(?!{_W})"
_MENTION = (
    rf"(?<![\w@]){'@'}{_W}+(?:[.\-]{_W}+)*"
    rf"(?:@{_W}+(?:[.\-]{_W}+)*\.\p{{L}}{{2,}})?"
)
_HASHTAG = rf"(?<![\w#&]){'#'}{_W}+"
_KEYCAP = r"[0-9#*]\uFE0F?\u20E3"
_EMOJI = r"(?=[\p{Extended_Pictographic}\p{Regional_Indicator}])\X"
_EMOTICON = (
    rf"(?<!{_NOT_WS})"  # at the start or after whitespace
    rf"(?:[:;=][-'^]?[()\[\]DPpOo3/\\|*]|<3|\^_*\^|[xX]D)"
    rf"(?![\p{{L}}\p{{N}}])"
)
_ABBREV = rf"(?<!{_W})(?:\p{{L}}\.){{2,}}"
# French elision at the start of a word (so aujourd'hui, quelqu'un, prud'homme stay whole).
_ELISION = rf"(?<!{_W})(?i:jusqu|lorsqu|puisqu|quoiqu|qu|[cdjlmnst]){_APOS}(?=\p{{L}})"
# A clitic after a token that is not a plain word ("@user's", "#Paris's").
_CLITIC = rf"(?<=[\p{{L}}\p{{N}}_]){_APOS}(?i:s|m|re|ve|ll|d)(?!{_W})"
_WORD = rf"{_W}+(?:(?:{_HYPHEN}|{_APOS}|(?<=\p{{N}})[.,:/](?=\p{{N}})){_W}+)*"
_PUNCT = r"[.!?\u2026]+|-{2,}"

_TOKEN_RE = regex.compile(
    "|".join(
        f"(?P<{name}>{pattern})"
        for name, pattern in (
            ("url", _URL_FULL),
            ("email", _EMAIL),
            ("mention", _MENTION),
            ("keycap", _KEYCAP),
            ("hashtag", _HASHTAG),
            ("emoji", _EMOJI),
            ("emoticon", _EMOTICON),
            ("abbrev", _ABBREV),
            ("elision", _ELISION),
            ("clitic", _CLITIC),
            ("word", _WORD),
            ("punct", _PUNCT),
            ("ws", f"{_WS}+"),
            ("other", r"\X"),
        )
    ),
    flags=regex.V0 | regex.DOTALL,
)
_CLITIC_RE = regex.compile(rf"(?i)(?<=[\p{{L}}\p{{N}}])(?:n{_APOS}t|{_APOS}(?:s|m|re|ve|ll|d))$")


def _emit_other(text: str, start: int, end: int, out: list[Token]) -> None:
    """A grapheme cluster that no rule claimed: one token, whitespace split off."""
    piece = text[start:end]
    if not any(c.isspace() for c in piece):
        out.append(Token(piece, start, end))
        return
    # A cluster such as "\r\n" or a space followed by a combining mark: keep the non-space runs.
    i = start
    while i < end:
        if text[i].isspace():
            i += 1
            continue
        j = i
        while j < end and not text[j].isspace():
            j += 1
        out.append(Token(text[i:j], i, j))
        i = j


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens with character offsets (see the module docstring for rules)."""
    out: list[Token] = []
    for m in _TOKEN_RE.finditer(text):
        kind = m.lastgroup
        start, end = m.span()
        if kind == "ws":
            continue
        if kind == "other":
            _emit_other(text, start, end, out)
            continue
        if kind == "word":
            clitic = _CLITIC_RE.search(m.group())
            if clitic is not None:
                cut = start + clitic.start()
                out.append(Token(text[start:cut], start, cut))
                out.append(Token(text[cut:end], cut, end))
                continue
        out.append(Token(m.group(), start, end))
    return out


def token_texts(text: str) -> list[str]:
    """Just the token strings of :func:`tokenize` (handy in tests and for exports)."""
    return [t.text for t in tokenize(text)]
