"""Label Studio label configs (XML) rendered from the recipe's entity types.

Two configs, both over the post text with its image shown above it:

* ``annotate`` (``label_configs/ner_text_image.xml``): a ``<Labels name="label">`` control over
  ``<Text name="text">``, one ``<Label>`` per entity type.
* ``review`` (``label_configs/review.xml``): the same controls, plus a header telling the
  reviewer that each annotator's version is attached as a prediction (model version = annotator).

The files in ``label_configs/`` are the defaults rendered for PER/ORG/LOC/MISC (a test keeps them
in step with :func:`render_label_config`); a recipe may name its own template
(``annotate.label_config``), whose ``<Labels name="label">`` children are replaced by the entity
types. Push and pull rely on the control names ``label`` and ``text`` and the task fields
``$text``/``$image``.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from mmner_data.errors import MmnerError

FROM_NAME = "label"
TO_NAME = "text"
KINDS = ("annotate", "review")

# A colour per label, cycled; readable on white with black text.
PALETTE = (
    "#FFA39E", "#D4380D", "#FFC069", "#AD8B00", "#D3F261", "#389E0D", "#5CDBD3",
    "#096DD9", "#ADC6FF", "#9254DE", "#F759AB", "#8C8C8C",
)  # fmt: skip

_ANNOTATE = """<View>
  <Header value="$lang · $post_id" size="6"/>
  <Image name="image" value="$image" maxWidth="480px" zoom="true"/>
  <Labels name="label" toName="text" showInline="true">
    <!-- one <Label> per entity type of the recipe -->
  </Labels>
  <Text name="text" value="$text"/>
</View>
"""

_REVIEW = """<View>
  <Header value="Review $post_id ($lang): each annotator's spans are a prediction named after the annotator; correct one and submit the gold version." size="6"/>
  <Image name="image" value="$image" maxWidth="480px" zoom="true"/>
  <Labels name="label" toName="text" showInline="true">
    <!-- one <Label> per entity type of the recipe -->
  </Labels>
  <Text name="text" value="$text"/>
</View>
"""

TEMPLATES = {"annotate": _ANNOTATE, "review": _REVIEW}


class LabelConfigError(MmnerError):
    """A label config (template) that push/pull cannot use."""


def _labels_element(root: ET.Element) -> ET.Element:
    found = [el for el in root.iter("Labels") if el.get("name") == FROM_NAME]
    if len(found) != 1 or found[0].get("toName") != TO_NAME:
        raise LabelConfigError(
            f'the label config needs exactly one <Labels name="{FROM_NAME}" toName="{TO_NAME}">'
        )
    texts = [el for el in root.iter("Text") if el.get("name") == TO_NAME]
    if len(texts) != 1 or texts[0].get("value") != "$text":
        raise LabelConfigError(f'the label config needs one <Text name="{TO_NAME}" value="$text">')
    return found[0]


def render_label_config(
    entity_types: Sequence[str], kind: str = "annotate", template: str | None = None
) -> str:
    """The XML for ``kind`` (annotate | review) with one ``<Label>`` per entity type.

    ``template`` (XML text) replaces the built-in one; its ``<Labels name="label">`` children are
    replaced. Raises :class:`LabelConfigError` for a template without the needed controls.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown label config kind {kind!r}; expected one of {KINDS}")
    if not entity_types:
        raise LabelConfigError("at least one entity type is needed")
    text = template if template is not None else TEMPLATES[kind]
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise LabelConfigError(f"the label config is not valid XML: {exc}") from None
    labels = _labels_element(root)
    tail = labels.tail
    for child in list(labels):
        labels.remove(child)
    labels.text = "\n    "
    for i, name in enumerate(entity_types):
        el = ET.SubElement(labels, "Label", value=name, background=PALETTE[i % len(PALETTE)])
        el.tail = "\n    " if i < len(entity_types) - 1 else "\n  "
    labels.tail = tail
    return ET.tostring(root, encoding="unicode") + "\n"


def config_labels(xml: str) -> list[str]:
    """The ``<Label>`` values of the ``label`` control of a config, in order."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise LabelConfigError(f"the label config is not valid XML: {exc}") from None
    return [str(el.get("value")) for el in _labels_element(root) if el.tag == "Label"]


def check_config(xml: str, entity_types: Sequence[str]) -> str | None:
    """None when ``xml`` labels exactly ``entity_types`` (any order), else why not (one line)."""
    try:
        labels = config_labels(xml)
    except LabelConfigError as exc:
        return str(exc)
    if sorted(labels) != sorted(entity_types):
        return f"its labels are {', '.join(labels)} but the recipe's entity_types are " + ", ".join(
            entity_types
        )
    return None


def load_template(path: str | Path) -> str:
    """Read a user template; a missing file is a :class:`LabelConfigError`."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise LabelConfigError(f"cannot read label config template {path}: {exc}") from None


def config_sha256(xml: str) -> str:
    return hashlib.sha256(xml.encode("utf-8")).hexdigest()
