import hashlib
import sqlite3

import pytest

from mmner_data.schema import Drop, Image
from mmner_data.store import SCHEMA_VERSION, CorpusStore, StoreError, atomic_write_bytes


def _image(data: bytes) -> Image:
    return Image(
        sha256=hashlib.sha256(data).hexdigest(),
        width=1,
        height=1,
        format="JPEG",
        n_bytes=len(data),
        phash="0" * 16,
    )


def test_new_store_is_migrated_and_in_wal_mode(tmp_path):
    with CorpusStore(tmp_path / "s") as st:
        assert st.schema_version == SCHEMA_VERSION
        assert st.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert st.counts() == {"posts": 0, "images": 0, "post_images": 0, "drops": 0}
    with CorpusStore(tmp_path / "s") as st:  # reopening does not migrate twice
        assert st.schema_version == SCHEMA_VERSION


def test_newer_schema_is_refused(tmp_path):
    CorpusStore(tmp_path / "s").close()
    conn = sqlite3.connect(tmp_path / "s" / "corpus.sqlite")
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="Upgrade mmner-data"):
        CorpusStore(tmp_path / "s")


def test_transaction_rolls_back_on_error(tmp_path):
    st = CorpusStore(tmp_path / "s")
    with pytest.raises(RuntimeError), st.transaction() as conn:
        st.record_drop(conn, Drop(stage="collect", item_id="a", reason="malformed_record"))
        raise RuntimeError("killed")
    assert st.counts()["drops"] == 0
    with st.transaction() as conn:
        st.record_drop(conn, Drop(stage="collect", item_id="a", reason="malformed_record"))
        st.record_drop(
            conn, Drop(stage="collect", item_id="a", reason="malformed_record", detail="again")
        )
    rows = st.query("SELECT detail FROM drops")
    assert [r["detail"] for r in rows] == ["again"]  # one row per (stage, item)


def test_put_image_is_content_addressed_and_idempotent(tmp_path):
    st = CorpusStore(tmp_path / "s")
    data = b"\xff\xd8\xff fake jpeg bytes"
    img = _image(data)
    with st.transaction() as conn:
        p1 = st.put_image(conn, img, data)
    with st.transaction() as conn:
        p2 = st.put_image(conn, img, data)
    assert p1 == p2 and p1.read_bytes() == data
    assert p1.name == f"{img.sha256}.jpg" and p1.parent.name == img.sha256[:2]
    assert st.counts()["images"] == 1
    assert not list(p1.parent.glob(".tmp-*"))
    with pytest.raises(ValueError, match="sha256"), st.transaction() as conn:
        st.put_image(conn, img, data + b"x")


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_cursor_roundtrip_and_salt_is_stable(tmp_path, monkeypatch):
    monkeypatch.delenv("MMNER_PSEUDONYM_SALT", raising=False)
    st = CorpusStore(tmp_path / "s")
    assert st.get_cursor("m") == (None, False)
    with st.transaction() as conn:
        st.set_cursor(conn, "m", "123", False)
    with st.transaction() as conn:
        st.set_cursor(conn, "m", "99", True)
    assert st.get_cursor("m") == ("99", True)
    salt = st.pseudonym_salt()
    st.close()
    assert CorpusStore(tmp_path / "s").pseudonym_salt() == salt
    monkeypatch.setenv("MMNER_PSEUDONYM_SALT", "from-env")
    assert CorpusStore(tmp_path / "s").pseudonym_salt() == "from-env"
