"""Where a stage's heavy batch work runs: ``local`` (this process, the default) or ``ray``.

The local engine is the stages' own code and needs nothing more. The Ray engine runs the same
pure batch cores (image fetch + validation, dedup link finding, CLIP scoring, pre-annotation) on
a Ray cluster, exchanging data through a sharded lake (:mod:`mmner_data.lake`); every Ray call
lives in :mod:`mmner_data.engines.ray`, and what a worker does with one shard in
:mod:`mmner_data.engines.work` (no Ray import), so the results are the local engine's.
See docs/scale.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from mmner_data.errors import MmnerError

__all__ = [
    "ENGINES",
    "EngineError",
    "EngineSettings",
    "engine_settings",
    "pop_engine",
    "require_ray",
]

ENGINES = ("local", "ray")
#: Ray releases this code is tested with (the API still moves: keep calls in engines/ray.py).
RAY_RANGE = ">=2.50,<2.61"


class EngineError(MmnerError):
    """The engine cannot run: Ray missing, a cluster that cannot be reached, a bad setting."""


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """How to run: ``name`` local|ray; for Ray the cluster ``address`` (None: ``RAY_ADDRESS``, else a
    local cluster), the ``lake`` root the workers exchange shards through (None:
    ``<store>/lake``), ``workers`` per stage (None: one per CPU of the cluster), ``num_cpus``
    per CPU worker (fractional, so a small machine never deadlocks), ``gpus_per_actor`` for model
    actors (None: 1 when the cluster has GPUs, else 0) and ``shard_rows`` per lake shard."""

    name: Literal["local", "ray"] = "local"
    address: str | None = None
    lake: str | None = None
    workers: int | None = None
    num_cpus: float = 0.5
    gpus_per_actor: float | None = None
    shard_rows: int = 5000

    @property
    def is_ray(self) -> bool:
        return self.name == "ray"

    def lake_root(self, store_root: str | os.PathLike[str]) -> str:
        return self.lake or str(Path(store_root) / "lake")

    def resolved_address(self) -> str | None:
        return self.address or os.environ.get("RAY_ADDRESS") or None


_KEYS = {"name", "address", "lake", "workers", "num_cpus", "gpus_per_actor", "shard_rows"}


def engine_settings(
    section: str | Mapping[str, Any] | None, overrides: Mapping[str, Any] | None = None
) -> EngineSettings:
    """The recipe's ``engine:`` (``ray``, or a mapping with the fields of :class:`EngineSettings`)
    with the non-None CLI ``overrides`` (``engine``, ``ray_address``, ``lake``, ``workers``)."""
    values: dict[str, Any] = {}
    if isinstance(section, str):
        values["name"] = section
    elif section:
        unknown = set(section) - _KEYS
        if unknown:
            raise EngineError(f"engine.{sorted(unknown)[0]}: unknown key (check the spelling)")
        values.update(section)
    o = {k: v for k, v in (overrides or {}).items() if v is not None}
    for key, field in (("engine", "name"), ("ray_address", "address")):
        if key in o:
            values[field] = o.pop(key)
    values.update({k: v for k, v in o.items() if k in _KEYS})
    s = replace(EngineSettings(), **values)
    if s.name not in ENGINES:
        raise EngineError(f"engine: {s.name!r} is not one of {', '.join(ENGINES)}")
    if s.workers is not None and s.workers < 1:
        raise EngineError(f"engine.workers: must be at least 1, got {s.workers}")
    if not 0 < s.num_cpus <= 64:
        raise EngineError(f"engine.num_cpus: must be in (0, 64], got {s.num_cpus}")
    if s.shard_rows < 1:
        raise EngineError(f"engine.shard_rows: must be at least 1, got {s.shard_rows}")
    return s


ENGINE_OVERRIDES = ("engine", "ray_address", "lake", "workers")


def pop_engine(recipe: Any, overrides: dict[str, Any]) -> EngineSettings:
    """The engine for a stage: the recipe's ``engine:`` with the CLI's engine overrides, which
    are removed from ``overrides`` (the rest belong to the stage's own section)."""
    mine = {k: overrides.pop(k) for k in ENGINE_OVERRIDES if k in overrides}
    return engine_settings(getattr(recipe, "engine", None), mine)


def require_ray() -> None:
    """Raise a one-line :class:`EngineError` when Ray Data is not installed."""
    try:
        import ray.data  # noqa: F401
    except ImportError:
        raise EngineError(
            f"--engine ray needs Ray Data: pip install 'mmner-data[ray]' (ray[data]{RAY_RANGE})"
        ) from None
