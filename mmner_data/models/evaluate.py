"""Entity-level evaluation (seqeval, conlleval-style reading of BIO), overall and per language.

:func:`score` is a pure function over tag sequences; :func:`predict_tags` runs a model over
examples; :func:`write_report` writes ``<stem>.json``, ``<stem>.md`` and ``<stem>.png``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from mmner_data.models.data import Collator, NerExample, to_device


def _prf(y_true: list[list[str]], y_pred: list[list[str]]) -> dict[str, Any]:
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

    out: dict[str, Any] = {
        "precision": float(precision_score(y_true, y_pred, zero_division=0)),
        "recall": float(recall_score(y_true, y_pred, zero_division=0)),
        "f1": float(f1_score(y_true, y_pred, zero_division=0)),
        "sentences": len(y_true),
    }
    report = classification_report(y_true, y_pred, output_dict=True, zero_division=0)
    out["support"] = int(sum(v["support"] for k, v in report.items() if " avg" not in k))
    out["per_type"] = {
        k: {
            "precision": float(v["precision"]),
            "recall": float(v["recall"]),
            "f1": float(v["f1-score"]),
            "support": int(v["support"]),
        }
        for k, v in sorted(report.items())
        if " avg" not in k
    }
    return out


def score(
    gold: Sequence[Sequence[str]],
    pred: Sequence[Sequence[str]],
    langs: Sequence[str | None] | None = None,
) -> dict[str, Any]:
    """Micro P/R/F1 and per type, overall and (with ``langs``) per language."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sequences but {len(pred)} predicted")
    for i, (g, p) in enumerate(zip(gold, pred, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"sequence {i}: {len(g)} gold tags but {len(p)} predicted")
    y_true, y_pred = [list(g) for g in gold], [list(p) for p in pred]
    out = {"overall": _prf(y_true, y_pred), "per_language": {}}
    if langs is not None:
        for lang in sorted({str(x) for x in langs}):
            idx = [i for i, x in enumerate(langs) if str(x) == lang]
            out["per_language"][lang] = _prf([y_true[i] for i in idx], [y_pred[i] for i in idx])
    return out


@torch.no_grad()
def predict_tags(
    model: Any,
    examples: Sequence[NerExample],
    *,
    batch_size: int = 32,
    use_images: bool = True,
    progress: Callable[[str, int, int | None], None] | None = None,
) -> list[list[str]]:
    """Predicted BIO tags per example (words cut by ``max_length`` are ``O``)."""
    was_training = model.training
    model.eval()
    collate = Collator(model.config, model.tokenizer, use_images=use_images)
    labels = model.config.labels
    out: list[list[str]] = []
    try:
        for i in range(0, len(examples), batch_size):
            chunk = examples[i : i + batch_size]
            batch = collate(chunk)
            batch.pop("labels", None)
            for ex, (path, _) in zip(
                chunk, model.predict(to_device(batch, model.device)), strict=True
            ):
                tags = [labels[t] for t in path][: len(ex.tokens)]
                out.append(tags + ["O"] * (len(ex.tokens) - len(tags)))
            if progress:
                progress("evaluate", len(chunk), len(examples))
    finally:
        model.train(was_training)
    return out


def evaluate_model(
    model: Any,
    examples: Sequence[NerExample],
    *,
    batch_size: int = 32,
    use_images: bool = True,
    progress: Callable[[str, int, int | None], None] | None = None,
) -> dict[str, Any]:
    """:func:`score` of the model's predictions on labelled ``examples``."""
    pred = predict_tags(
        model, examples, batch_size=batch_size, use_images=use_images, progress=progress
    )
    gold = [list(ex.tags or []) for ex in examples]
    return score(gold, pred, [ex.lang for ex in examples])


def markdown_table(metrics: dict[str, Any], title: str) -> str:
    """Per language (and overall) micro P/R/F1, then F1 per type, as markdown."""
    overall = metrics["overall"]
    types = list(overall["per_type"])
    rows = [*metrics["per_language"].items(), ("all", overall)]
    lines = [
        f"# {title}",
        "",
        "| language | sentences | entities | P | R | F1 | "
        + " | ".join(f"F1 {t}" for t in types)
        + " |",
        "|---|---:|---:|---:|---:|---:|" + "---:|" * len(types),
    ]
    for lang, m in rows:
        per = [f"{m['per_type'].get(t, {}).get('f1', 0.0):.3f}" for t in types]
        lines.append(
            f"| {lang} | {m['sentences']} | {m['support']} | {m['precision']:.3f} | "
            f"{m['recall']:.3f} | {m['f1']:.3f} | " + " | ".join(per) + " |"
        )
    return "\n".join(lines) + "\n"


def write_report(metrics: dict[str, Any], folder: Path, stem: str, title: str) -> list[Path]:
    """``<stem>.json`` + ``.md`` + ``.png`` (F1 per language × entity type) under ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{stem}.json", folder / f"{stem}.md", folder / f"{stem}.png"]
    paths[0].write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    paths[1].write_text(markdown_table(metrics, title), encoding="utf-8")
    groups = [*metrics["per_language"].items(), ("all", metrics["overall"])]
    types = [*metrics["overall"]["per_type"], "micro"]
    fig, ax = plt.subplots(figsize=(1.5 + 1.3 * len(groups), 3.6))
    width = 0.8 / max(1, len(types))
    for k, t in enumerate(types):
        vals = [
            m["f1"] if t == "micro" else m["per_type"].get(t, {}).get("f1", 0.0) for _, m in groups
        ]
        ax.bar([i + k * width for i in range(len(groups))], vals, width, label=t)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(groups))], [g for g, _ in groups])
    ax.set_ylim(0, 1)
    ax.set_ylabel("entity F1")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncols=len(types), loc="upper center", bbox_to_anchor=(0.5, -0.12))
    fig.tight_layout()
    fig.savefig(paths[2], dpi=110)
    plt.close(fig)
    return paths
