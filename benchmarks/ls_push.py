"""Benchmark: Label Studio task import in bulk batches vs one request per task.

Against a running server (``eval "$(scripts/label-studio.sh env)"`` for the local one), in a
throw-away project with the toolkit's label config:

* bulk: ``--n`` synthetic tasks (post text in EN/FR/DE/ES, ``post_id``, ``lang``, and one
  prediction with two scored spans each, exactly what ``annotate push`` sends) imported with
  ``LSClient.import_tasks`` in batches of ``--batch-size`` (the push's code path);
* baseline: ``--single`` of the same tasks imported with one request per task (the same import
  endpoint, a one-task list each), timed and extrapolated to ``--n``.

It prints tasks/s for both, the ratio (goal: >= 20x), and the time of the crash-safety scan that
every push makes first (listing the project's tasks by ``post_id``).

    python benchmarks/ls_push.py                 # 10,000 tasks, 200 single requests
    python benchmarks/ls_push.py --n 2000 --single 100
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import uuid

from mmner_data.annotate.client import LSClient
from mmner_data.annotate.label_config import render_label_config
from mmner_data.annotate.push import PostItem, build_task, prediction_result
from mmner_data.schema import EntitySpan

TEMPLATES = {
    "en": "Great day at {loc} with {per}! Thanks to {org} for the tour #travel",
    "fr": "Super journée à {loc} avec {per} ! Merci à {org} pour la visite #voyage",
    "de": "Toller Tag in {loc} mit {per}! Danke an {org} für die Führung #reisen",
    "es": "¡Gran día en {loc} con {per}! Gracias a {org} por la visita #viaje",
}
PEOPLE = ["Thomas Pesquet", "Eileen Collins", "Matthias Maurer", "Pedro Duque", "Ada Lovelace"]
PLACES = ["Toulouse", "Houston", "München", "Sevilla", "Paris", "Berlin", "Madrid", "Lyon"]
ORGS = ["ESA", "NASA", "CNES", "DLR", "the Science Museum"]


def synthetic_tasks(n: int, seed: int = 0) -> list[dict]:
    """``n`` tasks as ``annotate push`` builds them, with a scored prediction each."""
    rng = random.Random(seed)
    tasks = []
    for i in range(n):
        lang = rng.choice(list(TEMPLATES))
        per, loc, org = rng.choice(PEOPLE), rng.choice(PLACES), rng.choice(ORGS)
        text = TEMPLATES[lang].format(per=per, loc=loc, org=org) + f" ({i})"
        spans = [
            EntitySpan(text.index(per), text.index(per) + len(per), "PER", rng.random()),
            EntitySpan(text.index(loc), text.index(loc) + len(loc), "LOC", rng.random()),
        ]
        result, _ = prediction_result(text, spans, ("PER", "ORG", "LOC", "MISC"))
        item = PostItem(f"bench:{i}", text, lang, None)
        pred = {"model_version": "bench", "score": rng.random(), "result": result}
        tasks.append(build_task(item, "", [pred]))
    return tasks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="tasks imported in bulk")
    ap.add_argument("--single", type=int, default=200, help="tasks imported one per request")
    ap.add_argument("--batch-size", type=int, default=500, help="tasks per bulk request")
    ap.add_argument("--keep", action="store_true", help="keep the projects (default: delete)")
    args = ap.parse_args()
    url, key = os.environ.get("LABEL_STUDIO_URL"), os.environ.get("LABEL_STUDIO_API_KEY")
    if not url or not key:
        print(
            'set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY (eval "$(scripts/label-studio.sh env)")'
        )
        return 2
    client = LSClient(url, key, timeout=600)
    client.whoami()
    config = render_label_config(("PER", "ORG", "LOC", "MISC"))
    tag = uuid.uuid4().hex[:6]
    tasks = synthetic_tasks(args.n + args.single)
    bulk_p = client.create_project(f"bench-bulk-{tag}", config, 1, 100)
    single_p = client.create_project(f"bench-single-{tag}", config, 1, 100)
    try:
        t0 = time.perf_counter()
        for i in range(0, args.n, args.batch_size):
            client.import_tasks(bulk_p.id, tasks[i : i + args.batch_size])
        bulk_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        for task in tasks[args.n :]:
            client.import_tasks(single_p.id, [task])
        single_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        listed = client.task_post_ids(bulk_p.id)
        scan_s = time.perf_counter() - t0
        assert len(listed) == args.n, f"{len(listed)} tasks listed, {args.n} imported"
    finally:
        if not args.keep:
            client.delete_project(bulk_p.id)
            client.delete_project(single_p.id)

    bulk_rate = args.n / bulk_s
    single_rate = args.single / single_s
    print(f"server: {url} (label-studio {client.sdk.versions.get().release})")
    print(
        f"bulk:   {args.n} tasks in {bulk_s:.1f}s, batches of {args.batch_size}: "
        f"{bulk_rate:,.0f} tasks/s"
    )
    print(
        f"single: {args.single} tasks in {single_s:.1f}s, one request each: {single_rate:,.1f} "
        f"tasks/s → {args.n} tasks would take {args.n / single_rate:,.0f}s"
    )
    print(f"ratio:  bulk is {bulk_rate / single_rate:.1f}x faster (goal >= 20x)")
    print(f"scan:   listing {args.n} tasks by post_id (done before every push) took {scan_s:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
