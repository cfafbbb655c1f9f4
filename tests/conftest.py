"""Shared fixtures. Tests never reach the internet: hubs are forced offline here."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE_RECIPE = REPO / "recipes" / "sample.yaml"


@pytest.fixture(scope="session")
def collected_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled sample collected once per session through the real crawler (read-only!).

    Tests that write to the store must use ``sample_store`` (a private copy) instead.
    """
    from mmner_data.collect.pipeline import run_collect
    from mmner_data.recipes import open_recipe
    from mmner_data.store import CorpusStore

    os.environ.setdefault("MMNER_PSEUDONYM_SALT", "test-salt")
    root = tmp_path_factory.mktemp("collected") / "store"
    with open_recipe(SAMPLE_RECIPE) as recipe, CorpusStore(root) as store:
        run_collect(recipe, store)
    return root


@pytest.fixture
def sample_store(collected_sample: Path, tmp_path: Path) -> Path:
    """A private, writable copy of the collected sample store (folder path)."""
    dest = tmp_path / "store"
    shutil.copytree(collected_sample, dest)
    return dest


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """2 shared cores: one torch thread avoids oversubscription (tiny ops get 10x faster)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
