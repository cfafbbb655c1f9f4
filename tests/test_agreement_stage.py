"""The ``agreement`` stage end to end: store / Label Studio export → metrics, reports, gold.

Annotations are simulated on the collected sample: annotator ``ls:1`` copies the sample's gold
entities (``mmner_data/sample/data/posts.jsonl``), ``ls:2`` and ``ls:3`` copy them with
deliberate disagreements (a changed type, a dropped entity, a shrunk boundary); ``ls:3``
annotates every other post only. The same annotations are written as store rows and as a Label
Studio JSON export, and both must give the same report.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mmner_data.agreement.pipeline import review_queue, run_agreement, run_on_export
from mmner_data.agreement.report import render_markdown
from mmner_data.agreement.settings import AgreementSettings
from mmner_data.cli import app
from mmner_data.labels import LabelError, write_review_gold
from mmner_data.store import CorpusStore
from mmner_data.text.spans import SpanError

SAMPLE_POSTS = Path(__file__).resolve().parents[1] / "mmner_data/sample/data/posts.jsonl"
PROJECT = "http://ls.test#7"
T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
TYPES = ("PER", "ORG", "LOC", "MISC")
runner = CliRunner()

Ann = dict[str, Any]  # {"annotator", "status", "spans": [{start, end, label}], "t": minutes}


# --- building annotations ------------------------------------------------------------------


def gold_by_text() -> dict[str, list[dict[str, Any]]]:
    out = {}
    for line in SAMPLE_POSTS.read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        out[d["text"]] = [{k: e[k] for k in ("start", "end", "label")} for e in d["entities"]]
    return out


def kept_posts(root: Path) -> list[dict[str, Any]]:
    with CorpusStore(root) as st:
        rows = st.query(
            "SELECT post_id, text, lang FROM posts WHERE status='kept' ORDER BY post_id"
        )
    return [dict(r) for r in rows]


def shrink(text: str, span: dict[str, Any]) -> dict[str, Any]:
    """The span's last word only (a boundary disagreement), or the span itself."""
    cut = text.rfind(" ", span["start"], span["end"])
    return {**span, "start": cut + 1} if cut > span["start"] else span


def simulate(posts: list[dict[str, Any]]) -> dict[str, list[Ann]]:
    """Three annotators with deliberate disagreements, per post id."""
    gold = gold_by_text()
    cycle = dict(zip(TYPES, TYPES[1:] + TYPES[:1], strict=True))
    out: dict[str, list[Ann]] = {}
    for i, p in enumerate(posts):
        g = gold[p["text"]]
        b = [dict(s) for s in g]
        if i % 3 == 1:
            b[0]["label"] = cycle[b[0]["label"]]
        elif i % 3 == 2:
            b = b[:-1]
        if i % 5 == 0:
            b[0] = shrink(p["text"], b[0])
        anns = [
            {"annotator": "ls:1", "status": "submitted", "spans": g, "t": i},
            {"annotator": "ls:2", "status": "submitted", "spans": b, "t": i + 1},
        ]
        if i % 2 == 0:
            c = g[1:] if i % 4 == 2 else g
            anns.append({"annotator": "ls:3", "status": "submitted", "spans": c, "t": i + 2})
        out[p["post_id"]] = anns
    return out


def insert_store(root: Path, anns_by_post: dict[str, list[Ann]]) -> None:
    """``annotations`` rows as ``annotate pull`` writes them (one per annotator × post)."""
    now = T0.isoformat()
    with CorpusStore(root) as st, st.transaction() as conn:
        conn.execute(
            "INSERT OR IGNORE INTO ls_projects(project_key, url, project_id, title, kind, "
            "created_at) VALUES(?, 'http://ls.test', 7, 'test', 'annotate', ?)",
            (PROJECT, now),
        )
        for task_id, (post_id, anns) in enumerate(sorted(anns_by_post.items()), start=1):
            conn.execute(
                "INSERT OR IGNORE INTO ls_tasks(project_key, post_id, task_id, pushed_at) "
                "VALUES(?, ?, ?, ?)",
                (PROJECT, post_id, task_id, now),
            )
            for k, a in enumerate(anns):
                ts = (T0 + timedelta(minutes=a["t"])).isoformat()
                conn.execute(
                    "INSERT INTO annotations(annotation_key, post_id, annotator, origin, "
                    "project_key, task_id, status, spans_json, lead_time, created_at, "
                    "updated_at, pulled_at) VALUES(?, ?, ?, 'label-studio', ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        f"{PROJECT}#{task_id * 10 + k}",
                        post_id,
                        a["annotator"],
                        PROJECT,
                        task_id,
                        a["status"],
                        json.dumps(a["spans"]),
                        12.5,
                        ts,
                        ts,
                        now,
                    ),
                )


