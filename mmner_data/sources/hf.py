"""Any HuggingFace dataset with a text column and an image column.

Loads by hub name (``datasets.load_dataset``) or from a ``save_to_disk`` folder
(``datasets.load_from_disk``). The cursor is the number of rows consumed. Image cells may be
decoded PIL images, ``{"bytes", "path"}`` dicts, or URL/path strings.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmner_data.config import HFSource
from mmner_data.schema import Drop, ImageRef, Post
from mmner_data.sources.base import Page, SourceError, malformed


class HFDataset:
    def __init__(self, settings: HFSource):
        self.settings = settings
        self.name = settings.name
        self._ds: Any = None

    def close(self) -> None:
        self._ds = None

    def _load(self) -> Any:
        if self._ds is None:
            try:
                import datasets
            except ImportError as exc:  # pragma: no cover - optional dependency
                raise SourceError(
                    "source type 'hf' needs the 'datasets' package: pip install 'mmner-data[hf]'"
                ) from exc
            s = self.settings
            try:
                if Path(s.dataset).is_dir():
                    ds = datasets.load_from_disk(s.dataset)
                    if isinstance(ds, datasets.DatasetDict):
                        ds = ds[s.split]
                else:
                    ds = datasets.load_dataset(s.dataset, s.config, split=s.split)
            except Exception as exc:
                raise SourceError(
                    f"source {self.name}: cannot load dataset {s.dataset!r}: {exc}"
                ) from exc
            for col in (s.text_column, s.image_column, s.id_column, s.lang_column):
                if col and col not in ds.column_names:
                    raise SourceError(
                        f"source {self.name}: column {col!r} not in {ds.column_names}"
                    )
            self._ds = ds
        return self._ds

    def iter_pages(self, cursor: str | None) -> Iterator[Page]:
        ds = self._load()
        done = int(cursor or 0)
        n = len(ds)
        while done < n:
            end = min(n, done + self.settings.page_size)
            posts: list[Post] = []
            drops: list[Drop] = []
            for i in range(done, end):
                row = ds[i]
                try:
                    posts.append(self.parse_row(i, row))
                except (KeyError, TypeError, ValueError) as exc:
                    drops.append(malformed(self.name, f"row{i}", str(exc)))
            done = end
            yield Page(posts, cursor=str(done), exhausted=done >= n, drops=drops)
        if n == 0 or int(cursor or 0) >= n:
            yield Page([], cursor=str(done), exhausted=True)

    def parse_row(self, i: int, row: dict[str, Any]) -> Post:
        s = self.settings
        text = row.get(s.text_column)
        if not isinstance(text, str):
            raise ValueError(f"row {i}: column {s.text_column!r} is not a string")
        sid = str(row[s.id_column]) if s.id_column else str(i)
        folder = Path(s.dataset)
        base = folder.resolve() if folder.is_dir() else None
        images = _image_refs(row.get(s.image_column), base) if s.image_column else []
        return Post(
            source=self.name,
            source_id=sid,
            text=text,
            source_lang=row.get(s.lang_column) if s.lang_column else None,
            images=images,
            licence=s.licence,
        )


def _image_refs(cell: Any, base: Path | None = None) -> list[ImageRef]:
    """Image references of a cell; relative paths resolve against the dataset folder (``base``).

    A path from a hub dataset (``base`` None) is kept as written: the URL policy refuses local
    files for sources that are not local folders.
    """
    if cell is None:
        return []
    if isinstance(cell, list):
        return [ref for c in cell for ref in _image_refs(c, base)]
    if isinstance(cell, str):
        if "://" in cell or base is None:
            return [ImageRef(url=cell)]
        p = Path(cell)
        return [ImageRef(url=(p if p.is_absolute() else base / p).resolve().as_uri())]
    if isinstance(cell, dict):
        if cell.get("bytes"):
            return [ImageRef(data=bytes(cell["bytes"]))]
        if cell.get("path"):
            return _image_refs(cell["path"], base)
        return []
    if hasattr(cell, "save"):  # a decoded PIL image: hand over lossless bytes
        buf = io.BytesIO()
        cell.save(buf, format="PNG")
        return [ImageRef(data=buf.getvalue(), content_type="image/png")]
    raise ValueError(f"unsupported image cell of type {type(cell).__name__}")
