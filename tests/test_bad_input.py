"""Bad inputs a user can cause end in one clear line and exit code 1, with the store unchanged.

Store paths that are files, folders that cannot be created, missing or garbage stores, read-only
stores, Label Studio exports of the wrong shape or nested absurdly deep, report folders under a
file: each is a :class:`~mmner_data.errors.MmnerError` at its source, so the CLI prints it as one
line (and a real bug still shows its traceback).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from mmner_data.errors import MmnerError
from mmner_data.store import CorpusStore, OutputError, StoreError, atomic_write_text, ensure_dir

REPO = Path(__file__).resolve().parents[1]
SMALL_RECIPE = "name: s\nsources:\n  - {name: a, type: jsonl, path: a.jsonl}\n"


def mmner(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MMNER_PSEUDONYM_SALT": "test-salt", "COLUMNS": "250"}
    code = "import sys; from mmner_data.cli import run; sys.argv[0] = 'mmner-data'; run()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=cwd,
    )


def one_error_line(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 1, no traceback, and the last stderr line is the one error line (after progress)."""
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip("\n").split("\n")[-1]
    assert last.startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in last, last
    return last


def _digest(folder: Path) -> str:
    """Every row of every table but ``runs`` (a failed run is logged), and every image file."""
    h = hashlib.sha256()
    conn = sqlite3.connect(f"{(folder / 'corpus.sqlite').as_uri()}?mode=ro", uri=True)
    for line in sorted(conn.iterdump()):
        if '"runs"' not in line and "sqlite_sequence" not in line:
            h.update(line.encode())
    conn.close()
    for p in sorted((folder / "images").rglob("*")) if (folder / "images").exists() else []:
        h.update(str(p).encode() + (p.read_bytes() if p.is_file() else b""))
    return h.hexdigest()


# -- the store, as a library --------------------------------------------------------------------


def test_store_paths_that_are_files_or_under_files(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        CorpusStore(afile)
    with pytest.raises(StoreError, match="part of its path is a file"):
        CorpusStore(afile / "store")
    assert afile.read_text() == "x"


def test_missing_store_is_not_created_when_it_must_exist(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"no corpus store .*run `mmner-data collect`"):
        CorpusStore(tmp_path / "nope", create=False)
    assert not (tmp_path / "nope").exists()


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "corpus.sqlite").write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(StoreError, match="cannot open the store"):
        CorpusStore(tmp_path / "s")


def test_read_only_store_reads_and_refuses_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with CorpusStore(tmp_path / "s") as st, st.transaction() as conn:
        conn.execute("INSERT INTO meta(key, value) VALUES('k', 'v')")
    before = _digest(tmp_path / "s")
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if mode == os.W_OK else real_access(p, mode)
    )
    with CorpusStore(tmp_path / "s") as st:
        assert st.read_only and st.get_meta("k") == "v"  # reading works (stats, agreement)
        with pytest.raises(StoreError, match="read-only"), st.transaction() as conn:
            conn.execute("INSERT INTO meta(key, value) VALUES('k2', 'v')")
        from mmner_data.collect.pipeline import collect_lock

        with pytest.raises(StoreError, match=r"read-only.*collect"), collect_lock(st):
            pass
    assert _digest(tmp_path / "s") == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_store_for_real(tmp_path: Path) -> None:  # pragma: no cover - non-root CI
    CorpusStore(tmp_path / "s").close()
    for p in [tmp_path / "s", *(tmp_path / "s").iterdir()]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        with CorpusStore(tmp_path / "s") as st, pytest.raises(StoreError), st.transaction():
            pass
        with pytest.raises(StoreError):
            CorpusStore(tmp_path / "s" / "sub")
    finally:
        for p in [tmp_path / "s", *(tmp_path / "s").iterdir()]:
            p.chmod(0o755 if p.is_dir() else 0o644)


def test_output_folders_under_a_file(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(OutputError, match="part of its path is a file"):
        ensure_dir(afile / "reports")
    with pytest.raises(OutputError):
        atomic_write_text(afile / "reports" / "r.json", "{}")
    assert issubclass(OutputError, MmnerError) and issubclass(StoreError, MmnerError)


def test_a_real_bug_is_not_turned_into_a_store_error(tmp_path: Path) -> None:
    with (
        CorpusStore(tmp_path / "s") as st,
        pytest.raises(sqlite3.OperationalError, match="no such"),
        st.transaction() as conn,
    ):
        conn.execute("INSERT INTO nowhere VALUES(1)")


# -- the CLI: one line, exit 1, nothing changed ----------------------------------------------------


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny") / "store"
    CorpusStore(root).close()
    return root


def test_cli_store_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(SMALL_RECIPE)
    afile = tmp_path / "afile"
    afile.write_text("x")
    for cmd in ("collect", "dedup", "export"):
        one_error_line(mmner(cmd, "-r", "r.yaml", "--store", str(afile), cwd=tmp_path), "is a file")
    assert afile.read_text() == "x"


def test_cli_export_of_a_missing_store_creates_nothing(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(SMALL_RECIPE)
    proc = mmner("export", "-r", "r.yaml", "--store", str(tmp_path / "missing"), cwd=tmp_path)
    one_error_line(proc, "no corpus store")
    assert not (tmp_path / "missing").exists()


def test_cli_agreement_bad_exports_and_out_under_a_file(tmp_path: Path) -> None:
    result5 = [
        {"data": {"text": "a b"}, "annotations": [{"id": 1, "completed_by": 1, "result": 5}]}
    ]
    (tmp_path / "r5.json").write_text(json.dumps(result5))
    (tmp_path / "deep.json").write_text("[" * 200_000 + "]" * 200_000)
    one_error_line(mmner("agreement", "--from-export", "r5.json", cwd=tmp_path), "'result'")
    one_error_line(mmner("agreement", "--from-export", "deep.json", cwd=tmp_path), "nested")
    good = [
        {
            "data": {"text": "Macron in Paris", "post_id": "p"},
            "annotations": [
                {"id": i, "completed_by": i, "result": [], "updated_at": "2026-01-01T00:00:00Z"}
                for i in (1, 2)
            ],
        }
    ]
    (tmp_path / "good.json").write_text(json.dumps(good))
    (tmp_path / "afile").write_text("x")
    proc = mmner("agreement", "--from-export", "good.json", "--out", "afile/reports", cwd=tmp_path)
    one_error_line(proc, "part of its path is a file")


def test_cli_store_commands_on_a_store_under_a_file(tmp_path: Path, tiny_store: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    (tmp_path / "r.yaml").write_text(SMALL_RECIPE)
    before = _digest(store)
    (tmp_path / "afile").write_text("x")
    proc = mmner(
        "agreement", "-r", "r.yaml", "--store", str(store), "--out", "afile/x", cwd=tmp_path
    )
    one_error_line(proc)
    assert _digest(store) == before