def export_json(posts: list[dict[str, Any]], anns_by_post: dict[str, list[Ann]]) -> list[Any]:
    """The same annotations as Label Studio's JSON export."""
    tasks = []
    for task_id, p in enumerate(posts, start=1):
        if p["post_id"] not in anns_by_post:
            continue
        annotations = []
        for k, a in enumerate(anns_by_post[p["post_id"]]):
            uid = int(a["annotator"].split(":")[1])
            ts = (T0 + timedelta(minutes=a["t"])).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            annotations.append(
                {
                    "id": task_id * 10 + k,
                    # LS gives an int, or an object with the e-mail: neither may leak
                    "completed_by": {"id": uid, "email": f"user{uid}@example.org"}
                    if uid == 2
                    else uid,
                    "result": [
                        {
                            "id": f"r{j}",
                            "from_name": "label",
                            "to_name": "text",
                            "type": "labels",
                            "value": {
                                "start": s["start"],
                                "end": s["end"],
                                "text": p["text"][s["start"] : s["end"]],
                                "labels": [s["label"]],
                            },
                        }
                        for j, s in enumerate(a["spans"])
                    ],
                    "was_cancelled": a["status"] != "submitted",
                    "lead_time": 12.5,
                    "created_at": ts,
                    "updated_at": ts,
                }
            )
        tasks.append(
            {
                "id": task_id,
                "data": {"text": p["text"], "post_id": p["post_id"], "lang": p["lang"]},
                "annotations": annotations,
                "predictions": [],
            }
        )
    return tasks


def adjudication(root: Path) -> dict[str, sqlite3.Row]:
    with CorpusStore(root) as st:
        return {r["post_id"]: r for r in st.query("SELECT * FROM adjudication")}


def cli(*args: str) -> Any:
    return runner.invoke(app, ["agreement", "--no-progress", *args])


@pytest.fixture
def posts(sample_store: Path) -> list[dict[str, Any]]:
    return kept_posts(sample_store)


@pytest.fixture
def simulated(sample_store: Path, posts: list[dict[str, Any]]) -> dict[str, list[Ann]]:
    anns = simulate(posts)
    insert_store(sample_store, anns)
    return anns


def en001(posts: list[dict[str, Any]]) -> dict[str, Any]:
    return next(p for p in posts if p["text"].startswith("Throwback Thursday 🚀 Eileen"))


# --- a hand-checked case -------------------------------------------------------------------


