"""The filter stage: CLIP scores, resume, selection per language, broken images, CLI, report.

Models are tiny open_clip checkpoints with random weights (tests/tiny_clip.py) written to a temp
folder and loaded by path through the same open_clip call a hub name takes. Correctness is checked
against open_clip computed directly, so it does not depend on model quality.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")
skdata = pytest.importorskip("skimage.data")

from PIL import Image as PILImage  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from mmner_data.config import RecipeError  # noqa: E402
from mmner_data.filter.model import load_scorer, resolve_model  # noqa: E402
from mmner_data.filter.pipeline import run_filter  # noqa: E402
from mmner_data.filter.scoring import pending_pairs, score_pairs  # noqa: E402
from mmner_data.filter.select import (  # noqa: E402
    ScoredPost,
    SelectionError,
    apply_selection,
    select,
)
from mmner_data.filter.settings import (  # noqa: E402
    build_filter_settings,
    parse_lang_values,
)
from mmner_data.schema import Image  # noqa: E402
from mmner_data.store import CorpusStore  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from tiny_clip import TINY_NAME, write_tiny_clip, write_tiny_xlmr_clip  # noqa: E402

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "immunohistochemistry"]
TEXTS = {
    "en": "An astronaut in a white suit poses with the flag",
    "fr": "Une tasse de café sur une soucoupe, le matin",
    "de": "Eine Katze schaut neugierig in die Kamera",
    "es": "El cohete despega de la plataforma de lanzamiento",
}
LANGS = ["en", "fr", "de", "es"]


# -- fixtures ---------------------------------------------------------------------------------
def _jpeg(name: str) -> bytes:
    arr = getattr(skdata, name)()
    buf = io.BytesIO()
    PILImage.fromarray(arr).convert("RGB").save(buf, "JPEG", quality=85)
    return buf.getvalue()


_PHOTO_BYTES: dict[str, bytes] = {}


def _photo(name: str) -> bytes:
    if name not in _PHOTO_BYTES:
        _PHOTO_BYTES[name] = _jpeg(name)
    return _PHOTO_BYTES[name]


def _put_image(st: CorpusStore, conn, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    st.put_image(
        conn,
        Image(sha256=sha, width=1, height=1, format="JPEG", n_bytes=len(data), phash="0" * 16),
        data,
    )
    return sha


def add_post(
    st: CorpusStore,
    pid: str,
    lang: str,
    text: str,
    image: bytes | None,
    status: str = "kept",
) -> None:
    """Insert a post (and its image) through CorpusStore."""
    with st.transaction() as conn:
        seq = conn.execute("SELECT COUNT(*) FROM posts").fetchone()[0]
        conn.execute(
            "INSERT INTO posts(post_id, source, source_id, text, text_key, lang, status, "
            "ingest_seq) VALUES(?, 't', ?, ?, ?, ?, ?, ?)",
            (f"t:{pid}", pid, text, text.lower(), lang, status, seq),
        )
        if image is not None:
            sha = _put_image(st, conn, image)
            conn.execute(
                "INSERT INTO post_images(post_id, position, sha256, status) VALUES(?, 0, ?, 'ok')",
                (f"t:{pid}", sha),
            )


def build_store(root: Path, n: int = 12, broken: dict[int, bytes] | None = None) -> CorpusStore:
    """``n`` kept posts over four languages with real photos; ``broken`` replaces some images."""
    st = CorpusStore(root)
    for i in range(n):
        lang = LANGS[i % 4]
        image = (broken or {}).get(i, _photo(PHOTOS[i % len(PHOTOS)]))
        add_post(st, f"{i:03d}", lang, f"{TEXTS[lang]} #{i}", image)
    return st


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_tiny_clip(tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture(scope="module")
def tiny_other(tmp_path_factory) -> Path:
    return write_tiny_clip(tmp_path_factory.mktemp("tiny_other"), seed=1)


@pytest.fixture(scope="module")
def scorer(tiny):
    return load_scorer(resolve_model(str(tiny), None), device="cpu")


def _settings(model: Path, **kw):
    return build_filter_settings({"model": str(model), "device": "cpu", "num_workers": 0, **kw})


def _scores(st: CorpusStore, model_id: str | None = None) -> dict[str, float]:
    sql = "SELECT post_id, score FROM relevance" + (" WHERE model_id=?" if model_id else "")
    return {r[0]: r[1] for r in st.query(sql, (model_id,) if model_id else ())}


def _direct_scores(model_name: str, pretrained: str | None, st: CorpusStore) -> dict[str, float]:
    """Cosine of normalised embeddings computed with open_clip alone, one pair at a time."""
    model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained)
    tokenizer = open_clip.get_tokenizer(model_name)
    model.eval()
    out = {}
    rows = st.query(
        "SELECT p.post_id, p.text, i.path FROM posts p JOIN post_images pi USING(post_id) "
        "JOIN images i ON i.sha256=pi.sha256"
    )
    with torch.no_grad():
        for r in rows:
            img = preprocess(PILImage.open(st.root / r["path"]).convert("RGB")).unsqueeze(0)
            ie = model.encode_image(img)
            te = model.encode_text(tokenizer([r["text"]]))
            ie = ie / ie.norm(dim=-1, keepdim=True)
            te = te / te.norm(dim=-1, keepdim=True)
            out[r["post_id"]] = float((ie * te).sum())
    return out


# -- scores are the model's cosine ----------------------------------------------------------------
def test_stored_scores_equal_open_clip_cosine_and_carry_the_model_version(tmp_path, tiny):
    st = build_store(tmp_path / "s", n=8)
    result = run_filter(st, _settings(tiny, batch_size=3), write_report=False)
    weights = tiny / f"{TINY_NAME}.safetensors"
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    model_id = f"{TINY_NAME}@{sha[:16]}"
    assert result.scoring.model_id == model_id
    assert result.scoring.scored == 8 and result.scoring.batches == 3
    stored = _scores(st, model_id)
    open_clip.add_model_config(tiny / f"{TINY_NAME}.json")
    direct = _direct_scores(TINY_NAME, str(weights), st)
    assert stored.keys() == direct.keys() and len(stored) == 8
    for pid, score in direct.items():
        assert stored[pid] == pytest.approx(score, abs=1e-5)
    assert len({round(s, 6) for s in stored.values()}) > 1  # not a constant
    row = st.query("SELECT * FROM relevance_models WHERE model_id=?", (model_id,))[0]
    assert row["checkpoint_sha256"] == sha and row["name"] == TINY_NAME
    assert row["library_version"] == f"open_clip {open_clip.__version__}"


def test_batch_size_and_worker_count_do_not_change_scores(tmp_path, scorer):
    results = []
    for i, (bs, workers) in enumerate([(1, 0), (5, 2), (16, 0)]):
        st = build_store(tmp_path / f"s{i}", n=10)
        summary = score_pairs(
            st, scorer, pending_pairs(st, scorer.spec.model_id), batch_size=bs, num_workers=workers
        )
        assert summary.scored == 10 and summary.batches == math.ceil(10 / bs)
        results.append(_scores(st))
    for other in results[1:]:
        assert other.keys() == results[0].keys()
        for pid, score in results[0].items():
            assert other[pid] == pytest.approx(score, abs=1e-5)


# -- resume ------------------------------------------------------------------------------------------
def test_second_run_scores_nothing_new_model_does(tmp_path, tiny, tiny_other):
    st = build_store(tmp_path / "s", n=6)
    first = run_filter(st, _settings(tiny, batch_size=4), write_report=False)
    assert first.scoring.scored == 6
    stamps = {r[0]: r[1] for r in st.query("SELECT post_id, scored_at FROM relevance")}
    again = run_filter(st, _settings(tiny, batch_size=4), write_report=False)
    assert (again.scoring.pending, again.scoring.scored) == (0, 0)
    assert {r[0]: r[1] for r in st.query("SELECT post_id, scored_at FROM relevance")} == stamps
    other = run_filter(st, _settings(tiny_other, batch_size=4), write_report=False)
    assert other.scoring.scored == 6 and other.scoring.model_id != first.scoring.model_id
    assert st.query("SELECT COUNT(*) FROM relevance")[0][0] == 12
    assert _scores(st, first.scoring.model_id) != _scores(st, other.scoring.model_id)


def test_killed_run_keeps_whole_batches_and_resumes(tmp_path, scorer):
    st = build_store(tmp_path / "s", n=9)
    calls = []

    def kill_after_two_batches(task: str, advance: int, total: int | None) -> None:
        calls.append(advance)
        if len(calls) == 2:
            raise KeyboardInterrupt

    pairs = pending_pairs(st, scorer.spec.model_id)
    with pytest.raises(KeyboardInterrupt):
        score_pairs(st, scorer, pairs, batch_size=4, progress=kill_after_two_batches)
    assert len(_scores(st)) == 8  # two whole batches committed, nothing of the third
    assert [p.post_id for p in pending_pairs(st, scorer.spec.model_id)] == ["t:008"]
    resumed = score_pairs(st, scorer, pending_pairs(st, scorer.spec.model_id), batch_size=4)
    assert resumed.scored == 1 and len(_scores(st)) == 9


# -- selection --------------------------------------------------------------------------------------
TABLE = [
    ScoredPost("en1", "en", 0.40),
    ScoredPost("en2", "en", 0.30),
    ScoredPost("en3", "en", 0.20),
    ScoredPost("en4", "en", 0.10),
    ScoredPost("fr1", "fr", 0.26),
    ScoredPost("fr2", "fr", 0.24),
    ScoredPost("fr3", "fr", 0.05),
]


def _kept(decisions) -> set[str]:
    return {pid for pid, d in decisions.items() if d.kept}


def test_threshold_per_language_and_for_all():
    per_lang = select(TABLE, threshold=parse_lang_values("en=0.28,fr=0.25", name="t"))
    assert _kept(per_lang) == {"en1", "en2", "fr1"}
    assert per_lang["en3"].threshold == 0.28 and per_lang["fr2"].threshold == 0.25
    assert _kept(select(TABLE, threshold=parse_lang_values("0.25", name="t"))) == {
        "en1",
        "en2",
        "fr1",
    }
    mixed = parse_lang_values("0.2,fr=0.25", name="t")  # 0.2 for every language but French
    assert _kept(select(TABLE, threshold=mixed)) == {"en1", "en2", "en3", "fr1"}
    assert _kept(select(TABLE)) == {p.post_id for p in TABLE}  # no rule: everything kept


def test_keep_top_fraction_per_language_and_with_threshold():
    top = select(TABLE, keep_top={"*": 0.5})
    assert _kept(top) == {"en1", "en2", "fr1", "fr2"}  # ceil(0.5·4)=2 of en, ceil(0.5·3)=2 of fr
    assert top["en4"].threshold == 0.30 and top["fr3"].threshold == 0.24
    assert _kept(select(TABLE, keep_top={"en": 0.25, "fr": 1.0})) == {"en1", "fr1", "fr2", "fr3"}
    both = select(TABLE, threshold={"*": 0.25}, keep_top={"*": 0.75})
    assert _kept(both) == {"en1", "en2", "fr1"}  # top 3 of en ∩ ≥0.25; top 3 of fr ∩ ≥0.25
    ties = [ScoredPost(f"p{i}", "en", s) for i, s in enumerate([0.5, 0.3, 0.3, 0.1])]
    assert _kept(select(ties, keep_top={"*": 0.5})) == {"p0", "p1", "p2"}  # ties at the cutoff


def test_selection_from_stored_scores_flags_no_image_and_reselects(tmp_path):
    st = CorpusStore(tmp_path / "s")
    photo = _photo("camera")
    for p in TABLE:
        add_post(st, p.post_id, p.lang, f"text {p.post_id}", photo)
    add_post(st, "en_noimg", "en", "a post without an image", None)
    add_post(st, "dropped_by_collect", "en", "a duplicate", photo, status="dropped")
    with st.transaction() as conn:
        conn.execute(
            "INSERT INTO relevance_models(model_id, backend, name, created_at) "
            "VALUES('m', 'open_clip', 'm', 'now')"
        )
        for p in TABLE:
            conn.execute(
                "INSERT INTO relevance VALUES(?, 'm', 'x', ?, 'now')", (f"t:{p.post_id}", p.score)
            )
    summary = apply_selection(st, "m", threshold={"en": 0.28, "fr": 0.25})
    rows = {r["post_id"]: r for r in st.query("SELECT * FROM relevance_selection")}
    assert set(rows) == {f"t:{p.post_id}" for p in TABLE} | {"t:en_noimg"}
    assert {k for k, r in rows.items() if r["kept"]} == {"t:en1", "t:en2", "t:fr1", "t:en_noimg"}
    assert rows["t:en_noimg"]["status"] == "no_image" and rows["t:en_noimg"]["score"] is None
    assert rows["t:en3"]["status"] == "dropped_low_relevance" and rows["t:en3"]["threshold"] == 0.28
    drops = {r[0] for r in st.query("SELECT item_id FROM drops WHERE reason='low_relevance'")}
    assert drops == {"t:en3", "t:en4", "t:fr2", "t:fr3"}
    c = summary.to_dict()
    assert c["languages"]["en"]["kept"] == 2 and c["languages"]["en"]["no_image"] == 1
    assert c["total"]["kept_total"] == 4 and c["total"]["dropped_low_relevance"] == 4
    # a new rule from the same scores: nothing rescored, the old drops are gone
    apply_selection(st, "m", keep_top={"*": 1.0})
    assert st.query("SELECT COUNT(*) FROM relevance_selection WHERE kept=0")[0][0] == 0
    assert st.query("SELECT COUNT(*) FROM drops WHERE stage='filter'")[0][0] == 0
    # a model with missing scores cannot be selected on
    with pytest.raises(SelectionError, match="no score"):
        apply_selection(st, "unscored-model")


# -- broken images -------------------------------------------------------------------------------
def test_broken_image_in_a_batch_is_recorded_and_skipped(tmp_path, tiny):
    truncated = _photo("coffee")[:400]
    not_an_image = b"<html>not found</html>"
    st = build_store(tmp_path / "s", n=8, broken={2: truncated, 5: not_an_image})
    result = run_filter(st, _settings(tiny, batch_size=8), write_report=False)
    assert result.scoring.batches == 1 and result.scoring.scored == 6
    assert sorted(result.scoring.unreadable_items) == ["t:002", "t:005"]
    drops = st.query("SELECT item_id, reason, detail FROM drops WHERE stage='filter'")
    assert {(r[0], r[1]) for r in drops} == {
        ("t:002", "image_unreadable"),
        ("t:005", "image_unreadable"),
    }
    assert all(r[2] for r in drops)  # the decoder's error is kept
    status = {
        r[0]: (r[1], r[2])
        for r in st.query("SELECT post_id, status, kept FROM relevance_selection")
    }
    assert status["t:002"] == ("image_unreadable", 0) and status["t:000"][1] == 1
    again = run_filter(st, _settings(tiny, batch_size=8), write_report=False)
    assert again.scoring.scored == 0 and again.scoring.unreadable == 2


# -- command line and report ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def cli_app():
    from mmner_data.cli import app

    return app


def _recipe(tmp_path: Path, **filter_section) -> Path:
    import yaml

    path = tmp_path / "recipe.yaml"
    raw = {
        "name": "t",
        "store": str(tmp_path / "store"),
        "sources": [{"name": "f", "type": "jsonl", "path": "x.jsonl"}],
        "filter": filter_section,
    }
    path.write_text(yaml.safe_dump(raw))
    return path


def test_cli_scores_selects_reports_and_reselects_without_model(tmp_path, tiny, cli_app):
    st = build_store(tmp_path / "store", n=12)
    add_post(st, "noimg", "fr", "Un message sans image", None)
    st.close()
    recipe = _recipe(tmp_path, model=str(tiny), device="cpu", num_workers=0, contact_sheet_n=4)
    runner = CliRunner()
    res = runner.invoke(
        cli_app,
        [
            *("filter", "-r", str(recipe), "--threshold", "en=-1,fr=1"),
            *("--batch-size", "5", "--no-progress", "--json"),
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    sel = data["selection"]["languages"]
    assert data["scoring"]["scored"] == 12
    assert (sel["en"]["kept"], sel["en"]["dropped_low_relevance"]) == (3, 0)
    assert (sel["fr"]["kept"], sel["fr"]["dropped_low_relevance"], sel["fr"]["no_image"]) == (
        0,
        3,
        1,
    )
    assert sel["de"]["threshold"] is None and sel["de"]["kept"] == 3  # no rule for German
    reports = tmp_path / "store" / "reports"
    report = json.loads((reports / "filter_report.json").read_text())
    assert report["total"]["kept_total"] == 3 + 3 + 3 + 1
    assert set(report["score_stats"]) == set(LANGS)
    for lang in LANGS:
        with PILImage.open(reports / f"filter_hist_{lang}.png") as im:
            assert im.format == "PNG" and im.width > 300
    with PILImage.open(reports / "filter_contact_sheet.png") as im:
        assert im.size[0] == 4 * 200 and im.size[1] > 2 * 160
    md = (reports / "filter_report.md").read_text()
    assert "filter_hist_en.png" in md and "| fr | 4 | 3 | 0 | 3 | 1 | 0 | 1.0000 |" in md

    # a new rule from the stored scores: nothing is scored again
    res = runner.invoke(
        cli_app,
        [
            *("filter", "-r", str(recipe), "--select-only"),
            *("--keep-top", "0.34", "--no-progress", "--json"),
        ],
    )
    assert res.exit_code == 0, res.output
    sel = json.loads(res.stdout)["selection"]["languages"]
    assert [sel[lang]["kept"] for lang in LANGS] == [2, 2, 2, 2]  # ceil(0.34·3) = 2
    assert json.loads(res.stdout)["scoring"]["scored"] == 0


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_cli_user_errors_are_one_line_exit_1(tmp_path, tiny, cli_app):
    runner = CliRunner()
    bad_key = _recipe(tmp_path, model=str(tiny), treshold=0.3)
    res = runner.invoke(cli_app, ["filter", "-r", str(bad_key), "--no-progress"])
    assert res.exit_code == 1 and "filter.treshold: unknown key" in _flat(res.output)
    ok = _recipe(tmp_path, model=str(tiny))
    res = runner.invoke(cli_app, ["filter", "-r", str(ok), "--threshold", "en=high"])
    assert res.exit_code == 1
    assert "filter.threshold: 'high' is not a number" in _flat(res.output)
    res = runner.invoke(cli_app, ["filter", "-r", str(ok), "--model", str(tmp_path / "nope")])
    assert res.exit_code == 1 and "needs --pretrained" in _flat(res.output)


def test_a_v1_store_gains_the_relevance_tables_and_keeps_its_rows(tmp_path):
    import sqlite3

    from mmner_data.store import DB_NAME, MIGRATIONS, SCHEMA_VERSION

    (tmp_path / "s").mkdir()
    conn = sqlite3.connect(tmp_path / "s" / DB_NAME)
    conn.executescript(MIGRATIONS[0] + "; PRAGMA user_version=1;")
    conn.execute(
        "INSERT INTO posts(post_id, source, source_id, text, text_key, status, ingest_seq) "
        "VALUES('a:1', 'a', '1', 'hi', 'hi', 'kept', 0)"
    )
    conn.commit()
    conn.close()
    with CorpusStore(tmp_path / "s") as st:
        assert st.schema_version == SCHEMA_VERSION >= 2
        assert st.query("SELECT post_id FROM posts")[0][0] == "a:1"
        for table in ("relevance_models", "relevance", "relevance_selection"):
            assert st.query(f"SELECT COUNT(*) FROM {table}")[0][0] == 0


def test_settings_validation():
    s = build_filter_settings({"threshold": {"EN": 0.3}, "keep_top": 0.7}, {"batch_size": 8})
    assert s.threshold == {"en": 0.3} and s.keep_top == {"*": 0.7} and s.batch_size == 8
    assert s.rule() == "threshold+keep_top"
    with pytest.raises(RecipeError, match=r"filter\.keep_top"):
        build_filter_settings({"keep_top": 1.5})
    with pytest.raises(RecipeError, match=r"filter\.threshold"):
        build_filter_settings({}, {"threshold": "english=0.3"})
    assert resolve_model(None, None).model_id == "xlm-roberta-base-ViT-B-32:laion5b_s13b_b90k"


# -- the multilingual (XLM-R text tower) path, offline ------------------------------------------------
def test_tiny_xlmr_local_dir_scores_equal_open_clip(tmp_path):
    pytest.importorskip("transformers")
    folder = write_tiny_xlmr_clip(tmp_path / "xlmr", seed=0)
    st = build_store(tmp_path / "s", n=6)
    result = run_filter(st, _settings(folder, batch_size=4), write_report=False)
    assert result.scoring.scored == 6 and result.scoring.model_id.startswith("xlmr@")
    direct = _direct_scores(f"local-dir:{folder}", None, st)
    stored = _scores(st)
    for pid, score in direct.items():
        assert stored[pid] == pytest.approx(score, abs=1e-5)


# -- a real pretrained model, when one is available locally -------------------------------------------
REAL = os.environ.get("MMNER_TEST_CLIP_MODEL")  # an open_clip name, hf-hub:…, or a folder
REAL_PRETRAINED = os.environ.get("MMNER_TEST_CLIP_PRETRAINED")  # a tag or weights file


@pytest.mark.skipif(
    not REAL,
    reason="no pretrained image–text model ships in a PyPI package; set MMNER_TEST_CLIP_MODEL",
)
def test_real_model_scores_matched_pairs_above_mismatched(tmp_path):  # pragma: no cover
    st = CorpusStore(tmp_path / "s")
    captions = {
        "astronaut": "a photo of an astronaut in a space suit",
        "coffee": "une tasse de café",
        "chelsea": "eine Katze",
        "rocket": "un cohete despegando",
    }
    names = list(captions)
    for i, name in enumerate(names):
        add_post(st, f"m{i}", "en", captions[name], _photo(name))
        add_post(st, f"x{i}", "en", captions[names[(i + 1) % 4]], _photo(name))
    settings = build_filter_settings({"model": REAL, "pretrained": REAL_PRETRAINED})
    run_filter(st, settings, write_report=False)
    s = _scores(st)
    for i in range(4):
        assert s[f"t:m{i}"] > s[f"t:x{i}"]
