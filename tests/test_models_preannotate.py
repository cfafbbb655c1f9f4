"""Pre-annotation into the store, and the train/evaluate/preannotate commands, on the sample.

Models are tiny random-weight checkpoints written to a temp folder and loaded by path: an
mmner-data 2M-NER folder and a Hugging Face ``BertForTokenClassification`` folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_models import TYPES, write_tiny_2m_ner
from typer.testing import CliRunner

from mmner_data.cli import app
from mmner_data.labels import write_sample_gold
from mmner_data.preannotate.predict import run_preannotate
from mmner_data.store import CorpusStore

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "sample.yaml"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from transformers import BertConfig, BertForTokenClassification

    root = tmp_path_factory.mktemp("tiny-ner")
    tiny = write_tiny_2m_ner(root)
    ner, text, vision = tiny["ner"], tiny["text"], tiny["vision"]
    # A Hugging Face token classifier with OntoNotes-style labels (PERSON, GPE, DATE).
    labels = ["O", "B-PERSON", "I-PERSON", "B-GPE", "I-GPE", "B-DATE", "I-DATE"]
    bert = BertForTokenClassification(
        BertConfig.from_pretrained(
            text,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={x: i for i, x in enumerate(labels)},
        )
    )
    with torch.no_grad():
        bert.classifier.bias.copy_(torch.tensor([0.0, 2.0, 0.0, 2.0, 0.0, 2.0, 0.0]))
    hf = root / "hf-token-classifier"
    bert.save_pretrained(hf)
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(text).save_pretrained(hf)
    return {"ner": ner, "hf": hf, "text": text, "vision": vision}


def _check_rows(store: CorpusStore, version: str, types: tuple[str, ...]) -> int:
    rows = store.query(
        "SELECT p.text, pr.spans_json, pr.score FROM predictions pr JOIN posts p USING (post_id) "
        "WHERE pr.model_version = ?",
        (version,),
    )
    n_spans = 0
    for r in rows:
        spans = json.loads(r["spans_json"])
        assert r["score"] is None or 0.0 <= r["score"] <= 1.0
        prev_end = 0
        for s in spans:
            assert set(s) == {"start", "end", "label", "score"}
            assert prev_end <= s["start"] < s["end"] <= len(r["text"])
            assert s["label"] in types
            assert 0.0 <= s["score"] <= 1.0
            seg = r["text"][s["start"] : s["end"]]
            assert seg == seg.strip() and seg
            prev_end = s["end"]
        n_spans += len(spans)
    return n_spans


def test_preannotate_writes_valid_spans_and_resumes(sample_store, models):
    with CorpusStore(sample_store) as st:
        n_kept = st.query("SELECT COUNT(*) FROM posts WHERE status = 'kept'")[0][0]
        # A third of the posts lose their image: they are labelled from their text alone.
        st.conn.execute(
            "UPDATE post_images SET status = 'failed' WHERE post_id IN "
            "(SELECT post_id FROM posts WHERE status = 'kept' ORDER BY post_id LIMIT 40)"
        )
        summary = run_preannotate(st, str(models["ner"]), batch_size=16, device="cpu")
        assert summary["predicted"] == n_kept
        assert summary["with_image"] == n_kept - 40
        version = summary["model_version"]
        assert version.startswith("tiny-2m-ner@")
        assert _check_rows(st, version, TYPES) == summary["spans"] > 0
        assert summary["tokens_per_s"] > 0
        again = run_preannotate(st, str(models["ner"]), batch_size=16, device="cpu")
        assert again["predicted"] == 0 and again["total_for_version"] == n_kept
        redo = run_preannotate(st, str(models["ner"]), batch_size=7, overwrite=True)
        assert redo["predicted"] == n_kept and redo["spans"] == summary["spans"]
        runs = st.query("SELECT status FROM runs WHERE stage = 'preannotate'")
        assert [r["status"] for r in runs] == ["ok", "ok", "ok"]


def test_preannotate_follows_the_filter_selection(sample_store, models):
    with CorpusStore(sample_store) as st:
        ids = [r[0] for r in st.query("SELECT post_id FROM posts WHERE status='kept' ORDER BY 1")]
        with st.transaction() as conn:
            for k, pid in enumerate(ids):
                conn.execute(
                    "INSERT INTO relevance_selection(post_id, model_id, status, kept, rule, "
                    "selected_at) VALUES(?, 'm', ?, ?, 'threshold', 'now')",
                    (pid, "kept" if k % 2 else "dropped_low_relevance", k % 2),
                )
        summary = run_preannotate(st, str(models["ner"]), device="cpu")
        assert summary["predicted"] == len(ids) // 2


def test_hf_token_classifier_labels_are_mapped_to_the_schema(sample_store, models):
    with CorpusStore(sample_store) as st:
        summary = run_preannotate(st, str(models["hf"]), entity_types=TYPES, device="cpu")
        assert summary["model_version"].startswith("hf-token-classifier@")
        assert set(summary["spans_by_label"]) <= {"PER", "LOC"}
        assert summary["spans"] > 0 and summary["unmapped_spans"] > 0  # DATE is not in the schema
        assert _check_rows(st, summary["model_version"], TYPES) == summary["spans"]
        mapped = run_preannotate(
            st, str(models["hf"]), entity_types=TYPES, label_map={"DATE": "MISC"}, overwrite=True
        )
        assert mapped["unmapped_spans"] == 0 and "MISC" in mapped["spans_by_label"]


runner = CliRunner()


def test_cli_preannotate_json_and_errors(sample_store, models):
    def dry() -> dict:
        res = runner.invoke(
            app,
            ["preannotate", "-r", str(RECIPE), "--store", str(sample_store),
             "--model", str(models["ner"]), "--dry-run", "--json"],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)

    assert dry()["posts_to_label"] == 124
    res = runner.invoke(
        app,
        [
            "preannotate",
            "-r",
            str(RECIPE),
            "--store",
            str(sample_store),
            "--model",
            str(models["ner"]),
            "--json",
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["predicted"] == 124 and summary["entity_types"] == list(TYPES)
    assert dry()["posts_to_label"] == 0
    bad = runner.invoke(
        app,
        [
            "preannotate",
            "-r",
            str(RECIPE),
            "--store",
            str(sample_store),
            "--model",
            str(sample_store / "nope"),
            "--no-progress",
        ],
    )
    assert bad.exit_code == 1
    assert "error:" in bad.output and "not found" in " ".join(bad.output.split())


def test_cli_train_evaluate_on_the_store(sample_store, models, tmp_path):
    out = tmp_path / "text-crf"
    no_gold = runner.invoke(app, ["train", "--data", str(sample_store), "--output", str(out)])
    assert no_gold.exit_code == 1  # never the bundled sample's labels unless asked for
    assert "no labelled posts" in no_gold.output and not out.exists()
    with CorpusStore(sample_store) as st:
        written = write_sample_gold(st)
    assert written["matched"] == written["inserted"] == 124
    base = [
        "--data",
        str(sample_store),
        "--output",
        str(out),
        "--model",
        "text-crf",
        "--text-encoder",
        str(models["text"]),
        "--epochs",
        "1",
        "--device",
        "cpu",
    ]
    dry = runner.invoke(app, ["train", *base, "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    plan = json.loads(dry.stdout)
    assert plan["entity_types"] == list(TYPES)
    assert sum(plan["examples"].values()) == 124
    res = runner.invoke(app, ["train", *base, "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["epochs_run"] == 1 and (out / "model.safetensors").is_file()
    again = runner.invoke(app, ["train", *base, "--no-progress"])
    assert again.exit_code == 1 and "--resume" in again.output
    ev = runner.invoke(
        app, ["evaluate", "--model", str(out), "--data", str(sample_store), "--json"]
    )
    assert ev.exit_code == 0, ev.output
    metrics = json.loads(ev.stdout)
    assert metrics["split"] == "test" and set(metrics["per_language"]) == {"en", "fr", "de", "es"}
    assert sum(m["sentences"] for m in metrics["per_language"].values()) == plan["examples"]["test"]
    for suffix in (".json", ".md", ".png"):
        assert (sample_store / "reports" / f"evaluate_text-crf_test{suffix}").is_file()
    bad = runner.invoke(app, ["train", "--data", str(tmp_path), "--output", str(tmp_path / "x")])
    assert bad.exit_code == 1 and "not a corpus store" in " ".join(bad.output.split())