def test_hand_checked_two_annotators(sample_store: Path, posts: list[dict[str, Any]]) -> None:
    """en-001: gold PER "Eileen Collins", MISC "Space Shuttle", ORG "NASA" (30 tokens).

    ls:2 agrees on PER, marks only "Shuttle" as MISC and NASA as LOC. Exact span F1 = 2·1/6,
    partial = 2·2/6. Type-κ over the 5 tokens someone tagged: ls:1 PER PER MISC MISC ORG,
    ls:2 PER PER O MISC LOC → p_o = 3/5, p_e = (2·2 + 2·1)/25 → κ = 9/19.
    """
    p = en001(posts)
    gold = gold_by_text()[p["text"]]
    per, misc, org = gold
    assert p["text"][misc["start"] : misc["end"]] == "Space Shuttle"
    other = [per, shrink(p["text"], misc), {**org, "label": "LOC"}]
    anns = [
        {"annotator": "ls:1", "status": "submitted", "spans": gold, "t": 0},
        {"annotator": "ls:2", "status": "submitted", "spans": other, "t": 1},
    ]
    insert_store(sample_store, {p["post_id"]: anns})
    res = cli("--store", str(sample_store), "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    o = summary["overall"]
    assert (o["n_items"], o["n_annotators"], o["n_tokens"]) == (1, 2, 30)
    assert o["span_f1_exact"] == pytest.approx(1 / 3, abs=1e-6)
    assert o["span_f1_partial"] == pytest.approx(2 / 3, abs=1e-6)
    assert o["cohen_kappa_excl_all_o"] == pytest.approx(9 / 19, abs=1e-6)
    n = 30  # all tokens: 28 agreed; marginals PER 2/2, MISC 2/1, ORG 1/0, LOC 0/1, O 25/26
    p_o, p_e = (n - 2) / n, (2 * 2 + 2 * 1 + 25 * 26) / n**2
    assert o["cohen_kappa_all_tokens"] == pytest.approx((p_o - p_e) / (1 - p_e), abs=1e-6)
    assert set(summary["by_lang"]) == {"en"}
    # adjudication: PER 2/2 gold; MISC and ORG/LOC split 1–1 → review (tie), PER kept
    row = adjudication(sample_store)[p["post_id"]]
    assert row["status"] == "review" and row["method"] == "majority"
    assert row["reason"].count("tie:") == 2
    assert json.loads(row["spans_json"]) == [per]
    prov = json.loads(row["provenance_json"])
    assert prov["annotators"] == ["ls:1", "ls:2"]
    assert set(prov["annotation_keys"].values()) == {f"{PROJECT}#10", f"{PROJECT}#11"}
    decisions = {(v["label"], v["start"]): (v["decision"], v["voters"]) for v in prov["votes"]}
    assert decisions[("PER", per["start"])] == ("gold", ["ls:1", "ls:2"])
    assert decisions[("LOC", org["start"])] == ("review", ["ls:2"])
    # a third annotator who agrees with ls:1 turns both ties into 2/3 majorities
    third = [{"annotator": "ls:3", "status": "submitted", "spans": gold, "t": 2}]
    with CorpusStore(sample_store) as st, st.transaction() as conn:
        conn.execute(
            "INSERT INTO annotations(annotation_key, post_id, annotator, origin, status, "
            "spans_json, updated_at, pulled_at) VALUES('f#3', ?, 'ls:3', 'ls-export', "
            "'submitted', ?, '2026-05-01T09:02:00+00:00', 'now')",
            (p["post_id"], json.dumps(third[0]["spans"])),
        )
    res = cli("--store", str(sample_store), "--json")
    assert res.exit_code == 0, res.output
    row = adjudication(sample_store)[p["post_id"]]
    assert (row["status"], row["method"], row["reason"]) == ("gold", "majority", None)
    assert json.loads(row["spans_json"]) == gold
    assert json.loads(res.stdout)["adjudication"]["written"]["updated"] == 1


# --- store and export agree ----------------------------------------------------------------


def test_store_and_export_give_the_same_numbers(
    sample_store: Path, posts: list[dict[str, Any]], simulated: dict[str, list[Ann]], tmp_path: Path
) -> None:
    export = tmp_path / "project-7-at-2026-05-01.json"
    export.write_text(json.dumps(export_json(posts, simulated)), encoding="utf-8")
    settings = AgreementSettings(review_below=0.5)
    with CorpusStore(sample_store) as st:
        from_store = run_agreement(st, settings)
    from_file = run_on_export(export, settings, tmp_path / "out")
    assert from_store.report.to_dict() == from_file.report.to_dict()
    assert render_markdown(from_store.report) == render_markdown(from_file.report)
    a, b = from_store.to_dict(), from_file.to_dict()
    for key in ("counts", "overall", "by_lang", "adjudication", "warnings", "labels"):
        if key == "adjudication":
            a[key].pop("written")
            a[key].pop("store")  # what the store holds: a file source has none
        assert a[key] == b[key], key
    # the numbers are real: three annotators, every language, disagreements visible
    o = a["overall"]
    assert (o["n_items"], o["n_annotators"]) == (len(posts), 3)
    assert set(a["by_lang"]) == {"en", "fr", "de", "es"}
    assert 0.5 < o["span_f1_exact"] < o["span_f1_partial"] < 1.0
    assert o["cohen_kappa_excl_all_o"] < o["cohen_kappa_all_tokens"] < 1.0
    # the same gold layer, in the store and in adjudication.jsonl
    lines = (tmp_path / "out" / "adjudication.jsonl").read_text(encoding="utf-8").splitlines()
    file_rows = {d["post_id"]: d for d in map(json.loads, lines)}
    table = adjudication(sample_store)
    assert set(file_rows) == set(table) == {p["post_id"] for p in posts}
    for post_id, row in table.items():
        d = file_rows[post_id]
        assert (d["status"], d["method"], d["reason"]) == (
            row["status"],
            row["method"],
            row["reason"],
        )
        assert d["spans"] == json.loads(row["spans_json"])
    # no e-mail from completed_by anywhere in the outputs
    for f in (tmp_path / "out").iterdir():
        if f.suffix in (".json", ".jsonl", ".md"):
            assert "example.org" not in f.read_text(encoding="utf-8")


def test_cli_store_mode_files_filters_and_idempotent_rerun(
    sample_store: Path, posts: list[dict[str, Any]], simulated: dict[str, list[Ann]]
) -> None:
    res = cli("--store", str(sample_store), "--json")
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    reports = sample_store / "reports"
    names = ("agreement.json", "agreement.md", "agreement_heatmap.png", "agreement_confusion.png")
    for name in names:
        assert (reports / name).stat().st_size > 0
        assert str(reports / name) in s["files"]
    assert (reports / "agreement_heatmap.png").read_bytes()[:4] == b"\x89PNG"
    full = json.loads((reports / "agreement.json").read_text(encoding="utf-8"))
    assert full["overall"]["n_items"] == len(posts) and full["run"]["counts"] == s["counts"]
    md = (reports / "agreement.md").read_text(encoding="utf-8")
    for scope in ("overall", "en", "fr", "de", "es"):
        assert f"## Token-level metrics ({scope})" in md
    assert "## Adjudication" in md
    adj = s["adjudication"]
    assert adj["gold"] + adj["review"] == len(posts) == adj["written"]["inserted"]
    assert adj["by_method"].get("unanimous", 0) > 0 and adj["by_method"]["majority"] > 0
    # the review queue holds every review item with its candidates, ready for a review project
    with CorpusStore(sample_store) as st:
        queue = review_queue(st)
        assert len(review_queue(st, langs=["fr"])) < len(queue) == adj["review"]
    by_text = {p["post_id"]: p["text"] for p in posts}
    for q in queue:
        assert q["text"] == by_text[q["post_id"]] and q["reason"]
        assert any(v["decision"] == "review" for v in q["votes"]) or "low_agreement" in q["reason"]
    # idempotent: the same run changes nothing, not even updated_at
    before = {k: tuple(r) for k, r in adjudication(sample_store).items()}
    res = cli("--store", str(sample_store), "--json")
    w = json.loads(res.stdout)["adjudication"]["written"]
    assert (w["inserted"], w["updated"], w["unchanged"]) == (0, 0, len(posts))
    assert {k: tuple(r) for k, r in adjudication(sample_store).items()} == before
    # a human review is never overwritten by a vote
    target = next(k for k, r in before.items() if r[1] == "review")
    with CorpusStore(sample_store) as st:
        gold = write_review_gold(st, target, [], "ls:99", labels=TYPES)
    assert gold == ()
    res = cli("--store", str(sample_store), "--json", "--review-below", "0.9")
    assert json.loads(res.stdout)["adjudication"]["written"]["kept_reviewed"] == 1
    row = adjudication(sample_store)[target]
    assert (row["status"], row["method"]) == ("gold", "reviewed")
    assert json.loads(row["provenance_json"])["reviewer"] == "ls:99"
    # filters: language, three annotators, since
    s = json.loads(cli("--store", str(sample_store), "--json", "--lang", "fr,de").stdout)
    assert set(s["by_lang"]) == {"fr", "de"}
    n_fr_de = sum(p["lang"] in ("fr", "de") for p in posts)
    assert s["overall"]["n_items"] == n_fr_de == s["counts"]["items_selected"]
    s = json.loads(cli("--store", str(sample_store), "--json", "--min-annotators", "3").stdout)
    three = sum(len(a) == 3 for a in simulated.values())
    assert s["overall"]["n_items"] == three and s["overall"]["n_annotators"] == 3
    since = (T0 + timedelta(minutes=len(posts) - 5)).isoformat()
    s = json.loads(cli("--store", str(sample_store), "--json", "--since", since).stdout)
    recent = sum(max(a["t"] for a in anns) >= len(posts) - 5 for anns in simulated.values())
    assert s["counts"]["items_selected"] == recent and s["counts"]["items_filtered_since"] > 0


def test_recipe_section_and_dry_run(
    sample_store: Path, simulated: dict[str, list[Ann]], tmp_path: Path
) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"store: {sample_store}\nsources: [{{name: x, type: jsonl, path: x.jsonl}}]\n"
        "entity_types: [PER, ORG, LOC, MISC]\nagreement: {langs: [es], threshold: 0.6}\n",
        encoding="utf-8",
    )
    res = cli("--recipe", str(recipe), "--json", "--dry-run")
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["dry_run"] and set(s["by_lang"]) == {"es"} and s["settings"]["threshold"] == 0.6
    assert s["files"] == [] and not (sample_store / "reports" / "agreement.json").exists()
    assert adjudication(sample_store) == {}
    recipe.write_text(recipe.read_text().replace("threshold", "treshold"), encoding="utf-8")
    res = cli("--recipe", str(recipe))
    assert res.exit_code == 1 and "agreement.treshold: unknown key" in res.output


