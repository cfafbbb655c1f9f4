"""Behaviour unchanged by refactoring: the sample's export (rows, tokens, tags, splits) has the
digest it had before the architecture refactoring (computed with commit 1ab03c0's code by
``tests/export_digest.py`` on the sample collected with MMNER_PSEUDONYM_SALT=test-salt)."""

from __future__ import annotations

import os
from pathlib import Path

from export_digest import export_digest

BEFORE_REFACTOR = "ee2d5abe5f8328e9b1bd74da8e2c380ccad86aaec81b6b8436632dfcbd7fd092"


def test_sample_export_digest_is_unchanged(sample_store: Path, tmp_path: Path) -> None:
    assert os.environ["MMNER_PSEUDONYM_SALT"] == "test-salt"
    assert export_digest(sample_store, tmp_path / "export") == BEFORE_REFACTOR
