"""The Twitter-2015/2017 MNER layout (Zhang et al. 2018; read by UMT, MAF, IIE4MNER, …).

The format, as those code bases read it::

    <folder>/train.txt, valid.txt, test.txt
        IMGID:<image id>          one line opening each post
        <token>\\t<tag>            one line per token, BIO tags
                                  a blank line closes the post
    <folder>/images/<image id>.jpg

Our writer uses the export id as the image id and writes every image as JPEG. A post without an
image keeps its ``IMGID:`` line but has no file (those readers fall back to a blank image).
Tokens never contain whitespace (see :mod:`mmner_data.text.tokenize`), so the columns are safe.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mmner_data.errors import MmnerError
from mmner_data.export.records import ExportRecord

FILES: dict[str, str] = {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"}
IMAGE_DIR = "images"


@dataclass(frozen=True, slots=True)
class Sentence:
    image_id: str
    tokens: tuple[str, ...]
    tags: tuple[str, ...]


class Twitter2015Error(MmnerError):
    """A file that does not follow the layout; the message names file and line."""


def format_sentences(sentences: Sequence[Sentence]) -> str:
    lines: list[str] = []
    for s in sentences:
        lines.append(f"IMGID:{s.image_id}")
        for tok, tag in zip(s.tokens, s.tags, strict=True):
            if not tok or any(c.isspace() for c in tok):
                raise Twitter2015Error(f"{s.image_id}: token {tok!r} is empty or has whitespace")
            lines.append(f"{tok}\t{tag}")
        lines.append("")
    return "\n".join(lines) + ("\n" if lines else "")


def _jpeg(path: Path) -> bytes:
    data = path.read_bytes()
    if data[:3] == b"\xff\xd8\xff":
        return data
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        buf = io.BytesIO()
        im.convert("RGB").save(buf, "JPEG", quality=90)
        return buf.getvalue()


def write_twitter2015(folder: Path, by_split: Mapping[str, Sequence[ExportRecord]]) -> list[Path]:
    """Write the three text files and the image folder; returns the text files.

    Plain writes: the export builds the whole folder aside and moves it into place.
    """
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for split, name in FILES.items():
        records = by_split.get(split, [])
        sentences = [
            Sentence(r.id, tuple(t.text for t in r.tokens), tuple(r.tags)) for r in records
        ]
        path = folder / name
        path.write_text(format_sentences(sentences), encoding="utf-8")
        paths.append(path)
        for r in records:
            if r.image_path is not None:
                (folder / IMAGE_DIR).mkdir(exist_ok=True)
                (folder / IMAGE_DIR / f"{r.id}.jpg").write_bytes(_jpeg(r.image_path))
    return paths


def parse_sentences(text: str, *, name: str = "<text>") -> list[Sentence]:
    """Read one file of the layout (tab- or space-separated columns; CRLF tolerated)."""
    out: list[Sentence] = []
    image_id: str | None = None
    tokens: list[str] = []
    tags: list[str] = []

    def close(lineno: int) -> None:
        nonlocal image_id, tokens, tags
        if image_id is None and tokens:
            raise Twitter2015Error(f"{name}:{lineno}: tokens before any IMGID line")
        if image_id is not None:
            out.append(Sentence(image_id, tuple(tokens), tuple(tags)))
        image_id, tokens, tags = None, [], []

    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            close(lineno)
            continue
        if line.startswith("IMGID:"):
            if image_id is not None or tokens:
                close(lineno)
            image_id = line[len("IMGID:") :].strip()
            continue
        if image_id is None:
            raise Twitter2015Error(f"{name}:{lineno}: token line before any IMGID line")
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise Twitter2015Error(f"{name}:{lineno}: expected 'token<TAB>tag', got {line!r}")
        tokens.append(parts[0])
        tags.append(parts[1].strip())
    close(len(text.splitlines()) + 1)
    return out


def read_twitter2015(folder: Path) -> dict[str, list[Sentence]]:
    """All present split files of ``folder`` → sentences per split (train/validation/test)."""
    out: dict[str, list[Sentence]] = {}
    for split, name in FILES.items():
        path = folder / name
        if path.exists():
            out[split] = parse_sentences(path.read_text(encoding="utf-8"), name=str(path))
    if not out:
        raise Twitter2015Error(f"{folder}: no train.txt, valid.txt or test.txt")
    return out
