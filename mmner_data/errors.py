"""The one base class of every error a user can fix.

The CLI's ``user_errors()`` catches :class:`MmnerError` alone and prints it as one line with exit
code 1; anything else is a bug and shows its traceback. Stage packages raise subclasses of it (one
per concern, defined beside the code that raises it) and never ``ValueError``/``OSError`` for a
condition the user caused, so that a programming error is never disguised as a user error.
"""

from __future__ import annotations

MAX_MESSAGE_CHARS = 2000


class MmnerError(Exception):
    """An error the user can fix (bad recipe, unreachable server, unreadable input...).

    ``str(exc)`` is the one line shown to the user: newlines are folded and very long messages
    (an echoed 200 KB input, say) are cut, so an error never floods the terminal.
    """

    def __str__(self) -> str:
        return one_line(super().__str__())


class UserError(MmnerError):
    """A generic user-fixable error raised by the CLI itself (bad flag combination...)."""


def one_line(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``message`` on one line, at most ``limit`` characters."""
    text = " ".join(str(message).split())
    if len(text) > limit:
        text = text[: limit - 20].rstrip() + f" … (+{len(text) - limit + 20} chars)"
    return text
