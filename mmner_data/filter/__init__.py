"""CLIP text–image relevance (the ``filter`` stage).

Modules, one job each: ``settings`` (the recipe's ``filter:`` section), ``model`` (open_clip
loading by name or path, the model id), ``scoring`` (batched resumable scoring with a DataLoader),
``select`` (threshold / keep-top per language from stored scores), ``report`` (JSON, markdown,
histograms, contact sheet), ``pipeline`` (the stage), ``command`` (the Typer command).

torch and open_clip are imported only where a model is loaded, so importing this package is cheap.
"""

from mmner_data.filter.select import Decision, ScoredPost, apply_selection, select
from mmner_data.filter.settings import FilterSettings, build_filter_settings, parse_lang_values

__all__ = [
    "Decision",
    "FilterSettings",
    "ScoredPost",
    "apply_selection",
    "build_filter_settings",
    "parse_lang_values",
    "select",
]
