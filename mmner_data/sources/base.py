"""The one interface every source connector implements."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from mmner_data.errors import MmnerError
from mmner_data.schema import Drop, Post


class SourceError(MmnerError):
    """A source cannot go on (bad URL, bad token, retries exhausted); the message is one line."""


@dataclass(slots=True)
class Page:
    """What one request to a source yields, written to the store in one transaction.

    ``cursor`` resumes *after* this page; ``exhausted`` says the source has nothing older.
    """

    posts: list[Post]
    cursor: str | None
    exhausted: bool
    drops: list[Drop] = field(default_factory=list)


class Source(Protocol):
    name: str

    def iter_pages(self, cursor: str | None) -> Iterator[Page]:
        """Pages from ``cursor`` (``None`` = the beginning), oldest cursor state first."""
        ...

    def close(self) -> None: ...


def malformed(source: str, item_id: str, detail: str) -> Drop:
    return Drop(
        stage="collect",
        item_id=f"{source}:{item_id}",
        reason="malformed_record",
        source=source,
        detail=detail[:500],
    )
