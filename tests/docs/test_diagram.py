"""docs/img/overview.svg is generated from its source and is plain SVG every viewer shows."""

import json
import xml.etree.ElementTree as ET

from tools.diagram import SOURCE, TARGET, render


def test_committed_svg_is_the_generators_output() -> None:
    """The committed picture equals what `make diagram` renders from docs/img/overview.json."""
    assert TARGET.read_text() == render(json.loads(SOURCE.read_text())), "run `make diagram` and commit"


def test_svg_is_self_contained() -> None:
    """Well-formed XML, no script, no external reference (images, fonts, style sheets)."""
    text = TARGET.read_text()
    root = ET.fromstring(text)  # noqa: S314 - our own generated file
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "<script" not in text and "href=" not in text and "@import" not in text
