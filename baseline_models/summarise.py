"""Print the dev/test F1 table of the runs made by build.sh (mean ± sd over seeds)."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

MODELS = ("2m-ner", "text-crf", "text-linear")
LANGS = ("en", "fr", "de", "es")


def cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main(work: Path, seeds: list[str]) -> None:
    print(f"| model | split | all | {' | '.join(LANGS)} |")
    print("|---|---|---:|" + "---:|" * len(LANGS))
    for model in MODELS:
        for split in ("validation", "test"):
            runs = [
                json.loads((work / "models" / f"{model}-s{s}.{split}.json").read_text())
                for s in seeds
            ]
            overall = cell([r["overall"]["f1"] for r in runs])
            per = [cell([r["per_language"][lang]["f1"] for r in runs]) for lang in LANGS]
            print(f"| {model} | {split} | {overall} | {' | '.join(per)} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
