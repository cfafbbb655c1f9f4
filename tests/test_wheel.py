"""The package works when installed like any package: a wheel, outside the checkout.

Builds the wheel from this checkout, installs it (without dependencies) into a fresh virtual
environment in a temporary folder, borrowing the test environment's third-party packages through
a ``.pth`` path (its own editable ``mmner_data`` is not on that path), and runs ``mmner-data
preannotate`` with the default (bundled) model from a folder outside the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import sqlite3
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "sample.yaml"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed; returns its ``bin`` folder."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"  # build from a copy: no build/ or egg-info litter in the checkout
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            ".ls-venv",
            ".ls-data",
            "runs",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            ".pytest_cache",
            ".hypothesis",
            ".ruff_cache",
            "tests",
            "benchmarks",
        ),
    )
    dist = work / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(src),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = dist.glob("mmner_data-*.whl")
    env_dir = work / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # third-party packages from the test environment (not its editable mmner_data)
    (Path(purelib) / "borrowed.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "--no-deps",
            "-q",
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    return env_dir / "bin"


def test_wheel_outside_the_checkout_preannotates_with_the_bundled_model(
    installed: Path, sample_store: Path, tmp_path: Path
) -> None:
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    where = subprocess.run(
        [
            str(installed / "python"),
            "-c",
            "import mmner_data, mmner_data.bundled as b; print(mmner_data.__file__); "
            "print(b.BUNDLED_MODEL); print(b.BUNDLED_MODEL.is_dir())",
        ],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\n")
    assert str(installed.parent) in where[0], where  # the installed copy, not the checkout
    assert str(REPO) not in where[0] and str(installed.parent) in where[1] and where[2] == "True"

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    res = subprocess.run(
        [
            str(installed / "mmner-data"),
            "preannotate",
            "-r",
            str(RECIPE),
            "--store",
            str(sample_store),
            "--json",
            "--no-progress",
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout)
    assert summary["predicted"] > 0
    assert summary["model"].startswith(str(installed.parent))  # the wheel's bundled model
    with sqlite3.connect(sample_store / "corpus.sqlite") as db:
        n = db.execute(
            "SELECT COUNT(*) FROM predictions WHERE model_version = ?", (summary["model_version"],)
        ).fetchone()[0]
    assert n == summary["predicted"]
