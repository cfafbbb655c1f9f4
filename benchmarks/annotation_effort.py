"""What the model in the loop buys: span edits per post for a simulated annotator.

The annotator replays the bundled sample's hand labels (the gold) over what Label Studio shows
them: nothing (no pre-annotation), the bundled model's predictions, or the predictions of the
bundled model after one retraining round on the sample's *train* split gold (1 epoch).

Span edits to turn the shown spans into the gold, after a one-to-one matching (exact matches
first, then same boundaries, then the largest character overlap):

* a shown span equal to a gold span (start, end, label): 0 edits;
* same boundaries, other label: 1 (label change);
* overlapping, same label, other boundaries: 1 (boundary fix: drag one or both ends);
* overlapping, other label and boundaries: 2 (boundary fix + label change);
* a shown span matching no gold span: 1 (deletion); a gold span matching nothing: 1 (insertion).

With no pre-annotation the edits are the gold spans (all insertions).

Usage (writes its own store under --work; nothing leaves the machine)::

    .venv/bin/python benchmarks/annotation_effort.py --work /tmp/effort [--no-retrain] [--json]

Splits are the sample's hash split as ``mmner-data evaluate`` and ``baseline_models`` use it: the
bundled model never trained on the sample's hand labels (its validation split chose the epoch),
the retrained one saw the train split, so the headline is the **test** split; all posts and the
other splits are reported beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "sample.yaml"

Span = tuple[int, int, str]


def span_edits(shown: Sequence[Span], gold: Sequence[Span]) -> Counter[str]:
    """Edits (insert, delete, label, boundary) that turn ``shown`` into ``gold``; see above."""
    left_s, left_g = list(shown), list(gold)
    out: Counter[str] = Counter()
    for s in list(left_s):  # exact
        if s in left_g:
            left_s.remove(s)
            left_g.remove(s)
    for s in list(left_s):  # same boundaries, other label
        g = next((g for g in left_g if g[:2] == s[:2]), None)
        if g is not None:
            left_s.remove(s)
            left_g.remove(g)
            out["label"] += 1
    pairs = sorted(
        (
            (min(s[1], g[1]) - max(s[0], g[0]), i, j)
            for i, s in enumerate(left_s)
            for j, g in enumerate(left_g)
            if min(s[1], g[1]) > max(s[0], g[0])
        ),
        reverse=True,
    )
    used_s: set[int] = set()
    used_g: set[int] = set()
    for _, i, j in pairs:  # overlapping: boundary fix (+ label change)
        if i in used_s or j in used_g:
            continue
        used_s.add(i)
        used_g.add(j)
        out["boundary"] += 1
        out["label"] += left_s[i][2] != left_g[j][2]
    out["delete"] += len(left_s) - len(used_s)
    out["insert"] += len(left_g) - len(used_g)
    return out


def _mmner(*args: str) -> dict:
    cmd = [str(Path(sys.executable).with_name("mmner-data")), *args, "--json", "--no-progress"]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(args[:1])} failed:\n{res.stdout}\n{res.stderr}")
    return json.loads(res.stdout)


def prepare_store(work: Path) -> Path:
    store = work / "store"
    if not (store / "corpus.sqlite").exists():
        _mmner("collect", "-r", str(RECIPE), "--store", str(store))
    subprocess.run(
        [sys.executable, "-m", "mmner_data.labels", "sample-gold", "--store", str(store)],
        check=True,
        capture_output=True,
    )
    return store


def predictions(store: Path, model_version: str) -> dict[str, list[Span]]:
    from mmner_data.schema import spans_from_json
    from mmner_data.store import CorpusStore

    with CorpusStore(store) as st:
        rows = st.query(
            "SELECT post_id, spans_json FROM predictions WHERE model_version = ?", (model_version,)
        )
    return {
        r["post_id"]: [(s.start, s.end, s.label) for s in spans_from_json(r["spans_json"])]
        for r in rows
    }


def retrain(store: Path, work: Path, epochs: int) -> tuple[Path, float, int]:
    """The bundled model fine-tuned on the sample's train split gold; (folder, seconds, n)."""
    from mmner_data.bundled import bundled_model_path
    from mmner_data.models.data import load_splits
    from mmner_data.models.model import NerModel
    from mmner_data.models.settings import TrainSettings
    from mmner_data.models.train import CKPT_DIR, fit

    splits, _ = load_splits(store)
    out = work / "retrained"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    model = NerModel.from_pretrained(bundled_model_path())
    allowed = set(model.config.labels)
    train = [ex for ex in splits["train"] if set(ex.tags or []) <= allowed]
    settings = TrainSettings(
        epochs=epochs, patience=0, device="cpu", keep_checkpoints=1, warmup_ratio=0.0
    )
    fit(model, train, splits["validation"], settings, out)
    shutil.rmtree(out / CKPT_DIR, ignore_errors=True)
    return out, time.perf_counter() - t0, len(train)


