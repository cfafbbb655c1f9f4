"""Local JSONL/CSV and HF-dataset sources: real files, real `datasets` folders."""

import json

import pytest

from mmner_data.config import HFSource, LocalSource
from mmner_data.sources import SourceError, make_source


def _pages(src, cursor=None):
    return list(src.iter_pages(cursor))


def test_jsonl_malformed_lines_are_recorded_and_cursor_resumes(tmp_path):
    img = tmp_path / "imgs" / "a.jpg"
    img.parent.mkdir()
    img.write_bytes(b"x")
    lines = [
        json.dumps({"id": 1, "text": "Hello Paris", "image": "imgs/a.jpg", "lang": "en"}),
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"id": 3}),  # no text
        "",
        json.dumps({"id": 4, "text": "Bonjour Lyon", "image": "https://ex.org/a.jpg|imgs/a.jpg"}),
    ]
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(lines) + "\n")
    src = make_source(LocalSource(name="loc", type="jsonl", path=str(path), page_size=2))
    pages = _pages(src)
    posts = [p for page in pages for p in page.posts]
    drops = [d for page in pages for d in page.drops]
    assert [p.source_id for p in posts] == ["1", "4"]
    assert posts[0].images[0].url == img.resolve().as_uri()
    assert [r.url for r in posts[1].images] == ["https://ex.org/a.jpg", img.resolve().as_uri()]
    assert {d.item_id for d in drops} == {"loc:line2", "loc:line3", "loc:line4"}
    assert all(d.reason == "malformed_record" for d in drops)
    assert "invalid JSON" in next(d.detail for d in drops if d.item_id == "loc:line2")
    assert pages[-1].exhausted and pages[-1].cursor == "6"
    # resume after the first page: only what follows is read
    resumed = [p.source_id for page in _pages(src, pages[0].cursor) for p in page.posts]
    assert resumed == ["4"]


def test_csv_with_custom_fields(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("tid,body,pic\n7,Real Madrid en Madrid,\n8,Olaf in Berlin,x.png\n")
    src = make_source(
        LocalSource(
            name="c",
            type="csv",
            path=str(path),
            fields={
                "id": "tid",
                "text": "body",
                "image": "pic",
                "lang": None,
                "created_at": None,
                "author": None,
                "url": None,
            },
        )
    )
    posts = [p for page in _pages(src) for p in page.posts]
    assert [(p.source_id, p.text, len(p.images)) for p in posts] == [
        ("7", "Real Madrid en Madrid", 0),
        ("8", "Olaf in Berlin", 1),
    ]


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match="file not found"):
        make_source(LocalSource(name="x", type="jsonl", path=str(tmp_path / "nope.jsonl")))


def test_hf_dataset_from_disk_with_pil_images(tmp_path):
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    imgs = [Image.new("RGB", (40, 30), c) for c in ("red", "blue", "green")]
    ds = datasets.Dataset.from_dict(
        {
            "tweet": ["Angela in Berlin", "Macron à Paris", "Messi en Barcelona"],
            "img": imgs,
            "uid": ["a", "b", "c"],
        },
        features=datasets.Features(
            {
                "tweet": datasets.Value("string"),
                "img": datasets.Image(),
                "uid": datasets.Value("string"),
            }
        ),
    )
    ds.save_to_disk(tmp_path / "ds")
    src = make_source(
        HFSource(
            name="hf",
            type="hf",
            dataset=str(tmp_path / "ds"),
            text_column="tweet",
            image_column="img",
            id_column="uid",
            page_size=2,
        )
    )
    pages = _pages(src)
    posts = [p for page in pages for p in page.posts]
    assert [p.source_id for p in posts] == ["a", "b", "c"]
    assert all(p.images[0].data[:8] == b"\x89PNG\r\n\x1a\n" for p in posts)
    assert pages[-1].exhausted and pages[-1].cursor == "3"
    assert [p.source_id for page in _pages(src, "2") for p in page.posts] == ["c"]
    with pytest.raises(SourceError, match="column 'nope'"):
        _pages(
            make_source(
                HFSource(name="h", type="hf", dataset=str(tmp_path / "ds"), text_column="nope")
            )
        )
