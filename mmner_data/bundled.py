"""Where the bundled pre-annotation model lives: inside the package, so an installed wheel has it.

The checkpoint folder ships as package data under ``mmner_data/bundled_models/<name>/``; it is
rebuilt by ``baseline_models/build.sh`` (see baseline_models/README.md, the model card).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

BUNDLED_NAME = "mmner-2m-ner-e5-small"


def bundled_model_path(name: str = BUNDLED_NAME) -> Path:
    """The folder of the bundled checkpoint ``name`` inside the installed package."""
    return Path(str(resources.files("mmner_data") / "bundled_models" / name))


BUNDLED_MODEL = bundled_model_path()
