"""The stage contract: what every stage of the pipeline looks like to its callers.

A stage is a module (``mmner_data/<stage>/stage.py``) that provides

* ``Settings`` — a pydantic model, built by :func:`build_settings` from the recipe's section plus
  the command line's overrides (``None`` means "not given"); unknown keys are errors naming them;
* a pure batch core where the stage has one (image fetch + validation, dedup signatures, CLIP
  scoring, pre-annotation): batch in, batch out, no store access, so an engine other than the
  local one can run it (see docs/architecture.md);
* ``run(store, settings, progress=None) -> Result`` — reads the store, does its one job, writes
  back in transactions, inside :func:`recorded_run` so that exactly one ``runs`` row records it,
  whichever entry point (``mmner-data <stage>``, ``mmner-data run``, Python) called it;
* ``Result`` — a dataclass with ``to_dict()`` (what ``--json`` prints and ``runs`` stores).

The registry of stages, and which of them a recipe configures, is in :mod:`mmner_data.pipeline`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from mmner_data.config import RecipeError

Progress = Callable[[str, int, int | None], None]
"""``progress(task_name, advance, total)``: how a stage reports progress (the CLI draws bars)."""

S = TypeVar("S", bound=BaseModel)


def build_settings(
    cls: type[S], section_name: str, section: Mapping[str, Any] | None, overrides: Mapping[str, Any]
) -> S:
    """A stage's settings: the recipe section with the non-None ``overrides`` on top.

    Errors name the key (``filter.threshold: ...``) and are :class:`RecipeError` (one line, exit 1).
    """
    merged = dict(section or {})
    merged.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return cls.model_validate(merged)
    except ValidationError as exc:
        msgs = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in (section_name, *err["loc"]))
            msg = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check the spelling)"
            msgs.append(f"{loc}: {msg}")
        raise RecipeError("invalid recipe: " + "; ".join(msgs)) from None


class Result(Protocol):
    """What ``run`` returns: a dataclass with ``to_dict()``."""

    def to_dict(self) -> dict[str, Any]: ...


def result_dict(obj: Any) -> dict[str, Any]:
    """``obj.to_dict()``, or the dataclass's fields, or the mapping itself."""
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return dict(obj)


@dataclasses.dataclass(slots=True)
class RunRecord:
    """The ``runs`` row being written: set ``status``/``summary`` before the block ends."""

    run_id: int | None
    status: str = "ok"
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)

    def finish(self, result: Any, status: str = "ok") -> None:
        self.summary = result_dict(result)
        self.status = status


@contextlib.contextmanager
def recorded_run(
    store: Any, stage: str, params: Mapping[str, Any], *, dry_run: bool = False
) -> Iterator[RunRecord]:
    """Write the one ``runs`` row of a stage's run: ``started`` now, ``ok``/``failed`` at the end.

    A dry run writes no row. An exception marks the row ``failed`` (``interrupted`` for Ctrl-C)
    with the error, then propagates.
    """
    if dry_run:
        yield RunRecord(None)
        return
    run_id = store.start_run(stage, dict(params))
    record = RunRecord(run_id)
    try:
        yield record
    except KeyboardInterrupt:
        store.finish_run(run_id, "interrupted", {"error": "interrupted"})
        raise
    except BaseException as exc:
        store.finish_run(run_id, "failed", {"error": str(exc)[:2000]})
        raise
    store.finish_run(run_id, record.status, record.summary)