def by_uncertainty(
    store: Path, model_version: str, preds: dict[str, list[Span]]
) -> dict[str, float]:
    """Edits per post of the least certain quarter (item score), the middle, the most certain."""
    from mmner_data.labels import gold_rows
    from mmner_data.schema import spans_from_json
    from mmner_data.store import CorpusStore

    with CorpusStore(store) as st:
        gold = {
            pid: [(s.start, s.end, s.label) for s in spans_from_json(r["spans_json"])]
            for pid, r in gold_rows(st).items()
        }
        score = {
            r["post_id"]: r["score"]
            for r in st.query(
                "SELECT post_id, score FROM predictions WHERE model_version = ?", (model_version,)
            )
        }
    ids = sorted((p for p in gold if score.get(p) is not None), key=lambda p: score[p])
    edits = [sum(span_edits(preds.get(p, []), gold[p]).values()) for p in ids]
    q = len(ids) // 4
    parts = {
        "least_certain_quarter": edits[:q],
        "middle": edits[q:-q],
        "most_certain_quarter": edits[-q:],
    }
    return {k: round(sum(v) / len(v), 2) for k, v in parts.items() if v}


def measure(store: Path, conditions: dict[str, dict[str, list[Span]] | None]) -> dict:
    from mmner_data.labels import gold_rows
    from mmner_data.models.data import load_splits
    from mmner_data.schema import spans_from_json
    from mmner_data.store import CorpusStore

    splits, _ = load_splits(store)
    split_of = {ex.id: name for name, exs in splits.items() for ex in exs}
    with CorpusStore(store) as st:
        gold = {
            pid: [(s.start, s.end, s.label) for s in spans_from_json(r["spans_json"])]
            for pid, r in gold_rows(st).items()
        }
        lang = {r["post_id"]: r["lang"] for r in st.query("SELECT post_id, lang FROM posts")}
    result: dict = {}
    for name, preds in conditions.items():
        # (split or "all", lang or "all") -> [posts, edits, Counter]
        acc: dict[tuple[str, str], list] = defaultdict(lambda: [0, 0, Counter()])
        for pid, g in gold.items():
            shown = [] if preds is None else preds.get(pid, [])
            e = span_edits(shown, g)
            for key in [
                (sp, lg)
                for sp in ("all", split_of.get(pid, "?"))
                for lg in ("all", lang.get(pid) or "?")
            ]:
                a = acc[key]
                a[0] += 1
                a[1] += sum(e.values())
                a[2].update(e)
        result[name] = {
            f"{sp}/{lg}": {
                "posts": n,
                "edits_per_post": round(total / n, 2),
                "by_kind": dict(sorted(kinds.items())),
            }
            for (sp, lg), (n, total, kinds) in sorted(acc.items())
        }
    result["gold_spans"] = sum(len(g) for g in gold.values())
    return result


def _table(res: dict, names: Sequence[str]) -> str:
    keys = sorted(res[names[0]], key=lambda k: (k.split("/")[0] != "test", k))
    lines = ["| split/lang | posts | " + " | ".join(names) + " |"]
    lines.append("|---|---:|" + "---:|" * len(names))
    for k in keys:
        row = [res[n][k]["edits_per_post"] if k in res[n] else "" for n in names]
        lines.append(f"| {k} | {res[names[0]][k]['posts']} | " + " | ".join(map(str, row)) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/mmner-annotation-effort"))
    ap.add_argument("--no-retrain", action="store_true", help="skip the retraining round")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("MMNER_PSEUDONYM_SALT", "annotation-effort")
    args.work.mkdir(parents=True, exist_ok=True)
    store = prepare_store(args.work)
    t0 = time.perf_counter()
    pre = _mmner("preannotate", "-r", str(RECIPE), "--store", str(store))
    timings = {"preannotate_bundled_s": round(time.perf_counter() - t0, 1)}
    bundled_version = pre["model_version"]
    conditions: dict[str, dict[str, list[Span]] | None] = {
        "none": None,
        "bundled": predictions(store, bundled_version),
    }
    meta = {"bundled_model_version": bundled_version}
    if not args.no_retrain:
        folder, secs, n = retrain(store, args.work, args.epochs)
        timings["retrain_s"] = round(secs, 1)
        meta["retrain_examples"] = n
        t0 = time.perf_counter()
        pre2 = _mmner(
            "preannotate", "-r", str(RECIPE), "--store", str(store), "--model", str(folder)
        )
        timings["preannotate_retrained_s"] = round(time.perf_counter() - t0, 1)
        meta["retrained_model_version"] = pre2["model_version"]
        conditions["retrained"] = predictions(store, pre2["model_version"])
    res = measure(store, conditions)
    res["bundled_by_uncertainty"] = by_uncertainty(store, bundled_version, conditions["bundled"])
    res["meta"] = meta | timings
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(_table(res, [n for n in conditions]))
        print("bundled, edits/post by item score:", json.dumps(res["bundled_by_uncertainty"]))
        print(json.dumps(res["meta"]))


if __name__ == "__main__":
    main()
