"""Local JSONL and CSV files, with configurable field names.

The cursor is the number of data lines already consumed, so a resumed run starts on the next
line. Image fields hold URLs or paths (relative paths are resolved against the file's folder);
several images are separated by ``image_separator`` or given as a JSON list.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from mmner_data.config import LocalSource
from mmner_data.schema import Drop, ImageRef, Post
from mmner_data.sources.base import Page, SourceError, malformed
from mmner_data.sources.timeparse import to_utc_iso


class LocalFile:
    def __init__(self, settings: LocalSource):
        self.settings = settings
        self.name = settings.name
        self.path = Path(settings.path)
        if not self.path.is_file():
            raise SourceError(f"source {self.name}: file not found: {self.path}")

    def close(self) -> None:
        pass

    def _records(self) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
        """(line number, record or None, error) for every data line."""
        with self.path.open(encoding="utf-8", newline="") as fh:
            if self.settings.type == "jsonl":
                for n, line in enumerate(fh, start=1):
                    if not line.strip():
                        yield n, None, "empty line"
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as exc:
                        what = exc.msg.removesuffix(" at").strip()
                        yield n, None, f"invalid JSON ({what} at column {exc.colno})"
                        continue
                    if not isinstance(obj, dict):
                        yield n, None, f"expected a JSON object, got {type(obj).__name__}"
                        continue
                    yield n, obj, None
            else:
                for n, row in enumerate(csv.DictReader(fh), start=2):
                    if None in row:
                        yield n, None, "more fields than the header names"
                        continue
                    yield n, dict(row), None

    def iter_pages(self, cursor: str | None) -> Iterator[Page]:
        done = int(cursor or 0)
        records = islice(self._records(), done, None)
        while True:
            chunk = list(islice(records, self.settings.page_size))
            if not chunk:
                yield Page([], cursor=str(done), exhausted=True)
                return
            posts: list[Post] = []
            drops: list[Drop] = []
            for n, rec, err in chunk:
                if rec is None:
                    if err != "empty line":
                        drops.append(malformed(self.name, f"line{n}", err or "unreadable"))
                    continue
                try:
                    posts.append(self.parse_record(rec))
                except (KeyError, TypeError, ValueError) as exc:
                    drops.append(malformed(self.name, f"line{n}", str(exc)))
            done += len(chunk)
            yield Page(posts, cursor=str(done), exhausted=False, drops=drops)

    def parse_record(self, rec: dict[str, Any]) -> Post:
        f = self.settings.fields
        if rec.get(f.id) in (None, ""):
            raise ValueError(f"missing id field {f.id!r}")
        text = rec.get(f.text)
        if not isinstance(text, str):
            raise ValueError(f"field {f.text!r} is missing or not a string")

        def get(key: str | None) -> Any:
            return rec.get(key) if key else None

        return Post(
            source=self.name,
            source_id=str(rec[f.id]),
            text=text,
            url=get(f.url) or None,
            created_at=to_utc_iso(str(get(f.created_at))) if get(f.created_at) else None,
            author=get(f.author) or None,
            source_lang=get(f.lang) or None,
            images=[ImageRef(url=u) for u in self._image_urls(get(f.image))],
            licence=self.settings.licence,
        )

    def _image_urls(self, value: Any) -> list[str]:
        if value in (None, ""):
            return []
        items = (
            value if isinstance(value, list) else str(value).split(self.settings.image_separator)
        )
        out = []
        for item in (str(x).strip() for x in items):
            if not item:
                continue
            if "://" in item:
                out.append(item)
            else:
                p = Path(item)
                p = p if p.is_absolute() else (self.path.parent / p)
                out.append(p.resolve().as_uri())
        return out