# --- edge cases: clear messages, nothing written -------------------------------------------


def _only(posts: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    return posts[:n]


def test_one_annotator_only(sample_store: Path, posts: list[dict[str, Any]]) -> None:
    gold = gold_by_text()
    insert_store(
        sample_store,
        {
            p["post_id"]: [
                {"annotator": "ls:1", "status": "submitted", "spans": gold[p["text"]], "t": 0}
            ]
            for p in _only(posts, 3)
        },
    )
    res = cli("--store", str(sample_store))
    assert res.exit_code == 1
    assert "only one annotator ('ls:1')" in res.output and "nan" not in res.output.lower()
    assert (
        adjudication(sample_store) == {}
        and not (sample_store / "reports" / "agreement.json").exists()
    )


def test_no_overlapping_items(sample_store: Path, posts: list[dict[str, Any]]) -> None:
    gold = gold_by_text()
    anns = {
        p["post_id"]: [
            {
                "annotator": f"ls:{1 + i % 2}",
                "status": "submitted",
                "spans": gold[p["text"]],
                "t": 0,
            }
        ]
        for i, p in enumerate(_only(posts, 4))
    }
    insert_store(sample_store, anns)
    res = cli("--store", str(sample_store))
    assert res.exit_code == 1
    assert "no item was labelled by at least 2 annotators" in res.output


def test_annotator_who_labelled_nothing_and_one_who_marked_nothing(
    sample_store: Path, posts: list[dict[str, Any]], simulated: dict[str, list[Ann]]
) -> None:
    extra = {}
    for i, p in enumerate(_only(posts, 6)):
        extra[p["post_id"]] = [
            {
                "annotator": "ls:8",
                "status": "cancelled" if i % 2 else "skipped",
                "spans": [],
                "t": 0,
            },
            {"annotator": "ls:9", "status": "submitted", "spans": [], "t": 0},
        ]
    with CorpusStore(sample_store) as st, st.transaction() as conn:  # keys must not collide
        for post_id, anns in extra.items():
            for a in anns:
                conn.execute(
                    "INSERT INTO annotations(annotation_key, post_id, annotator, origin, status, "
                    "spans_json, pulled_at) VALUES(?, ?, ?, 'label-studio', ?, '[]', 'now')",
                    (f"x#{post_id}#{a['annotator']}", post_id, a["annotator"], a["status"]),
                )
    res = cli("--store", str(sample_store), "--json")
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert "annotator 'ls:8' labelled nothing and is excluded" in s["warnings"]
    assert "annotator 'ls:9' marked no entity in any item" in s["warnings"]
    assert s["overall"]["n_annotators"] == 4
    assert s["counts"]["annotations_skipped"] == 3 and s["counts"]["annotations_cancelled"] == 3
    text = (sample_store / "reports" / "agreement.json").read_text(encoding="utf-8")
    json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in agreement.json"))


def test_label_outside_the_schema(
    sample_store: Path, posts: list[dict[str, Any]], simulated: dict[str, list[Ann]]
) -> None:
    p = posts[0]
    with CorpusStore(sample_store) as st, st.transaction() as conn:
        conn.execute(
            "UPDATE annotations SET spans_json=? WHERE post_id=? AND annotator='ls:2'",
            (json.dumps([{"start": 0, "end": 5, "label": "PRODUCT"}]), p["post_id"]),
        )
    res = cli("--store", str(sample_store))
    assert res.exit_code == 1
    assert "label 'PRODUCT'" in res.output and p["post_id"] in res.output
    assert "--bad-spans exclude" in res.output and "Traceback" not in res.output
    assert adjudication(sample_store) == {}
    # exclude: the span is dropped, the run goes on, the item waits for a human
    res = cli("--store", str(sample_store), "--json", "--bad-spans", "exclude")
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert (
        s["counts"]["span_problems"] == 1 and s["adjudication"]["review_reasons"]["bad_spans"] == 1
    )
    assert any("PRODUCT" in w for w in s["warnings"])
    row = adjudication(sample_store)[p["post_id"]]
    assert row["status"] == "review" and "bad_spans" in row["reason"]
    assert "PRODUCT" in json.loads(row["provenance_json"])["excluded"][0]
    # adding the type to the schema makes it a real label
    res = cli("--store", str(sample_store), "--json", "--entity-types", "PER,ORG,LOC,MISC,PRODUCT")
    assert res.exit_code == 0, res.output
    assert "PRODUCT" in json.loads(res.stdout)["labels"]


def test_usage_errors(sample_store: Path, tmp_path: Path) -> None:
    res = cli()
    assert res.exit_code == 1 and "give --recipe or --store" in res.output
    res = cli("--from-export", str(tmp_path / "missing.json"))
    assert res.exit_code == 1 and "export file not found" in res.output
    res = cli("--store", str(sample_store))
    assert res.exit_code == 1 and "no submitted annotation" in res.output
    res = cli("--store", str(sample_store), "--since", "yesterday")
    assert res.exit_code == 1 and "agreement.since" in res.output


def test_write_review_gold_validates(sample_store: Path, posts: list[dict[str, Any]]) -> None:
    p = en001(posts)
    with CorpusStore(sample_store) as st:
        with pytest.raises(LabelError, match="not an e-mail"):
            write_review_gold(st, p["post_id"], [], "ann@example.org")
        with pytest.raises(LabelError, match="unknown post"):
            write_review_gold(st, "nope:1", [], "ls:1")
        with pytest.raises(SpanError, match="not one of"):
            write_review_gold(
                st, p["post_id"], [{"start": 21, "end": 35, "label": "X"}], "ls:1", labels=TYPES
            )
        # " Eileen Collin" (leading space, cut word) is trimmed and snapped to "Eileen Collins"
        gold = write_review_gold(
            st, p["post_id"], [{"start": 20, "end": 34, "label": "PER"}], "ls:1"
        )
        assert [(g.start, g.end, g.label) for g in gold] == [(21, 35, "PER")]
        gold = write_review_gold(st, p["post_id"], [], "ls:2")  # a later review wins
    row = adjudication(sample_store)[p["post_id"]]
    prov = json.loads(row["provenance_json"])
    assert json.loads(row["spans_json"]) == [] and prov["reviewer"] == "ls:2"
    assert prov["previous"]["spans"] == [{"start": 21, "end": 35, "label": "PER"}]


def test_single_annotation_items(
    sample_store: Path, posts: list[dict[str, Any]], simulated: dict[str, list[Ann]]
) -> None:
    singles = [pid for pid, anns in simulated.items() if len(anns) == 2][:2]
    with CorpusStore(sample_store) as st, st.transaction() as conn:
        for pid in singles:
            conn.execute("DELETE FROM annotations WHERE post_id=? AND annotator='ls:2'", (pid,))
    s = json.loads(cli("--store", str(sample_store), "--json").stdout)
    assert s["adjudication"]["single_annotation_items_not_adjudicated"] == 2
    assert s["overall"]["n_items"] == len(posts) - 2 and not set(singles) & set(
        adjudication(sample_store)
    )
    s = json.loads(cli("--store", str(sample_store), "--json", "--accept-single").stdout)
    assert (
        s["adjudication"]["by_method"]["single"] == 2
        and s["adjudication"]["written"]["inserted"] == 2
    )
    gold = gold_by_text()
    for pid in singles:
        row = adjudication(sample_store)[pid]
        assert (row["status"], row["method"]) == ("gold", "single")
        text = next(p["text"] for p in posts if p["post_id"] == pid)
        assert json.loads(row["spans_json"]) == gold[text]


def test_rerun_after_review_counts_the_gold_the_store_holds(
    sample_store: Path, posts: list[dict[str, Any]], simulated: dict[str, list[Ann]]
) -> None:
    from mmner_data.labels import write_review_gold

    first = json.loads(cli("--store", str(sample_store), "--json").stdout)["adjudication"]
    assert first["review"] > 0
    with CorpusStore(sample_store) as st:
        queued = review_queue(st)
        for q in queued:  # the reviewer decides every review item (as `pull --queue review`)
            write_review_gold(st, q["post_id"], q["gold"], "ls:9")
    res = cli("--store", str(sample_store))
    assert res.exit_code == 0, res.output
    with CorpusStore(sample_store) as st:
        held = st.query("SELECT COUNT(*) AS n FROM adjudication WHERE status='gold'")[0]["n"]
    assert held == len(posts)
    line = " ".join(res.stdout.split())
    # the store's count leads; this run's own decision (reviewed rows kept) follows
    assert f"the store holds {held} gold, 0 to review" in line
    assert f"this run decided {first['gold']} gold, {first['review']} to review" in line
