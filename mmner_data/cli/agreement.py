"""The ``mmner-data agreement`` command (registered by ``mmner_data.cli``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mmner_data.cli._util import (
    JsonOpt,
    ProgressOpt,
    StoreOpt,
    UserError,
    console,
    load_stage_recipe,
    out,
    progress_bars,
    user_errors,
)


def agreement_command(
    recipe: Annotated[
        Path | None,
        typer.Option(
            "--recipe",
            "-r",
            help="Recipe YAML: its store, entity_types and `agreement:` section give the defaults.",
        ),
    ] = None,
    store: StoreOpt = None,
    from_export: Annotated[
        Path | None,
        typer.Option(
            "--from-export",
            help="Read a Label Studio JSON export file instead of the store (no store is "
            "touched; reports go to --out).",
        ),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Reports folder (default <store>/reports; with --from-export, reports/ "
            "next to the export file).",
        ),
    ] = None,
    min_annotators: Annotated[
        int | None,
        typer.Option(
            "--min-annotators",
            min=2,
            help="Only items labelled by at least this many annotators count (default 2).",
        ),
    ] = None,
    lang: Annotated[
        list[str] | None,
        typer.Option("--lang", help="Only these languages (repeat, or comma-separated: en,fr)."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only items with an annotation updated at or after this ISO date/time "
            "(UTC if no zone); all of their annotations are used.",
        ),
    ] = None,
    entity_types: Annotated[
        str | None,
        typer.Option(
            "--entity-types",
            help="Comma-separated schema (default: the recipe's entity_types, else "
            "PER,ORG,LOC,MISC).",
        ),
    ] = None,
    adjudicate: Annotated[
        bool | None,
        typer.Option(
            "--adjudicate/--no-adjudicate",
            help="Majority vote into the store's adjudication table (default on with a store; "
            "with --from-export it writes adjudication.jsonl and is off by default).",
        ),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold",
            min=0.0,
            max=0.999,
            help="A span is gold when more than this share of the item's annotators marked "
            "it (default 0.5: strict majority).",
        ),
    ] = None,
    review_below: Annotated[
        float | None,
        typer.Option(
            "--review-below",
            min=0.0,
            max=1.0,
            help="Send items whose mean pairwise span F1 is below this to review.",
        ),
    ] = None,
    accept_single: Annotated[
        bool | None,
        typer.Option(
            "--accept-single/--no-accept-single",
            help="Store items with a single annotation as gold (method 'single'); default off.",
        ),
    ] = None,
    snap: Annotated[
        str | None,
        typer.Option(
            "--snap", help="Character spans onto tokens: expand (default), contract or strict."
        ),
    ] = None,
    bad_spans: Annotated[
        str | None,
        typer.Option(
            "--bad-spans",
            help="A label outside the schema or an unconvertible span: error (default, stop "
            "and name it) or exclude (drop it, warn, send the item to review).",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Compute and print the summary; write nothing."),
    ] = False,
    json_out: JsonOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Inter-annotator agreement (Cohen/Fleiss κ, Krippendorff α, span F1) and adjudication.

    Reads submitted annotations from the store (or a Label Studio JSON export), writes
    agreement.json/.md and two PNGs, and majority-votes a gold layer with a review queue.
    """
    from mmner_data.agreement.pipeline import run_agreement, run_on_export
    from mmner_data.agreement.settings import build_agreement_settings
    from mmner_data.store import CorpusStore

    overrides: dict[str, Any] = {
        "min_annotators": min_annotators,
        "langs": lang,
        "since": since,
        "entity_types": entity_types,
        "adjudicate": adjudicate,
        "threshold": threshold,
        "review_below": review_below,
        "accept_single": accept_single,
        "snap": snap,
        "bad_spans": bad_spans,
        "out_dir": str(out_dir) if out_dir else None,
    }
    with user_errors():
        rcp = None
        if recipe is not None:
            rcp = load_stage_recipe(recipe)
        if from_export is not None and store is not None:
            raise UserError("--from-export reads a file, not the store: drop --store")
        if from_export is None and rcp is None and store is None:
            raise UserError("give --recipe or --store (or --from-export FILE)")
        if from_export is not None:
            overrides["adjudicate"] = bool(adjudicate)
        settings = build_agreement_settings(
            rcp.agreement if rcp else {},
            overrides,
            entity_types=rcp.entity_types if rcp else None,
        )
        with progress_bars(progress and not json_out) as bar:
            if from_export is not None:
                target = settings.out_dir or from_export.parent / "reports"
                result = run_on_export(from_export, settings, target, bar, dry_run=dry_run)
            else:
                root = store or Path(rcp.store)  # type: ignore[union-attr]
                if not (root / "corpus.sqlite").exists():
                    raise UserError(f"no corpus store at {root} (run `mmner-data collect`)")
                with CorpusStore(root) as st:
                    result = run_agreement(st, settings, bar, dry_run=dry_run)
        summary = result.to_dict()
        if json_out:
            out.print_json(json.dumps(summary))
            return
        _print_summary(out, summary)
        for w in summary["warnings"]:
            console.print(f"[yellow]warning:[/] {w}", highlight=False)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _print_summary(out: Any, d: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"agreement — {d['source']}" + (" (dry run)" if d["dry_run"] else ""))
    cols = ["scope", "items", "annot.", "tokens", "F1 exact", "F1 partial"]
    cols += ["Cohen κ*", "Fleiss κ*", "Kripp. α*"]
    for col in cols:
        table.add_column(col, justify="left" if col == "scope" else "right")
    for scope, h in {"overall": d["overall"], **d["by_lang"]}.items():
        head = [scope, str(h["n_items"]), str(h["n_annotators"]), str(h["n_tokens"])]
        if "error" in h:
            table.add_row(*head, h["error"], "", "", "", "")
            continue
        keys = ["span_f1_exact", "span_f1_partial", "cohen_kappa_excl_all_o"]
        keys += ["fleiss_kappa_excl_all_o", "krippendorff_alpha_excl_all_o"]
        table.add_row(*head, *(_fmt(h[k]) for k in keys))
    out.print(table)
    out.print(
        "F1: span F1, mean over pairs; *: entity types, tokens all annotators tagged O left out"
    )
    adj = d["adjudication"]
    if adj:
        if "store" in adj:  # count what the store holds (reviewed gold included)
            held = adj["store"]
            line = f"adjudication: the store holds {held['gold']} gold, {held['review']} to review"
            line += f" (this run decided {adj['gold']} gold, {adj['review']} to review)"
        else:
            line = f"adjudication: {adj['gold']} gold, {adj['review']} to review"
        if adj["review_reasons"]:
            line += " (" + ", ".join(f"{k} {v}" for k, v in adj["review_reasons"].items()) + ")"
        if "written" in adj:
            w = adj["written"]
            line += (
                f"; store: {w['inserted']} new, {w['updated']} updated, {w['unchanged']} "
                f"unchanged, {w['kept_reviewed']} reviewed kept"
            )
        out.print(line)
    if d["files"]:
        out.print("report: " + ", ".join(d["files"]))
